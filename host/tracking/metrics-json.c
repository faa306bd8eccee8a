/* The fast path of metric batch ingest.  A batch of 50,000 points is 0.7 MiB
 * of JSON; jansson builds a node per number (two allocations and a free
 * each) and took two thirds of loomd's time per point.  This scanner reads
 * the one shape batches have — {"metrics": [{"name": …, "steps": […],
 * "values": […], "epochs": […], "wall_ms": […], "scope": …}]} — straight
 * into arrays.  It answers only "parsed" or "not mine": anything else (the
 * "points" form, escapes it does not decode, duplicate keys, a malformed
 * number, a missing field) goes to the jansson path, which gives the
 * error messages, so both paths accept and refuse the same documents. */
#include "config.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <loom/types.h>

#include "metrics-json.h"
#include "tracking-internal.h"
#include "host/core/util.h"

typedef struct scan {
	const char *p, *end;
} scan;

static locale_t c_locale;
static pthread_once_t c_once = PTHREAD_ONCE_INIT;

static void
make_locale(void)
{
	c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

static void
ws(scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
		s->p++;
}

static bool
eat(scan *s, char c)
{
	ws(s);
	if (s->p < s->end && *s->p == c) {
		s->p++;
		return true;
	}
	return false;
}

/* A string without escapes other than \" \\ \/ (names rarely have any),
 * copied into buf; false otherwise. */
static bool
string(scan *s, char *buf, size_t cap)
{
	size_t n = 0;

	if (!eat(s, '"'))
		return false;
	while (s->p < s->end && *s->p != '"') {
		char c = *s->p++;
		if ((unsigned char)c < 0x20)
			return false;
		if (c == '\\') {
			if (s->p >= s->end || (*s->p != '"' && *s->p != '\\' && *s->p != '/'))
				return false;
			c = *s->p++;
		}
		if (n + 1 >= cap)
			return false;
		buf[n++] = c;
	}
	if (s->p >= s->end)
		return false;
	s->p++;
	buf[n] = '\0';
	return true;
}

/* Skip any JSON value (for keys the batch does not use). */
static bool
skip(scan *s, int depth)
{
	ws(s);
	if (s->p >= s->end || depth > 64)
		return false;
	switch (*s->p) {
	case '"': {
		s->p++;
		while (s->p < s->end && *s->p != '"') {
			if (*s->p == '\\')
				s->p++;
			s->p++;
		}
		if (s->p >= s->end)
			return false;
		s->p++;
		return true;
	}
	case '{':
	case '[': {
		char close = *s->p == '{' ? '}' : ']';
		bool obj = close == '}';
		s->p++;
		if (eat(s, close))
			return true;
		do {
			if (obj) {
				char key[256];
				if (!string(s, key, sizeof key) || !eat(s, ':'))
					return false;
			}
			if (!skip(s, depth + 1))
				return false;
		} while (eat(s, ','));
		return eat(s, close);
	}
	default: {
		const char *start = s->p;
		while (s->p < s->end && strchr("0123456789+-.eEtrufalsn", *s->p))
			s->p++;
		return s->p > start;
	}
	}
}

/* An integer as JSON writes one (no fraction, no exponent). */
static bool
integer(scan *s, int64_t *out)
{
	const char *p;
	bool neg;
	uint64_t v = 0;

	ws(s);
	p = s->p;
	neg = p < s->end && *p == '-';
	if (neg)
		p++;
	if (p >= s->end || *p < '0' || *p > '9')
		return false;
	while (p < s->end && *p >= '0' && *p <= '9') {
		if (v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(*p++ - '0');
	}
	if (p < s->end && (*p == '.' || *p == 'e' || *p == 'E'))
		return false;
	if (v > (uint64_t)INT64_MAX)
		return false;
	*out = neg ? -(int64_t)v : (int64_t)v;
	s->p = p;
	return true;
}

/* A number, or "NaN" / "Infinity" / "-Infinity" as metric values may be. */
static bool
value(scan *s, double *out)
{
	char *stop;

	ws(s);
	if (s->p < s->end && *s->p == '"') {
		char word[16];
		if (!string(s, word, sizeof word))
			return false;
		if (!strcasecmp(word, "nan"))
			*out = NAN;
		else if (!strcasecmp(word, "infinity") || !strcasecmp(word, "inf"))
			*out = INFINITY;
		else if (!strcasecmp(word, "-infinity") || !strcasecmp(word, "-inf"))
			*out = -INFINITY;
		else
			return false;
		return true;
	}
	/* JSON's grammar, not strtod's (which takes "inf", hex, a leading '+'):
	 * -?digits(.digits)?([eE][+-]?digits)? — then strtod must end there */
	const char *p = s->p, *q;
	if (p < s->end && *p == '-')
		p++;
	for (q = p; p < s->end && *p >= '0' && *p <= '9'; p++)
		;
	if (p == q)
		return false;
	if (p < s->end && *p == '.') {
		for (q = ++p; p < s->end && *p >= '0' && *p <= '9'; p++)
			;
		if (p == q)
			return false;
	}
	if (p < s->end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < s->end && (*p == '+' || *p == '-'))
			p++;
		for (q = p; p < s->end && *p >= '0' && *p <= '9'; p++)
			;
		if (p == q)
			return false;
	}
	/* the body need not end in a NUL, but it ends in '}' (checked), where
	 * strtod stops at the latest */
	*out = strtod_l(s->p, &stop, c_locale);
	if (stop != p)
		return false;
	s->p = stop;
	return true;
}

typedef struct column {
	bool seen;
	size_t n, cap;
	int64_t *i;
	double *d;
} column;

static bool
ints(scan *s, column *c)
{
	if (c->seen || !eat(s, '['))
		return false;
	c->seen = true;
	if (eat(s, ']'))
		return true;
	do {
		if (c->n == c->cap) {
			c->cap = c->cap ? 2 * c->cap : 1024;
			c->i = loomi_xrealloc(c->i, c->cap * sizeof *c->i);
		}
		if (!integer(s, &c->i[c->n++]))
			return false;
	} while (eat(s, ','));
	return eat(s, ']');
}

static bool
doubles(scan *s, column *c)
{
	if (c->seen || !eat(s, '['))
		return false;
	c->seen = true;
	if (eat(s, ']'))
		return true;
	do {
		if (c->n == c->cap) {
			c->cap = c->cap ? 2 * c->cap : 1024;
			c->d = loomi_xrealloc(c->d, c->cap * sizeof *c->d);
		}
		if (!value(s, &c->d[c->n++]))
			return false;
	} while (eat(s, ','));
	return eat(s, ']');
}

static void
column_free(column *c)
{
	free(c->i);
	free(c->d);
}

/* One {"name", "steps", "values", …} into the batch; false: not mine. */
static bool
series(scan *s, int64_t now, loomi_metric_batch *b)
{
	char name[256], key[32], scope_text[16] = "step";
	bool have_name = false, have_scope = false, ok = false;
	column steps = {0}, values = {0}, epochs = {0}, wall = {0};
	uint32_t scope = LOOM_METRIC_STEP;

	if (!eat(s, '{'))
		return false;
	if (eat(s, '}'))
		return false;
	do {
		if (!string(s, key, sizeof key) || !eat(s, ':'))
			goto out;
		if (!strcmp(key, "name")) {
			if (have_name || !string(s, name, sizeof name))
				goto out;
			have_name = true;
		} else if (!strcmp(key, "steps")) {
			if (!ints(s, &steps))
				goto out;
		} else if (!strcmp(key, "values")) {
			if (!doubles(s, &values))
				goto out;
		} else if (!strcmp(key, "epochs")) {
			if (!ints(s, &epochs))
				goto out;
		} else if (!strcmp(key, "wall_ms")) {
			if (!ints(s, &wall))
				goto out;
		} else if (!strcmp(key, "scope")) {
			if (have_scope || !string(s, scope_text, sizeof scope_text))
				goto out;
			have_scope = true;
		} else if (!skip(s, 1)) {
			goto out;
		}
	} while (eat(s, ','));
	if (!eat(s, '}') || !have_name || !loomi_tracking_name_ok(name) || !steps.seen ||
	    !values.seen || steps.n != values.n || (epochs.seen && epochs.n != steps.n) ||
	    (wall.seen && wall.n != steps.n))
		goto out;
	if (!strcmp(scope_text, "epoch"))
		scope = LOOM_METRIC_EPOCH;
	else if (!strcmp(scope_text, "final"))
		scope = LOOM_METRIC_FINAL;
	else if (strcmp(scope_text, "step") != 0)
		goto out;
	for (size_t k = 0; k < steps.n; k++) {
		if (steps.i[k] < 0)
			goto out;
	}
	if (steps.n > 0) {
		tk_point *pts = loomi_xmalloc(steps.n * sizeof *pts);
		for (size_t k = 0; k < steps.n; k++)
			pts[k] = (tk_point){
				.step = steps.i[k],
				.value = values.d[k],
				.scope = scope,
				.epoch = epochs.seen ? (int32_t)epochs.i[k] : 0,
				.wall_ms = wall.seen ? wall.i[k] : now,
			};
		loomi_metric_batch_add(b, name, pts, steps.n);
	}
	ok = true;
out:
	column_free(&steps);
	column_free(&values);
	column_free(&epochs);
	column_free(&wall);
	return ok;
}

void
loomi_metric_batch_add(loomi_metric_batch *b, const char *name, tk_point *pts, size_t n)
{
	b->names = loomi_xrealloc(b->names, (b->count + 1) * sizeof *b->names);
	b->pts = loomi_xrealloc(b->pts, (b->count + 1) * sizeof *b->pts);
	b->n = loomi_xrealloc(b->n, (b->count + 1) * sizeof *b->n);
	b->names[b->count] = loomi_strdup(name);
	b->pts[b->count] = pts;
	b->n[b->count] = n;
	b->count++;
	b->total += n;
}

void
loomi_metric_batch_free(loomi_metric_batch *b)
{
	for (size_t i = 0; i < b->count; i++) {
		free(b->names[i]);
		free(b->pts[i]);
	}
	free(b->names);
	free(b->pts);
	free(b->n);
	memset(b, 0, sizeof *b);
}

static bool
document(scan *s, int64_t now, loomi_metric_batch *b)
{
	char key[32];
	bool have_metrics = false;

	if (!eat(s, '{'))
		return false;
	if (eat(s, '}'))
		return false;
	do {
		if (!string(s, key, sizeof key) || !eat(s, ':'))
			return false;
		if (!strcmp(key, "metrics")) {
			if (have_metrics || !eat(s, '['))
				return false;
			have_metrics = true;
			if (!eat(s, ']')) {
				do {
					if (!series(s, now, b))
						return false;
				} while (eat(s, ','));
				if (!eat(s, ']'))
					return false;
			}
		} else if (!strcmp(key, "points") || !skip(s, 1)) {
			return false;
		}
	} while (eat(s, ','));
	if (!eat(s, '}'))
		return false;
	ws(s);
	return have_metrics && s->p == s->end;
}

bool
loomi_metrics_json_fast(const char *body, size_t len, int64_t now, loomi_metric_batch *b)
{
	scan s = {body, body + len};
	size_t last = len;

	pthread_once(&c_once, make_locale);
	/* every number then has a character after it inside the body, where
	 * strtod stops (the body need not end in a NUL) */
	while (last > 0 && strchr(" \t\r\n", body[last - 1]))
		last--;
	if (c_locale == (locale_t)0 || last == 0 || body[last - 1] != '}')
		return false;
	if (document(&s, now, b))
		return true;
	loomi_metric_batch_free(b);
	return false;
}

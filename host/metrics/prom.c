/* The Prometheus text exposition writer (prom.h). */
#include "config.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/core/util.h"
#include "prom.h"

static void
put(loomi_prom *w, const char *s, size_t n)
{
	if (w->len + n + 1 > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		while (w->len + n + 1 > cap)
			cap *= 2;
		w->buf = loomi_xrealloc(w->buf, cap);
		w->cap = cap;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = '\0';
}

static void
put_str(loomi_prom *w, const char *s)
{
	put(w, s, strlen(s));
}

/* s with backslash and line feed escaped, and the double quote too in a
 * label value (quote true). */
static void
put_escaped(loomi_prom *w, const char *s, bool quote)
{
	const char *run = s;

	for (; *s; s++) {
		const char *esc = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n"
		                : (*s == '"' && quote) ? "\\\"" : NULL;
		if (esc == NULL)
			continue;
		put(w, run, (size_t)(s - run));
		put_str(w, esc);
		run = s + 1;
	}
	put(w, run, (size_t)(s - run));
}

const char *
loomi_prom_number(double v, char *buf, size_t size)
{
	if (isnan(v))
		snprintf(buf, size, "NaN");
	else if (isinf(v))
		snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
	else {
		/* the shortest of %.15g … %.17g that reads back as v */
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(buf, size, "%.*g", prec, v);
			if (strtod(buf, NULL) == v)
				break;
		}
	}
	return buf;
}

void
loomi_prom_family(loomi_prom *w, const char *name, const char *type, const char *help)
{
	put_str(w, "# HELP ");
	put_str(w, name);
	put_str(w, " ");
	put_escaped(w, help, false);
	put_str(w, "\n# TYPE ");
	put_str(w, name);
	put_str(w, " ");
	put_str(w, type);
	put_str(w, "\n");
}

/* name{labels[,le="le"]} — the part before the value. */
static void
series(loomi_prom *w, const char *name, const char *suffix, const loomi_prom_label *labels,
       size_t n_labels, const char *le)
{
	put_str(w, name);
	if (suffix)
		put_str(w, suffix);
	if (n_labels == 0 && le == NULL)
		return;
	put_str(w, "{");
	for (size_t i = 0; i < n_labels; i++) {
		if (i > 0)
			put_str(w, ",");
		put_str(w, labels[i].name);
		put_str(w, "=\"");
		put_escaped(w, labels[i].value ? labels[i].value : "", true);
		put_str(w, "\"");
	}
	if (le) {
		put_str(w, n_labels ? ",le=\"" : "le=\"");
		put_str(w, le);
		put_str(w, "\"");
	}
	put_str(w, "}");
}

static void
value_u64(loomi_prom *w, uint64_t v)
{
	char num[32];
	snprintf(num, sizeof num, " %" PRIu64 "\n", v);
	put_str(w, num);
}

void
loomi_prom_sample(loomi_prom *w, const char *name, const loomi_prom_label *labels,
                  size_t n_labels, double value)
{
	char num[40];

	series(w, name, NULL, labels, n_labels, NULL);
	put_str(w, " ");
	put_str(w, loomi_prom_number(value, num, sizeof num));
	put_str(w, "\n");
}

void
loomi_prom_sample_u64(loomi_prom *w, const char *name, const loomi_prom_label *labels,
                      size_t n_labels, uint64_t value)
{
	series(w, name, NULL, labels, n_labels, NULL);
	value_u64(w, value);
}

void
loomi_prom_histogram(loomi_prom *w, const char *name, const loomi_prom_label *labels,
                     size_t n_labels, const double *bounds, size_t n_bounds,
                     const uint64_t *counts, double sum)
{
	uint64_t total = 0;
	char le[40], num[40];

	for (size_t i = 0; i <= n_bounds; i++) {
		total += counts[i];
		series(w, name, "_bucket", labels, n_labels,
		       i < n_bounds ? loomi_prom_number(bounds[i], le, sizeof le) : "+Inf");
		value_u64(w, total);
	}
	series(w, name, "_sum", labels, n_labels, NULL);
	put_str(w, " ");
	put_str(w, loomi_prom_number(sum, num, sizeof num));
	put_str(w, "\n");
	/* the +Inf bucket and _count are one number, read once */
	series(w, name, "_count", labels, n_labels, NULL);
	value_u64(w, total);
}

void
loomi_prom_free(loomi_prom *w)
{
	free(w->buf);
	w->buf = NULL;
	w->len = w->cap = 0;
}

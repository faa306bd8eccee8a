/* exporter-report: HTML output.  See html.h. */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "html.h"

/* Large enough that a report goes to the sink in a few writes, small
 * enough that a huge spec table never sits whole in memory twice. */
#define FLUSH_AT (64 * 1024)

void
html_init(html_out *o, const loom_export_sink *sink)
{
	memset(o, 0, sizeof *o);
	o->sink = sink;
}

static void
flush(html_out *o)
{
	int rv;

	if (o->err == 0 && o->len > 0 && (rv = o->sink->write(o->sink->arg, o->buf, o->len)) != 0)
		o->err = rv;
	o->len = 0;
}

int
html_finish(html_out *o)
{
	flush(o);
	free(o->buf);
	o->buf = NULL;
	o->cap = 0;
	return o->err;
}

static void
put(html_out *o, const char *s, size_t n)
{
	if (o->err != 0)
		return;
	if (o->len + n > o->cap) {
		size_t cap = o->cap ? o->cap : 4096;
		char *p;
		while (cap < o->len + n)
			cap *= 2;
		if ((p = realloc(o->buf, cap)) == NULL) {
			o->err = LOOM_ENOMEM;
			return;
		}
		o->buf = p;
		o->cap = cap;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	if (o->len >= FLUSH_AT)
		flush(o);
}

void
html_raw(html_out *o, const char *text)
{
	put(o, text, strlen(text));
}

void
html_rawf(html_out *o, const char *fmt, ...)
{
	char small[256], *big = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0) {
		o->err = o->err ? o->err : LOOM_EINTERNAL;
		return;
	}
	if ((size_t)n < sizeof small) {
		put(o, small, (size_t)n);
		return;
	}
	if ((big = malloc((size_t)n + 1)) == NULL) {
		o->err = o->err ? o->err : LOOM_ENOMEM;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	put(o, big, (size_t)n);
	free(big);
}

void
html_text(html_out *o, const char *text)
{
	const char *run = text;

	if (text == NULL)
		return;
	for (const char *p = text; *p; p++) {
		const char *rep;
		switch (*p) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\'': rep = "&#39;"; break;
		default: continue;
		}
		put(o, run, (size_t)(p - run));
		html_raw(o, rep);
		run = p + 1;
	}
	html_raw(o, run);
}

void
html_elem(html_out *o, const char *tag, const char *cls, const char *text)
{
	if (cls)
		html_rawf(o, "<%s class=\"%s\">", tag, cls);
	else
		html_rawf(o, "<%s>", tag);
	html_text(o, text);
	html_rawf(o, "</%s>", tag);
}

void
html_number(html_out *o, double v)
{
	if (isnan(v))
		html_raw(o, "NaN");
	else if (isinf(v))
		html_raw(o, v > 0 ? "∞" : "−∞");
	else if (v == floor(v) && fabs(v) < 1e15)
		html_rawf(o, "%.0f", v);
	else
		html_rawf(o, "%.6g", v);
}

static bool
is_scalar(const json_t *v)
{
	return !json_is_object(v) && !json_is_array(v);
}

void
html_json_value(html_out *o, const json_t *v)
{
	size_t i;
	json_t *e;

	switch (json_typeof(v)) {
	case JSON_STRING: html_text(o, json_string_value(v)); return;
	case JSON_INTEGER: html_rawf(o, "%lld", (long long)json_integer_value(v)); return;
	case JSON_REAL: html_number(o, json_real_value(v)); return;
	case JSON_TRUE: html_raw(o, "true"); return;
	case JSON_FALSE: html_raw(o, "false"); return;
	case JSON_NULL: html_raw(o, "—"); return;
	default: break;
	}
	if (json_is_array(v) && json_array_size(v) <= 32) {
		bool flat = true;
		json_array_foreach(v, i, e)
			flat = flat && is_scalar(e);
		if (flat) {
			json_array_foreach(v, i, e) {
				if (i > 0)
					html_raw(o, ", ");
				html_json_value(o, e);
			}
			if (json_array_size(v) == 0)
				html_raw(o, "(none)");
			return;
		}
	}
	char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
	if (s == NULL) {
		o->err = o->err ? o->err : LOOM_ENOMEM;
		return;
	}
	html_text(o, s);
	free(s);
}

void
html_time_ms(html_out *o, double ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char s[64];

	if (!isfinite(ms) || gmtime_r(&t, &tm) == NULL ||
	    strftime(s, sizeof s, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0) {
		html_number(o, ms);
		return;
	}
	html_raw(o, s);
}

void
html_duration_ms(html_out *o, double ms)
{
	double s = ms / 1000;

	if (!isfinite(ms) || ms < 0)
		html_number(o, ms);
	else if (s < 60)
		html_rawf(o, "%.3g s", s);
	else if (s < 3600)
		html_rawf(o, "%d min %02d s", (int)(s / 60), (int)fmod(s, 60));
	else
		html_rawf(o, "%d h %02d min", (int)(s / 3600), (int)fmod(s / 60, 60));
}

/* Buffered text output to an export sink.  See textout.h. */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "textout.h"

void
textout_init(textout *o, const loom_export_sink *sink)
{
	o->sink = sink;
	o->rv = 0;
	o->len = 0;
}

static void
flush(textout *o)
{
	if (o->rv == 0 && o->len > 0)
		o->rv = o->sink->write(o->sink->arg, o->buf, o->len);
	o->len = 0;
}

void
textout_put(textout *o, const char *s, size_t n)
{
	while (n > 0 && o->rv == 0) {
		size_t room = sizeof o->buf - o->len, k = n < room ? n : room;
		memcpy(o->buf + o->len, s, k);
		o->len += k;
		s += k;
		n -= k;
		if (o->len == sizeof o->buf)
			flush(o);
	}
}

void
textout_str(textout *o, const char *s)
{
	textout_put(o, s, strlen(s));
}

void
textout_fmt(textout *o, const char *fmt, ...)
{
	char small[256], *big = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0) {
		textout_fail(o, LOOM_EINVAL);
		return;
	}
	if ((size_t)n < sizeof small) {
		textout_put(o, small, (size_t)n);
		return;
	}
	if ((big = malloc((size_t)n + 1)) == NULL) {
		textout_fail(o, LOOM_ENOMEM);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	textout_put(o, big, (size_t)n);
	free(big);
}

size_t
textout_exact(char *buf, double v)
{
	/* 17 significant digits always read back to the same double.  Trying
	 * 15 and 16 first reads better (0.1) but costs 2.7 times as much per
	 * value, and metrics widened from float need 17 anyway. */
	int n = snprintf(buf, 32, "%.17g", v);
	return n > 0 ? (size_t)n : 0;
}

void
textout_double(textout *o, double v)
{
	char buf[32];
	size_t n;

	/* "-0" would read back as the integer 0 in JSON: keep the sign. */
	if (v == 0 && signbit(v)) {
		textout_str(o, "-0.0");
		return;
	}
	n = textout_exact(buf, v);
	textout_put(o, buf, n);
}

void
textout_fail(textout *o, int rv)
{
	if (o->rv == 0)
		o->rv = rv;
}

int
textout_end(textout *o)
{
	flush(o);
	return o->rv;
}

/* Buffered text output to an export sink: loom_export_writer in
 * <loom/exporter.h>.  (Was exporter-json's textout.c.) */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/exporter.h>

#define WRITER_BUF (64u * 1024u)

struct loom_export_writer {
	const loom_export_sink *sink;
	int rv;                 /* the first error, or 0 */
	size_t len;
	char buf[WRITER_BUF];
};

int
loom_export_writer_open(const loom_export_sink *sink, loom_export_writer **out)
{
	loom_export_writer *w;

	if (out == NULL)
		return LOOM_EINVAL;
	*out = NULL;
	if (sink == NULL || sink->write == NULL)
		return LOOM_EINVAL;
	if ((w = malloc(sizeof *w)) == NULL)
		return LOOM_ENOMEM;
	w->sink = sink;
	w->rv = 0;
	w->len = 0;
	*out = w;
	return 0;
}

static void
flush(loom_export_writer *w)
{
	if (w->rv == 0 && w->len > 0)
		w->rv = w->sink->write(w->sink->arg, w->buf, w->len);
	w->len = 0;
}

void
loom_export_writer_put(loom_export_writer *w, const void *data, size_t n)
{
	const char *s = data;

	while (n > 0 && w->rv == 0) {
		size_t room = sizeof w->buf - w->len, k = n < room ? n : room;
		memcpy(w->buf + w->len, s, k);
		w->len += k;
		s += k;
		n -= k;
		if (w->len == sizeof w->buf)
			flush(w);
	}
}

void
loom_export_writer_puts(loom_export_writer *w, const char *s)
{
	loom_export_writer_put(w, s, strlen(s));
}

void
loom_export_writer_vprintf(loom_export_writer *w, const char *fmt, va_list ap)
{
	char small[256], *big = NULL;
	va_list ap2;
	int n;

	if (w->rv != 0)
		return;
	va_copy(ap2, ap);
	n = vsnprintf(small, sizeof small, fmt, ap2);
	va_end(ap2);
	if (n < 0) {
		loom_export_writer_fail(w, LOOM_EINVAL);
		return;
	}
	if ((size_t)n < sizeof small) {
		loom_export_writer_put(w, small, (size_t)n);
		return;
	}
	if ((big = malloc((size_t)n + 1)) == NULL) {
		loom_export_writer_fail(w, LOOM_ENOMEM);
		return;
	}
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	loom_export_writer_put(w, big, (size_t)n);
	free(big);
}

void
loom_export_writer_printf(loom_export_writer *w, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	loom_export_writer_vprintf(w, fmt, ap);
	va_end(ap);
}

size_t
loom_format_double(char *buf, double v)
{
	/* 17 significant digits always read back to the same double.  Trying
	 * 15 and 16 first reads better (0.1) but costs 2.7 times as much per
	 * value, and metrics widened from float need 17 anyway. */
	int n = snprintf(buf, LOOM_DOUBLE_BUF, "%.17g", v);
	return n > 0 ? (size_t)n : 0;
}

void
loom_export_writer_double(loom_export_writer *w, double v)
{
	char buf[LOOM_DOUBLE_BUF];
	size_t n;

	/* "-0" would read back as the integer 0 in JSON: keep the sign. */
	if (v == 0 && signbit(v)) {
		loom_export_writer_puts(w, "-0.0");
		return;
	}
	n = loom_format_double(buf, v);
	loom_export_writer_put(w, buf, n);
}

void
loom_export_writer_fail(loom_export_writer *w, int rv)
{
	if (w->rv == 0)
		w->rv = rv;
}

int
loom_export_writer_error(const loom_export_writer *w)
{
	return w->rv;
}

int
loom_export_writer_close(loom_export_writer *w)
{
	int rv;

	if (w == NULL)
		return LOOM_EINVAL;
	flush(w);
	rv = w->rv;
	free(w);
	return rv;
}

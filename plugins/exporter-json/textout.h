/* textout — text exports streamed to a loom_export_sink through a fixed
 * buffer, so a history of millions of points never becomes one string.
 * Shared by exporter-csv and exporter-json.
 *
 * The first failing write is remembered and every later call does nothing:
 * callers write freely and check textout_end's code once. */
#ifndef LOOM_EXPORTER_TEXTOUT_H
#define LOOM_EXPORTER_TEXTOUT_H

#include <stddef.h>

#include <loom/exporter.h>

#define TEXTOUT_BUF (64u * 1024u)

typedef struct textout {
	const loom_export_sink *sink;
	int rv;                 /* the first error, or 0 */
	size_t len;
	char buf[TEXTOUT_BUF];
} textout;

void textout_init(textout *o, const loom_export_sink *sink);
void textout_put(textout *o, const char *s, size_t n);
void textout_str(textout *o, const char *s);
void textout_fmt(textout *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A finite double as %.17g: it reads back to the same bits. */
void textout_double(textout *o, double v);
/* Flush; returns the first error of any write. */
int textout_end(textout *o);
/* Record an error (out of memory, say) as if a write had failed. */
void textout_fail(textout *o, int rv);

/* Format a finite v into buf (at least 32 bytes) so that strtod reads it
 * back exactly (%.17g); returns the length. */
size_t textout_exact(char *buf, double v);

#endif

/* exporter-report: writing HTML to an exporter's sink.
 *
 * An html_out buffers text and hands it to the sink in large pieces; the
 * first error (out of memory, a refused write) sticks, later writes are
 * dropped, and html_finish returns it, so the code that builds a report
 * checks once at the end instead of after every line. */
#ifndef LOOM_REPORT_HTML_H
#define LOOM_REPORT_HTML_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include <loom/exporter.h>

typedef struct html_out {
	const loom_export_sink *sink;
	char *buf;
	size_t len, cap;
	int err;                 /* the first LOOM_E* code, or 0 */
} html_out;

void html_init(html_out *o, const loom_export_sink *sink);
/* Flush what is buffered; the first error, or 0.  Frees the buffer. */
int html_finish(html_out *o);

/* Markup, written as given. */
void html_raw(html_out *o, const char *text);
void html_rawf(html_out *o, const char *fmt, ...) LOOM_PRINTF(2, 3);
/* Text from the source, escaped for element content and quoted attribute
 * values alike (& < > " '); NULL writes nothing. */
void html_text(html_out *o, const char *text);
/* <tag class="cls">escaped text</tag>; cls may be NULL. */
void html_elem(html_out *o, const char *tag, const char *cls, const char *text);

/* A number as people read it in a table: integers whole, others with six
 * significant digits, "NaN", "∞" and "−∞" for the rest.  Same value, same
 * text, so reports are deterministic. */
void html_number(html_out *o, double v);
/* Any JSON value: strings escaped, numbers by html_number, arrays of
 * scalars joined by ", ", objects and longer arrays as compact JSON. */
void html_json_value(html_out *o, const json_t *v);

/* Milliseconds since the epoch as "2024-05-01 12:00:00 UTC". */
void html_time_ms(html_out *o, double ms);
/* A duration in milliseconds as "1 h 02 min", "3.4 s". */
void html_duration_ms(html_out *o, double ms);

#endif /* LOOM_REPORT_HTML_H */

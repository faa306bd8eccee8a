/* A small XML reader for the S3 responses storage-s3 needs: ListObjectsV2
 * results, InitiateMultipartUpload / CompleteMultipartUpload results and
 * <Error> bodies.
 *
 * It is not a general XML parser.  It finds elements by name, in document
 * order, and decodes their text; that is all these responses need, because
 * none of the elements read nests an element of its own name, and text
 * cannot hold a literal '<' (it is escaped as &lt;), so an element's end is
 * the first "</name>" after its start.  Anything it does not understand in a
 * text it is asked to decode (markup, CDATA, an unknown or malformed entity,
 * a NUL) makes it fail rather than guess. */
#ifndef LOOM_S3XML_H
#define LOOM_S3XML_H

#include <stddef.h>

/* Find the next element called name in [*p, end).  On success the content
 * between its start and end tags is [*body, *body + *blen) (empty for
 * <name/>), *p moves past the element, and 1 is returned; 0 when there is
 * none; -1 when a start tag has no matching end. */
int s3xml_next(const char **p, const char *end, const char *name, const char **body,
               size_t *blen);

/* The text [s, s + n) with its entities decoded (&amp; &lt; &gt; &quot;
 * &apos; &#N; &#xH;), NUL-terminated, malloc'd; NULL when it holds markup,
 * a bad entity or a NUL, or when memory runs out. */
char *s3xml_text(const char *s, size_t n);

/* The decoded text of the first element called name in [s, s + n), or NULL
 * when there is none or it cannot be decoded (malloc'd). */
char *s3xml_get(const char *s, size_t n, const char *name);

/* Append text to out (at most cap bytes in all, NUL-terminated) with &, <,
 * > and " escaped; returns the length it would need, like snprintf. */
size_t s3xml_escape(char *out, size_t cap, const char *text);

#endif

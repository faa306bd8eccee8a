/* A small XML reader for S3 responses (see s3xml.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "s3xml.h"

/* A byte that may follow a tag's name: the tag ends or attributes begin. */
static int
after_name(char ch)
{
	return ch == '>' || ch == '/' || ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

static const char *
find(const char *p, const char *end, const char *needle, size_t nl)
{
	while ((size_t)(end - p) >= nl) {
		const char *at = memchr(p, needle[0], (size_t)(end - p) - nl + 1);
		if (at == NULL)
			return NULL;
		if (memcmp(at, needle, nl) == 0)
			return at;
		p = at + 1;
	}
	return NULL;
}

int
s3xml_next(const char **p, const char *end, const char *name, const char **body,
           size_t *blen)
{
	size_t nl = strlen(name);
	const char *s = *p;

	while (s < end) {
		const char *lt = memchr(s, '<', (size_t)(end - s)), *gt, *close;
		if (lt == NULL || (size_t)(end - lt) < nl + 2)
			return 0;
		if (memcmp(lt + 1, name, nl) != 0 || !after_name(lt[1 + nl])) {
			s = lt + 1;
			continue;
		}
		/* The start tag's end; attribute values cannot hold '>' in what
		 * S3 sends (it would be escaped), so the first one ends it. */
		if ((gt = memchr(lt + 1 + nl, '>', (size_t)(end - lt - 1 - nl))) == NULL)
			return -1;
		if (gt[-1] == '/') { /* <name/> */
			*body = gt + 1;
			*blen = 0;
			*p = gt + 1;
			return 1;
		}
		{
			char tag[128];
			size_t tl;
			if (nl + 3 > sizeof tag)
				return -1;
			tag[0] = '<';
			tag[1] = '/';
			memcpy(tag + 2, name, nl);
			tag[2 + nl] = '>';
			tl = nl + 3;
			if ((close = find(gt + 1, end, tag, tl)) == NULL)
				return -1;
			*body = gt + 1;
			*blen = (size_t)(close - gt - 1);
			*p = close + tl;
			return 1;
		}
	}
	return 0;
}

/* Append code point cp as UTF-8; 0 when it is not one XML allows. */
static int
put_utf8(char **o, uint32_t cp)
{
	unsigned char *u = (unsigned char *)*o;

	if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	if (cp < 0x80) {
		*u++ = (unsigned char)cp;
	} else if (cp < 0x800) {
		*u++ = (unsigned char)(0xC0 | (cp >> 6));
		*u++ = (unsigned char)(0x80 | (cp & 0x3F));
	} else if (cp < 0x10000) {
		*u++ = (unsigned char)(0xE0 | (cp >> 12));
		*u++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
		*u++ = (unsigned char)(0x80 | (cp & 0x3F));
	} else {
		*u++ = (unsigned char)(0xF0 | (cp >> 18));
		*u++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
		*u++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
		*u++ = (unsigned char)(0x80 | (cp & 0x3F));
	}
	*o = (char *)u;
	return 1;
}

char *
s3xml_text(const char *s, size_t n)
{
	/* Decoding never lengthens: the longest expansion, 4 UTF-8 bytes,
	 * comes from "&#x10000;" or longer. */
	char *out = malloc(n + 1), *o = out;
	const char *end = s + n;

	if (out == NULL)
		return NULL;
	while (s < end) {
		const char *semi;
		size_t el;
		if (*s == '\0' || *s == '<') {
			free(out);
			return NULL; /* markup or NUL where text belongs */
		}
		if (*s != '&') {
			*o++ = *s++;
			continue;
		}
		semi = memchr(s, ';', (size_t)(end - s));
		if (semi == NULL || semi - s > 12) {
			free(out);
			return NULL;
		}
		el = (size_t)(semi - s - 1);
		if (el == 3 && memcmp(s + 1, "amp", 3) == 0) {
			*o++ = '&';
		} else if (el == 2 && memcmp(s + 1, "lt", 2) == 0) {
			*o++ = '<';
		} else if (el == 2 && memcmp(s + 1, "gt", 2) == 0) {
			*o++ = '>';
		} else if (el == 4 && memcmp(s + 1, "quot", 4) == 0) {
			*o++ = '"';
		} else if (el == 4 && memcmp(s + 1, "apos", 4) == 0) {
			*o++ = '\'';
		} else if (el >= 2 && s[1] == '#') {
			uint32_t cp = 0;
			int hex = s[2] == 'x' || s[2] == 'X';
			const char *d = s + (hex ? 3 : 2);
			if (d == semi) {
				free(out);
				return NULL;
			}
			for (; d < semi; d++) {
				int v;
				if (*d >= '0' && *d <= '9')
					v = *d - '0';
				else if (hex && *d >= 'a' && *d <= 'f')
					v = *d - 'a' + 10;
				else if (hex && *d >= 'A' && *d <= 'F')
					v = *d - 'A' + 10;
				else {
					free(out);
					return NULL;
				}
				cp = cp * (hex ? 16u : 10u) + (uint32_t)v;
				if (cp > 0x10FFFF) {
					free(out);
					return NULL;
				}
			}
			if (!put_utf8(&o, cp)) {
				free(out);
				return NULL;
			}
		} else {
			free(out);
			return NULL; /* an entity XML does not predefine */
		}
		s = semi + 1;
	}
	*o = '\0';
	return out;
}

char *
s3xml_get(const char *s, size_t n, const char *name)
{
	const char *p = s, *body;
	size_t blen;

	if (s3xml_next(&p, s + n, name, &body, &blen) != 1)
		return NULL;
	return s3xml_text(body, blen);
}

size_t
s3xml_escape(char *out, size_t cap, const char *text)
{
	size_t n = strlen(out), need = n;

	for (const char *t = text; *t; t++) {
		const char *rep = NULL;
		char one[2] = {*t, '\0'};
		switch (*t) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		default: rep = one; break;
		}
		for (const char *r = rep; *r; r++) {
			if (need + 1 < cap)
				out[need] = *r;
			need++;
		}
	}
	if (cap > 0)
		out[need < cap ? need : cap - 1] = '\0';
	return need;
}

/* Internal helpers libloom and the host share.  See base.h. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/util.h>

#include "base.h"

static void
oom(size_t n)
{
	fprintf(stderr, "loom: out of memory (allocating %zu bytes)\n", n);
	abort();
}

void *
loomi_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		oom(n);
	return p;
}

void *
loomi_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (p == NULL)
		oom(n * size);
	return p;
}

void *
loomi_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL)
		oom(n);
	return q;
}

char *
loomi_strdup(const char *s)
{
	return s ? loomi_strndup(s, strlen(s)) : NULL;
}

char *
loomi_strndup(const char *s, size_t n)
{
	char *d = loomi_xmalloc(n + 1);
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

char *
loomi_vstrfmt(const char *fmt, va_list ap)
{
	char *s = loom_vstrfmt(fmt, ap);

	if (s == NULL && errno == ENOMEM)
		oom(strlen(fmt));
	/* a format vsnprintf refuses gives "", as it always has here */
	return s ? s : loomi_strdup("");
}

char *
loomi_strfmt(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = loomi_vstrfmt(fmt, ap);
	va_end(ap);
	return s;
}

void
loomi_strv_push(loomi_strv *sv, char *owned)
{
	if (sv->n == sv->cap) {
		sv->cap = sv->cap ? sv->cap * 2 : 8;
		sv->v = loomi_xrealloc(sv->v, sv->cap * sizeof *sv->v);
	}
	sv->v[sv->n++] = owned;
}

void
loomi_strv_pushf(loomi_strv *sv, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	loomi_strv_push(sv, loomi_vstrfmt(fmt, ap));
	va_end(ap);
}

void
loomi_strv_free(loomi_strv *sv)
{
	for (size_t i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	sv->v = NULL;
	sv->n = sv->cap = 0;
}

char *
loomi_strv_join(const loomi_strv *sv, const char *sep)
{
	size_t len = 1, sl = strlen(sep);
	char *s, *p;

	for (size_t i = 0; i < sv->n; i++)
		len += strlen(sv->v[i]) + sl;
	p = s = loomi_xmalloc(len);
	*p = '\0';
	for (size_t i = 0; i < sv->n; i++) {
		size_t l = strlen(sv->v[i]);
		if (i) {
			memcpy(p, sep, sl);
			p += sl;
		}
		memcpy(p, sv->v[i], l);
		p += l;
	}
	*p = '\0';
	return s;
}

/* Optimal string alignment distance (Damerau–Levenshtein with adjacent
 * transpositions), bounded to short words. */
static size_t
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t d[65][65];

	if (la > 64 || lb > 64)
		return (size_t)-1;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			size_t cost = a[i - 1] != b[j - 1];
			size_t v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < v)
				v = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	}
	return d[la][lb];
}

const char *
loomi_suggest(const char *word, const char *const *candidates, size_t n)
{
	const char *best = NULL;
	size_t best_d = (size_t)-1, len = strlen(word);
	size_t limit = len <= 3 ? 1 : len <= 6 ? 2 : 3;

	for (size_t i = 0; i < n; i++) {
		size_t d;
		if (candidates[i] == NULL)
			continue;
		d = edit_distance(word, candidates[i]);
		if (d < best_d) {
			best_d = d;
			best = candidates[i];
		}
	}
	return best_d <= limit ? best : NULL;
}

/* Internal helpers that libloom and the host share: allocation that never
 * returns NULL, string formatting, a growable string list and the
 * did-you-mean used in every "unknown setting" message.
 *
 * Private: never installed.  Built into sdk/libloomcommon.la, a libtool
 * convenience library linked into libloom.la (whose export list keeps
 * these loomi_ symbols hidden) and into the host's host/core libraries.
 * The host reaches these through host/core/util.h. */
#ifndef LOOM_SDK_BASE_H
#define LOOM_SDK_BASE_H

#include <stdarg.h>
#include <stddef.h>

#include <loom/types.h>

/* Allocation that never returns NULL: on exhaustion it logs and aborts
 * (the daemon cannot do anything useful without memory). */
void *loomi_xmalloc(size_t n);
void *loomi_xcalloc(size_t n, size_t size);
void *loomi_xrealloc(void *p, size_t n);
char *loomi_strdup(const char *s);
/* The first n bytes of s (s must have them: unlike strndup, no NUL is
 * looked for), NUL-terminated. */
char *loomi_strndup(const char *s, size_t n);
/* loom_strfmt that aborts instead of returning NULL. */
char *loomi_strfmt(const char *fmt, ...) LOOM_PRINTF(1, 2);
char *loomi_vstrfmt(const char *fmt, va_list ap) LOOM_PRINTF(1, 0);

/* A growable list of owned strings. */
typedef struct loomi_strv {
	char **v;
	size_t n, cap;
} loomi_strv;

void loomi_strv_push(loomi_strv *sv, char *owned);
void loomi_strv_pushf(loomi_strv *sv, const char *fmt, ...) LOOM_PRINTF(2, 3);
void loomi_strv_free(loomi_strv *sv);
/* Join with sep into a new string. */
char *loomi_strv_join(const loomi_strv *sv, const char *sep);

/* The candidate closest to word by edit distance, when close enough to be
 * a likely typo; NULL otherwise. */
const char *loomi_suggest(const char *word, const char *const *candidates, size_t n);

#endif /* LOOM_SDK_BASE_H */

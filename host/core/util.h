/* Small helpers shared by the host's modules. */
#ifndef LOOM_HOST_UTIL_H
#define LOOM_HOST_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* Paths and files. */
char *loomi_path_join(const char *dir, const char *name);
/* mkdir -p with mode; 0 or errno. */
int loomi_mkdir_p(const char *path, unsigned mode);
/* Write a file atomically: temp file in the same directory, fsync, rename,
 * fsync of the directory.  0 or errno. */
int loomi_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode);
/* Read a whole file (NUL-terminated as a convenience); 0 or errno. */
int loomi_read_file(const char *path, char **data, size_t *len);

/* Replace every byte of s that does not start valid UTF-8 with '?', in
 * place (a message cut mid-character, a path in another encoding), so it
 * can go into JSON.  Returns s. */
char *loomi_utf8_clean(char *s);

/* Clocks. */
int64_t loomi_wall_ms(void);
/* ms since the epoch as ISO 8601 UTC: "2026-11-23T05:10:58.936Z" (free it). */
char *loomi_iso_time(int64_t ms);
uint64_t loomi_mono_ns(void);

/* Memory aligned to 64 bytes and zeroed. */
void *loomi_aligned_zalloc(size_t bytes);

#endif /* LOOM_HOST_UTIL_H */

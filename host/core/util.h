/* Small helpers shared by the host's modules. */
#ifndef LOOM_HOST_UTIL_H
#define LOOM_HOST_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <loom/types.h>

#include "sdk/libloom/base.h"

/* Allocation that never fails, loomi_strfmt, loomi_strv and loomi_suggest
 * are sdk/libloom/base.h: code the host shares with libloom. */

/* Paths and files. */
char *loomi_path_join(const char *dir, const char *name);
/* mkdir -p with mode; 0 or errno.  (<loom/util.h>'s loom_mkdir_p.) */
int loomi_mkdir_p(const char *path, unsigned mode);
/* Write a file atomically: temp file in the same directory, fsync, rename,
 * fsync of the directory.  0 or errno.  (loom_file_write_atomic.) */
int loomi_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode);
/* Read a whole file (NUL-terminated as a convenience); 0 or errno.
 * (loom_file_read.) */
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

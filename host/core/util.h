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

/* Names (of tasks, configs, rules, runs, tags) are shown in terminals and
 * logs: refuse what would change how text around them reads.  0 when s is
 * valid UTF-8 without C0 or C1 control characters, DEL, or Unicode bidi
 * controls (U+061C, U+200E/F, U+202A-U+202E, U+2066-U+2069); else
 * LOOM_EINVAL with *msg (free it) naming key and the code point, e.g.
 * "name: U+202E (a bidi control) at character 4 is not allowed in names". */
int loomi_name_text_check(const char *key, const char *s, char **msg);
/* The code point at s (valid UTF-8 or not) and its length in bytes (1 for
 * a byte that starts no valid sequence: then *cp is that byte and *valid
 * false).  Used by the check above and by loomctl's rendering. */
size_t loomi_utf8_next(const char *s, uint32_t *cp, bool *valid);
/* Is cp a bidi control (the list above)? */
bool loomi_is_bidi_control(uint32_t cp);

/* Clocks. */
int64_t loomi_wall_ms(void);
/* ms since the epoch as ISO 8601 UTC: "2026-11-23T05:10:58.936Z" (free it). */
char *loomi_iso_time(int64_t ms);
uint64_t loomi_mono_ns(void);

/* Memory aligned to 64 bytes and zeroed. */
void *loomi_aligned_zalloc(size_t bytes);

#endif /* LOOM_HOST_UTIL_H */

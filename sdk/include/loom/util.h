/* <loom/util.h> — small helpers every plugin ends up writing: formatted
 * strings, whole files read and written safely, directories.  See
 * loom-util(3).
 *
 * Strings come back from malloc(): release them with free().  The file
 * functions return 0 or a LOOM_E* code (LOOM_ENOENT, LOOM_EPERM,
 * LOOM_ENOMEM, LOOM_EINVAL, LOOM_EIO) and leave the system's reason in
 * errno, so a message can say both: strerror(errno). */
#ifndef LOOM_UTIL_H
#define LOOM_UTIL_H

#include <stdarg.h>
#include <stddef.h>

#include <loom/error.h>
#include <loom/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* printf into a new string; NULL when out of memory (errno ENOMEM) or the
 * format cannot be formatted (errno EOVERFLOW, EILSEQ). */
char *loom_strfmt(const char *fmt, ...) LOOM_PRINTF(1, 2);
char *loom_vstrfmt(const char *fmt, va_list ap) LOOM_PRINTF(1, 0);

/* Read the whole file at path into *data (malloc'd, with a NUL after the
 * last byte so text can be used as a string) and its length into *len
 * (len may be NULL).  On failure *data is untouched. */
int loom_file_read(const char *path, char **data, size_t *len);

/* Replace the file at path with len bytes of data, atomically: the bytes
 * go to a temporary file in the same directory (path.tmp.PID), which is
 * fsync'd, renamed over path, and the directory fsync'd.  A reader sees the
 * old file or the new one, never a part; after a crash the new one is
 * there or the old one is.  mode is the new file's permissions (0644),
 * before the umask.  On failure the temporary file is removed and path is
 * untouched. */
int loom_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode);

/* mkdir -p: create path and its missing parents with mode (0755).  An
 * existing directory is success; an existing non-directory is
 * LOOM_EINVAL (errno ENOTDIR). */
int loom_mkdir_p(const char *path, unsigned mode);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_UTIL_H */

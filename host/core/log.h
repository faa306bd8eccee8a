/* Host logging: levels, text or JSON lines, to stderr or a file. */
#ifndef LOOM_HOST_LOG_H
#define LOOM_HOST_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include <loom/host.h>

enum loomi_log_format {
	LOOMI_LOG_TEXT = 0,
	LOOMI_LOG_JSON = 1,
};

/* Configure: level (LOOM_LOG_*), format, and a file to append to (NULL or
 * "" for stderr).  Returns 0 or LOOM_EIO with *err set (free it). */
int loomi_log_setup(int level, int format, const char *file, char **err);

/* Change the level and format at run time (SIGHUP), the file kept.  Safe
 * while other threads log: a line is written whole in one format. */
void loomi_log_set(int level, int format);
int loomi_log_level(void);
int loomi_log_format(void);

/* Reopen the log file (after rotation; SIGHUP). */
void loomi_log_reopen(void);

/* Close the file and go back to stderr. */
void loomi_log_close(void);

void loomi_log(int level, const char *who, const char *fmt, ...) LOOM_PRINTF(3, 4);
void loomi_vlog(int level, const char *who, const char *fmt, va_list ap) LOOM_PRINTF(3, 0);
bool loomi_log_enabled(int level);

/* "error" … "trace" ↔ LOOM_LOG_*; parse returns -1 for an unknown name. */
int loomi_log_level_parse(const char *name);
const char *loomi_log_level_name(int level);

/* Every line at or above the configured level also goes to fn (NULL to
 * stop), outside the log's lock: the structured log store (logs.c).  fn
 * must not log. */
void loomi_log_set_sink(void (*fn)(int level, const char *who, const char *msg));

/* Tests: every formatted line also goes to fn (NULL to stop). */
void loomi_log_set_hook(void (*fn)(void *arg, int level, const char *who, const char *msg),
                        void *arg);

/* Repeated failures, written once and then counted: a line's kind is who
 * wrote it and its format string.  The first line of a kind is written;
 * lines of the same kind within the window (LOOMI_LOG_LIMIT_WINDOW_MS) are
 * counted instead, and the count is written with the newest of them —
 * "cannot write x: No space left on device (repeated 87 times in the last
 * 60 s)" — by the next line of the kind after the window, or by
 * loomi_log_limited_flush() (the jobs loop calls it every tick) once the
 * window has passed.  Plugins reach it through host->log_limited. */
#define LOOMI_LOG_LIMIT_WINDOW_MS 60000
void loomi_log_limited(int level, const char *who, const char *fmt, ...) LOOM_PRINTF(3, 4);
void loomi_vlog_limited(int level, const char *who, const char *fmt, va_list ap)
	LOOM_PRINTF(3, 0);
void loomi_log_limited_flush(void);
/* Tests: the window (0: the default) and a clock in milliseconds (NULL:
 * CLOCK_MONOTONIC); forgets every kind seen. */
void loomi_log_limit_setup(int64_t window_ms, int64_t (*now_ms)(void));

#define LOG_ERROR(...) loomi_log(LOOM_LOG_ERROR, NULL, __VA_ARGS__)
#define LOG_WARN(...) loomi_log(LOOM_LOG_WARN, NULL, __VA_ARGS__)
#define LOG_INFO(...) loomi_log(LOOM_LOG_INFO, NULL, __VA_ARGS__)
#define LOG_DEBUG(...) loomi_log(LOOM_LOG_DEBUG, NULL, __VA_ARGS__)
#define LOG_ERROR_LIMITED(...) loomi_log_limited(LOOM_LOG_ERROR, NULL, __VA_ARGS__)
#define LOG_WARN_LIMITED(...) loomi_log_limited(LOOM_LOG_WARN, NULL, __VA_ARGS__)

#endif /* LOOM_HOST_LOG_H */

/* Host logging.  One mutex; each line is written and flushed whole, so
 * lines from threads never interleave.  The level and format are read
 * without it (atomically), so that a disabled line costs one load and a
 * SIGHUP can change them while threads log. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "log.h"
#include "util.h"

static pthread_mutex_t log_mtx = PTHREAD_MUTEX_INITIALIZER;
static int log_level = LOOM_LOG_INFO;
static int log_format = LOOMI_LOG_TEXT;
static char *log_path;
static FILE *log_fp;
static void (*log_hook)(void *, int, const char *, const char *);
static void *log_hook_arg;
static void (*log_sink)(int, const char *, const char *);

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

int
loomi_log_level_parse(const char *name)
{
	for (int i = 0; i < 5; i++) {
		if (name && strcmp(name, level_names[i]) == 0)
			return i;
	}
	return -1;
}

const char *
loomi_log_level_name(int level)
{
	return level >= 0 && level < 5 ? level_names[level] : "?";
}

static FILE *
open_log(const char *path, char **err)
{
	FILE *fp = fopen(path, "a");
	if (fp == NULL) {
		if (err)
			*err = loomi_strfmt("cannot open log file %s: %s; check the directory "
			                    "exists and is writable, or set log.file = \"\" for stderr",
			                    path, strerror(errno));
		return NULL;
	}
	setvbuf(fp, NULL, _IOLBF, 0);
	return fp;
}

int
loomi_log_setup(int level, int format, const char *file, char **err)
{
	FILE *fp = NULL;
	char *path = NULL;

	if (file != NULL && file[0] != '\0') {
		if ((fp = open_log(file, err)) == NULL)
			return LOOM_EIO;
		path = loomi_strdup(file);
	}
	pthread_mutex_lock(&log_mtx);
	if (log_fp)
		fclose(log_fp);
	free(log_path);
	log_fp = fp;
	log_path = path;
	__atomic_store_n(&log_level, level, __ATOMIC_RELAXED);
	__atomic_store_n(&log_format, format, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&log_mtx);
	return 0;
}

void
loomi_log_set(int level, int format)
{
	__atomic_store_n(&log_level, level, __ATOMIC_RELAXED);
	__atomic_store_n(&log_format, format, __ATOMIC_RELAXED);
}

int
loomi_log_level(void)
{
	return __atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

int
loomi_log_format(void)
{
	return __atomic_load_n(&log_format, __ATOMIC_RELAXED);
}

void
loomi_log_reopen(void)
{
	pthread_mutex_lock(&log_mtx);
	if (log_path) {
		char *err = NULL;
		FILE *fp = open_log(log_path, &err);
		if (fp) {
			fclose(log_fp);
			log_fp = fp;
		} else if (log_fp) {
			/* keep writing to the old file, and say so there */
			fprintf(log_fp, "log: cannot reopen: %s\n", err ? err : "?");
			fflush(log_fp);
		}
		free(err);
	}
	pthread_mutex_unlock(&log_mtx);
}

void
loomi_log_close(void)
{
	pthread_mutex_lock(&log_mtx);
	if (log_fp)
		fclose(log_fp);
	log_fp = NULL;
	free(log_path);
	log_path = NULL;
	pthread_mutex_unlock(&log_mtx);
}

bool
loomi_log_enabled(int level)
{
	return level <= __atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

void
loomi_log_set_hook(void (*fn)(void *, int, const char *, const char *), void *arg)
{
	pthread_mutex_lock(&log_mtx);
	log_hook_arg = arg;
	__atomic_store_n(&log_hook, fn, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&log_mtx);
}

void
loomi_log_set_sink(void (*fn)(int, const char *, const char *))
{
	__atomic_store_n(&log_sink, fn, __ATOMIC_RELEASE);
}

static void
timestamp(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	         ts.tv_nsec / 1000000);
}

void
loomi_vlog(int level, const char *who, const char *fmt, va_list ap)
{
	char msg[4096], ts[64];
	void (*sink)(int, const char *, const char *);
	FILE *out;
	int format = loomi_log_format(); /* one for the whole line */

	if (!loomi_log_enabled(level) && __atomic_load_n(&log_hook, __ATOMIC_ACQUIRE) == NULL)
		return;
	vsnprintf(msg, sizeof msg, fmt, ap);
	timestamp(ts, sizeof ts);
	if (format == LOOMI_LOG_JSON)
		loomi_utf8_clean(msg); /* cut mid-character, or quoting foreign bytes */

	pthread_mutex_lock(&log_mtx);
	if (log_hook)
		log_hook(log_hook_arg, level, who, msg);
	if (loomi_log_enabled(level)) {
		out = log_fp ? log_fp : stderr;
		if (format == LOOMI_LOG_JSON) {
			json_t *o = json_pack("{s:s, s:s, s:s}", "time", ts, "level",
			                      loomi_log_level_name(level), "msg", msg);
			char *line;
			if (o && who)
				json_object_set_new(o, "plugin", json_string(who));
			line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
			if (line)
				fprintf(out, "%s\n", line);
			else /* never lose a line: say at least when and how bad */
				fprintf(out, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"(a message "
				             "that could not be encoded)\"}\n",
				        ts, loomi_log_level_name(level));
			free(line);
			json_decref(o);
		} else if (who) {
			fprintf(out, "%s %-5s [%s] %s\n", ts, loomi_log_level_name(level), who, msg);
		} else {
			fprintf(out, "%s %-5s %s\n", ts, loomi_log_level_name(level), msg);
		}
		fflush(out);
	}
	pthread_mutex_unlock(&log_mtx);
	sink = __atomic_load_n(&log_sink, __ATOMIC_ACQUIRE);
	if (sink && loomi_log_enabled(level))
		sink(level, who, msg);
}

void
loomi_log(int level, const char *who, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	loomi_vlog(level, who, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------ repeated lines */

/* The kinds of line loomi_vlog_limited has seen lately: a line's kind is
 * who wrote it and its format string (one call site, or one template used
 * from several).  A kind's first line is written; the same kind within the
 * window is counted, not written; the count is reported by the next line
 * of the kind after the window, or by loomi_log_limited_flush() once the
 * window has passed.  A full table reports and reuses its oldest entry. */
#define LIMIT_KINDS 64

static struct {
	pthread_mutex_t mtx;
	int64_t window_ms;
	int64_t (*now_ms)(void);
	size_t n;
	struct {
		char who[64];
		const char *fmt;
		int level;
		int64_t since_ms;  /* the window's start: when the written line was */
		uint64_t repeated; /* lines of the kind not written since */
		char last[512];    /* the newest of them */
	} v[LIMIT_KINDS];
} L = {.mtx = PTHREAD_MUTEX_INITIALIZER, .window_ms = LOOMI_LOG_LIMIT_WINDOW_MS};

static int64_t
limit_now(void)
{
	struct timespec ts;
	if (L.now_ms)
		return L.now_ms();
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
loomi_log_limit_setup(int64_t window_ms, int64_t (*now_ms)(void))
{
	pthread_mutex_lock(&L.mtx);
	L.window_ms = window_ms > 0 ? window_ms : LOOMI_LOG_LIMIT_WINDOW_MS;
	L.now_ms = now_ms;
	L.n = 0;
	pthread_mutex_unlock(&L.mtx);
}

/* A summary line owed for entry i, into out (level in *level); false when
 * none is owed.  With L.mtx held. */
static bool
summary(size_t i, int64_t now, char *out, size_t len, int *level, const char **who)
{
	long long secs;

	if (L.v[i].repeated == 0)
		return false;
	secs = (long long)((now - L.v[i].since_ms + 999) / 1000);
	snprintf(out, len, "%s (repeated %llu time%s in the last %lld s)", L.v[i].last,
	         (unsigned long long)L.v[i].repeated, L.v[i].repeated == 1 ? "" : "s",
	         secs > 0 ? secs : 1);
	*level = L.v[i].level;
	*who = L.v[i].who[0] ? L.v[i].who : NULL;
	return true;
}

/* Write each summary of kinds whose window has passed (and forget them). */
static void
flush_expired(int64_t now)
{
	for (;;) {
		char line[700], who[64];
		const char *w = NULL;
		int level = 0;
		bool owed = false;

		pthread_mutex_lock(&L.mtx);
		for (size_t i = 0; i < L.n && !owed;) {
			if (now - L.v[i].since_ms < L.window_ms) {
				i++;
				continue;
			}
			owed = summary(i, now, line, sizeof line, &level, &w);
			if (owed) {
				snprintf(who, sizeof who, "%s", w ? w : "");
				w = w ? who : NULL;
			}
			L.v[i] = L.v[--L.n];
		}
		pthread_mutex_unlock(&L.mtx);
		if (!owed)
			return;
		loomi_log(level, w, "%s", line);
	}
}

void
loomi_log_limited_flush(void)
{
	flush_expired(limit_now());
}

void
loomi_vlog_limited(int level, const char *who, const char *fmt, va_list ap)
{
	int64_t now = limit_now();
	size_t i;
	bool write = true;

	char evicted[700], evicted_who[64];
	int evicted_level = -1;

	flush_expired(now);
	pthread_mutex_lock(&L.mtx);
	for (i = 0; i < L.n; i++)
		if (L.v[i].fmt == fmt && strcmp(L.v[i].who, who ? who : "") == 0)
			break;
	if (i < L.n) {
		/* within its window (flush_expired forgot the others) */
		vsnprintf(L.v[i].last, sizeof L.v[i].last, fmt, ap);
		L.v[i].repeated++;
		write = false;
	} else {
		if (L.n == LIMIT_KINDS) { /* the oldest goes: its count is reported */
			size_t old = 0;
			const char *w;
			for (size_t k = 1; k < L.n; k++)
				if (L.v[k].since_ms < L.v[old].since_ms)
					old = k;
			if (summary(old, now, evicted, sizeof evicted, &evicted_level, &w))
				snprintf(evicted_who, sizeof evicted_who, "%s", w ? w : "");
			else
				evicted_level = -1;
			L.v[old] = L.v[--L.n];
		}
		i = L.n++;
		memset(&L.v[i], 0, sizeof L.v[i]);
		snprintf(L.v[i].who, sizeof L.v[i].who, "%s", who ? who : "");
		L.v[i].fmt = fmt;
		L.v[i].level = level;
		L.v[i].since_ms = now;
	}
	pthread_mutex_unlock(&L.mtx);
	if (evicted_level >= 0)
		loomi_log(evicted_level, evicted_who[0] ? evicted_who : NULL, "%s", evicted);
	if (write)
		loomi_vlog(level, who, fmt, ap);
}

void
loomi_log_limited(int level, const char *who, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	loomi_vlog_limited(level, who, fmt, ap);
	va_end(ap);
}

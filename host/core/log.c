/* Host logging.  One mutex; each line is written and flushed whole, so
 * lines from threads never interleave. */
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
	log_format = format;
	pthread_mutex_unlock(&log_mtx);
	return 0;
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

	if (!loomi_log_enabled(level) && __atomic_load_n(&log_hook, __ATOMIC_ACQUIRE) == NULL)
		return;
	vsnprintf(msg, sizeof msg, fmt, ap);
	timestamp(ts, sizeof ts);
	if (log_format == LOOMI_LOG_JSON)
		loomi_utf8_clean(msg); /* cut mid-character, or quoting foreign bytes */

	pthread_mutex_lock(&log_mtx);
	if (log_hook)
		log_hook(log_hook_arg, level, who, msg);
	if (level <= log_level) {
		out = log_fp ? log_fp : stderr;
		if (log_format == LOOMI_LOG_JSON) {
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

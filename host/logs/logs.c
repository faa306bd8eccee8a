/* Structured logs (see logs.h).
 *
 * Entries go through a bounded in-memory queue to one writer thread that
 * inserts them in batches, one transaction per batch, on its own SQLite
 * connection: a caller never waits on the database, and a stuck database
 * costs dropped entries (counted, and warned about) rather than memory
 * without bound or a stalled scheduler.
 *
 * The table logs holds every entry (job_id NULL for loomd itself); logs_fts
 * is an external-content FTS5 index of message and fields, so the text is
 * stored once.  The writer indexes each batch with one INSERT … SELECT:
 * measured here, an AFTER INSERT trigger indexing row by row filled at
 * ~6,000 entries/s, the batch statement at ~20,000 (contentless FTS5 was
 * ~28,000 but cannot give the text back for a search).  A trigger removes
 * deleted rows from the index; whoever inserts rows must index them.  Entries older than the retention
 * are appended to <state_dir>/logs/archive/<day>.jsonl.zst, fsynced, and
 * only then deleted. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>
#include <zstd.h>

#include "host/core/log.h"
#include "host/core/util.h"
#include "host/server/module.h"
#include "host/tasks/tasks.h"
#include "logs.h"

/* The queue's bounds: entries, and bytes of text they hold. */
#define QUEUE_MAX 65536
#define QUEUE_BYTES (64u << 20)
#define BATCH_MAX 4096
#define MESSAGE_MAX 16384      /* longer messages are cut */
#define BUSY_TIMEOUT_MS 5000
#define WRITE_TRIES 5          /* a batch the database refuses this often is dropped */
#define KEEPER_PERIOD_S 3600   /* retention runs hourly */
#define EXPIRE_CHUNK 5000
#define JSON_LIMIT_MAX 10000
#define EXPORT_LIMIT_MAX 1000000

const char loomi_logs_migration_sql[] =
	"CREATE TABLE logs (\n"
	"  id       INTEGER PRIMARY KEY,\n"
	"  at       INTEGER NOT NULL,\n"
	"  level    INTEGER NOT NULL,\n"
	"  job_id   INTEGER,\n" /* NULL: loomd itself */
	"  instance TEXT NOT NULL DEFAULT '',\n"
	"  message  TEXT NOT NULL,\n"
	"  fields   TEXT NOT NULL DEFAULT '{}'\n"
	");\n"
	"CREATE INDEX logs_by_job ON logs (job_id, id);\n"
	"CREATE INDEX logs_by_at ON logs (at);\n"
	"CREATE VIRTUAL TABLE logs_fts USING fts5 (message, fields, content='logs',\n"
	"  content_rowid='id');\n"
	"CREATE TRIGGER logs_fts_delete AFTER DELETE ON logs BEGIN\n"
	"  INSERT INTO logs_fts (logs_fts, rowid, message, fields)\n"
	"    VALUES ('delete', old.id, old.message, old.fields);\n"
	"END;\n"
	/* the ids stay, so a client paging with after=N goes on where it was */
	"INSERT INTO logs (id, at, level, job_id, message)\n"
	"  SELECT id, at, level, job_id, message FROM job_logs ORDER BY id;\n"
	"INSERT INTO logs_fts (rowid, message, fields) SELECT id, message, fields FROM logs;\n"
	"DROP TABLE job_logs;\n";

/* A fields text that is not a JSON object is kept, wrapped, rather than lost. */
#define INSERT_SQL                                                                         \
	"INSERT INTO logs (at, level, job_id, instance, message, fields) VALUES (?1, ?2, ?3, "  \
	"?4, ?5, CASE WHEN ?6 IS NULL THEN '{}' WHEN json_valid(?6) THEN CASE WHEN "           \
	"json_type(?6) = 'object' THEN json(?6) ELSE json_object('value', json(?6)) END ELSE " \
	"json_object('text', ?6) END)"

typedef struct entry {
	int64_t at, job;
	int level;
	char *instance, *message, *fields;
	size_t bytes;
} entry;

static struct {
	pthread_mutex_t mtx;
	pthread_cond_t more;       /* the writer: entries queued, or stop */
	pthread_cond_t written;    /* flush: a batch is done */
	pthread_cond_t keeper_cv;  /* the retention thread: stop */
	entry *q;                  /* ring of QUEUE_MAX */
	size_t head, n, bytes;
	uint64_t accepted, done;   /* entries queued, and written (or given up) */
	uint64_t dropped, dropped_told;
	bool running, stopping;
	pthread_t writer, keeper;
	sqlite3 *wdb;              /* the writer's connection */
	sqlite3_stmt *insert;
	sqlite3_stmt *index;       /* the batch into logs_fts */
	sqlite3 *rdb;              /* queries' connection, under rmtx */
	pthread_mutex_t rmtx;
	loomi_daemon *d;
} L = {
	.mtx = PTHREAD_MUTEX_INITIALIZER,
	.more = PTHREAD_COND_INITIALIZER,
	.written = PTHREAD_COND_INITIALIZER,
	.keeper_cv = PTHREAD_COND_INITIALIZER,
	.rmtx = PTHREAD_MUTEX_INITIALIZER,
};

/* The writer's own log lines are not stored: a failing database would
 * otherwise feed itself one warning per failed batch. */
static _Thread_local bool in_writer;

/* ------------------------------------------------------------------ the writer */

static void
entry_free(entry *e)
{
	free(e->instance);
	free(e->message);
	free(e->fields);
}

void
loomi_logs_add(int64_t job_id, const char *instance, int level, const char *message,
               const char *fields_json)
{
	entry e = {0};
	size_t mlen;

	if (message == NULL)
		return;
	{
		/* the alert rules on log lines */
		loomi_event ev = {.kind = LOOMI_EV_LOG_ENTRY, .job = job_id};
		ev.u.log.instance = instance;
		ev.u.log.level = level;
		ev.u.log.message = message;
		ev.u.log.fields = fields_json;
		loomi_events_emit(&ev);
	}
	mlen = strnlen(message, MESSAGE_MAX);
	e.at = loomi_wall_ms();
	e.job = job_id;
	e.level = level < LOOM_LOG_ERROR ? LOOM_LOG_ERROR : level > LOOM_LOG_TRACE ? LOOM_LOG_TRACE
	                                                                           : level;
	e.message = loomi_utf8_clean(loomi_strndup(message, mlen));
	e.instance = instance && instance[0] ? loomi_utf8_clean(loomi_strdup(instance)) : NULL;
	e.fields = fields_json ? loomi_strdup(fields_json) : NULL;
	e.bytes = mlen + (e.instance ? strlen(e.instance) : 0) + (e.fields ? strlen(e.fields) : 0);

	pthread_mutex_lock(&L.mtx);
	if (!L.running || L.stopping || L.n >= QUEUE_MAX || L.bytes + e.bytes > QUEUE_BYTES) {
		L.dropped++;
		pthread_mutex_unlock(&L.mtx);
		entry_free(&e);
		return;
	}
	L.q[(L.head + L.n) % QUEUE_MAX] = e;
	L.n++;
	L.bytes += e.bytes;
	L.accepted++;
	pthread_cond_signal(&L.more);
	pthread_mutex_unlock(&L.mtx);
}

/* loomd's own lines, from log.c: host entries, the plugin instance (or
 * "loomd") as the instance. */
static void
host_sink(int level, const char *who, const char *msg)
{
	if (!in_writer)
		loomi_logs_add(0, who ? who : "loomd", level, msg, NULL);
}

static int
write_batch(const entry *b, size_t n, char **err)
{
	sqlite3_stmt *st = L.insert;
	int rc = SQLITE_OK, rv;
	int64_t first = 0;

	if ((rv = loomi_store_begin(L.wdb, true, err)) != 0)
		return rv;

	for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
		sqlite3_bind_int64(st, 1, b[i].at);
		sqlite3_bind_int(st, 2, b[i].level);
		if (b[i].job > 0)
			sqlite3_bind_int64(st, 3, b[i].job);
		else
			sqlite3_bind_null(st, 3);
		sqlite3_bind_text(st, 4, b[i].instance ? b[i].instance : "", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, b[i].message, -1, SQLITE_STATIC);
		if (b[i].fields)
			sqlite3_bind_text(st, 6, b[i].fields, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(st, 6);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(L.wdb);
		sqlite3_reset(st);
		if (i == 0)
			first = sqlite3_last_insert_rowid(L.wdb);
	}
	sqlite3_clear_bindings(st);
	if (rc == SQLITE_OK) { /* the transaction is ours: ids from first are this batch */
		sqlite3_bind_int64(L.index, 1, first);
		rc = sqlite3_step(L.index) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(L.wdb);
		sqlite3_reset(L.index);
	}
	if (rc != SQLITE_OK)
		*err = loomi_strdup(sqlite3_errmsg(L.wdb));
	return loomi_store_end(L.wdb, rc == SQLITE_OK ? 0 : LOOM_EIO, err);
}

static void
tell_dropped(void)
{
	uint64_t n;

	pthread_mutex_lock(&L.mtx);
	n = L.dropped - L.dropped_told;
	L.dropped_told = L.dropped;
	pthread_mutex_unlock(&L.mtx);
	if (n > 0)
		LOG_WARN("logs: %llu entries dropped because the log queue was full (%d entries): "
		         "the state database is too slow or locked; check its disk",
		         (unsigned long long)n, QUEUE_MAX);
}

static void *
writer_main(void *arg)
{
	entry *batch = loomi_xcalloc(BATCH_MAX, sizeof *batch);

	(void)arg;
	in_writer = true;
	for (;;) {
		size_t n = 0, bytes = 0;

		pthread_mutex_lock(&L.mtx);
		while (L.n == 0 && !L.stopping)
			pthread_cond_wait(&L.more, &L.mtx);
		if (L.n == 0 && L.stopping) {
			pthread_mutex_unlock(&L.mtx);
			break;
		}
		while (n < BATCH_MAX && L.n > 0) {
			batch[n] = L.q[L.head];
			bytes += batch[n++].bytes;
			L.head = (L.head + 1) % QUEUE_MAX;
			L.n--;
		}
		L.bytes -= bytes;
		pthread_mutex_unlock(&L.mtx);

		for (int tries = 1;; tries++) {
			char *err = NULL;
			if (write_batch(batch, n, &err) == 0)
				break;
			if (tries == WRITE_TRIES) {
				LOG_ERROR_LIMITED("logs: cannot store %zu entries in %s: %s; they are lost",
				                  n, L.d->store.path, err);
				pthread_mutex_lock(&L.mtx);
				L.dropped += n;
				L.dropped_told += n; /* said just now, with the cause */
				pthread_mutex_unlock(&L.mtx);
				free(err);
				break;
			}
			LOG_WARN_LIMITED("logs: cannot store %zu entries in %s (try %d of %d): %s", n,
			                 L.d->store.path, tries, WRITE_TRIES, err);
			free(err);
			sleep(1);
		}
		for (size_t i = 0; i < n; i++)
			entry_free(&batch[i]);
		pthread_mutex_lock(&L.mtx);
		L.done += n;
		pthread_cond_broadcast(&L.written);
		pthread_mutex_unlock(&L.mtx);
		tell_dropped();
	}
	free(batch);
	tell_dropped();
	return NULL;
}

bool
loomi_logs_flush(void)
{
	struct timespec until;
	uint64_t target;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&L.mtx);
	target = L.accepted;
	while (L.running && L.done < target &&
	       pthread_cond_timedwait(&L.written, &L.mtx, &until) != ETIMEDOUT)
		;
	ok = L.running && L.done >= target;
	pthread_mutex_unlock(&L.mtx);
	return ok;
}

uint64_t
loomi_logs_dropped(void)
{
	uint64_t n;
	pthread_mutex_lock(&L.mtx);
	n = L.dropped;
	pthread_mutex_unlock(&L.mtx);
	return n;
}

/* ------------------------------------------------------------------ retention */

static int
open_db(const char *path, sqlite3 **db, char **err)
{
	if (sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		*err = loomi_strfmt("logs: cannot open the state database %s: %s", path,
		                    *db ? sqlite3_errmsg(*db) : "out of memory");
		sqlite3_close(*db);
		*db = NULL;
		return LOOM_EIO;
	}
	sqlite3_busy_timeout(*db, BUSY_TIMEOUT_MS);
	/* WAL is the store's; NORMAL is durable across a loomd crash, and a
	 * power cut costs at most the last batches of log lines */
	sqlite3_exec(*db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
	return 0;
}

/* One entry as an object: the API's and the archive's shape. */
static json_t *
row_json(sqlite3_stmt *st, bool with_job)
{
	char *t = loomi_iso_time(sqlite3_column_int64(st, 1));
	const char *inst = (const char *)sqlite3_column_text(st, 4);
	json_t *fields = json_loads((const char *)sqlite3_column_text(st, 6), 0, NULL);
	json_t *o = json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)sqlite3_column_int64(st, 0),
	                      "time", t, "level", loomi_log_level_name(sqlite3_column_int(st, 2)),
	                      "message", (const char *)sqlite3_column_text(st, 5));

	free(t);
	if (o == NULL) { /* only a message jansson cannot take: say so, keep the entry */
		json_decref(fields);
		return json_pack("{s:I, s:s}", "id", (json_int_t)sqlite3_column_int64(st, 0),
		                 "message", "(an entry that could not be encoded)");
	}
	if (with_job) {
		char task[32];
		snprintf(task, sizeof task, "task-%lld", (long long)sqlite3_column_int64(st, 3));
		json_object_set_new(o, "job", sqlite3_column_type(st, 3) == SQLITE_NULL
		                                  ? json_null()
		                                  : json_string(task));
	}
	json_object_set_new(o, "instance", inst && inst[0] ? json_string(inst) : json_null());
	json_object_set_new(o, "fields", fields ? fields : json_object());
	return o;
}

#define ROW_COLUMNS "l.id, l.at, l.level, l.job_id, l.instance, l.message, l.fields"

/* Append buf to dir/<day>.jsonl.zst as one zstd frame and fsync it. */
static int
archive_append(const char *dir, const char *day, const char *buf, size_t len, char **err)
{
	char *name = loomi_strfmt("%s.jsonl.zst", day), *path = loomi_path_join(dir, name);
	size_t cap = ZSTD_compressBound(len), zlen;
	char *z = loomi_xmalloc(cap);
	int fd = -1, rv = 0;
	bool created = access(path, F_OK) != 0;

	free(name);
	zlen = ZSTD_compress(z, cap, buf, len, 3);
	if (ZSTD_isError(zlen)) {
		*err = loomi_strfmt("cannot compress the log archive %s: %s", path,
		                    ZSTD_getErrorName(zlen));
		rv = LOOM_EIO;
		goto out;
	}
	if ((fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640)) < 0)
		goto fail;
	for (size_t off = 0; off < zlen;) {
		ssize_t w = write(fd, z + off, zlen - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			goto fail;
		off += (size_t)w;
	}
	if (fsync(fd) != 0)
		goto fail;
	if (created) { /* the new name must survive a crash too */
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	goto out;
fail:
	*err = loomi_strfmt("cannot write the log archive %s: %s; check the disk and the "
	                    "directory's permissions (the entries stay in the database)",
	                    path, strerror(errno));
	rv = LOOM_EIO;
out:
	if (fd >= 0)
		close(fd);
	free(z);
	free(path);
	return rv;
}

/* Archive (when configured) then delete one chunk of entries older than
 * before_ms; *n receives how many, 0 when none are left. */
static int
expire_chunk(loomi_daemon *d, sqlite3 *db, const char *dir, int64_t before_ms, int64_t *n,
             char **err)
{
	sqlite3_stmt *sel = NULL, *del = NULL;
	int64_t *ids = loomi_xmalloc(EXPIRE_CHUNK * sizeof *ids);
	char *buf = NULL, day[16] = "", *line;
	size_t len = 0, cap = 0;
	int rv = 0, rc;

	*n = 0;
	if (sqlite3_prepare_v2(db, "SELECT " ROW_COLUMNS " FROM logs l WHERE l.at < ?1 "
	                           "ORDER BY l.at, l.id LIMIT ?2", -1, &sel, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "DELETE FROM logs WHERE id = ?", -1, &del, NULL) != SQLITE_OK) {
		*err = loomi_strfmt("logs: cannot read old entries: %s", sqlite3_errmsg(db));
		rv = LOOM_EIO;
		goto out;
	}
	sqlite3_bind_int64(sel, 1, before_ms);
	sqlite3_bind_int(sel, 2, EXPIRE_CHUNK);
	while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
		time_t t = (time_t)(sqlite3_column_int64(sel, 1) / 1000);
		struct tm tm;
		char this_day[16];
		json_t *o;

		ids[(*n)++] = sqlite3_column_int64(sel, 0);
		if (!d->conf.logs_archive)
			continue;
		gmtime_r(&t, &tm);
		strftime(this_day, sizeof this_day, "%Y-%m-%d", &tm);
		/* rows come in time order, so each day's lines are contiguous */
		if (day[0] && strcmp(day, this_day) != 0) {
			if ((rv = archive_append(dir, day, buf, len, err)) != 0)
				goto out;
			len = 0;
		}
		strcpy(day, this_day);
		o = row_json(sel, true);
		line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(o);
		if (line == NULL)
			continue;
		if (len + strlen(line) + 2 > cap) {
			cap = (len + strlen(line) + 2) * 2;
			buf = loomi_xrealloc(buf, cap);
		}
		len += (size_t)sprintf(buf + len, "%s\n", line);
		free(line);
	}
	if (rc != SQLITE_DONE) {
		*err = loomi_strfmt("logs: cannot read old entries: %s", sqlite3_errmsg(db));
		rv = LOOM_EIO;
		goto out;
	}
	if (len > 0 && (rv = archive_append(dir, day, buf, len, err)) != 0)
		goto out;
	/* only now, with the archive on disk, the rows go */
	if ((rv = loomi_store_begin(db, true, err)) != 0)
		goto out;
	for (int64_t i = 0; i < *n; i++) {
		sqlite3_bind_int64(del, 1, ids[i]);
		rc = sqlite3_step(del);
		sqlite3_reset(del);
		if (rc != SQLITE_DONE)
			break;
	}
	if (rc != SQLITE_DONE)
		*err = loomi_strdup(sqlite3_errmsg(db));
	if ((rv = loomi_store_end(db, rc == SQLITE_DONE ? 0 : LOOM_EIO, err)) != 0) {
		char *why = *err;
		*err = loomi_strfmt("logs: cannot delete archived entries: %s (they are archived; "
		                    "the next run archives them again)",
		                    why);
		free(why);
	}
out:
	sqlite3_finalize(sel);
	sqlite3_finalize(del);
	free(ids);
	free(buf);
	return rv;
}

int
loomi_logs_expire(loomi_daemon *d, int64_t before_ms, int64_t *n_out, char **err)
{
	char *dir = loomi_path_join(d->conf.state_dir, "logs/archive");
	sqlite3 *db = NULL;
	int64_t n = 0, total = 0;
	int rv;

	*n_out = 0;
	if (d->conf.logs_archive && loomi_mkdir_p(dir, 0750) != 0) {
		*err = loomi_strfmt("logs: cannot create the archive directory %s: %s; check the "
		                    "state directory's permissions",
		                    dir, strerror(errno));
		free(dir);
		return LOOM_EIO;
	}
	if ((rv = open_db(d->store.path, &db, err)) == 0) {
		do {
			rv = expire_chunk(d, db, dir, before_ms, &n, err);
			total += rv == 0 ? n : 0;
		} while (rv == 0 && n == EXPIRE_CHUNK);
	}
	sqlite3_close(db);
	free(dir);
	*n_out = total;
	return rv;
}

static void *
keeper_main(void *arg)
{
	loomi_daemon *d = arg;

	pthread_mutex_lock(&L.mtx);
	while (!L.stopping) {
		struct timespec until;
		int64_t n = 0;
		char *err = NULL;

		pthread_mutex_unlock(&L.mtx);
		if (d->conf.logs_retention_ms > 0) {
			int64_t before = loomi_wall_ms() - d->conf.logs_retention_ms;
			if (loomi_logs_expire(d, before, &n, &err) != 0)
				LOG_WARN("%s", err);
			else if (n > 0)
				LOG_INFO("logs: %s and deleted %lld entries older than the retention",
				         d->conf.logs_archive ? "archived" : "expired", (long long)n);
			free(err);
		}
		pthread_mutex_lock(&L.mtx);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += KEEPER_PERIOD_S;
		while (!L.stopping &&
		       pthread_cond_timedwait(&L.keeper_cv, &L.mtx, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&L.mtx);
	return NULL;
}

/* ------------------------------------------------------------------ start and stop */

int
loomi_logs_start(loomi_daemon *d, char **err)
{
	int rv;

	if (L.running) {
		*err = loomi_strdup("logs: already started");
		return LOOM_EBUSY;
	}
	if ((rv = open_db(d->store.path, &L.wdb, err)) != 0)
		return rv;
	if ((rv = open_db(d->store.path, &L.rdb, err)) != 0)
		goto fail;
	if (sqlite3_prepare_v3(L.wdb, INSERT_SQL, -1, SQLITE_PREPARE_PERSISTENT, &L.insert, NULL) !=
	        SQLITE_OK ||
	    sqlite3_prepare_v3(L.wdb,
	                       "INSERT INTO logs_fts (rowid, message, fields) SELECT id, message, "
	                       "fields FROM logs WHERE id >= ?",
	                       -1, SQLITE_PREPARE_PERSISTENT, &L.index, NULL) != SQLITE_OK) {
		*err = loomi_strfmt("logs: the state database %s has no logs table (%s); was it "
		                    "migrated?",
		                    d->store.path, sqlite3_errmsg(L.wdb));
		rv = LOOM_ESCHEMA;
		goto fail;
	}
	L.q = loomi_xcalloc(QUEUE_MAX, sizeof *L.q);
	L.head = L.n = L.bytes = 0;
	L.accepted = L.done = 0;
	L.dropped = L.dropped_told = 0;
	L.d = d;
	L.stopping = false;
	L.running = true;
	if (pthread_create(&L.writer, NULL, writer_main, NULL) != 0) {
		L.running = false;
		*err = loomi_strdup("logs: cannot start the writer thread");
		rv = LOOM_ENOMEM;
		goto fail;
	}
	if (pthread_create(&L.keeper, NULL, keeper_main, d) != 0) {
		loomi_logs_stop();
		*err = loomi_strdup("logs: cannot start the retention thread");
		return LOOM_ENOMEM;
	}
	loomi_log_set_sink(host_sink);
	return 0;
fail:
	sqlite3_finalize(L.insert);
	sqlite3_finalize(L.index);
	L.insert = L.index = NULL;
	sqlite3_close(L.rdb);
	sqlite3_close(L.wdb);
	L.rdb = L.wdb = NULL;
	free(L.q);
	L.q = NULL;
	return rv;
}

void
loomi_logs_stop(void)
{
	if (!L.running)
		return;
	loomi_log_set_sink(NULL);
	pthread_mutex_lock(&L.mtx);
	L.stopping = true;
	pthread_cond_signal(&L.more);
	pthread_cond_signal(&L.keeper_cv);
	pthread_mutex_unlock(&L.mtx);
	pthread_join(L.writer, NULL);
	pthread_join(L.keeper, NULL);
	pthread_mutex_lock(&L.mtx);
	L.running = false;
	pthread_cond_broadcast(&L.written);
	pthread_mutex_unlock(&L.mtx);
	sqlite3_finalize(L.insert);
	sqlite3_finalize(L.index);
	L.insert = L.index = NULL;
	sqlite3_close(L.wdb);
	sqlite3_close(L.rdb);
	L.wdb = L.rdb = NULL;
	free(L.q);
	L.q = NULL;
}

/* ------------------------------------------------------------------ queries */

enum { FMT_JSON, FMT_JSONL, FMT_CSV, FMT_TEXT };

typedef struct filter {
	int64_t job;           /* -1 any, 0 loomd's own, else the job */
	char *instance;
	int level;             /* this and worse */
	int64_t since, until;  /* ms, inclusive */
	char *q;
	int64_t after, before, limit;
	bool desc;
	int format;
	const loomi_caller *only; /* not NULL: only entries of tasks it may see */
} filter;

static void
filter_free(filter *f)
{
	free(f->instance);
	free(f->q);
}

/* ms since the epoch from "1700000000000", "2026-11-23", "2026-11-23T08:00:00Z",
 * "…T08:00:00.250+01:00", or "15m" (that long ago). */
static bool
parse_time(const char *s, int64_t *ms)
{
	struct tm tm = {0};
	int64_t frac = 0, off = 0, d;
	const char *p;
	char *end;
	long long x;

	if (*s == '\0')
		return false;
	x = strtoll(s, &end, 10);
	if (*end == '\0') {
		*ms = x;
		return true;
	}
	if (strchr(s, '-') == NULL && loom_parse_duration(s, &d) == 0 && d >= 0) {
		*ms = loomi_wall_ms() - d;
		return true;
	}
	memset(&tm, 0, sizeof tm);
	if ((p = strptime(s, "%Y-%m-%d", &tm)) == NULL)
		return false;
	if (*p == 'T' || *p == ' ') {
		if ((p = strptime(p + 1, "%H:%M", &tm)) == NULL)
			return false;
		if (*p == ':' && (p = strptime(p + 1, "%S", &tm)) == NULL)
			return false;
		if (*p == '.') {
			int digits = 0;
			for (p++; *p >= '0' && *p <= '9'; p++, digits++)
				if (digits < 3)
					frac = frac * 10 + (*p - '0');
			for (; digits < 3; digits++)
				frac *= 10;
		}
		if (*p == 'Z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			int hh, mm;
			if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2)
				return false;
			off = (hh * 60 + mm) * 60 * (*p == '+' ? 1 : -1);
			p += 6;
		}
	}
	if (*p != '\0')
		return false;
	*ms = ((int64_t)timegm(&tm) - off) * 1000 + frac;
	return true;
}

static bool
bad(loomi_http_res *res, const char *key, const char *value, const char *what)
{
	loomi_api_error(res, 400, "bad_request", "%s: \"%s\" is not %s", key, value, what);
	return false;
}

/* Read the query string into f; false after setting a 400 that names the
 * parameter. */
static bool
parse_filter(const loomi_http_req *req, loomi_http_res *res, bool host_route, filter *f)
{
	char *v;
	bool ok = true;

	memset(f, 0, sizeof *f);
	f->job = -1;
	f->level = LOOM_LOG_TRACE;
	f->since = INT64_MIN;
	f->until = INT64_MAX;
	if ((v = loomi_query_get(req->query, "format")) != NULL) {
		static const char *const names[] = {"json", "jsonl", "csv", "text"};
		f->format = -1;
		for (int i = 0; i < 4; i++)
			if (strcmp(v, names[i]) == 0)
				f->format = i;
		if (f->format < 0)
			ok = bad(res, "format", v, "a log format; use json, jsonl, csv or text");
		free(v);
	}
	if (ok && (v = loomi_query_get(req->query, "level")) != NULL) {
		if ((f->level = loomi_log_level_parse(v)) < 0)
			ok = bad(res, "level", v, "a level; use error, warn, info, debug or trace");
		free(v);
	}
	for (int k = 0; ok && k < 2; k++) {
		const char *key = k ? "until" : "since";
		if ((v = loomi_query_get(req->query, key)) != NULL) {
			if (!parse_time(v, k ? &f->until : &f->since))
				ok = bad(res, key, v, "a time; use ISO 8601 (2026-11-23T08:00:00Z), ms since "
				                      "the epoch, or a duration ago (15m, 2h, 7d)");
			free(v);
		}
	}
	if (ok && (v = loomi_query_get(req->query, "order")) != NULL) {
		if (strcmp(v, "asc") != 0 && strcmp(v, "desc") != 0)
			ok = bad(res, "order", v, "an order; use asc or desc");
		f->desc = strcmp(v, "desc") == 0;
		free(v);
	}
	if (ok && (v = loomi_query_get(req->query, "q")) != NULL) {
		if (v[0] == '\0')
			free(v);
		else
			f->q = v;
	}
	if (ok && host_route && (v = loomi_query_get(req->query, "job")) != NULL) {
		if (strcmp(v, "host") == 0 || strcmp(v, "none") == 0)
			f->job = 0;
		else if ((f->job = loomi_job_id_parse(v)) <= 0)
			ok = bad(res, "job", v, "a task id; use task-12, 12, or host for loomd's own");
		free(v);
	}
	if (ok && host_route && (v = loomi_query_get(req->query, "instance")) != NULL)
		f->instance = v;
	ok = ok &&
	     loomi_query_int(res, req->query, "after", 0, 0, INT64_MAX / 2, &f->after) &&
	     loomi_query_int(res, req->query, "before", 0, 0, INT64_MAX / 2, &f->before) &&
	     loomi_query_int(res, req->query, "limit", f->format == FMT_JSON ? 1000 : 100000,
	                         1, f->format == FMT_JSON ? JSON_LIMIT_MAX : EXPORT_LIMIT_MAX,
	                         &f->limit);
	if (!ok)
		filter_free(f);
	return ok;
}

static char *
build_sql(const filter *f)
{
	loomi_strv w = {0};
	char *where, *sql;
	/* with a search, ids are the index's rowids: range and order on them
	 * are read from the index, with no sort of every match */
	const char *id = f->q ? "logs_fts.rowid" : "l.id";

	loomi_strv_push(&w, loomi_strdup("1"));
	if (f->q)
		loomi_strv_push(&w, loomi_strdup("logs_fts MATCH :q"));
	if (f->job > 0)
		loomi_strv_push(&w, loomi_strdup("l.job_id = :job"));
	else if (f->job == 0)
		loomi_strv_push(&w, loomi_strdup("l.job_id IS NULL"));
	if (f->instance)
		loomi_strv_push(&w, loomi_strdup("l.instance = :instance"));
	if (f->only) {
		char *vis = loomi_auth_visible_sql("task", "('task-' || jobs.id)", "jobs.user");
		loomi_strv_push(&w, loomi_strfmt("l.job_id IN (SELECT jobs.id FROM jobs WHERE %s)",
		                                 vis));
		free(vis);
	}
	if (f->level < LOOM_LOG_TRACE)
		loomi_strv_push(&w, loomi_strdup("l.level <= :level"));
	if (f->since != INT64_MIN)
		loomi_strv_push(&w, loomi_strdup("l.at >= :since"));
	if (f->until != INT64_MAX)
		loomi_strv_push(&w, loomi_strdup("l.at <= :until"));
	if (f->after > 0)
		loomi_strv_push(&w, loomi_strfmt("%s > :after", id));
	if (f->before > 0)
		loomi_strv_push(&w, loomi_strfmt("%s < :before", id));
	where = loomi_strv_join(&w, " AND ");
	loomi_strv_free(&w);
	/* With a search, FTS5 yields matches in rowid order, so the join stops
	 * after limit of them instead of sorting every match.  CROSS JOIN keeps
	 * the index outside, and ORDER BY its rowid avoids sorting every match:
	 * measured at 10,000,000 entries, ORDER BY l.id sorted all of them
	 * (1.3 s for a rare word, 6 s for a phrase). */
	sql = loomi_strfmt("SELECT " ROW_COLUMNS " FROM %s WHERE %s ORDER BY %s %s LIMIT :limit",
	                   f->q ? "logs_fts CROSS JOIN logs l ON l.id = logs_fts.rowid" : "logs l",
	                   where, id, f->desc ? "DESC" : "ASC");
	free(where);
	return sql;
}

static void
bind_named_int(sqlite3_stmt *st, const char *name, int64_t v)
{
	int i = sqlite3_bind_parameter_index(st, name);
	if (i > 0)
		sqlite3_bind_int64(st, i, v);
}

static void
bind_filter(sqlite3_stmt *st, const filter *f)
{
	int i;

	if ((i = sqlite3_bind_parameter_index(st, ":q")) > 0)
		sqlite3_bind_text(st, i, f->q, -1, SQLITE_STATIC);
	if ((i = sqlite3_bind_parameter_index(st, ":instance")) > 0)
		sqlite3_bind_text(st, i, f->instance, -1, SQLITE_STATIC);
	bind_named_int(st, ":job", f->job);
	bind_named_int(st, ":level", f->level);
	bind_named_int(st, ":since", f->since);
	bind_named_int(st, ":until", f->until);
	bind_named_int(st, ":after", f->after);
	bind_named_int(st, ":before", f->before);
	bind_named_int(st, ":limit", f->limit);
}

static void
csv_field(loomi_strv *out, const char *s)
{
	if (strpbrk(s, ",\"\r\n") == NULL) {
		loomi_strv_push(out, loomi_strdup(s));
		return;
	}
	size_t n = 2;
	for (const char *p = s; *p; p++)
		n += *p == '"' ? 2 : 1;
	char *q = loomi_xmalloc(n + 1), *o = q;
	*o++ = '"';
	for (const char *p = s; *p; p++) {
		if (*p == '"')
			*o++ = '"';
		*o++ = *p;
	}
	*o++ = '"';
	*o = '\0';
	loomi_strv_push(out, q);
}

/* One entry as a line of the export format. */
static char *
format_line(const json_t *o, int format)
{
	const char *inst = json_string_value(json_object_get(o, "instance"));
	const char *job = json_string_value(json_object_get(o, "job"));
	char *fields = json_dumps(json_object_get(o, "fields"), JSON_COMPACT | JSON_SORT_KEYS);
	char *line = NULL;

	if (format == FMT_JSONL) {
		char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		line = loomi_strfmt("%s\n", s ? s : "{}");
		free(s);
	} else if (format == FMT_CSV) {
		loomi_strv cols = {0};
		char id[32];
		snprintf(id, sizeof id, "%lld",
		         (long long)json_integer_value(json_object_get(o, "id")));
		loomi_strv_push(&cols, loomi_strdup(id));
		csv_field(&cols, json_string_value(json_object_get(o, "time")));
		csv_field(&cols, json_string_value(json_object_get(o, "level")));
		csv_field(&cols, job ? job : "");
		csv_field(&cols, inst ? inst : "");
		csv_field(&cols, json_string_value(json_object_get(o, "message")));
		csv_field(&cols, fields ? fields : "{}");
		char *joined = loomi_strv_join(&cols, ",");
		line = loomi_strfmt("%s\r\n", joined);
		free(joined);
		loomi_strv_free(&cols);
	} else {
		bool has_fields = fields && strcmp(fields, "{}") != 0;
		line = loomi_strfmt("%s %-5s [%s%s%s] %s%s%s\n",
		                    json_string_value(json_object_get(o, "time")),
		                    json_string_value(json_object_get(o, "level")),
		                    job ? job : "loomd", inst ? ":" : "", inst ? inst : "",
		                    json_string_value(json_object_get(o, "message")),
		                    has_fields ? " " : "", has_fields ? fields : "");
	}
	free(fields);
	return line;
}

static const char *
search_help(void)
{
	return "write words (all must match), \"a phrase\" in double quotes, OR / NOT between "
	       "words, or a prefix*";
}

/* Run f; fill res with the JSON page or the export.  status is the task's
 * state for the task route, or NULL. */
static void
run_query(const filter *f, bool with_job, const char *status, loomi_http_res *res)
{
	char *sql = build_sql(f);
	sqlite3_stmt *st = NULL;
	json_t *list = json_array();
	loomi_strv lines = {0};
	int64_t next = f->after;
	int rc;

	/* a reader sees at least what was logged before it asked */
	loomi_logs_flush();
	pthread_mutex_lock(&L.rmtx);
	if (L.rdb == NULL || sqlite3_prepare_v2(L.rdb, sql, -1, &st, NULL) != SQLITE_OK) {
		loomi_api_error(res, 503, "unavailable", "logs: the log store is not open%s%s",
		                L.rdb ? ": " : "", L.rdb ? sqlite3_errmsg(L.rdb) : "");
		goto out;
	}
	bind_filter(st, f);
	if (f->only)
		loomi_auth_bind(st, f->only);
	if (f->format == FMT_CSV)
		loomi_strv_push(&lines, loomi_strdup("id,time,level,job,instance,message,fields\r\n"));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *o = row_json(st, with_job);
		int64_t id = sqlite3_column_int64(st, 0);
		if (id > next)
			next = id;
		if (f->format == FMT_JSON)
			json_array_append_new(list, o);
		else {
			loomi_strv_push(&lines, format_line(o, f->format));
			json_decref(o);
		}
	}
	if (rc != SQLITE_DONE) {
		if (f->q)
			loomi_api_error(res, 400, "bad_request",
			                "q: \"%s\" is not a search the log index understands (%s); %s",
			                f->q, sqlite3_errmsg(L.rdb), search_help());
		else
			loomi_api_error(res, 500, "internal", "logs: the query failed: %s",
			                sqlite3_errmsg(L.rdb));
		goto out;
	}
	res->status = 200;
	if (f->format == FMT_JSON) {
		res->body = json_pack("{s:O, s:I}", "logs", list, "next", (json_int_t)next);
		if (status)
			json_object_set_new(res->body, "status", json_string(status));
		if (f->only) /* what a user who is not an admin gets of GET /api/v1/logs */
			json_object_set_new(res->body, "only", json_string("tasks"));
	} else {
		static const char *const types[] = {NULL, "application/x-ndjson",
		                                    "text/csv; charset=utf-8",
		                                    "text/plain; charset=utf-8"};
		res->text = lines.n ? loomi_strv_join(&lines, "") : loomi_strdup("");
		res->text_len = strlen(res->text);
		res->content_type = types[f->format];
	}
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&L.rmtx);
	loomi_strv_free(&lines);
	json_decref(list);
	free(sql);
}

static void
route_task_logs(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	int64_t id = loomi_jobs_param_task(d, req, LOOMI_ACCESS_READ, res);
	json_t *job;
	filter f;

	if (id <= 0 || !parse_filter(req, res, false, &f))
		return;
	if ((job = loomi_jobs_get(d, id)) == NULL) {
		loomi_api_error(res, 404, "not_found", "there is no task-%lld", (long long)id);
	} else {
		f.job = id;
		run_query(&f, false, json_string_value(json_object_get(job, "status")), res);
	}
	json_decref(job);
	filter_free(&f);
}

/* May c read task id ("task-3")? */
static bool
task_visible(loomi_daemon *d, const loomi_caller *c, const char *id)
{
	char *owner = NULL, canon[LOOMI_OBJECT_ID_MAX];
	bool ok = loomi_jobs_owner(d, id, &owner, canon) == 0 &&
	          loomi_auth_may(d, c, "task", canon, owner, LOOMI_ACCESS_READ);

	free(owner);
	return ok;
}

static void
route_host_logs(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	filter f;

	if (!parse_filter(req, res, true, &f))
		return;
	/* an admin reads everything; others the entries of the tasks they may
	 * see, never loomd's own lines (paths, other users' names and tasks) */
	if (req->caller->role != LOOMI_ROLE_ADMIN) {
		char what[48];
		if (f.job == 0) {
			loomi_api_error(res, 403, "forbidden",
			                "loomd's own log is for admins, and %s is a %s; "
			                "GET /api/v1/training/tasks/{id}/logs reads a task's log",
			                req->caller->name, loomi_role_name(req->caller->role));
			goto out;
		}
		snprintf(what, sizeof what, "task-%lld", (long long)f.job);
		if (f.job > 0 && !task_visible(d, req->caller, what)) {
			loomi_api_error(res, 404, "not_found", "there is no %s", what);
			goto out;
		}
		f.only = req->caller;
	}
	run_query(&f, true, NULL, res);
out:
	filter_free(&f);
}

/* ------------------------------------------------------------------ the module */

static void
on_job_log(loomi_daemon *d, const loomi_event *ev)
{
	(void)d;
	loomi_logs_add(ev->job, ev->u.log.instance, ev->u.log.level, ev->u.log.message,
	               ev->u.log.fields);
}

static void
stop(loomi_daemon *d)
{
	(void)d;
	loomi_logs_stop();
}

static const loomi_migration migrations[] = {
	{9, "structured logs with full-text search", loomi_logs_migration_sql},
	/* Retention deletes the oldest entries, and all of them when none is
	 * newer: without AUTOINCREMENT the next entry would take an id a
	 * client paging with after=N has seen.  The ids stay (logs_fts is
	 * keyed by them). */
	{14, "log entry ids are never reused (AUTOINCREMENT)",
	 "CREATE TABLE logs_new (\n"
	 "  id       INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	 "  at       INTEGER NOT NULL,\n"
	 "  level    INTEGER NOT NULL,\n"
	 "  job_id   INTEGER,\n"
	 "  instance TEXT NOT NULL DEFAULT '',\n"
	 "  message  TEXT NOT NULL,\n"
	 "  fields   TEXT NOT NULL DEFAULT '{}'\n"
	 ");\n"
	 "INSERT INTO logs_new SELECT id, at, level, job_id, instance, message, fields FROM logs;\n"
	 "DROP TABLE logs;\n"
	 "ALTER TABLE logs_new RENAME TO logs;\n"
	 "CREATE INDEX logs_by_job ON logs (job_id, id);\n"
	 "CREATE INDEX logs_by_at ON logs (at);\n"
	 "CREATE TRIGGER logs_fts_delete AFTER DELETE ON logs BEGIN\n"
	 "  INSERT INTO logs_fts (logs_fts, rowid, message, fields)\n"
	 "    VALUES ('delete', old.id, old.message, old.fields);\n"
	 "END;\n"
	 LOOMI_SEQUENCE_AT_LEAST("logs", "SELECT max(id) FROM logs")},
};

static const loomi_route routes[] = {
	{"GET", "/api/v1/training/tasks/{id}/logs", route_task_logs, LOOMI_ACCESS_READ,
	 "format,level,since,until,order,q,after,before,limit"},
	{"GET", "/api/v1/logs", route_host_logs, LOOMI_ACCESS_READ,
	 "format,level,since,until,order,q,job,instance,after,before,limit"},
};

static const loomi_listener listeners[] = {
	{LOOMI_EV_JOB_LOG, on_job_log},
};

/* The writer starts at init, before the plugins load, so that loomd's
 * lines about loading them are stored too. */
const loomi_module loomi_logs_module = {
	.name = "logs",
	.migrations = migrations,
	.n_migrations = LOOMI_N(migrations),
	.init = loomi_logs_start,
	.stop = stop,
	.routes = routes,
	.n_routes = LOOMI_N(routes),
	.listeners = listeners,
	.n_listeners = LOOMI_N(listeners),
};

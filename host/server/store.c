/* The SQLite state store, its migrations, and the state directory lock. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <loom/error.h>
#include <loom/version.h>

#include "host/core/log.h"
#include "host/core/util.h"
#include "module.h"
#include "store.h"

/* What the writes have met (loomi_store_wrote), for messages and /health:
 * one loomd, one store. */
static struct {
	pthread_mutex_t mtx;
	char *dir;     /* the state directory, for messages */
	int failed_rc; /* the last failed write's code; 0 after a success */
} W = {.mtx = PTHREAD_MUTEX_INITIALIZER};

/* The migrations of every module (module.h), in version order: each number
 * owned by one module, none missing.  NULL with *err when the table is
 * inconsistent (a bug that no test would let through). */
static loomi_migration *
collect(size_t *n_out, char **err)
{
	size_t n = 0, k = 0;
	loomi_migration *all;

	for (size_t m = 0; m < loomi_n_modules; m++)
		n += loomi_modules[m]->n_migrations;
	all = loomi_xcalloc(n ? n : 1, sizeof *all);
	for (size_t m = 0; m < loomi_n_modules; m++) {
		for (size_t i = 0; i < loomi_modules[m]->n_migrations; i++) {
			const loomi_migration *mig = &loomi_modules[m]->migrations[i];
			size_t j = k++;
			/* insertion by version */
			while (j > 0 && all[j - 1].version > mig->version) {
				all[j] = all[j - 1];
				j--;
			}
			all[j] = *mig;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (all[i].version != (int)i + 1) {
			*err = loomi_strfmt("the module table's migrations are not numbered 1 to %zu: "
			                    "version %d is %s (a bug)", n, (int)i + 1,
			                    all[i].version == (int)i ? "given twice" : "missing");
			free(all);
			return NULL;
		}
	}
	*n_out = n;
	return all;
}

int
loomi_store_schema_version(void)
{
	int newest = 0;
	for (size_t m = 0; m < loomi_n_modules; m++)
		for (size_t i = 0; i < loomi_modules[m]->n_migrations; i++)
			if (loomi_modules[m]->migrations[i].version > newest)
				newest = loomi_modules[m]->migrations[i].version;
	return newest;
}

static int
exec(sqlite3 *db, const char *sql, char **err, const char *what)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		*err = loomi_strfmt("%s: %s", what, msg ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		return LOOM_EIO;
	}
	return 0;
}

static int
current_version(sqlite3 *db, int *version, char **err)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(db, "SELECT coalesce(max(version), 0) FROM schema_migrations", -1,
	                       &st, NULL) != SQLITE_OK) {
		*err = loomi_strfmt("cannot read the schema version: %s", sqlite3_errmsg(db));
		return LOOM_EIO;
	}
	rc = sqlite3_step(st);
	*version = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW) {
		*err = loomi_strfmt("cannot read the schema version: %s", sqlite3_errmsg(db));
		return LOOM_EIO;
	}
	return 0;
}

/* Migrations run with foreign keys off, so that one can rebuild a table
 * others refer to (SQLite's "making other kinds of table schema changes"):
 * rows referring to missing rows are counted before and after each, and a
 * migration that adds any is rolled back.  -1 when they cannot be counted. */
static long long
dangling_references(sqlite3 *db, char **what)
{
	sqlite3_stmt *st;
	long long n = 0;
	int rc;

	if (sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &st, NULL) != SQLITE_OK)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n++ == 0 && what)
			*what = loomi_strfmt("a row of %s refers to a missing row of %s",
			                     (const char *)sqlite3_column_text(st, 0),
			                     (const char *)sqlite3_column_text(st, 2));
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? n : -1;
}

static int
foreign_keys_hold(sqlite3 *db, long long before, char **err)
{
	char *what = NULL;
	long long after = dangling_references(db, &what);

	if (after >= 0 && after <= before) {
		free(what);
		return 0;
	}
	*err = after < 0 ? loomi_strfmt("cannot check foreign keys: %s", sqlite3_errmsg(db))
	                 : loomi_strfmt("it would leave %lld more rows referring to missing ones "
	                                "(%s)",
	                                after - before, what);
	free(what);
	return LOOM_EIO;
}

static int
migrate(loomi_store *s, const loomi_migration *migs, size_t n, char **err)
{
	int version, rv, newest = n ? migs[n - 1].version : 0;
	long long dangling;

	if ((rv = exec(s->db,
	               "CREATE TABLE IF NOT EXISTS schema_migrations (\n"
	               "  version     INTEGER PRIMARY KEY,\n"
	               "  description TEXT NOT NULL,\n"
	               "  applied_at  INTEGER NOT NULL\n"
	               ")",
	               err, "cannot create the schema_migrations table")) != 0)
		return rv;
	if ((rv = current_version(s->db, &version, err)) != 0)
		return rv;
	if (version > newest) {
		*err = loomi_strfmt("the state database %s has schema version %d, newer than this "
		                    "Loom (%s) understands (%d); it was written by a newer loomd. "
		                    "Upgrade Loom, or use another --state-dir; the database was "
		                    "not changed",
		                    s->path, version, LOOM_VERSION_STRING, newest);
		return LOOM_ESCHEMA;
	}
	for (size_t i = 0; i < n; i++) {
		const loomi_migration *m = &migs[i];
		sqlite3_stmt *st;
		int rc;

		if (m->version <= version)
			continue;
		if ((rv = exec(s->db, "BEGIN IMMEDIATE", err, "cannot begin a migration")) != 0)
			return rv;
		if ((dangling = dangling_references(s->db, NULL)) < 0)
			dangling = INT64_MAX; /* cannot tell: do not hold the migration to it */
		if (exec(s->db, m->sql, err, "migration failed") != 0 ||
		    foreign_keys_hold(s->db, dangling, err) != 0) {
			char *inner = *err;
			*err = loomi_strfmt("cannot migrate %s to schema version %d (%s): %s; the "
			                    "database was left at version %d",
			                    s->path, m->version, m->description, inner, version);
			free(inner);
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
			return LOOM_EIO;
		}
		rc = sqlite3_prepare_v2(s->db,
		                        "INSERT INTO schema_migrations (version, description, "
		                        "applied_at) VALUES (?, ?, ?)",
		                        -1, &st, NULL);
		if (rc == SQLITE_OK) {
			sqlite3_bind_int(st, 1, m->version);
			sqlite3_bind_text(st, 2, m->description, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 3, loomi_wall_ms());
			rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
			sqlite3_finalize(st);
		}
		if (rc != SQLITE_OK ||
		    exec(s->db, "COMMIT", err, "cannot commit a migration") != 0) {
			if (rc != SQLITE_OK)
				*err = loomi_strfmt("cannot record migration %d: %s", m->version,
				                    sqlite3_errmsg(s->db));
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
			return LOOM_EIO;
		}
		LOG_INFO("state database %s migrated to schema version %d (%s)", s->path,
		         m->version, m->description);
		version = m->version;
	}
	s->version = version;
	return 0;
}

int
loomi_store_open_with(loomi_store *s, const char *path, const loomi_migration *migs,
                      size_t n_migs, char **err)
{
	sqlite3_stmt *st;
	int rc, rv;

	memset(s, 0, sizeof *s);
	s->path = loomi_strdup(path);
	{
		const char *slash = strrchr(path, '/');
		pthread_mutex_lock(&W.mtx);
		free(W.dir);
		W.dir = slash ? loomi_strfmt("%.*s", slash > path ? (int)(slash - path) : 1, path)
		              : loomi_strdup(".");
		W.failed_rc = 0;
		pthread_mutex_unlock(&W.mtx);
	}
	rc = sqlite3_open_v2(path, &s->db,
	                     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
	if (rc != SQLITE_OK) {
		*err = loomi_strfmt("cannot open the state database %s: %s; check that the state "
		                    "directory exists and is writable",
		                    path, s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
		loomi_store_close(s);
		return LOOM_EIO;
	}
	sqlite3_busy_timeout(s->db, 5000);
	sqlite3_extended_result_codes(s->db, 1);

	/* Is it a database at all?  (A stray file named loom.db is refused
	 * here rather than overwritten.) */
	rc = sqlite3_prepare_v2(s->db, "SELECT count(*) FROM sqlite_master", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		sqlite3_finalize(st);
	}
	if (rc != SQLITE_ROW) {
		*err = loomi_strfmt("%s is not a usable SQLite database (%s); move it away or use "
		                    "another --state-dir",
		                    path, sqlite3_errmsg(s->db));
		loomi_store_close(s);
		return LOOM_ECORRUPT;
	}
	/* A database from a newer Loom is refused before anything is written
	 * to it (not even the journal mode). */
	{
		int version = 0, newest = n_migs ? migs[n_migs - 1].version : 0;
		rc = sqlite3_prepare_v2(s->db,
		                        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
		                        "name = 'schema_migrations'",
		                        -1, &st, NULL);
		if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) > 0 &&
		    (rv = current_version(s->db, &version, err)) != 0) {
			sqlite3_finalize(st);
			loomi_store_close(s);
			return rv;
		}
		sqlite3_finalize(st);
		if (version > newest) {
			*err = loomi_strfmt("the state database %s has schema version %d, newer than this "
			                    "Loom (%s) understands (%d); it was written by a newer loomd. "
			                    "Upgrade Loom, or use another --state-dir; the database was "
			                    "not changed",
			                    s->path, version, LOOM_VERSION_STRING, newest);
			loomi_store_close(s);
			return LOOM_ESCHEMA;
		}
	}
	if ((rv = exec(s->db, "PRAGMA journal_mode = WAL", err, "cannot enable WAL")) != 0 ||
	    (rv = exec(s->db, "PRAGMA synchronous = NORMAL", err, "cannot set synchronous")) != 0 ||
	    (rv = exec(s->db, "PRAGMA foreign_keys = OFF", err, "cannot set foreign keys")) != 0 ||
	    (rv = migrate(s, migs, n_migs, err)) != 0 ||
	    (rv = exec(s->db, "PRAGMA foreign_keys = ON", err, "cannot enable foreign keys")) != 0) {
		loomi_store_close(s);
		return rv;
	}
	/* WAL needs shared memory; some network filesystems refuse it. */
	if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) &&
		    strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0)
			LOG_WARN("state database %s: journal mode is %s, not WAL (the filesystem may not "
			         "support it); loomd works, with less concurrency",
			         s->path, (const char *)sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
	}
	return 0;
}

int
loomi_store_open(loomi_store *s, const char *path, char **err)
{
	size_t n;
	loomi_migration *migs = collect(&n, err);
	int rv;

	memset(s, 0, sizeof *s);
	if (migs == NULL)
		return LOOM_EINTERNAL;
	rv = loomi_store_open_with(s, path, migs, n, err);
	free(migs);
	return rv;
}

void
loomi_store_close(loomi_store *s)
{
	if (s->db)
		sqlite3_close_v2(s->db);
	free(s->path);
	memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------------ writes */

/* The probe of GET /health: room for the database and its WAL to grow by
 * this much, reserved in a file of the state directory and freed. */
#define PROBE_BYTES (256 * 1024)
#define PROBE_NAME ".loomd-health-probe"

static __thread int thread_rc; /* this thread's last failed write */

static bool
is_full(int rc)
{
	return (rc & 0xff) == SQLITE_FULL || rc == SQLITE_IOERR_WRITE ||
	       rc == SQLITE_IOERR_FSYNC || rc == SQLITE_IOERR_SHMSIZE ||
	       rc == SQLITE_IOERR_TRUNCATE;
}

/* What to do about a failed write, for messages. */
static char *
remedy(int rc)
{
	const char *dir = W.dir ? W.dir : "the state directory";

	if (is_full(rc))
		return loomi_strfmt("free space under %s and retry", dir);
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return loomi_strdup("another writer held the database; retry");
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_CANTOPEN:
		return loomi_strfmt("make %s and its files writable by loomd and retry", dir);
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return loomi_strfmt("stop loomd and check %s/loom.db (sqlite3 loom.db \"PRAGMA "
		                    "integrity_check\")", dir);
	default:
		return loomi_strfmt("check the disk holding %s and loomd's log, then retry", dir);
	}
}

/* A failure of the store (its disk, its file), not of the statement: it
 * counts for /health. */
static bool
store_failure(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:       /* another writer, for a while */
	case SQLITE_LOCKED:
	case SQLITE_CONSTRAINT: /* the write was wrong, not the store */
	case SQLITE_MISMATCH:
	case SQLITE_RANGE:
	case SQLITE_MISUSE:
	case SQLITE_ERROR:      /* SQL error, or a savepoint's name */
	case SQLITE_INTERRUPT:
		return false;
	default:
		return true;
	}
}

int
loomi_store_wrote(sqlite3 *db, int rc)
{
	(void)db;
	if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW) {
		pthread_mutex_lock(&W.mtx);
		/* a write that changed nothing may succeed on a full disk: only
		 * the probe says space has returned */
		if (W.failed_rc != 0 && !is_full(W.failed_rc))
			W.failed_rc = 0;
		pthread_mutex_unlock(&W.mtx);
		return 0;
	}
	/* the message names the cause: a failure of the store itself outranks
	 * what followed from it (a ROLLBACK TO with nothing to undo …) */
	if (thread_rc == 0 || (!store_failure(thread_rc) && store_failure(rc)))
		thread_rc = rc;
	if (!store_failure(rc)) {
		LOG_ERROR_LIMITED("state database: a statement failed: %s",
		                  db && sqlite3_extended_errcode(db) == rc ? sqlite3_errmsg(db)
		                                                           : sqlite3_errstr(rc));
		return LOOM_EIO;
	}
	pthread_mutex_lock(&W.mtx);
	W.failed_rc = rc;
	pthread_mutex_unlock(&W.mtx);
	{
		char *fix = remedy(rc);
		LOG_ERROR_LIMITED("state database: a write failed: %s; %s", sqlite3_errstr(rc), fix);
		free(fix);
	}
	return LOOM_EIO;
}

char *
loomi_store_errmsg(const char *what)
{
	int rc = thread_rc ? thread_rc : SQLITE_IOERR;
	char *fix = remedy(rc), *msg;

	thread_rc = 0; /* told: the next failure starts afresh */
	msg = loomi_strfmt("%s could not be stored: %s; %s", what, sqlite3_errstr(rc), fix);
	free(fix);
	return msg;
}

bool
loomi_store_writable(loomi_store *s, char **cause)
{
	char *probe = loomi_path_join(W.dir ? W.dir : ".", PROBE_NAME);
	int fd, e = 0, failed;

	(void)s;
	*cause = NULL;
	fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		e = errno;
	else if ((e = posix_fallocate(fd, 0, PROBE_BYTES)) == EINVAL || e == EOPNOTSUPP)
		e = 0; /* a filesystem that cannot say: the writes will */
	if (fd >= 0)
		close(fd);
	unlink(probe);
	free(probe);
	pthread_mutex_lock(&W.mtx);
	if (e == 0 && W.failed_rc != 0 && is_full(W.failed_rc))
		W.failed_rc = 0; /* space has returned */
	failed = W.failed_rc;
	pthread_mutex_unlock(&W.mtx);
	if (e == ENOSPC || e == EDQUOT) {
		*cause = loomi_strfmt("the state directory %s has no room to write (%s); free space "
		                      "there",
		                      W.dir ? W.dir : ".", strerror(e));
		return false;
	}
	if (e != 0) {
		*cause = loomi_strfmt("the state directory %s cannot be written (%s); make it "
		                      "writable by loomd",
		                      W.dir ? W.dir : ".", strerror(e));
		return false;
	}
	if (failed != 0) {
		char *fix = remedy(failed);
		*cause = loomi_strfmt("the last write to the state database failed: %s; %s",
		                      sqlite3_errstr(failed), fix);
		free(fix);
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------ transactions */

static int64_t
mono_ms(void)
{
	return (int64_t)(loomi_mono_ns() / 1000000);
}

static int
tx_fail(sqlite3 *db, char **err, int code, const char *what)
{
	free(*err);
	if (code == LOOM_EBUSY)
		*err = loomi_strfmt("the state database stayed locked by another writer for %d s while "
		                    "trying to %s; try again",
		                    LOOMI_STORE_WAIT_MS / 1000, what);
	else
		*err = loomi_strfmt("the state database failed to %s: %s", what, sqlite3_errmsg(db));
	LOG_ERROR_LIMITED("store: %s", *err);
	return code;
}

int
loomi_store_begin(sqlite3 *db, bool write, char **err)
{
	sqlite3_mutex *m = sqlite3_db_mutex(db);
	int64_t deadline = mono_ms() + LOOMI_STORE_WAIT_MS;
	int rc;

	/* Both waits give the connection back between tries.  Another thread
	 * may be between two steps of a statement on this connection (a read
	 * outside a transaction): its snapshot then makes BEGIN IMMEDIATE
	 * answer SQLITE_BUSY_SNAPSHOT until that statement is reset, which it
	 * can only do with the connection's mutex — held across the wait, the
	 * two stood still until the deadline (a labeling round's read and the
	 * jobs thread's write, 30 s) */
	for (bool logged = false;;) {
		sqlite3_mutex_enter(m);
		if (!sqlite3_get_autocommit(db)) {
			sqlite3_mutex_leave(m);
			if (mono_ms() > deadline)
				return tx_fail(db, err, LOOM_EBUSY, "begin a transaction (another thread's "
				                                    "transaction stayed open)");
			usleep(1000);
			continue;
		}
		/* the busy handler waits the connection's busy timeout; past it,
		 * again until the deadline.  Extended result codes are on: a busy
		 * of any kind (SQLITE_BUSY_RECOVERY, _SNAPSHOT, _TIMEOUT) is
		 * waited out too — it was not, and a registration failed after
		 * 40 ms ("database is locked") */
		rc = sqlite3_exec(db, write ? "BEGIN IMMEDIATE" : "BEGIN", NULL, NULL, NULL);
		if ((rc & 0xff) != SQLITE_BUSY || mono_ms() >= deadline)
			break;
		sqlite3_mutex_leave(m);
		if (!logged)
			LOG_WARN("store: waiting for another writer to release the state database");
		logged = true;
		usleep(10000);
	}
	if (rc != SQLITE_OK) {
		rc = tx_fail(db, err, (rc & 0xff) == SQLITE_BUSY ? LOOM_EBUSY : LOOM_EIO,
		             "begin a transaction");
		sqlite3_mutex_leave(m);
		return rc;
	}
	return 0;
}

int
loomi_store_end(sqlite3 *db, int rv, char **err)
{
	/* a commit that failed is answered like any write (loomi_store_wrote):
	 * the cause and what to do, 503 */
	if (rv == 0 &&
	    loomi_store_wrote(db, sqlite3_exec(db, "COMMIT", NULL, NULL, NULL)) != 0) {
		free(*err);
		*err = loomi_store_errmsg("the change");
		rv = LOOM_EIO;
	}
	if (!sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_mutex_leave(sqlite3_db_mutex(db));
	return rv;
}

/* ------------------------------------------------------------------ a module's statements */

int
loomi_store_failed(sqlite3 *db, const char *module, const char *what, char **msg)
{
	int rc = sqlite3_extended_errcode(db);

	free(*msg);
	if (loomi_store_wrote(db, rc) == LOOM_EIO && rc != SQLITE_ERROR &&
	    (rc & 0xff) != SQLITE_BUSY) {
		*msg = loomi_store_errmsg("the change");
		return LOOM_EIO;
	}
	LOG_ERROR("%s: %s: %s", module, what, sqlite3_errmsg(db));
	*msg = loomi_strfmt("the state database failed to %s (%s); see loomd's log", what,
	                    sqlite3_errmsg(db));
	return LOOM_EIO;
}

sqlite3_stmt *
loomi_store_prep(sqlite3 *db, const char *module, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		LOG_ERROR("%s: cannot prepare \"%s\": %s", module, sql, sqlite3_errmsg(db));
		sqlite3_finalize(st);
		return NULL;
	}
	return st;
}

int
loomi_store_step_done(sqlite3 *db, sqlite3_stmt *st, const char *module, const char *what,
                      char **msg)
{
	int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : loomi_store_failed(db, module, what, msg);
}

/* ------------------------------------------------------------------ the state directory */

int
loomi_statedir_lock(const char *dir, int *fd_out, char **err)
{
	char *path;
	char buf[32];
	int fd, rv;

	if ((rv = loomi_mkdir_p(dir, 0750)) != 0) {
		*err = loomi_strfmt("cannot create the state directory %s: %s; create it or choose "
		                    "another with --state-dir",
		                    dir, strerror(rv));
		return LOOM_EIO;
	}
	path = loomi_path_join(dir, "loomd.pid");
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		*err = loomi_strfmt("cannot open %s: %s", path, strerror(errno));
		free(path);
		return LOOM_EIO;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
		long pid = 0;
		if (n > 0) {
			buf[n] = '\0';
			pid = strtol(buf, NULL, 10);
		}
		if (pid > 0)
			*err = loomi_strfmt("another loomd (pid %ld) is running on the state directory "
			                    "%s; stop it, or give this one another --state-dir",
			                    pid, dir);
		else
			*err = loomi_strfmt("another loomd is running on the state directory %s; stop "
			                    "it, or give this one another --state-dir",
			                    dir);
		close(fd);
		free(path);
		return LOOM_EBUSY;
	}
	snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, strlen(buf), 0) < 0) {
		*err = loomi_strfmt("cannot write %s: %s", path, strerror(errno));
		close(fd);
		free(path);
		return LOOM_EIO;
	}
	free(path);
	*fd_out = fd;
	return 0;
}

void
loomi_statedir_unlock(const char *dir, int fd)
{
	/* The file stays: unlinking it while locked would let two daemons lock
	 * two different files.  Emptied, it names no process. */
	if (fd < 0)
		return;
	if (ftruncate(fd, 0) != 0)
		LOG_WARN("cannot empty %s/loomd.pid: %s", dir, strerror(errno));
	close(fd);
}

/* host/store: migrations, the schema-version table, refusal of newer
 * schemas, integrity constraints, and the state directory lock. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "host/server/store.h"
#include "host/core/util.h"
#include "testutil.h"

#define ASSERT_HAS(text, needle)                                                          \
	ck_assert_msg(strstr((text), (needle)) != NULL, "expected \"%s\" in:\n%s", (needle),   \
	              (text))

static char *dir, *db;

static void
setup(void)
{
	dir = tu_tmpdir();
	db = loomi_path_join(dir, "loom.db");
}

static void
teardown(void)
{
	tu_rmrf(dir);
	free(dir);
	free(db);
}

static long long
scalar(sqlite3 *h, const char *sql)
{
	sqlite3_stmt *st;
	long long v = -1;
	ck_assert_int_eq(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static const char *
text(sqlite3 *h, const char *sql, char *buf, size_t len)
{
	sqlite3_stmt *st;
	buf[0] = '\0';
	ck_assert_int_eq(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
		snprintf(buf, len, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return buf;
}

static int
exec(sqlite3 *h, const char *sql)
{
	return sqlite3_exec(h, sql, NULL, NULL, NULL);
}

START_TEST(fresh_database)
{
	loomi_store s;
	char *err = NULL, buf[64];

	ck_assert_int_eq(loomi_store_open(&s, db, &err), 0);
	ck_assert_int_eq(s.version, loomi_store_schema_version());
	ck_assert_int_ge(s.version, 1);
	ck_assert_str_eq(text(s.db, "PRAGMA journal_mode", buf, sizeof buf), "wal");
	ck_assert_int_eq(scalar(s.db, "PRAGMA foreign_keys"), 1);
	ck_assert_int_eq(scalar(s.db, "SELECT count(*) FROM schema_migrations"), s.version);
	ck_assert_int_eq(scalar(s.db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
	                              "AND name IN ('jobs', 'job_deps', 'job_events', 'meta')"),
	                 4);
	loomi_store_close(&s);

	/* reopening applies nothing new */
	ck_assert_int_eq(loomi_store_open(&s, db, &err), 0);
	ck_assert_int_eq(scalar(s.db, "SELECT count(*) FROM schema_migrations"), s.version);
	loomi_store_close(&s);
}
END_TEST

START_TEST(constraints)
{
	loomi_store s;
	char *err = NULL;

	ck_assert_int_eq(loomi_store_open(&s, db, &err), 0);
	ck_assert_int_eq(exec(s.db, "INSERT INTO jobs (name, compute, spec, created_at, updated_at) "
	                            "VALUES ('a', 'transformer', '{}', 1, 1), "
	                            "('b', 'transformer', '{}', 1, 1)"),
	                 SQLITE_OK);
	ck_assert_int_eq(scalar(s.db, "SELECT count(*) FROM jobs WHERE state = 'pending'"), 2);
	/* events and dependencies must name existing jobs */
	ck_assert_int_ne(exec(s.db, "INSERT INTO job_events (job_id, at, to_state) VALUES (99, 1, "
	                            "'running')"),
	                 SQLITE_OK);
	ck_assert_int_ne(exec(s.db, "INSERT INTO job_deps (job_id, after_id) VALUES (1, 99)"),
	                 SQLITE_OK);
	ck_assert_int_ne(exec(s.db, "INSERT INTO job_deps (job_id, after_id) VALUES (1, 1)"),
	                 SQLITE_OK);
	ck_assert_int_eq(exec(s.db, "INSERT INTO job_deps (job_id, after_id) VALUES (2, 1)"),
	                 SQLITE_OK);
	/* only the six states; only valid JSON specs */
	ck_assert_int_ne(exec(s.db, "UPDATE jobs SET state = 'done' WHERE id = 1"), SQLITE_OK);
	ck_assert_int_ne(exec(s.db, "INSERT INTO jobs (name, compute, spec, created_at, "
	                            "updated_at) VALUES ('c', 't', '{not json', 1, 1)"),
	                 SQLITE_OK);
	/* deleting a job takes its events along; a job others depend on stays */
	ck_assert_int_eq(exec(s.db, "INSERT INTO job_events (job_id, at, to_state) VALUES (2, 1, "
	                            "'running')"),
	                 SQLITE_OK);
	ck_assert_int_ne(exec(s.db, "DELETE FROM jobs WHERE id = 1"), SQLITE_OK);
	ck_assert_int_eq(exec(s.db, "DELETE FROM jobs WHERE id = 2"), SQLITE_OK);
	ck_assert_int_eq(scalar(s.db, "SELECT count(*) FROM job_events"), 0);
	ck_assert_int_eq(scalar(s.db, "SELECT count(*) FROM job_deps"), 0);
	loomi_store_close(&s);
}
END_TEST

/* job_counts, kept by triggers, always equals a count of the rows */
START_TEST(job_counts_follow_the_rows)
{
	static const char *const changes[] = {
		"INSERT INTO jobs (name, user, compute, spec, created_at, updated_at) VALUES "
		"('a', 'ann', 't', '{}', 1, 1), ('b', 'ann', 't', '{}', 1, 1), "
		"('c', 'bob', 't', '{}', 1, 1)",
		"UPDATE jobs SET state = 'running' WHERE id IN (1, 3)",
		"UPDATE jobs SET state = 'running' WHERE id = 1", /* no change */
		"UPDATE jobs SET progress_step = 5",               /* not the state */
		"UPDATE jobs SET state = 'completed', user = 'cid' WHERE id = 3",
		"UPDATE jobs SET user = 'bob' WHERE id = 2",
		"DELETE FROM jobs WHERE id = 1",
	};
	static const char *const differ =
		"SELECT count(*) FROM (SELECT user, state, count(*) AS n FROM jobs GROUP BY 1, 2"
		" EXCEPT SELECT user, state, n FROM job_counts WHERE n > 0) ";
	loomi_store s;
	char *err = NULL;

	ck_assert_int_eq(loomi_store_open(&s, db, &err), 0);
	for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
		ck_assert_int_eq(exec(s.db, changes[i]), SQLITE_OK);
		ck_assert_msg(scalar(s.db, differ) == 0, "job_counts wrong after %s", changes[i]);
		ck_assert_int_eq(scalar(s.db, "SELECT sum(n) FROM job_counts"),
		                 scalar(s.db, "SELECT count(*) FROM jobs"));
	}
	ck_assert_int_eq(scalar(s.db, "SELECT n FROM job_counts WHERE user = 'bob' AND "
	                              "state = 'pending'"),
	                 1);
	loomi_store_close(&s);
}
END_TEST

START_TEST(newer_schema_refused)
{
	loomi_store s;
	char *err = NULL;
	long long jobs;

	ck_assert_int_eq(loomi_store_open(&s, db, &err), 0);
	ck_assert_int_eq(exec(s.db, "INSERT INTO schema_migrations VALUES (999, 'from the future', 1);"
	                            "INSERT INTO jobs (name, compute, spec, created_at, updated_at) "
	                            "VALUES ('keep', 't', '{}', 1, 1)"),
	                 SQLITE_OK);
	loomi_store_close(&s);

	ck_assert_int_eq(loomi_store_open(&s, db, &err), LOOM_ESCHEMA);
	ASSERT_HAS(err, "has schema version 999, newer than this Loom");
	ASSERT_HAS(err, db);
	ASSERT_HAS(err, "the database was not changed");
	free(err);
	ck_assert_ptr_null(s.db);

	/* untouched */
	{
		sqlite3 *h;
		ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
		jobs = scalar(h, "SELECT count(*) FROM jobs");
		ck_assert_int_eq(jobs, 1);
		ck_assert_int_eq(scalar(h, "SELECT max(version) FROM schema_migrations"), 999);
		sqlite3_close(h);
	}
}
END_TEST

START_TEST(newer_schema_untouched)
{
	loomi_store s;
	char *err = NULL, buf[32];
	sqlite3 *h;

	/* a database a newer Loom wrote, still in rollback-journal mode */
	ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
	ck_assert_int_eq(exec(h, "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
	                         "description TEXT NOT NULL, applied_at INTEGER NOT NULL);"
	                         "INSERT INTO schema_migrations VALUES (1000, 'future', 1);"),
	                 SQLITE_OK);
	sqlite3_close(h);
	ck_assert_int_eq(loomi_store_open(&s, db, &err), LOOM_ESCHEMA);
	free(err);
	ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
	ck_assert_str_eq(text(h, "PRAGMA journal_mode", buf, sizeof buf), "delete");
	ck_assert_int_eq(scalar(h, "SELECT count(*) FROM sqlite_master"), 1);
	sqlite3_close(h);
}
END_TEST

START_TEST(failed_migration_rolls_back)
{
	static const loomi_migration migs[] = {
		{1, "first", "CREATE TABLE t (x INTEGER);"},
		{2, "broken", "CREATE TABLE u (y INTEGER); INSERT INTO nowhere VALUES (1);"},
	};
	loomi_store s;
	char *err = NULL;
	sqlite3 *h;

	ck_assert_int_eq(loomi_store_open_with(&s, db, migs, 2, &err), LOOM_EIO);
	ASSERT_HAS(err, "cannot migrate");
	ASSERT_HAS(err, "to schema version 2 (broken)");
	ASSERT_HAS(err, "no such table: nowhere");
	ASSERT_HAS(err, "left at version 1");
	free(err);

	ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
	ck_assert_int_eq(scalar(h, "SELECT max(version) FROM schema_migrations"), 1);
	ck_assert_int_eq(scalar(h, "SELECT count(*) FROM sqlite_master WHERE name = 't'"), 1);
	ck_assert_int_eq(scalar(h, "SELECT count(*) FROM sqlite_master WHERE name = 'u'"), 0);
	sqlite3_close(h);

	/* with the migration fixed, the next open completes the upgrade */
	{
		static const loomi_migration fixed[] = {
			{1, "first", "CREATE TABLE t (x INTEGER);"},
			{2, "fixed", "CREATE TABLE u (y INTEGER);"},
		};
		ck_assert_int_eq(loomi_store_open_with(&s, db, fixed, 2, &err), 0);
		ck_assert_int_eq(s.version, 2);
		loomi_store_close(&s);
	}
}
END_TEST

START_TEST(not_a_database)
{
	loomi_store s;
	char *err = NULL, *path;

	path = tu_write(dir, "junk.db", "this is a text file, not SQLite, and it is long enough "
	                                "to have a header that SQLite will look at and refuse.\n");
	ck_assert_int_eq(loomi_store_open(&s, path, &err), LOOM_ECORRUPT);
	ASSERT_HAS(err, "is not a usable SQLite database");
	free(err);
	free(path);

	ck_assert_int_eq(loomi_store_open(&s, "/nonexistent/dir/loom.db", &err), LOOM_EIO);
	ASSERT_HAS(err, "cannot open the state database /nonexistent/dir/loom.db");
	free(err);
}
END_TEST

/* A write transaction takes the write lock before its first read and waits
 * for another connection's writer, past its own busy timeout; a read-only
 * one does not wait at all (WAL readers never block). */
static void *
commit_later(void *arg)
{
	usleep(400 * 1000);
	ck_assert_int_eq(exec(arg, "COMMIT"), SQLITE_OK);
	return NULL;
}

START_TEST(writers_wait_for_each_other)
{
	loomi_store s;
	sqlite3 *other;
	pthread_t t;
	char *err = NULL;

	ck_assert_msg(loomi_store_open(&s, db, &err) == 0, "%s", err);
	sqlite3_busy_timeout(s.db, 50); /* the retry, not the busy handler, waits */
	ck_assert_int_eq(sqlite3_open(db, &other), SQLITE_OK);
	ck_assert_int_eq(exec(other, "BEGIN IMMEDIATE; INSERT INTO jobs (name, compute, spec,"
	                             " created_at, updated_at) VALUES ('a', 'exec', '{}', 0, 0)"),
	                 SQLITE_OK);

	ck_assert_int_eq(loomi_store_begin(s.db, false, &err), 0);
	ck_assert_int_eq(scalar(s.db, "SELECT count(*) FROM jobs"), 0);
	ck_assert_int_eq(loomi_store_end(s.db, 0, &err), 0);

	ck_assert_int_eq(pthread_create(&t, NULL, commit_later, other), 0);
	ck_assert_msg(loomi_store_begin(s.db, true, &err) == 0, "%s", err);
	/* the other writer's row is seen: this transaction began after it */
	ck_assert_int_eq(scalar(s.db, "SELECT count(*) FROM jobs"), 1);
	ck_assert_int_eq(exec(s.db, "INSERT INTO jobs (name, compute, spec, created_at,"
	                            " updated_at) VALUES ('b', 'exec', '{}', 0, 0)"),
	                 SQLITE_OK);
	ck_assert_int_eq(loomi_store_end(s.db, 0, &err), 0);
	pthread_join(t, NULL);
	ck_assert_int_eq(scalar(other, "SELECT count(*) FROM jobs"), 2);

	/* rolled back when the caller failed */
	ck_assert_int_eq(loomi_store_begin(s.db, true, &err), 0);
	exec(s.db, "DELETE FROM jobs");
	ck_assert_int_eq(loomi_store_end(s.db, LOOM_EINVAL, &err), LOOM_EINVAL);
	ck_assert_int_eq(scalar(other, "SELECT count(*) FROM jobs"), 2);
	sqlite3_close(other);
	loomi_store_close(&s);
	free(err);
}
END_TEST

/* A writer on the shared connection, begun while another thread is
 * between two steps of a read on it (an implicit read transaction whose
 * snapshot another connection's commit has made stale): BEGIN IMMEDIATE
 * answers SQLITE_BUSY_SNAPSHOT until the read is reset, and the reader
 * needs the connection to get there.  The writer waits without holding
 * it, so both finish (they stood still until the writer's deadline). */
struct writer {
	sqlite3 *db;
	int rv;
	char *err;
};

static void *
write_one(void *arg)
{
	struct writer *w = arg;
	if ((w->rv = loomi_store_begin(w->db, true, &w->err)) == 0) {
		exec(w->db, "INSERT INTO jobs (name, compute, spec, created_at, updated_at) VALUES "
		            "('w', 'exec', '{}', 0, 0)");
		w->rv = loomi_store_end(w->db, 0, &w->err);
	}
	return NULL;
}

START_TEST(a_reader_between_steps_does_not_stall_a_writer)
{
	loomi_store s;
	sqlite3 *other;
	sqlite3_stmt *st;
	pthread_t t;
	struct writer w = {0};
	char *err = NULL;
	int rc;

	ck_assert_msg(loomi_store_open(&s, db, &err) == 0, "%s", err);
	ck_assert_int_eq(exec(s.db, "INSERT INTO jobs (name, compute, spec, created_at, updated_at)"
	                            " VALUES ('a', 'exec', '{}', 0, 0), ('b', 'exec', '{}', 0, 0)"),
	                 SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(s.db, "SELECT id FROM jobs ORDER BY id", -1, &st, NULL),
	                 SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW); /* a read snapshot, left open */
	ck_assert_int_eq(sqlite3_open(db, &other), SQLITE_OK);
	ck_assert_int_eq(exec(other, "INSERT INTO jobs (name, compute, spec, created_at,"
	                             " updated_at) VALUES ('c', 'exec', '{}', 0, 0)"),
	                 SQLITE_OK); /* ... now stale */
	w.db = s.db;
	ck_assert_int_eq(pthread_create(&t, NULL, write_one, &w), 0);
	/* give the writer time to meet the stale snapshot (if it has not yet,
	 * this proves less, and still passes only when both finish) */
	usleep(200000);
	rc = sqlite3_step(st);
	ck_assert(rc == SQLITE_ROW || rc == SQLITE_DONE);
	sqlite3_finalize(st);
	pthread_join(t, NULL);
	ck_assert_msg(w.rv == 0, "the writer: %s", w.err ? w.err : "?");
	ck_assert_int_eq(scalar(other, "SELECT count(*) FROM jobs"), 4);
	free(w.err);
	sqlite3_close(other);
	loomi_store_close(&s);
}
END_TEST

START_TEST(state_dir_lock)
{
	int fd1, fd2;
	char *err = NULL, *want, *sub = loomi_path_join(dir, "deep/state");
	pid_t child;
	int pipefd[2], status;
	char c;

	/* creates the directory, then excludes a second holder */
	ck_assert_int_eq(loomi_statedir_lock(sub, &fd1, &err), 0);
	ck_assert_int_eq(loomi_statedir_lock(sub, &fd2, &err), LOOM_EBUSY);
	want = loomi_strfmt("another loomd (pid %ld) is running on the state directory %s",
	                    (long)getpid(), sub);
	ASSERT_HAS(err, want);
	free(want);
	free(err);
	loomi_statedir_unlock(sub, fd1);
	ck_assert_int_eq(loomi_statedir_lock(sub, &fd2, &err), 0);
	loomi_statedir_unlock(sub, fd2);

	/* held by another process */
	ck_assert_int_eq(pipe(pipefd), 0);
	child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		int fd;
		char *e = NULL;
		if (loomi_statedir_lock(sub, &fd, &e) != 0)
			_exit(1);
		if (write(pipefd[1], "x", 1) != 1)
			_exit(2);
		for (;;) /* hold the lock until the parent kills us */
			pause();
	}
	close(pipefd[1]);
	ck_assert_int_eq(read(pipefd[0], &c, 1), 1);
	ck_assert_int_eq(loomi_statedir_lock(sub, &fd2, &err), LOOM_EBUSY);
	want = loomi_strfmt("(pid %ld)", (long)child);
	ASSERT_HAS(err, want);
	free(want);
	free(err);
	kill(child, SIGKILL);
	waitpid(child, &status, 0);
	/* the dead process's lock is gone with it */
	ck_assert_int_eq(loomi_statedir_lock(sub, &fd2, &err), 0);
	loomi_statedir_unlock(sub, fd2);
	close(pipefd[0]);

	ck_assert_int_eq(loomi_statedir_lock("/proc/no/such/dir", &fd1, &err), LOOM_EIO);
	ASSERT_HAS(err, "cannot create the state directory /proc/no/such/dir");
	free(err);
	free(sub);
}
END_TEST

START_TEST(write_failures)
{
	loomi_store s;
	char *err = NULL, *cause = NULL, *msg;
	char want[512];

	ck_assert_int_eq(loomi_store_open(&s, db, &err), 0);
	ck_assert(loomi_store_writable(&s, &cause));
	ck_assert_ptr_null(cause);
	ck_assert_int_eq(loomi_store_wrote(s.db, SQLITE_DONE), 0);

	/* a full disk: the answer names the cause and what to do */
	ck_assert_int_eq(loomi_store_wrote(s.db, SQLITE_FULL), LOOM_EIO);
	/* what followed from it does not hide it */
	ck_assert_int_eq(loomi_store_wrote(s.db, SQLITE_ERROR), LOOM_EIO);
	msg = loomi_store_errmsg("task-3's start");
	snprintf(want, sizeof want, "task-3's start could not be stored: database or disk is "
	         "full; free space under %s and retry", dir);
	ck_assert_str_eq(msg, want);
	free(msg);
	/* the disk has room (the probe): writable again */
	ck_assert(loomi_store_writable(&s, &cause));

	/* a read-only store: not writable until a write succeeds */
	ck_assert_int_eq(loomi_store_wrote(s.db, SQLITE_READONLY), LOOM_EIO);
	ck_assert(!loomi_store_writable(&s, &cause));
	ASSERT_HAS(cause, "the last write to the state database failed: attempt to write a "
	                  "readonly database; make");
	free(cause);
	msg = loomi_store_errmsg("the alert rule");
	ASSERT_HAS(msg, "the alert rule could not be stored: attempt to write a readonly database");
	free(msg);
	ck_assert_int_eq(loomi_store_wrote(s.db, SQLITE_OK), 0);
	ck_assert(loomi_store_writable(&s, &cause));

	/* a statement's own failure is not the store's */
	ck_assert_int_eq(loomi_store_wrote(s.db, SQLITE_CONSTRAINT_UNIQUE), LOOM_EIO);
	ck_assert(loomi_store_writable(&s, &cause));
	loomi_store_close(&s);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("store");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, fresh_database);
	tcase_add_test(tc, constraints);
	tcase_add_test(tc, job_counts_follow_the_rows);
	tcase_add_test(tc, newer_schema_refused);
	tcase_add_test(tc, failed_migration_rolls_back);
	tcase_add_test(tc, newer_schema_untouched);
	tcase_add_test(tc, not_a_database);
	tcase_add_test(tc, state_dir_lock);
	tcase_add_test(tc, write_failures);
	tcase_add_test(tc, writers_wait_for_each_other);
	tcase_add_test(tc, a_reader_between_steps_does_not_stall_a_writer);
	suite_add_tcase(s, tc);
	return tu_run(s);
}

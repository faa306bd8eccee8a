/* host/logs: the structured log store against a real state database in a
 * temporary directory: the migration from job_logs, the writer (batches,
 * order, overflow), loomd's own lines through the log sink, every query
 * filter, paging, full-text search (malformed queries included), the
 * export formats, and retention with a zstd archive read back by the zstd
 * program. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "host/server/api.h"
#include "host/server/auth.h"
#include "host/core/log.h"
#include "host/logs/logs.h"
#include "host/server/store.h"
#include "host/core/util.h"
#include "testutil.h"

#define ASSERT_HAS(text, needle)                                                          \
	ck_assert_msg(strstr((text), (needle)) != NULL, "expected \"%s\" in:\n%s", (needle),   \
	              (text))

static char *dir;
static loomi_daemon d;

static void
setup(void)
{
	char *err = NULL, *db;

	dir = tu_tmpdir();
	memset(&d, 0, sizeof d);
	d.conf.state_dir = loomi_strdup(dir);
	d.conf.logs_archive = true;
	d.conf.log_level = LOOM_LOG_INFO;
	db = loomi_path_join(dir, "loom.db");
	ck_assert_msg(loomi_store_open(&d.store, db, &err) == 0, "store: %s", err);
	free(db);
	ck_assert_msg(loomi_logs_start(&d, &err) == 0, "start: %s", err);
}

static void
teardown(void)
{
	loomi_logs_stop();
	loomi_store_close(&d.store);
	free(d.conf.state_dir);
	tu_rmrf(dir);
	free(dir);
}

/* Wait for the writer: one flush gives up after 10 s, and a loaded
 * machine under ASan can take longer for tens of thousands of entries. */
static bool
flush_all(void)
{
	for (int i = 0; i < 12; i++)
		if (loomi_logs_flush())
			return true;
	return false;
}

static long long
scalar(const char *sql)
{
	sqlite3_stmt *st;
	long long v = -1;
	ck_assert_int_eq(sqlite3_prepare_v2(d.store.db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void
exec_sql(const char *sql)
{
	char *msg = NULL;
	ck_assert_msg(sqlite3_exec(d.store.db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", sql,
	              msg);
}

/* Rows written straight to the table (at chosen times), indexed as the
 * writer indexes its batches. */
static void
insert_rows(const char *values)
{
	long long last = scalar("SELECT coalesce(max(id), 0) FROM logs");
	char *sql = loomi_strfmt("INSERT INTO logs (at, level, job_id, instance, message, fields) "
	                         "VALUES %s; INSERT INTO logs_fts (rowid, message, fields) SELECT "
	                         "id, message, fields FROM logs WHERE id > %lld;",
	                         values, last);
	exec_sql(sql);
	free(sql);
}

/* GET /api/v1/logs?query; the response (free with res_free). */
static loomi_http_res
get(const char *query)
{
	loomi_http_req req = {.method = "GET", .path = "/api/v1/logs", .query = query,
	                      .caller = &loomi_caller_loomd};
	loomi_http_res res = {0};
	loomi_api_handle(&d, &req, &res);
	return res;
}

static void
res_free(loomi_http_res *r)
{
	json_decref(r->body);
	free(r->text);
	free(r->allow);
}

/* The number of entries GET /api/v1/logs?query answers with (200 asserted). */
static size_t
count(const char *query)
{
	loomi_http_res r = get(query);
	size_t n;
	ck_assert_msg(r.status == 200, "%s: HTTP %d %s", query, r.status,
	              r.body ? json_dumps(r.body, 0) : "");
	n = json_array_size(json_object_get(r.body, "logs"));
	res_free(&r);
	return n;
}

/* A 400 whose message names what; the message returned in buf. */
static void
assert_400(const char *query, const char *what)
{
	loomi_http_res r = get(query);
	const char *msg =
		json_string_value(json_object_get(json_object_get(r.body, "error"), "message"));
	ck_assert_msg(r.status == 400, "%s: expected 400, got %d", query, r.status);
	ck_assert_ptr_nonnull(msg);
	ASSERT_HAS(msg, what);
	res_free(&r);
}

/* A few entries of two jobs and the host, with levels and fields. */
static void
fill(void)
{
	loomi_logs_add(1, "worker", LOOM_LOG_INFO, "epoch 1 started", "{\"epoch\":1}");
	loomi_logs_add(1, "worker", LOOM_LOG_WARN, "loss is rising, learning rate too high?",
	               NULL);
	loomi_logs_add(1, "worker", LOOM_LOG_ERROR, "checkpoint write failed: disk full",
	               "{\"path\":\"/data/ckpt\"}");
	loomi_logs_add(2, "worker", LOOM_LOG_DEBUG, "batch 17 of 400", NULL);
	loomi_logs_add(2, "loomd", LOOM_LOG_INFO, "task started on node local", NULL);
	loomi_logs_add(0, "sched", LOOM_LOG_WARN, "node local is full, task-3 waits", NULL);
	ck_assert(flush_all());
}

/* ------------------------------------------------------------------ tests */

START_TEST(migration_keeps_job_logs)
{
	/* an old database: job_logs as migration 2 made it */
	static const loomi_migration old[] = {
		{1, "old", "CREATE TABLE jobs (id INTEGER PRIMARY KEY);\n"
		           "CREATE TABLE job_logs (id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL "
		           "REFERENCES jobs (id) ON DELETE CASCADE, at INTEGER NOT NULL, level "
		           "INTEGER NOT NULL, message TEXT NOT NULL);\n"
		           "INSERT INTO jobs VALUES (4);\n"
		           "INSERT INTO job_logs VALUES (7, 4, 1700000000000, 2, 'old line one');\n"
		           "INSERT INTO job_logs VALUES (9, 4, 1700000000500, 0, 'old line two');\n"},
		{9, "logs", loomi_logs_migration_sql},
	};
	char *path = loomi_path_join(dir, "old.db"), *err = NULL;
	loomi_store s;
	sqlite3_stmt *st;

	ck_assert_msg(loomi_store_open_with(&s, path, old, 1, &err) == 0, "%s", err);
	loomi_store_close(&s);
	ck_assert_msg(loomi_store_open_with(&s, path, old, 2, &err) == 0, "%s", err);
	ck_assert_int_eq(sqlite3_prepare_v2(s.db,
	                                    "SELECT group_concat(id || ':' || job_id || ':' || at "
	                                    "|| ':' || level || ':' || message, '|') FROM logs",
	                                    -1, &st, NULL),
	                 SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	/* the ids stay, so after=N paging goes on where it was */
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 0),
	                 "7:4:1700000000000:2:old line one|9:4:1700000000500:0:old line two");
	sqlite3_finalize(st);
	/* and the copied rows are in the full-text index */
	ck_assert_int_eq(sqlite3_prepare_v2(s.db, "SELECT rowid FROM logs_fts WHERE logs_fts "
	                                          "MATCH 'two'", -1, &st, NULL),
	                 SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_int_eq(sqlite3_column_int(st, 0), 9);
	sqlite3_finalize(st);
	loomi_store_close(&s);
	free(path);
}
END_TEST

START_TEST(writer_stores_batches_in_order)
{
	char msg[64];

	for (int i = 0; i < 20000; i++) {
		snprintf(msg, sizeof msg, "line %d", i);
		loomi_logs_add(5, "worker", LOOM_LOG_INFO, msg, NULL);
	}
	ck_assert(flush_all());
	ck_assert_int_eq(loomi_logs_dropped(), 0);
	ck_assert_int_eq(scalar("SELECT count(*) FROM logs WHERE job_id = 5"), 20000);
	/* ids follow the order of the calls */
	ck_assert_int_eq(scalar("SELECT count(*) FROM logs a JOIN logs b ON b.id = a.id + 1 "
	                        "WHERE a.job_id = 5 AND b.job_id = 5 AND "
	                        "CAST(substr(b.message, 6) AS INTEGER) <> "
	                        "CAST(substr(a.message, 6) AS INTEGER) + 1"),
	                 0);
	/* the index holds exactly the stored rows */
	exec_sql("INSERT INTO logs_fts (logs_fts) VALUES ('integrity-check')");
	/* fields that are not a JSON object are kept, wrapped */
	loomi_logs_add(5, NULL, LOOM_LOG_INFO, "odd fields", "not json");
	loomi_logs_add(5, NULL, LOOM_LOG_INFO, "array fields", "[1,2]");
	ck_assert(flush_all());
	ck_assert_int_eq(scalar("SELECT count(*) FROM logs WHERE fields = "
	                        "'{\"text\":\"not json\"}' OR fields = '{\"value\":[1,2]}'"),
	                 2);
}
END_TEST

START_TEST(filters)
{
	fill();
	ck_assert_int_eq(count("job=task-1"), 3);
	ck_assert_int_eq(count("job=2"), 2);
	ck_assert_int_eq(count("job=host&instance=sched"), 1);
	ck_assert_int_eq(count("job=1&level=warn"), 2);
	ck_assert_int_eq(count("job=1&level=error"), 1);
	ck_assert_int_eq(count("job=2&level=info"), 1);
	ck_assert_int_eq(count("instance=worker"), 4);
	ck_assert_int_eq(count("instance=worker&level=debug&job=2"), 1);

	/* time: entries at known times, written as the store writes them */
	insert_rows("(1767225600000, 2, 9, 'w', 'new year', '{}'),"   /* 2026-01-01T00:00:00Z */
	            "(1767229200000, 2, 9, 'w', 'one hour on', '{}')," /* 01:00 */
	            "(1767232800000, 2, 9, 'w', 'two hours on', '{}')");
	ck_assert_int_eq(count("job=9&since=2026-01-01T00:30:00Z"), 2);
	ck_assert_int_eq(count("job=9&until=2026-01-01T01:00:00Z"), 2);
	ck_assert_int_eq(count("job=9&since=2026-01-01T01:00:00.000Z&until=1767229200000"), 1);
	ck_assert_int_eq(count("job=9&since=2026-01-01T02:00:00%2B01:00"), 2);
	ck_assert_int_eq(count("job=9&since=2026-01-02"), 0);
	ck_assert_int_eq(count("job=9&since=1h"), 0); /* an hour ago: all are older */
	ck_assert_int_eq(count("job=1&since=1h"), 3);
}
END_TEST

START_TEST(paging_and_order)
{
	loomi_http_res r;
	json_t *logs;
	int64_t next, first;
	char q[128];

	for (int i = 0; i < 25; i++) {
		snprintf(q, sizeof q, "step %d", i);
		loomi_logs_add(3, "worker", LOOM_LOG_INFO, q, NULL);
	}
	ck_assert(flush_all());
	r = get("job=3&limit=10");
	logs = json_object_get(r.body, "logs");
	ck_assert_int_eq(json_array_size(logs), 10);
	first = json_integer_value(json_object_get(json_array_get(logs, 0), "id"));
	next = json_integer_value(json_object_get(r.body, "next"));
	ck_assert_int_eq(next, json_integer_value(json_object_get(json_array_get(logs, 9), "id")));
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(logs, 0), "job")),
	                 "task-3");
	res_free(&r);
	snprintf(q, sizeof q, "job=3&limit=10&after=%lld", (long long)next);
	ck_assert_int_eq(count(q), 10);
	snprintf(q, sizeof q, "job=3&after=%lld", (long long)next);
	ck_assert_int_eq(count(q), 15);
	/* nothing new: next stays where it was */
	r = get("job=3");
	next = json_integer_value(json_object_get(r.body, "next"));
	res_free(&r);
	snprintf(q, sizeof q, "job=3&after=%lld", (long long)next);
	r = get(q);
	ck_assert_int_eq(json_array_size(json_object_get(r.body, "logs")), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(r.body, "next")), next);
	res_free(&r);

	r = get("job=3&order=desc&limit=3");
	logs = json_object_get(r.body, "logs");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(logs, 0), "message")),
	                 "step 24");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(logs, 2), "message")),
	                 "step 22");
	res_free(&r);
	snprintf(q, sizeof q, "job=3&order=desc&before=%lld", (long long)first + 5);
	r = get(q);
	logs = json_object_get(r.body, "logs");
	ck_assert_int_eq(json_array_size(logs), 5);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(logs, 0), "message")),
	                 "step 4");
	res_free(&r);
}
END_TEST

START_TEST(search)
{
	loomi_http_res r;

	fill();
	ck_assert_int_eq(count("q=disk"), 1);
	ck_assert_int_eq(count("q=DISK+full"), 1);        /* words, any case, all must match */
	ck_assert_int_eq(count("q=%22disk+full%22"), 1);  /* a phrase */
	ck_assert_int_eq(count("q=%22full+disk%22"), 0);
	ck_assert_int_eq(count("q=task"), 2);
	ck_assert_int_eq(count("q=task&job=host"), 1);
	ck_assert_int_eq(count("q=task&job=2"), 1);
	ck_assert_int_eq(count("q=check*"), 1);            /* a prefix */
	ck_assert_int_eq(count("q=rising+OR+disk&level=warn&job=1"), 2);
	ck_assert_int_eq(count("q=ckpt"), 1);              /* the fields are searched too */
	ck_assert_int_eq(count("q=epoch+NOT+started"), 0);
	r = get("q=task&order=desc&limit=1");
	ck_assert_str_eq(json_string_value(json_object_get(
				 json_array_get(json_object_get(r.body, "logs"), 0), "message")),
	                 "node local is full, task-3 waits");
	res_free(&r);

	/* malformed searches are the client's error, named */
	assert_400("q=%22unterminated", "q: \"\"unterminated\" is not a search");
	assert_400("q=nosuchcolumn:word", "q:");
	assert_400("q=AND", "q:");
	assert_400("q=a+NOT", "write words");
}
END_TEST

START_TEST(bad_parameters)
{
	assert_400("level=loud", "level: \"loud\" is not a level; use error, warn");
	assert_400("since=yesterday", "since: \"yesterday\" is not a time");
	assert_400("until=2026-13-45", "until:");
	assert_400("order=up", "order: \"up\"");
	assert_400("format=xml", "format: \"xml\"");
	assert_400("limit=0", "limit:");
	assert_400("limit=20000", "limit:");
	assert_400("after=-1", "after:");
	assert_400("job=abc", "job: \"abc\" is not a task id");
}
END_TEST

START_TEST(exports)
{
	loomi_http_res r;
	char *line, *save = NULL;
	int n = 0;

	loomi_logs_add(4, "worker", LOOM_LOG_INFO, "plain line", NULL);
	loomi_logs_add(4, "worker", LOOM_LOG_WARN, "a \"quoted\", comma line", "{\"k\":1}");
	ck_assert(flush_all());

	r = get("job=4&format=jsonl");
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.content_type, "application/x-ndjson");
	for (line = strtok_r(r.text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_t *o = json_loads(line, 0, NULL);
		ck_assert_msg(o != NULL, "not JSON: %s", line);
		ck_assert_str_eq(json_string_value(json_object_get(o, "job")), "task-4");
		ck_assert_str_eq(json_string_value(json_object_get(o, "instance")), "worker");
		json_decref(o);
		n++;
	}
	ck_assert_int_eq(n, 2);
	res_free(&r);

	r = get("job=4&format=csv");
	ck_assert_int_eq(r.status, 200);
	ASSERT_HAS(r.content_type, "text/csv");
	ck_assert_int_eq(strncmp(r.text, "id,time,level,job,instance,message,fields\r\n", 43), 0);
	ASSERT_HAS(r.text, ",info,task-4,worker,plain line,{}\r\n");
	ASSERT_HAS(r.text, ",warn,task-4,worker,\"a \"\"quoted\"\", comma line\",\"{\"\"k\"\":1}\"\r\n");
	res_free(&r);

	r = get("job=4&format=text&level=warn");
	ck_assert_int_eq(r.status, 200);
	ASSERT_HAS(r.content_type, "text/plain");
	ASSERT_HAS(r.text, "Z warn  [task-4:worker] a \"quoted\", comma line {\"k\":1}\n");
	ck_assert_ptr_null(strstr(r.text, "plain line"));
	res_free(&r);
}
END_TEST

START_TEST(host_lines_through_the_sink)
{
	loomi_log(LOOM_LOG_WARN, "store-x", "the sink keeps %s", "this line");
	loomi_log(LOOM_LOG_DEBUG, "store-x", "below the configured level");
	LOG_INFO("a line of loomd itself");
	ck_assert(flush_all());
	ck_assert_int_eq(count("job=host&instance=store-x"), 1);
	ck_assert_int_eq(count("job=host&instance=store-x&q=sink"), 1);
	ck_assert_int_eq(count("job=host&instance=loomd&q=%22loomd+itself%22"), 1);
	ck_assert_int_eq(count("q=below"), 0);
}
END_TEST

static char *
run_out(const char *cmd)
{
	FILE *p = popen(cmd, "r");
	size_t len = 0, cap = 1 << 16;
	char *buf = loomi_xmalloc(cap);
	size_t n;

	ck_assert_ptr_nonnull(p);
	while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
		len += n;
		if (len + 1 == cap)
			buf = loomi_xrealloc(buf, cap *= 2);
	}
	buf[len] = '\0';
	ck_assert_int_eq(pclose(p), 0);
	return buf;
}

static int
lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

START_TEST(retention_archives_then_deletes)
{
	char *cmd, *out, *f1, *f2;
	int64_t n = -1;
	char *err = NULL;

	if (access("/usr/bin/zstd", X_OK) != 0 && system("command -v zstd >/dev/null") != 0)
		ck_abort_msg("the zstd program is needed to read the archive back: install it "
		             "(apt-get install zstd; ./bootstrap does)");
	loomi_logs_add(6, "worker", LOOM_LOG_INFO, "fresh line stays", NULL);
	ck_assert(flush_all());
	insert_rows("(1577836800000, 2, 6, 'w', 'old day one a', '{\"n\":1}')," /* 2020-01-01 */
	            "(1577836801000, 1, 6, 'w', 'old day one b', '{}'),"
	            "(1577923200000, 0, NULL, 'loomd', 'old day two', '{}')"); /* 2020-01-02 */
	ck_assert_msg(loomi_logs_expire(&d, loomi_wall_ms() - 86400000, &n, &err) == 0, "%s", err);
	ck_assert_int_eq(n, 3);
	ck_assert_int_eq(scalar("SELECT count(*) FROM logs WHERE job_id = 6"), 1);
	ck_assert_int_eq(count("q=old"), 0); /* gone from the index too */
	ck_assert_int_eq(count("q=fresh"), 1);
	exec_sql("INSERT INTO logs_fts (logs_fts) VALUES ('integrity-check')");

	f1 = loomi_path_join(dir, "logs/archive/2020-01-01.jsonl.zst");
	f2 = loomi_path_join(dir, "logs/archive/2020-01-02.jsonl.zst");
	cmd = loomi_strfmt("zstd -dc '%s'", f1);
	out = run_out(cmd);
	ck_assert_int_eq(lines(out), 2);
	ASSERT_HAS(out, "\"time\":\"2020-01-01T00:00:00.000Z\",\"level\":\"info\","
	                "\"message\":\"old day one a\",\"job\":\"task-6\",\"instance\":\"w\","
	                "\"fields\":{\"n\":1}}\n");
	free(out);
	free(cmd);
	cmd = loomi_strfmt("zstd -dc '%s'", f2);
	out = run_out(cmd);
	ASSERT_HAS(out, "\"message\":\"old day two\",\"job\":null,\"instance\":\"loomd\"");
	free(out);

	/* another run the same day appends a frame; zstd reads both */
	insert_rows("(1577836900000, 2, 6, 'w', 'old day one c', '{}')");
	ck_assert_msg(loomi_logs_expire(&d, loomi_wall_ms() - 86400000, &n, &err) == 0, "%s", err);
	ck_assert_int_eq(n, 1);
	free(cmd);
	cmd = loomi_strfmt("zstd -dc '%s'", f1);
	out = run_out(cmd);
	ck_assert_int_eq(lines(out), 3);
	ASSERT_HAS(out, "old day one c");
	free(out);
	free(cmd);

	/* an archive that cannot be written keeps the rows */
	insert_rows("(1577836900000, 2, 6, 'w', 'kept when the archive fails', '{}')");
	cmd = loomi_strfmt("chmod 0500 '%s/logs/archive'", dir);
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
	if (geteuid() != 0) { /* root writes regardless of the mode */
		ck_assert_int_ne(loomi_logs_expire(&d, loomi_wall_ms() - 86400000, &n, &err), 0);
		ASSERT_HAS(err, "cannot write the log archive");
		free(err);
		ck_assert_int_eq(count("q=kept"), 1);
	}
	cmd = loomi_strfmt("chmod 0750 '%s/logs/archive'", dir);
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
	free(f1);
	free(f2);
}
END_TEST

START_TEST(overflow_drops_and_counts)
{
	sqlite3 *lock;
	char *db = loomi_path_join(dir, "loom.db");
	uint64_t dropped;
	long long stored;

	/* another connection holds the write lock: the writer is stuck */
	ck_assert_int_eq(sqlite3_open(db, &lock), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	for (int i = 0; i < 100000; i++)
		loomi_logs_add(8, "worker", LOOM_LOG_INFO, "flood", NULL);
	dropped = loomi_logs_dropped();
	ck_assert_msg(dropped > 0 && dropped < 100000 - 60000, "dropped %llu",
	              (unsigned long long)dropped);
	ck_assert_int_eq(sqlite3_exec(lock, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(lock);
	/* every entry that was accepted is stored, none twice */
	ck_assert(flush_all());
	stored = scalar("SELECT count(*) FROM logs WHERE job_id = 8");
	ck_assert_int_eq(stored, 100000 - (long long)dropped);
	exec_sql("INSERT INTO logs_fts (logs_fts) VALUES ('integrity-check')");
	free(db);
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("logs");
	TCase *tc = tcase_create("logs");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, migration_keeps_job_logs);
	tcase_add_test(tc, writer_stores_batches_in_order);
	tcase_add_test(tc, filters);
	tcase_add_test(tc, paging_and_order);
	tcase_add_test(tc, search);
	tcase_add_test(tc, bad_parameters);
	tcase_add_test(tc, exports);
	tcase_add_test(tc, host_lines_through_the_sink);
	tcase_add_test(tc, retention_archives_then_deletes);
	tcase_add_test(tc, overflow_drops_and_counts);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tu_run(suite());
}

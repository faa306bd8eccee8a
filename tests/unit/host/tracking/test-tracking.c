/* host/tracking: runs and metric points against a real state database in
 * a temporary directory — the queue and its thread, blocks written and
 * read back (out of order, repeated steps, NaN and infinities), a task
 * attempt's run kept across a pause and ended by its state, worker
 * reports, downsampling that keeps extremes, name checks, lineage hashes. */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "host/tracking/metrics-json.h"
#include "host/server/store.h"
#include "host/tracking/tracking-internal.h"
#include "host/tracking/tracking.h"
#include "host/core/util.h"
#include "testutil.h"

static char *dir;
static loomi_daemon d;

static void
setup(void)
{
	char *err = NULL, *db;

	dir = tu_tmpdir();
	memset(&d, 0, sizeof d);
	d.conf.state_dir = loomi_strdup(dir);
	db = loomi_path_join(dir, "loom.db");
	ck_assert_msg(loomi_store_open(&d.store, db, &err) == 0, "store: %s", err);
	free(db);
	ck_assert_msg(loomi_tracking_start(&d, &err) == 0, "start: %s", err);
}

static void
teardown(void)
{
	loomi_tracking_stop();
	loomi_store_close(&d.store);
	free(d.conf.state_dir);
	tu_rmrf(dir);
	free(dir);
}

static char *
text(const char *sql)
{
	sqlite3_stmt *st;
	char *out = NULL;
	ck_assert_int_eq(sqlite3_prepare_v2(d.store.db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
		out = loomi_strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return out;
}

/* A task row for runs to refer to. */
static void
task(int64_t id)
{
	char *sql = loomi_strfmt("INSERT INTO jobs (id, name, compute, spec, created_at, updated_at)"
	                         " VALUES (%lld, 'job', 'exec', '{}', 0, 0)",
	                         (long long)id);
	ck_assert_int_eq(sqlite3_exec(d.store.db, sql, NULL, NULL, NULL), SQLITE_OK);
	free(sql);
}

static tk_point *
points(size_t n, int64_t first_step, int64_t stride)
{
	tk_point *p = calloc(n, sizeof *p);
	for (size_t i = 0; i < n; i++) {
		p[i].step = first_step + (int64_t)i * stride;
		p[i].value = sin((double)p[i].step / 1000.0);
		p[i].wall_ms = 1700000000000 + p[i].step;
	}
	return p;
}

START_TEST(test_points_round_trip)
{
	int64_t run = loomi_tracking_api_run("r", "ann", "{\"lr\":0.1}");
	tk_point *got;
	size_t n;

	ck_assert_int_eq(run, 1);
	/* 20,000 points in three batches, the middle one going back in steps */
	ck_assert_int_eq(loomi_tracking_api_points(run, "loss", points(10000, 0, 2), 10000), 0);
	ck_assert_int_eq(loomi_tracking_api_points(run, "loss", points(5000, 1, 2), 5000), 0);
	ck_assert_int_eq(loomi_tracking_api_points(run, "loss", points(5000, 10001, 2), 5000), 0);
	tk_point *odd = calloc(3, sizeof *odd);
	odd[0] = (tk_point){.step = 7, .value = NAN};
	odd[1] = (tk_point){.step = 7, .value = INFINITY};
	odd[2] = (tk_point){.step = 3, .value = -INFINITY};
	ck_assert_int_eq(loomi_tracking_api_points(run, "loss", odd, 3), 0);
	loomi_tracking_flush();

	ck_assert_int_eq(loomi_tracking_read(loomi_tracking_db(), run, "loss", 0, INT64_MAX, &got, &n),
	                 0);
	ck_assert_uint_eq(n, 20003);
	for (size_t i = 1; i < n; i++)
		ck_assert_msg(got[i - 1].step <= got[i].step, "out of order at %zu", i);
	/* equal steps keep their arrival order: 7 (the first batch's), NaN, +Inf */
	size_t k = 0;
	while (got[k].step != 7)
		k++;
	ck_assert(isfinite(got[k].value) && isnan(got[k + 1].value) && isinf(got[k + 2].value));
	/* a step range reads only what lies in it */
	free(got);
	ck_assert_int_eq(loomi_tracking_read(loomi_tracking_db(), run, "loss", 100, 199, &got, &n), 0);
	ck_assert_uint_eq(n, 100);
	ck_assert_int_eq(got[0].step, 100);
	ck_assert(fabs(got[0].value - sin(0.1)) < 1e-15);
	free(got);
	ck_assert_int_eq(loomi_tracking_read(loomi_tracking_db(), run, "nope", 0, 10, &got, &n),
	                 LOOM_ENOENT);

	/* the series statistics ignore the non-finite values */
	char *s = text("SELECT n || ' ' || round(min, 3) || ' ' || round(max, 3) FROM metric_series");
	ck_assert_str_eq(s, "20003 -1.0 1.0");
	free(s);
	s = text("SELECT json_extract(params, '$.lr') || ' ' || user FROM runs WHERE id = 1");
	ck_assert_str_eq(s, "0.1 ann");
	free(s);
}
END_TEST

START_TEST(test_corrupt_block)
{
	int64_t run = loomi_tracking_api_run("r", NULL, NULL);
	tk_point *got = NULL;
	size_t n;

	ck_assert_int_eq(loomi_tracking_api_points(run, "loss", points(100, 0, 1), 100), 0);
	loomi_tracking_flush();
	ck_assert_int_eq(sqlite3_exec(d.store.db, "UPDATE metric_blocks SET data = x'00112233'",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	ck_assert_int_eq(loomi_tracking_read(loomi_tracking_db(), run, "loss", 0, 99, &got, &n),
	                 LOOM_ECORRUPT);
	ck_assert_ptr_null(got);
}
END_TEST

START_TEST(test_task_runs)
{
	char *s;
	json_t *pts = json_pack("[[s,i,i,i,I,f], [s,i,i,i,I,s], [s,i,i,i,I,f], [i,i], [s,s,i,i,I,f]]",
	                        "train_loss", 1, 0, 0, (json_int_t)1, 0.5, "train_loss", 2, 0, 0,
	                        (json_int_t)2, "NaN", "val_loss", 2, 1, 1, (json_int_t)3, 0.7, 1, 2,
	                        "bad", "x", 0, 0, (json_int_t)4, 1.0);
	int64_t run;
	loomi_tracking_counters c0, c1;

	loomi_tracking_counters_read(&c0);
	task(42);
	run = loomi_tracking_run_begin(42, 1, "job", "bob", "{\"data\":{\"path\":\"/nonexistent.csv\"}}");
	/* the same attempt (a resume) is the same run; the next attempt a new one */
	ck_assert_int_eq(loomi_tracking_run_begin(42, 1, "job", "bob", "{}"), run);
	loomi_tracking_worker_points(42, 1, pts);
	loomi_tracking_job_state(42, "paused");
	ck_assert_int_eq(loomi_tracking_run_begin(42, 1, "job", "bob", "{}"), run);
	loomi_tracking_job_state(42, "pending"); /* the attempt failed; a retry waits */
	int64_t next = loomi_tracking_run_begin(42, 2, "job", "bob", "{}");
	ck_assert_int_gt(next, run);
	loomi_tracking_job_state(42, "completed");
	loomi_tracking_worker_points(42, 2, pts); /* its run has ended */
	loomi_tracking_flush();

	/* GET /metrics's counters: 3 stored, 2 malformed, 5 without a run */
	loomi_tracking_counters_read(&c1);
	ck_assert_uint_eq(c1.points_ingested - c0.points_ingested, 3);
	ck_assert_uint_eq(c1.points_dropped_malformed - c0.points_dropped_malformed, 2);
	ck_assert_uint_eq(c1.points_dropped_no_run - c0.points_dropped_no_run, 5);
	ck_assert_uint_eq(c1.points_dropped_full - c0.points_dropped_full, 0);

	s = text("SELECT group_concat(id || ':' || attempt || ':' || state, ' ') FROM runs");
	ck_assert_str_eq(s, "1:1:failed 2:2:completed");
	free(s);
	s = text("SELECT group_concat(name || '=' || n, ' ') FROM"
	         " (SELECT name, n FROM metric_series ORDER BY name)");
	ck_assert_str_eq(s, "train_loss=2 val_loss=1");
	free(s);
	/* the latest values: NaN leaves null */
	s = text("SELECT json_extract(metrics, '$.val_loss') FROM runs WHERE id = 1");
	ck_assert_str_eq(s, "0.7");
	free(s);
	/* a data file that cannot be read is said so in the lineage */
	s = text("SELECT json_extract(lineage, '$.data.why') FROM runs WHERE id = 1");
	ck_assert_str_eq(s, "cannot read the file");
	free(s);
	ck_assert_int_eq(loomi_tracking_run_of_job(42), next);
	ck_assert_int_eq(loomi_tracking_run_of_job(7), 0);
	json_decref(pts);
}
END_TEST

/* Another connection holds the write lock when a run begins (the jobs
 * thread storing a transition, the log writer): the run waits for it, it is
 * not lost.  A deferred BEGIN read first and then got SQLITE_BUSY on its
 * INSERT at once, without the busy timeout, and every point of the run was
 * then refused by its foreign key. */
static void *
release_later(void *arg)
{
	sqlite3 *other = arg;
	usleep(300 * 1000);
	ck_assert_int_eq(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	return NULL;
}

START_TEST(test_run_waits_for_writer)
{
	sqlite3 *other;
	pthread_t t;
	char *s;

	task(9);
	ck_assert_int_eq(sqlite3_open_v2(d.store.path, &other, SQLITE_OPEN_READWRITE, NULL),
	                 SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(other, "BEGIN IMMEDIATE; UPDATE jobs SET updated_at = 1",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	ck_assert_int_eq(pthread_create(&t, NULL, release_later, other), 0);
	int64_t run = loomi_tracking_run_begin(9, 1, "job", "bob", "{}");
	json_t *pts = json_pack("[[s,i,i,i,I,f]]", "loss", 1, 0, 0, (json_int_t)1, 0.5);
	loomi_tracking_worker_points(9, 1, pts);
	loomi_tracking_flush();
	pthread_join(t, NULL);
	loomi_tracking_job_state(9, "completed");
	loomi_tracking_flush();
	sqlite3_close(other);

	s = text("SELECT count(*) FROM runs WHERE job_id = 9");
	ck_assert_str_eq(s, "1");
	free(s);
	s = text("SELECT state || ' ' || json_extract(metrics, '$.loss') FROM runs WHERE job_id = 9");
	ck_assert_str_eq(s, "completed 0.5");
	free(s);
	ck_assert_int_eq(loomi_tracking_run_of_job(9), run);
	json_decref(pts);
}
END_TEST

START_TEST(test_lineage_hash)
{
	char *csv = loomi_path_join(dir, "data.csv"), *s, hex[65];
	uint64_t bytes;
	FILE *fp = fopen(csv, "w");

	fputs("t,x\n1,2\n", fp);
	fclose(fp);
	ck_assert_int_eq(loomi_tracking_sha256_file(csv, hex, &bytes), 0);
	/* sha256("t,x\n1,2\n") as sha256sum prints it */
	ck_assert_str_eq(hex, "caab8080ac177ce5a2778e9d8980c1b54153cfc83849cb4b7e86fade420e0fe6");
	ck_assert_uint_eq(bytes, 8);
	task(5);
	char *spec = loomi_strfmt("{\"data\":{\"path\":\"%s\"}}", csv);
	loomi_tracking_run_begin(5, 1, "j", "u", spec);
	loomi_tracking_flush();
	s = text("SELECT json_extract(lineage, '$.data.sha256') || ' ' ||"
	         " json_extract(lineage, '$.data.bytes') || ' ' || json_extract(lineage, "
	         "'$.loom_version') FROM runs");
	char *want = loomi_strfmt("%s 8 %s", hex, LOOM_VERSION_STRING);
	ck_assert_str_eq(s, want);
	free(want);
	free(s);
	free(spec);
	free(csv);
}
END_TEST

START_TEST(test_downsample)
{
	int64_t run = loomi_tracking_api_run("d", NULL, NULL);
	size_t n = 100000, m, total;
	tk_point *in = points(n, 0, 1), *out;

	in[31337].value = 50.0;  /* a spike */
	in[77777].value = -50.0; /* a dip */
	in[5000].value = NAN;    /* a gap */
	ck_assert_int_eq(loomi_tracking_api_points(run, "loss", in, n), 0);
	loomi_tracking_flush();
	ck_assert_int_eq(loomi_tracking_history(loomi_tracking_db(), run, "loss", 0, INT64_MAX, 1000,
	                                        &out, &m, &total),
	                 0);
	ck_assert_uint_eq(total, n);
	ck_assert_uint_le(m, 1000);
	ck_assert_uint_ge(m, 500);
	ck_assert_int_eq(out[0].step, 0);
	ck_assert_int_eq(out[m - 1].step, (int64_t)n - 1);
	bool spike = false, dip = false, gap = false;
	for (size_t i = 0; i < m; i++) {
		if (i)
			ck_assert(out[i - 1].step < out[i].step);
		spike |= out[i].value == 50.0;
		dip |= out[i].value == -50.0;
		gap |= isnan(out[i].value);
	}
	ck_assert(spike && dip && gap);
	free(out);
	/* a range: only its points; fewer than asked: all of them */
	ck_assert_int_eq(loomi_tracking_history(loomi_tracking_db(), run, "loss", 31330, 31339, 1000,
	                                        &out, &m, &total),
	                 0);
	ck_assert_uint_eq(m, 10);
	ck_assert_uint_eq(total, 10);
	ck_assert(out[7].value == 50.0);
	free(out);
	ck_assert_int_eq(loomi_tracking_history(loomi_tracking_db(), run, "loss", 0, 99999, 5, &out,
	                                        &m, &total),
	                 0);
	ck_assert_uint_le(m, 5);
	free(out);
}
END_TEST

/* The fast reader of metric batches takes the columnar form exactly, and
 * leaves everything else (to jansson, which words the errors). */
START_TEST(test_fast_batches)
{
	static const char *const mine[] = {
		"{\"metrics\":[{\"name\":\"loss\",\"steps\":[1,2,3],\"values\":[0.5,\"NaN\",-1e-3]}]}",
		" { \"metrics\" : [ { \"values\" : [ 1 , \"-Infinity\" ] , \"steps\" : [ 0 , 9 ] ,"
		" \"name\" : \"a\\/b\" , \"epochs\" : [1, 1], \"wall_ms\": [5, 6], \"scope\": \"epoch\","
		" \"note\": {\"x\": [1, \"y\"]} } ], \"source\": \"x\" }\n",
		"{\"metrics\":[]}",
	};
	static const char *const not_mine[] = {
		"{\"points\":[{\"name\":\"x\",\"step\":1,\"value\":1}]}",
		"{\"metrics\":[{\"name\":\"x\",\"steps\":[1.5],\"values\":[1]}]}",
		"{\"metrics\":[{\"name\":\"x\",\"steps\":[1],\"values\":[+1]}]}",
		"{\"metrics\":[{\"name\":\"x\",\"steps\":[1],\"values\":[inf]}]}",
		"{\"metrics\":[{\"name\":\"x\",\"steps\":[1],\"values\":[0x10]}]}",
		"{\"metrics\":[{\"name\":\"x\",\"steps\":[1],\"values\":[\"one\"]}]}",
		"{\"metrics\":[{\"name\":\"x\",\"steps\":[1,2],\"values\":[1]}]}",
		"{\"metrics\":[{\"name\":\"x\",\"steps\":[-1],\"values\":[1]}]}",
		"{\"metrics\":[{\"name\":\"x\",\"name\":\"y\",\"steps\":[1],\"values\":[1]}]}",
		"{\"metrics\":[{\"name\":\"a b\",\"steps\":[1],\"values\":[1]}]}",
		"{\"metrics\":[{\"name\":\"\\u0041\",\"steps\":[1],\"values\":[1]}]}",
		"{\"metrics\":[{\"name\":\"x\",\"steps\":[1],\"values\":[1]}],\"metrics\":[]}",
		"{\"metrics\":[{\"name\":\"x\",\"steps\":[1],\"values\":[1]}]} x",
		"{\"metrics\":[{\"name\":\"x\",\"steps\":[1],\"values\":[1",
		"{\"metrics\":[{\"name\":\"x\",\"steps\":[1],\"values\":[1]}],}",
		"{\"metrics\":[{\"name\":\"x\",\"steps\":[1],\"values\":[1],\"scope\":\"day\"}]}",
		"[1]",
		"",
	};
	loomi_metric_batch b = {0};

	for (size_t i = 0; i < sizeof mine / sizeof mine[0]; i++) {
		ck_assert_msg(loomi_metrics_json_fast(mine[i], strlen(mine[i]), 77, &b), "%s", mine[i]);
		if (i == 0) {
			ck_assert_uint_eq(b.count, 1);
			ck_assert_str_eq(b.names[0], "loss");
			ck_assert(b.pts[0][0].value == 0.5 && isnan(b.pts[0][1].value) &&
			          b.pts[0][2].value == -1e-3 && b.pts[0][2].step == 3 &&
			          b.pts[0][2].wall_ms == 77);
		} else if (i == 1) {
			ck_assert_str_eq(b.names[0], "a/b");
			ck_assert(isinf(b.pts[0][1].value) && b.pts[0][1].value < 0);
			ck_assert(b.pts[0][1].step == 9 && b.pts[0][1].epoch == 1 &&
			          b.pts[0][1].wall_ms == 6 && b.pts[0][1].scope == LOOM_METRIC_EPOCH);
		}
		loomi_metric_batch_free(&b);
	}
	for (size_t i = 0; i < sizeof not_mine / sizeof not_mine[0]; i++) {
		ck_assert_msg(!loomi_metrics_json_fast(not_mine[i], strlen(not_mine[i]), 0, &b), "%s",
		              not_mine[i]);
		ck_assert_uint_eq(b.count, 0);
	}
}
END_TEST

START_TEST(test_names)
{
	ck_assert(loomi_tracking_name_ok("val_loss"));
	ck_assert(loomi_tracking_name_ok("eval/accuracy.top-1:a"));
	ck_assert(!loomi_tracking_name_ok(""));
	ck_assert(!loomi_tracking_name_ok("a b"));
	ck_assert(!loomi_tracking_name_ok("a\"b"));
	char longname[202];
	memset(longname, 'a', 201);
	longname[201] = '\0';
	ck_assert(!loomi_tracking_name_ok(longname));
	ck_assert(loomi_metric_higher_better("val_accuracy"));
	ck_assert(loomi_metric_higher_better("test_macro_f1"));
	ck_assert(!loomi_metric_higher_better("test_mae"));
	double v;
	json_t *j = json_string("-Infinity");
	ck_assert_int_eq(loomi_tracking_value(j, &v), 0);
	ck_assert(isinf(v) && v < 0);
	json_decref(j);
	j = json_string("1.5");
	ck_assert_int_eq(loomi_tracking_value(j, &v), LOOM_EINVAL);
	json_decref(j);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("tracking");
	TCase *tc = tcase_create("store");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_points_round_trip);
	tcase_add_test(tc, test_corrupt_block);
	tcase_add_test(tc, test_task_runs);
	tcase_add_test(tc, test_run_waits_for_writer);
	tcase_add_test(tc, test_lineage_hash);
	tcase_add_test(tc, test_downsample);
	suite_add_tcase(s, tc);
	tc = tcase_create("pure");
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_fast_batches);
	suite_add_tcase(s, tc);
	return tu_run(s);
}

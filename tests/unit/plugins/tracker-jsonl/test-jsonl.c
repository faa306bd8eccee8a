/* tracker-jsonl: every line of a run's file parses, the lines come in the
 * order the run happened, every metric point comes back with its exact
 * value (non-finite ones as null plus "nonfinite"), a paused and resumed
 * run continues its file, and bad places and run ids give clear errors. */
#include "config.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <loom/loom.h>

#include "host/core/util.h"
#include "testutil.h"

#define MODULE "tracker-jsonl"

static char *tmp;
static tu_plugin P;
static const loom_tracker_ops *ops;
static void *ctx;

static void
start(const char *extra)
{
	char *conf = loomi_strfmt("dir = \"%s/jl\"; %s", tmp, extra ? extra : "");
	char *err = NULL;
	int rv = tu_plugin_open(&P, MODULE, "jl", conf, "jl.conf", &err);

	ck_assert_msg(rv == 0, "open failed: %s", err ? err : "?");
	free(conf);
	ops = P.ins->desc->ops;
	ctx = P.ins->ctx;
}

static void
setup(void)
{
	tmp = tu_tmpdir();
}

static void
teardown(void)
{
	tu_plugin_close(&P);
	tu_rmrf(tmp);
	free(tmp);
	tmp = NULL;
}

static loom_run_info
run_info(const char *id, int64_t job, const char *params)
{
	loom_run_info r = {0};
	r.size = sizeof r;
	r.run_id = id;
	r.job_id = job;
	r.name = "seattle";
	r.user = "ana";
	r.started_ms = 1795000000000;
	r.params_json = params;
	r.lineage_json = "{\"config_version\":3}";
	return r;
}

/* Every line of a file, parsed; the test fails on one that does not
 * parse or does not end in a newline. */
static json_t *
read_lines(const char *path)
{
	json_t *all = json_array();
	FILE *fp = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	size_t no = 0;

	ck_assert_msg(fp != NULL, "cannot open %s", path);
	while ((n = getline(&line, &cap, fp)) > 0) {
		json_error_t je;
		json_t *v;

		no++;
		ck_assert_msg(line[n - 1] == '\n', "%s:%zu: no newline at the end", path, no);
		v = json_loadb(line, (size_t)n - 1, 0, &je);
		ck_assert_msg(v != NULL, "%s:%zu: %s", path, no, je.text);
		ck_assert_msg(json_is_object(v), "%s:%zu: not an object", path, no);
		json_array_append_new(all, v);
	}
	free(line);
	fclose(fp);
	return all;
}

static const char *
str(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	ck_assert_msg(json_is_string(v), "\"%s\" is not a string", key);
	return json_string_value(v);
}

static size_t
make_points(loom_metric_point *pts, int64_t from, int64_t to)
{
	size_t n = 0;

	for (int64_t s = from; s < to; s++) {
		double loss = 1.0 / (1.0 + (double)s) + 0.1;
		if (s % 491 == 0)
			loss = NAN;
		else if (s % 733 == 0)
			loss = INFINITY;
		else if (s % 877 == 0)
			loss = -INFINITY;
		pts[n++] = (loom_metric_point){"train_loss", s, (int32_t)(s / 500),
		                               LOOM_METRIC_STEP, 1795000000123 + s * 37, loss,
		                               {NULL, NULL}};
		if (s % 500 == 499)
			pts[n++] = (loom_metric_point){"val_loss", s, (int32_t)(s / 500),
			                               LOOM_METRIC_EPOCH, 1795000000123 + s * 37,
			                               0.3 + 1e-17 * (double)s, {NULL, NULL}};
	}
	return n;
}

static void
assert_metric(const json_t *o, const loom_metric_point *pt, const char *run, int64_t job)
{
	static const char *const scopes[] = {"step", "epoch", "final"};
	const json_t *v = json_object_get(o, "value");

	ck_assert_str_eq(str(o, "type"), "metric");
	ck_assert_str_eq(str(o, "run"), run);
	ck_assert_int_eq(json_integer_value(json_object_get(o, "job")), job);
	ck_assert_str_eq(str(o, "name"), pt->name);
	ck_assert_int_eq(json_integer_value(json_object_get(o, "step")), pt->step);
	ck_assert_int_eq(json_integer_value(json_object_get(o, "epoch")), pt->epoch);
	ck_assert_str_eq(str(o, "scope"), scopes[pt->scope]);
	ck_assert_int_eq(json_integer_value(json_object_get(o, "wall_ms")), pt->wall_ms);
	if (isfinite(pt->value)) {
		ck_assert_msg(json_is_real(v) && json_real_value(v) == pt->value,
		              "step %lld: value %.17g expected", (long long)pt->step, pt->value);
		ck_assert_ptr_null(json_object_get(o, "nonfinite"));
	} else {
		ck_assert(json_is_null(v));
		ck_assert_str_eq(str(o, "nonfinite"), isnan(pt->value) ? "nan"
		                                      : pt->value > 0  ? "inf"
		                                                       : "-inf");
	}
}

START_TEST(round_trip_with_pause)
{
	loom_metric_point *pts = calloc(10000, sizeof *pts);
	loom_run_info info = run_info("run-3", 42, "{\"train\":{\"lr\":0.001,\"epochs\":4}}");
	loom_artifact art = {"best.safetensors", "store:runs/run-3/best.safetensors",
	                     "ab12", 123456789012, {NULL, NULL}};
	size_t n1, n2, i, k;
	char *path;
	json_t *lines;
	const json_t *o;

	start(NULL);
	n1 = make_points(pts, 0, 2500);
	n2 = make_points(pts + n1, 2500, 4000);
	ck_assert_int_eq(ops->run_begin(ctx, &info), 0);
	ck_assert_int_eq(ops->log_params(ctx, "run-3", "{\"seed\":42}"), 0);
	ck_assert_int_eq(ops->set_tag(ctx, "run-3", "team", "forecast \"A\""), 0);
	for (i = 0; i < n1; i += 256)
		ck_assert_int_eq(ops->log_metrics(ctx, "run-3", pts + i, n1 - i < 256 ? n1 - i : 256),
		                 0);
	ck_assert_int_eq(ops->run_end(ctx, "run-3", "paused", 1795000100000), 0);
	ck_assert_int_eq(ops->run_begin(ctx, &info), 0);
	ck_assert_int_eq(ops->log_metrics(ctx, "run-3", pts + n1, n2), 0);
	ck_assert_int_eq(ops->flush(ctx), 0);
	ck_assert_int_eq(ops->log_artifact(ctx, "run-3", &art), 0);
	ck_assert_int_eq(ops->run_end(ctx, "run-3", "completed", 1795000200000), 0);

	path = loomi_strfmt("%s/jl/run-3.jsonl", tmp);
	lines = read_lines(path);
	ck_assert_uint_eq(json_array_size(lines), n1 + n2 + 7);
	k = 0;
	o = json_array_get(lines, k++);
	ck_assert_str_eq(str(o, "type"), "run_begin");
	ck_assert_str_eq(str(o, "run"), "run-3");
	ck_assert_int_eq(json_integer_value(json_object_get(o, "job")), 42);
	ck_assert_str_eq(str(o, "user"), "ana");
	ck_assert_int_eq(json_integer_value(json_object_get(o, "started_ms")), 1795000000000);
	ck_assert_double_eq(
		json_real_value(json_object_get(json_object_get(json_object_get(o, "params"),
		                                                "train"),
		                                "lr")),
		0.001);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(o, "lineage"),
	                                                    "config_version")),
	                 3);
	o = json_array_get(lines, k++);
	ck_assert_str_eq(str(o, "type"), "params");
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(o, "params"),
	                                                    "seed")),
	                 42);
	o = json_array_get(lines, k++);
	ck_assert_str_eq(str(o, "type"), "tag");
	ck_assert_str_eq(str(o, "key"), "team");
	ck_assert_str_eq(str(o, "value"), "forecast \"A\"");
	for (i = 0; i < n1; i++)
		assert_metric(json_array_get(lines, k++), &pts[i], "run-3", 42);
	o = json_array_get(lines, k++);
	ck_assert_str_eq(str(o, "type"), "run_end");
	ck_assert_str_eq(str(o, "status"), "paused");
	ck_assert_str_eq(str(o, "time"), "2026-11-18T11:08:20.000Z");
	/* The resumed run continued the same file. */
	o = json_array_get(lines, k++);
	ck_assert_str_eq(str(o, "type"), "run_begin");
	for (i = n1; i < n1 + n2; i++)
		assert_metric(json_array_get(lines, k++), &pts[i], "run-3", 42);
	o = json_array_get(lines, k++);
	ck_assert_str_eq(str(o, "type"), "artifact");
	ck_assert_str_eq(str(o, "ref"), "store:runs/run-3/best.safetensors");
	ck_assert_int_eq(json_integer_value(json_object_get(o, "bytes")), 123456789012);
	o = json_array_get(lines, k++);
	ck_assert_str_eq(str(o, "type"), "run_end");
	ck_assert_str_eq(str(o, "status"), "completed");
	ck_assert_int_eq(json_integer_value(json_object_get(o, "ended_ms")), 1795000200000);
	ck_assert_uint_eq(k, json_array_size(lines));

	/* Times are UTC with milliseconds (values from Python's datetime). */
	ck_assert_str_eq(str(json_array_get(lines, 3), "time"), "2026-11-18T11:06:40.123Z");
	ck_assert_str_eq(str(json_array_get(lines, n1 + n2 + 4), "time"),
	                 "2026-11-18T11:09:08.086Z");
	json_decref(lines);
	free(path);
	free(pts);
}
END_TEST

/* Points without run_begin (a restarted daemon), params that are not
 * JSON, fsync on, and a pre-epoch time. */
START_TEST(odd_inputs)
{
	loom_run_info info = run_info("job-5", 5, "{not json");
	loom_metric_point pt = {"x", 0, 0, LOOM_METRIC_FINAL, -1, 2.5, {NULL, NULL}};
	char *path;
	json_t *lines;

	start("fsync = true;");
	ck_assert_int_eq(ops->log_metrics(ctx, "job-4", &pt, 1), 0);
	ck_assert_int_eq(ops->flush(ctx), 0);
	ck_assert_int_eq(ops->run_begin(ctx, &info), 0);
	ck_assert_int_eq(ops->run_end(ctx, "job-5", "failed", 1795000000000), 0);
	ck_assert_int_eq(ops->run_end(ctx, "job-4", "completed", 1795000000000), 0);

	path = loomi_strfmt("%s/jl/job-4.jsonl", tmp);
	lines = read_lines(path);
	ck_assert_uint_eq(json_array_size(lines), 2);
	ck_assert(json_is_null(json_object_get(json_array_get(lines, 0), "job")));
	ck_assert_str_eq(str(json_array_get(lines, 0), "scope"), "final");
	ck_assert_str_eq(str(json_array_get(lines, 0), "time"), "1969-12-31T23:59:59.999Z");
	json_decref(lines);
	free(path);

	path = loomi_strfmt("%s/jl/job-5.jsonl", tmp);
	lines = read_lines(path);
	ck_assert_uint_eq(json_array_size(lines), 2);
	ck_assert_str_eq(str(json_array_get(lines, 0), "params"), "{not json");
	ck_assert_str_eq(str(json_array_get(lines, 1), "status"), "failed");
	json_decref(lines);
	free(path);
}
END_TEST

/* A file a crash left with a cut last line is repaired before appending;
 * complete lines are kept. */
START_TEST(torn_tail_repaired)
{
	loom_run_info info = run_info("job-9", 9, NULL);
	char *dir, *path;
	json_t *lines;

	start(NULL);
	dir = loomi_strfmt("%s/jl", tmp);
	free(tu_write(dir, "job-9.jsonl", "{\"type\":\"tag\",\"run\":\"job-9\"}\n{\"type\":\"met"));
	free(tu_write(dir, "job-10.jsonl", "{\"type\":\"run_beg"));
	tu_log_capture();
	ck_assert_int_eq(ops->run_begin(ctx, &info), 0);
	ck_assert_int_eq(ops->run_end(ctx, "job-9", "completed", 0), 0);
	info.run_id = "job-10";
	ck_assert_int_eq(ops->run_begin(ctx, &info), 0);
	ck_assert_int_eq(ops->run_end(ctx, "job-10", "completed", 0), 0);
	tu_log_stop();
	ck_assert_msg(tu_log_has("job-9.jsonl ended in an incomplete line") &&
	                  tu_log_has("dropped its last 12 bytes") &&
	                  tu_log_has("dropped its last 16 bytes"),
	              "log: %s", tu_log_text());
	path = loomi_strfmt("%s/job-9.jsonl", dir);
	lines = read_lines(path);
	ck_assert_uint_eq(json_array_size(lines), 3);
	ck_assert_str_eq(str(json_array_get(lines, 0), "type"), "tag");
	ck_assert_str_eq(str(json_array_get(lines, 1), "type"), "run_begin");
	json_decref(lines);
	free(path);
	path = loomi_strfmt("%s/job-10.jsonl", dir);
	lines = read_lines(path);
	ck_assert_uint_eq(json_array_size(lines), 2);
	json_decref(lines);
	free(path);
	free(dir);
}
END_TEST

/* fini writes out lines still in the buffer. */
START_TEST(fini_writes)
{
	loom_run_info info = run_info("job-6", 6, NULL);
	loom_metric_point pt = {"x", 1, 0, LOOM_METRIC_STEP, 1795000000000, 0.5, {NULL, NULL}};
	char *path;
	json_t *lines;

	start(NULL);
	ck_assert_int_eq(ops->run_begin(ctx, &info), 0);
	ck_assert_int_eq(ops->log_metrics(ctx, "job-6", &pt, 1), 0);
	loomi_plugins_fini(&P.reg);
	P.reg_up = false;
	path = loomi_strfmt("%s/jl/job-6.jsonl", tmp);
	lines = read_lines(path);
	ck_assert_uint_eq(json_array_size(lines), 2);
	ck_assert(json_is_null(json_object_get(json_array_get(lines, 0), "params")));
	json_decref(lines);
	free(path);
}
END_TEST

START_TEST(dir_is_a_file)
{
	char *path = loomi_strfmt("%s/jl", tmp), *err = NULL;
	char *conf = loomi_strfmt("dir = \"%s\";", path);
	FILE *fp = fopen(path, "w");
	int rv;

	fclose(fp);
	tu_log_capture();
	rv = tu_plugin_open(&P, MODULE, "jl", conf, "jl.conf", &err);
	tu_log_stop();
	ck_assert_int_eq(rv, LOOM_EPLUGIN_INIT);
	ck_assert_msg(tu_log_has(path) && tu_log_has("not a directory"), "log: %s",
	              tu_log_text());
	free(err);
	free(conf);
	free(path);
}
END_TEST

START_TEST(file_blocked_and_bad_ids)
{
	loom_run_info info = run_info("job-7", 7, NULL);
	loom_metric_point pt = {"x", 1, 0, LOOM_METRIC_STEP, 1795000000000, 0.5, {NULL, NULL}};
	char *path;

	start(NULL);
	/* A directory where the run's file should be. */
	path = loomi_strfmt("%s/jl/job-7.jsonl", tmp);
	ck_assert_int_eq(mkdir(path, 0777), 0);
	tu_log_capture();
	ck_assert_int_eq(ops->run_begin(ctx, &info), LOOM_EIO);
	ck_assert_int_eq(ops->log_metrics(ctx, "job-7", &pt, 1), LOOM_EIO);
	ck_assert_int_eq(ops->run_end(ctx, "job-7", "failed", 0), LOOM_EIO);
	ck_assert_msg(tu_log_has(path) && tu_log_has("cannot open"), "log: %s", tu_log_text());
	free(path);

	info.run_id = "../escape";
	ck_assert_int_eq(ops->run_begin(ctx, &info), LOOM_EINVAL);
	ck_assert_int_eq(ops->set_tag(ctx, "a/b", "k", "v"), LOOM_EINVAL);
	ck_assert_int_eq(ops->log_metrics(ctx, "", &pt, 1), LOOM_EINVAL);
	info.run_id = NULL;
	ck_assert_int_eq(ops->run_begin(ctx, &info), LOOM_EINVAL);
	ck_assert_int_eq(ops->log_metrics(ctx, NULL, &pt, 1), LOOM_EINVAL);
	ck_assert_int_eq(ops->log_metrics(ctx, "job-8", NULL, 1), LOOM_EINVAL);
	tu_log_stop();
	ck_assert_msg(tu_log_has("run id \"../escape\" cannot name a file"), "log: %s",
	              tu_log_text());
	path = loomi_strfmt("%s/escape.jsonl", tmp);
	ck_assert_int_ne(access(path, F_OK), 0);
	free(path);

	/* The instance still serves good runs. */
	info.run_id = "job-8";
	ck_assert_int_eq(ops->run_begin(ctx, &info), 0);
	ck_assert_int_eq(ops->run_end(ctx, "job-8", "completed", 0), 0);
}
END_TEST

/* A write that fails (here: past the file size limit) is an error naming
 * the file, and the instance goes on. */
START_TEST(write_error_names_the_file)
{
	loom_run_info info = run_info("job-9", 9, NULL);
	loom_metric_point pts[200];
	struct rlimit rl = {4096, 4096};

	for (int i = 0; i < 200; i++)
		pts[i] = (loom_metric_point){"a_rather_long_metric_name", i, 0, LOOM_METRIC_STEP,
		                             1795000000000, 1.0, {NULL, NULL}};
	start(NULL);
	ck_assert_int_eq(ops->run_begin(ctx, &info), 0);
	/* Check runs each test in its own process: the limit ends with it. */
	signal(SIGXFSZ, SIG_IGN);
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	tu_log_capture();
	/* The lines fit the 64K buffer: the error comes with the flush. */
	ck_assert_int_eq(ops->log_metrics(ctx, "job-9", pts, 200), 0);
	ck_assert_int_eq(ops->flush(ctx), LOOM_EIO);
	ck_assert_int_eq(ops->run_end(ctx, "job-9", "failed", 1795000000001), LOOM_EIO);
	tu_log_stop();
	ck_assert_msg(tu_log_has("cannot write ") && tu_log_has("/jl/job-9.jsonl") &&
	                  tu_log_has("File too large"),
	              "log: %s", tu_log_text());
}
END_TEST

int
main(void)
{
	Suite *s = suite_create(MODULE);
	TCase *tc = tcase_create("lines");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, round_trip_with_pause);
	tcase_add_test(tc, odd_inputs);
	tcase_add_test(tc, torn_tail_repaired);
	tcase_add_test(tc, fini_writes);
	tcase_add_test(tc, dir_is_a_file);
	tcase_add_test(tc, file_blocked_and_bad_ids);
	if (getenv("CK_FORK") == NULL || strcmp(getenv("CK_FORK"), "no") != 0)
		tcase_add_test(tc, write_error_names_the_file);
	suite_add_tcase(s, tc);
	return tu_run(s);
}

/* tracker-tensorboard: the event files it writes, read back by an
 * independent reader of the documented format, tests/reference/
 * tfevents_read.py (its own CRC-32C and protobuf decoding; the format's
 * references are tensorflow/core/lib/io/record_writer.cc,
 * tensorflow/core/util/event.proto and tensorflow/core/framework/
 * summary.proto).  Every logged (tag, step, value) must come back, rounded
 * to float32; the reader must also be able to fail, on a corrupted byte. */
#include "config.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <loom/loom.h>

#include "host/core/util.h"
#include "testutil.h"

#define MODULE "tracker-tensorboard"

static char *tmp;
static tu_plugin P;
static const loom_tracker_ops *ops;
static void *ctx;

/* Start an instance writing under <tmp>/tb with extra settings. */
static void
start(const char *extra)
{
	char *conf = loomi_strfmt("dir = \"%s/tb\"; %s", tmp, extra ? extra : "");
	char *err = NULL;
	int rv = tu_plugin_open(&P, MODULE, "tb", conf, "tb.conf", &err);

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
run_info(const char *id, int64_t job)
{
	loom_run_info r = {0};
	r.size = sizeof r;
	r.run_id = id;
	r.job_id = job;
	r.name = "test";
	r.user = "tester";
	r.started_ms = 1795000000000;
	return r;
}

/* Run the reader on path; *out gets its stdout (free it); returns its
 * exit status.  Its stderr is left in <tmp>/reader.err. */
static int
read_events(const char *path, char **out)
{
	char *cmd = loomi_strfmt("'%s' '%s/tests/reference/tfevents_read.py' '%s' "
	                         ">'%s/reader.out' 2>'%s/reader.err'",
	                         LOOM_PYTHON3, tu_env("LOOM_TEST_SRCDIR"), path, tmp, tmp);
	char *file = loomi_strfmt("%s/reader.out", tmp);
	int st = system(cmd);
	FILE *fp;
	long n;

	free(cmd);
	ck_assert_msg(st != -1 && WIFEXITED(st), "cannot run the reader");
	fp = fopen(file, "rb");
	ck_assert_ptr_nonnull(fp);
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	rewind(fp);
	*out = malloc((size_t)n + 1);
	ck_assert_uint_eq(fread(*out, 1, (size_t)n, fp), (size_t)n);
	(*out)[n] = '\0';
	fclose(fp);
	free(file);
	return WEXITSTATUS(st);
}

static char *
reader_err(void)
{
	char *file = loomi_strfmt("%s/reader.err", tmp);
	char buf[4096] = "";
	FILE *fp = fopen(file, "r");
	size_t n = 0;

	if (fp) {
		n = fread(buf, 1, sizeof buf - 1, fp);
		fclose(fp);
	}
	buf[n] = '\0';
	free(file);
	return strdup(buf);
}

/* The reader's lines as a JSON array of events. */
static json_t *
parse_lines(const char *text)
{
	json_t *all = json_array();
	const char *s = text;

	while (*s) {
		const char *nl = strchr(s, '\n');
		size_t len = nl ? (size_t)(nl - s) : strlen(s);
		json_error_t je;
		json_t *ev = json_loadb(s, len, 0, &je);
		ck_assert_msg(ev != NULL, "reader line does not parse: %s", je.text);
		json_array_append_new(all, ev);
		s += len + (nl ? 1 : 0);
	}
	return all;
}

/* A float32 as the reader prints it. */
static void
assert_value(const json_t *v, double logged, const char *tag, int64_t step)
{
	float f = (float)logged;

	if (isnan(f)) {
		ck_assert_msg(json_is_string(v) && strcmp(json_string_value(v), "nan") == 0,
		              "%s@%lld: expected nan", tag, (long long)step);
	} else if (isinf(f)) {
		ck_assert_msg(json_is_string(v) &&
		                  strcmp(json_string_value(v), f > 0 ? "inf" : "-inf") == 0,
		              "%s@%lld: expected %s", tag, (long long)step, f > 0 ? "inf" : "-inf");
	} else {
		ck_assert_msg(json_is_number(v), "%s@%lld: not a number", tag, (long long)step);
		ck_assert_msg(json_number_value(v) == (double)f,
		              "%s@%lld: read %.17g, logged %.17g (float %.9g)", tag,
		              (long long)step, json_number_value(v), logged, (double)f);
	}
}

/* The points of the big test: steps with train_loss and lr, an epoch
 * every 250 steps (epoch-scope train_loss and val_loss), non-finite values
 * now and then, and final metrics at the end. */
static size_t
make_points(loom_metric_point *pts, int64_t from, int64_t to, bool final)
{
	size_t n = 0;

	for (int64_t s = from; s < to; s++) {
		double loss = 2.0 / (1.0 + (double)s * 0.01) + 1e-7 * (double)(s % 7);
		if (s % 997 == 0)
			loss = NAN;
		else if (s % 1499 == 0)
			loss = INFINITY;
		else if (s % 1777 == 0)
			loss = -INFINITY;
		pts[n++] = (loom_metric_point){"train_loss", s, (int32_t)(s / 250),
		                               LOOM_METRIC_STEP, 1795000000000 + s * 37, loss,
		                               {NULL, NULL}};
		pts[n++] = (loom_metric_point){"lr", s, (int32_t)(s / 250), LOOM_METRIC_STEP,
		                               1795000000000 + s * 37, 1e-3 * (1.0 - s / 1e4),
		                               {NULL, NULL}};
		if (s % 250 == 249) {
			pts[n++] = (loom_metric_point){"train_loss", s, (int32_t)(s / 250),
			                               LOOM_METRIC_EPOCH, 1795000000000 + s * 37,
			                               0.5 + 1.0 / (double)(s + 1), {NULL, NULL}};
			pts[n++] = (loom_metric_point){"val_loss", s, (int32_t)(s / 250),
			                               LOOM_METRIC_EPOCH, 1795000000000 + s * 37,
			                               s == 1749 ? 1e300 : 0.7 - 1e-5 * (double)s,
			                               {NULL, NULL}};
		}
	}
	if (final)
		pts[n++] = (loom_metric_point){"test_mae", to - 1, (int32_t)(to / 250),
		                               LOOM_METRIC_FINAL, 1795000000000 + to * 37,
		                               0.125, {NULL, NULL}};
	return n;
}

static void
log_in_batches(const char *run, const loom_metric_point *pts, size_t n)
{
	for (size_t i = 0; i < n; i += 300) {
		size_t k = n - i < 300 ? n - i : 300;
		ck_assert_int_eq(ops->log_metrics(ctx, run, pts + i, k), 0);
	}
}

static const char *
tag_of(const loom_metric_point *pt, char *buf, size_t len)
{
	static const char *const prefix[] = {"", "epoch/", "final/"};
	snprintf(buf, len, "%s%s", prefix[pt->scope], pt->name);
	return buf;
}

static size_t
count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL)
		n += strstr(e->d_name, "events.out.tfevents.") == e->d_name;
	closedir(d);
	return n;
}

START_TEST(round_trip_with_pause)
{
	loom_metric_point *pts = calloc(20000, sizeof *pts);
	loom_run_info info = run_info("run-3", 42);
	size_t n1, n2, ev_i = 0, files = 0;
	char *out, *dir, tag[128];
	json_t *events;

	start("flush_bytes = \"4K\";");
	/* 3,000 steps, a pause, 2,000 more: two files in one directory. */
	n1 = make_points(pts, 0, 3000, false);
	n2 = make_points(pts + n1, 3000, 5000, true);
	ck_assert_uint_gt(n1 + n2, 10000);
	ck_assert_int_eq(ops->run_begin(ctx, &info), 0);
	log_in_batches("run-3", pts, n1);
	ck_assert_int_eq(ops->run_end(ctx, "run-3", "paused", 1795000100000), 0);
	ck_assert_int_eq(ops->run_begin(ctx, &info), 0);
	log_in_batches("run-3", pts + n1, n2);
	ck_assert_int_eq(ops->flush(ctx), 0);
	ck_assert_int_eq(ops->run_end(ctx, "run-3", "completed", 1795000200000), 0);

	dir = loomi_strfmt("%s/tb/run-3", tmp);
	ck_assert_uint_eq(count_files(dir), 2);
	ck_assert_int_eq(read_events(dir, &out), 0);
	events = parse_lines(out);
	ck_assert_uint_eq(json_array_size(events), n1 + n2 + 2);

	/* Each file starts with its version record; then the points in the
	 * order logged. */
	for (size_t i = 0; i < json_array_size(events); i++) {
		const json_t *ev = json_array_get(events, i);
		const json_t *values = json_object_get(ev, "values");
		const loom_metric_point *pt;
		const json_t *v;

		if (json_integer_value(json_object_get(ev, "record")) == 0) {
			ck_assert_str_eq(json_string_value(json_object_get(ev, "file_version")),
			                 "brain.Event:2");
			ck_assert_ptr_null(values);
			ck_assert_uint_eq(ev_i, files == 0 ? 0 : n1);
			files++;
			continue;
		}
		ck_assert_ptr_null(json_object_get(ev, "file_version"));
		ck_assert_uint_lt(ev_i, n1 + n2);
		pt = &pts[ev_i++];
		ck_assert_uint_eq(json_array_size(values), 1);
		v = json_array_get(values, 0);
		ck_assert_str_eq(json_string_value(json_object_get(v, "tag")),
		                 tag_of(pt, tag, sizeof tag));
		ck_assert_int_eq(json_integer_value(json_object_get(ev, "step")), pt->step);
		ck_assert_double_eq_tol(json_number_value(json_object_get(ev, "wall_time")),
		                        (double)pt->wall_ms / 1000.0, 1e-6);
		assert_value(json_object_get(v, "simple_value"), pt->value, tag, pt->step);
	}
	ck_assert_uint_eq(files, 2);
	ck_assert_uint_eq(ev_i, n1 + n2);
	json_decref(events);
	free(out);
	free(dir);
	free(pts);
}
END_TEST

/* Several runs at once, each in its own directory; fini writes out what
 * was still buffered. */
START_TEST(runs_apart_and_fini_writes)
{
	loom_run_info a = run_info("job-1", 1), b = run_info("job-2", 2);
	loom_metric_point pa = {"loss", 5, 0, LOOM_METRIC_STEP, 1795000000000, 1.5, {0}};
	loom_metric_point pb = {"loss", -3, 0, LOOM_METRIC_STEP, 1795000000000, -2.25, {0}};
	char *out, *dir;
	json_t *events;

	start(NULL);
	ck_assert_int_eq(ops->run_begin(ctx, &a), 0);
	ck_assert_int_eq(ops->run_begin(ctx, &b), 0);
	ck_assert_int_eq(ops->log_metrics(ctx, "job-1", &pa, 1), 0);
	ck_assert_int_eq(ops->log_metrics(ctx, "job-2", &pb, 1), 0);
	/* No run_end, no flush: fini must write them. */
	{
		/* Keep tmp: close the plugin only. */
		loomi_plugins_fini(&P.reg);
		P.reg_up = false;
	}
	dir = loomi_strfmt("%s/tb/job-2", tmp);
	ck_assert_int_eq(read_events(dir, &out), 0);
	events = parse_lines(out);
	ck_assert_uint_eq(json_array_size(events), 2);
	/* A negative step survives the varint's two's complement. */
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(events, 1), "step")),
	                 -3);
	assert_value(json_object_get(json_array_get(json_object_get(json_array_get(events, 1),
	                                                            "values"),
	                                            0),
	                             "simple_value"),
	             -2.25, "loss", -3);
	json_decref(events);
	free(out);
	free(dir);
	dir = loomi_strfmt("%s/tb/job-1", tmp);
	ck_assert_int_eq(read_events(dir, &out), 0);
	events = parse_lines(out);
	ck_assert_uint_eq(json_array_size(events), 2);
	json_decref(events);
	free(out);
	free(dir);
}
END_TEST

/* Flip one byte of a file; the reader must notice. */
static void
flip(const char *path, long at)
{
	FILE *fp = fopen(path, "r+b");
	int ch;

	ck_assert_ptr_nonnull(fp);
	fseek(fp, at, SEEK_SET);
	ch = fgetc(fp);
	fseek(fp, at, SEEK_SET);
	fputc(ch ^ 0x20, fp);
	fclose(fp);
}

static char *
only_file(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char *path = NULL;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL)
		if (strstr(e->d_name, "tfevents"))
			path = loomi_strfmt("%s/%s", dir, e->d_name);
	closedir(d);
	ck_assert_ptr_nonnull(path);
	return path;
}

START_TEST(reader_detects_corruption)
{
	loom_run_info info = run_info("bad", 9);
	loom_metric_point pts[3] = {
		{"a", 1, 0, LOOM_METRIC_STEP, 1795000000000, 1.0, {0}},
		{"b", 2, 0, LOOM_METRIC_STEP, 1795000000000, 2.0, {0}},
		{"c", 3, 0, LOOM_METRIC_STEP, 1795000000000, 3.0, {0}},
	};
	char *out, *dir, *file, *msg;
	struct stat st;

	start(NULL);
	ck_assert_int_eq(ops->run_begin(ctx, &info), 0);
	ck_assert_int_eq(ops->log_metrics(ctx, "bad", pts, 3), 0);
	ck_assert_int_eq(ops->run_end(ctx, "bad", "completed", 1795000000001), 0);
	dir = loomi_strfmt("%s/tb/bad", tmp);
	file = only_file(dir);
	ck_assert_int_eq(read_events(file, &out), 0);
	free(out);

	/* A byte in the last record's data: its data CRC fails. */
	ck_assert_int_eq(stat(file, &st), 0);
	flip(file, (long)st.st_size - 8);
	ck_assert_int_eq(read_events(file, &out), 1);
	msg = reader_err();
	ck_assert_msg(strstr(msg, "data CRC mismatch") && strstr(msg, "record 3"),
	              "unexpected: %s", msg);
	free(msg);
	free(out);
	flip(file, (long)st.st_size - 8);
	ck_assert_int_eq(read_events(file, &out), 0);
	free(out);

	/* A byte of the first record's length: its length CRC fails. */
	flip(file, 0);
	ck_assert_int_eq(read_events(file, &out), 1);
	msg = reader_err();
	ck_assert_msg(strstr(msg, "length CRC mismatch") && strstr(msg, "record 0"),
	              "unexpected: %s", msg);
	free(msg);
	free(out);
	free(file);
	free(dir);
}
END_TEST

START_TEST(dir_is_a_file)
{
	char *path = loomi_strfmt("%s/tb", tmp), *err = NULL;
	char *conf = loomi_strfmt("dir = \"%s\";", path);
	FILE *fp = fopen(path, "w");
	int rv;

	fclose(fp);
	tu_log_capture();
	rv = tu_plugin_open(&P, MODULE, "tb", conf, "tb.conf", &err);
	free(conf);
	tu_log_stop();
	ck_assert_int_eq(rv, LOOM_EPLUGIN_INIT);
	ck_assert_msg(strstr(err, "failed to initialize"), "unexpected: %s", err);
	ck_assert_msg(tu_log_has(path) && tu_log_has("not a directory"), "log: %s",
	              tu_log_text());
	free(err);
	free(path);
}
END_TEST

START_TEST(run_dir_blocked_and_bad_ids)
{
	loom_run_info info = run_info("job-7", 7);
	loom_metric_point pt = {"loss", 1, 0, LOOM_METRIC_STEP, 1795000000000, 1.0, {0}};
	char *path, *text;
	FILE *fp;

	start(NULL);
	/* A file where the run's directory should be. */
	text = loomi_strfmt("%s/tb/job-7", tmp);
	fp = fopen(text, "w");
	fclose(fp);
	tu_log_capture();
	ck_assert_int_eq(ops->run_begin(ctx, &info), LOOM_EIO);
	ck_assert_int_eq(ops->log_metrics(ctx, "job-7", &pt, 1), LOOM_EIO);
	ck_assert_int_eq(ops->run_end(ctx, "job-7", "failed", 1795000000001), 0);
	ck_assert_msg(tu_log_has(text) && tu_log_has("not a directory"), "log: %s",
	              tu_log_text());
	free(text);

	/* Run ids that would leave the directory. */
	info.run_id = "../escape";
	ck_assert_int_eq(ops->run_begin(ctx, &info), LOOM_EINVAL);
	info.run_id = "..";
	ck_assert_int_eq(ops->run_begin(ctx, &info), LOOM_EINVAL);
	ck_assert_int_eq(ops->log_metrics(ctx, "", &pt, 1), LOOM_EINVAL);
	info.run_id = NULL;
	ck_assert_int_eq(ops->run_begin(ctx, &info), LOOM_EINVAL);
	ck_assert_int_eq(ops->log_metrics(ctx, NULL, &pt, 1), LOOM_EINVAL);
	ck_assert_int_eq(ops->log_metrics(ctx, "job-8", NULL, 1), LOOM_EINVAL);
	tu_log_stop();
	ck_assert_msg(tu_log_has("run id \"../escape\" cannot name a directory"), "log: %s",
	              tu_log_text());
	path = loomi_strfmt("%s/escape", tmp);
	ck_assert_int_ne(access(path, F_OK), 0);
	free(path);

	/* The instance still works for a good run. */
	info.run_id = "job-8";
	ck_assert_int_eq(ops->run_begin(ctx, &info), 0);
	ck_assert_int_eq(ops->log_metrics(ctx, "job-8", &pt, 1), 0);
	ck_assert_int_eq(ops->run_end(ctx, "job-8", "completed", 1795000000001), 0);
}
END_TEST

/* A write that fails (here: past the file size limit) is an error naming
 * the file, and the instance goes on. */
START_TEST(write_error_names_the_file)
{
	loom_run_info info = run_info("job-9", 9);
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
	ck_assert_int_eq(ops->log_metrics(ctx, "job-9", pts, 200), 0);
	ck_assert_int_eq(ops->flush(ctx), LOOM_EIO);
	ck_assert_int_eq(ops->run_end(ctx, "job-9", "failed", 1795000000001), LOOM_EIO);
	tu_log_stop();
	ck_assert_msg(tu_log_has("cannot write ") && tu_log_has("/tb/job-9/events.out.tfevents.") &&
	                  tu_log_has("File too large"),
	              "log: %s", tu_log_text());
}
END_TEST

int
main(void)
{
	Suite *s = suite_create(MODULE);
	TCase *tc = tcase_create("events");

	if (LOOM_PYTHON3[0] == '\0') {
		printf("SKIP: no python3 was found by configure; the event files are checked by "
		       "tests/reference/tfevents_read.py\n");
		return 77;
	}
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, round_trip_with_pause);
	tcase_add_test(tc, runs_apart_and_fini_writes);
	tcase_add_test(tc, reader_detects_corruption);
	tcase_add_test(tc, dir_is_a_file);
	tcase_add_test(tc, run_dir_blocked_and_bad_ids);
	if (getenv("CK_FORK") == NULL || strcmp(getenv("CK_FORK"), "no") != 0)
		tcase_add_test(tc, write_error_names_the_file);
	suite_add_tcase(s, tc);
	return tu_run(s);
}

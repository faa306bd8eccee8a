/* exporter-csv on a real trained run and on synthetic histories, read back
 * with Python's csv module (and pandas when installed, check_export.py):
 *
 * - every history point and every final metric is a row whose value reads
 *   back to the same double; lines end in CRLF;
 * - NaN, inf, -inf, subnormals and -0.0 survive; a metric name with a
 *   comma and quotes is quoted;
 * - export_compare writes several runs under one header;
 * - a failing sink's error comes back and stops the history;
 * - 1,000,000 points stream through the buffer (many writes, none big). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "exp-common.h"
#include "host/core/util.h"

static const char *trained;

static void
expect_ok(exp_buf *b, const loom_export_source *const *srcs, size_t n)
{
	json_t *want = exp_expect_rows(srcs, n);
	char *log = NULL;
	int rv = exp_check("csv", b->data, b->len, want, &log);

	ck_assert_msg(rv == 0, "check_export.py csv: %s", log);
	printf("%s", log);
	free(log);
	json_decref(want);
}

START_TEST(test_trained)
{
	exp_plugin e;
	exp_buf b;
	loomi_export_run *run = exp_load(trained);
	const loom_export_source *src;

	loomi_export_set_run(run, "job-3", 3, "tiny", "completed", NULL, NULL);
	src = loomi_export_source(run);
	ck_assert_uint_gt(src->n_metric_names, 2);
	exp_open(&e, "exporter-csv");
	ck_assert_str_eq(e.ops->format, "csv");
	ck_assert_str_eq(e.ops->media_type, "text/csv; charset=utf-8");
	exp_buf_init(&b);
	ck_assert_int_eq(e.ops->export_run(e.ctx, src, &b.sink), 0);
	ck_assert(strncmp(b.data, "run_id,metric,step,epoch,scope,value\r\n", 38) == 0);
	ck_assert_ptr_nonnull(strstr(b.data, "\r\njob-3,train_loss,"));
	ck_assert_ptr_nonnull(strstr(b.data, "\r\njob-3,test.mae,,,final,"));
	ck_assert_ptr_nonnull(strstr(b.data, "\r\njob-3,baselines.repeat_last.mae,,,final,"));
	expect_ok(&b, &src, 1);
	exp_buf_free(&b);
	loomi_export_free(run);
	exp_close(&e);
}
END_TEST

START_TEST(test_quoting_nonfinite)
{
	static const char *const names[] = {"loss, smoothed", "say \"hi\"", " padded", "plain"};
	exp_synth syn = {40};
	exp_plugin e;
	exp_buf b;
	loomi_export_run *run = exp_load(trained);
	const loom_export_source *src;

	loomi_export_set_run(run, "run,\"1\"", 1, "q", "completed", NULL, NULL);
	loomi_export_set_history(run, names, 4, exp_synth_history, &syn);
	src = loomi_export_source(run);
	exp_open(&e, "exporter-csv");
	exp_buf_init(&b);
	ck_assert_int_eq(e.ops->export_run(e.ctx, src, &b.sink), 0);
	ck_assert_ptr_nonnull(strstr(b.data, "\"run,\"\"1\"\"\",\"loss, smoothed\",0,0,step,NaN\r\n"));
	ck_assert_ptr_nonnull(strstr(b.data, ",\"say \"\"hi\"\"\",1,0,step,inf\r\n"));
	ck_assert_ptr_nonnull(strstr(b.data, ",\" padded\",2,0,step,-inf\r\n"));
	ck_assert_ptr_nonnull(strstr(b.data, ",plain,3,0,step,0.10000000000000001\r\n"));
	expect_ok(&b, &src, 1);
	exp_buf_free(&b);
	loomi_export_free(run);
	exp_close(&e);
}
END_TEST

START_TEST(test_compare)
{
	exp_plugin e;
	exp_buf b;
	loomi_export_run *a = exp_load(trained), *z = exp_load(trained);
	const loom_export_source *srcs[2];

	loomi_export_set_run(a, "job-1", 1, "a", "completed", NULL, NULL);
	loomi_export_set_run(z, "job-2", 2, "z", "completed", NULL, NULL);
	srcs[0] = loomi_export_source(a);
	srcs[1] = loomi_export_source(z);
	exp_open(&e, "exporter-csv");
	ck_assert(e.ops->caps & LOOM_EXPORT_COMPARE);
	exp_buf_init(&b);
	ck_assert_int_eq(e.ops->export_compare(e.ctx, srcs, 2, &b.sink), 0);
	ck_assert_ptr_null(strstr(b.data + 1, "run_id,metric")); /* one header */
	ck_assert_ptr_nonnull(strstr(b.data, "\r\njob-2,test.mae,"));
	expect_ok(&b, srcs, 2);
	exp_buf_free(&b);
	loomi_export_free(a);
	loomi_export_free(z);
	exp_close(&e);
}
END_TEST

START_TEST(test_sink_fails)
{
	static const char *const names[] = {"a", "b"};
	exp_synth syn = {100000};
	exp_plugin e;
	exp_buf b;
	loomi_export_run *run = exp_load(trained);

	loomi_export_set_history(run, names, 2, exp_synth_history, &syn);
	exp_open(&e, "exporter-csv");
	exp_buf_init(&b);
	b.fail_after = 200000;
	b.fail_rv = LOOM_EIO;
	ck_assert_int_eq(e.ops->export_run(e.ctx, loomi_export_source(run), &b.sink), LOOM_EIO);
	/* Nothing written after the failure: the writer stopped. */
	ck_assert_uint_le(b.len, 200000);
	ck_assert_uint_le(b.writes, 5);
	exp_buf_free(&b);
	loomi_export_free(run);
	exp_close(&e);
}
END_TEST

START_TEST(test_million)
{
	static const char *const names[] = {"train_loss"};
	exp_synth syn = {1000000};
	exp_plugin e;
	exp_buf b;
	loomi_export_run *run = exp_load(trained);
	uint64_t t0;
	clock_t c0;

	loomi_export_set_run(run, "job-1", 1, "big", "completed", NULL, NULL);
	loomi_export_set_history(run, names, 1, exp_synth_history, &syn);
	exp_open(&e, "exporter-csv");
	exp_buf_init(&b);
	t0 = loomi_host_services()->clock_mono_ns();
	c0 = clock();
	ck_assert_int_eq(e.ops->export_run(e.ctx, loomi_export_source(run), &b.sink), 0);
	/* Reported, not asserted: timings belong to bench/. */
	printf("csv: 1,000,000 points, %zu bytes in %zu writes, %.3f s (%.3f s of CPU)\n", b.len,
	       b.writes, (double)(loomi_host_services()->clock_mono_ns() - t0) / 1e9,
	       (double)(clock() - c0) / CLOCKS_PER_SEC);
	ck_assert_uint_gt(b.writes, b.len / (64 * 1024));
	ck_assert_ptr_nonnull(strstr(b.data, "\r\njob-1,train_loss,999999,99999,step,"));
	exp_buf_free(&b);
	loomi_export_free(run);
	exp_close(&e);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("exporter-csv");
	TCase *tc = tcase_create("export");

	trained = exp_train();
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_trained);
	tcase_add_test(tc, test_quoting_nonfinite);
	tcase_add_test(tc, test_compare);
	tcase_add_test(tc, test_sink_fails);
	tcase_add_test(tc, test_million);
	suite_add_tcase(s, tc);
	return exp_done(tu_run(s));
}

/* exporter-json on a real trained run and on synthetic histories, parsed
 * with jansson here and with Python's json module (check_export.py):
 *
 * - run, spec, model, metrics and columnar history; values read back to
 *   the same doubles; non-finite values are null and listed by index;
 * - export_compare: every run, and the spec keys whose values differ;
 * - a failing sink's error comes back;
 * - 1,000,000 points stream through the buffer. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "exp-common.h"
#include "host/core/util.h"

static const char *trained;

static json_t *
export_one(loomi_export_run *run, exp_buf *b)
{
	exp_plugin e;
	json_error_t je;
	json_t *doc;

	exp_open(&e, "exporter-json");
	ck_assert_str_eq(e.ops->format, "json");
	ck_assert_str_eq(e.ops->media_type, "application/json");
	exp_buf_init(b);
	ck_assert_int_eq(e.ops->export_run(e.ctx, loomi_export_source(run), &b->sink), 0);
	exp_close(&e);
	doc = json_loadb(b->data, b->len, 0, &je);
	ck_assert_msg(doc != NULL, "not JSON: %s at %d:%d", je.text, je.line, je.column);
	return doc;
}

static void
python_agrees(exp_buf *b, const loom_export_source *src)
{
	json_t *want = exp_expect_history(src);
	char *log = NULL;
	int rv = exp_check("json", b->data, b->len, want, &log);

	ck_assert_msg(rv == 0, "check_export.py json: %s", log);
	printf("%s", log);
	free(log);
	json_decref(want);
}

START_TEST(test_trained)
{
	exp_buf b;
	loomi_export_run *run = exp_load(trained);
	json_t *doc, *m, *h, *metrics;

	loomi_export_set_run(run, "job-4", 4, "tiny", "completed", NULL,
	                     "{\"user\":\"ada\",\"started_ms\":1700000000000}");
	doc = export_one(run, &b);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(doc, "run"), "id")), "job-4");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(doc, "run"), "user")), "ada");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(doc, "run"), "state")),
	                 "completed");
	ck_assert_int_eq(json_integer_value(json_object_get(
	                     json_object_get(json_object_get(doc, "spec"), "model"), "d_model")),
	                 16);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(doc, "model"), "head")),
	                 "forecast");
	metrics = json_loads(loomi_export_source(run)->metrics_json, 0, NULL);
	m = json_object_get(doc, "metrics");
	ck_assert(json_equal(json_object_get(m, "test"), json_object_get(metrics, "test")));
	ck_assert_ptr_null(json_object_get(m, "epochs"));
	h = json_object_get(json_object_get(doc, "history"), "train_loss");
	ck_assert_uint_eq(json_array_size(json_object_get(h, "value")), 2);
	ck_assert_str_eq(json_string_value(json_object_get(h, "scope")), "epoch");
	ck_assert(json_real_value(json_array_get(json_object_get(h, "value"), 1)) ==
	          json_real_value(json_object_get(json_array_get(json_object_get(metrics, "epochs"), 1),
	                                          "train_loss")));
	python_agrees(&b, loomi_export_source(run));
	json_decref(metrics);
	json_decref(doc);
	exp_buf_free(&b);
	loomi_export_free(run);
}
END_TEST

START_TEST(test_nonfinite)
{
	static const char *const names[] = {"loss", "odd \"name\"\n"};
	exp_synth syn = {30};
	exp_buf b;
	loomi_export_run *run = exp_load(trained);
	json_t *doc, *h, *nf;

	loomi_export_set_history(run, names, 2, exp_synth_history, &syn);
	doc = export_one(run, &b);
	h = json_object_get(json_object_get(doc, "history"), "loss");
	ck_assert(json_is_null(json_array_get(json_object_get(h, "value"), 0)));
	ck_assert(json_is_null(json_array_get(json_object_get(h, "value"), 1)));
	ck_assert(json_is_null(json_array_get(json_object_get(h, "value"), 2)));
	ck_assert(json_real_value(json_array_get(json_object_get(h, "value"), 3)) == 0.1);
	nf = json_object_get(h, "nonfinite");
	ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(nf, "NaN"), 0)), 0);
	ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(nf, "inf"), 0)), 1);
	ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(nf, "-inf"), 0)), 2);
	ck_assert_uint_eq(json_object_size(nf), 3);
	ck_assert_ptr_nonnull(strstr(b.data, "\"value\":[null,null,null,0.10000000000000001,"));
	python_agrees(&b, loomi_export_source(run));
	json_decref(doc);
	exp_buf_free(&b);
	loomi_export_free(run);
}
END_TEST

START_TEST(test_compare)
{
	exp_plugin e;
	exp_buf b;
	loomi_export_run *a = exp_load(trained), *z = exp_load(trained);
	const loom_export_source *srcs[2];
	json_t *doc, *diff, *lr;

	loomi_export_set_run(a, "job-1", 1, "a", "completed",
	                     "{\"model\":{\"layers\":2,\"head\":\"forecast\"},\"train\":{\"lr\":0.002}}",
	                     NULL);
	loomi_export_set_run(z, "job-2", 2, "z", "completed",
	                     "{\"model\":{\"layers\":2,\"head\":\"forecast\"},\"train\":{\"lr\":0.001,"
	                     "\"seed\":3}}",
	                     NULL);
	srcs[0] = loomi_export_source(a);
	srcs[1] = loomi_export_source(z);
	exp_open(&e, "exporter-json");
	exp_buf_init(&b);
	ck_assert_int_eq(e.ops->export_compare(e.ctx, srcs, 2, &b.sink), 0);
	doc = json_loadb(b.data, b.len, 0, NULL);
	ck_assert_ptr_nonnull(doc);
	ck_assert_uint_eq(json_array_size(json_object_get(doc, "runs")), 2);
	diff = json_object_get(doc, "differences");
	ck_assert_uint_eq(json_object_size(diff), 2);
	lr = json_object_get(diff, "train.lr");
	ck_assert(json_real_value(json_array_get(lr, 0)) == 0.002);
	ck_assert(json_real_value(json_array_get(lr, 1)) == 0.001);
	ck_assert(json_is_null(json_array_get(json_object_get(diff, "train.seed"), 0)));
	ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(diff, "train.seed"), 1)), 3);
	ck_assert_ptr_null(json_object_get(diff, "model.layers"));
	python_agrees(&b, srcs[0]);
	json_decref(doc);
	exp_buf_free(&b);
	loomi_export_free(a);
	loomi_export_free(z);
	exp_close(&e);
}
END_TEST

START_TEST(test_sink_fails)
{
	exp_plugin e;
	exp_buf b;
	loomi_export_run *run = exp_load(trained);

	exp_open(&e, "exporter-json");
	exp_buf_init(&b);
	b.fail_after = 1;
	b.fail_rv = LOOM_EIO;
	ck_assert_int_eq(e.ops->export_run(e.ctx, loomi_export_source(run), &b.sink), LOOM_EIO);
	ck_assert_uint_eq(b.writes, 1);
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
	json_t *doc;

	loomi_export_set_history(run, names, 1, exp_synth_history, &syn);
	exp_open(&e, "exporter-json");
	exp_buf_init(&b);
	t0 = loomi_host_services()->clock_mono_ns();
	c0 = clock();
	ck_assert_int_eq(e.ops->export_run(e.ctx, loomi_export_source(run), &b.sink), 0);
	/* Reported, not asserted: timings belong to bench/. */
	printf("json: 1,000,000 points, %zu bytes in %zu writes, %.3f s (%.3f s of CPU)\n", b.len,
	       b.writes, (double)(loomi_host_services()->clock_mono_ns() - t0) / 1e9,
	       (double)(clock() - c0) / CLOCKS_PER_SEC);
	ck_assert_uint_gt(b.writes, b.len / (64 * 1024));
	doc = json_loadb(b.data, b.len, 0, NULL);
	ck_assert_ptr_nonnull(doc);
	ck_assert_uint_eq(json_array_size(json_object_get(
	                      json_object_get(json_object_get(doc, "history"), "train_loss"), "step")),
	                  1000000);
	json_decref(doc);
	exp_buf_free(&b);
	loomi_export_free(run);
	exp_close(&e);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("exporter-json");
	TCase *tc = tcase_create("export");

	trained = exp_train();
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_trained);
	tcase_add_test(tc, test_nonfinite);
	tcase_add_test(tc, test_compare);
	tcase_add_test(tc, test_sink_fails);
	tcase_add_test(tc, test_million);
	suite_add_tcase(s, tc);
	return exp_done(tu_run(s));
}

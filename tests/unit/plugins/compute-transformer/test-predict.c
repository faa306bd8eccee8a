/* compute-transformer's predict against its own evaluation: a small model of
 * each task is trained on python3-vega-datasets' real CSVs through the
 * plugin (as loom-worker runs it), then every test-split window's raw
 * values go through model_open / predict, and the test metrics recomputed
 * from those predictions must match the ones the training run wrote to
 * metrics.json (the engine's own evaluation of the same model).  Also the
 * refusals: no model, a wrong input shape, a missing value.  Skips (77)
 * without python3-vega-datasets.
 *
 * Tolerance: the engine normalizes the CSV's values in double, predict
 * receives them as f32, so a prediction may differ in its last bit; the
 * metrics must agree within 1e-5 relative (1e-4 for the cross-entropy,
 * recomputed from probabilities), the accuracy exactly. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <loom/loom.h>

#include "data.h"
#include "host/core/conf.h"
#include "host/core/plugins.h"
#include "host/core/util.h"
#include "engine-fixture.h"
#include "spec.h"
#include "testutil.h"

#define VEGA "/usr/lib/python3/dist-packages/vega_datasets/_data"
#define TEMPS VEGA "/seattle-temps.csv"
#define WEATHER VEGA "/seattle-weather.csv"

typedef struct pcase {
	const char *label;
	const char *spec;
	const char *metric;      /* a test metric of metrics.json to recompute */
} pcase;

static const pcase cases[] = {
	{"forecast",
	 "{\"name\":\"p-forecast\",\"data\":{\"path\":\"" TEMPS "\",\"time_column\":\"date\","
	 "\"features\":[\"temp\"],\"target\":[\"temp\"]},"
	 "\"model\":{\"head\":\"forecast\",\"context\":48,\"horizon\":12,\"patch\":12,"
	 "\"stride\":24,\"d_model\":16,\"heads\":2,\"layers\":1,\"ffn\":32,\"dropout\":0.1},"
	 "\"train\":{\"epochs\":2,\"batch\":32,\"warmup_steps\":2,\"seed\":3}}",
	 "mae"},
	{"forecast-no-revin",
	 "{\"name\":\"p-forecast2\",\"data\":{\"path\":\"" WEATHER "\",\"time_column\":\"date\","
	 "\"features\":[\"temp_max\",\"temp_min\",\"wind\"],\"target\":[\"temp_min\",\"temp_max\"]},"
	 "\"model\":{\"head\":\"forecast\",\"context\":14,\"horizon\":3,\"patch\":7,"
	 "\"d_model\":16,\"heads\":2,\"layers\":2,\"ffn\":32,\"revin\":false,"
	 "\"channel_independent\":false,\"positions\":\"sinusoidal\"},"
	 "\"train\":{\"epochs\":2,\"batch\":32,\"warmup_steps\":2,\"seed\":3}}",
	 "mae"},
	{"regression",
	 "{\"name\":\"p-regression\",\"data\":{\"path\":\"" WEATHER "\",\"time_column\":\"date\","
	 "\"features\":[\"precipitation\",\"temp_min\",\"wind\"],\"target\":[\"temp_max\"]},"
	 "\"model\":{\"head\":\"regression\",\"context\":14,\"patch\":7,"
	 "\"d_model\":16,\"heads\":2,\"layers\":1,\"ffn\":32},"
	 "\"train\":{\"epochs\":2,\"batch\":32,\"warmup_steps\":2,\"seed\":3}}",
	 "mae"},
	{"classification",
	 "{\"name\":\"p-classification\",\"data\":{\"path\":\"" WEATHER "\",\"time_column\":\"date\","
	 "\"features\":[\"precipitation\",\"temp_max\",\"temp_min\",\"wind\"],\"target\":\"weather\"},"
	 "\"model\":{\"head\":\"classification\",\"context\":14,\"patch\":7,"
	 "\"d_model\":16,\"heads\":2,\"layers\":1,\"ffn\":32},"
	 "\"train\":{\"epochs\":2,\"batch\":32,\"warmup_steps\":2,\"seed\":3}}",
	 "accuracy"},
	{"anomaly",
	 "{\"name\":\"p-anomaly\",\"data\":{\"path\":\"" TEMPS "\",\"time_column\":\"date\","
	 "\"features\":[\"temp\"]},"
	 "\"model\":{\"head\":\"anomaly\",\"context\":48,\"patch\":12,\"stride\":24,"
	 "\"d_model\":16,\"heads\":2,\"layers\":1,\"ffn\":32,\"revin\":true},"
	 "\"train\":{\"epochs\":2,\"batch\":32,\"warmup_steps\":2,\"seed\":3}}",
	 "score_mean"},
};

static double
test_metric(const char *out, const char *name)
{
	char *path = loomi_path_join(out, "metrics.json");
	json_t *m = json_load_file(path, 0, NULL);
	double v;

	ck_assert_ptr_nonnull(m);
	v = json_number_value(json_object_get(json_object_get(m, "test"), name));
	json_decref(m);
	free(path);
	return v;
}

/* The metric of c recomputed from predictions out over the test windows. */
static double
recompute(const pcase *c, const tf_spec *s, const tf_dataset *ds, const loom_tensor *out)
{
	const float *p = out->data;
	int64_t n = ds->n_windows[2], K = ds->n_out;
	double sum = 0, count = 0;

	for (int64_t w = 0; w < n; w++) {
		int64_t start = ds->window_start[2][w], last = start + s->context - 1;
		if (strcmp(c->metric, "mae") == 0 && s->task == TF_TASK_FORECAST) {
			for (int64_t h = 0; h < s->horizon; h++)
				for (int64_t k = 0; k < K; k++) {
					double t = (float)ds->y_raw[(start + s->context + h) * K + k];
					sum += fabs((double)p[(w * s->horizon + h) * K + k] - t);
					count++;
				}
		} else if (strcmp(c->metric, "mae") == 0) {
			for (int64_t k = 0; k < K; k++) {
				sum += fabs((double)p[w * K + k] - (float)ds->y_raw[last * K + k]);
				count++;
			}
		} else if (strcmp(c->metric, "accuracy") == 0) {
			int64_t best = 0;
			for (int64_t j = 1; j < ds->n_classes; j++)
				if (p[w * ds->n_classes + j] > p[w * ds->n_classes + best])
					best = j;
			sum += best == (int64_t)ds->y[last];
			count++;
		} else { /* score_mean */
			sum += p[w];
			count++;
		}
	}
	return sum / count;
}

START_TEST(matches_evaluation)
{
	const pcase *c = &cases[_i];
	char *out = loomi_path_join(tmp, c->label), *info = NULL, *err = NULL;
	void *model = NULL;
	tf_spec spec;
	tf_table table;
	tf_dataset ds;
	loom_tensor in, res;
	int64_t n, L, C;
	double mine, theirs;

	fx_train(c->spec, out);
	ck_assert_int_eq(ops->model_open(tf->ctx, out, &model, &info), 0);
	ck_assert_ptr_nonnull(strstr(info, "\"shape\""));

	/* the test windows, raw, as the engine cut them */
	ck_assert_int_eq(tf_spec_parse(c->spec, "spec", fx_head_task, NULL, &spec, &err), 0);
	ck_assert_msg(tf_csv_read(spec.path, NULL, &table, &err) == 0, "%s", err);
	ck_assert_msg(tf_dataset_build(&table, &spec.data, &ds, &err) == 0, "%s", err);
	n = ds.n_windows[2];
	L = spec.context;
	C = ds.n_in;
	ck_assert_int_gt(n, 10);
	memset(&in, 0, sizeof in);
	in.dtype = LOOM_DTYPE_F32;
	in.ndim = 3;
	in.dims[0] = n;
	in.dims[1] = L;
	in.dims[2] = C;
	in.nbytes = (size_t)(n * L * C) * sizeof(float);
	in.data = malloc(in.nbytes);
	for (int64_t w = 0; w < n; w++)
		for (int64_t i = 0; i < L * C; i++)
			((float *)in.data)[w * L * C + i] =
				(float)ds.x_raw[ds.window_start[2][w] * C + i];

	ck_assert_int_eq(ops->predict(tf->ctx, model, &in, &res), 0);
	ck_assert_ptr_nonnull(res.data);
	ck_assert_int_eq(res.dtype, LOOM_DTYPE_F32);
	ck_assert_int_eq(res.dims[0], n);
	mine = recompute(c, &spec, &ds, &res);
	theirs = test_metric(out, c->metric);
	printf("%s: test %s %.9g from predict, %.9g in metrics.json\n", c->label, c->metric, mine,
	       theirs);
	if (strcmp(c->metric, "accuracy") == 0)
		ck_assert_double_eq_tol(mine, theirs, 1e-12);
	else
		ck_assert_double_le(fabs(mine - theirs), 1e-5 * fabs(theirs));

	/* a missing value is refused, naming it */
	((float *)in.data)[5] = NAN;
	host->tensor_free(res.data);
	tu_log_capture();
	ck_assert_int_eq(ops->predict(tf->ctx, model, &in, &res), LOOM_EINVAL);
	tu_log_stop();
	ck_assert(tu_log_has("fill gaps first"));
	ck_assert_ptr_null(res.data);
	/* so is a window of the wrong length */
	in.dims[1] = L + 1;
	ck_assert_int_eq(ops->predict(tf->ctx, model, &in, &res), LOOM_EINVAL);

	ops->model_close(tf->ctx, model);
	host->free(info);
	free(in.data);
	tf_dataset_free(&ds);
	tf_table_free(&table);
	tf_spec_free(&spec);
	free(out);
}
END_TEST

START_TEST(no_model)
{
	void *model = NULL;
	char *info = NULL;

	tu_log_capture();
	ck_assert_int_eq(ops->model_open(tf->ctx, tmp, &model, &info), LOOM_ENOENT);
	tu_log_stop();
	ck_assert(tu_log_has("no best.safetensors or last.safetensors"));
	ck_assert_ptr_null(model);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("compute-transformer predict");
	TCase *tc = tcase_create("predict");

	if (access(TEMPS, R_OK) != 0 || access(WEATHER, R_OK) != 0) {
		fprintf(stderr, "SKIP: python3-vega-datasets is not installed (%s)\n", TEMPS);
		return 77;
	}
	tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, matches_evaluation, 0, (int)(sizeof cases / sizeof cases[0]));
	tcase_add_test(tc, no_model);
	suite_add_tcase(s, tc);
	return tu_run(s);
}

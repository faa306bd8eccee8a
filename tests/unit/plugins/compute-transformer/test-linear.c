/* The linear and naive models' weights (linear.c) against hand-computed
 * cases: each naive map applied to a small window gives the forecast
 * written out by hand; ridge recovers an exact linear relation, matches
 * the one-feature closed form w = cov/(var + λ), skips rows with missing
 * values, and folds the moving-average decomposition back into the same
 * map; methods that cannot apply are refused. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <loom/error.h>

#include "linear.h"
#include "testutil.h"

/* out[od] = w·x + b */
static void
apply(const float *w, const float *b, const float *x, int64_t f, int64_t od, float *out)
{
	for (int64_t j = 0; j < od; j++) {
		double s = b[j];
		for (int64_t i = 0; i < f; i++)
			s += (double)w[j * f + i] * x[i];
		out[j] = (float)s;
	}
}

static void
assert_close(const float *got, const float *want, int64_t n, double tol)
{
	for (int64_t i = 0; i < n; i++)
		ck_assert_msg(fabs((double)got[i] - (double)want[i]) <= tol,
		              "element %lld: got %.9g, want %.9g", (long long)i, (double)got[i],
		              (double)want[i]);
}

START_TEST(naive_one_channel)
{
	/* a window of 6 steps, a horizon of 4, a season of 3 */
	const float x[6] = {1, 4, 2, 5, 3, 7};
	float w[4 * 6], b[4], out[4];

	ck_assert_int_eq(tf_naive_map(TF_NAIVE_REPEAT_LAST, 0, 6, 1, 4, 1, NULL, NULL, w, b), 0);
	apply(w, b, x, 6, 4, out);
	assert_close(out, (const float[]){7, 7, 7, 7}, 4, 0);

	/* the last season (5, 3, 7), repeated */
	ck_assert_int_eq(tf_naive_map(TF_NAIVE_SEASONAL, 3, 6, 1, 4, 1, NULL, NULL, w, b), 0);
	apply(w, b, x, 6, 4, out);
	assert_close(out, (const float[]){5, 3, 7, 5}, 4, 0);

	/* drift: the slope (7 − 1)/5 = 1.2 a step, from the last value */
	ck_assert_int_eq(tf_naive_map(TF_NAIVE_DRIFT, 0, 6, 1, 4, 1, NULL, NULL, w, b), 0);
	apply(w, b, x, 6, 4, out);
	assert_close(out, (const float[]){8.2f, 9.4f, 10.6f, 11.8f}, 4, 1e-5);

	/* every naive map commutes with a shift and a scale of the window (the
	 * rows sum to 1, no bias), so it is the same under any normalization */
	{
		float y[6], outy[4];
		for (int i = 0; i < 6; i++)
			y[i] = 2.5f * x[i] - 3.0f;
		apply(w, b, y, 6, 4, outy);
		for (int h = 0; h < 4; h++)
			ck_assert(fabs(outy[h] - (2.5f * out[h] - 3.0f)) < 1e-4);
	}
}
END_TEST

START_TEST(naive_channels)
{
	/* 3 steps of 2 channels (element t·2 + c); targets: channel 1, then 0 */
	const float x[6] = {10, 1, 20, 2, 30, 3};
	const int64_t target_in[2] = {1, 0};
	float w[2 * 2 * 6], b[4], out[4];

	/* outputs h·K + k */
	ck_assert_int_eq(tf_naive_map(TF_NAIVE_REPEAT_LAST, 0, 3, 2, 2, 2, target_in, NULL, w, b),
	                 0);
	apply(w, b, x, 6, 4, out);
	assert_close(out, (const float[]){3, 30, 3, 30}, 4, 0);
	ck_assert_int_eq(tf_naive_map(TF_NAIVE_DRIFT, 0, 3, 2, 2, 2, target_in, NULL, w, b), 0);
	apply(w, b, x, 6, 4, out);
	assert_close(out, (const float[]){4, 40, 5, 50}, 4, 1e-5);
}
END_TEST

START_TEST(naive_mean_and_refusals)
{
	const double mean[2] = {0.25, -1.5};
	const int64_t missing[1] = {-1};
	float w[2 * 4], b[2], out[2];
	const float x[4] = {9, 9, 9, 9};

	ck_assert_int_eq(tf_naive_map(TF_NAIVE_MEAN, 0, 2, 2, 1, 2, NULL, mean, w, b), 0);
	apply(w, b, x, 4, 2, out);
	assert_close(out, (const float[]){0.25f, -1.5f}, 2, 0);

	ck_assert_int_eq(tf_naive_map(TF_NAIVE_SEASONAL, 5, 4, 1, 2, 1, NULL, NULL, w, b),
	                 LOOM_EINVAL);
	ck_assert_int_eq(tf_naive_map(TF_NAIVE_SEASONAL, 0, 4, 1, 2, 1, NULL, NULL, w, b),
	                 LOOM_EINVAL);
	ck_assert_int_eq(tf_naive_map(TF_NAIVE_DRIFT, 0, 1, 1, 2, 1, NULL, NULL, w, b),
	                 LOOM_EINVAL);
	ck_assert_int_eq(tf_naive_map(TF_NAIVE_REPEAT_LAST, 0, 4, 1, 2, 1, missing, NULL, w, b),
	                 LOOM_EINVAL);
	ck_assert_str_eq(tf_naive_name(TF_NAIVE_SEASONAL), "seasonal_naive");
}
END_TEST

/* Rows x [n, 4] from a fixed generator, y [n, 2] = A·x + c exactly. */
static void
exact_problem(float *x, float *y, int64_t n)
{
	static const float A[2][4] = {{0.5f, -1.0f, 2.0f, 0.25f}, {-0.75f, 0.0f, 1.5f, 1.0f}};
	static const float c[2] = {3.0f, -2.0f};
	uint64_t s = 12345;
	for (int64_t r = 0; r < n; r++) {
		for (int i = 0; i < 4; i++) {
			s = s * 6364136223846793005ULL + 1442695040888963407ULL;
			x[r * 4 + i] = (float)((double)(s >> 40) / (double)(1ULL << 24)) * 2.0f - 1.0f;
		}
		for (int j = 0; j < 2; j++) {
			double v = c[j];
			for (int i = 0; i < 4; i++)
				v += A[j][i] * x[r * 4 + i];
			y[r * 2 + j] = (float)v;
		}
	}
}

START_TEST(ridge_recovers_exact_relation)
{
	enum { N = 600 };
	static float x[N * 4], y[N * 2];
	float w[8], b[2];
	tf_gram g;

	exact_problem(x, y, N);
	ck_assert_int_eq(tf_gram_init(&g, 4, 2), 0);
	/* in two calls, past the converted chunk's size */
	tf_gram_add(&g, x, y, 300);
	tf_gram_add(&g, x + 300 * 4, y + 300 * 2, N - 300);
	ck_assert(g.n == N);
	ck_assert_int_eq(tf_ridge(&g, 1e-9, 0, 4, 1, w, b), 0);
	assert_close(w, (const float[]){0.5f, -1.0f, 2.0f, 0.25f, -0.75f, 0.0f, 1.5f, 1.0f}, 8, 1e-4);
	assert_close(b, (const float[]){3.0f, -2.0f}, 2, 1e-4);

	/* the decomposition (a 3-step moving average over 4 steps) spans the
	 * same maps: with almost no penalty it folds back to the same one */
	ck_assert_int_eq(tf_ridge(&g, 1e-9, 3, 4, 1, w, b), 0);
	assert_close(w, (const float[]){0.5f, -1.0f, 2.0f, 0.25f, -0.75f, 0.0f, 1.5f, 1.0f}, 8, 1e-3);
	assert_close(b, (const float[]){3.0f, -2.0f}, 2, 1e-3);
	tf_gram_free(&g);
}
END_TEST

START_TEST(ridge_one_feature_by_hand)
{
	/* x = −1, 1, 3: mean 1, variance 8/3 (biased, as the fit's).  y = −1,
	 * 3.5, 6.5: mean 3.  x − x̄ = (−2, 0, 2), y − ȳ = (−4, 0.5, 3.5), so
	 * cov = (8 + 0 + 7)/3 = 5.  With α = 1, λ = α·var = 8/3, and
	 * w = cov/(var + λ) = 5/(16/3) = 15/16; b = ȳ − w·x̄ = 3 − 15/16. */
	const float x[3] = {-1, 1, 3}, y[3] = {-1, 3.5f, 6.5f};
	float w, b;
	tf_gram g;

	ck_assert_int_eq(tf_gram_init(&g, 1, 1), 0);
	tf_gram_add(&g, x, y, 3);
	ck_assert_int_eq(tf_ridge(&g, 1.0, 0, 1, 1, &w, &b), 0);
	ck_assert_msg(fabs(w - 15.0 / 16.0) < 1e-6, "w = %.9g", (double)w);
	ck_assert_msg(fabs(b - (3.0 - 15.0 / 16.0)) < 1e-6, "b = %.9g", (double)b);
	tf_gram_free(&g);
}
END_TEST

START_TEST(ridge_skips_missing_rows)
{
	const float x[4] = {-1, NAN, 1, 3}, y[4] = {-1, 100, 3.5f, 6.5f};
	const float y2[4] = {-1, 3.5f, INFINITY, 6.5f};
	float w, b;
	tf_gram g;

	ck_assert_int_eq(tf_gram_init(&g, 1, 1), 0);
	tf_gram_add(&g, x, y, 4);
	ck_assert(g.n == 3);
	ck_assert_int_eq(tf_ridge(&g, 1.0, 0, 1, 1, &w, &b), 0);
	ck_assert(fabs(w - 15.0 / 16.0) < 1e-6);
	/* a missing target skips its row too */
	tf_gram_add(&g, (const float[]){0, 0, 0, 0}, y2, 4);
	ck_assert(g.n == 6);
	tf_gram_free(&g);

	/* no rows: nothing to fit */
	ck_assert_int_eq(tf_gram_init(&g, 1, 1), 0);
	ck_assert_int_eq(tf_ridge(&g, 1.0, 0, 1, 1, &w, &b), LOOM_ERANGE);
	tf_gram_free(&g);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("linear");
	TCase *tc = tcase_create("linear");
	tcase_add_test(tc, naive_one_channel);
	tcase_add_test(tc, naive_channels);
	tcase_add_test(tc, naive_mean_and_refusals);
	tcase_add_test(tc, ridge_recovers_exact_relation);
	tcase_add_test(tc, ridge_one_feature_by_hand);
	tcase_add_test(tc, ridge_skips_missing_rows);
	suite_add_tcase(s, tc);
	return tu_run(s);
}

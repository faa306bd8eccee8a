/* misc.c — global-norm gradient clipping, the sgemm rate probe, and the
 * test hook of internal.h. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

#include <cblas.h>

#include "kernels/cpu/internal.h"
#include "kernels/kernels.h"

int lki_attention_plain;

double
lk_clip_grad_norm(float *const *grads, const int64_t *sizes, size_t n_buffers,
                  double max_norm)
{
	double ss = 0, total, coef;

	for (size_t i = 0; i < n_buffers; i++)
		ss += lk_sum_squares(grads[i], sizes[i]);
	total = sqrt(ss);
	coef = max_norm / (total + 1e-6);
	if (coef < 1)
		for (size_t i = 0; i < n_buffers; i++)
			lk_scale(grads[i], sizes[i], coef);
	return total;
}

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One untimed product to warm caches and start OpenBLAS's threads, then
 * products until `seconds` have passed (at least one).  Uses whatever
 * OpenBLAS thread count is current (lk_pool_create sets it).  Returns 0 if
 * memory is short. */
double
lk_sgemm_gflops(int64_t m, int64_t n, int64_t k, double seconds)
{
	float *a, *b, *c;
	double t0, t;
	int64_t reps = 0;

	if (m <= 0 || n <= 0 || k <= 0)
		return 0;
	a = malloc((size_t)(m * k) * sizeof *a);
	b = malloc((size_t)(k * n) * sizeof *b);
	c = malloc((size_t)(m * n) * sizeof *c);
	if (a == NULL || b == NULL || c == NULL) {
		free(a);
		free(b);
		free(c);
		return 0;
	}
	for (int64_t i = 0; i < m * k; i++)
		a[i] = (float)((i % 17) - 8) * 0.125f;
	for (int64_t i = 0; i < k * n; i++)
		b[i] = (float)((i % 13) - 6) * 0.25f;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1, a,
	            (int)k, b, (int)n, 0, c, (int)n);
	t0 = now();
	do {
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1, a,
		            (int)k, b, (int)n, 0, c, (int)n);
		reps++;
		t = now() - t0;
	} while (t < seconds);
	free(a);
	free(b);
	free(c);
	return 2.0 * (double)m * (double)n * (double)k * (double)reps / t * 1e-9;
}

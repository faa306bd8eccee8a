/* Ridge fits and naive maps.  See linear.h.
 *
 * The ridge solve is a blocked Cholesky factorization written over CBLAS
 * (dsyrk, dgemm, dtrsm: every CBLAS has them, where LAPACK is not always
 * there), in double. */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <loom/error.h>

#include "linear.h"

#define CHUNK_ROWS 256
#define CHOL_BLOCK 64

int
tf_gram_init(tf_gram *g, int64_t f, int64_t od)
{
	memset(g, 0, sizeof *g);
	g->f = f;
	g->od = od;
	g->chunk = CHUNK_ROWS;
	g->xx = calloc((size_t)(f * f), sizeof *g->xx);
	g->xy = calloc((size_t)(f * od), sizeof *g->xy);
	g->sx = calloc((size_t)f, sizeof *g->sx);
	g->sy = calloc((size_t)od, sizeof *g->sy);
	g->bx = calloc((size_t)(g->chunk * f), sizeof *g->bx);
	g->by = calloc((size_t)(g->chunk * od), sizeof *g->by);
	if (!g->xx || !g->xy || !g->sx || !g->sy || !g->bx || !g->by) {
		tf_gram_free(g);
		return LOOM_ENOMEM;
	}
	return 0;
}

void
tf_gram_free(tf_gram *g)
{
	free(g->xx);
	free(g->xy);
	free(g->sx);
	free(g->sy);
	free(g->bx);
	free(g->by);
	memset(g, 0, sizeof *g);
}

static bool
finite_row(const float *v, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		if (!isfinite(v[i]))
			return false;
	return true;
}

static void
flush(tf_gram *g, int64_t rows)
{
	int64_t f = g->f, od = g->od;

	if (rows == 0)
		return;
	cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, (int)f, (int)rows, 1.0, g->bx, (int)f,
	            1.0, g->xx, (int)f);
	cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)f, (int)od, (int)rows, 1.0, g->bx,
	            (int)f, g->by, (int)od, 1.0, g->xy, (int)od);
}

void
tf_gram_add(tf_gram *g, const float *x, const float *y, int64_t n)
{
	int64_t f = g->f, od = g->od, rows = 0;

	for (int64_t r = 0; r < n; r++) {
		const float *xr = x + r * f, *yr = y + r * od;
		if (!finite_row(xr, f) || !finite_row(yr, od))
			continue;
		for (int64_t i = 0; i < f; i++) {
			g->bx[rows * f + i] = xr[i];
			g->sx[i] += xr[i];
		}
		for (int64_t j = 0; j < od; j++) {
			g->by[rows * od + j] = yr[j];
			g->sy[j] += yr[j];
		}
		g->n += 1;
		if (++rows == g->chunk) {
			flush(g, rows);
			rows = 0;
		}
	}
	flush(g, rows);
}

/* ------------------------------------------------------------------ Cholesky */

/* a [n, n] (lower triangle) = L·Lᵀ in place; 0, or LOOM_ERANGE when a is
 * not positive definite. */
static int
cholesky(double *a, int64_t n)
{
	for (int64_t k = 0; k < n; k += CHOL_BLOCK) {
		int64_t kb = n - k < CHOL_BLOCK ? n - k : CHOL_BLOCK, rest = n - k - kb;
		double *akk = a + k * n + k;

		if (k > 0)
			cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, (int)kb, (int)k, -1.0,
			            a + k * n, (int)n, 1.0, akk, (int)n);
		for (int64_t j = 0; j < kb; j++) {
			double d = akk[j * n + j];
			for (int64_t p = 0; p < j; p++)
				d -= akk[j * n + p] * akk[j * n + p];
			if (!(d > 0))
				return LOOM_ERANGE;
			d = sqrt(d);
			akk[j * n + j] = d;
			for (int64_t i = j + 1; i < kb; i++) {
				double s = akk[i * n + j];
				for (int64_t p = 0; p < j; p++)
					s -= akk[i * n + p] * akk[j * n + p];
				akk[i * n + j] = s / d;
			}
		}
		if (rest > 0) {
			double *panel = a + (k + kb) * n + k;
			if (k > 0)
				cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rest, (int)kb,
				            (int)k, -1.0, a + (k + kb) * n, (int)n, a + k * n, (int)n, 1.0,
				            panel, (int)n);
			cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit,
			            (int)rest, (int)kb, 1.0, akk, (int)n, panel, (int)n);
		}
	}
	return 0;
}

/* Solve (L·Lᵀ) x = rhs for rhs [n, m] in place. */
static void
cholesky_solve(const double *l, int64_t n, double *rhs, int64_t m)
{
	cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, (int)n, (int)m,
	            1.0, l, (int)n, rhs, (int)m);
	cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, (int)n, (int)m,
	            1.0, l, (int)n, rhs, (int)m);
}

/* ------------------------------------------------------------------ ridge */

/* The moving average over time as a matrix [L, L]: row t averages steps
 * t − k/2 … t + k/2, steps outside the window replaced by its first or
 * last (DLinear's series_decomp). */
static void
moving_average(double *a, int64_t L, int64_t k)
{
	int64_t half = (k - 1) / 2;

	memset(a, 0, (size_t)(L * L) * sizeof *a);
	for (int64_t t = 0; t < L; t++)
		for (int64_t j = t - half; j <= t - half + k - 1; j++) {
			int64_t src = j < 0 ? 0 : j >= L ? L - 1 : j;
			a[t * L + src] += 1.0 / (double)k;
		}
}

int
tf_ridge(const tf_gram *g, double alpha, int64_t ma_kernel, int64_t L, int64_t cin, float *w,
         float *b)
{
	int64_t f = g->f, od = g->od, fz = ma_kernel > 1 ? 2 * f : f;
	double *c = NULL, *xy = NULL, *m = NULL, *tmp = NULL, *ma = NULL;
	double mean_var = 0, lambda;
	int rv = LOOM_ENOMEM;

	if (g->n < 1)
		return LOOM_ERANGE;
	/* centered second moments: C = Σxxᵀ/n − x̄x̄ᵀ, Cxy = Σxyᵀ/n − x̄ȳᵀ */
	c = malloc((size_t)(f * f) * sizeof *c);
	xy = malloc((size_t)(fz * od) * sizeof *xy);
	if (!c || !xy)
		goto out;
	for (int64_t i = 0; i < f; i++)
		for (int64_t j = 0; j <= i; j++) {
			double v = g->xx[i * f + j] / g->n - (g->sx[i] / g->n) * (g->sx[j] / g->n);
			c[i * f + j] = c[j * f + i] = v;
		}
	for (int64_t i = 0; i < f; i++)
		for (int64_t j = 0; j < od; j++)
			xy[i * od + j] = g->xy[i * od + j] / g->n - (g->sx[i] / g->n) * (g->sy[j] / g->n);

	if (ma_kernel > 1) {
		/* z = M·x with M = [A; I − A] (A acting on time, per channel) */
		double *cz;
		if ((ma = malloc((size_t)(L * L) * sizeof *ma)) == NULL ||
		    (m = calloc((size_t)(fz * f), sizeof *m)) == NULL ||
		    (tmp = malloc((size_t)(fz * (f > od ? f : od)) * sizeof *tmp)) == NULL ||
		    (cz = malloc((size_t)(fz * fz) * sizeof *cz)) == NULL)
			goto out;
		moving_average(ma, L, ma_kernel);
		for (int64_t t = 0; t < L; t++)
			for (int64_t s = 0; s < L; s++)
				for (int64_t ch = 0; ch < cin; ch++) {
					double v = ma[t * L + s];
					m[(t * cin + ch) * f + s * cin + ch] = v;
					m[(f + t * cin + ch) * f + s * cin + ch] = (t == s ? 1.0 : 0.0) - v;
				}
		/* Cz = M·C·Mᵀ, Czy = M·Cxy */
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)fz, (int)f, (int)f, 1.0, m,
		            (int)f, c, (int)f, 0.0, tmp, (int)f);
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)fz, (int)fz, (int)f, 1.0, tmp,
		            (int)f, m, (int)f, 0.0, cz, (int)fz);
		memcpy(tmp, xy, (size_t)(f * od) * sizeof *tmp);
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)fz, (int)od, (int)f, 1.0, m,
		            (int)f, tmp, (int)od, 0.0, xy, (int)od);
		free(c);
		c = cz;
	}
	for (int64_t i = 0; i < fz; i++)
		mean_var += c[i * fz + i];
	mean_var /= (double)fz;
	lambda = alpha * (mean_var > 0 ? mean_var : 1.0);
	for (int64_t i = 0; i < fz; i++)
		c[i * fz + i] += lambda;
	if ((rv = cholesky(c, fz)) != 0)
		goto out;
	cholesky_solve(c, fz, xy, od); /* xy now holds the weights [fz, od] */
	if (ma_kernel > 1) {
		/* fold back: w_x = Mᵀ·w_z */
		memcpy(tmp, xy, (size_t)(fz * od) * sizeof *tmp);
		cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)f, (int)od, (int)fz, 1.0, m,
		            (int)f, tmp, (int)od, 0.0, xy, (int)od);
	}
	for (int64_t j = 0; j < od; j++) {
		double bias = g->sy[j] / g->n;
		for (int64_t i = 0; i < f; i++) {
			w[j * f + i] = (float)xy[i * od + j];
			bias -= xy[i * od + j] * (g->sx[i] / g->n);
		}
		b[j] = (float)bias;
	}
	rv = 0;
out:
	free(c);
	free(xy);
	free(m);
	free(tmp);
	free(ma);
	return rv;
}

/* ------------------------------------------------------------------ naive maps */

const char *
tf_naive_name(int method)
{
	switch (method) {
	case TF_NAIVE_REPEAT_LAST: return "repeat_last";
	case TF_NAIVE_SEASONAL: return "seasonal_naive";
	case TF_NAIVE_DRIFT: return "drift";
	case TF_NAIVE_MEAN: return "mean";
	}
	return "?";
}

int
tf_naive_map(int method, int64_t season, int64_t L, int64_t cin, int64_t H, int64_t K,
             const int64_t *target_in, const double *mean, float *w, float *b)
{
	int64_t f = L * cin, od = method == TF_NAIVE_MEAN ? K : H * K;

	memset(w, 0, (size_t)(od * f) * sizeof *w);
	memset(b, 0, (size_t)od * sizeof *b);
	if (method == TF_NAIVE_MEAN) {
		for (int64_t j = 0; j < od; j++)
			b[j] = mean ? (float)mean[j] : 0.0f;
		return 0;
	}
	if (method == TF_NAIVE_SEASONAL && (season < 1 || season > L))
		return LOOM_EINVAL;
	if (method == TF_NAIVE_DRIFT && L < 2)
		return LOOM_EINVAL;
	for (int64_t k = 0; k < K; k++) {
		int64_t ch = target_in ? target_in[k] : 0;
		if (ch < 0 || ch >= cin)
			return LOOM_EINVAL;
		for (int64_t h = 0; h < H; h++) {
			float *row = w + (h * K + k) * f;
			switch (method) {
			case TF_NAIVE_REPEAT_LAST:
				row[(L - 1) * cin + ch] = 1.0f;
				break;
			case TF_NAIVE_SEASONAL:
				row[(L - season + h % season) * cin + ch] = 1.0f;
				break;
			case TF_NAIVE_DRIFT: {
				double slope = (double)(h + 1) / (double)(L - 1);
				row[(L - 1) * cin + ch] += (float)(1.0 + slope);
				row[ch] -= (float)slope;
				break;
			}
			default:
				return LOOM_EINVAL;
			}
		}
	}
	return 0;
}

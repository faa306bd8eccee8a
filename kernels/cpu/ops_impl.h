/* ops_impl.h — every op of LK_DECLARE_OPS, written once over a macro type.
 *
 * Included once by ops_f32.c and once by ops_f64.c, which define
 *   REAL        float or double
 *   P(name)     the exported name: lk_name or lkd_name
 *   GEMM        cblas_sgemm or cblas_dgemm
 *   EXP         e^x in that precision (lki_expf / libm exp)
 *   PHI         the normal CDF Φ in that precision (lki_phif / libm erfc)
 * Static helpers have plain names: each translation unit includes this file
 * once.
 *
 * Each op's *_forward and *_backward sit next to each other and read like
 * the formula.  Threaded ops split their work with lk_parallel_for so that
 * no output element is ever summed across chunks: rows are split where a
 * row's result depends only on that row (bias fill, layernorm rows, din),
 * columns where a result sums over rows (db, layernorm dw/db), elements for
 * elementwise ops, (batch, head) pairs for attention.  Each element is
 * therefore computed by the same operations in the same order whatever the
 * thread count, and results with 1 and with N threads are bit-identical.
 * The one exception is the matrix product inside linear_*, which belongs to
 * OpenBLAS (one single-threaded call per block of the result, the blocks
 * fixed by the sizes and the thread count): deterministic for a given
 * thread count, not promised across counts.
 *
 * Sums that are reductions (statistics, losses, softmax normalizers) are
 * accumulated in double in a fixed order.  Nothing here relies on
 * -ffast-math: loops are written so that the compiler can vectorize them
 * without reassociating anything (elementwise loops, column sums whose
 * inner index is the output element, and attention's register tiles, which
 * keep one accumulator per output element), and LKI_HOT gives the hot ones
 * an AVX2 clone that computes the same bits. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "kernels/cpu/internal.h"
#include "kernels/kernels.h"

#if !defined(REAL) || !defined(P) || !defined(GEMM) || !defined(EXP) || !defined(PHI)
#error "define REAL, P, GEMM, EXP and PHI before including ops_impl.h"
#endif

/* Columns handled per block in column-split reductions (stack accumulators). */
#define COL_BLOCK 256

/* Run fn over [0, n) on the pool when the work (about `work` elementary
 * operations in all) is worth waking it, else on this thread.  Only sizes
 * decide, and the ops' split makes the choice invisible in the results. */
static void
run(lk_pool *pool, int64_t n, int64_t work, lk_range_fn fn, void *arg)
{
	if (n <= 0)
		return;
	if (pool == NULL || lk_pool_threads(pool) == 1 || work < LKI_GRAIN)
		fn(arg, 0, n);
	else
		lk_parallel_for(pool, n, fn, arg);
}

/* Σ x[i] in double, four interleaved partial sums combined in a fixed order
 * (several additions in flight instead of one chain). */
static inline double
sum_d(const REAL *restrict x, int64_t n)
{
	double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
	int64_t i = 0;
	for (; i + 4 <= n; i += 4) {
		s0 += x[i];
		s1 += x[i + 1];
		s2 += x[i + 2];
		s3 += x[i + 3];
	}
	for (; i < n; i++)
		s0 += x[i];
	return (s0 + s1) + (s2 + s3);
}

/* Σ x[i]·y[i] in double, same scheme. */
static inline double
dot_d(const REAL *restrict x, const REAL *restrict y, int64_t n)
{
	double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
	int64_t i = 0;
	for (; i + 4 <= n; i += 4) {
		s0 += (double)x[i] * y[i];
		s1 += (double)x[i + 1] * y[i + 1];
		s2 += (double)x[i + 2] * y[i + 2];
		s3 += (double)x[i + 3] * y[i + 3];
	}
	for (; i < n; i++)
		s0 += (double)x[i] * y[i];
	return (s0 + s1) + (s2 + s3);
}

/* Σ (x[i] - m)² in double, same scheme. */
static inline double
sqdev_d(const REAL *restrict x, double m, int64_t n)
{
	double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
	int64_t i = 0;
	for (; i + 4 <= n; i += 4) {
		double d0 = x[i] - m, d1 = x[i + 1] - m, d2 = x[i + 2] - m, d3 = x[i + 3] - m;
		s0 += d0 * d0;
		s1 += d1 * d1;
		s2 += d2 * d2;
		s3 += d3 * d3;
	}
	for (; i < n; i++) {
		double d0 = x[i] - m;
		s0 += d0 * d0;
	}
	return (s0 + s1) + (s2 + s3);
}

/* Dropout keeps element i iff lk_rand_uniform(seed, stream, i) ≥ p.  That
 * uniform is k·2^-24 with k = lki_rand_bits24(), so the test is
 * k ≥ ceil(p·2^24), exact in integers. */
static inline uint32_t
keep_threshold(double p)
{
	return p <= 0 ? 0 : p >= 1 ? (1u << 24) + 1 : (uint32_t)ceil(p * 0x1p24);
}

/* m[j] = scale if counter c0 + j is kept, else 0, for j < n.  Whole Philox
 * blocks (four counters each) in the middle, generated 64 at a time into a
 * word buffer and then compared: two simple loops that vectorize (the
 * generator runs once per four elements). */
LKI_HOT static void
mask_fill(REAL *restrict m, uint64_t seed, uint64_t stream, uint64_t c0, int64_t n,
          uint32_t thr, REAL scale)
{
	int64_t j = 0;
	for (; j < n && ((c0 + (uint64_t)j) & 3) != 0; j++)
		m[j] = lki_rand_bits24(seed, stream, c0 + (uint64_t)j) >= thr ? scale : 0;
	uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
	uint32_t s0 = (uint32_t)stream, s1 = (uint32_t)(stream >> 32);
	uint32_t w[4 * 64];
	while (n - j >= 4) {
		uint64_t blk0 = (c0 + (uint64_t)j) >> 2;
		int64_t nb = (n - j) / 4 < 64 ? (n - j) / 4 : 64;
		for (int64_t q = 0; q < nb; q++) {
			uint64_t blk = blk0 + (uint64_t)q;
			lki_philox_out r = lki_philox4x32_10(k0, k1, (uint32_t)blk, (uint32_t)(blk >> 32),
			                                     s0, s1);
			w[4 * q + 0] = r.w[0];
			w[4 * q + 1] = r.w[1];
			w[4 * q + 2] = r.w[2];
			w[4 * q + 3] = r.w[3];
		}
		REAL *restrict mb = m + j;
		for (int64_t e = 0; e < 4 * nb; e++)
			mb[e] = (w[e] >> 8) >= thr ? scale : 0;
		j += 4 * nb;
	}
	for (; j < n; j++)
		m[j] = lki_rand_bits24(seed, stream, c0 + (uint64_t)j) >= thr ? scale : 0;
}

/* Elementwise loops that need the mask work through it in tiles on the
 * stack. */
#define MASK_TILE 1024

/* ================================================================== linear */

/* C[m,n] = A·B + beta·C in row-major CBLAS terms (A is [m,k], or [k,m]
 * when ta; B is [k,n], or [n,k] when tb), optionally after filling every
 * row of C with bias[n] (then beta is 1): the bias pass and the product
 * touch each block of C one after the other, while it is in cache.
 *
 * Split across the pool (lki_gemm_begin: OpenBLAS itself runs one thread)
 * along the longer of m and n, in LKI_GEMM_BLOCK-row (or -column) blocks,
 * chunk i of the pool taking blocks [i·nb/T, (i+1)·nb/T).  Every element of
 * C is computed by one single-threaded CBLAS call on a fixed block, so a
 * given thread count gives the same bits from run to run; across thread
 * counts the blocks differ, and OpenBLAS promises nothing there. */
struct gemm_args {
	int ta, tb, split_n;
	int64_t m, n, k, lda, ldb, ldc;
	const REAL *a, *b, *bias;
	REAL *c;
	REAL beta;
};

static void
gemm_range(void *arg, int64_t q0, int64_t q1)
{
	const struct gemm_args *g = arg;
	int64_t lim = g->split_n ? g->n : g->m;
	int64_t s0 = q0 * LKI_GEMM_BLOCK, s1 = q1 * LKI_GEMM_BLOCK < lim ? q1 * LKI_GEMM_BLOCK : lim;
	const REAL *a = g->a, *b = g->b, *bias = g->bias;
	REAL *c = g->c;
	int64_t m = g->m, n = g->n;

	if (s1 <= s0)
		return;
	if (g->split_n) {
		b += g->tb ? s0 * g->ldb : s0;
		c += s0;
		bias = bias != NULL ? bias + s0 : NULL;
		n = s1 - s0;
	} else {
		a += g->ta ? s0 : s0 * g->lda;
		c += s0 * g->ldc;
		m = s1 - s0;
	}
	if (bias != NULL)
		for (int64_t r = 0; r < m; r++)
			memcpy(c + r * g->ldc, bias, (size_t)n * sizeof(REAL));
	GEMM(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans,
	     (int)m, (int)n, (int)g->k, 1, a, (int)g->lda, b, (int)g->ldb,
	     bias != NULL ? 1 : g->beta, c, (int)g->ldc);
}

/* pool: what lki_gemm_begin returned */
static void
gemm(lk_pool *pool, int ta, int tb, int64_t m, int64_t n, int64_t k, const REAL *a,
     int64_t lda, const REAL *b, int64_t ldb, REAL beta, REAL *c, int64_t ldc, const REAL *bias)
{
	struct gemm_args g = {.ta = ta, .tb = tb, .split_n = n > m, .m = m, .n = n, .k = k,
	                      .lda = lda, .ldb = ldb, .ldc = ldc, .a = a, .b = b, .bias = bias,
	                      .c = c, .beta = beta};
	int64_t nb = ((g.split_n ? n : m) + LKI_GEMM_BLOCK - 1) / LKI_GEMM_BLOCK;

	if (m <= 0 || n <= 0)
		return;
	if (pool == NULL || lk_pool_threads(pool) == 1 || nb < 2 || m * n * k < LKI_GEMM_GRAIN)
		gemm_range(&g, 0, nb);
	else
		lk_parallel_for(pool, nb, gemm_range, &g);
}

void
P(linear_forward)(REAL *out, const REAL *in, const REAL *w, const REAL *b, int64_t n,
                  int64_t in_dim, int64_t out_dim, lk_pool *pool)
{
	lk_pool *gp;
	int restore;

	if (n <= 0 || out_dim <= 0)
		return;
	if (in_dim <= 0) {
		/* no product: out = b, or 0 */
		for (int64_t r = 0; r < n; r++) {
			if (b != NULL)
				memcpy(out + r * out_dim, b, (size_t)out_dim * sizeof(REAL));
			else
				memset(out + r * out_dim, 0, (size_t)out_dim * sizeof(REAL));
		}
		return;
	}
	/* out = b (every row), then out += in·w^T, block by block: one pass over
	 * out instead of a product with beta = 0 followed by a bias pass. */
	gp = lki_gemm_begin(pool, &restore);
	gemm(gp, 0, 1, n, out_dim, in_dim, in, in_dim, w, in_dim, 0, out, out_dim, b);
	lki_gemm_end(restore);
}

struct colsum_args {
	REAL *acc;       /* acc[c] += Σ_r src[r, c] */
	const REAL *src; /* [n, dim] */
	int64_t n, dim;
};

LKI_HOT static void
colsum_range(void *arg, int64_t c0, int64_t c1)
{
	struct colsum_args *a = arg;
	REAL s[COL_BLOCK];
	for (int64_t cb = c0; cb < c1; cb += COL_BLOCK) {
		int64_t w = c1 - cb < COL_BLOCK ? c1 - cb : COL_BLOCK;
		for (int64_t j = 0; j < w; j++)
			s[j] = 0;
		for (int64_t r = 0; r < a->n; r++) {
			const REAL *restrict row = a->src + r * a->dim + cb;
			for (int64_t j = 0; j < w; j++)
				s[j] += row[j];
		}
		for (int64_t j = 0; j < w; j++)
			a->acc[cb + j] += s[j];
	}
}

void
P(linear_backward)(REAL *din, REAL *dw, REAL *db, const REAL *dout, const REAL *in,
                   const REAL *w, int64_t n, int64_t in_dim, int64_t out_dim, lk_pool *pool)
{
	if (n <= 0 || out_dim <= 0)
		return;
	if (in_dim > 0 && (din != NULL || dw != NULL)) {
		int restore;
		lk_pool *gp = lki_gemm_begin(pool, &restore);
		/* din[N,I] += dout[N,O] · w[O,I] */
		if (din != NULL)
			gemm(gp, 0, 0, n, in_dim, out_dim, dout, out_dim, w, in_dim, 1, din, in_dim, NULL);
		/* dw[O,I] += dout^T[O,N] · in[N,I] */
		if (dw != NULL)
			gemm(gp, 1, 0, out_dim, in_dim, n, dout, out_dim, in, in_dim, 1, dw, in_dim, NULL);
		lki_gemm_end(restore);
	}
	/* db[O] += Σ_n dout[n, O], split over columns */
	if (db != NULL) {
		struct colsum_args a = {db, dout, n, out_dim};
		run(pool, out_dim, n * out_dim, colsum_range, &a);
	}
}

/* ================================================================== layernorm */

struct ln_args {
	REAL *out, *din, *dw, *db;
	REAL *mean, *rstd;
	const REAL *mean_c, *rstd_c;
	const REAL *in, *w, *b, *dout;
	int64_t n, d;
	double eps;
};

LKI_HOT static void
layernorm_forward_range(void *arg, int64_t r0, int64_t r1)
{
	struct ln_args *a = arg;
	int64_t d = a->d;
	for (int64_t r = r0; r < r1; r++) {
		const REAL *restrict x = a->in + r * d;
		REAL *restrict y = a->out + r * d;
		double m = sum_d(x, d) / (double)d;
		double var = sqdev_d(x, m, d) / (double)d;
		/* the saved values are what both passes use */
		REAL mr = (REAL)m, rs = (REAL)(1.0 / sqrt(var + a->eps));
		const REAL *restrict w = a->w, *restrict b = a->b;
		a->mean[r] = mr;
		a->rstd[r] = rs;
		if (b != NULL)
			for (int64_t i = 0; i < d; i++)
				y[i] = (x[i] - mr) * rs * w[i] + b[i];
		else
			for (int64_t i = 0; i < d; i++)
				y[i] = (x[i] - mr) * rs * w[i];
	}
}

void
P(layernorm_forward)(REAL *out, REAL *mean, REAL *rstd, const REAL *in, const REAL *w,
                     const REAL *b, int64_t n, int64_t d, double eps, lk_pool *pool)
{
	struct ln_args a = {.out = out, .mean = mean, .rstd = rstd, .in = in, .w = w, .b = b,
	                    .n = n, .d = d, .eps = eps};
	if (d <= 0)
		return;
	run(pool, n, 4 * n * d, layernorm_forward_range, &a);
}

/* din for rows [r0, r1): with x̂ = (x − mean)·rstd and g = dout·w,
 * din += (g − mean(g) − x̂·mean(g·x̂))·rstd. */
LKI_HOT static void
layernorm_din_range(void *arg, int64_t r0, int64_t r1)
{
	struct ln_args *a = arg;
	int64_t d = a->d;
	const REAL *restrict w = a->w;
	for (int64_t r = r0; r < r1; r++) {
		const REAL *restrict x = a->in + r * d;
		const REAL *restrict dy = a->dout + r * d;
		REAL *restrict dx = a->din + r * d;
		REAL mr = a->mean_c[r], rs = a->rstd_c[r];
		double s_g = 0, s_gx = 0;
		for (int64_t i = 0; i < d; i++) {
			REAL g = dy[i] * w[i];
			REAL xh = (x[i] - mr) * rs;
			s_g += g;
			s_gx += (double)g * xh;
		}
		REAL mg = (REAL)(s_g / (double)d), mgx = (REAL)(s_gx / (double)d);
		for (int64_t i = 0; i < d; i++) {
			REAL g = dy[i] * w[i];
			REAL xh = (x[i] - mr) * rs;
			dx[i] += (g - mg - xh * mgx) * rs;
		}
	}
}

/* dw[c] += Σ_r dout[r,c]·x̂[r,c], db[c] += Σ_r dout[r,c], for columns [c0, c1). */
LKI_HOT static void
layernorm_dwdb_range(void *arg, int64_t c0, int64_t c1)
{
	struct ln_args *a = arg;
	int64_t d = a->d;
	REAL sw[COL_BLOCK], sb[COL_BLOCK];
	for (int64_t cb = c0; cb < c1; cb += COL_BLOCK) {
		int64_t nw = c1 - cb < COL_BLOCK ? c1 - cb : COL_BLOCK;
		for (int64_t j = 0; j < nw; j++)
			sw[j] = sb[j] = 0;
		for (int64_t r = 0; r < a->n; r++) {
			const REAL *restrict x = a->in + r * d + cb;
			const REAL *restrict dy = a->dout + r * d + cb;
			REAL mr = a->mean_c[r], rs = a->rstd_c[r];
			for (int64_t j = 0; j < nw; j++) {
				sw[j] += dy[j] * ((x[j] - mr) * rs);
				sb[j] += dy[j];
			}
		}
		if (a->dw != NULL)
			for (int64_t j = 0; j < nw; j++)
				a->dw[cb + j] += sw[j];
		if (a->db != NULL)
			for (int64_t j = 0; j < nw; j++)
				a->db[cb + j] += sb[j];
	}
}

void
P(layernorm_backward)(REAL *din, REAL *dw, REAL *db, const REAL *dout, const REAL *in,
                      const REAL *w, const REAL *mean, const REAL *rstd, int64_t n, int64_t d,
                      lk_pool *pool)
{
	struct ln_args a = {.din = din, .dw = dw, .db = db, .mean_c = mean, .rstd_c = rstd,
	                    .in = in, .w = w, .dout = dout, .n = n, .d = d};
	if (n <= 0 || d <= 0)
		return;
	if (din != NULL)
		run(pool, n, 8 * n * d, layernorm_din_range, &a);
	if (dw != NULL || db != NULL)
		run(pool, d, 4 * n * d, layernorm_dwdb_range, &a);
}

/* ================================================================== GELU
 * Φ(x) = (1 + erf(x/√2))/2 is computed as erfc(−x/√2)/2 (PHI): the same
 * function, without the cancellation of 1 + erf in the negative tail. */

struct ew_args {
	REAL *out;
	const REAL *in, *dout;
	int64_t n;
	double p;
	uint64_t seed, stream;
	uint32_t thr;
	REAL scale;
};

LKI_HOT static void
gelu_forward_range(void *arg, int64_t i0, int64_t i1)
{
	struct ew_args *a = arg;
	const REAL *restrict x = a->in;
	REAL *restrict y = a->out;
	for (int64_t i = i0; i < i1; i++)
		y[i] = x[i] * PHI(x[i]);
}

void
P(gelu_forward)(REAL *out, const REAL *in, int64_t n, lk_pool *pool)
{
	struct ew_args a = {.out = out, .in = in, .n = n};
	run(pool, n, 16 * n, gelu_forward_range, &a);
}

/* d/dx x·Φ(x) = Φ(x) + x·φ(x) */
LKI_HOT static void
gelu_backward_range(void *arg, int64_t i0, int64_t i1)
{
	struct ew_args *a = arg;
	const REAL *restrict x = a->in, *restrict dy = a->dout;
	REAL *restrict dx = a->out;
	const REAL inv_sqrt_2pi = (REAL)0.39894228040143267794;
	for (int64_t i = i0; i < i1; i++) {
		REAL cdf = PHI(x[i]);
		REAL pdf = inv_sqrt_2pi * EXP((REAL)-0.5 * x[i] * x[i]);
		dx[i] += dy[i] * (cdf + x[i] * pdf);
	}
}

void
P(gelu_backward)(REAL *din, const REAL *in, const REAL *dout, int64_t n, lk_pool *pool)
{
	struct ew_args a = {.out = din, .in = in, .dout = dout, .n = n};
	run(pool, n, 32 * n, gelu_backward_range, &a);
}

/* ================================================================== dropout */

LKI_HOT static void
dropout_forward_range(void *arg, int64_t i0, int64_t i1)
{
	struct ew_args *a = arg;
	const REAL *restrict x = a->in;
	REAL *restrict y = a->out;
	REAL m[MASK_TILE];
	for (int64_t t0 = i0; t0 < i1; t0 += MASK_TILE) {
		int64_t nt = i1 - t0 < MASK_TILE ? i1 - t0 : MASK_TILE;
		mask_fill(m, a->seed, a->stream, (uint64_t)t0, nt, a->thr, a->scale);
		for (int64_t j = 0; j < nt; j++)
			y[t0 + j] = m[j] != 0 ? x[t0 + j] * m[j] : 0;
	}
}

void
P(dropout_forward)(REAL *out, const REAL *in, int64_t n, double p, uint64_t seed,
                   uint64_t stream, lk_pool *pool)
{
	struct ew_args a = {.out = out, .in = in, .n = n, .p = p, .seed = seed, .stream = stream,
	                    .thr = keep_threshold(p), .scale = (REAL)(1.0 / (1.0 - p))};
	if (n <= 0)
		return;
	if (p == 0) {
		if (out != in)
			memcpy(out, in, (size_t)n * sizeof(REAL));
		return;
	}
	run(pool, n, 16 * n, dropout_forward_range, &a);
}

LKI_HOT static void
dropout_backward_range(void *arg, int64_t i0, int64_t i1)
{
	struct ew_args *a = arg;
	const REAL *restrict dy = a->dout;
	REAL *restrict dx = a->out;
	REAL m[MASK_TILE];
	for (int64_t t0 = i0; t0 < i1; t0 += MASK_TILE) {
		int64_t nt = i1 - t0 < MASK_TILE ? i1 - t0 : MASK_TILE;
		mask_fill(m, a->seed, a->stream, (uint64_t)t0, nt, a->thr, a->scale);
		for (int64_t j = 0; j < nt; j++)
			dx[t0 + j] += m[j] != 0 ? dy[t0 + j] * m[j] : 0;
	}
}

LKI_HOT static void
add_range(void *arg, int64_t i0, int64_t i1)
{
	struct ew_args *a = arg;
	const REAL *restrict dy = a->dout;
	REAL *restrict dx = a->out;
	for (int64_t i = i0; i < i1; i++)
		dx[i] += dy[i];
}

void
P(dropout_backward)(REAL *din, const REAL *dout, int64_t n, double p, uint64_t seed,
                    uint64_t stream, lk_pool *pool)
{
	struct ew_args a = {.out = din, .dout = dout, .n = n, .p = p, .seed = seed,
	                    .stream = stream, .thr = keep_threshold(p),
	                    .scale = (REAL)(1.0 / (1.0 - p))};
	if (p == 0)
		run(pool, n, n, add_range, &a);
	else
		run(pool, n, 16 * n, dropout_backward_range, &a);
}

/* ================================================================== residual */

void
P(residual_forward)(REAL *out, const REAL *a, const REAL *b, int64_t n)
{
	/* out may alias a or b: no restrict */
	for (int64_t i = 0; i < n; i++)
		out[i] = a[i] + b[i];
}

void
P(residual_backward)(REAL *da, REAL *db, const REAL *dout, int64_t n)
{
	REAL *restrict x = da, *restrict y = db;
	const REAL *restrict g = dout;
	for (int64_t i = 0; i < n; i++) {
		x[i] += g[i];
		y[i] += g[i];
	}
}

/* ================================================================== attention
 *
 * Work unit u = (batch, head), u = bb·H + hh; its probabilities are the
 * T×T block at probs + u·T·T, and q, k, v of head hh are [T, dh] matrices
 * with row stride 3D inside qkv.  Units are independent and each runs on
 * one thread, in small loops, without CBLAS: OpenBLAS is threaded (the pool
 * set its thread count) and must not be entered from several threads at
 * once in that mode, and these products are small (T×T×dh per head).
 *
 * Each product goes through small_gemm, which fixes the arithmetic of every
 * output element: acc = 0, acc += a·b over the contracted index in
 * ascending order, then C = acc or C += acc.  Its register-tiled path and
 * its plain path do exactly that, so the tiling (and whether a transposed
 * copy of K or V was available) never changes a bit.  The plain variant of
 * the whole op — no buffers, plain loops — runs when the per-chunk buffer
 * cannot be allocated, or when lki_attention_plain is set (the test compares
 * the two bit for bit). */

/* 32-byte vectors: one AVX register in the AVX2 clone, two SSE registers in
 * the baseline one.  Element-wise IEEE arithmetic, as the scalar code. */
typedef REAL vreal __attribute__((vector_size(32)));
#define VL ((int64_t)(32 / sizeof(REAL)))
#define MR 4
#define NR (2 * VL)

/* loads and stores as macros: a function returning a 32-byte vector would
 * change ABI between the clones (-Wpsabi) */
#define VLOAD(v, p) memcpy(&(v), (p), sizeof(vreal))
#define VSTORE(p, v) memcpy((p), &(v), sizeof(vreal))

/* One tile's result: acc[r] holds rows r < rows of columns [0, w) (w ≤ NR,
 * the lanes beyond w are discarded); C (add ? += : =) it.  C + acc and
 * acc + C are the same IEEE sum. */
#define TILE_STORE(c, ldc, acc, rows, w, add)                                             \
	do {                                                                              \
		for (int64_t r_ = 0; r_ < (rows); r_++) {                                 \
			REAL *c_ = (c) + r_ * (ldc);                                      \
			if ((w) == NR) {                                                  \
				vreal t0_, t1_;                                           \
				if (add) {                                                \
					VLOAD(t0_, c_), VLOAD(t1_, c_ + VL);              \
					t0_ = t0_ + (acc)[r_][0], t1_ = t1_ + (acc)[r_][1]; \
				} else {                                                  \
					t0_ = (acc)[r_][0], t1_ = (acc)[r_][1];             \
				}                                                         \
				VSTORE(c_, t0_), VSTORE(c_ + VL, t1_);                    \
			} else {                                                          \
				REAL l_[NR];                                              \
				VSTORE(l_, (acc)[r_][0]), VSTORE(l_ + VL, (acc)[r_][1]);  \
				for (int64_t q_ = 0; q_ < (w); q_++)                      \
					c_[q_] = (add) ? c_[q_] + l_[q_] : l_[q_];        \
			}                                                                 \
		}                                                                         \
	} while (0)

/* C[i·ldc + j] (add ? += : =) Σ_k A[i·ar + k·ak]·B[k·bk + j·bj] for i < m,
 * j < n, k < kn.  Where B's rows are contiguous (bj == 1): MR×NR tiles with
 * the accumulators in registers, then 1×NR tiles for the last m % MR rows;
 * the columns past the last multiple of NR run in a partial tile when bpad
 * says B's rows may be read up to the next multiple of NR (a padded
 * buffer), else in plain loops, as everything does where bj != 1.  Every
 * path computes each element the same way: acc = 0, acc += a·b for k
 * ascending, then C = acc or C += acc. */
LKI_HOT static void
small_gemm(REAL *restrict C, int64_t ldc, const REAL *restrict A, int64_t ar, int64_t ak,
           const REAL *restrict B, int64_t bk, int64_t bj, int64_t m, int64_t n, int64_t kn,
           int add, int bpad)
{
	int64_t mt = bj == 1 ? m - m % MR : 0;
	int64_t nt = bj != 1 ? 0 : bpad ? n : n - n % NR; /* columns the tiles cover */

	for (int64_t i = 0; i < mt; i += MR)
		for (int64_t j = 0; j < nt; j += NR) {
			int64_t w = nt - j < NR ? nt - j : NR;
			vreal c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0};
			vreal c20 = {0}, c21 = {0}, c30 = {0}, c31 = {0};
			const REAL *a = A + i * ar;
			for (int64_t k = 0; k < kn; k++) {
				vreal b0, b1;
				VLOAD(b0, B + k * bk + j);
				VLOAD(b1, B + k * bk + j + VL);
				REAL a0 = a[k * ak], a1 = a[ar + k * ak];
				REAL a2 = a[2 * ar + k * ak], a3 = a[3 * ar + k * ak];
				c00 += a0 * b0;
				c01 += a0 * b1;
				c10 += a1 * b0;
				c11 += a1 * b1;
				c20 += a2 * b0;
				c21 += a2 * b1;
				c30 += a3 * b0;
				c31 += a3 * b1;
			}
			vreal acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}};
			TILE_STORE(C + i * ldc + j, ldc, acc, MR, w, add);
		}
	for (int64_t i = mt; bj == 1 && i < m; i++)
		for (int64_t j = 0; j < nt; j += NR) {
			int64_t w = nt - j < NR ? nt - j : NR;
			vreal c00 = {0}, c01 = {0};
			const REAL *a = A + i * ar;
			for (int64_t k = 0; k < kn; k++) {
				vreal b0, b1;
				VLOAD(b0, B + k * bk + j);
				VLOAD(b1, B + k * bk + j + VL);
				REAL a0 = a[k * ak];
				c00 += a0 * b0;
				c01 += a0 * b1;
			}
			vreal acc[1][2] = {{c00, c01}};
			TILE_STORE(C + i * ldc + j, ldc, acc, 1, w, add);
		}
	/* the rest: columns [nt, n) */
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = nt; j < n; j++) {
			REAL acc = 0;
			for (int64_t k = 0; k < kn; k++)
				acc += A[i * ar + k * ak] * B[k * bk + j * bj];
			C[i * ldc + j] = add ? C[i * ldc + j] + acc : acc;
		}
}

/* T rounded up to a whole number of tiles: the row stride of the transposed
 * K and V buffers, whose pad columns are zero, so their products can run a
 * partial last tile (small_gemm's bpad). */
static inline int64_t
padded(int64_t t)
{
	return (t + NR - 1) / NR * NR;
}

struct attn_args {
	REAL *out, *probs, *dqkv, *scratch;
	const REAL *qkv, *dout, *probs_c;
	int64_t b, t, d, h;
	uint64_t seed, stream;
	uint32_t thr;    /* 0: no dropout */
	REAL keep_scale; /* 1/(1-p) */
};

/* The dropout multiplier of probability j in the row whose first counter is
 * c0, one at a time (the plain path). */
static inline int
attn_kept(const struct attn_args *a, int64_t c0, int64_t j)
{
	return lki_rand_bits24(a->seed, a->stream, (uint64_t)(c0 + j)) >= a->thr;
}

/* mt[c·tp + j] = m[j·ld + c] for j < t, c < dh; zero for t ≤ j < tp */
static inline void
transpose_head(REAL *restrict mt, const REAL *restrict m, int64_t t, int64_t tp, int64_t dh,
               int64_t ld)
{
	for (int64_t j = 0; j < t; j++)
		for (int64_t c = 0; c < dh; c++)
			mt[c * tp + j] = m[j * ld + c];
	for (int64_t c = 0; c < dh; c++)
		for (int64_t j = t; j < tp; j++)
			mt[c * tp + j] = 0;
}

/* row ← softmax(row·scale) */
static inline void
softmax_row(REAL *restrict row, int64_t t, REAL scale)
{
	for (int64_t j = 0; j < t; j++)
		row[j] *= scale;
	REAL mx = -INFINITY;
	for (int64_t j = 0; j < t; j++)
		mx = row[j] > mx ? row[j] : mx;
	for (int64_t j = 0; j < t; j++)
		row[j] = EXP(row[j] - mx);
	double sum = 0;
	for (int64_t j = 0; j < t; j++)
		sum += row[j];
	REAL inv = (REAL)(1.0 / sum);
	for (int64_t j = 0; j < t; j++)
		row[j] *= inv;
}

/* Forward of unit u:  P = softmax(Q·K^T/√dh);  O = (P∘M)·V  with M the
 * dropout multipliers (0 or 1/(1-p)).  buf holds K^T [dh, T] (row stride
 * padded(T)) and P∘M [T, T], or is NULL (plain path). */
LKI_HOT static void
attention_forward_unit(const struct attn_args *a, int64_t u, REAL *buf)
{
	int64_t T = a->t, D = a->d, H = a->h, dh = D / H, ld = 3 * D;
	int64_t bb = u / H, hh = u % H;
	const REAL *q = a->qkv + bb * T * ld + hh * dh, *k = q + D, *v = q + 2 * D;
	REAL *pu = a->probs + u * T * T, *o = a->out + bb * T * D + hh * dh;
	REAL scale = (REAL)(1.0 / sqrt((double)dh));

	/* S = Q·K^T */
	if (buf != NULL) {
		transpose_head(buf, k, T, padded(T), dh, ld);
		small_gemm(pu, T, q, ld, 1, buf, padded(T), 1, T, T, dh, 0, 1);
	} else {
		small_gemm(pu, T, q, ld, 1, k, 1, ld, T, T, dh, 0, 0);
	}
	for (int64_t i = 0; i < T; i++)
		softmax_row(pu + i * T, T, scale);

	if (a->thr == 0) {
		small_gemm(o, D, pu, T, 1, v, ld, 1, T, dh, T, 0, 0);
	} else if (buf != NULL) {
		REAL *pm = buf + dh * padded(T);
		for (int64_t i = 0; i < T; i++) {
			REAL *restrict mrow = pm + i * T;
			const REAL *restrict prow = pu + i * T;
			mask_fill(mrow, a->seed, a->stream, (uint64_t)((u * T + i) * T), T, a->thr, 1);
			for (int64_t j = 0; j < T; j++)
				mrow[j] = mrow[j] != 0 ? prow[j] * a->keep_scale : 0;
		}
		small_gemm(o, D, pm, T, 1, v, ld, 1, T, dh, T, 0, 0);
	} else {
		for (int64_t i = 0; i < T; i++)
			for (int64_t c = 0; c < dh; c++) {
				REAL acc = 0;
				for (int64_t j = 0; j < T; j++) {
					REAL pmij = attn_kept(a, (u * T + i) * T, j) ? pu[i * T + j] * a->keep_scale
					                                             : 0;
					acc += pmij * v[j * ld + c];
				}
				o[i * D + c] = acc;
			}
	}
}

LKI_HOT static void
attention_forward_range(void *arg, int64_t u0, int64_t u1)
{
	const struct attn_args *a = arg;
	int64_t T = a->t, dh = a->d / a->h;
	REAL *buf = lki_attention_plain ? NULL
	                                : malloc((size_t)(dh * padded(T) + T * T) * sizeof(REAL));
	for (int64_t u = u0; u < u1; u++)
		attention_forward_unit(a, u, buf);
	free(buf);
}

void
P(attention_forward)(REAL *out, REAL *probs, const REAL *qkv, int64_t b, int64_t t, int64_t d,
                     int64_t h, double p, uint64_t seed, uint64_t stream, lk_pool *pool)
{
	struct attn_args a = {.out = out, .probs = probs, .qkv = qkv, .b = b, .t = t, .d = d,
	                      .h = h, .seed = seed, .stream = stream,
	                      .thr = keep_threshold(p),
	                      .keep_scale = (REAL)(1.0 / (1.0 - p))};
	if (b <= 0 || t <= 0 || d <= 0 || h <= 0)
		return;
	run(pool, b * h, 4 * b * t * t * d, attention_forward_range, &a);
}

/* Backward of unit u, with PM = P∘M:
 *   dPM = dO·V^T        dP = dPM∘M        dV += PM^T·dO
 *   dS  = P∘(dP − rowsum(P∘dP))/√dh
 *   dQ += dS·K          dK += dS^T·Q
 * dPM, dP and dS live in the unit's T×T block of scratch.  buf holds V^T
 * [dh, T] (row stride padded(T)) and PM [T, T], or is NULL (plain path). */
LKI_HOT static void
attention_backward_unit(const struct attn_args *a, int64_t u, REAL *buf)
{
	int64_t T = a->t, D = a->d, H = a->h, dh = D / H, ld = 3 * D;
	int64_t bb = u / H, hh = u % H;
	const REAL *q = a->qkv + bb * T * ld + hh * dh, *k = q + D, *v = q + 2 * D;
	REAL *dq = a->dqkv + bb * T * ld + hh * dh, *dk = dq + D, *dv = dq + 2 * D;
	const REAL *pu = a->probs_c + u * T * T, *go = a->dout + bb * T * D + hh * dh;
	REAL *su = a->scratch + u * T * T;
	REAL scale = (REAL)(1.0 / sqrt((double)dh));
	const REAL *pm = pu; /* P∘M: P itself without dropout */

	/* dPM = dO·V^T */
	if (buf != NULL) {
		transpose_head(buf, v, T, padded(T), dh, ld);
		small_gemm(su, T, go, D, 1, buf, padded(T), 1, T, T, dh, 0, 1);
	} else {
		small_gemm(su, T, go, D, 1, v, 1, ld, T, T, dh, 0, 0);
	}

	/* dropout: dP = dPM∘M, and PM for dV */
	if (a->thr != 0 && buf != NULL) {
		REAL *pmb = buf + dh * padded(T);
		for (int64_t i = 0; i < T; i++) {
			REAL *restrict mrow = pmb + i * T, *restrict srow = su + i * T;
			const REAL *restrict prow = pu + i * T;
			mask_fill(mrow, a->seed, a->stream, (uint64_t)((u * T + i) * T), T, a->thr, 1);
			for (int64_t j = 0; j < T; j++) {
				srow[j] = mrow[j] != 0 ? srow[j] * a->keep_scale : 0;
				mrow[j] = mrow[j] != 0 ? prow[j] * a->keep_scale : 0;
			}
		}
		pm = pmb;
	} else if (a->thr != 0) {
		for (int64_t i = 0; i < T; i++)
			for (int64_t j = 0; j < T; j++)
				su[i * T + j] = attn_kept(a, (u * T + i) * T, j) ? su[i * T + j] * a->keep_scale
				                                                 : 0;
		pm = NULL;
	}

	/* dV += PM^T·dO */
	if (pm != NULL) {
		small_gemm(dv, ld, pm, 1, T, go, D, 1, T, dh, T, 1, 0);
	} else {
		for (int64_t j = 0; j < T; j++)
			for (int64_t c = 0; c < dh; c++) {
				REAL acc = 0;
				for (int64_t i = 0; i < T; i++) {
					REAL pmij = attn_kept(a, (u * T + i) * T, j) ? pu[i * T + j] * a->keep_scale
					                                             : 0;
					acc += pmij * go[i * D + c];
				}
				dv[j * ld + c] += acc;
			}
	}

	/* softmax: dS = P∘(dP − Σ_j P∘dP)/√dh */
	for (int64_t i = 0; i < T; i++) {
		const REAL *restrict prow = pu + i * T;
		REAL *restrict srow = su + i * T;
		REAL dot = (REAL)dot_d(prow, srow, T);
		for (int64_t j = 0; j < T; j++)
			srow[j] = prow[j] * (srow[j] - dot) * scale;
	}

	/* dQ += dS·K;  dK += dS^T·Q */
	small_gemm(dq, ld, su, T, 1, k, ld, 1, T, dh, T, 1, 0);
	small_gemm(dk, ld, su, 1, T, q, ld, 1, T, dh, T, 1, 0);
}

LKI_HOT static void
attention_backward_range(void *arg, int64_t u0, int64_t u1)
{
	const struct attn_args *a = arg;
	int64_t T = a->t, dh = a->d / a->h;
	REAL *buf = lki_attention_plain ? NULL
	                                : malloc((size_t)(dh * padded(T) + T * T) * sizeof(REAL));
	for (int64_t u = u0; u < u1; u++)
		attention_backward_unit(a, u, buf);
	free(buf);
}

void
P(attention_backward)(REAL *dqkv, REAL *scratch, const REAL *dout, const REAL *qkv,
                      const REAL *probs, int64_t b, int64_t t, int64_t d, int64_t h, double p,
                      uint64_t seed, uint64_t stream, lk_pool *pool)
{
	struct attn_args a = {.dqkv = dqkv, .scratch = scratch, .dout = dout, .qkv = qkv,
	                      .probs_c = probs, .b = b, .t = t, .d = d, .h = h, .seed = seed,
	                      .stream = stream, .thr = keep_threshold(p),
	                      .keep_scale = (REAL)(1.0 / (1.0 - p))};
	if (b <= 0 || t <= 0 || d <= 0 || h <= 0)
		return;
	run(pool, b * h, 8 * b * t * t * d, attention_backward_range, &a);
}

/* ================================================================== positions */

void
P(positions_forward)(REAL *x, const REAL *pos, int64_t b, int64_t t, int64_t d)
{
	int64_t td = t * d;
	for (int64_t bb = 0; bb < b; bb++) {
		REAL *restrict xb = x + bb * td;
		const REAL *restrict ps = pos;
		for (int64_t i = 0; i < td; i++)
			xb[i] += ps[i];
	}
}

void
P(positions_backward)(REAL *dpos, const REAL *dx, int64_t b, int64_t t, int64_t d)
{
	int64_t td = t * d;
	for (int64_t bb = 0; bb < b; bb++) {
		REAL *restrict dp = dpos;
		const REAL *restrict g = dx + bb * td;
		for (int64_t i = 0; i < td; i++)
			dp[i] += g[i];
	}
}

void
P(positions_sinusoidal)(REAL *pos, int64_t t, int64_t d)
{
	for (int64_t tt = 0; tt < t; tt++)
		for (int64_t i = 0; 2 * i < d; i++) {
			double angle = (double)tt / pow(10000.0, (double)(2 * i) / (double)d);
			pos[tt * d + 2 * i] = (REAL)sin(angle);
			if (2 * i + 1 < d)
				pos[tt * d + 2 * i + 1] = (REAL)cos(angle);
		}
}

/* ================================================================== layouts */

void
P(patchify)(REAL *out, const REAL *x, int64_t b, int64_t l, int64_t c, int64_t p)
{
	/* out[bb, j, pp·C + cc] = x[bb, j·P + pp, cc].  Both offsets equal
	 * ((bb·L + j·P + pp)·C + cc): in row-major memory the patch view is the
	 * series itself, so this is a copy. */
	(void)p;
	if (b > 0 && l > 0 && c > 0 && out != x)
		memcpy(out, x, (size_t)(b * l * c) * sizeof(REAL));
}

void
P(channels_split)(REAL *out, const REAL *x, int64_t b, int64_t l, int64_t c)
{
	for (int64_t bb = 0; bb < b; bb++)
		for (int64_t cc = 0; cc < c; cc++) {
			REAL *restrict o = out + (bb * c + cc) * l;
			const REAL *restrict s = x + bb * l * c + cc;
			for (int64_t tt = 0; tt < l; tt++)
				o[tt] = s[tt * c];
		}
}

void
P(channels_merge)(REAL *out, const REAL *y, int64_t b, int64_t hz, int64_t c)
{
	for (int64_t bb = 0; bb < b; bb++)
		for (int64_t cc = 0; cc < c; cc++) {
			const REAL *restrict s = y + (bb * c + cc) * hz;
			REAL *restrict o = out + bb * hz * c + cc;
			for (int64_t tt = 0; tt < hz; tt++)
				o[tt * c] = s[tt];
		}
}

/* ================================================================== RevIN */

void
P(revin_normalize)(REAL *out, REAL *mean, REAL *stdev, const REAL *x, int64_t b, int64_t l,
                   int64_t c, double eps)
{
	for (int64_t bb = 0; bb < b; bb++)
		for (int64_t cc = 0; cc < c; cc++) {
			const REAL *s = x + bb * l * c + cc;
			REAL *o = out + bb * l * c + cc;
			double sum = 0, sq = 0;
			for (int64_t tt = 0; tt < l; tt++)
				sum += s[tt * c];
			double m = l > 0 ? sum / (double)l : 0;
			for (int64_t tt = 0; tt < l; tt++) {
				double dv = s[tt * c] - m;
				sq += dv * dv;
			}
			double var = l > 0 ? sq / (double)l : 0;
			REAL mr = (REAL)m, sr = (REAL)sqrt(var + eps);
			mean[bb * c + cc] = mr;
			stdev[bb * c + cc] = sr;
			for (int64_t tt = 0; tt < l; tt++)
				o[tt * c] = (s[tt * c] - mr) / sr;
		}
}

void
P(revin_denormalize)(REAL *y, const REAL *yn, const REAL *mean, const REAL *stdev, int64_t b,
                     int64_t hz, int64_t c)
{
	for (int64_t bb = 0; bb < b; bb++)
		for (int64_t tt = 0; tt < hz; tt++) {
			REAL *restrict o = y + (bb * hz + tt) * c;
			const REAL *restrict s = yn + (bb * hz + tt) * c;
			const REAL *restrict m = mean + bb * c, *restrict sd = stdev + bb * c;
			for (int64_t cc = 0; cc < c; cc++)
				o[cc] = s[cc] * sd[cc] + m[cc];
		}
}

void
P(revin_denormalize_backward)(REAL *dyn, const REAL *dy, const REAL *stdev, int64_t b,
                              int64_t hz, int64_t c)
{
	for (int64_t bb = 0; bb < b; bb++)
		for (int64_t tt = 0; tt < hz; tt++) {
			REAL *restrict o = dyn + (bb * hz + tt) * c;
			const REAL *restrict g = dy + (bb * hz + tt) * c;
			const REAL *restrict sd = stdev + bb * c;
			for (int64_t cc = 0; cc < c; cc++)
				o[cc] += g[cc] * sd[cc];
		}
}

/* ================================================================== losses
 * Means over n elements, summed in double in index order; an empty input
 * has loss 0.  Backward passes write (=) d(scale·loss)/dpred. */

double
P(mse_forward)(const REAL *pred, const REAL *target, int64_t n)
{
	double s = 0;
	for (int64_t i = 0; i < n; i++) {
		double e = (double)pred[i] - target[i];
		s += e * e;
	}
	return n > 0 ? s / (double)n : 0;
}

void
P(mse_backward)(REAL *dpred, const REAL *pred, const REAL *target, int64_t n, double scale)
{
	double k = n > 0 ? 2 * scale / (double)n : 0;
	for (int64_t i = 0; i < n; i++)
		dpred[i] = (REAL)(k * ((double)pred[i] - target[i]));
}

double
P(mae_forward)(const REAL *pred, const REAL *target, int64_t n)
{
	double s = 0;
	for (int64_t i = 0; i < n; i++)
		s += fabs((double)pred[i] - target[i]);
	return n > 0 ? s / (double)n : 0;
}

void
P(mae_backward)(REAL *dpred, const REAL *pred, const REAL *target, int64_t n, double scale)
{
	/* sign(0) = 0, as PyTorch */
	double k = n > 0 ? scale / (double)n : 0;
	for (int64_t i = 0; i < n; i++) {
		double e = (double)pred[i] - target[i];
		dpred[i] = (REAL)(e > 0 ? k : e < 0 ? -k : 0);
	}
}

/* 0.5·e² for |e| < δ, else δ·(|e| − 0.5·δ) (PyTorch's HuberLoss) */
double
P(huber_forward)(const REAL *pred, const REAL *target, int64_t n, double delta)
{
	double s = 0;
	for (int64_t i = 0; i < n; i++) {
		double e = (double)pred[i] - target[i], z = fabs(e);
		s += z < delta ? 0.5 * e * e : delta * (z - 0.5 * delta);
	}
	return n > 0 ? s / (double)n : 0;
}

void
P(huber_backward)(REAL *dpred, const REAL *pred, const REAL *target, int64_t n, double delta,
                  double scale)
{
	double k = n > 0 ? scale / (double)n : 0;
	for (int64_t i = 0; i < n; i++) {
		double e = (double)pred[i] - target[i];
		double g = e < -delta ? -delta : e > delta ? delta : e;
		dpred[i] = (REAL)(k * g);
	}
}

/* Row r: probs = softmax(logits_r); loss_r = log Σ_k exp(l_k − max) + max − l_t. */
double
P(crossentropy_forward)(REAL *probs, const REAL *logits, const int32_t *targets, int64_t n,
                        int64_t k)
{
	double total = 0;
	for (int64_t r = 0; r < n; r++) {
		const REAL *l = logits + r * k;
		REAL *pr = probs + r * k;
		REAL mx = -INFINITY;
		for (int64_t j = 0; j < k; j++)
			mx = l[j] > mx ? l[j] : mx;
		for (int64_t j = 0; j < k; j++)
			pr[j] = EXP(l[j] - mx);
		double sum = 0;
		for (int64_t j = 0; j < k; j++)
			sum += pr[j];
		REAL inv = (REAL)(1.0 / sum);
		for (int64_t j = 0; j < k; j++)
			pr[j] *= inv;
		total += log(sum) + (double)mx - (double)l[targets[r]];
	}
	return n > 0 ? total / (double)n : 0;
}

void
P(crossentropy_backward)(REAL *dlogits, const REAL *probs, const int32_t *targets, int64_t n,
                         int64_t k, double scale)
{
	double s = n > 0 ? scale / (double)n : 0;
	for (int64_t r = 0; r < n; r++) {
		const REAL *pr = probs + r * k;
		REAL *dl = dlogits + r * k;
		for (int64_t j = 0; j < k; j++)
			dl[j] = (REAL)(s * ((double)pr[j] - (j == targets[r] ? 1.0 : 0.0)));
	}
}

/* ================================================================== optimizer */

struct adamw_args {
	REAL *param, *m, *v;
	const REAL *grad;
	double lr, beta1, beta2, eps, decay, step, bc2_sqrt;
};

/* As torch.optim.AdamW (single tensor): p ·= 1 − lr·wd; m = β1·m + (1−β1)·g;
 * v = β2·v + (1−β2)·g²; p −= (lr/(1−β1^t))·m / (√v/√(1−β2^t) + eps).
 * Each element is computed in double and stored in REAL. */
LKI_HOT static void
adamw_range(void *arg, int64_t i0, int64_t i1)
{
	struct adamw_args *a = arg;
	REAL *restrict p = a->param, *restrict m = a->m, *restrict v = a->v;
	const REAL *restrict g = a->grad;
	double b1 = a->beta1, b2 = a->beta2;
	for (int64_t i = i0; i < i1; i++) {
		double gi = g[i];
		double mi = b1 * m[i] + (1 - b1) * gi;
		double vi = b2 * v[i] + (1 - b2) * gi * gi;
		double pi = p[i] * a->decay;
		pi -= a->step * mi / (sqrt(vi) / a->bc2_sqrt + a->eps);
		m[i] = (REAL)mi;
		v[i] = (REAL)vi;
		p[i] = (REAL)pi;
	}
}

void
P(adamw_update)(REAL *param, const REAL *grad, REAL *m, REAL *v, int64_t n, double lr,
                double beta1, double beta2, double eps, double weight_decay, int64_t t,
                lk_pool *pool)
{
	struct adamw_args a = {.param = param, .m = m, .v = v, .grad = grad, .lr = lr,
	                       .beta1 = beta1, .beta2 = beta2, .eps = eps,
	                       .decay = 1 - lr * weight_decay,
	                       .step = lr / (1 - pow(beta1, (double)t)),
	                       .bc2_sqrt = sqrt(1 - pow(beta2, (double)t))};
	run(pool, n, 16 * n, adamw_range, &a);
}

double
P(sum_squares)(const REAL *x, int64_t n)
{
	return dot_d(x, x, n);
}

void
P(scale)(REAL *x, int64_t n, double s)
{
	REAL *restrict y = x;
	for (int64_t i = 0; i < n; i++)
		y[i] = (REAL)(y[i] * s);
}

/* The CPU kernels: every backward against central finite differences of the
 * double forward, float against double, reference values from independent
 * definitions, dropout statistics, determinism across runs and thread
 * counts, the pool, and the random numbers.
 *
 * Tolerances (each stated where it is used):
 *   finite differences  ε = 1e-6; |analytic − numeric| ≤ 1e-6 + 1e-6·max(|a|,|n|),
 *                       every element of tensors up to 1000 elements, else
 *                       256 spread ones (the largest discrepancy seen is
 *                       7e-9: rounding of L/ε and ε²·L''' truncation)
 *   accumulation        twice = 2·once within 1e-12·max(1, |2·once|)
 *   float vs double     max |f − d| ≤ tol·max(1, max |d|), tol per op below
 *   double references   1e-12 (relative, floor 1) unless stated
 *   determinism         memcmp
 * Inputs are drawn from lk_rand_normal with fixed seeds, so every run
 * checks the same numbers. */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/internal.h" /* lki_attention_plain, the test hook */
#include "kernels/kernels.h"
#include "testutil.h"

#define SEED 0x5eed2024u

#define FD_EPS 1e-6
#define FD_RTOL 1e-6
#define FD_ATOL 1e-6
#define FD_ALL 1000    /* tensors up to this size are checked at every element */
#define FD_SAMPLES 256 /* larger ones at this many spread elements */

/* ================================================================== helpers */

static void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	ck_assert_ptr_nonnull(p);
	return p;
}

static double *
randn(int64_t n, uint64_t stream, double scale)
{
	double *x = xmalloc((size_t)n * sizeof *x);
	for (int64_t i = 0; i < n; i++)
		x[i] = scale * lk_rand_normal(SEED, stream, (uint64_t)i);
	return x;
}

/* Normal values rounded to float, so the float and double builds see the
 * same inputs. */
static double *
randn_f(int64_t n, uint64_t stream, double scale)
{
	double *x = randn(n, stream, scale);
	for (int64_t i = 0; i < n; i++)
		x[i] = (float)x[i];
	return x;
}

static double *
zeros(int64_t n)
{
	double *x = calloc((size_t)(n ? n : 1), sizeof *x);
	ck_assert_ptr_nonnull(x);
	return x;
}

static double *
dup_d(const double *x, int64_t n)
{
	double *y = xmalloc((size_t)n * sizeof *y);
	memcpy(y, x, (size_t)n * sizeof *y);
	return y;
}

static float *
to_f(const double *x, int64_t n)
{
	float *y = xmalloc((size_t)n * sizeof *y);
	for (int64_t i = 0; i < n; i++)
		y[i] = (float)x[i];
	return y;
}

static float *
zeros_f(int64_t n)
{
	float *x = calloc((size_t)(n ? n : 1), sizeof *x);
	ck_assert_ptr_nonnull(x);
	return x;
}

static double
dot(const double *a, const double *b, int64_t n)
{
	double s = 0;
	for (int64_t i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

/* Compare the analytic gradient grad[0..n) of x with central differences
 * of f, which evaluates L at the current x. */
static void
fd_check(const char *what, double *x, int64_t n, const double *grad, double (*f)(void *),
         void *ctx)
{
	int64_t samples = n <= FD_ALL ? n : FD_SAMPLES;
	for (int64_t s = 0; s < samples; s++) {
		int64_t i = samples == n ? s : s * n / samples + (s * 7) % (n / samples);
		double save = x[i], lp, lm, num, tol;
		x[i] = save + FD_EPS;
		lp = f(ctx);
		x[i] = save - FD_EPS;
		lm = f(ctx);
		x[i] = save;
		num = (lp - lm) / (2 * FD_EPS);
		tol = FD_ATOL + FD_RTOL * fmax(fabs(num), fabs(grad[i]));
		ck_assert_msg(fabs(num - grad[i]) <= tol,
		              "%s[%lld]: analytic %.12g, finite difference %.12g", what, (long long)i,
		              grad[i], num);
	}
}

/* A backward called twice into zeroed buffers must give twice the gradient
 * of one call. */
static void
twice_check(const char *what, const double *once, const double *twice, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		ck_assert_msg(fabs(twice[i] - 2 * once[i]) <= 1e-12 * fmax(1, fabs(2 * once[i])),
		              "%s[%lld] does not accumulate: once %.17g, twice %.17g", what,
		              (long long)i, once[i], twice[i]);
}

/* max |f − d| ≤ tol·max(1, max |d|) */
static void
close_fd(const char *what, const float *f, const double *d, int64_t n, double tol)
{
	double mx = 1, err = 0;
	int64_t at = 0;
	for (int64_t i = 0; i < n; i++)
		mx = fmax(mx, fabs(d[i]));
	for (int64_t i = 0; i < n; i++)
		if (fabs(f[i] - d[i]) > err) {
			err = fabs(f[i] - d[i]);
			at = i;
		}
	ck_assert_msg(err <= tol * mx, "%s: float %.9g vs double %.17g at [%lld] (max error %g > %g)",
	              what, f[at], d[at], (long long)at, err, tol * mx);
}

static void
close_dd(const char *what, const double *a, const double *ref, int64_t n, double tol)
{
	for (int64_t i = 0; i < n; i++)
		ck_assert_msg(fabs(a[i] - ref[i]) <= tol * fmax(1, fabs(ref[i])),
		              "%s[%lld]: %.17g, reference %.17g", what, (long long)i, a[i], ref[i]);
}

/* ================================================================== finite differences */

/* ---- linear */
struct lin_ctx {
	double *x, *w, *b, *g, *y;
	int64_t n, i, o;
};

static double
lin_loss(void *p)
{
	struct lin_ctx *c = p;
	lkd_linear_forward(c->y, c->x, c->w, c->b, c->n, c->i, c->o, NULL);
	return dot(c->g, c->y, c->n * c->o);
}

START_TEST(fd_linear)
{
	struct lin_ctx c = {.n = 5, .i = 7, .o = 6};
	c.x = randn(c.n * c.i, 1, 1);
	c.w = randn(c.o * c.i, 2, 0.5);
	c.b = randn(c.o, 3, 1);
	c.g = randn(c.n * c.o, 4, 1);
	c.y = zeros(c.n * c.o);
	double *dx = zeros(c.n * c.i), *dw = zeros(c.o * c.i), *db = zeros(c.o);

	lkd_linear_backward(dx, dw, db, c.g, c.x, c.w, c.n, c.i, c.o, NULL);
	fd_check("linear din", c.x, c.n * c.i, dx, lin_loss, &c);
	fd_check("linear dw", c.w, c.o * c.i, dw, lin_loss, &c);
	fd_check("linear db", c.b, c.o, db, lin_loss, &c);

	double *dx1 = dup_d(dx, c.n * c.i), *dw1 = dup_d(dw, c.o * c.i), *db1 = dup_d(db, c.o);
	lkd_linear_backward(dx, dw, db, c.g, c.x, c.w, c.n, c.i, c.o, NULL);
	twice_check("linear din", dx1, dx, c.n * c.i);
	twice_check("linear dw", dw1, dw, c.o * c.i);
	twice_check("linear db", db1, db, c.o);

	/* din and db may be NULL: dw alone is still right */
	memset(dw, 0, (size_t)(c.o * c.i) * sizeof *dw);
	lkd_linear_backward(NULL, dw, NULL, c.g, c.x, c.w, c.n, c.i, c.o, NULL);
	close_dd("linear dw alone", dw, dw1, c.o * c.i, 1e-15);

	free(c.x), free(c.w), free(c.b), free(c.g), free(c.y);
	free(dx), free(dw), free(db), free(dx1), free(dw1), free(db1);
}
END_TEST

/* ---- layernorm */
struct ln_ctx {
	double *x, *w, *b, *g, *y, *mean, *rstd;
	int64_t n, d;
};

static double
ln_loss(void *p)
{
	struct ln_ctx *c = p;
	lkd_layernorm_forward(c->y, c->mean, c->rstd, c->x, c->w, c->b, c->n, c->d, 1e-5, NULL);
	return dot(c->g, c->y, c->n * c->d);
}

START_TEST(fd_layernorm)
{
	struct ln_ctx c = {.n = 4, .d = 9};
	int64_t nd = c.n * c.d;
	c.x = randn(nd, 10, 2);
	c.w = randn(c.d, 11, 1);
	c.b = randn(c.d, 12, 1);
	c.g = randn(nd, 13, 1);
	c.y = zeros(nd);
	c.mean = zeros(c.n);
	c.rstd = zeros(c.n);
	double *dx = zeros(nd), *dw = zeros(c.d), *db = zeros(c.d);

	ln_loss(&c);
	lkd_layernorm_backward(dx, dw, db, c.g, c.x, c.w, c.mean, c.rstd, c.n, c.d, NULL);
	double *dx1 = dup_d(dx, nd), *dw1 = dup_d(dw, c.d), *db1 = dup_d(db, c.d);
	fd_check("layernorm din", c.x, nd, dx, ln_loss, &c);
	fd_check("layernorm dw", c.w, c.d, dw, ln_loss, &c);
	fd_check("layernorm db", c.b, c.d, db, ln_loss, &c);

	ln_loss(&c);
	lkd_layernorm_backward(dx, dw, db, c.g, c.x, c.w, c.mean, c.rstd, c.n, c.d, NULL);
	twice_check("layernorm din", dx1, dx, nd);
	twice_check("layernorm dw", dw1, dw, c.d);
	twice_check("layernorm db", db1, db, c.d);

	free(c.x), free(c.w), free(c.b), free(c.g), free(c.y), free(c.mean), free(c.rstd);
	free(dx), free(dw), free(db), free(dx1), free(dw1), free(db1);
}
END_TEST

/* ---- elementwise: gelu, dropout, residual */
struct ew_ctx {
	double *x, *x2, *g, *y;
	int64_t n;
	int op; /* 0 gelu, 1 dropout, 2 residual */
	double p;
};

static double
ew_loss(void *p)
{
	struct ew_ctx *c = p;
	if (c->op == 0)
		lkd_gelu_forward(c->y, c->x, c->n, NULL);
	else if (c->op == 1)
		lkd_dropout_forward(c->y, c->x, c->n, c->p, SEED, 77, NULL);
	else
		lkd_residual_forward(c->y, c->x, c->x2, c->n);
	return dot(c->g, c->y, c->n);
}

START_TEST(fd_gelu)
{
	struct ew_ctx c = {.n = 64, .op = 0};
	c.x = randn(c.n, 20, 2);
	c.g = randn(c.n, 21, 1);
	c.y = zeros(c.n);
	double *dx = zeros(c.n);
	lkd_gelu_backward(dx, c.x, c.g, c.n, NULL);
	fd_check("gelu din", c.x, c.n, dx, ew_loss, &c);
	double *dx1 = dup_d(dx, c.n);
	lkd_gelu_backward(dx, c.x, c.g, c.n, NULL);
	twice_check("gelu din", dx1, dx, c.n);
	free(c.x), free(c.g), free(c.y), free(dx), free(dx1);
}
END_TEST

START_TEST(fd_dropout)
{
	struct ew_ctx c = {.n = 64, .op = 1, .p = 0.3};
	c.x = randn(c.n, 22, 1);
	c.g = randn(c.n, 23, 1);
	c.y = zeros(c.n);
	double *dx = zeros(c.n);
	int dropped = 0;
	lkd_dropout_backward(dx, c.g, c.n, c.p, SEED, 77, NULL);
	for (int64_t i = 0; i < c.n; i++)
		dropped += dx[i] == 0;
	ck_assert_int_gt(dropped, 5); /* the mask is not trivial */
	fd_check("dropout din", c.x, c.n, dx, ew_loss, &c);
	double *dx1 = dup_d(dx, c.n);
	lkd_dropout_backward(dx, c.g, c.n, c.p, SEED, 77, NULL);
	twice_check("dropout din", dx1, dx, c.n);
	free(c.x), free(c.g), free(c.y), free(dx), free(dx1);
}
END_TEST

START_TEST(fd_residual)
{
	struct ew_ctx c = {.n = 40, .op = 2};
	c.x = randn(c.n, 24, 1);
	c.x2 = randn(c.n, 25, 1);
	c.g = randn(c.n, 26, 1);
	c.y = zeros(c.n);
	double *da = zeros(c.n), *db = zeros(c.n);
	lkd_residual_backward(da, db, c.g, c.n);
	fd_check("residual da", c.x, c.n, da, ew_loss, &c);
	fd_check("residual db", c.x2, c.n, db, ew_loss, &c);
	double *da1 = dup_d(da, c.n), *db1 = dup_d(db, c.n);
	lkd_residual_backward(da, db, c.g, c.n);
	twice_check("residual da", da1, da, c.n);
	twice_check("residual db", db1, db, c.n);
	/* out may alias an input */
	double *a = dup_d(c.x, c.n);
	lkd_residual_forward(a, a, c.x2, c.n);
	for (int64_t i = 0; i < c.n; i++)
		ck_assert(a[i] == c.x[i] + c.x2[i]);
	free(c.x), free(c.x2), free(c.g), free(c.y), free(da), free(db), free(da1), free(db1);
	free(a);
}
END_TEST

/* ---- attention */
struct attn_ctx {
	double *qkv, *probs, *out, *g;
	int64_t b, t, d, h;
	double p;
};

static double
attn_loss(void *p)
{
	struct attn_ctx *c = p;
	lkd_attention_forward(c->out, c->probs, c->qkv, c->b, c->t, c->d, c->h, c->p, SEED, 5,
	                      NULL);
	return dot(c->g, c->out, c->b * c->t * c->d);
}

static void
fd_attention_with(double p)
{
	/* T = 9, dh = 8: register tiles (4 rows × 8 doubles) and the plain edges */
	struct attn_ctx c = {.b = 2, .t = 9, .d = 16, .h = 2, .p = p};
	int64_t nqkv = c.b * c.t * 3 * c.d, nout = c.b * c.t * c.d, np = c.b * c.h * c.t * c.t;
	c.qkv = randn(nqkv, 30, 1);
	c.g = randn(nout, 31, 1);
	c.out = zeros(nout);
	c.probs = zeros(np);
	double *dqkv = zeros(nqkv), *scratch = zeros(np);

	attn_loss(&c);
	lkd_attention_backward(dqkv, scratch, c.g, c.qkv, c.probs, c.b, c.t, c.d, c.h, p, SEED, 5,
	                       NULL);
	double *d1 = dup_d(dqkv, nqkv);
	fd_check(p > 0 ? "attention (dropout) dqkv" : "attention dqkv", c.qkv, nqkv, dqkv,
	         attn_loss, &c);
	attn_loss(&c);
	lkd_attention_backward(dqkv, scratch, c.g, c.qkv, c.probs, c.b, c.t, c.d, c.h, p, SEED, 5,
	                       NULL);
	twice_check("attention dqkv", d1, dqkv, nqkv);
	free(c.qkv), free(c.g), free(c.out), free(c.probs), free(dqkv), free(scratch), free(d1);
}

START_TEST(fd_attention)
{
	fd_attention_with(0);
}
END_TEST

START_TEST(fd_attention_dropout)
{
	fd_attention_with(0.25);
}
END_TEST

/* ---- positions and RevIN's denormalization */
struct pos_ctx {
	double *x, *pos, *g, *y, *mean, *stdev;
	int64_t b, t, d;
};

static double
pos_loss(void *p)
{
	struct pos_ctx *c = p;
	int64_t n = c->b * c->t * c->d;
	memcpy(c->y, c->x, (size_t)n * sizeof *c->y);
	lkd_positions_forward(c->y, c->pos, c->b, c->t, c->d);
	return dot(c->g, c->y, n);
}

static double
denorm_loss(void *p)
{
	struct pos_ctx *c = p;
	lkd_revin_denormalize(c->y, c->x, c->mean, c->stdev, c->b, c->t, c->d);
	return dot(c->g, c->y, c->b * c->t * c->d);
}

START_TEST(fd_positions)
{
	struct pos_ctx c = {.b = 3, .t = 4, .d = 5};
	int64_t n = c.b * c.t * c.d, td = c.t * c.d;
	c.x = randn(n, 40, 1);
	c.pos = randn(td, 41, 1);
	c.g = randn(n, 42, 1);
	c.y = zeros(n);
	double *dpos = zeros(td);
	lkd_positions_backward(dpos, c.g, c.b, c.t, c.d);
	fd_check("positions dpos", c.pos, td, dpos, pos_loss, &c);
	double *d1 = dup_d(dpos, td);
	lkd_positions_backward(dpos, c.g, c.b, c.t, c.d);
	twice_check("positions dpos", d1, dpos, td);
	free(c.x), free(c.pos), free(c.g), free(c.y), free(dpos), free(d1);
}
END_TEST

START_TEST(fd_revin_denormalize)
{
	struct pos_ctx c = {.b = 2, .t = 4, .d = 3};
	int64_t n = c.b * c.t * c.d;
	c.x = randn(n, 43, 1);
	c.g = randn(n, 44, 1);
	c.mean = randn(c.b * c.d, 45, 3);
	c.stdev = randn(c.b * c.d, 46, 1);
	for (int64_t i = 0; i < c.b * c.d; i++)
		c.stdev[i] = 0.5 + fabs(c.stdev[i]);
	c.y = zeros(n);
	double *dyn = zeros(n);
	lkd_revin_denormalize_backward(dyn, c.g, c.stdev, c.b, c.t, c.d);
	fd_check("revin_denormalize dyn", c.x, n, dyn, denorm_loss, &c);
	double *d1 = dup_d(dyn, n);
	lkd_revin_denormalize_backward(dyn, c.g, c.stdev, c.b, c.t, c.d);
	twice_check("revin_denormalize dyn", d1, dyn, n);
	free(c.x), free(c.g), free(c.mean), free(c.stdev), free(c.y), free(dyn), free(d1);
}
END_TEST

/* ---- losses: L = scale·loss, and backward(scale) writes dL/dpred */
struct loss_ctx {
	double *pred, *target, *probs;
	int32_t *cls;
	int64_t n, k;
	int op; /* 0 mse, 1 mae, 2 huber, 3 crossentropy */
	double delta, scale;
};

static double
loss_eval(void *p)
{
	struct loss_ctx *c = p;
	switch (c->op) {
	case 0:
		return c->scale * lkd_mse_forward(c->pred, c->target, c->n);
	case 1:
		return c->scale * lkd_mae_forward(c->pred, c->target, c->n);
	case 2:
		return c->scale * lkd_huber_forward(c->pred, c->target, c->n, c->delta);
	default:
		return c->scale * lkd_crossentropy_forward(c->probs, c->pred, c->cls, c->n, c->k);
	}
}

static void
fd_loss(int op)
{
	static const char *const names[] = {"mse", "mae", "huber", "crossentropy"};
	struct loss_ctx c = {.n = 50, .k = 1, .op = op, .delta = 0.8, .scale = 1.7};
	if (op == 3) {
		c.n = 6;
		c.k = 7;
	}
	int64_t np = c.n * c.k;
	c.pred = randn(np, 50, 1.5);
	c.target = randn(np, 51, 1);
	c.probs = zeros(np);
	c.cls = xmalloc((size_t)c.n * sizeof *c.cls);
	for (int64_t r = 0; r < c.n; r++)
		c.cls[r] = (int32_t)(lk_rand_u64(SEED, 52, (uint64_t)r) % (uint64_t)c.k);
	if (op == 1 || op == 2) {
		/* keep away from the kinks: |e| = 0 (mae), |e| = δ (huber) */
		int inside = 0, outside = 0;
		for (int64_t i = 0; i < c.n; i++) {
			double e = c.pred[i] - c.target[i], kink = op == 1 ? 0 : c.delta;
			if (fabs(fabs(e) - kink) < 1e-3)
				c.pred[i] += 0.01;
			e = c.pred[i] - c.target[i];
			inside += fabs(e) < c.delta;
			outside += fabs(e) > c.delta;
		}
		if (op == 2) {
			ck_assert_int_gt(inside, 5); /* both regions of the Huber loss */
			ck_assert_int_gt(outside, 5);
		}
	}
	double *dp = zeros(np);
	for (int64_t i = 0; i < np; i++)
		dp[i] = 123; /* the backward writes (=), it does not add */
	switch (op) {
	case 0:
		lkd_mse_backward(dp, c.pred, c.target, c.n, c.scale);
		break;
	case 1:
		lkd_mae_backward(dp, c.pred, c.target, c.n, c.scale);
		break;
	case 2:
		lkd_huber_backward(dp, c.pred, c.target, c.n, c.delta, c.scale);
		break;
	default:
		loss_eval(&c);
		lkd_crossentropy_backward(dp, c.probs, c.cls, c.n, c.k, c.scale);
	}
	fd_check(names[op], c.pred, np, dp, loss_eval, &c);
	free(c.pred), free(c.target), free(c.probs), free(c.cls), free(dp);
}

START_TEST(fd_losses)
{
	fd_loss(0);
	fd_loss(1);
	fd_loss(2);
	fd_loss(3);
}
END_TEST

/* ================================================================== float vs double
 * Each float forward (and the backwards) on inputs exactly representable in
 * float agrees with the double build.  Tolerances, relative to
 * max(1, max |double result|): 2e-6 elementwise, layouts exact, 1e-5 for
 * results of sums over ≤ 64 terms (linear, layernorm, attention), 1e-6 for
 * losses (summed in double in both builds). */
START_TEST(float_matches_double)
{
	enum { N = 12, I = 48, O = 40, B = 2, T = 16, D = 32, H = 4, NE = 1000 };
	lk_pool *pool = lk_pool_create(2);

	/* linear forward and backward */
	double *x = randn_f(N * I, 60, 1), *w = randn_f(O * I, 61, 0.2), *b = randn_f(O, 62, 1);
	double *g = randn_f(N * O, 63, 1), *y = zeros(N * O);
	double *dx = zeros(N * I), *dw = zeros(O * I), *db = zeros(O);
	float *xf = to_f(x, N * I), *wf = to_f(w, O * I), *bf = to_f(b, O), *gf = to_f(g, N * O);
	float *yf = zeros_f(N * O), *dxf = zeros_f(N * I), *dwf = zeros_f(O * I), *dbf = zeros_f(O);
	lkd_linear_forward(y, x, w, b, N, I, O, NULL);
	lk_linear_forward(yf, xf, wf, bf, N, I, O, pool);
	close_fd("linear forward", yf, y, N * O, 1e-5);
	lkd_linear_backward(dx, dw, db, g, x, w, N, I, O, NULL);
	lk_linear_backward(dxf, dwf, dbf, gf, xf, wf, N, I, O, pool);
	close_fd("linear din", dxf, dx, N * I, 1e-5);
	close_fd("linear dw", dwf, dw, O * I, 1e-5);
	close_fd("linear db", dbf, db, O, 1e-5);

	/* layernorm over rows of length I */
	double *lw = randn_f(I, 64, 1), *lb = randn_f(I, 65, 1), *ly = zeros(N * I);
	double *mean = zeros(N), *rstd = zeros(N), *lg = randn_f(N * I, 66, 1);
	double *ldx = zeros(N * I), *ldw = zeros(I), *ldb = zeros(I);
	float *lwf = to_f(lw, I), *lbf = to_f(lb, I), *lyf = zeros_f(N * I), *meanf = zeros_f(N);
	float *rstdf = zeros_f(N), *lgf = to_f(lg, N * I), *ldxf = zeros_f(N * I);
	float *ldwf = zeros_f(I), *ldbf = zeros_f(I);
	lkd_layernorm_forward(ly, mean, rstd, x, lw, lb, N, I, 1e-5, NULL);
	lk_layernorm_forward(lyf, meanf, rstdf, xf, lwf, lbf, N, I, 1e-5, pool);
	close_fd("layernorm forward", lyf, ly, N * I, 1e-5);
	close_fd("layernorm mean", meanf, mean, N, 2e-6);
	close_fd("layernorm rstd", rstdf, rstd, N, 2e-6);
	lkd_layernorm_backward(ldx, ldw, ldb, lg, x, lw, mean, rstd, N, I, NULL);
	lk_layernorm_backward(ldxf, ldwf, ldbf, lgf, xf, lwf, meanf, rstdf, N, I, pool);
	close_fd("layernorm din", ldxf, ldx, N * I, 1e-5);
	close_fd("layernorm dw", ldwf, ldw, I, 1e-5);
	close_fd("layernorm db", ldbf, ldb, I, 1e-5);

	/* elementwise */
	double *e = randn_f(NE, 67, 2), *eg = randn_f(NE, 68, 1), *ey = zeros(NE), *edx = zeros(NE);
	float *ef = to_f(e, NE), *egf = to_f(eg, NE), *eyf = zeros_f(NE), *edxf = zeros_f(NE);
	lkd_gelu_forward(ey, e, NE, NULL);
	lk_gelu_forward(eyf, ef, NE, pool);
	close_fd("gelu forward", eyf, ey, NE, 2e-6);
	lkd_gelu_backward(edx, e, eg, NE, NULL);
	lk_gelu_backward(edxf, ef, egf, NE, pool);
	close_fd("gelu backward", edxf, edx, NE, 2e-6);
	lkd_dropout_forward(ey, e, NE, 0.4, SEED, 9, NULL);
	lk_dropout_forward(eyf, ef, NE, 0.4, SEED, 9, pool);
	close_fd("dropout forward", eyf, ey, NE, 2e-6);
	lkd_residual_forward(ey, e, eg, NE);
	lk_residual_forward(eyf, ef, egf, NE);
	close_fd("residual forward", eyf, ey, NE, 2e-6);

	/* attention, with dropout */
	int64_t nqkv = B * T * 3 * D, nout = B * T * D, np = B * H * T * T;
	double *qkv = randn_f(nqkv, 69, 1), *ao = zeros(nout), *ap = zeros(np);
	double *ag = randn_f(nout, 70, 1), *adq = zeros(nqkv), *as = zeros(np);
	float *qkvf = to_f(qkv, nqkv), *aof = zeros_f(nout), *apf = zeros_f(np);
	float *agf = to_f(ag, nout), *adqf = zeros_f(nqkv), *asf = zeros_f(np);
	lkd_attention_forward(ao, ap, qkv, B, T, D, H, 0.1, SEED, 3, NULL);
	lk_attention_forward(aof, apf, qkvf, B, T, D, H, 0.1, SEED, 3, pool);
	close_fd("attention probs", apf, ap, np, 1e-5);
	close_fd("attention out", aof, ao, nout, 1e-5);
	lkd_attention_backward(adq, as, ag, qkv, ap, B, T, D, H, 0.1, SEED, 3, NULL);
	lk_attention_backward(adqf, asf, agf, qkvf, apf, B, T, D, H, 0.1, SEED, 3, pool);
	close_fd("attention dqkv", adqf, adq, nqkv, 1e-5);

	/* positions, layouts, RevIN (the series is x viewed as [B=2, L=6, C=4]) */
	double *pos = zeros(T * D), *px = dup_d(qkv, B * T * D);
	float *posf = zeros_f(T * D), *pxf = to_f(px, B * T * D);
	lkd_positions_sinusoidal(pos, T, D);
	lk_positions_sinusoidal(posf, T, D);
	close_fd("sinusoidal", posf, pos, T * D, 2e-7);
	lkd_positions_forward(px, pos, B, T, D);
	lk_positions_forward(pxf, posf, B, T, D);
	close_fd("positions forward", pxf, px, B * T * D, 2e-6);
	double *lay = zeros(48), *rm = zeros(8), *rs = zeros(8), *rd = zeros(48);
	float *layf = zeros_f(48), *rmf = zeros_f(8), *rsf = zeros_f(8), *rdf = zeros_f(48);
	lkd_patchify(lay, x, 2, 6, 4, 3);
	lk_patchify(layf, xf, 2, 6, 4, 3);
	close_fd("patchify", layf, lay, 48, 0);
	lkd_channels_split(lay, x, 2, 6, 4);
	lk_channels_split(layf, xf, 2, 6, 4);
	close_fd("channels_split", layf, lay, 48, 0);
	lkd_channels_merge(lay, x, 2, 6, 4);
	lk_channels_merge(layf, xf, 2, 6, 4);
	close_fd("channels_merge", layf, lay, 48, 0);
	lkd_revin_normalize(lay, rm, rs, x, 2, 6, 4, 1e-5);
	lk_revin_normalize(layf, rmf, rsf, xf, 2, 6, 4, 1e-5);
	close_fd("revin normalize", layf, lay, 48, 2e-6);
	close_fd("revin mean", rmf, rm, 8, 2e-6);
	close_fd("revin stdev", rsf, rs, 8, 2e-6);
	lkd_revin_denormalize(rd, lay, rm, rs, 2, 6, 4);
	lk_revin_denormalize(rdf, layf, rmf, rsf, 2, 6, 4);
	close_fd("revin denormalize", rdf, rd, 48, 2e-6);

	/* losses */
	int32_t cls[N];
	for (int r = 0; r < N; r++)
		cls[r] = r % 5;
	double l64[5], cp[N * 8];
	float cpf[N * 8];
	l64[0] = lkd_mse_forward(e, eg, NE) - lk_mse_forward(ef, egf, NE);
	l64[1] = lkd_mae_forward(e, eg, NE) - lk_mae_forward(ef, egf, NE);
	l64[2] = lkd_huber_forward(e, eg, NE, 1.0) - lk_huber_forward(ef, egf, NE, 1.0);
	l64[3] = lkd_crossentropy_forward(cp, e, cls, N, 8) - lk_crossentropy_forward(cpf, ef, cls, N, 8);
	l64[4] = lkd_sum_squares(e, NE) / NE - lk_sum_squares(ef, NE) / NE;
	for (int i = 0; i < 5; i++)
		ck_assert_msg(fabs(l64[i]) < 1e-6, "loss %d: float and double differ by %g", i, l64[i]);
	close_fd("crossentropy probs", cpf, cp, N * 8, 2e-6);

	lk_pool_destroy(pool);
	free(x), free(w), free(b), free(g), free(y), free(dx), free(dw), free(db);
	free(xf), free(wf), free(bf), free(gf), free(yf), free(dxf), free(dwf), free(dbf);
	free(lw), free(lb), free(ly), free(mean), free(rstd), free(lg), free(ldx), free(ldw);
	free(ldb), free(lwf), free(lbf), free(lyf), free(meanf), free(rstdf), free(lgf);
	free(ldxf), free(ldwf), free(ldbf);
	free(e), free(eg), free(ey), free(edx), free(ef), free(egf), free(eyf), free(edxf);
	free(qkv), free(ao), free(ap), free(ag), free(adq), free(as);
	free(qkvf), free(aof), free(apf), free(agf), free(adqf), free(asf);
	free(pos), free(px), free(posf), free(pxf);
	free(lay), free(rm), free(rs), free(rd), free(layf), free(rmf), free(rsf), free(rdf);
}
END_TEST

/* ================================================================== references */

START_TEST(gelu_reference)
{
	/* where 1 + erf is itself accurate (|x| ≤ 3: relative error < 1e-13) */
	static const double pts[] = {-3, -1.5, -1, -0.5, -1e-3, 0, 1e-3, 0.5, 1, 1.5, 3};
	enum { NP = sizeof pts / sizeof pts[0] };
	double y[NP];
	float xf[NP], yf[NP];
	for (int i = 0; i < NP; i++)
		xf[i] = (float)pts[i];
	lkd_gelu_forward(y, pts, NP, NULL);
	lk_gelu_forward(yf, xf, NP, NULL);
	for (int i = 0; i < NP; i++) {
		double ref = 0.5 * pts[i] * (1 + erf(pts[i] / sqrt(2.0)));
		/* double: 1e-13 relative, floor 1e-13; float: 1e-6 relative, floor 1e-9 */
		ck_assert_msg(fabs(y[i] - ref) <= 1e-13 * fmax(1, fabs(ref)),
		              "lkd_gelu(%g) = %.17g, reference %.17g", pts[i], y[i], ref);
		ck_assert_msg(fabs(yf[i] - ref) <= 1e-6 * fabs(ref) + 1e-9,
		              "lk_gelu(%g) = %.9g, reference %.17g", pts[i], yf[i], ref);
	}
}
END_TEST

START_TEST(linear_reference)
{
	enum { N = 7, I = 13, O = 11 };
	double *x = randn(N * I, 80, 1), *w = randn(O * I, 81, 1), *b = randn(O, 82, 1);
	double y[N * O], ref[N * O], y2[N * O];
	lkd_linear_forward(y, x, w, b, N, I, O, NULL);
	lkd_linear_forward(y2, x, w, NULL, N, I, O, NULL);
	for (int n = 0; n < N; n++)
		for (int o = 0; o < O; o++) {
			double s = 0;
			for (int i = 0; i < I; i++)
				s += x[n * I + i] * w[o * I + i];
			ref[n * O + o] = s + b[o];
			ck_assert(fabs(y2[n * O + o] - s) <= 1e-12 * fmax(1, fabs(s)));
		}
	close_dd("linear", y, ref, N * O, 1e-12);
	free(x), free(w), free(b);
}
END_TEST

START_TEST(layernorm_reference)
{
	enum { N = 5, D = 17 };
	double *x = randn(N * D, 83, 3), *w = randn(D, 84, 1), *b = randn(D, 85, 1);
	double y[N * D], mean[N], rstd[N];
	for (int i = 0; i < D; i++)
		x[i] += 100; /* a row far from 0 */
	lkd_layernorm_forward(y, mean, rstd, x, w, b, N, D, 1e-5, NULL);
	for (int r = 0; r < N; r++) {
		double m = 0, v = 0;
		for (int i = 0; i < D; i++)
			m += x[r * D + i];
		m /= D;
		for (int i = 0; i < D; i++)
			v += (x[r * D + i] - m) * (x[r * D + i] - m);
		v /= D;
		ck_assert(fabs(mean[r] - m) <= 1e-12 * fmax(1, fabs(m)));
		ck_assert(fabs(rstd[r] - 1 / sqrt(v + 1e-5)) <= 1e-12);
		for (int i = 0; i < D; i++) {
			double ref = (x[r * D + i] - m) / sqrt(v + 1e-5) * w[i] + b[i];
			ck_assert_msg(fabs(y[r * D + i] - ref) <= 1e-12 * fmax(1, fabs(ref)),
			              "layernorm[%d,%d] = %.17g, reference %.17g", r, i, y[r * D + i], ref);
		}
	}
	free(x), free(w), free(b);
}
END_TEST

/* softmax(QK^T/√dh) and its dropout-weighted sum of V, by a triple loop */
static void
attention_naive(double *out, double *probs, const double *qkv, int64_t B, int64_t T, int64_t D,
                int64_t H, double p, uint64_t seed, uint64_t stream)
{
	int64_t dh = D / H;
	double *s = xmalloc((size_t)T * sizeof *s);
	for (int64_t b = 0; b < B; b++)
		for (int64_t h = 0; h < H; h++)
			for (int64_t i = 0; i < T; i++) {
				double mx = -INFINITY, sum = 0;
				for (int64_t j = 0; j < T; j++) {
					double acc = 0;
					for (int64_t c = 0; c < dh; c++)
						acc += qkv[(b * T + i) * 3 * D + h * dh + c] *
						       qkv[(b * T + j) * 3 * D + D + h * dh + c];
					s[j] = acc / sqrt((double)dh);
					mx = fmax(mx, s[j]);
				}
				for (int64_t j = 0; j < T; j++)
					sum += exp(s[j] - mx);
				for (int64_t j = 0; j < T; j++) {
					s[j] = exp(s[j] - mx) / sum;
					probs[((b * H + h) * T + i) * T + j] = s[j];
				}
				for (int64_t c = 0; c < dh; c++) {
					double acc = 0;
					for (int64_t j = 0; j < T; j++) {
						uint64_t idx = (uint64_t)(((b * H + h) * T + i) * T + j);
						double pd = lk_rand_uniform(seed, stream, idx) >= p ? s[j] / (1 - p) : 0;
						acc += pd * qkv[(b * T + j) * 3 * D + 2 * D + h * dh + c];
					}
					out[(b * T + i) * D + h * dh + c] = acc;
				}
			}
	free(s);
}

static void
attention_reference_with(double p)
{
	enum { B = 2, T = 7, D = 12, H = 3 };
	int64_t nqkv = B * T * 3 * D, nout = B * T * D, np = B * H * T * T;
	double *qkv = randn_f(nqkv, 86, 1.5);
	double *out = zeros(nout), *probs = zeros(np), *rout = zeros(nout), *rprobs = zeros(np);
	float *qkvf = to_f(qkv, nqkv), *outf = zeros_f(nout), *probsf = zeros_f(np);
	attention_naive(rout, rprobs, qkv, B, T, D, H, p, SEED, 8);
	lkd_attention_forward(out, probs, qkv, B, T, D, H, p, SEED, 8, NULL);
	lk_attention_forward(outf, probsf, qkvf, B, T, D, H, p, SEED, 8, NULL);
	close_dd("attention probs", probs, rprobs, np, 1e-12);
	close_dd("attention out", out, rout, nout, 1e-12);
	close_fd("attention probs (float)", probsf, rprobs, np, 1e-5);
	close_fd("attention out (float)", outf, rout, nout, 1e-5);
	for (int64_t r = 0; r < B * H * T; r++) {
		double s = 0;
		for (int64_t j = 0; j < T; j++)
			s += probs[r * T + j];
		ck_assert(fabs(s - 1) < 1e-12);
	}
	free(qkv), free(out), free(probs), free(rout), free(rprobs), free(qkvf), free(outf);
	free(probsf);
}

/* The optimized attention (transposed copies, register tiles, a mask
 * buffer) against its plain variant: the same bits, float and double, with
 * and without dropout, on sizes with full tiles and ragged edges. */
START_TEST(attention_plain_vs_tiled)
{
	enum { B = 2, T = 21, D = 64, H = 2 };
	int64_t nqkv = B * T * 3 * D, nout = B * T * D, np = B * H * T * T;
	double *qkv = randn(nqkv, 87, 1), *g = randn(nout, 88, 1);
	float *qkvf = to_f(qkv, nqkv), *gf = to_f(g, nout);
	lk_pool *pool = lk_pool_create(2);
	for (int k = 0; k < 2; k++) {
		double p = k ? 0.2 : 0;
		double *o[2], *pr[2], *dq[2], *sc = zeros(np);
		float *of[2], *prf[2], *dqf[2], *scf = zeros_f(np);
		for (int plain = 0; plain < 2; plain++) {
			lki_attention_plain = plain;
			o[plain] = zeros(nout), pr[plain] = zeros(np), dq[plain] = zeros(nqkv);
			of[plain] = zeros_f(nout), prf[plain] = zeros_f(np), dqf[plain] = zeros_f(nqkv);
			lkd_attention_forward(o[plain], pr[plain], qkv, B, T, D, H, p, SEED, 2, pool);
			lkd_attention_backward(dq[plain], sc, g, qkv, pr[plain], B, T, D, H, p, SEED, 2,
			                       pool);
			lk_attention_forward(of[plain], prf[plain], qkvf, B, T, D, H, p, SEED, 2, pool);
			lk_attention_backward(dqf[plain], scf, gf, qkvf, prf[plain], B, T, D, H, p, SEED,
			                      2, pool);
		}
		lki_attention_plain = 0;
		ck_assert(memcmp(o[0], o[1], (size_t)nout * sizeof(double)) == 0);
		ck_assert(memcmp(pr[0], pr[1], (size_t)np * sizeof(double)) == 0);
		ck_assert(memcmp(dq[0], dq[1], (size_t)nqkv * sizeof(double)) == 0);
		ck_assert(memcmp(of[0], of[1], (size_t)nout * sizeof(float)) == 0);
		ck_assert(memcmp(prf[0], prf[1], (size_t)np * sizeof(float)) == 0);
		ck_assert(memcmp(dqf[0], dqf[1], (size_t)nqkv * sizeof(float)) == 0);
		for (int i = 0; i < 2; i++)
			free(o[i]), free(pr[i]), free(dq[i]), free(of[i]), free(prf[i]), free(dqf[i]);
		free(sc), free(scf);
	}
	lk_pool_destroy(pool);
	free(qkv), free(g), free(qkvf), free(gf);
}
END_TEST

START_TEST(attention_reference)
{
	attention_reference_with(0);
	attention_reference_with(0.3);
}
END_TEST

START_TEST(adamw_reference)
{
	enum { N = 10 };
	const double lr = 1e-2, b1 = 0.9, b2 = 0.98, eps = 1e-8, wd = 0.1;
	double *p = randn(N, 90, 1), m[N] = {0}, v[N] = {0};
	double rp[N], rm[N] = {0}, rv[N] = {0};
	float pf[N], mf[N] = {0}, vf[N] = {0};
	memcpy(rp, p, sizeof rp);
	for (int i = 0; i < N; i++)
		pf[i] = (float)p[i];
	for (int t = 1; t <= 3; t++) {
		double *g = randn(N, 91 + (uint64_t)t, 1);
		float gf[N];
		for (int i = 0; i < N; i++)
			gf[i] = (float)g[i];
		g[0] = 0; /* a zero gradient: only the decay and the momentum move it */
		gf[0] = 0;
		lkd_adamw_update(p, g, m, v, N, lr, b1, b2, eps, wd, t, NULL);
		lk_adamw_update(pf, gf, mf, vf, N, lr, b1, b2, eps, wd, t, NULL);
		for (int i = 0; i < N; i++) {
			rp[i] -= lr * wd * rp[i];
			rm[i] = b1 * rm[i] + (1 - b1) * g[i];
			rv[i] = b2 * rv[i] + (1 - b2) * g[i] * g[i];
			double mhat = rm[i] / (1 - pow(b1, t)), vhat = rv[i] / (1 - pow(b2, t));
			rp[i] -= lr * mhat / (sqrt(vhat) + eps);
		}
		free(g);
	}
	close_dd("adamw param", p, rp, N, 1e-12);
	close_dd("adamw m", m, rm, N, 1e-12);
	close_dd("adamw v", v, rv, N, 1e-12);
	close_fd("adamw param (float)", pf, rp, N, 1e-6);
	free(p);
}
END_TEST

START_TEST(clip_grad_norm_reference)
{
	float a[3] = {3, 0, 4}, b[2] = {12, 0}; /* total norm 13 */
	float *grads[2] = {a, b};
	int64_t sizes[2] = {3, 2};
	double total = lk_clip_grad_norm(grads, sizes, 2, 26);
	ck_assert(fabs(total - 13) < 1e-12);
	ck_assert(a[0] == 3 && a[2] == 4 && b[0] == 12); /* below max: untouched */
	total = lk_clip_grad_norm(grads, sizes, 2, 13); /* coef 13/(13+1e-6) < 1 */
	ck_assert(fabs(total - 13) < 1e-12);
	ck_assert(fabs(a[0] - 3 * 13 / (13 + 1e-6)) < 1e-6);
	total = lk_clip_grad_norm(grads, sizes, 2, 1);
	double coef = 1 / (total + 1e-6);
	ck_assert(fabs(total - 13 * 13 / (13 + 1e-6)) < 1e-5);
	double norm = sqrt((double)a[0] * a[0] + (double)a[2] * a[2] + (double)b[0] * b[0]);
	ck_assert_msg(fabs(norm - total * coef) < 1e-6, "norm after clipping %g", norm);
	ck_assert(fabs(b[0] - 12 * (13 / (13 + 1e-6)) * coef) < 1e-5);
	ck_assert(a[1] == 0 && b[1] == 0);
	ck_assert(lkd_sum_squares((const double[]){1, 2, 2}, 3) == 9);
}
END_TEST

START_TEST(sinusoidal_reference)
{
	enum { T = 9, D = 7 }; /* odd D: the last column is a sine */
	double pos[T * D];
	lkd_positions_sinusoidal(pos, T, D);
	for (int t = 0; t < T; t++)
		for (int i = 0; i < D; i++) {
			int k = i / 2 * 2;
			double angle = t / pow(10000.0, (double)k / D);
			double ref = i % 2 == 0 ? sin(angle) : cos(angle);
			ck_assert_msg(fabs(pos[t * D + i] - ref) < 1e-15, "pos[%d,%d] = %.17g, want %.17g",
			              t, i, pos[t * D + i], ref);
		}
	ck_assert(pos[0] == 0 && pos[1] == 1);
}
END_TEST

/* A labelled series: x[b, t, c] = 100b + 10t + c. */
START_TEST(layouts)
{
	enum { B = 2, L = 6, C = 3, P = 2 };
	double x[B * L * C], out[B * L * C], back[B * L * C];
	for (int b = 0; b < B; b++)
		for (int t = 0; t < L; t++)
			for (int c = 0; c < C; c++)
				x[(b * L + t) * C + c] = 100 * b + 10 * t + c;

	lkd_patchify(out, x, B, L, C, P);
	/* out[b, j, p·C + c] = x[b, jP + p, c] */
	for (int b = 0; b < B; b++)
		for (int j = 0; j < L / P; j++)
			for (int p = 0; p < P; p++)
				for (int c = 0; c < C; c++)
					ck_assert(out[(b * (L / P) + j) * P * C + p * C + c] ==
					          100 * b + 10 * (j * P + p) + c);
	ck_assert(out[1 * L * C + 1 * P * C + 1 * C + 2] == 100 + 30 + 2); /* b1, token 1, p1, c2 */

	lkd_channels_split(out, x, B, L, C);
	/* out[b·C + c, t] */
	for (int b = 0; b < B; b++)
		for (int c = 0; c < C; c++)
			for (int t = 0; t < L; t++)
				ck_assert(out[(b * C + c) * L + t] == 100 * b + 10 * t + c);
	ck_assert(out[4 * L + 5] == 100 + 50 + 1); /* sequence 4 = (b1, c1), t5 */

	lkd_channels_merge(back, out, B, L, C);
	ck_assert(memcmp(back, x, sizeof x) == 0);

	float xf[B * L * C], of[B * L * C];
	for (int i = 0; i < B * L * C; i++)
		xf[i] = (float)x[i];
	lk_channels_split(of, xf, B, L, C);
	for (int i = 0; i < B * L * C; i++)
		ck_assert(of[i] == (float)out[i]);
}
END_TEST

START_TEST(revin_reference)
{
	enum { B = 2, L = 8, C = 3 };
	double *x = randn(B * L * C, 95, 2), out[B * L * C], mean[B * C], sd[B * C], back[B * L * C];
	for (int i = 0; i < B * L * C; i++)
		x[i] += 5 * (i % C); /* per-channel offsets */
	lkd_revin_normalize(out, mean, sd, x, B, L, C, 1e-5);
	for (int b = 0; b < B; b++)
		for (int c = 0; c < C; c++) {
			double m = 0, v = 0, m2 = 0, v2 = 0;
			for (int t = 0; t < L; t++)
				m += x[(b * L + t) * C + c];
			m /= L;
			for (int t = 0; t < L; t++)
				v += (x[(b * L + t) * C + c] - m) * (x[(b * L + t) * C + c] - m);
			v /= L;
			ck_assert(fabs(mean[b * C + c] - m) < 1e-12);
			ck_assert(fabs(sd[b * C + c] - sqrt(v + 1e-5)) < 1e-12);
			for (int t = 0; t < L; t++) {
				m2 += out[(b * L + t) * C + c];
				v2 += out[(b * L + t) * C + c] * out[(b * L + t) * C + c];
			}
			ck_assert(fabs(m2 / L) < 1e-12);              /* normalized: mean 0 */
			ck_assert(fabs(v2 / L - v / (v + 1e-5)) < 1e-12); /* and variance ≈ 1 */
		}
	lkd_revin_denormalize(back, out, mean, sd, B, L, C);
	close_dd("revin round trip", back, x, B * L * C, 1e-12);
	free(x);
}
END_TEST

START_TEST(losses_reference)
{
	const double pred[4] = {1, -2, 0.5, 3}, target[4] = {0, 0, 1, 3};
	ck_assert(fabs(lkd_mse_forward(pred, target, 4) - (1 + 4 + 0.25 + 0) / 4) < 1e-15);
	ck_assert(fabs(lkd_mae_forward(pred, target, 4) - (1 + 2 + 0.5 + 0) / 4) < 1e-15);
	/* δ = 1: 0.5·1 (|e| = 1 is the linear branch: 1·(1 − 0.5)), 1·(2 − 0.5), 0.5·0.25, 0 */
	ck_assert(fabs(lkd_huber_forward(pred, target, 4, 1) - (0.5 + 1.5 + 0.125) / 4) < 1e-15);
	double d[4];
	lkd_mae_backward(d, pred, target, 4, 2);
	ck_assert(d[0] == 0.5 && d[1] == -0.5 && d[2] == -0.5 && d[3] == 0); /* sign(0) = 0 */
	lkd_huber_backward(d, pred, target, 4, 1, 4);
	ck_assert(d[0] == 1 && d[1] == -1 && d[2] == -0.5 && d[3] == 0);

	const double logits[6] = {1, 2, 3, -1, 0, 1000}; /* a large logit stays finite */
	const int32_t cls[2] = {2, 0};
	double probs[6];
	double loss = lkd_crossentropy_forward(probs, logits, cls, 2, 3);
	double z = exp(1) + exp(2) + exp(3);
	double ref = (-log(exp(3) / z) + 1001) / 2;
	ck_assert_msg(fabs(loss - ref) < 1e-12, "crossentropy %.17g, want %.17g", loss, ref);
	ck_assert(fabs(probs[0] - exp(1) / z) < 1e-15 && probs[5] == 1 && probs[3] == 0);
}
END_TEST

/* ================================================================== dropout */

START_TEST(dropout_statistics)
{
	enum { N = 1000000 };
	float *x = xmalloc(N * sizeof *x), *y = xmalloc(N * sizeof *y), *y2 = xmalloc(N * sizeof *y2);
	lk_pool *pool = lk_pool_create(2);
	for (int i = 0; i < N; i++)
		x[i] = 1 + (float)(i % 7);

	lk_dropout_forward(y, x, N, 0, SEED, 1, pool);
	ck_assert(memcmp(x, y, N * sizeof *x) == 0); /* p = 0 copies */

	static const double ps[] = {0.1, 0.5, 0.9};
	for (int k = 0; k < 3; k++) {
		double p = ps[k];
		int64_t kept = 0, misscaled = 0;
		lk_dropout_forward(y, x, N, p, SEED, 1, pool);
		for (int i = 0; i < N; i++) {
			if (y[i] != 0) {
				kept++;
				misscaled += y[i] != x[i] * (float)(1 / (1 - p)); /* kept values scaled */
			}
		}
		ck_assert_int_eq(misscaled, 0); /* (one assertion: Check writes one per call) */
		double frac = (double)kept / N;
		/* within 0.3 % of 1 − p (the standard error is ≤ 0.1 %) */
		ck_assert_msg(fabs(frac - (1 - p)) <= 0.003 * (1 - p), "p = %g: kept %.5f", p, frac);
		/* the mask is lk_rand_uniform(seed, stream, i) ≥ p, everywhere */
		int64_t wrong = 0;
		for (int i = 0; i < N; i++)
			wrong += (y[i] != 0) != (lk_rand_uniform(SEED, 1, (uint64_t)i) >= p);
		ck_assert_int_eq(wrong, 0);
	}
	/* same (seed, stream): same mask; another stream or seed: another */
	lk_dropout_forward(y, x, N, 0.5, SEED, 1, pool);
	lk_dropout_forward(y2, x, N, 0.5, SEED, 1, NULL);
	ck_assert(memcmp(y, y2, N * sizeof *y) == 0);
	lk_dropout_forward(y2, x, N, 0.5, SEED, 2, pool);
	int64_t differ = 0;
	for (int i = 0; i < N; i++)
		differ += (y[i] != 0) != (y2[i] != 0);
	ck_assert_msg(fabs((double)differ / N - 0.5) < 0.01, "streams differ at %lld", (long long)differ);
	lk_dropout_forward(y2, x, N, 0.5, SEED + 1, 1, pool);
	ck_assert(memcmp(y, y2, N * sizeof *y) != 0);

	/* backward regenerates the mask */
	float *dx = zeros_f(N);
	lk_dropout_backward(dx, x, N, 0.5, SEED, 1, pool);
	ck_assert(memcmp(dx, y, N * sizeof *y) == 0);
	lk_pool_destroy(pool);
	free(x), free(y), free(y2), free(dx);
}
END_TEST

/* ================================================================== determinism */

struct det_out {
	float *lin_y, *lin_dx, *lin_dw, *lin_db;
	float *ln_y, *ln_mean, *ln_rstd, *ln_dx, *ln_dw, *ln_db;
	float *ge_y, *ge_dx, *dr_y, *dr_dx;
	float *at_o, *at_p, *at_dq;
	float *ad_p, *ad_m, *ad_v;
};

enum {
	DN = 256, DI = 64, DO = 96,          /* linear: bias fill and db are threaded */
	LN = 512, LD = 64,                   /* layernorm */
	EN = 100000,                          /* gelu, dropout, adamw */
	AB = 4, AT = 32, AD = 64, AH = 4      /* attention */
};

/* Every threaded op, on sizes above the threshold that makes them use the
 * pool, from fixed inputs. */
static void
det_run(struct det_out *o, lk_pool *pool)
{
	double *xd = randn(DN * DI, 100, 1), *wd = randn(DO * DI, 101, 0.3);
	double *bd = randn(DO, 102, 1), *gd = randn(DN * DO, 103, 1);
	float *x = to_f(xd, DN * DI), *w = to_f(wd, DO * DI), *b = to_f(bd, DO);
	float *g = to_f(gd, DN * DO);
	o->lin_y = zeros_f(DN * DO);
	o->lin_dx = zeros_f(DN * DI);
	o->lin_dw = zeros_f(DO * DI);
	o->lin_db = zeros_f(DO);
	lk_linear_forward(o->lin_y, x, w, b, DN, DI, DO, pool);
	lk_linear_backward(o->lin_dx, o->lin_dw, o->lin_db, g, x, w, DN, DI, DO, pool);

	double *ld = randn(LN * LD, 104, 2), *lgd = randn(LN * LD, 107, 1);
	float *lx = to_f(ld, LN * LD), *lg = to_f(lgd, LN * LD);
	o->ln_y = zeros_f(LN * LD);
	o->ln_mean = zeros_f(LN);
	o->ln_rstd = zeros_f(LN);
	o->ln_dx = zeros_f(LN * LD);
	o->ln_dw = zeros_f(LD);
	o->ln_db = zeros_f(LD);
	lk_layernorm_forward(o->ln_y, o->ln_mean, o->ln_rstd, lx, x, b, LN, LD, 1e-5, pool);
	lk_layernorm_backward(o->ln_dx, o->ln_dw, o->ln_db, lg, lx, x, o->ln_mean, o->ln_rstd, LN,
	                      LD, pool);

	double *ed = randn(EN, 105, 2);
	float *e = to_f(ed, EN), *eg = to_f(ed + 1, EN - 1);
	o->ge_y = zeros_f(EN);
	o->ge_dx = zeros_f(EN);
	o->dr_y = zeros_f(EN);
	o->dr_dx = zeros_f(EN);
	lk_gelu_forward(o->ge_y, e, EN, pool);
	lk_gelu_backward(o->ge_dx, e, eg, EN - 1, pool);
	lk_dropout_forward(o->dr_y, e, EN, 0.2, SEED, 4, pool);
	lk_dropout_backward(o->dr_dx, eg, EN - 1, 0.2, SEED, 4, pool);

	int64_t nqkv = AB * AT * 3 * AD, nout = AB * AT * AD, np = AB * AH * AT * AT;
	double *qd = randn(nqkv, 106, 1);
	float *qkv = to_f(qd, nqkv), *ag = to_f(ed, nout), *scratch = zeros_f(np);
	o->at_o = zeros_f(nout);
	o->at_p = zeros_f(np);
	o->at_dq = zeros_f(nqkv);
	lk_attention_forward(o->at_o, o->at_p, qkv, AB, AT, AD, AH, 0.1, SEED, 6, pool);
	lk_attention_backward(o->at_dq, scratch, ag, qkv, o->at_p, AB, AT, AD, AH, 0.1, SEED, 6,
	                      pool);

	o->ad_p = to_f(ed, EN);
	o->ad_m = zeros_f(EN);
	o->ad_v = zeros_f(EN);
	for (int t = 1; t <= 2; t++)
		lk_adamw_update(o->ad_p, eg, o->ad_m, o->ad_v, EN - 1, 1e-3, 0.9, 0.999, 1e-8, 0.01, t,
		                pool);

	free(xd), free(wd), free(bd), free(gd), free(x), free(w), free(b), free(g);
	free(ld), free(lgd), free(lx), free(lg), free(ed), free(e), free(eg), free(qd), free(qkv), free(ag);
	free(scratch);
}

static void
det_free(struct det_out *o)
{
	float **f = (float **)o;
	for (size_t i = 0; i < sizeof *o / sizeof(float *); i++)
		free(f[i]);
}

#define SAME(a, b, field, n)                                                                 \
	ck_assert_msg(memcmp((a).field, (b).field, (size_t)(n) * sizeof(float)) == 0,            \
	              "%s differs (%s)", #field, what)

/* Outputs of the ops whose threaded split never sums across chunks, so that
 * 1 and 2 threads must agree bit for bit: linear's db (split by column),
 * layernorm forward (by row) and backward (din by row, dw/db by column),
 * gelu and dropout (by element), attention (by batch·head), adamw (by
 * element).  Not compared across thread counts: linear's out, din and dw,
 * computed by OpenBLAS, whose split is its own. */
static void
same_all_but_blas(const struct det_out *a, const struct det_out *b, const char *what)
{
	SAME(*a, *b, lin_db, DO);
	SAME(*a, *b, ln_y, LN * LD);
	SAME(*a, *b, ln_mean, LN);
	SAME(*a, *b, ln_rstd, LN);
	SAME(*a, *b, ln_dx, LN * LD);
	SAME(*a, *b, ln_dw, LD);
	SAME(*a, *b, ln_db, LD);
	SAME(*a, *b, ge_y, EN);
	SAME(*a, *b, ge_dx, EN);
	SAME(*a, *b, dr_y, EN);
	SAME(*a, *b, dr_dx, EN);
	SAME(*a, *b, at_o, AB * AT * AD);
	SAME(*a, *b, at_p, AB * AH * AT * AT);
	SAME(*a, *b, at_dq, AB * AT * 3 * AD);
	SAME(*a, *b, ad_p, EN);
	SAME(*a, *b, ad_m, EN);
	SAME(*a, *b, ad_v, EN);
}

static void
same_blas(const struct det_out *a, const struct det_out *b, const char *what)
{
	SAME(*a, *b, lin_y, DN * DO);
	SAME(*a, *b, lin_dx, DN * DI);
	SAME(*a, *b, lin_dw, DO * DI);
}

START_TEST(determinism)
{
	struct det_out r2a, r2b, r1a, r1b, rn;
	lk_pool *p2 = lk_pool_create(2), *p1 = lk_pool_create(1);
	ck_assert_ptr_nonnull(p2);
	ck_assert_ptr_nonnull(p1);

	det_run(&r2a, p2);
	det_run(&r2b, p2);
	same_all_but_blas(&r2a, &r2b, "2 threads, run to run");
	same_blas(&r2a, &r2b, "2 threads, run to run");

	det_run(&r1a, p1);
	det_run(&r1b, p1);
	same_all_but_blas(&r1a, &r1b, "1 thread, run to run");
	same_blas(&r1a, &r1b, "1 thread, run to run");

	det_run(&rn, NULL);
	same_all_but_blas(&r1a, &rn, "pool of 1 vs no pool");
	same_all_but_blas(&r2a, &r1a, "2 threads vs 1");

	/* and the products agree closely whatever the count */
	for (int64_t i = 0; i < DN * DO; i++)
		ck_assert(fabsf(r2a.lin_y[i] - r1a.lin_y[i]) <= 1e-5f * (1 + fabsf(r1a.lin_y[i])));

	det_free(&r2a), det_free(&r2b), det_free(&r1a), det_free(&r1b), det_free(&rn);
	lk_pool_destroy(p2);
	lk_pool_destroy(p1);
}
END_TEST

/* ================================================================== the pool */

struct chunk_log {
	int64_t begin[8], end[8];
	pthread_t who[8];
	int calls;
	pthread_mutex_t mtx;
	int64_t *hits;
	lk_pool *pool;
};

static void
log_chunk(void *arg, int64_t begin, int64_t end)
{
	struct chunk_log *c = arg;
	pthread_mutex_lock(&c->mtx);
	c->begin[c->calls] = begin;
	c->end[c->calls] = end;
	c->who[c->calls] = pthread_self();
	c->calls++;
	pthread_mutex_unlock(&c->mtx);
	for (int64_t i = begin; i < end; i++)
		c->hits[i]++;
}

static void
count_range(void *arg, int64_t begin, int64_t end)
{
	int64_t *hits = arg;
	for (int64_t i = begin; i < end; i++)
		hits[i]++;
}

static void
nested_range(void *arg, int64_t begin, int64_t end)
{
	struct chunk_log *c = arg;
	for (int64_t i = begin; i < end; i++)
		lk_parallel_for(c->pool, 10, count_range, c->hits + i * 10);
}

START_TEST(pool_split)
{
	static const int sizes[] = {1, 2, 3};
	for (int s = 0; s < 3; s++) {
		int threads = sizes[s];
		lk_pool *pool = lk_pool_create(threads);
		int64_t hits[103] = {0};
		struct chunk_log c = {.hits = hits};
		pthread_mutex_init(&c.mtx, NULL);
		ck_assert_int_eq(lk_pool_threads(pool), threads);
		lk_parallel_for(pool, 103, log_chunk, &c);
		ck_assert_int_eq(c.calls, threads);
		for (int i = 0; i < 103; i++)
			ck_assert_int_eq(hits[i], 1);
		for (int k = 0; k < c.calls; k++) {
			/* chunk i = [i·n/T, (i+1)·n/T); chunk 0 runs on the caller */
			int64_t i = c.begin[k] * threads / 103;
			while (i * 103 / threads < c.begin[k])
				i++;
			ck_assert_int_eq(c.begin[k], i * 103 / threads);
			ck_assert_int_eq(c.end[k], (i + 1) * 103 / threads);
			if (i == 0)
				ck_assert(pthread_equal(c.who[k], pthread_self()));
			else
				ck_assert(!pthread_equal(c.who[k], pthread_self()));
		}
		/* fewer items than threads: empty chunks are skipped */
		c.calls = 0;
		memset(hits, 0, sizeof hits);
		lk_parallel_for(pool, 1, log_chunk, &c);
		ck_assert_int_eq(c.calls, 1);
		ck_assert_int_eq(hits[0], 1);
		lk_parallel_for(pool, 0, log_chunk, &c);
		ck_assert_int_eq(c.calls, 1);
		pthread_mutex_destroy(&c.mtx);
		lk_pool_destroy(pool);
	}
	ck_assert_int_eq(lk_pool_threads(NULL), 1);
	lk_pool_destroy(NULL);
}
END_TEST

START_TEST(pool_many_calls_and_nesting)
{
	lk_pool *pool = lk_pool_create(2);
	int64_t *hits = calloc(1000, sizeof *hits);
	/* persistent workers: many short calls in a row */
	for (int k = 0; k < 20000; k++)
		lk_parallel_for(pool, 1000, count_range, hits);
	for (int i = 0; i < 1000; i++)
		ck_assert_int_eq(hits[i], 20000);
	/* a parallel_for inside a chunk runs inline instead of deadlocking */
	memset(hits, 0, 1000 * sizeof *hits);
	struct chunk_log c = {.hits = hits, .pool = pool};
	lk_parallel_for(pool, 100, nested_range, &c);
	for (int i = 0; i < 1000; i++)
		ck_assert_int_eq(hits[i], 1);
	lk_pool_destroy(pool);
	free(hits);
}
END_TEST

/* ================================================================== random numbers */

START_TEST(rng_philox_known_answers)
{
	/* Random123's kat_vectors for philox4x32_10: (ctr, key) → out; our
	 * mapping puts key = seed and ctr = (counter, stream), and
	 * lk_rand_u64 = out[1]:out[0]. */
	ck_assert_uint_eq(lk_rand_u64(0, 0, 0), 0xe169c58d6627e8d5ull);
	ck_assert_uint_eq(lk_rand_u64(0xffffffffffffffffull, 0xffffffffffffffffull,
	                              0xffffffffffffffffull),
	                  0x41c83b0e408f276dull);
	ck_assert_uint_eq(lk_rand_u64(0x299f31d0a4093822ull, 0x0370734413198a2eull,
	                              0x85a308d3243f6a88ull),
	                  0x94fdccebd16cfe09ull);
}
END_TEST

START_TEST(rng_statistics)
{
	enum { N = 1000000 };
	double s = 0, s2 = 0, n1 = 0, n2 = 0;
	float lo = 1, hi = 0;
	int outside = 0;
	for (int i = 0; i < N; i++) {
		float u = lk_rand_uniform(SEED, 3, (uint64_t)i);
		outside += !(u >= 0 && u < 1);
		lo = u < lo ? u : lo;
		hi = u > hi ? u : hi;
		s += u;
		s2 += (double)u * u;
		double z = lk_rand_normal(SEED, 3, (uint64_t)i);
		n1 += z;
		n2 += z * z;
	}
	ck_assert_int_eq(outside, 0);
	double mean = s / N, var = s2 / N - mean * mean;
	/* standard errors: mean 2.9e-4, variance 7.5e-5 */
	ck_assert_msg(fabs(mean - 0.5) < 2e-3, "uniform mean %g", mean);
	ck_assert_msg(fabs(var - 1.0 / 12) < 1e-3, "uniform variance %g", var);
	ck_assert(lo < 1e-5 && hi > 1 - 1e-5);
	double zm = n1 / N, zv = n2 / N - zm * zm;
	/* standard errors: mean 1e-3, variance 1.4e-3 */
	ck_assert_msg(fabs(zm) < 5e-3, "normal mean %g", zm);
	ck_assert_msg(fabs(zv - 1) < 7e-3, "normal variance %g", zv);

	/* a pure function of its inputs; streams, seeds and counters all matter */
	ck_assert_uint_eq(lk_rand_u64(1, 2, 3), lk_rand_u64(1, 2, 3));
	ck_assert_uint_ne(lk_rand_u64(1, 2, 3), lk_rand_u64(1, 3, 3));
	ck_assert_uint_ne(lk_rand_u64(1, 2, 3), lk_rand_u64(2, 2, 3));
	ck_assert_uint_ne(lk_rand_u64(1, 2, 3), lk_rand_u64(1, 2, 4));
	/* four uniforms per block: counter c is word c mod 4 of block c/4 */
	for (uint64_t c = 0; c < 8; c++) {
		uint64_t w0 = lk_rand_u64(1, 2, c / 4), w1 = lk_rand_u64(1, 2, c / 4) >> 32;
		ck_assert(c % 4 >= 2 || lk_rand_uniform(1, 2, c) ==
		                            (float)((c % 2 ? w1 : w0) >> 8 & 0xffffff) * 0x1p-24f);
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("kernels");
	TCase *fd = tcase_create("finite-differences");
	TCase *ref = tcase_create("references");
	TCase *run = tcase_create("runtime");

	tcase_add_test(fd, fd_linear);
	tcase_add_test(fd, fd_layernorm);
	tcase_add_test(fd, fd_gelu);
	tcase_add_test(fd, fd_dropout);
	tcase_add_test(fd, fd_residual);
	tcase_add_test(fd, fd_attention);
	tcase_add_test(fd, fd_attention_dropout);
	tcase_add_test(fd, fd_positions);
	tcase_add_test(fd, fd_revin_denormalize);
	tcase_add_test(fd, fd_losses);
	suite_add_tcase(s, fd);

	tcase_add_test(ref, float_matches_double);
	tcase_add_test(ref, gelu_reference);
	tcase_add_test(ref, linear_reference);
	tcase_add_test(ref, layernorm_reference);
	tcase_add_test(ref, attention_reference);
	tcase_add_test(ref, attention_plain_vs_tiled);
	tcase_add_test(ref, adamw_reference);
	tcase_add_test(ref, clip_grad_norm_reference);
	tcase_add_test(ref, sinusoidal_reference);
	tcase_add_test(ref, layouts);
	tcase_add_test(ref, revin_reference);
	tcase_add_test(ref, losses_reference);
	suite_add_tcase(s, ref);

	tcase_add_test(run, dropout_statistics);
	tcase_add_test(run, determinism);
	tcase_add_test(run, pool_split);
	tcase_add_test(run, pool_many_calls_and_nesting);
	tcase_add_test(run, rng_philox_known_answers);
	tcase_add_test(run, rng_statistics);
	suite_add_tcase(s, run);
	/* generous: valgrind and sanitizer runs are many times slower */
	tcase_set_timeout(fd, 300);
	tcase_set_timeout(ref, 300);
	tcase_set_timeout(run, 300);
	return tu_run(s);
}

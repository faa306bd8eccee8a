/* The four head plugins (forecast, regression, classification, anomaly),
 * each loaded as a real module through the host loader and driven through
 * its ops table as the compute plugin drives it:
 *
 * - configure: the layout for several shapes, and the refusals;
 * - forward against a naive computation in double (with and without the
 *   head's dropout), loss and dout against their formulas;
 * - backward against central finite differences of loss(forward(·)) with
 *   respect to enc and every trained parameter, in float: for each tensor
 *   |fd − analytic| ≤ 1e-3 · max|analytic| + 1e-2 · |analytic| (the
 *   kernels themselves are checked in double in tests/unit/kernels);
 *   gradients accumulate (a second backward doubles them exactly);
 * - metrics on hand-made results and truth with exact expected values, and
 *   the head's reading of them (headline names, detail tables) naming
 *   metrics it reports;
 * - predict: softmax rows sum to 1, the anomaly score is the MSE.
 *
 * Every buffer is allocated at its exact size, and the activations with a
 * guard zone that must stay untouched, so an act_floats too small fails
 * here (and under valgrind / ASan). */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/loom.h>

#include "host/core/conf.h"
#include "host/core/log.h"
#include "host/core/plugins.h"
#include "host/core/util.h"
#include "kernels/kernels.h"
#include "testutil.h"

#define ASSERT_LOG(needle)                                                                 \
	ck_assert_msg(tu_log_has(needle), "expected \"%s\" in the log:\n%s", (needle),         \
	              tu_log_text())

/* ------------------------------------------------------------------ the plugin */

static struct {
	tu_plugin p;
	const loom_head_ops *ops;
	void *ctx;
} H;

static void
head_open(const char *module)
{
	char *err = NULL;
	int rv;

	memset(&H, 0, sizeof H);
	rv = tu_plugin_open(&H.p, module, "h", NULL, "heads.conf", &err);
	ck_assert_msg(rv == 0, "cannot start %s: %s", module, err ? err : "?");
	ck_assert_uint_eq(H.p.ins->kind, LOOM_KIND_HEAD);
	H.ops = H.p.ins->desc->ops;
	H.ctx = H.p.ins->ctx;
	ck_assert_ptr_nonnull(H.ops);
	tu_log_capture();
}

static void
head_close(void)
{
	tu_log_stop();
	tu_plugin_close(&H.p);
	memset(&H, 0, sizeof H);
}

static void setup_forecast(void) { head_open("head-forecast"); }
static void setup_regression(void) { head_open("head-regression"); }
static void setup_classification(void) { head_open("head-classification"); }
static void setup_anomaly(void) { head_open("head-anomaly"); }

/* ------------------------------------------------------------------ a model */

static uint64_t rng = 1;

static void
rng_seed(uint64_t seed)
{
	rng = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
}

/* Uniform in [-1, 1). */
static double
urand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static loom_head_shape
mk_shape(uint32_t max_seq, uint32_t tokens, uint32_t d_model, const char *options)
{
	loom_head_shape s;
	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	s.max_sequences = max_seq;
	s.tokens = tokens;
	s.d_model = d_model;
	s.channels = 1;
	s.patch = 4;
	s.context = tokens * 4;
	s.horizon = 1;
	s.targets = 1;
	s.options = options;
	return s;
}

#define GUARD 64
#define GUARD_VALUE 1.5e30f

typedef struct mdl {
	loom_head_layout lay;
	uint32_t max_seq, S;
	int64_t in;
	float *p[LOOM_HEAD_MAX_PARAMS], *g[LOOM_HEAD_MAX_PARAMS];
	int64_t numel[LOOM_HEAD_MAX_PARAMS];
	float *acts;
	float *enc, *denc, *out, *dout, *target;
} mdl;

static int
configure(const loom_head_shape *s, loom_head_layout *lay)
{
	memset(lay, 0, sizeof *lay);
	return H.ops->configure(H.ctx, s, lay);
}

static float *
floats(int64_t n)
{
	float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
	ck_assert_ptr_nonnull(p);
	for (int64_t i = 0; i < n; i++)
		p[i] = 0;
	return p;
}

/* Configure with s and allocate every buffer for s.max_sequences
 * sequences; calls run on S of them.  Parameters are drawn as PyTorch's
 * nn.Linear draws them, enc in [-1, 1), targets in [-1.5, 1.5) (class
 * indices for classification). */
static void
mdl_setup(mdl *m, const loom_head_shape *s, uint32_t S, uint64_t seed)
{
	const loom_head_layout *l;
	int rv;

	memset(m, 0, sizeof *m);
	rv = configure(s, &m->lay);
	ck_assert_msg(rv == 0, "configure failed (%s):\n%s", loom_errname(rv), tu_log_text());
	l = &m->lay;
	m->max_seq = s->max_sequences;
	m->S = S;
	m->in = (int64_t)s->tokens * s->d_model;
	rng_seed(seed);
	for (uint32_t i = 0; i < l->n_params; i++) {
		const loom_param_spec *ps = &l->params[i];
		int64_t n = 1;
		for (uint32_t d = 0; d < ps->ndim; d++)
			n *= ps->dims[d];
		m->numel[i] = n;
		m->p[i] = floats(n);
		m->g[i] = floats(n);
		for (int64_t k = 0; k < n; k++) {
			if (ps->init == LOOM_INIT_FAN_IN)
				m->p[i][k] = (float)(urand() / sqrt((double)ps->fan_in));
		}
	}
	m->acts = floats((int64_t)l->act_floats + GUARD);
	for (int i = 0; i < GUARD; i++)
		m->acts[l->act_floats + (size_t)i] = GUARD_VALUE;
	m->enc = floats(m->max_seq * m->in);
	m->denc = floats(m->max_seq * m->in);
	m->out = floats((int64_t)m->max_seq * l->out_dim);
	m->dout = floats((int64_t)m->max_seq * l->out_dim);
	m->target = floats((int64_t)m->max_seq * l->target_dim);
	for (int64_t i = 0; i < m->max_seq * m->in; i++)
		m->enc[i] = (float)urand();
	for (int64_t i = 0; i < (int64_t)m->max_seq * l->target_dim; i++)
		m->target[i] = (float)(1.5 * urand());
	if (s->classes > 0) {
		for (uint32_t i = 0; i < m->max_seq; i++)
			m->target[i] = (float)((i * 7 + 3) % s->classes);
	}
}

static void
mdl_check_guard(const mdl *m)
{
	for (int i = 0; i < GUARD; i++)
		ck_assert_msg(m->acts[m->lay.act_floats + (size_t)i] == GUARD_VALUE,
		              "the head wrote past its act_floats (%zu) at +%d", m->lay.act_floats, i);
}

static void
mdl_free(mdl *m)
{
	mdl_check_guard(m);
	for (uint32_t i = 0; i < m->lay.n_params; i++) {
		free(m->p[i]);
		free(m->g[i]);
	}
	free(m->acts);
	free(m->enc);
	free(m->denc);
	free(m->out);
	free(m->dout);
	free(m->target);
	memset(m, 0, sizeof *m);
}

static loom_head_io
mdl_io(mdl *m, int training, uint64_t seed)
{
	loom_head_io io;
	memset(&io, 0, sizeof io);
	io.size = sizeof io;
	io.sequences = m->S;
	io.threads = 1;
	io.training = (uint32_t)training;
	io.params = m->p;
	io.grads = m->g;
	io.acts = m->acts;
	io.enc = m->enc;
	io.denc = m->denc;
	io.out = m->out;
	io.dout = m->dout;
	io.target = m->target;
	io.seed = seed;
	return io;
}

static void
mdl_forward(mdl *m, int training, uint64_t seed)
{
	loom_head_io io = mdl_io(m, training, seed);
	int rv = H.ops->forward(H.ctx, &io);
	ck_assert_msg(rv == 0, "forward: %s\n%s", loom_errname(rv), tu_log_text());
}

static double
mdl_loss(mdl *m, int training, uint64_t seed)
{
	loom_head_io io = mdl_io(m, training, seed);
	double loss = NAN;
	int rv;
	mdl_forward(m, training, seed);
	rv = H.ops->loss(H.ctx, &io, &loss);
	ck_assert_msg(rv == 0, "loss: %s\n%s", loom_errname(rv), tu_log_text());
	return loss;
}

static void
mdl_backward(mdl *m, int training, uint64_t seed)
{
	loom_head_io io = mdl_io(m, training, seed);
	int rv = H.ops->backward(H.ctx, &io);
	ck_assert_msg(rv == 0, "backward: %s\n%s", loom_errname(rv), tu_log_text());
}

/* out = dropout(enc) · W^T + b in double; abs = Σ |terms| per output (for
 * the float tolerance). */
static void
naive_forward(const mdl *m, int training, double p, uint64_t seed, double *out, double *abs)
{
	uint32_t od = m->lay.out_dim;
	const float *w = m->p[0], *b = m->p[1];

	for (uint32_t s = 0; s < m->S; s++) {
		for (uint32_t o = 0; o < od; o++) {
			double acc = b[o], a = fabs((double)b[o]);
			for (int64_t i = 0; i < m->in; i++) {
				int64_t k = (int64_t)s * m->in + i;
				double x = m->enc[k];
				if (training && p > 0)
					x = lk_rand_uniform(seed, 0, (uint64_t)k) >= p ? x / (1.0 - p) : 0.0;
				acc += x * w[(int64_t)o * m->in + i];
				a += fabs(x * w[(int64_t)o * m->in + i]);
			}
			out[s * od + o] = acc;
			abs[s * od + o] = a;
		}
	}
}

static void
check_forward(mdl *m, int training, double p, uint64_t seed)
{
	size_t n = (size_t)m->S * m->lay.out_dim;
	double *want = malloc(n * sizeof *want), *abs = malloc(n * sizeof *abs);

	mdl_forward(m, training, seed);
	naive_forward(m, training, p, seed, want, abs);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(fabs(m->out[i] - want[i]) <= 1e-5 * abs[i] + 1e-7,
		              "out[%zu] = %.9g, naive %.9g (training %d)", i, (double)m->out[i],
		              want[i], training);
	free(want);
	free(abs);
}

/* ------------------------------------------------------------------ finite differences */

/* Up to 128 distinct indices spread over [0, n), all of them when n ≤ 160. */
static size_t
sample(int64_t n, int64_t *idx)
{
	if (n <= 160) {
		for (int64_t i = 0; i < n; i++)
			idx[i] = i;
		return (size_t)n;
	}
	for (int64_t k = 0; k < 128; k++)
		idx[k] = k * (n / 128) + (k * 5) % (n / 128);
	return 128;
}

static void
fd_tensor(mdl *m, const char *name, float *x, const float *an, int64_t n, int training,
          uint64_t seed, double eps)
{
	int64_t idx[160];
	size_t ns = sample(n, idx);
	double gmax = 0;

	for (int64_t i = 0; i < n; i++)
		gmax = fmax(gmax, fabs(an[i]));
	ck_assert_msg(gmax > 0, "%s: the analytic gradient is all zero", name);
	ck_assert_uint_ge(ns, (size_t)(n < 100 ? n : 100));
	for (size_t k = 0; k < ns; k++) {
		int64_t i = idx[k];
		float v = x[i], hp = (float)(v + eps), hm = (float)(v - eps);
		double lp, lm, fd, tol;
		x[i] = hp;
		lp = mdl_loss(m, training, seed);
		x[i] = hm;
		lm = mdl_loss(m, training, seed);
		x[i] = v;
		fd = (lp - lm) / ((double)hp - (double)hm);
		tol = 1e-3 * gmax + 1e-2 * fabs(an[i]);
		ck_assert_msg(fabs(fd - an[i]) <= tol,
		              "d loss / d %s[%lld]: finite difference %.8g, backward %.8g (tolerance "
		              "%.3g, training %d)",
		              name, (long long)i, fd, (double)an[i], tol, training);
	}
}

/* g must be 2·a: a second backward added to the first. */
static void
assert_doubled(const char *name, const float *g, const float *a, int64_t n)
{
	double amax = 0;
	for (int64_t k = 0; k < n; k++)
		amax = fmax(amax, fabs(a[k]));
	for (int64_t k = 0; k < n; k++)
		ck_assert_msg(fabs(g[k] - 2.0 * a[k]) <= 1e-5 * fabs(a[k]) + 1e-6 * amax,
		              "d %s[%lld] does not accumulate: %.9g after two backward passes, %.9g "
		              "after one",
		              name, (long long)k, (double)g[k], (double)a[k]);
}

/* Backward against finite differences for enc and every trained parameter;
 * then a second backward must double every gradient (accumulation). */
static void
check_backward(mdl *m, int training, uint64_t seed, double eps)
{
	int64_t nenc = (int64_t)m->S * m->in;
	float *an[LOOM_HEAD_MAX_PARAMS], *aenc = floats(nenc);

	for (uint32_t i = 0; i < m->lay.n_params; i++)
		memset(m->g[i], 0, (size_t)m->numel[i] * sizeof(float));
	memset(m->denc, 0, (size_t)nenc * sizeof(float));
	mdl_loss(m, training, seed);
	mdl_backward(m, training, seed);
	memcpy(aenc, m->denc, (size_t)nenc * sizeof(float));
	for (uint32_t i = 0; i < m->lay.n_params; i++) {
		an[i] = floats(m->numel[i]);
		memcpy(an[i], m->g[i], (size_t)m->numel[i] * sizeof(float));
	}

	/* accumulation: the same backward again adds the same values (up to
	 * the rounding of the addition inside the matrix products) */
	mdl_backward(m, training, seed);
	assert_doubled("denc", m->denc, aenc, nenc);
	for (uint32_t i = 0; i < m->lay.n_params; i++)
		assert_doubled(m->lay.params[i].name, m->g[i], an[i], m->numel[i]);

	fd_tensor(m, "enc", m->enc, aenc, nenc, training, seed, eps);
	for (uint32_t i = 0; i < m->lay.n_params; i++) {
		if (m->lay.params[i].flags & LOOM_PARAM_BUFFER) {
			for (int64_t k = 0; k < m->numel[i]; k++)
				ck_assert_msg(an[i][k] == 0, "buffer %s got a gradient",
				              m->lay.params[i].name);
			continue;
		}
		fd_tensor(m, m->lay.params[i].name, m->p[i], an[i], m->numel[i], training, seed, eps);
	}
	for (uint32_t i = 0; i < m->lay.n_params; i++)
		free(an[i]);
	free(aenc);
	mdl_check_guard(m);
}

/* ------------------------------------------------------------------ metrics */

typedef struct metric {
	char name[96];
	double value;
} metric;

typedef struct metrics {
	metric m[256];
	int n;
} metrics;

static int
collect(void *arg, const char *name, double value)
{
	metrics *ms = arg;
	ck_assert_int_lt(ms->n, 256);
	for (int i = 0; i < ms->n; i++)
		ck_assert_msg(strcmp(ms->m[i].name, name) != 0, "metric %s reported twice", name);
	snprintf(ms->m[ms->n].name, sizeof ms->m[ms->n].name, "%s", name);
	ms->m[ms->n++].value = value;
	return 0;
}

static bool
mhas(const metrics *ms, const char *name)
{
	for (int i = 0; i < ms->n; i++)
		if (strcmp(ms->m[i].name, name) == 0)
			return true;
	return false;
}

static double
mget(const metrics *ms, const char *name)
{
	for (int i = 0; i < ms->n; i++)
		if (strcmp(ms->m[i].name, name) == 0)
			return ms->m[i].value;
	ck_abort_msg("no metric \"%s\"", name);
	return NAN;
}

#define ASSERT_METRIC(ms, name, want)                                                      \
	do {                                                                               \
		double got_ = mget((ms), (name)), want_ = (want);                             \
		ck_assert_msg(fabs(got_ - want_) <= 1e-12 * (1 + fabs(want_)),                  \
		              "%s = %.17g, expected %.17g", (name), got_, want_);               \
	} while (0)

#define ASSERT_METRIC_NAN(ms, name)                                                        \
	ck_assert_msg(isnan(mget((ms), (name))), "%s = %g, expected NaN", (name),             \
	              mget((ms), (name)))

/* metrics_new, add each batch, report, free. */
static void
run_metrics(metrics *ms, const float *results, const float *truth, const uint32_t *batches,
            int n_batches, uint32_t result_dim, uint32_t truth_dim)
{
	void *st = NULL;
	size_t r = 0, t = 0;

	memset(ms, 0, sizeof *ms);
	ck_assert_int_eq(H.ops->metrics_new(H.ctx, &st), 0);
	for (int b = 0; b < n_batches; b++) {
		ck_assert_int_eq(H.ops->metrics_add(H.ctx, st, results + r, truth + t, batches[b]), 0);
		r += (size_t)batches[b] * result_dim;
		t += (size_t)batches[b] * truth_dim;
	}
	ck_assert_int_eq(H.ops->metrics_report(H.ctx, st, collect, ms), 0);
	H.ops->metrics_free(H.ctx, st);
}

/* A table's cell template with "{row}" and "{column}" replaced. */
static void
expand(const char *tmpl, const char *row, const char *col, char *out, size_t cap)
{
	size_t n = 0;
	for (const char *p = tmpl; *p && n + 1 < cap;) {
		const char *with = NULL;
		if (strncmp(p, "{row}", 5) == 0)
			with = row, p += 5;
		else if (strncmp(p, "{column}", 8) == 0)
			with = col, p += 8;
		if (with == NULL) {
			out[n++] = *p++;
			continue;
		}
		n += (size_t)snprintf(out + n, cap - n, "%s", with);
	}
	out[n < cap ? n : cap - 1] = '\0';
}

/* The head's reading of its metrics (ABI 1.1) names what metrics_report
 * gave in ms: the headline starts with the compute plugin's "loss" and
 * names `want` (comma-separated, in order), each of them reported; every
 * cell of every table (rows and columns NULL: the classes) is a reported
 * metric; the tables are named `tables` (comma-separated). */
static void
assert_reading(const metrics *ms, const char *want, const char *tables,
               const char *const *classes, uint32_t k)
{
	char got[512] = "", name[256];
	size_t n = 0;

	ck_assert(LOOM_OPS_HAS(H.ops, headline));
	for (size_t i = 0; H.ops->headline[i]; i++) {
		const char *h = H.ops->headline[i];
		n += (size_t)snprintf(got + n, sizeof got - n, "%s%s", i ? "," : "", h);
		ck_assert_msg(strcmp(h, "loss") == 0 ? i == 0 : mhas(ms, h),
		              "headline \"%s\" is not reported", h);
	}
	ck_assert_str_eq(got, want);
	n = 0;
	got[0] = '\0';
	for (const loom_metric_table *t = LOOM_OPS_HAS(H.ops, tables) ? H.ops->tables : NULL;
	     t && t->name; t++) {
		const char *const *rows = t->rows ? t->rows : classes;
		const char *const *cols = t->columns ? t->columns : classes;
		uint32_t nr = 0, nc = 0;
		n += (size_t)snprintf(got + n, sizeof got - n, "%s%s", n ? "," : "", t->name);
		ck_assert_ptr_nonnull(t->title);
		ck_assert_ptr_nonnull(t->cell);
		while (t->rows ? rows[nr] != NULL : nr < k)
			nr++;
		while (t->columns ? cols[nc] != NULL : nc < k)
			nc++;
		for (uint32_t r = 0; r < nr; r++)
			for (uint32_t c = 0; c < nc; c++) {
				expand(t->cell, rows[r], cols[c], name, sizeof name);
				ck_assert_msg(mhas(ms, name), "table %s: cell \"%s\" is not reported",
				              t->name, name);
			}
	}
	ck_assert_str_eq(got, tables);
}

static void
assert_param(const loom_param_spec *p, const char *name, uint32_t ndim, uint32_t d0, uint32_t d1,
             uint32_t init, uint32_t fan_in, uint32_t flags)
{
	ck_assert_str_eq(p->name, name);
	ck_assert_uint_eq(p->ndim, ndim);
	ck_assert_uint_eq(p->dims[0], d0);
	if (ndim > 1)
		ck_assert_uint_eq(p->dims[1], d1);
	ck_assert_uint_eq(p->init, init);
	if (init == LOOM_INIT_FAN_IN)
		ck_assert_uint_eq(p->fan_in, fan_in);
	ck_assert_uint_eq(p->flags, flags);
}

/* configure must refuse s with LOOM_EINVAL and log needle. */
static void
assert_refused(const loom_head_shape *s, const char *needle)
{
	loom_head_layout lay;
	tu_log_capture();
	ck_assert_int_eq(configure(s, &lay), LOOM_EINVAL);
	ASSERT_LOG(needle);
}

/* ------------------------------------------------------------------ every head */

/* What every head shares: the descriptor, the block's refusals, calls
 * before configure, and a failed configure keeping the last good one. */
static void
common_checks(uint32_t task, const char *name, bool calibrates)
{
	loom_head_shape s = mk_shape(4, 5, 8, "{\"dropout\": 0}");
	loom_head_layout lay;
	loom_head_io io;
	void *st = NULL;
	double loss;
	mdl m;

	ck_assert_str_eq(H.p.ins->desc->name, name);
	ck_assert_uint_eq(H.p.ins->desc->kind, LOOM_KIND_HEAD);
	ck_assert_uint_eq(H.ops->task, task);
	/* configure keeps the shape in the instance: not safe to share */
	ck_assert_uint_eq(H.p.ins->desc->flags & LOOM_PLUGIN_THREAD_SAFE, 0);
	ck_assert_int_eq(LOOM_OPS_HAS(H.ops, calibrate), calibrates);

	/* before configure */
	memset(&io, 0, sizeof io);
	io.size = sizeof io;
	ck_assert_int_eq(H.ops->forward(H.ctx, &io), LOOM_ESTATE);
	ck_assert_int_eq(H.ops->loss(H.ctx, &io, &loss), LOOM_ESTATE);
	ck_assert_int_eq(H.ops->metrics_new(H.ctx, &st), LOOM_ESTATE);
	ASSERT_LOG("before configure");

	s.classes = 3;
	s.horizon = 2;
	s.targets = 2;
	s.context = 8;
	s.channels = 2;

	{
		loom_head_shape b = s;
		b.max_sequences = 0;
		assert_refused(&b, "max_sequences is 0");
		b = s;
		b.tokens = 0;
		assert_refused(&b, "tokens is 0");
		b = s;
		b.d_model = 0;
		assert_refused(&b, "d_model is 0");
		b = s;
		b.tokens = 1u << 16;
		b.d_model = 1u << 16;
		assert_refused(&b, "tokens × d_model = 4294967296");
		b = s;
		b.size = 8;
		assert_refused(&b, "the shape is missing or smaller (8 bytes)");
		tu_log_capture();
		ck_assert_int_eq(configure(NULL, &lay), LOOM_EINVAL);
		b.size = sizeof b;
		b = s;
		b.options = "{\"dropout\": ";
		assert_refused(&b, "the model options are not valid JSON");
		b.options = "[0.1]";
		assert_refused(&b, "must be a JSON object");
		b.options = "{\"dropout\": 1}";
		assert_refused(&b, "model.dropout: 1 is not in [0, 1)");
		b.options = "{\"dropout\": -0.5}";
		assert_refused(&b, "model.dropout: -0.5 is not in [0, 1)");
		b.options = "{\"dropout\": \"lots\"}";
		assert_refused(&b, "model.dropout: expected a number, got a string");
		b.options = "{\"huber_delta\": 0}";
		assert_refused(&b, "model.huber_delta: 0 must be a positive number");
		b.options = "{\"threshold_quantile\": 1.5}";
		assert_refused(&b, "model.threshold_quantile: 1.5 is not in [0, 1]");
		b.options = "{\"loss\": \"banana\"}";
		assert_refused(&b, "model.loss: unknown loss \"banana\"");
		b.options = "{\"loss\": 2}";
		assert_refused(&b, "model.loss: expected a string, got a number");
		b.options = "{\"dropout\": 0.1, \"dropout\": 0.2}";
		assert_refused(&b, "not valid JSON");
	}

	/* a refused configure leaves the last good one in place */
	mdl_setup(&m, &s, 3, 11);
	{
		loom_head_shape b = s;
		b.tokens = 0;
		assert_refused(&b, "tokens is 0");
	}
	check_forward(&m, 0, 0, 0);
	/* more sequences than configured */
	m.S = 5;
	io = mdl_io(&m, 0, 0);
	tu_log_capture();
	ck_assert_int_eq(H.ops->forward(H.ctx, &io), LOOM_EINVAL);
	ASSERT_LOG("5 sequences, more than the 4");
	m.S = 3;
	io = mdl_io(&m, 0, 0);
	io.enc = NULL;
	ck_assert_int_eq(H.ops->forward(H.ctx, &io), LOOM_EINVAL);
	ASSERT_LOG("forward: io.enc is NULL");
	/* the JSON null options and no options take the defaults */
	mdl_free(&m);
	s.options = NULL;
	ck_assert_int_eq(configure(&s, &lay), 0);
	s.options = "";
	ck_assert_int_eq(configure(&s, &lay), 0);
	/* the default dropout (0.1, as the job spec's) keeps activations */
	ck_assert_uint_ge(lay.act_floats, 4 * 5 * 8);
}

/* ------------------------------------------------------------------ forecast */

START_TEST(forecast_common)
{
	common_checks(LOOM_TASK_FORECAST, "head-forecast", false);
}
END_TEST

START_TEST(forecast_layout)
{
	loom_head_shape s = mk_shape(8, 7, 16, "{\"dropout\": 0.1, \"horizon\": 24}");
	loom_head_layout l;

	s.horizon = 24;
	s.targets = 1;
	ck_assert_int_eq(configure(&s, &l), 0);
	ck_assert_uint_eq(l.n_params, 2);
	assert_param(&l.params[0], "proj.weight", 2, 24, 112, LOOM_INIT_FAN_IN, 112, 0);
	assert_param(&l.params[1], "proj.bias", 1, 24, 0, LOOM_INIT_FAN_IN, 112,
	             LOOM_PARAM_NO_DECAY);
	ck_assert_uint_eq(l.out_dim, 24);
	ck_assert_uint_eq(l.target_dim, 24);
	ck_assert_uint_eq(l.result_dim, 24);
	ck_assert_uint_eq(l.truth_dim, 24);
	/* the dropped-out input of 8 sequences at least */
	ck_assert_uint_ge(l.act_floats, 8 * 112);

	/* several targets, no dropout: out = horizon · targets, nothing kept */
	s = mk_shape(3, 2, 4, "{\"dropout\": 0, \"loss\": \"huber\", \"huber_delta\": 0.5}");
	s.horizon = 5;
	s.targets = 3;
	s.channels = 3;
	ck_assert_int_eq(configure(&s, &l), 0);
	assert_param(&l.params[0], "proj.weight", 2, 15, 8, LOOM_INIT_FAN_IN, 8, 0);
	ck_assert_uint_eq(l.out_dim, 15);
	ck_assert_uint_eq(l.target_dim, 15);
	ck_assert_uint_eq(l.result_dim, 15);
	ck_assert_uint_eq(l.truth_dim, 15);
	ck_assert_uint_eq(l.act_floats, 0);

	/* refusals */
	s.horizon = 0;
	assert_refused(&s, "horizon is 0");
	s.horizon = 5;
	s.targets = 0;
	assert_refused(&s, "targets is 0");
	s.targets = 3;
	s.options = "{\"loss\": \"crossentropy\"}";
	assert_refused(&s, "model.loss: crossentropy is for classification");
	s.horizon = 1u << 20;
	s.targets = 1u << 12;
	s.options = NULL;
	assert_refused(&s, "horizon × targets = 4294967296");
}
END_TEST

START_TEST(forecast_forward)
{
	loom_head_shape s = mk_shape(6, 5, 8, "{\"dropout\": 0.3}");
	mdl m;
	int64_t dropped = 0, n;

	s.horizon = 4;
	s.targets = 2;
	mdl_setup(&m, &s, 5, 1);
	check_forward(&m, 0, 0.3, 99);  /* evaluation: no dropout */
	check_forward(&m, 1, 0.3, 99);  /* training: the documented mask */
	check_forward(&m, 1, 0.3, 100); /* another seed, another mask */
	/* the mask drops about p of the inputs */
	n = (int64_t)m.S * m.in;
	for (int64_t i = 0; i < n; i++)
		dropped += lk_rand_uniform(99, 0, (uint64_t)i) < 0.3;
	ck_assert_int_gt(dropped, n / 5);
	ck_assert_int_lt(dropped, n * 2 / 5);
	/* all max_sequences */
	m.S = 6;
	check_forward(&m, 1, 0.3, 7);
	mdl_free(&m);
}
END_TEST

/* The loss value and dout of each regression loss against its formula. */
static void
check_regression_losses(uint32_t horizon, uint32_t targets)
{
	static const char *const opts[] = {
		"{\"dropout\": 0}",
		"{\"dropout\": 0, \"loss\": \"mse\"}",
		"{\"dropout\": 0, \"loss\": \"mae\"}",
		"{\"dropout\": 0, \"loss\": \"huber\", \"huber_delta\": 0.5}",
		"{\"dropout\": 0, \"loss\": \"huber\"}",
	};
	static const int kind[] = {0, 0, 1, 2, 2};
	static const double delta[] = {0, 0, 0, 0.5, 1.0};

	for (int v = 0; v < 5; v++) {
		loom_head_shape s = mk_shape(4, 3, 4, opts[v]);
		loom_head_io io;
		double loss = NAN, want = 0;
		size_t n;
		mdl m;

		s.horizon = horizon;
		s.targets = targets;
		mdl_setup(&m, &s, 3, 40 + (uint64_t)v);
		n = (size_t)m.S * m.lay.out_dim;
		/* pull some outputs far from the targets for huber's linear part */
		mdl_forward(&m, 0, 0);
		io = mdl_io(&m, 0, 0);
		m.out[0] = m.target[0] + 3.0f;
		m.out[1] = m.target[1] - 2.0f;
		ck_assert_int_eq(H.ops->loss(H.ctx, &io, &loss), 0);
		for (size_t i = 0; i < n; i++) {
			double e = (double)m.out[i] - m.target[i], z = fabs(e), g;
			if (kind[v] == 0) {
				want += e * e;
				g = 2 * e / (double)n;
			} else if (kind[v] == 1) {
				want += z;
				g = (e > 0 ? 1.0 : e < 0 ? -1.0 : 0.0) / (double)n;
			} else {
				want += z < delta[v] ? 0.5 * e * e : delta[v] * (z - 0.5 * delta[v]);
				g = (e < -delta[v] ? -delta[v] : e > delta[v] ? delta[v] : e) / (double)n;
			}
			ck_assert_msg(fabs(m.dout[i] - g) <= 1e-6 * fabs(g) + 1e-12,
			              "%s: dout[%zu] = %.9g, expected %.9g", opts[v], i,
			              (double)m.dout[i], g);
		}
		want /= (double)n;
		ck_assert_msg(fabs(loss - want) <= 1e-12 * (1 + want), "%s: loss %.17g, expected %.17g",
		              opts[v], loss, want);
		mdl_free(&m);
	}
}

START_TEST(forecast_loss)
{
	check_regression_losses(5, 2);
}
END_TEST

START_TEST(forecast_backward)
{
	static const char *const opts[] = {
		"{\"dropout\": 0}",
		"{\"dropout\": 0.25}",
		"{\"dropout\": 0.25, \"loss\": \"mae\"}",
		"{\"dropout\": 0, \"loss\": \"huber\", \"huber_delta\": 0.3}",
	};
	for (int v = 0; v < 4; v++) {
		loom_head_shape s = mk_shape(5, 5, 8, opts[v]);
		mdl m;
		s.horizon = 6;
		s.targets = 2;
		mdl_setup(&m, &s, 4, 7 + (uint64_t)v);
		/* dropout is off when not training, on when training */
		check_backward(&m, 0, 1234, v == 2 ? 1e-3 : 1e-2);
		check_backward(&m, 1, 1234, v == 2 ? 1e-3 : 1e-2);
		mdl_free(&m);
	}
}
END_TEST

START_TEST(forecast_metrics)
{
	loom_head_shape s = mk_shape(4, 2, 2, NULL);
	loom_head_layout l;
	/* 3 sequences × horizon 2: the NaN truth is skipped; 0 vs 0 is a 0
	 * smape term */
	static const float res[] = {1, 2, 3, 0, -1, 4};
	static const float truth[] = {1, 4, NAN, 0, 1, 2};
	static const uint32_t batches[] = {1, 2};
	static const uint32_t one[] = {3};
	metrics ms;

	s.horizon = 2;
	ck_assert_int_eq(configure(&s, &l), 0);
	run_metrics(&ms, res, truth, batches, 2, 2, 2);
	/* errors 0, −2, (skip), 0, −2, 2 over 5 values */
	ASSERT_METRIC(&ms, "mse", 12.0 / 5);
	ASSERT_METRIC(&ms, "mae", 6.0 / 5);
	ASSERT_METRIC(&ms, "rmse", sqrt(12.0 / 5));
	/* 200·|e|/(|p|+|t|): 0, 400/6, 0, 400/2, 400/6 */
	ASSERT_METRIC(&ms, "smape", (0 + 400.0 / 6 + 0 + 200 + 400.0 / 6) / 5);
	ck_assert_int_eq(ms.n, 4);
	assert_reading(&ms, "loss,mae,rmse,mse,smape", "", NULL, 0);
	/* one batch gives the same */
	run_metrics(&ms, res, truth, one, 1, 2, 2);
	ASSERT_METRIC(&ms, "mse", 12.0 / 5);
	/* nothing known: NaN */
	{
		static const float nan_truth[] = {NAN, NAN, NAN, NAN, NAN, NAN};
		run_metrics(&ms, res, nan_truth, one, 1, 2, 2);
		ASSERT_METRIC_NAN(&ms, "mse");
		ASSERT_METRIC_NAN(&ms, "mae");
		ASSERT_METRIC_NAN(&ms, "rmse");
		ASSERT_METRIC_NAN(&ms, "smape");
	}
}
END_TEST

START_TEST(forecast_predict)
{
	loom_head_shape s = mk_shape(4, 3, 4, NULL);
	loom_head_io io;
	float res[4 * 6];
	mdl m;

	s.horizon = 3;
	s.targets = 2;
	mdl_setup(&m, &s, 4, 5);
	mdl_forward(&m, 0, 0);
	io = mdl_io(&m, 0, 0);
	for (size_t i = 0; i < 24; i++)
		res[i] = NAN;
	ck_assert_int_eq(H.ops->predict(H.ctx, &io, res), 0);
	for (size_t i = 0; i < 24; i++)
		ck_assert_float_eq(res[i], m.out[i]);
	mdl_free(&m);
}
END_TEST

/* ------------------------------------------------------------------ regression */

START_TEST(regression_common)
{
	common_checks(LOOM_TASK_REGRESSION, "head-regression", false);
}
END_TEST

START_TEST(regression_layout)
{
	loom_head_shape s = mk_shape(16, 6, 32, "{\"dropout\": 0.2, \"loss\": \"mae\"}");
	loom_head_layout l;

	s.targets = 3;
	s.horizon = 24; /* not the regression's business */
	ck_assert_int_eq(configure(&s, &l), 0);
	ck_assert_uint_eq(l.n_params, 2);
	assert_param(&l.params[0], "proj.weight", 2, 3, 192, LOOM_INIT_FAN_IN, 192, 0);
	assert_param(&l.params[1], "proj.bias", 1, 3, 0, LOOM_INIT_FAN_IN, 192, LOOM_PARAM_NO_DECAY);
	ck_assert_uint_eq(l.out_dim, 3);
	ck_assert_uint_eq(l.target_dim, 3);
	ck_assert_uint_eq(l.result_dim, 3);
	ck_assert_uint_eq(l.truth_dim, 3);
	ck_assert_uint_ge(l.act_floats, 16 * 192);
	s.targets = 1;
	s.options = "{\"dropout\": 0}";
	ck_assert_int_eq(configure(&s, &l), 0);
	ck_assert_uint_eq(l.out_dim, 1);
	ck_assert_uint_eq(l.act_floats, 0);

	s.targets = 0;
	assert_refused(&s, "targets is 0");
	s.targets = 2;
	s.options = "{\"loss\": \"crossentropy\"}";
	assert_refused(&s, "model.loss: crossentropy is for classification; regression trains");
}
END_TEST

START_TEST(regression_forward_loss)
{
	loom_head_shape s = mk_shape(5, 4, 6, "{\"dropout\": 0.5}");
	mdl m;

	s.targets = 3;
	mdl_setup(&m, &s, 5, 21);
	check_forward(&m, 0, 0.5, 3);
	check_forward(&m, 1, 0.5, 3);
	mdl_free(&m);
	check_regression_losses(1, 3);
}
END_TEST

START_TEST(regression_backward)
{
	static const char *const opts[] = {
		"{\"dropout\": 0}",
		"{\"dropout\": 0.4, \"loss\": \"huber\", \"huber_delta\": 0.2}",
	};
	for (int v = 0; v < 2; v++) {
		loom_head_shape s = mk_shape(4, 5, 8, opts[v]);
		mdl m;
		s.targets = 3;
		mdl_setup(&m, &s, 4, 70 + (uint64_t)v);
		check_backward(&m, 0, 77, 1e-2);
		check_backward(&m, 1, 77, 1e-2);
		mdl_free(&m);
	}
}
END_TEST

START_TEST(regression_metrics)
{
	loom_head_shape s = mk_shape(8, 2, 2, NULL);
	loom_head_layout l;
	/* two targets, four sequences; target 1's third truth is unknown */
	static const float res[] = {1, 0, 2, 0, 3, 7, 5, 1};
	static const float truth[] = {1, 0, 2, 1, 3, NAN, 4, 1};
	static const uint32_t batches[] = {3, 1};
	metrics ms;

	s.targets = 2;
	ck_assert_int_eq(configure(&s, &l), 0);
	run_metrics(&ms, res, truth, batches, 2, 2, 2);
	/* errors: target 0: 0, 0, 0, 1; target 1: 0, −1, (skip), 0 */
	ASSERT_METRIC(&ms, "mse", 2.0 / 7);
	ASSERT_METRIC(&ms, "mae", 2.0 / 7);
	/* target 0: SSres 1, SStot 5 (mean 2.5): 0.8; target 1: SSres 1,
	 * SStot 2/3 (mean 2/3): −0.5 */
	ASSERT_METRIC(&ms, "r2", (0.8 + -0.5) / 2);
	ck_assert_int_eq(ms.n, 3);
	assert_reading(&ms, "loss,mae,mse,r2", "", NULL, 0);

	/* a constant target has no r2; the other's stands alone */
	{
		static const float t2[] = {1, 5, 2, 5, 3, 5, 4, 5};
		static const uint32_t all[] = {4};
		run_metrics(&ms, res, t2, all, 1, 2, 2);
		ASSERT_METRIC(&ms, "r2", 0.8);
	}
	/* one constant target: NaN */
	s.targets = 1;
	ck_assert_int_eq(configure(&s, &l), 0);
	{
		static const float r1[] = {1, 2, 3};
		static const float t1[] = {2, 2, 2};
		static const uint32_t three[] = {3};
		run_metrics(&ms, r1, t1, three, 1, 1, 1);
		ASSERT_METRIC_NAN(&ms, "r2");
		ASSERT_METRIC(&ms, "mse", 2.0 / 3);
	}
}
END_TEST

START_TEST(regression_predict)
{
	loom_head_shape s = mk_shape(3, 3, 4, NULL);
	loom_head_io io;
	float res[3 * 2];
	mdl m;

	s.targets = 2;
	mdl_setup(&m, &s, 3, 5);
	mdl_forward(&m, 1, 9);
	io = mdl_io(&m, 0, 0);
	ck_assert_int_eq(H.ops->predict(H.ctx, &io, res), 0);
	for (size_t i = 0; i < 6; i++)
		ck_assert_float_eq(res[i], m.out[i]);
	mdl_free(&m);
}
END_TEST

/* ------------------------------------------------------------------ classification */

START_TEST(classification_common)
{
	common_checks(LOOM_TASK_CLASSIFICATION, "head-classification", false);
}
END_TEST

START_TEST(classification_layout)
{
	static const char *const names[] = {"sun", "rain", "snow", "fog"};
	loom_head_shape s = mk_shape(10, 4, 16, "{\"dropout\": 0.1, \"loss\": \"crossentropy\"}");
	loom_head_layout l;

	s.classes = 4;
	s.class_names = names;
	ck_assert_int_eq(configure(&s, &l), 0);
	ck_assert_uint_eq(l.n_params, 2);
	assert_param(&l.params[0], "proj.weight", 2, 4, 64, LOOM_INIT_FAN_IN, 64, 0);
	assert_param(&l.params[1], "proj.bias", 1, 4, 0, LOOM_INIT_FAN_IN, 64, LOOM_PARAM_NO_DECAY);
	ck_assert_uint_eq(l.out_dim, 4);
	ck_assert_uint_eq(l.target_dim, 1);
	ck_assert_uint_eq(l.result_dim, 4);
	ck_assert_uint_eq(l.truth_dim, 1);
	/* the dropped-out input, the loss's softmax and class indices */
	ck_assert_uint_ge(l.act_floats, 10 * 64 + 10 * 4 + 10);
	s.classes = 2;
	s.class_names = NULL;
	s.options = "{\"dropout\": 0}";
	ck_assert_int_eq(configure(&s, &l), 0);
	ck_assert_uint_eq(l.out_dim, 2);
	ck_assert_uint_ge(l.act_floats, 10 * 2 + 10);

	s.classes = 0;
	assert_refused(&s, "classes is 0");
	s.classes = 1;
	assert_refused(&s, "only one class");
	s.classes = 3;
	s.options = "{\"loss\": \"mse\"}";
	assert_refused(&s, "model.loss: classification trains with crossentropy, not mse");
}
END_TEST

START_TEST(classification_forward_loss)
{
	loom_head_shape s = mk_shape(6, 4, 5, "{\"dropout\": 0.2}");
	loom_head_io io;
	double loss, want = 0;
	mdl m;

	s.classes = 5;
	mdl_setup(&m, &s, 6, 31);
	check_forward(&m, 0, 0.2, 8);
	check_forward(&m, 1, 0.2, 8);
	/* cross-entropy of the softmax, mean over sequences; dout = (p − 1)/S */
	loss = mdl_loss(&m, 1, 8);
	for (uint32_t r = 0; r < m.S; r++) {
		const float *z = m.out + r * 5;
		int t = (int)m.target[r];
		double mx = -INFINITY, sum = 0;
		for (int j = 0; j < 5; j++)
			mx = fmax(mx, z[j]);
		for (int j = 0; j < 5; j++)
			sum += exp(z[j] - mx);
		want += log(sum) + mx - z[t];
		for (int j = 0; j < 5; j++) {
			double g = (exp(z[j] - mx) / sum - (j == t)) / m.S;
			ck_assert_msg(fabs(m.dout[r * 5 + j] - g) <= 1e-6,
			              "dout[%u, %d] = %.9g, expected %.9g", r, j,
			              (double)m.dout[r * 5 + j], g);
		}
	}
	want /= m.S;
	ck_assert_msg(fabs(loss - want) <= 1e-6 * (1 + want), "loss %.9g, expected %.9g", loss, want);

	/* targets that are not class indices */
	{
		static const float bad[] = {-1, 5, 1.5f, NAN, 1e9f};
		for (int i = 0; i < 5; i++) {
			float keep = m.target[2];
			m.target[2] = bad[i];
			io = mdl_io(&m, 0, 0);
			tu_log_capture();
			ck_assert_int_eq(H.ops->loss(H.ctx, &io, &loss), LOOM_EINVAL);
			ASSERT_LOG("the target of sequence 2");
			ASSERT_LOG("not a class index (0 to 4)");
			m.target[2] = keep;
		}
	}
	mdl_free(&m);
}
END_TEST

START_TEST(classification_backward)
{
	for (int v = 0; v < 2; v++) {
		loom_head_shape s = mk_shape(4, 5, 8, v ? "{\"dropout\": 0.3}" : "{\"dropout\": 0}");
		mdl m;
		s.classes = 5;
		mdl_setup(&m, &s, 4, 50 + (uint64_t)v);
		/* larger logits, so the softmax is not nearly uniform */
		for (int64_t k = 0; k < m.numel[0]; k++)
			m.p[0][k] *= 8;
		check_backward(&m, 0, 4321, 1e-2);
		check_backward(&m, 1, 4321, 1e-2);
		mdl_free(&m);
	}
}
END_TEST

START_TEST(classification_metrics)
{
	static const char *const names[] = {"sun", "rain", "snow"};
	loom_head_shape s = mk_shape(8, 2, 2, NULL);
	loom_head_layout l;
	/* probabilities of 8 sequences; predicted: 0 1 0 1 1 2 0 (and one with
	 * unknown truth); the fourth row is a tie, won by the first */
	static const float res[] = {
		0.7f, 0.2f, 0.1f,
		0.3f, 0.6f, 0.1f,
		0.5f, 0.1f, 0.4f,
		0.1f, 0.45f, 0.45f,
		0.2f, 0.5f, 0.3f,
		0.1f, 0.1f, 0.8f,
		0.4f, 0.3f, 0.3f,
		0.0f, 0.0f, 1.0f,
	};
	static const float truth[] = {0, 0, 0, 1, 1, 2, 2, NAN};
	static const uint32_t batches[] = {5, 3};
	metrics ms;

	s.classes = 3;
	s.class_names = names;
	ck_assert_int_eq(configure(&s, &l), 0);
	run_metrics(&ms, res, truth, batches, 2, 3, 1);
	/* confusion[true][pred]: sun [2 1 0], rain [0 2 0], snow [1 0 1] */
	ASSERT_METRIC(&ms, "accuracy", 5.0 / 7);
	ASSERT_METRIC(&ms, "precision.sun", 2.0 / 3);
	ASSERT_METRIC(&ms, "recall.sun", 2.0 / 3);
	ASSERT_METRIC(&ms, "f1.sun", 2.0 / 3);
	ASSERT_METRIC(&ms, "precision.rain", 2.0 / 3);
	ASSERT_METRIC(&ms, "recall.rain", 1.0);
	ASSERT_METRIC(&ms, "f1.rain", 4.0 / 5);
	ASSERT_METRIC(&ms, "precision.snow", 1.0);
	ASSERT_METRIC(&ms, "recall.snow", 0.5);
	ASSERT_METRIC(&ms, "f1.snow", 2.0 / 3);
	ASSERT_METRIC(&ms, "macro_f1", 32.0 / 45);
	{
		static const double conf[3][3] = {{2, 1, 0}, {0, 2, 0}, {1, 0, 1}};
		for (int i = 0; i < 3; i++)
			for (int j = 0; j < 3; j++) {
				char name[64];
				snprintf(name, sizeof name, "confusion.%s.%s", names[i], names[j]);
				ASSERT_METRIC(&ms, name, conf[i][j]);
			}
	}
	ck_assert_int_eq(ms.n, 1 + 9 + 1 + 9);
	assert_reading(&ms, "loss,accuracy,macro_f1", "per_class,confusion", names, 3);

	/* without names the classes are their indices; a class never seen nor
	 * predicted is left out of macro_f1 */
	s.classes = 4;
	s.class_names = NULL;
	ck_assert_int_eq(configure(&s, &l), 0);
	{
		static const float r4[] = {0.9f, 0.1f, 0, 0, 0.2f, 0.8f, 0, 0, 0.6f, 0.4f, 0, 0};
		static const float t4[] = {0, 1, 1};
		static const uint32_t three[] = {3};
		run_metrics(&ms, r4, t4, three, 1, 4, 1);
		ASSERT_METRIC(&ms, "accuracy", 2.0 / 3);
		ASSERT_METRIC(&ms, "precision.0", 0.5);
		ASSERT_METRIC(&ms, "recall.1", 0.5);
		ASSERT_METRIC(&ms, "f1.0", 2.0 / 3);
		ASSERT_METRIC(&ms, "f1.1", 2.0 / 3);
		ASSERT_METRIC(&ms, "f1.3", 0);
		ASSERT_METRIC(&ms, "precision.3", 0);
		ASSERT_METRIC(&ms, "macro_f1", 2.0 / 3);
		ASSERT_METRIC(&ms, "confusion.1.0", 1);
		ASSERT_METRIC(&ms, "confusion.3.3", 0);
	}
	/* past 32 classes the confusion matrix is left out */
	s.classes = 33;
	ck_assert_int_eq(configure(&s, &l), 0);
	{
		float r33[33] = {0}, t33[1] = {32};
		static const uint32_t one[] = {1};
		r33[32] = 1;
		run_metrics(&ms, r33, t33, one, 1, 33, 1);
		ASSERT_METRIC(&ms, "accuracy", 1);
		ASSERT_METRIC(&ms, "f1.32", 1);
		ASSERT_METRIC(&ms, "macro_f1", 1);
		ck_assert(!mhas(&ms, "confusion.32.32"));
		ck_assert_int_eq(ms.n, 1 + 3 * 33 + 1);
	}
	s.classes = 4;
	ck_assert_int_eq(configure(&s, &l), 0);

	/* truth that is no class index is refused */
	{
		static const float r[] = {1, 0, 0, 0};
		static const float bad[] = {4};
		void *st = NULL;
		ck_assert_int_eq(H.ops->metrics_new(H.ctx, &st), 0);
		tu_log_capture();
		ck_assert_int_eq(H.ops->metrics_add(H.ctx, st, r, bad, 1), LOOM_EINVAL);
		ASSERT_LOG("the truth of sequence 0 is 4, not a class index (0 to 3)");
		memset(&ms, 0, sizeof ms);
		ck_assert_int_eq(H.ops->metrics_report(H.ctx, st, collect, &ms), 0);
		ASSERT_METRIC_NAN(&ms, "accuracy");
		ASSERT_METRIC_NAN(&ms, "macro_f1");
		H.ops->metrics_free(H.ctx, st);
	}
}
END_TEST

START_TEST(classification_predict)
{
	loom_head_shape s = mk_shape(5, 3, 4, NULL);
	loom_head_io io;
	float res[5 * 4];
	mdl m;

	s.classes = 4;
	mdl_setup(&m, &s, 5, 61);
	mdl_forward(&m, 0, 0);
	/* extreme logits must not overflow */
	m.out[4] = 1000;
	m.out[5] = -1000;
	m.out[6] = 999;
	m.out[7] = 0;
	io = mdl_io(&m, 0, 0);
	ck_assert_int_eq(H.ops->predict(H.ctx, &io, res), 0);
	for (uint32_t r = 0; r < 5; r++) {
		double sum = 0, mx = -INFINITY, z = 0;
		for (int j = 0; j < 4; j++)
			mx = fmax(mx, m.out[r * 4 + j]);
		for (int j = 0; j < 4; j++)
			z += exp(m.out[r * 4 + j] - mx);
		for (int j = 0; j < 4; j++) {
			double want = exp(m.out[r * 4 + j] - mx) / z;
			ck_assert(res[r * 4 + j] >= 0);
			ck_assert_msg(fabs(res[r * 4 + j] - want) <= 1e-6, "p[%u, %d] = %g, softmax %g", r,
			              j, (double)res[r * 4 + j], want);
			sum += res[r * 4 + j];
		}
		ck_assert_msg(fabs(sum - 1) <= 1e-6, "row %u sums to %.9g", r, sum);
	}
	ck_assert_msg(fabs(res[4] - 1 / (1 + exp(-1.0))) <= 1e-6, "p = %g", (double)res[4]);
	mdl_free(&m);
}
END_TEST

/* ------------------------------------------------------------------ anomaly */

START_TEST(anomaly_common)
{
	common_checks(LOOM_TASK_ANOMALY, "head-anomaly", true);
}
END_TEST

START_TEST(anomaly_layout)
{
	loom_head_shape s = mk_shape(12, 7, 16, "{\"dropout\": 0.1, \"threshold_quantile\": 0.95}");
	loom_head_layout l;

	s.context = 28;
	s.patch = 4;
	s.channels = 3;
	s.horizon = 24; /* the spec's default; not the anomaly head's business */
	ck_assert_int_eq(configure(&s, &l), 0);
	ck_assert_uint_eq(l.n_params, 3);
	assert_param(&l.params[0], "proj.weight", 2, 84, 112, LOOM_INIT_FAN_IN, 112, 0);
	assert_param(&l.params[1], "proj.bias", 1, 84, 0, LOOM_INIT_FAN_IN, 112,
	             LOOM_PARAM_NO_DECAY);
	ck_assert_str_eq(l.params[2].name, "threshold");
	ck_assert_uint_eq(l.params[2].ndim, 1);
	ck_assert_uint_eq(l.params[2].dims[0], 1);
	ck_assert_uint_eq(l.params[2].init, LOOM_INIT_ZERO);
	ck_assert(l.params[2].flags & LOOM_PARAM_BUFFER);
	ck_assert_uint_eq(l.out_dim, 84);
	ck_assert_uint_eq(l.target_dim, 84);
	ck_assert_uint_eq(l.result_dim, 1);
	ck_assert_uint_eq(l.truth_dim, 1);
	ck_assert_uint_ge(l.act_floats, 12 * 112);
	/* channel-independent windows: one channel */
	s.channels = 1;
	ck_assert_int_eq(configure(&s, &l), 0);
	ck_assert_uint_eq(l.out_dim, 28);

	s.context = 0;
	assert_refused(&s, "a window of 0 steps × 1 channels is empty");
	s.context = 28;
	s.channels = 0;
	assert_refused(&s, "a window of 28 steps × 0 channels is empty");
	s.channels = 2;
	s.options = "{\"loss\": \"mae\"}";
	assert_refused(&s, "model.loss: anomaly detection trains with mse");
}
END_TEST

START_TEST(anomaly_forward_loss)
{
	loom_head_shape s = mk_shape(4, 3, 8, "{\"dropout\": 0.2}");
	mdl m;
	double loss, want = 0;
	size_t n;

	s.context = 6;
	s.channels = 2;
	mdl_setup(&m, &s, 4, 3);
	check_forward(&m, 0, 0.2, 5);
	check_forward(&m, 1, 0.2, 5);
	loss = mdl_loss(&m, 0, 0);
	n = (size_t)m.S * 12;
	for (size_t i = 0; i < n; i++) {
		double e = (double)m.out[i] - m.target[i];
		want += e * e;
		ck_assert_msg(fabs(m.dout[i] - 2 * e / (double)n) <= 1e-6 * fabs(2 * e / (double)n) + 1e-12,
		              "dout[%zu]", i);
	}
	want /= (double)n;
	ck_assert_msg(fabs(loss - want) <= 1e-12 * (1 + want), "loss %.17g, expected %.17g", loss,
	              want);
	mdl_free(&m);
}
END_TEST

START_TEST(anomaly_backward)
{
	for (int v = 0; v < 2; v++) {
		loom_head_shape s = mk_shape(4, 5, 8, v ? "{\"dropout\": 0.5}" : "{\"dropout\": 0}");
		mdl m;
		s.context = 8;
		s.channels = 2;
		mdl_setup(&m, &s, 4, 90 + (uint64_t)v);
		check_backward(&m, 0, 17, 1e-2);
		check_backward(&m, 1, 17, 1e-2);
		mdl_free(&m);
	}
}
END_TEST

START_TEST(anomaly_predict)
{
	loom_head_shape s = mk_shape(3, 2, 4, NULL);
	loom_head_io io;
	float res[3];
	mdl m;

	s.context = 5;
	s.channels = 2;
	mdl_setup(&m, &s, 3, 8);
	mdl_forward(&m, 0, 0);
	m.p[2][0] = 0.75f;
	io = mdl_io(&m, 0, 0);
	ck_assert_int_eq(H.ops->predict(H.ctx, &io, res), 0);
	for (uint32_t r = 0; r < 3; r++) {
		double want = 0;
		for (int j = 0; j < 10; j++) {
			double e = (double)m.out[r * 10 + j] - m.target[r * 10 + j];
			want += e * e;
		}
		want /= 10;
		ck_assert_msg(fabs(res[r] - want) <= 1e-6 * want, "score %u = %.9g, MSE %.9g", r,
		              (double)res[r], want);
	}
	/* the threshold predict saw is the one metrics report */
	{
		static const float scores[] = {0.5f, 1.0f};
		static const float truth[] = {NAN, NAN};
		static const uint32_t two[] = {2};
		metrics ms;
		run_metrics(&ms, scores, truth, two, 1, 1, 1);
		ASSERT_METRIC(&ms, "threshold", 0.75);
		ASSERT_METRIC(&ms, "anomaly_rate", 0.5);
		/* no truth known: no precision, recall, f1 */
		ck_assert(!mhas(&ms, "precision"));
		ck_assert(!mhas(&ms, "recall"));
		ck_assert(!mhas(&ms, "f1"));
	}
	/* predict needs the window */
	io.target = NULL;
	ck_assert_int_eq(H.ops->predict(H.ctx, &io, res), LOOM_EINVAL);
	mdl_free(&m);
}
END_TEST

START_TEST(anomaly_metrics)
{
	loom_head_shape s = mk_shape(8, 2, 2, NULL);
	loom_head_layout l;
	float thr = 0.375f, *params[3] = {NULL, NULL, &thr};
	float out[8] = {0}, tgt[8] = {0}, res[8];
	loom_head_io io;
	/* six scores; flagged (> 0.375): 0.5 (normal: FP), 5 (anomalous: TP),
	 * 0.875 (normal: FP); 0.25 (anomalous) is missed (FN); 0.375 equals
	 * the threshold and is not flagged (its truth is unknown) */
	static const float scores[] = {0.125f, 0.5f, 0.375f, 0.25f, 5.0f, 0.875f};
	static const float truth[] = {0, 0, NAN, 1, 1, 0};
	static const uint32_t batches[] = {2, 4};
	metrics ms;

	s.context = 4;
	s.channels = 1;
	ck_assert_int_eq(configure(&s, &l), 0);
	/* the metrics use the threshold the last predict saw */
	memset(&io, 0, sizeof io);
	io.size = sizeof io;
	io.sequences = 1;
	io.params = params;
	io.out = out;
	io.target = tgt;
	ck_assert_int_eq(H.ops->predict(H.ctx, &io, res), 0);
	ck_assert_float_eq(res[0], 0);

	run_metrics(&ms, scores, truth, batches, 2, 1, 1);
	ASSERT_METRIC(&ms, "score_mean", 7.125 / 6);
	/* sorted 0.125 0.25 0.375 0.5 0.875 5; p50 at rank 2.5, p99 at 4.95 */
	ASSERT_METRIC(&ms, "score_p50", 0.4375);
	ASSERT_METRIC(&ms, "score_p99", 0.875 + 0.95 * 4.125);
	ASSERT_METRIC(&ms, "threshold", 0.375);
	ASSERT_METRIC(&ms, "anomaly_rate", 0.5);
	ASSERT_METRIC(&ms, "precision", 1.0 / 3);
	ASSERT_METRIC(&ms, "recall", 0.5);
	ASSERT_METRIC(&ms, "f1", 2.0 / 5);
	ck_assert_int_eq(ms.n, 8);
	assert_reading(&ms, "loss,f1,precision,recall,anomaly_rate", "", NULL, 0);

	/* truth must be 0, 1 or NaN */
	{
		static const float bad[] = {0.5f};
		void *st = NULL;
		ck_assert_int_eq(H.ops->metrics_new(H.ctx, &st), 0);
		tu_log_capture();
		ck_assert_int_eq(H.ops->metrics_add(H.ctx, st, scores, bad, 1), LOOM_EINVAL);
		ASSERT_LOG("the truth of sequence 0 is 0.5");
		H.ops->metrics_free(H.ctx, st);
	}
}
END_TEST

/* calibrate with scores 1 … 100 (added shuffled) for quantile q. */
static float
calibrated(double q)
{
	char opts[64];
	loom_head_shape s = mk_shape(8, 2, 2, opts);
	loom_head_layout l;
	float w[1] = {0}, b[1] = {0}, thr = -1, *params[3] = {w, b, &thr};
	float scores[100], truth[100];
	void *st = NULL;

	snprintf(opts, sizeof opts, "{\"threshold_quantile\": %.17g}", q);
	s.context = 4;
	ck_assert_int_eq(configure(&s, &l), 0);
	for (int i = 0; i < 100; i++) {
		scores[i] = (float)((i * 37) % 100 + 1);
		truth[i] = NAN;
	}
	ck_assert_int_eq(H.ops->metrics_new(H.ctx, &st), 0);
	ck_assert_int_eq(H.ops->metrics_add(H.ctx, st, scores, truth, 60), 0);
	ck_assert_int_eq(H.ops->metrics_add(H.ctx, st, scores + 60, truth + 60, 40), 0);
	ck_assert_int_eq(H.ops->calibrate(H.ctx, params, st), 0);
	H.ops->metrics_free(H.ctx, st);
	return thr;
}

START_TEST(anomaly_calibrate)
{
	/* numpy.quantile(range(1, 101), q), linear interpolation */
	ck_assert_float_eq_tol(calibrated(0.99), 99.01f, 1e-4f);
	ck_assert_float_eq_tol(calibrated(0.5), 50.5f, 1e-5f);
	ck_assert_float_eq_tol(calibrated(0.9), 90.1f, 1e-4f);
	ck_assert_float_eq(calibrated(1.0), 100.0f);
	ck_assert_float_eq(calibrated(0.0), 1.0f);
	ASSERT_LOG("anomaly threshold");

	/* the default quantile is 0.99; the metrics then report it */
	{
		loom_head_shape s = mk_shape(8, 2, 2, "{\"dropout\": 0.1}");
		loom_head_layout l;
		float thr = 0, *params[3] = {NULL, NULL, &thr};
		float scores[100], truth[100];
		static const uint32_t all[] = {100};
		void *st = NULL;
		metrics ms;

		s.context = 4;
		ck_assert_int_eq(configure(&s, &l), 0);
		for (int i = 0; i < 100; i++) {
			scores[i] = (float)(100 - i);
			truth[i] = i < 5 ? 1.0f : 0.0f; /* the five largest are anomalous */
		}
		ck_assert_int_eq(H.ops->metrics_new(H.ctx, &st), 0);
		ck_assert_int_eq(H.ops->metrics_add(H.ctx, st, scores, truth, 100), 0);
		ck_assert_int_eq(H.ops->calibrate(H.ctx, params, st), 0);
		H.ops->metrics_free(H.ctx, st);
		ck_assert_float_eq_tol(thr, 99.01f, 1e-4f);
		run_metrics(&ms, scores, truth, all, 1, 1, 1);
		ck_assert_msg(fabs(mget(&ms, "threshold") - 99.01) < 1e-4, "threshold %g",
		              mget(&ms, "threshold"));
		/* only 100 is above 99.01 */
		ASSERT_METRIC(&ms, "anomaly_rate", 0.01);
		ASSERT_METRIC(&ms, "precision", 1.0);
		ASSERT_METRIC(&ms, "recall", 0.2);
		ASSERT_METRIC(&ms, "f1", 1.0 / 3);
		ASSERT_METRIC(&ms, "score_p50", 50.5);
		ck_assert_msg(fabs(mget(&ms, "score_p99") - 99.01) < 1e-9, "p99");

		/* nothing to calibrate on */
		ck_assert_int_eq(H.ops->metrics_new(H.ctx, &st), 0);
		tu_log_capture();
		ck_assert_int_eq(H.ops->calibrate(H.ctx, params, st), LOOM_EINVAL);
		ASSERT_LOG("calibrate: no scores");
		ck_assert_float_eq_tol(thr, 99.01f, 1e-4f);
		H.ops->metrics_free(H.ctx, st);
	}
}
END_TEST

/* ------------------------------------------------------------------ the suite */

int
main(void)
{
	Suite *s = suite_create("heads");
	struct {
		const char *name;
		void (*setup)(void);
		const TTest *tests[8];
	} cases[] = {
		{"forecast", setup_forecast,
		 {forecast_common, forecast_layout, forecast_forward, forecast_loss, forecast_backward,
		  forecast_metrics, forecast_predict, NULL}},
		{"regression", setup_regression,
		 {regression_common, regression_layout, regression_forward_loss, regression_backward,
		  regression_metrics, regression_predict, NULL}},
		{"classification", setup_classification,
		 {classification_common, classification_layout, classification_forward_loss,
		  classification_backward, classification_metrics, classification_predict, NULL}},
		{"anomaly", setup_anomaly,
		 {anomaly_common, anomaly_layout, anomaly_forward_loss, anomaly_backward,
		  anomaly_predict, anomaly_metrics, anomaly_calibrate, NULL}},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		TCase *tc = tcase_create(cases[i].name);
		tcase_add_checked_fixture(tc, cases[i].setup, head_close);
		tcase_set_timeout(tc, 60);
		for (int t = 0; cases[i].tests[t] != NULL; t++)
			tcase_add_test(tc, cases[i].tests[t]);
		suite_add_tcase(s, tc);
	}
	return tu_run(s);
}

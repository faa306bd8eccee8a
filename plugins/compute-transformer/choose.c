/* After training: the ridge and naive fits, and model.kind "auto"'s choice
 * among them and the Transformer.  See run.h.
 *
 * Every candidate is scored on the validation split with the job's loss
 * (the head's, as the Transformer's val_loss), window by window, in the
 * same windows.  The lowest is kept, a tie going to the simpler
 * (model.auto.choose = "lowest", the default).  With "one_se" the simplest
 * candidate whose loss is within one standard error of the lowest is kept
 * (the "one-standard-error rule"): a more complex model has to beat a
 * simpler one by more than the validation split can tell apart from
 * chance.  The standard error is that of the window-by-window difference,
 * over the windows that do not overlap in what they predict (about
 * windows · stride / horizon), so a short validation split favours the
 * simpler model.  The naive method and the ridge penalty are always chosen
 * by that rule.  Simplicity: repeat-last, seasonal-naive, drift (mean for a
 * regression); then the ridge model; then an average of linear maps; the
 * Transformer; an average with it.
 *
 * On bench/forecast-quality's 16 series (2026-12-07) "lowest" met auto ≤
 * 1.02 × the best simple model on 14 and auto ≤ the Transformer on 14;
 * "one_se" on 10 and 13.
 *
 * With model.auto.ensemble, the averages of the best two and of the best
 * three are candidates too.  Linear and naive models are linear maps of
 * the same input, so an average of them is one linear map; an average with
 * the Transformer is the MIXED form. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/compute.h>
#include <loom/error.h>

#include "linear.h"
#include "run.h"

/* The ridge penalties tried, relative to the features' variance. */
static const double alphas[] = {1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1, 10, 100, 1000};
#define N_ALPHAS (sizeof alphas / sizeof alphas[0])
/* Without validation windows a ridge fit takes this one. */
#define DEFAULT_ALPHA 1e-3
/* The decomposition is skipped above this many features (its system is
 * twice as wide, solved once per penalty). */
#define DECOMP_MAX_FEATURES 2048
/* A ridge fit's system is features² doubles: above this many features
 * (context × channels per sequence) it is not fitted in closed form
 * (model.linear.fit = "train" trains such a map instead). */
#define RIDGE_MAX_FEATURES 8192

enum { SIMPLE_NAIVE = 0, SIMPLE_LINEAR = 1, SIMPLE_LINEAR_AVERAGE = 2, SIMPLE_TRANSFORMER = 3,
       SIMPLE_ENSEMBLE = 4 };

typedef struct cand {
	char name[32];           /* transformer, linear, naive, ensemble */
	int simple;              /* SIMPLE_*: ties go to the lower */
	double val;              /* validation loss, NaN without validation */
	double *wl;              /* [validation windows] each window's loss */
	float *w, *b;            /* the map (linear, naive, ensemble of them) */
	bool transformer;        /* the Transformer is (part of) it */
	float mix;               /* ensemble with the Transformer: its weight */
	int alpha_at, kernel_at; /* a ridge probe: which penalty and decomposition */
	json_t *detail;
	json_t *validation, *test;
} cand;

static void
cand_free(cand *c)
{
	free(c->w);
	free(c->b);
	free(c->wl);
	json_decref(c->detail);
	json_decref(c->validation);
	json_decref(c->test);
	memset(c, 0, sizeof *c);
}

void
tf_choice_free(tf_choice *c)
{
	if (c->lin_up)
		tf_model_free(&c->lin);
	if (c->mixed_up)
		tf_model_free(&c->mixed);
	memset(c, 0, sizeof *c);
}

/* ------------------------------------------------------------------ maps */

static int64_t
map_in(const tf_model *m)
{
	return m->cfg.context * m->cin;
}

static float *
weight_of(tf_model *m)
{
	return m->params + m->tensors[m->lin].offset;
}

static float *
bias_of(tf_model *m)
{
	return m->params + m->tensors[m->lin + 1].offset;
}

static void
set_map(tf_model *m, const float *w, const float *b)
{
	memcpy(weight_of(m), w, (size_t)(m->head.out_dim * map_in(m)) * sizeof *w);
	memcpy(bias_of(m), b, (size_t)m->head.out_dim * sizeof *b);
}

/* Keep a copy of m's map in c. */
static int
keep_map(cand *c, tf_model *m)
{
	size_t nw = (size_t)(m->head.out_dim * map_in(m)), nb = (size_t)m->head.out_dim;

	free(c->w);
	free(c->b);
	c->w = malloc(nw * sizeof *c->w);
	c->b = malloc(nb * sizeof *c->b);
	if (!c->w || !c->b)
		return LOOM_ENOMEM;
	memcpy(c->w, weight_of(m), nw * sizeof *c->w);
	memcpy(c->b, bias_of(m), nb * sizeof *c->b);
	return 0;
}

/* The job's loss of one prediction error (the head's: mse, mae, huber). */
static double
loss_of(const run *r, double e)
{
	double a = fabs(e), d = r->spec.huber_delta;
	switch (r->spec.loss) {
	case TF_LOSS_MAE: return a;
	case TF_LOSS_HUBER: return a < d ? 0.5 * e * e : d * (a - 0.5 * d);
	default: return e * e;
	}
}

/* Each validation window's loss under m into wl[n_windows] (the mean over
 * its values, as the training loss), and their mean into *loss: NaN
 * without validation windows. */
static int
window_losses(run *r, tf_model *m, double *wl, double *loss)
{
	int64_t n_win = r->ds.n_windows[1], od = m->head.out_dim;
	float *pred = NULL;
	double sum = 0;
	int64_t counted = 0;
	int rv = 0;

	*loss = NAN;
	if (n_win == 0)
		return 0;
	if ((pred = malloc((size_t)(r->batch * m->seq_per_window * od) * sizeof *pred)) == NULL)
		return LOOM_ENOMEM;
	for (int64_t at = 0; at < n_win; at += r->batch) {
		int64_t n = n_win - at < r->batch ? n_win - at : r->batch;
		int64_t per = m->seq_per_window * od;
		for (int64_t i = 0; i < n; i++)
			r->idx[i] = at + i;
		gather(r, 1, r->idx, n);
		if ((rv = tf_model_forward(m, r->bx, n, false, 0)) != 0)
			break;
		tf_model_predictions(m, pred);
		for (int64_t b = 0; b < n; b++) {
			double s = 0;
			int64_t k = 0;
			for (int64_t j = 0; j < per; j++) {
				double t = r->by[b * per + j];
				if (isfinite(t)) {
					s += loss_of(r, (double)pred[b * per + j] - t);
					k++;
				}
			}
			wl[at + b] = k ? s / (double)k : NAN;
			if (k) {
				sum += wl[at + b];
				counted++;
			}
		}
	}
	free(pred);
	if (rv == 0 && counted > 0)
		*loss = sum / (double)counted;
	return rv;
}

/* The validation loss of m into c (and each window's, for the choice). */
static int
val_loss(run *r, tf_model *m, cand *c)
{
	int64_t n = r->ds.n_windows[1];
	if (c->wl == NULL && (c->wl = calloc((size_t)(n ? n : 1), sizeof *c->wl)) == NULL)
		return LOOM_ENOMEM;
	return window_losses(r, m, c->wl, &c->val);
}

/* Windows that do not overlap in what they predict, for the standard
 * error: about n · stride / horizon (n for a regression), at least 1. */
static double
independent_windows(const run *r)
{
	double n = (double)r->ds.n_windows[1], span;
	if (r->spec.task != TF_TASK_FORECAST)
		return n > 1 ? n : 1;
	span = (double)r->spec.horizon / (double)r->spec.stride;
	n = span > 1 ? n / span : n;
	return n > 1 ? n : 1;
}

/* One standard error of the mean window-by-window difference a − b. */
static double
standard_error(const run *r, const double *a, const double *b)
{
	int64_t n = r->ds.n_windows[1], k = 0;
	double mean = 0, m2 = 0;
	for (int64_t i = 0; i < n; i++) {
		double d = a[i] - b[i], delta;
		if (!isfinite(d))
			continue;
		k++;
		delta = d - mean;
		mean += delta / (double)k;
		m2 += delta * (d - mean);
	}
	if (k < 2)
		return INFINITY;
	return sqrt(m2 / (double)(k - 1)) / sqrt(independent_windows(r));
}

/* The one-standard-error rule over cands[n]: the simplest whose validation
 * loss is within a standard error of the lowest.  *best is the lowest. */
static int
pick(const run *r, cand *const *cands, int n, int *best)
{
	int lo = -1, chosen = -1;
	for (int i = 0; i < n; i++)
		if (lo < 0 || (isfinite(cands[i]->val) &&
		               (!isfinite(cands[lo]->val) || cands[i]->val < cands[lo]->val)))
			lo = i;
	*best = lo;
	if (lo < 0 || !isfinite(cands[lo]->val))
		return lo;
	for (int i = 0; i < n; i++) {
		const cand *c = cands[i];
		if (!isfinite(c->val) || c->wl == NULL)
			continue;
		if (i != lo && c->val - cands[lo]->val > standard_error(r, c->wl, cands[lo]->wl))
			continue;
		if (chosen < 0 || c->simple < cands[chosen]->simple ||
		    (c->simple == cands[chosen]->simple && c->val < cands[chosen]->val))
			chosen = i;
	}
	return chosen;
}


/* ------------------------------------------------------------------ ridge */

/* Every training window in m's linear units, a batch at a time: fn gets
 * the linear input x [S, L·cin] and the targets y [S, out_dim] (targets
 * unpredicted into the head's output units). */
typedef void (*batch_fn)(void *arg, const tf_model *m, const float *x, float *y, int64_t S);

static int
each_training_batch(run *r, tf_model *m, batch_fn fn, void *arg)
{
	int64_t n_win = r->ds.n_windows[0];
	float *yo = malloc((size_t)(r->batch * m->seq_per_window * m->head.out_dim) * sizeof *yo);
	int rv = 0;

	if (yo == NULL)
		return LOOM_ENOMEM;
	for (int64_t at = 0; at < n_win; at += r->batch) {
		int64_t n = n_win - at < r->batch ? n_win - at : r->batch;
		for (int64_t i = 0; i < n; i++)
			r->idx[i] = at + i;
		gather(r, 0, r->idx, n);
		if ((rv = tf_model_forward(m, r->bx, n, false, 0)) != 0)
			break;
		tf_model_unpredict(m, r->by, yo);
		fn(arg, m, tf_model_linear_input(m), yo, tf_model_sequences(m));
	}
	free(yo);
	return rv;
}

/* Least-squares sums of the targets less base's forecast (a map like
 * linear.weight; NULL: none). */
typedef struct gram_arg {
	tf_gram *g;
	const float *base;
} gram_arg;

static void
add_to_gram(void *arg, const tf_model *m, const float *x, float *y, int64_t S)
{
	gram_arg *a = arg;
	int64_t od = m->head.out_dim, f = map_in(m);

	for (int64_t q = 0; a->base && q < S; q++)
		for (int64_t j = 0; j < od; j++) {
			const float *row = a->base + j * f;
			double v = 0;
			for (int64_t i = 0; i < f; i++)
				if (row[i] != 0)
					v += (double)row[i] * x[q * f + i];
			y[q * od + j] -= (float)v;
		}
	tf_gram_add(a->g, x, y, S);
}

static int
training_gram(run *r, tf_model *m, const float *base, tf_gram *g)
{
	gram_arg a = {g, base};
	int rv;

	if ((rv = tf_gram_init(g, map_in(m), m->head.out_dim)) != 0)
		return rv;
	return each_training_batch(r, m, add_to_gram, &a);
}

/* Fit the ridge map into m (a LINEAR form): penalty and decomposition
 * chosen on validation unless the spec fixes them.  A forecast's map is
 * repeat-last plus a ridge correction (the correction is what is
 * penalized), so the more the penalty, the nearer repeat-last: the best
 * forecast of a random walk, where a map shrunk towards zero would
 * forecast the window's mean. */
static int
fit_ridge(run *r, tf_model *m, cand *c, char **err)
{
	const tf_spec *s = &r->spec;
	int64_t f = map_in(m), od = m->head.out_dim, L = s->context;
	int64_t kernel = s->ma_kernel < L ? s->ma_kernel : L;
	double tried_alphas[N_ALPHAS];
	size_t n_alpha = 0;
	int64_t kernels[2];
	int n_kernel = 0, tried = 0, rv;
	double best_alpha = NAN;
	int64_t best_kernel = 0;
	float *w = NULL, *b = NULL, *base = NULL, *bbase = NULL;
	bool based = false;
	json_t *lowest_fit = NULL;
	cand *probes = NULL, **list = NULL;
	tf_gram g;

	memset(&g, 0, sizeof g);
	if (f > RIDGE_MAX_FEATURES) {
		*err = loom_strfmt("model.linear: a ridge fit over %lld inputs a window (model.context "
		                   "× channels) would need %.1f GB; at most %d are fitted in closed "
		                   "form: shorten model.context, use channel_independent = true, or "
		                   "train the map (model.linear.fit = \"train\")",
		                   (long long)f, (double)f * (double)f * 8 / 1e9, RIDGE_MAX_FEATURES);
		return LOOM_EINVAL;
	}
	if (s->task == TF_TASK_FORECAST) {
		int64_t K = s->channel_independent ? 1 : r->ds.n_out;
		base = calloc((size_t)(od * f), sizeof *base);
		bbase = calloc((size_t)od, sizeof *bbase);
		if (!base || !bbase) {
			free(base);
			free(bbase);
			return LOOM_ENOMEM;
		}
		based = tf_naive_map(TF_NAIVE_REPEAT_LAST, 0, L, m->cin, s->horizon, K,
		                     s->channel_independent ? NULL : r->target_in, NULL, base,
		                     bbase) == 0;
	}
	if (s->decomposition != TF_DECOMP_MOVING_AVERAGE)
		kernels[n_kernel++] = 0;
	if (s->decomposition != TF_DECOMP_NONE && kernel >= 2 && f <= DECOMP_MAX_FEATURES)
		kernels[n_kernel++] = kernel;
	if (n_kernel == 0) {
		*err = loom_strfmt("model.linear.decomposition: a moving average needs model.context "
		                   "≥ 2 and at most %d inputs (context × channels is %lld); use "
		                   "\"none\"",
		                   DECOMP_MAX_FEATURES, (long long)f);
		return LOOM_EINVAL;
	}
	if (s->ridge_alpha > 0)
		tried_alphas[n_alpha++] = s->ridge_alpha;
	else if (r->ds.n_windows[1] == 0)
		tried_alphas[n_alpha++] = DEFAULT_ALPHA;
	else
		for (size_t i = 0; i < N_ALPHAS; i++)
			tried_alphas[n_alpha++] = alphas[i];

	if ((rv = training_gram(r, m, based ? base : NULL, &g)) != 0)
		goto out;
	if (g.n < 1) {
		*err = strdup("the ridge fit has no training window without missing values; fill "
		              "them (data.fill) or give more rows");
		rv = LOOM_EINVAL;
		goto out;
	}
	w = malloc((size_t)(od * f) * sizeof *w);
	b = malloc((size_t)od * sizeof *b);
	if (!w || !b) {
		rv = LOOM_ENOMEM;
		goto out;
	}
	/* every penalty and decomposition, scored; the choice by the
	 * one-standard-error rule: the simplest (the largest penalty, no
	 * decomposition before one) within a standard error of the lowest */
	probes = calloc((size_t)(n_kernel * n_alpha), sizeof *probes);
	list = calloc((size_t)(n_kernel * n_alpha), sizeof *list);
	if (!probes || !list) {
		rv = LOOM_ENOMEM;
		goto out;
	}
	for (int k = 0; k < n_kernel; k++)
		for (size_t a = 0; a < n_alpha; a++) {
			cand *p = &probes[tried];
			if (tf_ridge(&g, tried_alphas[a], kernels[k], L, m->cin, w, b) != 0)
				continue; /* singular at this penalty: try the others */
			for (int64_t i = 0; based && i < od * f; i++)
				w[i] += base[i];
			set_map(m, w, b);
			if ((rv = val_loss(r, m, p)) != 0)
				goto out;
			/* simpler: no decomposition, then the larger penalty */
			p->simple = k * (int)n_alpha + (int)(n_alpha - 1 - a);
			p->alpha_at = (int)a;
			p->kernel_at = k;
			list[tried++] = p;
		}
	if (tried == 0) {
		*err = strdup("the ridge fit failed at every penalty (the windows' features are "
		              "degenerate); give more rows or another model.context");
		rv = LOOM_ERANGE;
		goto out;
	}
	{
		int lowest, at = pick(r, list, tried, &lowest);
		cand *p = list[at < 0 ? 0 : at];
		best_alpha = tried_alphas[p->alpha_at];
		best_kernel = kernels[p->kernel_at];
		if (lowest >= 0 && list[lowest] != p)
			lowest_fit = json_pack("{s:f, s:s, s:f}", "alpha", tried_alphas[list[lowest]->alpha_at],
			                       "decomposition",
			                       kernels[list[lowest]->kernel_at] ? "moving_average" : "none",
			                       "validation_loss", list[lowest]->val);
	}
	tf_ridge(&g, best_alpha, best_kernel, L, m->cin, w, b);
	for (int64_t i = 0; based && i < od * f; i++)
		w[i] += base[i];
	set_map(m, w, b);
	if ((rv = keep_map(c, m)) != 0 || (rv = val_loss(r, m, c)) != 0)
		goto out;
	c->detail = json_pack("{s:s, s:f, s:s, s:I, s:I}", "fit", "ridge", "alpha", best_alpha,
	                      "decomposition", best_kernel ? "moving_average" : "none",
	                      "windows", (json_int_t)g.n, "fits_tried", (json_int_t)tried);
	if (best_kernel)
		json_object_set_new(c->detail, "kernel", json_integer(best_kernel));
	json_object_set_new(c->detail, "base", json_string(based ? "repeat_last" : "none"));
	/* the fit of the lowest validation loss, when the rule kept a simpler */
	if (lowest_fit) {
		json_object_set_new(c->detail, "lowest_loss_fit", lowest_fit);
		lowest_fit = NULL;
	}
out:
	json_decref(lowest_fit);
	for (int i = 0; probes && i < n_kernel * (int)n_alpha; i++)
		cand_free(&probes[i]);
	free(probes);
	free(list);
	free(base);
	free(bbase);
	tf_gram_free(&g);
	free(w);
	free(b);
	return rv;
}

/* ------------------------------------------------------------------ naive */

/* The mean training target in m's linear units (a regression's naive). */
typedef struct mean_arg {
	double *sum, *count;
} mean_arg;

static void
add_to_mean(void *arg, const tf_model *m, const float *x, float *y, int64_t S)
{
	mean_arg *a = arg;
	int64_t od = m->head.out_dim;

	(void)x;
	for (int64_t i = 0; i < S * od; i++)
		if (isfinite(y[i])) {
			a->sum[i % od] += y[i];
			a->count[i % od] += 1;
		}
}

static int
training_mean(run *r, tf_model *m, double *mean)
{
	int64_t od = m->head.out_dim;
	mean_arg a = {mean, calloc((size_t)od, sizeof(double))};
	int rv;

	if (a.count == NULL)
		return LOOM_ENOMEM;
	memset(mean, 0, (size_t)od * sizeof *mean);
	rv = each_training_batch(r, m, add_to_mean, &a);
	for (int64_t j = 0; j < od; j++)
		mean[j] = a.count[j] > 0 ? mean[j] / a.count[j] : 0.0;
	free(a.count);
	return rv;
}

/* The naive method into m: the spec's, or by the one-standard-error rule
 * among those that apply (repeat-last, seasonal-naive, drift, in that
 * order of simplicity; the mean for a regression). */
static int
fit_naive(run *r, tf_model *m, cand *c, char **err)
{
	const tf_spec *s = &r->spec;
	bool forecast = s->task == TF_TASK_FORECAST;
	int64_t f = map_in(m), od = m->head.out_dim;
	int64_t K = forecast && !s->channel_independent ? r->ds.n_out : 1;
	const int64_t *target_in = forecast && !s->channel_independent ? r->target_in : NULL;
	double *mean = NULL;
	float *w = malloc((size_t)(od * f) * sizeof *w), *b = malloc((size_t)od * sizeof *b);
	json_t *skipped = json_object(), *tried = json_object();
	cand methods[TF_NAIVE_COUNT], *list[TF_NAIVE_COUNT];
	int which[TF_NAIVE_COUNT], n = 0, best = -1, lowest, rv = 0;

	memset(methods, 0, sizeof methods);
	if (!w || !b) {
		rv = LOOM_ENOMEM;
		goto out;
	}
	if (!forecast) {
		if ((mean = calloc((size_t)od, sizeof *mean)) == NULL) {
			rv = LOOM_ENOMEM;
			goto out;
		}
		if ((rv = training_mean(r, m, mean)) != 0)
			goto out;
	}
	for (int method = 0; method < TF_NAIVE_COUNT; method++) {
		cand *mc = &methods[n];
		if ((s->naive_method >= 0 && method != s->naive_method) ||
		    (s->naive_method < 0 && forecast == (method == TF_NAIVE_MEAN)))
			continue;
		/* a season of one step is repeat-last again */
		if (method == TF_NAIVE_SEASONAL && r->ds.season == 1)
			continue;
		if (tf_naive_map(method, r->ds.season, s->context, m->cin, forecast ? s->horizon : 1,
		                 forecast ? K : od, target_in, mean, w, b) != 0) {
			json_object_set_new(skipped, tf_naive_name(method),
			                    json_string(method == TF_NAIVE_SEASONAL
			                                    ? "no season of 2 steps or more within "
			                                      "model.context"
			                                : method == TF_NAIVE_DRIFT
			                                    ? "model.context is under 2 steps"
			                                    : "a target is not an input channel"));
			continue;
		}
		set_map(m, w, b);
		mc->simple = method;
		if ((rv = val_loss(r, m, mc)) != 0 || (rv = keep_map(mc, m)) != 0)
			goto out;
		json_object_set_new(tried, tf_naive_name(method),
		                    isfinite(mc->val) ? json_real(mc->val) : json_null());
		which[n] = method;
		list[n] = mc;
		n++;
	}
	if (n == 0) {
		*err = loom_strfmt("model.kind: no naive method applies to this data and spec (%s)",
		                   s->naive_method >= 0 ? "model.naive.method names one that does not"
		                                        : "a target that is not an input channel");
		rv = LOOM_EINVAL;
		goto out;
	}
	best = pick(r, list, n, &lowest);
	if (best < 0)
		best = 0;
	/* the chosen method's map and losses become the candidate */
	free(c->w);
	free(c->b);
	free(c->wl);
	c->w = list[best]->w;
	c->b = list[best]->b;
	c->wl = list[best]->wl;
	c->val = list[best]->val;
	list[best]->w = list[best]->b = NULL;
	list[best]->wl = NULL;
	set_map(m, c->w, c->b);
	c->detail = json_pack("{s:s, s:o}", "method", tf_naive_name(which[best]), "validation_loss",
	                      tried);
	tried = NULL;
	if (which[best] == TF_NAIVE_SEASONAL)
		json_object_set_new(c->detail, "season", json_integer(r->ds.season));
	if (lowest >= 0 && lowest != best)
		json_object_set_new(c->detail, "chosen_by",
		                    json_string("the simplest method within one standard error of "
		                                "the lowest validation loss"));
	if (json_object_size(skipped) > 0)
		json_object_set(c->detail, "not_applicable", skipped);
out:
	for (int i = 0; i < TF_NAIVE_COUNT; i++)
		cand_free(&methods[i]);
	json_decref(skipped);
	json_decref(tried);
	free(mean);
	free(w);
	free(b);
	return rv;
}

/* ------------------------------------------------------------------ scores */

/* The validation and test metrics of m into c. */
static int
score(run *r, tf_model *m, cand *c)
{
	double loss;
	int rv;

	json_decref(c->validation);
	json_decref(c->test);
	c->validation = json_object();
	c->test = json_object();
	if (r->ds.n_windows[1] > 0 && (rv = evaluate(r, m, 1, "", c->validation, &loss, NULL)) != 0)
		return rv;
	if (r->ds.n_windows[2] > 0 && (rv = evaluate(r, m, 2, "", c->test, &loss, NULL)) != 0)
		return rv;
	return 0;
}

/* Copy the Transformer's weights into the MIXED model (the same tensors
 * by name, plus the linear ones). */
static int
copy_transformer(const tf_model *from, tf_model *to)
{
	for (int i = 0; i < to->n_tensors; i++) {
		const tf_tensor *t = &to->tensors[i];
		const tf_tensor *s = tf_model_tensor(from, t->name);
		if (i == to->lin || i == to->lin + 1 || i == to->mix)
			continue;
		if (s == NULL || s->numel != t->numel)
			return LOOM_EINTERNAL;
		memcpy(to->params + t->offset, from->params + s->offset,
		       (size_t)t->numel * sizeof(float));
	}
	return 0;
}

static json_t *
cand_json(const cand *c, bool chosen)
{
	json_t *o = json_pack("{s:s, s:b}", "name", c->name, "chosen", chosen);
	if (c->detail)
		json_object_set(o, "detail", c->detail);
	json_object_set(o, "validation", c->validation ? c->validation : json_object());
	json_object_set(o, "test", c->test ? c->test : json_object());
	return o;
}

/* Tracked metrics of a candidate: auto/NAME/val_loss, auto/NAME/test_mae …;
 * the averages of the best two and three are ensemble_of_2 and
 * ensemble_of_3, series of their own. */
static void
cand_metrics(run *r, const cand *c)
{
	static const char *const splits[2] = {"val", "test"};
	const json_t *objs[2] = {c->validation, c->test};
	char base[48];

	if (c->simple == SIMPLE_LINEAR_AVERAGE || c->simple == SIMPLE_ENSEMBLE)
		snprintf(base, sizeof base, "ensemble_of_%zu",
		         json_array_size(json_object_get(c->detail, "members")));
	else
		snprintf(base, sizeof base, "%s", c->name);
	for (int i = 0; i < 2; i++) {
		const char *key;
		json_t *v;
		json_object_foreach((json_t *)objs[i], key, v) {
			char name[128];
			snprintf(name, sizeof name, "auto/%s/%s_%s", base, splits[i], key);
			if (json_is_number(v))
				run_metric(r, name, json_number_value(v), LOOM_METRIC_FINAL);
		}
	}
}

/* Write best.safetensors for m with the run's info, the model object
 * replaced. */
static int
save_best(run *r, const tf_model *m, json_t *model, char **err)
{
	json_t *info = json_deep_copy(r->info);
	int rv;

	json_object_set(info, "model", model);
	json_object_set_new(info, "parameters", json_integer(m->n_params));
	rv = save_weights(r, m, info, "best.safetensors", err);
	json_decref(info);
	return rv;
}

/* ------------------------------------------------------------------ one kind */

static int
choose_single(run *r, tf_model **final, json_t *out, char **err)
{
	const tf_spec *s = &r->spec;
	cand c;
	json_t *model;
	int rv;

	memset(&c, 0, sizeof c);
	if (r->model.cfg.form != TF_FORM_LINEAR || s->linear_fit == TF_FIT_TRAIN) {
		/* trained: the best epoch's weights are the model */
		json_object_set_new(out, "model",
		                    model_info(&r->model,
		                               s->kind == TF_KIND_LINEAR ? "linear" : "transformer",
		                               NULL));
		if (s->kind == TF_KIND_LINEAR)
			json_object_set_new(json_object_get(out, "model"), "detail",
			                    json_pack("{s:s}", "fit", "train"));
		*final = &r->model;
		return 0;
	}
	rv = s->kind == TF_KIND_NAIVE ? fit_naive(r, &r->model, &c, err)
	                              : fit_ridge(r, &r->model, &c, err);
	if (rv != 0)
		goto out;
	model = model_info(&r->model, s->kind == TF_KIND_NAIVE ? "naive" : "linear", c.detail);
	json_object_set(r->info, "model", model);
	rv = save_best(r, &r->model, model, err);
	json_object_set_new(out, "model", model);
	say(r, LOOM_LOG_INFO, "%s model fitted: validation loss %.6g",
	    s->kind == TF_KIND_NAIVE ? "naive" : "linear", c.val);
	*final = &r->model;
out:
	cand_free(&c);
	return rv;
}

/* ------------------------------------------------------------------ auto */

/* Order candidates by validation loss, ties to the simpler. */
static int
by_val(const void *pa, const void *pb)
{
	const cand *a = *(const cand *const *)pa, *b = *(const cand *const *)pb;
	bool fa = isfinite(a->val), fb = isfinite(b->val);
	if (fa != fb)
		return fa ? -1 : 1;
	if (fa && a->val != b->val)
		return a->val < b->val ? -1 : 1;
	return a->simple - b->simple;
}

static const char *
plural_names(cand *const *m, int k, char *buf, size_t size)
{
	size_t n = 0;
	buf[0] = '\0';
	for (int i = 0; i < k && n < size; i++)
		n += (size_t)snprintf(buf + n, size - n, "%s%s", i == 0 ? "" : i == k - 1 ? " and " : ", ",
		                      m[i]->name);
	return buf;
}

/* A debug line with the seconds since *t0, which it resets. */
static void
lap(run *r, const char *what, uint64_t *t0)
{
	uint64_t now = r->host->clock_mono_ns();
	say(r, LOOM_LOG_DEBUG, "auto: %s in %.3f s", what, (double)(now - *t0) / 1e9);
	*t0 = now;
}

/* The average of the k best singles into e (its map, or the MIXED model
 * when the Transformer is among them), scored. */
static int
ensemble(run *r, tf_choice *ch, cand *const *best, int k, cand *e, char **err)
{
	tf_model *lm = &ch->lin;
	int64_t nw = lm->head.out_dim * map_in(lm), nb = lm->head.out_dim;
	json_t *names = json_array();
	int rv;

	snprintf(e->name, sizeof e->name, "ensemble");
	e->simple = SIMPLE_LINEAR_AVERAGE;
	e->w = calloc((size_t)nw, sizeof *e->w);
	e->b = calloc((size_t)nb, sizeof *e->b);
	if (!e->w || !e->b) {
		json_decref(names);
		return LOOM_ENOMEM;
	}
	for (int i = 0; i < k; i++) {
		json_array_append_new(names, json_string(best[i]->name));
		if (best[i]->transformer) {
			e->transformer = true;
			continue;
		}
		for (int64_t j = 0; j < nw; j++)
			e->w[j] += best[i]->w[j] / (float)k;
		for (int64_t j = 0; j < nb; j++)
			e->b[j] += best[i]->b[j] / (float)k;
	}
	e->mix = e->transformer ? 1.0f / (float)k : 0.0f;
	if (e->transformer)
		e->simple = SIMPLE_ENSEMBLE;
	e->detail = json_pack("{s:o, s:s}", "members", names, "weights", "equal");
	if (!e->transformer) {
		set_map(lm, e->w, e->b);
		if ((rv = val_loss(r, lm, e)) != 0 || (rv = score(r, lm, e)) != 0)
			return rv;
		return 0;
	}
	if (!ch->mixed_up) {
		if ((rv = build_form(r, TF_FORM_MIXED, &ch->mixed, err)) != 0)
			return rv;
		ch->mixed_up = true;
		if ((rv = copy_transformer(&r->model, &ch->mixed)) != 0) {
			*err = strdup("cannot copy the Transformer's weights into the ensemble");
			return rv;
		}
	}
	set_map(&ch->mixed, e->w, e->b);
	ch->mixed.params[ch->mixed.tensors[ch->mixed.mix].offset] = e->mix;
	if ((rv = val_loss(r, &ch->mixed, e)) != 0 || (rv = score(r, &ch->mixed, e)) != 0)
		return rv;
	return 0;
}

static int
choose_auto(run *r, tf_choice *ch, tf_model **final, json_t *out, char **err)
{
	uint64_t t0 = r->host->clock_mono_ns();
	const tf_spec *s = &r->spec;
	cand singles[3], ens[2], *order[3], *chosen;
	int n = 0, n_ens = 0, rv;
	json_t *list, *model;
	char why[512], names[128];

	memset(singles, 0, sizeof singles);
	memset(ens, 0, sizeof ens);

	/* the Transformer, as trained */
	cand *t = &singles[n++];
	snprintf(t->name, sizeof t->name, "transformer");
	t->simple = SIMPLE_TRANSFORMER;
	t->transformer = true;
	t->detail = json_pack("{s:I, s:I}", "best_epoch", (json_int_t)(r->st.best_epoch + 1),
	                      "parameters", (json_int_t)r->model.n_params);
	if ((rv = val_loss(r, &r->model, t)) != 0 || (rv = score(r, &r->model, t)) != 0)
		goto out;
	lap(r, "the Transformer scored", &t0);

	/* the linear map and the naive forecasts, on the same windows */
	if ((rv = build_form(r, TF_FORM_LINEAR, &ch->lin, err)) != 0)
		goto out;
	ch->lin_up = true;
	cand *l = &singles[n++];
	snprintf(l->name, sizeof l->name, "linear");
	l->simple = SIMPLE_LINEAR;
	rv = fit_ridge(r, &ch->lin, l, err);
	if (rv == LOOM_EINVAL || rv == LOOM_ERANGE) {
		/* too wide for a closed form, no complete window, or singular at
		 * every penalty: auto goes on without it */
		say(r, LOOM_LOG_WARN, "auto: no linear candidate: %s", *err);
		free(*err);
		*err = NULL;
		cand_free(l);
		n--;
	} else if (rv != 0 || (rv = score(r, &ch->lin, l)) != 0) {
		goto out;
	}
	lap(r, "the linear model fitted and scored", &t0);
	cand *nv = &singles[n];
	snprintf(nv->name, sizeof nv->name, "naive");
	nv->simple = SIMPLE_NAIVE;
	rv = fit_naive(r, &ch->lin, nv, err);
	if (rv == LOOM_EINVAL) {
		/* no naive method applies (a target that is not an input) */
		say(r, LOOM_LOG_INFO, "auto: no naive candidate: %s", *err);
		free(*err);
		*err = NULL;
		cand_free(nv);
	} else if (rv != 0 || (rv = score(r, &ch->lin, nv)) != 0) {
		goto out;
	} else {
		n++;
	}

	for (int i = 0; i < n; i++)
		order[i] = &singles[i];
	qsort(order, (size_t)n, sizeof *order, by_val);
	lap(r, "the naive model fitted and scored", &t0);

	/* the averages of the best two and three, as candidates of their own */
	if (s->ensemble != TF_ENSEMBLE_NEVER)
		for (int k = 2; k <= n && k <= 3; k++) {
			cand *e = &ens[n_ens++];
			if ((rv = ensemble(r, ch, order, k, e, err)) != 0)
				goto out;
			lap(r, "an average scored", &t0);
		}
	{
		cand *all[5];
		int n_all = 0, lowest, at;
		if (s->ensemble == TF_ENSEMBLE_ALWAYS && n_ens > 0) {
			for (int i = 0; i < n_ens; i++)
				all[n_all++] = &ens[i];
		} else {
			for (int i = 0; i < n; i++)
				all[n_all++] = order[i];
			for (int i = 0; i < n_ens; i++)
				all[n_all++] = &ens[i];
		}
		at = pick(r, all, n_all, &lowest);
		if (!s->choose_one_se && lowest >= 0) {
			/* the lowest; a tie (within a millionth) to the simpler */
			at = lowest;
			for (int i = 0; i < n_all; i++)
				if (isfinite(all[i]->val) &&
				    all[i]->val <= all[lowest]->val + 1e-6 * fabs(all[lowest]->val) &&
				    all[i]->simple < all[at]->simple)
					at = i;
		}
		chosen = all[at < 0 ? 0 : at];
		if (s->ensemble == TF_ENSEMBLE_ALWAYS && n_ens > 0)
			snprintf(why, sizeof why,
			         "model.auto.ensemble is \"always\": the better of the averages");
		else if (lowest >= 0 && all[lowest] != chosen && s->choose_one_se)
			snprintf(why, sizeof why,
			         "the simplest model within one standard error of the lowest validation "
			         "loss (%s, %.6g); a more complex one must beat it by more than the "
			         "validation split can tell from chance",
			         all[lowest]->name, all[lowest]->val);
		else if (lowest >= 0 && all[lowest] != chosen)
			snprintf(why, sizeof why,
			         "the lowest validation loss, tied with %s's; a tie goes to the simpler",
			         all[lowest]->name);
		else
			snprintf(why, sizeof why, "the lowest validation loss");
		if (chosen->simple == SIMPLE_LINEAR_AVERAGE || chosen->simple == SIMPLE_ENSEMBLE) {
			int k = (int)json_array_size(json_object_get(chosen->detail, "members"));
			snprintf(why + strlen(why), sizeof why - strlen(why), ": the average of %s",
			         plural_names(order, k, names, sizeof names));
		}
	}

	/* the chosen model into its form, best.safetensors, metrics.json */
	if (!chosen->transformer) {
		set_map(&ch->lin, chosen->w, chosen->b);
		*final = &ch->lin;
	} else if (chosen->simple == SIMPLE_ENSEMBLE) {
		/* an average with the Transformer */
		set_map(&ch->mixed, chosen->w, chosen->b);
		ch->mixed.params[ch->mixed.tensors[ch->mixed.mix].offset] = chosen->mix;
		*final = &ch->mixed;
	} else {
		*final = &r->model;
	}
	{
		json_t *detail = json_deep_copy(chosen->detail ? chosen->detail : json_object());
		json_object_set_new(detail, "chosen_by", json_string(why));
		json_object_set_new(detail, "validation_loss", json_real(chosen->val));
		model = model_info(*final, chosen->name, detail);
		json_decref(detail);
	}
	if ((rv = save_best(r, *final, model, err)) != 0) {
		json_decref(model);
		goto out;
	}
	json_object_set_new(out, "model", model);
	list = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(list, cand_json(&singles[i], &singles[i] == chosen));
	for (int i = 0; i < n_ens; i++)
		json_array_append_new(list, cand_json(&ens[i], &ens[i] == chosen));
	json_object_set_new(out, "candidates", list);
	for (int i = 0; i < n; i++)
		cand_metrics(r, &singles[i]);
	for (int i = 0; i < n_ens; i++)
		cand_metrics(r, &ens[i]);
	{
		char line[1024];
		size_t len = 0;
		for (int i = 0; i < n && len < sizeof line; i++)
			len += (size_t)snprintf(line + len, sizeof line - len, "%s%s %.6g",
			                        i ? ", " : "", order[i]->name, order[i]->val);
		for (int i = 0; i < n_ens && len < sizeof line; i++)
			len += (size_t)snprintf(line + len, sizeof line - len, ", ensemble of %d %.6g",
			                        i + 2, ens[i].val);
		say(r, LOOM_LOG_INFO, "auto: validation loss %s; kept %s (%s)", line, chosen->name,
		    why);
	}
out:
	for (int i = 0; i < 3; i++)
		cand_free(&singles[i]);
	for (int i = 0; i < 2; i++)
		cand_free(&ens[i]);
	return rv;
}

int
tf_choose(run *r, tf_choice *ch, tf_model **final, json_t *out, char **err)
{
	uint64_t t0 = r->host->clock_mono_ns();
	int rv;

	*final = &r->model;
	rv = r->spec.kind == TF_KIND_AUTO ? choose_auto(r, ch, final, out, err)
	                                  : choose_single(r, final, out, err);
	if (rv == 0)
		json_object_set_new(json_object_get(out, "model"), "fit_seconds",
		                    json_real((double)(r->host->clock_mono_ns() - t0) / 1e9));
	return rv;
}

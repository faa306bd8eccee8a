/* head-anomaly — reconstructs the input window from the flattened encoder
 * output through one linear layer; a window that reconstructs badly is
 * anomalous.
 *
 * Per sequence: out = target = context · channels values (the window,
 * element l·channels + c); loss: mse, the mean over sequences · out_dim;
 * result = 1 value, the anomaly score: the mean squared reconstruction
 * error of the sequence (predict reads the window from io->target); truth
 * = 1 value: 1 anomalous, 0 normal, NaN unknown.
 *
 * One buffer parameter, "threshold" [1] (saved, never trained, initially
 * 0): a score above it is anomalous.  calibrate sets it to the
 * model.threshold_quantile [0.99] quantile of a split's scores (linear
 * interpolation between closest ranks, numpy's default).
 *
 * Metrics over a split: score_mean, score_p50, score_p99 (the same
 * quantile), threshold, anomaly_rate (the share of scores above the
 * threshold) and, when any truth is known, precision, recall and f1 of
 * "score > threshold" against the known truth (a zero denominator gives
 * 0).  The metrics cannot read parameters, so the threshold they use is
 * the one the last predict (or calibrate) saw. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <loom/head.h>

#include "kernels/heads/head-common.h"

#define THRESHOLD 2 /* its index among the parameters */

static int
anomaly_init(loom_instance *ins, const loom_host *host, void *ctx)
{
	hc_init(ctx, ins, host, LOOM_TASK_ANOMALY);
	return 0;
}

static int
anomaly_configure(void *ctx, const loom_head_shape *shape, loom_head_layout *layout)
{
	hc_ctx *c = ctx, next;
	loom_param_spec *t;
	uint64_t out;
	int rv;

	if ((rv = hc_shape_begin(c, shape, &next)) != 0)
		return rv;
	if (shape->context == 0 || shape->channels == 0) {
		hc_error(c, "configure: a window of %u steps × %u channels is empty; anomaly "
		            "detection reconstructs model.context steps of at least one channel",
		         shape->context, shape->channels);
		return LOOM_EINVAL;
	}
	out = (uint64_t)shape->context * shape->channels;
	if (out > 0x7fffffffu) {
		hc_error(c, "configure: context × channels = %llu values is too many to "
		            "reconstruct; shorten model.context",
		         (unsigned long long)out);
		return LOOM_EINVAL;
	}
	if ((rv = hc_layout(c, &next, (uint32_t)out, (uint32_t)out, 1, 1, 0, layout)) != 0)
		return rv;
	t = &layout->params[THRESHOLD];
	memset(t, 0, sizeof *t);
	strcpy(t->name, "threshold");
	t->ndim = 1;
	t->dims[0] = 1;
	t->init = LOOM_INIT_ZERO;
	t->flags = LOOM_PARAM_BUFFER | LOOM_PARAM_NO_DECAY;
	layout->n_params = 3;
	next.n_params = 3;
	next.threshold = 0;
	hc_commit(c, &next);
	return 0;
}

static int
anomaly_forward(void *ctx, const loom_head_io *io)
{
	return hc_forward(ctx, io);
}

static int
anomaly_loss(void *ctx, const loom_head_io *io, double *loss)
{
	return hc_regression_loss(ctx, io, loss);
}

static int
anomaly_backward(void *ctx, const loom_head_io *io)
{
	return hc_backward(ctx, io);
}

static int
anomaly_predict(void *ctx, const loom_head_io *io, float *results)
{
	hc_ctx *c = ctx;
	uint32_t d = c->out_dim;
	int rv;

	if ((rv = hc_check_io(c, io, HC_NEED_OUT | HC_NEED_TARGET, "predict")) != 0)
		return rv;
	if (results == NULL && io->sequences > 0) {
		hc_error(c, "predict: results is NULL");
		return LOOM_EINVAL;
	}
	for (uint32_t s = 0; s < io->sequences; s++) {
		const float *o = io->out + (size_t)s * d, *t = io->target + (size_t)s * d;
		double sum = 0;
		for (uint32_t j = 0; j < d; j++) {
			double e = (double)o[j] - t[j];
			sum += e * e;
		}
		results[s] = (float)(sum / d);
	}
	if (io->params != NULL && io->params[THRESHOLD] != NULL)
		c->threshold = io->params[THRESHOLD][0];
	return 0;
}

/* ------------------------------------------------------------------ metrics */

typedef struct state {
	double *score;       /* every score added */
	float *truth;        /* and its truth */
	size_t n, cap;
	float threshold;     /* as the last metrics_add saw it */
} state;

static int
anomaly_metrics_new(void *ctx, void **out)
{
	hc_ctx *c = ctx;
	state *st;

	if (!c->configured) {
		hc_error(c, "metrics_new: called before configure succeeded");
		return LOOM_ESTATE;
	}
	if ((st = calloc(1, sizeof *st)) == NULL)
		return LOOM_ENOMEM;
	st->threshold = c->threshold;
	*out = st;
	return 0;
}

static int
anomaly_metrics_add(void *ctx, void *sp, const float *results, const float *truth,
                    uint32_t sequences)
{
	hc_ctx *c = ctx;
	state *st = sp;

	if (sequences > 0 && (results == NULL || truth == NULL)) {
		hc_error(c, "metrics_add: results or truth is NULL");
		return LOOM_EINVAL;
	}
	for (uint32_t s = 0; s < sequences; s++) {
		if (!isnan(truth[s]) && truth[s] != 0 && truth[s] != 1) {
			hc_error(c, "metrics_add: the truth of sequence %u is %g; use 1 (anomalous), 0 "
			            "(normal) or NaN (unknown)",
			         s, (double)truth[s]);
			return LOOM_EINVAL;
		}
	}
	if (st->n + sequences > st->cap) {
		size_t cap = st->cap ? st->cap : 256;
		double *score;
		float *tr;
		while (cap < st->n + sequences)
			cap *= 2;
		if ((score = realloc(st->score, cap * sizeof *score)) == NULL)
			return LOOM_ENOMEM;
		st->score = score;
		if ((tr = realloc(st->truth, cap * sizeof *tr)) == NULL)
			return LOOM_ENOMEM;
		st->truth = tr;
		st->cap = cap;
	}
	for (uint32_t s = 0; s < sequences; s++) {
		st->score[st->n] = results[s];
		st->truth[st->n] = truth[s];
		st->n++;
	}
	st->threshold = c->threshold;
	return 0;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The state's scores that are not NaN, sorted (free it); *n their count. */
static double *
sorted_scores(const state *st, size_t *n)
{
	double *v = malloc((st->n ? st->n : 1) * sizeof *v);
	size_t m = 0;

	if (v == NULL)
		return NULL;
	for (size_t i = 0; i < st->n; i++) {
		if (!isnan(st->score[i]))
			v[m++] = st->score[i];
	}
	qsort(v, m, sizeof *v, cmp_double);
	*n = m;
	return v;
}

static int
anomaly_metrics_report(void *ctx, const void *sp, loom_value_fn fn, void *arg)
{
	const state *st = sp;
	double sum = 0, thr = st->threshold, *v;
	uint64_t above = 0, tp = 0, fp = 0, fn_ = 0, known = 0;
	size_t m = 0;
	int rv;

	(void)ctx;
	for (size_t i = 0; i < st->n; i++) {
		bool flagged = st->score[i] > thr;
		sum += st->score[i];
		above += flagged;
		if (isnan(st->truth[i]))
			continue;
		known++;
		if (flagged && st->truth[i] == 1)
			tp++;
		else if (flagged)
			fp++;
		else if (st->truth[i] == 1)
			fn_++;
	}
	if ((v = sorted_scores(st, &m)) == NULL)
		return LOOM_ENOMEM;
	rv = fn(arg, "score_mean", st->n ? sum / (double)st->n : NAN);
	if (rv == 0)
		rv = fn(arg, "score_p50", hc_quantile(v, m, 0.5));
	if (rv == 0)
		rv = fn(arg, "score_p99", hc_quantile(v, m, 0.99));
	free(v);
	if (rv == 0)
		rv = fn(arg, "threshold", thr);
	if (rv == 0)
		rv = fn(arg, "anomaly_rate", st->n ? (double)above / (double)st->n : NAN);
	if (rv != 0 || known == 0)
		return rv;
	if ((rv = fn(arg, "precision", tp + fp ? (double)tp / (double)(tp + fp) : 0.0)) != 0 ||
	    (rv = fn(arg, "recall", tp + fn_ ? (double)tp / (double)(tp + fn_) : 0.0)) != 0 ||
	    (rv = fn(arg, "f1", tp ? 2.0 * (double)tp / (double)(2 * tp + fp + fn_) : 0.0)) != 0)
		return rv;
	return 0;
}

static void
anomaly_metrics_free(void *ctx, void *sp)
{
	state *st = sp;
	(void)ctx;
	if (st == NULL)
		return;
	free(st->score);
	free(st->truth);
	free(st);
}

/* threshold = the model.threshold_quantile quantile of the state's scores. */
static int
anomaly_calibrate(void *ctx, float *const *params, const void *sp)
{
	hc_ctx *c = ctx;
	const state *st = sp;
	double *v, q = c->opt.threshold_quantile, thr;
	size_t m = 0;

	if (!c->configured) {
		hc_error(c, "calibrate: called before configure succeeded");
		return LOOM_ESTATE;
	}
	if (params == NULL || params[THRESHOLD] == NULL || st == NULL) {
		hc_error(c, "calibrate: the parameters or the metrics state are missing");
		return LOOM_EINVAL;
	}
	if ((v = sorted_scores(st, &m)) == NULL)
		return LOOM_ENOMEM;
	if (m == 0) {
		free(v);
		hc_error(c, "calibrate: no scores to take the %g quantile of; the validation split "
		            "needs at least one window",
		         q);
		return LOOM_EINVAL;
	}
	thr = hc_quantile(v, m, q);
	free(v);
	params[THRESHOLD][0] = (float)thr;
	c->threshold = (float)thr;
	c->host->log(c->ins, LOOM_LOG_INFO,
	             "anomaly threshold %g: the %g quantile of %zu scores (linear interpolation)",
	             thr, q, m);
	return 0;
}

/* Headline: loss, and f1, precision and recall of the flagged windows
 * (when labels are known), and the share flagged; the score quantiles and
 * the threshold are details. */
static const char *const headline[] = {"loss", "f1", "precision", "recall", "anomaly_rate", NULL};

static const loom_head_ops ops = {
	.size = sizeof(loom_head_ops),
	.task = LOOM_TASK_ANOMALY,
	.configure = anomaly_configure,
	.forward = anomaly_forward,
	.loss = anomaly_loss,
	.backward = anomaly_backward,
	.predict = anomaly_predict,
	.metrics_new = anomaly_metrics_new,
	.metrics_add = anomaly_metrics_add,
	.metrics_report = anomaly_metrics_report,
	.metrics_free = anomaly_metrics_free,
	.calibrate = anomaly_calibrate,
	.headline = headline,
};

LOOM_PLUGIN_DEFINE(head_anomaly,
                   .kind = LOOM_KIND_HEAD,
                   .name = "head-anomaly",
                   .version = "1.0.0",
                   .description = "anomaly head: window reconstruction, error score, threshold",
                   .ctx_size = sizeof(hc_ctx),
                   .init = anomaly_init,
                   .fini = hc_fini,
                   .ops = &ops)

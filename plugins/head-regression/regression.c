/* head-regression — the values of the target columns at the window's last
 * step, from the flattened encoder output through one linear layer.
 *
 * Per sequence: out = target = result = truth = targets values.  Loss:
 * model.loss, mse [default], mae or huber (model.huber_delta), the mean
 * over sequences · targets.  Metrics over a split, NaN truth skipped: mse
 * and mae over every value, and r2: per target 1 − SSres/SStot (SStot
 * around that target's mean over the split; NaN when SStot is 0), averaged
 * over the targets where it is defined (NaN when it is for none). */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include <loom/head.h>

#include "kernels/heads/head-common.h"

static int
regression_init(loom_instance *ins, const loom_host *host, void *ctx)
{
	hc_init(ctx, ins, host, LOOM_TASK_REGRESSION);
	return 0;
}

static int
regression_configure(void *ctx, const loom_head_shape *shape, loom_head_layout *layout)
{
	hc_ctx *c = ctx, next;
	uint32_t k;
	int rv;

	if ((rv = hc_shape_begin(c, shape, &next)) != 0)
		return rv;
	k = shape->targets;
	if (k == 0) {
		hc_error(c, "configure: targets is 0; regression needs at least one target column "
		            "(data.target)");
		return LOOM_EINVAL;
	}
	if ((rv = hc_layout(c, &next, k, k, k, k, 0, layout)) != 0)
		return rv;
	hc_commit(c, &next);
	return 0;
}

static int
regression_forward(void *ctx, const loom_head_io *io)
{
	return hc_forward(ctx, io);
}

static int
regression_loss(void *ctx, const loom_head_io *io, double *loss)
{
	return hc_regression_loss(ctx, io, loss);
}

static int
regression_backward(void *ctx, const loom_head_io *io)
{
	return hc_backward(ctx, io);
}

static int
regression_predict(void *ctx, const loom_head_io *io, float *results)
{
	return hc_predict_copy(ctx, io, results);
}

/* ------------------------------------------------------------------ metrics */

/* Per target: Welford's running mean and sum of squared deviations of the
 * truth (SStot), and the sum of squared errors (SSres). */
typedef struct target_sums {
	uint64_t n;
	double mean, m2, ssres;
} target_sums;

typedef struct state {
	uint32_t dim;        /* targets */
	uint64_t n;          /* values with known truth */
	double se, ae;
	target_sums *t;      /* [dim] */
} state;

static int
regression_metrics_new(void *ctx, void **out)
{
	hc_ctx *c = ctx;
	state *st;

	if (!c->configured) {
		hc_error(c, "metrics_new: called before configure succeeded");
		return LOOM_ESTATE;
	}
	if ((st = calloc(1, sizeof *st)) == NULL)
		return LOOM_ENOMEM;
	st->dim = c->result_dim;
	if ((st->t = calloc(st->dim, sizeof *st->t)) == NULL) {
		free(st);
		return LOOM_ENOMEM;
	}
	*out = st;
	return 0;
}

static int
regression_metrics_add(void *ctx, void *sp, const float *results, const float *truth,
                       uint32_t sequences)
{
	hc_ctx *c = ctx;
	state *st = sp;

	if (sequences > 0 && (results == NULL || truth == NULL)) {
		hc_error(c, "metrics_add: results or truth is NULL");
		return LOOM_EINVAL;
	}
	for (uint32_t s = 0; s < sequences; s++) {
		for (uint32_t k = 0; k < st->dim; k++) {
			size_t i = (size_t)s * st->dim + k;
			double t = truth[i], e = (double)results[i] - t, d;
			target_sums *ts = &st->t[k];
			if (isnan(t))
				continue;
			st->se += e * e;
			st->ae += fabs(e);
			st->n++;
			ts->n++;
			d = t - ts->mean;
			ts->mean += d / (double)ts->n;
			ts->m2 += d * (t - ts->mean);
			ts->ssres += e * e;
		}
	}
	return 0;
}

static int
regression_metrics_report(void *ctx, const void *sp, loom_value_fn fn, void *arg)
{
	const state *st = sp;
	double n = (double)st->n, r2_sum = 0;
	uint32_t r2_n = 0;
	int rv;

	(void)ctx;
	for (uint32_t k = 0; k < st->dim; k++) {
		const target_sums *ts = &st->t[k];
		if (ts->n > 0 && ts->m2 > 0) {
			r2_sum += 1.0 - ts->ssres / ts->m2;
			r2_n++;
		}
	}
	if ((rv = fn(arg, "mse", st->n ? st->se / n : NAN)) != 0 ||
	    (rv = fn(arg, "mae", st->n ? st->ae / n : NAN)) != 0 ||
	    (rv = fn(arg, "r2", r2_n ? r2_sum / (double)r2_n : NAN)) != 0)
		return rv;
	return 0;
}

static void
regression_metrics_free(void *ctx, void *sp)
{
	state *st = sp;
	(void)ctx;
	if (st == NULL)
		return;
	free(st->t);
	free(st);
}

/* Every metric is a headline one: loss, mae, mse, r2. */
static const char *const headline[] = {"loss", "mae", "mse", "r2", NULL};

static const loom_head_ops ops = {
	.size = sizeof(loom_head_ops),
	.task = LOOM_TASK_REGRESSION,
	.configure = regression_configure,
	.forward = regression_forward,
	.loss = regression_loss,
	.backward = regression_backward,
	.predict = regression_predict,
	.metrics_new = regression_metrics_new,
	.metrics_add = regression_metrics_add,
	.metrics_report = regression_metrics_report,
	.metrics_free = regression_metrics_free,
	.headline = headline,
};

LOOM_PLUGIN_DEFINE(head_regression,
                   .kind = LOOM_KIND_HEAD,
                   .name = "head-regression",
                   .version = "1.0.0",
                   .description = "regression head: target values (flatten + linear)",
                   .ctx_size = sizeof(hc_ctx),
                   .init = regression_init,
                   .fini = hc_fini,
                   .ops = &ops)

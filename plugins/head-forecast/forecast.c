/* head-forecast — the next horizon steps of every target channel, from
 * the flattened encoder output through one linear layer (PatchTST's
 * "flatten head").
 *
 * Per sequence: out = target = result = truth = horizon · targets values,
 * element h·targets + k being step h of target k (with channel
 * independence targets is 1 and each channel is its own sequence).  Loss:
 * model.loss, mse [default], mae or huber (model.huber_delta), the mean
 * over sequences · out_dim.  Metrics over a split, NaN truth skipped: mse,
 * mae, rmse and smape (percent; 200·|p − t| / (|p| + |t|), a 0/0 term
 * counting 0). */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include <loom/head.h>

#include "kernels/heads/head-common.h"

static int
forecast_init(loom_instance *ins, const loom_host *host, void *ctx)
{
	hc_init(ctx, ins, host, LOOM_TASK_FORECAST);
	return 0;
}

static int
forecast_configure(void *ctx, const loom_head_shape *shape, loom_head_layout *layout)
{
	hc_ctx *c = ctx, next;
	uint64_t out;
	int rv;

	if ((rv = hc_shape_begin(c, shape, &next)) != 0)
		return rv;
	if (shape->horizon == 0) {
		hc_error(c, "configure: horizon is 0; a forecast needs model.horizon ≥ 1");
		return LOOM_EINVAL;
	}
	if (shape->targets == 0) {
		hc_error(c, "configure: targets is 0; a forecast needs at least one target channel "
		            "(data.target)");
		return LOOM_EINVAL;
	}
	out = (uint64_t)shape->horizon * shape->targets;
	if (out > 0x7fffffffu) {
		hc_error(c, "configure: horizon × targets = %llu outputs is too many; shorten "
		            "model.horizon",
		         (unsigned long long)out);
		return LOOM_EINVAL;
	}
	if ((rv = hc_layout(c, &next, (uint32_t)out, (uint32_t)out, (uint32_t)out, (uint32_t)out, 0,
	                    layout)) != 0)
		return rv;
	hc_commit(c, &next);
	return 0;
}

static int
forecast_forward(void *ctx, const loom_head_io *io)
{
	return hc_forward(ctx, io);
}

static int
forecast_loss(void *ctx, const loom_head_io *io, double *loss)
{
	return hc_regression_loss(ctx, io, loss);
}

static int
forecast_backward(void *ctx, const loom_head_io *io)
{
	return hc_backward(ctx, io);
}

static int
forecast_predict(void *ctx, const loom_head_io *io, float *results)
{
	return hc_predict_copy(ctx, io, results);
}

/* ------------------------------------------------------------------ metrics */

typedef struct state {
	uint32_t dim;        /* result_dim */
	uint64_t n;          /* values with known truth */
	double se, ae, smape;
} state;

static int
forecast_metrics_new(void *ctx, void **out)
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
	*out = st;
	return 0;
}

static int
forecast_metrics_add(void *ctx, void *sp, const float *results, const float *truth,
                     uint32_t sequences)
{
	hc_ctx *c = ctx;
	state *st = sp;
	size_t n = (size_t)sequences * st->dim;

	if (sequences > 0 && (results == NULL || truth == NULL)) {
		hc_error(c, "metrics_add: results or truth is NULL");
		return LOOM_EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		double t = truth[i], p = results[i], e = p - t, den = fabs(p) + fabs(t);
		if (isnan(t))
			continue;
		st->se += e * e;
		st->ae += fabs(e);
		st->smape += den > 0 ? 200.0 * fabs(e) / den : 0.0;
		st->n++;
	}
	return 0;
}

static int
forecast_metrics_report(void *ctx, const void *sp, loom_value_fn fn, void *arg)
{
	const state *st = sp;
	double n = (double)st->n, mse = st->n ? st->se / n : NAN;
	int rv;

	(void)ctx;
	if ((rv = fn(arg, "mse", mse)) != 0 || (rv = fn(arg, "mae", st->n ? st->ae / n : NAN)) != 0 ||
	    (rv = fn(arg, "rmse", sqrt(mse))) != 0 ||
	    (rv = fn(arg, "smape", st->n ? st->smape / n : NAN)) != 0)
		return rv;
	return 0;
}

static void
forecast_metrics_free(void *ctx, void *sp)
{
	(void)ctx;
	free(sp);
}

/* Every metric is a headline one: loss, mae, rmse, mse, smape. */
static const char *const headline[] = {"loss", "mae", "rmse", "mse", "smape", NULL};

static const loom_head_ops ops = {
	.size = sizeof(loom_head_ops),
	.task = LOOM_TASK_FORECAST,
	.configure = forecast_configure,
	.forward = forecast_forward,
	.loss = forecast_loss,
	.backward = forecast_backward,
	.predict = forecast_predict,
	.metrics_new = forecast_metrics_new,
	.metrics_add = forecast_metrics_add,
	.metrics_report = forecast_metrics_report,
	.metrics_free = forecast_metrics_free,
	.headline = headline,
};

LOOM_PLUGIN_DEFINE(head_forecast,
                   .kind = LOOM_KIND_HEAD,
                   .name = "head-forecast",
                   .version = "1.0.0",
                   .description = "forecasting head: the next horizon steps (flatten + linear)",
                   .ctx_size = sizeof(hc_ctx),
                   .init = forecast_init,
                   .fini = hc_fini,
                   .ops = &ops)

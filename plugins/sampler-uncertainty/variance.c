/* sampler-variance — the rows with the largest forecast or regression uncertainty (scores).
 * The selection is uncertainty.c's; docs/samplers.md gives the formula and
 * the tie-break. */
#include "config.h"

#include "uncertainty.h"

static int
variance_select(void *ctx, const loom_sample_pool *pool, const loom_sample_request *req,
                loom_sample_result *res)
{
	return unc_select(ctx, UNC_VARIANCE, pool, req, res);
}

static const loom_sampler_ops ops = {
	.size = sizeof ops,
	.needs = LOOM_SAMPLE_NEEDS_SCORES,
	.select = variance_select,
};

LOOM_PLUGIN_DEFINE(sampler_variance,
                   .kind = LOOM_KIND_SAMPLER,
                   .flags = LOOM_PLUGIN_THREAD_SAFE,
                   .name = "sampler-variance",
                   .version = "1.0.0",
                   .description = "the rows with the largest forecast or regression uncertainty (scores)",
                   .ctx_size = sizeof(smp_ctx),
                   .init = smp_init,
                   .ops = &ops)

/* sampler-margin — the rows with the smallest gap between the two most likely classes.
 * The selection is uncertainty.c's; docs/samplers.md gives the formula and
 * the tie-break. */
#include "config.h"

#include "uncertainty.h"

static int
margin_select(void *ctx, const loom_sample_pool *pool, const loom_sample_request *req,
              loom_sample_result *res)
{
	return unc_select(ctx, UNC_MARGIN, pool, req, res);
}

static const loom_sampler_ops ops = {
	.size = sizeof ops,
	.needs = LOOM_SAMPLE_NEEDS_PROBS,
	.select = margin_select,
};

LOOM_PLUGIN_DEFINE(sampler_margin,
                   .kind = LOOM_KIND_SAMPLER,
                   .flags = LOOM_PLUGIN_THREAD_SAFE,
                   .name = "sampler-margin",
                   .version = "1.0.0",
                   .description = "the rows with the smallest gap between the two most likely classes",
                   .ctx_size = sizeof(smp_ctx),
                   .init = smp_init,
                   .ops = &ops)

/* sampler-entropy — the rows whose class probabilities have the highest entropy.
 * The selection is uncertainty.c's; docs/samplers.md gives the formula and
 * the tie-break. */
#include "config.h"

#include "uncertainty.h"

static int
entropy_select(void *ctx, const loom_sample_pool *pool, const loom_sample_request *req,
               loom_sample_result *res)
{
	return unc_select(ctx, UNC_ENTROPY, pool, req, res);
}

static const loom_sampler_ops ops = {
	.size = sizeof ops,
	.needs = LOOM_SAMPLE_NEEDS_PROBS,
	.select = entropy_select,
};

LOOM_PLUGIN_DEFINE(sampler_entropy,
                   .kind = LOOM_KIND_SAMPLER,
                   .flags = LOOM_PLUGIN_THREAD_SAFE,
                   .name = "sampler-entropy",
                   .version = "1.0.0",
                   .description = "the rows whose class probabilities have the highest entropy",
                   .ctx_size = sizeof(smp_ctx),
                   .init = smp_init,
                   .ops = &ops)

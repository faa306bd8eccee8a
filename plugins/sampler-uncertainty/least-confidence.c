/* sampler-least-confidence — the rows whose most likely class is least likely (1 − max p).
 * The selection is uncertainty.c's; docs/samplers.md gives the formula and
 * the tie-break. */
#include "config.h"

#include "uncertainty.h"

static int
least_confidence_select(void *ctx, const loom_sample_pool *pool, const loom_sample_request *req,
                        loom_sample_result *res)
{
	return unc_select(ctx, UNC_LEAST_CONFIDENCE, pool, req, res);
}

static const loom_sampler_ops ops = {
	.size = sizeof ops,
	.needs = LOOM_SAMPLE_NEEDS_PROBS,
	.select = least_confidence_select,
};

LOOM_PLUGIN_DEFINE(sampler_least_confidence,
                   .kind = LOOM_KIND_SAMPLER,
                   .flags = LOOM_PLUGIN_THREAD_SAFE,
                   .name = "sampler-least-confidence",
                   .version = "1.0.0",
                   .description = "the rows whose most likely class is least likely (1 − max p)",
                   .ctx_size = sizeof(smp_ctx),
                   .init = smp_init,
                   .ops = &ops)

/* compute-transformer — the core engine: trains the multivariate
 * time-series Transformer of SPEC §5 on CSV data, with a head plugin
 * (forecast, regression, classification, anomaly) on top.  See train.h. */
#include "config.h"

#include <loom/compute.h>

#include "train.h"

typedef struct ctx {
	const loom_host *host;
	loom_instance *ins;
} ctx;

static int
transformer_init(loom_instance *ins, const loom_host *host, void *p)
{
	ctx *c = p;
	c->host = host;
	c->ins = ins;
	return 0;
}

static int
transformer_validate(void *p, const char *spec_json, char **error)
{
	ctx *c = p;
	return tf_validate(c->host, c->ins, spec_json, error);
}

static int
transformer_run(void *p, const loom_job *job)
{
	ctx *c = p;
	return tf_train(c->host, c->ins, job);
}

static const loom_compute_ops ops = {
	.size = sizeof(loom_compute_ops),
	.caps = LOOM_COMPUTE_RESUMABLE,
	.validate = transformer_validate,
	.run = transformer_run,
};

LOOM_PLUGIN_DEFINE(compute_transformer,
                   .kind = LOOM_KIND_COMPUTE,
                   .flags = LOOM_PLUGIN_THREAD_SAFE,
                   .name = "compute-transformer",
                   .version = "1.0.0",
                   .description = "time-series Transformer training (patching, RevIN, heads)",
                   .ctx_size = sizeof(ctx),
                   .init = transformer_init,
                   .ops = &ops)

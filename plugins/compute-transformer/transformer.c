/* compute-transformer — the core engine: trains the multivariate
 * time-series Transformer of SPEC §5 on CSV data, with a head plugin
 * (forecast, regression, classification, anomaly) on top (train.h), and
 * runs a trained one over a file when the job spec has a predict group
 * (batch.h). */
#include "config.h"

#include <stddef.h>
#include <stdint.h>

#include <loom/compute.h>

#include "batch.h"
#include "predict.h"
#include "train.h"

typedef struct ctx {
	const loom_host *host;
	loom_instance *ins;
	int64_t predict_threads;   /* config: 0 = the spec's, else every online core */
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
	if (tf_batch_is(spec_json))
		return tf_batch_validate(c->host, spec_json, error);
	return tf_validate(c->host, c->ins, spec_json, error);
}

static int
transformer_run(void *p, const loom_job *job)
{
	ctx *c = p;
	if (tf_batch_is(job->spec_json))
		return tf_batch_run(c->host, c->ins, (int)c->predict_threads, job);
	return tf_train(c->host, c->ins, job);
}

static int
transformer_model_open(void *p, const char *model_dir, void **model, char **info_json)
{
	ctx *c = p;
	return tf_model_open(c->host, c->ins, model_dir, (int)c->predict_threads, model, info_json);
}

static int
transformer_predict(void *p, void *model, const loom_tensor *input, loom_tensor *output)
{
	(void)p;
	return tf_predict(model, input, output);
}

static int
transformer_predict_spread(void *p, void *model, const loom_tensor *input, loom_tensor *output,
                           loom_tensor *spread, const char *options_json)
{
	(void)p;
	return tf_predict_spread(model, input, output, spread, options_json);
}

/* Instance settings (loomd.conf: config = { predict_threads = 1; }). */
static const loom_config_entry config[] = {
	{LOOM_CONFIG_INT, LOOM_CONFIG_RANGE, "predict_threads", "0", offsetof(ctx, predict_threads),
	 "CPU threads of a model opened for prediction (loom-worker --predict and --serve, the "
	 "inference workers, batch predictions); 0: the job spec's train.threads, else every online core. One "
	 "thread keeps a worker's latency steady on a machine it shares with loomd",
	 0, 1024, NULL, {NULL, NULL}},
	LOOM_CONFIG_END,
};

static void
transformer_model_close(void *p, void *model)
{
	(void)p;
	tf_model_close(model);
}

static const loom_compute_ops ops = {
	.size = sizeof(loom_compute_ops),
	.caps = LOOM_COMPUTE_RESUMABLE | LOOM_COMPUTE_PREDICT,
	.validate = transformer_validate,
	.run = transformer_run,
	.model_open = transformer_model_open,
	.predict = transformer_predict,
	.model_close = transformer_model_close,
	.predict_spread = transformer_predict_spread,
};

LOOM_PLUGIN_DEFINE(compute_transformer,
                   .kind = LOOM_KIND_COMPUTE,
                   .flags = LOOM_PLUGIN_THREAD_SAFE,
                   .name = "compute-transformer",
                   .version = "1.0.0",
                   .description = "time-series Transformer training (patching, RevIN, heads)",
                   .ctx_size = sizeof(ctx),
                   .config = config,
                   .init = transformer_init,
                   .ops = &ops)

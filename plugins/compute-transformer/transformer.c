/* compute-transformer — the core engine: trains the multivariate
 * time-series Transformer of SPEC §5 on CSV data, with a head plugin
 * (forecast, regression, classification, anomaly) on top (train.h), and
 * runs a trained one over a file when the job spec has a predict group
 * (batch.h), or hands the endpoint the windows of a file (model_windows). */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* An opened model: the predictor, and what model_windows needs to read a
 * file as the model reads its data (made on its first call). */
typedef struct served {
	void *tf;
	char *info;                /* the model's description */
	tf_reader *reader;
} served;

static int
transformer_model_open(void *p, const char *model_dir, void **model, char **info_json)
{
	ctx *c = p;
	served *m = calloc(1, sizeof *m);
	int rv;

	*model = NULL;
	if (m == NULL)
		return LOOM_ENOMEM;
	rv = tf_model_open(c->host, c->ins, model_dir, (int)c->predict_threads, &m->tf, info_json);
	if (rv == 0 && (m->info = strdup(*info_json)) == NULL) {
		tf_model_close(m->tf);
		c->host->free(*info_json);
		*info_json = NULL;
		rv = LOOM_ENOMEM;
	}
	if (rv != 0) {
		free(m);
		return rv;
	}
	*model = m;
	return 0;
}

static int
transformer_predict(void *p, void *model, const loom_tensor *input, loom_tensor *output)
{
	served *m = model;
	(void)p;
	return tf_predict(m->tf, input, output);
}

static int
transformer_predict_spread(void *p, void *model, const loom_tensor *input, loom_tensor *output,
                           loom_tensor *spread, const char *options_json)
{
	served *m = model;
	(void)p;
	return tf_predict_spread(m->tf, input, output, spread, options_json);
}

static int
transformer_model_windows(void *p, void *model, const char *path, int64_t from_line,
                          int64_t to_line, int64_t stride, int64_t max_windows,
                          loom_tensor *windows, char **meta_json)
{
	ctx *c = p;
	served *m = model;
	char *err = NULL;
	int rv = 0;

	if (m->reader == NULL)
		rv = tf_reader_open(c->host, c->ins, m->info, &m->reader, &err);
	if (rv == 0)
		rv = tf_reader_windows(m->reader, path, from_line, to_line, stride, max_windows,
		                       windows, meta_json, &err);
	if (err) {
		c->host->log(c->ins, LOOM_LOG_ERROR, "%s", err);
		free(err);
	}
	return rv;
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
	served *m = model;
	(void)p;
	tf_model_close(m->tf);
	tf_reader_close(m->reader);
	free(m->info);
	free(m);
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
	.model_windows = transformer_model_windows,
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

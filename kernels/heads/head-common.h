/* head-common — what the four head plugins (forecast, regression,
 * classification, anomaly) share: the instance context, the model
 * options (the job spec's model group), the layout of the flatten →
 * dropout → linear block, its forward and backward, the regression
 * losses and a quantile.
 *
 * The block, for S sequences of T tokens of width D (in = T·D):
 *
 *   flat  = enc viewed as [S, in]
 *   x     = dropout(flat)            (training with model.dropout > 0)
 *   out   = x · proj.weight^T + proj.bias      proj.weight [out, in]
 *
 * Dropout: element i of flat (i < S·in) is kept iff
 * lk_rand_uniform(io->seed, HC_DROPOUT_STREAM, i) ≥ p and scaled by
 * 1/(1−p), as lk_dropout_forward.  Activations: with dropout, x
 * (max_sequences·in floats) and the gradient scratch for it (as many
 * again); a head adds its own after HC_ACT_EXTRA(ctx).
 *
 * Linked into each head module (kernels/libloomheads.la, a libtool
 * convenience library).  It lives under kernels/ because plugins may
 * include only <loom/...>, kernels/ and their own folder: the four heads
 * share it without reaching into each other's folders. */
#ifndef LOOM_HEAD_COMMON_H
#define LOOM_HEAD_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <loom/head.h>

/* The counter stream of the head's dropout mask (io->seed is already the
 * head's own seed for the step). */
#define HC_DROPOUT_STREAM 0u

/* Indices of the block's parameters in layout.params / io->params. */
#define HC_WEIGHT 0
#define HC_BIAS 1

enum hc_loss {
	HC_LOSS_MSE = 0,
	HC_LOSS_MAE = 1,
	HC_LOSS_HUBER = 2,
	HC_LOSS_CROSSENTROPY = 3,
};

/* The model group's keys a head reads.  Absent keys keep their defaults;
 * other keys of the group (context, d_model …) are not the head's and are
 * ignored. */
typedef struct hc_options {
	double dropout;            /* "dropout" [0.1]: 0 ≤ p < 1 */
	int loss;                  /* "loss": enum hc_loss */
	double huber_delta;        /* "huber_delta" [1.0]: > 0 */
	double threshold_quantile; /* "threshold_quantile" [0.99]: in [0, 1] */
} hc_options;

/* The instance context of every head plugin (ctx_size = sizeof(hc_ctx)). */
typedef struct hc_ctx {
	const loom_host *host;
	loom_instance *ins;
	uint32_t task;             /* loom_task of the module */
	bool configured;

	/* the model's shape, as configure accepted it */
	uint32_t max_sequences;
	uint32_t tokens, d_model;
	int64_t in_dim;            /* tokens · d_model */
	uint32_t context, channels, horizon, targets, classes;
	char **class_names;        /* classes entries (owned), or NULL */
	hc_options opt;

	/* the layout the head answered */
	uint32_t n_params;
	uint32_t out_dim, target_dim, result_dim, truth_dim;
	size_t act_floats;
	size_t act_extra;          /* offset of the head's own activations */

	/* anomaly: the threshold the last predict or calibrate saw (metrics
	 * cannot read parameters) */
	float threshold;
} hc_ctx;

/* Offset of the head's own activation floats, after the block's. */
#define HC_ACT_EXTRA(c) ((c)->act_extra)

/* For each head's init: keep host, instance and the head's task.  fini
 * (for LOOM_PLUGIN_DEFINE) frees what configure took. */
void hc_init(hc_ctx *c, loom_instance *ins, const loom_host *host, uint32_t task);
void hc_fini(void *ctx);

/* Parse the options JSON (NULL or "" gives the defaults) for a task; the
 * loss defaults to mse, crossentropy for classification.  Refuses, with a
 * log line naming the key, malformed JSON, wrong types, values out of
 * range and losses the task does not train with.  0 or LOOM_EINVAL. */
int hc_options_parse(const hc_ctx *c, const char *json, hc_options *o);

/* Validate what every head needs of a shape (size, max_sequences, tokens,
 * d_model, their product) and parse its options into *next, a copy of *c
 * configure then completes.  0 or LOOM_EINVAL after a log line. */
int hc_shape_begin(const hc_ctx *c, const loom_head_shape *shape, hc_ctx *next);

/* Fill the layout of the block with out_dim outputs (proj.weight,
 * proj.bias, act_floats with extra_floats of the head's own after the
 * block's) and the given target/result/truth dims into next and layout.
 * LOOM_EINVAL when the weight would be absurdly large. */
int hc_layout(const hc_ctx *c, hc_ctx *next, uint32_t out_dim, uint32_t target_dim,
              uint32_t result_dim, uint32_t truth_dim, size_t extra_floats,
              loom_head_layout *layout);

/* Make next the instance's configuration (frees the previous one's class
 * names). */
void hc_commit(hc_ctx *c, hc_ctx *next);
/* Free what a configuration in progress took (its class names). */
void hc_discard(hc_ctx *c, hc_ctx *next);

/* Check an io for forward / loss / backward / predict: configured,
 * sequences ≤ max_sequences, the buffers the call needs.  0 or
 * LOOM_EINVAL (LOOM_ESTATE before configure) after a log line. */
enum { HC_NEED_ENC = 1, HC_NEED_OUT = 2, HC_NEED_DOUT = 4, HC_NEED_TARGET = 8,
       HC_NEED_DENC = 16, HC_NEED_PARAMS = 32, HC_NEED_GRADS = 64, HC_NEED_ACTS = 128 };
int hc_check_io(const hc_ctx *c, const loom_head_io *io, unsigned need, const char *op);

/* The block's forward (io->enc → io->out) and backward (io->dout →
 * proj gradients, accumulated; io->denc += d(loss)/d(enc)). */
int hc_forward(const hc_ctx *c, const loom_head_io *io);
int hc_backward(const hc_ctx *c, const loom_head_io *io);

/* results = io->out (sequences × out_dim): forecasts and regressions. */
int hc_predict_copy(const hc_ctx *c, const loom_head_io *io, float *results);

/* Mean mse / mae / huber (opt.loss) over sequences · out_dim elements of
 * io->out against io->target; io->dout = its gradient. */
int hc_regression_loss(const hc_ctx *c, const loom_head_io *io, double *loss);

/* The q-quantile of sorted[n] by linear interpolation between closest
 * ranks (numpy's default "linear"): h = (n−1)·q, x[⌊h⌋] + (h−⌊h⌋)·(x[⌊h⌋+1] −
 * x[⌊h⌋]).  NaN for n == 0. */
double hc_quantile(const double *sorted, size_t n, double q);

/* Log through the host as the instance. */
#define hc_error(c, ...) (c)->host->log((c)->ins, LOOM_LOG_ERROR, __VA_ARGS__)

#endif /* LOOM_HEAD_COMMON_H */

/* model.h — the time-series Transformer of SPEC §5: optional reversible
 * instance normalization, optional channel independence, patch embedding,
 * learned or sinusoidal positions, N pre-LayerNorm encoder layers
 * (multi-head self-attention, GELU feed-forward, dropout), a final
 * LayerNorm, and a head plugin on top.
 *
 * Memory (llm.c style): parameters, gradients and the two AdamW moments each
 * live in one contiguous buffer laid out by one table of tensors (the head's
 * parameters included, after the encoder's); activations kept for the
 * backward pass live in one more buffer, sized for the largest batch.
 * Tensor names and shapes follow PyTorch's nn.TransformerEncoderLayer
 * (norm_first=True), so a checkpoint maps onto a PyTorch model directly. */
#ifndef LOOM_TF_MODEL_H
#define LOOM_TF_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include <loom/head.h>

#include "kernels/kernels.h"

#define TF_NAME_MAX 64
#define TF_MAX_DIMS 4

/* Initializations besides loom_init's (encoder tensors only). */
#define TF_INIT_XAVIER 100 /* uniform ±sqrt(6/(fan_in+fan_out)), MHA in_proj */
#define TF_INIT_UNIFORM 101 /* uniform ±scale (learned positions, PatchTST) */

/* Tensor flags. */
#define TF_NO_DECAY 0x1u  /* no weight decay (biases, norms, positions) */
#define TF_BUFFER 0x2u    /* saved, never trained (head buffers) */
#define TF_HEAD 0x4u      /* belongs to the head plugin */

typedef struct tf_tensor {
	char name[TF_NAME_MAX];
	int ndim;
	int64_t dims[TF_MAX_DIMS];
	int64_t numel;
	int64_t offset;       /* in floats, into params/grads/m/v */
	uint32_t flags;
	uint32_t init;        /* loom_init or TF_INIT_* */
	uint32_t fan_in;
	float scale;
} tf_tensor;

/* What a model is made of.  Every form reads the same input (the window
 * after reversible normalization and the channel split: x' [S, L, cin])
 * and writes the head's outputs [S, out_dim] in the same units, which
 * tf_model_predictions maps back; so the head's loss, predictions and
 * metrics serve every form alike.
 *
 *   TF_FORM_TRANSFORMER  the encoder and the head plugin's block
 *   TF_FORM_LINEAR       out = x'·linear.weight^T + linear.bias, with
 *                        linear.weight [out_dim, L·cin]: ridge- or
 *                        gradient-fitted linear models and the naive
 *                        forecasts, which are fixed linear maps
 *   TF_FORM_MIXED        an average: out = mix · transformer(x') +
 *                        x'·linear.weight^T + linear.bias, the linear part
 *                        already weighted; evaluation only (its linear.* and
 *                        mix are buffers) */
enum tf_form {
	TF_FORM_TRANSFORMER = 0,
	TF_FORM_LINEAR = 1,
	TF_FORM_MIXED = 2,
};

typedef struct tf_model_config {
	int form;               /* enum tf_form */
	int64_t channels;       /* input channels of the data */
	int64_t context;        /* L */
	int64_t patch;          /* P */
	int64_t d_model;        /* D */
	int64_t heads;          /* H */
	int64_t layers;
	int64_t ffn;            /* F */
	double dropout;
	bool revin;
	bool channel_independent;
	bool sinusoidal;        /* positions: sinusoidal instead of learned */
	bool residual_last;     /* forecast: the head's output is added to the
	                         * window's last value (x' of the step L−1 of the
	                         * target's channel): the Transformer learns a
	                         * correction to repeat-last */
	int64_t max_batch;      /* windows per call, at most */
	/* the head */
	const loom_head_ops *head_ops;
	void *head_ctx;
	int64_t horizon;        /* forecast */
	int64_t targets;        /* target channels (forecast, regression) */
	int64_t classes;        /* classification */
	const char *const *class_names;
	const char *options;    /* the spec's model group, JSON */
	/* where each forecast target channel sits among the inputs (for
	 * reversible normalization): target k is input channel target_in[k] */
	const int64_t *target_in;
} tf_model_config;

typedef struct tf_model tf_model;

struct tf_model {
	tf_model_config cfg;
	int64_t tokens;         /* T = L / P */
	int64_t cin;            /* channels per sequence: 1 when independent */
	int64_t seq_per_window; /* C when independent, else 1 */
	int64_t max_seq;        /* max_batch · seq_per_window */
	loom_head_layout head;  /* what the head asked for */

	int n_tensors;
	tf_tensor *tensors;
	int64_t n_params;       /* floats in each of params, grads, m, v */
	float *params, *grads, *m, *v;
	float **head_params, **head_grads;  /* pointers into params/grads */

	float *acts;            /* activations, see model.c */
	int64_t n_acts;
	float *dacts;           /* gradient scratch */
	int64_t n_dacts;
	float *pos_table;       /* sinusoidal positions [T, D], when used */
	lk_pool *pool;
	void *priv;             /* where each activation lives (model.c) */

	int lin;                /* index of linear.weight (LINEAR, MIXED), else -1 */
	int mix;                /* index of mix (MIXED), else -1 */

	/* the last forward pass */
	int64_t batch;          /* windows */
	bool training;
	uint64_t step_seed;
};

/* Build a model (allocating everything, asking the head for its layout).
 * 0, or a LOOM_E* code with *err set. */
int tf_model_build(tf_model *m, const tf_model_config *cfg, lk_pool *pool, char **err);
void tf_model_free(tf_model *m);

/* Initialize every parameter from seed (PyTorch's default schemes). */
void tf_model_init(tf_model *m, uint64_t seed);

/* Find a tensor by name; NULL when absent. */
const tf_tensor *tf_model_tensor(const tf_model *m, const char *name);

/* Forward pass over batch windows x[batch, L, C] (model inputs, already
 * normalized by the data layer).  In training, dropout uses step_seed.
 * Returns 0; the raw head outputs are in tf_model_out(). */
int tf_model_forward(tf_model *m, const float *x, int64_t batch, bool training,
                     uint64_t step_seed);

/* The head's raw outputs of the last forward pass: [sequences, out_dim]. */
float *tf_model_out(const tf_model *m);
int64_t tf_model_sequences(const tf_model *m);

/* Outputs mapped back to the data's normalized units (reversible
 * normalization undone for forecasts), in pred[sequences, out_dim].
 * Identity for the other tasks. */
void tf_model_predictions(const tf_model *m, float *pred);

/* The training loss of the last forward pass against target (laid out like
 * tf_model_predictions), and d(loss)/d(out) stored for backward. */
int tf_model_loss(tf_model *m, const float *target, double *loss);

/* Add a term to the last tf_model_loss: dpred is its gradient with respect
 * to the predictions (laid out as tf_model_predictions), chained through
 * the output transform into what tf_model_backward propagates.  The
 * distillation of an incremental run (incremental.c). */
void tf_model_loss_add(tf_model *m, const float *dpred);

/* Backward pass of the last forward + loss: gradients ACCUMULATE into
 * m->grads (zero them first with tf_model_zero_grad). */
int tf_model_backward(tf_model *m);
void tf_model_zero_grad(tf_model *m);

/* Clip the gradients to a global norm (torch's clip_grad_norm_); returns
 * the norm before clipping. */
double tf_model_clip(tf_model *m, double max_norm);

/* One AdamW step (step t ≥ 1) over every trainable tensor, weight decay
 * on all but TF_NO_DECAY tensors. */
void tf_model_adamw(tf_model *m, double lr, double beta1, double beta2, double eps,
                    double weight_decay, int64_t t);

/* The linear map's input of the last forward pass: x' [sequences, L·cin]
 * (LINEAR and MIXED forms; the window after reversible normalization and
 * the channel split).  The features a ridge fit regresses on. */
const float *tf_model_linear_input(const tf_model *m);

/* The inverse of tf_model_predictions on the last forward pass: targets
 * (laid out as for tf_model_loss) into the head's output units, out
 * [sequences, out_dim].  What a ridge fit regresses onto. */
void tf_model_unpredict(const tf_model *m, const float *target, float *out);

/* Head results (probabilities, scores, forecasts) of the last forward:
 * results[sequences, head.result_dim].  target (as for tf_model_loss) is
 * what an anomaly head scores the reconstruction against; may be NULL for
 * the other tasks. */
int tf_model_results(tf_model *m, const float *target, float *results);

#endif /* LOOM_TF_MODEL_H */

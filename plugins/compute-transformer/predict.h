/* predict.h — inference on a trained model (LOOM_COMPUTE_PREDICT).
 *
 * A model directory is what a run wrote: best.safetensors (else
 * last.safetensors), whose "__metadata__" holds the job spec, the data
 * description (input and target channels, their normalization, the
 * classes) and the head instance.  tf_model_open builds the model for
 * evaluation (no dropout) with that head and loads the weights.
 *
 * Input: f32 [B, context, channels], the raw values of data.inputs in that
 * order, in the data's original units.  predict normalizes them as the
 * training data was, runs the model exactly as the test-split evaluation
 * does, and gives results in original units:
 *
 *   forecast        [B, horizon, targets]  the next horizon steps
 *   regression      [B, targets]           the targets at the last step
 *   classification  [B, classes]           probabilities (softmax)
 *   anomaly         [B]                    mean squared reconstruction
 *                                          error in normalized units; above
 *                                          info's "threshold" is anomalous
 *
 * The output tensor's data is allocated with host->tensor_alloc; the
 * caller frees it with host->tensor_free.  info_json (host->alloc'd)
 * states all of this for the model at hand.  One predict call at a time
 * per model (it keeps its activations), and since a head instance serves
 * one model at a time (head.h), a process opens one model while it is not
 * training another. */
#ifndef LOOM_TF_PREDICT_H
#define LOOM_TF_PREDICT_H

#include <loom/compute.h>

/* threads: the model's CPU threads; 0: the spec's train.threads, else every
 * online core (the instance's predict_threads setting). */
int tf_model_open(const loom_host *host, loom_instance *ins, const char *model_dir, int threads,
                  void **model, char **info_json);
int tf_predict(void *model, const loom_tensor *input, loom_tensor *output);
void tf_model_close(void *model);

/* predict, plus the uncertainty of each output value in spread (the same
 * shape; compute.h's predict_spread, docs/inference.md): Monte-Carlo
 * dropout for models trained with dropout (options {"passes", "seed"}),
 * else the validation residuals' scale saved in the weights' metadata
 * ("residuals": {"rms": [out_per_window], "windows": n}) times
 * tf_window_scale of the window.  Classification and anomaly answer
 * spread->data NULL.  LOOM_ENOTSUP when the model has neither. */
int tf_predict_spread(void *model, const loom_tensor *input, loom_tensor *output,
                      loom_tensor *spread, const char *options_json);

/* A window's scale for a target, in normalized units: sqrt of the variance
 * over the window's L steps of channel (of C; -1: the mean variance of all
 * channels) of x [L, C], plus 1e-5 — what reversible normalization
 * measures.  Training saves the residuals relative to it. */
double tf_window_scale(const float *x, int64_t L, int64_t C, int64_t channel);

#endif /* LOOM_TF_PREDICT_H */

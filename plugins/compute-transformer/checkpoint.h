/* checkpoint.h — what a paused or interrupted run needs to continue to the
 * same bits: the weights, both AdamW moments, the step, the epoch and the
 * position in it, the scheduler and early-stopping state, the spec and the
 * data's normalization — as safetensors (tensors plus a "__metadata__"
 * with the rest as JSON), compressed with zstd with its content checksum,
 * written atomically (temporary file, fsync, rename, fsync of the
 * directory).  A truncated or corrupt file is refused before anything is
 * loaded. */
#ifndef LOOM_TF_CHECKPOINT_H
#define LOOM_TF_CHECKPOINT_H

#include <stdint.h>

#include <jansson.h>

#include "model.h"

/* The training loop's own state. */
typedef struct tf_train_state {
	int64_t step;            /* optimizer steps taken */
	int64_t epoch;           /* the epoch in progress (0-based) */
	int64_t batch;           /* batches of that epoch done */
	double lr_scale;         /* plateau schedule multiplier */
	int64_t plateau_bad;     /* epochs without improvement (plateau) */
	double plateau_best;
	double es_best;          /* early stopping: the best value so far */
	int64_t es_bad;          /* epochs since it */
	int64_t best_epoch;      /* -1: none yet */
	int stopped_early;
	double epoch_loss_sum;   /* training loss of the epoch so far */
	int64_t epoch_loss_count;
} tf_train_state;

/* Write a checkpoint: weights, moments, state, info (an object: the spec,
 * normalization, class names …) and history (the epochs' metrics so far),
 * both stored as JSON text. */
int tf_checkpoint_save(const char *path, const tf_model *m, const tf_train_state *st,
                       const json_t *info, const json_t *history, char **err);

/* Read one into a model built from the same spec.  *info receives the
 * stored info object (json_decref it).  Everything is checked — the
 * checksum, every tensor's presence, dtype and shape — before the model
 * is touched. */
int tf_checkpoint_load(const char *path, tf_model *m, tf_train_state *st, json_t **info,
                       json_t **history, char **err);

/* The newest checkpoint in dir (by step), or NULL (free it). */
char *tf_checkpoint_newest(const char *dir);

/* Write the weights alone as uncompressed safetensors (last/best), with
 * info as metadata (string values; objects are stored as JSON text). */
int tf_weights_save(const char *path, const tf_model *m, const json_t *info, char **err);
/* Load weights (from tf_weights_save) into a model built to match. */
int tf_weights_load(const char *path, tf_model *m, json_t **info, char **err);
/* Load weights (tf_weights_save's file, a registered version's best.safetensors) into m,
 * built for an incremental run: every tensor of the file must exist in m with the same
 * shape, except head tensors (TF_HEAD) whose first dimension grew (new classes): their
 * leading rows are copied and the rest keep m's initial values; *grown (may be NULL)
 * receives how many tensors grew.  Tensors of m the file lacks are an error naming them.
 * *info (may be NULL) receives the metadata as tf_weights_load gives it.  Everything
 * is checked before m is touched (initialize m first: the new rows keep what it has).
 *
 * Precisely: a head tensor may grow in one dimension, the others equal — the bundled
 * heads keep the classes on dimension 0 (proj.weight [classes, D'], proj.bias
 * [classes]), so whole leading rows are copied; a head keeping them last ([D', classes])
 * gets each row's leading columns.  Shrinking, growing in two dimensions or a
 * non-head tensor that differs is LOOM_EINVAL naming the tensor; a missing file
 * LOOM_ENOENT; a file that is not safetensors LOOM_ECORRUPT. */
int tf_weights_load_init(const char *path, tf_model *m, json_t **info, int *grown, char **err);

#endif /* LOOM_TF_CHECKPOINT_H */

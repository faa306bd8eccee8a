/* incremental.h — a training run that starts from a registered version
 * (train.init) and learns an increment without forgetting the earlier ones:
 * replay of a reservoir bank of earlier windows, EWC and LwF
 * (docs/incremental.md), and the continual-learning evaluation every
 * training run writes (continual.safetensors, metrics.json "continual" and
 * "holdout").  Private to the engine; the run's hooks, in the order the
 * training loop calls them. */
#ifndef LOOM_TF_INCREMENTAL_H
#define LOOM_TF_INCREMENTAL_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "continual.h"
#include "data.h"
#include "model.h"

struct run;

typedef struct tf_incr {
	bool on;                 /* train.init: an incremental run */
	json_t *init_info;       /* the init weights' metadata: spec, data, model */
	char *init_dir;          /* <checkpoints>/init: the init version's files */
	char **features, **targets, **classes;  /* the init's names (NULL-terminated) */
	double *norm;            /* the init's in_shift, in_scale, out_shift, out_scale */
	int64_t init_classes;    /* classes the init version knew */
	tf_continual cont;       /* the init's bank, EWC terms and holdouts */
	bool has_cont;
	tf_model teacher;        /* LwF: the init version's model */
	bool teacher_up;
	float *tpred, *spred, *dpred; /* LwF scratch: [sequences, out_dim] */
	int64_t mem_per_batch;   /* bank windows added to a batch of train.batch */
	json_t *before;          /* the init version measured before training */
} tf_incr;

/* Before the data is read: the init version's description, checked
 * against the spec (what differs is named), and its channels, classes and
 * normalization given to the data layer.  Nothing without train.init. */
int tf_incr_prepare(struct run *r, char **err);

/* After the dataset is built: its channels are the init's; new classes
 * are said. */
int tf_incr_check_data(struct run *r, char **err);

/* After the model is built, before the loop: a fresh run copies the init
 * version's files beside its checkpoints and starts from its weights; a
 * resumed one reads the copies (resumed from the checkpoint's info, which
 * keeps the figures measured before training).  The bank, the EWC terms and
 * the teacher are loaded. */
int tf_incr_start(struct run *r, bool resume, json_t *ckpt_info, char **err);

/* A training step: n new windows are in r->bx/r->by; bank windows are
 * appended after them.  Returns how many rows the batch has now. */
int64_t tf_incr_extend_batch(struct run *r, int64_t n);

/* After the task loss of a step over rows windows: LwF's term (loss and
 * gradient) is added. */
int tf_incr_after_loss(struct run *r, int64_t rows, double *loss);

/* After backward: EWC's penalty gradient is added (and its value to loss). */
void tf_incr_after_backward(struct run *r, double *loss);

/* After the kept model (final) is evaluated: the Fisher, the new bank and
 * the holdouts go into continual.safetensors; R, its summary and the
 * shared holdout into out ("continual", "holdout"); their figures are
 * reported as final metrics. */
int tf_incr_finish(struct run *r, tf_model *final, double baseline, json_t *out, char **err);

void tf_incr_free(tf_incr *ic);

#endif /* LOOM_TF_INCREMENTAL_H */

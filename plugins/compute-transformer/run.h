/* run.h — a training run's state, shared by the training loop (train.c)
 * and the fits and choice that follow it (choose.c).  Private to the
 * engine. */
#ifndef LOOM_TF_RUN_H
#define LOOM_TF_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include <loom/compute.h>
#include <loom/head.h>
#include <loom/util.h>

#include "checkpoint.h"
#include "data.h"
#include "incremental.h"
#include "model.h"
#include "spec.h"

typedef struct run {
	const loom_host *host;
	loom_instance *ins;
	const loom_job *job;
	tf_spec spec;
	tf_table table;
	tf_dataset ds;
	const loom_head_ops *head;
	void *head_ctx;
	lk_pool *pool;
	tf_model model;          /* what the loop trains (a linear form for linear and naive) */
	tf_model_config mc;      /* its configuration, for the models the choice builds */
	char *model_options;     /* the spec's model group as JSON (mc.options) */
	int64_t *target_in;      /* [n_out] input channel of each target, or -1 */
	tf_train_state st;
	int64_t batch;           /* train.batch, clamped to the most windows a split has */
	int64_t steps_per_epoch, total_steps;
	int64_t target_len;      /* training target floats per window */
	float *bx, *by;          /* a batch */
	float *res, *truth;      /* evaluation scratch */
	int64_t *order, *idx;
	char *ckpt_dir;
	json_t *info;            /* spec, data description: in checkpoints and weights */
	json_t *history;         /* epoch metrics, for metrics.json */
	tf_incr incr;            /* train.init, replay, EWC, LwF (incremental.c) */
} run;

/* A metrics object being filled, with a prefix for the names
 * (collect_metric is a loom_value_fn). */
typedef struct collect {
	json_t *obj;
	const char *prefix;
} collect;

int collect_metric(void *arg, const char *name, double value);

/* A line in the task's log. */
void say(const run *r, int level, const char *fmt, ...) LOOM_PRINTF(3, 4);

/* Inputs (r->bx) and training targets (r->by) of windows idx[n] of split s. */
void gather(run *r, int s, const int64_t *idx, int64_t n);

/* Loss and head metrics of model m on split s (eval mode), as "PREFIXloss",
 * "PREFIXmae"… in obj; *loss_out the loss.  With calib, the metrics state
 * is handed over instead of freed. */
int evaluate(run *r, tf_model *m, int s, const char *prefix, json_t *obj, double *loss_out,
             void **calib);

/* A metric point of the run at its current step and epoch. */
void run_metric(run *r, const char *name, double value, uint32_t scope);

/* Write m's weights to OUT_DIR/name with info as metadata; an artifact. */
int save_weights(run *r, const tf_model *m, const json_t *info, const char *name, char **err);

/* After training: fit the linear and naive models the spec asks for and,
 * for model.kind "auto", choose among them and the trained Transformer
 * (whose best weights are in r->model).  *final is the model to evaluate
 * and keep: r->model, or one of the models in *extra (free them with
 * tf_choice_free).  best.safetensors is written for it.  Every candidate's
 * metrics, and why the choice fell where it did, go into out
 * ("candidates", "model"). */
typedef struct tf_choice {
	tf_model lin, mixed;
	bool lin_up, mixed_up;
} tf_choice;

int tf_choose(run *r, tf_choice *c, tf_model **final, json_t *out, char **err);
void tf_choice_free(tf_choice *c);

/* A model built as r->model is, in another form. */
int build_form(run *r, int form, tf_model *m, char **err);

/* The "model" object of the weights' metadata for a model of kind (the
 * spec's words: transformer, linear, naive, ensemble) with detail. */
json_t *model_info(const tf_model *m, const char *kind, json_t *detail);

#endif /* LOOM_TF_RUN_H */

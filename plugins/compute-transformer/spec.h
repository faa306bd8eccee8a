/* spec.h — the job spec of SPEC §5.1 for the Transformer engine: parsed from
 * JSON or libconfig text, every key checked (unknown keys with a
 * did-you-mean, types, ranges, choices), defaults applied, and the settings
 * that only make sense together checked together. */
#ifndef LOOM_TF_SPEC_H
#define LOOM_TF_SPEC_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include <loom/spec.h>

#include "data.h"

enum tf_schedule {
	TF_SCHED_CONSTANT = 0,
	TF_SCHED_STEP = 1,      /* × gamma every step_epochs epochs */
	TF_SCHED_COSINE = 2,    /* cosine from lr to min_lr over the run */
	TF_SCHED_PLATEAU = 3,   /* × factor after plateau_patience bad epochs */
};

enum tf_loss {
	TF_LOSS_MSE = 0,
	TF_LOSS_MAE = 1,
	TF_LOSS_HUBER = 2,
	TF_LOSS_CROSSENTROPY = 3,
};

/* model.kind: what the run fits.  AUTO fits all three and keeps the best on
 * validation (or an average of the best few). */
enum tf_kind {
	TF_KIND_AUTO = 0,
	TF_KIND_TRANSFORMER = 1,
	TF_KIND_LINEAR = 2,
	TF_KIND_NAIVE = 3,
};

enum tf_linear_fit {
	TF_FIT_RIDGE = 0,   /* closed form, the penalty chosen on validation */
	TF_FIT_TRAIN = 1,   /* AdamW over train.*, as the Transformer */
};

enum tf_decomposition {
	TF_DECOMP_AUTO = 0, /* both, kept on validation */
	TF_DECOMP_NONE = 1,
	TF_DECOMP_MOVING_AVERAGE = 2, /* DLinear's trend + remainder */
};

/* model.auto.ensemble: when auto keeps an average of its best candidates. */
enum tf_ensemble {
	TF_ENSEMBLE_WHEN_BETTER = 0, /* when it validates better than each alone */
	TF_ENSEMBLE_NEVER = 1,
	TF_ENSEMBLE_ALWAYS = 2,      /* the better of the averages of two and three */
};

enum tf_positions {
	TF_POS_LEARNED = 0,
	TF_POS_SINUSOIDAL = 1,
};

/* The largest train.batch a spec may ask for.  A batch is also never more
 * windows than the data has: a larger one is clamped when the data is
 * loaded (train.c), with a warning, which changes no result. */
#define TF_MAX_BATCH 8192

typedef struct tf_spec {
	json_t *doc;                /* the whole spec, defaults filled in */
	char *name;
	char *compute;              /* compute instance */
	int64_t priority;
	double cpu;                 /* cores */
	uint64_t memory;            /* bytes, 0: no limit */
	int64_t gpu;
	int64_t retries;
	int64_t timeout_ms;

	/* data */
	char *path;                 /* a file, or "<storage>:<key>" */
	char *time_column;
	char **features;            /* NULL-terminated, or NULL */
	size_t n_features;
	char **targets;             /* NULL-terminated, or NULL */
	size_t n_targets;
	tf_data_spec data;          /* points into the fields above */

	/* model */
	char *head;                 /* head instance */
	int task;                   /* enum tf_task, from the head */
	int64_t context, horizon, patch, stride;
	int64_t d_model, heads, layers, ffn;
	double dropout;
	bool revin, channel_independent;
	int positions;              /* enum tf_positions */
	bool residual_last;         /* model.residual = "last" */
	int loss;                   /* enum tf_loss */
	double huber_delta;
	double threshold_quantile;  /* anomaly: score quantile on validation */
	int kind;                   /* enum tf_kind */
	int linear_fit;             /* enum tf_linear_fit */
	int decomposition;          /* enum tf_decomposition */
	int64_t ma_kernel;          /* the moving average's length */
	double ridge_alpha;         /* 0: chosen on validation */
	int naive_method;           /* enum tf_naive (linear.h), or -1: chosen */
	int ensemble;               /* auto: enum tf_ensemble */
	bool choose_one_se;         /* auto: the one-standard-error rule, not the lowest */

	/* train */
	int64_t epochs, batch;
	double lr, weight_decay, beta1, beta2, eps;
	int schedule;               /* enum tf_schedule */
	int64_t warmup_steps;
	int64_t step_epochs;
	double gamma, min_lr;
	int64_t plateau_patience;
	double plateau_factor;
	double clip_norm;           /* 0: no clipping */
	char *es_metric;            /* early stopping: a validation metric */
	bool es_maximize;           /* true for accuracy, f1, r2 */
	int64_t es_patience;        /* 0: off */
	double es_min_delta;
	int64_t checkpoint_every;   /* steps; 0: only at pauses and the end */
	uint64_t seed;
	int64_t threads;            /* 0: all the job may use */

	/* train.init and incremental (docs/incremental.md) */
	char *init_dir;             /* train.init.model_dir, or NULL: not incremental */
	char *init_model;           /* train.init.model, or NULL */
	int64_t init_version;       /* train.init.version, 0: not known */
	bool incremental;           /* the spec has an incremental group */
	int64_t replay_memory;      /* bank rows kept with the new version */
	double replay_ratio;        /* bank windows per new window in a batch */
	char *replay_sampler;       /* the sampler instance filling the bank */
	double ewc_lambda;
	bool ewc_online;
	double ewc_gamma;
	double lwf_alpha, lwf_temperature;
} tf_spec;

/* Which task a head instance solves; the caller answers from the head's
 * ops (host->instance_ops).  Returns a tf_task, or 0 when there is no such
 * head (the message then names model.head). */
typedef int (*tf_head_task_fn)(void *arg, const char *head);

/* Parse and check a spec document (JSON text when it starts with '{',
 * libconfig text otherwise); name is used in messages ("job.json").
 * 0, or LOOM_EINVAL with every problem in *err, one per line, each naming
 * the key: "model.d_modle: unknown setting (did you mean d_model?)". */
int tf_spec_parse(const char *text, const char *name, tf_head_task_fn head_task, void *arg,
                  tf_spec *spec, char **err);
void tf_spec_free(tf_spec *spec);

/* The resources group of every job spec (cpu, memory, gpu), shared with
 * the batch prediction's spec (batch.c). */
extern const loom_spec_field tf_resources_fields[];

/* data.dataset, which loomd writes when data.path named a dataset version
 * ("dataset:NAME@REF", docs/datasets.md), shared with the batch
 * prediction's predict.data. */
extern const loom_spec_field tf_dataset_fields[];

/* The job-level settings of every spec this plugin runs, a training run's
 * and a batch prediction's: the first entries of both field tables. */
#define TF_SPEC_JOB_FIELDS                                                                 \
	{"name", LOOM_SPEC_STRING, 0, NULL, 0, 0, NULL, "the job's name", {NULL, NULL}},           \
	{"compute", LOOM_SPEC_STRING, 0, NULL, 0, 0, NULL,                                     \
	 "the compute plugin instance", {NULL, NULL}},                                         \
	{"priority", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, -1000000, 1000000, NULL,            \
	 NULL, {NULL, NULL}},                                                                  \
	{"after", LOOM_SPEC_INTLIST, LOOM_SPEC_RANGE, NULL, 1, 9007199254740991.0, NULL,      \
	 "ids of jobs that must complete first", {NULL, NULL}},                                \
	{"resources", LOOM_SPEC_GROUP, 0, NULL, 0, 0, tf_resources_fields, NULL, {NULL, NULL}}, \
	{"retries", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 0, 100, NULL, NULL, {NULL, NULL}},    \
	{"timeout", LOOM_SPEC_DURATION, 0, NULL, 0, 0, NULL, NULL, {NULL, NULL}}

/* The spec as compact JSON with every default filled in (caller frees). */
char *tf_spec_json(const tf_spec *spec);

#endif /* LOOM_TF_SPEC_H */

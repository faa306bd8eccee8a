/* <loom/head.h> — head plugins: the task-specific layer on top of the
 * Transformer encoder (forecasting, regression, classification, anomaly
 * detection): forward, loss, backward, predictions and metrics.
 *
 * The compute plugin owns memory.  At model build time it tells the head
 * the encoder's shape; the head answers with a layout: the parameters it
 * needs (shapes and initialization), the activation floats it keeps
 * between forward and backward, and the sizes of its outputs.  The compute
 * plugin places the head's parameters, gradients and activations in its
 * contiguous buffers, so checkpoints, optimizers and gradient clipping see
 * one model.  Everything is per "sequence": with channel independence the
 * encoder runs each channel as its own sequence and the head sees
 * batch × channels sequences.
 *
 * A step: forward (enc → out), loss (out, target → loss, dout), backward
 * (dout → parameter gradients and denc, both accumulated: the caller zeroes
 * denc first).  The
 * compute plugin may transform out between forward and loss (reversible
 * instance normalization) and scales dout accordingly.
 *
 * Metrics are computed in original units over a whole split: metrics_new,
 * metrics_add for every batch, metrics_report, metrics_free.  A head also
 * says how a person reads them (ABI 1.1): its headline metrics, the few
 * that summarize a model, in display order, and tables of its detail
 * metrics (per class figures, a confusion matrix).  The compute plugin
 * writes both into metrics.json ("headline", "details"); loomd lists the
 * headline metrics first, tags versions "best-" only for them and draws
 * the tables in `loomctl runs show` and the report.
 *
 * configure keeps the shape in the instance's context: one head instance
 * serves one model at a time (loom-worker runs one job per process). */
#ifndef LOOM_HEAD_H
#define LOOM_HEAD_H

#include <loom/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The task a head solves; it tells the compute plugin what targets to
 * prepare. */
typedef enum loom_task {
	LOOM_TASK_FORECAST = 1,       /* target: the next horizon steps */
	LOOM_TASK_REGRESSION = 2,     /* target: values of target columns */
	LOOM_TASK_CLASSIFICATION = 3, /* target: class index (as float) */
	LOOM_TASK_ANOMALY = 4,        /* target: the input window itself */
} loom_task;

/* A table of detail metrics (ABI 1.1).  Cell (row r, column c) is the
 * metric named by cell with "{row}" replaced by row r's label and
 * "{column}" by column c's: "confusion.{row}.{column}" with the classes as
 * rows and columns is a confusion matrix, "{column}.{row}" with the
 * classes as rows and columns {"precision", "recall", "f1"} a per-class
 * table.  rows and columns are NULL-terminated labels, or NULL for the
 * model's classes (loom_head_shape.class_names, else "0", "1", …).  A list
 * of tables ends with an entry whose name is NULL. */
typedef struct loom_metric_table {
	const char *name;          /* "confusion": one word, for programs */
	const char *title;         /* "Confusion matrix": for people */
	const char *cell;          /* the metric of a cell, as above */
	const char *const *rows;   /* labels, NULL-terminated; NULL: the classes */
	const char *const *columns;
	const char *row_header;    /* what a row is ("true class") */
	const char *column_header; /* what a column is ("predicted"); NULL when
	                            * the column labels name the figures */
	const void *reserved[2];
} loom_metric_table;

/* What the compute plugin tells the head. */
typedef struct loom_head_shape {
	uint32_t size;
	uint32_t max_sequences;  /* most sequences in one call */
	uint32_t tokens;         /* encoder tokens per sequence (context/patch) */
	uint32_t d_model;
	uint32_t channels;       /* input channels per sequence (1 when
	                          * channel-independent) */
	uint32_t context;        /* input time steps */
	uint32_t patch;          /* time steps per token */
	uint32_t horizon;        /* forecast steps */
	uint32_t targets;        /* target channels / regression outputs */
	uint32_t classes;        /* classification: number of classes */
	uint32_t channel_independent;
	const char *const *class_names; /* classes entries, or NULL */
	const char *options;     /* the job spec's model group as JSON */
	const void *reserved[4];
} loom_head_shape;

/* How a parameter starts. */
typedef enum loom_init {
	LOOM_INIT_ZERO = 1,
	LOOM_INIT_ONE = 2,
	LOOM_INIT_NORMAL = 3,     /* N(0, scale²) */
	LOOM_INIT_FAN_IN = 4,     /* U(-1/√fan_in, 1/√fan_in), PyTorch Linear */
	LOOM_INIT_CONST = 5,      /* every element = scale */
} loom_init;

/* Parameter flags. */
#define LOOM_PARAM_NO_DECAY 0x1u /* excluded from weight decay (biases) */
#define LOOM_PARAM_BUFFER 0x2u   /* saved with the model, never trained
                                  * (a calibrated threshold) */

#define LOOM_HEAD_MAX_PARAMS 16
#define LOOM_HEAD_MAX_DIMS 4

typedef struct loom_param_spec {
	char name[48];           /* "proj.weight": saved as "head.proj.weight" */
	uint32_t ndim;
	uint32_t dims[LOOM_HEAD_MAX_DIMS];
	uint32_t init;           /* loom_init */
	uint32_t fan_in;         /* LOOM_INIT_FAN_IN */
	float scale;             /* LOOM_INIT_NORMAL / CONST */
	uint32_t flags;          /* LOOM_PARAM_* */
	const void *reserved[2];
} loom_param_spec;

/* What the head answers. */
typedef struct loom_head_layout {
	uint32_t n_params;
	loom_param_spec params[LOOM_HEAD_MAX_PARAMS];
	size_t act_floats;       /* activation floats kept from forward to
	                          * backward, for max_sequences sequences */
	uint32_t out_dim;        /* raw outputs per sequence (forward) */
	uint32_t target_dim;     /* training targets per sequence (loss) */
	uint32_t result_dim;     /* user-facing results per sequence (predict):
	                          * forecasts, class probabilities, a score */
	uint32_t truth_dim;      /* ground truth per sequence for metrics_add */
	const void *reserved[4];
} loom_head_layout;

/* The buffers of one call.  params[i], grads[i] follow layout.params. */
typedef struct loom_head_io {
	uint32_t size;
	uint32_t sequences;      /* in this call, ≤ max_sequences */
	uint32_t threads;        /* threads the head may use */
	uint32_t training;       /* 1 in training (dropout on), 0 otherwise */
	float *const *params;
	float *const *grads;     /* backward accumulates into these */
	float *acts;             /* act_floats of scratch kept for backward */
	const float *enc;        /* sequences × tokens × d_model */
	float *denc;             /* backward adds d(loss)/d(enc) here */
	float *out;              /* sequences × out_dim */
	float *dout;             /* loss writes d(loss)/d(out) here */
	const float *target;     /* sequences × target_dim */
	uint64_t seed;           /* for dropout, counter-based */
	const void *reserved[4];
} loom_head_io;

typedef struct loom_head_ops {
	uint32_t size;
	uint32_t task;           /* loom_task */

	/* Required. */
	int (*configure)(void *ctx, const loom_head_shape *shape, loom_head_layout *layout);
	int (*forward)(void *ctx, const loom_head_io *io);
	/* Mean loss over the call's sequences into *loss; dout = its gradient. */
	int (*loss)(void *ctx, const loom_head_io *io, double *loss);
	int (*backward)(void *ctx, const loom_head_io *io);
	/* out → results (sequences × result_dim): identity for forecasts,
	 * softmax probabilities for classes, an anomaly score. */
	int (*predict)(void *ctx, const loom_head_io *io, float *results);

	/* Metrics over a split, in original units. */
	int (*metrics_new)(void *ctx, void **state);
	int (*metrics_add)(void *ctx, void *state, const float *results, const float *truth,
	                   uint32_t sequences);
	int (*metrics_report)(void *ctx, const void *state, loom_value_fn fn, void *arg);
	void (*metrics_free)(void *ctx, void *state);

	/* Optional: set LOOM_PARAM_BUFFER parameters from validation metrics
	 * (the anomaly threshold from a score quantile). */
	int (*calibrate)(void *ctx, float *const *params, const void *state);

	/* Optional (ABI 1.1): how a person reads the metrics.  headline: the
	 * names (as metrics_report gives them, plus "loss", the compute
	 * plugin's mean loss over the split) that summarize a model, in
	 * display order, NULL-terminated; every other metric is a detail.
	 * tables: the detail tables, ended by an entry with a NULL name.
	 * Both are static data; a head without them gets loomd's fallback
	 * (docs/tracking.md, "Headline metrics"). */
	const char *const *headline;
	const loom_metric_table *tables;

	const void *reserved[6];
} loom_head_ops;

#ifdef __cplusplus
}
#endif

#endif /* LOOM_HEAD_H */

/* <loom/compute.h> — compute plugins run training and inference jobs
 * (compute-transformer, the core engine; compute-exec, any command).
 *
 * A job run happens inside a worker process (loom-worker), in or out of
 * the host.  The worker hands the plugin a loom_job: the validated spec,
 * the output directory, the threads and resources it may use, and
 * callbacks to report progress, metrics, log lines and artifacts and to
 * learn whether it should pause or stop.  The plugin polls control at every
 * step boundary; on LOOM_CONTROL_PAUSE it writes a checkpoint into out_dir
 * and returns LOOM_EPAUSED, and a later run with LOOM_JOB_RESUME continues
 * from that checkpoint to the same result as an uninterrupted run. */
#ifndef LOOM_COMPUTE_H
#define LOOM_COMPUTE_H

#include <loom/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Capabilities. */
#define LOOM_COMPUTE_RESUMABLE 0x1u /* pause/resume through checkpoints */
#define LOOM_COMPUTE_PREDICT 0x2u   /* model_open / predict / model_close */
#define LOOM_COMPUTE_GPU 0x4u       /* can use the GPUs it is allotted */

/* Job flags. */
#define LOOM_JOB_RESUME 0x1u        /* continue from out_dir's checkpoint */

/* What control() answers. */
typedef enum loom_control {
	LOOM_CONTROL_RUN = 0,
	LOOM_CONTROL_PAUSE = 1,     /* checkpoint, return LOOM_EPAUSED */
	LOOM_CONTROL_CANCEL = 2,    /* stop now, return LOOM_ECANCELED */
} loom_control;

typedef struct loom_job loom_job;

/* One run of a job, provided by the worker; valid during run(). */
struct loom_job {
	uint32_t size;
	uint32_t flags;             /* LOOM_JOB_* */
	int64_t id;
	const char *spec_json;      /* the job spec (SPEC §5.1) as JSON */
	const char *out_dir;        /* checkpoints, weights, metrics.json */
	uint32_t threads;           /* CPU threads it may use (≥ 1) */
	uint32_t reserved0;
	int64_t max_steps;          /* pause after this step; 0: no limit */
	loom_resources alloc;       /* what the scheduler gave it */
	void *arg;                  /* the worker's; for the callbacks */

	/* step of total_steps done, in epoch of epochs. */
	void (*progress)(const loom_job *job, int64_t step, int64_t total_steps,
	                 int32_t epoch, int32_t epochs);
	void (*metric)(const loom_job *job, const loom_metric_point *pt);
	void (*log)(const loom_job *job, int level, const char *message);
	/* A file the run produced, under out_dir. */
	void (*artifact)(const loom_job *job, const char *name, const char *path);
	/* Polled at step boundaries; returns a loom_control. */
	int (*control)(const loom_job *job);

	const void *reserved[8];
};

typedef struct loom_compute_ops {
	uint32_t size;
	uint32_t caps;              /* LOOM_COMPUTE_* */

	/* Required. */
	/* Check a job spec (JSON) before it is accepted.  On failure return
	 * LOOM_EINVAL and set *error (host->alloc'd) to a message that names
	 * the key: "model.d_modle: unknown setting (did you mean d_model?)". */
	int (*validate)(void *ctx, const char *spec_json, char **error);
	/* Run to completion (0), to a pause (LOOM_EPAUSED), to a cancel
	 * (LOOM_ECANCELED) or to a failure (another code, after job->log). */
	int (*run)(void *ctx, const loom_job *job);

	/* Optional, with LOOM_COMPUTE_PREDICT: inference on a trained model.
	 * model_open reads a run's output directory; info_json (host->alloc'd)
	 * describes inputs and outputs (shapes with "batch" first, channel,
	 * target or class names, units).  predict takes input as info_json
	 * says and fills *output: its dtype, ndim, dims and nbytes, and data
	 * allocated with host->tensor_alloc, which the caller releases with
	 * host->tensor_free.  On failure output->data is NULL. */
	int (*model_open)(void *ctx, const char *model_dir, void **model, char **info_json);
	int (*predict)(void *ctx, void *model, const loom_tensor *input, loom_tensor *output);
	void (*model_close)(void *ctx, void *model);

	/* Optional (ABI 1.2, the first reserved slot; test it with
	 * LOOM_OPS_HAS): predict as predict does, and also the uncertainty of
	 * each output value in *spread, the same shape and units as *output
	 * (allocated with host->tensor_alloc; the caller frees both).  The
	 * output is bit-equal to predict's.  info_json's "uncertainty" object
	 * names the method ({"method": "mc_dropout", "passes": 16} …).  A task
	 * whose answer is its own confidence (class probabilities, an anomaly
	 * score with its threshold) fills *output and leaves spread->data NULL.
	 * options_json (may be NULL): {"passes": K, "seed": S} for Monte-Carlo
	 * dropout.  LOOM_ENOTSUP when the model has no way to tell (then
	 * neither tensor is filled). */
	int (*predict_spread)(void *ctx, void *model, const loom_tensor *input, loom_tensor *output,
	                      loom_tensor *spread, const char *options_json);

	/* Optional (ABI 1.3, the next reserved slot; test it with
	 * LOOM_OPS_HAS): the windows the model would read from the file at
	 * path (a CSV, or "<storage-instance>:<key>"), read as the model's own
	 * training read its data (its time column, input channels and fill).
	 * Windows start every stride rows from the file's first data row; of
	 * those, the ones whose rows all lie on file lines from_line to
	 * to_line (the header being line 1; 0: no bound) are kept.  Fills
	 * *windows with f32 [B, context, channels] in predict's input units
	 * (host->tensor_alloc) and *meta_json (host->alloc'd) with
	 * {"windows": [{"first_line": F, "last_line": L, "time": T}, …]}, one
	 * per window in order, T the time value of the window's last row
	 * (null without a time column).  More than max_windows windows, or
	 * none: LOOM_ERANGE.  A file that cannot be read as the model needs:
	 * LOOM_EINVAL (or the reader's code), the reason logged at error level
	 * as "FILE:LINE: …".  On failure neither output is filled. */
	int (*model_windows)(void *ctx, void *model, const char *path, int64_t from_line,
	                     int64_t to_line, int64_t stride, int64_t max_windows,
	                     loom_tensor *windows, char **meta_json);

	const void *reserved[6];
} loom_compute_ops;

#ifdef __cplusplus
}
#endif

#endif /* LOOM_COMPUTE_H */

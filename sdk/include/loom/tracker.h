/* <loom/tracker.h> — tracker plugins record runs: parameters, metrics per
 * step and epoch, artifacts, tags and lineage (the built-in SQLite store,
 * TensorBoard event files, JSON lines).
 *
 * The host calls every configured tracker for every run.  Metric points
 * arrive in batches from a host thread, never from the training loop, so a
 * slow tracker does not slow training; a tracker may still buffer and
 * write on flush. */
#ifndef LOOM_TRACKER_H
#define LOOM_TRACKER_H

#include <loom/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Capabilities. */
#define LOOM_TRACKER_QUERY 0x1u /* query_metrics answers history queries */

/* A run: one attempt of a job (a resumed job keeps its run). */
typedef struct loom_run_info {
	uint32_t size;
	const char *run_id;      /* unique, stable: "job-42" */
	int64_t job_id;
	const char *name;
	const char *user;
	int64_t started_ms;
	const char *params_json; /* the job spec, flattened or as given */
	const char *lineage_json;/* config version, data hash, versions */
	const void *reserved[4];
} loom_run_info;

/* A file a run produced, by storage reference. */
typedef struct loom_artifact {
	const char *name;        /* "best.safetensors" */
	const char *ref;         /* "<storage-instance>:<key>" */
	const char *sha256;      /* hex */
	uint64_t bytes;
	const void *reserved[2];
} loom_artifact;

/* Receives metric points from query_metrics; non-zero stops. */
typedef int (*loom_metric_fn)(void *arg, const loom_metric_point *pt);

typedef struct loom_tracker_ops {
	uint32_t size;
	uint32_t caps;           /* LOOM_TRACKER_* */

	/* Required. */
	int (*run_begin)(void *ctx, const loom_run_info *run);
	int (*log_metrics)(void *ctx, const char *run_id, const loom_metric_point *pts,
	                   size_t n);
	/* status: "completed", "failed", "cancelled" or "paused". */
	int (*run_end)(void *ctx, const char *run_id, const char *status, int64_t ended_ms);

	/* Optional. */
	int (*log_params)(void *ctx, const char *run_id, const char *params_json);
	int (*log_artifact)(void *ctx, const char *run_id, const loom_artifact *artifact);
	int (*set_tag)(void *ctx, const char *run_id, const char *key, const char *value);
	int (*flush)(void *ctx);
	/* History of one metric between two steps (inclusive), in step order. */
	int (*query_metrics)(void *ctx, const char *run_id, const char *name,
	                     int64_t from_step, int64_t to_step, loom_metric_fn fn,
	                     void *arg);

	const void *reserved[8];
} loom_tracker_ops;

#ifdef __cplusplus
}
#endif

#endif /* LOOM_TRACKER_H */

/* Experiment tracking: a run per task attempt (a paused and resumed task
 * keeps its run), with params, lineage, metric points, tags and artifacts,
 * kept in the state DB (the built-in SQLite tracker) and handed to every
 * tracker plugin instance (TensorBoard event files, JSON lines, ...).
 *
 * Callers never wait for the database or a plugin: runs, points and ends
 * go on a queue that one thread drains in batches.  Metric points are
 * stored per (run, metric) in compressed blocks of up to 8,192 points with
 * their step range, count, minimum and maximum, so a history query reads
 * only the blocks of its step range.
 *
 * Runs made by external scripts (POST /api/v1/runs) have no task.
 *
 * A completed task's run keeps the headline and detail metrics its
 * metrics.json declares (host/core/headline.h) beside its metrics, under
 * LOOMI_DISPLAY_KEY; reads answer them as "headline" and "details" (the
 * fallback rule for runs that declare none).
 *
 * The module (runs.c: loomi_tracking_module, the /api/v1/runs routes and
 * GET /api/v1/training/tasks/{id}/metrics) hears of tasks through the
 * observer list (host/server/events.h): a worker attaching begins or
 * resumes a run (loomi_tracking_run_begin), its points are recorded
 * (loomi_tracking_worker_points), a transition pauses or ends the run
 * (loomi_tracking_job_state); it tells the list of every batch of points
 * it stores (the alert rules on metrics listen). */
#ifndef LOOM_HOST_TRACKING_H
#define LOOM_HOST_TRACKING_H

#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

#include "host/server/auth.h"
#include "host/server/daemon.h"

int loomi_tracking_start(loomi_daemon *d, char **err);
/* Drain the queue, flush every tracker, stop. */
void loomi_tracking_stop(void);

/* An attempt of a task starts or resumes running: its run (created on the
 * first call for (job, attempt)).  Returns the run id, 0 when tracking is
 * not started. */
int64_t loomi_tracking_run_begin(int64_t job, int attempt, const char *name, const char *user,
                                 const char *spec_json);

/* Metric points a worker reported for (job, attempt): an array of
 * [name, step, epoch, scope, wall_ms, value], value a number or "NaN",
 * "Infinity", "-Infinity".  Malformed points are skipped. */
void loomi_tracking_worker_points(int64_t job, int attempt, const json_t *points);

/* A task changed state: its current run is marked paused, or ended as
 * completed, failed or cancelled (pending: the attempt failed and a retry
 * waits).  Completed runs record the output directory's files as
 * artifacts. */
void loomi_tracking_job_state(int64_t job, const char *state);

/* Wait until everything queued before the call is stored. */
void loomi_tracking_flush(void);

/* The newest run of a task, 0 if none. */
int64_t loomi_tracking_run_of_job(int64_t job);

/* ------------------------------------------------------------------ reading runs */

/* One stored metric point. */
typedef struct tk_point {
	int64_t step, wall_ms;
	double value;
	int32_t epoch;
	uint32_t scope;             /* loom_metric_scope */
	size_t seq;                 /* arrival order, for a stable sort */
} tk_point;

/* Read the points of run's metric name with from <= step <= to, in step
 * order, from db (a connection of the caller's).  *pts is malloc'd.
 * 0; LOOM_ENOENT when the run has no such metric; LOOM_ECORRUPT. */
int loomi_tracking_read(sqlite3 *db, int64_t run, const char *name, int64_t from, int64_t to,
                        tk_point **pts, size_t *n);

/* A read connection to the state DB for the API (one per thread is not
 * needed: SQLite serializes it), and the daemon. */
sqlite3 *loomi_tracking_db(void);

/* ------------------------------------------------------------------ who sees a run */

/* A run belongs to the owner of its task (runs.user is the task's owner
 * when the run begins), or to the user who made it through POST
 * /api/v1/runs.  Who may see it: an admin, its owner, those it is shared
 * with as kind "run" (id "run-12"), and those who may see its task (shared
 * as "task"); changing it (end, tags, metrics) needs the same for writing.
 * Runs recorded before users existed belong to "local" and only admins
 * see them. */

/* What c may do with run: 0 when access (LOOMI_ACCESS_READ or _WRITE) is
 * allowed, 404 when c may not see it (or there is none), 403 when it may
 * only read it. */
int loomi_tracking_run_access(loomi_daemon *d, const loomi_caller *c, int64_t run,
                              int access);

/* The owner of run id ("run-12" or "12"): auth.h's loomi_owner_fn. */
int loomi_tracking_run_owner(loomi_daemon *d, const char *id, char **owner,
                             char canon[LOOMI_OBJECT_ID_MAX]);

/* SHA-256 of a file as 64 hex digits (and its size). 0 or LOOM_EIO. */
int loomi_tracking_sha256_file(const char *path, char hex[65], uint64_t *bytes);

/* ------------------------------------------------------------------ for GET /metrics */

/* What tracking counts since loomd started (relaxed atomics). */
typedef struct loomi_tracking_counters {
	uint64_t points_ingested;          /* metric points stored, tasks' and scripts' */
	uint64_t points_dropped_full;      /* a worker's points dropped: the queue was full */
	uint64_t points_dropped_malformed; /* a worker's points skipped as malformed */
	uint64_t points_dropped_no_run;    /* a worker's points for an attempt without a run */
	uint64_t tracker_points_dropped;   /* stored points not handed to the tracker
	                                    * plugins, which fell behind */
} loomi_tracking_counters;

void loomi_tracking_counters_read(loomi_tracking_counters *out);

#endif /* LOOM_HOST_TRACKING_H */

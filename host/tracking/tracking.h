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
 * Runs made by external scripts (POST /api/v1/runs) have no task. */
#ifndef LOOM_HOST_TRACKING_H
#define LOOM_HOST_TRACKING_H

#include <stdint.h>

#include <jansson.h>

#include "host/server/api.h"
#include "host/server/daemon.h"

extern const char loomi_tracking_migration_sql[];

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

/* The routes (api.c's table). */
void loomi_api_runs_create(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res);
void loomi_api_runs_list(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res);
void loomi_api_run_get(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res);
void loomi_api_run_end(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res);
void loomi_api_run_tags(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res);
void loomi_api_run_metrics_post(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res);
void loomi_api_run_metrics_get(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res);
void loomi_api_task_metrics_get(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res);
void loomi_api_runs_compare(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res);
void loomi_api_runs_best(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res);

/* Exports (export formats are the exporter plugin instances). */
void loomi_api_exporters(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res);
void loomi_api_task_export(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res);
void loomi_api_runs_export(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res);

#endif /* LOOM_HOST_TRACKING_H */

/* The tasks service's interface: jobs (the API calls them training
 * tasks), their lifecycle, the scheduling loop (jobs.c), and the
 * loom-worker processes that run them.  The module (tasks.c) serves them
 * under /api/v1/training/tasks with the WebSocket monitor (monitor.c).
 *
 * States are the seed's: pending, running, paused, completed, failed,
 * cancelled.  Every transition is checked against one table
 * (loomi_job_transition_ok), stored as a row of job_events with its time
 * and reason, told to the modules that listen (alerts, tracking, the
 * registry: host/server/events.h), then published on the bus as a
 * "job.state" event.  A worker's log lines, metric points and attaching
 * reach the log store and tracking the same way.
 *
 * A job is submitted pending and waits to be started (or is started at
 * once with "start": true); a started ("queued") job is a candidate for the
 * scheduler plugin, which the loop asks for a plan on every tick and after
 * every change.  A job the plan starts runs in its own process:
 *
 *   loom-worker --connect BUS --job ID --attempt N -c loomd.conf --state-dir DIR
 *
 * The worker attaches over the bus (job.attach: the spec, its directory,
 * whether to resume), reports progress, metrics and log lines within 10 ms
 * and at least every second (job.report, whose reply carries run, pause or
 * cancel), and says
 * how the run ended (job.finish).  The host applies the outcome when the
 * process has exited, so its resources are really free; a worker that exits
 * without finishing (a signal, an abort, the OOM killer) fails its job with
 * the cause, and the job is retried with exponential back-off while its
 * retry budget lasts.
 *
 * Pause asks the worker to checkpoint at its next step and exit; resume
 * starts a new worker from that checkpoint, so the run ends with the same
 * weights as one never paused.  When loomd stops it pauses running jobs the
 * same way and resumes them when it starts again.  After a kill -9 of
 * loomd, the restarted loomd finds the jobs still marked running: a worker
 * that is still alive is stopped (SIGTERM: it checkpoints at its next step
 * and exits), and the job is queued again to resume from its newest
 * checkpoint in a new worker.
 *
 * A worker leads a session of its own.  One asked to stop (cancel, pause,
 * preemption, timeout, loomd stopping) that has not stopped
 * jobs.stop_grace later gets SIGTERM, sent to every process of its session,
 * then SIGKILL after another grace: a worker stuck where it never reports
 * is stopped all the same, and the reason recorded says so.  A memory
 * request is enforced by a cgroup v2 memory.max where loomd has one, else
 * by RLIMIT_AS with headroom and the worker's reported peak (VmHWM). */
#ifndef LOOM_HOST_TASKS_H
#define LOOM_HOST_TASKS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "host/server/api.h"
#include "host/server/auth.h"
#include "host/server/daemon.h"
#include "host/server/histogram.h"

/* Start the jobs service: recover jobs left running, serve job.* on the
 * bus, start the scheduling loop.  0, or a LOOM_E* code with *err set. */
int loomi_jobs_start(loomi_daemon *d, char **err);
/* Pause running jobs (they resume when loomd starts again), wait for their
 * workers (up to 30 s, then SIGKILL), stop the loop. */
void loomi_jobs_stop(loomi_daemon *d);

/* Is from → to a legal transition (loom_job_state values)? */
bool loomi_job_transition_ok(uint32_t from, uint32_t to);

/* Submit a job for caller: body is the request of POST
 * /api/v1/training/tasks ({"spec": {…}, "name", "priority",
 * "resource_requirements", "after", "start", "max_retries", "timeout",
 * "preemptible", "user"}; "user", the owner, is the caller unless an admin
 * submits for someone).  0 with *id, or LOOM_EINVAL (a bad field, named in
 * *msg; a data.path outside data_roots), LOOM_ENOENT (an unknown job in
 * "after", or a config the caller may not see), LOOM_EPERM (a compute
 * plugin that runs commands without the exec permission; another user's
 * name without being an admin). */
int loomi_jobs_submit(loomi_daemon *d, const json_t *body, const loomi_caller *caller,
                      int64_t *id, char **msg);

/* The owner of task id ("task-3"): 0 with *owner, or LOOM_ENOENT (auth.h's
 * loomi_owner_fn). */
int loomi_jobs_owner(loomi_daemon *d, const char *id, char **owner,
                     char canon[LOOMI_OBJECT_ID_MAX]);

/* The task of a route's first parameter if the caller may do access to it:
 * its id, or 0 after setting the answer (404 for a task it may not see,
 * 403 for one it may only read). */
int64_t loomi_jobs_param_task(loomi_daemon *d, const loomi_http_req *req, int access,
                              loomi_http_res *res);

/* start, pause, resume or cancel.  0 when done; LOOM_EBUSY when the
 * worker was asked and will act at its next step (HTTP 202); LOOM_ENOENT;
 * LOOM_ESTATE when the job's state does not allow it (*msg names it);
 * LOOM_EINVAL for an unknown action. */
int loomi_jobs_action(loomi_daemon *d, int64_t id, const char *action, char **msg);

/* A job as the API shows it, or NULL when there is none. */
json_t *loomi_jobs_get(loomi_daemon *d, int64_t id);
/* A page of the jobs who may see, newest first: {"tasks": […], "total": N,
 * "limit", "offset"}.  status and user may be NULL.  NULL with *msg for a
 * bad status. */
json_t *loomi_jobs_list(loomi_daemon *d, const loomi_caller *who, const char *status,
                        const char *user, int64_t limit, int64_t offset, char **msg);
/* The resource pool: {"nodes": [{name, total, free}], "jobs": […]}. */
json_t *loomi_jobs_resources(loomi_daemon *d);

/* "task-12" or "12" → 12; 0 when it is neither. */
int64_t loomi_job_id_parse(const char *text);

/* The task id of a route's first parameter ("task-12" or "12"), or 0
 * after setting a 404 that says what ids look like. */
int64_t loomi_jobs_param_id(const loomi_http_req *req, loomi_http_res *res);

/* ------------------------------------------------------------------ for GET /metrics */

/* The states, loom_job_state values 1 … LOOMI_JOB_STATES. */
#define LOOMI_JOB_STATES 6

typedef struct loomi_jobs_stats {
	int64_t tasks[LOOMI_JOB_STATES + 1];       /* tasks in each state now (the store) */
	uint64_t transitions[LOOMI_JOB_STATES + 1]; /* transitions into each state stored since
	                                             * loomd started */
	int64_t workers;                            /* worker processes running */
} loomi_jobs_stats;

/* What the jobs service counts; 0, or LOOM_EIO when the store could not be
 * read (the counters are filled all the same).  Counters are relaxed
 * atomics the service adds to; the tasks per state are one query. */
int loomi_jobs_stats_read(loomi_daemon *d, loomi_jobs_stats *out);

/* How long the scheduler plugin took to plan, one observation per plan
 * (bounds in seconds: *bounds, *n_bounds). */
const loomi_histogram *loomi_jobs_plan_histogram(const double **bounds, size_t *n_bounds);

#endif /* LOOM_HOST_TASKS_H */

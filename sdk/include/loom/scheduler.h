/* <loom/scheduler.h> — scheduler plugins decide which pending job runs
 * where, with what resources, and which running job to preempt.
 *
 * The host owns jobs, their states and the resource ledger.  On every tick
 * (and after each submission, completion or pause) it builds a view of the
 * jobs that are not finished, the nodes and the users' fair-share usage,
 * and asks the scheduler for a plan: START a job on a node with an
 * allocation, PREEMPT (pause) a running job, or leave a job WAITING with
 * the reason shown to the user.  The host carries the plan out: it starts
 * a local loom-worker itself, or, for a scheduler with LOOM_SCHED_REMOTE
 * (Slurm), calls launch / poll / cancel to run the worker elsewhere. */
#ifndef LOOM_SCHEDULER_H
#define LOOM_SCHEDULER_H

#include <loom/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Capabilities. */
#define LOOM_SCHED_REMOTE 0x1u /* runs workers elsewhere: launch/poll/cancel */

/* Job flags in the view. */
#define LOOM_SCHED_JOB_PREEMPTIBLE 0x1u /* may be paused for a higher priority */
#define LOOM_SCHED_JOB_DEPS_MET 0x2u    /* every job it runs after completed */
#define LOOM_SCHED_JOB_BACKOFF 0x4u     /* waiting out a retry back-off */

/* A job as the scheduler sees it. */
typedef struct loom_sched_job {
	int64_t id;
	const char *name;
	const char *user;
	int32_t priority;        /* higher runs first */
	uint32_t state;          /* loom_job_state: pending, running or paused */
	uint32_t flags;          /* LOOM_SCHED_JOB_* */
	uint32_t attempts;       /* runs started so far */
	int64_t submitted_ms;    /* for FIFO within a priority */
	int64_t started_ms;      /* start of the current run; 0 if not running */
	int64_t not_before_ms;   /* retry back-off: not startable before this */
	loom_resources request;  /* what it asks for */
	loom_resources alloc;    /* what it holds while running */
	int32_t node;            /* index into the view's nodes; -1 if none */
	uint32_t n_after;
	const int64_t *after;    /* ids of the jobs it runs after */
	const void *reserved[4];
} loom_sched_job;

/* A place jobs run: this host, or a partition of a cluster. */
typedef struct loom_sched_node {
	const char *name;
	loom_resources total;
	loom_resources free;     /* total less what running jobs hold */
	uint32_t flags;
	const void *reserved[3];
} loom_sched_node;

/* A user's fair-share standing. */
typedef struct loom_sched_user {
	const char *name;
	double weight;           /* configured share, default 1 */
	double usage;            /* decayed core-seconds used recently */
	const void *reserved[2];
} loom_sched_user;

typedef struct loom_sched_view {
	uint32_t size;
	int64_t now_ms;
	size_t n_jobs;
	const loom_sched_job *jobs;   /* pending, running and paused jobs */
	size_t n_nodes;
	const loom_sched_node *nodes;
	size_t n_users;
	const loom_sched_user *users;
	const void *reserved[4];
} loom_sched_view;

typedef enum loom_sched_verb {
	LOOM_SCHED_START = 1,   /* start (or resume) a pending/paused job */
	LOOM_SCHED_PREEMPT = 2, /* pause a running job to free its resources */
	LOOM_SCHED_WAIT = 3,    /* leave it waiting; reason says why */
} loom_sched_verb;

typedef struct loom_sched_action {
	uint32_t verb;          /* loom_sched_verb */
	int32_t node;           /* START: index into the view's nodes */
	int64_t job_id;
	loom_resources alloc;   /* START: what to give it (gpu_mask included) */
	char reason[160];       /* shown to users: "waiting for 2 cpu, 1 free" */
	const void *reserved[2];
} loom_sched_action;

/* The plan the scheduler fills: at most cap actions in actions[]. */
typedef struct loom_sched_plan {
	loom_sched_action *actions;
	size_t cap;
	size_t n;
} loom_sched_plan;

/* The state of a remotely launched worker. */
typedef enum loom_sched_remote_state {
	LOOM_REMOTE_QUEUED = 1,
	LOOM_REMOTE_RUNNING = 2,
	LOOM_REMOTE_EXITED = 3,  /* exit_code holds its status */
	LOOM_REMOTE_LOST = 4,    /* the cluster no longer knows it */
} loom_sched_remote_state;

typedef struct loom_sched_remote_status {
	uint32_t state;          /* loom_sched_remote_state */
	int32_t exit_code;
	char reason[160];
	const void *reserved[2];
} loom_sched_remote_status;

typedef struct loom_scheduler_ops {
	uint32_t size;
	uint32_t caps; /* LOOM_SCHED_* */

	/* Required: decide.  Must not block; the view is valid for the call. */
	int (*plan)(void *ctx, const loom_sched_view *view, loom_sched_plan *plan);

	/* LOOM_SCHED_REMOTE only.  Launch argv (a loom-worker command line)
	 * for job; store an opaque handle (host->alloc'd) in *handle. */
	int (*launch)(void *ctx, const loom_sched_job *job, const char *const *argv,
	              char **handle);
	int (*poll)(void *ctx, const char *handle, loom_sched_remote_status *st);
	int (*cancel)(void *ctx, const char *handle);

	const void *reserved[8];
} loom_scheduler_ops;

#ifdef __cplusplus
}
#endif

#endif /* LOOM_SCHEDULER_H */

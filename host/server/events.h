/* The observer list: how loomd's modules tell each other what happened
 * without calling each other.
 *
 * A module that has news emits an event; every module that declared a
 * listener for that kind (loomi_module.listeners) is told, synchronously,
 * on the emitting thread, in the order of the module table (host/modules.c).
 * The emitter has already stored what the event reports: a job transition
 * is a row of job_events before anyone hears of it, and it is published on
 * the bus ("job.state") only after every listener has returned, so a
 * client that sees the bus event or reads the task finds the listeners'
 * work queued.
 *
 * Listeners run on hot paths (the jobs loop, the log writer's callers, the
 * tracking thread) and often with the emitter's locks held: a listener
 * copies what it needs into its own queue and returns; it must not block,
 * emit an event of its own kind, or call back into the emitter.  The
 * pointers in an event are valid only during the call.
 *
 * The list is attached once, before any module starts, and detached after
 * every module stopped; emitting is lock-free and safe from any thread.
 * Before attach and after detach an event reaches nobody. */
#ifndef LOOM_HOST_EVENTS_H
#define LOOM_HOST_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <loom/types.h>

struct loomi_daemon;
struct loomi_module;

typedef enum loomi_event_kind {
	/* A task's state changed (stored; not yet on the bus).  tasks → */
	LOOMI_EV_JOB_STATE = 1,
	/* A worker took up attempt N of a task (a new attempt, or the same
	 * one resumed after a pause).  tasks → */
	LOOMI_EV_JOB_ATTACH,
	/* Metric points a worker reported for (job, attempt).  tasks → */
	LOOMI_EV_JOB_POINTS,
	/* A line of a task's log: the worker's, or loomd's own about the task
	 * (instance "loomd").  tasks → */
	LOOMI_EV_JOB_LOG,
	/* The structured log took an entry (job 0: loomd's own line).  logs → */
	LOOMI_EV_LOG_ENTRY,
	/* A batch of metric points was stored in a run.  tracking → */
	LOOMI_EV_RUN_POINTS,
	LOOMI_EV_KINDS
} loomi_event_kind;

typedef struct loomi_event {
	int kind;                          /* loomi_event_kind */
	int64_t job;                       /* the task, 0 for none */
	union {
		struct {                   /* LOOMI_EV_JOB_STATE */
			const char *from, *to; /* state names; from may be NULL */
			const char *reason;    /* "" when none */
		} state;
		struct {                   /* LOOMI_EV_JOB_ATTACH */
			int attempt;
			const char *name, *user;
			const char *spec;      /* the job spec, JSON text */
		} attach;
		struct {                   /* LOOMI_EV_JOB_POINTS */
			int attempt;
			/* [name, step, epoch, scope, wall_ms, value] arrays, value a
			 * number or "NaN", "Infinity", "-Infinity"; may be NULL */
			const json_t *points;
		} points;
		struct {                   /* LOOMI_EV_JOB_LOG, LOOMI_EV_LOG_ENTRY */
			const char *instance;  /* plugin instance or component; may be NULL */
			int level;             /* LOOM_LOG_* */
			const char *message;
			const char *fields;    /* a JSON object as text, or NULL */
		} log;
		struct {                   /* LOOMI_EV_RUN_POINTS */
			const char *run_id;    /* "run-3" */
			const loom_metric_point *pts;
			size_t n;
		} run_points;
	} u;
} loomi_event;

typedef void (*loomi_listener_fn)(struct loomi_daemon *d, const loomi_event *ev);

/* One entry of a module's listeners: the kind it hears and what is called. */
typedef struct loomi_listener {
	int kind;
	loomi_listener_fn fn;
} loomi_listener;

/* Build the list from modules (every listener of each, in table order) for
 * d.  Call before any module starts; a second attach replaces the first. */
void loomi_events_attach(struct loomi_daemon *d, const struct loomi_module *const *modules,
                         size_t n);
/* Forget the list (after every module stopped). */
void loomi_events_detach(void);

/* Tell every listener of ev->kind, in order; returns when all have. */
void loomi_events_emit(const loomi_event *ev);

/* The name of a kind ("job.state"), for logs and tests. */
const char *loomi_event_kind_name(int kind);

#endif /* LOOM_HOST_EVENTS_H */

/* Alerts: rules evaluated on what loomd sees (metric points, log entries,
 * job state transitions, and a 1 s look at running jobs for stalls), and
 * actions fired when a rule matches (a bus event on topic "alert", a
 * webhook POST, a command).  Fired alerts are stored with the outcome of
 * every action and listed through the API.
 *
 * The module (alerts.c: loomi_alerts_module, with the routes
 * /api/v1/alerts/rules[/{id}] and /api/v1/alerts[/{id}]) hears of metric
 * points, log entries and job transitions through the observer list
 * (host/server/events.h); its listeners call the entry points below.  They
 * run on hot paths (tracking, logs, the job loop): they only copy what
 * they are given into a queue that the alerts thread drains, so they never
 * block on the network or the database.  The metric entry point returns at
 * once, without taking a lock, when no enabled rule watches any metric.
 *
 * docs/alerts.md describes the rule format, each condition precisely, and
 * the repeat interval that keeps a flapping condition from firing again
 * and again. */
#ifndef LOOM_HOST_ALERTS_H
#define LOOM_HOST_ALERTS_H

#include <stddef.h>
#include <stdint.h>

#include <loom/types.h>

#include "host/server/daemon.h"

/* Loads the rules from the store and starts the alerts thread.  Returns 0,
 * or an error code with *err set (free it). */
int loomi_alerts_start(loomi_daemon *d, char **err);

/* Stops the thread, after running the actions already queued. */
void loomi_alerts_stop(void);

/* every batch of metric points of a run (job_id 0: a run without a job);
 * cheap when no rule watches these names */
void loomi_alerts_metrics(int64_t job_id, const char *run_id,
                          const loom_metric_point *pts, size_t n);

/* every structured log entry (level: loom_log_level) */
void loomi_alerts_log(int64_t job_id, const char *instance, int level,
                      const char *message);

/* every job state transition */
void loomi_alerts_state(int64_t job_id, const char *from, const char *to,
                        const char *reason);

#endif /* LOOM_HOST_ALERTS_H */

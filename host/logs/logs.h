/* Structured logs: every job's lines and loomd's own, stored in the state
 * database (table logs, full-text index logs_fts) by a writer thread that
 * never blocks the caller; queried and exported over the REST API; aged
 * out into zstd-compressed JSON-lines archives.
 *
 * The module (logs.c: loomi_logs_module, routes GET
 * /api/v1/training/tasks/{id}/logs and GET /api/v1/logs) stores the lines
 * of tasks it hears of through the observer list (host/server/events.h),
 * and tells the list of every entry it takes (the alert rules on log
 * lines listen). */
#ifndef LOOM_HOST_LOGS_H
#define LOOM_HOST_LOGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host/server/daemon.h"

/* Migration 9: the logs table, its FTS5 index and the rows of job_logs. */
extern const char loomi_logs_migration_sql[];

/* Queue one entry.  job_id 0 is the host; instance (a plugin instance or
 * a component) and fields_json (a JSON object as text) may be NULL.  Never
 * waits on the database: when the queue is full the entry is dropped and
 * counted.  Safe from any thread, before start and after stop (then it is
 * dropped and counted too). */
void loomi_logs_add(int64_t job_id, const char *instance, int level, const char *message,
                    const char *fields_json);

/* Open the writer's own connection to d's state database, archive what is
 * past retention, and start the writer and retention threads.  0, or a
 * LOOM_E* code with *err set (free it). */
int loomi_logs_start(loomi_daemon *d, char **err);
/* Write everything queued, then stop the threads and close the connection. */
void loomi_logs_stop(void);

/* Wait until everything queued before this call is in the database (tests,
 * and readers that must see their own writes).  false when the writer is
 * not running. */
bool loomi_logs_flush(void);

/* Entries dropped because the queue was full or the writer was stopped. */
uint64_t loomi_logs_dropped(void);

/* Archive and delete entries older than before_ms (ms since the epoch);
 * *n_out receives how many.  0, or LOOM_EIO with *err set. */
int loomi_logs_expire(loomi_daemon *d, int64_t before_ms, int64_t *n_out, char **err);

#endif /* LOOM_HOST_LOGS_H */

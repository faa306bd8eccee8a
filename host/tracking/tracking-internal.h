/* Tracking's pieces shared by its own files (tracking.c, runs.c,
 * metrics-json.c) and the tests; other modules use tracking.h. */
#ifndef LOOM_HOST_TRACKING_INTERNAL_H
#define LOOM_HOST_TRACKING_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

#include "tracking.h"

/* Migration 7: runs, run_params, run_tags, run_artifacts, metric blocks. */
extern const char loomi_tracking_migration_sql[];

/* Sort by step, equal steps in arrival order (cheap when already sorted). */
void loomi_tracking_sort(tk_point *p, size_t n);

/* Decode a stored block of n points. 0 or LOOM_ECORRUPT / LOOM_ENOMEM. */
int loomi_tracking_block_unpack(const void *data, size_t len, size_t n, tk_point *out);

/* The history of run's metric name with from <= step <= to, in step
 * order, at most max points: all of them when there are no more, else
 * downsampled while read — the range cut into buckets of equal width in
 * steps, each keeping its lowest and highest value and its first
 * non-finite one, plus the first and last point — so spikes, dips and
 * gaps survive and memory stays that of max points.  *total: the points in
 * the range.  0; LOOM_ENOENT; LOOM_ECORRUPT. */
int loomi_tracking_history(sqlite3 *db, int64_t run, const char *name, int64_t from,
                           int64_t to, size_t max, tk_point **out, size_t *n, size_t *total);

/* A metric value: a number, or "NaN", "Infinity", "-Infinity".  0 or
 * LOOM_EINVAL. */
int loomi_tracking_value(const json_t *v, double *out);

/* Metric names are 1–200 characters of letters, digits and _ - . / : */
int loomi_tracking_name_ok(const char *name);

/* Queue points of a run made through the API: 0, or LOOM_EBUSY when the
 * queue is full (try again later), LOOM_ENOENT for an unknown run. */
int loomi_tracking_api_points(int64_t run, const char *name, tk_point *pts, size_t n);

/* Was run id ever given out (runs are never deleted)? */
bool loomi_tracking_run_known(int64_t run);

/* Higher is better for accuracy, F1, R², precision, recall, AUC; lower for
 * the rest (losses, errors). */
bool loomi_metric_higher_better(const char *name);

/* A run made through the API: its id (its lineage is Loom's and the
 * plugins' versions; a script's data is its own). */
int64_t loomi_tracking_api_run(const char *name, const char *user, const char *params_json);
/* End (or pause) a run made through the API, set a tag. */
int loomi_tracking_api_state(int64_t run, const char *state);
void loomi_tracking_api_tag(int64_t run, const char *key, const char *value);

/* Wait until the tracker plugins have had every call queued so far (they
 * lag loomd's store on a thread of their own). */
void loomi_tracking_flush_trackers(void);

#endif /* LOOM_HOST_TRACKING_INTERNAL_H */

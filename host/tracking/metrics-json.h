/* Metric batches as the ingest endpoint reads them (runs.c), and the fast
 * path that reads the columnar form without building a JSON tree. */
#ifndef LOOM_HOST_METRICS_JSON_H
#define LOOM_HOST_METRICS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tracking-internal.h"

/* Series of points by name, in the order the request gave them. */
typedef struct loomi_metric_batch {
	char **names;
	tk_point **pts;
	size_t *n;
	size_t count, total;
} loomi_metric_batch;

/* Append a series (pts taken). */
void loomi_metric_batch_add(loomi_metric_batch *b, const char *name, tk_point *pts, size_t n);
/* Free what is left (a series whose pts were handed on has NULL there). */
void loomi_metric_batch_free(loomi_metric_batch *b);

/* Read {"metrics": [{"name", "steps", "values", "epochs"?, "wall_ms"?,
 * "scope"?}]} into b.  False — with b emptied — for anything else or
 * anything wrong: the caller then reads the body with jansson, which
 * words the error. */
bool loomi_metrics_json_fast(const char *body, size_t len, int64_t now, loomi_metric_batch *b);

#endif /* LOOM_HOST_METRICS_JSON_H */

/* The Prometheus text exposition format (version 0.0.4), written by hand:
 * a family is a "# HELP" and a "# TYPE" line followed by its samples,
 *
 *   # HELP loom_tasks Training tasks in each state.
 *   # TYPE loom_tasks gauge
 *   loom_tasks{state="pending"} 3
 *
 * label values escaped (backslash, double quote, line feed), help text
 * escaped (backslash, line feed), numbers as Go's ParseFloat reads them
 * (NaN, +Inf, -Inf; the shortest decimal that reads back the same).  A
 * histogram's buckets are written cumulative, with le="+Inf", _sum and
 * _count, from per-bucket counts (host/server/histogram.h). */
#ifndef LOOM_HOST_METRICS_PROM_H
#define LOOM_HOST_METRICS_PROM_H

#include <stddef.h>
#include <stdint.h>

#include "host/server/histogram.h"

typedef struct loomi_prom {
	char *buf;                 /* NUL-terminated; take it when done */
	size_t len, cap;
} loomi_prom;

/* A label: name (a valid label name, not checked) and value (any UTF-8). */
typedef struct loomi_prom_label {
	const char *name;
	const char *value;
} loomi_prom_label;

/* The HELP and TYPE lines of family name; type is "counter", "gauge",
 * "histogram" or "untyped". */
void loomi_prom_family(loomi_prom *w, const char *name, const char *type, const char *help);

/* One sample: name{labels} value.  n_labels may be 0 (labels NULL). */
void loomi_prom_sample(loomi_prom *w, const char *name, const loomi_prom_label *labels,
                       size_t n_labels, double value);
/* The same with an integer value, written exactly. */
void loomi_prom_sample_u64(loomi_prom *w, const char *name, const loomi_prom_label *labels,
                           size_t n_labels, uint64_t value);

/* The samples of one histogram of family name (its _bucket, _sum and
 * _count), with labels (and le) on each: counts per bucket as
 * loomi_histogram_read gives them (n_bounds + 1, the last above every
 * bound), sum in the bounds' unit. */
void loomi_prom_histogram(loomi_prom *w, const char *name, const loomi_prom_label *labels,
                          size_t n_labels, const double *bounds, size_t n_bounds,
                          const uint64_t *counts, double sum);

/* A number as the format writes it (buf of 32 bytes or more). */
const char *loomi_prom_number(double v, char *buf, size_t size);

void loomi_prom_free(loomi_prom *w);

#endif /* LOOM_HOST_METRICS_PROM_H */

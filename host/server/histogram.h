/* A latency histogram that the hot paths fill without a lock: observing a
 * duration is two relaxed atomic adds (its bucket, the sum).  Bounds are
 * upper bounds in seconds, ascending, kept by the owner beside it; the
 * counts are per bucket (not cumulative), the last one counting what is
 * above every bound.  GET /metrics (host/metrics/) reads them at scrape
 * time and writes the cumulative form Prometheus wants. */
#ifndef LOOM_HOST_HISTOGRAM_H
#define LOOM_HOST_HISTOGRAM_H

#include <stddef.h>
#include <stdint.h>

#define LOOMI_HISTOGRAM_MAX_BOUNDS 24

typedef struct loomi_histogram {
	uint64_t counts[LOOMI_HISTOGRAM_MAX_BOUNDS + 1];
	uint64_t sum_ns;
} loomi_histogram;

/* Request durations: 100 µs to 10 s in 1-2.5-5 steps (16 bounds). */
extern const double loomi_duration_bounds[];
extern const size_t loomi_n_duration_bounds;

/* Count a duration of ns nanoseconds (n_bounds ≤ LOOMI_HISTOGRAM_MAX_BOUNDS). */
void loomi_histogram_observe(loomi_histogram *h, const double *bounds, size_t n_bounds,
                             uint64_t ns);

/* A copy of h's n_bounds + 1 counts into counts, and its sum in seconds. */
void loomi_histogram_read(const loomi_histogram *h, size_t n_bounds, uint64_t *counts,
                          double *sum_s);

#endif /* LOOM_HOST_HISTOGRAM_H */

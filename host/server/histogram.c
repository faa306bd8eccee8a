/* Lock-free latency histograms (histogram.h). */
#include "config.h"

#include "histogram.h"

const double loomi_duration_bounds[] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
	0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,     10,
};
const size_t loomi_n_duration_bounds = sizeof loomi_duration_bounds / sizeof *loomi_duration_bounds;

void
loomi_histogram_observe(loomi_histogram *h, const double *bounds, size_t n_bounds, uint64_t ns)
{
	double s = (double)ns / 1e9;
	size_t i = 0;

	if (n_bounds > LOOMI_HISTOGRAM_MAX_BOUNDS)
		n_bounds = LOOMI_HISTOGRAM_MAX_BOUNDS;
	while (i < n_bounds && s > bounds[i]) /* le: a bound counts what equals it */
		i++;
	__atomic_fetch_add(&h->counts[i], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->sum_ns, ns, __ATOMIC_RELAXED);
}

void
loomi_histogram_read(const loomi_histogram *h, size_t n_bounds, uint64_t *counts, double *sum_s)
{
	if (n_bounds > LOOMI_HISTOGRAM_MAX_BOUNDS)
		n_bounds = LOOMI_HISTOGRAM_MAX_BOUNDS;
	for (size_t i = 0; i <= n_bounds; i++)
		counts[i] = __atomic_load_n(&h->counts[i], __ATOMIC_RELAXED);
	*sum_s = (double)__atomic_load_n(&h->sum_ns, __ATOMIC_RELAXED) / 1e9;
}

/* rng.c — the counter-based generator: Philox4x32-10 keyed by the seed,
 * counting over (counter, stream).  See internal.h for the algorithm and
 * its quality; every value depends only on (seed, stream, counter), so
 * threads draw without sharing state and results do not depend on
 * scheduling. */
#include "config.h"

#include <math.h>

#include "kernels/cpu/internal.h"
#include "kernels/kernels.h"

uint64_t
lk_rand_u64(uint64_t seed, uint64_t stream, uint64_t counter)
{
	return lki_rand_u64(seed, stream, counter);
}

float
lk_rand_uniform(uint64_t seed, uint64_t stream, uint64_t counter)
{
	return lki_rand_uniform(seed, stream, counter);
}

/* Box–Muller on the two 64-bit halves of one Philox block, each made a
 * 53-bit uniform: u1 in (0, 1] (so log is finite), u2 in [0, 1).  |z| is
 * bounded by sqrt(-2 ln 2^-53) ≈ 8.57. */
double
lk_rand_normal(uint64_t seed, uint64_t stream, uint64_t counter)
{
	lki_philox_out r = lki_philox(seed, stream, counter);
	uint64_t a = ((uint64_t)r.w[1] << 32) | r.w[0];
	uint64_t b = ((uint64_t)r.w[3] << 32) | r.w[2];
	double u1 = (double)((a >> 11) + 1) * 0x1p-53;
	double u2 = (double)(b >> 11) * 0x1p-53;
	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

/* diversity.h — what k-center and ranked-batch share: the candidate rows
 * (all rows not fixed, or a seeded uniform subsample of them), their
 * features copied together, and each one's squared Euclidean distance to
 * the nearest centre (fixed rows, then the rows chosen). */
#ifndef LOOM_SAMPLER_DIVERSITY_H
#define LOOM_SAMPLER_DIVERSITY_H

#include <string.h>

#include "kernels/samplers/sampler-common.h"

typedef struct div_set {
	size_t m;        /* candidates */
	size_t *rows;    /* their rows in the pool, ascending */
	const float *base; /* the pool's features */
	float *x;        /* subsampled: m × dim, their features gathered
	                  * together; else NULL and they are read in place */
	float *d2;       /* squared distance to the nearest centre: INFINITY
	                  * while there is none; −1 once chosen */
	size_t centres;  /* centres so far: distinct fixed rows, then chosen */
	uint32_t dim;
	bool subsampled; /* m is a subsample of the rows not fixed */
} div_set;

/* Check the features (present, dim ≥ 1, finite on the rows read), draw the
 * subsample (req->subsample, else the instance's "subsample"; 0 or ≥ the
 * rows not fixed: all of them) from rng, check k against the candidates
 * and measure each one's distance to the fixed rows.  div_free releases
 * what it took, also after a failure. */
int div_prepare(const smp_ctx *c, const char *sampler, const loom_sample_pool *pool,
                const loom_sample_request *req, loom_sample_result *res, const smp_rows *rows,
                smp_rng *rng, div_set *s);
void div_free(div_set *s);

/* Candidate i's features. */
static inline const float *
div_x(const div_set *s, size_t i)
{
	return s->x != NULL ? s->x + i * s->dim : s->base + s->rows[i] * s->dim;
}

/* Candidate i becomes a centre: chosen (d2 = −1) and every other
 * candidate's d2 lowered to its distance to it where that is smaller. */
void div_choose(div_set *s, size_t i);

/* ‖a − b‖² in float, summed in eight interleaved partial sums — lane u
 * takes dimensions u, u + 8, … — added pairwise at the end, then the
 * tail: a fixed order, so the same answer on every run and machine.  The
 * lanes are GCC's generic vectors (two SSE registers, one AVX register),
 * which is the same arithmetic as the scalar loop, only 8 at a time. */
typedef float div_v4 __attribute__((vector_size(16)));

static inline float
div_d2(const float *a, const float *b, uint32_t dim)
{
	div_v4 lo = {0, 0, 0, 0}, hi = {0, 0, 0, 0}, x, y, d;
	float tail = 0;
	uint32_t j = 0;

	for (; j + 8 <= dim; j += 8) {
		memcpy(&x, a + j, sizeof x);
		memcpy(&y, b + j, sizeof y);
		d = x - y;
		lo += d * d;
		memcpy(&x, a + j + 4, sizeof x);
		memcpy(&y, b + j + 4, sizeof y);
		d = x - y;
		hi += d * d;
	}
	for (; j < dim; j++) {
		float e = a[j] - b[j];
		tail += e * e;
	}
	return ((lo[0] + hi[0]) + (lo[1] + hi[1])) + ((lo[2] + hi[2]) + (lo[3] + hi[3])) + tail;
}

#endif

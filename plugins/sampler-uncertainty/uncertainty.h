/* uncertainty.h — the four uncertainty samplers share one selection: a
 * measure per row, then the k rows of highest uncertainty (see
 * uncertainty.c and docs/samplers.md). */
#ifndef LOOM_SAMPLER_UNCERTAINTY_H
#define LOOM_SAMPLER_UNCERTAINTY_H

#include "kernels/samplers/sampler-common.h"

typedef enum unc_measure {
	UNC_LEAST_CONFIDENCE, /* 1 − max p */
	UNC_MARGIN,           /* p(1) − p(2), smallest first */
	UNC_ENTROPY,          /* −Σ p ln p */
	UNC_VARIANCE,         /* the pool's scores: a spread, highest first */
} unc_measure;

int unc_select(void *ctx, unc_measure m, const loom_sample_pool *pool,
               const loom_sample_request *req, loom_sample_result *res);

#endif

/* <loom/sampler.h> — sampler plugins choose samples from a pool: for the
 * labelling loop of incremental learning (least-confidence, margin,
 * entropy, diversity), for replay memory (reservoir), and for balanced
 * subsets (random, stratified).
 *
 * The host (or the compute plugin) describes the pool with whatever it has
 * — predicted probabilities, strata, feature vectors, scores — and the
 * sampler picks k of them.  A sampler states in `needs` what it reads; the
 * host refuses a request that lacks it with a clear error. */
#ifndef LOOM_SAMPLER_H
#define LOOM_SAMPLER_H

#include <loom/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What a sampler reads from the pool. */
#define LOOM_SAMPLE_NEEDS_PROBS 0x1u    /* probs, n_classes */
#define LOOM_SAMPLE_NEEDS_STRATA 0x2u   /* strata */
#define LOOM_SAMPLE_NEEDS_FEATURES 0x4u /* features, dim */
#define LOOM_SAMPLE_NEEDS_SCORES 0x8u   /* scores */
#define LOOM_SAMPLE_STREAMING 0x10u     /* uses seen and fills slot[] */

/* The candidates.  Arrays have n entries (rows); any may be NULL when the
 * sampler does not need it. */
typedef struct loom_sample_pool {
	uint32_t size;
	size_t n;
	const int64_t *ids;      /* caller's ids for the rows; NULL: row index */
	uint32_t n_classes;
	const float *probs;      /* n × n_classes predicted probabilities */
	const int32_t *strata;   /* n group labels (class, user, time bucket) */
	uint32_t dim;
	const float *features;   /* n × dim embeddings (diversity) */
	const float *scores;     /* n scores, higher = more informative */
	uint64_t seen;           /* streaming: rows offered in earlier calls */
	const void *reserved[4];
} loom_sample_pool;

typedef struct loom_sample_request {
	uint32_t size;
	size_t k;                /* how many to choose (bank capacity, streaming) */
	uint64_t seed;           /* results depend only on pool, k and seed */
	size_t n_fixed;
	const size_t *fixed;     /* rows already chosen/labelled: diversity
	                          * treats them as centres, others skip them */
	/* Diversity samplers (k-center, ranked-batch): choose among a uniform
	 * random subsample of this many rows (drawn with seed; fixed rows stay
	 * centres whether drawn or not).  0: the sampler's instance setting
	 * "subsample" (default 0, the whole pool).  Others ignore it.  Taken
	 * from the reserved slots: a host that predates it leaves it 0. */
	size_t subsample;
	const void *reserved[3];
} loom_sample_request;

/* The choice, in arrays of capacity k the caller provides. */
typedef struct loom_sample_result {
	size_t n;                /* rows chosen (≤ k) */
	size_t *index;           /* their row indices, most informative first */
	double *score;           /* their scores, or NULL if not wanted */
	int64_t *slot;           /* streaming: the bank slot each replaces */
	/* On failure: why, naming the input and what to do ("row 17: the
	 * probabilities sum to 0.62, not 1 …"), allocated with host->alloc;
	 * the caller frees it with host->free.  NULL on success, or when the
	 * sampler has nothing to add to the code.  Taken from the reserved
	 * slots: the caller zeroes the result before the call. */
	char *error;
	const void *reserved[1];
} loom_sample_result;

typedef struct loom_sampler_ops {
	uint32_t size;
	uint32_t needs;          /* LOOM_SAMPLE_* */
	/* Choose up to k rows.  Returns 0, or a LOOM_E* code with res->n = 0
	 * and res->error saying why: LOOM_EINVAL for a missing or malformed
	 * input (k = 0, no probabilities, NaN, dim = 0), LOOM_ERANGE for a k
	 * larger than the rows it may choose from or a fixed row past n,
	 * LOOM_ENOMEM.  docs/samplers.md gives each sampler's formula. */
	int (*select)(void *ctx, const loom_sample_pool *pool,
	              const loom_sample_request *req, loom_sample_result *res);
	const void *reserved[8];
} loom_sampler_ops;

#ifdef __cplusplus
}
#endif

#endif /* LOOM_SAMPLER_H */

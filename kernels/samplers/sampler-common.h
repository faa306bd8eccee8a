/* sampler-common.h — what the sampler plugins share (a convenience library
 * linked into each module, not part of the SDK): the instance context,
 * the seeded generator, error messages through res->error, the checks
 * every request passes, the per-row uncertainty measures and a partial
 * top-k selection.  docs/samplers.md states every formula used here. */
#ifndef LOOM_SAMPLER_COMMON_H
#define LOOM_SAMPLER_COMMON_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <loom/sampler.h>

/* One context for every sampler module; the config maps fill what applies. */
typedef struct smp_ctx {
	int64_t subsample;       /* k-center, ranked-batch: "subsample" */
	const char *uncertainty; /* ranked-batch: "uncertainty" */
	const loom_host *host;
	loom_instance *ins;
} smp_ctx;

/* The descriptor's init for every sampler: keeps host and instance. */
int smp_init(loom_instance *ins, const loom_host *host, void *ctx);

/* ------------------------------------------------------------------ generator
 * SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
 * generators", OOPSLA 2014; the seeding generator of xoshiro): the state
 * advances by the golden-ratio constant and each output is the state
 * through a fixed 64-bit mixer.  Its i-th output (i = 1, 2, …) is a pure
 * function of the seed and i, which makes the reservoir's draw for a row a
 * function of the seed and the row's place in the stream alone.  The SDK
 * exports no generator, and the kernels' Philox is internal to them. */
typedef struct smp_rng {
	uint64_t s;
} smp_rng;

#define SMP_GOLDEN 0x9E3779B97F4A7C15ull

static inline uint64_t
smp_mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static inline uint64_t
smp_next(smp_rng *r)
{
	r->s += SMP_GOLDEN;
	return smp_mix64(r->s);
}

/* Uniform in [0, n) for n ≥ 1, without bias: Lemire's multiply-shift
 * ("Fast random integer generation in an interval", 2019): the high half
 * of x·n, drawing x again while the low half is below 2^64 mod n. */
static inline uint64_t
smp_below(smp_rng *r, uint64_t n)
{
	unsigned __int128 m = (unsigned __int128)smp_next(r) * n;
	uint64_t lo = (uint64_t)m;

	if (lo < n) {
		uint64_t t = (0 - n) % n;
		while (lo < t) {
			m = (unsigned __int128)smp_next(r) * n;
			lo = (uint64_t)m;
		}
	}
	return (uint64_t)(m >> 64);
}

/* ------------------------------------------------------------------ errors */

/* Fail the request: res->n = 0, res->error = the message (host->alloc'd;
 * none when out of memory), and return code. */
int smp_fail(const smp_ctx *c, loom_sample_result *res, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* ------------------------------------------------------------------ the request */

/* What every request is checked for before a sampler reads its pool. */
typedef struct smp_rows {
	uint8_t *fixed; /* n flags, 1 for a fixed row; NULL when there are none */
	size_t n_fixed; /* distinct fixed rows */
	size_t n_free;  /* rows not fixed: those a sampler may choose */
} smp_rows;

/* Check pool, req and res (present; k ≥ 1; res->index; fixed rows within
 * the pool) and mark the fixed rows.  Zeroes res->n and res->error first.
 * smp_rows_free releases what it took, also after a failure. */
int smp_begin(const smp_ctx *c, const char *sampler, const loom_sample_pool *pool,
              const loom_sample_request *req, loom_sample_result *res, smp_rows *rows);
void smp_rows_free(smp_rows *rows);

/* LOOM_ERANGE with the message when k is more than the `avail` rows the
 * sampler may choose from (`what` names them: "rows", "rows of the
 * subsample"). */
int smp_check_k(const smp_ctx *c, const char *sampler, loom_sample_result *res, size_t k,
                size_t avail, size_t n, size_t n_fixed, const char *what);

/* Probabilities: the tolerance on a row's sum, and the check of the
 * probabilities of row i (finite, ≥ 0, summing to 1 ± SMP_PROB_TOLERANCE).
 * smp_check_probs checks the pool's arrays and n_classes ≥ min_classes and
 * every row not fixed (fixed may be NULL). */
#define SMP_PROB_TOLERANCE 1e-3
int smp_check_probs(const smp_ctx *c, const char *sampler, const loom_sample_pool *pool,
                    const uint8_t *fixed, uint32_t min_classes, loom_sample_result *res);
int smp_check_prob_row(const smp_ctx *c, const char *sampler, const loom_sample_pool *pool,
                       size_t i, loom_sample_result *res);

/* Scores: present, every row not fixed finite and (nonneg) ≥ 0. */
int smp_check_scores(const smp_ctx *c, const char *sampler, const loom_sample_pool *pool,
                     const uint8_t *fixed, bool nonneg, loom_sample_result *res);

/* ------------------------------------------------------------------ measures
 * Per row of C probabilities p (checked already). */

/* 1 − max p */
static inline double
smp_least_confidence(const float *p, uint32_t C)
{
	float best = p[0];
	for (uint32_t j = 1; j < C; j++)
		if (p[j] > best)
			best = p[j];
	return 1.0 - (double)best;
}

/* p(1) − p(2): the largest probability less the second largest (C ≥ 2). */
static inline double
smp_margin(const float *p, uint32_t C)
{
	float a = p[0] >= p[1] ? p[0] : p[1], b = p[0] >= p[1] ? p[1] : p[0];
	for (uint32_t j = 2; j < C; j++) {
		if (p[j] > a) {
			b = a;
			a = p[j];
		} else if (p[j] > b) {
			b = p[j];
		}
	}
	return (double)a - (double)b;
}

/* −Σ p ln p in nats, with 0 ln 0 = 0. */
static inline double
smp_entropy(const float *p, uint32_t C)
{
	double h = 0;
	for (uint32_t j = 0; j < C; j++)
		if (p[j] > 0)
			h -= (double)p[j] * log((double)p[j]);
	return h;
}

/* ------------------------------------------------------------------ top k */

/* The k rows of largest key among those offered, best first: larger key
 * first, equal keys by lower row index.  Rows must be offered in
 * ascending index order (then an equal key never displaces a kept row,
 * which is the tie-break).  A min-heap of k entries: O(n + m log k) for
 * m displacements, which on unsorted data is about k ln(n/k). */
typedef struct smp_topk {
	size_t k, n;
	double *key;  /* heap keys (k) */
	size_t *row;  /* heap rows (k) */
} smp_topk;

int smp_topk_init(smp_topk *t, size_t k);
void smp_topk_free(smp_topk *t);
void smp_topk_push(smp_topk *t, double key, size_t row);

static inline void
smp_topk_offer(smp_topk *t, double key, size_t row)
{
	if (t->n == t->k && !(key > t->key[0]))
		return;
	smp_topk_push(t, key, row);
}

/* Sort the kept rows best first into res->index (and their keys, mapped
 * through sign: +1 the key itself, −1 its negation, into res->score when
 * wanted); res->n = the count. */
void smp_topk_finish(smp_topk *t, double sign, loom_sample_result *res);

/* ------------------------------------------------------------------ helpers */

/* Partial Fisher–Yates: the first k entries of a[0..m) become a uniform
 * random draw without replacement, in draw order: for i < k, swap a[i]
 * with a[i + below(m − i)]. */
void smp_shuffle_prefix(smp_rng *r, size_t *a, size_t m, size_t k);

/* The rows not fixed, ascending, in a new array of rows->n_free entries
 * (NULL when out of memory). */
size_t *smp_free_rows(const loom_sample_pool *pool, const smp_rows *rows);

#endif /* LOOM_SAMPLER_COMMON_H */

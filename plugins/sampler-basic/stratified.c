/* sampler-stratified — k rows split over the strata in proportion to
 * their sizes, random within each stratum.
 *
 * Among the rows not fixed, stratum s has N_s rows, M = Σ N_s.  Its quota
 * is q_s = ⌊k·N_s / M⌋, and the k − Σ q_s rows left over go one each to
 * the strata with the largest remainders k·N_s mod M (largest-remainder
 * or Hamilton rounding); equal remainders: the lower stratum label first.
 * No quota exceeds its stratum (k ≤ M).  Then, strata in ascending label
 * order, a partial Fisher–Yates shuffle of each stratum's rows (ascending)
 * draws its quota, all from one SplitMix64 seeded with req->seed.  The
 * rows come back round-robin — the first draw of each stratum in label
 * order, then the second … — so any prefix of the answer stays close to
 * proportional.  Scores are 0. */
#include "config.h"

#include <stdlib.h>

#include "kernels/samplers/sampler-common.h"

typedef struct member {
	int32_t stratum;
	size_t row;
} member;

typedef struct stratum {
	int32_t label;
	size_t first, count; /* its members in the sorted array */
	size_t quota;
	uint64_t remainder;
} stratum;

static int
by_stratum_row(const void *a, const void *b)
{
	const member *x = a, *y = b;
	if (x->stratum != y->stratum)
		return x->stratum < y->stratum ? -1 : 1;
	return (x->row > y->row) - (x->row < y->row);
}

/* larger remainder first; equal: lower label */
static int
by_remainder(const void *a, const void *b)
{
	const stratum *x = *(const stratum *const *)a, *y = *(const stratum *const *)b;
	if (x->remainder != y->remainder)
		return x->remainder > y->remainder ? -1 : 1;
	return (x->label > y->label) - (x->label < y->label);
}

static int
stratified_select(void *p, const loom_sample_pool *pool, const loom_sample_request *req,
                  loom_sample_result *res)
{
	const smp_ctx *c = p;
	smp_rng rng = {req != NULL ? req->seed : 0};
	smp_rows rows;
	member *mem = NULL;
	stratum *st = NULL;
	stratum **order = NULL;
	size_t *draw = NULL;
	size_t M = 0, S = 0;
	int rv;

	if ((rv = smp_begin(c, "stratified", pool, req, res, &rows)) != 0)
		goto out;
	if (pool->strata == NULL) {
		rv = smp_fail(c, res, LOOM_EINVAL,
		              "stratified: the pool has no strata: give each row's group label "
		              "(its class, user or time bucket)");
		goto out;
	}
	if ((rv = smp_check_k(c, "stratified", res, req->k, rows.n_free, pool->n, rows.n_fixed,
	                      "rows")) != 0)
		goto out;
	M = rows.n_free;
	mem = malloc(M * sizeof *mem);
	draw = malloc(M * sizeof *draw);
	if (mem == NULL || draw == NULL)
		goto nomem;
	M = 0;
	for (size_t i = 0; i < pool->n; i++)
		if (rows.fixed == NULL || !rows.fixed[i])
			mem[M++] = (member){pool->strata[i], i};
	qsort(mem, M, sizeof *mem, by_stratum_row);
	for (size_t i = 0; i < M; i++)
		if (i == 0 || mem[i].stratum != mem[i - 1].stratum)
			S++;
	st = calloc(S, sizeof *st);
	order = malloc(S * sizeof *order);
	if (st == NULL || order == NULL)
		goto nomem;

	/* the quotas */
	size_t s = 0, given = 0;
	for (size_t i = 0; i < M; i++) {
		if (i > 0 && mem[i].stratum != mem[i - 1].stratum)
			s++;
		if (st[s].count++ == 0) {
			st[s].label = mem[i].stratum;
			st[s].first = i;
		}
	}
	for (s = 0; s < S; s++) {
		unsigned __int128 x = (unsigned __int128)req->k * st[s].count;
		st[s].quota = (size_t)(x / M);
		st[s].remainder = (uint64_t)(x % M);
		given += st[s].quota;
		order[s] = &st[s];
	}
	qsort(order, S, sizeof *order, by_remainder);
	for (s = 0; given < req->k; s++, given++)
		order[s]->quota++;

	/* the draws, stratum by stratum, each into the front of its segment */
	for (s = 0; s < S; s++) {
		size_t *seg = draw + st[s].first;
		for (size_t j = 0; j < st[s].count; j++)
			seg[j] = mem[st[s].first + j].row;
		smp_shuffle_prefix(&rng, seg, st[s].count, st[s].quota);
	}

	/* round-robin */
	size_t n = 0;
	for (size_t round = 0; n < req->k; round++)
		for (s = 0; s < S; s++)
			if (round < st[s].quota) {
				res->index[n] = draw[st[s].first + round];
				if (res->score != NULL)
					res->score[n] = 0;
				n++;
			}
	res->n = n;
	goto out;
nomem:
	rv = smp_fail(c, res, LOOM_ENOMEM, "stratified: out of memory for %zu rows", pool->n);
out:
	free(mem);
	free(draw);
	free(st);
	free(order);
	smp_rows_free(&rows);
	return rv;
}

static const loom_sampler_ops ops = {
	.size = sizeof ops,
	.needs = LOOM_SAMPLE_NEEDS_STRATA,
	.select = stratified_select,
};

LOOM_PLUGIN_DEFINE(sampler_stratified,
                   .kind = LOOM_KIND_SAMPLER,
                   .flags = LOOM_PLUGIN_THREAD_SAFE,
                   .name = "sampler-stratified",
                   .version = "1.0.0",
                   .description = "k rows split over the strata in proportion to their sizes "
                                  "(largest remainder), random within each",
                   .ctx_size = sizeof(smp_ctx),
                   .init = smp_init,
                   .ops = &ops)

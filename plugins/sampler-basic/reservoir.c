/* sampler-reservoir — a replay memory of k slots kept as a uniform sample
 * of every row ever offered: Vitter's Algorithm R, over calls.
 *
 * The rows of a call that are not fixed are offered in ascending order;
 * the t-th offered row of the whole stream (t = pool->seen + its place in
 * this call, from 0) takes slot t while t < k, and afterwards slot j when
 * j = below(t + 1) < k, else nothing.  below is Lemire's bounded draw from
 * a SplitMix64 started at the state mix64(seed + (t + 1)·γ) — the t-th
 * output of SplitMix64(seed) — so a row's fate depends only on the seed
 * and t: feeding the stream in one call or in many gives the same bank.
 * After the call every row has been kept with probability k / (t + 1).
 *
 * The answer lists, in row order, the rows that end this call in the bank
 * with res->slot the slot each takes (a row displaced later in the same
 * call is left out, so at most k rows come back); res->score is 0.  The
 * next call's seen is this one's plus the rows offered (n less the fixed
 * rows). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/samplers/sampler-common.h"

typedef struct pair {
	size_t slot, row;
} pair;

static int
by_slot_row(const void *a, const void *b)
{
	const pair *x = a, *y = b;
	if (x->slot != y->slot)
		return x->slot < y->slot ? -1 : 1;
	return (x->row > y->row) - (x->row < y->row);
}

static int
by_row(const void *a, const void *b)
{
	const pair *x = a, *y = b;
	return (x->row > y->row) - (x->row < y->row);
}

static int
reservoir_select(void *p, const loom_sample_pool *pool, const loom_sample_request *req,
                 loom_sample_result *res)
{
	const smp_ctx *c = p;
	smp_rows rows;
	size_t *taken = NULL; /* per offered row of this call: its slot, or SIZE_MAX */
	pair *pairs = NULL;
	int rv;

	if ((rv = smp_begin(c, "reservoir", pool, req, res, &rows)) != 0)
		goto out;
	if (res->slot == NULL) {
		rv = smp_fail(c, res, LOOM_EINVAL,
		              "reservoir: the result has no slot array: give one of k entries "
		              "(the bank slot each chosen row replaces)");
		goto out;
	}
	if (pool->seen > UINT64_MAX - pool->n) {
		rv = smp_fail(c, res, LOOM_ERANGE, "reservoir: seen = %llu overflows with %zu rows",
		              (unsigned long long)pool->seen, pool->n);
		goto out;
	}
	taken = malloc((pool->n ? pool->n : 1) * sizeof *taken);
	if (taken == NULL) {
		rv = smp_fail(c, res, LOOM_ENOMEM, "reservoir: out of memory for %zu rows", pool->n);
		goto out;
	}

	const uint64_t k = req->k;
	uint64_t t = pool->seen;
	size_t kept = 0;
	for (size_t i = 0; i < pool->n; i++) {
		taken[i] = SIZE_MAX;
		if (rows.fixed != NULL && rows.fixed[i])
			continue;
		if (t < k) {
			taken[i] = (size_t)t;
		} else {
			smp_rng r = {smp_mix64(req->seed + (t + 1) * SMP_GOLDEN)};
			uint64_t j = smp_below(&r, t + 1);
			if (j < k)
				taken[i] = (size_t)j;
		}
		t++;
		kept += taken[i] != SIZE_MAX;
	}
	if (kept == 0)
		goto out;
	/* a slot taken twice in this call keeps its last taker: sort the
	 * (slot, row) pairs, keep the last of each slot, then back in row
	 * order.  O(m log m) for the m rows taken, whatever the bank's size. */
	if ((pairs = malloc(kept * sizeof *pairs)) == NULL) {
		rv = smp_fail(c, res, LOOM_ENOMEM, "reservoir: out of memory for %zu rows", pool->n);
		goto out;
	}
	size_t m = 0, n = 0;
	for (size_t i = 0; i < pool->n; i++)
		if (taken[i] != SIZE_MAX)
			pairs[m++] = (pair){taken[i], i};
	qsort(pairs, m, sizeof *pairs, by_slot_row);
	for (size_t i = 0; i < m; i++)
		if (i + 1 == m || pairs[i + 1].slot != pairs[i].slot)
			pairs[n++] = pairs[i];
	qsort(pairs, n, sizeof *pairs, by_row);
	for (size_t i = 0; i < n; i++) {
		res->index[i] = pairs[i].row;
		res->slot[i] = (int64_t)pairs[i].slot;
		if (res->score != NULL)
			res->score[i] = 0;
	}
	res->n = n;
out:
	free(taken);
	free(pairs);
	smp_rows_free(&rows);
	return rv;
}

static const loom_sampler_ops ops = {
	.size = sizeof ops,
	.needs = LOOM_SAMPLE_STREAMING,
	.select = reservoir_select,
};

LOOM_PLUGIN_DEFINE(sampler_reservoir,
                   .kind = LOOM_KIND_SAMPLER,
                   .flags = LOOM_PLUGIN_THREAD_SAFE,
                   .name = "sampler-reservoir",
                   .version = "1.0.0",
                   .description = "a uniform replay memory of k slots over a stream of calls "
                                  "(Algorithm R)",
                   .ctx_size = sizeof(smp_ctx),
                   .init = smp_init,
                   .ops = &ops)

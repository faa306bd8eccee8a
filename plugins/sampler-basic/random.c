/* sampler-random — k rows uniformly at random without replacement, from
 * the rows not fixed: a partial Fisher–Yates shuffle of those rows (in
 * ascending order) with SplitMix64 seeded with req->seed; the rows come
 * back in draw order, each with score 0.  docs/samplers.md. */
#include "config.h"

#include <stdlib.h>

#include "kernels/samplers/sampler-common.h"

static int
random_select(void *p, const loom_sample_pool *pool, const loom_sample_request *req,
              loom_sample_result *res)
{
	const smp_ctx *c = p;
	smp_rng rng = {req != NULL ? req->seed : 0};
	smp_rows rows;
	size_t *a = NULL;
	int rv;

	if ((rv = smp_begin(c, "random", pool, req, res, &rows)) != 0)
		goto out;
	if ((rv = smp_check_k(c, "random", res, req->k, rows.n_free, pool->n, rows.n_fixed,
	                      "rows")) != 0)
		goto out;
	if ((a = smp_free_rows(pool, &rows)) == NULL) {
		rv = smp_fail(c, res, LOOM_ENOMEM, "random: out of memory for %zu rows", pool->n);
		goto out;
	}
	smp_shuffle_prefix(&rng, a, rows.n_free, req->k);
	for (size_t i = 0; i < req->k; i++) {
		res->index[i] = a[i];
		if (res->score != NULL)
			res->score[i] = 0;
	}
	res->n = req->k;
out:
	free(a);
	smp_rows_free(&rows);
	return rv;
}

static const loom_sampler_ops ops = {
	.size = sizeof ops,
	.needs = 0,
	.select = random_select,
};

LOOM_PLUGIN_DEFINE(sampler_random,
                   .kind = LOOM_KIND_SAMPLER,
                   .flags = LOOM_PLUGIN_THREAD_SAFE,
                   .name = "sampler-random",
                   .version = "1.0.0",
                   .description = "k rows uniformly at random without replacement (seeded)",
                   .ctx_size = sizeof(smp_ctx),
                   .init = smp_init,
                   .ops = &ops)

/* sampler-k-center — greedy k-center (the core-set of Sener and Savarese,
 * "Active learning for convolutional neural networks: a core-set
 * approach", 2018): each step chooses the candidate farthest (Euclidean,
 * over `features`) from its nearest centre, then makes it a centre.  The
 * fixed rows are centres from the start.  Without them the first centre
 * is a candidate drawn uniformly (score 0); every other row's score is
 * its distance to the nearest centre when chosen, ties to the lower row.
 * Cost: k passes over the m candidates, O(k·m·dim) — with the "subsample"
 * (request or instance setting) m stays small on a large pool. */
#include "config.h"

#include <stddef.h>
#include <string.h>

#include "diversity.h"

static const loom_config_entry config[] = {
	{LOOM_CONFIG_INT, LOOM_CONFIG_RANGE, "subsample", "0", offsetof(smp_ctx, subsample),
	 "choose among a seeded uniform subsample of this many rows (0: the whole pool); a "
	 "request's subsample wins", 0, 1e12, NULL, {NULL, NULL}},
	LOOM_CONFIG_END,
};

static int
kcenter_select(void *p, const loom_sample_pool *pool, const loom_sample_request *req,
               loom_sample_result *res)
{
	const smp_ctx *c = p;
	smp_rng rng = {req != NULL ? req->seed : 0};
	smp_rows rows;
	div_set s;
	int rv;

	memset(&s, 0, sizeof s);
	if ((rv = smp_begin(c, "k-center", pool, req, res, &rows)) != 0)
		goto out;
	if ((rv = div_prepare(c, "k-center", pool, req, res, &rows, &rng, &s)) != 0)
		goto out;
	for (size_t n = 0; n < req->k; n++) {
		size_t best = 0;
		double score = 0;

		if (s.centres == 0) {
			best = (size_t)smp_below(&rng, s.m);
		} else {
			float far = -1;
			for (size_t i = 0; i < s.m; i++)
				if (s.d2[i] > far) {
					far = s.d2[i];
					best = i;
				}
			score = sqrt((double)far);
		}
		res->index[n] = s.rows[best];
		if (res->score != NULL)
			res->score[n] = score;
		div_choose(&s, best);
	}
	res->n = req->k;
out:
	div_free(&s);
	smp_rows_free(&rows);
	return rv;
}

static const loom_sampler_ops ops = {
	.size = sizeof ops,
	.needs = LOOM_SAMPLE_NEEDS_FEATURES,
	.select = kcenter_select,
};

LOOM_PLUGIN_DEFINE(sampler_k_center,
                   .kind = LOOM_KIND_SAMPLER,
                   .flags = LOOM_PLUGIN_THREAD_SAFE,
                   .name = "sampler-k-center",
                   .version = "1.0.0",
                   .description = "greedy k-center core-set over the rows' features, the "
                                  "labelled rows as fixed centres",
                   .config = config,
                   .ctx_size = sizeof(smp_ctx),
                   .init = smp_init,
                   .ops = &ops)

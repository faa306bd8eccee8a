/* uncertainty.c — least-confidence, margin, entropy and variance: each row
 * not fixed gets a key (higher = more informative), and a partial top-k
 * (a heap of k, never a sort of the pool) keeps the k best, ties to the
 * lower row.  The probabilities (or scores) are checked first, in one
 * pass, so a bad row is named before anything is chosen. */
#include "config.h"

#include "uncertainty.h"

static const char *const names[] = {
	[UNC_LEAST_CONFIDENCE] = "least-confidence",
	[UNC_MARGIN] = "margin",
	[UNC_ENTROPY] = "entropy",
	[UNC_VARIANCE] = "variance",
};

int
unc_select(void *p, unc_measure m, const loom_sample_pool *pool, const loom_sample_request *req,
           loom_sample_result *res)
{
	const smp_ctx *c = p;
	const char *name = names[m];
	smp_rows rows;
	smp_topk top;
	int rv;

	if ((rv = smp_begin(c, name, pool, req, res, &rows)) != 0)
		goto out;
	if ((rv = smp_check_k(c, name, res, req->k, rows.n_free, pool->n, rows.n_fixed,
	                      "rows")) != 0)
		goto out;
	if (m == UNC_VARIANCE)
		rv = smp_check_scores(c, name, pool, rows.fixed, true, res);
	else
		rv = smp_check_probs(c, name, pool, rows.fixed, m == UNC_MARGIN ? 2 : 1, res);
	if (rv != 0)
		goto out;
	if ((rv = smp_topk_init(&top, req->k)) != 0) {
		rv = smp_fail(c, res, rv, "%s: out of memory for k = %zu", name, req->k);
		goto out;
	}

	const uint32_t C = pool->n_classes;
	const uint8_t *fixed = rows.fixed;
	switch (m) {
	case UNC_LEAST_CONFIDENCE:
		for (size_t i = 0; i < pool->n; i++)
			if (fixed == NULL || !fixed[i])
				smp_topk_offer(&top, smp_least_confidence(pool->probs + i * C, C), i);
		break;
	case UNC_MARGIN:
		for (size_t i = 0; i < pool->n; i++)
			if (fixed == NULL || !fixed[i])
				smp_topk_offer(&top, -smp_margin(pool->probs + i * C, C), i);
		break;
	case UNC_ENTROPY:
		for (size_t i = 0; i < pool->n; i++)
			if (fixed == NULL || !fixed[i])
				smp_topk_offer(&top, smp_entropy(pool->probs + i * C, C), i);
		break;
	case UNC_VARIANCE:
		for (size_t i = 0; i < pool->n; i++)
			if (fixed == NULL || !fixed[i])
				smp_topk_offer(&top, (double)pool->scores[i], i);
		break;
	}
	smp_topk_finish(&top, m == UNC_MARGIN ? -1.0 : 1.0, res);
	smp_topk_free(&top);
out:
	smp_rows_free(&rows);
	return rv;
}

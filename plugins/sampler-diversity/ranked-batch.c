/* sampler-ranked-batch — modAL's ranked batch (Cardoso et al., "Ranked
 * batch-mode active learning", Information Sciences 379, 2017; modAL's
 * uncertainty_batch_sampling): uncertainty and diversity together.
 *
 * L is the set of centres (the fixed rows, then each row chosen), U the
 * candidates not yet chosen.  Each step scores every u in U by
 *
 *   α·(1 − 1/(1 + d(u, L))) + (1 − α)·unc(u),   α = |U| / (|U| + |L|)
 *
 * with d the Euclidean distance to the nearest row of L, and chooses the
 * highest (ties: the lower row), which joins L.  unc, by the instance's
 * "uncertainty" setting: least-confidence 1 − max p; margin 1 − (p(1) −
 * p(2)); entropy −Σ p ln p / ln C; scores s / max s over the candidates
 * (0 if every score is 0).  Each is in [0, 1], as 1 − similarity is.
 *
 * Without fixed rows (modAL's cold start) the first row is the candidate
 * of least mean Euclidean distance to all candidates (score 0); modAL
 * leaves it in the pool, where it could be chosen again — here it is
 * chosen once.  The cold start is quadratic in the candidates, so more
 * than COLD_MAX of them are refused: give fixed rows or a subsample. */
#include "config.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "diversity.h"

#define COLD_MAX 16384

static const loom_config_entry config[] = {
	{LOOM_CONFIG_INT, LOOM_CONFIG_RANGE, "subsample", "0", offsetof(smp_ctx, subsample),
	 "choose among a seeded uniform subsample of this many rows (0: the whole pool); a "
	 "request's subsample wins", 0, 1e12, NULL, {NULL, NULL}},
	{LOOM_CONFIG_STRING, 0, "uncertainty", "least-confidence",
	 offsetof(smp_ctx, uncertainty),
	 "each row's uncertainty: from the probabilities (least-confidence, margin, entropy) or "
	 "the pool's scores", 0, 0, "least-confidence|margin|entropy|scores", {NULL, NULL}},
	LOOM_CONFIG_END,
};

/* unc[i] for each candidate, checking the rows it reads. */
static int
uncertainties(const smp_ctx *c, const loom_sample_pool *pool, const div_set *s, double *unc,
              loom_sample_result *res)
{
	const char *how = c->uncertainty != NULL ? c->uncertainty : "least-confidence";
	const uint32_t C = pool->n_classes;
	int rv;

	if (strcmp(how, "scores") == 0) {
		double top = 0;
		if (pool->scores == NULL)
			return smp_fail(c, res, LOOM_EINVAL,
			                "ranked-batch: the pool has no scores: this instance's "
			                "uncertainty is \"scores\" (set uncertainty to least-confidence, "
			                "margin or entropy to read probabilities)");
		for (size_t i = 0; i < s->m; i++) {
			float v = pool->scores[s->rows[i]];
			if (isnan(v) || isinf(v) || v < 0)
				return smp_fail(c, res, LOOM_EINVAL,
				                "ranked-batch: row %zu: the score is %g: scores must be "
				                "finite and not negative (an uncertainty)",
				                s->rows[i], (double)v);
			unc[i] = v;
			if (v > top)
				top = v;
		}
		for (size_t i = 0; i < s->m; i++)
			unc[i] = top > 0 ? unc[i] / top : 0;
		return 0;
	}
	if (pool->probs == NULL)
		return smp_fail(c, res, LOOM_EINVAL,
		                "ranked-batch: the pool has no probabilities: this instance's "
		                "uncertainty is \"%s\" (set uncertainty = \"scores\" for a forecast "
		                "or regression model's spread)",
		                how);
	if (C < 2 && strcmp(how, "margin") == 0)
		return smp_fail(c, res, LOOM_EINVAL,
		                "ranked-batch: the pool has %u classes: margin needs at least 2", C);
	if (C < 1)
		return smp_fail(c, res, LOOM_EINVAL,
		                "ranked-batch: the pool has 0 classes: give n_classes");
	for (size_t i = 0; i < s->m; i++) {
		const float *p = pool->probs + s->rows[i] * C;
		if ((rv = smp_check_prob_row(c, "ranked-batch", pool, s->rows[i], res)) != 0)
			return rv;
		if (strcmp(how, "margin") == 0)
			unc[i] = 1.0 - smp_margin(p, C);
		else if (strcmp(how, "entropy") == 0)
			unc[i] = C > 1 ? smp_entropy(p, C) / log((double)C) : 0;
		else
			unc[i] = smp_least_confidence(p, C);
	}
	return 0;
}

/* modAL's cold start: the candidate of least mean distance to all. */
static size_t
cold_start(const div_set *s)
{
	double *sum = calloc(s->m, sizeof *sum);
	size_t best = 0;

	if (sum == NULL)
		return SIZE_MAX;
	for (size_t i = 0; i < s->m; i++)
		for (size_t j = i + 1; j < s->m; j++) {
			double d = sqrt((double)div_d2(div_x(s, i), div_x(s, j), s->dim));
			sum[i] += d;
			sum[j] += d;
		}
	for (size_t i = 1; i < s->m; i++)
		if (sum[i] < sum[best])
			best = i;
	free(sum);
	return best;
}

static int
ranked_select(void *p, const loom_sample_pool *pool, const loom_sample_request *req,
              loom_sample_result *res)
{
	const smp_ctx *c = p;
	smp_rng rng = {req != NULL ? req->seed : 0};
	smp_rows rows;
	div_set s;
	double *unc = NULL;
	size_t n = 0;
	int rv;

	memset(&s, 0, sizeof s);
	if ((rv = smp_begin(c, "ranked-batch", pool, req, res, &rows)) != 0)
		goto out;
	if ((rv = div_prepare(c, "ranked-batch", pool, req, res, &rows, &rng, &s)) != 0)
		goto out;
	if ((unc = malloc(s.m * sizeof *unc)) == NULL) {
		rv = smp_fail(c, res, LOOM_ENOMEM, "ranked-batch: out of memory for %zu rows", s.m);
		goto out;
	}
	if ((rv = uncertainties(c, pool, &s, unc, res)) != 0)
		goto out;
	if (s.centres == 0) {
		size_t first;
		if (s.m > COLD_MAX) {
			rv = smp_fail(c, res, LOOM_ERANGE,
			              "ranked-batch: no fixed rows and %zu candidates: the cold start "
			              "compares every pair of candidates, so it takes at most %d; give "
			              "the labelled rows as fixed, or a subsample",
			              s.m, COLD_MAX);
			goto out;
		}
		if ((first = cold_start(&s)) == SIZE_MAX) {
			rv = smp_fail(c, res, LOOM_ENOMEM, "ranked-batch: out of memory");
			goto out;
		}
		res->index[n] = s.rows[first];
		if (res->score != NULL)
			res->score[n] = 0;
		n++;
		div_choose(&s, first);
	}
	for (; n < req->k; n++) {
		const double U = (double)(s.m - n), L = (double)s.centres;
		const double alpha = U / (U + L);
		double top = -INFINITY;
		size_t best = 0;

		for (size_t i = 0; i < s.m; i++) {
			if (s.d2[i] < 0)
				continue;
			double sim = 1.0 / (1.0 + sqrt((double)s.d2[i]));
			double v = alpha * (1.0 - sim) + (1.0 - alpha) * unc[i];
			if (v > top) {
				top = v;
				best = i;
			}
		}
		res->index[n] = s.rows[best];
		if (res->score != NULL)
			res->score[n] = top;
		div_choose(&s, best);
	}
	res->n = n;
out:
	free(unc);
	div_free(&s);
	smp_rows_free(&rows);
	return rv;
}

static const loom_sampler_ops ops = {
	.size = sizeof ops,
	.needs = LOOM_SAMPLE_NEEDS_FEATURES,
	.select = ranked_select,
};

LOOM_PLUGIN_DEFINE(sampler_ranked_batch,
                   .kind = LOOM_KIND_SAMPLER,
                   .flags = LOOM_PLUGIN_THREAD_SAFE,
                   .name = "sampler-ranked-batch",
                   .version = "1.0.0",
                   .description = "uncertainty and diversity together: modAL's ranked batch "
                                  "over the rows' features",
                   .config = config,
                   .ctx_size = sizeof(smp_ctx),
                   .init = smp_init,
                   .ops = &ops)

/* diversity.c — the candidates and distances k-center and ranked-batch
 * share (see diversity.h and docs/samplers.md). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "diversity.h"

static int
by_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return (x > y) - (x < y);
}

static int
check_row(const smp_ctx *c, const char *sampler, const loom_sample_pool *pool, size_t i,
          loom_sample_result *res)
{
	const float *f = pool->features + i * pool->dim;
	for (uint32_t j = 0; j < pool->dim; j++)
		if (isnan(f[j]) || isinf(f[j]))
			return smp_fail(c, res, LOOM_EINVAL,
			                "%s: row %zu: feature %u is %g: features must be finite", sampler,
			                i, j, (double)f[j]);
	return 0;
}

static void
lower(div_set *s, const float *centre)
{
	for (size_t i = 0; i < s->m; i++) {
		if (s->d2[i] < 0)
			continue;
		float e = div_d2(div_x(s, i), centre, s->dim);
		if (e < s->d2[i])
			s->d2[i] = e;
	}
}

int
div_prepare(const smp_ctx *c, const char *sampler, const loom_sample_pool *pool,
            const loom_sample_request *req, loom_sample_result *res, const smp_rows *rows,
            smp_rng *rng, div_set *s)
{
	uint64_t sub = req->subsample;
	int rv;

	memset(s, 0, sizeof *s);
	if (pool->features == NULL)
		return smp_fail(c, res, LOOM_EINVAL,
		                "%s: the pool has no features: this sampler measures distances "
		                "between rows' feature vectors (embeddings)",
		                sampler);
	if (pool->dim == 0)
		return smp_fail(c, res, LOOM_EINVAL,
		                "%s: the pool's feature dimension is 0: give dim, the length of "
		                "each row's feature vector",
		                sampler);
	if (sub == 0 && c->subsample > 0)
		sub = (uint64_t)c->subsample;
	s->dim = pool->dim;
	if ((s->rows = smp_free_rows(pool, rows)) == NULL)
		goto nomem;
	s->m = rows->n_free;
	if (sub > 0 && sub < rows->n_free) {
		smp_shuffle_prefix(rng, s->rows, rows->n_free, (size_t)sub);
		s->m = (size_t)sub;
		s->subsampled = true;
		qsort(s->rows, s->m, sizeof *s->rows, by_size);
	}
	if ((rv = smp_check_k(c, sampler, res, req->k, s->m, pool->n, rows->n_fixed,
	                      s->subsampled ? "rows of the subsample" : "rows")) != 0)
		return rv;
	s->base = pool->features;
	s->d2 = malloc(s->m * sizeof *s->d2);
	if (s->d2 == NULL)
		goto nomem;
	/* a subsample is gathered, so that the k passes over it stay in cache */
	if (s->subsampled && (s->x = malloc(s->m * s->dim * sizeof *s->x)) == NULL)
		goto nomem;
	for (size_t i = 0; i < s->m; i++) {
		if ((rv = check_row(c, sampler, pool, s->rows[i], res)) != 0)
			return rv;
		if (s->x != NULL)
			memcpy(s->x + i * s->dim, pool->features + s->rows[i] * s->dim,
			       s->dim * sizeof *s->x);
		s->d2[i] = INFINITY;
	}
	for (size_t f = 0; rows->fixed != NULL && f < pool->n; f++) {
		if (!rows->fixed[f])
			continue;
		if ((rv = check_row(c, sampler, pool, f, res)) != 0)
			return rv;
		lower(s, pool->features + f * s->dim);
		s->centres++;
	}
	return 0;
nomem:
	return smp_fail(c, res, LOOM_ENOMEM, "%s: out of memory for %zu rows of dimension %u",
	                sampler, pool->n, pool->dim);
}

void
div_choose(div_set *s, size_t i)
{
	s->d2[i] = -1;
	lower(s, div_x(s, i));
	s->centres++;
}

void
div_free(div_set *s)
{
	free(s->rows);
	free(s->x);
	free(s->d2);
	memset(s, 0, sizeof *s);
}

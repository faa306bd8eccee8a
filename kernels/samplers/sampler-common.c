/* sampler-common.c — the checks, errors and selections every sampler
 * module shares (see sampler-common.h). */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sampler-common.h"

/* request.subsample (a size_t) took a `const void *` reserved slot: the
 * struct keeps its size only where the two are the same size. */
_Static_assert(sizeof(size_t) == sizeof(void *), "size_t and pointers differ in size");

int
smp_init(loom_instance *ins, const loom_host *host, void *p)
{
	smp_ctx *c = p;
	c->host = host;
	c->ins = ins;
	return 0;
}

/* ------------------------------------------------------------------ errors */

int
smp_fail(const smp_ctx *c, loom_sample_result *res, int code, const char *fmt, ...)
{
	va_list ap;
	char *msg;
	int len;

	if (res == NULL)
		return code;
	res->n = 0;
	if (c == NULL || c->host == NULL || c->host->alloc == NULL || res->error != NULL)
		return code;
	va_start(ap, fmt);
	len = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (len < 0 || (msg = c->host->alloc((size_t)len + 1)) == NULL)
		return code;
	va_start(ap, fmt);
	vsnprintf(msg, (size_t)len + 1, fmt, ap);
	va_end(ap);
	res->error = msg;
	return code;
}

/* ------------------------------------------------------------------ the request */

int
smp_begin(const smp_ctx *c, const char *sampler, const loom_sample_pool *pool,
          const loom_sample_request *req, loom_sample_result *res, smp_rows *rows)
{
	memset(rows, 0, sizeof *rows);
	if (res == NULL)
		return LOOM_EINVAL;
	res->n = 0;
	res->error = NULL;
	if (pool == NULL || req == NULL)
		return smp_fail(c, res, LOOM_EINVAL, "%s: no %s was given", sampler,
		                pool == NULL ? "pool" : "request");
	if (res->index == NULL)
		return smp_fail(c, res, LOOM_EINVAL,
		                "%s: the result has no index array: give one of k entries", sampler);
	if (req->k == 0)
		return smp_fail(c, res, LOOM_EINVAL, "%s: k is 0: ask for at least one row",
		                sampler);
	if (req->n_fixed > 0 && req->fixed == NULL)
		return smp_fail(c, res, LOOM_EINVAL,
		                "%s: n_fixed is %zu but fixed is NULL: give the fixed rows or set "
		                "n_fixed to 0",
		                sampler, req->n_fixed);
	rows->n_free = pool->n;
	if (req->n_fixed == 0)
		return 0;
	if ((rows->fixed = calloc(pool->n ? pool->n : 1, 1)) == NULL)
		return smp_fail(c, res, LOOM_ENOMEM, "%s: out of memory", sampler);
	for (size_t i = 0; i < req->n_fixed; i++) {
		size_t f = req->fixed[i];
		if (f >= pool->n)
			return smp_fail(c, res, LOOM_ERANGE,
			                "%s: fixed[%zu] is row %zu, past the pool's %zu rows: fixed "
			                "rows are row indices of this pool",
			                sampler, i, f, pool->n);
		if (!rows->fixed[f]) {
			rows->fixed[f] = 1;
			rows->n_fixed++;
		}
	}
	rows->n_free = pool->n - rows->n_fixed;
	return 0;
}

void
smp_rows_free(smp_rows *rows)
{
	free(rows->fixed);
	rows->fixed = NULL;
}

int
smp_check_k(const smp_ctx *c, const char *sampler, loom_sample_result *res, size_t k,
            size_t avail, size_t n, size_t n_fixed, const char *what)
{
	if (k <= avail)
		return 0;
	if (n_fixed > 0)
		return smp_fail(c, res, LOOM_ERANGE,
		                "%s: k = %zu is more than the %zu %s it may choose from (%zu in the "
		                "pool, %zu of them fixed): ask for at most %zu",
		                sampler, k, avail, what, n, n_fixed, avail);
	return smp_fail(c, res, LOOM_ERANGE,
	                "%s: k = %zu is more than the %zu %s it may choose from: ask for at most "
	                "%zu",
	                sampler, k, avail, what, avail);
}

int
smp_check_prob_row(const smp_ctx *c, const char *sampler, const loom_sample_pool *pool,
                   size_t i, loom_sample_result *res)
{
	const uint32_t C = pool->n_classes;
	const float *p = pool->probs + i * C;
	double sum = 0;

	for (uint32_t j = 0; j < C; j++) {
		if (!(p[j] >= 0.0f) || isinf(p[j]))
			return smp_fail(c, res, LOOM_EINVAL,
			                "%s: row %zu: probability of class %u is %g: probabilities "
			                "must be finite and not negative (softmax outputs)",
			                sampler, i, j, (double)p[j]);
		sum += p[j];
	}
	if (fabs(sum - 1.0) > SMP_PROB_TOLERANCE)
		return smp_fail(c, res, LOOM_EINVAL,
		                "%s: row %zu: the probabilities sum to %.6g, not 1 (± %g): give "
		                "each row's class probabilities, not logits or scores",
		                sampler, i, sum, SMP_PROB_TOLERANCE);
	return 0;
}

int
smp_check_probs(const smp_ctx *c, const char *sampler, const loom_sample_pool *pool,
                const uint8_t *fixed, uint32_t min_classes, loom_sample_result *res)
{
	const uint32_t C = pool->n_classes;
	int rv;

	if (pool->probs == NULL)
		return smp_fail(c, res, LOOM_EINVAL,
		                "%s: the pool has no probabilities: this sampler reads each row's "
		                "class probabilities (a classification model's predictions)",
		                sampler);
	if (C < min_classes)
		return smp_fail(c, res, LOOM_EINVAL,
		                "%s: the pool has %u classes: this sampler needs at least %u",
		                sampler, C, min_classes);
	for (size_t i = 0; i < pool->n; i++) {
		const float *p = pool->probs + i * C;
		float sum = 0;
		bool bad = false;

		if (fixed != NULL && fixed[i])
			continue;
		/* the quick test in float; the exact one names the row */
		for (uint32_t j = 0; j < C; j++) {
			bad |= !(p[j] >= 0.0f);
			sum += p[j];
		}
		if (bad || !(fabsf(sum - 1.0f) <= (float)SMP_PROB_TOLERANCE * 0.5f) ||
		    sum == INFINITY)
			if ((rv = smp_check_prob_row(c, sampler, pool, i, res)) != 0)
				return rv;
	}
	return 0;
}

int
smp_check_scores(const smp_ctx *c, const char *sampler, const loom_sample_pool *pool,
                 const uint8_t *fixed, bool nonneg, loom_sample_result *res)
{
	if (pool->scores == NULL)
		return smp_fail(c, res, LOOM_EINVAL,
		                "%s: the pool has no scores: this sampler reads one score a row "
		                "(a forecast's or regression's uncertainty, e.g. the spread of "
		                "Monte-Carlo-dropout passes)",
		                sampler);
	for (size_t i = 0; i < pool->n; i++) {
		float s = pool->scores[i];
		if (fixed != NULL && fixed[i])
			continue;
		if (isnan(s) || isinf(s))
			return smp_fail(c, res, LOOM_EINVAL,
			                "%s: row %zu: the score is %g: scores must be finite numbers",
			                sampler, i, (double)s);
		if (nonneg && s < 0)
			return smp_fail(c, res, LOOM_EINVAL,
			                "%s: row %zu: the score is %g: an uncertainty (a spread) is "
			                "never negative",
			                sampler, i, (double)s);
	}
	return 0;
}

/* ------------------------------------------------------------------ top k */

int
smp_topk_init(smp_topk *t, size_t k)
{
	memset(t, 0, sizeof *t);
	t->k = k;
	t->key = malloc(k * sizeof *t->key);
	t->row = malloc(k * sizeof *t->row);
	if (t->key == NULL || t->row == NULL) {
		smp_topk_free(t);
		return LOOM_ENOMEM;
	}
	return 0;
}

void
smp_topk_free(smp_topk *t)
{
	free(t->key);
	free(t->row);
	t->key = NULL;
	t->row = NULL;
}

/* a is worse than b: smaller key, or the same key and a later row */
static inline bool
worse(double ka, size_t ra, double kb, size_t rb)
{
	return ka < kb || (ka == kb && ra > rb);
}

static void
sift_down(smp_topk *t, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < t->n && worse(t->key[l], t->row[l], t->key[m], t->row[m]))
			m = l;
		if (r < t->n && worse(t->key[r], t->row[r], t->key[m], t->row[m]))
			m = r;
		if (m == i)
			return;
		double kk = t->key[i];
		size_t rr = t->row[i];
		t->key[i] = t->key[m];
		t->row[i] = t->row[m];
		t->key[m] = kk;
		t->row[m] = rr;
		i = m;
	}
}

void
smp_topk_push(smp_topk *t, double key, size_t row)
{
	if (t->n < t->k) {
		size_t i = t->n++;
		while (i > 0) {
			size_t up = (i - 1) / 2;
			if (!worse(key, row, t->key[up], t->row[up]))
				break;
			t->key[i] = t->key[up];
			t->row[i] = t->row[up];
			i = up;
		}
		t->key[i] = key;
		t->row[i] = row;
		return;
	}
	t->key[0] = key;
	t->row[0] = row;
	sift_down(t, 0);
}

void
smp_topk_finish(smp_topk *t, double sign, loom_sample_result *res)
{
	size_t n = t->n;

	/* heap sort: the worst goes to the end each time, best first remains */
	while (t->n > 1) {
		size_t last = t->n - 1;
		double kk = t->key[0];
		size_t rr = t->row[0];
		t->key[0] = t->key[last];
		t->row[0] = t->row[last];
		t->key[last] = kk;
		t->row[last] = rr;
		t->n--;
		sift_down(t, 0);
	}
	for (size_t i = 0; i < n; i++) {
		res->index[i] = t->row[i];
		if (res->score != NULL)
			res->score[i] = sign * t->key[i];
	}
	res->n = n;
	t->n = 0;
}

/* ------------------------------------------------------------------ helpers */

void
smp_shuffle_prefix(smp_rng *r, size_t *a, size_t m, size_t k)
{
	for (size_t i = 0; i < k && i < m; i++) {
		size_t j = i + (size_t)smp_below(r, m - i);
		size_t x = a[i];
		a[i] = a[j];
		a[j] = x;
	}
}

size_t *
smp_free_rows(const loom_sample_pool *pool, const smp_rows *rows)
{
	size_t *a = malloc((rows->n_free ? rows->n_free : 1) * sizeof *a);
	size_t m = 0;

	if (a == NULL)
		return NULL;
	for (size_t i = 0; i < pool->n; i++)
		if (rows->fixed == NULL || !rows->fixed[i])
			a[m++] = i;
	return a;
}

/* The sampler plugins, each loaded as a real module through the host
 * loader (LOOM_TEST_PLUGINS) and called through its ops table:
 *
 * - every sampler against small pools computed by hand (docs/samplers.md
 *   has the formulas), ties included, with and without fixed rows;
 * - the generator against SplitMix64's published outputs for seed 0;
 * - determinism: the same seed gives the same answer, another seed another;
 * - the reservoir over several calls: the bank does not depend on how the
 *   stream is split into calls, and over 4,000 fixed seeds every row's
 *   inclusion count is within 5σ of 4,000·k/n (fixed seeds: the counts are
 *   exact, the test cannot flake);
 * - every refusal: its code and a message that names the input. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/loom.h>

#include "host/core/plugins.h"
#include "testutil.h"

/* ------------------------------------------------------------------ the plugin */

static struct {
	tu_plugin p;
	const loom_sampler_ops *ops;
	void *ctx;
} S;

static void
sampler_open(const char *module, const char *config)
{
	char *err = NULL;
	int rv = tu_plugin_open(&S.p, module, "s", config, "samplers.conf", &err);
	ck_assert_msg(rv == 0, "cannot start %s: %s", module, err ? err : "?");
	ck_assert_uint_eq(S.p.ins->kind, LOOM_KIND_SAMPLER);
	S.ops = S.p.ins->desc->ops;
	S.ctx = S.p.ins->ctx;
	ck_assert_ptr_nonnull(S.ops);
	ck_assert(S.ops->size >= offsetof(loom_sampler_ops, select) + sizeof(void *));
}

static void
sampler_close(void)
{
	tu_plugin_close(&S.p);
	memset(&S, 0, sizeof S);
}

#define MAXK 64

/* One call's answer. */
typedef struct answer {
	int rv;
	size_t n;
	size_t index[MAXK];
	double score[MAXK];
	int64_t slot[MAXK];
	char error[512];
} answer;

static loom_sample_pool
mkpool(size_t n)
{
	loom_sample_pool p;
	memset(&p, 0, sizeof p);
	p.size = sizeof p;
	p.n = n;
	return p;
}

static answer
call(const loom_sample_pool *pool, size_t k, uint64_t seed, const size_t *fixed, size_t n_fixed,
     size_t subsample)
{
	loom_sample_request req;
	loom_sample_result res;
	answer a;

	memset(&a, 0, sizeof a);
	memset(&req, 0, sizeof req);
	memset(&res, 0, sizeof res);
	ck_assert_uint_le(k, MAXK);
	req.size = sizeof req;
	req.k = k;
	req.seed = seed;
	req.fixed = fixed;
	req.n_fixed = n_fixed;
	req.subsample = subsample;
	res.index = a.index;
	res.score = a.score;
	res.slot = a.slot;
	a.rv = S.ops->select(S.ctx, pool, &req, &res);
	a.n = res.n;
	if (res.error != NULL) {
		snprintf(a.error, sizeof a.error, "%s", res.error);
		loomi_host_services()->free(res.error);
	}
	if (a.rv == 0)
		ck_assert_msg(res.error == NULL, "success with an error message: %s", a.error);
	else
		ck_assert_uint_eq(a.n, 0);
	return a;
}

static void
expect(const answer *a, size_t n, const size_t *index, const double *score)
{
	ck_assert_msg(a->rv == 0, "select failed (%d): %s", a->rv, a->error);
	ck_assert_uint_eq(a->n, n);
	for (size_t i = 0; i < n; i++) {
		ck_assert_msg(a->index[i] == index[i], "answer %zu: row %zu, expected %zu", i,
		              a->index[i], index[i]);
		if (score != NULL)
			ck_assert_msg(fabs(a->score[i] - score[i]) <= 1e-6,
			              "answer %zu (row %zu): score %.9g, expected %.9g", i,
			              a->index[i], a->score[i], score[i]);
	}
}

static void
expect_error(const answer *a, int code, const char *needle)
{
	ck_assert_msg(a->rv == code, "expected %s, got %d (%s)", loom_errname(code), a->rv,
	              a->error);
	ck_assert_msg(strstr(a->error, needle) != NULL, "expected \"%s\" in \"%s\"", needle,
	              a->error);
}

#define EXPECT(a, idx, sc)                                                                 \
	expect(&(a), sizeof(idx) / sizeof((idx)[0]), idx, sc)

/* ------------------------------------------------------------------ pools */

/* Six rows of three classes, in binary fractions so every measure is exact:
 *
 *   row  p                   1 − max p  p1 − p2  entropy (nats)
 *   0    .5   .25  .25       .5         .25      1.5 ln 2
 *   1    .75  .125 .125      .25        .625     .75 ln(4/3) + .25 ln 8
 *   2    .5   .5   0         .5         0        ln 2
 *   3    .25  .25  .5        .5         .25      1.5 ln 2
 *   4    .5   .5   0         .5         0        ln 2
 *   5    1    0    0         0          1        0 */
static const float P6[] = {
	.5f, .25f, .25f, .75f, .125f, .125f, .5f, .5f, 0,
	.25f, .25f, .5f, .5f, .5f, 0, 1, 0, 0,
};

static loom_sample_pool
probs6(void)
{
	loom_sample_pool p = mkpool(6);
	p.n_classes = 3;
	p.probs = P6;
	return p;
}

#define LN2 0.69314718055994531
#define H1 (0.75 * log(4.0 / 3.0) + 0.25 * log(8.0))

/* ------------------------------------------------------------------ uncertainty */

static void setup_lc(void) { sampler_open("sampler-least-confidence", NULL); }
static void setup_margin(void) { sampler_open("sampler-margin", NULL); }
static void setup_entropy(void) { sampler_open("sampler-entropy", NULL); }
static void setup_variance(void) { sampler_open("sampler-variance", NULL); }

START_TEST(test_least_confidence)
{
	loom_sample_pool p = probs6();
	const size_t fixed[] = {0, 2};

	ck_assert_uint_eq(S.ops->needs, LOOM_SAMPLE_NEEDS_PROBS);
	/* four rows tie at .5: lower row first */
	answer a = call(&p, 3, 1, NULL, 0, 0);
	EXPECT(a, ((size_t[]){0, 2, 3}), ((double[]){.5, .5, .5}));
	a = call(&p, 6, 1, NULL, 0, 0);
	EXPECT(a, ((size_t[]){0, 2, 3, 4, 1, 5}), ((double[]){.5, .5, .5, .5, .25, 0}));
	/* fixed rows are skipped */
	a = call(&p, 3, 1, fixed, 2, 0);
	EXPECT(a, ((size_t[]){3, 4, 1}), ((double[]){.5, .5, .25}));
	/* scores not wanted */
	loom_sample_request req = {.size = sizeof req, .k = 2, .seed = 1};
	loom_sample_result res;
	size_t idx[2];
	memset(&res, 0, sizeof res);
	res.index = idx;
	ck_assert_int_eq(S.ops->select(S.ctx, &p, &req, &res), 0);
	ck_assert_uint_eq(res.n, 2);
	ck_assert(idx[0] == 0 && idx[1] == 2);
}
END_TEST

START_TEST(test_margin)
{
	loom_sample_pool p = probs6();
	const size_t fixed[] = {0, 2};

	answer a = call(&p, 4, 1, NULL, 0, 0);
	EXPECT(a, ((size_t[]){2, 4, 0, 3}), ((double[]){0, 0, .25, .25}));
	a = call(&p, 6, 9, NULL, 0, 0);
	EXPECT(a, ((size_t[]){2, 4, 0, 3, 1, 5}), ((double[]){0, 0, .25, .25, .625, 1}));
	a = call(&p, 3, 1, fixed, 2, 0);
	EXPECT(a, ((size_t[]){4, 3, 1}), ((double[]){0, .25, .625}));
	/* the smallest margin of a row whose largest class is not first */
	static const float q[] = {.1f, .2f, .7f, .3f, .3f, .4f};
	loom_sample_pool p2 = mkpool(2);
	p2.n_classes = 3;
	p2.probs = q;
	a = call(&p2, 2, 1, NULL, 0, 0);
	EXPECT(a, ((size_t[]){1, 0}), ((double[]){.1, .5}));
}
END_TEST

START_TEST(test_entropy)
{
	loom_sample_pool p = probs6();
	const size_t fixed[] = {0, 2};

	answer a = call(&p, 4, 1, NULL, 0, 0);
	EXPECT(a, ((size_t[]){0, 3, 1, 2}), ((double[]){1.5 * LN2, 1.5 * LN2, H1, LN2}));
	a = call(&p, 3, 1, fixed, 2, 0);
	EXPECT(a, ((size_t[]){3, 1, 4}), ((double[]){1.5 * LN2, H1, LN2}));
	a = call(&p, 6, 1, NULL, 0, 0);
	ck_assert_uint_eq(a.index[5], 5);
	ck_assert(a.score[5] == 0);
}
END_TEST

START_TEST(test_variance)
{
	static const float sc[] = {.5f, 2, 2, 0, 1.5f};
	loom_sample_pool p = mkpool(5);
	const size_t fixed[] = {1};

	ck_assert_uint_eq(S.ops->needs, LOOM_SAMPLE_NEEDS_SCORES);
	p.scores = sc;
	answer a = call(&p, 3, 1, NULL, 0, 0);
	EXPECT(a, ((size_t[]){1, 2, 4}), ((double[]){2, 2, 1.5}));
	a = call(&p, 3, 1, fixed, 1, 0);
	EXPECT(a, ((size_t[]){2, 4, 0}), ((double[]){2, 1.5, .5}));
}
END_TEST

/* A larger pool against a plain full sort: the heap's partial selection
 * keeps exactly the sorted prefix (keys drawn from a few values, so that
 * there are many ties). */
START_TEST(test_topk_against_sort)
{
	enum { N = 5000, C = 4, K = 64 };
	float *pr = malloc(N * C * sizeof *pr);
	size_t order[N];
	double key[N];
	uint64_t r = 12345;

	ck_assert_ptr_nonnull(pr);
	for (size_t i = 0; i < N; i++) {
		float w[C], s = 0;
		for (int j = 0; j < C; j++) {
			r = r * 6364136223846793005ull + 1442695040888963407ull;
			w[j] = (float)(1 + (r >> 61)); /* 1..8 */
			s += w[j];
		}
		for (int j = 0; j < C; j++)
			pr[i * C + j] = w[j] / s;
		float mx = 0;
		for (int j = 0; j < C; j++)
			mx = pr[i * C + j] > mx ? pr[i * C + j] : mx;
		key[i] = 1.0 - (double)mx;
		order[i] = i;
	}
	/* insertion sort by key descending, row ascending (stable) */
	for (size_t i = 1; i < N; i++) {
		size_t x = order[i], j = i;
		while (j > 0 && key[order[j - 1]] < key[x]) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = x;
	}
	loom_sample_pool p = mkpool(N);
	p.n_classes = C;
	p.probs = pr;
	answer a = call(&p, K, 1, NULL, 0, 0);
	expect(&a, K, order, NULL);
	free(pr);
}
END_TEST

START_TEST(test_uncertainty_errors)
{
	loom_sample_pool p = probs6();
	const size_t far[] = {3, 6};
	answer a;

	expect_error((a = call(&p, 7, 1, NULL, 0, 0), &a), LOOM_ERANGE, "k = 7");
	expect_error(&a, LOOM_ERANGE, "at most 6");
	const size_t two[] = {0, 1};
	expect_error((a = call(&p, 5, 1, two, 2, 0), &a), LOOM_ERANGE, "2 of them fixed");
	expect_error((a = call(&p, 0, 1, NULL, 0, 0), &a), LOOM_EINVAL, "k is 0");
	expect_error((a = call(&p, 1, 1, far, 2, 0), &a), LOOM_ERANGE, "fixed[1] is row 6");

	loom_sample_pool q = p;
	q.probs = NULL;
	expect_error((a = call(&q, 1, 1, NULL, 0, 0), &a), LOOM_EINVAL, "no probabilities");

	float bad[18];
	memcpy(bad, P6, sizeof bad);
	q = p;
	q.probs = bad;
	bad[7] = NAN;
	expect_error((a = call(&q, 1, 1, NULL, 0, 0), &a), LOOM_EINVAL,
	             "row 2: probability of class 1 is nan");
	bad[7] = -0.25f;
	bad[8] = 0.75f;
	expect_error((a = call(&q, 1, 1, NULL, 0, 0), &a), LOOM_EINVAL,
	             "row 2: probability of class 1 is -0.25");
	bad[7] = .5f;
	bad[8] = 0;
	bad[16] = 0.5f; /* row 5: 1.5 */
	expect_error((a = call(&q, 1, 1, NULL, 0, 0), &a), LOOM_EINVAL,
	             "row 5: the probabilities sum to 1.5");
	/* a bad row that is fixed is never read */
	const size_t five[] = {5};
	a = call(&q, 1, 1, five, 1, 0);
	ck_assert_int_eq(a.rv, 0);
	bad[16] = INFINITY;
	expect_error((a = call(&q, 1, 1, NULL, 0, 0), &a), LOOM_EINVAL, "row 5");
	/* within the tolerance */
	bad[16] = 0.0005f;
	ck_assert_int_eq(call(&q, 1, 1, NULL, 0, 0).rv, 0);

	q = p;
	q.n_classes = 0;
	expect_error((a = call(&q, 1, 1, NULL, 0, 0), &a), LOOM_EINVAL, "0 classes");
}
END_TEST

START_TEST(test_margin_one_class)
{
	static const float one[] = {1, 1};
	loom_sample_pool p = mkpool(2);
	answer a;
	p.n_classes = 1;
	p.probs = one;
	expect_error((a = call(&p, 1, 1, NULL, 0, 0), &a), LOOM_EINVAL, "at least 2");
}
END_TEST

START_TEST(test_variance_errors)
{
	float sc[] = {.5f, 2, NAN, 0};
	loom_sample_pool p = mkpool(4);
	answer a;

	expect_error((a = call(&p, 1, 1, NULL, 0, 0), &a), LOOM_EINVAL, "no scores");
	p.scores = sc;
	expect_error((a = call(&p, 1, 1, NULL, 0, 0), &a), LOOM_EINVAL, "row 2: the score is nan");
	sc[2] = -1;
	expect_error((a = call(&p, 1, 1, NULL, 0, 0), &a), LOOM_EINVAL, "never negative");
	sc[2] = INFINITY;
	expect_error((a = call(&p, 1, 1, NULL, 0, 0), &a), LOOM_EINVAL, "finite");
}
END_TEST

/* ------------------------------------------------------------------ random */

static void setup_random(void) { sampler_open("sampler-random", NULL); }
static void setup_stratified(void) { sampler_open("sampler-stratified", NULL); }
static void setup_reservoir(void) { sampler_open("sampler-reservoir", NULL); }

/* SplitMix64's first outputs for seed 0, as its reference code gives them
 * (and xoshiro's seeding does). */
static const uint64_t SM0[] = {0xe220a8397b1dcdafull, 0x6e789e6aa1b965f4ull,
                               0x06c45d188009454full};

START_TEST(test_random_known)
{
	/* 65,536 rows: the first draw is below(2^16) = the output's top 16
	 * bits; the next two are Lemire's (x·m) >> 64 for m = 65,535, 65,534
	 * (2^64 mod m is 1 and 4: no rejection for these x). */
	enum { N = 65536 };
	loom_sample_pool p = mkpool(N);
	size_t a[3] = {0, 1, 2}, exp[3];
	size_t *perm = malloc(N * sizeof *perm);

	ck_assert_ptr_nonnull(perm);
	for (size_t i = 0; i < N; i++)
		perm[i] = i;
	for (size_t i = 0; i < 3; i++) {
		uint64_t m = N - i;
		size_t j = i + (size_t)(((unsigned __int128)SM0[i] * m) >> 64);
		size_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
		exp[i] = perm[i];
	}
	ck_assert_uint_eq(exp[0], 0xe220);
	answer r = call(&p, 3, 0, NULL, 0, 0);
	expect(&r, 3, exp, NULL);
	(void)a;
	free(perm);
}
END_TEST

START_TEST(test_random_properties)
{
	enum { N = 40 };
	loom_sample_pool p = mkpool(N);
	const size_t fixed[] = {3, 7, 11};

	answer a = call(&p, 20, 42, fixed, 3, 0), b = call(&p, 20, 42, fixed, 3, 0);
	answer c = call(&p, 20, 43, fixed, 3, 0);
	ck_assert_int_eq(a.rv, 0);
	ck_assert_uint_eq(a.n, 20);
	ck_assert_mem_eq(a.index, b.index, 20 * sizeof a.index[0]);
	ck_assert_msg(memcmp(a.index, c.index, 20 * sizeof a.index[0]) != 0,
	              "seeds 42 and 43 chose the same rows");
	bool seen[N] = {false};
	for (size_t i = 0; i < a.n; i++) {
		ck_assert_uint_lt(a.index[i], N);
		ck_assert_msg(!seen[a.index[i]], "row %zu chosen twice", a.index[i]);
		seen[a.index[i]] = true;
		ck_assert(a.index[i] != 3 && a.index[i] != 7 && a.index[i] != 11);
		ck_assert(a.score[i] == 0);
	}
	/* all of them */
	a = call(&p, N - 3, 5, fixed, 3, 0);
	ck_assert_uint_eq(a.n, N - 3);
	answer e;
	expect_error((e = call(&p, N - 2, 5, fixed, 3, 0), &e), LOOM_ERANGE, "k = 38");
}
END_TEST

/* ------------------------------------------------------------------ stratified */

static size_t
count_stratum(const answer *a, const int32_t *strata, int32_t s)
{
	size_t n = 0;
	for (size_t i = 0; i < a->n; i++)
		n += strata[a->index[i]] == s;
	return n;
}

START_TEST(test_stratified)
{
	/* N = 6, 3, 1 (M = 10) */
	static const int32_t st[] = {0, 0, 1, 0, 0, 2, 1, 0, 1, 0};
	loom_sample_pool p = mkpool(10);
	answer a;

	ck_assert_uint_eq(S.ops->needs, LOOM_SAMPLE_NEEDS_STRATA);
	p.strata = st;
	/* k = 5: 30, 15, 5 over 10 → quotas 3, 1, 0, remainders 0, 5, 5: the
	 * one left goes to stratum 1 (the tie with 2: lower label) → 3, 2, 0,
	 * round-robin 0, 1, 0, 1, 0 */
	a = call(&p, 5, 7, NULL, 0, 0);
	ck_assert_int_eq(a.rv, 0);
	ck_assert_uint_eq(a.n, 5);
	const int32_t rr[] = {0, 1, 0, 1, 0};
	for (size_t i = 0; i < 5; i++)
		ck_assert_int_eq(st[a.index[i]], rr[i]);
	/* k = 4: 24, 12, 4 → 2, 1, 0, remainders 4, 2, 4: stratum 0 (tie with 2) */
	a = call(&p, 4, 7, NULL, 0, 0);
	ck_assert_uint_eq(count_stratum(&a, st, 0), 3);
	ck_assert_uint_eq(count_stratum(&a, st, 1), 1);
	ck_assert_uint_eq(count_stratum(&a, st, 2), 0);
	/* k = 6: 36, 18, 6 → 3, 1, 0, remainders 6, 8, 6: stratum 1, then 0 */
	a = call(&p, 6, 7, NULL, 0, 0);
	ck_assert_uint_eq(count_stratum(&a, st, 0), 4);
	ck_assert_uint_eq(count_stratum(&a, st, 1), 2);
	ck_assert_uint_eq(count_stratum(&a, st, 2), 0);
	/* fixed rows leave their strata: 0 has 3 left, 1 has 3, 2 has 1 (M =
	 * 7); k = 3: 9, 9, 3 → 1, 1, 0, remainders 2, 2, 3 → stratum 2 */
	const size_t fixed[] = {0, 1, 3};
	a = call(&p, 3, 7, fixed, 3, 0);
	ck_assert_uint_eq(count_stratum(&a, st, 0), 1);
	ck_assert_uint_eq(count_stratum(&a, st, 1), 1);
	ck_assert_uint_eq(count_stratum(&a, st, 2), 1);
	for (size_t i = 0; i < a.n; i++)
		ck_assert(a.index[i] != 0 && a.index[i] != 1 && a.index[i] != 3);
	/* everything, each row once */
	a = call(&p, 10, 3, NULL, 0, 0);
	bool seen[10] = {false};
	for (size_t i = 0; i < a.n; i++) {
		ck_assert(!seen[a.index[i]]);
		seen[a.index[i]] = true;
	}
	/* determinism; another seed draws other rows within the strata */
	answer b = call(&p, 5, 7, NULL, 0, 0), c = call(&p, 5, 8, NULL, 0, 0);
	a = call(&p, 5, 7, NULL, 0, 0);
	ck_assert_mem_eq(a.index, b.index, 5 * sizeof a.index[0]);
	ck_assert_msg(memcmp(a.index, c.index, 5 * sizeof a.index[0]) != 0,
	              "seeds 7 and 8 chose the same rows");
	/* negative and sparse labels are labels like any other */
	static const int32_t st2[] = {-5, 1000, -5, 1000};
	p = mkpool(4);
	p.strata = st2;
	a = call(&p, 2, 1, NULL, 0, 0);
	ck_assert_int_eq(st2[a.index[0]], -5);
	ck_assert_int_eq(st2[a.index[1]], 1000);
}
END_TEST

START_TEST(test_stratified_errors)
{
	loom_sample_pool p = mkpool(4);
	answer a;
	expect_error((a = call(&p, 2, 1, NULL, 0, 0), &a), LOOM_EINVAL, "no strata");
	static const int32_t st[] = {0, 0, 1, 1};
	p.strata = st;
	expect_error((a = call(&p, 5, 1, NULL, 0, 0), &a), LOOM_ERANGE, "k = 5");
}
END_TEST

/* ------------------------------------------------------------------ reservoir */

/* Feed rows [0, total) in calls of the given sizes; the bank holds row ids
 * (-1: empty). */
static void
stream(size_t k, uint64_t seed, size_t total, const size_t *calls, size_t ncalls, int64_t *bank)
{
	size_t at = 0;
	uint64_t seen = 0;

	for (size_t i = 0; i < k; i++)
		bank[i] = -1;
	for (size_t c = 0; c < ncalls && at < total; c++) {
		loom_sample_pool p = mkpool(calls[c]);
		p.seen = seen;
		answer a = call(&p, k, seed, NULL, 0, 0);
		ck_assert_msg(a.rv == 0, "%s", a.error);
		ck_assert_uint_le(a.n, k);
		for (size_t i = 0; i < a.n; i++) {
			ck_assert_uint_lt(a.index[i], calls[c]);
			ck_assert(a.slot[i] >= 0 && (size_t)a.slot[i] < k);
			if (i > 0)
				ck_assert_uint_gt(a.index[i], a.index[i - 1]);
			for (size_t j = 0; j < i; j++)
				ck_assert(a.slot[j] != a.slot[i]);
			bank[a.slot[i]] = (int64_t)(at + a.index[i]);
		}
		at += calls[c];
		seen += calls[c];
	}
}

START_TEST(test_reservoir_fill)
{
	loom_sample_pool p = mkpool(3);
	answer a;

	ck_assert_uint_eq(S.ops->needs, LOOM_SAMPLE_STREAMING);
	/* the first k rows fill the slots in order */
	a = call(&p, 5, 1, NULL, 0, 0);
	EXPECT(a, ((size_t[]){0, 1, 2}), NULL);
	ck_assert(a.slot[0] == 0 && a.slot[1] == 1 && a.slot[2] == 2);
	p.seen = 3;
	a = call(&p, 5, 1, NULL, 0, 0);
	ck_assert(a.n >= 2 && a.index[0] == 0 && a.slot[0] == 3 && a.index[1] == 1 &&
	          a.slot[1] == 4);
	/* fixed rows are not offered: they take no slot and do not count */
	const size_t fixed[] = {0};
	p.seen = 0;
	a = call(&p, 5, 1, fixed, 1, 0);
	EXPECT(a, ((size_t[]){1, 2}), NULL);
	ck_assert(a.slot[0] == 0 && a.slot[1] == 1);
}
END_TEST

START_TEST(test_reservoir_split)
{
	/* the bank after 50 rows does not depend on the calls they came in */
	const size_t one[] = {50}, three[] = {7, 13, 30}, many[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 5};
	int64_t b1[8], b2[8], b3[8];

	for (uint64_t seed = 1; seed <= 20; seed++) {
		stream(8, seed, 50, one, 1, b1);
		stream(8, seed, 50, three, 3, b2);
		stream(8, seed, 50, many, 10, b3);
		ck_assert_mem_eq(b1, b2, sizeof b1);
		ck_assert_mem_eq(b1, b3, sizeof b1);
		for (size_t i = 0; i < 8; i++)
			ck_assert(b1[i] >= 0 && b1[i] < 50);
	}
}
END_TEST

START_TEST(test_reservoir_frequency)
{
	/* 20 rows in calls of 6, 7, 7 into 5 slots, seeds 1..4000: each row
	 * should be kept 4000·5/20 = 1000 times; σ = √(4000·¼·¾) ≈ 27.4, and
	 * the bound is 5σ.  The seeds are fixed, so these counts are exact. */
	enum { N = 20, K = 5, SEEDS = 4000 };
	const size_t calls[] = {6, 7, 7};
	size_t count[N] = {0}, total = 0;
	int64_t bank[K];

	for (uint64_t seed = 1; seed <= SEEDS; seed++) {
		stream(K, seed, N, calls, 3, bank);
		for (size_t i = 0; i < K; i++) {
			ck_assert(bank[i] >= 0);
			count[bank[i]]++;
			total++;
		}
	}
	ck_assert_uint_eq(total, (size_t)SEEDS * K);
	for (size_t r = 0; r < N; r++)
		ck_assert_msg(count[r] >= 1000 - 137 && count[r] <= 1000 + 137,
		              "row %zu kept %zu times in %d streams (expected 1000 ± 137)", r,
		              count[r], SEEDS);
}
END_TEST

START_TEST(test_reservoir_errors)
{
	loom_sample_pool p = mkpool(3);
	loom_sample_request req = {.size = sizeof req, .k = 2, .seed = 1};
	loom_sample_result res;
	size_t idx[2];

	memset(&res, 0, sizeof res);
	res.index = idx;
	ck_assert_int_eq(S.ops->select(S.ctx, &p, &req, &res), LOOM_EINVAL);
	ck_assert_ptr_nonnull(res.error);
	ck_assert_msg(strstr(res.error, "no slot array") != NULL, "%s", res.error);
	loomi_host_services()->free(res.error);
	answer a;
	expect_error((a = call(&p, 0, 1, NULL, 0, 0), &a), LOOM_EINVAL, "k is 0");
}
END_TEST

/* ------------------------------------------------------------------ k-center */

static void setup_kcenter(void) { sampler_open("sampler-k-center", NULL); }
static void setup_kcenter_sub(void) { sampler_open("sampler-k-center", "subsample = 10;"); }

START_TEST(test_kcenter)
{
	static const float x[] = {0, 1, 2, 10, 11, 20};
	loom_sample_pool p = mkpool(6);
	const size_t fixed[] = {0};
	answer a;

	ck_assert_uint_eq(S.ops->needs, LOOM_SAMPLE_NEEDS_FEATURES);
	p.dim = 1;
	p.features = x;
	/* from 0: farthest 20; then 10 (10 from both); then 2 */
	a = call(&p, 3, 1, fixed, 1, 0);
	EXPECT(a, ((size_t[]){5, 3, 2}), ((double[]){20, 10, 2}));

	/* ties: the lower row; then row 2 is 5 from row 0 (and 10 from 1) */
	static const float t[] = {0, 5, -5};
	p = mkpool(3);
	p.dim = 1;
	p.features = t;
	a = call(&p, 2, 1, fixed, 1, 0);
	EXPECT(a, ((size_t[]){1, 2}), ((double[]){5, 5}));

	/* two dimensions */
	static const float y[] = {0, 0, 3, 4, 6, 8};
	p.features = y;
	p.dim = 2;
	a = call(&p, 2, 1, fixed, 1, 0);
	EXPECT(a, ((size_t[]){2, 1}), ((double[]){10, 5}));

	/* nine dimensions: eight lanes and a tail */
	float z[3 * 9] = {0};
	for (int j = 0; j < 9; j++)
		z[9 + j] = 1; /* row 1: all ones, 3 from row 0 */
	z[18] = 2;        /* row 2: 2 from row 0, 3 from row 1 */
	p.features = z;
	p.dim = 9;
	a = call(&p, 2, 1, fixed, 1, 0);
	EXPECT(a, ((size_t[]){1, 2}), ((double[]){3, 2}));
}
END_TEST

START_TEST(test_kcenter_no_fixed)
{
	static const float x[] = {0, 1, 2, 10, 11, 20};
	loom_sample_pool p = mkpool(6);

	p.dim = 1;
	p.features = x;
	/* the first centre is drawn (score 0); the second is the farthest from
	 * it (from 10, rows 0 and 5 tie: row 0) */
	for (uint64_t seed = 0; seed < 8; seed++) {
		answer a = call(&p, 2, seed, NULL, 0, 0), b = call(&p, 2, seed, NULL, 0, 0);
		ck_assert_int_eq(a.rv, 0);
		ck_assert_mem_eq(a.index, b.index, 2 * sizeof a.index[0]);
		ck_assert(a.score[0] == 0);
		size_t far = x[a.index[0]] < 10 ? 5 : 0;
		ck_assert_uint_eq(a.index[1], far);
		ck_assert(fabs(a.score[1] - fabs(x[far] - x[a.index[0]])) < 1e-6);
	}
	/* seed 0's first draw: below(6) of SplitMix64's first output */
	answer a = call(&p, 1, 0, NULL, 0, 0);
	ck_assert_uint_eq(a.index[0], (size_t)(((unsigned __int128)SM0[0] * 6) >> 64));
}
END_TEST

/* 100 rows on a line; subsample 10 (from the request here, from the
 * instance's setting in the next test). */
static float line[100];

static loom_sample_pool
line_pool(void)
{
	loom_sample_pool p = mkpool(100);
	for (int i = 0; i < 100; i++)
		line[i] = (float)i * 0.5f;
	p.dim = 1;
	p.features = line;
	return p;
}

static void
check_subsample(size_t req_sub)
{
	loom_sample_pool p = line_pool();
	const size_t fixed[] = {50};
	answer a = call(&p, 10, 3, fixed, 1, req_sub), b = call(&p, 10, 3, fixed, 1, req_sub);
	answer c = call(&p, 10, 4, fixed, 1, req_sub), e;

	ck_assert_msg(a.rv == 0, "%s", a.error);
	ck_assert_mem_eq(a.index, b.index, 10 * sizeof a.index[0]);
	ck_assert_msg(memcmp(a.index, c.index, 10 * sizeof a.index[0]) != 0,
	              "seeds 3 and 4 drew the same subsample");
	/* k = the subsample: every row of it, each once, never the fixed one;
	 * scores never grow */
	for (size_t i = 0; i < 10; i++) {
		ck_assert(a.index[i] != 50);
		for (size_t j = 0; j < i; j++)
			ck_assert(a.index[j] != a.index[i]);
		if (i > 0)
			ck_assert(a.score[i] <= a.score[i - 1]);
	}
	expect_error((e = call(&p, 11, 3, fixed, 1, req_sub), &e), LOOM_ERANGE,
	             "10 rows of the subsample");
	/* a larger request subsample wins over the instance's */
	a = call(&p, 11, 3, fixed, 1, 20);
	ck_assert_int_eq(a.rv, 0);
}

START_TEST(test_kcenter_subsample_request) { check_subsample(10); }
END_TEST

START_TEST(test_kcenter_subsample_config) { check_subsample(0); }
END_TEST

START_TEST(test_kcenter_errors)
{
	float x[] = {0, 1, 2, 3};
	loom_sample_pool p = mkpool(4);
	answer a;

	expect_error((a = call(&p, 1, 1, NULL, 0, 0), &a), LOOM_EINVAL, "no features");
	p.features = x;
	expect_error((a = call(&p, 1, 1, NULL, 0, 0), &a), LOOM_EINVAL, "dimension is 0");
	p.dim = 1;
	expect_error((a = call(&p, 5, 1, NULL, 0, 0), &a), LOOM_ERANGE, "k = 5");
	x[2] = NAN;
	expect_error((a = call(&p, 1, 1, NULL, 0, 0), &a), LOOM_EINVAL, "row 2: feature 0 is nan");
	/* a fixed row's features are read too */
	x[2] = 2;
	x[3] = INFINITY;
	const size_t fixed[] = {3};
	expect_error((a = call(&p, 1, 1, fixed, 1, 0), &a), LOOM_EINVAL, "row 3");
}
END_TEST

/* ------------------------------------------------------------------ ranked batch */

static void setup_ranked(void) { sampler_open("sampler-ranked-batch", NULL); }
static void setup_ranked_scores(void) { sampler_open("sampler-ranked-batch", "uncertainty = \"scores\";"); }
static void setup_ranked_margin(void) { sampler_open("sampler-ranked-batch", "uncertainty = \"margin\";"); }

/* x = 0, 1, 4, 5; least confidence 0, .5, 0, .25 */
static const float RX[] = {0, 1, 4, 5};
static const float RP[] = {1, 0, .5f, .5f, 1, 0, .75f, .25f};

static loom_sample_pool
ranked_pool(void)
{
	loom_sample_pool p = mkpool(4);
	p.dim = 1;
	p.features = RX;
	p.n_classes = 2;
	p.probs = RP;
	return p;
}

START_TEST(test_ranked_batch)
{
	loom_sample_pool p = ranked_pool();
	const size_t fixed[] = {0};

	/* L = {0}, α = 3/4:  row 1: .75·(1 − 1/2) + .25·.5 = .5
	 *                   row 2: .75·(1 − 1/5) + 0 = .6
	 *                   row 3: .75·(1 − 1/6) + .25·.25 = .6875  → 3
	 * L = {0, 3}, α = 1/2: row 1: .5·.5 + .5·.5 = .5; row 2 (1 from 5): .25 → 1
	 * L = {0, 3, 1}, α = 1/4: row 2: .25·.5 = .125 */
	answer a = call(&p, 3, 1, fixed, 1, 0);
	EXPECT(a, ((size_t[]){3, 1, 2}), ((double[]){.6875, .5, .125}));
}
END_TEST

START_TEST(test_ranked_batch_cold)
{
	loom_sample_pool p = ranked_pool();

	/* no fixed rows: mean distances 10/4, 8/4, 8/4, 10/4 → row 1 (tie with
	 * 2: lower row), score 0; then L = {1}, α = 3/4: row 0: .75·.5 = .375;
	 * row 2: .75·.75 = .5625; row 3: .75·.8 + .25·.25 = .6625 → 3;
	 * then L = {1, 3}, α = 2/4: row 0 .25, row 2 (1 from 5) .25: tie → 0 */
	answer a = call(&p, 3, 1, NULL, 0, 0);
	EXPECT(a, ((size_t[]){1, 3, 0}), ((double[]){0, .6625, .25}));
	/* every candidate once */
	a = call(&p, 4, 1, NULL, 0, 0);
	EXPECT(a, ((size_t[]){1, 3, 0, 2}), NULL);
}
END_TEST

START_TEST(test_ranked_batch_scores)
{
	static const float sc[] = {9, 2, 0, 4};
	loom_sample_pool p = ranked_pool();
	const size_t fixed[] = {0};
	answer a;

	p.probs = NULL;
	expect_error((a = call(&p, 1, 1, fixed, 1, 0), &a), LOOM_EINVAL, "no scores");
	p.scores = sc;
	/* u = s / 4 over the candidates 1..3: .5, 0, 1 (row 0's 9 is fixed);
	 * row 3: .75·5/6 + .25·1 = .875 */
	a = call(&p, 1, 1, fixed, 1, 0);
	EXPECT(a, ((size_t[]){3}), ((double[]){.875}));
}
END_TEST

START_TEST(test_ranked_batch_margin)
{
	loom_sample_pool p = ranked_pool();
	const size_t fixed[] = {0};
	/* u = 1 − margin: rows 1..3: 1, 0, .5; row 1: .75·.5 + .25 = .625;
	 * row 2: .6; row 3: .625 + .125 = .75 → 3 */
	answer a = call(&p, 1, 1, fixed, 1, 0);
	EXPECT(a, ((size_t[]){3}), ((double[]){.75}));
}
END_TEST

START_TEST(test_ranked_batch_errors)
{
	loom_sample_pool p = ranked_pool();
	const size_t fixed[] = {0};
	answer a;

	p.probs = NULL;
	expect_error((a = call(&p, 1, 1, fixed, 1, 0), &a), LOOM_EINVAL, "no probabilities");
	p = ranked_pool();
	p.features = NULL;
	expect_error((a = call(&p, 1, 1, fixed, 1, 0), &a), LOOM_EINVAL, "no features");
	p = ranked_pool();
	expect_error((a = call(&p, 4, 1, fixed, 1, 0), &a), LOOM_ERANGE, "k = 4");
	static const float bad[] = {1, 0, .5f, .6f, 1, 0, .75f, .25f};
	p.probs = bad;
	expect_error((a = call(&p, 1, 1, fixed, 1, 0), &a), LOOM_EINVAL, "row 1");

	/* the cold start is refused past 16,384 candidates */
	enum { BIG = 16385 };
	float *f = calloc(BIG, sizeof *f), *pr = malloc(2 * BIG * sizeof *pr);
	ck_assert(f != NULL && pr != NULL);
	for (size_t i = 0; i < BIG; i++) {
		pr[2 * i] = 1;
		pr[2 * i + 1] = 0;
	}
	p = mkpool(BIG);
	p.dim = 1;
	p.features = f;
	p.n_classes = 2;
	p.probs = pr;
	expect_error((a = call(&p, 1, 1, NULL, 0, 0), &a), LOOM_ERANGE, "cold start");
	/* a subsample makes it possible */
	a = call(&p, 2, 1, NULL, 0, 100);
	ck_assert_msg(a.rv == 0, "%s", a.error);
	free(f);
	free(pr);
}
END_TEST

START_TEST(test_ranked_batch_bad_config)
{
	tu_plugin q;
	char *err = NULL;
	int rv = tu_plugin_open(&q, "sampler-ranked-batch", "s", "uncertainty = \"varience\";",
	                        "samplers.conf", &err);
	ck_assert_int_ne(rv, 0);
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err, "uncertainty") != NULL, "%s", err);
	free(err);
	tu_plugin_close(&q);
}
END_TEST

/* ------------------------------------------------------------------ suite */

static TCase *
tc(Suite *s, const char *name, void (*setup)(void))
{
	TCase *t = tcase_create(name);
	if (setup != NULL)
		tcase_add_checked_fixture(t, setup, sampler_close);
	tcase_set_timeout(t, 60);
	suite_add_tcase(s, t);
	return t;
}

static Suite *
suite(void)
{
	Suite *s = suite_create("samplers");
	TCase *t;

	t = tc(s, "least-confidence", setup_lc);
	tcase_add_test(t, test_least_confidence);
	tcase_add_test(t, test_topk_against_sort);
	tcase_add_test(t, test_uncertainty_errors);
	t = tc(s, "margin", setup_margin);
	tcase_add_test(t, test_margin);
	tcase_add_test(t, test_margin_one_class);
	t = tc(s, "entropy", setup_entropy);
	tcase_add_test(t, test_entropy);
	t = tc(s, "variance", setup_variance);
	tcase_add_test(t, test_variance);
	tcase_add_test(t, test_variance_errors);
	t = tc(s, "random", setup_random);
	tcase_add_test(t, test_random_known);
	tcase_add_test(t, test_random_properties);
	t = tc(s, "stratified", setup_stratified);
	tcase_add_test(t, test_stratified);
	tcase_add_test(t, test_stratified_errors);
	t = tc(s, "reservoir", setup_reservoir);
	tcase_add_test(t, test_reservoir_fill);
	tcase_add_test(t, test_reservoir_split);
	tcase_add_test(t, test_reservoir_frequency);
	tcase_add_test(t, test_reservoir_errors);
	t = tc(s, "k-center", setup_kcenter);
	tcase_add_test(t, test_kcenter);
	tcase_add_test(t, test_kcenter_no_fixed);
	tcase_add_test(t, test_kcenter_subsample_request);
	tcase_add_test(t, test_kcenter_errors);
	t = tc(s, "k-center-config", setup_kcenter_sub);
	tcase_add_test(t, test_kcenter_subsample_config);
	t = tc(s, "ranked-batch", setup_ranked);
	tcase_add_test(t, test_ranked_batch);
	tcase_add_test(t, test_ranked_batch_cold);
	tcase_add_test(t, test_ranked_batch_errors);
	t = tc(s, "ranked-batch-scores", setup_ranked_scores);
	tcase_add_test(t, test_ranked_batch_scores);
	t = tc(s, "ranked-batch-margin", setup_ranked_margin);
	tcase_add_test(t, test_ranked_batch_margin);
	t = tc(s, "ranked-batch-config", NULL);
	tcase_add_test(t, test_ranked_batch_bad_config);
	return s;
}

int
main(void)
{
	return tu_run(suite());
}

/* Sampler plugins through loomd (sample.h): the host's call of a sampler's
 * select, and the routes that expose it. */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <loom/error.h>
#include <loom/sampler.h>

#include "host/core/plugins.h"
#include "host/core/util.h"
#include "host/server/module.h"
#include "sample.h"

#define MAX_ROWS 10000000u
#define MAX_DIM 65536u

static const struct {
	uint32_t bit;
	const char *name;
} needs_names[] = {
	{LOOM_SAMPLE_NEEDS_PROBS, "probs"},
	{LOOM_SAMPLE_NEEDS_STRATA, "strata"},
	{LOOM_SAMPLE_NEEDS_FEATURES, "features"},
	{LOOM_SAMPLE_NEEDS_SCORES, "scores"},
};

static loom_instance *
sampler_instance(loomi_daemon *d, const char *name)
{
	loom_instance *ins = loomi_instance_find(&d->plugins, name);
	return ins && ins->inited && ins->kind == LOOM_KIND_SAMPLER ? ins : NULL;
}

int
loomi_sampler_select(loomi_daemon *d, const char *instance, const loom_sample_pool *pool,
                     const loom_sample_request *req, loom_sample_result *res, char **err)
{
	loom_instance *ins = sampler_instance(d, instance);
	const loom_sampler_ops *ops;
	int rv;

	*err = NULL;
	if (ins == NULL) {
		*err = loomi_strfmt("there is no sampler instance \"%s\"; GET /api/v1/samplers lists "
		                    "them (loomd.conf declares them)",
		                    instance);
		return LOOM_ENOENT;
	}
	ops = ins->desc->ops;
	for (size_t i = 0; i < LOOMI_N(needs_names); i++) {
		const void *have = needs_names[i].bit == LOOM_SAMPLE_NEEDS_PROBS      ? (const void *)pool->probs
		                   : needs_names[i].bit == LOOM_SAMPLE_NEEDS_STRATA   ? (const void *)pool->strata
		                   : needs_names[i].bit == LOOM_SAMPLE_NEEDS_FEATURES ? (const void *)pool->features
		                                                                      : (const void *)pool->scores;
		if ((ops->needs & needs_names[i].bit) && have == NULL) {
			*err = loomi_strfmt("sampler \"%s\" (%s) needs %s; give them with the pool",
			                    instance, ins->desc->name, needs_names[i].name);
			return LOOM_EINVAL;
		}
	}
	res->n = 0;
	res->error = NULL;
	if (!(ins->desc->flags & LOOM_PLUGIN_THREAD_SAFE))
		pthread_mutex_lock(&ins->lock);
	rv = ops->select(ins->ctx, pool, req, res);
	if (!(ins->desc->flags & LOOM_PLUGIN_THREAD_SAFE))
		pthread_mutex_unlock(&ins->lock);
	if (rv != 0) {
		*err = loomi_strfmt("sampler \"%s\": %s", instance,
		                    res->error ? res->error : loom_strerror(rv));
	} else if (res->n > req->k) {
		*err = loomi_strfmt("sampler \"%s\" chose %zu rows of the %zu asked; its plugin is "
		                    "wrong",
		                    instance, res->n, req->k);
		rv = LOOM_EINTERNAL;
	}
	if (res->error) {
		loomi_host_services()->free(res->error);
		res->error = NULL;
	}
	return rv;
}

/* ------------------------------------------------------------------ routes */

static json_t *
needs_json(uint32_t needs)
{
	json_t *a = json_array();
	for (size_t i = 0; i < LOOMI_N(needs_names); i++)
		if (needs & needs_names[i].bit)
			json_array_append_new(a, json_string(needs_names[i].name));
	return a;
}

/* GET /api/v1/samplers */
void
loomi_route_samplers(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *list = json_array();
	(void)req;
	for (size_t i = 0; i < d->plugins.n_instances; i++) {
		loom_instance *ins = d->plugins.instances[i];
		const loom_sampler_ops *ops;
		if (ins->kind != LOOM_KIND_SAMPLER || !ins->inited)
			continue;
		ops = ins->desc->ops;
		json_array_append_new(
			list, json_pack("{s:s, s:s, s:s, s:o, s:b}", "instance", ins->name, "module",
		                    ins->desc->name, "version", ins->desc->version, "needs",
		                    needs_json(ops->needs), "streaming",
		                    (ops->needs & LOOM_SAMPLE_STREAMING) != 0));
	}
	loomi_api_answer(res, 0, json_pack("{s:o}", "samplers", list), NULL, 200);
}

/* The arrays of a select body, owned here. */
typedef struct pool_arrays {
	float *probs, *features, *scores;
	int32_t *strata;
	int64_t *ids;
	size_t *fixed, n_fixed;
} pool_arrays;

static void
arrays_free(pool_arrays *a)
{
	free(a->probs);
	free(a->features);
	free(a->scores);
	free(a->strata);
	free(a->ids);
	free(a->fixed);
}

/* n rows (*n set by the first array read, else checked) of width *w
 * (0: a flat array of numbers) into a new float array. */
static bool
read_matrix(const json_t *v, const char *key, size_t *n, uint32_t *w, float **out, char *why,
            size_t wn)
{
	size_t rows = json_array_size(v), width = 0;
	if (!json_is_array(v) || rows == 0 || rows > MAX_ROWS) {
		snprintf(why, wn, "%s: an array of 1 to %u rows", key, MAX_ROWS);
		return false;
	}
	if (*n && rows != *n) {
		snprintf(why, wn, "%s has %zu rows, another array %zu: every array has one entry a row",
		         key, rows, *n);
		return false;
	}
	*n = rows;
	if (w) {
		width = json_array_size(json_array_get(v, 0));
		if (width == 0 || width > MAX_DIM) {
			snprintf(why, wn, "%s: each row an array of 1 to %u numbers", key, MAX_DIM);
			return false;
		}
		*w = (uint32_t)width;
	}
	*out = loomi_xmalloc(rows * (width ? width : 1) * sizeof **out);
	for (size_t i = 0; i < rows; i++) {
		const json_t *row = json_array_get(v, i);
		for (size_t j = 0; j < (width ? width : 1); j++) {
			const json_t *x = width ? json_array_get(row, j) : row;
			if (width && (!json_is_array(row) || json_array_size(row) != width)) {
				snprintf(why, wn, "%s: row %zu has %zu values, row 0 has %zu", key, i,
				         json_array_size(row), width);
				return false;
			}
			if (!json_is_number(x)) {
				snprintf(why, wn, "%s: row %zu: not a number", key, i);
				return false;
			}
			(*out)[i * (width ? width : 1) + j] = (float)json_number_value(x);
		}
	}
	return true;
}

static bool
read_ints(const json_t *v, const char *key, size_t *n, bool rows, int64_t **out, size_t *count,
          char *why, size_t wn)
{
	size_t m = json_array_size(v);
	if (!json_is_array(v) || (rows && m == 0) || m > MAX_ROWS) {
		snprintf(why, wn, "%s: an array of whole numbers", key);
		return false;
	}
	if (rows && *n && m != *n) {
		snprintf(why, wn, "%s has %zu rows, another array %zu: every array has one entry a row",
		         key, m, *n);
		return false;
	}
	if (rows)
		*n = m;
	*out = loomi_xmalloc((m ? m : 1) * sizeof **out);
	for (size_t i = 0; i < m; i++) {
		if (!json_is_integer(json_array_get(v, i))) {
			snprintf(why, wn, "%s: entry %zu is not a whole number", key, i);
			return false;
		}
		(*out)[i] = json_integer_value(json_array_get(v, i));
	}
	if (count)
		*count = m;
	return true;
}

/* POST /api/v1/samplers/{instance}/select */
void
loomi_route_sampler_select(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *body = loomi_api_json_body(req, res), *v, *chosen;
	loom_sample_pool pool;
	loom_sample_request rq;
	loom_sample_result out;
	pool_arrays a;
	loom_instance *ins;
	const char *k;
	char why[320] = "", *err = NULL;
	size_t n = 0, *index = NULL;
	double *score = NULL;
	int64_t *slot = NULL, *tmp = NULL;
	int rv = 0;

	memset(&a, 0, sizeof a);
	memset(&pool, 0, sizeof pool);
	memset(&rq, 0, sizeof rq);
	memset(&out, 0, sizeof out);
	if (body == NULL)
		return;
	if ((ins = sampler_instance(d, req->params[0])) == NULL) {
		loomi_api_error(res, 404, "not_found",
		                "there is no sampler instance \"%s\"; GET /api/v1/samplers lists them",
		                req->params[0]);
		goto out;
	}
	if (!json_is_object(body)) {
		snprintf(why, sizeof why, "the body must be a JSON object like {\"k\": 10, \"probs\": "
		                          "[[0.9, 0.1], …]}");
		goto bad;
	}
	json_object_foreach(body, k, v)
		if (strcmp(k, "k") && strcmp(k, "seed") && strcmp(k, "probs") && strcmp(k, "scores") &&
		    strcmp(k, "features") && strcmp(k, "strata") && strcmp(k, "ids") &&
		    strcmp(k, "fixed") && strcmp(k, "subsample") && strcmp(k, "seen")) {
			snprintf(why, sizeof why, "unknown field \"%s\"; the fields are k, seed, probs, "
			         "scores, features, strata, ids, fixed, subsample, seen", k);
			goto bad;
		}
	v = json_object_get(body, "k");
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > MAX_ROWS) {
		snprintf(why, sizeof why, "k: required, how many rows to choose (1 to %u)", MAX_ROWS);
		goto bad;
	}
	rq.size = sizeof rq;
	rq.k = (size_t)json_integer_value(v);
	if ((v = json_object_get(body, "seed")) && (!json_is_integer(v) || json_integer_value(v) < 0)) {
		snprintf(why, sizeof why, "seed: a whole number ≥ 0");
		goto bad;
	}
	rq.seed = v ? (uint64_t)json_integer_value(v) : 0;
	if ((v = json_object_get(body, "subsample")) &&
	    (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > MAX_ROWS)) {
		snprintf(why, sizeof why, "subsample: a whole number of rows, 1 to %u", MAX_ROWS);
		goto bad;
	}
	rq.subsample = v ? (size_t)json_integer_value(v) : 0;
	if ((v = json_object_get(body, "probs")) &&
	    !read_matrix(v, "probs", &n, &pool.n_classes, &a.probs, why, sizeof why))
		goto bad;
	if ((v = json_object_get(body, "features")) &&
	    !read_matrix(v, "features", &n, &pool.dim, &a.features, why, sizeof why))
		goto bad;
	if ((v = json_object_get(body, "scores")) &&
	    !read_matrix(v, "scores", &n, NULL, &a.scores, why, sizeof why))
		goto bad;
	if ((v = json_object_get(body, "strata"))) {
		if (!read_ints(v, "strata", &n, true, &tmp, NULL, why, sizeof why))
			goto bad;
		a.strata = loomi_xmalloc(n * sizeof *a.strata);
		for (size_t i = 0; i < n; i++) {
			if (tmp[i] < INT32_MIN || tmp[i] > INT32_MAX) {
				snprintf(why, sizeof why, "strata: entry %zu is out of range", i);
				goto bad;
			}
			a.strata[i] = (int32_t)tmp[i];
		}
	}
	if ((v = json_object_get(body, "ids")) &&
	    !read_ints(v, "ids", &n, true, &a.ids, NULL, why, sizeof why))
		goto bad;
	if (n == 0) {
		snprintf(why, sizeof why, "no pool: give probs, scores, features or strata, one entry "
		                          "a row");
		goto bad;
	}
	if ((v = json_object_get(body, "fixed"))) {
		free(tmp);
		tmp = NULL;
		if (!read_ints(v, "fixed", &n, false, &tmp, &a.n_fixed, why, sizeof why))
			goto bad;
		a.fixed = loomi_xmalloc((a.n_fixed ? a.n_fixed : 1) * sizeof *a.fixed);
		for (size_t i = 0; i < a.n_fixed; i++) {
			if (tmp[i] < 0 || (size_t)tmp[i] >= n) {
				snprintf(why, sizeof why, "fixed: entry %zu (%lld) is not a row of the pool "
				         "(0 to %zu)", i, (long long)tmp[i], n - 1);
				goto bad;
			}
			a.fixed[i] = (size_t)tmp[i];
		}
	}
	if ((v = json_object_get(body, "seen")) && (!json_is_integer(v) || json_integer_value(v) < 0)) {
		snprintf(why, sizeof why, "seen: rows offered in earlier calls, a whole number ≥ 0");
		goto bad;
	}
	pool.size = sizeof pool;
	pool.n = n;
	pool.ids = a.ids;
	pool.probs = a.probs;
	pool.strata = a.strata;
	pool.features = a.features;
	pool.scores = a.scores;
	pool.seen = v ? (uint64_t)json_integer_value(v) : 0;
	rq.n_fixed = a.n_fixed;
	rq.fixed = a.fixed;
	index = loomi_xcalloc(rq.k, sizeof *index);
	score = loomi_xcalloc(rq.k, sizeof *score);
	slot = loomi_xcalloc(rq.k, sizeof *slot);
	out.index = index;
	out.score = score;
	out.slot = slot;
	rv = loomi_sampler_select(d, req->params[0], &pool, &rq, &out, &err);
	if (rv != 0) {
		loomi_api_error(res, rv == LOOM_EINVAL || rv == LOOM_ERANGE ? 400 : 500,
		                rv == LOOM_EINVAL || rv == LOOM_ERANGE ? "invalid" : "internal", "%s", err);
		goto out;
	}
	chosen = json_array();
	for (size_t i = 0; i < out.n; i++) {
		json_t *row = json_pack("{s:I}", "row", (json_int_t)index[i]);
		if (index[i] >= n) {
			json_decref(row);
			json_decref(chosen);
			loomi_api_error(res, 500, "internal", "sampler \"%s\" chose row %zu of a pool of "
			                "%zu; its plugin is wrong", req->params[0], index[i], n);
			goto out;
		}
		if (a.ids)
			json_object_set_new(row, "id", json_integer(a.ids[index[i]]));
		if (isfinite(score[i]))
			json_object_set_new(row, "score", json_real(score[i]));
		if (ins->desc->ops && (((const loom_sampler_ops *)ins->desc->ops)->needs &
		                       LOOM_SAMPLE_STREAMING))
			json_object_set_new(row, "slot", json_integer(slot[i]));
		json_array_append_new(chosen, row);
	}
	loomi_api_answer(res, 0,
	                 json_pack("{s:s, s:s, s:I, s:o}", "sampler", req->params[0], "module",
	                           ins->desc->name, "n", (json_int_t)out.n, "chosen", chosen),
	                 NULL, 200);
	goto out;
bad:
	loomi_api_error(res, 400, "invalid", "%s", why);
out:
	arrays_free(&a);
	free(tmp);
	free(index);
	free(score);
	free(slot);
	free(err);
	json_decref(body);
}

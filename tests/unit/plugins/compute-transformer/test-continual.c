/* The engine's continual-learning library: a registered version's weights
 * loaded into a model whose classification head grew (tf_weights_load_init),
 * continual.safetensors written and read back (tf_continual_save/_load):
 * bit-exact, mapped onto a grown head, refused when truncated, corrupt,
 * hostile or another model's; and the continual-learning summary
 * (tf_cl_summarize) on a hand-computed example.  Models are built with the
 * real head plugins, loaded through the host's plugin runtime. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include <loom/error.h>
#include <loom/safetensors.h>
#include <loom/util.h>

#include "checkpoint.h"
#include "continual.h"
#include "host/core/plugins.h"
#include "model.h"
#include "safetensors-io.h"
#include "testutil.h"

/* ------------------------------------------------------------------ fixture */

static loomi_plugins reg;
static loomi_doc doc;
static loom_instance *classification, *anomaly;
static lk_pool *pool;
static char *tmp;

static void
setup(void)
{
	const char *dirs[] = {tu_env("LOOM_TEST_PLUGINS")};
	loomi_strv errs = {0};
	loomi_plugin_conf pc[2] = {{"classification", "head-classification", NULL, NULL},
	                           {"anomaly", "head-anomaly", NULL, NULL}};
	loom_instance **ins[2] = {&classification, &anomaly};
	char *err = NULL;

	tmp = tu_tmpdir();
	ck_assert_int_eq(loomi_plugins_init(&reg, dirs, 1, NULL), 0);
	ck_assert_int_eq(loomi_doc_load_string(&doc, "x = 1;", "t", &errs), 0);
	for (int i = 0; i < 2; i++) {
		pc[i].node = doc.root;
		ck_assert_int_eq(loomi_instance_create(&reg, &doc, &pc[i], ins[i], &errs), 0);
		ck_assert_msg(loomi_instance_start(*ins[i], &err) == 0, "%s: %s", pc[i].module, err);
	}
	pool = lk_pool_create(1);
}

static void
teardown(void)
{
	lk_pool_destroy(pool);
	loomi_plugins_fini(&reg);
	loomi_doc_free(&doc);
	tu_rmrf(tmp);
	free(tmp);
}

#define CHANNELS 3
#define CONTEXT 8
#define WF (CHANNELS * CONTEXT)

static const char *const class_names[] = {"sun", "rain", "fog", "snow", "hail", "wind"};

/* A small classification model with classes classes (anomaly: head the
 * anomaly head), d_model d, initialized from seed. */
static void
model(tf_model *m, const loom_instance *head, int64_t classes, int64_t d, uint64_t seed)
{
	tf_model_config mc;
	char *err = NULL;

	memset(&mc, 0, sizeof mc);
	mc.channels = CHANNELS;
	mc.context = CONTEXT;
	mc.patch = 4;
	mc.d_model = d;
	mc.heads = 2;
	mc.layers = 1;
	mc.ffn = 2 * d;
	mc.max_batch = 2;
	mc.head_ops = head->desc->ops;
	mc.head_ctx = head->ctx;
	mc.classes = classes;
	mc.class_names = classes ? class_names : NULL;
	mc.options = "{\"dropout\":0}";
	ck_assert_msg(tf_model_build(m, &mc, pool, &err) == 0, "build: %s", err);
	tf_model_init(m, seed);
}

static char *
path_of(const char *name)
{
	return loom_strfmt("%s/%s", tmp, name);
}

/* A copy of m's parameters. */
static float *
params_of(const tf_model *m)
{
	float *p = malloc((size_t)m->n_params * sizeof *p);
	ck_assert_ptr_nonnull(p);
	memcpy(p, m->params, (size_t)m->n_params * sizeof *p);
	return p;
}

static const tf_tensor *
tensor(const tf_model *m, const char *name)
{
	const tf_tensor *t = tf_model_tensor(m, name);
	ck_assert_msg(t != NULL, "the model has no tensor %s", name);
	return t;
}

/* The tensors of a file written by hand, for files no writer of the
 * engine makes. */
static void
write_file(const char *path, const loom_safetensors_tensor *t, size_t n, const char *continual)
{
	loom_safetensors_meta meta[1] = {{"continual", continual}};
	unsigned char *buf;
	size_t len;

	ck_assert_int_eq(loom_safetensors_encode(t, n, meta, continual ? 1 : 0, &buf, &len), 0);
	ck_assert_int_eq(loom_file_write_atomic(path, buf, len, 0644), 0);
	free(buf);
}

static float
noise(uint64_t seed, uint64_t i)
{
	return (float)lk_rand_normal(seed, 7, i);
}

/* ------------------------------------------------------------------ weights */

START_TEST(weights_grown_head)
{
	tf_model old, m;
	char *path = path_of("best.safetensors"), *err = NULL;
	float *before, *fresh;
	const tf_tensor *w_old, *b_old, *w, *b;
	json_t *info = json_pack("{s:s}", "model", "weather"), *got = NULL;
	int grown = -1;

	model(&old, classification, 3, 16, 1);
	ck_assert_int_eq(tf_weights_save(path, &old, info, &err), 0);
	before = params_of(&old);
	w_old = tensor(&old, "head.proj.weight");
	b_old = tensor(&old, "head.proj.bias");
	/* the bundled head keeps its classes on dimension 0: [classes, D'] */
	ck_assert_int_eq(w_old->dims[0], 3);
	ck_assert_int_eq(b_old->dims[0], 3);

	/* two new classes */
	model(&m, classification, 5, 16, 2);
	fresh = params_of(&m);
	ck_assert_msg(tf_weights_load_init(path, &m, &got, &grown, &err) == 0, "%s", err);
	ck_assert_int_eq(grown, 2);
	ck_assert_str_eq(json_string_value(json_object_get(got, "model")), "weather");
	w = tensor(&m, "head.proj.weight");
	b = tensor(&m, "head.proj.bias");
	ck_assert_int_eq(w->dims[0], 5);
	for (int i = 0; i < m.n_tensors; i++) {
		const tf_tensor *t = &m.tensors[i];
		if (t == w || t == b)
			continue;
		/* every other tensor: the stored bits */
		ck_assert_msg(memcmp(m.params + t->offset, before + tensor(&old, t->name)->offset,
		                     (size_t)t->numel * sizeof(float)) == 0,
		              "%s differs", t->name);
	}
	/* old rows copied, new rows as m was initialized */
	ck_assert(memcmp(m.params + w->offset, before + w_old->offset,
	                 (size_t)w_old->numel * sizeof(float)) == 0);
	ck_assert(memcmp(m.params + w->offset + w_old->numel, fresh + w->offset + w_old->numel,
	                 (size_t)(w->numel - w_old->numel) * sizeof(float)) == 0);
	ck_assert(memcmp(m.params + b->offset, before + b_old->offset, 3 * sizeof(float)) == 0);
	ck_assert(m.params[b->offset + 3] == fresh[b->offset + 3] &&
	          m.params[b->offset + 4] == fresh[b->offset + 4]);
	/* the exact loader still refuses a grown head */
	ck_assert_int_eq(tf_weights_load(path, &m, NULL, &err), LOOM_EINVAL);
	free(err);
	err = NULL;
	/* the same classes: nothing grew; NULLs accepted */
	tf_model_free(&m);
	model(&m, classification, 3, 16, 3);
	ck_assert_int_eq(tf_weights_load_init(path, &m, NULL, NULL, &err), 0);
	ck_assert(memcmp(m.params, before, (size_t)m.n_params * sizeof(float)) == 0);
	tf_model_free(&m);

	/* fewer classes than the version: refused, naming the tensor */
	model(&m, classification, 2, 16, 3);
	memcpy(fresh, m.params, (size_t)m.n_params * sizeof(float));
	ck_assert_int_eq(tf_weights_load_init(path, &m, NULL, &grown, &err), LOOM_EINVAL);
	{
		char *want = loom_strfmt("%s: tensor \"head.proj.weight\" has another dtype or shape "
		                         "than this model's; train.init must name a version of the "
		                         "same architecture (only a classification head may grow, by "
		                         "new classes)",
		                         path);
		ck_assert_str_eq(err, want);
		free(want);
	}
	/* nothing was touched */
	ck_assert(memcmp(m.params, fresh, (size_t)m.n_params * sizeof(float)) == 0);
	free(err);
	err = NULL;
	tf_model_free(&m);
	/* another width: the encoder differs */
	model(&m, classification, 5, 8, 3);
	ck_assert_int_eq(tf_weights_load_init(path, &m, NULL, &grown, &err), LOOM_EINVAL);
	ck_assert_msg(strstr(err, "has another dtype or shape than this model's") != NULL, "%s", err);
	free(err);
	err = NULL;
	tf_model_free(&m);

	/* a file lacking a tensor of the model, or holding one it lacks */
	{
		loom_safetensors_tensor *t = calloc((size_t)old.n_tensors + 1, sizeof *t);
		char *p2 = path_of("partial.safetensors"), *want;
		int k = 0, bias = -1;
		for (int i = 0; i < old.n_tensors; i++) {
			const tf_tensor *tt = &old.tensors[i];
			t[k].name = tt->name;
			t[k].dtype = "F32";
			t[k].ndim = (uint32_t)tt->ndim;
			for (int d = 0; d < tt->ndim; d++)
				t[k].dims[d] = tt->dims[d];
			t[k].data = old.params + tt->offset;
			t[k].nbytes = (size_t)tt->numel * sizeof(float);
			if (strcmp(tt->name, "head.proj.bias") == 0)
				bias = k;
			k++;
		}
		ck_assert_int_ge(bias, 0);
		model(&m, classification, 5, 16, 3);
		/* the bias left out */
		t[k] = t[bias];
		t[bias] = t[k - 1];
		write_file(p2, t, (size_t)k - 1, NULL);
		ck_assert_int_eq(tf_weights_load_init(p2, &m, NULL, &grown, &err), LOOM_EINVAL);
		want = loom_strfmt("%s has no tensor \"head.proj.bias\": it was written for another "
		                   "kind of model; train.init must name a version of the same "
		                   "architecture",
		                   p2);
		ck_assert_str_eq(err, want);
		free(want);
		free(err);
		err = NULL;
		/* all of them, and one more (its name with a control byte) */
		t[k - 1] = t[k];
		t[k] = t[0];
		t[k].name = "extra\x1b[2J";
		write_file(p2, t, (size_t)k + 1, NULL);
		ck_assert_int_eq(tf_weights_load_init(p2, &m, NULL, &grown, &err), LOOM_EINVAL);
		ck_assert_msg(strstr(err, "has a tensor \"extra?[2J\" this model does not have") !=
		                  NULL,
		              "%s", err);
		free(err);
		err = NULL;
		/* and all of them alone load */
		write_file(p2, t, (size_t)k, NULL);
		ck_assert_msg(tf_weights_load_init(p2, &m, NULL, &grown, &err) == 0, "%s", err);
		ck_assert_int_eq(grown, 2);
		ck_assert_int_eq(tf_weights_load_init("/nonexistent/x", &m, NULL, NULL, &err),
		                 LOOM_ENOENT);
		free(err);
		tf_model_free(&m);
		free(t);
		free(p2);
	}
	json_decref(info);
	json_decref(got);
	tf_model_free(&old);
	free(before);
	free(fresh);
	free(path);
}
END_TEST

/* A head that keeps its classes on the last dimension ([D, classes]) grows
 * by columns: each row's leading columns are copied. */
START_TEST(grown_copy_layouts)
{
	tf_tensor tt;
	loom_safetensors_tensor s;
	float src[4 * 3], dst[4 * 5];
	int dim = -1;

	memset(&tt, 0, sizeof tt);
	memset(&s, 0, sizeof s);
	for (int i = 0; i < 12; i++)
		src[i] = (float)(i + 1);
	for (int i = 0; i < 20; i++)
		dst[i] = -1;
	tt.ndim = 2;
	tt.dims[0] = 4;
	tt.dims[1] = 5;
	tt.numel = 20;
	tt.flags = TF_HEAD;
	s.dtype = "F32";
	s.ndim = 2;
	s.dims[0] = 4;
	s.dims[1] = 3;
	s.data = src;
	s.nbytes = sizeof src;
	ck_assert_int_eq(tf_st_fit(&tt, &s, &dim), 1);
	ck_assert_int_eq(dim, 1);
	tf_st_copy(dst, &tt, &s, 1, dim);
	for (int r = 0; r < 4; r++)
		for (int c = 0; c < 5; c++)
			ck_assert(dst[r * 5 + c] == (c < 3 ? src[r * 3 + c] : -1));
	/* a tensor that is not the head's may not grow; nor shrink, nor grow twice */
	tt.flags = 0;
	ck_assert_int_eq(tf_st_fit(&tt, &s, &dim), -1);
	tt.flags = TF_HEAD;
	tt.dims[1] = 2;
	ck_assert_int_eq(tf_st_fit(&tt, &s, &dim), -1);
	tt.dims[0] = 5;
	tt.dims[1] = 5;
	ck_assert_int_eq(tf_st_fit(&tt, &s, &dim), -1);
	s.dtype = "F64";
	tt.dims[0] = 4;
	tt.dims[1] = 3;
	ck_assert_int_eq(tf_st_fit(&tt, &s, &dim), -1);
	s.dtype = "F32";
	ck_assert_int_eq(tf_st_fit(&tt, &s, &dim), 0);
}
END_TEST

/* ------------------------------------------------------------------ continual.safetensors */

/* A continual state for m: a bank of mem rows, terms EWC terms, holdouts
 * 1 … holdouts of 3 + j windows, with noise from seed. */
static void
state(tf_continual *c, const tf_model *m, int64_t tl, int64_t mem, int terms, int holdouts,
      uint64_t seed)
{
	uint64_t k = 0;

	memset(c, 0, sizeof *c);
	c->window_floats = WF;
	c->target_len = tl;
	c->mem_n = mem;
	c->mem_x = calloc((size_t)(mem * WF) + 1, sizeof(float));
	c->mem_y = calloc((size_t)(mem * tl) + 1, sizeof(float));
	for (int64_t i = 0; i < mem * WF; i++)
		c->mem_x[i] = noise(seed, k++);
	for (int64_t i = 0; i < mem * tl; i++)
		c->mem_y[i] = (float)(i % 3);
	c->mem_seen = 5000000000ull; /* over 2^32 */
	c->n_terms = terms;
	c->terms = calloc((size_t)terms + 1, sizeof *c->terms);
	for (int t = 0; t < terms; t++) {
		c->terms[t].fisher = calloc((size_t)m->n_params, sizeof(float));
		c->terms[t].theta = calloc((size_t)m->n_params, sizeof(float));
		for (int i = 0; i < m->n_tensors; i++) {
			const tf_tensor *tt = &m->tensors[i];
			if (tt->flags & TF_BUFFER)
				continue; /* not trainable: stays 0, and is not stored */
			for (int64_t e = 0; e < tt->numel; e++) {
				c->terms[t].fisher[tt->offset + e] = fabsf(noise(seed + 1, k++));
				c->terms[t].theta[tt->offset + e] = noise(seed + 2, k++);
			}
		}
	}
	c->n_holdouts = holdouts;
	c->holdouts = calloc((size_t)holdouts + 1, sizeof *c->holdouts);
	for (int j = 0; j < holdouts; j++) {
		tf_holdout *h = &c->holdouts[j];
		h->index = j + 1;
		h->data = loom_strfmt("/data/%d.csv", 2010 + j);
		h->rows = 100 + j;
		h->n = 3 + j;
		h->x = calloc((size_t)(h->n * WF), sizeof(float));
		h->y = calloc((size_t)(h->n * tl), sizeof(float));
		for (int64_t i = 0; i < h->n * WF; i++)
			h->x[i] = noise(seed + 3, k++);
		for (int64_t i = 0; i < h->n * tl; i++)
			h->y[i] = (float)(j + i % 2);
	}
	c->meta = json_pack("{s:[{s:i, s:s}], s:[[f], [f, f]], s:[n, f], s:s, s:b, s:s, s:[s, s]}",
	                    "increments", "index", 1, "data", "stale", "R", 0.5, 0.25, 0.75,
	                    "R_before", 0.125, "metric", "accuracy", "higher_is_better", 1,
	                    "ewc_mode", "separate", "classes", "sun", "rain");
}

static void
same_floats(const float *a, const float *b, int64_t n, const char *what)
{
	ck_assert_msg(n == 0 || memcmp(a, b, (size_t)n * sizeof(float)) == 0, "%s differs", what);
}

START_TEST(continual_round_trip)
{
	tf_model m;
	tf_continual c, r;
	char *path = path_of("continual.safetensors"), *err = NULL, *file;
	size_t len;
	loom_safetensors *f;

	model(&m, classification, 3, 16, 1);
	state(&c, &m, 1, 7, 2, 2, 11);
	ck_assert_msg(tf_continual_save(path, &m, &c, &err) == 0, "%s", err);
	ck_assert_msg(tf_continual_load(path, &m, WF, 1, &r, &err) == 0, "%s", err);
	ck_assert_int_eq(r.window_floats, WF);
	ck_assert_int_eq(r.target_len, 1);
	ck_assert_int_eq(r.mem_n, 7);
	ck_assert_uint_eq(r.mem_seen, 5000000000ull);
	same_floats(r.mem_x, c.mem_x, 7 * WF, "memory.x");
	same_floats(r.mem_y, c.mem_y, 7, "memory.y");
	ck_assert_int_eq(r.n_terms, 2);
	for (int t = 0; t < 2; t++) {
		same_floats(r.terms[t].fisher, c.terms[t].fisher, m.n_params, "fisher");
		same_floats(r.terms[t].theta, c.terms[t].theta, m.n_params, "theta");
	}
	ck_assert_int_eq(r.n_holdouts, 2);
	for (int j = 0; j < 2; j++) {
		ck_assert_int_eq(r.holdouts[j].index, j + 1);
		ck_assert_str_eq(r.holdouts[j].data, c.holdouts[j].data);
		ck_assert_int_eq(r.holdouts[j].rows, 100 + j);
		ck_assert_int_eq(r.holdouts[j].n, 3 + j);
		same_floats(r.holdouts[j].x, c.holdouts[j].x, (3 + j) * WF, "holdout x");
		same_floats(r.holdouts[j].y, c.holdouts[j].y, 3 + j, "holdout y");
	}
	/* the metadata: the caller's, with memory_seen and each holdout's
	 * increment (the stale entry corrected, the missing one added) */
	ck_assert_str_eq(json_string_value(json_object_get(r.meta, "ewc_mode")), "separate");
	ck_assert(json_equal(json_object_get(r.meta, "R"), json_object_get(c.meta, "R")));
	ck_assert_int_eq(json_integer_value(json_object_get(r.meta, "memory_seen")), 5000000000ll);
	{
		json_t *incs = json_object_get(r.meta, "increments"), *want;
		want = json_pack("[{s:i, s:s, s:i, s:i}, {s:i, s:s, s:i, s:i}]", "index", 1, "data",
		                 "/data/2010.csv", "test_windows", 3, "rows", 100, "index", 2, "data",
		                 "/data/2011.csv", "test_windows", 4, "rows", 101);
		ck_assert_msg(json_equal(incs, want), "increments: %s", json_dumps(incs, 0));
		json_decref(want);
	}
	/* the caller's metadata is left as it was */
	ck_assert_str_eq(json_string_value(json_object_get(
	                     json_array_get(json_object_get(c.meta, "increments"), 0), "data")),
	                 "stale");
	/* the layout contract.md §2 names */
	ck_assert_int_eq(tf_st_read(path, &file, &len, &f, &err), 0);
	{
		const loom_safetensors_tensor *x = loom_safetensors_find(f, "memory.x"),
		                              *y = loom_safetensors_find(f, "memory.y");
		ck_assert(x && x->ndim == 3 && x->dims[0] == 7 && x->dims[1] == CONTEXT &&
		          x->dims[2] == CHANNELS);
		ck_assert(y && y->ndim == 2 && y->dims[0] == 7 && y->dims[1] == 1);
		ck_assert_ptr_nonnull(loom_safetensors_find(f, "ewc.1.fisher.head.proj.weight"));
		ck_assert_ptr_nonnull(loom_safetensors_find(f, "ewc.0.theta.head.proj.bias"));
		ck_assert_ptr_nonnull(loom_safetensors_find(f, "holdout.2.y"));
		ck_assert_str_eq(loom_safetensors_meta_get(f, "memory_seen"), "5000000000");
	}
	loom_safetensors_free(f);
	free(file);
	/* a second save of what was read writes the same bytes */
	{
		char *p2 = path_of("again.safetensors"), *a, *b;
		size_t la, lb;
		ck_assert_int_eq(tf_continual_save(p2, &m, &r, &err), 0);
		ck_assert_int_eq(loom_file_read(path, &a, &la), 0);
		ck_assert_int_eq(loom_file_read(p2, &b, &lb), 0);
		ck_assert(la == lb && memcmp(a, b, la) == 0);
		free(a);
		free(b);
		free(p2);
	}
	tf_continual_free(&r);
	tf_continual_free(&r); /* idempotent */
	tf_continual_free(&c);

	/* an empty state: no bank, no terms, no holdouts */
	memset(&c, 0, sizeof c);
	c.window_floats = WF;
	c.target_len = 1;
	ck_assert_int_eq(tf_continual_save(path, &m, &c, &err), 0);
	ck_assert_int_eq(tf_continual_load(path, &m, WF, 1, &r, &err), 0);
	ck_assert(r.mem_n == 0 && r.n_terms == 0 && r.n_holdouts == 0 && r.mem_seen == 0);
	ck_assert(json_is_object(r.meta));
	tf_continual_free(&r);
	/* nonsense in: refused before writing */
	c.mem_n = 3;
	ck_assert_int_eq(tf_continual_save(path, &m, &c, &err), LOOM_EINVAL);
	ck_assert_msg(strstr(err, "the replay bank's rows have no data") != NULL, "%s", err);
	free(err);
	c.mem_n = 0;
	c.meta = json_integer(1);
	ck_assert_int_eq(tf_continual_save(path, &m, &c, &err), LOOM_EINVAL);
	ck_assert_msg(strstr(err, "the metadata is not a JSON object") != NULL, "%s", err);
	free(err);
	json_decref(c.meta);
	tf_model_free(&m);
	free(path);
}
END_TEST

/* The anomaly head's threshold is a buffer, not trained: no EWC tensor for
 * it; its targets are windows, stored [M, target_len]. */
START_TEST(continual_buffers_not_stored)
{
	tf_model m;
	tf_continual c, r;
	char *path = path_of("continual.safetensors"), *err = NULL, *file;
	size_t len;
	loom_safetensors *f;
	const tf_tensor *th;

	model(&m, anomaly, 0, 16, 1);
	th = tensor(&m, "head.threshold");
	ck_assert(th->flags & TF_BUFFER);
	state(&c, &m, WF, 4, 1, 1, 5);
	ck_assert_msg(tf_continual_save(path, &m, &c, &err) == 0, "%s", err);
	ck_assert_int_eq(tf_st_read(path, &file, &len, &f, &err), 0);
	ck_assert_ptr_null(loom_safetensors_find(f, "ewc.0.fisher.head.threshold"));
	ck_assert_ptr_nonnull(loom_safetensors_find(f, "ewc.0.fisher.head.proj.weight"));
	ck_assert_int_eq(loom_safetensors_find(f, "memory.y")->ndim, 2);
	ck_assert_int_eq(loom_safetensors_find(f, "memory.y")->dims[1], WF);
	loom_safetensors_free(f);
	free(file);
	ck_assert_msg(tf_continual_load(path, &m, WF, WF, &r, &err) == 0, "%s", err);
	same_floats(r.terms[0].fisher, c.terms[0].fisher, m.n_params, "fisher");
	ck_assert(r.terms[0].fisher[th->offset] == 0);
	tf_continual_free(&r);
	tf_continual_free(&c);
	tf_model_free(&m);
	free(path);
}
END_TEST

/* Read by a model whose head grew: the old rows mapped, the new F = 0, θ = 0. */
START_TEST(continual_grown_head)
{
	tf_model old, m;
	tf_continual c, r;
	char *path = path_of("continual.safetensors"), *err = NULL;
	const tf_tensor *w_old, *w, *b;

	model(&old, classification, 3, 16, 1);
	state(&c, &old, 1, 2, 2, 1, 9);
	ck_assert_int_eq(tf_continual_save(path, &old, &c, &err), 0);
	w_old = tensor(&old, "head.proj.weight");
	model(&m, classification, 5, 16, 2);
	w = tensor(&m, "head.proj.weight");
	b = tensor(&m, "head.proj.bias");
	ck_assert_msg(tf_continual_load(path, &m, WF, 1, &r, &err) == 0, "%s", err);
	ck_assert_int_eq(r.n_terms, 2);
	for (int t = 0; t < 2; t++) {
		for (int i = 0; i < m.n_tensors; i++) {
			const tf_tensor *tt = &m.tensors[i], *to = tensor(&old, tt->name);
			int64_t keep = tt == b ? 3 : tt == w ? w_old->numel : tt->numel;
			same_floats(r.terms[t].fisher + tt->offset, c.terms[t].fisher + to->offset, keep,
			            tt->name);
			same_floats(r.terms[t].theta + tt->offset, c.terms[t].theta + to->offset, keep,
			            tt->name);
			for (int64_t e = keep; e < tt->numel; e++)
				ck_assert(r.terms[t].fisher[tt->offset + e] == 0 &&
				          r.terms[t].theta[tt->offset + e] == 0);
		}
	}
	tf_continual_free(&r);
	tf_model_free(&m);
	/* another architecture: refused, naming the tensor */
	model(&m, classification, 3, 8, 2);
	ck_assert_int_eq(tf_continual_load(path, &m, WF, 1, &r, &err), LOOM_EINVAL);
	ck_assert_msg(strstr(err, "has another dtype or shape than the model's") != NULL, "%s", err);
	ck_assert(r.terms == NULL && r.meta == NULL);
	free(err);
	tf_model_free(&m);
	tf_model_free(&old);
	tf_continual_free(&c);
	free(path);
}
END_TEST

/* Expects load to fail with code and a message holding want. */
static void
load_fails(const char *path, const tf_model *m, int64_t wf, int64_t tl, int code,
           const char *want)
{
	tf_continual r;
	char *err = NULL;
	int rv = tf_continual_load(path, m, wf, tl, &r, &err);

	ck_assert_msg(rv == code, "expected %d, got %d (%s)", code, rv, err ? err : "");
	ck_assert_msg(err != NULL && strstr(err, want) != NULL, "message\n  got:  %s\n  want: …%s…",
	              err ? err : "(null)", want);
	ck_assert(r.mem_x == NULL && r.terms == NULL && r.holdouts == NULL && r.meta == NULL &&
	          r.n_terms == 0);
	free(err);
}

START_TEST(continual_refused)
{
	tf_model m;
	tf_continual c;
	char *path = path_of("continual.safetensors"), *bad = path_of("bad.safetensors");
	char *err = NULL, *file;
	size_t len;

	model(&m, classification, 3, 16, 1);
	state(&c, &m, 1, 5, 1, 2, 3);
	ck_assert_int_eq(tf_continual_save(path, &m, &c, &err), 0);
	ck_assert_int_eq(loom_file_read(path, &file, &len), 0);

	/* truncated anywhere */
	for (size_t cut = 0; cut < len; cut += len / 23 + 1) {
		ck_assert_int_eq(loom_file_write_atomic(bad, file, cut, 0644), 0);
		load_fails(bad, &m, WF, 1, LOOM_ECORRUPT, "");
	}
	ck_assert_int_eq(loom_file_write_atomic(bad, file, len - 1, 0644), 0);
	load_fails(bad, &m, WF, 1, LOOM_ECORRUPT, "");
	/* a header length pointing past the end */
	{
		char *copy = malloc(len);
		memcpy(copy, file, len);
		copy[6] = 0x7f;
		ck_assert_int_eq(loom_file_write_atomic(bad, copy, len, 0644), 0);
		load_fails(bad, &m, WF, 1, LOOM_ECORRUPT, "");
		free(copy);
	}
	/* another run's windows or targets */
	load_fails(path, &m, WF + 1, 1, LOOM_EINVAL,
	           "memory.x holds windows of 24 values, this run's hold 25 (model.context × "
	           "channels)");
	load_fails(path, &m, WF, 2, LOOM_EINVAL, "memory.y holds targets of 1 values, this run's "
	                                         "have 2");
	load_fails("/nonexistent/continual.safetensors", &m, WF, 1, LOOM_ENOENT, "cannot read");

	/* files no writer makes */
	{
		const tf_tensor *bias = tensor(&m, "head.proj.bias");
		float v[WF * 2];
		loom_safetensors_tensor t[64];
		char names[64][96];
		const char *meta = "{\"increments\": []}";

		memset(v, 0, sizeof v);
		memset(t, 0, sizeof t);
		for (int i = 0; i < 64; i++) {
			t[i].dtype = "F32";
			t[i].data = v;
			t[i].name = names[i];
		}
#define ONE(i, nm, nd, d0, d1)                                                                 \
	do {                                                                                   \
		snprintf(names[i], sizeof names[i], "%s", nm);                                  \
		t[i].ndim = nd;                                                                 \
		t[i].dims[0] = d0;                                                              \
		t[i].dims[1] = d1;                                                              \
		t[i].nbytes = (size_t)((d0) * ((nd) > 1 ? (d1) : 1)) * sizeof(float);         \
	} while (0)
		/* no "continual" metadata */
		ONE(0, "memory.x", 2, 1, WF);
		ONE(1, "memory.y", 2, 1, 1);
		write_file(bad, t, 2, NULL);
		load_fails(bad, &m, WF, 1, LOOM_ECORRUPT, "\"continual\" metadata is missing");
		write_file(bad, t, 2, "[1]");
		load_fails(bad, &m, WF, 1, LOOM_ECORRUPT, "\"continual\" metadata is missing");
		/* a bank with x but no y */
		write_file(bad, t, 1, meta);
		load_fails(bad, &m, WF, 1, LOOM_ECORRUPT, "it has memory.x without memory.y");
		/* rows that disagree */
		ONE(1, "memory.y", 2, 2, 1);
		write_file(bad, t, 2, meta);
		load_fails(bad, &m, WF, 1, LOOM_ECORRUPT, "are not F32 [rows, …] tensors of the same "
		                                          "rows");
		ONE(1, "memory.y", 2, 1, 1);
		/* a memory_seen below the bank's rows */
		write_file(bad, t, 2, "{\"memory_seen\": 0}");
		load_fails(bad, &m, WF, 1, LOOM_ECORRUPT, "memory_seen");
		/* an EWC tensor without its partner, or for a tensor the model lacks */
		ONE(2, "ewc.0.fisher.head.proj.bias", 1, 3, 0);
		write_file(bad, t, 3, meta);
		load_fails(bad, &m, WF, 1, LOOM_ECORRUPT, "lacks its fisher or theta partner");
		ONE(3, "ewc.0.theta.head.proj.bias", 1, 3, 0);
		write_file(bad, t, 4, meta);
		{
			tf_continual r;
			ck_assert_msg(tf_continual_load(bad, &m, WF, 1, &r, &err) == 0, "%s", err);
			ck_assert_int_eq(r.n_terms, 1);
			ck_assert_uint_eq(r.mem_seen, 1); /* none stored: the bank's rows */
			/* the tensors the file lacks: F = 0 */
			for (int64_t i = 0; i < m.n_params; i++)
				ck_assert(r.terms[0].fisher[i] == 0);
			tf_continual_free(&r);
		}
		ONE(4, "ewc.0.fisher.head.nothing", 1, 3, 0);
		ONE(5, "ewc.0.theta.head.nothing", 1, 3, 0);
		write_file(bad, t, 6, meta);
		load_fails(bad, &m, WF, 1, LOOM_EINVAL,
		           "an EWC term has tensor \"head.nothing\", which this model does not train");
		/* terms numbered with a gap */
		ONE(4, "ewc.2.fisher.head.proj.bias", 1, 3, 0);
		ONE(5, "ewc.2.theta.head.proj.bias", 1, 3, 0);
		write_file(bad, t, 6, meta);
		load_fails(bad, &m, WF, 1, LOOM_ECORRUPT, "not numbered 0, 1, … without a gap");
		/* malformed names */
		ONE(4, "ewc.01.fisher.head.proj.bias", 1, 3, 0);
		write_file(bad, t, 5, meta);
		load_fails(bad, &m, WF, 1, LOOM_ECORRUPT, "malformed name");
		ONE(4, "ewc.99999999999999999999.fisher.x", 1, 3, 0);
		write_file(bad, t, 5, meta);
		load_fails(bad, &m, WF, 1, LOOM_ECORRUPT, "malformed name");
		ONE(4, "holdout.0.x", 2, 1, WF);
		write_file(bad, t, 5, meta);
		load_fails(bad, &m, WF, 1, LOOM_ECORRUPT, "malformed name");
		/* a holdout without its y, or without its increment */
		ONE(4, "holdout.1.x", 2, 1, WF);
		write_file(bad, t, 5, meta);
		load_fails(bad, &m, WF, 1, LOOM_ECORRUPT, "it has holdout.1.x without holdout.1.y");
		ONE(5, "holdout.1.y", 2, 1, 1);
		write_file(bad, t, 6, meta);
		load_fails(bad, &m, WF, 1, LOOM_ECORRUPT, "a holdout has no increment");
		write_file(bad, t, 6,
		           "{\"increments\": [{\"index\": 1, \"data\": \"/d.csv\", \"rows\": 9}]}");
		{
			tf_continual r;
			ck_assert_msg(tf_continual_load(bad, &m, WF, 1, &r, &err) == 0, "%s", err);
			ck_assert_int_eq(r.n_holdouts, 1);
			ck_assert_str_eq(r.holdouts[0].data, "/d.csv");
			tf_continual_free(&r);
		}
		/* a hostile file: many terms, each a few bytes, would unfold into
		 * n_terms × 2 × n_params floats */
		{
			int k = 2;
			for (int term = 0; term < 31; term++) {
				char nm[96];
				snprintf(nm, sizeof nm, "ewc.%d.fisher.%s", term, bias->name);
				ONE(k, nm, 1, 3, 0);
				k++;
				snprintf(nm, sizeof nm, "ewc.%d.theta.%s", term, bias->name);
				ONE(k, nm, 1, 3, 0);
				k++;
			}
			write_file(bad, t, (size_t)k, meta);
			load_fails(bad, &m, WF, 1, LOOM_ECORRUPT,
			           "it names more EWC terms than it holds data for");
		}
#undef ONE
	}
	free(file);
	tf_continual_free(&c);
	tf_model_free(&m);
	free(path);
	free(bad);
}
END_TEST

/* ------------------------------------------------------------------ the summary */

static void
near(double got, double want, const char *what)
{
	ck_assert_msg(fabs(got - want) <= 1e-12, "%s: got %.17g, want %.17g", what, got, want);
}

START_TEST(summary_hand_computed)
{
	/* R[i][j], after learning i, on the test of j:
	 *        j=1   j=2   j=3
	 *   1   0.80
	 *   2   0.70  0.90
	 *   3   0.60  0.80  0.95
	 * R_before = [null, 0.50, 0.60], baseline = [0.40, 0.45, 0.50].
	 * Accuracy-like (higher is better):
	 *   average    = (0.60 + 0.80 + 0.95) / 3 = 2.35 / 3 = 0.78333…
	 *   forgetting = ((0.80 − 0.60) + (0.90 − 0.80)) / 2 = (0.20 + 0.10) / 2 = 0.15
	 *   bwt        = ((0.60 − 0.80) + (0.80 − 0.90)) / 2 = −0.15
	 *   fwt        = ((0.50 − 0.45) + (0.60 − 0.50)) / 2 = (0.05 + 0.10) / 2 = 0.075
	 * Error-like (the same numbers read as MAE): the average is unchanged; the
	 * others change sign — an error that went from 0.80 to 0.60 is learning,
	 * not forgetting:  forgetting −0.15, bwt 0.15, fwt −0.075. */
	json_t *R = json_pack("[[f], [f, f], [f, f, f]]", 0.80, 0.70, 0.90, 0.60, 0.80, 0.95);
	json_t *before = json_pack("[n, f, f]", 0.50, 0.60);
	json_t *base = json_pack("[f, f, f]", 0.40, 0.45, 0.50);
	tf_cl_summary s;

	tf_cl_summarize(R, before, base, true, &s);
	near(s.average, 2.35 / 3, "average");
	near(s.forgetting, 0.15, "forgetting");
	near(s.bwt, -0.15, "bwt");
	near(s.fwt, 0.075, "fwt");
	tf_cl_summarize(R, before, base, false, &s);
	near(s.average, 2.35 / 3, "average (error)");
	near(s.forgetting, -0.15, "forgetting (error)");
	near(s.bwt, 0.15, "bwt (error)");
	near(s.fwt, -0.075, "fwt (error)");

	/* one increment: only the average */
	{
		json_t *R1 = json_pack("[[f]]", 0.8), *b1 = json_pack("[n]"), *z1 = json_pack("[f]", 0.4);
		tf_cl_summarize(R1, b1, z1, true, &s);
		near(s.average, 0.8, "average of one");
		ck_assert(isnan(s.forgetting) && isnan(s.bwt) && isnan(s.fwt));
		json_decref(R1);
		json_decref(b1);
		json_decref(z1);
	}
	/* no difference reads 0, not −0, in both orientations */
	{
		json_t *R2 = json_pack("[[f], [f, f]]", 0.5, 0.5, 0.7);
		json_t *b2 = json_pack("[n, f]", 0.3), *z2 = json_pack("[f, f]", 0.3, 0.3);
		tf_cl_summarize(R2, b2, z2, false, &s);
		ck_assert(s.forgetting == 0 && !signbit(s.forgetting));
		ck_assert(s.bwt == 0 && !signbit(s.bwt));
		ck_assert(s.fwt == 0 && !signbit(s.fwt));
		json_decref(R2);
		json_decref(b2);
		json_decref(z2);
	}
	/* missing entries: the figures that need them are NAN */
	{
		json_t *b3 = json_pack("[n, n, f]", 0.6);
		tf_cl_summarize(R, b3, base, true, &s);
		ck_assert(isnan(s.fwt));
		near(s.forgetting, 0.15, "forgetting, R_before missing");
		tf_cl_summarize(R, before, NULL, true, &s);
		ck_assert(isnan(s.fwt));
		json_decref(b3);
	}
	{
		json_t *Rs = json_pack("[[f], [f]]", 0.8, 0.7); /* row 2 lacks R[2][2] */
		tf_cl_summarize(Rs, before, base, true, &s);
		ck_assert(isnan(s.average));
		near(s.forgetting, 0.8 - 0.7, "forgetting without R[2][2]"); /* needs R[1][1], R[2][1] */
		near(s.bwt, 0.7 - 0.8, "bwt without R[2][2]");
		json_decref(Rs);
		Rs = json_pack("[[s], [f, f]]", "x", 0.7, 0.9);
		tf_cl_summarize(Rs, before, base, true, &s);
		near(s.average, 0.8, "average with a bad old row");
		ck_assert(isnan(s.forgetting) && isnan(s.bwt));
		json_decref(Rs);
	}
	tf_cl_summarize(NULL, NULL, NULL, true, &s);
	ck_assert(isnan(s.average) && isnan(s.forgetting) && isnan(s.bwt) && isnan(s.fwt));
	json_decref(R);
	json_decref(before);
	json_decref(base);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("compute-transformer continual");
	TCase *files = tcase_create("files"), *summary = tcase_create("summary");

	tcase_add_checked_fixture(files, setup, teardown);
	tcase_set_timeout(files, 60);
	tcase_add_test(files, weights_grown_head);
	tcase_add_test(files, grown_copy_layouts);
	tcase_add_test(files, continual_round_trip);
	tcase_add_test(files, continual_buffers_not_stored);
	tcase_add_test(files, continual_grown_head);
	tcase_add_test(files, continual_refused);
	suite_add_tcase(s, files);
	tcase_add_test(summary, summary_hand_computed);
	suite_add_tcase(s, summary);
	return tu_run(s);
}

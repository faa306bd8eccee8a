/* continual.safetensors and the continual-learning metrics.  See continual.h.
 *
 * Reading is two passes over the decoded file: the first sorts every
 * tensor by its name (memory.*, ewc.<k>.{fisher,theta}.<tensor>,
 * holdout.<j>.{x,y}; other names are left alone, for later additions),
 * checks its dtype, shape and pairing and counts what must be allocated;
 * the second allocates and copies.  Nothing of c is filled before the
 * first pass has passed. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/error.h>
#include <loom/safetensors.h>
#include <loom/util.h>

#include "continual.h"
#include "safetensors-io.h"

#define CONT_FORMAT "loom-continual"

/* ------------------------------------------------------------------ names */

/* Parses "<digits>." at *p (no sign, no leading zero but "0"), at most max;
 * advances *p past the dot.  -1 when it is not one. */
static int64_t
index_of(const char **p, int64_t max)
{
	const char *s = *p;
	int64_t v = 0;

	if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9'))
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (*s - '0');
		if (v > max)
			return -1;
	}
	if (*s != '.')
		return -1;
	*p = s + 1;
	return v;
}

/* What a tensor of the file is. */
enum kind { K_OTHER, K_MEM_X, K_MEM_Y, K_EWC, K_HOLD_X, K_HOLD_Y, K_BAD };

typedef struct parsed {
	enum kind kind;
	int64_t index;          /* k of ewc.<k>, j of holdout.<j> */
	bool fisher;            /* ewc: fisher (else theta) */
	const char *tensor;     /* ewc: the model tensor's name */
} parsed;

static parsed
parse_name(const char *name)
{
	parsed p = {K_OTHER, 0, false, NULL};
	const char *s;

	if (strncmp(name, "memory.", 7) == 0) {
		p.kind = strcmp(name + 7, "x") == 0 ? K_MEM_X : strcmp(name + 7, "y") == 0 ? K_MEM_Y
		                                                                           : K_BAD;
	} else if (strncmp(name, "ewc.", 4) == 0) {
		s = name + 4;
		p.kind = K_BAD;
		if ((p.index = index_of(&s, TF_CONTINUAL_MAX_TERMS - 1)) < 0)
			return p;
		if (strncmp(s, "fisher.", 7) == 0) {
			p.fisher = true;
			p.tensor = s + 7;
		} else if (strncmp(s, "theta.", 6) == 0) {
			p.tensor = s + 6;
		} else {
			return p;
		}
		p.kind = K_EWC;
	} else if (strncmp(name, "holdout.", 8) == 0) {
		s = name + 8;
		p.kind = K_BAD;
		if ((p.index = index_of(&s, TF_CONTINUAL_MAX_HOLDOUTS)) < 1)
			return p;
		p.kind = strcmp(s, "x") == 0 ? K_HOLD_X : strcmp(s, "y") == 0 ? K_HOLD_Y : K_BAD;
	}
	return p;
}

/* Floats per row of a stored [rows, …] tensor (the product of its trailing
 * dimensions), or -1 when it is no such tensor or the product overflows. */
static int64_t
row_floats(const loom_safetensors_tensor *t)
{
	int64_t p = 1;

	if (strcmp(t->dtype, "F32") != 0 || t->ndim < 2)
		return -1;
	for (uint32_t d = 1; d < t->ndim; d++)
		if (__builtin_mul_overflow(p, t->dims[d], &p))
			return -1;
	return p;
}

static float *
copy_floats(const loom_safetensors_tensor *t)
{
	float *v = malloc(t->nbytes ? t->nbytes : 1);

	if (v != NULL && t->nbytes > 0)
		memcpy(v, t->data, t->nbytes);
	return v;
}

/* ------------------------------------------------------------------ loading */

typedef struct reader {
	const char *path;
	const tf_model *m;
	int64_t wf, tl;
	const loom_safetensors *f;
	size_t len;
	char **err;
	const loom_safetensors_tensor *mem_x, *mem_y;
	unsigned char term_seen[TF_CONTINUAL_MAX_TERMS];
	int n_terms;
	int n_holdouts;
} reader;

static int
corrupt(reader *r, const char *why)
{
	*r->err = loom_strfmt("%s is not a valid continual state (%s); it cannot be used — train "
	                      "the init version again, or start without train.init",
	                      r->path, why);
	return LOOM_ECORRUPT;
}

static int
nomem(reader *r)
{
	*r->err = loom_strfmt("out of memory reading the continual state %s", r->path);
	return LOOM_ENOMEM;
}

/* The same dtype and shape. */
static bool
same_shape(const loom_safetensors_tensor *a, const loom_safetensors_tensor *b)
{
	if (a->ndim != b->ndim || strcmp(a->dtype, b->dtype) != 0)
		return false;
	for (uint32_t d = 0; d < a->ndim; d++)
		if (a->dims[d] != b->dims[d])
			return false;
	return true;
}

/* A [rows, …] pair: x rows of wf floats, y rows of tl, the same row count. */
static int
check_rows(reader *r, const char *what, const loom_safetensors_tensor *x,
           const loom_safetensors_tensor *y)
{
	int64_t xf, yf;

	if (x == NULL || y == NULL) {
		*r->err = loom_strfmt("%s is not a valid continual state (it has %s.%s without %s.%s); "
		                      "it cannot be used — train the init version again, or start "
		                      "without train.init",
		                      r->path, what, x ? "x" : "y", what, x ? "y" : "x");
		return LOOM_ECORRUPT;
	}
	if ((xf = row_floats(x)) < 0 || (yf = row_floats(y)) < 0 || x->dims[0] != y->dims[0]) {
		*r->err = loom_strfmt("%s is not a valid continual state (%s.x and %s.y are not F32 "
		                      "[rows, …] tensors of the same rows); it cannot be used — train "
		                      "the init version again, or start without train.init",
		                      r->path, what, what);
		return LOOM_ECORRUPT;
	}
	if (xf != r->wf) {
		*r->err = loom_strfmt("%s: %s.x holds windows of %lld values, this run's hold %lld "
		                      "(model.context × channels): the init version was trained on "
		                      "other channels or another context; use the same data.features "
		                      "and model.context",
		                      r->path, what, (long long)xf, (long long)r->wf);
		return LOOM_EINVAL;
	}
	if (yf != r->tl) {
		*r->err = loom_strfmt("%s: %s.y holds targets of %lld values, this run's have %lld: "
		                      "the init version predicts something else; use the same "
		                      "data.target and model.horizon",
		                      r->path, what, (long long)yf, (long long)r->tl);
		return LOOM_EINVAL;
	}
	return 0;
}

/* First pass: every tensor checked, what to allocate counted. */
static int
survey(reader *r)
{
	size_t n;
	const loom_safetensors_tensor *t = loom_safetensors_tensors(r->f, &n);
	const tf_model *m = r->m;
	int64_t max_term = -1;
	char shown[TF_NAME_MAX + 32], label[32];
	int rv;

	/* the bank first: its shape says most plainly whose file this is */
	r->mem_x = loom_safetensors_find(r->f, "memory.x");
	r->mem_y = loom_safetensors_find(r->f, "memory.y");
	if (r->mem_x != NULL || r->mem_y != NULL)
		if ((rv = check_rows(r, "memory", r->mem_x, r->mem_y)) != 0)
			return rv;
	for (size_t i = 0; i < n; i++) {
		parsed p = parse_name(t[i].name);
		const tf_tensor *tt;
		const loom_safetensors_tensor *other;
		int dim;
		char *pair;

		switch (p.kind) {
		case K_OTHER:
		case K_MEM_X:
		case K_MEM_Y:
			break;
		case K_BAD:
			*r->err = loom_strfmt("%s is not a valid continual state (tensor \"%s\" has a "
			                      "malformed name); it cannot be used — train the init version "
			                      "again, or start without train.init",
			                      r->path, tf_st_shown(t[i].name, shown, sizeof shown));
			return LOOM_ECORRUPT;
		case K_HOLD_X:
		case K_HOLD_Y:
			if (p.kind == K_HOLD_X)
				r->n_holdouts++;
			if (r->n_holdouts > TF_CONTINUAL_MAX_HOLDOUTS)
				return corrupt(r, "too many holdouts");
			pair = loom_strfmt("holdout.%lld.%s", (long long)p.index,
			                   p.kind == K_HOLD_X ? "y" : "x");
			if (pair == NULL)
				return nomem(r);
			other = loom_safetensors_find(r->f, pair);
			free(pair);
			snprintf(label, sizeof label, "holdout.%lld", (long long)p.index);
			if ((rv = check_rows(r, label, p.kind == K_HOLD_X ? &t[i] : other,
			                     p.kind == K_HOLD_X ? other : &t[i])) != 0)
				return rv;
			break;
		case K_EWC:
			tt = tf_model_tensor(m, p.tensor);
			if (tt == NULL || (tt->flags & TF_BUFFER)) {
				*r->err = loom_strfmt("%s: an EWC term has tensor \"%s\", which this model "
				                      "does not train: the init version is another kind of "
				                      "model; train.init must name a version of the same "
				                      "architecture",
				                      r->path, tf_st_shown(p.tensor, shown, sizeof shown));
				return LOOM_EINVAL;
			}
			if (tf_st_fit(tt, &t[i], &dim) < 0) {
				*r->err = loom_strfmt("%s: EWC tensor \"%s\" has another dtype or shape than "
				                      "the model's \"%s\"; train.init must name a version of "
				                      "the same architecture",
				                      r->path, tf_st_shown(t[i].name, shown, sizeof shown),
				                      tt->name);
				return LOOM_EINVAL;
			}
			pair = loom_strfmt("ewc.%lld.%s.%s", (long long)p.index,
			                   p.fisher ? "theta" : "fisher", tt->name);
			if (pair == NULL)
				return nomem(r);
			other = loom_safetensors_find(r->f, pair);
			free(pair);
			if (other == NULL || !same_shape(other, &t[i]))
				return corrupt(r, "an EWC tensor lacks its fisher or theta partner, or they "
				                  "differ in shape");
			r->term_seen[p.index] = 1;
			max_term = p.index > max_term ? p.index : max_term;
			break;
		}
	}
	r->n_terms = (int)(max_term + 1);
	for (int k = 0; k < r->n_terms; k++)
		if (!r->term_seen[k])
			return corrupt(r, "its EWC terms are not numbered 0, 1, … without a gap");
	/* A term unfolds to two copies of the parameters; a file claiming many
	 * terms must also hold their bytes (a hostile file must not make the
	 * reader allocate far more than it holds). */
	if ((double)r->n_terms * (double)m->n_params * 8.0 >
	    2.0 * (double)r->len + 8.0 * (double)m->n_params)
		return corrupt(r, "it names more EWC terms than it holds data for");
	return 0;
}

static int
holdout_cmp(const void *a, const void *b)
{
	int64_t x = ((const tf_holdout *)a)->index, y = ((const tf_holdout *)b)->index;
	return (x > y) - (x < y);
}

/* The increments entry of index j in meta, or NULL. */
static json_t *
increment_of(json_t *meta, int64_t j)
{
	json_t *e, *incs = json_object_get(meta, "increments");
	size_t i;

	json_array_foreach(incs, i, e)
		if (json_integer_value(json_object_get(e, "index")) == j)
			return e;
	return NULL;
}

/* Second pass: allocate and copy (only ENOMEM can fail now). */
static int
fill(reader *r, tf_continual *c)
{
	size_t n;
	const loom_safetensors_tensor *t = loom_safetensors_tensors(r->f, &n);
	const tf_model *m = r->m;
	int h = 0;

	if (r->mem_x != NULL) {
		c->mem_n = r->mem_x->dims[0];
		if ((c->mem_x = copy_floats(r->mem_x)) == NULL ||
		    (c->mem_y = copy_floats(r->mem_y)) == NULL)
			return LOOM_ENOMEM;
	}
	if (r->n_terms > 0) {
		if ((c->terms = calloc((size_t)r->n_terms, sizeof *c->terms)) == NULL)
			return LOOM_ENOMEM;
		c->n_terms = r->n_terms;
		for (int k = 0; k < r->n_terms; k++)
			if ((c->terms[k].fisher = calloc((size_t)m->n_params, sizeof(float))) == NULL ||
			    (c->terms[k].theta = calloc((size_t)m->n_params, sizeof(float))) == NULL)
				return LOOM_ENOMEM;
	}
	if (r->n_holdouts > 0) {
		if ((c->holdouts = calloc((size_t)r->n_holdouts, sizeof *c->holdouts)) == NULL)
			return LOOM_ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		parsed p = parse_name(t[i].name);
		if (p.kind == K_EWC) {
			const tf_tensor *tt = tf_model_tensor(m, p.tensor);
			tf_ewc_term *term = &c->terms[p.index];
			int dim = 0, fit = tf_st_fit(tt, &t[i], &dim);
			/* a grown head's new rows stay F = 0, θ = 0 (calloc) */
			tf_st_copy((p.fisher ? term->fisher : term->theta) + tt->offset, tt, &t[i], fit,
			           dim);
		} else if (p.kind == K_HOLD_X) {
			char name[48];
			tf_holdout *ho = &c->holdouts[h++];
			json_t *inc = increment_of(c->meta, p.index);
			snprintf(name, sizeof name, "holdout.%lld.y", (long long)p.index);
			ho->index = p.index;
			ho->n = t[i].dims[0];
			ho->rows = json_integer_value(json_object_get(inc, "rows"));
			if ((ho->data = strdup(json_string_value(json_object_get(inc, "data")))) ==
			        NULL ||
			    (ho->x = copy_floats(&t[i])) == NULL ||
			    (ho->y = copy_floats(loom_safetensors_find(r->f, name))) == NULL)
				return LOOM_ENOMEM;
			c->n_holdouts = h;
		}
	}
	if (c->n_holdouts > 1)
		qsort(c->holdouts, (size_t)c->n_holdouts, sizeof *c->holdouts, holdout_cmp);
	return 0;
}

int
tf_continual_load(const char *path, const tf_model *m, int64_t window_floats,
                  int64_t target_len, tf_continual *c, char **err)
{
	char *file = NULL;
	size_t len = 0, n;
	loom_safetensors *f = NULL;
	const loom_safetensors_tensor *t;
	const char *text, *fmt;
	json_t *meta = NULL, *seen;
	reader *r = NULL;
	int rv;

	memset(c, 0, sizeof *c);
	if ((rv = tf_st_read(path, &file, &len, &f, err)) != 0)
		return rv;
	if ((r = calloc(1, sizeof *r)) == NULL) {
		*err = loom_strfmt("out of memory reading the continual state %s", path);
		rv = LOOM_ENOMEM;
		goto out;
	}
	r->path = path;
	r->m = m;
	r->wf = window_floats;
	r->tl = target_len;
	r->f = f;
	r->len = len;
	r->err = err;
	fmt = loom_safetensors_meta_get(f, "format");
	text = loom_safetensors_meta_get(f, "continual");
	if ((fmt != NULL && strcmp(fmt, CONT_FORMAT) != 0) || text == NULL ||
	    (meta = json_loads(text, JSON_REJECT_DUPLICATES, NULL)) == NULL ||
	    !json_is_object(meta)) {
		rv = corrupt(r, "its \"continual\" metadata is missing or not a JSON object");
		goto out;
	}
	if ((rv = survey(r)) != 0)
		goto out;
	/* every holdout has its increment's data path and rows */
	t = loom_safetensors_tensors(f, &n);
	for (size_t i = 0; i < n; i++) {
		parsed p = parse_name(t[i].name);
		json_t *inc;
		if (p.kind != K_HOLD_X)
			continue;
		inc = increment_of(meta, p.index);
		if (!json_is_string(json_object_get(inc, "data")) ||
		    !json_is_integer(json_object_get(inc, "rows")) ||
		    json_integer_value(json_object_get(inc, "rows")) < 0) {
			rv = corrupt(r, "a holdout has no increment with its data path and rows in the "
			                "metadata");
			goto out;
		}
	}
	seen = json_object_get(meta, "memory_seen");
	if (seen != NULL && (!json_is_integer(seen) || json_integer_value(seen) < 0 ||
	                     (r->mem_x != NULL && json_integer_value(seen) < r->mem_x->dims[0]))) {
		rv = corrupt(r, "its memory_seen is not a count of at least the bank's rows");
		goto out;
	}
	/* checked: fill c */
	c->window_floats = window_floats;
	c->target_len = target_len;
	c->meta = meta;
	meta = NULL;
	if ((rv = fill(r, c)) != 0) {
		tf_continual_free(c);
		*err = loom_strfmt("out of memory reading the continual state %s", path);
		goto out;
	}
	c->mem_seen = seen != NULL ? (uint64_t)json_integer_value(seen) : (uint64_t)c->mem_n;
out:
	json_decref(meta);
	free(r);
	loom_safetensors_free(f);
	free(file);
	return rv;
}

/* ------------------------------------------------------------------ saving */

static int
invalid(char **err, const char *path, const char *why)
{
	*err = loom_strfmt("cannot write the continual state %s: %s (a bug in the caller)", path,
	                   why);
	return LOOM_EINVAL;
}

static int
check_save(const char *path, const tf_continual *c, char **err)
{
	if (c->window_floats <= 0 || c->target_len <= 0)
		return invalid(err, path, "window_floats and target_len must be at least 1");
	if (c->meta != NULL && !json_is_object(c->meta))
		return invalid(err, path, "the metadata is not a JSON object");
	if (c->mem_n < 0 || (c->mem_n > 0 && (c->mem_x == NULL || c->mem_y == NULL)))
		return invalid(err, path, "the replay bank's rows have no data");
	if (c->n_terms < 0 || c->n_terms > TF_CONTINUAL_MAX_TERMS ||
	    (c->n_terms > 0 && c->terms == NULL))
		return invalid(err, path, "the EWC terms are out of range");
	for (int k = 0; k < c->n_terms; k++)
		if (c->terms[k].fisher == NULL || c->terms[k].theta == NULL)
			return invalid(err, path, "an EWC term has no data");
	if (c->n_holdouts < 0 || c->n_holdouts > TF_CONTINUAL_MAX_HOLDOUTS ||
	    (c->n_holdouts > 0 && c->holdouts == NULL))
		return invalid(err, path, "the holdouts are out of range");
	for (int j = 0; j < c->n_holdouts; j++) {
		const tf_holdout *h = &c->holdouts[j];
		if (h->index < 1 || h->index > TF_CONTINUAL_MAX_HOLDOUTS || h->n < 0 || h->rows < 0 ||
		    (h->n > 0 && (h->x == NULL || h->y == NULL)))
			return invalid(err, path, "a holdout has no data or an index out of range");
		for (int i = 0; i < j; i++)
			if (c->holdouts[i].index == h->index)
				return invalid(err, path, "two holdouts have the same index");
	}
	return 0;
}

/* One [rows, width] tensor entry; windows (inputs) as [rows, context,
 * channels] when width is the model's context · channels. */
static void
rows_entry(loom_safetensors_tensor *e, const char *name, const float *data, int64_t rows,
           int64_t width, const tf_model *m, bool windows)
{
	static const float none[1];

	e->name = name;
	e->dtype = "F32";
	e->dims[0] = rows;
	if (windows && m->cfg.context * m->cfg.channels == width) {
		e->ndim = 3;
		e->dims[1] = m->cfg.context;
		e->dims[2] = m->cfg.channels;
	} else {
		e->ndim = 2;
		e->dims[1] = width;
	}
	e->data = rows > 0 ? (const void *)data : (const void *)none;
	e->nbytes = (size_t)(rows * width) * sizeof(float);
}

/* The stored metadata: c->meta with memory_seen, and every holdout's
 * increment entry (added when missing) carrying its data, rows and
 * test_windows. */
static json_t *
save_meta(const tf_continual *c)
{
	json_t *meta = c->meta ? json_deep_copy(c->meta) : json_object(), *incs;

	if (meta == NULL || !json_is_object(meta)) {
		json_decref(meta);
		return NULL;
	}
	json_object_set_new(meta, "memory_seen", json_integer((json_int_t)c->mem_seen));
	if (!json_is_array(incs = json_object_get(meta, "increments"))) {
		incs = json_array();
		json_object_set_new(meta, "increments", incs);
	}
	for (int j = 0; j < c->n_holdouts; j++) {
		const tf_holdout *h = &c->holdouts[j];
		json_t *e = increment_of(meta, h->index);
		if (e == NULL || !json_is_object(e)) {
			e = json_object();
			json_object_set_new(e, "index", json_integer(h->index));
			json_array_append_new(incs, e);
		}
		json_object_set_new(e, "data", json_string(h->data ? h->data : ""));
		json_object_set_new(e, "test_windows", json_integer(h->n));
		json_object_set_new(e, "rows", json_integer(h->rows));
	}
	return meta;
}

int
tf_continual_save(const char *path, const tf_model *m, const tf_continual *c, char **err)
{
	int trainable = 0, rv;
	size_t cap, k = 0;
	loom_safetensors_tensor *t = NULL;
	char **names = NULL, *text = NULL, seen[32];
	json_t *meta = NULL, *file_meta = NULL;

	if ((rv = check_save(path, c, err)) != 0)
		return rv;
	for (int i = 0; i < m->n_tensors; i++)
		trainable += !(m->tensors[i].flags & TF_BUFFER);
	cap = 2 + (size_t)c->n_terms * 2 * (size_t)trainable + 2 * (size_t)c->n_holdouts;
	if ((t = calloc(cap, sizeof *t)) == NULL || (names = calloc(cap, sizeof *names)) == NULL ||
	    (meta = save_meta(c)) == NULL ||
	    (text = json_dumps(meta, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL) {
		rv = LOOM_ENOMEM;
		goto nomem;
	}
	rows_entry(&t[k++], "memory.x", c->mem_x, c->mem_n, c->window_floats, m, true);
	rows_entry(&t[k++], "memory.y", c->mem_y, c->mem_n, c->target_len, m, false);
	for (int term = 0; term < c->n_terms; term++)
		for (int pass = 0; pass < 2; pass++)
			for (int i = 0; i < m->n_tensors; i++) {
				const tf_tensor *tt = &m->tensors[i];
				const float *base = pass == 0 ? c->terms[term].fisher : c->terms[term].theta;
				if (tt->flags & TF_BUFFER)
					continue;
				if ((names[k] = loom_strfmt("ewc.%d.%s.%s", term,
				                            pass == 0 ? "fisher" : "theta", tt->name)) ==
				    NULL) {
					rv = LOOM_ENOMEM;
					goto nomem;
				}
				tf_st_entry(&t[k], names[k], tt, base);
				k++;
			}
	for (int j = 0; j < c->n_holdouts; j++) {
		const tf_holdout *h = &c->holdouts[j];
		if ((names[k] = loom_strfmt("holdout.%lld.x", (long long)h->index)) == NULL ||
		    (names[k + 1] = loom_strfmt("holdout.%lld.y", (long long)h->index)) == NULL) {
			rv = LOOM_ENOMEM;
			goto nomem;
		}
		rows_entry(&t[k], names[k], h->x, h->n, c->window_floats, m, true);
		rows_entry(&t[k + 1], names[k + 1], h->y, h->n, c->target_len, m, false);
		k += 2;
	}
	snprintf(seen, sizeof seen, "%llu", (unsigned long long)c->mem_seen);
	if ((file_meta = json_pack("{s:s, s:s, s:s}", "format", CONT_FORMAT, "continual", text,
	                           "memory_seen", seen)) == NULL) {
		rv = LOOM_ENOMEM;
		goto nomem;
	}
	rv = tf_st_write(path, "the continual state", t, k, file_meta, err);
	goto out;
nomem:
	*err = loom_strfmt("out of memory writing the continual state %s", path);
out:
	for (size_t i = 0; names != NULL && i < cap; i++)
		free(names[i]);
	free(names);
	free(t);
	free(text);
	json_decref(meta);
	json_decref(file_meta);
	return rv;
}

void
tf_continual_free(tf_continual *c)
{
	if (c == NULL)
		return;
	free(c->mem_x);
	free(c->mem_y);
	for (int k = 0; c->terms != NULL && k < c->n_terms; k++) {
		free(c->terms[k].fisher);
		free(c->terms[k].theta);
	}
	free(c->terms);
	for (int j = 0; c->holdouts != NULL && j < c->n_holdouts; j++) {
		free(c->holdouts[j].data);
		free(c->holdouts[j].x);
		free(c->holdouts[j].y);
	}
	free(c->holdouts);
	json_decref(c->meta);
	memset(c, 0, sizeof *c);
}

/* ------------------------------------------------------------------ metrics */

/* R[i][j] (or a[i] when j < 0) as a number, NAN when it is not one. */
static double
at(const json_t *a, size_t i, long j)
{
	const json_t *v = json_array_get(a, i);

	if (j >= 0)
		v = json_array_get(v, (size_t)j);
	return json_is_number(v) ? json_number_value(v) : NAN;
}

void
tf_cl_summarize(const json_t *R, const json_t *R_before, const json_t *baseline, bool higher,
                tf_cl_summary *out)
{
	size_t T = json_is_array(R) ? json_array_size(R) : 0;
	double sign = higher ? 1.0 : -1.0, sum = 0, diff = 0, fwt = 0;

	out->average = out->forgetting = out->bwt = out->fwt = NAN;
	if (T == 0)
		return;
	/* NAN propagates through the sums: a missing entry makes its figure NAN */
	for (size_t j = 0; j < T; j++)
		sum += at(R, T - 1, (long)j);
	out->average = sum / (double)T;
	if (T < 2)
		return;
	for (size_t j = 0; j + 1 < T; j++)
		diff += at(R, T - 1, (long)j) - at(R, j, (long)j);
	/* + 0.0: a difference of 0 reads 0, not −0, once the sign is applied */
	out->bwt = sign * diff / (double)(T - 1) + 0.0;
	out->forgetting = -sign * diff / (double)(T - 1) + 0.0;
	for (size_t j = 1; j < T; j++)
		fwt += at(R_before, j, -1) - at(baseline, j, -1);
	out->fwt = sign * fwt / (double)(T - 1) + 0.0;
}

/* Incremental runs and the continual-learning evaluation.  See
 * incremental.h and docs/incremental.md. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <loom/compute.h>
#include <loom/head.h>
#include <loom/safetensors.h>
#include <loom/sampler.h>
#include <loom/util.h>

#include "checkpoint.h"
#include "continual.h"
#include "incremental.h"
#include "run.h"

#define STREAM_REPLAY 0x4e91ULL /* + step: the bank windows of a step */

/* ------------------------------------------------------------------ names */

static void
strv_free(char **v)
{
	for (char **p = v; p && *p; p++)
		free(*p);
	free(v);
}

static size_t
strv_len(char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

/* The strings of a JSON array (NULL-terminated), or NULL when it is not
 * one of strings. */
static char **
strv_json(const json_t *a)
{
	size_t i;
	json_t *v;
	char **out;

	if (!json_is_array(a) || (out = calloc(json_array_size(a) + 1, sizeof *out)) == NULL)
		return NULL;
	json_array_foreach(a, i, v) {
		if (!json_is_string(v) || (out[i] = strdup(json_string_value(v))) == NULL) {
			strv_free(out);
			return NULL;
		}
	}
	return out;
}

static char *
strv_text(char *const *v, size_t n)
{
	size_t len = 3;
	char *s;
	for (size_t i = 0; i < n; i++)
		len += strlen(v[i]) + 4;
	if ((s = malloc(len)) == NULL)
		return NULL;
	strcpy(s, "[");
	for (size_t i = 0; i < n; i++) {
		strcat(s, i ? ", " : "");
		strcat(s, v[i]);
	}
	strcat(s, "]");
	return s;
}

/* Do two name lists agree?  When not, *err says how, naming key. */
static bool
same_names(const char *key, char *const *want, char *const *have, size_t n_have, char **err)
{
	size_t n_want = strv_len(want);
	bool same = n_want == n_have;
	for (size_t i = 0; same && i < n_have; i++)
		same = strcmp(want[i], have[i]) == 0;
	if (!same) {
		char *a = strv_text(want, n_want), *b = strv_text(have, n_have);
		*err = loom_strfmt("%s: the version this run starts from (train.init) was trained on "
		                   "%s, this run names %s; an incremental run keeps the channels of "
		                   "the model it continues (leave %s out to take them)",
		                   key, a ? a : "?", b ? b : "?", key);
		free(a);
		free(b);
	}
	return same;
}

/* ------------------------------------------------------------------ prepare */

/* The metadata of a weights file (spec, data, model, head) as one object. */
static int
weights_info(const char *path, json_t **out, char **err)
{
	static const char *const keys[] = {"spec", "data", "model", "head", NULL};
	char *buf = NULL, *derr = NULL;
	size_t len = 0;
	loom_safetensors *f = NULL;
	int rv;

	*out = NULL;
	if (loom_file_read(path, &buf, &len) != 0) {
		rv = errno;
		*err = loom_strfmt("train.init.model_dir: cannot read %s: %s; name a registered "
		                   "version (or a completed training run's output directory)",
		                   path, strerror(rv));
		return LOOM_EINVAL;
	}
	if ((rv = loom_safetensors_decode(buf, len, path, &f, &derr)) != 0) {
		*err = loom_strfmt("train.init.model_dir: %s", derr ? derr : "not a weights file");
		free(derr);
		free(buf);
		return LOOM_EINVAL;
	}
	*out = json_object();
	for (int i = 0; keys[i]; i++) {
		const char *text = loom_safetensors_meta_get(f, keys[i]);
		json_t *v = text ? json_loads(text, 0, NULL) : NULL;
		if (v == NULL && text)
			v = json_string(text);
		if (v)
			json_object_set_new(*out, keys[i], v);
	}
	loom_safetensors_free(f);
	free(buf);
	return 0;
}

/* The model settings an incremental run must share with its init. */
static int
check_model(const run *r, const json_t *spec, char **err)
{
	static const char *const keys[] = {"head", "context", "patch", "d_model", "heads",
	                                   "layers", "ffn", "channel_independent", "revin",
	                                   "positions", "residual", "horizon", NULL};
	const json_t *old = json_object_get(spec, "model"), *now = json_object_get(r->spec.doc,
	                                                                             "model");
	for (int i = 0; keys[i]; i++) {
		const json_t *a = json_object_get(old, keys[i]), *b = json_object_get(now, keys[i]);
		char *ta, *tb;
		if (strcmp(keys[i], "horizon") == 0 && r->spec.task != TF_TASK_FORECAST)
			continue;
		if (json_equal(a, b))
			continue;
		ta = a ? json_dumps(a, JSON_ENCODE_ANY) : strdup("(not set)");
		tb = b ? json_dumps(b, JSON_ENCODE_ANY) : strdup("(not set)");
		*err = loom_strfmt("model.%s: the version this run starts from (train.init) has %s, "
		                   "this run %s; an incremental run keeps the model's shape (set "
		                   "model.%s = %s)",
		                   keys[i], ta ? ta : "?", tb ? tb : "?", keys[i], ta ? ta : "?");
		free(ta);
		free(tb);
		return LOOM_EINVAL;
	}
	return 0;
}

static int
doubles(const json_t *a, int64_t n, double *out)
{
	if (!json_is_array(a) || (int64_t)json_array_size(a) != n)
		return -1;
	for (int64_t i = 0; i < n; i++) {
		const json_t *v = json_array_get(a, (size_t)i);
		if (!json_is_number(v))
			return -1;
		out[i] = json_number_value(v);
	}
	return 0;
}

int
tf_incr_prepare(run *r, char **err)
{
	tf_incr *ic = &r->incr;
	tf_spec *s = &r->spec;
	const json_t *data, *model;
	char *path;
	size_t n_in, n_out;
	int rv;

	/* the bank's sampler, named in the spec: heard of now, not after the
	 * whole run */
	if (s->incremental && s->replay_memory > 0) {
		const void *ops;
		void *ctx;
		if (r->host->instance_ops(r->ins, s->replay_sampler, LOOM_KIND_SAMPLER, &ops, &ctx) !=
		    0) {
			*err = loom_strfmt("incremental.replay.sampler: no sampler instance \"%s\"; add { "
			                   "instance = \"%s\"; module = \"sampler-reservoir\"; } to the "
			                   "plugins of loomd.conf, or set incremental.replay.memory = 0",
			                   s->replay_sampler, s->replay_sampler);
			return LOOM_EINVAL;
		}
	}
	if (s->init_dir == NULL && s->init_model == NULL)
		return 0;
	if (s->init_dir == NULL || s->init_dir[0] == '\0') {
		*err = strdup("train.init.model_dir: not set: submit the task through loomd, which "
		              "resolves train.init.model to its version's directory, or (loom-worker "
		              "alone) name a training run's output directory");
		return LOOM_EINVAL;
	}
	ic->on = true;
	path = loom_strfmt("%s/best.safetensors", s->init_dir);
	rv = weights_info(path, &ic->init_info, err);
	free(path);
	if (rv != 0)
		return rv;
	data = json_object_get(ic->init_info, "data");
	model = json_object_get(ic->init_info, "model");
	if (!json_is_object(data) || !json_is_object(json_object_get(ic->init_info, "spec"))) {
		*err = loom_strfmt("train.init.model_dir: %s/best.safetensors does not describe its "
		                   "data and spec (written by another program?); start from a "
		                   "version Loom trained",
		                   s->init_dir);
		return LOOM_EINVAL;
	}
	{
		const char *form = json_string_value(json_object_get(model, "form"));
		const char *want = s->kind == TF_KIND_LINEAR ? "linear" : "transformer";
		if (form && strcmp(form, want) != 0) {
			*err = loom_strfmt("model.kind: the version this run starts from (train.init) is "
			                   "a %s model (%s), so it cannot go on training as a %s; start "
			                   "from a version whose model is a %s, or train from scratch",
			                   form,
			                   json_string_value(json_object_get(model, "kind"))
			                       ? json_string_value(json_object_get(model, "kind"))
			                       : form,
			                   want, want);
			return LOOM_EINVAL;
		}
	}
	if ((rv = check_model(r, json_object_get(ic->init_info, "spec"), err)) != 0)
		return rv;

	ic->features = strv_json(json_object_get(data, "inputs"));
	ic->targets = strv_json(json_object_get(data, "targets"));
	if (ic->features == NULL || ic->targets == NULL) {
		*err = loom_strfmt("train.init.model_dir: %s/best.safetensors lists no input "
		                   "channels; start from a version Loom trained",
		                   s->init_dir);
		return LOOM_EINVAL;
	}
	n_in = strv_len(ic->features);
	n_out = strv_len(ic->targets);
	/* the channels: the init's, in its order */
	if (s->n_features > 0 && !same_names("data.features", ic->features, s->features,
	                                     s->n_features, err))
		return LOOM_EINVAL;
	if (s->task != TF_TASK_ANOMALY && s->n_targets > 0 &&
	    !same_names("data.target", ic->targets, s->targets, s->n_targets, err))
		return LOOM_EINVAL;
	s->data.features = (const char *const *)ic->features;
	s->data.n_features = n_in;
	if (s->task != TF_TASK_ANOMALY || s->n_targets > 0) {
		s->data.targets = (const char *const *)ic->targets;
		s->data.n_targets = n_out;
	}
	/* the normalization: the init's statistics, not refitted */
	if ((ic->norm = calloc(2 * (n_in + n_out) + 1, sizeof *ic->norm)) == NULL)
		return LOOM_ENOMEM;
	if (doubles(json_object_get(data, "input_shift"), (int64_t)n_in, ic->norm) != 0 ||
	    doubles(json_object_get(data, "input_scale"), (int64_t)n_in, ic->norm + n_in) != 0 ||
	    doubles(json_object_get(data, "target_shift"), (int64_t)n_out,
	            ic->norm + 2 * n_in) != 0 ||
	    doubles(json_object_get(data, "target_scale"), (int64_t)n_out,
	            ic->norm + 2 * n_in + n_out) != 0) {
		*err = loom_strfmt("train.init.model_dir: %s/best.safetensors has no normalization "
		                   "for its %zu inputs and %zu targets; start from a version Loom "
		                   "trained",
		                   s->init_dir, n_in, n_out);
		return LOOM_EINVAL;
	}
	s->data.in_shift = ic->norm;
	s->data.in_scale = ic->norm + n_in;
	s->data.out_shift = ic->norm + 2 * n_in;
	s->data.out_scale = ic->norm + 2 * n_in + n_out;
	if (s->task == TF_TASK_CLASSIFICATION) {
		ic->classes = strv_json(json_object_get(data, "classes"));
		if (ic->classes == NULL) {
			*err = loom_strfmt("train.init.model_dir: %s/best.safetensors is a classifier "
			                   "without its classes; start from a version Loom trained",
			                   s->init_dir);
			return LOOM_EINVAL;
		}
		ic->init_classes = (int64_t)strv_len(ic->classes);
		s->data.classes = (const char *const *)ic->classes;
		s->data.n_classes = (size_t)ic->init_classes;
	}
	if (s->replay_ratio > 0)
		ic->mem_per_batch = (int64_t)ceil((double)s->batch * s->replay_ratio);
	return 0;
}

int
tf_incr_check_data(run *r, char **err)
{
	tf_incr *ic = &r->incr;
	const tf_dataset *ds = &r->ds;

	if (!ic->on)
		return 0;
	if (!same_names("data.features", ic->features, ds->in_names, (size_t)ds->n_in, err) ||
	    (r->spec.task != TF_TASK_ANOMALY &&
	     !same_names("data.target", ic->targets, ds->out_names, (size_t)ds->n_out, err)))
		return LOOM_EINVAL;
	if (ds->n_new_classes > 0) {
		char *names = strv_text(ds->class_names + ic->init_classes, (size_t)ds->n_new_classes);
		say(r, LOOM_LOG_INFO, "classes new in this increment: %s (the head grows by %d)",
		    names ? names : "?", ds->n_new_classes);
		free(names);
	}
	return 0;
}

/* ------------------------------------------------------------------ windows */

/* Windows given as arrays (the bank, the holdouts): loss and head metrics
 * of model m into obj, as evaluate() gives them for a split.  The truth in
 * original units comes from the normalized targets and the run's
 * normalization (the init's, the same for every increment). */
static int64_t
array_units(run *r, tf_model *m, int64_t n)
{
	const tf_spec *sp = &r->spec;
	const tf_dataset *ds = &r->ds;
	int64_t rd = m->head.result_dim, K = ds->n_out;

	tf_model_results(m, r->by, r->res);
	switch (sp->task) {
	case TF_TASK_FORECAST: {
		int64_t H = sp->horizon, C = ds->n_in;
		if (sp->channel_independent) {
			float *out = r->truth;
			for (int64_t b = 0; b < n; b++)
				for (int64_t k = 0; k < K; k++)
					for (int64_t h = 0; h < H; h++)
						out[(b * K + k) * H + h] =
							r->res[(b * C + r->target_in[k]) * H + h];
			memcpy(r->res, out, (size_t)(n * K * H) * sizeof *r->res);
			for (int64_t b = 0; b < n; b++)
				for (int64_t k = 0; k < K; k++)
					for (int64_t h = 0; h < H; h++) {
						float *v = &r->res[(b * K + k) * H + h];
						float y = r->by[(b * C + r->target_in[k]) * H + h];
						*v = (float)(*v * ds->out_scale[k] + ds->out_shift[k]);
						r->truth[(b * K + k) * H + h] =
							(float)(y * ds->out_scale[k] + ds->out_shift[k]);
					}
			return n * K;
		}
		for (int64_t b = 0; b < n; b++)
			for (int64_t j = 0; j < H * K; j++) {
				int64_t k = j % K;
				float *v = &r->res[b * rd + j];
				*v = (float)(*v * ds->out_scale[k] + ds->out_shift[k]);
				r->truth[b * rd + j] =
					(float)(r->by[b * H * K + j] * ds->out_scale[k] + ds->out_shift[k]);
			}
		return n;
	}
	case TF_TASK_REGRESSION:
		for (int64_t b = 0; b < n; b++)
			for (int64_t k = 0; k < K; k++) {
				float *v = &r->res[b * rd + k];
				*v = (float)(*v * ds->out_scale[k] + ds->out_shift[k]);
				r->truth[b * K + k] =
					(float)(r->by[b * K + k] * ds->out_scale[k] + ds->out_shift[k]);
			}
		return n;
	case TF_TASK_CLASSIFICATION:
		for (int64_t b = 0; b < n; b++)
			r->truth[b] = r->by[b];
		return n;
	default:
		for (int64_t b = 0; b < n; b++)
			r->truth[b] = NAN; /* a holdout keeps no anomaly labels */
		return n;
	}
}

static int
evaluate_windows(run *r, tf_model *m, const float *x, const float *y, int64_t n, json_t *obj)
{
	int64_t B = r->batch, wf = r->spec.context * r->ds.n_in;
	double loss_sum = 0;
	void *state = NULL;
	collect c = {obj, ""};
	int rv;

	if ((rv = r->head->metrics_new(r->head_ctx, &state)) != 0)
		return rv;
	for (int64_t at = 0; at < n; at += B) {
		int64_t k = n - at < B ? n - at : B, seqs;
		double loss;
		memcpy(r->bx, x + at * wf, (size_t)(k * wf) * sizeof *r->bx);
		memcpy(r->by, y + at * r->target_len, (size_t)(k * r->target_len) * sizeof *r->by);
		if ((rv = tf_model_forward(m, r->bx, k, false, 0)) != 0 ||
		    (rv = tf_model_loss(m, r->by, &loss)) != 0)
			goto out;
		loss_sum += loss * (double)k;
		seqs = array_units(r, m, k);
		if ((rv = r->head->metrics_add(r->head_ctx, state, r->res, r->truth, (uint32_t)seqs)) !=
		    0)
			goto out;
	}
	collect_metric(&c, "loss", n ? loss_sum / (double)n : NAN);
	rv = r->head->metrics_report(r->head_ctx, state, collect_metric, &c);
out:
	r->head->metrics_free(r->head_ctx, state);
	return rv;
}

/* The test windows an increment keeps as its holdout: all of them up to
 * this many, else this many evenly spaced (a long hourly series would
 * otherwise store gigabytes with every version). */
#define HOLDOUT_MAX_WINDOWS 2048

/* The windows of split s of this run's data as arrays (x, y): every one,
 * or (more than HOLDOUT_MAX_WINDOWS) every step-th from the first. */
static int
split_windows(run *r, int s, float **x, float **y, int64_t *n)
{
	int64_t N = r->ds.n_windows[s], wf = r->spec.context * r->ds.n_in, B = r->batch;
	int64_t step = (N + HOLDOUT_MAX_WINDOWS - 1) / HOLDOUT_MAX_WINDOWS, K;

	if (step < 1)
		step = 1;
	K = (N + step - 1) / step;
	*n = K;
	*x = malloc((size_t)(K * wf + 1) * sizeof **x);
	*y = malloc((size_t)(K * r->target_len + 1) * sizeof **y);
	if (*x == NULL || *y == NULL)
		return LOOM_ENOMEM;
	for (int64_t at = 0; at < K; at += B) {
		int64_t k = K - at < B ? K - at : B;
		for (int64_t i = 0; i < k; i++)
			r->idx[i] = (at + i) * step;
		gather(r, s, r->idx, k);
		memcpy(*x + at * wf, r->bx, (size_t)(k * wf) * sizeof **x);
		memcpy(*y + at * r->target_len, r->by, (size_t)(k * r->target_len) * sizeof **y);
	}
	return 0;
}

/* The metric R is made of: accuracy, MAE, or (anomaly) the loss. */
static const char *
r_metric(const run *r)
{
	switch (r->spec.task) {
	case TF_TASK_CLASSIFICATION: return "accuracy";
	case TF_TASK_FORECAST:
	case TF_TASK_REGRESSION: return "mae";
	default: return "loss";
	}
}

static json_t *
number_or_null(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

/* Every holdout of the init (increments 1 … i−1) and this run's test split
 * (increment i), concatenated: the shared holdout.  *bounds[j] is where
 * holdout j starts (j = 0 … count), so that bounds[count] = windows. */
typedef struct shared_holdout {
	float *x, *y;
	int64_t n;
	int count;
	int64_t *bounds;
} shared_holdout;

static void
shared_free(shared_holdout *h)
{
	free(h->x);
	free(h->y);
	free(h->bounds);
	memset(h, 0, sizeof *h);
}

static int
shared_build(run *r, shared_holdout *h)
{
	const tf_continual *c = &r->incr.cont;
	int64_t wf = r->spec.context * r->ds.n_in, tl = r->target_len, n_new, at = 0;
	float *nx = NULL, *ny = NULL;
	int old = r->incr.has_cont ? c->n_holdouts : 0;
	int rv;

	memset(h, 0, sizeof *h);
	if ((rv = split_windows(r, 2, &nx, &ny, &n_new)) != 0)
		goto fail;
	h->count = old + 1;
	h->n = n_new;
	for (int j = 0; j < old; j++)
		h->n += c->holdouts[j].n;
	h->bounds = calloc((size_t)h->count + 1, sizeof *h->bounds);
	h->x = malloc((size_t)(h->n * wf + 1) * sizeof *h->x);
	h->y = malloc((size_t)(h->n * tl + 1) * sizeof *h->y);
	if (!h->bounds || !h->x || !h->y) {
		rv = LOOM_ENOMEM;
		goto fail;
	}
	for (int j = 0; j < h->count; j++) {
		const float *x = j < old ? c->holdouts[j].x : nx, *y = j < old ? c->holdouts[j].y : ny;
		int64_t n = j < old ? c->holdouts[j].n : n_new;
		h->bounds[j] = at;
		memcpy(h->x + at * wf, x, (size_t)(n * wf) * sizeof *h->x);
		memcpy(h->y + at * tl, y, (size_t)(n * tl) * sizeof *h->y);
		at += n;
	}
	h->bounds[h->count] = at;
	free(nx);
	free(ny);
	return 0;
fail:
	free(nx);
	free(ny);
	shared_free(h);
	return rv;
}

/* The summary figures of a head's metrics: not the per-class ones or the
 * confusion cells (names with a '.'). */
static void
summary_only(json_t *obj)
{
	const char *key;
	json_t *v;
	void *tmp;
	json_object_foreach_safe(obj, tmp, key, v) {
		if (strchr(key, '.') != NULL)
			json_object_del(obj, key);
	}
}

/* Model m on every holdout (a row of R: the metric on each) and on all of
 * them at once (the head's summary metrics into whole). */
static int
measure(run *r, tf_model *m, const shared_holdout *h, json_t *row, json_t *whole)
{
	int64_t wf = r->spec.context * r->ds.n_in, tl = r->target_len;
	int rv;

	for (int j = 0; j < h->count; j++) {
		json_t *o = json_object(), *v;
		int64_t a = h->bounds[j], n = h->bounds[j + 1] - a;
		rv = n > 0 ? evaluate_windows(r, m, h->x + a * wf, h->y + a * tl, n, o) : 0;
		v = n > 0 ? json_object_get(o, r_metric(r)) : NULL;
		json_array_append(row, v ? v : json_null());
		/* one holdout is the whole: its metrics, not a second pass */
		if (h->count == 1 && rv == 0)
			json_object_update(whole, o);
		json_decref(o);
		if (rv != 0)
			return rv;
	}
	rv = h->count > 1 && h->n > 0 ? evaluate_windows(r, m, h->x, h->y, h->n, whole) : 0;
	summary_only(whole);
	return rv;
}

/* ------------------------------------------------------------------ start */

static int
copy_file(const char *from, const char *to, char **err)
{
	char *buf = NULL;
	size_t len = 0;
	int rv;

	if (loom_file_read(from, &buf, &len) != 0) {
		rv = errno;
		*err = loom_strfmt("cannot read %s: %s", from, strerror(rv));
		return LOOM_EIO;
	}
	rv = loom_file_write_atomic(to, buf, len, 0644);
	free(buf);
	if (rv != 0) {
		*err = loom_strfmt("cannot write %s: %s", to, strerror(errno));
		return LOOM_EIO;
	}
	return 0;
}

static bool
exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

int
tf_incr_start(run *r, bool resume, json_t *ckpt_info, char **err)
{
	tf_incr *ic = &r->incr;
	const tf_spec *s = &r->spec;
	int64_t wf = s->context * r->ds.n_in;
	char *weights = NULL, *cont = NULL;
	int grown = 0, rv = 0;

	if (!ic->on)
		return 0;
	ic->init_dir = loom_strfmt("%s/init", r->ckpt_dir);
	weights = loom_strfmt("%s/best.safetensors", ic->init_dir);
	cont = loom_strfmt("%s/continual.safetensors", ic->init_dir);
	if (!resume) {
		/* the init version's files, beside the checkpoints: a resume
		 * reads these, whatever happens to the version meanwhile */
		char *from = loom_strfmt("%s/best.safetensors", s->init_dir);
		char *cfrom = loom_strfmt("%s/continual.safetensors", s->init_dir);
		if (loom_mkdir_p(ic->init_dir, 0755) != 0) {
			*err = loom_strfmt("cannot create %s: %s", ic->init_dir, strerror(errno));
			rv = LOOM_EIO;
		}
		if (rv == 0)
			rv = copy_file(from, weights, err);
		if (rv == 0 && exists(cfrom))
			rv = copy_file(cfrom, cont, err);
		else if (rv == 0)
			unlink(cont);
		free(from);
		free(cfrom);
		if (rv != 0)
			goto out;
		if ((rv = tf_weights_load_init(weights, &r->model, NULL, &grown, err)) != 0)
			goto out;
		if (s->init_model && s->init_version > 0)
			say(r, LOOM_LOG_INFO, "starting from model \"%s\" version %lld (%s)%s",
			    s->init_model, (long long)s->init_version, s->init_dir,
			    grown ? ": the head grew for the new classes" : "");
		else
			say(r, LOOM_LOG_INFO, "starting from the model in %s%s", s->init_dir,
			    grown ? ": the head grew for the new classes" : "");
	}
	if (exists(cont)) {
		if ((rv = tf_continual_load(cont, &r->model, wf, r->target_len, &ic->cont, err)) != 0) {
			char *why = *err;
			*err = loom_strfmt("train.init.model_dir: the continual.safetensors of %s cannot be "
			                   "used (%s); start from another version, or train from scratch",
			                   s->init_dir, why ? why : loom_strerror(rv));
			free(why);
			goto out;
		}
		ic->has_cont = true;
	}
	if (ic->mem_per_batch > 0 && (!ic->has_cont || ic->cont.mem_n == 0)) {
		*err = loom_strfmt("incremental.replay.ratio: the version this run starts from keeps "
		                   "no replay bank (%s has none); train it with a sampler instance "
		                   "\"%s\" configured, or set ratio = 0",
		                   s->init_dir, s->replay_sampler);
		rv = LOOM_EINVAL;
		goto out;
	}
	if (s->ewc_lambda > 0 && (!ic->has_cont || ic->cont.n_terms == 0)) {
		*err = loom_strfmt("incremental.ewc.lambda: the version this run starts from keeps "
		                   "no Fisher information (%s has no continual.safetensors); set "
		                   "lambda = 0",
		                   s->init_dir);
		rv = LOOM_EINVAL;
		goto out;
	}
	if (s->lwf_alpha > 0) {
		int64_t cells = r->model.max_seq * (int64_t)r->model.head.out_dim + 1;
		if ((rv = build_form(r, r->mc.form, &ic->teacher, err)) != 0)
			goto out;
		ic->teacher_up = true;
		if ((rv = tf_weights_load_init(weights, &ic->teacher, NULL, NULL, err)) != 0)
			goto out;
		ic->tpred = calloc((size_t)cells, sizeof *ic->tpred);
		ic->spred = calloc((size_t)cells, sizeof *ic->spred);
		ic->dpred = calloc((size_t)cells, sizeof *ic->dpred);
		if (!ic->tpred || !ic->spred || !ic->dpred) {
			rv = LOOM_ENOMEM;
			goto out;
		}
	}
	if (resume) {
		ic->before = json_incref(json_object_get(ckpt_info, "continual_before"));
	} else {
		/* the init version on every holdout and this increment's test
		 * split: R's row before learning, and the baseline the deployment
		 * rule compares with (r->model holds the init's weights now) */
		shared_holdout h;
		json_t *row = json_array(), *whole = json_object();
		if ((rv = shared_build(r, &h)) == 0)
			rv = measure(r, &r->model, &h, row, whole);
		shared_free(&h);
		ic->before = json_pack("{s:o, s:o}", "row", row, "holdout", whole);
		if (rv != 0) {
			*err = loom_strfmt("measuring the version this run starts from failed: %s",
			                   loom_strerror(rv));
			goto out;
		}
	}
	if (ic->before == NULL) {
		*err = loom_strfmt("the checkpoint holds no measurement of the version the run started "
		                   "from; start the run again");
		rv = LOOM_EINVAL;
		goto out;
	}
	/* in every checkpoint from now on */
	json_object_set(r->info, "continual_before", ic->before);
out:
	free(weights);
	free(cont);
	return rv;
}

/* ------------------------------------------------------------------ a step */

int64_t
tf_incr_extend_batch(run *r, int64_t n)
{
	tf_incr *ic = &r->incr;
	int64_t m, wf = r->spec.context * r->ds.n_in, tl = r->target_len;

	if (ic->mem_per_batch == 0)
		return n;
	/* as many bank windows as the ratio gives this batch (a short last
	 * batch gets fewer), drawn with replacement from (seed, step) */
	m = (int64_t)ceil((double)n * r->spec.replay_ratio);
	if (m > ic->mem_per_batch)
		m = ic->mem_per_batch;
	for (int64_t j = 0; j < m; j++) {
		int64_t row = (int64_t)(lk_rand_u64(r->spec.seed, STREAM_REPLAY + (uint64_t)r->st.step,
		                                    (uint64_t)j) %
		                        (uint64_t)ic->cont.mem_n);
		memcpy(r->bx + (n + j) * wf, ic->cont.mem_x + row * wf, (size_t)wf * sizeof *r->bx);
		memcpy(r->by + (n + j) * tl, ic->cont.mem_y + row * tl, (size_t)tl * sizeof *r->by);
	}
	return n + m;
}

int
tf_incr_after_loss(run *r, int64_t rows, double *loss)
{
	tf_incr *ic = &r->incr;
	tf_model *m = &r->model;
	int64_t S, od = m->head.out_dim;
	double sum = 0, alpha = r->spec.lwf_alpha;
	int rv;

	if (!ic->teacher_up)
		return 0;
	tf_model_predictions(m, ic->spred);
	if ((rv = tf_model_forward(&ic->teacher, r->bx, rows, false, 0)) != 0)
		return rv;
	tf_model_predictions(&ic->teacher, ic->tpred);
	S = tf_model_sequences(m);
	if (r->spec.task == TF_TASK_CLASSIFICATION) {
		/* α·T²·KL(softmax(z_old/T) ‖ softmax(z_new/T)) over the old classes,
		 * the mean over windows; its gradient α·T·(q − p)/S */
		double T = r->spec.lwf_temperature;
		int64_t C = ic->init_classes;
		for (int64_t s = 0; s < S; s++) {
			const float *zt = ic->tpred + s * od, *zs = ic->spred + s * od;
			float *d = ic->dpred + s * od;
			double mt = -INFINITY, ms = -INFINITY, et = 0, es = 0, kl = 0;
			for (int64_t c = 0; c < C; c++) {
				mt = fmax(mt, zt[c] / T);
				ms = fmax(ms, zs[c] / T);
			}
			for (int64_t c = 0; c < C; c++) {
				et += exp(zt[c] / T - mt);
				es += exp(zs[c] / T - ms);
			}
			for (int64_t c = 0; c < od; c++)
				d[c] = 0;
			for (int64_t c = 0; c < C; c++) {
				double lp = zt[c] / T - mt - log(et), lq = zs[c] / T - ms - log(es);
				double p = exp(lp), q = exp(lq);
				kl += p * (lp - lq);
				d[c] = (float)(alpha * T * (q - p) / (double)S);
			}
			sum += kl;
		}
		sum = alpha * T * T * sum / (double)S;
	} else {
		/* α·mean((new − old)²) over every output */
		double cells = (double)(S * od);
		for (int64_t i = 0; i < S * od; i++) {
			double e = (double)ic->spred[i] - (double)ic->tpred[i];
			sum += e * e;
			ic->dpred[i] = (float)(2.0 * alpha * e / cells);
		}
		sum = alpha * sum / cells;
	}
	tf_model_loss_add(m, ic->dpred);
	*loss += sum;
	return 0;
}

void
tf_incr_after_backward(run *r, double *loss)
{
	tf_incr *ic = &r->incr;
	tf_model *m = &r->model;
	double lambda = r->spec.ewc_lambda, pen = 0;

	if (lambda <= 0 || !ic->has_cont)
		return;
	/* λ·Σ_k Σ_i F_k,i·(θ_i − θ*_k,i)², gradient 2λ·F·(θ − θ*) */
	for (int k = 0; k < ic->cont.n_terms; k++) {
		const float *F = ic->cont.terms[k].fisher, *t = ic->cont.terms[k].theta;
		for (int64_t i = 0; i < m->n_params; i++) {
			double d = (double)m->params[i] - (double)t[i];
			pen += (double)F[i] * d * d;
			m->grads[i] += (float)(2.0 * lambda * (double)F[i] * d);
		}
	}
	*loss += lambda * pen;
}

/* ------------------------------------------------------------------ the end */

/* The diagonal empirical Fisher of model m on the training windows: the
 * mean over batches of the squared gradient of the batch's loss
 * (Avalanche's EWCPlugin), in eval mode. */
static int
fisher(run *r, tf_model *m, float *F)
{
	int64_t N = r->ds.n_windows[0], B = r->batch, batches = 0;
	int rv;

	memset(F, 0, (size_t)m->n_params * sizeof *F);
	for (int64_t at = 0; at < N; at += B) {
		int64_t k = N - at < B ? N - at : B;
		double loss;
		for (int64_t i = 0; i < k; i++)
			r->idx[i] = at + i;
		gather(r, 0, r->idx, k);
		if ((rv = tf_model_forward(m, r->bx, k, false, 0)) != 0 ||
		    (rv = tf_model_loss(m, r->by, &loss)) != 0)
			return rv;
		tf_model_zero_grad(m);
		if ((rv = tf_model_backward(m)) != 0)
			return rv;
		for (int64_t i = 0; i < m->n_params; i++)
			F[i] += m->grads[i] * m->grads[i];
		batches++;
	}
	for (int64_t i = 0; batches && i < m->n_params; i++)
		F[i] /= (float)batches;
	for (int t = 0; t < m->n_tensors; t++) {
		if (m->tensors[t].flags & TF_BUFFER)
			memset(F + m->tensors[t].offset, 0, (size_t)m->tensors[t].numel * sizeof *F);
	}
	tf_model_zero_grad(m);
	return 0;
}

/* The new bank: the init's rows, and this run's training windows offered
 * to the reservoir sampler after the ones it saw before. */
static int
update_bank(run *r, tf_continual *out, char **err)
{
	tf_incr *ic = &r->incr;
	const tf_spec *s = &r->spec;
	int64_t k = s->replay_memory, wf = s->context * r->ds.n_in, tl = r->target_len;
	int64_t N = r->ds.n_windows[0], old = ic->has_cont ? ic->cont.mem_n : 0;
	const void *ops = NULL;
	void *ctx = NULL;
	loom_sample_pool pool;
	loom_sample_request req;
	loom_sample_result res;
	int rv;

	if (k == 0)
		return 0;
	/* (a spec that names the bank had its sampler checked at the start) */
	if (r->host->instance_ops(r->ins, s->replay_sampler, LOOM_KIND_SAMPLER, &ops, &ctx) != 0) {
		say(r, LOOM_LOG_INFO,
		    "no replay bank kept with this model: no sampler instance \"%s\" (module "
		    "sampler-reservoir) is configured",
		    s->replay_sampler);
		return 0;
	}
	if (old > k)
		old = k;
	out->mem_x = calloc((size_t)(k * wf + 1), sizeof *out->mem_x);
	out->mem_y = calloc((size_t)(k * tl + 1), sizeof *out->mem_y);
	memset(&res, 0, sizeof res);
	res.index = calloc((size_t)k, sizeof *res.index);
	res.slot = calloc((size_t)k, sizeof *res.slot);
	if (!out->mem_x || !out->mem_y || !res.index || !res.slot) {
		rv = LOOM_ENOMEM;
		goto out;
	}
	if (old > 0) {
		memcpy(out->mem_x, ic->cont.mem_x, (size_t)(old * wf) * sizeof *out->mem_x);
		memcpy(out->mem_y, ic->cont.mem_y, (size_t)(old * tl) * sizeof *out->mem_y);
	}
	out->mem_n = old;
	out->mem_seen = ic->has_cont ? ic->cont.mem_seen : 0;
	if (N > 0) {
		memset(&pool, 0, sizeof pool);
		pool.size = sizeof pool;
		pool.n = (size_t)N;
		pool.seen = out->mem_seen;
		/* a bank not full though more windows were seen (it was kept
		 * smaller before): fill its free slots first, as a stream that
		 * has seen only its rows, so no slot is left empty */
		if (old < k && out->mem_seen > (uint64_t)old)
			pool.seen = (uint64_t)old;
		memset(&req, 0, sizeof req);
		req.size = sizeof req;
		req.k = (size_t)k;
		req.seed = s->seed;
		rv = ((const loom_sampler_ops *)ops)->select(ctx, &pool, &req, &res);
		if (rv != 0) {
			*err = loom_strfmt("incremental.replay.sampler \"%s\": %s", s->replay_sampler,
			                   res.error ? res.error : loom_strerror(rv));
			if (res.error)
				r->host->free(res.error);
			goto out;
		}
		/* the chosen windows, each into its slot */
		for (size_t i = 0; i < res.n; i++) {
			int64_t slot = res.slot[i], row = (int64_t)res.index[i];
			if (slot < 0 || slot >= k || row < 0 || row >= N)
				continue;
			r->idx[0] = row;
			gather(r, 0, r->idx, 1);
			memcpy(out->mem_x + slot * wf, r->bx, (size_t)wf * sizeof *r->bx);
			memcpy(out->mem_y + slot * tl, r->by, (size_t)tl * sizeof *r->by);
			if (slot + 1 > out->mem_n)
				out->mem_n = slot + 1;
		}
		out->mem_seen += (uint64_t)N;
	}
	rv = 0;
out:
	free(res.index);
	free(res.slot);
	return rv;
}

/* The EWC terms kept with the new version: the init's and this run's
 * (separate), or one decayed sum (online). */
static int
update_terms(run *r, tf_model *final, tf_continual *out)
{
	tf_incr *ic = &r->incr;
	int old = ic->has_cont ? ic->cont.n_terms : 0;
	int64_t P = final->n_params;
	bool online = r->spec.ewc_online && old > 0;
	int n = online ? 1 : old + 1, rv;
	float *F;

	/* a model auto chose instead of the trained one (ridge, naive, an
	 * ensemble) is not trained further: it keeps no EWC term */
	if (final != &r->model)
		return 0;
	out->terms = calloc((size_t)n, sizeof *out->terms);
	if (out->terms == NULL)
		return LOOM_ENOMEM;
	out->n_terms = n;
	for (int k = 0; k < n; k++) {
		out->terms[k].fisher = calloc((size_t)P + 1, sizeof(float));
		out->terms[k].theta = calloc((size_t)P + 1, sizeof(float));
		if (!out->terms[k].fisher || !out->terms[k].theta)
			return LOOM_ENOMEM;
	}
	F = out->terms[n - 1].fisher;
	if ((rv = fisher(r, final, F)) != 0)
		return rv;
	memcpy(out->terms[n - 1].theta, final->params, (size_t)P * sizeof(float));
	if (online) {
		/* F = γ·F_old + F_new (the old terms summed first) */
		for (int k = 0; k < old; k++)
			for (int64_t i = 0; i < P; i++)
				F[i] += (float)(r->spec.ewc_gamma * ic->cont.terms[k].fisher[i]);
	} else {
		for (int k = 0; k < old; k++) {
			memcpy(out->terms[k].fisher, ic->cont.terms[k].fisher, (size_t)P * sizeof(float));
			memcpy(out->terms[k].theta, ic->cont.terms[k].theta, (size_t)P * sizeof(float));
		}
	}
	return 0;
}

int
tf_incr_finish(run *r, tf_model *final, double baseline, json_t *out, char **err)
{
	tf_incr *ic = &r->incr;
	const tf_spec *s = &r->spec;
	const json_t *meta = ic->has_cont ? ic->cont.meta : NULL;
	bool higher = r->spec.task == TF_TASK_CLASSIFICATION;
	tf_continual next;
	shared_holdout h;
	json_t *row = json_array(), *whole = json_object(), *R, *before, *base, *incs, *cm, *ho;
	tf_cl_summary sum;
	int64_t increment;
	char *path;
	int rv;

	memset(&next, 0, sizeof next);
	memset(&h, 0, sizeof h);
	if ((rv = shared_build(r, &h)) != 0 || (rv = measure(r, final, &h, row, whole)) != 0) {
		*err = loom_strfmt("the continual-learning evaluation failed: %s", loom_strerror(rv));
		goto out;
	}
	increment = h.count;
	/* R: the init's rows and this one; R_before, baseline and the
	 * increments grow by this one */
	R = json_deep_copy(json_object_get(meta, "R"));
	before = json_deep_copy(json_object_get(meta, "R_before"));
	base = json_deep_copy(json_object_get(meta, "baseline"));
	incs = json_deep_copy(json_object_get(meta, "increments"));
	if (!json_is_array(R) || (int64_t)json_array_size(R) != increment - 1) {
		json_decref(R);
		json_decref(before);
		json_decref(base);
		json_decref(incs);
		R = json_array();
		before = json_array();
		base = json_array();
		incs = json_array();
		/* an init version without the record: only this increment's row
		 * is known; the earlier rows stay null */
		for (int64_t j = 0; j + 1 < increment; j++) {
			json_array_append_new(R, json_null());
			json_array_append_new(before, json_null());
			json_array_append_new(base, json_null());
			json_array_append_new(incs, json_pack("{s:I}", "index", (json_int_t)j + 1));
		}
	}
	json_array_append(R, row);
	{
		/* R[i−1][i]: the init version on this increment's test split */
		json_t *v = ic->on && ic->before ? json_array_get(json_object_get(ic->before, "row"),
		                                                  (size_t)increment - 1)
		                                 : NULL;
		json_array_append_new(before, v ? json_incref(v) : json_null());
	}
	json_array_append_new(base, number_or_null(baseline));
	json_array_append_new(incs, json_pack("{s:I, s:s, s:I, s:I}", "index",
	                                      (json_int_t)increment, "data", s->path, "test_windows",
	                                      (json_int_t)(h.bounds[h.count] - h.bounds[h.count - 1]),
	                                      "rows",
	                                      (json_int_t)r->ds.rows));
	tf_cl_summarize(R, before, base, higher, &sum);

	/* what the next increment needs */
	next.window_floats = s->context * r->ds.n_in;
	next.target_len = r->target_len;
	if ((rv = update_bank(r, &next, err)) != 0)
		goto out_json;
	if ((rv = update_terms(r, final, &next)) != 0) {
		*err = loom_strfmt("computing the Fisher information failed: %s", loom_strerror(rv));
		goto out_json;
	}
	next.n_holdouts = h.count;
	next.holdouts = calloc((size_t)h.count, sizeof *next.holdouts);
	if (next.holdouts == NULL) {
		rv = LOOM_ENOMEM;
		goto out_json;
	}
	for (int j = 0; j < h.count; j++) {
		tf_holdout *o = &next.holdouts[j];
		int64_t a = h.bounds[j], wf = next.window_floats, tl = next.target_len;
		const json_t *inc = json_array_get(incs, (size_t)j);
		o->index = j + 1;
		o->data = strdup(json_string_value(json_object_get(inc, "data"))
		                     ? json_string_value(json_object_get(inc, "data"))
		                     : "");
		o->rows = json_integer_value(json_object_get(inc, "rows"));
		o->n = h.bounds[j + 1] - a;
		o->x = malloc((size_t)(o->n * wf + 1) * sizeof *o->x);
		o->y = malloc((size_t)(o->n * tl + 1) * sizeof *o->y);
		if (!o->data || !o->x || !o->y) {
			rv = LOOM_ENOMEM;
			goto out_json;
		}
		memcpy(o->x, h.x + a * wf, (size_t)(o->n * wf) * sizeof *o->x);
		memcpy(o->y, h.y + a * tl, (size_t)(o->n * tl) * sizeof *o->y);
	}
	next.meta = json_pack("{s:O, s:O, s:O, s:O, s:s, s:b, s:I, s:s}", "increments", incs, "R",
	                      R, "R_before", before, "baseline", base, "metric", r_metric(r),
	                      "higher_is_better", higher, "memory_seen",
	                      (json_int_t)next.mem_seen, "ewc_mode",
	                      s->ewc_online ? "online" : "separate");
	if (r->ds.n_classes > 0)
		json_object_set_new(next.meta, "classes",
		                    json_copy(json_object_get(json_object_get(r->info, "data"),
		                                              "classes")));
	path = loom_strfmt("%s/continual.safetensors", r->job->out_dir);
	rv = tf_continual_save(path, final, &next, err);
	if (rv == 0 && r->job->artifact)
		r->job->artifact(r->job, "continual.safetensors", path);
	free(path);
	if (rv != 0)
		goto out_json;

	/* metrics.json */
	cm = json_pack("{s:I, s:o, s:s, s:b, s:O, s:O, s:O, s:O, s:o, s:o, s:o, s:o}", "increment",
	               (json_int_t)increment, "init",
	               ic->on ? json_pack("{s:o, s:o}", "model",
	                                  s->init_model ? json_string(s->init_model) : json_null(),
	                                  "version",
	                                  s->init_version ? json_integer(s->init_version)
	                                                  : json_null())
	                      : json_null(),
	               "metric", r_metric(r), "higher_is_better", higher, "increments", incs, "R", R,
	               "R_before", before, "baseline", base, "average", number_or_null(sum.average),
	               "forgetting", number_or_null(sum.forgetting), "bwt", number_or_null(sum.bwt),
	               "fwt", number_or_null(sum.fwt));
	json_object_set_new(
		cm, "strategies",
		json_pack("{s:{s:I, s:f, s:I, s:I}, s:{s:f, s:s, s:f, s:i}, s:{s:f, s:f}}", "replay",
		          "memory", (json_int_t)s->replay_memory, "ratio", s->replay_ratio, "bank_rows",
		          (json_int_t)next.mem_n, "mixed_per_batch", (json_int_t)ic->mem_per_batch,
		          "ewc", "lambda", s->ewc_lambda, "mode", s->ewc_online ? "online" : "separate",
		          "gamma", s->ewc_gamma, "terms", next.n_terms, "lwf", "alpha", s->lwf_alpha,
		          "temperature", s->lwf_temperature));
	json_object_set_new(out, "continual", cm);
	ho = json_pack("{s:I, s:I, s:O, s:O, s:o, s:o}", "windows", (json_int_t)h.n, "increments",
	               (json_int_t)increment, "model", whole, "init",
	               ic->before ? json_object_get(ic->before, "holdout") : json_null(),
	               "init_model", s->init_model ? json_string(s->init_model) : json_null(),
	               "init_version",
	               ic->on && s->init_version ? json_integer(s->init_version) : json_null());
	json_object_set_new(out, "holdout", ho);
	{
		static const char *const names[] = {"cl_average", "cl_forgetting", "cl_bwt", "cl_fwt"};
		const double v[] = {sum.average, sum.forgetting, sum.bwt, sum.fwt};
		const char *key;
		json_t *x;
		for (int i = 0; i < 4; i++)
			if (isfinite(v[i]))
				run_metric(r, names[i], v[i], LOOM_METRIC_FINAL);
		json_object_foreach(whole, key, x) {
			char name[128];
			snprintf(name, sizeof name, "holdout_%s", key);
			if (json_is_number(x))
				run_metric(r, name, json_number_value(x), LOOM_METRIC_FINAL);
		}
		json_object_foreach(ic->before ? json_object_get(ic->before, "holdout") : NULL, key, x) {
			char name[128];
			snprintf(name, sizeof name, "holdout_init_%s", key);
			if (json_is_number(x))
				run_metric(r, name, json_number_value(x), LOOM_METRIC_FINAL);
		}
	}
	say(r, LOOM_LOG_INFO,
	    "increment %lld: %s on every increment's test so far %s, average %.4g%s; bank %lld "
	    "rows",
	    (long long)increment, r_metric(r), "(R's last row)", sum.average,
	    isfinite(sum.forgetting) ? "" : " (nothing to forget yet)", (long long)next.mem_n);
out_json:
	json_decref(R);
	json_decref(before);
	json_decref(base);
	json_decref(incs);
out:
	json_decref(row);
	json_decref(whole);
	shared_free(&h);
	tf_continual_free(&next);
	return rv;
}

void
tf_incr_free(tf_incr *ic)
{
	json_decref(ic->init_info);
	free(ic->init_dir);
	strv_free(ic->features);
	strv_free(ic->targets);
	strv_free(ic->classes);
	free(ic->norm);
	if (ic->has_cont)
		tf_continual_free(&ic->cont);
	if (ic->teacher_up)
		tf_model_free(&ic->teacher);
	free(ic->tpred);
	free(ic->spred);
	free(ic->dpred);
	json_decref(ic->before);
	memset(ic, 0, sizeof *ic);
}

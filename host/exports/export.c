/* A run's output directory as a loom_export_source.  See export.h. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <loom/error.h>
#include <loom/safetensors.h>

#include "export.h"
#include "host/core/util.h"

struct loomi_export_run {
	loom_export_source src;
	char *dir;
	char *run_id, *name, *state;
	char *spec, *model, *metrics, *run;
	unsigned char *weights;      /* the file's bytes; tensors point into it */
	loom_safetensors *st;
	loom_tensor *tensors;
	loomi_strv names;            /* metrics with a history */
	json_t *epochs;              /* metrics.json's "epochs", the default history */
	loom_history_fn history;
	void *history_arg;
};

static uint32_t
dtype_of(const char *st)
{
	static const struct {
		const char *name;
		uint32_t dtype;
	} map[] = {
		{"F32", LOOM_DTYPE_F32}, {"F64", LOOM_DTYPE_F64}, {"F16", LOOM_DTYPE_F16},
		{"BF16", LOOM_DTYPE_BF16}, {"I32", LOOM_DTYPE_I32}, {"I64", LOOM_DTYPE_I64},
		{"U8", LOOM_DTYPE_U8},
	};
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
		if (strcmp(map[i].name, st) == 0)
			return map[i].dtype;
	}
	return 0;
}

/* The weights file's metadata as the model description: values that are
 * JSON documents (spec, data) or numbers are parsed, the rest kept as text. */
static json_t *
model_of(const loom_safetensors_meta *meta, size_t n_meta, const char *file)
{
	json_t *m = json_object();

	for (size_t i = 0; i < n_meta; i++) {
		const char *key = meta[i].key, *s = meta[i].value;
		json_t *parsed = s && (*s == '{' || *s == '[') ? json_loads(s, 0, NULL) : NULL;
		char *end = NULL;
		long long n = s && *s ? strtoll(s, &end, 10) : 0;
		if (parsed)
			json_object_set_new(m, key, parsed);
		else if (end && *end == '\0')
			json_object_set_new(m, key, json_integer(n));
		else
			json_object_set_new(m, key, json_string(s));
	}
	json_object_set_new(m, "weights", json_string(file));
	return m;
}

static int
load_weights(loomi_export_run *r, char **err)
{
	static const char *const files[] = {"best.safetensors", "last.safetensors"};
	char *path = NULL, *data = NULL;
	size_t len = 0, i, f, n, n_meta;
	const loom_safetensors_tensor *ts;
	const loom_safetensors_meta *meta;
	int rv;

	for (f = 0; f < 2; f++) {
		free(path);
		path = loomi_path_join(r->dir, files[f]);
		if ((rv = loomi_read_file(path, &data, &len)) == 0)
			break;
	}
	if (f == 2) {
		free(path);
		return LOOM_ENOENT;
	}
	r->weights = (unsigned char *)data;
	if ((rv = loom_safetensors_decode(r->weights, len, path, &r->st, err)) != 0) {
		free(path);
		return rv;
	}
	ts = loom_safetensors_tensors(r->st, &n);
	r->tensors = loomi_xcalloc(n ? n : 1, sizeof *r->tensors);
	for (i = 0; i < n; i++) {
		const loom_safetensors_tensor *t = &ts[i];
		loom_tensor *o = &r->tensors[i];
		o->name = t->name;
		o->dtype = dtype_of(t->dtype);
		o->ndim = t->ndim;
		for (uint32_t k = 0; k < t->ndim && k < LOOM_TENSOR_MAX_DIMS; k++)
			o->dims[k] = t->dims[k];
		o->data = (void *)t->data;
		o->nbytes = t->nbytes;
	}
	if ((meta = loom_safetensors_metadata(r->st, &n_meta)) != NULL) {
		json_t *m = model_of(meta, n_meta, files[f]);
		json_t *spec = json_object_get(m, "spec");
		r->model = json_dumps(m, JSON_COMPACT);
		if (json_is_object(spec))
			r->spec = json_dumps(spec, JSON_COMPACT);
		json_decref(m);
	}
	free(path);
	return 0;
}

static int
load_metrics(loomi_export_run *r, char **err)
{
	char *path = loomi_path_join(r->dir, "metrics.json"), *text = NULL;
	json_error_t je;
	json_t *m;
	int rv;

	if ((rv = loomi_read_file(path, &text, NULL)) != 0) {
		free(path);
		return LOOM_ENOENT;
	}
	if ((m = json_loads(text, 0, &je)) == NULL || !json_is_object(m)) {
		*err = loomi_strfmt("%s:%d: not a JSON object (%s); the run's metrics are damaged, "
		                    "train it again",
		                    path, je.line, m ? "another type" : je.text);
		json_decref(m);
		free(text);
		free(path);
		return LOOM_ECORRUPT;
	}
	r->metrics = json_dumps(m, JSON_COMPACT);
	if (json_is_array(json_object_get(m, "epochs"))) {
		size_t i;
		json_t *e, *v;
		const char *key;
		r->epochs = json_incref(json_object_get(m, "epochs"));
		json_array_foreach(r->epochs, i, e) {
			json_object_foreach(e, key, v) {
				bool seen = false;
				if (!json_is_number(v) || !strcmp(key, "epoch") || !strcmp(key, "step"))
					continue;
				for (size_t k = 0; k < r->names.n && !seen; k++)
					seen = strcmp(r->names.v[k], key) == 0;
				if (!seen)
					loomi_strv_push(&r->names, loomi_strdup(key));
			}
		}
	}
	json_decref(m);
	free(text);
	free(path);
	return 0;
}

/* The default history: metrics.json's per-epoch figures. */
static int
epoch_history(const loom_export_source *src, const char *metric, loom_metric_fn fn, void *arg)
{
	const loomi_export_run *r = (const loomi_export_run *)src;
	size_t i;
	json_t *e;
	int rv;

	json_array_foreach(r->epochs, i, e) {
		json_t *v = json_object_get(e, metric);
		loom_metric_point pt = {
			.name = metric,
			.step = json_integer_value(json_object_get(e, "step")),
			.epoch = (int32_t)json_integer_value(json_object_get(e, "epoch")),
			.scope = LOOM_METRIC_EPOCH,
		};
		if (!json_is_number(v))
			continue;
		pt.value = json_number_value(v);
		if ((rv = fn(arg, &pt)) != 0)
			return rv;
	}
	return 0;
}

static int
forward_history(const loom_export_source *src, const char *metric, loom_metric_fn fn, void *arg)
{
	const loomi_export_run *r = (const loomi_export_run *)src;
	loom_export_source outer = *src;
	outer.history_arg = r->history_arg;
	return r->history(&outer, metric, fn, arg);
}

static void
refresh(loomi_export_run *r)
{
	loom_export_source *s = &r->src;

	s->size = sizeof *s;
	s->run_id = r->run_id;
	s->name = r->name;
	s->state = r->state;
	s->spec_json = r->spec ? r->spec : "{}";
	s->model_json = r->model;
	s->metrics_json = r->metrics ? r->metrics : "{}";
	s->run_json = r->run ? r->run : "{}";
	loom_safetensors_tensors(r->st, &s->n_tensors);
	s->tensors = r->tensors;
	s->n_metric_names = r->names.n;
	s->metric_names = (const char *const *)r->names.v;
	s->history = r->history ? forward_history : r->epochs ? epoch_history : NULL;
	s->history_arg = NULL;
}

loomi_export_run *
loomi_export_new(void)
{
	loomi_export_run *r = loomi_xcalloc(1, sizeof *r);
	r->dir = loomi_strdup("");
	r->run_id = loomi_strdup("");
	r->name = loomi_strdup("");
	r->state = loomi_strdup("completed");
	refresh(r);
	return r;
}

int
loomi_export_load(const char *out_dir, loomi_export_run **out, char **err)
{
	loomi_export_run *r = loomi_export_new();
	int wrv, mrv;

	*out = NULL;
	*err = NULL;
	free(r->dir);
	r->dir = loomi_strdup(out_dir);
	wrv = load_weights(r, err);
	if (wrv != 0 && wrv != LOOM_ENOENT)
		goto fail;
	mrv = load_metrics(r, err);
	if (mrv != 0 && mrv != LOOM_ENOENT) {
		wrv = mrv;
		goto fail;
	}
	if (wrv == LOOM_ENOENT && mrv == LOOM_ENOENT) {
		*err = loomi_strfmt("%s holds no weights (best.safetensors, last.safetensors) and no "
		                    "metrics.json: the run never completed; export a completed task",
		                    out_dir);
		goto fail;
	}
	refresh(r);
	*out = r;
	return 0;
fail:
	loomi_export_free(r);
	return wrv;
}

const loom_export_source *
loomi_export_source(const loomi_export_run *r)
{
	return &r->src;
}

static void
replace(char **field, const char *v)
{
	if (v) {
		free(*field);
		*field = loomi_strdup(v);
	}
}

void
loomi_export_set_run(loomi_export_run *r, const char *run_id, int64_t job_id, const char *name,
                     const char *state, const char *spec_json, const char *run_json)
{
	replace(&r->run_id, run_id);
	replace(&r->name, name);
	replace(&r->state, state);
	replace(&r->spec, spec_json);
	replace(&r->run, run_json);
	r->src.job_id = job_id;
	refresh(r);
}

void
loomi_export_set_history(loomi_export_run *r, const char *const *names, size_t n,
                         loom_history_fn fn, void *arg)
{
	loomi_strv_free(&r->names);
	for (size_t i = 0; i < n; i++)
		loomi_strv_push(&r->names, loomi_strdup(names[i]));
	r->history = fn;
	r->history_arg = arg;
	refresh(r);
}

void
loomi_export_free(loomi_export_run *r)
{
	if (r == NULL)
		return;
	loom_safetensors_free(r->st);
	free(r->weights);
	free(r->tensors);
	loomi_strv_free(&r->names);
	json_decref(r->epochs);
	free(r->dir);
	free(r->run_id);
	free(r->name);
	free(r->state);
	free(r->spec);
	free(r->model);
	free(r->metrics);
	free(r->run);
	free(r);
}

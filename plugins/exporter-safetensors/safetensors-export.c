/* exporter-safetensors — a run's weights as a safetensors file
 * (huggingface/safetensors), the format PyTorch, JAX and the safetensors
 * library open without Loom.
 *
 * The tensors are written in model order with libloom's codec
 * (<loom/safetensors.h>); "__metadata__" (strings only, as the format requires)
 * carries what a reader needs to use them: the head, the architecture, the
 * normalization, the run, Loom's version and the final metrics, structured
 * values as compact JSON text.  The keys training writes (format, spec,
 * data, head, parameters) are kept as they are, so the exported file is
 * itself a Loom weights file that loom-worker and the exporters load back. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <loom/exporter.h>
#include <loom/safetensors.h>

/* The sink gets the file in pieces of this size, so a receiver streaming
 * to a socket or storage never holds a second copy at once. */
#define CHUNK (1u << 20)

typedef struct ctx {
	const loom_host *host;
	loom_instance *ins;
} ctx;

static int
st_init(loom_instance *ins, const loom_host *host, void *p)
{
	ctx *c = p;
	c->host = host;
	c->ins = ins;
	return 0;
}

static const char *
st_dtype_of(uint32_t dtype)
{
	switch (dtype) {
	case LOOM_DTYPE_F32: return "F32";
	case LOOM_DTYPE_F64: return "F64";
	case LOOM_DTYPE_F16: return "F16";
	case LOOM_DTYPE_BF16: return "BF16";
	case LOOM_DTYPE_I32: return "I32";
	case LOOM_DTYPE_I64: return "I64";
	case LOOM_DTYPE_U8: return "U8";
	default: return NULL;
	}
}

/* Set meta[key] to v as the format allows: strings as they are, anything
 * else as compact JSON text with sorted keys (stable bytes). */
static void
meta_set(json_t *meta, const char *key, const json_t *v)
{
	char *text;

	if (v == NULL || json_is_null(v))
		return;
	if (json_is_string(v)) {
		json_object_set(meta, key, (json_t *)v);
		return;
	}
	text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	if (text)
		json_object_set_new(meta, key, json_string(text));
	free(text);
}

static json_t *
parse(const char *text)
{
	return text ? json_loads(text, 0, NULL) : NULL;
}

/* The final metrics without the per-epoch history (that belongs to the
 * CSV and JSON exports, not to a weights file). */
static json_t *
final_metrics(const char *metrics_json)
{
	json_t *m = parse(metrics_json);
	if (json_is_object(m))
		json_object_del(m, "epochs");
	return m;
}

static json_t *
metadata_of(const ctx *c, const loom_export_source *src)
{
	json_t *meta = json_object(), *model = parse(src->model_json), *spec = parse(src->spec_json);
	json_t *metrics = final_metrics(src->metrics_json), *arch, *v;
	const char *key;
	char num[32];
	uint64_t params = 0;

	/* What training recorded first, then what the run adds. */
	if (json_is_object(model)) {
		json_object_foreach(model, key, v) {
			if (strcmp(key, "weights") != 0)
				meta_set(meta, key, v);
		}
	}
	json_object_set_new(meta, "format", json_string("loom-weights"));
	if (json_is_object(spec) && json_object_size(spec) > 0)
		meta_set(meta, "spec", spec);
	/* Which model the weights are (training's "model": kind and form; a
	 * linear or mixed form has other tensors than the Transformer's) under
	 * keys of their own, since "model" is the architecture. */
	{
		json_t *about = json_object_get(model, "model");
		if (json_is_object(about)) {
			json_t *kind = json_object_get(about, "kind"), *form = json_object_get(about, "form");
			if (json_is_string(kind))
				meta_set(meta, "model_kind", kind);
			if (json_is_string(form))
				meta_set(meta, "model_form", form);
		}
	}
	/* The architecture: the spec's model group (head, sizes, options). */
	arch = json_object_get(json_object_get(model, "spec"), "model");
	if (!json_is_object(arch))
		arch = json_object_get(spec, "model");
	meta_set(meta, "model", arch);
	if (json_is_object(arch) && json_is_string(json_object_get(arch, "head")) &&
	    !json_object_get(meta, "head"))
		meta_set(meta, "head", json_object_get(arch, "head"));
	for (size_t i = 0; i < src->n_tensors; i++) {
		size_t esz = loom_dtype_size(src->tensors[i].dtype);
		params += esz ? src->tensors[i].nbytes / esz : 0;
	}
	snprintf(num, sizeof num, "%llu", (unsigned long long)params);
	json_object_set_new(meta, "parameters", json_string(num));
	if (src->run_id && *src->run_id)
		json_object_set_new(meta, "run_id", json_string(src->run_id));
	if (src->job_id > 0) {
		snprintf(num, sizeof num, "%lld", (long long)src->job_id);
		json_object_set_new(meta, "job_id", json_string(num));
	}
	if (src->name && *src->name)
		json_object_set_new(meta, "name", json_string(src->name));
	json_object_set_new(meta, "loom_version", json_string(c->host->version));
	if (json_is_object(metrics) && json_object_size(metrics) > 0)
		meta_set(meta, "metrics", metrics);
	json_decref(model);
	json_decref(spec);
	json_decref(metrics);
	return meta;
}

/* Encode t with meta (an object of strings) as the file's __metadata__,
 * in meta's order. */
static int
encode(const loom_safetensors_tensor *t, size_t n, const json_t *meta, unsigned char **out,
       size_t *len)
{
	loom_safetensors_meta *pairs = calloc(json_object_size(meta) + 1, sizeof *pairs);
	const char *key;
	json_t *v;
	size_t k = 0;
	int rv;

	if (pairs == NULL)
		return LOOM_ENOMEM;
	json_object_foreach((json_t *)meta, key, v) {
		if (json_is_string(v)) {
			pairs[k].key = key;
			pairs[k++].value = json_string_value(v);
		}
	}
	rv = loom_safetensors_encode(t, n, pairs, k, out, len);
	free(pairs);
	return rv;
}

static int
write_chunks(const loom_export_sink *sink, const unsigned char *buf, size_t len)
{
	int rv;

	for (size_t off = 0; off < len; off += CHUNK) {
		size_t n = len - off < CHUNK ? len - off : CHUNK;
		if ((rv = sink->write(sink->arg, buf + off, n)) != 0)
			return rv;
	}
	return 0;
}

/* The source's tensors as the codec's entries; LOOM_EINVAL (logged) for
 * one it cannot write. */
static int
entries_of(const ctx *c, const loom_export_source *src, loom_safetensors_tensor *t)
{
	for (size_t i = 0; i < src->n_tensors; i++) {
		const loom_tensor *s = &src->tensors[i];
		t[i].name = s->name;
		t[i].dtype = st_dtype_of(s->dtype);
		t[i].ndim = s->ndim;
		t[i].data = s->data;
		t[i].nbytes = s->nbytes;
		if (t[i].dtype == NULL || s->name == NULL || *s->name == '\0' ||
		    strcmp(s->name, "__metadata__") == 0 || s->ndim > LOOM_SAFETENSORS_MAX_DIMS) {
			loom_log_error(c->host, c->ins,
			               "run %s: tensor %zu (\"%s\") cannot be written as safetensors: "
			               "%s",
			               src->run_id, i, s->name ? s->name : "",
			               t[i].dtype == NULL ? "unknown dtype"
			                                  : "its name or rank is not allowed");
			return LOOM_EINVAL;
		}
		for (uint32_t d = 0; d < s->ndim; d++)
			t[i].dims[d] = s->dims[d];
	}
	return 0;
}

static int
st_export_run(void *p, const loom_export_source *src, const loom_export_sink *sink)
{
	const ctx *c = p;
	loom_safetensors_tensor *t;
	json_t *meta;
	unsigned char *buf = NULL;
	size_t len = 0;
	int rv;

	if (src->n_tensors == 0 || src->tensors == NULL) {
		loom_log_error(c->host, c->ins,
		               "run %s has no weights: a safetensors export needs a trained model "
		               "(best.safetensors or last.safetensors); export its results as csv "
		               "or json instead",
		               src->run_id && *src->run_id ? src->run_id : "(unnamed)");
		return LOOM_EINVAL;
	}
	if ((t = calloc(src->n_tensors, sizeof *t)) == NULL)
		return LOOM_ENOMEM;
	if ((rv = entries_of(c, src, t)) != 0) {
		free(t);
		return rv;
	}
	meta = metadata_of(c, src);
	rv = encode(t, src->n_tensors, meta, &buf, &len);
	json_decref(meta);
	free(t);
	if (rv == LOOM_EINVAL)
		loom_log_error(c->host, c->ins,
		               "run %s: its tensors cannot be written as safetensors (a repeated "
		               "name, or a size that does not match dtype × shape)",
		               src->run_id);
	if (rv == 0)
		rv = write_chunks(sink, buf, len);
	free(buf);
	return rv;
}

static const loom_exporter_ops ops = {
	.size = sizeof ops,
	.caps = LOOM_EXPORT_NEEDS_TENSORS,
	.format = "safetensors",
	.extension = ".safetensors",
	.media_type = "application/octet-stream",
	.export_run = st_export_run,
};

LOOM_PLUGIN_DEFINE(exporter_safetensors,
                   .kind = LOOM_KIND_EXPORTER,
                   .name = "exporter-safetensors",
                   .version = "1.0.0",
                   .description = "a run's weights as a safetensors file, with its model "
                                  "description in __metadata__",
                   .flags = LOOM_PLUGIN_THREAD_SAFE,
                   .ctx_size = sizeof(ctx),
                   .init = st_init,
                   .ops = &ops)

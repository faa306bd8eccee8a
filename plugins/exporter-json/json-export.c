/* exporter-json — a run as one compact JSON document:
 *
 *   {"run":     {...the run's record, "id", "job_id", "name", "state"},
 *    "spec":    {...the job spec},
 *    "model":   {...the model description} | null,
 *    "metrics": {...final metrics and baselines, without "epochs"},
 *    "history": {"train_loss": {"step": [...], "epoch": [...],
 *                               "value": [...], "scope": "epoch"}, ...}}
 *
 * Histories are columnar: index i of step, epoch and value is one point.
 * "scope" is one string when every point shares it, else a column;
 * "wall_ms" is a column when the keeper recorded times.  JSON has no NaN or
 * infinity: such a value is null in "value" and its index is listed under
 * "nonfinite": {"NaN": [...], "inf": [...], "-inf": [...]} (keys present
 * only when used).  Numbers are written with %.17g: they read back to the
 * same double.
 *
 * export_compare: {"runs": [document, ...], "differences": {"train.lr":
 * [0.002, 0.001], ...}} — every spec key, by dotted path, whose value is
 * not the same in all runs, with each run's value (null where absent).
 *
 * The document streams through a 64 KiB buffer; a history's points are
 * held as numbers (20-odd bytes each), never as text. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <loom/exporter.h>

typedef struct ctx {
	const loom_host *host;
	loom_instance *ins;
} ctx;

static int
json_init(loom_instance *ins, const loom_host *host, void *p)
{
	ctx *c = p;
	c->host = host;
	c->ins = ins;
	return 0;
}

/* ------------------------------------------------------------------ values */

static int
dump_cb(const char *buf, size_t n, void *arg)
{
	loom_export_writer *o = arg;
	loom_export_writer_put(o, buf, n);
	return loom_export_writer_error(o) == 0 ? 0 : -1;
}

static void
put_json(loom_export_writer *o, const json_t *v)
{
	if (v == NULL) {
		loom_export_writer_puts(o, "null");
		return;
	}
	if (json_dump_callback(v, dump_cb, o, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
		loom_export_writer_fail(o, LOOM_ENOMEM);
}

static void
put_string(loom_export_writer *o, const char *s)
{
	json_t *v = json_string(s ? s : "");
	if (v == NULL) {
		/* Not UTF-8: written as its bytes would corrupt the document. */
		loom_export_writer_fail(o, LOOM_EINVAL);
		return;
	}
	put_json(o, v);
	json_decref(v);
}

/* A source's JSON text, or NULL with the failure logged. */
static json_t *
parse(const ctx *c, const loom_export_source *src, const char *what, const char *text)
{
	json_error_t je;
	json_t *v;

	if (text == NULL)
		return NULL;
	if ((v = json_loads(text, JSON_DECODE_ANY, &je)) == NULL)
		loom_log_error(c->host, c->ins, "run %s: its %s is not JSON (%s at %d:%d)",
		               src->run_id, what, je.text, je.line, je.column);
	return v;
}

/* ------------------------------------------------------------------ history */

typedef struct column {
	size_t n, cap;
	int64_t *step, *wall;
	int32_t *epoch;
	uint8_t *scope;
	double *value;
	int failed;
} column;

/* Resize one column; *p is kept when realloc fails. */
static int
resize(void *p, size_t n, size_t size)
{
	void **col = p, *q = realloc(*col, n * size);
	if (q == NULL)
		return LOOM_ENOMEM;
	*col = q;
	return 0;
}

static int
grow(column *h)
{
	size_t cap = h->cap ? h->cap * 2 : 1024;

	if (resize(&h->step, cap, sizeof *h->step) || resize(&h->wall, cap, sizeof *h->wall) ||
	    resize(&h->epoch, cap, sizeof *h->epoch) || resize(&h->scope, cap, sizeof *h->scope) ||
	    resize(&h->value, cap, sizeof *h->value))
		return LOOM_ENOMEM;
	h->cap = cap;
	return 0;
}

static int
collect(void *arg, const loom_metric_point *pt)
{
	column *h = arg;
	int rv;

	if (h->n == h->cap && (rv = grow(h)) != 0) {
		h->failed = rv;
		return rv;
	}
	h->step[h->n] = pt->step;
	h->wall[h->n] = pt->wall_ms;
	h->epoch[h->n] = pt->epoch;
	h->scope[h->n] = (uint8_t)(pt->scope <= LOOM_METRIC_FINAL ? pt->scope : 255);
	h->value[h->n] = pt->value;
	h->n++;
	return 0;
}

static void
column_free(column *h)
{
	free(h->step);
	free(h->wall);
	free(h->epoch);
	free(h->scope);
	free(h->value);
	memset(h, 0, sizeof *h);
}

static const char *
scope_name(uint8_t scope)
{
	static const char *const names[] = {"step", "epoch", "final"};
	return scope <= LOOM_METRIC_FINAL ? names[scope] : "unknown";
}

static void
put_ints(loom_export_writer *o, const char *key, const int64_t *v64, const int32_t *v32, size_t n)
{
	loom_export_writer_printf(o, "\"%s\":[", key);
	for (size_t i = 0; i < n; i++)
		loom_export_writer_printf(o, i ? ",%lld" : "%lld", (long long)(v64 ? v64[i] : v32[i]));
	loom_export_writer_put(o, "]", 1);
}

static const char *
nonfinite_name(double v)
{
	return isnan(v) ? "NaN" : isinf(v) ? (v > 0 ? "inf" : "-inf") : "";
}

/* The indices of the values of one kind of non-finite, as "KIND":[...]. */
static void
put_nonfinite_kind(loom_export_writer *o, const column *h, const char *kind, int *first)
{
	int any = 0;

	for (size_t i = 0; i < h->n; i++) {
		if (strcmp(nonfinite_name(h->value[i]), kind) != 0)
			continue;
		if (!any)
			loom_export_writer_printf(o, "%s\"%s\":[%zu", *first ? "" : ",", kind, i);
		else
			loom_export_writer_printf(o, ",%zu", i);
		any = 1;
		*first = 0;
	}
	if (any)
		loom_export_writer_put(o, "]", 1);
}

static void
put_column(loom_export_writer *o, const column *h)
{
	size_t nonfinite = 0;
	int same_scope = 1, walls = 0, first = 1;

	loom_export_writer_put(o, "{", 1);
	put_ints(o, "step", h->step, NULL, h->n);
	loom_export_writer_put(o, ",", 1);
	put_ints(o, "epoch", NULL, h->epoch, h->n);
	loom_export_writer_puts(o, ",\"value\":[");
	for (size_t i = 0; i < h->n; i++) {
		if (i)
			loom_export_writer_put(o, ",", 1);
		if (isfinite(h->value[i]))
			loom_export_writer_double(o, h->value[i]);
		else {
			loom_export_writer_puts(o, "null");
			nonfinite++;
		}
		same_scope &= h->scope[i] == h->scope[0];
		walls |= h->wall[i] != 0;
	}
	loom_export_writer_put(o, "]", 1);
	if (h->n == 0 || same_scope) {
		loom_export_writer_puts(o, ",\"scope\":");
		put_string(o, h->n ? scope_name(h->scope[0]) : "step");
	} else {
		loom_export_writer_puts(o, ",\"scope\":[");
		for (size_t i = 0; i < h->n; i++)
			loom_export_writer_printf(o, i ? ",\"%s\"" : "\"%s\"", scope_name(h->scope[i]));
		loom_export_writer_put(o, "]", 1);
	}
	if (walls) {
		loom_export_writer_put(o, ",", 1);
		put_ints(o, "wall_ms", h->wall, NULL, h->n);
	}
	if (nonfinite) {
		loom_export_writer_puts(o, ",\"nonfinite\":{");
		put_nonfinite_kind(o, h, "NaN", &first);
		put_nonfinite_kind(o, h, "inf", &first);
		put_nonfinite_kind(o, h, "-inf", &first);
		loom_export_writer_put(o, "}", 1);
	}
	loom_export_writer_put(o, "}", 1);
}

static void
put_history(const ctx *c, loom_export_writer *o, const loom_export_source *src)
{
	loom_export_writer_put(o, "{", 1);
	for (size_t i = 0;
	     src->history && i < src->n_metric_names && loom_export_writer_error(o) == 0;
	     i++) {
		const char *name = src->metric_names[i];
		column h = {0};
		int rv = src->history(src, name, collect, &h);
		if (rv != 0) {
			loom_log_error(c->host, c->ins, "run %s: cannot read the history of %s: %s",
			               src->run_id, name, loom_strerror(h.failed ? h.failed : rv));
			loom_export_writer_fail(o, h.failed ? h.failed : rv);
		}
		if (i)
			loom_export_writer_put(o, ",", 1);
		put_string(o, name);
		loom_export_writer_put(o, ":", 1);
		put_column(o, &h);
		column_free(&h);
	}
	loom_export_writer_put(o, "}", 1);
}

/* ------------------------------------------------------------------ documents */

static json_t *
run_record(const ctx *c, const loom_export_source *src)
{
	json_t *run = parse(c, src, "run record", src->run_json);

	if (!json_is_object(run)) {
		json_decref(run);
		run = json_object();
	}
	json_object_set_new(run, "id", json_string(src->run_id ? src->run_id : ""));
	json_object_set_new(run, "job_id", json_integer(src->job_id));
	json_object_set_new(run, "name", json_string(src->name ? src->name : ""));
	json_object_set_new(run, "state", json_string(src->state ? src->state : ""));
	return run;
}

/* One run's document; its spec is handed back in *spec for comparisons. */
static void
put_document(const ctx *c, loom_export_writer *o, const loom_export_source *src, json_t **spec)
{
	json_t *run = run_record(c, src), *model = parse(c, src, "model", src->model_json);
	json_t *metrics = parse(c, src, "final metrics", src->metrics_json);

	*spec = parse(c, src, "spec", src->spec_json);
	if ((src->spec_json && *spec == NULL) || (src->model_json && model == NULL) ||
	    (src->metrics_json && metrics == NULL))
		loom_export_writer_fail(o, LOOM_ECORRUPT);
	if (json_is_object(metrics))
		json_object_del(metrics, "epochs");
	loom_export_writer_puts(o, "{\"run\":");
	put_json(o, run);
	loom_export_writer_puts(o, ",\"spec\":");
	put_json(o, *spec);
	loom_export_writer_puts(o, ",\"model\":");
	put_json(o, model);
	loom_export_writer_puts(o, ",\"metrics\":");
	put_json(o, metrics);
	loom_export_writer_puts(o, ",\"history\":");
	put_history(c, o, src);
	loom_export_writer_put(o, "}", 1);
	json_decref(run);
	json_decref(model);
	json_decref(metrics);
}

static int
json_export_run(void *p, const loom_export_source *src, const loom_export_sink *sink)
{
	loom_export_writer *o;
	json_t *spec = NULL;
	int rv;

	if ((rv = loom_export_writer_open(sink, &o)) != 0)
		return rv;
	put_document(p, o, src, &spec);
	loom_export_writer_put(o, "\n", 1);
	rv = loom_export_writer_close(o);
	json_decref(spec);
	return rv;
}

/* ------------------------------------------------------------------ compare */

/* Leaves of a spec by dotted path; arrays are values, not descended. */
static void
flatten(json_t *into, const char *path, json_t *v)
{
	const char *key;
	json_t *e;

	if (!json_is_object(v) || json_object_size(v) == 0) {
		if (*path)
			json_object_set(into, path, v);
		return;
	}
	json_object_foreach(v, key, e) {
		size_t n = strlen(path) + strlen(key) + 2;
		char *sub = malloc(n);
		if (sub == NULL)
			return;
		snprintf(sub, n, "%s%s%s", path, *path ? "." : "", key);
		flatten(into, sub, e);
		free(sub);
	}
}

static json_t *
differences(json_t *const *specs, size_t n)
{
	json_t *flat = json_array(), *all = json_object(), *out = json_object(), *v;
	const char *key;

	for (size_t i = 0; i < n; i++) {
		json_t *f = json_object();
		flatten(f, "", specs[i]);
		json_array_append_new(flat, f);
		json_object_foreach(f, key, v)
			json_object_set(all, key, json_null());
	}
	json_object_foreach(all, key, v) {
		json_t *vals = json_array(), *first = json_object_get(json_array_get(flat, 0), key);
		int differ = 0;
		for (size_t i = 0; i < n; i++) {
			json_t *x = json_object_get(json_array_get(flat, i), key);
			differ |= !(x && first && json_equal(x, first));
			json_array_append(vals, x ? x : json_null());
		}
		if (differ)
			json_object_set_new(out, key, vals);
		else
			json_decref(vals);
	}
	json_decref(flat);
	json_decref(all);
	return out;
}

static int
json_export_compare(void *p, const loom_export_source *const *srcs, size_t n,
                    const loom_export_sink *sink)
{
	loom_export_writer *o;
	json_t **specs = calloc(n ? n : 1, sizeof *specs), *diff;
	int rv;

	if (specs == NULL)
		return LOOM_ENOMEM;
	if ((rv = loom_export_writer_open(sink, &o)) != 0) {
		free(specs);
		return rv;
	}
	loom_export_writer_puts(o, "{\"runs\":[");
	for (size_t i = 0; i < n && loom_export_writer_error(o) == 0; i++) {
		if (i)
			loom_export_writer_put(o, ",", 1);
		put_document(p, o, srcs[i], &specs[i]);
	}
	loom_export_writer_puts(o, "],\"differences\":");
	diff = differences(specs, n);
	put_json(o, diff);
	loom_export_writer_puts(o, "}\n");
	rv = loom_export_writer_close(o);
	json_decref(diff);
	for (size_t i = 0; i < n; i++)
		json_decref(specs[i]);
	free(specs);
	return rv;
}

static const loom_exporter_ops ops = {
	.size = sizeof ops,
	.caps = LOOM_EXPORT_COMPARE,
	.format = "json",
	.extension = ".json",
	.media_type = "application/json",
	.export_run = json_export_run,
	.export_compare = json_export_compare,
};

LOOM_PLUGIN_DEFINE(exporter_json,
                   .kind = LOOM_KIND_EXPORTER,
                   .name = "exporter-json",
                   .version = "1.0.0",
                   .description = "a run's record, spec, model, final metrics and columnar "
                                  "histories as one JSON document",
                   .flags = LOOM_PLUGIN_THREAD_SAFE,
                   .ctx_size = sizeof(ctx),
                   .init = json_init,
                   .ops = &ops)

/* exporter-report: several runs side by side — their settings with the
 * differences highlighted, their final metrics with the best per row
 * marked, and one chart per metric they all have, a colour per run. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

typedef struct runs {
	const loom_export_source *const *src;
	size_t n;
	json_t **spec;           /* flattened */
	json_t **metrics;
	char **label;            /* "1 · name", unique even when names are not */
} runs;

static void
runs_free(runs *r)
{
	for (size_t i = 0; i < r->n; i++) {
		if (r->spec)
			json_decref(r->spec[i]);
		if (r->metrics)
			json_decref(r->metrics[i]);
		if (r->label)
			free(r->label[i]);
	}
	free(r->spec);
	free(r->metrics);
	free(r->label);
}

static int
runs_load(runs *r, const loom_export_source *const *srcs, size_t n)
{
	memset(r, 0, sizeof *r);
	r->src = srcs;
	r->n = n;
	r->spec = calloc(n, sizeof *r->spec);
	r->metrics = calloc(n, sizeof *r->metrics);
	r->label = calloc(n, sizeof *r->label);
	if (r->spec == NULL || r->metrics == NULL || r->label == NULL)
		return LOOM_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_t *spec = report_parse(srcs[i]->spec_json);
		const char *name = report_run_label(srcs[i]);
		size_t len = strlen(name) + 32;
		r->spec[i] = report_flatten(spec);
		json_decref(spec);
		r->metrics[i] = report_parse(srcs[i]->metrics_json);
		if ((r->label[i] = malloc(len)) == NULL || r->spec[i] == NULL)
			return LOOM_ENOMEM;
		snprintf(r->label[i], len, "%zu · %s", i + 1, name);
	}
	return 0;
}

/* ------------------------------------------------------------------ the runs */

/* The runs, with the kind of model each kept when one says (model.kind =
 * "auto" keeps a Transformer, a linear map, a naive forecast or an
 * average). */
static void
section_runs(html_out *o, const runs *r)
{
	bool kinds = false;

	for (size_t i = 0; i < r->n; i++)
		kinds = kinds || report_kept_kind(r->metrics[i]) != NULL;
	html_raw(o, "<section id=\"runs\">\n<div class=\"scroll\"><table class=\"runs\"><thead><tr>"
	            "<th scope=\"col\">run</th><th scope=\"col\">id</th>"
	            "<th scope=\"col\">state</th>");
	if (kinds)
		html_raw(o, "<th scope=\"col\">model kept</th>");
	html_raw(o, "</tr></thead><tbody>\n");
	for (size_t i = 0; i < r->n; i++) {
		html_rawf(o, "<tr><th scope=\"row\"><span class=\"swatch\" style=\"color:%s\">■</span> ",
		          chart_color(i));
		html_text(o, r->label[i]);
		html_raw(o, "</th><td>");
		html_text(o, r->src[i]->run_id && *r->src[i]->run_id ? r->src[i]->run_id : "—");
		html_raw(o, "</td><td>");
		html_text(o, r->src[i]->state && *r->src[i]->state ? r->src[i]->state : "unknown");
		if (kinds) {
			const char *kind = report_kept_kind(r->metrics[i]);
			html_raw(o, "</td><td>");
			if (kind)
				html_text(o, kind);
			else
				html_raw(o, "<span class=\"missing\">not recorded</span>");
		}
		html_raw(o, "</td></tr>\n");
	}
	html_raw(o, "</tbody></table></div>\n</section>\n");
}

/* ------------------------------------------------------------------ settings */

static void
header_row(html_out *o, const runs *r, const char *first)
{
	html_raw(o, "<thead><tr><th scope=\"col\">");
	html_text(o, first);
	html_raw(o, "</th>");
	for (size_t i = 0; i < r->n; i++) {
		html_raw(o, "<th scope=\"col\">");
		html_text(o, r->label[i]);
		html_raw(o, "</th>");
	}
	html_raw(o, "</tr></thead>");
}

/* Every key of the runs' specs, in the order they first appear. */
static json_t *
all_keys(json_t *const *objs, size_t n)
{
	json_t *keys = json_object(), *v;
	const char *key;

	for (size_t i = 0; i < n; i++) {
		json_object_foreach(objs[i], key, v)
			json_object_set_new(keys, key, json_true());
	}
	return keys;
}

static bool
differs(const runs *r, const char *key)
{
	const json_t *first = json_object_get(r->spec[0], key);

	for (size_t i = 1; i < r->n; i++) {
		const json_t *v = json_object_get(r->spec[i], key);
		if ((first == NULL) != (v == NULL) || (v && !json_equal((json_t *)first, (json_t *)v)))
			return true;
	}
	return false;
}

static void
section_params(html_out *o, const runs *r)
{
	json_t *keys = all_keys(r->spec, r->n), *unused;
	const char *key;
	size_t ndiff = 0;

	html_raw(o, "<section id=\"params\">\n<h2>Settings</h2>\n");
	if (json_object_size(keys) == 0) {
		report_missing(o, "None of the runs has a job spec to compare.");
		html_raw(o, "</section>\n");
		json_decref(keys);
		return;
	}
	json_object_foreach(keys, key, unused)
		ndiff += differs(r, key);
	html_rawf(o, "<p>%zu of %zu settings differ (highlighted).</p>\n", ndiff,
	          json_object_size(keys));
	html_raw(o, "<div class=\"scroll\"><table class=\"params\">");
	header_row(o, r, "setting");
	html_raw(o, "<tbody>\n");
	json_object_foreach(keys, key, unused) {
		html_raw(o, differs(r, key) ? "<tr class=\"diff\"><th scope=\"row\">"
		                            : "<tr><th scope=\"row\">");
		html_text(o, key);
		html_raw(o, "</th>");
		for (size_t i = 0; i < r->n; i++) {
			const json_t *v = json_object_get(r->spec[i], key);
			html_raw(o, "<td>");
			if (v)
				html_json_value(o, v);
			else
				html_raw(o, "<span class=\"missing\">not set</span>");
			html_raw(o, "</td>");
		}
		html_raw(o, "</tr>\n");
	}
	html_raw(o, "</tbody></table></div>\n</section>\n");
	json_decref(keys);
}

/* ------------------------------------------------------------------ final metrics */

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void
metric_row(html_out *o, const runs *r, const char *split, const char *metric, double *v,
           bool *has)
{
	int dir = report_direction(metric), best = -1;
	size_t rivals = 0;

	for (size_t i = 0; i < r->n; i++) {
		json_t *x = json_object_get(json_object_get(r->metrics[i], split), metric);
		has[i] = json_is_number(x);
		v[i] = json_number_value(x);
		if (dir == 0 || !has[i] || v[i] != v[i])
			continue;
		rivals++;
		if (best < 0 || (dir < 0 ? v[i] < v[best] : v[i] > v[best]))
			best = (int)i;
	}
	if (rivals < 2)
		best = -1;
	html_raw(o, "<tr><th scope=\"row\">");
	html_text(o, split);
	html_raw(o, " ");
	html_text(o, metric);
	html_raw(o, "</th>");
	for (size_t i = 0; i < r->n; i++) {
		if (!has[i]) {
			html_raw(o, "<td class=\"num\">—</td>");
			continue;
		}
		html_raw(o, (int)i == best ? "<td class=\"num best\">" : "<td class=\"num\">");
		html_number(o, v[i]);
		html_raw(o, "</td>");
	}
	html_raw(o, "</tr>\n");
}

static void
section_metrics(html_out *o, const runs *r)
{
	static const char *const splits[] = {"test", "validation", "train"};
	double *v = calloc(r->n, sizeof *v);
	bool *has = calloc(r->n, sizeof *has), any = false;

	html_raw(o, "<section id=\"metrics\">\n<h2>Final metrics</h2>\n");
	if (v == NULL || has == NULL) {
		o->err = o->err ? o->err : LOOM_ENOMEM;
		goto out;
	}
	for (size_t s = 0; s < 3; s++) {
		json_t **per = calloc(r->n, sizeof *per), *keys, *unused;
		const char *key;
		if (per == NULL) {
			o->err = o->err ? o->err : LOOM_ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < r->n; i++) {
			per[i] = json_object_get(r->metrics[i], splits[s]);
			per[i] = json_is_object(per[i]) ? per[i] : NULL;
		}
		/* the runs' headline metrics first, in their heads' order; then
		 * the others by name */
		keys = json_object();
		for (size_t i = 0; i < r->n; i++) {
			json_t *h = report_headline(r->metrics[i]), *x;
			size_t k;
			json_array_foreach(h, k, x) {
				for (size_t j = 0; j < r->n; j++)
					if (json_is_number(json_object_get(per[j], json_string_value(x))))
						json_object_set_new(keys, json_string_value(x), json_true());
			}
			json_decref(h);
		}
		{
			size_t cap = 0, n = 0;
			for (size_t i = 0; i < r->n; i++)
				cap += json_object_size(per[i]);
			const char **rest = calloc(cap + 1, sizeof *rest);
			for (size_t i = 0; rest && i < r->n; i++) {
				json_t *x;
				json_object_foreach(per[i], key, x) {
					if (json_is_number(x) && json_object_get(keys, key) == NULL) {
						json_object_set_new(keys, key, json_false());
						rest[n++] = key;
					}
				}
			}
			/* re-add the rest in name order after the headline */
			if (rest) {
				qsort(rest, n, sizeof *rest, by_name);
				json_t *ordered = json_object(), *flag;
				json_object_foreach(keys, key, flag)
					if (json_is_true(flag))
						json_object_set_new(ordered, key, json_true());
				for (size_t k = 0; k < n; k++)
					json_object_set_new(ordered, rest[k], json_false());
				json_decref(keys);
				keys = ordered;
			}
			free(rest);
		}
		if (json_object_size(keys) > 0 && !any) {
			html_raw(o, "<div class=\"scroll\"><table class=\"metrics\">");
			header_row(o, r, "metric");
			html_raw(o, "<tbody>\n");
			any = true;
		}
		json_object_foreach(keys, key, unused)
			metric_row(o, r, splits[s], key, v, has);
		json_decref(keys);
		free(per);
	}
	if (any)
		html_raw(o, "</tbody></table></div>\n<p>✓ marks the best run in a row (lower is "
		            "better for losses and errors, higher for accuracy, F1 and the like).</p>\n");
	else
		report_missing(o, "None of the runs has final metrics (metrics.json).");
out:
	html_raw(o, "</section>\n");
	free(v);
	free(has);
}

/* ------------------------------------------------------------------ charts */

static bool
has_metric(const loom_export_source *src, const char *name)
{
	if (src->history == NULL)
		return false;
	for (size_t i = 0; i < src->n_metric_names; i++) {
		if (strcmp(src->metric_names[i], name) == 0)
			return true;
	}
	return false;
}

static void
section_charts(html_out *o, const report_ctx *c, const runs *r)
{
	const loom_export_source *first = r->src[0];
	chart_series *series = calloc(r->n, sizeof *series);
	size_t drawn = 0;

	html_raw(o, "<section id=\"charts\">\n<h2>Metrics over training</h2>\n");
	if (series == NULL) {
		o->err = o->err ? o->err : LOOM_ENOMEM;
		goto out;
	}
	for (size_t m = 0; first->history && m < first->n_metric_names; m++) {
		const char *name = first->metric_names[m];
		chart ch = {.title = name, .ylabel = name, .series = series, .n = r->n,
		            .width = (int)c->chart_width, .height = (int)c->chart_height};
		bool common = true;
		for (size_t i = 1; i < r->n; i++)
			common = common && has_metric(r->src[i], name);
		if (!common)
			continue;
		for (size_t i = 0; i < r->n; i++) {
			memset(&series[i], 0, sizeof series[i]);
			series[i].label = r->label[i];
			series[i].color = chart_color(i);
			if (chart_scan(&series[i], r->src[i], name) != 0)
				series[i].n = 0;
		}
		html_elem(o, "h3", NULL, name);
		chart_draw(o, &ch);
		drawn++;
	}
	if (drawn == 0)
		report_missing(o, "The runs share no metric with a history, so there is nothing to "
		                  "overlay.");
out:
	html_raw(o, "</section>\n");
	free(series);
}

/* ------------------------------------------------------------------ export_compare */

int
report_compare(void *p, const loom_export_source *const *srcs, size_t n,
               const loom_export_sink *sink)
{
	report_ctx *c = p;
	html_out o;
	runs r;
	char title[64];
	int rv;

	if (srcs == NULL || sink == NULL || sink->write == NULL || n == 0) {
		c->host->log(c->ins, LOOM_LOG_ERROR, "a comparison needs at least one run; "
		             "give the runs to compare");
		return LOOM_EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		if (srcs[i] == NULL)
			return LOOM_EINVAL;
	}
	if ((rv = runs_load(&r, srcs, n)) != 0) {
		runs_free(&r);
		return rv;
	}
	snprintf(title, sizeof title, "Comparison of %zu run%s", n, n == 1 ? "" : "s");
	html_init(&o, sink);
	report_begin(&o, title);
	html_raw(&o, "<header>\n<h1>");
	html_text(&o, title);
	html_raw(&o, "</h1>\n</header>\n");
	section_runs(&o, &r);
	section_metrics(&o, &r);
	section_charts(&o, c, &r);
	section_params(&o, &r);
	report_end(&o);
	if ((rv = html_finish(&o)) != 0)
		c->host->log(c->ins, LOOM_LOG_ERROR, "comparison of %zu run%s not written: %s", n,
		             n == 1 ? "" : "s", loom_strerror(rv));
	runs_free(&r);
	return rv;
}

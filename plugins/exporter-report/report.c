/* exporter-report — a run as one self-contained HTML page for a person to
 * read: test metrics beside the naive baselines, metric charts drawn as
 * inline SVG, the data, the spec, the resources and time used.  No
 * script, stylesheet, font or image is fetched: the page opens offline,
 * on a phone, and prints.  The same source gives the same bytes (nothing
 * is stamped with the current time), so reports can be diffed.
 *
 * A run that kept a model chosen among several (model.kind = "auto") gets
 * a "Model choice" section after its metrics (choice.c): the kind kept,
 * why, and every candidate's validation and test figures.  A run that
 * learned an increment (metrics.json's "continual") gets a "Continual
 * learning" section next (continual.c): the R matrix as a heatmap, the
 * summary figures, the strategies, and this model against the version it
 * started from on the shared holdout.
 *
 * Everything taken from the source is escaped.  What the source lacks (no
 * history, no metrics, no model) is said in place of its section. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

/* ------------------------------------------------------------------ header */

/* run_json keys shown in the header, and how. */
static void
header_time(html_out *o, const json_t *run, const char *key, const char *label)
{
	const json_t *v = json_object_get(run, key);
	size_t klen = strlen(key);
	bool ms = klen > 3 && strcmp(key + klen - 3, "_ms") == 0;

	if (v == NULL)
		return;
	html_elem(o, "dt", NULL, label);
	html_raw(o, "<dd>");
	if (ms && json_is_number(v) && strncmp(key, "duration", 8) == 0)
		html_duration_ms(o, json_number_value(v));
	else if (ms && json_is_number(v))
		html_time_ms(o, json_number_value(v));
	else
		html_json_value(o, v);
	html_raw(o, "</dd>\n");
}

static void
section_header(html_out *o, const loom_export_source *src, const json_t *run)
{
	static const char *const times[][2] = {
		{"submitted_ms", "Submitted"}, {"submitted", "Submitted"},
		{"started_ms", "Started"}, {"started", "Started"},
		{"finished_ms", "Finished"}, {"finished", "Finished"},
		{"ended_ms", "Finished"}, {"duration_ms", "Duration"}, {"duration", "Duration"},
	};
	bool dated = false;

	html_raw(o, "<header>\n<h1>");
	html_text(o, report_run_label(src));
	html_raw(o, "</h1>\n<dl class=\"meta\">\n");
	if (src->run_id && *src->run_id) {
		html_raw(o, "<dt>Run</dt><dd>");
		html_text(o, src->run_id);
		html_raw(o, "</dd>\n");
	}
	if (src->job_id > 0)
		html_rawf(o, "<dt>Task</dt><dd>%lld</dd>\n", (long long)src->job_id);
	html_raw(o, "<dt>State</dt><dd>");
	html_text(o, src->state && *src->state ? src->state : "unknown");
	html_raw(o, "</dd>\n");
	for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
		dated = dated || json_object_get(run, times[i][0]);
		header_time(o, run, times[i][0], times[i][1]);
	}
	if (!dated)
		html_raw(o, "<dt>Dates</dt><dd class=\"missing\">not recorded: the run's record "
		            "(times, resources) was not given to the exporter</dd>\n");
	html_raw(o, "</dl>\n</header>\n");
}

/* ------------------------------------------------------------------ spec */

static void
section_spec(html_out *o, const json_t *spec)
{
	json_t *scalars = json_object(), *v;
	const char *key;

	html_raw(o, "<section id=\"spec\">\n<h2>Job spec</h2>\n");
	if (spec == NULL || json_object_size(spec) == 0) {
		report_missing(o, "No job spec: the run's weights carry none and none was given.");
		json_decref(scalars);
		html_raw(o, "</section>\n");
		return;
	}
	json_object_foreach((json_t *)spec, key, v) {
		if (!json_is_object(v))
			json_object_set(scalars, key, v);
	}
	if (json_object_size(scalars) > 0)
		report_kv_table(o, scalars);
	html_raw(o, "<div class=\"groups\">\n");
	json_object_foreach((json_t *)spec, key, v) {
		if (!json_is_object(v))
			continue;
		html_raw(o, "<div>");
		html_elem(o, "h3", NULL, key);
		if (json_object_size(v) == 0)
			report_missing(o, "(empty)");
		else
			report_kv_table(o, v);
		html_raw(o, "</div>\n");
	}
	html_raw(o, "</div>\n");
	json_decref(scalars);
	html_raw(o, "</section>\n");
}

/* ------------------------------------------------------------------ data */

static void
kv_row(html_out *o, const char *label, const json_t *v)
{
	if (v == NULL)
		return;
	html_raw(o, "<tr><th scope=\"row\">");
	html_text(o, label);
	html_raw(o, json_is_number(v) ? "</th><td class=\"num\">" : "</th><td>");
	html_json_value(o, v);
	html_raw(o, "</td></tr>\n");
}

/* "temp: shift 53.7, scale 10" for each input the model normalizes. */
static void
normalization_row(html_out *o, const json_t *sdata, const json_t *mdata)
{
	const json_t *names = json_object_get(mdata, "inputs");
	const json_t *shift = json_object_get(mdata, "input_shift");
	const json_t *scale = json_object_get(mdata, "input_scale");
	const json_t *method = json_object_get(sdata, "normalize");

	if (method == NULL && shift == NULL)
		return;
	html_raw(o, "<tr><th scope=\"row\">normalization</th><td>");
	if (method)
		html_json_value(o, method);
	for (size_t i = 0; i < json_array_size(shift); i++) {
		html_raw(o, i == 0 && method ? "; " : i == 0 ? "" : "; ");
		html_text(o, json_string_value(json_array_get(names, i)));
		html_raw(o, json_array_get(names, i) ? ": shift " : "shift ");
		html_number(o, json_number_value(json_array_get(shift, i)));
		html_raw(o, ", scale ");
		html_number(o, json_number_value(json_array_get(scale, i)));
	}
	html_raw(o, "</td></tr>\n");
}

/* The keys of obj whose names speak of data (rows, windows, the data
 * file's hash), and obj's own "data" object. */
static void
data_keys(html_out *o, const json_t *obj, const char *from)
{
	json_t *flat = report_flatten(obj), *v;
	const char *key;

	json_object_foreach(flat, key, v) {
		if (strncmp(key, "data", 4) == 0 || strstr(key, "rows") || strstr(key, "windows")) {
			char label[256];
			snprintf(label, sizeof label, "%s (%s)", key, from);
			kv_row(o, label, v);
		}
	}
	json_decref(flat);
}

static void
section_data(html_out *o, const json_t *spec, const json_t *model, const json_t *metrics,
             const json_t *run)
{
	static const char *const known[] = {"inputs", "targets", "classes", "input_shift",
	                                    "input_scale"};
	const json_t *sdata = json_object_get(spec, "data");
	const json_t *mdata = json_object_get(model, "data");
	json_t *v;
	const char *key;

	html_raw(o, "<section id=\"data\">\n<h2>Data</h2>\n");
	if (sdata == NULL && mdata == NULL)
		report_missing(o, "No data description: the spec has no data group and the run no "
		                  "model description.");
	html_raw(o, "<div class=\"scroll\"><table class=\"kv\"><tbody>\n");
	kv_row(o, "file", json_object_get(sdata, "path"));
	kv_row(o, "inputs", json_object_get(mdata, "inputs") ? json_object_get(mdata, "inputs")
	                                                      : json_object_get(sdata, "features"));
	kv_row(o, "targets", json_object_get(mdata, "targets") ? json_object_get(mdata, "targets")
	                                                        : json_object_get(sdata, "target"));
	kv_row(o, "classes", json_object_get(mdata, "classes"));
	normalization_row(o, sdata, mdata);
	kv_row(o, "split (train, validation, test)", json_object_get(sdata, "split"));
	json_object_foreach((json_t *)mdata, key, v) {
		bool seen = false;
		for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
			seen = seen || strcmp(key, known[i]) == 0;
		if (!seen)
			kv_row(o, key, v);
	}
	data_keys(o, json_object_get(metrics, "run"), "training");
	data_keys(o, run, "run record");
	html_raw(o, "</tbody></table></div>\n</section>\n");
}

/* ------------------------------------------------------------------ charts */

/* One chart per group of metrics sharing units (report_chart_group). */
static void
section_charts(html_out *o, const report_ctx *c, const loom_export_source *src)
{
	chart_series *series = calloc(src->n_metric_names + 1, sizeof *series);
	bool *done = calloc(src->n_metric_names + 1, sizeof *done);
	char group[128], other[128];
	size_t confusion = 0;

	html_raw(o, "<section id=\"charts\">\n<h2>Metrics over training</h2>\n");
	if (series == NULL || done == NULL) {
		o->err = o->err ? o->err : LOOM_ENOMEM;
	} else if (src->history == NULL || src->n_metric_names == 0) {
		report_missing(o, "No metric history was kept for this run, so there is nothing to "
		                  "chart: loomd's tracker keeps one, and a run's metrics.json gives "
		                  "its per-epoch figures.");
	}
	for (size_t i = 0; series && done && src->history && i < src->n_metric_names; i++) {
		chart ch = {.series = series, .width = (int)c->chart_width,
		            .height = (int)c->chart_height};
		if (done[i])
			continue;
		/* counts of a confusion matrix over time are noise as lines; the
		 * test split's matrix is a table under Final metrics */
		if (strcmp(report_chart_group(src->metric_names[i], group, sizeof group),
		           "confusion") == 0) {
			confusion++;
			continue;
		}
		for (size_t k = i; k < src->n_metric_names; k++) {
			if (done[k] || strcmp(report_chart_group(src->metric_names[k], other,
			                                         sizeof other), group) != 0)
				continue;
			done[k] = true;
			chart_series *s = &series[ch.n];
			memset(s, 0, sizeof *s);
			s->label = src->metric_names[k];
			s->color = chart_color(ch.n);
			if (chart_scan(s, src, src->metric_names[k]) != 0) {
				report_missing(o, "A metric's history could not be read; its chart is left "
				                  "out.");
				s->n = 0;
			}
			ch.n++;
		}
		ch.title = ch.ylabel = group;
		html_elem(o, "h3", NULL, group);
		chart_draw(o, &ch);
	}
	if (confusion > 0)
		html_rawf(o, "<p>%zu confusion-matrix counts are not charted; the test split's "
		          "matrix is under Final metrics.</p>\n", confusion);
	html_raw(o, "</section>\n");
	free(series);
	free(done);
}

/* ------------------------------------------------------------------ final metrics */

/* The index of the best of n values for metric; -1 when the name does
 * not say which way is better, or fewer than two values compete. */
static int
best_of(const char *metric, const double *v, const bool *has, size_t n)
{
	int dir = report_direction(metric), best = -1;
	size_t rivals = 0;

	for (size_t i = 0; dir != 0 && i < n; i++) {
		if (!has[i] || v[i] != v[i])
			continue;
		rivals++;
		if (best < 0 || (dir < 0 ? v[i] < v[best] : v[i] > v[best]))
			best = (int)i;
	}
	return rivals >= 2 ? best : -1;
}

static void
value_cell(html_out *o, bool has, double v, bool best)
{
	if (!has) {
		html_raw(o, "<td class=\"num\">—</td>");
		return;
	}
	html_raw(o, best ? "<td class=\"num best\">" : "<td class=\"num\">");
	html_number(o, v);
	html_raw(o, "</td>");
}

/* ------------------------------------------------------------------ headline and details */

/* What a person reads first: the headline names (report_headline) and
 * the detail tables of metrics.json ("details"), or, for a metrics.json
 * that declares none, the tables loomd's fallback finds
 * (docs/tracking.md): the classification head's per-class figures and
 * confusion cells, by name. */
typedef struct reading {
	json_t *headline;   /* array of names */
	json_t *details;    /* array of tables: name, title, rows, columns, cells */
	json_t *detailed;   /* object: every name a table shows */
} reading;

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static json_t *
names_array(const char **v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

/* The fallback's tables over one split group. */
static json_t *
fallback_details(const json_t *group)
{
	static const char *stats[] = {"precision", "recall", "f1"};
	const char **classes = calloc(json_object_size(group) + 1, sizeof *classes), *k;
	json_t *details = json_array(), *v;
	size_t n = 0;
	char name[512];

	if (classes == NULL)
		return details;
	json_object_foreach((json_t *)group, k, v)
		if (strncmp(k, "precision.", 10) == 0 && k[10] != '\0')
			classes[n++] = k + 10;
	qsort(classes, n, sizeof *classes, by_name);
	if (n > 0) {
		json_t *cells = json_array();
		for (size_t i = 0; i < n; i++) {
			json_t *line = json_array();
			for (size_t j = 0; j < 3; j++)
				json_array_append_new(line, json_sprintf("%s.%s", stats[j], classes[i]));
			json_array_append_new(cells, line);
		}
		json_array_append_new(details, json_pack("{s:s, s:s, s:s, s:o, s:o, s:o}", "name",
		                                         "per_class", "title", "Per class",
		                                         "row_header", "class", "rows",
		                                         names_array(classes, n), "columns",
		                                         names_array(stats, 3), "cells", cells));
		snprintf(name, sizeof name, "confusion.%s.%s", classes[0], classes[0]);
		if (json_object_get(group, name)) {
			cells = json_array();
			for (size_t i = 0; i < n; i++) {
				json_t *line = json_array();
				for (size_t j = 0; j < n; j++)
					json_array_append_new(line, json_sprintf("confusion.%s.%s", classes[i],
					                                         classes[j]));
				json_array_append_new(cells, line);
			}
			json_array_append_new(
				details, json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o}", "name", "confusion",
			                       "title", "Confusion matrix", "row_header", "true",
			                       "column_header", "predicted", "rows", names_array(classes, n),
			                       "columns", names_array(classes, n), "cells", cells));
		}
	}
	free(classes);
	return details;
}

/* The split a person reads: test when it has figures, else validation. */
static const char *
read_split(const json_t *metrics)
{
	return json_object_size(json_object_get(metrics, "test")) > 0 ? "test" : "validation";
}

static void
reading_of(const json_t *metrics, reading *rd)
{
	const json_t *group = json_object_get(metrics, read_split(metrics));
	const json_t *h = json_object_get(metrics, "headline"), *t, *line, *c;
	size_t i, j, k;

	rd->detailed = json_object();
	rd->headline = report_headline(metrics);
	if (json_is_array(h) && json_array_size(h) > 0) {
		rd->details = json_array();
		json_array_foreach(json_object_get(metrics, "details"), i, t)
			if (json_is_array(json_object_get(t, "cells")))
				json_array_append(rd->details, (json_t *)t);
	} else {
		rd->details = fallback_details(group);
	}
	json_array_foreach(rd->details, i, t)
		json_array_foreach(json_object_get(t, "cells"), j, line)
			json_array_foreach(line, k, c)
				if (json_is_string(c))
					json_object_set_new(rd->detailed, json_string_value(c), json_true());
}

static void
reading_free(reading *rd)
{
	json_decref(rd->headline);
	json_decref(rd->details);
	json_decref(rd->detailed);
}

static bool
is_headline(const reading *rd, const char *key)
{
	size_t i;
	json_t *v;
	json_array_foreach(rd->headline, i, v)
		if (strcmp(json_string_value(v), key) == 0)
			return true;
	return false;
}

/* Each detail table of the split people read, with its labels: a
 * confusion matrix as a matrix of true (rows) by predicted (columns). */
static void
details_tables(html_out *o, const reading *rd, const json_t *metrics)
{
	const char *split = read_split(metrics);
	const json_t *group = json_object_get(metrics, split), *t, *v, *line;
	size_t i, r, c;

	json_array_foreach(rd->details, i, t) {
		const json_t *rows = json_object_get(t, "rows"), *cols = json_object_get(t, "columns");
		const char *rh = json_string_value(json_object_get(t, "row_header"));
		const char *ch = json_string_value(json_object_get(t, "column_header"));
		const char *name = json_string_value(json_object_get(t, "name"));
		html_raw(o, "<h3>");
		html_text(o, json_string_value(json_object_get(t, "title")));
		html_rawf(o, " (%s)</h3>\n<div class=\"scroll\"><table class=\"", split);
		html_text(o, name ? name : "details");
		html_raw(o, "\"><thead><tr><th scope=\"col\">");
		html_text(o, rh ? rh : "");
		if (ch) {
			html_raw(o, " \\ ");
			html_text(o, ch);
		}
		html_raw(o, "</th>");
		json_array_foreach(cols, c, v)
			html_elem(o, "th", NULL, json_string_value(v));
		html_raw(o, "</tr></thead><tbody>\n");
		json_array_foreach(rows, r, v) {
			line = json_array_get(json_object_get(t, "cells"), r);
			html_raw(o, "<tr><th scope=\"row\">");
			html_text(o, json_string_value(v));
			html_raw(o, "</th>");
			for (c = 0; c < json_array_size(cols); c++) {
				const char *cell = json_string_value(json_array_get(line, c));
				json_t *x = cell ? json_object_get(group, cell) : NULL;
				value_cell(o, json_is_number(x), json_number_value(x), false);
			}
			html_raw(o, "</tr>\n");
		}
		html_raw(o, "</tbody></table></div>\n");
	}
}

/* The baseline's settings (keys that are not test metrics), in its heading. */
static void
baseline_heading(html_out *o, const char *name, const json_t *b, const json_t *test)
{
	const char *key;
	json_t *v;
	bool first = true;

	html_raw(o, "<th scope=\"col\">");
	html_text(o, name);
	json_object_foreach((json_t *)b, key, v) {
		if (json_object_get(test, key))
			continue;
		html_raw(o, first ? " (" : ", ");
		html_text(o, key);
		html_raw(o, " ");
		html_json_value(o, v);
		first = false;
	}
	html_raw(o, first ? "</th>" : ")</th>");
}

/* The test split's headline metrics (and any figure a baseline has) beside
 * the baselines; the model's column names the kind kept, when known. */
static void
baselines_table(html_out *o, const reading *rd, const json_t *test, const json_t *baselines,
                const char *kind)
{
	size_t nb = json_object_size(baselines), col;
	double *v = calloc(nb + 1, sizeof *v);
	bool *has = calloc(nb + 1, sizeof *has);
	const char *key, *bname;
	json_t *tv, *b;

	if (v == NULL || has == NULL) {
		o->err = o->err ? o->err : LOOM_ENOMEM;
		goto out;
	}
	html_raw(o, "<h3>Test metrics beside the baselines</h3>\n<div class=\"scroll\"><table "
	            "class=\"baselines\"><thead><tr><th scope=\"col\">metric</th>"
	            "<th scope=\"col\">model");
	if (kind) {
		html_raw(o, " (");
		html_text(o, kind);
		html_raw(o, ")");
	}
	html_raw(o, "</th>");
	json_object_foreach((json_t *)baselines, bname, b)
		baseline_heading(o, bname, b, test);
	html_raw(o, "</tr></thead><tbody>\n");
	json_t *rows = json_array(), *row;
	size_t ri;
	json_array_foreach(rd->headline, ri, row)
		json_array_append(rows, row);
	json_object_foreach((json_t *)test, key, tv) {
		bool any = false;
		json_object_foreach((json_t *)baselines, bname, b)
			any = any || json_object_get(b, key) != NULL;
		if (any && !is_headline(rd, key))
			json_array_append_new(rows, json_string(key));
	}
	json_array_foreach(rows, ri, row) {
		key = json_string_value(row);
		tv = json_object_get(test, key);
		if (!json_is_number(tv))
			continue;
		v[0] = json_number_value(tv);
		has[0] = true;
		col = 1;
		json_object_foreach((json_t *)baselines, bname, b) {
			json_t *bv = json_object_get(b, key);
			has[col] = json_is_number(bv);
			v[col++] = json_number_value(bv);
		}
		int best = best_of(key, v, has, nb + 1);
		html_raw(o, "<tr><th scope=\"row\">");
		html_text(o, key);
		html_raw(o, "</th>");
		for (size_t i = 0; i < nb + 1; i++)
			value_cell(o, has[i], v[i], (int)i == best);
		html_raw(o, "</tr>\n");
	}
	json_decref(rows);
	html_raw(o, "</tbody></table></div>\n<p>✓ marks the best value in a row (lower is better "
	            "for losses and errors, higher for accuracy, F1 and the like; rows whose "
	            "name does not say are left unmarked).</p>\n");
out:
	free(v);
	free(has);
}

/* One row per name, one column per split. */
static void
splits_rows(html_out *o, const char *title, const json_t *names, const json_t *metrics)
{
	static const char *const splits[] = {"train", "validation", "test"};
	size_t i;
	json_t *v;

	if (json_array_size(names) == 0)
		return;
	html_rawf(o, "<h3>%s</h3>\n<div class=\"scroll\"><table class=\"splits\"><thead><tr>"
	          "<th scope=\"col\">metric</th>", title);
	for (size_t k = 0; k < 3; k++)
		html_rawf(o, "<th scope=\"col\">%s</th>", splits[k]);
	html_raw(o, "</tr></thead><tbody>\n");
	json_array_foreach(names, i, v) {
		const char *key = json_string_value(v);
		html_raw(o, "<tr><th scope=\"row\">");
		html_text(o, key);
		html_raw(o, "</th>");
		for (size_t k = 0; k < 3; k++) {
			json_t *x = json_object_get(json_object_get(metrics, splits[k]), key);
			value_cell(o, json_is_number(x), json_number_value(x), false);
		}
		html_raw(o, "</tr>\n");
	}
	html_raw(o, "</tbody></table></div>\n");
}

/* The headline metrics per split, in the head's order; then the others no
 * detail table shows, by name. */
static void
splits_table(html_out *o, const reading *rd, const json_t *metrics)
{
	static const char *const splits[] = {"train", "validation", "test"};
	json_t *headline = json_array(), *seen = json_object(), *v;
	const char **rest, *key;
	size_t i, n = 0, cap = 0;

	json_array_foreach(rd->headline, i, v) {
		bool any = false;
		for (size_t k = 0; k < 3; k++)
			any = any || json_is_number(json_object_get(json_object_get(metrics, splits[k]),
			                                            json_string_value(v)));
		if (any)
			json_array_append(headline, v);
		json_object_set_new(seen, json_string_value(v), json_true());
	}
	for (size_t k = 0; k < 3; k++)
		cap += json_object_size(json_object_get(metrics, splits[k]));
	rest = calloc(cap + 1, sizeof *rest);
	for (size_t k = 0; rest && k < 3; k++) {
		json_object_foreach(json_object_get(metrics, splits[k]), key, v) {
			if (!json_is_number(v) || json_object_get(seen, key) ||
			    json_object_get(rd->detailed, key))
				continue;
			json_object_set_new(seen, key, json_true());
			rest[n++] = key;
		}
	}
	if (rest)
		qsort(rest, n, sizeof *rest, by_name);
	splits_rows(o, "Headline metrics per split", headline, metrics);
	json_decref(headline);
	headline = names_array(rest, n);
	splits_rows(o, "Other metrics per split", headline, metrics);
	json_decref(headline);
	json_decref(seen);
	free(rest);
}

static void
section_metrics(html_out *o, const json_t *metrics)
{
	static const char *const shown[] = {"train", "validation", "test", "baselines", "epochs",
	                                    "run", "headline", "details"};
	/* "model" and "candidates" have their section (choice.c) when model
	 * is an object; "continual" and "holdout" theirs (continual.c) when
	 * continual is one */
	bool choice = json_is_object(json_object_get(metrics, "model"));
	bool continual = json_is_object(json_object_get(metrics, "continual"));
	const json_t *test = json_object_get(metrics, "test");
	const json_t *baselines = json_object_get(metrics, "baselines");
	json_t *rest = json_object(), *v;
	const char *key;

	html_raw(o, "<section id=\"metrics\">\n<h2>Final metrics</h2>\n");
	if (metrics == NULL || json_object_size(metrics) == 0)
		report_missing(o, "No final metrics: the run left no metrics.json (it did not "
		                  "finish, or its compute plugin writes none).");
	reading rd = {0};
	reading_of(metrics, &rd);
	splits_table(o, &rd, metrics);
	if (json_is_object(test) && json_object_size(baselines) > 0)
		baselines_table(o, &rd, test, baselines, report_kept_kind(metrics));
	else if (json_is_object(test))
		report_missing(o, "No baselines were computed for this run's head.");
	else if (metrics && json_object_size(metrics) > 0)
		report_missing(o, "No test metrics: the run was not evaluated on a test split.");
	details_tables(o, &rd, metrics);
	reading_free(&rd);
	json_object_foreach((json_t *)metrics, key, v) {
		bool seen = false;
		for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++)
			seen = seen || strcmp(key, shown[i]) == 0;
		seen = seen || (choice && (strcmp(key, "model") == 0 || strcmp(key, "candidates") == 0));
		seen = seen ||
		       (continual && (strcmp(key, "continual") == 0 || strcmp(key, "holdout") == 0));
		if (!seen)
			json_object_set(rest, key, v);
	}
	if (json_object_size(rest) > 0) {
		html_raw(o, "<h3>Other figures</h3>\n");
		report_kv_table(o, rest);
	}
	json_decref(rest);
	html_raw(o, "</section>\n");
}

/* ------------------------------------------------------------------ model */

static void
section_model(html_out *o, const loom_export_source *src, const json_t *model)
{
	json_t *rest = json_object(), *v;
	const char *key;
	uint64_t bytes = 0;

	html_raw(o, "<section id=\"model\">\n<h2>Model</h2>\n");
	if (model == NULL) {
		report_missing(o, "No model description: the run left no weights file "
		                  "(best.safetensors or last.safetensors).");
	} else {
		json_object_foreach((json_t *)model, key, v) {
			if (strcmp(key, "spec") != 0 && strcmp(key, "data") != 0)
				json_object_set(rest, key, v);
		}
		report_kv_table(o, rest);
	}
	for (size_t i = 0; i < src->n_tensors; i++)
		bytes += src->tensors[i].nbytes;
	if (src->n_tensors > 0)
		html_rawf(o, "<p>%zu weight tensors, %llu bytes.</p>\n", src->n_tensors,
		          (unsigned long long)bytes);
	json_decref(rest);
	html_raw(o, "</section>\n");
}

/* ------------------------------------------------------------------ resources, versions */

static void
section_resources(html_out *o, const json_t *run, const json_t *metrics)
{
	const json_t *training = json_object_get(metrics, "run");

	html_raw(o, "<section id=\"resources\">\n<h2>Resources and time</h2>\n");
	if (json_object_size(run) > 0) {
		html_raw(o, "<h3>Run record</h3>\n");
		report_kv_table(o, run);
	} else {
		report_missing(o, "No run record (times, attempts, CPU time, memory): it was not "
		                  "given to the exporter; loomd gives it for its tasks.");
	}
	if (json_object_size(training) > 0) {
		html_raw(o, "<h3>Training</h3>\n");
		report_kv_table(o, training);
	}
	html_raw(o, "</section>\n");
}

/* Every key naming a version, from the run record and the model. */
static void
section_versions(html_out *o, const json_t *run, const json_t *model)
{
	const json_t *from[2] = {run, model};
	json_t *found = json_object(), *v;
	const char *key;

	for (size_t i = 0; i < 2; i++) {
		json_t *flat = report_flatten(from[i]);
		json_object_foreach(flat, key, v) {
			if (strstr(key, "version") && strncmp(key, "spec.", 5) != 0)
				json_object_set(found, key, v);
		}
		json_decref(flat);
	}
	if (json_object_size(found) > 0) {
		html_raw(o, "<section id=\"versions\">\n<h2>Versions</h2>\n");
		report_kv_table(o, found);
		html_raw(o, "</section>\n");
	}
	json_decref(found);
}

/* ------------------------------------------------------------------ the plugin */

static int
report_run(void *p, const loom_export_source *src, const loom_export_sink *sink)
{
	report_ctx *c = p;
	json_t *spec, *model, *metrics, *run;
	html_out o;
	char title[512];
	int rv;

	if (src == NULL || sink == NULL || sink->write == NULL)
		return LOOM_EINVAL;
	spec = report_parse(src->spec_json);
	model = report_parse(src->model_json);
	metrics = report_parse(src->metrics_json);
	run = report_parse(src->run_json);
	snprintf(title, sizeof title, "%s — Loom run report", report_run_label(src));

	html_init(&o, sink);
	report_begin(&o, title);
	/* results first: what a reader looks for before how it was made */
	section_header(&o, src, run);
	section_metrics(&o, metrics);
	report_choice(&o, metrics);
	section_charts(&o, c, src);
	report_continual(&o, metrics);
	section_data(&o, spec, model, metrics, run);
	section_spec(&o, spec);
	section_model(&o, src, model);
	section_resources(&o, run, metrics);
	section_versions(&o, run, model);
	report_end(&o);
	if ((rv = html_finish(&o)) != 0)
		c->host->log(c->ins, LOOM_LOG_ERROR, "report of run \"%s\" not written: %s",
		             report_run_label(src), loom_strerror(rv));
	json_decref(spec);
	json_decref(model);
	json_decref(metrics);
	json_decref(run);
	return rv;
}

static int
report_init(loom_instance *ins, const loom_host *host, void *p)
{
	report_ctx *c = p;

	c->host = host;
	c->ins = ins;
	return 0;
}

static const loom_config_entry config[] = {
	{LOOM_CONFIG_INT, LOOM_CONFIG_RANGE, "chart_width", "640", offsetof(report_ctx, chart_width),
	 "plot width of a chart in SVG units; a history keeps at most 4 points per unit",
	 100, 4000, NULL, {NULL, NULL}},
	{LOOM_CONFIG_INT, LOOM_CONFIG_RANGE, "chart_height", "220",
	 offsetof(report_ctx, chart_height), "plot height of a chart in SVG units", 80, 2000,
	 NULL, {NULL, NULL}},
	LOOM_CONFIG_END,
};

static const loom_exporter_ops ops = {
	.size = sizeof ops,
	.caps = LOOM_EXPORT_COMPARE,
	.format = "html",
	.extension = ".html",
	.media_type = "text/html; charset=utf-8",
	.export_run = report_run,
	.export_compare = report_compare,
};

LOOM_PLUGIN_DEFINE(exporter_report,
                   .kind = LOOM_KIND_EXPORTER,
                   .flags = LOOM_PLUGIN_THREAD_SAFE,
                   .name = "exporter-report",
                   .version = "1.0.0",
                   .description = "HTML reports of runs and comparisons, charts as inline SVG",
                   .config = config,
                   .ctx_size = sizeof(report_ctx),
                   .init = report_init,
                   .ops = &ops)

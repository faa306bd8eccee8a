/* exporter-report — a run as one self-contained HTML page for a person to
 * read: test metrics beside the naive baselines, metric charts drawn as
 * inline SVG, the data, the spec, the resources and time used.  No
 * script, stylesheet, font or image is fetched: the page opens offline,
 * on a phone, and prints.  The same source gives the same bytes (nothing
 * is stamped with the current time), so reports can be diffed.
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

static bool
is_confusion(const char *key)
{
	return strncmp(key, "confusion.", 10) == 0;
}

/* The test split's "confusion.<true>.<predicted>" counts as a matrix. */
static void
confusion_table(html_out *o, const json_t *test)
{
	json_t *classes = json_object(), *v, *unused, *unused2;
	const char *key, *t, *p;
	char name[512];

	json_object_foreach((json_t *)test, key, v) {
		const char *dot;
		if (!is_confusion(key) || (dot = strchr(key + 10, '.')) == NULL)
			continue;
		snprintf(name, sizeof name, "%.*s", (int)(dot - (key + 10)), key + 10);
		json_object_set_new(classes, name, json_true());
	}
	if (json_object_size(classes) > 0) {
		html_raw(o, "<h3>Confusion matrix (test)</h3>\n<div class=\"scroll\"><table "
		            "class=\"confusion\"><thead><tr><th scope=\"col\">true \\ predicted</th>");
		json_object_foreach(classes, p, unused)
			html_elem(o, "th", NULL, p);
		html_raw(o, "</tr></thead><tbody>\n");
		json_object_foreach(classes, t, unused) {
			html_raw(o, "<tr><th scope=\"row\">");
			html_text(o, t);
			html_raw(o, "</th>");
			json_object_foreach(classes, p, unused2) {
				json_t *x;
				snprintf(name, sizeof name, "confusion.%s.%s", t, p);
				x = json_object_get(test, name);
				value_cell(o, json_is_number(x), json_number_value(x), false);
			}
			html_raw(o, "</tr>\n");
		}
		html_raw(o, "</tbody></table></div>\n");
	}
	json_decref(classes);
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

static void
baselines_table(html_out *o, const json_t *test, const json_t *baselines)
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
	            "<th scope=\"col\">model</th>");
	json_object_foreach((json_t *)baselines, bname, b)
		baseline_heading(o, bname, b, test);
	html_raw(o, "</tr></thead><tbody>\n");
	json_object_foreach((json_t *)test, key, tv) {
		if (!json_is_number(tv) || is_confusion(key))
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
	html_raw(o, "</tbody></table></div>\n<p>✓ marks the best value in a row (lower is better "
	            "for losses and errors, higher for accuracy, F1 and the like; rows whose "
	            "name does not say are left unmarked).</p>\n");
out:
	free(v);
	free(has);
}

static void
splits_table(html_out *o, const json_t *metrics)
{
	static const char *const splits[] = {"train", "validation", "test"};
	json_t *names = json_object(), *v;
	const char *key;

	for (size_t i = 0; i < 3; i++) {
		json_object_foreach(json_object_get(metrics, splits[i]), key, v) {
			if (json_is_number(v) && !is_confusion(key))
				json_object_set_new(names, key, json_true());
		}
	}
	if (json_object_size(names) > 0) {
		html_raw(o, "<h3>Final metrics per split</h3>\n<div class=\"scroll\"><table "
		            "class=\"splits\"><thead><tr><th scope=\"col\">metric</th>");
		for (size_t i = 0; i < 3; i++)
			html_rawf(o, "<th scope=\"col\">%s</th>", splits[i]);
		html_raw(o, "</tr></thead><tbody>\n");
		json_object_foreach(names, key, v) {
			html_raw(o, "<tr><th scope=\"row\">");
			html_text(o, key);
			html_raw(o, "</th>");
			for (size_t i = 0; i < 3; i++) {
				json_t *x = json_object_get(json_object_get(metrics, splits[i]), key);
				value_cell(o, json_is_number(x), json_number_value(x), false);
			}
			html_raw(o, "</tr>\n");
		}
		html_raw(o, "</tbody></table></div>\n");
	}
	json_decref(names);
}

static void
section_metrics(html_out *o, const json_t *metrics)
{
	static const char *const shown[] = {"train", "validation", "test", "baselines", "epochs",
	                                    "run"};
	const json_t *test = json_object_get(metrics, "test");
	const json_t *baselines = json_object_get(metrics, "baselines");
	json_t *rest = json_object(), *v;
	const char *key;

	html_raw(o, "<section id=\"metrics\">\n<h2>Final metrics</h2>\n");
	if (metrics == NULL || json_object_size(metrics) == 0)
		report_missing(o, "No final metrics: the run left no metrics.json (it did not "
		                  "finish, or its compute plugin writes none).");
	if (json_is_object(test) && json_object_size(baselines) > 0)
		baselines_table(o, test, baselines);
	else if (json_is_object(test))
		report_missing(o, "No baselines were computed for this run's head.");
	else if (metrics && json_object_size(metrics) > 0)
		report_missing(o, "No test metrics: the run was not evaluated on a test split.");
	splits_table(o, metrics);
	confusion_table(o, test);
	json_object_foreach((json_t *)metrics, key, v) {
		bool seen = false;
		for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++)
			seen = seen || strcmp(key, shown[i]) == 0;
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
	section_charts(&o, c, src);
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

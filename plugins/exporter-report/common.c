/* exporter-report: the document frame and helpers both reports use.  See
 * report.h. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

/* Everything inline: the report is one file a person can mail, archive or
 * open offline.  Narrow screens get one column and scrolling tables;
 * print drops the colours of backgrounds it would not print anyway and
 * keeps charts whole on a page. */
static const char css[] =
	":root{color-scheme:light}"
	"body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;"
	"color:#1b1b1b;background:#fff}"
	"main{max-width:960px;margin:0 auto;padding:16px}"
	"h1{font-size:1.6em;margin:.2em 0 .4em;overflow-wrap:anywhere}"
	"h2{font-size:1.2em;margin:1.6em 0 .5em;border-bottom:1px solid #ccc}"
	"h3{font-size:1em;margin:1.2em 0 .4em}"
	".scroll{overflow-x:auto}"
	".groups{display:flex;flex-wrap:wrap;gap:0 28px;align-items:flex-start}"
	"table{border-collapse:collapse;margin:.4em 0 1em;font-size:.92em}"
	"th,td{border:1px solid #d5d5d5;padding:3px 8px;text-align:left;vertical-align:top;"
	"overflow-wrap:break-word}"
	"th{background:#f3f3f3;font-weight:600}"
	"td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
	".best{font-weight:700;color:#0a6b2c}"
	".best::after{content:' ✓'}"
	"tr.diff td,tr.diff th{background:#fff4cc}"
	"tr.kept th,tr.kept td{font-weight:700;background:#eef6ff}"
	"td.kept{white-space:nowrap}td.kept::before{content:'▶ '}"
	"table.candidates td.num{padding:3px 5px}td.top{font-weight:700}"
	".missing{color:#8a5a00;font-style:italic}"
	"table.heatmap td.diag{outline:2px solid #1b1b1b;outline-offset:-3px;font-weight:700}"
	"table.heatmap td.later{background:#fafafa}"
	"table.heatmap tr.extra th,table.heatmap tr.extra td{border-top:2px solid #999}"
	".warn{color:#b00000}"
	"dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0}"
	"dl.meta dt{font-weight:600}dl.meta dd{margin:0;overflow-wrap:anywhere}"
	"figure.chart{margin:.6em 0 1.4em}"
	"figure.chart svg{width:100%;height:auto;display:block}"
	"figcaption{font-size:.85em;color:#444}figcaption ul{margin:.2em 0;padding-left:1.2em}"
	".swatch{font-size:1.1em}"
	"footer{margin-top:2em;font-size:.8em;color:#666}"
	"@media (max-width:600px){main{padding:8px}body{font-size:14px}"
	"dl.meta{grid-template-columns:1fr}}"
	"@media print{body{font-size:11pt}main{max-width:none;padding:0}"
	"figure.chart,table{break-inside:avoid}h2{break-after:avoid}"
	"th,tr.diff td,tr.diff th,tr.kept th,tr.kept td{background:none}tr.diff td{font-weight:700}"
	".scroll{overflow:visible}}";

void
report_begin(html_out *o, const char *title)
{
	html_raw(o, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
	            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
	            "<meta name=\"generator\" content=\"Loom exporter-report\">\n<title>");
	html_text(o, title);
	html_raw(o, "</title>\n<style>");
	html_raw(o, css);
	html_raw(o, "</style>\n</head>\n<body>\n<main>\n");
}

void
report_end(html_out *o)
{
	html_rawf(o, "<footer>Written by Loom's exporter-report plugin (Loom %s).</footer>\n",
	          loom_version());
	html_raw(o, "</main>\n</body>\n</html>\n");
}

json_t *
report_parse(const char *text)
{
	json_t *v;

	if (text == NULL)
		return NULL;
	v = json_loads(text, 0, NULL);
	if (v && !json_is_object(v)) {
		json_decref(v);
		return NULL;
	}
	return v;
}

static void
flatten_into(json_t *out, const json_t *obj, const char *prefix)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)obj, key, v) {
		size_t n = strlen(prefix) + strlen(key) + 2;
		char *name = malloc(n);
		if (name == NULL)
			return;
		snprintf(name, n, "%s%s%s", prefix, *prefix ? "." : "", key);
		if (json_is_object(v) && json_object_size(v) > 0)
			flatten_into(out, v, name);
		else
			json_object_set(out, name, v);
		free(name);
	}
}

json_t *
report_flatten(const json_t *obj)
{
	json_t *out = json_object();

	if (out && obj)
		flatten_into(out, obj, "");
	return out;
}

void
report_kv_table(html_out *o, const json_t *obj)
{
	json_t *flat = report_flatten(obj), *v;
	const char *key;

	if (flat == NULL) {
		o->err = o->err ? o->err : LOOM_ENOMEM;
		return;
	}
	html_raw(o, "<div class=\"scroll\"><table class=\"kv\"><tbody>\n");
	json_object_foreach(flat, key, v) {
		html_raw(o, "<tr><th scope=\"row\">");
		html_text(o, key);
		html_raw(o, json_is_number(v) ? "</th><td class=\"num\">" : "</th><td>");
		html_json_value(o, v);
		html_raw(o, "</td></tr>\n");
	}
	html_raw(o, "</tbody></table></div>\n");
	json_decref(flat);
}

/* Does name contain word as a whole '_'-separated token? */
static bool
has_token(const char *name, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = name; (p = strstr(p, word)) != NULL; p++) {
		bool start = p == name || p[-1] == '_' || p[-1] == '.';
		bool end = p[n] == '\0' || p[n] == '_' || p[n] == '.';
		if (start && end)
			return true;
	}
	return false;
}

int
report_direction(const char *metric)
{
	static const char *const higher[] = {"accuracy", "acc", "f1", "precision", "recall",
	                                     "auc", "r2", "iou", "kappa", "mcc", "macro_f1"};
	static const char *const lower[] = {"loss", "mae", "mse", "rmse", "mape", "smape",
	                                    "error", "nll", "wape", "mase", "perplexity"};

	for (size_t i = 0; i < sizeof higher / sizeof higher[0]; i++) {
		if (has_token(metric, higher[i]))
			return 1;
	}
	for (size_t i = 0; i < sizeof lower / sizeof lower[0]; i++) {
		if (has_token(metric, lower[i]))
			return -1;
	}
	return 0;
}

const char *
report_chart_group(const char *metric, char *buf, size_t n)
{
	static const char *const prefixes[] = {"train_", "val_", "validation_", "test_"};
	const char *rest = metric;
	size_t len;

	for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
		size_t k = strlen(prefixes[i]);
		if (strncmp(metric, prefixes[i], k) == 0 && metric[k] != '\0') {
			rest = metric + k;
			break;
		}
	}
	len = strcspn(rest, ".");
	if (len >= 4 && strncmp(rest + len - 4, "loss", 4) == 0) {
		rest = "loss";
		len = 4;
	}
	snprintf(buf, n, "%.*s", (int)len, rest);
	return buf;
}

void
report_missing(html_out *o, const char *what)
{
	html_elem(o, "p", "missing", what);
	html_raw(o, "\n");
}

const char *
report_run_label(const loom_export_source *src)
{
	if (src->name && *src->name)
		return src->name;
	if (src->run_id && *src->run_id)
		return src->run_id;
	return "run";
}

static int
loss_first(const void *a, const void *b)
{
	const char *x = *(const char *const *)a, *y = *(const char *const *)b;
	bool lx = strstr(x, "loss") != NULL, ly = strstr(y, "loss") != NULL;
	if (lx != ly)
		return lx ? -1 : 1;
	return strcmp(x, y);
}

json_t *
report_headline(const json_t *metrics)
{
	const json_t *h = json_object_get(metrics, "headline"), *t;
	json_t *out = json_array();
	size_t i;

	if (json_is_array(h) && json_array_size(h) > 0) {
		json_array_foreach(h, i, t)
			if (json_is_string(t))
				json_array_append(out, (json_t *)t);
		return out;
	}
	const json_t *group = json_object_get(metrics, "test");
	if (json_object_size(group) == 0)
		group = json_object_get(metrics, "validation");
	const char **names = calloc(json_object_size(group) + 1, sizeof *names), *key;
	json_t *v;
	size_t n = 0;
	if (names == NULL)
		return out;
	json_object_foreach((json_t *)group, key, v)
		if (strchr(key, '.') == NULL)
			names[n++] = key;
	qsort(names, n, sizeof *names, loss_first);
	for (i = 0; i < n; i++)
		json_array_append_new(out, json_string(names[i]));
	free(names);
	return out;
}

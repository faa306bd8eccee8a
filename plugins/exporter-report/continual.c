/* exporter-report: the "Continual learning" section of a run that learned
 * an increment (metrics.json's "continual" and "holdout" groups,
 * docs/incremental.md):
 *
 * - the increments and the version the run started from;
 * - R, the matrix of the metric after learning increment i (rows) on the
 *   test split of increment j (columns), as a heatmap: an HTML table whose
 *   cells are coloured from their value, red for the worst value of the
 *   table to green for the best (the metric's own direction), the
 *   diagonal (right after learning j) outlined, and two more rows: the
 *   model before learning j (R_before) and the naive baseline on j;
 * - average, forgetting, backward and forward transfer, each with its sign
 *   convention in words;
 * - the strategies (replay, EWC, LwF) as the run used them;
 * - the shared holdout: this model against the init version on every
 *   increment's test split so far.
 *
 * Everything is read from a file a run wrote and may be malformed: a
 * missing or non-number cell is shown as "—", a matrix of more than
 * SHOWN increments shows the last SHOWN of them and says so, and every
 * string is escaped.  No script: the colours are inline styles. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

/* The most increments R's table shows (the last ones). */
#define SHOWN 40

/* ------------------------------------------------------------------ numbers */

static bool
number_at(const json_t *a, size_t i, double *v)
{
	const json_t *x = json_array_get(a, i);

	if (!json_is_number(x))
		return false;
	*v = json_number_value(x);
	return isfinite(*v);
}

/* R[i][j] when row i has it. */
static bool
r_at(const json_t *R, size_t i, size_t j, double *v)
{
	return j <= i && number_at(json_array_get(R, i), j, v);
}

/* The colour of v between lo (worst) and hi (best): light red, light
 * yellow, light green, so black text stays readable on every cell. */
static void
heat_colour(double v, double lo, double hi, char *buf, size_t n)
{
	static const int stops[3][3] = {{0xf4, 0xa5, 0x9a}, {0xfb, 0xf0, 0xb0}, {0x9c, 0xd9, 0xa6}};
	double t = hi != lo ? (v - lo) / (hi - lo) : 1.0, f;
	int a, rgb[3];

	t = t < 0 ? 0 : t > 1 ? 1 : t;
	a = t < 0.5 ? 0 : 1;
	f = t < 0.5 ? t * 2 : (t - 0.5) * 2;
	for (int k = 0; k < 3; k++)
		rgb[k] = (int)lround(stops[a][k] + (stops[a + 1][k] - stops[a][k]) * f);
	snprintf(buf, n, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
}

typedef struct heat {
	double lo, hi;       /* the worst and best values shown, in the metric's direction */
	bool any;
	bool higher;
} heat;

static void
heat_add(heat *h, double v)
{
	double o = h->higher ? v : -v;

	if (!h->any || o < h->lo)
		h->lo = o;
	if (!h->any || o > h->hi)
		h->hi = o;
	h->any = true;
}

/* A cell of the heatmap: coloured, the diagonal outlined. */
static void
heat_cell(html_out *o, const heat *h, bool has, double v, const char *cls)
{
	char colour[16];

	if (!has) {
		html_rawf(o, "<td class=\"num%s%s\">—</td>", cls ? " " : "", cls ? cls : "");
		return;
	}
	heat_colour(h->higher ? v : -v, h->lo, h->hi, colour, sizeof colour);
	html_rawf(o, "<td class=\"num heat%s%s\" style=\"background:%s\">", cls ? " " : "",
	          cls ? cls : "", colour);
	html_number(o, v);
	html_raw(o, "</td>");
}

/* ------------------------------------------------------------------ increments */

/* "2 (2013.csv)": an increment's number and its data file's last part. */
static void
increment_name(html_out *o, const json_t *incs, size_t j)
{
	const json_t *inc = json_array_get(incs, j);
	const char *data = json_string_value(json_object_get(inc, "data"));
	const char *base = data ? strrchr(data, '/') : NULL;

	html_rawf(o, "%zu", j + 1);
	if (data && *(base ? base + 1 : data)) {
		html_raw(o, " (");
		html_text(o, base ? base + 1 : data);
		html_raw(o, ")");
	}
}

static void
increments_table(html_out *o, const json_t *incs, size_t first)
{
	size_t i;
	const json_t *inc;

	if (json_array_size(incs) == 0)
		return;
	html_raw(o, "<h3>Increments</h3>\n<div class=\"scroll\"><table class=\"increments\"><thead>"
	            "<tr><th scope=\"col\">increment</th><th scope=\"col\">data</th>"
	            "<th scope=\"col\">test windows</th></tr></thead><tbody>\n");
	json_array_foreach(incs, i, inc) {
		const json_t *idx = json_object_get(inc, "index");
		if (i < first)
			continue;
		html_raw(o, "<tr><th scope=\"row\">");
		if (json_is_integer(idx))
			html_rawf(o, "%lld", (long long)json_integer_value(idx));
		else
			html_rawf(o, "%zu", i + 1);
		html_raw(o, "</th><td>");
		html_json_value(o, json_object_get(inc, "data"));
		html_raw(o, "</td><td class=\"num\">");
		html_json_value(o, json_object_get(inc, "test_windows"));
		html_raw(o, "</td></tr>\n");
	}
	html_raw(o, "</tbody></table></div>\n");
}

/* ------------------------------------------------------------------ R */

static void
r_matrix(html_out *o, const json_t *cl, bool higher, const char *metric)
{
	const json_t *R = json_object_get(cl, "R"), *before = json_object_get(cl, "R_before");
	const json_t *base = json_object_get(cl, "baseline"), *incs = json_object_get(cl, "increments");
	size_t T = json_array_size(R), first = T > SHOWN ? T - SHOWN : 0;
	heat h = {.higher = higher};
	double v = 0;

	html_raw(o, "<h3>R: the ");
	html_text(o, metric);
	html_raw(o, " after learning increment i, on the test split of increment j</h3>\n");
	if (T == 0) {
		report_missing(o, "metrics.json's continual group has no R matrix.");
		return;
	}
	if (first > 0)
		html_rawf(o, "<p class=\"missing\">%zu increments; the last %d are shown (metrics.json "
		          "has them all).</p>\n", T, SHOWN);
	for (size_t i = first; i < T; i++) {
		for (size_t j = first; j <= i; j++)
			if (r_at(R, i, j, &v))
				heat_add(&h, v);
	}
	for (size_t j = first; j < T; j++) {
		if (number_at(before, j, &v))
			heat_add(&h, v);
		if (number_at(base, j, &v))
			heat_add(&h, v);
	}
	html_raw(o, "<div class=\"scroll\"><table class=\"heatmap\"><thead><tr>"
	            "<th scope=\"col\">after \\ test of</th>");
	for (size_t j = first; j < T; j++) {
		html_raw(o, "<th scope=\"col\">");
		increment_name(o, incs, j);
		html_raw(o, "</th>");
	}
	html_raw(o, "</tr></thead><tbody>\n");
	for (size_t i = first; i < T; i++) {
		html_rawf(o, "<tr><th scope=\"row\">after increment %zu</th>", i + 1);
		for (size_t j = first; j < T; j++) {
			if (j > i) {
				html_raw(o, "<td class=\"later\"></td>");
				continue;
			}
			bool has = r_at(R, i, j, &v);
			heat_cell(o, &h, has, v, i == j ? "diag" : NULL);
		}
		html_raw(o, "</tr>\n");
	}
	html_raw(o, "<tr class=\"extra\"><th scope=\"row\">before learning it (R_before)</th>");
	for (size_t j = first; j < T; j++) {
		bool has = number_at(before, j, &v);
		heat_cell(o, &h, has, v, NULL);
	}
	html_raw(o, "</tr>\n<tr class=\"extra\"><th scope=\"row\">naive baseline</th>");
	for (size_t j = first; j < T; j++) {
		bool has = number_at(base, j, &v);
		heat_cell(o, &h, has, v, NULL);
	}
	html_raw(o, "</tr>\n</tbody></table></div>\n");
	html_raw(o, "<p>Row i is the model right after learning increment i; column j is the test "
	            "split of increment j. The outlined diagonal is each increment's value right "
	            "after it was learned; reading down a column shows what later increments did "
	            "to it. “Before learning it” is the model of the increment before, on j's "
	            "test split (none for the first); the naive baseline is the majority class "
	            "(classification) or the last value repeated (forecast, regression) on j's "
	            "test split. Colours run from red (the worst value in this table) "
	            "through yellow to green (the best), ");
	html_raw(o, higher ? "higher being better." : "lower being better.");
	html_raw(o, "</p>\n");
}

/* ------------------------------------------------------------------ summary */

static void
summary_row(html_out *o, const json_t *cl, const char *key, const char *label,
            const char *formula, const char *meaning)
{
	const json_t *v = json_object_get(cl, key);

	html_raw(o, "<tr><th scope=\"row\">");
	html_text(o, label);
	html_raw(o, "</th>");
	if (json_is_number(v)) {
		html_raw(o, "<td class=\"num\">");
		html_number(o, json_number_value(v));
		html_raw(o, "</td>");
	} else {
		html_raw(o, "<td class=\"num\">—</td>");
	}
	html_raw(o, "<td>");
	html_raw(o, formula);
	html_raw(o, "</td><td>");
	html_raw(o, meaning);
	if (!json_is_number(v))
		html_raw(o, " <span class=\"missing\">Not defined for this run: it needs two "
		            "increments or more (and, for forward transfer, R_before and the "
		            "baseline).</span>");
	html_raw(o, "</td></tr>\n");
}

static void
summary(html_out *o, const json_t *cl, bool higher)
{
	const char *flip = higher ? "" : " (sign flipped: the metric is an error, lower is better)";
	char f[512];

	html_raw(o, "<h3>Summary</h3>\n<div class=\"scroll\"><table class=\"cl-summary\"><thead>"
	            "<tr><th scope=\"col\">figure</th><th scope=\"col\">value</th>"
	            "<th scope=\"col\">how</th><th scope=\"col\">reading</th></tr></thead>"
	            "<tbody>\n");
	summary_row(o, cl, "average", "average",
	            "mean over j of R[T][j]",
	            higher ? "The last model on every increment's test split; higher is better."
	                   : "The last model on every increment's test split; lower is better.");
	snprintf(f, sizeof f, "mean over j &lt; T of (R[j][j] − R[T][j])%s", flip);
	summary_row(o, cl, "forgetting", "forgetting", f,
	            "Above 0: the model got worse on earlier increments than it was right after "
	            "learning them (it forgot); 0: no change; below 0: it got better.");
	snprintf(f, sizeof f, "mean over j &lt; T of (R[T][j] − R[j][j])%s", flip);
	summary_row(o, cl, "bwt", "backward transfer (BWT)", f,
	            "Above 0: learning later increments helped the earlier ones; below 0: it hurt "
	            "them (the negative of forgetting).");
	snprintf(f, sizeof f, "mean over j ≥ 2 of (R_before[j] − baseline[j])%s", flip);
	summary_row(o, cl, "fwt", "forward transfer (FWT)", f,
	            "Above 0: before learning an increment, the model already did better on it "
	            "than the naive baseline.");
	html_raw(o, "</tbody></table></div>\n");
}

/* ------------------------------------------------------------------ strategies */

static void
value_or_dash(html_out *o, const json_t *v)
{
	if (v == NULL || json_is_null(v))
		html_raw(o, "—");
	else
		html_json_value(o, v);
}

/* "key value, key value" of g, keys in order, then any others. */
static void
settings(html_out *o, const json_t *g, const char *const *keys, size_t n)
{
	bool first = true;
	const char *k;
	json_t *v;

	for (size_t i = 0; i < n; i++) {
		html_raw(o, first ? "" : ", ");
		html_text(o, keys[i]);
		html_raw(o, " ");
		value_or_dash(o, json_object_get(g, keys[i]));
		first = false;
	}
	json_object_foreach((json_t *)g, k, v) {
		bool known = false;
		for (size_t i = 0; i < n; i++)
			known = known || strcmp(k, keys[i]) == 0;
		if (known)
			continue;
		html_raw(o, first ? "" : ", ");
		html_text(o, k);
		html_raw(o, " ");
		value_or_dash(o, v);
		first = false;
	}
}

static bool
positive(const json_t *g, const char *key)
{
	const json_t *v = json_object_get(g, key);
	return json_is_number(v) && json_number_value(v) > 0;
}

static void
strategies(html_out *o, const json_t *st)
{
	static const char *const replay_keys[] = {"memory", "ratio", "bank_rows"};
	static const char *const ewc_keys[] = {"lambda", "mode", "gamma", "terms"};
	static const char *const lwf_keys[] = {"alpha", "temperature"};
	const json_t *replay = json_object_get(st, "replay"), *ewc = json_object_get(st, "ewc");
	const json_t *lwf = json_object_get(st, "lwf");

	html_raw(o, "<h3>Strategies</h3>\n");
	if (!json_is_object(st)) {
		report_missing(o, "metrics.json does not say which strategies the run used.");
		return;
	}
	html_raw(o, "<div class=\"scroll\"><table class=\"strategies\"><thead><tr>"
	            "<th scope=\"col\">strategy</th><th scope=\"col\">used</th>"
	            "<th scope=\"col\">settings</th></tr></thead><tbody>\n");
	html_raw(o, "<tr><th scope=\"row\">replay</th><td>");
	html_raw(o, positive(replay, "ratio") ? "yes: memory windows mixed into every batch"
	            : "no (ratio 0); the bank is still kept for the next increment");
	html_raw(o, "</td><td>");
	settings(o, replay, replay_keys, 3);
	html_raw(o, "</td></tr>\n<tr><th scope=\"row\">EWC</th><td>");
	html_raw(o, positive(ewc, "lambda") ? "yes: a penalty on moving important weights"
	                                    : "no (lambda 0)");
	html_raw(o, "</td><td>");
	settings(o, ewc, ewc_keys, 4);
	html_raw(o, "</td></tr>\n<tr><th scope=\"row\">LwF</th><td>");
	html_raw(o, positive(lwf, "alpha") ? "yes: distillation from the init version"
	                                   : "no (alpha 0)");
	html_raw(o, "</td><td>");
	settings(o, lwf, lwf_keys, 2);
	html_raw(o, "</td></tr>\n</tbody></table></div>\n");
}

/* ------------------------------------------------------------------ holdout */

/* The holdout's metric names: the headline ones first, then the other
 * names without a '.' (per-class figures stay in metrics.json), by name.
 * A new array. */
static json_t *
holdout_names(const json_t *metrics, const json_t *model, const json_t *init)
{
	json_t *head = report_headline(metrics), *out = json_array(), *seen = json_object(), *v;
	const json_t *groups[2] = {model, init};
	const char *k;
	size_t i, start;

	json_array_foreach(head, i, v) {
		const char *name = json_string_value(v);
		if (name && (json_is_number(json_object_get(model, name)) ||
		             json_is_number(json_object_get(init, name))) &&
		    !json_object_get(seen, name)) {
			json_array_append(out, v);
			json_object_set_new(seen, name, json_true());
		}
	}
	start = json_array_size(out);
	for (int g = 0; g < 2; g++) {
		json_object_foreach((json_t *)groups[g], k, v) {
			if (!json_is_number(v) || strchr(k, '.') || json_object_get(seen, k))
				continue;
			/* sorted insertion after the headline names */
			size_t at = start;
			while (at < json_array_size(out) &&
			       strcmp(json_string_value(json_array_get(out, at)), k) < 0)
				at++;
			json_array_insert_new(out, at, json_string(k));
			json_object_set_new(seen, k, json_true());
		}
	}
	json_decref(head);
	json_decref(seen);
	return out;
}

static void
holdout_cell(html_out *o, const json_t *v, bool best)
{
	if (!json_is_number(v)) {
		html_raw(o, "<td class=\"num\">—</td>");
		return;
	}
	html_raw(o, best ? "<td class=\"num best\">" : "<td class=\"num\">");
	html_number(o, json_number_value(v));
	html_raw(o, "</td>");
}

static void
holdout(html_out *o, const json_t *metrics, const json_t *ho)
{
	const json_t *model = json_object_get(ho, "model"), *init = json_object_get(ho, "init");
	const json_t *iname = json_object_get(ho, "init_model"), *iver = json_object_get(ho, "init_version");
	json_t *names, *v;
	size_t i;

	html_raw(o, "<h3>Shared holdout: this model against the init version</h3>\n");
	if (!json_is_object(ho)) {
		report_missing(o, "metrics.json has no holdout group: the run did not evaluate on "
		                  "the increments' test splits.");
		return;
	}
	html_raw(o, "<p>");
	if (json_is_integer(json_object_get(ho, "windows")))
		html_rawf(o, "%lld windows: ", (long long)json_integer_value(json_object_get(ho, "windows")));
	html_raw(o, "the test splits of ");
	if (json_is_integer(json_object_get(ho, "increments")))
		html_rawf(o, "all %lld increments so far", (long long)json_integer_value(
		                                               json_object_get(ho, "increments")));
	else
		html_raw(o, "every increment so far");
	html_raw(o, ". A deployment rule on holdout_&lt;metric&gt; compares versions on these "
	            "figures (docs/registry.md, “Deployment rule”).</p>\n");
	names = holdout_names(metrics, model, init);
	html_raw(o, "<div class=\"scroll\"><table class=\"holdout\"><thead><tr>"
	            "<th scope=\"col\">metric</th><th scope=\"col\">this model</th>"
	            "<th scope=\"col\">init version");
	if (json_is_string(iname)) {
		html_raw(o, " (");
		html_text(o, json_string_value(iname));
		if (json_is_integer(iver))
			html_rawf(o, " v%lld", (long long)json_integer_value(iver));
		html_raw(o, ")");
	}
	html_raw(o, "</th></tr></thead><tbody>\n");
	json_array_foreach(names, i, v) {
		const char *name = json_string_value(v);
		const json_t *a = json_object_get(model, name), *b = json_object_get(init, name);
		int dir = report_direction(name), best = -1;
		if (dir != 0 && json_is_number(a) && json_is_number(b)) {
			double x = json_number_value(a), y = json_number_value(b);
			if (x != y)
				best = (dir > 0 ? x > y : x < y) ? 0 : 1;
		}
		html_raw(o, "<tr><th scope=\"row\">");
		html_text(o, name);
		html_raw(o, "</th>");
		holdout_cell(o, a, best == 0);
		holdout_cell(o, b, best == 1);
		html_raw(o, "</tr>\n");
	}
	html_raw(o, "</tbody></table></div>\n");
	if (!json_is_object(init))
		html_raw(o, "<p>No init version: this run did not start from a registered version, "
		            "so there is nothing to compare with.</p>\n");
	else
		html_raw(o, "<p>✓ marks the better of the two where the metric's name says which way "
		            "is better.</p>\n");
	json_decref(names);
}

/* ------------------------------------------------------------------ the section */

bool
report_continual(html_out *o, const json_t *metrics)
{
	const json_t *cl = json_object_get(metrics, "continual");
	const json_t *init = json_object_get(cl, "init"), *hib = json_object_get(cl, "higher_is_better");
	const char *metric = json_string_value(json_object_get(cl, "metric"));
	size_t T = json_array_size(json_object_get(cl, "R"));
	bool higher;

	if (!json_is_object(cl))
		return false;
	/* the file says; else the metric's name does; else higher */
	higher = json_is_boolean(hib) ? json_is_true(hib)
	         : metric               ? report_direction(metric) >= 0
	                                : true;
	html_raw(o, "<section id=\"continual\">\n<h2>Continual learning</h2>\n<dl class=\"meta\">\n"
	            "<dt>Increment</dt><dd>");
	value_or_dash(o, json_object_get(cl, "increment"));
	html_raw(o, "</dd>\n<dt>Started from</dt><dd>");
	if (json_is_object(init)) {
		html_raw(o, "model ");
		value_or_dash(o, json_object_get(init, "model"));
		html_raw(o, ", version ");
		value_or_dash(o, json_object_get(init, "version"));
	} else {
		html_raw(o, "nothing: trained from scratch (the first increment)");
	}
	html_raw(o, "</dd>\n<dt>Metric</dt><dd>");
	html_text(o, metric ? metric : "unknown");
	html_raw(o, higher ? " (higher is better)" : " (lower is better)");
	html_raw(o, "</dd>\n</dl>\n");
	increments_table(o, json_object_get(cl, "increments"), T > SHOWN ? T - SHOWN : 0);
	r_matrix(o, cl, higher, metric ? metric : "metric");
	summary(o, cl, higher);
	strategies(o, json_object_get(cl, "strategies"));
	holdout(o, metrics, json_object_get(metrics, "holdout"));
	html_raw(o, "</section>\n");
	return true;
}

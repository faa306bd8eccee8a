/* exporter-report: the "Model choice" section — the kind of model a run
 * kept and, when model.kind = "auto" compared several, every candidate's
 * validation and test metrics with the kept one marked and why it was
 * kept (metrics.json's "model" and "candidates", docs/engine.md).
 *
 * Every name, reason and setting comes from metrics.json and is escaped;
 * a key this file does not know is still shown, as "key value". */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

/* ------------------------------------------------------------------ detail in words */

static void
words_number(html_out *o, const json_t *v)
{
	if (json_is_integer(v))
		html_rawf(o, "%lld", (long long)json_integer_value(v));
	else if (json_is_number(v))
		html_number(o, json_number_value(v));
	else
		html_json_value(o, v);
}

/* "; " between the parts of a detail. */
static void
sep(html_out *o, bool *first)
{
	if (!*first)
		html_raw(o, "; ");
	*first = false;
}

static const char *
naive_words(const char *method)
{
	static const char *const names[][2] = {
		{"repeat_last", "repeat the last value"},
		{"seasonal_naive", "seasonal naive (repeat the last season)"},
		{"seasonal", "seasonal naive (repeat the last season)"},
		{"drift", "drift (the line through the window's first and last values)"},
		{"mean", "the mean of the training targets"},
	};
	for (size_t i = 0; method && i < sizeof names / sizeof names[0]; i++)
		if (strcmp(method, names[i][0]) == 0)
			return names[i][1];
	return NULL;
}

/* "a, b and c" of an array of strings, escaped. */
static void
names_list(html_out *o, const json_t *a)
{
	size_t i, n = json_array_size(a);
	json_t *v;

	json_array_foreach(a, i, v) {
		if (i > 0)
			html_raw(o, i == n - 1 ? " and " : ", ");
		if (json_is_string(v))
			html_text(o, json_string_value(v));
		else
			html_json_value(o, v);
	}
}

/* A candidate's (or the kept model's) detail as a person says it: a ridge
 * fit's penalty and decomposition, a naive forecast's method and season,
 * an ensemble's members, the Transformer's best epoch; then any other key
 * as "key value".  Keys in skip are not written. */
static void
detail_words(html_out *o, const json_t *d, const char *const *skip, size_t n_skip)
{
	json_t *used = json_object(), *v;
	const char *key, *fit = json_string_value(json_object_get(d, "fit"));
	const char *method = json_string_value(json_object_get(d, "method"));
	bool first = true;

#define USE(k) json_object_set_new(used, (k), json_true())
	if (fit && strcmp(fit, "ridge") == 0) {
		const char *dec = json_string_value(json_object_get(d, "decomposition"));
		sep(o, &first);
		html_raw(o, "ridge regression fitted in closed form");
		if ((v = json_object_get(d, "alpha")) != NULL) {
			html_raw(o, ", penalty alpha ");
			words_number(o, v);
		}
		USE("fit");
		USE("alpha");
		if (dec) {
			sep(o, &first);
			if (strcmp(dec, "moving_average") == 0) {
				html_raw(o, "moving-average decomposition (trend and remainder fitted apart");
				if ((v = json_object_get(d, "kernel")) != NULL) {
					html_raw(o, ", kernel ");
					words_number(o, v);
					html_raw(o, " steps");
				}
				html_raw(o, ")");
				USE("kernel");
			} else if (strcmp(dec, "none") == 0) {
				html_raw(o, "no decomposition");
			} else {
				html_raw(o, "decomposition ");
				html_text(o, dec);
			}
			USE("decomposition");
		}
		if ((v = json_object_get(d, "windows")) != NULL) {
			sep(o, &first);
			words_number(o, v);
			html_raw(o, " training windows");
			if (json_object_get(d, "fits_tried")) {
				html_raw(o, ", ");
				words_number(o, json_object_get(d, "fits_tried"));
				html_raw(o, " fits tried on validation");
			}
			USE("windows");
			USE("fits_tried");
		}
	} else if (fit && strcmp(fit, "train") == 0) {
		sep(o, &first);
		html_raw(o, "trained by gradient descent like the Transformer");
		USE("fit");
	}
	if (method) {
		const char *w = naive_words(method);
		sep(o, &first);
		html_raw(o, "naive forecast: ");
		if (w)
			html_raw(o, w);
		else
			html_text(o, method);
		if ((v = json_object_get(d, "season")) != NULL) {
			html_raw(o, ", season ");
			words_number(o, v);
			html_raw(o, " steps");
		}
		USE("method");
		USE("season");
	}
	if ((v = json_object_get(d, "not_applicable")) != NULL && json_is_object(v)) {
		const char *k2;
		json_t *why;
		json_object_foreach(v, k2, why) {
			sep(o, &first);
			html_text(o, k2);
			html_raw(o, " not applicable: ");
			html_json_value(o, why);
		}
		USE("not_applicable");
	}
	if ((v = json_object_get(d, "members")) != NULL && json_is_array(v)) {
		const char *weights = json_string_value(json_object_get(d, "weights"));
		sep(o, &first);
		html_raw(o, weights && strcmp(weights, "equal") == 0 ? "equal-weight average of "
		                                                     : "average of ");
		names_list(o, v);
		if (weights && strcmp(weights, "equal") != 0) {
			html_raw(o, ", weights ");
			html_text(o, weights);
		}
		USE("members");
		USE("weights");
	}
	if ((v = json_object_get(d, "best_epoch")) != NULL) {
		sep(o, &first);
		html_raw(o, "trained; best epoch ");
		words_number(o, v);
		USE("best_epoch");
	}
	if ((v = json_object_get(d, "parameters")) != NULL) {
		sep(o, &first);
		words_number(o, v);
		html_raw(o, " parameters");
		USE("parameters");
	}
#undef USE
	for (size_t i = 0; i < n_skip; i++)
		json_object_set_new(used, skip[i], json_true());
	json_object_foreach((json_t *)d, key, v) {
		if (json_object_get(used, key))
			continue;
		sep(o, &first);
		html_text(o, key);
		html_raw(o, " ");
		html_json_value(o, v);
	}
	if (first)
		html_raw(o, "—");
	json_decref(used);
}

/* ------------------------------------------------------------------ the candidates */

/* A candidate's name as a row heading: "ensemble (linear + naive)". */
static void
candidate_name(html_out *o, const json_t *c)
{
	const json_t *members = json_object_get(json_object_get(c, "detail"), "members");
	const char *name = json_string_value(json_object_get(c, "name"));
	size_t i;
	json_t *v;

	html_text(o, name ? name : "?");
	if (json_array_size(members) == 0)
		return;
	html_raw(o, " (");
	json_array_foreach(members, i, v) {
		if (i > 0)
			html_raw(o, " + ");
		html_text(o, json_string_value(v) ? json_string_value(v) : "?");
	}
	html_raw(o, ")");
}

/* The metric names of the candidates' split groups: the headline ones in
 * their order, then the others by first appearance.  A new array. */
static json_t *
columns_of(const json_t *metrics, const json_t *cands, const char *split)
{
	json_t *headline = report_headline(metrics), *out = json_array(), *seen = json_object();
	json_t *v, *c;
	const char *key;
	size_t i, j;

	json_array_foreach(headline, i, v) {
		bool any = false;
		json_array_foreach(cands, j, c)
			any = any || json_is_number(json_object_get(json_object_get(c, split),
			                                            json_string_value(v)));
		if (any && !json_object_get(seen, json_string_value(v))) {
			json_array_append(out, v);
			json_object_set_new(seen, json_string_value(v), json_true());
		}
	}
	json_array_foreach(cands, j, c) {
		json_object_foreach(json_object_get(c, split), key, v) {
			if (!json_is_number(v) || json_object_get(seen, key))
				continue;
			json_array_append_new(out, json_string(key));
			json_object_set_new(seen, key, json_true());
		}
	}
	json_decref(headline);
	json_decref(seen);
	return out;
}

/* The row index of the best value of metric in split; -1 when the name
 * does not say which way is better or fewer than two rows have it. */
static int
best_row(const json_t *cands, const char *split, const char *metric)
{
	int dir = report_direction(metric), best = -1;
	double bv = 0;
	size_t i, rivals = 0;
	json_t *c;

	json_array_foreach(cands, i, c) {
		json_t *x = json_object_get(json_object_get(c, split), metric);
		double v = json_number_value(x);
		if (dir == 0 || !json_is_number(x) || v != v)
			continue;
		rivals++;
		if (best < 0 || (dir < 0 ? v < bv : v > bv)) {
			best = (int)i;
			bv = v;
		}
	}
	return rivals >= 2 ? best : -1;
}

static void
candidates_table(html_out *o, const json_t *metrics, const json_t *cands)
{
	static const char *const splits[2] = {"validation", "test"};
	json_t *cols[2], *c, *v;
	size_t i, j;
	size_t chosen = 0;

	for (int s = 0; s < 2; s++)
		cols[s] = columns_of(metrics, cands, splits[s]);
	json_array_foreach(cands, i, c)
		chosen += json_is_true(json_object_get(c, "chosen"));

	html_raw(o, "<h3>Candidates</h3>\n<div class=\"scroll\"><table class=\"candidates\"><thead>"
	            "<tr><th scope=\"col\" rowspan=\"2\">candidate</th>"
	            "<th scope=\"col\" rowspan=\"2\">kept</th>");
	for (int s = 0; s < 2; s++)
		if (json_array_size(cols[s]) > 0)
			html_rawf(o, "<th scope=\"colgroup\" colspan=\"%zu\">%s</th>",
			          json_array_size(cols[s]), splits[s]);
	html_raw(o, "</tr>\n<tr>");
	for (int s = 0; s < 2; s++)
		json_array_foreach(cols[s], j, v)
			html_elem(o, "th", NULL, json_string_value(v));
	html_raw(o, "</tr></thead><tbody>\n");
	json_array_foreach(cands, i, c) {
		bool kept = json_is_true(json_object_get(c, "chosen"));
		html_raw(o, kept ? "<tr class=\"kept\"><th scope=\"row\">" : "<tr><th scope=\"row\">");
		candidate_name(o, c);
		html_raw(o, kept ? "</th><td class=\"kept\">kept</td>" : "</th><td></td>");
		for (int s = 0; s < 2; s++) {
			json_array_foreach(cols[s], j, v) {
				const char *m = json_string_value(v);
				json_t *x = json_object_get(json_object_get(c, splits[s]), m);
				bool best = best_row(cands, splits[s], m) == (int)i;
				if (!json_is_number(x)) {
					html_raw(o, "<td class=\"num\">—</td>");
					continue;
				}
				html_raw(o, best ? "<td class=\"num top\">" : "<td class=\"num\">");
				html_number(o, json_number_value(x));
				html_raw(o, "</td>");
			}
		}
		html_raw(o, "</tr>\n");
	}
	html_raw(o, "</tbody></table></div>\n");
	if (chosen == 0)
		report_missing(o, "metrics.json marks no candidate as kept.");
	else if (chosen > 1)
		html_rawf(o, "<p class=\"warn\">metrics.json marks %zu candidates as kept; it should "
		          "mark one.</p>\n", chosen);
	html_raw(o, "<p>The kept row says “kept”. The model is chosen on the validation split "
	            "(its loss, a tie to the simpler model); test figures are shown for reading, "
	            "not for choosing. The best value of each column is in bold.</p>\n");
	/* what each one is, in words, apart: beside the figures it would
	 * make the table too wide to read */
	html_raw(o, "<h3>What each candidate is</h3>\n<dl class=\"meta candidates\">\n");
	json_array_foreach(cands, i, c) {
		html_raw(o, "<dt>");
		candidate_name(o, c);
		html_raw(o, "</dt><dd>");
		detail_words(o, json_object_get(c, "detail"), NULL, 0);
		html_raw(o, "</dd>\n");
	}
	html_raw(o, "</dl>\n");
	json_decref(cols[0]);
	json_decref(cols[1]);
}

/* ------------------------------------------------------------------ the section */

bool
report_choice(html_out *o, const json_t *metrics)
{
	static const char *const said[] = {"chosen_by", "validation_loss"};
	const json_t *model = json_object_get(metrics, "model");
	const json_t *cands = json_object_get(metrics, "candidates");
	const json_t *detail = json_object_get(model, "detail");
	const char *kind = json_string_value(json_object_get(model, "kind"));
	const char *form = json_string_value(json_object_get(model, "form"));
	const json_t *why = json_object_get(detail, "chosen_by"), *v;
	size_t n_said = 0;

	if (!json_is_object(model))
		return false;
	html_raw(o, "<section id=\"choice\">\n<h2>Model choice</h2>\n<dl class=\"meta\">\n"
	            "<dt>Kept</dt><dd class=\"kind\">");
	html_text(o, kind ? kind : "unknown");
	html_raw(o, "</dd>\n");
	if (form) {
		html_raw(o, "<dt>Form</dt><dd>");
		html_text(o, form);
		html_raw(o, "</dd>\n");
	}
	if (json_is_string(why)) {
		html_raw(o, "<dt>Why</dt><dd class=\"why\">");
		html_text(o, json_string_value(why));
		html_raw(o, "</dd>\n");
	} else if (json_array_size(cands) == 0) {
		html_raw(o, "<dt>Why</dt><dd class=\"why\">model.kind named it; no other model was "
		            "compared</dd>\n");
	}
	for (size_t i = 0; i < sizeof said / sizeof said[0]; i++)
		n_said += json_object_get(detail, said[i]) != NULL;
	if ((v = json_object_get(detail, "validation_loss")) != NULL && json_is_number(v)) {
		html_raw(o, "<dt>Validation loss</dt><dd>");
		html_number(o, json_number_value(v));
		html_raw(o, "</dd>\n");
	}
	if (json_object_size(detail) > n_said) {
		html_raw(o, "<dt>Detail</dt><dd>");
		detail_words(o, detail, said, sizeof said / sizeof said[0]);
		html_raw(o, "</dd>\n");
	}
	if ((v = json_object_get(model, "fit_seconds")) != NULL && json_is_number(v)) {
		html_raw(o, "<dt>Fitting and choosing</dt><dd>");
		html_duration_ms(o, json_number_value(v) * 1000);
		html_raw(o, "</dd>\n");
	}
	html_raw(o, "</dl>\n");
	if (json_is_array(cands) && json_array_size(cands) > 0)
		candidates_table(o, metrics, cands);
	html_raw(o, "</section>\n");
	return true;
}

const char *
report_kept_kind(const json_t *metrics)
{
	return json_string_value(json_object_get(json_object_get(metrics, "model"), "kind"));
}

/* Headline and detail metrics of runs and model versions (headline.h). */
#include "config.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "headline.h"
#include "util.h"

/* Does the split group hold a number? */
static bool
has_numbers(const json_t *group)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)group, k, v)
		if (json_is_number(v))
			return true;
	return false;
}

static bool
strings(const json_t *a)
{
	size_t i;
	json_t *v;
	if (!json_is_array(a))
		return false;
	json_array_foreach(a, i, v)
		if (!json_is_string(v))
			return false;
	return true;
}

/* A declared table with its cells prefixed, or NULL when it is malformed:
 * rows and columns arrays of strings, cells one array per row of one
 * string (or null) per column. */
static json_t *
table_prefixed(const json_t *t, const char *prefix)
{
	const json_t *rows = json_object_get(t, "rows"), *cols = json_object_get(t, "columns");
	const json_t *cells = json_object_get(t, "cells"), *line, *c;
	json_t *out, *pc;
	size_t i, j;

	if (!json_is_string(json_object_get(t, "name")) || !strings(rows) || !strings(cols) ||
	    !json_is_array(cells) || json_array_size(cells) != json_array_size(rows) ||
	    json_array_size(rows) * json_array_size(cols) > LOOMI_DETAIL_CELLS_MAX)
		return NULL;
	pc = json_array();
	json_array_foreach(cells, i, line) {
		json_t *pl = json_array();
		if (!json_is_array(line) || json_array_size(line) != json_array_size(cols)) {
			json_decref(pl);
			json_decref(pc);
			return NULL;
		}
		json_array_foreach(line, j, c) {
			if (json_is_string(c))
				json_array_append_new(pl, json_sprintf("%s%s", prefix, json_string_value(c)));
			else
				json_array_append_new(pl, json_null());
		}
		json_array_append_new(pc, pl);
	}
	out = json_deep_copy(t);
	json_object_set_new(out, "cells", pc);
	if (!json_is_string(json_object_get(out, "title")))
		json_object_set(out, "title", json_object_get(t, "name"));
	return out;
}

json_t *
loomi_display_declared(const json_t *doc)
{
	const json_t *h = json_object_get(doc, "headline"), *t;
	const char *prefix;
	json_t *out, *hl, *details;
	size_t i;

	if (!strings(h) || json_array_size(h) == 0)
		return NULL;
	if (has_numbers(json_object_get(doc, "test")))
		prefix = "test_";
	else if (has_numbers(json_object_get(doc, "validation")))
		prefix = "val_";
	else
		return NULL;
	hl = json_array();
	json_array_foreach(h, i, t)
		json_array_append_new(hl, json_sprintf("%s%s", prefix, json_string_value(t)));
	details = json_array();
	json_array_foreach(json_object_get(doc, "details"), i, t) {
		json_t *p = table_prefixed(t, prefix);
		if (p)
			json_array_append_new(details, p);
	}
	out = json_pack("{s:o, s:o}", "headline", hl, "details", details);
	return out;
}

/* ------------------------------------------------------------------ fallback */

static int
by_name(const void *a, const void *b)
{
	const char *x = *(const char *const *)a, *y = *(const char *const *)b;
	bool lx = strstr(x, "loss") != NULL, ly = strstr(y, "loss") != NULL;
	if (lx != ly)
		return lx ? -1 : 1;
	return strcmp(x, y);
}

static int
plain(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The names of flat starting with prefix and with no '.' after it, sorted
 * (loss first); *n of them. */
static const char **
candidates(const json_t *flat, const char *prefix, size_t *n)
{
	const char **names = loomi_xcalloc(json_object_size(flat) + 1, sizeof *names), *k;
	size_t len = strlen(prefix);
	json_t *v;

	*n = 0;
	json_object_foreach((json_t *)flat, k, v) {
		if (strncmp(k, prefix, len) == 0 && k[len] != '\0' && strchr(k + len, '.') == NULL &&
		    k[0] != '@')
			names[(*n)++] = k;
	}
	qsort(names, *n, sizeof *names, by_name);
	return names;
}

static json_t *
str_array(const char *const *v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

/* The per-class table and the confusion matrix of the classification
 * head's names under prefix, when flat has them. */
static json_t *
details_fallback(const json_t *flat, const char *prefix)
{
	static const char *const stats[] = {"precision", "recall", "f1"};
	char *p = loomi_strfmt("%sprecision.", prefix);
	size_t plen = strlen(p), n = 0;
	const char **classes = loomi_xcalloc(json_object_size(flat) + 1, sizeof *classes), *k;
	json_t *details = json_array(), *v;

	json_object_foreach((json_t *)flat, k, v)
		if (strncmp(k, p, plen) == 0 && k[plen] != '\0')
			classes[n++] = k + plen;
	qsort(classes, n, sizeof *classes, plain);
	if (n > 0) {
		json_t *cells = json_array();
		for (size_t i = 0; i < n; i++) {
			json_t *line = json_array();
			for (size_t j = 0; j < 3; j++)
				json_array_append_new(line, json_sprintf("%s%s.%s", prefix, stats[j],
				                                         classes[i]));
			json_array_append_new(cells, line);
		}
		json_array_append_new(details,
		                      json_pack("{s:s, s:s, s:s, s:o, s:o, s:o}", "name", "per_class",
		                                "title", "Per class", "row_header", "class", "rows",
		                                str_array(classes, n), "columns", str_array(stats, 3),
		                                "cells", cells));
		char *first = loomi_strfmt("%sconfusion.%s.%s", prefix, classes[0], classes[0]);
		if (json_object_get(flat, first)) {
			cells = json_array();
			for (size_t i = 0; i < n; i++) {
				json_t *line = json_array();
				for (size_t j = 0; j < n; j++)
					json_array_append_new(line, json_sprintf("%sconfusion.%s.%s", prefix,
					                                         classes[i], classes[j]));
				json_array_append_new(cells, line);
			}
			json_array_append_new(
				details, json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o}", "name", "confusion",
			                       "title", "Confusion matrix", "row_header", "true",
			                       "column_header", "predicted", "rows", str_array(classes, n),
			                       "columns", str_array(classes, n), "cells", cells));
		}
		free(first);
	}
	free(classes);
	free(p);
	return details;
}

json_t *
loomi_display_fallback(const json_t *flat)
{
	static const char *const prefixes[] = {"test_", "val_", ""};
	const char **names = NULL;
	size_t n = 0, i;

	for (i = 0; i < 3; i++) {
		free(names);
		names = candidates(flat, prefixes[i], &n);
		if (n > 0)
			break;
	}
	json_t *out = json_pack("{s:o, s:o}", "headline", str_array(names, n), "details",
	                        details_fallback(flat, i < 3 ? prefixes[i] : ""));
	free(names);
	return out;
}

json_t *
loomi_display_headline(const json_t *display, const json_t *flat)
{
	json_t *out = json_array(), *v;
	size_t i;

	json_array_foreach(json_object_get(display, "headline"), i, v) {
		const char *name = json_string_value(v);
		if (name && json_object_get(flat, name))
			json_array_append(out, v);
	}
	return out;
}

void
loomi_display_attach(json_t *o)
{
	json_t *metrics = json_object_get(o, "metrics");
	json_t *display = json_incref(json_object_get(metrics, LOOMI_DISPLAY_KEY));

	if (json_is_object(metrics))
		json_object_del(metrics, LOOMI_DISPLAY_KEY);
	if (!json_is_object(display)) {
		json_decref(display);
		display = loomi_display_fallback(metrics);
	}
	json_object_set_new(o, "headline", loomi_display_headline(display, metrics));
	json_t *details = json_object_get(display, "details");
	json_object_set(o, "details", json_is_array(details) ? details : json_array());
	json_decref(display);
}

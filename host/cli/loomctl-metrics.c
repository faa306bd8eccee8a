/* Metrics as people read them: a run's or a model version's headline
 * metrics first, in its head's order, and its detail tables (a per-class
 * table, a confusion matrix) drawn as tables. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "loomctl.h"

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The names of o["metrics"] to show: the headline ones in order; with all,
 * then the others by name.  *n of them (malloc'd array of borrowed
 * strings); *more: the metrics left out. */
const char **
metric_names(const json_t *o, bool all, size_t *n, size_t *more)
{
	const json_t *metrics = json_object_get(o, "metrics"), *headline = json_object_get(o, "headline");
	const char **names = calloc(json_object_size(metrics) + json_array_size(headline) + 1,
	                            sizeof *names), *k;
	size_t i, first;
	json_t *v;

	if (names == NULL)
		abort();
	*n = 0;
	json_array_foreach(headline, i, v)
		if (json_is_string(v) && json_object_get(metrics, json_string_value(v)))
			names[(*n)++] = json_string_value(v);
	/* a server without headlines: everything */
	if (!json_is_array(headline))
		all = true;
	first = *n;
	*more = 0;
	json_object_foreach((json_t *)metrics, k, v) {
		bool shown = false;
		for (i = 0; i < first && !shown; i++)
			shown = strcmp(names[i], k) == 0;
		if (shown)
			continue;
		if (all)
			names[(*n)++] = k;
		else
			(*more)++;
	}
	qsort(names + first, *n - first, sizeof *names, by_name);
	return names;
}

static void
print_number(const json_t *v, int width, int digits)
{
	if (json_is_number(v))
		printf("%*.*g", width, digits, json_number_value(v));
	else if (json_is_string(v))
		printf("%*s", width, json_string_value(v));
	else
		printf("%*s", width, "-");
}

size_t
print_metrics(const json_t *o, const char *indent, bool all)
{
	const json_t *metrics = json_object_get(o, "metrics");
	size_t n, more, w = 0;
	const char **names = metric_names(o, all, &n, &more);

	for (size_t i = 0; i < n; i++)
		w = strlen(names[i]) > w ? strlen(names[i]) : w;
	for (size_t i = 0; i < n; i++) {
		printf("%s%-*s ", i ? indent : "", (int)w, names[i]);
		print_number(json_object_get(metrics, names[i]), 12, 6);
		putchar('\n');
	}
	if (n == 0)
		printf("-\n");
	free(names);
	return more;
}

/* "test" or "validation", from the split prefix of a table's first cell. */
static const char *
split_of(const json_t *table)
{
	const char *c = json_string_value(json_array_get(json_array_get(json_object_get(table,
	                                                                                  "cells"),
	                                                                  0),
	                                                 0));
	if (c && strncmp(c, "test_", 5) == 0)
		return "test";
	if (c && strncmp(c, "val_", 4) == 0)
		return "validation";
	return NULL;
}

void
print_details(const json_t *o, const char *indent)
{
	const json_t *metrics = json_object_get(o, "metrics"), *t;
	size_t i;

	json_array_foreach(json_object_get(o, "details"), i, t) {
		const json_t *rows = json_object_get(t, "rows"), *cols = json_object_get(t, "columns");
		const char *rh = S(t, "row_header"), *ch = json_string_value(json_object_get(t,
		                                                                           "column_header"));
		const char *split = split_of(t);
		char corner[128];
		size_t r, c, w0, w = 9;
		json_t *v;

		if (json_object_get(t, "row_header") == NULL)
			rh = "";
		printf("%s%s", indent, S(t, "title"));
		if (split || ch)
			printf(" (%s%s%s%s%s%s)", split ? split : "", split && ch ? "; " : "",
			       ch ? "rows: " : "", ch ? rh : "", ch ? ", columns: " : "", ch ? ch : "");
		printf(":\n");
		snprintf(corner, sizeof corner, ch ? "%s \\ %s" : "%s", rh, ch ? ch : "");
		w0 = strlen(corner);
		json_array_foreach(rows, r, v)
			w0 = strlen(json_string_value(v) ? json_string_value(v) : "") > w0
			         ? strlen(json_string_value(v))
			         : w0;
		json_array_foreach(cols, c, v)
			w = json_string_value(v) && strlen(json_string_value(v)) > w
			        ? strlen(json_string_value(v))
			        : w;
		printf("%s  %-*s", indent, (int)w0, corner);
		json_array_foreach(cols, c, v)
			printf(" %*s", (int)w, json_string_value(v) ? json_string_value(v) : "");
		putchar('\n');
		json_array_foreach(rows, r, v) {
			const json_t *line = json_array_get(json_object_get(t, "cells"), r), *cell;
			printf("%s  %-*s", indent, (int)w0, json_string_value(v) ? json_string_value(v) : "");
			for (c = 0; c < json_array_size(cols); c++) {
				cell = json_array_get(line, c);
				putchar(' ');
				print_number(json_is_string(cell)
				                 ? json_object_get(metrics, json_string_value(cell))
				                 : NULL,
				             (int)w, 4);
			}
			putchar('\n');
		}
	}
}

bool
higher_better(const char *name)
{
	static const char *const up[] = {"accuracy", "f1", "r2", "precision", "recall", "auc"};
	for (size_t i = 0; i < sizeof up / sizeof up[0]; i++)
		if (strstr(name, up[i]))
			return true;
	return false;
}

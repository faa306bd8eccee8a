/* loomctl runs, compare, report and export: what training left behind. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "loomctl.h"
#include "host/core/util.h"

/* s percent-encoded for a query string (malloc'd). */
static char *
url_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = loomi_xmalloc(3 * strlen(s) + 1), *o = out;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("-_.~", *p)) {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}

/* "run-12", "12" → "12"; "task-3" → the task's newest run (asked of loomd). */
static char *
run_ref(const ctl *c, const char *s, int *rv)
{
	const char *d;
	reply r = {0};
	char path[128];

	*rv = 0;
	if (strncmp(s, "task-", 5) != 0) {
		if ((d = id_arg(s, "run", "run-12", "runs list")) == NULL) {
			*rv = EXIT_USAGE;
			return NULL;
		}
		return loomi_strdup(d);
	}
	if ((d = task_arg(s)) == NULL) {
		*rv = EXIT_USAGE;
		return NULL;
	}
	snprintf(path, sizeof path, "/api/v1/runs?task=%s&limit=1", d);
	if ((*rv = http(c, "GET", path, NULL, &r)) != 0)
		return NULL;
	if (r.status != 200) {
		*rv = refused(c, &r);
		json_decref(r.body);
		return NULL;
	}
	const char *id = json_string_value(
		json_object_get(json_array_get(json_object_get(r.body, "runs"), 0), "id"));
	char *out = id ? loomi_strdup(id + 4) : NULL;
	if (out == NULL) {
		fprintf(stderr, "loomctl: %s has no run yet (it has not started)\n", s);
		*rv = EXIT_REFUSED;
	}
	json_decref(r.body);
	return out;
}

/* ------------------------------------------------------------------ runs */

/* --all: every metric, not only the headline ones. */
static bool show_all;

static void
print_run_row(const json_t *r)
{
	const json_t *m = json_object_get(r, "metrics");
	size_t n, more;
	const char **names = metric_names(r, false, &n, &more);

	printf("%-8s %-9s %-9s %-24s", S(r, "id"), S(r, "task_id"), S(r, "state"), S(r, "name"));
	for (size_t i = 0; i < n && i < 3; i++) {
		json_t *v = json_object_get(m, names[i]);
		if (json_is_number(v))
			printf(" %s %.5g", names[i], json_number_value(v));
	}
	free(names);
	putchar('\n');
}

static void
print_runs(const json_t *b)
{
	json_t *list = json_object_get(b, "runs"), *r;
	size_t i;

	if (json_array_size(list) == 0) {
		printf("no runs\n");
		return;
	}
	printf("%-8s %-9s %-9s %-24s %s\n", "RUN", "TASK", "STATE", "NAME", "HEADLINE METRICS");
	json_array_foreach(list, i, r)
		print_run_row(r);
}

static void
print_run(const json_t *r)
{
	const char *key;
	json_t *v, *s;
	size_t i;

	printf("%s  %s  %s (task %s, attempt %lld, user %s)\n", S(r, "id"), S(r, "state"),
	       S(r, "name"), S(r, "task_id"), (long long)json_integer_value(json_object_get(r, "attempt")),
	       S(r, "user"));
	printf("  started %s   ended %s\n", S(r, "started_at"), S(r, "ended_at"));
	printf("  metrics  ");
	print_metrics(r, "           ", false);
	print_details(r, "  ");
	if (!show_all && json_array_size(json_object_get(r, "series")) > 0)
		printf("  series   %zu (runs show %s --all lists them)\n",
		       json_array_size(json_object_get(r, "series")), S(r, "id"));
	json_array_foreach(show_all ? json_object_get(r, "series") : NULL, i, s) {
		json_t *last = json_object_get(s, "last");
		if (i == 0)
			printf("  series:\n");
		printf("    %-24s %8lld points", S(s, "name"),
		       (long long)json_integer_value(json_object_get(s, "points")));
		if (json_is_number(last))
			printf("  last %.6g", json_number_value(last));
		putchar('\n');
	}
	json_t *data = json_object_get(json_object_get(r, "lineage"), "data");
	if (data)
		printf("  data     %s  sha256 %s\n", S(data, "path"), S(data, "sha256"));
	json_object_foreach(json_object_get(r, "tags"), key, v)
		printf("  tag      %s = %s\n", key, json_string_value(v));
	json_array_foreach(json_object_get(r, "artifacts"), i, s)
		printf("  artifact %-18s %10lld bytes  sha256 %.16s…\n", S(s, "name"),
		       (long long)json_integer_value(json_object_get(s, "bytes")), S(s, "sha256"));
}

static void
print_best(const json_t *b)
{
	const json_t *r = json_object_get(b, "run");
	printf("%s (%s, %s): %s = %.6g (%s is best)\n", S(r, "id"), S(r, "name"), S(r, "task_id"),
	       S(b, "metric"), N(b, "value"), strcmp(S(b, "mode"), "max") ? "lowest" : "highest");
}

static int
runs_usage(void)
{
	fprintf(stderr, "usage: loomctl runs [list] [--task ID] [--name NAME] [--state S] "
	                "[--limit N]\n"
	                "       loomctl runs show RUN [--all]\n"
	                "       loomctl runs best METRIC [--name NAME] [--max|--min]\n");
	return EXIT_USAGE;
}

int
cmd_runs(const ctl *c, int argc, char **argv)
{
	const char *sub = argc > 1 && argv[1][0] != '-' ? argv[1] : "list";
	reply r = {0};
	int rv, i = argc > 1 && argv[1][0] != '-' ? 2 : 1;

	if (strcmp(sub, "list") == 0) {
		loomi_strv q = {0};
		for (; i < argc; i++) {
			const char *v = i + 1 < argc ? argv[i + 1] : NULL;
			if (v == NULL)
				return runs_usage();
			if (strcmp(argv[i], "--task") == 0 && task_arg(v))
				loomi_strv_pushf(&q, "task=%s", task_arg(v));
			else if (strcmp(argv[i], "--name") == 0 || strcmp(argv[i], "--state") == 0) {
				char *e = url_encode(v);
				loomi_strv_pushf(&q, "%s=%s", argv[i] + 2, e);
				free(e);
			} else if (strcmp(argv[i], "--limit") == 0 && number_arg("--limit", v))
				loomi_strv_pushf(&q, "limit=%s", v);
			else {
				loomi_strv_free(&q);
				return runs_usage();
			}
			i++;
		}
		char *qs = loomi_strv_join(&q, "&"), *path = loomi_strfmt("/api/v1/runs?%s", qs);
		rv = http(c, "GET", path, NULL, &r);
		free(qs);
		free(path);
		loomi_strv_free(&q);
		return rv ? rv : answer(c, &r, 200, print_runs);
	}
	if (strcmp(sub, "show") == 0) {
		char *id, path[96];
		const char *ref = NULL;
		for (; i < argc; i++) {
			if (strcmp(argv[i], "--all") == 0)
				show_all = true;
			else if (ref == NULL && argv[i][0] != '-')
				ref = argv[i];
			else
				return runs_usage();
		}
		if (ref == NULL)
			return runs_usage();
		if ((id = run_ref(c, ref, &rv)) == NULL)
			return rv;
		snprintf(path, sizeof path, "/api/v1/runs/%s", id);
		free(id);
		return (rv = http(c, "GET", path, NULL, &r)) ? rv : answer(c, &r, 200, print_run);
	}
	if (strcmp(sub, "best") == 0) {
		const char *metric = NULL, *name = NULL, *mode = NULL;
		for (; i < argc; i++) {
			if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
				name = argv[++i];
			else if (strcmp(argv[i], "--max") == 0 || strcmp(argv[i], "--min") == 0)
				mode = argv[i] + 2;
			else if (metric == NULL && argv[i][0] != '-')
				metric = argv[i];
			else
				return runs_usage();
		}
		if (metric == NULL)
			return runs_usage();
		char *em = url_encode(metric), *en = name ? url_encode(name) : NULL;
		char *path = loomi_strfmt("/api/v1/runs/best?metric=%s%s%s%s%s", em, en ? "&name=" : "",
		                          en ? en : "", mode ? "&mode=" : "", mode ? mode : "");
		rv = http(c, "GET", path, NULL, &r);
		free(em);
		free(en);
		free(path);
		return rv ? rv : answer(c, &r, 200, print_best);
	}
	return runs_usage();
}

/* ------------------------------------------------------------------ compare */

static void
print_value(const json_t *v, int width)
{
	if (json_is_number(v))
		printf(" %*.*g", width, 6, json_number_value(v));
	else if (json_is_string(v))
		printf(" %*.*s", width, width, json_string_value(v));
	else if (json_is_null(v) || v == NULL)
		printf(" %*s", width, "-");
	else {
		char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		printf(" %*.*s", width, width, t ? t : "?");
		free(t);
	}
}

static void
print_compare(const json_t *b)
{
	json_t *runs = json_object_get(b, "runs"), *row, *r;
	size_t i, k;

	printf("%-32s", "");
	json_array_foreach(runs, i, r)
		printf(" %14s", S(r, "id"));
	printf("\nparameters that differ:\n");
	json_array_foreach(json_object_get(b, "params"), i, row) {
		if (!json_is_true(json_object_get(row, "differs")))
			continue;
		printf("  %-30.30s", S(row, "key"));
		json_array_foreach(json_object_get(row, "values"), k, r)
			print_value(r, 14);
		putchar('\n');
	}
	size_t hidden = 0;
	printf("%s (* best):\n", show_all ? "metrics" : "headline metrics");
	json_array_foreach(json_object_get(b, "metrics"), i, row) {
		const char *best = json_string_value(json_object_get(row, "best"));
		/* a server without headlines marks none: show everything */
		if (!show_all && json_is_false(json_object_get(row, "headline"))) {
			hidden++;
			continue;
		}
		printf("  %-30.30s", S(row, "name"));
		json_array_foreach(json_object_get(row, "values"), k, r) {
			const char *id = S(json_array_get(runs, k), "id");
			print_value(r, 13);
			putchar(best && strcmp(best, id) == 0 ? '*' : ' ');
		}
		putchar('\n');
	}
	if (hidden > 0)
		printf("  (%zu more metrics: --all shows them)\n", hidden);
}

/* The runs named in argv[from..] as "1,2,3" (task ids resolved). */
static char *
run_list(const ctl *c, int argc, char **argv, int from, int *rv)
{
	loomi_strv ids = {0};
	char *out;

	*rv = 0;
	for (int i = from; i < argc; i++) {
		char *id = run_ref(c, argv[i], rv);
		if (id == NULL) {
			loomi_strv_free(&ids);
			return NULL;
		}
		loomi_strv_push(&ids, id);
	}
	out = loomi_strv_join(&ids, ",");
	loomi_strv_free(&ids);
	return out;
}

int
cmd_compare(const ctl *c, int argc, char **argv)
{
	reply r = {0};
	char *ids, *path;
	int rv;

	int n = 0;
	for (int k = 1; k < argc; k++) {
		if (strcmp(argv[k], "--all") == 0)
			show_all = true;
		else
			argv[++n] = argv[k];
	}
	if (n < 2) {
		fprintf(stderr, "usage: loomctl compare RUN RUN... [--all] (runs or tasks: run-3 "
		                "task-7)\n");
		return EXIT_USAGE;
	}
	if ((ids = run_list(c, n + 1, argv, 1, &rv)) == NULL)
		return rv;
	path = loomi_strfmt("/api/v1/runs/compare?ids=%s", ids);
	rv = http(c, "GET", path, NULL, &r);
	free(path);
	free(ids);
	return rv ? rv : answer(c, &r, 200, print_compare);
}

/* ------------------------------------------------------------------ report, export */

static int
save(const char *file, const reply *r)
{
	/* a file the user asked for: byte for byte, also to stdout */
	FILE *out = term_raw(), *fp = strcmp(file, "-") == 0 ? out : fopen(file, "wb");

	if (fp == NULL) {
		fprintf(stderr, "loomctl: cannot write %s: %s\n", file, strerror(errno));
		return EXIT_REFUSED;
	}
	if (fwrite(r->text, 1, r->len, fp) != r->len || (fp != out ? fclose(fp) : fflush(fp)) != 0) {
		fprintf(stderr, "loomctl: cannot write %s: %s\n", file, strerror(errno));
		if (fp != out)
			remove(file);
		return EXIT_REFUSED;
	}
	if (fp != out)
		fprintf(stderr, "wrote %s (%zu bytes)\n", file, r->len);
	return 0;
}

/* Export the runs or tasks in ids[0..n) as format into file (or a name
 * made of the first id and the format). */
static int
export_to(const ctl *c, char **ids, int n, const char *format, const char *ext, const char *file)
{
	reply r = {0};
	char *path, *list, *fmt = url_encode(format), *name = NULL;
	int rv;

	if (n == 1 && strncmp(ids[0], "run-", 4) != 0 && task_arg(ids[0]) != NULL) {
		path = loomi_strfmt("/api/v1/training/tasks/%s/export?format=%s", task_arg(ids[0]), fmt);
	} else {
		if ((list = run_list(c, n, ids, 0, &rv)) == NULL) {
			free(fmt);
			return rv;
		}
		path = loomi_strfmt("/api/v1/runs/export?ids=%s&format=%s", list, fmt);
		free(list);
	}
	free(fmt);
	rv = exchange(c, "GET", path, NULL, true, &r);
	free(path);
	if (rv != 0)
		return rv;
	if (r.status != 200) {
		rv = refused(c, &r);
		json_decref(r.body);
		return rv;
	}
	if (file == NULL) {
		const char *id = strncmp(ids[0], "run-", 4) == 0 || strncmp(ids[0], "task-", 5) == 0
		                     ? ids[0]
		                     : NULL;
		name = id ? loomi_strfmt("%s%s%s", id, n > 1 ? "-compare" : "", ext)
		          : loomi_strfmt("task-%s%s%s", ids[0], n > 1 ? "-compare" : "", ext);
		file = name;
	}
	rv = save(file, &r);
	free(r.text);
	free(name);
	return rv;
}

int
cmd_report(const ctl *c, int argc, char **argv)
{
	const char *file = NULL;
	char **ids = calloc((size_t)argc, sizeof *ids);
	int n = 0, rv;

	for (int i = 1; i < argc; i++) {
		if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) && i + 1 < argc)
			file = argv[++i];
		else if (argv[i][0] != '-')
			ids[n++] = argv[i];
		else
			n = -1000;
	}
	if (n <= 0) {
		fprintf(stderr, "usage: loomctl report ID... [-o FILE]  (a task or run; several: a "
		                "comparison report)\n");
		free(ids);
		return EXIT_USAGE;
	}
	rv = export_to(c, ids, n, "html", ".html", file);
	free(ids);
	return rv;
}

int
cmd_export(const ctl *c, int argc, char **argv)
{
	const char *file = NULL, *format = NULL, *id = NULL;
	char ext[40];

	for (int i = 1; i < argc; i++) {
		if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) && i + 1 < argc)
			file = argv[++i];
		else if ((strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "--format") == 0) && i + 1 < argc)
			format = argv[++i];
		else if (id == NULL && argv[i][0] != '-')
			id = argv[i];
		else
			id = format = NULL, i = argc;
	}
	if (id == NULL || format == NULL) {
		fprintf(stderr, "usage: loomctl export ID --format onnx|safetensors|csv|json|html "
		                "[-o FILE]\n");
		return EXIT_USAGE;
	}
	snprintf(ext, sizeof ext, ".%s", format);
	return export_to(c, (char **)&id, 1, format, ext, file);
}

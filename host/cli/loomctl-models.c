/* loomctl models: the model registry (list, show, promote, rollback, the
 * deployment rule: deploy, approve, check); loomctl
 * predict: a registered model's predictions (docs/inference.md). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "loomctl.h"

#define DEFAULT_ALIAS "production"

/* --all: every metric, not only the headline ones. */
static bool show_all;

static int
models_usage(void)
{
	fprintf(stderr, "loomctl: usage:\n"
	                "  models [list]\n"
	                "  models show NAME [VERSION|ALIAS] [--all]\n"
	                "  models compare NAME VERSION VERSION... [--all]\n"
	                "  models promote NAME VERSION [--alias ALIAS]   (ALIAS: " DEFAULT_ALIAS
	                ")\n"
	                "  models rollback NAME [--alias ALIAS]          (ALIAS: " DEFAULT_ALIAS
	                ")\n"
	                "  models deploy NAME [--metric M] [--better-by X] [--alias A] [--approval]\n"
	                "  models deploy NAME --show|--delete\n"
	                "  models approve NAME VERSION\n"
	                "  models check NAME DATA.csv [--wait]\n");
	return EXIT_USAGE;
}

/* "k=v, k=v" of a version's headline metrics (every metric with --all). */
static void
print_headline(const json_t *v)
{
	const json_t *metrics = json_object_get(v, "metrics");
	size_t n, more;
	const char **names = metric_names(v, show_all, &n, &more);

	for (size_t i = 0; i < n; i++)
		printf("%s%s=%.6g", i ? ", " : "", names[i],
		       json_number_value(json_object_get(metrics, names[i])));
	if (n == 0)
		putchar('-');
	free(names);
}

/* "k=v, k=v" of a JSON object of numbers or strings. */
static void
print_pairs(const json_t *obj)
{
	const char *k;
	json_t *v;
	int n = 0;

	json_object_foreach((json_t *)obj, k, v) {
		if (json_is_number(v))
			printf("%s%s=%.6g", n++ ? ", " : "", k, json_number_value(v));
		else if (json_is_string(v))
			printf("%s%s=%s", n++ ? ", " : "", k, json_string_value(v));
	}
	if (n == 0)
		putchar('-');
}

static void
print_names(const json_t *arr)
{
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v)
		printf("%s%s", i ? "," : "", json_string_value(v));
	if (json_array_size(arr) == 0)
		putchar('-');
}

static void
print_list(const json_t *b)
{
	size_t i;
	json_t *m;

	printf("%-28s %7s %8s %-24s %s\n", "MODEL", "LATEST", "VERSIONS", "UPDATED", "ALIASES");
	json_array_foreach(json_object_get(b, "models"), i, m) {
		printf("%-28s %7.0f %8.0f %-24s ", S(m, "name"), N(m, "latest_version"),
		       N(m, "versions"), S(m, "updated_at"));
		print_pairs(json_object_get(m, "aliases"));
		putchar('\n');
	}
}

/* "holdout_accuracy better by > 0 → production, with approval", or "-". */
static void
print_rule(const json_t *r)
{
	if (!json_is_object(r)) {
		putchar('-');
		return;
	}
	printf("%s better by > %g (%s is better) → %s%s", S(r, "metric"), N(r, "better_by"),
	       json_is_true(json_object_get(r, "higher_is_better")) ? "higher" : "lower",
	       S(r, "alias"), json_is_true(json_object_get(r, "approval")) ? ", with approval" : "");
}

static void
print_model(const json_t *b)
{
	size_t i;
	json_t *v;

	printf("model:    %s\n", S(b, "name"));
	printf("dir:      %s\n", S(b, "dir"));
	printf("aliases:  ");
	print_pairs(json_object_get(b, "aliases"));
	printf("\ndeploy:   ");
	print_rule(json_object_get(b, "deploy"));
	printf("\n\n%7s %-9s %-8s %-24s %-20s %-22s %s\n", "VERSION", "TASK", "RUN", "CREATED",
	       "ALIASES", "TAGS", "METRICS");
	json_array_foreach(json_object_get(b, "versions"), i, v) {
		printf("%7.0f %-9s %-8s %-24s ", N(v, "version"), S(v, "task_id"), S(v, "run_id"),
		       S(v, "created_at"));
		print_names(json_object_get(v, "aliases"));
		printf(" ");
		print_names(json_object_get(v, "tags"));
		printf(" ");
		print_headline(v);
		if (json_is_true(json_object_get(v, "pending_approval")))
			printf("  [pending approval]");
		putchar('\n');
	}
}

static void
print_version(const json_t *b)
{
	const json_t *l = json_object_get(b, "lineage");
	size_t i;
	json_t *f;

	printf("model:    %s\n", S(b, "name"));
	printf("version:  %.0f\n", N(b, "version"));
	printf("task:     %s\n", S(b, "task_id"));
	printf("run:      %s\n", S(b, "run_id"));
	printf("config:   %s", S(l, "config_id"));
	if (json_is_integer(json_object_get(l, "config_version")))
		printf(" version %.0f", N(l, "config_version"));
	printf("\ncreated:  %s by %s\n", S(b, "created_at"), S(b, "user"));
	printf("aliases:  ");
	print_names(json_object_get(b, "aliases"));
	printf("\ntags:     ");
	print_names(json_object_get(b, "tags"));
	printf("\nmetrics:  ");
	size_t more = print_metrics(b, "          ", show_all);
	if (more > 0)
		printf("          (%zu more: --all shows every metric)\n", more);
	print_details(b, "");
	printf("dir:      %s\n", S(b, "dir"));
	json_array_foreach(json_object_get(b, "files"), i, f)
		printf("  %-20s %12.0f bytes\n", S(f, "name"), N(f, "bytes"));
}

static void
print_move(const json_t *b)
{
	const json_t *prev = json_object_get(b, "previous");
	printf("%s: %s → version %.0f", S(b, "name"), S(b, "alias"), N(b, "version"));
	if (json_is_integer(prev))
		printf(" (was %.0f)", json_number_value(prev));
	printf(", %s\n", S(b, "action"));
}

static int
get(const ctl *c, const char *path, void (*print)(const json_t *))
{
	reply r = {0};
	int rv = http(c, "GET", path, NULL, &r);
	return rv ? rv : answer(c, &r, 200, print);
}

/* Split argv into up to max positional arguments and --alias (--all when
 * alias is NULL). */
static bool
parse(int argc, char **argv, const char **pos, int max, int *n, const char **alias)
{
	*n = 0;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--all") == 0 && alias == NULL)
			show_all = true;
		else if (strcmp(argv[i], "--alias") == 0 && i + 1 < argc && alias)
			*alias = argv[++i];
		else if (strncmp(argv[i], "--alias=", 8) == 0 && alias)
			*alias = argv[i] + 8;
		else if (argv[i][0] == '-' && argv[i][1] == '-')
			return false;
		else if (*n < max)
			pos[(*n)++] = argv[i];
		else
			return false;
	}
	return true;
}

/* Versions of one model side by side: their headline metrics (every
 * metric with --all), the best of each row marked. */
static int
compare(const ctl *c, const char *model, const char *const *vs, int nv)
{
	json_t *versions = json_array(), *names = json_object(), *v;
	char *name = path_segment(model), path[1024];
	size_t i;
	int rv = 0;

	for (int k = 0; k < nv && rv == 0; k++) {
		reply r = {0};
		char *e = path_segment(vs[k]);
		snprintf(path, sizeof path, "/api/v1/models/%s/versions/%s", name, e);
		free(e);
		if ((rv = http(c, "GET", path, NULL, &r)) != 0)
			break;
		if (r.status != 200) {
			rv = refused(c, &r);
			json_decref(r.body);
			break;
		}
		json_array_append_new(versions, r.body);
	}
	free(name);
	if (rv != 0) {
		json_decref(versions);
		json_decref(names);
		return rv;
	}
	if (c->json) {
		char *t = json_dumps(versions, JSON_INDENT(2));
		printf("%s\n", t);
		free(t);
		json_decref(versions);
		json_decref(names);
		return 0;
	}
	/* the rows: each version's headline in order, then (--all) the rest */
	size_t more = 0, w = 6;
	json_array_foreach(versions, i, v) {
		size_t n, m;
		const char **list = metric_names(v, show_all, &n, &m);
		for (size_t k = 0; k < n; k++)
			json_object_set_new(names, list[k], json_true());
		more = m > more ? m : more;
		free(list);
	}
	const char *key;
	json_t *unused;
	json_object_foreach(names, key, unused)
		w = strlen(key) > w ? strlen(key) : w;
	printf("%-*s", (int)w, "metric");
	json_array_foreach(versions, i, v) {
		char head[32];
		snprintf(head, sizeof head, "v%.0f", N(v, "version"));
		printf(" %13s", head);
	}
	putchar('\n');
	json_object_foreach(names, key, unused) {
		bool up = higher_better(key);
		double best = 0;
		int at = -1;
		json_array_foreach(versions, i, v) {
			json_t *x = json_object_get(json_object_get(v, "metrics"), key);
			if (json_is_number(x) &&
			    (at < 0 || (up ? json_number_value(x) > best : json_number_value(x) < best))) {
				best = json_number_value(x);
				at = (int)i;
			}
		}
		printf("%-*s", (int)w, key);
		json_array_foreach(versions, i, v) {
			json_t *x = json_object_get(json_object_get(v, "metrics"), key);
			if (json_is_number(x))
				printf(" %12.6g%c", json_number_value(x), (int)i == at ? '*' : ' ');
			else
				printf(" %12s ", "-");
		}
		putchar('\n');
	}
	printf("* best (higher for accuracy, F1, R2, precision, recall; lower for the rest)%s\n",
	       more ? "; --all shows every metric" : "");
	json_decref(versions);
	json_decref(names);
	return 0;
}

/* ------------------------------------------------------------------ the deployment rule */

static void
print_rule_answer(const json_t *b)
{
	printf("%s: ", S(b, "name"));
	print_rule(b);
	printf("\n(set by %s at %s)\n", S(b, "user"), S(b, "updated_at"));
}

static void
print_decisions(const json_t *b)
{
	size_t i;
	json_t *d;

	printf("%-24s %7s %-12s %-16s %-12s %s\n", "AT", "VERSION", "ALIAS", "ACTION", "BY",
	       "REASON");
	json_array_foreach(json_object_get(b, "decisions"), i, d) {
		printf("%-24s %7.0f %-12s %-16s %-12s %s", S(d, "at"), N(d, "version"), S(d, "alias"),
		       S(d, "action"), S(d, "user"), S(d, "reason"));
		if (json_is_string(json_object_get(d, "approved_by")))
			printf(" [approved by %s at %s]", S(d, "approved_by"), S(d, "approved_at"));
		putchar('\n');
	}
	if (i == 0)
		printf("(no decisions yet)\n");
}

static void
print_deleted(const json_t *b)
{
	printf("%s: deployment rule deleted\n", S(b, "name"));
}

static void
print_approval(const json_t *b)
{
	print_move(json_object_get(b, "move"));
	printf("%s\n", S(json_object_get(b, "decision"), "reason"));
}

static void
print_check(const json_t *b)
{
	const json_t *t = json_object_get(b, "tasks");
	printf("check %.0f of %s: %s, version %.0f against %.0f (before its newest promotion) on "
	       "%s by %s\n",
	       N(b, "id"), S(b, "name"), S(b, "alias"), N(b, "version"), N(b, "previous"), S(b, "data"),
	       S(b, "metric"));
	printf("tasks:    %s (version %.0f), %s (version %.0f)\n", S(t, "version"), N(b, "version"),
	       S(t, "previous"), N(b, "previous"));
	printf("state:    %s", S(b, "state"));
	if (json_is_string(json_object_get(b, "outcome")))
		printf(", %s", S(b, "outcome"));
	putchar('\n');
	if (json_is_string(json_object_get(b, "reason")))
		printf("reason:   %s\n", S(b, "reason"));
}

/* models deploy NAME [--metric M] [--better-by X] [--alias A] [--approval]
 *                    | --show | --delete */
static int
deploy(const ctl *c, int argc, char **argv)
{
	const char *model = NULL, *metric = NULL, *better = NULL, *alias = NULL;
	bool approval = false, show = false, del = false;
	char path[1024], *name;
	reply r = {0};
	int rv;

	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--show") == 0)
			show = true;
		else if (strcmp(a, "--delete") == 0)
			del = true;
		else if (strcmp(a, "--approval") == 0)
			approval = true;
		else if (strcmp(a, "--metric") == 0 && i + 1 < argc)
			metric = argv[++i];
		else if (strcmp(a, "--better-by") == 0 && i + 1 < argc)
			better = argv[++i];
		else if (strcmp(a, "--alias") == 0 && i + 1 < argc)
			alias = argv[++i];
		else if (a[0] == '-' && a[1] == '-')
			return models_usage();
		else if (model == NULL)
			model = a;
		else
			return models_usage();
	}
	if (model == NULL || (show && del) ||
	    ((show || del) && (metric || better || alias || approval)))
		return models_usage();
	name = path_segment(model);
	snprintf(path, sizeof path, "/api/v1/models/%s/deploy", name);
	free(name);
	if (del) {
		if ((rv = http(c, "DELETE", path, NULL, &r)) != 0)
			return rv;
		return answer(c, &r, 200, print_deleted);
	}
	if (show) {
		reply d = {0};
		char dpath[1100];
		if ((rv = http(c, "GET", path, NULL, &r)) != 0)
			return rv;
		if (r.status != 200 || c->json)
			return answer(c, &r, 200, NULL);
		print_rule_answer(r.body);
		json_decref(r.body);
		snprintf(dpath, sizeof dpath, "%s/decisions", path);
		if ((rv = http(c, "GET", dpath, NULL, &d)) != 0)
			return rv;
		putchar('\n');
		return answer(c, &d, 200, print_decisions);
	}
	{
		json_t *body = json_object();
		char *text, *end;
		if (metric)
			json_object_set_new(body, "metric", json_string(metric));
		if (better) {
			double x = strtod(better, &end);
			if (end == better || *end != '\0') {
				fprintf(stderr, "loomctl: --better-by: \"%s\" is not a number (like 0.01)\n",
				        better);
				json_decref(body);
				return EXIT_USAGE;
			}
			json_object_set_new(body, "better_by", json_real(x));
		}
		if (alias)
			json_object_set_new(body, "alias", json_string(alias));
		json_object_set_new(body, "approval", json_boolean(approval));
		text = json_dumps(body, JSON_COMPACT);
		json_decref(body);
		rv = http(c, "PUT", path, text, &r);
		free(text);
		if (rv != 0)
			return rv;
		return answer(c, &r, 200, print_rule_answer);
	}
}

/* models check NAME DATA.csv [--wait]: the check, and with --wait its
 * outcome once both batch predictions ended (exit 1 when it failed). */
static int
check(const ctl *c, int argc, char **argv)
{
	const char *model = NULL, *data = NULL;
	bool wait = false;
	char path[1024], cpath[1200], *name, *body;
	json_t *b;
	reply r = {0};
	int rv;

	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--wait") == 0)
			wait = true;
		else if (argv[i][0] == '-' && argv[i][1] == '-')
			return models_usage();
		else if (model == NULL)
			model = argv[i];
		else if (data == NULL)
			data = argv[i];
		else
			return models_usage();
	}
	if (data == NULL)
		return models_usage();
	name = path_segment(model);
	snprintf(path, sizeof path, "/api/v1/models/%s/deploy/check", name);
	b = json_pack("{s:s}", "data", data);
	body = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	rv = http(c, "POST", path, body, &r);
	free(body);
	if (rv != 0) {
		free(name);
		return rv;
	}
	if (!wait || r.status != 200) {
		free(name);
		return answer(c, &r, 200, print_check);
	}
	snprintf(cpath, sizeof cpath, "/api/v1/models/%s/deploy/checks/%.0f", name,
	         N(r.body, "id"));
	free(name);
	for (;;) {
		const char *state = S(r.body, "state");
		if (strcmp(state, "running") != 0) {
			bool failed = strcmp(state, "failed") == 0;
			rv = answer(c, &r, 200, print_check);
			return rv == 0 && failed ? EXIT_REFUSED : rv;
		}
		json_decref(r.body);
		memset(&r, 0, sizeof r);
		nanosleep(&(struct timespec){.tv_nsec = 500 * 1000 * 1000}, NULL);
		if ((rv = http(c, "GET", cpath, NULL, &r)) != 0)
			return rv;
		if (r.status != 200)
			return answer(c, &r, 200, print_check);
	}
}

int
cmd_models(const ctl *c, int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "list", *pos[2] = {0}, *alias = DEFAULT_ALIAS;
	char path[1024], *name, *a;
	int n, rv;

	if (strcmp(sub, "list") == 0) {
		if (argc > 2)
			return models_usage();
		return get(c, "/api/v1/models", print_list);
	}
	if (strcmp(sub, "show") == 0) {
		if (!parse(argc, argv, pos, 2, &n, NULL) || n < 1)
			return models_usage();
		name = path_segment(pos[0]);
		if (n == 1) {
			snprintf(path, sizeof path, "/api/v1/models/%s", name);
			rv = get(c, path, print_model);
		} else {
			char *v = path_segment(pos[1]);
			snprintf(path, sizeof path, "/api/v1/models/%s/versions/%s", name, v);
			free(v);
			rv = get(c, path, print_version);
		}
		free(name);
		return rv;
	}
	if (strcmp(sub, "compare") == 0) {
		const char *vs[21];
		if (!parse(argc, argv, vs, 21, &n, NULL) || n < 3 || n > 21)
			return models_usage();
		return compare(c, vs[0], vs + 1, n - 1);
	}
	if (strcmp(sub, "promote") == 0 || strcmp(sub, "rollback") == 0) {
		bool promote = sub[0] == 'p';
		reply r = {0};
		char body[64];
		if (!parse(argc, argv, pos, 2, &n, &alias) || n != (promote ? 2 : 1))
			return models_usage();
		if (promote && pos[1][0] == 'v') /* "v3", as the registry names versions */
			pos[1]++;
		if (promote && !number_arg("VERSION", pos[1]))
			return EXIT_USAGE;
		name = path_segment(pos[0]);
		a = path_segment(alias);
		snprintf(path, sizeof path, "/api/v1/models/%s/aliases/%s%s", name, a,
		         promote ? "" : "/rollback");
		snprintf(body, sizeof body, "{\"version\": %s}", promote ? pos[1] : "0");
		free(name);
		free(a);
		if ((rv = http(c, "POST", path, promote ? body : "{}", &r)) != 0)
			return rv;
		return answer(c, &r, 200, print_move);
	}
	if (strcmp(sub, "deploy") == 0)
		return deploy(c, argc, argv);
	if (strcmp(sub, "approve") == 0) {
		reply r = {0};
		char *v;
		if (!parse(argc, argv, pos, 2, &n, NULL) || n != 2 || show_all)
			return models_usage();
		if (pos[1][0] == 'v')
			pos[1]++;
		if (!number_arg("VERSION", pos[1]))
			return EXIT_USAGE;
		name = path_segment(pos[0]);
		v = path_segment(pos[1]);
		snprintf(path, sizeof path, "/api/v1/models/%s/versions/%s/approve", name, v);
		free(name);
		free(v);
		if ((rv = http(c, "POST", path, "{}", &r)) != 0)
			return rv;
		return answer(c, &r, 200, print_approval);
	}
	if (strcmp(sub, "check") == 0)
		return check(c, argc, argv);
	return models_usage();
}

/* ------------------------------------------------------------------ predict */

static int
predict_usage(void)
{
	fprintf(stderr, "loomctl: usage: predict NAME FILE [--alias ALIAS | --version N] "
	                "[--uncertainty] [--passes K]\n"
	                "  FILE: JSON windows, {\"inputs\": [...]} (or {\"input\": [...]}, as "
	                "loom-worker --predict takes, or the bare array); \"-\": standard input\n");
	return EXIT_USAGE;
}

/* One line per window: its outputs (and their spreads), rounded for
 * reading; --json has them exact. */
static void
print_prediction(const json_t *b)
{
	const json_t *outs = json_object_get(b, "outputs"), *unc = json_object_get(b, "uncertainty");
	const json_t *classes = json_object_get(json_object_get(b, "output"), "classes");
	size_t i, n = json_array_size(outs);

	printf("%s version %.0f: %zu window%s\n", S(b, "model"), N(b, "version"), n,
	       n == 1 ? "" : "s");
	for (i = 0; i < n; i++) {
		json_t *flat = json_array(), *sp = json_array(), *stack[2] = {json_array_get(outs, i),
		                                                              json_array_get(unc, i)};
		/* flatten the window's values in order */
		for (int k = 0; k < 2; k++) {
			json_t *todo = json_array(), *into = k ? sp : flat;
			if (stack[k])
				json_array_append(todo, stack[k]);
			while (json_array_size(todo) > 0) {
				json_t *v = json_incref(json_array_get(todo, 0));
				json_array_remove(todo, 0);
				if (json_is_array(v))
					for (size_t j = json_array_size(v); j-- > 0;)
						json_array_insert(todo, 0, json_array_get(v, j));
				else
					json_array_append(into, v);
				json_decref(v);
			}
			json_decref(todo);
		}
		printf("  %zu:", i + 1);
		if (json_array_size(classes) > 0 && json_array_size(classes) == json_array_size(flat)) {
			size_t best = 0;
			for (size_t j = 1; j < json_array_size(flat); j++)
				if (json_number_value(json_array_get(flat, j)) >
				    json_number_value(json_array_get(flat, best)))
					best = j;
			printf(" %s (p = %.3f)", json_string_value(json_array_get(classes, best)),
			       json_number_value(json_array_get(flat, best)));
		} else {
			for (size_t j = 0; j < json_array_size(flat); j++) {
				printf(" %.6g", json_number_value(json_array_get(flat, j)));
				if (j < json_array_size(sp))
					printf(" ±%.3g", json_number_value(json_array_get(sp, j)));
			}
		}
		printf("\n");
		json_decref(flat);
		json_decref(sp);
	}
}

int
cmd_predict(const ctl *c, int argc, char **argv)
{
	const char *model = NULL, *file = NULL, *alias = NULL, *version = NULL, *passes = NULL;
	bool spread = false;
	json_t *doc = NULL, *wins, *body;
	json_error_t jerr;
	char path[1024], *name, *text, *q;
	reply r = {0};
	int rv;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--alias") == 0 && i + 1 < argc)
			alias = argv[++i];
		else if (strcmp(argv[i], "--version") == 0 && i + 1 < argc)
			version = argv[++i];
		else if (strcmp(argv[i], "--passes") == 0 && i + 1 < argc)
			passes = argv[++i];
		else if (strcmp(argv[i], "--uncertainty") == 0)
			spread = true;
		else if (argv[i][0] == '-' && argv[i][1] == '-')
			return predict_usage();
		else if (!model)
			model = argv[i];
		else if (!file)
			file = argv[i];
		else
			return predict_usage();
	}
	if (!model || !file || (alias && version))
		return predict_usage();
	if (version && version[0] == 'v')
		version++;
	if ((version && !number_arg("--version", version)) || (passes && !number_arg("--passes", passes)))
		return EXIT_USAGE;
	doc = strcmp(file, "-") == 0 ? json_loadf(stdin, JSON_REJECT_DUPLICATES, &jerr)
	                             : json_load_file(file, JSON_REJECT_DUPLICATES, &jerr);
	if (doc == NULL) {
		fprintf(stderr, "loomctl: %s: %s (line %d); give {\"inputs\": [[[…]]]}: windows of "
		                "[context][channels] raw values\n",
		        file, jerr.text, jerr.line);
		return EXIT_USAGE;
	}
	wins = json_is_array(doc) ? doc
	                          : json_object_get(doc, "inputs") ? json_object_get(doc, "inputs")
	                                                           : json_object_get(doc, "input");
	if (!json_is_array(wins)) {
		fprintf(stderr, "loomctl: %s: no windows; give {\"inputs\": [[[…]]]}: windows of "
		                "[context][channels] raw values\n",
		        file);
		json_decref(doc);
		return EXIT_USAGE;
	}
	body = json_pack("{s:O, s:b}", "inputs", wins, "uncertainty", spread);
	if (passes)
		json_object_set_new(body, "passes", json_integer(strtoll(passes, NULL, 10)));
	json_decref(doc);
	name = path_segment(model);
	q = alias ? path_segment(alias) : NULL;
	snprintf(path, sizeof path, "/api/v1/models/%s/predict%s%s%s", name,
	         alias ? "?alias=" : version ? "?version=" : "", alias ? q : version ? version : "",
	         "");
	free(name);
	free(q);
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	rv = http(c, "POST", path, text, &r);
	free(text);
	return rv ? rv : answer(c, &r, 200, print_prediction);
}

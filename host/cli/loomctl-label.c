/* loomctl label: labeling projects, their rounds, reviewing one item at a
 * time and exporting the confirmed labels, through /api/v1/labeling
 * (host/labeling/labeling.h, docs/labeling.md).
 *
 *   label list | create | status | round | next | decide | export
 *
 * export --apply writes a data file back with the project's labels in
 * its label column, so that the labels are an increment a training run
 * reads (docs/incremental.md). *
 * Every subcommand prints the API's JSON as is with --json; an answer
 * other than the expected one prints loomd's message and exits 1. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include <loom/types.h>

#include "loomctl.h"
#include "host/core/util.h"

#define API "/api/v1/labeling"
#define POLL_MS 500

static const char usage_text[] =
	"loomctl: usage:\n"
	"  label list\n"
	"  label create NAME --model M --sampler S [--alias A] [--k N] [--lease DURATION]\n"
	"  label status NAME\n"
	"  label round NAME --data FILE [--k N] [--seed N] [--wait]\n"
	"  label next NAME\n"
	"  label decide ITEM confirm|correct|skip|flag [--label L] [--note TEXT]\n"
	"  label export NAME [--format csv|json] [--round N] [-o FILE]\n"
	"  label export NAME --apply DATA.csv [--only corrected|confirmed|all] [--round N] [-o FILE]\n"
	"               [--dataset DATASET [--branch BRANCH]]\n"
	"  (--label: a class; numbers \"1.5,2\" or JSON for a forecast or a regression;\n"
	"   anomalous|normal or JSON for an anomaly)\n";

/* Say why (when there is a why), then how label is called. */
static int label_usage(const char *sub, const char *fmt, ...) LOOM_PRINTF(2, 3);

static int
label_usage(const char *sub, const char *fmt, ...)
{
	if (fmt != NULL) {
		va_list ap;
		fprintf(stderr, "loomctl: label%s%s: ", sub ? " " : "", sub ? sub : "");
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	fputs(usage_text, stderr);
	return EXIT_USAGE;
}

/* ------------------------------------------------------------------ arguments */

/* The arguments of one subcommand: up to two positional ones and the
 * options it takes ("--name VALUE" or "--name=VALUE"; --wait alone). */
typedef struct args {
	const char *pos[2];
	int npos;
	const char *model, *sampler, *alias, *k, *lease, *data, *seed, *label, *note, *format,
		*round, *output, *apply, *only, *dataset, *branch;
	bool wait;
} args;

static const struct option_def {
	const char *name;
	size_t offset; /* of the value in args; 0 for the flag --wait */
} option_defs[] = {
	{"model", offsetof(args, model)},   {"sampler", offsetof(args, sampler)},
	{"alias", offsetof(args, alias)},   {"k", offsetof(args, k)},
	{"lease", offsetof(args, lease)},   {"data", offsetof(args, data)},
	{"seed", offsetof(args, seed)},     {"label", offsetof(args, label)},
	{"note", offsetof(args, note)},     {"format", offsetof(args, format)},
	{"round", offsetof(args, round)},   {"output", offsetof(args, output)},
	{"apply", offsetof(args, apply)},   {"only", offsetof(args, only)},
	{"dataset", offsetof(args, dataset)}, {"branch", offsetof(args, branch)},
	{"wait", 0},
};

/* Split argv (after the subcommand) into a: npos positional arguments
 * exactly, and the options named in allowed (space-separated).  0, or
 * EXIT_USAGE after saying what is wrong. */
static int
parse(int argc, char **argv, int npos, const char *allowed, args *a)
{
	const char *sub = argv[0];

	memset(a, 0, sizeof *a);
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *name, *eq, *value = NULL;
		const struct option_def *def = NULL;
		size_t len;

		if (arg[0] != '-' || arg[1] == '\0') {
			if (a->npos == npos)
				return label_usage(sub, "unexpected \"%s\"", arg);
			a->pos[a->npos++] = arg;
			continue;
		}
		if (strcmp(arg, "-o") == 0)
			arg = "--output";
		if (arg[1] != '-')
			return label_usage(sub, "unknown option \"%s\"", argv[i]);
		name = arg + 2;
		eq = strchr(name, '=');
		len = eq ? (size_t)(eq - name) : strlen(name);
		for (size_t k = 0; k < sizeof option_defs / sizeof option_defs[0] && !def; k++)
			if (strlen(option_defs[k].name) == len &&
			    strncmp(option_defs[k].name, name, len) == 0)
				def = &option_defs[k];
		/* in allowed, as a whole word */
		if (def) {
			const char *p = allowed;
			size_t n = strlen(def->name);
			bool found = false;
			while (!found && (p = strstr(p, def->name)) != NULL) {
				found = (p == allowed || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0');
				p += n;
			}
			if (!found)
				def = NULL;
		}
		if (def == NULL)
			return label_usage(sub, "unknown option \"%s\"", argv[i]);
		if (def->offset == 0) {
			if (eq)
				return label_usage(sub, "--%s takes no value", def->name);
			a->wait = true;
			continue;
		}
		if (eq)
			value = eq + 1;
		else if (i + 1 < argc)
			value = argv[++i];
		else
			return label_usage(sub, "--%s needs a value", def->name);
		*(const char **)((char *)a + def->offset) = value;
	}
	if (a->npos != npos)
		return label_usage(sub, npos == 1 ? "give the project's NAME" : "give ITEM and ACTION");
	return 0;
}

/* A whole number option into body[key]; false after saying why. */
static bool
number_field(json_t *body, const char *key, const char *opt, const char *value)
{
	if (value == NULL)
		return true;
	if (!number_arg(opt, value))
		return false;
	json_object_set_new(body, key, json_integer(strtoll(value, NULL, 10)));
	return true;
}

/* A text option into body[key]; false after saying it is not UTF-8. */
static bool
text_field(json_t *body, const char *key, const char *opt, const char *value)
{
	json_t *v;

	if (value == NULL)
		return true;
	if ((v = json_string(value)) == NULL) {
		fprintf(stderr, "loomctl: label: %s: not UTF-8 text\n", opt);
		return false;
	}
	json_object_set_new(body, key, v);
	return true;
}

/* The request with a JSON body (NULL: none), answered by print for the
 * status ok. */
static int
request(const ctl *c, const char *method, const char *path, json_t *body, int ok,
        void (*print)(const json_t *))
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	reply r = {0};
	int rv = http(c, method, path, text ? text : (strcmp(method, "POST") == 0 ? "{}" : NULL), &r);

	free(text);
	return rv ? rv : answer(c, &r, ok, print);
}

/* ------------------------------------------------------------------ printing */

static void
print_counts(const json_t *counts)
{
	printf("%.0f queued, %.0f leased, %.0f done, %.0f flagged (%.0f in all)", N(counts, "queued"),
	       N(counts, "leased"), N(counts, "done"), N(counts, "flagged"), N(counts, "total"));
}

static void
print_list(const json_t *b)
{
	const json_t *list = json_object_get(b, "projects"), *p;
	size_t i;

	printf("%-24s %-28s %-16s %6s %6s %6s %7s %6s\n", "NAME", "MODEL@ALIAS", "SAMPLER", "QUEUED",
	       "LEASED", "DONE", "FLAGGED", "ROUNDS");
	json_array_foreach(list, i, p) {
		const json_t *n = json_object_get(p, "counts");
		char *at = loomi_strfmt("%s@%s", S(p, "model"), S(p, "alias"));
		printf("%-24s %-28s %-16s %6.0f %6.0f %6.0f %7.0f %6.0f\n", S(p, "name"), at,
		       S(p, "sampler"), N(n, "queued"), N(n, "leased"), N(n, "done"), N(n, "flagged"),
		       N(p, "rounds_total"));
		free(at);
	}
	printf("(%zu project%s)\n", json_array_size(list), json_array_size(list) == 1 ? "" : "s");
}

static void
print_created(const json_t *p)
{
	printf("labeling project %s: %s@%s, sampler %s, %.0f items a round, lease %.0f s\n",
	       S(p, "name"), S(p, "model"), S(p, "alias"), S(p, "sampler"), N(p, "k"),
	       N(p, "lease_seconds"));
}

/* "round 2: open (task-7, weather v2), 50 of 301 windows queued" */
static void
print_round_line(const json_t *r, const char *project)
{
	const json_t *n = json_object_get(r, "counts");

	printf("round %.0f of %s: %s (%s, version %.0f, k %.0f, seed %.0f)", N(r, "number"), project,
	       S(r, "state"), S(r, "task"), N(r, "model_version"), N(r, "k"), N(r, "seed"));
	if (strcmp(S(r, "state"), "open") == 0) {
		printf(", %.0f item%s", N(n, "total"), N(n, "total") == 1 ? "" : "s");
		if (json_is_integer(json_object_get(r, "windows")))
			printf(" from %.0f window%s", N(r, "windows"), N(r, "windows") == 1 ? "" : "s");
	}
	putchar('\n');
	if (json_object_get(r, "error"))
		printf("  error: %s\n", S(r, "error"));
}

static void
print_status(const json_t *p)
{
	const json_t *rounds = json_object_get(p, "rounds"), *r;
	size_t i;

	printf("project   %s (owner %s, created %s)\n", S(p, "name"), S(p, "owner"), S(p, "created"));
	printf("model     %s@%s, sampler %s, %.0f items a round, lease %.0f s\n", S(p, "model"),
	       S(p, "alias"), S(p, "sampler"), N(p, "k"), N(p, "lease_seconds"));
	printf("items     ");
	print_counts(json_object_get(p, "counts"));
	printf("\n\n%5s %-8s %-10s %7s %6s %6s %6s %6s %6s %7s %-24s %s\n", "ROUND", "STATE", "TASK",
	       "VERSION", "K", "SEED", "QUEUED", "LEASED", "DONE", "FLAGGED", "CREATED", "DATA");
	json_array_foreach(rounds, i, r) {
		const json_t *n = json_object_get(r, "counts");
		printf("%5.0f %-8s %-10s %7.0f %6.0f %6.0f %6.0f %6.0f %6.0f %7.0f %-24s %s\n",
		       N(r, "number"), S(r, "state"), S(r, "task"), N(r, "model_version"), N(r, "k"),
		       N(r, "seed"), N(n, "queued"), N(n, "leased"), N(n, "done"), N(n, "flagged"),
		       S(r, "created"), S(r, "data"));
		if (json_object_get(r, "error"))
			printf("      error: %s\n", S(r, "error"));
	}
	if (json_array_size(rounds) == 0)
		printf("(no rounds yet: loomctl label round %s --data FILE starts one)\n", S(p, "name"));
}

/* A JSON value as text: a string as it is, anything else compact. */
static void
print_value(const json_t *v)
{
	if (json_is_string(v)) {
		fputs(json_string_value(v), stdout);
	} else {
		char *t = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
		fputs(t ? t : "-", stdout);
		free(t);
	}
}

/* A window's rows: per channel the first and last values and the
 * smallest, largest and mean of those that are numbers. */
static void
print_window(const json_t *item)
{
	const json_t *w = json_object_get(item, "window"), *times = json_object_get(w, "time");
	const json_t *channels = json_object_get(w, "channels"), *values = json_object_get(w, "values");
	size_t rows = json_array_size(values), ch;
	const json_t *name;

	printf("window    lines %.0f-%.0f of %s", N(w, "first_line"), N(w, "last_line"),
	       S(item, "data"));
	if (json_array_size(times) > 0) {
		printf(", ");
		print_value(json_array_get(times, 0));
		printf(" to ");
		print_value(json_array_get(times, json_array_size(times) - 1));
	}
	printf(" (%zu row%s)\n", rows, rows == 1 ? "" : "s");
	if (json_array_size(channels) == 0)
		return;
	printf("          %-20s %11s %11s %11s %11s %11s\n", "CHANNEL", "FIRST", "LAST", "MIN", "MAX",
	       "MEAN");
	json_array_foreach(channels, ch, name) {
		double lo = INFINITY, hi = -INFINITY, sum = 0;
		size_t n = 0;
		char first[32] = "-", last[32] = "-", cell[3][32];
		for (size_t r = 0; r < rows; r++) {
			const json_t *v = json_array_get(json_array_get(values, r), ch);
			if (!json_is_number(v))
				continue;
			double x = json_number_value(v);
			if (n == 0)
				snprintf(first, sizeof first, "%.6g", x);
			snprintf(last, sizeof last, "%.6g", x);
			lo = x < lo ? x : lo;
			hi = x > hi ? x : hi;
			sum += x;
			n++;
		}
		snprintf(cell[0], sizeof cell[0], n ? "%.6g" : "-", lo);
		snprintf(cell[1], sizeof cell[1], n ? "%.6g" : "-", hi);
		snprintf(cell[2], sizeof cell[2], n ? "%.6g" : "-", n ? sum / (double)n : 0.0);
		printf("          %-20s %11s %11s %11s %11s %11s\n", json_string_value(name) ?
		       json_string_value(name) : "?", first, last, cell[0], cell[1], cell[2]);
	}
}

/* "temp 12.3 ±0.41, wind 3 ±0.2" of one step's (or a regression's)
 * values, named by the targets. */
static void
print_targets(const json_t *targets, const json_t *vals, const json_t *unc)
{
	size_t i;
	const json_t *v;

	json_array_foreach(vals, i, v) {
		const char *t = json_string_value(json_array_get(targets, i));
		printf("%s", i ? ", " : "");
		if (t)
			printf("%s ", t);
		else if (json_array_size(vals) > 1)
			printf("y%zu ", i + 1);
		printf("%.6g", json_number_value(v));
		if (json_is_number(json_array_get(unc, i)))
			printf(" ±%.3g", json_number_value(json_array_get(unc, i)));
	}
}

static void
print_prediction(const json_t *item)
{
	const json_t *p = json_object_get(item, "prediction");
	const char *task = S(item, "task");

	printf("predicted ");
	if (strcmp(task, "classification") == 0) {
		/* the classes, most probable first */
		const json_t *classes = json_object_get(p, "classes"), *probs = json_object_get(p, "probs");
		size_t n = json_array_size(classes), *order = loomi_xmalloc((n + 1) * sizeof *order);
		for (size_t i = 0; i < n; i++) {
			size_t j = i;
			order[i] = i;
			while (j > 0 && json_number_value(json_array_get(probs, order[j - 1])) <
			                    json_number_value(json_array_get(probs, order[j]))) {
				size_t t = order[j];
				order[j] = order[j - 1];
				order[j - 1] = t;
				j--;
			}
		}
		printf("%s", S(p, "label"));
		for (size_t i = 0; i < n; i++)
			printf("%s%s %.3f", i ? ", " : " (", json_string_value(json_array_get(classes, order[i])),
			       json_number_value(json_array_get(probs, order[i])));
		printf("%s\n", n ? ")" : "");
		free(order);
	} else if (strcmp(task, "anomaly") == 0) {
		bool a = json_is_true(json_object_get(p, "anomalous"));
		printf("%s: score %.6g %s the threshold %.6g\n", a ? "anomalous" : "normal",
		       N(p, "score"), a ? "above" : "within", N(p, "threshold"));
	} else {
		const json_t *targets = json_object_get(p, "targets"), *vals = json_object_get(p, "values");
		const json_t *unc = json_object_get(p, "uncertainty");
		if (json_is_array(json_array_get(vals, 0))) { /* a forecast: [h][target] */
			size_t h;
			const json_t *step;
			printf("%zu step%s ahead%s\n", json_array_size(vals),
			       json_array_size(vals) == 1 ? "" : "s",
			       json_is_array(unc) ? " (± the spread of Monte-Carlo-dropout passes)" : "");
			json_array_foreach(vals, h, step) {
				printf("          h%-3zu ", h + 1);
				print_targets(targets, step, json_array_get(unc, h));
				putchar('\n');
			}
		} else {
			print_targets(targets, vals, unc);
			putchar('\n');
		}
	}
}

static void
print_item(const json_t *item)
{
	const json_t *lease = json_object_get(item, "lease"), *d = json_object_get(item, "decision");

	printf("item      %.0f of %s: round %.0f, rank %.0f (1 = most informative), %s\n",
	       N(item, "id"), S(item, "project"), N(item, "round"), N(item, "rank"),
	       S(item, "state"));
	printf("model     %s version %.0f (%s)\n", S(item, "model"), N(item, "version"),
	       S(item, "task"));
	if (json_is_object(lease))
		printf("lease     %s, %.0f s left (until %s)\n", S(lease, "user"),
		       N(lease, "seconds_left"), S(lease, "until"));
	printf("score     ");
	if (json_is_number(json_object_get(item, "score")))
		printf("%.6g", N(item, "score"));
	else
		printf("-");
	printf(" by %s: %s\n", S(item, "sampler"), S(item, "why"));
	print_window(item);
	print_prediction(item);
	if (json_is_object(d)) {
		printf("decision  %s ", S(d, "action"));
		print_value(json_object_get(d, "label"));
		printf(" by %s at %s\n", S(d, "user"), S(d, "at"));
	}
}

static void
print_next(const json_t *b)
{
	const json_t *item = json_object_get(b, "item");

	if (!json_is_object(item)) {
		printf("no item to review: %s\n", S(b, "why"));
		return;
	}
	print_item(item);
	printf("decide    loomctl label decide %.0f confirm|correct --label L|skip|flag\n",
	       N(item, "id"));
}

static void
print_decided(const json_t *b)
{
	const json_t *item = json_object_get(b, "item"), *next = json_object_get(b, "next");
	const json_t *d = json_object_get(item, "decision");

	printf("item %.0f ", N(item, "id"));
	if (strcmp(S(item, "state"), "queued") == 0) {
		printf("skipped: back in the queue for the other reviewers\n");
	} else {
		const json_t *p = json_object_get(item, "prediction");
		printf("%s: ", S(d, "action"));
		print_value(json_object_get(d, "label"));
		if (strcmp(S(item, "task"), "classification") == 0)
			printf(" (predicted %s)", S(p, "label"));
		printf(" by %s\n", S(d, "user"));
	}
	if (json_is_object(next))
		printf("next: item %.0f (round %.0f, rank %.0f), leased to you for %.0f s: loomctl "
		       "label next %s shows it\n",
		       N(next, "id"), N(next, "round"), N(next, "rank"),
		       N(json_object_get(next, "lease"), "seconds_left"), S(next, "project"));
	else
		printf("next: none, %s\n", S(b, "why"));
}

/* ------------------------------------------------------------------ subcommands */

static int
label_list(const ctl *c, int argc, char **argv)
{
	args a;
	int rv;

	if ((rv = parse(argc, argv, 0, "", &a)) != 0)
		return rv;
	return request(c, "GET", API "/projects", NULL, 200, print_list);
}

static int
label_create(const ctl *c, int argc, char **argv)
{
	json_t *body = json_object();
	args a;
	int rv;

	if ((rv = parse(argc, argv, 1, "model sampler alias k lease", &a)) != 0)
		goto out;
	if (a.model == NULL || a.sampler == NULL) {
		rv = label_usage("create", "give the model (--model M) and the sampler instance "
		                           "(--sampler S; GET /api/v1/samplers lists them)");
		goto out;
	}
	rv = EXIT_USAGE;
	if (!text_field(body, "name", "NAME", a.pos[0]) ||
	    !text_field(body, "model", "--model", a.model) ||
	    !text_field(body, "sampler", "--sampler", a.sampler) ||
	    !text_field(body, "alias", "--alias", a.alias) || !number_field(body, "k", "--k", a.k))
		goto out;
	/* seconds as a number, "10m" as the text loomd reads */
	if (a.lease && a.lease[0] && strspn(a.lease, "0123456789") == strlen(a.lease)) {
		if (!number_field(body, "lease", "--lease", a.lease))
			goto out;
	} else if (!text_field(body, "lease", "--lease", a.lease)) {
		goto out;
	}
	rv = request(c, "POST", API "/projects", body, 201, print_created);
out:
	json_decref(body);
	return rv;
}

static int
label_status(const ctl *c, int argc, char **argv)
{
	char *name, *path;
	args a;
	int rv;

	if ((rv = parse(argc, argv, 1, "", &a)) != 0)
		return rv;
	name = path_segment(a.pos[0]);
	path = loomi_strfmt(API "/projects/%s", name);
	rv = request(c, "GET", path, NULL, 200, print_status);
	free(path);
	free(name);
	return rv;
}

/* The data file as loomd should read it: a relative path made absolute
 * (loomd's directory is not the caller's); a storage reference
 * ("instance:key") and an absolute path as given.  Malloc'd. */
static char *
data_path(const char *data)
{
	char *cwd;

	if (data[0] == '/' || strchr(data, ':') != NULL)
		return loomi_strdup(data);
	if ((cwd = getcwd(NULL, 0)) == NULL) {
		fprintf(stderr, "loomctl: label round: --data %s: cannot tell the current directory "
		                "(%s); give the file's absolute path\n",
		        data, strerror(errno));
		return NULL;
	}
	while (data[0] == '.' && data[1] == '/')
		data += 2 + strspn(data + 2, "/");
	char *abs = loomi_strfmt("%s%s%s", cwd, strcmp(cwd, "/") ? "/" : "", data);
	free(cwd);
	return abs;
}

/* Poll the round every POLL_MS until it is open or failed. */
static int
wait_round(const ctl *c, const char *path, const char *project)
{
	for (;;) {
		reply r = {0};
		const char *s;
		int rv = http(c, "GET", path, NULL, &r);

		if (rv != 0)
			return rv;
		if (r.status != 200) {
			rv = refused(c, &r);
			json_decref(r.body);
			return rv;
		}
		s = S(r.body, "state");
		if (strcmp(s, "open") == 0 || strcmp(s, "failed") == 0) {
			bool open = s[0] == 'o';
			if (c->json)
				print_json(&r);
			else if (open)
				print_round_line(r.body, project);
			if (!open)
				fprintf(stderr, "loomctl: round %.0f of %s failed: %s\n", N(r.body, "number"),
				        project, S(r.body, "error"));
			json_decref(r.body);
			return open ? 0 : EXIT_REFUSED;
		}
		json_decref(r.body);
		nng_msleep(POLL_MS);
	}
}

static int
label_round(const ctl *c, int argc, char **argv)
{
	json_t *body = json_object();
	char *name = NULL, *path = NULL, *data = NULL, *text = NULL;
	reply r = {0};
	args a;
	int rv;

	if ((rv = parse(argc, argv, 1, "data k seed wait", &a)) != 0)
		goto out;
	if (a.data == NULL) {
		rv = label_usage("round", "give the data to score (--data FILE, a CSV file under "
		                          "loomd.conf's data_roots)");
		goto out;
	}
	rv = EXIT_USAGE;
	if ((data = data_path(a.data)) == NULL || !text_field(body, "data", "--data", data) ||
	    !number_field(body, "k", "--k", a.k) || !number_field(body, "seed", "--seed", a.seed))
		goto out;
	name = path_segment(a.pos[0]);
	path = loomi_strfmt(API "/projects/%s/rounds", name);
	text = json_dumps(body, JSON_COMPACT);
	if ((rv = http(c, "POST", path, text, &r)) != 0)
		goto out;
	if (r.status != 201) {
		rv = refused(c, &r);
		goto out;
	}
	if (c->json && !a.wait) {
		print_json(&r);
		goto out;
	}
	if (!c->json) {
		print_round_line(r.body, a.pos[0]);
		fflush(stdout);
	}
	if (a.wait) {
		/* --json: the round as it ended, alone */
		char *rpath = loomi_strfmt("%s/%.0f", path, N(r.body, "number"));
		rv = wait_round(c, rpath, a.pos[0]);
		free(rpath);
	}
out:
	json_decref(r.body);
	free(text);
	free(path);
	free(name);
	free(data);
	json_decref(body);
	return rv;
}

static int
label_next(const ctl *c, int argc, char **argv)
{
	char *name, *path;
	args a;
	int rv;

	if ((rv = parse(argc, argv, 1, "", &a)) != 0)
		return rv;
	name = path_segment(a.pos[0]);
	path = loomi_strfmt(API "/projects/%s/next", name);
	rv = request(c, "POST", path, NULL, 200, print_next);
	free(path);
	free(name);
	return rv;
}

/* How many numbers v holds, nested arrays counted through. */
static size_t
count_numbers(const json_t *v)
{
	size_t n = 0, i;
	const json_t *e;

	if (json_is_number(v))
		return 1;
	json_array_foreach(v, i, e)
		n += count_numbers(e);
	return n;
}

/* The flat numbers in nums[*at..] shaped as model (a number, or arrays of
 * them nested as the prediction's values are). */
static json_t *
shape_like(const json_t *model, const double *nums, size_t *at)
{
	json_t *out;
	const json_t *e;
	size_t i;

	if (!json_is_array(model))
		return json_real(nums[(*at)++]);
	out = json_array();
	json_array_foreach(model, i, e)
		json_array_append_new(out, shape_like(e, nums, at));
	return out;
}

/* The label --label gives for the item's task: a class name as it is; an
 * anomaly's "anomalous" or "normal" (or JSON); a forecast's or a
 * regression's numbers "1.5,2", shaped as the prediction's values, or
 * JSON.  NULL after saying why it cannot be one. */
static json_t *
label_value(const json_t *item, const char *text)
{
	const char *task = S(item, "task");
	const json_t *pred = json_object_get(item, "prediction");
	json_error_t jerr;
	json_t *v;

	if (strcmp(task, "classification") == 0) {
		if ((v = json_string(text)) == NULL)
			fprintf(stderr, "loomctl: label decide: --label: not UTF-8 text\n");
		return v;
	}
	if (text[strspn(text, " \t")] == '[' || text[strspn(text, " \t")] == '{') {
		if ((v = json_loads(text, JSON_REJECT_DUPLICATES, &jerr)) == NULL)
			fprintf(stderr, "loomctl: label decide: --label %s: not JSON (%s at column %d)\n",
			        text, jerr.text, jerr.column);
		return v;
	}
	if (strcmp(task, "anomaly") == 0) {
		if (strcmp(text, "anomalous") == 0 || strcmp(text, "true") == 0)
			return json_pack("{sb}", "anomalous", 1);
		if (strcmp(text, "normal") == 0 || strcmp(text, "false") == 0)
			return json_pack("{sb}", "anomalous", 0);
		fprintf(stderr, "loomctl: label decide: --label %s: an anomaly's label is anomalous or "
		                "normal, or JSON such as '{\"anomalous\": true, \"span\": [FIRST_LINE, "
		                "LAST_LINE]}'\n",
		        text);
		return NULL;
	}
	/* numbers, comma-separated */
	{
		const json_t *want = json_object_get(pred, "values");
		size_t n = 0, need = count_numbers(want), at = 0;
		double *nums = loomi_xmalloc((strlen(text) / 2 + 2) * sizeof *nums);
		const char *p = text;
		bool ok = true;

		while (ok) {
			char *end;
			double x;
			errno = 0;
			x = strtod(p, &end);
			ok = end != p && errno == 0 && isfinite(x);
			end += strspn(end, " \t");
			if (ok)
				nums[n++] = x;
			if (!ok || *end == '\0')
				break;
			ok = *end == ',';
			p = end + 1;
		}
		if (!ok) {
			fprintf(stderr, "loomctl: label decide: --label %s: expected finite numbers "
			                "separated by commas (\"1.5,2\"), or JSON shaped as the "
			                "prediction's values\n",
			        text);
			free(nums);
			return NULL;
		}
		if (n != need) {
			char *shape = json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY);
			fprintf(stderr, "loomctl: label decide: --label %s: %zu number%s given; the "
			                "prediction has %zu (its values: %s)\n",
			        text, n, n == 1 ? "" : "s", need, shape ? shape : "?");
			free(shape);
			free(nums);
			return NULL;
		}
		v = shape_like(want, nums, &at);
		free(nums);
		return v;
	}
}

/* "item-17" or "17": the number, checked so it needs no escaping in a
 * path; NULL after saying what an item id looks like. */
static const char *
item_arg(const char *s)
{
	const char *d = strncmp(s, "item-", 5) == 0 ? s + 5 : s;

	if (*d < '1' || *d > '9' || strspn(d, "0123456789") != strlen(d) || strlen(d) > 18) {
		fprintf(stderr, "loomctl: label decide: \"%s\" is not an item id; ids are numbers "
		                "such as 17 (loomctl label next shows the item it leases you)\n",
		        s);
		return NULL;
	}
	return d;
}

static int
label_decide(const ctl *c, int argc, char **argv)
{
	static const char *const actions[] = {"confirm", "correct", "skip", "flag"};
	json_t *body = json_object(), *label;
	const char *id, *action = NULL;
	char *path = NULL;
	args a;
	int rv;

	if ((rv = parse(argc, argv, 2, "label note", &a)) != 0)
		goto out;
	for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
		if (strcmp(a.pos[1], actions[i]) == 0)
			action = actions[i];
	rv = EXIT_USAGE;
	if (action == NULL) {
		rv = label_usage("decide", "\"%s\" is not an action; give confirm, correct, skip or "
		                           "flag",
		                 a.pos[1]);
		goto out;
	}
	if ((strcmp(action, "correct") == 0) != (a.label != NULL)) {
		rv = label_usage("decide", a.label ? "--label goes with correct (confirm takes the "
		                                     "model's prediction)"
		                                   : "correct needs the right label: --label L");
		goto out;
	}
	if ((id = item_arg(a.pos[0])) == NULL || !text_field(body, "note", "--note", a.note))
		goto out;
	json_object_set_new(body, "action", json_string(action));
	if (a.label) {
		/* how the label reads depends on the model's task: ask the item */
		reply r = {0};
		path = loomi_strfmt(API "/items/%s", id);
		if ((rv = http(c, "GET", path, NULL, &r)) != 0)
			goto out;
		if (r.status != 200) {
			rv = refused(c, &r);
			json_decref(r.body);
			goto out;
		}
		label = label_value(r.body, a.label);
		json_decref(r.body);
		if (label == NULL) {
			rv = EXIT_USAGE;
			goto out;
		}
		json_object_set_new(body, "label", label);
		free(path);
	}
	path = loomi_strfmt(API "/items/%s/decision", id);
	rv = request(c, "POST", path, body, 200, print_decided);
out:
	free(path);
	json_decref(body);
	return rv;
}

/* Write n bytes to file whole or not at all: a temporary file beside it,
 * synced, renamed over it.  0, or EXIT_REFUSED after saying why. */
static int
write_atomic(const char *file, const char *data, size_t n)
{
	char *tmp = loomi_strfmt("%s.XXXXXX", file);
	mode_t mask = umask(0);
	int fd, e = 0;

	umask(mask);
	if ((fd = mkstemp(tmp)) < 0) {
		fprintf(stderr, "loomctl: cannot write %s: %s\n", file, strerror(errno));
		free(tmp);
		return EXIT_REFUSED;
	}
	for (size_t done = 0; done < n && e == 0;) {
		ssize_t w = write(fd, data + done, n - done);
		if (w < 0 && errno != EINTR)
			e = errno;
		else if (w > 0)
			done += (size_t)w;
	}
	if (e == 0 && (fchmod(fd, 0666 & ~mask) != 0 || fsync(fd) != 0))
		e = errno;
	if (close(fd) != 0 && e == 0)
		e = errno;
	if (e == 0 && rename(tmp, file) != 0)
		e = errno;
	if (e != 0) {
		fprintf(stderr, "loomctl: cannot write %s: %s\n", file, strerror(e));
		unlink(tmp);
	}
	free(tmp);
	return e ? EXIT_REFUSED : 0;
}

/* ------------------------------------------------------------------ export --apply */

/* A CSV file cut into records the way the engine's reader cuts it
 * (compute-transformer's data.c: RFC 4180 quoting with "" escapes and
 * line breaks inside quotes, CRLF, LF or CR, blank lines skipped, blanks
 * around a field ignored), keeping each field's bytes where they are so
 * that the file can be written again with one column changed and every
 * other byte as it was. */
typedef struct span {
	size_t begin, end;       /* a field's bytes, quotes and blanks included */
} span;

typedef struct csv_rec {
	int64_t line;            /* the line the record starts on; the first is 1 */
	size_t nf;
	span *f;
} csv_rec;

typedef struct csv_file {
	const char *name;
	char *text;
	size_t len;
	int64_t lines;           /* lines of the file */
	csv_rec *recs;           /* recs[0] is the header */
	size_t n;
} csv_file;

static bool
blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

static bool
eol(char ch)
{
	return ch == '\n' || ch == '\r';
}

static void
csv_file_free(csv_file *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->recs[i].f);
	free(f->recs);
	free(f->text);
	memset(f, 0, sizeof *f);
}

/* Cut f->text into records; 0, or EXIT_REFUSED after saying where the
 * file is not CSV. */
static int
csv_scan(csv_file *f)
{
	const char *t = f->text;
	size_t len = f->len, p = 0, cap = 0;
	int64_t line = 1;

	if (len >= 3 && memcmp(t, "\xEF\xBB\xBF", 3) == 0)
		p = 3;
	for (;;) {
		size_t q = p, fcap = 0;
		csv_rec r = {0};

		/* blank lines */
		for (;;) {
			q = p;
			while (q < len && blank(t[q]))
				q++;
			if (q == len || !eol(t[q]))
				break;
			if (t[q] == '\r' && q + 1 < len && t[q + 1] == '\n')
				q++;
			p = q + 1;
			line++;
		}
		if (q == len)
			break;
		r.line = line;
		for (;;) {
			span s = {p, p};
			q = p;
			while (q < len && blank(t[q]))
				q++;
			if (q < len && t[q] == '"') {
				int64_t open = line;
				for (q++;; ) {
					char ch;
					if (q == len) {
						fprintf(stderr, "loomctl: %s:%lld: a quoted field starts on this line "
						        "and is never closed; the file is not CSV a training run "
						        "reads\n", f->name, (long long)open);
						free(r.f);
						return EXIT_REFUSED;
					}
					ch = t[q++];
					if (ch == '"') {
						if (q < len && t[q] == '"') {
							q++;
							continue;
						}
						break;
					}
					if (ch == '\n' || (ch == '\r' && (q == len || t[q] != '\n')))
						line++;
				}
				while (q < len && blank(t[q]))
					q++;
				if (q < len && t[q] != ',' && !eol(t[q])) {
					fprintf(stderr, "loomctl: %s:%lld: text after the closing quote of a "
					        "quoted field; the file is not CSV a training run reads\n",
					        f->name, (long long)line);
					free(r.f);
					return EXIT_REFUSED;
				}
			} else {
				while (q < len && t[q] != ',' && !eol(t[q]))
					q++;
			}
			s.end = q;
			if (r.nf == fcap) {
				fcap = fcap ? 2 * fcap : 16;
				r.f = loomi_xrealloc(r.f, fcap * sizeof *r.f);
			}
			r.f[r.nf++] = s;
			if (q < len && t[q] == ',') {
				p = q + 1;
				continue;
			}
			if (q < len) {
				if (t[q] == '\r' && q + 1 < len && t[q + 1] == '\n')
					q++;
				q++;
				line++;
			}
			p = q;
			break;
		}
		if (f->n == cap) {
			cap = cap ? 2 * cap : 1024;
			f->recs = loomi_xrealloc(f->recs, cap * sizeof *f->recs);
		}
		f->recs[f->n++] = r;
	}
	f->lines = len == 0 ? 0 : eol(t[len - 1]) ? line - 1 : line;
	if (f->n == 0) {
		fprintf(stderr, "loomctl: %s: the file is empty; give the data file the round "
		        "scored\n", f->name);
		return EXIT_REFUSED;
	}
	for (size_t i = 1; i < f->n; i++) {
		if (f->recs[i].nf != f->recs[0].nf) {
			fprintf(stderr, "loomctl: %s:%lld: %zu fields, the header has %zu\n", f->name,
			        (long long)f->recs[i].line, f->recs[i].nf, f->recs[0].nf);
			return EXIT_REFUSED;
		}
	}
	return 0;
}

/* A field's text as the engine reads it: blanks around it dropped, quotes
 * removed and "" made one (malloc'd). */
static char *
csv_text(const csv_file *f, span s)
{
	const char *t = f->text;
	size_t b = s.begin, e = s.end;
	char *out, *o;

	while (b < e && blank(t[b]))
		b++;
	while (e > b && blank(t[e - 1]))
		e--;
	o = out = loomi_xmalloc(e - b + 1);
	if (b < e && t[b] == '"') {
		for (size_t i = b + 1; i < e; i++) {
			if (t[i] == '"' && i + 1 < e && t[i + 1] == '"')
				i++;
			else if (t[i] == '"')
				break;
			*o++ = t[i];
		}
	} else {
		memcpy(o, t + b, e - b);
		o += e - b;
	}
	*o = '\0';
	return out;
}

/* The column named name in the header, or -1. */
static long
csv_column(const csv_file *f, const char *name)
{
	for (size_t i = 0; i < f->recs[0].nf; i++) {
		char *h = csv_text(f, f->recs[0].f[i]);
		bool same = strcmp(h, name) == 0;
		free(h);
		if (same)
			return (long)i;
	}
	return -1;
}

/* The record starting on line, or NULL (records are in line order). */
static csv_rec *
csv_at_line(const csv_file *f, int64_t line)
{
	size_t lo = 1, hi = f->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (f->recs[mid].line < line)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < f->n && f->recs[lo].line == line ? &f->recs[lo] : NULL;
}

/* A value as a CSV field: quoted when it holds a comma, a quote, a line
 * break or blanks at either end (which the reader would drop). */
static void
csv_put(FILE *fp, const char *v)
{
	size_t n = strlen(v);

	if (strpbrk(v, ",\"\r\n") == NULL && (n == 0 || (!blank(v[0]) && !blank(v[n - 1])))) {
		fputs(v, fp);
		return;
	}
	fputc('"', fp);
	for (const char *p = v; *p; p++) {
		if (*p == '"')
			fputc('"', fp);
		fputc(*p, fp);
	}
	fputc('"', fp);
}

/* What the engine reads as "no label" (data.h: empty, NA, NaN, null). */
static bool
reads_as_unlabelled(const char *v)
{
	return *v == '\0' || strcasecmp(v, "na") == 0 || strcasecmp(v, "nan") == 0 ||
	       strcasecmp(v, "null") == 0;
}

/* Model name's version v: its label column (data.target), time column and
 * input columns (data.features, a new array; empty when the spec lists
 * none), from the registry; only a classifier's.  0, or EXIT_REFUSED after
 * saying why. */
static int
version_columns(const ctl *c, const char *model, int64_t v, char **target, char **time_col,
                json_t **features)
{
	char *seg = path_segment(model), *path;
	reply r = {0};
	const json_t *spec, *tg;
	const char *head;
	int rv;

	path = loomi_strfmt("/api/v1/models/%s/versions/%lld", seg, (long long)v);
	rv = http(c, "GET", path, NULL, &r);
	free(path);
	free(seg);
	if (rv != 0)
		return rv;
	if (r.status != 200) {
		fprintf(stderr, "loomctl: label export --apply: the label column is model \"%s\" "
		        "version %lld's data.target, and reading that version was refused:\n",
		        model, (long long)v);
		rv = refused(c, &r);
		json_decref(r.body);
		return rv;
	}
	spec = json_object_get(r.body, "spec");
	head = json_string_value(json_object_get(json_object_get(spec, "model"), "head"));
	tg = json_object_get(json_object_get(spec, "data"), "target");
	if (json_is_array(tg) && json_array_size(tg) == 1)
		tg = json_array_get(tg, 0);
	if (head == NULL || strcmp(head, "classification") != 0) {
		fprintf(stderr, "loomctl: label export --apply: model \"%s\" version %lld is a%s %s "
		        "model; --apply writes class labels into a label column, which only a "
		        "classifier's increment has (use the export's JSON or CSV for other "
		        "labels)\n", model, (long long)v, head && strchr("aeiou", head[0]) ? "n" : "",
		        head ? head : "unknown");
		json_decref(r.body);
		return EXIT_REFUSED;
	}
	if (!json_is_string(tg)) {
		fprintf(stderr, "loomctl: label export --apply: model \"%s\" version %lld's spec "
		        "names no single label column (data.target)\n", model, (long long)v);
		json_decref(r.body);
		return EXIT_REFUSED;
	}
	*target = loomi_strdup(json_string_value(tg));
	tg = json_object_get(json_object_get(spec, "data"), "time_column");
	*time_col = json_is_string(tg) ? loomi_strdup(json_string_value(tg)) : NULL;
	tg = json_object_get(json_object_get(spec, "data"), "features");
	*features = json_is_array(tg) ? json_incref((json_t *)tg) : json_array();
	json_decref(r.body);
	return 0;
}

static bool
only_keeps(const char *only, const char *action)
{
	if (strcmp(only, "all") == 0)
		return true;
	return strcmp(only, "corrected") == 0 ? strcmp(action, "correct") == 0
	                                      : strcmp(action, "confirm") == 0;
}

/* The labels of export that --only keeps and that come from the data
 * file given: all of them when they come from one file (loomd's path for
 * it may differ from this machine's), else those whose path is the one
 * given.  A new array, or NULL after saying why. */
static json_t *
apply_labels(const json_t *export, const char *only, const char *data, const char *project)
{
	json_t *kept = json_array(), *files = json_array(), *mine = json_array(), *l;
	char *real = realpath(data, NULL);
	size_t i;

	json_array_foreach(json_object_get(export, "labels"), i, l) {
		const char *action = json_string_value(json_object_get(l, "action"));
		const json_t *file = json_object_get(l, "data");
		bool seen = false;
		if (action == NULL || !only_keeps(only, action))
			continue;
		json_array_append(kept, l);
		for (size_t k = 0; k < json_array_size(files); k++)
			seen = seen || json_equal(json_array_get(files, k), file);
		if (!seen)
			json_array_append(files, (json_t *)file);
		if (json_is_string(file) && (strcmp(json_string_value(file), data) == 0 ||
		                             (real && strcmp(json_string_value(file), real) == 0)))
			json_array_append(mine, l);
	}
	free(real);
	if (json_array_size(kept) == 0) {
		fprintf(stderr, "loomctl: label export --apply: project \"%s\" has no %s labels%s; "
		        "nothing to apply\n", project,
		        strcmp(only, "all") == 0 ? "confirmed or corrected" : only,
		        json_object_get(export, "rounds") ? " in the rounds exported" : "");
		json_decref(mine);
		mine = NULL;
	} else if (json_array_size(files) > 1 && json_array_size(mine) == 0) {
		char *list = json_dumps(files, JSON_COMPACT);
		fprintf(stderr, "loomctl: label export --apply: project \"%s\"'s labels come from "
		        "%zu data files (%s) and %s is none of them; give --round N to take one "
		        "round's labels, and that round's data file\n", project,
		        json_array_size(files), list ? list : "?", data);
		free(list);
		json_decref(mine);
		mine = NULL;
	} else if (json_array_size(files) == 1) {
		json_decref(mine);
		mine = json_incref(kept);
	}
	json_decref(kept);
	json_decref(files);
	return mine;
}

/* Commit the labelled file (body) as a new version of a->dataset's branch
 * (a->branch, else the dataset's default), through `loomctl data import`:
 * from out_name when -o wrote one, else from a temporary file removed
 * afterwards.  The message names the project, the labels and the model. */
static int
commit_increment(const ctl *c, const args *a, const char *out_name, const char *body,
                 size_t body_len, const char *only, const char *project, const char *model,
                 int64_t version)
{
	const char *tdir = getenv("TMPDIR") && getenv("TMPDIR")[0] ? getenv("TMPDIR") : "/tmp";
	char *dir = NULL, *tmp = NULL, *msg, *argv[9];
	const char *file = out_name;
	int argc = 0, rv;

	if (file == NULL) {
		dir = loomi_strfmt("%s/loomctl-increment.XXXXXX", tdir);
		if (mkdtemp(dir) == NULL) {
			fprintf(stderr, "loomctl: label export --dataset: cannot make a directory in %s: "
			                "%s; set TMPDIR or give -o FILE\n",
			        tdir, strerror(errno));
			free(dir);
			return EXIT_REFUSED;
		}
		file = tmp = loomi_strfmt("%s/increment.csv", dir);
	}
	if ((rv = write_atomic(file, body, body_len)) != 0)
		goto out;
	msg = loomi_strfmt("labels of project %s (%s%s%s) applied to %s, scored by model %s "
	                   "version %lld",
	                   project, only, a->round ? ", round " : ", all rounds",
	                   a->round ? a->round : "", a->apply, model ? model : "?",
	                   (long long)version);
	argv[argc++] = "data";
	argv[argc++] = "import";
	argv[argc++] = (char *)a->dataset;
	argv[argc++] = (char *)file;
	if (a->branch) {
		argv[argc++] = "--branch";
		argv[argc++] = (char *)a->branch;
	}
	argv[argc++] = "--message";
	argv[argc++] = msg;
	argv[argc] = NULL;
	rv = cmd_data(c, argc, argv);
	free(msg);
out:
	if (tmp) {
		unlink(tmp);
		rmdir(dir);
	}
	free(tmp);
	free(dir);
	return rv;
}

static int
label_apply(const ctl *c, const args *a)
{
	const char *only = a->only ? a->only : "all", *project = a->pos[0];
	const char *model, *out_name = a->output && strcmp(a->output, "-") ? a->output : NULL;
	char *name = path_segment(project), *path, *target = NULL, *time_col = NULL, *body = NULL;
	const char **assigned = NULL;
	int64_t version = 0;
	csv_file f = {.name = a->apply};
	json_t *labels = NULL, *features = NULL, *l;
	reply r = {0};
	long tc, timec = -1;
	size_t i, applied = 0, body_len = 0;
	FILE *fp;
	int rv;

	if (strcmp(only, "all") && strcmp(only, "corrected") && strcmp(only, "confirmed")) {
		free(name);
		return label_usage("export", "--only \"%s\": give corrected, confirmed or all", only);
	}
	path = loomi_strfmt(API "/projects/%s/export?format=json%s%s", name,
	                    a->round ? "&round=" : "", a->round ? a->round : "");
	rv = http(c, "GET", path, NULL, &r);
	free(path);
	free(name);
	if (rv != 0)
		return rv;
	if (r.status != 200) {
		rv = refused(c, &r);
		goto out;
	}
	model = json_string_value(json_object_get(json_object_get(r.body, "project"), "model"));
	if ((labels = apply_labels(r.body, only, a->apply, project)) == NULL) {
		rv = EXIT_REFUSED;
		goto out;
	}
	/* the label column: every version that scored a label must name the
	 * same one */
	json_array_foreach(labels, i, l) {
		int64_t v = json_integer_value(json_object_get(l, "model_version"));
		char *tg = NULL, *tm = NULL;
		json_t *fs = NULL;
		if (v == version)
			continue;
		if ((rv = version_columns(c, model ? model : "?", v, &tg, &tm, &fs)) != 0)
			goto out;
		if (target && strcmp(target, tg) != 0) {
			fprintf(stderr, "loomctl: label export --apply: the labels were scored by model "
			        "\"%s\" versions %lld and %lld, whose label columns differ (\"%s\", "
			        "\"%s\"); give --round N to take one round's labels\n", model,
			        (long long)version, (long long)v, target, tg);
			free(tg);
			free(tm);
			json_decref(fs);
			rv = EXIT_REFUSED;
			goto out;
		}
		free(target);
		free(time_col);
		json_decref(features);
		target = tg;
		time_col = tm;
		features = fs;
		version = v;
	}
	if (loomi_read_file(a->apply, &f.text, &f.len) != 0) {
		fprintf(stderr, "loomctl: cannot read %s: %s\n", a->apply, strerror(errno));
		rv = EXIT_REFUSED;
		goto out;
	}
	if ((rv = csv_scan(&f)) != 0)
		goto out;
	/* the header: the model's columns; the label column, when the file
	 * has it, is set, else added last */
	json_array_foreach(features, i, l) {
		if (json_is_string(l) && csv_column(&f, json_string_value(l)) < 0) {
			fprintf(stderr, "loomctl: %s:%lld: no column \"%s\", an input of model \"%s\" "
			        "version %lld; give the data file the round scored\n", a->apply,
			        (long long)f.recs[0].line, json_string_value(l), model,
			        (long long)version);
			rv = EXIT_REFUSED;
			goto out;
		}
	}
	tc = csv_column(&f, target);
	if (time_col && (timec = csv_column(&f, time_col)) < 0) {
		fprintf(stderr, "loomctl: %s:%lld: no column \"%s\", the time column of model \"%s\" "
		        "version %lld; give the data file the round scored\n", a->apply,
		        (long long)f.recs[0].line, time_col, model, (long long)version);
		rv = EXIT_REFUSED;
		goto out;
	}
	/* each label on its window's last row; the file must be the one the
	 * round scored: the line exists, starts a row, and has the time the
	 * export recorded */
	assigned = loomi_xcalloc(f.n, sizeof *assigned);
	json_array_foreach(labels, i, l) {
		int64_t line = json_integer_value(json_object_get(l, "last_line"));
		int64_t item = json_integer_value(json_object_get(l, "item"));
		const char *label = json_string_value(json_object_get(l, "label"));
		const char *when = json_string_value(json_object_get(l, "time"));
		csv_rec *rec = csv_at_line(&f, line);
		if (rec == NULL) {
			if (line > f.lines)
				fprintf(stderr, "loomctl: %s has %lld lines, and item %lld's window ends on "
				        "line %lld: this is not the file its round scored (%s)\n", a->apply,
				        (long long)f.lines, (long long)item, (long long)line,
				        S(l, "data"));
			else
				fprintf(stderr, "loomctl: %s:%lld: no row starts on this line, and item "
				        "%lld's window ends on it: this is not the file its round scored "
				        "(%s), or it was changed since\n", a->apply, (long long)line,
				        (long long)item, S(l, "data"));
			rv = EXIT_REFUSED;
			goto out;
		}
		if (timec >= 0 && when) {
			char *have = csv_text(&f, rec->f[timec]);
			bool same = strcmp(have, when) == 0;
			if (!same)
				fprintf(stderr, "loomctl: %s:%lld: %s is \"%s\", and the export recorded "
				        "\"%s\" for item %lld's window: this is not the file its round "
				        "scored (%s), or it was changed since\n", a->apply,
				        (long long)line, time_col, have, when, (long long)item,
				        S(l, "data"));
			free(have);
			if (!same) {
				rv = EXIT_REFUSED;
				goto out;
			}
		}
		if (label == NULL || reads_as_unlabelled(label)) {
			fprintf(stderr, "loomctl: label export --apply: item %lld's label %s is not a "
			        "class name a training run reads as a label\n", (long long)item,
			        label ? label : "(not text)");
			rv = EXIT_REFUSED;
			goto out;
		}
		/* a later round's decision on the same row wins */
		applied += assigned[rec - f.recs] == NULL;
		assigned[rec - f.recs] = label;
	}
	/* the file again, the label column set on labelled rows and empty on
	 * the others, every other byte as it was */
	if ((fp = open_memstream(&body, &body_len)) == NULL) {
		rv = EXIT_REFUSED;
		goto out;
	}
	{
		size_t at = 0;
		for (i = 0; i < f.n; i++) {
			const csv_rec *rec = &f.recs[i];
			if (tc >= 0 && i == 0)
				continue;
			if (tc >= 0) {
				fwrite(f.text + at, 1, rec->f[tc].begin - at, fp);
				csv_put(fp, assigned[i] ? assigned[i] : "");
				at = rec->f[tc].end;
			} else {
				/* a new last column */
				fwrite(f.text + at, 1, rec->f[rec->nf - 1].end - at, fp);
				fputc(',', fp);
				csv_put(fp, i == 0 ? target : assigned[i] ? assigned[i] : "");
				at = rec->f[rec->nf - 1].end;
			}
		}
		fwrite(f.text + at, 1, f.len - at, fp);
	}
	if (fclose(fp) != 0) {
		rv = EXIT_REFUSED;
		goto out;
	}
	if (a->dataset) {
		/* the increment becomes a version of the dataset's branch: the
		 * file (-o, or a temporary one) imported as `loomctl data import`
		 * would */
		if ((rv = commit_increment(c, a, out_name, body, body_len, only, project, model,
		                           version)) != 0)
			goto out;
	} else if (out_name == NULL) {
		fwrite(body, 1, body_len, term_raw());
		if (fflush(term_raw()) != 0) {
			fprintf(stderr, "loomctl: cannot write the data: %s\n", strerror(errno));
			rv = EXIT_REFUSED;
			goto out;
		}
	} else if ((rv = write_atomic(out_name, body, body_len)) != 0) {
		goto out;
	}
	fprintf(stderr, "%s%s: %zu rows labelled in column \"%s\"%s (%s labels of project %s, "
	        "model %s version %lld); the other %zu rows have an empty label and serve as "
	        "context only\n", out_name ? "wrote " : "", out_name ? out_name : "written", applied,
	        target, tc < 0 ? ", added last" : "", only, project, model ? model : "?",
	        (long long)version, f.n - 1 - applied);
out:
	free(assigned);
	free(body);
	free(target);
	free(time_col);
	json_decref(features);
	json_decref(labels);
	json_decref(r.body);
	csv_file_free(&f);
	return rv;
}

static int
label_export(const ctl *c, int argc, char **argv)
{
	const char *format;
	char *name = NULL, *path = NULL;
	reply r = {0};
	args a;
	int rv;

	if ((rv = parse(argc, argv, 1, "format round output apply only dataset branch", &a)) != 0)
		return rv;
	if ((a.dataset || a.branch) && a.apply == NULL)
		return label_usage("export", "--dataset commits the labelled data file; give --apply "
		                             "DATA.csv too");
	if (a.branch && a.dataset == NULL)
		return label_usage("export", "--branch names the dataset's branch; give --dataset too");
	if (a.round && !number_arg("--round", a.round))
		return EXIT_USAGE;
	if (a.only && a.apply == NULL)
		return label_usage("export", "--only chooses the labels --apply writes; give --apply "
		                             "DATA.csv too");
	if (a.apply && (a.format || c->json))
		return label_usage("export", "--apply writes DATA.csv again with the labels; it "
		                             "takes no --format or --json");
	if (a.apply)
		return label_apply(c, &a);
	/* --json asks for the API's JSON: the json export */
	format = a.format ? a.format : c->json ? "json" : "csv";
	if (strcmp(format, "csv") != 0 && strcmp(format, "json") != 0)
		return label_usage("export", "--format \"%s\": give csv or json", format);
	if (c->json && strcmp(format, "json") != 0)
		return label_usage("export", "--json and --format %s ask for two different outputs; "
		                             "give one of them",
		                   format);
	name = path_segment(a.pos[0]);
	path = loomi_strfmt(API "/projects/%s/export?format=%s%s%s", name, format,
	                    a.round ? "&round=" : "", a.round ? a.round : "");
	rv = exchange(c, "GET", path, NULL, true, &r);
	free(path);
	free(name);
	if (rv != 0)
		return rv;
	if (r.status != 200) {
		rv = refused(c, &r);
	} else if (a.output == NULL || strcmp(a.output, "-") == 0) {
		/* the file as loomd wrote it, byte for byte */
		fwrite(r.text, 1, r.len, term_raw());
		if (fflush(term_raw()) != 0) {
			fprintf(stderr, "loomctl: cannot write the export: %s\n", strerror(errno));
			rv = EXIT_REFUSED;
		}
	} else if ((rv = write_atomic(a.output, r.text, r.len)) == 0) {
		fprintf(stderr, "wrote %s (%zu bytes)\n", a.output, r.len);
	}
	json_decref(r.body);
	free(r.text);
	return rv;
}

static const struct label_cmd {
	const char *name;
	int (*fn)(const ctl *c, int argc, char **argv);
} label_cmds[] = {
	{"list", label_list},     {"create", label_create}, {"status", label_status},
	{"round", label_round},   {"next", label_next},     {"decide", label_decide},
	{"export", label_export},
};

int
cmd_label(const ctl *c, int argc, char **argv)
{
	if (argc < 2)
		return label_usage(NULL, "give a command");
	for (size_t i = 0; i < sizeof label_cmds / sizeof label_cmds[0]; i++)
		if (strcmp(argv[1], label_cmds[i].name) == 0)
			return label_cmds[i].fn(c, argc - 1, argv + 1);
	return label_usage(NULL, "unknown command \"%s\"", argv[1]);
}

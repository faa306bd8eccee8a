/* loomctl — the Loom command line, a client of loomd's REST API.
 *
 *   loomctl [--url URL | --socket PATH] [--cacert FILE] [--token TOKEN]
 *           [--json] [--timeout SECONDS] COMMAND ...
 *
 * Where loomd is: --url or --socket (not both), then LOOM_URL, then
 * LOOM_SOCKET, then the default socket (DEFAULT_SOCKET) when it exists,
 * then http://127.0.0.1:7420.  loomctl-conn.c does the exchange.
 * Exit status: 0 success, 1 the daemon refused the request, 2 bad usage,
 * 3 the daemon cannot be reached. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include <unistd.h>

#include <loom/version.h>

#include "loomctl.h"
#include "host/core/schema.h"
#include "host/core/util.h"

static void
usage(FILE *fp)
{
	fprintf(fp,
	        "usage: loomctl [--url URL | --socket PATH] [--cacert FILE] [--json]\n"
	        "               [--timeout SECONDS] COMMAND ...\n"
	        "\n"
	        "commands:\n"
	        "  health                 the daemon's state, version and uptime\n"
	        "  plugins [list]         the plugin instances loomd loaded\n"
	        "  plugins show INSTANCE  one instance, with its settings\n"
	        "  submit FILE|--config ID [--version N] [--start] [--priority N]\n"
	        "         [--after ID]... [--name NAME] [--cpu N] [--memory SIZE] [--retries N]\n"
	        "         [--preemptible]\n"
	        "                         submit the job spec in FILE (libconfig or JSON), or\n"
	        "                         version N (default: the newest) of a stored config\n"
	        "  list [--status S] [--user U] [--limit N] [--offset N]\n"
	        "                         training tasks, newest first\n"
	        "  status ID              one task: state, progress, metrics, resources\n"
	        "  start|resume ID        queue a pending task / continue a paused one\n"
	        "  pause|cancel ID [--no-wait]\n"
	        "                         ask the worker to stop at its next step; wait for it\n"
	        "  watch ID               a live progress line until the task ends; exit 0 only\n"
	        "                         if it completed\n"
	        "  logs ID [-f] [--level L] [--since T] [--until T] [--grep WORDS] [--limit N]\n"
	        "       [--format text|jsonl|csv]\n"
	        "                         the task's log entries, filtered; -f follows until it\n"
	        "                         ends; --format exports them as loomd writes them\n"
	        "  logs --host [--instance NAME] [same options]\n"
	        "                         loomd's own log entries\n"
	        "  alerts [list] [--rule ID] [--job ID] [--since T] [--limit N] [--offset N]\n"
	        "                         fired alerts, newest first\n"
	        "  alerts show ID         one fired alert, with its actions' outcomes\n"
	        "  alerts rules           the alert rules\n"
	        "  alerts add FILE|-      store the alert rule in FILE (JSON or libconfig)\n"
	        "  alerts enable|disable|delete RULE-ID\n"
	        "                         switch a rule on or off, or delete it\n"
	        "  resources              the resource pool and what running tasks hold\n"
	        "  runs [list] [--task ID] [--name NAME] [--state S] [--limit N]\n"
	        "                         tracked runs (one per task attempt, or made by scripts)\n"
	        "  runs show RUN          a run: metrics, lineage (data hash, versions), artifacts\n"
	        "  runs best METRIC [--name NAME] [--max|--min]\n"
	        "                         the run with the best final value of METRIC\n"
	        "  compare RUN RUN...     runs (or tasks) side by side: differing parameters and\n"
	        "                         final metrics, the best marked\n"
	        "  report ID... [-o FILE] an HTML report of a task or run; of several: a comparison\n"
	        "  export ID --format F [-o FILE]\n"
	        "                         a task's model or results as onnx, safetensors, csv,\n"
	        "                         json or html (GET /api/v1/exporters lists them)\n"
	        "  configs [list] [--limit N] [--offset N]\n"
	        "                         stored training configs, newest first\n"
	        "  configs show ID [--version N] [--format libconfig|json]\n"
	        "                         one config; --format prints it as a file to save\n"
	        "  configs create FILE [--name NAME] [--description TEXT] [--comment TEXT]\n"
	        "                         store the job spec in FILE (libconfig or JSON; - reads\n"
	        "                         standard input); NAME defaults to the spec's name\n"
	        "  configs update ID FILE [--name NAME] [--description TEXT] [--comment TEXT]\n"
	        "                         store FILE as the config's next version\n"
	        "  configs delete ID      delete a config (tasks made from it keep their spec)\n"
	        "  configs versions ID    a config's versions, with their comments\n"
	        "  configs validate FILE  check a job spec as loomd would; exit 1 if invalid\n"
	        "  configs templates      the job-spec templates loomd offers\n"
	        "  configs template NAME  a template as libconfig text, to save and edit\n"
	        "  models [list]          registered models: latest version, aliases\n"
	        "  models show NAME [VERSION|ALIAS]\n"
	        "                         a model's versions, or one version's metrics,\n"
	        "                         lineage and files\n"
	        "  models promote NAME VERSION [--alias ALIAS]\n"
	        "                         point ALIAS (default: production) at VERSION\n"
	        "  models rollback NAME [--alias ALIAS]\n"
	        "                         move ALIAS (default: production) back to the version\n"
	        "                         it pointed at before its last promotion\n"
	        "  predict NAME FILE [--alias ALIAS | --version N] [--uncertainty] [--passes K]\n"
	        "                         the predictions of ALIAS's (default: production)\n"
	        "                         version for FILE's windows (JSON {\"inputs\": …})\n"
	        "  label list             labeling projects: model@alias, sampler, item counts\n"
	        "  label create NAME --model M --sampler S [--alias A] [--k N] [--lease DURATION]\n"
	        "                         a project: rounds of K items the sampler picks from\n"
	        "                         ALIAS's (default: production) predictions\n"
	        "  label status NAME      a project and its rounds (state, task, version, counts)\n"
	        "  label round NAME --data FILE [--k N] [--seed N] [--wait]\n"
	        "                         score FILE with the model and queue the sampler's\n"
	        "                         picks; --wait until the round is open (exit 1 if it\n"
	        "                         failed)\n"
	        "  label next NAME        lease the next item to you and show it: the window,\n"
	        "                         the prediction, why it was picked, the lease\n"
	        "  label decide ITEM confirm|correct|skip|flag [--label L] [--note TEXT]\n"
	        "                         decide a leased item; correct takes --label: a class,\n"
	        "                         numbers \"1.5,2\" or JSON, anomalous|normal\n"
	        "  label export NAME [--format csv|json] [--round N] [-o FILE]\n"
	        "                         the confirmed and corrected labels with provenance\n"
	        "                         (csv, or json with --json); -o writes FILE whole\n"
	        "  data list|create NAME|show NAME|rm NAME\n"
	        "                         versioned datasets: list, make, show (branches, tags,\n"
	        "                         locks), delete\n"
	        "  data import NAME FILE [--branch B] [--format csv|f32|f64] [--message M]\n"
	        "              [--parent V]\n"
	        "                         commit a CSV file or raw array as a new version of B\n"
	        "                         (default: main), uploaded in parts under B's lock\n"
	        "  data log NAME [REF] [--limit N] | diff NAME FROM TO\n"
	        "                         versions, newest first; what changed between two\n"
	        "  data checkout NAME REF [-o FILE] [--native]\n"
	        "                         a version as CSV (or as imported) to FILE or stdout\n"
	        "  data branch NAME [BRANCH [--from REF]] [--delete BRANCH]\n"
	        "  data tag NAME [TAG REF] [--delete TAG] | merge NAME FROM INTO\n"
	        "                         branches and tags (pointers); fast-forward merges\n"
	        "  data lock NAME BRANCH [--ttl S] | unlock NAME BRANCH\n"
	        "                         hold a branch against other writers, or release it\n"
	        "  data audit NAME [--limit N] [--action A] [--user U]\n"
	        "  data gc [--grace S] | quota USER [BYTES]\n"
	        "                         who did what; free unreferenced chunks (admin);\n"
	        "                         stored bytes and quota (loomctl data --help)\n"
	        "  whoami                 who loomd takes you for: user, role, how signed in\n"
	        "  users [list]           users and their roles (admin)\n"
	        "  users add NAME [--role admin|user|viewer] [--uid UID] [--exec]\n"
	        "                         add a user; --uid maps a Unix uid to it on the socket\n"
	        "  users show|disable|enable NAME\n"
	        "  users set-role NAME ROLE | set-exec NAME true|false | set-uid NAME UID|none\n"
	        "  tokens [list] [--user NAME]\n"
	        "                         API tokens (never the tokens themselves)\n"
	        "  tokens create [--user NAME] [--name LABEL] [--expires 30d] [--quiet]\n"
	        "                         a new API token, printed once on standard output\n"
	        "  tokens revoke ID       revoke a token at once\n"
	        "  share KIND ID USER|'*' [read|write]\n"
	        "                         let USER (or every user) see or change an object\n"
	        "  unshare KIND ID USER|'*'\n"
	        "  shares [KIND ID]       what is shared with you, or an object's shares\n"
	        "  login                  read a token from standard input, check it with loomd\n"
	        "                         and keep it in ~/.config/loom/token for later commands\n"
	        "  logout                 remove that file\n"
	        "  version                loomctl's version\n"
	        "\n"
	        "options:\n"
	        "  --url URL        the daemon, http:// or https:// [$LOOM_URL]\n"
	        "  --socket PATH    the daemon's Unix socket [$LOOM_SOCKET, else %s\n"
	        "                   if it exists, else %s]\n"
	        "  --cacert FILE    the CA that signed an https:// daemon's certificate\n"
	        "                   [$LOOM_CACERT, else the system's CAs]\n"
	        "  --token TOKEN    send this API token; $LOOM_TOKEN or loomctl login keep it\n"
	        "                   out of the process list [$LOOM_TOKEN, else the token file,\n"
	        "                   which is not sent over the socket]\n"
	        "  --json           print the API's JSON instead of text\n"
	        "  --timeout S      give up after S seconds [10]\n"
	        "\n"
	        "exit status: 0 ok, 1 refused by loomd, 2 bad usage, 3 loomd unreachable\n",
	        DEFAULT_SOCKET, DEFAULT_URL);
}

/* A string field for printing: "-" when absent. */
const char *
S(const json_t *obj, const char *key)
{
	const char *v = json_string_value(json_object_get(obj, key));
	return v ? v : "-";
}

/* Print an API error and return EXIT_REFUSED. */
int
refused(const ctl *c, const reply *r)
{
	const char *msg =
		json_string_value(json_object_get(json_object_get(r->body, "error"), "message"));
	if (c->json && r->body)
		json_dumpf(r->body, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER), putchar('\n');
	fprintf(stderr, "loomctl: loomd refused (HTTP %d): %s\n", r->status,
	        msg ? msg : "no message");
	return EXIT_REFUSED;
}

int
print_json(const reply *r)
{
	json_dumpf(r->body, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	putchar('\n');
	return 0;
}

static int
cmd_health(const ctl *c, int argc, char **argv)
{
	reply r = {0};
	int rv;

	if (argc != 1) {
		fprintf(stderr, "loomctl: health takes no arguments\n");
		return EXIT_USAGE;
	}
	if ((rv = http(c, "GET", "/api/v1/health", NULL, &r)) != 0)
		return rv;
	if (r.status != 200 && r.status != 503)
		rv = refused(c, &r);
	else if (c->json)
		rv = print_json(&r);
	else {
		json_t *b = r.body;
		printf("loomd %s at %s: %s\n", S(b, "version"),
		       c->where, S(b, "status"));
		printf("  pid %lld, up %llds, %lld plugin instance(s), plugin ABI %s\n",
		       (long long)json_integer_value(json_object_get(b, "pid")),
		       (long long)json_integer_value(json_object_get(b, "uptime_s")),
		       (long long)json_integer_value(json_object_get(b, "plugins")),
		       S(b, "abi"));
		printf("  state %s, schema version %lld\n",
		       S(b, "state_dir"),
		       (long long)json_integer_value(
			       json_object_get(json_object_get(b, "database"), "schema_version")));
		if (json_is_string(json_object_get(json_object_get(b, "database"), "error")))
			printf("  database: %s\n",
			       json_string_value(json_object_get(json_object_get(b, "database"),
			                                         "error")));
	}
	if (rv == 0 && r.status == 503)
		rv = EXIT_REFUSED;
	json_decref(r.body);
	return rv;
}

static bool
instance_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64 || !(s[0] >= 'a' && s[0] <= 'z'))
		return false;
	for (; *s; s++) {
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return false;
	}
	return true;
}

static int
cmd_plugins(const ctl *c, int argc, char **argv)
{
	reply r = {0};
	int rv;

	if (argc >= 2 && strcmp(argv[1], "show") == 0) {
		char *path;
		if (argc != 3) {
			fprintf(stderr, "loomctl: usage: plugins show INSTANCE\n");
			return EXIT_USAGE;
		}
		if (!instance_name_ok(argv[2])) {
			fprintf(stderr, "loomctl: \"%s\" is not an instance name (a lower-case letter, "
			                "then lower-case letters, digits, '-' or '_'); loomctl plugins "
			                "lists them\n",
			        argv[2]);
			return EXIT_USAGE;
		}
		/* a checked name needs no escaping */
		path = malloc(strlen(argv[2]) + 32);
		if (path == NULL)
			return EXIT_REFUSED;
		snprintf(path, strlen(argv[2]) + 32, "/api/v1/plugins/%s", argv[2]);
		rv = http(c, "GET", path, NULL, &r);
		free(path);
		if (rv != 0)
			return rv;
		if (r.status != 200)
			rv = refused(c, &r);
		else if (c->json)
			rv = print_json(&r);
		else {
			const char *key;
			json_t *v, *b = r.body;
			printf("%s: %s %s (%s, ABI %s)\n  %s\n  file %s\n",
			       S(b, "instance"),
			       S(b, "name"),
			       S(b, "version"),
			       S(b, "kind"),
			       S(b, "abi"),
			       S(b, "description"),
			       S(b, "path"));
			printf("  settings:\n");
			json_object_foreach(json_object_get(b, "config"), key, v) {
				char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
				printf("    %s = %s\n", key, text ? text : "?");
				free(text);
			}
		}
		json_decref(r.body);
		return rv;
	}
	if (argc > 2 || (argc == 2 && strcmp(argv[1], "list") != 0)) {
		fprintf(stderr, "loomctl: usage: plugins [list] | plugins show INSTANCE\n");
		return EXIT_USAGE;
	}
	if ((rv = http(c, "GET", "/api/v1/plugins", NULL, &r)) != 0)
		return rv;
	if (r.status != 200)
		rv = refused(c, &r);
	else if (c->json)
		rv = print_json(&r);
	else {
		size_t i;
		json_t *p, *list = json_object_get(r.body, "plugins");
		printf("%-16s %-22s %-10s %-10s %s\n", "INSTANCE", "MODULE", "KIND", "VERSION", "ABI");
		json_array_foreach(list, i, p) {
			printf("%-16s %-22s %-10s %-10s %s\n",
			       S(p, "instance"),
			       S(p, "module"),
			       S(p, "kind"),
			       S(p, "version"),
			       S(p, "abi"));
		}
		if (json_array_size(list) == 0)
			printf("(no plugins loaded)\n");
	}
	json_decref(r.body);
	return rv;
}

/* ------------------------------------------------------------------ tasks */

/* "KIND-12" or "12": the number, checked so it needs no escaping in a
 * path; NULL after saying what an id of kind looks like. */
const char *
id_arg(const char *s, const char *kind, const char *example, const char *lister)
{
	size_t k = strlen(kind);
	const char *d = strncmp(s, kind, k) == 0 && s[k] == '-' ? s + k + 1 : s;
	if (*d < '1' || *d > '9' || strspn(d, "0123456789") != strlen(d) || strlen(d) > 18) {
		fprintf(stderr, "loomctl: \"%s\" is not a %s id; ids look like %s (loomctl %s "
		                "shows them)\n",
		        s, kind, example, lister);
		return NULL;
	}
	return d;
}

const char *
task_arg(const char *s)
{
	return id_arg(s, "task", "task-12", "list");
}

static const char *
config_arg(const char *s)
{
	return id_arg(s, "config", "config-3", "configs list");
}

/* The value of option opt is a whole number (the daemon checks its range). */
bool
number_arg(const char *opt, const char *s)
{
	if (*s == '\0' || strspn(s, "0123456789") != strlen(s) || strlen(s) > 18) {
		fprintf(stderr, "loomctl: %s: \"%s\" is not a whole number\n", opt, s);
		return false;
	}
	return true;
}

double
N(const json_t *obj, const char *key)
{
	return json_number_value(json_object_get(obj, key));
}

static void
print_task(const json_t *t)
{
	const json_t *p = json_object_get(t, "progress"), *m = json_object_get(t, "metrics");
	const char *key;
	json_t *v;

	printf("%s  %s  %s (priority %lld, user %s)\n", S(t, "task_id"), S(t, "status"),
	       S(t, "name"), (long long)json_integer_value(json_object_get(t, "priority")),
	       S(t, "user"));
	if (json_is_true(json_object_get(p, "stopped_early")))
		printf("  progress  stopped early at epoch %lld of %lld (step %lld of %lld)\n",
		       (long long)json_integer_value(json_object_get(p, "epoch")),
		       (long long)json_integer_value(json_object_get(p, "epochs")),
		       (long long)json_integer_value(json_object_get(p, "current_step")),
		       (long long)json_integer_value(json_object_get(p, "total_steps")));
	else
		printf("  progress  step %lld/%lld (%.1f%%), epoch %lld/%lld\n",
		       (long long)json_integer_value(json_object_get(p, "current_step")),
		       (long long)json_integer_value(json_object_get(p, "total_steps")),
		       N(p, "percentage"), (long long)json_integer_value(json_object_get(p, "epoch")),
		       (long long)json_integer_value(json_object_get(p, "epochs")));
	if (json_object_get(t, "waiting_reason"))
		printf("  waiting   %s\n", S(t, "waiting_reason"));
	if (json_object_get(t, "requested"))
		printf("  requested %s (at the next step)\n", S(t, "requested"));
	if (json_object_get(t, "error"))
		printf("  error     %s\n", S(t, "error"));
	if (json_object_size(m)) {
		/* per-class figures and confusion cells (names with a '.') are
		 * details: runs show draws them as tables */
		size_t details = 0;
		printf("  metrics  ");
		json_object_foreach((json_t *)m, key, v) {
			if (strchr(key, '.') != NULL)
				details++;
			else
				printf(" %s %.5g", key, json_number_value(v));
		}
		putchar('\n');
		if (details > 0)
			printf("            (%zu per-class figures and the like: loomctl runs show %s)\n",
			       details, S(t, "task_id"));
	}
	printf("  created   %s   started %s   finished %s\n", S(t, "created_at"),
	       S(t, "started_at"), S(t, "finished_at"));
	printf("  attempts  %lld   out %s\n",
	       (long long)json_integer_value(json_object_get(t, "attempts")), S(t, "out_dir"));
}

static int
get_task(const ctl *c, const char *id, reply *r)
{
	char path[64];
	int rv;
	snprintf(path, sizeof path, "/api/v1/training/tasks/%s", id);
	if ((rv = http(c, "GET", path, NULL, r)) != 0)
		return rv;
	if (r->status != 200) {
		rv = refused(c, r);
		json_decref(r->body);
		r->body = NULL;
	}
	return rv;
}

bool
final_state(const char *s)
{
	return strcmp(s, "completed") == 0 || strcmp(s, "failed") == 0 ||
	       strcmp(s, "cancelled") == 0;
}

/* The job spec in file ("-": standard input): JSON when it starts with
 * '{', else libconfig read through the same reader loomd uses.  Returns 0
 * with *spec set; else prints why and returns EXIT_USAGE (the file cannot
 * be read) or bad_syntax (it does not parse: FILE:LINE: messages). */
int
read_spec(const char *file, int bad_syntax, json_t **spec)
{
	char buf[65536], *text = NULL, *more;
	size_t n = 0, k;
	int rv = 0;
	FILE *fp;

	*spec = NULL;
	if (strcmp(file, "-") == 0) {
		fp = stdin;
		file = "stdin";
	} else if ((fp = fopen(file, "r")) == NULL) {
		fprintf(stderr, "loomctl: cannot read %s: %s\n", file, strerror(errno));
		return EXIT_USAGE;
	}
	while ((k = fread(buf, 1, sizeof buf, fp)) > 0) {
		if ((more = realloc(text, n + k + 1)) == NULL) {
			fprintf(stderr, "loomctl: %s: out of memory\n", file);
			rv = EXIT_USAGE;
			goto out;
		}
		text = more;
		memcpy(text + n, buf, k);
		n += k;
	}
	if (ferror(fp)) {
		fprintf(stderr, "loomctl: cannot read %s: %s\n", file, strerror(errno));
		rv = EXIT_USAGE;
		goto out;
	}
	if (text == NULL && (text = strdup("")) == NULL) {
		rv = EXIT_USAGE;
		goto out;
	}
	text[n] = '\0';
	if (text[strspn(text, " \t\r\n")] == '{') {
		json_error_t je;
		if ((*spec = json_loads(text, JSON_REJECT_DUPLICATES, &je)) == NULL) {
			fprintf(stderr, "%s:%d:%d: %s\n", file, je.line, je.column, je.text);
			rv = bad_syntax;
		}
	} else {
		loomi_doc doc;
		loomi_strv errs = {0};
		if (loomi_doc_load_string(&doc, text, file, &errs) != 0) {
			for (size_t i = 0; i < errs.n; i++)
				fprintf(stderr, "%s\n", errs.v[i]);
			rv = bad_syntax;
		} else {
			*spec = json_incref(doc.root);
		}
		loomi_strv_free(&errs);
		loomi_doc_free(&doc);
	}
out:
	if (fp != stdin)
		fclose(fp);
	free(text);
	return rv;
}

static int
cmd_submit(const ctl *c, int argc, char **argv)
{
	json_t *req = json_object(), *spec = NULL, *after = json_array(), *rr = json_object();
	const char *file = NULL, *config = NULL, *version = NULL;
	char *body;
	reply r = {0};
	int rv = EXIT_USAGE;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool more = i + 1 < argc;
		if (strcmp(a, "--start") == 0)
			json_object_set_new(req, "start", json_true());
		else if (strcmp(a, "--preemptible") == 0)
			json_object_set_new(req, "preemptible", json_true());
		else if (strcmp(a, "--priority") == 0 && more)
			json_object_set_new(req, "priority", json_integer(strtoll(argv[++i], NULL, 10)));
		else if (strcmp(a, "--retries") == 0 && more)
			json_object_set_new(req, "max_retries", json_integer(strtoll(argv[++i], NULL, 10)));
		else if (strcmp(a, "--name") == 0 && more)
			json_object_set_new(req, "name", json_string(argv[++i]));
		else if (strcmp(a, "--after") == 0 && more)
			json_array_append_new(after, json_string(argv[++i]));
		else if (strcmp(a, "--cpu") == 0 && more)
			json_object_set_new(rr, "cpu", json_real(strtod(argv[++i], NULL)));
		else if (strcmp(a, "--memory") == 0 && more)
			json_object_set_new(rr, "memory", json_string(argv[++i]));
		else if (strcmp(a, "--config") == 0 && more) {
			if ((config = config_arg(argv[++i])) == NULL)
				goto out;
		} else if (strcmp(a, "--version") == 0 && more) {
			if (!number_arg("--version", (version = argv[++i])))
				goto out;
		} else if (a[0] == '-' || file) {
			fprintf(stderr, "loomctl: submit: unexpected \"%s\"\n", a);
			goto out;
		} else
			file = a;
	}
	if ((file == NULL) == (config == NULL)) {
		fprintf(stderr, "loomctl: usage: submit FILE|--config ID [--version N] [--start] "
		                "[--priority N] [--after ID]...; give the job spec as a FILE or as a "
		                "stored config, not both\n");
		goto out;
	}
	if (version && config == NULL) {
		fprintf(stderr, "loomctl: submit: --version N goes with --config ID (a version of "
		                "a stored config)\n");
		goto out;
	}
	if (config) {
		char id[32];
		snprintf(id, sizeof id, "config-%s", config);
		json_object_set_new(req, "config_id", json_string(id));
		if (version)
			json_object_set_new(req, "config_version",
			                    json_integer(strtoll(version, NULL, 10)));
	} else {
		if ((rv = read_spec(file, EXIT_USAGE, &spec)) != 0)
			goto out;
		json_object_set(req, "spec", spec);
	}
	if (json_array_size(after))
		json_object_set(req, "after", after);
	if (json_object_size(rr))
		json_object_set(req, "resource_requirements", rr);
	body = json_dumps(req, JSON_COMPACT);
	rv = http(c, "POST", "/api/v1/training/tasks", body, &r);
	free(body);
	if (rv != 0)
		goto out;
	if (r.status != 201)
		rv = refused(c, &r);
	else if (c->json)
		rv = print_json(&r);
	else
		printf("%s %s\n", S(r.body, "task_id"), S(r.body, "status"));
	json_decref(r.body);
out:
	json_decref(spec);
	json_decref(req);
	json_decref(after);
	json_decref(rr);
	return rv;
}

static int
cmd_list(const ctl *c, int argc, char **argv)
{
	char path[512] = "/api/v1/training/tasks?";
	reply r = {0};
	int rv;

	for (int i = 1; i < argc; i++) {
		const char *keys[] = {"--status", "--user", "--limit", "--offset"};
		bool ok = false;
		for (int k = 0; k < 4 && i + 1 < argc; k++) {
			if (strcmp(argv[i], keys[k]) == 0) {
				const char *v = argv[++i];
				if (strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") !=
				        strlen(v) ||
				    strlen(path) + strlen(v) + 16 > sizeof path) {
					fprintf(stderr, "loomctl: list: %s \"%s\": letters, digits, '-', '_' or "
					                "'.' only\n",
					        keys[k], v);
					return EXIT_USAGE;
				}
				snprintf(path + strlen(path), sizeof path - strlen(path), "%s=%s&", keys[k] + 2,
				         v);
				ok = true;
			}
		}
		if (!ok) {
			fprintf(stderr, "loomctl: usage: list [--status S] [--user U] [--limit N] "
			                "[--offset N]\n");
			return EXIT_USAGE;
		}
	}
	if ((rv = http(c, "GET", path, NULL, &r)) != 0)
		return rv;
	if (r.status != 200)
		rv = refused(c, &r);
	else if (c->json)
		rv = print_json(&r);
	else {
		size_t i;
		json_t *t, *list = json_object_get(r.body, "tasks");
		printf("%-12s %-10s %6s %8s %-24s %s\n", "TASK", "STATUS", "PROG", "PRIORITY",
		       "CREATED", "NAME");
		json_array_foreach(list, i, t) {
			printf("%-12s %-10s %5.1f%% %8lld %-24s %s\n", S(t, "task_id"), S(t, "status"),
			       N(t, "progress"),
			       (long long)json_integer_value(json_object_get(t, "priority")),
			       S(t, "created_at"), S(t, "name"));
		}
		printf("(%zu of %lld)\n", json_array_size(list),
		       (long long)json_integer_value(json_object_get(r.body, "total")));
	}
	json_decref(r.body);
	return rv;
}

static int
cmd_status(const ctl *c, int argc, char **argv)
{
	reply r = {0};
	const char *id;
	int rv;

	if (argc != 2 || (id = task_arg(argv[1])) == NULL) {
		if (argc != 2)
			fprintf(stderr, "loomctl: usage: status ID\n");
		return EXIT_USAGE;
	}
	if ((rv = get_task(c, id, &r)) != 0)
		return rv;
	if (c->json)
		print_json(&r);
	else
		print_task(r.body);
	json_decref(r.body);
	return 0;
}

/* Poll until the task's state is one of want (or final); 0 when reached. */
static int
wait_state(const ctl *c, const char *id, const char *want, int timeout_s)
{
	for (int i = 0; i < timeout_s * 5; i++) {
		reply r = {0};
		int rv = get_task(c, id, &r);
		const char *s;
		if (rv != 0)
			return rv;
		s = S(r.body, "status");
		if (strcmp(s, want) == 0 || final_state(s)) {
			bool ok = strcmp(s, want) == 0;
			if (!c->json)
				printf("task-%s %s\n", id, s);
			json_decref(r.body);
			return ok ? 0 : EXIT_REFUSED;
		}
		json_decref(r.body);
		nng_msleep(200);
	}
	fprintf(stderr, "loomctl: task-%s did not become %s within %d s\n", id, want, timeout_s);
	return EXIT_REFUSED;
}

static int
cmd_action(const ctl *c, int argc, char **argv)
{
	const char *action = argv[0], *id = NULL;
	bool wait = true;
	char path[96];
	reply r = {0};
	int rv;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--no-wait") == 0)
			wait = false;
		else if (id == NULL && (id = task_arg(argv[i])) != NULL)
			;
		else
			return EXIT_USAGE;
	}
	if (id == NULL) {
		fprintf(stderr, "loomctl: usage: %s ID\n", action);
		return EXIT_USAGE;
	}
	snprintf(path, sizeof path, "/api/v1/training/tasks/%s/%s", id, action);
	if ((rv = http(c, "POST", path, "{}", &r)) != 0)
		return rv;
	if (r.status != 200 && r.status != 202) {
		rv = refused(c, &r);
	} else if (r.status == 202 && wait) {
		json_decref(r.body);
		return wait_state(c, id, strcmp(action, "pause") == 0 ? "paused" : "cancelled", 600);
	} else if (c->json) {
		rv = print_json(&r);
	} else {
		printf("%s %s%s%s\n", S(r.body, "task_id"), S(r.body, "status"),
		       json_object_get(r.body, "waiting_reason") ? ": " : "",
		       json_object_get(r.body, "waiting_reason") ? S(r.body, "waiting_reason") : "");
	}
	json_decref(r.body);
	return rv;
}

static int
cmd_watch(const ctl *c, int argc, char **argv)
{
	const char *id;
	bool tty = isatty(STDOUT_FILENO);
	char last[512] = "";

	if (argc != 2 || (id = task_arg(argv[1])) == NULL) {
		if (argc != 2)
			fprintf(stderr, "loomctl: usage: watch ID\n");
		return EXIT_USAGE;
	}
	for (;;) {
		reply r = {0};
		int rv = get_task(c, id, &r);
		const json_t *p;
		const char *s;
		char line[512], bar[31];
		double pct;
		int filled;

		if (rv != 0)
			return rv;
		s = S(r.body, "status");
		p = json_object_get(r.body, "progress");
		pct = N(p, "percentage");
		filled = (int)(pct * 30 / 100);
		for (int k = 0; k < 30; k++)
			bar[k] = k < filled ? '#' : '.';
		bar[30] = '\0';
		{
			const json_t *m = json_object_get(r.body, "metrics");
			const json_t *loss = json_object_get(m, "loss");
			const json_t *val = json_object_get(m, "val_loss");
			bool early = json_is_true(json_object_get(p, "stopped_early"));
			snprintf(line, sizeof line,
			         "task-%s %-9s [%s] %5.1f%% step %lld/%lld epoch %lld/%lld%s%s%.5g%s%.5g",
			         id, s, bar, pct, (long long)json_integer_value(json_object_get(p, "current_step")),
			         (long long)json_integer_value(json_object_get(p, "total_steps")),
			         (long long)json_integer_value(json_object_get(p, "epoch")),
			         (long long)json_integer_value(json_object_get(p, "epochs")),
			         early ? " (stopped early)" : "", loss ? "  loss " : "",
			         loss ? json_number_value(loss) : 0.0, val ? "  val_loss " : "",
			         val ? json_number_value(val) : 0.0);
		}
		if (strcmp(line, last) != 0) {
			/* the line is loomctl's own: its terminal codes pass as they are */
			fprintf(term_raw(), tty ? "\r\033[K%s" : "%s\n", line);
			fflush(term_raw());
			snprintf(last, sizeof last, "%s", line);
		}
		if (final_state(s)) {
			if (tty)
				putchar('\n');
			if (json_object_get(r.body, "error"))
				fprintf(stderr, "loomctl: task-%s failed: %s\n", id, S(r.body, "error"));
			rv = strcmp(s, "completed") == 0 ? 0 : EXIT_REFUSED;
			json_decref(r.body);
			return rv;
		}
		json_decref(r.body);
		nng_msleep(500);
	}
}

static int
cmd_resources(const ctl *c, int argc, char **argv)
{
	reply r = {0};
	int rv;
	size_t i;
	json_t *n;

	if (argc != 1)
		return EXIT_USAGE;
	if ((rv = http(c, "GET", "/api/v1/resources", NULL, &r)) != 0)
		return rv;
	if (r.status != 200)
		rv = refused(c, &r);
	else if (c->json)
		rv = print_json(&r);
	else {
		json_array_foreach(json_object_get(r.body, "nodes"), i, n) {
			const json_t *t = json_object_get(n, "total"), *f = json_object_get(n, "free");
			printf("%s: cpu %.3g of %.3g free, memory %.1f of %.1f GiB free, gpu %lld of %lld "
			       "free\n",
			       S(n, "name"), N(f, "cpu"), N(t, "cpu"), N(f, "memory") / 1073741824.0,
			       N(t, "memory") / 1073741824.0,
			       (long long)json_integer_value(json_object_get(f, "gpu")),
			       (long long)json_integer_value(json_object_get(t, "gpu")));
		}
		json_array_foreach(json_object_get(r.body, "jobs"), i, n) {
			printf("  %s (pid %lld): cpu %.3g, memory %.1f GiB, gpu %lld\n", S(n, "task_id"),
			       (long long)json_integer_value(json_object_get(n, "pid")), N(n, "cpu"),
			       N(n, "memory") / 1073741824.0,
			       (long long)json_integer_value(json_object_get(n, "gpu")));
		}
	}
	json_decref(r.body);
	return rv;
}

/* ------------------------------------------------------------------ configs */

/* Stored training configs and job-spec templates, through
 * /api/v1/training/configs and /api/v1/training/templates
 * (host/configs/configs.h describes the bodies and answers). */

#define CONFIGS_PATH "/api/v1/training/configs"

static int configs_usage(const char *sub);

/* spec as libconfig text, after comment as a comment line when there is
 * one; NULL when spec holds a value libconfig cannot (a null, a NUL
 * character, a key that is not a libconfig name).  Free it. */
static char *
libconfig_text(const json_t *spec, const char *comment)
{
	char *body = loomi_json_to_libconfig(spec), *text;

	if (body == NULL || comment == NULL || *comment == '\0')
		return body;
	text = loomi_strfmt("# %s\n%s", comment, body);
	free(body);
	return text;
}

/* The settings of a spec, one "group.key = value" line each. */
static void
print_settings(const json_t *group, const char *prefix)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)group, key, v) {
		char path[512];
		snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", key);
		if (json_is_object(v) && json_object_size(v) > 0) {
			print_settings(v, path);
		} else {
			char *text =
				json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(15));
			printf("    %s = %s\n", path, text ? text : "?");
			free(text);
		}
	}
}

/* The usual ending of a request: refused unless the status is ok, else
 * the JSON with --json, else print(body). */
int
answer(const ctl *c, reply *r, int ok, void (*print)(const json_t *body))
{
	int rv = 0;

	if (r->status != ok)
		rv = refused(c, r);
	else if (c->json)
		rv = print_json(r);
	else
		print(r->body);
	json_decref(r->body);
	r->body = NULL;
	return rv;
}

static void
print_config_list(const json_t *b)
{
	json_t *list = json_object_get(b, "configs"), *cfg;
	size_t i;

	printf("%-12s %7s %-24s %s\n", "CONFIG", "VERSION", "UPDATED", "NAME");
	json_array_foreach(list, i, cfg) {
		printf("%-12s %7lld %-24s %s\n", S(cfg, "config_id"),
		       (long long)json_integer_value(json_object_get(cfg, "versions")),
		       S(cfg, "updated_at"), S(cfg, "name"));
	}
	printf("(%zu of %lld)\n", json_array_size(list),
	       (long long)json_integer_value(json_object_get(b, "total")));
}

static int
configs_list(const ctl *c, int argc, char **argv)
{
	const char *limit = NULL, *offset = NULL;
	char path[128];
	reply r = {0};
	int rv;

	for (int i = 1; i < argc; i++) {
		bool more = i + 1 < argc;
		if (strcmp(argv[i], "--limit") == 0 && more)
			limit = argv[++i];
		else if (strcmp(argv[i], "--offset") == 0 && more)
			offset = argv[++i];
		else
			return configs_usage("list");
	}
	if ((limit && !number_arg("--limit", limit)) || (offset && !number_arg("--offset", offset)))
		return EXIT_USAGE;
	snprintf(path, sizeof path, CONFIGS_PATH "?limit=%s&offset=%s", limit ? limit : "50",
	         offset ? offset : "0");
	if ((rv = http(c, "GET", path, NULL, &r)) != 0)
		return rv;
	return answer(c, &r, 200, print_config_list);
}

static void
print_config(const json_t *b)
{
	const char *desc = json_string_value(json_object_get(b, "description"));

	printf("%s  %s  version %lld of %lld\n", S(b, "config_id"), S(b, "name"),
	       (long long)json_integer_value(json_object_get(b, "version")),
	       (long long)json_integer_value(json_object_get(b, "versions")));
	if (desc && *desc)
		printf("  %s\n", desc);
	printf("  created %s   updated %s\n", S(b, "created_at"), S(b, "updated_at"));
	printf("  spec:\n");
	print_settings(json_object_get(b, "spec"), "");
}

static int
configs_show(const ctl *c, int argc, char **argv)
{
	const char *id = NULL, *version = NULL, *format = NULL;
	char path[128];
	reply r = {0};
	int rv, n;

	for (int i = 1; i < argc; i++) {
		bool more = i + 1 < argc;
		if (strcmp(argv[i], "--version") == 0 && more)
			version = argv[++i];
		else if (strcmp(argv[i], "--format") == 0 && more)
			format = argv[++i];
		else if (argv[i][0] != '-' && id == NULL)
			id = argv[i];
		else
			return configs_usage("show");
	}
	if (id == NULL)
		return configs_usage("show");
	if ((id = config_arg(id)) == NULL || (version && !number_arg("--version", version)))
		return EXIT_USAGE;
	if (format && strcmp(format, "libconfig") != 0 && strcmp(format, "json") != 0) {
		fprintf(stderr, "loomctl: configs show: --format \"%s\": give libconfig or json\n",
		        format);
		return EXIT_USAGE;
	}
	if (format && c->json && strcmp(format, "json") != 0) {
		fprintf(stderr, "loomctl: configs show: --json and --format %s ask for two different "
		                "outputs; give one of them\n",
		        format);
		return EXIT_USAGE;
	}
	n = snprintf(path, sizeof path, CONFIGS_PATH "/config-%s?", id);
	if (version) /* else the newest */
		n += snprintf(path + n, sizeof path - (size_t)n, "version=%s&", version);
	if (format)
		snprintf(path + n, sizeof path - (size_t)n, "format=%s", format);
	if (format == NULL) {
		if ((rv = http(c, "GET", path, NULL, &r)) != 0)
			return rv;
		return answer(c, &r, 200, print_config);
	}
	/* the exported text exactly as loomd wrote it, so it can be saved */
	if ((rv = exchange(c, "GET", path, NULL, true, &r)) != 0)
		return rv;
	if (r.status != 200)
		rv = refused(c, &r);
	else {
		fwrite(r.text, 1, r.len, term_raw());
		fflush(term_raw());
	}
	json_decref(r.body);
	free(r.text);
	return rv;
}

/* A config name (see host/configs/configs.h) for create's default. */
static bool
config_name_ok(const char *s)
{
	size_t n = strlen(s);
	return n >= 1 && n <= 100 &&
	       strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

/* create's name when --name is not given: the spec's own name setting,
 * else the file's name without its directory and extension; NULL when
 * neither makes a config name. */
static char *
default_name(const json_t *spec, const char *file)
{
	const char *s = json_string_value(json_object_get(spec, "name")), *base, *dot;
	char *name;

	if (s && config_name_ok(s))
		return strdup(s);
	base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
	dot = strrchr(base, '.');
	name = strndup(base, dot && dot != base ? (size_t)(dot - base) : strlen(base));
	if (name && (strcmp(file, "-") == 0 || !config_name_ok(name))) {
		free(name);
		return NULL;
	}
	return name;
}

static void
print_stored(const json_t *b)
{
	printf("%s %s version %lld\n", S(b, "config_id"), S(b, "name"),
	       (long long)json_integer_value(json_object_get(b, "version")));
}

/* configs create FILE … and configs update ID FILE …: the spec in FILE,
 * stored as a new config or as the next version of config ID. */
static int
configs_store(const ctl *c, int argc, char **argv)
{
	bool update = strcmp(argv[0], "update") == 0;
	const char *id = NULL, *file = NULL;
	json_t *req = json_object(), *spec = NULL;
	char path[96], *body = NULL, *name = NULL;
	reply r = {0};
	int rv = EXIT_USAGE;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if ((strcmp(a, "--name") == 0 || strcmp(a, "--description") == 0 ||
		     strcmp(a, "--comment") == 0) &&
		    i + 1 < argc) {
			json_t *v = json_string(argv[++i]);
			if (v == NULL) {
				fprintf(stderr, "loomctl: configs %s: %s: not UTF-8 text\n", argv[0], a);
				goto out;
			}
			json_object_set_new(req, a + 2, v);
		} else if (a[0] == '-' && a[1] != '\0') {
			rv = configs_usage(argv[0]);
			goto out;
		} else if (update && id == NULL) {
			id = a;
		} else if (file == NULL) {
			file = a;
		} else {
			rv = configs_usage(argv[0]);
			goto out;
		}
	}
	if (file == NULL) {
		rv = configs_usage(argv[0]);
		goto out;
	}
	if (update && (id = config_arg(id)) == NULL)
		goto out;
	if ((rv = read_spec(file, EXIT_USAGE, &spec)) != 0)
		goto out;
	if (!update && json_object_get(req, "name") == NULL) {
		if ((name = default_name(spec, file)) == NULL) {
			fprintf(stderr, "loomctl: configs create: give the config a name with --name "
			                "NAME (the spec has no name setting to take it from)\n");
			rv = EXIT_USAGE;
			goto out;
		}
		json_object_set_new(req, "name", json_string(name));
	}
	json_object_set(req, "spec", spec);
	body = json_dumps(req, JSON_COMPACT);
	if (update) {
		snprintf(path, sizeof path, CONFIGS_PATH "/config-%s", id);
		rv = http(c, "PUT", path, body, &r);
	} else {
		rv = http(c, "POST", CONFIGS_PATH, body, &r);
	}
	if (rv == 0 && (rv = answer(c, &r, update ? 200 : 201, print_stored)) != 0 && name &&
	    r.status == 409)
		fprintf(stderr, "loomctl: the name \"%s\" came from %s; give another with --name\n",
		        name, json_object_get(spec, "name") ? "the spec's name setting" : file);
out:
	free(body);
	free(name);
	json_decref(spec);
	json_decref(req);
	return rv;
}

static void
print_deleted(const json_t *b)
{
	printf("%s deleted\n", S(b, "config_id"));
}

/* configs SUB ID: one request on the config's path (plus suffix). */
static int
configs_by_id(const ctl *c, int argc, char **argv, const char *method, const char *suffix,
              void (*print)(const json_t *body))
{
	const char *id;
	char path[96];
	reply r = {0};
	int rv;

	if (argc != 2 || argv[1][0] == '-')
		return configs_usage(argv[0]);
	if ((id = config_arg(argv[1])) == NULL)
		return EXIT_USAGE;
	snprintf(path, sizeof path, CONFIGS_PATH "/config-%s%s", id, suffix);
	if ((rv = http(c, method, path, NULL, &r)) != 0)
		return rv;
	return answer(c, &r, 200, print);
}

static int
configs_delete(const ctl *c, int argc, char **argv)
{
	return configs_by_id(c, argc, argv, "DELETE", "", print_deleted);
}

static void
print_versions(const json_t *b)
{
	json_t *v;
	size_t i;

	printf("%s  %s\n", S(b, "config_id"), S(b, "name"));
	printf("%7s %-24s %s\n", "VERSION", "CREATED", "COMMENT");
	json_array_foreach(json_object_get(b, "versions"), i, v) {
		printf("%7lld %-24s %s\n", (long long)json_integer_value(json_object_get(v, "version")),
		       S(v, "created_at"), S(v, "comment"));
	}
}

static int
configs_versions(const ctl *c, int argc, char **argv)
{
	return configs_by_id(c, argc, argv, "GET", "/versions", print_versions);
}

/* configs validate FILE: "FILE: OK", or each problem as "FILE: …" and
 * exit status 1; a FILE that does not parse is invalid too. */
static int
configs_validate(const ctl *c, int argc, char **argv)
{
	const char *file;
	json_t *spec = NULL, *req;
	char *body;
	reply r = {0};
	int rv;

	if (argc != 2 || (argv[1][0] == '-' && argv[1][1] != '\0'))
		return configs_usage("validate");
	file = strcmp(argv[1], "-") == 0 ? "stdin" : argv[1];
	if ((rv = read_spec(argv[1], EXIT_REFUSED, &spec)) != 0)
		return rv;
	req = json_pack("{s:o}", "spec", spec);
	body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	rv = http(c, "POST", CONFIGS_PATH "/validate", body, &r);
	free(body);
	if (rv != 0)
		return rv;
	if (r.status == 200) {
		if (c->json)
			print_json(&r);
		else
			printf("%s: OK\n", file);
	} else if (r.status == 400) {
		/* the compute plugin's problems, one a line */
		const char *msg = json_string_value(
			json_object_get(json_object_get(r.body, "error"), "message"));
		if (c->json)
			print_json(&r);
		for (const char *p = msg ? msg : "invalid"; *p;) {
			size_t n = strcspn(p, "\n");
			fprintf(stderr, "%s: %.*s\n", file, (int)n, p);
			p += n + (p[n] == '\n');
		}
		rv = EXIT_REFUSED;
	} else {
		rv = refused(c, &r);
	}
	json_decref(r.body);
	return rv;
}

static void
print_templates(const json_t *b)
{
	json_t *list = json_object_get(b, "templates"), *t;
	size_t i;

	printf("%-16s %s\n", "TEMPLATE", "DESCRIPTION");
	json_array_foreach(list, i, t) {
		printf("%-16s %s\n", S(t, "name"), S(t, "description"));
	}
	if (json_array_size(list) == 0)
		printf("(no templates; loomd reads them from $LOOM_TEMPLATES, by default %s)\n",
		       LOOM_TEMPLATE_DIR);
}

static int
configs_templates(const ctl *c, int argc, char **argv)
{
	reply r = {0};
	int rv;

	(void)argv;
	if (argc != 1)
		return configs_usage("templates");
	if ((rv = http(c, "GET", "/api/v1/training/templates", NULL, &r)) != 0)
		return rv;
	return answer(c, &r, 200, print_templates);
}

/* configs template NAME: the template as libconfig text to save, edit and
 * give to configs create or submit. */
static int
configs_template(const ctl *c, int argc, char **argv)
{
	char path[160], *text;
	reply r = {0};
	int rv;

	if (argc != 2 || argv[1][0] == '-')
		return configs_usage("template");
	if (!config_name_ok(argv[1])) {
		fprintf(stderr, "loomctl: \"%s\" is not a template name (letters, digits, '_', '.' "
		                "and '-'); loomctl configs templates lists them\n",
		        argv[1]);
		return EXIT_USAGE;
	}
	snprintf(path, sizeof path, "/api/v1/training/templates/%s", argv[1]);
	if ((rv = http(c, "GET", path, NULL, &r)) != 0)
		return rv;
	if (r.status != 200 || c->json) {
		rv = r.status != 200 ? refused(c, &r) : print_json(&r);
	} else if ((text = libconfig_text(json_object_get(r.body, "spec"),
	                                  S(r.body, "description"))) == NULL) {
		fprintf(stderr, "loomctl: template %s holds a value libconfig cannot write; see it "
		                "with loomctl --json configs template %s\n",
		        argv[1], argv[1]);
		rv = EXIT_REFUSED;
	} else {
		fputs(text, stdout);
		free(text);
	}
	json_decref(r.body);
	return rv;
}

static const struct configs_cmd {
	const char *name, *args;
	int (*fn)(const ctl *c, int argc, char **argv);
} configs_cmds[] = {
	{"list", "[--limit N] [--offset N]", configs_list},
	{"show", "ID [--version N] [--format libconfig|json]", configs_show},
	{"create", "FILE [--name NAME] [--description TEXT] [--comment TEXT]", configs_store},
	{"update", "ID FILE [--name NAME] [--description TEXT] [--comment TEXT]", configs_store},
	{"delete", "ID", configs_delete},
	{"versions", "ID", configs_versions},
	{"validate", "FILE", configs_validate},
	{"templates", "", configs_templates},
	{"template", "NAME", configs_template},
};
#define N_CONFIGS_CMDS (sizeof configs_cmds / sizeof configs_cmds[0])

/* Print how to call configs sub (all of them when sub is not one). */
static int
configs_usage(const char *sub)
{
	for (size_t i = 0; i < N_CONFIGS_CMDS; i++) {
		if (strcmp(configs_cmds[i].name, sub) == 0) {
			fprintf(stderr, "loomctl: usage: configs %s%s%s\n", sub,
			        *configs_cmds[i].args ? " " : "", configs_cmds[i].args);
			return EXIT_USAGE;
		}
	}
	fprintf(stderr, "loomctl: usage:\n");
	for (size_t i = 0; i < N_CONFIGS_CMDS; i++)
		fprintf(stderr, "  loomctl configs %s%s%s\n", configs_cmds[i].name,
		        *configs_cmds[i].args ? " " : "", configs_cmds[i].args);
	return EXIT_USAGE;
}

static int
cmd_configs(const ctl *c, int argc, char **argv)
{
	if (argc < 2 || argv[1][0] == '-') /* like plugins: the list */
		return configs_list(c, argc, argv);
	for (size_t i = 0; i < N_CONFIGS_CMDS; i++) {
		if (strcmp(configs_cmds[i].name, argv[1]) == 0)
			return configs_cmds[i].fn(c, argc - 1, argv + 1);
	}
	fprintf(stderr, "loomctl: configs: unknown command \"%s\"\n", argv[1]);
	return configs_usage("");
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"url", required_argument, NULL, 'u'},
		{"socket", required_argument, NULL, 's'},
		{"cacert", required_argument, NULL, 'C'},
		{"token", required_argument, NULL, 'T'},
		{"json", no_argument, NULL, 'j'},
		{"timeout", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	ctl c = {0};
	const char *url = NULL, *sock = NULL, *env;
	char *token = NULL;
	struct stat st;
	int opt, rv;

	c.timeout_ms = 10000;
	/* '+': stop at the command, so its own options are left to it. */
	while ((opt = getopt_long(argc, argv, "+u:jt:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'u': url = optarg; break;
		case 's': sock = optarg; break;
		case 'C': c.cacert = optarg; break;
		case 'T':
			/* kept, then wiped from the arguments so that ps no longer
			 * shows it (it did for a moment: LOOM_TOKEN or the token file
			 * never show) */
			free(token);
			token = strdup(optarg);
			memset(optarg, 'x', strlen(optarg));
			if (token == NULL)
				return EXIT_REFUSED;
			break;
		case 'j': c.json = true; break;
		case 't': {
			char *end;
			double s = strtod(optarg, &end);
			if (*end != '\0' || !(s > 0) || s > 86400) {
				fprintf(stderr, "loomctl: --timeout: \"%s\" is not a number of seconds\n",
				        optarg);
				return EXIT_USAGE;
			}
			c.timeout_ms = (int)(s * 1000);
			break;
		}
		case 'h': usage(stdout); return 0;
		case 'V': printf("loomctl %s\n", LOOM_VERSION_STRING); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;

	/* where loomd is */
	if (url && sock) {
		fprintf(stderr, "loomctl: --url %s and --socket %s name two ways to reach loomd: give "
		                "one\n",
		        url, sock);
		free(token);
		return EXIT_USAGE;
	}
	if (!url && !sock) {
		if ((env = getenv("LOOM_URL")) != NULL && *env)
			url = env;
		else if ((env = getenv("LOOM_SOCKET")) != NULL && *env)
			sock = env;
		else if (stat(DEFAULT_SOCKET, &st) == 0 && S_ISSOCK(st.st_mode))
			sock = DEFAULT_SOCKET;
		else
			url = DEFAULT_URL;
	}
	if (!c.cacert && url && strncasecmp(url, "https://", 8) == 0 &&
	    (env = getenv("LOOM_CACERT")) != NULL && *env)
		c.cacert = env;
	c.url = url;
	c.socket = sock;
	c.where = url ? url : sock;
	if (sock && c.cacert) {
		fprintf(stderr, "loomctl: --cacert is for https:// URLs; the socket %s needs none\n",
		        sock);
		free(token);
		return EXIT_USAGE;
	}
	/* the token: not for commands that do not reach loomd, or that bring
	 * their own (login) */
	if (argc >= 1 && strcmp(argv[0], "version") != 0 && strcmp(argv[0], "logout") != 0 &&
	    strcmp(argv[0], "login") != 0 && (rv = token_setup(&c, token)) != 0) {
		free(token);
		return rv;
	}
	if (token) {
		volatile char *p = token;
		for (size_t i = 0; p[i]; i++)
			p[i] = 0;
		free(token);
	}
	/* from here on, text from loomd is printed: see loomctl-term.c */
	term_setup(!c.json);
	if (argc < 1) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[0], "health") == 0)
		rv = cmd_health(&c, argc, argv);
	else if (strcmp(argv[0], "plugins") == 0)
		rv = cmd_plugins(&c, argc, argv);
	else if (strcmp(argv[0], "submit") == 0)
		rv = cmd_submit(&c, argc, argv);
	else if (strcmp(argv[0], "list") == 0)
		rv = cmd_list(&c, argc, argv);
	else if (strcmp(argv[0], "status") == 0)
		rv = cmd_status(&c, argc, argv);
	else if (strcmp(argv[0], "watch") == 0)
		rv = cmd_watch(&c, argc, argv);
	else if (strcmp(argv[0], "runs") == 0)
		rv = cmd_runs(&c, argc, argv);
	else if (strcmp(argv[0], "compare") == 0)
		rv = cmd_compare(&c, argc, argv);
	else if (strcmp(argv[0], "report") == 0)
		rv = cmd_report(&c, argc, argv);
	else if (strcmp(argv[0], "export") == 0)
		rv = cmd_export(&c, argc, argv);
	else if (strcmp(argv[0], "logs") == 0)
		rv = cmd_logs(&c, argc, argv);
	else if (strcmp(argv[0], "alerts") == 0)
		rv = cmd_alerts(&c, argc, argv);
	else if (strcmp(argv[0], "resources") == 0)
		rv = cmd_resources(&c, argc, argv);
	else if (strcmp(argv[0], "configs") == 0)
		rv = cmd_configs(&c, argc, argv);
	else if (strcmp(argv[0], "models") == 0)
		rv = cmd_models(&c, argc, argv);
	else if (strcmp(argv[0], "predict") == 0)
		rv = cmd_predict(&c, argc, argv);
	else if (strcmp(argv[0], "label") == 0)
		rv = cmd_label(&c, argc, argv);
	else if (strcmp(argv[0], "data") == 0)
		rv = cmd_data(&c, argc, argv);
	else if (strcmp(argv[0], "start") == 0 || strcmp(argv[0], "pause") == 0 ||
	         strcmp(argv[0], "resume") == 0 || strcmp(argv[0], "cancel") == 0)
		rv = cmd_action(&c, argc, argv);
	else if (strcmp(argv[0], "users") == 0)
		rv = cmd_users(&c, argc, argv);
	else if (strcmp(argv[0], "tokens") == 0)
		rv = cmd_tokens(&c, argc, argv);
	else if (strcmp(argv[0], "share") == 0 || strcmp(argv[0], "unshare") == 0 ||
	         strcmp(argv[0], "shares") == 0)
		rv = cmd_share(&c, argc, argv);
	else if (strcmp(argv[0], "whoami") == 0)
		rv = cmd_whoami(&c, argc, argv);
	else if (strcmp(argv[0], "login") == 0)
		rv = cmd_login(&c, argc, argv);
	else if (strcmp(argv[0], "logout") == 0)
		rv = cmd_logout(&c, argc, argv);
	else if (strcmp(argv[0], "version") == 0) {
		printf("loomctl %s (plugin ABI %d.%d)\n", LOOM_VERSION_STRING, LOOM_ABI_MAJOR,
		       LOOM_ABI_MINOR);
		rv = 0;
	} else {
		fprintf(stderr, "loomctl: unknown command \"%s\"; see loomctl --help\n", argv[0]);
		rv = EXIT_USAGE;
	}
	free(c.token);
	return rv;
}

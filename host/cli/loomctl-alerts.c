/* loomctl alerts: fired alerts and the rules that fire them
 * (docs/alerts.md). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "loomctl.h"

static int
alerts_usage(const char *why)
{
	if (why[0])
		fprintf(stderr, "loomctl: alerts: %s\n", why);
	fprintf(stderr, "usage: loomctl alerts [list] [--rule ID] [--job ID] [--since T] "
	                "[--limit N] [--offset N]\n"
	                "       loomctl alerts show ID\n"
	                "       loomctl alerts rules\n"
	                "       loomctl alerts add FILE|-\n"
	                "       loomctl alerts enable|disable|delete RULE-ID\n");
	return EXIT_USAGE;
}

/* "rule-3"/"alert-3"/"3" → "3" (digits only, so it needs no escaping). */
static const char *
num_arg(const char *s, const char *prefix, const char *what)
{
	size_t n = strlen(prefix);
	if (strncmp(s, prefix, n) == 0)
		s += n;
	if (s[0] >= '1' && s[0] <= '9' && strspn(s, "0123456789") == strlen(s) && strlen(s) < 19)
		return s;
	fprintf(stderr, "loomctl: \"%s\" is not %s id; ids are numbers like 3\n", s, what);
	return NULL;
}

/* The value as loomd sent it: a number, "NaN", or "-". */
static void
value_text(const json_t *v, char *buf, size_t size)
{
	if (json_is_number(v))
		snprintf(buf, size, "%g", json_number_value(v));
	else if (json_is_string(v))
		snprintf(buf, size, "%s", json_string_value(v));
	else
		snprintf(buf, size, "-");
}

/* "webhook 200, command exit 0, bus ok" */
static void
print_outcomes(const json_t *actions)
{
	size_t i;
	json_t *a;
	json_array_foreach(actions, i, a) {
		const json_t *err = json_object_get(a, "error");
		printf("%s%s ", i ? ", " : "", S(a, "type"));
		if (json_object_get(a, "state"))
			printf("%s", S(a, "state"));
		else if (err)
			printf("failed: %s", json_string_value(err));
		else if (json_object_get(a, "status"))
			printf("%lld", (long long)json_integer_value(json_object_get(a, "status")));
		else if (json_object_get(a, "exit_status"))
			printf("exit %lld", (long long)json_integer_value(json_object_get(a, "exit_status")));
		else
			printf("ok");
	}
}

static void
print_alerts(const json_t *body)
{
	const json_t *list = json_object_get(body, "alerts");
	size_t i;
	json_t *a;

	if (json_array_size(list) == 0) {
		printf("no alerts\n");
		return;
	}
	printf("%-6s %-24s %-16s %-10s %s\n", "ID", "TIME", "RULE", "TASK", "MESSAGE");
	json_array_foreach(list, i, a) {
		printf("%-6lld %-24s %-16s %-10s %s\n",
		       (long long)json_integer_value(json_object_get(a, "id")), S(a, "time"),
		       S(a, "rule"), S(a, "task_id"), S(a, "message"));
	}
	printf("(%zu of %lld)\n", json_array_size(list),
	       (long long)json_integer_value(json_object_get(body, "total")));
}

static void
print_alert(const json_t *a)
{
	char v[64];
	value_text(json_object_get(a, "value"), v, sizeof v);
	printf("alert %lld\n  time:     %s\n  rule:     %s (%lld, %s)\n  task:     %s\n"
	       "  run:      %s\n  value:    %s\n  message:  %s\n  actions:  ",
	       (long long)json_integer_value(json_object_get(a, "id")), S(a, "time"), S(a, "rule"),
	       (long long)json_integer_value(json_object_get(a, "rule_id")), S(a, "kind"),
	       S(a, "task_id"), S(a, "run_id"), v, S(a, "message"));
	print_outcomes(json_object_get(a, "actions"));
	printf("\n");
}

/* "metric_above loss > 10", "stalled 300 s" … */
static void
condition_text(const json_t *c, char *buf, size_t size)
{
	const char *kind = S(c, "kind");
	if (strcmp(kind, "metric_above") == 0 || strcmp(kind, "metric_below") == 0)
		snprintf(buf, size, "%s %s %g", S(c, "metric"), kind[7] == 'a' ? ">" : "<",
		         N(c, "threshold"));
	else if (strcmp(kind, "metric_nonfinite") == 0)
		snprintf(buf, size, "%s is NaN/Inf",
		         json_object_get(c, "metric") ? S(c, "metric") : "any metric");
	else if (strcmp(kind, "divergence") == 0)
		snprintf(buf, size, "%s up %g%% over %g points", S(c, "metric"), N(c, "percent"),
		         N(c, "window"));
	else if (strcmp(kind, "stalled") == 0)
		snprintf(buf, size, "no progress for %g s", N(c, "seconds"));
	else if (strcmp(kind, "failed") == 0)
		snprintf(buf, size, "failed%s",
		         json_is_true(json_object_get(c, "cancelled")) ? " or cancelled" : "");
	else if (strcmp(kind, "log") == 0)
		snprintf(buf, size, "log %s%s%s%s", S(c, "level"), json_object_get(c, "keyword") ? " \"" : "",
		         json_object_get(c, "keyword") ? S(c, "keyword") : "",
		         json_object_get(c, "keyword") ? "\"" : "");
	else
		snprintf(buf, size, "%s", kind);
}

static void
print_rule_line(const json_t *r)
{
	char cond[256];
	size_t i;
	json_t *a;

	condition_text(json_object_get(r, "condition"), cond, sizeof cond);
	printf("%-4lld %-18s %-4s %-34s %-10s %5gs  ",
	       (long long)json_integer_value(json_object_get(r, "id")), S(r, "name"),
	       json_is_true(json_object_get(r, "enabled")) ? "on" : "off", cond, S(r, "job"),
	       N(r, "repeat_interval"));
	json_array_foreach(json_object_get(r, "actions"), i, a)
		printf("%s%s", i ? "," : "", S(a, "type"));
	printf("\n");
}

static void
print_rules(const json_t *body)
{
	const json_t *list = json_object_get(body, "rules");
	size_t i;
	json_t *r;

	if (json_array_size(list) == 0) {
		printf("no alert rules; add one with `loomctl alerts add FILE`\n");
		return;
	}
	printf("%-4s %-18s %-4s %-34s %-10s %6s  %s\n", "ID", "NAME", "ON", "CONDITION", "JOB",
	       "REPEAT", "ACTIONS");
	json_array_foreach(list, i, r)
		print_rule_line(r);
}

static void
print_rule(const json_t *r)
{
	printf("rule %lld \"%s\" stored\n", (long long)json_integer_value(json_object_get(r, "id")),
	       S(r, "name"));
}

static int
alerts_list(const ctl *c, int argc, char **argv)
{
	char path[512];
	size_t len = (size_t)snprintf(path, sizeof path, "/api/v1/alerts");
	reply r = {0};
	int rv;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL, *key = NULL;
		if (strcmp(a, "--rule") == 0)
			key = "rule";
		else if (strcmp(a, "--job") == 0)
			key = "job";
		else if (strcmp(a, "--since") == 0)
			key = "since";
		else if (strcmp(a, "--limit") == 0)
			key = "limit";
		else if (strcmp(a, "--offset") == 0)
			key = "offset";
		if (key == NULL || v == NULL)
			return alerts_usage(key ? "an option needs a value" : "unknown option");
		if ((strcmp(key, "limit") == 0 || strcmp(key, "offset") == 0) && !number_arg(a, v))
			return EXIT_USAGE;
		if (strcmp(key, "job") == 0 && (v = task_arg(v)) == NULL)
			return EXIT_USAGE;
		if (strcmp(key, "rule") == 0 && (v = num_arg(v, "rule-", "a rule")) == NULL)
			return EXIT_USAGE;
		/* the values left are times: keep them to characters a query takes */
		if (strspn(v, "0123456789-:.TZ") != strlen(v)) {
			fprintf(stderr, "loomctl: %s \"%s\": give ms since the epoch or a UTC time like "
			                "2026-11-23T05:10:58Z\n",
			        a, v);
			return EXIT_USAGE;
		}
		len += (size_t)snprintf(path + len, sizeof path - len, "%c%s=%s",
		                        strchr(path, '?') ? '&' : '?', key, v);
		if (len >= sizeof path)
			return alerts_usage("options too long");
		i++;
	}
	if ((rv = http(c, "GET", path, NULL, &r)) != 0)
		return rv;
	return answer(c, &r, 200, print_alerts);
}

static int
alerts_show(const ctl *c, const char *id)
{
	char path[128];
	reply r = {0};
	int rv;

	if ((id = num_arg(id, "alert-", "an alert")) == NULL)
		return EXIT_USAGE;
	snprintf(path, sizeof path, "/api/v1/alerts/%s", id);
	if ((rv = http(c, "GET", path, NULL, &r)) != 0)
		return rv;
	return answer(c, &r, 200, print_alert);
}

static int
alerts_add(const ctl *c, const char *file)
{
	json_t *rule = NULL;
	reply r = {0};
	char *body;
	int rv;

	if ((rv = read_spec(file, EXIT_USAGE, &rule)) != 0)
		return rv;
	body = json_dumps(rule, JSON_COMPACT);
	json_decref(rule);
	rv = http(c, "POST", "/api/v1/alerts/rules", body, &r);
	free(body);
	if (rv != 0)
		return rv;
	return answer(c, &r, 201, print_rule);
}

static void
print_deleted(const json_t *b)
{
	printf("rule %lld deleted\n", (long long)json_integer_value(json_object_get(b, "id")));
}

static void
print_switched(const json_t *r)
{
	printf("rule %lld \"%s\" %s\n", (long long)json_integer_value(json_object_get(r, "id")),
	       S(r, "name"), json_is_true(json_object_get(r, "enabled")) ? "enabled" : "disabled");
}

static int
alerts_rule_op(const ctl *c, const char *op, const char *id)
{
	char path[128];
	reply r = {0};
	int rv;

	if ((id = num_arg(id, "rule-", "a rule")) == NULL)
		return EXIT_USAGE;
	snprintf(path, sizeof path, "/api/v1/alerts/rules/%s", id);
	if (strcmp(op, "delete") == 0) {
		if ((rv = http(c, "DELETE", path, NULL, &r)) != 0)
			return rv;
		return answer(c, &r, 200, print_deleted);
	}
	if ((rv = http(c, "PUT", path,
	               strcmp(op, "enable") == 0 ? "{\"enabled\":true}" : "{\"enabled\":false}",
	               &r)) != 0)
		return rv;
	return answer(c, &r, 200, print_switched);
}

int
cmd_alerts(const ctl *c, int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "list";
	reply r = {0};
	int rv;

	if (argc == 1 || strcmp(sub, "list") == 0)
		return alerts_list(c, argc > 1 ? argc - 1 : argc, argc > 1 ? argv + 1 : argv);
	if (sub[0] == '-')
		return alerts_list(c, argc, argv);
	if (strcmp(sub, "rules") == 0) {
		if (argc != 2)
			return alerts_usage("rules takes no arguments");
		if ((rv = http(c, "GET", "/api/v1/alerts/rules", NULL, &r)) != 0)
			return rv;
		return answer(c, &r, 200, print_rules);
	}
	if (argc != 3)
		return alerts_usage(strcmp(sub, "show") == 0 || strcmp(sub, "add") == 0 ||
		                            strcmp(sub, "delete") == 0 || strcmp(sub, "enable") == 0 ||
		                            strcmp(sub, "disable") == 0
		                        ? "give one argument"
		                        : "unknown subcommand");
	if (strcmp(sub, "show") == 0)
		return alerts_show(c, argv[2]);
	if (strcmp(sub, "add") == 0)
		return alerts_add(c, argv[2]);
	if (strcmp(sub, "delete") == 0 || strcmp(sub, "enable") == 0 || strcmp(sub, "disable") == 0)
		return alerts_rule_op(c, sub, argv[2]);
	return alerts_usage("unknown subcommand");
}

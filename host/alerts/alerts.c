/* Alerts: rules, their evaluation on the alerts thread, the actions they
 * fire on the actions thread, and the API over both (docs/alerts.md).
 *
 * Threads.  The entry points (alerts.h) run on other modules' threads: they
 * copy what a rule could match into a queue and return.  The alerts thread
 * drains the queue, evaluates the rules, stores fired alerts, publishes the
 * "alert" bus event, and once a second looks for stalled jobs.  Webhooks and
 * commands can take seconds, so they run on a second thread, the actions
 * thread, which stores their outcomes with the fired alert when they end.
 *
 * Rules live in the database; the threads read an immutable snapshot (a
 * ruleset, reference counted) that every change through the API replaces.
 * Per-rule state (divergence windows, when a rule last fired for a job, how
 * long a job has made no progress) belongs to the alerts thread alone.
 *
 * The module opens its own connection to the state database so that its
 * writes never fall inside another module's transaction on the shared one;
 * WAL lets it read while they write. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <netinet/in.h>
#include <unistd.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <nng/supplemental/tls/tls.h>
#include <sqlite3.h>

#include <loom/error.h>
#include <loom/host.h>
#include <loom/version.h>

#include "host/server/auth.h"
#include "host/server/module.h"
#include "host/server/store.h"
#include "alerts.h"
#include "host/core/log.h"
#include "host/core/util.h"
#include "webhook.h"

extern char **environ;

#define WHO "alerts"
#define DEFAULT_REPEAT_MS (300 * 1000)
#define WEBHOOK_TIMEOUT_MS 5000
#define DEFAULT_COMMAND_TIMEOUT_S 10
#define MAX_QUEUE 10000 /* events waiting for the alerts thread */
#define MAX_WINDOW 10000

static const char migration_sql[] =
	"CREATE TABLE alert_rules (\n"
	"  id          INTEGER PRIMARY KEY,\n"
	"  name        TEXT NOT NULL UNIQUE,\n"
	"  enabled     INTEGER NOT NULL DEFAULT 1,\n"
	"  kind        TEXT NOT NULL,\n"
	"  condition   TEXT NOT NULL CHECK (json_valid(condition)),\n"
	"  job_id      INTEGER,\n"       /* the rule watches one job … */
	"  job_glob    TEXT,\n"          /* … or jobs whose name matches; neither: all */
	"  actions     TEXT NOT NULL CHECK (json_valid(actions)),\n"
	"  repeat_ms   INTEGER NOT NULL CHECK (repeat_ms >= 0),\n"
	"  created_at  INTEGER NOT NULL,\n"
	"  updated_at  INTEGER NOT NULL\n"
	");\n"
	/* fired alerts outlive their rule (rule_name keeps what it was called) */
	"CREATE TABLE alerts (\n"
	"  id          INTEGER PRIMARY KEY,\n"
	"  rule_id     INTEGER NOT NULL,\n"
	"  rule_name   TEXT NOT NULL,\n"
	"  kind        TEXT NOT NULL,\n"
	"  job_id      INTEGER,\n"
	"  run_id      TEXT,\n"
	"  at          INTEGER NOT NULL,\n"
	"  message     TEXT NOT NULL,\n"
	"  value,\n"                     /* a REAL, or 'NaN' / 'Infinity' / '-Infinity' */
	"  actions     TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(actions))\n"
	");\n"
	"CREATE INDEX alerts_by_rule ON alerts (rule_id, id);\n"
	"CREATE INDEX alerts_by_job ON alerts (job_id, id);\n"
	"CREATE INDEX alerts_by_at ON alerts (at);\n";

/* ------------------------------------------------------------------ rules */

enum kind { K_LOG, K_ABOVE, K_BELOW, K_NONFINITE, K_DIVERGENCE, K_STALLED, K_FAILED, K_N };
static const char *const kind_names[K_N] = {
	"log", "metric_above", "metric_below", "metric_nonfinite", "divergence", "stalled", "failed",
};
/* the keys each kind's condition takes (besides "kind") */
static const char *const kind_keys[K_N][5] = {
	[K_LOG] = {"level", "keyword"},
	[K_ABOVE] = {"metric", "threshold", "scope"},
	[K_BELOW] = {"metric", "threshold", "scope"},
	[K_NONFINITE] = {"metric", "scope"},
	[K_DIVERGENCE] = {"metric", "percent", "window", "scope"},
	[K_STALLED] = {"seconds"},
	[K_FAILED] = {"cancelled"},
};

enum action_type { A_BUS, A_WEBHOOK, A_COMMAND, A_N };
static const char *const action_names[A_N] = {"bus", "webhook", "command"};

typedef struct action {
	int type;
	char *target;  /* the URL or the command */
	int timeout_s; /* command */
} action;

typedef struct rule {
	int64_t id;
	char *name;
	bool enabled;
	int kind;
	int level;       /* log: entries at this level or more severe */
	char *keyword;   /* log: case-insensitive substring, or NULL */
	char *metric;    /* metric kinds; NULL: any (metric_nonfinite only) */
	int scope;       /* loom_metric_scope, or -1 for any */
	double threshold;
	double percent;  /* divergence */
	int window;
	int64_t seconds; /* stalled */
	bool cancelled;  /* failed: cancelled too */
	int64_t job_id;  /* 0: no one job */
	char *job_glob;  /* NULL: no glob */
	action *actions;
	size_t n_actions;
	int64_t repeat_ms;
	int64_t created_at, updated_at;
	char *owner;     /* the admin who made it ('' before rules had owners) */
} rule;

typedef struct ruleset {
	int refs;
	rule *v;
	size_t n;
} ruleset;

static void
rule_free(rule *r)
{
	free(r->name);
	free(r->keyword);
	free(r->metric);
	free(r->job_glob);
	free(r->owner);
	for (size_t i = 0; i < r->n_actions; i++)
		free(r->actions[i].target);
	free(r->actions);
	memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------------ rule validation */

static bool
name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 100)
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

/* Unknown keys of obj (at path) are an error with a suggestion. */
static int
check_keys(const json_t *obj, const char *path, const char *const *known, size_t n, char **msg)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)obj, key, v) {
		bool found = false;
		for (size_t i = 0; i < n && known[i]; i++)
			found = found || strcmp(key, known[i]) == 0;
		if (!found) {
			size_t m = 0;
			while (m < n && known[m])
				m++;
			const char *s = loomi_suggest(key, known, m);
			*msg = loomi_strfmt("%s: unknown key \"%s\"%s%s%s", path, key,
			                    s ? " (did you mean \"" : "", s ? s : "", s ? "\"?)" : "");
			return LOOM_EINVAL;
		}
	}
	return 0;
}

/* Seconds as a number, or a string with a unit: "90", "90s", "5m", "2h". */
static bool
seconds_value(const json_t *v, int64_t *out)
{
	if (json_is_integer(v) || json_is_real(v)) {
		double x = json_number_value(v);
		if (!(x >= 0 && x <= 365.0 * 86400))
			return false;
		*out = (int64_t)(x * 1000);
		return true;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end;
		double x = strtod(s, &end), unit = 1;
		if (end == s)
			return false;
		if (strcmp(end, "m") == 0)
			unit = 60;
		else if (strcmp(end, "h") == 0)
			unit = 3600;
		else if (strcmp(end, "s") != 0 && *end != '\0')
			return false;
		x *= unit;
		if (!(x >= 0 && x <= 365.0 * 86400))
			return false;
		*out = (int64_t)(x * 1000);
		return true;
	}
	return false;
}

static int
parse_scope(const json_t *c, rule *r, char **msg)
{
	static const char *const scopes[] = {"step", "epoch", "final"};
	json_t *v = json_object_get(c, "scope");
	const char *s;

	r->scope = -1;
	if (v == NULL)
		return 0;
	s = json_string_value(v);
	for (int i = 0; s && i < 3; i++)
		if (strcmp(s, scopes[i]) == 0) {
			r->scope = i;
			return 0;
		}
	*msg = loomi_strfmt("condition.scope: must be \"step\", \"epoch\" or \"final\"%s%s%s",
	                    s ? ", not \"" : "", s ? s : "", s ? "\"" : "");
	return LOOM_EINVAL;
}

static int
parse_condition(const json_t *c, rule *r, char **msg)
{
	const char *kind, *s;
	json_t *v;
	int rv;

	if (!json_is_object(c)) {
		*msg = loomi_strdup("condition: must be an object like {\"kind\": \"metric_above\", "
		                    "\"metric\": \"loss\", \"threshold\": 10}");
		return LOOM_EINVAL;
	}
	if ((kind = json_string_value(json_object_get(c, "kind"))) == NULL) {
		*msg = loomi_strdup("condition.kind: required, one of log, metric_above, metric_below, "
		                    "metric_nonfinite, divergence, stalled, failed");
		return LOOM_EINVAL;
	}
	r->kind = -1;
	for (int i = 0; i < K_N; i++)
		if (strcmp(kind, kind_names[i]) == 0)
			r->kind = i;
	if (r->kind < 0) {
		s = loomi_suggest(kind, kind_names, K_N);
		*msg = loomi_strfmt("condition.kind: unknown kind \"%s\"%s%s%s; use one of log, "
		                    "metric_above, metric_below, metric_nonfinite, divergence, "
		                    "stalled, failed",
		                    kind, s ? " (did you mean \"" : "", s ? s : "", s ? "\"?)" : "");
		return LOOM_EINVAL;
	}
	{
		const char *known[6] = {"kind"};
		for (int i = 0; i < 5 && kind_keys[r->kind][i]; i++)
			known[i + 1] = kind_keys[r->kind][i];
		if ((rv = check_keys(c, "condition", known, 6, msg)) != 0)
			return rv;
	}
	switch (r->kind) {
	case K_LOG:
		r->level = LOOM_LOG_ERROR;
		if ((v = json_object_get(c, "level")) != NULL) {
			r->level = json_is_string(v) ? loomi_log_level_parse(json_string_value(v)) : -1;
			if (r->level < 0) {
				*msg = loomi_strdup("condition.level: must be one of error, warn, info, "
				                    "debug (entries at that level or more severe match)");
				return LOOM_EINVAL;
			}
		}
		if ((v = json_object_get(c, "keyword")) != NULL) {
			if (!json_is_string(v) || json_string_length(v) == 0) {
				*msg = loomi_strdup("condition.keyword: must be a non-empty string");
				return LOOM_EINVAL;
			}
			r->keyword = loomi_strdup(json_string_value(v));
		}
		return 0;
	case K_STALLED:
		v = json_object_get(c, "seconds");
		if (!json_is_number(v) || json_number_value(v) < 1 ||
		    json_number_value(v) > 30 * 86400) {
			*msg = loomi_strdup("condition.seconds: must be a number of seconds from 1 to "
			                    "2592000 (how long a running job may go without progress)");
			return LOOM_EINVAL;
		}
		r->seconds = (int64_t)json_number_value(v);
		return 0;
	case K_FAILED:
		if ((v = json_object_get(c, "cancelled")) != NULL) {
			if (!json_is_boolean(v)) {
				*msg = loomi_strdup("condition.cancelled: must be true or false");
				return LOOM_EINVAL;
			}
			r->cancelled = json_is_true(v);
		}
		return 0;
	default:
		break;
	}
	/* the metric kinds */
	v = json_object_get(c, "metric");
	if (v != NULL || r->kind != K_NONFINITE) {
		if (!json_is_string(v) || json_string_length(v) == 0) {
			*msg = loomi_strdup("condition.metric: must be a metric name like \"loss\"");
			return LOOM_EINVAL;
		}
		r->metric = loomi_strdup(json_string_value(v));
	}
	if ((rv = parse_scope(c, r, msg)) != 0)
		return rv;
	if (r->kind == K_ABOVE || r->kind == K_BELOW) {
		v = json_object_get(c, "threshold");
		if (!json_is_number(v)) {
			*msg = loomi_strdup("condition.threshold: must be a number");
			return LOOM_EINVAL;
		}
		r->threshold = json_number_value(v);
	} else if (r->kind == K_DIVERGENCE) {
		v = json_object_get(c, "percent");
		if (!json_is_number(v) || !(json_number_value(v) > 0)) {
			*msg = loomi_strdup("condition.percent: must be a number above 0 (how far above "
			                    "the window's minimum the newest value may go)");
			return LOOM_EINVAL;
		}
		r->percent = json_number_value(v);
		v = json_object_get(c, "window");
		if (!json_is_integer(v) || json_integer_value(v) < 2 ||
		    json_integer_value(v) > MAX_WINDOW) {
			*msg = loomi_strfmt("condition.window: must be a whole number of points from 2 "
			                    "to %d",
			                    MAX_WINDOW);
			return LOOM_EINVAL;
		}
		r->window = (int)json_integer_value(v);
	}
	return 0;
}

static int
parse_action(const json_t *a, size_t i, action *out, char **msg)
{
	static const char *const keys[A_N][3] = {
		[A_BUS] = {"type"},
		[A_WEBHOOK] = {"type", "url"},
		[A_COMMAND] = {"type", "command", "timeout"},
	};
	const char *type = json_string_value(json_object_get(a, "type")), *s;
	char path[32];
	json_t *v;
	int rv;

	snprintf(path, sizeof path, "actions[%zu]", i);
	if (!json_is_object(a) || type == NULL) {
		*msg = loomi_strfmt("%s: must be an object with a \"type\": bus, webhook or command",
		                    path);
		return LOOM_EINVAL;
	}
	out->type = -1;
	for (int k = 0; k < A_N; k++)
		if (strcmp(type, action_names[k]) == 0)
			out->type = k;
	if (out->type < 0) {
		s = loomi_suggest(type, action_names, A_N);
		*msg = loomi_strfmt("%s.type: unknown action \"%s\"%s%s%s; use bus, webhook or command",
		                    path, type, s ? " (did you mean \"" : "", s ? s : "",
		                    s ? "\"?)" : "");
		return LOOM_EINVAL;
	}
	if ((rv = check_keys(a, path, keys[out->type], 3, msg)) != 0)
		return rv;
	if (out->type == A_WEBHOOK) {
		loomi_webhook_url u;
		char *why = NULL;
		s = json_string_value(json_object_get(a, "url"));
		if (s == NULL) {
			*msg = loomi_strfmt("%s.url: required, an http:// or https:// URL like "
			                    "\"http://127.0.0.1:9000/hook\"",
			                    path);
			return LOOM_EINVAL;
		}
		if (loomi_webhook_url_parse(s, &u, &why) != 0) {
			*msg = loomi_strfmt("%s.url: %s", path, why);
			free(why);
			return LOOM_EINVAL;
		}
		loomi_webhook_url_free(&u);
		out->target = loomi_strdup(s);
	} else if (out->type == A_COMMAND) {
		s = json_string_value(json_object_get(a, "command"));
		if (s == NULL || s[strspn(s, " \t")] == '\0') {
			*msg = loomi_strfmt("%s.command: must be a shell command (run with /bin/sh -c)",
			                    path);
			return LOOM_EINVAL;
		}
		out->target = loomi_strdup(s);
		out->timeout_s = DEFAULT_COMMAND_TIMEOUT_S;
		if ((v = json_object_get(a, "timeout")) != NULL) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > 3600) {
				*msg = loomi_strfmt("%s.timeout: must be a whole number of seconds from 1 "
				                    "to 3600",
				                    path);
				return LOOM_EINVAL;
			}
			out->timeout_s = (int)json_integer_value(v);
		}
	}
	return 0;
}

/* "task-12", "12" or 12 → 12; 0 when v is none of these. */
static int64_t
job_id_of(const json_t *v)
{
	const char *s;
	char *end;
	long long x;

	if (json_is_integer(v))
		return json_integer_value(v) > 0 ? json_integer_value(v) : 0;
	if ((s = json_string_value(v)) == NULL)
		return 0;
	if (strncmp(s, "task-", 5) == 0)
		s += 5;
	if (*s < '1' || *s > '9')
		return 0;
	errno = 0;
	x = strtoll(s, &end, 10);
	return *end == '\0' && errno == 0 ? x : 0;
}

/* A rule from its JSON (the API's shape); 0, or LOOM_EINVAL with *msg
 * naming the key. */
static int
rule_parse(const json_t *j, rule *r, char **msg)
{
	static const char *const keys[] = {"name",   "enabled",         "condition",  "job",
	                                   "actions", "repeat_interval", "id",         "created_at",
	                                   "updated_at", "owner"};
	json_t *v, *a;
	size_t i;
	int rv;

	memset(r, 0, sizeof *r);
	r->enabled = true;
	r->repeat_ms = DEFAULT_REPEAT_MS;
	if (!json_is_object(j)) {
		*msg = loomi_strdup("a rule must be a JSON object with name, condition and actions");
		return LOOM_EINVAL;
	}
	if ((rv = check_keys(j, "rule", keys, sizeof keys / sizeof keys[0], msg)) != 0)
		goto fail;
	v = json_object_get(j, "name");
	if (!json_is_string(v) || !name_ok(json_string_value(v))) {
		*msg = loomi_strdup("name: required, 1-100 of A-Z a-z 0-9 _ . -");
		rv = LOOM_EINVAL;
		goto fail;
	}
	r->name = loomi_strdup(json_string_value(v));
	if ((v = json_object_get(j, "enabled")) != NULL) {
		if (!json_is_boolean(v)) {
			*msg = loomi_strdup("enabled: must be true or false");
			rv = LOOM_EINVAL;
			goto fail;
		}
		r->enabled = json_is_true(v);
	}
	if ((rv = parse_condition(json_object_get(j, "condition"), r, msg)) != 0)
		goto fail;
	if ((v = json_object_get(j, "job")) != NULL && !json_is_null(v) &&
	    !(json_is_string(v) && (strcmp(json_string_value(v), "all") == 0 ||
	                            strcmp(json_string_value(v), "*") == 0))) {
		if ((r->job_id = job_id_of(v)) == 0) {
			const char *s = json_string_value(v);
			if (s == NULL || s[0] == '\0' || strlen(s) > 200) {
				*msg = loomi_strdup("job: must be \"all\", a task id (12 or \"task-12\") or a "
				                    "task name pattern like \"train-*\"");
				rv = LOOM_EINVAL;
				goto fail;
			}
			if ((rv = loomi_name_text_check("job", s, msg)) != 0)
				goto fail;
			r->job_glob = loomi_strdup(s);
		}
	}
	a = json_object_get(j, "actions");
	if (!json_is_array(a) || json_array_size(a) == 0 || json_array_size(a) > 16) {
		*msg = loomi_strdup("actions: required, a list of 1 to 16 actions like "
		                    "[{\"type\": \"webhook\", \"url\": \"http://…\"}]");
		rv = LOOM_EINVAL;
		goto fail;
	}
	r->actions = loomi_xcalloc(json_array_size(a), sizeof *r->actions);
	json_array_foreach(a, i, v) {
		r->n_actions++; /* counted first: a refused one may hold its target */
		if ((rv = parse_action(v, i, &r->actions[i], msg)) != 0)
			goto fail;
	}
	if ((v = json_object_get(j, "repeat_interval")) != NULL && !seconds_value(v, &r->repeat_ms)) {
		*msg = loomi_strdup("repeat_interval: must be seconds (300) or a duration like \"90s\", "
		                    "\"5m\", \"2h\", at most a year; 0 fires on every match");
		rv = LOOM_EINVAL;
		goto fail;
	}
	return 0;
fail:
	rule_free(r);
	return rv;
}

/* The condition and actions as stored: exactly the keys that mean
 * something for the rule's kind, so a rule reads back as it was given. */
static json_t *
condition_json(const rule *r)
{
	static const char *const scopes[] = {"step", "epoch", "final"};
	json_t *c = json_pack("{s:s}", "kind", kind_names[r->kind]);

	switch (r->kind) {
	case K_LOG:
		json_object_set_new(c, "level", json_string(loomi_log_level_name(r->level)));
		if (r->keyword)
			json_object_set_new(c, "keyword", json_string(r->keyword));
		break;
	case K_STALLED:
		json_object_set_new(c, "seconds", json_integer(r->seconds));
		break;
	case K_FAILED:
		json_object_set_new(c, "cancelled", json_boolean(r->cancelled));
		break;
	default:
		if (r->metric)
			json_object_set_new(c, "metric", json_string(r->metric));
		if (r->kind == K_ABOVE || r->kind == K_BELOW)
			json_object_set_new(c, "threshold", json_real(r->threshold));
		if (r->kind == K_DIVERGENCE) {
			json_object_set_new(c, "percent", json_real(r->percent));
			json_object_set_new(c, "window", json_integer(r->window));
		}
		if (r->scope >= 0)
			json_object_set_new(c, "scope", json_string(scopes[r->scope]));
	}
	return c;
}

static json_t *
actions_json(const rule *r)
{
	json_t *a = json_array();
	for (size_t i = 0; i < r->n_actions; i++) {
		const action *x = &r->actions[i];
		json_t *o = json_pack("{s:s}", "type", action_names[x->type]);
		if (x->type == A_WEBHOOK)
			json_object_set_new(o, "url", json_string(x->target));
		if (x->type == A_COMMAND) {
			json_object_set_new(o, "command", json_string(x->target));
			json_object_set_new(o, "timeout", json_integer(x->timeout_s));
		}
		json_array_append_new(a, o);
	}
	return a;
}

static json_t *
job_filter_json(const rule *r)
{
	if (r->job_id > 0) {
		char tid[32];
		snprintf(tid, sizeof tid, "task-%lld", (long long)r->job_id);
		return json_string(tid);
	}
	return json_string(r->job_glob ? r->job_glob : "all");
}

static json_t *
rule_json(const rule *r)
{
	char *c = loomi_iso_time(r->created_at), *u = loomi_iso_time(r->updated_at);
	json_t *o = json_pack("{s:I, s:s, s:b, s:o, s:o, s:o, s:f, s:s, s:s}", "id",
	                      (json_int_t)r->id, "name", r->name, "enabled", r->enabled, "condition",
	                      condition_json(r), "job", job_filter_json(r), "actions",
	                      actions_json(r), "repeat_interval", (double)r->repeat_ms / 1000.0,
	                      "created_at", c, "updated_at", u);
	json_object_set_new(o, "owner", json_string(r->owner ? r->owner : ""));
	free(c);
	free(u);
	return o;
}

/* ------------------------------------------------------------------ module state */

typedef struct point {
	char *name;
	int64_t step;
	uint32_t scope;
	double value;
} point;

enum event_type { EV_METRICS, EV_LOG, EV_STATE };

typedef struct event {
	struct event *next;
	int type;
	int64_t job_id;
	char *run_id;       /* metrics */
	point *pts;
	size_t n;
	int level;          /* log */
	char *instance, *message;
	char *from, *to, *reason; /* state */
	int64_t at;
} event;

/* Work for the actions thread: one fired alert's webhooks and commands. */
typedef struct job_actions {
	struct job_actions *next;
	int64_t alert_id;
	json_t *alert;      /* the alert as sent */
	action *actions;    /* copies */
	size_t n;
} job_actions;

/* When a rule last fired for a job (flapping). */
typedef struct fired {
	int64_t rule_id, job_id, at;
} fired;

/* The last points of a metric of a run, for a divergence rule. */
typedef struct window {
	int64_t rule_id, rule_updated, job_id;
	char *key;          /* run id, or "" */
	double *v;
	int n, head, cap;
} window;

/* A running job's progress as the stall check last saw it. */
typedef struct progress {
	int64_t job_id, step, since;
	bool seen;          /* in the last poll */
} progress;

/* When a job last started running (from state events), for the stall
 * check's baseline. */
typedef struct started {
	int64_t job_id, at;
} started;

static struct {
	loomi_daemon *d;
	sqlite3 *db;
	pthread_mutex_t dbm;        /* one multi-statement use of db at a time */
	pthread_mutex_t mtx;        /* rules, queue */
	pthread_cond_t cond;
	ruleset *rules;
	event *head, *tail;
	size_t queued;
	int64_t dropped;
	bool stopping;
	pthread_t thread;
	/* the actions thread */
	pthread_mutex_t amtx;
	pthread_cond_t acond;
	job_actions *ahead, *atail;
	bool astopping;
	pthread_t athread;
	atomic_bool running;
	atomic_int metric_rules, log_rules, any_rules;
	/* the alerts thread's own */
	fired *fired;
	size_t n_fired, cap_fired;
	window *win;
	size_t n_win, cap_win;
	progress *prog;
	size_t n_prog, cap_prog;
	started *starts;
	size_t n_starts, cap_starts;
	int64_t started_ms;
	/* loomd.conf's alerts group: where webhooks may go, whether commands run */
	loomi_hostlist hosts;
	bool command_actions;
} A = {
	.dbm = PTHREAD_MUTEX_INITIALIZER,
	.mtx = PTHREAD_MUTEX_INITIALIZER,
	.amtx = PTHREAD_MUTEX_INITIALIZER,
};

static void
ruleset_unref(ruleset *rs)
{
	bool last;
	if (rs == NULL)
		return;
	pthread_mutex_lock(&A.mtx);
	last = --rs->refs == 0;
	pthread_mutex_unlock(&A.mtx);
	if (!last)
		return;
	for (size_t i = 0; i < rs->n; i++)
		rule_free(&rs->v[i]);
	free(rs->v);
	free(rs);
}

static ruleset *
ruleset_get(void)
{
	ruleset *rs;
	pthread_mutex_lock(&A.mtx);
	if ((rs = A.rules) != NULL)
		rs->refs++;
	pthread_mutex_unlock(&A.mtx);
	return rs;
}

/* ------------------------------------------------------------------ database */

static sqlite3_stmt *
prep(const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(A.db, sql, -1, &st, NULL) != SQLITE_OK)
		loomi_log(LOOM_LOG_ERROR, WHO, "%s (in %.60s…)", sqlite3_errmsg(A.db), sql);
	return st;
}

/* A rule from a row of SELECT id, name, enabled, condition, job_id,
 * job_glob, actions, repeat_ms, created_at, updated_at. */
static int
rule_from_row(sqlite3_stmt *st, rule *r, char **msg)
{
	json_t *j = json_object(), *cond, *acts;
	int rv;

	cond = json_loads((const char *)sqlite3_column_text(st, 3), 0, NULL);
	acts = json_loads((const char *)sqlite3_column_text(st, 6), 0, NULL);
	json_object_set_new(j, "name", json_string((const char *)sqlite3_column_text(st, 1)));
	json_object_set_new(j, "enabled", json_boolean(sqlite3_column_int(st, 2)));
	json_object_set_new(j, "condition", cond ? cond : json_null());
	json_object_set_new(j, "actions", acts ? acts : json_null());
	if (sqlite3_column_type(st, 4) == SQLITE_INTEGER)
		json_object_set_new(j, "job", json_integer(sqlite3_column_int64(st, 4)));
	else if (sqlite3_column_type(st, 5) == SQLITE_TEXT)
		json_object_set_new(j, "job", json_string((const char *)sqlite3_column_text(st, 5)));
	rv = rule_parse(j, r, msg);
	json_decref(j);
	if (rv == 0) {
		r->id = sqlite3_column_int64(st, 0);
		r->repeat_ms = sqlite3_column_int64(st, 7);
		r->created_at = sqlite3_column_int64(st, 8);
		r->updated_at = sqlite3_column_int64(st, 9);
		r->owner = loomi_strdup((const char *)sqlite3_column_text(st, 10));
	}
	return rv;
}

#define RULE_COLUMNS                                                                         \
	"SELECT id, name, enabled, condition, job_id, job_glob, actions, repeat_ms, created_at," \
	" updated_at, owner FROM alert_rules"

/* Read every rule into a new ruleset and make it current. */
static int
reload(void)
{
	ruleset *rs = loomi_xcalloc(1, sizeof *rs), *old;
	sqlite3_stmt *st;
	int metric = 0, log = 0, rc;

	rs->refs = 1;
	pthread_mutex_lock(&A.dbm);
	if ((st = prep(RULE_COLUMNS " ORDER BY id")) == NULL) {
		pthread_mutex_unlock(&A.dbm);
		free(rs);
		return LOOM_EIO;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		rule r;
		char *msg = NULL;
		if (rule_from_row(st, &r, &msg) != 0) {
			/* only a hand-edited database gets here */
			loomi_log(LOOM_LOG_WARN, WHO, "rule %lld in the database is ignored: %s",
			         (long long)sqlite3_column_int64(st, 0), msg);
			free(msg);
			continue;
		}
		rs->v = loomi_xrealloc(rs->v, (rs->n + 1) * sizeof *rs->v);
		rs->v[rs->n++] = r;
		if (r.enabled && r.kind >= K_ABOVE && r.kind <= K_DIVERGENCE)
			metric++;
		if (r.enabled && r.kind == K_LOG)
			log++;
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&A.dbm);
	pthread_mutex_lock(&A.mtx);
	old = A.rules;
	A.rules = rs;
	atomic_store(&A.metric_rules, metric);
	atomic_store(&A.log_rules, log);
	atomic_store(&A.any_rules, (int)rs->n);
	pthread_mutex_unlock(&A.mtx);
	ruleset_unref(old);
	return rc == SQLITE_DONE ? 0 : LOOM_EIO;
}

static char *
job_name(int64_t job_id)
{
	sqlite3_stmt *st;
	char *name = NULL;

	pthread_mutex_lock(&A.dbm);
	if ((st = prep("SELECT name FROM jobs WHERE id = ?")) != NULL) {
		sqlite3_bind_int64(st, 1, job_id);
		if (sqlite3_step(st) == SQLITE_ROW)
			name = loomi_strdup((const char *)sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&A.dbm);
	return name;
}

/* Does rule r watch job job_id? (job 0: host logs, runs without a job:
 * only rules for all jobs) */
static bool
watches_job(const rule *r, int64_t job_id)
{
	if (r->job_id > 0)
		return r->job_id == job_id;
	if (r->job_glob == NULL)
		return true;
	if (job_id <= 0)
		return false;
	char *name = job_name(job_id);
	bool ok = name && fnmatch(r->job_glob, name, 0) == 0;
	free(name);
	return ok;
}

/* ------------------------------------------------------------------ firing */

static json_t *
value_json(double v, bool has)
{
	if (!has)
		return json_null();
	if (isnan(v))
		return json_string("NaN");
	if (isinf(v))
		return json_string(v > 0 ? "Infinity" : "-Infinity");
	return json_real(v);
}

static void
bind_value(sqlite3_stmt *st, int i, double v, bool has)
{
	if (!has)
		sqlite3_bind_null(st, i);
	else if (isfinite(v))
		sqlite3_bind_double(st, i, v);
	else
		sqlite3_bind_text(st, i, isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity", -1,
		                  SQLITE_STATIC);
}

/* Within the rule's repeat interval of its last alert for this job?  If
 * not, remember now as the last. */
static bool
suppressed(const rule *r, int64_t job_id, int64_t now)
{
	for (size_t i = 0; i < A.n_fired; i++) {
		fired *f = &A.fired[i];
		if (f->rule_id != r->id || f->job_id != job_id)
			continue;
		if (now - f->at < r->repeat_ms)
			return true;
		f->at = now;
		return false;
	}
	if (A.n_fired == A.cap_fired) {
		A.cap_fired = A.cap_fired ? 2 * A.cap_fired : 64;
		A.fired = loomi_xrealloc(A.fired, A.cap_fired * sizeof *A.fired);
	}
	A.fired[A.n_fired++] = (fired){r->id, job_id, now};
	return false;
}

static void
queue_actions(int64_t alert_id, json_t *alert, const rule *r)
{
	job_actions *j = loomi_xcalloc(1, sizeof *j);

	j->alert_id = alert_id;
	j->alert = json_incref(alert);
	j->actions = loomi_xcalloc(r->n_actions, sizeof *j->actions);
	for (size_t i = 0; i < r->n_actions; i++)
		if (r->actions[i].type != A_BUS) {
			j->actions[j->n] = r->actions[i];
			j->actions[j->n++].target = loomi_strdup(r->actions[i].target);
		}
	pthread_mutex_lock(&A.amtx);
	if (A.atail)
		A.atail->next = j;
	else
		A.ahead = j;
	A.atail = j;
	pthread_cond_signal(&A.acond);
	pthread_mutex_unlock(&A.amtx);
}

/* Rule r matched for job_id: unless the repeat interval holds it back,
 * store the alert, publish it on the bus, and queue its other actions. */
static void
fire(const rule *r, int64_t job_id, const char *run_id, double value, bool has_value,
     const char *message)
{
	int64_t now = loomi_wall_ms(), id = 0;
	json_t *alert, *outcomes;
	bool others = false;
	char *text, *iso, tid[32];
	sqlite3_stmt *st;

	if (suppressed(r, job_id, now))
		return;
	outcomes = json_array();
	snprintf(tid, sizeof tid, "task-%lld", (long long)job_id);
	iso = loomi_iso_time(now);
	alert = json_pack("{s:I, s:I, s:s, s:s, s:o, s:o, s:s, s:I, s:s, s:o}", "id", (json_int_t)0,
	                  "rule_id", (json_int_t)r->id, "rule", r->name, "kind",
	                  kind_names[r->kind], "task_id", job_id > 0 ? json_string(tid) : json_null(),
	                  "run_id", run_id ? json_string(run_id) : json_null(), "time", iso, "at",
	                  (json_int_t)now, "message", message, "value", value_json(value, has_value));
	free(iso);
	for (size_t i = 0; i < r->n_actions; i++) {
		const action *a = &r->actions[i];
		json_t *o = json_pack("{s:s}", "type", action_names[a->type]);
		if (a->type == A_BUS) {
			json_object_set_new(o, "ok", json_true()); /* filled below */
		} else {
			json_object_set_new(o, a->type == A_WEBHOOK ? "url" : "command",
			                    json_string(a->target));
			json_object_set_new(o, "state", json_string("pending"));
			others = true;
		}
		json_array_append_new(outcomes, o);
	}

	pthread_mutex_lock(&A.dbm);
	st = prep("INSERT INTO alerts (rule_id, rule_name, kind, job_id, run_id, at, message,"
	          " value, actions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '[]')");
	if (st) {
		sqlite3_bind_int64(st, 1, r->id);
		sqlite3_bind_text(st, 2, r->name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, kind_names[r->kind], -1, SQLITE_STATIC);
		if (job_id > 0)
			sqlite3_bind_int64(st, 4, job_id);
		if (run_id)
			sqlite3_bind_text(st, 5, run_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 6, now);
		sqlite3_bind_text(st, 7, message, -1, SQLITE_STATIC);
		bind_value(st, 8, value, has_value);
		if (sqlite3_step(st) == SQLITE_DONE)
			id = sqlite3_last_insert_rowid(A.db);
		else
			loomi_log_limited(LOOM_LOG_ERROR, WHO, "cannot store an alert of rule \"%s\": %s",
			                  r->name, sqlite3_errmsg(A.db));
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&A.dbm);
	json_object_set_new(alert, "id", json_integer(id));

	/* the bus events go out at once; their outcome is known now */
	for (size_t i = 0; i < r->n_actions; i++) {
		if (r->actions[i].type != A_BUS)
			continue;
		int rv = A.d && A.d->bus ? loomi_bus_publish_json(A.d->bus, "alert", "loomd", alert)
		                         : LOOM_ECLOSED;
		json_t *o = json_array_get(outcomes, i);
		json_object_set_new(o, "ok", json_boolean(rv == 0));
		if (rv != 0)
			json_object_set_new(o, "error", json_string(loom_strerror(rv)));
	}
	if (id > 0) {
		pthread_mutex_lock(&A.dbm);
		if ((st = prep("UPDATE alerts SET actions = ? WHERE id = ?")) != NULL) {
			text = json_dumps(outcomes, JSON_COMPACT);
			sqlite3_bind_text(st, 1, text, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int64(st, 2, id);
			sqlite3_step(st);
			sqlite3_finalize(st);
			free(text);
		}
		pthread_mutex_unlock(&A.dbm);
	}
	loomi_log(LOOM_LOG_INFO, WHO, "alert %lld (rule \"%s\"): %s", (long long)id, r->name, message);
	if (others && id > 0)
		queue_actions(id, alert, r);
	json_decref(outcomes);
	json_decref(alert);
}

/* "task-12" or "run R" for messages. */
static void
subject(char *buf, size_t size, int64_t job_id, const char *run_id)
{
	if (job_id > 0)
		snprintf(buf, size, "task-%lld", (long long)job_id);
	else if (run_id)
		snprintf(buf, size, "run %s", run_id);
	else
		snprintf(buf, size, "loomd");
}

/* ------------------------------------------------------------------ evaluation */

static window *
window_of(const rule *r, int64_t job_id, const char *run_id)
{
	const char *key = run_id ? run_id : "";
	for (size_t i = 0; i < A.n_win; i++) {
		window *w = &A.win[i];
		if (w->rule_id == r->id && w->job_id == job_id && strcmp(w->key, key) == 0) {
			if (w->rule_updated != r->updated_at || w->cap != r->window) {
				/* the rule changed: start its window again */
				w->rule_updated = r->updated_at;
				w->cap = r->window;
				w->v = loomi_xrealloc(w->v, (size_t)w->cap * sizeof *w->v);
				w->n = w->head = 0;
			}
			return w;
		}
	}
	if (A.n_win == A.cap_win) {
		A.cap_win = A.cap_win ? 2 * A.cap_win : 16;
		A.win = loomi_xrealloc(A.win, A.cap_win * sizeof *A.win);
	}
	window *w = &A.win[A.n_win++];
	*w = (window){.rule_id = r->id, .rule_updated = r->updated_at, .job_id = job_id,
	              .key = loomi_strdup(key), .cap = r->window};
	w->v = loomi_xmalloc((size_t)w->cap * sizeof *w->v);
	return w;
}

/* Divergence, precisely: over the newest N finite values of the metric
 * (N = window), with m their minimum and x the newest, the rule matches
 * when the window is full and x > m + |m| * percent / 100.  Non-finite
 * values are left out (metric_nonfinite watches those). */
static void
eval_divergence(const rule *r, int64_t job_id, const char *run_id, const point *p)
{
	window *w;
	double m;
	char who[160], *msg;

	if (!isfinite(p->value))
		return;
	w = window_of(r, job_id, run_id);
	w->v[w->head] = p->value;
	w->head = (w->head + 1) % w->cap;
	if (w->n < w->cap)
		w->n++;
	if (w->n < w->cap)
		return;
	m = w->v[0];
	for (int i = 1; i < w->n; i++)
		m = fmin(m, w->v[i]);
	if (!(p->value > m + fabs(m) * r->percent / 100.0))
		return;
	subject(who, sizeof who, job_id, run_id);
	msg = loomi_strfmt("%s: %s = %g at step %lld is %.1f%% above %g, the minimum of its last "
	                   "%d values (the rule allows %g%%)",
	                   who, p->name, p->value, (long long)p->step,
	                   m != 0 ? 100.0 * (p->value - m) / fabs(m) : INFINITY, m, w->cap,
	                   r->percent);
	fire(r, job_id, run_id, p->value, true, msg);
	free(msg);
}

static void
eval_point(const rule *r, int64_t job_id, const char *run_id, const point *p)
{
	char who[160], *msg = NULL;

	if (r->metric && strcmp(r->metric, p->name) != 0)
		return;
	if (r->scope >= 0 && (uint32_t)r->scope != p->scope)
		return;
	subject(who, sizeof who, job_id, run_id);
	switch (r->kind) {
	case K_ABOVE:
		if (p->value > r->threshold)
			msg = loomi_strfmt("%s: %s = %g at step %lld, above %g", who, p->name, p->value,
			                   (long long)p->step, r->threshold);
		break;
	case K_BELOW:
		if (p->value < r->threshold)
			msg = loomi_strfmt("%s: %s = %g at step %lld, below %g", who, p->name, p->value,
			                   (long long)p->step, r->threshold);
		break;
	case K_NONFINITE:
		if (!isfinite(p->value))
			msg = loomi_strfmt("%s: %s is %s at step %lld", who, p->name,
			                   isnan(p->value) ? "NaN" : p->value > 0 ? "Infinity" : "-Infinity",
			                   (long long)p->step);
		break;
	case K_DIVERGENCE:
		eval_divergence(r, job_id, run_id, p);
		return;
	}
	if (msg) {
		fire(r, job_id, run_id, p->value, true, msg);
		free(msg);
	}
}

static void
eval_metrics(const ruleset *rs, const event *e)
{
	for (size_t i = 0; i < rs->n; i++) {
		const rule *r = &rs->v[i];
		if (!r->enabled || r->kind < K_ABOVE || r->kind > K_DIVERGENCE ||
		    !watches_job(r, e->job_id))
			continue;
		for (size_t k = 0; k < e->n; k++)
			eval_point(r, e->job_id, e->run_id, &e->pts[k]);
	}
}

static void
eval_log(const ruleset *rs, const event *e)
{
	for (size_t i = 0; i < rs->n; i++) {
		const rule *r = &rs->v[i];
		char who[160], *msg;
		if (!r->enabled || r->kind != K_LOG || e->level > r->level)
			continue;
		if (r->keyword && strcasestr(e->message, r->keyword) == NULL)
			continue;
		if (!watches_job(r, e->job_id))
			continue;
		subject(who, sizeof who, e->job_id, NULL);
		msg = loomi_strfmt("%s: %s%s%s%s: %s", who, loomi_log_level_name(e->level),
		                   e->instance ? " [" : "", e->instance ? e->instance : "",
		                   e->instance ? "]" : "", e->message);
		fire(r, e->job_id, NULL, 0, false, msg);
		free(msg);
	}
}

static void
note_start(int64_t job_id, int64_t at)
{
	for (size_t i = 0; i < A.n_starts; i++)
		if (A.starts[i].job_id == job_id) {
			A.starts[i].at = at;
			return;
		}
	if (A.n_starts == A.cap_starts) {
		A.cap_starts = A.cap_starts ? 2 * A.cap_starts : 16;
		A.starts = loomi_xrealloc(A.starts, A.cap_starts * sizeof *A.starts);
	}
	A.starts[A.n_starts++] = (started){job_id, at};
}

/* A job that ended needs no window, progress or start time any more. */
static void
forget_job(int64_t job_id)
{
	for (size_t i = 0; i < A.n_win;)
		if (A.win[i].job_id == job_id) {
			free(A.win[i].key);
			free(A.win[i].v);
			A.win[i] = A.win[--A.n_win];
		} else {
			i++;
		}
	for (size_t i = 0; i < A.n_starts;)
		if (A.starts[i].job_id == job_id)
			A.starts[i] = A.starts[--A.n_starts];
		else
			i++;
}

static void
eval_state(const ruleset *rs, const event *e)
{
	bool final = strcmp(e->to, "completed") == 0 || strcmp(e->to, "failed") == 0 ||
	             strcmp(e->to, "cancelled") == 0;

	if (strcmp(e->to, "running") == 0)
		note_start(e->job_id, e->at);
	for (size_t i = 0; rs && i < rs->n; i++) {
		const rule *r = &rs->v[i];
		char *msg;
		if (!r->enabled || r->kind != K_FAILED)
			continue;
		if (strcmp(e->to, "failed") != 0 && !(r->cancelled && strcmp(e->to, "cancelled") == 0))
			continue;
		if (!watches_job(r, e->job_id))
			continue;
		msg = loomi_strfmt("task-%lld %s (was %s)%s%s", (long long)e->job_id, e->to, e->from,
		                   e->reason[0] ? ": " : "", e->reason);
		fire(r, e->job_id, NULL, 0, false, msg);
		free(msg);
	}
	if (final)
		forget_job(e->job_id);
}

static progress *
progress_of(int64_t job_id, int64_t step, int64_t baseline)
{
	for (size_t i = 0; i < A.n_prog; i++)
		if (A.prog[i].job_id == job_id)
			return &A.prog[i];
	if (A.n_prog == A.cap_prog) {
		A.cap_prog = A.cap_prog ? 2 * A.cap_prog : 16;
		A.prog = loomi_xrealloc(A.prog, A.cap_prog * sizeof *A.prog);
	}
	A.prog[A.n_prog] = (progress){job_id, step, baseline, false};
	return &A.prog[A.n_prog++];
}

/* The stall check: a running job whose progress step has not changed for
 * the rule's seconds.  The clock starts when the job started running (as
 * a state event said, or its started_at, but never before this loomd's
 * alerts started) and again whenever the step changes. */
static void
check_stalls(const ruleset *rs)
{
	bool any = false;
	int64_t now = loomi_wall_ms();
	sqlite3_stmt *st;

	for (size_t i = 0; i < rs->n; i++)
		any = any || (rs->v[i].enabled && rs->v[i].kind == K_STALLED);
	if (!any) {
		A.n_prog = 0;
		return;
	}
	for (size_t i = 0; i < A.n_prog; i++)
		A.prog[i].seen = false;
	pthread_mutex_lock(&A.dbm);
	st = prep("SELECT id, progress_step, coalesce(started_at, 0) FROM jobs"
	          " WHERE state = 'running'");
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0), step = sqlite3_column_int64(st, 1);
		int64_t base = sqlite3_column_int64(st, 2);
		for (size_t k = 0; k < A.n_starts; k++)
			if (A.starts[k].job_id == id && A.starts[k].at > base)
				base = A.starts[k].at;
		if (base < A.started_ms)
			base = A.started_ms;
		progress *p = progress_of(id, step, base);
		if (p->step != step) {
			p->step = step;
			p->since = now;
		}
		if (p->since < base)
			p->since = base;
		p->seen = true;
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&A.dbm);
	for (size_t i = 0; i < A.n_prog;) {
		progress *p = &A.prog[i];
		if (!p->seen) {
			A.prog[i] = A.prog[--A.n_prog];
			continue;
		}
		for (size_t k = 0; k < rs->n; k++) {
			const rule *r = &rs->v[k];
			int64_t idle = now - p->since;
			if (!r->enabled || r->kind != K_STALLED || idle < r->seconds * 1000 ||
			    !watches_job(r, p->job_id))
				continue;
			char *msg = loomi_strfmt("task-%lld: running with no progress for %lld s (step "
			                         "%lld; the rule allows %lld s)",
			                         (long long)p->job_id, (long long)(idle / 1000),
			                         (long long)p->step, (long long)r->seconds);
			fire(r, p->job_id, NULL, (double)idle / 1000.0, true, msg);
			free(msg);
		}
		i++;
	}
}

/* ------------------------------------------------------------------ the queue */

static void
event_free(event *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->pts[i].name);
	free(e->pts);
	free(e->run_id);
	free(e->instance);
	free(e->message);
	free(e->from);
	free(e->to);
	free(e->reason);
	free(e);
}

/* Append e (called with A.mtx held); false when the queue is full. */
static bool
enqueue_locked(event *e)
{
	if (A.stopping || A.queued >= MAX_QUEUE) {
		if (!A.stopping && A.dropped++ % 1000 == 0)
			loomi_log(LOOM_LOG_WARN, WHO, "the alerts queue is full (%d events); %lld events were "
			         "dropped unchecked",
			         MAX_QUEUE, (long long)A.dropped);
		return false;
	}
	e->at = loomi_wall_ms();
	if (A.tail)
		A.tail->next = e;
	else
		A.head = e;
	A.tail = e;
	A.queued++;
	pthread_cond_signal(&A.cond);
	return true;
}

static void
enqueue(event *e)
{
	bool ok;
	pthread_mutex_lock(&A.mtx);
	ok = enqueue_locked(e);
	pthread_mutex_unlock(&A.mtx);
	if (!ok)
		event_free(e);
}

/* Does any enabled metric rule of rs look at metric name? */
static bool
watched(const ruleset *rs, const char *name)
{
	for (size_t i = 0; i < rs->n; i++) {
		const rule *r = &rs->v[i];
		if (r->enabled && r->kind >= K_ABOVE && r->kind <= K_DIVERGENCE &&
		    (r->metric == NULL || strcmp(r->metric, name) == 0))
			return true;
	}
	return false;
}

void
loomi_alerts_metrics(int64_t job_id, const char *run_id, const loom_metric_point *pts, size_t n)
{
	event *e = NULL;

	if (n == 0 || !atomic_load(&A.running) || atomic_load(&A.metric_rules) == 0)
		return;
	pthread_mutex_lock(&A.mtx);
	for (size_t i = 0; i < n; i++) {
		if (pts[i].name == NULL || A.rules == NULL || !watched(A.rules, pts[i].name))
			continue;
		if (e == NULL) {
			e = loomi_xcalloc(1, sizeof *e);
			e->type = EV_METRICS;
			e->job_id = job_id;
			e->run_id = run_id ? loomi_strdup(run_id) : NULL;
			e->pts = loomi_xcalloc(n, sizeof *e->pts);
		}
		e->pts[e->n++] = (point){loomi_strdup(pts[i].name), pts[i].step, pts[i].scope,
		                         pts[i].value};
	}
	if (e && !enqueue_locked(e)) {
		pthread_mutex_unlock(&A.mtx);
		event_free(e);
		return;
	}
	pthread_mutex_unlock(&A.mtx);
}

void
loomi_alerts_log(int64_t job_id, const char *instance, int level, const char *message)
{
	event *e;

	if (message == NULL || !atomic_load(&A.running) || atomic_load(&A.log_rules) == 0)
		return;
	/* this module's own lines (an action that failed) must not feed back
	 * into a log rule */
	if (instance && strcmp(instance, WHO) == 0)
		return;
	e = loomi_xcalloc(1, sizeof *e);
	e->type = EV_LOG;
	e->job_id = job_id;
	e->level = level;
	e->instance = instance ? loomi_strdup(instance) : NULL;
	e->message = loomi_strdup(message);
	enqueue(e);
}

void
loomi_alerts_state(int64_t job_id, const char *from, const char *to, const char *reason)
{
	event *e;

	if (to == NULL || !atomic_load(&A.running) || atomic_load(&A.any_rules) == 0)
		return;
	e = loomi_xcalloc(1, sizeof *e);
	e->type = EV_STATE;
	e->job_id = job_id;
	e->from = loomi_strdup(from ? from : "none");
	e->to = loomi_strdup(to);
	e->reason = loomi_strdup(reason ? reason : "");
	enqueue(e);
}

/* ------------------------------------------------------------------ the alerts thread */

static void
deadline_in(struct timespec *ts, int64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

static void *
alerts_main(void *arg)
{
	uint64_t next_poll = loomi_mono_ns();

	(void)arg;
	for (;;) {
		event *e = NULL;
		ruleset *rs;
		struct timespec ts;
		bool stop;

		pthread_mutex_lock(&A.mtx);
		deadline_in(&ts, 1000);
		while (A.head == NULL && !A.stopping && loomi_mono_ns() < next_poll)
			if (pthread_cond_timedwait(&A.cond, &A.mtx, &ts) == ETIMEDOUT)
				break;
		if ((e = A.head) != NULL) {
			A.head = e->next;
			if (A.head == NULL)
				A.tail = NULL;
			A.queued--;
		}
		stop = A.stopping && e == NULL;
		if ((rs = A.rules) != NULL)
			rs->refs++;
		pthread_mutex_unlock(&A.mtx);
		if (stop) {
			ruleset_unref(rs);
			return NULL;
		}
		if (e && rs) {
			if (e->type == EV_METRICS)
				eval_metrics(rs, e);
			else if (e->type == EV_LOG)
				eval_log(rs, e);
			else
				eval_state(rs, e);
		}
		if (e)
			event_free(e);
		if (rs && loomi_mono_ns() >= next_poll) {
			next_poll = loomi_mono_ns() + 1000000000ull;
			check_stalls(rs);
		}
		ruleset_unref(rs);
	}
}

/* ------------------------------------------------------------------ actions */

#define CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

/* A client that connects to the checked address addr (not to whatever the
 * URL's name resolves to by then), speaking TLS to the URL's host name for
 * https. */
static int
webhook_client(const loomi_webhook_url *wu, const struct sockaddr_storage *addr,
               nng_http_client **out)
{
	char text[INET6_ADDRSTRLEN], *direct;
	const void *a = addr->ss_family == AF_INET
	                    ? (const void *)&((const struct sockaddr_in *)addr)->sin_addr
	                    : (const void *)&((const struct sockaddr_in6 *)addr)->sin6_addr;
	nng_url *du = NULL;
	int rv;

	inet_ntop(addr->ss_family, a, text, sizeof text);
	direct = loomi_strfmt(addr->ss_family == AF_INET6 ? "%s://[%s]:%d/" : "%s://%s:%d/",
	                      wu->https ? "https" : "http", text, wu->port);
	rv = nng_url_parse(&du, direct);
	free(direct);
	if (rv == 0)
		rv = nng_http_client_alloc(out, du);
	if (du)
		nng_url_free(du);
	if (rv == 0 && wu->https) {
		nng_tls_config *tls = NULL;
		if ((rv = nng_http_client_get_tls(*out, &tls)) == 0 &&
		    (rv = nng_tls_config_server_name(tls, wu->host)) == 0 && access(CA_BUNDLE, R_OK) == 0)
			rv = nng_tls_config_ca_file(tls, CA_BUNDLE);
	}
	if (rv != 0 && *out) {
		nng_http_client_free(*out);
		*out = NULL;
	}
	return rv;
}

/* POST body to url within WEBHOOK_TIMEOUT_MS, if loomd.conf's
 * alerts.webhook_hosts admits every address its host resolves to now: the
 * HTTP status, or a negative value with *err set. */
static int
webhook_post(const char *url, const char *body, char **err)
{
	loomi_webhook_url wu = {0};
	struct sockaddr_storage addrs[8];
	size_t n_addrs = 0;
	nng_url *u = NULL;
	nng_http_client *client = NULL;
	nng_http_req *req = NULL;
	nng_http_res *res = NULL;
	nng_aio *aio = NULL;
	int rv, status = -1;

	if (loomi_webhook_url_parse(url, &wu, err) != 0 ||
	    loomi_webhook_resolve(&A.hosts, &wu, addrs, 8, &n_addrs, err) != 0) {
		char *why = *err;
		*err = loomi_strfmt("not sent: %s", why);
		free(why);
		goto out;
	}
	if ((rv = nng_url_parse(&u, url)) != 0 || (rv = nng_http_req_alloc(&req, u)) != 0 ||
	    (rv = nng_http_res_alloc(&res)) != 0 || (rv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
		*err = loomi_strfmt("%s", nng_strerror(rv));
		goto out;
	}
	nng_http_req_set_method(req, "POST");
	nng_http_req_set_header(req, "Content-Type", "application/json");
	nng_http_req_set_header(req, "User-Agent", "loomd/" LOOM_VERSION_STRING);
	nng_http_req_copy_data(req, body, strlen(body));
	/* the checked addresses in turn, while one refuses the connection */
	for (size_t i = 0; i < n_addrs; i++) {
		if (client)
			nng_http_client_free(client);
		client = NULL;
		if ((rv = webhook_client(&wu, &addrs[i], &client)) != 0) {
			*err = loomi_strfmt("%s", nng_strerror(rv));
			goto out;
		}
		nng_aio_set_timeout(aio, WEBHOOK_TIMEOUT_MS);
		nng_http_client_transact(client, req, res, aio);
		nng_aio_wait(aio);
		rv = nng_aio_result(aio);
		if (rv != NNG_ECONNREFUSED && rv != NNG_EUNREACHABLE && rv != NNG_EADDRINVAL)
			break;
	}
	if (rv != 0) {
		*err = rv == NNG_ETIMEDOUT ? loomi_strfmt("no answer within %d s", WEBHOOK_TIMEOUT_MS / 1000)
		                           : loomi_strfmt("%s", nng_strerror(rv));
		goto out;
	}
	status = nng_http_res_get_status(res);
out:
	if (aio)
		nng_aio_free(aio);
	if (res)
		nng_http_res_free(res);
	if (req)
		nng_http_req_free(req);
	if (client)
		nng_http_client_free(client);
	if (u)
		nng_url_free(u);
	loomi_webhook_url_free(&wu);
	return status;
}

/* The environment of a command: loomd's, without LOOM_ALERT_*, plus the
 * alert's. */
static char **
command_env(const json_t *alert)
{
	size_t n = 0, k = 0;
	char **env, *json = json_dumps(alert, JSON_COMPACT);
	const json_t *v = json_object_get(alert, "value");
	char value[64] = "";

	while (environ[n])
		n++;
	env = loomi_xcalloc(n + 6, sizeof *env);
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "LOOM_ALERT_", 11) != 0)
			env[k++] = loomi_strdup(environ[i]);
	if (json_is_number(v))
		snprintf(value, sizeof value, "%.17g", json_number_value(v));
	else if (json_is_string(v))
		snprintf(value, sizeof value, "%s", json_string_value(v));
	env[k++] = loomi_strfmt("LOOM_ALERT_RULE=%s", json_string_value(json_object_get(alert, "rule")));
	env[k++] = loomi_strfmt("LOOM_ALERT_JOB=%s", json_is_string(json_object_get(alert, "task_id"))
	                                                 ? json_string_value(json_object_get(alert, "task_id"))
	                                                 : "");
	env[k++] = loomi_strfmt("LOOM_ALERT_MESSAGE=%s",
	                        json_string_value(json_object_get(alert, "message")));
	env[k++] = loomi_strfmt("LOOM_ALERT_VALUE=%s", value);
	env[k++] = loomi_strfmt("LOOM_ALERT_JSON=%s", json);
	free(json);
	return env;
}

/* Run cmd with /bin/sh -c, killing it (and what it started: it leads its
 * own process group) after timeout_s.  The outcome goes into o. */
static void
run_command(const char *cmd, int timeout_s, const json_t *alert, json_t *o)
{
	char **env = command_env(alert), *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, deflt;
	uint64_t deadline = loomi_mono_ns() + (uint64_t)timeout_s * 1000000000ull;
	pid_t pid;
	int rv, ws = 0;
	bool killed = false;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigfillset(&deflt);
	sigdelset(&deflt, SIGKILL);
	sigdelset(&deflt, SIGSTOP);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &deflt);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
	                                    POSIX_SPAWN_SETPGROUP);
	rv = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	for (size_t i = 0; env[i]; i++)
		free(env[i]);
	free(env);
	if (rv != 0) {
		json_object_set_new(o, "error", json_sprintf("cannot start /bin/sh: %s", strerror(rv)));
		return;
	}
	for (;;) {
		pid_t p = waitpid(pid, &ws, WNOHANG);
		if (p == pid || (p < 0 && errno != EINTR))
			break;
		if (!killed && loomi_mono_ns() >= deadline) {
			kill(-pid, SIGKILL);
			killed = true;
		}
		usleep(killed ? 1000 : 10000);
	}
	if (killed) {
		json_object_set_new(o, "error",
		                    json_sprintf("killed after its %d s timeout", timeout_s));
	} else if (WIFEXITED(ws)) {
		json_object_set_new(o, "exit_status", json_integer(WEXITSTATUS(ws)));
		if (WEXITSTATUS(ws) != 0)
			json_object_set_new(o, "error", json_sprintf("exited with status %d",
			                                             WEXITSTATUS(ws)));
	} else if (WIFSIGNALED(ws)) {
		json_object_set_new(o, "error", json_sprintf("killed by signal %d (%s)", WTERMSIG(ws),
		                                             strsignal(WTERMSIG(ws))));
	}
}

/* Run one alert's webhooks and commands; store their outcomes. */
static void
run_actions(job_actions *j)
{
	char *body = json_dumps(j->alert, JSON_COMPACT), *text;
	json_t *outcomes = NULL;
	sqlite3_stmt *st;
	size_t next = 0;

	/* the stored list has the bus outcomes already: fill in the others in
	 * order */
	pthread_mutex_lock(&A.dbm);
	if ((st = prep("SELECT actions FROM alerts WHERE id = ?")) != NULL) {
		sqlite3_bind_int64(st, 1, j->alert_id);
		if (sqlite3_step(st) == SQLITE_ROW)
			outcomes = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&A.dbm);
	if (outcomes == NULL)
		outcomes = json_array();
	for (size_t i = 0; i < j->n; i++) {
		const action *a = &j->actions[i];
		json_t *o = NULL;
		for (; next < json_array_size(outcomes); next++) {
			json_t *c = json_array_get(outcomes, next);
			if (strcmp(json_string_value(json_object_get(c, "type")), action_names[a->type]) == 0) {
				o = c;
				next++;
				break;
			}
		}
		if (o == NULL) {
			o = json_pack("{s:s}", "type", action_names[a->type]);
			json_array_append_new(outcomes, o);
		}
		json_object_del(o, "state");
		if (a->type == A_WEBHOOK) {
			char *err = NULL;
			int status = webhook_post(a->target, body, &err);
			if (status > 0)
				json_object_set_new(o, "status", json_integer(status));
			if (err || status < 200 || status > 299) {
				json_object_set_new(o, "error", err ? json_string(err)
				                                    : json_sprintf("answered %d", status));
				loomi_log(LOOM_LOG_WARN, WHO, "alert %lld: webhook %s: %s", (long long)j->alert_id, a->target,
				         err ? err : "not a 2xx status");
			}
			free(err);
		} else if (!A.command_actions) {
			/* a rule stored while commands were allowed */
			json_object_set_new(o, "error",
			                    json_string("not run: command actions are off "
			                                "(alerts.command_actions in loomd.conf)"));
			loomi_log(LOOM_LOG_WARN, WHO, "alert %lld: command not run: command actions are "
			          "off (alerts.command_actions in loomd.conf)",
			          (long long)j->alert_id);
		} else {
			run_command(a->target, a->timeout_s, j->alert, o);
			if (json_object_get(o, "error"))
				loomi_log(LOOM_LOG_WARN, WHO, "alert %lld: command %s: %s", (long long)j->alert_id, a->target,
				         json_string_value(json_object_get(o, "error")));
		}
		json_object_set_new(o, "done_at", json_integer(loomi_wall_ms()));
	}
	text = json_dumps(outcomes, JSON_COMPACT);
	pthread_mutex_lock(&A.dbm);
	if ((st = prep("UPDATE alerts SET actions = ? WHERE id = ?")) != NULL) {
		sqlite3_bind_text(st, 1, text, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 2, j->alert_id);
		if (sqlite3_step(st) != SQLITE_DONE)
			loomi_log_limited(LOOM_LOG_ERROR, WHO,
			                  "cannot store the outcome of alert %lld's actions: %s",
			                  (long long)j->alert_id, sqlite3_errmsg(A.db));
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&A.dbm);
	free(text);
	free(body);
	json_decref(outcomes);
}

static void
job_actions_free(job_actions *j)
{
	for (size_t i = 0; i < j->n; i++)
		free(j->actions[i].target);
	free(j->actions);
	json_decref(j->alert);
	free(j);
}

static void *
actions_main(void *arg)
{
	(void)arg;
	for (;;) {
		job_actions *j;
		pthread_mutex_lock(&A.amtx);
		while (A.ahead == NULL && !A.astopping)
			pthread_cond_wait(&A.acond, &A.amtx);
		if ((j = A.ahead) == NULL) {
			pthread_mutex_unlock(&A.amtx);
			return NULL;
		}
		A.ahead = j->next;
		if (A.ahead == NULL)
			A.atail = NULL;
		pthread_mutex_unlock(&A.amtx);
		run_actions(j);
		job_actions_free(j);
	}
}

/* ------------------------------------------------------------------ start, stop */

/* The last alert of each rule and job, so a restart does not fire again
 * within a repeat interval. */
static void
load_fired(void)
{
	sqlite3_stmt *st = prep("SELECT rule_id, coalesce(job_id, 0), max(at) FROM alerts"
	                        " GROUP BY 1, 2");
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		if (A.n_fired == A.cap_fired) {
			A.cap_fired = A.cap_fired ? 2 * A.cap_fired : 64;
			A.fired = loomi_xrealloc(A.fired, A.cap_fired * sizeof *A.fired);
		}
		A.fired[A.n_fired++] = (fired){sqlite3_column_int64(st, 0),
		                               sqlite3_column_int64(st, 1),
		                               sqlite3_column_int64(st, 2)};
	}
	sqlite3_finalize(st);
}

int
loomi_alerts_start(loomi_daemon *d, char **err)
{
	pthread_condattr_t ca;
	int rc, rv;

	if (atomic_load(&A.running)) {
		*err = loomi_strdup("alerts: already started");
		return LOOM_ESTATE;
	}
	if (d->store.path == NULL) {
		*err = loomi_strdup("alerts: the state database is not open");
		return LOOM_ESTATE;
	}
	rc = sqlite3_open_v2(d->store.path, &A.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX,
	                     NULL);
	if (rc != SQLITE_OK) {
		*err = loomi_strfmt("alerts: cannot open the state database %s: %s", d->store.path,
		                    A.db ? sqlite3_errmsg(A.db) : sqlite3_errstr(rc));
		sqlite3_close(A.db);
		A.db = NULL;
		return LOOM_EIO;
	}
	sqlite3_busy_timeout(A.db, 5000);
	sqlite3_extended_result_codes(A.db, 1); /* tells a taken name from other failures */
	if ((rv = loomi_hostlist_parse(&d->conf.alerts_webhook_hosts, &A.hosts, err)) != 0) {
		sqlite3_close(A.db);
		A.db = NULL;
		return rv;
	}
	A.command_actions = d->conf.alerts_command_actions;
	A.d = d;
	A.stopping = A.astopping = false;
	A.started_ms = loomi_wall_ms();
	if ((rv = reload()) != 0) {
		*err = loomi_strfmt("alerts: cannot read the alert rules from %s: %s", d->store.path,
		                    sqlite3_errmsg(A.db));
		sqlite3_close(A.db);
		A.db = NULL;
		loomi_hostlist_free(&A.hosts);
		return rv;
	}
	load_fired();
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&A.cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&A.acond, NULL);
	if ((rc = pthread_create(&A.athread, NULL, actions_main, NULL)) != 0 ||
	    (rc = pthread_create(&A.thread, NULL, alerts_main, NULL)) != 0) {
		*err = loomi_strfmt("alerts: cannot start a thread: %s", strerror(rc));
		/* only the actions thread can have started */
		pthread_mutex_lock(&A.amtx);
		A.astopping = true;
		pthread_cond_signal(&A.acond);
		pthread_mutex_unlock(&A.amtx);
		pthread_join(A.athread, NULL);
		sqlite3_close(A.db);
		A.db = NULL;
		loomi_hostlist_free(&A.hosts);
		return LOOM_EIO;
	}
	atomic_store(&A.running, true);
	return 0;
}

void
loomi_alerts_stop(void)
{
	if (!atomic_load(&A.running))
		return;
	atomic_store(&A.running, false);
	pthread_mutex_lock(&A.mtx);
	A.stopping = true;
	pthread_cond_signal(&A.cond);
	pthread_mutex_unlock(&A.mtx);
	pthread_join(A.thread, NULL);
	pthread_mutex_lock(&A.amtx);
	A.astopping = true;
	pthread_cond_signal(&A.acond);
	pthread_mutex_unlock(&A.amtx);
	pthread_join(A.athread, NULL);
	pthread_cond_destroy(&A.cond);
	pthread_cond_destroy(&A.acond);

	ruleset_unref(A.rules);
	A.rules = NULL;
	for (size_t i = 0; i < A.n_win; i++) {
		free(A.win[i].key);
		free(A.win[i].v);
	}
	free(A.win);
	free(A.fired);
	free(A.prog);
	free(A.starts);
	A.win = NULL;
	A.fired = NULL;
	A.prog = NULL;
	A.starts = NULL;
	A.n_win = A.cap_win = A.n_fired = A.cap_fired = 0;
	A.n_prog = A.cap_prog = A.n_starts = A.cap_starts = 0;
	A.dropped = 0;
	pthread_mutex_lock(&A.dbm);
	sqlite3_close(A.db);
	A.db = NULL;
	pthread_mutex_unlock(&A.dbm);
	loomi_hostlist_free(&A.hosts);
	A.d = NULL;
}

/* ------------------------------------------------------------------ API */

static void
api_answer(loomi_http_res *res, int rv, json_t *out, char *msg, int ok_status)
{
	static const struct {
		int rv, status;
		const char *code;
	} map[] = {
		{LOOM_EINVAL, 400, "invalid"},   {LOOM_ENOENT, 404, "not_found"},
		{LOOM_EPERM, 403, "forbidden"},
		{LOOM_EEXIST, 409, "conflict"},  {LOOM_ECLOSED, 503, "unavailable"},
		{LOOM_EIO, 503, "unavailable"}, /* the store could not write (store.h) */
	};
	if (rv == 0) {
		res->status = ok_status;
		res->body = out;
	} else {
		int status = 500;
		const char *code = "internal";
		for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
			if (map[i].rv == rv) {
				status = map[i].status;
				code = map[i].code;
			}
		loomi_api_error(res, status, code, "%s", msg ? msg : loom_strerror(rv));
		json_decref(out);
	}
	free(msg);
}

static bool
available(loomi_http_res *res)
{
	if (A.db != NULL)
		return true;
	loomi_api_error(res, 503, "unavailable", "alerts are not running in this loomd");
	return false;
}

static json_t *
body_json(const loomi_http_req *req, loomi_http_res *res)
{
	json_error_t je;
	json_t *j = req->body_len ? json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &je)
	                          : NULL;
	if (req->body_len == 0)
		loomi_api_error(res, 400, "invalid", "the request needs a JSON body (an alert rule)");
	else if (j == NULL)
		loomi_api_error(res, 400, "invalid", "the body is not JSON: line %d column %d: %s",
		                je.line, je.column, je.text);
	else if (!json_is_object(j)) {
		loomi_api_error(res, 400, "invalid", "the body must be a JSON object (an alert rule)");
		json_decref(j);
		j = NULL;
	}
	return j;
}

/* "rule-3", "alert-3" or "3" → 3; 0 otherwise. */
static int64_t
id_param(const char *s, const char *prefix)
{
	size_t n = strlen(prefix);
	char *end;
	long long x;

	if (strncmp(s, prefix, n) == 0)
		s += n;
	if (*s < '1' || *s > '9')
		return 0;
	errno = 0;
	x = strtoll(s, &end, 10);
	return *end == '\0' && errno == 0 ? x : 0;
}

/* The value of key in a query string, percent-decoded; NULL if absent. */
static char *
query_value(const char *query, const char *key)
{
	size_t kl = strlen(key);
	const char *p = query;

	while (p && *p) {
		const char *amp = strchr(p, '&'), *end = amp ? amp : p + strlen(p);
		if ((size_t)(end - p) > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
			char *out = loomi_xmalloc((size_t)(end - p)), *o = out;
			for (const char *s = p + kl + 1; s < end; s++) {
				unsigned hex;
				if (*s == '%' && end - s > 2 && sscanf(s + 1, "%2x", &hex) == 1) {
					*o++ = (char)hex;
					s += 2;
				} else {
					*o++ = *s == '+' ? ' ' : *s;
				}
			}
			*o = '\0';
			return out;
		}
		p = amp ? amp + 1 : NULL;
	}
	return NULL;
}

/* A time: ms since the epoch, or ISO 8601 UTC ("2026-11-23T05:10:58Z",
 * with optional .mmm). */
static bool
parse_time(const char *s, int64_t *ms)
{
	struct tm tm;
	char *end;
	int frac = 0, n = 0;

	if (*s >= '0' && *s <= '9' && strspn(s, "0123456789") == strlen(s)) {
		*ms = strtoll(s, &end, 10);
		return true;
	}
	memset(&tm, 0, sizeof tm);
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	           &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
		return false;
	s += n;
	if (*s == '.') {
		int digits = 0;
		for (s++; *s >= '0' && *s <= '9'; s++, digits++)
			if (digits < 3)
				frac = frac * 10 + (*s - '0');
		for (; digits < 3; digits++)
			frac *= 10;
	}
	if (strcmp(s, "Z") != 0 && *s != '\0')
		return false;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	*ms = (int64_t)timegm(&tm) * 1000 + frac;
	return true;
}

static int
rule_get(int64_t id, rule *r, char **msg)
{
	sqlite3_stmt *st;
	int rv = LOOM_ENOENT;

	pthread_mutex_lock(&A.dbm);
	if ((st = prep(RULE_COLUMNS " WHERE id = ?")) == NULL) {
		pthread_mutex_unlock(&A.dbm);
		*msg = loomi_strfmt("cannot read alert rules: %s", sqlite3_errmsg(A.db));
		return LOOM_EIO;
	}
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) == SQLITE_ROW)
		rv = rule_from_row(st, r, msg);
	else
		*msg = loomi_strfmt("no alert rule %lld; `loomctl alerts rules` lists them",
		                    (long long)id);
	sqlite3_finalize(st);
	pthread_mutex_unlock(&A.dbm);
	return rv;
}

/* Insert (id 0) or replace rule r; sets r->id and times. */
static int
rule_store(rule *r, char **msg)
{
	json_t *cj = condition_json(r), *aj = actions_json(r);
	char *c = json_dumps(cj, JSON_COMPACT), *a = json_dumps(aj, JSON_COMPACT);
	int64_t now = loomi_wall_ms();
	sqlite3_stmt *st;
	int rc, rv = 0;

	pthread_mutex_lock(&A.dbm);
	st = prep(r->id == 0 ? "INSERT INTO alert_rules (name, enabled, kind, condition, job_id,"
	                       " job_glob, actions, repeat_ms, created_at, updated_at, owner)"
	                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?11)"
	                     : "UPDATE alert_rules SET name = ?1, enabled = ?2, kind = ?3,"
	                       " condition = ?4, job_id = ?5, job_glob = ?6, actions = ?7,"
	                       " repeat_ms = ?8, updated_at = max(?9, updated_at + 1)"
	                       " WHERE id = ?10");
	if (st == NULL) {
		rv = LOOM_EIO;
		*msg = loomi_strfmt("cannot store the alert rule: %s", sqlite3_errmsg(A.db));
		goto out;
	}
	sqlite3_bind_text(st, 1, r->name, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, r->enabled);
	sqlite3_bind_text(st, 3, kind_names[r->kind], -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, c, -1, SQLITE_STATIC);
	if (r->job_id > 0)
		sqlite3_bind_int64(st, 5, r->job_id);
	if (r->job_glob)
		sqlite3_bind_text(st, 6, r->job_glob, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, a, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 8, r->repeat_ms);
	sqlite3_bind_int64(st, 9, now);
	if (r->id)
		sqlite3_bind_int64(st, 10, r->id);
	else
		sqlite3_bind_text(st, 11, r->owner ? r->owner : "", -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_CONSTRAINT_UNIQUE) {
		rv = LOOM_EEXIST;
		*msg = loomi_strfmt("name: an alert rule named \"%s\" exists; choose another name or "
		                    "update that rule",
		                    r->name);
	} else if ((rv = loomi_store_wrote(A.db, rc)) != 0) {
		*msg = loomi_store_errmsg("the alert rule");
	} else if (r->id == 0) {
		r->id = sqlite3_last_insert_rowid(A.db);
	}
	sqlite3_finalize(st);
out:
	pthread_mutex_unlock(&A.dbm);
	free(c);
	free(a);
	json_decref(cj);
	json_decref(aj);
	return rv;
}

/* Answer with rule id as stored. */
static void
answer_rule(loomi_http_res *res, int64_t id, int status)
{
	rule r;
	char *msg = NULL;
	int rv = rule_get(id, &r, &msg);
	if (rv == 0) {
		api_answer(res, 0, rule_json(&r), NULL, status);
		rule_free(&r);
	} else {
		api_answer(res, rv, NULL, msg, status);
	}
}

/* What loomd.conf's alerts group allows of a rule's actions, checked when
 * a rule is created or its actions replaced: a webhook's host must be
 * listed in alerts.webhook_hosts (400), a command needs
 * alerts.command_actions (403).  0, or the error with *msg. */
static int
rule_permitted(const rule *r, char **msg)
{
	for (size_t i = 0; i < r->n_actions; i++) {
		const action *a = &r->actions[i];
		if (a->type == A_WEBHOOK) {
			loomi_webhook_url u;
			char *why = NULL;
			int rv = loomi_webhook_url_parse(a->target, &u, &why);
			if (rv == 0)
				rv = loomi_webhook_host_allowed(&A.hosts, &u, &why);
			loomi_webhook_url_free(&u);
			if (rv != 0) {
				*msg = loomi_strfmt("actions[%zu].url: \"%s\": %s", i, a->target, why);
				free(why);
				return LOOM_EINVAL;
			}
		} else if (a->type == A_COMMAND && !A.command_actions) {
			*msg = loomi_strfmt("actions[%zu]: command actions run as loomd's user and are off; "
			                    "an administrator can allow them with alerts.command_actions = "
			                    "true in loomd.conf",
			                    i);
			return LOOM_EPERM;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ who sees what */

/* A rule is seen by admins, its owner and those it is shared with (kind
 * "alert-rule", id "rule-3"); changing one stays an admin's. */
static bool
rule_visible(loomi_daemon *d, const loomi_caller *c, const rule *r)
{
	char id[32];

	snprintf(id, sizeof id, "rule-%lld", (long long)r->id);
	return loomi_auth_may(d, c, "alert-rule", id, r->owner, LOOMI_ACCESS_READ);
}

/* auth.h's loomi_owner_fn for "alert-rule". */
static int
rule_owner(loomi_daemon *d, const char *id, char **owner, char canon[LOOMI_OBJECT_ID_MAX])
{
	int64_t rid = id_param(id, "rule-");
	sqlite3_stmt *st;
	int rv = LOOM_ENOENT;

	(void)d;
	if (rid <= 0 || A.db == NULL)
		return LOOM_ENOENT;
	pthread_mutex_lock(&A.dbm);
	if ((st = prep("SELECT owner FROM alert_rules WHERE id = ?")) != NULL) {
		sqlite3_bind_int64(st, 1, rid);
		if (sqlite3_step(st) == SQLITE_ROW) {
			*owner = loomi_strdup((const char *)sqlite3_column_text(st, 0));
			snprintf(canon, LOOMI_OBJECT_ID_MAX, "rule-%lld", (long long)rid);
			rv = 0;
		}
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&A.dbm);
	return rv;
}

/* The SQL condition for the fired alerts the caller may see (binds ?901
 * and ?902: auth.h): an admin all; others those of a rule they may see,
 * and those about a task they may see.  Free it. */
static char *
alerts_visible_sql(void)
{
	char *of_rule = loomi_auth_visible_sql("alert-rule", "('rule-' || r.id)", "r.owner");
	char *task = loomi_auth_visible_sql("task", "('task-' || jobs.id)", "jobs.user");
	char *sql = loomi_strfmt("(?902 OR EXISTS (SELECT 1 FROM alert_rules r WHERE"
	                         " r.id = alerts.rule_id AND %s) OR (alerts.job_id IS NOT NULL AND"
	                         " EXISTS (SELECT 1 FROM jobs WHERE jobs.id = alerts.job_id AND %s)))",
	                         of_rule, task);
	free(of_rule);
	free(task);
	return sql;
}

static void
route_rules_list(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *list = json_array();
	ruleset *rs;

	if (!available(res)) {
		json_decref(list);
		return;
	}
	if ((rs = ruleset_get()) != NULL)
		for (size_t i = 0; i < rs->n; i++)
			if (rule_visible(d, req->caller, &rs->v[i]))
				json_array_append_new(list, rule_json(&rs->v[i]));
	ruleset_unref(rs);
	api_answer(res, 0, json_pack("{s:o}", "rules", list), NULL, 200);
}

static void
route_rule_create(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *body;
	char *msg = NULL;
	rule r;
	int rv;

	(void)d;
	if (!available(res) || (body = body_json(req, res)) == NULL)
		return;
	if ((rv = rule_parse(body, &r, &msg)) == 0) {
		r.owner = loomi_strdup(req->caller->name);
		if ((rv = rule_permitted(&r, &msg)) == 0 && (rv = rule_store(&r, &msg)) == 0 &&
		    (rv = reload()) != 0)
			msg = loomi_strdup("the rule was stored but the rules could not be read back");
		if (rv == 0)
			answer_rule(res, r.id, 201);
		rule_free(&r);
	}
	if (rv != 0)
		api_answer(res, rv, NULL, msg, 201);
	json_decref(body);
}

static void
route_rule_get(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	int64_t id = id_param(req->params[0], "rule-");

	(void)d;
	if (!available(res))
		return;
	if (id == 0) {
		loomi_api_error(res, 404, "not_found",
		                "no alert rule \"%s\"; rule ids are numbers like 3", req->params[0]);
		return;
	}
	if (req->caller->role != LOOMI_ROLE_ADMIN) {
		rule r = {0};
		char *msg = NULL;
		bool seen = rule_get(id, &r, &msg) == 0 && rule_visible(d, req->caller, &r);
		rule_free(&r);
		free(msg);
		if (!seen) {
			loomi_api_error(res, 404, "not_found",
			                "no alert rule %lld; `loomctl alerts rules` lists them",
			                (long long)id);
			return;
		}
	}
	answer_rule(res, id, 200);
}

/* PUT: the keys given replace the stored ones (a whole rule, or only
 * {"enabled": false}); the result is checked as a new rule is. */
static void
route_rule_update(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	int64_t id = id_param(req->params[0], "rule-");
	json_t *body, *merged;
	char *msg = NULL;
	rule old, r;
	int rv;

	(void)d;
	if (!available(res))
		return;
	if (id == 0) {
		loomi_api_error(res, 404, "not_found",
		                "no alert rule \"%s\"; rule ids are numbers like 3", req->params[0]);
		return;
	}
	if ((body = body_json(req, res)) == NULL)
		return;
	if ((rv = rule_get(id, &old, &msg)) != 0) {
		api_answer(res, rv, NULL, msg, 200);
		json_decref(body);
		return;
	}
	merged = rule_json(&old);
	json_object_del(merged, "id");
	json_object_del(merged, "created_at");
	json_object_del(merged, "updated_at");
	json_object_del(body, "id");
	json_object_update(merged, body);
	rule_free(&old);
	if ((rv = rule_parse(merged, &r, &msg)) == 0) {
		r.id = id;
		/* actions kept as they were stay (a rule can be disabled even if its
		 * command is no longer allowed); new ones are checked */
		if (json_object_get(body, "actions") != NULL)
			rv = rule_permitted(&r, &msg);
		if (rv == 0 && (rv = rule_store(&r, &msg)) == 0 && (rv = reload()) != 0)
			msg = loomi_strdup("the rule was stored but the rules could not be read back");
		rule_free(&r);
	}
	if (rv == 0)
		answer_rule(res, id, 200);
	else
		api_answer(res, rv, NULL, msg, 200);
	json_decref(merged);
	json_decref(body);
}

static void
route_rule_delete(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	int64_t id = id_param(req->params[0], "rule-");
	sqlite3_stmt *st;
	int changed = 0, rv = 0;

	(void)d;
	if (!available(res))
		return;
	pthread_mutex_lock(&A.dbm);
	if (id > 0 && (st = prep("DELETE FROM alert_rules WHERE id = ?")) != NULL) {
		sqlite3_bind_int64(st, 1, id);
		if ((rv = loomi_store_wrote(A.db, sqlite3_step(st))) == 0)
			changed = sqlite3_changes(A.db);
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&A.dbm);
	if (rv != 0) {
		api_answer(res, rv, NULL, loomi_store_errmsg("the deletion of the alert rule"), 200);
		return;
	}
	if (changed == 0) {
		loomi_api_error(res, 404, "not_found",
		                "no alert rule \"%s\"; `loomctl alerts rules` lists them",
		                req->params[0]);
		return;
	}
	reload();
	api_answer(res, 0, json_pack("{s:I, s:b}", "id", (json_int_t)id, "deleted", 1), NULL, 200);
}

/* An alert from a row of ALERT_COLUMNS. */
#define ALERT_COLUMNS                                                                     \
	"SELECT id, rule_id, rule_name, kind, job_id, run_id, at, message, value, actions" \
	" FROM alerts"

static json_t *
alert_from_row(sqlite3_stmt *st)
{
	int64_t at = sqlite3_column_int64(st, 6);
	char *iso = loomi_iso_time(at), tid[32];
	json_t *value, *actions;

	switch (sqlite3_column_type(st, 8)) {
	case SQLITE_INTEGER:
	case SQLITE_FLOAT:
		value = json_real(sqlite3_column_double(st, 8));
		break;
	case SQLITE_TEXT:
		value = json_string((const char *)sqlite3_column_text(st, 8));
		break;
	default:
		value = json_null();
	}
	actions = json_loads((const char *)sqlite3_column_text(st, 9), 0, NULL);
	snprintf(tid, sizeof tid, "task-%lld", (long long)sqlite3_column_int64(st, 4));
	json_t *o = json_pack(
		"{s:I, s:I, s:s, s:s, s:o, s:o, s:s, s:I, s:s, s:o, s:o}", "id",
		(json_int_t)sqlite3_column_int64(st, 0), "rule_id",
		(json_int_t)sqlite3_column_int64(st, 1), "rule", (const char *)sqlite3_column_text(st, 2),
		"kind", (const char *)sqlite3_column_text(st, 3), "task_id",
		sqlite3_column_type(st, 4) == SQLITE_NULL ? json_null() : json_string(tid), "run_id",
		sqlite3_column_type(st, 5) == SQLITE_NULL
			? json_null()
			: json_string((const char *)sqlite3_column_text(st, 5)),
		"time", iso, "at", (json_int_t)at, "message", (const char *)sqlite3_column_text(st, 7),
		"value", value, "actions", actions ? actions : json_array());
	free(iso);
	return o;
}

static void
route_alerts_list(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	static const char *const keys[] = {"rule", "job", "since", "limit", "offset"};
	char *v[5];
	int64_t rule_id = 0, job_id = 0, since = 0, limit = 50, offset = 0, total = 0;
	json_t *list = NULL;
	sqlite3_stmt *st;
	char *bad = NULL, *vis, *sql;

	(void)d;
	if (!available(res))
		return;
	for (int i = 0; i < 5; i++)
		v[i] = query_value(req->query, keys[i]);
	if (v[0] && (rule_id = id_param(v[0], "rule-")) == 0)
		bad = loomi_strfmt("rule: \"%s\" is not a rule id; give a number like 3", v[0]);
	else if (v[1] && (job_id = id_param(v[1], "task-")) == 0)
		bad = loomi_strfmt("job: \"%s\" is not a task id; give task-12 or 12", v[1]);
	else if (v[2] && !parse_time(v[2], &since))
		bad = loomi_strfmt("since: \"%s\" is not a time; give ms since the epoch or ISO 8601 "
		                   "UTC like 2026-11-23T05:10:58Z",
		                   v[2]);
	else if (v[3] && (sscanf(v[3], "%" SCNd64, &limit) != 1 || limit < 1 || limit > 1000))
		bad = loomi_strfmt("limit: \"%s\" must be a whole number from 1 to 1000", v[3]);
	else if (v[4] && (sscanf(v[4], "%" SCNd64, &offset) != 1 || offset < 0))
		bad = loomi_strfmt("offset: \"%s\" must be a whole number, 0 or more", v[4]);
	for (int i = 0; i < 5; i++)
		free(v[i]);
	if (bad) {
		loomi_api_error(res, 400, "invalid", "%s", bad);
		free(bad);
		return;
	}
#define ALERT_FILTER \
	" WHERE (?1 = 0 OR rule_id = ?1) AND (?2 = 0 OR job_id = ?2) AND at >= ?3 AND %s"
	vis = alerts_visible_sql();
	pthread_mutex_lock(&A.dbm);
	sql = loomi_strfmt("SELECT count(*) FROM alerts" ALERT_FILTER, vis);
	st = prep(sql);
	free(sql);
	if (st != NULL) {
		loomi_auth_bind(st, req->caller);
		sqlite3_bind_int64(st, 1, rule_id);
		sqlite3_bind_int64(st, 2, job_id);
		sqlite3_bind_int64(st, 3, since);
		if (sqlite3_step(st) == SQLITE_ROW)
			total = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	sql = loomi_strfmt(ALERT_COLUMNS ALERT_FILTER " ORDER BY id DESC LIMIT ?4 OFFSET ?5", vis);
	st = prep(sql);
	free(sql);
	free(vis);
	if (st != NULL) {
		list = json_array();
		loomi_auth_bind(st, req->caller);
		sqlite3_bind_int64(st, 1, rule_id);
		sqlite3_bind_int64(st, 2, job_id);
		sqlite3_bind_int64(st, 3, since);
		sqlite3_bind_int64(st, 4, limit);
		sqlite3_bind_int64(st, 5, offset);
		while (sqlite3_step(st) == SQLITE_ROW)
			json_array_append_new(list, alert_from_row(st));
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&A.dbm);
	if (list == NULL) {
		loomi_api_error(res, 500, "internal", "cannot read the alerts: %s",
		                sqlite3_errmsg(A.db));
		return;
	}
	api_answer(res, 0,
	           json_pack("{s:o, s:I, s:I, s:I}", "alerts", list, "total", (json_int_t)total,
	                     "limit", (json_int_t)limit, "offset", (json_int_t)offset),
	           NULL, 200);
}

static void
route_alert_get(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	int64_t id = id_param(req->params[0], "alert-");
	char *vis = alerts_visible_sql(), *sql = loomi_strfmt(ALERT_COLUMNS " WHERE id = ?1 AND %s",
	                                                      vis);
	json_t *o = NULL;
	sqlite3_stmt *st;

	(void)d;
	free(vis);
	if (!available(res)) {
		free(sql);
		return;
	}
	/* one the caller may not see is as missing as one that is not */
	pthread_mutex_lock(&A.dbm);
	if (id > 0 && (st = prep(sql)) != NULL) {
		loomi_auth_bind(st, req->caller);
		sqlite3_bind_int64(st, 1, id);
		if (sqlite3_step(st) == SQLITE_ROW)
			o = alert_from_row(st);
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&A.dbm);
	free(sql);
	if (o == NULL)
		loomi_api_error(res, 404, "not_found", "no alert \"%s\"; `loomctl alerts` lists them",
		                req->params[0]);
	else
		api_answer(res, 0, o, NULL, 200);
}

/* ------------------------------------------------------------------ the module */

static void
on_job_state(loomi_daemon *d, const loomi_event *ev)
{
	(void)d;
	loomi_alerts_state(ev->job, ev->u.state.from, ev->u.state.to, ev->u.state.reason);
}

static void
on_log_entry(loomi_daemon *d, const loomi_event *ev)
{
	(void)d;
	loomi_alerts_log(ev->job, ev->u.log.instance, ev->u.log.level, ev->u.log.message);
}

static void
on_run_points(loomi_daemon *d, const loomi_event *ev)
{
	(void)d;
	loomi_alerts_metrics(ev->job, ev->u.run_points.run_id, ev->u.run_points.pts,
	                     ev->u.run_points.n);
}

static void
stop(loomi_daemon *d)
{
	(void)d;
	loomi_alerts_stop();
}

static const loomi_migration migrations[] = {
	{10, "alert rules and fired alerts", migration_sql},
	/* A deleted rule's id was given to the next rule, which then listed
	 * the old rule's alerts: ids are never used again.  The sequence of
	 * rules starts above every rule id an alert still names. */
	{15, "alert rule and alert ids are never reused (AUTOINCREMENT)",
	 "CREATE TABLE alert_rules_new (\n"
	 "  id          INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	 "  name        TEXT NOT NULL UNIQUE,\n"
	 "  enabled     INTEGER NOT NULL DEFAULT 1,\n"
	 "  kind        TEXT NOT NULL,\n"
	 "  condition   TEXT NOT NULL CHECK (json_valid(condition)),\n"
	 "  job_id      INTEGER,\n"
	 "  job_glob    TEXT,\n"
	 "  actions     TEXT NOT NULL CHECK (json_valid(actions)),\n"
	 "  repeat_ms   INTEGER NOT NULL CHECK (repeat_ms >= 0),\n"
	 "  created_at  INTEGER NOT NULL,\n"
	 "  updated_at  INTEGER NOT NULL\n"
	 ");\n"
	 "INSERT INTO alert_rules_new SELECT id, name, enabled, kind, condition, job_id, job_glob,\n"
	 "  actions, repeat_ms, created_at, updated_at FROM alert_rules;\n"
	 "DROP TABLE alert_rules;\n"
	 "ALTER TABLE alert_rules_new RENAME TO alert_rules;\n"
	 "CREATE TABLE alerts_new (\n"
	 "  id          INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	 "  rule_id     INTEGER NOT NULL,\n"
	 "  rule_name   TEXT NOT NULL,\n"
	 "  kind        TEXT NOT NULL,\n"
	 "  job_id      INTEGER,\n"
	 "  run_id      TEXT,\n"
	 "  at          INTEGER NOT NULL,\n"
	 "  message     TEXT NOT NULL,\n"
	 "  value,\n"
	 "  actions     TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(actions))\n"
	 ");\n"
	 "INSERT INTO alerts_new SELECT id, rule_id, rule_name, kind, job_id, run_id, at, message,\n"
	 "  value, actions FROM alerts;\n"
	 "DROP TABLE alerts;\n"
	 "ALTER TABLE alerts_new RENAME TO alerts;\n"
	 "CREATE INDEX alerts_by_rule ON alerts (rule_id, id);\n"
	 "CREATE INDEX alerts_by_job ON alerts (job_id, id);\n"
	 "CREATE INDEX alerts_by_at ON alerts (at);\n"
	 LOOMI_SEQUENCE_AT_LEAST("alert_rules", "SELECT max(coalesce((SELECT max(id) FROM"
	                         " alert_rules), 0), coalesce((SELECT max(rule_id) FROM alerts), 0))")
	 LOOMI_SEQUENCE_AT_LEAST("alerts", "SELECT max(id) FROM alerts")},
	/* the admin who made a rule; rules made before belong to no one ('')
	 * and only admins see them */
	{19, "alert rules have owners",
	 "ALTER TABLE alert_rules ADD COLUMN owner TEXT NOT NULL DEFAULT '';\n"},
};

/* Rules are admin: a rule's action can run a command as loomd's user. */
static const loomi_route routes[] = {
	{"GET", "/api/v1/alerts/rules", route_rules_list, LOOMI_ACCESS_READ, NULL},
	{"POST", "/api/v1/alerts/rules", route_rule_create, LOOMI_ACCESS_ADMIN, NULL},
	{"GET", "/api/v1/alerts/rules/{id}", route_rule_get, LOOMI_ACCESS_READ, NULL},
	{"PUT", "/api/v1/alerts/rules/{id}", route_rule_update, LOOMI_ACCESS_ADMIN, NULL},
	{"DELETE", "/api/v1/alerts/rules/{id}", route_rule_delete, LOOMI_ACCESS_ADMIN, NULL},
	{"GET", "/api/v1/alerts", route_alerts_list, LOOMI_ACCESS_READ,
	 "rule,job,since,limit,offset"},
	{"GET", "/api/v1/alerts/{id}", route_alert_get, LOOMI_ACCESS_READ, NULL},
};

static const loomi_listener listeners[] = {
	{LOOMI_EV_JOB_STATE, on_job_state},
	{LOOMI_EV_LOG_ENTRY, on_log_entry},
	{LOOMI_EV_RUN_POINTS, on_run_points},
};

static int
init(loomi_daemon *d, char **err)
{
	(void)d;
	(void)err;
	loomi_auth_register_kind("alert-rule", rule_owner);
	return 0;
}

const loomi_module loomi_alerts_module = {
	.name = "alerts",
	.migrations = migrations,
	.n_migrations = LOOMI_N(migrations),
	.init = init,
	.start = loomi_alerts_start,
	.stop = stop,
	.routes = routes,
	.n_routes = LOOMI_N(routes),
	.listeners = listeners,
	.n_listeners = LOOMI_N(listeners),
};

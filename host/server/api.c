/* The REST API: Loom's HTTP server (http.c) hands every request to the
 * route table below, so unknown paths and wrong methods get JSON errors
 * like every other failure; WebSocket upgrades go to the task monitor. */
#include "config.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host/alerts/alerts.h"
#include "api.h"
#include "host/configs/configs.h"
#include "http.h"
#include "host/tasks/jobs.h"
#include "host/tasks/monitor.h"
#include "host/core/log.h"
#include "host/logs/logs.h"
#include "host/registry/registry.h"
#include "host/tracking/tracking.h"
#include "host/core/util.h"

#define MAX_BODY (16u << 20)

struct loomi_api {
	loomi_http_server *server;
	loomi_monitor *monitor;
	loomi_daemon *d;
};

typedef struct route {
	const char *method;
	const char *pattern;       /* "/api/v1/plugins/{instance}" */
	loomi_route_fn fn;
} route;

/* ------------------------------------------------------------------ helpers */

void
loomi_api_error(loomi_http_res *res, int status, const char *code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	loomi_utf8_clean(msg); /* it may quote a request's bytes, or be cut short */
	json_decref(res->body);
	res->status = status;
	res->body = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg);
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Percent-decode n bytes of s; NULL when malformed or decoding to NUL. */
static char *
url_decode(const char *s, size_t n)
{
	char *out = loomi_xmalloc(n + 1), *o = out;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%') {
			int hi, lo;
			if (i + 2 >= n) {
				free(out);
				return NULL;
			}
			hi = hexval((unsigned char)s[i + 1]);
			lo = hexval((unsigned char)s[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
				free(out);
				return NULL;
			}
			*o++ = (char)(hi * 16 + lo);
			i += 2;
		} else {
			*o++ = s[i];
		}
	}
	*o = '\0';
	return out;
}

/* Does path match pattern?  {name} segments match one non-empty segment
 * and their values are stored in req->params. */
static bool
match(const char *pattern, const char *path, loomi_http_req *req)
{
	const char *p = pattern, *s = path;
	size_t n = 0;

	while (*p && *s) {
		if (*p == '{') {
			const char *close = strchr(p, '}');
			const char *seg_end = strchr(s, '/');
			if (seg_end == NULL)
				seg_end = s + strlen(s);
			if (seg_end == s || n >= 4)
				return false;
			req->params[n++] = s; /* fixed up below */
			p = close + 1;
			s = seg_end;
			continue;
		}
		if (*p != *s)
			return false;
		p++;
		s++;
	}
	if (*p != '\0' || *s != '\0')
		return false;
	req->n_params = n;
	return true;
}

/* ------------------------------------------------------------------ routes */

static json_t *
plugin_json(const loom_instance *ins, bool detail)
{
	const loom_plugin_desc *d = ins->desc;
	char abi[32];
	json_t *o;

	snprintf(abi, sizeof abi, "%u.%u", d->abi_major, d->abi_minor);
	o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "instance", ins->name, "module",
	              ins->module->name, "kind", loom_kind_name(ins->kind), "name", d->name,
	              "version", d->version, "abi", abi, "description",
	              d->description ? d->description : "");
	if (detail && o) {
		json_t *settings = json_array();
		json_object_set_new(o, "path", json_string(ins->module->path));
		json_object_set_new(o, "thread_safe",
		                    json_boolean(d->flags & LOOM_PLUGIN_THREAD_SAFE));
		json_object_set(o, "config", ins->conf.values);
		for (const loom_config_entry *e = d->config; e && e->key; e++) {
			json_array_append_new(settings,
			                      json_pack("{s:s, s:s?, s:s?, s:b}", "key", e->key,
			                                "default", e->def, "description",
			                                e->description, "required",
			                                (e->flags & LOOM_CONFIG_REQUIRED) != 0));
		}
		json_object_set_new(o, "settings", settings);
	}
	return o;
}

static void
get_health(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3_stmt *st = NULL;
	bool db_ok = false;
	char abi[32];
	char *state_dir = loomi_utf8_clean(loomi_strdup(d->conf.state_dir));

	if (sqlite3_prepare_v2(d->store.db, "SELECT 1", -1, &st, NULL) == SQLITE_OK)
		db_ok = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	snprintf(abi, sizeof abi, "%d.%d", LOOM_ABI_MAJOR, LOOM_ABI_MINOR);
	res->status = db_ok ? 200 : 503;
	res->body = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:I, s:I, s:{s:b, s:i}}", "status",
	                      db_ok ? "ok" : "degraded", "version", LOOM_VERSION_STRING, "abi", abi,
	                      "pid", (json_int_t)getpid(), "uptime_s",
	                      (json_int_t)((loomi_mono_ns() - d->started_ns) / 1000000000ull),
	                      "state_dir", state_dir, "plugins",
	                      (json_int_t)d->plugins.n_instances, "bus_dropped",
	                      (json_int_t)(d->bus ? loomi_bus_dropped(d->bus) : 0), "database", "ok",
	                      db_ok, "schema_version", d->store.version);
	free(state_dir);
}

static void
get_plugins(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *list = json_array();

	for (size_t i = 0; i < d->plugins.n_instances; i++)
		json_array_append_new(list, plugin_json(d->plugins.instances[i], false));
	res->status = 200;
	res->body = json_pack("{s:o, s:I}", "plugins", list, "count",
	                      (json_int_t)d->plugins.n_instances);
}

static void
get_plugin(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	loom_instance *ins = loomi_instance_find(&d->plugins, req->params[0]);

	if (ins == NULL) {
		loomi_api_error(res, 404, "not_found",
		                "no plugin instance \"%s\"; GET /api/v1/plugins lists them",
		                req->params[0]);
		return;
	}
	res->status = 200;
	res->body = plugin_json(ins, true);
}

/* ------------------------------------------------------------------ training tasks */

/* The value of key in a query string ("a=1&b=2"), decoded; NULL if absent. */
char *
loomi_query_get(const char *query, const char *key)
{
	size_t klen = strlen(key);
	for (const char *p = query; p && *p;) {
		const char *amp = strchr(p, '&'), *end = amp ? amp : p + strlen(p);
		if ((size_t)(end - p) > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
			char *raw = loomi_strndup(p + klen + 1, (size_t)(end - p - (ptrdiff_t)klen - 1));
			for (char *c = raw; *c; c++)
				if (*c == '+')
					*c = ' ';
			char *v = url_decode(raw, strlen(raw));
			free(raw);
			return v ? v : loomi_strdup("");
		}
		p = amp ? amp + 1 : NULL;
	}
	return NULL;
}

bool
loomi_query_int(loomi_http_res *res, const char *query, const char *key, int64_t def, int64_t min,
          int64_t max, int64_t *out)
{
	char *v = loomi_query_get(query, key), *end;
	long long x;

	*out = def;
	if (v == NULL)
		return true;
	x = strtoll(v, &end, 10);
	if (*v == '\0' || *end || x < min || x > max) {
		loomi_api_error(res, 400, "bad_request", "%s: \"%s\" is not a whole number from %lld "
		                "to %lld", key, v, (long long)min, (long long)max);
		free(v);
		return false;
	}
	free(v);
	*out = x;
	return true;
}

int64_t
loomi_api_task_id(const loomi_http_req *req, loomi_http_res *res)
{
	int64_t id = loomi_job_id_parse(req->params[0]);
	if (id <= 0)
		loomi_api_error(res, 404, "not_found",
		                "\"%s\" is not a task id; ids look like task-12 (GET "
		                "/api/v1/training/tasks lists them)",
		                req->params[0]);
	return id;
}

static void
post_tasks(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_error_t je;
	json_t *body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
	char *msg = NULL;
	int64_t id = 0;
	int rv;

	if (body == NULL) {
		loomi_api_error(res, 400, "bad_request",
		                "the body is not valid JSON: %s (line %d, column %d)", je.text,
		                je.line, je.column);
		return;
	}
	rv = loomi_jobs_submit(d, body, "local", &id, &msg);
	json_decref(body);
	if (rv != 0) {
		loomi_api_error(res, rv == LOOM_ENOENT ? 404 : rv == LOOM_EINVAL ? 400 : 500,
		                rv == LOOM_ENOENT ? "not_found" : rv == LOOM_EINVAL ? "invalid" :
		                "internal", "%s", msg ? msg : loom_strerror(rv));
		free(msg);
		return;
	}
	res->status = 201;
	res->body = loomi_jobs_get(d, id);
}

static void
get_tasks(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	char *status = loomi_query_get(req->query, "status"), *user = loomi_query_get(req->query, "user");
	char *msg = NULL;
	int64_t limit, offset;

	if (loomi_query_int(res, req->query, "limit", 50, 1, 1000, &limit) &&
	    loomi_query_int(res, req->query, "offset", 0, 0, INT64_MAX / 2, &offset)) {
		res->body = loomi_jobs_list(d, status, user, limit, offset, &msg);
		if (res->body)
			res->status = 200;
		else
			loomi_api_error(res, 400, "bad_request", "%s", msg);
	}
	free(msg);
	free(status);
	free(user);
}

static void
get_task(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	int64_t id = loomi_api_task_id(req, res);
	if (id <= 0)
		return;
	if ((res->body = loomi_jobs_get(d, id)) == NULL) {
		loomi_api_error(res, 404, "not_found", "there is no task-%lld", (long long)id);
		return;
	}
	res->status = 200;
}

static void
task_action(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res, const char *action)
{
	int64_t id = loomi_api_task_id(req, res);
	char *msg = NULL;
	int rv;

	if (id <= 0)
		return;
	rv = loomi_jobs_action(d, id, action, &msg);
	if (rv == 0 || rv == LOOM_EBUSY) {
		res->status = rv == 0 ? 200 : 202;
		res->body = loomi_jobs_get(d, id);
		if (rv == LOOM_EBUSY && res->body)
			json_object_set_new(res->body, "message",
			                    json_pack("s", "the worker stops at its next step; GET the "
			                                   "task to see it happen"));
	} else {
		loomi_api_error(res, rv == LOOM_ENOENT ? 404 : rv == LOOM_ESTATE ? 409 : 500,
		                rv == LOOM_ENOENT ? "not_found" : rv == LOOM_ESTATE ? "conflict" :
		                "internal", "%s", msg ? msg : loom_strerror(rv));
	}
	free(msg);
}

static void
post_start(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	task_action(d, req, res, "start");
}

static void
post_pause(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	task_action(d, req, res, "pause");
}

static void
post_resume(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	task_action(d, req, res, "resume");
}

static void
post_cancel(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	task_action(d, req, res, "cancel");
}

static void
get_openapi(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	(void)d;
	(void)req;
	res->status = 200;
	res->text = loomi_strdup(loomi_openapi_json);
	res->text_len = strlen(loomi_openapi_json);
	res->content_type = "application/json";
}

/* ------------------------------------------------------------------ training configs */

static int
status_of(int rv)
{
	switch (rv) {
	case LOOM_EINVAL: return 400;
	case LOOM_ENOENT: return 404;
	case LOOM_EEXIST: return 409;
	default: return 500;
	}
}

static const char *
code_of(int rv)
{
	switch (rv) {
	case LOOM_EINVAL: return "invalid";
	case LOOM_ENOENT: return "not_found";
	case LOOM_EEXIST: return "conflict";
	default: return "internal";
	}
}

/* Answer a configs.c call: out with status ok, or the error. */
void
loomi_api_answer(loomi_http_res *res, int rv, json_t *out, char *msg, int ok)
{
	if (rv == 0) {
		res->status = ok;
		res->body = out;
	} else {
		json_decref(out);
		loomi_api_error(res, status_of(rv), code_of(rv), "%s", msg ? msg : loom_strerror(rv));
	}
	free(msg);
}

json_t *
loomi_api_json_body(const loomi_http_req *req, loomi_http_res *res)
{
	json_error_t je;
	json_t *body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
	if (body == NULL)
		loomi_api_error(res, 400, "bad_request",
		                "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line,
		                je.column);
	return body;
}

static void
post_configs(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *body = loomi_api_json_body(req, res), *out = NULL;
	char *msg = NULL;
	if (body) {
		int rv = loomi_configs_create(d, body, &out, &msg);
		loomi_api_answer(res, rv, out, msg, 201);
	}
	json_decref(body);
}

static void
get_configs(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	int64_t limit, offset;
	json_t *out = NULL;
	char *msg = NULL;

	if (loomi_query_int(res, req->query, "limit", 50, 1, 1000, &limit) &&
	    loomi_query_int(res, req->query, "offset", 0, 0, INT64_MAX / 2, &offset)) {
		int rv = loomi_configs_list(d, limit, offset, &out, &msg);
		loomi_api_answer(res, rv, out, msg, 200);
	}
}

static void
get_config(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	char *format = loomi_query_get(req->query, "format"), *msg = NULL, *text = NULL;
	int64_t version;
	json_t *out = NULL;
	int rv;

	if (!loomi_query_int(res, req->query, "version", 0, 1, INT64_MAX / 2, &version))
		goto out;
	if (format == NULL) {
		rv = loomi_configs_get(d, req->params[0], version, &out, &msg);
		loomi_api_answer(res, rv, out, msg, 200);
	} else if (strcmp(format, "libconfig") == 0 || strcmp(format, "json") == 0) {
		rv = loomi_configs_export(d, req->params[0], version, format, &text, &msg);
		if (rv == 0) {
			res->status = 200;
			res->text = text;
			res->text_len = strlen(text);
			res->content_type = strcmp(format, "json") == 0 ? "application/json"
			                                                : "text/plain; charset=utf-8";
			free(msg);
		} else {
			loomi_api_answer(res, rv, NULL, msg, 200);
		}
	} else {
		loomi_api_error(res, 400, "bad_request",
		                "format: \"%s\" is not an export format; use libconfig or json", format);
	}
out:
	free(format);
}

static void
put_config(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *body = loomi_api_json_body(req, res), *out = NULL;
	char *msg = NULL;
	if (body) {
		int rv = loomi_configs_update(d, req->params[0], body, &out, &msg);
		loomi_api_answer(res, rv, out, msg, 200);
	}
	json_decref(body);
}

static void
delete_config(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	char *msg = NULL;
	int rv = loomi_configs_delete(d, req->params[0], &msg);
	loomi_api_answer(res, rv, rv == 0 ? json_pack("{s:s, s:b}", "config_id", req->params[0], "deleted", 1)
	                        : NULL,
	       msg, 200);
}

static void
get_config_versions(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *out = NULL;
	char *msg = NULL;
	int rv = loomi_configs_versions(d, req->params[0], &out, &msg);
	loomi_api_answer(res, rv, out, msg, 200);
}

static void
post_config_validate(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *body = loomi_api_json_body(req, res), *out = NULL;
	char *msg = NULL;
	if (body) {
		int rv = loomi_configs_validate(d, body, &out, &msg);
		loomi_api_answer(res, rv, out, msg, 200);
	}
	json_decref(body);
}

/* $LOOM_TEMPLATES (a source tree), else the installed templates. */
static const char *
template_dir(void)
{
	const char *env = getenv("LOOM_TEMPLATES");
	return env && *env ? env : LOOM_TEMPLATE_DIR;
}

static void
get_templates(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *out = NULL;
	char *msg = NULL;
	int rv = loomi_configs_templates(template_dir(), &out, &msg);
	(void)d;
	(void)req;
	loomi_api_answer(res, rv, out, msg, 200);
}

static void
get_template(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *out = NULL;
	char *msg = NULL;
	int rv = loomi_configs_template(template_dir(), req->params[0], &out, &msg);
	(void)d;
	loomi_api_answer(res, rv, out, msg, 200);
}

static void
get_resources(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	(void)req;
	res->status = 200;
	res->body = loomi_jobs_resources(d);
}

static const route routes[] = {
	{"GET", "/api/v1/health", get_health},
	{"GET", "/api/v1/openapi.json", get_openapi},
	{"GET", "/api/v1/plugins", get_plugins},
	{"GET", "/api/v1/plugins/{instance}", get_plugin},
	{"GET", "/api/v1/resources", get_resources},
	{"POST", "/api/v1/training/tasks", post_tasks},
	{"GET", "/api/v1/training/tasks", get_tasks},
	{"GET", "/api/v1/training/tasks/{id}", get_task},
	{"POST", "/api/v1/training/tasks/{id}/start", post_start},
	{"POST", "/api/v1/training/tasks/{id}/pause", post_pause},
	{"POST", "/api/v1/training/tasks/{id}/resume", post_resume},
	{"POST", "/api/v1/training/tasks/{id}/cancel", post_cancel},
	{"GET", "/api/v1/training/tasks/{id}/logs", loomi_logs_route_task},
	{"GET", "/api/v1/logs", loomi_logs_route_host},
	{"POST", "/api/v1/training/configs/validate", post_config_validate},
	{"POST", "/api/v1/training/configs", post_configs},
	{"GET", "/api/v1/training/configs", get_configs},
	{"GET", "/api/v1/training/configs/{id}", get_config},
	{"PUT", "/api/v1/training/configs/{id}", put_config},
	{"DELETE", "/api/v1/training/configs/{id}", delete_config},
	{"GET", "/api/v1/training/configs/{id}/versions", get_config_versions},
	{"GET", "/api/v1/training/templates", get_templates},
	{"GET", "/api/v1/training/templates/{name}", get_template},
	{"POST", "/api/v1/runs", loomi_api_runs_create},
	{"GET", "/api/v1/runs", loomi_api_runs_list},
	{"GET", "/api/v1/runs/compare", loomi_api_runs_compare},
	{"GET", "/api/v1/runs/export", loomi_api_runs_export},
	{"GET", "/api/v1/runs/best", loomi_api_runs_best},
	{"GET", "/api/v1/runs/{id}", loomi_api_run_get},
	{"POST", "/api/v1/runs/{id}/end", loomi_api_run_end},
	{"POST", "/api/v1/runs/{id}/tags", loomi_api_run_tags},
	{"POST", "/api/v1/runs/{id}/metrics", loomi_api_run_metrics_post},
	{"GET", "/api/v1/runs/{id}/metrics", loomi_api_run_metrics_get},
	{"GET", "/api/v1/runs/{id}/export", loomi_api_runs_export},
	{"GET", "/api/v1/exporters", loomi_api_exporters},
	{"GET", "/api/v1/training/tasks/{id}/export", loomi_api_task_export},
	{"GET", "/api/v1/training/tasks/{id}/metrics", loomi_api_task_metrics_get},
	{"GET", "/api/v1/models", loomi_registry_get_models},
	{"GET", "/api/v1/models/{name}", loomi_registry_get_model},
	{"GET", "/api/v1/models/{name}/versions/{version}", loomi_registry_get_version},
	{"GET", "/api/v1/models/{name}/aliases/{alias}", loomi_registry_get_alias},
	{"POST", "/api/v1/models/{name}/aliases/{alias}", loomi_registry_post_alias},
	{"POST", "/api/v1/models/{name}/aliases/{alias}/rollback", loomi_registry_post_rollback},
	{"GET", "/api/v1/alerts/rules", loomi_api_alert_rules_list},
	{"POST", "/api/v1/alerts/rules", loomi_api_alert_rule_create},
	{"GET", "/api/v1/alerts/rules/{id}", loomi_api_alert_rule_get},
	{"PUT", "/api/v1/alerts/rules/{id}", loomi_api_alert_rule_update},
	{"DELETE", "/api/v1/alerts/rules/{id}", loomi_api_alert_rule_delete},
	{"GET", "/api/v1/alerts", loomi_api_alerts_list},
	{"GET", "/api/v1/alerts/{id}", loomi_api_alert_get},
};

bool
loomi_api_route(size_t i, const char **method, const char **pattern)
{
	if (i >= sizeof routes / sizeof routes[0])
		return false;
	*method = routes[i].method;
	*pattern = routes[i].pattern;
	return true;
}

/* ------------------------------------------------------------------ dispatch */

static void
route_request(loomi_daemon *d, loomi_http_req *req, loomi_http_res *res)
{
	loomi_strv allowed = {0};
	const char *method = strcmp(req->method, "HEAD") == 0 ? "GET" : req->method;

	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
		loomi_http_req m = *req;
		if (!match(routes[i].pattern, req->path, &m))
			continue;
		if (strcmp(routes[i].method, method) != 0) {
			loomi_strv_push(&allowed, loomi_strdup(routes[i].method));
			continue;
		}
		/* Decode the parameters into owned strings for the route. */
		char *params[4] = {0};
		bool bad = false;
		for (size_t k = 0; k < m.n_params; k++) {
			const char *seg = m.params[k], *end = strchr(seg, '/');
			params[k] = url_decode(seg, end ? (size_t)(end - seg) : strlen(seg));
			if (params[k] == NULL)
				bad = true;
			m.params[k] = params[k];
		}
		if (bad)
			loomi_api_error(res, 400, "bad_request", "malformed percent-encoding in %s",
			                req->path);
		else
			routes[i].fn(d, &m, res);
		for (size_t k = 0; k < m.n_params; k++)
			free(params[k]);
		loomi_strv_free(&allowed);
		return;
	}
	if (allowed.n > 0) {
		loomi_strv_push(&allowed, loomi_strdup("HEAD"));
		res->allow = loomi_strv_join(&allowed, ", ");
		loomi_api_error(res, 405, "method_not_allowed", "%s is not allowed on %s; use %s",
		                req->method, req->path, res->allow);
	} else {
		loomi_api_error(res, 404, "not_found",
		                "no such endpoint: %s %s; the API lives under /api/v1", req->method,
		                req->path);
	}
	loomi_strv_free(&allowed);
}

static void
http_handler(void *arg, const loomi_http_request *hreq, loomi_http_response *hres)
{
	loomi_api *api = arg;
	loomi_http_req req = {0};
	loomi_http_res res = {0};
	char *path, *text = NULL;
	uint64_t t0 = loomi_mono_ns();
	size_t n;

	req.method = hreq->method;
	req.query = hreq->query;
	req.body = hreq->body;
	req.body_len = hreq->body_len;
	/* Routes match the path as sent; each {param} is decoded once, after
	 * matching, so an encoded '/' or '%' stays inside its segment.  A
	 * trailing slash is collapsed so /api/v1/plugins/ finds its route. */
	path = loomi_strdup(hreq->path);
	n = strlen(path);
	while (n > 1 && path[n - 1] == '/')
		path[--n] = '\0';
	req.path = path;
	route_request(api->d, &req, &res);

	if (res.status == 0) {
		LOG_ERROR("http %s %s: the route set no status (a bug)", req.method, hreq->target);
		loomi_api_error(&res, 500, "internal", "the server failed to answer this request");
	}
	if (res.body)
		text = json_dumps(res.body, JSON_COMPACT | JSON_PRESERVE_ORDER);
	hres->status = res.status;
	if (text) {
		hres->body = text;
		hres->body_len = strlen(text);
		hres->content_type = "application/json";
	} else if (res.text) {
		hres->body = res.text;
		hres->body_len = res.text_len;
		hres->content_type = res.content_type;
		res.text = NULL;
	} else {
		/* never a response without a body (and its Content-Length) */
		hres->body = loomi_strdup("{\"error\":{\"code\":\"internal\",\"message\":\"the "
		                          "server could not encode its answer\"}}");
		hres->body_len = strlen(hres->body);
		hres->content_type = "application/json";
	}
	if (res.allow) {
		hres->headers[hres->n_headers].name = "Allow";
		hres->headers[hres->n_headers++].value = res.allow;
		res.allow = NULL;
	}
	hres->headers[hres->n_headers].name = "Cache-Control";
	hres->headers[hres->n_headers++].value = loomi_strdup("no-store");
	if (loomi_log_enabled(LOOM_LOG_DEBUG))
		LOG_DEBUG("http %s %s -> %d (%.3f ms)", req.method, hreq->target, res.status,
		          (double)(loomi_mono_ns() - t0) / 1e6);
	free(path);
	json_decref(res.body);
	free(res.text);
	free(res.allow);
}

/* The WebSocket monitor, reached through the api. */
static int
ws_open(void *arg, loomi_ws *ws, const loomi_http_request *req, loomi_http_response *res)
{
	return loomi_monitor_handlers()->on_open(((loomi_api *)arg)->monitor, ws, req, res);
}

static void
ws_message(void *arg, loomi_ws *ws, const char *data, size_t len, bool text)
{
	loomi_monitor_handlers()->on_message(((loomi_api *)arg)->monitor, ws, data, len, text);
}

static void
ws_close(void *arg, loomi_ws *ws)
{
	loomi_monitor_handlers()->on_close(((loomi_api *)arg)->monitor, ws);
}

static const loomi_ws_handlers ws_handlers = {ws_open, ws_message, ws_close};

/* ------------------------------------------------------------------ start / stop */

int
loomi_api_start(loomi_daemon *d, const char *listen, char **err)
{
	loomi_api *api = loomi_xcalloc(1, sizeof *api);
	loomi_http_options opts = {0};
	int rv;

	api->d = d;
	opts.max_body = MAX_BODY;
	if ((rv = loomi_monitor_start(d, &api->monitor, err)) != 0) {
		free(api);
		return rv;
	}
	if ((rv = loomi_http_start(&api->server, listen, &opts, http_handler, &ws_handlers, api,
	                           err)) != 0) {
		loomi_monitor_stop(api->monitor);
		free(api);
		return rv;
	}
	d->url = loomi_strdup(loomi_http_url(api->server));
	d->api = api;
	return 0;
}

void
loomi_api_stop(loomi_daemon *d)
{
	loomi_api *api = d->api;

	if (api == NULL)
		return;
	loomi_http_stop(api->server);
	loomi_monitor_stop(api->monitor);
	free(api);
	d->api = NULL;
	free(d->url);
	d->url = NULL;
}

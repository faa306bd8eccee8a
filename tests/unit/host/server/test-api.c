/* The API: the routes the module table composes against the OpenAPI
 * document loomd serves (every route documented with its method, every
 * documented operation routed, the WebSocket monitor aside, the document
 * valid JSON, each route's access its operation's x-loom-access); the
 * module table itself (each route once, with what it does; migrations
 * numbered without gaps); and the request pipeline's own answers (404, 405
 * with Allow, 400 for a malformed parameter, trailing slashes, the most
 * specific pattern winning whatever the module order). */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "host/server/api.h"
#include "host/server/auth.h"
#include "host/server/module.h"
#include "testutil.h"

/* "/api/v1/plugins/{instance}" → "/api/v1/plugins/{}": parameter names may differ */
static char *
shape(const char *p)
{
	char *out = strdup(p), *o = out;
	for (; *p; p++) {
		*o++ = *p;
		if (*p == '{') {
			while (*p && *p != '}')
				p++;
			*o++ = '}';
			if (!*p)
				break;
		}
	}
	*o = '\0';
	return out;
}

static bool
documented(const json_t *paths, const char *method, const char *pattern)
{
	const char *key;
	json_t *item;
	char *want = shape(pattern);
	bool found = false;

	json_object_foreach((json_t *)paths, key, item) {
		char *have = shape(key), lower[16];
		size_t i;
		for (i = 0; method[i] && i < sizeof lower - 1; i++)
			lower[i] = (char)(method[i] | 0x20);
		lower[i] = '\0';
		if (strcmp(have, want) == 0 && json_object_get(item, lower))
			found = true;
		free(have);
	}
	free(want);
	return found;
}

START_TEST(every_route_documented)
{
	json_error_t je;
	json_t *doc = json_loads(loomi_openapi_json, 0, &je), *paths;
	const loomi_route *r;
	size_t n = 0;

	ck_assert_msg(doc != NULL, "docs/openapi.json: %s (line %d)", je.text, je.line);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "openapi")), "3.0.3");
	paths = json_object_get(doc, "paths");
	for (size_t i = 0; loomi_api_route(i, &r, NULL); i++, n++)
		ck_assert_msg(documented(paths, r->method, r->pattern),
		              "%s %s is not in docs/openapi.json", r->method, r->pattern);
	ck_assert_int_ge(n, 10);
	json_decref(doc);
}
END_TEST

START_TEST(every_operation_routed)
{
	json_t *doc = json_loads(loomi_openapi_json, 0, NULL), *item, *op;
	const char *key, *verb;

	json_object_foreach(json_object_get(doc, "paths"), key, item) {
		json_object_foreach(item, verb, op) {
			const loomi_route *r;
			char *want = shape(key), upper[16];
			bool routed = false;
			size_t i;
			if (strstr(key, "/monitor"))
				goto next; /* the WebSocket upgrade, not a route */
			for (i = 0; verb[i] && i < sizeof upper - 1; i++)
				upper[i] = (char)(verb[i] & ~0x20);
			upper[i] = '\0';
			for (size_t k = 0; loomi_api_route(k, &r, NULL); k++) {
				char *have = shape(r->pattern);
				routed |= strcmp(have, want) == 0 && strcmp(r->method, upper) == 0;
				free(have);
			}
			ck_assert_msg(routed, "docs/openapi.json documents %s %s, which is not routed", upper,
			              key);
		next:
			free(want);
		}
	}
	json_decref(doc);
}
END_TEST

/* Each route's declared query parameters are the ones docs/openapi.json
 * documents for it ("in": "query"), so the pipeline refuses nothing the
 * document offers and accepts nothing it does not. */
static bool
declares(const char *list, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = list; p && *p;) {
		const char *comma = strchr(p, ','), *end = comma ? comma : p + strlen(p);
		if ((size_t)(end - p) == n && strncmp(p, name, n) == 0)
			return true;
		p = comma ? comma + 1 : NULL;
	}
	return false;
}

START_TEST(query_parameters_documented)
{
	json_t *doc = json_loads(loomi_openapi_json, 0, NULL), *paths = json_object_get(doc, "paths");
	const loomi_route *r;
	const char *module;

	for (size_t i = 0; loomi_api_route(i, &r, &module); i++) {
		json_t *item = NULL, *op, *p;
		const char *key;
		char lower[16], *want = shape(r->pattern);
		size_t k, n_doc = 0, n_declared = 0;

		json_object_foreach(paths, key, p) {
			char *have = shape(key);
			if (strcmp(have, want) == 0)
				item = p;
			free(have);
		}
		free(want);
		for (k = 0; r->method[k] && k < sizeof lower - 1; k++)
			lower[k] = (char)(r->method[k] | 0x20);
		lower[k] = '\0';
		op = json_object_get(item, lower);
		ck_assert_msg(op != NULL, "%s %s is not in docs/openapi.json", r->method, r->pattern);
		json_array_foreach(json_object_get(op, "parameters"), k, p) {
			const char *name = json_string_value(json_object_get(p, "name"));
			if (json_object_get(p, "$ref") || strcmp(json_string_value(json_object_get(p, "in")),
			                                         "query") != 0)
				continue; /* path parameters */
			n_doc++;
			ck_assert_msg(declares(r->query, name),
			              "%s: %s %s: docs/openapi.json documents query parameter \"%s\", "
			              "which the route does not declare",
			              module, r->method, r->pattern, name);
		}
		for (const char *q = r->query; q && *q; q = strchr(q, ',') ? strchr(q, ',') + 1 : NULL)
			n_declared++;
		ck_assert_msg(n_declared == n_doc,
		              "%s: %s %s declares query parameters \"%s\"; docs/openapi.json "
		              "documents %zu",
		              module, r->method, r->pattern, r->query ? r->query : "", n_doc);
	}
	json_decref(doc);
}
END_TEST

/* Who may call each route — its access, which the pipeline checks before
 * the handler runs — is the operation's x-loom-access in docs/openapi.json
 * (docs/api.md's "who may call" column is generated from it), WebSocket
 * routes included. */
static const char *
access_name(int access)
{
	static const char *const names[] = {"public", "read", "write", "admin"};
	return access >= 0 && access < (int)LOOMI_N(names) ? names[access] : "(not a level)";
}

/* The operation of paths documenting method on pattern, or NULL. */
static json_t *
operation(const json_t *paths, const char *method, const char *pattern)
{
	json_t *item = NULL, *p;
	const char *key;
	char lower[16], *want = shape(pattern);
	size_t k;

	json_object_foreach((json_t *)paths, key, p) {
		char *have = shape(key);
		if (strcmp(have, want) == 0)
			item = p;
		free(have);
	}
	free(want);
	for (k = 0; method[k] && k < sizeof lower - 1; k++)
		lower[k] = (char)(method[k] | 0x20);
	lower[k] = '\0';
	return json_object_get(item, lower);
}

/* "" when the operation's x-loom-access names access, else in buf a
 * message naming both. */
static const char *
access_mismatch(const json_t *paths, const char *module, const char *method, const char *pattern,
                int access, char *buf, size_t size)
{
	json_t *op = operation(paths, method, pattern);
	const char *doc = json_string_value(json_object_get(op, "x-loom-access"));

	if (op == NULL)
		snprintf(buf, size, "%s: %s %s is not in docs/openapi.json", module, method, pattern);
	else if (doc == NULL || strcmp(doc, access_name(access)) != 0)
		snprintf(buf, size,
		         "%s: %s %s: the route's access is \"%s\" but docs/openapi.json's x-loom-access "
		         "is %s%s%s (make them agree, then run scripts/gen-api-doc)",
		         module, method, pattern, access_name(access), doc ? "\"" : "",
		         doc ? doc : "missing", doc ? "\"" : "");
	else
		buf[0] = '\0';
	return buf;
}

START_TEST(access_documented)
{
	json_t *doc = json_loads(loomi_openapi_json, 0, NULL), *paths = json_object_get(doc, "paths");
	const loomi_route *r;
	const char *module;
	char msg[512];
	size_t n = 0;

	for (size_t i = 0; loomi_api_route(i, &r, &module); i++, n++)
		ck_assert_msg(!access_mismatch(paths, module, r->method, r->pattern, r->access, msg,
		                               sizeof msg)[0],
		              "%s", msg);
	for (size_t m = 0; m < loomi_n_modules; m++) {
		const loomi_module *mod = loomi_modules[m];
		for (size_t i = 0; i < mod->n_ws_routes; i++, n++)
			ck_assert_msg(!access_mismatch(paths, mod->name, "GET", mod->ws_routes[i].pattern,
			                               mod->ws_routes[i].access, msg, sizeof msg)[0],
			              "%s", msg);
	}
	ck_assert_uint_ge(n, 10);
	json_decref(doc);
}
END_TEST

/* The check fails with both values named: GET /api/v1/health is public,
 * a document saying admin (or saying nothing) does not pass. */
START_TEST(access_mismatch_named)
{
	json_t *doc = json_loads(loomi_openapi_json, 0, NULL), *paths = json_object_get(doc, "paths");
	json_t *op = json_object_get(json_object_get(paths, "/api/v1/health"), "get");
	char msg[512];

	ck_assert_str_eq(access_mismatch(paths, "system", "GET", "/api/v1/health",
	                                 LOOMI_ACCESS_PUBLIC, msg, sizeof msg),
	                 "");
	json_object_set_new(op, "x-loom-access", json_string("admin"));
	access_mismatch(paths, "system", "GET", "/api/v1/health", LOOMI_ACCESS_PUBLIC, msg,
	                sizeof msg);
	ck_assert_msg(strstr(msg, "system: GET /api/v1/health: the route's access is \"public\" but "
	                          "docs/openapi.json's x-loom-access is \"admin\""),
	              "%s", msg);
	json_object_del(op, "x-loom-access");
	access_mismatch(paths, "system", "GET", "/api/v1/health", LOOMI_ACCESS_PUBLIC, msg,
	                sizeof msg);
	ck_assert_msg(strstr(msg, "the route's access is \"public\" but docs/openapi.json's "
	                          "x-loom-access is missing"),
	              "%s", msg);
	json_decref(doc);
}
END_TEST

/* ------------------------------------------------------------------ the module table */

START_TEST(routes_once_with_access)
{
	const loomi_route *r, *q;
	const char *module;

	for (size_t i = 0; loomi_api_route(i, &r, &module); i++) {
		ck_assert_msg(r->fn != NULL, "%s: %s %s has no handler", module, r->method, r->pattern);
		/* public: only the web UI's files (their data comes from the API) */
		ck_assert_msg(r->access == LOOMI_ACCESS_READ || r->access == LOOMI_ACCESS_WRITE ||
		                  r->access == LOOMI_ACCESS_ADMIN || r->access == LOOMI_ACCESS_PUBLIC,
		              "%s: %s %s does not say what it does (access %d)", module, r->method,
		              r->pattern, r->access);
		/* a GET never changes anything */
		if (strcmp(r->method, "GET") == 0)
			ck_assert_msg(r->access == LOOMI_ACCESS_READ || r->access == LOOMI_ACCESS_ADMIN ||
			                  r->access == LOOMI_ACCESS_PUBLIC,
			              "%s: GET %s changes something", module, r->pattern);
		/* GET /metrics sits where Prometheus looks for it; the web UI at / */
		ck_assert_msg(strncmp(r->pattern, "/api/v1/", 8) == 0 ||
		                  strcmp(r->pattern, "/metrics") == 0 || strcmp(module, "web") == 0,
		              "%s: %s is not under /api/v1", module, r->pattern);
		for (size_t j = 0; j < i && loomi_api_route(j, &q, NULL); j++)
			ck_assert_msg(strcmp(r->method, q->method) != 0 ||
			                  strcmp(r->pattern, q->pattern) != 0,
			              "%s %s is routed twice", r->method, r->pattern);
	}
}
END_TEST

START_TEST(modules_named_and_migrations_numbered)
{
	int versions[64] = {0};
	int newest = 0;
	size_t n = 0;

	ck_assert_int_ge(loomi_n_modules, 8);
	for (size_t m = 0; m < loomi_n_modules; m++) {
		const loomi_module *mod = loomi_modules[m];
		ck_assert_msg(mod->name && mod->name[0], "module %zu has no name", m);
		for (size_t k = 0; k < m; k++)
			ck_assert_msg(strcmp(mod->name, loomi_modules[k]->name) != 0,
			              "module \"%s\" is listed twice", mod->name);
		for (size_t i = 0; i < mod->n_migrations; i++) {
			int v = mod->migrations[i].version;
			ck_assert_msg(v >= 1 && v < 64, "%s: migration %d", mod->name, v);
			ck_assert_msg(versions[v]++ == 0, "migration %d is owned twice (%s)", v, mod->name);
			ck_assert(mod->migrations[i].sql && mod->migrations[i].description);
			newest = v > newest ? v : newest;
			n++;
		}
		for (size_t i = 0; i < mod->n_listeners; i++)
			ck_assert_msg(mod->listeners[i].fn && mod->listeners[i].kind > 0 &&
			                  mod->listeners[i].kind < LOOMI_EV_KINDS,
			              "%s: listener %zu", mod->name, i);
	}
	/* 1 … newest, each once: what the store applies in order */
	ck_assert_int_eq((int)n, newest);
	ck_assert_int_eq(loomi_store_schema_version(), newest);
	ck_assert_int_ge(newest, 10);
}
END_TEST

/* ------------------------------------------------------------------ the pipeline */

typedef struct answer {
	int status;
	char *text;
	char *allow;
} answer;

/* A request through loomi_api_handle with a daemon that runs no module:
 * what the pipeline answers by itself, and the routes that need nothing. */
static answer
ask(const char *method, const char *path, const char *query)
{
	static loomi_daemon d;
	loomi_http_req req = {.method = method, .path = path, .query = query ? query : "",
	                      .caller = &loomi_caller_loomd};
	loomi_http_res res = {0};
	answer a;

	loomi_api_handle(&d, &req, &res);
	a.status = res.status;
	a.text = res.body ? json_dumps(res.body, JSON_COMPACT) : res.text;
	if (res.body)
		free(res.text);
	a.allow = res.allow;
	json_decref(res.body);
	return a;
}

static void
answer_free(answer *a)
{
	free(a->text);
	free(a->allow);
}

/* a's status is code and its text has needle (NULL: any); frees a */
static void
expect(int line, answer *a, int code, const char *needle)
{
	ck_assert_msg(a->status == code && (needle == NULL || strstr(a->text, needle)),
	              "line %d: %d %s; expected %d with %s", line, a->status, a->text, code,
	              needle ? needle : "anything");
	answer_free(a);
}
#define EXPECT(a, code, needle) expect(__LINE__, &(a), code, needle)

/* Unknown query parameters are refused with the ones the route takes,
 * before the route runs, as unknown JSON keys are. */
START_TEST(unknown_query_parameters)
{
	answer a;

	a = ask("GET", "/api/v1/logs", "grep=x");
	EXPECT(a, 400, "unknown query parameter \\\"grep\\\" (this route takes: format, level, "
	               "since, until, order, q, job, instance, after, before, limit)");
	a = ask("GET", "/api/v1/logs", "level=info&grep");
	EXPECT(a, 400, "\\\"grep\\\"");
	a = ask("GET", "/api/v1/health", "verbose=1");
	EXPECT(a, 400, "unknown query parameter \\\"verbose\\\" (this route takes none)");
	a = ask("GET", "/api/v1/plugins", "");
	EXPECT(a, 200, NULL);
	/* an encoded name is not the name: the route would not read it */
	a = ask("GET", "/api/v1/runs/best", "%6detric=x");
	EXPECT(a, 400, "\\\"%6detric\\\"");
	/* the route reads the first; a second would pass unread */
	a = ask("GET", "/api/v1/training/tasks", "limit=1&limit=1000");
	EXPECT(a, 400, "query parameter \\\"limit\\\" is given more than once");
	/* empty pieces are nothing */
	a = ask("GET", "/api/v1/plugins", "&&");
	EXPECT(a, 200, NULL);
	/* declared ones reach the route: /runs/export asks for its format */
	a = ask("GET", "/api/v1/runs/export", "ids=1&format=");
	EXPECT(a, 400, "format:");
}
END_TEST

/* As a client on the wire asks: over HTTP/1.1 to a daemon listening on
 * 127.0.0.1:7420, with these headers (NULL: absent). */
typedef struct wire {
	const char *host, *origin, *content_type, *body;
} wire;

static loomi_daemon wire_d;

static answer
ask_wire(const char *method, const char *path, const char *query, wire w)
{
	loomi_http_req req = {.method = method, .path = path, .query = query ? query : "",
	                      .body = w.body ? w.body : "", .body_len = w.body ? strlen(w.body) : 0,
	                      .host = w.host, .origin = w.origin, .content_type = w.content_type,
	                      .version_minor = 1, .caller = &loomi_caller_loomd};
	loomi_http_res res = {0};
	answer a;

	loomi_api_handle(&wire_d, &req, &res);
	a.status = res.status;
	a.text = res.body ? json_dumps(res.body, JSON_COMPACT) : res.text;
	if (res.body)
		free(res.text);
	a.allow = res.allow;
	json_decref(res.body);
	return a;
}

/* The attack that drove loomd from a web page: a text/plain POST (a
 * "simple" request a browser sends cross-site without asking), with a
 * foreign Origin, or with the attacker's Host after DNS rebinding.  Each
 * is refused before any route runs; a same-origin page, curl and loomctl
 * still get through. */
START_TEST(front_door)
{
	const char *spec = "{\"name\": \"x\", \"compute\": \"exec\"}";
	answer a;

	wire_d.conf.listen = "127.0.0.1:7420";
	wire_d.url = "http://127.0.0.1:7420";

	/* Content-Type: a body must be JSON */
	a = ask_wire("POST", "/api/v1/training/tasks", NULL,
	             (wire){"127.0.0.1:7420", NULL, "text/plain", spec});
	EXPECT(a, 415, "Content-Type \\\"text/plain\\\" is not accepted");
	a = ask_wire("POST", "/api/v1/training/tasks", NULL, (wire){"127.0.0.1:7420", NULL, NULL, spec});
	EXPECT(a, 415, "but no Content-Type: send the body as JSON with Content-Type: application/json");
	a = ask_wire("POST", "/api/v1/training/configs/validate", NULL,
	             (wire){"localhost", NULL, "application/json; charset=latin1", spec});
	EXPECT(a, 415, "UTF-8 only");
	a = ask_wire("POST", "/api/v1/training/tasks", NULL,
	             (wire){"localhost", NULL, "application/x-www-form-urlencoded", "a=b"});
	EXPECT(a, 415, "application/x-www-form-urlencoded");
	/* JSON, with or without a UTF-8 charset, passes to the route (which has
	 * no tasks module here: it fails later, not with 415) */
	a = ask_wire("POST", "/api/v1/training/configs/validate", NULL,
	             (wire){"localhost", NULL, "Application/JSON ; charset=\"UTF-8\"", "{"});
	EXPECT(a, 400, "the body is not valid JSON");
	a = ask_wire("POST", "/api/v1/training/configs/validate", NULL,
	             (wire){"localhost", NULL, "application/json", "{"});
	EXPECT(a, 400, "the body is not valid JSON");
	/* an empty body needs no Content-Type (POST …/start, …/end) */
	a = ask_wire("POST", "/api/v1/runs/nope/end", NULL, (wire){"localhost", NULL, NULL, NULL});
	EXPECT(a, 404, "nope");

	/* Host: a name loomd serves, with its port if any */
	a = ask_wire("GET", "/api/v1/health", NULL, (wire){"evil.example", NULL, NULL, NULL});
	EXPECT(a, 421, "Host \\\"evil.example\\\" is not a name this loomd serves (localhost, "
	               "127.0.0.1, ::1, port 7420); reach it by one of those, or add the name to "
	               "server_names in loomd.conf");
	a = ask_wire("POST", "/api/v1/training/tasks", NULL,
	             (wire){"evil.example:7420", NULL, "application/json", spec});
	EXPECT(a, 421, "evil.example:7420");
	a = ask_wire("GET", "/api/v1/health", NULL, (wire){"127.0.0.1:8080", NULL, NULL, NULL});
	EXPECT(a, 421, NULL);
	a = ask_wire("GET", "/api/v1/health", NULL, (wire){"127.0.0.1:7420x", NULL, NULL, NULL});
	EXPECT(a, 421, NULL);
	a = ask_wire("GET", "/api/v1/health", NULL, (wire){"a, localhost", NULL, NULL, NULL});
	EXPECT(a, 400, "more than one Host");
	a = ask_wire("GET", "/api/v1/health", NULL, (wire){NULL, NULL, NULL, NULL});
	EXPECT(a, 400, "no Host header");
	a = ask_wire("GET", "/api/v1/plugins", NULL, (wire){"[::1]:7420", NULL, NULL, NULL});
	EXPECT(a, 200, NULL);
	a = ask_wire("GET", "/api/v1/plugins", NULL, (wire){"LOCALHOST", NULL, NULL, NULL});
	EXPECT(a, 200, NULL);
	a = ask_wire("GET", "/api/v1/plugins", NULL, (wire){"127.0.0.1:7420", NULL, NULL, NULL});
	EXPECT(a, 200, NULL);
	/* an address loomd does not listen on is not one of its names */
	a = ask_wire("GET", "/api/v1/health", NULL, (wire){"10.1.2.3:7420", NULL, NULL, NULL});
	EXPECT(a, 421, NULL);

	/* Origin: a request that changes something must come from loomd's own */
	a = ask_wire("POST", "/api/v1/training/tasks", NULL,
	             (wire){"127.0.0.1:7420", "http://evil.example", "application/json", spec});
	EXPECT(a, 403, "Origin \\\"http://evil.example\\\" is not loomd's own");
	a = ask_wire("POST", "/api/v1/training/tasks/task-1/start", NULL,
	             (wire){"127.0.0.1:7420", "null", NULL, NULL});
	EXPECT(a, 403, "Origin \\\"null\\\"");
	a = ask_wire("DELETE", "/api/v1/alerts/rules/1", NULL,
	             (wire){"127.0.0.1:7420", "http://127.0.0.1:9999", NULL, NULL});
	EXPECT(a, 403, NULL);
	a = ask_wire("POST", "/api/v1/training/tasks/task-1/start", NULL,
	             (wire){"127.0.0.1:7420", "https://127.0.0.1:7420", NULL, NULL});
	EXPECT(a, 403, NULL);
	a = ask_wire("POST", "/api/v1/training/tasks/task-1/start", NULL,
	             (wire){"127.0.0.1:7420", "http://127.0.0.1:7420/x", NULL, NULL});
	EXPECT(a, 403, NULL);
	/* reading is not changing: a foreign page's GET passes (it cannot read
	 * the answer without CORS, which loomd does not send) */
	a = ask_wire("GET", "/api/v1/plugins", NULL,
	             (wire){"127.0.0.1:7420", "http://evil.example", NULL, NULL});
	EXPECT(a, 200, NULL);
	/* loomd's own page */
	a = ask_wire("POST", "/api/v1/training/configs/validate", NULL,
	             (wire){"localhost:7420", "http://localhost:7420", "application/json", "{"});
	EXPECT(a, 400, "the body is not valid JSON");
	a = ask_wire("POST", "/api/v1/runs/nope/end", NULL,
	             (wire){"[::1]:7420", "http://[::1]:7420", NULL, NULL});
	EXPECT(a, 404, "nope");

	/* server_names replaces the default list; "*" serves any name */
	{
		char *names[] = {"loom.example.org", "localhost"};
		wire_d.conf.server_names.v = names;
		wire_d.conf.server_names.n = 2;
		a = ask_wire("GET", "/api/v1/plugins", NULL, (wire){"Loom.Example.Org:7420", NULL, NULL, NULL});
		EXPECT(a, 200, NULL);
		a = ask_wire("GET", "/api/v1/health", NULL, (wire){"127.0.0.1:7420", NULL, NULL, NULL});
		EXPECT(a, 421, "(loom.example.org, localhost, port 7420)");
		a = ask_wire("POST", "/api/v1/runs/nope/end", NULL,
		             (wire){"loom.example.org:7420", "http://localhost:7420", NULL, NULL});
		EXPECT(a, 404, "nope");
		names[1] = "*";
		a = ask_wire("GET", "/api/v1/plugins", NULL, (wire){"anything.example", NULL, NULL, NULL});
		EXPECT(a, 200, NULL);
		/* then a change's Origin must name the very Host it was sent to */
		a = ask_wire("POST", "/api/v1/runs/nope/end", NULL,
		             (wire){"anything.example:7420", "http://anything.example:7420", NULL, NULL});
		EXPECT(a, 404, "nope");
		a = ask_wire("POST", "/api/v1/runs/nope/end", NULL,
		             (wire){"anything.example:7420", "http://evil.example:7420", NULL, NULL});
		EXPECT(a, 403, NULL);
		wire_d.conf.server_names.n = 0;
		wire_d.conf.server_names.v = NULL;
	}
	/* listening on every address: any IP address is a name, other names are not */
	wire_d.conf.listen = "0.0.0.0:7420";
	a = ask_wire("GET", "/api/v1/plugins", NULL, (wire){"10.1.2.3:7420", NULL, NULL, NULL});
	EXPECT(a, 200, NULL);
	a = ask_wire("GET", "/api/v1/plugins", NULL, (wire){"[fe80::1]", NULL, NULL, NULL});
	EXPECT(a, 200, NULL);
	a = ask_wire("GET", "/api/v1/health", NULL, (wire){"evil.example", NULL, NULL, NULL});
	EXPECT(a, 421, "this machine's host name or any of its addresses");
	wire_d.conf.listen = "127.0.0.1:7420";
}
END_TEST

/* The front door with TLS on (loomd's own origin is https://) and for
 * requests through the Unix socket (no port to compare: a local proxy's
 * page passes when its Origin is the very Host it asked). */
START_TEST(front_door_tls_and_socket)
{
	answer a;

	wire_d.conf.listen = "127.0.0.1:7420";
	wire_d.url = "https://127.0.0.1:7420";
	wire_d.conf.api.tls_certificate = "loomd.crt";
	a = ask_wire("POST", "/api/v1/runs/nope/end", NULL,
	             (wire){"localhost:7420", "https://localhost:7420", NULL, NULL});
	EXPECT(a, 404, "nope");
	a = ask_wire("POST", "/api/v1/runs/nope/end", NULL,
	             (wire){"localhost:7420", "http://localhost:7420", NULL, NULL});
	EXPECT(a, 403, "loomd's own is https:// and one of localhost, 127.0.0.1, ::1, port 7420");
	a = ask_wire("POST", "/api/v1/runs/nope/end", NULL,
	             (wire){"localhost:7420", "https://localhost", NULL, NULL});
	EXPECT(a, 403, NULL);
	wire_d.conf.api.tls_certificate = NULL;
	wire_d.url = "http://127.0.0.1:7420";

	{
		static const struct {
			const char *host, *origin;
			int status;
		} cases[] = {
			{"localhost", NULL, 404},                        /* curl --unix-socket */
			{"localhost:8080", "http://localhost:8080", 404}, /* a local proxy's page */
			{"localhost:8080", "https://localhost:8080", 404},
			{"localhost:8080", "http://localhost:3000", 403}, /* another local page */
			{"localhost", "http://evil.example", 403},
			{"evil.example:8080", "http://evil.example:8080", 421}, /* DNS rebinding */
		};
		for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
			loomi_http_req req = {.method = "POST", .path = "/api/v1/runs/nope/end",
			                      .query = "", .body = "", .host = cases[i].host,
			                      .origin = cases[i].origin, .version_minor = 1,
			                      .unix_peer = true, .peer_uid = 1000,
			                      .caller = &loomi_caller_loomd};
			loomi_http_res res = {0};
			loomi_api_handle(&wire_d, &req, &res);
			ck_assert_msg(res.status == cases[i].status, "Host %s, Origin %s: %d, expected %d",
			              cases[i].host, cases[i].origin ? cases[i].origin : "(none)",
			              res.status, cases[i].status);
			json_decref(res.body);
			free(res.text);
			free(res.allow);
			for (int k = 0; k < res.n_headers; k++)
				free(res.headers[k].value);
		}
	}
}
END_TEST

/* Only the predict endpoint takes application/octet-stream (raw f32
 * windows, docs/inference.md); docs/openapi.json documents that body for
 * exactly the routes that declare it; every other route stays JSON-only,
 * and the front door still refuses a foreign page's POST before the body
 * is looked at. */
START_TEST(octet_stream_routes)
{
	json_t *doc = json_loads(loomi_openapi_json, 0, NULL), *paths = json_object_get(doc, "paths");
	const loomi_route *r;
	const char *module;
	size_t n = 0;
	answer a;

	for (size_t i = 0; loomi_api_route(i, &r, &module); i++) {
		json_t *item = NULL, *p, *op;
		const char *key;
		char lower[16], *want = shape(r->pattern);
		size_t k;
		bool doc_binary;

		json_object_foreach(paths, key, p) {
			char *have = shape(key);
			if (strcmp(have, want) == 0)
				item = p;
			free(have);
		}
		free(want);
		for (k = 0; r->method[k] && k < sizeof lower - 1; k++)
			lower[k] = (char)(r->method[k] | 0x20);
		lower[k] = '\0';
		op = json_object_get(item, lower);
		doc_binary = json_object_get(json_object_get(json_object_get(op, "requestBody"), "content"),
		                             "application/octet-stream") != NULL;
		ck_assert_msg(doc_binary == r->octet_stream,
		              "%s: %s %s: .octet_stream is %d but docs/openapi.json %s an "
		              "application/octet-stream body",
		              module, r->method, r->pattern, r->octet_stream,
		              doc_binary ? "documents" : "does not document");
		/* the predict endpoint's windows, and the parts of a dataset's
		 * upload */
		if (r->octet_stream) {
			ck_assert_msg((strcmp(r->method, "POST") == 0 &&
			               strcmp(r->pattern, "/api/v1/models/{name}/predict") == 0) ||
			                  (strcmp(r->method, "PUT") == 0 &&
			                   strcmp(r->pattern,
			                          "/api/v1/datasets/{name}/uploads/{id}/parts/{n}") == 0),
			              "%s %s takes application/octet-stream", r->method, r->pattern);
			n++;
		}
	}
	ck_assert_uint_eq(n, 2);
	json_decref(doc);

	wire_d.conf.listen = "127.0.0.1:7420";
	wire_d.url = "http://127.0.0.1:7420";
	/* another route: still 415, saying JSON */
	a = ask_wire("POST", "/api/v1/training/tasks", NULL,
	             (wire){"127.0.0.1:7420", NULL, "application/octet-stream", "\x01\x02\x03\x04"});
	EXPECT(a, 415, "Content-Type \\\"application/octet-stream\\\" is not accepted: this API "
	               "reads JSON");
	/* the predict route: other types are 415 naming both it takes */
	a = ask_wire("POST", "/api/v1/models/m/predict", NULL,
	             (wire){"127.0.0.1:7420", NULL, "text/plain", "abcd"});
	EXPECT(a, 415, "this route reads JSON or raw f32; send the body with Content-Type: "
	               "application/json or application/octet-stream");
	a = ask_wire("POST", "/api/v1/models/m/predict", NULL, (wire){"127.0.0.1:7420", NULL, NULL, "abcd"});
	EXPECT(a, 415, "(or raw f32 with Content-Type: application/octet-stream)");
	/* a foreign page's binary POST: 403 at the front door (a browser would
	 * not even send it: octet-stream needs a preflight loomd never grants) */
	a = ask_wire("POST", "/api/v1/models/m/predict", NULL,
	             (wire){"127.0.0.1:7420", "http://evil.example", "application/octet-stream", "abcd"});
	EXPECT(a, 403, "Origin \\\"http://evil.example\\\" is not loomd's own");
	/* ... and the preflight itself finds no OPTIONS route: 405, no CORS */
	a = ask_wire("OPTIONS", "/api/v1/models/m/predict", NULL,
	             (wire){"127.0.0.1:7420", "http://evil.example", NULL, NULL});
	EXPECT(a, 405, NULL);
}
END_TEST

START_TEST(pipeline_answers)
{
	answer a;

	a = ask("GET", "/api/v1/nope", NULL);
	ck_assert_int_eq(a.status, 404);
	ck_assert_msg(strstr(a.text, "no such endpoint: GET /api/v1/nope"), "%s", a.text);
	answer_free(&a);

	a = ask("DELETE", "/api/v1/health", NULL);
	ck_assert_int_eq(a.status, 405);
	ck_assert_str_eq(a.allow, "GET, HEAD");
	answer_free(&a);

	/* two GET routes match /api/v1/runs/export (it and /api/v1/runs/{id}):
	 * Allow names GET once */
	a = ask("POST", "/api/v1/runs/export", NULL);
	ck_assert_int_eq(a.status, 405);
	ck_assert_str_eq(a.allow, "GET, HEAD");
	answer_free(&a);

	a = ask("PATCH", "/api/v1/training/tasks", NULL);
	ck_assert_int_eq(a.status, 405);
	ck_assert_str_eq(a.allow, "POST, GET, HEAD");
	answer_free(&a);

	/* trailing slashes are dropped; HEAD is GET */
	a = ask("GET", "/api/v1/plugins/", NULL);
	ck_assert_int_eq(a.status, 200);
	ck_assert_str_eq(a.text, "{\"plugins\":[],\"count\":0}");
	answer_free(&a);
	a = ask("HEAD", "/api/v1/openapi.json", NULL);
	ck_assert_int_eq(a.status, 200);
	answer_free(&a);

	/* a parameter is decoded once, after matching: %2F stays in its segment */
	a = ask("GET", "/api/v1/plugins/a%2Fb", NULL);
	ck_assert_int_eq(a.status, 404);
	ck_assert_msg(strstr(a.text, "no plugin instance \\\"a/b\\\""), "%s", a.text);
	answer_free(&a);
	a = ask("GET", "/api/v1/plugins/a%zz", NULL);
	ck_assert_int_eq(a.status, 400);
	ck_assert_msg(strstr(a.text, "malformed percent-encoding"), "%s", a.text);
	answer_free(&a);
	a = ask("GET", "/api/v1/plugins/a%00b", NULL);
	ck_assert_int_eq(a.status, 400);
	answer_free(&a);
}
END_TEST

/* The most specific pattern wins, not the first module's: the exports
 * module comes after tracking, yet GET /api/v1/runs/export is the export
 * route (which first asks for the format), not GET /api/v1/runs/{id} with
 * id "export". */
START_TEST(most_specific_route_wins)
{
	size_t i_export = 0, i_param = 0;
	const loomi_route *r;
	answer a;

	for (size_t i = 0; loomi_api_route(i, &r, NULL); i++) {
		if (strcmp(r->method, "GET") == 0 && strcmp(r->pattern, "/api/v1/runs/export") == 0)
			i_export = i;
		if (strcmp(r->method, "GET") == 0 && strcmp(r->pattern, "/api/v1/runs/{id}") == 0)
			i_param = i;
	}
	ck_assert_msg(i_export > i_param, "the table no longer lists /runs/{id} first; the test "
	                                  "needs another pair");
	a = ask("GET", "/api/v1/runs/export", NULL);
	ck_assert_int_eq(a.status, 400);
	ck_assert_msg(strstr(a.text, "format: give the format to export to"), "%s", a.text);
	answer_free(&a);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("api");
	TCase *tc = tcase_create("openapi");
	tcase_add_test(tc, every_route_documented);
	tcase_add_test(tc, every_operation_routed);
	tcase_add_test(tc, query_parameters_documented);
	tcase_add_test(tc, access_documented);
	tcase_add_test(tc, access_mismatch_named);
	suite_add_tcase(s, tc);
	tc = tcase_create("modules");
	tcase_add_test(tc, routes_once_with_access);
	tcase_add_test(tc, modules_named_and_migrations_numbered);
	suite_add_tcase(s, tc);
	tc = tcase_create("pipeline");
	tcase_add_test(tc, pipeline_answers);
	tcase_add_test(tc, most_specific_route_wins);
	tcase_add_test(tc, front_door);
	tcase_add_test(tc, front_door_tls_and_socket);
	tcase_add_test(tc, octet_stream_routes);
	tcase_add_test(tc, unknown_query_parameters);
	suite_add_tcase(s, tc);
	return tu_run(s);
}

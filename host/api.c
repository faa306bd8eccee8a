/* The REST API: an NNG HTTP server with one tree handler that routes every
 * request through the table below, so unknown paths and wrong methods get
 * JSON errors like every other failure. */
#include "config.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include "api.h"
#include "log.h"
#include "util.h"

#define MAX_BODY (16u << 20)

struct loomi_api {
	nng_http_server *server;
	nng_http_handler *handler;
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

static const route routes[] = {
	{"GET", "/api/v1/health", get_health},
	{"GET", "/api/v1/plugins", get_plugins},
	{"GET", "/api/v1/plugins/{instance}", get_plugin},
};

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
http_cb(nng_aio *aio)
{
	nng_http_req *hreq = nng_aio_get_input(aio, 0);
	nng_http_handler *h = nng_aio_get_input(aio, 1);
	loomi_api *api = nng_http_handler_get_data(h);
	const char *uri = nng_http_req_get_uri(hreq);
	const char *q = strchr(uri, '?');
	loomi_http_req req = {0};
	loomi_http_res res = {0};
	nng_http_res *hres;
	void *body;
	size_t body_len;
	char *path, *text = NULL;
	uint64_t t0 = loomi_mono_ns();

	nng_http_req_get_data(hreq, &body, &body_len);
	req.method = nng_http_req_get_method(hreq);
	req.query = q ? q + 1 : "";
	req.body = body;
	req.body_len = body_len;
	/* Routes match the path as sent; each {param} is decoded once, after
	 * matching, so an encoded '/' or '%' stays inside its segment. */
	path = loomi_strndup(uri, q ? (size_t)(q - uri) : strlen(uri));
	{
		/* Collapse a trailing slash so /api/v1/plugins/ finds its route. */
		size_t n = strlen(path);
		while (n > 1 && path[n - 1] == '/')
			path[--n] = '\0';
	}
	req.path = path;
	route_request(api->d, &req, &res);

	if (res.status == 0) {
		LOG_ERROR("http %s %s: the route set no status (a bug)", req.method, uri);
		loomi_api_error(&res, 500, "internal", "the server failed to answer this request");
	}
	if (nng_http_res_alloc(&hres) != 0) {
		nng_aio_finish(aio, NNG_ENOMEM);
		goto out;
	}
	nng_http_res_set_status(hres, (uint16_t)res.status);
	if (res.body)
		text = json_dumps(res.body, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (text) {
		nng_http_res_set_header(hres, "Content-Type", "application/json");
		nng_http_res_copy_data(hres, text, strlen(text));
	} else if (res.text) {
		nng_http_res_set_header(hres, "Content-Type", res.content_type);
		nng_http_res_copy_data(hres, res.text, res.text_len);
	} else {
		/* never a response without a body (and its Content-Length) */
		static const char fallback[] =
			"{\"error\":{\"code\":\"internal\",\"message\":\"the server could not "
			"encode its answer\"}}";
		nng_http_res_set_header(hres, "Content-Type", "application/json");
		nng_http_res_copy_data(hres, fallback, sizeof fallback - 1);
	}
	if (res.allow)
		nng_http_res_set_header(hres, "Allow", res.allow);
	nng_http_res_set_header(hres, "Cache-Control", "no-store");
	/* Log before finishing: the request (uri, method) belongs to the
	 * connection and is reused as soon as the response is handed over. */
	if (loomi_log_enabled(LOOM_LOG_DEBUG))
		LOG_DEBUG("http %s %s -> %d (%.3f ms)", req.method, uri, res.status,
		          (double)(loomi_mono_ns() - t0) / 1e6);
	nng_aio_set_output(aio, 0, hres);
	nng_aio_finish(aio, 0);
out:
	free(text);
	free(path);
	json_decref(res.body);
	free(res.text);
	free(res.allow);
}

/* ------------------------------------------------------------------ start / stop */

int
loomi_api_start(loomi_daemon *d, const char *listen, char **err)
{
	loomi_api *api = loomi_xcalloc(1, sizeof *api);
	char *urltext = loomi_strfmt("http://%s", listen);
	nng_url *url = NULL;
	nng_sockaddr sa;
	int rv;

	api->d = d;
	if ((rv = nng_url_parse(&url, urltext)) != 0) {
		*err = loomi_strfmt("listen: cannot use \"%s\": %s", listen, nng_strerror(rv));
		goto fail;
	}
	if ((rv = nng_http_server_hold(&api->server, url)) != 0) {
		*err = loomi_strfmt("cannot create the HTTP server on %s: %s", listen,
		                    nng_strerror(rv));
		goto fail;
	}
	if ((rv = nng_http_handler_alloc(&api->handler, "/", http_cb)) != 0 ||
	    (rv = nng_http_handler_set_method(api->handler, NULL)) != 0 ||
	    (rv = nng_http_handler_set_tree(api->handler)) != 0 ||
	    (rv = nng_http_handler_collect_body(api->handler, true, MAX_BODY)) != 0 ||
	    (rv = nng_http_handler_set_data(api->handler, api, NULL)) != 0 ||
	    (rv = nng_http_server_add_handler(api->server, api->handler)) != 0) {
		*err = loomi_strfmt("cannot set up the HTTP handlers: %s", nng_strerror(rv));
		if (api->handler)
			nng_http_handler_free(api->handler);
		api->handler = NULL;
		goto fail;
	}
	if ((rv = nng_http_server_start(api->server)) != 0) {
		*err = loomi_strfmt("cannot listen on %s: %s%s", listen, nng_strerror(rv),
		                    rv == NNG_EADDRINUSE
		                        ? "; another process holds that port: stop it or choose "
		                          "another with --listen"
		                        : "");
		goto fail;
	}
	if (nng_http_server_get_addr(api->server, &sa) == 0 && sa.s_family == NNG_AF_INET) {
		char host[64];
		const uint8_t *a = (const uint8_t *)&sa.s_in.sa_addr;
		snprintf(host, sizeof host, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
		d->url = loomi_strfmt("http://%s:%u", strcmp(host, "0.0.0.0") ? host : "127.0.0.1",
		                      (unsigned)ntohs(sa.s_in.sa_port));
	} else if (nng_http_server_get_addr(api->server, &sa) == 0 &&
	           sa.s_family == NNG_AF_INET6) {
		char host[INET6_ADDRSTRLEN];
		static const uint8_t any[16];
		if (inet_ntop(AF_INET6, sa.s_in6.sa_addr, host, sizeof host) == NULL)
			snprintf(host, sizeof host, "::1");
		d->url = loomi_strfmt("http://[%s]:%u",
		                      memcmp(sa.s_in6.sa_addr, any, 16) ? host : "::1",
		                      (unsigned)ntohs(sa.s_in6.sa_port));
	} else {
		d->url = loomi_strdup(urltext);
	}
	nng_url_free(url);
	free(urltext);
	d->api = api;
	return 0;
fail:
	if (api->server)
		nng_http_server_release(api->server);
	if (url)
		nng_url_free(url);
	free(urltext);
	free(api);
	return LOOM_EIO;
}

void
loomi_api_stop(loomi_daemon *d)
{
	loomi_api *api = d->api;

	if (api == NULL)
		return;
	nng_http_server_stop(api->server);
	nng_http_server_release(api->server);
	free(api);
	d->api = NULL;
	free(d->url);
	d->url = NULL;
}

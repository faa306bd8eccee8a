/* The REST API's request pipeline (api.h says its steps): Loom's HTTP
 * server (http.c) hands every request to loomi_api_handle, which matches it
 * against the routes of the module table (module.h), so unknown paths and
 * wrong methods get JSON errors like every other failure; WebSocket
 * upgrades go to the modules' WebSocket routes the same way. */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/core/log.h"
#include "host/core/util.h"
#include "api.h"
#include "http.h"
#include "module.h"

#define MAX_BODY (16u << 20)

struct loomi_api {
	loomi_http_server *server;
	loomi_daemon *d;
};

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

/* ------------------------------------------------------------------ helpers for routes */

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

static int
status_of(int rv)
{
	switch (rv) {
	case LOOM_EINVAL: return 400;
	case LOOM_ENOENT: return 404;
	case LOOM_EEXIST: return 409;
	case LOOM_EIO: return 503; /* the store could not write (store.h): retry later */
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
	case LOOM_EIO: return "unavailable";
	default: return "internal";
	}
}

/* A service call's outcome as the answer: out with status ok, or the error. */
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

/* ------------------------------------------------------------------ the route table */

bool
loomi_api_route(size_t i, const loomi_route **route, const char **module)
{
	for (size_t m = 0; m < loomi_n_modules; m++) {
		if (i < loomi_modules[m]->n_routes) {
			*route = &loomi_modules[m]->routes[i];
			if (module)
				*module = loomi_modules[m]->name;
			return true;
		}
		i -= loomi_modules[m]->n_routes;
	}
	return false;
}

/* ------------------------------------------------------------------ the pipeline */

/* Is pattern a more specific than b, both matching one path?  At the first
 * segment where they differ a literal beats a {parameter}, so
 * /api/v1/runs/compare wins over /api/v1/runs/{id} whatever the order of
 * the modules. */
static bool
more_specific(const char *a, const char *b)
{
	while (*a && *b) {
		bool pa = *a == '{', pb = *b == '{';
		if (pa != pb)
			return !pa;
		a = strchr(a, '/');
		b = strchr(b, '/');
		if (a == NULL || b == NULL)
			break;
		a++;
		b++;
	}
	return false;
}

/* Step 3: the route for req: of the routes whose pattern matches the path
 * and whose method is the request's, the most specific.  Its {…}
 * parameters are decoded into params (free them).  NULL after setting a
 * 404, a 405 (Allow: every method the path takes) or a 400. */
static const loomi_route *
find_route(loomi_http_req *req, char *params[4], loomi_http_res *res)
{
	loomi_strv allowed = {0};
	const char *method = strcmp(req->method, "HEAD") == 0 ? "GET" : req->method;
	const loomi_route *r, *best = NULL;
	loomi_http_req m, best_m = {0};

	for (size_t i = 0; loomi_api_route(i, &r, NULL); i++) {
		m = *req;
		if (!match(r->pattern, req->path, &m))
			continue;
		if (strcmp(r->method, method) != 0) {
			bool seen = false;
			for (size_t k = 0; k < allowed.n; k++)
				seen |= strcmp(allowed.v[k], r->method) == 0;
			if (!seen)
				loomi_strv_push(&allowed, loomi_strdup(r->method));
			continue;
		}
		if (best == NULL || more_specific(r->pattern, best->pattern)) {
			best = r;
			best_m = m;
		}
	}
	if (best) {
		loomi_strv_free(&allowed);
		/* each {param} is decoded once, after matching, so an encoded '/'
		 * or '%' stays inside its segment */
		for (size_t k = 0; k < best_m.n_params; k++) {
			const char *seg = best_m.params[k], *end = strchr(seg, '/');
			params[k] = url_decode(seg, end ? (size_t)(end - seg) : strlen(seg));
			if (params[k] == NULL) {
				loomi_api_error(res, 400, "bad_request", "malformed percent-encoding in %s",
				                req->path);
				return NULL;
			}
			req->params[k] = params[k];
		}
		req->n_params = best_m.n_params;
		return best;
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
	return NULL;
}

void
loomi_api_handle(loomi_daemon *d, const loomi_http_req *in, loomi_http_res *res)
{
	loomi_http_req req = *in;
	const loomi_route *route;
	char *params[4] = {0};
	char *path;
	size_t n;

	/* Step 2: a trailing slash is collapsed so /api/v1/plugins/ finds its
	 * route.  Routes match the path as sent. */
	path = loomi_strdup(in->path);
	n = strlen(path);
	while (n > 1 && path[n - 1] == '/')
		path[--n] = '\0';
	req.path = path;
	req.n_params = 0;

	/* Step 3, then the handler. */
	if ((route = find_route(&req, params, res)) != NULL)
		route->fn(d, &req, res);
	for (size_t k = 0; k < 4; k++)
		free(params[k]);
	free(path);
}

/* ------------------------------------------------------------------ HTTP */

static void
http_handler(void *arg, const loomi_http_request *hreq, loomi_http_response *hres)
{
	loomi_api *api = arg;
	loomi_http_req req = {0};
	loomi_http_res res = {0};
	char *text = NULL;
	uint64_t t0 = loomi_mono_ns();

	req.method = hreq->method;
	req.path = hreq->path;
	req.query = hreq->query;
	req.body = hreq->body;
	req.body_len = hreq->body_len;
	loomi_api_handle(api->d, &req, &res);

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
	json_decref(res.body);
	free(res.text);
	free(res.allow);
}

/* ------------------------------------------------------------------ WebSocket */

/* The WebSocket route for path, or NULL. */
static const loomi_ws_route *
find_ws_route(const char *path)
{
	for (size_t m = 0; m < loomi_n_modules; m++) {
		for (size_t i = 0; i < loomi_modules[m]->n_ws_routes; i++) {
			loomi_http_req scratch = {0};
			const loomi_ws_route *r = &loomi_modules[m]->ws_routes[i];
			if (match(r->pattern, path, &scratch))
				return r;
		}
	}
	return NULL;
}

static int
ws_open(void *arg, loomi_ws *ws, const loomi_http_request *req, loomi_http_response *res)
{
	loomi_api *api = arg;
	const loomi_ws_route *r = find_ws_route(req->path);
	int status;

	if (r == NULL) {
		/* where they are served: every WebSocket pattern */
		loomi_strv where = {0};
		char *list, *body;
		json_t *o;
		for (size_t m = 0; m < loomi_n_modules; m++)
			for (size_t i = 0; i < loomi_modules[m]->n_ws_routes; i++)
				loomi_strv_push(&where, loomi_strdup(loomi_modules[m]->ws_routes[i].pattern));
		list = loomi_strv_join(&where, ", ");
		body = loomi_strfmt("WebSockets are served at %s", list);
		o = json_pack("{s:{s:s, s:s}}", "error", "code", "not_found", "message", body);
		res->status = 404;
		res->body = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		res->body_len = strlen(res->body);
		json_decref(o);
		free(body);
		free(list);
		loomi_strv_free(&where);
		return 404;
	}
	if ((status = r->on_open(api->d, ws, req, res)) == 0)
		loomi_ws_set_owner(ws, r);
	return status;
}

static void
ws_message(void *arg, loomi_ws *ws, const char *data, size_t len, bool text)
{
	const loomi_ws_route *r = loomi_ws_get_owner(ws);
	if (r)
		r->on_message(((loomi_api *)arg)->d, ws, data, len, text);
}

static void
ws_close(void *arg, loomi_ws *ws)
{
	const loomi_ws_route *r = loomi_ws_get_owner(ws);
	if (r)
		r->on_close(((loomi_api *)arg)->d, ws);
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
	if ((rv = loomi_http_start(&api->server, listen, &opts, http_handler, &ws_handlers, api,
	                           err)) != 0) {
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
	free(api);
	d->api = NULL;
	free(d->url);
	d->url = NULL;
}

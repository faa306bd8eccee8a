/* The REST API's request pipeline (api.h says its steps): Loom's HTTP
 * server (http.c) hands every request to loomi_api_handle, which matches it
 * against the routes of the module table (module.h), so unknown paths and
 * wrong methods get JSON errors like every other failure; WebSocket
 * upgrades go to the modules' WebSocket routes the same way. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "host/core/log.h"
#include "host/core/util.h"
#include "api-stats.h"
#include "api.h"
#include "auth.h"
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
	case LOOM_EPERM: return 403;
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
	case LOOM_EPERM: return "forbidden";
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

/* ------------------------------------------------------------------ step 2: the front door */

/* Split an authority ("name", "name:port", "[v6]", "[v6]:port") into its
 * name (lower case, brackets dropped) and port (-1 when none); false when
 * it is not one. */
static bool
split_authority(const char *a, char *name, size_t size, long *port)
{
	const char *end, *colon = NULL;
	bool bracketed = a[0] == '[';
	size_t n;

	*port = -1;
	if (bracketed) {
		if ((end = strchr(a, ']')) == NULL)
			return false;
		a++;
		n = (size_t)(end - a);
		if (end[1] == ':')
			colon = end + 1;
		else if (end[1] != '\0')
			return false;
	} else {
		colon = strchr(a, ':');
		if (colon && strchr(colon + 1, ':'))
			return false; /* an IPv6 address needs its brackets */
		n = colon ? (size_t)(colon - a) : strlen(a);
	}
	if (n == 0 || n >= size)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)a[i];
		if (!(isalnum(c) || c == '-' || c == '.' || c == '_' || (c == ':' && bracketed)))
			return false;
		name[i] = (char)tolower(c);
	}
	name[n] = '\0';
	if (colon) {
		char *e;
		if (!isdigit((unsigned char)colon[1]) || strlen(colon + 1) > 5)
			return false;
		*port = strtol(colon + 1, &e, 10);
		if (*e != '\0' || *port > 65535)
			return false;
	}
	return true;
}

static bool
ip_literal(const char *name)
{
	unsigned char buf[16];
	return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

/* The listen address's host, lower case without brackets, and whether it
 * is a wildcard ("*", 0.0.0.0, ::). */
static void
listen_host(const loomi_daemon *d, char *host, size_t size, bool *wildcard)
{
	const char *l = d->conf.listen ? d->conf.listen : "127.0.0.1:7420";
	long port;

	host[0] = '\0';
	if (!split_authority(l, host, size, &port))
		host[0] = '\0';
	*wildcard = strcmp(l, "*") == 0 || strncmp(l, "*:", 2) == 0 ||
	            strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
}

/* The port loomd answers on: the one bound (d->url), else the one asked
 * for in listen; -1 when neither is known (an in-process daemon) or it is
 * 0 and not yet bound.  d->url is set once the server listens, while the
 * first requests may already be answered: read it atomically. */
static long
served_port(const loomi_daemon *d)
{
	const char *url = __atomic_load_n(&d->url, __ATOMIC_ACQUIRE);
	const char *src = url ? url : d->conf.listen, *colon;
	long port;

	if (src == NULL || (colon = strrchr(src, ':')) == NULL || !isdigit((unsigned char)colon[1]))
		return -1;
	port = strtol(colon + 1, NULL, 10);
	return port > 0 ? port : -1;
}

/* Is name (split_authority's form) one that loomd serves? */
static bool
served_name(const loomi_daemon *d, const char *name)
{
	char host[256], self[256];
	bool wildcard;

	if (d->conf.server_names.n > 0) {
		for (size_t i = 0; i < d->conf.server_names.n; i++)
			if (strcmp(d->conf.server_names.v[i], "*") == 0 ||
			    strcmp(d->conf.server_names.v[i], name) == 0)
				return true;
		return false;
	}
	listen_host(d, host, sizeof host, &wildcard);
	if (strcmp(name, "localhost") == 0 || strcmp(name, "127.0.0.1") == 0 ||
	    strcmp(name, "::1") == 0 || (host[0] && strcmp(name, host) == 0))
		return true;
	if (!wildcard)
		return false;
	/* on every address: any address a client may use, and this machine's name */
	if (ip_literal(name))
		return true;
	if (gethostname(self, sizeof self) == 0) {
		self[sizeof self - 1] = '\0';
		for (char *p = self; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		return strcmp(name, self) == 0;
	}
	return false;
}

/* The names served, for messages: "127.0.0.1, localhost, ::1". */
static char *
served_list(const loomi_daemon *d)
{
	char host[256];
	bool wildcard;

	if (d->conf.server_names.n > 0)
		return loomi_strv_join(&d->conf.server_names, ", ");
	listen_host(d, host, sizeof host, &wildcard);
	if (wildcard)
		return loomi_strdup("localhost, this machine's host name or any of its addresses");
	if (host[0] && strcmp(host, "localhost") && strcmp(host, "127.0.0.1") && strcmp(host, "::1"))
		return loomi_strfmt("%s, localhost, 127.0.0.1, ::1", host);
	return loomi_strdup("localhost, 127.0.0.1, ::1");
}

/* Does server_names serve any name ("*")? */
static bool
serves_any(const loomi_daemon *d)
{
	for (size_t i = 0; i < d->conf.server_names.n; i++)
		if (strcmp(d->conf.server_names.v[i], "*") == 0)
			return true;
	return false;
}

/* Does an authority name loomd: a served name, and loomd's port if it
 * gives one?  default_port stands for a missing one (80 for an Origin,
 * -1 for a Host, where a missing port is not checked); ANY_PORT: the port
 * is not checked (the Unix socket has none). */
#define ANY_PORT (-2)

static bool
is_served(const loomi_daemon *d, const char *authority, long default_port)
{
	char name[256];
	long port, mine = served_port(d);

	if (!split_authority(authority, name, sizeof name, &port) || !served_name(d, name))
		return false;
	if (default_port == ANY_PORT)
		return true;
	if (port < 0)
		port = default_port;
	return port < 0 || mine < 0 || port == mine;
}

/* Only GET, HEAD and OPTIONS change nothing. */
static bool
state_changing(const char *method)
{
	return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 &&
	       strcmp(method, "OPTIONS") != 0;
}

/* Does loomd serve HTTPS (api.tls)?  Then its own origin is https://. */
static bool
tls_on(const loomi_daemon *d)
{
	return d->conf.api.tls_certificate != NULL;
}

/* Step 2 for req (a WebSocket upgrade when upgrade): false after setting
 * the refusal. */
static bool
front_door(const loomi_daemon *d, const loomi_http_req *req, bool upgrade, loomi_http_res *res)
{
	long port = served_port(d);
	char *list, on[32] = "";

	if (req->host == NULL) {
		if (req->version_minor >= 1) {
			loomi_api_error(res, 400, "bad_request",
			                "the request has no Host header: HTTP/1.1 needs one; send "
			                "Host: with the name and port you reach loomd by");
			return false;
		}
	} else if (strchr(req->host, ',') != NULL) {
		loomi_api_error(res, 400, "bad_request",
		                "the request has more than one Host (\"%.200s\"): send one", req->host);
		return false;
	} else if (!is_served(d, req->host, req->unix_peer ? ANY_PORT : -1)) {
		list = served_list(d);
		if (port > 0)
			snprintf(on, sizeof on, ", port %ld", port);
		loomi_api_error(res, 421, "misdirected_request",
		                "Host \"%.200s\" is not a name this loomd serves (%s%s); reach it by "
		                "one of those, or add the name to server_names in loomd.conf",
		                req->host, list, on);
		free(list);
		return false;
	}
	if (req->origin && (upgrade || state_changing(req->method))) {
		/* where server_names serves any name ("*"), any site's name is
		 * "served": then only a page of the very name and port asked
		 * (same origin) is loomd's own */
		const char *scheme = tls_on(d) ? "https://" : "http://";
		size_t sl = strlen(scheme);
		bool own;
		if (req->unix_peer) {
			/* through the Unix socket (a local proxy's page): the page's
			 * own origin, http or https, whatever the port: the very name
			 * and port of the Host asked */
			const char *o = req->origin;
			sl = strncasecmp(o, "https://", 8) == 0 ? 8 : strncasecmp(o, "http://", 7) == 0 ? 7 : 0;
			own = sl > 0 && strchr(o + sl, '/') == NULL && is_served(d, o + sl, ANY_PORT) &&
			      req->host && strcasecmp(o + sl, req->host) == 0;
		} else {
			own = strncasecmp(req->origin, scheme, sl) == 0 &&
			      strchr(req->origin + sl, '/') == NULL &&
			      is_served(d, req->origin + sl, tls_on(d) ? 443 : 80) &&
			      (!serves_any(d) ||
			       (req->host && strcasecmp(req->origin + sl, req->host) == 0));
		}
		if (!own) {
			list = served_list(d);
			if (port > 0)
				snprintf(on, sizeof on, ", port %ld", port);
			loomi_api_error(res, 403, "forbidden",
			                "Origin \"%.200s\" is not loomd's own: a page from another site "
			                "may not %s (loomd's own is %s and one of %s%s; server_names "
			                "in loomd.conf lists the names)",
			                req->origin,
			                upgrade ? "open a WebSocket to loomd" : "change anything here",
			                req->unix_peer ? "the Host's own origin" : scheme, list,
			                req->unix_peer ? "" : on);
			free(list);
			return false;
		}
	}
	return true;
}

/* ------------------------------------------------------------------ step 5: what the route takes */

/* Is key (klen bytes) one of the comma-separated names in list? */
static bool
declared(const char *list, const char *key, size_t klen)
{
	for (const char *p = list; p && *p;) {
		const char *comma = strchr(p, ','), *end = comma ? comma : p + strlen(p);
		if ((size_t)(end - p) == klen && strncmp(p, key, klen) == 0)
			return true;
		p = comma ? comma + 1 : NULL;
	}
	return false;
}

/* "a,b,c" as "a, b, c"; NULL for none. */
static char *
comma_list(const char *list)
{
	char *out, *o;

	if (list == NULL || *list == '\0')
		return NULL;
	o = out = loomi_xmalloc(2 * strlen(list) + 1);
	for (const char *p = list; *p; p++) {
		*o++ = *p;
		if (*p == ',')
			*o++ = ' ';
	}
	*o = '\0';
	return out;
}

/* Every parameter of query is one that list declares, each once; false
 * after setting a 400 naming the first that is not. */
static bool
query_ok(const char *list, const char *query, loomi_http_res *res)
{
	for (const char *p = query; p && *p;) {
		const char *amp = strchr(p, '&'), *end = amp ? amp : p + strlen(p);
		const char *eq = memchr(p, '=', (size_t)(end - p));
		size_t klen = (size_t)((eq ? eq : end) - p);

		if (end == p) { /* "a=1&&b=2", a trailing '&' */
			p = amp ? amp + 1 : NULL;
			continue;
		}
		if (!declared(list, p, klen)) {
			char *takes = comma_list(list);
			loomi_api_error(res, 400, "bad_request",
			                "unknown query parameter \"%.*s\" (this route takes%s%s)",
			                (int)(klen > 100 ? 100 : klen), p, takes ? ": " : " none",
			                takes ? takes : "");
			free(takes);
			return false;
		}
		/* the handlers read the first; a second would be ignored */
		for (const char *q = amp ? amp + 1 : NULL; q && *q;) {
			const char *qa = strchr(q, '&'), *qe = qa ? qa : q + strlen(q);
			const char *qeq = memchr(q, '=', (size_t)(qe - q));
			if ((size_t)((qeq ? qeq : qe) - q) == klen && strncmp(q, p, klen) == 0) {
				loomi_api_error(res, 400, "bad_request",
				                "query parameter \"%.*s\" is given more than once: give it "
				                "once", (int)(klen > 100 ? 100 : klen), p);
				return false;
			}
			q = qa ? qa + 1 : NULL;
		}
		p = amp ? amp + 1 : NULL;
	}
	return true;
}

/* Is the media type of ct (its parameters aside) type, case-insensitively? */
static bool
media_type_is(const char *ct, const char *type)
{
	size_t n = strcspn(ct, ";");
	while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	return n == strlen(type) && strncasecmp(ct, type, n) == 0;
}

/* A non-empty body must be JSON, as the routes read it, or, for a route
 * that declares it (.octet_stream: the predict endpoint's windows as raw
 * f32), application/octet-stream; false after setting a 415.
 *
 * No CSRF hole: a page on another site can make a browser POST without
 * asking first only with the CORS-safelisted types (text/plain,
 * application/x-www-form-urlencoded, multipart/form-data), all refused
 * here.  application/octet-stream is not one: the browser first sends an
 * OPTIONS preflight, which loomd answers 405 without any
 * Access-Control-Allow-* header, so the POST is never sent; and were it
 * sent, its foreign Origin is refused at step 2 (403) before this step. */
static bool
body_type_ok(const loomi_http_req *req, const loomi_route *route, loomi_http_res *res)
{
	const char *ct = req->content_type, *p;

	if (req->body_len == 0)
		return true;
	if (ct == NULL) {
		loomi_api_error(res, 415, "unsupported_media_type",
		                "the request has a %zu-byte body but no Content-Type: send the body as "
		                "JSON with Content-Type: application/json%s",
		                req->body_len,
		                route->octet_stream ? " (or raw f32 with Content-Type: "
		                                      "application/octet-stream)"
		                                    : "");
		return false;
	}
	if (route->octet_stream && media_type_is(ct, "application/octet-stream"))
		return true;
	if (!media_type_is(ct, "application/json")) {
		loomi_api_error(res, 415, "unsupported_media_type",
		                "Content-Type \"%.200s\" is not accepted: %s; send the body with "
		                "Content-Type: application/json%s",
		                ct,
		                route->octet_stream ? "this route reads JSON or raw f32"
		                                    : "this API reads JSON",
		                route->octet_stream ? " or application/octet-stream" : "");
		return false;
	}
	/* parameters: a charset must be UTF-8, the only one JSON has (RFC 8259) */
	for (p = strchr(ct, ';'); p; p = strchr(p + 1, ';')) {
		const char *name = p + 1, *eq, *v;
		size_t vn;
		while (*name == ' ' || *name == '\t')
			name++;
		eq = strchr(name, '=');
		if (eq == NULL || (size_t)(eq - name) != 7 || strncasecmp(name, "charset", 7) != 0)
			continue;
		v = eq + 1;
		vn = strcspn(v, ";");
		while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
			vn--;
		if (vn >= 2 && v[0] == '"' && v[vn - 1] == '"') {
			v++;
			vn -= 2;
		}
		if (vn != 5 || strncasecmp(v, "utf-8", 5) != 0) {
			loomi_api_error(res, 415, "unsupported_media_type",
			                "Content-Type \"%.200s\": JSON is read as UTF-8 only; send "
			                "charset=utf-8 or no charset",
			                ct);
			return false;
		}
	}
	return true;
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

/* Step 4: the route for req: of the routes whose pattern matches the path
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
	loomi_caller caller;
	char *params[4] = {0};
	char *path;
	size_t n;

	/* Step 2: the front door, before anything else is looked at. */
	if (!front_door(d, in, false, res))
		return;

	/* Step 3: a trailing slash is collapsed so /api/v1/plugins/ finds its
	 * route.  Routes match the path as sent. */
	path = loomi_strdup(in->path);
	n = strlen(path);
	while (n > 1 && path[n - 1] == '/')
		path[--n] = '\0';
	req.path = path;
	req.n_params = 0;

	/* Steps 4 to 7, then the handler. */
	if ((res->route = route = find_route(&req, params, res)) != NULL &&
	    query_ok(route->query, req.query, res) && body_type_ok(&req, route, res) &&
	    loomi_auth_check(d, &req, route->access, &caller, res)) {
		req.caller = &caller;
		route->fn(d, &req, res);
	}
	for (size_t k = 0; k < 4; k++)
		free(params[k]);
	free(path);
}

/* Does the reserve serve method path (http.h's reserved callback)?  Its
 * route says so, found as step 3 finds it (HEAD as GET, a trailing slash
 * dropped). */
static bool
route_reserved(void *arg, const char *method, const char *path)
{
	loomi_http_req req = {.method = method};
	const loomi_route *r, *best = NULL;
	char *p = loomi_strdup(path);
	size_t n = strlen(p);

	(void)arg;
	if (strcmp(method, "HEAD") == 0)
		method = "GET";
	while (n > 1 && p[n - 1] == '/')
		p[--n] = '\0';
	for (size_t i = 0; loomi_api_route(i, &r, NULL); i++) {
		loomi_http_req m = req;
		if (strcmp(r->method, method) == 0 && match(r->pattern, p, &m) &&
		    (best == NULL || more_specific(r->pattern, best->pattern)))
			best = r;
	}
	free(p);
	return best != NULL && best->reserve;
}

/* ------------------------------------------------------------------ HTTP */

/* The host a request names (free it): an absolute-form target's authority
 * ("GET http://host:port/x"), which RFC 9112 says wins over Host, else the
 * Host header; NULL when neither. */
static char *
request_host(const loomi_http_request *hreq)
{
	const char *t = hreq->target, *h;

	if (strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0) {
		t = strstr(t, "://") + 3;
		return loomi_strndup(t, strcspn(t, "/?"));
	}
	h = loomi_http_header(hreq, "Host");
	return h ? loomi_strdup(h) : NULL;
}

static void
http_handler(void *arg, const loomi_http_request *hreq, loomi_http_response *hres)
{
	loomi_api *api = arg;
	loomi_http_req req = {0};
	loomi_http_res res = {0};
	char *text = NULL, *host;
	uint64_t t0 = loomi_mono_ns();

	req.method = hreq->method;
	req.path = hreq->path;
	req.query = hreq->query;
	req.body = hreq->body;
	req.body_len = hreq->body_len;
	req.host = host = request_host(hreq);
	req.origin = loomi_http_header(hreq, "Origin");
	req.content_type = loomi_http_header(hreq, "Content-Type");
	req.if_none_match = loomi_http_header(hreq, "If-None-Match");
	req.version_minor = hreq->version_minor;
	req.authorization = loomi_http_header(hreq, "Authorization");
	req.cookie = loomi_http_header(hreq, "Cookie");
	req.peer = hreq->peer;
	req.unix_peer = hreq->peer_uid >= 0;
	req.peer_uid = hreq->peer_uid;
	req.tls = hreq->tls;
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
	{
		bool cache_set = false;
		for (int k = 0; k < res.n_headers; k++) {
			cache_set |= strcasecmp(res.headers[k].name, "Cache-Control") == 0;
			if (hres->n_headers < (int)LOOMI_N(hres->headers)) {
				hres->headers[hres->n_headers].name = res.headers[k].name;
				hres->headers[hres->n_headers++].value = res.headers[k].value;
			} else {
				free(res.headers[k].value);
			}
			res.headers[k].value = NULL;
		}
		if (!cache_set && hres->n_headers < (int)LOOMI_N(hres->headers)) {
			hres->headers[hres->n_headers].name = "Cache-Control";
			hres->headers[hres->n_headers++].value = loomi_strdup("no-store");
		}
	}
	if (loomi_log_enabled(LOOM_LOG_DEBUG))
		LOG_DEBUG("http %s %s -> %d (%.3f ms)", req.method, hreq->target, res.status,
		          (double)(loomi_mono_ns() - t0) / 1e6);
	loomi_api_stats_request(res.route, req.method, res.status, loomi_mono_ns() - t0);
	json_decref(res.body);
	free(res.text);
	free(res.allow);
	free(host);
}

void
loomi_api_header_take(loomi_http_res *res, const char *name, char *value)
{
	if (res->n_headers >= (int)LOOMI_N(res->headers)) {
		LOG_ERROR("http: no room for the header %s (a bug)", name);
		free(value);
		return;
	}
	res->headers[res->n_headers].name = name;
	res->headers[res->n_headers++].value = value;
}

void
loomi_api_header(loomi_http_res *res, const char *name, const char *value)
{
	loomi_api_header_take(res, name, loomi_strdup(value));
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

/* An upgrade refused with the pipeline's error in r (taken): its status. */
static int
ws_refuse(loomi_http_res *r, loomi_http_response *res)
{
	res->status = r->status;
	res->body = json_dumps(r->body, JSON_COMPACT | JSON_PRESERVE_ORDER);
	res->body_len = res->body ? strlen(res->body) : 0;
	for (int k = 0; k < r->n_headers && res->n_headers < 8; k++) {
		res->headers[res->n_headers].name = r->headers[k].name;
		res->headers[res->n_headers++].value = r->headers[k].value;
		r->headers[k].value = NULL;
	}
	for (int k = 0; k < r->n_headers; k++)
		free(r->headers[k].value);
	json_decref(r->body);
	free(r->text);
	free(r->allow);
	return res->status;
}

static int
ws_open(void *arg, loomi_ws *ws, const loomi_http_request *req, loomi_http_response *res)
{
	loomi_api *api = arg;
	const loomi_ws_route *r;
	loomi_http_req in = {0};
	loomi_http_res out = {0};
	loomi_caller caller;
	char *host = request_host(req);
	bool ok;
	int status;

	/* the front door as for a request that changes something: a
	 * WebSocket's page may read what it streams, and later carries
	 * cookies */
	in.method = req->method;
	in.path = req->path;
	in.query = req->query;
	in.host = host;
	in.origin = loomi_http_header(req, "Origin");
	in.version_minor = req->version_minor;
	in.unix_peer = req->peer_uid >= 0;
	ok = front_door(api->d, &in, true, &out);
	free(host);
	if (!ok)
		return ws_refuse(&out, res);

	r = find_ws_route(req->path);
	if (r != NULL && !query_ok(r->query, req->query, &out))
		return ws_refuse(&out, res);
	if (r != NULL) {
		in.authorization = loomi_http_header(req, "Authorization");
		in.cookie = loomi_http_header(req, "Cookie");
		in.peer = req->peer;
		in.unix_peer = req->peer_uid >= 0;
		in.peer_uid = req->peer_uid;
		in.tls = req->tls;
		if (!loomi_auth_check(api->d, &in, r->access, &caller, &out))
			return ws_refuse(&out, res);
	}
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
	if ((status = r->on_open(api->d, ws, req, &caller, res)) == 0) {
		loomi_ws_set_owner(ws, r);
		loomi_api_stats_websocket(1);
	}
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
	if (r) {
		r->on_close(((loomi_api *)arg)->d, ws);
		loomi_api_stats_websocket(-1);
	}
}

static const loomi_ws_handlers ws_handlers = {ws_open, ws_message, ws_close};

/* ------------------------------------------------------------------ start / stop */

int
loomi_api_start(loomi_daemon *d, const char *listen, char **err)
{
	loomi_api *api = loomi_xcalloc(1, sizeof *api);
	loomi_http_options opts = {0};
	char *sock = NULL;
	int rv;

	api->d = d;
	/* loomd.conf's http group; what it leaves 0 takes http.c's default */
	opts.max_head = (size_t)d->conf.http.max_head;
	opts.max_body = d->conf.http.max_body ? (size_t)d->conf.http.max_body : MAX_BODY;
	opts.body_budget = (size_t)d->conf.http.body_budget;
	opts.max_conns = d->conf.http.max_conns;
	opts.max_conns_per_client = d->conf.http.max_conns_per_client;
	opts.reserve = d->conf.http.reserve;
	opts.request_timeout_ms = d->conf.http.request_timeout_ms;
	opts.idle_timeout_ms = d->conf.http.idle_timeout_ms;
	opts.max_ws_message = (size_t)d->conf.http.max_ws_message;
	opts.ws_queue = (size_t)d->conf.http.ws_queue;
	opts.ws_ping_interval_ms = d->conf.http.ws_ping_interval_ms;
	opts.ws_idle_timeout_ms = d->conf.http.ws_idle_timeout_ms;
	opts.reserved = route_reserved;
	/* loomd.conf's api group: TLS on listen, and the Unix socket */
	opts.tls_certificate = d->conf.api.tls_certificate;
	opts.tls_key = d->conf.api.tls_key;
	if ((rv = loomi_http_start(&api->server, listen, &opts, http_handler, &ws_handlers, api,
	                           err)) != 0) {
		free(api);
		return rv;
	}
	if ((sock = loomi_conf_api_socket(&d->conf)) != NULL &&
	    (rv = loomi_http_listen_unix(api->server, sock, d->conf.api.socket_mode, err)) != 0) {
		loomi_http_stop(api->server);
		free(api);
		free(sock);
		return rv;
	}
	__atomic_store_n(&d->url, loomi_strdup(loomi_http_url(api->server)), __ATOMIC_RELEASE);
	d->api = api;
	if (sock)
		LOG_INFO("api: on %s%s%s, and on the Unix socket %s (mode %04o)", d->url,
		         opts.tls_certificate ? " with the certificate " : "",
		         opts.tls_certificate ? opts.tls_certificate : "", sock,
		         (unsigned)d->conf.api.socket_mode);
	else
		LOG_INFO("api: on %s%s%s, without a Unix socket (api.socket = \"\")", d->url,
		         opts.tls_certificate ? " with the certificate " : "",
		         opts.tls_certificate ? opts.tls_certificate : "");
	free(sock);
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

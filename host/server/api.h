/* The REST API under /api/v1, served by Loom's HTTP server (http.h), and
 * its request pipeline.  Routes come from the modules (module.h): every
 * request passes the same steps, in one place (api.c):
 *
 *   1. parse      — http.c: the request line, headers, body (limits on
 *                   head and body size, 400/413/431 …; connections, the
 *                   body budget and the reserve, 503: loomd.conf's http
 *                   group; the reserve serves routes with .reserve set);
 *   2. front door — who may ask at all, before any route is looked at:
 *                   the Host (or an absolute target's authority) must be
 *                   a name loomd serves (loomd.conf server_names; by
 *                   default the listen address's host, localhost,
 *                   127.0.0.1 and ::1, and on a wildcard address any IP
 *                   address and the machine's host name), with loomd's
 *                   port if it names one: 421 otherwise, 400 when an
 *                   HTTP/1.1 request has none.  A request that may change
 *                   something (any method but GET, HEAD and OPTIONS, and
 *                   every WebSocket upgrade) with an Origin header must
 *                   come from loomd's own origin (http://, or https://
 *                   with api.tls, + a served name + loomd's port): 403
 *                   otherwise, "null" included.  Through the Unix
 *                   socket no port is compared (it has none), and a
 *                   change's Origin must be the Host's own (http or
 *                   https: a local proxy's page).  So
 *                   neither a foreign web page (CSRF) nor a name rebound
 *                   to loomd's address (DNS rebinding) can drive it;
 *   3. normalise  — a trailing slash dropped;
 *   4. route      — the first route of the module table whose pattern
 *                   matches the path and whose method matches; 404 for an
 *                   unknown path, 405 (with Allow) for a method it does
 *                   not take; {…} segments percent-decoded (400 when
 *                   malformed);
 *   5. what the route takes — every query parameter must be one the route
 *                   declares (400 naming it and those it takes, or when
 *                   one is given twice); a non-empty body must be
 *                   Content-Type: application/json (a charset parameter,
 *                   if any, utf-8), or application/octet-stream for a
 *                   route with .octet_stream: 415 otherwise;
 *   6. who asks  — authentication (auth.h): a bearer token, the web UI's
 *                   cookie, the Unix socket's peer uid, or auth = "none";
 *                   401 (with WWW-Authenticate) without or with a bad one,
 *                   except for routes whose access is PUBLIC;
 *   7. may they   — authorization against the route's access: READ any
 *                   user, WRITE a user or admin, ADMIN an admin; 403
 *                   otherwise.  Objects are the route's own check
 *                   (loomi_auth_object: 404 for another user's);
 *   8. the route's handler, which answers JSON (or text).
 *
 * JSON in and out; errors as {"error":{"code":"not_found","message":"…"}}
 * with the matching HTTP status. */
#ifndef LOOM_HOST_API_H
#define LOOM_HOST_API_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "daemon.h"
#include "http.h"

typedef struct loomi_api loomi_api;
struct loomi_caller; /* auth.h */

/* A request as a route sees it. */
typedef struct loomi_http_req {
	const char *method;
	const char *path;          /* the path as sent (not decoded), no query */
	const char *query;         /* raw query string after '?', or "" */
	const char *body;
	size_t body_len;
	const char *params[4];     /* values of {…} segments, decoded */
	size_t n_params;
	/* what the front door (step 2) and step 5 read: the headers as sent,
	 * NULL when absent; host is an absolute-form target's authority when
	 * the request had one.  version_minor 0 is HTTP/1.0, where Host is
	 * optional: in-process callers that set none ask as HTTP/1.0 would. */
	const char *host;
	const char *origin;
	const char *content_type;
	const char *if_none_match; /* for a route that answers 304 (the web UI's files) */
	int version_minor;
	/* what authentication (step 6) reads: the Authorization and Cookie
	 * headers (NULL when absent), the client's address, whether it came
	 * over the Unix socket and then its peer's uid, TLS */
	const char *authorization;
	const char *cookie;
	const char *peer;
	bool unix_peer;
	int64_t peer_uid;
	bool tls;
	/* who asks (auth.h): set by step 6 for the route; an in-process caller
	 * that sets it is taken at its word */
	const struct loomi_caller *caller;
} loomi_http_req;

struct loomi_route;

typedef struct loomi_http_res {
	int status;
	json_t *body;              /* a JSON document, or NULL */
	char *text;                /* or a raw body with content_type */
	size_t text_len;
	const char *content_type;
	char *allow;
	/* more headers (WWW-Authenticate, Set-Cookie, the web UI's ETag and
	 * Content-Security-Policy …): loomi_api_header; a Cache-Control among
	 * them replaces the API's no-store */
	struct {
		const char *name;     /* static */
		char *value;
	} headers[6];
	int n_headers;
	/* set by the pipeline: the route that matched (NULL: none), which
	 * the request counters of GET /metrics are kept by (api-stats.h) */
	const struct loomi_route *route;
} loomi_http_res;

typedef void (*loomi_route_fn)(loomi_daemon *d, const loomi_http_req *req,
                               loomi_http_res *res);

/* What a route does, for the authorization step. */
typedef enum loomi_access {
	LOOMI_ACCESS_PUBLIC = 0, /* anyone who reaches loomd, without a credential: health,
	                          * the web UI's files, signing in */
	LOOMI_ACCESS_READ = 1,  /* reads, changes nothing */
	LOOMI_ACCESS_WRITE = 2, /* creates or changes objects (submit, pause, promote …) */
	LOOMI_ACCESS_ADMIN = 3, /* changes how loomd acts for everyone, or makes it run
	                         * commands of the caller's choosing (alert rules) */
} loomi_access;

/* One endpoint: method, pattern ("/api/v1/plugins/{instance}": each {name}
 * matches one non-empty segment, handed to fn decoded in req->params), the
 * handler, what it does, and the query parameters it reads, separated by
 * commas ("status,user,limit,offset"; NULL: none).  The pipeline refuses
 * any other parameter before fn runs, so keep the list to what fn reads
 * with loomi_query_get / loomi_query_int (and docs/openapi.json to it:
 * test-api checks both agree). */
typedef struct loomi_route {
	const char *method;
	const char *pattern;
	loomi_route_fn fn;
	int access;                /* loomi_access */
	const char *query;
	/* served through the reserve when the connection pool is full (health,
	 * control of a task): cheap and never a WebSocket; set by name,
	 * ".reserve = true", after the fields above */
	bool reserve;
	/* also takes a body of Content-Type: application/octet-stream (step
	 * 5), which the handler reads from req->content_type (the predict
	 * endpoint's windows as raw f32); every other route reads JSON only.
	 * Set by name, ".octet_stream = true" */
	bool octet_stream;
} loomi_route;

/* A WebSocket endpoint: on_open accepts an upgrade of a path matching
 * pattern (0) or refuses it with an HTTP status after filling res; the
 * connection's messages and its close then go to the same route.  As
 * http.h's loomi_ws_handlers, with the daemon instead of an arg. */
typedef struct loomi_ws_route {
	const char *pattern;
	int (*on_open)(loomi_daemon *d, loomi_ws *ws, const loomi_http_request *req,
	               const struct loomi_caller *caller, loomi_http_response *res);
	void (*on_message)(loomi_daemon *d, loomi_ws *ws, const char *data, size_t len, bool text);
	void (*on_close)(loomi_daemon *d, loomi_ws *ws);
	int access;                /* loomi_access */
	const char *query;         /* as loomi_route's */
} loomi_ws_route;

/* Start serving d's modules on listen ("host:port"); the URL actually
 * bound (the port filled in when 0 was asked) is stored in d->url. */
int loomi_api_start(loomi_daemon *d, const char *listen, char **err);
void loomi_api_stop(loomi_daemon *d);

/* The pipeline from step 2 on, without a socket: req as http.c would hand
 * it (path not decoded, the query raw, the headers it reads); res filled
 * as for a client (free res->body, res->text, res->allow and the values of
 * res->headers).  For tests
 * and in-process callers. */
void loomi_api_handle(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res);

/* Every route of the module table in the order requests are matched, for
 * tests and listings: route i and its module's name; false past the end. */
bool loomi_api_route(size_t i, const loomi_route **route, const char **module);

/* docs/openapi.json, compiled in (served at /api/v1/openapi.json). */
extern const char loomi_openapi_json[];

/* Set an error response: status, a stable code string and a message. */
void loomi_api_error(loomi_http_res *res, int status, const char *code, const char *fmt, ...)
	LOOM_PRINTF(4, 5);

/* Add a header to the answer (name static; value copied, or taken). */
void loomi_api_header(loomi_http_res *res, const char *name, const char *value);
void loomi_api_header_take(loomi_http_res *res, const char *name, char *value);

/* Helpers for routes in other modules. */
/* The value of key in a query string ("a=1&b=2"), decoded (free it); NULL
 * if absent. */
char *loomi_query_get(const char *query, const char *key);
/* An integer parameter in [min, max], def when absent; false after setting
 * a 400 naming the parameter. */
bool loomi_query_int(loomi_http_res *res, const char *query, const char *key, int64_t def,
                     int64_t min, int64_t max, int64_t *out);
/* The body as JSON, or NULL after setting a 400. */
json_t *loomi_api_json_body(const loomi_http_req *req, loomi_http_res *res);
/* Answer with out and status ok when rv is 0, else the error for rv with
 * msg (both taken): LOOM_EINVAL 400, LOOM_ENOENT 404, LOOM_EEXIST 409,
 * others 500. */
void loomi_api_answer(loomi_http_res *res, int rv, json_t *out, char *msg, int ok);

#endif /* LOOM_HOST_API_H */

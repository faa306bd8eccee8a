/* The REST API under /api/v1, served by Loom's HTTP server (http.h).  JSON in and
 * out; errors as {"error":{"code":"not_found","message":"…"}} with the
 * matching HTTP status; 404 for unknown paths and 405 (with Allow) for a
 * method a path does not take. */
#ifndef LOOM_HOST_API_H
#define LOOM_HOST_API_H

#include <stdbool.h>

#include <jansson.h>

#include "daemon.h"

typedef struct loomi_api loomi_api;

/* A request as a route sees it. */
typedef struct loomi_http_req {
	const char *method;
	const char *path;          /* the path as sent (not decoded), no query */
	const char *query;         /* raw query string after '?', or "" */
	const char *body;
	size_t body_len;
	const char *params[4];     /* values of {…} segments, decoded */
	size_t n_params;
} loomi_http_req;

typedef struct loomi_http_res {
	int status;
	json_t *body;              /* a JSON document, or NULL */
	char *text;                /* or a raw body with content_type */
	size_t text_len;
	const char *content_type;
	char *allow;
} loomi_http_res;

typedef void (*loomi_route_fn)(loomi_daemon *d, const loomi_http_req *req,
                               loomi_http_res *res);

/* Start serving d on listen ("host:port"); the URL actually bound (the
 * port filled in when 0 was asked) is stored in d->url. */
int loomi_api_start(loomi_daemon *d, const char *listen, char **err);
void loomi_api_stop(loomi_daemon *d);

/* The route table, for tests: route i's method and pattern; false past
 * the end. */
bool loomi_api_route(size_t i, const char **method, const char **pattern);

/* docs/openapi.json, compiled in (served at /api/v1/openapi.json). */
extern const char loomi_openapi_json[];

/* Set an error response: status, a stable code string and a message. */
void loomi_api_error(loomi_http_res *res, int status, const char *code, const char *fmt, ...)
	LOOM_PRINTF(4, 5);

#endif /* LOOM_HOST_API_H */

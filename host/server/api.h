/* The REST API under /api/v1, served by Loom's HTTP server (http.h).  JSON in and
 * out; errors as {"error":{"code":"not_found","message":"…"}} with the
 * matching HTTP status; 404 for unknown paths and 405 (with Allow) for a
 * method a path does not take. */
#ifndef LOOM_HOST_API_H
#define LOOM_HOST_API_H

#include <stdbool.h>
#include <stdint.h>

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
 * msg (both taken). */
void loomi_api_answer(loomi_http_res *res, int rv, json_t *out, char *msg, int ok);
/* The task id of the route's first parameter ("task-12" or "12"), or 0
 * after setting a 404. */
int64_t loomi_api_task_id(const loomi_http_req *req, loomi_http_res *res);

#endif /* LOOM_HOST_API_H */

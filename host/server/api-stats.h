/* What the API counts, for GET /metrics (host/metrics/): requests by
 * route, method and status, their durations by route, and the WebSockets
 * open.  The pipeline (api.c) records each request once, when its answer
 * is ready; recording is a few relaxed atomic adds, never a lock.
 *
 * Labels stay bounded whatever clients send: a route is its pattern
 * ("/api/v1/training/tasks/{id}") or "unmatched", a method one of the
 * HTTP methods below or "other", a status a number from 100 to 599.
 * Requests that http.c refuses before the pipeline (a malformed request,
 * a connection limit) are not counted here. */
#ifndef LOOM_HOST_API_STATS_H
#define LOOM_HOST_API_STATS_H

#include <stdint.h>

#include "histogram.h"

struct loomi_route;

/* A request answered: its route (NULL when none matched), method, status
 * and how long it took, in nanoseconds. */
void loomi_api_stats_request(const struct loomi_route *route, const char *method, int status,
                             uint64_t ns);

/* A WebSocket opened (+1) or closed (-1). */
void loomi_api_stats_websocket(int delta);

/* ------------------------------------------------------------------ reading */

/* The requests counted so far: fn is called once per (route, method,
 * status) seen, route the pattern or "unmatched", in no particular order. */
void loomi_api_stats_requests(void (*fn)(void *arg, const char *route, const char *method,
                                         int status, uint64_t n),
                              void *arg);

/* The duration histogram of each route that answered a request (bounds:
 * loomi_duration_bounds), "unmatched" last. */
void loomi_api_stats_durations(void (*fn)(void *arg, const char *route,
                                          const loomi_histogram *h),
                               void *arg);

/* WebSockets open now. */
int64_t loomi_api_stats_websockets(void);

#endif /* LOOM_HOST_API_STATS_H */

/* The inference service: POST /api/v1/models/{name}/predict answers with a
 * registered model version, served by inference workers (loom-worker
 * --serve, docs/inference.md) so that a model that crashes never takes
 * loomd down.
 *
 * A request names the version by ?alias= (default "production") or
 * ?version=; the ref is resolved on every request, so a promote or a
 * rollback moves the next request to the new version without a restart,
 * while a request already holding the old version's worker finishes
 * there.  One worker per version, started on its first request (which
 * waits for it) and stopped once idle for INFERENCE_IDLE_MS (checked on
 * each request).  A worker found dead (or silent past its deadline, then
 * killed) is started again at once; until it is ready, requests for it
 * answer 503 with the reason.  A worker that fails to start is tried again no sooner than
 * RETRY_MS later; meanwhile 503 with its reason.
 *
 * Answers are kept in a bounded cache (LRU by bytes): the key is the
 * model's id, the version, what was asked (uncertainty, passes) and the
 * input's bytes, compared in full, so a version change never serves a
 * stale answer and a hash collision never serves a wrong one. */
#ifndef LOOM_HOST_INFERENCE_H
#define LOOM_HOST_INFERENCE_H

#include <stdint.h>

#include <loom/sampler.h>

#include "host/server/daemon.h"

typedef struct loomi_inference_stats {
	uint64_t requests;       /* predict requests answered 200 */
	uint64_t failures;       /* answered 4xx/5xx after the model was resolved */
	uint64_t cache_hits, cache_misses, cache_evictions;
	uint64_t cache_bytes, cache_entries, cache_capacity;
	uint64_t workers;        /* workers running (ready or starting) */
	uint64_t worker_starts;  /* processes started, restarts included */
	uint64_t worker_deaths;  /* workers found dead or killed for silence */
	uint64_t windows;        /* windows predicted (cache hits included) */
} loomi_inference_stats;

/* Counters for GET /metrics (zeros before the service starts). */
void loomi_inference_stats_read(loomi_daemon *d, loomi_inference_stats *out);

/* For the labeling loop (host/labeling/), and the sampler routes
 * (sample.c): */
/* Run sampler instance on pool: the request's arrays as the plugin needs
 * them (checked against its needs first), the instance serialized unless
 * it is thread-safe, and its error message taken over (res->error is
 * freed and left NULL).  0, or LOOM_ENOENT (no such sampler instance),
 * LOOM_EINVAL / LOOM_ERANGE (the pool or request; *err names it) or
 * another code, with *err set (free it).  res's arrays are the caller's,
 * with room for req->k rows. */
int loomi_sampler_select(loomi_daemon *d, const char *instance, const loom_sample_pool *pool,
                         const loom_sample_request *req, loom_sample_result *res, char **err);

#endif /* LOOM_HOST_INFERENCE_H */

/* Sampler plugins through loomd: the host's side of <loom/sampler.h>, for
 * the labeling loop and for clients that bring their own pool.
 *
 *   GET  /api/v1/samplers                   the sampler instances loomd.conf
 *                                           declares, with what each reads
 *   POST /api/v1/samplers/{instance}/select {"k", "seed", "probs" | "scores" |
 *                                           "features" | "strata", "ids",
 *                                           "fixed", "subsample", "seen"}
 *        → {"sampler", "module", "n", "chosen": [{"row", "id", "score",
 *           "slot"}]}, most informative first (docs/samplers.md). */
#ifndef LOOM_HOST_SAMPLE_H
#define LOOM_HOST_SAMPLE_H

#include <loom/sampler.h>

#include "host/server/api.h"
#include "host/server/daemon.h"

/* Run sampler instance on pool: the request's arrays as the plugin needs
 * them (checked against its needs first), the instance serialized unless
 * it is thread-safe, and its error message taken over (res->error is
 * freed and left NULL).  0, or LOOM_ENOENT (no such sampler instance),
 * LOOM_EINVAL / LOOM_ERANGE (the pool or request; *err names it) or
 * another code, with *err set (free it).  res's arrays are the caller's,
 * with room for req->k rows. */
int loomi_sampler_select(loomi_daemon *d, const char *instance, const loom_sample_pool *pool,
                         const loom_sample_request *req, loom_sample_result *res, char **err);

void loomi_route_samplers(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res);
void loomi_route_sampler_select(loomi_daemon *d, const loomi_http_req *req,
                                loomi_http_res *res);

#endif /* LOOM_HOST_SAMPLE_H */

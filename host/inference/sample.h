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

#include "host/server/api.h"
#include "inference.h"

void loomi_route_samplers(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res);
void loomi_route_sampler_select(loomi_daemon *d, const loomi_http_req *req,
                                loomi_http_res *res);

#endif /* LOOM_HOST_SAMPLE_H */

/* The metrics service's interface: GET /metrics, loomd's state in the
 * Prometheus text format (docs/metrics.md lists the families). */
#ifndef LOOM_HOST_METRICS_H
#define LOOM_HOST_METRICS_H

#include <stddef.h>

#include "host/server/daemon.h"

/* The whole exposition, as GET /metrics answers it (free it); *len bytes
 * before the terminating NUL. */
char *loomi_metrics_text(loomi_daemon *d, size_t *len);

#endif /* LOOM_HOST_METRICS_H */

/* WebSocket monitoring of training tasks (monitor.c says what a client
 * sends and receives). */
#ifndef LOOM_HOST_MONITOR_H
#define LOOM_HOST_MONITOR_H

#include "host/server/daemon.h"
#include "host/server/http.h"

typedef struct loomi_monitor loomi_monitor;

/* Subscribe to the bus's job events.  0, or a LOOM_E* code with *err. */
int loomi_monitor_start(loomi_daemon *d, loomi_monitor **out, char **err);
/* After the HTTP server has stopped (every client closed). */
void loomi_monitor_stop(loomi_monitor *m);
/* The WebSocket callbacks; their arg is the loomi_monitor. */
const loomi_ws_handlers *loomi_monitor_handlers(void);

#endif /* LOOM_HOST_MONITOR_H */

/* The pieces of a running loomd, for the modules that serve it. */
#ifndef LOOM_HOST_DAEMON_H
#define LOOM_HOST_DAEMON_H

#include <stdint.h>

#include "host/core/bus.h"
#include "host/core/conf.h"
#include "host/core/plugins.h"
#include "store.h"

struct loomi_api;

typedef struct loomi_daemon {
	loomi_conf conf;
	loomi_plugins plugins;
	loomi_store store;
	loomi_bus *bus;
	struct loomi_api *api;
	int lock_fd;
	int64_t started_ms;     /* wall clock */
	uint64_t started_ns;    /* monotonic */
	char *url;              /* "http://127.0.0.1:7420", once listening */
} loomi_daemon;

#endif /* LOOM_HOST_DAEMON_H */

/* A module: how a service joins loomd.
 *
 * Each service (host/tasks/, host/configs/, host/tracking/ …) describes
 * itself in one static const loomi_module — its name, the schema
 * migrations of its tables, what to run at start and stop, its REST and
 * WebSocket routes with what each does, and the events it listens to — and
 * host/modules.c lists the modules once.  loomd walks that table:
 *
 *   store open    every module's migrations, merged by version number;
 *   init          each module in table order, right after the store is
 *                 open and before the bus and the plugins (the log store
 *                 starts here so that plugin loading is recorded);
 *   start         each module in table order, once the plugins run;
 *   serve         the API composes the routes of every module;
 *   stop          the API first, then each module in reverse table order.
 *
 * So a module that others' events reach (alerts, logs) sits before them in
 * the table, and the tasks module, whose workers feed everyone, sits after
 * them: it starts last and stops first.  Modules hear about each other only
 * through events (events.h) or a service's declared interface header
 * (host/<service>/<service>.h), never through another's internals. */
#ifndef LOOM_HOST_MODULE_H
#define LOOM_HOST_MODULE_H

#include <stddef.h>

#include "api.h"
#include "daemon.h"
#include "events.h"
#include "store.h"

#define LOOMI_N(a) (sizeof(a) / sizeof((a)[0]))

/* SQL for a migration that gives table an AUTOINCREMENT id: its
 * sqlite_sequence entry at least the value of the query max_sql (NULL
 * counts 0), so no id up to it is given again. */
#define LOOMI_SEQUENCE_AT_LEAST(table, max_sql)                                            \
	"INSERT INTO sqlite_sequence (name, seq) SELECT '" table "', 0 WHERE NOT EXISTS\n"      \
	"  (SELECT 1 FROM sqlite_sequence WHERE name = '" table "');\n"                         \
	"UPDATE sqlite_sequence SET seq = max(seq, coalesce((" max_sql "), 0))\n"              \
	"  WHERE name = '" table "';\n"

typedef struct loomi_module {
	const char *name;                  /* "tasks": in logs and errors */
	/* its tables: versions are global (one schema_migrations table), each
	 * number owned by one module; never edit a shipped one */
	const loomi_migration *migrations;
	size_t n_migrations;
	int (*init)(loomi_daemon *d, char **err);   /* may be NULL */
	int (*start)(loomi_daemon *d, char **err);  /* may be NULL */
	void (*stop)(loomi_daemon *d);              /* may be NULL; also after a failed start */
	const loomi_route *routes;
	size_t n_routes;
	const loomi_ws_route *ws_routes;
	size_t n_ws_routes;
	const loomi_listener *listeners;
	size_t n_listeners;
} loomi_module;

/* The module table (host/modules.c), in start order. */
extern const loomi_module *const loomi_modules[];
extern const size_t loomi_n_modules;

#endif /* LOOM_HOST_MODULE_H */

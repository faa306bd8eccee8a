/* <loom/host.h> — what the host gives a plugin: the services table passed to
 * init, and the declarative config map through which the host validates a
 * plugin's settings and fills its context.
 *
 * A plugin never sees libconfig, NNG or SQLite types: settings arrive as
 * plain C values in the plugin's context struct, bus messages as JSON text. */
#ifndef LOOM_HOST_H
#define LOOM_HOST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <loom/error.h>
#include <loom/types.h>
#include <loom/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One loaded instance of a plugin, owned by the host.  A module may be
 * instantiated several times under different instance names; each instance
 * has its own context and config group. */
typedef struct loom_instance loom_instance;

/* ------------------------------------------------------------------ config */

/* Types a setting can have, and the C type the host stores at the entry's
 * offset in the plugin context. */
typedef enum loom_config_type {
	LOOM_CONFIG_BOOL = 1,     /* bool */
	LOOM_CONFIG_INT = 2,      /* int64_t */
	LOOM_CONFIG_DOUBLE = 3,   /* double (an integer is accepted) */
	LOOM_CONFIG_STRING = 4,   /* const char * (host-owned until fini) */
	LOOM_CONFIG_SIZE = 5,     /* uint64_t bytes: 4096, "64K", "2G" */
	LOOM_CONFIG_DURATION = 6, /* int64_t milliseconds: "250ms", "30s", "5m" */
	LOOM_CONFIG_STRLIST = 7,  /* const char *const * (NULL-terminated) */
	LOOM_CONFIG_PATH = 8,     /* const char *: a file path; a relative one is
	                           * resolved against the instance's state dir */
} loom_config_type;

/* Entry flags. */
#define LOOM_CONFIG_REQUIRED 0x1u /* the setting must be given (no default) */
#define LOOM_CONFIG_RANGE 0x2u    /* numbers must lie in [min, max] */
#define LOOM_CONFIG_NOFILL 0x4u   /* validate only; read with config_* lookups */
#define LOOM_CONFIG_SECRET 0x8u   /* a credential: loomd never shows or logs its value
                                   * (GET /api/v1/plugins/{name} answers "(secret)") */

/* One setting a plugin accepts (Fluent Bit's config_map).  The host refuses
 * unknown keys (with a did-you-mean), wrong types, missing required
 * settings, values out of range and strings not among the choices, naming
 * file, line and the setting's path; then writes each value, or its
 * default, at ctx + offset before init is called.  An array of entries ends
 * with LOOM_CONFIG_END.  The layout of this struct is fixed for ABI 1. */
typedef struct loom_config_entry {
	uint32_t type;           /* loom_config_type */
	uint32_t flags;          /* LOOM_CONFIG_* */
	const char *key;         /* [a-z][a-z0-9_]* */
	const char *def;         /* the default, written as in a config file
	                          * ("64K", "true", "0.5", "a, b" for lists);
	                          * NULL: zero / NULL unless REQUIRED */
	size_t offset;           /* offsetof(context, field) */
	const char *description; /* one line, for --check-config and docs */
	double min, max;         /* bounds, with LOOM_CONFIG_RANGE */
	const char *choices;     /* strings: allowed values, "a|b|c"; or NULL */
	const void *reserved[2];
} loom_config_entry;

#define LOOM_CONFIG_END {0, 0, NULL, NULL, 0, NULL, 0, 0, NULL, {NULL, NULL}}

/* ------------------------------------------------------------------ logging */

typedef enum loom_log_level {
	LOOM_LOG_ERROR = 0,
	LOOM_LOG_WARN = 1,
	LOOM_LOG_INFO = 2,
	LOOM_LOG_DEBUG = 3,
	LOOM_LOG_TRACE = 4,
} loom_log_level;

/* ------------------------------------------------------------------ bus */

/* A handler for a bus service a plugin serves.  request is the JSON body of
 * the request (an object).  On success return 0 and set *reply to a JSON
 * object allocated with host->alloc (or leave it NULL for "{}"); on failure
 * return a LOOM_E* code and optionally set *reply to a message (host->alloc)
 * that the requester receives.  Handlers run on the host's bus threads and
 * may be called concurrently. */
typedef int (*loom_service_fn)(void *arg, const char *request, char **reply);

/* A subscriber's callback: topic and the JSON body (an object) of an event.
 * Called from a thread of the subscription; must not block for long. */
typedef void (*loom_event_fn)(void *arg, const char *topic, const char *body);

/* ------------------------------------------------------------------ services */

/* The host-services table.  The host passes it to init; it stays valid
 * until fini returns.  Check size before using a field appended by a later
 * ABI minor: LOOM_HOST_HAS(host, field). */
typedef struct loom_host {
	uint16_t abi_major; /* the host's ABI */
	uint16_t abi_minor;
	uint32_t size;        /* sizeof(loom_host) as the host compiled it */
	const char *version;  /* the Loom release, "0.1.0" */

	/* Logging.  Lines are prefixed "[kind:instance]" by the host. */
	void (*log)(loom_instance *ins, int level, const char *fmt, ...) LOOM_PRINTF(3, 4);
	void (*vlog)(loom_instance *ins, int level, const char *fmt, va_list ap);
	bool (*log_enabled)(loom_instance *ins, int level);

	/* Identity and places. */
	const char *(*instance_name)(const loom_instance *ins);
	/* A directory this instance owns, <state_dir>/plugins/<instance>,
	 * created on first use; NULL if it cannot be created. */
	const char *(*state_dir)(loom_instance *ins);

	/* Typed lookups of the instance's validated settings, by key.
	 * LOOM_ENOENT for a key not in the config map, LOOM_EINVAL for a type
	 * that does not match (config_int serves INT, SIZE and DURATION). */
	int (*config_bool)(loom_instance *ins, const char *key, bool *out);
	int (*config_int)(loom_instance *ins, const char *key, int64_t *out);
	int (*config_double)(loom_instance *ins, const char *key, double *out);
	int (*config_string)(loom_instance *ins, const char *key, const char **out);
	int (*config_strlist)(loom_instance *ins, const char *key, const char *const **out,
	                      size_t *n);

	/* The message bus.  Bodies are JSON objects as text; the host wraps
	 * them in versioned envelopes.  Services and subscriptions an instance
	 * registers are removed by the host before fini. */
	int (*publish)(loom_instance *ins, const char *topic, const char *body);
	/* Send a request and wait up to timeout_ms for the reply body, which is
	 * stored in *reply (free with host->free).  A remote error comes back as
	 * its code, with its message in *reply when there is one. */
	int (*request)(loom_instance *ins, const char *service, const char *body,
	               int64_t timeout_ms, char **reply);
	/* Serve a service; names starting "bus." and "job." are the host's
	 * (LOOM_EINVAL), a name another instance serves is LOOM_EEXIST. */
	int (*serve)(loom_instance *ins, const char *service, loom_service_fn fn, void *arg);
	int (*subscribe)(loom_instance *ins, const char *topic_prefix, loom_event_fn fn,
	                 void *arg);

	/* Storage access by reference "<storage-instance>:<key>". */
	int (*storage_get)(loom_instance *ins, const char *ref, void **data, size_t *len);
	int (*storage_put)(loom_instance *ins, const char *ref, const void *data, size_t len);
	/* A local file path for a referenced blob, when its storage has one
	 * (host->free the path); LOOM_ENOTSUP otherwise. */
	int (*storage_path)(loom_instance *ins, const char *ref, char **path);

	/* Clocks. */
	int64_t (*clock_wall_ms)(void);  /* UTC milliseconds since the epoch */
	uint64_t (*clock_mono_ns)(void); /* monotonic nanoseconds */

	/* Memory that crosses the ABI (replies, blobs) comes from here. */
	void *(*alloc)(size_t size);
	void *(*calloc)(size_t n, size_t size);
	void *(*realloc)(void *p, size_t size);
	void (*free)(void *p);
	/* Zeroed memory aligned to 64 bytes, for tensors; tensor_free it. */
	void *(*tensor_alloc)(size_t bytes);
	void (*tensor_free)(void *p);

	/* Another started instance's ops table and context, by instance name
	 * and kind, for plugins that drive others (a compute plugin and its
	 * head).  LOOM_ENOENT when there is no such started instance,
	 * LOOM_EINVAL when it is of another kind.  Calls through the table
	 * bypass the host's serialization: a caller using an instance without
	 * LOOM_PLUGIN_THREAD_SAFE from several threads serializes them. */
	int (*instance_ops)(loom_instance *ins, const char *name, uint32_t kind,
	                    const void **ops, void **ctx);

	/* Logging of a failure that may repeat (a full disk): the first line
	 * of a kind (this instance and this format string) is written, the
	 * same kind within a minute only counted, and the count written later
	 * with the newest line, "… (repeated 87 times in the last 60 s)".
	 * Taken from the reserved slots: NULL in a host that predates it, so
	 * call it through loom_log_limited(), which falls back to log. */
	void (*log_limited)(loom_instance *ins, int level, const char *fmt, ...) LOOM_PRINTF(3, 4);

	const void *reserved[15];
} loom_host;

/* True when the host's table has a field (it may predate a later minor). */
#define LOOM_HOST_HAS(host, field)                                                  \
	(offsetof(loom_host, field) + sizeof((host)->field) <= (size_t)(host)->size)

/* Logging shorthands for a plugin that keeps host and ins in its context. */
#define loom_log_error(h, ins, ...) (h)->log((ins), LOOM_LOG_ERROR, __VA_ARGS__)
#define loom_log_warn(h, ins, ...) (h)->log((ins), LOOM_LOG_WARN, __VA_ARGS__)
#define loom_log_info(h, ins, ...) (h)->log((ins), LOOM_LOG_INFO, __VA_ARGS__)
#define loom_log_debug(h, ins, ...) (h)->log((ins), LOOM_LOG_DEBUG, __VA_ARGS__)
/* A failure that may repeat, rate-limited by the host (log_limited), or
 * plainly logged by a host that predates it. */
#define loom_log_limited(h, ins, level, ...)                                         \
	((h)->log_limited ? (h)->log_limited((ins), (level), __VA_ARGS__)             \
	                  : (h)->log((ins), (level), __VA_ARGS__))

#ifdef __cplusplus
}
#endif

#endif /* LOOM_HOST_H */

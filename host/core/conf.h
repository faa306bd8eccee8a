/* loomd.conf: the daemon's settings.  Validation goes through schema.h;
 * plugin config groups are checked later against each plugin's map. */
#ifndef LOOM_HOST_CONF_H
#define LOOM_HOST_CONF_H

#include <stdbool.h>
#include <stdint.h>

#include "schema.h"

/* ------------------------------------------------------------------ loomd.conf */

typedef struct loomi_plugin_conf {
	char *instance;
	char *module;
	const json_t *config;   /* borrowed from the document; may be NULL */
	const json_t *node;     /* the plugin's group, for line numbers */
} loomi_plugin_conf;

typedef struct loomi_conf {
	loomi_doc doc;
	char *path;
	char *state_dir;
	loomi_strv plugin_path;
	char *listen;           /* "host:port" */
	loomi_strv server_names; /* the Host names served, normalised; empty: the default */
	bool auth_none;          /* auth = "none": every client is the admin (loopback only) */
	loomi_strv data_roots;   /* where data.path may point; empty: the default (data_roots) */
	int log_level;
	int log_format;
	char *log_file;         /* NULL: stderr */
	char *bus_requests;     /* NULL: ipc://<state_dir>/bus.req */
	char *bus_events;       /* NULL: ipc://<state_dir>/bus.events */
	uint64_t bus_max_message;
	char *jobs_worker;        /* NULL: LOOM_BINDIR/loom-worker */
	char *jobs_scheduler;     /* NULL: the first scheduler instance */
	uint32_t jobs_cpu_millis; /* 0: the online cores */
	uint64_t jobs_memory;     /* 0: the physical memory */
	int64_t jobs_tick_ms;
	int64_t jobs_heartbeat_ms;
	int64_t jobs_stop_grace_ms;    /* a stop request → SIGTERM → SIGKILL */
	uint64_t jobs_memory_headroom; /* RLIMIT_AS = request + this + per thread */
	int64_t logs_retention_ms; /* 0: structured logs are kept forever */
	bool logs_archive;         /* expired entries go to logs/archive first */
	loomi_strv alerts_webhook_hosts; /* names, IP literals, CIDR ranges */
	bool alerts_command_actions;     /* rules may run commands */
	/* http = { … }: the API server's limits; 0 for its default (http.h) */
	struct {
		uint64_t max_head, max_body, body_budget, max_ws_message;
		int max_conns, max_conns_per_client, reserve, ws_queue;
		int request_timeout_ms, idle_timeout_ms, ws_ping_interval_ms, ws_idle_timeout_ms;
	} http;
	/* api = { … }: the API's Unix socket and TLS (host/server/api.c) */
	struct {
		/* NULL: <state_dir>/loomd.sock; "": no socket; else as written,
		 * a relative path taken from the state directory (which --state-dir
		 * may change after loading): loomi_conf_api_socket resolves it */
		char *socket;
		int socket_mode;         /* the socket file's mode; default 0600 */
		char *tls_certificate;   /* PEM files, absolute; NULL: plain HTTP */
		char *tls_key;
	} api;
	/* web = { … }: the web UI's files (host/web/); NULL: the installed ones */
	char *web_root;           /* the UI's files; NULL: LOOM_WEB_DIR */
	char *web_dygraphs;       /* the chart library's files; NULL: LOOM_DYGRAPHS_DIR */
	/* datasets = { … }: the datasets module (host/datasets/); 0 and NULL
	 * for its defaults */
	struct {
		char *storage;            /* the chunks' storage instance; NULL: "store" */
		char *prefix;             /* their key prefix; NULL: "datasets" */
		uint64_t chunk_min, chunk_avg, chunk_max, quota, upload_part_max;
		int zstd_level;
		int64_t lock_ttl_ms;
	} datasets;
	loomi_plugin_conf *plugins;
	size_t n_plugins;
} loomi_conf;

/* Read and check loomd.conf (everything but plugin config groups, which
 * need the plugins' maps).  Returns 0, or LOOM_ECONFIG / LOOM_EIO with the
 * problems in errs. */
int loomi_conf_load(loomi_conf *conf, const char *path, loomi_strv *errs);
void loomi_conf_free(loomi_conf *conf);

/* The API's Unix socket path (free it): api.socket resolved against the
 * state directory; NULL when the socket is off (api.socket = ""). */
char *loomi_conf_api_socket(const loomi_conf *conf);
/* The longest Unix socket path the system takes (sun_path less its NUL). */
size_t loomi_socket_path_max(void);

/* Check a "host:port" listen address; 0 or LOOM_EINVAL with *why set. */
int loomi_listen_check(const char *listen, const char **why);

/* A server_names entry as the API compares it (lower case, an IPv6
 * address without brackets; free it), or NULL with *why set. */
char *loomi_server_name_norm(const char *name, const char **why);

/* Names: instances [a-z][a-z0-9_-]{0,63}, modules [a-z0-9][a-z0-9_.-]*. */
bool loomi_instance_name_ok(const char *name);
bool loomi_module_name_ok(const char *name);

#endif /* LOOM_HOST_CONF_H */

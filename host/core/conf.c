/* loomd.conf: the daemon's own settings, read through the schema
 * validator.  See conf.h. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "conf.h"
#include "log.h"

#define LOOMI_N_CONF(a) (sizeof(a) / sizeof((a)[0]))

#ifndef LOOM_STATE_DIR
#define LOOM_STATE_DIR "/var/lib/loom"
#endif

/* ------------------------------------------------------------------ loomd.conf */

static const loomi_field log_fields[] = {
	{"level", LOOMI_F_STRING, 0, "error|warn|info|debug|trace", 0, 0, NULL,
	 "the least severe level written"},
	{"format", LOOMI_F_STRING, 0, "text|json", 0, 0, NULL, "text lines or JSON lines"},
	{"file", LOOMI_F_PATH, 0, NULL, 0, 0, NULL, "a file to append to; \"\" for stderr"},
	{NULL, 0, 0, NULL, 0, 0, NULL, NULL},
};

static const loomi_field bus_fields[] = {
	{"requests", LOOMI_F_STRING, 0, NULL, 0, 0, NULL,
	 "where workers send requests: ipc://PATH or tcp://HOST:PORT"},
	{"events", LOOMI_F_STRING, 0, NULL, 0, 0, NULL,
	 "where workers subscribe to events: ipc://PATH or tcp://HOST:PORT"},
	{"max_message", LOOMI_F_SIZE, LOOMI_F_RANGE, NULL, 1024, 64.0 * 1024 * 1024, NULL,
	 "the largest message accepted"},
	{NULL, 0, 0, NULL, 0, 0, NULL, NULL},
};

static const loomi_field jobs_fields[] = {
	{"worker", LOOMI_F_PATH, 0, NULL, 0, 0, NULL,
	 "the loom-worker program that runs each job (default: the installed one)"},
	{"scheduler", LOOMI_F_STRING, 0, NULL, 0, 0, NULL,
	 "the scheduler plugin instance (default: the first one in plugins)"},
	{"cpu", LOOMI_F_DOUBLE, LOOMI_F_RANGE, NULL, 0.001, 4096, NULL,
	 "CPU cores jobs may use together (default: the online cores)"},
	{"memory", LOOMI_F_SIZE, 0, NULL, 0, 0, NULL,
	 "memory jobs may use together (default: the physical memory)"},
	{"tick", LOOMI_F_DURATION, LOOMI_F_RANGE, NULL, 10, 60000, NULL,
	 "how often the scheduler looks at waiting jobs"},
	{"heartbeat_timeout", LOOMI_F_DURATION, LOOMI_F_RANGE, NULL, 1000, 86400000, NULL,
	 "a running worker silent this long is presumed lost"},
	{"stop_grace", LOOMI_F_DURATION, LOOMI_F_RANGE, NULL, 100, 3600000, NULL,
	 "a worker asked to stop gets this long, then SIGTERM, then as long again before SIGKILL"},
	{"memory_headroom", LOOMI_F_SIZE, 0, NULL, 0, 0, NULL,
	 "address space a worker may reserve beyond its memory request, plus 320M a thread, "
	 "where loomd cannot use a cgroup v2 memory controller"},
	{NULL, 0, 0, NULL, 0, 0, NULL, NULL},
};

static const loomi_field logs_fields[] = {
	{"retention", LOOMI_F_DURATION, 0, NULL, 0, 0, NULL,
	 "log entries older than this are archived and deleted (0: kept forever)"},
	{"archive", LOOMI_F_BOOL, 0, NULL, 0, 0, NULL,
	 "write expired entries to <state_dir>/logs/archive/<day>.jsonl.zst first"},
	{NULL, 0, 0, NULL, 0, 0, NULL, NULL},
};

/* alerts: what an alert rule's actions may reach */
static const loomi_field alerts_fields[] = {
	{"webhook_hosts", LOOMI_F_STRLIST, 0, NULL, 0, 0, NULL,
	 "the hosts webhooks may be sent to: names, IP addresses, CIDR ranges "
	 "(default: loopback)"},
	{"command_actions", LOOMI_F_BOOL, 0, NULL, 0, 0, NULL,
	 "whether rules may run commands, as loomd's user (default: false)"},
	{NULL, 0, 0, NULL, 0, 0, NULL, NULL},
};

/* http = { … }: limits of the API server (host/server/http.h), one for one
 * with loomi_http_options. */
static const loomi_field http_fields[] = {
	{"max_head", LOOMI_F_SIZE, LOOMI_F_RANGE, NULL, 1024, 1024.0 * 1024, NULL,
	 "the largest request line and headers (default 16K)"},
	{"max_body", LOOMI_F_SIZE, LOOMI_F_RANGE, NULL, 1024, 4096.0 * 1024 * 1024, NULL,
	 "the largest request body (default 16M)"},
	{"body_budget", LOOMI_F_SIZE, LOOMI_F_RANGE, NULL, 1024, 1024.0 * 1024 * 1024 * 1024, NULL,
	 "request body bytes held at once, all clients together; 503 past it (default 256M)"},
	{"max_conns", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 1, 65536, NULL,
	 "connections served at once (default 256)"},
	{"max_conns_per_client", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 1, 65536, NULL,
	 "of max_conns, connections from one client address (default 64)"},
	{"reserve", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 1, 4096, NULL,
	 "connections beyond the limits kept for health and control requests (default 16)"},
	{"request_timeout", LOOMI_F_DURATION, LOOMI_F_RANGE, NULL, 100, 3600000, NULL,
	 "the time a request's head and body may take to arrive (default 30s)"},
	{"idle_timeout", LOOMI_F_DURATION, LOOMI_F_RANGE, NULL, 100, 86400000, NULL,
	 "an idle connection is closed after this (default 60s)"},
	{"max_ws_message", LOOMI_F_SIZE, LOOMI_F_RANGE, NULL, 1024, 1024.0 * 1024 * 1024, NULL,
	 "the largest WebSocket message from a client (default 1M)"},
	{"ws_queue", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 1, 1048576, NULL,
	 "messages queued to a slow WebSocket client before the oldest are dropped "
	 "(default 256)"},
	{"ws_ping_interval", LOOMI_F_DURATION, LOOMI_F_RANGE, NULL, 10, 86400000, NULL,
	 "how often WebSocket clients are pinged (default 20s)"},
	{"ws_idle_timeout", LOOMI_F_DURATION, LOOMI_F_RANGE, NULL, 10, 86400000, NULL,
	 "a WebSocket client that sends nothing, not even a pong, or takes none of loomd's "
	 "bytes this long is closed (default 60s)"},
	{NULL, 0, 0, NULL, 0, 0, NULL, NULL},
};

/* api = { … }: the API's Unix socket and TLS (host/server/api.c) */
static const loomi_field api_tls_fields[] = {
	{"certificate", LOOMI_F_PATH, LOOMI_F_REQUIRED, NULL, 0, 0, NULL,
	 "the server's certificate, then any intermediate ones: a PEM file"},
	{"key", LOOMI_F_PATH, LOOMI_F_REQUIRED, NULL, 0, 0, NULL,
	 "the certificate's private key: an unencrypted PEM file only loomd's user can read"},
	{NULL, 0, 0, NULL, 0, 0, NULL, NULL},
};

static const loomi_field api_fields[] = {
	{"socket", LOOMI_F_PATH, 0, NULL, 0, 0, NULL,
	 "the Unix socket that local clients reach the API by, relative to state_dir; "
	 "\"\" for none (default: loomd.sock)"},
	{"socket_mode", LOOMI_F_STRING, 0, NULL, 0, 0, NULL,
	 "the socket file's mode, in octal (default \"0600\")"},
	{"tls", LOOMI_F_GROUP, 0, NULL, 0, 0, api_tls_fields, NULL},
	{NULL, 0, 0, NULL, 0, 0, NULL, NULL},
};

/* web = { … }: where the web UI's files are (host/web/) */
static const loomi_field web_fields[] = {
	{"root", LOOMI_F_PATH, 0, NULL, 0, 0, NULL,
	 "the directory of the web UI's files (default: the installed ones)"},
	{"dygraphs", LOOMI_F_PATH, 0, NULL, 0, 0, NULL,
	 "the directory holding dygraph.min.js and dygraph.min.css, the chart library "
	 "(default: Debian's libjs-dygraphs)"},
	{NULL, 0, 0, NULL, 0, 0, NULL, NULL},
};

/* datasets = { … }: the datasets module (host/datasets/, docs/datasets.md) */
static const loomi_field datasets_fields[] = {
	{"storage", LOOMI_F_STRING, 0, NULL, 0, 0, NULL,
	 "the storage plugin instance holding the chunks (default \"store\")"},
	{"prefix", LOOMI_F_STRING, 0, NULL, 0, 0, NULL,
	 "the key prefix of the chunks in that storage (default \"datasets\")"},
	{"chunk_min", LOOMI_F_SIZE, LOOMI_F_RANGE, NULL, 1024, 64.0 * 1024 * 1024, NULL,
	 "the smallest chunk (default 64K)"},
	{"chunk_avg", LOOMI_F_SIZE, LOOMI_F_RANGE, NULL, 1024, 64.0 * 1024 * 1024, NULL,
	 "the chunk size aimed at, a power of two (default 256K)"},
	{"chunk_max", LOOMI_F_SIZE, LOOMI_F_RANGE, NULL, 1024, 64.0 * 1024 * 1024, NULL,
	 "the largest chunk, but for its last row (default 1M)"},
	{"zstd_level", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 1, 19, NULL,
	 "the zstd compression level of the chunks (default 3)"},
	{"lock_ttl", LOOMI_F_DURATION, LOOMI_F_RANGE, NULL, 1000, 7 * 86400000.0, NULL,
	 "how long a branch lock lasts unless renewed (default 600 s)"},
	{"quota", LOOMI_F_SIZE, 0, NULL, 0, 0, NULL,
	 "the stored bytes a user may hold, unless given their own (default 0: no limit)"},
	{"upload_part_max", LOOMI_F_SIZE, LOOMI_F_RANGE, NULL, 1024, 1024.0 * 1024 * 1024, NULL,
	 "the largest part of an upload (default 8M; http.max_body must allow it)"},
	{NULL, 0, 0, NULL, 0, 0, NULL, NULL},
};

static const loomi_field plugin_fields[] = {
	{"instance", LOOMI_F_STRING, LOOMI_F_REQUIRED, NULL, 0, 0, NULL,
	 "the instance's name, e.g. \"store\""},
	{"module", LOOMI_F_STRING, LOOMI_F_REQUIRED, NULL, 0, 0, NULL,
	 "the plugin module to load, e.g. \"storage-local\""},
	{"config", LOOMI_F_ANYGROUP, 0, NULL, 0, 0, NULL, "the plugin's settings"},
	{NULL, 0, 0, NULL, 0, 0, NULL, NULL},
};

static const loomi_field conf_fields[] = {
	{"state_dir", LOOMI_F_PATH, 0, NULL, 0, 0, NULL, "where loomd keeps its database"},
	{"plugin_path", LOOMI_F_STRLIST, 0, NULL, 0, 0, NULL, "directories searched for plugins"},
	{"listen", LOOMI_F_STRING, 0, NULL, 0, 0, NULL, "the API address, \"host:port\""},
	{"server_names", LOOMI_F_STRLIST, 0, NULL, 0, 0, NULL,
	 "the names and addresses clients reach the API by (the Host header); \"*\" for any"},
	{"auth", LOOMI_F_STRING, 0, NULL, 0, 0, NULL,
	 "how clients prove who they are: \"token\" (API tokens and the Unix socket) or "
	 "\"none\" (every client is the admin; loopback listeners only)"},
	{"data_roots", LOOMI_F_STRLIST, 0, NULL, 0, 0, NULL,
	 "directories a task's data.path may name files under"},
	{"log", LOOMI_F_GROUP, 0, NULL, 0, 0, log_fields, NULL},
	{"bus", LOOMI_F_GROUP, 0, NULL, 0, 0, bus_fields, NULL},
	{"jobs", LOOMI_F_GROUP, 0, NULL, 0, 0, jobs_fields, NULL},
	{"logs", LOOMI_F_GROUP, 0, NULL, 0, 0, logs_fields, NULL},
	{"alerts", LOOMI_F_GROUP, 0, NULL, 0, 0, alerts_fields, NULL},
	{"http", LOOMI_F_GROUP, 0, NULL, 0, 0, http_fields, NULL},
	{"api", LOOMI_F_GROUP, 0, NULL, 0, 0, api_fields, NULL},
	{"web", LOOMI_F_GROUP, 0, NULL, 0, 0, web_fields, NULL},
	{"datasets", LOOMI_F_GROUP, 0, NULL, 0, 0, datasets_fields, NULL},
	{"plugins", LOOMI_F_GROUPLIST, 0, NULL, 0, 0, plugin_fields, NULL},
	{NULL, 0, 0, NULL, 0, 0, NULL, NULL},
};

bool
loomi_instance_name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > 64 || !islower((unsigned char)name[0]))
		return false;
	for (const char *p = name; *p; p++) {
		if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-' ||
		      *p == '_'))
			return false;
	}
	return true;
}

bool
loomi_module_name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > 128 || !(isalnum((unsigned char)name[0])))
		return false;
	for (const char *p = name; *p; p++) {
		if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.'))
			return false;
	}
	return true;
}

size_t
loomi_socket_path_max(void)
{
	struct sockaddr_un sun;
	return sizeof sun.sun_path - 1;
}

char *
loomi_conf_api_socket(const loomi_conf *conf)
{
	const char *s = conf->api.socket;

	if (s == NULL)
		return loomi_path_join(conf->state_dir, "loomd.sock");
	if (s[0] == '\0')
		return NULL;
	return s[0] == '/' ? loomi_strdup(s) : loomi_path_join(conf->state_dir, s);
}

int
loomi_listen_check(const char *listen, const char **why)
{
	const char *colon = strrchr(listen, ':');
	char *end;
	long port;

	if (colon == NULL || colon == listen) {
		*why = "expected \"host:port\", e.g. \"127.0.0.1:7420\"";
		return LOOM_EINVAL;
	}
	if (listen[0] == '[' && colon[-1] != ']') {
		*why = "write an IPv6 address in brackets, e.g. \"[::1]:7420\"";
		return LOOM_EINVAL;
	}
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno || port < 0 || port > 65535) {
		*why = "the port must be a number from 0 to 65535 (0 picks a free one)";
		return LOOM_EINVAL;
	}
	for (const char *p = listen; p < colon; p++) {
		if (isspace((unsigned char)*p) || *p == '/') {
			*why = "the host must be a name or an address, without spaces or '/'";
			return LOOM_EINVAL;
		}
	}
	return 0;
}

char *
loomi_server_name_norm(const char *name, const char **why)
{
	size_t n = strlen(name);
	char *out;

	if (name[0] == '[' && n > 2 && name[n - 1] == ']') {
		name++;
		n -= 2;
	}
	if (n == 0 || n > 253) {
		*why = "give a host name or an address of 1 to 253 characters, or \"*\" for any";
		return NULL;
	}
	for (size_t k = 0; k < n; k++) {
		unsigned char c = (unsigned char)name[k];
		if (!(isalnum(c) || c == '-' || c == '.' || c == ':' || c == '_' ||
		      (c == '*' && n == 1))) {
			*why = "give a host name (letters, digits, '-', '.') or an IP address, without "
			       "port or scheme, or \"*\" for any";
			return NULL;
		}
	}
	out = loomi_strndup(name, n);
	for (char *p = out; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (strchr(out, ':') != NULL) {
		unsigned char a[16];
		if (inet_pton(AF_INET6, out, a) != 1) {
			free(out);
			*why = "give a host name (letters, digits, '-', '.') or an IP address, without "
			       "port or scheme, or \"*\" for any";
			return NULL;
		}
	}
	return out;
}

static const char *
str_or(const json_t *group, const char *key, const char *def)
{
	const json_t *v = json_object_get(group, key);
	return json_is_string(v) ? json_string_value(v) : def;
}

static bool
bus_addr_ok(const char *a)
{
	return strncmp(a, "ipc://", 6) == 0 || strncmp(a, "tcp://", 6) == 0 ||
	       strncmp(a, "inproc://", 9) == 0;
}

int
loomi_conf_load(loomi_conf *conf, const char *path, loomi_strv *errs)
{
	const json_t *root, *log, *bus, *plugins, *v;
	size_t before = errs->n, i;
	int rv;
	char *base = NULL, *slash;

	memset(conf, 0, sizeof *conf);
	conf->path = loomi_strdup(path);
	if ((rv = loomi_doc_load_file(&conf->doc, path, errs)) != 0)
		return rv;
	root = conf->doc.root;
	loomi_schema_check(&conf->doc, root, conf_fields, "", errs);

	/* Relative paths in the file are relative to the file's directory. */
	base = loomi_strdup(path);
	if ((slash = strrchr(base, '/')) != NULL)
		slash[slash == base ? 1 : 0] = '\0';
	else
		strcpy(base, ".");

	v = json_object_get(root, "state_dir");
	if (json_is_string(v) && json_string_length(v) > 0)
		conf->state_dir = json_string_value(v)[0] == '/'
		                      ? loomi_strdup(json_string_value(v))
		                      : loomi_path_join(base, json_string_value(v));
	else
		conf->state_dir = loomi_strdup(LOOM_STATE_DIR);

	v = json_object_get(root, "plugin_path");
	json_array_foreach(json_is_array(v) ? v : NULL, i, plugins) {
		if (json_is_string(plugins)) {
			const char *p = json_string_value(plugins);
			loomi_strv_push(&conf->plugin_path,
			                p[0] == '/' ? loomi_strdup(p) : loomi_path_join(base, p));
		}
	}

	conf->listen = loomi_strdup(str_or(root, "listen", "127.0.0.1:7420"));
	if ((v = json_object_get(root, "listen")) && json_is_string(v)) {
		const char *why;
		if (loomi_listen_check(conf->listen, &why) != 0)
			loomi_doc_errf(&conf->doc, v, errs, "listen: \"%s\": %s", conf->listen, why);
	}

	/* server_names: each a host name, an IP address (an IPv6 one with or
	 * without brackets) or "*"; lower-cased, brackets dropped */
	if ((v = json_object_get(root, "server_names")) && json_is_array(v)) {
		const json_t *e;
		if (json_array_size(v) == 0)
			loomi_doc_errf(&conf->doc, v, errs,
			               "server_names: the list is empty, so no client could reach the API; "
			               "list the names clients use, or leave server_names out for the "
			               "listen address and localhost");
		json_array_foreach(v, i, e) {
			const char *why = NULL;
			char *name;
			if (!json_is_string(e))
				continue; /* already reported by the schema check */
			if ((name = loomi_server_name_norm(json_string_value(e), &why)) == NULL) {
				loomi_doc_errf(&conf->doc, e, errs, "server_names[%zu]: \"%s\": %s", i,
				               json_string_value(e), why);
				continue;
			}
			loomi_strv_push(&conf->server_names, name);
		}
	}

	if ((v = json_object_get(root, "auth")) && json_is_string(v)) {
		if (strcmp(json_string_value(v), "none") == 0)
			conf->auth_none = true;
		else if (strcmp(json_string_value(v), "token") != 0)
			loomi_doc_errf(&conf->doc, v, errs,
			               "auth: \"%s\": give \"token\" (API tokens and the Unix socket; "
			               "the default) or \"none\" (loopback only)",
			               json_string_value(v));
	}
	/* data_roots: absolute, or relative to the file's directory */
	if ((v = json_object_get(root, "data_roots")) && json_is_array(v)) {
		const json_t *e;
		if (json_array_size(v) == 0)
			loomi_doc_errf(&conf->doc, v, errs,
			               "data_roots: the list is empty, so no task could read a file; list "
			               "the directories data may come from, or leave data_roots out for "
			               "the state directory and the example data");
		json_array_foreach(v, i, e) {
			const char *p;
			if (!json_is_string(e))
				continue;
			p = json_string_value(e);
			if (p[0] == '\0') {
				loomi_doc_errf(&conf->doc, e, errs, "data_roots[%zu]: empty; give a directory",
				               i);
				continue;
			}
			loomi_strv_push(&conf->data_roots,
			                p[0] == '/' ? loomi_strdup(p) : loomi_path_join(base, p));
		}
	}

	log = json_object_get(root, "log");
	conf->log_level = loomi_log_level_parse(str_or(log, "level", "info"));
	if (conf->log_level < 0)
		conf->log_level = LOOM_LOG_INFO;
	conf->log_format =
		strcmp(str_or(log, "format", "text"), "json") == 0 ? LOOMI_LOG_JSON : LOOMI_LOG_TEXT;
	if (str_or(log, "file", "")[0] != '\0') {
		const char *f = str_or(log, "file", "");
		conf->log_file = f[0] == '/' ? loomi_strdup(f) : loomi_path_join(base, f);
	}

	bus = json_object_get(root, "bus");
	conf->bus_max_message = 1024 * 1024;
	if ((v = json_object_get(bus, "max_message")) != NULL) {
		if (json_is_integer(v))
			conf->bus_max_message = (uint64_t)json_integer_value(v);
		else if (json_is_string(v))
			loom_parse_size(json_string_value(v), &conf->bus_max_message);
	}
	for (int k = 0; k < 2; k++) {
		const char *key = k ? "events" : "requests";
		if ((v = json_object_get(bus, key)) && json_is_string(v)) {
			if (!bus_addr_ok(json_string_value(v)))
				loomi_doc_errf(&conf->doc, v, errs,
				               "bus.%s: \"%s\" is not a bus address; use ipc://PATH or "
				               "tcp://HOST:PORT",
				               key, json_string_value(v));
			else if (k)
				conf->bus_events = loomi_strdup(json_string_value(v));
			else
				conf->bus_requests = loomi_strdup(json_string_value(v));
		}
	}

	{
		const json_t *jobs = json_object_get(root, "jobs");
		const char *w = str_or(jobs, "worker", NULL);
		if (w && w[0])
			conf->jobs_worker = w[0] == '/' ? loomi_strdup(w) : loomi_path_join(base, w);
		if ((w = str_or(jobs, "scheduler", NULL)) != NULL && w[0])
			conf->jobs_scheduler = loomi_strdup(w);
		if ((v = json_object_get(jobs, "cpu")) && json_is_number(v))
			conf->jobs_cpu_millis = (uint32_t)(json_number_value(v) * 1000 + 0.5);
		if ((v = json_object_get(jobs, "memory")) != NULL) {
			if (json_is_integer(v))
				conf->jobs_memory = (uint64_t)json_integer_value(v);
			else if (json_is_string(v))
				loom_parse_size(json_string_value(v), &conf->jobs_memory);
		}
		conf->jobs_tick_ms = 200;
		conf->jobs_heartbeat_ms = 60000;
		conf->jobs_stop_grace_ms = 10000;
		for (int k = 0; k < 3; k++) {
			static const char *const keys[] = {"tick", "heartbeat_timeout", "stop_grace"};
			int64_t *dst[] = {&conf->jobs_tick_ms, &conf->jobs_heartbeat_ms,
			                  &conf->jobs_stop_grace_ms};
			int64_t ms = 0;
			v = json_object_get(jobs, keys[k]);
			if (json_is_integer(v))
				ms = json_integer_value(v) * 1000;
			else if (json_is_real(v))
				ms = (int64_t)(json_real_value(v) * 1000);
			else if (json_is_string(v))
				loom_parse_duration(json_string_value(v), &ms);
			if (ms > 0)
				*dst[k] = ms;
		}
		conf->jobs_memory_headroom = 512ull << 20;
		if ((v = json_object_get(jobs, "memory_headroom")) != NULL) {
			if (json_is_integer(v))
				conf->jobs_memory_headroom = (uint64_t)json_integer_value(v);
			else if (json_is_string(v))
				loom_parse_size(json_string_value(v), &conf->jobs_memory_headroom);
		}
	}

	{
		/* structured logs: 30 days kept, then archived */
		const json_t *logs = json_object_get(root, "logs");
		conf->logs_retention_ms = 30LL * 86400 * 1000;
		conf->logs_archive = !json_is_false(json_object_get(logs, "archive"));
		v = json_object_get(logs, "retention");
		if (json_is_integer(v))
			conf->logs_retention_ms = json_integer_value(v) * 1000;
		else if (json_is_real(v))
			conf->logs_retention_ms = (int64_t)(json_real_value(v) * 1000);
		else if (json_is_string(v))
			loom_parse_duration(json_string_value(v), &conf->logs_retention_ms);
		if (conf->logs_retention_ms < 0)
			conf->logs_retention_ms = 0;
	}

	{
		/* alerts: webhooks to loopback only, no commands, unless the admin
		 * says otherwise; the entries are checked by the alerts module */
		const json_t *alerts = json_object_get(root, "alerts");
		v = json_object_get(alerts, "webhook_hosts");
		if (json_is_array(v)) {
			json_t *h;
			json_array_foreach(v, i, h)
				if (json_is_string(h))
					loomi_strv_push(&conf->alerts_webhook_hosts,
					                loomi_strdup(json_string_value(h)));
		} else {
			loomi_strv_push(&conf->alerts_webhook_hosts, loomi_strdup("127.0.0.1"));
			loomi_strv_push(&conf->alerts_webhook_hosts, loomi_strdup("localhost"));
			loomi_strv_push(&conf->alerts_webhook_hosts, loomi_strdup("::1"));
		}
		conf->alerts_command_actions = json_is_true(json_object_get(alerts, "command_actions"));
	}

	{
		/* the API server's limits: unset ones stay 0, http.c's defaults */
		const json_t *http = json_object_get(root, "http");
		static const struct {
			const char *key;
			size_t off;
		} sizes[] = {
			{"max_head", offsetof(loomi_conf, http.max_head)},
			{"max_body", offsetof(loomi_conf, http.max_body)},
			{"body_budget", offsetof(loomi_conf, http.body_budget)},
			{"max_ws_message", offsetof(loomi_conf, http.max_ws_message)},
		}, ints[] = {
			{"max_conns", offsetof(loomi_conf, http.max_conns)},
			{"max_conns_per_client", offsetof(loomi_conf, http.max_conns_per_client)},
			{"reserve", offsetof(loomi_conf, http.reserve)},
			{"ws_queue", offsetof(loomi_conf, http.ws_queue)},
		}, durations[] = {
			{"request_timeout", offsetof(loomi_conf, http.request_timeout_ms)},
			{"idle_timeout", offsetof(loomi_conf, http.idle_timeout_ms)},
			{"ws_ping_interval", offsetof(loomi_conf, http.ws_ping_interval_ms)},
			{"ws_idle_timeout", offsetof(loomi_conf, http.ws_idle_timeout_ms)},
		};
		for (size_t k = 0; k < LOOMI_N_CONF(sizes); k++) {
			uint64_t *to = (uint64_t *)((char *)conf + sizes[k].off);
			if (json_is_integer(v = json_object_get(http, sizes[k].key)))
				*to = (uint64_t)json_integer_value(v);
			else if (json_is_string(v))
				loom_parse_size(json_string_value(v), to);
		}
		for (size_t k = 0; k < LOOMI_N_CONF(ints); k++) {
			if (json_is_integer(v = json_object_get(http, ints[k].key)))
				*(int *)((char *)conf + ints[k].off) = (int)json_integer_value(v);
		}
		for (size_t k = 0; k < LOOMI_N_CONF(durations); k++) {
			int64_t ms = 0;
			v = json_object_get(http, durations[k].key);
			if (json_is_integer(v))
				ms = json_integer_value(v) * 1000;
			else if (json_is_real(v))
				ms = (int64_t)(json_real_value(v) * 1000);
			else if (json_is_string(v))
				loom_parse_duration(json_string_value(v), &ms);
			if (ms > 0 && ms <= INT32_MAX)
				*(int *)((char *)conf + durations[k].off) = (int)ms;
		}
		if (conf->http.body_budget > 0 &&
		    conf->http.body_budget < (conf->http.max_body ? conf->http.max_body : 16u << 20))
			loomi_doc_errf(&conf->doc, json_object_get(http, "body_budget"), errs,
			               "http.body_budget: %" PRIu64 " bytes is less than http.max_body "
			               "(%" PRIu64 "), so a body allowed alone could never be taken; give "
			               "at least that",
			               conf->http.body_budget,
			               conf->http.max_body ? conf->http.max_body : (uint64_t)16 << 20);
	}

	{
		/* the API's Unix socket and TLS: the socket's path is checked
		 * against sun_path here as far as the state directory is known
		 * (api.c checks it again at start, after --state-dir) */
		const json_t *api = json_object_get(root, "api"), *tls = json_object_get(api, "tls");
		const char *mode = str_or(api, "socket_mode", NULL), *sock = str_or(api, "socket", NULL);
		conf->api.socket_mode = 0600;
		if (mode != NULL) {
			size_t n = strlen(mode);
			char *end;
			long m = strtol(mode, &end, 8);
			if (n < 3 || n > 4 || strspn(mode, "01234567") != n || *end != '\0' || m > 0777)
				loomi_doc_errf(&conf->doc, json_object_get(api, "socket_mode"), errs,
				               "api.socket_mode: \"%s\" is not a file mode: give three octal "
				               "digits, as chmod takes them, e.g. \"0660\" for loomd's user "
				               "and group",
				               mode);
			else
				conf->api.socket_mode = (int)m;
		}
		if (sock != NULL) {
			conf->api.socket = loomi_strdup(sock);
			if (sock[0] != '\0') {
				char *full = loomi_conf_api_socket(conf);
				if (strlen(full) > loomi_socket_path_max())
					loomi_doc_errf(&conf->doc, json_object_get(api, "socket"), errs,
					               "api.socket: \"%s\" is %zu bytes long, over the %zu a Unix "
					               "socket's path may have; choose a shorter path",
					               full, strlen(full), loomi_socket_path_max());
				free(full);
			}
		}
		if (json_is_object(tls)) {
			const char *cert = str_or(tls, "certificate", NULL), *key = str_or(tls, "key", NULL);
			if (cert && cert[0] && key && key[0]) {
				conf->api.tls_certificate =
					cert[0] == '/' ? loomi_strdup(cert) : loomi_path_join(base, cert);
				conf->api.tls_key = key[0] == '/' ? loomi_strdup(key) : loomi_path_join(base, key);
			} else if ((cert && !cert[0]) || (key && !key[0])) {
				loomi_doc_errf(&conf->doc, tls, errs,
				               "api.tls: give both certificate and key as file names, or leave "
				               "api.tls out for plain HTTP");
			}
		}
	}

	{
		/* the web UI's directories, relative ones to loomd.conf's */
		const json_t *web = json_object_get(root, "web");
		const char *r = str_or(web, "root", NULL), *g = str_or(web, "dygraphs", NULL);
		if (r && r[0])
			conf->web_root = r[0] == '/' ? loomi_strdup(r) : loomi_path_join(base, r);
		if (g && g[0])
			conf->web_dygraphs = g[0] == '/' ? loomi_strdup(g) : loomi_path_join(base, g);
	}

	{
		/* datasets: unset sizes stay 0, the module's defaults; the
		 * chunker's sizes together are checked by the module (ds_params) */
		const json_t *ds = json_object_get(root, "datasets");
		const char *sto = str_or(ds, "storage", NULL), *pre = str_or(ds, "prefix", NULL);
		static const struct {
			const char *key;
			size_t off;
		} sizes[] = {
			{"chunk_min", offsetof(loomi_conf, datasets.chunk_min)},
			{"chunk_avg", offsetof(loomi_conf, datasets.chunk_avg)},
			{"chunk_max", offsetof(loomi_conf, datasets.chunk_max)},
			{"quota", offsetof(loomi_conf, datasets.quota)},
			{"upload_part_max", offsetof(loomi_conf, datasets.upload_part_max)},
		};
		for (size_t k = 0; k < LOOMI_N_CONF(sizes); k++) {
			uint64_t *to = (uint64_t *)((char *)conf + sizes[k].off);
			if (json_is_integer(v = json_object_get(ds, sizes[k].key)))
				*to = (uint64_t)json_integer_value(v);
			else if (json_is_string(v))
				loom_parse_size(json_string_value(v), to);
		}
		if (json_is_integer(v = json_object_get(ds, "zstd_level")))
			conf->datasets.zstd_level = (int)json_integer_value(v);
		v = json_object_get(ds, "lock_ttl");
		if (json_is_integer(v))
			conf->datasets.lock_ttl_ms = json_integer_value(v) * 1000;
		else if (json_is_real(v))
			conf->datasets.lock_ttl_ms = (int64_t)(json_real_value(v) * 1000);
		else if (json_is_string(v))
			loom_parse_duration(json_string_value(v), &conf->datasets.lock_ttl_ms);
		if (sto != NULL && !loomi_instance_name_ok(sto))
			loomi_doc_errf(&conf->doc, json_object_get(ds, "storage"), errs,
			               "datasets.storage: \"%s\" is not an instance name; give the "
			               "instance of a storage plugin declared in plugins, e.g. \"store\"",
			               sto);
		else if (sto != NULL)
			conf->datasets.storage = loomi_strdup(sto);
		if (pre != NULL) {
			/* a key prefix: segments of [A-Za-z0-9._-], none "." or "..",
			 * no leading or trailing '/' */
			bool good = pre[0] != '\0' && pre[0] != '/' && pre[strlen(pre) - 1] != '/' &&
			            strspn(pre, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			                        "0123456789._-/") == strlen(pre) &&
			            strstr(pre, "//") == NULL;
			for (const char *seg = pre; good && seg; seg = strchr(seg, '/') ? strchr(seg, '/') + 1 : NULL)
				good = strncmp(seg, "./", 2) != 0 && strncmp(seg, "../", 3) != 0 &&
				       strcmp(seg, ".") != 0 && strcmp(seg, "..") != 0;
			if (!good || strlen(pre) > 200)
				loomi_doc_errf(&conf->doc, json_object_get(ds, "prefix"), errs,
				               "datasets.prefix: \"%s\" is not a key prefix; give segments "
				               "of A-Z a-z 0-9 . _ - separated by '/', e.g. \"datasets\"",
				               pre);
			else
				conf->datasets.prefix = loomi_strdup(pre);
		}
	}

	plugins = json_object_get(root, "plugins");
	if (json_is_array(plugins)) {
		conf->plugins = loomi_xcalloc(json_array_size(plugins) + 1, sizeof *conf->plugins);
		json_array_foreach(plugins, i, v) {
			const char *inst = str_or(v, "instance", NULL);
			const char *mod = str_or(v, "module", NULL);
			const json_t *cv;
			if (!json_is_object(v) || inst == NULL || mod == NULL)
				continue; /* already reported by the schema check */
			if (!loomi_instance_name_ok(inst)) {
				loomi_doc_errf(&conf->doc, json_object_get(v, "instance"), errs,
				               "plugins[%zu].instance: \"%s\" is not a valid instance name; "
				               "use 1-64 characters: a lower-case letter, then lower-case "
				               "letters, digits, '-' or '_'",
				               i, inst);
				continue;
			}
			if (!loomi_module_name_ok(mod)) {
				loomi_doc_errf(&conf->doc, json_object_get(v, "module"), errs,
				               "plugins[%zu].module: \"%s\" is not a module name; give the "
				               "file name without directory or extension (\"storage-local\") "
				               "and list directories in plugin_path",
				               i, mod);
				continue;
			}
			for (size_t j = 0; j < conf->n_plugins; j++) {
				if (strcmp(conf->plugins[j].instance, inst) == 0) {
					loomi_doc_errf(&conf->doc, json_object_get(v, "instance"), errs,
					               "plugins[%zu].instance: \"%s\" is already defined at "
					               "line %d; give each instance its own name",
					               i, inst,
					               loomi_doc_line(&conf->doc, conf->plugins[j].node));
					inst = NULL;
					break;
				}
			}
			if (inst == NULL)
				continue;
			cv = json_object_get(v, "config");
			conf->plugins[conf->n_plugins].instance = loomi_strdup(inst);
			conf->plugins[conf->n_plugins].module = loomi_strdup(mod);
			conf->plugins[conf->n_plugins].config = json_is_object(cv) ? cv : NULL;
			conf->plugins[conf->n_plugins].node = v;
			conf->n_plugins++;
		}
	}
	free(base);
	return errs->n > before ? LOOM_ECONFIG : 0;
}

void
loomi_conf_free(loomi_conf *conf)
{
	for (size_t i = 0; i < conf->n_plugins; i++) {
		free(conf->plugins[i].instance);
		free(conf->plugins[i].module);
	}
	free(conf->plugins);
	loomi_doc_free(&conf->doc);
	free(conf->path);
	free(conf->state_dir);
	loomi_strv_free(&conf->plugin_path);
	free(conf->listen);
	loomi_strv_free(&conf->server_names);
	loomi_strv_free(&conf->data_roots);
	free(conf->log_file);
	free(conf->bus_requests);
	free(conf->bus_events);
	free(conf->jobs_worker);
	free(conf->jobs_scheduler);
	loomi_strv_free(&conf->alerts_webhook_hosts);
	free(conf->api.socket);
	free(conf->api.tls_certificate);
	free(conf->api.tls_key);
	free(conf->web_root);
	free(conf->web_dygraphs);
	free(conf->datasets.storage);
	free(conf->datasets.prefix);
	memset(conf, 0, sizeof *conf);
}

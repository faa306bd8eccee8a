/* loomd.conf: the daemon's own settings, read through the schema
 * validator.  See conf.h. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "log.h"

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
	{"log", LOOMI_F_GROUP, 0, NULL, 0, 0, log_fields, NULL},
	{"bus", LOOMI_F_GROUP, 0, NULL, 0, 0, bus_fields, NULL},
	{"jobs", LOOMI_F_GROUP, 0, NULL, 0, 0, jobs_fields, NULL},
	{"logs", LOOMI_F_GROUP, 0, NULL, 0, 0, logs_fields, NULL},
	{"alerts", LOOMI_F_GROUP, 0, NULL, 0, 0, alerts_fields, NULL},
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
		for (int k = 0; k < 2; k++) {
			int64_t ms = 0;
			v = json_object_get(jobs, k ? "heartbeat_timeout" : "tick");
			if (json_is_integer(v))
				ms = json_integer_value(v) * 1000;
			else if (json_is_real(v))
				ms = (int64_t)(json_real_value(v) * 1000);
			else if (json_is_string(v))
				loom_parse_duration(json_string_value(v), &ms);
			if (ms > 0)
				*(k ? &conf->jobs_heartbeat_ms : &conf->jobs_tick_ms) = ms;
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
	free(conf->log_file);
	free(conf->bus_requests);
	free(conf->bus_events);
	free(conf->jobs_worker);
	free(conf->jobs_scheduler);
	loomi_strv_free(&conf->alerts_webhook_hosts);
	memset(conf, 0, sizeof *conf);
}

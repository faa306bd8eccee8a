/* The system module: what loomd says about itself — its health, its
 * plugin instances, and the OpenAPI document of the whole API. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <loom/version.h>

#include "host/core/bus.h"
#include "host/core/plugins.h"
#include "host/core/util.h"
#include "api.h"
#include "auth.h"
#include "store.h"
#include "module.h"

/* Is key a credential: flagged LOOM_CONFIG_SECRET in the plugin's config
 * map, or named like one (a plugin written before the flag)? */
static bool
secret_key(const loom_plugin_desc *d, const char *key)
{
	static const char *const words[] = {"secret", "password", "passwd", "token", "credential",
	                                    "private_key"};
	for (const loom_config_entry *e = d->config; e && e->key; e++)
		if (strcmp(e->key, key) == 0 && (e->flags & LOOM_CONFIG_SECRET))
			return true;
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
		if (strstr(key, words[i]))
			return true;
	return false;
}

/* The instance's config as given, every credential's value replaced by
 * "(secret)": anyone who may read the plugin list may read this. */
static json_t *
config_shown(const loom_instance *ins)
{
	json_t *out = json_deep_copy(ins->conf.values), *v;
	const char *key;

	if (!json_is_object(out))
		return out ? out : json_null();
	json_object_foreach(out, key, v) {
		if (secret_key(ins->desc, key))
			json_object_set_new(out, key, json_string("(secret)"));
	}
	return out;
}

static json_t *
plugin_json(const loom_instance *ins, bool detail)
{
	const loom_plugin_desc *d = ins->desc;
	char abi[32];
	json_t *o;

	snprintf(abi, sizeof abi, "%u.%u", d->abi_major, d->abi_minor);
	o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "instance", ins->name, "module",
	              ins->module->name, "kind", loom_kind_name(ins->kind), "name", d->name,
	              "version", d->version, "abi", abi, "description",
	              d->description ? d->description : "");
	if (detail && o) {
		json_t *settings = json_array();
		json_object_set_new(o, "path", json_string(ins->module->path));
		json_object_set_new(o, "thread_safe",
		                    json_boolean(d->flags & LOOM_PLUGIN_THREAD_SAFE));
		json_object_set_new(o, "config", config_shown(ins));
		for (const loom_config_entry *e = d->config; e && e->key; e++) {
			json_array_append_new(settings,
			                      json_pack("{s:s, s:s?, s:s?, s:b, s:b}", "key", e->key,
			                                "default", e->def, "description",
			                                e->description, "required",
			                                (e->flags & LOOM_CONFIG_REQUIRED) != 0, "secret",
			                                secret_key(d, e->key)));
		}
		json_object_set_new(o, "settings", settings);
	}
	return o;
}

static void
get_health(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3_stmt *st = NULL;
	bool db_ok = false;
	char abi[32];
	char *state_dir = loomi_utf8_clean(loomi_strdup(d->conf.state_dir)), *cause = NULL;

	/* readable, and writable now: an acknowledged change must be stored */
	if (sqlite3_prepare_v2(d->store.db, "SELECT 1", -1, &st, NULL) == SQLITE_OK)
		db_ok = sqlite3_step(st) == SQLITE_ROW;
	if (!db_ok)
		cause = loomi_strfmt("the state database cannot be read: %s",
		                     sqlite3_errmsg(d->store.db));
	sqlite3_finalize(st);
	if (db_ok)
		db_ok = loomi_store_writable(&d->store, &cause);
	snprintf(abi, sizeof abi, "%d.%d", LOOM_ABI_MAJOR, LOOM_ABI_MINOR);
	res->status = db_ok ? 200 : 503;
	res->body = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:I, s:I, s:{s:b, s:i}}", "status",
	                      db_ok ? "ok" : "degraded", "version", LOOM_VERSION_STRING, "abi", abi,
	                      "pid", (json_int_t)getpid(), "uptime_s",
	                      (json_int_t)((loomi_mono_ns() - d->started_ns) / 1000000000ull),
	                      "state_dir", state_dir, "plugins",
	                      (json_int_t)d->plugins.n_instances, "bus_dropped",
	                      (json_int_t)(d->bus ? loomi_bus_dropped(d->bus) : 0), "database", "ok",
	                      db_ok, "schema_version", d->store.version);
	if (cause && res->body)
		json_object_set_new(json_object_get(res->body, "database"), "error",
		                    json_string(loomi_utf8_clean(cause)));
	/* anyone may ask whether loomd is up (probes carry no token); where it
	 * keeps its state and why its database fails are for signed-in users */
	if (req->caller == NULL || req->caller->role == 0) {
		json_object_del(res->body, "state_dir");
		json_object_del(res->body, "pid");
		json_object_del(json_object_get(res->body, "database"), "error");
	}
	free(cause);
	free(state_dir);
}

static void
get_plugins(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *list = json_array();

	for (size_t i = 0; i < d->plugins.n_instances; i++)
		json_array_append_new(list, plugin_json(d->plugins.instances[i], false));
	res->status = 200;
	res->body = json_pack("{s:o, s:I}", "plugins", list, "count",
	                      (json_int_t)d->plugins.n_instances);
}

static void
get_plugin(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	loom_instance *ins = loomi_instance_find(&d->plugins, req->params[0]);

	if (ins == NULL) {
		loomi_api_error(res, 404, "not_found",
		                "no plugin instance \"%s\"; GET /api/v1/plugins lists them",
		                req->params[0]);
		return;
	}
	res->status = 200;
	res->body = plugin_json(ins, true);
}

static void
get_openapi(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	(void)d;
	(void)req;
	res->status = 200;
	res->text = loomi_strdup(loomi_openapi_json);
	res->text_len = strlen(loomi_openapi_json);
	res->content_type = "application/json";
}

static const loomi_route routes[] = {
	/* public: liveness probes carry no token (get_health says less to them) */
	{"GET", "/api/v1/health", get_health, LOOMI_ACCESS_PUBLIC, NULL, .reserve = true},
	{"GET", "/api/v1/openapi.json", get_openapi, LOOMI_ACCESS_READ, NULL},
	{"GET", "/api/v1/plugins", get_plugins, LOOMI_ACCESS_READ, NULL},
	{"GET", "/api/v1/plugins/{instance}", get_plugin, LOOMI_ACCESS_READ, NULL},
};

const loomi_module loomi_system_module = {
	.name = "system",
	.routes = routes,
	.n_routes = LOOMI_N(routes),
};

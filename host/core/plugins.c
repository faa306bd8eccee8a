/* The plugin registry: find, load and check modules; create, start and stop
 * instances; the host-side wrappers of the storage kind. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bus.h"
#include "log.h"
#include "plugins.h"

#ifndef LT_MODULE_EXT
#define LT_MODULE_EXT ".so"
#endif
#ifndef LOOM_PLUGIN_DIR
#define LOOM_PLUGIN_DIR "/usr/local/lib/loom/plugins"
#endif

static int ltdl_refs;
static pthread_mutex_t ltdl_mtx = PTHREAD_MUTEX_INITIALIZER;

int
loomi_plugins_init(loomi_plugins *reg, const char *const *dirs, size_t n_dirs,
                   const char *state_dir)
{
	const char *env = getenv("LOOM_PLUGIN_PATH");

	memset(reg, 0, sizeof *reg);
	pthread_mutex_init(&reg->mtx, NULL);
	reg->state_dir = state_dir ? loomi_strdup(state_dir) : NULL;
	if (env && *env) {
		char *copy = loomi_strdup(env);
		for (char *save = NULL, *tok = strtok_r(copy, ":", &save); tok;
		     tok = strtok_r(NULL, ":", &save))
			loomi_strv_push(&reg->search, loomi_strdup(tok));
		free(copy);
	}
	for (size_t i = 0; i < n_dirs; i++)
		loomi_strv_push(&reg->search, loomi_strdup(dirs[i]));
	loomi_strv_push(&reg->search, loomi_strdup(LOOM_PLUGIN_DIR));

	pthread_mutex_lock(&ltdl_mtx);
	if (ltdl_refs++ == 0 && lt_dlinit() != 0) {
		ltdl_refs--;
		pthread_mutex_unlock(&ltdl_mtx);
		LOG_ERROR("cannot initialize libltdl: %s", lt_dlerror());
		return LOOM_EINTERNAL;
	}
	pthread_mutex_unlock(&ltdl_mtx);
	return 0;
}

static void
instance_free(loom_instance *ins)
{
	if (ins == NULL)
		return;
	free(ins->ctx);
	loomi_pconf_free(&ins->conf);
	pthread_mutex_destroy(&ins->lock);
	pthread_mutex_destroy(&ins->dir_lock);
	free(ins->name);
	free(ins->prefix);
	free(ins->state_dir);
	free(ins);
}

void
loomi_plugins_fini(loomi_plugins *reg)
{
	bool *started = loomi_xcalloc(reg->n_instances + 1, sizeof *started);

	/* First every instance stops serving: its bus services and
	 * subscriptions go (waiting for calls in progress) and the host's
	 * wrappers and lookups stop handing it out.  Only then is any fini
	 * called, so no handler of one plugin can reach another that is being
	 * torn down. */
	for (size_t i = reg->n_instances; i-- > 0;) {
		loom_instance *ins = reg->instances[i];
		if (reg->bus)
			loomi_bus_drop_owner(reg->bus, ins);
		pthread_mutex_lock(&reg->mtx);
		started[i] = ins->inited;
		ins->inited = false;
		pthread_mutex_unlock(&reg->mtx);
	}
	for (size_t i = reg->n_instances; i-- > 0;) {
		loom_instance *ins = reg->instances[i];
		if (started[i] && ins->desc->fini) {
			LOG_DEBUG("stopping plugin instance %s (%s)", ins->name, ins->module->name);
			ins->desc->fini(ins->ctx);
		}
	}
	for (size_t i = 0; i < reg->n_instances; i++)
		instance_free(reg->instances[i]);
	free(started);
	free(reg->instances);
	/* Modules stay loaded: a plugin may have left threads or atexit
	 * handlers behind, and unmapping its code under them would crash. */
	while (reg->modules) {
		loomi_plugin_module *m = reg->modules;
		reg->modules = m->next;
		free(m->name);
		free(m->path);
		free(m);
	}
	loomi_strv_free(&reg->search);
	free(reg->state_dir);
	pthread_mutex_destroy(&reg->mtx);
	memset(reg, 0, sizeof *reg);
}

/* ------------------------------------------------------------------ descriptors */

static size_t
required_ops_size(uint32_t kind)
{
	switch (kind) {
	case LOOM_KIND_STORAGE:
		return offsetof(loom_storage_ops, list) + sizeof(void *);
	case LOOM_KIND_SCHEDULER:
		return offsetof(loom_scheduler_ops, plan) + sizeof(void *);
	case LOOM_KIND_SAMPLER:
		return offsetof(loom_sampler_ops, select) + sizeof(void *);
	case LOOM_KIND_HEAD:
		return offsetof(loom_head_ops, metrics_free) + sizeof(void *);
	case LOOM_KIND_TRACKER:
		return offsetof(loom_tracker_ops, run_end) + sizeof(void *);
	case LOOM_KIND_EXPORTER:
		return offsetof(loom_exporter_ops, export_run) + sizeof(void *);
	case LOOM_KIND_COMPUTE:
		return offsetof(loom_compute_ops, run) + sizeof(void *);
	}
	return 0;
}

/* The name of the first required operation the ops table lacks, or NULL. */
static const char *
missing_op(uint32_t kind, const void *ops)
{
#define REQ(type, field)                                                                  \
	do {                                                                              \
		if (((const type *)ops)->field == NULL)                                   \
			return #field;                                                    \
	} while (0)
	switch (kind) {
	case LOOM_KIND_STORAGE:
		REQ(loom_storage_ops, put);
		REQ(loom_storage_ops, get);
		REQ(loom_storage_ops, stat);
		REQ(loom_storage_ops, remove);
		REQ(loom_storage_ops, list);
		break;
	case LOOM_KIND_SCHEDULER: {
		const loom_scheduler_ops *s = ops;
		REQ(loom_scheduler_ops, plan);
		if (s->caps & LOOM_SCHED_REMOTE) {
			/* read them only if the table is large enough to hold them */
			if (s->size < offsetof(loom_scheduler_ops, cancel) + sizeof(void *))
				return "launch";
			REQ(loom_scheduler_ops, launch);
			REQ(loom_scheduler_ops, poll);
			REQ(loom_scheduler_ops, cancel);
		}
		break;
	}
	case LOOM_KIND_SAMPLER:
		REQ(loom_sampler_ops, select);
		break;
	case LOOM_KIND_HEAD:
		REQ(loom_head_ops, configure);
		REQ(loom_head_ops, forward);
		REQ(loom_head_ops, loss);
		REQ(loom_head_ops, backward);
		REQ(loom_head_ops, predict);
		REQ(loom_head_ops, metrics_new);
		REQ(loom_head_ops, metrics_add);
		REQ(loom_head_ops, metrics_report);
		REQ(loom_head_ops, metrics_free);
		break;
	case LOOM_KIND_TRACKER:
		REQ(loom_tracker_ops, run_begin);
		REQ(loom_tracker_ops, log_metrics);
		REQ(loom_tracker_ops, run_end);
		break;
	case LOOM_KIND_EXPORTER:
		REQ(loom_exporter_ops, format);
		REQ(loom_exporter_ops, export_run);
		break;
	case LOOM_KIND_COMPUTE:
		REQ(loom_compute_ops, validate);
		REQ(loom_compute_ops, run);
		break;
	}
#undef REQ
	return NULL;
}

static size_t
config_type_size(uint32_t type)
{
	switch (type) {
	case LOOM_CONFIG_BOOL: return sizeof(bool);
	case LOOM_CONFIG_INT:
	case LOOM_CONFIG_DURATION: return sizeof(int64_t);
	case LOOM_CONFIG_DOUBLE: return sizeof(double);
	case LOOM_CONFIG_SIZE: return sizeof(uint64_t);
	case LOOM_CONFIG_STRING:
	case LOOM_CONFIG_PATH: return sizeof(char *);
	case LOOM_CONFIG_STRLIST: return sizeof(char **);
	}
	return 0;
}

static bool
config_key_ok(const char *key)
{
	if (!(key[0] >= 'a' && key[0] <= 'z'))
		return false;
	for (const char *p = key; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return false;
	}
	return strlen(key) <= 64;
}

int
loomi_desc_check(const loom_plugin_desc *d, char **why)
{
	uint32_t ops_size;

	if (d == NULL) {
		*why = loomi_strdup("its entry point returned NULL instead of a descriptor");
		return LOOM_EPLUGIN_MALFORMED;
	}
	if (d->abi_major != LOOM_ABI_MAJOR) {
		*why = loomi_strfmt("it was built for plugin ABI %u.%u, but this Loom speaks ABI "
		                    "%d.%d; rebuild the plugin against Loom's SDK %d.x",
		                    d->abi_major, d->abi_minor, LOOM_ABI_MAJOR, LOOM_ABI_MINOR,
		                    LOOM_ABI_MAJOR);
		return LOOM_EPLUGIN_ABI_MAJOR;
	}
	if (d->abi_minor > LOOM_ABI_MINOR) {
		*why = loomi_strfmt("it needs plugin ABI %u.%u, newer than this Loom's %d.%d; "
		                    "upgrade Loom, or rebuild the plugin against SDK %d.%d",
		                    d->abi_major, d->abi_minor, LOOM_ABI_MAJOR, LOOM_ABI_MINOR,
		                    LOOM_ABI_MAJOR, LOOM_ABI_MINOR);
		return LOOM_EPLUGIN_ABI_MINOR;
	}
	if (d->size < sizeof(loom_plugin_desc)) {
		*why = loomi_strfmt("its descriptor is %u bytes, smaller than ABI %d.0's %zu; "
		                    "define it with LOOM_PLUGIN_DEFINE",
		                    d->size, LOOM_ABI_MAJOR, sizeof(loom_plugin_desc));
		return LOOM_EPLUGIN_MALFORMED;
	}
	if (loom_kind_name(d->kind) == NULL || d->kind == 0) {
		*why = loomi_strfmt("its kind %u is not one of storage, scheduler, sampler, head, "
		                    "tracker, exporter, compute",
		                    d->kind);
		return LOOM_EPLUGIN_MALFORMED;
	}
	if (d->name == NULL || d->name[0] == '\0' || d->version == NULL) {
		*why = loomi_strdup("its descriptor has no name or no version");
		return LOOM_EPLUGIN_MALFORMED;
	}
	if (d->ops == NULL) {
		*why = loomi_strfmt("it has no %s ops table", loom_kind_name(d->kind));
		return LOOM_EPLUGIN_MALFORMED;
	}
	memcpy(&ops_size, d->ops, sizeof ops_size);
	if (ops_size < required_ops_size(d->kind)) {
		*why = loomi_strfmt("its %s ops table is %u bytes, too small to hold the required "
		                    "operations (%zu bytes); set .size = sizeof(loom_%s_ops)",
		                    loom_kind_name(d->kind), ops_size, required_ops_size(d->kind),
		                    loom_kind_name(d->kind));
		return LOOM_EPLUGIN_MALFORMED;
	}
	{
		const char *op = missing_op(d->kind, d->ops);
		if (op) {
			*why = loomi_strfmt("its %s ops table lacks the required operation \"%s\"",
			                    loom_kind_name(d->kind), op);
			return LOOM_EPLUGIN_MALFORMED;
		}
	}
	if (d->ctx_size > (64u << 20)) {
		*why = loomi_strfmt("it asks for a %zu-byte context; the limit is 64 MiB: allocate "
		                    "large state in init",
		                    d->ctx_size);
		return LOOM_EPLUGIN_MALFORMED;
	}
	for (const loom_config_entry *e = d->config; e && e->key; e++) {
		size_t sz = config_type_size(e->type);
		if (!config_key_ok(e->key) || sz == 0) {
			*why = loomi_strfmt("its config map entry \"%s\" has an invalid %s", e->key,
			                    sz == 0 ? "type" : "key (use [a-z][a-z0-9_]*)");
			return LOOM_EPLUGIN_MALFORMED;
		}
		for (const loom_config_entry *o = d->config; o < e; o++) {
			if (strcmp(o->key, e->key) == 0) {
				*why = loomi_strfmt("its config map declares \"%s\" twice", e->key);
				return LOOM_EPLUGIN_MALFORMED;
			}
		}
		if ((e->flags & LOOM_CONFIG_RANGE) && !(e->min <= e->max)) {
			*why = loomi_strfmt("its config map entry \"%s\" has min above max", e->key);
			return LOOM_EPLUGIN_MALFORMED;
		}
		if (e->def != NULL && !(e->flags & LOOM_CONFIG_REQUIRED)) {
			char *bad = loomi_pconf_default_check(e);
			if (bad) {
				*why = loomi_strfmt("its config map entry \"%s\" has an invalid default "
				                    "\"%s\": %s",
				                    e->key, e->def, bad);
				free(bad);
				return LOOM_EPLUGIN_MALFORMED;
			}
		}
		if (!(e->flags & LOOM_CONFIG_NOFILL) && e->offset + sz > d->ctx_size) {
			*why = loomi_strfmt("its config map entry \"%s\" writes past the end of its "
			                    "%zu-byte context (offset %zu)",
			                    e->key, d->ctx_size, e->offset);
			return LOOM_EPLUGIN_MALFORMED;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ loading */

static char *
find_module_file(loomi_plugins *reg, const char *name)
{
	static const char *const exts[] = {".la", LT_MODULE_EXT};

	for (size_t i = 0; i < reg->search.n; i++) {
		for (size_t e = 0; e < 2; e++) {
			char *file = loomi_strfmt("%s/%s%s", reg->search.v[i], name, exts[e]);
			if (access(file, F_OK) == 0)
				return file;
			free(file);
		}
	}
	return NULL;
}

/* Names of the modules present in the search path, for suggestions. */
static void
list_modules(loomi_plugins *reg, loomi_strv *names)
{
	for (size_t i = 0; i < reg->search.n; i++) {
		DIR *d = opendir(reg->search.v[i]);
		struct dirent *de;
		if (d == NULL)
			continue;
		while ((de = readdir(d)) != NULL) {
			const char *dot = strrchr(de->d_name, '.');
			if (dot && (strcmp(dot, ".la") == 0 || strcmp(dot, LT_MODULE_EXT) == 0) &&
			    dot > de->d_name)
				loomi_strv_push(names, loomi_strndup(de->d_name,
				                                     (size_t)(dot - de->d_name)));
		}
		closedir(d);
	}
}

static char *
not_found_message(loomi_plugins *reg, const char *name)
{
	loomi_strv names = {0};
	const char *best;
	char *dirs = loomi_strv_join(&reg->search, ", ");
	char *msg;

	list_modules(reg, &names);
	best = loomi_suggest(name, (const char *const *)names.v, names.n);
	if (best)
		msg = loomi_strfmt("plugin module \"%s\" not found in %s (did you mean \"%s\"?)",
		                   name, dirs, best);
	else
		msg = loomi_strfmt("plugin module \"%s\" not found in %s (looked for %s.la and "
		                   "%s" LT_MODULE_EXT "); install it there or add its directory "
		                   "to plugin_path",
		                   name, dirs, name, name);
	free(dirs);
	loomi_strv_free(&names);
	return msg;
}

int
loomi_module_load(loomi_plugins *reg, const char *name, loomi_plugin_module **out, char **err)
{
	loomi_plugin_module *m;
	lt_dladvise advise;
	lt_dlhandle h;
	loom_plugin_get_fn get;
	const loom_plugin_desc *desc;
	char *file, *why = NULL;
	int rv;

	pthread_mutex_lock(&reg->mtx);
	for (m = reg->modules; m; m = m->next) {
		if (strcmp(m->name, name) == 0) {
			pthread_mutex_unlock(&reg->mtx);
			*out = m;
			return 0;
		}
	}
	pthread_mutex_unlock(&reg->mtx);

	if (!loomi_module_name_ok(name)) {
		*err = loomi_strfmt("\"%s\" is not a plugin module name; give the file name "
		                    "without directory or extension, e.g. \"storage-local\"",
		                    name);
		return LOOM_EPLUGIN_NOTFOUND;
	}
	if ((file = find_module_file(reg, name)) == NULL) {
		*err = not_found_message(reg, name);
		return LOOM_EPLUGIN_NOTFOUND;
	}

	pthread_mutex_lock(&ltdl_mtx);
	lt_dladvise_init(&advise);
	lt_dladvise_local(&advise);
	lt_dladvise_resident(&advise);
	h = lt_dlopenadvise(file, advise);
	lt_dladvise_destroy(&advise);
	if (h == NULL) {
		const char *e = lt_dlerror();
		pthread_mutex_unlock(&ltdl_mtx);
		*err = loomi_strfmt("cannot load plugin %s: %s; check that it is a shared object "
		                    "built for this machine and that its libraries are installed "
		                    "(ldd %s)",
		                    file, e ? e : "unknown error", file);
		free(file);
		return LOOM_EPLUGIN_DLOPEN;
	}
	get = (loom_plugin_get_fn)(uintptr_t)lt_dlsym(h, "loom_plugin_get");
	pthread_mutex_unlock(&ltdl_mtx);
	if (get == NULL) {
		char *sym = loomi_strdup(name);
		for (char *p = sym; *p; p++) {
			if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			      (*p >= '0' && *p <= '9')))
				*p = '_';
		}
		*err = loomi_strfmt("%s is not a Loom plugin: it exports neither "
		                    "%s_LTX_loom_plugin_get nor loom_plugin_get; define it with "
		                    "LOOM_PLUGIN_DEFINE(%s, ...)",
		                    file, sym, sym);
		free(sym);
		free(file);
		return LOOM_EPLUGIN_NOSYM;
	}
	desc = get();
	if ((rv = loomi_desc_check(desc, &why)) != 0) {
		*err = loomi_strfmt("cannot use plugin %s: %s", file, why);
		free(why);
		free(file);
		return rv;
	}

	m = loomi_xcalloc(1, sizeof *m);
	m->name = loomi_strdup(name);
	m->path = file;
	m->handle = h;
	m->desc = desc;
	pthread_mutex_lock(&reg->mtx);
	m->next = reg->modules;
	reg->modules = m;
	pthread_mutex_unlock(&reg->mtx);
	LOG_DEBUG("loaded plugin module %s from %s (%s %s, ABI %u.%u)", name, file, desc->name,
	          desc->version, desc->abi_major, desc->abi_minor);
	*out = m;
	return 0;
}

/* ------------------------------------------------------------------ instances */

loom_instance *
loomi_instance_find(loomi_plugins *reg, const char *name)
{
	loom_instance *found = NULL;
	pthread_mutex_lock(&reg->mtx);
	for (size_t i = 0; i < reg->n_instances; i++) {
		if (strcmp(reg->instances[i]->name, name) == 0)
			found = reg->instances[i];
	}
	pthread_mutex_unlock(&reg->mtx);
	return found;
}

int
loomi_instance_create(loomi_plugins *reg, const loomi_doc *doc, const loomi_plugin_conf *pc,
                      loom_instance **out, loomi_strv *errs)
{
	loomi_plugin_module *m;
	loom_instance *ins;
	char *err = NULL, *prefix, *base;
	int rv, problems;

	if (loomi_instance_find(reg, pc->instance)) {
		loomi_doc_errf(doc, pc->node, errs, "plugin instance \"%s\" is defined twice",
		               pc->instance);
		return LOOM_EEXIST;
	}
	if ((rv = loomi_module_load(reg, pc->module, &m, &err)) != 0) {
		loomi_doc_errf(doc, pc->node, errs, "plugin \"%s\": %s", pc->instance, err);
		free(err);
		return rv;
	}
	ins = loomi_xcalloc(1, sizeof *ins);
	ins->name = loomi_strdup(pc->instance);
	ins->module = m;
	ins->desc = m->desc;
	ins->kind = m->desc->kind;
	ins->prefix = loomi_strfmt("%s:%s", loom_kind_name(ins->kind), ins->name);
	ins->reg = reg;
	pthread_mutex_init(&ins->lock, NULL);
	pthread_mutex_init(&ins->dir_lock, NULL);
	if ((ins->ctx = loomi_aligned_zalloc(m->desc->ctx_size)) == NULL) {
		instance_free(ins);
		return LOOM_ENOMEM;
	}

	prefix = loomi_strfmt("plugin \"%s\" (%s): config", pc->instance, pc->module);
	base = reg->state_dir ? loomi_strfmt("%s/plugins/%s", reg->state_dir, ins->name) : NULL;
	problems = loomi_pconf_apply(doc, pc->config, pc->node, m->desc->config, prefix, base,
	                             ins->ctx, &ins->conf, errs);
	free(prefix);
	free(base);
	if (problems) {
		instance_free(ins);
		return LOOM_ECONFIG;
	}

	pthread_mutex_lock(&reg->mtx);
	if (reg->n_instances == reg->cap_instances) {
		reg->cap_instances = reg->cap_instances ? reg->cap_instances * 2 : 8;
		reg->instances = loomi_xrealloc(reg->instances,
		                                reg->cap_instances * sizeof *reg->instances);
	}
	reg->instances[reg->n_instances++] = ins;
	pthread_mutex_unlock(&reg->mtx);
	*out = ins;
	return 0;
}

int
loomi_instance_start(loom_instance *ins, char **err)
{
	int rv;

	if (ins->desc->init == NULL) {
		ins->inited = true;
		return 0;
	}
	rv = ins->desc->init(ins, loomi_host_services(), ins->ctx);
	if (rv != 0) {
		if (ins->reg->bus)
			loomi_bus_drop_owner(ins->reg->bus, ins);
		*err = loomi_strfmt("plugin \"%s\" (%s) failed to initialize: %s (%s); the log "
		                    "lines of [%s] say why",
		                    ins->name, ins->module->name, loom_strerror(rv), loom_errname(rv),
		                    ins->prefix);
		return LOOM_EPLUGIN_INIT;
	}
	ins->inited = true;
	LOG_INFO("started plugin instance %s (%s %s)", ins->name, ins->desc->name,
	         ins->desc->version);
	return 0;
}

/* ------------------------------------------------------------------ storage wrappers */

#define STORAGE_OPS(ins) ((const loom_storage_ops *)(ins)->desc->ops)

static int
storage_enter(loom_instance *ins)
{
	if (ins == NULL || ins->kind != LOOM_KIND_STORAGE)
		return LOOM_EINVAL;
	if (!ins->inited)
		return LOOM_ESTATE; /* never started, or its init failed */
	if (!(ins->desc->flags & LOOM_PLUGIN_THREAD_SAFE))
		pthread_mutex_lock(&ins->lock);
	return 0;
}

static void
storage_leave(loom_instance *ins)
{
	if (!(ins->desc->flags & LOOM_PLUGIN_THREAD_SAFE))
		pthread_mutex_unlock(&ins->lock);
}

/* Call an op: enter (lock unless thread-safe), LOOM_ENOTSUP when the plugin
 * lacks it, leave.  Arguments are checked by the callers first. */
#define STORAGE_CALL(ins, field, ...)                                                     \
	do {                                                                              \
		int rv_;                                                                  \
		if ((rv_ = storage_enter(ins)) != 0)                                      \
			return rv_;                                                       \
		if (!LOOM_OPS_HAS(STORAGE_OPS(ins), field))                               \
			rv_ = LOOM_ENOTSUP;                                               \
		else                                                                      \
			rv_ = STORAGE_OPS(ins)->field(ins->ctx, __VA_ARGS__);             \
		storage_leave(ins);                                                       \
		return rv_;                                                               \
	} while (0)

#define CHECK_KEY(key)                                                                    \
	do {                                                                              \
		if (loom_key_check(key) != 0)                                             \
			return LOOM_EINVAL;                                               \
	} while (0)

int
loomi_storage_put(loom_instance *ins, const char *key, const void *data, size_t len)
{
	CHECK_KEY(key);
	if (data == NULL && len > 0)
		return LOOM_EINVAL;
	STORAGE_CALL(ins, put, key, data, len);
}

int
loomi_storage_get(loom_instance *ins, const char *key, void **data, size_t *len)
{
	CHECK_KEY(key);
	if (data == NULL || len == NULL)
		return LOOM_EINVAL;
	STORAGE_CALL(ins, get, key, data, len);
}

int
loomi_storage_stat(loom_instance *ins, const char *key, loom_blob_stat *st)
{
	CHECK_KEY(key);
	if (st == NULL)
		return LOOM_EINVAL;
	STORAGE_CALL(ins, stat, key, st);
}

int
loomi_storage_remove(loom_instance *ins, const char *key)
{
	CHECK_KEY(key);
	STORAGE_CALL(ins, remove, key);
}

int
loomi_storage_list(loom_instance *ins, const char *prefix, loom_storage_list_fn fn, void *arg)
{
	if (loom_key_prefix_check(prefix) != 0 || fn == NULL)
		return LOOM_EINVAL;
	STORAGE_CALL(ins, list, prefix, fn, arg);
}

int
loomi_storage_read(loom_instance *ins, const char *key, uint64_t offset, void *buf, size_t len,
                   size_t *nread)
{
	CHECK_KEY(key);
	if ((buf == NULL && len > 0) || nread == NULL)
		return LOOM_EINVAL;
	STORAGE_CALL(ins, read, key, offset, buf, len, nread);
}

int
loomi_storage_put_if(loom_instance *ins, const char *key, const void *data, size_t len,
                     uint64_t if_etag, uint64_t *etag)
{
	CHECK_KEY(key);
	if (data == NULL && len > 0)
		return LOOM_EINVAL;
	STORAGE_CALL(ins, put_if, key, data, len, if_etag, etag);
}

int
loomi_storage_local_path(loom_instance *ins, const char *key, char **path)
{
	CHECK_KEY(key);
	if (path == NULL)
		return LOOM_EINVAL;
	STORAGE_CALL(ins, local_path, key, path);
}

int
loomi_storage_write_open(loom_instance *ins, const char *key, void **writer)
{
	CHECK_KEY(key);
	if (writer == NULL)
		return LOOM_EINVAL;
	STORAGE_CALL(ins, write_open, key, writer);
}

int
loomi_storage_write(loom_instance *ins, void *writer, const void *data, size_t len)
{
	if (writer == NULL || (data == NULL && len > 0))
		return LOOM_EINVAL;
	STORAGE_CALL(ins, write, writer, data, len);
}

int
loomi_storage_write_commit(loom_instance *ins, void *writer)
{
	if (writer == NULL)
		return LOOM_EINVAL;
	STORAGE_CALL(ins, write_commit, writer);
}

void
loomi_storage_write_abort(loom_instance *ins, void *writer)
{
	if (writer == NULL || storage_enter(ins) != 0)
		return;
	if (LOOM_OPS_HAS(STORAGE_OPS(ins), write_abort))
		STORAGE_OPS(ins)->write_abort(ins->ctx, writer);
	storage_leave(ins);
}

int
loomi_storage_ref(loomi_plugins *reg, const char *ref, loom_instance **ins, const char **key)
{
	const char *colon = ref ? strchr(ref, ':') : NULL;
	char name[72];
	loom_instance *found;

	if (colon == NULL || colon == ref || (size_t)(colon - ref) >= sizeof name ||
	    loom_key_check(colon + 1) != 0)
		return LOOM_EINVAL;
	memcpy(name, ref, (size_t)(colon - ref));
	name[colon - ref] = '\0';
	found = loomi_instance_find(reg, name);
	if (found == NULL || found->kind != LOOM_KIND_STORAGE || !found->inited)
		return LOOM_ENOENT;
	*ins = found;
	*key = colon + 1;
	return 0;
}

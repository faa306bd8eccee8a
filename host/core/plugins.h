/* The plugin registry: loading modules with libltdl, checking their
 * descriptors, creating instances from config groups, calling init and
 * fini, and the host-side wrappers plugins are called through. */
#ifndef LOOM_HOST_PLUGINS_H
#define LOOM_HOST_PLUGINS_H

#include <pthread.h>
#include <stdbool.h>

#include <ltdl.h>

#include <loom/loom.h>

#include "conf.h"
#include "util.h"

struct loomi_bus;

/* A loaded module.  Never unloaded while the daemon runs. */
typedef struct loomi_plugin_module {
	char *name;                    /* as configured: "storage-local" */
	char *path;                    /* the file loaded */
	lt_dlhandle handle;
	const loom_plugin_desc *desc;
	struct loomi_plugin_module *next;
} loomi_plugin_module;

typedef struct loomi_plugins loomi_plugins;

/* An instance (the SDK's opaque loom_instance). */
struct loom_instance {
	char *name;                    /* "store" */
	char *prefix;                  /* "storage:store", for log lines */
	loomi_plugin_module *module;
	const loom_plugin_desc *desc;
	uint32_t kind;
	void *ctx;                     /* desc->ctx_size bytes, 64-aligned */
	loomi_pconf conf;              /* validated settings */
	char *state_dir;               /* created on first use */
	pthread_mutex_t lock;          /* serializes ops without THREAD_SAFE */
	pthread_mutex_t dir_lock;      /* guards state_dir (taken inside ops too) */
	bool inited;
	loomi_plugins *reg;
};

struct loomi_plugins {
	loomi_strv search;             /* directories, in order */
	char *state_dir;               /* the daemon's state directory */
	struct loomi_bus *bus;         /* may be NULL (tools, tests) */
	loomi_plugin_module *modules;
	loom_instance **instances;
	size_t n_instances, cap_instances;
	pthread_mutex_t mtx;
};

/* Set up a registry searching dirs (then the built-in plugin directory
 * and LOOM_PLUGIN_PATH's entries first when set). */
int loomi_plugins_init(loomi_plugins *reg, const char *const *dirs, size_t n_dirs,
                       const char *state_dir);
/* fini every started instance in reverse order and free the registry.
 * Modules stay mapped (STYLE: never dlclose). */
void loomi_plugins_fini(loomi_plugins *reg);

/* Find and load a module, checking its descriptor.  On failure returns one
 * of the LOOM_EPLUGIN_* codes with a message in *err (free it). */
int loomi_module_load(loomi_plugins *reg, const char *name, loomi_plugin_module **out, char **err);

/* Check a descriptor (exposed for tests).  On failure returns a
 * LOOM_EPLUGIN_* code with the reason in *why (free it). */
int loomi_desc_check(const loom_plugin_desc *desc, char **why);

/* Load pc's module and create its instance: validate its config group
 * against the module's map and fill its context.  Does not call init.
 * Problems go to errs. */
int loomi_instance_create(loomi_plugins *reg, const loomi_doc *doc,
                          const loomi_plugin_conf *pc, loom_instance **out, loomi_strv *errs);
/* Call init; on failure returns LOOM_EPLUGIN_INIT with *err set. */
int loomi_instance_start(loom_instance *ins, char **err);

loom_instance *loomi_instance_find(loomi_plugins *reg, const char *name);

/* The host-services table handed to plugins. */
const loom_host *loomi_host_services(void);

/* ------------------------------------------------------------------ wrappers */

/* Storage, by instance.  Keys and arguments are checked here; calls into a
 * plugin without LOOM_PLUGIN_THREAD_SAFE are serialized.  A non-storage
 * instance gives LOOM_EINVAL, one that is not started LOOM_ESTATE, a missing
 * optional op LOOM_ENOTSUP. */
int loomi_storage_put(loom_instance *ins, const char *key, const void *data, size_t len);
int loomi_storage_get(loom_instance *ins, const char *key, void **data, size_t *len);
int loomi_storage_stat(loom_instance *ins, const char *key, loom_blob_stat *st);
int loomi_storage_remove(loom_instance *ins, const char *key);
int loomi_storage_list(loom_instance *ins, const char *prefix, loom_storage_list_fn fn,
                       void *arg);
int loomi_storage_read(loom_instance *ins, const char *key, uint64_t offset, void *buf,
                       size_t len, size_t *nread);
int loomi_storage_put_if(loom_instance *ins, const char *key, const void *data, size_t len,
                         uint64_t if_etag, uint64_t *etag);
int loomi_storage_local_path(loom_instance *ins, const char *key, char **path);
/* Streaming writes: open, write any number of times, then commit or abort
 * (both release the writer). */
int loomi_storage_write_open(loom_instance *ins, const char *key, void **writer);
int loomi_storage_write(loom_instance *ins, void *writer, const void *data, size_t len);
int loomi_storage_write_commit(loom_instance *ins, void *writer);
void loomi_storage_write_abort(loom_instance *ins, void *writer);

/* Resolve "<instance>:<key>" to a started storage instance and the key
 * (pointing into ref).  LOOM_EINVAL for a malformed ref, LOOM_ENOENT for no
 * such storage instance. */
int loomi_storage_ref(loomi_plugins *reg, const char *ref, loom_instance **ins,
                      const char **key);

#endif /* LOOM_HOST_PLUGINS_H */

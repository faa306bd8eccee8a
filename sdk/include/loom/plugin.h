/* <loom/plugin.h> — the plugin ABI: one exported entry point returning a
 * const descriptor.  See loom-plugin(7).
 *
 *   #include <loom/storage.h>
 *
 *   static const loom_storage_ops ops = { .size = sizeof ops, ... };
 *
 *   LOOM_PLUGIN_DEFINE(storage_memory,
 *       .kind = LOOM_KIND_STORAGE,
 *       .name = "storage-memory",
 *       .version = "1.0.0",
 *       .description = "blobs kept in memory",
 *       .config = config_map,
 *       .ctx_size = sizeof(struct ctx),
 *       .init = memory_init,
 *       .fini = memory_fini,
 *       .ops = &ops)
 *
 * The first argument is the module's file name with every character that is
 * not a letter or digit replaced by '_': the macro exports
 * storage_memory_LTX_loom_plugin_get, which libltdl finds for the file
 * storage-memory.so, and which lets many plugins be linked into one binary
 * without clashing.  The host also accepts a plain loom_plugin_get.
 *
 * The host checks, before it calls anything: abi_major equal to its own,
 * abi_minor not newer than its own, size at least that of ABI 1.0's
 * descriptor, a known kind, a name, a version, init and an ops table whose
 * size covers its kind's required operations. */
#ifndef LOOM_PLUGIN_H
#define LOOM_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include <loom/error.h>
#include <loom/host.h>
#include <loom/types.h>
#include <loom/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The seven kinds of plugin (SPEC §3).  Each has an ops table in its own
 * header: <loom/storage.h>, <loom/scheduler.h>, <loom/sampler.h>,
 * <loom/head.h>, <loom/tracker.h>, <loom/exporter.h>, <loom/compute.h>. */
typedef enum loom_kind {
	LOOM_KIND_STORAGE = 1,
	LOOM_KIND_SCHEDULER = 2,
	LOOM_KIND_SAMPLER = 3,
	LOOM_KIND_HEAD = 4,
	LOOM_KIND_TRACKER = 5,
	LOOM_KIND_EXPORTER = 6,
	LOOM_KIND_COMPUTE = 7,
} loom_kind;

#define LOOM_KIND_MAX 7

/* Descriptor flags. */
/* The ops may be called from several threads at once.  Without this flag
 * the host serializes calls into an instance. */
#define LOOM_PLUGIN_THREAD_SAFE 0x1u
/* The plugin runs commands (or other code) of its user's choosing, as the
 * daemon's user: a compute plugin like compute-exec.  loomd lets only users
 * with the exec permission submit tasks to it (docs/security.md).  Hosts
 * that predate the flag ignore it. */
#define LOOM_PLUGIN_RUNS_COMMANDS 0x2u

/* The plugin descriptor: a const object with static storage duration. */
typedef struct loom_plugin_desc {
	uint16_t abi_major;       /* LOOM_ABI_MAJOR the plugin was built against */
	uint16_t abi_minor;       /* LOOM_ABI_MINOR the plugin was built against */
	uint32_t size;            /* sizeof(loom_plugin_desc) as compiled */
	uint32_t kind;            /* loom_kind */
	uint32_t flags;           /* LOOM_PLUGIN_* */
	const char *name;         /* module name, "storage-local" */
	const char *version;      /* the plugin's own version, "1.2.0" */
	const char *description;  /* one line */
	const loom_config_entry *config; /* settings it accepts; NULL: none */
	size_t ctx_size;          /* bytes of per-instance context the host
	                           * allocates (zeroed, 64-byte aligned) and
	                           * fills from the config map */
	/* Called once per instance after the context is filled.  Return 0, or
	 * a LOOM_E* code after logging why through host->log. */
	int (*init)(loom_instance *ins, const loom_host *host, void *ctx);
	/* Called once per instance at shutdown, after its bus registrations
	 * are gone; frees what init took.  May be NULL. */
	void (*fini)(void *ctx);
	const void *ops;          /* the kind's ops table, e.g. loom_storage_ops */
	const void *reserved[8];
} loom_plugin_desc;

/* The entry point's type. */
typedef const loom_plugin_desc *(*loom_plugin_get_fn)(void);

/* Every ops table begins with its size, so the host knows which fields a
 * plugin built against an older minor has.  LOOM_OPS_HAS(ops, field) is
 * true when the table has the field and it is set. */
#define LOOM_OPS_HAS(ops, field)                                                     \
	((offsetof(__typeof__(*(ops)), field) + sizeof((ops)->field) <=              \
	  (size_t)(ops)->size) &&                                                      \
	 (ops)->field != NULL)

#ifdef __cplusplus
#define LOOM_EXTERN_C extern "C"
#else
#define LOOM_EXTERN_C
#endif

#define LOOM_PLUGIN_DEFINE(sym, ...)                                                 \
	static const loom_plugin_desc sym##_loom_plugin_desc_ = {                    \
	    .abi_major = LOOM_ABI_MAJOR,                                             \
	    .abi_minor = LOOM_ABI_MINOR,                                             \
	    .size = sizeof(loom_plugin_desc),                                        \
	    __VA_ARGS__};                                                            \
	LOOM_EXTERN_C LOOM_EXPORT const loom_plugin_desc *sym##_LTX_loom_plugin_get(void); \
	LOOM_EXTERN_C const loom_plugin_desc *sym##_LTX_loom_plugin_get(void)        \
	{                                                                            \
		return &sym##_loom_plugin_desc_;                                     \
	}

/* Name of a kind ("storage"), or NULL. */
const char *loom_kind_name(uint32_t kind);

/* Parse a kind name; 0 when it is not one. */
uint32_t loom_kind_parse(const char *name);

/* The Loom release libloom belongs to, "0.1.0". */
const char *loom_version(void);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_PLUGIN_H */

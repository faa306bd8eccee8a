/* The storage conformance suite: what every storage plugin must do, checked
 * by loading the plugin for real and calling it as loomd does — through the
 * host's wrappers (loomi_storage_*) and, where the plugin itself must be
 * proven to refuse something, directly through its ops table.
 *
 *   static const sc_target target = {"storage-local", "root = \"@DIR@/blobs\";"};
 *   sc_add_conformance(suite, &target);
 *
 * Also the helpers the plugin-specific suites share: starting an instance
 * in a registry of its own, and asserting on blobs. */
#ifndef LOOM_TEST_STORAGE_CONFORMANCE_H
#define LOOM_TEST_STORAGE_CONFORMANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <check.h>

#include "host/core/plugins.h"

/* The plugin under test. */
typedef struct sc_target {
	const char *module; /* "storage-local" */
	/* The body of the instance's config group, libconfig syntax; every
	 * "@DIR@" is replaced by the test's own fresh temporary directory. */
	const char *config;
	/* rounds of each concurrency race (0: 50); a remote store's requests
	 * cost milliseconds, where a local one's cost microseconds */
	int rounds;
} sc_target;

/* A started instance named "s" in a registry of its own, searching
 * $LOOM_TEST_PLUGINS, with state directory DIR/state. */
typedef struct sc_store {
	loomi_plugins reg;
	loomi_doc doc;
	loom_instance *ins;
	const loom_storage_ops *ops; /* the plugin's own table */
	bool reg_up, doc_up;
} sc_store;

/* Load module and start an instance whose config group body is config
 * ("@DIR@" replaced by dir).  Returns 0, or the code of the step that
 * failed (LOOM_ECONFIG, LOOM_EPLUGIN_INIT …) with its messages in *err (free
 * it).  Never asserts, so a fork()ed child may call it.  Close the store
 * in either case. */
int sc_store_open(sc_store *st, const char *module, const char *config, const char *dir,
                  char **err);
/* sc_store_open that fails the test on any error. */
void sc_store_start(sc_store *st, const char *module, const char *config, const char *dir);
/* fini the instance and free the registry; safe on a store that failed
 * to open, and twice. */
void sc_store_close(sc_store *st);

/* "@DIR@" in text replaced by dir (free it). */
char *sc_subst_dir(const char *text, const char *dir);

/* len bytes of a deterministic pseudo-random pattern (free it). */
unsigned char *sc_pattern(size_t len, uint64_t seed);

/* Assertions through the wrappers. */
void sc_put(loom_instance *ins, const char *key, const void *data, size_t len);
void sc_put_str(loom_instance *ins, const char *key, const char *text);
void sc_assert_blob(loom_instance *ins, const char *key, const void *data, size_t len);
void sc_assert_str(loom_instance *ins, const char *key, const char *text);
/* get, stat, read and remove all say LOOM_ENOENT. */
void sc_assert_absent(loom_instance *ins, const char *key);

/* The keys list gives for prefix, in the order given, joined by ' ' ("" for
 * none); asserts list returned 0.  Free it. */
char *sc_list_keys(loom_instance *ins, const char *prefix);

/* Add the conformance test cases for target to s.  target must outlive
 * the run of the suite. */
void sc_add_conformance(Suite *s, const sc_target *target);

#endif

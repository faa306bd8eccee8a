/* Config documents and their validation, and plugin config maps.
 *
 * The documents (loomi_doc: libconfig or JSON, every value's file and
 * line), the schemas (loomi_field, loomi_schema_check) and JSON written
 * back as libconfig (loomi_json_to_libconfig) are sdk/libloom/doc.h, code
 * the host shares with libloom, whose <loom/spec.h> offers them to plugins.
 * loomd.conf is read through them.  Here: plugin config groups checked
 * against a plugin's loom_config_entry map and filled into its context. */
#ifndef LOOM_HOST_SCHEMA_H
#define LOOM_HOST_SCHEMA_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include <loom/host.h>

#include "sdk/libloom/doc.h"
#include "util.h"

/* ------------------------------------------------------------------ plugin config maps */

/* The values of a plugin config group after validation: types normalized
 * (sizes in bytes, durations in ms, paths resolved), defaults applied. */
typedef struct loomi_pconf {
	json_t *values;                    /* key → value */
	loomi_strv strings;                /* storage for strings filled into ctx */
	struct loomi_pconf_list {
		char *key;
		char **items;              /* NULL-terminated */
	} *lists;                          /* storage for string lists */
	size_t n_lists;
} loomi_pconf;

/* Validate group (may be NULL: no settings given) against map, naming
 * problems with prefix ("plugin \"store\" (storage-local): config").  When
 * ctx is not NULL, write each value at ctx + offset.  Relative PATH values
 * resolve against base_dir.  Returns the number of problems. */
int loomi_pconf_apply(const loomi_doc *doc, const json_t *group, const json_t *owner,
                      const loom_config_entry *map, const char *prefix,
                      const char *base_dir, void *ctx, loomi_pconf *out, loomi_strv *errs);
void loomi_pconf_free(loomi_pconf *pc);
/* Why a map entry's default is unusable, or NULL when it is fine (free it). */
char *loomi_pconf_default_check(const loom_config_entry *e);
/* The NULL-terminated list stored for key, or NULL. */
char **loomi_pconf_strlist(const loomi_pconf *pc, const char *key);

#endif /* LOOM_HOST_SCHEMA_H */

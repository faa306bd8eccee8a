/* Versioned datasets: what other services may ask of the datasets module
 * (host/datasets/datasets.c; docs/datasets.md).
 *
 * A task names a version of a dataset where it would name a file:
 * data.path = "dataset:NAME@REF" (REF a version id, a unique prefix of at
 * least 8 of its hex digits, a tag or a branch; without "@REF" the
 * dataset's default branch).  loomd resolves it at submission, writes that
 * version once as a CSV file in the state directory, and hands the task the
 * file; the version id goes into the run's lineage. */
#ifndef LOOM_HOST_DATASETS_H
#define LOOM_HOST_DATASETS_H

#include <stdbool.h>

#include <jansson.h>

#include "host/server/daemon.h"

struct loomi_caller; /* host/server/auth.h */

/* Does value name a dataset ("dataset:…") rather than a file? */
bool loomi_dataset_is_ref(const char *value);

/* Resolve value ("dataset:NAME@REF") for caller, who must be able to read
 * the dataset (LOOM_ENOENT otherwise, as for a dataset that does not
 * exist); write the version as CSV to STATE_DIR/datasets/checkouts/<id>.csv
 * unless it is there already (atomically: a reader never sees half a
 * file); the checkout is audited.  *path: that file (free it); *info:
 * {"name", "ref", "version"} (a new reference).  key names the setting in
 * messages ("data.path").  0, or a LOOM_E* code with *msg. */
int loomi_dataset_materialize(loomi_daemon *d, const struct loomi_caller *caller,
                              const char *key, const char *value, char **path,
                              json_t **info, char **msg);

/* Commit the CSV file path as a new version of branch of dataset, as
 * caller (who needs write access), with message; the dataset (owned by
 * caller) and the branch (from the default branch's head) are created when
 * absent.  Takes and releases the branch's lock; a lock held by another is
 * LOOM_EBUSY with *msg naming the holder.  version: the new version's id. */
int loomi_dataset_commit_file(loomi_daemon *d, const struct loomi_caller *caller,
                              const char *dataset, const char *branch, const char *path,
                              const char *message, char version[65], char **msg);

#endif /* LOOM_HOST_DATASETS_H */

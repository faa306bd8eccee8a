/* The datasets module's own pieces, shared by datasets.c (datasets,
 * refs, uploads, locks, quotas, gc and audit in the state store) and
 * datasets-api.c (the REST routes).  Not for other services: they use
 * datasets.h. */
#ifndef LOOM_HOST_DATASETS_INT_H
#define LOOM_HOST_DATASETS_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

#include "host/server/api.h"
#include "host/server/auth.h"
#include "host/server/daemon.h"
#include "dslib.h"

#define DSM "datasets" /* the module's name, in logs */

/* An error as the routes answer it: a LOOM_E* code, the API's code
 * string ("locked", "conflict", "quota_exceeded" …; NULL: the code's
 * usual one) and the message. */
typedef struct dserr {
	int rv;
	const char *code;
	char *msg;
} dserr;

int dse(dserr *e, int rv, const char *code, const char *fmt, ...) LOOM_PRINTF(4, 5);
void dserr_free(dserr *e);
/* The HTTP status of e. */
int dserr_status(const dserr *e);

/* 1..64 of [A-Za-z0-9._-], not starting with '.' or '-'. */
bool ds_name_ok(const char *s);
/* 0, or LOOM_EINVAL naming field. */
int ds_name_check(const char *field, const char *s, dserr *e);

/* A row of datasets. */
typedef struct ds_row {
	int64_t id;
	char *name, *owner, *description, *default_branch;
	int64_t created_at;
} ds_row;

void ds_row_free(ds_row *r);
/* 0, or LOOM_ENOENT ("there is no dataset"). */
int ds_load(sqlite3 *db, const char *name, ds_row *r, dserr *e);
/* The dataset called name, when caller may do access to it: 0, LOOM_ENOENT
 * (missing or not visible: the same words) or LOOM_EPERM (visible only). */
int ds_access(loomi_daemon *d, const loomi_caller *c, const char *name, int access, ds_row *r,
              dserr *e);

/* The version REF names in dataset r (a full id, a branch, a tag, a unique
 * prefix of ≥ 8 hex digits: in that order; a name that is both a branch
 * and a tag is ambiguous, 409).  LOOM_ENOENT when nothing matches or the
 * branch has no version yet. */
int ds_resolve(sqlite3 *db, const ds_row *r, const char *ref, char id[DS_HEX_LEN + 1],
               dserr *e);
/* A branch's head ("" when the branch has no version yet): 0, or
 * LOOM_ENOENT when there is no such branch. */
int ds_branch_head(sqlite3 *db, int64_t dataset_id, const char *branch,
                   char head[DS_HEX_LEN + 1], dserr *e);
/* The manifest of version id (decoded; free with ds_manifest_free). */
int ds_manifest_load(sqlite3 *db, const char *id, ds_manifest *m, dserr *e);
/* Version id's content id (and its rows and chunks; either may be NULL)
 * from its row alone, without the manifest: 0, or LOOM_ENOENT. */
int ds_content_of(sqlite3 *db, const char *id, char content[DS_HEX_LEN + 1], uint64_t *rows,
                  uint64_t *n_chunks);

/* The module's settings, as loomd.conf gave them or their defaults. */
typedef struct ds_settings {
	const char *storage;       /* the instance's name */
	const char *chunk_prefix;  /* "<prefix>/chunks" */
	ds_params params;
	int64_t lock_ttl_ms;
	uint64_t quota;            /* default per user; 0: none */
	uint64_t part_max;
} ds_settings;
const ds_settings *ds_settings_get(void);

/* The storage instance holding the chunks, started; NULL with e set (503:
 * loomd.conf declares none by that name). */
loom_instance *ds_storage(loomi_daemon *d, dserr *e);
/* A source reading chunks from it (arg: the instance). */
ds_source ds_source_of(loom_instance *ins);

/* ------------------------------------------------------------------ JSON */

json_t *ds_iso(int64_t ms);
json_t *ds_dataset_json(sqlite3 *db, const ds_row *r, bool detail, int64_t now);
json_t *ds_branches_json(sqlite3 *db, const ds_row *r, int64_t now);
json_t *ds_tags_json(sqlite3 *db, const ds_row *r);

/* ------------------------------------------------------------------ operations */

/* An audit line: a dataset_audit row (in the caller's transaction, if
 * any) and loomi_audit().  bytes < 0: none. */
void ds_audit(sqlite3 *db, const loomi_caller *c, const char *dataset, const char *action,
              const char *version, const char *ref, int64_t bytes, const char *detail);

int ds_create(loomi_daemon *d, const loomi_caller *c, const char *name, const char *description,
              const char *default_branch, ds_row *out, dserr *e);
int ds_delete(loomi_daemon *d, const loomi_caller *c, const ds_row *r, dserr *e);

/* Uploads: begin takes the branch's lock (creating the branch from the
 * default branch's head when absent) and answers {upload, branch, parent,
 * lock}; parts feed the importer in order; commit moves the branch in one
 * transaction; abort releases the lock.  parent_ref NULL: the head. */
int ds_upload_begin(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *branch,
                    const char *format, const char *parent_ref, json_t **out, dserr *e);
int ds_upload_part(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *upload,
                   int64_t part, const void *data, size_t len, json_t **out, dserr *e);
int ds_upload_commit(loomi_daemon *d, const loomi_caller *c, const ds_row *r,
                     const char *upload, const char *message, const char *parent_ref,
                     json_t **out, dserr *e);
int ds_upload_abort(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *upload,
                    dserr *e);

/* Locks: take or renew (ttl_ms 0: lock_ttl) as "manual"; release (holder
 * or admin). */
int ds_lock(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *branch,
            int64_t ttl_ms, json_t **out, dserr *e);
int ds_unlock(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *branch,
              dserr *e);

int ds_branch_create(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *name,
                     const char *from, json_t **out, dserr *e);
int ds_branch_delete(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *name,
                     dserr *e);
int ds_tag_create(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *name,
                  const char *ref, json_t **out, dserr *e);
int ds_tag_delete(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *name,
                  dserr *e);
int ds_merge(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *into,
             const char *from, json_t **out, dserr *e);

/* gc: versions no ref reaches, then chunks no version or open upload
 * references, older than grace_s. */
int ds_gc(loomi_daemon *d, const loomi_caller *c, int64_t grace_s, json_t **out, dserr *e);

/* A user's quota (their own, or the default) and stored bytes. */
int ds_quota_get(loomi_daemon *d, const char *user, json_t **out, dserr *e);
/* max_bytes < 0: back to the default. */
int ds_quota_set(loomi_daemon *d, const loomi_caller *c, const char *user, int64_t max_bytes,
                 json_t **out, dserr *e);
uint64_t ds_used_bytes(sqlite3 *db, const char *user);

/* The module's life (datasets.c), for datasets-api.c's loomi_module. */
int ds_module_init(loomi_daemon *d, char **err);
int ds_module_start(loomi_daemon *d, char **err);
void ds_module_stop(loomi_daemon *d);
extern const char ds_migration_sql[];

#endif /* LOOM_HOST_DATASETS_INT_H */

/* Versioned datasets: datasets, versions, branches and tags, leases on
 * branches, uploads, quotas, gc and audit in the state store; chunks in a
 * storage plugin through dslib.h.  The routes are datasets-api.c's.
 *
 * Crash safety.  An upload's chunks are stored (a storage put, atomic)
 * before their dataset_chunks rows; a commit then, in ONE transaction,
 * checks the branch's head and the lock, inserts the version's manifest
 * and moves the branch.  So loomd killed at any moment leaves the old or
 * the new head, and every chunk a committed version names is stored.
 *
 * gc and writers.  One mutex (mu) guards the table of open uploads and
 * the question "is this chunk stored?": put_chunk asks it, and records
 * the hash in its upload, under mu; gc holds mu from the moment it
 * decides which chunks nothing references (versions in its transaction's
 * snapshot, and every open upload's hashes) until their rows and blobs
 * are gone.  So a chunk an upload counted as stored is never deleted
 * under it, and a commit re-checks inside its transaction that every
 * chunk of its manifest has its row.  Lock order: mu, then the store's
 * connection; never mu inside a transaction. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <loom/error.h>
#include <loom/types.h>

#include "host/core/log.h"
#include "host/core/plugins.h"
#include "host/core/util.h"
#include "host/server/store.h"
#include "datasets-int.h"
#include "datasets.h"

const char ds_migration_sql[] =
	"CREATE TABLE datasets (\n"
	"  id             INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"  name           TEXT NOT NULL UNIQUE,\n"
	"  owner          TEXT NOT NULL,\n"
	"  description    TEXT NOT NULL DEFAULT '',\n"
	"  default_branch TEXT NOT NULL DEFAULT 'main',\n"
	"  created_at     INTEGER NOT NULL\n"
	");\n"
	/* id: the SHA-256 of manifest, hex; parents: a JSON array of ids;
	 * content: the content id (ds_manifest_content_id), equal for two
	 * versions of the same rows.  manifest comes last: a column after a
	 * blob that spills onto overflow pages is read by walking them all */
	"CREATE TABLE dataset_versions (\n"
	"  id         TEXT PRIMARY KEY,\n"
	"  dataset_id INTEGER NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,\n"
	"  parents    TEXT NOT NULL CHECK (json_valid(parents)),\n"
	"  author     TEXT NOT NULL,\n"
	"  message    TEXT NOT NULL,\n"
	"  rows       INTEGER NOT NULL,\n"
	"  bytes      INTEGER NOT NULL,\n"
	"  stored     INTEGER NOT NULL,\n"
	"  n_chunks   INTEGER NOT NULL,\n"
	"  created_at INTEGER NOT NULL,\n"
	"  content    TEXT NOT NULL,\n"
	"  manifest   BLOB NOT NULL\n"
	");\n"
	"CREATE INDEX dataset_versions_by_dataset ON dataset_versions (dataset_id, created_at);\n"
	/* version NULL: a branch made before the dataset had any version */
	"CREATE TABLE dataset_refs (\n"
	"  dataset_id INTEGER NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,\n"
	"  kind       TEXT NOT NULL CHECK (kind IN ('branch','tag')),\n"
	"  name       TEXT NOT NULL,\n"
	"  version    TEXT,\n"
	"  user       TEXT NOT NULL,\n"
	"  updated_at INTEGER NOT NULL,\n"
	"  PRIMARY KEY (dataset_id, kind, name)\n"
	");\n"
	/* a lease: free once expires_ms has passed; upload: "up-…" or "manual" */
	"CREATE TABLE dataset_locks (\n"
	"  dataset_id INTEGER NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,\n"
	"  branch     TEXT NOT NULL,\n"
	"  holder     TEXT NOT NULL,\n"
	"  upload     TEXT NOT NULL,\n"
	"  expires_ms INTEGER NOT NULL,\n"
	"  PRIMARY KEY (dataset_id, branch)\n"
	");\n"
	/* user: the first writer, charged with stored bytes */
	"CREATE TABLE dataset_chunks (\n"
	"  hash       BLOB PRIMARY KEY,\n"
	"  raw        INTEGER NOT NULL,\n"
	"  stored     INTEGER NOT NULL,\n"
	"  user       TEXT NOT NULL,\n"
	"  created_ms INTEGER NOT NULL\n"
	") WITHOUT ROWID;\n"
	"CREATE INDEX dataset_chunks_by_user ON dataset_chunks (user, stored);\n"
	"CREATE TABLE dataset_quotas (\n"
	"  user      TEXT PRIMARY KEY,\n"
	"  max_bytes INTEGER NOT NULL CHECK (max_bytes >= 0)\n"
	");\n"
	"CREATE TABLE dataset_audit (\n"
	"  id      INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"  time_ms INTEGER NOT NULL,\n"
	"  user    TEXT,\n"
	"  dataset TEXT,\n"
	"  action  TEXT NOT NULL,\n"
	"  version TEXT,\n"
	"  ref     TEXT,\n"
	"  bytes   INTEGER,\n"
	"  detail  TEXT\n"
	");\n"
	"CREATE INDEX dataset_audit_by_dataset ON dataset_audit (dataset, id);\n";

/* ------------------------------------------------------------------ state */

typedef struct upload {
	char id[32];               /* "up-" + 24 hex digits */
	int64_t dataset_id;
	char *dataset, *branch, *format;
	char parent[DS_HEX_LEN + 1]; /* the commit's expected head; "" for none */
	char user[LOOMI_USER_NAME_MAX + 1];
	ds_importer *im;
	int64_t next_part;
	int64_t expires_ms;
	bool busy;                 /* a part or the commit runs on it */
	bool dead;                 /* aborted while busy: freed by its runner */
	ds_hash *hashes;           /* every chunk it put (gc keeps them) */
	size_t n_hashes, cap_hashes;
	ds_hash *fresh;            /* the chunks it stored first (charged to it) */
	size_t n_fresh, cap_fresh;
	int64_t first_fresh_ms;
	uint64_t reserved;         /* stored bytes being written, not yet rows */
	uint64_t new_bytes, new_chunks, chunks, bytes_in;
	struct wjob **jobs;        /* chunks handed to the writers, not yet rows */
	size_t n_jobs, cap_jobs;
	bool w_failed;             /* a writer could not store one (under W.mu) */
	struct upload *next;
} upload;

/* A chunk handed to the writers (see "chunk writers" below). */
typedef struct wjob {
	struct wjob *next;         /* in W's queue */
	upload *u;
	ds_hash hash;
	uint64_t raw;
	size_t zlen;
	void *z;                   /* the compressed bytes; freed once stored */
	int rv;
	char *msg;
	bool done;                 /* under W.mu */
	bool fresh;                /* its row was inserted by upload_flush */
} wjob;

static struct {
	loomi_daemon *d;
	ds_settings s;
	char *chunk_prefix;
	char *checkout_dir;
	pthread_mutex_t mu;
	upload *uploads;
	int crash;                 /* LOOM_TEST_DATASETS_CRASH: 1 after-chunks, 2 after-manifest */
} M = {.mu = PTHREAD_MUTEX_INITIALIZER};

const ds_settings *
ds_settings_get(void)
{
	return &M.s;
}

/* ------------------------------------------------------------------ errors */

int
dse(dserr *e, int rv, const char *code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	free(e->msg);
	e->msg = loomi_vstrfmt(fmt, ap);
	va_end(ap);
	e->rv = rv;
	e->code = code;
	return rv;
}

void
dserr_free(dserr *e)
{
	free(e->msg);
	memset(e, 0, sizeof *e);
}

int
dserr_status(const dserr *e)
{
	switch (e->rv) {
	case LOOM_EINVAL: return 400;
	case LOOM_EPERM: return 403;
	case LOOM_ENOENT: return 404;
	case LOOM_EEXIST:
	case LOOM_EBUSY:
	case LOOM_ECONFLICT:
	case LOOM_ESTATE: return 409;
	case LOOM_ERANGE: return 413;
	case LOOM_EIO: return 503;
	default: return 500;
	}
}

/* A failed statement: LOOM_EIO with store.h's message. */
static int
db_fail(sqlite3 *db, dserr *e, const char *what)
{
	char *msg = NULL;
	int rv = loomi_store_failed(db, DSM, what, &msg);
	free(e->msg);
	e->msg = msg;
	e->rv = rv;
	e->code = "unavailable";
	return rv;
}

static sqlite3_stmt *
prep(sqlite3 *db, const char *sql)
{
	return loomi_store_prep(db, DSM, sql);
}

static int
step_done(sqlite3 *db, sqlite3_stmt *st, dserr *e, const char *what)
{
	char *msg = NULL;
	int rv = loomi_store_step_done(db, st, DSM, what, &msg);
	if (rv != 0) {
		free(e->msg);
		e->msg = msg;
		e->rv = rv;
		e->code = "unavailable";
	}
	return rv;
}

/* begin / end as store.h's, with e */
static int
tx_begin(sqlite3 *db, bool write, dserr *e)
{
	char *msg = NULL;
	int rv = loomi_store_begin(db, write, &msg);
	if (rv != 0)
		dse(e, rv, rv == LOOM_EBUSY ? "busy" : "unavailable", "%s", msg ? msg : "?");
	free(msg);
	return rv;
}

static int
tx_end(sqlite3 *db, int rv, dserr *e)
{
	char *msg = NULL;
	int r = loomi_store_end(db, rv, &msg);
	if (rv == 0 && r != 0)
		dse(e, r, "unavailable", "%s", msg ? msg : "the transaction did not commit");
	free(msg);
	return r;
}

static const char *
col_text(sqlite3_stmt *st, int col)
{
	const char *s = (const char *)sqlite3_column_text(st, col);
	return s ? s : "";
}

json_t *
ds_iso(int64_t ms)
{
	char *s = loomi_iso_time(ms);
	json_t *v = json_string(s);
	free(s);
	return v;
}

/* ------------------------------------------------------------------ names */

bool
ds_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64 || s[0] == '.' || s[0] == '-')
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '_' || *p == '-' || *p == '.'))
			return false;
	return true;
}

int
ds_name_check(const char *field, const char *s, dserr *e)
{
	if (s == NULL || !ds_name_ok(s))
		return dse(e, LOOM_EINVAL, "invalid",
		           "%s: expected 1 to 64 of A-Z a-z 0-9 . _ - not starting with '.' or '-'%s%s%s",
		           field, s ? ", not \"" : "", s ? s : "", s ? "\"" : "");
	return 0;
}

static bool
is_hex(const char *s, size_t min, size_t max)
{
	size_t n = strlen(s);
	if (n < min || n > max)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

/* ------------------------------------------------------------------ datasets */

void
ds_row_free(ds_row *r)
{
	free(r->name);
	free(r->owner);
	free(r->description);
	free(r->default_branch);
	memset(r, 0, sizeof *r);
}

int
ds_load(sqlite3 *db, const char *name, ds_row *r, dserr *e)
{
	sqlite3_stmt *st = prep(db, "SELECT id, name, owner, description, default_branch, "
	                            "created_at FROM datasets WHERE name = ?");
	int rv = 0;

	memset(r, 0, sizeof *r);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		r->id = sqlite3_column_int64(st, 0);
		r->name = loomi_strdup(col_text(st, 1));
		r->owner = loomi_strdup(col_text(st, 2));
		r->description = loomi_strdup(col_text(st, 3));
		r->default_branch = loomi_strdup(col_text(st, 4));
		r->created_at = sqlite3_column_int64(st, 5);
	} else {
		rv = dse(e, LOOM_ENOENT, "not_found",
		         "there is no dataset \"%s\"; GET /api/v1/datasets (loomctl data list) lists them",
		         name);
	}
	sqlite3_finalize(st);
	return rv;
}

/* auth.h's loomi_owner_fn for kind "dataset": a dataset's id in shares is
 * its name. */
static int
dataset_owner(loomi_daemon *d, const char *name, char **owner, char canon[LOOMI_OBJECT_ID_MAX])
{
	sqlite3_stmt *st;
	int rv = LOOM_ENOENT;

	if (strlen(name) >= LOOMI_OBJECT_ID_MAX)
		return LOOM_ENOENT;
	st = prep(d->store.db, "SELECT owner, name FROM datasets WHERE name = ?");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		*owner = loomi_strdup(col_text(st, 0));
		snprintf(canon, LOOMI_OBJECT_ID_MAX, "%s", col_text(st, 1));
		rv = 0;
	}
	sqlite3_finalize(st);
	return rv;
}

int
ds_access(loomi_daemon *d, const loomi_caller *c, const char *name, int access, ds_row *r,
          dserr *e)
{
	int rv = ds_load(d->store.db, name, r, e);
	if (rv != 0)
		return rv;
	if (!loomi_auth_may(d, c, "dataset", r->name, r->owner, LOOMI_ACCESS_READ)) {
		ds_row_free(r);
		return dse(e, LOOM_ENOENT, "not_found",
		           "there is no dataset \"%s\"; GET /api/v1/datasets (loomctl data list) lists "
		           "them",
		           name);
	}
	if (access > LOOMI_ACCESS_READ && !loomi_auth_may(d, c, "dataset", r->name, r->owner, access)) {
		rv = dse(e, LOOM_EPERM, "forbidden",
		         "dataset \"%s\" is %s's and shared with you for reading only; ask them for a "
		         "write share (loomctl share dataset %s %s write)",
		         r->name, r->owner, r->name, c->name);
		ds_row_free(r);
	}
	return rv;
}

/* ------------------------------------------------------------------ audit */

void
ds_audit(sqlite3 *db, const loomi_caller *c, const char *dataset, const char *action,
         const char *version, const char *ref, int64_t bytes, const char *detail)
{
	sqlite3_stmt *st = prep(db, "INSERT INTO dataset_audit (time_ms, user, dataset, action, "
	                            "version, ref, bytes, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
	if (st) {
		sqlite3_bind_int64(st, 1, loomi_wall_ms());
		sqlite3_bind_text(st, 2, c ? c->name : NULL, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, dataset, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, action, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, version && version[0] ? version : NULL, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 6, ref, -1, SQLITE_STATIC);
		if (bytes >= 0)
			sqlite3_bind_int64(st, 7, bytes);
		sqlite3_bind_text(st, 8, detail, -1, SQLITE_STATIC);
		loomi_store_wrote(db, sqlite3_step(st));
		sqlite3_finalize(st);
	}
	{
		char b[32] = "";
		if (bytes >= 0)
			snprintf(b, sizeof b, " bytes=%" PRId64, bytes);
		loomi_audit(c, "dataset %s: %s%s%s%s%s%s%s%s", dataset ? dataset : "-", action,
		            ref ? " ref=" : "", ref ? ref : "", version && version[0] ? " version=" : "",
		            version && version[0] ? version : "", b, detail ? ": " : "",
		            detail ? detail : "");
	}
}

/* ------------------------------------------------------------------ refs */

int
ds_branch_head(sqlite3 *db, int64_t dataset_id, const char *branch, char head[DS_HEX_LEN + 1],
               dserr *e)
{
	sqlite3_stmt *st = prep(db, "SELECT version FROM dataset_refs WHERE dataset_id = ? AND "
	                            "kind = 'branch' AND name = ?");
	int rv = 0;

	head[0] = '\0';
	sqlite3_bind_int64(st, 1, dataset_id);
	sqlite3_bind_text(st, 2, branch, -1, SQLITE_STATIC);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		snprintf(head, DS_HEX_LEN + 1, "%s", col_text(st, 0));
	else if (st)
		rv = dse(e, LOOM_ENOENT, "not_found", "dataset has no branch \"%s\"", branch);
	else
		rv = db_fail(db, e, "read a branch");
	sqlite3_finalize(st);
	return rv;
}

int
ds_resolve(sqlite3 *db, const ds_row *r, const char *ref, char id[DS_HEX_LEN + 1], dserr *e)
{
	sqlite3_stmt *st;
	int n = 0, rv = 0;
	bool branch = false, tag = false;
	char bv[DS_HEX_LEN + 1] = "", tv[DS_HEX_LEN + 1] = "";

	if (ref == NULL || ref[0] == '\0' || strlen(ref) > 64)
		return dse(e, LOOM_EINVAL, "invalid",
		           "ref: expected a version id, a prefix of at least 8 of its hex digits, a "
		           "branch or a tag of dataset %s",
		           r->name);
	/* a full id */
	if (is_hex(ref, DS_HEX_LEN, DS_HEX_LEN)) {
		st = prep(db, "SELECT 1 FROM dataset_versions WHERE id = ? AND dataset_id = ?");
		sqlite3_bind_text(st, 1, ref, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, r->id);
		n = st && sqlite3_step(st) == SQLITE_ROW;
		sqlite3_finalize(st);
		if (n) {
			memcpy(id, ref, DS_HEX_LEN + 1);
			return 0;
		}
	}
	/* names */
	st = prep(db, "SELECT kind, version FROM dataset_refs WHERE dataset_id = ? AND name = ?");
	sqlite3_bind_int64(st, 1, r->id);
	sqlite3_bind_text(st, 2, ref, -1, SQLITE_STATIC);
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		if (strcmp(col_text(st, 0), "branch") == 0) {
			branch = true;
			snprintf(bv, sizeof bv, "%s", col_text(st, 1));
		} else {
			tag = true;
			snprintf(tv, sizeof tv, "%s", col_text(st, 1));
		}
	}
	sqlite3_finalize(st);
	if (branch && tag)
		return dse(e, LOOM_ECONFLICT, "ambiguous",
		           "\"%s\" is both a branch and a tag of dataset %s; name the version by its "
		           "id, or delete one of them",
		           ref, r->name);
	if (branch && bv[0] == '\0')
		return dse(e, LOOM_ENOENT, "not_found",
		           "branch %s of dataset %s has no version yet; upload one first", ref, r->name);
	if (branch || tag) {
		memcpy(id, branch ? bv : tv, DS_HEX_LEN + 1);
		return 0;
	}
	/* a unique prefix */
	if (is_hex(ref, 8, DS_HEX_LEN - 1)) {
		char *like = loomi_strfmt("%s%%", ref);
		st = prep(db, "SELECT id FROM dataset_versions WHERE dataset_id = ? AND id LIKE ? "
		              "LIMIT 2");
		sqlite3_bind_int64(st, 1, r->id);
		sqlite3_bind_text(st, 2, like, -1, SQLITE_STATIC);
		n = 0;
		while (st && sqlite3_step(st) == SQLITE_ROW) {
			if (n++ == 0)
				snprintf(id, DS_HEX_LEN + 1, "%s", col_text(st, 0));
		}
		sqlite3_finalize(st);
		free(like);
		if (n == 1)
			return 0;
		if (n > 1)
			return dse(e, LOOM_ECONFLICT, "ambiguous",
			           "\"%s\" is the prefix of several versions of dataset %s; give more "
			           "digits",
			           ref, r->name);
	}
	rv = dse(e, LOOM_ENOENT, "not_found",
	         "dataset %s has no version, branch or tag \"%s\"; GET "
	         "/api/v1/datasets/%s (loomctl data show %s) lists its branches and tags",
	         r->name, ref, r->name, r->name);
	return rv;
}

int
ds_manifest_load(sqlite3 *db, const char *id, ds_manifest *m, dserr *e)
{
	sqlite3_stmt *st = prep(db, "SELECT manifest FROM dataset_versions WHERE id = ?");
	int rv;

	memset(m, 0, sizeof *m);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		char *err = NULL;
		rv = ds_manifest_decode(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0),
		                        m, &err);
		if (rv != 0)
			dse(e, rv, "corrupt", "version %s: its manifest cannot be read: %s", id,
			    err ? err : "?");
		free(err);
	} else {
		rv = st ? dse(e, LOOM_ENOENT, "not_found", "there is no version %s", id)
		        : db_fail(db, e, "read a manifest");
	}
	sqlite3_finalize(st);
	return rv;
}

int
ds_content_of(sqlite3 *db, const char *id, char content[DS_HEX_LEN + 1], uint64_t *rows,
              uint64_t *n_chunks)
{
	sqlite3_stmt *st =
		prep(db, "SELECT content, rows, n_chunks FROM dataset_versions WHERE id = ?");
	const unsigned char *c;
	int rv = LOOM_ENOENT;

	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if (st && sqlite3_step(st) == SQLITE_ROW && (c = sqlite3_column_text(st, 0)) != NULL &&
	    strlen((const char *)c) == DS_HEX_LEN) {
		memcpy(content, c, DS_HEX_LEN + 1);
		if (rows)
			*rows = (uint64_t)sqlite3_column_int64(st, 1);
		if (n_chunks)
			*n_chunks = (uint64_t)sqlite3_column_int64(st, 2);
		rv = 0;
	}
	sqlite3_finalize(st);
	return rv;
}

/* ------------------------------------------------------------------ storage */

loom_instance *
ds_storage(loomi_daemon *d, dserr *e)
{
	loom_instance *ins = loomi_instance_find(&d->plugins, M.s.storage);
	if (ins == NULL || ins->kind != LOOM_KIND_STORAGE || !ins->inited) {
		dse(e, LOOM_ESTATE, "unavailable",
		    "datasets.storage names the storage instance \"%s\", which loomd.conf's plugins do "
		    "not declare (or which is not a started storage plugin); add one, e.g. { instance "
		    "= \"%s\"; module = \"storage-local\"; }, or set datasets.storage",
		    M.s.storage, M.s.storage);
		e->rv = LOOM_EIO; /* 503: loomd cannot serve it as configured */
		return NULL;
	}
	return ins;
}

static int
get_chunk(void *arg, const ds_chunk *c, void **zdata, size_t *zlen, char **err)
{
	char key[512], hex[DS_HEX_LEN + 1];
	int rv;

	ds_chunk_key(M.chunk_prefix, &c->hash, key, sizeof key);
	rv = loomi_storage_get(arg, key, zdata, zlen);
	if (rv != 0) {
		ds_hash_hex(&c->hash, hex);
		*err = loomi_strfmt("chunk %s (%s): %s", hex, key,
		                    rv == LOOM_ENOENT ? "missing from storage" : loom_strerror(rv));
	}
	return rv;
}

ds_source
ds_source_of(loom_instance *ins)
{
	ds_source s = {ins, get_chunk};
	return s;
}

/* ------------------------------------------------------------------ quotas */

uint64_t
ds_used_bytes(sqlite3 *db, const char *user)
{
	sqlite3_stmt *st = prep(db, "SELECT coalesce(sum(stored), 0) FROM dataset_chunks WHERE "
	                            "user = ?");
	uint64_t n = 0;

	sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		n = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}

/* The user's quota: their own, else the default; 0: none.  *own: whether
 * they have their own. */
static uint64_t
quota_of(sqlite3 *db, const char *user, bool *own)
{
	sqlite3_stmt *st = prep(db, "SELECT max_bytes FROM dataset_quotas WHERE user = ?");
	uint64_t q = M.s.quota;

	*own = false;
	sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		q = (uint64_t)sqlite3_column_int64(st, 0);
		*own = true;
	}
	sqlite3_finalize(st);
	return q;
}

int
ds_quota_get(loomi_daemon *d, const char *user, json_t **out, dserr *e)
{
	sqlite3 *db = d->store.db;
	bool own;
	uint64_t q, used;
	int rv;

	if ((rv = tx_begin(db, false, e)) != 0)
		return rv;
	q = quota_of(db, user, &own);
	used = ds_used_bytes(db, user);
	tx_end(db, 0, e);
	*out = json_pack("{sssIsIsb}", "user", user, "max_bytes", (json_int_t)q, "used_bytes",
	                 (json_int_t)used, "default", !own);
	return 0;
}

int
ds_quota_set(loomi_daemon *d, const loomi_caller *c, const char *user, int64_t max_bytes,
             json_t **out, dserr *e)
{
	sqlite3 *db = d->store.db;
	sqlite3_stmt *st;
	char detail[64];
	int rv;

	if ((rv = tx_begin(db, true, e)) != 0)
		return rv;
	if (max_bytes < 0) {
		st = prep(db, "DELETE FROM dataset_quotas WHERE user = ?");
		sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
		snprintf(detail, sizeof detail, "quota back to the default");
	} else {
		st = prep(db, "INSERT INTO dataset_quotas (user, max_bytes) VALUES (?, ?) ON CONFLICT "
		              "(user) DO UPDATE SET max_bytes = excluded.max_bytes");
		sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, max_bytes);
		snprintf(detail, sizeof detail, "quota of %s: %" PRId64 " bytes", user, max_bytes);
	}
	rv = step_done(db, st, e, "set the quota");
	if (rv == 0)
		ds_audit(db, c, NULL, "quota", NULL, user, max_bytes, detail);
	if ((rv = tx_end(db, rv, e)) != 0)
		return rv;
	return ds_quota_get(d, user, out, e);
}

/* ------------------------------------------------------------------ dataset JSON */

static json_t *
lock_json(sqlite3 *db, int64_t dataset_id, const char *branch, int64_t now)
{
	sqlite3_stmt *st = prep(db, "SELECT holder, upload, expires_ms FROM dataset_locks WHERE "
	                            "dataset_id = ? AND branch = ? AND expires_ms > ?");
	json_t *o = NULL;

	sqlite3_bind_int64(st, 1, dataset_id);
	sqlite3_bind_text(st, 2, branch, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		o = json_pack("{sssssoss}", "holder", col_text(st, 0), "upload", col_text(st, 1),
		              "expires", ds_iso(sqlite3_column_int64(st, 2)), "branch", branch);
	sqlite3_finalize(st);
	return o;
}

json_t *
ds_branches_json(sqlite3 *db, const ds_row *r, int64_t now)
{
	sqlite3_stmt *st = prep(db, "SELECT name, version, user, updated_at FROM dataset_refs "
	                            "WHERE dataset_id = ? AND kind = 'branch' ORDER BY name");
	json_t *a = json_array();

	sqlite3_bind_int64(st, 1, r->id);
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		json_t *b = json_pack("{sssosssosb}", "name", col_text(st, 0), "version",
		                      sqlite3_column_type(st, 1) == SQLITE_NULL
		                          ? json_null()
		                          : json_string(col_text(st, 1)),
		                      "user", col_text(st, 2), "updated",
		                      ds_iso(sqlite3_column_int64(st, 3)), "default",
		                      strcmp(col_text(st, 0), r->default_branch) == 0);
		json_t *l = lock_json(db, r->id, col_text(st, 0), now);
		if (l) {
			json_object_del(l, "branch");
			json_object_set_new(b, "lock", l);
		}
		json_array_append_new(a, b);
	}
	sqlite3_finalize(st);
	return a;
}

json_t *
ds_tags_json(sqlite3 *db, const ds_row *r)
{
	sqlite3_stmt *st = prep(db, "SELECT name, version, user, updated_at FROM dataset_refs "
	                            "WHERE dataset_id = ? AND kind = 'tag' ORDER BY name");
	json_t *a = json_array();

	sqlite3_bind_int64(st, 1, r->id);
	while (st && sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(a, json_pack("{ssssssso}", "name", col_text(st, 0), "version",
		                                   col_text(st, 1), "user", col_text(st, 2), "created",
		                                   ds_iso(sqlite3_column_int64(st, 3))));
	sqlite3_finalize(st);
	return a;
}

json_t *
ds_dataset_json(sqlite3 *db, const ds_row *r, bool detail, int64_t now)
{
	json_t *o = json_pack("{sssssssssoso}", "name", r->name, "owner", r->owner, "description",
	                      r->description, "default_branch", r->default_branch, "created",
	                      ds_iso(r->created_at), "head", json_null());
	json_t *br = ds_branches_json(db, r, now), *tg = ds_tags_json(db, r);
	char head[DS_HEX_LEN + 1];
	dserr e = {0};
	sqlite3_stmt *st;

	json_object_set_new(o, "rows", json_integer(0));
	json_object_set_new(o, "bytes", json_integer(0));
	json_object_set_new(o, "stored", json_integer(0));
	if (ds_branch_head(db, r->id, r->default_branch, head, &e) == 0 && head[0]) {
		json_object_set_new(o, "head", json_string(head));
		st = prep(db, "SELECT rows, bytes, stored, n_chunks FROM dataset_versions WHERE id = ?");
		sqlite3_bind_text(st, 1, head, -1, SQLITE_STATIC);
		if (st && sqlite3_step(st) == SQLITE_ROW) {
			json_object_set_new(o, "rows", json_integer(sqlite3_column_int64(st, 0)));
			json_object_set_new(o, "bytes", json_integer(sqlite3_column_int64(st, 1)));
			json_object_set_new(o, "stored", json_integer(sqlite3_column_int64(st, 2)));
			json_object_set_new(o, "chunks", json_integer(sqlite3_column_int64(st, 3)));
		}
		sqlite3_finalize(st);
	}
	dserr_free(&e);
	st = prep(db, "SELECT count(*) FROM dataset_versions WHERE dataset_id = ?");
	sqlite3_bind_int64(st, 1, r->id);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		json_object_set_new(o, "versions", json_integer(sqlite3_column_int64(st, 0)));
	sqlite3_finalize(st);
	if (detail) {
		json_object_set_new(o, "branches", br);
		json_object_set_new(o, "tags", tg);
	} else {
		json_object_set_new(o, "branches", json_integer((json_int_t)json_array_size(br)));
		json_object_set_new(o, "tags", json_integer((json_int_t)json_array_size(tg)));
		json_decref(br);
		json_decref(tg);
	}
	return o;
}

/* ------------------------------------------------------------------ create, delete */

int
ds_create(loomi_daemon *d, const loomi_caller *c, const char *name, const char *description,
          const char *default_branch, ds_row *out, dserr *e)
{
	sqlite3 *db = d->store.db;
	sqlite3_stmt *st;
	int rv;

	if ((rv = ds_name_check("name", name, e)) != 0)
		return rv;
	if (strcmp(name, "gc") == 0 || strcmp(name, "quotas") == 0)
		return dse(e, LOOM_EINVAL, "invalid",
		           "name: \"%s\" is reserved (/api/v1/datasets/%s is a route of its own); "
		           "choose another name",
		           name, name);
	if (default_branch == NULL)
		default_branch = "main";
	if ((rv = ds_name_check("default_branch", default_branch, e)) != 0)
		return rv;
	if (description == NULL)
		description = "";
	if (strlen(description) > 4096)
		return dse(e, LOOM_EINVAL, "invalid", "description: at most 4096 bytes, not %zu",
		           strlen(description));
	{
		char *m = NULL;
		if (loomi_name_text_check("description", description, &m) != 0) {
			rv = dse(e, LOOM_EINVAL, "invalid", "%s", m);
			free(m);
			return rv;
		}
	}
	if ((rv = tx_begin(db, true, e)) != 0)
		return rv;
	st = prep(db, "INSERT INTO datasets (name, owner, description, default_branch, created_at) "
	              "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, c->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, description, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, default_branch, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, loomi_wall_ms());
	rv = step_done(db, st, e, "create the dataset");
	if (rv == 0 && sqlite3_changes(db) == 0)
		rv = dse(e, LOOM_EEXIST, "exists",
		         "name: a dataset called \"%s\" exists; choose another name", name);
	if (rv == 0)
		ds_audit(db, c, name, "create", NULL, NULL, -1, NULL);
	if (rv == 0 && out)
		rv = ds_load(db, name, out, e);
	return tx_end(db, rv, e);
}

static void upload_kill_dataset(int64_t dataset_id);

int
ds_delete(loomi_daemon *d, const loomi_caller *c, const ds_row *r, dserr *e)
{
	sqlite3 *db = d->store.db;
	sqlite3_stmt *st;
	int rv;

	if (strcmp(c->name, r->owner) != 0 && c->role != LOOMI_ROLE_ADMIN)
		return dse(e, LOOM_EPERM, "forbidden",
		           "dataset %s is %s's: only they or an admin may delete it", r->name, r->owner);
	if ((rv = tx_begin(db, true, e)) != 0)
		return rv;
	/* refs, versions and locks go with it (ON DELETE CASCADE); chunks stay
	 * for gc, which may find other datasets using them */
	st = prep(db, "DELETE FROM datasets WHERE id = ?");
	sqlite3_bind_int64(st, 1, r->id);
	rv = step_done(db, st, e, "delete the dataset");
	if (rv == 0)
		ds_audit(db, c, r->name, "delete", NULL, NULL, -1, NULL);
	rv = tx_end(db, rv, e);
	if (rv == 0)
		upload_kill_dataset(r->id);
	return rv;
}

/* ------------------------------------------------------------------ locks */

/* The lock row of a branch, if live: 0 and holder/upload/expires, or
 * LOOM_ENOENT when free. */
static int
lock_read(sqlite3 *db, int64_t dataset_id, const char *branch, int64_t now,
          char holder[LOOMI_USER_NAME_MAX + 1], char upl[32], int64_t *expires)
{
	sqlite3_stmt *st = prep(db, "SELECT holder, upload, expires_ms FROM dataset_locks WHERE "
	                            "dataset_id = ? AND branch = ? AND expires_ms > ?");
	int rv = LOOM_ENOENT;

	sqlite3_bind_int64(st, 1, dataset_id);
	sqlite3_bind_text(st, 2, branch, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		snprintf(holder, LOOMI_USER_NAME_MAX + 1, "%s", col_text(st, 0));
		snprintf(upl, 32, "%s", col_text(st, 1));
		*expires = sqlite3_column_int64(st, 2);
		rv = 0;
	}
	sqlite3_finalize(st);
	return rv;
}

static int
locked_error(dserr *e, const char *dataset, const char *branch, const char *holder,
             const char *upl, int64_t expires)
{
	char *until = loomi_iso_time(expires);
	int rv;
	if (strcmp(upl, "manual") == 0)
		rv = dse(e, LOOM_EBUSY, "locked",
		         "branch %s of dataset %s is locked by %s until %s (a lock taken with loomctl "
		         "data lock); work on a branch of your own, or ask them to unlock it",
		         branch, dataset, holder, until);
	else
		rv = dse(e, LOOM_EBUSY, "locked",
		         "branch %s of dataset %s is locked by %s until %s (upload %s); work on a "
		         "branch of your own, or retry once it is committed",
		         branch, dataset, holder, until, upl);
	free(until);
	return rv;
}

/* Inside a write transaction: take branch's lock for c as upl ("up-…"
 * or "manual") until expires.  A live lock of another holder, or of
 * another upload, is LOOM_EBUSY; c's own manual lock is taken over. */
static int
lock_take_tx(sqlite3 *db, const loomi_caller *c, const ds_row *r, const char *branch,
             const char *upl, int64_t expires, dserr *e)
{
	char holder[LOOMI_USER_NAME_MAX + 1], cur[32];
	int64_t until;
	sqlite3_stmt *st;

	if (lock_read(db, r->id, branch, loomi_wall_ms(), holder, cur, &until) == 0) {
		bool mine = strcmp(holder, c->name) == 0 &&
		            (strcmp(cur, "manual") == 0 || strcmp(cur, upl) == 0);
		if (!mine)
			return locked_error(e, r->name, branch, holder, cur, until);
		if (strcmp(upl, "manual") == 0)
			upl = cur; /* renewing keeps the upload it serves */
	}
	st = prep(db, "INSERT INTO dataset_locks (dataset_id, branch, holder, upload, expires_ms) "
	              "VALUES (?, ?, ?, ?, ?) ON CONFLICT (dataset_id, branch) DO UPDATE SET "
	              "holder = excluded.holder, upload = excluded.upload, expires_ms = "
	              "excluded.expires_ms");
	sqlite3_bind_int64(st, 1, r->id);
	sqlite3_bind_text(st, 2, branch, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, c->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, upl, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 5, expires);
	return step_done(db, st, e, "take the lock");
}

int
ds_lock(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *branch,
        int64_t ttl_ms, json_t **out, dserr *e)
{
	sqlite3 *db = d->store.db;
	char head[DS_HEX_LEN + 1];
	int64_t expires = loomi_wall_ms() + (ttl_ms > 0 ? ttl_ms : M.s.lock_ttl_ms);
	int rv;

	if ((rv = ds_name_check("branch", branch, e)) != 0)
		return rv;
	if ((rv = tx_begin(db, true, e)) != 0)
		return rv;
	rv = ds_branch_head(db, r->id, branch, head, e);
	if (rv == LOOM_ENOENT)
		dse(e, rv, "not_found", "dataset %s has no branch %s; create it first (POST "
		                        "/api/v1/datasets/%s/branches)",
		    r->name, branch, r->name);
	if (rv == 0)
		rv = lock_take_tx(db, c, r, branch, "manual", expires, e);
	if (rv == 0) {
		*out = lock_json(db, r->id, branch, loomi_wall_ms());
		ds_audit(db, c, r->name, "lock", NULL, branch, -1, NULL);
	}
	return tx_end(db, rv, e);
}

int
ds_unlock(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *branch,
          dserr *e)
{
	sqlite3 *db = d->store.db;
	char holder[LOOMI_USER_NAME_MAX + 1], upl[32];
	int64_t until;
	sqlite3_stmt *st;
	int rv;

	if ((rv = tx_begin(db, true, e)) != 0)
		return rv;
	if (lock_read(db, r->id, branch, loomi_wall_ms(), holder, upl, &until) != 0)
		rv = dse(e, LOOM_ENOENT, "not_found", "branch %s of dataset %s is not locked", branch,
		         r->name);
	else if (strcmp(holder, c->name) != 0 && c->role != LOOMI_ROLE_ADMIN)
		rv = dse(e, LOOM_EPERM, "forbidden",
		         "branch %s of dataset %s is locked by %s: only they or an admin may unlock it",
		         branch, r->name, holder);
	if (rv == 0) {
		st = prep(db, "DELETE FROM dataset_locks WHERE dataset_id = ? AND branch = ?");
		sqlite3_bind_int64(st, 1, r->id);
		sqlite3_bind_text(st, 2, branch, -1, SQLITE_STATIC);
		rv = step_done(db, st, e, "release the lock");
	}
	if (rv == 0)
		ds_audit(db, c, r->name, "unlock", NULL, branch, -1,
		         strcmp(upl, "manual") ? upl : NULL);
	return tx_end(db, rv, e);
}

/* ------------------------------------------------------------------ uploads */

static void
upload_free(upload *u)
{
	if (u == NULL)
		return;
	ds_import_free(u->im);
	free(u->dataset);
	free(u->branch);
	free(u->format);
	free(u->hashes);
	free(u->fresh);
	free(u->jobs); /* empty: every runner flushes before it lets go */
	free(u);
}

/* Under mu: unlink u from the table. */
static void
upload_unlink(upload *u)
{
	for (upload **p = &M.uploads; *p; p = &(*p)->next)
		if (*p == u) {
			*p = u->next;
			u->next = NULL;
			return;
		}
}

/* Under mu: the upload called id, or NULL. */
static upload *
upload_find(const char *id)
{
	for (upload *u = M.uploads; u; u = u->next)
		if (strcmp(u->id, id) == 0)
			return u;
	return NULL;
}

/* Drop the lock an upload held, if it still holds it. */
static void
upload_release_lock(sqlite3 *db, const upload *u)
{
	sqlite3_stmt *st = prep(db, "DELETE FROM dataset_locks WHERE dataset_id = ? AND branch = ? "
	                            "AND upload = ?");
	sqlite3_bind_int64(st, 1, u->dataset_id);
	sqlite3_bind_text(st, 2, u->branch, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, u->id, -1, SQLITE_STATIC);
	if (st)
		loomi_store_wrote(db, sqlite3_step(st));
	sqlite3_finalize(st);
}

static void upload_uncharge(loomi_daemon *d, upload *u);

/* Uploads whose lease has ended are aborted: taken out of the table
 * under mu, their locks released after. */
static void
upload_sweep(loomi_daemon *d)
{
	upload *dead = NULL;
	int64_t now = loomi_wall_ms();

	pthread_mutex_lock(&M.mu);
	for (upload **p = &M.uploads; *p;) {
		upload *u = *p;
		if (!u->busy && u->expires_ms <= now) {
			*p = u->next;
			u->next = dead;
			dead = u;
		} else {
			p = &u->next;
		}
	}
	pthread_mutex_unlock(&M.mu);
	while (dead) {
		upload *u = dead;
		dead = u->next;
		upload_uncharge(d, u);
		upload_release_lock(d->store.db, u);
		ds_audit(d->store.db, NULL, u->dataset, "upload-abort", NULL, u->branch, -1,
		         "its lock expired");
		upload_free(u);
	}
}

static void
upload_kill_dataset(int64_t dataset_id)
{
	upload *dead = NULL;

	pthread_mutex_lock(&M.mu);
	for (upload **p = &M.uploads; *p;) {
		upload *u = *p;
		if (u->dataset_id == dataset_id) {
			*p = u->next;
			if (u->busy) {
				u->dead = true; /* its runner frees it */
				u->next = NULL;
			} else {
				u->next = dead;
				dead = u;
			}
		} else {
			p = &u->next;
		}
	}
	pthread_mutex_unlock(&M.mu);
	while (dead) {
		upload *u = dead;
		dead = u->next;
		upload_free(u);
	}
}

/* ------------------------------------------------------------------ chunk writers
 *
 * Storing a chunk is a storage put that, on storage-local with fsync, waits
 * for the disk twice (the file, then its directory): milliseconds during
 * which one writer would leave the compressors idle.  So put_chunk does the
 * bookkeeping (the hash recorded in its upload under mu, so gc keeps it;
 * the quota decided and the bytes reserved) and hands a copy of the
 * compressed bytes to a pool of W_THREADS writer threads, whose puts
 * overlap.  The guarantees stay those of one writer:
 *   - a chunk's dataset_chunks row is inserted only after its blob is
 *     stored (upload_flush, by the upload's own thread, once the writer
 *     says so); the commit's transaction still checks every row;
 *   - a part is acknowledged only after upload_flush has seen every chunk
 *     it queued stored and recorded (ds_upload_part, upload_commit and
 *     every end of an upload flush first); a chunk the storage refused
 *     fails the part with the storage's message and the upload is aborted;
 *   - memory: the queue holds at most W_QUEUE_BYTES of compressed bytes
 *     (put_chunk waits for room), and an upload flushes itself every
 *     W_FLUSH_JOBS chunks.
 * The writers touch no SQLite and no upload field but their job's; a job's
 * done, rv, msg and the upload's w_failed are W.mu's. */
#define W_THREADS 6
#define W_QUEUE_BYTES ((size_t)32 << 20)
#define W_FLUSH_JOBS 256

static struct {
	pthread_mutex_t mu;
	pthread_cond_t work, done; /* done: a job ended (room in the queue) */
	wjob *head, *tail;
	size_t bytes;              /* compressed bytes queued or being stored */
	pthread_t th[W_THREADS];
	int nth;
	bool tried, stop;
} W = {.mu = PTHREAD_MUTEX_INITIALIZER,
       .work = PTHREAD_COND_INITIALIZER,
       .done = PTHREAD_COND_INITIALIZER};

/* Store j's blob: → j->rv, j->msg (not yet published). */
static void
job_store(wjob *j)
{
	char key[512];
	loom_instance *ins = loomi_instance_find(&M.d->plugins, M.s.storage);

	ds_chunk_key(M.chunk_prefix, &j->hash, key, sizeof key);
	j->rv = ins ? loomi_storage_put(ins, key, j->z, j->zlen) : LOOM_ENOENT;
	if (j->rv != 0)
		j->msg = loomi_strfmt("storage %s could not store chunk %s: %s", M.s.storage, key,
		                      ins ? loom_strerror(j->rv) : "there is no such plugin instance");
	free(j->z);
	j->z = NULL;
}

static void *
writer_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&W.mu);
	for (;;) {
		wjob *j;

		while (!W.stop && W.head == NULL)
			pthread_cond_wait(&W.work, &W.mu);
		if (W.head == NULL)
			break; /* stopping, and the queue is empty */
		j = W.head;
		W.head = j->next;
		if (W.head == NULL)
			W.tail = NULL;
		pthread_mutex_unlock(&W.mu);
		job_store(j);
		pthread_mutex_lock(&W.mu);
		if (j->rv != 0)
			j->u->w_failed = true;
		j->done = true;
		W.bytes -= j->zlen;
		pthread_cond_broadcast(&W.done);
	}
	pthread_mutex_unlock(&W.mu);
	return NULL;
}

/* Under W.mu: start the writers once; none started means puts run inline. */
static void
writers_start_locked(void)
{
	if (W.tried)
		return;
	W.tried = true;
	for (int i = 0; i < W_THREADS; i++) {
		if (pthread_create(&W.th[W.nth], NULL, writer_main, NULL) != 0) {
			loomi_log(LOOM_LOG_WARN, DSM, "cannot start chunk writer %d: chunks are stored "
			          "by %d writer(s)", i, W.nth);
			break;
		}
		W.nth++;
	}
}

static void
writers_stop(void)
{
	pthread_mutex_lock(&W.mu);
	W.stop = true;
	pthread_cond_broadcast(&W.work);
	pthread_mutex_unlock(&W.mu);
	for (int i = 0; i < W.nth; i++)
		pthread_join(W.th[i], NULL);
	W.nth = 0;
	W.tried = W.stop = false;
}

/* Wait until every chunk u handed to the writers is stored, then insert
 * the rows of those stored (in one transaction) and release their
 * reservation.  → 0, or the first failure with its message in *err (when
 * err is not NULL).  Only u's runner calls it. */
static int
upload_flush(upload *u, char **err)
{
	sqlite3 *db = M.d->store.db;
	sqlite3_stmt *st = NULL;
	char *msg = NULL, *first = NULL;
	uint64_t done_bytes = 0;
	int rv = 0, trv;

	if (u->n_jobs == 0)
		return 0;
	pthread_mutex_lock(&W.mu);
	for (size_t i = 0; i < u->n_jobs; i++)
		while (!u->jobs[i]->done)
			pthread_cond_wait(&W.done, &W.mu);
	u->w_failed = false;
	pthread_mutex_unlock(&W.mu);

	for (size_t i = 0; i < u->n_jobs && rv == 0; i++)
		if (u->jobs[i]->rv != 0) {
			rv = u->jobs[i]->rv;
			first = u->jobs[i]->msg;
		}
	/* the rows of the chunks stored, even when another failed: an aborted
	 * upload then gives them back (upload_uncharge) */
	if ((trv = loomi_store_begin(db, true, &msg)) == 0) {
		st = prep(db, "INSERT INTO dataset_chunks (hash, raw, stored, user, created_ms) VALUES "
		              "(?, ?, ?, ?, ?) ON CONFLICT (hash) DO NOTHING");
		if (st == NULL)
			trv = LOOM_EIO;
		for (size_t i = 0; st && trv == 0 && i < u->n_jobs; i++) {
			wjob *j = u->jobs[i];
			if (j->rv != 0)
				continue;
			sqlite3_reset(st);
			sqlite3_bind_blob(st, 1, j->hash.b, sizeof j->hash.b, SQLITE_STATIC);
			sqlite3_bind_int64(st, 2, (sqlite3_int64)j->raw);
			sqlite3_bind_int64(st, 3, (sqlite3_int64)j->zlen);
			sqlite3_bind_text(st, 4, u->user, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 5, loomi_wall_ms());
			if (loomi_store_wrote(db, sqlite3_step(st)) != 0) {
				trv = LOOM_EIO;
			} else {
				j->fresh = sqlite3_changes(db) > 0; /* stored first by u */
			}
		}
		sqlite3_finalize(st);
		trv = loomi_store_end(db, trv, &msg);
	}
	if (trv == 0) {
		for (size_t i = 0; i < u->n_jobs; i++) {
			wjob *j = u->jobs[i];
			if (j->rv != 0 || !j->fresh)
				continue;
			u->new_bytes += j->zlen;
			u->new_chunks++;
			if (u->n_fresh == u->cap_fresh) {
				u->cap_fresh = u->cap_fresh ? 2 * u->cap_fresh : 64;
				u->fresh = loomi_xrealloc(u->fresh, u->cap_fresh * sizeof *u->fresh);
			}
			u->fresh[u->n_fresh++] = j->hash;
		}
	} else if (rv == 0) {
		/* no row for this batch: its blobs are orphans for gc, the part fails */
		rv = LOOM_EIO;
		first = NULL;
	}
	if (err != NULL && rv != 0)
		*err = first ? loomi_strdup(first)
		             : loomi_strfmt("the chunks' records could not be written: %s",
		                            msg ? msg : loom_strerror(trv));
	for (size_t i = 0; i < u->n_jobs; i++) {
		done_bytes += u->jobs[i]->zlen;
		free(u->jobs[i]->z);
		free(u->jobs[i]->msg);
		free(u->jobs[i]);
	}
	u->n_jobs = 0;
	free(msg);
	pthread_mutex_lock(&M.mu);
	u->reserved -= done_bytes;
	pthread_mutex_unlock(&M.mu);
	return rv;
}

/* The importer's sink: a chunk not stored yet is handed to the writers,
 * charged to the upload's user (refused past their quota); its row comes
 * with upload_flush. */
static int
put_chunk(void *arg, const ds_chunk *c, const void *zdata, size_t zlen, char **err)
{
	upload *u = arg;
	sqlite3 *db = M.d->store.db;
	sqlite3_stmt *st;
	bool exists = false, own, failed, inline_put;
	wjob *j;
	int rv;

	pthread_mutex_lock(&M.mu);
	if (u->n_hashes == u->cap_hashes) {
		u->cap_hashes = u->cap_hashes ? 2 * u->cap_hashes : 64;
		u->hashes = loomi_xrealloc(u->hashes, u->cap_hashes * sizeof *u->hashes);
	}
	u->hashes[u->n_hashes++] = c->hash;
	u->chunks++;
	/* queued already by this upload (its row not yet written) */
	for (size_t i = 0; i < u->n_jobs && !exists; i++)
		exists = memcmp(u->jobs[i]->hash.b, c->hash.b, sizeof c->hash.b) == 0;
	if (!exists) {
		st = prep(db, "SELECT 1 FROM dataset_chunks WHERE hash = ?");
		sqlite3_bind_blob(st, 1, c->hash.b, sizeof c->hash.b, SQLITE_STATIC);
		exists = st && sqlite3_step(st) == SQLITE_ROW;
		sqlite3_finalize(st);
	}
	if (!exists) {
		uint64_t q = quota_of(db, u->user, &own);
		if (q > 0) {
			uint64_t used = ds_used_bytes(db, u->user);
			for (upload *o = M.uploads; o; o = o->next)
				if (strcmp(o->user, u->user) == 0)
					used += o->reserved;
			if (used + zlen > q) {
				pthread_mutex_unlock(&M.mu);
				*err = loomi_strfmt("user %s would use %" PRIu64 " bytes of their quota of "
				                    "%" PRIu64 "; free space with gc or ask an admin: loomctl "
				                    "data quota %s BYTES",
				                    u->user, used + zlen, q, u->user);
				return LOOM_ERANGE;
			}
		}
		u->reserved += zlen;
	}
	pthread_mutex_unlock(&M.mu);
	if (exists)
		return 0;

	j = loomi_xcalloc(1, sizeof *j);
	j->u = u;
	j->hash = c->hash;
	j->raw = c->raw;
	j->zlen = zlen;
	j->z = loomi_xmalloc(zlen ? zlen : 1);
	memcpy(j->z, zdata, zlen);
	if (u->n_jobs == u->cap_jobs) {
		u->cap_jobs = u->cap_jobs ? 2 * u->cap_jobs : 64;
		u->jobs = loomi_xrealloc(u->jobs, u->cap_jobs * sizeof *u->jobs);
	}
	u->jobs[u->n_jobs++] = j;
	if (u->first_fresh_ms == 0)
		u->first_fresh_ms = loomi_wall_ms();

	pthread_mutex_lock(&W.mu);
	writers_start_locked();
	failed = u->w_failed;
	inline_put = W.nth == 0;
	if (!inline_put && !failed) {
		while (W.bytes > 0 && W.bytes + zlen > W_QUEUE_BYTES)
			pthread_cond_wait(&W.done, &W.mu);
		W.bytes += zlen;
		if (W.tail)
			W.tail->next = j;
		else
			W.head = j;
		W.tail = j;
		pthread_cond_signal(&W.work);
	}
	pthread_mutex_unlock(&W.mu);
	if (inline_put && !failed) { /* no writer thread: store it here */
		job_store(j);
		pthread_mutex_lock(&W.mu);
		j->done = true;
		if (j->rv != 0)
			u->w_failed = failed = true;
		pthread_mutex_unlock(&W.mu);
		if (failed) /* its own failure: flushed below with the others */
			return upload_flush(u, err);
	}
	if (failed) {
		/* a chunk before it was refused: stop here, with the storage's word */
		j->done = true;
		j->rv = LOOM_ECANCELED;
		rv = upload_flush(u, err);
		return rv != 0 ? rv : LOOM_EIO;
	}
	if (u->n_jobs >= W_FLUSH_JOBS)
		return upload_flush(u, err);
	return 0;
}

/* A fresh upload id. */
static void
upload_id(char id[32])
{
	unsigned char b[12];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	size_t got = 0;

	if (fd >= 0) {
		ssize_t n = read(fd, b, sizeof b);
		got = n > 0 ? (size_t)n : 0;
		close(fd);
	}
	if (got < sizeof b) { /* never expected; still unique within this process */
		static uint64_t seq;
		uint64_t x = (uint64_t)loomi_mono_ns() ^ (++seq << 40) ^ (uint64_t)getpid();
		for (size_t i = 0; i < sizeof b; i++, x = x * 6364136223846793005ull + 1)
			b[i] = (unsigned char)(x >> 56);
	}
	memcpy(id, "up-", 3);
	for (size_t i = 0; i < sizeof b; i++)
		snprintf(id + 3 + 2 * i, 3, "%02x", b[i]);
}

static int
upload_begin(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *branch,
             const char *format, const char *parent_ref, upload **out, dserr *e)
{
	sqlite3 *db = d->store.db;
	upload *u;
	char head[DS_HEX_LEN + 1], parent[DS_HEX_LEN + 1] = "";
	sqlite3_stmt *st;
	int rv;

	upload_sweep(d);
	if ((rv = ds_name_check("branch", branch, e)) != 0)
		return rv;
	if (format == NULL)
		format = "csv";
	if (strcmp(format, "csv") != 0 && strcmp(format, "f32") != 0 && strcmp(format, "f64") != 0)
		return dse(e, LOOM_EINVAL, "invalid",
		           "format: expected \"csv\", \"f32\" or \"f64\", not \"%s\"", format);
	if (ds_storage(d, e) == NULL)
		return e->rv;
	u = loomi_xcalloc(1, sizeof *u);
	upload_id(u->id);
	u->dataset_id = r->id;
	u->dataset = loomi_strdup(r->name);
	u->branch = loomi_strdup(branch);
	u->format = loomi_strdup(format);
	snprintf(u->user, sizeof u->user, "%s", c->name);
	{
		ds_sink sink = {u, put_chunk};
		u->im = ds_import_new(format, &M.s.params, &sink);
	}
	if (u->im == NULL) {
		upload_free(u);
		return dse(e, LOOM_EINVAL, "invalid",
		           "the chunker's settings (datasets.chunk_min, chunk_avg, chunk_max, "
		           "zstd_level) are not usable; see loomd's log");
	}
	u->expires_ms = loomi_wall_ms() + M.s.lock_ttl_ms;

	if ((rv = tx_begin(db, true, e)) != 0) {
		upload_free(u);
		return rv;
	}
	rv = ds_branch_head(db, r->id, branch, head, e);
	if (rv == LOOM_ENOENT) {
		/* a new branch, from the default branch's head (or empty) */
		char from[DS_HEX_LEN + 1] = "";
		dserr e2 = {0};
		ds_branch_head(db, r->id, r->default_branch, from, &e2);
		dserr_free(&e2);
		st = prep(db, "INSERT INTO dataset_refs (dataset_id, kind, name, version, user, "
		              "updated_at) VALUES (?, 'branch', ?, ?, ?, ?)");
		sqlite3_bind_int64(st, 1, r->id);
		sqlite3_bind_text(st, 2, branch, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, from[0] ? from : NULL, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, c->name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, loomi_wall_ms());
		rv = step_done(db, st, e, "create the branch");
		memcpy(head, from, sizeof head);
		if (rv == 0)
			ds_audit(db, c, r->name, "branch", from, branch, -1, "created by an upload");
	}
	if (rv == 0 && parent_ref != NULL && parent_ref[0])
		rv = ds_resolve(db, r, parent_ref, parent, e);
	else if (rv == 0)
		memcpy(parent, head, sizeof parent);
	if (rv == 0 && strcmp(parent, head) != 0)
		rv = dse(e, LOOM_ECONFLICT, "conflict",
		         "parent: version %s is not the head of branch %s of dataset %s (%s); upload "
		         "on the head, or make a branch from %s and upload there",
		         parent, branch, r->name, head[0] ? head : "no version yet", parent_ref);
	if (rv == 0)
		rv = lock_take_tx(db, c, r, branch, u->id, u->expires_ms, e);
	if (rv == 0)
		ds_audit(db, c, r->name, "upload-begin", parent, branch, -1, u->id);
	if ((rv = tx_end(db, rv, e)) != 0) {
		upload_free(u);
		return rv;
	}
	memcpy(u->parent, parent, sizeof u->parent);
	pthread_mutex_lock(&M.mu);
	u->next = M.uploads;
	M.uploads = u;
	pthread_mutex_unlock(&M.mu);
	*out = u;
	return 0;
}

static json_t *
upload_json(const upload *u)
{
	return json_pack("{sssssosssIs{sssssosI}}", "upload", u->id, "branch", u->branch, "parent",
	                 u->parent[0] ? json_string(u->parent) : json_null(), "format", u->format,
	                 "next_part", (json_int_t)u->next_part, "lock", "holder", u->user, "upload",
	                 u->id, "expires", ds_iso(u->expires_ms), "ttl_s",
	                 (json_int_t)(M.s.lock_ttl_ms / 1000));
}

int
ds_upload_begin(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *branch,
                const char *format, const char *parent_ref, json_t **out, dserr *e)
{
	upload *u;
	int rv = upload_begin(d, c, r, branch, format, parent_ref, &u, e);
	if (rv == 0)
		*out = upload_json(u); /* u is in the table; only its own runner frees it */
	return rv;
}

/* Take the upload called id of dataset r for a part or the commit: marked
 * busy.  Another user's, or another dataset's, is not found. */
static int
upload_claim(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *id,
             upload **out, dserr *e)
{
	upload *u;
	int rv = 0;

	upload_sweep(d);
	pthread_mutex_lock(&M.mu);
	u = upload_find(id);
	if (u == NULL || u->dataset_id != r->id || strcmp(u->user, c->name) != 0)
		rv = dse(e, LOOM_ENOENT, "not_found",
		         "dataset %s has no open upload %s of yours (it was committed, aborted, or its "
		         "lock expired: begin another with POST /api/v1/datasets/%s/uploads)",
		         r->name, id, r->name);
	else if (u->busy)
		rv = dse(e, LOOM_EBUSY, "busy",
		         "upload %s is receiving a part or committing; send its parts one at a time",
		         id);
	else
		u->busy = true;
	pthread_mutex_unlock(&M.mu);
	*out = rv == 0 ? u : NULL;
	return rv;
}

static int hash_cmp(const void *a, const void *b);

/* An aborted upload gives back what it alone stored, so that a refused
 * upload leaves the user's quota as it was: the chunks it stored first
 * that no other open upload has counted on and no version committed since
 * references.  Under mu (see the top): no one can start counting on them
 * meanwhile. */
static void
upload_uncharge(loomi_daemon *d, upload *u)
{
	sqlite3 *db = d->store.db;
	loom_instance *ins = loomi_instance_find(&d->plugins, M.s.storage);
	ds_hash *keep = NULL;
	size_t n_keep = 0, cap_keep = 0;
	loomi_strv doomed = {0};
	sqlite3_stmt *st;
	char *msg = NULL;
	int rv;

	if (u->n_fresh == 0 || ins == NULL)
		return;
	pthread_mutex_lock(&M.mu);
	for (upload *o = M.uploads; o; o = o->next) {
		if (o == u)
			continue;
		for (size_t i = 0; i < o->n_hashes; i++) {
			if (n_keep == cap_keep)
				keep = loomi_xrealloc(keep, (cap_keep = cap_keep ? 2 * cap_keep : 256) *
				                                sizeof *keep);
			keep[n_keep++] = o->hashes[i];
		}
	}
	if ((rv = loomi_store_begin(db, true, &msg)) == 0) {
		/* versions committed since its first chunk */
		st = prep(db, "SELECT manifest FROM dataset_versions WHERE created_at >= ?");
		sqlite3_bind_int64(st, 1, u->first_fresh_ms - 1000);
		while (st && sqlite3_step(st) == SQLITE_ROW) {
			ds_manifest m;
			char *err = NULL;
			if (ds_manifest_decode(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0),
			                       &m, &err) != 0) {
				rv = LOOM_ECORRUPT; /* keep everything: gc will see */
			} else {
				for (size_t i = 0; i < m.n_chunks; i++) {
					if (n_keep == cap_keep)
						keep = loomi_xrealloc(
							keep, (cap_keep = cap_keep ? 2 * cap_keep : 256) * sizeof *keep);
					keep[n_keep++] = m.chunks[i].hash;
				}
			}
			free(err);
			ds_manifest_free(&m);
		}
		if (st == NULL)
			rv = LOOM_EIO;
		sqlite3_finalize(st);
		if (n_keep)
			qsort(keep, n_keep, sizeof *keep, hash_cmp);
		st = prep(db, "DELETE FROM dataset_chunks WHERE hash = ? AND user = ?");
		for (size_t i = 0; st && rv == 0 && i < u->n_fresh; i++) {
			char key[512];
			if (n_keep && bsearch(&u->fresh[i], keep, n_keep, sizeof *keep, hash_cmp))
				continue;
			sqlite3_reset(st);
			sqlite3_bind_blob(st, 1, u->fresh[i].b, 32, SQLITE_TRANSIENT);
			sqlite3_bind_text(st, 2, u->user, -1, SQLITE_STATIC);
			if (loomi_store_wrote(db, sqlite3_step(st)) != 0) {
				rv = LOOM_EIO;
				break;
			}
			if (sqlite3_changes(db) > 0) {
				ds_chunk_key(M.chunk_prefix, &u->fresh[i], key, sizeof key);
				loomi_strv_push(&doomed, loomi_strdup(key));
			}
		}
		sqlite3_finalize(st);
		rv = loomi_store_end(db, rv, &msg);
	}
	/* the blobs once their rows are gone (a crash between: gc's orphans) */
	for (size_t i = 0; rv == 0 && i < doomed.n; i++)
		loomi_storage_remove(ins, doomed.v[i]);
	pthread_mutex_unlock(&M.mu);
	if (rv != 0)
		loomi_log(LOOM_LOG_WARN, DSM, "upload %s: its chunks are left to gc: %s", u->id,
		          msg ? msg : loom_strerror(rv));
	free(msg);
	free(keep);
	loomi_strv_free(&doomed);
	u->n_fresh = 0;
}

/* Give a claimed upload back (alive), or end it: out of the table, its
 * lock released when it still holds it. */
static void
upload_release(loomi_daemon *d, upload *u, bool end, const loomi_caller *c, const char *why)
{
	bool dead;

	upload_flush(u, NULL); /* no chunk of it left with the writers */
	pthread_mutex_lock(&M.mu);
	dead = u->dead;
	u->busy = false;
	if (end && !dead)
		upload_unlink(u);
	pthread_mutex_unlock(&M.mu);
	if (end || dead) {
		if (why) {
			upload_uncharge(d, u);
			upload_release_lock(d->store.db, u);
			ds_audit(d->store.db, c, u->dataset, "upload-abort", NULL, u->branch,
			         (int64_t)u->bytes_in, why);
		}
		upload_free(u);
	}
}

/* Renew u's lock; LOOM_EBUSY when it lost it. */
static int
upload_renew(loomi_daemon *d, upload *u, dserr *e)
{
	sqlite3 *db = d->store.db;
	int64_t expires = loomi_wall_ms() + M.s.lock_ttl_ms;
	sqlite3_stmt *st = prep(db, "UPDATE dataset_locks SET expires_ms = ? WHERE dataset_id = ? "
	                            "AND branch = ? AND upload = ? AND holder = ?");
	int rv;

	sqlite3_bind_int64(st, 1, expires);
	sqlite3_bind_int64(st, 2, u->dataset_id);
	sqlite3_bind_text(st, 3, u->branch, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, u->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, u->user, -1, SQLITE_STATIC);
	rv = step_done(db, st, e, "renew the lock");
	if (rv == 0 && sqlite3_changes(db) == 0)
		rv = dse(e, LOOM_EBUSY, "locked",
		         "upload %s no longer holds the lock of branch %s of dataset %s (it was "
		         "released or taken over); the upload is aborted: begin another",
		         u->id, u->branch, u->dataset);
	if (rv == 0) {
		pthread_mutex_lock(&M.mu);
		u->expires_ms = expires;
		pthread_mutex_unlock(&M.mu);
	}
	return rv;
}

int
ds_upload_part(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *id,
               int64_t part, const void *data, size_t len, json_t **out, dserr *e)
{
	upload *u;
	char *err = NULL;
	int rv;

	if ((rv = upload_claim(d, c, r, id, &u, e)) != 0)
		return rv;
	if (part != u->next_part) {
		dse(e, LOOM_ESTATE, "out_of_order",
		    "upload %s expects part %" PRId64 ", not %" PRId64 "; parts are numbered 0, 1, 2 "
		    "… and sent in order",
		    id, u->next_part, part);
		upload_release(d, u, false, c, NULL);
		return LOOM_ESTATE;
	}
	if (len > M.s.part_max) {
		dse(e, LOOM_ERANGE, "too_large",
		    "part %" PRId64 " of upload %s is %zu bytes, over datasets.upload_part_max (%" PRIu64
		    "); send smaller parts",
		    part, id, len, M.s.part_max);
		upload_release(d, u, false, c, NULL);
		return LOOM_ERANGE;
	}
	if ((rv = upload_renew(d, u, e)) == 0 && (rv = ds_import_feed(u->im, data, len, &err)) == 0)
		rv = upload_flush(u, &err); /* acknowledged only once stored and recorded */
	if (rv != 0) {
		if (rv == LOOM_ERANGE)
			dse(e, rv, "quota_exceeded", "%s; upload %s is aborted", err ? err : "over quota",
			    id);
		else
			dse(e, rv, rv == LOOM_EIO ? "unavailable" : NULL,
			    "part %" PRId64 " of upload %s: %s; the upload is aborted", part, id,
			    err ? err : loom_strerror(rv));
	}
	free(err);
	if (rv != 0) {
		upload_release(d, u, true, c, e->msg);
		return rv;
	}
	u->next_part++;
	u->bytes_in += len;
	*out = upload_json(u);
	json_object_set_new(*out, "received", json_integer((json_int_t)u->bytes_in));
	upload_release(d, u, false, c, NULL);
	return 0;
}

int
ds_upload_abort(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *id,
                dserr *e)
{
	upload *u;
	int rv = upload_claim(d, c, r, id, &u, e);
	if (rv == 0)
		upload_release(d, u, true, c, "aborted by its user");
	return rv;
}

static void
crash_point(int which)
{
	if (M.crash == which) {
		loomi_log(LOOM_LOG_WARN, DSM, "LOOM_TEST_DATASETS_CRASH: killing loomd %s",
		          which == 1 ? "after the chunks" : "after the manifest");
		raise(SIGKILL);
	}
}

/* Commit a finished upload: the manifest and the branch in one
 * transaction.  On success *out (the commit's answer) and ver. */
static int
upload_commit(loomi_daemon *d, const loomi_caller *c, const ds_row *r, upload *u,
              const char *message, const char *parent_ref, json_t **out,
              char ver[DS_HEX_LEN + 1], dserr *e)
{
	sqlite3 *db = d->store.db;
	ds_manifest m;
	char *err = NULL, id[DS_HEX_LEN + 1], head[DS_HEX_LEN + 1], parent[DS_HEX_LEN + 1];
	char holder[LOOMI_USER_NAME_MAX + 1], cur[32], content[DS_HEX_LEN + 1];
	void *blob = NULL;
	size_t blen = 0;
	int64_t until, now;
	json_t *parents;
	sqlite3_stmt *st;
	int rv;

	memset(&m, 0, sizeof m);
	memcpy(parent, u->parent, sizeof parent);
	if (message == NULL)
		message = "";
	if (strlen(message) > 4096)
		return dse(e, LOOM_EINVAL, "invalid", "message: at most 4096 bytes, not %zu",
		           strlen(message));
	if (parent_ref != NULL && parent_ref[0]) {
		if ((rv = ds_resolve(db, r, parent_ref, parent, e)) != 0)
			return rv;
	}
	rv = ds_import_finish(u->im, &m, &err);
	if (rv == 0)
		rv = upload_flush(u, &err); /* every chunk stored and recorded first */
	if (rv != 0) {
		rv = dse(e, rv, rv == LOOM_ERANGE ? "quota_exceeded" : NULL,
		         "upload %s: %s; the upload is aborted", u->id, err ? err : loom_strerror(rv));
		free(err);
		return rv;
	}
	now = loomi_wall_ms();
	m.dataset = loomi_strdup(r->name);
	m.author = loomi_strdup(c->name);
	m.message = loomi_strdup(message);
	m.time_ms = now;
	if (parent[0]) {
		m.parents = loomi_xcalloc(1, sizeof *m.parents);
		m.parents[0] = loomi_strdup(parent);
		m.n_parents = 1;
	}
	if ((rv = ds_manifest_encode_ids(&m, &blob, &blen, id, content)) != 0) {
		ds_manifest_free(&m);
		return dse(e, rv, NULL, "upload %s: its manifest could not be encoded", u->id);
	}
	crash_point(1);

	if ((rv = tx_begin(db, true, e)) != 0)
		goto out;
	/* still our lock: a lease that ended may have been taken by another */
	if (lock_read(db, r->id, u->branch, 0, holder, cur, &until) != 0 ||
	    strcmp(cur, u->id) != 0 || strcmp(holder, u->user) != 0) {
		if (lock_read(db, r->id, u->branch, loomi_wall_ms(), holder, cur, &until) == 0)
			rv = locked_error(e, r->name, u->branch, holder, cur, until);
		else
			rv = dse(e, LOOM_EBUSY, "locked",
			         "upload %s lost the lock of branch %s of dataset %s (released or taken "
			         "over); nothing was committed: upload again",
			         u->id, u->branch, r->name);
	}
	if (rv == 0)
		rv = ds_branch_head(db, r->id, u->branch, head, e);
	if (rv == 0 && strcmp(head, parent) != 0)
		rv = dse(e, LOOM_ECONFLICT, "conflict",
		         "branch %s of dataset %s moved: its head is %s, and this upload's parent is "
		         "%s; nothing was committed (never merged silently): upload again on the new "
		         "head, or commit to a branch of your own (POST /api/v1/datasets/%s/branches) "
		         "and merge",
		         u->branch, r->name, head[0] ? head : "no version", parent[0] ? parent : "none",
		         r->name);
	/* every chunk the manifest names has its row (gc cannot have taken
	 * one, see the top; this proves it) */
	if (rv == 0) {
		st = prep(db, "SELECT 1 FROM dataset_chunks WHERE hash = ?");
		for (size_t i = 0; st && rv == 0 && i < m.n_chunks; i++) {
			sqlite3_reset(st);
			sqlite3_bind_blob(st, 1, m.chunks[i].hash.b, 32, SQLITE_STATIC);
			if (sqlite3_step(st) != SQLITE_ROW) {
				char hex[DS_HEX_LEN + 1];
				ds_hash_hex(&m.chunks[i].hash, hex);
				rv = dse(e, LOOM_ECORRUPT, "chunk_missing",
				         "chunk %s of upload %s is not stored (was it collected by gc?); "
				         "nothing was committed: upload again",
				         hex, u->id);
			}
		}
		if (st == NULL)
			rv = db_fail(db, e, "check the chunks");
		sqlite3_finalize(st);
	}
	if (rv == 0) {
		char *pj;
		parents = json_array();
		if (parent[0])
			json_array_append_new(parents, json_string(parent));
		pj = json_dumps(parents, JSON_COMPACT);
		json_decref(parents);
		st = prep(db, "INSERT INTO dataset_versions (id, dataset_id, manifest, parents, author, "
		              "message, rows, bytes, stored, n_chunks, created_at, content) VALUES (?, "
		              "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING");
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, r->id);
		sqlite3_bind_blob(st, 3, blob, (int)blen, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, pj, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, c->name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 6, message, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 7, (sqlite3_int64)m.rows);
		sqlite3_bind_int64(st, 8, (sqlite3_int64)m.bytes);
		sqlite3_bind_int64(st, 9, (sqlite3_int64)m.stored);
		sqlite3_bind_int64(st, 10, (sqlite3_int64)m.n_chunks);
		sqlite3_bind_int64(st, 11, now);
		sqlite3_bind_text(st, 12, content, -1, SQLITE_STATIC);
		rv = step_done(db, st, e, "store the version");
		free(pj);
	}
	if (rv == 0) {
		st = prep(db, "UPDATE dataset_refs SET version = ?, user = ?, updated_at = ? WHERE "
		              "dataset_id = ? AND kind = 'branch' AND name = ?");
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, c->name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, now);
		sqlite3_bind_int64(st, 4, r->id);
		sqlite3_bind_text(st, 5, u->branch, -1, SQLITE_STATIC);
		rv = step_done(db, st, e, "move the branch");
	}
	if (rv == 0) {
		st = prep(db, "DELETE FROM dataset_locks WHERE dataset_id = ? AND branch = ? AND "
		              "upload = ?");
		sqlite3_bind_int64(st, 1, r->id);
		sqlite3_bind_text(st, 2, u->branch, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, u->id, -1, SQLITE_STATIC);
		rv = step_done(db, st, e, "release the lock");
	}
	if (rv == 0) {
		char *detail = loomi_strfmt("%s: %" PRIu64 " rows, %" PRIu64 " new chunks of %zu, "
		                            "%" PRIu64 " bytes new",
		                            u->id, m.rows, u->new_chunks, m.n_chunks, u->new_bytes);
		ds_audit(db, c, r->name, "commit", id, u->branch, (int64_t)u->new_bytes, detail);
		free(detail);
	}
	rv = tx_end(db, rv, e);
	if (rv == 0) {
		crash_point(2);
		parents = json_array();
		if (parent[0])
			json_array_append_new(parents, json_string(parent));
		*out = json_pack("{sssosssIsIsIsIsIsI}", "version", id, "parents", parents, "branch",
		                 u->branch, "rows", (json_int_t)m.rows, "bytes", (json_int_t)m.bytes,
		                 "stored", (json_int_t)m.stored, "new_bytes",
		                 (json_int_t)u->new_bytes, "chunks", (json_int_t)m.n_chunks,
		                 "new_chunks", (json_int_t)u->new_chunks);
		if (ver)
			memcpy(ver, id, DS_HEX_LEN + 1);
	}
out:
	free(blob);
	ds_manifest_free(&m);
	return rv;
}

int
ds_upload_commit(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *id,
                 const char *message, const char *parent_ref, json_t **out, dserr *e)
{
	upload *u;
	int rv = upload_claim(d, c, r, id, &u, e);
	if (rv != 0)
		return rv;
	rv = upload_commit(d, c, r, u, message, parent_ref, out, NULL, e);
	/* committed or not, the upload is over: its importer has finished */
	upload_release(d, u, true, c, rv == 0 ? NULL : e->msg);
	return rv;
}

/* ------------------------------------------------------------------ branches, tags, merge */

static int
ref_exists(sqlite3 *db, int64_t dataset_id, const char *kind, const char *name)
{
	sqlite3_stmt *st = prep(db, "SELECT 1 FROM dataset_refs WHERE dataset_id = ? AND kind = ? "
	                            "AND name = ?");
	int n;
	sqlite3_bind_int64(st, 1, dataset_id);
	sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
	n = st && sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return n;
}

static int
ref_insert(sqlite3 *db, const loomi_caller *c, const ds_row *r, const char *kind,
           const char *name, const char *version, dserr *e)
{
	sqlite3_stmt *st = prep(db, "INSERT INTO dataset_refs (dataset_id, kind, name, version, "
	                            "user, updated_at) VALUES (?, ?, ?, ?, ?, ?)");
	sqlite3_bind_int64(st, 1, r->id);
	sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, version && version[0] ? version : NULL, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, c->name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, loomi_wall_ms());
	return step_done(db, st, e, kind[0] == 'b' ? "create the branch" : "create the tag");
}

int
ds_branch_create(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *name,
                 const char *from, json_t **out, dserr *e)
{
	sqlite3 *db = d->store.db;
	char id[DS_HEX_LEN + 1] = "";
	int rv;

	if ((rv = ds_name_check("name", name, e)) != 0)
		return rv;
	if ((rv = tx_begin(db, true, e)) != 0)
		return rv;
	if (ref_exists(db, r->id, "branch", name))
		rv = dse(e, LOOM_EEXIST, "exists", "dataset %s has a branch %s already", r->name, name);
	else if (ref_exists(db, r->id, "tag", name))
		rv = dse(e, LOOM_EEXIST, "exists",
		         "dataset %s has a tag %s; a branch of the same name would make the name "
		         "ambiguous: choose another",
		         r->name, name);
	if (rv == 0 && from != NULL && from[0])
		rv = ds_resolve(db, r, from, id, e);
	else if (rv == 0) {
		dserr e2 = {0};
		ds_branch_head(db, r->id, r->default_branch, id, &e2);
		dserr_free(&e2);
	}
	if (rv == 0)
		rv = ref_insert(db, c, r, "branch", name, id, e);
	if (rv == 0) {
		ds_audit(db, c, r->name, "branch", id, name, -1, from ? from : r->default_branch);
		*out = json_pack("{sssosssb}", "name", name, "version",
		                 id[0] ? json_string(id) : json_null(), "user", c->name, "default", 0);
	}
	return tx_end(db, rv, e);
}

int
ds_branch_delete(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *name,
                 dserr *e)
{
	sqlite3 *db = d->store.db;
	char holder[LOOMI_USER_NAME_MAX + 1], upl[32], head[DS_HEX_LEN + 1];
	int64_t until;
	sqlite3_stmt *st;
	int rv;

	if (strcmp(name, r->default_branch) == 0)
		return dse(e, LOOM_ESTATE, "default_branch",
		           "branch %s is dataset %s's default branch and cannot be deleted", name,
		           r->name);
	if ((rv = tx_begin(db, true, e)) != 0)
		return rv;
	rv = ds_branch_head(db, r->id, name, head, e);
	if (rv == 0 && lock_read(db, r->id, name, loomi_wall_ms(), holder, upl, &until) == 0)
		rv = locked_error(e, r->name, name, holder, upl, until);
	if (rv == 0) {
		st = prep(db, "DELETE FROM dataset_refs WHERE dataset_id = ? AND kind = 'branch' AND "
		              "name = ?");
		sqlite3_bind_int64(st, 1, r->id);
		sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
		rv = step_done(db, st, e, "delete the branch");
	}
	if (rv == 0) {
		st = prep(db, "DELETE FROM dataset_locks WHERE dataset_id = ? AND branch = ?");
		sqlite3_bind_int64(st, 1, r->id);
		sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
		rv = step_done(db, st, e, "delete the branch's lock");
	}
	if (rv == 0)
		ds_audit(db, c, r->name, "branch-delete", head, name, -1, NULL);
	return tx_end(db, rv, e);
}

int
ds_tag_create(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *name,
              const char *ref, json_t **out, dserr *e)
{
	sqlite3 *db = d->store.db;
	char id[DS_HEX_LEN + 1];
	int rv;

	if ((rv = ds_name_check("name", name, e)) != 0)
		return rv;
	if (ref == NULL || ref[0] == '\0')
		return dse(e, LOOM_EINVAL, "invalid",
		           "ref: required, the version to tag (an id, a branch or a tag)");
	if ((rv = tx_begin(db, true, e)) != 0)
		return rv;
	if (ref_exists(db, r->id, "tag", name))
		rv = dse(e, LOOM_EEXIST, "exists",
		         "dataset %s has a tag %s already (tags never move; delete it first)", r->name,
		         name);
	else if (ref_exists(db, r->id, "branch", name))
		rv = dse(e, LOOM_EEXIST, "exists",
		         "dataset %s has a branch %s; a tag of the same name would make the name "
		         "ambiguous: choose another",
		         r->name, name);
	if (rv == 0)
		rv = ds_resolve(db, r, ref, id, e);
	if (rv == 0)
		rv = ref_insert(db, c, r, "tag", name, id, e);
	if (rv == 0) {
		ds_audit(db, c, r->name, "tag", id, name, -1, ref);
		*out = json_pack("{sssssssoss}", "name", name, "version", id, "user", c->name,
		                 "created", ds_iso(loomi_wall_ms()), "ref", ref);
	}
	return tx_end(db, rv, e);
}

int
ds_tag_delete(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *name,
              dserr *e)
{
	sqlite3 *db = d->store.db;
	sqlite3_stmt *st;
	int rv;

	if ((rv = tx_begin(db, true, e)) != 0)
		return rv;
	st = prep(db, "DELETE FROM dataset_refs WHERE dataset_id = ? AND kind = 'tag' AND name = ?");
	sqlite3_bind_int64(st, 1, r->id);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	rv = step_done(db, st, e, "delete the tag");
	if (rv == 0 && sqlite3_changes(db) == 0)
		rv = dse(e, LOOM_ENOENT, "not_found", "dataset %s has no tag %s", r->name, name);
	if (rv == 0)
		ds_audit(db, c, r->name, "untag", NULL, name, -1, NULL);
	return tx_end(db, rv, e);
}

/* The parents of version id (up to 2). */
static size_t
parents_of(sqlite3 *db, const char *id, char out[2][DS_HEX_LEN + 1])
{
	sqlite3_stmt *st = prep(db, "SELECT j.value FROM dataset_versions v, json_each(v.parents) j "
	                            "WHERE v.id = ? ORDER BY j.key");
	size_t n = 0;

	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	while (st && n < 2 && sqlite3_step(st) == SQLITE_ROW)
		snprintf(out[n++], DS_HEX_LEN + 1, "%s", col_text(st, 0));
	sqlite3_finalize(st);
	return n;
}

/* Is anc an ancestor of (or equal to) v?  A walk over every parent. */
static bool
is_ancestor(sqlite3 *db, const char *anc, const char *v)
{
	char (*q)[DS_HEX_LEN + 1] = NULL;
	size_t n = 0, cap = 0, head = 0;
	bool found = false;

	q = loomi_xrealloc(q, (cap = 64) * sizeof *q);
	snprintf(q[n++], DS_HEX_LEN + 1, "%s", v);
	while (head < n && !found) {
		char p[2][DS_HEX_LEN + 1];
		size_t np;
		if (strcmp(q[head], anc) == 0) {
			found = true;
			break;
		}
		np = parents_of(db, q[head++], p);
		for (size_t i = 0; i < np; i++) {
			bool seen = false;
			for (size_t k = 0; k < n && !seen; k++)
				seen = strcmp(q[k], p[i]) == 0;
			if (seen)
				continue;
			if (n == cap)
				q = loomi_xrealloc(q, (cap *= 2) * sizeof *q);
			memcpy(q[n++], p[i], DS_HEX_LEN + 1);
		}
	}
	free(q);
	return found;
}

int
ds_merge(loomi_daemon *d, const loomi_caller *c, const ds_row *r, const char *into,
         const char *from, json_t **out, dserr *e)
{
	sqlite3 *db = d->store.db;
	char head[DS_HEX_LEN + 1], src[DS_HEX_LEN + 1], holder[LOOMI_USER_NAME_MAX + 1], upl[32];
	int64_t until;
	sqlite3_stmt *st;
	int rv;

	if (into == NULL || from == NULL)
		return dse(e, LOOM_EINVAL, "invalid",
		           "into and from: required, the branch to move and the version it moves to");
	if ((rv = tx_begin(db, true, e)) != 0)
		return rv;
	rv = ds_branch_head(db, r->id, into, head, e);
	if (rv == LOOM_ENOENT)
		dse(e, rv, "not_found", "into: dataset %s has no branch %s", r->name, into);
	if (rv == 0)
		rv = ds_resolve(db, r, from, src, e);
	if (rv == 0 && lock_read(db, r->id, into, loomi_wall_ms(), holder, upl, &until) == 0 &&
	    !(strcmp(holder, c->name) == 0 && strcmp(upl, "manual") == 0))
		rv = locked_error(e, r->name, into, holder, upl, until);
	if (rv == 0 && strcmp(head, src) == 0) {
		*out = json_pack("{sssssssb}", "branch", into, "version", src, "previous", head,
		                 "fast_forward", 0);
		json_object_set_new(*out, "up_to_date", json_true());
		return tx_end(db, 0, e);
	}
	if (rv == 0 && head[0] && !is_ancestor(db, head, src))
		rv = dse(e, LOOM_ECONFLICT, "not_fast_forward",
		         "branch %s (head %s) is not an ancestor of %s (%s): only fast-forward merges "
		         "are made; upload the combined data on %s as a new version",
		         into, head, from, src, into);
	if (rv == 0) {
		st = prep(db, "UPDATE dataset_refs SET version = ?, user = ?, updated_at = ? WHERE "
		              "dataset_id = ? AND kind = 'branch' AND name = ?");
		sqlite3_bind_text(st, 1, src, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, c->name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, loomi_wall_ms());
		sqlite3_bind_int64(st, 4, r->id);
		sqlite3_bind_text(st, 5, into, -1, SQLITE_STATIC);
		rv = step_done(db, st, e, "move the branch");
	}
	if (rv == 0) {
		char *detail = loomi_strfmt("fast-forward from %s (%s)", from, head[0] ? head : "empty");
		ds_audit(db, c, r->name, "merge", src, into, -1, detail);
		free(detail);
		*out = json_pack("{sssssosb}", "branch", into, "version", src, "previous",
		                 head[0] ? json_string(head) : json_null(), "fast_forward", 1);
	}
	return tx_end(db, rv, e);
}

/* ------------------------------------------------------------------ gc */

static int
hash_cmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(ds_hash));
}

typedef struct hashset {
	ds_hash *h;
	size_t n, cap;
} hashset;

static void
hs_add(hashset *s, const ds_hash *h)
{
	if (s->n == s->cap)
		s->h = loomi_xrealloc(s->h, (s->cap = s->cap ? 2 * s->cap : 1024) * sizeof *s->h);
	s->h[s->n++] = *h;
}

static bool
hs_has(const hashset *s, const ds_hash *h)
{
	return s->n && bsearch(h, s->h, s->n, sizeof *s->h, hash_cmp) != NULL;
}

typedef struct orphan_walk {
	sqlite3 *db;
	const hashset *keep;
	int64_t cutoff;
	size_t plen;
	loomi_strv keys;
} orphan_walk;

/* storage list callback: blobs under the chunk prefix without a row */
static int
orphan_cb(void *arg, const char *key, const loom_blob_stat *bst)
{
	orphan_walk *w = arg;
	char hex[DS_HEX_LEN + 1];
	const char *p = key + w->plen;
	ds_hash h;
	sqlite3_stmt *st;
	bool row;

	/* "<prefix>/ab/cdef…" */
	if (strlen(p) != 1 + 2 + 1 + DS_HEX_LEN - 2 || p[0] != '/' || p[3] != '/')
		return 0;
	memcpy(hex, p + 1, 2);
	memcpy(hex + 2, p + 4, DS_HEX_LEN - 2);
	hex[DS_HEX_LEN] = '\0';
	if (ds_hash_parse(hex, &h) != 0 || hs_has(w->keep, &h) || bst->mtime_ms >= w->cutoff)
		return 0;
	st = prep(w->db, "SELECT 1 FROM dataset_chunks WHERE hash = ?");
	sqlite3_bind_blob(st, 1, h.b, 32, SQLITE_STATIC);
	row = st == NULL || sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	if (!row)
		loomi_strv_push(&w->keys, loomi_strdup(key));
	return 0;
}

int
ds_gc(loomi_daemon *d, const loomi_caller *c, int64_t grace_s, json_t **out, dserr *e)
{
	sqlite3 *db = d->store.db;
	loom_instance *ins = ds_storage(d, e);
	hashset keep = {0};
	loomi_strv doomed = {0};
	uint64_t bytes_deleted = 0, chunks_kept = 0, versions_deleted = 0, orphans = 0;
	int64_t cutoff = loomi_wall_ms() - grace_s * 1000;
	sqlite3_stmt *st;
	int rv;

	if (ins == NULL)
		return e->rv;
	upload_sweep(d);
	pthread_mutex_lock(&M.mu);
	/* what open uploads have put or are putting */
	for (upload *u = M.uploads; u; u = u->next)
		for (size_t i = 0; i < u->n_hashes; i++)
			hs_add(&keep, &u->hashes[i]);
	if ((rv = tx_begin(db, true, e)) != 0)
		goto unlock;

	/* 1. versions no branch or tag reaches (walking every parent) */
	st = prep(db, "CREATE TEMP TABLE IF NOT EXISTS ds_gc_reach (id TEXT PRIMARY KEY)");
	rv = step_done(db, st, e, "gc");
	if (rv == 0) {
		st = prep(db, "DELETE FROM temp.ds_gc_reach");
		rv = step_done(db, st, e, "gc");
	}
	if (rv == 0) {
		st = prep(db, "INSERT INTO temp.ds_gc_reach (id) "
		              "WITH RECURSIVE r(id) AS (SELECT version FROM dataset_refs WHERE version "
		              "IS NOT NULL UNION SELECT j.value FROM r JOIN dataset_versions v ON v.id = "
		              "r.id, json_each(v.parents) j) SELECT id FROM r");
		rv = step_done(db, st, e, "gc: walk the versions");
	}
	if (rv == 0) {
		st = prep(db, "DELETE FROM dataset_versions WHERE id NOT IN (SELECT id FROM "
		              "temp.ds_gc_reach)");
		rv = step_done(db, st, e, "gc: delete unreachable versions");
		versions_deleted = rv == 0 ? (uint64_t)sqlite3_changes(db) : 0;
	}
	/* 2. the chunks the remaining versions reference */
	if (rv == 0) {
		st = prep(db, "SELECT id, manifest FROM dataset_versions");
		while (st && rv == 0 && sqlite3_step(st) == SQLITE_ROW) {
			ds_manifest m;
			char *err = NULL;
			if (ds_manifest_decode(sqlite3_column_blob(st, 1),
			                       (size_t)sqlite3_column_bytes(st, 1), &m, &err) != 0) {
				/* keep everything rather than guess what it references */
				rv = dse(e, LOOM_ECORRUPT, "corrupt",
				         "gc stopped: version %s's manifest cannot be read (%s); nothing was "
				         "deleted",
				         col_text(st, 0), err ? err : "?");
			} else {
				for (size_t i = 0; i < m.n_chunks; i++)
					hs_add(&keep, &m.chunks[i].hash);
			}
			free(err);
			ds_manifest_free(&m);
		}
		if (st == NULL)
			rv = db_fail(db, e, "gc: read the versions");
		sqlite3_finalize(st);
	}
	if (keep.n)
		qsort(keep.h, keep.n, sizeof *keep.h, hash_cmp);
	/* 3. rows of chunks nothing references, older than the grace */
	if (rv == 0) {
		sqlite3_stmt *del = prep(db, "DELETE FROM dataset_chunks WHERE hash = ?");
		st = prep(db, "SELECT hash, stored, created_ms FROM dataset_chunks");
		while (st && del && rv == 0 && sqlite3_step(st) == SQLITE_ROW) {
			ds_hash h;
			char key[512];
			if (sqlite3_column_bytes(st, 0) != 32)
				continue;
			memcpy(h.b, sqlite3_column_blob(st, 0), 32);
			if (hs_has(&keep, &h) || sqlite3_column_int64(st, 2) >= cutoff) {
				chunks_kept++;
				continue;
			}
			sqlite3_reset(del);
			sqlite3_bind_blob(del, 1, h.b, 32, SQLITE_TRANSIENT);
			if (loomi_store_wrote(db, sqlite3_step(del)) != 0) {
				rv = db_fail(db, e, "gc: delete a chunk's row");
				break;
			}
			bytes_deleted += (uint64_t)sqlite3_column_int64(st, 1);
			ds_chunk_key(M.chunk_prefix, &h, key, sizeof key);
			loomi_strv_push(&doomed, loomi_strdup(key));
		}
		if (st == NULL || del == NULL)
			rv = db_fail(db, e, "gc: read the chunks");
		sqlite3_finalize(st);
		sqlite3_finalize(del);
	}
	if (rv == 0) {
		char *detail = loomi_strfmt("%" PRIu64 " versions, %zu chunks deleted; %" PRIu64
		                            " chunks kept; grace %" PRId64 " s",
		                            versions_deleted, doomed.n, chunks_kept, grace_s);
		ds_audit(db, c, NULL, "gc", NULL, NULL, (int64_t)bytes_deleted, detail);
		free(detail);
	}
	rv = tx_end(db, rv, e);
	/* 4. their blobs, once the rows are gone (a crash before leaves blobs
	 * without rows: the next gc's step 5 finds them) */
	for (size_t i = 0; rv == 0 && i < doomed.n; i++) {
		int r2 = loomi_storage_remove(ins, doomed.v[i]);
		if (r2 != 0 && r2 != LOOM_ENOENT)
			loomi_log(LOOM_LOG_WARN, DSM, "gc: could not remove %s from storage %s: %s",
			          doomed.v[i], M.s.storage, loom_strerror(r2));
	}
	/* 5. blobs without rows (a crash between a put and its row, or in
	 * step 4), older than the grace */
	if (rv == 0) {
		orphan_walk w = {db, &keep, cutoff, strlen(M.chunk_prefix), {0}};
		int r2 = loomi_storage_list(ins, M.chunk_prefix, orphan_cb, &w);
		if (r2 != 0)
			loomi_log(LOOM_LOG_WARN, DSM, "gc: could not list storage %s: %s", M.s.storage,
			          loom_strerror(r2));
		for (size_t i = 0; i < w.keys.n; i++) {
			loom_blob_stat bst;
			if (loomi_storage_stat(ins, w.keys.v[i], &bst) == 0 &&
			    loomi_storage_remove(ins, w.keys.v[i]) == 0) {
				orphans++;
				bytes_deleted += bst.size;
			}
		}
		loomi_strv_free(&w.keys);
	}
unlock:
	pthread_mutex_unlock(&M.mu);
	if (rv == 0)
		*out = json_pack("{sIsIsIsIsI}", "chunks_deleted", (json_int_t)(doomed.n + orphans),
		                 "bytes_deleted", (json_int_t)bytes_deleted, "versions_deleted",
		                 (json_int_t)versions_deleted, "chunks_kept", (json_int_t)chunks_kept,
		                 "orphans_deleted", (json_int_t)orphans);
	loomi_strv_free(&doomed);
	free(keep.h);
	return rv;
}

/* ------------------------------------------------------------------ the service interface */

bool
loomi_dataset_is_ref(const char *value)
{
	return value != NULL && strncmp(value, "dataset:", 8) == 0;
}

typedef struct file_out {
	FILE *fp;
	uint64_t bytes;
} file_out;

static int
file_write(void *arg, const void *data, size_t len)
{
	file_out *f = arg;
	if (fwrite(data, 1, len, f->fp) != len)
		return LOOM_EIO;
	f->bytes += len;
	return 0;
}

/* A version as csv into f: a csv version by runs of chunks of up to
 * MATERIALIZE_RUN bytes decompressed in place into one buffer by the
 * library's threads, then written; f32/f64 rows (formatted as numbers)
 * through ds_checkout. */
#define MATERIALIZE_RUN ((size_t)32 << 20)
static int
materialize_write(const ds_manifest *m, const ds_source *src, file_out *f, char **err)
{
	size_t first = 0, cap = 0, len;
	char *buf = NULL;
	int rv = 0;

	if (ds_checkout_size(m, DS_OUT_CSV, true, 0, 0, &len) != 0)
		return ds_checkout(m, src, DS_OUT_CSV, true, 0, SIZE_MAX, file_write, f, err);
	do {
		size_t n = 0, raw = 0;
		while (first + n < m->n_chunks &&
		       (n == 0 || raw + m->chunks[first + n].raw <= MATERIALIZE_RUN)) {
			raw += m->chunks[first + n].raw;
			n++;
		}
		if ((rv = ds_checkout_size(m, DS_OUT_CSV, first == 0, first, n, &len)) != 0)
			break;
		if (len > cap) {
			free(buf);
			buf = loomi_xmalloc(len);
			cap = len;
		}
		if ((rv = ds_checkout_buf(m, src, DS_OUT_CSV, first == 0, first, n, 0, buf, len,
		                          err)) != 0 ||
		    (rv = file_write(f, buf, len)) != 0)
			break;
#ifdef SYNC_FILE_RANGE_WRITE
		/* the disk writes this run while the next is decompressed: the
		 * fsync at the end has little left to wait for */
		if (fflush(f->fp) == 0)
			(void)sync_file_range(fileno(f->fp), (off_t)(f->bytes - len), (off_t)len,
			                      SYNC_FILE_RANGE_WRITE);
#endif
		first += n;
	} while (first < m->n_chunks);
	free(buf);
	return rv;
}

/* "dataset:NAME@REF" → name and ref (ref NULL without "@"). */
static int
parse_ref(const char *key, const char *value, char name[65], char ref[65], char **msg)
{
	const char *v = value + 8, *at = strchr(v, '@');
	size_t n = at ? (size_t)(at - v) : strlen(v);

	if (n == 0 || n > 64 || (at && (strlen(at + 1) == 0 || strlen(at + 1) > 64))) {
		*msg = loomi_strfmt("%s: \"%s\" is not a dataset reference; write dataset:NAME or "
		                    "dataset:NAME@REF (REF a version id, a tag or a branch)",
		                    key, value);
		return LOOM_EINVAL;
	}
	memcpy(name, v, n);
	name[n] = '\0';
	ref[0] = '\0';
	if (at)
		snprintf(ref, 65, "%s", at + 1);
	if (!ds_name_ok(name)) {
		*msg = loomi_strfmt("%s: \"%s\" is not a dataset name (1 to 64 of A-Z a-z 0-9 . _ -)",
		                    key, name);
		return LOOM_EINVAL;
	}
	return 0;
}

int
loomi_dataset_materialize(loomi_daemon *d, const loomi_caller *caller, const char *key,
                          const char *value, char **path, json_t **info, char **msg)
{
	sqlite3 *db = d->store.db;
	char name[65], ref[65], id[DS_HEX_LEN + 1], *file = NULL, *tmp = NULL;
	ds_row r;
	ds_manifest m;
	dserr e = {0};
	struct stat sb;
	int rv;

	*path = NULL;
	*info = NULL;
	if (!loomi_dataset_is_ref(value)) {
		*msg = loomi_strfmt("%s: \"%s\" does not name a dataset (dataset:NAME@REF)", key, value);
		return LOOM_EINVAL;
	}
	if ((rv = parse_ref(key, value, name, ref, msg)) != 0)
		return rv;
	if ((rv = ds_access(d, caller, name, LOOMI_ACCESS_READ, &r, &e)) != 0) {
		*msg = loomi_strfmt("%s: %s", key, e.msg);
		dserr_free(&e);
		return rv;
	}
	if ((rv = tx_begin(db, false, &e)) == 0) {
		rv = ds_resolve(db, &r, ref[0] ? ref : r.default_branch, id, &e);
		tx_end(db, 0, &e);
	}
	if (rv != 0) {
		*msg = loomi_strfmt("%s: %s", key, e.msg);
		dserr_free(&e);
		ds_row_free(&r);
		return rv;
	}
	file = loomi_strfmt("%s/%s.csv", M.checkout_dir, id);
	if (stat(file, &sb) != 0) {
		ds_source src;
		file_out fo = {NULL, 0};
		loom_instance *ins = ds_storage(d, &e);
		char *err = NULL;
		int fd = -1;

		if (ins == NULL) {
			rv = e.rv;
			*msg = loomi_strfmt("%s: %s", key, e.msg);
			goto done;
		}
		if (loomi_mkdir_p(M.checkout_dir, 0755) != 0) {
			rv = LOOM_EIO;
			*msg = loomi_strfmt("%s: cannot create %s: %s", key, M.checkout_dir,
			                    strerror(errno));
			goto done;
		}
		if ((rv = ds_manifest_load(db, id, &m, &e)) != 0) {
			*msg = loomi_strfmt("%s: %s", key, e.msg);
			goto done;
		}
		/* a temporary file of our own, renamed into place: concurrent
		 * callers each write theirs, the same bytes, and the last rename
		 * wins; a reader never sees half a file */
		tmp = loomi_strfmt("%s/.%s.csv.XXXXXX", M.checkout_dir, id);
		if ((fd = mkstemp(tmp)) < 0 || (fo.fp = fdopen(fd, "w")) == NULL) {
			rv = LOOM_EIO;
			*msg = loomi_strfmt("%s: cannot write %s: %s", key, tmp, strerror(errno));
			if (fd >= 0)
				close(fd);
			ds_manifest_free(&m);
			goto done;
		}
		src = ds_source_of(ins);
		rv = materialize_write(&m, &src, &fo, &err);
		if (fflush(fo.fp) != 0 || fsync(fileno(fo.fp)) != 0)
			rv = rv ? rv : LOOM_EIO;
		if (fclose(fo.fp) != 0)
			rv = rv ? rv : LOOM_EIO;
		if (rv == 0 && (chmod(tmp, 0644) != 0 || rename(tmp, file) != 0))
			rv = LOOM_EIO;
		if (rv == 0) {
			int dfd = open(M.checkout_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (dfd >= 0) {
				fsync(dfd);
				close(dfd);
			}
		}
		if (rv != 0) {
			unlink(tmp);
			*msg = loomi_strfmt("%s: version %s of dataset %s could not be written to %s: %s",
			                    key, id, name, file, err ? err : strerror(errno));
		} else {
			ds_audit(db, caller, name, "checkout", id, ref[0] ? ref : r.default_branch,
			         (int64_t)fo.bytes, "materialized for a task");
		}
		free(err);
		ds_manifest_free(&m);
	} else {
		ds_audit(db, caller, name, "checkout", id, ref[0] ? ref : r.default_branch,
		         (int64_t)sb.st_size, "materialized for a task (already written)");
	}
	if (rv == 0) {
		*path = file;
		file = NULL;
		*info = json_pack("{ssssss}", "name", name, "ref", ref[0] ? ref : r.default_branch,
		                  "version", id);
	}
done:
	free(file);
	free(tmp);
	dserr_free(&e);
	ds_row_free(&r);
	return rv;
}

int
loomi_dataset_commit_file(loomi_daemon *d, const loomi_caller *caller, const char *dataset,
                          const char *branch, const char *path, const char *message,
                          char version[65], char **msg)
{
	ds_row r;
	dserr e = {0};
	upload *u = NULL;
	json_t *out = NULL;
	FILE *fp = NULL;
	char *buf = NULL;
	int rv;

	rv = ds_access(d, caller, dataset, LOOMI_ACCESS_WRITE, &r, &e);
	if (rv == LOOM_ENOENT && ds_load(d->store.db, dataset, &r, &e) == LOOM_ENOENT) {
		/* absent (not merely hidden): made, owned by the caller */
		rv = ds_create(d, caller, dataset, NULL, NULL, &r, &e);
		if (rv == LOOM_EEXIST) /* made by another meanwhile */
			rv = ds_access(d, caller, dataset, LOOMI_ACCESS_WRITE, &r, &e);
	} else if (rv == LOOM_ENOENT) {
		ds_row_free(&r);
		dse(&e, LOOM_ENOENT, "not_found", "there is no dataset \"%s\"", dataset);
	}
	if (rv != 0)
		goto out;
	if ((fp = fopen(path, "rb")) == NULL) {
		rv = dse(&e, LOOM_EIO, NULL, "cannot read %s: %s", path, strerror(errno));
		ds_row_free(&r);
		goto out;
	}
	if ((rv = upload_begin(d, caller, &r, branch, "csv", NULL, &u, &e)) == 0 &&
	    (rv = upload_claim(d, caller, &r, u->id, &u, &e)) == 0) {
		size_t n;
		char *err = NULL;
		buf = loomi_xmalloc(1 << 20);
		while (rv == 0 && (n = fread(buf, 1, 1 << 20, fp)) > 0) {
			if ((rv = ds_import_feed(u->im, buf, n, &err)) != 0)
				dse(&e, rv, NULL, "%s: %s", path, err ? err : loom_strerror(rv));
			else if ((rv = upload_renew(d, u, &e)) == 0)
				u->bytes_in += n;
			free(err);
			err = NULL;
		}
		if (rv == 0 && ferror(fp))
			rv = dse(&e, LOOM_EIO, NULL, "cannot read %s: %s", path, strerror(errno));
		if (rv == 0)
			rv = upload_commit(d, caller, &r, u, message, NULL, &out, version, &e);
		upload_release(d, u, true, caller, rv == 0 ? NULL : e.msg);
	}
	ds_row_free(&r);
out:
	if (fp)
		fclose(fp);
	free(buf);
	json_decref(out);
	if (rv != 0)
		*msg = loomi_strdup(e.msg ? e.msg : loom_strerror(rv));
	dserr_free(&e);
	return rv;
}

/* ------------------------------------------------------------------ life */

int
ds_module_init(loomi_daemon *d, char **err)
{
	const loomi_conf *cf = &d->conf;
	const char *crash = getenv("LOOM_TEST_DATASETS_CRASH");
	char *perr = NULL;

	M.d = d;
	M.s.storage = cf->datasets.storage ? cf->datasets.storage : "store";
	free(M.chunk_prefix);
	M.chunk_prefix = loomi_strfmt("%s/chunks", cf->datasets.prefix ? cf->datasets.prefix
	                                                                : "datasets");
	M.s.chunk_prefix = M.chunk_prefix;
	ds_params_default(&M.s.params);
	if (cf->datasets.chunk_min)
		M.s.params.min_size = (uint32_t)cf->datasets.chunk_min;
	if (cf->datasets.chunk_avg)
		M.s.params.avg_size = (uint32_t)cf->datasets.chunk_avg;
	if (cf->datasets.chunk_max)
		M.s.params.max_size = (uint32_t)cf->datasets.chunk_max;
	if (cf->datasets.zstd_level)
		M.s.params.zstd_level = cf->datasets.zstd_level;
	if (ds_params_check(&M.s.params, &perr) != 0) {
		*err = loomi_strfmt("loomd.conf: datasets: %s", perr ? perr : "invalid chunk sizes");
		free(perr);
		return LOOM_ECONFIG;
	}
	M.s.lock_ttl_ms = cf->datasets.lock_ttl_ms > 0 ? cf->datasets.lock_ttl_ms : 600 * 1000;
	M.s.quota = cf->datasets.quota;
	M.s.part_max = cf->datasets.upload_part_max ? cf->datasets.upload_part_max : 8u << 20;
	free(M.checkout_dir);
	M.checkout_dir = loomi_strfmt("%s/datasets/checkouts", cf->state_dir ? cf->state_dir : ".");
	M.crash = 0;
	if (crash && strcmp(crash, "after-chunks") == 0)
		M.crash = 1;
	else if (crash && strcmp(crash, "after-manifest") == 0)
		M.crash = 2;
	loomi_auth_register_kind("dataset", dataset_owner);
	return 0;
}

int
ds_module_start(loomi_daemon *d, char **err)
{
	sqlite3_stmt *st;
	dserr e = {0};

	(void)err;
	/* uploads lived in the last loomd's memory: their locks are stale */
	st = prep(d->store.db, "DELETE FROM dataset_locks WHERE upload <> 'manual'");
	step_done(d->store.db, st, &e, "release the last run's upload locks");
	dserr_free(&e);
	if (ds_storage(d, &e) == NULL)
		loomi_log(LOOM_LOG_INFO, DSM, "%s", e.msg);
	dserr_free(&e);
	return 0;
}

void
ds_module_stop(loomi_daemon *d)
{
	upload *u;

	(void)d;
	writers_stop();
	pthread_mutex_lock(&M.mu);
	u = M.uploads;
	M.uploads = NULL;
	pthread_mutex_unlock(&M.mu);
	while (u) {
		upload *n = u->next;
		upload_free(u);
		u = n;
	}
	free(M.chunk_prefix);
	free(M.checkout_dir);
	M.chunk_prefix = M.checkout_dir = NULL;
	M.s.chunk_prefix = NULL;
}

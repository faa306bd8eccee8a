/* Stored training configs: named, versioned job specs kept in the state
 * database, job-spec templates read from files, and import and export in
 * libconfig and JSON.
 *
 * A config has an id ("config-3"; "3" is accepted too), a name unique
 * among the configs not deleted, a description, and versions 1, 2, 3 …
 * each holding a job spec (checked by the compute plugin it names before
 * it is stored), the time it was stored and a comment.  An update stores a
 * new version; older ones stay readable.  Deleting a config hides it (get,
 * update, spec, export and a second delete then say there is none) but its
 * versions stay in the database, since tasks may have been made from them.
 *
 * Request bodies (create, update, validate):
 *   {"name": "seattle-forecast", "spec": {…job spec…},
 *    "description": "…", "comment": "…"}
 * or, importing text,
 *   {"name": "…", "text": "data = { … }; model = { … };", "format": "libconfig"}
 *   {"name": "…", "text": "{\"data\": {…}}", "format": "json"}
 * (format defaults to json when the text starts with '{', else libconfig).
 * name: 1–100 of [A-Za-z0-9_.-]; required by create, optional in update
 * (renames) and validate.  comment: at most 1000 characters, stored with
 * the version.  description: at most 4000 characters; update keeps the old
 * one when it is left out.  Update requires spec or text.
 *
 * JSON shapes:
 *   config:   {"config_id": "config-3", "name", "description", "owner",
 *              "version": 2, "versions": 2, "spec": {…}, "created_at", "updated_at"}
 *             (version: the one shown; versions: how many there are; times
 *             ISO-8601 UTC with milliseconds, "2026-11-23T05:10:58.936Z";
 *             updated_at: when the newest version was stored)
 *   list:     {"configs": [config without "spec", …], "total": N, "limit",
 *              "offset"}, newest config first
 *   versions: {"config_id", "name", "versions": [{"version": 1, "created_at",
 *              "comment"}, …]}, oldest first
 *   validate: {"valid": true}
 *
 * Every function that reads or writes the database takes a static lock and
 * runs its statements in one transaction (BEGIN IMMEDIATE … COMMIT for
 * writes, BEGIN … COMMIT for reads) while holding the connection's own
 * mutex (sqlite3_db_mutex), after waiting out a transaction another thread
 * left open on the shared connection: concurrent updates get consecutive
 * version numbers, and other threads' statements never fall inside one of
 * these transactions.  The compute plugin checks a spec before the lock is
 * taken. */
#ifndef LOOM_HOST_CONFIGS_H
#define LOOM_HOST_CONFIGS_H

#include <stdint.h>

#include <jansson.h>

#include "host/server/auth.h"   /* loomi_caller */
#include "host/server/daemon.h" /* loomi_daemon: d->store.db (sqlite3*), d->conf */

/* All return 0 or a LOOM_E* code (sdk/include/loom/error.h) with *msg
 * (malloc'd) naming the field and what to do: LOOM_EINVAL (HTTP 400),
 * LOOM_ENOENT (404), LOOM_EEXIST (409 name taken), LOOM_EIO (500).  On
 * success *out is a new reference and *msg is left alone. */

/* Store a new config at version 1, owned by who; *out is the config (with
 * spec). */
int loomi_configs_create(loomi_daemon *d, const loomi_caller *who, const json_t *body,
                         json_t **out, char **msg);
/* Store a new version of config id (and rename it or change its
 * description when the body says so); *out is the config at the new
 * version. */
int loomi_configs_update(loomi_daemon *d, const char *id, const json_t *body, json_t **out,
                         char **msg);
/* Mark config id deleted; its name is free again. */
int loomi_configs_delete(loomi_daemon *d, const char *id, char **msg);
/* Config id at version (0: the newest). */
int loomi_configs_get(loomi_daemon *d, const char *id, int64_t version /* 0: latest */,
                      json_t **out, char **msg);
/* A page of the configs not deleted that who may see, newest first:
 * limit 1–1000, offset ≥ 0. */
int loomi_configs_list(loomi_daemon *d, const loomi_caller *who, int64_t limit, int64_t offset,
                       json_t **out, char **msg);
/* The versions of config id: number, time and comment of each. */
int loomi_configs_versions(loomi_daemon *d, const char *id, json_t **out, char **msg);
/* Check a body as create would (name optional), storing nothing:
 * *out = {"valid": true}, or LOOM_EINVAL with the problem in *msg. */
int loomi_configs_validate(loomi_daemon *d, const json_t *body, json_t **out, char **msg);
/* The spec of a config version (for POST /training/tasks with config_id):
 * *spec is a new reference. */
int loomi_configs_spec(loomi_daemon *d, const char *id, int64_t version, json_t **spec,
                       char **msg);
/* Export as libconfig text (format "libconfig") or pretty JSON ("json");
 * *text malloc'd.  Either reads back (as "text" with that format) to the
 * same spec.  The libconfig text starts with comment lines naming the
 * config and its version. */
int loomi_configs_export(loomi_daemon *d, const char *id, int64_t version, const char *format,
                         char **text, char **msg);

/* Templates: the *.conf files of a directory (libconfig job specs), by file
 * name without .conf.  templates: {"templates": [{"name": "forecast",
 * "description": "<first comment line of the file>"}]}, sorted by name; a
 * directory that does not exist has none.  template: {"name",
 * "description", "spec": {…}}; a name with '/' or '..' (or any character
 * but [A-Za-z0-9_.-]) is LOOM_EINVAL, a missing file LOOM_ENOENT, a file
 * that does not parse LOOM_EIO (with its line). */
int loomi_configs_templates(const char *dir, json_t **out, char **msg);
int loomi_configs_template(const char *dir, const char *name, json_t **out, char **msg);


/* Ownership.  A config belongs to the user who created it ("owner" in the
 * JSON shapes; configs stored before owners existed belong to no one and
 * only admins see them).  Shares name it as kind "config", id "config-3".
 * The functions above that take an id do not check who asks: the routes,
 * and the tasks module for config_id, ask loomi_configs_may first. */

/* May who do access (LOOMI_ACCESS_READ or _WRITE) to config id?  0, or
 * LOOM_ENOENT for one it may not see (as for one that does not exist),
 * LOOM_EPERM for one it may only read; *msg says which. */
int loomi_configs_may(loomi_daemon *d, const loomi_caller *who, const char *id, int access,
                      char **msg);

/* The owner of config id (auth.h's loomi_owner_fn): 0 with *owner and
 * canon ("config-3"), or LOOM_ENOENT (none, or deleted). */
int loomi_configs_owner(loomi_daemon *d, const char *id, char **owner,
                        char canon[LOOMI_OBJECT_ID_MAX]);

/* "config-12" or "12" → 12; 0 when it is neither. */
int64_t loomi_config_id_parse(const char *text);

#endif /* LOOM_HOST_CONFIGS_H */

/* The model registry (SPEC §8): every completed training task that produced
 * a model (best.safetensors in its output directory) becomes a version of
 * the model named like the task; versions are numbered 1, 2, … per model.
 *
 * A version keeps its own copy of the files (hard links when the state
 * directory is one filesystem, else copies, fsynced) under
 * <state_dir>/models/<dir>/v<N>/: best.safetensors, last.safetensors (when
 * the task wrote one), metrics.json and spec.json, so deleting the task's
 * directory keeps the model.  <dir> is the model name when it is 1–100 of
 * [A-Za-z0-9_.-] not starting with '.', else a safe form of it (other
 * bytes become '_'), with "-<model id>" appended when another model holds
 * that form; the name itself is kept as given.
 *
 * A version records its task, its run (the newest row of the runs table
 * for the task, when that table exists), its final metrics (metrics.json's
 * "test" and "validation" groups flattened to test_<k> and val_<k>, plus any
 * top-level numbers), the task's spec and its lineage (the config id and
 * version it was made from and the run's lineage: data hash, versions).
 *
 * Headline metrics (host/core/headline.h): metrics.json's declaration,
 * resolved to the flat names, is stored beside the metrics under
 * LOOMI_DISPLAY_KEY; a version answers "headline" and "details" from it,
 * or from the fallback rule when it has none (versions registered before).
 *
 * Tags: for every headline metric, "best-<metric>" marks the version with
 * the best value so far (lower is better, except for metrics whose names
 * contain accuracy, f1, r2, precision, recall or auc); a new version takes
 * the tag only when it beats the holder strictly.
 *
 * Aliases: names of [a-z][a-z0-9_-]{0,31} ("staging", "production", …)
 * pointing at a version.  Promote moves an alias to a version; rollback
 * undoes the alias's newest promotion not yet undone, so repeated rollbacks
 * walk its history back; rolling back past the first promotion is refused
 * (LOOM_EEXIST, HTTP 409).  Every move is kept in model_alias_history and
 * published on the bus as "model.alias"; a new version as "model.version".
 *
 * Registration runs on the registry's own thread (loomi_registry_submit),
 * never under the jobs lock; the read routes first wait (up to 10 s) for
 * registrations already submitted, so a model is listed as soon as its
 * task is seen completed.
 *
 * JSON shapes:
 * Owners: a model belongs to the owner of the task whose version made it
 * (the first registration; "owner" in the list and a model).  Who sees
 * it: an admin, its owner, those it is shared with (kind "model", id its
 * name); promote and rollback need it shared for writing.  Another user's
 * model answers 404, as one that does not exist.
 *
 *   list:    {"models": [{"name", "owner", "latest_version", "versions": N,
 *             "aliases": {"production": 2}, "created_at", "updated_at"}],
 *             "total": N}, by name
 *   model:   {"name", "owner", "dir", "description", "created_at", "aliases": {…},
 *             "tags": {"best-test_mae": 3}, "versions": [version summary,
 *             newest first]}
 *   version: {"name", "version", "task_id": "task-7", "run_id": "run-3"|null,
 *             "created_at", "user", "metrics": {…}, "headline": [names],
 *             "details": [tables], "tags": […],
 *             "aliases": […], "dir", "files": [{"name", "bytes"}],
 *             "spec": {…}, "lineage": {"task_id", "run_id", "config_id",
 *             "config_version", "run": {…}|null}}  (the summary in a model
 *             leaves out dir, files, spec and lineage)
 *   move:    {"name", "alias", "version", "previous": N|null,
 *             "action": "promote"|"rollback", "updated_at"} */
#ifndef LOOM_HOST_REGISTRY_H
#define LOOM_HOST_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "host/server/auth.h"
#include "host/server/daemon.h"
/* the deployment rule is part of the registry's interface: its rollback
 * checks (host/deploy/) use it */
#include "host/registry/deploy.h"

/* Register the model that task job_id produced, now, on the calling
 * thread.  0 when a version was stored; LOOM_ENOENT when the task is
 * unknown or produced no model (no best.safetensors); LOOM_EEXIST when it
 * is registered already; LOOM_EIO when files cannot be copied or the
 * database written (nothing is left half-done).  *err says which. */
int loomi_registry_register(loomi_daemon *d, int64_t job_id, char **err);

/* The registry's thread: start before the jobs service, stop after it
 * (stop finishes the registrations submitted). */
int loomi_registry_start(loomi_daemon *d, char **err);
void loomi_registry_stop(loomi_daemon *d);
/* Queue job_id for registration on the registry's thread (the module's
 * listener calls it when a task completes; cheap, never blocks on files).
 * Without a started thread it registers at once. */
void loomi_registry_submit(loomi_daemon *d, int64_t job_id);

/* Operations behind the routes: 0 or LOOM_E* with *msg (malloc'd):
 * LOOM_EINVAL (400), LOOM_ENOENT (404), LOOM_EEXIST (409), LOOM_EIO (500).
 * version: a number, "v<N>", or an alias name. */
/* The list holds the models who may see (host/server/auth.h). */
int loomi_registry_list(loomi_daemon *d, const loomi_caller *who, json_t **out, char **msg);
int loomi_registry_model(loomi_daemon *d, const char *name, json_t **out, char **msg);
int loomi_registry_version(loomi_daemon *d, const char *name, const char *version,
                           json_t **out, char **msg);
int loomi_registry_promote(loomi_daemon *d, const char *name, const char *alias,
                           int64_t version, const char *user, json_t **out, char **msg);
int loomi_registry_rollback(loomi_daemon *d, const char *name, const char *alias,
                            const char *user, json_t **out, char **msg);

/* For serving (host/inference/): the version ref of model name (a number,
 * "v<N>" or an alias) resolved to the model's id, the version number and
 * its directory (malloc'd).  0, or LOOM_EINVAL / LOOM_ENOENT with *msg. */
int loomi_registry_resolve(loomi_daemon *d, const char *name, const char *ref,
                           int64_t *model_id, int64_t *version, char **dir, char **msg);
/* May the request's caller do access to the model named by the route's
 * first parameter?  True, or false after setting the answer: 404 for one it
 * may not see (word for word what a model that does not exist answers), 403
 * for one it may only read.  A model not registered yet is the caller's to
 * report. */
struct loomi_http_req;
struct loomi_http_res;
bool loomi_registry_may(loomi_daemon *d, const struct loomi_http_req *req, int access,
                        struct loomi_http_res *res);
/* The same for a model named elsewhere (a batch prediction's spec, a
 * labeling project): true when caller may do access to model name, or
 * when no such model is registered (resolving it then says so); false
 * for one it may not see. */
bool loomi_registry_allowed(loomi_daemon *d, const loomi_caller *caller, const char *name,
                            int access);

#endif /* LOOM_HOST_REGISTRY_H */

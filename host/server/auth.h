/* Who may do what: users, roles, API tokens, shares (host/server/auth.c).
 *
 * Every request is authenticated by the pipeline (api.h, step 6) before its
 * route runs, with the first of:
 *
 *   Authorization: Bearer loom_…   an API token (tokens table, SHA-256 only);
 *   Cookie: loom_token=loom_…      the same token, set by POST /api/v1/session
 *                                  for the web UI (HttpOnly, SameSite=Strict);
 *   the Unix socket                the peer's uid (SO_PEERCRED), mapped to the
 *                                  user with that uid;
 *   auth = "none"                  (loopback listeners only) everyone is the
 *                                  local admin.
 *
 * Then authorized (step 7) against the route's access: READ any user,
 * WRITE a user or an admin, ADMIN an admin; 401 without or with a bad
 * credential, 403 for a role that may not.  What a route does with one
 * object is the route's own check, through loomi_auth_object: another
 * user's object answers 404 (its existence does not leak), one shared for
 * reading answers 403 to a change.  Lists filter with loomi_auth_visible_sql.
 *
 * Roles: admin (everything, users, and sees every object), user (own
 * objects and those shared with them), viewer (reads what is shared with
 * it, changes nothing).  "exec" is a permission of its own, granted by an
 * admin: running commands of the caller's choosing (compute-exec tasks). */
#ifndef LOOM_HOST_AUTH_H
#define LOOM_HOST_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

#include "api.h"
#include "daemon.h"

typedef enum loomi_role {
	LOOMI_ROLE_VIEWER = 1,
	LOOMI_ROLE_USER = 2,
	LOOMI_ROLE_ADMIN = 3,
} loomi_role;

#define LOOMI_USER_NAME_MAX 32

/* The caller of a request, as the pipeline authenticated it. */
typedef struct loomi_caller {
	int64_t user_id;                   /* users.id; 0: the local admin of auth = "none" */
	char name[LOOMI_USER_NAME_MAX + 1];
	int role;                          /* loomi_role */
	bool exec;                         /* may run commands (compute-exec) */
	int64_t token_id;                  /* the token used; 0: none */
	const char *via;                   /* "token", "cookie", "socket", "none" */
} loomi_caller;

/* A role's name ("admin") and back (0 when unknown). */
const char *loomi_role_name(int role);
int loomi_role_parse(const char *name);

/* Is name a valid user name: 1 to 32 of [a-z0-9_.-], starting with a
 * letter or '_' (as Unix user names)? */
bool loomi_user_name_ok(const char *name);

/* Steps 6 and 7 of the pipeline: authenticate req (fills *out) and check
 * access; false after setting res (401 with WWW-Authenticate, or 403). */
bool loomi_auth_check(loomi_daemon *d, const loomi_http_req *req, int access,
                      loomi_caller *out, loomi_http_res *res);

/* What the caller may do with one object of kind ("task", "config",
 * "run", "model", "alert-rule") whose owner is owner (a user name):
 * 0 when access (LOOMI_ACCESS_READ or _WRITE) is allowed; else 404 after
 * setting res to "no such <what>" (the caller may not see it), or 403 (it
 * may see it but not change it).  what names the object in the message
 * ("task task-3"). */
int loomi_auth_object(loomi_daemon *d, const loomi_caller *c, const char *kind,
                      const char *id, const char *owner, int access, const char *what,
                      loomi_http_res *res);

/* May the caller see / change the object?  (As loomi_auth_object, without
 * an answer.) */
bool loomi_auth_may(loomi_daemon *d, const loomi_caller *c, const char *kind, const char *id,
                    const char *owner, int access);

/* An SQL condition true for the rows of kind the caller may see: owner_sql
 * and id_sql are column expressions of the query ("jobs.user",
 * "('task-' || jobs.id)": the id as shares spell it).  It uses the
 * parameters ?901 and ?902 (so a statement's own ?1, ?2 … are left alone):
 * bind them with loomi_auth_bind after preparing.  Free the string. */
char *loomi_auth_visible_sql(const char *kind, const char *id_sql, const char *owner_sql);
void loomi_auth_bind(sqlite3_stmt *st, const loomi_caller *c);

/* An object kind's owner, for shares: a module that owns objects of kind
 * registers, at init, how to find an object's owner from an id as a user
 * writes it: 0 with *owner (free it) and the id as shares and
 * loomi_auth_visible_sql's id_sql spell it in canon ("3" → "task-3"), or
 * LOOM_ENOENT. */
#define LOOMI_OBJECT_ID_MAX 128
typedef int (*loomi_owner_fn)(loomi_daemon *d, const char *id, char **owner,
                              char canon[LOOMI_OBJECT_ID_MAX]);
void loomi_auth_register_kind(const char *kind, loomi_owner_fn owner);

/* The caller for in-process work that acts as loomd itself (recovery,
 * scheduled actions): an admin named "loomd". */
extern const loomi_caller loomi_caller_loomd;

/* An audit line in the structured log: who (the caller's name, or NULL)
 * did what. */
void loomi_audit(const loomi_caller *c, const char *fmt, ...) LOOM_PRINTF(2, 3);

/* A user's name, role and permissions by name (for submissions on behalf
 * of someone); false when there is no such enabled user. */
bool loomi_auth_user(loomi_daemon *d, const char *name, loomi_caller *out);

/* May a task read the file path (the value of the spec setting key, e.g.
 * "data.path")?  It must lie under one of loomd.conf's data_roots (by
 * default the state directory, the package's data and the example data
 * sets), after symbolic links are resolved; "<storage instance>:<key>"
 * references are the storage plugin's to check.  0, or LOOM_EINVAL with a
 * message naming key, the path and data_roots. */
int loomi_data_path_check(loomi_daemon *d, const char *key, const char *path, char **msg);

#endif /* LOOM_HOST_AUTH_H */

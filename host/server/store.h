/* The state store: one SQLite database in WAL mode with foreign keys on,
 * brought to the current schema by numbered migrations recorded in the
 * schema_migrations table.  A database written by a newer Loom (a higher
 * version than this build knows) is refused, never modified. */
#ifndef LOOM_HOST_STORE_H
#define LOOM_HOST_STORE_H

#include <stdbool.h>

#include <sqlite3.h>

#include <loom/error.h>

typedef struct loomi_migration {
	int version;
	const char *description;
	const char *sql;
} loomi_migration;

typedef struct loomi_store {
	sqlite3 *db;
	char *path;
	int version;          /* schema version after open */
} loomi_store;

/* Open (creating if needed) path and migrate it to this build's schema:
 * the migrations of every module of the module table (module.h), merged by
 * version.  0, or LOOM_EIO / LOOM_ESCHEMA / LOOM_ECORRUPT with *err set. */
int loomi_store_open(loomi_store *st, const char *path, char **err);
/* The same with an explicit migration list (tests). */
int loomi_store_open_with(loomi_store *st, const char *path, const loomi_migration *migs,
                          size_t n_migs, char **err);
void loomi_store_close(loomi_store *st);

/* The schema version this build brings a database to. */
int loomi_store_schema_version(void);

/* ------------------------------------------------------------------ writes */

/* Every write passes its SQLite result code here (a write statement's
 * step, a COMMIT, a RELEASE): 0 for SQLITE_OK, SQLITE_DONE or SQLITE_ROW;
 * else LOOM_EIO, after the failure is noted for this thread (the message
 * below), for /health (loomi_store_writable) and in loomd's log (once,
 * then counted).  A write that did not commit must not be acknowledged:
 * the caller rolls back and answers 503 with loomi_store_errmsg. */
int loomi_store_wrote(sqlite3 *db, int rc);

/* What a client is told when this thread's last write failed: "<what>
 * could not be stored: database or disk is full; free space under
 * STATE_DIR and retry" — the SQLite error and what to do about it. */
char *loomi_store_errmsg(const char *what);

/* Can the store write now?  False, with *cause (free it), when the
 * filesystem of the state directory has no room for the database to grow
 * (a probe reserves and frees a little), or when the last write failed
 * for another reason and none has succeeded since.  Cheap enough for each
 * GET /health; recovers by itself when space returns. */
bool loomi_store_writable(loomi_store *st, char **cause);

/* ------------------------------------------------------------------ the state directory */

/* Create the state directory if needed and take its lock (loomd.pid, held
 * with flock for the life of the process; it contains the PID).  0, or
 * LOOM_EBUSY when another live loomd holds it, LOOM_EIO otherwise; *err
 * says which and what to do.  *fd receives the lock's descriptor. */
int loomi_statedir_lock(const char *dir, int *fd, char **err);
void loomi_statedir_unlock(const char *dir, int fd);

#endif /* LOOM_HOST_STORE_H */

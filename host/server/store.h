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

/* ------------------------------------------------------------------ a module's statements */

/* A module's statement failed: LOOM_EIO with *msg (what it held freed).
 * A write the store could not make (a full disk …) is answered 503 with
 * what to do (loomi_store_errmsg); another failure says what failed, and
 * is logged under the module's name. */
int loomi_store_failed(sqlite3 *db, const char *module, const char *what, char **msg);
/* sql prepared, or NULL after logging why under the module's name. */
sqlite3_stmt *loomi_store_prep(sqlite3 *db, const char *module, const char *sql);
/* Run a statement that returns no rows (NULL: one that did not prepare)
 * and finalize it: 0, or loomi_store_failed's answer. */
int loomi_store_step_done(sqlite3 *db, sqlite3_stmt *st, const char *module, const char *what,
                          char **msg);

/* ------------------------------------------------------------------ transactions */

/* How long a transaction waits for the write lock, for another thread's
 * transaction on a shared connection, before it gives up with LOOM_EBUSY. */
#define LOOMI_STORE_WAIT_MS 30000

/* Every transaction on the state database begins and ends with these.
 *
 * Several connections write the database (the daemon's shared one and the
 * tracking, log and alert writers).  SQLite lets one write at a time and
 * makes the others wait in their busy handler, except a transaction that
 * began deferred, read, and then wants to write: it gets SQLITE_BUSY at
 * once, since waiting could deadlock.  So a transaction that may write
 * (write true) begins IMMEDIATE, taking the write lock before its first
 * read, and goes on waiting past the connection's busy timeout up to
 * LOOMI_STORE_WAIT_MS.  A read-only one begins deferred and never waits.
 *
 * A connection that threads share (serialized mode) has one transaction,
 * not one per thread: the connection's recursive mutex is held from begin
 * to end so no other thread's statement lands inside it, and a transaction
 * another thread left open is waited out.
 *
 * 0, or LOOM_EBUSY (still locked after LOOMI_STORE_WAIT_MS) or LOOM_EIO
 * with *err set (replacing what it held); on failure nothing is held. */
int loomi_store_begin(sqlite3 *db, bool write, char **err);
/* Commit when rv is 0, else roll back; release the connection.  Returns
 * rv, or LOOM_EIO with *err when the commit failed (rolled back). */
int loomi_store_end(sqlite3 *db, int rv, char **err);

/* ------------------------------------------------------------------ the state directory */

/* Create the state directory if needed and take its lock (loomd.pid, held
 * with flock for the life of the process; it contains the PID).  0, or
 * LOOM_EBUSY when another live loomd holds it, LOOM_EIO otherwise; *err
 * says which and what to do.  *fd receives the lock's descriptor. */
int loomi_statedir_lock(const char *dir, int *fd, char **err);
void loomi_statedir_unlock(const char *dir, int fd);

#endif /* LOOM_HOST_STORE_H */

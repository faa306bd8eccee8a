/* The state store: one SQLite database in WAL mode with foreign keys on,
 * brought to the current schema by numbered migrations recorded in the
 * schema_migrations table.  A database written by a newer Loom (a higher
 * version than this build knows) is refused, never modified. */
#ifndef LOOM_HOST_STORE_H
#define LOOM_HOST_STORE_H

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

/* ------------------------------------------------------------------ the state directory */

/* Create the state directory if needed and take its lock (loomd.pid, held
 * with flock for the life of the process; it contains the PID).  0, or
 * LOOM_EBUSY when another live loomd holds it, LOOM_EIO otherwise; *err
 * says which and what to do.  *fd receives the lock's descriptor. */
int loomi_statedir_lock(const char *dir, int *fd, char **err);
void loomi_statedir_unlock(const char *dir, int fd);

#endif /* LOOM_HOST_STORE_H */

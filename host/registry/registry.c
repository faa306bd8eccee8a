/* The model registry: versions of the models that training tasks produced,
 * their files, tags and aliases (registry.h says what each does). */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include <loom/error.h>

#include "host/core/headline.h"
#include "host/core/log.h"
#include "host/core/util.h"
#include "host/server/module.h"
#include "host/server/store.h"
#include "deploy.h"
#include "registry.h"

static const char migration_sql[] =
	"CREATE TABLE models (\n"
	"  id          INTEGER PRIMARY KEY,\n"
	"  name        TEXT NOT NULL UNIQUE,\n"
	"  dir         TEXT NOT NULL UNIQUE,\n"
	"  description TEXT NOT NULL DEFAULT '',\n"
	"  created_at  INTEGER NOT NULL\n"
	");\n"
	/* job_id is no foreign key: a version outlives its task */
	"CREATE TABLE model_versions (\n"
	"  model_id   INTEGER NOT NULL REFERENCES models (id) ON DELETE CASCADE,\n"
	"  version    INTEGER NOT NULL CHECK (version >= 1),\n"
	"  job_id     INTEGER NOT NULL UNIQUE,\n"
	"  run_id     INTEGER,\n"
	"  dir        TEXT NOT NULL,\n"
	"  metrics    TEXT NOT NULL CHECK (json_valid(metrics)),\n"
	"  spec       TEXT NOT NULL CHECK (json_valid(spec)),\n"
	"  lineage    TEXT NOT NULL CHECK (json_valid(lineage)),\n"
	"  created_at INTEGER NOT NULL,\n"
	"  user       TEXT NOT NULL,\n"
	"  PRIMARY KEY (model_id, version)\n"
	");\n"
	"CREATE TABLE model_aliases (\n"
	"  model_id   INTEGER NOT NULL,\n"
	"  alias      TEXT NOT NULL,\n"
	"  version    INTEGER NOT NULL,\n"
	"  updated_at INTEGER NOT NULL,\n"
	"  PRIMARY KEY (model_id, alias),\n"
	"  FOREIGN KEY (model_id, version) REFERENCES model_versions (model_id, version)\n"
	") WITHOUT ROWID;\n"
	/* undoes: the promotion a rollback undid, so the next rollback goes
	 * one step further back */
	"CREATE TABLE model_alias_history (\n"
	"  id           INTEGER PRIMARY KEY,\n"
	"  model_id     INTEGER NOT NULL REFERENCES models (id) ON DELETE CASCADE,\n"
	"  alias        TEXT NOT NULL,\n"
	"  from_version INTEGER,\n"
	"  to_version   INTEGER NOT NULL,\n"
	"  action       TEXT NOT NULL CHECK (action IN ('promote','rollback')),\n"
	"  undoes       INTEGER REFERENCES model_alias_history (id),\n"
	"  at           INTEGER NOT NULL,\n"
	"  user         TEXT NOT NULL\n"
	");\n"
	"CREATE INDEX model_alias_history_by_alias ON model_alias_history (model_id, alias, id);\n"
	"CREATE TABLE model_tags (\n"
	"  model_id   INTEGER NOT NULL,\n"
	"  tag        TEXT NOT NULL,\n"
	"  version    INTEGER NOT NULL,\n"
	"  metric     TEXT NOT NULL,\n"
	"  value      REAL NOT NULL,\n"
	"  updated_at INTEGER NOT NULL,\n"
	"  PRIMARY KEY (model_id, tag),\n"
	"  FOREIGN KEY (model_id, version) REFERENCES model_versions (model_id, version)\n"
	") WITHOUT ROWID;\n";

/* How long a transaction waits for another thread's to end, and a read
 * route for registrations already submitted. */
#define IDLE_WAIT_MS 10000
#define NAME_MAX_LEN 100

/* One operation at a time; loomi_store_begin also waits out other
 * modules' transactions on the shared connection. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* The registration thread and its queue of task ids. */
static struct {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	pthread_t thread;
	bool up, stopping, busy;
	loomi_daemon *d;
	int64_t *ids;
	size_t n, cap;
} Q = {.mtx = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* ------------------------------------------------------------------ helpers */

static int fail(char **msg, int code, const char *fmt, ...) LOOM_PRINTF(3, 4);

static int
fail(char **msg, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	free(*msg);
	*msg = loomi_vstrfmt(fmt, ap);
	va_end(ap);
	return code;
}

/* A failed statement (store.h's loomi_store_failed). */
static int
db_fail(sqlite3 *db, char **msg, const char *what)
{
	return loomi_store_failed(db, "registry", what, msg);
}

/* The store helpers of the registry's files (deploy.h lends them to
 * deploy.c and the rule's checks); below, by their short names. */
sqlite3_stmt *
loomi_registry_prep(sqlite3 *db, const char *sql)
{
	return loomi_store_prep(db, "registry", sql);
}

/* Run a statement that returns no rows; 0 or LOOM_EIO with *msg. */
int
loomi_registry_step_done(sqlite3 *db, sqlite3_stmt *st, char **msg, const char *what)
{
	return loomi_store_step_done(db, st, "registry", what, msg);
}

json_t *
loomi_registry_json_column(sqlite3_stmt *st, int col)
{
	const char *text = (const char *)sqlite3_column_text(st, col);
	json_t *v = text ? json_loads(text, 0, NULL) : NULL;
	return v ? v : json_null();
}

json_t *
loomi_registry_iso_time(int64_t ms)
{
	char *s = loomi_iso_time(ms);
	json_t *v = json_string(s);
	free(s);
	return v;
}

#define prep loomi_registry_prep
#define step_done loomi_registry_step_done
#define json_column loomi_registry_json_column
#define iso_time loomi_registry_iso_time

static json_t *
prefixed_id(const char *prefix, sqlite3_stmt *st, int col)
{
	char buf[48];
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return json_null();
	snprintf(buf, sizeof buf, "%s-%lld", prefix, (long long)sqlite3_column_int64(st, col));
	return json_string(buf);
}

/* ------------------------------------------------------------------ names and metrics */

static bool
safe_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || c == '.';
}

/* The directory name for a model name: the name itself when it is safe,
 * else its bytes with the unsafe ones turned to '_' (never ".", ".." or a
 * hidden name). */
static char *
safe_dir(const char *name)
{
	size_t n = strlen(name);
	char *s = loomi_strndup(name, n > NAME_MAX_LEN ? NAME_MAX_LEN : n);

	for (char *p = s; *p; p++)
		if (!safe_char(*p))
			*p = '_';
	if (s[0] == '\0' || s[0] == '.') {
		char *t = loomi_strfmt("model%s", s);
		free(s);
		s = t;
	}
	return s;
}

/* An alias name: [a-z][a-z0-9_-]{0,31}. */
static bool
alias_ok(const char *a)
{
	size_t n = strlen(a);
	if (n < 1 || n > 32 || a[0] < 'a' || a[0] > 'z')
		return false;
	for (size_t i = 1; i < n; i++)
		if (!((a[i] >= 'a' && a[i] <= 'z') || (a[i] >= '0' && a[i] <= '9') || a[i] == '_' ||
		      a[i] == '-'))
			return false;
	return true;
}

static int
check_alias(const char *alias, char **msg)
{
	if (!alias_ok(alias))
		return fail(msg, LOOM_EINVAL,
		            "\"%s\" is not an alias name; use 1–32 of a-z, 0-9, '_' and '-' starting "
		            "with a letter, like \"staging\" or \"production\"",
		            alias);
	return 0;
}

/* Scores, not errors, grow with these; every other metric is better lower. */
static bool
higher_is_better(const char *metric)
{
	static const char *const up[] = {"accuracy", "f1", "r2", "precision", "recall", "auc"};
	for (size_t i = 0; i < sizeof up / sizeof up[0]; i++)
		if (strstr(metric, up[i]))
			return true;
	return false;
}

static void
flatten_group(json_t *flat, const json_t *m, const char *group, const char *prefix)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)json_object_get(m, group), k, v) {
		if (json_is_number(v)) {
			char *name = loomi_strfmt("%s_%s", prefix, k);
			json_object_set(flat, name, v);
			free(name);
		}
	}
}

/* The final figures of a metrics.json as worker.c reports them (test_<k>),
 * with the validation split beside them (val_<k>) and any top-level
 * numbers; an incremental run's shared holdout (holdout.model.<k> →
 * holdout_<k>, holdout.init.<k> → holdout_init_<k>) and its continual
 * summary (continual.average → cl_average, and forgetting, bwt, fwt). */
static json_t *
final_metrics(const json_t *m)
{
	static const char *const cl[] = {"average", "forgetting", "bwt", "fwt"};
	const json_t *holdout = json_object_get(m, "holdout"), *cont = json_object_get(m, "continual");
	json_t *flat = json_object(), *v;
	const char *k;

	flatten_group(flat, m, "test", "test");
	flatten_group(flat, m, "validation", "val");
	flatten_group(flat, holdout, "model", "holdout");
	flatten_group(flat, holdout, "init", "holdout_init");
	for (size_t i = 0; i < sizeof cl / sizeof cl[0]; i++)
		if (json_is_number(v = json_object_get(cont, cl[i]))) {
			char *name = loomi_strfmt("cl_%s", cl[i]);
			json_object_set(flat, name, v);
			free(name);
		}
	json_object_foreach((json_t *)m, k, v)
		if (json_is_number(v))
			json_object_set(flat, k, v);
	return flat;
}

/* ------------------------------------------------------------------ files */

static int
fsync_path(const char *path, bool dir)
{
	int fd = open(path, (dir ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC), rv = 0;
	if (fd < 0)
		return errno;
	if (fsync(fd) != 0)
		rv = errno;
	close(fd);
	return rv;
}

static int
copy_file(const char *src, const char *dst)
{
	char buf[1 << 16];
	int in = open(src, O_RDONLY | O_CLOEXEC), out, rv = 0;
	ssize_t r;

	if (in < 0)
		return errno;
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (out < 0) {
		rv = errno;
		close(in);
		return rv;
	}
	while (rv == 0 && (r = read(in, buf, sizeof buf)) != 0) {
		if (r < 0) {
			if (errno != EINTR)
				rv = errno;
			continue;
		}
		for (ssize_t off = 0; off < r && rv == 0;) {
			ssize_t w = write(out, buf + off, (size_t)(r - off));
			if (w < 0 && errno != EINTR)
				rv = errno;
			else if (w > 0)
				off += w;
		}
	}
	if (rv == 0 && fsync(out) != 0)
		rv = errno;
	if (close(out) != 0 && rv == 0)
		rv = errno;
	close(in);
	if (rv != 0)
		unlink(dst);
	return rv;
}

/* A hard link when src and dst share a filesystem (no bytes copied; the
 * task's files are never rewritten in place once it completed), else a
 * copy; fsynced either way. */
static int
link_or_copy(const char *src, const char *dst)
{
	if (link(src, dst) == 0)
		return fsync_path(dst, false);
	if (errno == EXDEV || errno == EPERM || errno == EMLINK || errno == ENOTSUP)
		return copy_file(src, dst);
	return errno;
}

/* Remove a directory of plain files (a staging or stale version). */
static void
remove_flat_dir(const char *dir)
{
	DIR *dp = opendir(dir);
	struct dirent *e;

	if (dp == NULL)
		return;
	while ((e = readdir(dp)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char *p = loomi_path_join(dir, e->d_name);
		unlink(p);
		free(p);
	}
	closedir(dp);
	rmdir(dir);
}

/* continual.safetensors: an incremental run's replay bank, EWC terms and
 * holdouts (docs/incremental.md), which a later train.init reads */
static const char *const model_files[] = {"best.safetensors", "last.safetensors",
                                          "metrics.json", "continual.safetensors"};

/* Put the version's files in stage: the task's model files and its spec. */
static int
stage_files(const char *task_dir, const char *stage, const char *spec, char **msg)
{
	int rv;

	remove_flat_dir(stage); /* left by a registration that did not finish */
	if ((rv = loomi_mkdir_p(stage, 0755)) != 0)
		return fail(msg, LOOM_EIO, "cannot create %s: %s", stage, strerror(rv));
	for (size_t i = 0; i < sizeof model_files / sizeof model_files[0]; i++) {
		char *src = loomi_path_join(task_dir, model_files[i]);
		char *dst = loomi_path_join(stage, model_files[i]);
		rv = access(src, F_OK) == 0 ? link_or_copy(src, dst) : 0; /* best.safetensors
		                                                            * was checked */
		if (rv != 0)
			fail(msg, LOOM_EIO, "cannot copy %s to %s: %s", src, dst, strerror(rv));
		free(src);
		free(dst);
		if (rv != 0)
			return LOOM_EIO;
	}
	{
		char *path = loomi_path_join(stage, "spec.json");
		rv = loomi_write_file_atomic(path, spec, strlen(spec), 0644);
		if (rv != 0)
			fail(msg, LOOM_EIO, "cannot write %s: %s", path, strerror(rv));
		free(path);
		if (rv != 0)
			return LOOM_EIO;
	}
	if ((rv = fsync_path(stage, true)) != 0)
		return fail(msg, LOOM_EIO, "cannot fsync %s: %s", stage, strerror(rv));
	return 0;
}

/* The files of a version directory, by name. */
static json_t *
dir_files(const char *dir)
{
	json_t *files = json_array();
	struct dirent **names = NULL;
	int n = scandir(dir, &names, NULL, alphasort);

	for (int i = 0; i < n; i++) {
		struct stat sb;
		char *p = loomi_path_join(dir, names[i]->d_name);
		if (names[i]->d_name[0] != '.' && stat(p, &sb) == 0 && S_ISREG(sb.st_mode))
			json_array_append_new(files, json_pack("{s:s, s:I}", "name", names[i]->d_name,
			                                       "bytes", (json_int_t)sb.st_size));
		free(p);
		free(names[i]);
	}
	free(names);
	return files;
}

/* ------------------------------------------------------------------ registration */

typedef struct task_info {
	char *name, *user, *spec;
	int64_t config_id, config_version, run_id; /* 0: none */
	json_t *run_lineage;                       /* or NULL */
} task_info;

static void
task_info_free(task_info *t)
{
	free(t->name);
	free(t->user);
	free(t->spec);
	json_decref(t->run_lineage);
}

static bool
table_exists(sqlite3 *db, const char *name)
{
	sqlite3_stmt *st = prep(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?");
	bool yes;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	yes = st && sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return yes;
}

/* What the registry keeps of task id: its name, owner, spec, config and
 * run (the newest, when the runs table exists). */
static int
read_task(sqlite3 *db, int64_t id, task_info *t, char **msg)
{
	sqlite3_stmt *st;
	int rv;

	if ((rv = loomi_store_begin(db, false, msg)) != 0)
		return rv;
	st = prep(db, "SELECT name, user, spec, config_id, config_version FROM jobs WHERE id = ?");
	sqlite3_bind_int64(st, 1, id);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		t->name = loomi_strdup((const char *)sqlite3_column_text(st, 0));
		t->user = loomi_strdup((const char *)sqlite3_column_text(st, 1));
		t->spec = loomi_strdup((const char *)sqlite3_column_text(st, 2));
		t->config_id = sqlite3_column_int64(st, 3);
		t->config_version = sqlite3_column_int64(st, 4);
	} else {
		rv = fail(msg, LOOM_ENOENT, "there is no task-%lld", (long long)id);
	}
	sqlite3_finalize(st);
	if (rv == 0 && table_exists(db, "runs")) {
		st = prep(db, "SELECT id, lineage FROM runs WHERE job_id = ? ORDER BY id DESC LIMIT 1");
		sqlite3_bind_int64(st, 1, id);
		if (st && sqlite3_step(st) == SQLITE_ROW) {
			t->run_id = sqlite3_column_int64(st, 0);
			t->run_lineage = json_column(st, 1);
		}
		sqlite3_finalize(st);
	}
	return loomi_store_end(db, rv, msg);
}

/* Which version an incremental run started from: {"model", "version"}
 * of the stored spec's train.init (loomd resolved it at submission), or
 * null for a run from scratch. */
static json_t *
init_of(const char *spec_text)
{
	json_t *spec = spec_text ? json_loads(spec_text, 0, NULL) : NULL, *out = json_null();
	const json_t *init = json_object_get(json_object_get(spec, "train"), "init");
	if (json_is_object(init)) {
		const json_t *m = json_object_get(init, "model"), *v = json_object_get(init, "version");
		out = json_pack("{s:O, s:O}", "model", json_is_string(m) ? m : json_null(), "version",
		                json_is_integer(v) ? v : json_null());
	}
	json_decref(spec);
	return out;
}

/* The dataset version the run trained on (data.dataset, which loomd wrote
 * when data.path named "dataset:NAME@REF"), or null. */
static json_t *
dataset_of(const char *spec_text)
{
	json_t *spec = spec_text ? json_loads(spec_text, 0, NULL) : NULL, *out = json_null();
	const json_t *ds = json_object_get(json_object_get(spec, "data"), "dataset");
	if (json_is_object(ds))
		out = json_deep_copy(ds);
	json_decref(spec);
	return out;
}

static json_t *
lineage_json(int64_t job_id, const task_info *t)
{
	json_t *l = json_object();
	json_object_set_new(l, "task_id", json_sprintf("task-%lld", (long long)job_id));
	json_object_set_new(l, "run_id",
	                    t->run_id ? json_sprintf("run-%lld", (long long)t->run_id) : json_null());
	json_object_set_new(l, "config_id", t->config_id ? json_sprintf("config-%lld",
	                                                                (long long)t->config_id)
	                                                 : json_null());
	json_object_set_new(l, "config_version",
	                    t->config_version ? json_integer(t->config_version) : json_null());
	json_object_set(l, "run", t->run_lineage ? t->run_lineage : json_null());
	json_object_set_new(l, "init", init_of(t->spec));
	json_object_set_new(l, "dataset", dataset_of(t->spec));
	return l;
}

/* The model called name (made when new, with a directory name no other
 * model holds): its id and directory. */
static int
ensure_model(sqlite3 *db, const char *name, const char *owner, int64_t now, int64_t *id,
             char **dir, char **msg)
{
	sqlite3_stmt *st = prep(db, "SELECT id, dir FROM models WHERE name = ?");
	char *base, *cand;

	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		*id = sqlite3_column_int64(st, 0);
		*dir = loomi_strdup((const char *)sqlite3_column_text(st, 1));
		sqlite3_finalize(st);
		return 0;
	}
	sqlite3_finalize(st);
	base = safe_dir(name);
	cand = loomi_strdup(base);
	for (int n = 2;; n++) {
		bool taken;
		st = prep(db, "SELECT 1 FROM models WHERE dir = ?");
		sqlite3_bind_text(st, 1, cand, -1, SQLITE_STATIC);
		taken = st && sqlite3_step(st) == SQLITE_ROW;
		sqlite3_finalize(st);
		if (!taken)
			break;
		free(cand);
		cand = loomi_strfmt("%s-%d", base, n);
	}
	free(base);
	/* the model belongs to the owner of the task of its first version */
	st = prep(db, "INSERT INTO models (name, dir, created_at, owner) VALUES (?, ?, ?, ?)");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, cand, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now);
	sqlite3_bind_text(st, 4, owner ? owner : "", -1, SQLITE_STATIC);
	if (step_done(db, st, msg, "store a model") != 0) {
		free(cand);
		return LOOM_EIO;
	}
	*id = sqlite3_last_insert_rowid(db);
	*dir = cand;
	return 0;
}

/* Move each best-<metric> tag of a headline metric to version when it
 * beats the holder. */
static int
update_tags(sqlite3 *db, int64_t model, int64_t version, const json_t *metrics, int64_t now,
            json_t *moved, char **msg)
{
	json_t *display = json_object_get(metrics, LOOMI_DISPLAY_KEY), *fallback = NULL;
	json_t *headline, *name;
	size_t i;

	if (display == NULL)
		display = fallback = loomi_display_fallback(metrics);
	headline = loomi_display_headline(display, metrics);
	json_decref(fallback);
	json_array_foreach(headline, i, name) {
		const char *k = json_string_value(name);
		json_t *v = json_object_get(metrics, k);
		if (!json_is_number(v))
			continue;
		double x = json_number_value(v), best = 0;
		char *tag = loomi_strfmt("best-%s", k);
		bool held = false, wins;
		sqlite3_stmt *st = prep(db, "SELECT value FROM model_tags WHERE model_id = ? AND tag = ?");
		sqlite3_bind_int64(st, 1, model);
		sqlite3_bind_text(st, 2, tag, -1, SQLITE_STATIC);
		if (st && sqlite3_step(st) == SQLITE_ROW) {
			held = true;
			best = sqlite3_column_double(st, 0);
		}
		sqlite3_finalize(st);
		wins = !isnan(x) && (!held || (higher_is_better(k) ? x > best : x < best));
		if (wins) {
			st = prep(db, "INSERT INTO model_tags (model_id, tag, version, metric, value,"
			              " updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
			              " ON CONFLICT (model_id, tag) DO UPDATE SET version = ?3,"
			              " value = ?5, updated_at = ?6");
			sqlite3_bind_int64(st, 1, model);
			sqlite3_bind_text(st, 2, tag, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 3, version);
			sqlite3_bind_text(st, 4, k, -1, SQLITE_STATIC);
			sqlite3_bind_double(st, 5, x);
			sqlite3_bind_int64(st, 6, now);
			if (step_done(db, st, msg, "store a tag") != 0) {
				free(tag);
				json_decref(headline);
				return LOOM_EIO;
			}
			json_array_append_new(moved, json_string(tag));
		}
		free(tag);
	}
	json_decref(headline);
	return 0;
}

/* A version directory left by a registration whose database write never
 * committed: move it aside so the number can be used. */
static int
clear_stale(const char *vdir, char **msg)
{
	struct stat sb;
	if (stat(vdir, &sb) != 0)
		return 0;
	char *aside = loomi_strfmt("%s.stale-%lld", vdir, (long long)loomi_wall_ms());
	LOG_WARN("registry: %s is not in the database (left by an interrupted registration); "
	         "moved to %s",
	         vdir, aside);
	int rv = rename(vdir, aside) == 0 ? 0
	                                   : fail(msg, LOOM_EIO, "cannot move %s aside: %s", vdir,
	                                          strerror(errno));
	free(aside);
	return rv;
}

typedef struct version_row {
	int64_t model, version;
	char *model_dir;
	json_t *tags;
} version_row;

/* Number the version, move the staged files to v<N> and store it, in one
 * transaction (the rename is undone when the commit fails). */
static int
store_version(loomi_daemon *d, int64_t job_id, const task_info *t, const char *stage,
              const json_t *metrics, const json_t *lineage, version_row *out, char **msg)
{
	sqlite3 *db = d->store.db;
	int64_t now = loomi_wall_ms();
	char *models = loomi_path_join(d->conf.state_dir, "models"), *mdir = NULL, *vdir = NULL;
	char *mtext = json_dumps(metrics, JSON_COMPACT), *ltext = json_dumps(lineage, JSON_COMPACT);
	bool renamed = false;
	sqlite3_stmt *st;
	int rv;

	if ((rv = loomi_store_begin(db, true, msg)) != 0)
		goto out;
	st = prep(db, "SELECT 1 FROM model_versions WHERE job_id = ?");
	sqlite3_bind_int64(st, 1, job_id);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		rv = fail(msg, LOOM_EEXIST, "task-%lld is registered already", (long long)job_id);
	sqlite3_finalize(st);
	if (rv == 0)
		rv = ensure_model(db, t->name, t->user, now, &out->model, &out->model_dir, msg);
	if (rv == 0) {
		st = prep(db, "SELECT coalesce(max(version), 0) + 1 FROM model_versions"
		              " WHERE model_id = ?");
		sqlite3_bind_int64(st, 1, out->model);
		out->version = st && sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
		sqlite3_finalize(st);
		if (out->version == 0)
			rv = db_fail(db, msg, "number a version");
	}
	if (rv == 0) {
		char *rel = loomi_path_join(models, out->model_dir);
		int e = loomi_mkdir_p(rel, 0755);
		/* stored absolute: a relative --state-dir means nothing to a
		 * reader with another working directory */
		mdir = e == 0 ? realpath(rel, NULL) : NULL;
		if (e == 0 && mdir == NULL)
			e = errno;
		if (e != 0)
			rv = fail(msg, LOOM_EIO, "cannot create %s: %s", rel, strerror(e));
		free(rel);
		if (rv == 0)
			vdir = loomi_strfmt("%s/v%lld", mdir, (long long)out->version);
		if (rv == 0 && (rv = clear_stale(vdir, msg)) == 0) {
			if (rename(stage, vdir) != 0)
				rv = fail(msg, LOOM_EIO, "cannot move %s to %s: %s", stage, vdir,
				          strerror(errno));
			else
				renamed = true;
		}
	}
	if (rv == 0) {
		st = prep(db, "INSERT INTO model_versions (model_id, version, job_id, run_id, dir,"
		              " metrics, spec, lineage, created_at, user)"
		              " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
		sqlite3_bind_int64(st, 1, out->model);
		sqlite3_bind_int64(st, 2, out->version);
		sqlite3_bind_int64(st, 3, job_id);
		if (t->run_id)
			sqlite3_bind_int64(st, 4, t->run_id);
		sqlite3_bind_text(st, 5, vdir, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 6, mtext, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 7, t->spec, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 8, ltext, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 9, now);
		sqlite3_bind_text(st, 10, t->user, -1, SQLITE_STATIC);
		rv = step_done(db, st, msg, "store a model version");
	}
	if (rv == 0)
		rv = update_tags(db, out->model, out->version, metrics, now, out->tags, msg);
	rv = loomi_store_end(db, rv, msg);
	if (renamed && rv != 0 && rename(vdir, stage) != 0)
		LOG_WARN("registry: cannot move %s back to %s: %s", vdir, stage, strerror(errno));
	if (renamed && rv == 0 && fsync_path(mdir, true) != 0)
		LOG_WARN("registry: cannot fsync %s: %s", mdir, strerror(errno));
out:
	free(models);
	free(mdir);
	free(vdir);
	free(mtext);
	free(ltext);
	return rv;
}

static int
locked_store_version(loomi_daemon *d, int64_t job_id, const task_info *t, const char *stage,
                     const json_t *metrics, const json_t *lineage, version_row *out, char **msg)
{
	pthread_mutex_lock(&lock);
	int rv = store_version(d, job_id, t, stage, metrics, lineage, out, msg);
	pthread_mutex_unlock(&lock);
	return rv;
}

/* The task's final metrics, from its metrics.json ({} when it has none),
 * and the model it kept (its "model": kind and form; NULL when it says
 * none). */
static int
read_metrics(const char *task_dir, json_t **out, json_t **model, char **msg)
{
	char *path = loomi_path_join(task_dir, "metrics.json"), *text = NULL;
	json_error_t je;
	json_t *m;
	int rv = 0;

	*out = NULL;
	*model = NULL;
	if (access(path, F_OK) != 0) {
		*out = json_object();
	} else if (loomi_read_file(path, &text, NULL) != 0) {
		rv = fail(msg, LOOM_EIO, "cannot read %s: %s", path, strerror(errno));
	} else if ((m = json_loads(text, 0, &je)) == NULL || !json_is_object(m)) {
		json_decref(m);
		rv = fail(msg, LOOM_EIO, "%s is not a JSON object (%s, line %d); the task's output is "
		                         "damaged",
		          path, je.text, je.line);
	} else {
		json_t *display = loomi_display_declared(m), *about = json_object_get(m, "model");
		*out = final_metrics(m);
		if (json_is_object(about) && json_is_string(json_object_get(about, "kind")))
			*model = json_pack("{s:O, s:O}", "kind", json_object_get(about, "kind"), "form",
			                   json_object_get(about, "form") ? json_object_get(about, "form")
			                                                  : json_null());
		if (display)
			json_object_set_new(*out, LOOMI_DISPLAY_KEY, display);
		json_decref(m);
	}
	free(text);
	free(path);
	return rv;
}

int
loomi_registry_register(loomi_daemon *d, int64_t job_id, char **err)
{
	char *task_dir = loomi_strfmt("%s/jobs/task-%lld", d->conf.state_dir, (long long)job_id);
	char *best = loomi_path_join(task_dir, "best.safetensors"), *stage = NULL;
	task_info t = {0};
	version_row v = {.tags = json_array()};
	json_t *metrics = NULL, *lineage = NULL, *model = NULL;
	int rv;

	/* no lock while files are copied: the reads go on meanwhile, and
	 * store_version's transaction is what numbers versions one at a time */
	if (access(best, F_OK) != 0) {
		rv = fail(err, LOOM_ENOENT, "task-%lld produced no model (no %s); nothing registered",
		          (long long)job_id, best);
		goto out;
	}
	if ((rv = read_task(d->store.db, job_id, &t, err)) != 0 ||
	    (rv = read_metrics(task_dir, &metrics, &model, err)) != 0)
		goto out;
	lineage = lineage_json(job_id, &t);
	/* which model the version is: the kind auto kept, and its form */
	json_object_set(lineage, "model", model ? model : json_null());
	stage = loomi_strfmt("%s/models/.incoming/task-%lld", d->conf.state_dir, (long long)job_id);
	if ((rv = stage_files(task_dir, stage, t.spec, err)) != 0 ||
	    (rv = locked_store_version(d, job_id, &t, stage, metrics, lineage, &v, err)) != 0) {
		remove_flat_dir(stage);
		goto out;
	}
	LOG_INFO("registry: task-%lld registered as model \"%s\" version %lld", (long long)job_id,
	         t.name, (long long)v.version);
	if (d->bus) {
		json_t *ev = json_pack("{s:s, s:I, s:O, s:O, s:o, s:O, s:I}", "model", t.name, "version",
		                       (json_int_t)v.version, "task_id",
		                       json_object_get(lineage, "task_id"), "run_id",
		                       json_object_get(lineage, "run_id"), "metrics",
		                       json_deep_copy(metrics), "tags", v.tags, "time",
		                       (json_int_t)loomi_wall_ms());
		loomi_display_attach(ev);
		json_object_del(ev, "details");
		loomi_bus_publish_json(d->bus, "model.version", "loomd", ev);
		json_decref(ev);
	}
	/* the model's deployment rule decides about the new version, here on
	 * the registry's thread, once the version is committed and announced */
	loomi_deploy_on_version(d, t.name, v.model, v.version);
out:
	task_info_free(&t);
	json_decref(metrics);
	json_decref(model);
	json_decref(lineage);
	json_decref(v.tags);
	free(v.model_dir);
	free(stage);
	free(best);
	free(task_dir);
	return rv;
}

/* ------------------------------------------------------------------ the thread */

static void *
registrar(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&Q.mtx);
	for (;;) {
		while (Q.n == 0 && !Q.stopping)
			pthread_cond_wait(&Q.cv, &Q.mtx);
		if (Q.n == 0)
			break; /* stopping, and every submitted task registered */
		int64_t id = Q.ids[0];
		memmove(Q.ids, Q.ids + 1, --Q.n * sizeof Q.ids[0]);
		Q.busy = true;
		pthread_mutex_unlock(&Q.mtx);
		{
			char *err = NULL;
			int rv = loomi_registry_register(Q.d, id, &err);
			if (rv == LOOM_ENOENT)
				LOG_DEBUG("registry: %s", err);
			else if (rv != 0)
				LOG_ERROR("registry: task-%lld was not registered: %s", (long long)id, err);
			free(err);
		}
		pthread_mutex_lock(&Q.mtx);
		Q.busy = false;
		pthread_cond_broadcast(&Q.cv);
	}
	pthread_mutex_unlock(&Q.mtx);
	return NULL;
}

int
loomi_registry_start(loomi_daemon *d, char **err)
{
	int rv;

	pthread_mutex_lock(&Q.mtx);
	Q.d = d;
	Q.stopping = false;
	rv = pthread_create(&Q.thread, NULL, registrar, NULL);
	Q.up = rv == 0;
	pthread_mutex_unlock(&Q.mtx);
	if (rv != 0) {
		*err = loomi_strfmt("cannot start the model registry's thread: %s", strerror(rv));
		return LOOM_EIO;
	}
	return 0;
}

void
loomi_registry_stop(loomi_daemon *d)
{
	(void)d;
	pthread_mutex_lock(&Q.mtx);
	if (!Q.up) {
		pthread_mutex_unlock(&Q.mtx);
		return;
	}
	Q.stopping = true;
	pthread_cond_broadcast(&Q.cv);
	pthread_mutex_unlock(&Q.mtx);
	pthread_join(Q.thread, NULL);
	pthread_mutex_lock(&Q.mtx);
	Q.up = false;
	free(Q.ids);
	Q.ids = NULL;
	Q.n = Q.cap = 0;
	pthread_mutex_unlock(&Q.mtx);
}

void
loomi_registry_submit(loomi_daemon *d, int64_t job_id)
{
	pthread_mutex_lock(&Q.mtx);
	if (Q.up && !Q.stopping) {
		if (Q.n == Q.cap) {
			Q.cap = Q.cap ? 2 * Q.cap : 16;
			Q.ids = loomi_xrealloc(Q.ids, Q.cap * sizeof Q.ids[0]);
		}
		Q.ids[Q.n++] = job_id;
		pthread_cond_broadcast(&Q.cv);
		pthread_mutex_unlock(&Q.mtx);
		return;
	}
	pthread_mutex_unlock(&Q.mtx);
	char *err = NULL;
	int rv = loomi_registry_register(d, job_id, &err);
	if (rv != 0 && rv != LOOM_ENOENT)
		LOG_ERROR("registry: task-%lld was not registered: %s", (long long)job_id, err);
	free(err);
}

/* Wait (bounded) for the registrations submitted so far, so a task seen
 * completed is seen registered. */
static void
wait_idle(void)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += IDLE_WAIT_MS / 1000;
	pthread_mutex_lock(&Q.mtx);
	while (Q.up && (Q.n > 0 || Q.busy))
		if (pthread_cond_timedwait(&Q.cv, &Q.mtx, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&Q.mtx);
}

/* ------------------------------------------------------------------ reading */

static int
find_model(sqlite3 *db, const char *name, int64_t *id, char **msg)
{
	sqlite3_stmt *st = prep(db, "SELECT id FROM models WHERE name = ?");
	int rv = 0;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		*id = sqlite3_column_int64(st, 0);
	else
		rv = fail(msg, LOOM_ENOENT,
		          "there is no model \"%s\"; GET /api/v1/models (loomctl models list) lists "
		          "them",
		          name);
	sqlite3_finalize(st);
	return rv;
}

/* {"alias": version, …} of a model, or the alias names pointing at one
 * version (version > 0) as an array. */
static json_t *
aliases_of(sqlite3 *db, int64_t model, int64_t version)
{
	sqlite3_stmt *st = prep(db, "SELECT alias, version FROM model_aliases WHERE model_id = ?"
	                            " ORDER BY alias");
	json_t *out = version ? json_array() : json_object();
	sqlite3_bind_int64(st, 1, model);
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		const char *a = (const char *)sqlite3_column_text(st, 0);
		int64_t v = sqlite3_column_int64(st, 1);
		if (version == 0)
			json_object_set_new(out, a, json_integer(v));
		else if (v == version)
			json_array_append_new(out, json_string(a));
	}
	sqlite3_finalize(st);
	return out;
}

static json_t *
tags_of(sqlite3 *db, int64_t model, int64_t version)
{
	sqlite3_stmt *st = prep(db, "SELECT tag, version FROM model_tags WHERE model_id = ?"
	                            " ORDER BY tag");
	json_t *out = version ? json_array() : json_object();
	sqlite3_bind_int64(st, 1, model);
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(st, 0);
		int64_t v = sqlite3_column_int64(st, 1);
		if (version == 0)
			json_object_set_new(out, t, json_integer(v));
		else if (v == version)
			json_array_append_new(out, json_string(t));
	}
	sqlite3_finalize(st);
	return out;
}

#define VERSION_COLUMNS                                                                    \
	"version, job_id, run_id, created_at, user, metrics, dir, spec, lineage"

/* A version row (VERSION_COLUMNS) as JSON; detail adds files, spec and
 * lineage. */
static json_t *
version_json(sqlite3 *db, const char *name, int64_t model, sqlite3_stmt *st, bool detail)
{
	int64_t v = sqlite3_column_int64(st, 0);
	json_t *o = json_pack("{s:s, s:I, s:o, s:o, s:o, s:s, s:o, s:o, s:o}", "name", name,
	                      "version", (json_int_t)v, "task_id", prefixed_id("task", st, 1),
	                      "run_id", prefixed_id("run", st, 2), "created_at",
	                      iso_time(sqlite3_column_int64(st, 3)), "user",
	                      (const char *)sqlite3_column_text(st, 4), "metrics",
	                      json_column(st, 5), "tags", tags_of(db, model, v), "aliases",
	                      aliases_of(db, model, v));
	loomi_display_attach(o);
	/* the deployment rule's decision waits for a person's approval */
	json_object_set_new(o, "pending_approval", json_boolean(loomi_deploy_pending(db, model, v)));
	if (detail) {
		const char *dir = (const char *)sqlite3_column_text(st, 6);
		json_t *lineage = json_column(st, 8);
		json_object_set_new(o, "dir", json_string(dir));
		json_object_set_new(o, "files", dir_files(dir));
		json_object_set_new(o, "spec", json_column(st, 7));
		json_object_set(lineage, "spec", json_object_get(o, "spec"));
		json_object_set_new(o, "lineage", lineage);
	}
	return o;
}

int
loomi_registry_list(loomi_daemon *d, const loomi_caller *who, json_t **out, char **msg)
{
	sqlite3 *db = d->store.db;
	json_t *models = json_array();
	char *vis = loomi_auth_visible_sql("model", "m.name", "m.owner"), *sql;
	sqlite3_stmt *st;
	int rv;

	wait_idle();
	pthread_mutex_lock(&lock);
	if ((rv = loomi_store_begin(db, false, msg)) != 0)
		goto out;
	sql = loomi_strfmt("SELECT m.id, m.name, m.created_at, max(v.version), count(v.version),"
	                   " max(v.created_at), m.owner FROM models m LEFT JOIN model_versions v"
	                   " ON v.model_id = m.id WHERE %s GROUP BY m.id ORDER BY m.name", vis);
	st = prep(db, sql);
	free(sql);
	if (st)
		loomi_auth_bind(st, who);
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		json_array_append_new(
			models,
			json_pack("{s:s, s:s, s:I, s:I, s:o, s:o, s:o}", "name",
		                  (const char *)sqlite3_column_text(st, 1), "owner",
		                  (const char *)sqlite3_column_text(st, 6), "latest_version",
		                  (json_int_t)sqlite3_column_int64(st, 3), "versions",
		                  (json_int_t)sqlite3_column_int64(st, 4), "aliases",
		                  aliases_of(db, id, 0), "created_at",
		                  iso_time(sqlite3_column_int64(st, 2)), "updated_at",
		                  iso_time(sqlite3_column_int64(st, 5))));
	}
	sqlite3_finalize(st);
	rv = loomi_store_end(db, st ? 0 : db_fail(db, msg, "list models"), msg);
out:
	pthread_mutex_unlock(&lock);
	free(vis);
	if (rv == 0)
		*out = json_pack("{s:I, s:o}", "total", (json_int_t)json_array_size(models), "models",
		                 models);
	else
		json_decref(models);
	return rv;
}

int
loomi_registry_model(loomi_daemon *d, const char *name, json_t **out, char **msg)
{
	sqlite3 *db = d->store.db;
	json_t *o = NULL, *versions = json_array();
	sqlite3_stmt *st = NULL;
	int64_t id = 0;
	int rv;

	wait_idle();
	pthread_mutex_lock(&lock);
	if ((rv = loomi_store_begin(db, false, msg)) != 0)
		goto out;
	if ((rv = find_model(db, name, &id, msg)) == 0) {
		st = prep(db, "SELECT dir, description, created_at, owner FROM models WHERE id = ?");
		sqlite3_bind_int64(st, 1, id);
		if (st && sqlite3_step(st) == SQLITE_ROW)
			o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o}", "name", name, "owner",
			              (const char *)sqlite3_column_text(st, 3), "dir",
			              (const char *)sqlite3_column_text(st, 0), "description",
			              (const char *)sqlite3_column_text(st, 1), "created_at",
			              iso_time(sqlite3_column_int64(st, 2)), "aliases",
			              aliases_of(db, id, 0), "tags", tags_of(db, id, 0));
		sqlite3_finalize(st);
		if (o)
			json_object_set_new(o, "deploy", loomi_deploy_rule_of(db, id));
		st = prep(db, "SELECT " VERSION_COLUMNS " FROM model_versions WHERE model_id = ?"
		              " ORDER BY version DESC");
		sqlite3_bind_int64(st, 1, id);
		while (st && sqlite3_step(st) == SQLITE_ROW)
			json_array_append_new(versions, version_json(db, name, id, st, false));
		if (st == NULL || o == NULL)
			rv = db_fail(db, msg, "read a model");
		sqlite3_finalize(st);
	}
	rv = loomi_store_end(db, rv, msg);
out:
	pthread_mutex_unlock(&lock);
	if (rv == 0) {
		json_object_set_new(o, "versions", versions);
		*out = o;
	} else {
		json_decref(o);
		json_decref(versions);
	}
	return rv;
}

/* "3", "v3" → 3; an alias name → the version it points at. */
static int
resolve_version(sqlite3 *db, const char *name, int64_t model, const char *text, int64_t *v,
                char **msg)
{
	const char *digits = text[0] == 'v' && text[1] >= '1' && text[1] <= '9' ? text + 1 : text;
	char *end;
	sqlite3_stmt *st;
	int rv = 0;

	errno = 0;
	*v = strtoll(digits, &end, 10);
	if (digits[0] >= '1' && digits[0] <= '9' && *end == '\0' && errno == 0)
		return 0;
	if (!alias_ok(text))
		return fail(msg, LOOM_EINVAL,
		            "\"%s\" is neither a version number (like 3 or v3) nor an alias name", text);
	st = prep(db, "SELECT version FROM model_aliases WHERE model_id = ? AND alias = ?");
	sqlite3_bind_int64(st, 1, model);
	sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		*v = sqlite3_column_int64(st, 0);
	else
		rv = fail(msg, LOOM_ENOENT,
		          "model \"%s\" has no alias \"%s\"; promote a version to it first "
		          "(loomctl models promote %s VERSION --alias %s)",
		          name, text, name, text);
	sqlite3_finalize(st);
	return rv;
}

int
loomi_registry_version(loomi_daemon *d, const char *name, const char *version, json_t **out,
                       char **msg)
{
	sqlite3 *db = d->store.db;
	sqlite3_stmt *st;
	int64_t id = 0, v = 0;
	int rv;

	wait_idle();
	pthread_mutex_lock(&lock);
	if ((rv = loomi_store_begin(db, false, msg)) != 0)
		goto out;
	if ((rv = find_model(db, name, &id, msg)) == 0 &&
	    (rv = resolve_version(db, name, id, version, &v, msg)) == 0) {
		st = prep(db, "SELECT " VERSION_COLUMNS " FROM model_versions"
		              " WHERE model_id = ? AND version = ?");
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_int64(st, 2, v);
		if (st && sqlite3_step(st) == SQLITE_ROW)
			*out = version_json(db, name, id, st, true);
		else
			rv = fail(msg, LOOM_ENOENT,
			          "model \"%s\" has no version %lld; GET /api/v1/models/%s lists its "
			          "versions",
			          name, (long long)v, name);
		sqlite3_finalize(st);
	}
	rv = loomi_store_end(db, rv, msg);
out:
	pthread_mutex_unlock(&lock);
	return rv;
}

int
loomi_registry_resolve(loomi_daemon *d, const char *name, const char *ref, int64_t *model_id,
                       int64_t *version, char **dir, char **msg)
{
	sqlite3 *db = d->store.db;
	sqlite3_stmt *st;
	int rv;

	*dir = NULL;
	wait_idle();
	pthread_mutex_lock(&lock);
	if ((rv = find_model(db, name, model_id, msg)) == 0 &&
	    (rv = resolve_version(db, name, *model_id, ref, version, msg)) == 0) {
		st = prep(db, "SELECT dir FROM model_versions WHERE model_id = ? AND version = ?");
		sqlite3_bind_int64(st, 1, *model_id);
		sqlite3_bind_int64(st, 2, *version);
		if (st && sqlite3_step(st) == SQLITE_ROW)
			*dir = loomi_strdup((const char *)sqlite3_column_text(st, 0));
		else
			rv = fail(msg, LOOM_ENOENT,
			          "model \"%s\" has no version %lld; GET /api/v1/models/%s lists its "
			          "versions",
			          name, (long long)*version, name);
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&lock);
	return rv;
}

/* ------------------------------------------------------------------ aliases */

/* Point alias at to (recording the move), in the open transaction. */
static int
move_alias(sqlite3 *db, int64_t model, const char *alias, int64_t from, int64_t to,
           const char *action, int64_t undoes, const char *user, int64_t now, char **msg)
{
	sqlite3_stmt *st = prep(db, "INSERT INTO model_aliases (model_id, alias, version, updated_at)"
	                            " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (model_id, alias)"
	                            " DO UPDATE SET version = ?3, updated_at = ?4");
	sqlite3_bind_int64(st, 1, model);
	sqlite3_bind_text(st, 2, alias, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, to);
	sqlite3_bind_int64(st, 4, now);
	if (step_done(db, st, msg, "move an alias") != 0)
		return LOOM_EIO;
	st = prep(db, "INSERT INTO model_alias_history (model_id, alias, from_version, to_version,"
	              " action, undoes, at, user) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
	sqlite3_bind_int64(st, 1, model);
	sqlite3_bind_text(st, 2, alias, -1, SQLITE_STATIC);
	if (from)
		sqlite3_bind_int64(st, 3, from);
	sqlite3_bind_int64(st, 4, to);
	sqlite3_bind_text(st, 5, action, -1, SQLITE_STATIC);
	if (undoes)
		sqlite3_bind_int64(st, 6, undoes);
	sqlite3_bind_int64(st, 7, now);
	sqlite3_bind_text(st, 8, user, -1, SQLITE_STATIC);
	return step_done(db, st, msg, "record an alias move");
}

static int64_t
alias_version(sqlite3 *db, int64_t model, const char *alias)
{
	sqlite3_stmt *st = prep(db, "SELECT version FROM model_aliases WHERE model_id = ? AND"
	                            " alias = ?");
	int64_t v = 0;
	sqlite3_bind_int64(st, 1, model);
	sqlite3_bind_text(st, 2, alias, -1, SQLITE_STATIC);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void
publish_move(loomi_daemon *d, const json_t *move)
{
	if (d->bus)
		loomi_bus_publish_json(d->bus, "model.alias", "loomd", move);
}

static json_t *
move_json(const char *name, const char *alias, int64_t to, int64_t from, const char *action,
          const char *user, int64_t now)
{
	return json_pack("{s:s, s:s, s:I, s:o, s:s, s:s, s:o}", "name", name, "alias", alias,
	                 "version", (json_int_t)to, "previous",
	                 from ? json_integer(from) : json_null(), "action", action, "user", user,
	                 "updated_at", iso_time(now));
}

/* Point alias at version (recording the move as user's promotion), in
 * the open transaction; *from: where it pointed before (0: nowhere). */
int
loomi_registry_move(sqlite3 *db, const char *name, int64_t model, const char *alias,
                    int64_t version, const char *user, int64_t now, int64_t *from, char **msg)
{
	sqlite3_stmt *st = prep(db, "SELECT 1 FROM model_versions WHERE model_id = ? AND version = ?");
	int rv = 0;

	sqlite3_bind_int64(st, 1, model);
	sqlite3_bind_int64(st, 2, version);
	if (!st || sqlite3_step(st) != SQLITE_ROW)
		rv = fail(msg, LOOM_ENOENT, "model \"%s\" has no version %lld", name,
		          (long long)version);
	sqlite3_finalize(st);
	if (rv == 0) {
		*from = alias_version(db, model, alias);
		rv = move_alias(db, model, alias, *from, version, "promote", 0, user, now, msg);
	}
	return rv;
}

/* Undo alias's newest promotion not undone yet, in the open transaction;
 * *from and *to: the versions it moves between. */
int
loomi_registry_undo(sqlite3 *db, const char *name, int64_t model, const char *alias,
                    const char *user, int64_t now, int64_t *from, int64_t *to, char **msg)
{
	sqlite3_stmt *st;
	int64_t undo = 0;
	int rv = 0;

	*to = 0;
	if ((*from = alias_version(db, model, alias)) == 0)
		return fail(msg, LOOM_ENOENT,
		            "model \"%s\" has no alias \"%s\"; there is nothing to roll back", name,
		            alias);
	/* the newest promotion that no rollback has undone yet */
	st = prep(db, "SELECT h.id, h.from_version FROM model_alias_history h"
	              " WHERE h.model_id = ?1 AND h.alias = ?2 AND h.action = 'promote'"
	              " AND NOT EXISTS (SELECT 1 FROM model_alias_history r"
	              "   WHERE r.model_id = ?1 AND r.alias = ?2 AND r.undoes = h.id)"
	              " ORDER BY h.id DESC LIMIT 1");
	sqlite3_bind_int64(st, 1, model);
	sqlite3_bind_text(st, 2, alias, -1, SQLITE_STATIC);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		undo = sqlite3_column_int64(st, 0);
		*to = sqlite3_column_int64(st, 1); /* NULL → 0: the alias's first promotion */
	}
	sqlite3_finalize(st);
	if (*to == 0)
		rv = fail(msg, LOOM_EEXIST,
		          "model \"%s\": alias \"%s\" points at version %lld and has no earlier "
		          "version to roll back to; promote the version you want instead",
		          name, alias, (long long)*from);
	if (rv == 0)
		rv = move_alias(db, model, alias, *from, *to, "rollback", undo, user, now, msg);
	return rv;
}

json_t *
loomi_registry_announce(loomi_daemon *d, const char *name, const char *alias, int64_t to,
                        int64_t from, const char *action, const char *user, int64_t now)
{
	json_t *move = move_json(name, alias, to, from, action, user, now);
	publish_move(d, move);
	if (strcmp(action, "promote") == 0)
		LOG_INFO("registry: model \"%s\": %s → version %lld (promoted by %s)", name, alias,
		         (long long)to, user);
	else
		LOG_INFO("registry: model \"%s\": %s rolled back from version %lld to %lld by %s",
		         name, alias, (long long)from, (long long)to, user);
	return move;
}

int
loomi_registry_promote(loomi_daemon *d, const char *name, const char *alias, int64_t version,
                       const char *user, json_t **out, char **msg)
{
	sqlite3 *db = d->store.db;
	int64_t id = 0, from = 0, now = loomi_wall_ms();
	int rv;

	if ((rv = check_alias(alias, msg)) != 0)
		return rv;
	if (version < 1)
		return fail(msg, LOOM_EINVAL, "version: %lld is not a version number; versions count "
		                              "from 1",
		            (long long)version);
	wait_idle();
	pthread_mutex_lock(&lock);
	if ((rv = loomi_store_begin(db, true, msg)) != 0)
		goto out;
	if ((rv = find_model(db, name, &id, msg)) == 0)
		rv = loomi_registry_move(db, name, id, alias, version, user, now, &from, msg);
	rv = loomi_store_end(db, rv, msg);
out:
	pthread_mutex_unlock(&lock);
	if (rv == 0)
		*out = loomi_registry_announce(d, name, alias, version, from, "promote", user, now);
	return rv;
}

int
loomi_registry_rollback(loomi_daemon *d, const char *name, const char *alias, const char *user,
                        json_t **out, char **msg)
{
	sqlite3 *db = d->store.db;
	int64_t id = 0, from = 0, to = 0, now = loomi_wall_ms();
	int rv;

	if ((rv = check_alias(alias, msg)) != 0)
		return rv;
	wait_idle();
	pthread_mutex_lock(&lock);
	if ((rv = loomi_store_begin(db, true, msg)) != 0)
		goto out;
	if ((rv = find_model(db, name, &id, msg)) == 0)
		rv = loomi_registry_undo(db, name, id, alias, user, now, &from, &to, msg);
	rv = loomi_store_end(db, rv, msg);
out:
	pthread_mutex_unlock(&lock);
	if (rv == 0)
		*out = loomi_registry_announce(d, name, alias, to, from, "rollback", user, now);
	return rv;
}

/* ------------------------------------------------------------------ for deploy.c */

void
loomi_registry_hold(void)
{
	pthread_mutex_lock(&lock);
}

void
loomi_registry_release(void)
{
	pthread_mutex_unlock(&lock);
}

void
loomi_registry_wait(void)
{
	wait_idle();
}

int
loomi_registry_find(sqlite3 *db, const char *name, int64_t *id, char **msg)
{
	return find_model(db, name, id, msg);
}

int64_t
loomi_registry_alias_at(sqlite3 *db, int64_t model, const char *alias)
{
	return alias_version(db, model, alias);
}

bool
loomi_registry_higher_is_better(const char *metric)
{
	return higher_is_better(metric);
}

int64_t
loomi_registry_previous(sqlite3 *db, int64_t model, const char *alias)
{
	sqlite3_stmt *st = prep(db, "SELECT h.from_version FROM model_alias_history h"
	                            " WHERE h.model_id = ?1 AND h.alias = ?2 AND h.action = 'promote'"
	                            " AND NOT EXISTS (SELECT 1 FROM model_alias_history r"
	                            "   WHERE r.model_id = ?1 AND r.alias = ?2 AND r.undoes = h.id)"
	                            " ORDER BY h.id DESC LIMIT 1");
	int64_t v = 0;
	sqlite3_bind_int64(st, 1, model);
	sqlite3_bind_text(st, 2, alias, -1, SQLITE_STATIC);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

int
loomi_registry_alias_check(const char *alias, char **msg)
{
	return check_alias(alias, msg);
}

/* ------------------------------------------------------------------ routes */

/* The API's answer: out with 200, or the error with its status (400,
 * 404, 409, 500). */
static void
answer(loomi_http_res *res, int rv, json_t *out, char *msg)
{
	loomi_api_answer(res, rv, out, msg, 200);
}

/* ------------------------------------------------------------------ who sees a model */

/* The owner of the model called name (auth.h's loomi_owner_fn; the id of
 * a model in shares is its name). */
static int
model_owner(loomi_daemon *d, const char *name, char **owner, char canon[LOOMI_OBJECT_ID_MAX])
{
	sqlite3_stmt *st;
	int rv = LOOM_ENOENT;

	if (strlen(name) >= LOOMI_OBJECT_ID_MAX)
		return LOOM_ENOENT;
	/* one statement: the connection's mutex keeps it out of (and waits
	 * out) another thread's transaction */
	pthread_mutex_lock(&lock);
	st = prep(d->store.db, "SELECT owner FROM models WHERE name = ?");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		*owner = loomi_strdup((const char *)sqlite3_column_text(st, 0));
		snprintf(canon, LOOMI_OBJECT_ID_MAX, "%s", name);
		rv = 0;
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&lock);
	return rv;
}

/* May the caller do access to the model of the route's first parameter?
 * True, or false after setting the answer: 404 for one it may not see (as
 * for one there is not), 403 for one it may only read.  A model not
 * registered yet is the route's to report. */
static bool
model_may(loomi_daemon *d, const loomi_http_req *req, int access, loomi_http_res *res)
{
	char *owner = NULL, canon[LOOMI_OBJECT_ID_MAX], *what;
	bool ok;

	wait_idle();
	if (model_owner(d, req->params[0], &owner, canon) != 0)
		return true;
	what = loomi_strfmt("model \"%s\"", canon);
	ok = loomi_auth_may(d, req->caller, "model", canon, owner, access);
	if (!ok && !loomi_auth_may(d, req->caller, "model", canon, owner, LOOMI_ACCESS_READ)) {
		/* word for word what a model that does not exist answers */
		char *msg = NULL;
		fail(&msg, LOOM_ENOENT,
		     "there is no model \"%s\"; GET /api/v1/models (loomctl models list) lists them",
		     canon);
		answer(res, LOOM_ENOENT, NULL, msg);
	} else if (!ok) {
		/* 403, audited */
		loomi_auth_object(d, req->caller, "model", canon, owner, access, what, res);
	}
	free(what);
	free(owner);
	return ok;
}

bool
loomi_registry_may(loomi_daemon *d, const loomi_http_req *req, int access, loomi_http_res *res)
{
	return model_may(d, req, access, res);
}

bool
loomi_registry_allowed(loomi_daemon *d, const loomi_caller *caller, const char *name, int access)
{
	char *owner = NULL, canon[LOOMI_OBJECT_ID_MAX];
	bool ok;

	wait_idle();
	if (model_owner(d, name, &owner, canon) != 0)
		return true;
	ok = loomi_auth_may(d, caller, "model", canon, owner, access);
	free(owner);
	return ok;
}

static void
route_models(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *out = NULL;
	char *msg = NULL;
	int rv;
	rv = loomi_registry_list(d, req->caller, &out, &msg); /* before out is read */
	answer(res, rv, out, msg);
}

static void
route_model(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *out = NULL;
	char *msg = NULL;
	int rv;
	if (!model_may(d, req, LOOMI_ACCESS_READ, res))
		return;
	rv = loomi_registry_model(d, req->params[0], &out, &msg);
	answer(res, rv, out, msg);
}

static void
route_version(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *out = NULL;
	char *msg = NULL;
	int rv;
	if (!model_may(d, req, LOOMI_ACCESS_READ, res))
		return;
	rv = loomi_registry_version(d, req->params[0], req->params[1], &out, &msg);
	answer(res, rv, out, msg);
}

static void
route_alias(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *out = NULL;
	char *msg = NULL;
	int rv;
	if (!model_may(d, req, LOOMI_ACCESS_READ, res))
		return;
	rv = check_alias(req->params[1], &msg);
	if (rv == 0)
		rv = loomi_registry_version(d, req->params[0], req->params[1], &out, &msg);
	answer(res, rv, out, msg);
}

static void
route_promote(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *body = loomi_api_json_body(req, res), *v, *out = NULL;
	char *msg = NULL;
	const char *k;
	int rv = 0;

	if (body == NULL)
		return;
	if (!model_may(d, req, LOOMI_ACCESS_WRITE, res)) {
		json_decref(body);
		return;
	}
	if (!json_is_object(body))
		rv = fail(&msg, LOOM_EINVAL, "the body must be a JSON object like {\"version\": 3}");
	json_object_foreach(body, k, v)
		if (strcmp(k, "version") != 0 && rv == 0)
			rv = fail(&msg, LOOM_EINVAL, "unknown field \"%s\"; the body is {\"version\": N}",
			          k);
	v = json_object_get(body, "version");
	if (rv == 0 && !json_is_integer(v))
		rv = fail(&msg, LOOM_EINVAL, "version: required, a whole number (like {\"version\": 3})");
	if (rv == 0)
		rv = loomi_registry_promote(d, req->params[0], req->params[1], json_integer_value(v),
		                            req->caller->name, &out, &msg);
	json_decref(body);
	answer(res, rv, out, msg);
}

static void
route_rollback(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *out = NULL;
	char *msg = NULL;
	int rv;
	if (!model_may(d, req, LOOMI_ACCESS_WRITE, res))
		return;
	rv = loomi_registry_rollback(d, req->params[0], req->params[1], req->caller->name, &out,
	                             &msg);
	answer(res, rv, out, msg);
}

/* ------------------------------------------------------------------ the module */

/* A completed task becomes a version.  Told inside the transition, before
 * anyone can see the task completed, so the read routes (which wait for
 * the queue) list the model as soon as the task is seen completed; the
 * files are copied on the registry's thread. */
static void
on_job_state(loomi_daemon *d, const loomi_event *ev)
{
	if (strcmp(ev->u.state.to, "completed") == 0)
		loomi_registry_submit(d, ev->job);
}

static const loomi_migration migrations[] = {
	{8, "model registry", migration_sql},
	/* best- tags are taken for headline metrics only: drop the ones
	 * versions took before for every other metric — per-class figures
	 * and confusion cells (a '.' in the name), and validation figures of a
	 * model whose versions have test figures (the fallback's headline,
	 * headline.h) — which no new version would ever compete for */
	{17, "best- tags only for headline metrics",
	 "DELETE FROM model_tags WHERE instr(metric, '.') > 0\n"
	 "  OR (substr(metric, 1, 5) <> 'test_' AND EXISTS (SELECT 1 FROM model_tags t\n"
	 "    WHERE t.model_id = model_tags.model_id AND substr(t.metric, 1, 5) = 'test_'\n"
	 "    AND instr(t.metric, '.') = 0));\n"},
	/* a model belongs to the owner of the task of its first version */
	{18, "models have owners",
	 "ALTER TABLE models ADD COLUMN owner TEXT NOT NULL DEFAULT '';\n"
	 "UPDATE models SET owner = coalesce((SELECT user FROM model_versions v\n"
	 "  WHERE v.model_id = models.id ORDER BY v.version LIMIT 1), '');\n"},
	/* deploy.c: a model's deployment rule, its decisions and checks */
	{22, "deployment rules, decisions and checks", loomi_deploy_migration_sql},
};

static int
init(loomi_daemon *d, char **err)
{
	(void)d;
	(void)err;
	loomi_auth_register_kind("model", model_owner);
	return 0;
}

static const loomi_route routes[] = {
	{"GET", "/api/v1/models", route_models, LOOMI_ACCESS_READ, NULL},
	{"GET", "/api/v1/models/{name}", route_model, LOOMI_ACCESS_READ, NULL},
	{"GET", "/api/v1/models/{name}/versions/{version}", route_version, LOOMI_ACCESS_READ, NULL},
	{"GET", "/api/v1/models/{name}/aliases/{alias}", route_alias, LOOMI_ACCESS_READ, NULL},
	{"POST", "/api/v1/models/{name}/aliases/{alias}", route_promote, LOOMI_ACCESS_WRITE, NULL},
	{"POST", "/api/v1/models/{name}/aliases/{alias}/rollback", route_rollback,
	 LOOMI_ACCESS_WRITE, NULL},
	/* the deployment rule (deploy.c): reading needs read on the model,
	 * every change (and a check, which may roll back) write */
	{"GET", "/api/v1/models/{name}/deploy", loomi_deploy_route_get, LOOMI_ACCESS_READ, NULL},
	{"PUT", "/api/v1/models/{name}/deploy", loomi_deploy_route_put, LOOMI_ACCESS_WRITE, NULL},
	{"DELETE", "/api/v1/models/{name}/deploy", loomi_deploy_route_delete, LOOMI_ACCESS_WRITE,
	 NULL},
	{"GET", "/api/v1/models/{name}/deploy/decisions", loomi_deploy_route_decisions,
	 LOOMI_ACCESS_READ, NULL},
	{"POST", "/api/v1/models/{name}/versions/{version}/approve", loomi_deploy_route_approve,
	 LOOMI_ACCESS_WRITE, NULL},
};

static const loomi_listener listeners[] = {
	{LOOMI_EV_JOB_STATE, on_job_state},
};

const loomi_module loomi_registry_module = {
	.name = "registry",
	.migrations = migrations,
	.n_migrations = LOOMI_N(migrations),
	.init = init,
	.start = loomi_registry_start,
	.stop = loomi_registry_stop,
	.routes = routes,
	.n_routes = LOOMI_N(routes),
	.listeners = listeners,
	.n_listeners = LOOMI_N(listeners),
};

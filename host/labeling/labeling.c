/* Labeling projects, rounds, reviewers' leases and decisions, and the
 * increment they export (labeling.h says how the pieces fit). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include <loom/error.h>
#include <loom/sampler.h>
#include <loom/types.h>

#include "host/core/log.h"
#include "host/core/plugins.h"
#include "host/core/util.h"
#include "host/inference/inference.h"
#include "host/registry/registry.h"
#include "host/server/auth.h"
#include "host/server/store.h"
#include "host/tasks/tasks.h"
#include "labeling.h"

static const char migration_sql[] =
	"CREATE TABLE label_projects (\n"
	"  id         INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"  name       TEXT NOT NULL UNIQUE,\n"
	"  owner      TEXT NOT NULL,\n"
	"  model      TEXT NOT NULL,\n"
	"  alias      TEXT NOT NULL,\n"
	"  sampler    TEXT NOT NULL,\n"
	"  k          INTEGER NOT NULL CHECK (k >= 1),\n"
	"  lease_ms   INTEGER NOT NULL CHECK (lease_ms >= 1000),\n"
	"  created_at INTEGER NOT NULL\n"
	");\n"
	/* job_id NULL: loomd stopped between the round's row and its task */
	"CREATE TABLE label_rounds (\n"
	"  project_id    INTEGER NOT NULL REFERENCES label_projects (id) ON DELETE CASCADE,\n"
	"  number        INTEGER NOT NULL CHECK (number >= 1),\n"
	"  state         TEXT NOT NULL CHECK (state IN ('scoring','open','failed')),\n"
	"  job_id        INTEGER,\n"
	"  model_version INTEGER NOT NULL,\n"
	"  data          TEXT NOT NULL,\n"
	"  sampler       TEXT NOT NULL,\n"
	"  k             INTEGER NOT NULL,\n"
	"  seed          INTEGER NOT NULL,\n"
	"  windows       INTEGER,\n"
	"  error         TEXT,\n"
	"  user          TEXT NOT NULL,\n"
	"  created_at    INTEGER NOT NULL,\n"
	"  opened_at     INTEGER,\n"
	"  PRIMARY KEY (project_id, number)\n"
	");\n"
	"CREATE TABLE label_items (\n"
	"  id          INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"  project_id  INTEGER NOT NULL REFERENCES label_projects (id) ON DELETE CASCADE,\n"
	"  round       INTEGER NOT NULL,\n"
	"  rank        INTEGER NOT NULL CHECK (rank >= 1),\n"
	"  window      INTEGER NOT NULL,\n"
	"  score       REAL,\n"
	"  why         TEXT NOT NULL,\n"
	"  detail      TEXT NOT NULL CHECK (json_valid(detail)),\n"
	"  state       TEXT NOT NULL CHECK (state IN ('queued','leased','done','flagged')),\n"
	"  lease_user  TEXT,\n"
	"  lease_until INTEGER,\n"
	"  UNIQUE (project_id, round, window)\n"
	");\n"
	"CREATE INDEX label_items_queue ON label_items (project_id, state, round, rank);\n"
	"CREATE TABLE label_decisions (\n"
	"  id        INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	"  item_id   INTEGER NOT NULL REFERENCES label_items (id) ON DELETE CASCADE,\n"
	"  user      TEXT NOT NULL,\n"
	"  at        INTEGER NOT NULL,\n"
	"  action    TEXT NOT NULL CHECK (action IN ('confirm','correct','skip','flag')),\n"
	"  predicted TEXT NOT NULL CHECK (json_valid(predicted)),\n"
	"  label     TEXT CHECK (label IS NULL OR json_valid(label)),\n"
	"  note      TEXT\n"
	");\n"
	"CREATE INDEX label_decisions_by_item ON label_decisions (item_id, id);\n";

#define NAME_MAX_LEN 100
#define NOTE_MAX_LEN 2000
#define DEFAULT_K 50
#define MAX_K 100000
#define DEFAULT_LEASE_MS (10 * 60 * 1000)
#define MAX_FEATURE_FLOATS (64u << 20) /* a diversity sampler's pool: 256 MiB */

/* One labeling operation at a time: leases are handed out in a write
 * transaction under it, so two reviewers never get the same item. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

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
	return loomi_store_failed(db, "labeling", what, msg);
}

static sqlite3_stmt *
prep(sqlite3 *db, const char *sql)
{
	return loomi_store_prep(db, "labeling", sql);
}

/* Run a statement that returns no rows; 0 or LOOM_EIO with *msg. */
static int
step_done(sqlite3 *db, sqlite3_stmt *st, char **msg, const char *what)
{
	return loomi_store_step_done(db, st, "labeling", what, msg);
}

static json_t *
iso_time(int64_t ms)
{
	char *s = loomi_iso_time(ms);
	json_t *v = json_string(s);
	free(s);
	return v;
}

static const char *
col_text(sqlite3_stmt *st, int col)
{
	const char *s = (const char *)sqlite3_column_text(st, col);
	return s ? s : "";
}

/* A project name: 1 to 100 of [A-Za-z0-9_.-], starting with a letter or
 * digit (it is a URL segment and the id shares name). */
static bool
project_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > NAME_MAX_LEN)
		return false;
	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
	      (s[0] >= '0' && s[0] <= '9')))
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '_' || *p == '-' || *p == '.'))
			return false;
	return true;
}

/* ------------------------------------------------------------------ projects */

typedef struct project {
	int64_t id;
	char *name, *owner, *model, *alias, *sampler;
	int64_t k, lease_ms, created_at;
} project;

static void
project_free(project *p)
{
	free(p->name);
	free(p->owner);
	free(p->model);
	free(p->alias);
	free(p->sampler);
	memset(p, 0, sizeof *p);
}

/* The project called name: 0, or LOOM_ENOENT with *msg. */
static int
project_load(sqlite3 *db, const char *name, project *p, char **msg)
{
	sqlite3_stmt *st = prep(db, "SELECT id, name, owner, model, alias, sampler, k, lease_ms, "
	                            "created_at FROM label_projects WHERE name = ?");
	int rv = 0;

	memset(p, 0, sizeof *p);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		p->id = sqlite3_column_int64(st, 0);
		p->name = loomi_strdup(col_text(st, 1));
		p->owner = loomi_strdup(col_text(st, 2));
		p->model = loomi_strdup(col_text(st, 3));
		p->alias = loomi_strdup(col_text(st, 4));
		p->sampler = loomi_strdup(col_text(st, 5));
		p->k = sqlite3_column_int64(st, 6);
		p->lease_ms = sqlite3_column_int64(st, 7);
		p->created_at = sqlite3_column_int64(st, 8);
	} else {
		rv = fail(msg, LOOM_ENOENT,
		          "there is no labeling project \"%s\"; GET /api/v1/labeling/projects "
		          "(loomctl label list) lists them",
		          name);
	}
	sqlite3_finalize(st);
	return rv;
}

/* The owner of project name (auth.h's loomi_owner_fn; a project's id in
 * shares is its name). */
static int
project_owner(loomi_daemon *d, const char *name, char **owner, char canon[LOOMI_OBJECT_ID_MAX])
{
	sqlite3_stmt *st;
	int rv = LOOM_ENOENT;

	if (strlen(name) >= LOOMI_OBJECT_ID_MAX)
		return LOOM_ENOENT;
	st = prep(d->store.db, "SELECT owner, name FROM label_projects WHERE name = ?");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		*owner = loomi_strdup(col_text(st, 0));
		snprintf(canon, LOOMI_OBJECT_ID_MAX, "%s", col_text(st, 1));
		rv = 0;
	}
	sqlite3_finalize(st);
	return rv;
}

/* May the caller do access to project name?  0, or an answer set: 404 for
 * a project it may not see (word for word a missing one's), 403 for one
 * it may only read. */
static bool
project_may(loomi_daemon *d, const loomi_caller *c, const char *name, int access,
            loomi_http_res *res)
{
	char *owner = NULL, canon[LOOMI_OBJECT_ID_MAX], *what;
	bool ok;

	if (project_owner(d, name, &owner, canon) != 0) {
		loomi_api_error(res, 404, "not_found",
		                "there is no labeling project \"%s\"; GET /api/v1/labeling/projects "
		                "(loomctl label list) lists them",
		                name);
		return false;
	}
	what = loomi_strfmt("labeling project \"%s\"", canon);
	ok = loomi_auth_object(d, c, "labeling", canon, owner, access, what, res) == 0;
	free(what);
	free(owner);
	return ok;
}

/* {"queued": n, "leased": n, "done": n, "flagged": n, "total": n} of the
 * items of project (round > 0: of that round).  A lease past its end
 * counts as queued. */
static json_t *
counts(sqlite3 *db, int64_t project_id, int64_t round, int64_t now)
{
	sqlite3_stmt *st = prep(
		db, "SELECT CASE WHEN state = 'leased' AND lease_until <= ?3 THEN 'queued' ELSE state "
		    "END AS s, count(*) FROM label_items WHERE project_id = ?1 AND (?2 = 0 OR round = "
		    "?2) GROUP BY s");
	json_t *o = json_pack("{sIsIsIsI}", "queued", (json_int_t)0, "leased", (json_int_t)0, "done",
	                      (json_int_t)0, "flagged", (json_int_t)0);
	int64_t total = 0;

	sqlite3_bind_int64(st, 1, project_id);
	sqlite3_bind_int64(st, 2, round);
	sqlite3_bind_int64(st, 3, now);
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		json_object_set_new(o, col_text(st, 0), json_integer(sqlite3_column_int64(st, 1)));
		total += sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	json_object_set_new(o, "total", json_integer(total));
	return o;
}

static json_t *
project_json(sqlite3 *db, const project *p, int64_t now)
{
	sqlite3_stmt *st = prep(db, "SELECT count(*) FROM label_rounds WHERE project_id = ?");
	int64_t rounds = 0;

	sqlite3_bind_int64(st, 1, p->id);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		rounds = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return json_pack("{sssssssssssIsIsososI}", "name", p->name, "owner", p->owner, "model",
	                 p->model, "alias", p->alias, "sampler", p->sampler, "k", (json_int_t)p->k,
	                 "lease_seconds", (json_int_t)(p->lease_ms / 1000), "created",
	                 iso_time(p->created_at), "counts", counts(db, p->id, 0, now),
	                 "rounds_total", (json_int_t)rounds);
}

/* ------------------------------------------------------------------ rounds */

#define ROUND_COLUMNS                                                                      \
	"number, state, job_id, model_version, data, sampler, k, seed, windows, error, user, " \
	"created_at, opened_at"

static json_t *
round_json(sqlite3 *db, int64_t project_id, sqlite3_stmt *st, int64_t now)
{
	json_t *o = json_pack("{sIsssIsssssIsIss}", "number", (json_int_t)sqlite3_column_int64(st, 0),
	                      "state", col_text(st, 1), "model_version",
	                      (json_int_t)sqlite3_column_int64(st, 3), "data", col_text(st, 4),
	                      "sampler", col_text(st, 5), "k", (json_int_t)sqlite3_column_int64(st, 6),
	                      "seed", (json_int_t)sqlite3_column_int64(st, 7), "user",
	                      col_text(st, 10));
	char task[32];

	if (sqlite3_column_type(st, 2) != SQLITE_NULL) {
		snprintf(task, sizeof task, "task-%lld", (long long)sqlite3_column_int64(st, 2));
		json_object_set_new(o, "task", json_string(task));
	} else {
		json_object_set_new(o, "task", json_null());
	}
	if (sqlite3_column_type(st, 8) != SQLITE_NULL)
		json_object_set_new(o, "windows", json_integer(sqlite3_column_int64(st, 8)));
	if (sqlite3_column_type(st, 9) != SQLITE_NULL)
		json_object_set_new(o, "error", json_string(col_text(st, 9)));
	json_object_set_new(o, "created", iso_time(sqlite3_column_int64(st, 11)));
	if (sqlite3_column_type(st, 12) != SQLITE_NULL)
		json_object_set_new(o, "opened", iso_time(sqlite3_column_int64(st, 12)));
	json_object_set_new(o, "counts", counts(db, project_id, sqlite3_column_int64(st, 0), now));
	return o;
}

/* A round's scored windows, read from its task's predictions.json and
 * inputs.f32 (docs/inference.md, "Batch prediction"). */
typedef struct scored {
	json_t *doc;
	const char *task;
	int64_t n, context, channels, rows;
	const json_t *output, *uncertainty, *start, *first_line, *last_line, *time, *classes,
		*targets, *names;
	float *series;           /* [rows, channels] */
	double threshold;
	int64_t horizon;
} scored;

static void
scored_free(scored *s)
{
	json_decref(s->doc);
	free(s->series);
	memset(s, 0, sizeof *s);
}

static int
scored_read(const char *dir, scored *s, char **msg)
{
	char *path = loomi_path_join(dir, "predictions.json"), *spath = NULL;
	json_error_t je;
	const json_t *series;
	int64_t need;
	struct stat sb;
	int fd = -1, rv = 0;

	memset(s, 0, sizeof *s);
	s->doc = json_load_file(path, 0, &je);
	if (s->doc == NULL) {
		rv = fail(msg, LOOM_EINVAL, "%s: %s (line %d); the batch prediction left no readable "
		                            "predictions",
		          path, je.text, je.line);
		goto out;
	}
	s->task = json_string_value(json_object_get(s->doc, "task"));
	s->n = json_integer_value(json_object_get(s->doc, "windows"));
	s->context = json_integer_value(json_object_get(s->doc, "context"));
	s->horizon = json_integer_value(json_object_get(s->doc, "horizon"));
	s->output = json_object_get(s->doc, "output");
	s->uncertainty = json_object_get(s->doc, "uncertainty");
	s->start = json_object_get(s->doc, "start");
	s->first_line = json_object_get(s->doc, "first_line");
	s->last_line = json_object_get(s->doc, "last_line");
	s->time = json_object_get(s->doc, "time");
	s->classes = json_object_get(s->doc, "classes");
	s->targets = json_object_get(s->doc, "targets");
	s->names = json_object_get(s->doc, "channels");
	s->threshold = json_number_value(json_object_get(s->doc, "threshold"));
	series = json_object_get(s->doc, "series");
	s->rows = json_integer_value(json_object_get(series, "rows"));
	s->channels = json_integer_value(json_object_get(series, "channels"));
	if (s->task == NULL || s->n < 0 || s->context < 1 || !json_is_array(s->output) ||
	    (int64_t)json_array_size(s->output) != s->n || !json_is_array(s->start) ||
	    (int64_t)json_array_size(s->start) != s->n || !json_is_array(s->names) ||
	    (int64_t)json_array_size(s->names) != s->channels || s->channels < 1 || s->rows < 0 ||
	    (strcmp(s->task, "classification") == 0 && !json_is_array(s->classes))) {
		rv = fail(msg, LOOM_EINVAL, "%s: not the predictions of a batch prediction "
		                            "(docs/inference.md describes the file)",
		          path);
		goto out;
	}
	spath = loomi_path_join(dir, "inputs.f32");
	need = s->rows * s->channels * (int64_t)sizeof(float);
	if ((fd = open(spath, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &sb) != 0 ||
	    sb.st_size != need) {
		rv = fail(msg, LOOM_EINVAL, "%s: missing or not %lld rows of %lld channels", spath,
		          (long long)s->rows, (long long)s->channels);
		goto out;
	}
	s->series = malloc(need ? (size_t)need : 1);
	if (s->series == NULL ||
	    (need && pread(fd, s->series, (size_t)need, 0) != (ssize_t)need)) {
		rv = fail(msg, LOOM_EIO, "%s: cannot read it: %s", spath, strerror(errno));
		goto out;
	}
out:
	if (fd >= 0)
		close(fd);
	free(path);
	free(spath);
	if (rv != 0)
		scored_free(s);
	return rv;
}

static double
num_at(const json_t *a, size_t i)
{
	return json_number_value(json_array_get(a, i));
}

/* The predicted class of window w and its probability, and the runner-up. */
static void
top_two(const scored *s, int64_t w, int64_t *c1, double *p1, int64_t *c2, double *p2)
{
	const json_t *row = json_array_get(s->output, (size_t)w);
	*c1 = *c2 = -1;
	*p1 = *p2 = -1;
	for (size_t c = 0; c < json_array_size(row); c++) {
		double p = num_at(row, c);
		if (p > *p1) {
			*c2 = *c1, *p2 = *p1;
			*c1 = (int64_t)c, *p1 = p;
		} else if (p > *p2) {
			*c2 = (int64_t)c, *p2 = p;
		}
	}
}

static const char *
class_name(const scored *s, int64_t c)
{
	const char *n = c >= 0 ? json_string_value(json_array_get(s->classes, (size_t)c)) : NULL;
	return n ? n : "?";
}

/* Mean of window w's uncertainty values, NAN without them. */
static double
mean_spread(const scored *s, int64_t w)
{
	const json_t *row = json_array_get(s->uncertainty, (size_t)w);
	double sum = 0;
	size_t n = json_array_size(row);
	for (size_t i = 0; i < n; i++)
		sum += num_at(row, i);
	return n ? sum / (double)n : NAN;
}

/* Why the sampler chose window w, in words a reviewer reads. */
static char *
why_text(const scored *s, const char *module, int64_t w, double score, uint64_t seed)
{
	bool cls = strcmp(s->task, "classification") == 0;
	int64_t c1, c2;
	double p1, p2;

	if (cls)
		top_two(s, w, &c1, &p1, &c2, &p2);
	if (cls && strcmp(module, "sampler-margin") == 0)
		return loomi_strfmt("margin %.3f: %s %.3f against %s %.3f", p1 - p2, class_name(s, c1),
		                    p1, class_name(s, c2), p2);
	if (cls && strcmp(module, "sampler-least-confidence") == 0)
		return loomi_strfmt("confidence %.3f in %s, the least sure first", p1,
		                    class_name(s, c1));
	if (cls && strcmp(module, "sampler-entropy") == 0)
		return loomi_strfmt("entropy %.3f nats over %zu classes (%s %.3f)", score,
		                    json_array_size(s->classes), class_name(s, c1), p1);
	if (strcmp(module, "sampler-variance") == 0)
		return loomi_strfmt("uncertainty %.4g (the mean spread of its predictions)", score);
	if (strcmp(module, "sampler-random") == 0 || strcmp(module, "sampler-reservoir") == 0)
		return loomi_strfmt("drawn at random (seed %llu)", (unsigned long long)seed);
	if (strcmp(module, "sampler-stratified") == 0)
		return cls ? loomi_strfmt("drawn at random within the predicted class %s",
		                          class_name(s, c1))
		           : loomi_strfmt("drawn at random (seed %llu)", (unsigned long long)seed);
	if (strcmp(module, "sampler-k-center") == 0)
		return loomi_strfmt("far from every window chosen before it (distance %.4g)", score);
	if (strcmp(module, "sampler-ranked-batch") == 0)
		return loomi_strfmt("uncertain and unlike the windows ranked before it (score %.4g)",
		                    score);
	return loomi_strfmt("score %.4g by %s", score, module);
}

/* Window w as a reviewer sees it: its rows' times and values, and the
 * prediction of the version that scored it. */
static json_t *
item_detail(const scored *s, int64_t w, const char *data)
{
	int64_t start = json_integer_value(json_array_get(s->start, (size_t)w));
	json_t *times = json_array(), *values = json_array(), *pred, *win;
	const json_t *out = json_array_get(s->output, (size_t)w);

	for (int64_t r = start; r < start + s->context && r < s->rows; r++) {
		json_t *row = json_array();
		const json_t *t = json_array_get(s->time, (size_t)r);
		json_array_append_new(times, t ? json_deep_copy(t) : json_null());
		for (int64_t c = 0; c < s->channels; c++) {
			float v = s->series[r * s->channels + c];
			json_array_append_new(row, isfinite(v) ? json_real(v) : json_null());
		}
		json_array_append_new(values, row);
	}
	win = json_pack("{sIsIsoso*so}", "first_line",
	                (json_int_t)json_integer_value(json_array_get(s->first_line, (size_t)w)),
	                "last_line",
	                (json_int_t)json_integer_value(json_array_get(s->last_line, (size_t)w)), "time",
	                times, "channels", json_deep_copy(s->names), "values", values);
	if (strcmp(s->task, "classification") == 0) {
		int64_t c1, c2;
		double p1, p2;
		top_two(s, w, &c1, &p1, &c2, &p2);
		pred = json_pack("{sssOsO}", "label", class_name(s, c1), "classes", s->classes, "probs",
		                 out);
	} else if (strcmp(s->task, "anomaly") == 0) {
		double score = num_at(out, 0);
		pred = json_pack("{sfsfsb}", "score", score, "threshold", s->threshold, "anomalous",
		                 score > s->threshold);
	} else {
		const json_t *u = json_array_get(s->uncertainty, (size_t)w);
		json_t *vals = json_deep_copy(out), *unc = u ? json_deep_copy(u) : json_null();
		if (strcmp(s->task, "forecast") == 0 && s->horizon > 0) {
			/* [h][target], as the model answers it */
			size_t T = json_array_size(s->targets) ? json_array_size(s->targets) : 1;
			json_t *nested[2] = {json_array(), json_is_array(unc) ? json_array() : json_null()};
			json_t *flat[2] = {vals, unc};
			for (int k = 0; k < 2; k++) {
				if (!json_is_array(flat[k]))
					continue;
				for (size_t i = 0; i < json_array_size(flat[k]); i += T) {
					json_t *step = json_array();
					for (size_t t = 0; t < T; t++)
						json_array_append(step, json_array_get(flat[k], i + t));
					json_array_append_new(nested[k], step);
				}
			}
			json_decref(vals);
			json_decref(unc);
			vals = nested[0];
			unc = nested[1];
		}
		pred = json_pack("{sOsoso}", "targets", s->targets ? s->targets : json_null(), "values",
		                 vals, "uncertainty", unc);
	}
	return json_pack("{sssososs}", "task", s->task, "window", win, "prediction", pred, "data",
	                 data);
}

/* The pool the sampler reads: probabilities and predicted classes
 * (classification), scores (the mean uncertainty of a forecast or a
 * regression, an anomaly score, one minus the confidence of a class),
 * the windows' values as features for a diversity sampler (z-scored per
 * channel over the file). */
typedef struct pool_data {
	float *probs, *scores, *features;
	int32_t *strata;
} pool_data;

static int
pool_build(const scored *s, uint32_t needs, loom_sample_pool *pool, pool_data *pd, char **msg)
{
	size_t n = (size_t)s->n, K = json_array_size(s->classes);
	bool cls = strcmp(s->task, "classification") == 0;

	memset(pd, 0, sizeof *pd);
	memset(pool, 0, sizeof *pool);
	pool->size = sizeof *pool;
	pool->n = n;
	if (cls) {
		pd->probs = malloc(n * K * sizeof(float) + 1);
		pd->strata = malloc(n * sizeof(int32_t) + 1);
		if (!pd->probs || !pd->strata)
			return fail(msg, LOOM_ENOMEM, "no memory for a pool of %zu windows", n);
		for (size_t w = 0; w < n; w++) {
			int64_t c1, c2;
			double p1, p2;
			const json_t *row = json_array_get(s->output, w);
			for (size_t c = 0; c < K; c++)
				pd->probs[w * K + c] = (float)num_at(row, c);
			top_two(s, (int64_t)w, &c1, &p1, &c2, &p2);
			pd->strata[w] = (int32_t)c1;
		}
		pool->probs = pd->probs;
		pool->n_classes = (uint32_t)K;
		pool->strata = pd->strata;
	}
	if ((pd->scores = malloc(n * sizeof(float) + 1)) == NULL)
		return fail(msg, LOOM_ENOMEM, "no memory for a pool of %zu windows", n);
	{
		bool any = true;
		for (size_t w = 0; w < n; w++) {
			double v;
			if (cls)
				v = 1 - pd->probs[w * K + (size_t)pd->strata[w]];
			else if (strcmp(s->task, "anomaly") == 0)
				v = num_at(json_array_get(s->output, w), 0);
			else
				v = mean_spread(s, (int64_t)w);
			any &= isfinite(v);
			pd->scores[w] = (float)v;
		}
		if (any)
			pool->scores = pd->scores;
		else if (needs & LOOM_SAMPLE_NEEDS_SCORES)
			return fail(msg, LOOM_EINVAL,
			            "the %s model gave no uncertainty for its predictions, which the "
			            "sampler needs; choose a sampler that reads no scores (random, "
			            "k-center)",
			            s->task);
	}
	if (needs & LOOM_SAMPLE_NEEDS_FEATURES) {
		size_t L = (size_t)s->context, C = (size_t)s->channels, dim = L * C;
		double *mean = calloc(C, sizeof(double)), *sd = calloc(C, sizeof(double));
		if (n * dim > MAX_FEATURE_FLOATS) {
			free(mean);
			free(sd);
			return fail(msg, LOOM_ERANGE,
			            "%zu windows of %zu values are too many for a diversity sampler "
			            "(at most %u values); predict over a smaller file, or a larger stride",
			            n, dim, MAX_FEATURE_FLOATS);
		}
		pd->features = malloc(n * dim * sizeof(float) + 1);
		if (!mean || !sd || !pd->features) {
			free(mean);
			free(sd);
			return fail(msg, LOOM_ENOMEM, "no memory for the windows' features");
		}
		for (int64_t r = 0; r < s->rows; r++)
			for (size_t c = 0; c < C; c++)
				mean[c] += s->series[(size_t)r * C + c];
		for (size_t c = 0; c < C; c++)
			mean[c] /= s->rows ? (double)s->rows : 1;
		for (int64_t r = 0; r < s->rows; r++)
			for (size_t c = 0; c < C; c++) {
				double e = s->series[(size_t)r * C + c] - mean[c];
				sd[c] += e * e;
			}
		for (size_t c = 0; c < C; c++)
			sd[c] = s->rows > 1 && sd[c] > 0 ? sqrt(sd[c] / (double)(s->rows - 1)) : 1;
		for (size_t w = 0; w < n; w++) {
			size_t start = (size_t)json_integer_value(json_array_get(s->start, w));
			for (size_t i = 0; i < dim; i++) {
				size_t c = i % C;
				pd->features[w * dim + i] =
					(float)((s->series[(start + i / C) * C + c] - mean[c]) / sd[c]);
			}
		}
		free(mean);
		free(sd);
		pool->features = pd->features;
		pool->dim = (uint32_t)dim;
	}
	return 0;
}

static void
pool_free(pool_data *pd)
{
	free(pd->probs);
	free(pd->scores);
	free(pd->features);
	free(pd->strata);
}

static int
set_round_failed(sqlite3 *db, int64_t project_id, int64_t number, const char *error, char **msg)
{
	sqlite3_stmt *st = prep(db, "UPDATE label_rounds SET state = 'failed', error = ? WHERE "
	                            "project_id = ? AND number = ? AND state = 'scoring'");
	sqlite3_bind_text(st, 1, error, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 2, project_id);
	sqlite3_bind_int64(st, 3, number);
	return step_done(db, st, msg, "record a failed round");
}

/* The sampler's choice over a completed round's windows, queued: in the
 * open write transaction. */
static int
open_round(loomi_daemon *d, int64_t project_id, int64_t number, const char *sampler,
           int64_t k, uint64_t seed, const char *data, const char *dir, int64_t now, char **msg)
{
	sqlite3 *db = d->store.db;
	loom_instance *ins = loomi_instance_find(&d->plugins, sampler);
	const loom_sampler_ops *ops;
	loom_sample_pool pool;
	loom_sample_request req = {.size = sizeof req, .seed = seed};
	loom_sample_result res = {0};
	pool_data pd;
	scored s;
	char *err = NULL;
	int rv;

	if (ins == NULL || ins->kind != LOOM_KIND_SAMPLER || !ins->inited)
		return set_round_failed(db, project_id, number,
		                        "the project's sampler instance is no longer in loomd.conf; "
		                        "declare it again and start another round",
		                        msg);
	ops = ins->desc->ops;
	if ((rv = scored_read(dir, &s, &err)) != 0) {
		rv = set_round_failed(db, project_id, number, err, msg);
		free(err);
		return rv;
	}
	if ((rv = pool_build(&s, ops->needs, &pool, &pd, &err)) == 0) {
		req.k = (size_t)(k < s.n ? k : s.n);
		res.index = calloc(req.k + 1, sizeof(size_t));
		res.score = calloc(req.k + 1, sizeof(double));
		res.slot = calloc(req.k + 1, sizeof(int64_t));
		if (!res.index || !res.score || !res.slot)
			rv = fail(&err, LOOM_ENOMEM, "no memory for %zu candidates", req.k);
		else if (req.k == 0)
			res.n = 0;
		else
			rv = loomi_sampler_select(d, sampler, &pool, &req, &res, &err);
	}
	if (rv != 0) {
		char *why = loomi_strfmt("the sampler \"%s\" could not choose: %s", sampler,
		                         err ? err : loom_strerror(rv));
		rv = set_round_failed(db, project_id, number, why, msg);
		free(why);
	} else {
		sqlite3_stmt *st = prep(db, "INSERT INTO label_items (project_id, round, rank, window, "
		                            "score, why, detail, state) VALUES (?, ?, ?, ?, ?, ?, ?, "
		                            "'queued')");
		for (size_t i = 0; st && i < res.n && rv == 0; i++) {
			int64_t w = (int64_t)res.index[i];
			char *why = why_text(&s, ins->desc->name, w, res.score[i], seed);
			json_t *det = item_detail(&s, w, data);
			char *dtext = json_dumps(det, JSON_COMPACT);
			sqlite3_reset(st);
			sqlite3_bind_int64(st, 1, project_id);
			sqlite3_bind_int64(st, 2, number);
			sqlite3_bind_int64(st, 3, (int64_t)i + 1);
			sqlite3_bind_int64(st, 4, w);
			if (isfinite(res.score[i]))
				sqlite3_bind_double(st, 5, res.score[i]);
			else
				sqlite3_bind_null(st, 5);
			sqlite3_bind_text(st, 6, why, -1, SQLITE_TRANSIENT);
			sqlite3_bind_text(st, 7, dtext ? dtext : "{}", -1, SQLITE_TRANSIENT);
			if (sqlite3_step(st) != SQLITE_DONE)
				rv = db_fail(db, msg, "queue a round's items");
			free(why);
			free(dtext);
			json_decref(det);
		}
		sqlite3_finalize(st);
		if (st == NULL)
			rv = db_fail(db, msg, "queue a round's items");
		if (rv == 0) {
			st = prep(db, "UPDATE label_rounds SET state = 'open', opened_at = ?, windows = ? "
			              "WHERE project_id = ? AND number = ?");
			sqlite3_bind_int64(st, 1, now);
			sqlite3_bind_int64(st, 2, s.n);
			sqlite3_bind_int64(st, 3, project_id);
			sqlite3_bind_int64(st, 4, number);
			rv = step_done(db, st, msg, "open a round");
		}
		if (rv == 0)
			LOG_INFO("labeling: round %lld of project %lld open: %zu of %lld windows queued "
			         "by %s",
			         (long long)number, (long long)project_id, res.n, (long long)s.n, sampler);
	}
	free(err);
	free(res.index);
	free(res.score);
	free(res.slot);
	pool_free(&pd);
	scored_free(&s);
	return rv;
}

/* Bring the project's scoring rounds up to date with their tasks: a
 * completed task's windows are chosen and queued, a failed or cancelled
 * one fails its round.  Under lock, outside a transaction. */
static int
settle_rounds(loomi_daemon *d, int64_t project_id, char **msg)
{
	sqlite3 *db = d->store.db;
	sqlite3_stmt *st;
	struct pending {
		int64_t number, job, k, seed;
		char *sampler, *data;
	} *p = NULL;
	size_t n = 0;
	int rv = 0;

	st = prep(db, "SELECT number, job_id, k, seed, sampler, data FROM label_rounds WHERE "
	              "project_id = ? AND state = 'scoring' ORDER BY number");
	sqlite3_bind_int64(st, 1, project_id);
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		struct pending *q = realloc(p, (n + 1) * sizeof *p);
		if (q == NULL)
			break;
		p = q;
		p[n].number = sqlite3_column_int64(st, 0);
		p[n].job = sqlite3_column_type(st, 1) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 1);
		p[n].k = sqlite3_column_int64(st, 2);
		p[n].seed = sqlite3_column_int64(st, 3);
		p[n].sampler = loomi_strdup(col_text(st, 4));
		p[n].data = loomi_strdup(col_text(st, 5));
		n++;
	}
	sqlite3_finalize(st);
	for (size_t i = 0; i < n && rv == 0; i++) {
		json_t *job = p[i].job ? loomi_jobs_get(d, p[i].job) : NULL;
		const char *status = json_string_value(json_object_get(job, "status"));
		char *why = NULL;
		bool done = status && strcmp(status, "completed") == 0;

		if (job == NULL)
			why = p[i].job ? loomi_strfmt("its task (task-%lld) is gone; start another round",
			                              (long long)p[i].job)
			               : loomi_strdup("loomd stopped before the round's task was "
			                              "submitted; start another round");
		else if (status && (strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0))
			why = loomi_strfmt("its batch prediction, task-%lld, %s: %s", (long long)p[i].job,
			                   status,
			                   json_string_value(json_object_get(job, "error"))
			                       ? json_string_value(json_object_get(job, "error"))
			                       : "see its log");
		if (why || done) {
			if ((rv = loomi_store_begin(db, true, msg)) == 0) {
				if (why)
					rv = set_round_failed(db, project_id, p[i].number, why, msg);
				else
					rv = open_round(d, project_id, p[i].number, p[i].sampler, p[i].k,
					                (uint64_t)p[i].seed, p[i].data,
					                json_string_value(json_object_get(job, "out_dir")),
					                loomi_wall_ms(), msg);
				rv = loomi_store_end(db, rv, msg);
			}
		}
		free(why);
		json_decref(job);
	}
	for (size_t i = 0; i < n; i++) {
		free(p[i].sampler);
		free(p[i].data);
	}
	free(p);
	return rv;
}

/* ------------------------------------------------------------------ items */

#define ITEM_COLUMNS                                                                           \
	"i.id, p.name, i.round, i.rank, p.model, r.model_version, i.state, i.lease_user, "     \
	"i.lease_until, i.score, i.why, i.detail, p.sampler"

static json_t *
decision_json(sqlite3 *db, int64_t item)
{
	sqlite3_stmt *st = prep(db, "SELECT action, label, user, at, note FROM label_decisions "
	                            "WHERE item_id = ? AND action IN ('confirm','correct','flag') "
	                            "ORDER BY id DESC LIMIT 1");
	json_t *o = json_null();

	sqlite3_bind_int64(st, 1, item);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		json_t *label = sqlite3_column_type(st, 1) == SQLITE_NULL
		                    ? json_null()
		                    : json_loads(col_text(st, 1), JSON_DECODE_ANY, NULL);
		o = json_pack("{sssoss}", "action", col_text(st, 0), "label",
		              label ? label : json_null(), "user", col_text(st, 2));
		json_object_set_new(o, "at", iso_time(sqlite3_column_int64(st, 3)));
		if (sqlite3_column_type(st, 4) != SQLITE_NULL)
			json_object_set_new(o, "note", json_string(col_text(st, 4)));
	}
	sqlite3_finalize(st);
	return o;
}

static json_t *
item_json(sqlite3 *db, int64_t id, int64_t now)
{
	sqlite3_stmt *st = prep(db, "SELECT " ITEM_COLUMNS " FROM label_items i JOIN label_projects "
	                            "p ON p.id = i.project_id JOIN label_rounds r ON r.project_id "
	                            "= i.project_id AND r.number = i.round WHERE i.id = ?");
	json_t *o = NULL;

	sqlite3_bind_int64(st, 1, id);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		json_t *det = json_loads(col_text(st, 11), 0, NULL);
		const char *state = col_text(st, 6);
		int64_t until = sqlite3_column_int64(st, 8);
		bool leased = strcmp(state, "leased") == 0 && until > now;

		o = json_pack("{sIsssIsIsssIsssOsOsOss}", "id", (json_int_t)sqlite3_column_int64(st, 0),
		              "project", col_text(st, 1), "round",
		              (json_int_t)sqlite3_column_int64(st, 2), "rank",
		              (json_int_t)sqlite3_column_int64(st, 3), "model", col_text(st, 4),
		              "version", (json_int_t)sqlite3_column_int64(st, 5), "task",
		              json_string_value(json_object_get(det, "task"))
		                  ? json_string_value(json_object_get(det, "task"))
		                  : "",
		              "window", json_object_get(det, "window") ? json_object_get(det, "window") : json_null(),
		              "prediction",
		              json_object_get(det, "prediction") ? json_object_get(det, "prediction")
		                                                 : json_null(),
		              "data", json_object_get(det, "data") ? json_object_get(det, "data") : json_null(),
		              "sampler", col_text(st, 12));
		json_object_set_new(o, "state",
		                    json_string(strcmp(state, "leased") == 0 && !leased ? "queued" : state));
		json_object_set_new(o, "lease",
		                    leased ? json_pack("{sssosI}", "user", col_text(st, 7), "until",
		                                       iso_time(until), "seconds_left",
		                                       (json_int_t)((until - now + 999) / 1000))
		                           : json_null());
		json_object_set_new(o, "score", sqlite3_column_type(st, 9) == SQLITE_NULL
		                                    ? json_null()
		                                    : json_real(sqlite3_column_double(st, 9)));
		json_object_set_new(o, "why", json_string(col_text(st, 10)));
		json_object_set_new(o, "decision", decision_json(db, id));
		json_decref(det);
	}
	sqlite3_finalize(st);
	return o;
}

/* Lease the next item of project to user, in the open write transaction:
 * the user's own unexpired lease first, else the best-ranked item of the
 * oldest open round that is free (queued, or its lease ended) and that the
 * user has not skipped.  *id 0 when there is none. */
static int
lease_next(sqlite3 *db, const project *p, const char *user, int64_t now, int64_t *id,
           char **msg)
{
	sqlite3_stmt *st;

	*id = 0;
	st = prep(db, "SELECT id FROM label_items WHERE project_id = ? AND state = 'leased' AND "
	              "lease_user = ? AND lease_until > ? ORDER BY round, rank LIMIT 1");
	sqlite3_bind_int64(st, 1, p->id);
	sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		*id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (*id)
		return 0;
	st = prep(db, "SELECT i.id FROM label_items i WHERE i.project_id = ?1 AND (i.state = "
	              "'queued' OR (i.state = 'leased' AND i.lease_until <= ?3)) AND NOT EXISTS "
	              "(SELECT 1 FROM label_decisions d WHERE d.item_id = i.id AND d.user = ?2 AND "
	              "d.action = 'skip') ORDER BY i.round, i.rank LIMIT 1");
	sqlite3_bind_int64(st, 1, p->id);
	sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		*id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (*id == 0)
		return 0;
	st = prep(db, "UPDATE label_items SET state = 'leased', lease_user = ?, lease_until = ? "
	              "WHERE id = ?");
	sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now + p->lease_ms);
	sqlite3_bind_int64(st, 3, *id);
	return step_done(db, st, msg, "lease an item");
}

/* Why there is no next item, for {"item": null, "why"}. */
static char *
why_none(sqlite3 *db, const project *p)
{
	sqlite3_stmt *st = prep(db, "SELECT number, job_id FROM label_rounds WHERE project_id = ? "
	                            "AND state = 'scoring' ORDER BY number LIMIT 1");
	char *why = NULL;

	sqlite3_bind_int64(st, 1, p->id);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		why = loomi_strfmt("round %lld is still scoring (task-%lld); ask again when it is open",
		                   (long long)sqlite3_column_int64(st, 0),
		                   (long long)sqlite3_column_int64(st, 1));
	sqlite3_finalize(st);
	if (why)
		return why;
	st = prep(db, "SELECT count(*) FROM label_rounds WHERE project_id = ?");
	sqlite3_bind_int64(st, 1, p->id);
	if (st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) == 0)
		why = loomi_strdup("the project has no rounds yet; start one over the data to score "
		                   "(loomctl label round, or POST …/rounds)");
	sqlite3_finalize(st);
	return why ? why
	           : loomi_strdup("no items left to review: every item is decided, leased to "
	                          "another reviewer, or skipped by you");
}

/* The final label of a decision: confirm takes the prediction's, correct
 * the one given, checked against the model's task.  NULL for skip and
 * flag.  0, or LOOM_EINVAL with *msg naming "label". */
static int
final_label(const json_t *pred, const char *task, const char *action, const json_t *given,
            json_t **out, char **msg)
{
	*out = NULL;
	if (strcmp(action, "skip") == 0 || strcmp(action, "flag") == 0) {
		if (given)
			return fail(msg, LOOM_EINVAL, "label: only with confirm or correct; leave it out");
		return 0;
	}
	if (strcmp(action, "confirm") == 0) {
		if (given)
			return fail(msg, LOOM_EINVAL, "label: confirm takes the model's prediction; send "
			                              "\"correct\" with a label to change it");
		if (strcmp(task, "classification") == 0)
			*out = json_incref(json_object_get(pred, "label"));
		else if (strcmp(task, "anomaly") == 0)
			*out = json_pack("{sO}", "anomalous", json_object_get(pred, "anomalous"));
		else
			*out = json_incref(json_object_get(pred, "values"));
		if (*out == NULL)
			*out = json_null();
		return 0;
	}
	if (given == NULL)
		return fail(msg, LOOM_EINVAL, "label: required with correct (%s)",
		            strcmp(task, "classification") == 0 ? "one of the classes, e.g. \"rain\""
		            : strcmp(task, "anomaly") == 0       ? "{\"anomalous\": true}"
		                                                 : "the values, as the prediction's");
	if (strcmp(task, "classification") == 0) {
		const json_t *classes = json_object_get(pred, "classes"), *c;
		size_t i;
		if (json_is_string(given))
			json_array_foreach(classes, i, c)
				if (json_equal(c, given)) {
					*out = json_incref((json_t *)given);
					return 0;
				}
		{
			char *list = json_dumps(classes, JSON_COMPACT);
			int rv = fail(msg, LOOM_EINVAL, "label: expected one of the model's classes %s",
			              list ? list : "");
			free(list);
			return rv;
		}
	}
	if (strcmp(task, "anomaly") == 0) {
		const json_t *a = json_object_get(given, "anomalous"), *span = json_object_get(given, "span");
		if (!json_is_object(given) || !json_is_boolean(a) ||
		    json_object_size(given) != (span ? 2u : 1u) ||
		    (span && !(json_is_array(span) && json_array_size(span) == 2 &&
		               json_is_integer(json_array_get(span, 0)) &&
		               json_is_integer(json_array_get(span, 1)))))
			return fail(msg, LOOM_EINVAL, "label: expected {\"anomalous\": true|false} and, for "
			                              "an anomaly, optionally \"span\": [first_line, "
			                              "last_line]");
		*out = json_incref((json_t *)given);
		return 0;
	}
	{
		/* numbers shaped as the prediction's values */
		const json_t *want = json_object_get(pred, "values");
		json_t *copy = json_deep_copy(given);
		bool ok = json_is_array(want) && json_is_array(given) &&
		          json_array_size(want) == json_array_size(given);
		for (size_t i = 0; ok && i < json_array_size(want); i++) {
			const json_t *w = json_array_get(want, i), *g = json_array_get(given, i);
			if (json_is_array(w)) {
				ok = json_is_array(g) && json_array_size(g) == json_array_size(w);
				for (size_t j = 0; ok && j < json_array_size(w); j++)
					ok = json_is_number(json_array_get(g, j)) &&
					     isfinite(json_number_value(json_array_get(g, j)));
			} else {
				ok = json_is_number(g) && isfinite(json_number_value(g));
			}
		}
		if (!ok) {
			json_decref(copy);
			return fail(msg, LOOM_EINVAL, "label: expected finite numbers shaped as the "
			                              "prediction's \"values\"");
		}
		*out = copy;
		return 0;
	}
}

/* ------------------------------------------------------------------ routes */

static void
answer(loomi_http_res *res, int rv, json_t *out, char *msg, int ok)
{
	loomi_api_answer(res, rv, out, msg, ok);
}

static void
route_projects(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3 *db = d->store.db;
	char *vis = loomi_auth_visible_sql("labeling", "label_projects.name", "label_projects.owner");
	char *sql = loomi_strfmt("SELECT name FROM label_projects WHERE %s ORDER BY name", vis);
	json_t *list = json_array();
	char *msg = NULL;
	int64_t now = loomi_wall_ms();
	sqlite3_stmt *st;
	int rv;

	pthread_mutex_lock(&lock);
	if ((rv = loomi_store_begin(db, false, &msg)) == 0) {
		st = prep(db, sql);
		if (st)
			loomi_auth_bind(st, req->caller);
		while (st && sqlite3_step(st) == SQLITE_ROW) {
			project p;
			char *m = NULL;
			if (project_load(db, col_text(st, 0), &p, &m) == 0)
				json_array_append_new(list, project_json(db, &p, now));
			project_free(&p);
			free(m);
		}
		sqlite3_finalize(st);
		rv = loomi_store_end(db, st ? 0 : db_fail(db, &msg, "list the projects"), &msg);
	}
	pthread_mutex_unlock(&lock);
	free(vis);
	free(sql);
	if (rv != 0)
		json_decref(list);
	answer(res, rv, rv ? NULL : json_pack("{sosI}", "projects", list, "total",
	                                      (json_int_t)json_array_size(list)),
	       msg, 200);
}

static void
route_create(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	static const char *const fields[] = {"name", "model", "alias", "sampler", "k", "lease"};
	sqlite3 *db = d->store.db;
	json_t *body = loomi_api_json_body(req, res), *v, *out = NULL;
	const char *key, *name = NULL, *model = NULL, *alias = "production", *sampler = NULL;
	int64_t k = DEFAULT_K, lease_ms = DEFAULT_LEASE_MS, mid, ver;
	char *msg = NULL, *dir = NULL;
	loom_instance *ins;
	int rv = 0;

	if (body == NULL)
		return;
	if (!json_is_object(body))
		rv = fail(&msg, LOOM_EINVAL, "the body must be a JSON object like {\"name\": "
		                             "\"weather-review\", \"model\": \"weather\", "
		                             "\"sampler\": \"margin\"}");
	json_object_foreach(body, key, v) {
		bool known = false;
		for (size_t i = 0; i < LOOMI_N(fields); i++)
			known |= strcmp(key, fields[i]) == 0;
		if (!known && rv == 0)
			rv = fail(&msg, LOOM_EINVAL, "%s: unknown field; a project has name, model, alias, "
			                             "sampler, k and lease",
			          key);
	}
	if (rv == 0 && !(json_is_string(v = json_object_get(body, "name")) &&
	                 project_name_ok(name = json_string_value(v))))
		rv = fail(&msg, LOOM_EINVAL, "name: required, 1 to %d of A-Z a-z 0-9 _ . - starting "
		                             "with a letter or digit",
		          NAME_MAX_LEN);
	if (rv == 0 && !(json_is_string(v = json_object_get(body, "model")) &&
	                 json_string_length(v) > 0))
		rv = fail(&msg, LOOM_EINVAL, "model: required, a registered model's name (GET "
		                             "/api/v1/models lists them)");
	model = json_string_value(json_object_get(body, "model"));
	if (rv == 0 && (v = json_object_get(body, "alias")) != NULL) {
		if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 32)
			rv = fail(&msg, LOOM_EINVAL, "alias: expected an alias name such as "
			                             "\"production\"");
		else
			alias = json_string_value(v);
	}
	if (rv == 0 && !json_is_string(v = json_object_get(body, "sampler")))
		rv = fail(&msg, LOOM_EINVAL, "sampler: required, a sampler instance (GET "
		                             "/api/v1/samplers lists them), e.g. \"margin\"");
	sampler = json_string_value(json_object_get(body, "sampler"));
	if (rv == 0 && ((ins = loomi_instance_find(&d->plugins, sampler)) == NULL ||
	                ins->kind != LOOM_KIND_SAMPLER || !ins->inited))
		rv = fail(&msg, LOOM_EINVAL, "sampler: there is no sampler instance \"%s\"; GET "
		                             "/api/v1/samplers lists them (loomd.conf declares them)",
		          sampler);
	if (rv == 0 && (v = json_object_get(body, "k")) != NULL) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > MAX_K)
			rv = fail(&msg, LOOM_EINVAL, "k: expected how many items a round queues, 1 to %d",
			          MAX_K);
		else
			k = json_integer_value(v);
	}
	if (rv == 0 && (v = json_object_get(body, "lease")) != NULL) {
		if (json_is_number(v))
			lease_ms = (int64_t)(json_number_value(v) * 1000);
		else if (!json_is_string(v) || loom_parse_duration(json_string_value(v), &lease_ms) != 0)
			lease_ms = -1;
		if (lease_ms < 1000 || lease_ms > 7 * 24 * 3600 * 1000LL)
			rv = fail(&msg, LOOM_EINVAL, "lease: expected how long a reviewer holds an item, "
			                             "in seconds or as \"10m\", from 1 s to 7 days");
	}
	if (rv == 0 && !loomi_registry_allowed(d, req->caller, model, LOOMI_ACCESS_READ))
		rv = fail(&msg, LOOM_ENOENT, "model: there is no model \"%s\"; GET /api/v1/models "
		                             "lists them",
		          model);
	if (rv == 0 && (rv = loomi_registry_resolve(d, model, alias, &mid, &ver, &dir, &msg)) != 0) {
		char *m = loomi_strfmt("model: %s", msg);
		free(msg);
		msg = m;
	}
	free(dir);
	if (rv == 0) {
		pthread_mutex_lock(&lock);
		if ((rv = loomi_store_begin(db, true, &msg)) == 0) {
			sqlite3_stmt *st = prep(db, "INSERT INTO label_projects (name, owner, model, alias, "
			                            "sampler, k, lease_ms, created_at) VALUES (?, ?, ?, ?, "
			                            "?, ?, ?, ?) ON CONFLICT (name) DO NOTHING");
			sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 2, req->caller->name, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 3, model, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 4, alias, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 5, sampler, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 6, k);
			sqlite3_bind_int64(st, 7, lease_ms);
			sqlite3_bind_int64(st, 8, loomi_wall_ms());
			rv = step_done(db, st, &msg, "create the project");
			if (rv == 0 && sqlite3_changes(db) == 0)
				rv = fail(&msg, LOOM_EEXIST,
				          "name: a labeling project called \"%s\" exists; choose another name",
				          name);
			if (rv == 0) {
				project p;
				if ((rv = project_load(db, name, &p, &msg)) == 0)
					out = project_json(db, &p, loomi_wall_ms());
				project_free(&p);
			}
			rv = loomi_store_end(db, rv, &msg);
		}
		pthread_mutex_unlock(&lock);
		if (rv == 0)
			loomi_audit(req->caller, "created labeling project %s (model %s@%s, sampler %s)",
			            name, model, alias, sampler);
	}
	json_decref(body);
	answer(res, rv, out, msg, 201);
}

/* The project of the route's first parameter, its rounds settled. */
static int
load_settled(loomi_daemon *d, const char *name, project *p, char **msg)
{
	int rv = project_load(d->store.db, name, p, msg);
	if (rv == 0 && (rv = settle_rounds(d, p->id, msg)) != 0)
		project_free(p);
	return rv;
}

static json_t *
rounds_json(sqlite3 *db, const project *p, int64_t number, int64_t now)
{
	sqlite3_stmt *st = prep(db, "SELECT " ROUND_COLUMNS " FROM label_rounds WHERE project_id = "
	                            "?1 AND (?2 = 0 OR number = ?2) ORDER BY number");
	json_t *a = json_array();

	sqlite3_bind_int64(st, 1, p->id);
	sqlite3_bind_int64(st, 2, number);
	while (st && sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(a, round_json(db, p->id, st, now));
	sqlite3_finalize(st);
	return a;
}

static void
route_project(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	project p;
	json_t *out = NULL;
	char *msg = NULL;
	int64_t now = loomi_wall_ms();
	int rv;

	if (!project_may(d, req->caller, req->params[0], LOOMI_ACCESS_READ, res))
		return;
	pthread_mutex_lock(&lock);
	if ((rv = load_settled(d, req->params[0], &p, &msg)) == 0) {
		out = project_json(d->store.db, &p, now);
		json_object_set_new(out, "rounds", rounds_json(d->store.db, &p, 0, now));
		project_free(&p);
	}
	pthread_mutex_unlock(&lock);
	answer(res, rv, out, msg, 200);
}

static void
route_round(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	project p;
	json_t *out = NULL, *a;
	char *msg = NULL, *end;
	long long number = strtoll(req->params[1], &end, 10);
	int rv;

	if (!project_may(d, req->caller, req->params[0], LOOMI_ACCESS_READ, res))
		return;
	if (*end || number < 1) {
		loomi_api_error(res, 404, "not_found", "there is no round \"%s\"; rounds are numbered "
		                                       "from 1",
		                req->params[1]);
		return;
	}
	pthread_mutex_lock(&lock);
	if ((rv = load_settled(d, req->params[0], &p, &msg)) == 0) {
		a = rounds_json(d->store.db, &p, number, loomi_wall_ms());
		if (json_array_size(a) == 1)
			out = json_incref(json_array_get(a, 0));
		else
			rv = fail(&msg, LOOM_ENOENT, "project \"%s\" has no round %lld", p.name, number);
		json_decref(a);
		project_free(&p);
	}
	pthread_mutex_unlock(&lock);
	answer(res, rv, out, msg, 200);
}

static void
route_start_round(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3 *db = d->store.db;
	json_t *body, *v, *out = NULL, *task = NULL, *vinfo = NULL;
	const char *key, *data = NULL, *compute;
	project p = {0};
	int64_t k, seed = 1, number = 0, mid, ver, job = 0, now = loomi_wall_ms();
	char *msg = NULL, *dir = NULL, vref[32];
	int rv = 0;

	if (!project_may(d, req->caller, req->params[0], LOOMI_ACCESS_WRITE, res))
		return;
	if ((body = loomi_api_json_body(req, res)) == NULL)
		return;
	if (!json_is_object(body))
		rv = fail(&msg, LOOM_EINVAL, "the body must be a JSON object like {\"data\": "
		                             "\"/data/new.csv\", \"k\": 50}");
	json_object_foreach(body, key, v)
		if (rv == 0 && strcmp(key, "data") && strcmp(key, "k") && strcmp(key, "seed"))
			rv = fail(&msg, LOOM_EINVAL, "%s: unknown field; a round has data, k and seed", key);
	if (rv == 0 && !(json_is_string(v = json_object_get(body, "data")) && json_string_length(v)))
		rv = fail(&msg, LOOM_EINVAL, "data: required, the CSV file of new data to score "
		                             "(under loomd.conf's data_roots)");
	data = json_string_value(json_object_get(body, "data"));
	if (rv == 0 && (v = json_object_get(body, "seed")) != NULL &&
	    !(json_is_integer(v) && json_integer_value(v) >= 0))
		rv = fail(&msg, LOOM_EINVAL, "seed: expected a whole number ≥ 0");
	if (rv == 0 && v)
		seed = json_integer_value(v);
	if (rv == 0)
		rv = project_load(db, req->params[0], &p, &msg);
	k = p.k;
	if (rv == 0 && (v = json_object_get(body, "k")) != NULL) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > MAX_K)
			rv = fail(&msg, LOOM_EINVAL, "k: expected 1 to %d", MAX_K);
		else
			k = json_integer_value(v);
	}
	if (rv == 0)
		rv = loomi_data_path_check(d, "data", data, &msg);
	/* the version the alias names now: the round keeps it */
	if (rv == 0 && !loomi_registry_allowed(d, req->caller, p.model, LOOMI_ACCESS_READ))
		rv = fail(&msg, LOOM_ENOENT, "the project's model \"%s\" is not one you may read; its "
		                             "owner can share it with you",
		          p.model);
	if (rv == 0 && (rv = loomi_registry_resolve(d, p.model, p.alias, &mid, &ver, &dir, &msg)) == 0) {
		snprintf(vref, sizeof vref, "%lld", (long long)ver);
		rv = loomi_registry_version(d, p.model, vref, &vinfo, &msg);
	}
	free(dir);
	compute = json_string_value(json_object_get(json_object_get(vinfo, "spec"), "compute"));
	if (compute == NULL)
		compute = "transformer";
	if (rv == 0) {
		/* the round's row first: a loomd killed before its task is
		 * submitted leaves a round that says so, not a task without one */
		pthread_mutex_lock(&lock);
		if ((rv = loomi_store_begin(db, true, &msg)) == 0) {
			sqlite3_stmt *st = prep(db, "INSERT INTO label_rounds (project_id, number, state, "
			                            "model_version, data, sampler, k, seed, user, "
			                            "created_at) SELECT ?1, coalesce(max(number), 0) + 1, "
			                            "'scoring', ?2, ?3, ?4, ?5, ?6, ?7, ?8 FROM "
			                            "label_rounds WHERE project_id = ?1 RETURNING number");
			sqlite3_bind_int64(st, 1, p.id);
			sqlite3_bind_int64(st, 2, ver);
			sqlite3_bind_text(st, 3, data, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 4, p.sampler, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 5, k);
			sqlite3_bind_int64(st, 6, seed);
			sqlite3_bind_text(st, 7, req->caller->name, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 8, now);
			if (st && sqlite3_step(st) == SQLITE_ROW)
				number = sqlite3_column_int64(st, 0);
			else
				rv = db_fail(db, &msg, "record the round");
			sqlite3_finalize(st);
			rv = loomi_store_end(db, rv, &msg);
		}
		pthread_mutex_unlock(&lock);
	}
	if (rv == 0) {
		/* the spread of a forecast or a regression is what a variance
		 * sampler reads; a classifier's probabilities need none */
		const json_t *spec = json_object_get(vinfo, "spec");
		const char *head =
			json_string_value(json_object_get(json_object_get(spec, "model"), "head"));
		bool spread = !(head && (strcmp(head, "classification") == 0 ||
		                         strcmp(head, "anomaly") == 0));
		char *tname = loomi_strfmt("label-%s-round-%lld", p.name, (long long)number);
		task = json_pack("{sss{sss{sssIs{ss}sb}}sb}", "name", tname, "spec", "compute", compute,
		                 "predict", "model", p.model, "version", (json_int_t)ver, "data", "path",
		                 data, "uncertainty", spread, "start", 1);
		free(tname);
		rv = loomi_jobs_submit(d, task, req->caller, &job, &msg);
		pthread_mutex_lock(&lock);
		{
			char *m2 = NULL;
			int r2 = loomi_store_begin(db, true, &m2);
			if (r2 == 0) {
				sqlite3_stmt *st;
				if (rv == 0) {
					st = prep(db, "UPDATE label_rounds SET job_id = ? WHERE project_id = ? AND "
					              "number = ?");
					sqlite3_bind_int64(st, 1, job);
				} else {
					st = prep(db, "UPDATE label_rounds SET state = 'failed', error = ? WHERE "
					              "project_id = ? AND number = ?");
					sqlite3_bind_text(st, 1, msg ? msg : "the task was refused", -1,
					                  SQLITE_TRANSIENT);
				}
				sqlite3_bind_int64(st, 2, p.id);
				sqlite3_bind_int64(st, 3, number);
				r2 = step_done(db, st, &m2, "record the round's task");
				r2 = loomi_store_end(db, r2, &m2);
			}
			if (r2 != 0 && rv == 0) {
				rv = r2;
				free(msg);
				msg = m2;
				m2 = NULL;
			}
			free(m2);
		}
		if (rv == 0) {
			json_t *a = rounds_json(db, &p, number, now);
			out = json_incref(json_array_get(a, 0));
			json_decref(a);
		}
		pthread_mutex_unlock(&lock);
		if (rv == 0)
			loomi_audit(req->caller, "started round %lld of labeling project %s over %s "
			                         "(task-%lld, %s v%lld)",
			            (long long)number, p.name, data, (long long)job, p.model, (long long)ver);
	}
	json_decref(task);
	json_decref(vinfo);
	json_decref(body);
	project_free(&p);
	answer(res, rv, out, msg, 201);
}

static void
route_next(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3 *db = d->store.db;
	project p;
	json_t *out = NULL;
	char *msg = NULL;
	int64_t id = 0, now;
	int rv;

	if (!project_may(d, req->caller, req->params[0], LOOMI_ACCESS_WRITE, res))
		return;
	pthread_mutex_lock(&lock);
	if ((rv = load_settled(d, req->params[0], &p, &msg)) == 0) {
		now = loomi_wall_ms();
		if ((rv = loomi_store_begin(db, true, &msg)) == 0) {
			rv = lease_next(db, &p, req->caller->name, now, &id, &msg);
			rv = loomi_store_end(db, rv, &msg);
		}
		if (rv == 0 && id)
			out = json_pack("{so}", "item", item_json(db, id, now));
		else if (rv == 0) {
			char *why = why_none(db, &p);
			out = json_pack("{snss}", "item", "why", why);
			free(why);
		}
		project_free(&p);
	}
	pthread_mutex_unlock(&lock);
	answer(res, rv, out, msg, 200);
}

/* The item of the route's first parameter, if the caller may do access to
 * its project: its id and project name (free it), or 0 after an answer. */
static int64_t
item_may(loomi_daemon *d, const loomi_http_req *req, int access, char **project_name,
         loomi_http_res *res)
{
	char *end;
	long long id = strtoll(req->params[0], &end, 10);
	sqlite3_stmt *st;

	*project_name = NULL;
	if (*end == '\0' && id > 0) {
		st = prep(d->store.db, "SELECT p.name FROM label_items i JOIN label_projects p ON p.id "
		                       "= i.project_id WHERE i.id = ?");
		sqlite3_bind_int64(st, 1, id);
		if (st && sqlite3_step(st) == SQLITE_ROW)
			*project_name = loomi_strdup(col_text(st, 0));
		sqlite3_finalize(st);
	}
	if (*project_name == NULL) {
		loomi_api_error(res, 404, "not_found", "there is no labeling item \"%s\"",
		                req->params[0]);
		return 0;
	}
	if (!project_may(d, req->caller, *project_name, access, res)) {
		/* an item of a project the caller may not see is as missing as one
		 * that is not */
		if (res->status == 404) {
			json_decref(res->body);
			res->body = NULL;
			loomi_api_error(res, 404, "not_found", "there is no labeling item \"%s\"",
			                req->params[0]);
		}
		free(*project_name);
		*project_name = NULL;
		return 0;
	}
	return id;
}

static void
route_item(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	char *pname;
	int64_t id = item_may(d, req, LOOMI_ACCESS_READ, &pname, res);
	json_t *out;

	if (id == 0)
		return;
	pthread_mutex_lock(&lock);
	out = item_json(d->store.db, id, loomi_wall_ms());
	pthread_mutex_unlock(&lock);
	free(pname);
	answer(res, out ? 0 : LOOM_ENOENT, out,
	       out ? NULL : loomi_strfmt("there is no labeling item \"%s\"", req->params[0]), 200);
}

/* Does user hold item id's lease (or one that ended without anyone else
 * taking it)?  0, or 409 set in res (LOOM_EEXIST: the caller answers). */
static int
check_lease(sqlite3 *db, int64_t id, const char *user, int64_t now, char **msg)
{
	sqlite3_stmt *st = prep(db, "SELECT state, lease_user, lease_until FROM label_items WHERE "
	                            "id = ?");
	int rv = 0;

	sqlite3_bind_int64(st, 1, id);
	if (!st || sqlite3_step(st) != SQLITE_ROW)
		rv = fail(msg, LOOM_ENOENT, "there is no labeling item %lld", (long long)id);
	else if (strcmp(col_text(st, 0), "done") == 0 || strcmp(col_text(st, 0), "flagged") == 0)
		rv = fail(msg, LOOM_EEXIST, "item %lld is %s already; ask for the next item (loomctl "
		                            "label next, or POST …/next)",
		          (long long)id, strcmp(col_text(st, 0), "done") == 0 ? "decided" : "flagged");
	else if (strcmp(col_text(st, 0), "leased") != 0 || strcmp(col_text(st, 1), user) != 0)
		rv = fail(msg, LOOM_EEXIST,
		          "you do not hold item %lld's lease%s; ask for the next item (loomctl "
		          "label next, or POST …/next)",
		          (long long)id,
		          strcmp(col_text(st, 0), "leased") == 0 && sqlite3_column_int64(st, 2) > now
		              ? " (another reviewer does)"
		              : "");
	sqlite3_finalize(st);
	return rv;
}

static void
route_decision(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3 *db = d->store.db;
	char *pname, *msg = NULL;
	int64_t id = item_may(d, req, LOOMI_ACCESS_WRITE, &pname, res), now, next = 0;
	json_t *body = NULL, *item = NULL, *label = NULL, *out = NULL, *v;
	const json_t *given;
	const char *action = NULL, *note = NULL, *key;
	project p = {0};
	int rv = 0;

	if (id == 0)
		return;
	if ((body = loomi_api_json_body(req, res)) == NULL) {
		free(pname);
		return;
	}
	if (!json_is_object(body))
		rv = fail(&msg, LOOM_EINVAL, "the body must be a JSON object like {\"action\": "
		                             "\"confirm\"}");
	json_object_foreach(body, key, v)
		if (rv == 0 && strcmp(key, "action") && strcmp(key, "label") && strcmp(key, "note"))
			rv = fail(&msg, LOOM_EINVAL, "%s: unknown field; a decision has action, label and "
			                             "note",
			          key);
	action = json_string_value(json_object_get(body, "action"));
	if (rv == 0 && !(action && (strcmp(action, "confirm") == 0 || strcmp(action, "correct") == 0 ||
	                            strcmp(action, "skip") == 0 || strcmp(action, "flag") == 0)))
		rv = fail(&msg, LOOM_EINVAL, "action: expected confirm, correct, skip or flag");
	if (rv == 0 && (v = json_object_get(body, "note")) != NULL) {
		if (!json_is_string(v) || json_string_length(v) > NOTE_MAX_LEN)
			rv = fail(&msg, LOOM_EINVAL, "note: expected text of at most %d bytes",
			          NOTE_MAX_LEN);
		else if ((rv = loomi_name_text_check("note", json_string_value(v), &msg)) == 0)
			note = json_string_value(v);
	}
	given = json_object_get(body, "label");
	pthread_mutex_lock(&lock);
	now = loomi_wall_ms();
	if (rv == 0 && (rv = project_load(db, pname, &p, &msg)) == 0 &&
	    (rv = loomi_store_begin(db, true, &msg)) == 0) {
		if ((rv = check_lease(db, id, req->caller->name, now, &msg)) == 0 &&
		    (item = item_json(db, id, now)) == NULL)
			rv = fail(&msg, LOOM_ENOENT, "there is no labeling item %lld", (long long)id);
		if (rv == 0)
			rv = final_label(json_object_get(item, "prediction"),
			                 json_string_value(json_object_get(item, "task")), action, given,
			                 &label, &msg);
		if (rv == 0) {
			sqlite3_stmt *st = prep(db, "INSERT INTO label_decisions (item_id, user, at, action, "
			                            "predicted, label, note) VALUES (?, ?, ?, ?, ?, ?, ?)");
			char *pred = json_dumps(json_object_get(item, "prediction"),
			                        JSON_COMPACT | JSON_ENCODE_ANY);
			char *ltext = label ? json_dumps(label, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
			sqlite3_bind_int64(st, 1, id);
			sqlite3_bind_text(st, 2, req->caller->name, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 3, now);
			sqlite3_bind_text(st, 4, action, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 5, pred ? pred : "null", -1, SQLITE_TRANSIENT);
			if (ltext)
				sqlite3_bind_text(st, 6, ltext, -1, SQLITE_TRANSIENT);
			else
				sqlite3_bind_null(st, 6);
			if (note)
				sqlite3_bind_text(st, 7, note, -1, SQLITE_STATIC);
			else
				sqlite3_bind_null(st, 7);
			rv = step_done(db, st, &msg, "record the decision");
			free(pred);
			free(ltext);
		}
		if (rv == 0) {
			sqlite3_stmt *st = prep(db, "UPDATE label_items SET state = ?, lease_user = NULL, "
			                            "lease_until = NULL WHERE id = ?");
			sqlite3_bind_text(st, 1,
			                  strcmp(action, "skip") == 0   ? "queued"
			                  : strcmp(action, "flag") == 0 ? "flagged"
			                                                : "done",
			                  -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 2, id);
			rv = step_done(db, st, &msg, "record the decision");
		}
		if (rv == 0)
			rv = lease_next(db, &p, req->caller->name, now, &next, &msg);
		rv = loomi_store_end(db, rv, &msg);
	}
	if (rv == 0) {
		out = json_pack("{soso}", "item", item_json(db, id, now), "next",
		                next ? item_json(db, next, now) : json_null());
		if (next == 0) {
			char *why = why_none(db, &p);
			json_object_set_new(out, "why", json_string(why));
			free(why);
		}
	}
	pthread_mutex_unlock(&lock);
	if (rv == LOOM_EEXIST) {
		loomi_api_error(res, 409, "conflict", "%s", msg);
		free(msg);
		msg = NULL;
	} else {
		answer(res, rv, out, msg, 200);
		out = NULL;
	}
	json_decref(out);
	json_decref(item);
	json_decref(label);
	json_decref(body);
	project_free(&p);
	free(pname);
}

static void
route_release(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3 *db = d->store.db;
	char *pname, *msg = NULL;
	int64_t id = item_may(d, req, LOOMI_ACCESS_WRITE, &pname, res), now;
	json_t *out = NULL;
	int rv;

	if (id == 0)
		return;
	pthread_mutex_lock(&lock);
	now = loomi_wall_ms();
	if ((rv = loomi_store_begin(db, true, &msg)) == 0) {
		if ((rv = check_lease(db, id, req->caller->name, now, &msg)) == 0) {
			sqlite3_stmt *st = prep(db, "UPDATE label_items SET state = 'queued', lease_user = "
			                            "NULL, lease_until = NULL WHERE id = ?");
			sqlite3_bind_int64(st, 1, id);
			rv = step_done(db, st, &msg, "release the item");
		}
		rv = loomi_store_end(db, rv, &msg);
	}
	if (rv == 0)
		out = json_pack("{so}", "item", item_json(db, id, now));
	pthread_mutex_unlock(&lock);
	free(pname);
	if (rv == LOOM_EEXIST) {
		loomi_api_error(res, 409, "conflict", "%s", msg);
		free(msg);
		return;
	}
	answer(res, rv, out, msg, 200);
}

/* ------------------------------------------------------------------ export */

/* A CSV field: quoted when it holds a comma, a quote or a line break; a
 * leading = + - @ or tab (a formula to a spreadsheet) is quoted and
 * disarmed with a ', unless the field is a negative number. */
static void
csv_field(FILE *fp, const char *s)
{
	bool formula = s[0] && strchr("=+-@\t", s[0]) && !(s[0] == '-' && s[1] >= '0' && s[1] <= '9');

	if (!formula && strpbrk(s, ",\"\r\n") == NULL) {
		fputs(s, fp);
		return;
	}
	fputc('"', fp);
	if (formula)
		fputc('\'', fp);
	for (const char *p = s; *p; p++) {
		if (*p == '"')
			fputc('"', fp);
		fputc(*p, fp);
	}
	fputc('"', fp);
}

static void
route_export(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3 *db = d->store.db;
	char *format = loomi_query_get(req->query, "format"), *msg = NULL;
	int64_t round = 0;
	project p;
	json_t *labels = json_array(), *rounds = NULL, *reviewers = json_array(), *out = NULL;
	bool csv;
	int rv;

	if (!project_may(d, req->caller, req->params[0], LOOMI_ACCESS_READ, res) ||
	    !loomi_query_int(res, req->query, "round", 0, 0, INT64_MAX, &round)) {
		free(format);
		json_decref(labels);
		json_decref(reviewers);
		return;
	}
	if (format && strcmp(format, "json") && strcmp(format, "csv")) {
		loomi_api_error(res, 400, "invalid", "format: expected json or csv");
		free(format);
		json_decref(labels);
		json_decref(reviewers);
		return;
	}
	csv = format && strcmp(format, "csv") == 0;
	free(format);
	pthread_mutex_lock(&lock);
	if ((rv = load_settled(d, req->params[0], &p, &msg)) == 0) {
		int64_t now = loomi_wall_ms();
		sqlite3_stmt *st = prep(
			db, "SELECT i.id, i.round, i.rank, i.detail, r.model_version, d.action, d.label, "
			    "d.user, d.at, d.note, d.predicted FROM label_items i JOIN label_rounds r ON "
			    "r.project_id = i.project_id AND r.number = i.round JOIN label_decisions d ON "
			    "d.id = (SELECT max(id) FROM label_decisions e WHERE e.item_id = i.id AND "
			    "e.action IN ('confirm','correct')) WHERE i.project_id = ?1 AND i.state = "
			    "'done' AND (?2 = 0 OR i.round = ?2) ORDER BY i.round, i.rank");
		sqlite3_bind_int64(st, 1, p.id);
		sqlite3_bind_int64(st, 2, round);
		while (st && sqlite3_step(st) == SQLITE_ROW) {
			json_t *det = json_loads(col_text(st, 3), 0, NULL);
			json_t *win = json_object_get(det, "window"), *times = json_object_get(win, "time");
			json_t *label = json_loads(col_text(st, 6), JSON_DECODE_ANY, NULL);
			json_t *pred = json_loads(col_text(st, 10), JSON_DECODE_ANY, NULL);
			json_t *row = json_pack(
				"{sIsIsIsOsIsIsOsIsosossssso*soso}", "item", (json_int_t)sqlite3_column_int64(st, 0),
				"round", (json_int_t)sqlite3_column_int64(st, 1), "rank",
				(json_int_t)sqlite3_column_int64(st, 2), "data",
				json_object_get(det, "data") ? json_object_get(det, "data") : json_null(),
				"first_line", (json_int_t)json_integer_value(json_object_get(win, "first_line")),
				"last_line", (json_int_t)json_integer_value(json_object_get(win, "last_line")),
				"time", json_array_size(times) ? json_array_get(times, json_array_size(times) - 1)
				                               : json_null(),
				"model_version", (json_int_t)sqlite3_column_int64(st, 4), "predicted",
				json_object_get(pred, "label") ? json_incref(json_object_get(pred, "label"))
				: json_object_get(pred, "values")
					? json_incref(json_object_get(pred, "values"))
					: json_pack("{sO*}", "anomalous", json_object_get(pred, "anomalous")),
				"label", label ? label : json_null(), "action", col_text(st, 5), "user",
				col_text(st, 7), "note",
				sqlite3_column_type(st, 9) == SQLITE_NULL ? NULL
				                                          : json_string(col_text(st, 9)),
				"at", iso_time(sqlite3_column_int64(st, 8)), "prediction",
				pred ? pred : json_null());
			bool seen = false;
			for (size_t r = 0; r < json_array_size(reviewers); r++)
				seen |= strcmp(json_string_value(json_array_get(reviewers, r)),
				               col_text(st, 7)) == 0;
			if (!seen)
				json_array_append_new(reviewers, json_string(col_text(st, 7)));
			json_array_append_new(labels, row);
			json_decref(det);
		}
		sqlite3_finalize(st);
		rounds = rounds_json(db, &p, round, now);
		out = json_pack("{sss{ssssssss}sososo}", "format", "loom-labels/1", "project",
		                "name", p.name, "owner", p.owner, "model", p.model, "alias", p.alias,
		                "rounds", rounds, "reviewers", reviewers, "labels", labels);
		json_object_set_new(out, "exported", iso_time(now));
		json_object_set_new(out, "count", json_integer((json_int_t)json_array_size(labels)));
		labels = reviewers = NULL;
		project_free(&p);
	}
	pthread_mutex_unlock(&lock);
	json_decref(labels);
	json_decref(reviewers);
	if (rv != 0 || !csv) {
		if (rv == 0)
			loomi_audit(req->caller, "exported the labels of project %s (json)", req->params[0]);
		answer(res, rv, out, msg, 200);
		return;
	}
	{
		/* one row per label; provenance in the leading comment-free
		 * columns, so a reader needs no second file */
		char *text_out = NULL;
		size_t text_len = 0;
		FILE *fp = open_memstream(&text_out, &text_len);
		const json_t *row;
		size_t i;
		static const char header[] = "item,round,rank,data,first_line,last_line,time,model,"
		                             "model_version,sampler,predicted,label,action,user,at\n";
		const char *sampler = json_string_value(
			json_object_get(json_array_get(json_object_get(out, "rounds"), 0), "sampler"));
		if (fp == NULL) {
			json_decref(out);
			loomi_api_error(res, 500, "internal", "no memory for the export");
			return;
		}
		fputs(header, fp);
		json_array_foreach(json_object_get(out, "labels"), i, row) {
			const json_t *vals[] = {
				json_object_get(row, "item"),       json_object_get(row, "round"),
				json_object_get(row, "rank"),       json_object_get(row, "data"),
				json_object_get(row, "first_line"), json_object_get(row, "last_line"),
				json_object_get(row, "time"),       json_object_get(json_object_get(out, "project"), "model"),
				json_object_get(row, "model_version"), NULL,
				json_object_get(row, "predicted"),  json_object_get(row, "label"),
				json_object_get(row, "action"),     json_object_get(row, "user"),
				json_object_get(row, "at"),
			};
			for (size_t c = 0; c < LOOMI_N(vals); c++) {
				char *text;
				if (c)
					fputc(',', fp);
				if (c == 9) {
					csv_field(fp, sampler ? sampler : "");
					continue;
				}
				text = json_is_string(vals[c]) ? loomi_strdup(json_string_value(vals[c]))
				       : vals[c] == NULL || json_is_null(vals[c])
				           ? loomi_strdup("")
				           : json_dumps(vals[c], JSON_COMPACT | JSON_ENCODE_ANY);
				csv_field(fp, text ? text : "");
				free(text);
			}
			fputc('\n', fp);
		}
		fclose(fp);
		json_decref(out);
		loomi_audit(req->caller, "exported the labels of project %s (csv)", req->params[0]);
		res->status = 200;
		res->text = text_out;
		res->text_len = text_len;
		res->content_type = "text/csv; charset=utf-8";
	}
}

/* ------------------------------------------------------------------ the module */

static const loomi_migration migrations[] = {
	{21, "labeling projects, rounds, items and decisions", migration_sql},
};

static int
init(loomi_daemon *d, char **err)
{
	(void)d;
	(void)err;
	loomi_auth_register_kind("labeling", project_owner);
	return 0;
}

static const loomi_route routes[] = {
	{"GET", "/api/v1/labeling/projects", route_projects, LOOMI_ACCESS_READ, NULL},
	{"POST", "/api/v1/labeling/projects", route_create, LOOMI_ACCESS_WRITE, NULL},
	{"GET", "/api/v1/labeling/projects/{name}", route_project, LOOMI_ACCESS_READ, NULL},
	{"POST", "/api/v1/labeling/projects/{name}/rounds", route_start_round, LOOMI_ACCESS_WRITE,
	 NULL},
	{"GET", "/api/v1/labeling/projects/{name}/rounds/{number}", route_round, LOOMI_ACCESS_READ,
	 NULL},
	{"POST", "/api/v1/labeling/projects/{name}/next", route_next, LOOMI_ACCESS_WRITE, NULL},
	{"GET", "/api/v1/labeling/projects/{name}/export", route_export, LOOMI_ACCESS_READ,
	 "format,round"},
	{"GET", "/api/v1/labeling/items/{id}", route_item, LOOMI_ACCESS_READ, NULL},
	{"POST", "/api/v1/labeling/items/{id}/decision", route_decision, LOOMI_ACCESS_WRITE, NULL},
	{"POST", "/api/v1/labeling/items/{id}/release", route_release, LOOMI_ACCESS_WRITE, NULL},
};

const loomi_module loomi_labeling_module = {
	.name = "labeling",
	.migrations = migrations,
	.n_migrations = LOOMI_N(migrations),
	.init = init,
	.routes = routes,
	.n_routes = LOOMI_N(routes),
};

/* The runs API: runs, metric ingest and history, comparison, best run.
 * See tracking.h for what a run is. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <loom/types.h>

#include "host/core/headline.h"
#include "host/core/util.h"
#include "host/server/api.h"
#include "host/server/module.h"
#include "host/tasks/tasks.h"
#include "metrics-json.h"
#include "tracking-internal.h"
#include "tracking.h"

#define DEFAULT_MAX_POINTS 2000
#define MAX_BATCH_POINTS 10000000

/* "run-12" or "12" → 12; 0 after setting a 404. */
static int64_t
run_param(const char *s, loomi_http_res *res)
{
	const char *d = strncmp(s, "run-", 4) == 0 ? s + 4 : s;
	char *end;
	long long id = *d >= '1' && *d <= '9' ? strtoll(d, &end, 10) : 0;

	if (id <= 0 || *end) {
		loomi_api_error(res, 404, "not_found",
		                "\"%s\" is not a run id; ids look like run-12 (GET /api/v1/runs lists "
		                "them)",
		                s);
		return 0;
	}
	return id;
}

static json_t *
value_json(double v)
{
	if (isfinite(v))
		return json_real(v);
	return json_string(isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity");
}

static json_t *
text_json(sqlite3_stmt *st, int col)
{
	json_t *v = json_loads((const char *)sqlite3_column_text(st, col), 0, NULL);
	return v ? v : json_object();
}

static json_t *
time_json(sqlite3_stmt *st, int col)
{
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return json_null();
	char *t = loomi_iso_time(sqlite3_column_int64(st, col));
	json_t *v = json_string(t);
	free(t);
	return v;
}

#define RUN_COLUMNS                                                                         \
	"id, job_id, attempt, name, user, state, params, lineage, metrics, started_at, ended_at"

/* A run row (RUN_COLUMNS) as JSON; with detail, its tags, artifacts and
 * metric series too. */
static json_t *
run_json(sqlite3 *db, sqlite3_stmt *st, bool detail)
{
	int64_t id = sqlite3_column_int64(st, 0);
	json_t *o = json_object();

	json_object_set_new(o, "id", json_sprintf("run-%lld", (long long)id));
	json_object_set_new(o, "task_id", sqlite3_column_type(st, 1) == SQLITE_NULL
	                                      ? json_null()
	                                      : json_sprintf("task-%lld",
	                                                     (long long)sqlite3_column_int64(st, 1)));
	json_object_set_new(o, "attempt", json_integer(sqlite3_column_int(st, 2)));
	json_object_set_new(o, "name", json_string((const char *)sqlite3_column_text(st, 3)));
	json_object_set_new(o, "user", json_string((const char *)sqlite3_column_text(st, 4)));
	json_object_set_new(o, "state", json_string((const char *)sqlite3_column_text(st, 5)));
	json_object_set_new(o, "started_at", time_json(st, 9));
	json_object_set_new(o, "ended_at", time_json(st, 10));
	json_object_set_new(o, "metrics", text_json(st, 8));
	loomi_display_attach(o);
	if (!detail) {
		json_object_del(o, "details");
		return o;
	}
	json_object_set_new(o, "params", text_json(st, 6));
	json_object_set_new(o, "lineage", text_json(st, 7));

	sqlite3_stmt *q = NULL;
	json_t *tags = json_object(), *arts = json_array(), *series = json_array();
	if (sqlite3_prepare_v2(db, "SELECT key, value FROM run_tags WHERE run_id = ? ORDER BY key",
	                       -1, &q, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(q, 1, id);
		while (sqlite3_step(q) == SQLITE_ROW)
			json_object_set_new(tags, (const char *)sqlite3_column_text(q, 0),
			                    json_string((const char *)sqlite3_column_text(q, 1)));
	}
	sqlite3_finalize(q);
	if (sqlite3_prepare_v2(db, "SELECT name, ref, sha256, bytes FROM run_artifacts"
	                           " WHERE run_id = ? ORDER BY name",
	                       -1, &q, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(q, 1, id);
		while (sqlite3_step(q) == SQLITE_ROW)
			json_array_append_new(
				arts, json_pack("{s:s, s:s, s:s, s:I}", "name", sqlite3_column_text(q, 0), "ref",
			                    sqlite3_column_text(q, 1), "sha256", sqlite3_column_text(q, 2),
			                    "bytes", (json_int_t)sqlite3_column_int64(q, 3)));
	}
	sqlite3_finalize(q);
	if (sqlite3_prepare_v2(db, "SELECT name, n, last_step, last, min, max FROM metric_series"
	                           " WHERE run_id = ? ORDER BY name",
	                       -1, &q, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(q, 1, id);
		while (sqlite3_step(q) == SQLITE_ROW) {
			json_t *m = json_pack("{s:s, s:I}", "name", sqlite3_column_text(q, 0), "points",
			                      (json_int_t)sqlite3_column_int64(q, 1));
			static const char *const keys[] = {"last_step", "last", "min", "max"};
			for (int k = 0; k < 4; k++) {
				int c = 2 + k;
				json_object_set_new(m, keys[k],
				                    sqlite3_column_type(q, c) == SQLITE_NULL ? json_null()
				                    : k == 0 ? json_integer(sqlite3_column_int64(q, c))
				                             : json_real(sqlite3_column_double(q, c)));
			}
			json_array_append_new(series, m);
		}
	}
	sqlite3_finalize(q);
	json_object_set_new(o, "tags", tags);
	json_object_set_new(o, "artifacts", arts);
	json_object_set_new(o, "series", series);
	return o;
}

/* The run with id as JSON, or NULL. */
static json_t *
run_get(int64_t id, bool detail)
{
	sqlite3 *db = loomi_tracking_db();
	sqlite3_stmt *st = NULL;
	json_t *o = NULL;

	if (sqlite3_prepare_v2(db, "SELECT " RUN_COLUMNS " FROM runs WHERE id = ?", -1, &st, NULL) ==
	    SQLITE_OK) {
		sqlite3_bind_int64(st, 1, id);
		if (sqlite3_step(st) == SQLITE_ROW)
			o = run_json(db, st, detail);
	}
	sqlite3_finalize(st);
	return o;
}

static void
no_run(loomi_http_res *res, const char *given)
{
	loomi_api_error(res, 404, "not_found",
	                "no run %s; GET /api/v1/runs lists the runs (a task's runs: "
	                "GET /api/v1/runs?task=ID)",
	                given);
}

/* ------------------------------------------------------------------ who sees a run */

/* The owner and task of run (job 0: none); false when there is none.
 * A run made a moment ago may still be queued: then the queue is drained
 * and the run looked up again. */
static bool
run_owner(int64_t run, char **owner, int64_t *job)
{
	sqlite3 *db = loomi_tracking_db();

	for (int pass = 0; pass < 2; pass++) {
		sqlite3_stmt *st = NULL;
		bool found = false;
		if (sqlite3_prepare_v2(db, "SELECT user, job_id FROM runs WHERE id = ?", -1, &st,
		                       NULL) == SQLITE_OK) {
			sqlite3_bind_int64(st, 1, run);
			if (sqlite3_step(st) == SQLITE_ROW) {
				*owner = loomi_strdup((const char *)sqlite3_column_text(st, 0));
				*job = sqlite3_column_int64(st, 1);
				found = true;
			}
		}
		sqlite3_finalize(st);
		if (found)
			return true;
		if (pass > 0 || !loomi_tracking_run_known(run))
			break;
		loomi_tracking_flush();
	}
	return false;
}

int
loomi_tracking_run_owner(loomi_daemon *d, const char *id, char **owner,
                         char canon[LOOMI_OBJECT_ID_MAX])
{
	const char *p = strncmp(id, "run-", 4) == 0 ? id + 4 : id;
	char *end;
	long long run = *p >= '1' && *p <= '9' ? strtoll(p, &end, 10) : 0;
	int64_t job;

	(void)d;
	if (run <= 0 || *end || !run_owner(run, owner, &job))
		return LOOM_ENOENT;
	snprintf(canon, LOOMI_OBJECT_ID_MAX, "run-%lld", run);
	return 0;
}

/* 0 allowed, 404 not visible, 403 visible only. */
static int
access_of(loomi_daemon *d, const loomi_caller *c, int64_t run, const char *owner, int64_t job,
          int access)
{
	char rid[32], tid[32];

	snprintf(rid, sizeof rid, "run-%lld", (long long)run);
	snprintf(tid, sizeof tid, "task-%lld", (long long)job);
	/* as the run, or through its task */
	if (loomi_auth_may(d, c, "run", rid, owner, access) ||
	    (job > 0 && loomi_auth_may(d, c, "task", tid, owner, access)))
		return 0;
	if (access > LOOMI_ACCESS_READ &&
	    (loomi_auth_may(d, c, "run", rid, owner, LOOMI_ACCESS_READ) ||
	     (job > 0 && loomi_auth_may(d, c, "task", tid, owner, LOOMI_ACCESS_READ))))
		return 403;
	return 404;
}

int
loomi_tracking_run_access(loomi_daemon *d, const loomi_caller *c, int64_t run, int access)
{
	char *owner = NULL;
	int64_t job = 0;
	int rv;

	if (!run_owner(run, &owner, &job))
		return 404;
	rv = access_of(d, c, run, owner, job, access);
	free(owner);
	return rv;
}

/* The run of a route's first parameter if the caller may do access to it:
 * its id, or 0 after setting the answer (404 for a run it may not see, 403
 * for one it may only read). */
static int64_t
run_param_may(loomi_daemon *d, const loomi_http_req *req, int access, loomi_http_res *res)
{
	int64_t id = run_param(req->params[0], res);
	char *owner = NULL;
	int64_t job = 0;

	if (id == 0)
		return 0;
	if (!run_owner(id, &owner, &job)) {
		no_run(res, req->params[0]);
		return 0;
	}
	switch (access_of(d, req->caller, id, owner, job, access)) {
	case 0:
		break;
	case 403:
		loomi_audit(req->caller, "refused a change of run-%lld (owned by %s)", (long long)id,
		            owner);
		loomi_api_error(res, 403, "forbidden",
		                "run-%lld belongs to %s and is shared with %s for reading only; its "
		                "owner or an admin can share it (or its task) for writing",
		                (long long)id, owner, req->caller->name);
		id = 0;
		break;
	default:
		no_run(res, req->params[0]);
		id = 0;
	}
	free(owner);
	return id;
}

/* The SQL condition for the runs who may see (binds ?901, ?902: auth.h);
 * free it. */
static char *
visible_sql(void)
{
	char *run = loomi_auth_visible_sql("run", "('run-' || runs.id)", "runs.user");
	char *task = loomi_auth_visible_sql("task", "('task-' || runs.job_id)", "runs.user");
	char *both = loomi_strfmt("(%s OR (runs.job_id IS NOT NULL AND %s))", run, task);

	free(run);
	free(task);
	return both;
}

/* ------------------------------------------------------------------ runs */

/* Tags: non-empty keys of at most 200 bytes with string values, neither
 * holding control or bidi characters; NULL, or what is wrong (free it).
 * path prefixes the key in messages ("tags." in a run's body). */
static char *
tags_check(const json_t *tags, const char *path)
{
	const char *key;
	json_t *v;
	char *bad = NULL;

	json_object_foreach((json_t *)tags, key, v) {
		char *k;
		if (loomi_name_text_check(*path ? "tags (a key)" : "a tag's key", key, &bad) != 0)
			return bad;
		if (!json_is_string(v) || *key == '\0' || strlen(key) > 200)
			return loomi_strfmt("%s%s: a tag is a non-empty key of at most 200 bytes with a "
			                    "string value",
			                    path, key);
		k = loomi_strfmt("%s%s", path, key);
		loomi_name_text_check(k, json_string_value(v), &bad);
		free(k);
		if (bad)
			return bad;
	}
	return NULL;
}

static void
route_runs_create(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *body = loomi_api_json_body(req, res), *params, *tags, *v;
	const char *name, *key;
	char *ptext, *bad = NULL;
	int64_t id;

	(void)d;
	if (body == NULL)
		return;
	name = json_string_value(json_object_get(body, "name"));
	params = json_object_get(body, "params");
	tags = json_object_get(body, "tags");
	if (!json_is_object(body) || name == NULL || *name == '\0' || strlen(name) > 200) {
		loomi_api_error(res, 400, "invalid",
		                "name: give the run a name of 1 to 200 characters "
		                "({\"name\": \"my-experiment\", \"params\": {...}})");
	} else if (params && !json_is_object(params)) {
		loomi_api_error(res, 400, "invalid", "params: must be an object of settings");
	} else if (tags && !json_is_object(tags)) {
		loomi_api_error(res, 400, "invalid", "tags: must be an object of strings");
	} else if (loomi_name_text_check("name", name, &bad) != 0) {
		loomi_api_error(res, 400, "invalid", "%s", bad);
		free(bad);
	} else {
		if (tags && (bad = tags_check(tags, "tags.")) != NULL) {
			loomi_api_error(res, 400, "invalid", "%s", bad);
			free(bad);
			json_decref(body);
			return;
		}
		ptext = json_dumps(params ? params : json_object(), JSON_COMPACT);
		id = loomi_tracking_api_run(name, req->caller->name, ptext);
		free(ptext);
		json_object_foreach(tags, key, v)
			loomi_tracking_api_tag(id, key, json_string_value(v));
		loomi_tracking_flush();
		res->status = 201;
		res->body = run_get(id, true);
		if (res->body == NULL)
			loomi_api_error(res, 500, "internal", "the run could not be stored; see loomd's log");
	}
	json_decref(body);
}

static void
route_runs_list(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3 *db = loomi_tracking_db();
	sqlite3_stmt *st = NULL;
	char *task = loomi_query_get(req->query, "task"), *name = loomi_query_get(req->query, "name"),
	     *state = loomi_query_get(req->query, "state");
	int64_t limit, offset, job = 0;
	char *vis = visible_sql(), *sql;
	json_t *list;
	int rc;

	(void)d;
	if (!loomi_query_int(res, req->query, "limit", 50, 1, 1000, &limit) ||
	    !loomi_query_int(res, req->query, "offset", 0, 0, INT64_MAX / 2, &offset))
		goto out;
	if (task && (job = loomi_job_id_parse(task)) <= 0) {
		loomi_api_error(res, 400, "bad_request", "task: \"%s\" is not a task id (task-12)",
		                task);
		goto out;
	}
	loomi_tracking_flush();
	sql = loomi_strfmt("SELECT " RUN_COLUMNS " FROM runs WHERE (?1 = 0 OR job_id = ?1)"
	                   " AND (?2 IS NULL OR name = ?2) AND (?3 IS NULL OR state = ?3) AND %s"
	                   " ORDER BY id DESC LIMIT ?4 OFFSET ?5",
	                   vis);
	rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	free(sql);
	if (rc != SQLITE_OK) {
		loomi_api_error(res, 500, "internal", "cannot list runs: %s", sqlite3_errmsg(db));
		goto out;
	}
	loomi_auth_bind(st, req->caller);
	sqlite3_bind_int64(st, 1, job);
	if (name)
		sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	if (state)
		sqlite3_bind_text(st, 3, state, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, limit);
	sqlite3_bind_int64(st, 5, offset);
	list = json_array();
	while (sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(list, run_json(db, st, false));
	sqlite3_finalize(st);
	res->status = 200;
	res->body = json_pack("{s:o, s:I, s:I}", "runs", list, "limit", (json_int_t)limit, "offset",
	                      (json_int_t)offset);
out:
	free(vis);
	free(task);
	free(name);
	free(state);
}

static void
route_run_get(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	int64_t id = run_param_may(d, req, LOOMI_ACCESS_READ, res);

	if (id == 0)
		return;
	loomi_tracking_flush();
	if ((res->body = run_get(id, true)) == NULL)
		no_run(res, req->params[0]);
	else
		res->status = 200;
}

static void
route_run_end(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	int64_t id = run_param_may(d, req, LOOMI_ACCESS_WRITE, res);
	json_t *body, *run;
	const char *state;

	if (id == 0 || (body = loomi_api_json_body(req, res)) == NULL)
		return;
	state = json_string_value(json_object_get(body, "state"));
	if (state == NULL)
		state = "completed";
	loomi_tracking_flush();
	if ((run = run_get(id, false)) == NULL) {
		no_run(res, req->params[0]);
	} else if (!json_is_null(json_object_get(run, "task_id"))) {
		loomi_api_error(res, 409, "conflict",
		                "%s belongs to %s; it ends with its task (cancel the task instead)",
		                req->params[0], json_string_value(json_object_get(run, "task_id")));
	} else if (strcmp(state, "completed") && strcmp(state, "failed") &&
	           strcmp(state, "cancelled") && strcmp(state, "paused") &&
	           strcmp(state, "running")) {
		loomi_api_error(res, 400, "invalid",
		                "state: \"%s\" is not one of completed, failed, cancelled, paused, running",
		                state);
	} else {
		loomi_tracking_api_state(id, state);
		loomi_tracking_flush();
		res->status = 200;
		res->body = run_get(id, true);
	}
	json_decref(run);
	json_decref(body);
}

static void
route_run_tags(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	int64_t id = run_param_may(d, req, LOOMI_ACCESS_WRITE, res);
	json_t *body, *run, *v;
	const char *key;
	char *bad;

	if (id == 0 || (body = loomi_api_json_body(req, res)) == NULL)
		return;
	loomi_tracking_flush();
	if ((run = run_get(id, false)) == NULL) {
		no_run(res, req->params[0]);
		goto out;
	}
	if (!json_is_object(body)) {
		loomi_api_error(res, 400, "invalid", "the body must be an object of tags: {\"k\": \"v\"}");
		goto out;
	}
	if ((bad = tags_check(body, "")) != NULL) {
		loomi_api_error(res, 400, "invalid", "%s", bad);
		free(bad);
		goto out;
	}
	json_object_foreach(body, key, v)
		loomi_tracking_api_tag(id, key, json_string_value(v));
	loomi_tracking_flush();
	res->status = 200;
	res->body = run_get(id, true);
out:
	json_decref(run);
	json_decref(body);
}

/* ------------------------------------------------------------------ metric ingest */

static const char *
scope_name(uint32_t s)
{
	return s == LOOM_METRIC_EPOCH ? "epoch" : s == LOOM_METRIC_FINAL ? "final" : "step";
}

static bool
scope_parse(const json_t *v, uint32_t *out)
{
	const char *s = json_string_value(v);
	if (v == NULL) {
		*out = LOOM_METRIC_STEP;
		return true;
	}
	for (uint32_t k = 0; k < 3 && s; k++) {
		if (strcmp(s, scope_name(k)) == 0) {
			*out = k;
			return true;
		}
	}
	return false;
}

/* {"name", "steps": [...], "values": [...], "epochs"?, "wall_ms"?, "scope"?} */
static char *
parse_series(const json_t *s, size_t i, int64_t now, loomi_metric_batch *b)
{
	const char *name = json_string_value(json_object_get(s, "name"));
	json_t *steps = json_object_get(s, "steps"), *values = json_object_get(s, "values");
	json_t *epochs = json_object_get(s, "epochs"), *wall = json_object_get(s, "wall_ms");
	size_t n = json_array_size(steps);
	uint32_t scope;
	tk_point *pts;

	if (name == NULL || !loomi_tracking_name_ok(name))
		return loomi_strfmt("metrics[%zu].name: %s%s%s is not a metric name; use 1 to 200 "
		                    "letters, digits and _ - . / :",
		                    i, name ? "\"" : "", name ? name : "a missing name", name ? "\"" : "");
	if (!json_is_array(steps) || !json_is_array(values) || json_array_size(values) != n)
		return loomi_strfmt("metrics[%zu] (%s): give \"steps\" and \"values\" as arrays of the "
		                    "same length",
		                    i, name);
	if ((epochs && (!json_is_array(epochs) || json_array_size(epochs) != n)) ||
	    (wall && (!json_is_array(wall) || json_array_size(wall) != n)))
		return loomi_strfmt("metrics[%zu] (%s): \"epochs\" and \"wall_ms\", when given, are "
		                    "arrays as long as \"steps\"",
		                    i, name);
	if (!scope_parse(json_object_get(s, "scope"), &scope))
		return loomi_strfmt("metrics[%zu].scope: must be \"step\", \"epoch\" or \"final\"", i);
	if (n == 0)
		return NULL;
	pts = loomi_xmalloc(n * sizeof *pts);
	for (size_t k = 0; k < n; k++) {
		json_t *st = json_array_get(steps, k);
		double v;
		if (!json_is_integer(st) || json_integer_value(st) < 0) {
			free(pts);
			return loomi_strfmt("metrics[%zu].steps[%zu]: a step is a whole number >= 0", i, k);
		}
		if (loomi_tracking_value(json_array_get(values, k), &v) != 0) {
			free(pts);
			return loomi_strfmt("metrics[%zu].values[%zu]: not a number; use a number or \"NaN\", "
			                    "\"Infinity\", \"-Infinity\"",
			                    i, k);
		}
		pts[k] = (tk_point){
			.step = json_integer_value(st),
			.value = v,
			.scope = scope,
			.epoch = epochs ? (int32_t)json_integer_value(json_array_get(epochs, k)) : 0,
			.wall_ms = wall ? json_integer_value(json_array_get(wall, k)) : now,
		};
	}
	loomi_metric_batch_add(b, name, pts, n);
	return NULL;
}

/* {"name", "step", "value", "epoch"?, "wall_ms"?, "scope"?} — grouped by name */
static char *
parse_points(const json_t *list, int64_t now, loomi_metric_batch *b)
{
	size_t n = json_array_size(list), i;

	for (i = 0; i < n;) {
		const char *name = json_string_value(json_object_get(json_array_get(list, i), "name"));
		size_t k = i;
		if (name == NULL || !loomi_tracking_name_ok(name))
			return loomi_strfmt("points[%zu].name: not a metric name; use 1 to 200 letters, "
			                    "digits and _ - . / :",
			                    i);
		while (k < n && json_string_value(json_object_get(json_array_get(list, k), "name")) &&
		       strcmp(json_string_value(json_object_get(json_array_get(list, k), "name")),
		              name) == 0)
			k++;
		tk_point *pts = loomi_xmalloc((k - i) * sizeof *pts);
		for (size_t j = i; j < k; j++) {
			json_t *p = json_array_get(list, j), *st = json_object_get(p, "step");
			json_t *wall = json_object_get(p, "wall_ms");
			double v;
			uint32_t scope;
			if (!json_is_integer(st) || json_integer_value(st) < 0 ||
			    loomi_tracking_value(json_object_get(p, "value"), &v) != 0 ||
			    !scope_parse(json_object_get(p, "scope"), &scope)) {
				free(pts);
				return loomi_strfmt("points[%zu] (%s): give \"step\" (a whole number >= 0) and "
				                    "\"value\" (a number, \"NaN\", \"Infinity\" or "
				                    "\"-Infinity\"); \"scope\" is step, epoch or final",
				                    j, name);
			}
			pts[j - i] = (tk_point){
				.step = json_integer_value(st),
				.value = v,
				.scope = scope,
				.epoch = (int32_t)json_integer_value(json_object_get(p, "epoch")),
				.wall_ms = json_is_integer(wall) ? json_integer_value(wall) : now,
			};
		}
		loomi_metric_batch_add(b, name, pts, k - i);
		i = k;
	}
	return NULL;
}

static void
route_run_metrics_post(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	int64_t id = run_param_may(d, req, LOOMI_ACCESS_WRITE, res), now = loomi_wall_ms();
	json_t *body, *metrics, *points, *s;
	loomi_metric_batch b = {0};
	char *why = NULL;
	size_t i;

	if (id == 0)
		return;
	/* the columnar form straight into arrays; anything else through jansson */
	if (loomi_metrics_json_fast(req->body, req->body_len, now, &b))
		goto parsed;
	if ((body = loomi_api_json_body(req, res)) == NULL)
		return;
	metrics = json_object_get(body, "metrics");
	points = json_object_get(body, "points");
	if (!json_is_object(body) || (metrics == NULL && points == NULL) ||
	    (metrics && !json_is_array(metrics)) || (points && !json_is_array(points))) {
		loomi_api_error(res, 400, "invalid",
		                "give {\"metrics\": [{\"name\": \"loss\", \"steps\": [1, 2], "
		                "\"values\": [0.9, 0.8]}]} and/or {\"points\": [{\"name\": \"loss\", "
		                "\"step\": 1, \"value\": 0.9}]}");
		json_decref(body);
		return;
	}
	json_array_foreach(metrics, i, s) {
		if ((why = parse_series(s, i, now, &b)) != NULL)
			break;
	}
	if (why == NULL && points)
		why = parse_points(points, now, &b);
	json_decref(body);
parsed:
	if (why == NULL && b.total > MAX_BATCH_POINTS)
		why = loomi_strfmt("%zu points in one request; send at most %d", b.total,
		                   MAX_BATCH_POINTS);
	if (why) {
		loomi_api_error(res, 400, "invalid", "%s (nothing of this request was stored)", why);
		free(why);
		loomi_metric_batch_free(&b);
		return;
	}
	if (!loomi_tracking_run_known(id)) {
		no_run(res, req->params[0]);
		loomi_metric_batch_free(&b);
		return;
	}
	for (i = 0; i < b.count; i++) {
		if (loomi_tracking_api_points(id, b.names[i], b.pts[i], b.n[i]) != 0) {
			/* the queue is full: what was queued stays, the rest is refused */
			size_t kept = 0;
			for (size_t k = 0; k < i; k++)
				kept += b.n[k];
			loomi_api_error(res, 503, "busy",
			                "loomd is storing many points; %zu of %zu points were accepted, send "
			                "the series from metrics[%zu] again in a moment",
			                kept, b.total, i);
			for (size_t k = 0; k < i; k++)
				b.pts[k] = NULL; /* taken by the queue */
			loomi_metric_batch_free(&b);
			return;
		}
		b.pts[i] = NULL;
	}
	res->status = 202;
	res->body = json_pack("{s:o, s:I}", "run_id", json_sprintf("run-%lld", (long long)id),
	                      "accepted", (json_int_t)b.total);
	loomi_metric_batch_free(&b);
}

/* ------------------------------------------------------------------ metric history */

static void
history(int64_t run, const loomi_http_req *req, loomi_http_res *res)
{
	char *name = loomi_query_get(req->query, "name");
	int64_t from, to, max;
	tk_point *kept = NULL;
	size_t n = 0, m;
	json_t *o, *steps, *values, *epochs, *wall;
	int rv;

	if (!loomi_query_int(res, req->query, "from_step", 0, 0, INT64_MAX, &from) ||
	    !loomi_query_int(res, req->query, "to_step", INT64_MAX, 0, INT64_MAX, &to) ||
	    !loomi_query_int(res, req->query, "max_points", DEFAULT_MAX_POINTS, 4, 1000000, &max))
		goto out;
	loomi_tracking_flush();
	if (name == NULL) {
		/* which metrics the run has */
		json_t *r = run_get(run, true);
		if (r == NULL) {
			loomi_api_error(res, 404, "not_found", "no run-%lld", (long long)run);
			goto out;
		}
		res->status = 200;
		res->body = json_pack("{s:O, s:O, s:O}", "run_id", json_object_get(r, "id"), "task_id",
		                      json_object_get(r, "task_id"), "metrics",
		                      json_object_get(r, "series"));
		json_decref(r);
		goto out;
	}
	if (!loomi_tracking_name_ok(name)) {
		loomi_api_error(res, 400, "bad_request",
		                "name: \"%s\" is not a metric name (letters, digits and _ - . / :)", name);
		goto out;
	}
	rv = loomi_tracking_history(loomi_tracking_db(), run, name, from, to, (size_t)max, &kept, &m,
	                            &n);
	if (rv == LOOM_ENOENT) {
		json_t *r = run_get(run, true);
		loomi_api_error(res, 404, "not_found",
		                r ? "run-%lld has no metric \"%s\"; GET …/metrics without name lists "
		                    "its metrics"
		                  : "no run-%lld (metric \"%s\")",
		                (long long)run, name);
		json_decref(r);
		goto out;
	}
	if (rv != 0) {
		loomi_api_error(res, 500, "internal",
		                "the stored points of \"%s\" in run-%lld cannot be read (%s)", name,
		                (long long)run, loom_strerror(rv));
		goto out;
	}
	steps = json_array();
	values = json_array();
	epochs = json_array();
	wall = json_array();
	for (size_t i = 0; i < m; i++) {
		json_array_append_new(steps, json_integer(kept[i].step));
		json_array_append_new(values, value_json(kept[i].value));
		json_array_append_new(epochs, json_integer(kept[i].epoch));
		json_array_append_new(wall, json_integer(kept[i].wall_ms));
	}
	o = json_pack("{s:o, s:s, s:I, s:I, s:b}", "run_id", json_sprintf("run-%lld", (long long)run),
	              "name", name, "total", (json_int_t)n, "returned", (json_int_t)m, "downsampled",
	              m < n);
	json_object_set_new(o, "steps", steps);
	json_object_set_new(o, "values", values);
	json_object_set_new(o, "epochs", epochs);
	json_object_set_new(o, "wall_ms", wall);
	res->status = 200;
	res->body = o;
out:
	free(kept);
	free(name);
}

static void
route_run_metrics_get(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	int64_t id = run_param_may(d, req, LOOMI_ACCESS_READ, res);

	if (id != 0)
		history(id, req, res);
}

static void
route_task_metrics_get(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	int64_t job = loomi_jobs_param_task(d, req, LOOMI_ACCESS_READ, res), run;
	json_t *task;

	if (job <= 0)
		return;
	if ((task = loomi_jobs_get(d, job)) == NULL) {
		loomi_api_error(res, 404, "not_found", "no task %s (GET /api/v1/training/tasks lists them)",
		                req->params[0]);
		return;
	}
	json_decref(task);
	if ((run = loomi_tracking_run_of_job(job)) == 0) {
		loomi_api_error(res, 404, "not_found",
		                "%s has no run yet: it has not started (its metrics come once it runs)",
		                req->params[0]);
		return;
	}
	history(run, req, res);
	if (res->status == 200)
		json_object_set_new(res->body, "task_id", json_sprintf("task-%lld", (long long)job));
}

/* ------------------------------------------------------------------ comparing */

/* Higher is better for these metrics; lower for the rest (losses, errors). */
bool
loomi_metric_higher_better(const char *name)
{
	static const char *const up[] = {"accuracy", "f1", "r2", "precision", "recall", "auc"};
	for (size_t i = 0; i < sizeof up / sizeof up[0]; i++) {
		if (strstr(name, up[i]))
			return true;
	}
	return false;
}

static void
flatten(const json_t *v, const char *prefix, json_t *out)
{
	const char *key;
	json_t *x;

	if (!json_is_object(v)) {
		json_object_set(out, prefix, (json_t *)v);
		return;
	}
	json_object_foreach((json_t *)v, key, x) {
		char *k = *prefix ? loomi_strfmt("%s.%s", prefix, key) : loomi_strdup(key);
		flatten(x, k, out);
		free(k);
	}
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* ids: "run-1,run-2" or "1,2"; ≥ 2, ≤ 20. */
static json_t *
runs_of(loomi_daemon *d, const loomi_caller *c, const char *ids, loomi_http_res *res)
{
	json_t *runs = json_array();
	char *copy = loomi_strdup(ids ? ids : ""), *save = NULL;

	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int64_t id = run_param(t, res);
		json_t *r;
		if (id == 0)
			goto fail;
		/* one the caller may not see is as missing as one that is not */
		if (loomi_tracking_run_access(d, c, id, LOOMI_ACCESS_READ) != 0 ||
		    (r = run_get(id, true)) == NULL) {
			no_run(res, t);
			goto fail;
		}
		json_array_append_new(runs, r);
	}
	if (json_array_size(runs) < 2 || json_array_size(runs) > 20) {
		loomi_api_error(res, 400, "bad_request",
		                "ids: give 2 to 20 run ids separated by commas (ids=run-1,run-2)");
		goto fail;
	}
	free(copy);
	return runs;
fail:
	free(copy);
	json_decref(runs);
	return NULL;
}

static void
route_runs_compare(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	char *ids = loomi_query_get(req->query, "ids");
	json_t *runs, *flat, *keys, *params, *metrics, *names, *r;
	const char *key;
	size_t i;

	loomi_tracking_flush();
	if ((runs = runs_of(d, req->caller, ids, res)) == NULL) {
		free(ids);
		return;
	}
	free(ids);
	/* every key any run has, in first-seen order; the metrics' headline
	 * ones first (the runs' headlines, in their order), then the rest by
	 * name */
	flat = json_array();
	keys = json_object();
	names = json_object();
	json_t *headline = json_array(), *rest = json_object();
	json_array_foreach(runs, i, r) {
		json_t *f = json_object(), *v;
		size_t k;
		flatten(json_object_get(r, "params"), "", f);
		json_array_append_new(flat, f);
		json_object_foreach(f, key, v)
			json_object_set_new(keys, key, json_true());
		json_array_foreach(json_object_get(r, "headline"), k, v) {
			if (json_object_get(names, json_string_value(v)) == NULL) {
				json_object_set_new(names, json_string_value(v), json_true());
				json_array_append(headline, v);
			}
		}
		json_object_foreach(json_object_get(r, "metrics"), key, v)
			json_object_set_new(rest, key, json_true());
	}
	{
		size_t n = 0, k = 0;
		const char **sorted = loomi_xcalloc(json_object_size(rest) + 1, sizeof *sorted);
		json_t *v;
		json_object_foreach(rest, key, v)
			sorted[n++] = key;
		qsort(sorted, n, sizeof *sorted, by_name);
		for (k = 0; k < n; k++)
			if (json_object_get(names, sorted[k]) == NULL)
				json_object_set_new(names, sorted[k], json_false());
		free(sorted);
	}
	params = json_array();
	json_object_foreach(keys, key, r) {
		json_t *vals = json_array(), *first = NULL, *f;
		bool differs = false;
		size_t k;
		json_array_foreach(flat, k, f) {
			json_t *v = json_object_get(f, key);
			json_array_append(vals, v ? v : json_null());
			if (k == 0)
				first = v;
			else if (!(first == NULL ? v == NULL : v != NULL && json_equal(first, v)))
				differs = true;
		}
		json_array_append_new(params, json_pack("{s:s, s:o, s:b}", "key", key, "values", vals,
		                                        "differs", differs));
	}
	metrics = json_array();
	json_object_foreach(names, key, r) {
		json_t *vals = json_array(), *run;
		bool up = loomi_metric_higher_better(key);
		const char *best = NULL;
		double bv = 0;
		size_t k;
		json_array_foreach(runs, k, run) {
			json_t *v = json_object_get(json_object_get(run, "metrics"), key);
			json_array_append(vals, v ? v : json_null());
			if (json_is_number(v) &&
			    (best == NULL || (up ? json_number_value(v) > bv : json_number_value(v) < bv))) {
				best = json_string_value(json_object_get(run, "id"));
				bv = json_number_value(v);
			}
		}
		json_array_append_new(metrics,
		                      json_pack("{s:s, s:o, s:s, s:s?, s:O}", "name", key, "values", vals,
		                                "better", up ? "higher" : "lower", "best", best,
		                                "headline", r));
	}
	json_t *heads = json_array();
	json_array_foreach(runs, i, r)
		json_array_append_new(heads, json_pack("{s:O, s:O, s:O, s:O}", "id",
		                                       json_object_get(r, "id"), "name",
		                                       json_object_get(r, "name"), "state",
		                                       json_object_get(r, "state"), "task_id",
		                                       json_object_get(r, "task_id")));
	res->status = 200;
	res->body = json_pack("{s:o, s:o, s:o, s:o}", "runs", heads, "params", params, "headline",
	                      headline, "metrics", metrics);
	json_decref(rest);
	json_decref(flat);
	json_decref(keys);
	json_decref(names);
	json_decref(runs);
}

static void
route_runs_best(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	char *metric = loomi_query_get(req->query, "metric"), *mode = loomi_query_get(req->query, "mode");
	char *name = loomi_query_get(req->query, "name"), *state = loomi_query_get(req->query, "state");
	sqlite3 *db = loomi_tracking_db();
	sqlite3_stmt *st = NULL;
	bool up;
	char *sql = NULL, *vis, path[300];

	(void)d;
	if (metric == NULL || !loomi_tracking_name_ok(metric)) {
		loomi_api_error(res, 400, "bad_request",
		                "metric: give the metric to rank by (metric=val_loss)");
		goto out;
	}
	if (mode && strcmp(mode, "min") && strcmp(mode, "max")) {
		loomi_api_error(res, 400, "bad_request", "mode: \"%s\" is not min or max", mode);
		goto out;
	}
	up = mode ? strcmp(mode, "max") == 0 : loomi_metric_higher_better(metric);
	snprintf(path, sizeof path, "$.\"%s\"", metric);
	loomi_tracking_flush();
	vis = visible_sql();
	sql = loomi_strfmt("SELECT " RUN_COLUMNS ", json_extract(metrics, ?1) AS v FROM runs"
	                   " WHERE v IS NOT NULL AND (?2 IS NULL OR name = ?2)"
	                   " AND (?3 IS NULL OR state = ?3) AND %s ORDER BY v %s, id LIMIT 1",
	                   vis, up ? "DESC" : "ASC");
	free(vis);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		loomi_api_error(res, 500, "internal", "cannot rank runs: %s", sqlite3_errmsg(db));
		goto out;
	}
	sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
	loomi_auth_bind(st, req->caller);
	if (name)
		sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	if (state)
		sqlite3_bind_text(st, 3, state, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		res->status = 200;
		res->body = json_pack("{s:o, s:s, s:s, s:f}", "run", run_json(db, st, true), "metric",
		                      metric, "mode", up ? "max" : "min", "value",
		                      sqlite3_column_double(st, 11));
	} else {
		loomi_api_error(res, 404, "not_found", "no run%s%s%s has a metric \"%s\"",
		                name ? " named \"" : "", name ? name : "", name ? "\"" : "", metric);
	}
	sqlite3_finalize(st);
out:
	free(sql);
	free(metric);
	free(mode);
	free(name);
	free(state);
}

/* ------------------------------------------------------------------ the module */

static void
on_job_attach(loomi_daemon *d, const loomi_event *ev)
{
	(void)d;
	loomi_tracking_run_begin(ev->job, ev->u.attach.attempt, ev->u.attach.name, ev->u.attach.user,
	                         ev->u.attach.spec);
}

static void
on_job_points(loomi_daemon *d, const loomi_event *ev)
{
	(void)d;
	loomi_tracking_worker_points(ev->job, ev->u.points.attempt, ev->u.points.points);
}

static void
on_job_state(loomi_daemon *d, const loomi_event *ev)
{
	(void)d;
	loomi_tracking_job_state(ev->job, ev->u.state.to);
}

static int
init(loomi_daemon *d, char **err)
{
	(void)d;
	(void)err;
	loomi_auth_register_kind("run", loomi_tracking_run_owner);
	return 0;
}

static void
stop(loomi_daemon *d)
{
	(void)d;
	loomi_tracking_stop();
}

static const loomi_migration migrations[] = {
	{7, "runs, their metric points, tags and artifacts", loomi_tracking_migration_sql},
	/* run ids are never used again (store.c: foreign keys are off during
	 * migrations, so tags, artifacts and metric series keep their rows) */
	{13, "run ids are never reused (AUTOINCREMENT)",
	 "CREATE TABLE runs_new (\n"
	 "  id         INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	 "  job_id     INTEGER REFERENCES jobs (id) ON DELETE SET NULL,\n"
	 "  attempt    INTEGER NOT NULL DEFAULT 0,\n"
	 "  name       TEXT NOT NULL,\n"
	 "  user       TEXT NOT NULL DEFAULT 'local',\n"
	 "  state      TEXT NOT NULL DEFAULT 'running' CHECK (state IN\n"
	 "               ('running','paused','completed','failed','cancelled')),\n"
	 "  params     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(params)),\n"
	 "  lineage    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(lineage)),\n"
	 "  metrics    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metrics)),\n"
	 "  started_at INTEGER NOT NULL,\n"
	 "  ended_at   INTEGER\n"
	 ");\n"
	 "INSERT INTO runs_new SELECT id, job_id, attempt, name, user, state, params, lineage,\n"
	 "  metrics, started_at, ended_at FROM runs;\n"
	 "DROP TABLE runs;\n"
	 "ALTER TABLE runs_new RENAME TO runs;\n"
	 "CREATE INDEX runs_by_job ON runs (job_id, attempt);\n"
	 "CREATE INDEX runs_by_name ON runs (name, id);\n"
	 LOOMI_SEQUENCE_AT_LEAST("runs", "SELECT max(id) FROM runs")},
};

static const loomi_route routes[] = {
	{"POST", "/api/v1/runs", route_runs_create, LOOMI_ACCESS_WRITE, NULL},
	{"GET", "/api/v1/runs", route_runs_list, LOOMI_ACCESS_READ, "task,name,state,limit,offset"},
	{"GET", "/api/v1/runs/compare", route_runs_compare, LOOMI_ACCESS_READ, "ids"},
	{"GET", "/api/v1/runs/best", route_runs_best, LOOMI_ACCESS_READ, "metric,mode,name,state"},
	{"GET", "/api/v1/runs/{id}", route_run_get, LOOMI_ACCESS_READ, NULL},
	{"POST", "/api/v1/runs/{id}/end", route_run_end, LOOMI_ACCESS_WRITE, NULL},
	{"POST", "/api/v1/runs/{id}/tags", route_run_tags, LOOMI_ACCESS_WRITE, NULL},
	{"POST", "/api/v1/runs/{id}/metrics", route_run_metrics_post, LOOMI_ACCESS_WRITE, NULL},
	{"GET", "/api/v1/runs/{id}/metrics", route_run_metrics_get, LOOMI_ACCESS_READ,
	 "name,from_step,to_step,max_points"},
	{"GET", "/api/v1/training/tasks/{id}/metrics", route_task_metrics_get, LOOMI_ACCESS_READ,
	 "name,from_step,to_step,max_points"},
};

static const loomi_listener listeners[] = {
	{LOOMI_EV_JOB_ATTACH, on_job_attach},
	{LOOMI_EV_JOB_POINTS, on_job_points},
	{LOOMI_EV_JOB_STATE, on_job_state},
};

const loomi_module loomi_tracking_module = {
	.name = "tracking",
	.migrations = migrations,
	.n_migrations = LOOMI_N(migrations),
	.init = init,
	.start = loomi_tracking_start,
	.stop = stop,
	.routes = routes,
	.n_routes = LOOMI_N(routes),
	.listeners = listeners,
	.n_listeners = LOOMI_N(listeners),
};

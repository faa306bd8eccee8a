/* Exports through the API: a task's or a run's results handed to an
 * exporter plugin instance (ONNX, safetensors, an HTML report, CSV, JSON),
 * and several runs side by side.  The format a user asks for is the
 * exporter's `format` (or its instance name). */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <loom/exporter.h>

#include "host/core/plugins.h"
#include "host/core/util.h"
#include "host/server/api.h"
#include "host/server/module.h"
#include "host/tasks/tasks.h"
#include "host/tracking/tracking.h"
#include "export.h"

#define MAX_EXPORT_BYTES ((size_t)1 << 31)

static const loom_exporter_ops *
ops_of(const loom_instance *ins)
{
	return ins->desc->ops;
}

/* The exporter instance for format (its format or instance name). */
static loom_instance *
exporter_for(loomi_daemon *d, const char *format)
{
	for (size_t i = 0; i < d->plugins.n_instances; i++) {
		loom_instance *ins = d->plugins.instances[i];
		if (ins->kind == LOOM_KIND_EXPORTER && ins->inited &&
		    (strcmp(ops_of(ins)->format, format) == 0 || strcmp(ins->name, format) == 0))
			return ins;
	}
	return NULL;
}

static json_t *
formats(loomi_daemon *d)
{
	json_t *list = json_array();
	for (size_t i = 0; i < d->plugins.n_instances; i++) {
		loom_instance *ins = d->plugins.instances[i];
		if (ins->kind != LOOM_KIND_EXPORTER || !ins->inited)
			continue;
		const loom_exporter_ops *ops = ops_of(ins);
		json_array_append_new(
			list, json_pack("{s:s, s:s, s:s, s:s, s:b, s:b}", "instance", ins->name, "format",
		                    ops->format, "extension", ops->extension, "media_type",
		                    ops->media_type, "needs_weights",
		                    (ops->caps & LOOM_EXPORT_NEEDS_TENSORS) != 0, "compare",
		                    (ops->caps & LOOM_EXPORT_COMPARE) && ops->export_compare));
	}
	return list;
}

static void
route_exporters(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	(void)req;
	res->status = 200;
	res->body = json_pack("{s:o}", "exporters", formats(d));
}

/* The format parameter's exporter, or NULL after a 400 listing them. */
static loom_instance *
format_param(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	char *format = loomi_query_get(req->query, "format");
	loom_instance *ins = format ? exporter_for(d, format) : NULL;

	if (ins == NULL) {
		json_t *list = formats(d), *f;
		loomi_strv names = {0};
		size_t i;
		json_array_foreach(list, i, f)
			loomi_strv_push(&names, loomi_strdup(json_string_value(json_object_get(f, "format"))));
		char *known = loomi_strv_join(&names, ", ");
		loomi_api_error(res, 400, "bad_request",
		                "format: %s%s%s; loomd exports %s", format ? "no exporter for \"" : "",
		                format ? format : "give the format to export to",
		                format ? "\"" : "", names.n ? known : "nothing (no exporter plugin is "
		                                                       "configured)");
		free(known);
		loomi_strv_free(&names);
		json_decref(list);
	}
	free(format);
	return ins;
}

/* ------------------------------------------------------------------ a run as a source */

typedef struct source {
	loomi_export_run *run;
	int64_t run_id;             /* 0: no run recorded */
} source;

static int
history_fn(const loom_export_source *src, const char *metric, loom_metric_fn fn, void *arg)
{
	const source *s = src->history_arg;
	tk_point *pts = NULL;
	size_t n = 0;
	int rv = loomi_tracking_read(loomi_tracking_db(), s->run_id, metric, 0, INT64_MAX, &pts, &n);

	if (rv == LOOM_ENOENT)
		return 0;
	for (size_t i = 0; rv == 0 && i < n; i++) {
		loom_metric_point pt = {.name = metric, .step = pts[i].step, .epoch = pts[i].epoch,
		                        .scope = pts[i].scope, .wall_ms = pts[i].wall_ms,
		                        .value = pts[i].value};
		rv = fn(arg, &pt);
	}
	free(pts);
	return rv;
}

/* The run's metric names, its record and lineage; 0 or LOOM_ENOENT. */
static int
attach_run(source *s, json_t *record)
{
	sqlite3 *db = loomi_tracking_db();
	sqlite3_stmt *st = NULL;
	loomi_strv names = {0};
	char rid[32];

	snprintf(rid, sizeof rid, "run-%lld", (long long)s->run_id);
	if (sqlite3_prepare_v2(db, "SELECT name FROM metric_series WHERE run_id = ? ORDER BY id", -1,
	                       &st, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, s->run_id);
		while (sqlite3_step(st) == SQLITE_ROW)
			loomi_strv_push(&names, loomi_strdup((const char *)sqlite3_column_text(st, 0)));
	}
	sqlite3_finalize(st);
	if (names.n > 0)
		loomi_export_set_history(s->run, (const char *const *)names.v, names.n, history_fn, s);
	loomi_strv_free(&names);
	if (sqlite3_prepare_v2(db, "SELECT lineage, attempt, state, name, params FROM runs"
	                           " WHERE id = ?",
	                       -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, s->run_id);
		if (sqlite3_step(st) == SQLITE_ROW) {
			json_t *lin = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
			json_object_set_new(record, "run_id", json_string(rid));
			json_object_set_new(record, "lineage", lin ? lin : json_object());
			if (json_object_get(record, "name") == NULL) {
				/* a run without a task: its own name, state and params */
				char *rec = json_dumps(record, JSON_COMPACT);
				loomi_export_set_run(s->run, rid, 0, (const char *)sqlite3_column_text(st, 3),
				                     (const char *)sqlite3_column_text(st, 2),
				                     (const char *)sqlite3_column_text(st, 4), rec);
				free(rec);
			}
		}
	}
	sqlite3_finalize(st);
	return 0;
}

/* Does every file the run recorded still have its checksum?  NULL, or why
 * not (malloc'd). */
static char *
artifacts_changed(int64_t run, const char *dir)
{
	sqlite3_stmt *st = NULL;
	char *why = NULL;

	if (sqlite3_prepare_v2(loomi_tracking_db(),
	                       "SELECT name, sha256 FROM run_artifacts WHERE run_id = ?"
	                       " AND name LIKE '%.safetensors'",
	                       -1, &st, NULL) != SQLITE_OK)
		return NULL;
	sqlite3_bind_int64(st, 1, run);
	while (why == NULL && sqlite3_step(st) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		char *path = loomi_path_join(dir, name), hex[65];
		if (loomi_tracking_sha256_file(path, hex, NULL) != 0)
			why = loomi_strfmt("%s is gone", path);
		else if (strcmp(hex, (const char *)sqlite3_column_text(st, 1)) != 0)
			why = loomi_strfmt("%s changed since the run recorded it (sha256 %.12s…, recorded "
			                   "%.12s…)",
			                   path, hex, (const char *)sqlite3_column_text(st, 1));
		free(path);
	}
	sqlite3_finalize(st);
	return why;
}

/* A task's results as a source; NULL after setting the error. */
static source *
task_source(loomi_daemon *d, int64_t job, const loom_exporter_ops *ops, loomi_http_res *res)
{
	json_t *task = loomi_jobs_get(d, job);
	const char *state = json_string_value(json_object_get(task, "status"));
	const char *dir = json_string_value(json_object_get(task, "out_dir"));
	source *s;
	char *err = NULL, *why, *spec, *rec, rid[32];
	int rv;

	if (task == NULL) {
		loomi_api_error(res, 404, "not_found",
		                "no task-%lld (GET /api/v1/training/tasks lists them)", (long long)job);
		return NULL;
	}
	if (state == NULL || !strcmp(state, "pending") || !strcmp(state, "running") ||
	    !strcmp(state, "paused") ||
	    ((ops->caps & LOOM_EXPORT_NEEDS_TENSORS) && strcmp(state, "completed") != 0)) {
		loomi_api_error(res, 409, "conflict",
		                "task-%lld is %s; %s exports a completed task%s", (long long)job,
		                state ? state : "unknown", ops->format,
		                (ops->caps & LOOM_EXPORT_NEEDS_TENSORS) ? " (it needs the trained weights)"
		                                                        : " or a finished one");
		json_decref(task);
		return NULL;
	}
	s = loomi_xcalloc(1, sizeof *s);
	s->run_id = loomi_tracking_run_of_job(job);
	rv = loomi_export_load(dir, &s->run, &err);
	if (rv == LOOM_ENOENT && !(ops->caps & LOOM_EXPORT_NEEDS_TENSORS)) {
		s->run = loomi_export_new(); /* a failed or command task: its metrics still tell */
		rv = 0;
	}
	if (rv == 0 && (ops->caps & LOOM_EXPORT_NEEDS_TENSORS) &&
	    loomi_export_source(s->run)->n_tensors == 0) {
		err = loomi_strfmt("task-%lld has no trained weights (its compute plugin made none); "
		                   "%s needs them",
		                   (long long)job, ops->format);
		rv = LOOM_ENOENT;
	}
	if (rv == 0 && s->run_id && (why = artifacts_changed(s->run_id, dir)) != NULL) {
		err = loomi_strfmt("%s; the model cannot be exported as trained", why);
		free(why);
		rv = LOOM_ECORRUPT;
	}
	if (rv != 0) {
		loomi_api_error(res, rv == LOOM_ENOENT ? 409 : 422,
		                rv == LOOM_ENOENT ? "conflict" : "corrupt", "%s",
		                err ? err : loom_strerror(rv));
		free(err);
		loomi_export_free(s->run);
		free(s);
		json_decref(task);
		return NULL;
	}
	spec = json_dumps(json_object_get(task, "spec"), JSON_COMPACT);
	json_object_del(task, "spec");
	snprintf(rid, sizeof rid, "run-%lld", (long long)s->run_id);
	if (s->run_id)
		attach_run(s, task); /* the run id and lineage join the record */
	rec = json_dumps(task, JSON_COMPACT);
	/* the weights carry the spec with every default filled in; else the task's */
	loomi_export_set_run(s->run, s->run_id ? rid : "", job,
	                     json_string_value(json_object_get(task, "name")), state,
	                     loomi_export_source(s->run)->model_json ? NULL : spec, rec);
	free(rec);
	free(spec);
	json_decref(task);
	return s;
}

/* A run's results as a source (its task's, when it has one). */
static source *
run_source(loomi_daemon *d, int64_t run, const loom_exporter_ops *ops, loomi_http_res *res)
{
	sqlite3_stmt *st = NULL;
	int64_t job = -1;
	source *s;

	loomi_tracking_flush();
	if (sqlite3_prepare_v2(loomi_tracking_db(), "SELECT coalesce(job_id, 0) FROM runs WHERE id = ?",
	                       -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, run);
		if (sqlite3_step(st) == SQLITE_ROW)
			job = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	if (job < 0) {
		loomi_api_error(res, 404, "not_found", "no run-%lld (GET /api/v1/runs lists them)",
		                (long long)run);
		return NULL;
	}
	if (job > 0 && loomi_tracking_run_of_job(job) == run)
		return task_source(d, job, ops, res);
	if (ops->caps & LOOM_EXPORT_NEEDS_TENSORS) {
		loomi_api_error(res, 409, "conflict",
		                "run-%lld has no trained weights of its own%s; %s needs them",
		                (long long)run, job > 0 ? " (a later attempt of its task has)" : "",
		                ops->format);
		return NULL;
	}
	s = loomi_xcalloc(1, sizeof *s);
	s->run = loomi_export_new();
	s->run_id = run;
	{
		json_t *rec = json_object();
		attach_run(s, rec);
		json_decref(rec);
	}
	return s;
}

static void
source_free(source *s)
{
	if (s) {
		loomi_export_free(s->run);
		free(s);
	}
}

/* ------------------------------------------------------------------ running an exporter */

typedef struct buffer {
	char *data;
	size_t len, cap;
} buffer;

static int
buffer_write(void *arg, const void *data, size_t len)
{
	buffer *b = arg;
	if (len > MAX_EXPORT_BYTES - b->len)
		return LOOM_ERANGE;
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 1 << 16;
		while (cap < b->len + len)
			cap *= 2;
		char *p = realloc(b->data, cap);
		if (p == NULL)
			return LOOM_ENOMEM;
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

static void
run_exporter(loom_instance *ins, const loom_export_source *const *srcs, size_t n,
             const char *what, loomi_http_res *res)
{
	const loom_exporter_ops *ops = ops_of(ins);
	bool lock = !(ins->desc->flags & LOOM_PLUGIN_THREAD_SAFE);
	buffer b = {0};
	loom_export_sink sink = {&b, buffer_write};
	int rv;

	if (lock)
		pthread_mutex_lock(&ins->lock);
	rv = n == 1 && srcs[0] ? ops->export_run(ins->ctx, srcs[0], &sink)
	                       : ops->export_compare(ins->ctx, srcs, n, &sink);
	if (lock)
		pthread_mutex_unlock(&ins->lock);
	if (rv != 0) {
		free(b.data);
		loomi_api_error(res, rv == LOOM_EINVAL ? 422 : 500, rv == LOOM_EINVAL ? "invalid" : "internal",
		                "%s (%s) could not export %s: %s; loomd's log has the exporter's "
		                "message",
		                ins->name, ops->format, what, loom_strerror(rv));
		return;
	}
	res->status = 200;
	res->text = b.data ? b.data : loomi_strdup("");
	res->text_len = b.len;
	res->content_type = ops->media_type;
}

static void
route_task_export(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	int64_t job = loomi_jobs_param_task(d, req, LOOMI_ACCESS_READ, res);
	loom_instance *ins;
	source *s;
	char what[64];

	if (job <= 0 || (ins = format_param(d, req, res)) == NULL)
		return;
	if ((s = task_source(d, job, ops_of(ins), res)) == NULL)
		return;
	const loom_export_source *src = loomi_export_source(s->run);
	snprintf(what, sizeof what, "task-%lld", (long long)job);
	run_exporter(ins, &src, 1, what, res);
	source_free(s);
}

static void
route_runs_export(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	char *ids = loomi_query_get(req->query, "ids"), *save = NULL;
	loom_instance *ins;
	source *list[20];
	const loom_export_source *srcs[20];
	size_t n = 0;

	if ((ins = format_param(d, req, res)) == NULL)
		goto out;
	/* one run: /runs/{id}/export; several: /runs/export?ids=… */
	if (req->n_params == 1) {
		free(ids);
		ids = loomi_strdup(req->params[0]);
	}
	for (char *t = strtok_r(ids ? ids : (char *)"", ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		const char *num = strncmp(t, "run-", 4) == 0 ? t + 4 : t;
		char *end;
		long long id = strtoll(num, &end, 10);
		if (*num == '\0' || *end || id <= 0) {
			loomi_api_error(res, 404, "not_found", "\"%s\" is not a run id (run-12)", t);
			goto out;
		}
		if (n == 20) {
			loomi_api_error(res, 400, "bad_request", "ids: at most 20 runs at once");
			goto out;
		}
		/* a run the caller may not see is as missing as one that is not */
		if (loomi_tracking_run_access(d, req->caller, id, LOOMI_ACCESS_READ) != 0) {
			loomi_api_error(res, 404, "not_found", "no run-%lld (GET /api/v1/runs lists them)",
			                id);
			goto out;
		}
		if ((list[n] = run_source(d, id, ops_of(ins), res)) == NULL)
			goto out;
		srcs[n] = loomi_export_source(list[n]->run);
		n++;
	}
	if (n == 0) {
		loomi_api_error(res, 400, "bad_request", "ids: give the runs (ids=run-1,run-2)");
	} else if (n > 1 && !((ops_of(ins)->caps & LOOM_EXPORT_COMPARE) && ops_of(ins)->export_compare)) {
		loomi_api_error(res, 400, "bad_request",
		                "%s exports one run at a time; ask for one id, or a format that compares "
		                "(GET /api/v1/exporters says which)",
		                ops_of(ins)->format);
	} else {
		run_exporter(ins, srcs, n, n == 1 ? "the run" : "the runs", res);
	}
out:
	for (size_t i = 0; i < n; i++)
		source_free(list[i]);
	free(ids);
}

/* ------------------------------------------------------------------ the module */

static const loomi_route routes[] = {
	{"GET", "/api/v1/exporters", route_exporters, LOOMI_ACCESS_READ, NULL},
	{"GET", "/api/v1/training/tasks/{id}/export", route_task_export, LOOMI_ACCESS_READ,
	 "format"},
	{"GET", "/api/v1/runs/export", route_runs_export, LOOMI_ACCESS_READ, "ids,format"},
	{"GET", "/api/v1/runs/{id}/export", route_runs_export, LOOMI_ACCESS_READ, "format"},
};

const loomi_module loomi_exports_module = {
	.name = "exports",
	.routes = routes,
	.n_routes = LOOMI_N(routes),
};

/* Rollback checks of a model's deployment rule (docs/registry.md,
 * "Deployment rule"): POST /api/v1/models/{name}/deploy/check submits two
 * batch predictions over a labelled file — the alias's version and the one
 * it pointed at before its newest promotion — and a check settles when it
 * is read: the rule compares their figures and rolls the alias back when
 * the earlier version is better.  It submits tasks, so it is its own
 * service beside the registry (tasks already read the registry: a registry
 * that submitted tasks would close a circle). */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/error.h>

#include "host/core/log.h"
#include "host/core/util.h"
#include "host/registry/registry.h"
#include "host/server/auth.h"
#include "host/server/module.h"
#include "host/server/store.h"
#include "host/tasks/tasks.h"

/* deploy.c's helpers, by the names this code shares with it */
#define fail loomi_deploy_fail
#define iso_time loomi_registry_iso_time
#define json_column loomi_registry_json_column
#define real_or_null loomi_deploy_real_or_null
#define text_or_null loomi_deploy_text_or_null
#define bind_real loomi_deploy_bind_real
#define read_rule loomi_deploy_read_rule
#define record loomi_deploy_record
#define answer loomi_deploy_answer
#define no_rule loomi_deploy_no_rule
#define prep loomi_registry_prep
#define step_done loomi_registry_step_done

/* The batch prediction's figure a rule's metric reads: its name without
 * holdout_, val_ or test_ ("accuracy", "mae"); NULL for one a batch
 * prediction does not report. */
static const char *
predict_metric(const char *metric)
{
	static const char *const prefixes[] = {"holdout_", "val_", "test_"};
	const char *k = metric;
	for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
		if (strncmp(k, prefixes[i], strlen(prefixes[i])) == 0) {
			k += strlen(prefixes[i]);
			break;
		}
	return strcmp(k, "accuracy") == 0 ? "accuracy" : strcmp(k, "mae") == 0 ? "mae" : NULL;
}

#define CHECK_COLUMNS                                                                          \
	"id, alias, data, metric, better_by, version, previous, job_id, previous_job_id, state,"  \
	" outcome, value, previous_value, reason, created_at, settled_at, user"

static json_t *
check_json(sqlite3_stmt *st, const char *name)
{
	json_t *tasks = json_object(), *o;
	char buf[48];
	if (sqlite3_column_type(st, 7) != SQLITE_NULL) {
		snprintf(buf, sizeof buf, "task-%lld", (long long)sqlite3_column_int64(st, 7));
		json_object_set_new(tasks, "version", json_string(buf));
	}
	if (sqlite3_column_type(st, 8) != SQLITE_NULL) {
		snprintf(buf, sizeof buf, "task-%lld", (long long)sqlite3_column_int64(st, 8));
		json_object_set_new(tasks, "previous", json_string(buf));
	}
	o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:f, s:I, s:I, s:o, s:s, s:o, s:o, s:o, s:o}",
	              "id", (json_int_t)sqlite3_column_int64(st, 0), "name", name, "alias",
	              (const char *)sqlite3_column_text(st, 1), "data",
	              (const char *)sqlite3_column_text(st, 2), "metric",
	              (const char *)sqlite3_column_text(st, 3), "better_by",
	              sqlite3_column_double(st, 4), "version",
	              (json_int_t)sqlite3_column_int64(st, 5), "previous",
	              (json_int_t)sqlite3_column_int64(st, 6), "tasks", tasks, "state",
	              (const char *)sqlite3_column_text(st, 9), "outcome", text_or_null(st, 10),
	              "value", real_or_null(st, 11), "previous_value", real_or_null(st, 12),
	              "reason", text_or_null(st, 13));
	json_object_set_new(o, "created_at", iso_time(sqlite3_column_int64(st, 14)));
	json_object_set_new(o, "settled_at", sqlite3_column_type(st, 15) == SQLITE_NULL
	                                         ? json_null()
	                                         : iso_time(sqlite3_column_int64(st, 15)));
	json_object_set_new(o, "user", json_string((const char *)sqlite3_column_text(st, 16)));
	return o;
}

static json_t *
check_by_id(sqlite3 *db, int64_t model, int64_t id, const char *name)
{
	sqlite3_stmt *st = prep(db, "SELECT " CHECK_COLUMNS " FROM model_deploy_checks"
	                            " WHERE model_id = ? AND id = ?");
	json_t *o = NULL;
	sqlite3_bind_int64(st, 1, model);
	sqlite3_bind_int64(st, 2, id);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		o = check_json(st, name);
	sqlite3_finalize(st);
	return o;
}

/* Submit the batch prediction of version over data, as caller. */
static int
submit_predict(loomi_daemon *d, const loomi_http_req *req, const char *name, int64_t version,
               const char *compute, const char *data, int64_t *job, char **msg)
{
	char *tname = loomi_strfmt("deploy-check-%s-v%lld", name, (long long)version);
	json_t *task = json_pack("{s:s, s:{s:s, s:{s:s, s:I, s:{s:s}}}, s:b}", "name", tname, "spec",
	                         "compute", compute, "predict", "model", name, "version",
	                         (json_int_t)version, "data", "path", data, "start", 1);
	int rv;
	free(tname);
	/* a name that is no task name (spaces …) still gets its check */
	rv = loomi_jobs_submit(d, task, req->caller, job, msg);
	if (rv == LOOM_EINVAL && *msg && strstr(*msg, "name")) {
		free(*msg);
		*msg = NULL;
		json_object_set_new(task, "name", json_string("deploy-check"));
		rv = loomi_jobs_submit(d, task, req->caller, job, msg);
	}
	json_decref(task);
	return rv;
}

static void
loomi_deploy_route_check(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3 *db = d->store.db;
	const char *name = req->params[0], *data = NULL, *k = NULL, *key;
	json_t *body = loomi_api_json_body(req, res), *v, *spec = NULL, *out = NULL;
	loomi_deploy_rule r;
	int64_t id = 0, current = 0, previous = 0, job = 0, pjob = 0, check = 0;
	char *msg = NULL, *compute = NULL;
	int rv = 0;

	if (body == NULL)
		return;
	if (!loomi_registry_may(d, req, LOOMI_ACCESS_WRITE, res)) {
		json_decref(body);
		return;
	}
	if (!json_is_object(body))
		rv = fail(&msg, LOOM_EINVAL, "the body must be a JSON object like {\"data\": "
		                             "\"/data/labelled.csv\"}");
	json_object_foreach(body, key, v)
		if (rv == 0 && strcmp(key, "data") != 0)
			rv = fail(&msg, LOOM_EINVAL, "%s: unknown field%s; the body is {\"data\": "
			                             "\"/path/to/labelled.csv\"}",
			          key, loomi_suggest(key, (const char *const[]){"data"}, 1)
			                   ? " (did you mean data?)"
			                   : "");
	if (rv == 0 && !json_is_string(v = json_object_get(body, "data")))
		rv = fail(&msg, LOOM_EINVAL, "data: required, a labelled CSV file under loomd.conf's "
		                             "data_roots to predict with both versions");
	if (rv == 0) {
		data = json_string_value(v);
		rv = loomi_data_path_check(d, "data", data, &msg);
	}
	if (rv == 0) {
		loomi_registry_hold();
		if ((rv = loomi_store_begin(db, false, &msg)) == 0) {
			if ((rv = loomi_registry_find(db, name, &id, &msg)) == 0 &&
			    !read_rule(db, id, &r, NULL))
				rv = no_rule(&msg, name);
			if (rv == 0 && (k = predict_metric(r.metric)) == NULL)
				rv = fail(&msg, LOOM_EINVAL,
				          "the rule's metric %s has no batch-prediction counterpart: a check "
				          "compares predict/accuracy or predict/mae; set the rule's metric to "
				          "one ending in accuracy (classification) or mae (forecast, "
				          "regression)",
				          r.metric);
			if (rv == 0 && (current = loomi_registry_alias_at(db, id, r.alias)) == 0)
				rv = fail(&msg, LOOM_EEXIST,
				          "model \"%s\" has no alias \"%s\" yet; there is nothing to check",
				          name, r.alias);
			if (rv == 0 && (previous = loomi_registry_previous(db, id, r.alias)) == 0)
				rv = fail(&msg, LOOM_EEXIST,
				          "model \"%s\": alias \"%s\" points at version %lld, its first; there "
				          "is no earlier version to compare it with",
				          name, r.alias, (long long)current);
			if (rv == 0) {
				sqlite3_stmt *st = prep(db, "SELECT spec FROM model_versions WHERE model_id = ?"
				                            " AND version = ?");
				sqlite3_bind_int64(st, 1, id);
				sqlite3_bind_int64(st, 2, current);
				if (st && sqlite3_step(st) == SQLITE_ROW)
					spec = json_column(st, 0);
				sqlite3_finalize(st);
				compute = loomi_strdup(
					json_is_string(json_object_get(spec, "compute"))
						? json_string_value(json_object_get(spec, "compute"))
						: "transformer");
			}
			rv = loomi_store_end(db, rv, &msg);
		}
		loomi_registry_release();
	}
	if (rv == 0 && (rv = submit_predict(d, req, name, current, compute, data, &job, &msg)) == 0 &&
	    (rv = submit_predict(d, req, name, previous, compute, data, &pjob, &msg)) != 0) {
		char *m2 = NULL;
		loomi_jobs_action(d, job, "cancel", &m2);
		free(m2);
	}
	if (rv == 0) {
		loomi_registry_hold();
		if ((rv = loomi_store_begin(db, true, &msg)) == 0) {
			sqlite3_stmt *st = prep(db, "INSERT INTO model_deploy_checks (model_id, alias, data,"
			                            " metric, better_by, version, previous, job_id,"
			                            " previous_job_id, state, created_at, user)"
			                            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?)");
			char *pm = loomi_strfmt("predict/%s", k);
			sqlite3_bind_int64(st, 1, id);
			sqlite3_bind_text(st, 2, r.alias, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 3, data, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 4, pm, -1, SQLITE_TRANSIENT);
			sqlite3_bind_double(st, 5, r.better_by);
			sqlite3_bind_int64(st, 6, current);
			sqlite3_bind_int64(st, 7, previous);
			sqlite3_bind_int64(st, 8, job);
			sqlite3_bind_int64(st, 9, pjob);
			sqlite3_bind_int64(st, 10, loomi_wall_ms());
			sqlite3_bind_text(st, 11, req->caller->name, -1, SQLITE_STATIC);
			free(pm);
			rv = step_done(db, st, &msg, "record a deployment check");
			if (rv == 0) {
				check = sqlite3_last_insert_rowid(db);
				out = check_by_id(db, id, check, name);
			}
			rv = loomi_store_end(db, rv, &msg);
		}
		loomi_registry_release();
	}
	json_decref(body);
	json_decref(spec);
	free(compute);
	if (rv != 0) {
		json_decref(out);
		out = NULL;
	}
	answer(res, rv, out, msg);
}

/* The figure k of a completed batch prediction (its predictions.json's
 * metrics); NAN with *why when it has none. */
static double
predicted_figure(const json_t *job, const char *k, int64_t version, char **why)
{
	const char *dir = json_string_value(json_object_get(job, "out_dir"));
	char *path = dir ? loomi_path_join(dir, "predictions.json") : NULL, *text = NULL;
	json_t *p = NULL;
	double x = NAN;

	if (path && loomi_read_file(path, &text, NULL) == 0)
		p = json_loads(text, 0, NULL);
	if (p == NULL)
		*why = loomi_strfmt("cannot read the predictions of version %lld (%s)",
		                    (long long)version, path ? path : "no output directory");
	else if (!json_is_number(json_object_get(json_object_get(p, "metrics"), k)))
		*why = loomi_strfmt("the predictions of version %lld have no %s: the file has no "
		                    "labels (actual values) to score them with",
		                    (long long)version, k);
	else
		x = json_number_value(json_object_get(json_object_get(p, "metrics"), k));
	json_decref(p);
	free(text);
	free(path);
	return x;
}

/* Why a check's task did not complete, or NULL while it runs or once it
 * completed (*done). */
static char *
task_trouble(loomi_daemon *d, int64_t job_id, int64_t version, json_t **job, bool *done)
{
	const char *status;
	*done = false;
	*job = job_id ? loomi_jobs_get(d, job_id) : NULL;
	if (*job == NULL)
		return loomi_strfmt("the batch prediction of version %lld (task-%lld) is gone",
		                    (long long)version, (long long)job_id);
	status = json_string_value(json_object_get(*job, "status"));
	if (status && strcmp(status, "completed") == 0)
		*done = true;
	else if (status && (strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0))
		return loomi_strfmt("the batch prediction of version %lld (task-%lld) %s: %s",
		                    (long long)version, (long long)job_id, status,
		                    json_string_value(json_object_get(*job, "error"))
		                        ? json_string_value(json_object_get(*job, "error"))
		                        : "see its log");
	return NULL;
}

typedef struct check_row {
	int64_t id, version, previous, job, pjob;
	double better_by;
	char alias[33], metric[48], data[4096], state[16];
} check_row;

/* Settle check c when both tasks are done or one failed: compare, roll
 * back when the previous version is better by the rule. */
static int
settle(loomi_daemon *d, const char *name, int64_t model, const check_row *c, char **msg)
{
	sqlite3 *db = d->store.db;
	json_t *job = NULL, *pjob = NULL;
	bool done = false, pdone = false, rolled = false;
	char *why = task_trouble(d, c->job, c->version, &job, &done);
	int64_t now = loomi_wall_ms(), from = 0, to = 0;
	loomi_deploy_verdict v = {.action = LOOMI_DEPLOY_KEPT, .against = c->previous};
	const char *k = c->metric + strlen("predict/");
	int rv = 0;

	if (why == NULL)
		why = task_trouble(d, c->pjob, c->previous, &pjob, &pdone);
	v.value = v.against_value = NAN;
	if (why == NULL && done && pdone) {
		v.value = predicted_figure(job, k, c->version, &why);
		if (why == NULL)
			v.against_value = predicted_figure(pjob, k, c->previous, &why);
	}
	json_decref(job);
	json_decref(pjob);
	if (why == NULL && !(done && pdone))
		return 0; /* still running */
	loomi_registry_hold();
	if ((rv = loomi_store_begin(db, true, msg)) == 0) {
		sqlite3_stmt *st = prep(db, "UPDATE model_deploy_checks SET state = 'running'"
		                            " WHERE id = ? AND state = 'running'");
		sqlite3_bind_int64(st, 1, c->id);
		/* another reader settled it meanwhile: its answer stands */
		if ((rv = step_done(db, st, msg, "settle a deployment check")) == 0 &&
		    sqlite3_changes(db) == 1) {
			if (why == NULL) {
				char *how = NULL;
				bool worse = loomi_deploy_better(k, v.against_value, v.value, c->better_by,
				                                 &how);
				int64_t at = loomi_registry_alias_at(db, model, c->alias);
				if (worse && at == c->version) {
					rv = loomi_registry_undo(db, name, model, c->alias, LOOMI_DEPLOY_USER, now,
					                         &from, &to, msg);
					rolled = rv == 0;
					v.action = LOOMI_DEPLOY_ROLLED_BACK;
				}
				v.reason = loomi_strfmt(
					"%s on %s: version %lld (before the newest promotion) %.6g against %.6g "
					"of version %lld (%s): %s%s",
					c->metric, c->data, (long long)c->previous, v.against_value, v.value,
					(long long)c->version, c->alias, how,
					rolled ? "; rolled back"
					: worse ? "; the alias has moved since the check began, nothing rolled back"
					        : "; kept");
				free(how);
				if (rolled && to != c->previous) {
					char *r2 = loomi_strfmt("%s (to version %lld, the alias's history had "
					                        "changed)",
					                        v.reason, (long long)to);
					free(v.reason);
					v.reason = r2;
				}
				if (rv == 0)
					rv = record(db, model, c->version, c->alias, c->metric, &v, c->id,
					            LOOMI_DEPLOY_USER, now, NULL, msg);
			}
			if (rv == 0) {
				st = prep(db, "UPDATE model_deploy_checks SET state = ?, outcome = ?,"
				              " value = ?, previous_value = ?, reason = ?, settled_at = ?"
				              " WHERE id = ?");
				sqlite3_bind_text(st, 1, why ? "failed" : "done", -1, SQLITE_STATIC);
				if (why == NULL)
					sqlite3_bind_text(st, 2, loomi_deploy_action_name(v.action), -1,
					                  SQLITE_STATIC);
				bind_real(st, 3, v.value);
				bind_real(st, 4, v.against_value);
				sqlite3_bind_text(st, 5, why ? why : v.reason, -1, SQLITE_STATIC);
				sqlite3_bind_int64(st, 6, now);
				sqlite3_bind_int64(st, 7, c->id);
				rv = step_done(db, st, msg, "settle a deployment check");
			}
		}
		rv = loomi_store_end(db, rv, msg);
	}
	loomi_registry_release();
	if (rv == 0 && rolled)
		json_decref(loomi_registry_announce(d, name, c->alias, to, from, "rollback",
		                                    LOOMI_DEPLOY_USER, now));
	if (rv == 0)
		LOG_INFO("registry: model \"%s\": deployment check %lld: %s", name, (long long)c->id,
		         why ? why : v.reason);
	free(v.reason);
	free(why);
	return rv;
}

static void
loomi_deploy_route_check_get(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3 *db = d->store.db;
	const char *name = req->params[0], *t = req->params[1];
	check_row c = {0};
	json_t *out = NULL;
	int64_t model = 0;
	char *msg = NULL, *end;
	bool found = false;
	int rv;

	if (!loomi_registry_may(d, req, LOOMI_ACCESS_READ, res))
		return;
	if (strncmp(t, "check-", 6) == 0)
		t += 6;
	c.id = strtoll(t, &end, 10);
	if (*t < '1' || *t > '9' || *end != '\0') {
		answer(res, fail(&msg, LOOM_EINVAL, "\"%s\" is not a check id (like 3 or check-3)",
		                 req->params[1]),
		       NULL, msg);
		return;
	}
	loomi_registry_hold();
	if ((rv = loomi_store_begin(db, false, &msg)) == 0) {
		if ((rv = loomi_registry_find(db, name, &model, &msg)) == 0) {
			sqlite3_stmt *st = prep(db, "SELECT alias, metric, data, better_by, version,"
			                            " previous, coalesce(job_id, 0),"
			                            " coalesce(previous_job_id, 0), state"
			                            " FROM model_deploy_checks WHERE model_id = ? AND id = ?");
			sqlite3_bind_int64(st, 1, model);
			sqlite3_bind_int64(st, 2, c.id);
			if (st && sqlite3_step(st) == SQLITE_ROW) {
				found = true;
				snprintf(c.alias, sizeof c.alias, "%s", sqlite3_column_text(st, 0));
				snprintf(c.metric, sizeof c.metric, "%s", sqlite3_column_text(st, 1));
				snprintf(c.data, sizeof c.data, "%s", sqlite3_column_text(st, 2));
				c.better_by = sqlite3_column_double(st, 3);
				c.version = sqlite3_column_int64(st, 4);
				c.previous = sqlite3_column_int64(st, 5);
				c.job = sqlite3_column_int64(st, 6);
				c.pjob = sqlite3_column_int64(st, 7);
				snprintf(c.state, sizeof c.state, "%s", sqlite3_column_text(st, 8));
			}
			sqlite3_finalize(st);
			if (!found)
				rv = fail(&msg, LOOM_ENOENT, "model \"%s\" has no deployment check %lld", name,
				          (long long)c.id);
		}
		rv = loomi_store_end(db, rv, &msg);
	}
	loomi_registry_release();
	if (rv == 0 && strcmp(c.state, "running") == 0)
		rv = settle(d, name, model, &c, &msg);
	if (rv == 0) {
		loomi_registry_hold();
		if ((rv = loomi_store_begin(db, false, &msg)) == 0) {
			out = check_by_id(db, model, c.id, name);
			rv = loomi_store_end(db, out ? 0 : fail(&msg, LOOM_EIO, "cannot read check %lld",
			                                       (long long)c.id),
			                     &msg);
		}
		loomi_registry_release();
	}
	answer(res, rv, out, msg);
}

/* The rule's checks: they need write (a check may move the alias) and read
 * on the model, as the registry's deploy routes do. */
static const loomi_route routes[] = {
	{"POST", "/api/v1/models/{name}/deploy/check", loomi_deploy_route_check, LOOMI_ACCESS_WRITE,
	 NULL},
	{"GET", "/api/v1/models/{name}/deploy/checks/{id}", loomi_deploy_route_check_get,
	 LOOMI_ACCESS_READ, NULL},
};

const loomi_module loomi_deploy_module = {
	.name = "deploy",
	.routes = routes,
	.n_routes = LOOMI_N(routes),
};

/* The deployment rule of a model: the decision about each new version,
 * approval, and the check that rolls a regression back (deploy.h says
 * what each does; docs/registry.md, "Deployment rule", for users). */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/error.h>

#include "host/core/log.h"
#include "host/core/util.h"
#include "host/server/auth.h"
#include "host/server/store.h"
#include "host/tasks/tasks.h"
#include "deploy.h"
#include "registry.h"

const char loomi_deploy_migration_sql[] =
	"CREATE TABLE model_deploy_rules (\n"
	"  model_id   INTEGER PRIMARY KEY REFERENCES models (id) ON DELETE CASCADE,\n"
	"  metric     TEXT NOT NULL,\n"
	"  better_by  REAL NOT NULL CHECK (better_by >= 0),\n"
	"  alias      TEXT NOT NULL,\n"
	"  approval   INTEGER NOT NULL CHECK (approval IN (0, 1)),\n"
	"  updated_at INTEGER NOT NULL,\n"
	"  user       TEXT NOT NULL\n"
	");\n"
	/* against: the version compared with; approved_by/at: who promoted a
	 * pending_approval version, and when; check_id: the check that took
	 * a rolled_back or kept decision */
	"CREATE TABLE model_deploy_decisions (\n"
	"  id            INTEGER PRIMARY KEY,\n"
	"  model_id      INTEGER NOT NULL REFERENCES models (id) ON DELETE CASCADE,\n"
	"  version       INTEGER NOT NULL,\n"
	"  alias         TEXT NOT NULL,\n"
	"  action        TEXT NOT NULL CHECK (action IN ('promoted', 'pending_approval', 'kept',\n"
	"                  'skipped', 'rolled_back')),\n"
	"  against       INTEGER,\n"
	"  metric        TEXT NOT NULL,\n"
	"  value         REAL,\n"
	"  against_value REAL,\n"
	"  reason        TEXT NOT NULL,\n"
	"  check_id      INTEGER,\n"
	"  approved_by   TEXT,\n"
	"  approved_at   INTEGER,\n"
	"  at            INTEGER NOT NULL,\n"
	"  user          TEXT NOT NULL\n"
	");\n"
	"CREATE INDEX model_deploy_decisions_by_model ON model_deploy_decisions (model_id, id);\n"
	"CREATE TABLE model_deploy_checks (\n"
	"  id              INTEGER PRIMARY KEY,\n"
	"  model_id        INTEGER NOT NULL REFERENCES models (id) ON DELETE CASCADE,\n"
	"  alias           TEXT NOT NULL,\n"
	"  data            TEXT NOT NULL,\n"
	"  metric          TEXT NOT NULL,\n"
	"  better_by       REAL NOT NULL,\n"
	"  version         INTEGER NOT NULL,\n"
	"  previous        INTEGER NOT NULL,\n"
	"  job_id          INTEGER,\n"
	"  previous_job_id INTEGER,\n"
	"  state           TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed')),\n"
	"  outcome         TEXT CHECK (outcome IN ('rolled_back', 'kept')),\n"
	"  value           REAL,\n"
	"  previous_value  REAL,\n"
	"  reason          TEXT,\n"
	"  created_at      INTEGER NOT NULL,\n"
	"  settled_at      INTEGER,\n"
	"  user            TEXT NOT NULL\n"
	");\n";

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

static sqlite3_stmt *
prep(sqlite3 *db, const char *sql)
{
	return loomi_store_prep(db, "registry", sql);
}

static int
step_done(sqlite3 *db, sqlite3_stmt *st, char **msg, const char *what)
{
	return loomi_store_step_done(db, st, "registry", what, msg);
}

static json_t *
iso_time(int64_t ms)
{
	char *s = loomi_iso_time(ms);
	json_t *v = json_string(s);
	free(s);
	return v;
}

static json_t *
json_column(sqlite3_stmt *st, int col)
{
	const char *text = (const char *)sqlite3_column_text(st, col);
	json_t *v = text ? json_loads(text, 0, NULL) : NULL;
	return v ? v : json_null();
}

static json_t *
int_or_null(sqlite3_stmt *st, int col)
{
	return sqlite3_column_type(st, col) == SQLITE_NULL
	           ? json_null()
	           : json_integer(sqlite3_column_int64(st, col));
}

static json_t *
real_or_null(sqlite3_stmt *st, int col)
{
	return sqlite3_column_type(st, col) == SQLITE_NULL ? json_null()
	                                                   : json_real(sqlite3_column_double(st, col));
}

static json_t *
text_or_null(sqlite3_stmt *st, int col)
{
	const char *t = (const char *)sqlite3_column_text(st, col);
	return t ? json_string(t) : json_null();
}

static void
bind_real(sqlite3_stmt *st, int col, double x)
{
	if (isnan(x))
		sqlite3_bind_null(st, col);
	else
		sqlite3_bind_double(st, col, x);
}

/* ------------------------------------------------------------------ the rule */

static const char *const rule_fields[] = {"metric", "better_by", "alias", "approval"};

static bool
metric_name_ok(const char *m)
{
	size_t n = strlen(m);
	if (n < 1 || n > LOOMI_DEPLOY_METRIC_MAX)
		return false;
	for (const char *p = m; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '_' || *p == '.' || *p == '-'))
			return false;
	return true;
}

int
loomi_deploy_rule_parse(const json_t *body, loomi_deploy_rule *out, char **msg)
{
	const json_t *v;
	const char *key;
	int rv;

	memset(out, 0, sizeof *out);
	snprintf(out->metric, sizeof out->metric, "holdout_loss");
	snprintf(out->alias, sizeof out->alias, "production");
	if (!json_is_object(body))
		return fail(msg, LOOM_EINVAL,
		            "the body must be a JSON object like {\"metric\": \"holdout_accuracy\", "
		            "\"better_by\": 0.0, \"alias\": \"production\", \"approval\": false}");
	json_object_foreach((json_t *)body, key, v) {
		bool known = false;
		for (size_t i = 0; i < sizeof rule_fields / sizeof rule_fields[0]; i++)
			known |= strcmp(key, rule_fields[i]) == 0;
		if (!known) {
			const char *s = loomi_suggest(key, rule_fields,
			                              sizeof rule_fields / sizeof rule_fields[0]);
			return fail(msg, LOOM_EINVAL,
			            "deploy.%s: unknown field%s%s%s; a rule has metric, better_by, alias "
			            "and approval",
			            key, s ? " (did you mean " : "", s ? s : "", s ? "?)" : "");
		}
	}
	if ((v = json_object_get(body, "metric")) != NULL) {
		if (!json_is_string(v) || !metric_name_ok(json_string_value(v)))
			return fail(msg, LOOM_EINVAL,
			            "deploy.metric: expected the name of a version's metric, like "
			            "\"holdout_accuracy\", \"val_mae\" or \"test_loss\" (1–%d of "
			            "A-Z, a-z, 0-9, '_', '.', '-')",
			            LOOMI_DEPLOY_METRIC_MAX);
		snprintf(out->metric, sizeof out->metric, "%s", json_string_value(v));
	}
	if ((v = json_object_get(body, "better_by")) != NULL) {
		if (!json_is_number(v) || !isfinite(json_number_value(v)) || json_number_value(v) < 0)
			return fail(msg, LOOM_EINVAL,
			            "deploy.better_by: expected a number ≥ 0, the margin a new version "
			            "must beat the alias's version by (in the metric's units)");
		out->better_by = json_number_value(v);
	}
	if ((v = json_object_get(body, "alias")) != NULL) {
		if (!json_is_string(v))
			return fail(msg, LOOM_EINVAL, "deploy.alias: expected an alias name such as "
			                              "\"production\"");
		if ((rv = loomi_registry_alias_check(json_string_value(v), msg)) != 0) {
			char *m = loomi_strfmt("deploy.alias: %s", *msg);
			free(*msg);
			*msg = m;
			return rv;
		}
		snprintf(out->alias, sizeof out->alias, "%s", json_string_value(v));
	}
	if ((v = json_object_get(body, "approval")) != NULL) {
		if (!json_is_boolean(v))
			return fail(msg, LOOM_EINVAL, "deploy.approval: expected true (a person approves "
			                              "each promotion) or false");
		out->approval = json_is_true(v);
	}
	return 0;
}

json_t *
loomi_deploy_rule_json(const loomi_deploy_rule *r)
{
	return json_pack("{s:s, s:f, s:s, s:b, s:b}", "metric", r->metric, "better_by", r->better_by,
	                 "alias", r->alias, "approval", r->approval, "higher_is_better",
	                 loomi_registry_higher_is_better(r->metric));
}

const char *
loomi_deploy_action_name(loomi_deploy_action a)
{
	switch (a) {
	case LOOMI_DEPLOY_PROMOTED:
		return "promoted";
	case LOOMI_DEPLOY_PENDING:
		return "pending_approval";
	case LOOMI_DEPLOY_KEPT:
		return "kept";
	case LOOMI_DEPLOY_SKIPPED:
		return "skipped";
	case LOOMI_DEPLOY_ROLLED_BACK:
		return "rolled_back";
	}
	return "?";
}

bool
loomi_deploy_better(const char *metric, double value, double against, double better_by,
                    char **how)
{
	bool up = loomi_registry_higher_is_better(metric), better;
	double gain = up ? value - against : against - value;
	const char *dir = up ? "" : " (lower is better)";

	better = !isnan(gain) && gain > better_by;
	if (isnan(gain))
		*how = loomi_strdup("cannot be compared (not a number)");
	else if (better)
		*how = loomi_strfmt("better by %.6g > %g%s", gain, better_by, dir);
	else if (gain > 0)
		*how = loomi_strfmt("better by %.6g, not more than %g%s", gain, better_by, dir);
	else if (gain == 0)
		*how = loomi_strfmt("no better (equal)%s", dir);
	else
		*how = loomi_strfmt("worse by %.6g%s", -gain, dir);
	return better;
}

static double
number_of(const json_t *metrics, const char *name)
{
	const json_t *v = json_object_get(metrics, name);
	return json_is_number(v) ? json_number_value(v) : NAN;
}

/* The verdict of a comparison that was made: promote (or wait for
 * approval) when better, else keep. */
static void
judged(const loomi_deploy_rule *r, const loomi_deploy_facts *f, loomi_deploy_verdict *out,
       const char *where)
{
	char *how = NULL;
	bool better = loomi_deploy_better(r->metric, out->value, out->against_value, r->better_by,
	                                  &how);
	out->action = !better ? LOOMI_DEPLOY_KEPT
	              : r->approval ? LOOMI_DEPLOY_PENDING
	                            : LOOMI_DEPLOY_PROMOTED;
	out->reason = loomi_strfmt("%s %.6g against %.6g of version %lld%s: %s%s", r->metric,
	                           out->value, out->against_value, (long long)f->current, where, how,
	                           out->action == LOOMI_DEPLOY_PENDING ? "; waiting for approval"
	                                                               : "");
	free(how);
}

void
loomi_deploy_decide(const loomi_deploy_rule *r, const loomi_deploy_facts *f,
                    loomi_deploy_verdict *out)
{
	bool holdout = strncmp(r->metric, "holdout_", 8) == 0 &&
	               strncmp(r->metric, "holdout_init_", 13) != 0;

	memset(out, 0, sizeof *out);
	out->value = number_of(f->metrics, r->metric);
	out->against_value = NAN;
	if (isnan(out->value)) {
		out->action = LOOMI_DEPLOY_SKIPPED;
		out->reason = loomi_strfmt("version %lld has no %s (or it is not a number); nothing to "
		                           "judge it by",
		                           (long long)f->version, r->metric);
		return;
	}
	if (f->current == 0) {
		out->action = r->approval ? LOOMI_DEPLOY_PENDING : LOOMI_DEPLOY_PROMOTED;
		out->reason = loomi_strfmt("first version for the alias \"%s\" (%s %.6g)%s", r->alias,
		                           r->metric, out->value,
		                           r->approval ? "; waiting for approval" : "");
		return;
	}
	out->against = f->current;
	if (holdout && f->init_version == f->current) {
		/* both figures from this run, on the same shared holdout */
		char *init_name = loomi_strfmt("holdout_init_%s", r->metric + 8);
		out->against_value = number_of(f->metrics, init_name);
		if (!isnan(out->against_value)) {
			judged(r, f, out, ", both on the shared holdout of this version's run");
		} else {
			out->action = LOOMI_DEPLOY_SKIPPED;
			out->reason = loomi_strfmt("version %lld was trained from version %lld but has no "
			                           "%s (the init version's figure on the same holdout); "
			                           "not compared",
			                           (long long)f->version, (long long)f->current, init_name);
		}
		free(init_name);
		return;
	}
	out->against_value = number_of(f->current_metrics, r->metric);
	if (holdout) {
		/* each version's holdout is the test splits its own run had seen */
		char *from = f->init_version ? loomi_strfmt("version %lld", (long long)f->init_version)
		                             : loomi_strdup("scratch");
		out->action = LOOMI_DEPLOY_SKIPPED;
		if (isnan(out->against_value))
			out->reason = loomi_strfmt("%s %.6g; version %lld, the alias's, has none, and "
			                           "version %lld was trained from %s, not from it; not "
			                           "compared",
			                           r->metric, out->value, (long long)f->current,
			                           (long long)f->version, from);
		else
			out->reason = loomi_strfmt("%s %.6g against %.6g of version %lld, but the figures "
			                           "come from different data (version %lld was trained "
			                           "from %s, not from version %lld, the alias's); not "
			                           "promoted",
			                           r->metric, out->value, out->against_value,
			                           (long long)f->current, (long long)f->version, from,
			                           (long long)f->current);
		free(from);
		return;
	}
	if (isnan(out->against_value)) {
		out->action = LOOMI_DEPLOY_SKIPPED;
		out->reason = loomi_strfmt("%s %.6g; version %lld, the alias's, has no %s to compare "
		                           "with",
		                           r->metric, out->value, (long long)f->current, r->metric);
		return;
	}
	judged(r, f, out, "");
}

/* ------------------------------------------------------------------ the store */

static bool
read_rule(sqlite3 *db, int64_t model, loomi_deploy_rule *r, json_t **about)
{
	sqlite3_stmt *st = prep(db, "SELECT metric, better_by, alias, approval, updated_at, user"
	                            " FROM model_deploy_rules WHERE model_id = ?");
	bool yes = false;

	sqlite3_bind_int64(st, 1, model);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		memset(r, 0, sizeof *r);
		snprintf(r->metric, sizeof r->metric, "%s", (const char *)sqlite3_column_text(st, 0));
		r->better_by = sqlite3_column_double(st, 1);
		snprintf(r->alias, sizeof r->alias, "%s", (const char *)sqlite3_column_text(st, 2));
		r->approval = sqlite3_column_int(st, 3) != 0;
		if (about)
			*about = json_pack("{s:o, s:s}", "updated_at",
			                   iso_time(sqlite3_column_int64(st, 4)), "user",
			                   (const char *)sqlite3_column_text(st, 5));
		yes = true;
	}
	sqlite3_finalize(st);
	return yes;
}

json_t *
loomi_deploy_rule_of(sqlite3 *db, int64_t model)
{
	loomi_deploy_rule r;
	json_t *about = NULL, *o;
	if (!read_rule(db, model, &r, &about))
		return json_null();
	o = loomi_deploy_rule_json(&r);
	json_object_update(o, about);
	json_decref(about);
	return o;
}

bool
loomi_deploy_pending(sqlite3 *db, int64_t model, int64_t version)
{
	sqlite3_stmt *st = prep(db, "SELECT action = 'pending_approval' AND approved_by IS NULL"
	                            " FROM model_deploy_decisions WHERE model_id = ? AND version = ?"
	                            " AND check_id IS NULL ORDER BY id DESC LIMIT 1");
	bool yes = false;
	sqlite3_bind_int64(st, 1, model);
	sqlite3_bind_int64(st, 2, version);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		yes = sqlite3_column_int(st, 0) != 0;
	sqlite3_finalize(st);
	return yes;
}

/* Record a decision; *id: its row. */
static int
record(sqlite3 *db, int64_t model, int64_t version, const char *alias, const char *metric,
       const loomi_deploy_verdict *v, int64_t check, const char *user, int64_t now, int64_t *id,
       char **msg)
{
	sqlite3_stmt *st = prep(db, "INSERT INTO model_deploy_decisions (model_id, version, alias,"
	                            " action, against, metric, value, against_value, reason,"
	                            " check_id, at, user) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
	int rv;
	sqlite3_bind_int64(st, 1, model);
	sqlite3_bind_int64(st, 2, version);
	sqlite3_bind_text(st, 3, alias, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, loomi_deploy_action_name(v->action), -1, SQLITE_STATIC);
	if (v->against)
		sqlite3_bind_int64(st, 5, v->against);
	sqlite3_bind_text(st, 6, metric, -1, SQLITE_STATIC);
	bind_real(st, 7, v->value);
	bind_real(st, 8, v->against_value);
	sqlite3_bind_text(st, 9, v->reason, -1, SQLITE_STATIC);
	if (check)
		sqlite3_bind_int64(st, 10, check);
	sqlite3_bind_int64(st, 11, now);
	sqlite3_bind_text(st, 12, user, -1, SQLITE_STATIC);
	rv = step_done(db, st, msg, "record a deploy decision");
	if (rv == 0 && id)
		*id = sqlite3_last_insert_rowid(db);
	return rv;
}

#define DECISION_COLUMNS                                                                      \
	"id, version, alias, action, against, metric, value, against_value, reason, check_id,"  \
	" approved_by, approved_at, at, user"

static json_t *
decision_json(sqlite3_stmt *st)
{
	json_t *o = json_pack("{s:I, s:I, s:s, s:s, s:o, s:s, s:o, s:o, s:s, s:o, s:o}", "id",
	                      (json_int_t)sqlite3_column_int64(st, 0), "version",
	                      (json_int_t)sqlite3_column_int64(st, 1), "alias",
	                      (const char *)sqlite3_column_text(st, 2), "action",
	                      (const char *)sqlite3_column_text(st, 3), "against",
	                      int_or_null(st, 4), "metric", (const char *)sqlite3_column_text(st, 5),
	                      "value", real_or_null(st, 6), "against_value", real_or_null(st, 7),
	                      "reason", (const char *)sqlite3_column_text(st, 8), "check_id",
	                      int_or_null(st, 9), "approved_by", text_or_null(st, 10));
	json_object_set_new(o, "approved_at", sqlite3_column_type(st, 11) == SQLITE_NULL
	                                          ? json_null()
	                                          : iso_time(sqlite3_column_int64(st, 11)));
	json_object_set_new(o, "at", iso_time(sqlite3_column_int64(st, 12)));
	json_object_set_new(o, "user", json_string((const char *)sqlite3_column_text(st, 13)));
	return o;
}

static json_t *
decision_by_id(sqlite3 *db, int64_t id)
{
	sqlite3_stmt *st = prep(db, "SELECT " DECISION_COLUMNS " FROM model_deploy_decisions"
	                            " WHERE id = ?");
	json_t *o = json_null();
	sqlite3_bind_int64(st, 1, id);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		o = decision_json(st);
	sqlite3_finalize(st);
	return o;
}

/* A version's flat metrics and lineage. */
static void
version_facts(sqlite3 *db, int64_t model, int64_t version, json_t **metrics, json_t **lineage)
{
	sqlite3_stmt *st = prep(db, "SELECT metrics, lineage FROM model_versions"
	                            " WHERE model_id = ? AND version = ?");
	*metrics = NULL;
	if (lineage)
		*lineage = NULL;
	sqlite3_bind_int64(st, 1, model);
	sqlite3_bind_int64(st, 2, version);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		*metrics = json_column(st, 0);
		if (lineage)
			*lineage = json_column(st, 1);
	}
	sqlite3_finalize(st);
}

/* ------------------------------------------------------------------ a new version */

void
loomi_deploy_on_version(loomi_daemon *d, const char *name, int64_t model, int64_t version)
{
	sqlite3 *db = d->store.db;
	loomi_deploy_rule r;
	loomi_deploy_verdict v = {.reason = NULL};
	json_t *metrics = NULL, *lineage = NULL, *cur = NULL, *decision = NULL;
	int64_t from = 0, id = 0, now = loomi_wall_ms();
	bool has = false;
	char *msg = NULL;
	int rv;

	loomi_registry_hold();
	if ((rv = loomi_store_begin(db, true, &msg)) == 0) {
		has = read_rule(db, model, &r, NULL);
		if (has) {
			loomi_deploy_facts f = {.version = version};
			const json_t *init;
			version_facts(db, model, version, &metrics, &lineage);
			init = json_object_get(lineage, "init");
			/* trained from a version of this very model */
			if (json_is_string(json_object_get(init, "model")) &&
			    strcmp(json_string_value(json_object_get(init, "model")), name) == 0)
				f.init_version = json_integer_value(json_object_get(init, "version"));
			f.metrics = metrics;
			f.current = loomi_registry_alias_at(db, model, r.alias);
			if (f.current)
				version_facts(db, model, f.current, &cur, NULL);
			f.current_metrics = cur;
			loomi_deploy_decide(&r, &f, &v);
			if (v.action == LOOMI_DEPLOY_PROMOTED)
				rv = loomi_registry_move(db, name, model, r.alias, version,
				                         LOOMI_DEPLOY_USER, now, &from, &msg);
			if (rv == 0)
				rv = record(db, model, version, r.alias, r.metric, &v, 0, LOOMI_DEPLOY_USER,
				            now, &id, &msg);
			if (rv == 0)
				decision = decision_by_id(db, id);
		}
		rv = loomi_store_end(db, rv, &msg);
	}
	loomi_registry_release();
	if (rv != 0) {
		LOG_ERROR("registry: model \"%s\" version %lld: the deployment rule was not applied: %s",
		          name, (long long)version, msg ? msg : "?");
	} else if (has) {
		LOG_INFO("registry: model \"%s\" version %lld: deploy rule: %s (%s)", name,
		         (long long)version, loomi_deploy_action_name(v.action), v.reason);
		if (v.action == LOOMI_DEPLOY_PROMOTED)
			json_decref(loomi_registry_announce(d, name, r.alias, version, from, "promote",
			                                    LOOMI_DEPLOY_USER, now));
		if (d->bus && decision) {
			json_object_set_new(decision, "name", json_string(name));
			loomi_bus_publish_json(d->bus, "model.deploy", "loomd", decision);
		}
	}
	json_decref(decision);
	json_decref(metrics);
	json_decref(lineage);
	json_decref(cur);
	free(v.reason);
	free(msg);
}

/* ------------------------------------------------------------------ routes */

static void
answer(loomi_http_res *res, int rv, json_t *out, char *msg)
{
	loomi_api_answer(res, rv, out, msg, 200);
}

static int
no_rule(char **msg, const char *name)
{
	return fail(msg, LOOM_ENOENT,
	            "model \"%s\" has no deployment rule; set one with PUT "
	            "/api/v1/models/%s/deploy (loomctl models deploy %s --metric METRIC)",
	            name, name, name);
}

void
loomi_deploy_route_get(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3 *db = d->store.db;
	json_t *out = NULL;
	char *msg = NULL;
	int64_t id = 0;
	int rv;

	if (!loomi_registry_may(d, req, LOOMI_ACCESS_READ, res))
		return;
	loomi_registry_hold();
	if ((rv = loomi_store_begin(db, false, &msg)) == 0) {
		if ((rv = loomi_registry_find(db, req->params[0], &id, &msg)) == 0) {
			out = loomi_deploy_rule_of(db, id);
			if (json_is_null(out))
				rv = no_rule(&msg, req->params[0]);
		}
		rv = loomi_store_end(db, rv, &msg);
	}
	loomi_registry_release();
	if (rv == 0)
		json_object_set_new(out, "name", json_string(req->params[0]));
	else
		json_decref(out), out = NULL;
	answer(res, rv, out, msg);
}

void
loomi_deploy_route_put(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3 *db = d->store.db;
	json_t *body = loomi_api_json_body(req, res), *out = NULL;
	loomi_deploy_rule r;
	char *msg = NULL;
	int64_t id = 0;
	int rv;

	if (body == NULL)
		return;
	if (!loomi_registry_may(d, req, LOOMI_ACCESS_WRITE, res)) {
		json_decref(body);
		return;
	}
	rv = loomi_deploy_rule_parse(body, &r, &msg);
	json_decref(body);
	if (rv == 0) {
		loomi_registry_hold();
		if ((rv = loomi_store_begin(db, true, &msg)) == 0) {
			if ((rv = loomi_registry_find(db, req->params[0], &id, &msg)) == 0) {
				sqlite3_stmt *st = prep(db, "INSERT INTO model_deploy_rules (model_id, metric,"
				                            " better_by, alias, approval, updated_at, user)"
				                            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
				                            " ON CONFLICT (model_id) DO UPDATE SET metric = ?2,"
				                            " better_by = ?3, alias = ?4, approval = ?5,"
				                            " updated_at = ?6, user = ?7");
				sqlite3_bind_int64(st, 1, id);
				sqlite3_bind_text(st, 2, r.metric, -1, SQLITE_STATIC);
				sqlite3_bind_double(st, 3, r.better_by);
				sqlite3_bind_text(st, 4, r.alias, -1, SQLITE_STATIC);
				sqlite3_bind_int(st, 5, r.approval);
				sqlite3_bind_int64(st, 6, loomi_wall_ms());
				sqlite3_bind_text(st, 7, req->caller->name, -1, SQLITE_STATIC);
				rv = step_done(db, st, &msg, "store a deployment rule");
			}
			if (rv == 0)
				out = loomi_deploy_rule_of(db, id);
			rv = loomi_store_end(db, rv, &msg);
		}
		loomi_registry_release();
	}
	if (rv == 0) {
		json_object_set_new(out, "name", json_string(req->params[0]));
		loomi_audit(req->caller, "set the deployment rule of model \"%s\": %s by %g on %s%s",
		            req->params[0], r.metric, r.better_by, r.alias,
		            r.approval ? ", with approval" : "");
	} else {
		json_decref(out);
		out = NULL;
	}
	answer(res, rv, out, msg);
}

void
loomi_deploy_route_delete(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3 *db = d->store.db;
	char *msg = NULL;
	int64_t id = 0;
	int rv;

	if (!loomi_registry_may(d, req, LOOMI_ACCESS_WRITE, res))
		return;
	loomi_registry_hold();
	if ((rv = loomi_store_begin(db, true, &msg)) == 0) {
		if ((rv = loomi_registry_find(db, req->params[0], &id, &msg)) == 0) {
			sqlite3_stmt *st = prep(db, "DELETE FROM model_deploy_rules WHERE model_id = ?");
			sqlite3_bind_int64(st, 1, id);
			if ((rv = step_done(db, st, &msg, "delete a deployment rule")) == 0 &&
			    sqlite3_changes(db) == 0)
				rv = no_rule(&msg, req->params[0]);
		}
		rv = loomi_store_end(db, rv, &msg);
	}
	loomi_registry_release();
	if (rv == 0)
		loomi_audit(req->caller, "deleted the deployment rule of model \"%s\"", req->params[0]);
	answer(res, rv, rv == 0 ? json_pack("{s:s, s:b}", "name", req->params[0], "deleted", 1) : NULL,
	       msg);
}

void
loomi_deploy_route_decisions(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3 *db = d->store.db;
	json_t *list = json_array();
	char *msg = NULL;
	int64_t id = 0;
	int rv;

	if (!loomi_registry_may(d, req, LOOMI_ACCESS_READ, res)) {
		json_decref(list);
		return;
	}
	loomi_registry_hold();
	if ((rv = loomi_store_begin(db, false, &msg)) == 0) {
		if ((rv = loomi_registry_find(db, req->params[0], &id, &msg)) == 0) {
			sqlite3_stmt *st = prep(db, "SELECT " DECISION_COLUMNS " FROM model_deploy_decisions"
			                            " WHERE model_id = ? ORDER BY id DESC");
			sqlite3_bind_int64(st, 1, id);
			while (st && sqlite3_step(st) == SQLITE_ROW)
				json_array_append_new(list, decision_json(st));
			sqlite3_finalize(st);
		}
		rv = loomi_store_end(db, rv, &msg);
	}
	loomi_registry_release();
	if (rv == 0)
		answer(res, 0,
		       json_pack("{s:s, s:I, s:o}", "name", req->params[0], "total",
		                 (json_int_t)json_array_size(list), "decisions", list),
		       NULL);
	else {
		json_decref(list);
		answer(res, rv, NULL, msg);
	}
}

/* "3" or "v3"; 0 when it is neither. */
static int64_t
version_number(const char *text)
{
	const char *p = text[0] == 'v' ? text + 1 : text;
	char *end;
	long long v;
	if (*p < '1' || *p > '9')
		return 0;
	v = strtoll(p, &end, 10);
	return *end == '\0' && v > 0 ? v : 0;
}

void
loomi_deploy_route_approve(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3 *db = d->store.db;
	const char *name = req->params[0], *who = req->caller->name;
	int64_t id = 0, version = version_number(req->params[1]), pending = 0, from = 0, row = 0;
	int64_t now = loomi_wall_ms();
	loomi_deploy_verdict v = {.action = LOOMI_DEPLOY_PROMOTED};
	char alias[33] = "", metric[LOOMI_DEPLOY_METRIC_MAX + 1] = "", *msg = NULL;
	json_t *decision = NULL;
	int rv = 0;

	if (!loomi_registry_may(d, req, LOOMI_ACCESS_WRITE, res))
		return;
	if (version == 0) {
		answer(res, fail(&msg, LOOM_EINVAL, "\"%s\" is not a version number (like 3 or v3)",
		                 req->params[1]),
		       NULL, msg);
		return;
	}
	loomi_registry_hold();
	if ((rv = loomi_store_begin(db, true, &msg)) == 0) {
		sqlite3_stmt *st;
		if ((rv = loomi_registry_find(db, name, &id, &msg)) == 0) {
			st = prep(db, "SELECT id, action, alias, metric, reason, value, approved_by"
			              " FROM model_deploy_decisions WHERE model_id = ? AND version = ?"
			              " AND check_id IS NULL ORDER BY id DESC LIMIT 1");
			sqlite3_bind_int64(st, 1, id);
			sqlite3_bind_int64(st, 2, version);
			if (st && sqlite3_step(st) == SQLITE_ROW) {
				const char *action = (const char *)sqlite3_column_text(st, 1);
				if (strcmp(action, "pending_approval") == 0 &&
				    sqlite3_column_type(st, 6) == SQLITE_NULL) {
					pending = sqlite3_column_int64(st, 0);
					snprintf(alias, sizeof alias, "%s", sqlite3_column_text(st, 2));
					snprintf(metric, sizeof metric, "%s", sqlite3_column_text(st, 3));
					v.reason = loomi_strfmt("approved by %s: %s", who,
					                        (const char *)sqlite3_column_text(st, 4));
					v.value = sqlite3_column_type(st, 5) == SQLITE_NULL
					              ? NAN
					              : sqlite3_column_double(st, 5);
				} else {
					rv = fail(&msg, LOOM_EEXIST,
					          "version %lld of model \"%s\" is not pending approval (its "
					          "deploy decision: %s%s%s)",
					          (long long)version, name,
					          sqlite3_column_type(st, 6) == SQLITE_NULL ? action
					                                                    : "approved",
					          sqlite3_column_type(st, 6) == SQLITE_NULL ? ": " : " by ",
					          sqlite3_column_type(st, 6) == SQLITE_NULL
					              ? (const char *)sqlite3_column_text(st, 4)
					              : (const char *)sqlite3_column_text(st, 6));
				}
			} else {
				rv = fail(&msg, LOOM_EEXIST,
				          "version %lld of model \"%s\" is not pending approval (the "
				          "deployment rule has taken no decision about it); promote it with "
				          "POST /api/v1/models/%s/aliases/ALIAS instead",
				          (long long)version, name, name);
			}
			sqlite3_finalize(st);
		}
		if (rv == 0)
			rv = loomi_registry_move(db, name, id, alias, version, who, now, &from, &msg);
		if (rv == 0) {
			st = prep(db, "UPDATE model_deploy_decisions SET approved_by = ?, approved_at = ?"
			              " WHERE id = ?");
			sqlite3_bind_text(st, 1, who, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 2, now);
			sqlite3_bind_int64(st, 3, pending);
			rv = step_done(db, st, &msg, "record an approval");
		}
		if (rv == 0) {
			v.against = from;
			v.against_value = NAN;
			if (from) {
				json_t *m = NULL;
				version_facts(db, id, from, &m, NULL);
				v.against_value = number_of(m, metric);
				json_decref(m);
			}
			rv = record(db, id, version, alias, metric, &v, 0, who, now, &row, &msg);
		}
		if (rv == 0)
			decision = decision_by_id(db, row);
		rv = loomi_store_end(db, rv, &msg);
	}
	loomi_registry_release();
	free(v.reason);
	if (rv == 0) {
		json_t *move = loomi_registry_announce(d, name, alias, version, from, "promote", who, now);
		loomi_audit(req->caller, "approved version %lld of model \"%s\" for %s",
		            (long long)version, name, alias);
		answer(res, 0, json_pack("{s:o, s:o}", "move", move, "decision", decision), NULL);
	} else {
		json_decref(decision);
		answer(res, rv, NULL, msg);
	}
}

/* ------------------------------------------------------------------ checks */

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

void
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

void
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

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

/* the message of a failed call (defined below, for check.c too) */
#define fail loomi_deploy_fail

/* registry.c's store helpers (deploy.h) */
#define prep loomi_registry_prep
#define step_done loomi_registry_step_done
#define json_column loomi_registry_json_column
#define iso_time loomi_registry_iso_time

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

/* ------------------------------------------------------------------ for check.c */

/* The rollback checks (host/deploy/check.c) submit tasks, so they live
 * outside the registry; these are what they share with the rule here. */
bool
loomi_deploy_read_rule(sqlite3 *db, int64_t model, loomi_deploy_rule *r, json_t **about)
{
	return read_rule(db, model, r, about);
}

int
loomi_deploy_record(sqlite3 *db, int64_t model, int64_t version, const char *alias,
                    const char *metric, const loomi_deploy_verdict *v, int64_t check,
                    const char *user, int64_t now, int64_t *id, char **msg)
{
	return record(db, model, version, alias, metric, v, check, user, now, id, msg);
}

int
loomi_deploy_no_rule(char **msg, const char *name)
{
	return no_rule(msg, name);
}

void
loomi_deploy_answer(loomi_http_res *res, int rv, json_t *out, char *msg)
{
	answer(res, rv, out, msg);
}

int
loomi_deploy_fail(char **msg, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	free(*msg);
	*msg = loomi_vstrfmt(fmt, ap);
	va_end(ap);
	return code;
}

json_t *
loomi_deploy_real_or_null(sqlite3_stmt *st, int col)
{
	return real_or_null(st, col);
}

json_t *
loomi_deploy_text_or_null(sqlite3_stmt *st, int col)
{
	return text_or_null(st, col);
}

void
loomi_deploy_bind_real(sqlite3_stmt *st, int col, double x)
{
	bind_real(st, col, x);
}

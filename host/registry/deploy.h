/* The deployment rule of a model (docs/registry.md, "Deployment rule";
 * seed 001 §3.2.2): at most one rule per model,
 *
 *   {"metric": "holdout_accuracy", "better_by": 0.0, "alias": "production",
 *    "approval": false}
 *
 * (defaults: holdout_loss, 0, production, false).  Every new version of a
 * model with a rule gets a deploy decision, taken on the registry's
 * thread right after the version commits: promoted, pending_approval,
 * kept or skipped, with the reason in words and the figures.  A version
 * trained from the alias's version (train.init) is judged on the shared
 * holdout of its own run (holdout_<k> against holdout_init_<k>); any other
 * against the registered metric of the alias's version.  Lower is better
 * unless the name holds accuracy, f1, r2, precision, recall or auc (the
 * tags' rule).  A promotion goes through the registry's promote (in
 * model_alias_history and on the bus, user "deploy-rule").
 *
 * A check (POST …/deploy/check) predicts a labelled file with the alias's
 * version and the one before its newest promotion, as two batch
 * prediction tasks; read after both completed, it rolls the alias back
 * when the previous version is better by the rule ("rolled_back"), else
 * records "kept".  Checks settle when read, on the reader's thread. */
#ifndef LOOM_HOST_REGISTRY_DEPLOY_H
#define LOOM_HOST_REGISTRY_DEPLOY_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

#include "host/server/api.h"
#include "host/server/daemon.h"

#define LOOMI_DEPLOY_METRIC_MAX 100
#define LOOMI_DEPLOY_USER "deploy-rule"

typedef struct loomi_deploy_rule {
	char metric[LOOMI_DEPLOY_METRIC_MAX + 1];
	double better_by;
	char alias[33];
	bool approval;
} loomi_deploy_rule;

typedef enum loomi_deploy_action {
	LOOMI_DEPLOY_PROMOTED,
	LOOMI_DEPLOY_PENDING,  /* "pending_approval" */
	LOOMI_DEPLOY_KEPT,
	LOOMI_DEPLOY_SKIPPED,
	LOOMI_DEPLOY_ROLLED_BACK,
} loomi_deploy_action;

/* What a decision about a new version reads. */
typedef struct loomi_deploy_facts {
	int64_t version;                /* the new version */
	const json_t *metrics;          /* its flat metrics */
	int64_t init_version;           /* the version of this model its run started from
	                                 * (lineage init); 0: none */
	int64_t current;                /* the alias's version; 0: the alias is not set */
	const json_t *current_metrics;  /* that version's flat metrics, or NULL */
} loomi_deploy_facts;

typedef struct loomi_deploy_verdict {
	loomi_deploy_action action;
	int64_t against;            /* the version compared with; 0: none */
	double value, against_value; /* NAN where there is none */
	char *reason;               /* malloc'd */
} loomi_deploy_verdict;

/* A rule from a request body (absent fields take their defaults); 0, or
 * LOOM_EINVAL with *msg naming the field (with a did-you-mean). */
int loomi_deploy_rule_parse(const json_t *body, loomi_deploy_rule *out, char **msg);
json_t *loomi_deploy_rule_json(const loomi_deploy_rule *r);
/* The decision about f's version under r; free out->reason. */
void loomi_deploy_decide(const loomi_deploy_rule *r, const loomi_deploy_facts *f,
                         loomi_deploy_verdict *out);
const char *loomi_deploy_action_name(loomi_deploy_action a);
/* Is value better than against by more than better_by, for metric's
 * direction?  *how (malloc'd): "better by 0.022 > 0", "worse by 0.01" … */
bool loomi_deploy_better(const char *metric, double value, double against, double better_by,
                         char **how);

/* The module's side (registry.c): migration 22, the decision after a
 * version commits (on the registry's thread: no wait for the queue), the
 * rule and pending flag in a model's answer (in an open transaction), and
 * the routes. */
extern const char loomi_deploy_migration_sql[];
void loomi_deploy_on_version(loomi_daemon *d, const char *name, int64_t model, int64_t version);
json_t *loomi_deploy_rule_of(sqlite3 *db, int64_t model);
bool loomi_deploy_pending(sqlite3 *db, int64_t model, int64_t version);
void loomi_deploy_route_get(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res);
void loomi_deploy_route_put(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res);
void loomi_deploy_route_delete(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res);
void loomi_deploy_route_decisions(loomi_daemon *d, const loomi_http_req *req,
                                  loomi_http_res *res);
void loomi_deploy_route_approve(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res);
/* What deploy.c lends the rollback checks (host/deploy/check.c, which
 * submits batch predictions through the tasks service, so it lives outside
 * the registry): the rule, recording a decision, the store's helpers and
 * the routes' answer. */
bool loomi_deploy_read_rule(sqlite3 *db, int64_t model, loomi_deploy_rule *r, json_t **about);
int loomi_deploy_record(sqlite3 *db, int64_t model, int64_t version, const char *alias,
                        const char *metric, const loomi_deploy_verdict *v, int64_t check,
                        const char *user, int64_t now, int64_t *id, char **msg);
int loomi_deploy_no_rule(char **msg, const char *name);
void loomi_deploy_answer(loomi_http_res *res, int rv, json_t *out, char *msg);
int loomi_deploy_fail(char **msg, int code, const char *fmt, ...) LOOM_PRINTF(3, 4);
json_t *loomi_deploy_real_or_null(sqlite3_stmt *st, int col);
json_t *loomi_deploy_text_or_null(sqlite3_stmt *st, int col);
void loomi_deploy_bind_real(sqlite3_stmt *st, int col, double x);

/* What registry.c lends deploy.c: its lock (one operation at a time), the
 * wait for queued registrations, and alias moves inside an open
 * transaction (announce publishes a committed move and answers it). */
void loomi_registry_hold(void);
void loomi_registry_release(void);
void loomi_registry_wait(void);
int loomi_registry_find(sqlite3 *db, const char *name, int64_t *id, char **msg);
/* its store helpers: a statement prepared or run with the registry's
 * messages, a JSON text column, a time as ISO 8601 */
sqlite3_stmt *loomi_registry_prep(sqlite3 *db, const char *sql);
int loomi_registry_step_done(sqlite3 *db, sqlite3_stmt *st, char **msg, const char *what);
json_t *loomi_registry_json_column(sqlite3_stmt *st, int col);
json_t *loomi_registry_iso_time(int64_t ms);
int64_t loomi_registry_alias_at(sqlite3 *db, int64_t model, const char *alias);
/* The version alias pointed at before its newest promotion not undone
 * (what a rollback would move it to); 0: none. */
int64_t loomi_registry_previous(sqlite3 *db, int64_t model, const char *alias);
bool loomi_registry_higher_is_better(const char *metric);
int loomi_registry_alias_check(const char *alias, char **msg);
int loomi_registry_move(sqlite3 *db, const char *name, int64_t model, const char *alias,
                        int64_t version, const char *user, int64_t now, int64_t *from,
                        char **msg);
int loomi_registry_undo(sqlite3 *db, const char *name, int64_t model, const char *alias,
                        const char *user, int64_t now, int64_t *from, int64_t *to, char **msg);
json_t *loomi_registry_announce(loomi_daemon *d, const char *name, const char *alias, int64_t to,
                                int64_t from, const char *action, const char *user, int64_t now);

#endif /* LOOM_HOST_REGISTRY_DEPLOY_H */

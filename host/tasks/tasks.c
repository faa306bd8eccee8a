/* The tasks module: training tasks through the API (submit, list, status,
 * start, pause, resume, cancel), the resource pool, the WebSocket monitor,
 * and the tables of jobs.c.  jobs.c is the lifecycle and the scheduling
 * loop; monitor.c the WebSocket clients. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "host/core/util.h"
#include "host/server/api.h"
#include "host/server/module.h"
#include "tasks.h"
#include "monitor.h"

/* Never edit a migration that has shipped: add another.  The numbers are
 * global (module.h); 3 is configs', 7 and up are other modules'. */
static const loomi_migration migrations[] = {
	{1, "jobs, dependencies and job events",
	 "CREATE TABLE meta (\n"
	 "  key   TEXT PRIMARY KEY,\n"
	 "  value TEXT NOT NULL\n"
	 ") WITHOUT ROWID;\n"
	 "CREATE TABLE jobs (\n"
	 "  id            INTEGER PRIMARY KEY,\n"
	 "  name          TEXT NOT NULL,\n"
	 "  user          TEXT NOT NULL DEFAULT 'local',\n"
	 "  state         TEXT NOT NULL DEFAULT 'pending' CHECK (state IN\n"
	 "                  ('pending','running','paused','completed','failed','cancelled')),\n"
	 "  priority      INTEGER NOT NULL DEFAULT 0,\n"
	 "  compute       TEXT NOT NULL,\n"
	 "  spec          TEXT NOT NULL CHECK (json_valid(spec)),\n"
	 "  cpu_millis    INTEGER NOT NULL DEFAULT 1000 CHECK (cpu_millis >= 0),\n"
	 "  memory        INTEGER NOT NULL DEFAULT 0 CHECK (memory >= 0),\n"
	 "  gpu           INTEGER NOT NULL DEFAULT 0 CHECK (gpu >= 0),\n"
	 "  max_retries   INTEGER NOT NULL DEFAULT 0,\n"
	 "  attempts      INTEGER NOT NULL DEFAULT 0,\n"
	 "  timeout_ms    INTEGER NOT NULL DEFAULT 0,\n"
	 "  progress_step INTEGER NOT NULL DEFAULT 0,\n"
	 "  progress_total INTEGER NOT NULL DEFAULT 0,\n"
	 "  error         TEXT,\n"
	 "  created_at    INTEGER NOT NULL,\n"
	 "  updated_at    INTEGER NOT NULL,\n"
	 "  started_at    INTEGER,\n"
	 "  finished_at   INTEGER\n"
	 ");\n"
	 "CREATE INDEX jobs_by_state ON jobs (state, priority DESC, id);\n"
	 "CREATE INDEX jobs_by_user ON jobs (user, id);\n"
	 "CREATE TABLE job_deps (\n"
	 "  job_id   INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,\n"
	 "  after_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE RESTRICT,\n"
	 "  PRIMARY KEY (job_id, after_id),\n"
	 "  CHECK (job_id <> after_id)\n"
	 ") WITHOUT ROWID;\n"
	 "CREATE INDEX job_deps_by_after ON job_deps (after_id);\n"
	 "CREATE TABLE job_events (\n"
	 "  id         INTEGER PRIMARY KEY,\n"
	 "  job_id     INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,\n"
	 "  at         INTEGER NOT NULL,\n"
	 "  from_state TEXT,\n"
	 "  to_state   TEXT NOT NULL,\n"
	 "  reason     TEXT NOT NULL DEFAULT ''\n"
	 ");\n"
	 "CREATE INDEX job_events_by_job ON job_events (job_id, id);\n"},
	{2, "job execution: queueing, workers, progress and usage",
	 "ALTER TABLE jobs ADD COLUMN queued INTEGER NOT NULL DEFAULT 0;\n"
	 "ALTER TABLE jobs ADD COLUMN preemptible INTEGER NOT NULL DEFAULT 0;\n"
	 "ALTER TABLE jobs ADD COLUMN not_before INTEGER NOT NULL DEFAULT 0;\n"
	 "ALTER TABLE jobs ADD COLUMN worker_pid INTEGER NOT NULL DEFAULT 0;\n"
	 "ALTER TABLE jobs ADD COLUMN waiting_reason TEXT NOT NULL DEFAULT '';\n"
	 "ALTER TABLE jobs ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;\n"
	 "ALTER TABLE jobs ADD COLUMN epochs INTEGER NOT NULL DEFAULT 0;\n"
	 "ALTER TABLE jobs ADD COLUMN metrics TEXT NOT NULL DEFAULT '{}' "
	 "CHECK (json_valid(metrics));\n"
	 "ALTER TABLE jobs ADD COLUMN cpu_time_ms INTEGER NOT NULL DEFAULT 0;\n"
	 "ALTER TABLE jobs ADD COLUMN max_rss INTEGER NOT NULL DEFAULT 0;\n"
	 "CREATE TABLE job_logs (\n"
	 "  id      INTEGER PRIMARY KEY,\n"
	 "  job_id  INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,\n"
	 "  at      INTEGER NOT NULL,\n"
	 "  level   INTEGER NOT NULL,\n"
	 "  message TEXT NOT NULL\n"
	 ");\n"
	 "CREATE INDEX job_logs_by_job ON job_logs (job_id, id);\n"},
	{4, "tasks remember the config they were made from",
	 "ALTER TABLE jobs ADD COLUMN config_id INTEGER;\n"
	 "ALTER TABLE jobs ADD COLUMN config_version INTEGER;\n"},
	{5, "indexes for the scheduling loop with many tasks stored",
	 "CREATE INDEX jobs_queued ON jobs (queued, state);\n"
	 "CREATE INDEX jobs_by_started ON jobs (started_at);\n"},
	{6, "task counts per user and state, kept by triggers, for listing",
	 "CREATE TABLE job_counts (\n"
	 "  user  TEXT NOT NULL,\n"
	 "  state TEXT NOT NULL,\n"
	 "  n     INTEGER NOT NULL,\n"
	 "  PRIMARY KEY (user, state)\n"
	 ") WITHOUT ROWID;\n"
	 "INSERT INTO job_counts SELECT user, state, count(*) FROM jobs GROUP BY user, state;\n"
	 "CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN\n"
	 "  INSERT INTO job_counts VALUES (new.user, new.state, 1)\n"
	 "    ON CONFLICT (user, state) DO UPDATE SET n = n + 1;\n"
	 "END;\n"
	 "CREATE TRIGGER job_counts_update AFTER UPDATE OF state, user ON jobs\n"
	 "  WHEN old.state IS NOT new.state OR old.user IS NOT new.user BEGIN\n"
	 "  UPDATE job_counts SET n = n - 1 WHERE user = old.user AND state = old.state;\n"
	 "  INSERT INTO job_counts VALUES (new.user, new.state, 1)\n"
	 "    ON CONFLICT (user, state) DO UPDATE SET n = n + 1;\n"
	 "END;\n"
	 "CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN\n"
	 "  UPDATE job_counts SET n = n - 1 WHERE user = old.user AND state = old.state;\n"
	 "END;\n"
	 "CREATE INDEX jobs_by_state_id ON jobs (state, id);\n"},
	/* A task id is never used again, even if a task were deleted: the table
	 * rebuilt with AUTOINCREMENT (store.c runs migrations with foreign keys
	 * off, so job_deps, job_events and runs keep their rows), with its
	 * indexes and triggers, and the sequence at the highest id in use. */
	{11, "task ids are never reused (AUTOINCREMENT)",
	 "CREATE TABLE jobs_new (\n"
	 "  id            INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	 "  name          TEXT NOT NULL,\n"
	 "  user          TEXT NOT NULL DEFAULT 'local',\n"
	 "  state         TEXT NOT NULL DEFAULT 'pending' CHECK (state IN\n"
	 "                  ('pending','running','paused','completed','failed','cancelled')),\n"
	 "  priority      INTEGER NOT NULL DEFAULT 0,\n"
	 "  compute       TEXT NOT NULL,\n"
	 "  spec          TEXT NOT NULL CHECK (json_valid(spec)),\n"
	 "  cpu_millis    INTEGER NOT NULL DEFAULT 1000 CHECK (cpu_millis >= 0),\n"
	 "  memory        INTEGER NOT NULL DEFAULT 0 CHECK (memory >= 0),\n"
	 "  gpu           INTEGER NOT NULL DEFAULT 0 CHECK (gpu >= 0),\n"
	 "  max_retries   INTEGER NOT NULL DEFAULT 0,\n"
	 "  attempts      INTEGER NOT NULL DEFAULT 0,\n"
	 "  timeout_ms    INTEGER NOT NULL DEFAULT 0,\n"
	 "  progress_step INTEGER NOT NULL DEFAULT 0,\n"
	 "  progress_total INTEGER NOT NULL DEFAULT 0,\n"
	 "  error         TEXT,\n"
	 "  created_at    INTEGER NOT NULL,\n"
	 "  updated_at    INTEGER NOT NULL,\n"
	 "  started_at    INTEGER,\n"
	 "  finished_at   INTEGER,\n"
	 "  queued        INTEGER NOT NULL DEFAULT 0,\n"
	 "  preemptible   INTEGER NOT NULL DEFAULT 0,\n"
	 "  not_before    INTEGER NOT NULL DEFAULT 0,\n"
	 "  worker_pid    INTEGER NOT NULL DEFAULT 0,\n"
	 "  waiting_reason TEXT NOT NULL DEFAULT '',\n"
	 "  epoch         INTEGER NOT NULL DEFAULT 0,\n"
	 "  epochs        INTEGER NOT NULL DEFAULT 0,\n"
	 "  metrics       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metrics)),\n"
	 "  cpu_time_ms   INTEGER NOT NULL DEFAULT 0,\n"
	 "  max_rss       INTEGER NOT NULL DEFAULT 0,\n"
	 "  config_id     INTEGER,\n"
	 "  config_version INTEGER\n"
	 ");\n"
	 "INSERT INTO jobs_new SELECT id, name, user, state, priority, compute, spec, cpu_millis,\n"
	 "  memory, gpu, max_retries, attempts, timeout_ms, progress_step, progress_total, error,\n"
	 "  created_at, updated_at, started_at, finished_at, queued, preemptible, not_before,\n"
	 "  worker_pid, waiting_reason, epoch, epochs, metrics, cpu_time_ms, max_rss, config_id,\n"
	 "  config_version FROM jobs;\n"
	 "DROP TABLE jobs;\n"
	 "ALTER TABLE jobs_new RENAME TO jobs;\n"
	 "CREATE INDEX jobs_by_state ON jobs (state, priority DESC, id);\n"
	 "CREATE INDEX jobs_by_user ON jobs (user, id);\n"
	 "CREATE INDEX jobs_queued ON jobs (queued, state);\n"
	 "CREATE INDEX jobs_by_started ON jobs (started_at);\n"
	 "CREATE INDEX jobs_by_state_id ON jobs (state, id);\n"
	 "CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN\n"
	 "  INSERT INTO job_counts VALUES (new.user, new.state, 1)\n"
	 "    ON CONFLICT (user, state) DO UPDATE SET n = n + 1;\n"
	 "END;\n"
	 "CREATE TRIGGER job_counts_update AFTER UPDATE OF state, user ON jobs\n"
	 "  WHEN old.state IS NOT new.state OR old.user IS NOT new.user BEGIN\n"
	 "  UPDATE job_counts SET n = n - 1 WHERE user = old.user AND state = old.state;\n"
	 "  INSERT INTO job_counts VALUES (new.user, new.state, 1)\n"
	 "    ON CONFLICT (user, state) DO UPDATE SET n = n + 1;\n"
	 "END;\n"
	 "CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN\n"
	 "  UPDATE job_counts SET n = n - 1 WHERE user = old.user AND state = old.state;\n"
	 "END;\n"
	 LOOMI_SEQUENCE_AT_LEAST("jobs", "SELECT max(id) FROM jobs")},
};

static loomi_monitor *monitor;

/* ------------------------------------------------------------------ routes */

int64_t
loomi_jobs_param_id(const loomi_http_req *req, loomi_http_res *res)
{
	int64_t id = loomi_job_id_parse(req->params[0]);
	if (id <= 0)
		loomi_api_error(res, 404, "not_found",
		                "\"%s\" is not a task id; ids look like task-12 (GET "
		                "/api/v1/training/tasks lists them)",
		                req->params[0]);
	return id;
}

int64_t
loomi_jobs_param_task(loomi_daemon *d, const loomi_http_req *req, int access,
                      loomi_http_res *res)
{
	int64_t id = loomi_jobs_param_id(req, res);
	char *owner = NULL, canon[LOOMI_OBJECT_ID_MAX], what[80];

	if (id <= 0)
		return 0;
	snprintf(what, sizeof what, "task-%lld", (long long)id);
	if (loomi_jobs_owner(d, what, &owner, canon) != 0) {
		loomi_api_error(res, 404, "not_found", "there is no %s", what);
		return 0;
	}
	if (loomi_auth_object(d, req->caller, "task", canon, owner, access, what, res) != 0)
		id = 0;
	free(owner);
	return id;
}

static void
post_tasks(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_error_t je;
	json_t *body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
	char *msg = NULL;
	int64_t id = 0;
	int rv;

	if (body == NULL) {
		loomi_api_error(res, 400, "bad_request",
		                "the body is not valid JSON: %s (line %d, column %d)", je.text,
		                je.line, je.column);
		return;
	}
	rv = loomi_jobs_submit(d, body, req->caller, &id, &msg);
	json_decref(body);
	if (rv != 0) {
		/* LOOM_EIO: the store could not write; nothing was acknowledged */
		if (rv == LOOM_EPERM)
			loomi_audit(req->caller, "refused a task: %s", msg ? msg : "");
		loomi_api_error(res, rv == LOOM_ENOENT ? 404 : rv == LOOM_EINVAL ? 400 :
		                rv == LOOM_EPERM ? 403 : rv == LOOM_EIO ? 503 : 500,
		                rv == LOOM_ENOENT ? "not_found" : rv == LOOM_EINVAL ? "invalid" :
		                rv == LOOM_EPERM ? "forbidden" : rv == LOOM_EIO ? "unavailable" :
		                "internal", "%s",
		                msg ? msg : loom_strerror(rv));
		free(msg);
		return;
	}
	res->status = 201;
	res->body = loomi_jobs_get(d, id);
}

static void
get_tasks(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	char *status = loomi_query_get(req->query, "status"), *user = loomi_query_get(req->query, "user");
	char *msg = NULL;
	int64_t limit, offset;

	if (loomi_query_int(res, req->query, "limit", 50, 1, 1000, &limit) &&
	    loomi_query_int(res, req->query, "offset", 0, 0, INT64_MAX / 2, &offset)) {
		res->body = loomi_jobs_list(d, req->caller, status, user, limit, offset, &msg);
		if (res->body)
			res->status = 200;
		else
			loomi_api_error(res, 400, "bad_request", "%s", msg);
	}
	free(msg);
	free(status);
	free(user);
}

static void
get_task(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	int64_t id = loomi_jobs_param_task(d, req, LOOMI_ACCESS_READ, res);
	if (id <= 0)
		return;
	if ((res->body = loomi_jobs_get(d, id)) == NULL) {
		loomi_api_error(res, 404, "not_found", "there is no task-%lld", (long long)id);
		return;
	}
	res->status = 200;
}

static void
task_action(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res, const char *action)
{
	int64_t id = loomi_jobs_param_task(d, req, LOOMI_ACCESS_WRITE, res);
	char *msg = NULL;
	int rv;

	if (id <= 0)
		return;
	rv = loomi_jobs_action(d, id, action, &msg);
	if (rv == 0 || rv == LOOM_EBUSY) {
		res->status = rv == 0 ? 200 : 202;
		res->body = loomi_jobs_get(d, id);
		if (rv == LOOM_EBUSY && res->body)
			json_object_set_new(res->body, "message",
			                    json_pack("s", "the worker stops at its next step; GET the "
			                                   "task to see it happen"));
	} else {
		loomi_api_error(res, rv == LOOM_ENOENT ? 404 : rv == LOOM_ESTATE ? 409 :
		                rv == LOOM_EIO ? 503 : 500,
		                rv == LOOM_ENOENT ? "not_found" : rv == LOOM_ESTATE ? "conflict" :
		                rv == LOOM_EIO ? "unavailable" : "internal", "%s",
		                msg ? msg : loom_strerror(rv));
	}
	free(msg);
}

static void
post_start(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	task_action(d, req, res, "start");
}

static void
post_pause(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	task_action(d, req, res, "pause");
}

static void
post_resume(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	task_action(d, req, res, "resume");
}

static void
post_cancel(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	task_action(d, req, res, "cancel");
}

static void
get_resources(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *jobs, *j;
	size_t i;

	res->status = 200;
	res->body = loomi_jobs_resources(d);
	/* the pool's totals are everyone's; which tasks hold it, only those the
	 * caller may see */
	jobs = json_object_get(res->body, "jobs");
	if (req->caller->role == LOOMI_ROLE_ADMIN || !json_is_array(jobs))
		return;
	for (i = json_array_size(jobs); i-- > 0;) {
		char *owner = NULL, canon[LOOMI_OBJECT_ID_MAX];
		j = json_array_get(jobs, i);
		if (loomi_jobs_owner(d, json_string_value(json_object_get(j, "task_id")), &owner,
		                     canon) != 0 ||
		    !loomi_auth_may(d, req->caller, "task", canon, owner, LOOMI_ACCESS_READ))
			json_array_remove(jobs, i);
		free(owner);
	}
}

/* ------------------------------------------------------------------ the WebSocket monitor */

static int
ws_open(loomi_daemon *d, loomi_ws *ws, const loomi_http_request *req,
        const loomi_caller *caller, loomi_http_response *res)
{
	/* a task the caller may not see is as missing as one that is not */
	const char *p = req->path + strlen("/api/v1/training/tasks/");
	char idtext[64], *owner = NULL, canon[LOOMI_OBJECT_ID_MAX];
	size_t n = strcspn(p, "/");

	if (n < sizeof idtext) {
		memcpy(idtext, p, n);
		idtext[n] = '\0';
		if (loomi_jobs_owner(d, idtext, &owner, canon) == 0 &&
		    !loomi_auth_may(d, caller, "task", canon, owner, LOOMI_ACCESS_READ)) {
			free(owner);
			res->body = loomi_strdup("{\"error\":{\"code\":\"not_found\",\"message\":"
			                         "\"there is no such task; GET /api/v1/training/tasks "
			                         "lists them\"}}");
			res->body_len = strlen(res->body);
			return res->status = 404;
		}
		free(owner);
	}
	return loomi_monitor_handlers()->on_open(monitor, ws, req, res);
}

static void
ws_message(loomi_daemon *d, loomi_ws *ws, const char *data, size_t len, bool text)
{
	(void)d;
	loomi_monitor_handlers()->on_message(monitor, ws, data, len, text);
}

static void
ws_close(loomi_daemon *d, loomi_ws *ws)
{
	(void)d;
	loomi_monitor_handlers()->on_close(monitor, ws);
}

/* ------------------------------------------------------------------ the module */

static int
start(loomi_daemon *d, char **err)
{
	int rv;

	loomi_auth_register_kind("task", loomi_jobs_owner);
	if ((rv = loomi_jobs_start(d, err)) != 0)
		return rv;
	return loomi_monitor_start(d, &monitor, err);
}

static void
stop(loomi_daemon *d)
{
	/* the API has stopped: every WebSocket client is closed */
	loomi_monitor_stop(monitor);
	monitor = NULL;
	loomi_jobs_stop(d);
}

static const loomi_route routes[] = {
	{"GET", "/api/v1/resources", get_resources, LOOMI_ACCESS_READ, NULL},
	{"POST", "/api/v1/training/tasks", post_tasks, LOOMI_ACCESS_WRITE, NULL},
	{"GET", "/api/v1/training/tasks", get_tasks, LOOMI_ACCESS_READ, "status,user,limit,offset"},
	{"GET", "/api/v1/training/tasks/{id}", get_task, LOOMI_ACCESS_READ, NULL,
	 .reserve = true},
	{"POST", "/api/v1/training/tasks/{id}/start", post_start, LOOMI_ACCESS_WRITE, NULL},
	{"POST", "/api/v1/training/tasks/{id}/pause", post_pause, LOOMI_ACCESS_WRITE, NULL,
	 .reserve = true},
	{"POST", "/api/v1/training/tasks/{id}/resume", post_resume, LOOMI_ACCESS_WRITE, NULL},
	{"POST", "/api/v1/training/tasks/{id}/cancel", post_cancel, LOOMI_ACCESS_WRITE, NULL,
	 .reserve = true},
};

static const loomi_ws_route ws_routes[] = {
	{"/api/v1/training/tasks/{id}/monitor", ws_open, ws_message, ws_close, LOOMI_ACCESS_READ,
	 NULL},
};

const loomi_module loomi_tasks_module = {
	.name = "tasks",
	.migrations = migrations,
	.n_migrations = LOOMI_N(migrations),
	.start = start,
	.stop = stop,
	.routes = routes,
	.n_routes = LOOMI_N(routes),
	.ws_routes = ws_routes,
	.n_ws_routes = LOOMI_N(ws_routes),
};

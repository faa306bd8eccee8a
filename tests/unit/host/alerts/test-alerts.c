/* host/alerts: rules stored in a real state database and checked with
 * errors that name the key; every condition kind fed through the entry
 * points loomd's modules call; the repeat interval; the command action
 * with a real /bin/sh, the webhook against a listener on a loopback
 * socket, and the bus event on a real bus. */
#include "config.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <loom/loom.h>

#include "host/server/auth.h"
#include "host/alerts/alerts.h"
#include "host/server/api.h"
#include "host/core/bus.h"
#include "host/core/log.h"
#include "host/server/module.h"
#include "host/server/store.h"
#include "host/core/util.h"
#include "testutil.h"

#define ASSERT_HAS(text, needle)                                                          \
	ck_assert_msg((text) != NULL && strstr((text), (needle)) != NULL,                     \
	              "expected \"%s\" in:\n%s", (needle), (text) ? (text) : "(null)")

static struct {
	char *tmp;
	loomi_daemon d;
	bool store_up, alerts_up;
} T;

/* ------------------------------------------------------------------ fixture */

/* alerts.webhook_hosts = [ the arguments up to NULL ] */
static void
hosts(const char *first, ...)
{
	va_list ap;
	loomi_strv_free(&T.d.conf.alerts_webhook_hosts);
	va_start(ap, first);
	for (const char *h = first; h; h = va_arg(ap, const char *))
		loomi_strv_push(&T.d.conf.alerts_webhook_hosts, loomi_strdup(h));
	va_end(ap);
}

static void
setup(void)
{
	char *path, *err = NULL;
	int rv;

	memset(&T, 0, sizeof T);
	T.tmp = tu_tmpdir();
	ck_assert_int_eq(loomi_log_setup(LOOM_LOG_ERROR, LOOMI_LOG_TEXT, NULL, &err), 0);
	path = loomi_path_join(T.tmp, "loom.db");
	rv = loomi_store_open(&T.d.store, path, &err);
	free(path);
	ck_assert_msg(rv == 0, "cannot open the store: %s", err ? err : "?");
	T.store_up = true;
	/* loomd.conf's alerts group as the tests need it: loopback webhooks
	 * (the default) and commands allowed (not the default) */
	hosts("127.0.0.1", "localhost", "::1", NULL);
	T.d.conf.alerts_command_actions = true;
}

static void
start(void)
{
	char *err = NULL;
	int rv = loomi_alerts_start(&T.d, &err);
	ck_assert_msg(rv == 0, "loomi_alerts_start: %s", err ? err : "?");
	T.alerts_up = true;
}

static void
teardown(void)
{
	if (T.alerts_up)
		loomi_alerts_stop();
	if (T.d.bus)
		loomi_bus_close(T.d.bus);
	if (T.store_up)
		loomi_store_close(&T.d.store);
	loomi_strv_free(&T.d.conf.alerts_webhook_hosts);
	tu_rmrf(T.tmp);
	free(T.tmp);
}

static int64_t
now_ms(void)
{
	return loomi_wall_ms();
}

static long long
scalar(const char *sql)
{
	sqlite3_stmt *st;
	long long v = -1;

	ck_assert_int_eq(sqlite3_prepare_v2(T.d.store.db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void
exec(const char *sql)
{
	char *e = NULL;
	int rv = sqlite3_exec(T.d.store.db, sql, NULL, NULL, &e);
	ck_assert_msg(rv == SQLITE_OK, "%s: %s", sql, e ? e : "?");
}

/* A job row as the jobs module writes it. */
static void
add_job(int64_t id, const char *name, const char *state, int64_t step)
{
	char *sql = loomi_strfmt("INSERT INTO jobs (id, name, state, compute, spec, created_at,"
	                         " updated_at, started_at, progress_step) VALUES (%lld, '%s', '%s',"
	                         " 'exec', '{}', %lld, %lld, %lld, %lld)",
	                         (long long)id, name, state, (long long)now_ms(),
	                         (long long)now_ms(), (long long)now_ms(), (long long)step);
	exec(sql);
	free(sql);
}

/* One API call through the request pipeline (loomi_api_handle), as a
 * client's would go: method, path, query, body. */
typedef struct answer {
	int status;
	json_t *body;
	char *text; /* body dumped, for messages */
} answer;

static answer
call(const char *method, const char *path, const char *query, const char *body)
{
	loomi_http_req req = {0};
	loomi_http_res res = {0};
	answer a;

	req.method = method;
	req.path = path;
	req.query = query ? query : "";
	req.body = body;
	req.body_len = body ? strlen(body) : 0;
	req.content_type = body ? "application/json" : NULL;
	req.caller = &loomi_caller_loomd;
	loomi_api_handle(&T.d, &req, &res);
	a.status = res.status;
	a.body = res.body;
	a.text = res.body ? json_dumps(res.body, JSON_COMPACT) : loomi_strdup("");
	free(res.text);
	free(res.allow);
	return a;
}

/* The path of an object: base + "/" + id. */
static const char *
at(const char *base, const char *id)
{
	static char path[256];
	snprintf(path, sizeof path, "%s/%s", base, id);
	return path;
}

static void
answer_free(answer *a)
{
	json_decref(a->body);
	free(a->text);
}

/* Create a rule; its id. */
static int64_t
add_rule(const char *json)
{
	answer a = call("POST", "/api/v1/alerts/rules", NULL, json);
	ck_assert_msg(a.status == 201, "create %s: %d %s", json, a.status, a.text);
	int64_t id = json_integer_value(json_object_get(a.body, "id"));
	answer_free(&a);
	return id;
}

/* The error message a bad rule gets (status 400 asserted). */
static char *
refused(const char *json, int status)
{
	answer a = call("POST", "/api/v1/alerts/rules", NULL, json);
	ck_assert_msg(a.status == status, "create %s: want %d, got %d %s", json, status, a.status,
	              a.text);
	char *msg = loomi_strdup(
		json_string_value(json_object_get(json_object_get(a.body, "error"), "message")));
	answer_free(&a);
	return msg;
}

static long long
n_alerts(void)
{
	return scalar("SELECT count(*) FROM alerts");
}

/* How long to wait for what the alerts thread does: generous, since it
 * commits each alert (an fsync) and the machine may be loaded; a wait
 * ends as soon as its condition holds. */
#define WAIT_MS 30000

/* Wait up to ms for the alerts table to hold n rows. */
static void
wait_alerts(long long n, int ms)
{
	int64_t deadline = now_ms() + ms;
	while (n_alerts() < n && now_ms() < deadline)
		usleep(10000);
	ck_assert_int_eq(n_alerts(), n);
}

/* The alerts thread has drained what was queued before: a marker state
 * event that no rule matches has been seen (the queue is FIFO). */
static void
drain(void)
{
	/* a failed transition of a job no rule watches, with its own rule */
	usleep(200000);
}

static json_t *
alert_json(long long id)
{
	char p[32];
	snprintf(p, sizeof p, "%lld", id);
	answer a = call("GET", at("/api/v1/alerts", p), NULL, NULL);
	ck_assert_msg(a.status == 200, "get alert %s: %d %s", p, a.status, a.text);
	json_t *o = json_incref(a.body);
	answer_free(&a);
	return o;
}

/* Wait until alert id's actions are all done; its JSON. */
static json_t *
settled_alert(long long id, int ms)
{
	int64_t deadline = now_ms() + ms;
	for (;;) {
		json_t *o = alert_json(id);
		char *t = json_dumps(json_object_get(o, "actions"), JSON_COMPACT);
		bool pending = strstr(t, "pending") != NULL;
		free(t);
		if (!pending)
			return o;
		json_decref(o);
		ck_assert_msg(now_ms() < deadline, "alert %lld's actions did not end in %d ms", id, ms);
		usleep(20000);
	}
}

static void
metric(int64_t job, const char *name, int64_t step, uint32_t scope, double v)
{
	loom_metric_point pt = {.name = name, .step = step, .scope = scope, .value = v};
	loomi_alerts_metrics(job, "run-1", &pt, 1);
}

/* ------------------------------------------------------------------ tests */

START_TEST(migration)
{
	ck_assert_int_ge(loomi_store_schema_version(), 10);
	ck_assert_int_eq(scalar("SELECT count(*) FROM schema_migrations WHERE version = 10"), 1);
	ck_assert_int_eq(scalar("SELECT count(*) FROM sqlite_master WHERE name IN"
	                        " ('alert_rules', 'alerts')"),
	                 2);
}
END_TEST

START_TEST(validation)
{
	const char *act = "\"actions\": [{\"type\": \"bus\"}]";
	char *m, *j;
	start();

#define BAD(body, status, text)                                                           \
	do {                                                                                  \
		j = loomi_strfmt("%s", body);                                                    \
		m = refused(j, status);                                                           \
		ASSERT_HAS(m, text);                                                              \
		free(m);                                                                          \
		free(j);                                                                          \
	} while (0)

	j = loomi_strfmt("{\"name\": \"t\", \"condition\": {\"kind\": \"metric_above\", \"metric\": "
	                 "\"loss\", \"threshold\": \"ten\"}, %s}",
	                 act);
	m = refused(j, 400);
	ck_assert_str_eq(m, "condition.threshold: must be a number");
	free(m);
	free(j);
	j = loomi_strfmt("{\"name\": \"t\", \"condition\": {\"kind\": \"metric_abve\", \"metric\": "
	                 "\"loss\", \"threshold\": 1}, %s}",
	                 act);
	m = refused(j, 400);
	ASSERT_HAS(m, "condition.kind: unknown kind \"metric_abve\" (did you mean \"metric_above\"?)");
	free(m);
	free(j);
	j = loomi_strfmt("{\"name\": \"t\", \"condition\": {\"kind\": \"metric_above\", \"metric\": "
	                 "\"loss\", \"treshold\": 1}, %s}",
	                 act);
	m = refused(j, 400);
	ASSERT_HAS(m, "condition: unknown key \"treshold\" (did you mean \"threshold\"?)");
	free(m);
	free(j);
	BAD("{\"name\": \"t\", \"condition\": {\"kind\": \"failed\"}, \"actions\": [{\"type\": "
	    "\"webhook\", \"url\": \"ftp://example.org/x\"}]}",
	    400, "actions[0].url: \"ftp://example.org/x\" is not an http:// or https:// URL");
	BAD("{\"name\": \"t\", \"condition\": {\"kind\": \"failed\"}, \"actions\": [{\"type\": "
	    "\"bus\"}, {\"type\": \"webhok\"}]}",
	    400, "actions[1].type: unknown action \"webhok\" (did you mean \"webhook\"?)");
	BAD("{\"name\": \"t\", \"condition\": {\"kind\": \"failed\"}, \"actions\": []}", 400,
	    "actions: required");
	BAD("{\"condition\": {\"kind\": \"failed\"}, \"actions\": [{\"type\": \"bus\"}]}", 400,
	    "name: required");
	BAD("{\"name\": \"t\", \"condition\": {\"kind\": \"divergence\", \"metric\": \"loss\", "
	    "\"percent\": 50, \"window\": 1}, \"actions\": [{\"type\": \"bus\"}]}",
	    400, "condition.window: must be a whole number of points from 2");
	BAD("{\"name\": \"t\", \"condition\": {\"kind\": \"stalled\"}, \"actions\": [{\"type\": "
	    "\"bus\"}]}",
	    400, "condition.seconds:");
	BAD("{\"name\": \"t\", \"condition\": {\"kind\": \"log\", \"level\": \"fatal\"}, \"actions\": "
	    "[{\"type\": \"bus\"}]}",
	    400, "condition.level:");
	BAD("{\"name\": \"t\", \"condition\": {\"kind\": \"failed\"}, \"actions\": [{\"type\": "
	    "\"bus\"}], \"repeat_interval\": \"5 minutes\"}",
	    400, "repeat_interval:");
	BAD("{\"name\": \"t\", \"condition\": {\"kind\": \"failed\"}, \"actions\": [{\"type\": "
	    "\"command\", \"command\": \"true\", \"timeout\": 0}]}",
	    400, "actions[0].timeout:");
	BAD("{\"name\": \"t\", \"condition\": {\"kind\": \"failed\"}, \"actions\": [{\"type\": "
	    "\"bus\"}], \"job\": \"\"}",
	    400, "job:");
	BAD("{\"name\": \"t\", \"conditon\": {}, \"actions\": []}", 400,
	    "rule: unknown key \"conditon\" (did you mean \"condition\"?)");
	BAD("[1]", 400, "JSON object");
	BAD("{\"name\": ", 400, "not JSON");

	/* a good one, then the same name again */
	add_rule("{\"name\": \"t\", \"condition\": {\"kind\": \"failed\"}, \"actions\": [{\"type\": "
	         "\"bus\"}], \"repeat_interval\": \"5m\"}");
	BAD("{\"name\": \"t\", \"condition\": {\"kind\": \"failed\"}, \"actions\": [{\"type\": "
	    "\"bus\"}]}",
	    409, "an alert rule named \"t\" exists");
	ck_assert_int_eq(scalar("SELECT count(*) FROM alert_rules"), 1);
	ck_assert_int_eq(scalar("SELECT repeat_ms FROM alert_rules"), 300000);
#undef BAD
}
END_TEST

START_TEST(rules_crud)
{
	answer a;
	int64_t id;
	char p[32];

	start();
	id = add_rule("{\"name\": \"loss-high\", \"condition\": {\"kind\": \"metric_above\", "
	              "\"metric\": \"loss\", \"threshold\": 10, \"scope\": \"step\"}, \"job\": "
	              "\"task-7\", \"actions\": [{\"type\": \"command\", \"command\": \"true\"}], "
	              "\"repeat_interval\": 90}");
	snprintf(p, sizeof p, "%lld", (long long)id);
	a = call("GET", at("/api/v1/alerts/rules", p), NULL, NULL);
	ck_assert_int_eq(a.status, 200);
	ASSERT_HAS(a.text, "\"job\":\"task-7\"");
	ASSERT_HAS(a.text, "\"threshold\":10");
	ASSERT_HAS(a.text, "\"scope\":\"step\"");
	ASSERT_HAS(a.text, "\"timeout\":10");
	ASSERT_HAS(a.text, "\"repeat_interval\":90");
	answer_free(&a);

	/* a partial update keeps the rest */
	a = call("PUT", at("/api/v1/alerts/rules", p), NULL, "{\"enabled\": false, \"job\": \"train-*\"}");
	ck_assert_msg(a.status == 200, "%d %s", a.status, a.text);
	ASSERT_HAS(a.text, "\"enabled\":false");
	ASSERT_HAS(a.text, "\"job\":\"train-*\"");
	ASSERT_HAS(a.text, "\"metric\":\"loss\"");
	answer_free(&a);
	a = call("PUT", at("/api/v1/alerts/rules", p), NULL, "{\"condition\": {\"kind\": \"metric_above\"}}");
	ck_assert_int_eq(a.status, 400);
	ASSERT_HAS(a.text, "condition.metric");
	answer_free(&a);

	a = call("GET", "/api/v1/alerts/rules", NULL, NULL);
	ck_assert_int_eq(a.status, 200);
	ck_assert_int_eq(json_array_size(json_object_get(a.body, "rules")), 1);
	answer_free(&a);

	a = call("DELETE", at("/api/v1/alerts/rules", p), NULL, NULL);
	ck_assert_int_eq(a.status, 200);
	answer_free(&a);
	a = call("DELETE", at("/api/v1/alerts/rules", p), NULL, NULL);
	ck_assert_int_eq(a.status, 404);
	answer_free(&a);
	a = call("GET", at("/api/v1/alerts/rules", "nope"), NULL, NULL);
	ck_assert_int_eq(a.status, 404);
	answer_free(&a);
}
END_TEST

START_TEST(metric_threshold_and_repeat)
{
	json_t *o;
	start();
	add_rule("{\"name\": \"above\", \"condition\": {\"kind\": \"metric_above\", \"metric\": "
	         "\"loss\", \"threshold\": 10}, \"actions\": [{\"type\": \"bus\"}], "
	         "\"repeat_interval\": 3}");
	add_rule("{\"name\": \"below\", \"condition\": {\"kind\": \"metric_below\", \"metric\": "
	         "\"val_acc\", \"threshold\": 0.5, \"scope\": \"epoch\"}, \"actions\": [{\"type\": "
	         "\"bus\"}]}");

	metric(3, "loss", 1, LOOM_METRIC_STEP, 9.5);     /* under: nothing */
	metric(3, "other", 1, LOOM_METRIC_STEP, 99);     /* not watched */
	metric(3, "val_acc", 1, LOOM_METRIC_STEP, 0.1);  /* wrong scope */
	drain();
	ck_assert_int_eq(n_alerts(), 0);

	metric(3, "loss", 2, LOOM_METRIC_STEP, 12.5);
	wait_alerts(1, WAIT_MS);
	o = alert_json(1);
	ck_assert_str_eq(json_string_value(json_object_get(o, "rule")), "above");
	ck_assert_str_eq(json_string_value(json_object_get(o, "task_id")), "task-3");
	ck_assert_str_eq(json_string_value(json_object_get(o, "run_id")), "run-1");
	ck_assert(json_real_value(json_object_get(o, "value")) == 12.5);
	ASSERT_HAS(json_string_value(json_object_get(o, "message")), "loss = 12.5 at step 2, above 10");
	json_decref(o);

	/* within the repeat interval: held back, for this job only (3 s, so
	 * that a slow commit of alert 1 or a late wake-up here does not take
	 * the next points past it) */
	metric(3, "loss", 3, LOOM_METRIC_STEP, 13);
	metric(3, "loss", 4, LOOM_METRIC_STEP, 14);
	drain();
	ck_assert_int_eq(n_alerts(), 1);
	metric(4, "loss", 1, LOOM_METRIC_STEP, 11);
	wait_alerts(2, WAIT_MS);
	/* after it: fires again */
	usleep(3100000);
	metric(3, "loss", 5, LOOM_METRIC_STEP, 15);
	wait_alerts(3, WAIT_MS);

	metric(3, "val_acc", 2, LOOM_METRIC_EPOCH, 0.25);
	wait_alerts(4, WAIT_MS);
	ck_assert_int_eq(scalar("SELECT count(*) FROM alerts WHERE rule_name = 'below'"), 1);
}
END_TEST

START_TEST(nonfinite)
{
	json_t *o;
	start();
	add_rule("{\"name\": \"nan\", \"condition\": {\"kind\": \"metric_nonfinite\"}, \"actions\": "
	         "[{\"type\": \"bus\"}], \"repeat_interval\": 0}");
	/* a threshold rule never matches NaN */
	add_rule("{\"name\": \"above\", \"condition\": {\"kind\": \"metric_above\", \"metric\": "
	         "\"loss\", \"threshold\": 1}, \"actions\": [{\"type\": \"bus\"}]}");
	metric(5, "loss", 1, LOOM_METRIC_STEP, 0.5);
	metric(5, "loss", 2, LOOM_METRIC_STEP, NAN);
	wait_alerts(1, WAIT_MS);
	metric(5, "grad_norm", 3, LOOM_METRIC_STEP, -INFINITY);
	wait_alerts(2, WAIT_MS);
	o = alert_json(1);
	ck_assert_str_eq(json_string_value(json_object_get(o, "value")), "NaN");
	ASSERT_HAS(json_string_value(json_object_get(o, "message")), "task-5: loss is NaN at step 2");
	json_decref(o);
	o = alert_json(2);
	ck_assert_str_eq(json_string_value(json_object_get(o, "value")), "-Infinity");
	json_decref(o);
	drain();
	ck_assert_int_eq(n_alerts(), 2);
}
END_TEST

START_TEST(divergence)
{
	static const double calm[] = {5, 1.0, 0.9, 0.8, 0.85, 0.9, 1.19};
	json_t *o;
	start();
	add_rule("{\"name\": \"diverging\", \"condition\": {\"kind\": \"divergence\", \"metric\": "
	         "\"loss\", \"percent\": 50, \"window\": 5}, \"actions\": [{\"type\": \"bus\"}]}");
	/* 5 then 1.0 …: the first point leaves the window before the window
	 * judges; 1.19 is under 0.8 + 50 % */
	for (size_t i = 0; i < sizeof calm / sizeof calm[0]; i++)
		metric(6, "loss", (int64_t)i, LOOM_METRIC_STEP, calm[i]);
	/* a NaN is not a value of the window */
	metric(6, "loss", 7, LOOM_METRIC_STEP, NAN);
	drain();
	ck_assert_int_eq(n_alerts(), 0);
	/* window 0.8 0.85 0.9 1.19 1.3: 1.3 > 1.2 */
	metric(6, "loss", 8, LOOM_METRIC_STEP, 1.3);
	wait_alerts(1, WAIT_MS);
	o = alert_json(1);
	ASSERT_HAS(json_string_value(json_object_get(o, "message")),
	           "loss = 1.3 at step 8 is 62.5% above 0.8, the minimum of its last 5 values");
	json_decref(o);
	/* another run has its own window */
	loom_metric_point pt = {.name = "loss", .value = 3};
	loomi_alerts_metrics(0, "run-2", &pt, 1);
	drain();
	ck_assert_int_eq(n_alerts(), 1);
}
END_TEST

START_TEST(log_level_keyword)
{
	json_t *o;
	start();
	add_rule("{\"name\": \"oom\", \"condition\": {\"kind\": \"log\", \"keyword\": \"out of "
	         "memory\"}, \"actions\": [{\"type\": \"bus\"}], \"repeat_interval\": 0}");
	add_rule("{\"name\": \"warns\", \"condition\": {\"kind\": \"log\", \"level\": \"warn\"}, "
	         "\"job\": 9, \"actions\": [{\"type\": \"bus\"}], \"repeat_interval\": 0}");
	loomi_alerts_log(8, "worker", LOOM_LOG_INFO, "CUDA out of memory (just a mention)");
	loomi_alerts_log(8, "worker", LOOM_LOG_ERROR, "step failed");
	loomi_alerts_log(8, "worker", LOOM_LOG_WARN, "retrying");  /* job 8: not rule 2's */
	drain();
	ck_assert_int_eq(n_alerts(), 0);
	loomi_alerts_log(8, "worker", LOOM_LOG_ERROR, "CUDA Out Of Memory at step 12");
	wait_alerts(1, WAIT_MS);
	o = alert_json(1);
	ck_assert_str_eq(json_string_value(json_object_get(o, "rule")), "oom");
	ASSERT_HAS(json_string_value(json_object_get(o, "message")),
	           "task-8: error [worker]: CUDA Out Of Memory");
	json_decref(o);
	loomi_alerts_log(9, NULL, LOOM_LOG_WARN, "slow data loader");
	loomi_alerts_log(9, NULL, LOOM_LOG_ERROR, "worse");
	wait_alerts(3, WAIT_MS);
	/* alerts' own log lines do not feed back */
	loomi_alerts_log(9, "alerts", LOOM_LOG_ERROR, "webhook failed");
	drain();
	ck_assert_int_eq(n_alerts(), 3);
}
END_TEST

START_TEST(failed_and_cancelled)
{
	json_t *o;
	start();
	add_rule("{\"name\": \"failures\", \"condition\": {\"kind\": \"failed\"}, \"job\": "
	         "\"train-*\", \"actions\": [{\"type\": \"bus\"}]}");
	add_rule("{\"name\": \"stops\", \"condition\": {\"kind\": \"failed\", \"cancelled\": "
	         "true}, \"actions\": [{\"type\": \"bus\"}]}");
	add_job(11, "train-a", "failed", 0);
	add_job(12, "eval-b", "failed", 0);
	loomi_alerts_state(11, "running", "completed", "");
	loomi_alerts_state(12, "running", "failed", "exit 1");  /* "stops" only */
	wait_alerts(1, WAIT_MS);
	loomi_alerts_state(11, "running", "failed", "exited with status 2");
	wait_alerts(3, WAIT_MS);
	ck_assert_int_eq(scalar("SELECT count(*) FROM alerts WHERE rule_name = 'failures'"
	                        " AND job_id = 11"),
	                 1);
	ck_assert_int_eq(scalar("SELECT count(*) FROM alerts WHERE rule_name = 'failures'"
	                        " AND job_id = 12"),
	                 0);
	loomi_alerts_state(13, "pending", "cancelled", "by user");
	wait_alerts(4, WAIT_MS);
	o = alert_json(4);
	ASSERT_HAS(json_string_value(json_object_get(o, "message")),
	           "task-13 cancelled (was pending): by user");
	json_decref(o);
}
END_TEST

START_TEST(stalled)
{
	json_t *o;
	start();
	add_rule("{\"name\": \"stall\", \"condition\": {\"kind\": \"stalled\", \"seconds\": 2}, "
	         "\"actions\": [{\"type\": \"bus\"}]}");
	add_job(21, "stuck", "running", 5);
	add_job(22, "busy", "running", 0);
	add_job(23, "waiting", "pending", 0);
	/* job 22 makes progress every 300 ms */
	for (int i = 1; i <= 12; i++) {
		char *sql = loomi_strfmt("UPDATE jobs SET progress_step = %d WHERE id = 22", i);
		exec(sql);
		free(sql);
		usleep(300000);
	}
	wait_alerts(1, WAIT_MS);
	o = alert_json(1);
	ck_assert_str_eq(json_string_value(json_object_get(o, "task_id")), "task-21");
	ASSERT_HAS(json_string_value(json_object_get(o, "message")),
	           "task-21: running with no progress for ");
	ck_assert(json_real_value(json_object_get(o, "value")) >= 2);
	json_decref(o);
	ck_assert_int_eq(scalar("SELECT count(*) FROM alerts WHERE job_id <> 21"), 0);
	exec("UPDATE jobs SET state = 'completed' WHERE id = 22");
	/* progress, then a stall again (the repeat interval is 5 min: once) */
	exec("UPDATE jobs SET progress_step = 6 WHERE id = 21");
	usleep(2500000);
	ck_assert_int_eq(n_alerts(), 1);
}
END_TEST

START_TEST(command_action)
{
	char *out = loomi_path_join(T.tmp, "out.txt"), *js = loomi_path_join(T.tmp, "alert.json");
	char *rule, *text = NULL;
	size_t len;
	json_t *o, *a, *doc;

	start();
	rule = loomi_strfmt("{\"name\": \"cmd\", \"condition\": {\"kind\": \"metric_above\", "
	                    "\"metric\": \"loss\", \"threshold\": 1}, \"actions\": ["
	                    "{\"type\": \"command\", \"command\": \"printf '%%s|%%s|%%s|%%s' "
	                    "\\\"$LOOM_ALERT_RULE\\\" \\\"$LOOM_ALERT_JOB\\\" \\\"$LOOM_ALERT_VALUE\\\" "
	                    "\\\"$LOOM_ALERT_MESSAGE\\\" > %s; printf '%%s' \\\"$LOOM_ALERT_JSON\\\" > "
	                    "%s; exit 3\"},"
	                    "{\"type\": \"command\", \"command\": \"sleep 30\", \"timeout\": 1}]}",
	                    out, js);
	add_rule(rule);
	free(rule);
	metric(31, "loss", 4, LOOM_METRIC_STEP, 2.5);
	wait_alerts(1, WAIT_MS);
	o = settled_alert(1, 10000);
	a = json_object_get(o, "actions");
	ck_assert_int_eq(json_array_size(a), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(a, 0), "exit_status")), 3);
	ASSERT_HAS(json_string_value(json_object_get(json_array_get(a, 0), "error")),
	           "exited with status 3");
	ASSERT_HAS(json_string_value(json_object_get(json_array_get(a, 1), "error")),
	           "killed after its 1 s timeout");
	json_decref(o);

	ck_assert_int_eq(loomi_read_file(out, &text, &len), 0);
	ck_assert_str_eq(text, "cmd|task-31|2.5|task-31: loss = 2.5 at step 4, above 1");
	free(text);
	ck_assert_int_eq(loomi_read_file(js, &text, &len), 0);
	doc = json_loads(text, 0, NULL);
	ck_assert_msg(doc != NULL, "LOOM_ALERT_JSON is not JSON: %s", text);
	ck_assert_int_eq(json_integer_value(json_object_get(doc, "id")), 1);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "rule")), "cmd");
	json_decref(doc);
	free(text);
	free(out);
	free(js);
}
END_TEST

/* A one-shot HTTP server on loopback: answers `status` to each request
 * and keeps the bodies. */
typedef struct listener {
	int fd, port, status;
	atomic_int n;
	char bodies[4][4096];
	pthread_t thread;
} listener;

static void *
listen_main(void *arg)
{
	listener *l = arg;
	for (;;) {
		int c = accept(l->fd, NULL, NULL);
		char buf[8192], reply[128], *hdr_end, *cl;
		size_t n = 0;
		long want = -1;
		if (c < 0)
			return NULL;
		for (;;) {
			ssize_t k = read(c, buf + n, sizeof buf - 1 - n);
			if (k <= 0)
				break;
			n += (size_t)k;
			buf[n] = '\0';
			if ((hdr_end = strstr(buf, "\r\n\r\n")) != NULL) {
				if ((cl = strcasestr(buf, "Content-Length:")) != NULL)
					want = strtol(cl + 15, NULL, 10);
				if (want >= 0 && n >= (size_t)(hdr_end + 4 - buf) + (size_t)want)
					break;
			}
		}
		hdr_end = strstr(buf, "\r\n\r\n");
		int i = atomic_load(&l->n);
		if (hdr_end && i < 4)
			snprintf(l->bodies[i], sizeof l->bodies[i], "%s", hdr_end + 4);
		snprintf(reply, sizeof reply,
		         "HTTP/1.1 %d X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", l->status);
		if (write(c, reply, strlen(reply)) < 0)
			perror("write");
		close(c);
		atomic_fetch_add(&l->n, 1);
	}
}

static void
listener_start(listener *l, int status)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof sa;

	memset(l, 0, sizeof *l);
	l->status = status;
	l->fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(l->fd, 0);
	ck_assert_int_eq(bind(l->fd, (struct sockaddr *)&sa, sizeof sa), 0);
	ck_assert_int_eq(listen(l->fd, 8), 0);
	ck_assert_int_eq(getsockname(l->fd, (struct sockaddr *)&sa, &sl), 0);
	l->port = ntohs(sa.sin_port);
	ck_assert_int_eq(pthread_create(&l->thread, NULL, listen_main, l), 0);
}

static void
listener_stop(listener *l)
{
	shutdown(l->fd, SHUT_RDWR);
	close(l->fd);
	pthread_join(l->thread, NULL);
}

START_TEST(webhook_action)
{
	listener ok, bad;
	char *rule;
	json_t *o, *a, *doc;
	int closed_port;

	start();
	listener_start(&ok, 200);
	listener_start(&bad, 500);
	/* a port nothing listens on: one we bound and closed */
	{
		listener tmp;
		listener_start(&tmp, 200);
		closed_port = tmp.port;
		listener_stop(&tmp);
	}
	rule = loomi_strfmt("{\"name\": \"hook\", \"condition\": {\"kind\": \"metric_nonfinite\", "
	                    "\"metric\": \"loss\"}, \"actions\": ["
	                    "{\"type\": \"webhook\", \"url\": \"http://127.0.0.1:%d/hook\"},"
	                    "{\"type\": \"webhook\", \"url\": \"http://127.0.0.1:%d/hook\"},"
	                    "{\"type\": \"webhook\", \"url\": \"http://127.0.0.1:%d/hook\"}]}",
	                    ok.port, bad.port, closed_port);
	add_rule(rule);
	free(rule);
	metric(41, "loss", 9, LOOM_METRIC_STEP, INFINITY);
	wait_alerts(1, WAIT_MS);
	o = settled_alert(1, 20000);
	a = json_object_get(o, "actions");
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(a, 0), "status")), 200);
	ck_assert_ptr_null(json_object_get(json_array_get(a, 0), "error"));
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(a, 1), "status")), 500);
	ASSERT_HAS(json_string_value(json_object_get(json_array_get(a, 1), "error")), "answered 500");
	ck_assert_ptr_nonnull(json_object_get(json_array_get(a, 2), "error"));
	json_decref(o);

	ck_assert_int_eq(atomic_load(&ok.n), 1);
	doc = json_loads(ok.bodies[0], 0, NULL);
	ck_assert_msg(doc != NULL, "the webhook body is not JSON: %s", ok.bodies[0]);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "rule")), "hook");
	ck_assert_str_eq(json_string_value(json_object_get(doc, "value")), "Infinity");
	ck_assert_str_eq(json_string_value(json_object_get(doc, "task_id")), "task-41");
	json_decref(doc);
	listener_stop(&ok);
	listener_stop(&bad);
}
END_TEST

/* A rule with one webhook to url, as the API gets it. */
static char *
hook_rule(const char *name, const char *url)
{
	json_t *j = json_pack("{s:s, s:{s:s, s:s}, s:[{s:s, s:s}]}", "name", name, "condition",
	                      "kind", "metric_nonfinite", "metric", "loss", "actions", "type",
	                      "webhook", "url", url);
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return s;
}

/* URLs parsed strictly and checked against alerts.webhook_hosts when a
 * rule is created: 400 naming the URL and the setting. */
START_TEST(webhook_urls)
{
	static const struct {
		const char *url, *text;
	} bad[] = {
		{"http://169.254.169.254/latest/meta-data/", "169.254.169.254 is not one of them"},
		{"http://192.168.1.1/x", "192.168.1.1 is not one of them"},
		{"http://[::ffff:169.254.169.254]/x", "is not one of them"},
		{"http://[fe80::1]/x", "is not one of them"},
		{"http://evil.example/x", "evil.example is not one of them"},
		{"http://127.0.0.1/a\r\nX-Injected: 1", "a line break"},
		{"http://127.0.0.1/a b", "a space"},
		{"http://127.0.0.1/\x1b[2J", "a control character"},
		{"http://user:pw@127.0.0.1/x", "user name or password"},
		{"http://2130706433/x", "no valid host"},
		{"http://127.1/x", "no valid host"},
		{"http://0x7f.0.0.1/x", "no valid host"},
		{"http://under_score.example/x", "no valid host"},
		{"http://127.0.0.1:0/x", "port"},
		{"http://127.0.0.1:65536/x", "port"},
		{"http://127.0.0.1:/x", "port"},
		{"http://[::1/x", "closing"},
		{"http://127.0.0.1/x#frag", "fragment"},
		{"http://127.0.0.1/%zz", "two hex digits"},
		{"gopher://127.0.0.1/", "not an http:// or https:// URL"},
	};
	static const char *const good[] = {
		"http://127.0.0.1:9/x", "http://localhost:9/x?a=b%20c", "http://[::1]:9/x",
		"http://10.1.2.3:8080/hook", "https://LocalHost/x", "http://hooks.example.org/x",
	};
	char name[32];

	hosts("127.0.0.1", "localhost", "::1", "10.0.0.0/8", "hooks.example.org", NULL);
	start();
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char *j = hook_rule("bad", bad[i].url), *m = refused(j, 400);
		ASSERT_HAS(m, "actions[0].url: ");
		ASSERT_HAS(m, bad[i].text);
		if (strstr(bad[i].text, "not one of them")) {
			ASSERT_HAS(m, bad[i].url);
			ASSERT_HAS(m, "alerts.webhook_hosts in loomd.conf");
		}
		free(m);
		free(j);
	}
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		snprintf(name, sizeof name, "good-%zu", i);
		char *j = hook_rule(name, good[i]);
		add_rule(j);
		free(j);
	}
}
END_TEST

/* A bad alerts.webhook_hosts entry stops the start, naming it. */
START_TEST(webhook_hosts_checked)
{
	char *err = NULL;

	hosts("127.0.0.1", "10.0.0.0/33", NULL);
	ck_assert_int_eq(loomi_alerts_start(&T.d, &err), LOOM_ECONFIG);
	ASSERT_HAS(err, "loomd.conf: alerts.webhook_hosts[1]: \"10.0.0.0/33\" is not a host name");
	free(err);
}
END_TEST

/* When the webhook is sent its host is resolved again and every address
 * checked: a listed name that resolves to a non-public address not listed
 * (as a name whose DNS changed to 169.254.169.254 would) is not sent to. */
START_TEST(webhook_send_checks)
{
	listener l;
	char url[64], *j;
	json_t *o, *a;

	listener_start(&l, 200);
	hosts("localhost", NULL); /* the name, not its loopback addresses */
	start();
	snprintf(url, sizeof url, "http://localhost:%d/hook", l.port);
	j = hook_rule("hook", url);
	add_rule(j);
	free(j);
	metric(51, "loss", 1, LOOM_METRIC_STEP, NAN);
	wait_alerts(1, WAIT_MS);
	o = settled_alert(1, 20000);
	a = json_array_get(json_object_get(o, "actions"), 0);
	ASSERT_HAS(json_string_value(json_object_get(a, "error")), "not sent: localhost resolves to");
	ASSERT_HAS(json_string_value(json_object_get(a, "error")), "which is not a public address");
	ASSERT_HAS(json_string_value(json_object_get(a, "error")), "alerts.webhook_hosts");
	ck_assert_ptr_null(json_object_get(a, "status"));
	json_decref(o);
	ck_assert_int_eq(atomic_load(&l.n), 0);
	listener_stop(&l);
}
END_TEST

/* Commands run as loomd's user: refused (403) unless alerts.command_actions
 * is on, and a stored rule's command does not run while it is off. */
START_TEST(command_switch)
{
	char *out = loomi_path_join(T.tmp, "ran"), *sql, *m;
	json_t *o, *a;
	answer put;

	T.d.conf.alerts_command_actions = false;
	sql = loomi_strfmt("INSERT INTO alert_rules (name, kind, condition, actions, repeat_ms, "
	                   "created_at, updated_at) VALUES ('old', 'metric_nonfinite', "
	                   "'{\"kind\":\"metric_nonfinite\",\"metric\":\"loss\"}', "
	                   "'[{\"type\":\"command\",\"command\":\"touch %s\"}]', 0, 1, 1)",
	                   out);
	exec(sql);
	free(sql);
	start();
	m = refused("{\"name\": \"cmd\", \"condition\": {\"kind\": \"failed\"}, \"actions\": "
	            "[{\"type\": \"bus\"}, {\"type\": \"command\", \"command\": \"true\"}]}",
	            403);
	ASSERT_HAS(m, "actions[1]: command actions run as loomd's user");
	ASSERT_HAS(m, "alerts.command_actions = true in loomd.conf");
	free(m);

	metric(61, "loss", 1, LOOM_METRIC_STEP, NAN);
	wait_alerts(1, WAIT_MS);
	o = settled_alert(1, 20000);
	a = json_array_get(json_object_get(o, "actions"), 0);
	ASSERT_HAS(json_string_value(json_object_get(a, "error")),
	           "not run: command actions are off (alerts.command_actions in loomd.conf)");
	json_decref(o);
	ck_assert_int_ne(access(out, F_OK), 0);
	/* the stored rule can still be disabled */
	put = call("PUT", "/api/v1/alerts/rules/1", NULL, "{\"enabled\": false}");
	ck_assert_msg(put.status == 200, "disable: %d %s", put.status, put.text);
	answer_free(&put);
	free(out);
}
END_TEST

static long long
alerts_total_of(int64_t rule)
{
	char q[64];
	snprintf(q, sizeof q, "rule=%lld", (long long)rule);
	answer a = call("GET", "/api/v1/alerts", q, NULL);
	ck_assert_msg(a.status == 200, "list: %d %s", a.status, a.text);
	long long n = json_integer_value(json_object_get(a.body, "total"));
	answer_free(&a);
	return n;
}

/* A deleted rule's id is not given to the next rule, which would then
 * list the old rule's alerts as its own. */
START_TEST(rule_ids_never_reused)
{
	int64_t first, second;
	char p[32];
	answer a;

	start();
	add_rule("{\"name\": \"keep\", \"condition\": {\"kind\": \"failed\"}, \"actions\": "
	         "[{\"type\": \"bus\"}]}");
	first = add_rule("{\"name\": \"old\", \"condition\": {\"kind\": \"metric_above\", "
	                 "\"metric\": \"loss\", \"threshold\": 1}, \"actions\": [{\"type\": \"bus\"}]}");
	metric(71, "loss", 1, LOOM_METRIC_STEP, 5);
	wait_alerts(1, WAIT_MS);
	snprintf(p, sizeof p, "%lld", (long long)first);
	a = call("DELETE", at("/api/v1/alerts/rules", p), NULL, NULL);
	ck_assert_int_eq(a.status, 200);
	answer_free(&a);
	second = add_rule("{\"name\": \"new\", \"condition\": {\"kind\": \"failed\"}, \"actions\": "
	                  "[{\"type\": \"bus\"}]}");
	ck_assert_int_gt(second, first);
	ck_assert_int_eq(alerts_total_of(second), 0);
	ck_assert_int_eq(alerts_total_of(first), 1); /* the old rule's alert outlives it */
}
END_TEST

/* The same for a database written by the schema before ids were
 * AUTOINCREMENT (migrations up to 10), upgraded: rows, indexes and
 * triggers kept, rows referring to rebuilt tables kept, and the sequences
 * start above every id in use, a deleted rule's that an alert names too. */
START_TEST(ids_never_reused_after_upgrade)
{
	loomi_migration old[16];
	size_t n = 0;
	char *path = loomi_path_join(T.tmp, "old.db"), *err = NULL;
	int64_t id;

	for (size_t m = 0; m < loomi_n_modules; m++)
		for (size_t i = 0; i < loomi_modules[m]->n_migrations; i++)
			if (loomi_modules[m]->migrations[i].version <= 10)
				old[n++] = loomi_modules[m]->migrations[i];
	/* in version order, as the store wants them */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && old[j - 1].version > old[j].version; j--) {
			loomi_migration t = old[j];
			old[j] = old[j - 1];
			old[j - 1] = t;
		}
	ck_assert_int_eq(n, 10);
	loomi_store_close(&T.d.store);
	ck_assert_msg(loomi_store_open_with(&T.d.store, path, old, n, &err) == 0, "%s", err);
	add_job(7, "seven", "completed", 0);
	exec("INSERT INTO job_events (job_id, at, to_state) VALUES (7, 1, 'completed')");
	exec("INSERT INTO runs (id, job_id, name, started_at) VALUES (5, 7, 'seven', 1)");
	exec("INSERT INTO run_tags VALUES (5, 'k', 'v')");
	exec("INSERT INTO configs (id, name, created_at, updated_at) VALUES (4, 'c', 1, 1)");
	exec("INSERT INTO config_versions VALUES (4, 1, '{}', '', 1)");
	exec("INSERT INTO logs (id, at, level, message) VALUES (9, 1, 2, 'hello there')");
	exec("INSERT INTO logs_fts (rowid, message, fields) VALUES (9, 'hello there', '{}')");
	exec("INSERT INTO alert_rules (id, name, kind, condition, actions, repeat_ms, created_at,"
	     " updated_at) VALUES (1, 'keep', 'failed', '{\"kind\":\"failed\"}',"
	     " '[{\"type\":\"bus\"}]', 0, 1, 1)");
	/* rule 3 fired and was deleted: the highest rule id is 1 */
	exec("INSERT INTO alerts (id, rule_id, rule_name, kind, at, message) VALUES"
	     " (6, 3, 'gone', 'failed', 1, 'task-7 failed')");
	loomi_store_close(&T.d.store);

	ck_assert_msg(loomi_store_open(&T.d.store, path, &err) == 0, "upgrade: %s", err);
	free(path);
	ck_assert_int_eq(scalar("SELECT count(*) FROM schema_migrations WHERE version BETWEEN 11"
	                        " AND 15"),
	                 5);
	ck_assert_int_eq(scalar("SELECT count(*) FROM job_events WHERE job_id = 7"), 1);
	ck_assert_int_eq(scalar("SELECT count(*) FROM run_tags WHERE run_id = 5"), 1);
	ck_assert_int_eq(scalar("SELECT count(*) FROM config_versions WHERE config_id = 4"), 1);
	ck_assert_int_eq(scalar("SELECT rowid FROM logs_fts WHERE logs_fts MATCH 'hello'"), 9);
	ck_assert_int_eq(scalar("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'"), 7);
	ck_assert_int_eq(scalar("SELECT seq FROM sqlite_sequence WHERE name = 'runs'"), 5);
	ck_assert_int_eq(scalar("SELECT seq FROM sqlite_sequence WHERE name = 'configs'"), 4);
	ck_assert_int_eq(scalar("SELECT seq FROM sqlite_sequence WHERE name = 'logs'"), 9);
	ck_assert_int_eq(scalar("SELECT seq FROM sqlite_sequence WHERE name = 'alert_rules'"), 3);
	ck_assert_int_eq(scalar("SELECT seq FROM sqlite_sequence WHERE name = 'alerts'"), 6);
	ck_assert_int_eq(scalar("SELECT count(*) FROM sqlite_master WHERE sql LIKE"
	                        " '%AUTOINCREMENT%' AND name IN ('jobs', 'runs', 'configs', 'logs',"
	                        " 'alert_rules', 'alerts')"),
	                 6);
	/* the triggers and indexes came back */
	ck_assert_int_eq(scalar("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"), 4);
	ck_assert_int_eq(scalar("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN"
	                        " ('jobs_by_state', 'jobs_by_user', 'jobs_queued', 'jobs_by_started',"
	                        " 'jobs_by_state_id', 'configs_by_name', 'runs_by_job', 'runs_by_name',"
	                        " 'logs_by_job', 'logs_by_at', 'alerts_by_rule', 'alerts_by_job',"
	                        " 'alerts_by_at')"),
	                 13);
	exec("INSERT INTO jobs (name, state, compute, spec, created_at, updated_at) VALUES"
	     " ('eight', 'pending', 'exec', '{}', 1, 1)");
	ck_assert_int_eq(scalar("SELECT max(id) FROM jobs"), 8);
	ck_assert_int_eq(scalar("SELECT n FROM job_counts WHERE state = 'pending'"), 1);
	exec("DELETE FROM logs WHERE id = 9");
	ck_assert_int_eq(scalar("SELECT count(*) FROM logs_fts WHERE logs_fts MATCH 'hello'"), 0);
	ck_assert_int_eq(scalar("PRAGMA foreign_keys"), 1);

	start();
	id = add_rule("{\"name\": \"new\", \"condition\": {\"kind\": \"failed\"}, \"actions\": "
	              "[{\"type\": \"bus\"}]}");
	ck_assert_int_eq(id, 4);
	ck_assert_int_eq(alerts_total_of(id), 0);
	ck_assert_int_eq(alerts_total_of(3), 1);
}
END_TEST

typedef struct seen {
	pthread_mutex_t mtx;
	char text[8192];
	int n;
} seen;

static void
on_alert(void *arg, const char *topic, const char *body)
{
	seen *s = arg;
	pthread_mutex_lock(&s->mtx);
	if (strcmp(topic, "alert") == 0 && strstr(body, "probe") == NULL) {
		snprintf(s->text, sizeof s->text, "%s", body);
		s->n++;
	} else if (strstr(body, "probe")) {
		s->n += 1000;
	}
	pthread_mutex_unlock(&s->mtx);
}

static int
seen_n(seen *s)
{
	pthread_mutex_lock(&s->mtx);
	int n = s->n;
	pthread_mutex_unlock(&s->mtx);
	return n;
}

START_TEST(bus_action)
{
	loomi_bus_config bc = {0};
	seen s = {.mtx = PTHREAD_MUTEX_INITIALIZER};
	char *err = NULL;
	int64_t deadline;
	json_t *o;

	ck_assert_int_eq(loomi_bus_open(&bc, &T.d.bus, &err), 0);
	ck_assert_int_eq(loomi_bus_subscribe(T.d.bus, "alert", on_alert, &s, NULL), 0);
	/* pub/sub drops events sent before the subscriber's pipe is attached */
	deadline = now_ms() + WAIT_MS;
	while (seen_n(&s) < 1000 && now_ms() < deadline) {
		loomi_bus_publish(T.d.bus, "alert", "test", "{\"probe\":true}");
		usleep(20000);
	}
	ck_assert_int_ge(seen_n(&s), 1000);
	start();
	add_rule("{\"name\": \"to-bus\", \"condition\": {\"kind\": \"failed\"}, \"actions\": "
	         "[{\"type\": \"bus\"}]}");
	loomi_alerts_state(51, "running", "failed", "boom");
	wait_alerts(1, WAIT_MS);
	deadline = now_ms() + WAIT_MS;
	while (seen_n(&s) % 1000 < 1 && now_ms() < deadline)
		usleep(10000);
	ck_assert_int_eq(seen_n(&s) % 1000, 1);
	ASSERT_HAS(s.text, "\"rule\":\"to-bus\"");
	ASSERT_HAS(s.text, "task-51 failed (was running): boom");
	o = alert_json(1);
	ck_assert(json_is_true(json_object_get(json_array_get(json_object_get(o, "actions"), 0),
	                                       "ok")));
	json_decref(o);
}
END_TEST

START_TEST(listing)
{
	answer a;
	int64_t r1, r2;
	char q[128];

	start();
	r1 = add_rule("{\"name\": \"a\", \"condition\": {\"kind\": \"failed\"}, \"actions\": "
	              "[{\"type\": \"bus\"}]}");
	r2 = add_rule("{\"name\": \"b\", \"condition\": {\"kind\": \"failed\"}, \"job\": 62, "
	              "\"actions\": [{\"type\": \"bus\"}]}");
	for (int j = 61; j <= 63; j++)
		loomi_alerts_state(j, "running", "failed", "x");
	wait_alerts(4, WAIT_MS);

	a = call("GET", "/api/v1/alerts", "limit=2", NULL);
	ck_assert_int_eq(a.status, 200);
	ck_assert_int_eq(json_integer_value(json_object_get(a.body, "total")), 4);
	ck_assert_int_eq(json_array_size(json_object_get(a.body, "alerts")), 2);
	/* newest first */
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_array_get(json_object_get(a.body, "alerts"), 0), "id")),
	                 4);
	answer_free(&a);
	a = call("GET", "/api/v1/alerts", "limit=2&offset=2", NULL);
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_array_get(json_object_get(a.body, "alerts"), 1), "id")),
	                 1);
	answer_free(&a);
	snprintf(q, sizeof q, "rule=%lld", (long long)r2);
	a = call("GET", "/api/v1/alerts", q, NULL);
	ck_assert_int_eq(json_integer_value(json_object_get(a.body, "total")), 1);
	answer_free(&a);
	snprintf(q, sizeof q, "rule=%lld&job=task-62", (long long)r1);
	a = call("GET", "/api/v1/alerts", q, NULL);
	ck_assert_int_eq(json_integer_value(json_object_get(a.body, "total")), 1);
	answer_free(&a);
	a = call("GET", "/api/v1/alerts", "since=2000-01-01T00%3A00%3A00Z", NULL);
	ck_assert_int_eq(json_integer_value(json_object_get(a.body, "total")), 4);
	answer_free(&a);
	a = call("GET", "/api/v1/alerts", "since=2999-01-01T00:00:00.5Z", NULL);
	ck_assert_int_eq(json_integer_value(json_object_get(a.body, "total")), 0);
	answer_free(&a);
	a = call("GET", "/api/v1/alerts", "limit=0", NULL);
	ck_assert_int_eq(a.status, 400);
	ASSERT_HAS(a.text, "limit:");
	answer_free(&a);
	a = call("GET", "/api/v1/alerts", "since=yesterday", NULL);
	ck_assert_int_eq(a.status, 400);
	ASSERT_HAS(a.text, "since:");
	answer_free(&a);
	a = call("GET", at("/api/v1/alerts", "99"), NULL, NULL);
	ck_assert_int_eq(a.status, 404);
	answer_free(&a);
}
END_TEST

/* A restart remembers the last alerts: no second alert within the interval. */
START_TEST(restart_keeps_interval)
{
	start();
	add_rule("{\"name\": \"f\", \"condition\": {\"kind\": \"failed\"}, \"actions\": "
	         "[{\"type\": \"bus\"}]}");
	loomi_alerts_state(71, "running", "failed", "x");
	wait_alerts(1, WAIT_MS);
	loomi_alerts_stop();
	T.alerts_up = false;
	/* stopped: the entry points do nothing */
	loomi_alerts_state(72, "running", "failed", "x");
	start();
	loomi_alerts_state(71, "running", "failed", "again");
	loomi_alerts_state(73, "running", "failed", "x");
	wait_alerts(2, WAIT_MS);
	drain();
	ck_assert_int_eq(n_alerts(), 2);
	ck_assert_int_eq(scalar("SELECT count(*) FROM alerts WHERE job_id = 73"), 1);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("alerts");
	TCase *tc = tcase_create("alerts");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, migration);
	tcase_add_test(tc, validation);
	tcase_add_test(tc, rules_crud);
	tcase_add_test(tc, metric_threshold_and_repeat);
	tcase_add_test(tc, nonfinite);
	tcase_add_test(tc, divergence);
	tcase_add_test(tc, log_level_keyword);
	tcase_add_test(tc, failed_and_cancelled);
	tcase_add_test(tc, stalled);
	tcase_add_test(tc, command_action);
	tcase_add_test(tc, webhook_action);
	tcase_add_test(tc, rule_ids_never_reused);
	tcase_add_test(tc, ids_never_reused_after_upgrade);
	tcase_add_test(tc, webhook_urls);
	tcase_add_test(tc, webhook_hosts_checked);
	tcase_add_test(tc, webhook_send_checks);
	tcase_add_test(tc, command_switch);
	tcase_add_test(tc, bus_action);
	tcase_add_test(tc, listing);
	tcase_add_test(tc, restart_keeps_interval);
	suite_add_tcase(s, tc);
	return tu_run(s);
}

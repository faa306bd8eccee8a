/* WebSocket monitoring of training tasks (seed 000 §5.2):
 *
 *   ws://HOST:PORT/api/v1/training/tasks/{id}/monitor
 *
 * A client connects and first receives {"type":"snapshot", …the task as GET
 * returns it…}.  It may then send {"action":"subscribe","metrics":[…]} to
 * choose metrics (none, or an empty list: all of them), or
 * {"action":"unsubscribe"} to stop receiving.  Events of the bus (job.state,
 * job.progress, job.metric) become messages:
 *
 *   {"type":"progress","task_id","step","total_steps","epoch","epochs","percentage"}
 *   {"type":"metrics","task_id","step","metrics":{"loss":0.12,…}}
 *   {"type":"state","task_id","status","from","reason"}
 *
 * Each client has a bounded queue in the HTTP layer: a slow one loses its
 * oldest messages, never slows anyone else, and is told how many with
 * {"type":"dropped","count":N} when it keeps up again.  The bus delivers
 * events on the subscription's own thread; a client list under one mutex
 * routes them. */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tasks.h"
#include "host/core/log.h"
#include "monitor.h"
#include "host/core/util.h"

#define MAX_FILTER 64

typedef struct client {
	loomi_ws *ws;
	int64_t task;
	char task_id[32];
	bool subscribed;          /* false after unsubscribe */
	char **metrics;           /* the filter; NULL: every metric */
	size_t n_metrics;
	uint64_t dropped_told;
	struct client *next;
} client;

struct loomi_monitor {
	loomi_daemon *d;
	pthread_mutex_t mtx;
	client *clients;
	size_t n_clients;
};

static const char prefix[] = "/api/v1/training/tasks/";
static const char suffix[] = "/monitor";

static void
send_json(client *c, json_t *msg)
{
	char *text = json_dumps(msg, JSON_COMPACT);
	if (text)
		loomi_ws_send(c->ws, text, strlen(text), true);
	free(text);
	json_decref(msg);
}

/* Tell a client that caught up how many messages it lost. */
static void
tell_dropped(client *c)
{
	uint64_t d = loomi_ws_dropped(c->ws);
	if (d > c->dropped_told) {
		send_json(c, json_pack("{s:s, s:I}", "type", "dropped", "count",
		                       (json_int_t)(d - c->dropped_told)));
		c->dropped_told = d;
	}
}

static void
filter_free(client *c)
{
	for (size_t i = 0; i < c->n_metrics; i++)
		free(c->metrics[i]);
	free(c->metrics);
	c->metrics = NULL;
	c->n_metrics = 0;
}

static bool
wanted(const client *c, const char *metric)
{
	if (c->metrics == NULL)
		return true;
	for (size_t i = 0; i < c->n_metrics; i++)
		if (strcmp(c->metrics[i], metric) == 0)
			return true;
	return false;
}

/* ------------------------------------------------------------------ WebSocket callbacks */

static int
on_open(void *arg, loomi_ws *ws, const loomi_http_request *req, loomi_http_response *res)
{
	loomi_monitor *m = arg;
	size_t n = strlen(req->path), np = sizeof prefix - 1, ns = sizeof suffix - 1;
	char idtext[32];
	int64_t id = 0;
	json_t *task;
	client *c;

	if (n > np + ns && n - np - ns < sizeof idtext && strncmp(req->path, prefix, np) == 0 &&
	    strcmp(req->path + n - ns, suffix) == 0) {
		memcpy(idtext, req->path + np, n - np - ns);
		idtext[n - np - ns] = '\0';
		id = loomi_job_id_parse(idtext);
	}
	if (id <= 0 || (task = loomi_jobs_get(m->d, id)) == NULL) {
		char *body = loomi_strfmt(
			"{\"error\":{\"code\":\"not_found\",\"message\":\"%s\"}}",
			id <= 0 ? "WebSockets are served at /api/v1/training/tasks/{id}/monitor"
			        : "there is no such task; GET /api/v1/training/tasks lists them");
		res->status = 404;
		res->body = body;
		res->body_len = strlen(body);
		return 404;
	}
	c = loomi_xcalloc(1, sizeof *c);
	c->ws = ws;
	c->task = id;
	c->subscribed = true;
	snprintf(c->task_id, sizeof c->task_id, "task-%lld", (long long)id);
	loomi_ws_set_data(ws, c);
	pthread_mutex_lock(&m->mtx);
	c->next = m->clients;
	m->clients = c;
	m->n_clients++;
	json_object_set_new(task, "type", json_string("snapshot"));
	send_json(c, task);
	pthread_mutex_unlock(&m->mtx);
	LOG_DEBUG("monitor: %s watches %s", req->peer, c->task_id);
	return 0;
}

static void
on_message(void *arg, loomi_ws *ws, const char *data, size_t len, bool text)
{
	loomi_monitor *m = arg;
	client *c = loomi_ws_get_data(ws);
	json_error_t je;
	json_t *msg = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je), *metrics;
	const char *action = json_string_value(json_object_get(msg, "action"));
	char *why = NULL;
	size_t i;

	pthread_mutex_lock(&m->mtx);
	if (msg == NULL) {
		why = loomi_strfmt("not JSON (%s); send {\"action\": \"subscribe\", \"metrics\": "
		                   "[\"loss\"]}",
		                   je.text);
	} else if (action && strcmp(action, "subscribe") == 0) {
		metrics = json_object_get(msg, "metrics");
		if (metrics && !json_is_array(metrics)) {
			why = loomi_strdup("metrics: expected a list of metric names, e.g. [\"loss\"]");
		} else if (json_array_size(metrics) > MAX_FILTER) {
			why = loomi_strfmt("metrics: at most %d names", MAX_FILTER);
		} else {
			json_t *v;
			filter_free(c);
			if (json_array_size(metrics) > 0) {
				c->metrics = loomi_xcalloc(json_array_size(metrics), sizeof *c->metrics);
				json_array_foreach(metrics, i, v) {
					if (json_is_string(v))
						c->metrics[c->n_metrics++] = loomi_strdup(json_string_value(v));
				}
			}
			c->subscribed = true;
			send_json(c, json_pack("{s:s, s:s, s:O}", "type", "subscribed", "task_id",
			                       c->task_id, "metrics",
			                       metrics ? metrics : json_array()));
		}
	} else if (action && strcmp(action, "unsubscribe") == 0) {
		c->subscribed = false;
		send_json(c, json_pack("{s:s, s:s}", "type", "unsubscribed", "task_id", c->task_id));
	} else {
		why = loomi_strfmt("unknown action %s%s%s; use subscribe or unsubscribe",
		                   action ? "\"" : "", action ? action : "(none)", action ? "\"" : "");
	}
	if (why) {
		send_json(c, json_pack("{s:s, s:s}", "type", "error", "message", why));
		free(why);
	}
	pthread_mutex_unlock(&m->mtx);
	json_decref(msg);
	(void)text;
}

static void
on_close(void *arg, loomi_ws *ws)
{
	loomi_monitor *m = arg;
	client *c = loomi_ws_get_data(ws);

	if (c == NULL)
		return;
	pthread_mutex_lock(&m->mtx);
	for (client **p = &m->clients; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			m->n_clients--;
			break;
		}
	}
	pthread_mutex_unlock(&m->mtx);
	loomi_ws_set_data(ws, NULL);
	filter_free(c);
	free(c);
}

static const loomi_ws_handlers handlers = {on_open, on_message, on_close};

const loomi_ws_handlers *
loomi_monitor_handlers(void)
{
	return &handlers;
}

/* ------------------------------------------------------------------ bus events */

static void
on_event(void *arg, const char *topic, const char *body)
{
	loomi_monitor *m = arg;
	json_t *ev = json_loads(body, 0, NULL);
	const char *tid = json_string_value(json_object_get(ev, "task_id"));

	if (tid == NULL) {
		json_decref(ev);
		return;
	}
	pthread_mutex_lock(&m->mtx);
	for (client *c = m->clients; c; c = c->next) {
		json_t *out = NULL;
		if (!c->subscribed || strcmp(c->task_id, tid) != 0)
			continue;
		tell_dropped(c);
		if (strcmp(topic, "job.progress") == 0) {
			out = json_pack("{s:s, s:s, s:O?, s:O?, s:O?, s:O?, s:O?}", "type", "progress",
			                "task_id", tid, "step", json_object_get(ev, "step"), "total_steps",
			                json_object_get(ev, "total_steps"), "epoch",
			                json_object_get(ev, "epoch"), "epochs",
			                json_object_get(ev, "epochs"), "percentage",
			                json_object_get(ev, "percentage"));
		} else if (strcmp(topic, "job.metric") == 0) {
			json_t *all = json_object_get(ev, "metrics"), *v, *chosen = json_object();
			const char *k;
			json_object_foreach(all, k, v) {
				if (wanted(c, k))
					json_object_set(chosen, k, v);
			}
			if (json_object_size(chosen) > 0)
				out = json_pack("{s:s, s:s, s:O?, s:o}", "type", "metrics", "task_id", tid,
				                "step", json_object_get(ev, "step"), "metrics", chosen);
			else
				json_decref(chosen);
		} else if (strcmp(topic, "job.state") == 0) {
			out = json_pack("{s:s, s:s, s:O?, s:O?, s:O?}", "type", "state", "task_id", tid,
			                "status", json_object_get(ev, "status"), "from",
			                json_object_get(ev, "from"), "reason",
			                json_object_get(ev, "reason"));
		}
		if (out)
			send_json(c, out);
	}
	pthread_mutex_unlock(&m->mtx);
	json_decref(ev);
}

int
loomi_monitor_start(loomi_daemon *d, loomi_monitor **out, char **err)
{
	loomi_monitor *m = loomi_xcalloc(1, sizeof *m);
	int rv;

	m->d = d;
	pthread_mutex_init(&m->mtx, NULL);
	if ((rv = loomi_bus_subscribe(d->bus, "job.", on_event, m, m)) != 0) {
		*err = loomi_strfmt("cannot subscribe to job events: %s", loom_strerror(rv));
		pthread_mutex_destroy(&m->mtx);
		free(m);
		return rv;
	}
	*out = m;
	return 0;
}

void
loomi_monitor_stop(loomi_monitor *m)
{
	if (m == NULL)
		return;
	/* the HTTP server is stopped first: every client has had on_close */
	loomi_bus_drop_owner(m->d->bus, m);
	pthread_mutex_destroy(&m->mtx);
	free(m);
}

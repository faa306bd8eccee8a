/* The message bus: envelopes, services and requests in process, owners,
 * publish/subscribe fan-out, clients in other processes, and malformed
 * messages on the wire (never trusted: dropped, counted, logged). */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>

#include <loom/loom.h>

#include "host/core/bus.h"
#include "host/core/log.h"
#include "host/core/util.h"
#include "testutil.h"

#define MIB (1024 * 1024)

/* ------------------------------------------------------------------ time */

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Poll expr every millisecond until it holds or ms have passed; the caller
 * asserts expr afterwards, so a timeout fails with the real values. */
#define WAIT_UNTIL(expr, ms)                                                                   \
	for (int64_t wait_deadline_ = now_ms() + (ms); !(expr) && now_ms() < wait_deadline_;)  \
		sleep_ms(1)

/* ------------------------------------------------------------------ log lines */

#define ck_assert_logged(text)                                                            \
	do {                                                                              \
		WAIT_UNTIL(tu_log_has(text), 2000);                                       \
		ck_assert_msg(tu_log_has(text), "expected the log line \"%s\"; the log was:\n%s", \
		              text, tu_log_text());                                       \
	} while (0)

/* ------------------------------------------------------------------ a bus on disk */

typedef struct tbus {
	char *dir;
	char requests[128];
	char events[128];
	loomi_bus *bus;
} tbus;

static void
tbus_open(tbus *t, size_t max_message, int threads)
{
	loomi_bus_config cfg = {0};
	char *err = NULL;
	int rv;

	memset(t, 0, sizeof *t);
	t->dir = tu_tmpdir();
	/* sun_path holds 108 bytes: keep the ipc paths short. */
	ck_assert_msg(strlen(t->dir) + strlen("ipc:///r") < 100,
	              "TMPDIR gives too long a path for ipc:// (%s)", t->dir);
	snprintf(t->requests, sizeof t->requests, "ipc://%s/r", t->dir);
	snprintf(t->events, sizeof t->events, "ipc://%s/e", t->dir);
	cfg.requests = t->requests;
	cfg.events = t->events;
	cfg.max_message = max_message;
	cfg.threads = threads;
	rv = loomi_bus_open(&cfg, &t->bus, &err);
	ck_assert_msg(rv == 0, "loomi_bus_open: %s: %s", loom_errname(rv), err ? err : "(no message)");
	ck_assert_ptr_null(err);
}

static void
tbus_close(tbus *t)
{
	loomi_bus_close(t->bus);
	t->bus = NULL;
	tu_rmrf(t->dir);
	free(t->dir);
	t->dir = NULL;
}

/* ------------------------------------------------------------------ recorded events */

#define REC_MAX 1024

typedef struct rec {
	pthread_mutex_t mtx;
	int n;
	char *topic[REC_MAX];
	char *body[REC_MAX];
} rec;

static void
rec_init(rec *r)
{
	memset(r, 0, sizeof *r);
	pthread_mutex_init(&r->mtx, NULL);
}

static void
rec_free(rec *r)
{
	for (int i = 0; i < r->n && i < REC_MAX; i++) {
		free(r->topic[i]);
		free(r->body[i]);
	}
	pthread_mutex_destroy(&r->mtx);
}

static void
rec_cb(void *arg, const char *topic, const char *body)
{
	rec *r = arg;
	pthread_mutex_lock(&r->mtx);
	if (r->n < REC_MAX) {
		r->topic[r->n] = strdup(topic);
		r->body[r->n] = strdup(body);
	}
	r->n++;
	pthread_mutex_unlock(&r->mtx);
}

/* Events seen on topic (all events for NULL). */
static int
rec_count(rec *r, const char *topic)
{
	int n = 0;
	pthread_mutex_lock(&r->mtx);
	for (int i = 0; i < r->n && i < REC_MAX; i++) {
		if (topic == NULL || strcmp(r->topic[i], topic) == 0)
			n++;
	}
	pthread_mutex_unlock(&r->mtx);
	return n;
}

/* The body of the k-th event on topic, copied into out; false if none. */
static bool
rec_body(rec *r, const char *topic, int k, char *out, size_t n)
{
	bool found = false;
	pthread_mutex_lock(&r->mtx);
	for (int i = 0; i < r->n && i < REC_MAX; i++) {
		if (strcmp(r->topic[i], topic) == 0 && k-- == 0) {
			snprintf(out, n, "%s", r->body[i]);
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&r->mtx);
	return found;
}

static bool
all_saw(rec **recs, int n, const char *topic)
{
	for (int i = 0; i < n; i++) {
		if (rec_count(recs[i], topic) == 0)
			return false;
	}
	return true;
}

/* Pub/sub drops what is published before a subscriber's pipe is attached
 * on the publisher's side, and subscribing only waits for the dialer's side.
 * Publish probes on topic until every recorder has seen one. */
static void
settle(loomi_bus *bus, const char *topic, rec **recs, int n)
{
	int64_t deadline = now_ms() + 5000;
	for (;;) {
		ck_assert_int_eq(loomi_bus_publish(bus, topic, "test", "{\"probe\":true}"), 0);
		WAIT_UNTIL(all_saw(recs, n, topic), 20);
		if (all_saw(recs, n, topic))
			return;
		ck_assert_msg(now_ms() < deadline, "subscribers did not see \"%s\" within 5 s", topic);
	}
}

/* ------------------------------------------------------------------ handlers */

static atomic_int calls;

static int
h_echo(void *arg, const char *request, char **reply)
{
	(void)arg;
	atomic_fetch_add(&calls, 1);
	*reply = loomi_strfmt("{\"echo\":%s}", request);
	return 0;
}

static int
h_empty(void *arg, const char *request, char **reply)
{
	(void)arg;
	(void)request;
	(void)reply;
	return 0;
}

static int
h_conflict(void *arg, const char *request, char **reply)
{
	(void)request;
	if (arg)
		*reply = loomi_strdup(arg);
	return LOOM_ECONFLICT;
}

/* Fails with the code in arg and a message that is not UTF-8. */
static int
h_bad_code(void *arg, const char *request, char **reply)
{
	(void)request;
	*reply = loomi_strdup("bad \xff byte");
	return (int)(intptr_t)arg;
}

/* Returns arg as its reply text, verbatim. */
static int
h_text(void *arg, const char *request, char **reply)
{
	(void)request;
	*reply = loomi_strdup(arg);
	return 0;
}

/* {"n":N} → {"n":N,"sq":N*N} */
static int
h_square(void *arg, const char *request, char **reply)
{
	json_t *req = json_loads(request, 0, NULL);
	json_int_t n;

	(void)arg;
	atomic_fetch_add(&calls, 1);
	if (!json_is_integer(json_object_get(req, "n"))) {
		json_decref(req);
		*reply = loomi_strdup("no integer n");
		return LOOM_EINVAL;
	}
	n = json_integer_value(json_object_get(req, "n"));
	json_decref(req);
	*reply = loomi_strfmt("{\"n\":%lld,\"sq\":%lld}", (long long)n, (long long)(n * n));
	return 0;
}

/* A handler that announces it started, sleeps, then records it finished. */
typedef struct slow {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	bool started;
	atomic_bool finished;
	int sleep_ms;
} slow;

static void
slow_init(slow *s, int ms)
{
	memset(s, 0, sizeof *s);
	pthread_mutex_init(&s->mtx, NULL);
	pthread_cond_init(&s->cv, NULL);
	atomic_init(&s->finished, false);
	s->sleep_ms = ms;
}

static void
slow_destroy(slow *s)
{
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mtx);
}

static int
h_slow(void *arg, const char *request, char **reply)
{
	slow *s = arg;
	(void)request;
	pthread_mutex_lock(&s->mtx);
	s->started = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mtx);
	sleep_ms(s->sleep_ms);
	atomic_store(&s->finished, true);
	*reply = loomi_strdup("{\"slept\":true}");
	return 0;
}

static bool
slow_wait_started(slow *s, int ms)
{
	struct timespec ts;
	bool started;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->mtx);
	while (!s->started && pthread_cond_timedwait(&s->cv, &s->mtx, &ts) == 0)
		;
	started = s->started;
	pthread_mutex_unlock(&s->mtx);
	return started;
}

/* ------------------------------------------------------------------ envelopes */

START_TEST(envelope_request_reply_event)
{
	static const char req[] =
		"{\"v\":1,\"kind\":\"request\",\"id\":7,\"service\":\"job.start\",\"from\":\"cli\","
		"\"body\":{\"a\":1}}";
	static const char ok[] = "{\"v\":1,\"kind\":\"reply\",\"id\":7,\"ok\":true,\"body\":{\"b\":2}}";
	static const char failed[] =
		"{\"v\":1,\"kind\":\"reply\",\"id\":8,\"ok\":false,\"error\":{\"code\":3,"
		"\"name\":\"LOOM_ENOENT\",\"message\":\"no job 9\"}}";
	static const char ev[] = "job.state\0{\"v\":1,\"kind\":\"event\",\"topic\":\"job.state\","
	                         "\"time\":1700000000000,\"from\":\"sched\",\"body\":{\"s\":\"run\"}}";
	loomi_envelope env;
	const char *why = NULL;
	char *text;

	ck_assert_int_eq(loomi_envelope_parse(req, strlen(req), MIB, LOOMI_ENV_REQUEST, &env, &why), 0);
	ck_assert_int_eq(env.kind, LOOMI_ENV_REQUEST);
	ck_assert_int_eq(env.id, 7);
	ck_assert_str_eq(env.service, "job.start");
	ck_assert_str_eq(env.from, "cli");
	text = json_dumps(env.body, JSON_COMPACT);
	ck_assert_str_eq(text, "{\"a\":1}");
	free(text);
	loomi_envelope_free(&env);
	ck_assert_ptr_null(env.doc);

	ck_assert_int_eq(loomi_envelope_parse(ok, strlen(ok), MIB, LOOMI_ENV_REPLY, &env, &why), 0);
	ck_assert_int_eq(env.kind, LOOMI_ENV_REPLY);
	ck_assert_int_eq(env.id, 7);
	ck_assert_int_eq(env.ok, 1);
	ck_assert_ptr_null(env.from);
	text = json_dumps(env.body, JSON_COMPACT);
	ck_assert_str_eq(text, "{\"b\":2}");
	free(text);
	loomi_envelope_free(&env);

	ck_assert_int_eq(loomi_envelope_parse(failed, strlen(failed), MIB, LOOMI_ENV_REPLY, &env, &why),
	                 0);
	ck_assert_int_eq(env.id, 8);
	ck_assert_int_eq(env.ok, 0);
	ck_assert_int_eq(env.error_code, LOOM_ENOENT);
	ck_assert_str_eq(env.error_message, "no job 9");
	loomi_envelope_free(&env);

	/* sizeof - 1: the frame's NUL is part of the message, the final one not. */
	ck_assert_int_eq(loomi_envelope_parse(ev, sizeof ev - 1, MIB, LOOMI_ENV_EVENT, &env, &why), 0);
	ck_assert_int_eq(env.kind, LOOMI_ENV_EVENT);
	ck_assert_str_eq(env.topic, "job.state");
	ck_assert_str_eq(env.from, "sched");
	ck_assert_int_eq(env.time, 1700000000000LL);
	text = json_dumps(env.body, JSON_COMPACT);
	ck_assert_str_eq(text, "{\"s\":\"run\"}");
	free(text);
	loomi_envelope_free(&env);
}
END_TEST

typedef struct bad_case {
	int kind;
	const char *data; /* events: TOPIC '\0' JSON, length given */
	size_t len;       /* 0: strlen(data) */
	const char *why;
} bad_case;

#define EV(lit) lit, sizeof(lit) - 1

static const char *
kind_name(int kind)
{
	return kind == LOOMI_ENV_REQUEST ? "request" : kind == LOOMI_ENV_REPLY ? "reply" : "event";
}

START_TEST(envelope_malformed)
{
	static const char W_JSON[] = "not valid JSON", W_OBJ[] = "not a JSON object",
	                  W_V[] = "no integer version \"v\"", W_VER[] = "unsupported envelope version",
	                  W_KIND[] = "wrong or missing \"kind\"",
	                  W_SVC[] = "missing or invalid \"service\" name",
	                  W_BODY[] = "\"body\" is not an object",
	                  W_ID[] = "no non-negative integer \"id\"",
	                  W_ERR[] = "failed reply without a valid \"error\"",
	                  W_BOOL[] = "no boolean \"ok\"", W_FRAME[] = "event without a topic frame",
	                  W_TOPIC[] = "invalid \"topic\", or one that differs from the topic frame",
	                  W_TIME[] = "no integer \"time\"",
	                  W_FROM[] = "\"from\" is not a short printable string";
#define R(s) "{\"v\":1,\"kind\":\"request\",\"id\":1," s "}"
#define P(s) "{\"v\":1,\"kind\":\"reply\",\"id\":1," s "}"
	static const bad_case cases[] = {
		{LOOMI_ENV_REQUEST, "{\"v\":1,", 0, W_JSON},
		{LOOMI_ENV_REQUEST, "", 0, W_JSON},
		{LOOMI_ENV_REQUEST, R("\"service\":\"s\",\"body\":{}") "x", 0, W_JSON},
		{LOOMI_ENV_REQUEST, "{\"v\":1,\"v\":1,\"kind\":\"request\",\"id\":1,\"service\":\"s\","
		                    "\"body\":{}}", 0, W_JSON},
		{LOOMI_ENV_REQUEST, "[1,2]", 0, W_OBJ},
		/* jansson takes only an object or array as a document. */
		{LOOMI_ENV_REQUEST, "\"request\"", 0, W_JSON},
		{LOOMI_ENV_REQUEST, "7", 0, W_JSON},
		{LOOMI_ENV_REQUEST, "{\"kind\":\"request\",\"id\":1,\"service\":\"s\",\"body\":{}}", 0,
		 W_V},
		{LOOMI_ENV_REQUEST, "{\"v\":\"1\",\"kind\":\"request\",\"id\":1,\"service\":\"s\","
		                    "\"body\":{}}", 0, W_V},
		{LOOMI_ENV_REQUEST, "{\"v\":1.0,\"kind\":\"request\",\"id\":1,\"service\":\"s\","
		                    "\"body\":{}}", 0, W_V},
		{LOOMI_ENV_REQUEST, "{\"v\":2,\"kind\":\"request\",\"id\":1,\"service\":\"s\","
		                    "\"body\":{}}", 0, W_VER},
		{LOOMI_ENV_REQUEST, "{\"v\":0,\"kind\":\"request\",\"id\":1,\"service\":\"s\","
		                    "\"body\":{}}", 0, W_VER},
		{LOOMI_ENV_REQUEST, "{\"v\":1,\"id\":1,\"service\":\"s\",\"body\":{}}", 0, W_KIND},
		{LOOMI_ENV_REQUEST, "{\"v\":1,\"kind\":\"event\",\"id\":1,\"service\":\"s\","
		                    "\"body\":{}}", 0, W_KIND},
		{LOOMI_ENV_REQUEST, P("\"ok\":true,\"body\":{}"), 0, W_KIND},
		{LOOMI_ENV_REPLY, R("\"service\":\"s\",\"body\":{}"), 0, W_KIND},
		{LOOMI_ENV_REQUEST, "{\"v\":1,\"kind\":\"request\",\"service\":\"s\",\"body\":{}}", 0,
		 W_ID},
		{LOOMI_ENV_REQUEST, "{\"v\":1,\"kind\":\"request\",\"id\":-1,\"service\":\"s\","
		                    "\"body\":{}}", 0, W_ID},
		{LOOMI_ENV_REQUEST, "{\"v\":1,\"kind\":\"request\",\"id\":\"7\",\"service\":\"s\","
		                    "\"body\":{}}", 0, W_ID},
		{LOOMI_ENV_REPLY, "{\"v\":1,\"kind\":\"reply\",\"id\":-5,\"ok\":true,\"body\":{}}", 0,
		 W_ID},
		{LOOMI_ENV_REQUEST, R("\"body\":{}"), 0, W_SVC},
		{LOOMI_ENV_REQUEST, R("\"service\":7,\"body\":{}"), 0, W_SVC},
		{LOOMI_ENV_REQUEST, R("\"service\":\"\",\"body\":{}"), 0, W_SVC},
		{LOOMI_ENV_REQUEST, R("\"service\":\"Job.start\",\"body\":{}"), 0, W_SVC},
		{LOOMI_ENV_REQUEST, R("\"service\":\"job start\",\"body\":{}"), 0, W_SVC},
		{LOOMI_ENV_REQUEST, R("\"service\":\".job\",\"body\":{}"), 0, W_SVC},
		{LOOMI_ENV_REQUEST, R("\"service\":\"job/start\",\"body\":{}"), 0, W_SVC},
		{LOOMI_ENV_REQUEST, R("\"service\":\"s\""), 0, W_BODY},
		{LOOMI_ENV_REQUEST, R("\"service\":\"s\",\"body\":[1]"), 0, W_BODY},
		{LOOMI_ENV_REQUEST, R("\"service\":\"s\",\"body\":\"{}\""), 0, W_BODY},
		{LOOMI_ENV_REQUEST, R("\"service\":\"s\",\"body\":null"), 0, W_BODY},
		{LOOMI_ENV_REQUEST, R("\"service\":\"s\",\"from\":\"a\\nb\",\"body\":{}"), 0, W_FROM},
		{LOOMI_ENV_REQUEST, R("\"service\":\"s\",\"from\":7,\"body\":{}"), 0, W_FROM},
		{LOOMI_ENV_REPLY, P("\"body\":{}"), 0, W_BOOL},
		{LOOMI_ENV_REPLY, P("\"ok\":1,\"body\":{}"), 0, W_BOOL},
		{LOOMI_ENV_REPLY, P("\"ok\":true"), 0, W_BODY},
		{LOOMI_ENV_REPLY, P("\"ok\":true,\"body\":[]"), 0, W_BODY},
		{LOOMI_ENV_REPLY, P("\"ok\":false"), 0, W_ERR},
		{LOOMI_ENV_REPLY, P("\"ok\":false,\"error\":\"LOOM_ENOENT\""), 0, W_ERR},
		{LOOMI_ENV_REPLY, P("\"ok\":false,\"error\":{\"message\":\"m\"}"), 0, W_ERR},
		{LOOMI_ENV_REPLY, P("\"ok\":false,\"error\":{\"code\":\"3\"}"), 0, W_ERR},
		{LOOMI_ENV_REPLY, P("\"ok\":false,\"error\":{\"code\":0}"), 0, W_ERR},
		{LOOMI_ENV_REPLY, P("\"ok\":false,\"error\":{\"code\":-3}"), 0, W_ERR},
		{LOOMI_ENV_REPLY, P("\"ok\":false,\"error\":{\"code\":65536}"), 0, W_ERR},
		{LOOMI_ENV_EVENT, "{\"v\":1,\"kind\":\"event\",\"topic\":\"a\",\"time\":1,\"body\":{}}",
		 0, W_FRAME},
		{LOOMI_ENV_EVENT, EV("job.a\0{\"v\":1,\"kind\":\"event\",\"topic\":\"job.b\","
		                     "\"time\":1,\"body\":{}}"), W_TOPIC},
		{LOOMI_ENV_EVENT, EV("job.a\0{\"v\":1,\"kind\":\"event\",\"time\":1,\"body\":{}}"),
		 W_TOPIC},
		{LOOMI_ENV_EVENT, EV("Job\0{\"v\":1,\"kind\":\"event\",\"topic\":\"Job\","
		                     "\"time\":1,\"body\":{}}"), W_TOPIC},
		{LOOMI_ENV_EVENT, EV("\0{\"v\":1,\"kind\":\"event\",\"topic\":\"\","
		                     "\"time\":1,\"body\":{}}"), W_TOPIC},
		{LOOMI_ENV_EVENT, EV("job.a\0{\"v\":1,\"kind\":\"event\",\"topic\":\"job.a\","
		                     "\"body\":{}}"), W_TIME},
		{LOOMI_ENV_EVENT, EV("job.a\0{\"v\":1,\"kind\":\"event\",\"topic\":\"job.a\","
		                     "\"time\":\"now\",\"body\":{}}"), W_TIME},
		{LOOMI_ENV_EVENT, EV("job.a\0{\"v\":1,\"kind\":\"event\",\"topic\":\"job.a\","
		                     "\"time\":1.5,\"body\":{}}"), W_TIME},
		{LOOMI_ENV_EVENT, EV("job.a\0{\"v\":1,\"kind\":\"event\",\"topic\":\"job.a\","
		                     "\"time\":1,\"body\":7}"), W_BODY},
		{LOOMI_ENV_EVENT, EV("job.a\0{\"v\":1,\"kind\":\"event\",\"topic\":\"job.a\","
		                     "\"time\":1}"), W_BODY},
		{LOOMI_ENV_EVENT, EV("job.a\0{\"v\":2,\"kind\":\"event\",\"topic\":\"job.a\","
		                     "\"time\":1,\"body\":{}}"), W_VER},
		{LOOMI_ENV_EVENT, EV("job.a\0[1]"), W_OBJ},
		{LOOMI_ENV_EVENT, EV("job.a\0{bad"), W_JSON},
		{LOOMI_ENV_EVENT, EV("job.a\0"), W_JSON},
	};
#undef R
#undef P
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const bad_case *c = &cases[i];
		size_t len = c->len ? c->len : strlen(c->data);
		loomi_envelope env;
		const char *why = NULL;
		int rv = loomi_envelope_parse(c->data, len, MIB, c->kind, &env, &why);
		ck_assert_msg(rv == LOOM_EPROTO, "case %zu (%s \"%s\"): got %d, want LOOM_EPROTO", i,
		              kind_name(c->kind), c->data, rv);
		ck_assert_msg(why != NULL && strcmp(why, c->why) == 0,
		              "case %zu (%s \"%s\"): why \"%s\", want \"%s\"", i, kind_name(c->kind),
		              c->data, why ? why : "(null)", c->why);
		ck_assert_ptr_null(env.doc);
	}
}
END_TEST

/* Service names in requests: 128 characters pass, 129 do not. */
START_TEST(envelope_service_name_length)
{
	char name[LOOMI_BUS_NAME_MAX + 2], msg[512];
	loomi_envelope env;
	const char *why = NULL;

	memset(name, 'a', sizeof name);
	name[LOOMI_BUS_NAME_MAX] = '\0';
	snprintf(msg, sizeof msg,
	         "{\"v\":1,\"kind\":\"request\",\"id\":0,\"service\":\"%s\",\"body\":{}}", name);
	ck_assert_int_eq(loomi_envelope_parse(msg, strlen(msg), MIB, LOOMI_ENV_REQUEST, &env, &why), 0);
	ck_assert_uint_eq(strlen(env.service), LOOMI_BUS_NAME_MAX);
	ck_assert_int_eq(env.id, 0);
	loomi_envelope_free(&env);

	name[LOOMI_BUS_NAME_MAX] = 'a';
	name[LOOMI_BUS_NAME_MAX + 1] = '\0';
	snprintf(msg, sizeof msg,
	         "{\"v\":1,\"kind\":\"request\",\"id\":0,\"service\":\"%s\",\"body\":{}}", name);
	ck_assert_int_eq(loomi_envelope_parse(msg, strlen(msg), MIB, LOOMI_ENV_REQUEST, &env, &why),
	                 LOOM_EPROTO);
	ck_assert_str_eq(why, "missing or invalid \"service\" name");
}
END_TEST

/* max bounds the JSON envelope: equal passes, one byte more is refused.
 * An event's topic frame comes on top (publishers and subscribers allow
 * max + LOOMI_BUS_NAME_MAX + 1 bytes in all). */
START_TEST(envelope_size_limit)
{
	static const char req[] = "{\"v\":1,\"kind\":\"request\",\"id\":1,\"service\":\"s\",\"body\":{}}";
	static const char ev[] =
		"topic.x\0{\"v\":1,\"kind\":\"event\",\"topic\":\"topic.x\",\"time\":1,\"body\":{}}";
	size_t n = strlen(req), ev_json = sizeof ev - 1 - strlen("topic.x") - 1;
	loomi_envelope env;
	const char *why = NULL;

	ck_assert_int_eq(loomi_envelope_parse(req, n, n, LOOMI_ENV_REQUEST, &env, &why), 0);
	loomi_envelope_free(&env);
	ck_assert_int_eq(loomi_envelope_parse(req, n, n - 1, LOOMI_ENV_REQUEST, &env, &why),
	                 LOOM_EPROTO);
	ck_assert_str_eq(why, "message larger than bus.max_message");
	ck_assert_ptr_null(env.doc);

	ck_assert_int_eq(loomi_envelope_parse(ev, sizeof ev - 1, ev_json, LOOMI_ENV_EVENT, &env, &why),
	                 0);
	ck_assert_str_eq(env.topic, "topic.x");
	loomi_envelope_free(&env);
	why = NULL;
	ck_assert_int_eq(loomi_envelope_parse(ev, sizeof ev - 1, ev_json - 1, LOOMI_ENV_EVENT, &env,
	                                      &why),
	                 LOOM_EPROTO);
	ck_assert_str_eq(why, "message larger than bus.max_message");
}
END_TEST

START_TEST(name_ok)
{
	static const char *const good[] = {"a", "0", "job.state", "a-b_c.d", "9lives", "job.",
	                                   "a..b", "x-"};
	static const char *const bad[] = {"", "A", "Job", "a b", " a", ".a", "-a", "_a", "a/b",
	                                  "a\nb", "a:b", "\xc3\xa9t\xc3\xa9", "job*", "a\tb"};
	char name[LOOMI_BUS_NAME_MAX + 2];

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		ck_assert_msg(loomi_bus_name_ok(good[i]) == 1, "\"%s\" should be valid", good[i]);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(loomi_bus_name_ok(bad[i]) == 0, "\"%s\" should be refused", bad[i]);
	ck_assert_int_eq(loomi_bus_name_ok(NULL), 0);
	memset(name, 'z', sizeof name);
	name[LOOMI_BUS_NAME_MAX] = '\0';
	ck_assert_int_eq(loomi_bus_name_ok(name), 1);
	name[LOOMI_BUS_NAME_MAX] = 'z';
	name[LOOMI_BUS_NAME_MAX + 1] = '\0';
	ck_assert_int_eq(loomi_bus_name_ok(name), 0);
}
END_TEST

/* ------------------------------------------------------------------ services in process */

START_TEST(serve_and_request)
{
	tbus t;
	char *reply = NULL;

	tbus_open(&t, 0, 0);
	atomic_store(&calls, 0);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "echo", h_echo, NULL, NULL), 0);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "empty", h_empty, NULL, NULL), 0);

	ck_assert_int_eq(loomi_bus_request(t.bus, "echo", "test", "{\"x\":1,\"s\":\"hi\"}", 2000,
	                                   &reply),
	                 0);
	ck_assert_str_eq(reply, "{\"echo\":{\"x\":1,\"s\":\"hi\"}}");
	free(reply);
	/* No body, or an empty one, is the empty object. */
	ck_assert_int_eq(loomi_bus_request(t.bus, "echo", NULL, NULL, 2000, &reply), 0);
	ck_assert_str_eq(reply, "{\"echo\":{}}");
	free(reply);
	ck_assert_int_eq(loomi_bus_request(t.bus, "echo", NULL, "", 2000, &reply), 0);
	ck_assert_str_eq(reply, "{\"echo\":{}}");
	free(reply);
	/* A handler that leaves *reply NULL answers {}. */
	ck_assert_int_eq(loomi_bus_request(t.bus, "empty", NULL, "{}", 2000, &reply), 0);
	ck_assert_str_eq(reply, "{}");
	free(reply);
	/* reply may be NULL. */
	ck_assert_int_eq(loomi_bus_request(t.bus, "echo", NULL, "{}", 2000, NULL), 0);
	ck_assert_int_eq(atomic_load(&calls), 4);
	ck_assert_uint_eq(loomi_bus_dropped(t.bus), 0);
	tbus_close(&t);
}
END_TEST

START_TEST(handler_errors)
{
	tbus t;
	char *reply = NULL;

	tbus_open(&t, 0, 0);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "conflict", h_conflict,
	                                 "etag changed: have 3, want 4", NULL), 0);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "conflict-bare", h_conflict, NULL, NULL), 0);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "array-reply", h_text, "[1,2]", NULL), 0);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "broken-reply", h_text, "{\"a\":", NULL), 0);

	ck_assert_int_eq(loomi_bus_request(t.bus, "conflict", NULL, "{}", 2000, &reply),
	                 LOOM_ECONFLICT);
	ck_assert_str_eq(reply, "etag changed: have 3, want 4");
	free(reply);
	ck_assert_int_eq(loomi_bus_request(t.bus, "conflict-bare", NULL, "{}", 2000, &reply),
	                 LOOM_ECONFLICT);
	ck_assert_str_eq(reply, loom_strerror(LOOM_ECONFLICT));
	free(reply);

	tu_log_capture();
	ck_assert_int_eq(loomi_bus_request(t.bus, "array-reply", NULL, "{}", 2000, &reply),
	                 LOOM_EINTERNAL);
	ck_assert_str_eq(reply, "the service's handler returned malformed JSON");
	free(reply);
	ck_assert_logged("error bus: the handler of \"array-reply\" returned a reply that is not "
	                 "a JSON object");
	ck_assert_int_eq(loomi_bus_request(t.bus, "broken-reply", NULL, "{}", 2000, &reply),
	                 LOOM_EINTERNAL);
	ck_assert_str_eq(reply, "the service's handler returned malformed JSON");
	free(reply);
	ck_assert_logged("error bus: the handler of \"broken-reply\" returned a reply that is not "
	                 "a JSON object");
	tu_log_stop();

	ck_assert_int_eq(loomi_bus_request(t.bus, "nobody", NULL, "{}", 2000, &reply),
	                 LOOM_ENOSERVICE);
	ck_assert_str_eq(reply, "no one serves \"nobody\" on this bus");
	free(reply);

	/* a handler's bad code or non-UTF-8 message still gets an answer */
	ck_assert_int_eq(loomi_bus_serve(t.bus, "neg", h_bad_code, (void *)(intptr_t)-5, NULL), 0);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "big", h_bad_code, (void *)(intptr_t)70000, NULL), 0);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "utf", h_bad_code, (void *)(intptr_t)LOOM_EINVAL,
	                                 NULL),
	                 0);
	tu_log_capture();
	ck_assert_int_eq(loomi_bus_request(t.bus, "neg", NULL, "{}", 2000, &reply), LOOM_EINTERNAL);
	free(reply);
	ck_assert_logged("error bus: the handler of \"neg\" returned -5, not a LOOM_E* code");
	ck_assert_int_eq(loomi_bus_request(t.bus, "big", NULL, "{}", 2000, &reply), LOOM_EINTERNAL);
	free(reply);
	tu_log_stop();
	ck_assert_int_eq(loomi_bus_request(t.bus, "utf", NULL, "{}", 2000, &reply), LOOM_EINVAL);
	ck_assert_str_eq(reply, "bad ? byte");
	free(reply);
	ck_assert_uint_eq(loomi_bus_dropped(t.bus), 0);
	tbus_close(&t);
}
END_TEST

START_TEST(serve_and_request_refusals)
{
	static const char *const bad_names[] = {"", "Echo", "my svc", ".echo", "-echo", "a/b",
	                                        "bus.ping", "bus.publish", "bus.mine"};
	static const char *const bad_bodies[] = {"[1]", "\"text\"", "42", "null", "true", "{oops",
	                                         "{\"a\":1,\"a\":2}", "{} {}"};
	char long_name[LOOMI_BUS_NAME_MAX + 2], long_from[LOOMI_BUS_NAME_MAX + 2];
	tbus t;
	char *reply;

	tbus_open(&t, 0, 0);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "echo", h_echo, NULL, NULL), 0);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "echo", h_empty, NULL, NULL), LOOM_EEXIST);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "echo", h_echo, NULL, &t), LOOM_EEXIST);
	for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++)
		ck_assert_msg(loomi_bus_serve(t.bus, bad_names[i], h_echo, NULL, NULL) == LOOM_EINVAL,
		              "serving \"%s\" should be LOOM_EINVAL", bad_names[i]);
	ck_assert_int_eq(loomi_bus_serve(t.bus, NULL, h_echo, NULL, NULL), LOOM_EINVAL);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "no-fn", NULL, NULL, NULL), LOOM_EINVAL);
	memset(long_name, 'n', sizeof long_name);
	long_name[LOOMI_BUS_NAME_MAX + 1] = '\0';
	ck_assert_int_eq(loomi_bus_serve(t.bus, long_name, h_echo, NULL, NULL), LOOM_EINVAL);
	long_name[LOOMI_BUS_NAME_MAX] = '\0';
	ck_assert_int_eq(loomi_bus_serve(t.bus, long_name, h_echo, NULL, NULL), 0);
	/* The original "echo" still answers. */
	reply = NULL;
	ck_assert_int_eq(loomi_bus_request(t.bus, "echo", NULL, "{\"k\":2}", 2000, &reply), 0);
	ck_assert_str_eq(reply, "{\"echo\":{\"k\":2}}");
	free(reply);
	ck_assert_int_eq(loomi_bus_request(t.bus, long_name, NULL, "{}", 2000, NULL), 0);

	for (size_t i = 0; i < sizeof bad_bodies / sizeof bad_bodies[0]; i++) {
		reply = (char *)"untouched";
		ck_assert_msg(loomi_bus_request(t.bus, "echo", NULL, bad_bodies[i], 2000, &reply) ==
		                      LOOM_EINVAL,
		              "request body %s should be LOOM_EINVAL", bad_bodies[i]);
		ck_assert_ptr_null(reply);
	}
	ck_assert_int_eq(loomi_bus_request(t.bus, "Echo", NULL, "{}", 2000, NULL), LOOM_EINVAL);
	ck_assert_int_eq(loomi_bus_request(t.bus, NULL, NULL, "{}", 2000, NULL), LOOM_EINVAL);
	ck_assert_int_eq(loomi_bus_request(t.bus, "echo", "bad\nfrom", "{}", 2000, NULL),
	                 LOOM_EINVAL);
	memset(long_from, 'f', sizeof long_from);
	long_from[LOOMI_BUS_NAME_MAX + 1] = '\0';
	ck_assert_int_eq(loomi_bus_request(t.bus, "echo", long_from, "{}", 2000, NULL), LOOM_EINVAL);

	/* Subscriptions: bad prefixes and no callback. */
	ck_assert_int_eq(loomi_bus_subscribe(t.bus, "Job.", rec_cb, NULL, NULL), LOOM_EINVAL);
	ck_assert_int_eq(loomi_bus_subscribe(t.bus, ".job", rec_cb, NULL, NULL), LOOM_EINVAL);
	ck_assert_int_eq(loomi_bus_subscribe(t.bus, NULL, rec_cb, NULL, NULL), LOOM_EINVAL);
	ck_assert_int_eq(loomi_bus_subscribe(t.bus, "job.", NULL, NULL, NULL), LOOM_EINVAL);
	ck_assert_uint_eq(loomi_bus_dropped(t.bus), 0);
	tbus_close(&t);
}
END_TEST

START_TEST(ping)
{
	tbus t;
	char *reply = NULL;
	json_t *doc;
	int64_t before = loomi_wall_ms(), after;

	tbus_open(&t, 0, 0);
	ck_assert_int_eq(loomi_bus_request(t.bus, "bus.ping", "test", "{}", 2000, &reply), 0);
	after = loomi_wall_ms();
	doc = json_loads(reply, 0, NULL);
	ck_assert_ptr_nonnull(doc);
	ck_assert_uint_eq(json_object_size(doc), 2);
	ck_assert(json_is_true(json_object_get(doc, "pong")));
	ck_assert(json_is_integer(json_object_get(doc, "time")));
	ck_assert_int_ge(json_integer_value(json_object_get(doc, "time")), before);
	ck_assert_int_le(json_integer_value(json_object_get(doc, "time")), after);
	json_decref(doc);
	free(reply);
	tbus_close(&t);
}
END_TEST

/* What the bus carried, for GET /metrics: requests in and replies out
 * (in process and from a client over ipc), loomd's own requests out and
 * their replies in, events published and handed to subscribers. */
START_TEST(stats_count_messages)
{
	tbus t;
	rec r;
	rec *recs[] = {&r};
	loomi_bus_client *c = NULL;
	loomi_bus_stats st;
	char *err = NULL;

	rec_init(&r);
	tbus_open(&t, 0, 0);
	loomi_bus_stats_read(t.bus, &st);
	ck_assert_uint_eq(st.requests_in + st.replies_out + st.requests_out + st.replies_in +
	                      st.events_out + st.events_in + st.dropped,
	                  0);
	ck_assert_int_eq(loomi_bus_request(t.bus, "bus.ping", "test", "{}", 2000, NULL), 0);
	ck_assert_int_eq(loomi_bus_request(t.bus, "bus.ping", "test", "{}", 2000, NULL), 0);
	ck_assert_int_eq(loomi_bus_client_open(t.requests, NULL, 0, &c, &err), 0);
	ck_assert_int_eq(loomi_bus_client_request(c, "bus.ping", "worker", "{}", 2000, NULL), 0);
	/* a reply is counted once sent: it may reach the requester first */
	WAIT_UNTIL((loomi_bus_stats_read(t.bus, &st), st.replies_out == 3), 5000);
	ck_assert_uint_eq(st.requests_in, 3);
	ck_assert_uint_eq(st.replies_out, 3);
	ck_assert_uint_eq(st.requests_out, 2); /* the client's are its own */
	ck_assert_uint_eq(st.replies_in, 2);

	ck_assert_int_eq(loomi_bus_subscribe(t.bus, "job.", rec_cb, &r, NULL), 0);
	settle(t.bus, "job.probe", recs, 1); /* publishes until the subscriber hears */
	WAIT_UNTIL((loomi_bus_stats_read(t.bus, &st), st.events_in == (uint64_t)rec_count(&r, NULL)),
	           5000);
	ck_assert_uint_ge(st.events_out, 1);
	ck_assert_uint_ge(st.events_out, st.events_in);
	ck_assert_uint_eq(st.events_in, (uint64_t)rec_count(&r, NULL));
	ck_assert_uint_eq(st.dropped, 0);

	loomi_bus_client_close(c);
	tbus_close(&t);
	rec_free(&r);
}
END_TEST

/* Timeouts beyond what NNG's 32-bit durations hold still wait, rather
 * than wrapping to "no time at all". */
START_TEST(request_long_timeout)
{
	tbus t;
	slow s;
	char *reply = NULL;

	slow_init(&s, 50); /* so that no reply can be there at once */
	tbus_open(&t, 0, 0);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "slow", h_slow, &s, NULL), 0);
	ck_assert_int_eq(loomi_bus_request(t.bus, "slow", NULL, "{}", (int64_t)1 << 32, &reply), 0);
	ck_assert_str_eq(reply, "{\"slept\":true}");
	free(reply);
	ck_assert_int_eq(loomi_bus_request(t.bus, "slow", NULL, "{}", 3000000000LL, NULL), 0);
	ck_assert_int_eq(loomi_bus_request(t.bus, "slow", NULL, "{}", INT64_MAX, NULL), 0);
	tbus_close(&t);
	slow_destroy(&s);
}
END_TEST

START_TEST(request_timeout)
{
	tbus t;
	slow s;
	char *reply = (char *)"untouched";
	int64_t t0, took;

	/* the handler outlasts the 100 ms timeout by far, so that a late
	 * wake-up of this thread on a loaded machine cannot pass for waiting
	 * on the handler */
	slow_init(&s, 3000);
	tbus_open(&t, 0, 0);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "slow", h_slow, &s, NULL), 0);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "echo", h_echo, NULL, NULL), 0);
	t0 = now_ms();
	ck_assert_int_eq(loomi_bus_request(t.bus, "slow", NULL, "{}", 100, &reply), LOOM_ETIMEDOUT);
	took = now_ms() - t0;
	ck_assert_ptr_null(reply);
	ck_assert_int_ge(took, 90);
	ck_assert_msg(took < 2000, "the timed-out request took %lld ms", (long long)took);
	ck_assert(!atomic_load(&s.finished));
	/* The bus still answers, while the slow handler still runs. */
	ck_assert_int_eq(loomi_bus_request(t.bus, "bus.ping", NULL, "{}", 2000, NULL), 0);
	ck_assert_int_eq(loomi_bus_request(t.bus, "echo", NULL, "{\"after\":1}", 2000, &reply), 0);
	ck_assert_str_eq(reply, "{\"echo\":{\"after\":1}}");
	free(reply);
	/* And after it has finished (its late reply goes nowhere). */
	WAIT_UNTIL(atomic_load(&s.finished), 10000);
	ck_assert(atomic_load(&s.finished));
	ck_assert_int_eq(loomi_bus_request(t.bus, "echo", NULL, "{\"later\":2}", 2000, &reply), 0);
	ck_assert_str_eq(reply, "{\"echo\":{\"later\":2}}");
	free(reply);
	ck_assert_uint_eq(loomi_bus_dropped(t.bus), 0);
	tbus_close(&t);
	slow_destroy(&s);
}
END_TEST

#define CONC_THREADS 8
#define CONC_REQUESTS 200

typedef struct conc {
	loomi_bus *bus;
	int t;
	int ok;
	int bad;
	char first_bad[256];
} conc;

static void *
conc_main(void *p)
{
	conc *c = p;
	for (int i = 0; i < CONC_REQUESTS; i++) {
		long long n = (long long)c->t * 100000 + i;
		char body[64], want[96], *reply = NULL;
		int rv;

		snprintf(body, sizeof body, "{\"n\":%lld}", n);
		snprintf(want, sizeof want, "{\"n\":%lld,\"sq\":%lld}", n, n * n);
		rv = loomi_bus_request(c->bus, "square", NULL, body, 10000, &reply);
		if (rv == 0 && reply && strcmp(reply, want) == 0) {
			c->ok++;
		} else if (c->bad++ == 0) {
			snprintf(c->first_bad, sizeof c->first_bad, "request %s: rv %d, reply %s", body,
			         rv, reply ? reply : "(null)");
		}
		free(reply);
	}
	return NULL;
}

START_TEST(concurrent_requests)
{
	pthread_t th[CONC_THREADS];
	conc c[CONC_THREADS];
	tbus t;

	tbus_open(&t, 0, 0);
	atomic_store(&calls, 0);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "square", h_square, NULL, NULL), 0);
	for (int i = 0; i < CONC_THREADS; i++) {
		memset(&c[i], 0, sizeof c[i]);
		c[i].bus = t.bus;
		c[i].t = i + 1;
		ck_assert_int_eq(pthread_create(&th[i], NULL, conc_main, &c[i]), 0);
	}
	for (int i = 0; i < CONC_THREADS; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < CONC_THREADS; i++) {
		ck_assert_msg(c[i].bad == 0, "thread %d: %d bad replies; first: %s", c[i].t, c[i].bad,
		              c[i].first_bad);
		ck_assert_int_eq(c[i].ok, CONC_REQUESTS);
	}
	ck_assert_int_eq(atomic_load(&calls), CONC_THREADS * CONC_REQUESTS);
	ck_assert_uint_eq(loomi_bus_dropped(t.bus), 0);
	tbus_close(&t);
}
END_TEST

/* ------------------------------------------------------------------ owners */

START_TEST(drop_owner_removes)
{
	static int owner_a, owner_b;
	rec ra, rb;
	rec *both[] = {&ra, &rb};
	tbus t;
	char *reply = NULL, body[64];
	int seen_a;

	rec_init(&ra);
	rec_init(&rb);
	tbus_open(&t, 0, 0);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "a.svc", h_echo, NULL, &owner_a), 0);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "a.other", h_echo, NULL, &owner_a), 0);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "b.svc", h_echo, NULL, &owner_b), 0);
	ck_assert_int_eq(loomi_bus_subscribe(t.bus, "x.", rec_cb, &ra, &owner_a), 0);
	ck_assert_int_eq(loomi_bus_subscribe(t.bus, "x.", rec_cb, &rb, &owner_b), 0);
	settle(t.bus, "x.probe", both, 2);
	ck_assert_int_eq(loomi_bus_request(t.bus, "a.svc", NULL, "{}", 2000, NULL), 0);

	loomi_bus_drop_owner(t.bus, &owner_a);
	ck_assert_int_eq(loomi_bus_request(t.bus, "a.svc", NULL, "{}", 2000, &reply),
	                 LOOM_ENOSERVICE);
	ck_assert_str_eq(reply, "no one serves \"a.svc\" on this bus");
	free(reply);
	ck_assert_int_eq(loomi_bus_request(t.bus, "a.other", NULL, "{}", 2000, NULL),
	                 LOOM_ENOSERVICE);
	ck_assert_int_eq(loomi_bus_request(t.bus, "b.svc", NULL, "{\"b\":1}", 2000, &reply), 0);
	ck_assert_str_eq(reply, "{\"echo\":{\"b\":1}}");
	free(reply);

	/* After the drop, A's callback never runs again; B's still does. */
	seen_a = rec_count(&ra, NULL);
	ck_assert_int_eq(loomi_bus_publish(t.bus, "x.after", "test", "{\"n\":1}"), 0);
	WAIT_UNTIL(rec_count(&rb, "x.after") == 1, 3000);
	ck_assert_int_eq(rec_count(&rb, "x.after"), 1);
	ck_assert(rec_body(&rb, "x.after", 0, body, sizeof body));
	ck_assert_str_eq(body, "{\"n\":1}");
	ck_assert_int_eq(rec_count(&ra, NULL), seen_a);
	ck_assert_int_eq(rec_count(&ra, "x.after"), 0);

	/* The name is free again. */
	ck_assert_int_eq(loomi_bus_serve(t.bus, "a.svc", h_empty, NULL, &owner_b), 0);
	ck_assert_int_eq(loomi_bus_request(t.bus, "a.svc", NULL, "{}", 2000, &reply), 0);
	ck_assert_str_eq(reply, "{}");
	free(reply);
	/* Dropping an owner with nothing left is harmless. */
	loomi_bus_drop_owner(t.bus, &owner_a);
	tbus_close(&t);
	rec_free(&ra);
	rec_free(&rb);
}
END_TEST

typedef struct req_thread {
	loomi_bus *bus;
	const char *service;
	int rv;
	char *reply;
} req_thread;

static void *
req_thread_main(void *p)
{
	req_thread *r = p;
	r->rv = loomi_bus_request(r->bus, r->service, NULL, "{}", 5000, &r->reply);
	return NULL;
}

START_TEST(drop_owner_waits_for_calls)
{
	static int owner;
	req_thread r = {0};
	pthread_t th;
	tbus t;
	slow s;

	slow_init(&s, 200);
	tbus_open(&t, 0, 0);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "slow", h_slow, &s, &owner), 0);
	r.bus = t.bus;
	r.service = "slow";
	ck_assert_int_eq(pthread_create(&th, NULL, req_thread_main, &r), 0);
	ck_assert_msg(slow_wait_started(&s, 5000), "the slow handler never started");
	ck_assert(!atomic_load(&s.finished));
	loomi_bus_drop_owner(t.bus, &owner);
	ck_assert_msg(atomic_load(&s.finished),
	              "loomi_bus_drop_owner returned while the handler still ran");
	pthread_join(th, NULL);
	/* The call in progress completes normally. */
	ck_assert_int_eq(r.rv, 0);
	ck_assert_str_eq(r.reply, "{\"slept\":true}");
	free(r.reply);
	ck_assert_int_eq(loomi_bus_request(t.bus, "slow", NULL, "{}", 2000, NULL), LOOM_ENOSERVICE);
	tbus_close(&t);
	slow_destroy(&s);
}
END_TEST

/* ------------------------------------------------------------------ publish/subscribe */

#define FAN_EVENTS 100

START_TEST(fanout)
{
	rec job[4], alert;
	rec *jobs[] = {&job[0], &job[1], &job[2], &job[3]}, *alerts[] = {&alert};
	loomi_bus_client *c = NULL;
	char *err = NULL;
	tbus t;

	for (int i = 0; i < 4; i++)
		rec_init(&job[i]);
	rec_init(&alert);
	tbus_open(&t, 0, 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(loomi_bus_subscribe(t.bus, "job.", rec_cb, &job[i], NULL), 0);
	ck_assert_int_eq(loomi_bus_subscribe(t.bus, "alert", rec_cb, &alert, NULL), 0);
	ck_assert_int_eq(loomi_bus_client_open(NULL, t.events, 0, &c, &err), 0);
	ck_assert_ptr_null(err);
	ck_assert_int_eq(loomi_bus_client_subscribe(c, "job.", rec_cb, &job[3]), 0);
	settle(t.bus, "job.probe", jobs, 4);
	settle(t.bus, "alert.probe", alerts, 1);

	for (int i = 0; i < FAN_EVENTS; i++) {
		char body[64];
		snprintf(body, sizeof body, "{\"seq\":%d,\"job\":\"j-1\"}", i);
		ck_assert_int_eq(loomi_bus_publish(t.bus, "job.progress", "sched", body), 0);
	}
	/* A last alert: its subscriber's pipe carried every job event before it. */
	ck_assert_int_eq(loomi_bus_publish(t.bus, "alert.end", "sched", "{}"), 0);

	for (int k = 0; k < 4; k++) {
		WAIT_UNTIL(rec_count(&job[k], "job.progress") == FAN_EVENTS, 10000);
		ck_assert_msg(rec_count(&job[k], "job.progress") == FAN_EVENTS,
		              "job subscriber %d (%s) got %d of %d events", k,
		              k == 3 ? "client over ipc" : "in process",
		              rec_count(&job[k], "job.progress"), FAN_EVENTS);
		for (int i = 0; i < FAN_EVENTS; i++) {
			char body[64], want[64];
			snprintf(want, sizeof want, "{\"seq\":%d,\"job\":\"j-1\"}", i);
			ck_assert(rec_body(&job[k], "job.progress", i, body, sizeof body));
			ck_assert_msg(strcmp(body, want) == 0, "subscriber %d, event %d: %s, want %s", k,
			              i, body, want);
		}
		/* Nothing but probes and progress (the prefix filter holds). */
		ck_assert_int_eq(rec_count(&job[k], NULL),
		                 rec_count(&job[k], "job.probe") + FAN_EVENTS);
	}
	WAIT_UNTIL(rec_count(&alert, "alert.end") == 1, 5000);
	ck_assert_int_eq(rec_count(&alert, "alert.end"), 1);
	ck_assert_int_eq(rec_count(&alert, "job.progress"), 0);
	ck_assert_int_eq(rec_count(&alert, NULL), rec_count(&alert, "alert.probe") + 1);
	ck_assert_uint_eq(loomi_bus_dropped(t.bus), 0);
	ck_assert_uint_eq(loomi_bus_client_dropped(c), 0);

	loomi_bus_client_close(c);
	tbus_close(&t);
	for (int i = 0; i < 4; i++)
		rec_free(&job[i]);
	rec_free(&alert);
}
END_TEST

START_TEST(publish_refusals)
{
	static const char *const bad_bodies[] = {"[1]", "\"s\"", "42", "null", "{bad",
	                                         "{\"a\":1,\"a\":2}"};
	static const char *const bad_topics[] = {"", "Job", ".job", "job state", "job/x"};
	char long_topic[LOOMI_BUS_NAME_MAX + 2];
	json_t *arr = json_array(), *obj = json_pack("{s:i}", "k", 1);
	rec r;
	rec *rs[] = {&r};
	char body[64];
	tbus t;

	rec_init(&r);
	tbus_open(&t, 0, 0);
	ck_assert_int_eq(loomi_bus_subscribe(t.bus, "", rec_cb, &r, NULL), 0);
	settle(t.bus, "probe", rs, 1);
	for (size_t i = 0; i < sizeof bad_bodies / sizeof bad_bodies[0]; i++)
		ck_assert_msg(loomi_bus_publish(t.bus, "job.x", NULL, bad_bodies[i]) == LOOM_EINVAL,
		              "publishing body %s should be LOOM_EINVAL", bad_bodies[i]);
	for (size_t i = 0; i < sizeof bad_topics / sizeof bad_topics[0]; i++)
		ck_assert_msg(loomi_bus_publish(t.bus, bad_topics[i], NULL, "{}") == LOOM_EINVAL,
		              "publishing on topic \"%s\" should be LOOM_EINVAL", bad_topics[i]);
	ck_assert_int_eq(loomi_bus_publish(t.bus, NULL, NULL, "{}"), LOOM_EINVAL);
	memset(long_topic, 't', sizeof long_topic);
	long_topic[LOOMI_BUS_NAME_MAX + 1] = '\0';
	ck_assert_int_eq(loomi_bus_publish(t.bus, long_topic, NULL, "{}"), LOOM_EINVAL);
	ck_assert_int_eq(loomi_bus_publish(t.bus, "job.x", "bad\nfrom", "{}"), LOOM_EINVAL);
	ck_assert_int_eq(loomi_bus_publish_json(t.bus, "job.x", NULL, arr), LOOM_EINVAL);
	ck_assert_int_eq(loomi_bus_publish_json(t.bus, "job.x", NULL, NULL), LOOM_EINVAL);
	ck_assert_int_eq(loomi_bus_publish_json(t.bus, "Job", NULL, obj), LOOM_EINVAL);

	/* The valid ones, in order, and nothing of the refused ones. */
	ck_assert_int_eq(loomi_bus_publish_json(t.bus, "job.json", NULL, obj), 0);
	ck_assert_int_eq(loomi_bus_publish(t.bus, "job.null", NULL, NULL), 0);
	WAIT_UNTIL(rec_count(&r, "job.null") == 1, 3000);
	ck_assert_int_eq(rec_count(&r, "job.json"), 1);
	ck_assert(rec_body(&r, "job.json", 0, body, sizeof body));
	ck_assert_str_eq(body, "{\"k\":1}");
	ck_assert(rec_body(&r, "job.null", 0, body, sizeof body));
	ck_assert_str_eq(body, "{}");
	ck_assert_int_eq(rec_count(&r, NULL), rec_count(&r, "probe") + 2);
	/* The object stays the caller's. */
	ck_assert_int_eq(obj->refcount, 1);
	json_decref(arr);
	json_decref(obj);
	tbus_close(&t);
	rec_free(&r);
}
END_TEST

/* Whatever loomi_bus_publish accepts, a subscriber with the same
 * max_message receives; one byte more is LOOM_ERANGE. */
START_TEST(publish_size_limit)
{
	enum { MAX = 4096 };
	rec r;
	rec *rs[] = {&r};
	tbus t;
	char *pad = malloc(2 * MAX + 64), *reply = NULL;
	size_t lo = 0, hi = 2 * MAX; /* lo accepted, hi refused */
	size_t overhead;
	char now[32];
	int accepted = 0;

	rec_init(&r);
	tbus_open(&t, MAX, 0);
	ck_assert_int_eq(loomi_bus_subscribe(t.bus, "big", rec_cb, &r, NULL), 0);
	settle(t.bus, "big.probe", rs, 1);
	/* Find the largest body that is accepted. */
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		int rv;
		snprintf(pad, 2 * MAX + 64, "{\"pad\":\"%0*d\"}", (int)mid, 0);
		rv = loomi_bus_publish(t.bus, "big.x", NULL, pad);
		ck_assert_msg(rv == 0 || rv == LOOM_ERANGE, "publish of %zu bytes: %d", mid, rv);
		if (rv == 0) {
			lo = mid;
			accepted++;
		} else {
			hi = mid;
		}
	}
	ck_assert_int_gt(accepted, 0);
	/* The largest accepted envelope is exactly MAX bytes of JSON: the
	 * limit does not count the topic frame. */
	snprintf(now, sizeof now, "%lld", (long long)loomi_wall_ms());
	overhead = strlen("{\"v\":1,\"kind\":\"event\",\"topic\":\"big.x\",\"time\":") +
	           strlen(now) + strlen(",\"body\":{\"pad\":\"\"}}");
	ck_assert_uint_eq(lo + overhead, MAX);
	WAIT_UNTIL(rec_count(&r, "big.x") == accepted, 3000);
	ck_assert_msg(rec_count(&r, "big.x") == accepted,
	              "%d events accepted by publish, %d received (%llu dropped)", accepted,
	              rec_count(&r, "big.x"), (unsigned long long)loomi_bus_dropped(t.bus));
	ck_assert_uint_eq(loomi_bus_dropped(t.bus), 0);

	/* Requests: refused before they are sent. */
	snprintf(pad, 2 * MAX + 64, "{\"pad\":\"%0*d\"}", MAX, 0);
	ck_assert_int_eq(loomi_bus_request(t.bus, "bus.ping", NULL, pad, 2000, &reply), LOOM_ERANGE);
	ck_assert_ptr_null(reply);
	free(pad);
	tbus_close(&t);
	rec_free(&r);
}
END_TEST

/* A reply too large for max_message is a prompt LOOM_ERANGE for the
 * requester, in process and over ipc, not a silent drop and a timeout. */
START_TEST(reply_too_large)
{
	enum { MAX = 4096 };
	loomi_bus_client *c = NULL;
	char *big = malloc(2 * MAX), *err = NULL, *reply = NULL;
	int64_t t0;
	tbus t;

	snprintf(big, 2 * MAX, "{\"pad\":\"%0*d\"}", MAX, 0);
	tbus_open(&t, MAX, 0);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "big", h_text, big, NULL), 0);
	tu_log_capture();
	t0 = now_ms();
	ck_assert_int_eq(loomi_bus_request(t.bus, "big", NULL, "{}", 5000, &reply), LOOM_ERANGE);
	ck_assert_ptr_nonnull(reply);
	ck_assert_msg(strncmp(reply, "the reply of \"big\" is ", 22) == 0 &&
	                      strstr(reply, " bytes, over bus.max_message (4096)") != NULL,
	              "message: %s", reply);
	free(reply);
	ck_assert_int_lt(now_ms() - t0, 2000);

	ck_assert_int_eq(loomi_bus_client_open(t.requests, NULL, MAX, &c, &err), 0);
	t0 = now_ms();
	ck_assert_int_eq(loomi_bus_client_request(c, "big", NULL, "{}", 5000, &reply), LOOM_ERANGE);
	ck_assert_ptr_nonnull(reply);
	ck_assert_ptr_nonnull(strstr(reply, " bytes, over bus.max_message (4096)"));
	free(reply);
	ck_assert_int_lt(now_ms() - t0, 2000);
	ck_assert_logged("warn bus: the reply of \"big\"");
	tu_log_stop();
	ck_assert_int_eq(loomi_bus_client_request(c, "bus.ping", NULL, "{}", 2000, NULL), 0);
	ck_assert_uint_eq(loomi_bus_client_dropped(c), 0);
	loomi_bus_client_close(c);
	tbus_close(&t);
	free(big);
}
END_TEST

/* ------------------------------------------------------------------ other processes */

/* Receive on a raw sub socket until an event on topic arrives. */
static bool
raw_recv_topic(nng_socket s, const char *topic, int64_t ms, loomi_envelope *env)
{
	int64_t deadline = now_ms() + ms;
	while (now_ms() < deadline) {
		nng_msg *m;
		const char *why;
		int rv;

		if (nng_recvmsg(s, &m, 0) != 0)
			continue;
		rv = loomi_envelope_parse(nng_msg_body(m), nng_msg_len(m), MIB, LOOMI_ENV_EVENT, env,
		                          &why);
		nng_msg_free(m);
		if (rv == 0 && strcmp(env->topic, topic) == 0)
			return true;
		if (rv == 0)
			loomi_envelope_free(env);
	}
	return false;
}

START_TEST(client_request_and_publish)
{
	loomi_bus_client *c = NULL;
	nng_socket raw;
	loomi_envelope env;
	int64_t deadline, t0, t1;
	char *err = NULL, *reply = NULL, *text, body[64];
	rec r;
	tbus t;

	rec_init(&r);
	tbus_open(&t, 0, 0);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "echo", h_echo, NULL, NULL), 0);
	ck_assert_int_eq(loomi_bus_subscribe(t.bus, "worker.", rec_cb, &r, NULL), 0);
	/* A raw subscriber sees the whole envelope, "from" included. */
	ck_assert_int_eq(nng_sub0_open(&raw), 0);
	ck_assert_int_eq(nng_socket_set(raw, NNG_OPT_SUB_SUBSCRIBE, "worker.", 7), 0);
	ck_assert_int_eq(nng_socket_set_ms(raw, NNG_OPT_RECVTIMEO, 20), 0);
	ck_assert_int_eq(nng_dial(raw, t.events, NULL, 0), 0);

	ck_assert_int_eq(loomi_bus_client_open(t.requests, NULL, 0, &c, &err), 0);
	ck_assert_ptr_null(err);
	ck_assert_int_eq(loomi_bus_client_request(c, "echo", "worker-7", "{\"a\":[1,2,3]}", 2000,
	                                          &reply),
	                 0);
	ck_assert_str_eq(reply, "{\"echo\":{\"a\":[1,2,3]}}");
	free(reply);
	ck_assert_int_eq(loomi_bus_client_request(c, "bus.ping", NULL, NULL, 2000, &reply), 0);
	ck_assert_ptr_nonnull(strstr(reply, "\"pong\":true"));
	free(reply);
	ck_assert_int_eq(loomi_bus_client_request(c, "nobody", NULL, "{}", 2000, &reply),
	                 LOOM_ENOSERVICE);
	ck_assert_str_eq(reply, "no one serves \"nobody\" on this bus");
	free(reply);
	ck_assert_int_eq(loomi_bus_client_request(c, "bus.publish", NULL, "{\"topic\":\"worker.x\"}",
	                                          2000, &reply),
	                 LOOM_EINVAL);
	ck_assert_str_eq(reply, "bus.publish needs {\"topic\": name, \"body\": {...}}");
	free(reply);
	ck_assert_int_eq(loomi_bus_client_request(c, "echo", NULL, "[1]", 2000, NULL), LOOM_EINVAL);
	ck_assert_int_eq(loomi_bus_client_publish(c, "Worker", NULL, "{}", 2000), LOOM_EINVAL);
	ck_assert_int_eq(loomi_bus_client_publish(c, "worker.x", NULL, "[1]", 2000), LOOM_EINVAL);
	ck_assert_int_eq(loomi_bus_client_publish(c, "worker.x", "bad\nfrom", "{}", 2000),
	                 LOOM_EINVAL);

	/* Settle the raw subscriber with probes through the client. */
	deadline = now_ms() + 5000;
	for (;;) {
		ck_assert_int_eq(loomi_bus_client_publish(c, "worker.probe", "probe", "{}", 2000), 0);
		if (raw_recv_topic(raw, "worker.probe", 40, &env)) {
			loomi_envelope_free(&env);
			break;
		}
		ck_assert_msg(now_ms() < deadline, "the raw subscriber saw no probe within 5 s");
	}

	t0 = loomi_wall_ms();
	ck_assert_int_eq(loomi_bus_client_publish(c, "worker.done", "worker-7", "{\"step\":3}", 2000),
	                 0);
	t1 = loomi_wall_ms();
	ck_assert_msg(raw_recv_topic(raw, "worker.done", 3000, &env), "no worker.done event");
	ck_assert_str_eq(env.topic, "worker.done");
	ck_assert_str_eq(env.from, "worker-7");
	ck_assert_int_ge(env.time, t0);
	ck_assert_int_le(env.time, t1);
	text = json_dumps(env.body, JSON_COMPACT);
	ck_assert_str_eq(text, "{\"step\":3}");
	free(text);
	loomi_envelope_free(&env);

	WAIT_UNTIL(rec_count(&r, "worker.done") == 1, 3000);
	ck_assert_int_eq(rec_count(&r, "worker.done"), 1);
	ck_assert(rec_body(&r, "worker.done", 0, body, sizeof body));
	ck_assert_str_eq(body, "{\"step\":3}");
	ck_assert_int_eq(rec_count(&r, NULL), rec_count(&r, "worker.probe") + 1);
	ck_assert_uint_eq(loomi_bus_client_dropped(c), 0);
	ck_assert_uint_eq(loomi_bus_dropped(t.bus), 0);

	nng_close(raw);
	loomi_bus_client_close(c);
	tbus_close(&t);
	rec_free(&r);
}
END_TEST

START_TEST(client_errors)
{
	loomi_bus_client *c = NULL;
	char *err = NULL, addr[160];
	tbus t;

	tbus_open(&t, 0, 0);
	snprintf(addr, sizeof addr, "ipc://%s/nobody", t.dir);
	ck_assert_int_eq(loomi_bus_client_open(addr, NULL, 0, &c, &err), LOOM_EUNREACHABLE);
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err, addr) && strstr(err, "is loomd running"), "message: %s", err);
	free(err);
	err = NULL;

	/* Requests only: no subscriptions. */
	ck_assert_int_eq(loomi_bus_client_open(t.requests, NULL, 0, &c, &err), 0);
	ck_assert_int_eq(loomi_bus_client_subscribe(c, "job.", rec_cb, NULL), LOOM_ENOTSUP);
	loomi_bus_client_close(c);
	/* Events only: no requests, no publishing. */
	ck_assert_int_eq(loomi_bus_client_open(NULL, t.events, 0, &c, &err), 0);
	ck_assert_int_eq(loomi_bus_client_request(c, "bus.ping", NULL, "{}", 2000, NULL),
	                 LOOM_ENOTSUP);
	ck_assert_int_eq(loomi_bus_client_publish(c, "job.x", NULL, "{}", 2000), LOOM_ENOTSUP);
	ck_assert_int_eq(loomi_bus_client_subscribe(c, "Job", rec_cb, NULL), LOOM_EINVAL);
	loomi_bus_client_close(c);
	/* Events where no one listens. */
	ck_assert_int_eq(loomi_bus_client_open(NULL, addr, 0, &c, &err), 0);
	ck_assert_int_eq(loomi_bus_client_subscribe(c, "job.", rec_cb, NULL), LOOM_EUNREACHABLE);
	loomi_bus_client_close(c);
	loomi_bus_client_close(NULL);
	tbus_close(&t);
}
END_TEST

/* Closing a bus stops its serving threads cleanly, every time (NNG 1.5
 * panics when a context is released while its socket closes). */
START_TEST(open_close_cycles)
{
	loomi_bus_config cfg = {0};

	cfg.threads = 8;
	for (int i = 0; i < 150; i++) {
		loomi_bus *bus = NULL;
		char *err = NULL;
		ck_assert_int_eq(loomi_bus_open(&cfg, &bus, &err), 0);
		ck_assert_int_eq(loomi_bus_request(bus, "bus.ping", NULL, "{}", 2000, NULL), 0);
		loomi_bus_close(bus);
	}
}
END_TEST

START_TEST(open_errors)
{
	loomi_bus_config cfg = {0};
	loomi_bus *bus = NULL, *second = NULL;
	char *err = NULL;
	tbus t;

	/* Failing to listen is LOOM_EIO (NNG's "not supported" and "address
	 * in use" both map there), with a message naming the address. */
	cfg.requests = "bogus://nowhere";
	ck_assert_int_eq(loomi_bus_open(&cfg, &bus, &err), LOOM_EIO);
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err, "cannot listen on bogus://nowhere"), "message: %s", err);
	free(err);
	err = NULL;

	tbus_open(&t, 0, 0);
	cfg.requests = t.requests;
	ck_assert_int_eq(loomi_bus_open(&cfg, &second, &err), LOOM_EIO);
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err, t.requests) && strstr(err, "another process holds that address"),
	              "message: %s", err);
	free(err);
	err = NULL;
	cfg.requests = NULL;
	cfg.events = t.events;
	ck_assert_int_eq(loomi_bus_open(&cfg, &second, &err), LOOM_EIO);
	ck_assert_msg(err && strstr(err, t.events), "message: %s", err ? err : "(null)");
	free(err);
	/* The first bus is unharmed. */
	ck_assert_int_eq(loomi_bus_request(t.bus, "bus.ping", NULL, "{}", 2000, NULL), 0);
	tbus_close(&t);
	/* No configuration: in process only. */
	ck_assert_int_eq(loomi_bus_open(NULL, &bus, &err), 0);
	ck_assert_ptr_null(err);
	ck_assert_int_eq(loomi_bus_request(bus, "bus.ping", NULL, "{}", 2000, NULL), 0);
	loomi_bus_close(bus);
	loomi_bus_close(NULL);
}
END_TEST

/* The child: a separate program (this one, exec'd), because NNG refuses to
 * run in a forked copy of a process that has used it ("nng is not
 * fork-reentrant safe").  Exit status: 0 success, 2 open, 3 request,
 * 4 reply, 5 publish. */
static int
child_main(const char *requests)
{
	loomi_bus_client *c = NULL;
	char *err = NULL, *reply = NULL, body[64], want[96];
	int status = 0;

	snprintf(body, sizeof body, "{\"pid\":%ld}", (long)getpid());
	snprintf(want, sizeof want, "{\"echo\":%s}", body);
	if (loomi_bus_client_open(requests, NULL, 0, &c, &err) != 0) {
		fprintf(stderr, "child: %s\n", err ? err : "cannot open a client");
		free(err);
		_exit(2);
	}
	if (loomi_bus_client_request(c, "echo", "child", body, 5000, &reply) != 0)
		status = 3;
	else if (reply == NULL || strcmp(reply, want) != 0)
		status = 4;
	free(reply);
	if (status == 0 && loomi_bus_client_publish(c, "child.hello", "child", body, 5000) != 0)
		status = 5;
	loomi_bus_client_close(c);
	_exit(status);
}

START_TEST(other_process)
{
	char exe[PATH_MAX], want[64], body[64];
	rec r;
	rec *rs[] = {&r};
	int64_t deadline;
	ssize_t n;
	pid_t pid, got = 0;
	int st = 0;
	tbus t;

	rec_init(&r);
	tbus_open(&t, 0, 0);
	ck_assert_int_eq(loomi_bus_serve(t.bus, "echo", h_echo, NULL, NULL), 0);
	ck_assert_int_eq(loomi_bus_subscribe(t.bus, "child.", rec_cb, &r, NULL), 0);
	settle(t.bus, "child.probe", rs, 1);
	n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	ck_assert_int_gt(n, 0);
	exe[n] = '\0';

	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execl(exe, exe, "--bus-child", t.requests, (char *)NULL);
		_exit(127);
	}
	deadline = now_ms() + 20000;
	while ((got = waitpid(pid, &st, WNOHANG)) == 0 && now_ms() < deadline)
		sleep_ms(5);
	if (got == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		ck_abort_msg("the child did not finish within 20 s");
	}
	ck_assert_int_eq(got, pid);
	ck_assert_msg(WIFEXITED(st), "the child died (status 0x%x)", st);
	ck_assert_msg(WEXITSTATUS(st) == 0, "the child failed with status %d (2 open, 3 request, "
	              "4 reply, 5 publish, 127 exec)", WEXITSTATUS(st));

	snprintf(want, sizeof want, "{\"pid\":%ld}", (long)pid);
	WAIT_UNTIL(rec_count(&r, "child.hello") == 1, 3000);
	ck_assert_int_eq(rec_count(&r, "child.hello"), 1);
	ck_assert(rec_body(&r, "child.hello", 0, body, sizeof body));
	ck_assert_str_eq(body, want);
	ck_assert_uint_eq(loomi_bus_dropped(t.bus), 0);
	tbus_close(&t);
	rec_free(&r);
}
END_TEST

/* ------------------------------------------------------------------ malformed on the wire */

static atomic_int raw_pipes_removed;

static void
raw_pipe_removed(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	(void)p;
	(void)ev;
	(void)arg;
	atomic_fetch_add(&raw_pipes_removed, 1);
}

/* A request envelope for bus.ping padded to exactly len bytes. */
static char *
ping_of_len(int64_t id, size_t len)
{
	char *base = loomi_strfmt("{\"v\":1,\"kind\":\"request\",\"id\":%lld,\"service\":\"bus.ping\","
	                          "\"body\":{\"pad\":\"\"}}", (long long)id);
	size_t n = strlen(base);
	char *m;

	ck_assert_uint_ge(len, n);
	m = loomi_strfmt("{\"v\":1,\"kind\":\"request\",\"id\":%lld,\"service\":\"bus.ping\","
	                 "\"body\":{\"pad\":\"%0*d\"}}", (long long)id, (int)(len - n), 0);
	free(base);
	ck_assert_uint_eq(strlen(m), len);
	return m;
}

/* Send a raw request and expect the reply to id: an ok bus.ping reply. */
static void
raw_expect_pong(nng_socket s, const char *msg, int64_t id)
{
	loomi_envelope env;
	const char *why = NULL;
	char *buf = NULL;
	size_t sz = 0;
	int rv;

	ck_assert_int_eq(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 5000), 0);
	ck_assert_int_eq(nng_send(s, (void *)msg, strlen(msg), 0), 0);
	rv = nng_recv(s, &buf, &sz, NNG_FLAG_ALLOC);
	ck_assert_msg(rv == 0, "no reply to a valid request: %s", nng_strerror(rv));
	rv = loomi_envelope_parse(buf, sz, MIB, LOOMI_ENV_REPLY, &env, &why);
	ck_assert_msg(rv == 0, "the reply is malformed: %s", why);
	ck_assert_int_eq(env.id, id);
	ck_assert_int_eq(env.ok, 1);
	ck_assert(json_is_true(json_object_get(env.body, "pong")));
	loomi_envelope_free(&env);
	nng_free(buf, sz);
}

START_TEST(wire_malformed_requests)
{
	enum { MAX = 4096 };
	static const struct {
		const char *msg, *why;
	} garbage[] = {
		{"this is not JSON", "not valid JSON"},
		{"{\"v\":2,\"kind\":\"request\",\"id\":1,\"service\":\"bus.ping\",\"body\":{}}",
		 "unsupported envelope version"},
		{"{\"v\":1,\"kind\":\"request\",\"id\":1,\"service\":\"bus.ping\"}",
		 "\"body\" is not an object"},
		{"{\"v\":1,\"kind\":\"request\",\"id\":1,\"service\":\"Bus Ping\",\"body\":{}}",
		 "missing or invalid \"service\" name"},
		{"{\"v\":1,\"kind\":\"reply\",\"id\":1,\"ok\":true,\"body\":{}}",
		 "wrong or missing \"kind\""},
		{"{\"v\":1,\"kind\":\"request\",\"id\":-4,\"service\":\"bus.ping\",\"body\":{}}",
		 "no non-negative integer \"id\""},
		{"[\"request\"]", "not a JSON object"},
	};
	nng_socket s;
	char *msg, *buf, line[256];
	size_t sz;
	uint64_t before;
	int removed, rv;
	tbus t;

	tbus_open(&t, MAX, 0);
	ck_assert_int_eq(nng_req0_open(&s), 0);
	ck_assert_int_eq(nng_pipe_notify(s, NNG_PIPE_EV_REM_POST, raw_pipe_removed, NULL), 0);
	atomic_store(&raw_pipes_removed, 0);
	ck_assert_int_eq(nng_dial(s, t.requests, NULL, 0), 0);
	tu_log_capture();

	for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
		before = loomi_bus_dropped(t.bus);
		buf = NULL;
		ck_assert_int_eq(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 150), 0);
		ck_assert_int_eq(nng_send(s, (void *)garbage[i].msg, strlen(garbage[i].msg), 0), 0);
		rv = nng_recv(s, &buf, &sz, NNG_FLAG_ALLOC);
		if (rv == 0)
			nng_free(buf, sz);
		ck_assert_msg(rv == NNG_ETIMEDOUT, "garbage %zu (%s): got %s, want no reply", i,
		              garbage[i].msg, rv ? nng_strerror(rv) : "a reply");
		WAIT_UNTIL(loomi_bus_dropped(t.bus) == before + 1, 2000);
		ck_assert_uint_eq(loomi_bus_dropped(t.bus), before + 1);
		snprintf(line, sizeof line, "warn bus: dropped a malformed request: %s\n",
		         garbage[i].why);
		ck_assert_logged(line);
	}
	ck_assert_uint_eq(loomi_bus_dropped(t.bus), sizeof garbage / sizeof garbage[0]);

	/* A valid request of exactly max_message bytes is answered. */
	msg = ping_of_len(900001, MAX);
	raw_expect_pong(s, msg, 900001);
	free(msg);
	ck_assert_int_eq(atomic_load(&raw_pipes_removed), 0);

	/* One byte more reaches the bus (the transport allows for NNG's
	 * request header) and is dropped as too large. */
	before = loomi_bus_dropped(t.bus);
	msg = ping_of_len(900002, MAX + 1);
	ck_assert_int_eq(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 150), 0);
	ck_assert_int_eq(nng_send(s, msg, strlen(msg), 0), 0);
	buf = NULL;
	rv = nng_recv(s, &buf, &sz, NNG_FLAG_ALLOC);
	if (rv == 0)
		nng_free(buf, sz);
	free(msg);
	ck_assert_msg(rv == NNG_ETIMEDOUT, "request of max + 1 bytes: got %s, want no reply",
	              rv ? nng_strerror(rv) : "a reply");
	WAIT_UNTIL(loomi_bus_dropped(t.bus) == before + 1, 2000);
	ck_assert_uint_eq(loomi_bus_dropped(t.bus), before + 1);
	ck_assert_logged("warn bus: dropped a malformed request: message larger than "
	                 "bus.max_message\n");
	ck_assert_int_eq(atomic_load(&raw_pipes_removed), 0);

	/* Far over: the ipc transport refuses it before the bus sees it
	 * (NNG_OPT_RECVMAXSZ on the listener) and closes the connection.  So
	 * no reply, no count in loomi_bus_dropped(), no log line from the bus:
	 * the outcome is the connection being dropped. */
	before = loomi_bus_dropped(t.bus);
	removed = atomic_load(&raw_pipes_removed);
	msg = ping_of_len(900003, 2 * MAX);
	ck_assert_int_eq(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 300), 0);
	ck_assert_int_eq(nng_send(s, msg, strlen(msg), 0), 0);
	buf = NULL;
	rv = nng_recv(s, &buf, &sz, NNG_FLAG_ALLOC);
	if (rv == 0)
		nng_free(buf, sz);
	free(msg);
	ck_assert_msg(rv == NNG_ETIMEDOUT, "oversize request: got %s, want no reply",
	              rv ? nng_strerror(rv) : "a reply");
	WAIT_UNTIL(atomic_load(&raw_pipes_removed) > removed, 2000);
	ck_assert_int_gt(atomic_load(&raw_pipes_removed), removed);
	ck_assert_uint_eq(loomi_bus_dropped(t.bus), before);

	/* The bus still answers: the raw socket (it redials) and a client. */
	msg = ping_of_len(900004, 200);
	raw_expect_pong(s, msg, 900004);
	free(msg);
	ck_assert_int_eq(loomi_bus_request(t.bus, "bus.ping", NULL, "{}", 2000, NULL), 0);
	tu_log_stop();
	nng_close(s);
	tbus_close(&t);
}
END_TEST

/* TOPIC '\0' JSON */
static void
raw_pub(nng_socket pub, const char *topic, const char *json)
{
	size_t tn = topic ? strlen(topic) + 1 : 0, jn = strlen(json);
	char *m = malloc(tn + jn);
	if (topic)
		memcpy(m, topic, tn);
	memcpy(m + tn, json, jn);
	ck_assert_int_eq(nng_send(pub, m, tn + jn, 0), 0);
	free(m);
}

START_TEST(wire_malformed_events)
{
	enum { MAX = 4096 };
	static const struct {
		const char *topic, *json, *why;
	} garbage[] = {
		{NULL, "t.nonul{\"v\":1,\"kind\":\"event\",\"topic\":\"t.nonul\",\"time\":1,\"body\":{}}",
		 "event without a topic frame"},
		{"t.a", "{\"v\":1,\"kind\":\"event\",\"topic\":\"t.b\",\"time\":1,\"body\":{}}",
		 "invalid \"topic\", or one that differs from the topic frame"},
		{"t.a", "{\"v\":1,\"kind\":\"event\",", "not valid JSON"},
		{"t.a", "{\"v\":1,\"kind\":\"event\",\"topic\":\"t.a\",\"time\":1,\"body\":[1]}",
		 "\"body\" is not an object"},
		{"t.a", "{\"v\":2,\"kind\":\"event\",\"topic\":\"t.a\",\"time\":1,\"body\":{}}",
		 "unsupported envelope version"},
		{"t.a", "{\"v\":1,\"kind\":\"event\",\"topic\":\"t.a\",\"time\":\"now\",\"body\":{}}",
		 "no integer \"time\""},
		{"t.a", "{\"v\":1,\"kind\":\"request\",\"topic\":\"t.a\",\"time\":1,\"body\":{}}",
		 "wrong or missing \"kind\""},
		{"t.a", NULL, "message larger than bus.max_message"}, /* built below */
	};
	static const char ok[] = "{\"v\":1,\"kind\":\"event\",\"topic\":\"t.ok\",\"time\":5,"
	                         "\"from\":\"raw\",\"body\":{\"fine\":true}}";
	static const char probe[] = "{\"v\":1,\"kind\":\"event\",\"topic\":\"t.probe\",\"time\":1,"
	                            "\"body\":{}}";
	const size_t n_garbage = sizeof garbage / sizeof garbage[0];
	loomi_bus_client *c = NULL;
	nng_socket pub;
	char *dir = tu_tmpdir(), addr[128], *err = NULL, *big, body[64], line[256];
	int64_t deadline;
	uint64_t before;
	rec r;

	rec_init(&r);
	ck_assert(strlen(dir) < 90);
	snprintf(addr, sizeof addr, "ipc://%s/p", dir);
	ck_assert_int_eq(nng_pub0_open(&pub), 0);
	ck_assert_int_eq(nng_listen(pub, addr, NULL, 0), 0);
	ck_assert_int_eq(loomi_bus_client_open(NULL, addr, MAX, &c, &err), 0);
	ck_assert_int_eq(loomi_bus_client_subscribe(c, "t.", rec_cb, &r), 0);
	deadline = now_ms() + 5000;
	for (;;) {
		raw_pub(pub, "t.probe", probe);
		WAIT_UNTIL(rec_count(&r, "t.probe") > 0, 20);
		if (rec_count(&r, "t.probe") > 0)
			break;
		ck_assert_msg(now_ms() < deadline, "the client subscriber saw no probe within 5 s");
	}
	/* A JSON part of MAX + 1 bytes: under the socket's limit (MAX plus a
	 * topic frame), over the envelope's. */
	big = loomi_strfmt("{\"v\":1,\"kind\":\"event\",\"topic\":\"t.a\",\"time\":1,\"body\":{\"p\":"
	                   "\"%0*d\"}}", 1, 0);
	{
		size_t base = strlen(big) - 1;
		free(big);
		big = loomi_strfmt("{\"v\":1,\"kind\":\"event\",\"topic\":\"t.a\",\"time\":1,"
		                   "\"body\":{\"p\":\"%0*d\"}}", (int)(MAX + 1 - base), 0);
		ck_assert_uint_eq(strlen(big), MAX + 1);
	}

	tu_log_capture();
	before = loomi_bus_client_dropped(c);
	for (size_t i = 0; i < n_garbage; i++)
		raw_pub(pub, garbage[i].topic, garbage[i].json ? garbage[i].json : big);
	raw_pub(pub, "t.ok", ok);
	WAIT_UNTIL(rec_count(&r, "t.ok") == 1, 5000);
	ck_assert_int_eq(rec_count(&r, "t.ok"), 1);
	ck_assert(rec_body(&r, "t.ok", 0, body, sizeof body));
	ck_assert_str_eq(body, "{\"fine\":true}");
	/* Only the probes and the valid event reached the callback. */
	ck_assert_int_eq(rec_count(&r, NULL), rec_count(&r, "t.probe") + 1);
	WAIT_UNTIL(loomi_bus_client_dropped(c) == before + n_garbage, 2000);
	ck_assert_uint_eq(loomi_bus_client_dropped(c), before + n_garbage);
	for (size_t i = 0; i < n_garbage; i++) {
		snprintf(line, sizeof line,
		         "warn bus: dropped a malformed event (subscription \"t.\"): %s\n",
		         garbage[i].why);
		ck_assert_logged(line);
	}
	tu_log_stop();

	loomi_bus_client_close(c);
	nng_close(pub);
	free(big);
	tu_rmrf(dir);
	free(dir);
	rec_free(&r);
}
END_TEST

int
main(int argc, char **argv)
{
	Suite *s;
	TCase *tc;
	int rv;

	if (argc == 3 && strcmp(argv[1], "--bus-child") == 0)
		return child_main(argv[2]);

	s = suite_create("bus");
	tc = tcase_create("envelopes");
	tcase_add_test(tc, envelope_request_reply_event);
	tcase_add_test(tc, envelope_malformed);
	tcase_add_test(tc, envelope_service_name_length);
	tcase_add_test(tc, envelope_size_limit);
	tcase_add_test(tc, name_ok);
	suite_add_tcase(s, tc);

	tc = tcase_create("in-process");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, serve_and_request);
	tcase_add_test(tc, handler_errors);
	tcase_add_test(tc, serve_and_request_refusals);
	tcase_add_test(tc, ping);
	tcase_add_test(tc, request_long_timeout);
	tcase_add_test(tc, request_timeout);
	tcase_add_test(tc, concurrent_requests);
	tcase_add_test(tc, drop_owner_removes);
	tcase_add_test(tc, drop_owner_waits_for_calls);
	tcase_add_test(tc, open_errors);
	tcase_add_test(tc, open_close_cycles);
	suite_add_tcase(s, tc);

	tc = tcase_create("pubsub");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, fanout);
	tcase_add_test(tc, publish_refusals);
	tcase_add_test(tc, publish_size_limit);
	suite_add_tcase(s, tc);

	tc = tcase_create("other-processes");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, client_request_and_publish);
	tcase_add_test(tc, client_errors);
	tcase_add_test(tc, other_process);
	tcase_add_test(tc, reply_too_large);
	suite_add_tcase(s, tc);

	tc = tcase_create("wire");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, wire_malformed_requests);
	tcase_add_test(tc, wire_malformed_events);
	tcase_add_test(tc, stats_count_messages);
	suite_add_tcase(s, tc);

	rv = tu_run(s);
	/* NNG keeps global state until nng_fini(); release it so leak checkers
	 * see only our own leaks. */
	nng_fini();
	return rv;
}

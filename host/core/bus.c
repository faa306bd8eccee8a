/* The message bus over NNG: envelopes, the host side (rep + pub sockets,
 * services, in-process subscriptions) and the client side used by other
 * processes.  See bus.h and docs/bus.md. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "bus.h"
#include "log.h"
#include "util.h"

#define DEFAULT_MAX_MESSAGE (1024 * 1024)
#define DEFAULT_TIMEOUT_MS 10000
/* NNG's req/rep protocols put a header (the request id, one word per hop)
 * before the envelope, and the transport's NNG_OPT_RECVMAXSZ counts it: allow
 * for it there, so that max_message bounds the envelope alone. */
#define WIRE_HEADER_MAX 64
/* How many events a publisher queues per subscriber before it drops (NNG's
 * default, 16, loses events in any burst). */
#define PUB_QUEUE 1024

/* ------------------------------------------------------------------ envelopes */

int
loomi_bus_name_ok(const char *name)
{
	size_t n;

	if (name == NULL || (n = strlen(name)) == 0 || n > LOOMI_BUS_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		          (i > 0 && (c == '.' || c == '_' || c == '-'));
		if (!ok)
			return 0;
	}
	return 1;
}

static bool
prefix_ok(const char *prefix)
{
	return prefix && (prefix[0] == '\0' || loomi_bus_name_ok(prefix));
}

static bool
from_ok(const char *from)
{
	size_t n = strlen(from);
	if (n > LOOMI_BUS_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)from[i] < 0x20 || from[i] == 0x7f)
			return false;
	}
	return true;
}

void
loomi_envelope_free(loomi_envelope *env)
{
	json_decref(env->doc);
	memset(env, 0, sizeof *env);
}

int
loomi_envelope_parse(const void *data, size_t len, size_t max, int kind, loomi_envelope *env,
                     const char **why)
{
	const char *p = data, *json = data, *wire_topic = NULL;
	size_t jlen = len;
	json_error_t jerr;
	json_t *d, *v;
	const char *k;

	memset(env, 0, sizeof *env);
	if (kind == LOOMI_ENV_EVENT) {
		const char *nul = memchr(p, '\0', len < LOOMI_BUS_NAME_MAX + 1 ? len : LOOMI_BUS_NAME_MAX + 1);
		if (nul == NULL) {
			*why = "event without a topic frame";
			return LOOM_EPROTO;
		}
		wire_topic = p;
		json = nul + 1;
		jlen = len - (size_t)(json - p);
	}
	/* For events, max bounds the JSON; the topic frame comes on top. */
	if (jlen > max) {
		*why = "message larger than bus.max_message";
		return LOOM_EPROTO;
	}
	d = json_loadb(json, jlen, JSON_REJECT_DUPLICATES, &jerr);
	if (d == NULL) {
		*why = "not valid JSON";
		return LOOM_EPROTO;
	}
	env->doc = d;
	if (!json_is_object(d)) {
		*why = "not a JSON object";
		goto bad;
	}
	v = json_object_get(d, "v");
	if (!json_is_integer(v)) {
		*why = "no integer version \"v\"";
		goto bad;
	}
	if (json_integer_value(v) != LOOMI_BUS_VERSION) {
		*why = "unsupported envelope version";
		goto bad;
	}
	k = json_string_value(json_object_get(d, "kind"));
	if (k == NULL || strcmp(k, kind == LOOMI_ENV_REQUEST ? "request"
	                           : kind == LOOMI_ENV_REPLY ? "reply"
	                                                     : "event") != 0) {
		*why = "wrong or missing \"kind\"";
		goto bad;
	}
	env->kind = kind;
	if ((v = json_object_get(d, "from")) != NULL) {
		if (!json_is_string(v) || !from_ok(json_string_value(v))) {
			*why = "\"from\" is not a short printable string";
			goto bad;
		}
		env->from = json_string_value(v);
	}
	if (kind == LOOMI_ENV_REQUEST || kind == LOOMI_ENV_REPLY) {
		v = json_object_get(d, "id");
		if (!json_is_integer(v) || json_integer_value(v) < 0) {
			*why = "no non-negative integer \"id\"";
			goto bad;
		}
		env->id = json_integer_value(v);
	}
	switch (kind) {
	case LOOMI_ENV_REQUEST:
		env->service = json_string_value(json_object_get(d, "service"));
		if (!loomi_bus_name_ok(env->service)) {
			*why = "missing or invalid \"service\" name";
			goto bad;
		}
		env->body = json_object_get(d, "body");
		if (!json_is_object(env->body)) {
			*why = "\"body\" is not an object";
			goto bad;
		}
		break;
	case LOOMI_ENV_REPLY:
		v = json_object_get(d, "ok");
		if (!json_is_boolean(v)) {
			*why = "no boolean \"ok\"";
			goto bad;
		}
		env->ok = json_is_true(v);
		if (env->ok) {
			env->body = json_object_get(d, "body");
			if (!json_is_object(env->body)) {
				*why = "\"body\" is not an object";
				goto bad;
			}
		} else {
			json_t *e = json_object_get(d, "error"), *code;
			code = json_object_get(e, "code");
			if (!json_is_object(e) || !json_is_integer(code) ||
			    json_integer_value(code) <= 0 || json_integer_value(code) > 65535) {
				*why = "failed reply without a valid \"error\"";
				goto bad;
			}
			env->error_code = (int)json_integer_value(code);
			env->error_message = json_string_value(json_object_get(e, "message"));
		}
		break;
	case LOOMI_ENV_EVENT:
		env->topic = json_string_value(json_object_get(d, "topic"));
		if (!loomi_bus_name_ok(env->topic) || strcmp(env->topic, wire_topic) != 0) {
			*why = "invalid \"topic\", or one that differs from the topic frame";
			goto bad;
		}
		v = json_object_get(d, "time");
		if (!json_is_integer(v)) {
			*why = "no integer \"time\"";
			goto bad;
		}
		env->time = json_integer_value(v);
		env->body = json_object_get(d, "body");
		if (!json_is_object(env->body)) {
			*why = "\"body\" is not an object";
			goto bad;
		}
		break;
	}
	return 0;
bad:
	loomi_envelope_free(env);
	return LOOM_EPROTO;
}

static json_t *
parse_body(const char *body)
{
	json_t *b;
	if (body == NULL || body[0] == '\0')
		return json_object();
	b = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
	if (b && !json_is_object(b)) {
		json_decref(b);
		b = NULL;
	}
	return b;
}

/* Serialize doc (stolen) into a new message, with an optional frame. */
static int
msg_from_json(json_t *doc, const char *frame, nng_msg **out)
{
	char *text = json_dumps(doc, JSON_COMPACT);
	nng_msg *m;
	int rv;

	json_decref(doc);
	if (text == NULL)
		return LOOM_ENOMEM;
	if ((rv = nng_msg_alloc(&m, 0)) != 0) {
		free(text);
		return LOOM_ENOMEM;
	}
	if ((frame && nng_msg_append(m, frame, strlen(frame) + 1) != 0) ||
	    nng_msg_append(m, text, strlen(text)) != 0) {
		nng_msg_free(m);
		free(text);
		return LOOM_ENOMEM;
	}
	free(text);
	*out = m;
	return 0;
}

static json_t *
reply_doc(int64_t id, int code, json_t *body, const char *message)
{
	if (code == 0)
		return json_pack("{s:i, s:s, s:I, s:b, s:o}", "v", LOOMI_BUS_VERSION, "kind",
		                 "reply", "id", (json_int_t)id, "ok", 1,
		                 "body", body ? body : json_object());
	json_decref(body);
	return json_pack("{s:i, s:s, s:I, s:b, s:{s:i, s:s, s:s}}", "v", LOOMI_BUS_VERSION,
	                 "kind", "reply", "id", (json_int_t)id, "ok", 0, "error", "code", code,
	                 "name", loom_errname(code), "message",
	                 message ? message : loom_strerror(code));
}

static int
nng_to_loom(int rv)
{
	switch (rv) {
	case 0: return 0;
	case NNG_ETIMEDOUT: return LOOM_ETIMEDOUT;
	case NNG_ECLOSED: return LOOM_ECLOSED;
	case NNG_ENOMEM: return LOOM_ENOMEM;
	case NNG_ECONNREFUSED:
	case NNG_ENOENT:
	case NNG_EADDRINVAL:
	case NNG_EUNREACHABLE: return LOOM_EUNREACHABLE;
	case NNG_EINVAL: return LOOM_EINVAL;
	case NNG_EPERM: return LOOM_EPERM;
	default: return LOOM_EIO;
	}
}

/* ------------------------------------------------------------------ requests */

static atomic_llong next_id = 1;

/* What a bus or a client counts (loomi_bus_stats): relaxed atomic adds. */
typedef struct counts {
	atomic_ullong dropped;
	atomic_ullong requests_in, replies_out, requests_out, replies_in, events_out, events_in;
} counts;

static void
count(atomic_ullong *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* One request over a req socket, with its own context. */
static int
req_roundtrip(nng_socket req, size_t max, const char *service, const char *from,
              const char *body, int64_t timeout_ms, char **reply, counts *n)
{
	nng_ctx ctx;
	nng_aio *aio = NULL;
	nng_msg *m = NULL;
	json_t *b, *doc;
	loomi_envelope env;
	const char *why;
	int64_t id = atomic_fetch_add(&next_id, 1);
	int rv;

	if (reply)
		*reply = NULL;
	if (!loomi_bus_name_ok(service))
		return LOOM_EINVAL;
	if (from && !from_ok(from))
		return LOOM_EINVAL;
	if ((b = parse_body(body)) == NULL)
		return LOOM_EINVAL;
	doc = json_pack("{s:i, s:s, s:I, s:s, s:o}", "v", LOOMI_BUS_VERSION, "kind", "request",
	                "id", (json_int_t)id, "service", service, "body", b);
	if (doc && from)
		json_object_set_new(doc, "from", json_string(from));
	if (doc == NULL)
		return LOOM_ENOMEM;
	if ((rv = msg_from_json(doc, NULL, &m)) != 0)
		return rv;
	if (nng_msg_len(m) > max) {
		nng_msg_free(m);
		return LOOM_ERANGE;
	}
	if (timeout_ms <= 0)
		timeout_ms = DEFAULT_TIMEOUT_MS;
	if (timeout_ms > INT32_MAX) /* nng_duration is 32 bits */
		timeout_ms = INT32_MAX;
	if ((rv = nng_ctx_open(&ctx, req)) != 0) {
		nng_msg_free(m);
		return nng_to_loom(rv);
	}
	if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
		nng_msg_free(m);
		nng_ctx_close(ctx);
		return nng_to_loom(rv);
	}
	nng_aio_set_timeout(aio, (nng_duration)timeout_ms);
	nng_aio_set_msg(aio, m);
	nng_ctx_send(ctx, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0) {
		nng_msg_free(m);
		goto out;
	}
	count(&n->requests_out);
	for (;;) {
		nng_ctx_recv(ctx, aio);
		nng_aio_wait(aio);
		if ((rv = nng_aio_result(aio)) != 0)
			goto out;
		m = nng_aio_get_msg(aio);
		rv = loomi_envelope_parse(nng_msg_body(m), nng_msg_len(m), max, LOOMI_ENV_REPLY,
		                          &env, &why);
		nng_msg_free(m);
		if (rv == 0 && env.id == id) {
			count(&n->replies_in);
			break;
		}
		if (rv == 0)
			loomi_envelope_free(&env);
		count(&n->dropped);
		LOG_WARN("bus: dropped a malformed reply to %s: %s", service,
		         rv ? why : "its id does not match the request");
		rv = LOOM_EPROTO;
		goto out_proto;
	}
	if (env.ok) {
		if (reply)
			*reply = json_dumps(env.body, JSON_COMPACT);
		rv = 0;
	} else {
		if (reply && env.error_message)
			*reply = loomi_strdup(env.error_message);
		rv = env.error_code;
	}
	loomi_envelope_free(&env);
	nng_aio_free(aio);
	nng_ctx_close(ctx);
	return rv;
out:
	rv = nng_to_loom(rv);
out_proto:
	nng_aio_free(aio);
	nng_ctx_close(ctx);
	return rv;
}

/* ------------------------------------------------------------------ subscriptions */

typedef struct sub {
	nng_socket sock;
	pthread_t thread;
	char *prefix;
	loom_event_fn fn;
	void *arg;
	const void *owner;
	size_t max;
	counts *n;
	struct sub *next;
} sub;

static void *
sub_main(void *p)
{
	sub *s = p;
	for (;;) {
		nng_msg *m;
		loomi_envelope env;
		const char *why;
		char *body;
		int rv = nng_recvmsg(s->sock, &m, 0);

		if (rv == NNG_ECLOSED)
			break;
		if (rv != 0)
			continue;
		rv = loomi_envelope_parse(nng_msg_body(m), nng_msg_len(m), s->max, LOOMI_ENV_EVENT,
		                          &env, &why);
		nng_msg_free(m);
		if (rv != 0) {
			count(&s->n->dropped);
			LOG_WARN("bus: dropped a malformed event (subscription \"%s\"): %s", s->prefix,
			         why);
			continue;
		}
		count(&s->n->events_in);
		body = json_dumps(env.body, JSON_COMPACT);
		if (body)
			s->fn(s->arg, env.topic, body);
		free(body);
		loomi_envelope_free(&env);
	}
	return NULL;
}

static int
sub_open(const char *addr, const char *prefix, loom_event_fn fn, void *arg, const void *owner,
         size_t max, counts *n, sub **out)
{
	sub *s;
	int rv;

	if (!prefix_ok(prefix) || fn == NULL)
		return LOOM_EINVAL;
	s = loomi_xcalloc(1, sizeof *s);
	if ((rv = nng_sub0_open(&s->sock)) != 0) {
		free(s);
		return nng_to_loom(rv);
	}
	nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, max + LOOMI_BUS_NAME_MAX + 1);
	nng_socket_set_int(s->sock, NNG_OPT_RECVBUF, 1024);
	if ((rv = nng_socket_set(s->sock, NNG_OPT_SUB_SUBSCRIBE, prefix, strlen(prefix))) != 0 ||
	    (rv = nng_dial(s->sock, addr, NULL, 0)) != 0) {
		nng_close(s->sock);
		free(s);
		return nng_to_loom(rv);
	}
	s->prefix = loomi_strdup(prefix);
	s->fn = fn;
	s->arg = arg;
	s->owner = owner;
	s->max = max;
	s->n = n;
	if ((rv = pthread_create(&s->thread, NULL, sub_main, s)) != 0) {
		nng_close(s->sock);
		free(s->prefix);
		free(s);
		return LOOM_ENOMEM;
	}
	*out = s;
	return 0;
}

static void
sub_close(sub *s)
{
	nng_close(s->sock);
	pthread_join(s->thread, NULL);
	free(s->prefix);
	free(s);
}

/* ------------------------------------------------------------------ the host bus */

typedef struct bus_service {
	char *name;
	loom_service_fn fn;
	void *arg;
	const void *owner;
	int active;       /* calls in progress */
	bool dead;        /* being removed */
	struct bus_service *next;
} bus_service;

/* A request-serving thread.  Its aio lives here so that loomi_bus_close can
 * cancel what the thread waits for. */
typedef struct server {
	struct loomi_bus *bus;
	nng_aio *aio;
	pthread_t thread;
	atomic_bool done;
} server;

struct loomi_bus {
	nng_socket rep, pub, req;
	char inproc_req[64], inproc_events[64];
	size_t max;
	int n_servers;             /* started */
	server *servers;
	atomic_bool closing;
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	bus_service *services;
	sub *subs;
	counts n;
};

static atomic_uint bus_counter;

uint64_t
loomi_bus_dropped(const loomi_bus *bus)
{
	return atomic_load(&((loomi_bus *)bus)->n.dropped);
}

void
loomi_bus_stats_read(const loomi_bus *bus, loomi_bus_stats *out)
{
	counts *n = &((loomi_bus *)bus)->n;

	out->requests_in = atomic_load_explicit(&n->requests_in, memory_order_relaxed);
	out->replies_out = atomic_load_explicit(&n->replies_out, memory_order_relaxed);
	out->requests_out = atomic_load_explicit(&n->requests_out, memory_order_relaxed);
	out->replies_in = atomic_load_explicit(&n->replies_in, memory_order_relaxed);
	out->events_out = atomic_load_explicit(&n->events_out, memory_order_relaxed);
	out->events_in = atomic_load_explicit(&n->events_in, memory_order_relaxed);
	out->dropped = atomic_load_explicit(&n->dropped, memory_order_relaxed);
}

static int
publish_doc(loomi_bus *bus, const char *topic, const char *from, json_t *body)
{
	json_t *doc;
	nng_msg *m;
	int rv;

	if (!loomi_bus_name_ok(topic) || (from && !from_ok(from))) {
		json_decref(body);
		return LOOM_EINVAL;
	}
	doc = json_pack("{s:i, s:s, s:s, s:I, s:o}", "v", LOOMI_BUS_VERSION, "kind", "event",
	                "topic", topic, "time", (json_int_t)loomi_wall_ms(), "body", body);
	if (doc == NULL)
		return LOOM_ENOMEM;
	if (from)
		json_object_set_new(doc, "from", json_string(from));
	if ((rv = msg_from_json(doc, topic, &m)) != 0)
		return rv;
	if (nng_msg_len(m) - (strlen(topic) + 1) > bus->max) {
		nng_msg_free(m);
		return LOOM_ERANGE;
	}
	if ((rv = nng_sendmsg(bus->pub, m, 0)) != 0) {
		nng_msg_free(m);
		return nng_to_loom(rv);
	}
	count(&bus->n.events_out);
	return 0;
}

int
loomi_bus_publish(loomi_bus *bus, const char *topic, const char *from, const char *body)
{
	json_t *b = parse_body(body);
	if (b == NULL)
		return LOOM_EINVAL;
	return publish_doc(bus, topic, from, b);
}

int
loomi_bus_publish_json(loomi_bus *bus, const char *topic, const char *from, const json_t *body)
{
	if (!json_is_object(body))
		return LOOM_EINVAL;
	return publish_doc(bus, topic, from, json_deep_copy(body));
}

/* Built-in services, then registered ones.  Returns the reply document. */
static json_t *
dispatch(loomi_bus *bus, const loomi_envelope *env)
{
	bus_service *s;
	char *req_text, *reply = NULL;
	json_t *body = NULL;
	int rv;

	if (strcmp(env->service, "bus.ping") == 0)
		return reply_doc(env->id, 0, json_pack("{s:b, s:I}", "pong", 1, "time",
		                                       (json_int_t)loomi_wall_ms()), NULL);
	if (strcmp(env->service, "bus.publish") == 0) {
		const char *topic = json_string_value(json_object_get(env->body, "topic"));
		json_t *b = json_object_get(env->body, "body");
		if (!loomi_bus_name_ok(topic) || !json_is_object(b))
			return reply_doc(env->id, LOOM_EINVAL, NULL,
			                 "bus.publish needs {\"topic\": name, \"body\": {...}}");
		rv = publish_doc(bus, topic, env->from, json_deep_copy(b));
		return reply_doc(env->id, rv, NULL, NULL);
	}

	pthread_mutex_lock(&bus->mtx);
	for (s = bus->services; s; s = s->next) {
		if (!s->dead && strcmp(s->name, env->service) == 0)
			break;
	}
	if (s == NULL) {
		pthread_mutex_unlock(&bus->mtx);
		char *msg = loomi_strfmt("no one serves \"%s\" on this bus", env->service);
		json_t *d = reply_doc(env->id, LOOM_ENOSERVICE, NULL, msg);
		free(msg);
		return d;
	}
	s->active++;
	pthread_mutex_unlock(&bus->mtx);

	req_text = json_dumps(env->body, JSON_COMPACT);
	rv = req_text ? s->fn(s->arg, req_text, &reply) : LOOM_ENOMEM;
	free(req_text);

	pthread_mutex_lock(&bus->mtx);
	if (--s->active == 0 && s->dead)
		pthread_cond_broadcast(&bus->cv);
	pthread_mutex_unlock(&bus->mtx);

	if (rv != 0) {
		json_t *d;
		if (rv < 0 || rv > 65535) {
			LOG_ERROR("bus: the handler of \"%s\" returned %d, not a LOOM_E* code",
			          env->service, rv);
			rv = LOOM_EINTERNAL;
		}
		if (reply)
			loomi_utf8_clean(reply); /* a message in another encoding */
		d = reply_doc(env->id, rv, NULL, reply);
		free(reply);
		return d ? d : reply_doc(env->id, LOOM_EINTERNAL, NULL, NULL);
	}
	if (reply && (body = parse_body(reply)) == NULL) {
		LOG_ERROR("bus: the handler of \"%s\" returned a reply that is not a JSON object",
		          env->service);
		free(reply);
		return reply_doc(env->id, LOOM_EINTERNAL, NULL,
		                 "the service's handler returned malformed JSON");
	}
	free(reply);
	return reply_doc(env->id, 0, body, NULL);
}

static void *
serve_main(void *p)
{
	server *sv = p;
	loomi_bus *bus = sv->bus;
	nng_aio *aio = sv->aio;
	nng_ctx ctx;

	if (nng_ctx_open(&ctx, bus->rep) != 0) {
		atomic_store(&sv->done, true);
		return NULL;
	}
	while (!atomic_load(&bus->closing)) {
		nng_msg *m;
		loomi_envelope env;
		const char *why;
		json_t *reply;
		int rv;

		nng_ctx_recv(ctx, aio);
		nng_aio_wait(aio);
		if ((rv = nng_aio_result(aio)) == NNG_ECLOSED)
			break;
		if (rv != 0) /* NNG_ECANCELED: loomi_bus_close wants us gone */
			continue;
		m = nng_aio_get_msg(aio);
		rv = loomi_envelope_parse(nng_msg_body(m), nng_msg_len(m), bus->max,
		                          LOOMI_ENV_REQUEST, &env, &why);
		nng_msg_free(m);
		if (rv != 0) {
			/* Not trusted enough to answer: drop; the requester times out. */
			count(&bus->n.dropped);
			LOG_WARN("bus: dropped a malformed request: %s", why);
			continue;
		}
		count(&bus->n.requests_in);
		reply = dispatch(bus, &env);
		if (reply == NULL || msg_from_json(reply, NULL, &m) != 0) {
			loomi_envelope_free(&env);
			continue;
		}
		if (nng_msg_len(m) > bus->max) {
			/* The requester would refuse it: say why instead. */
			char *msg = loomi_strfmt("the reply of \"%s\" is %zu bytes, over "
			                         "bus.max_message (%zu)",
			                         env.service, nng_msg_len(m), bus->max);
			LOG_WARN("bus: %s", msg);
			nng_msg_free(m);
			rv = msg_from_json(reply_doc(env.id, LOOM_ERANGE, NULL, msg), NULL, &m);
			free(msg);
			if (rv != 0) {
				loomi_envelope_free(&env);
				continue;
			}
		}
		loomi_envelope_free(&env);
		nng_aio_set_msg(aio, m);
		nng_ctx_send(ctx, aio);
		nng_aio_wait(aio);
		if ((rv = nng_aio_result(aio)) != 0) {
			nng_msg_free(m);
			if (rv == NNG_ECLOSED)
				break;
		} else {
			count(&bus->n.replies_out);
		}
	}
	/* Close the context here, while the socket is open: NNG 1.5 may
	 * destroy a context on one thread while nng_close(socket) on another
	 * frees the protocol state under it (a panic, "pthread_mutex_lock:
	 * Invalid argument"). */
	nng_ctx_close(ctx);
	atomic_store(&sv->done, true);
	return NULL;
}

/* Stop the serving threads before their socket closes (see serve_main). */
static void
stop_servers(loomi_bus *bus)
{
	bool running;

	atomic_store(&bus->closing, true);
	do {
		/* A thread may start a receive just after a cancel: repeat. */
		running = false;
		for (int i = 0; i < bus->n_servers; i++) {
			if (!atomic_load(&bus->servers[i].done)) {
				running = true;
				nng_aio_cancel(bus->servers[i].aio);
			}
		}
		if (running)
			nanosleep(&(struct timespec){0, 1000000}, NULL);
	} while (running);
	for (int i = 0; i < bus->n_servers; i++) {
		pthread_join(bus->servers[i].thread, NULL);
		nng_aio_free(bus->servers[i].aio);
	}
	bus->n_servers = 0;
}

static int
listen_on(nng_socket s, const char *addr, size_t max, char **err)
{
	nng_listener l;
	int rv;

	if ((rv = nng_listener_create(&l, s, addr)) != 0) {
		*err = loomi_strfmt("bus: cannot listen on %s: %s; check the address (ipc://PATH "
		                    "or tcp://HOST:PORT)",
		                    addr, nng_strerror(rv));
		return nng_to_loom(rv);
	}
	nng_listener_set_size(l, NNG_OPT_RECVMAXSZ, max + WIRE_HEADER_MAX);
	if (strncmp(addr, "ipc://", 6) == 0)
		nng_listener_set_int(l, NNG_OPT_IPC_PERMISSIONS, 0600);
	if ((rv = nng_listener_start(l, 0)) != 0) {
		*err = loomi_strfmt("bus: cannot listen on %s: %s%s", addr, nng_strerror(rv),
		                    rv == NNG_EADDRINUSE ? "; another process holds that address"
		                                         : "");
		nng_listener_close(l);
		return nng_to_loom(rv);
	}
	return 0;
}

int
loomi_bus_open(const loomi_bus_config *cfg, loomi_bus **out, char **err)
{
	loomi_bus *bus = loomi_xcalloc(1, sizeof *bus);
	unsigned n = atomic_fetch_add(&bus_counter, 1);
	int n_threads, rv;

	*err = NULL;
	bus->max = cfg && cfg->max_message ? cfg->max_message : DEFAULT_MAX_MESSAGE;
	pthread_mutex_init(&bus->mtx, NULL);
	pthread_cond_init(&bus->cv, NULL);
	snprintf(bus->inproc_req, sizeof bus->inproc_req, "inproc://loom-bus-%u.req", n);
	snprintf(bus->inproc_events, sizeof bus->inproc_events, "inproc://loom-bus-%u.events", n);

	if ((rv = nng_rep0_open(&bus->rep)) != 0 || (rv = nng_pub0_open(&bus->pub)) != 0 ||
	    (rv = nng_req0_open(&bus->req)) != 0) {
		*err = loomi_strfmt("bus: cannot open sockets: %s", nng_strerror(rv));
		rv = nng_to_loom(rv);
		goto fail;
	}
	nng_socket_set_size(bus->rep, NNG_OPT_RECVMAXSZ, bus->max + WIRE_HEADER_MAX);
	nng_socket_set_size(bus->req, NNG_OPT_RECVMAXSZ, bus->max + WIRE_HEADER_MAX);
	nng_socket_set_int(bus->pub, NNG_OPT_SENDBUF, PUB_QUEUE);
	nng_socket_set_ms(bus->req, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	if ((rv = listen_on(bus->rep, bus->inproc_req, bus->max, err)) != 0 ||
	    (rv = listen_on(bus->pub, bus->inproc_events, bus->max, err)) != 0)
		goto fail;
	if (cfg && cfg->requests && (rv = listen_on(bus->rep, cfg->requests, bus->max, err)) != 0)
		goto fail;
	if (cfg && cfg->events && (rv = listen_on(bus->pub, cfg->events, bus->max, err)) != 0)
		goto fail;
	if ((rv = nng_dial(bus->req, bus->inproc_req, NULL, 0)) != 0) {
		*err = loomi_strfmt("bus: cannot connect in process: %s", nng_strerror(rv));
		rv = nng_to_loom(rv);
		goto fail;
	}
	n_threads = cfg && cfg->threads > 0 ? cfg->threads : 4;
	bus->servers = loomi_xcalloc((size_t)n_threads, sizeof *bus->servers);
	for (int i = 0; i < n_threads; i++) {
		server *sv = &bus->servers[i];
		sv->bus = bus;
		atomic_init(&sv->done, false);
		if (nng_aio_alloc(&sv->aio, NULL, NULL) != 0) {
			*err = loomi_strdup("bus: cannot start its threads: out of memory");
			rv = LOOM_ENOMEM;
			goto fail;
		}
		if (pthread_create(&sv->thread, NULL, serve_main, sv) != 0) {
			nng_aio_free(sv->aio);
			*err = loomi_strdup("bus: cannot start its threads");
			rv = LOOM_ENOMEM;
			goto fail;
		}
		bus->n_servers++; /* the threads loomi_bus_close stops */
	}
	*out = bus;
	return 0;
fail:
	loomi_bus_close(bus);
	return rv;
}

void
loomi_bus_close(loomi_bus *bus)
{
	if (bus == NULL)
		return;
	stop_servers(bus);
	free(bus->servers);
	nng_close(bus->req);
	nng_close(bus->rep);
	while (bus->subs) {
		sub *s = bus->subs;
		bus->subs = s->next;
		sub_close(s);
	}
	nng_close(bus->pub);
	while (bus->services) {
		bus_service *s = bus->services;
		bus->services = s->next;
		free(s->name);
		free(s);
	}
	pthread_cond_destroy(&bus->cv);
	pthread_mutex_destroy(&bus->mtx);
	free(bus);
}

int
loomi_bus_serve(loomi_bus *bus, const char *name, loom_service_fn fn, void *arg,
                const void *owner)
{
	bus_service *s;

	if (!loomi_bus_name_ok(name) || fn == NULL || strncmp(name, "bus.", 4) == 0)
		return LOOM_EINVAL;
	pthread_mutex_lock(&bus->mtx);
	for (s = bus->services; s; s = s->next) {
		if (!s->dead && strcmp(s->name, name) == 0) {
			pthread_mutex_unlock(&bus->mtx);
			return LOOM_EEXIST;
		}
	}
	s = loomi_xcalloc(1, sizeof *s);
	s->name = loomi_strdup(name);
	s->fn = fn;
	s->arg = arg;
	s->owner = owner;
	s->next = bus->services;
	bus->services = s;
	pthread_mutex_unlock(&bus->mtx);
	return 0;
}

int
loomi_bus_subscribe(loomi_bus *bus, const char *prefix, loom_event_fn fn, void *arg,
                    const void *owner)
{
	sub *s;
	int rv = sub_open(bus->inproc_events, prefix, fn, arg, owner, bus->max, &bus->n, &s);
	if (rv != 0)
		return rv;
	pthread_mutex_lock(&bus->mtx);
	s->next = bus->subs;
	bus->subs = s;
	pthread_mutex_unlock(&bus->mtx);
	return 0;
}

void
loomi_bus_drop_owner(loomi_bus *bus, const void *owner)
{
	sub *gone = NULL, **sp;
	bus_service **pp;
	bool busy;

	pthread_mutex_lock(&bus->mtx);
	for (bus_service *s = bus->services; s; s = s->next) {
		if (s->owner == owner)
			s->dead = true;
	}
	do {
		busy = false;
		for (bus_service *s = bus->services; s; s = s->next) {
			if (s->dead && s->active > 0)
				busy = true;
		}
		if (busy)
			pthread_cond_wait(&bus->cv, &bus->mtx);
	} while (busy);
	for (pp = &bus->services; *pp;) {
		bus_service *s = *pp;
		if (s->dead) {
			*pp = s->next;
			free(s->name);
			free(s);
		} else {
			pp = &s->next;
		}
	}
	for (sp = &bus->subs; *sp;) {
		sub *s = *sp;
		if (s->owner == owner) {
			*sp = s->next;
			s->next = gone;
			gone = s;
		} else {
			sp = &s->next;
		}
	}
	pthread_mutex_unlock(&bus->mtx);
	while (gone) {
		sub *s = gone;
		gone = s->next;
		sub_close(s);
	}
}

int
loomi_bus_request(loomi_bus *bus, const char *service, const char *from, const char *body,
                  int64_t timeout_ms, char **reply)
{
	return req_roundtrip(bus->req, bus->max, service, from, body, timeout_ms, reply,
	                     &bus->n);
}

/* ------------------------------------------------------------------ clients */

struct loomi_bus_client {
	nng_socket req;
	bool has_req;
	char *events;
	size_t max;
	pthread_mutex_t mtx;
	sub *subs;
	counts n;
};

int
loomi_bus_client_open(const char *requests, const char *events, size_t max_message,
                      loomi_bus_client **out, char **err)
{
	loomi_bus_client *c = loomi_xcalloc(1, sizeof *c);
	int rv;

	*err = NULL;
	c->max = max_message ? max_message : DEFAULT_MAX_MESSAGE;
	pthread_mutex_init(&c->mtx, NULL);
	if (requests) {
		if ((rv = nng_req0_open(&c->req)) != 0) {
			*err = loomi_strfmt("bus: cannot open a socket: %s", nng_strerror(rv));
			loomi_bus_client_close(c);
			return nng_to_loom(rv);
		}
		c->has_req = true;
		nng_socket_set_size(c->req, NNG_OPT_RECVMAXSZ, c->max + WIRE_HEADER_MAX);
		nng_socket_set_ms(c->req, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
		/* A full listen backlog (hundreds of workers starting at once)
		 * answers EAGAIN: try again for up to 30 s.  Anything else (no
		 * daemon, a wrong address) is reported at once. */
		for (int tries = 0; (rv = nng_dial(c->req, requests, NULL, 0)) == NNG_EAGAIN &&
		                    tries < 300;
		     tries++)
			nng_msleep(100);
		if (rv != 0) {
			*err = loomi_strfmt("bus: cannot connect to %s: %s; is loomd running, and is "
			                    "this its bus.requests address?",
			                    requests, nng_strerror(rv));
			loomi_bus_client_close(c);
			return nng_to_loom(rv);
		}
	}
	c->events = events ? loomi_strdup(events) : NULL;
	*out = c;
	return 0;
}

void
loomi_bus_client_close(loomi_bus_client *c)
{
	if (c == NULL)
		return;
	if (c->has_req)
		nng_close(c->req);
	while (c->subs) {
		sub *s = c->subs;
		c->subs = s->next;
		sub_close(s);
	}
	free(c->events);
	pthread_mutex_destroy(&c->mtx);
	free(c);
}

int
loomi_bus_client_request(loomi_bus_client *c, const char *service, const char *from,
                         const char *body, int64_t timeout_ms, char **reply)
{
	if (!c->has_req)
		return LOOM_ENOTSUP;
	return req_roundtrip(c->req, c->max, service, from, body, timeout_ms, reply, &c->n);
}

int
loomi_bus_client_publish(loomi_bus_client *c, const char *topic, const char *from,
                         const char *body, int64_t timeout_ms)
{
	json_t *b = parse_body(body), *req;
	char *text, *reply = NULL;
	int rv;

	if (b == NULL || !loomi_bus_name_ok(topic)) {
		json_decref(b);
		return LOOM_EINVAL;
	}
	req = json_pack("{s:s, s:o}", "topic", topic, "body", b);
	text = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (text == NULL)
		return LOOM_ENOMEM;
	rv = loomi_bus_client_request(c, "bus.publish", from, text, timeout_ms, &reply);
	free(text);
	free(reply);
	return rv;
}

int
loomi_bus_client_subscribe(loomi_bus_client *c, const char *prefix, loom_event_fn fn, void *arg)
{
	sub *s;
	int rv;

	if (c->events == NULL)
		return LOOM_ENOTSUP;
	if ((rv = sub_open(c->events, prefix, fn, arg, NULL, c->max, &c->n, &s)) != 0)
		return rv;
	pthread_mutex_lock(&c->mtx);
	s->next = c->subs;
	c->subs = s;
	pthread_mutex_unlock(&c->mtx);
	return 0;
}

uint64_t
loomi_bus_client_dropped(const loomi_bus_client *c)
{
	return atomic_load(&((loomi_bus_client *)c)->n.dropped);
}

/* The message bus (NNG): request/reply for commands, publish/subscribe for
 * events, in process over inproc:// and for other processes over ipc:// or
 * tcp://.  Messages are versioned JSON envelopes (docs/bus.md):
 *
 *   request  {"v":1,"kind":"request","id":7,"service":"s","from":"f","body":{…}}
 *   reply    {"v":1,"kind":"reply","id":7,"ok":true,"body":{…}}
 *            {"v":1,"kind":"reply","id":7,"ok":false,
 *             "error":{"code":3,"name":"LOOM_ENOENT","message":"…"}}
 *   event    TOPIC '\0' {"v":1,"kind":"event","topic":"job.state","time":ms,
 *                        "from":"f","body":{…}}
 *
 * Every message is checked on receipt — size, JSON, version, kind, names,
 * body — and a malformed one is logged, counted and dropped.
 *
 * Built-in services: "bus.ping" answers {"pong":true}; "bus.publish" takes
 * {"topic":T,"body":{…}} and publishes it, so processes that only hold a
 * request socket (workers) can raise events that the host validates. */
#ifndef LOOM_HOST_BUS_H
#define LOOM_HOST_BUS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <loom/host.h>

#define LOOMI_BUS_VERSION 1
#define LOOMI_BUS_NAME_MAX 128

typedef struct loomi_bus loomi_bus;
typedef struct loomi_bus_client loomi_bus_client;

typedef struct loomi_bus_config {
	const char *requests;      /* external request listener, or NULL */
	const char *events;        /* external event listener, or NULL */
	size_t max_message;        /* bytes of an envelope (an event's topic
	                            * frame comes on top); 0: 1 MiB */
	int threads;               /* request-serving threads; 0: 4 */
} loomi_bus_config;

int loomi_bus_open(const loomi_bus_config *cfg, loomi_bus **out, char **err);
void loomi_bus_close(loomi_bus *bus);

/* Serve a service.  LOOM_EEXIST when it is taken, LOOM_EINVAL for a bad
 * name.  owner groups registrations for loomi_bus_drop_owner. */
int loomi_bus_serve(loomi_bus *bus, const char *service, loom_service_fn fn, void *arg,
                    const void *owner);
/* Subscribe fn to events whose topic begins with prefix; fn runs on the
 * subscription's own thread. */
int loomi_bus_subscribe(loomi_bus *bus, const char *prefix, loom_event_fn fn, void *arg,
                        const void *owner);
/* Remove owner's services (waiting for calls in progress) and
 * subscriptions.  Never call it from one of owner's handlers. */
void loomi_bus_drop_owner(loomi_bus *bus, const void *owner);

/* Publish an event; body must be a JSON object (text). */
int loomi_bus_publish(loomi_bus *bus, const char *topic, const char *from, const char *body);
/* Publish an event given as a jansson object (borrowed). */
int loomi_bus_publish_json(loomi_bus *bus, const char *topic, const char *from,
                           const json_t *body);
/* Request a service and wait up to timeout_ms (≤ 0: 10 s) for the reply.
 * 0 with the reply body (JSON text) in *reply, or the remote's error code
 * with its message in *reply (either may be NULL).  Free with free(). */
int loomi_bus_request(loomi_bus *bus, const char *service, const char *from,
                      const char *body, int64_t timeout_ms, char **reply);

/* Messages dropped as malformed since the bus opened. */
uint64_t loomi_bus_dropped(const loomi_bus *bus);

/* What the bus has carried since it opened, for GET /metrics: each count
 * a relaxed atomic add where the message passes. */
typedef struct loomi_bus_stats {
	uint64_t requests_in;      /* requests received and served (bus.* included) */
	uint64_t replies_out;      /* replies sent for them */
	uint64_t requests_out;     /* requests sent by loomi_bus_request */
	uint64_t replies_in;       /* replies received for them */
	uint64_t events_out;       /* events published */
	uint64_t events_in;        /* events handed to this process's subscribers */
	uint64_t dropped;          /* malformed messages dropped (loomi_bus_dropped) */
} loomi_bus_stats;

void loomi_bus_stats_read(const loomi_bus *bus, loomi_bus_stats *out);

/* ------------------------------------------------------------------ other processes */

/* Connect to a host's request and event addresses (either may be NULL). */
int loomi_bus_client_open(const char *requests, const char *events, size_t max_message,
                          loomi_bus_client **out, char **err);
void loomi_bus_client_close(loomi_bus_client *c);
int loomi_bus_client_request(loomi_bus_client *c, const char *service, const char *from,
                             const char *body, int64_t timeout_ms, char **reply);
/* Publish through the host's "bus.publish" service (acknowledged). */
int loomi_bus_client_publish(loomi_bus_client *c, const char *topic, const char *from,
                             const char *body, int64_t timeout_ms);
int loomi_bus_client_subscribe(loomi_bus_client *c, const char *prefix, loom_event_fn fn,
                               void *arg);
uint64_t loomi_bus_client_dropped(const loomi_bus_client *c);

/* ------------------------------------------------------------------ envelopes */

enum loomi_env_kind {
	LOOMI_ENV_REQUEST = 1,
	LOOMI_ENV_REPLY = 2,
	LOOMI_ENV_EVENT = 3,
};

typedef struct loomi_envelope {
	json_t *doc;               /* owns everything below */
	int kind;
	int64_t id;                /* request, reply */
	const char *service;       /* request */
	const char *topic;         /* event */
	const char *from;          /* request, event; may be NULL */
	int64_t time;              /* event */
	const json_t *body;        /* request, event, ok reply */
	int ok;                    /* reply */
	int error_code;            /* failed reply */
	const char *error_message; /* failed reply */
} loomi_envelope;

/* Check a message of the given kind.  Events carry "TOPIC\0" before the
 * JSON.  0, or LOOM_EPROTO with *why set (a static string). */
int loomi_envelope_parse(const void *data, size_t len, size_t max, int kind,
                         loomi_envelope *env, const char **why);
void loomi_envelope_free(loomi_envelope *env);

/* Is name a valid service or topic name ([a-z0-9][a-z0-9._-]*, ≤ 128)?
 * Topic prefixes may be empty and may end in '.'. */
int loomi_bus_name_ok(const char *name);

#endif /* LOOM_HOST_BUS_H */

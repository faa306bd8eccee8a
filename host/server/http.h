/* Loom's HTTP/1.1 and WebSocket server, on NNG byte streams (nng_stream
 * over tcp://, tls+tcp:// for HTTPS and WSS, and ipc:// for a Unix
 * socket).
 *
 * Why not NNG's own HTTP server: in NNG 1.5.2 (Debian 12) it canonicalises
 * every request path in place with a decoder that, for a path ending in a
 * percent escape ("/x/%41", "/x/%ff?a"), steps over the terminating NUL and
 * goes on reading and writing past the heap block that holds the path, so
 * any client can make loomd read and write outside its memory
 * (valgrind: "Invalid read of size 1 … 0 bytes after a block", from
 * http_sconn_rxdone → http_uri_canonify).  Its WebSocket listener sits on
 * the same server.  This module does the parsing itself; NNG still does the
 * sockets, the asynchronous I/O and its threads.
 *
 * What it serves:
 * - HTTP/1.1 and 1.0 requests, persistent connections (1.1 by default,
 *   "Connection: close" honoured, 1.0 closed after the answer), pipelined
 *   requests answered in order, HEAD (the body left out, its length kept);
 * - bodies by Content-Length up to max_body bytes (413 beyond, answered
 *   before the body is read); "Transfer-Encoding: chunked" request bodies
 *   are decoded (a malformed chunk is 400);
 * - a byte budget for the request bodies of all connections together
 *   (body_budget): a body announced by Content-Length is charged whole
 *   when its head arrives, a chunked one chunk by chunk, and released when
 *   its request is answered or its connection ends; past the budget, 503
 *   with Retry-After.  Buffers of 128 KiB and more are mmapped, so what a
 *   finished body held goes back to the system at once;
 * - connections: up to max_conns, of them up to max_conns_per_client from
 *   one client address; past either, the reserve (reserve more
 *   connections) serves only the requests the reserved() callback names
 *   (health, control), one per connection, and no WebSocket upgrade;
 *   past the reserve, 503 at once;
 * - refusals, each with a JSON body {"error":{"code":…,"message":…}}
 *   naming what was wrong and what to send instead, then the connection
 *   closed: 400 (malformed request line, header, Content-Length, chunk or a
 *   bare LF), 431 (request head over max_head bytes), 505 (not HTTP/1.x),
 *   503 (the connection limits or the body budget, with Retry-After), 408
 *   (the head or body did not arrive within request_timeout_ms);
 * - idle persistent connections closed after idle_timeout_ms;
 * - WebSocket (RFC 6455, version 13) upgrades on GET with "Upgrade:
 *   websocket", a "Connection" containing the token "upgrade" and a
 *   Sec-WebSocket-Key: text and binary messages (fragmented ones
 *   reassembled), ping answered with pong, close answered with close;
 *   client frames must be masked (1002 otherwise); a message over
 *   max_ws_message bytes is closed with 1009; a ping every
 *   ws_ping_interval_ms; a client from which no frame (a pong or anything
 *   else) came for ws_idle_timeout_ms is closed with 1008 (the connection
 *   dropped if it does not take our bytes either), and one that takes none
 *   of our bytes for as long is dropped, so clients that never read cannot
 *   hold connections.
 *
 * - TLS (HTTPS, WSS) on the listen address when the options name a
 *   certificate and key (NNG's TLS streams, mbedTLS underneath; TLS 1.2
 *   and up);
 * - a Unix socket besides (loomi_http_listen_unix), with the same
 *   handlers and limits: each of its connections knows the peer's uid
 *   (SO_PEERCRED, read once when it is accepted), and the per-client cap
 *   counts a uid's connections.
 *
 * The messages of refusals name loomd.conf's settings (http.max_conns …,
 * api.socket, api.tls), which map one to one onto loomi_http_options.
 *
 * Threads: handlers run on NNG's callback threads, one request at a time
 * per connection and concurrently across connections; a handler must not
 * block for long (no waiting on the network).  All functions here are
 * thread-safe. */
#ifndef LOOM_HOST_HTTP_H
#define LOOM_HOST_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct loomi_http_server loomi_http_server;
typedef struct loomi_ws loomi_ws;

/* A request as the handler sees it; valid only during the call. */
typedef struct loomi_http_request {
	const char *method;        /* "GET", as sent (methods are case-sensitive) */
	const char *target;        /* the request-target as sent: path and query */
	const char *path;          /* target up to '?', not decoded */
	const char *query;         /* after '?', not decoded; "" when none */
	const char *body;          /* body_len bytes (NUL after them); "" when none */
	size_t body_len;
	int version_minor;         /* HTTP/1.<version_minor> */
	const char *peer;          /* "127.0.0.1:51234" */
	/* who the peer is, for authentication: the uid of the process at the
	 * other end of a Unix-socket connection (SO_PEERCRED), -1 over TCP */
	int64_t peer_uid;
	bool tls;                  /* the connection is TLS (https, wss) */
	/* private: the headers, read with loomi_http_header */
	const void *priv;
} loomi_http_request;

/* The value of header name (case-insensitive), its surrounding blanks
 * removed; repeated headers joined with ", "; NULL when absent. */
const char *loomi_http_header(const loomi_http_request *req, const char *name);

/* The answer a handler fills in.  The server frees body and the header
 * values after sending. */
typedef struct loomi_http_response {
	int status;                /* 200; 0 is a handler bug (answered 500) */
	char *body;                /* malloc'd, body_len bytes; NULL for none */
	size_t body_len;
	const char *content_type;  /* static string; "application/json" when NULL */
	/* extra headers, e.g. {"Allow", "GET, HEAD"}; names static, values malloc'd */
	struct {
		const char *name;
		char *value;
	} headers[8];
	int n_headers;
} loomi_http_response;

typedef void (*loomi_http_handler_fn)(void *arg, const loomi_http_request *req,
                                      loomi_http_response *res);

/* WebSocket callbacks.  on_open decides whether to accept an upgrade
 * request: it returns 0 to accept (the server completes the handshake and
 * then calls on_message for each message and on_close once), or an HTTP
 * status (404, 400 …) after filling res with the refusal.  ws is valid from
 * on_open until on_close returns unless held with loomi_ws_hold.  Messages
 * for one connection are delivered one at a time, in order. */
typedef struct loomi_ws_handlers {
	int (*on_open)(void *arg, loomi_ws *ws, const loomi_http_request *req,
	               loomi_http_response *res);
	void (*on_message)(void *arg, loomi_ws *ws, const char *data, size_t len, bool text);
	void (*on_close)(void *arg, loomi_ws *ws);
} loomi_ws_handlers;

/* The limits; 0 (NULL) in any field means its default. */
typedef struct loomi_http_options {
	size_t max_head;           /* request line + headers; default 16 KiB */
	size_t max_body;           /* default 16 MiB */
	int max_conns;             /* default 256 */
	int request_timeout_ms;    /* head and body of one request; default 30000 */
	int idle_timeout_ms;       /* between requests; default 60000 */
	size_t max_ws_message;     /* default 1 MiB */
	size_t ws_queue;           /* outgoing messages queued per client; default 256 */
	size_t body_budget;        /* body bytes held at once, all connections; default
	                            * 256 MiB, never below max_body */
	int max_conns_per_client;  /* of max_conns, from one address; default 64 */
	int reserve;               /* beyond max_conns, for reserved() requests; default 16 */
	int ws_ping_interval_ms;   /* default 20000 */
	int ws_idle_timeout_ms;    /* no frame from the client, or none of our bytes
	                            * taken, this long: closed; default 60000 */
	/* Does the reserve serve this request (health, control)?  Called with
	 * the server's arg, the method and the path as sent; NULL: none. */
	bool (*reserved)(void *arg, const char *method, const char *path);
	/* HTTPS and WSS on the listen address: the certificate (PEM, then any
	 * intermediate ones) and its private key (PEM, unencrypted); both NULL
	 * for plain HTTP.  A file that cannot be read or parsed, or a key that
	 * is not the certificate's, fails loomi_http_start naming the file. */
	const char *tls_certificate;
	const char *tls_key;
} loomi_http_options;

/* Listen on "host:port" (IPv4 literal, "[v6]" literal, "localhost" or
 * "*"; port 0 picks a free one).  handler answers every HTTP request;
 * upgrades go to ws (NULL: upgrades are answered by handler like any GET).
 * opts may be NULL for the defaults.  On failure returns a LOOM_E* code
 * and sets *err to a message that names the address and what to do
 * (EADDRINUSE: another process holds the port). */
int loomi_http_start(loomi_http_server **out, const char *listen,
                     const loomi_http_options *opts, loomi_http_handler_fn handler,
                     const loomi_ws_handlers *ws, void *arg, char **err);

/* Check a certificate and key file as loomi_http_start would: readable,
 * PEM, unencrypted, the key the certificate's, usable by NNG's TLS.  0,
 * or a LOOM_E* code with *err naming the file (loomd --check-config). */
int loomi_http_tls_check(const char *certificate, const char *key, char **err);

/* Serve the same requests on a Unix socket at path (absolute), a file of
 * exactly mode (0600, 0660 …) from before the first client can connect.
 * A stale socket there (nobody accepts on it: a crashed loomd's) is
 * replaced; a live one, or a file that is not a socket, fails with a
 * message naming the path.  loomi_http_stop removes the file. */
int loomi_http_listen_unix(loomi_http_server *srv, const char *path, int mode, char **err);

/* The URL actually bound: "http://127.0.0.1:41234", "https://…" with TLS
 * ("*" / 0.0.0.0 shown as 127.0.0.1, :: as [::1]).  Owned by the server. */
const char *loomi_http_url(const loomi_http_server *srv);

/* Stop listening, close every connection (WebSocket clients get on_close),
 * wait for running handlers, free.  NULL is a no-op. */
void loomi_http_stop(loomi_http_server *srv);

/* Request body bytes charged to the budget now (for tests). */
size_t loomi_http_body_held(loomi_http_server *srv);

/* Queue a message to a WebSocket client without blocking.  When the
 * client's queue is full the oldest queued message is dropped (and
 * counted) to make room: a slow client never slows the sender.  Returns 0,
 * or LOOM_ECLOSED once the connection is closing. */
int loomi_ws_send(loomi_ws *ws, const void *data, size_t len, bool text);
/* Start the closing handshake with a status code (1000 normal, 1001 going
 * away, 1008 policy …) and a short reason. */
void loomi_ws_close(loomi_ws *ws, uint16_t code, const char *reason);
/* Messages dropped so far because the client's queue was full. */
uint64_t loomi_ws_dropped(const loomi_ws *ws);
/* Per-connection user data, set by on_open. */
void loomi_ws_set_data(loomi_ws *ws, void *data);
void *loomi_ws_get_data(const loomi_ws *ws);
/* Which endpoint a connection belongs to, for a dispatcher that serves
 * several (the API records the route that accepted it); separate from the
 * data the endpoint itself keeps. */
void loomi_ws_set_owner(loomi_ws *ws, const void *owner);
const void *loomi_ws_get_owner(const loomi_ws *ws);
/* Keep ws valid beyond on_close (each hold needs one release). */
void loomi_ws_hold(loomi_ws *ws);
void loomi_ws_release(loomi_ws *ws);

/* SHA-1 (RFC 3174) and base64 (RFC 4648) as the WebSocket handshake uses
 * them; exposed for the unit tests.  out needs 4 * ((len + 2) / 3) + 1
 * bytes; returns the length written before the NUL. */
void loomi_http_sha1(const void *data, size_t len, uint8_t digest[20]);
size_t loomi_http_base64(const void *data, size_t len, char *out);

#endif /* LOOM_HOST_HTTP_H */

/* The HTTP/1.1 and WebSocket server (host/server/http.c) on 127.0.0.1, driven
 * through real sockets: a POSIX client written here for HTTP and for
 * hand-made WebSocket frames, and NNG's WebSocket client for the rest. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nng/nng.h>

#include <loom/loom.h>

#include "host/server/http.h"
#include "host/core/util.h"
#include "testutil.h"

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
 * asserts expr afterwards. */
#define WAIT_UNTIL(expr, ms)                                                                   \
	for (int64_t wait_deadline_ = now_ms() + (ms); !(expr) && now_ms() < wait_deadline_;)  \
		sleep_ms(1)

/* ------------------------------------------------------------------ the server under test */

#define MAX_HELD 16

static struct {
	loomi_http_server *srv;
	int port;
	pthread_mutex_t mtx;
	int opened, closed, messages, bad_close;
	loomi_ws *held[MAX_HELD];
	int nheld;
	char open_path[128];
} T = {.mtx = PTHREAD_MUTEX_INITIALIZER};

static int
counter(const int *p)
{
	int v;
	pthread_mutex_lock(&T.mtx);
	v = *p;
	pthread_mutex_unlock(&T.mtx);
	return v;
}

static const char *
query_param(const char *query, const char *name, char *out, size_t n)
{
	size_t len = strlen(name);
	for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
		if (strncmp(p, name, len) == 0 && p[len] == '=') {
			size_t v = strcspn(p + len + 1, "&");
			snprintf(out, n, "%.*s", (int)v, p + len + 1);
			return out;
		}
	}
	return NULL;
}

/* Answers every request with what it saw, as JSON; a few paths do other
 * things. */
static void
handler(void *arg, const loomi_http_request *req, loomi_http_response *res)
{
	const char *v;
	char n[32];
	json_t *doc;

	(void)arg;
	if (strcmp(req->path, "/status0") == 0)
		return; /* a handler bug: no status */
	if (strcmp(req->path, "/big") == 0) {
		size_t len = query_param(req->query, "n", n, sizeof n) ? (size_t)atol(n) : 0;
		res->status = 200;
		res->body = loomi_xmalloc(len + 1);
		memset(res->body, 'x', len);
		res->body_len = len;
		res->content_type = "text/plain";
		return;
	}
	if (strcmp(req->path, "/headers") == 0) {
		res->status = 201;
		res->body = loomi_strdup("made");
		res->body_len = 4;
		res->content_type = "text/plain; charset=utf-8";
		res->headers[0].name = "Allow";
		res->headers[0].value = loomi_strdup("GET, HEAD");
		res->headers[1].name = "X-Bad";
		res->headers[1].value = loomi_strdup("evil\r\nInjected: yes");
		res->headers[2].name = "Location";
		res->headers[2].value = loomi_strdup("/made/1");
		res->n_headers = 3;
		return;
	}
	if (strcmp(req->path, "/empty") == 0) {
		res->status = 204;
		return;
	}
	doc = json_pack("{s:s, s:s, s:s, s:s, s:s#, s:i, s:s}", "method", req->method, "target",
	                req->target, "path", req->path, "query", req->query, "body", req->body,
	                (int)req->body_len, "version", req->version_minor, "peer", req->peer);
	ck_assert_ptr_nonnull(doc);
	json_object_set_new(doc, "body_nul", json_boolean(req->body[req->body_len] == '\0'));
	json_object_set_new(doc, "peer_uid", json_integer(req->peer_uid));
	json_object_set_new(doc, "tls", json_boolean(req->tls));
	v = loomi_http_header(req, "x-test");
	json_object_set_new(doc, "x_test", v ? json_string(v) : json_null());
	v = loomi_http_header(req, "X-MULTI");
	json_object_set_new(doc, "x_multi", v ? json_string(v) : json_null());
	v = loomi_http_header(req, "X-Missing");
	json_object_set_new(doc, "x_missing", v ? json_string(v) : json_null());
	res->status = 200;
	res->body = json_dumps(doc, JSON_COMPACT);
	res->body_len = strlen(res->body);
	json_decref(doc);
}

static int
on_open(void *arg, loomi_ws *ws, const loomi_http_request *req, loomi_http_response *res)
{
	(void)arg;
	if (strcmp(req->path, "/ws/nope") == 0) {
		res->body = loomi_strdup("{\"error\":{\"code\":\"not_found\",\"message\":\"no such "
		                         "stream\"}}");
		res->body_len = strlen(res->body);
		return 404;
	}
	pthread_mutex_lock(&T.mtx);
	T.opened++;
	snprintf(T.open_path, sizeof T.open_path, "%s", req->path);
	if (T.nheld < MAX_HELD) {
		loomi_ws_hold(ws);
		T.held[T.nheld++] = ws;
	}
	pthread_mutex_unlock(&T.mtx);
	loomi_ws_set_data(ws, &T);
	if (strcmp(req->path, "/ws/hello") == 0)
		loomi_ws_send(ws, "hello", 5, true); /* before the 101 has gone */
	return 0;
}

static void
on_message(void *arg, loomi_ws *ws, const char *data, size_t len, bool text)
{
	(void)arg;
	pthread_mutex_lock(&T.mtx);
	T.messages++;
	pthread_mutex_unlock(&T.mtx);
	if (len == 5 && memcmp(data, "close", 5) == 0) {
		loomi_ws_close(ws, 1000, "bye");
		return;
	}
	loomi_ws_send(ws, data, len, text);
}

static void
on_close(void *arg, loomi_ws *ws)
{
	(void)arg;
	pthread_mutex_lock(&T.mtx);
	T.closed++;
	if (loomi_ws_get_data(ws) != &T)
		T.bad_close++;
	pthread_mutex_unlock(&T.mtx);
}

static const loomi_ws_handlers ws_handlers = {on_open, on_message, on_close};

static void
start(const loomi_http_options *opt)
{
	char *err = NULL;
	const char *url;
	int rv;

	pthread_mutex_lock(&T.mtx);
	T.opened = T.closed = T.messages = T.bad_close = T.nheld = 0;
	pthread_mutex_unlock(&T.mtx);
	rv = loomi_http_start(&T.srv, "127.0.0.1:0", opt, handler, &ws_handlers, &T, &err);
	ck_assert_msg(rv == 0, "loomi_http_start: %s", err ? err : "?");
	url = loomi_http_url(T.srv);
	ck_assert_int_eq(sscanf(url, "http://127.0.0.1:%d", &T.port), 1);
	ck_assert_int_gt(T.port, 0);
}

static void
stop(void)
{
	loomi_http_stop(T.srv);
	T.srv = NULL;
	ck_assert_int_eq(counter(&T.closed), counter(&T.opened));
	ck_assert_int_eq(counter(&T.bad_close), 0);
	for (int i = 0; i < T.nheld; i++)
		loomi_ws_release(T.held[i]);
	T.nheld = 0;
}

/* ------------------------------------------------------------------ a raw client */

typedef struct cli {
	int fd;
	char *buf;
	size_t len, cap;
} cli;

static void
cli_open(cli *c)
{
	struct sockaddr_in a;
	struct timeval tv = {10, 0};

	memset(c, 0, sizeof *c);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(c->fd, 0);
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)T.port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_msg(connect(c->fd, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s",
	              strerror(errno));
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

/* A client of the Unix socket at path. */
static void
cli_open_unix(cli *c, const char *path)
{
	struct sockaddr_un a;
	struct timeval tv = {10, 0};

	memset(c, 0, sizeof *c);
	c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_ge(c->fd, 0);
	memset(&a, 0, sizeof a);
	a.sun_family = AF_UNIX;
	snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
	ck_assert_msg(connect(c->fd, (struct sockaddr *)&a, sizeof a) == 0, "connect %s: %s", path,
	              strerror(errno));
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static void
cli_close(cli *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	c->len = c->cap = 0;
}

static void
cli_send(cli *c, const void *data, size_t n)
{
	const char *p = data;
	while (n > 0) {
		ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
		ck_assert_msg(k > 0, "send: %s", strerror(errno));
		p += k;
		n -= (size_t)k;
	}
}

static void
cli_sends(cli *c, const char *s)
{
	cli_send(c, s, strlen(s));
}

/* Read more bytes: >0 read, 0 end of stream, -1 error or timeout. */
static ssize_t
cli_fill(cli *c)
{
	ssize_t k;
	if (c->cap - c->len < 65536) {
		c->cap = c->cap ? c->cap * 2 : 131072;
		c->buf = realloc(c->buf, c->cap);
		ck_assert_ptr_nonnull(c->buf);
	}
	k = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
	if (k > 0) {
		c->len += (size_t)k;
		c->buf[c->len] = '\0';
	}
	return k;
}

static void
cli_consume(cli *c, size_t n)
{
	ck_assert_uint_le(n, c->len);
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
	c->buf[c->len] = '\0';
}

/* The connection ends (end of stream or reset) with nothing more sent. */
static void
cli_expect_end(cli *c)
{
	ssize_t k;
	while ((k = cli_fill(c)) > 0)
		;
	ck_assert_msg(k == 0 || errno == ECONNRESET, "expected the end of the connection: %s",
	              strerror(errno));
	ck_assert_msg(c->len == 0, "unexpected bytes after the answer: %.*s", (int)c->len, c->buf);
}

typedef struct resp {
	int status;
	char head[16384];
	char *body;
	size_t body_len;
	json_t *json;
} resp;

static void
resp_free(resp *r)
{
	free(r->body);
	json_decref(r->json);
	memset(r, 0, sizeof *r);
}

/* The value of a response header, or NULL. */
static const char *
resp_header(const resp *r, const char *name, char *out, size_t n)
{
	size_t len = strlen(name);
	for (const char *line = strstr(r->head, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
		const char *p = line + 2;
		if (strncasecmp(p, name, len) == 0 && p[len] == ':') {
			p += len + 1;
			while (*p == ' ')
				p++;
			snprintf(out, n, "%.*s", (int)strcspn(p, "\r"), p);
			return out;
		}
	}
	return NULL;
}

/* Read one response (its body too unless head_only); false at the end of
 * the stream before one. */
static bool
cli_response(cli *c, resp *r, bool head_only)
{
	char *end, v[64];
	size_t hlen;

	memset(r, 0, sizeof *r);
	while (c->buf == NULL || (end = strstr(c->buf, "\r\n\r\n")) == NULL) {
		if (cli_fill(c) <= 0)
			return false;
	}
	hlen = (size_t)(end - c->buf) + 4;
	ck_assert_uint_lt(hlen, sizeof r->head);
	memcpy(r->head, c->buf, hlen);
	r->head[hlen] = '\0';
	ck_assert_int_eq(sscanf(r->head, "HTTP/1.1 %d ", &r->status), 1);
	cli_consume(c, hlen);
	if (!head_only && resp_header(r, "Content-Length", v, sizeof v))
		r->body_len = (size_t)atol(v);
	while (c->len < r->body_len)
		ck_assert_int_gt(cli_fill(c), 0);
	r->body = malloc(r->body_len + 1);
	memcpy(r->body, c->buf, r->body_len);
	r->body[r->body_len] = '\0';
	cli_consume(c, r->body_len);
	if (resp_header(r, "Content-Type", v, sizeof v) && strcmp(v, "application/json") == 0)
		r->json = json_loadb(r->body, r->body_len, 0, NULL);
	return true;
}

static const char *
jstr(const resp *r, const char *key)
{
	json_t *v = json_object_get(r->json, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static const char *
error_code(const resp *r)
{
	json_t *e = json_object_get(r->json, "error");
	json_t *v = json_object_get(e, "code");
	ck_assert_msg(json_is_object(e) && json_is_string(json_object_get(e, "message")),
	              "no JSON error in \"%s\"", r->body ? r->body : "");
	return json_is_string(v) ? json_string_value(v) : "";
}

/* Send text on a new connection, read one response; the connection is
 * left open in *c. */
static void
exchange(cli *c, const char *text, resp *r)
{
	cli_open(c);
	cli_sends(c, text);
	ck_assert_msg(cli_response(c, r, false), "no answer to: %s", text);
}

/* A refusal: status, a JSON error and the connection closed. */
static void
expect_refusal(const char *text, int status, const char *code)
{
	char v[64];
	resp r;
	cli c;

	exchange(&c, text, &r);
	ck_assert_msg(r.status == status, "%s: status %d, expected %d (%s)", text, r.status, status,
	              r.body);
	ck_assert_str_eq(error_code(&r), code);
	ck_assert_ptr_nonnull(resp_header(&r, "Connection", v, sizeof v));
	ck_assert_str_eq(v, "close");
	/* The server reads and drops what still comes for a moment before it
	 * closes; saying we are done ends that at once. */
	shutdown(c.fd, SHUT_WR);
	cli_expect_end(&c);
	cli_close(&c);
	resp_free(&r);
}

/* ------------------------------------------------------------------ hand-made frames */

static void
ws_send_frame(cli *c, int op, bool fin, const void *data, size_t len, bool mask)
{
	static const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
	uint8_t *f = malloc(len + 14);
	size_t h = 2;

	f[0] = (uint8_t)((fin ? 0x80 : 0) | op);
	if (len < 126) {
		f[1] = (uint8_t)len;
	} else if (len < 65536) {
		f[1] = 126;
		f[2] = (uint8_t)(len >> 8);
		f[3] = (uint8_t)len;
		h = 4;
	} else {
		f[1] = 127;
		for (int i = 0; i < 8; i++)
			f[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
		h = 10;
	}
	if (mask) {
		f[1] |= 0x80;
		memcpy(f + h, key, 4);
		h += 4;
	}
	for (size_t i = 0; i < len; i++)
		f[h + i] = (uint8_t)(((const uint8_t *)data)[i] ^ (mask ? key[i & 3] : 0));
	cli_send(c, f, h + len);
	free(f);
}

/* Read one server frame: its opcode, payload (malloc'd) and length. */
static bool
ws_read_frame(cli *c, int *op, char **data, size_t *len)
{
	size_t h = 2;
	uint64_t n;

	while (c->len < 2) {
		if (cli_fill(c) <= 0)
			return false;
	}
	ck_assert_msg((c->buf[1] & 0x80) == 0, "the server masked a frame");
	n = (uint8_t)c->buf[1] & 0x7f;
	h += n == 126 ? 2 : n == 127 ? 8 : 0;
	while (c->len < h) {
		if (cli_fill(c) <= 0)
			return false;
	}
	if (n == 126) {
		n = (uint64_t)(uint8_t)c->buf[2] << 8 | (uint8_t)c->buf[3];
	} else if (n == 127) {
		n = 0;
		for (int i = 0; i < 8; i++)
			n = n << 8 | (uint8_t)c->buf[2 + i];
	}
	while (c->len < h + n) {
		if (cli_fill(c) <= 0)
			return false;
	}
	ck_assert_msg((uint8_t)c->buf[0] & 0x80, "a fragmented frame from the server");
	*op = c->buf[0] & 0x0f;
	*len = (size_t)n;
	*data = malloc(n + 1);
	memcpy(*data, c->buf + h, n);
	(*data)[n] = '\0';
	cli_consume(c, h + (size_t)n);
	return true;
}

static void
ws_expect_frame(cli *c, int op, const char *payload)
{
	char *data;
	size_t len;
	int got;

	ck_assert_msg(ws_read_frame(c, &got, &data, &len), "no frame (expected opcode %d)", op);
	ck_assert_int_eq(got, op);
	ck_assert_uint_eq(len, strlen(payload));
	ck_assert_str_eq(data, payload);
	free(data);
}

/* A close frame with code; its reason returned in reason. */
static void
ws_expect_close(cli *c, unsigned code, char *reason, size_t n)
{
	char *data;
	size_t len;
	int op;

	ck_assert_msg(ws_read_frame(c, &op, &data, &len), "no close frame (expected %u)", code);
	ck_assert_int_eq(op, 0x8);
	ck_assert_uint_ge(len, 2);
	ck_assert_uint_eq(((unsigned)(uint8_t)data[0] << 8) | (uint8_t)data[1], code);
	if (reason)
		snprintf(reason, n, "%.*s", (int)(len - 2), data + 2);
	free(data);
}

#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

/* Upgrade a new raw connection on path. */
static void
ws_raw_open(cli *c, const char *path)
{
	char req[512], v[64];
	resp r;

	snprintf(req, sizeof req,
	         "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
	         "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: " WS_KEY "\r\n"
	         "Sec-WebSocket-Version: 13\r\n\r\n",
	         path);
	cli_open(c);
	cli_sends(c, req);
	ck_assert(cli_response(c, &r, true));
	ck_assert_int_eq(r.status, 101);
	ck_assert_str_eq(resp_header(&r, "Sec-WebSocket-Accept", v, sizeof v), WS_ACCEPT);
	ck_assert_str_eq(resp_header(&r, "Upgrade", v, sizeof v), "websocket");
	ck_assert_str_eq(resp_header(&r, "Connection", v, sizeof v), "Upgrade");
	ck_assert_ptr_null(resp_header(&r, "Content-Length", v, sizeof v));
	resp_free(&r);
}

/* ------------------------------------------------------------------ NNG's client */

static nng_stream *
nng_ws_dial(const char *path, int *rvp)
{
	nng_stream_dialer *d;
	nng_stream *s = NULL;
	nng_aio *aio;
	char url[128];
	int rv;

	snprintf(url, sizeof url, "ws://127.0.0.1:%d%s", T.port, path);
	ck_assert_int_eq(nng_stream_dialer_alloc(&d, url), 0);
	ck_assert_int_eq(nng_stream_dialer_set_bool(d, NNG_OPT_WS_SEND_TEXT, true), 0);
	ck_assert_int_eq(nng_stream_dialer_set_bool(d, NNG_OPT_WS_RECV_TEXT, true), 0);
	ck_assert_int_eq(nng_aio_alloc(&aio, NULL, NULL), 0);
	nng_aio_set_timeout(aio, 10000);
	nng_stream_dialer_dial(d, aio);
	nng_aio_wait(aio);
	rv = nng_aio_result(aio);
	if (rv == 0)
		s = nng_aio_get_output(aio, 0);
	nng_aio_free(aio);
	nng_stream_dialer_free(d);
	if (rvp)
		*rvp = rv;
	return s;
}

/* One send or receive on s; returns the NNG result, *n the count. */
static int
nng_ws_io(nng_stream *s, bool send, void *buf, size_t len, size_t *n)
{
	nng_aio *aio;
	nng_iov iov = {buf, len};
	int rv;

	ck_assert_int_eq(nng_aio_alloc(&aio, NULL, NULL), 0);
	nng_aio_set_timeout(aio, 10000);
	nng_aio_set_iov(aio, 1, &iov);
	if (send)
		nng_stream_send(s, aio);
	else
		nng_stream_recv(s, aio);
	nng_aio_wait(aio);
	rv = nng_aio_result(aio);
	if (n)
		*n = nng_aio_count(aio);
	nng_aio_free(aio);
	return rv;
}

static void
nng_ws_expect(nng_stream *s, const char *text)
{
	char buf[256];
	size_t n;

	ck_assert_int_eq(nng_ws_io(s, false, buf, sizeof buf - 1, &n), 0);
	buf[n] = '\0';
	ck_assert_str_eq(buf, text);
}

/* ------------------------------------------------------------------ handshake primitives */

START_TEST(sha1_base64_vectors)
{
	static const struct {
		const char *in, *hex;
	} sha[] = {
		{"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
		{"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"},
		{"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		 "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
		{"0123456701234567012345670123456701234567012345670123456701234567"
		 "0123456701234567012345670123456701234567012345670123456701234567"
		 "0123456701234567012345670123456701234567012345670123456701234567"
		 "0123456701234567012345670123456701234567012345670123456701234567"
		 "0123456701234567012345670123456701234567012345670123456701234567"
		 "0123456701234567012345670123456701234567012345670123456701234567"
		 "0123456701234567012345670123456701234567012345670123456701234567"
		 "0123456701234567012345670123456701234567012345670123456701234567"
		 "0123456701234567012345670123456701234567012345670123456701234567"
		 "0123456701234567012345670123456701234567012345670123456701234567",
		 "dea356a2cddd90c7a7ecedc5ebb563934f460452"},
	};
	static const struct {
		const char *in, *out;
	} b64[] = {
		{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},         {"foo", "Zm9v"},
		{"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
	};
	uint8_t d[20];
	char hex[41], out[64], *million;

	for (size_t i = 0; i < sizeof sha / sizeof sha[0]; i++) {
		loomi_http_sha1(sha[i].in, strlen(sha[i].in), d);
		for (int k = 0; k < 20; k++)
			snprintf(hex + 2 * k, 3, "%02x", d[k]);
		ck_assert_str_eq(hex, sha[i].hex);
	}
	/* RFC 3174 test 3: a million "a". */
	million = malloc(1000000);
	memset(million, 'a', 1000000);
	loomi_http_sha1(million, 1000000, d);
	free(million);
	for (int k = 0; k < 20; k++)
		snprintf(hex + 2 * k, 3, "%02x", d[k]);
	ck_assert_str_eq(hex, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");

	for (size_t i = 0; i < sizeof b64 / sizeof b64[0]; i++) {
		ck_assert_uint_eq(loomi_http_base64(b64[i].in, strlen(b64[i].in), out),
		                  strlen(b64[i].out));
		ck_assert_str_eq(out, b64[i].out);
	}
	/* RFC 6455 §1.3: the accept key of the sample nonce. */
	{
		const char *text = WS_KEY "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
		loomi_http_sha1(text, strlen(text), d);
		loomi_http_base64(d, 20, out);
		ck_assert_str_eq(out, WS_ACCEPT);
	}
}
END_TEST

/* ------------------------------------------------------------------ HTTP */

START_TEST(start_errors)
{
	loomi_http_server *a, *b = NULL;
	char *err = NULL, listen[64];
	int rv;

	rv = loomi_http_start(&b, "nonsense", NULL, handler, NULL, NULL, &err);
	ck_assert_int_eq(rv, LOOM_EINVAL);
	ck_assert_ptr_null(b);
	ck_assert_msg(strstr(err, "HOST:PORT") != NULL, "%s", err);
	free(err);
	err = NULL;
	rv = loomi_http_start(&b, "127.0.0.1:99999", NULL, handler, NULL, NULL, &err);
	ck_assert_int_eq(rv, LOOM_EINVAL);
	free(err);
	err = NULL;

	ck_assert_int_eq(loomi_http_start(&a, "127.0.0.1:0", NULL, handler, NULL, NULL, &err), 0);
	snprintf(listen, sizeof listen, "%s", loomi_http_url(a) + strlen("http://"));
	rv = loomi_http_start(&b, listen, NULL, handler, NULL, NULL, &err);
	ck_assert_int_eq(rv, LOOM_EBUSY);
	ck_assert_msg(strstr(err, listen) && strstr(err, "another process"), "%s", err);
	free(err);
	loomi_http_stop(a);

	/* Every address: the URL names loopback. */
	ck_assert_int_eq(loomi_http_start(&a, "*:0", NULL, handler, NULL, NULL, &err), 0);
	ck_assert_msg(strncmp(loomi_http_url(a), "http://127.0.0.1:", 17) == 0 ||
	                  strncmp(loomi_http_url(a), "http://[::1]:", 13) == 0,
	              "%s", loomi_http_url(a));
	loomi_http_stop(a);
	loomi_http_stop(NULL);
}
END_TEST

START_TEST(get_headers_and_query)
{
	char v[128];
	resp r;
	cli c;

	start(NULL);
	exchange(&c,
	         "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: 127.0.0.1\r\nx-TEST:   hello world  \r\n"
	         "X-Multi: one\r\nx-multi: two\r\n\r\n",
	         &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(resp_header(&r, "Content-Type", v, sizeof v), "application/json");
	ck_assert_uint_eq((size_t)atol(resp_header(&r, "Content-Length", v, sizeof v)), r.body_len);
	ck_assert_ptr_null(resp_header(&r, "Connection", v, sizeof v));
	ck_assert_str_eq(jstr(&r, "method"), "GET");
	ck_assert_str_eq(jstr(&r, "target"), "/a/b?x=1&y=2");
	ck_assert_str_eq(jstr(&r, "path"), "/a/b");
	ck_assert_str_eq(jstr(&r, "query"), "x=1&y=2");
	ck_assert_str_eq(jstr(&r, "body"), "");
	ck_assert_str_eq(jstr(&r, "x_test"), "hello world");
	ck_assert_str_eq(jstr(&r, "x_multi"), "one, two");
	ck_assert(json_is_null(json_object_get(r.json, "x_missing")));
	ck_assert_int_eq(json_integer_value(json_object_get(r.json, "version")), 1);
	ck_assert_msg(strncmp(jstr(&r, "peer"), "127.0.0.1:", 10) == 0, "%s", jstr(&r, "peer"));
	resp_free(&r);

	/* No query; absolute form. */
	cli_sends(&c, "GET http://127.0.0.1/abs/path?k HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
	ck_assert(cli_response(&c, &r, false));
	ck_assert_str_eq(jstr(&r, "path"), "/abs/path");
	ck_assert_str_eq(jstr(&r, "query"), "k");
	resp_free(&r);
	cli_sends(&c, "OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
	ck_assert(cli_response(&c, &r, false));
	ck_assert_str_eq(jstr(&r, "path"), "*");
	resp_free(&r);
	cli_close(&c);
	stop();
}
END_TEST

START_TEST(bodies)
{
	resp r;
	cli c;

	start(NULL);
	exchange(&c,
	         "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world", &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(jstr(&r, "method"), "POST");
	ck_assert_str_eq(jstr(&r, "body"), "hello world");
	ck_assert(json_is_true(json_object_get(r.json, "body_nul")));
	resp_free(&r);

	/* The body in pieces, the next request right behind it. */
	cli_sends(&c, "PUT /p HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nab");
	sleep_ms(20);
	cli_sends(&c, "cdefGET /after HTTP/1.1\r\nHost: x\r\n\r\n");
	ck_assert(cli_response(&c, &r, false));
	ck_assert_str_eq(jstr(&r, "body"), "abcdef");
	ck_assert(json_is_true(json_object_get(r.json, "body_nul")));
	resp_free(&r);
	ck_assert(cli_response(&c, &r, false));
	ck_assert_str_eq(jstr(&r, "path"), "/after");
	ck_assert_str_eq(jstr(&r, "body"), "");
	resp_free(&r);

	/* Chunked, with an extension and a trailer, split across writes. */
	cli_sends(&c, "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
	sleep_ms(20);
	cli_sends(&c, "lo\r\n6;name=value\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n");
	ck_assert(cli_response(&c, &r, false));
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(jstr(&r, "body"), "hello world");
	resp_free(&r);

	/* Expect: 100-continue gets its interim answer before the body. */
	cli_sends(&c, "POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
	ck_assert(cli_response(&c, &r, true));
	ck_assert_int_eq(r.status, 100);
	resp_free(&r);
	cli_sends(&c, "abc");
	ck_assert(cli_response(&c, &r, false));
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(jstr(&r, "body"), "abc");
	resp_free(&r);
	cli_close(&c);

	expect_refusal("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
	               "bad_request");
	expect_refusal("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	               "3\r\nabcX\r\n",
	               400, "bad_request");
	expect_refusal("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
	               "not_implemented");
	expect_refusal("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
	               "Content-Length: 3\r\n\r\n",
	               400, "bad_request");
	stop();
}
END_TEST

START_TEST(head_and_no_content)
{
	char v[64];
	resp r;
	cli c;

	start(NULL);
	cli_open(&c);
	cli_sends(&c, "HEAD /big?n=1000 HTTP/1.1\r\nHost: x\r\n\r\n");
	ck_assert(cli_response(&c, &r, true));
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(resp_header(&r, "Content-Length", v, sizeof v), "1000");
	ck_assert_str_eq(resp_header(&r, "Content-Type", v, sizeof v), "text/plain");
	resp_free(&r);
	/* No body came: the next answer starts right away. */
	cli_sends(&c, "GET /big?n=3 HTTP/1.1\r\nHost: x\r\n\r\n");
	ck_assert(cli_response(&c, &r, false));
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "xxx");
	resp_free(&r);

	cli_sends(&c, "DELETE /empty HTTP/1.1\r\nHost: x\r\n\r\n");
	ck_assert(cli_response(&c, &r, false));
	ck_assert_int_eq(r.status, 204);
	ck_assert_ptr_null(resp_header(&r, "Content-Length", v, sizeof v));
	resp_free(&r);

	/* A large body. */
	cli_sends(&c, "GET /big?n=3000000 HTTP/1.1\r\nHost: x\r\n\r\n");
	ck_assert(cli_response(&c, &r, false));
	ck_assert_uint_eq(r.body_len, 3000000);
	ck_assert_int_eq(r.body[2999999], 'x');
	resp_free(&r);
	cli_close(&c);
	stop();
}
END_TEST

START_TEST(keep_alive_and_pipelining)
{
	resp r;
	cli c;

	start(NULL);
	exchange(&c, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n", &r);
	ck_assert_str_eq(jstr(&r, "path"), "/one");
	resp_free(&r);
	cli_sends(&c, "GET /two HTTP/1.1\r\nHost: x\r\n\r\n");
	ck_assert(cli_response(&c, &r, false));
	ck_assert_str_eq(jstr(&r, "path"), "/two");
	resp_free(&r);

	/* Three requests in one write, answered in order; blank lines
	 * between them are ignored. */
	cli_sends(&c, "GET /p1 HTTP/1.1\r\nHost: x\r\n\r\n"
	              "POST /p2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi\r\n"
	              "GET /p3 HTTP/1.1\r\nHost: x\r\n\r\n");
	ck_assert(cli_response(&c, &r, false));
	ck_assert_str_eq(jstr(&r, "path"), "/p1");
	resp_free(&r);
	ck_assert(cli_response(&c, &r, false));
	ck_assert_str_eq(jstr(&r, "path"), "/p2");
	ck_assert_str_eq(jstr(&r, "body"), "hi");
	resp_free(&r);
	ck_assert(cli_response(&c, &r, false));
	ck_assert_str_eq(jstr(&r, "path"), "/p3");
	resp_free(&r);
	cli_close(&c);
	stop();
}
END_TEST

START_TEST(closing_connections)
{
	char v[64];
	resp r;
	cli c;

	start(NULL);
	exchange(&c, "GET /old HTTP/1.0\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(json_integer_value(json_object_get(r.json, "version")), 0);
	ck_assert_str_eq(resp_header(&r, "Connection", v, sizeof v), "close");
	ck_assert(strncmp(r.head, "HTTP/1.1 200 OK\r\n", 17) == 0);
	cli_expect_end(&c);
	cli_close(&c);
	resp_free(&r);

	exchange(&c, "GET /bye HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(resp_header(&r, "Connection", v, sizeof v), "close");
	cli_expect_end(&c);
	cli_close(&c);
	resp_free(&r);
	stop();
}
END_TEST

START_TEST(percent_escapes_at_the_end)
{
	static const struct {
		const char *target, *path, *query;
	} cases[] = {
		{"/x/%ff", "/x/%ff", ""},    {"/x/%41?q", "/x/%41", "q"},
		{"/x/%", "/x/%", ""},        {"/x/%4", "/x/%4", ""},
		{"/api/v1/plugins/%ff", "/api/v1/plugins/%ff", ""},
		{"/x/%ff?a=%ff", "/x/%ff", "a=%ff"},
	};
	char req[256];
	resp r;
	cli c;

	start(NULL);
	cli_open(&c);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", cases[i].target);
		cli_sends(&c, req);
		ck_assert(cli_response(&c, &r, false));
		ck_assert_int_eq(r.status, 200);
		ck_assert_str_eq(jstr(&r, "target"), cases[i].target);
		ck_assert_str_eq(jstr(&r, "path"), cases[i].path);
		ck_assert_str_eq(jstr(&r, "query"), cases[i].query);
		resp_free(&r);
	}
	cli_close(&c);
	stop();
}
END_TEST

START_TEST(malformed_requests)
{
	start(NULL);
	/* Without the client's end of stream, the server closes on its own. */
	{
		int64_t t0 = now_ms();
		resp r;
		cli c;
		exchange(&c, "GARBAGE\r\n\r\n", &r);
		ck_assert_int_eq(r.status, 400);
		ck_assert_str_eq(error_code(&r), "bad_request");
		cli_expect_end(&c);
		ck_assert_int_lt(now_ms() - t0, 5000);
		resp_free(&r);
		cli_close(&c);
	}
	expect_refusal("GARBAGE\r\n\r\n", 400, "bad_request");
	expect_refusal("GET /\r\n\r\n", 400, "bad_request");
	expect_refusal("GET  / HTTP/1.1\r\n\r\n", 400, "bad_request");
	expect_refusal("GET / HTTP/1.1 extra\r\n\r\n", 400, "bad_request");
	expect_refusal("GET / HTTPS/1.1\r\n\r\n", 400, "bad_request");
	expect_refusal("GET x HTTP/1.1\r\n\r\n", 400, "bad_request");
	expect_refusal("G(T / HTTP/1.1\r\n\r\n", 400, "bad_request");
	expect_refusal("GET / HTTP/1.1\nHost: x\n\n", 400, "bad_request");
	expect_refusal("GET / HTTP/1.1\r\nHost: x\n\r\n", 400, "bad_request");
	expect_refusal("GET / HTTP/1.1\r\nHost: x\rY\r\n\r\n", 400, "bad_request");
	expect_refusal("GET / HTTP/1.1\r\nHost: x\r\n Folded: y\r\n\r\n", 400, "bad_request");
	expect_refusal("GET / HTTP/1.1\r\nBad Name: y\r\n\r\n", 400, "bad_request");
	expect_refusal("GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400, "bad_request");
	expect_refusal("POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400, "bad_request");
	expect_refusal("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "bad_request");
	expect_refusal("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400,
	               "bad_request");
	expect_refusal("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 400,
	               "bad_request");
	expect_refusal("GET / HTTP/2.0\r\n\r\n", 505, "version_not_supported");
	expect_refusal("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "version_not_supported");
	/* HEAD refusals keep their length but send no body. */
	{
		char v[64];
		resp r;
		cli c;
		cli_open(&c);
		cli_sends(&c, "HEAD / HTTP/3.0\r\n\r\n");
		ck_assert(cli_response(&c, &r, true));
		ck_assert_int_eq(r.status, 505);
		ck_assert_int_gt(atoi(resp_header(&r, "Content-Length", v, sizeof v)), 0);
		cli_expect_end(&c);
		resp_free(&r);
		cli_close(&c);
	}
	stop();
}
END_TEST

START_TEST(oversize_head_and_body)
{
	loomi_http_options opt = {.max_head = 1024, .max_body = 1000};
	char *big;
	resp r;
	cli c;

	start(&opt);
	big = malloc(4096);
	snprintf(big, 4096, "GET / HTTP/1.1\r\nHost: x\r\nX-Long: %03000d\r\n\r\n", 0);
	expect_refusal(big, 431, "head_too_large");
	/* No end of head at all. */
	memset(big, 'a', 2000);
	memcpy(big, "GET /", 5);
	big[2000] = '\0';
	expect_refusal(big, 431, "head_too_large");
	free(big);

	/* 413 is answered before the body is sent. */
	expect_refusal("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", 413,
	               "body_too_large");
	expect_refusal("POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n",
	               413, "body_too_large");
	/* Just under the limits is fine. */
	big = malloc(1000 + 128);
	snprintf(big, 128, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
	memset(big + strlen(big), 'b', 1000);
	cli_open(&c);
	cli_send(&c, big, strlen("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n") + 1000);
	ck_assert(cli_response(&c, &r, false));
	ck_assert_int_eq(r.status, 200);
	ck_assert_uint_eq(strlen(jstr(&r, "body")), 1000);
	resp_free(&r);
	cli_close(&c);
	free(big);
	stop();
}
END_TEST

START_TEST(too_many_connections)
{
	loomi_http_options opt = {.max_conns = 2};
	cli a, b, c;
	resp r;

	start(&opt);
	exchange(&a, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	exchange(&b, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	expect_refusal("GET /c HTTP/1.1\r\nHost: x\r\n\r\n", 503, "unavailable");

	/* A place frees up when a client leaves. */
	cli_close(&a);
	{
		int status = 0;
		for (int64_t end = now_ms() + 5000; status != 200 && now_ms() < end;) {
			exchange(&c, "GET /d HTTP/1.1\r\nHost: x\r\n\r\n", &r);
			status = r.status;
			resp_free(&r);
			cli_close(&c);
			if (status != 200)
				sleep_ms(10);
		}
		ck_assert_int_eq(status, 200);
	}
	cli_close(&b);
	stop();
}
END_TEST

/* The reserve serves /health and /control only. */
static bool
reserved_path(void *arg, const char *method, const char *path)
{
	(void)arg;
	(void)method;
	return strcmp(path, "/health") == 0 || strcmp(path, "/control") == 0;
}

START_TEST(body_budget)
{
	loomi_http_options opt = {.max_body = 1000, .body_budget = 2500};
	char v[64], *body;
	cli a, b, c;
	resp r;

	start(&opt);
	/* Two unfinished bodies of 1000 bytes are held... */
	cli_open(&a);
	cli_sends(&a, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc");
	cli_open(&b);
	cli_sends(&b, "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	              "3e8\r\nxyz");
	WAIT_UNTIL(loomi_http_body_held(T.srv) == 2000, 5000);
	ck_assert_uint_eq(loomi_http_body_held(T.srv), 2000);
	/* ...a third would pass the budget: 503, Retry-After, the setting named */
	exchange(&c, "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 503);
	ck_assert_str_eq(error_code(&r), "unavailable");
	ck_assert_ptr_nonnull(resp_header(&r, "Retry-After", v, sizeof v));
	ck_assert_ptr_nonnull(strstr(r.body, "http.body_budget"));
	resp_free(&r);
	cli_close(&c);
	/* as would a chunked body growing past it: 400 bytes fit, 500 more not */
	{
		char req[1024];
		int n = snprintf(req, sizeof req,
		                 "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
		                 "190\r\n");
		memset(req + n, 'k', 400);
		memcpy(req + n + 400, "\r\n1f4\r\n", 8);
		req[n + 408] = '\0';
		exchange(&c, req, &r);
	}
	ck_assert_int_eq(r.status, 503);
	ck_assert_ptr_nonnull(resp_header(&r, "Retry-After", v, sizeof v));
	resp_free(&r);
	cli_close(&c);
	/* A small one fits. */
	exchange(&c, "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	cli_close(&c);
	/* Bytes go back when a request is answered and when a client leaves. */
	body = malloc(1000);
	memset(body, 'q', 1000);
	cli_send(&a, body, 997);
	free(body);
	ck_assert(cli_response(&a, &r, false));
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	cli_close(&b);
	WAIT_UNTIL(loomi_http_body_held(T.srv) == 0, 5000);
	ck_assert_uint_eq(loomi_http_body_held(T.srv), 0);
	cli_close(&a);
	stop();
}
END_TEST

START_TEST(per_client_cap_and_reserve)
{
	loomi_http_options opt = {.max_conns = 8, .max_conns_per_client = 2, .reserve = 2,
	                          .reserved = reserved_path};
	cli a, b, c;
	resp r;

	start(&opt);
	exchange(&a, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	exchange(&b, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	/* Past the client's share: ordinary requests and upgrades refused,
	 * naming the setting; reserved ones answered, then the connection
	 * closed. */
	exchange(&c, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 503);
	ck_assert_ptr_nonnull(strstr(r.body, "http.max_conns_per_client"));
	resp_free(&r);
	shutdown(c.fd, SHUT_WR);
	cli_expect_end(&c);
	cli_close(&c);
	expect_refusal("GET /ws/x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
	               "Connection: Upgrade\r\nSec-WebSocket-Key: " WS_KEY "\r\n"
	               "Sec-WebSocket-Version: 13\r\n\r\n",
	               503, "unavailable");
	/* the reserve slots of the refused ones are free once the server has
	 * reaped them: poll */
	{
		int status = 0;
		for (int64_t end = now_ms() + 5000; status != 200 && now_ms() < end;) {
			exchange(&c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", &r);
			status = r.status;
			ck_assert(status == 200 || strstr(r.body, "are taken") != NULL);
			resp_free(&r);
			if (status == 200)
				cli_expect_end(&c); /* one request per reserve connection */
			cli_close(&c);
			if (status != 200)
				sleep_ms(10);
		}
		ck_assert_int_eq(status, 200);
	}
	cli_close(&a);
	cli_close(&b);
	stop();
}
END_TEST

/* ------------------------------------------------------------------ the Unix socket */

START_TEST(unix_socket_peer_and_mode)
{
	loomi_http_server *other = NULL;
	char *dir = tu_tmpdir(), *path = loomi_path_join(dir, "api.sock"), *err = NULL, v[64];
	struct stat st;
	resp r;
	cli c;

	start(NULL);
	ck_assert_msg(loomi_http_listen_unix(T.srv, path, 0640, &err) == 0, "%s", err);
	/* exactly the mode asked, whatever the umask */
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0640);

	/* the peer's uid, read from the kernel; TCP clients have none */
	cli_open_unix(&c, path);
	cli_sends(&c, "GET /who?x=1 HTTP/1.1\r\nHost: localhost\r\n\r\n");
	ck_assert(cli_response(&c, &r, false));
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(json_integer_value(json_object_get(r.json, "peer_uid")), (json_int_t)getuid());
	ck_assert(json_is_false(json_object_get(r.json, "tls")));
	snprintf(v, sizeof v, "unix:uid=%u,pid=%ld", (unsigned)getuid(), (long)getpid());
	ck_assert_str_eq(jstr(&r, "peer"), v);
	resp_free(&r);
	/* a second request on the same connection says the same */
	cli_sends(&c, "GET /again HTTP/1.1\r\nHost: localhost\r\n\r\n");
	ck_assert(cli_response(&c, &r, false));
	ck_assert_int_eq(json_integer_value(json_object_get(r.json, "peer_uid")), (json_int_t)getuid());
	resp_free(&r);
	cli_close(&c);
	exchange(&c, "GET /tcp HTTP/1.1\r\nHost: x\r\n\r\n", &r);
	ck_assert_int_eq(json_integer_value(json_object_get(r.json, "peer_uid")), -1);
	resp_free(&r);
	cli_close(&c);

	/* one socket per server; a live socket is not taken over */
	ck_assert_int_eq(loomi_http_listen_unix(T.srv, path, 0600, &err), LOOM_EEXIST);
	free(err);
	err = NULL;
	ck_assert_int_eq(loomi_http_start(&other, "127.0.0.1:0", NULL, handler, NULL, NULL, &err), 0);
	ck_assert_int_eq(loomi_http_listen_unix(other, path, 0600, &err), LOOM_EBUSY);
	ck_assert_msg(strstr(err, path) && strstr(err, "another process"), "%s", err);
	free(err);
	err = NULL;
	loomi_http_stop(other);
	ck_assert_int_eq(lstat(path, &st), 0); /* still there, still served */
	cli_open_unix(&c, path);
	cli_sends(&c, "GET /still HTTP/1.1\r\nHost: localhost\r\n\r\n");
	ck_assert(cli_response(&c, &r, false));
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	cli_close(&c);

	/* a clean stop removes the file */
	stop();
	ck_assert_int_eq(lstat(path, &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	tu_rmrf(dir);
	free(dir);
	free(path);
}
END_TEST

START_TEST(unix_socket_stale_and_refused_paths)
{
	char *dir = tu_tmpdir(), *path = loomi_path_join(dir, "s"), *file, *err = NULL;
	char longp[200];
	struct sockaddr_un a;
	struct stat st;
	resp r;
	cli c;
	int fd;

	/* a socket whose owner died without removing it */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	memset(&a, 0, sizeof a);
	a.sun_family = AF_UNIX;
	snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	ck_assert_int_eq(listen(fd, 1), 0);
	close(fd);
	ck_assert_int_eq(lstat(path, &st), 0);
	start(NULL);
	ck_assert_msg(loomi_http_listen_unix(T.srv, path, 0600, &err) == 0, "%s", err);
	cli_open_unix(&c, path);
	cli_sends(&c, "GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n");
	ck_assert(cli_response(&c, &r, false));
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	cli_close(&c);
	stop();

	/* not a socket: left alone, refused naming it */
	file = tu_write(dir, "plain", "keep me\n");
	start(NULL);
	ck_assert_int_eq(loomi_http_listen_unix(T.srv, file, 0600, &err), LOOM_EEXIST);
	ck_assert_msg(strstr(err, file) && strstr(err, "not a socket"), "%s", err);
	free(err);
	err = NULL;
	ck_assert_int_eq(lstat(file, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	/* too long for sun_path; relative */
	memset(longp, 'x', sizeof longp - 1);
	longp[0] = '/';
	longp[sizeof longp - 1] = '\0';
	ck_assert_int_eq(loomi_http_listen_unix(T.srv, longp, 0600, &err), LOOM_EINVAL);
	ck_assert_msg(strstr(err, "bytes long, over the 107"), "%s", err);
	free(err);
	err = NULL;
	ck_assert_int_eq(loomi_http_listen_unix(T.srv, "rel.sock", 0600, &err), LOOM_EINVAL);
	free(err);
	stop();
	tu_rmrf(dir);
	free(dir);
	free(path);
	free(file);
}
END_TEST

/* The per-client cap counts a uid's socket connections, apart from TCP's. */
START_TEST(unix_socket_cap_per_uid)
{
	loomi_http_options opt = {.max_conns = 8, .max_conns_per_client = 2, .reserve = 2,
	                          .reserved = reserved_path};
	char *dir = tu_tmpdir(), *path = loomi_path_join(dir, "api.sock"), *err = NULL;
	cli a, b, c;
	resp r;

	start(&opt);
	ck_assert_msg(loomi_http_listen_unix(T.srv, path, 0600, &err) == 0, "%s", err);
	for (int k = 0; k < 2; k++) {
		cli *x = k ? &b : &a;
		cli_open_unix(x, path);
		cli_sends(x, "GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n");
		ck_assert(cli_response(x, &r, false));
		ck_assert_int_eq(r.status, 200);
		resp_free(&r);
	}
	/* a TCP client from 127.0.0.1 is another client */
	exchange(&c, "GET /tcp HTTP/1.1\r\nHost: x\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	cli_close(&c);
	/* the uid's third connection is past its share */
	cli_open_unix(&c, path);
	cli_sends(&c, "GET /other HTTP/1.1\r\nHost: localhost\r\n\r\n");
	ck_assert(cli_response(&c, &r, false));
	ck_assert_int_eq(r.status, 503);
	ck_assert_ptr_nonnull(strstr(r.body, "http.max_conns_per_client"));
	resp_free(&r);
	cli_close(&c);
	cli_close(&a);
	cli_close(&b);
	stop();
	tu_rmrf(dir);
	free(dir);
	free(path);
}
END_TEST

START_TEST(timeouts)
{
	/* the request timeout leaves the slow request below 900 ms to spare,
	 * however late this thread wakes from its pause on a loaded machine */
	loomi_http_options opt = {.request_timeout_ms = 1000, .idle_timeout_ms = 400};
	int64_t t0;
	resp r;
	cli c;

	start(&opt);
	/* A head that stops halfway. */
	t0 = now_ms();
	expect_refusal("GET / HTTP/1.1\r\nHost: x\r\n", 408, "request_timeout");
	ck_assert_int_ge(now_ms() - t0, 950);
	/* A body that stops halfway. */
	expect_refusal("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", 408,
	               "request_timeout");
	/* A request sent slowly but within the time is served. */
	cli_open(&c);
	cli_sends(&c, "GET /slow HTTP/1.1\r\n");
	sleep_ms(100);
	/* the server's idle time starts after it has the whole request: from
	 * here, not from when this thread sees the response */
	t0 = now_ms();
	cli_sends(&c, "Host: x\r\n\r\n");
	ck_assert(cli_response(&c, &r, false));
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	/* Then, idle, the connection is closed without a word. */
	cli_expect_end(&c);
	ck_assert_int_ge(now_ms() - t0, 300);
	cli_close(&c);
	stop();
}
END_TEST

START_TEST(client_leaves_mid_request)
{
	resp r;
	cli c;

	start(NULL);
	cli_open(&c);
	cli_sends(&c, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789");
	cli_close(&c);
	cli_open(&c);
	cli_sends(&c, "GET / HTTP/1.1\r\nHo");
	cli_close(&c);
	cli_open(&c);
	cli_sends(&c, "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc");
	cli_close(&c);
	exchange(&c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(jstr(&r, "path"), "/next");
	resp_free(&r);
	cli_close(&c);
	stop();
}
END_TEST

START_TEST(handler_answers)
{
	char v[128];
	resp r;
	cli c;

	start(NULL);
	exchange(&c, "GET /status0 HTTP/1.1\r\nHost: x\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 500);
	ck_assert(strncmp(r.head, "HTTP/1.1 500 Internal Server Error\r\n", 36) == 0);
	ck_assert_str_eq(error_code(&r), "internal");
	resp_free(&r);
	/* The connection goes on. */
	cli_sends(&c, "GET /headers HTTP/1.1\r\nHost: x\r\n\r\n");
	ck_assert(cli_response(&c, &r, false));
	ck_assert_int_eq(r.status, 201);
	ck_assert(strncmp(r.head, "HTTP/1.1 201 Created\r\n", 22) == 0);
	ck_assert_str_eq(resp_header(&r, "Content-Type", v, sizeof v), "text/plain; charset=utf-8");
	ck_assert_str_eq(resp_header(&r, "Allow", v, sizeof v), "GET, HEAD");
	ck_assert_str_eq(resp_header(&r, "Location", v, sizeof v), "/made/1");
	ck_assert_ptr_null(resp_header(&r, "X-Bad", v, sizeof v));
	ck_assert_ptr_null(resp_header(&r, "Injected", v, sizeof v));
	ck_assert_str_eq(r.body, "made");
	resp_free(&r);
	cli_close(&c);
	stop();
}
END_TEST

/* Many clients at once, each with several requests on its connection
 * (no Check assertions in the threads: they count what went wrong). */
typedef struct load {
	int requests, ok;
} load;

static void *
load_main(void *arg)
{
	load *l = arg;
	char buf[4096];

	for (int conn = 0; conn < 20; conn++) {
		struct sockaddr_in a;
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct timeval tv = {10, 0};
		memset(&a, 0, sizeof a);
		a.sin_family = AF_INET;
		a.sin_port = htons((uint16_t)T.port);
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
			close(fd);
			continue;
		}
		for (int i = 0; i < 3; i++) {
			static const char req[] = "GET /big?n=10 HTTP/1.1\r\nHost: x\r\n\r\n";
			size_t got = 0;
			char *end = NULL;
			l->requests++;
			if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1))
				break;
			/* The answer is a head and "xxxxxxxxxx". */
			while (got < sizeof buf - 1) {
				ssize_t k = recv(fd, buf + got, sizeof buf - 1 - got, 0);
				if (k <= 0)
					break;
				got += (size_t)k;
				buf[got] = '\0';
				if ((end = strstr(buf, "\r\n\r\n")) != NULL && strlen(end + 4) >= 10)
					break;
			}
			if (end != NULL && strncmp(buf, "HTTP/1.1 200 ", 13) == 0 &&
			    strcmp(end + 4, "xxxxxxxxxx") == 0)
				l->ok++;
		}
		close(fd);
	}
	return NULL;
}

START_TEST(concurrent_clients)
{
	pthread_t th[4];
	load l[4];

	start(NULL);
	for (int i = 0; i < 4; i++) {
		l[i].requests = l[i].ok = 0;
		ck_assert_int_eq(pthread_create(&th[i], NULL, load_main, &l[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(l[i].requests, 60);
		ck_assert_int_eq(l[i].ok, 60);
	}
	stop();
}
END_TEST

/* ------------------------------------------------------------------ WebSocket */

START_TEST(ws_handshake_and_refusals)
{
	char v[64];
	resp r;
	cli c;
	int rv;

	start(NULL);
	ws_raw_open(&c, "/ws/raw");
	WAIT_UNTIL(counter(&T.opened) == 1, 5000);
	ck_assert_int_eq(counter(&T.opened), 1);
	ck_assert_str_eq(T.open_path, "/ws/raw");
	ws_send_frame(&c, 0x8, true, "\x03\xe8", 2, true);
	ws_expect_close(&c, 1000, NULL, 0);
	cli_expect_end(&c);
	cli_close(&c);
	WAIT_UNTIL(counter(&T.closed) == 1, 5000);
	ck_assert_int_eq(counter(&T.closed), 1);

	/* on_open refuses: its answer, with its JSON body. */
	exchange(&c,
	         "GET /ws/nope HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	         "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
	         &r);
	ck_assert_int_eq(r.status, 404);
	ck_assert_str_eq(error_code(&r), "not_found");
	resp_free(&r);
	cli_close(&c);
	ck_assert_ptr_null(nng_ws_dial("/ws/nope", &rv));
	ck_assert_int_eq(rv, NNG_ECONNREFUSED);

	/* Malformed upgrades. */
	exchange(&c,
	         "GET /ws/x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	         "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 8\r\n\r\n",
	         &r);
	ck_assert_int_eq(r.status, 426);
	ck_assert_str_eq(resp_header(&r, "Sec-WebSocket-Version", v, sizeof v), "13");
	resp_free(&r);
	cli_close(&c);
	expect_refusal("GET /ws/x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	               "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
	               400, "bad_request");
	expect_refusal("GET /ws/x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	               "Sec-WebSocket-Version: 13\r\n\r\n",
	               400, "bad_request");
	/* Without "Connection: upgrade" it is a plain GET. */
	exchange(&c, "GET /ws/plain HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(jstr(&r, "path"), "/ws/plain");
	resp_free(&r);
	cli_close(&c);
	ck_assert_int_eq(counter(&T.opened), 1);
	stop();
}
END_TEST

START_TEST(ws_echo_with_nng)
{
	nng_stream *s;
	char text[] = "ping me";
	size_t n;

	start(NULL);
	s = nng_ws_dial("/ws/hello", NULL);
	ck_assert_ptr_nonnull(s);
	nng_ws_expect(s, "hello"); /* sent by on_open */
	ck_assert_int_eq(nng_ws_io(s, true, text, strlen(text), &n), 0);
	ck_assert_uint_eq(n, strlen(text));
	nng_ws_expect(s, "ping me");
	WAIT_UNTIL(counter(&T.messages) == 1, 5000);
	ck_assert_int_eq(counter(&T.messages), 1);
	nng_stream_free(s); /* NNG sends a close and waits a moment for ours */
	WAIT_UNTIL(counter(&T.closed) == 1, 5000);
	ck_assert_int_eq(counter(&T.closed), 1);
	/* Closed: sending fails, the handle stays valid while held. */
	ck_assert_int_eq(loomi_ws_send(T.held[0], "x", 1, true), LOOM_ECLOSED);
	ck_assert_ptr_eq(loomi_ws_get_data(T.held[0]), &T);
	stop();
}
END_TEST

START_TEST(ws_frames)
{
	char big[3000];
	cli c;

	start(NULL);
	ws_raw_open(&c, "/ws/frames");
	/* Ping, answered with its payload. */
	ws_send_frame(&c, 0x9, true, "are you there", 13, true);
	ws_expect_frame(&c, 0xA, "are you there");
	/* A fragmented text message with a ping in the middle: the pong
	 * comes first, then the whole message. */
	ws_send_frame(&c, 0x1, false, "hel", 3, true);
	ws_send_frame(&c, 0x9, true, "p", 1, true);
	ws_send_frame(&c, 0x0, false, "l", 1, true);
	ws_send_frame(&c, 0x0, true, "o", 1, true);
	ws_expect_frame(&c, 0xA, "p");
	ws_expect_frame(&c, 0x1, "hello");
	/* Binary, and a 16-bit length. */
	memset(big, 'z', sizeof big);
	big[sizeof big - 1] = '\0';
	ws_send_frame(&c, 0x2, true, big, sizeof big - 1, true);
	ws_expect_frame(&c, 0x2, big);
	/* The closing handshake. */
	ws_send_frame(&c, 0x8, true, "\x03\xe8" "done", 6, true);
	ws_expect_close(&c, 1000, NULL, 0);
	cli_expect_end(&c);
	cli_close(&c);
	WAIT_UNTIL(counter(&T.closed) == 1, 5000);
	ck_assert_int_eq(counter(&T.closed), 1);
	stop();
}
END_TEST

START_TEST(ws_protocol_errors)
{
	loomi_http_options opt = {.max_ws_message = 1024};
	char big[1500];
	cli c;

	start(&opt);
	ws_raw_open(&c, "/ws/e1");
	ws_send_frame(&c, 0x1, true, "plain", 5, false);
	ws_expect_close(&c, 1002, NULL, 0);
	cli_expect_end(&c);
	cli_close(&c);

	/* Too big: refused once the header says so. */
	ws_raw_open(&c, "/ws/e2");
	memset(big, 'q', sizeof big);
	ws_send_frame(&c, 0x2, true, big, sizeof big, true);
	ws_expect_close(&c, 1009, NULL, 0);
	cli_expect_end(&c);
	cli_close(&c);

	/* Too big across fragments. */
	ws_raw_open(&c, "/ws/e3");
	ws_send_frame(&c, 0x2, false, big, 1000, true);
	ws_send_frame(&c, 0x0, true, big, 100, true);
	ws_expect_close(&c, 1009, NULL, 0);
	cli_expect_end(&c);
	cli_close(&c);

	ws_raw_open(&c, "/ws/e4");
	ws_send_frame(&c, 0x1, true, "\xff\xfe", 2, true);
	ws_expect_close(&c, 1007, NULL, 0);
	cli_expect_end(&c);
	cli_close(&c);

	ws_raw_open(&c, "/ws/e5");
	ws_send_frame(&c, 0x0, true, "x", 1, true);
	ws_expect_close(&c, 1002, NULL, 0);
	cli_expect_end(&c);
	cli_close(&c);

	WAIT_UNTIL(counter(&T.closed) == 5, 5000);
	ck_assert_int_eq(counter(&T.closed), 5);
	ck_assert_int_eq(counter(&T.messages), 0);
	stop();
}
END_TEST

START_TEST(ws_server_closes)
{
	loomi_http_options opt = {.request_timeout_ms = 300};
	char reason[64];
	int64_t t0;
	cli c;

	start(&opt);
	/* The server starts the closing handshake; the client answers. */
	ws_raw_open(&c, "/ws/c1");
	ws_send_frame(&c, 0x1, true, "close", 5, true);
	ws_expect_close(&c, 1000, reason, sizeof reason);
	ck_assert_str_eq(reason, "bye");
	ws_send_frame(&c, 0x8, true, "\x03\xe8", 2, true);
	cli_expect_end(&c);
	cli_close(&c);

	/* The client never answers: closed after the wait (which starts when
	 * the server sends its close, after this request for it). */
	ws_raw_open(&c, "/ws/c2");
	t0 = now_ms();
	ws_send_frame(&c, 0x1, true, "close", 5, true);
	ws_expect_close(&c, 1000, reason, sizeof reason);
	cli_expect_end(&c);
	ck_assert_int_ge(now_ms() - t0, 200);
	cli_close(&c);
	WAIT_UNTIL(counter(&T.closed) == 2, 5000);
	ck_assert_int_eq(counter(&T.closed), 2);
	ck_assert_int_eq(loomi_ws_send(T.held[0], "x", 1, true), LOOM_ECLOSED);
	stop();
}
END_TEST

#define DROP_N 128
#define DROP_SIZE (256 * 1024)

START_TEST(ws_queue_drops_oldest)
{
	loomi_http_options opt = {.ws_queue = 4};
	char *msg = malloc(DROP_SIZE), *data;
	int received = 0, last = -1, op;
	uint64_t dropped;
	loomi_ws *ws;
	size_t len;
	cli c;

	start(&opt);
	ws_raw_open(&c, "/ws/slow");
	WAIT_UNTIL(counter(&T.opened) == 1, 5000);
	ck_assert_int_eq(counter(&T.opened), 1);
	ws = T.held[0];
	/* The client reads nothing while the messages are sent. */
	memset(msg, 'm', DROP_SIZE);
	for (int i = 0; i < DROP_N; i++) {
		memcpy(msg, &i, sizeof i);
		ck_assert_int_eq(loomi_ws_send(ws, msg, DROP_SIZE, false), 0);
	}
	dropped = loomi_ws_dropped(ws);
	ck_assert_uint_gt(dropped, 0);
	ck_assert_uint_lt(dropped, DROP_N);
	/* Then it reads: what was not dropped arrives, in order, ending with
	 * the newest. */
	while (last != DROP_N - 1) {
		int seq;
		ck_assert(ws_read_frame(&c, &op, &data, &len));
		ck_assert_int_eq(op, 0x2);
		ck_assert_uint_eq(len, DROP_SIZE);
		memcpy(&seq, data, sizeof seq);
		ck_assert_int_gt(seq, last);
		last = seq;
		received++;
		free(data);
	}
	ck_assert_uint_eq(loomi_ws_dropped(ws), dropped);
	ck_assert_uint_eq((uint64_t)received + dropped, DROP_N);
	free(msg);
	ws_send_frame(&c, 0x8, true, "", 0, true);
	op = 0;
	ck_assert(ws_read_frame(&c, &op, &data, &len));
	ck_assert_int_eq(op, 0x8);
	free(data);
	cli_expect_end(&c);
	cli_close(&c);
	stop();
}
END_TEST

START_TEST(ws_pings_and_idle_clients)
{
	/* the client below answers each ping at once: 2 s is far more than a
	 * loaded machine delays it */
	loomi_http_options opt = {.ws_ping_interval_ms = 100, .ws_idle_timeout_ms = 2000};
	char reason[128], *data;
	int op, pings = 0;
	int64_t t0;
	size_t len;
	cli c;

	start(&opt);
	/* A client that answers the pings stays past the idle timeout. */
	ws_raw_open(&c, "/ws/alive");
	t0 = now_ms();
	while (now_ms() - t0 < 3000) {
		ck_assert(ws_read_frame(&c, &op, &data, &len));
		ck_assert_int_eq(op, 0x9);
		ws_send_frame(&c, 0xA, true, data, len, true);
		free(data);
		pings++;
	}
	ck_assert_int_ge(pings, 3);
	ck_assert_int_eq(counter(&T.closed), 0);
	/* Then it stops answering: closed with 1008 naming the setting. */
	for (;;) {
		ck_assert(ws_read_frame(&c, &op, &data, &len));
		if (op == 0x8)
			break;
		ck_assert_int_eq(op, 0x9);
		free(data);
	}
	ck_assert_uint_ge(len, 2);
	ck_assert_uint_eq(((unsigned)(uint8_t)data[0] << 8) | (uint8_t)data[1], 1008);
	snprintf(reason, sizeof reason, "%.*s", (int)(len - 2), data + 2);
	free(data);
	ck_assert_ptr_nonnull(strstr(reason, "http.ws_idle_timeout"));
	shutdown(c.fd, SHUT_WR);
	cli_close(&c);
	WAIT_UNTIL(counter(&T.closed) == 1, 5000);
	ck_assert_int_eq(counter(&T.closed), 1);
	stop();
}
END_TEST

/* A sender that keeps sending until the connection is gone. */
typedef struct sender {
	loomi_ws *ws;
	int sent, closed;
} sender;

static void *
sender_main(void *arg)
{
	sender *sd = arg;
	char msg[1024];

	memset(msg, 's', sizeof msg);
	for (int64_t end = now_ms() + 10000; now_ms() < end;) {
		int rv = loomi_ws_send(sd->ws, msg, sizeof msg, false);
		if (rv == LOOM_ECLOSED) {
			sd->closed = 1;
			break;
		}
		sd->sent++;
		if (sd->sent % 64 == 0)
			sleep_ms(1);
	}
	return NULL;
}

START_TEST(ws_client_vanishes_while_sending)
{
	loomi_http_options opt = {.ws_queue = 8};
	sender sd = {0};
	pthread_t th;
	cli c;

	start(&opt);
	/* The client drops the connection, no close frame. */
	ws_raw_open(&c, "/ws/v1");
	WAIT_UNTIL(counter(&T.opened) == 1, 5000);
	ck_assert_int_eq(counter(&T.opened), 1);
	sd.ws = T.held[0];
	ck_assert_int_eq(pthread_create(&th, NULL, sender_main, &sd), 0);
	sleep_ms(50);
	cli_close(&c);
	pthread_join(th, NULL);
	ck_assert_int_eq(sd.closed, 1);
	WAIT_UNTIL(counter(&T.closed) == 1, 5000);
	ck_assert_int_eq(counter(&T.closed), 1);

	/* The server stops while a sender is busy and the client reads
	 * nothing. */
	memset(&sd, 0, sizeof sd);
	ws_raw_open(&c, "/ws/v2");
	WAIT_UNTIL(counter(&T.opened) == 2, 5000);
	ck_assert_int_eq(counter(&T.opened), 2);
	sd.ws = T.held[1];
	ck_assert_int_eq(pthread_create(&th, NULL, sender_main, &sd), 0);
	sleep_ms(50);
	loomi_http_stop(T.srv);
	T.srv = NULL;
	pthread_join(th, NULL); /* before the handles are released */
	ck_assert_int_eq(sd.closed, 1);
	stop();
	cli_close(&c);
}
END_TEST

START_TEST(stop_with_open_clients)
{
	nng_stream *s[3];
	char buf[64];
	cli h, w;
	size_t n;

	start(NULL);
	for (int i = 0; i < 3; i++) {
		s[i] = nng_ws_dial("/ws/open", NULL);
		ck_assert_ptr_nonnull(s[i]);
	}
	ws_raw_open(&w, "/ws/raw");
	cli_open(&h);
	cli_sends(&h, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
	WAIT_UNTIL(counter(&T.opened) == 4, 5000);
	ck_assert_int_eq(counter(&T.opened), 4);
	loomi_http_stop(T.srv);
	T.srv = NULL;
	ck_assert_int_eq(counter(&T.closed), 4);
	ck_assert_int_eq(counter(&T.bad_close), 0);
	/* The raw client was told the server is going away. */
	ws_expect_close(&w, 1001, buf, sizeof buf);
	ck_assert_str_eq(buf, "server stopping");
	cli_expect_end(&w);
	cli_expect_end(&h);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_ne(nng_ws_io(s[i], false, buf, sizeof buf, &n), 0);
		nng_stream_free(s[i]);
	}
	cli_close(&w);
	cli_close(&h);
	for (int i = 0; i < T.nheld; i++) {
		ck_assert_int_eq(loomi_ws_send(T.held[i], "x", 1, true), LOOM_ECLOSED);
		loomi_ws_release(T.held[i]);
	}
	T.nheld = 0;
}
END_TEST

int
main(void)
{
	Suite *s;
	TCase *tc;
	int rv;

	s = suite_create("http");
	tc = tcase_create("primitives");
	tcase_add_test(tc, sha1_base64_vectors);
	suite_add_tcase(s, tc);

	tc = tcase_create("http");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, start_errors);
	tcase_add_test(tc, get_headers_and_query);
	tcase_add_test(tc, bodies);
	tcase_add_test(tc, head_and_no_content);
	tcase_add_test(tc, keep_alive_and_pipelining);
	tcase_add_test(tc, closing_connections);
	tcase_add_test(tc, percent_escapes_at_the_end);
	tcase_add_test(tc, malformed_requests);
	tcase_add_test(tc, oversize_head_and_body);
	tcase_add_test(tc, too_many_connections);
	tcase_add_test(tc, body_budget);
	tcase_add_test(tc, per_client_cap_and_reserve);
	tcase_add_test(tc, timeouts);
	tcase_add_test(tc, client_leaves_mid_request);
	tcase_add_test(tc, handler_answers);
	tcase_add_test(tc, concurrent_clients);
	suite_add_tcase(s, tc);

	tc = tcase_create("unix socket");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, unix_socket_peer_and_mode);
	tcase_add_test(tc, unix_socket_stale_and_refused_paths);
	tcase_add_test(tc, unix_socket_cap_per_uid);
	suite_add_tcase(s, tc);

	tc = tcase_create("websocket");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, ws_handshake_and_refusals);
	tcase_add_test(tc, ws_echo_with_nng);
	tcase_add_test(tc, ws_frames);
	tcase_add_test(tc, ws_protocol_errors);
	tcase_add_test(tc, ws_server_closes);
	tcase_add_test(tc, ws_queue_drops_oldest);
	tcase_add_test(tc, ws_pings_and_idle_clients);
	tcase_add_test(tc, ws_client_vanishes_while_sending);
	tcase_add_test(tc, stop_with_open_clients);
	suite_add_tcase(s, tc);

	rv = tu_run(s);
	/* NNG keeps global state until nng_fini(); release it so leak checkers
	 * see only our own leaks. */
	nng_fini();
	return rv;
}

/* The HTTP/1.1 and WebSocket server: see http.h for what it serves and why
 * it parses HTTP itself.
 *
 * Each connection is a struct loomi_ws (whether or not it upgrades) with
 * two aios, one receiving and one sending, and a mutex.  One role, the
 * reader, parses what has arrived and answers it.  It runs in the receive
 * callback; over HTTP it parks while an answer is being sent and the send
 * callback takes it up again, so the requests of one connection are
 * answered one at a time and in order.  After an upgrade the reader keeps
 * receiving frames while the send side drains the outgoing queue.
 *
 * `ops` counts the operations submitted and not yet called back, plus the
 * callbacks running.  When it drops to zero the connection is finished:
 * the reaper thread stops its aios (waiting for the last callback to
 * return), frees its stream, calls on_close and drops the server's
 * reference.  Nothing else frees a connection's network resources, so a
 * client that vanishes mid-request or while messages are queued leaves no
 * dangling callback behind.
 *
 * Limits (http.h lists them): admission is decided when a connection is
 * accepted (an ordinary slot, a reserve slot, or a 503 at once); the body
 * budget is charged when a request's head (or a chunk's size) arrives and
 * released in req_end or when the connection is reaped; a WebSocket's
 * receive runs with a timeout that wakes it to ping or to close an idle
 * client.  Buffers that can grow large (rx, chunked bodies, WebSocket
 * messages) come from buf_resize: from 128 KiB on they are mmapped, so
 * freeing one gives its memory back to the system; glibc's malloc keeps
 * freed blocks of that size in its arenas (its mmap threshold rises to the
 * largest block freed), which left loomd at 1.36 GB after clients holding
 * 15 MB bodies had gone.
 *
 * Lock order: the server's mutex before a connection's; callbacks never
 * take the server's mutex while holding a connection's. */
#include "config.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <loom/error.h>

#include "http.h"
#include "host/core/log.h"
#include "host/core/util.h"

#define DEFAULT_MAX_HEAD (16 * 1024)
#define DEFAULT_MAX_BODY (16 * 1024 * 1024)
#define DEFAULT_MAX_CONNS 256
#define DEFAULT_REQUEST_TIMEOUT_MS 30000
#define DEFAULT_IDLE_TIMEOUT_MS 60000
#define DEFAULT_MAX_WS_MESSAGE (1024 * 1024)
#define DEFAULT_WS_QUEUE 256
#define DEFAULT_BODY_BUDGET ((size_t)256 * 1024 * 1024)
#define DEFAULT_MAX_CONNS_PER_CLIENT 64
#define DEFAULT_RESERVE 16
#define DEFAULT_WS_PING_INTERVAL_MS 20000
#define DEFAULT_WS_IDLE_TIMEOUT_MS 60000
#define RETRY_AFTER "2"      /* seconds, in 503 answers */
#define BIG_BUF (128 * 1024) /* buffers this large are mmapped */

#define RX_MIN 4096          /* smallest receive buffer */
#define RX_CHUNK 16384       /* room asked for each receive when more is due */
#define RX_KEEP 65536        /* an idle connection keeps a buffer up to this */
#define MAX_HEADERS 256      /* header lines in one request (431 beyond) */
#define CHUNK_LINE_MAX 1024  /* a chunk-size line, extensions included */
/* After a refusal the server reads and drops what the client still sends
 * before it closes (a close with unread data sends a reset, and the reset
 * can destroy the answer before the client reads it). */
#define LINGER_IDLE_MS 500
#define LINGER_TOTAL_MS 2000
#define WS_CLOSE_WAIT_MS 5000 /* for the client's close frame after ours */
#define STOP_GRACE_MS 1000    /* for WebSocket clients to close at stop */
#define REFUSED_MAX 64        /* connections refused with 503 at a time */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ------------------------------------------------------------------ SHA-1, base64 */

static uint32_t
rol32(uint32_t x, int n)
{
	return (x << n) | (x >> (32 - n));
}

static void
sha1_block(uint32_t h[5], const uint8_t *p)
{
	uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];

	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
	for (int i = 16; i < 80; i++)
		w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	for (int i = 0; i < 80; i++) {
		uint32_t f, k, t;
		if (i < 20) {
			f = (b & c) | (~b & d);
			k = 0x5A827999;
		} else if (i < 40) {
			f = b ^ c ^ d;
			k = 0x6ED9EBA1;
		} else if (i < 60) {
			f = (b & c) | (b & d) | (c & d);
			k = 0x8F1BBCDC;
		} else {
			f = b ^ c ^ d;
			k = 0xCA62C1D6;
		}
		t = rol32(a, 5) + f + e + k + w[i];
		e = d;
		d = c;
		c = rol32(b, 30);
		b = a;
		a = t;
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
	h[4] += e;
}

void
loomi_http_sha1(const void *data, size_t len, uint8_t digest[20])
{
	uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
	const uint8_t *p = data;
	uint64_t bits = (uint64_t)len * 8;
	uint8_t tail[128];
	size_t n = len, end;

	for (; n >= 64; n -= 64, p += 64)
		sha1_block(h, p);
	memset(tail, 0, sizeof tail);
	if (n > 0)
		memcpy(tail, p, n);
	tail[n] = 0x80;
	end = n + 1 + 8 <= 64 ? 64 : 128;
	for (int i = 0; i < 8; i++)
		tail[end - 1 - i] = (uint8_t)(bits >> (8 * i));
	sha1_block(h, tail);
	if (end == 128)
		sha1_block(h, tail + 64);
	for (int i = 0; i < 5; i++) {
		digest[4 * i] = (uint8_t)(h[i] >> 24);
		digest[4 * i + 1] = (uint8_t)(h[i] >> 16);
		digest[4 * i + 2] = (uint8_t)(h[i] >> 8);
		digest[4 * i + 3] = (uint8_t)h[i];
	}
}

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t
loomi_http_base64(const void *data, size_t len, char *out)
{
	const uint8_t *p = data;
	size_t o = 0;

	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < len)
			v |= p[i + 2];
		out[o++] = b64_alphabet[v >> 18 & 63];
		out[o++] = b64_alphabet[v >> 12 & 63];
		out[o++] = i + 1 < len ? b64_alphabet[v >> 6 & 63] : '=';
		out[o++] = i + 2 < len ? b64_alphabet[v & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

/* A Sec-WebSocket-Key: 16 bytes in base64, so 22 characters and "==". */
static bool
ws_key_ok(const char *key)
{
	if (strlen(key) != 24 || strcmp(key + 22, "==") != 0)
		return false;
	for (int i = 0; i < 22; i++) {
		if (key[i] == '\0' || strchr(b64_alphabet, key[i]) == NULL)
			return false;
	}
	return true;
}

static void
ws_accept_key(const char *key, char out[29])
{
	char text[24 + sizeof WS_GUID];
	uint8_t digest[20];

	memcpy(text, key, 24);
	memcpy(text + 24, WS_GUID, sizeof WS_GUID - 1);
	loomi_http_sha1(text, 24 + sizeof WS_GUID - 1, digest);
	loomi_http_base64(digest, sizeof digest, out);
}

/* ------------------------------------------------------------------ small helpers */

static bool
utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i];
		size_t len;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xE0) == 0xC0) {
			len = 2, cp = c & 0x1F, min = 0x80;
		} else if ((c & 0xF0) == 0xE0) {
			len = 3, cp = c & 0x0F, min = 0x800;
		} else if ((c & 0xF8) == 0xF0) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += len;
	}
	return true;
}

/* RFC 9110 token characters (methods, header names). */
static bool
is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool
is_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++) {
		if (!is_tchar((unsigned char)*s))
			return false;
	}
	return true;
}

/* Does the comma-separated list contain tok (case-insensitive)? */
static bool
has_token(const char *list, const char *tok)
{
	size_t n = strlen(tok);

	while (list != NULL && *list != '\0') {
		const char *end = strchr(list, ','), *e;
		while (*list == ' ' || *list == '\t')
			list++;
		e = end ? end : list + strlen(list);
		while (e > list && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - list) == n && strncasecmp(list, tok, n) == 0)
			return true;
		list = end ? end + 1 : NULL;
	}
	return false;
}

static uint64_t
ms_to_ns(int64_t ms)
{
	return (uint64_t)ms * 1000000u;
}

/* Milliseconds left until deadline (ns, monotonic); 0 when passed. */
static int
ms_left(uint64_t deadline)
{
	uint64_t now = loomi_mono_ns();
	uint64_t left = deadline > now ? (deadline - now + 999999) / 1000000 : 0;
	return left > INT32_MAX ? INT32_MAX : (int)left;
}

typedef struct sbuf {
	char *p;
	size_t len, cap;
} sbuf;

static void
sb_add(sbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = loomi_xrealloc(b->p, cap);
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_addf(sbuf *b, const char *fmt, ...) LOOM_PRINTF(2, 3);

static void
sb_addf(sbuf *b, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = loomi_vstrfmt(fmt, ap);
	va_end(ap);
	sb_add(b, s, strlen(s));
	free(s);
}

/* Buffers that grow with what a client sends: below BIG_BUF from malloc,
 * from BIG_BUF on mmapped (grown with mremap), so that freeing one returns
 * its pages to the system whatever malloc's thresholds are. */
static size_t
buf_round(size_t n)
{
	long v;
	size_t page;

	if (n < BIG_BUF)
		return n;
	v = sysconf(_SC_PAGESIZE);
	page = v > 0 ? (size_t)v : 4096;
	return (n + page - 1) / page * page;
}

/* p (old bytes, from buf_resize, or NULL) resized to at least *cap bytes,
 * its contents kept; *cap is set to the size obtained. */
static void *
buf_resize(void *p, size_t old, size_t *cap)
{
	size_t n = buf_round(*cap);
	void *q;

	*cap = n;
	if (n < BIG_BUF && old < BIG_BUF)
		return loomi_xrealloc(p, n);
	if (n < BIG_BUF) {
		q = loomi_xmalloc(n);
		memcpy(q, p, n);
		munmap(p, old);
		return q;
	}
	if (old >= BIG_BUF) {
		q = mremap(p, old, n, MREMAP_MAYMOVE);
	} else {
		q = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (q != MAP_FAILED) {
			if (old > 0)
				memcpy(q, p, old);
			free(p);
		}
	}
	if (q == MAP_FAILED) {
		LOG_ERROR("http: out of memory for a buffer of %zu bytes", n);
		abort();
	}
#ifdef MADV_POPULATE_WRITE
	/* The part just added is about to be written by a receive (rx grows
	 * only as bytes arrive): fault it in with one call rather than a trap
	 * every 4 KiB, a good part of receiving a large body (a dataset's
	 * upload part: 8 MiB).  A hint: where the kernel lacks it, nothing
	 * changes. */
	if (n > old)
		madvise((char *)q + (old >= BIG_BUF ? old : 0), n - (old >= BIG_BUF ? old : 0),
		        MADV_POPULATE_WRITE);
#endif
	return q;
}

static void
buf_free(void *p, size_t cap)
{
	if (p != NULL && cap >= BIG_BUF)
		munmap(p, cap);
	else
		free(p);
}

static const char *
reason_phrase(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 417: return "Expectation Failed";
	case 422: return "Unprocessable Content";
	case 426: return "Upgrade Required";
	case 428: return "Precondition Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	}
	switch (status / 100) {
	case 2: return "Success";
	case 3: return "Redirection";
	case 4: return "Client Error";
	default: return "Server Error";
	}
}

static const char *
error_code(int status)
{
	switch (status) {
	case 400: return "bad_request";
	case 404: return "not_found";
	case 408: return "request_timeout";
	case 413: return "body_too_large";
	case 426: return "upgrade_required";
	case 431: return "head_too_large";
	case 501: return "not_implemented";
	case 503: return "unavailable";
	case 505: return "version_not_supported";
	case 500: return "internal";
	}
	return status >= 500 ? "internal" : "refused";
}

/* {"error":{"code":…,"message":…}} as a malloc'd string. */
static char *
error_json(int status, const char *msg, size_t *len)
{
	char *clean = loomi_strdup(msg), *text;
	json_t *doc;

	loomi_utf8_clean(clean); /* it may quote a request's bytes */
	doc = json_pack("{s:{s:s, s:s}}", "error", "code", error_code(status), "message", clean);
	text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	free(clean);
	if (text == NULL)
		text = loomi_strdup("{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}");
	*len = strlen(text);
	return text;
}

static void
format_addr(const nng_sockaddr *sa, char *buf, size_t n, bool as_url)
{
	char host[INET6_ADDRSTRLEN];

	if (sa->s_family == NNG_AF_INET) {
		if (inet_ntop(AF_INET, &sa->s_in.sa_addr, host, sizeof host) == NULL)
			snprintf(host, sizeof host, "?");
		if (as_url && strcmp(host, "0.0.0.0") == 0)
			snprintf(host, sizeof host, "127.0.0.1");
		snprintf(buf, n, "%s:%u", host, (unsigned)ntohs(sa->s_in.sa_port));
	} else if (sa->s_family == NNG_AF_INET6) {
		static const uint8_t any[16];
		if (inet_ntop(AF_INET6, sa->s_in6.sa_addr, host, sizeof host) == NULL)
			snprintf(host, sizeof host, "?");
		if (as_url && memcmp(sa->s_in6.sa_addr, any, sizeof any) == 0)
			snprintf(host, sizeof host, "::1");
		snprintf(buf, n, "[%s]:%u", host, (unsigned)ntohs(sa->s_in6.sa_port));
	} else {
		snprintf(buf, n, "unknown");
	}
}

/* ------------------------------------------------------------------ types */

/* Bytes to send: a head and an optional body, both malloc'd. */
typedef struct txbuf {
	struct txbuf *next;
	unsigned flags;
	char *head;
	size_t head_len;
	char *body;
	size_t body_len;
	size_t sent;
} txbuf;

enum {
	TX_FINAL = 1u << 0,   /* the last bytes of the connection: close after */
	TX_LINGER = 1u << 1,  /* with TX_FINAL: read and drop for a moment first */
	TX_CONTROL = 1u << 2, /* a 101 or a WebSocket control frame: never dropped */
	TX_CLOSE = 1u << 3,   /* a WebSocket close frame */
	TX_DATA = 1u << 4,    /* a WebSocket message (counts against ws_queue) */
};

enum { READER_ACTIVE, READER_PARKED, READER_IDLE };

enum { RES_NONE, RES_POOL, RES_CLIENT };

enum { CK_SIZE, CK_DATA, CK_DATA_END, CK_TRAILER };

typedef struct header {
	const char *name;
	char *value;
	bool owned; /* value joined from repeated headers */
} header;

/* The request being read; its strings point into hbuf. */
typedef struct hreq {
	bool head_done;
	char *hbuf;
	char *method, *target, *path, *query, *version;
	int minor;
	header *hdrs;
	int nhdrs;
	bool is_head, keep_alive, chunked, upgrade, expect_continue;
	uint64_t clen;
	/* chunked bodies, decoded */
	int ck_state;
	uint64_t ck_left;
	size_t ck_held;
	size_t trailer_len;
	char *cbody;
	size_t cbody_len, cbody_cap;
} hreq;

typedef struct loomi_ws conn;

enum { LISTEN_TCP, LISTEN_TLS, LISTEN_UNIX };

/* One place connections come from: the listen address (TCP or TLS) or
 * the Unix socket. */
typedef struct listener {
	loomi_http_server *srv;
	int kind;               /* LISTEN_* */
	nng_stream_listener *l;
	nng_aio *aio;
	bool backoff;
	char *name;             /* for messages: the URL or the socket's path */
} listener;

struct loomi_ws {
	loomi_http_server *srv;
	conn *prev, *next;  /* the server's list */
	conn *dead_next;    /* the reaper's queue */
	nng_stream *stream;
	nng_aio *rx_aio, *tx_aio;
	char peer[64];
	char addr[64];      /* peer without the port, or a socket peer's uid: the
	                     * client, for the cap */
	int64_t peer_uid;   /* a Unix-socket peer's uid; -1 over TCP */
	bool tls;
	bool refused;       /* answered 503 */
	/* admitted through the reserve, past http.max_conns (RES_POOL) or
	 * past http.max_conns_per_client (RES_CLIENT) */
	int reserve;
	size_t ws_queue;    /* copied from the options */

	pthread_mutex_t mtx; /* everything below that is not the reader's */
	int refs;
	int ops;
	bool shut;          /* the stream is closed; nothing more is started */
	bool rx_pending;
	int reader;         /* READER_* */
	bool lingering;
	uint64_t linger_deadline;

	/* the reader's own */
	char *rx;
	size_t rx_off, rx_len, rx_cap;
	uint64_t req_start; /* when the request being read began; 0 between */
	hreq req;
	size_t body_charged; /* of the body budget, for this request */
	uint64_t ws_heard;  /* when the last frame came from the client */
	uint64_t ws_pinged; /* when the last ping was queued */

	/* output */
	txbuf *tx_cur;      /* being sent */
	txbuf *tx_q, **tx_tail;
	size_t tx_data;     /* TX_DATA buffers in tx_q */
	bool tx_busy;

	/* WebSocket */
	bool ws_mode;       /* the reader parses frames */
	bool ws_opening;    /* on_open is running */
	bool ws_open;       /* accepted: on_close is due */
	bool close_queued, close_sent, peer_closed, close_wait;
	uint64_t close_deadline;
	char *msg;          /* a fragmented message being reassembled */
	size_t msg_len, msg_cap;
	bool msg_active, msg_text;
	atomic_uint_fast64_t dropped;
	bool drop_logged;
	void *data;
	const void *owner;         /* set by the dispatcher at on_open */
};

struct loomi_http_server {
	loomi_http_options opt;
	loomi_http_handler_fn handler;
	loomi_ws_handlers ws;
	bool has_ws;
	void *arg;
	char *url;
	listener tcp;           /* listen: tcp:// or tls+tcp:// */
	listener *unix_sock;    /* loomi_http_listen_unix's, or NULL */

	pthread_mutex_t mtx;
	pthread_cond_t reap_cv; /* wakes the reaper */
	pthread_cond_t done_cv; /* wakes loomi_http_stop */
	conn *conns;
	int nconns;             /* in conns */
	int nserved;            /* of them, in ordinary slots */
	int nreserve;           /* of them, in reserve slots */
	size_t body_held;       /* charged to the body budget */
	conn *dead;             /* finished, for the reaper */
	bool stopping, reaper_quit;
	pthread_t reaper;
	uint64_t refusal_logged, budget_logged;
};

static void http_process(conn *c);
static void ws_process(conn *c);

/* ------------------------------------------------------------------ output */

static void
txbuf_free(txbuf *b)
{
	if (b == NULL)
		return;
	free(b->head);
	free(b->body);
	free(b);
}

static txbuf *
txbuf_new(char *head, size_t head_len, char *body, size_t body_len, unsigned flags)
{
	txbuf *b = loomi_xcalloc(1, sizeof *b);

	b->head = head;
	b->head_len = head_len;
	b->body = body;
	b->body_len = body_len;
	b->flags = flags;
	return b;
}

static void
shut_locked(conn *c)
{
	if (!c->shut) {
		c->shut = true;
		nng_stream_close(c->stream);
	}
}

static void
conn_shut(conn *c)
{
	pthread_mutex_lock(&c->mtx);
	shut_locked(c);
	pthread_mutex_unlock(&c->mtx);
}

static void
tx_submit_locked(conn *c)
{
	txbuf *b = c->tx_cur;
	nng_iov iov[2];
	unsigned n = 0;
	size_t s = b->sent;

	if (s < b->head_len) {
		iov[n].iov_buf = b->head + s;
		iov[n++].iov_len = b->head_len - s;
		s = 0;
	} else {
		s -= b->head_len;
	}
	if (b->body_len > s) {
		iov[n].iov_buf = b->body + s;
		iov[n++].iov_len = b->body_len - s;
	}
	nng_aio_set_iov(c->tx_aio, n, iov);
	/* a client that takes none of our bytes for this long is let go */
	nng_aio_set_timeout(c->tx_aio, c->ws_mode ? c->srv->opt.ws_idle_timeout_ms
	                                          : c->srv->opt.idle_timeout_ms);
	c->ops++;
	nng_stream_send(c->stream, c->tx_aio);
}

/* Send the next queued buffer when the send side is free. */
static void
send_next_locked(conn *c)
{
	txbuf *b;

	if (c->shut || c->tx_busy || c->ws_opening || (b = c->tx_q) == NULL)
		return;
	c->tx_q = b->next;
	if (c->tx_q == NULL)
		c->tx_tail = &c->tx_q;
	b->next = NULL;
	if (b->flags & TX_DATA)
		c->tx_data--;
	c->tx_cur = b;
	c->tx_busy = true;
	tx_submit_locked(c);
}

static void
queue_locked(conn *c, txbuf *b)
{
	*c->tx_tail = b;
	c->tx_tail = &b->next;
	if (b->flags & TX_DATA)
		c->tx_data++;
}

/* Control frames go before the queued messages, after other control
 * frames (a pong should not wait behind a backlog). */
static void
queue_control_locked(conn *c, txbuf *b)
{
	txbuf **pp = &c->tx_q;

	while (*pp != NULL && ((*pp)->flags & TX_CONTROL))
		pp = &(*pp)->next;
	b->next = *pp;
	*pp = b;
	if (b->next == NULL)
		c->tx_tail = &b->next;
}

static void
queue_drop_all_locked(conn *c)
{
	txbuf *b;

	while ((b = c->tx_q) != NULL) {
		c->tx_q = b->next;
		txbuf_free(b);
	}
	c->tx_tail = &c->tx_q;
	c->tx_data = 0;
}

/* The reader hands an answer to the send side and waits for it to go. */
static void
answer_and_park(conn *c, txbuf *b)
{
	pthread_mutex_lock(&c->mtx);
	queue_locked(c, b);
	c->reader = READER_PARKED;
	send_next_locked(c);
	pthread_mutex_unlock(&c->mtx);
}

/* ------------------------------------------------------------------ receiving */

/* Compact the buffer and make room for the next receive: need bytes are
 * still missing for what is being read.  Room grows by doubling, so a
 * client that announces a large body and sends nothing costs little. */
static void
rx_prepare(conn *c, size_t need)
{
	size_t keep = c->rx_len - c->rx_off, want = need < RX_CHUNK ? need : RX_CHUNK;

	if (c->rx_off > 0) {
		memmove(c->rx, c->rx + c->rx_off, keep);
		c->rx_len = keep;
		c->rx_off = 0;
	}
	if (keep == 0 && c->rx_cap > RX_KEEP) {
		buf_free(c->rx, c->rx_cap);
		c->rx = NULL;
		c->rx_cap = c->rx_len = 0;
	}
	if (want == 0)
		want = 1;
	/* One byte always stays free, for the NUL after a body. */
	if (c->rx_cap < c->rx_len + want + 1) {
		size_t cap = c->rx_cap * 2;
		if (cap < c->rx_len + want + 1)
			cap = c->rx_len + want + 1;
		if (cap < RX_MIN)
			cap = RX_MIN;
		c->rx = buf_resize(c->rx, c->rx_cap, &cap);
		c->rx_cap = cap;
	}
}

static void
recv_start_locked(conn *c, int timeout_ms)
{
	nng_iov iov;

	if (c->shut)
		return;
	iov.iov_buf = c->rx + c->rx_len;
	iov.iov_len = c->rx_cap - 1 - c->rx_len;
	nng_aio_set_iov(c->rx_aio, 1, &iov);
	nng_aio_set_timeout(c->rx_aio, timeout_ms);
	c->rx_pending = true;
	c->reader = READER_ACTIVE;
	c->ops++;
	nng_stream_recv(c->stream, c->rx_aio);
}

static void
recv_start(conn *c, size_t need, int timeout_ms)
{
	rx_prepare(c, need);
	pthread_mutex_lock(&c->mtx);
	recv_start_locked(c, timeout_ms);
	pthread_mutex_unlock(&c->mtx);
}

/* ------------------------------------------------------------------ connection life */

static void
conn_free(conn *c)
{
	pthread_mutex_destroy(&c->mtx);
	free(c);
}

static void
reap_later(conn *c)
{
	loomi_http_server *srv = c->srv;

	pthread_mutex_lock(&srv->mtx);
	c->dead_next = srv->dead;
	srv->dead = c;
	pthread_cond_signal(&srv->reap_cv);
	pthread_mutex_unlock(&srv->mtx);
}

/* The end of every callback: when nothing is left outstanding the
 * connection is finished. */
static void
op_done(conn *c)
{
	bool dead;

	pthread_mutex_lock(&c->mtx);
	dead = --c->ops == 0;
	if (dead)
		shut_locked(c);
	pthread_mutex_unlock(&c->mtx);
	if (dead)
		reap_later(c);
}

static void
hreq_reset(hreq *r)
{
	for (int i = 0; i < r->nhdrs; i++) {
		if (r->hdrs[i].owned)
			free(r->hdrs[i].value);
	}
	free(r->hdrs);
	free(r->hbuf);
	free(r->path);
	buf_free(r->cbody, r->cbody_cap);
	memset(r, 0, sizeof *r);
}

/* Charge n more bytes of c's request body to the budget; false, with
 * nothing charged, when they would pass it. */
static bool
body_charge(conn *c, uint64_t n, size_t *held)
{
	loomi_http_server *srv = c->srv;
	bool ok;

	pthread_mutex_lock(&srv->mtx);
	ok = n <= srv->opt.body_budget - srv->body_held;
	if (ok) {
		srv->body_held += (size_t)n;
		c->body_charged += (size_t)n;
	}
	*held = srv->body_held;
	pthread_mutex_unlock(&srv->mtx);
	return ok;
}

static void
body_release(conn *c)
{
	loomi_http_server *srv = c->srv;

	if (c->body_charged == 0)
		return;
	pthread_mutex_lock(&srv->mtx);
	srv->body_held -= c->body_charged;
	pthread_mutex_unlock(&srv->mtx);
	c->body_charged = 0;
}

/* The request being read is answered or abandoned: its state goes, and
 * its share of the body budget. */
static void
req_end(conn *c)
{
	body_release(c);
	hreq_reset(&c->req);
	c->req_start = 0;
}

/* On the reaper thread: no callback of c runs or will run. */
static void
conn_reap(conn *c)
{
	loomi_http_server *srv = c->srv;

	nng_aio_stop(c->rx_aio);
	nng_aio_stop(c->tx_aio);
	pthread_mutex_lock(&srv->mtx);
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&srv->mtx);

	nng_stream_free(c->stream);
	nng_aio_free(c->rx_aio);
	nng_aio_free(c->tx_aio);
	pthread_mutex_lock(&c->mtx);
	c->stream = NULL;
	txbuf_free(c->tx_cur);
	c->tx_cur = NULL;
	queue_drop_all_locked(c);
	pthread_mutex_unlock(&c->mtx);
	buf_free(c->rx, c->rx_cap);
	c->rx = NULL;
	body_release(c);
	hreq_reset(&c->req);
	buf_free(c->msg, c->msg_cap);
	c->msg = NULL;

	if (c->ws_open) {
		LOG_DEBUG("http: %s: WebSocket closed (%" PRIu64 " messages dropped)", c->peer,
		          (uint64_t)atomic_load(&c->dropped));
		if (srv->ws.on_close)
			srv->ws.on_close(srv->arg, c);
	}

	pthread_mutex_lock(&srv->mtx);
	srv->nconns--;
	if (c->refused)
		;
	else if (c->reserve != RES_NONE)
		srv->nreserve--;
	else
		srv->nserved--;
	pthread_cond_broadcast(&srv->done_cv);
	pthread_mutex_unlock(&srv->mtx);
	loomi_ws_release(c);
}

static void *
reaper_main(void *arg)
{
	loomi_http_server *srv = arg;

	pthread_mutex_lock(&srv->mtx);
	for (;;) {
		conn *c = srv->dead;
		if (c != NULL) {
			srv->dead = c->dead_next;
			pthread_mutex_unlock(&srv->mtx);
			conn_reap(c);
			pthread_mutex_lock(&srv->mtx);
			continue;
		}
		if (srv->reaper_quit)
			break;
		pthread_cond_wait(&srv->reap_cv, &srv->mtx);
	}
	pthread_mutex_unlock(&srv->mtx);
	return NULL;
}

/* ------------------------------------------------------------------ answers */

/* Serialise res (taking its body and header values) into a buffer.
 * what names the request for log lines ("GET /x"). */
static txbuf *
response_build(conn *c, loomi_http_response *res, bool is_head, bool close, const char *what)
{
	sbuf h = {0};
	char *body = res->body;
	size_t body_len = body ? res->body_len : 0;
	int status = res->status, nh = res->n_headers;
	bool no_body;

	if (nh < 0)
		nh = 0;
	if (nh > (int)(sizeof res->headers / sizeof res->headers[0]))
		nh = (int)(sizeof res->headers / sizeof res->headers[0]);
	if (status < 200 || status > 599) {
		char *msg;
		LOG_ERROR("http: the handler for %s from %s answered status %d; answering 500 "
		          "(a bug in loomd: please report it)",
		          what, c->peer, status);
		free(body);
		msg = loomi_strfmt("the server has no answer for %s: this is a bug in loomd, "
		                   "please report it",
		                   what);
		status = 500;
		body = error_json(status, msg, &body_len);
		free(msg);
		res->content_type = NULL;
		for (int i = 0; i < nh; i++)
			free(res->headers[i].value);
		nh = 0;
	}
	sb_addf(&h, "HTTP/1.1 %d %s\r\n", status, reason_phrase(status));
	if (status != 204 && status != 304) { /* a 304 describes the cached body: no length */
		const char *ct = res->content_type ? res->content_type : "application/json";
		if (strpbrk(ct, "\r\n") != NULL)
			ct = "application/octet-stream";
		if (body_len > 0 || res->content_type != NULL)
			sb_addf(&h, "Content-Type: %s\r\n", ct);
		sb_addf(&h, "Content-Length: %zu\r\n", body_len);
	}
	for (int i = 0; i < nh; i++) {
		const char *name = res->headers[i].name;
		char *value = res->headers[i].value;
		if (name == NULL || !is_token(name) || value == NULL || strpbrk(value, "\r\n") != NULL) {
			LOG_WARN("http: the handler for %s set a malformed header \"%s\"; left out", what,
			         name ? name : "(null)");
		} else {
			sb_addf(&h, "%s: %s\r\n", name, value);
		}
		free(value);
		res->headers[i].value = NULL;
	}
	if (close)
		sb_add(&h, "Connection: close\r\n", 19);
	sb_add(&h, "\r\n", 2);

	no_body = is_head || status == 204 || status == 304;
	if (no_body) {
		free(body);
		body = NULL;
	}
	res->body = NULL;
	if (loomi_log_enabled(LOOM_LOG_DEBUG))
		LOG_DEBUG("http: %s %s -> %d (%zu bytes)", c->peer, what, status, body_len);
	return txbuf_new(h.p, h.len, body, no_body ? 0 : body_len, close ? TX_FINAL : 0);
}

/* Refuse what the client sent: status with a JSON error, then close. */
static void refuse(conn *c, int status, const char *fmt, ...) LOOM_PRINTF(3, 4);

static void
refuse(conn *c, int status, const char *fmt, ...)
{
	loomi_http_response res;
	char *msg, *what;
	va_list ap;
	txbuf *b;

	va_start(ap, fmt);
	msg = loomi_vstrfmt(fmt, ap);
	va_end(ap);
	memset(&res, 0, sizeof res);
	res.status = status;
	res.body = error_json(status, msg, &res.body_len);
	if (status == 426) {
		res.headers[0].name = "Sec-WebSocket-Version";
		res.headers[0].value = loomi_strdup("13");
		res.n_headers = 1;
	} else if (status == 503) {
		res.headers[0].name = "Retry-After";
		res.headers[0].value = loomi_strdup(RETRY_AFTER);
		res.n_headers = 1;
	}
	what = c->req.method && c->req.target
	               ? loomi_strfmt("%s %s", c->req.method, c->req.target)
	               : loomi_strdup("request");
	LOG_DEBUG("http: %s: %s refused with %d: %s", c->peer, what, status, msg);
	b = response_build(c, &res, c->req.head_done && c->req.is_head, true, what);
	b->flags |= TX_LINGER;
	free(what);
	free(msg);
	req_end(c);
	answer_and_park(c, b);
}

/* ------------------------------------------------------------------ request head */

typedef struct herr {
	int status;
	char *msg;
} herr;

static int herr_set(herr *e, int status, const char *fmt, ...) LOOM_PRINTF(3, 4);

static int
herr_set(herr *e, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	e->msg = loomi_vstrfmt(fmt, ap);
	va_end(ap);
	e->status = status;
	return -1;
}

static const char *
hreq_header(const hreq *r, const char *name)
{
	for (int i = 0; i < r->nhdrs; i++) {
		if (strcasecmp(r->hdrs[i].name, name) == 0)
			return r->hdrs[i].value;
	}
	return NULL;
}

static void
hreq_add_header(hreq *r, const char *name, char *value)
{
	for (int i = 0; i < r->nhdrs; i++) {
		if (strcasecmp(r->hdrs[i].name, name) == 0) {
			char *joined = loomi_strfmt("%s, %s", r->hdrs[i].value, value);
			if (r->hdrs[i].owned)
				free(r->hdrs[i].value);
			r->hdrs[i].value = joined;
			r->hdrs[i].owned = true;
			return;
		}
	}
	r->hdrs[r->nhdrs].name = name;
	r->hdrs[r->nhdrs].value = value;
	r->hdrs[r->nhdrs].owned = false;
	r->nhdrs++;
}

/* The request line and headers, once hbuf holds them NUL-terminated. */
static int
head_fields(conn *c, herr *e)
{
	loomi_http_server *srv = c->srv;
	hreq *r = &c->req;
	char *line = r->hbuf, *eol, *sp1, *sp2, *v;
	const char *te, *cl, *connection;
	int nlines = 0;

	eol = strstr(line, "\r\n");
	*eol = '\0';
	sp1 = strchr(line, ' ');
	sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (sp1 == NULL || sp2 == NULL || strchr(sp2 + 1, ' ') != NULL || sp1 == line ||
	    sp2 == sp1 + 1) {
		return herr_set(e, 400,
		                "malformed request line \"%.80s\": send METHOD TARGET HTTP/1.1, "
		                "separated by single spaces",
		                line);
	}
	*sp1 = *sp2 = '\0';
	r->method = line;
	r->target = sp1 + 1;
	r->version = v = sp2 + 1;
	r->is_head = strcmp(r->method, "HEAD") == 0; /* refusals to HEAD have no body */
	if (strlen(v) != 8 || strncmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' ||
	    v[6] != '.' || v[7] < '0' || v[7] > '9') {
		return herr_set(e, 400, "malformed HTTP version \"%.20s\": send HTTP/1.1", v);
	}
	if (v[5] != '1')
		return herr_set(e, 505, "HTTP version \"%s\" is not supported: send HTTP/1.1", v);
	r->minor = v[7] - '0';
	if (!is_token(r->method))
		return herr_set(e, 400, "malformed method \"%.40s\": send a token such as GET", r->method);
	for (const unsigned char *t = (const unsigned char *)r->target; *t; t++) {
		if (*t <= 0x20 || *t >= 0x7f) {
			return herr_set(e, 400,
			                "the request target has byte 0x%02x: percent-encode it", *t);
		}
	}

	/* The path and query; origin form ("/x?q"), absolute form
	 * ("http://host/x?q") or "*" for OPTIONS. */
	{
		const char *t = r->target, *q;
		if (strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0) {
			t = strstr(t, "://") + 3;
			t += strcspn(t, "/?"); /* past the authority */
		} else if (t[0] != '/' && !(strcmp(t, "*") == 0 && strcmp(r->method, "OPTIONS") == 0)) {
			return herr_set(e, 400,
			                "request target \"%.80s\" is not a path: send one starting "
			                "with /",
			                t);
		}
		q = strchr(t, '?');
		if (q == t || *t == '\0')
			r->path = loomi_strdup("/");
		else
			r->path = q ? loomi_strndup(t, (size_t)(q - t)) : loomi_strdup(t);
		r->query = q ? (char *)q + 1 : (char *)"";
	}

	/* Headers. */
	r->hdrs = loomi_xcalloc(MAX_HEADERS, sizeof *r->hdrs);
	for (line = eol + 2; *line != '\0'; line = eol + 2) {
		char *colon, *val, *end;
		eol = strstr(line, "\r\n");
		*eol = '\0';
		if (*line == '\0')
			break;
		if (*line == ' ' || *line == '\t') {
			return herr_set(e, 400,
			                "header line \"%.60s\" starts with a blank (obsolete line "
			                "folding): put each header on one line",
			                line);
		}
		if (++nlines > MAX_HEADERS) {
			return herr_set(e, 431, "more than %d header lines: send fewer headers",
			                MAX_HEADERS);
		}
		colon = strchr(line, ':');
		if (colon == NULL) {
			return herr_set(e, 400, "malformed header line \"%.60s\": send Name: value",
			                line);
		}
		*colon = '\0';
		if (!is_token(line)) {
			return herr_set(e, 400,
			                "malformed header name \"%.60s\": send a token with no blank "
			                "before the colon",
			                line);
		}
		val = colon + 1;
		while (*val == ' ' || *val == '\t')
			val++;
		end = val + strlen(val);
		while (end > val && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		*end = '\0';
		for (const unsigned char *p = (const unsigned char *)val; *p; p++) {
			if ((*p < 0x20 && *p != '\t') || *p == 0x7f) {
				return herr_set(e, 400,
				                "header \"%s\" has control byte 0x%02x in its value", line,
				                *p);
			}
		}
		hreq_add_header(r, line, val);
	}

	/* What the headers say about framing and the connection. */
	connection = hreq_header(r, "Connection");
	r->keep_alive = r->minor >= 1 && !has_token(connection, "close");
	te = hreq_header(r, "Transfer-Encoding");
	cl = hreq_header(r, "Content-Length");
	if (te != NULL) {
		if (cl != NULL) {
			return herr_set(e, 400,
			                "both Transfer-Encoding and Content-Length: send only one");
		}
		if (r->minor == 0) {
			return herr_set(e, 400,
			                "Transfer-Encoding in an HTTP/1.0 request: send Content-Length");
		}
		if (strcasecmp(te, "chunked") != 0) {
			return herr_set(e, 501,
			                "Transfer-Encoding \"%.40s\" is not supported: send the body "
			                "with Content-Length or chunked",
			                te);
		}
		r->chunked = true;
	} else if (cl != NULL) {
		size_t n = strlen(cl);
		if (n == 0 || n > 18 || strspn(cl, "0123456789") != n) {
			return herr_set(e, 400,
			                "Content-Length \"%.40s\" is not a byte count: send one decimal "
			                "number",
			                cl);
		}
		r->clen = strtoull(cl, NULL, 10);
	}
	{
		const char *expect = hreq_header(r, "Expect");
		r->expect_continue = expect && strcasecmp(expect, "100-continue") == 0;
	}
	r->upgrade = srv->has_ws && strcmp(r->method, "GET") == 0 &&
	             has_token(hreq_header(r, "Upgrade"), "websocket") &&
	             has_token(connection, "upgrade");
	return 0;
}

/* Parse the request head at rx_off once it has all arrived: 1 with c->req
 * filled and the head consumed, 0 when more is needed, -1 with e set. */
static int
head_parse(conn *c, herr *e)
{
	size_t max_head = c->srv->opt.max_head;
	const char *p = c->rx + c->rx_off;
	size_t pending = c->rx_len - c->rx_off, lim = pending < max_head ? pending : max_head;
	size_t end = 0;

	for (size_t i = 0; i < lim; i++) {
		char ch = p[i];
		if (ch == '\n') {
			if (i == 0 || p[i - 1] != '\r')
				return herr_set(e, 400, "bare LF in the request head: end each line with CRLF");
			if (i >= 3 && p[i - 2] == '\n' && p[i - 3] == '\r') {
				end = i + 1;
				break;
			}
		} else if (i > 0 && p[i - 1] == '\r') {
			return herr_set(e, 400, "bare CR in the request head: end each line with CRLF");
		} else if (ch == '\0') {
			return herr_set(e, 400, "NUL byte in the request head");
		}
	}
	if (end == 0) {
		if (pending >= max_head) {
			return herr_set(e, 431,
			                "request head over %zu bytes: send fewer or shorter headers",
			                max_head);
		}
		return 0;
	}
	c->req.hbuf = loomi_xmalloc(end + 1);
	memcpy(c->req.hbuf, p, end);
	c->req.hbuf[end] = '\0';
	c->rx_off += end;
	c->req.head_done = true;
	if (head_fields(c, e) != 0)
		return -1;
	return 1;
}

/* ------------------------------------------------------------------ request body */

static void
cbody_add(hreq *r, const char *p, size_t n)
{
	if (r->cbody_len + n + 1 > r->cbody_cap) {
		size_t cap = r->cbody_cap ? r->cbody_cap * 2 : 4096;
		while (cap < r->cbody_len + n + 1)
			cap *= 2;
		r->cbody = buf_resize(r->cbody, r->cbody_cap, &cap);
		r->cbody_cap = cap;
	}
	memcpy(r->cbody + r->cbody_len, p, n);
	r->cbody_len += n;
	r->cbody[r->cbody_len] = '\0';
}

/* Decode what has arrived of a chunked body, consuming it: 1 when the
 * body is complete, 0 when more is needed, -1 malformed, -2 too large, -3
 * past the body budget (r->ck_left is the chunk refused, r->ck_held the
 * budget in use). */
static int
chunked_decode(conn *c)
{
	hreq *r = &c->req;
	size_t max_body = c->srv->opt.max_body;

	for (;;) {
		char *p = c->rx + c->rx_off, *eol;
		size_t avail = c->rx_len - c->rx_off, n;

		switch (r->ck_state) {
		case CK_SIZE: {
			uint64_t size = 0;
			size_t i = 0, digits = 0;
			eol = memmem(p, avail, "\r\n", 2);
			if (eol == NULL)
				return avail > CHUNK_LINE_MAX ? -1 : 0;
			n = (size_t)(eol - p);
			for (; i < n; i++) {
				int d = p[i] >= '0' && p[i] <= '9'   ? p[i] - '0'
				        : p[i] >= 'a' && p[i] <= 'f' ? p[i] - 'a' + 10
				        : p[i] >= 'A' && p[i] <= 'F' ? p[i] - 'A' + 10
				                                     : -1;
				if (d < 0)
					break;
				if (++digits > 15)
					return -1;
				size = size * 16 + (uint64_t)d;
			}
			if (digits == 0)
				return -1;
			while (i < n && (p[i] == ' ' || p[i] == '\t'))
				i++;
			if (i < n && p[i] != ';')
				return -1;
			for (; i < n; i++) {
				unsigned char ch = (unsigned char)p[i];
				if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
					return -1;
			}
			c->rx_off += n + 2;
			if (size == 0) {
				r->ck_state = CK_TRAILER;
			} else {
				if (size > max_body - r->cbody_len)
					return -2;
				r->ck_left = size;
				if (!body_charge(c, size, &r->ck_held))
					return -3;
				r->ck_state = CK_DATA;
			}
			break;
		}
		case CK_DATA:
			n = avail < r->ck_left ? avail : (size_t)r->ck_left;
			if (n == 0)
				return 0;
			cbody_add(r, p, n);
			c->rx_off += n;
			r->ck_left -= n;
			if (r->ck_left == 0)
				r->ck_state = CK_DATA_END;
			break;
		case CK_DATA_END:
			if (avail < 2)
				return 0;
			if (p[0] != '\r' || p[1] != '\n')
				return -1;
			c->rx_off += 2;
			r->ck_state = CK_SIZE;
			break;
		case CK_TRAILER:
			eol = memmem(p, avail, "\r\n", 2);
			if (eol == NULL)
				return avail > c->srv->opt.max_head ? -1 : 0;
			n = (size_t)(eol - p);
			for (size_t i = 0; i < n; i++) {
				unsigned char ch = (unsigned char)p[i];
				if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
					return -1;
			}
			c->rx_off += n + 2;
			if (n == 0) {
				if (r->cbody == NULL)
					cbody_add(r, "", 0);
				return 1;
			}
			r->trailer_len += n + 2;
			if (r->trailer_len > c->srv->opt.max_head)
				return -1;
			break;
		}
	}
}

/* ------------------------------------------------------------------ HTTP */

static void
request_fill(conn *c, loomi_http_request *req, const char *body, size_t body_len)
{
	hreq *r = &c->req;

	memset(req, 0, sizeof *req);
	req->method = r->method;
	req->target = r->target;
	req->path = r->path;
	req->query = r->query;
	req->body = body;
	req->body_len = body_len;
	req->version_minor = r->minor;
	req->peer = c->peer;
	req->peer_uid = c->peer_uid;
	req->tls = c->tls;
	req->priv = r;
}

/* Call the handler for the complete request and queue its answer. */
static void
http_dispatch(conn *c)
{
	loomi_http_server *srv = c->srv;
	hreq *r = &c->req;
	loomi_http_request req;
	loomi_http_response res;
	char *body, saved = 0, *what;
	size_t body_len;
	txbuf *b;

	if (r->chunked) {
		body = r->cbody;
		body_len = r->cbody_len;
	} else {
		/* The body stays in rx; the byte after it becomes a NUL for the
		 * call (rx always keeps one byte free past rx_len). */
		body = c->rx + c->rx_off;
		body_len = (size_t)r->clen;
		saved = body[body_len];
		body[body_len] = '\0';
	}
	request_fill(c, &req, body_len ? body : "", body_len);
	memset(&res, 0, sizeof res);
	srv->handler(srv->arg, &req, &res);
	if (!r->chunked) {
		body[body_len] = saved;
		c->rx_off += body_len;
	}
	what = loomi_strfmt("%s %s", r->method, r->target);
	b = response_build(c, &res, r->is_head, !r->keep_alive, what);
	free(what);
	req_end(c);
	answer_and_park(c, b);
}

static void ws_upgrade(conn *c);

/* On a reserve connection: is its request one the reserve serves?  Then
 * it is answered and the connection closed, so the slot is soon free. */
static bool
reserve_serves(conn *c)
{
	loomi_http_server *srv = c->srv;
	hreq *r = &c->req;

	if (r->upgrade || srv->opt.reserved == NULL ||
	    !srv->opt.reserved(srv->arg, r->method, r->path))
		return false;
	r->keep_alive = false;
	return true;
}

static void
refuse_reserved(conn *c)
{
	loomi_http_server *srv = c->srv;
	const char *what = c->req.upgrade ? "WebSocket upgrades" : "other requests";

	if (c->reserve == RES_CLIENT)
		refuse(c, 503,
		       "%s already has %d connections open, the limit per client address "
		       "(http.max_conns_per_client): past it only health and control requests "
		       "are served, not %s; close some connections and retry, or raise "
		       "http.max_conns_per_client in loomd.conf",
		       c->addr, srv->opt.max_conns_per_client, what);
	else
		refuse(c, 503,
		       "loomd has %d connections open, its limit (http.max_conns): only health "
		       "and control requests are served now, not %s; retry later, or raise "
		       "http.max_conns in loomd.conf",
		       srv->opt.max_conns, what);
}

static void
refuse_budget(conn *c, uint64_t n, size_t held)
{
	loomi_http_server *srv = c->srv;
	bool log;

	pthread_mutex_lock(&srv->mtx);
	log = loomi_mono_ns() - srv->budget_logged > ms_to_ns(1000);
	if (log)
		srv->budget_logged = loomi_mono_ns();
	pthread_mutex_unlock(&srv->mtx);
	if (log)
		LOG_WARN("http: request bodies held use %zu of the %zu bytes of http.body_budget: "
		         "refusing %" PRIu64 " more from %s with 503 (raise http.body_budget or find "
		         "the clients that send so much)",
		         held, srv->opt.body_budget, n, c->peer);
	refuse(c, 503,
	       "a request body of %" PRIu64 " bytes would pass the %zu bytes loomd holds for "
	       "request bodies at once (http.body_budget; %zu in use): retry later, or raise "
	       "http.body_budget in loomd.conf",
	       n, srv->opt.body_budget, held);
}

/* The reader over HTTP: answer the next complete request, or receive. */
static void
http_process(conn *c)
{
	loomi_http_server *srv = c->srv;
	hreq *r = &c->req;
	size_t need = RX_CHUNK;
	int timeout, rc;
	herr e = {0};

	if (!r->head_done) {
		/* Blank lines between requests are ignored (RFC 9112 §2.2). */
		while (c->rx_len - c->rx_off >= 2 && c->rx[c->rx_off] == '\r' &&
		       c->rx[c->rx_off + 1] == '\n')
			c->rx_off += 2;
		if (c->rx_len > c->rx_off && c->req_start == 0)
			c->req_start = loomi_mono_ns();
		if (c->rx_len > c->rx_off) {
			if ((rc = head_parse(c, &e)) < 0) {
				refuse(c, e.status, "%s", e.msg);
				free(e.msg);
				return;
			}
			if (rc > 0) {
				size_t pending = c->rx_len - c->rx_off, held;
				if (c->reserve != RES_NONE && !reserve_serves(c)) {
					refuse_reserved(c);
					return;
				}
				if (r->upgrade) {
					ws_upgrade(c);
					return;
				}
				if (r->clen > srv->opt.max_body) {
					refuse(c, 413,
					       "request body of %" PRIu64 " bytes is over the limit of %zu "
					       "bytes: send a smaller body",
					       r->clen, srv->opt.max_body);
					return;
				}
				if (r->clen > 0 && !body_charge(c, r->clen, &held)) {
					refuse_budget(c, r->clen, held);
					return;
				}
				if (r->expect_continue && pending == 0 && (r->clen > 0 || r->chunked)) {
					static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
					txbuf *b = txbuf_new(loomi_strdup(cont), sizeof cont - 1, NULL, 0, 0);
					pthread_mutex_lock(&c->mtx);
					queue_locked(c, b);
					send_next_locked(c);
					pthread_mutex_unlock(&c->mtx);
				}
			}
		}
	}
	if (r->head_done) {
		if (r->chunked) {
			rc = chunked_decode(c);
			if (rc == -1) {
				refuse(c, 400,
				       "malformed chunk in the request body: send each chunk as its size "
				       "in hex, CRLF, the bytes, CRLF, and end with 0 CRLF CRLF");
				return;
			}
			if (rc == -2) {
				refuse(c, 413,
				       "chunked request body over the limit of %zu bytes: send a smaller "
				       "body",
				       srv->opt.max_body);
				return;
			}
			if (rc == -3) {
				refuse_budget(c, r->ck_left, r->ck_held);
				return;
			}
			if (rc == 1) {
				http_dispatch(c);
				return;
			}
		} else if (c->rx_len - c->rx_off >= r->clen) {
			http_dispatch(c);
			return;
		} else {
			need = (size_t)r->clen - (c->rx_len - c->rx_off);
		}
	}

	/* More bytes are needed. */
	if (c->req_start == 0) {
		timeout = srv->opt.idle_timeout_ms;
	} else {
		timeout = ms_left(c->req_start + ms_to_ns(srv->opt.request_timeout_ms));
		if (timeout == 0) {
			refuse(c, 408,
			       "the request did not arrive within %d ms: send the head and body "
			       "without pausing",
			       srv->opt.request_timeout_ms);
			return;
		}
	}
	recv_start(c, need, timeout);
}

static void
http_read(conn *c, int rv)
{
	if (rv == NNG_ETIMEDOUT && c->req_start != 0) {
		refuse(c, 408,
		       "the request did not arrive within %d ms: send the head and body without "
		       "pausing",
		       c->srv->opt.request_timeout_ms);
		return;
	}
	if (rv != 0) {
		if (c->req_start != 0)
			LOG_DEBUG("http: %s: connection ended mid-request: %s", c->peer,
			          nng_strerror(rv));
		conn_shut(c);
		return;
	}
	http_process(c);
}

/* ------------------------------------------------------------------ lingering close */

static void
linger_next(conn *c)
{
	int left = ms_left(c->linger_deadline);

	c->rx_off = c->rx_len = 0;
	if (left == 0) {
		conn_shut(c);
		return;
	}
	recv_start(c, RX_CHUNK, left < LINGER_IDLE_MS ? left : LINGER_IDLE_MS);
}

/* ------------------------------------------------------------------ WebSocket frames */

static txbuf *
ws_frame_new(int opcode, const void *data, size_t len, unsigned flags)
{
	uint8_t *h = loomi_xmalloc(10);
	size_t hlen = 2;
	char *body = NULL;

	h[0] = (uint8_t)(0x80 | opcode);
	if (len < 126) {
		h[1] = (uint8_t)len;
	} else if (len < 65536) {
		h[1] = 126;
		h[2] = (uint8_t)(len >> 8);
		h[3] = (uint8_t)len;
		hlen = 4;
	} else {
		h[1] = 127;
		for (int i = 0; i < 8; i++)
			h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
		hlen = 10;
	}
	if (len > 0) {
		body = loomi_xmalloc(len);
		memcpy(body, data, len);
	}
	return txbuf_new((char *)h, hlen, body, len, flags);
}

static txbuf *
ws_close_frame(uint16_t code, const char *reason, unsigned flags)
{
	char payload[125];
	size_t n = 0;

	if (code != 0) {
		payload[0] = (char)(code >> 8);
		payload[1] = (char)code;
		n = 2;
		if (reason != NULL) {
			size_t r = strlen(reason);
			if (r > sizeof payload - 2) {
				r = sizeof payload - 2;
				/* Do not cut a UTF-8 sequence in two. */
				while (r > 0 && ((unsigned char)reason[r] & 0xC0) == 0x80)
					r--;
			}
			memcpy(payload + 2, reason, r);
			n += r;
		}
	}
	return ws_frame_new(0x8, payload, n, flags | TX_CONTROL | TX_CLOSE);
}

/* Fail the connection: a close frame with code, then close (RFC 6455
 * §7.1.7).  The reader stops. */
static void
ws_fail(conn *c, uint16_t code, const char *why)
{
	LOG_DEBUG("http: %s: closing the WebSocket with %u: %s", c->peer, code, why);
	pthread_mutex_lock(&c->mtx);
	c->reader = READER_IDLE;
	if (!c->close_queued) {
		c->close_queued = true;
		queue_locked(c, ws_close_frame(code, why, TX_FINAL | TX_LINGER));
		send_next_locked(c);
	} else {
		shut_locked(c);
	}
	pthread_mutex_unlock(&c->mtx);
}

static bool
close_code_ok(unsigned code)
{
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
	       (code >= 3000 && code <= 4999);
}

static void
ws_peer_close(conn *c, const uint8_t *p, size_t len)
{
	unsigned code = 0;

	if (len == 1) {
		ws_fail(c, 1002, "close frame with a 1-byte payload");
		return;
	}
	if (len >= 2) {
		code = (unsigned)p[0] << 8 | p[1];
		if (!close_code_ok(code)) {
			ws_fail(c, 1002, "close frame with an invalid status code");
			return;
		}
		if (!utf8_valid(p + 2, len - 2)) {
			ws_fail(c, 1007, "close reason is not valid UTF-8");
			return;
		}
	}
	pthread_mutex_lock(&c->mtx);
	c->peer_closed = true;
	c->reader = READER_IDLE;
	if (!c->close_queued) {
		c->close_queued = true;
		queue_locked(c, ws_close_frame((uint16_t)code, NULL, 0));
		send_next_locked(c);
	} else if (c->close_sent) {
		shut_locked(c);
	}
	/* else our close is on its way: the send side closes after it. */
	pthread_mutex_unlock(&c->mtx);
}

/* Give a complete message to on_message; false when it failed the
 * connection. */
static bool
ws_deliver(conn *c, char *data, size_t len, bool text)
{
	loomi_http_server *srv = c->srv;
	bool closing;
	char saved;

	if (text && !utf8_valid((const uint8_t *)data, len)) {
		ws_fail(c, 1007, "text message is not valid UTF-8");
		return false;
	}
	pthread_mutex_lock(&c->mtx);
	closing = c->close_queued;
	pthread_mutex_unlock(&c->mtx);
	if (closing || srv->ws.on_message == NULL)
		return true; /* closing: what arrives now is dropped */
	/* A NUL after the message, for handlers that read it as a string
	 * (data lies in rx, which keeps a byte free, or in msg). */
	saved = data[len];
	data[len] = '\0';
	srv->ws.on_message(srv->arg, c, data, len, text);
	data[len] = saved;
	return true;
}

static void
msg_add(conn *c, const char *p, size_t n)
{
	if (c->msg_len + n + 1 > c->msg_cap) {
		size_t cap = c->msg_cap ? c->msg_cap * 2 : 4096;
		while (cap < c->msg_len + n + 1)
			cap *= 2;
		c->msg = buf_resize(c->msg, c->msg_cap, &cap);
		c->msg_cap = cap;
	}
	memcpy(c->msg + c->msg_len, p, n);
	c->msg_len += n;
}

/* Handle the next frame in rx: 1 handled, 0 need more (*need set), -1 the
 * reader stops. */
static int
ws_frame(conn *c, size_t *need)
{
	size_t max = c->srv->opt.max_ws_message;
	uint8_t *p = (uint8_t *)c->rx + c->rx_off, *payload;
	size_t avail = c->rx_len - c->rx_off, hlen = 2;
	uint64_t len;
	bool fin, masked, close_wait;
	int op;

	if (avail < 2) {
		*need = 2 - avail;
		return 0;
	}
	fin = p[0] & 0x80;
	op = p[0] & 0x0f;
	masked = p[1] & 0x80;
	len = p[1] & 0x7f;
	hlen += len == 126 ? 2 : len == 127 ? 8 : 0;
	hlen += masked ? 4 : 0;
	if (avail < hlen) {
		*need = hlen - avail;
		return 0;
	}
	if (len == 126) {
		len = (uint64_t)p[2] << 8 | p[3];
	} else if (len == 127) {
		len = 0;
		for (int i = 0; i < 8; i++)
			len = len << 8 | p[2 + i];
	}
	pthread_mutex_lock(&c->mtx);
	close_wait = c->close_wait;
	pthread_mutex_unlock(&c->mtx);

	if (p[0] & 0x70) {
		ws_fail(c, 1002, "reserved bits set (no extension was agreed)");
		return -1;
	}
	if (!masked) {
		ws_fail(c, 1002, "unmasked frame from the client");
		return -1;
	}
	if (op >= 8) {
		if (op > 0xA) {
			ws_fail(c, 1002, "unknown control opcode");
			return -1;
		}
		if (!fin || len > 125) {
			ws_fail(c, 1002, "fragmented or oversized control frame");
			return -1;
		}
	} else {
		if (op > 2) {
			ws_fail(c, 1002, "unknown data opcode");
			return -1;
		}
		if (op == 0 && !c->msg_active) {
			ws_fail(c, 1002, "continuation frame outside a message");
			return -1;
		}
		if (op != 0 && c->msg_active) {
			ws_fail(c, 1002, "new message inside a fragmented one");
			return -1;
		}
		if (len > max - (op == 0 ? c->msg_len : 0)) {
			char why[96];
			snprintf(why, sizeof why, "message over %zu bytes", max);
			ws_fail(c, 1009, why);
			return -1;
		}
	}
	if (avail - hlen < len) {
		*need = hlen + (size_t)len - avail;
		return 0;
	}
	payload = p + hlen;
	for (size_t i = 0; i < len; i++)
		payload[i] ^= p[hlen - 4 + (i & 3)];
	c->rx_off += hlen + (size_t)len;
	c->ws_heard = loomi_mono_ns(); /* a pong, or anything: the client is there */

	if (close_wait) {
		/* Our close went out: only the answer matters now. */
		if (op == 0x8) {
			pthread_mutex_lock(&c->mtx);
			c->peer_closed = true;
			shut_locked(c);
			pthread_mutex_unlock(&c->mtx);
			return -1;
		}
		return 1;
	}
	switch (op) {
	case 0x8:
		ws_peer_close(c, payload, (size_t)len);
		return -1;
	case 0x9:
		pthread_mutex_lock(&c->mtx);
		if (!c->close_queued) {
			queue_control_locked(c, ws_frame_new(0xA, payload, (size_t)len, TX_CONTROL));
			send_next_locked(c);
		}
		pthread_mutex_unlock(&c->mtx);
		return 1;
	case 0xA:
		return 1;
	case 0x0:
		msg_add(c, (char *)payload, (size_t)len);
		if (!fin)
			return 1;
		c->msg_active = false;
		len = c->msg_len;
		c->msg_len = 0;
		return ws_deliver(c, c->msg, (size_t)len, c->msg_text) ? 1 : -1;
	default:
		if (!fin) {
			c->msg_active = true;
			c->msg_text = op == 1;
			c->msg_len = 0;
			msg_add(c, (char *)payload, (size_t)len);
			return 1;
		}
		return ws_deliver(c, (char *)payload, (size_t)len, op == 1) ? 1 : -1;
	}
}

/* Ping the client when a ping is due; close the connection when no frame
 * came from it for ws_idle_timeout_ms (a client that reads nothing never
 * answers).  Returns the ms until the next of these is due, or -1 after
 * closing. */
static int
ws_keepalive(conn *c)
{
	const loomi_http_options *o = &c->srv->opt;
	uint64_t now = loomi_mono_ns();
	uint64_t idle_at = c->ws_heard + ms_to_ns(o->ws_idle_timeout_ms);
	uint64_t ping_at = c->ws_pinged + ms_to_ns(o->ws_ping_interval_ms);
	int left;

	if (now >= idle_at) {
		char why[100];
		bool stuck;
		snprintf(why, sizeof why, "no answer to pings for %d ms (http.ws_idle_timeout)",
		         o->ws_idle_timeout_ms);
		LOG_INFO("http: %s: closing a WebSocket: %s", c->peer, why);
		pthread_mutex_lock(&c->mtx);
		stuck = c->tx_busy;
		pthread_mutex_unlock(&c->mtx);
		if (stuck) /* it does not read: a close frame would wait too */
			conn_shut(c);
		else
			ws_fail(c, 1008, why);
		return -1;
	}
	if (now >= ping_at) {
		pthread_mutex_lock(&c->mtx);
		if (!c->close_queued) {
			queue_control_locked(c, ws_frame_new(0x9, NULL, 0, TX_CONTROL));
			send_next_locked(c);
		}
		pthread_mutex_unlock(&c->mtx);
		c->ws_pinged = now;
		ping_at = now + ms_to_ns(o->ws_ping_interval_ms);
	}
	left = ms_left(idle_at < ping_at ? idle_at : ping_at);
	return left > 0 ? left : 1;
}

/* The reader after an upgrade: handle the frames that arrived, then
 * receive. */
static void
ws_process(conn *c)
{
	size_t need = 2;
	int timeout, rc;
	bool close_wait;
	uint64_t deadline;

	while ((rc = ws_frame(c, &need)) == 1)
		;
	if (rc < 0)
		return;
	pthread_mutex_lock(&c->mtx);
	close_wait = c->close_wait;
	deadline = c->close_deadline;
	pthread_mutex_unlock(&c->mtx);
	if (close_wait) {
		timeout = ms_left(deadline);
		if (timeout == 0) {
			conn_shut(c);
			return;
		}
	} else if ((timeout = ws_keepalive(c)) < 0) {
		return;
	}
	rx_prepare(c, need);
	pthread_mutex_lock(&c->mtx);
	/* Our close may have gone out meanwhile: wait for the answer only
	 * until its deadline. */
	if (c->close_wait && !close_wait && ms_left(c->close_deadline) + 1 < timeout)
		timeout = ms_left(c->close_deadline) + 1;
	recv_start_locked(c, timeout);
	pthread_mutex_unlock(&c->mtx);
}

static void
ws_read(conn *c, int rv)
{
	if (rv == NNG_ETIMEDOUT) {
		/* Woken to wait for the client's close with a deadline. */
		bool close_wait;
		uint64_t deadline;
		pthread_mutex_lock(&c->mtx);
		close_wait = c->close_wait;
		deadline = c->close_deadline;
		pthread_mutex_unlock(&c->mtx);
		if (!close_wait || ms_left(deadline) > 0) {
			ws_process(c);
			return;
		}
	}
	if (rv != 0) {
		conn_shut(c);
		return;
	}
	ws_process(c);
}

static void
ws_upgrade(conn *c)
{
	loomi_http_server *srv = c->srv;
	hreq *r = &c->req;
	const char *key = hreq_header(r, "Sec-WebSocket-Key");
	const char *ver = hreq_header(r, "Sec-WebSocket-Version");
	loomi_http_request req;
	loomi_http_response res;
	char accept[29], *what;
	sbuf h = {0};
	txbuf *b;
	int rv = 0;

	if (r->minor < 1) {
		refuse(c, 400, "a WebSocket upgrade needs HTTP/1.1");
		return;
	}
	if (r->clen > 0 || r->chunked) {
		refuse(c, 400, "a WebSocket upgrade request has no body: send it without one");
		return;
	}
	if (ver == NULL || strcmp(ver, "13") != 0) {
		refuse(c, 426, "WebSocket version \"%s\" is not supported: send version 13",
		       ver ? ver : "");
		return;
	}
	if (key == NULL || !ws_key_ok(key)) {
		refuse(c, 400,
		       "Sec-WebSocket-Key \"%.40s\" is not 16 bytes in base64: send 24 characters "
		       "ending in ==",
		       key ? key : "");
		return;
	}
	ws_accept_key(key, accept);
	what = loomi_strfmt("%s %s", r->method, r->target);

	request_fill(c, &req, "", 0);
	memset(&res, 0, sizeof res);
	pthread_mutex_lock(&c->mtx);
	c->ws_opening = true;
	pthread_mutex_unlock(&c->mtx);
	if (srv->ws.on_open)
		rv = srv->ws.on_open(srv->arg, c, &req, &res);
	if (rv != 0) {
		pthread_mutex_lock(&c->mtx);
		c->ws_opening = false;
		c->close_queued = false;
		queue_drop_all_locked(c);
		pthread_mutex_unlock(&c->mtx);
		res.status = rv;
		if (res.body == NULL) {
			char *msg = loomi_strfmt("the WebSocket upgrade for %s was refused", r->target);
			res.body = error_json(rv, msg, &res.body_len);
			free(msg);
		}
		b = response_build(c, &res, false, true, what);
		b->flags |= TX_LINGER;
		free(what);
		req_end(c);
		answer_and_park(c, b);
		return;
	}

	sb_addf(&h,
	        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	        "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n",
	        accept);
	for (int i = 0; i < res.n_headers && i < (int)(sizeof res.headers / sizeof res.headers[0]);
	     i++) {
		const char *name = res.headers[i].name;
		char *value = res.headers[i].value;
		if (name != NULL && is_token(name) && value != NULL && strpbrk(value, "\r\n") == NULL)
			sb_addf(&h, "%s: %s\r\n", name, value);
		free(value);
	}
	free(res.body);
	sb_add(&h, "\r\n", 2);
	LOG_DEBUG("http: %s %s -> 101 (WebSocket)", c->peer, what);
	free(what);
	req_end(c);

	pthread_mutex_lock(&c->mtx);
	b = txbuf_new(h.p, h.len, NULL, 0, TX_CONTROL);
	b->next = c->tx_q; /* before anything on_open sent */
	if (c->tx_q == NULL)
		c->tx_tail = &b->next;
	c->tx_q = b;
	c->ws_opening = false;
	c->ws_open = true;
	c->ws_mode = true;
	send_next_locked(c);
	pthread_mutex_unlock(&c->mtx);
	c->ws_heard = c->ws_pinged = loomi_mono_ns();
	ws_process(c);
}

/* ------------------------------------------------------------------ callbacks */

static void
reader_resume(conn *c)
{
	bool lingering, ws;

	pthread_mutex_lock(&c->mtx);
	lingering = c->lingering;
	ws = c->ws_mode;
	pthread_mutex_unlock(&c->mtx);
	if (lingering)
		linger_next(c);
	else if (ws)
		ws_process(c);
	else
		http_process(c);
}

static void
rx_cb(void *arg)
{
	conn *c = arg;
	int rv = nng_aio_result(c->rx_aio);
	size_t n = nng_aio_count(c->rx_aio);
	bool lingering, ws;

	pthread_mutex_lock(&c->mtx);
	c->rx_pending = false;
	lingering = c->lingering;
	ws = c->ws_mode;
	pthread_mutex_unlock(&c->mtx);
	if (rv == 0 && n == 0)
		rv = NNG_ECONNSHUT;
	if (rv == 0)
		c->rx_len += n;
	if (lingering) {
		if (rv == 0)
			linger_next(c);
		else
			conn_shut(c);
	} else if (ws) {
		ws_read(c, rv);
	} else {
		http_read(c, rv);
	}
	op_done(c);
}

static void
tx_cb(void *arg)
{
	conn *c = arg;
	int rv = nng_aio_result(c->tx_aio);
	size_t n = nng_aio_count(c->tx_aio);
	bool resume = false;
	unsigned flags;
	txbuf *b;

	pthread_mutex_lock(&c->mtx);
	b = c->tx_cur;
	if (rv != 0) {
		LOG_DEBUG("http: %s: sending failed: %s", c->peer, nng_strerror(rv));
		c->tx_busy = false;
		shut_locked(c);
		goto out;
	}
	b->sent += n;
	if (b->sent < b->head_len + b->body_len) {
		if (c->shut)
			c->tx_busy = false;
		else
			tx_submit_locked(c);
		goto out;
	}
	c->tx_cur = NULL;
	c->tx_busy = false;
	flags = b->flags;
	txbuf_free(b);
	if (flags & TX_CLOSE)
		c->close_sent = true;

	if (flags & TX_FINAL) {
		/* Over TLS every close lingers: NNG's TLS stream reports a send
		 * done once mbedTLS has the bytes, before they reach the socket,
		 * and closing then can lose the end of the response (the client
		 * sees "Connection shutdown").  Waiting for the client to close
		 * first, or for the linger deadline, lets them drain. */
		if ((flags & TX_LINGER || c->tls) && !c->shut) {
			c->lingering = true;
			c->linger_deadline = loomi_mono_ns() + ms_to_ns(LINGER_TOTAL_MS);
			if (c->reader != READER_ACTIVE) {
				c->reader = READER_ACTIVE;
				resume = true;
			}
		} else {
			shut_locked(c);
		}
	} else if (flags & TX_CLOSE) {
		if (c->peer_closed) {
			shut_locked(c);
		} else {
			/* Wait for the client's close, but not for ever: a pending
			 * receive is woken to take the deadline. */
			int wait = c->srv->opt.request_timeout_ms < WS_CLOSE_WAIT_MS
			                   ? c->srv->opt.request_timeout_ms
			                   : WS_CLOSE_WAIT_MS;
			c->close_wait = true;
			c->close_deadline = loomi_mono_ns() + ms_to_ns(wait);
			if (c->reader != READER_ACTIVE) {
				c->reader = READER_ACTIVE;
				resume = true;
			} else if (c->rx_pending) {
				nng_aio_abort(c->rx_aio, NNG_ETIMEDOUT);
			}
		}
	} else {
		send_next_locked(c);
		if (!c->tx_busy && c->reader == READER_PARKED) {
			c->reader = READER_ACTIVE;
			resume = true;
		}
	}
out:
	pthread_mutex_unlock(&c->mtx);
	if (resume)
		reader_resume(c);
	op_done(c);
}

/* ------------------------------------------------------------------ accepting */

/* Who is at the other end of a Unix-socket connection: the kernel's
 * SO_PEERCRED, read by NNG's ipc stream (NNG_OPT_IPC_PEER_UID), once, when
 * the connection is accepted.  A peer whose uid cannot be read is served
 * as an unknown one (peer_uid -1, like a TCP client). */
static void
unix_peer(conn *c, nng_stream *s)
{
	uint64_t uid = 0, pid = 0;
	int rv;

	if ((rv = nng_stream_get_uint64(s, NNG_OPT_IPC_PEER_UID, &uid)) != 0 || uid > INT32_MAX) {
		LOG_WARN("http: cannot read the uid of a client of the Unix socket (%s); it is served "
		         "as an unknown client",
		         rv ? nng_strerror(rv) : "out of range");
		c->peer_uid = -1;
		snprintf(c->peer, sizeof c->peer, "unix:unknown");
		snprintf(c->addr, sizeof c->addr, "unix:unknown");
		return;
	}
	c->peer_uid = (int64_t)uid;
	if (nng_stream_get_uint64(s, NNG_OPT_IPC_PEER_PID, &pid) == 0 && pid > 0)
		snprintf(c->peer, sizeof c->peer, "unix:uid=%" PRIu64 ",pid=%" PRIu64, uid, pid);
	else
		snprintf(c->peer, sizeof c->peer, "unix:uid=%" PRIu64, uid);
	/* the per-client cap counts a uid's connections */
	snprintf(c->addr, sizeof c->addr, "uid=%" PRIu64, uid);
}

static void
conn_open(listener *ls, nng_stream *s)
{
	loomi_http_server *srv = ls->srv;
	conn *c = loomi_xcalloc(1, sizeof *c);
	nng_sockaddr sa;
	bool refuse_it, drop;
	int rv, mine = 0;
	char *colon;

	c->srv = srv;
	c->stream = s;
	c->refs = 1;
	c->tx_tail = &c->tx_q;
	c->ws_queue = srv->opt.ws_queue;
	/* Counted as a running callback until its first operation is under
	 * way (op_done below), as the callbacks are. */
	c->ops = 1;
	atomic_init(&c->dropped, 0);
	pthread_mutex_init(&c->mtx, NULL);
	if ((rv = nng_aio_alloc(&c->rx_aio, rx_cb, c)) != 0 ||
	    (rv = nng_aio_alloc(&c->tx_aio, tx_cb, c)) != 0) {
		LOG_ERROR("http: cannot set up a connection: %s", nng_strerror(rv));
		nng_aio_free(c->rx_aio);
		nng_stream_free(s);
		conn_free(c);
		return;
	}
	c->tls = ls->kind == LISTEN_TLS;
	c->peer_uid = -1;
	if (ls->kind == LISTEN_UNIX) {
		unix_peer(c, s);
	} else {
		if (nng_stream_get_addr(s, NNG_OPT_REMADDR, &sa) == 0)
			format_addr(&sa, c->peer, sizeof c->peer, false);
		else
			snprintf(c->peer, sizeof c->peer, "unknown");
		/* the client's address: the peer without its port ("[::1]" kept) */
		snprintf(c->addr, sizeof c->addr, "%s", c->peer);
		if ((colon = strrchr(c->addr, ':')) != NULL && c->addr[0] != '[')
			*colon = '\0';
		else if ((colon = strstr(c->addr, "]:")) != NULL)
			colon[1] = '\0';
		(void)nng_stream_set_bool(s, NNG_OPT_TCP_NODELAY, true);
		(void)nng_stream_set_bool(s, NNG_OPT_TCP_KEEPALIVE, true);
	}

	/* An ordinary slot while there is one and the client has fewer than
	 * its share; else a reserve slot (health and control only); else 503. */
	pthread_mutex_lock(&srv->mtx);
	for (conn *o = srv->conns; o != NULL; o = o->next) {
		if (!o->refused && o->reserve == RES_NONE && strcmp(o->addr, c->addr) == 0)
			mine++;
	}
	if (srv->nserved < srv->opt.max_conns && mine < srv->opt.max_conns_per_client)
		c->reserve = RES_NONE;
	else
		c->reserve = srv->nserved >= srv->opt.max_conns ? RES_POOL : RES_CLIENT;
	refuse_it = c->reserve != RES_NONE && srv->nreserve >= srv->opt.reserve;
	drop = srv->stopping ||
	       (refuse_it && srv->nconns - srv->nserved - srv->nreserve >= REFUSED_MAX);
	if (!drop) {
		c->next = srv->conns;
		if (srv->conns)
			srv->conns->prev = c;
		srv->conns = c;
		srv->nconns++;
		if (refuse_it)
			c->refused = true;
		else if (c->reserve != RES_NONE)
			srv->nreserve++;
		else
			srv->nserved++;
	}
	if (c->reserve != RES_NONE && !drop &&
	    loomi_mono_ns() - srv->refusal_logged > ms_to_ns(1000)) {
		srv->refusal_logged = loomi_mono_ns();
		if (c->reserve == RES_CLIENT)
			LOG_WARN("http: %s has %d connections open, http.max_conns_per_client: "
			         "serving it only health and control requests%s (find the client "
			         "that holds so many, or raise the limit)",
			         c->addr, mine, refuse_it ? ", and the reserve is full" : "");
		else
			LOG_WARN("http: %d connections open, http.max_conns: serving %s only health "
			         "and control requests%s (raise the limit or find the clients that "
			         "hold so many)",
			         srv->opt.max_conns, c->peer, refuse_it ? ", and the reserve is full" : "");
	}
	pthread_mutex_unlock(&srv->mtx);
	if (drop) {
		nng_aio_free(c->rx_aio);
		nng_aio_free(c->tx_aio);
		nng_stream_free(s);
		conn_free(c);
		return;
	}
	if (refuse_it) {
		refuse(c, 503,
		       "too many connections: %s, and the %d kept for health and control "
		       "requests are taken: retry later, or raise %s in loomd.conf",
		       c->reserve == RES_CLIENT ? "this client has its share of "
		                                  "http.max_conns_per_client"
		                                : "loomd serves its limit of http.max_conns",
		       srv->opt.reserve,
		       c->reserve == RES_CLIENT ? "http.max_conns_per_client" : "http.max_conns");
	} else if (c->reserve != RES_NONE) {
		/* a reserve slot is held only for one prompt request */
		c->req_start = loomi_mono_ns();
		recv_start(c, RX_CHUNK, srv->opt.request_timeout_ms);
	} else {
		recv_start(c, RX_CHUNK, srv->opt.idle_timeout_ms);
	}
	op_done(c);
}

static void
accept_cb(void *arg)
{
	listener *ls = arg;
	loomi_http_server *srv = ls->srv;
	int rv = nng_aio_result(ls->aio);
	bool stopping;

	if (ls->backoff) {
		ls->backoff = false;
	} else if (rv == 0) {
		conn_open(ls, nng_aio_get_output(ls->aio, 0));
	} else if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
		return;
	} else if (rv == NNG_ECONNABORTED || rv == NNG_ECONNRESET || rv == NNG_ECRYPTO ||
	           rv == NNG_EPEERAUTH) {
		LOG_DEBUG("http: a client of %s left before its connection was accepted: %s", ls->name,
		          nng_strerror(rv));
	} else {
		LOG_WARN("http: accepting a connection on %s failed: %s", ls->name, nng_strerror(rv));
		ls->backoff = true;
		nng_sleep_aio(100, ls->aio);
		return;
	}
	pthread_mutex_lock(&srv->mtx);
	stopping = srv->stopping;
	pthread_mutex_unlock(&srv->mtx);
	if (!stopping)
		nng_stream_listener_accept(ls->l, ls->aio);
}

static void
listener_close(listener *ls)
{
	if (ls == NULL || ls->l == NULL)
		return;
	nng_stream_listener_close(ls->l);
	nng_aio_stop(ls->aio);
}

static void
listener_free(listener *ls)
{
	if (ls == NULL)
		return;
	nng_aio_free(ls->aio);
	nng_stream_listener_free(ls->l);
	free(ls->name);
	ls->aio = NULL;
	ls->l = NULL;
	ls->name = NULL;
}

/* ------------------------------------------------------------------ TLS */

/* What OpenSSL last said was wrong, for a message. */
static const char *
ssl_reason(const char *otherwise)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	return r ? r : otherwise;
}

/* loomd has no way to ask for a passphrase: an encrypted key is refused. */
static int
no_passphrase(char *buf, int size, int rwflag, void *arg)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	*(bool *)arg = true;
	return -1;
}

/* Read a PEM file named by setting; 0, or LOOM_EIO with *err naming both. */
static int
pem_read(const char *setting, const char *file, char **data, size_t *len, char **err)
{
	int e;

	if ((e = loomi_read_file(file, data, len)) != 0) {
		*err = loomi_strfmt("%s \"%s\": cannot read it: %s%s", setting, file, strerror(e),
		                    e == EACCES ? "; make it readable by loomd's user"
		                    : e == ENOENT ? "; give the path of an existing PEM file"
		                                  : "");
		return LOOM_EIO;
	}
	return 0;
}

/* The certificate and key are checked with OpenSSL's libcrypto before NNG
 * (mbedTLS) is given them, for messages that say which file is wrong and
 * how: NNG says only "cryptographic error", and mbedTLS never checks that
 * the key belongs to the certificate (a mismatched pair would start, and
 * fail every handshake). */
static int
tls_check(const char *cert_file, const char *cert, size_t clen, const char *key_file,
          const char *key, size_t klen, char **err)
{
	BIO *b = NULL;
	X509 *x = NULL;
	EVP_PKEY *pk = NULL;
	bool asked = false;
	struct stat st;
	int rv = LOOM_EINVAL;

	if (clen > INT32_MAX || klen > INT32_MAX) {
		*err = loomi_strfmt("api.tls: \"%s\" or \"%s\" is far too large for a PEM file",
		                    cert_file, key_file);
		return LOOM_EINVAL;
	}
	ERR_clear_error();
	if ((b = BIO_new_mem_buf(cert, (int)clen)) == NULL ||
	    (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) == NULL) {
		*err = loomi_strfmt("api.tls.certificate \"%s\": no certificate in it (%s): give the "
		                    "server's certificate in PEM form (\"-----BEGIN CERTIFICATE-----\"), "
		                    "then any intermediate ones",
		                    cert_file, ssl_reason("not PEM"));
		goto out;
	}
	BIO_free(b);
	if ((b = BIO_new_mem_buf(key, (int)klen)) == NULL ||
	    (pk = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, &asked)) == NULL) {
		if (asked)
			*err = loomi_strfmt("api.tls.key \"%s\": the key is encrypted with a passphrase, "
			                    "which loomd cannot ask for: decrypt it (openssl pkey -in KEY "
			                    "-out PLAIN) and let only loomd's user read it",
			                    key_file);
		else
			*err = loomi_strfmt("api.tls.key \"%s\": no private key in it (%s): give the "
			                    "certificate's private key in PEM form (\"-----BEGIN PRIVATE "
			                    "KEY-----\")",
			                    key_file, ssl_reason("not PEM"));
		goto out;
	}
	if (X509_check_private_key(x, pk) != 1) {
		ERR_clear_error();
		*err = loomi_strfmt("api.tls.key \"%s\" is not the private key of the certificate "
		                    "\"%s\": give the key the certificate was made for",
		                    key_file, cert_file);
		goto out;
	}
	if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
		LOG_WARN("http: the certificate \"%s\" has expired: clients will refuse it; renew it",
		         cert_file);
	else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
		LOG_WARN("http: the certificate \"%s\" is not valid yet: clients will refuse it until "
		         "then (is the clock right?)",
		         cert_file);
	if (stat(key_file, &st) == 0 && (st.st_mode & 077) != 0)
		LOG_WARN("http: the private key \"%s\" can be read by other users (mode %04o): "
		         "chmod 600 it",
		         key_file, (unsigned)(st.st_mode & 07777));
	rv = 0;
out:
	ERR_clear_error();
	EVP_PKEY_free(pk);
	X509_free(x);
	BIO_free(b);
	return rv;
}

/* A server TLS configuration from the certificate and key files. */
static int
tls_config(const char *cert_file, const char *key_file, nng_tls_config **out, char **err)
{
	char *cert = NULL, *key = NULL;
	size_t clen = 0, klen = 0;
	nng_tls_config *cfg = NULL;
	int rv;

	*out = NULL;
	if ((rv = pem_read("api.tls.certificate", cert_file, &cert, &clen, err)) != 0 ||
	    (rv = pem_read("api.tls.key", key_file, &key, &klen, err)) != 0 ||
	    (rv = tls_check(cert_file, cert, clen, key_file, key, klen, err)) != 0)
		goto out;
	if ((rv = nng_tls_config_alloc(&cfg, NNG_TLS_MODE_SERVER)) != 0) {
		*err = loomi_strfmt("api.tls: cannot set up TLS: %s%s", nng_strerror(rv),
		                    rv == NNG_ENOTSUP ? " (this NNG was built without TLS)" : "");
		rv = LOOM_EINVAL;
		goto out;
	}
	if ((rv = nng_tls_config_version(cfg, NNG_TLS_1_2, NNG_TLS_1_3)) != 0 ||
	    (rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_NONE)) != 0 ||
	    (rv = nng_tls_config_own_cert(cfg, cert, key, NULL)) != 0) {
		*err = loomi_strfmt("api.tls: NNG's TLS (%s) refused the certificate \"%s\" with the "
		                    "key \"%s\": %s; OpenSSL reads them, so the key's type may be one "
		                    "%s does not support (use an RSA or ECDSA P-256/P-384 key)",
		                    nng_tls_engine_name(), cert_file, key_file, nng_strerror(rv),
		                    nng_tls_engine_name());
		nng_tls_config_free(cfg);
		cfg = NULL;
		rv = LOOM_EINVAL;
		goto out;
	}
	*out = cfg;
out:
	if (key) {
		/* the key's bytes do not linger in freed memory */
		volatile char *p = key;
		for (size_t i = 0; i < klen; i++)
			p[i] = 0;
	}
	free(key);
	free(cert);
	return rv;
}

int
loomi_http_tls_check(const char *certificate, const char *key, char **err)
{
	nng_tls_config *cfg = NULL;
	int rv;

	if ((rv = tls_config(certificate, key, &cfg, err)) == 0)
		nng_tls_config_free(cfg);
	return rv;
}

/* ------------------------------------------------------------------ start / stop */

/* "host:port" as an NNG URL ("*" for every address). */
static char *
listen_url(const char *listen, const char *scheme)
{
	const char *port, *host_end;
	size_t n;

	if (listen[0] == '[') {
		host_end = strchr(listen, ']');
		if (host_end == NULL || host_end[1] != ':')
			return NULL;
		host_end++;
		port = host_end + 1;
	} else {
		host_end = strrchr(listen, ':');
		if (host_end == NULL || memchr(listen, ':', (size_t)(host_end - listen)) != NULL)
			return NULL;
		port = host_end + 1;
	}
	n = strlen(port);
	if (n == 0 || n > 5 || strspn(port, "0123456789") != n || atoi(port) > 65535)
		return NULL;
	if (host_end - listen == 1 && listen[0] == '*')
		return loomi_strfmt("%s://:%s", scheme, port);
	return loomi_strfmt("%s://%.*s:%s", scheme, (int)(host_end - listen), listen, port);
}

int
loomi_http_start(loomi_http_server **out, const char *listen, const loomi_http_options *opts,
                 loomi_http_handler_fn handler, const loomi_ws_handlers *ws, void *arg,
                 char **err)
{
	loomi_http_server *srv;
	pthread_condattr_t ca;
	nng_tls_config *tls = NULL;
	char *url, addr[96];
	nng_sockaddr sa;
	bool use_tls;
	int rv, code;

	*out = NULL;
	if (listen == NULL || handler == NULL) {
		*err = loomi_strdup("loomi_http_start: no listen address or handler");
		return LOOM_EINVAL;
	}
	use_tls = opts && (opts->tls_certificate || opts->tls_key);
	if (use_tls && !(opts->tls_certificate && opts->tls_key)) {
		*err = loomi_strdup("api.tls: give both certificate and key, or neither");
		return LOOM_EINVAL;
	}
	if ((url = listen_url(listen, use_tls ? "tls+tcp" : "tcp")) == NULL) {
		*err = loomi_strfmt("listen \"%s\": expected HOST:PORT, e.g. 127.0.0.1:8080, "
		                    "[::1]:8080 or *:8080",
		                    listen);
		return LOOM_EINVAL;
	}
	srv = loomi_xcalloc(1, sizeof *srv);
	if (opts)
		srv->opt = *opts;
	if (srv->opt.max_head == 0)
		srv->opt.max_head = DEFAULT_MAX_HEAD;
	if (srv->opt.max_body == 0)
		srv->opt.max_body = DEFAULT_MAX_BODY;
	if (srv->opt.max_conns <= 0)
		srv->opt.max_conns = DEFAULT_MAX_CONNS;
	if (srv->opt.request_timeout_ms <= 0)
		srv->opt.request_timeout_ms = DEFAULT_REQUEST_TIMEOUT_MS;
	if (srv->opt.idle_timeout_ms <= 0)
		srv->opt.idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
	if (srv->opt.max_ws_message == 0)
		srv->opt.max_ws_message = DEFAULT_MAX_WS_MESSAGE;
	if (srv->opt.ws_queue == 0)
		srv->opt.ws_queue = DEFAULT_WS_QUEUE;
	if (srv->opt.body_budget == 0)
		srv->opt.body_budget = DEFAULT_BODY_BUDGET;
	if (srv->opt.body_budget < srv->opt.max_body)
		srv->opt.body_budget = srv->opt.max_body; /* a body allowed alone fits */
	if (srv->opt.max_conns_per_client <= 0)
		srv->opt.max_conns_per_client = DEFAULT_MAX_CONNS_PER_CLIENT;
	if (srv->opt.reserve <= 0)
		srv->opt.reserve = DEFAULT_RESERVE;
	if (srv->opt.ws_ping_interval_ms <= 0)
		srv->opt.ws_ping_interval_ms = DEFAULT_WS_PING_INTERVAL_MS;
	if (srv->opt.ws_idle_timeout_ms <= 0)
		srv->opt.ws_idle_timeout_ms = DEFAULT_WS_IDLE_TIMEOUT_MS;
	srv->handler = handler;
	if (ws) {
		srv->ws = *ws;
		srv->has_ws = true;
	}
	srv->arg = arg;
	srv->tcp.srv = srv;
	srv->tcp.kind = use_tls ? LISTEN_TLS : LISTEN_TCP;
	/* the files' names are not kept: the options are the caller's */
	srv->opt.tls_certificate = srv->opt.tls_key = NULL;

	if (use_tls && (code = tls_config(opts->tls_certificate, opts->tls_key, &tls, err)) != 0)
		goto fail;
	if ((rv = nng_stream_listener_alloc(&srv->tcp.l, url)) != 0) {
		*err = loomi_strfmt("listen \"%s\": %s: give an address this host has, as HOST:PORT",
		                    listen, nng_strerror(rv));
		code = LOOM_EINVAL;
		goto fail;
	}
	if (tls && (rv = nng_stream_listener_set_ptr(srv->tcp.l, NNG_OPT_TLS_CONFIG, tls)) != 0) {
		*err = loomi_strfmt("listen \"%s\": cannot use TLS there: %s", listen, nng_strerror(rv));
		code = LOOM_EINVAL;
		goto fail;
	}
	if ((rv = nng_stream_listener_listen(srv->tcp.l)) != 0) {
		*err = loomi_strfmt("cannot listen on %s: %s%s", listen, nng_strerror(rv),
		                    rv == NNG_EADDRINUSE
		                        ? "; another process holds that port: stop it or choose "
		                          "another with --listen"
		                        : "");
		code = rv == NNG_EADDRINUSE ? LOOM_EBUSY : rv == NNG_EPERM ? LOOM_EPERM : LOOM_EIO;
		goto fail;
	}
	if (nng_stream_listener_get_addr(srv->tcp.l, NNG_OPT_LOCADDR, &sa) != 0) {
		*err = loomi_strfmt("listen \"%s\": cannot read the bound address", listen);
		code = LOOM_EIO;
		goto fail;
	}
	if (sa.s_family == NNG_AF_INET && sa.s_in.sa_port == 0) {
		int port = 0;
		if (nng_stream_listener_get_int(srv->tcp.l, NNG_OPT_TCP_BOUND_PORT, &port) == 0)
			sa.s_in.sa_port = htons((uint16_t)port);
	} else if (sa.s_family == NNG_AF_INET6 && sa.s_in6.sa_port == 0) {
		int port = 0;
		if (nng_stream_listener_get_int(srv->tcp.l, NNG_OPT_TCP_BOUND_PORT, &port) == 0)
			sa.s_in6.sa_port = htons((uint16_t)port);
	}
	format_addr(&sa, addr, sizeof addr, true);
	srv->url = loomi_strfmt("%s://%s", use_tls ? "https" : "http", addr);
	srv->tcp.name = loomi_strdup(srv->url);
	if ((rv = nng_aio_alloc(&srv->tcp.aio, accept_cb, &srv->tcp)) != 0) {
		*err = loomi_strfmt("listen \"%s\": %s", listen, nng_strerror(rv));
		code = LOOM_ENOMEM;
		goto fail;
	}
	pthread_mutex_init(&srv->mtx, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&srv->done_cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&srv->reap_cv, NULL);
	if ((rv = pthread_create(&srv->reaper, NULL, reaper_main, srv)) != 0) {
		*err = loomi_strfmt("listen \"%s\": cannot start a thread: %s", listen, strerror(rv));
		pthread_cond_destroy(&srv->done_cv);
		pthread_cond_destroy(&srv->reap_cv);
		pthread_mutex_destroy(&srv->mtx);
		code = LOOM_EIO;
		goto fail;
	}
	free(url);
	if (tls)
		nng_tls_config_free(tls); /* the listener holds it */
	nng_stream_listener_accept(srv->tcp.l, srv->tcp.aio);
	*out = srv;
	return 0;
fail:
	listener_free(&srv->tcp);
	if (tls)
		nng_tls_config_free(tls);
	free(srv->url);
	free(srv);
	free(url);
	return code;
}

/* Make path free for a new socket: nothing there, or a socket on which
 * nobody accepts any more (a crashed loomd's), which is removed.  A live
 * socket, or anything that is not a socket, is left alone and refused.
 * (NNG's ipc listener would itself remove whatever refuses a connection
 * at the path, a regular file included, so this runs first.) */
static int
socket_take_over(const char *path, char **err)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd, e;

	if (lstat(path, &st) != 0) {
		if (errno == ENOENT)
			return 0;
		*err = loomi_strfmt("api.socket \"%s\": %s", path, strerror(errno));
		return LOOM_EIO;
	}
	if (!S_ISSOCK(st.st_mode)) {
		*err = loomi_strfmt("api.socket \"%s\" exists and is not a socket: move it away, or "
		                    "give another path as api.socket in loomd.conf",
		                    path);
		return LOOM_EEXIST;
	}
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
		*err = loomi_strfmt("api.socket \"%s\": cannot make a socket: %s", path, strerror(errno));
		return LOOM_EIO;
	}
	/* non-blocking: a listener whose backlog is full answers EAGAIN, and
	 * is alive */
	e = connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0 ? 0 : errno;
	close(fd);
	if (e == 0 || e == EAGAIN || e == EINPROGRESS) {
		*err = loomi_strfmt("api.socket \"%s\": another process (another loomd?) accepts "
		                    "connections on it: stop it, or give this loomd another api.socket",
		                    path);
		return LOOM_EBUSY;
	}
	if (e != ECONNREFUSED) {
		*err = loomi_strfmt("api.socket \"%s\": cannot tell whether it is in use: %s", path,
		                    strerror(e));
		return LOOM_EIO;
	}
	if (unlink(path) != 0 && errno != ENOENT) {
		*err = loomi_strfmt("api.socket \"%s\": cannot remove the stale socket: %s", path,
		                    strerror(errno));
		return LOOM_EIO;
	}
	LOG_INFO("http: removed the stale socket %s (left by a loomd that did not stop cleanly)",
	         path);
	return 0;
}

int
loomi_http_listen_unix(loomi_http_server *srv, const char *path, int mode, char **err)
{
	struct sockaddr_un sun;
	struct stat st;
	listener *ls;
	char *url;
	int rv, code;

	if (path == NULL || path[0] != '/') {
		*err = loomi_strfmt("api.socket \"%s\": give an absolute path", path ? path : "");
		return LOOM_EINVAL;
	}
	if (strlen(path) >= sizeof sun.sun_path) {
		*err = loomi_strfmt("api.socket \"%s\" is %zu bytes long, over the %zu a Unix socket's "
		                    "path may have; choose a shorter path",
		                    path, strlen(path), sizeof sun.sun_path - 1);
		return LOOM_EINVAL;
	}
	if (mode < 0 || mode > 0777) {
		*err = loomi_strfmt("api.socket_mode: %o is not a file mode", (unsigned)mode);
		return LOOM_EINVAL;
	}
	pthread_mutex_lock(&srv->mtx);
	rv = srv->unix_sock != NULL;
	pthread_mutex_unlock(&srv->mtx);
	if (rv) {
		*err = loomi_strdup("the API already has a Unix socket");
		return LOOM_EEXIST;
	}
	if ((code = socket_take_over(path, err)) != 0)
		return code;

	ls = loomi_xcalloc(1, sizeof *ls);
	ls->srv = srv;
	ls->kind = LISTEN_UNIX;
	ls->name = loomi_strdup(path);
	url = loomi_strfmt("ipc://%s", path);
	/* The mode: NNG binds, chmods the file to NNG_OPT_IPC_PERMISSIONS, and
	 * only then listens.  Before listen() every connect() is refused, so
	 * no client can get in through the mode the umask gave the file at
	 * bind(); the umask itself is left alone (it is the whole process's,
	 * and other threads create files).  The mode is checked afterwards all
	 * the same. */
	if ((rv = nng_stream_listener_alloc(&ls->l, url)) != 0 ||
	    (rv = nng_stream_listener_set_int(ls->l, NNG_OPT_IPC_PERMISSIONS, mode)) != 0) {
		*err = loomi_strfmt("api.socket \"%s\": %s", path, nng_strerror(rv));
		code = LOOM_EINVAL;
		goto fail;
	}
	if ((rv = nng_stream_listener_listen(ls->l)) != 0) {
		*err = loomi_strfmt("api.socket \"%s\": cannot listen there: %s%s", path,
		                    nng_strerror(rv),
		                    rv == NNG_EPERM ? "; give loomd's user write access to its directory"
		                    : rv == NNG_EADDRINUSE ? "; another process holds it"
		                                           : "");
		code = rv == NNG_EADDRINUSE ? LOOM_EBUSY : rv == NNG_EPERM ? LOOM_EPERM : LOOM_EIO;
		goto fail;
	}
	if (stat(path, &st) != 0)
		st.st_mode = 0;
	if ((st.st_mode & 07777) != (mode_t)mode) {
		*err = loomi_strfmt("api.socket \"%s\": the socket's mode is %04o, not the %04o of "
		                    "api.socket_mode",
		                    path, (unsigned)(st.st_mode & 07777), (unsigned)mode);
		code = LOOM_EIO;
		goto fail;
	}
	if ((rv = nng_aio_alloc(&ls->aio, accept_cb, ls)) != 0) {
		*err = loomi_strfmt("api.socket \"%s\": %s", path, nng_strerror(rv));
		code = LOOM_ENOMEM;
		goto fail;
	}
	free(url);
	pthread_mutex_lock(&srv->mtx);
	srv->unix_sock = ls;
	pthread_mutex_unlock(&srv->mtx);
	nng_stream_listener_accept(ls->l, ls->aio);
	return 0;
fail:
	/* closing a listener that listened removes its file */
	listener_free(ls);
	free(ls);
	free(url);
	return code;
}

const char *
loomi_http_url(const loomi_http_server *srv)
{
	return srv ? srv->url : NULL;
}

void
loomi_http_stop(loomi_http_server *srv)
{
	struct timespec deadline;

	if (srv == NULL)
		return;
	pthread_mutex_lock(&srv->mtx);
	srv->stopping = true;
	pthread_mutex_unlock(&srv->mtx);
	/* closing the Unix socket's listener removes its file */
	listener_close(&srv->tcp);
	listener_close(srv->unix_sock);

	/* WebSocket clients are told the server is going away; the rest are
	 * closed now. */
	pthread_mutex_lock(&srv->mtx);
	for (conn *c = srv->conns; c != NULL; c = c->next) {
		pthread_mutex_lock(&c->mtx);
		if (c->ws_open && !c->close_queued && !c->shut) {
			c->close_queued = true;
			queue_locked(c, ws_close_frame(1001, "server stopping", 0));
			send_next_locked(c);
		} else if (!c->ws_open) {
			shut_locked(c);
		}
		pthread_mutex_unlock(&c->mtx);
	}
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += STOP_GRACE_MS / 1000;
	deadline.tv_nsec += (long)(STOP_GRACE_MS % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	while (srv->nconns > 0) {
		if (pthread_cond_timedwait(&srv->done_cv, &srv->mtx, &deadline) != 0)
			break;
	}
	for (conn *c = srv->conns; c != NULL; c = c->next) {
		pthread_mutex_lock(&c->mtx);
		shut_locked(c);
		pthread_mutex_unlock(&c->mtx);
	}
	while (srv->nconns > 0)
		pthread_cond_wait(&srv->done_cv, &srv->mtx);
	srv->reaper_quit = true;
	pthread_cond_signal(&srv->reap_cv);
	pthread_mutex_unlock(&srv->mtx);
	pthread_join(srv->reaper, NULL);

	listener_free(&srv->tcp);
	listener_free(srv->unix_sock);
	free(srv->unix_sock);
	pthread_cond_destroy(&srv->done_cv);
	pthread_cond_destroy(&srv->reap_cv);
	pthread_mutex_destroy(&srv->mtx);
	free(srv->url);
	free(srv);
}

/* ------------------------------------------------------------------ requests, WebSocket API */

size_t
loomi_http_body_held(loomi_http_server *srv)
{
	size_t n;

	pthread_mutex_lock(&srv->mtx);
	n = srv->body_held;
	pthread_mutex_unlock(&srv->mtx);
	return n;
}

const char *
loomi_http_header(const loomi_http_request *req, const char *name)
{
	if (req == NULL || req->priv == NULL || name == NULL)
		return NULL;
	return hreq_header(req->priv, name);
}

int
loomi_ws_send(loomi_ws *ws, const void *data, size_t len, bool text)
{
	txbuf *b;

	if (ws == NULL || (data == NULL && len > 0))
		return LOOM_EINVAL;
	b = ws_frame_new(text ? 0x1 : 0x2, data, len, TX_DATA);
	pthread_mutex_lock(&ws->mtx);
	if (ws->shut || ws->close_queued || !(ws->ws_open || ws->ws_opening)) {
		pthread_mutex_unlock(&ws->mtx);
		txbuf_free(b);
		return LOOM_ECLOSED;
	}
	if (ws->tx_data >= ws->ws_queue) {
		/* Drop the oldest message that is not on the wire yet. */
		txbuf **pp = &ws->tx_q, *old;
		while (*pp != NULL && !((*pp)->flags & TX_DATA))
			pp = &(*pp)->next;
		old = *pp;
		*pp = old->next;
		if (old->next == NULL)
			ws->tx_tail = pp;
		ws->tx_data--;
		txbuf_free(old);
		atomic_fetch_add(&ws->dropped, 1);
		if (!ws->drop_logged) {
			ws->drop_logged = true;
			LOG_WARN("http: WebSocket client %s reads too slowly: dropping its oldest "
			         "messages (queue of %zu)",
			         ws->peer, ws->ws_queue);
		}
	}
	queue_locked(ws, b);
	send_next_locked(ws);
	pthread_mutex_unlock(&ws->mtx);
	return 0;
}

void
loomi_ws_close(loomi_ws *ws, uint16_t code, const char *reason)
{
	if (ws == NULL)
		return;
	pthread_mutex_lock(&ws->mtx);
	if (!ws->shut && !ws->close_queued && (ws->ws_open || ws->ws_opening)) {
		ws->close_queued = true;
		queue_locked(ws, ws_close_frame(code, reason, 0));
		send_next_locked(ws);
	}
	pthread_mutex_unlock(&ws->mtx);
}

uint64_t
loomi_ws_dropped(const loomi_ws *ws)
{
	return ws ? (uint64_t)atomic_load(&((loomi_ws *)ws)->dropped) : 0;
}

void
loomi_ws_set_data(loomi_ws *ws, void *data)
{
	pthread_mutex_lock(&ws->mtx);
	ws->data = data;
	pthread_mutex_unlock(&ws->mtx);
}

void *
loomi_ws_get_data(const loomi_ws *ws)
{
	loomi_ws *w = (loomi_ws *)ws;
	void *data;

	pthread_mutex_lock(&w->mtx);
	data = w->data;
	pthread_mutex_unlock(&w->mtx);
	return data;
}

void
loomi_ws_set_owner(loomi_ws *ws, const void *owner)
{
	pthread_mutex_lock(&ws->mtx);
	ws->owner = owner;
	pthread_mutex_unlock(&ws->mtx);
}

const void *
loomi_ws_get_owner(const loomi_ws *ws)
{
	loomi_ws *w = (loomi_ws *)ws;
	const void *owner;

	pthread_mutex_lock(&w->mtx);
	owner = w->owner;
	pthread_mutex_unlock(&w->mtx);
	return owner;
}

void
loomi_ws_hold(loomi_ws *ws)
{
	pthread_mutex_lock(&ws->mtx);
	ws->refs++;
	pthread_mutex_unlock(&ws->mtx);
}

void
loomi_ws_release(loomi_ws *ws)
{
	bool last;

	if (ws == NULL)
		return;
	pthread_mutex_lock(&ws->mtx);
	last = --ws->refs == 0;
	pthread_mutex_unlock(&ws->mtx);
	if (last)
		conn_free(ws);
}

/* The inference workers' wire format and client.  See serve.h and
 * docs/inference.md. */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include <loom/error.h>

#include "serve.h"
#include "util.h"

/* ------------------------------------------------------------------ bytes */

static void
put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

static void
put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void
put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint16_t
get16(const unsigned char *p)
{
	return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static uint32_t
get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t
get64(const unsigned char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* n f32 into little-endian bytes, and back. */
static void
put_floats(unsigned char *p, const float *v, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	memcpy(p, v, n * sizeof *v);
#else
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, &v[i], 4);
		put32(p + 4 * i, u);
	}
#endif
}

static void
get_floats(float *v, const unsigned char *p, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	memcpy(v, p, n * sizeof *v);
#else
	for (size_t i = 0; i < n; i++) {
		uint32_t u = get32(p + 4 * i);
		memcpy(&v[i], &u, 4);
	}
#endif
}

/* ------------------------------------------------------------------ encoding */

static unsigned char *
header(size_t payload, uint16_t op, uint32_t flags, uint32_t status, uint64_t id,
       uint32_t ndim, const uint32_t *dims, uint32_t passes)
{
	unsigned char *p = loomi_xcalloc(1, LOOMI_SERVE_HEADER + payload + 1);

	put32(p, LOOMI_SERVE_MAGIC);
	put16(p + 4, LOOMI_SERVE_VERSION);
	put16(p + 6, op);
	put32(p + 8, flags);
	put32(p + 12, status);
	put64(p + 16, id);
	put32(p + 24, ndim);
	for (uint32_t i = 0; i < 3; i++)
		put32(p + 28 + 4 * i, i < ndim && dims ? dims[i] : 0);
	put32(p + 40, passes);
	put32(p + 44, (uint32_t)payload);
	return p;
}

int
loomi_serve_encode_request(uint16_t op, uint64_t id, uint32_t flags, uint32_t passes,
                           const float *windows, uint32_t batch, uint32_t context,
                           uint32_t channels, void **buf, size_t *len)
{
	uint32_t dims[3] = {batch, context, channels};
	uint64_t n;
	unsigned char *p;

	if (op == LOOMI_SERVE_WINDOWS)
		return LOOM_EINVAL; /* loomi_serve_encode_windows_request */
	if (op != LOOMI_SERVE_PREDICT) {
		*buf = header(0, op, flags, 0, id, 0, NULL, 0);
		*len = LOOMI_SERVE_HEADER;
		return 0;
	}
	n = (uint64_t)batch * context * channels;
	if (batch < 1 || context < 1 || channels < 1 || windows == NULL)
		return LOOM_EINVAL;
	if (batch > LOOMI_SERVE_MAX_WINDOWS || context > LOOMI_SERVE_MAX_DIM ||
	    channels > LOOMI_SERVE_MAX_DIM || n * 4 > LOOMI_SERVE_MAX_PAYLOAD ||
	    passes > LOOMI_SERVE_MAX_PASSES)
		return LOOM_ERANGE;
	p = header((size_t)n * 4, op, flags, 0, id, 3, dims, passes);
	put_floats(p + LOOMI_SERVE_HEADER, windows, (size_t)n);
	*buf = p;
	*len = LOOMI_SERVE_HEADER + (size_t)n * 4;
	return 0;
}

int
loomi_serve_encode_prediction(uint64_t id, uint32_t ndim, const uint32_t *dims,
                              const float *output, const float *spread, uint32_t passes,
                              void **buf, size_t *len)
{
	uint64_t n = 1;
	size_t bytes;
	unsigned char *p;

	if (ndim < 1 || ndim > 3 || output == NULL)
		return LOOM_EINVAL;
	for (uint32_t i = 0; i < ndim; i++)
		n *= dims[i];
	if (n * 4 * (spread ? 2 : 1) > LOOMI_SERVE_MAX_PAYLOAD)
		return LOOM_ERANGE;
	bytes = (size_t)n * 4;
	p = header(spread ? 2 * bytes : bytes, LOOMI_SERVE_PREDICT,
	           spread ? LOOMI_SERVE_UNCERTAINTY : 0, 0, id, ndim, dims, passes);
	put_floats(p + LOOMI_SERVE_HEADER, output, (size_t)n);
	if (spread)
		put_floats(p + LOOMI_SERVE_HEADER + bytes, spread, (size_t)n);
	*buf = p;
	*len = LOOMI_SERVE_HEADER + (spread ? 2 : 1) * bytes;
	return 0;
}

int
loomi_serve_encode_windows_request(uint64_t id, const char *path, int64_t from_line,
                                   int64_t to_line, int64_t stride, void **buf, size_t *len)
{
	size_t n = path ? strlen(path) : 0;
	unsigned char *p;

	if (n < 1 || from_line < 0 || to_line < 0 || stride < 1 ||
	    (from_line > 0 && to_line > 0 && to_line < from_line))
		return LOOM_EINVAL;
	if (n > LOOMI_SERVE_MAX_PATH)
		return LOOM_ERANGE;
	p = header(LOOMI_SERVE_RANGE_BYTES + n, LOOMI_SERVE_WINDOWS, 0, 0, id, 0, NULL, 0);
	put64(p + LOOMI_SERVE_HEADER, (uint64_t)from_line);
	put64(p + LOOMI_SERVE_HEADER + 8, (uint64_t)to_line);
	put64(p + LOOMI_SERVE_HEADER + 16, (uint64_t)stride);
	memcpy(p + LOOMI_SERVE_HEADER + LOOMI_SERVE_RANGE_BYTES, path, n);
	*buf = p;
	*len = LOOMI_SERVE_HEADER + LOOMI_SERVE_RANGE_BYTES + n;
	return 0;
}

int
loomi_serve_encode_windows(uint64_t id, uint32_t batch, uint32_t context, uint32_t channels,
                           const float *windows, const char *meta_json, void **buf, size_t *len)
{
	uint32_t dims[3] = {batch, context, channels};
	uint64_t n = (uint64_t)batch * context * channels;
	size_t meta = meta_json ? strlen(meta_json) : 0;
	unsigned char *p;

	if (batch < 1 || context < 1 || channels < 1 || windows == NULL || meta == 0)
		return LOOM_EINVAL;
	if (batch > LOOMI_SERVE_MAX_WINDOWS || context > LOOMI_SERVE_MAX_DIM ||
	    channels > LOOMI_SERVE_MAX_DIM || n * 4 > LOOMI_SERVE_MAX_PAYLOAD ||
	    meta > LOOMI_SERVE_MAX_PAYLOAD)
		return LOOM_ERANGE;
	p = header((size_t)n * 4 + meta, LOOMI_SERVE_WINDOWS, 0, 0, id, 3, dims, 0);
	put_floats(p + LOOMI_SERVE_HEADER, windows, (size_t)n);
	memcpy(p + LOOMI_SERVE_HEADER + (size_t)n * 4, meta_json, meta);
	*buf = p;
	*len = LOOMI_SERVE_HEADER + (size_t)n * 4 + meta;
	return 0;
}

void
loomi_serve_windows_args(const loomi_serve_msg *m, char **path, int64_t *from_line,
                         int64_t *to_line, int64_t *stride)
{
	const unsigned char *p = m->payload;

	*from_line = (int64_t)get64(p);
	*to_line = (int64_t)get64(p + 8);
	*stride = (int64_t)get64(p + 16);
	*path = loomi_strfmt("%.*s", (int)(m->length - LOOMI_SERVE_RANGE_BYTES),
	                     (const char *)p + LOOMI_SERVE_RANGE_BYTES);
}

int
loomi_serve_encode_text(uint16_t op, uint64_t id, uint32_t status, const char *text, void **buf,
                        size_t *len)
{
	size_t n = text ? strlen(text) : 0;
	unsigned char *p;

	if (n > LOOMI_SERVE_MAX_PAYLOAD)
		return LOOM_ERANGE;
	/* an error about a request whose op could not be read: op 0 */
	if (op < LOOMI_SERVE_PING || op > LOOMI_SERVE_WINDOWS)
		op = 0;
	p = header(n, op, 0, status, id, 0, NULL, 0);
	if (n)
		memcpy(p + LOOMI_SERVE_HEADER, text, n);
	*buf = p;
	*len = LOOMI_SERVE_HEADER + n;
	return 0;
}

/* ------------------------------------------------------------------ decoding */

static int
fail(char *why, size_t why_len, int rv, const char *fmt, ...) LOOM_PRINTF(4, 5);

static int
fail(char *why, size_t why_len, int rv, const char *fmt, ...)
{
	va_list ap;

	if (why && why_len) {
		va_start(ap, fmt);
		vsnprintf(why, why_len, fmt, ap);
		va_end(ap);
	}
	return rv;
}

/* The header's fields into m, checked for what requests and replies share
 * (a reply with a status may have op 0: the request's op was unreadable). */
static int
decode_header(const void *buf, size_t len, bool reply, loomi_serve_msg *m, char *why,
              size_t why_len)
{
	const unsigned char *p = buf;
	uint32_t magic;

	memset(m, 0, sizeof *m);
	if (buf == NULL || len < LOOMI_SERVE_HEADER)
		return fail(why, why_len, LOOM_EPROTO,
		            "message of %zu bytes is shorter than the %u-byte header", len,
		            LOOMI_SERVE_HEADER);
	magic = get32(p);
	m->version = get16(p + 4);
	m->op = get16(p + 6);
	m->flags = get32(p + 8);
	m->status = get32(p + 12);
	m->ndim = get32(p + 24);
	for (int i = 0; i < 3; i++)
		m->dims[i] = get32(p + 28 + 4 * i);
	m->passes = get32(p + 40);
	m->length = get32(p + 44);
	m->payload = p + LOOMI_SERVE_HEADER;
	if (magic != LOOMI_SERVE_MAGIC)
		return fail(why, why_len, LOOM_EPROTO,
		            "bad magic 0x%08x (expected \"LSRV\"); is this a loom inference client?",
		            magic);
	m->id = get64(p + 16);
	if (m->version != LOOMI_SERVE_VERSION)
		return fail(why, why_len, LOOM_EPROTO,
		            "wire format version %u; this side speaks version %u", m->version,
		            LOOMI_SERVE_VERSION);
	if ((m->op < LOOMI_SERVE_PING || m->op > LOOMI_SERVE_WINDOWS) &&
	    !(m->op == 0 && reply && m->status != 0))
		return fail(why, why_len, LOOM_EPROTO,
		            "unknown op %u (1 ping, 2 info, 3 predict, 4 windows)", m->op);
	if (m->flags & ~LOOMI_SERVE_FLAGS_KNOWN)
		return fail(why, why_len, LOOM_EPROTO, "unknown flags 0x%x", m->flags);
	if (m->length != len - LOOMI_SERVE_HEADER)
		return fail(why, why_len, LOOM_EPROTO,
		            "header says %zu payload bytes, the message has %zu", m->length,
		            len - LOOMI_SERVE_HEADER);
	return 0;
}

/* dims[ndim] of a predict message, each at least 1: their product. */
static int
count_of(const loomi_serve_msg *m, uint64_t *n, char *why, size_t why_len)
{
	*n = 1;
	for (uint32_t i = 0; i < m->ndim; i++) {
		if (m->dims[i] < 1)
			return fail(why, why_len, LOOM_EPROTO, "dimension %u is 0", i);
		*n *= m->dims[i];
	}
	for (uint32_t i = m->ndim; i < 3; i++)
		if (m->dims[i] != 0)
			return fail(why, why_len, LOOM_EPROTO,
			            "dimension %u is %u beyond ndim %u (must be 0)", i, m->dims[i],
			            m->ndim);
	return 0;
}

/* A windows request's payload: the range, then a path of 1 to
 * LOOMI_SERVE_MAX_PATH bytes without NUL. */
static int
decode_windows_request(loomi_serve_msg *m, char *why, size_t why_len)
{
	const unsigned char *p = m->payload;
	size_t n;
	int64_t from, to, stride;

	if (m->ndim != 0 || m->flags != 0 || m->passes != 0)
		return fail(why, why_len, LOOM_EPROTO,
		            "windows: a request carries no dims, flags or passes");
	if (m->length < LOOMI_SERVE_RANGE_BYTES + 1)
		return fail(why, why_len, LOOM_EPROTO,
		            "windows: %zu payload bytes; the request is from_line, to_line and stride "
		            "(%u bytes) and a path",
		            m->length, LOOMI_SERVE_RANGE_BYTES);
	n = m->length - LOOMI_SERVE_RANGE_BYTES;
	if (n > LOOMI_SERVE_MAX_PATH)
		return fail(why, why_len, LOOM_ERANGE, "windows: a path of %zu bytes, at most %u", n,
		            LOOMI_SERVE_MAX_PATH);
	if (memchr(p + LOOMI_SERVE_RANGE_BYTES, '\0', n) != NULL)
		return fail(why, why_len, LOOM_EPROTO, "windows: the path holds a NUL byte");
	from = (int64_t)get64(p);
	to = (int64_t)get64(p + 8);
	stride = (int64_t)get64(p + 16);
	if (from < 0 || to < 0)
		return fail(why, why_len, LOOM_EINVAL,
		            "windows: from_line %lld, to_line %lld: file lines are 1 or more (0: no "
		            "bound)",
		            (long long)from, (long long)to);
	if (from > 0 && to > 0 && to < from)
		return fail(why, why_len, LOOM_EINVAL, "windows: from_line %lld is after to_line %lld",
		            (long long)from, (long long)to);
	if (stride < 1)
		return fail(why, why_len, LOOM_EINVAL, "windows: stride %lld; give 1 or more",
		            (long long)stride);
	return 0;
}

int
loomi_serve_decode_request(const void *buf, size_t len, loomi_serve_msg *m, char *why,
                           size_t why_len)
{
	uint64_t n;
	int rv;

	if ((rv = decode_header(buf, len, false, m, why, why_len)) != 0)
		return rv;
	if (m->status != 0)
		return fail(why, why_len, LOOM_EPROTO, "a request carries status %u (must be 0)",
		            m->status);
	if (m->op == LOOMI_SERVE_WINDOWS)
		return decode_windows_request(m, why, why_len);
	if (m->op != LOOMI_SERVE_PREDICT) {
		if (m->length != 0 || m->ndim != 0 || m->flags != 0)
			return fail(why, why_len, LOOM_EPROTO,
			            "a %s request carries no payload, dims or flags",
			            m->op == LOOMI_SERVE_PING ? "ping" : "info");
		return 0;
	}
	if (m->ndim != 3)
		return fail(why, why_len, LOOM_EPROTO,
		            "predict: ndim %u; windows are [batch, context, channels] (3)", m->ndim);
	if ((rv = count_of(m, &n, why, why_len)) != 0)
		return rv;
	if (m->dims[0] > LOOMI_SERVE_MAX_WINDOWS)
		return fail(why, why_len, LOOM_ERANGE,
		            "predict: %u windows in one request, at most %u; split the batch",
		            m->dims[0], LOOMI_SERVE_MAX_WINDOWS);
	if (m->dims[1] > LOOMI_SERVE_MAX_DIM || m->dims[2] > LOOMI_SERVE_MAX_DIM)
		return fail(why, why_len, LOOM_ERANGE,
		            "predict: windows of %u steps × %u channels, at most %u each", m->dims[1],
		            m->dims[2], LOOMI_SERVE_MAX_DIM);
	if (m->passes > LOOMI_SERVE_MAX_PASSES)
		return fail(why, why_len, LOOM_ERANGE, "predict: %u passes, at most %u", m->passes,
		            LOOMI_SERVE_MAX_PASSES);
	if (n * 4 > LOOMI_SERVE_MAX_PAYLOAD)
		return fail(why, why_len, LOOM_ERANGE,
		            "predict: %llu values (%llu bytes), at most %u bytes per request; split "
		            "the batch",
		            (unsigned long long)n, (unsigned long long)n * 4, LOOMI_SERVE_MAX_PAYLOAD);
	if (n * 4 != m->length)
		return fail(why, why_len, LOOM_EPROTO,
		            "predict: [%u, %u, %u] windows need %llu bytes, the payload has %zu",
		            m->dims[0], m->dims[1], m->dims[2], (unsigned long long)n * 4, m->length);
	/* every input finite: the first one that is not, by window, step, channel */
	{
		const unsigned char *p = m->payload;
		uint32_t L = m->dims[1], C = m->dims[2];
		for (uint64_t i = 0; i < n; i++) {
			float v;
			get_floats(&v, p + 4 * i, 1);
			if (!isfinite(v))
				return fail(why, why_len, LOOM_EINVAL,
				            "predict: window %llu, step %llu, channel %llu is %s; the "
				            "model needs finite values (fill gaps first)",
				            (unsigned long long)(i / ((uint64_t)L * C)),
				            (unsigned long long)(i / C % L), (unsigned long long)(i % C),
				            isnan(v) ? "NaN" : "infinite");
		}
	}
	return 0;
}

int
loomi_serve_decode_reply(const void *buf, size_t len, loomi_serve_msg *m, char *why,
                         size_t why_len)
{
	uint64_t n;
	int rv;

	if ((rv = decode_header(buf, len, true, m, why, why_len)) != 0)
		return rv;
	if (m->status == 0 && m->op == LOOMI_SERVE_WINDOWS) {
		if (m->ndim != 3 || m->flags != 0)
			return fail(why, why_len, LOOM_EPROTO,
			            "windows reply: ndim %u, flags 0x%x; windows are [batch, context, "
			            "channels] (3) without flags",
			            m->ndim, m->flags);
		if ((rv = count_of(m, &n, why, why_len)) != 0)
			return rv;
		if (m->dims[0] > LOOMI_SERVE_MAX_WINDOWS || n * 4 > LOOMI_SERVE_MAX_PAYLOAD)
			return fail(why, why_len, LOOM_ERANGE,
			            "windows reply: [%u, %u, %u] windows are over the limits", m->dims[0],
			            m->dims[1], m->dims[2]);
		if (n * 4 >= m->length)
			return fail(why, why_len, LOOM_EPROTO,
			            "windows reply: [%u, %u, %u] windows need %llu bytes and their "
			            "description more, the payload has %zu",
			            m->dims[0], m->dims[1], m->dims[2], (unsigned long long)n * 4,
			            m->length);
		return 0;
	}
	if (m->status != 0 || m->op != LOOMI_SERVE_PREDICT) {
		if (m->ndim != 0 || m->flags != 0)
			return fail(why, why_len, LOOM_EPROTO,
			            "a reply without outputs carries dims or flags");
		return 0;
	}
	if (m->ndim < 1 || m->ndim > 3)
		return fail(why, why_len, LOOM_EPROTO, "predict reply: ndim %u (1 to 3)", m->ndim);
	if ((rv = count_of(m, &n, why, why_len)) != 0)
		return rv;
	if (n * 4 * (m->flags & LOOMI_SERVE_UNCERTAINTY ? 2 : 1) != m->length)
		return fail(why, why_len, LOOM_EPROTO,
		            "predict reply: %llu outputs%s need %llu bytes, the payload has %zu",
		            (unsigned long long)n,
		            m->flags & LOOMI_SERVE_UNCERTAINTY ? " and their spread" : "",
		            (unsigned long long)n * 4 * (m->flags & LOOMI_SERVE_UNCERTAINTY ? 2 : 1),
		            m->length);
	return 0;
}

/* ------------------------------------------------------------------ client */

/* A worker that goes away must not leave its caller waiting out the
 * timeout (a request to a crashed model would hang for 30 s): the socket's
 * pipe events say when its connection closes; a request then in flight is
 * cancelled, and a request after the loss fails at once, until a new
 * connection comes (the dialer retries). */
struct loomi_serve_client {
	nng_socket sock;
	nng_ctx ctx;
	nng_aio *aio;
	char *url;
	uint64_t next_id;
	int timeout_ms;
	pthread_mutex_t mtx;   /* the fields below, and the pipe callback */
	bool had_pipe, has_pipe, busy, lost;
};

static void
pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	loomi_serve_client *c = arg;
	(void)p;
	pthread_mutex_lock(&c->mtx);
	if (ev == NNG_PIPE_EV_ADD_POST) {
		c->had_pipe = c->has_pipe = true;
	} else if (ev == NNG_PIPE_EV_REM_POST) {
		c->has_pipe = false;
		if (c->busy) {
			c->lost = true;
			nng_aio_cancel(c->aio);
		}
	}
	pthread_mutex_unlock(&c->mtx);
}

static int
from_nng(int rv)
{
	switch (rv) {
	case 0: return 0;
	case NNG_ETIMEDOUT: return LOOM_ETIMEDOUT;
	case NNG_ECLOSED: return LOOM_ECLOSED;
	case NNG_ENOMEM: return LOOM_ENOMEM;
	case NNG_EMSGSIZE: return LOOM_ERANGE;
	case NNG_ECONNREFUSED:
	case NNG_ECONNSHUT:
	case NNG_ECONNRESET:
	case NNG_ENOENT:
	case NNG_EADDRINVAL:
	case NNG_EUNREACHABLE: return LOOM_EUNREACHABLE;
	case NNG_EINVAL: return LOOM_EINVAL;
	case NNG_EPERM: return LOOM_EPERM;
	default: return LOOM_EIO;
	}
}

int
loomi_serve_client_open(const char *url, int timeout_ms, loomi_serve_client **out, char **err)
{
	loomi_serve_client *c = loomi_xcalloc(1, sizeof *c);
	int rv;

	*out = NULL;
	if ((rv = nng_req0_open(&c->sock)) != 0) {
		*err = loomi_strfmt("inference client: cannot open a socket: %s", nng_strerror(rv));
		free(c);
		return from_nng(rv);
	}
	pthread_mutex_init(&c->mtx, NULL);
	c->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
	if ((rv = nng_ctx_open(&c->ctx, c->sock)) != 0 ||
	    (rv = nng_aio_alloc(&c->aio, NULL, NULL)) != 0) {
		*err = loomi_strfmt("inference client: cannot open a context: %s", nng_strerror(rv));
		nng_close(c->sock);
		pthread_mutex_destroy(&c->mtx);
		free(c);
		return from_nng(rv);
	}
	nng_pipe_notify(c->sock, NNG_PIPE_EV_ADD_POST, pipe_event, c);
	nng_pipe_notify(c->sock, NNG_PIPE_EV_REM_POST, pipe_event, c);
	/* a request is never resent behind the caller's back: a worker that
	 * restarted answers a new request, not a replay */
	nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	nng_socket_set_ms(c->sock, NNG_OPT_SENDTIMEO, timeout_ms > 0 ? timeout_ms : 5000);
	nng_socket_set_ms(c->sock, NNG_OPT_RECVTIMEO, timeout_ms > 0 ? timeout_ms : 5000);
	nng_socket_set_ms(c->sock, NNG_OPT_RECONNMINT, 10);
	nng_socket_set_ms(c->sock, NNG_OPT_RECONNMAXT, 200);
	nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ,
	                    LOOMI_SERVE_HEADER + 2 * (size_t)LOOMI_SERVE_MAX_PAYLOAD);
	if ((rv = nng_dial(c->sock, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
		*err = loomi_strfmt("inference client: cannot dial %s: %s; give ipc:///PATH or "
		                    "tcp://HOST:PORT",
		                    url, nng_strerror(rv));
		nng_close(c->sock);
		nng_aio_free(c->aio);
		pthread_mutex_destroy(&c->mtx);
		free(c);
		return from_nng(rv);
	}
	c->url = loomi_strdup(url);
	c->next_id = 1;
	*out = c;
	return 0;
}

void
loomi_serve_client_close(loomi_serve_client *c)
{
	if (c == NULL)
		return;
	nng_close(c->sock); /* no pipe callback runs after this returns */
	nng_aio_free(c->aio);
	pthread_mutex_destroy(&c->mtx);
	free(c->url);
	free(c);
}

/* One exchange on the client's context: 0 with *msg the reply, or an NNG
 * code (NNG_ECONNSHUT when the worker's connection closed meanwhile). */
static int
exchange(loomi_serve_client *c, const void *req, size_t len, nng_msg **msg)
{
	nng_msg *m = NULL;
	int rv;

	*msg = NULL;
	pthread_mutex_lock(&c->mtx);
	if (c->had_pipe && !c->has_pipe) {
		pthread_mutex_unlock(&c->mtx);
		return NNG_ECONNSHUT;
	}
	c->busy = true;
	c->lost = false;
	pthread_mutex_unlock(&c->mtx);
	if ((rv = nng_msg_alloc(&m, 0)) == 0 && (rv = nng_msg_append(m, req, len)) == 0) {
		nng_aio_set_timeout(c->aio, c->timeout_ms);
		nng_aio_set_msg(c->aio, m);
		nng_ctx_send(c->ctx, c->aio);
		nng_aio_wait(c->aio);
		if ((rv = nng_aio_result(c->aio)) == 0) {
			m = NULL; /* the socket owns it now */
			nng_aio_set_timeout(c->aio, c->timeout_ms);
			nng_ctx_recv(c->ctx, c->aio);
			nng_aio_wait(c->aio);
			if ((rv = nng_aio_result(c->aio)) == 0)
				*msg = nng_aio_get_msg(c->aio);
		}
	}
	if (m)
		nng_msg_free(m);
	pthread_mutex_lock(&c->mtx);
	c->busy = false;
	if (rv == NNG_ECANCELED && c->lost)
		rv = NNG_ECONNSHUT;
	pthread_mutex_unlock(&c->mtx);
	return rv;
}

int
loomi_serve_client_call(loomi_serve_client *c, const void *req, size_t len, void **reply,
                        size_t *reply_len, char **err)
{
	void *buf = NULL;
	size_t n = 0;
	int rv;

	nng_msg *msg;

	*reply = NULL;
	*reply_len = 0;
	if ((rv = exchange(c, req, len, &msg)) != 0) {
		*err = loomi_strfmt("inference worker %s: %s", c->url,
		                    rv == NNG_ETIMEDOUT   ? "no answer in time (is it running?)"
		                    : rv == NNG_ECONNSHUT ? "its connection closed (did it exit?)"
		                                          : nng_strerror(rv));
		return from_nng(rv);
	}
	buf = nng_msg_body(msg);
	n = nng_msg_len(msg);
	/* into malloc's memory, so the caller frees it with free() */
	*reply = loomi_xcalloc(1, n + 1);
	memcpy(*reply, buf, n);
	*reply_len = n;
	nng_msg_free(msg);
	return 0;
}

/* One request: the reply decoded into m (its payload in *raw; free it).  A
 * reply with a status becomes that code and its message. */
static int
roundtrip(loomi_serve_client *c, void *req, size_t len, loomi_serve_msg *m, void **raw,
          char **err)
{
	char why[256];
	size_t n;
	uint64_t id = c->next_id - 1;
	int rv;

	rv = loomi_serve_client_call(c, req, len, raw, &n, err);
	free(req);
	if (rv != 0)
		return rv;
	if ((rv = loomi_serve_decode_reply(*raw, n, m, why, sizeof why)) != 0) {
		*err = loomi_strfmt("inference worker %s: malformed reply: %s", c->url, why);
		return rv;
	}
	if (m->status != 0) {
		*err = loomi_strfmt("%.*s", (int)m->length, (const char *)m->payload);
		return (int)m->status;
	}
	if (m->id != id) {
		*err = loomi_strfmt("inference worker %s: reply to request %llu, expected %llu", c->url,
		                    (unsigned long long)m->id, (unsigned long long)id);
		return LOOM_EPROTO;
	}
	return 0;
}

static int
simple(loomi_serve_client *c, uint16_t op, loomi_serve_msg *m, void **raw, char **err)
{
	void *req;
	size_t len;

	loomi_serve_encode_request(op, c->next_id++, 0, 0, NULL, 0, 0, 0, &req, &len);
	return roundtrip(c, req, len, m, raw, err);
}

int
loomi_serve_client_ping(loomi_serve_client *c, char **err)
{
	loomi_serve_msg m;
	void *raw = NULL;
	int rv = simple(c, LOOMI_SERVE_PING, &m, &raw, err);

	free(raw);
	return rv;
}

int
loomi_serve_client_info(loomi_serve_client *c, char **info_json, char **err)
{
	loomi_serve_msg m;
	void *raw = NULL;
	int rv = simple(c, LOOMI_SERVE_INFO, &m, &raw, err);

	*info_json = NULL;
	if (rv == 0)
		*info_json = loomi_strfmt("%.*s", (int)m.length, (const char *)m.payload);
	free(raw);
	return rv;
}

int
loomi_serve_client_predict(loomi_serve_client *c, const float *windows, uint32_t batch,
                           uint32_t context, uint32_t channels, uint32_t flags, uint32_t passes,
                           loomi_serve_result *res, char **err)
{
	loomi_serve_msg m;
	void *req, *raw = NULL;
	size_t len, n = 1;
	int rv;

	memset(res, 0, sizeof *res);
	if ((rv = loomi_serve_encode_request(LOOMI_SERVE_PREDICT, c->next_id++, flags, passes,
	                                     windows, batch, context, channels, &req, &len)) != 0) {
		*err = loomi_strfmt("inference client: %u windows of [%u, %u] %s", batch, context,
		                    channels,
		                    rv == LOOM_ERANGE ? "are over the limits of one request; split them"
		                                      : "are not a batch of windows");
		return rv;
	}
	if ((rv = roundtrip(c, req, len, &m, &raw, err)) != 0) {
		free(raw);
		return rv;
	}
	res->ndim = m.ndim;
	for (uint32_t i = 0; i < m.ndim; i++) {
		res->dims[i] = m.dims[i];
		n *= m.dims[i];
	}
	res->passes = m.passes;
	res->output = loomi_xcalloc(n, sizeof(float));
	get_floats(res->output, m.payload, n);
	if (m.flags & LOOMI_SERVE_UNCERTAINTY) {
		res->spread = loomi_xcalloc(n, sizeof(float));
		get_floats(res->spread, (const unsigned char *)m.payload + 4 * n, n);
	}
	free(raw);
	return 0;
}

int
loomi_serve_client_windows(loomi_serve_client *c, const char *path, int64_t from_line,
                           int64_t to_line, int64_t stride, loomi_serve_windows *res, char **err)
{
	loomi_serve_msg m;
	void *req, *raw = NULL;
	size_t len, n;
	int rv;

	memset(res, 0, sizeof *res);
	if ((rv = loomi_serve_encode_windows_request(c->next_id++, path, from_line, to_line, stride,
	                                             &req, &len)) != 0) {
		*err = loomi_strfmt("inference client: %s", rv == LOOM_ERANGE
		                                                ? "the path is too long"
		                                                : "not a file path and line range");
		return rv;
	}
	if ((rv = roundtrip(c, req, len, &m, &raw, err)) != 0) {
		free(raw);
		return rv;
	}
	if (m.op != LOOMI_SERVE_WINDOWS) {
		*err = loomi_strfmt("inference worker %s: answered op %u to a windows request", c->url,
		                    m.op);
		free(raw);
		return LOOM_EPROTO;
	}
	n = (size_t)m.dims[0] * m.dims[1] * m.dims[2];
	res->batch = m.dims[0];
	res->context = m.dims[1];
	res->channels = m.dims[2];
	res->windows = loomi_xcalloc(n, sizeof(float));
	get_floats(res->windows, m.payload, n);
	res->meta_json = loomi_strfmt("%.*s", (int)(m.length - n * 4),
	                              (const char *)m.payload + n * 4);
	free(raw);
	return 0;
}

void
loomi_serve_windows_free(loomi_serve_windows *res)
{
	if (res == NULL)
		return;
	free(res->windows);
	free(res->meta_json);
	memset(res, 0, sizeof *res);
}

void
loomi_serve_result_free(loomi_serve_result *res)
{
	if (res == NULL)
		return;
	free(res->output);
	free(res->spread);
	res->output = res->spread = NULL;
}

/* storage-s3 — blobs as objects in an S3-compatible object store (AWS S3,
 * OpenStack Swift's s3api, Ceph RGW, MinIO ...), through libcurl.
 *
 * A key "a/b" is the object PREFIX/a/b in the bucket, addressed path-style
 * (ENDPOINT/BUCKET/PREFIX/a/b), which every S3 implementation accepts.
 * Requests are signed with AWS Signature V4 by libcurl (CURLOPT_AWS_SIGV4).
 * libcurl 7.88 leaves three things to its caller, done here:
 *   - x-amz-content-sha256: it does not send it, and S3 requires it; the
 *     payload's SHA-256 is computed and sent (and signed);
 *   - the canonical query: it signs the query string as written, so query
 *     values are percent-encoded and parameters sorted before the URL is
 *     made ("uploads=" rather than "uploads");
 *   - an access key with a ':' (tempauth's "test:tester") breaks
 *     CURLOPT_USERPWD, so the keys go in CURLOPT_USERNAME/PASSWORD.
 * The "Expect: 100-continue" libcurl adds to large uploads is left alone:
 * removing it makes 7.88 sign a header it then does not send.
 *
 * Blobs above multipart_threshold are sent as multipart uploads (initiate,
 * parts, complete; aborted on failure); streaming writers buffer one part at
 * a time and send a small blob as a single PUT at commit.  S3 replaces an
 * object atomically either way.
 *
 * Etags: S3's ETag is the MD5 of the content (or of the parts), so writing
 * the same bytes twice gives the same ETag, and a Loom etag must change on
 * every replacement.  Every write therefore carries a random write id as
 * user metadata (x-amz-meta-loom-wid), and stat's etag is a 64-bit hash of
 * the ETag and the write id.  A listing does not return metadata, so list
 * reports a hash of the ETag and the Last-Modified time instead: it changes
 * with the content, but is not comparable with stat's.
 *
 * Conditional writes (put_if) are not offered: S3 had none until 2024 and
 * Swift's s3api answers 501 to If-None-Match / If-Match; the host says
 * LOOM_ENOTSUP.  Content-addressed chunks do not need them: the same key
 * always holds the same bytes, so writing it twice is harmless.
 *
 * Failures are retried with exponential back-off and jitter when they may
 * pass: connection errors, timeouts, 5xx (but 501), 429 and S3's
 * RequestTimeout; never other 4xx.  Messages name the operation, the key,
 * the HTTP status and S3's error code and message, and never the secret
 * key (a message that would contain it has it masked). */
#include "config.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include <loom/storage.h>

#include "s3xml.h"

#define MIB (1024u * 1024u)
#define MIN_PART (5u * MIB)        /* S3: every part but the last */
#define MAX_PARTS 10000            /* S3: parts in one upload */
#define ERR_BODY_MAX (64u * 1024u) /* error bodies kept for messages */
#define POOL_MAX 16                /* idle curl handles kept */
#define BACKOFF_BASE_MS 100
#define BACKOFF_MAX_MS 5000

typedef struct ctx {
	/* settings (filled by the host from the config map) */
	const char *endpoint;
	const char *bucket;
	const char *region;
	const char *access_key;
	const char *secret_key;
	const char *prefix;
	int64_t timeout_ms;
	int64_t retries;
	uint64_t multipart_threshold;
	bool create_bucket;
	bool verify_tls;
	bool check_on_start;
	int64_t list_page;
	/* state */
	const loom_host *host;
	loom_instance *ins;
	char *base;   /* ENDPOINT/BUCKET, no trailing '/' */
	char *pfx;    /* "" or the prefix with a trailing '/' */
	char *access; /* the keys in use (config or environment) */
	char *secret;
	char sigv4[128]; /* "aws:amz:REGION:s3" */
	pthread_mutex_t mtx; /* guards the pool */
	CURL *pool[POOL_MAX];
	size_t npool;
} ctx;

static const loom_config_entry config[] = {
	{LOOM_CONFIG_STRING, LOOM_CONFIG_REQUIRED, "endpoint", NULL, offsetof(ctx, endpoint),
	 "the store's URL, http(s)://host[:port] (path-style requests)", 0, 0, NULL,
	 {NULL, NULL}},
	{LOOM_CONFIG_STRING, LOOM_CONFIG_REQUIRED, "bucket", NULL, offsetof(ctx, bucket),
	 "the bucket holding the blobs", 0, 0, NULL, {NULL, NULL}},
	{LOOM_CONFIG_STRING, 0, "region", "us-east-1", offsetof(ctx, region),
	 "the region requests are signed for", 0, 0, NULL, {NULL, NULL}},
	{LOOM_CONFIG_STRING, 0, "access_key", NULL, offsetof(ctx, access_key),
	 "the access key id (default: $AWS_ACCESS_KEY_ID)", 0, 0, NULL, {NULL, NULL}},
	{LOOM_CONFIG_STRING, LOOM_CONFIG_SECRET, "secret_key", NULL, offsetof(ctx, secret_key),
	 "the secret access key (default: $AWS_SECRET_ACCESS_KEY; never logged)", 0, 0, NULL,
	 {NULL, NULL}},
	{LOOM_CONFIG_STRING, 0, "prefix", "", offsetof(ctx, prefix),
	 "a key prefix inside the bucket (\"loom\" stores key k as loom/k)", 0, 0, NULL,
	 {NULL, NULL}},
	{LOOM_CONFIG_DURATION, LOOM_CONFIG_RANGE, "timeout_ms", "30s", offsetof(ctx, timeout_ms),
	 "connect timeout, and how long a request may go without progress", 100, 3600000, NULL,
	 {NULL, NULL}},
	{LOOM_CONFIG_INT, LOOM_CONFIG_RANGE, "retries", "4", offsetof(ctx, retries),
	 "retries of a request that failed in a way that may pass (5xx, 429, timeouts)", 0, 20,
	 NULL, {NULL, NULL}},
	{LOOM_CONFIG_SIZE, LOOM_CONFIG_RANGE, "multipart_threshold", "8M",
	 offsetof(ctx, multipart_threshold),
	 "blobs larger than this go up in parts of this size (at least 5M)", 5242880.0,
	 5368709120.0, NULL, {NULL, NULL}},
	{LOOM_CONFIG_BOOL, 0, "create_bucket", "false", offsetof(ctx, create_bucket),
	 "create the bucket at start-up when it does not exist", 0, 0, NULL, {NULL, NULL}},
	{LOOM_CONFIG_BOOL, 0, "verify_tls", "true", offsetof(ctx, verify_tls),
	 "verify the server's TLS certificate and name", 0, 0, NULL, {NULL, NULL}},
	{LOOM_CONFIG_BOOL, 0, "check_on_start", "true", offsetof(ctx, check_on_start),
	 "list the bucket at start-up, so that wrong keys or a missing bucket stop the "
	 "start (turn off for keys without the ListBucket permission)",
	 0, 0, NULL, {NULL, NULL}},
	{LOOM_CONFIG_INT, LOOM_CONFIG_RANGE, "list_page", "1000", offsetof(ctx, list_page),
	 "keys asked for per ListObjectsV2 request", 1, 1000, NULL, {NULL, NULL}},
	LOOM_CONFIG_END,
};

#define LOG(c, level, ...) (c)->host->log((c)->ins, (level), __VA_ARGS__)

/* ------------------------------------------------------------------ libcurl */

/* curl_global_init is not thread-safe and must precede every other call;
 * instances count their uses so the last one out cleans up. */
static pthread_mutex_t global_mtx = PTHREAD_MUTEX_INITIALIZER;
static unsigned global_users;

static int
global_up(void)
{
	int rv = 0;

	pthread_mutex_lock(&global_mtx);
	if (global_users == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		rv = LOOM_EINTERNAL;
	else
		global_users++;
	pthread_mutex_unlock(&global_mtx);
	return rv;
}

static void
global_down(void)
{
	pthread_mutex_lock(&global_mtx);
	if (global_users > 0 && --global_users == 0)
		curl_global_cleanup();
	pthread_mutex_unlock(&global_mtx);
}

/* An easy handle from the pool (keeping its connections), or a new one. */
static CURL *
handle_take(ctx *c)
{
	CURL *h = NULL;

	pthread_mutex_lock(&c->mtx);
	if (c->npool > 0)
		h = c->pool[--c->npool];
	pthread_mutex_unlock(&c->mtx);
	if (h != NULL)
		curl_easy_reset(h);
	else
		h = curl_easy_init();
	return h;
}

static void
handle_give(ctx *c, CURL *h)
{
	pthread_mutex_lock(&c->mtx);
	if (c->npool < POOL_MAX) {
		c->pool[c->npool++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&c->mtx);
	if (h != NULL)
		curl_easy_cleanup(h);
}

/* ------------------------------------------------------------------ helpers */

static void
sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	EVP_Digest(len ? data : "", len, md, &n, EVP_sha256(), NULL);
	for (unsigned i = 0; i < n && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[64] = '\0';
}

/* AWS's URI encoding: unreserved bytes as they are, '/' too when keep_slash,
 * the rest as %XX (upper case).  malloc'd. */
static char *
uri_encode(const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(strlen(s) * 3 + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' ||
		    (keep_slash && *p == '/')) {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}

static char *
xstrfmt(const char *fmt, ...) LOOM_PRINTF(1, 2);

static char *
xstrfmt(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

/* A 64-bit mix of the bytes (FNV-1a, then a finalizer so nearby inputs
 * spread); never 0. */
static uint64_t
hash64(const char *a, const char *b)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (const char *p = a; p && *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
	h = (h ^ 0xff) * 0x100000001b3ull; /* a separator no header holds */
	for (const char *p = b; p && *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h ? h : 1;
}

/* A fresh write id: 16 hex digits. */
static void
new_wid(char out[17])
{
	uint64_t r = 0;

	if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
		struct timespec ts;
		static atomic_uint_fast64_t counter;
		clock_gettime(CLOCK_REALTIME, &ts);
		r = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
		r ^= atomic_fetch_add(&counter, 1) * 0x9E3779B97F4A7C15ull;
	}
	snprintf(out, 17, "%016llx", (unsigned long long)r);
}

/* Jittered exponential back-off before retry number attempt (1, 2 ...). */
static void
backoff(int attempt)
{
	uint64_t ms = BACKOFF_BASE_MS, r = 0;
	struct timespec ts;

	for (int i = 1; i < attempt && ms < BACKOFF_MAX_MS; i++)
		ms *= 2;
	if (ms > BACKOFF_MAX_MS)
		ms = BACKOFF_MAX_MS;
	/* "Equal jitter": half the delay, plus up to the other half at
	 * random, so clients that failed together do not retry together. */
	if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
		r = (uint64_t)clock();
	ms = ms / 2 + r % (ms / 2 + 1);
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0)
		;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * algorithm), so no time zone or locale is involved. */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* "Wed, 21 Oct 2015 07:28:00 GMT" (HTTP date) → ms; -1 when malformed. */
static int64_t
parse_http_date(const char *s)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	char mon[4];
	int d, y, hh, mm, ss;
	const char *at;

	if (sscanf(s, "%*3s, %d %3s %d %d:%d:%d", &d, mon, &y, &hh, &mm, &ss) != 6)
		return -1;
	if ((at = strstr(months, mon)) == NULL || (at - months) % 3 != 0 || d < 1 || d > 31)
		return -1;
	return (days_from_civil(y, (unsigned)((at - months) / 3 + 1), (unsigned)d) * 86400 +
	        hh * 3600 + mm * 60 + ss) * 1000;
}

/* "2009-10-12T17:50:30.000Z" (ISO 8601, as listings give it) → ms. */
static int64_t
parse_iso_date(const char *s)
{
	int y, mo, d, hh, mm, ss, n = 0;
	int64_t ms = 0;

	if (sscanf(s, "%d-%d-%dT%d:%d:%d%n", &y, &mo, &d, &hh, &mm, &ss, &n) != 6 || mo < 1 ||
	    mo > 12 || d < 1 || d > 31)
		return -1;
	if (s[n] == '.') {
		/* Milliseconds from however many fraction digits there are. */
		int scale = 100;
		for (const char *f = s + n + 1; isdigit((unsigned char)*f); f++) {
			ms += (*f - '0') * scale;
			scale /= 10;
		}
	}
	return (days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + hh * 3600 + mm * 60 +
	        ss) * 1000 + ms;
}

static void scrub(const ctx *c, const char *text, char *out, size_t max);

/* ------------------------------------------------------------------ requests */

typedef struct buf {
	char *data;
	size_t len, cap;
	bool host_mem; /* from host->alloc: handed to the caller of get */
} buf;

/* One S3 request and what came back. */
typedef struct s3_req {
	/* in */
	const char *method; /* GET PUT HEAD DELETE POST */
	const char *op;     /* for messages: "PUT", "GET", "list", "multipart PUT" */
	const char *key;    /* the Loom key, or NULL for the bucket itself */
	const char *query;  /* encoded and sorted, without '?'; or NULL */
	const void *body;
	size_t body_len;
	const char *content_type;
	const char *wid;   /* a write id to store as metadata, or NULL */
	char range[64];    /* a Range header value, or "" */
	unsigned char *sink; /* with a range: the body goes here ... */
	size_t sink_cap;     /* ... at most this much */
	uint64_t sink_skip;  /* bytes to drop first if the range is ignored */
	bool quiet_404;      /* absent is an answer, not a failure */
	bool once;           /* no retries */
	/* out */
	long status;
	CURLcode cerr;
	char cerrbuf[CURL_ERROR_SIZE];
	buf resp;      /* the body (error bodies: their first 64 KiB) */
	size_t sunk;   /* bytes put in sink */
	char etag[256];
	char rwid[40];
	char last_modified[64];
	int64_t clen; /* Content-Length, or -1 */
	int attempts;
	/* internal */
	ctx *c;
	size_t up_off;
	uint64_t skipped;
} s3_req;

static bool
buf_reserve(ctx *c, buf *b, size_t need)
{
	size_t cap;
	char *nd;

	if (need <= b->cap)
		return true;
	cap = b->cap ? b->cap : 4096;
	while (cap < need) {
		if (cap > SIZE_MAX / 2)
			return false;
		cap *= 2;
	}
	nd = b->host_mem ? c->host->realloc(b->data, cap) : realloc(b->data, cap);
	if (nd == NULL)
		return false;
	b->data = nd;
	b->cap = cap;
	return true;
}

static void
buf_free(ctx *c, buf *b)
{
	if (b->host_mem)
		c->host->free(b->data);
	else
		free(b->data);
	memset(b, 0, sizeof *b);
}

static size_t
on_read(char *out, size_t size, size_t n, void *arg)
{
	s3_req *r = arg;
	size_t want = size * n, left = r->body_len - r->up_off;

	if (want > left)
		want = left;
	if (want)
		memcpy(out, (const char *)r->body + r->up_off, want);
	r->up_off += want;
	return want;
}

static int
on_seek(void *arg, curl_off_t off, int origin)
{
	s3_req *r = arg;

	if (origin != SEEK_SET || off < 0 || (uint64_t)off > r->body_len)
		return CURL_SEEKFUNC_CANTSEEK;
	r->up_off = (size_t)off;
	return CURL_SEEKFUNC_OK;
}

static bool
is_2xx(long status)
{
	return status >= 200 && status < 300;
}

static size_t
on_write(char *data, size_t size, size_t n, void *arg)
{
	s3_req *r = arg;
	size_t len = size * n;

	if (r->sink != NULL && is_2xx(r->status)) {
		/* A server that ignored the Range (200 instead of 206) sends
		 * the whole blob: drop what comes before the offset. */
		if (r->status == 200 && r->skipped < r->sink_skip) {
			uint64_t drop = r->sink_skip - r->skipped;
			if (drop > len)
				drop = len;
			r->skipped += drop;
			data += drop;
			len -= (size_t)drop;
		}
		if (len > r->sink_cap - r->sunk)
			len = r->sink_cap - r->sunk;
		memcpy(r->sink + r->sunk, data, len);
		r->sunk += len;
		return size * n;
	}
	if (!is_2xx(r->status)) {
		/* Keep the start of an error body for the message. */
		if (r->resp.len + len > ERR_BODY_MAX)
			len = ERR_BODY_MAX - r->resp.len;
		if (len == 0)
			return size * n;
	}
	if (!buf_reserve(r->c, &r->resp, r->resp.len + len + 1))
		return 0; /* out of memory: the transfer fails */
	memcpy(r->resp.data + r->resp.len, data, len);
	r->resp.len += len;
	r->resp.data[r->resp.len] = '\0';
	return size * n;
}

/* Copy a header's value (trimmed) into out when the line is name: value. */
static bool
header_value(const char *line, size_t len, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name), vl;
	const char *v, *e;

	if (len <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0)
		return false;
	v = line + nl + 1;
	e = line + len;
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
		e--;
	vl = (size_t)(e - v);
	if (vl >= cap)
		vl = cap - 1;
	memcpy(out, v, vl);
	out[vl] = '\0';
	return true;
}

static size_t
on_header(char *line, size_t size, size_t n, void *arg)
{
	s3_req *r = arg;
	size_t len = size * n;
	char num[32];

	if (len > 5 && strncmp(line, "HTTP/", 5) == 0) {
		/* A status line (a "100 Continue" comes before the real one). */
		const char *sp = memchr(line, ' ', len);
		r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		r->etag[0] = r->rwid[0] = r->last_modified[0] = '\0';
		r->clen = -1;
		return len;
	}
	if (header_value(line, len, "ETag", r->etag, sizeof r->etag) ||
	    header_value(line, len, "x-amz-meta-loom-wid", r->rwid, sizeof r->rwid) ||
	    header_value(line, len, "Last-Modified", r->last_modified, sizeof r->last_modified))
		return len;
	if (header_value(line, len, "Content-Length", num, sizeof num)) {
		char *e;
		unsigned long long cl = strtoull(num, &e, 10);
		r->clen = e != num && *e == '\0' && cl <= INT64_MAX ? (int64_t)cl : -1;
		/* Room for the whole blob at once instead of doubling. */
		if (r->sink == NULL && is_2xx(r->status) && strcmp(r->method, "GET") == 0 &&
		    r->clen >= 0 && (uint64_t)r->clen < SIZE_MAX - 1 &&
		    !buf_reserve(r->c, &r->resp, (size_t)r->clen + 1))
			return 0;
	}
	return len;
}

/* Should a failed attempt be tried again? */
static bool
retryable(const s3_req *r)
{
	if (r->cerr != CURLE_OK) {
		switch (r->cerr) {
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_CONNECT:
		case CURLE_OPERATION_TIMEDOUT:
		case CURLE_SEND_ERROR:
		case CURLE_RECV_ERROR:
		case CURLE_GOT_NOTHING:
		case CURLE_PARTIAL_FILE:
		case CURLE_HTTP2:
		case CURLE_HTTP2_STREAM:
			return true;
		default:
			return false;
		}
	}
	if (r->status == 429 || (r->status >= 500 && r->status != 501))
		return true;
	/* S3 closes an upload that stalls with 400 RequestTimeout. */
	return r->status == 400 && r->resp.data && strstr(r->resp.data, "<Code>RequestTimeout<");
}

static CURLcode
setup(ctx *c, CURL *h, s3_req *r, const char *url, struct curl_slist *hdrs)
{
	CURLcode e = CURLE_OK;
	long secs = (long)((c->timeout_ms + 999) / 1000);

#define SET(opt, val)                                                                \
	do {                                                                         \
		if (e == CURLE_OK)                                                   \
			e = curl_easy_setopt(h, (opt), (val));                       \
	} while (0)
	SET(CURLOPT_URL, url);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_AWS_SIGV4, c->sigv4);
	SET(CURLOPT_USERNAME, c->access);
	SET(CURLOPT_PASSWORD, c->secret);
	SET(CURLOPT_HTTPHEADER, hdrs);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)c->timeout_ms);
	/* A transfer may take as long as it needs, but not stall. */
	SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
	SET(CURLOPT_LOW_SPEED_TIME, secs > 0 ? secs : 1L);
	SET(CURLOPT_SSL_VERIFYPEER, c->verify_tls ? 1L : 0L);
	SET(CURLOPT_SSL_VERIFYHOST, c->verify_tls ? 2L : 0L);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_ERRORBUFFER, r->cerrbuf);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, r);
	SET(CURLOPT_WRITEFUNCTION, on_write);
	SET(CURLOPT_WRITEDATA, r);
	if (strcmp(r->method, "HEAD") == 0) {
		SET(CURLOPT_NOBODY, 1L);
	} else if (strcmp(r->method, "PUT") == 0 || strcmp(r->method, "POST") == 0) {
		SET(CURLOPT_UPLOAD, 1L);
		SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
		SET(CURLOPT_READFUNCTION, on_read);
		SET(CURLOPT_READDATA, r);
		SET(CURLOPT_SEEKFUNCTION, on_seek);
		SET(CURLOPT_SEEKDATA, r);
		if (strcmp(r->method, "POST") == 0)
			SET(CURLOPT_CUSTOMREQUEST, "POST");
	} else if (strcmp(r->method, "DELETE") == 0) {
		SET(CURLOPT_CUSTOMREQUEST, "DELETE");
	}
#undef SET
	return e;
}

/* Send r (retrying what may pass); 0 when an HTTP answer came back, whatever
 * its status, or a LOOM_E* code when none did (the message is r->cerrbuf). */
static int
perform(ctx *c, s3_req *r)
{
	char sha[65], *path = NULL, *url = NULL, *hv;
	struct curl_slist *hdrs = NULL, *t;
	CURL *h;
	int rv = 0;

	r->c = c;
	if (r->key != NULL) {
		char *full = xstrfmt("%s%s", c->pfx, r->key);
		path = full ? uri_encode(full, true) : NULL;
		free(full);
		if (path == NULL)
			return LOOM_ENOMEM;
	}
	url = xstrfmt("%s%s%s%s%s", c->base, path ? "/" : "", path ? path : "",
	              r->query ? "?" : "", r->query ? r->query : "");
	free(path);
	if (url == NULL)
		return LOOM_ENOMEM;
	sha256_hex(r->body, r->body_len, sha);
	hv = xstrfmt("x-amz-content-sha256: %s", sha);
	if (hv == NULL || (t = curl_slist_append(hdrs, hv)) == NULL)
		goto nomem;
	hdrs = t;
	free(hv);
	hv = NULL;
#define ADD(...)                                                                     \
	do {                                                                         \
		if ((hv = xstrfmt(__VA_ARGS__)) == NULL ||                           \
		    (t = curl_slist_append(hdrs, hv)) == NULL)                       \
			goto nomem;                                                  \
		hdrs = t;                                                            \
		free(hv);                                                            \
		hv = NULL;                                                           \
	} while (0)
	if (r->content_type)
		ADD("Content-Type: %s", r->content_type);
	if (r->wid)
		ADD("x-amz-meta-loom-wid: %s", r->wid);
	if (r->range[0])
		ADD("Range: %s", r->range);
#undef ADD
	if ((h = handle_take(c)) == NULL)
		goto nomem;
	for (r->attempts = 1;; r->attempts++) {
		r->status = 0;
		r->cerrbuf[0] = '\0';
		r->resp.len = 0;
		if (r->resp.data)
			r->resp.data[0] = '\0';
		r->sunk = 0;
		r->skipped = 0;
		r->up_off = 0;
		r->etag[0] = r->rwid[0] = r->last_modified[0] = '\0';
		r->clen = -1;
		if (r->attempts > 1)
			curl_easy_reset(h);
		if ((r->cerr = setup(c, h, r, url, hdrs)) == CURLE_OK)
			r->cerr = curl_easy_perform(h);
		if (r->cerr == CURLE_OK) {
			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
			if (r->cerrbuf[0] == '\0')
				snprintf(r->cerrbuf, sizeof r->cerrbuf, "HTTP %ld", r->status);
		} else if (r->cerrbuf[0] == '\0') {
			snprintf(r->cerrbuf, sizeof r->cerrbuf, "%s", curl_easy_strerror(r->cerr));
		}
		if (r->once || r->attempts > c->retries || !retryable(r))
			break;
		{
			char why[CURL_ERROR_SIZE + 32];
			scrub(c, r->cerrbuf, why, sizeof why);
			LOG(c, LOOM_LOG_DEBUG, "%s %s: %s; retry %d of %lld", r->op,
			    r->key ? r->key : c->bucket, why, r->attempts, (long long)c->retries);
		}
		backoff(r->attempts);
	}
	handle_give(c, h);
	if (r->cerr != CURLE_OK) {
		switch (r->cerr) {
		case CURLE_OPERATION_TIMEDOUT: rv = LOOM_ETIMEDOUT; break;
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_CONNECT: rv = LOOM_EUNREACHABLE; break;
		case CURLE_OUT_OF_MEMORY:
		case CURLE_WRITE_ERROR: rv = LOOM_ENOMEM; break;
		default: rv = LOOM_EIO; break;
		}
	}
	curl_slist_free_all(hdrs);
	free(url);
	return rv;

nomem:
	free(hv);
	curl_slist_free_all(hdrs);
	free(url);
	return LOOM_ENOMEM;
}

/* ------------------------------------------------------------------ errors */

/* text with every occurrence of the secret masked, control bytes replaced
 * and at most max bytes kept: safe to log. */
static void
scrub(const ctx *c, const char *text, char *out, size_t max)
{
	size_t sl = c->secret ? strlen(c->secret) : 0, o = 0;

	for (const char *p = text; *p && o + 4 < max;) {
		if (sl > 0 && strncmp(p, c->secret, sl) == 0) {
			memcpy(out + o, "***", 3);
			o += 3;
			p += sl;
			continue;
		}
		out[o++] = (unsigned char)*p < 0x20 || *p == 0x7f ? ' ' : *p;
		p++;
	}
	out[o] = '\0';
}

/* What to do about an S3 error code, for the message. */
static const char *
advice(const ctx *c, const char *code, long status)
{
	if (strcmp(code, "SignatureDoesNotMatch") == 0)
		return "; check secret_key (or $AWS_SECRET_ACCESS_KEY) and region";
	if (strcmp(code, "InvalidAccessKeyId") == 0)
		return "; check access_key (or $AWS_ACCESS_KEY_ID)";
	if (strcmp(code, "NoSuchBucket") == 0)
		return "; create the bucket, or set create_bucket = true";
	if (strcmp(code, "AccessDenied") == 0 || status == 403)
		return "; check that the keys may use the bucket";
	if (strcmp(code, "KeyTooLongError") == 0)
		return "; the store's key length limit counts the prefix too: shorten prefix";
	if (strcmp(code, "RequestTimeTooSkewed") == 0)
		return "; this host's clock is wrong: synchronize it";
	if (status >= 500 || status == 429)
		return "; the store is failing or overloaded (retries exhausted)";
	return "";
}

/* Map r's outcome to a code, logging why when it is a failure.  rv is what
 * perform returned. */
static int
fail(ctx *c, s3_req *r, int rv)
{
	char msg[512], code[64] = "", text[300] = "", tries[48] = "";
	char *x;
	int level = LOOM_LOG_ERROR;

	if (r->attempts > 1)
		snprintf(tries, sizeof tries, " (after %d attempts)", r->attempts);
	if (rv != 0) {
		scrub(c, r->cerrbuf, text, sizeof text);
		snprintf(msg, sizeof msg, "%s %s: %s%s; check endpoint %s", r->op,
		         r->key ? r->key : c->bucket, text, tries, c->endpoint);
		LOG(c, LOOM_LOG_ERROR, "%s", msg);
		return rv;
	}
	if (r->resp.data && (x = s3xml_get(r->resp.data, r->resp.len, "Code")) != NULL) {
		scrub(c, x, code, sizeof code);
		free(x);
	}
	if (r->resp.data && (x = s3xml_get(r->resp.data, r->resp.len, "Message")) != NULL) {
		scrub(c, x, text, sizeof text);
		free(x);
	}
	switch (r->status) {
	case 404: rv = LOOM_ENOENT; break;
	case 401:
	case 403: rv = LOOM_EPERM; break;
	case 409:
	case 412: rv = LOOM_ECONFLICT; break;
	case 416: rv = LOOM_ERANGE; break;
	case 501: rv = LOOM_ENOTSUP; break;
	case 429:
	case 503: rv = LOOM_EBUSY; break;
	default:
		if (r->status == 400 && (strcmp(code, "KeyTooLongError") == 0 ||
		                         strcmp(code, "EntityTooLarge") == 0))
			rv = LOOM_ERANGE;
		else if (r->status >= 500)
			rv = LOOM_EIO;
		else
			rv = LOOM_EPROTO;
		break;
	}
	if (rv == LOOM_ENOENT && r->quiet_404)
		level = LOOM_LOG_DEBUG;
	snprintf(msg, sizeof msg, "%s %s: %ld%s%s%s%s%s%s", r->op, r->key ? r->key : c->bucket,
	         r->status, code[0] ? " " : "", code, text[0] ? ": " : "", text, tries,
	         advice(c, code, r->status));
	LOG(c, level, "%s", msg);
	return rv;
}

/* A 2xx answer whose body is an <Error> (CompleteMultipartUpload may send
 * one after its 200). */
static bool
error_in_body(const s3_req *r)
{
	const char *p, *body;
	size_t blen;

	if (r->resp.data == NULL)
		return false;
	p = r->resp.data;
	return s3xml_next(&p, r->resp.data + r->resp.len, "Error", &body, &blen) == 1;
}

/* Run r and map the outcome: 0 for a 2xx. */
static int
run(ctx *c, s3_req *r)
{
	int rv = perform(c, r);

	if (rv == 0 && is_2xx(r->status))
		return 0;
	return fail(c, r, rv);
}

static void
req_done(ctx *c, s3_req *r)
{
	buf_free(c, &r->resp);
}

/* ------------------------------------------------------------------ multipart */

typedef struct upload {
	char *id;      /* UploadId */
	char **etags;  /* of parts 1..n */
	size_t n, cap;
} upload;

static int
mp_begin(ctx *c, const char *key, const char *wid, upload *u)
{
	s3_req r = {.method = "POST", .op = "multipart start", .key = key,
	            .query = "uploads=", .wid = wid};
	int rv = run(c, &r);

	if (rv == 0 && (u->id = s3xml_get(r.resp.data, r.resp.len, "UploadId")) == NULL) {
		LOG(c, LOOM_LOG_ERROR, "multipart start %s: the answer has no UploadId", key);
		rv = LOOM_EPROTO;
	}
	req_done(c, &r);
	return rv;
}

static int
mp_part(ctx *c, const char *key, upload *u, const void *data, size_t len)
{
	char *id = uri_encode(u->id, false), *q, *etag;
	s3_req r = {.method = "PUT", .op = "multipart PUT", .key = key, .body = data,
	            .body_len = len};
	int rv;

	if (u->n == u->cap) {
		size_t cap = u->cap ? u->cap * 2 : 16;
		char **ne = realloc(u->etags, cap * sizeof *ne);
		if (ne == NULL) {
			free(id);
			return LOOM_ENOMEM;
		}
		u->etags = ne;
		u->cap = cap;
	}
	q = id ? xstrfmt("partNumber=%zu&uploadId=%s", u->n + 1, id) : NULL;
	free(id);
	if (q == NULL)
		return LOOM_ENOMEM;
	r.query = q;
	rv = run(c, &r);
	if (rv == 0) {
		if (r.etag[0] == '\0') {
			LOG(c, LOOM_LOG_ERROR, "multipart PUT %s: part %zu came back without an ETag",
			    key, u->n + 1);
			rv = LOOM_EPROTO;
		} else if ((etag = strdup(r.etag)) == NULL) {
			rv = LOOM_ENOMEM;
		} else {
			u->etags[u->n++] = etag;
		}
	}
	req_done(c, &r);
	free(q);
	return rv;
}

static int
mp_complete(ctx *c, const char *key, upload *u)
{
	char *id = uri_encode(u->id, false), *q, *xml;
	size_t cap = 128 + u->n * 320, len;
	s3_req r = {.method = "POST", .op = "multipart complete", .key = key,
	            .content_type = "application/xml"};
	int rv;

	if (id == NULL || (xml = malloc(cap)) == NULL) {
		free(id);
		return LOOM_ENOMEM;
	}
	q = xstrfmt("uploadId=%s", id);
	free(id);
	if (q == NULL) {
		free(xml);
		return LOOM_ENOMEM;
	}
	strcpy(xml, "<CompleteMultipartUpload>");
	for (size_t i = 0; i < u->n; i++) {
		len = strlen(xml);
		snprintf(xml + len, cap - len, "<Part><PartNumber>%zu</PartNumber><ETag>", i + 1);
		s3xml_escape(xml, cap, u->etags[i]);
		len = strlen(xml);
		snprintf(xml + len, cap - len, "</ETag></Part>");
	}
	len = strlen(xml);
	snprintf(xml + len, cap - len, "</CompleteMultipartUpload>");
	r.query = q;
	r.body = xml;
	r.body_len = strlen(xml);
	rv = run(c, &r);
	if (rv == 0 && error_in_body(&r)) {
		r.status = 500; /* failed after all: say why */
		rv = fail(c, &r, 0);
	}
	req_done(c, &r);
	free(q);
	free(xml);
	return rv;
}

/* Abort an upload (its parts are freed) and forget it. */
static void
mp_abort(ctx *c, const char *key, upload *u)
{
	if (u->id != NULL) {
		char *id = uri_encode(u->id, false), *q = id ? xstrfmt("uploadId=%s", id) : NULL;
		s3_req r = {.method = "DELETE", .op = "multipart abort", .key = key, .query = q,
		            .quiet_404 = true};
		if (q != NULL && run(c, &r) != 0)
			LOG(c, LOOM_LOG_WARN,
			    "multipart abort %s: upload %s left behind; a bucket lifecycle rule "
			    "for incomplete uploads removes such parts",
			    key, u->id);
		req_done(c, &r);
		free(q);
		free(id);
	}
	for (size_t i = 0; i < u->n; i++)
		free(u->etags[i]);
	free(u->etags);
	free(u->id);
	memset(u, 0, sizeof *u);
}

static void
mp_free(upload *u)
{
	for (size_t i = 0; i < u->n; i++)
		free(u->etags[i]);
	free(u->etags);
	free(u->id);
	memset(u, 0, sizeof *u);
}

/* ------------------------------------------------------------------ ops */

static int
single_put(ctx *c, const char *key, const void *data, size_t len, const char *wid)
{
	s3_req r = {.method = "PUT", .op = "PUT", .key = key, .body = data, .body_len = len,
	            .wid = wid};
	int rv = run(c, &r);

	req_done(c, &r);
	return rv;
}

static int
s3_put(void *p, const char *key, const void *data, size_t len)
{
	ctx *c = p;
	char wid[17];
	size_t part;
	upload u = {0};
	int rv;

	if (loom_key_check(key) != 0 || (data == NULL && len > 0))
		return LOOM_EINVAL;
	new_wid(wid);
	if (len <= c->multipart_threshold)
		return single_put(c, key, data, len, wid);
	/* Parts of the threshold's size, larger when that would need more
	 * than S3's 10,000 parts. */
	part = (size_t)c->multipart_threshold;
	if (len / part >= MAX_PARTS)
		part = len / (MAX_PARTS - 1) + 1;
	if ((rv = mp_begin(c, key, wid, &u)) != 0)
		return rv;
	for (size_t off = 0; off < len && rv == 0; off += part)
		rv = mp_part(c, key, &u, (const char *)data + off, len - off < part ? len - off : part);
	if (rv == 0)
		rv = mp_complete(c, key, &u);
	if (rv != 0)
		mp_abort(c, key, &u);
	else
		mp_free(&u);
	return rv;
}

static int
s3_get(void *p, const char *key, void **data, size_t *len)
{
	ctx *c = p;
	s3_req r = {.method = "GET", .op = "GET", .key = key, .quiet_404 = true};
	int rv;

	if (loom_key_check(key) != 0)
		return LOOM_EINVAL;
	r.resp.host_mem = true;
	if ((rv = run(c, &r)) == 0) {
		if (r.resp.data == NULL && (r.resp.data = c->host->alloc(1)) == NULL) {
			rv = LOOM_ENOMEM;
		} else {
			*data = r.resp.data;
			*len = r.resp.len;
			r.resp.data = NULL;
		}
	}
	req_done(c, &r);
	return rv;
}

static int
s3_stat(void *p, const char *key, loom_blob_stat *st)
{
	ctx *c = p;
	s3_req r = {.method = "HEAD", .op = "HEAD", .key = key, .quiet_404 = true};
	int rv;

	if (loom_key_check(key) != 0)
		return LOOM_EINVAL;
	if ((rv = run(c, &r)) == 0) {
		if (r.clen < 0) {
			LOG(c, LOOM_LOG_ERROR, "HEAD %s: the answer has no Content-Length", key);
			rv = LOOM_EPROTO;
		} else {
			int64_t mt = parse_http_date(r.last_modified);
			memset(st, 0, sizeof *st);
			st->size = (uint64_t)r.clen;
			st->mtime_ms = mt > 0 ? mt : 0;
			st->etag = hash64(r.etag, r.rwid);
		}
	}
	req_done(c, &r);
	return rv;
}

static int
s3_remove(void *p, const char *key)
{
	ctx *c = p;
	loom_blob_stat st;
	s3_req r = {.method = "DELETE", .op = "DELETE", .key = key, .quiet_404 = true};
	int rv;

	if (loom_key_check(key) != 0)
		return LOOM_EINVAL;
	/* S3 answers 204 to deleting an absent key; ask first, so that an
	 * absent key is LOOM_ENOENT.  (A removal racing another one on the
	 * same key may then both succeed.) */
	if ((rv = s3_stat(c, key, &st)) != 0)
		return rv;
	rv = run(c, &r);
	req_done(c, &r);
	return rv;
}

static int
s3_read(void *p, const char *key, uint64_t offset, void *out, size_t len, size_t *nread)
{
	ctx *c = p;
	s3_req r = {.method = "GET", .op = "GET range", .key = key, .quiet_404 = true};
	uint64_t last;
	int rv;

	if (loom_key_check(key) != 0)
		return LOOM_EINVAL;
	if (len == 0) {
		/* Nothing to read, but an absent key is still absent. */
		loom_blob_stat st;
		if ((rv = s3_stat(c, key, &st)) == 0)
			*nread = 0;
		return rv;
	}
	last = offset + (uint64_t)len - 1;
	if (last < offset || last > (uint64_t)INT64_MAX)
		last = (uint64_t)INT64_MAX;
	if (offset > (uint64_t)INT64_MAX) {
		/* No blob is that large; ask for the key's existence only. */
		loom_blob_stat st;
		if ((rv = s3_stat(c, key, &st)) == 0)
			*nread = 0;
		return rv;
	}
	snprintf(r.range, sizeof r.range, "bytes=%llu-%llu", (unsigned long long)offset,
	         (unsigned long long)last);
	r.sink = out;
	r.sink_cap = len;
	r.sink_skip = offset;
	rv = perform(c, &r);
	if (rv == 0 && r.status == 416) {
		/* At or past the end (or an empty blob): nothing. */
		*nread = 0;
	} else if (rv == 0 && is_2xx(r.status)) {
		*nread = r.sunk;
	} else {
		rv = fail(c, &r, rv);
	}
	req_done(c, &r);
	return rv;
}

/* One listed blob, kept until the page's callbacks ran. */
typedef struct entry {
	char *key; /* without the instance's prefix */
	loom_blob_stat st;
} entry;

static void
entries_free(entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(e[i].key);
	free(e);
}

/* Parse one ListObjectsV2 page into entries (keys checked and in order
 * after *prev, which is updated), its truncation flag and next token. */
static int
parse_page(ctx *c, const char *xml, size_t len, char **prev, entry **out, size_t *nout,
           bool *truncated, char **token)
{
	const char *p = xml, *end = xml + len, *body;
	size_t blen, n = 0, cap = 0, pl = strlen(c->pfx);
	entry *es = NULL;
	char *t;
	int got;

	*truncated = false;
	*token = NULL;
	while ((got = s3xml_next(&p, end, "Contents", &body, &blen)) == 1) {
		char *key = s3xml_get(body, blen, "Key"), *size = s3xml_get(body, blen, "Size");
		char *mod = s3xml_get(body, blen, "LastModified");
		char *etag = s3xml_get(body, blen, "ETag");
		int bad = key == NULL || size == NULL;

		if (!bad && *prev != NULL && strcmp(*prev, key) >= 0) {
			LOG(c, LOOM_LOG_ERROR,
			    "list %s: the store listed \"%s\" after \"%s\", out of byte order; "
			    "this store is not S3-compatible enough for storage-s3",
			    c->bucket, key, *prev);
			free(key);
			free(size);
			free(mod);
			free(etag);
			entries_free(es, n);
			return LOOM_EPROTO;
		}
		if (bad) {
			LOG(c, LOOM_LOG_ERROR, "list %s: an entry without Key or Size", c->bucket);
			free(key);
			free(size);
			free(mod);
			free(etag);
			entries_free(es, n);
			return LOOM_EPROTO;
		}
		free(*prev);
		*prev = strdup(key);
		if (strncmp(key, c->pfx, pl) != 0 || loom_key_check(key + pl) != 0) {
			/* Not a Loom key (written by something else): skipped. */
			LOG(c, LOOM_LOG_DEBUG, "list: skipping object \"%s\", not a valid key", key);
		} else {
			if (n == cap) {
				size_t nc = cap ? cap * 2 : 64;
				entry *ne = realloc(es, nc * sizeof *ne);
				if (ne == NULL) {
					free(key);
					free(size);
					free(mod);
					free(etag);
					entries_free(es, n);
					return LOOM_ENOMEM;
				}
				es = ne;
				cap = nc;
			}
			memset(&es[n], 0, sizeof es[n]);
			es[n].key = strdup(key + pl);
			es[n].st.size = strtoull(size, NULL, 10);
			es[n].st.mtime_ms = mod ? parse_iso_date(mod) : 0;
			if (es[n].st.mtime_ms < 0)
				es[n].st.mtime_ms = 0;
			es[n].st.etag = hash64(etag ? etag : "", mod ? mod : "");
			if (es[n].key == NULL) {
				free(key);
				free(size);
				free(mod);
				free(etag);
				entries_free(es, n);
				return LOOM_ENOMEM;
			}
			n++;
		}
		free(key);
		free(size);
		free(mod);
		free(etag);
	}
	if (got < 0 || *prev == NULL) {
		if (got < 0) {
			LOG(c, LOOM_LOG_ERROR, "list %s: malformed XML in the answer", c->bucket);
			entries_free(es, n);
			return LOOM_EPROTO;
		}
	}
	if ((t = s3xml_get(xml, len, "IsTruncated")) != NULL) {
		*truncated = strcmp(t, "true") == 0;
		free(t);
	}
	if (*truncated && (*token = s3xml_get(xml, len, "NextContinuationToken")) == NULL) {
		LOG(c, LOOM_LOG_ERROR, "list %s: a truncated page without NextContinuationToken",
		    c->bucket);
		entries_free(es, n);
		return LOOM_EPROTO;
	}
	*out = es;
	*nout = n;
	return 0;
}

static int
s3_list(void *p, const char *prefix, loom_storage_list_fn fn, void *arg)
{
	ctx *c = p;
	char *full, *enc, *token = NULL, *prev = NULL;
	int rv = 0;

	if (prefix == NULL || fn == NULL || loom_key_prefix_check(prefix) != 0)
		return LOOM_EINVAL;
	if ((full = xstrfmt("%s%s", c->pfx, prefix)) == NULL)
		return LOOM_ENOMEM;
	enc = uri_encode(full, false);
	free(full);
	if (enc == NULL)
		return LOOM_ENOMEM;
	for (;;) {
		char *tok = token ? uri_encode(token, false) : NULL, *q;
		s3_req r = {.method = "GET", .op = "list", .key = NULL};
		entry *es = NULL;
		size_t n = 0;
		bool truncated = false;

		if (token != NULL && tok == NULL) {
			rv = LOOM_ENOMEM;
			break;
		}
		/* Sorted by name, values encoded: the canonical query. */
		q = xstrfmt("%s%s%slist-type=2&max-keys=%lld%s%s", tok ? "continuation-token=" : "",
		            tok ? tok : "", tok ? "&" : "", (long long)c->list_page,
		            enc[0] ? "&prefix=" : "", enc);
		free(tok);
		if (q == NULL) {
			rv = LOOM_ENOMEM;
			break;
		}
		r.query = q;
		rv = run(c, &r);
		free(token);
		token = NULL;
		if (rv == 0)
			rv = parse_page(c, r.resp.data ? r.resp.data : "", r.resp.len, &prev, &es, &n,
			                &truncated, &token);
		req_done(c, &r);
		free(q);
		/* The callbacks run with no request in flight, so they may use
		 * this storage themselves. */
		for (size_t i = 0; i < n && rv == 0; i++)
			rv = fn(arg, es[i].key, &es[i].st);
		entries_free(es, n);
		if (rv != 0 || !truncated)
			break;
	}
	free(token);
	free(prev);
	free(enc);
	return rv;
}

/* ------------------------------------------------------------------ writers */

typedef struct writer {
	char *key;
	char wid[17];
	unsigned char *buf;
	size_t len, cap;
	size_t part; /* the size of the part being filled */
	upload u;
} writer;

static int
s3_write_open(void *p, const char *key, void **out)
{
	ctx *c = p;
	writer *w;

	if (loom_key_check(key) != 0)
		return LOOM_EINVAL;
	if ((w = calloc(1, sizeof *w)) == NULL || (w->key = strdup(key)) == NULL) {
		free(w);
		return LOOM_ENOMEM;
	}
	new_wid(w->wid);
	w->part = (size_t)c->multipart_threshold;
	*out = w;
	return 0;
}

/* Send the full buffer as the next part (starting the upload first). */
static int
flush_part(ctx *c, writer *w)
{
	int rv;

	if (w->u.id == NULL && (rv = mp_begin(c, w->key, w->wid, &w->u)) != 0)
		return rv;
	if ((rv = mp_part(c, w->key, &w->u, w->buf, w->len)) != 0)
		return rv;
	w->len = 0;
	/* Larger parts as the upload grows, so that S3's 10,000 parts hold
	 * blobs of any size (8M parts alone stop at 80 GB). */
	if (w->u.n % 1000 == 0 && w->part <= SIZE_MAX / 2)
		w->part *= 2;
	return 0;
}

static int
s3_write(void *p, void *wp, const void *data, size_t len)
{
	ctx *c = p;
	writer *w = wp;
	const unsigned char *d = data;
	int rv;

	if (data == NULL && len > 0)
		return LOOM_EINVAL;
	while (len > 0) {
		size_t n;
		/* A full part goes only once more data comes, so the last part
		 * is never empty and a blob of at most one part is one PUT. */
		if (w->len == w->part && (rv = flush_part(c, w)) != 0)
			return rv;
		n = w->part - w->len < len ? w->part - w->len : len;
		if (w->len + n > w->cap) {
			size_t cap = w->cap ? w->cap : 64 * 1024;
			unsigned char *nb;
			while (cap < w->len + n)
				cap *= 2;
			if (cap > w->part)
				cap = w->part;
			if ((nb = realloc(w->buf, cap)) == NULL)
				return LOOM_ENOMEM;
			w->buf = nb;
			w->cap = cap;
		}
		memcpy(w->buf + w->len, d, n);
		w->len += n;
		d += n;
		len -= n;
	}
	return 0;
}

static void
writer_free(writer *w)
{
	free(w->buf);
	free(w->key);
	free(w);
}

static int
s3_write_commit(void *p, void *wp)
{
	ctx *c = p;
	writer *w = wp;
	int rv;

	if (w->u.id == NULL) {
		rv = single_put(c, w->key, w->buf, w->len, w->wid);
	} else {
		rv = w->len > 0 ? mp_part(c, w->key, &w->u, w->buf, w->len) : 0;
		if (rv == 0)
			rv = mp_complete(c, w->key, &w->u);
		if (rv != 0)
			mp_abort(c, w->key, &w->u);
		else
			mp_free(&w->u);
	}
	writer_free(w);
	return rv;
}

static void
s3_write_abort(void *p, void *wp)
{
	ctx *c = p;
	writer *w = wp;

	mp_abort(c, w->key, &w->u);
	writer_free(w);
}

/* ------------------------------------------------------------------ set-up */

/* http(s)://host[:port] with an optional trailing '/', nothing else: no
 * path, credentials, query or fragment. */
static bool
endpoint_ok(const char *e)
{
	const char *h;
	size_t n;

	if (strncmp(e, "http://", 7) == 0)
		h = e + 7;
	else if (strncmp(e, "https://", 8) == 0)
		h = e + 8;
	else
		return false;
	n = strlen(h);
	if (n > 0 && h[n - 1] == '/')
		n--;
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isalnum((unsigned char)h[i]) && !strchr(".-:[]", h[i]))
			return false;
	}
	return true;
}

/* S3's bucket naming rules: 3 to 63 of [a-z0-9.-], starting and ending with
 * a letter or digit. */
static bool
bucket_ok(const char *b)
{
	size_t n = strlen(b);

	if (n < 3 || n > 63 || !isalnum((unsigned char)b[0]) || !isalnum((unsigned char)b[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!islower((unsigned char)b[i]) && !isdigit((unsigned char)b[i]) && b[i] != '.' &&
		    b[i] != '-')
			return false;
	}
	return true;
}

static bool
printable(const char *s)
{
	for (; *s; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	}
	return true;
}

static int
create_bucket(ctx *c)
{
	char body[256] = "";
	s3_req r = {.method = "PUT", .op = "create bucket", .key = NULL};
	int rv;

	if (strcmp(c->region, "us-east-1") != 0) {
		snprintf(body, sizeof body,
		         "<CreateBucketConfiguration><LocationConstraint>%s</LocationConstraint>"
		         "</CreateBucketConfiguration>",
		         c->region);
		r.body = body;
		r.body_len = strlen(body);
		r.content_type = "application/xml";
	}
	if ((rv = perform(c, &r)) == 0 && (is_2xx(r.status) ||
	    (r.status == 409 && r.resp.data && strstr(r.resp.data, "BucketAlreadyOwnedByYou")))) {
		LOG(c, LOOM_LOG_DEBUG, "bucket %s: %s", c->bucket,
		    r.status == 409 ? "exists already" : "created");
	} else {
		rv = fail(c, &r, rv);
	}
	req_done(c, &r);
	return rv;
}

/* A one-key listing: do the keys work, does the bucket exist? */
static int
check_bucket(ctx *c)
{
	char *enc = uri_encode(c->pfx, false), *q;
	/* Once only: a store that is down must not hold up loomd's start
	 * for retries × timeout. */
	s3_req r = {.method = "GET", .op = "list (start-up check)", .key = NULL, .once = true};
	int rv;

	if (enc == NULL)
		return LOOM_ENOMEM;
	q = xstrfmt("list-type=2&max-keys=1%s%s", enc[0] ? "&prefix=" : "", enc);
	free(enc);
	if (q == NULL)
		return LOOM_ENOMEM;
	r.query = q;
	rv = run(c, &r);
	req_done(c, &r);
	free(q);
	return rv;
}

static void
forget_secret(ctx *c)
{
	if (c->secret) {
		explicit_bzero(c->secret, strlen(c->secret));
		free(c->secret);
		c->secret = NULL;
	}
}

static void
s3_fini(void *p)
{
	ctx *c = p;

	for (size_t i = 0; i < c->npool; i++)
		curl_easy_cleanup(c->pool[i]);
	c->npool = 0;
	if (c->base != NULL)
		global_down();
	free(c->base);
	free(c->pfx);
	free(c->access);
	forget_secret(c);
	c->base = c->pfx = c->access = NULL;
	pthread_mutex_destroy(&c->mtx);
}

static int
init_inner(ctx *c)
{
	const char *ak = c->access_key, *sk = c->secret_key, *from = "config";
	size_t pl = strlen(c->prefix);
	int rv;

	if (!endpoint_ok(c->endpoint)) {
		LOG(c, LOOM_LOG_ERROR,
		    "endpoint \"%s\" is not http(s)://host[:port] (no path, user or query; the "
		    "bucket goes in bucket)",
		    c->endpoint);
		return LOOM_ECONFIG;
	}
	if (!bucket_ok(c->bucket)) {
		LOG(c, LOOM_LOG_ERROR,
		    "bucket \"%s\" is not a bucket name: 3 to 63 of a-z, 0-9, '.' and '-', "
		    "beginning and ending with a letter or digit",
		    c->bucket);
		return LOOM_ECONFIG;
	}
	if (c->region[0] == '\0' || strlen(c->region) > 64 ||
	    strspn(c->region, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(c->region)) {
		LOG(c, LOOM_LOG_ERROR, "region \"%s\" is not a region name like us-east-1",
		    c->region);
		return LOOM_ECONFIG;
	}
	if (pl > 0 && (loom_key_prefix_check(c->prefix) != 0 || pl > 512)) {
		LOG(c, LOOM_LOG_ERROR,
		    "prefix \"%s\" is not a key prefix: segments of A-Z a-z 0-9 . _ - "
		    "separated by '/', at most 512 bytes",
		    c->prefix);
		return LOOM_ECONFIG;
	}
	if ((ak == NULL || *ak == '\0') && (ak = getenv("AWS_ACCESS_KEY_ID")) != NULL)
		from = "the environment";
	if (sk == NULL || *sk == '\0')
		sk = getenv("AWS_SECRET_ACCESS_KEY");
	if (ak == NULL || *ak == '\0' || sk == NULL || *sk == '\0') {
		LOG(c, LOOM_LOG_ERROR,
		    "no %s: set access_key and secret_key, or AWS_ACCESS_KEY_ID and "
		    "AWS_SECRET_ACCESS_KEY in loomd's environment",
		    ak == NULL || *ak == '\0' ? "access key" : "secret key");
		return LOOM_ECONFIG;
	}
	if (!printable(ak) || !printable(sk)) {
		LOG(c, LOOM_LOG_ERROR, "the %s holds control characters",
		    printable(ak) ? "secret key" : "access key");
		return LOOM_ECONFIG;
	}
	snprintf(c->sigv4, sizeof c->sigv4, "aws:amz:%s:s3", c->region);
	c->access = strdup(ak);
	c->secret = strdup(sk);
	c->pfx = pl == 0 ? strdup("")
	                 : xstrfmt("%s%s", c->prefix, c->prefix[pl - 1] == '/' ? "" : "/");
	{
		size_t el = strlen(c->endpoint);
		if (el > 0 && c->endpoint[el - 1] == '/')
			el--;
		c->base = xstrfmt("%.*s/%s", (int)el, c->endpoint, c->bucket);
	}
	if (c->access == NULL || c->secret == NULL || c->pfx == NULL || c->base == NULL)
		return LOOM_ENOMEM;
	if ((rv = global_up()) != 0) {
		free(c->base);
		c->base = NULL; /* fini must not call global_down */
		LOG(c, LOOM_LOG_ERROR, "libcurl cannot be initialized");
		return rv;
	}
	if (c->create_bucket && (rv = create_bucket(c)) != 0)
		return rv;
	if (c->check_on_start && (rv = check_bucket(c)) != 0) {
		if (rv == LOOM_EPERM || rv == LOOM_ENOENT || rv == LOOM_EPROTO)
			return rv; /* wrong keys, no bucket: fix the config */
		/* Down or overloaded now: requests fail until it is back. */
		LOG(c, LOOM_LOG_WARN, "%s is not answering (%s); starting anyway", c->endpoint,
		    loom_strerror(rv));
	}
	LOG(c, LOOM_LOG_INFO, "bucket %s at %s%s%s, region %s, keys from %s", c->bucket,
	    c->endpoint, pl ? ", prefix " : "", c->prefix, c->region, from);
	return 0;
}

static int
s3_init(loom_instance *ins, const loom_host *host, void *p)
{
	ctx *c = p;
	int rv;

	c->host = host;
	c->ins = ins;
	pthread_mutex_init(&c->mtx, NULL);
	/* The host calls fini only after a successful init. */
	if ((rv = init_inner(c)) != 0)
		s3_fini(c);
	return rv;
}

static const loom_storage_ops ops = {
	.size = sizeof(loom_storage_ops),
	.caps = LOOM_STORAGE_DURABLE | LOOM_STORAGE_SHARED,
	.put = s3_put,
	.get = s3_get,
	.stat = s3_stat,
	.remove = s3_remove,
	.list = s3_list,
	.read = s3_read,
	.put_if = NULL, /* S3 via Swift answers 501 to conditional PUTs */
	.write_open = s3_write_open,
	.write = s3_write,
	.write_commit = s3_write_commit,
	.write_abort = s3_write_abort,
};

LOOM_PLUGIN_DEFINE(storage_s3,
                   .kind = LOOM_KIND_STORAGE,
                   .flags = LOOM_PLUGIN_THREAD_SAFE,
                   .name = "storage-s3",
                   .version = "1.0.0",
                   .description = "blobs in an S3-compatible object store (AWS SigV4)",
                   .config = config,
                   .ctx_size = sizeof(ctx),
                   .init = s3_init,
                   .fini = s3_fini,
                   .ops = &ops)

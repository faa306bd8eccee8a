/* bench/api-load — load for loomd's REST API and WebSocket monitor, for
 * bench/api.  Prints one JSON object with the figures.
 *
 *   api-load request URL METHOD PATH CLIENTS TOTAL [BODY]
 *       TOTAL requests split over CLIENTS threads, each with its own
 *       persistent connection (HTTP/1.1 keep-alive), one request in flight
 *       per connection; latency of each from the first byte written to the
 *       last byte read.  Every answer must be 2xx.
 *       → {"n", "clients", "p50_ms", "p99_ms", "max_ms", "rate_per_s", "errors"}
 *       Every "@@@@@@@@@" (9 @) in BODY becomes the request's own number,
 *       9 digits, so each request differs (bench/inference: uncached
 *       answers).  LOOM_BENCH_RATE=R paces each client at R requests a
 *       second (open loop: request i is sent at its start + i/R, or at once
 *       when late); latency still runs from the write.
 *       LOOM_BENCH_CONTENT_TYPE sets the body's type (application/json by
 *       default; application/octet-stream sends @FILE's bytes as they are,
 *       the predict endpoint's raw f32 windows), and LOOM_BENCH_F32_AT=N
 *       makes the little-endian f32 at byte N of the body the request's
 *       number, so each binary request differs (as the 9 @ do in text).
 *
 *   api-load ws WSURL N
 *       Subscribe to a task's monitor and take N metric messages whose
 *       metric "emit_ms" is the wall-clock time (ms) the job printed it;
 *       the delay of each is the time it arrived less emit_ms.
 *       → {"n", "p50_ms", "p99_ms", "max_ms"}
 *
 * HTTP is spoken over plain POSIX sockets (not NNG's client) so the client
 * costs little next to the server it measures. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>
#include <nng/transport/ws/websocket.h>

static double
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double
wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double
pct(double *v, size_t n, double p)
{
	size_t i;
	if (n == 0)
		return 0;
	i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

/* ------------------------------------------------------------------ HTTP */

static char host[256];
static int port;

static int
dial(void)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (fd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		fprintf(stderr, "api-load: cannot connect to %s:%d: %s\n", host, port, strerror(errno));
		exit(1);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

typedef struct conn {
	int fd;
	char buf[1 << 16];
	size_t have;
} conn;

/* Read one response; its status, or -1 on a closed connection. */
static int
read_response(conn *c)
{
	size_t head_end = 0, need;
	long clen = 0;
	int status;

	for (;;) {
		char *e = c->have ? memmem(c->buf, c->have, "\r\n\r\n", 4) : NULL;
		if (e) {
			head_end = (size_t)(e - c->buf) + 4;
			break;
		}
		ssize_t n = read(c->fd, c->buf + c->have, sizeof c->buf - c->have);
		if (n <= 0)
			return -1;
		c->have += (size_t)n;
	}
	status = atoi(c->buf + 9);
	{
		char *p = c->buf;
		while (p < c->buf + head_end) {
			if (strncasecmp(p, "Content-Length:", 15) == 0)
				clen = strtol(p + 15, NULL, 10);
			p = memchr(p, '\n', (size_t)(c->buf + head_end - p));
			if (!p)
				break;
			p++;
		}
	}
	need = head_end + (size_t)clen;
	/* bodies here are small; a large one is read through and dropped */
	while (c->have < need) {
		if (c->have == sizeof c->buf) {
			need -= c->have;
			c->have = 0;
		}
		size_t want = need - c->have < sizeof c->buf - c->have ? need - c->have
		                                                      : sizeof c->buf - c->have;
		ssize_t n = read(c->fd, c->buf + c->have, want);
		if (n <= 0)
			return -1;
		c->have += (size_t)n;
	}
	memmove(c->buf, c->buf + need, c->have - need);
	c->have -= need;
	return status;
}

typedef struct worker {
	pthread_t t;
	const char *method, *path, *body;
	size_t body_len;
	size_t n, first;   /* requests, and the number of its first (for @@@) */
	double *lat;
	size_t errors;
} worker;

static void *
run_worker(void *p)
{
	worker *w = p;
	conn *c = calloc(1, sizeof *c);
	char *req, *head;
	size_t blen = w->body_len, len;
	int hlen;

	const char *token = getenv("LOOM_BENCH_TOKEN"), *ctype = getenv("LOOM_BENCH_CONTENT_TYPE");
	const char *f32_at = getenv("LOOM_BENCH_F32_AT");

	c->fd = dial();
	/* LOOM_BENCH_TOKEN: sent as a bearer token (bench/api's auth part) */
	hlen = asprintf(&head,
	                "%s %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: %s\r\n"
	                "%s%s%sContent-Length: %zu\r\n\r\n",
	                w->method, w->path, host, port, ctype ? ctype : "application/json",
	                token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "",
	                blen);
	len = (size_t)hlen + blen;
	req = malloc(len + 1);
	memcpy(req, head, (size_t)hlen);
	if (blen)
		memcpy(req + hlen, w->body, blen);
	req[len] = '\0';
	free(head);
	const char *rate_env = getenv("LOOM_BENCH_RATE");
	double rate = rate_env ? strtod(rate_env, NULL) : 0, start = now_ms();
	char *marks[64], *f32 = NULL;
	size_t n_marks = 0;
	if (f32_at) {
		size_t at = (size_t)strtoull(f32_at, NULL, 10);
		if (at + 4 > blen) {
			fprintf(stderr, "api-load: LOOM_BENCH_F32_AT=%s is past the body's %zu bytes\n",
			        f32_at, blen);
			exit(2);
		}
		f32 = req + hlen + at;
	} else {
		for (char *m = strstr(req, "@@@@@@@@@"); m && n_marks < 64; m = strstr(m + 9, "@@@@@@@@@"))
			marks[n_marks++] = m;
	}
	for (size_t i = 0; i < w->n; i++) {
		double t0;
		int status;
		for (size_t k = 0; k < n_marks; k++) {
			char digits[16];
			snprintf(digits, sizeof digits, "%09zu", (w->first + i) % 1000000000u);
			memcpy(marks[k], digits, 9);
		}
		if (f32) {
			/* every whole number up to 2^24 is a distinct f32 */
			float v = (float)((w->first + i) % 16777216u);
			uint32_t u;
			memcpy(&u, &v, 4);
			for (int b = 0; b < 4; b++)
				f32[b] = (char)(u >> (8 * b) & 0xff);
		}
		if (rate > 0) {
			double due = start + (double)i * 1e3 / rate, now = now_ms();
			if (due > now) {
				struct timespec ts = {(time_t)((due - now) / 1e3),
				                      (long)(fmod(due - now, 1e3) * 1e6)};
				nanosleep(&ts, NULL);
			}
		}
		t0 = now_ms();
		if (write(c->fd, req, len) != (ssize_t)len) {
			fprintf(stderr, "api-load: write: %s\n", strerror(errno));
			exit(1);
		}
		status = read_response(c);
		w->lat[i] = now_ms() - t0;
		if (status < 200 || status > 299) {
			if (w->errors++ < 3)
				fprintf(stderr, "api-load: %s %s answered %d\n", w->method, w->path, status);
			if (status < 0) {
				close(c->fd);
				c->fd = dial();
				c->have = 0;
			}
		}
	}
	close(c->fd);
	free(c);
	free(req);
	return NULL;
}

static int
cmd_request(const char *url, const char *method, const char *path, int clients, size_t total,
            const char *body, size_t body_len)
{
	worker *w = calloc((size_t)clients, sizeof *w);
	double *all = calloc(total, sizeof *all), t0, secs;
	size_t k = 0, errors = 0;

	if (sscanf(url, "http://%255[^:]:%d", host, &port) != 2) {
		fprintf(stderr, "api-load: URL must be http://ADDRESS:PORT\n");
		return 2;
	}
	t0 = now_ms();
	for (int i = 0; i < clients; i++) {
		w[i].method = method;
		w[i].path = path;
		w[i].body = body;
		w[i].body_len = body_len;
		w[i].n = total / (size_t)clients + ((size_t)i < total % (size_t)clients);
		w[i].first = i ? w[i - 1].first + w[i - 1].n : 0;
		w[i].lat = calloc(w[i].n + 1, sizeof(double));
		pthread_create(&w[i].t, NULL, run_worker, &w[i]);
	}
	for (int i = 0; i < clients; i++) {
		pthread_join(w[i].t, NULL);
		memcpy(all + k, w[i].lat, w[i].n * sizeof(double));
		k += w[i].n;
		errors += w[i].errors;
		free(w[i].lat);
	}
	secs = (now_ms() - t0) / 1e3;
	qsort(all, k, sizeof *all, cmp_double);
	printf("{\"n\": %zu, \"clients\": %d, \"p50_ms\": %.4f, \"p99_ms\": %.4f, \"max_ms\": %.4f, "
	       "\"rate_per_s\": %.1f, \"errors\": %zu}\n",
	       k, clients, pct(all, k, 0.50), pct(all, k, 0.99), k ? all[k - 1] : 0.0,
	       (double)k / secs, errors);
	free(all);
	free(w);
	return errors ? 1 : 0;
}

/* ------------------------------------------------------------------ WebSocket */

static int
cmd_ws(const char *url, size_t want)
{
	nng_stream_dialer *d;
	nng_stream *s;
	nng_aio *aio;
	static const char sub[] = "{\"action\":\"subscribe\",\"metrics\":[\"emit_ms\"]}";
	nng_iov iov = {(void *)sub, sizeof sub - 1};
	double *lat = calloc(want, sizeof *lat);
	size_t n = 0;
	char *buf = malloc(1 << 16);
	int rv;

	if ((rv = nng_stream_dialer_alloc(&d, url)) != 0 ||
	    (rv = nng_stream_dialer_set_bool(d, NNG_OPT_WS_SEND_TEXT, true)) != 0 ||
	    (rv = nng_stream_dialer_set_bool(d, NNG_OPT_WS_RECV_TEXT, true)) != 0 ||
	    (rv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
		fprintf(stderr, "api-load: %s: %s\n", url, nng_strerror(rv));
		return 1;
	}
	nng_aio_set_timeout(aio, 10000);
	nng_stream_dialer_dial(d, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0) {
		fprintf(stderr, "api-load: cannot connect to %s: %s\n", url, nng_strerror(rv));
		return 1;
	}
	s = nng_aio_get_output(aio, 0);
	nng_aio_set_iov(aio, 1, &iov);
	nng_stream_send(s, aio);
	nng_aio_wait(aio);
	while (n < want) {
		nng_iov in = {buf, (1 << 16) - 1};
		char *p;
		nng_aio_set_iov(aio, 1, &in);
		nng_aio_set_timeout(aio, 30000);
		nng_stream_recv(s, aio);
		nng_aio_wait(aio);
		if ((rv = nng_aio_result(aio)) != 0) {
			fprintf(stderr, "api-load: ws: %s after %zu samples\n", nng_strerror(rv), n);
			break;
		}
		double arrived = wall_ms();
		buf[nng_aio_count(aio)] = '\0';
		if (strstr(buf, "\"type\":\"metrics\"") && (p = strstr(buf, "\"emit_ms\":")) != NULL)
			lat[n++] = arrived - strtod(p + 10, NULL);
	}
	qsort(lat, n, sizeof *lat, cmp_double);
	printf("{\"n\": %zu, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f}\n", n,
	       pct(lat, n, 0.5), pct(lat, n, 0.99), n ? lat[n - 1] : 0.0);
	nng_stream_close(s);
	nng_stream_free(s);
	nng_aio_free(aio);
	nng_stream_dialer_free(d);
	free(buf);
	free(lat);
	return n == want ? 0 : 1;
}

/* A body given as @FILE: the file's contents (bodies beyond what a
 * command line holds, such as metric batches; raw bytes), its length in
 * *len. */
static char *
body_arg(const char *arg, size_t *len)
{
	FILE *fp;
	char *data;
	long n;

	*len = arg ? strlen(arg) : 0;
	if (arg == NULL || arg[0] != '@')
		return arg ? strdup(arg) : NULL;
	if ((fp = fopen(arg + 1, "rb")) == NULL || fseek(fp, 0, SEEK_END) != 0 ||
	    (n = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) != 0) {
		fprintf(stderr, "api-load: cannot read %s: %s\n", arg + 1, strerror(errno));
		exit(2);
	}
	data = malloc((size_t)n + 1);
	if (data == NULL || fread(data, 1, (size_t)n, fp) != (size_t)n) {
		fprintf(stderr, "api-load: cannot read %s\n", arg + 1);
		exit(2);
	}
	data[n] = '\0';
	fclose(fp);
	*len = (size_t)n;
	return data;
}

int
main(int argc, char **argv)
{
	if (argc >= 7 && strcmp(argv[1], "request") == 0) {
		size_t body_len;
		char *body = body_arg(argc > 7 ? argv[7] : NULL, &body_len);
		int rv = cmd_request(argv[2], argv[3], argv[4], atoi(argv[5]),
		                     (size_t)strtoull(argv[6], NULL, 10), body, body_len);
		free(body);
		return rv;
	}
	if (argc == 4 && strcmp(argv[1], "ws") == 0)
		return cmd_ws(argv[2], (size_t)strtoull(argv[3], NULL, 10));
	fprintf(stderr, "usage: api-load request URL METHOD PATH CLIENTS TOTAL [BODY|@FILE]\n"
	                "       api-load ws WSURL N\n");
	return 2;
}

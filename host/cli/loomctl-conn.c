/* loomctl's connection to loomd: where it is (a URL or a Unix socket),
 * the HTTP exchange over either, TLS, and the token sent with it; the
 * login and logout commands.
 *
 * Over http:// and https:// loomctl uses NNG's HTTP client (https with a
 * client TLS configuration: the server's certificate is verified against
 * --cacert or the system's CA bundle, and its name against the URL's
 * host).  Over the Unix socket it speaks HTTP/1.1 itself, one request per
 * connection: loomd answers every request with a Content-Length (never
 * chunked), so the answer ends where that says.
 *
 * A token never appears in a message: errors name where it came from. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <nng/supplemental/tls/tls.h>

#include "loomctl.h"
#include "host/core/util.h"

#define MAX_TOKEN 1024
#define MAX_HEAD (64 * 1024)

/* The system's CA bundles, for https:// without --cacert (mbedTLS, under
 * NNG, has no default store of its own). */
static const char *const ca_bundles[] = {
	"/etc/ssl/certs/ca-certificates.crt", /* Debian, Ubuntu, Alpine */
	"/etc/pki/tls/certs/ca-bundle.crt",   /* Fedora, RHEL */
	"/etc/ssl/cert.pem",                  /* others */
};

/* ------------------------------------------------------------------ tokens */

/* Is s usable as a token in a header: printable ASCII, no blanks? */
static bool
token_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > MAX_TOKEN)
		return false;
	for (; *s; s++)
		if (*s <= ' ' || *s > '~')
			return false;
	return true;
}

char *
token_file_path(void)
{
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");

	if (xdg && xdg[0] == '/')
		return loomi_strfmt("%s/loom/token", xdg);
	if (home && home[0])
		return loomi_strfmt("%s/.config/loom/token", home);
	return NULL;
}

/* The token in the file, or NULL when there is none; *bad after saying
 * why a file that exists cannot be used. */
static char *
token_from_file(bool *bad)
{
	char *path = token_file_path(), buf[MAX_TOKEN + 2], *tok = NULL;
	struct stat st;
	ssize_t n;
	int fd;

	*bad = false;
	if (path == NULL)
		return NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		if (errno != ENOENT) {
			fprintf(stderr, "loomctl: cannot read the token file %s: %s\n", path,
			        strerror(errno));
			*bad = true;
		}
		free(path);
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "loomctl: the token file %s is not a regular file; remove it, then "
		                "loomctl login\n",
		        path);
		*bad = true;
	} else if ((st.st_mode & 077) != 0) {
		/* as ssh refuses a private key others can read */
		fprintf(stderr, "loomctl: the token file %s can be read by other users (mode %04o): "
		                "make it private with chmod 600 %s (and revoke the token if others may "
		                "have read it)\n",
		        path, (unsigned)(st.st_mode & 07777), path);
		*bad = true;
	} else if (st.st_uid != getuid()) {
		fprintf(stderr, "loomctl: the token file %s belongs to another user (uid %u); remove "
		                "it, then loomctl login\n",
		        path, (unsigned)st.st_uid);
		*bad = true;
	} else if ((n = read(fd, buf, sizeof buf - 1)) < 0) {
		fprintf(stderr, "loomctl: cannot read the token file %s: %s\n", path, strerror(errno));
		*bad = true;
	} else {
		buf[n] = '\0';
		buf[strcspn(buf, "\r\n")] = '\0';
		if (!token_ok(buf)) {
			fprintf(stderr, "loomctl: the token file %s does not hold a token on its first "
			                "line; run loomctl login again\n",
			        path);
			*bad = true;
		} else {
			tok = loomi_strdup(buf);
		}
	}
	explicit_bzero(buf, sizeof buf);
	close(fd);
	free(path);
	return tok;
}

int
token_setup(ctl *c, const char *given)
{
	const char *env = getenv("LOOM_TOKEN");
	bool bad;

	if (given != NULL) {
		if (!token_ok(given)) {
			fprintf(stderr, "loomctl: --token: not a token (printable characters without "
			                "blanks, at most %d)\n",
			        MAX_TOKEN);
			return EXIT_USAGE;
		}
		c->token = loomi_strdup(given);
		c->token_from = "--token";
		return 0;
	}
	if (env != NULL && env[0] != '\0') {
		if (!token_ok(env)) {
			fprintf(stderr, "loomctl: LOOM_TOKEN: not a token (printable characters without "
			                "blanks, at most %d)\n",
			        MAX_TOKEN);
			return EXIT_USAGE;
		}
		c->token = loomi_strdup(env);
		c->token_from = "LOOM_TOKEN";
		return 0;
	}
	/* over the socket loomd knows who asks: the file's token is for the
	 * network */
	if (c->socket != NULL)
		return 0;
	c->token = token_from_file(&bad);
	if (bad)
		return EXIT_USAGE;
	if (c->token)
		c->token_from = "the token file";
	return 0;
}

/* ------------------------------------------------------------------ over the Unix socket */

static int
ms_until(const struct timespec *deadline)
{
	struct timespec now;
	int64_t ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (int64_t)(deadline->tv_sec - now.tv_sec) * 1000 +
	     (deadline->tv_nsec - now.tv_nsec) / 1000000;
	return ms < 0 ? 0 : ms > INT32_MAX ? INT32_MAX : (int)ms;
}

/* Wait for fd to be ready for events before the deadline: 0, or ETIMEDOUT
 * / errno. */
static int
wait_fd(int fd, short events, const struct timespec *deadline)
{
	struct pollfd p = {.fd = fd, .events = events};
	int rv;

	do
		rv = poll(&p, 1, ms_until(deadline));
	while (rv < 0 && errno == EINTR);
	return rv > 0 ? 0 : rv == 0 ? ETIMEDOUT : errno;
}

typedef struct raw_answer {
	int status;
	char *data; /* the whole answer: head and body (not a sunk body) */
	size_t len, cap;
	size_t body_off, body_len;
	char *header; /* the value of the header the request asked for */
	bool sinking; /* a 200 body goes to outgoing.sink */
	size_t sunk;  /* bytes of it handed over */
	int sink_err; /* the sink's errno, when it failed */
} raw_answer;

/* Where a sunk body is received: pieces of this size. */
#define SINK_PIECE (1u << 20)

/* The value of header name in the head data[0..len) (lines ending in
 * "\r\n"), blanks around it trimmed (malloc'd), or NULL. */
static char *
head_value(const char *data, size_t len, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = data, *end = data + len; p < end;) {
		const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		if (eol == NULL)
			eol = end;
		if ((size_t)(eol - p) > n && p[n] == ':' && strncasecmp(p, name, n) == 0) {
			const char *v = p + n + 1, *ve = eol;
			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			char *out = loomi_xmalloc((size_t)(ve - v) + 1);
			memcpy(out, v, (size_t)(ve - v));
			out[ve - v] = '\0';
			return out;
		}
		p = eol + 2;
	}
	return NULL;
}

/* One exchange over the Unix socket: 0, or an errno with *what saying
 * which step failed. */
static int
unix_transact(const ctl *c, const outgoing *q, raw_answer *a, const char **what)
{
	struct sockaddr_un sun;
	struct timespec deadline;
	char *head, clen[160] = "";
	const char *body = q->body;
	size_t hlen, off = 0, blen = q->len;
	int fd, e = 0;

	*what = NULL;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += c->timeout_ms / 1000;
	deadline.tv_nsec += (long)(c->timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(c->socket) >= sizeof sun.sun_path) {
		*what = "the path is too long for a Unix socket";
		return ENAMETOOLONG;
	}
	memcpy(sun.sun_path, c->socket, strlen(c->socket));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		*what = "socket";
		return errno;
	}
	/* a Unix socket's connect does not wait for the server: it succeeds
	 * at once or fails (EAGAIN when its backlog is full) */
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
		e = errno;
		*what = "connect";
		close(fd);
		return e;
	}

	if (q->ctype)
		snprintf(clen, sizeof clen, "Content-Type: %s\r\nContent-Length: %zu\r\n", q->ctype,
		         blen);
	head = loomi_strfmt("%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
	                    "Connection: close\r\nUser-Agent: loomctl\r\n%s%s%s%s\r\n",
	                    q->method, q->path, c->token ? "Authorization: Bearer " : "",
	                    c->token ? c->token : "", c->token ? "\r\n" : "", clen);
	hlen = strlen(head);
	/* send the head, then the body */
	for (int part = 0; part < 2 && e == 0; part++) {
		const char *p = part ? body : head;
		size_t n = part ? blen : hlen;
		for (off = 0; off < n && e == 0;) {
			ssize_t k;
			if ((e = wait_fd(fd, POLLOUT, &deadline)) != 0)
				break;
			k = send(fd, p + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (k > 0)
				off += (size_t)k;
			else if (errno != EAGAIN && errno != EINTR)
				e = errno;
		}
	}
	explicit_bzero(head, hlen); /* it may hold the token */
	free(head);
	if (e != 0) {
		*what = "send";
		close(fd);
		return e;
	}

	/* the answer: a head, then Content-Length bytes */
	memset(a, 0, sizeof *a);
	for (;;) {
		ssize_t k;
		char *end;
		if (a->sinking && a->cap - a->len < SINK_PIECE) {
			/* a sunk body is received into one reused piece */
			a->cap = a->len + SINK_PIECE + 1;
			a->data = loomi_xrealloc(a->data, a->cap);
		} else if (a->body_off != 0 && !a->sinking && a->cap < a->body_off + a->body_len + 1) {
			/* the length is known: room for all of it at once */
			a->cap = a->body_off + a->body_len + 1;
			a->data = loomi_xrealloc(a->data, a->cap);
		} else if (a->cap - a->len < 16384) {
			a->cap = a->cap ? a->cap * 2 : 65536;
			a->data = loomi_xrealloc(a->data, a->cap);
		}
		if ((e = wait_fd(fd, POLLIN, &deadline)) != 0)
			break;
		k = recv(fd, a->data + a->len, a->cap - a->len - 1, MSG_DONTWAIT);
		if (k < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			e = errno;
			break;
		}
		a->len += (size_t)k;
		a->data[a->len] = '\0';
		if (a->body_off == 0 && (end = strstr(a->data, "\r\n\r\n")) != NULL) {
			const char *cl;
			char *line_end;
			a->body_off = (size_t)(end - a->data) + 4;
			*end = '\0'; /* the head as a string, for a moment */
			if (sscanf(a->data, "HTTP/1.%*d %d", &a->status) != 1) {
				*end = '\r';
				e = EPROTO;
				*what = "an answer that is not HTTP/1.x";
				break;
			}
			a->body_len = 0;
			for (cl = strstr(a->data, "\r\n"); cl; cl = strstr(cl + 2, "\r\n")) {
				if (strncasecmp(cl + 2, "Content-Length:", 15) == 0)
					a->body_len = (size_t)strtoull(cl + 17, &line_end, 10);
				else if (strncasecmp(cl + 2, "Transfer-Encoding:", 18) == 0) {
					e = EPROTO;
					*what = "a chunked answer (loomd never sends one)";
				}
			}
			if (e == 0 && q->header)
				a->header = head_value(a->data, a->body_off - 4, q->header);
			*end = '\r';
			if (e != 0)
				break;
			a->sinking = q->sink != NULL && a->status == 200;
			if (a->sinking && q->on_head)
				q->on_head(q->sink_arg, a->header, a->body_len);
		} else if (a->body_off == 0 && a->len > MAX_HEAD) {
			e = EPROTO;
			*what = "an answer whose head is too long";
			break;
		}
		if (a->sinking && a->len > a->body_off) {
			size_t n = a->len - a->body_off;
			if (n > a->body_len - a->sunk)
				n = a->body_len - a->sunk;
			if (n > 0 && (e = q->sink(q->sink_arg, a->data + a->body_off, n)) != 0) {
				a->sink_err = e;
				*what = "writing the answer";
				break;
			}
			a->sunk += n;
			a->len = a->body_off; /* the piece is reused */
			a->data[a->len] = '\0';
			if (a->sunk >= a->body_len)
				break;
		} else if (a->body_off != 0 && !a->sinking && a->len - a->body_off >= a->body_len) {
			break;
		}
		if (k == 0) {
			e = ECONNRESET;
			*what = a->len ? "the connection closed in the middle of the answer"
			               : "the connection closed before an answer";
			break;
		}
	}
	close(fd);
	if (e != 0 && *what == NULL)
		*what = e == ETIMEDOUT ? "waiting for the answer" : "recv";
	return e;
}

/* ------------------------------------------------------------------ over HTTP(S) */

/* The client TLS configuration for an https:// URL: the server's
 * certificate is verified against cacert (or the system's bundle) and its
 * name against host.  0, or EXIT_USAGE after saying why. */
static int
tls_client(const ctl *c, const char *host, nng_tls_config **out)
{
	nng_tls_config *tls = NULL;
	const char *ca = c->cacert;
	int rv;

	*out = NULL;
	if (ca == NULL) {
		for (size_t i = 0; i < sizeof ca_bundles / sizeof ca_bundles[0] && !ca; i++)
			if (access(ca_bundles[i], R_OK) == 0)
				ca = ca_bundles[i];
		if (ca == NULL) {
			fprintf(stderr, "loomctl: no CA certificates to verify %s with: give the CA "
			                "that signed loomd's certificate with --cacert FILE or "
			                "LOOM_CACERT\n",
			        c->url);
			return EXIT_USAGE;
		}
	} else if (access(ca, R_OK) != 0) {
		fprintf(stderr, "loomctl: --cacert \"%s\": cannot read it: %s\n", ca, strerror(errno));
		return EXIT_USAGE;
	}
	if ((rv = nng_tls_config_alloc(&tls, NNG_TLS_MODE_CLIENT)) != 0) {
		fprintf(stderr, "loomctl: cannot set up TLS: %s%s\n", nng_strerror(rv),
		        rv == NNG_ENOTSUP ? " (this NNG was built without TLS)" : "");
		return EXIT_USAGE;
	}
	if ((rv = nng_tls_config_auth_mode(tls, NNG_TLS_AUTH_MODE_REQUIRED)) != 0 ||
	    (rv = nng_tls_config_server_name(tls, host)) != 0) {
		fprintf(stderr, "loomctl: cannot set up TLS for %s: %s\n", host, nng_strerror(rv));
		nng_tls_config_free(tls);
		return EXIT_USAGE;
	}
	if ((rv = nng_tls_config_ca_file(tls, ca)) != 0) {
		fprintf(stderr, "loomctl: %s \"%s\": no CA certificate in it that TLS can use (%s): "
		                "give a PEM file (\"-----BEGIN CERTIFICATE-----\")\n",
		        c->cacert ? "--cacert" : "the CA bundle", ca, nng_strerror(rv));
		nng_tls_config_free(tls);
		return EXIT_USAGE;
	}
	*out = tls;
	return 0;
}

/* An exchange whose 200 body goes to q->sink: NNG's connection API,
 * so that the body is read in pieces into one reused buffer instead of
 * being collected whole (transact allocates it, then it was copied).
 * An answer other than 200 is read whole into res, as transact does.
 * An NNG error, or 0; a sink failure: a->sink_err (said here). */
static int
nng_sink_exchange(nng_http_client *client, nng_http_req *req, nng_http_res *res,
                  nng_aio *aio, const outgoing *q, raw_answer *a)
{
	nng_http_conn *conn;
	const char *h;
	char *buf = NULL, *end;
	size_t want = 0;
	int rv;

	nng_http_client_connect(client, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0)
		return rv;
	conn = nng_aio_get_output(aio, 0);
	nng_http_conn_write_req(conn, req, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) == 0) {
		nng_http_conn_read_res(conn, res, aio);
		nng_aio_wait(aio);
		rv = nng_aio_result(aio);
	}
	if (rv == 0 && (h = nng_http_res_get_header(res, "Content-Length")) != NULL) {
		errno = 0;
		want = (size_t)strtoull(h, &end, 10);
		if (errno != 0 || end == h)
			rv = NNG_EPROTO;
	} else if (rv == 0) {
		rv = NNG_EPROTO; /* loomd always sends a length */
	}
	if (rv == 0 && nng_http_res_get_status(res) != 200) {
		/* an error: read whole, as transact does */
		if (want > 0 && want <= (64u << 20)) {
			nng_iov iov;
			buf = loomi_xmalloc(want);
			iov.iov_buf = buf;
			iov.iov_len = want;
			nng_aio_set_iov(aio, 1, &iov);
			nng_http_conn_read_all(conn, aio);
			nng_aio_wait(aio);
			if ((rv = nng_aio_result(aio)) == 0)
				rv = nng_http_res_copy_data(res, buf, want);
			free(buf);
		} else if (want > 0) {
			rv = NNG_EMSGSIZE; /* an error's body is short */
		}
	} else if (rv == 0) {
		a->status = 200;
		a->sinking = true;
		if (q->header && (h = nng_http_res_get_header(res, q->header)) != NULL)
			a->header = loomi_strdup(h);
		if (q->on_head)
			q->on_head(q->sink_arg, a->header, want);
		buf = loomi_xmalloc(SINK_PIECE);
		while (a->sunk < want) {
			nng_iov iov = {.iov_buf = buf,
			               .iov_len = want - a->sunk < SINK_PIECE ? want - a->sunk
			                                                      : SINK_PIECE};
			size_t n;
			nng_aio_set_iov(aio, 1, &iov);
			nng_http_conn_read(conn, aio);
			nng_aio_wait(aio);
			if ((rv = nng_aio_result(aio)) != 0)
				break;
			if ((n = nng_aio_count(aio)) == 0) {
				rv = NNG_ECONNSHUT;
				break;
			}
			if ((a->sink_err = q->sink(q->sink_arg, buf, n)) != 0) {
				fprintf(stderr, "loomctl: cannot write the answer to %s %s: %s\n",
				        q->method, q->path, strerror(a->sink_err));
				break;
			}
			a->sunk += n;
		}
		free(buf);
	}
	nng_http_conn_close(conn);
	return rv;
}

/* One exchange through NNG's HTTP client: 0 with a filled, or
 * EXIT_UNREACHABLE / EXIT_USAGE after saying why. */
static int
nng_transact(const ctl *c, const outgoing *q, raw_answer *a)
{
	char *full = NULL, *auth = NULL;
	nng_url *url = NULL;
	nng_http_client *client = NULL;
	nng_http_req *req = NULL;
	nng_http_res *res = NULL;
	nng_tls_config *tls = NULL;
	nng_aio *aio = NULL;
	const char *h;
	void *data;
	size_t len, bl;
	bool https;
	int rv, ret = EXIT_UNREACHABLE;

	/* Parse only the base URL: path is already percent-encoded and must
	 * reach the daemon as it is. */
	if ((rv = nng_url_parse(&url, c->url)) != 0 ||
	    (strcmp(url->u_scheme, "http") != 0 && strcmp(url->u_scheme, "https") != 0)) {
		fprintf(stderr, "loomctl: \"%s\" is not an http:// or https:// URL; give --url like "
		                "%s\n",
		        c->url, DEFAULT_URL);
		ret = EXIT_USAGE;
		goto out;
	}
	https = strcmp(url->u_scheme, "https") == 0;
	bl = strlen(url->u_path);
	while (bl > 0 && url->u_path[bl - 1] == '/')
		bl--;
	full = loomi_xmalloc(bl + strlen(q->path) + 1);
	memcpy(full, url->u_path, bl);
	strcpy(full + bl, q->path);
	if ((rv = nng_http_client_alloc(&client, url)) != 0 ||
	    (rv = nng_http_req_alloc(&req, url)) != 0 || (rv = nng_http_res_alloc(&res)) != 0 ||
	    (rv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
		fprintf(stderr, "loomctl: %s\n", nng_strerror(rv));
		goto out;
	}
	if (https) {
		if ((ret = tls_client(c, url->u_hostname, &tls)) != 0)
			goto out;
		ret = EXIT_UNREACHABLE;
		if ((rv = nng_http_client_set_tls(client, tls)) != 0) {
			fprintf(stderr, "loomctl: cannot use TLS for %s: %s\n", c->url, nng_strerror(rv));
			goto out;
		}
	} else if (c->cacert != NULL) {
		fprintf(stderr, "loomctl: --cacert is for https:// URLs, and %s is not one\n", c->url);
		ret = EXIT_USAGE;
		goto out;
	}
	nng_http_req_set_method(req, q->method);
	nng_http_req_set_uri(req, full);
	nng_http_req_set_header(req, "Accept", "application/json");
	if (c->token) {
		auth = loomi_strfmt("Bearer %s", c->token);
		nng_http_req_set_header(req, "Authorization", auth);
	}
	if (q->ctype) {
		nng_http_req_set_header(req, "Content-Type", q->ctype);
		/* not copied: q->body outlives req */
		nng_http_req_set_data(req, q->body, q->len);
	}
	nng_aio_set_timeout(aio, c->timeout_ms);
	if (q->sink != NULL) {
		rv = nng_sink_exchange(client, req, res, aio, q, a);
		if (a->sink_err != 0) {
			ret = EXIT_UNREACHABLE;
			goto out;
		}
	} else {
		nng_http_client_transact(client, req, res, aio);
		nng_aio_wait(aio);
		rv = nng_aio_result(aio);
	}
	if (rv != 0) {
		unsigned char ip[16];
		bool literal = inet_pton(AF_INET, url->u_hostname, ip) == 1 ||
		               inet_pton(AF_INET6, url->u_hostname, ip) == 1;
		if (https && (rv == NNG_EPEERAUTH || rv == NNG_ECRYPTO))
			fprintf(stderr, "loomctl: the TLS handshake with %s failed: %s: loomd's "
			                "certificate is not signed by %s, or is not for \"%s\" (give the "
			                "CA that signed it with --cacert FILE or LOOM_CACERT, and the name "
			                "the certificate is for in the URL%s)\n",
			        c->url, nng_strerror(rv), c->cacert ? c->cacert : "the system's CAs",
			        url->u_hostname,
			        literal ? "; NNG's TLS checks DNS names only, not IP addresses: use "
			                  "a name such as localhost"
			                : "");
		else if (!https && (rv == NNG_ECONNSHUT || rv == NNG_ECLOSED))
			fprintf(stderr, "loomctl: loomd at %s closed the connection: %s; if it serves "
			                "HTTPS (api.tls in loomd.conf), use an https:// URL\n",
			        c->url, nng_strerror(rv));
		else
			fprintf(stderr, "loomctl: cannot reach loomd at %s: %s; is it running? (start it "
			                "with `loomd -c FILE`, or point --url or LOOM_URL at it)\n",
			        c->url, nng_strerror(rv));
		goto out;
	}
	if (a->sinking) {
		ret = 0;
		goto out;
	}
	a->status = nng_http_res_get_status(res);
	if (q->header && (h = nng_http_res_get_header(res, q->header)) != NULL)
		a->header = loomi_strdup(h);
	nng_http_res_get_data(res, &data, &len);
	a->data = loomi_xmalloc(len + 1);
	memcpy(a->data, data, len);
	a->data[len] = '\0';
	a->len = a->body_len = len;
	a->body_off = 0;
	ret = 0;
out:
	if (auth) {
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	if (aio)
		nng_aio_free(aio);
	if (res)
		nng_http_res_free(res);
	if (req)
		nng_http_req_free(req);
	if (client)
		nng_http_client_free(client);
	if (tls)
		nng_tls_config_free(tls);
	if (url)
		nng_url_free(url);
	free(full);
	return ret;
}

/* ------------------------------------------------------------------ the exchange */

int
exchange_req(const ctl *c, const outgoing *q, reply *out)
{
	raw_answer a = {0};
	const char *data, *what = NULL;
	size_t len;
	int rv;

	if (c->socket != NULL) {
		if ((rv = unix_transact(c, q, &a, &what)) != 0 && a.sink_err != 0) {
			fprintf(stderr, "loomctl: cannot write the answer to %s %s: %s\n", q->method,
			        q->path, strerror(a.sink_err));
			free(a.data);
			free(a.header);
			return EXIT_REFUSED;
		} else if (rv != 0) {
			fprintf(stderr, "loomctl: cannot reach loomd on the socket %s: %s (%s)%s\n",
			        c->socket, strerror(rv), what,
			        rv == ENOENT || rv == ECONNREFUSED
			            ? "; is it running? (start it with `loomd -c FILE`, or point "
			              "--socket, --url, LOOM_SOCKET or LOOM_URL at it)"
			        : rv == EACCES ? "; loomd's api.socket_mode does not let this user in: "
			                         "ask its admin, or use --url with a token"
			                       : "");
			free(a.data);
			free(a.header);
			return EXIT_UNREACHABLE;
		}
	} else if ((rv = nng_transact(c, q, &a)) != 0) {
		free(a.data);
		free(a.header);
		return a.sink_err != 0 ? EXIT_REFUSED : rv;
	}
	out->status = a.status;
	out->header = a.header;
	if (a.sinking) {
		out->len = a.sunk;
		free(a.data);
		return 0;
	}
	data = a.data + a.body_off;
	len = a.body_len;
	if (q->text && out->status == 200) {
		out->text = loomi_xmalloc(len + 1);
		memcpy(out->text, data, len);
		out->text[len] = '\0';
		out->len = len;
		free(a.data);
		return 0;
	}
	out->body = len ? json_loadb(data, len, 0, NULL) : NULL;
	free(a.data);
	if (len && out->body == NULL) {
		fprintf(stderr, "loomctl: %s answered %s %s with %d and a body that is not JSON; is "
		                "it a loomd?\n",
		        c->where, q->method, q->path, out->status);
		return EXIT_REFUSED;
	}
	return 0;
}

int
exchange(const ctl *c, const char *method, const char *path, const char *body, bool text,
         reply *out)
{
	outgoing q = {.method = method, .path = path, .text = text};

	if (body) {
		q.ctype = "application/json";
		q.body = body;
		q.len = strlen(body);
	}
	return exchange_req(c, &q, out);
}

int
http(const ctl *c, const char *method, const char *path, const char *body, reply *out)
{
	return exchange(c, method, path, body, false, out);
}

/* ------------------------------------------------------------------ login, logout */

/* Read one line from stdin, without echo on a terminal. */
static char *
read_secret(const char *prompt)
{
	struct termios old, quiet;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
	char buf[MAX_TOKEN + 2], *out = NULL;

	if (tty) {
		fputs(prompt, stderr);
		fflush(stderr);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		quiet.c_lflag |= ECHONL;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	if (fgets(buf, sizeof buf, stdin) != NULL) {
		buf[strcspn(buf, "\r\n")] = '\0';
		out = loomi_strdup(buf);
	}
	if (tty)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	explicit_bzero(buf, sizeof buf);
	return out;
}

/* Write the token file: the directory 0700, the file 0600 from the start,
 * replaced whole by rename. */
static int
token_file_write(const char *path, const char *token)
{
	char *dir = loomi_strdup(path), *tmp = loomi_strfmt("%s.new", path), *slash;
	int fd, e = 0;
	size_t n = strlen(token);

	if ((slash = strrchr(dir, '/')) != NULL)
		*slash = '\0';
	if ((e = loomi_mkdir_p(dir, 0700)) != 0) {
		fprintf(stderr, "loomctl: cannot make the directory %s: %s\n", dir, strerror(e));
		goto out;
	}
	unlink(tmp);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
		e = errno;
		fprintf(stderr, "loomctl: cannot write %s: %s\n", tmp, strerror(e));
		goto out;
	}
	if (fchmod(fd, 0600) != 0 || write(fd, token, n) != (ssize_t)n || write(fd, "\n", 1) != 1 ||
	    fsync(fd) != 0)
		e = errno ? errno : EIO;
	if (close(fd) != 0 && e == 0)
		e = errno;
	if (e == 0 && rename(tmp, path) != 0)
		e = errno;
	if (e != 0) {
		fprintf(stderr, "loomctl: cannot write the token file %s: %s\n", path, strerror(e));
		unlink(tmp);
	}
out:
	free(dir);
	free(tmp);
	return e;
}

int
cmd_login(ctl *c, int argc, char **argv)
{
	char *path = token_file_path(), *token;
	reply r = {0};
	int rv;

	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "loomctl: login takes no arguments: it reads the token from standard "
		                "input\n");
		free(path);
		return EXIT_USAGE;
	}
	if (path == NULL) {
		fprintf(stderr, "loomctl: login: neither XDG_CONFIG_HOME nor HOME is set, so there is "
		                "no place for the token file; use LOOM_TOKEN instead\n");
		return EXIT_USAGE;
	}
	if ((token = read_secret("Token: ")) == NULL || !token_ok(token)) {
		fprintf(stderr, "loomctl: login: no token on standard input (one line, as loomctl "
		                "tokens create printed it)\n");
		free(token);
		free(path);
		return EXIT_USAGE;
	}
	/* the token read is the one checked, over whichever connection */
	free(c->token);
	c->token = token;
	c->token_from = "standard input";
	if ((rv = http(c, "GET", "/api/v1/session", NULL, &r)) != 0) {
		free(path);
		return rv;
	}
	if (r.status == 404 && json_object_get(r.body, "error")) {
		fprintf(stderr, "loomctl: login: %s has no sign-in (GET /api/v1/session): it is older "
		                "than tokens; nothing written\n",
		        c->where);
		rv = EXIT_REFUSED;
	} else if (r.status != 200) {
		fprintf(stderr, "loomctl: login: loomd did not accept the token; nothing written\n");
		rv = refused(c, &r);
	} else if (token_file_write(path, token) != 0) {
		rv = EXIT_REFUSED;
	} else if (c->json) {
		rv = print_json(&r);
	} else {
		printf("signed in to %s as %s (%s); the token is in %s\n", c->where,
		       S(r.body, "user"), S(r.body, "role"), path);
		rv = 0;
	}
	json_decref(r.body);
	free(path);
	return rv;
}

int
cmd_logout(ctl *c, int argc, char **argv)
{
	char *path = token_file_path();
	int rv = 0;

	(void)c;
	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "loomctl: logout takes no arguments\n");
		free(path);
		return EXIT_USAGE;
	}
	if (path == NULL) {
		printf("no token file (neither XDG_CONFIG_HOME nor HOME is set): nothing to do\n");
	} else if (unlink(path) == 0) {
		printf("removed %s; the token itself stays valid until it expires or is revoked "
		       "(loomctl tokens revoke ID)\n",
		       path);
	} else if (errno == ENOENT) {
		printf("no token file at %s: nothing to do\n", path);
	} else {
		fprintf(stderr, "loomctl: cannot remove %s: %s\n", path, strerror(errno));
		rv = EXIT_REFUSED;
	}
	free(path);
	return rv;
}

char *
path_segment(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = loomi_xmalloc(3 * strlen(s) + 1), *o = out;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    *p == '-' || *p == '_' || *p == '.' || *p == '~') {
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

/* ws-watch — a WebSocket client of loomd's task monitor, through NNG's ws
 * client (as a browser would connect: no NNG subprotocol).  For the
 * integration tests.
 *
 *   ws-watch URL [SEND] [--until-status S] [--timeout SECONDS] [--cacert FILE]
 *
 * Connects to URL (ws://HOST:PORT/api/v1/training/tasks/ID/monitor, or
 * wss:// verified against the CA in FILE and the URL's host), sends
 * SEND (a JSON text) if given, then prints each message it receives on a
 * line of its own until a {"type":"state"} message with status S arrives
 * (exit 0), the connection closes (exit 1) or the timeout passes (exit 1).
 * A failed handshake exits 2. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>
#include <nng/supplemental/tls/tls.h>
#include <nng/transport/ws/websocket.h>

int
main(int argc, char **argv)
{
	const char *url = NULL, *send = NULL, *until = NULL, *cacert = NULL;
	nng_tls_config *tls = NULL;
	nng_url *u = NULL;
	double timeout_s = 60;
	nng_stream_dialer *d = NULL;
	nng_stream *s = NULL;
	nng_aio *aio = NULL;
	nng_time deadline;
	char *buf;
	int rv;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--until-status") == 0 && i + 1 < argc)
			until = argv[++i];
		else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
			timeout_s = atof(argv[++i]);
		else if (strcmp(argv[i], "--cacert") == 0 && i + 1 < argc)
			cacert = argv[++i];
		else if (url == NULL)
			url = argv[i];
		else if (send == NULL)
			send = argv[i];
		else {
			fprintf(stderr, "usage: ws-watch URL [SEND] [--until-status S] [--timeout S] "
			                "[--cacert FILE]\n");
			return 2;
		}
	}
	if (url == NULL) {
		fprintf(stderr, "usage: ws-watch URL [SEND] [--until-status S] [--timeout S] "
			                "[--cacert FILE]\n");
		return 2;
	}
	if ((rv = nng_stream_dialer_alloc(&d, url)) != 0 ||
	    (rv = nng_stream_dialer_set_bool(d, NNG_OPT_WS_SEND_TEXT, true)) != 0 ||
	    (rv = nng_stream_dialer_set_bool(d, NNG_OPT_WS_RECV_TEXT, true)) != 0 ||
	    (rv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
		fprintf(stderr, "ws-watch: %s: %s\n", url, nng_strerror(rv));
		rv = 2;
		goto out;
	}
	if (cacert &&
	    ((rv = nng_url_parse(&u, url)) != 0 ||
	     (rv = nng_tls_config_alloc(&tls, NNG_TLS_MODE_CLIENT)) != 0 ||
	     (rv = nng_tls_config_auth_mode(tls, NNG_TLS_AUTH_MODE_REQUIRED)) != 0 ||
	     (rv = nng_tls_config_ca_file(tls, cacert)) != 0 ||
	     (rv = nng_tls_config_server_name(tls, u->u_hostname)) != 0 ||
	     (rv = nng_stream_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, tls)) != 0)) {
		fprintf(stderr, "ws-watch: TLS for %s with %s: %s\n", url, cacert, nng_strerror(rv));
		rv = 2;
		goto out;
	}
	/* LOOM_TOKEN: sent as a bearer token, as loomctl does */
	if (getenv("LOOM_TOKEN") && *getenv("LOOM_TOKEN")) {
		char hdr[256];
		snprintf(hdr, sizeof hdr, "Authorization: Bearer %s\r\n", getenv("LOOM_TOKEN"));
		if ((rv = nng_stream_dialer_set_string(d, NNG_OPT_WS_REQUEST_HEADERS, hdr)) != 0) {
			fprintf(stderr, "ws-watch: cannot send a token: %s\n", nng_strerror(rv));
			rv = 2;
			goto out;
		}
	}
	nng_aio_set_timeout(aio, 10000);
	nng_stream_dialer_dial(d, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0) {
		fprintf(stderr, "ws-watch: cannot connect to %s: %s\n", url, nng_strerror(rv));
		rv = 2;
		goto out;
	}
	s = nng_aio_get_output(aio, 0);
	if (send) {
		nng_iov iov = {(void *)send, strlen(send)};
		nng_aio_set_iov(aio, 1, &iov);
		nng_stream_send(s, aio);
		nng_aio_wait(aio);
		if ((rv = nng_aio_result(aio)) != 0) {
			fprintf(stderr, "ws-watch: send: %s\n", nng_strerror(rv));
			rv = 1;
			goto out;
		}
	}
	buf = malloc(1 << 20);
	deadline = nng_clock() + (nng_time)(timeout_s * 1000);
	rv = 1;
	for (;;) {
		nng_iov iov = {buf, (1 << 20) - 1};
		nng_time now = nng_clock();
		size_t n;
		if (now >= deadline) {
			fprintf(stderr, "ws-watch: timed out after %g s\n", timeout_s);
			break;
		}
		nng_aio_set_iov(aio, 1, &iov);
		nng_aio_set_timeout(aio, (nng_duration)(deadline - now));
		nng_stream_recv(s, aio);
		nng_aio_wait(aio);
		if (nng_aio_result(aio) != 0) {
			fprintf(stderr, "ws-watch: %s\n", nng_strerror(nng_aio_result(aio)));
			break;
		}
		n = nng_aio_count(aio);
		buf[n] = '\0';
		printf("%s\n", buf);
		fflush(stdout);
		if (until && strstr(buf, "\"type\":\"state\"")) {
			char want[128];
			snprintf(want, sizeof want, "\"status\":\"%s\"", until);
			if (strstr(buf, want)) {
				rv = 0;
				break;
			}
		}
	}
	free(buf);
out:
	if (s) {
		nng_stream_close(s);
		nng_stream_free(s);
	}
	if (aio)
		nng_aio_free(aio);
	if (d)
		nng_stream_dialer_free(d);
	if (tls)
		nng_tls_config_free(tls);
	if (u)
		nng_url_free(u);
	return rv;
}

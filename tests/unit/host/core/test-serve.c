/* The inference workers' wire format (host/core/serve.c): round trips of
 * every message kind, and the checks on receipt — truncated and oversized
 * messages, a wrong magic or version, unknown ops and flags, dims that do
 * not fit the payload, non-finite inputs named by window, step and channel
 * — then the client against a reply socket in this process. */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include <loom/loom.h>

#include "host/core/serve.h"
#include "host/core/util.h"
#include "testutil.h"

static float *
windows(uint32_t B, uint32_t L, uint32_t C)
{
	float *w = malloc((size_t)B * L * C * sizeof *w);
	for (uint32_t i = 0; i < B * L * C; i++)
		w[i] = (float)i * 0.25f - 3.0f;
	return w;
}

static void
poke32(void *buf, size_t at, uint32_t v)
{
	unsigned char *p = buf;
	for (int i = 0; i < 4; i++)
		p[at + (size_t)i] = (unsigned char)(v >> (8 * i));
}

START_TEST(request_round_trip)
{
	float *w = windows(3, 5, 2), got[30];
	void *buf;
	size_t len;
	loomi_serve_msg m;
	char why[256] = "";

	ck_assert_int_eq(loomi_serve_encode_request(LOOMI_SERVE_PREDICT, 77, LOOMI_SERVE_UNCERTAINTY,
	                                            8, w, 3, 5, 2, &buf, &len),
	                 0);
	ck_assert_uint_eq(len, LOOMI_SERVE_HEADER + 30 * 4);
	/* the header's bytes as docs/inference.md gives them */
	ck_assert_int_eq(memcmp(buf, "LSRV", 4), 0);
	ck_assert_int_eq(((unsigned char *)buf)[4], 1);
	ck_assert_int_eq(((unsigned char *)buf)[6], 3);
	ck_assert_int_eq(((unsigned char *)buf)[16], 77);
	ck_assert_int_eq(loomi_serve_decode_request(buf, len, &m, why, sizeof why), 0);
	ck_assert_uint_eq(m.op, LOOMI_SERVE_PREDICT);
	ck_assert_uint_eq(m.id, 77);
	ck_assert_uint_eq(m.flags, LOOMI_SERVE_UNCERTAINTY);
	ck_assert_uint_eq(m.passes, 8);
	ck_assert_uint_eq(m.ndim, 3);
	ck_assert_uint_eq(m.dims[0], 3);
	ck_assert_uint_eq(m.dims[1], 5);
	ck_assert_uint_eq(m.dims[2], 2);
	ck_assert_uint_eq(m.length, 120);
	memcpy(got, m.payload, sizeof got);
	ck_assert_int_eq(memcmp(got, w, sizeof got), 0);
	free(buf);

	/* ping and info */
	for (uint16_t op = LOOMI_SERVE_PING; op <= LOOMI_SERVE_INFO; op++) {
		ck_assert_int_eq(loomi_serve_encode_request(op, 5, 0, 0, NULL, 0, 0, 0, &buf, &len), 0);
		ck_assert_uint_eq(len, LOOMI_SERVE_HEADER);
		ck_assert_int_eq(loomi_serve_decode_request(buf, len, &m, why, sizeof why), 0);
		ck_assert_uint_eq(m.op, op);
		ck_assert_uint_eq(m.id, 5);
		free(buf);
	}
	/* over the limits: refused by the encoder */
	ck_assert_int_eq(loomi_serve_encode_request(LOOMI_SERVE_PREDICT, 1, 0, 0, w,
	                                            LOOMI_SERVE_MAX_WINDOWS + 1, 5, 2, &buf, &len),
	                 LOOM_ERANGE);
	ck_assert_int_eq(loomi_serve_encode_request(LOOMI_SERVE_PREDICT, 1, 0, 0, w, 0, 5, 2, &buf,
	                                            &len),
	                 LOOM_EINVAL);
	free(w);
}
END_TEST

START_TEST(reply_round_trip)
{
	float out[12], spread[12];
	uint32_t dims[3] = {2, 3, 2};
	void *buf;
	size_t len;
	loomi_serve_msg m;
	char why[256] = "";

	for (int i = 0; i < 12; i++) {
		out[i] = (float)i / 3.0f;
		spread[i] = (float)i * 1e-3f;
	}
	/* with a spread */
	ck_assert_int_eq(loomi_serve_encode_prediction(9, 3, dims, out, spread, 16, &buf, &len), 0);
	ck_assert_uint_eq(len, LOOMI_SERVE_HEADER + 2 * sizeof out);
	ck_assert_int_eq(loomi_serve_decode_reply(buf, len, &m, why, sizeof why), 0);
	ck_assert_uint_eq(m.flags, LOOMI_SERVE_UNCERTAINTY);
	ck_assert_uint_eq(m.passes, 16);
	ck_assert_uint_eq(m.ndim, 3);
	ck_assert_int_eq(memcmp(m.payload, out, sizeof out), 0);
	ck_assert_int_eq(memcmp((const char *)m.payload + sizeof out, spread, sizeof spread), 0);
	/* the flag without the spread's bytes is refused */
	ck_assert_int_ne(loomi_serve_decode_reply(buf, len - sizeof spread, &m, why, sizeof why), 0);
	free(buf);
	/* without: anomaly scores [B] */
	ck_assert_int_eq(loomi_serve_encode_prediction(9, 1, dims, out, NULL, 0, &buf, &len), 0);
	ck_assert_int_eq(loomi_serve_decode_reply(buf, len, &m, why, sizeof why), 0);
	ck_assert_uint_eq(m.flags, 0);
	ck_assert_uint_eq(m.length, 2 * sizeof(float));
	free(buf);
	/* an error reply and an info reply */
	ck_assert_int_eq(loomi_serve_encode_text(LOOMI_SERVE_PREDICT, 4, LOOM_EINVAL, "no good",
	                                         &buf, &len),
	                 0);
	ck_assert_int_eq(loomi_serve_decode_reply(buf, len, &m, why, sizeof why), 0);
	ck_assert_uint_eq(m.status, LOOM_EINVAL);
	ck_assert_uint_eq(m.length, 7);
	ck_assert_int_eq(memcmp(m.payload, "no good", 7), 0);
	free(buf);
	ck_assert_int_eq(loomi_serve_encode_text(LOOMI_SERVE_INFO, 4, 0, "{\"a\":1}", &buf, &len), 0);
	ck_assert_int_eq(loomi_serve_decode_reply(buf, len, &m, why, sizeof why), 0);
	ck_assert_uint_eq(m.status, 0);
	ck_assert_uint_eq(m.length, 7);
	free(buf);
}
END_TEST

/* Every prefix of a valid message is refused, and so is one byte more. */
START_TEST(truncated_and_oversized)
{
	float *w = windows(2, 4, 3);
	void *buf;
	size_t len;
	loomi_serve_msg m;
	char why[256];
	unsigned char *longer;

	ck_assert_int_eq(loomi_serve_encode_request(LOOMI_SERVE_PREDICT, 1, 0, 0, w, 2, 4, 3, &buf,
	                                            &len),
	                 0);
	for (size_t n = 0; n < len; n++) {
		why[0] = '\0';
		ck_assert_int_eq(loomi_serve_decode_request(buf, n, &m, why, sizeof why), LOOM_EPROTO);
		ck_assert(why[0] != '\0');
	}
	ck_assert_int_eq(loomi_serve_decode_request(NULL, 0, &m, why, sizeof why), LOOM_EPROTO);
	ck_assert_ptr_nonnull(strstr(why, "shorter than the 48-byte header"));
	longer = calloc(1, len + 1);
	memcpy(longer, buf, len);
	ck_assert_int_eq(loomi_serve_decode_request(longer, len + 1, &m, why, sizeof why),
	                 LOOM_EPROTO);
	ck_assert_ptr_nonnull(strstr(why, "the message has"));

	/* a batch over the limit, with a length that matches it, is refused
	 * before anything is read */
	poke32(longer, 28, LOOMI_SERVE_MAX_WINDOWS + 1);
	ck_assert_int_eq(loomi_serve_decode_request(longer, len, &m, why, sizeof why), LOOM_ERANGE);
	ck_assert_ptr_nonnull(strstr(why, "split the batch"));
	/* dims whose product overflows 32 bits, and dims that disagree with
	 * the payload */
	memcpy(longer, buf, len);
	poke32(longer, 28, 65536);
	poke32(longer, 32, 1048576);
	poke32(longer, 36, 1048576);
	ck_assert_int_eq(loomi_serve_decode_request(longer, len, &m, why, sizeof why), LOOM_ERANGE);
	memcpy(longer, buf, len);
	poke32(longer, 32, 5);
	ck_assert_int_eq(loomi_serve_decode_request(longer, len, &m, why, sizeof why), LOOM_EPROTO);
	ck_assert_ptr_nonnull(strstr(why, "[2, 5, 3] windows need 120 bytes, the payload has 96"));
	memcpy(longer, buf, len);
	poke32(longer, 28, 0);
	ck_assert_int_eq(loomi_serve_decode_request(longer, len, &m, why, sizeof why), LOOM_EPROTO);
	memcpy(longer, buf, len);
	poke32(longer, 24, 2);
	ck_assert_int_eq(loomi_serve_decode_request(longer, len, &m, why, sizeof why), LOOM_EPROTO);
	memcpy(longer, buf, len);
	poke32(longer, 40, LOOMI_SERVE_MAX_PASSES + 1);
	ck_assert_int_eq(loomi_serve_decode_request(longer, len, &m, why, sizeof why), LOOM_ERANGE);
	free(longer);
	free(buf);
	free(w);
}
END_TEST

START_TEST(wrong_magic_version_op)
{
	void *buf;
	size_t len;
	loomi_serve_msg m;
	char why[256];
	unsigned char *p;

	ck_assert_int_eq(loomi_serve_encode_request(LOOMI_SERVE_PING, 3, 0, 0, NULL, 0, 0, 0, &buf,
	                                            &len),
	                 0);
	p = buf;
	p[0] = 'X';
	ck_assert_int_eq(loomi_serve_decode_request(buf, len, &m, why, sizeof why), LOOM_EPROTO);
	ck_assert_ptr_nonnull(strstr(why, "bad magic"));
	p[0] = 'L';
	p[4] = 2;
	ck_assert_int_eq(loomi_serve_decode_request(buf, len, &m, why, sizeof why), LOOM_EPROTO);
	ck_assert_ptr_nonnull(strstr(why, "version 2; this side speaks version 1"));
	ck_assert_uint_eq(m.id, 3); /* known, so the error reply can carry it */
	p[4] = 1;
	p[6] = 9;
	ck_assert_int_eq(loomi_serve_decode_request(buf, len, &m, why, sizeof why), LOOM_EPROTO);
	ck_assert_ptr_nonnull(strstr(why, "unknown op 9"));
	p[6] = LOOMI_SERVE_PING;
	p[8] = 0x80;
	ck_assert_int_eq(loomi_serve_decode_request(buf, len, &m, why, sizeof why), LOOM_EPROTO);
	ck_assert_ptr_nonnull(strstr(why, "unknown flags"));
	p[8] = 0;
	p[12] = 1;
	ck_assert_int_eq(loomi_serve_decode_request(buf, len, &m, why, sizeof why), LOOM_EPROTO);
	p[12] = 0;
	ck_assert_int_eq(loomi_serve_decode_request(buf, len, &m, why, sizeof why), 0);
	free(buf);
}
END_TEST

START_TEST(non_finite_named)
{
	float *w = windows(4, 6, 3);
	void *buf;
	size_t len;
	loomi_serve_msg m;
	char why[256];

	/* window 2, step 5, channel 1 */
	w[(2 * 6 + 5) * 3 + 1] = NAN;
	ck_assert_int_eq(loomi_serve_encode_request(LOOMI_SERVE_PREDICT, 1, 0, 0, w, 4, 6, 3, &buf,
	                                            &len),
	                 0);
	ck_assert_int_eq(loomi_serve_decode_request(buf, len, &m, why, sizeof why), LOOM_EINVAL);
	ck_assert_str_eq(why, "predict: window 2, step 5, channel 1 is NaN; the model needs "
	                      "finite values (fill gaps first)");
	free(buf);
	w[(2 * 6 + 5) * 3 + 1] = 0;
	w[0] = INFINITY;
	ck_assert_int_eq(loomi_serve_encode_request(LOOMI_SERVE_PREDICT, 1, 0, 0, w, 4, 6, 3, &buf,
	                                            &len),
	                 0);
	ck_assert_int_eq(loomi_serve_decode_request(buf, len, &m, why, sizeof why), LOOM_EINVAL);
	ck_assert_ptr_nonnull(strstr(why, "window 0, step 0, channel 0 is infinite"));
	free(buf);
	free(w);
}
END_TEST

/* ------------------------------------------------------------------ client */

/* A reply socket answering predict with each window's sum (and, asked
 * for, its count as the spread), info with a fixed text, anything
 * malformed with the decoder's reason; n requests, then it returns. */
typedef struct server {
	nng_socket sock;
	int requests;
} server;

static void *
serve(void *arg)
{
	server *s = arg;

	for (int r = 0; r < s->requests; r++) {
		void *buf = NULL, *rep = NULL;
		size_t len = 0, rlen = 0;
		loomi_serve_msg m;
		char why[256];
		int rv;

		if (nng_recv(s->sock, &buf, &len, NNG_FLAG_ALLOC) != 0)
			break;
		if ((rv = loomi_serve_decode_request(buf, len, &m, why, sizeof why)) != 0) {
			loomi_serve_encode_text(m.op, m.id, (uint32_t)rv, why, &rep, &rlen);
		} else if (m.op == LOOMI_SERVE_PREDICT) {
			uint32_t B = m.dims[0], n = m.dims[1] * m.dims[2], dims[1] = {B};
			float *in = malloc((size_t)B * n * sizeof *in), *out = calloc(B, sizeof *out);
			float *sp = calloc(B, sizeof *sp);
			memcpy(in, m.payload, m.length);
			for (uint32_t b = 0; b < B; b++) {
				for (uint32_t i = 0; i < n; i++)
					out[b] += in[b * n + i];
				sp[b] = (float)n;
			}
			loomi_serve_encode_prediction(m.id, 1, dims, out,
			                              m.flags & LOOMI_SERVE_UNCERTAINTY ? sp : NULL, 3, &rep,
			                              &rlen);
			free(in);
			free(out);
			free(sp);
		} else if (m.op == LOOMI_SERVE_WINDOWS) {
			/* windows [2, 3, 1] holding from_line, to_line, stride; the path
			 * back as the description; "/bad" refused as a plugin would */
			char *path, *meta;
			int64_t from, to, stride;
			loomi_serve_windows_args(&m, &path, &from, &to, &stride);
			if (strcmp(path, "/bad") == 0) {
				loomi_serve_encode_text(m.op, m.id, LOOM_EINVAL,
				                        "/bad:3: column \"temp\": \"x\" is not a number", &rep,
				                        &rlen);
			} else {
				float w[6] = {(float)from, (float)to, (float)stride, 1, 2, 3};
				meta = loomi_strfmt("{\"windows\": [], \"path\": \"%s\"}", path);
				loomi_serve_encode_windows(m.id, 2, 3, 1, w, meta, &rep, &rlen);
				free(meta);
			}
			free(path);
		} else {
			loomi_serve_encode_text(m.op, m.id, 0, m.op == LOOMI_SERVE_INFO ? "{\"x\":1}" : "",
			                        &rep, &rlen);
		}
		nng_free(buf, len);
		nng_send(s->sock, rep, rlen, 0);
		free(rep);
	}
	return NULL;
}

START_TEST(client)
{
	server s = {.requests = 5};
	pthread_t t;
	loomi_serve_client *c;
	loomi_serve_result res;
	char *err = NULL, *info = NULL;
	float w[2 * 3 * 1] = {1, 2, 3, 10, 20, 30};
	void *reply;
	size_t rlen;
	loomi_serve_msg m;
	char why[256];
	unsigned char junk[60] = "this is not a loom inference request at all, no";

	ck_assert_int_eq(nng_rep0_open(&s.sock), 0);
	ck_assert_int_eq(nng_listen(s.sock, "inproc://serve-test", NULL, 0), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, serve, &s), 0);

	ck_assert_int_eq(loomi_serve_client_open("inproc://serve-test", 5000, &c, &err), 0);
	ck_assert_int_eq(loomi_serve_client_ping(c, &err), 0);
	ck_assert_int_eq(loomi_serve_client_info(c, &info, &err), 0);
	ck_assert_str_eq(info, "{\"x\":1}");
	free(info);
	ck_assert_int_eq(loomi_serve_client_predict(c, w, 2, 3, 1, LOOMI_SERVE_UNCERTAINTY, 0, &res,
	                                            &err),
	                 0);
	ck_assert_uint_eq(res.ndim, 1);
	ck_assert_uint_eq(res.dims[0], 2);
	ck_assert_float_eq(res.output[0], 6);
	ck_assert_float_eq(res.output[1], 60);
	ck_assert_ptr_nonnull(res.spread);
	ck_assert_float_eq(res.spread[1], 3);
	loomi_serve_result_free(&res);
	/* junk is answered with an error naming it, and the server goes on */
	ck_assert_int_eq(loomi_serve_client_call(c, junk, sizeof junk, &reply, &rlen, &err), 0);
	ck_assert_int_eq(loomi_serve_decode_reply(reply, rlen, &m, why, sizeof why), 0);
	ck_assert_uint_eq(m.status, LOOM_EPROTO);
	ck_assert_ptr_nonnull(memmem(m.payload, m.length, "bad magic", 9));
	free(reply);
	/* a NaN is the server's error, passed to the caller */
	w[4] = NAN;
	ck_assert_int_eq(loomi_serve_client_predict(c, w, 2, 3, 1, 0, 0, &res, &err), LOOM_EINVAL);
	ck_assert_str_eq(err, "predict: window 1, step 1, channel 0 is NaN; the model needs finite "
	                      "values (fill gaps first)");
	ck_assert_ptr_null(res.output);
	free(err);
	pthread_join(t, NULL);
	loomi_serve_client_close(c);
	nng_close(s.sock);
}
END_TEST

START_TEST(windows_round_trip)
{
	float *w = windows(2, 4, 3);
	void *buf;
	size_t len;
	loomi_serve_msg m;
	char why[256] = "", *path = NULL;
	int64_t from, to, stride;
	const char *meta = "{\"windows\":[{\"first_line\":2,\"last_line\":5,\"time\":null}]}";

	/* the request: the range as three int64, then the path */
	ck_assert_int_eq(loomi_serve_encode_windows_request(9, "/data/a b.csv", 2, 120, 3, &buf,
	                                                    &len),
	                 0);
	ck_assert_uint_eq(len, LOOMI_SERVE_HEADER + 24 + 13);
	ck_assert_int_eq(((unsigned char *)buf)[6], LOOMI_SERVE_WINDOWS);
	ck_assert_int_eq(((unsigned char *)buf)[LOOMI_SERVE_HEADER + 8], 120);
	ck_assert_int_eq(memcmp((char *)buf + LOOMI_SERVE_HEADER + 24, "/data/a b.csv", 13), 0);
	ck_assert_int_eq(loomi_serve_decode_request(buf, len, &m, why, sizeof why), 0);
	ck_assert_uint_eq(m.op, LOOMI_SERVE_WINDOWS);
	ck_assert_uint_eq(m.id, 9);
	loomi_serve_windows_args(&m, &path, &from, &to, &stride);
	ck_assert_str_eq(path, "/data/a b.csv");
	ck_assert_int_eq(from, 2);
	ck_assert_int_eq(to, 120);
	ck_assert_int_eq(stride, 3);
	free(path);
	free(buf);
	/* 0 is "no bound" */
	ck_assert_int_eq(loomi_serve_encode_windows_request(10, "/x", 0, 0, 1, &buf, &len), 0);
	ck_assert_int_eq(loomi_serve_decode_request(buf, len, &m, why, sizeof why), 0);
	free(buf);
	/* what the encoder refuses */
	ck_assert_int_eq(loomi_serve_encode_windows_request(1, "", 0, 0, 1, &buf, &len), LOOM_EINVAL);
	ck_assert_int_eq(loomi_serve_encode_windows_request(1, "/x", -1, 0, 1, &buf, &len),
	                 LOOM_EINVAL);
	ck_assert_int_eq(loomi_serve_encode_windows_request(1, "/x", 9, 3, 1, &buf, &len),
	                 LOOM_EINVAL);
	ck_assert_int_eq(loomi_serve_encode_windows_request(1, "/x", 0, 0, 0, &buf, &len),
	                 LOOM_EINVAL);
	ck_assert_int_eq(loomi_serve_encode_request(LOOMI_SERVE_WINDOWS, 1, 0, 0, NULL, 0, 0, 0, &buf,
	                                            &len),
	                 LOOM_EINVAL);
	{
		char *longp = malloc(LOOMI_SERVE_MAX_PATH + 2);
		memset(longp, 'a', LOOMI_SERVE_MAX_PATH + 1);
		longp[0] = '/';
		longp[LOOMI_SERVE_MAX_PATH + 1] = '\0';
		ck_assert_int_eq(loomi_serve_encode_windows_request(1, longp, 0, 0, 1, &buf, &len),
		                 LOOM_ERANGE);
		free(longp);
	}

	/* the reply: the windows' f32, then the description */
	ck_assert_int_eq(loomi_serve_encode_windows(9, 2, 4, 3, w, meta, &buf, &len), 0);
	ck_assert_uint_eq(len, LOOMI_SERVE_HEADER + 24 * 4 + strlen(meta));
	ck_assert_int_eq(loomi_serve_decode_reply(buf, len, &m, why, sizeof why), 0);
	ck_assert_uint_eq(m.op, LOOMI_SERVE_WINDOWS);
	ck_assert_uint_eq(m.ndim, 3);
	ck_assert_uint_eq(m.dims[0], 2);
	ck_assert_uint_eq(m.dims[2], 3);
	ck_assert_int_eq(memcmp(m.payload, w, 24 * 4), 0);
	ck_assert_int_eq(memcmp((const char *)m.payload + 24 * 4, meta, strlen(meta)), 0);
	free(buf);
	ck_assert_int_eq(loomi_serve_encode_windows(9, 2, 4, 3, w, "", &buf, &len), LOOM_EINVAL);
	ck_assert_int_eq(loomi_serve_encode_windows(9, 0, 4, 3, w, meta, &buf, &len), LOOM_EINVAL);
	ck_assert_int_eq(loomi_serve_encode_windows(9, LOOMI_SERVE_MAX_WINDOWS + 1, 1, 1, w, meta,
	                                            &buf, &len),
	                 LOOM_ERANGE);
	free(w);
}
END_TEST

START_TEST(windows_malformed)
{
	float *w = windows(2, 4, 3);
	void *buf, *cut;
	size_t len;
	loomi_serve_msg m;
	char why[256] = "";
	unsigned char *p;

	ck_assert_int_eq(loomi_serve_encode_windows_request(5, "/data/x.csv", 2, 10, 1, &buf, &len),
	                 0);
	p = buf;
	/* a NUL inside the path */
	p[LOOMI_SERVE_HEADER + 24 + 5] = '\0';
	ck_assert_int_eq(loomi_serve_decode_request(buf, len, &m, why, sizeof why), LOOM_EPROTO);
	ck_assert_ptr_nonnull(strstr(why, "NUL"));
	p[LOOMI_SERVE_HEADER + 24 + 5] = 'x';
	/* a negative line, lines backwards, stride 0 */
	p[LOOMI_SERVE_HEADER + 7] = 0x80;
	ck_assert_int_eq(loomi_serve_decode_request(buf, len, &m, why, sizeof why), LOOM_EINVAL);
	ck_assert_ptr_nonnull(strstr(why, "file lines are 1 or more"));
	p[LOOMI_SERVE_HEADER + 7] = 0;
	p[LOOMI_SERVE_HEADER] = 11;
	ck_assert_int_eq(loomi_serve_decode_request(buf, len, &m, why, sizeof why), LOOM_EINVAL);
	ck_assert_str_eq(why, "windows: from_line 11 is after to_line 10");
	p[LOOMI_SERVE_HEADER] = 2;
	p[LOOMI_SERVE_HEADER + 16] = 0;
	ck_assert_int_eq(loomi_serve_decode_request(buf, len, &m, why, sizeof why), LOOM_EINVAL);
	ck_assert_ptr_nonnull(strstr(why, "stride 0"));
	p[LOOMI_SERVE_HEADER + 16] = 1;
	/* dims or passes on a request */
	poke32(buf, 24, 3);
	ck_assert_int_eq(loomi_serve_decode_request(buf, len, &m, why, sizeof why), LOOM_EPROTO);
	poke32(buf, 24, 0);
	poke32(buf, 40, 4);
	ck_assert_int_eq(loomi_serve_decode_request(buf, len, &m, why, sizeof why), LOOM_EPROTO);
	poke32(buf, 40, 0);
	ck_assert_int_eq(loomi_serve_decode_request(buf, len, &m, why, sizeof why), 0);
	/* the range without a path, and a truncated range */
	cut = malloc(LOOMI_SERVE_HEADER + 24);
	memcpy(cut, buf, LOOMI_SERVE_HEADER + 24);
	poke32(cut, 44, 24);
	ck_assert_int_eq(loomi_serve_decode_request(cut, LOOMI_SERVE_HEADER + 24, &m, why,
	                                            sizeof why),
	                 LOOM_EPROTO);
	ck_assert_ptr_nonnull(strstr(why, "and a path"));
	poke32(cut, 44, 10);
	ck_assert_int_eq(loomi_serve_decode_request(cut, LOOMI_SERVE_HEADER + 10, &m, why,
	                                            sizeof why),
	                 LOOM_EPROTO);
	free(cut);
	free(buf);

	/* a reply whose windows leave no room for the description, or more */
	ck_assert_int_eq(loomi_serve_encode_windows(5, 2, 4, 3, w, "{}", &buf, &len), 0);
	ck_assert_int_eq(loomi_serve_decode_reply(buf, len - 2, &m, why, sizeof why), LOOM_EPROTO);
	poke32(buf, 44, 24 * 4);
	ck_assert_int_eq(loomi_serve_decode_reply(buf, len - 2, &m, why, sizeof why), LOOM_EPROTO);
	ck_assert_ptr_nonnull(strstr(why, "and their description"));
	poke32(buf, 44, 24 * 4 + 2);
	poke32(buf, 28, 3); /* [3, 4, 3] is 36 floats: more than the payload */
	ck_assert_int_eq(loomi_serve_decode_reply(buf, len, &m, why, sizeof why), LOOM_EPROTO);
	poke32(buf, 28, 2);
	poke32(buf, 24, 2); /* ndim 2 */
	ck_assert_int_eq(loomi_serve_decode_reply(buf, len, &m, why, sizeof why), LOOM_EPROTO);
	poke32(buf, 24, 3);
	ck_assert_int_eq(loomi_serve_decode_reply(buf, len, &m, why, sizeof why), 0);
	free(buf);
	free(w);
}
END_TEST

START_TEST(client_windows)
{
	server s = {.requests = 2};
	pthread_t t;
	loomi_serve_client *c;
	loomi_serve_windows res;
	char *err = NULL;

	ck_assert_int_eq(nng_rep0_open(&s.sock), 0);
	ck_assert_int_eq(nng_listen(s.sock, "inproc://serve-windows", NULL, 0), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, serve, &s), 0);
	ck_assert_int_eq(loomi_serve_client_open("inproc://serve-windows", 5000, &c, &err), 0);
	ck_assert_int_eq(loomi_serve_client_windows(c, "/srv/d.csv", 4, 90, 2, &res, &err), 0);
	ck_assert_uint_eq(res.batch, 2);
	ck_assert_uint_eq(res.context, 3);
	ck_assert_uint_eq(res.channels, 1);
	ck_assert_float_eq(res.windows[0], 4);
	ck_assert_float_eq(res.windows[1], 90);
	ck_assert_float_eq(res.windows[2], 2);
	ck_assert_float_eq(res.windows[5], 3);
	ck_assert_str_eq(res.meta_json, "{\"windows\": [], \"path\": \"/srv/d.csv\"}");
	loomi_serve_windows_free(&res);
	ck_assert_ptr_null(res.windows);
	/* the worker's refusal, with its message */
	ck_assert_int_eq(loomi_serve_client_windows(c, "/bad", 0, 0, 1, &res, &err), LOOM_EINVAL);
	ck_assert_str_eq(err, "/bad:3: column \"temp\": \"x\" is not a number");
	ck_assert_ptr_null(res.windows);
	free(err);
	err = NULL;
	/* refused before it is sent */
	ck_assert_int_eq(loomi_serve_client_windows(c, "/x", 0, 0, 0, &res, &err), LOOM_EINVAL);
	free(err);
	pthread_join(t, NULL);
	loomi_serve_client_close(c);
	nng_close(s.sock);
}
END_TEST

/* No worker: the request times out with a message, it does not hang. */
START_TEST(client_no_worker)
{
	loomi_serve_client *c;
	char *err = NULL;

	ck_assert_int_eq(loomi_serve_client_open("inproc://nobody-here", 50, &c, &err), 0);
	ck_assert_int_eq(loomi_serve_client_ping(c, &err), LOOM_ETIMEDOUT);
	ck_assert_ptr_nonnull(strstr(err, "no answer in time"));
	free(err);
	loomi_serve_client_close(c);
	ck_assert_int_ne(loomi_serve_client_open("nope://x", 50, &c, &err), 0);
	ck_assert_ptr_nonnull(strstr(err, "cannot dial nope://x"));
	free(err);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("serve");
	TCase *tc = tcase_create("wire");

	tcase_add_test(tc, request_round_trip);
	tcase_add_test(tc, reply_round_trip);
	tcase_add_test(tc, truncated_and_oversized);
	tcase_add_test(tc, wrong_magic_version_op);
	tcase_add_test(tc, non_finite_named);
	tcase_add_test(tc, client);
	tcase_add_test(tc, client_no_worker);
	tcase_add_test(tc, windows_round_trip);
	tcase_add_test(tc, windows_malformed);
	tcase_add_test(tc, client_windows);
	suite_add_tcase(s, tc);
	return tu_run(s);
}

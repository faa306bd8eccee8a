/* serve-request — one request to an inference worker (loom-worker --serve)
 * through host/core/serve.c's client, for the integration tests.
 *
 *   serve-request URL ping | info
 *   serve-request URL predict FILE [--uncertainty] [--passes K]
 *   serve-request URL raw KIND
 *
 * predict sends FILE's windows ({"input": [B][L][C]}, as loom-worker
 * --predict reads) and prints {"shape", "output"[, "uncertainty"]} with
 * each f32 printed as loom-worker --predict prints it, so the two outputs
 * compare as text exactly when the floats are equal to the bit.  raw sends
 * a malformed message (bad-magic, bad-version, truncated, oversized,
 * wrong-dims, nan, wrong-shape) and prints the reply's "status N: message".
 * Exit status: 0 answered (raw: any decodable reply), 1 the worker's error
 * or none, 2 usage. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <loom/loom.h>

#include "host/core/serve.h"

static json_t *
nest(const float *v, const uint32_t *dims, uint32_t ndim, size_t *at)
{
	json_t *a = json_array();
	for (uint32_t i = 0; i < dims[0]; i++)
		json_array_append_new(a, ndim == 1 ? json_real(v[(*at)++])
		                                   : nest(v, dims + 1, ndim - 1, at));
	return a;
}

/* FILE's windows, flattened. */
static float *
windows(const char *path, uint32_t *B, uint32_t *L, uint32_t *C)
{
	json_error_t jerr;
	json_t *doc = json_load_file(path, 0, &jerr), *arr;
	float *v;
	size_t at = 0;

	if (doc == NULL) {
		fprintf(stderr, "serve-request: %s: %s\n", path, jerr.text);
		return NULL;
	}
	arr = json_is_object(doc) ? json_object_get(doc, "input") : doc;
	*B = (uint32_t)json_array_size(arr);
	*L = (uint32_t)json_array_size(json_array_get(arr, 0));
	*C = (uint32_t)json_array_size(json_array_get(json_array_get(arr, 0), 0));
	v = calloc((size_t)*B * *L * *C + 1, sizeof *v);
	for (uint32_t b = 0; b < *B; b++)
		for (uint32_t l = 0; l < *L; l++)
			for (uint32_t c = 0; c < *C; c++)
				v[at++] = (float)json_number_value(
					json_array_get(json_array_get(json_array_get(arr, b), l), c));
	json_decref(doc);
	return v;
}

static void
poke32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static int
raw(loomi_serve_client *c, const char *kind)
{
	float w[3 * 2] = {1, 2, 3, 4, 5, 6};
	void *req, *rep = NULL;
	size_t len, rlen = 0;
	unsigned char *p;
	loomi_serve_msg m;
	char *err = NULL, why[256];
	int rv;

	if (strcmp(kind, "wrong-shape") == 0) {
		/* a well-formed request for windows the model does not take */
		loomi_serve_encode_request(LOOMI_SERVE_PREDICT, 7, 0, 0, w, 1, 3, 2, &req, &len);
	} else {
		if (strcmp(kind, "nan") == 0)
			w[3] = NAN;
		loomi_serve_encode_request(LOOMI_SERVE_PREDICT, 7, 0, 0, w, 2, 3, 1, &req, &len);
	}
	p = req;
	if (strcmp(kind, "bad-magic") == 0)
		p[0] = 'X';
	else if (strcmp(kind, "bad-version") == 0)
		p[4] = 9;
	else if (strcmp(kind, "truncated") == 0)
		len -= 5;
	else if (strcmp(kind, "oversized") == 0)
		poke32(p + 28, LOOMI_SERVE_MAX_WINDOWS + 1);
	else if (strcmp(kind, "wrong-dims") == 0)
		poke32(p + 32, 4);
	else if (strcmp(kind, "nan") != 0 && strcmp(kind, "wrong-shape") != 0) {
		fprintf(stderr, "serve-request: unknown raw kind \"%s\"\n", kind);
		free(req);
		return 2;
	}
	rv = loomi_serve_client_call(c, req, len, &rep, &rlen, &err);
	free(req);
	if (rv != 0) {
		fprintf(stderr, "serve-request: %s\n", err);
		free(err);
		return 1;
	}
	if ((rv = loomi_serve_decode_reply(rep, rlen, &m, why, sizeof why)) != 0) {
		fprintf(stderr, "serve-request: malformed reply: %s\n", why);
		free(rep);
		return 1;
	}
	printf("status %u: %.*s\n", m.status, (int)m.length, (const char *)m.payload);
	free(rep);
	return 0;
}

int
main(int argc, char **argv)
{
	loomi_serve_client *c = NULL;
	char *err = NULL;
	int rv = 1;

	if (argc < 3) {
		fprintf(stderr, "usage: serve-request URL ping|info|predict FILE [--uncertainty] "
		                "[--passes K]|raw KIND\n");
		return 2;
	}
	if (loomi_serve_client_open(argv[1], 10000, &c, &err) != 0) {
		fprintf(stderr, "serve-request: %s\n", err);
		return 1;
	}
	if (strcmp(argv[2], "ping") == 0) {
		if ((rv = loomi_serve_client_ping(c, &err)) == 0)
			printf("pong\n");
	} else if (strcmp(argv[2], "info") == 0) {
		char *info = NULL;
		if ((rv = loomi_serve_client_info(c, &info, &err)) == 0)
			printf("%s\n", info);
		free(info);
	} else if (strcmp(argv[2], "predict") == 0 && argc >= 4) {
		uint32_t B, L, C, flags = 0, passes = 0;
		loomi_serve_result res;
		float *w = windows(argv[3], &B, &L, &C);
		for (int i = 4; i < argc; i++) {
			if (strcmp(argv[i], "--uncertainty") == 0)
				flags |= LOOMI_SERVE_UNCERTAINTY;
			else if (strcmp(argv[i], "--passes") == 0 && i + 1 < argc)
				passes = (uint32_t)atoi(argv[++i]);
		}
		if (w && (rv = loomi_serve_client_predict(c, w, B, L, C, flags, passes, &res, &err)) ==
		                 0) {
			json_t *out = json_object(), *shape = json_array();
			size_t at = 0;
			for (uint32_t i = 0; i < res.ndim; i++)
				json_array_append_new(shape, json_integer(res.dims[i]));
			json_object_set_new(out, "shape", shape);
			json_object_set_new(out, "output", nest(res.output, res.dims, res.ndim, &at));
			if (res.spread) {
				at = 0;
				json_object_set_new(out, "uncertainty",
				                    nest(res.spread, res.dims, res.ndim, &at));
				json_object_set_new(out, "passes", json_integer(res.passes));
			}
			json_dumpf(out, stdout, JSON_COMPACT);
			printf("\n");
			json_decref(out);
			loomi_serve_result_free(&res);
		}
		free(w);
	} else if (strcmp(argv[2], "raw") == 0 && argc == 4) {
		rv = raw(c, argv[3]);
		loomi_serve_client_close(c);
		return rv;
	} else {
		fprintf(stderr, "serve-request: unknown request \"%s\"\n", argv[2]);
		loomi_serve_client_close(c);
		return 2;
	}
	if (rv != 0) {
		printf("error %d: %s\n", rv, err ? err : "?");
		free(err);
		rv = 1;
	}
	loomi_serve_client_close(c);
	return rv;
}

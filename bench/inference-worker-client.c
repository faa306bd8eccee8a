/* inference-worker-client — times an inference worker (loom-worker --serve)
 * through host/core/serve.c's client: one window per request (latency
 * percentiles), then requests of BATCH windows (windows per second).
 *
 *   inference-worker-client URL CONTEXT CHANNELS REQUESTS BATCH [--uncertainty]
 *
 * Windows are a sine with noise (the values do not change the work done).
 * Prints one line of key=value pairs for bench/inference-worker. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <loom/loom.h>

#include "host/core/serve.h"

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
	loomi_serve_client *c;
	loomi_serve_result res;
	char *err = NULL;
	uint32_t L, C, B, flags = 0;
	int n;
	float *w;
	double *lat, t0, t1;
	long batches = 0;

	if (argc < 6) {
		fprintf(stderr, "usage: inference-worker-client URL CONTEXT CHANNELS REQUESTS BATCH "
		                "[--uncertainty]\n");
		return 2;
	}
	L = (uint32_t)atoi(argv[2]);
	C = (uint32_t)atoi(argv[3]);
	n = atoi(argv[4]);
	B = (uint32_t)atoi(argv[5]);
	if (argc > 6 && strcmp(argv[6], "--uncertainty") == 0)
		flags = LOOMI_SERVE_UNCERTAINTY;
	w = malloc((size_t)B * L * C * sizeof *w);
	for (size_t i = 0; i < (size_t)B * L * C; i++)
		w[i] = (float)(50 + 10 * sin((double)i * 0.26) + (double)(i * 7919 % 13) * 0.1);
	lat = calloc((size_t)n, sizeof *lat);
	if (loomi_serve_client_open(argv[1], 10000, &c, &err) != 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	/* warm up */
	for (int i = 0; i < 50; i++) {
		if (loomi_serve_client_predict(c, w, 1, L, C, flags, 0, &res, &err) != 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		loomi_serve_result_free(&res);
	}
	for (int i = 0; i < n; i++) {
		/* a different window each time: offset into the batch */
		const float *x = w + (size_t)(i % B) * L * C;
		t0 = now_s();
		if (loomi_serve_client_predict(c, x, 1, L, C, flags, 0, &res, &err) != 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		lat[i] = now_s() - t0;
		loomi_serve_result_free(&res);
	}
	qsort(lat, (size_t)n, sizeof *lat, cmp);
	t0 = now_s();
	do {
		if (loomi_serve_client_predict(c, w, B, L, C, flags, 0, &res, &err) != 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		loomi_serve_result_free(&res);
		batches++;
		t1 = now_s();
	} while (t1 - t0 < 3.0);
	printf("requests=%d p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f batch=%u "
	       "windows_per_s=%.0f\n",
	       n, lat[n / 2] * 1e3, lat[n * 9 / 10] * 1e3, lat[n * 99 / 100] * 1e3,
	       lat[n - 1] * 1e3, B, (double)batches * B / (t1 - t0));
	loomi_serve_client_close(c);
	free(lat);
	free(w);
	return 0;
}

/* sgemm — the CBLAS sgemm rate this machine gives right now, the yardstick
 * bench/train holds Loom's achieved GFLOP/s against.
 *
 *     sgemm THREADS [SIZE [SECONDS]]     (defaults: 1024, 1.0)
 *
 * Sets OpenBLAS's own thread count to THREADS (the plain CBLAS rate,
 * whatever the engine does with its pool) and prints lk_sgemm_gflops for a SIZE×SIZE·SIZE×SIZE product repeated for
 * about SECONDS, as one JSON line. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include <cblas.h>

#include "kernels/kernels.h"

int
main(int argc, char **argv)
{
	int threads = argc > 1 ? atoi(argv[1]) : 1;
	long size = argc > 2 ? atol(argv[2]) : 1024;
	double seconds = argc > 3 ? atof(argv[3]) : 1.0;
	double gf;

	if (argc < 2 || argc > 4 || threads < 1 || size < 1 || seconds <= 0) {
		fprintf(stderr, "usage: %s THREADS [SIZE [SECONDS]]\n", argv[0]);
		return 2;
	}
#ifdef OPENBLAS_VERSION
	openblas_set_num_threads(threads);
#endif
	gf = lk_sgemm_gflops(size, size, size, seconds);
#ifdef OPENBLAS_VERSION
	printf("{\"impl\":\"sgemm\",\"threads\":%d,\"size\":%ld,\"gflops\":%.3f,"
	       "\"openblas_core\":\"%s\",\"openblas_config\":\"%s\"}\n",
	       threads, size, gf, openblas_get_corename(), openblas_get_config());
#else
	printf("{\"impl\":\"sgemm\",\"threads\":%d,\"size\":%ld,\"gflops\":%.3f}\n", threads, size,
	       gf);
#endif
	return gf > 0 ? 0 : 1;
}

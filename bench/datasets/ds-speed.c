/* The dataset library's speed (host/datasets/dslib.h), against the
 * targets of issue 16: import of a large numeric csv into a sink that only
 * counts (>= 100 MB/s), checkout to a writer that discards (>= 300 MB/s),
 * and the diff of two unchanged versions of 10^6 chunks (<= 100 ms).
 *
 *   bench/datasets/ds-speed [MB [import]]   (default 200; "import": that alone)
 *
 * It prints a table; record it in bench/RESULTS.md.  The csv is generated
 * in memory (a random walk and its noisy copies, 5 columns), so the disk
 * plays no part. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <loom/error.h>

#include "host/datasets/dslib.h"

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
cpu_now(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rs = 0x853c49e6748fea9bULL;

static uint64_t
rnd(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return rs;
}

/* A decimal with 4 digits after the point, written by hand (snprintf
 * would take longer than the import). */
static char *
put_fixed(char *p, double v)
{
	int64_t x = (int64_t)(v * 10000.0 + (v < 0 ? -0.5 : 0.5));
	char tmp[32];
	int n = 0;

	if (x < 0) {
		*p++ = '-';
		x = -x;
	}
	for (int i = 0; i < 4; i++) {
		tmp[n++] = (char)('0' + x % 10);
		x /= 10;
	}
	tmp[n++] = '.';
	do {
		tmp[n++] = (char)('0' + x % 10);
		x /= 10;
	} while (x > 0);
	while (n > 0)
		*p++ = tmp[--n];
	return p;
}

static char *
gen_csv(size_t want, size_t *len, uint64_t *rows)
{
	char *b = malloc(want + 256), *p = b;
	double walk = 100.0;
	uint64_t i = 0;

	p += sprintf(p, "time,value,noisy,volume,flag\n");
	while ((size_t)(p - b) < want) {
		walk += ((double)(rnd() % 2001) - 1000.0) / 10000.0;
		p += sprintf(p, "%" PRIu64 ",", 1600000000 + i * 60);
		p = put_fixed(p, walk);
		*p++ = ',';
		p = put_fixed(p, walk + ((double)(rnd() % 201) - 100.0) / 1000.0);
		*p++ = ',';
		p += sprintf(p, "%u,%d\n", (unsigned)(rnd() % 100000), (int)(rnd() & 1));
		i++;
	}
	*len = (size_t)(p - b);
	*rows = i;
	return b;
}

struct count {
	uint64_t chunks, bytes;
};

static int
count_chunk(void *arg, const ds_chunk *c, const void *z, size_t zn, char **err)
{
	struct count *k = arg;

	k->chunks++;
	k->bytes += zn;
	return 0;
}

/* Keeps the compressed chunks in import order (checkout reads them back
 * in the same order). */
struct keep {
	void **z;
	size_t *zn;
	size_t n, cap, next;
};

static int
keep_chunk(void *arg, const ds_chunk *c, const void *z, size_t zn, char **err)
{
	struct keep *k = arg;

	if (k->n == k->cap) {
		k->cap = k->cap ? k->cap * 2 : 1024;
		k->z = realloc(k->z, k->cap * sizeof(*k->z));
		k->zn = realloc(k->zn, k->cap * sizeof(*k->zn));
	}
	k->z[k->n] = malloc(zn);
	memcpy(k->z[k->n], z, zn);
	k->zn[k->n++] = zn;
	return 0;
}

static int
get_kept(void *arg, const ds_chunk *c, void **z, size_t *zn, char **err)
{
	struct keep *k = arg;

	if (k->next >= k->n)
		return LOOM_ENOENT;
	*z = malloc(k->zn[k->next]);
	memcpy(*z, k->z[k->next], k->zn[k->next]);
	*zn = k->zn[k->next++];
	return 0;
}

static int
discard(void *arg, const void *d, size_t n)
{
	*(uint64_t *)arg += n;
	return 0;
}

/* The import's wall time, and the CPU seconds of the calling thread and of
 * the whole process (the workers) during it: on a shared machine the wall
 * time says little, the CPU times say what two idle cores would do. */
static int
import(const char *csv, size_t len, const ds_sink *sink, ds_manifest *m, double *secs,
       double *cpu_caller, double *cpu_all)
{
	ds_params p;
	ds_importer *im;
	char *err = NULL;
	double t0 = now(), c0 = cpu_now(CLOCK_THREAD_CPUTIME_ID),
	       p0 = cpu_now(CLOCK_PROCESS_CPUTIME_ID);
	int rv = 0;

	ds_params_default(&p);
	if ((im = ds_import_new("csv", &p, sink)) == NULL)
		return LOOM_ENOMEM;
	/* in 8 MiB parts, as uploads come */
	for (size_t off = 0; off < len && rv == 0; off += 8 << 20)
		rv = ds_import_feed(im, csv + off, len - off < (8 << 20) ? len - off : 8 << 20, &err);
	if (rv == 0)
		rv = ds_import_finish(im, m, &err);
	ds_import_free(im);
	*secs = now() - t0;
	*cpu_caller = cpu_now(CLOCK_THREAD_CPUTIME_ID) - c0;
	*cpu_all = cpu_now(CLOCK_PROCESS_CPUTIME_ID) - p0;
	if (rv != 0)
		fprintf(stderr, "ds-speed: import: %s\n", err ? err : loom_strerror(rv));
	free(err);
	return rv;
}

int
main(int argc, char **argv)
{
	size_t mb = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 200, len;
	uint64_t rows, out = 0;
	char *csv = gen_csv(mb << 20, &len, &rows), *err = NULL;
	struct count cnt = {0};
	struct keep kept = {0};
	ds_sink cs = {&cnt, count_chunk}, ks = {&kept, keep_chunk};
	ds_source src = {&kept, get_kept};
	ds_manifest m, m2, a, b;
	ds_diff d;
	double t_imp, t_imp2, t_co, t_diff, t_diff1, t0, cc, ca, cc2, ca2, c_co, c_diff, c_diff1;
	size_t n = 1000000;

	printf("ds-speed: %.1f MB of csv, %" PRIu64 " rows, 5 columns; chunks 64K/256K/1M, zstd 3, "
	       "threads: one per core\n\n",
	       (double)len / 1e6, rows);
	if (import(csv, len, &cs, &m, &t_imp, &cc, &ca) != 0)
		return 1;
	if (argc > 2 && strcmp(argv[2], "import") == 0) {
		/* for a profiler: the import alone */
		printf("import: %.0f MB/s; CPU: caller %.2f s, all %.2f s\n", (double)len / 1e6 / t_imp,
		       cc, ca);
		return 0;
	}
	if (import(csv, len, &ks, &m2, &t_imp2, &cc2, &ca2) != 0)
		return 1;
	t0 = now();
	c_co = cpu_now(CLOCK_THREAD_CPUTIME_ID);
	if (ds_checkout(&m2, &src, DS_OUT_CSV, true, 0, SIZE_MAX, discard, &out, &err) != 0) {
		fprintf(stderr, "ds-speed: checkout: %s\n", err);
		return 1;
	}
	t_co = now() - t0;
	c_co = cpu_now(CLOCK_THREAD_CPUTIME_ID) - c_co;

	/* two unchanged versions of 10^6 chunks (separate copies), and one
	 * with a chunk changed in the middle */
	memset(&a, 0, sizeof(a));
	a.format = "csv";
	a.chunks = malloc(n * sizeof(ds_chunk));
	a.n_chunks = n;
	for (size_t i = 0; i < n; i++) {
		uint64_t v = i;

		ds_sha256(&v, 8, &a.chunks[i].hash);
		a.chunks[i].rows = 1000;
		a.chunks[i].raw = 100000;
		a.chunks[i].stored = 30000;
	}
	b = a;
	b.chunks = malloc(n * sizeof(ds_chunk));
	memcpy(b.chunks, a.chunks, n * sizeof(ds_chunk));
	t0 = now();
	c_diff = cpu_now(CLOCK_THREAD_CPUTIME_ID);
	if (ds_diff_compute(&a, &b, &d) != 0 || !d.same)
		return 1;
	t_diff = now() - t0;
	c_diff = cpu_now(CLOCK_THREAD_CPUTIME_ID) - c_diff;
	ds_diff_free(&d);
	b.chunks[n / 2].hash.b[0] ^= 1;
	t0 = now();
	c_diff1 = cpu_now(CLOCK_THREAD_CPUTIME_ID);
	if (ds_diff_compute(&a, &b, &d) != 0 || d.n_hunks != 1)
		return 1;
	t_diff1 = now() - t0;
	c_diff1 = cpu_now(CLOCK_THREAD_CPUTIME_ID) - c_diff1;
	ds_diff_free(&d);

	/* two idle cores: the caller's work or half of all, the larger */
	double ideal = ca / 2 > cc ? ca / 2 : cc, ideal2 = ca2 / 2 > cc2 ? ca2 / 2 : cc2;

	printf("| measure | wall clock | from CPU time (2 idle cores) | target |\n|---|---|---|---|\n");
	printf("| import csv, counting sink (%" PRIu64 " chunks, stored %.1f%%) | %.0f MB/s | %.0f MB/s "
	       "(CPU: caller %.2f s, all %.2f s) | >= 100 MB/s |\n",
	       cnt.chunks, 100.0 * (double)cnt.bytes / (double)len, (double)len / 1e6 / t_imp,
	       (double)len / 1e6 / ideal, cc, ca);
	printf("| import csv, sink keeping the chunks | %.0f MB/s | %.0f MB/s | |\n",
	       (double)len / 1e6 / t_imp2, (double)len / 1e6 / ideal2);
	printf("| checkout as csv, discarding writer | %.0f MB/s | %.0f MB/s | >= 300 MB/s |\n",
	       (double)out / 1e6 / t_co, (double)out / 1e6 / c_co);
	printf("| diff, unchanged, 10^6 chunks | %.1f ms | %.1f ms | <= 100 ms |\n", t_diff * 1e3,
	       c_diff * 1e3);
	printf("| diff, one chunk changed, 10^6 chunks | %.1f ms | %.1f ms | |\n", t_diff1 * 1e3,
	       c_diff1 * 1e3);
	for (size_t i = 0; i < kept.n; i++)
		free(kept.z[i]);
	free(kept.z);
	free(kept.zn);
	free(a.chunks);
	free(b.chunks);
	ds_manifest_free(&m);
	ds_manifest_free(&m2);
	free(csv);
	return 0;
}

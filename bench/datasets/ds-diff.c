/* bench/datasets/ds-diff: the library's side of issue 16's "diff/status of
 * an unchanged version with 10^6 chunks ≤ 100 ms".  10^6 real chunks of
 * 256 KiB would be ~256 GB of rows, so the two versions are built in
 * memory: one chunk table of N chunks (hashes from a fixed seed, row and
 * byte counts like the default chunker's), two manifests that share it
 * and differ in message, time and parent (as a commit of the same file
 * again would), each encoded to its blob as the module stores it.  Timed,
 * R times each (median, min, max):
 *
 *   status   the path the diff route takes for an unchanged pair (the
 *            target's figure): the two versions' content ids (computed
 *            by ds_manifest_encode_ids at commit, stored in their rows)
 *            compared, the head of each blob decoded without its chunk
 *            table (ds_manifest_decode_head: rows and chunks, as the rows
 *            hold them), ds_diff_unchanged and ds_diff_json
 *   decode   ds_manifest_decode of both blobs (the full path: what the
 *            diff route does when the content ids differ)
 *   diff     ds_diff_compute of the two decoded manifests
 *   full     decode + diff + ds_diff_json (max_hunks 100): the whole
 *            answer of a diff through the chunk tables, without HTTP
 *   content  ds_manifest_content_id of one manifest (what a commit adds
 *            to compute it; ds_manifest_encode_ids computes it with the
 *            blob)
 *
 *   bench/datasets/ds-diff [--chunks N] [--reps R] [--json]
 *
 * Prints a Markdown table, or with --json one JSON object (for
 * bench/datasets/run). */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "host/datasets/dslib.h"

static double
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static uint64_t rs = 0x9e3779b97f4a7c15ull;

static uint64_t
next64(void)
{
	rs ^= rs >> 12;
	rs ^= rs << 25;
	rs ^= rs >> 27;
	return rs * 0x2545F4914F6CDD1Dull;
}

/* Fills m with a csv manifest of the given chunk table (copied). */
static int
make_manifest(ds_manifest *m, const ds_chunk *chunks, size_t n, const char *message,
              const char *parent, int64_t time_ms)
{
	memset(m, 0, sizeof *m);
	m->dataset = strdup("bench");
	m->format = strdup("csv");
	m->n_columns = 6;
	m->columns = calloc(m->n_columns, sizeof *m->columns);
	m->chunks = malloc(n * sizeof *chunks);
	m->author = strdup("bench");
	m->message = strdup(message);
	if (!m->dataset || !m->format || !m->columns || !m->chunks || !m->author || !m->message)
		return -1;
	static const char *names[6] = {"time", "precipitation", "temp_max", "temp_min", "wind",
	                               "weather"};
	static const int types[6] = {DS_COL_STRING, DS_COL_NUMBER, DS_COL_NUMBER, DS_COL_NUMBER,
	                             DS_COL_NUMBER, DS_COL_STRING};
	for (size_t i = 0; i < 6; i++) {
		if (!(m->columns[i].name = strdup(names[i])))
			return -1;
		m->columns[i].type = types[i];
	}
	memcpy(m->chunks, chunks, n * sizeof *chunks);
	m->n_chunks = n;
	for (size_t i = 0; i < n; i++) {
		m->rows += chunks[i].rows;
		m->bytes += chunks[i].raw;
		m->stored += chunks[i].stored;
	}
	if (parent) {
		m->parents = calloc(1, sizeof *m->parents);
		if (!m->parents || !(m->parents[0] = strdup(parent)))
			return -1;
		m->n_parents = 1;
	}
	m->time_ms = time_ms;
	return 0;
}

struct stat3 {
	double med, min, max;
};

static struct stat3
stats(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return (struct stat3){v[n / 2], v[0], v[n - 1]};
}

int
main(int argc, char **argv)
{
	size_t n = 1000000;
	int reps = 7, as_json = 0;
	static const struct option opts[] = {
		{"chunks", required_argument, NULL, 'n'},
		{"reps", required_argument, NULL, 'r'},
		{"json", no_argument, NULL, 'j'},
		{NULL, 0, NULL, 0},
	};
	for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		switch (c) {
		case 'n': n = strtoull(optarg, NULL, 10); break;
		case 'r': reps = atoi(optarg); break;
		case 'j': as_json = 1; break;
		default:
			fprintf(stderr, "usage: ds-diff [--chunks N] [--reps R] [--json]\n");
			return 2;
		}
	}
	if (n < 1 || reps < 1 || reps > 1000) {
		fprintf(stderr, "ds-diff: --chunks must be ≥ 1 and --reps 1..1000\n");
		return 2;
	}

	ds_chunk *chunks = calloc(n, sizeof *chunks);
	if (!chunks) {
		fprintf(stderr, "ds-diff: out of memory for %zu chunks\n", n);
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		for (int k = 0; k < 4; k++) {
			uint64_t x = next64();
			memcpy(chunks[i].hash.b + 8 * k, &x, 8);
		}
		/* about the default chunker's: 256 KiB on average, ~45-byte rows,
		 * ~4.5× compression */
		chunks[i].raw = 196608 + (uint32_t)(next64() % 131072);
		chunks[i].rows = chunks[i].raw / 45;
		chunks[i].stored = chunks[i].raw / 4 + (uint32_t)(next64() % 4096);
	}

	ds_manifest ma, mb;
	char ida[DS_HEX_LEN + 1], idb[DS_HEX_LEN + 1];
	void *ba = NULL, *bb = NULL;
	size_t la = 0, lb = 0;
	if (make_manifest(&ma, chunks, n, "the import", NULL, 1767225600000) != 0) {
		fprintf(stderr, "ds-diff: out of memory\n");
		return 1;
	}
	char ca[DS_HEX_LEN + 1], cb[DS_HEX_LEN + 1];
	int rc = ds_manifest_encode_ids(&ma, &ba, &la, ida, ca);
	if (rc == 0 && make_manifest(&mb, chunks, n, "the same file again", ida,
	                             1767225660000) != 0) {
		fprintf(stderr, "ds-diff: out of memory\n");
		return 1;
	}
	if (rc == 0)
		rc = ds_manifest_encode_ids(&mb, &bb, &lb, idb, cb);
	if (rc != 0) {
		fprintf(stderr, "ds-diff: ds_manifest_encode of %zu chunks failed (%d)\n", n, rc);
		return 1;
	}
	if (strcmp(ida, idb) == 0) {
		fprintf(stderr, "ds-diff: two manifests with other messages have one id %s\n", ida);
		return 1;
	}

	if (strcmp(ca, cb) != 0) {
		fprintf(stderr, "ds-diff: two manifests of one chunk table have two content ids\n");
		return 1;
	}

	/* the status path */
	double *t_st = calloc((size_t)reps, sizeof(double));
	double *t_cid = calloc((size_t)reps, sizeof(double));
	if (!t_st || !t_cid)
		return 1;
	for (int r = 0; r < reps; r++) {
		/* the content ids as the rows hold them */
		char sa[DS_HEX_LEN + 1], sb[DS_HEX_LEN + 1];
		memcpy(sa, ca, sizeof sa);
		memcpy(sb, cb, sizeof sb);
		double t0 = now_ms();
		ds_manifest ha, hb;
		ds_diff d;
		char *err = NULL;
		if (ds_manifest_decode_head(ba, la, &ha, &err) != 0 ||
		    ds_manifest_decode_head(bb, lb, &hb, &err) != 0) {
			fprintf(stderr, "ds-diff: ds_manifest_decode_head: %s\n", err ? err : "failed");
			return 1;
		}
		if (strcmp(sa, sb) != 0) {
			fprintf(stderr, "ds-diff: the content ids differ\n");
			return 1;
		}
		ds_diff_unchanged(hb.rows, hb.n_chunks, &d);
		json_t *j = ds_diff_json(&d, 100);
		double t1 = now_ms();
		if (!j || !json_is_true(json_object_get(j, "same")) ||
		    json_integer_value(json_object_get(j, "chunks_same")) != (json_int_t)n) {
			fprintf(stderr, "ds-diff: the status answer is not an unchanged diff\n");
			return 1;
		}
		json_decref(j);
		ds_manifest_free(&ha);
		ds_manifest_free(&hb);
		t_st[r] = t1 - t0;
		char cid[DS_HEX_LEN + 1];
		t0 = now_ms();
		if (ds_manifest_content_id(&mb, cid) != 0 || strcmp(cid, cb) != 0) {
			fprintf(stderr, "ds-diff: ds_manifest_content_id differs from encode's\n");
			return 1;
		}
		t_cid[r] = now_ms() - t0;
	}

	double *t_dec = calloc((size_t)reps, sizeof(double));
	double *t_diff = calloc((size_t)reps, sizeof(double));
	double *t_all = calloc((size_t)reps, sizeof(double));
	if (!t_dec || !t_diff || !t_all)
		return 1;
	for (int r = 0; r < reps; r++) {
		ds_manifest da, db;
		ds_diff d;
		char *err = NULL;
		double t0 = now_ms();
		if ((rc = ds_manifest_decode(ba, la, &da, &err)) != 0 ||
		    (rc = ds_manifest_decode(bb, lb, &db, &err)) != 0) {
			fprintf(stderr, "ds-diff: ds_manifest_decode: %s\n", err ? err : "failed");
			return 1;
		}
		double t1 = now_ms();
		if ((rc = ds_diff_compute(&da, &db, &d)) != 0) {
			fprintf(stderr, "ds-diff: ds_diff_compute failed (%d)\n", rc);
			return 1;
		}
		double t2 = now_ms();
		json_t *j = ds_diff_json(&d, 100);
		double t3 = now_ms();
		if (!j) {
			fprintf(stderr, "ds-diff: ds_diff_json failed\n");
			return 1;
		}
		/* the answer must be what it claims: unchanged, every chunk matched */
		if (!d.same || d.n_hunks != 0 || d.chunks_same != n || d.bytes_new != 0 ||
		    d.rows_added || d.rows_removed || d.rows_changed) {
			fprintf(stderr, "ds-diff: the diff of two versions with one chunk table is not "
			        "empty: same %d, %zu hunks, %llu chunks same of %zu, %llu bytes new\n",
			        d.same, d.n_hunks, (unsigned long long)d.chunks_same, n,
			        (unsigned long long)d.bytes_new);
			return 1;
		}
		json_decref(j);
		ds_diff_free(&d);
		ds_manifest_free(&da);
		ds_manifest_free(&db);
		free(err);
		t_dec[r] = t1 - t0;
		t_diff[r] = t2 - t1;
		t_all[r] = t3 - t0;
	}
	struct stat3 sd = stats(t_dec, reps), sf = stats(t_diff, reps), sa = stats(t_all, reps);
	struct stat3 ss = stats(t_st, reps), sc = stats(t_cid, reps);
	if (as_json) {
		printf("{\"chunks\": %zu, \"reps\": %d, \"blob_bytes\": %zu,"
		       " \"target\": \"status_ms\","
		       " \"status_ms\": {\"median\": %.3f, \"min\": %.3f, \"max\": %.3f},"
		       " \"decode_ms\": {\"median\": %.3f, \"min\": %.3f, \"max\": %.3f},"
		       " \"diff_ms\": {\"median\": %.3f, \"min\": %.3f, \"max\": %.3f},"
		       " \"full_ms\": {\"median\": %.3f, \"min\": %.3f, \"max\": %.3f},"
		       " \"content_id_ms\": {\"median\": %.3f, \"min\": %.3f, \"max\": %.3f}}\n",
		       n, reps, la, ss.med, ss.min, ss.max, sd.med, sd.min, sd.max, sf.med, sf.min,
		       sf.max, sa.med, sa.min, sa.max, sc.med, sc.min, sc.max);
	} else {
		printf("%zu chunks, manifest blob %zu bytes, %d repetitions\n\n", n, la, reps);
		printf("| step | median ms | min ms | max ms |\n|---|---:|---:|---:|\n");
		printf("| **status (the target's figure)**: content ids + 2 × "
		       "ds_manifest_decode_head + ds_diff_unchanged + ds_diff_json | %.3f | %.3f | "
		       "%.3f |\n", ss.med, ss.min, ss.max);
		printf("| full: ds_manifest_decode × 2 | %.2f | %.2f | %.2f |\n", sd.med, sd.min, sd.max);
		printf("| full: ds_diff_compute | %.2f | %.2f | %.2f |\n", sf.med, sf.min, sf.max);
		printf("| full: decode + diff + ds_diff_json | %.2f | %.2f | %.2f |\n", sa.med, sa.min,
		       sa.max);
		printf("| ds_manifest_content_id of one manifest (at commit) | %.2f | %.2f | %.2f |\n",
		       sc.med, sc.min, sc.max);
	}
	free(t_st);
	free(t_cid);
	free(ba);
	free(bb);
	free(t_dec);
	free(t_diff);
	free(t_all);
	ds_manifest_free(&ma);
	ds_manifest_free(&mb);
	free(chunks);
	return 0;
}

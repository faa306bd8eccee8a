/* bench/logs-query: the structured log store at scale.  Fills a fresh state
 * database through the real writer (loomi_logs_add: the queue, the writer
 * thread, batched transactions, the FTS5 triggers) with N entries of 100
 * tasks, then times keyword queries through the real route
 * (GET /api/v1/logs with job=, q= and limit=100): a rare word, a common
 * word and a phrase, each as p50/p99 over many queries on varying tasks.
 *
 *   bench/logs-query [--entries N] [--queries Q] [--dir DIR] [--keep]
 *
 * Prints a table; `make bench-logs` runs it with the defaults (10,000,000
 * entries, 50 queries of each kind). */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/server/api.h"
#include "host/core/log.h"
#include "host/logs/logs.h"
#include "host/server/store.h"
#include "host/core/util.h"

#define JOBS 100
#define FLUSH_EVERY 20000 /* well below the writer's queue, so nothing is dropped */
#define RARE_EVERY 100003 /* one entry in ~100,000 holds the rare word */

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Entry i: a few shapes of training-log line, one level in 20 a warning. */
static void
add_entry(long long i)
{
	char msg[160], fields[64];
	int64_t job = 1 + (i / 4) % JOBS; /* every task gets every shape of line */
	const char *f = NULL;

	if (i % RARE_EVERY == 0)
		snprintf(msg, sizeof msg, "zeppelin alarm raised at step %lld", i);
	else
		switch (i % 4) {
		case 0:
			snprintf(msg, sizeof msg, "step %lld: loss %.4f, lr %.2e", i, 1.0 / (1 + i % 977),
			         1e-3 / (1 + i % 7));
			break;
		case 1:
			snprintf(msg, sizeof msg, "validation loss %.4f after epoch %lld",
			         0.5 / (1 + i % 113), i / 1000);
			break;
		case 2:
			snprintf(msg, sizeof msg, "checkpoint saved to step-%lld.ckpt (%lld bytes)", i,
			         1000 + i % 4096);
			break;
		default:
			snprintf(msg, sizeof msg, "data: batch %lld of 400 loaded in %lld ms", i % 400,
			         i % 50);
			snprintf(fields, sizeof fields, "{\"batch\":%lld}", i % 400);
			f = fields;
		}
	loomi_logs_add(job, "worker", i % 20 == 0 ? LOOM_LOG_WARN : LOOM_LOG_INFO, msg, f);
}

/* Time Q queries of one kind; p50 and p99 in ms, the mean number of hits. */
static void
time_queries(loomi_daemon *d, const char *label, const char *q, int n_queries)
{
	uint64_t *ns = loomi_xcalloc((size_t)n_queries, sizeof *ns);
	double hits = 0;

	for (int k = 0; k < n_queries; k++) {
		char query[256];
		loomi_http_req req = {.method = "GET", .path = "/api/v1/logs", .query = query};
		loomi_http_res res = {0};
		uint64_t t0;

		snprintf(query, sizeof query, "job=task-%d&q=%s&limit=100", 1 + (k * 37) % JOBS, q);
		t0 = loomi_mono_ns();
		loomi_api_handle(d, &req, &res);
		ns[k] = loomi_mono_ns() - t0;
		if (res.status != 200) {
			fprintf(stderr, "logs-query: %s answered %d\n", query, res.status);
			exit(1);
		}
		hits += (double)json_array_size(json_object_get(res.body, "logs"));
		json_decref(res.body);
	}
	qsort(ns, (size_t)n_queries, sizeof *ns, cmp_u64);
	printf("| %-28s | %-22s | %8.2f | %8.2f | %6.1f |\n", label, q,
	       (double)ns[n_queries / 2] / 1e6, (double)ns[(n_queries * 99) / 100] / 1e6,
	       hits / n_queries);
	free(ns);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"entries", required_argument, NULL, 'n'}, {"queries", required_argument, NULL, 'q'},
		{"dir", required_argument, NULL, 'd'},     {"keep", no_argument, NULL, 'k'},
		{NULL, 0, NULL, 0},
	};
	long long entries = 10000000;
	int n_queries = 50, c;
	bool keep = false;
	char *dir = NULL, *db, *err = NULL;
	loomi_daemon d;
	uint64_t t0, fill_ns;
	struct stat stt;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'n': entries = atoll(optarg); break;
		case 'q': n_queries = atoi(optarg); break;
		case 'd': dir = loomi_strdup(optarg); break;
		case 'k': keep = true; break;
		default:
			fprintf(stderr, "usage: logs-query [--entries N] [--queries Q] [--dir DIR] "
			                "[--keep]\n");
			return 2;
		}
	}
	if (entries < 1 || n_queries < 2) {
		fprintf(stderr, "logs-query: --entries and --queries must be at least 1 and 2\n");
		return 2;
	}
	if (dir == NULL) {
		char tmpl[] = "/tmp/loom-bench-logs.XXXXXX";
		if (mkdtemp(tmpl) == NULL) {
			perror("logs-query: mkdtemp");
			return 1;
		}
		dir = loomi_strdup(tmpl);
	}
	loomi_log_setup(LOOM_LOG_WARN, LOOMI_LOG_TEXT, NULL, NULL);
	memset(&d, 0, sizeof d);
	d.conf.state_dir = dir;
	db = loomi_path_join(dir, "loom.db");
	if (loomi_store_open(&d.store, db, &err) != 0 || loomi_logs_start(&d, &err) != 0) {
		fprintf(stderr, "logs-query: %s\n", err);
		return 1;
	}

	t0 = loomi_mono_ns();
	for (long long i = 0; i < entries; i++) {
		add_entry(i);
		if ((i + 1) % FLUSH_EVERY == 0)
			while (!loomi_logs_flush())
				; /* a flush waits 10 s at most: a slow checkpoint takes longer */
	}
	while (!loomi_logs_flush())
		;
	fill_ns = loomi_mono_ns() - t0;
	if (loomi_logs_dropped() != 0) {
		fprintf(stderr, "logs-query: %llu entries dropped while filling\n",
		        (unsigned long long)loomi_logs_dropped());
		return 1;
	}
	stat(db, &stt);
	printf("entries: %lld through loomi_logs_add (the writer thread, batched), in %.1f s: "
	       "%.0f entries/s; database %.2f GB\n\n",
	       entries, (double)fill_ns / 1e9, (double)entries / ((double)fill_ns / 1e9),
	       (double)stt.st_size / 1e9);
	printf("| %-28s | %-22s | %8s | %8s | %6s |\n", "query (job=task-N, limit=100)", "q",
	       "p50 ms", "p99 ms", "hits");
	printf("|------------------------------|------------------------|----------|----------|"
	       "--------|\n");
	time_queries(&d, "rare word (1 in 100,000)", "zeppelin", n_queries);
	time_queries(&d, "common word (1 in 2)", "loss", n_queries);
	time_queries(&d, "phrase", "%22validation+loss%22", n_queries);
	time_queries(&d, "word AND word", "checkpoint+saved", n_queries);

	loomi_logs_stop();
	loomi_store_close(&d.store);
	free(db);
	if (!keep) {
		char *cmd = loomi_strfmt("rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "logs-query: could not remove %s\n", dir);
		free(cmd);
	} else {
		printf("\nkept %s\n", dir);
	}
	free(dir);
	return 0;
}

/* The metrics module: GET /metrics, loomd's own state in the Prometheus
 * text format (prom.h) for a Prometheus server to scrape.  docs/metrics.md
 * lists every family.
 *
 * Nothing here counts: each service counts what it does behind its own
 * interface (the tasks' transitions, workers and plan times in
 * host/tasks/tasks.h, tracking's points in host/tracking/tracking.h, the
 * bus's messages in host/core/bus.h, the API's requests in
 * host/server/api-stats.h), with relaxed atomic adds on its own paths;
 * a scrape reads them, plus what the process and the store directory say
 * (/proc, getrusage, file sizes).
 *
 * Labels are bounded enumerations only — states, route patterns, methods,
 * statuses, plugin kinds —: task names, user names and paths never become
 * labels, so a scrape's size does not grow with what users create. */
#include "config.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <loom/version.h>

#include "host/core/bus.h"
#include "host/core/plugins.h"
#include "host/core/util.h"
#include "host/inference/inference.h"
#include "host/server/api-stats.h"
#include "host/server/module.h"
#include "host/tasks/tasks.h"
#include "host/tracking/tracking.h"
#include "metrics.h"
#include "prom.h"

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* ------------------------------------------------------------------ tasks */

static void
write_tasks(loomi_daemon *d, loomi_prom *w)
{
	loomi_jobs_stats js;
	const loomi_histogram *plan;
	const double *bounds;
	size_t n_bounds;
	uint64_t counts[LOOMI_HISTOGRAM_MAX_BOUNDS + 1];
	double sum;

	loomi_jobs_stats_read(d, &js); /* on a store error the tasks read 0; /health says why */
	loomi_prom_family(w, "loom_tasks", "gauge", "Training tasks in each state.");
	for (uint32_t s = 1; s <= LOOMI_JOB_STATES; s++) {
		loomi_prom_label l = {"state", loom_job_state_name(s)};
		loomi_prom_sample(w, "loom_tasks", &l, 1, (double)js.tasks[s]);
	}
	loomi_prom_family(w, "loom_task_transitions_total", "counter",
	                  "Task state transitions stored since loomd started, by the state "
	                  "entered.");
	for (uint32_t s = 1; s <= LOOMI_JOB_STATES; s++) {
		loomi_prom_label l = {"to", loom_job_state_name(s)};
		loomi_prom_sample_u64(w, "loom_task_transitions_total", &l, 1, js.transitions[s]);
	}
	loomi_prom_family(w, "loom_workers_running", "gauge",
	                  "loom-worker processes running a task attempt.");
	loomi_prom_sample(w, "loom_workers_running", NULL, 0, (double)js.workers);

	plan = loomi_jobs_plan_histogram(&bounds, &n_bounds);
	loomi_histogram_read(plan, n_bounds, counts, &sum);
	loomi_prom_family(w, "loom_scheduler_plan_seconds", "histogram",
	                  "Time the scheduler plugin took to plan, per plan.");
	loomi_prom_histogram(w, "loom_scheduler_plan_seconds", NULL, 0, bounds, n_bounds, counts, sum);
}

/* ------------------------------------------------------------------ HTTP */

typedef struct request_count {
	const char *route, *method;
	int status;
	uint64_t n;
} request_count;

typedef struct request_counts {
	request_count *v;
	size_t n, cap;
} request_counts;

static void
collect_request(void *arg, const char *route, const char *method, int status, uint64_t n)
{
	request_counts *rc = arg;

	if (rc->n == rc->cap) {
		rc->cap = rc->cap ? 2 * rc->cap : 64;
		rc->v = loomi_xrealloc(rc->v, rc->cap * sizeof *rc->v);
	}
	rc->v[rc->n++] = (request_count){route, method, status, n};
}

static int
request_cmp(const void *a, const void *b)
{
	const request_count *x = a, *y = b;
	int c = strcmp(x->route, y->route);

	if (c == 0)
		c = strcmp(x->method, y->method);
	return c ? c : x->status - y->status;
}

static void
write_duration(void *arg, const char *route, const loomi_histogram *h)
{
	uint64_t counts[LOOMI_HISTOGRAM_MAX_BOUNDS + 1];
	loomi_prom_label l = {"route", route};
	double sum;

	loomi_histogram_read(h, loomi_n_duration_bounds, counts, &sum);
	loomi_prom_histogram(arg, "loom_http_request_duration_seconds", &l, 1, loomi_duration_bounds,
	                     loomi_n_duration_bounds, counts, sum);
}

static void
write_http(loomi_prom *w)
{
	request_counts rc = {0};

	loomi_api_stats_requests(collect_request, &rc);
	if (rc.n > 1) /* none yet: rc.v is NULL, which qsort may not be given */
		qsort(rc.v, rc.n, sizeof *rc.v, request_cmp);
	loomi_prom_family(w, "loom_http_requests_total", "counter",
	                  "HTTP requests answered, by route pattern (\"unmatched\" when none "
	                  "matched), method and status.");
	for (size_t i = 0; i < rc.n; i++) {
		char status[8];
		snprintf(status, sizeof status, "%d", rc.v[i].status);
		loomi_prom_label l[3] = {
			{"route", rc.v[i].route}, {"method", rc.v[i].method}, {"status", status}};
		loomi_prom_sample_u64(w, "loom_http_requests_total", l, 3, rc.v[i].n);
	}
	free(rc.v);
	loomi_prom_family(w, "loom_http_request_duration_seconds", "histogram",
	                  "Time from a request's arrival at the pipeline to its answer being "
	                  "ready, by route pattern.");
	loomi_api_stats_durations(write_duration, w);
	loomi_prom_family(w, "loom_websocket_connections", "gauge", "WebSocket connections open.");
	loomi_prom_sample(w, "loom_websocket_connections", NULL, 0,
	                  (double)loomi_api_stats_websockets());
}

/* ------------------------------------------------------------------ bus and tracking */

static void
write_bus(loomi_daemon *d, loomi_prom *w)
{
	loomi_bus_stats b = {0};
	static const char *const name = "loom_bus_messages_total";

	if (d->bus)
		loomi_bus_stats_read(d->bus, &b);
	loomi_prom_family(w, name, "counter",
	                  "Messages on loomd's bus (workers and loomd), by direction and kind.");
	const struct {
		const char *direction, *kind;
		uint64_t n;
	} rows[] = {
		{"in", "request", b.requests_in},   {"out", "reply", b.replies_out},
		{"out", "request", b.requests_out}, {"in", "reply", b.replies_in},
		{"out", "event", b.events_out},     {"in", "event", b.events_in},
	};
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
		loomi_prom_label l[2] = {{"direction", rows[i].direction}, {"kind", rows[i].kind}};
		loomi_prom_sample_u64(w, name, l, 2, rows[i].n);
	}
	loomi_prom_family(w, "loom_bus_messages_dropped_total", "counter",
	                  "Malformed bus messages dropped.");
	loomi_prom_sample_u64(w, "loom_bus_messages_dropped_total", NULL, 0, b.dropped);
}

/* ------------------------------------------------------------------ inference */

static void
write_inference(loomi_daemon *d, loomi_prom *w)
{
	loomi_inference_stats s;
	const struct {
		const char *name, *type, *help;
	} rows[] = {
		{"loom_inference_requests_total", "counter",
		 "Predict requests answered (POST /api/v1/models/{name}/predict, 200)."},
		{"loom_inference_failures_total", "counter",
		 "Predict requests for a resolved model answered 4xx or 5xx."},
		{"loom_inference_windows_total", "counter", "Windows predicted, cached answers included."},
		{"loom_inference_cache_hits_total", "counter", "Predict answers served from the cache."},
		{"loom_inference_cache_misses_total", "counter",
		 "Predict requests the cache did not hold."},
		{"loom_inference_cache_evictions_total", "counter",
		 "Answers dropped from the cache to make room."},
		{"loom_inference_cache_bytes", "gauge", "Bytes the answer cache holds."},
		{"loom_inference_cache_capacity_bytes", "gauge", "The answer cache's bound."},
		{"loom_inference_cache_entries", "gauge", "Answers the cache holds."},
		{"loom_inference_workers", "gauge", "Inference workers running or starting."},
		{"loom_inference_worker_starts_total", "counter",
		 "Inference worker processes started, restarts included."},
		{"loom_inference_worker_deaths_total", "counter",
		 "Inference workers found dead, or stopped for not answering."},
	};
	uint64_t v[12];

	loomi_inference_stats_read(d, &s);
	v[0] = s.requests;
	v[1] = s.failures;
	v[2] = s.windows;
	v[3] = s.cache_hits;
	v[4] = s.cache_misses;
	v[5] = s.cache_evictions;
	v[6] = s.cache_bytes;
	v[7] = s.cache_capacity;
	v[8] = s.cache_entries;
	v[9] = s.workers;
	v[10] = s.worker_starts;
	v[11] = s.worker_deaths;
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
		loomi_prom_family(w, rows[i].name, rows[i].type, rows[i].help);
		loomi_prom_sample_u64(w, rows[i].name, NULL, 0, v[i]);
	}
}

static void
write_tracking(loomi_prom *w)
{
	loomi_tracking_counters c;

	loomi_tracking_counters_read(&c);
	loomi_prom_family(w, "loom_metric_points_ingested_total", "counter",
	                  "Metric points stored in runs (from workers and from scripts).");
	loomi_prom_sample_u64(w, "loom_metric_points_ingested_total", NULL, 0, c.points_ingested);
	loomi_prom_family(w, "loom_metric_points_dropped_total", "counter",
	                  "Metric points from workers that were not stored, by reason.");
	const struct {
		const char *reason;
		uint64_t n;
	} rows[] = {
		{"queue_full", c.points_dropped_full},
		{"malformed", c.points_dropped_malformed},
		{"no_run", c.points_dropped_no_run},
	};
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
		loomi_prom_label l = {"reason", rows[i].reason};
		loomi_prom_sample_u64(w, "loom_metric_points_dropped_total", &l, 1, rows[i].n);
	}
	loomi_prom_family(w, "loom_tracker_points_dropped_total", "counter",
	                  "Stored metric points not handed to the tracker plugins, which fell "
	                  "behind.");
	loomi_prom_sample_u64(w, "loom_tracker_points_dropped_total", NULL, 0,
	                      c.tracker_points_dropped);
}

/* ------------------------------------------------------------------ the store, plugins */

static double
file_size(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 ? (double)sb.st_size : 0;
}

static void
write_store(loomi_daemon *d, loomi_prom *w)
{
	loomi_prom_family(w, "loom_store_bytes", "gauge",
	                  "Size of the state database's files: the database and its write-ahead "
	                  "log.");
	if (d->store.path == NULL)
		return;
	char *wal = loomi_strfmt("%s-wal", d->store.path);
	loomi_prom_label db = {"file", "database"}, log = {"file", "wal"};
	loomi_prom_sample(w, "loom_store_bytes", &db, 1, file_size(d->store.path));
	loomi_prom_sample(w, "loom_store_bytes", &log, 1, file_size(wal));
	free(wal);
}

static void
write_plugins(loomi_daemon *d, loomi_prom *w)
{
	size_t n[LOOM_KIND_MAX + 1] = {0};

	for (size_t i = 0; i < d->plugins.n_instances; i++)
		if (d->plugins.instances[i]->kind <= LOOM_KIND_MAX)
			n[d->plugins.instances[i]->kind]++;
	loomi_prom_family(w, "loom_plugin_instances", "gauge",
	                  "Plugin instances configured, by kind.");
	for (uint32_t k = 1; k <= LOOM_KIND_MAX; k++) {
		loomi_prom_label l = {"kind", loom_kind_name(k)};
		loomi_prom_sample(w, "loom_plugin_instances", &l, 1, (double)n[k]);
	}
}

static void
write_build(loomi_prom *w)
{
	char abi[32];

	snprintf(abi, sizeof abi, "%d.%d", LOOM_ABI_MAJOR, LOOM_ABI_MINOR);
	loomi_prom_label l[2] = {{"version", LOOM_VERSION_STRING}, {"abi", abi}};
	loomi_prom_family(w, "loom_build_info", "gauge",
	                  "loomd's version and plugin ABI, as labels; the value is always 1.");
	loomi_prom_sample(w, "loom_build_info", l, 2, 1);
}

/* ------------------------------------------------------------------ the process */

/* From /proc/self/stat: the start time (clock ticks after boot), virtual
 * size (bytes) and resident set (pages).  false where there is no /proc. */
static bool
proc_stat(unsigned long long *start_ticks, unsigned long long *vsize, long long *rss_pages)
{
	char buf[1024], *p;
	FILE *f = fopen("/proc/self/stat", "r");
	size_t n;
	bool ok;

	if (f == NULL)
		return false;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* the command name (field 2) is in parentheses and may hold anything */
	if ((p = strrchr(buf, ')')) == NULL)
		return false;
	/* fields 3 … : state, then 19 numbers up to starttime (22), vsize, rss */
	ok = sscanf(p + 2,
	            "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d "
	            "%llu %llu %lld",
	            start_ticks, vsize, rss_pages) == 3;
	return ok;
}

/* The machine's boot time (seconds since the epoch), 0 if unknown. */
static long long
boot_time(void)
{
	char line[256];
	long long t = 0;
	FILE *f = fopen("/proc/stat", "r");

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "btime %lld", &t) == 1)
			break;
	fclose(f);
	return t;
}

/* Open descriptors, -1 where /proc/self/fd cannot be read. */
static long
open_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *e;
	long n = 0;

	if (dir == NULL)
		return -1;
	while ((e = readdir(dir)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(dir);
	return n - 1; /* the directory's own */
}

static void
write_process(loomi_daemon *d, loomi_prom *w)
{
	struct rusage ru;
	struct rlimit rl;
	unsigned long long start_ticks = 0, vsize = 0;
	long long rss_pages = 0, btime = boot_time();
	long fds = open_fds(), tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	bool have_stat = proc_stat(&start_ticks, &vsize, &rss_pages);
	double start;

	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		loomi_prom_family(w, "process_cpu_seconds_total", "counter",
		                  "User and system CPU time spent by loomd (its workers not included).");
		loomi_prom_sample(w, "process_cpu_seconds_total", NULL, 0,
		                  (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		                      (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
	}
	if (have_stat) {
		loomi_prom_family(w, "process_resident_memory_bytes", "gauge",
		                  "Resident memory of loomd.");
		loomi_prom_sample(w, "process_resident_memory_bytes", NULL, 0,
		                  (double)rss_pages * (double)(page > 0 ? page : 4096));
		loomi_prom_family(w, "process_virtual_memory_bytes", "gauge",
		                  "Virtual memory of loomd.");
		loomi_prom_sample(w, "process_virtual_memory_bytes", NULL, 0, (double)vsize);
	}
	/* from the kernel when it says, else when loomd's main began */
	if (have_stat && btime > 0 && tick > 0)
		start = (double)btime + (double)start_ticks / (double)tick;
	else
		start = (double)d->started_ms / 1000.0;
	loomi_prom_family(w, "process_start_time_seconds", "gauge",
	                  "When loomd started, in seconds since the Unix epoch.");
	loomi_prom_sample(w, "process_start_time_seconds", NULL, 0, start);
	if (fds >= 0) {
		loomi_prom_family(w, "process_open_fds", "gauge", "Open file descriptors of loomd.");
		loomi_prom_sample(w, "process_open_fds", NULL, 0, (double)fds);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		loomi_prom_family(w, "process_max_fds", "gauge",
		                  "loomd's limit on open file descriptors (RLIMIT_NOFILE).");
		loomi_prom_sample(w, "process_max_fds", NULL, 0, (double)rl.rlim_cur);
	}
}

/* ------------------------------------------------------------------ the route */

/* Everything, in the order docs/metrics.md lists it. */
char *
loomi_metrics_text(loomi_daemon *d, size_t *len)
{
	loomi_prom w = {0};

	write_build(&w);
	write_tasks(d, &w);
	write_http(&w);
	write_bus(d, &w);
	write_tracking(&w);
	write_inference(d, &w);
	write_store(d, &w);
	write_plugins(d, &w);
	write_process(d, &w);
	*len = w.len;
	return w.buf;
}

static void
get_metrics(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	(void)req;
	res->status = 200;
	res->text = loomi_metrics_text(d, &res->text_len);
	res->content_type = CONTENT_TYPE;
}

static const loomi_route routes[] = {
	{"GET", "/metrics", get_metrics, LOOMI_ACCESS_READ, NULL},
};

const loomi_module loomi_metrics_module = {
	.name = "metrics",
	.routes = routes,
	.n_routes = LOOMI_N(routes),
};

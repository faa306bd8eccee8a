/* loom-worker — runs one job in the foreground (SPEC §5.2).
 *
 *   loom-worker --run SPEC --out DIR [--max-steps N] [--threads N] [-c FILE]
 *   loom-worker --resume DIR [--max-steps N] [--threads N] [-c FILE]
 *   loom-worker --connect BUS --job ID --attempt N [--threads N] [-c FILE]
 *               [--state-dir DIR] [--memory-limit SIZE]
 *   loom-worker --predict DIR [--input FILE [--output FILE]] [--uncertainty] [-c FILE]
 *   loom-worker --serve DIR --listen URL [--passes K] [-c FILE]
 *
 * --memory-limit SIZE (any mode) sets RLIMIT_AS before anything is loaded;
 * loomd passes it for a task with a memory request where no cgroup holds
 * the worker to it, and an out-of-memory failure under it is reported as
 * such (job.finish's memory_exceeded).  The peak reported (max_rss) is the
 * worker's own VmHWM.
 *
 * --run trains the job of SPEC (libconfig or JSON) and writes into DIR its
 * checkpoints, last.safetensors, best.safetensors and metrics.json, showing a
 * progress line.  --max-steps N stops after step N as a pause does: a
 * checkpoint is written and the worker exits 0.  SIGINT or SIGTERM pause the
 * same way at the next step.  --resume continues from DIR's newest
 * checkpoint with DIR/job.json; a run paused and resumed ends with the same
 * bytes in last.safetensors as one that never stopped (same thread count).
 *
 * Plugins come from -c FILE (a loomd.conf: its plugin_path and plugins), or
 * by default: transformer = compute-transformer, and the heads forecast,
 * regression, classification and anomaly.  --state-dir DIR resolves the
 * plugins' relative paths as loomd does, under DIR/plugins/INSTANCE (loomd
 * passes its own, so a worker's storage-local reads the blobs loomd's
 * does); without it they are relative to the working directory.  Exit
 * status: 0 completed or paused, 1 the job failed (its error is printed),
 * 2 bad usage.
 *
 * --predict DIR runs DIR's trained model (best.safetensors, else
 * last.safetensors) on the windows of --input FILE, JSON {"input":
 * [batch][context][channels]} of raw data values, and writes {"shape",
 * "output", "info"} to --output FILE (stdout); without --input it prints
 * the model's description of its input and output.  --uncertainty adds
 * "uncertainty", each output value's (docs/inference.md).
 *
 * --serve DIR is an inference worker (serve.c, docs/inference.md): DIR's
 * model answers predict requests on --listen URL until SIGTERM or SIGINT.
 *
 * --connect serves loomd (host/tasks/tasks.h): the worker asks the bus address
 * BUS for job ID's spec and directory (job.attach), runs it, reports
 * progress, metrics, log lines and resource usage within 10 ms (and at
 * least every second)
 * (job.report, whose reply says run, pause or cancel), and says how the run
 * ended (job.finish).  loomd starts it this way; a Slurm job step can too. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/resource.h>

#include "host/core/bus.h"
#include "host/core/conf.h"
#include "host/core/log.h"
#include "host/core/plugins.h"
#include "worker.h"

static atomic_int stop_signal;

/* --memory-limit: the RLIMIT_AS it runs under, 0: none */
static uint64_t memory_limit;

/* --connect: how often a worker reports to loomd */
#define REPORT_NEWS_NS 10000000ull    /* with progress, metrics or logs: 10 ms */
#define REPORT_IDLE_NS 1000000000ull  /* without: a heartbeat every second */

static void
on_signal(int sig)
{
	atomic_store(&stop_signal, sig);
}

typedef struct worker {
	bool tty;
	uint64_t started_ns, last_print_ns;
	int64_t first_step;
	double last_loss;
	bool have_loss;
	/* --connect */
	loomi_bus_client *bus;
	int64_t job_id;
	int attempt;
	atomic_int control;     /* from the last report's reply */
	char *last_error;
	/* the reporter thread sends these; mtx guards them */
	pthread_mutex_t mtx;
	pthread_cond_t cv;      /* news, or stop */
	pthread_t reporter;
	bool reporter_up, reporter_stop;
	uint64_t last_report_ns;
	uint64_t report_pause_ns; /* after a failed report: wait this long */
	bool news;              /* progress, metrics or logs not yet reported */
	json_t *progress;       /* the latest, not yet reported */
	json_t *metrics;        /* name → latest value, not yet reported */
	json_t *logs;           /* lines not yet reported */
	json_t *points;         /* every metric point not yet reported, for the
	                         * run's history: [name, step, epoch, scope,
	                         * wall_ms, value] */
	uint64_t points_dropped;
} worker;

/* Points kept while loomd cannot be reached; beyond, the oldest go. */
#define MAX_PENDING_POINTS 200000

static void
fmt_duration(char *buf, size_t n, double s)
{
	if (!(s >= 0) || s > 1e7)
		snprintf(buf, n, "?");
	else if (s < 60)
		snprintf(buf, n, "%.0fs", s);
	else if (s < 3600)
		snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
	else
		snprintf(buf, n, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

static void
on_progress(const loom_job *job, int64_t step, int64_t total, int32_t epoch, int32_t epochs)
{
	worker *w = job->arg;
	uint64_t now = loomi_mono_ns();
	double elapsed, rate, eta;
	char eta_s[32], loss_s[32] = "";

	if (w->first_step < 0) {
		w->first_step = step - 1;
		w->started_ns = now;
	}
	/* a tty gets a line redrawn 10 times a second; a log every 10 s */
	if (step < total && now - w->last_print_ns < (w->tty ? 100000000ull : 10000000000ull))
		return;
	w->last_print_ns = now;
	elapsed = (double)(now - w->started_ns) / 1e9;
	rate = elapsed > 0 ? (double)(step - w->first_step) / elapsed : 0;
	eta = rate > 0 ? (double)(total - step) / rate : -1;
	fmt_duration(eta_s, sizeof eta_s, eta);
	if (w->have_loss)
		snprintf(loss_s, sizeof loss_s, "  loss %.5f", w->last_loss);
	fprintf(stderr, "%sstep %lld/%lld (%3.0f%%)  epoch %d/%d%s  %.1f steps/s  ETA %s%s",
	        w->tty ? "\r\033[K" : "", (long long)step, (long long)total,
	        total ? 100.0 * (double)step / (double)total : 0.0, epoch, epochs, loss_s, rate,
	        eta_s, w->tty ? "" : "\n");
	if (w->tty && step == total)
		fputc('\n', stderr);
}

static void
on_metric(const loom_job *job, const loom_metric_point *pt)
{
	worker *w = job->arg;
	if (strcmp(pt->name, "train_loss") == 0) {
		w->last_loss = pt->value;
		w->have_loss = true;
	}
}

static void
on_log(const loom_job *job, int level, const char *msg)
{
	worker *w = job->arg;
	if (!loomi_log_enabled(level))
		return;
	if (w->tty)
		fputs("\r\033[K", stderr);
	loomi_log(level, "job", "%s", msg);
}

/* The worker's own peak resident memory in bytes: VmHWM.  Not ru_maxrss,
 * which after posix_spawn from loomd holds loomd's high-water mark (Linux
 * carries it over exec); that only where there is no /proc. */
static uint64_t
peak_rss(void)
{
	FILE *fp = fopen("/proc/self/status", "re");
	char line[256];
	unsigned long long kb = 0;
	struct rusage ru;

	while (fp && fgets(line, sizeof line, fp))
		if (sscanf(line, "VmHWM: %llu kB", &kb) == 1)
			break;
	if (fp)
		fclose(fp);
	if (kb == 0 && getrusage(RUSAGE_SELF, &ru) == 0)
		kb = (unsigned long long)ru.ru_maxrss;
	return (uint64_t)kb * 1024;
}

static int
on_control(const loom_job *job)
{
	return atomic_load(&stop_signal) ? LOOM_CONTROL_PAUSE : LOOM_CONTROL_RUN;
}

static void
usage(FILE *fp)
{
	fprintf(fp,
	        "usage: loom-worker --run SPEC --out DIR [--max-steps N] [--threads N] [-c FILE]\n"
	        "       loom-worker --resume DIR [--max-steps N] [--threads N] [-c FILE]\n"
	        "       loom-worker --connect BUS --job ID [--attempt N] [--threads N] [-c FILE]\n"
	        "                   [--state-dir DIR]\n"
	        "       loom-worker --predict DIR [--input FILE [--output FILE]] [--uncertainty]\n"
	        "                   [-c FILE]\n"
	        "       loom-worker --serve DIR --listen URL [--passes K] [-c FILE]\n"
	        "\n"
	        "  --run SPEC        train the job described by SPEC (libconfig or JSON)\n"
	        "  --out DIR         write checkpoints, weights and metrics.json into DIR\n"
	        "  --resume DIR      continue DIR's run from its newest checkpoint\n"
	        "  --max-steps N     stop after step N as a pause does (checkpoint, exit 0)\n"
	        "  --connect BUS     run task ID for the loomd at bus address BUS\n"
	        "  --predict DIR     run DIR's trained model on --input's windows (JSON\n"
	        "                    [batch][context][channels] of raw values) into --output\n"
	        "                    [stdout]; without --input, describe its input and output\n"
	        "  --uncertainty     also give each output value's uncertainty (forecast,\n"
	        "                    regression; see the model's info \"uncertainty\")\n"
	        "  --serve DIR       answer DIR's model's predict requests on --listen URL\n"
	        "                    (ipc:///PATH or tcp://127.0.0.1:PORT) until SIGTERM;\n"
	        "                    prints \"ready URL\" when listening (docs/inference.md)\n"
	        "  --passes K        Monte-Carlo-dropout passes of an uncertainty [16]\n"
	        "  --threads N       CPU threads [all online cores]\n"
	        "  -c, --config FILE take plugin_path and plugins from a loomd.conf\n"
	        "  --state-dir DIR   resolve the plugins' relative paths under DIR/plugins/NAME,\n"
	        "                    as loomd does [relative to the working directory]\n"
	        "  --memory-limit N  run under an address-space limit (RLIMIT_AS) of N bytes\n"
	        "                    or a size such as 896M; loomd sets it from a task's\n"
	        "                    memory request\n"
	        "  --log-level L     error, warn, info, debug or trace [info]\n");
}

/* The default plugin instances, as a loomd.conf would declare them. */
static const char default_plugins[] =
	"plugins = (\n"
	"  { instance = \"transformer\"; module = \"compute-transformer\"; },\n"
	"  { instance = \"forecast\"; module = \"head-forecast\"; },\n"
	"  { instance = \"regression\"; module = \"head-regression\"; },\n"
	"  { instance = \"classification\"; module = \"head-classification\"; },\n"
	"  { instance = \"anomaly\"; module = \"head-anomaly\"; },\n"
	"  { instance = \"reservoir\"; module = \"sampler-reservoir\"; }\n"
	");\n";

/* --state-dir: where plugins' relative paths resolve, as in loomd */
static const char *state_dir;

int
worker_load_plugins(loomi_plugins *reg, const char *conf_path, loomi_conf *conf, loomi_doc *doc)
{
	loomi_strv errs = {0};
	const json_t *list;
	size_t n_plugins = 0;
	loomi_plugin_conf *pcs = NULL;
	char *err = NULL;

	if (conf_path) {
		if (loomi_conf_load(conf, conf_path, &errs) != 0) {
			loomi_plugins_init(reg, NULL, 0, NULL); /* empty, for the caller's fini */
			goto fail;
		}
		loomi_plugins_init(reg, (const char *const *)conf->plugin_path.v, conf->plugin_path.n,
		                   state_dir);
		pcs = conf->plugins;
		n_plugins = conf->n_plugins;
		doc = &conf->doc;
	} else {
		size_t i;
		json_t *p;
		loomi_plugins_init(reg, NULL, 0, state_dir);
		if (loomi_doc_load_string(doc, default_plugins, "(built-in plugins)", &errs) != 0)
			goto fail;
		list = json_object_get(doc->root, "plugins");
		pcs = calloc(json_array_size(list) + 1, sizeof *pcs);
		json_array_foreach(list, i, p) {
			pcs[n_plugins].instance = (char *)json_string_value(json_object_get(p, "instance"));
			pcs[n_plugins].module = (char *)json_string_value(json_object_get(p, "module"));
			pcs[n_plugins].node = p;
			n_plugins++;
		}
	}
	for (size_t i = 0; i < n_plugins; i++) {
		loom_instance *ins;
		loomi_instance_create(reg, doc, &pcs[i], &ins, &errs);
	}
	if (errs.n > 0)
		goto fail;
	for (size_t i = 0; i < reg->n_instances; i++) {
		uint32_t kind = reg->instances[i]->kind;
		/* a run needs its compute plugin, heads, samplers and storage; the
		 * host's schedulers, trackers and exporters stay unstarted here
		 * (their settings may name the host's directories) */
		if (kind == LOOM_KIND_SCHEDULER || kind == LOOM_KIND_TRACKER ||
		    kind == LOOM_KIND_EXPORTER)
			continue;
		if (loomi_instance_start(reg->instances[i], &err) != 0) {
			loomi_strv_push(&errs, err);
			goto fail;
		}
	}
	if (!conf_path)
		free(pcs);
	return 0;
fail:
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "loom-worker: %s\n", errs.v[i]);
	loomi_strv_free(&errs);
	if (!conf_path)
		free(pcs);
	return EXIT_FAILED;
}

static void
print_summary(const char *out)
{
	char *path = loomi_path_join(out, "metrics.json"), *text = NULL;
	json_t *m, *test, *base;
	const char *key;
	json_t *v;

	if (loomi_read_file(path, &text, NULL) != 0 || (m = json_loads(text, 0, NULL)) == NULL) {
		free(path);
		free(text);
		return;
	}
	test = json_object_get(m, "test");
	base = json_object_get(m, "baselines");
	fprintf(stderr, "test metrics:");
	json_object_foreach(test, key, v) {
		/* the headline figures; per-class detail stays in metrics.json */
		if (json_is_number(v) && strchr(key, '.') == NULL)
			fprintf(stderr, "  %s %.5g", key, json_number_value(v));
	}
	fputc('\n', stderr);
	json_object_foreach(base, key, v) {
		const char *k2;
		json_t *v2;
		fprintf(stderr, "baseline %s:", key);
		json_object_foreach(v, k2, v2) {
			if (json_is_number(v2))
				fprintf(stderr, "  %s %.5g", k2, json_number_value(v2));
			else if (json_is_string(v2))
				fprintf(stderr, "  %s %s", k2, json_string_value(v2));
		}
		fputc('\n', stderr);
	}
	fprintf(stderr, "wrote %s/{last,best}.safetensors and %s\n", out, path);
	json_decref(m);
	free(text);
	free(path);
}

/* ------------------------------------------------------------------ --connect */

/* The compute plugin's callbacks only record news and wake the reporter
 * thread, which sends it to loomd: training never waits on the bus. */
static void
bus_progress(const loom_job *job, int64_t step, int64_t total, int32_t epoch, int32_t epochs)
{
	worker *w = job->arg;
	json_t *p = json_pack("{s:I, s:I, s:i, s:i}", "step", (json_int_t)step, "total_steps",
	                      (json_int_t)total, "epoch", epoch, "epochs", epochs);
	pthread_mutex_lock(&w->mtx);
	json_decref(w->progress);
	w->progress = p;
	w->news = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mtx);
}

static void
bus_metric(const loom_job *job, const loom_metric_point *pt)
{
	worker *w = job->arg;
	/* JSON has no NaN: a non-finite value travels as a string */
	json_t *v = isfinite(pt->value) ? json_real(pt->value)
	            : json_string(isnan(pt->value) ? "NaN" : pt->value > 0 ? "Infinity" : "-Infinity");

	pthread_mutex_lock(&w->mtx);
	if (json_array_size(w->points) >= MAX_PENDING_POINTS) {
		/* loomd has been unreachable for a long while: the oldest go */
		json_array_remove(w->points, 0);
		if (w->points_dropped++ == 0)
			LOG_WARN("loomd unreachable: keeping only the newest %d metric points for it",
			         MAX_PENDING_POINTS);
	}
	json_array_append_new(w->points, json_pack("[s, I, i, i, I, O]", pt->name, (json_int_t)pt->step,
	                                           (int)pt->epoch, (int)pt->scope,
	                                           (json_int_t)pt->wall_ms, v));
	if (isfinite(pt->value)) {
		json_object_set(w->metrics, pt->name, v);
		if (strcmp(pt->name, "train_loss") == 0)
			json_object_set(w->metrics, "loss", v);
	}
	json_decref(v);
	w->news = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mtx);
}

static void
bus_log(const loom_job *job, int level, const char *msg)
{
	worker *w = job->arg;
	char *m = loomi_utf8_clean(loomi_strndup(msg, strnlen(msg, 2000)));

	if (level <= LOOM_LOG_ERROR) {
		free(w->last_error);
		w->last_error = loomi_strdup(m);
	}
	pthread_mutex_lock(&w->mtx);
	if (json_array_size(w->logs) < 1000)
		json_array_append_new(w->logs, json_pack("{s:i, s:s}", "level", level, "message", m));
	w->news = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mtx);
	loomi_log(level, "job", "%s", m);
	free(m);
}

/* Send what is new; take the host's control from the reply.  Called by
 * the reporter thread, or by the main thread once the reporter stopped. */
static void
report(worker *w)
{
	json_t *req = json_pack("{s:I, s:i}", "job", (json_int_t)w->job_id, "attempt", w->attempt);
	json_t *progress, *metrics, *logs, *points;
	struct rusage ru;
	char *body, *reply = NULL;
	uint64_t pause = REPORT_NEWS_NS;
	int rv;

	pthread_mutex_lock(&w->mtx);
	progress = w->progress;
	metrics = w->metrics;
	logs = w->logs;
	points = w->points;
	w->progress = NULL;
	w->metrics = json_object();
	w->logs = json_array();
	w->points = json_array();
	w->news = false;
	pthread_mutex_unlock(&w->mtx);
	if (progress)
		json_object_set(req, "progress", progress);
	if (json_object_size(metrics))
		json_object_set(req, "metrics", metrics);
	if (json_array_size(logs))
		json_object_set(req, "logs", logs);
	if (json_array_size(points))
		json_object_set(req, "points", points);
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		json_object_set_new(
			req, "usage",
			json_pack("{s:I, s:I}", "cpu_time_ms",
		              (json_int_t)((ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
		                           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000),
		              "max_rss", (json_int_t)peak_rss()));
	body = json_dumps(req, JSON_COMPACT);
	rv = loomi_bus_client_request(w->bus, "job.report", "worker", body, 2000, &reply);
	if (rv == 0) {
		json_t *r = json_loads(reply ? reply : "{}", 0, NULL);
		const char *c = json_string_value(json_object_get(r, "control"));
		atomic_store(&w->control, c && strcmp(c, "pause") == 0    ? LOOM_CONTROL_PAUSE
		                          : c && strcmp(c, "cancel") == 0 ? LOOM_CONTROL_CANCEL
		                                                          : LOOM_CONTROL_RUN);
		json_decref(r);
	} else if (rv == LOOM_ESTATE) {
		/* the host no longer counts on this worker: checkpoint and stop */
		LOG_WARN("loomd: %s; pausing at a checkpoint", reply ? reply : "not ours any more");
		atomic_store(&w->control, LOOM_CONTROL_PAUSE);
	} else {
		/* loomd unreachable (restarting?): keep training, keep the news
		 * (newer values win), try again in 5 s */
		const char *key;
		json_t *v;
		LOG_WARN("cannot report to loomd: %s", reply ? reply : loom_strerror(rv));
		pause = 5000000000ull;
		pthread_mutex_lock(&w->mtx);
		if (w->progress == NULL) {
			w->progress = progress;
			progress = NULL;
		}
		json_object_foreach(metrics, key, v) {
			if (json_object_get(w->metrics, key) == NULL)
				json_object_set(w->metrics, key, v);
		}
		json_array_extend(logs, w->logs);
		json_decref(w->logs);
		w->logs = json_incref(logs);
		json_array_extend(points, w->points);
		json_decref(w->points);
		w->points = json_incref(points);
		w->news = true;
		pthread_mutex_unlock(&w->mtx);
	}
	pthread_mutex_lock(&w->mtx);
	w->report_pause_ns = pause;
	w->last_report_ns = loomi_mono_ns();
	pthread_mutex_unlock(&w->mtx);
	json_decref(progress);
	json_decref(metrics);
	json_decref(logs);
	json_decref(points);
	free(reply);
	free(body);
	json_decref(req);
}

/* News goes out within 10 ms; with none, a heartbeat every second (which
 * also brings a pause or cancel). */
static void *
reporter_main(void *arg)
{
	worker *w = arg;

	pthread_mutex_lock(&w->mtx);
	while (!w->reporter_stop) {
		uint64_t now = loomi_mono_ns(), due;
		struct timespec ts;
		due = w->last_report_ns + (w->news ? w->report_pause_ns
		                                   : (w->report_pause_ns > REPORT_IDLE_NS
		                                          ? w->report_pause_ns
		                                          : REPORT_IDLE_NS));
		if (now >= due) {
			pthread_mutex_unlock(&w->mtx);
			report(w);
			pthread_mutex_lock(&w->mtx);
			continue;
		}
		ts.tv_sec = (time_t)(due / 1000000000ull);
		ts.tv_nsec = (long)(due % 1000000000ull);
		pthread_cond_timedwait(&w->cv, &w->mtx, &ts);
	}
	pthread_mutex_unlock(&w->mtx);
	return NULL;
}

static int
bus_control(const loom_job *job)
{
	worker *w = job->arg;
	int c = atomic_load(&w->control);
	/* SIGTERM pauses, unless loomd asked to cancel (its SIGTERM may
	 * follow a cancel the run was slow to act on) */
	if (atomic_load(&stop_signal) && c != LOOM_CONTROL_CANCEL)
		return LOOM_CONTROL_PAUSE;
	return c;
}

static int
run_connected(const char *addr, int64_t job_id, int attempt, long long threads,
              const char *conf_path)
{
	worker w;
	char *body, *reply = NULL, *err = NULL;
	json_t *att = NULL;
	loomi_plugins reg;
	loomi_conf conf;
	loomi_doc doc;
	const void *o;
	void *ctx;
	loom_job job;
	const char *result;
	int rv;
	struct sigaction sa;

	memset(&w, 0, sizeof w);
	memset(&conf, 0, sizeof conf);
	memset(&doc, 0, sizeof doc);
	memset(&reg, 0, sizeof reg);
	w.job_id = job_id;
	w.attempt = attempt;
	w.metrics = json_object();
	w.report_pause_ns = REPORT_NEWS_NS;
	w.logs = json_array();
	w.points = json_array();
	{
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* loomi_mono_ns */
		pthread_cond_init(&w.cv, &ca);
		pthread_condattr_destroy(&ca);
		pthread_mutex_init(&w.mtx, NULL);
	}
	/* hundreds of workers starting at once can find loomd's listen backlog
	 * full (EAGAIN, ECONNREFUSED): keep trying for 30 s */
	for (int tries = 0; (rv = loomi_bus_client_open(addr, NULL, 0, &w.bus, &err)) != 0 &&
	                    tries < 60;
	     tries++) {
		free(err);
		err = NULL;
		usleep(500000);
	}
	if (rv != 0) {
		fprintf(stderr, "loom-worker: cannot connect to %s: %s\n", addr, err ? err : "?");
		free(err);
		return EXIT_FAILED;
	}
	body = loomi_strfmt("{\"job\":%lld,\"attempt\":%d}", (long long)job_id, attempt);
	rv = loomi_bus_client_request(w.bus, "job.attach", "worker", body, 30000, &reply);
	free(body);
	if (rv != 0 || (att = json_loads(reply ? reply : "", 0, NULL)) == NULL ||
	    !json_is_string(json_object_get(att, "spec")) ||
	    !json_is_string(json_object_get(att, "out_dir"))) {
		fprintf(stderr, "loom-worker: loomd at %s did not hand over task-%lld: %s\n", addr,
		        (long long)job_id, reply ? reply : loom_strerror(rv ? rv : LOOM_EPROTO));
		free(reply);
		json_decref(att);
		loomi_bus_client_close(w.bus);
		return EXIT_FAILED;
	}
	free(reply);
	reply = NULL;

	rv = worker_load_plugins(&reg, conf_path, &conf, &doc);
	if (rv == 0) {
		loom_instance *any = reg.n_instances ? reg.instances[0] : NULL;
		const char *compute = json_string_value(json_object_get(att, "compute"));
		if (any == NULL || loomi_host_services()->instance_ops(any, compute ? compute
		                                                                    : "transformer",
		                                                        LOOM_KIND_COMPUTE, &o,
		                                                        &ctx) != 0) {
			w.last_error = loomi_strfmt("no compute plugin instance \"%s\" in %s",
			                            compute ? compute : "transformer",
			                            conf_path ? conf_path : "the built-in plugins");
			rv = LOOM_ENOENT;
		}
	} else {
		w.last_error = loomi_strdup("the worker could not load its plugins; see worker.log");
		rv = LOOM_ECONFIG;
	}

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	if (rv == 0) {
		memset(&job, 0, sizeof job);
		job.size = sizeof job;
		job.flags = json_is_true(json_object_get(att, "resume")) ? LOOM_JOB_RESUME : 0;
		job.id = job_id;
		job.spec_json = json_string_value(json_object_get(att, "spec"));
		job.out_dir = json_string_value(json_object_get(att, "out_dir"));
		job.threads = (uint32_t)(threads ? threads
		                                 : json_integer_value(json_object_get(att, "threads")));
		if (job.threads < 1)
			job.threads = 1;
		{
			const json_t *al = json_object_get(att, "alloc");
			job.alloc.cpu_millis = (uint32_t)json_integer_value(json_object_get(al, "cpu_millis"));
			job.alloc.memory = (uint64_t)json_integer_value(json_object_get(al, "memory"));
			job.alloc.gpu = (uint32_t)json_integer_value(json_object_get(al, "gpu"));
			job.alloc.gpu_mask = (uint64_t)json_integer_value(json_object_get(al, "gpu_mask"));
		}
		job.arg = &w;
		job.progress = bus_progress;
		job.metric = bus_metric;
		job.log = bus_log;
		job.control = bus_control;
		LOG_INFO("task-%lld attempt %d: %s in %s on %u thread(s)", (long long)job_id, attempt,
		         job.flags & LOOM_JOB_RESUME ? "resuming" : "starting", job.out_dir,
		         job.threads);
		w.last_report_ns = loomi_mono_ns(); /* attached just now */
		w.reporter_up = pthread_create(&w.reporter, NULL, reporter_main, &w) == 0;
		if (!w.reporter_up)
			LOG_WARN("cannot start the reporter thread; loomd hears only how the run ends");
		rv = ((const loom_compute_ops *)o)->run(ctx, &job);
		if (w.reporter_up) {
			pthread_mutex_lock(&w.mtx);
			w.reporter_stop = true;
			pthread_cond_signal(&w.cv);
			pthread_mutex_unlock(&w.mtx);
			pthread_join(w.reporter, NULL);
		}
	}
	result = rv == 0                ? "completed"
	         : rv == LOOM_EPAUSED   ? "paused"
	         : rv == LOOM_ECANCELED ? "cancelled"
	                                : "failed";
	report(&w); /* the last progress, metrics and log lines */
	{
		json_t *fin = json_pack("{s:I, s:i, s:s}", "job", (json_int_t)job_id, "attempt", attempt,
		                        "result", result);
		if (rv != 0 && rv != LOOM_EPAUSED && rv != LOOM_ECANCELED)
			json_object_set_new(fin, "error",
			                    json_string(w.last_error ? w.last_error : loom_strerror(rv)));
		/* out of memory under --memory-limit: beyond its request */
		if (rv == LOOM_ENOMEM && memory_limit)
			json_object_set_new(fin, "memory_exceeded", json_true());
		json_object_set_new(fin, "max_rss", json_integer((json_int_t)peak_rss()));
		if (rv == 0) {
			char *path = loomi_strfmt("%s/metrics.json", job.out_dir), *text = NULL;
			json_t *m;
			if (loomi_read_file(path, &text, NULL) == 0 &&
			    (m = json_loads(text, 0, NULL)) != NULL) {
				json_t *flat = json_object();
				const char *k;
				json_t *v;
				json_object_foreach(json_object_get(m, "test"), k, v)
				{
					char *name = loomi_strfmt("test_%s", k);
					if (json_is_number(v))
						json_object_set(flat, name, v);
					free(name);
				}
				json_object_set_new(fin, "metrics", flat);
				json_decref(m);
			}
			free(text);
			free(path);
		}
		body = json_dumps(fin, JSON_COMPACT);
		json_decref(fin);
		for (int tries = 0; tries < 20; tries++) {
			free(reply);
			reply = NULL;
			int frv = loomi_bus_client_request(w.bus, "job.finish", "worker", body, 5000, &reply);
			if (frv == 0 || frv == LOOM_ESTATE || frv == LOOM_EINVAL)
				break;
			sleep(1);
		}
		free(reply);
		free(body);
	}
	LOG_INFO("task-%lld attempt %d: %s", (long long)job_id, attempt, result);
	loomi_plugins_fini(&reg);
	if (conf_path)
		loomi_conf_free(&conf);
	else
		loomi_doc_free(&doc);
	loomi_bus_client_close(w.bus);
	json_decref(att);
	json_decref(w.progress);
	json_decref(w.metrics);
	json_decref(w.logs);
	json_decref(w.points);
	free(w.last_error);
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mtx);
	return strcmp(result, "failed") == 0 ? EXIT_FAILED : 0;
}

/* ------------------------------------------------------------------ --predict */

/* Numbers of a nested JSON array into v[at…]; the shape it must have is
 * dims[depth…].  Returns false naming the first mismatch in why. */
static bool
flatten(const json_t *a, const int64_t *dims, int ndim, int depth, float *v, size_t *at,
        char *why, size_t why_len)
{
	if (depth == ndim) {
		if (!json_is_number(a)) {
			snprintf(why, why_len, "element %zu is not a number", *at);
			return false;
		}
		v[(*at)++] = (float)json_number_value(a);
		return true;
	}
	if (!json_is_array(a) || (dims[depth] >= 0 && (int64_t)json_array_size(a) != dims[depth])) {
		snprintf(why, why_len, "dimension %d must have %lld entries", depth,
		         (long long)dims[depth]);
		return false;
	}
	for (size_t i = 0; i < json_array_size(a); i++)
		if (!flatten(json_array_get(a, i), dims, ndim, depth + 1, v, at, why, why_len))
			return false;
	return true;
}

static json_t *
nest(const float *v, const int64_t *dims, int ndim, size_t *at)
{
	json_t *a = json_array();
	if (ndim == 0)
		return json_real(v[(*at)++]);
	for (int64_t i = 0; i < dims[0]; i++)
		json_array_append_new(a, ndim == 1 ? json_real(v[(*at)++])
		                                   : nest(v, dims + 1, ndim - 1, at));
	return a;
}

/* The input file: {"input": [[[…]]]} or the bare [batch][context][channels]
 * array, checked against the model's info. */
static int
read_windows(const char *path, const json_t *info, loom_tensor *in)
{
	const json_t *shape = json_object_get(json_object_get(info, "input"), "shape");
	json_error_t jerr;
	json_t *doc = json_load_file(path, 0, &jerr), *arr;
	char why[160];
	size_t at = 0;

	if (doc == NULL) {
		fprintf(stderr, "loom-worker: --input %s: %s (line %d)\n", path, jerr.text, jerr.line);
		return EXIT_FAILED;
	}
	arr = json_is_object(doc) ? json_object_get(doc, "input") : doc;
	memset(in, 0, sizeof *in);
	in->dtype = LOOM_DTYPE_F32;
	in->ndim = 3;
	in->dims[0] = (int64_t)json_array_size(arr);
	in->dims[1] = (int64_t)json_integer_value(json_array_get(shape, 1));
	in->dims[2] = (int64_t)json_integer_value(json_array_get(shape, 2));
	in->nbytes = (size_t)(in->dims[0] * in->dims[1] * in->dims[2]) * sizeof(float);
	if (in->dims[0] < 1 || (in->data = malloc(in->nbytes)) == NULL ||
	    !flatten(arr, in->dims, 3, 0, in->data, &at, why, sizeof why)) {
		if (in->dims[0] < 1)
			snprintf(why, sizeof why, "no windows");
		fprintf(stderr, "loom-worker: --input %s: %s; give {\"input\": [...]} with windows "
		                "of [%lld steps][%lld channels] of raw values (see the model's info)\n",
		        path, why, (long long)in->dims[1], (long long)in->dims[2]);
		free(in->data);
		in->data = NULL;
		json_decref(doc);
		return EXIT_FAILED;
	}
	json_decref(doc);
	return 0;
}

/* loom-worker --predict DIR --input FILE [--output FILE] [--uncertainty]:
 * batch inference with the compute plugin that trained DIR (its job.json's
 * "compute"); --uncertainty adds "uncertainty" (predict_spread). */
static int
run_predict(const char *dir, const char *in_path, const char *out_path, const char *conf_path,
            bool uncertainty)
{
	worker_model wm;
	json_t *result = NULL;
	loom_tensor in = {0}, out = {0}, spread = {0};
	int rv = EXIT_FAILED;
	size_t at = 0;

	if (worker_model_open(&wm, dir, conf_path) != 0)
		goto out;
	if (in_path == NULL) {
		printf("%s\n", wm.info_text);
		rv = 0;
		goto out;
	}
	if (read_windows(in_path, wm.info, &in) != 0)
		goto out;
	if (uncertainty && !LOOM_OPS_HAS(wm.ops, predict_spread)) {
		fprintf(stderr, "loom-worker: --uncertainty: this model's compute plugin tells no "
		                "uncertainty; predict without it\n");
		goto out;
	}
	if ((uncertainty ? wm.ops->predict_spread(wm.ctx, wm.model, &in, &out, &spread, NULL)
	                 : wm.ops->predict(wm.ctx, wm.model, &in, &out)) != 0) {
		fprintf(stderr, "loom-worker: prediction failed (see above)\n");
		goto out;
	}
	{
		json_t *shape = json_array();
		for (uint32_t i = 0; i < out.ndim; i++)
			json_array_append_new(shape, json_integer(out.dims[i]));
		result = json_pack("{s:o, s:o, s:O}", "shape", shape, "output",
		                   nest(out.data, out.dims, (int)out.ndim, &at), "info",
		                   json_object_get(wm.info, "output"));
		if (uncertainty) {
			at = 0;
			json_object_set_new(result, "uncertainty",
			                    spread.data ? nest(spread.data, spread.dims, (int)spread.ndim,
			                                       &at)
			                                : json_null());
			json_object_set(result, "uncertainty_method",
			                json_object_get(wm.info, "uncertainty"));
		}
	}
	if (json_dump_file(result, out_path ? out_path : "/dev/stdout", JSON_COMPACT) != 0) {
		fprintf(stderr, "loom-worker: cannot write %s\n", out_path ? out_path : "stdout");
		goto out;
	}
	rv = 0;
out:
	if (out.data)
		wm.host->tensor_free(out.data);
	if (spread.data)
		wm.host->tensor_free(spread.data);
	free(in.data);
	json_decref(result);
	worker_model_close(&wm);
	return rv;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"run", required_argument, NULL, 'r'},
		{"out", required_argument, NULL, 'o'},
		{"resume", required_argument, NULL, 'R'},
		{"max-steps", required_argument, NULL, 'm'},
		{"threads", required_argument, NULL, 't'},
		{"config", required_argument, NULL, 'c'},
		{"log-level", required_argument, NULL, 'L'},
		{"connect", required_argument, NULL, 'C'},
		{"job", required_argument, NULL, 'j'},
		{"attempt", required_argument, NULL, 'a'},
		{"predict", required_argument, NULL, 'P'},
		{"input", required_argument, NULL, 'i'},
		{"output", required_argument, NULL, 'O'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{"state-dir", required_argument, NULL, 's'},
		{"memory-limit", required_argument, NULL, 'M'},
		{"uncertainty", no_argument, NULL, 'U'},
		{"serve", required_argument, NULL, 'S'},
		{"listen", required_argument, NULL, 'l'},
		{"passes", required_argument, NULL, 'K'},
		{NULL, 0, NULL, 0},
	};
	const char *run_spec = NULL, *out = NULL, *resume = NULL, *conf_path = NULL;
	const char *connect = NULL, *predict = NULL, *input = NULL, *output = NULL;
	const char *serve = NULL, *listen_url = NULL;
	bool uncertainty = false;
	long long passes = 16;
	long long max_steps = 0, threads = 0, job_id = 0, attempt = 1;
	int level = LOOM_LOG_INFO, c, rv;
	loomi_plugins reg;
	loomi_conf conf;
	loomi_doc doc;
	const loom_compute_ops *ops = NULL;
	void *ctx = NULL;
	char *spec = NULL, *err = NULL, *spec_path = NULL;
	worker w = {0};
	loom_job job;
	struct sigaction sa;

	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		char *end;
		switch (c) {
		case 'r': run_spec = optarg; break;
		case 'o': out = optarg; break;
		case 'R': resume = optarg; break;
		case 'c': conf_path = optarg; break;
		case 'C': connect = optarg; break;
		case 'P': predict = optarg; break;
		case 'i': input = optarg; break;
		case 'O': output = optarg; break;
		case 'U': uncertainty = true; break;
		case 'S': serve = optarg; break;
		case 'l': listen_url = optarg; break;
		case 'K':
			passes = strtoll(optarg, &end, 10);
			if (*end || passes < 2 || passes > 1024) {
				fprintf(stderr, "loom-worker: --passes: \"%s\" is not a number from 2 to "
				                "1024\n",
				        optarg);
				return EXIT_USAGE;
			}
			break;
		case 's':
			if (optarg[0] == '\0') {
				fprintf(stderr, "loom-worker: --state-dir: give a directory\n");
				return EXIT_USAGE;
			}
			state_dir = optarg;
			break;
		case 'j':
		case 'a': {
			long long v = strtoll(optarg, &end, 10);
			if (*end || v < 1) {
				fprintf(stderr, "loom-worker: --%s: \"%s\" is not a positive number\n",
				        c == 'j' ? "job" : "attempt", optarg);
				return EXIT_USAGE;
			}
			*(c == 'j' ? &job_id : &attempt) = v;
			break;
		}
		case 'M': {
			/* before anything is loaded: the whole run stays under it */
			struct rlimit rl;
			if (loom_parse_size(optarg, &memory_limit) != 0 || memory_limit < (1u << 20)) {
				fprintf(stderr, "loom-worker: --memory-limit: \"%s\" is not a size of 1M "
				                "or more\n",
				        optarg);
				return EXIT_USAGE;
			}
			rl.rlim_cur = rl.rlim_max = (rlim_t)memory_limit;
			if (setrlimit(RLIMIT_AS, &rl) != 0) {
				fprintf(stderr, "loom-worker: --memory-limit %s: setrlimit: %s\n", optarg,
				        strerror(errno));
				return EXIT_FAILED;
			}
			break;
		}
		case 'm':
			max_steps = strtoll(optarg, &end, 10);
			if (*end || max_steps < 1) {
				fprintf(stderr, "loom-worker: --max-steps: \"%s\" is not a positive "
				                "number\n",
				        optarg);
				return EXIT_USAGE;
			}
			break;
		case 't':
			threads = strtoll(optarg, &end, 10);
			if (*end || threads < 1 || threads > 1024) {
				fprintf(stderr, "loom-worker: --threads: \"%s\" is not a number from 1 to "
				                "1024\n",
				        optarg);
				return EXIT_USAGE;
			}
			break;
		case 'L':
			if ((level = loomi_log_level_parse(optarg)) < 0) {
				fprintf(stderr, "loom-worker: --log-level: \"%s\" is not one of error, "
				                "warn, info, debug, trace\n",
				        optarg);
				return EXIT_USAGE;
			}
			break;
		case 'V': printf("loom-worker %s\n", LOOM_VERSION_STRING); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (serve) {
		if (optind < argc || run_spec || resume || out || connect || max_steps || predict ||
		    input || output || uncertainty || listen_url == NULL) {
			fprintf(stderr, "loom-worker: --serve DIR takes --listen URL [--passes K] "
			                "[-c FILE] only\n");
			return EXIT_USAGE;
		}
		loomi_log_setup(level, LOOMI_LOG_TEXT, NULL, NULL);
		return worker_serve(serve, listen_url, conf_path, (unsigned)passes);
	}
	if (predict) {
		if (optind < argc || run_spec || resume || out || connect || max_steps || listen_url) {
			fprintf(stderr, "loom-worker: --predict takes [--input FILE] [--output FILE] "
			                "[--uncertainty] [-c FILE] only\n");
			return EXIT_USAGE;
		}
		loomi_log_setup(level, LOOMI_LOG_TEXT, NULL, NULL);
		return run_predict(predict, input, output, conf_path, uncertainty);
	}
	if (connect) {
		if (optind < argc || run_spec || resume || out || max_steps || job_id == 0) {
			fprintf(stderr, "loom-worker: --connect takes --job ID [--attempt N] [--threads N] "
			                "[-c FILE] [--state-dir DIR], not --run, --resume, --out or "
			                "--max-steps\n");
			return EXIT_USAGE;
		}
		loomi_log_setup(level, LOOMI_LOG_TEXT, NULL, NULL);
		return run_connected(connect, job_id, (int)attempt, threads, conf_path);
	}
	if (optind < argc || (!run_spec == !resume) || (run_spec && !out) || (resume && out)) {
		if (optind < argc)
			fprintf(stderr, "loom-worker: unexpected argument \"%s\"\n", argv[optind]);
		else
			fprintf(stderr, "loom-worker: give either --run SPEC --out DIR, or --resume "
			                "DIR\n");
		usage(stderr);
		return EXIT_USAGE;
	}
	loomi_log_setup(level, LOOMI_LOG_TEXT, NULL, NULL);

	spec_path = run_spec ? loomi_strdup(run_spec) : loomi_path_join(resume, "job.json");
	if ((rv = loomi_read_file(spec_path, &spec, NULL)) != 0) {
		fprintf(stderr, "loom-worker: cannot read %s: %s%s\n", spec_path, strerror(rv),
		        resume ? "; is it the output directory of a loom-worker --run?" : "");
		free(spec_path);
		return resume ? EXIT_FAILED : EXIT_USAGE;
	}

	memset(&conf, 0, sizeof conf);
	memset(&doc, 0, sizeof doc);
	if (worker_load_plugins(&reg, conf_path, &conf, &doc) != 0) {
		rv = EXIT_FAILED;
		goto out;
	}
	{
		const void *o;
		loom_instance *any = reg.n_instances ? reg.instances[0] : NULL;
		json_t *sj = NULL;
		const char *compute = "transformer";
		/* the compute instance the spec names */
		if (spec[strspn(spec, " \t\r\n")] == '{' && (sj = json_loads(spec, 0, NULL)) &&
		    json_is_string(json_object_get(sj, "compute")))
			compute = json_string_value(json_object_get(sj, "compute"));
		if (any == NULL || loomi_host_services()->instance_ops(any, compute, LOOM_KIND_COMPUTE,
		                                                        &o, &ctx) != 0) {
			fprintf(stderr, "loom-worker: no compute plugin instance \"%s\"; check -c FILE "
			                "or the spec's compute setting\n",
			        compute);
			json_decref(sj);
			rv = EXIT_FAILED;
			goto out;
		}
		json_decref(sj);
		ops = o;
	}
	if ((rv = ops->validate(ctx, spec, &err)) != 0) {
		fprintf(stderr, "%s: the job spec is invalid:\n%s\n", spec_path,
		        err ? err : loom_strerror(rv));
		free(err);
		rv = EXIT_FAILED;
		goto out;
	}

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	w.tty = isatty(STDERR_FILENO);
	w.first_step = -1;
	memset(&job, 0, sizeof job);
	job.size = sizeof job;
	job.flags = resume ? LOOM_JOB_RESUME : 0;
	job.spec_json = spec;
	job.out_dir = resume ? resume : out;
	job.threads = (uint32_t)(threads ? threads : sysconf(_SC_NPROCESSORS_ONLN));
	job.max_steps = max_steps;
	job.arg = &w;
	job.progress = on_progress;
	job.metric = on_metric;
	job.log = on_log;
	job.control = on_control;

	rv = ops->run(ctx, &job);
	if (w.tty)
		fputs("\r\033[K", stderr);
	switch (rv) {
	case 0:
		print_summary(job.out_dir);
		rv = 0;
		break;
	case LOOM_EPAUSED:
		fprintf(stderr, "paused; continue with: loom-worker --resume %s\n", job.out_dir);
		rv = 0;
		break;
	default:
		fprintf(stderr, "loom-worker: the job %s (%s)\n",
		        rv == LOOM_ECANCELED ? "was cancelled" : "failed", loom_errname(rv));
		rv = EXIT_FAILED;
	}
out:
	loomi_plugins_fini(&reg);
	if (conf_path)
		loomi_conf_free(&conf);
	else
		loomi_doc_free(&doc);
	free(spec);
	free(spec_path);
	return rv;
}

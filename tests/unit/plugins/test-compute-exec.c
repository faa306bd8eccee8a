/* compute-exec, loaded as a real module through the host loader and run on
 * real commands (/bin/sh scripts) with a fake job whose callbacks record
 * what the plugin reports:
 *
 * - validate: a full spec passes; each refusal names its key;
 * - run: JSON lines become progress and metrics (with their scopes), other
 *   lines logs; partial lines, '\r', a last line without '\n'; exit status,
 *   signals, programs that cannot start; workdir, env and params; long
 *   lines cut; processes left behind stopped; exec.json;
 * - stop: cancel (SIGTERM, then SIGKILL when ignored; the process group is
 *   gone afterwards), pause (refused: stops), timeout;
 * - config: max_line and default_stop_grace take effect. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <loom/loom.h>

#include "host/core/conf.h"
#include "host/core/plugins.h"
#include "host/core/util.h"
#include "testutil.h"

/* ------------------------------------------------------------------ the plugin */

static struct {
	tu_plugin p;
	const loom_compute_ops *ops;
	void *ctx;
} H;

/* Load compute-exec as instance "exec" with the settings in conf (the
 * inside of a libconfig group). */
static void
exec_open(const char *conf)
{
	const void *ops = NULL;
	char *err = NULL;
	int rv;

	memset(&H, 0, sizeof H);
	rv = tu_plugin_open(&H.p, "compute-exec", "exec", conf, "exec.conf", &err);
	ck_assert_msg(rv == 0, "cannot start compute-exec: %s", err ? err : "?");
	rv = loomi_host_services()->instance_ops(H.p.ins, "exec", LOOM_KIND_COMPUTE, &ops, &H.ctx);
	ck_assert_int_eq(rv, 0);
	H.ops = ops;
	ck_assert_ptr_nonnull(H.ops);
}

static void
exec_close(void)
{
	tu_plugin_close(&H.p);
	memset(&H, 0, sizeof H);
}

static void setup_default(void) { exec_open(""); }
static void setup_config(void) { exec_open("max_line = \"1K\"; default_stop_grace = \"300ms\";"); }

/* ------------------------------------------------------------------ a fake job */

typedef struct rlog {
	int level;
	char *msg;
} rlog;

typedef struct rmetric {
	char *name;
	int64_t step;
	int32_t epoch;
	uint32_t scope;
	int64_t wall_ms;
	double value;
} rmetric;

typedef struct rprogress {
	int64_t step, total;
	int32_t epoch, epochs;
} rprogress;

static struct {
	loom_job job;
	char *out_dir;
	rlog *logs;
	size_t n_logs;
	rmetric *metrics;
	size_t n_metrics;
	rprogress *progress;
	size_t n_progress;
	int polls;
	int stop_after;   /* answer stop_with from this poll on; 0: never */
	int stop_with;
	const char *stop_once; /* … and once an info line holds this, if set */
	int stopped_at;   /* the poll that first answered stop_with; 0: none */
	char *artifact;
	double elapsed;   /* seconds the last run took */
} J;

#define GROW(arr, n) ((arr) = realloc((arr), ((n) + 1) * sizeof *(arr)), &(arr)[(n)++])

static void
on_progress(const loom_job *job, int64_t step, int64_t total, int32_t epoch, int32_t epochs)
{
	rprogress *p = GROW(J.progress, J.n_progress);
	ck_assert_ptr_eq(job, &J.job);
	p->step = step;
	p->total = total;
	p->epoch = epoch;
	p->epochs = epochs;
}

static void
on_metric(const loom_job *job, const loom_metric_point *pt)
{
	rmetric *m = GROW(J.metrics, J.n_metrics);
	(void)job;
	m->name = loomi_strdup(pt->name);
	m->step = pt->step;
	m->epoch = pt->epoch;
	m->scope = pt->scope;
	m->wall_ms = pt->wall_ms;
	m->value = pt->value;
}

static void
on_log(const loom_job *job, int level, const char *message)
{
	rlog *l = GROW(J.logs, J.n_logs);
	(void)job;
	l->level = level;
	l->msg = loomi_strdup(message);
}

static void
on_artifact(const loom_job *job, const char *name, const char *path)
{
	(void)job;
	(void)path;
	free(J.artifact);
	J.artifact = loomi_strdup(name);
}

static const char *log_find(int level, const char *needle);

static int
on_control(const loom_job *job)
{
	(void)job;
	J.polls++;
	if (!J.stop_after || J.polls < J.stop_after)
		return LOOM_CONTROL_RUN;
	/* the plugin calls log and control on this one thread */
	if (J.stop_once && log_find(LOOM_LOG_INFO, J.stop_once) == NULL)
		return LOOM_CONTROL_RUN;
	if (J.stopped_at == 0)
		J.stopped_at = J.polls;
	return J.stop_with;
}

static void
job_reset(void)
{
	for (size_t i = 0; i < J.n_logs; i++)
		free(J.logs[i].msg);
	for (size_t i = 0; i < J.n_metrics; i++)
		free(J.metrics[i].name);
	free(J.logs);
	free(J.metrics);
	free(J.progress);
	free(J.artifact);
	free(J.out_dir);
	memset(&J, 0, sizeof J);
}

static double
mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run spec (a JSON object as text) as job 42 on 2 threads in a fresh
 * output directory; control answers stop from its nth poll on (nth 0:
 * never), and only once an info line holding once was logged (once NULL:
 * at once). */
static int
run_job(const char *spec, int stop, int nth, const char *once)
{
	static int n;
	double t0;
	int rv;

	job_reset();
	J.out_dir = loomi_strfmt("%s/out-%d", H.p.tmp, ++n);
	ck_assert_int_eq(mkdir(J.out_dir, 0777), 0);
	J.job.size = sizeof J.job;
	J.job.id = 42;
	J.job.spec_json = spec;
	J.job.out_dir = J.out_dir;
	J.job.threads = 2;
	J.job.arg = &J;
	J.job.progress = on_progress;
	J.job.metric = on_metric;
	J.job.log = on_log;
	J.job.artifact = on_artifact;
	J.job.control = on_control;
	J.stop_after = nth;
	J.stop_with = stop;
	J.stop_once = once;
	t0 = mono_s();
	rv = H.ops->run(H.ctx, &J.job);
	J.elapsed = mono_s() - t0;
	J.job.spec_json = NULL; /* the plugin reads it only during run */
	return rv;
}

static int
run_json(const char *spec)
{
	return run_job(spec, 0, 0, NULL);
}

/* The spec of `/bin/sh -c script` with the keys of extra (a JSON object, or
 * NULL) added. */
static char *
spec_sh(const char *script, const char *extra)
{
	json_t *spec = json_pack("{s:s, s:[s, s, s]}", "compute", "exec", "command", "/bin/sh", "-c",
	                         script);
	char *text;

	if (extra) {
		json_t *x = json_loads(extra, 0, NULL);
		ck_assert_msg(json_is_object(x), "bad extra %s", extra);
		json_object_update(spec, x);
		json_decref(x);
	}
	text = json_dumps(spec, JSON_COMPACT);
	json_decref(spec);
	return text;
}

static int
run_sh(const char *script, const char *extra)
{
	char *text = spec_sh(script, extra);
	int rv = run_job(text, 0, 0, NULL);
	free(text);
	return rv;
}

static const char *
logs_text(void)
{
	static char buf[16384];
	size_t len = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < J.n_logs && len < sizeof buf - 200; i++)
		len += (size_t)snprintf(buf + len, sizeof buf - len, "%d %.150s\n", J.logs[i].level,
		                        J.logs[i].msg);
	return buf;
}

/* The first log line at level containing needle, or NULL. */
static const char *
log_find(int level, const char *needle)
{
	for (size_t i = 0; i < J.n_logs; i++)
		if (J.logs[i].level == level && strstr(J.logs[i].msg, needle))
			return J.logs[i].msg;
	return NULL;
}

/* Lines logged at level exactly equal to text. */
static size_t
log_count(int level, const char *text)
{
	size_t n = 0;
	for (size_t i = 0; i < J.n_logs; i++)
		n += J.logs[i].level == level && strcmp(J.logs[i].msg, text) == 0;
	return n;
}

#define ASSERT_LOG(level, needle)                                                          \
	ck_assert_msg(log_find((level), (needle)) != NULL,                                     \
	              "expected \"%s\" at level %d in the job's log:\n%s", (needle), (level),   \
	              logs_text())

static const rmetric *
metric_at(size_t i)
{
	ck_assert_msg(i < J.n_metrics, "only %zu metrics", J.n_metrics);
	return &J.metrics[i];
}

static json_t *
exec_json(void)
{
	char *path = loomi_strfmt("%s/exec.json", J.out_dir);
	json_t *rec = json_load_file(path, 0, NULL);
	ck_assert_msg(json_is_object(rec), "no exec.json in %s", J.out_dir);
	free(path);
	return rec;
}

/* Does any process of group pgid still run (zombies aside: this container's
 * init may never reap them)? */
static bool
group_running(pid_t pgid)
{
	struct dirent *e;
	bool found = false;
	DIR *d = opendir("/proc");

	ck_assert_ptr_nonnull(d);
	while (!found && (e = readdir(d)) != NULL) {
		char path[300], buf[512] = "", state;
		long ppid, pgrp;
		FILE *fp;
		char *p;

		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
		if ((fp = fopen(path, "r")) == NULL)
			continue;
		if (fgets(buf, sizeof buf, fp) && (p = strrchr(buf, ')')) != NULL &&
		    sscanf(p + 1, " %c %ld %ld", &state, &ppid, &pgrp) == 3 && pgrp == pgid &&
		    state != 'Z' && state != 'X')
			found = true;
		fclose(fp);
	}
	closedir(d);
	return found;
}

/* The number a script printed as "<prefix><number>". */
static long
logged_number(const char *prefix)
{
	const char *m = log_find(LOOM_LOG_INFO, prefix);
	ck_assert_msg(m != NULL, "no \"%s\" line:\n%s", prefix, logs_text());
	return strtol(m + strlen(prefix), NULL, 10);
}

/* ------------------------------------------------------------------ validate */

static int
validate(const char *spec, char **error)
{
	*error = NULL;
	return H.ops->validate(H.ctx, spec, error);
}

START_TEST(validate_accepts)
{
	static const char *const ok[] = {
		"{\"compute\": \"exec\", \"name\": \"mnist\", "
		"\"command\": [\"/usr/bin/python3\", \"train.py\", \"--lr\", \"0.1\"], "
		"\"workdir\": \"/tmp\", \"env\": {\"KEY\": \"value\"}, "
		"\"params\": {\"lr\": 0.1, \"epochs\": 3, \"arch\": \"mlp\", \"amp\": false}, "
		"\"timeout\": 600, \"stop_grace\": 10}",
		"{\"command\": [\"python3\"]}",
		"{\"command\": [\"sh\"], \"timeout\": \"2h\", \"stop_grace\": \"500ms\"}",
		"{\"command\": [\"sh\"], \"timeout\": 0, \"params\": {}, \"env\": {}}",
	};
	char *error;

	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		int rv = validate(ok[i], &error);
		ck_assert_msg(rv == 0, "refused %s: %s", ok[i], error ? error : "?");
		ck_assert_ptr_null(error);
	}
	/* not resumable: the host refuses pause */
	ck_assert_uint_eq(H.ops->caps & LOOM_COMPUTE_RESUMABLE, 0);
	ck_assert_ptr_null(H.ops->model_open);
}
END_TEST

START_TEST(validate_refuses)
{
	static const struct {
		const char *spec, *message;
	} bad[] = {
		{"{}", "command: expected a non-empty list of strings"},
		{"{\"name\": \"x\"}", "command: expected a non-empty list of strings"},
		{"{\"command\": \"python3 train.py\"}",
		 "command: expected a non-empty list of strings"},
		{"{\"command\": []}", "command: expected a non-empty list of strings"},
		{"{\"command\": [\"python3\", 3]}", "command[1]: expected a string"},
		{"{\"command\": [\"\"]}", "command[0]: the program is empty"},
		{"{\"comand\": [\"sh\"]}", "comand: unknown key (did you mean command?)"},
		{"{\"command\": [\"sh\"], \"timeuot\": 3}",
		 "timeuot: unknown key (did you mean timeout?)"},
		{"{\"command\": [\"sh\"], \"resources\": {}}", "resources: unknown key;"},
		{"{\"command\": [\"sh\"], \"params\": {\"lr\": {\"a\": 1}}}",
		 "params.lr: expected a number, string or boolean"},
		{"{\"command\": [\"sh\"], \"params\": {\"x\": null}}",
		 "params.x: expected a number, string or boolean"},
		{"{\"command\": [\"sh\"], \"params\": [1]}", "params: expected an object"},
		{"{\"command\": [\"sh\"], \"params\": {\"a-b\": 1, \"a_b\": 2}}",
		 "params: \"a-b\" and \"a_b\" would both be LOOM_PARAM_A_B"},
		{"{\"command\": [\"sh\"], \"env\": {\"A\": 1}}", "env.A: expected a string"},
		{"{\"command\": [\"sh\"], \"env\": {\"A=B\": \"1\"}}",
		 "env: \"A=B\" is not a variable"},
		{"{\"command\": [\"sh\"], \"env\": \"A=1\"}", "env: expected an object"},
		{"{\"command\": [\"sh\"], \"workdir\": \"\"}", "workdir: expected a directory path"},
		{"{\"command\": [\"sh\"], \"timeout\": -1}", "timeout: expected seconds"},
		{"{\"command\": [\"sh\"], \"timeout\": \"soon\"}", "timeout: expected seconds"},
		{"{\"command\": [\"sh\"], \"stop_grace\": true}", "stop_grace: expected seconds"},
		{"[\"sh\"]", "expected a JSON object"},
		{"{\"command\": ", "not valid JSON"},
	};
	char *error;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int rv = validate(bad[i].spec, &error);
		ck_assert_msg(rv == LOOM_EINVAL, "accepted %s", bad[i].spec);
		ck_assert_msg(error && strstr(error, bad[i].message), "%s: got \"%s\", want \"%s\"",
		              bad[i].spec, error ? error : "(null)", bad[i].message);
		loomi_host_services()->free(error);
	}
	/* run() checks the spec too */
	ck_assert_int_eq(run_json("{\"command\": 7}"), LOOM_EINVAL);
	ASSERT_LOG(LOOM_LOG_ERROR, "spec: command: expected a non-empty list of strings");
}
END_TEST

/* ------------------------------------------------------------------ run */

START_TEST(run_metrics_and_logs)
{
	static const char script[] =
		"echo '{\"step\": 1, \"total_steps\": 4, \"epoch\": 0, \"epochs\": 2, \"loss\": 1.5, "
		"\"lr\": 0.1}'\n"
		"echo 'plain line'\n"
		"echo 'warning here' >&2\n"
		"echo '{\"step\": 2, \"loss\": 1.25, \"note\": \"text\", \"ok\": true}'\n"
		"echo '{\"epoch\": 1, \"val_loss\": 0.9, \"val_acc\": 0.5}'\n"
		"echo '{\"test_acc\": 0.75}'\n"
		"echo '{\"event\": \"saved\"}'\n"
		"echo '{not json'\n"
		"echo '  {\"step\": 3.0}'\n";
	static const rprogress want_p[] = {{1, 4, 0, 2}, {2, 4, 0, 2}, {2, 4, 1, 2}, {3, 4, 1, 2}};
	static const struct {
		const char *name;
		int64_t step;
		int32_t epoch;
		uint32_t scope;
		double value;
	} want_m[] = {
		{"loss", 1, 0, LOOM_METRIC_STEP, 1.5},
		{"lr", 1, 0, LOOM_METRIC_STEP, 0.1},
		{"loss", 2, 0, LOOM_METRIC_STEP, 1.25},
		{"val_loss", 2, 1, LOOM_METRIC_EPOCH, 0.9},
		{"val_acc", 2, 1, LOOM_METRIC_EPOCH, 0.5},
		{"test_acc", 2, 1, LOOM_METRIC_FINAL, 0.75},
	};
	int64_t t0 = (int64_t)time(NULL) * 1000;
	json_t *rec;
	int rv;

	rv = run_sh(script, NULL);
	ck_assert_msg(rv == 0, "run: %s\n%s", loom_errname(rv), logs_text());

	ck_assert_uint_eq(J.n_progress, 4);
	for (size_t i = 0; i < 4; i++)
		ck_assert_msg(memcmp(&J.progress[i], &want_p[i], sizeof want_p[i]) == 0,
		              "progress %zu: %lld/%lld epoch %d/%d", i, (long long)J.progress[i].step,
		              (long long)J.progress[i].total, J.progress[i].epoch,
		              J.progress[i].epochs);
	ck_assert_uint_eq(J.n_metrics, 6);
	for (size_t i = 0; i < 6; i++) {
		const rmetric *m = metric_at(i);
		ck_assert_str_eq(m->name, want_m[i].name);
		ck_assert_int_eq(m->step, want_m[i].step);
		ck_assert_int_eq(m->epoch, want_m[i].epoch);
		ck_assert_uint_eq(m->scope, want_m[i].scope);
		ck_assert_double_eq(m->value, want_m[i].value);
		ck_assert_int_ge(m->wall_ms, t0 - 1000);
	}
	ck_assert_uint_eq(log_count(LOOM_LOG_INFO, "plain line"), 1);
	ck_assert_uint_eq(log_count(LOOM_LOG_WARN, "warning here"), 1);
	ck_assert_uint_eq(log_count(LOOM_LOG_INFO, "{\"event\": \"saved\"}"), 1);
	ck_assert_uint_eq(log_count(LOOM_LOG_INFO, "{not json"), 1);
	ck_assert_ptr_null(log_find(LOOM_LOG_INFO, "\"loss\""));
	ck_assert_ptr_null(log_find(LOOM_LOG_ERROR, ""));

	rec = exec_json();
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(rec, "command"), 0)),
	                 "/bin/sh");
	ck_assert_uint_eq(json_array_size(json_object_get(rec, "command")), 3);
	ck_assert_int_eq(json_integer_value(json_object_get(rec, "exit_status")), 0);
	ck_assert(json_is_integer(json_object_get(rec, "exit_status")));
	ck_assert(json_is_null(json_object_get(rec, "signal")));
	ck_assert(json_number_value(json_object_get(rec, "duration_s")) > 0);
	ck_assert(json_number_value(json_object_get(rec, "duration_s")) < 30);
	ck_assert_double_eq(json_number_value(json_object_get(json_object_get(rec, "last_metrics"),
	                                                      "loss")),
	                    1.25);
	ck_assert_double_eq(json_number_value(json_object_get(json_object_get(rec, "last_metrics"),
	                                                      "test_acc")),
	                    0.75);
	ck_assert_uint_eq(json_object_size(json_object_get(rec, "last_metrics")), 5);
	ck_assert_str_eq(json_string_value(json_object_get(rec, "result")), "completed");
	json_decref(rec);
	ck_assert_str_eq(J.artifact, "exec.json");
}
END_TEST

START_TEST(run_partial_lines)
{
	static const char script[] =
		"printf 'par'; sleep 0.3; printf 'tial\\n'\n"
		"printf 'crlf\\r\\n'\n"
		"printf '10%%\\r50%%\\r100%%\\n'\n"
		"printf 'cr twice\\r\\r\\n\\r\\n'\n"
		"printf 'bad \\377 byte\\n'\n"
		"printf '{\"step\": 5,'; sleep 0.2; printf ' \"loss\": 2}\\n'\n"
		"printf 'err tail' >&2\n"
		"printf 'no newline'\n";
	int rv = run_sh(script, NULL);

	ck_assert_msg(rv == 0, "run: %s\n%s", loom_errname(rv), logs_text());
	ck_assert_uint_eq(log_count(LOOM_LOG_INFO, "partial"), 1);
	ck_assert_uint_eq(log_count(LOOM_LOG_INFO, "crlf"), 1);
	ck_assert_uint_eq(log_count(LOOM_LOG_INFO, "cr twice"), 1);
	ck_assert_uint_eq(log_count(LOOM_LOG_INFO, ""), 1); /* the "\r\n" after it */
	ck_assert_uint_eq(log_count(LOOM_LOG_INFO, "100%"), 1);
	ck_assert_ptr_null(log_find(LOOM_LOG_INFO, "50%"));
	ck_assert_uint_eq(log_count(LOOM_LOG_INFO, "bad ? byte"), 1);
	ck_assert_uint_eq(log_count(LOOM_LOG_WARN, "err tail"), 1);
	ck_assert_uint_eq(log_count(LOOM_LOG_INFO, "no newline"), 1);
	ck_assert_uint_eq(J.n_metrics, 1);
	ck_assert_int_eq(metric_at(0)->step, 5);
	ck_assert_uint_eq(J.n_progress, 1);
}
END_TEST

START_TEST(run_exit_status)
{
	json_t *rec;
	int rv = run_sh("echo starting; echo 'first' >&2; echo 'boom: it broke' >&2; exit 3", NULL);

	ck_assert_int_eq(rv, LOOM_EIO);
	ASSERT_LOG(LOOM_LOG_ERROR, "/bin/sh exited with status 3");
	ASSERT_LOG(LOOM_LOG_ERROR, "boom: it broke");
	ck_assert_ptr_null(log_find(LOOM_LOG_ERROR, "first"));
	rec = exec_json();
	ck_assert_int_eq(json_integer_value(json_object_get(rec, "exit_status")), 3);
	ck_assert(json_is_null(json_object_get(rec, "signal")));
	ck_assert_str_eq(json_string_value(json_object_get(rec, "result")), "failed");
	json_decref(rec);
}
END_TEST

START_TEST(run_killed_by_signal)
{
	char want[64];
	json_t *rec;
	int rv = run_sh("echo 'about to die' >&2; kill -USR1 $$; sleep 5", NULL);

	ck_assert_int_eq(rv, LOOM_EIO);
	snprintf(want, sizeof want, "killed by signal %d (SIGUSR1)", SIGUSR1);
	ASSERT_LOG(LOOM_LOG_ERROR, want);
	ASSERT_LOG(LOOM_LOG_ERROR, "about to die");
	rec = exec_json();
	ck_assert(json_is_null(json_object_get(rec, "exit_status")));
	ck_assert_int_eq(json_integer_value(json_object_get(rec, "signal")), SIGUSR1);
	json_decref(rec);
}
END_TEST

START_TEST(run_cannot_start)
{
	char *script, *spec;
	json_t *rec;

	ck_assert_int_eq(run_json("{\"command\": [\"/nonexistent/prog\", \"x\"]}"), LOOM_ENOENT);
	ASSERT_LOG(LOOM_LOG_ERROR, "cannot start /nonexistent/prog");
	rec = exec_json();
	ck_assert(json_is_null(json_object_get(rec, "exit_status")));
	ck_assert_str_eq(json_string_value(json_object_get(rec, "result")), "failed");
	ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(rec, "error")), "prog"));
	json_decref(rec);

	ck_assert_int_eq(run_json("{\"command\": [\"no-such-program-loom\"]}"), LOOM_ENOENT);
	ASSERT_LOG(LOOM_LOG_ERROR, "cannot start no-such-program-loom: not found on PATH");

	/* a script without the execute bit */
	script = tu_write(H.p.tmp, "train.sh", "#!/bin/sh\necho hi\n");
	chmod(script, 0644);
	spec = loomi_strfmt("{\"command\": [\"%s\"]}", script);
	ck_assert_int_eq(run_json(spec), LOOM_EPERM);
	ASSERT_LOG(LOOM_LOG_ERROR, script);
	ASSERT_LOG(LOOM_LOG_ERROR, "Permission denied");
	free(spec);

	/* found on PATH: a name, then a relative path from workdir */
	chmod(script, 0755);
	ck_assert_int_eq(run_json("{\"command\": [\"sh\", \"-c\", \"echo found\"]}"), 0);
	ck_assert_uint_eq(log_count(LOOM_LOG_INFO, "found"), 1);
	spec = loomi_strfmt("{\"command\": [\"./train.sh\"], \"workdir\": \"%s\"}", H.p.tmp);
	ck_assert_int_eq(run_json(spec), 0);
	ck_assert_uint_eq(log_count(LOOM_LOG_INFO, "hi"), 1);
	free(spec);
	free(script);

	/* a workdir that is not there */
	ck_assert_int_eq(run_sh("pwd", "{\"workdir\": \"/nonexistent/dir\"}"), LOOM_ENOENT);
	ASSERT_LOG(LOOM_LOG_ERROR, "/nonexistent/dir");
}
END_TEST

START_TEST(run_env_and_params)
{
	static const char script[] =
		"echo \"lr=$LOOM_PARAM_LR epochs=$LOOM_PARAM_EPOCHS arch=$LOOM_PARAM_ARCH "
		"amp=$LOOM_PARAM_USE_AMP third=$LOOM_PARAM_THIRD\"\n"
		"echo \"id=$LOOM_JOB_ID threads=$LOOM_THREADS omp=$OMP_NUM_THREADS foo=$FOO\"\n"
		"echo \"out=$LOOM_OUT_DIR\"\n"
		"echo \"pwd=$(pwd)\"\n"
		"echo \"py=$PYTHONUNBUFFERED\"\n"
		"if read x; then echo 'stdin had data'; else echo 'stdin empty'; fi\n";
	char *extra, *want;
	int rv;

	rv = run_sh(script, "{\"params\": {\"lr\": 0.1, \"epochs\": 3, \"arch\": \"mlp\", "
	                    "\"use-amp\": true, \"third\": 0.3333333333333333}, "
	                    "\"env\": {\"FOO\": \"bar baz\", \"OMP_NUM_THREADS\": \"7\"}}");
	ck_assert_msg(rv == 0, "run: %s\n%s", loom_errname(rv), logs_text());
	ck_assert_msg(log_count(LOOM_LOG_INFO, "lr=0.1 epochs=3 arch=mlp amp=true "
	                                       "third=0.3333333333333333") == 1,
	              "%s", logs_text());
	ck_assert_msg(log_count(LOOM_LOG_INFO, "id=42 threads=2 omp=7 foo=bar baz") == 1, "%s",
	              logs_text());
	want = loomi_strfmt("out=%s", J.out_dir);
	ck_assert_uint_eq(log_count(LOOM_LOG_INFO, want), 1);
	free(want);
	/* the default workdir is the output directory */
	want = loomi_strfmt("pwd=%s", J.out_dir);
	ck_assert_msg(log_count(LOOM_LOG_INFO, want) == 1, "%s", logs_text());
	free(want);
	ck_assert_uint_eq(log_count(LOOM_LOG_INFO, "py=1"), 1);
	ck_assert_uint_eq(log_count(LOOM_LOG_INFO, "stdin empty"), 1);

	/* OMP_NUM_THREADS follows the job's threads; workdir is used */
	extra = loomi_strfmt("{\"workdir\": \"%s\"}", H.p.tmp);
	ck_assert_int_eq(run_sh("echo \"omp=$OMP_NUM_THREADS pwd=$(pwd)\"", extra), 0);
	want = loomi_strfmt("omp=2 pwd=%s", H.p.tmp);
	ck_assert_msg(log_count(LOOM_LOG_INFO, want) == 1, "%s", logs_text());
	free(want);
	free(extra);
}
END_TEST

START_TEST(run_long_lines)
{
	static const char script[] =
		"head -c 100000 /dev/zero | tr '\\0' x; echo\n"
		"echo after\n"
		"head -c 70000 /dev/zero | tr '\\0' y; echo\n"
		"head -c 65536 /dev/zero | tr '\\0' z; echo\n";
	size_t cut = 0, whole = 0, notes = 0;
	int rv = run_sh(script, NULL);

	ck_assert_msg(rv == 0, "run: %s", loom_errname(rv));
	for (size_t i = 0; i < J.n_logs; i++) {
		size_t len = strlen(J.logs[i].msg);
		if (J.logs[i].level == LOOM_LOG_INFO && len == 65536 &&
		    strspn(J.logs[i].msg, J.logs[i].msg[0] == 'z' ? "z" : "xy") == len)
			J.logs[i].msg[0] == 'z' ? whole++ : cut++;
		if (J.logs[i].level == LOOM_LOG_WARN && strstr(J.logs[i].msg, "longer than 65536"))
			notes++;
	}
	ck_assert_uint_eq(cut, 2);
	ck_assert_uint_eq(whole, 1);
	ck_assert_uint_eq(notes, 1);
	ck_assert_uint_eq(log_count(LOOM_LOG_INFO, "after"), 1);
}
END_TEST

START_TEST(run_many_lines)
{
	int rv = run_sh("seq 1 20000; seq 1 3000 >&2", NULL);
	size_t n = 0, e = 0;

	ck_assert_msg(rv == 0, "run: %s", loom_errname(rv));
	for (size_t i = 0; i < J.n_logs; i++) {
		if (J.logs[i].level == LOOM_LOG_INFO && J.logs[i].msg[0] >= '0' &&
		    J.logs[i].msg[0] <= '9' && (size_t)atol(J.logs[i].msg) == n + 1)
			n++;
		e += J.logs[i].level == LOOM_LOG_WARN;
	}
	ck_assert_uint_eq(n, 20000);
	ck_assert_uint_eq(e, 3000);
}
END_TEST

START_TEST(run_leftover_processes)
{
	/* the background sleep holds stdout open after the shell exits */
	int rv = run_sh("echo pgid=$$; sleep 300 & echo done", "{\"stop_grace\": 1}");

	ck_assert_msg(rv == 0, "run: %s\n%s", loom_errname(rv), logs_text());
	ck_assert_msg(J.elapsed < 10, "took %.1f s", J.elapsed);
	ASSERT_LOG(LOOM_LOG_WARN, "left processes running");
	ck_assert(!group_running((pid_t)logged_number("pgid=")));
	ck_assert_uint_eq(log_count(LOOM_LOG_INFO, "done"), 1);
}
END_TEST

/* ------------------------------------------------------------------ stop */

/* Run script, answering stop from the nth control poll on; a script that
 * prints "pgid=" (after its traps) is only stopped once it has printed it,
 * since how soon a started shell runs its first line is not ours to know. */
static int
run_stopped(const char *script, const char *extra, int stop, int nth)
{
	char *text = spec_sh(script, extra);
	int rv = run_job(text, stop, nth, strstr(script, "pgid=") ? "pgid=" : NULL);
	free(text);
	return rv;
}

START_TEST(stop_cancel_group)
{
	pid_t pgid;
	json_t *rec;
	int rv;

	rv = run_stopped("echo pgid=$$; sleep 300 & sleep 300 & wait", "{\"stop_grace\": 5}",
	                 LOOM_CONTROL_CANCEL, 4);
	ck_assert_msg(rv == LOOM_ECANCELED, "run: %s\n%s", loom_errname(rv), logs_text());
	ck_assert_int_ge(J.stopped_at, 4);
	ck_assert_int_eq(J.polls, J.stopped_at); /* no poll after the cancel */
	ck_assert_msg(J.elapsed < 4, "took %.1f s", J.elapsed);
	ASSERT_LOG(LOOM_LOG_INFO, "cancelled");
	pgid = (pid_t)logged_number("pgid=");
	/* the leader is reaped, the sleeps are gone */
	ck_assert_int_eq(kill(pgid, 0), -1);
	ck_assert_int_eq(errno, ESRCH);
	ck_assert(!group_running(pgid));
	rec = exec_json();
	ck_assert_str_eq(json_string_value(json_object_get(rec, "result")), "cancelled");
	ck_assert_int_eq(json_integer_value(json_object_get(rec, "signal")), SIGTERM);
	json_decref(rec);
	ck_assert_ptr_null(log_find(LOOM_LOG_ERROR, ""));
}
END_TEST

START_TEST(stop_cancel_escalates)
{
	pid_t pgid;
	json_t *rec;
	int rv;

	/* SIGTERM ignored by the shell and its children: SIGKILL after 0.5 s */
	rv = run_stopped("trap '' TERM; echo pgid=$$; while :; do sleep 0.05; done",
	                 "{\"stop_grace\": 0.5}", LOOM_CONTROL_CANCEL, 2);
	ck_assert_msg(rv == LOOM_ECANCELED, "run: %s\n%s", loom_errname(rv), logs_text());
	ck_assert_msg(J.elapsed >= 0.5 && J.elapsed < 5, "took %.2f s", J.elapsed);
	ASSERT_LOG(LOOM_LOG_WARN, "sent SIGKILL");
	pgid = (pid_t)logged_number("pgid=");
	ck_assert(!group_running(pgid));
	rec = exec_json();
	ck_assert_int_eq(json_integer_value(json_object_get(rec, "signal")), SIGKILL);
	json_decref(rec);
}
END_TEST

START_TEST(stop_pause)
{
	int rv = run_stopped("echo pgid=$$; sleep 300", NULL, LOOM_CONTROL_PAUSE, 2);

	ck_assert_int_eq(rv, LOOM_ECANCELED);
	ASSERT_LOG(LOOM_LOG_WARN, "compute-exec jobs cannot pause; stopping");
	ck_assert(!group_running((pid_t)logged_number("pgid=")));

	/* asked before it starts: nothing runs */
	rv = run_stopped("echo started", NULL, LOOM_CONTROL_CANCEL, 1);
	ck_assert_int_eq(rv, LOOM_ECANCELED);
	ck_assert_ptr_null(log_find(LOOM_LOG_INFO, "started"));
}
END_TEST

START_TEST(stop_timeout)
{
	json_t *rec;
	int rv = run_sh("echo pgid=$$; sleep 300", "{\"timeout\": 0.4, \"stop_grace\": \"1s\"}");

	ck_assert_int_eq(rv, LOOM_ETIMEDOUT);
	ck_assert_msg(J.elapsed >= 0.4 && J.elapsed < 5, "took %.2f s", J.elapsed);
	ASSERT_LOG(LOOM_LOG_ERROR, "timed out");
	ck_assert(!group_running((pid_t)logged_number("pgid=")));
	rec = exec_json();
	ck_assert_str_eq(json_string_value(json_object_get(rec, "result")), "timed out");
	json_decref(rec);
}
END_TEST

/* ------------------------------------------------------------------ config */

START_TEST(config_settings)
{
	size_t cut = 0;
	int rv;

	/* max_line = 1K; a cut never splits a character; "\r\r\n" ends a line */
	rv = run_sh("head -c 3000 /dev/zero | tr '\\0' x; printf '\\r\\r\\n'\n"
	            "head -c 1023 /dev/zero | tr '\\0' a; printf '\\303\\251tail\\n'\n"
	            "echo ok",
	            NULL);
	ck_assert_int_eq(rv, 0);
	for (size_t i = 0; i < J.n_logs; i++) {
		size_t len = strlen(J.logs[i].msg);
		if (J.logs[i].level != LOOM_LOG_INFO)
			continue;
		cut += len == 1024 && strspn(J.logs[i].msg, "x") == len;
		cut += len == 1023 && strspn(J.logs[i].msg, "a") == len;
	}
	ck_assert_msg(cut == 2, "%s", logs_text());
	ASSERT_LOG(LOOM_LOG_WARN, "longer than 1024 bytes");
	ck_assert_uint_eq(log_count(LOOM_LOG_INFO, "ok"), 1);
	ck_assert_uint_eq(log_count(LOOM_LOG_INFO, ""), 0);
	ck_assert_ptr_null(log_find(LOOM_LOG_INFO, "tail"));

	/* default_stop_grace = 300ms, without stop_grace in the spec */
	rv = run_stopped("trap '' TERM; echo pgid=$$; while :; do sleep 0.05; done", NULL,
	                 LOOM_CONTROL_CANCEL, 2);
	ck_assert_int_eq(rv, LOOM_ECANCELED);
	ck_assert_msg(J.elapsed >= 0.3 && J.elapsed < 3, "took %.2f s", J.elapsed);
	ASSERT_LOG(LOOM_LOG_WARN, "within 300 ms of SIGTERM");
}
END_TEST

/* ------------------------------------------------------------------ the suite */

static void
teardown(void)
{
	job_reset();
	exec_close();
}

int
main(void)
{
	Suite *s = suite_create("compute-exec");
	TCase *tc;

	tc = tcase_create("validate");
	tcase_add_checked_fixture(tc, setup_default, teardown);
	tcase_add_test(tc, validate_accepts);
	tcase_add_test(tc, validate_refuses);
	suite_add_tcase(s, tc);

	tc = tcase_create("run");
	tcase_add_checked_fixture(tc, setup_default, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, run_metrics_and_logs);
	tcase_add_test(tc, run_partial_lines);
	tcase_add_test(tc, run_exit_status);
	tcase_add_test(tc, run_killed_by_signal);
	tcase_add_test(tc, run_cannot_start);
	tcase_add_test(tc, run_env_and_params);
	tcase_add_test(tc, run_long_lines);
	tcase_add_test(tc, run_many_lines);
	tcase_add_test(tc, run_leftover_processes);
	suite_add_tcase(s, tc);

	tc = tcase_create("stop");
	tcase_add_checked_fixture(tc, setup_default, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, stop_cancel_group);
	tcase_add_test(tc, stop_cancel_escalates);
	tcase_add_test(tc, stop_pause);
	tcase_add_test(tc, stop_timeout);
	suite_add_tcase(s, tc);

	tc = tcase_create("config");
	tcase_add_checked_fixture(tc, setup_config, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, config_settings);
	suite_add_tcase(s, tc);

	return tu_run(s);
}

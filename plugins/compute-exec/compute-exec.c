/* compute-exec — runs an external command (a PyTorch script, a shell
 * script, any program) as a job, so Loom schedules and tracks training
 * written in any framework.
 *
 * The job spec (JSON; "compute" and "name" belong to the host):
 *
 *   {"command": ["python3", "train.py", "--lr", "0.1"],  argv; required
 *    "workdir": "/path",          default: the job's output directory
 *    "env": {"KEY": "value"},     extra environment
 *    "params": {"lr": 0.1},       exported as LOOM_PARAM_LR=0.1
 *    "timeout": 600,              seconds or "10m"; 0: none
 *    "stop_grace": 10}            seconds or "10s" from SIGTERM to SIGKILL
 *
 * The command runs in its own process group, with stdin on /dev/null and
 * stdout and stderr on pipes.  A stdout line holding a JSON object reports
 * progress and metrics:
 *
 *   {"step": 120, "total_steps": 1000, "epoch": 1, "epochs": 5, "loss": 0.31}
 *
 * every other line is logged, stdout at INFO and stderr at WARN.  A '\r'
 * without '\n' returns to the start of the line as on a terminal, so
 * progress bars log their last state once.
 *
 * Cancel, pause and timeout send SIGTERM to the group and SIGKILL after the
 * stop grace.  A command cannot checkpoint for Loom, so the plugin is not
 * LOOM_COMPUTE_RESUMABLE and a pause stops the job.  exec.json in the output
 * directory records how the run ended. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <loom/compute.h>

#if defined(__GLIBC__)
#if !__GLIBC_PREREQ(2, 29)
#error "compute-exec needs posix_spawn_file_actions_addchdir_np (glibc 2.29 or later)"
#endif
#if __GLIBC_PREREQ(2, 34)
#define HAVE_SPAWN_CLOSEFROM 1
#endif
#endif

extern char **environ;

#define POLL_MS 100             /* how often control() is asked */
#define DRAIN_NS 200000000ull   /* output read after the command exits */
#define READ_CHUNK 65536
#define MS_NS 1000000ull

typedef struct ctx {
	/* settings (filled by the host from the config map) */
	int64_t default_stop_grace; /* milliseconds */
	uint64_t max_line;          /* bytes */
	/* state */
	const loom_host *host;
	loom_instance *ins;
} ctx;

static const loom_config_entry config[] = {
	{LOOM_CONFIG_DURATION, LOOM_CONFIG_RANGE, "default_stop_grace", "10s",
	 offsetof(ctx, default_stop_grace),
	 "time from SIGTERM to SIGKILL when a job stops, unless its spec sets stop_grace", 0,
	 86400000, NULL, {NULL, NULL}},
	{LOOM_CONFIG_SIZE, LOOM_CONFIG_RANGE, "max_line", "64K", offsetof(ctx, max_line),
	 "the longest output line kept; longer ones are cut", 256, 64.0 * 1024 * 1024, NULL,
	 {NULL, NULL}},
	LOOM_CONFIG_END,
};

/* ------------------------------------------------------------------ text */

static char *vfmt(const char *f, va_list ap) LOOM_PRINTF(1, 0);

static char *
vfmt(const char *f, va_list ap)
{
	char *s;
	return vasprintf(&s, f, ap) < 0 ? NULL : s;
}

static char *fmt(const char *f, ...) LOOM_PRINTF(1, 2);

static char *
fmt(const char *f, ...)
{
	va_list ap;
	char *s;
	va_start(ap, f);
	s = vfmt(f, ap);
	va_end(ap);
	return s;
}

/* dir/name, or name when it is absolute or dir is NULL. */
static char *
path_join(const char *dir, const char *name)
{
	if (name[0] == '/' || dir == NULL)
		return strdup(name);
	return fmt("%s%s%s", dir, dir[0] && dir[strlen(dir) - 1] != '/' ? "/" : "", name);
}

/* Levenshtein distance of two short words (SIZE_MAX for long ones). */
static size_t
distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[33];

	if (la > 32 || lb > 32)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

/* Replace what is not valid UTF-8 (and NUL) with '?', in place: log lines
 * travel as JSON. */
static void
utf8_clean(char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char b = (unsigned char)s[i];
		size_t len = b < 0x80 ? 1 : (b & 0xe0) == 0xc0 ? 2 : (b & 0xf0) == 0xe0 ? 3
		                                                  : (b & 0xf8) == 0xf0 ? 4 : 0;
		uint32_t cp = len == 2 ? b & 0x1fu : len == 3 ? b & 0x0fu : b & 0x07u;
		size_t k = 1;

		if (b == 0 || len == 0 || i + len > n) {
			s[i++] = '?';
			continue;
		}
		for (; k < len && ((unsigned char)s[i + k] & 0xc0) == 0x80; k++)
			cp = cp << 6 | ((unsigned char)s[i + k] & 0x3fu);
		if (k < len || (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
		    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff)) {
			s[i++] = '?';
			continue;
		}
		i += len;
	}
}

/* ------------------------------------------------------------------ the spec */

static const char *const spec_keys[] = {
	"compute", "name", "command", "workdir", "env", "params", "timeout", "stop_grace",
};
#define N_SPEC_KEYS (sizeof spec_keys / sizeof spec_keys[0])

typedef struct spec {
	json_t *doc;
	json_t *command;        /* an array of strings, in doc */
	const char *workdir;    /* NULL: the job's out_dir */
	json_t *env, *params;   /* objects in doc, or NULL */
	int64_t timeout_ms;     /* 0: none */
	int64_t stop_grace_ms;
} spec;

static int refuse(char **msg, const char *f, ...) LOOM_PRINTF(2, 3);

static int
refuse(char **msg, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	*msg = vfmt(f, ap);
	va_end(ap);
	return *msg ? LOOM_EINVAL : LOOM_ENOMEM;
}

/* A number of seconds or a duration string, into milliseconds. */
static int
duration_ms(const json_t *v, int64_t *ms)
{
	if (json_is_number(v)) {
		double s = json_number_value(v);
		if (!(s >= 0 && s <= 1e9))
			return LOOM_ERANGE;
		*ms = (int64_t)llround(s * 1000);
		return 0;
	}
	if (json_is_string(v))
		return loom_parse_duration(json_string_value(v), ms);
	return LOOM_EINVAL;
}

/* "LOOM_PARAM_" and key in upper case, other characters than letters and
 * digits as '_'. */
static char *
param_var(const char *key)
{
	char *name = fmt("LOOM_PARAM_%s", key);
	for (char *p = name ? name + 11 : NULL; p && *p; p++) {
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
		else if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
			*p = '_';
	}
	return name;
}

static int
check_params(const json_t *params, char **msg)
{
	const char *key, *k2;
	json_t *v, *v2;

	if (!json_is_object(params))
		return refuse(msg, "params: expected an object such as {\"lr\": 0.1, \"epochs\": 3}");
	json_object_foreach((json_t *)params, key, v) {
		if (key[0] == '\0')
			return refuse(msg, "params: a key is empty; name each parameter");
		if (!(json_is_number(v) || json_is_string(v) || json_is_boolean(v)))
			return refuse(msg, "params.%s: expected a number, string or boolean (it is "
			                   "exported as LOOM_PARAM_<KEY>)",
			              key);
	}
	/* two keys must not name one variable */
	json_object_foreach((json_t *)params, key, v) {
		char *a = param_var(key);
		bool clash = false;
		if (a == NULL)
			return LOOM_ENOMEM;
		json_object_foreach((json_t *)params, k2, v2) {
			char *b;
			if (k2 == key)
				break;
			if ((b = param_var(k2)) == NULL) {
				free(a);
				return LOOM_ENOMEM;
			}
			clash = strcmp(a, b) == 0;
			free(b);
			if (clash) {
				int rv = refuse(msg,
				                "params: \"%s\" and \"%s\" would both be %s; "
				                "rename one",
				                k2, key, a);
				free(a);
				return rv;
			}
		}
		free(a);
	}
	return 0;
}

/* Parse and check spec text into s (spec_free it, also on failure).
 * Returns 0, or LOOM_EINVAL with a message naming the key in *msg. */
static int
spec_parse(const ctx *c, const char *text, spec *s, char **msg)
{
	json_error_t jerr;
	const char *key;
	json_t *v;
	size_t i;

	memset(s, 0, sizeof *s);
	s->stop_grace_ms = c->default_stop_grace;
	s->doc = json_loads(text ? text : "", 0, &jerr);
	if (s->doc == NULL)
		return refuse(msg, "not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
		              jerr.column);
	if (!json_is_object(s->doc))
		return refuse(msg, "expected a JSON object such as {\"command\": [\"python3\", "
		                   "\"train.py\"]}");
	json_object_foreach(s->doc, key, v) {
		const char *near = NULL;
		size_t best = 3; /* at most two edits */
		for (i = 0; i < N_SPEC_KEYS; i++) {
			size_t d = distance(key, spec_keys[i]);
			if (d == 0)
				break;
			if (d < best) {
				best = d;
				near = spec_keys[i];
			}
		}
		if (i == N_SPEC_KEYS) {
			if (near)
				return refuse(msg, "%s: unknown key (did you mean %s?)", key, near);
			return refuse(msg, "%s: unknown key; compute-exec takes command, workdir, env, "
			                   "params, timeout and stop_grace",
			              key);
		}
	}

	s->command = json_object_get(s->doc, "command");
	if (!json_is_array(s->command) || json_array_size(s->command) == 0)
		return refuse(msg, "command: expected a non-empty list of strings, e.g. [\"python3\", "
		                   "\"train.py\"]");
	json_array_foreach(s->command, i, v) {
		if (!json_is_string(v))
			return refuse(msg, "command[%zu]: expected a string", i);
	}
	if (json_string_length(json_array_get(s->command, 0)) == 0)
		return refuse(msg, "command[0]: the program is empty; give a path or a name on PATH");

	if ((v = json_object_get(s->doc, "workdir")) != NULL) {
		if (!json_is_string(v) || json_string_length(v) == 0)
			return refuse(msg, "workdir: expected a directory path");
		s->workdir = json_string_value(v);
	}

	if ((s->env = json_object_get(s->doc, "env")) != NULL) {
		if (!json_is_object(s->env))
			return refuse(msg, "env: expected an object such as {\"CUDA_LAUNCH_BLOCKING\": "
			                   "\"1\"}");
		json_object_foreach(s->env, key, v) {
			if (key[0] == '\0' || strchr(key, '=') != NULL)
				return refuse(msg, "env: \"%s\" is not a variable name", key);
			if (!json_is_string(v))
				return refuse(msg, "env.%s: expected a string", key);
		}
	}

	if ((s->params = json_object_get(s->doc, "params")) != NULL) {
		int rv = check_params(s->params, msg);
		if (rv != 0)
			return rv;
	}

	if ((v = json_object_get(s->doc, "timeout")) != NULL && duration_ms(v, &s->timeout_ms))
		return refuse(msg, "timeout: expected seconds (0: none) or a duration such as \"2h\"");
	if ((v = json_object_get(s->doc, "stop_grace")) != NULL &&
	    duration_ms(v, &s->stop_grace_ms))
		return refuse(msg, "stop_grace: expected seconds or a duration such as \"30s\"");
	return 0;
}

static void
spec_free(spec *s)
{
	json_decref(s->doc);
	memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------------ one run */

typedef enum stop_reason {
	STOP_NONE = 0,
	STOP_CANCEL,
	STOP_PAUSE,
	STOP_TIMEOUT,
} stop_reason;

/* One of the command's output pipes and the line it is assembling. */
typedef struct stream {
	int fd;                 /* -1 at end of file */
	bool is_stdout;
	char *line;             /* max_line + 1 bytes */
	size_t len;
	bool cr;                /* a '\r' not yet followed by anything */
	bool cutting;           /* dropping the rest of an overlong line */
} stream;

typedef struct run {
	const ctx *c;
	const loom_job *job;
	spec sp;
	const char *program;    /* command[0] */
	stream out, err;
	char *chunk;            /* READ_CHUNK bytes */
	bool said_cut;
	char *last_err;         /* the last non-empty stderr line */
	int64_t step, total_steps;
	int32_t epoch, epochs;
	json_t *last_metrics;

	pid_t pid;              /* also the process group; 0: not started */
	uint64_t started_ns, ended_ns;
	bool reaped, status_known;
	int status;             /* from waitpid */
	stop_reason stop;
	bool killed;            /* SIGKILL sent */
	uint64_t kill_at;       /* when SIGKILL follows SIGTERM */
	char *start_error;      /* why it could not start */
} run;

static uint64_t
now_ns(const run *r)
{
	return r->c->host->clock_mono_ns();
}

static void jlog(const run *r, int level, const char *f, ...) LOOM_PRINTF(3, 4);

static void
jlog(const run *r, int level, const char *f, ...)
{
	va_list ap;
	char *m;

	if (r->job->log == NULL)
		return;
	va_start(ap, f);
	m = vfmt(f, ap);
	va_end(ap);
	if (m)
		r->job->log(r->job, level, m);
	free(m);
}

static bool
integer_field(const json_t *o, const char *key, int64_t *out)
{
	const json_t *v = json_object_get(o, key);
	double d;

	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return true;
	}
	d = json_number_value(v); /* 0 for what is not a number */
	if (json_is_real(v) && d == floor(d) && fabs(d) < 9.2e18) {
		*out = (int64_t)d;
		return true;
	}
	return false;
}

static bool
progress_key(const char *key)
{
	return strcmp(key, "step") == 0 || strcmp(key, "total_steps") == 0 ||
	       strcmp(key, "epoch") == 0 || strcmp(key, "epochs") == 0;
}

/* A metric's value: a JSON number, or (JSON has no NaN) one of the
 * strings "NaN", "Infinity", "-Infinity", in any case. */
static bool
metric_value(const json_t *v, double *out)
{
	const char *s = json_string_value(v);

	if (json_is_number(v)) {
		*out = json_number_value(v);
		return true;
	}
	if (s == NULL)
		return false;
	if (strcasecmp(s, "nan") == 0)
		*out = NAN;
	else if (strcasecmp(s, "infinity") == 0 || strcasecmp(s, "+infinity") == 0)
		*out = INFINITY;
	else if (strcasecmp(s, "-infinity") == 0)
		*out = -INFINITY;
	else
		return false;
	return true;
}

/* A stdout line holding a JSON object: progress and metrics.  False when
 * the object carries neither (it is then logged as text). */
static bool
metrics_line(run *r, json_t *o)
{
	const loom_job *job = r->job;
	bool progress = false, any = false;
	int64_t x;
	const char *key;
	json_t *v;

	/* missing fields keep their last values */
	if (integer_field(o, "step", &x)) {
		r->step = x;
		progress = true;
	}
	if (integer_field(o, "total_steps", &x)) {
		r->total_steps = x;
		progress = true;
	}
	if (integer_field(o, "epoch", &x)) {
		r->epoch = (int32_t)x;
		progress = true;
	}
	if (integer_field(o, "epochs", &x)) {
		r->epochs = (int32_t)x;
		progress = true;
	}
	if (progress && job->progress)
		job->progress(job, r->step, r->total_steps, r->epoch, r->epochs);

	json_object_foreach(o, key, v) {
		loom_metric_point pt;
		double value;
		if (progress_key(key) || !metric_value(v, &value))
			continue;
		any = true;
		memset(&pt, 0, sizeof pt);
		pt.name = key;
		pt.step = r->step;
		pt.epoch = r->epoch;
		pt.scope = strncmp(key, "val_", 4) == 0    ? LOOM_METRIC_EPOCH
		           : strncmp(key, "test_", 5) == 0 ? LOOM_METRIC_FINAL
		                                           : LOOM_METRIC_STEP;
		pt.wall_ms = r->c->host->clock_wall_ms();
		pt.value = value;
		if (job->metric)
			job->metric(job, &pt);
		json_object_set(r->last_metrics, key, v);
	}
	return progress || any;
}

/* A whole line from s (in s->line, s->len bytes). */
static void
line_done(run *r, stream *s)
{
	char *line = s->line, *p;

	line[s->len] = '\0';
	utf8_clean(line, s->len);
	s->len = 0;
	if (!s->is_stdout) {
		if (line[0] != '\0') {
			free(r->last_err);
			r->last_err = strdup(line);
		}
		if (r->job->log)
			r->job->log(r->job, LOOM_LOG_WARN, line);
		return;
	}
	for (p = line; *p == ' ' || *p == '\t'; p++)
		;
	if (*p == '{') {
		json_t *o = json_loads(p, 0, NULL);
		bool used = json_is_object(o) && metrics_line(r, o);
		json_decref(o);
		if (used)
			return;
	}
	if (r->job->log)
		r->job->log(r->job, LOOM_LOG_INFO, line);
}

/* Feed n bytes of output to s's line. */
static void
feed(run *r, stream *s, const char *data, size_t n)
{
	size_t max = (size_t)r->c->max_line;

	for (size_t i = 0; i < n; i++) {
		char ch = data[i];
		if (s->cr && ch != '\n' && ch != '\r') {
			s->len = 0; /* a lone '\r': back to the start of the line */
			s->cutting = false;
		}
		s->cr = false;
		if (ch == '\n') {
			if (!s->cutting)
				line_done(r, s);
			s->cutting = false;
			s->len = 0;
		} else if (ch == '\r') {
			s->cr = true;
		} else if (s->cutting) {
			continue;
		} else if (s->len == max) {
			size_t keep = max;
			if (((unsigned char)ch & 0xc0) == 0x80) {
				/* ch continues a character: cut before its first byte */
				while (keep > 0 && ((unsigned char)s->line[keep - 1] & 0xc0) == 0x80)
					keep--;
				if (keep > 0)
					keep--;
			}
			s->len = keep;
			line_done(r, s);
			s->cutting = true;
			if (!r->said_cut) {
				r->said_cut = true;
				jlog(r, LOOM_LOG_WARN,
				     "%s printed a line longer than %zu bytes; such lines are cut "
				     "(max_line in the plugin's settings)",
				     r->program, max);
			}
		} else {
			s->line[s->len++] = ch;
		}
	}
}

/* Read what s has; false at end of file. */
static bool
pump(run *r, stream *s)
{
	ssize_t n = read(s->fd, r->chunk, READ_CHUNK);

	if (n > 0) {
		feed(r, s, r->chunk, (size_t)n);
		return true;
	}
	if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return true;
	if (s->len > 0 && !s->cutting)
		line_done(r, s); /* the last line, without '\n' */
	close(s->fd);
	s->fd = -1;
	return false;
}

/* Wait up to timeout_ms for output and read it.  True when some was read. */
static bool
wait_output(run *r, int timeout_ms)
{
	stream *all[2] = {&r->out, &r->err}, *ss[2];
	struct pollfd pf[2];
	nfds_t n = 0;
	bool got = false;

	for (int i = 0; i < 2; i++) {
		if (all[i]->fd < 0)
			continue;
		pf[n].fd = all[i]->fd;
		pf[n].events = POLLIN;
		ss[n++] = all[i];
	}
	if (poll(n ? pf : NULL, n, timeout_ms) <= 0)
		return false;
	for (nfds_t i = 0; i < n; i++) {
		if (pf[i].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) {
			pump(r, ss[i]);
			got = true;
		}
	}
	return got;
}

/* Is a process of group pgid still running?  kill(-pgid, 0) counts zombies
 * too, which an init that does not reap (some containers) keeps for ever;
 * /proc tells them apart. */
static bool
group_alive(pid_t pgid)
{
	bool alive = false;
	struct dirent *e;
	DIR *d;

	if (kill(-pgid, 0) != 0)
		return false;
	if ((d = opendir("/proc")) == NULL)
		return true;
	while (!alive && (e = readdir(d)) != NULL) {
		char path[300], buf[512], state;
		long ppid, pgrp;
		const char *p;
		ssize_t n;
		int fd;

		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			continue;
		n = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		/* "pid (comm) state ppid pgrp …"; comm may hold ')' */
		if ((p = strrchr(buf, ')')) != NULL &&
		    sscanf(p + 1, " %c %ld %ld", &state, &ppid, &pgrp) == 3 && pgrp == pgid &&
		    state != 'Z' && state != 'X')
			alive = true;
	}
	closedir(d);
	return alive;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* SIGTERM the group now, SIGKILL it after the stop grace. */
static void
stop_begin(run *r, stop_reason why)
{
	r->stop = why;
	r->kill_at = now_ns(r) + (uint64_t)r->sp.stop_grace_ms * MS_NS;
	if (r->sp.stop_grace_ms <= 0) {
		kill(-r->pid, SIGKILL);
		r->killed = true;
	} else {
		kill(-r->pid, SIGTERM);
	}
}

static void
stop_now(run *r)
{
	kill(-r->pid, SIGKILL);
	r->killed = true;
	jlog(r, LOOM_LOG_WARN,
	     "%s did not stop within %lld ms of SIGTERM (stop_grace); sent SIGKILL", r->program,
	     (long long)r->sp.stop_grace_ms);
}

/* After the command exited: processes it left in its group (a server, a
 * daemon, an orphaned worker) get SIGTERM and, after the grace, SIGKILL. */
static void
stop_leftovers(run *r)
{
	uint64_t deadline;

	if (!group_alive(r->pid))
		return;
	if (r->stop == STOP_NONE) {
		jlog(r, LOOM_LOG_WARN,
		     "%s exited but left processes running in its process group; stopping them",
		     r->program);
		kill(-r->pid, SIGTERM);
		deadline = now_ns(r) + (uint64_t)r->sp.stop_grace_ms * MS_NS;
	} else {
		deadline = r->killed ? 0 : r->kill_at;
	}
	while (now_ns(r) < deadline && group_alive(r->pid))
		sleep_ms(20);
	if (group_alive(r->pid)) {
		kill(-r->pid, SIGKILL);
		for (int i = 0; i < 50 && group_alive(r->pid); i++)
			sleep_ms(20);
	}
}

/* Read what the pipes hold.  A process the command left behind may keep
 * them open, so this stops when nothing more is there. */
static void
drain(run *r)
{
	uint64_t until = now_ns(r) + DRAIN_NS;
	while ((r->out.fd >= 0 || r->err.fd >= 0) && now_ns(r) < until && wait_output(r, 0))
		;
}

/* Watch the running command until it exits: output, control, timeout;
 * then stop what it left behind. */
static void
supervise(run *r)
{
	uint64_t last_control = 0;

	for (;;) {
		uint64_t now = now_ns(r);
		int timeout = POLL_MS;
		pid_t w;

		if (r->stop != STOP_NONE && !r->killed) {
			if (now >= r->kill_at)
				stop_now(r);
			else if ((r->kill_at - now) / MS_NS < (uint64_t)timeout)
				timeout = (int)((r->kill_at - now) / MS_NS) + 1;
		}
		wait_output(r, timeout);

		w = waitpid(r->pid, &r->status, WNOHANG);
		if (w == r->pid || (w < 0 && errno == ECHILD)) {
			/* ECHILD: SIGCHLD is ignored and the kernel reaped it */
			r->status_known = w == r->pid;
			r->reaped = true;
			r->ended_ns = now_ns(r);
			break;
		}

		now = now_ns(r);
		if (r->stop != STOP_NONE)
			continue;
		if (r->job->control && now - last_control >= POLL_MS * MS_NS) {
			int ctl = r->job->control(r->job);
			last_control = now;
			if (ctl == LOOM_CONTROL_CANCEL) {
				jlog(r, LOOM_LOG_INFO, "cancelled; stopping %s (SIGTERM, SIGKILL after "
				                       "%lld ms)",
				     r->program, (long long)r->sp.stop_grace_ms);
				stop_begin(r, STOP_CANCEL);
			} else if (ctl == LOOM_CONTROL_PAUSE) {
				jlog(r, LOOM_LOG_WARN, "compute-exec jobs cannot pause; stopping");
				stop_begin(r, STOP_PAUSE);
			}
		}
		if (r->stop == STOP_NONE && r->sp.timeout_ms > 0 &&
		    now - r->started_ns >= (uint64_t)r->sp.timeout_ms * MS_NS) {
			jlog(r, LOOM_LOG_ERROR,
			     "timed out: %s ran longer than its timeout of %g s; stopping it",
			     r->program, (double)r->sp.timeout_ms / 1000);
			stop_begin(r, STOP_TIMEOUT);
		}
	}

	drain(r);
	stop_leftovers(r);
	drain(r);
	/* a line left open by a process that still holds the pipe */
	if (r->out.fd >= 0 && r->out.len > 0 && !r->out.cutting)
		line_done(r, &r->out);
	if (r->err.fd >= 0 && r->err.len > 0 && !r->err.cutting)
		line_done(r, &r->err);
}

/* ------------------------------------------------------------------ starting */

typedef struct envv {
	char **v;
	size_t n, cap;
} envv;

/* Set name=value, replacing an earlier one; only when absent with !replace. */
static int
env_put(envv *e, const char *name, const char *value, bool replace)
{
	size_t len = strlen(name);
	char *s;

	for (size_t i = 0; i < e->n; i++) {
		if (strncmp(e->v[i], name, len) == 0 && e->v[i][len] == '=') {
			if (!replace)
				return 0;
			if ((s = fmt("%s=%s", name, value)) == NULL)
				return LOOM_ENOMEM;
			free(e->v[i]);
			e->v[i] = s;
			return 0;
		}
	}
	if (e->n + 2 > e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 64;
		char **nv = realloc(e->v, cap * sizeof *nv);
		if (nv == NULL)
			return LOOM_ENOMEM;
		e->v = nv;
		e->cap = cap;
	}
	if ((s = fmt("%s=%s", name, value)) == NULL)
		return LOOM_ENOMEM;
	e->v[e->n++] = s;
	e->v[e->n] = NULL;
	return 0;
}

static const char *
env_get(const envv *e, const char *name)
{
	size_t len = strlen(name);
	for (size_t i = 0; i < e->n; i++)
		if (strncmp(e->v[i], name, len) == 0 && e->v[i][len] == '=')
			return e->v[i] + len + 1;
	return NULL;
}

static void
env_free(envv *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->v[i]);
	free(e->v);
}

/* A parameter's value as text: integers plainly, other numbers in the
 * fewest digits that read back to the same double, booleans true/false. */
static char *
param_text(const json_t *v)
{
	if (json_is_string(v))
		return strdup(json_string_value(v));
	if (json_is_boolean(v))
		return strdup(json_is_true(v) ? "true" : "false");
	if (json_is_integer(v))
		return fmt("%lld", (long long)json_integer_value(v));
	for (int digits = 15; digits <= 17; digits++) {
		char *s = fmt("%.*g", digits, json_real_value(v));
		if (s == NULL || digits == 17 || strtod(s, NULL) == json_real_value(v))
			return s;
		free(s);
	}
	return NULL;
}

/* The worker's environment, then Loom's variables, the params and the
 * spec's env, each over the ones before. */
static int
env_build(const run *r, envv *e)
{
	const loom_job *job = r->job;
	const char *key;
	json_t *v;
	char num[32];
	int rv = 0;

	memset(e, 0, sizeof *e);
	for (char **p = environ; p && *p && rv == 0; p++) {
		const char *eq = strchr(*p, '=');
		char *name;
		if (eq == NULL)
			continue;
		if ((name = strndup(*p, (size_t)(eq - *p))) == NULL)
			return LOOM_ENOMEM;
		rv = env_put(e, name, eq + 1, true);
		free(name);
	}
	snprintf(num, sizeof num, "%lld", (long long)job->id);
	if (rv == 0)
		rv = env_put(e, "LOOM_JOB_ID", num, true);
	if (rv == 0)
		rv = env_put(e, "LOOM_OUT_DIR", job->out_dir, true);
	snprintf(num, sizeof num, "%u", job->threads ? job->threads : 1);
	if (rv == 0)
		rv = env_put(e, "LOOM_THREADS", num, true);
	if (rv == 0)
		rv = env_put(e, "OMP_NUM_THREADS", num, true);
	/* Python buffers a pipe by blocks: metrics would come late */
	if (rv == 0)
		rv = env_put(e, "PYTHONUNBUFFERED", "1", false);
	if (rv == 0 && job->alloc.gpu_mask != 0) {
		char gpus[64 * 3] = "";
		size_t len = 0;
		for (int i = 0; i < 64; i++)
			if (job->alloc.gpu_mask & (1ull << i))
				len += (size_t)snprintf(gpus + len, sizeof gpus - len, "%s%d",
				                        len ? "," : "", i);
		rv = env_put(e, "CUDA_VISIBLE_DEVICES", gpus, true);
	}
	json_object_foreach(r->sp.params, key, v) {
		char *name = param_var(key), *text = param_text(v);
		if (rv == 0)
			rv = name && text ? env_put(e, name, text, true) : LOOM_ENOMEM;
		free(name);
		free(text);
	}
	json_object_foreach(r->sp.env, key, v) {
		if (rv == 0)
			rv = env_put(e, key, json_string_value(v), true);
	}
	return rv;
}

/* Can file be run?  0 or an errno value.  Checked before posix_spawn,
 * which cannot always report why exec failed (valgrind, older C
 * libraries: the child then just exits 127). */
static int
runnable(const char *file)
{
	struct stat st;

	if (stat(file, &st) != 0)
		return errno;
	if (!S_ISREG(st.st_mode))
		return EACCES;
	return access(file, X_OK) == 0 ? 0 : errno;
}

/* The file to run for prog: prog itself when it has a '/' (relative to
 * dir), else the first executable file of that name on path.  NULL with
 * errno (ENOENT, EACCES, …) when there is none. */
static char *
resolve(const char *prog, const char *dir, const char *path)
{
	bool denied = false;
	int e;

	if (strchr(prog, '/') != NULL) {
		char *full = path_join(dir, prog);
		if (full && (e = runnable(full)) != 0) {
			free(full);
			errno = e;
			return NULL;
		}
		return full;
	}
	while (path != NULL) {
		const char *colon = strchr(path, ':');
		size_t len = colon ? (size_t)(colon - path) : strlen(path);
		char *d = len ? strndup(path, len) : strdup("."), *file, *full;

		if (d == NULL)
			return NULL;
		file = fmt("%s/%s", d, prog);
		full = file ? path_join(dir, file) : NULL;
		free(d);
		free(file);
		if (full == NULL)
			return NULL;
		if ((e = runnable(full)) == 0)
			return full;
		denied |= e == EACCES;
		free(full);
		path = colon ? colon + 1 : NULL;
	}
	errno = denied ? EACCES : ENOENT;
	return NULL;
}

static int
errno_code(int e)
{
	switch (e) {
	case ENOENT:
	case ENOTDIR:
	case ELOOP:
	case ENAMETOOLONG:
		return LOOM_ENOENT;
	case EACCES:
	case EPERM:
		return LOOM_EPERM;
	case ENOMEM:
		return LOOM_ENOMEM;
	default:
		return LOOM_EIO;
	}
}

/* The start failed: say so, keep the message for exec.json. */
static int
cannot_start(run *r, int code, const char *f, ...) LOOM_PRINTF(3, 4);

static int
cannot_start(run *r, int code, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	free(r->start_error);
	r->start_error = vfmt(f, ap);
	va_end(ap);
	if (r->start_error && r->job->log)
		r->job->log(r->job, LOOM_LOG_ERROR, r->start_error);
	return code;
}

static int
spawn(run *r, const char *file, char *const argv[], char *const envp[], const char *dir,
      int out_w, int err_w)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, dfl;
	int e;

	if ((e = posix_spawn_file_actions_init(&fa)) != 0)
		return e;
	if ((e = posix_spawnattr_init(&at)) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		return e;
	}
	sigemptyset(&none);
	/* signals the worker ignores would stay ignored across exec */
	sigfillset(&dfl);
	sigdelset(&dfl, SIGKILL);
	sigdelset(&dfl, SIGSTOP);
	if (e == 0)
		e = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (e == 0)
		e = posix_spawn_file_actions_adddup2(&fa, out_w, 1);
	if (e == 0)
		e = posix_spawn_file_actions_adddup2(&fa, err_w, 2);
	if (e == 0)
		e = posix_spawn_file_actions_addchdir_np(&fa, dir);
#ifdef HAVE_SPAWN_CLOSEFROM
	/* descriptors other threads open without O_CLOEXEC */
	if (e == 0)
		e = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
	if (e == 0)
		e = posix_spawnattr_setpgroup(&at, 0);
	if (e == 0)
		e = posix_spawnattr_setsigmask(&at, &none);
	if (e == 0)
		e = posix_spawnattr_setsigdefault(&at, &dfl);
	if (e == 0)
		e = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
		                                      POSIX_SPAWN_SETSIGDEF);
	if (e == 0)
		e = posix_spawn(&r->pid, file, &fa, &at, argv, envp);
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	return e;
}

/* Start the command with its pipes.  Returns 0 or a LOOM_E* code after
 * an ERROR log line. */
static int
start(run *r)
{
	const loom_job *job = r->job;
	size_t argc = json_array_size(r->sp.command);
	char **argv = NULL, *dir = NULL, *file = NULL;
	int po[2] = {-1, -1}, pe[2] = {-1, -1};
	struct stat st;
	envv env;
	int rv = 0, e;

	memset(&env, 0, sizeof env);
	dir = r->sp.workdir ? path_join(job->out_dir, r->sp.workdir) : strdup(job->out_dir);
	if (dir == NULL)
		return LOOM_ENOMEM;
	if (stat(dir, &st) != 0) {
		e = errno;
		rv = cannot_start(r, errno_code(e), "cannot run %s in %s: %s", r->program, dir,
		                  strerror(e));
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		rv = cannot_start(r, LOOM_ENOENT, "cannot run %s in %s: not a directory", r->program,
		                  dir);
		goto out;
	}
	if ((rv = env_build(r, &env)) != 0)
		goto out;
	if ((file = resolve(r->program, dir, env_get(&env, "PATH"))) == NULL) {
		e = errno;
		if (e == ENOMEM)
			rv = LOOM_ENOMEM;
		else if (strchr(r->program, '/') != NULL)
			rv = cannot_start(r, errno_code(e), "cannot start %s: %s%s", r->program,
			                  strerror(e),
			                  e == EACCES ? " (is it an executable file?)" : "");
		else if (e == EACCES)
			rv = cannot_start(r, LOOM_EPERM, "cannot start %s: found on PATH but not "
			                                 "executable (chmod +x it)",
			                  r->program);
		else
			rv = cannot_start(r, LOOM_ENOENT, "cannot start %s: not found on PATH (%s); "
			                                  "give its full path in command[0]",
			                  r->program,
			                  env_get(&env, "PATH") ? env_get(&env, "PATH") : "");
		goto out;
	}
	if ((argv = calloc(argc + 1, sizeof *argv)) == NULL) {
		rv = LOOM_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < argc; i++)
		argv[i] = (char *)json_string_value(json_array_get(r->sp.command, i));
	if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0) {
		rv = cannot_start(r, errno_code(errno), "cannot start %s: pipe: %s", r->program,
		                  strerror(errno));
		goto out;
	}
	fcntl(po[0], F_SETFL, O_NONBLOCK);
	fcntl(pe[0], F_SETFL, O_NONBLOCK);
	r->started_ns = now_ns(r);
	if ((e = spawn(r, file, argv, env.v, dir, po[1], pe[1])) != 0) {
		r->pid = 0;
		rv = cannot_start(r, errno_code(e), "cannot start %s: %s%s", file, strerror(e),
		                  e == EACCES   ? " (is it executable?)"
		                  : e == ENOEXEC ? " (a script needs a #! line)"
		                                 : "");
		goto out;
	}
	r->out.fd = po[0];
	r->err.fd = pe[0];
	po[0] = pe[0] = -1;
	jlog(r, LOOM_LOG_INFO, "started %s (pid %ld) in %s", file, (long)r->pid, dir);
out:
	for (int i = 0; i < 2; i++) {
		if (po[i] >= 0)
			close(po[i]);
		if (pe[i] >= 0)
			close(pe[i]);
	}
	env_free(&env);
	free(argv);
	free(file);
	free(dir);
	return rv;
}

/* ------------------------------------------------------------------ ending */

static const char *
signal_name(int sig)
{
	static const struct {
		int sig;
		const char *name;
	} names[] = {
		{SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"}, {SIGILL, "SIGILL"},
		{SIGTRAP, "SIGTRAP"}, {SIGABRT, "SIGABRT"}, {SIGBUS, "SIGBUS"},   {SIGFPE, "SIGFPE"},
		{SIGKILL, "SIGKILL"}, {SIGUSR1, "SIGUSR1"}, {SIGSEGV, "SIGSEGV"}, {SIGUSR2, "SIGUSR2"},
		{SIGPIPE, "SIGPIPE"}, {SIGALRM, "SIGALRM"}, {SIGTERM, "SIGTERM"}, {SIGXCPU, "SIGXCPU"},
		{SIGXFSZ, "SIGXFSZ"}, {SIGSYS, "SIGSYS"},
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (names[i].sig == sig)
			return names[i].name;
	return strsignal(sig);
}

/* How the command ended, as the job's result code. */
static int
outcome(run *r)
{
	char tail[600] = "";

	if (r->stop == STOP_TIMEOUT)
		return LOOM_ETIMEDOUT;
	if (r->stop != STOP_NONE)
		return LOOM_ECANCELED;
	if (r->status_known && WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0)
		return 0;
	if (r->last_err)
		snprintf(tail, sizeof tail, "; its last line on stderr: %.500s", r->last_err);
	if (!r->status_known)
		jlog(r, LOOM_LOG_ERROR, "%s ended with an unknown status (SIGCHLD is ignored)%s",
		     r->program, tail);
	else if (WIFEXITED(r->status))
		jlog(r, LOOM_LOG_ERROR, "%s exited with status %d%s", r->program,
		     WEXITSTATUS(r->status), tail);
	else
		jlog(r, LOOM_LOG_ERROR, "%s was killed by signal %d (%s)%s%s", r->program,
		     WTERMSIG(r->status), signal_name(WTERMSIG(r->status)),
		     WTERMSIG(r->status) == SIGKILL ? ", perhaps by the kernel for lack of memory"
		                                    : "",
		     tail);
	return LOOM_EIO;
}

/* out_dir/exec.json: how the run ended. */
static void
write_record(run *r, int rv)
{
	const loom_job *job = r->job;
	bool exited = r->status_known && WIFEXITED(r->status);
	bool signaled = r->status_known && WIFSIGNALED(r->status);
	char *path, *tmp;
	json_t *rec;

	rec = json_pack("{s:O, s:o, s:o, s:f, s:O, s:s}",
	                "command", r->sp.command,
	                "exit_status", exited ? json_integer(WEXITSTATUS(r->status)) : json_null(),
	                "signal", signaled ? json_integer(WTERMSIG(r->status)) : json_null(),
	                "duration_s", r->reaped ? (double)(r->ended_ns - r->started_ns) / 1e9 : 0.0,
	                "last_metrics", r->last_metrics,
	                "result", rv == 0                ? "completed"
	                          : rv == LOOM_ECANCELED ? "cancelled"
	                          : rv == LOOM_ETIMEDOUT ? "timed out"
	                                                 : "failed");
	if (rec && r->start_error)
		json_object_set_new(rec, "error", json_string(r->start_error));
	path = path_join(job->out_dir, "exec.json");
	tmp = path ? fmt("%s.tmp", path) : NULL;
	if (rec == NULL || tmp == NULL ||
	    json_dump_file(rec, tmp, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0 ||
	    rename(tmp, path) != 0) {
		jlog(r, LOOM_LOG_WARN, "cannot write %s: %s", path ? path : "exec.json",
		     strerror(errno));
		if (tmp)
			unlink(tmp);
	} else if (job->artifact) {
		job->artifact(job, "exec.json", path);
	}
	json_decref(rec);
	free(tmp);
	free(path);
}

/* ------------------------------------------------------------------ ops */

static int
exec_init(loom_instance *ins, const loom_host *host, void *p)
{
	ctx *c = p;
	c->host = host;
	c->ins = ins;
	host->log(ins, LOOM_LOG_DEBUG, "runs commands; stop grace %lld ms, lines up to %llu bytes",
	          (long long)c->default_stop_grace, (unsigned long long)c->max_line);
	return 0;
}

static int
exec_validate(void *p, const char *spec_json, char **error)
{
	ctx *c = p;
	char *msg = NULL;
	spec s;
	int rv = spec_parse(c, spec_json, &s, &msg);

	spec_free(&s);
	if (rv != 0 && msg && error) {
		size_t n = strlen(msg) + 1;
		if ((*error = c->host->alloc(n)) != NULL)
			memcpy(*error, msg, n);
	}
	free(msg);
	return rv;
}

static int
exec_run(void *p, const loom_job *job)
{
	ctx *c = p;
	char *msg = NULL;
	run r;
	int rv, ctl;

	memset(&r, 0, sizeof r);
	r.c = c;
	r.job = job;
	r.out.fd = r.err.fd = -1;
	r.out.is_stdout = true;
	if ((rv = spec_parse(c, job->spec_json, &r.sp, &msg)) != 0) {
		jlog(&r, LOOM_LOG_ERROR, "spec: %s", msg ? msg : loom_strerror(rv));
		free(msg);
		spec_free(&r.sp);
		return rv;
	}
	if (job->out_dir == NULL) {
		jlog(&r, LOOM_LOG_ERROR, "the worker gave the job no output directory");
		spec_free(&r.sp);
		return LOOM_EINVAL;
	}
	r.program = json_string_value(json_array_get(r.sp.command, 0));
	r.last_metrics = json_object();
	r.chunk = malloc(READ_CHUNK);
	r.out.line = malloc((size_t)c->max_line + 1);
	r.err.line = malloc((size_t)c->max_line + 1);
	if (r.last_metrics == NULL || r.chunk == NULL || r.out.line == NULL || r.err.line == NULL) {
		rv = LOOM_ENOMEM;
		goto out;
	}

	ctl = job->control ? job->control(job) : LOOM_CONTROL_RUN;
	if (ctl == LOOM_CONTROL_PAUSE)
		jlog(&r, LOOM_LOG_WARN, "compute-exec jobs cannot pause; stopping");
	if (ctl == LOOM_CONTROL_CANCEL || ctl == LOOM_CONTROL_PAUSE) {
		rv = LOOM_ECANCELED;
	} else if ((rv = start(&r)) == 0) {
		supervise(&r);
		rv = outcome(&r);
	}
	write_record(&r, rv);
out:
	if (r.out.fd >= 0)
		close(r.out.fd);
	if (r.err.fd >= 0)
		close(r.err.fd);
	free(r.out.line);
	free(r.err.line);
	free(r.chunk);
	free(r.last_err);
	free(r.start_error);
	json_decref(r.last_metrics);
	spec_free(&r.sp);
	return rv;
}

static const loom_compute_ops ops = {
	.size = sizeof(loom_compute_ops),
	.caps = LOOM_COMPUTE_GPU, /* not RESUMABLE: a command cannot checkpoint for us */
	.validate = exec_validate,
	.run = exec_run,
};

LOOM_PLUGIN_DEFINE(compute_exec,
                   .kind = LOOM_KIND_COMPUTE,
                   .flags = LOOM_PLUGIN_THREAD_SAFE | LOOM_PLUGIN_RUNS_COMMANDS,
                   .name = "compute-exec",
                   .version = "1.0.0",
                   .description = "runs a command (a PyTorch script, any program) as a job",
                   .config = config,
                   .ctx_size = sizeof(ctx),
                   .init = exec_init,
                   .ops = &ops)

/* Jobs: the lifecycle table, the store, the scheduling loop and the
 * workers (see jobs.h for the whole story).
 *
 * One mutex (J->mtx) guards the jobs' rows and the table of live workers;
 * the HTTP handlers, the bus services and the loop each hold it for short,
 * non-blocking work (SQLite on a local file, posix_spawn, waitpid with
 * WNOHANG).  Nothing waits on a worker while holding it. */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <loom/compute.h>
#include <loom/scheduler.h>

#include "host/configs/configs.h"
#include "host/core/compute.h"
#include "host/core/log.h"
#include "host/core/plugins.h"
#include "host/core/util.h"
#include "host/datasets/datasets.h"
#include "host/registry/registry.h"
#include "host/server/events.h"
#include "host/server/store.h"
#include "tasks.h"

extern char **environ;

#define FINISH_GRACE_MS 10000
#define THREAD_ADDRESS_SPACE (320ull << 20) /* see memory_limit() */
#define MAX_LOG_MESSAGE 2000
#define FAIR_SHARE_WINDOW_MS (24 * 3600 * 1000LL)
#define USAGE_SAVE_MS 5000
#define PLAN_GAP_MS 20

/* A live worker process. */
typedef struct run {
	int64_t job;
	int attempt;
	pid_t pid;
	int64_t started_ms, last_seen_ms, timeout_ms;
	int control;            /* loom_control sent with each report reply */
	bool requeue;           /* a pause by preemption or shutdown: resume later */
	bool timed_out;
	char *why;              /* why it was asked to pause or cancel */
	char *result;           /* from job.finish: completed, paused, cancelled, failed */
	char *error;
	int64_t finished_ms;
	int64_t usage_saved_ms;
	loom_resources alloc;
	/* stopping it: when loomd asked (cancel, pause, timeout, shutdown),
	 * sent its processes SIGTERM and SIGKILL; 0 when not (yet) */
	int64_t stop_asked_ms, term_ms, kill_ms;
	bool silent;            /* killed for sending nothing (heartbeat) */
	bool over_memory;       /* went beyond its memory request */
	uint64_t max_rss;       /* its own peak resident memory, as it reported */
	uint64_t as_limit;      /* its RLIMIT_AS (no cgroup), 0: none */
	char *cgroup;           /* its cgroup v2 directory, or NULL */
} run;

/* A worker left by a loomd that died, being stopped. */
typedef struct orphan {
	int64_t job;
	pid_t pid;
	int64_t since_ms;
	bool killed;
} orphan;

typedef struct loomi_jobs {
	loomi_daemon *d;
	orphan *orphans;
	size_t n_orphans;
	pthread_mutex_t mtx;
	pthread_cond_t cond;
	pthread_t thread;
	bool thread_up, stopping, kicked;
	run *runs;
	size_t n_runs, cap_runs;
	char *worker;           /* the loom-worker program */
	char *bus_addr;         /* what workers connect to */
	char *jobs_dir;         /* STATE_DIR/jobs */
	loom_instance *sched;
	const loom_scheduler_ops *sched_ops;
	void *sched_ctx;
	loom_resources total;
	char node_name[64];
	char *cgroup_base;      /* a delegated cgroup v2 with memory control, or NULL */
} loomi_jobs;

static loomi_jobs *J; /* one loomd, one jobs service */

/* What GET /metrics reads (loomi_jobs_stats_read): relaxed atomics. */
static struct {
	uint64_t transitions[LOOMI_JOB_STATES + 1];
	int64_t workers;
	loomi_histogram plan;
} S;

/* Plans take microseconds to seconds: 10 µs to 10 s. */
static const double plan_bounds[] = {
	0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025,   0.05,     0.1,     0.25,   0.5,     1,      2.5,   5,      10,
};

/* ------------------------------------------------------------------ states */

bool
loomi_job_transition_ok(uint32_t from, uint32_t to)
{
	switch (from) {
	case LOOM_JOB_PENDING:
		return to == LOOM_JOB_RUNNING || to == LOOM_JOB_CANCELLED || to == LOOM_JOB_FAILED;
	case LOOM_JOB_RUNNING:
		/* pending again: a retry after a failure, or recovery after a crash */
		return to == LOOM_JOB_PAUSED || to == LOOM_JOB_COMPLETED || to == LOOM_JOB_FAILED ||
		       to == LOOM_JOB_CANCELLED || to == LOOM_JOB_PENDING;
	case LOOM_JOB_PAUSED:
		return to == LOOM_JOB_RUNNING || to == LOOM_JOB_CANCELLED || to == LOOM_JOB_FAILED;
	default:
		return false; /* completed, failed and cancelled are final */
	}
}

int64_t
loomi_job_id_parse(const char *text)
{
	char *end;
	long long v;

	if (strncmp(text, "task-", 5) == 0)
		text += 5;
	if (*text < '1' || *text > '9')
		return 0;
	errno = 0;
	v = strtoll(text, &end, 10);
	return (*end || errno) ? 0 : v;
}

/* ------------------------------------------------------------------ store helpers */

static sqlite3 *
db(void)
{
	return J->d->store.db;
}

/* Prepared statements are kept and reused: parsing one takes SQLite tens
 * of microseconds, a third of a submission's time.  prep() hands out a
 * kept statement not in use (or a new one, kept while there is room);
 * unprep() resets it for the next user, or finalizes one not kept. */
#define KEPT_STATEMENTS 96

static struct {
	pthread_mutex_t mtx;
	size_t n;
	struct {
		uint64_t hash;
		sqlite3_stmt *st;
		bool busy;
	} v[KEPT_STATEMENTS];
} K = {.mtx = PTHREAD_MUTEX_INITIALIZER};

static uint64_t
sql_hash(const char *sql)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *sql; sql++)
		h = (h ^ (unsigned char)*sql) * 1099511628211ull;
	return h;
}

static sqlite3_stmt *
prep(const char *sql)
{
	sqlite3_stmt *st = NULL;
	uint64_t h = sql_hash(sql);

	pthread_mutex_lock(&K.mtx);
	for (size_t i = 0; i < K.n; i++) {
		if (K.v[i].hash == h && !K.v[i].busy && strcmp(sqlite3_sql(K.v[i].st), sql) == 0) {
			K.v[i].busy = true;
			pthread_mutex_unlock(&K.mtx);
			return K.v[i].st;
		}
	}
	pthread_mutex_unlock(&K.mtx);
	if (sqlite3_prepare_v3(db(), sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
		LOG_ERROR("jobs: cannot prepare \"%s\": %s", sql, sqlite3_errmsg(db()));
		sqlite3_finalize(st);
		return NULL;
	}
	pthread_mutex_lock(&K.mtx);
	if (K.n < KEPT_STATEMENTS) {
		K.v[K.n].hash = h;
		K.v[K.n].st = st;
		K.v[K.n].busy = true;
		K.n++;
	}
	pthread_mutex_unlock(&K.mtx);
	return st;
}

static void
unprep(sqlite3_stmt *st)
{
	if (st == NULL)
		return;
	pthread_mutex_lock(&K.mtx);
	for (size_t i = 0; i < K.n; i++) {
		if (K.v[i].st == st) {
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			K.v[i].busy = false;
			pthread_mutex_unlock(&K.mtx);
			return;
		}
	}
	pthread_mutex_unlock(&K.mtx);
	sqlite3_finalize(st);
}

/* Finalize the kept statements (before the store closes). */
static void
unprep_all(void)
{
	pthread_mutex_lock(&K.mtx);
	for (size_t i = 0; i < K.n; i++)
		sqlite3_finalize(K.v[i].st);
	K.n = 0;
	pthread_mutex_unlock(&K.mtx);
}

/* Writes report their outcome to the store (store.h): a failure is noted
 * for the answer (loomi_store_errmsg) and /health, and logged once and
 * then counted, not once per tick while the disk is full. */
static int
exec_sql(const char *sql)
{
	sqlite3_stmt *st = prep(sql);
	int rc = st ? sqlite3_step(st) : SQLITE_ERROR;

	unprep(st);
	return loomi_store_wrote(db(), rc);
}

static int
step_done(sqlite3_stmt *st)
{
	int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
	unprep(st);
	return loomi_store_wrote(db(), rc);
}

static uint32_t
job_state(int64_t id)
{
	sqlite3_stmt *st = prep("SELECT state FROM jobs WHERE id = ?");
	uint32_t s = 0;
	sqlite3_bind_int64(st, 1, id);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		s = loom_job_state_parse((const char *)sqlite3_column_text(st, 0));
	unprep(st);
	return s;
}

static void
publish(const char *topic, json_t *body)
{
	if (J->d->bus)
		loomi_bus_publish_json(J->d->bus, topic, "loomd", body);
	json_decref(body);
}

/* Move job id to state to, recording why; the caller checked legality.
 * LOOM_EIO when it could not be stored (nothing changed): a client's
 * request answers so; loomd's own transitions go through transition(),
 * which keeps them until they are stored. */
static int
store_transition(int64_t id, uint32_t to, const char *reason)
{
	uint32_t from = job_state(id);
	int64_t now = loomi_wall_ms();
	sqlite3_stmt *st;
	const char *to_name = loom_job_state_name(to), *from_name = loom_job_state_name(from);

	if (!loomi_job_transition_ok(from, to)) {
		LOG_ERROR("jobs: task-%lld: %s → %s is not a legal transition (a bug)", (long long)id,
		          from_name ? from_name : "?", to_name);
		return LOOM_EINTERNAL;
	}
	/* the connection is shared with other modules' threads: hold its
	 * mutex so none of their statements lands inside this transaction */
	sqlite3_mutex_enter(sqlite3_db_mutex(db()));
	/* a savepoint: on its own a transaction, inside schedule()'s batch a
	 * nested one */
	if (exec_sql("SAVEPOINT transition") != 0) {
		sqlite3_mutex_leave(sqlite3_db_mutex(db()));
		return LOOM_EIO;
	}
	st = prep("UPDATE jobs SET state = ?2, updated_at = ?3,"
	          " started_at = CASE WHEN ?2 = 'running' AND started_at IS NULL THEN ?3"
	          "              ELSE started_at END,"
	          " finished_at = CASE WHEN ?2 IN ('completed','failed','cancelled') THEN ?3"
	          "               ELSE finished_at END,"
	          " error = CASE WHEN ?2 = 'failed' THEN ?4 ELSE error END,"
	          " waiting_reason = CASE WHEN ?2 IN ('pending','paused') THEN waiting_reason"
	          "                  ELSE '' END"
	          " WHERE id = ?1");
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_text(st, 2, to_name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now);
	sqlite3_bind_text(st, 4, reason, -1, SQLITE_STATIC);
	if (step_done(st) != 0)
		goto fail;
	st = prep("INSERT INTO job_events (job_id, at, from_state, to_state, reason)"
	          " VALUES (?, ?, ?, ?, ?)");
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_text(st, 3, from_name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, to_name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, reason, -1, SQLITE_STATIC);
	if (step_done(st) != 0 || exec_sql("RELEASE transition") != 0)
		goto fail;
	sqlite3_mutex_leave(sqlite3_db_mutex(db()));
	if (to <= LOOMI_JOB_STATES)
		__atomic_fetch_add(&S.transitions[to], 1, __ATOMIC_RELAXED);
	LOG_INFO("task-%lld: %s → %s%s%s", (long long)id, from_name, to_name, reason[0] ? ": " : "",
	         reason);
	{
		/* stored: the modules hear of it (alerts, tracking, the registry),
		 * then the bus, so whoever sees the event finds their work queued */
		loomi_event ev = {.kind = LOOMI_EV_JOB_STATE, .job = id};
		char tid[32];
		ev.u.state.from = from_name;
		ev.u.state.to = to_name;
		ev.u.state.reason = reason;
		loomi_events_emit(&ev);
		snprintf(tid, sizeof tid, "task-%lld", (long long)id);
		publish("job.state", json_pack("{s:s, s:I, s:s, s:s, s:s, s:I}", "task_id", tid,
		                               "id", (json_int_t)id, "from", from_name, "status",
		                               to_name, "reason", reason, "time", (json_int_t)now));
	}
	return 0;
fail:
	exec_sql("ROLLBACK TO transition");
	exec_sql("RELEASE transition");
	sqlite3_mutex_leave(sqlite3_db_mutex(db()));
	return LOOM_EIO;
}

static int
store_int(int64_t id, const char *column, int64_t v)
{
	char *sql = loomi_strfmt("UPDATE jobs SET %s = ?, updated_at = ? WHERE id = ?", column);
	sqlite3_stmt *st = prep(sql);
	int rv;
	sqlite3_bind_int64(st, 1, v);
	sqlite3_bind_int64(st, 2, loomi_wall_ms());
	sqlite3_bind_int64(st, 3, id);
	rv = step_done(st);
	free(sql);
	return rv;
}

static int
store_text(int64_t id, const char *column, const char *v)
{
	char *sql = loomi_strfmt("UPDATE jobs SET %s = ? WHERE id = ?", column);
	sqlite3_stmt *st = prep(sql);
	int rv;
	sqlite3_bind_text(st, 1, v, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 2, id);
	rv = step_done(st);
	free(sql);
	return rv;
}

/* ------------------------------------------------------------------ changes kept until stored */

/* What loomd itself decides about a task (a worker finished, failed, was
 * reaped, could not start; a dependency failed) happened whether or not
 * the store can write: the worker is gone.  A change that could not be
 * stored is kept here, in order, and tried again every tick of the loop
 * until it is (retry_unstored); a later change of the same task queues
 * behind it.  Guarded by J->mtx. */
typedef struct unstored {
	struct unstored *next;
	int64_t job;
	enum { CHANGE_STATE, CHANGE_INT, CHANGE_TEXT } kind;
	uint32_t to;        /* CHANGE_STATE */
	char *column;       /* CHANGE_INT, CHANGE_TEXT */
	int64_t v;          /* CHANGE_INT */
	char *text;         /* CHANGE_TEXT: the value; CHANGE_STATE: the reason */
} unstored;

static struct {
	unstored *head, **tail;
	size_t n;
} U = {NULL, &U.head, 0};

static bool
has_unstored(int64_t id)
{
	for (unstored *c = U.head; c; c = c->next)
		if (c->job == id)
			return true;
	return false;
}

static int
apply(const unstored *c)
{
	switch (c->kind) {
	case CHANGE_STATE: return store_transition(c->job, c->to, c->text);
	case CHANGE_INT: return store_int(c->job, c->column, c->v);
	default: return store_text(c->job, c->column, c->text);
	}
}

static void
unstored_free(unstored *c)
{
	free(c->column);
	free(c->text);
	free(c);
}

/* Store c now, or keep it (taking it) when it cannot be or when an earlier
 * change of its task waits. */
static void
change(unstored *c)
{
	int rv = has_unstored(c->job) ? LOOM_EIO : apply(c);

	if (rv != LOOM_EIO) { /* stored, or refused for good (logged: a bug) */
		unstored_free(c);
		return;
	}
	if (c->kind == CHANGE_STATE)
		LOG_ERROR_LIMITED("task-%lld: its move to %s could not be stored yet; loomd keeps it "
		                  "and retries every tick until it is (see /api/v1/health)",
		                  (long long)c->job, loom_job_state_name(c->to));
	c->next = NULL;
	*U.tail = c;
	U.tail = &c->next;
	U.n++;
}

/* Store what waits, in order per task; a task whose oldest change still
 * fails keeps the rest of its changes waiting. */
static void
retry_unstored(void)
{
	int64_t blocked[64];
	size_t n_blocked = 0;
	unstored **pp = &U.head;

	while (*pp) {
		unstored *c = *pp;
		bool wait = false;
		int rv;
		for (size_t i = 0; i < n_blocked && !wait; i++)
			wait = blocked[i] == c->job;
		if (wait) {
			pp = &c->next;
			continue;
		}
		if ((rv = apply(c)) == LOOM_EIO) {
			if (n_blocked == 64)
				return; /* the rest waits for the next tick, in order */
			blocked[n_blocked++] = c->job;
			pp = &c->next;
			continue;
		}
		if (rv == 0 && c->kind == CHANGE_STATE)
			LOG_INFO("task-%lld: its move to %s, kept while the state database could not "
			         "write, is stored",
			         (long long)c->job, loom_job_state_name(c->to));
		*pp = c->next;
		U.n--;
		unstored_free(c);
	}
	U.tail = pp;
}

/* loomd's own changes (never a client's: a client is answered 503). */
static void
transition(int64_t id, uint32_t to, const char *reason)
{
	unstored *c = loomi_xcalloc(1, sizeof *c);
	c->job = id;
	c->kind = CHANGE_STATE;
	c->to = to;
	c->text = loomi_strdup(reason);
	change(c);
}

static void
set_int(int64_t id, const char *column, int64_t v)
{
	unstored *c = loomi_xcalloc(1, sizeof *c);
	c->job = id;
	c->kind = CHANGE_INT;
	c->column = loomi_strdup(column);
	c->v = v;
	change(c);
}

static void
set_text(int64_t id, const char *column, const char *v)
{
	unstored *c = loomi_xcalloc(1, sizeof *c);
	c->job = id;
	c->kind = CHANGE_TEXT;
	c->column = loomi_strdup(column);
	c->text = loomi_strdup(v);
	change(c);
}

/* Set why a job waits; no write when it is unchanged (the loop says it again
 * every tick). */
static void
set_reason(int64_t id, const char *why)
{
	sqlite3_stmt *st = prep("UPDATE jobs SET waiting_reason = ?1 WHERE id = ?2"
	                        " AND waiting_reason <> ?1");
	sqlite3_bind_text(st, 1, why, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 2, id);
	step_done(st);
}

/* A line of the job's log from loomd itself (the worker's own lines carry
 * their instance); stored by logs.c's writer, never waiting on it. */
static void
add_log(int64_t id, int level, const char *msg)
{
	loomi_event ev = {.kind = LOOMI_EV_JOB_LOG, .job = id};
	ev.u.log.instance = "loomd";
	ev.u.log.level = level;
	ev.u.log.message = msg;
	loomi_events_emit(&ev);
}

/* ------------------------------------------------------------------ the workers' table */

static run *
run_find(int64_t job)
{
	for (size_t i = 0; i < J->n_runs; i++)
		if (J->runs[i].job == job)
			return &J->runs[i];
	return NULL;
}

static void
run_remove(run *r)
{
	if (r->cgroup && rmdir(r->cgroup) != 0 && errno != ENOENT)
		LOG_WARN("jobs: cannot remove the cgroup %s: %s", r->cgroup, strerror(errno));
	free(r->cgroup);
	free(r->why);
	free(r->result);
	free(r->error);
	if (r->pid > 0)
		__atomic_fetch_sub(&S.workers, 1, __ATOMIC_RELAXED);
	*r = J->runs[--J->n_runs];
}

/* ------------------------------------------------------------------ stopping workers */

/* Send sig to every live process of session sid: a worker leads a session
 * of its own (spawn_process), which holds what it started even in process
 * groups of their own (compute-exec's command) and outlives the worker.
 * Linux lists them in /proc; elsewhere the worker's process group gets it.
 * Returns how many processes besides the leader got it. */
static int
signal_session(pid_t sid, int sig)
{
	DIR *dp;
	struct dirent *e;
	int n = 0;

	if (sid <= 1)
		return 0;
	kill(-sid, sig);
	if ((dp = opendir("/proc")) == NULL)
		return 0;
	while ((e = readdir(dp)) != NULL) {
		char path[64], buf[512], *p, state;
		int ppid, pgrp, session, fd;
		ssize_t len;
		pid_t pid = (pid_t)atoi(e->d_name);
		if (pid <= 1 || pid == sid)
			continue;
		snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			continue;
		len = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (len <= 0)
			continue;
		buf[len] = '\0';
		/* "pid (comm) state ppid pgrp session ...": comm may hold anything */
		if ((p = strrchr(buf, ')')) == NULL ||
		    sscanf(p + 1, " %c %d %d %d", &state, &ppid, &pgrp, &session) != 4)
			continue;
		if (session == (int)sid && state != 'Z' && state != 'X' && kill(pid, sig) == 0)
			n++;
	}
	closedir(dp);
	return n;
}

/* "64M", "1.5G": a size as people write it. */
static char *
size_text(uint64_t b)
{
	static const char units[] = "KMGT";
	double v = (double)b;
	int u = -1;

	if (b < 1024)
		return loomi_strfmt("%lluB", (unsigned long long)b);
	while (v >= 1024 && u < 3) {
		v /= 1024;
		u++;
	}
	return v == (double)(uint64_t)v ? loomi_strfmt("%llu%c", (unsigned long long)v, units[u])
	                                : loomi_strfmt("%.1f%c", v, units[u]);
}

/* "10 s", "1.5 s" */
static char *
secs_text(int64_t ms)
{
	return ms % 1000 == 0 ? loomi_strfmt("%lld s", (long long)(ms / 1000))
	                      : loomi_strfmt("%.1f s", (double)ms / 1000.0);
}

/* Ask r's worker to stop (a LOOM_CONTROL_PAUSE or _CANCEL, sent with the
 * reply to its next report), for reason why (taken).  If it has not
 * stopped jobs.stop_grace later, reap() sends its processes SIGTERM, and
 * SIGKILL a grace after that: a worker stuck where it never reports (a
 * loop in a parser) is stopped all the same. */
static void
ask_stop(run *r, int control, char *why)
{
	r->control = control;
	free(r->why);
	r->why = why;
	if (r->stop_asked_ms == 0)
		r->stop_asked_ms = loomi_wall_ms();
}

/* What loomd did to stop r's worker, appended to the reason it ended:
 * "; the worker did not stop within 10 s and was terminated (SIGTERM)". */
static char *
stop_story(const run *r, const char *why)
{
	char *g = secs_text(J->d->conf.jobs_stop_grace_ms), *out, *after;

	if (r->kill_ms) {
		after = secs_text(r->kill_ms - r->stop_asked_ms);
		out = loomi_strfmt("%s; the worker did not stop within %s, nor %s after SIGTERM, and "
		                   "was killed (SIGKILL) %s after the request",
		                   why, g, g, after);
		free(after);
	} else if (r->term_ms) {
		out = loomi_strfmt("%s; the worker did not stop within %s and was terminated "
		                   "(SIGTERM)",
		                   why, g);
	} else {
		out = loomi_strdup(why);
	}
	free(g);
	return out;
}

/* Stop r's worker for going beyond its memory request (peak bytes). */
static void
over_memory(run *r, uint64_t peak)
{
	char *req = size_text(r->alloc.memory), *pk = size_text(peak);

	r->over_memory = true;
	if (peak > r->max_rss)
		r->max_rss = peak;
	free(r->error);
	r->error = loomi_strfmt("exceeded its memory request (%s): peak %s", req, pk);
	free(req);
	free(pk);
}

/* ------------------------------------------------------------------ memory */

/* A worker's memory request is enforced with the cgroup v2 memory
 * controller where loomd runs in a delegated cgroup of its own (systemd's
 * Delegate=yes): each worker gets a child cgroup whose memory.max is its
 * allotment, and the kernel stops it there (memory.events counts the
 * kill).  Elsewhere RLIMIT_AS bounds its address space at
 * memory_limit(), and loomd stops a worker whose own peak (VmHWM, in its
 * reports) goes beyond the request. */

static int
write_text(const char *dir, const char *file, const char *text)
{
	char *path = loomi_path_join(dir, file);
	int fd = open(path, O_WRONLY | O_CLOEXEC), rv = 0;
	size_t n = strlen(text);

	if (fd < 0 || write(fd, text, n) != (ssize_t)n)
		rv = errno ? errno : EIO;
	if (fd >= 0)
		close(fd);
	free(path);
	return rv;
}

/* A number from a cgroup file: "KEY N" lines with key, else the first. */
static uint64_t
read_value(const char *dir, const char *file, const char *key)
{
	char *path = loomi_path_join(dir, file), *text = NULL, *p;
	uint64_t v = 0;

	if (loomi_read_file(path, &text, NULL) == 0) {
		p = text;
		if (key) {
			size_t n = strlen(key);
			for (p = text; p && !(strncmp(p, key, n) == 0 && p[n] == ' ');
			     p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
				;
			p = p ? p + strlen(key) : NULL;
		}
		if (p)
			v = strtoull(p, NULL, 10);
	}
	free(text);
	free(path);
	return v;
}

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

/* Can loomd give workers cgroups with memory.max?  Where it is alone in a
 * writable cgroup v2 with the memory controller, it moves itself into a
 * leaf "loomd" below it (a cgroup with processes cannot delegate
 * controllers) and enables memory for the workers' cgroups beside it. */
static void
cgroup_setup(void)
{
	char *text = NULL, *base = NULL, *procs = NULL, *leaf = NULL, *ctl = NULL;
	struct statfs fs;
	const char *line;

	if (statfs("/sys/fs/cgroup", &fs) != 0 || fs.f_type != CGROUP2_SUPER_MAGIC ||
	    loomi_read_file("/proc/self/cgroup", &text, NULL) != 0 ||
	    (line = strstr(text, "0::/")) == NULL)
		goto out;
	text[strcspn(text, "\n")] = '\0';
	base = loomi_strfmt("/sys/fs/cgroup%s", line + 3);
	if (strcmp(base + strlen(base) - 6, "/loomd") == 0) /* a loomd before this one */
		base[strlen(base) - 6] = '\0';
	free(text);
	text = NULL;
	ctl = loomi_path_join(base, "cgroup.controllers");
	if (loomi_read_file(ctl, &text, NULL) != 0 || strstr(text, "memory") == NULL ||
	    access(base, W_OK) != 0)
		goto out;
	free(text);
	text = NULL;
	procs = loomi_path_join(base, "cgroup.procs");
	char self[32];
	snprintf(self, sizeof self, "%d\n", (int)getpid());
	if (loomi_read_file(procs, &text, NULL) == 0 && strcmp(text, self) == 0) {
		/* loomd alone in it: into the leaf */
		leaf = loomi_path_join(base, "loomd");
		if ((mkdir(leaf, 0755) != 0 && errno != EEXIST) || write_text(leaf, "cgroup.procs", "0"))
			goto out;
	}
	if (write_text(base, "cgroup.subtree_control", "+memory") != 0)
		goto out;
	J->cgroup_base = base;
	base = NULL;
	LOG_INFO("jobs: workers' memory requests enforced by cgroup v2 under %s", J->cgroup_base);
out:
	if (J->cgroup_base == NULL)
		LOG_INFO("jobs: no delegated cgroup v2 with the memory controller; workers' memory "
		         "requests are enforced with RLIMIT_AS (request + jobs.memory_headroom + "
		         "%llu MiB a thread) and their reported peak",
		         (unsigned long long)(THREAD_ADDRESS_SPACE >> 20));
	free(text);
	free(base);
	free(procs);
	free(leaf);
	free(ctl);
}

/* The address space a worker with a memory request may reserve: a worker
 * reserves much more than it touches (libraries, thread stacks, malloc's
 * per-thread arenas, OpenBLAS's buffers): measured, a loom-worker training
 * a small model peaks at 17 MB resident and 330 MB virtual on one thread,
 * 2.4 GB virtual on eight.  So: the request, jobs.memory_headroom (512M),
 * and 320 MiB a thread. */
static uint64_t
memory_limit(uint64_t request, uint32_t threads)
{
	return request + J->d->conf.jobs_memory_headroom +
	       (uint64_t)(threads ? threads : 1) * THREAD_ADDRESS_SPACE;
}

static char *
job_dir(int64_t id)
{
	return loomi_strfmt("%s/task-%lld", J->jobs_dir, (long long)id);
}

/* Does the job's directory hold a checkpoint to resume from? */
static bool
has_checkpoint(int64_t id)
{
	char *dir = job_dir(id), *ck = loomi_path_join(dir, "checkpoints");
	DIR *dp = opendir(ck);
	struct dirent *e;
	bool found = false;

	while (dp && (e = readdir(dp)) != NULL) {
		size_t n = strlen(e->d_name);
		if (n > 5 && strcmp(e->d_name + n - 5, ".ckpt") == 0)
			found = true;
	}
	if (dp)
		closedir(dp);
	free(ck);
	free(dir);
	return found;
}

/* Start a worker's process (called without the jobs mutex: posix_spawn
 * waits until the child has exec'ed, which takes long on a loaded machine). */
static int
spawn_process(int64_t id, int attempt, uint32_t threads, uint64_t memory, pid_t *pid,
              char **cgroup, uint64_t *as_limit, char **why)
{
	char *dir = job_dir(id), *log = loomi_path_join(dir, "worker.log");
	char ids[32], att[32], thr[32], lim[32];
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	int rv;
	char *argv[] = {J->worker, "--connect", J->bus_addr, "--job", ids, "--attempt", att,
	                "--threads", thr, "-c", J->d->conf.path, "--state-dir",
	                J->d->conf.state_dir, NULL, NULL, NULL};

	snprintf(ids, sizeof ids, "%lld", (long long)id);
	snprintf(att, sizeof att, "%d", attempt);
	snprintf(thr, sizeof thr, "%u", threads ? threads : 1);
	*cgroup = NULL;
	*as_limit = 0;
	if (memory > 0 && J->cgroup_base) {
		/* its own cgroup, limited before the worker joins it */
		char *cg = loomi_strfmt("%s/task-%lld.%d", J->cgroup_base, (long long)id, attempt);
		char max[32];
		snprintf(max, sizeof max, "%llu", (unsigned long long)memory);
		if ((mkdir(cg, 0755) == 0 || errno == EEXIST) && write_text(cg, "memory.max", max) == 0) {
			write_text(cg, "memory.swap.max", "0"); /* where swap is accounted */
			*cgroup = cg;
		} else {
			LOG_WARN("task-%lld: cannot set up the cgroup %s (%s); enforcing its memory "
			         "request with RLIMIT_AS",
			         (long long)id, cg, strerror(errno));
			rmdir(cg);
			free(cg);
		}
	}
	if (memory > 0 && *cgroup == NULL) {
		/* loom-worker --memory-limit: RLIMIT_AS set before it loads anything */
		*as_limit = memory_limit(memory, threads);
		snprintf(lim, sizeof lim, "%llu", (unsigned long long)*as_limit);
		argv[13] = "--memory-limit";
		argv[14] = lim;
	}
	if ((rv = loomi_mkdir_p(dir, 0750)) != 0) {
		*why = loomi_strfmt("cannot create %s: %s", dir, strerror(rv));
		free(dir);
		free(log);
		return LOOM_EIO;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0640);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawnattr_init(&at);
	sigemptyset(&none);
	sigfillset(&all);
	/* its own session, so its own process group (a Ctrl-C at loomd's
	 * terminal is loomd's to handle), which also holds what it starts in
	 * groups of their own (signal_session); default signal dispositions
	 * and no blocked signals */
#ifdef POSIX_SPAWN_SETSID
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
	                                  POSIX_SPAWN_SETSIGDEF);
#else
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
	                                  POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setpgroup(&at, 0);
#endif
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	rv = posix_spawn(pid, J->worker, &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	free(log);
	free(dir);
	if (rv == 0 && *cgroup) {
		/* posix_spawn returns once the worker has exec'ed: it joins its
		 * cgroup before it has attached, let alone loaded a plugin */
		char p[32];
		snprintf(p, sizeof p, "%d", (int)*pid);
		if (write_text(*cgroup, "cgroup.procs", p) != 0)
			LOG_WARN("task-%lld: cannot move worker %d into %s: %s; its memory request is "
			         "not enforced",
			         (long long)id, (int)*pid, *cgroup, strerror(errno));
	}
	if (rv != 0) {
		if (*cgroup)
			rmdir(*cgroup);
		free(*cgroup);
		*cgroup = NULL;
		*why = loomi_strfmt("cannot start the worker %s: %s; set jobs.worker in the config "
		                    "to the loom-worker program",
		                    J->worker, strerror(rv));
		return LOOM_EIO;
	}
	return 0;
}

/* A job the plan started: its entry in the workers' table, pid 0 until
 * spawn_pending() has started the process. */
static void
add_run(int64_t id, int attempt, const loom_resources *alloc)
{
	if (J->n_runs == J->cap_runs) {
		J->cap_runs = J->cap_runs ? 2 * J->cap_runs : 16;
		J->runs = loomi_xrealloc(J->runs, J->cap_runs * sizeof *J->runs);
	}
	run *r = &J->runs[J->n_runs++];
	memset(r, 0, sizeof *r);
	r->job = id;
	r->attempt = attempt;
	r->started_ms = r->last_seen_ms = loomi_wall_ms();
	r->alloc = *alloc;
	{
		sqlite3_stmt *st = prep("SELECT timeout_ms FROM jobs WHERE id = ?");
		sqlite3_bind_int64(st, 1, id);
		if (st && sqlite3_step(st) == SQLITE_ROW)
			r->timeout_ms = sqlite3_column_int64(st, 0);
		unprep(st);
	}
}

static void
fail_dependants(int64_t id);

/* A worker process has exited with wait status ws: apply its outcome. */
static void
worker_exited(run *r, int ws)
{
	int64_t id = r->job, now = loomi_wall_ms();
	char *cause = NULL, *story;
	const char *result = r->result;
	/* loomd stopped it (SIGTERM, SIGKILL): its own story, not the signal's */
	bool stopped = r->stop_asked_ms && (r->term_ms || r->kill_ms) && !r->silent;

	if (r->cgroup && read_value(r->cgroup, "memory.events", "oom_kill") > 0) {
		/* the kernel stopped it at memory.max */
		uint64_t peak = read_value(r->cgroup, "memory.peak", NULL);
		over_memory(r, peak ? peak : r->max_rss);
	}
	if (r->max_rss > 0)
		set_int(id, "max_rss", (int64_t)r->max_rss); /* its last peak */
	if (r->over_memory) {
		result = "failed"; /* whatever it said, r->error says why */
	} else if (stopped && (result == NULL || strcmp(result, "failed") == 0)) {
		/* killed before it could say: what it was asked */
		result = r->control == LOOM_CONTROL_CANCEL ? "cancelled" : "paused";
	} else if (WIFSIGNALED(ws) && !r->silent) {
		char *lim = r->as_limit ? size_text(r->as_limit) : NULL;
		cause = loomi_strfmt("the worker was killed by signal %d (%s)%s%s%s", WTERMSIG(ws),
		                     strsignal(WTERMSIG(ws)),
		                     lim ? "; it ran with an address-space limit of " : "",
		                     lim ? lim : "", lim ? " for its memory request: too little?" : "");
		free(lim);
	} else if (result == NULL && !r->silent) {
		cause = loomi_strfmt("the worker exited with status %d without reporting how the "
		                     "run ended; see %s/task-%lld/worker.log",
		                     WEXITSTATUS(ws), J->jobs_dir, (long long)id);
	}
	if (result && strcmp(result, "paused") == 0 && r->control == LOOM_CONTROL_CANCEL)
		result = "cancelled"; /* it paused at SIGTERM, but was asked to cancel */
	set_int(id, "worker_pid", 0);
	if (J->stopping && result == NULL) {
		/* killed at shutdown: left running, recovered at the next start */
		free(cause);
		return;
	}
	story = stop_story(r, r->why ? r->why : "");
	if (stopped && strcmp(result, "paused") == 0) {
		/* killed: it wrote no checkpoint at the pause */
		char *more = loomi_strfmt("%s; it wrote no new checkpoint, so it resumes %s", story,
		                          has_checkpoint(id) ? "from its previous checkpoint"
		                                             : "from the start");
		free(story);
		story = more;
	}
	if (stopped) {
		free(r->why);
		r->why = story;
		story = NULL;
	}
	free(story);
	if (result && strcmp(result, "completed") == 0) {
		/* the registry hears of it inside the transition, under J->mtx:
		 * before anyone can see the task completed */
		transition(id, LOOM_JOB_COMPLETED, "");
	} else if (result && strcmp(result, "paused") == 0) {
		set_int(id, "queued", r->requeue ? 1 : 0);
		set_text(id, "waiting_reason", r->requeue ? (r->why ? r->why : "") : "paused");
		transition(id, LOOM_JOB_PAUSED, r->why ? r->why : "paused at a checkpoint");
	} else if (result && strcmp(result, "cancelled") == 0) {
		if (r->timed_out)
			transition(id, LOOM_JOB_FAILED, r->why ? r->why : "timed out");
		else
			transition(id, LOOM_JOB_CANCELLED, r->why ? r->why : "cancelled");
		fail_dependants(id);
	} else {
		/* failed: retry while the budget lasts (not over memory: it
		 * would be again) */
		const char *err = r->over_memory ? r->error
		                  : cause        ? cause
		                                 : (r->error ? r->error : "the run failed");
		sqlite3_stmt *st = prep("SELECT attempts, max_retries FROM jobs WHERE id = ?");
		int64_t attempts = 0, max_retries = 0;
		sqlite3_bind_int64(st, 1, id);
		if (st && sqlite3_step(st) == SQLITE_ROW) {
			attempts = sqlite3_column_int64(st, 0);
			max_retries = sqlite3_column_int64(st, 1);
		}
		unprep(st);
		add_log(id, LOOM_LOG_ERROR, err);
		if (attempts <= max_retries && !r->timed_out && !r->over_memory) {
			int64_t backoff = 1000LL << (attempts > 10 ? 10 : attempts - 1);
			char *why = loomi_strfmt("attempt %lld failed (%s); retry %lld of %lld after %lld s",
			                         (long long)attempts, err, (long long)attempts,
			                         (long long)max_retries, (long long)(backoff / 1000));
			set_int(id, "not_before", now + backoff);
			set_int(id, "queued", 1);
			set_text(id, "waiting_reason", why);
			transition(id, LOOM_JOB_PENDING, why);
			free(why);
		} else {
			transition(id, LOOM_JOB_FAILED,
			           r->timed_out && r->why && !r->over_memory ? r->why : err);
			fail_dependants(id);
		}
	}
	free(cause);
}

/* Fail (transitively) the jobs waiting on a failed or cancelled job. */
static void
fail_dependants(int64_t id)
{
	sqlite3_stmt *st = prep("SELECT d.job_id FROM job_deps d JOIN jobs j ON j.id = d.job_id"
	                        " WHERE d.after_id = ? AND j.state IN ('pending','paused')");
	int64_t ids[256];
	size_t n = 0;

	sqlite3_bind_int64(st, 1, id);
	while (st && sqlite3_step(st) == SQLITE_ROW && n < 256)
		ids[n++] = sqlite3_column_int64(st, 0);
	unprep(st);
	for (size_t i = 0; i < n; i++) {
		char *why = loomi_strfmt("task-%lld, which it runs after, did not complete",
		                         (long long)id);
		transition(ids[i], LOOM_JOB_FAILED, why);
		free(why);
		fail_dependants(ids[i]);
	}
}

static bool is_our_worker(pid_t pid, int64_t id);

static void
requeue_recovered(int64_t id)
{
	set_int(id, "worker_pid", 0);
	set_int(id, "queued", 1);
	set_text(id, "waiting_reason", "recovered after loomd restarted");
	transition(id, LOOM_JOB_PENDING, "loomd restarted; resumes from its newest checkpoint");
}

/* Reap exited workers, enforce heartbeats and timeouts. */
static void
reap(void)
{
	int64_t now = loomi_wall_ms();

	for (size_t i = 0; i < J->n_orphans;) {
		orphan *o = &J->orphans[i];
		if (!is_our_worker(o->pid, o->job)) {
			LOG_INFO("task-%lld: the previous loomd's worker %d has stopped", (long long)o->job,
			         (int)o->pid);
			requeue_recovered(o->job);
			*o = J->orphans[--J->n_orphans];
			continue;
		}
		if (!o->killed && now - o->since_ms > 2 * J->d->conf.jobs_stop_grace_ms) {
			/* SIGTERM was the request (it checkpoints); twice the grace */
			LOG_WARN("task-%lld: worker %d did not stop within %lld ms of SIGTERM; killing "
			         "it and its processes (SIGKILL)",
			         (long long)o->job, (int)o->pid,
			         (long long)(2 * J->d->conf.jobs_stop_grace_ms));
			signal_session(o->pid, SIGKILL);
			o->killed = true;
		}
		i++;
	}

	for (size_t i = 0; i < J->n_runs;) {
		run *r = &J->runs[i];
		int ws;
		pid_t p;
		if (r->pid == 0) { /* being spawned */
			i++;
			continue;
		}
		p = waitpid(r->pid, &ws, WNOHANG);
		if (p == r->pid || (p < 0 && errno == ECHILD)) {
			if (p < 0)
				ws = 0;
			/* what it started goes with it when loomd stopped it (a
			 * command in a group of its own, left by a killed worker) */
			if ((r->term_ms || r->kill_ms || r->over_memory) &&
			    signal_session(r->pid, SIGKILL) > 0)
				LOG_WARN("task-%lld: killed what worker %d left running", (long long)r->job,
				         (int)r->pid);
			worker_exited(r, ws);
			run_remove(r);
			continue;
		}
		if (r->result && now - r->finished_ms > FINISH_GRACE_MS) {
			LOG_WARN("task-%lld: worker %d finished but did not exit; killing it",
			         (long long)r->job, (int)r->pid);
			signal_session(r->pid, SIGKILL);
		} else if (!r->result && !r->kill_ms &&
		           now - r->last_seen_ms > J->d->conf.jobs_heartbeat_ms) {
			LOG_WARN("task-%lld: worker %d silent for %lld ms; killing it", (long long)r->job,
			         (int)r->pid, (long long)(now - r->last_seen_ms));
			free(r->error);
			r->error = loomi_strfmt("the worker sent nothing for %lld s and was killed "
			                        "(SIGKILL)",
			                        (long long)(J->d->conf.jobs_heartbeat_ms / 1000));
			signal_session(r->pid, SIGKILL);
			r->silent = true;
			r->kill_ms = now;
		} else if (!r->result && r->stop_asked_ms && !r->kill_ms) {
			/* asked to stop and still running: SIGTERM after a grace, then
			 * SIGKILL after another (ask_stop) */
			int64_t grace = J->d->conf.jobs_stop_grace_ms;
			if (!r->term_ms && now - r->stop_asked_ms >= grace) {
				char *msg = loomi_strfmt("the worker did not stop within %lld ms of the "
				                         "request; sending its processes SIGTERM",
				                         (long long)grace);
				LOG_WARN("task-%lld: %s", (long long)r->job, msg);
				add_log(r->job, LOOM_LOG_WARN, msg);
				free(msg);
				r->term_ms = now;
				signal_session(r->pid, SIGTERM);
			} else if (r->term_ms && now - r->term_ms >= grace) {
				char *msg = loomi_strfmt("the worker did not stop within %lld ms of SIGTERM; "
				                         "killing its processes (SIGKILL)",
				                         (long long)grace);
				LOG_WARN("task-%lld: %s", (long long)r->job, msg);
				add_log(r->job, LOOM_LOG_WARN, msg);
				free(msg);
				r->kill_ms = now;
				signal_session(r->pid, SIGKILL);
			}
		}
		if (r->timeout_ms > 0 && !r->timed_out && now - r->started_ms > r->timeout_ms) {
			char *t = secs_text(r->timeout_ms);
			r->timed_out = true;
			ask_stop(r, LOOM_CONTROL_CANCEL, loomi_strfmt("timed out after %s (its timeout)", t));
			free(t);
		}
		i++;
	}
}

/* ------------------------------------------------------------------ scheduling */

static int64_t *
deps_of(int64_t id, uint32_t *n, bool *met)
{
	sqlite3_stmt *st = prep("SELECT d.after_id, j.state FROM job_deps d"
	                        " JOIN jobs j ON j.id = d.after_id WHERE d.job_id = ? ORDER BY 1");
	int64_t *v = NULL;
	size_t cap = 0;

	*n = 0;
	*met = true;
	sqlite3_bind_int64(st, 1, id);
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		if (*n == cap) {
			cap = cap ? 2 * cap : 4;
			v = loomi_xrealloc(v, cap * sizeof *v);
		}
		v[(*n)++] = sqlite3_column_int64(st, 0);
		if (strcmp((const char *)sqlite3_column_text(st, 1), "completed") != 0)
			*met = false;
	}
	unprep(st);
	return v;
}

/* Can a job on compute instance name pause at a checkpoint (and so be
 * preempted)?  A compute plugin without LOOM_COMPUTE_RESUMABLE
 * (compute-exec) stops the run when asked to pause: the job would be
 * cancelled. */
static bool
resumable(const char *name)
{
	loom_instance *ins = name ? loomi_instance_find(&J->d->plugins, name) : NULL;
	return ins == NULL || ins->kind != LOOM_KIND_COMPUTE ||
	       (((const loom_compute_ops *)ins->desc->ops)->caps & LOOM_COMPUTE_RESUMABLE);
}

/* Ask the scheduler plugin for a plan and carry it out. */
static void
schedule(void)
{
	sqlite3_stmt *st;
	loom_sched_job *jobs = NULL;
	size_t n = 0, cap = 0;
	loom_sched_node node;
	loom_sched_user *users = NULL;
	size_t n_users = 0;
	loom_sched_view view;
	loom_sched_action *acts;
	loom_sched_plan plan;
	int64_t now = loomi_wall_ms();
	char **names = NULL, *err = NULL;
	int64_t *started = NULL; /* the jobs this plan started */
	size_t n_started = 0;

	st = prep("SELECT id, name, user, priority, state, attempts, created_at,"
	          " coalesce(started_at, 0), not_before, cpu_millis, memory, gpu, preemptible,"
	          " compute"
	          " FROM jobs WHERE queued = 1 AND state IN ('pending','paused')"
	          " UNION ALL SELECT id, name, user, priority, state, attempts, created_at,"
	          " coalesce(started_at, 0), not_before, cpu_millis, memory, gpu, preemptible,"
	          " compute"
	          " FROM jobs WHERE state = 'running' ORDER BY 1");
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		loom_sched_job *j;
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			jobs = loomi_xrealloc(jobs, cap * sizeof *jobs);
			names = loomi_xrealloc(names, 2 * cap * sizeof *names);
		}
		j = &jobs[n];
		memset(j, 0, sizeof *j);
		j->id = sqlite3_column_int64(st, 0);
		names[2 * n] = loomi_strdup((const char *)sqlite3_column_text(st, 1));
		names[2 * n + 1] = loomi_strdup((const char *)sqlite3_column_text(st, 2));
		j->name = names[2 * n];
		j->user = names[2 * n + 1];
		j->priority = sqlite3_column_int(st, 3);
		j->state = loom_job_state_parse((const char *)sqlite3_column_text(st, 4));
		j->attempts = (uint32_t)sqlite3_column_int(st, 5);
		j->submitted_ms = sqlite3_column_int64(st, 6);
		j->not_before_ms = sqlite3_column_int64(st, 8);
		j->request.cpu_millis = (uint32_t)sqlite3_column_int64(st, 9);
		j->request.memory = (uint64_t)sqlite3_column_int64(st, 10);
		j->request.gpu = (uint32_t)sqlite3_column_int64(st, 11);
		if (sqlite3_column_int(st, 12) &&
		    resumable((const char *)sqlite3_column_text(st, 13)))
			j->flags |= LOOM_SCHED_JOB_PREEMPTIBLE;
		if (j->not_before_ms > now)
			j->flags |= LOOM_SCHED_JOB_BACKOFF;
		j->node = -1;
		j->flags |= LOOM_SCHED_JOB_DEPS_MET; /* until a dependency says otherwise */
		if (j->state == LOOM_JOB_RUNNING) {
			run *r = run_find(j->id);
			j->started_ms = sqlite3_column_int64(st, 7);
			j->node = 0;
			if (r) {
				j->alloc = r->alloc;
				j->started_ms = r->started_ms;
			} else {
				j->alloc = j->request;
			}
		}
		n++;
	}
	unprep(st);

	/* dependencies of all candidates in one query (jobs are in id order) */
	st = prep("SELECT d.job_id, d.after_id, a.state FROM job_deps d"
	          " JOIN jobs t ON t.id = d.job_id JOIN jobs a ON a.id = d.after_id"
	          " WHERE t.state IN ('pending','paused','running') ORDER BY d.job_id, d.after_id");
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		size_t lo = 0, hi = n;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (jobs[mid].id < id)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < n && jobs[lo].id == id) {
			loom_sched_job *j = &jobs[lo];
			int64_t *after = (int64_t *)j->after;
			after = loomi_xrealloc(after, (j->n_after + 1) * sizeof *after);
			after[j->n_after++] = sqlite3_column_int64(st, 1);
			j->after = after;
			if (strcmp((const char *)sqlite3_column_text(st, 2), "completed") != 0)
				j->flags &= ~LOOM_SCHED_JOB_DEPS_MET;
		}
	}
	unprep(st);

	memset(&node, 0, sizeof node);
	node.name = J->node_name;
	node.total = J->total;
	node.free = J->total;
	for (size_t i = 0; i < n; i++) {
		if (jobs[i].state != LOOM_JOB_RUNNING)
			continue;
		node.free.cpu_millis -= jobs[i].alloc.cpu_millis < node.free.cpu_millis
		                            ? jobs[i].alloc.cpu_millis
		                            : node.free.cpu_millis;
		node.free.memory -= jobs[i].alloc.memory < node.free.memory ? jobs[i].alloc.memory
		                                                            : node.free.memory;
		node.free.gpu -= jobs[i].alloc.gpu < node.free.gpu ? jobs[i].alloc.gpu : node.free.gpu;
		node.free.gpu_mask &= ~jobs[i].alloc.gpu_mask;
	}

	/* fair share: core-seconds each user ran in the last 24 hours */
	st = prep("SELECT user, sum(cpu_millis / 1000.0 * (min(coalesce(finished_at, ?1), ?1)"
	          " - max(started_at, ?1 - ?2)) / 1000.0) FROM jobs"
	          " WHERE started_at IS NOT NULL AND coalesce(finished_at, ?1) > ?1 - ?2"
	          " GROUP BY user ORDER BY user");
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_int64(st, 2, FAIR_SHARE_WINDOW_MS);
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		users = loomi_xrealloc(users, (n_users + 1) * sizeof *users);
		memset(&users[n_users], 0, sizeof *users);
		users[n_users].name = loomi_strdup((const char *)sqlite3_column_text(st, 0));
		users[n_users].weight = 1;
		users[n_users].usage = sqlite3_column_double(st, 1);
		n_users++;
	}
	unprep(st);

	memset(&view, 0, sizeof view);
	view.size = sizeof view;
	view.now_ms = now;
	view.n_jobs = n;
	view.jobs = jobs;
	view.n_nodes = 1;
	view.nodes = &node;
	view.n_users = n_users;
	view.users = users;
	acts = loomi_xcalloc(n + 1, sizeof *acts);
	plan.actions = acts;
	plan.cap = n + 1;
	plan.n = 0;

	/* one transaction for the plan's writes (many reasons, starts) */
	if (loomi_store_begin(db(), true, &err) != 0) {
		/* another writer held the database all along (said in the log):
		 * the next tick plans again */
		goto out;
	}
	if (J->sched_ops == NULL) {
		for (size_t i = 0; i < n; i++)
			if (jobs[i].state != LOOM_JOB_RUNNING)
				set_reason(jobs[i].id,
				           "no scheduler plugin instance is configured; add one (module "
				           "sched-local) to plugins in loomd.conf");
	} else if (n > 0) {
		uint64_t t0 = loomi_mono_ns();
		int rv = J->sched_ops->plan(J->sched_ctx, &view, &plan);
		loomi_histogram_observe(&S.plan, plan_bounds, sizeof plan_bounds / sizeof *plan_bounds,
		                        loomi_mono_ns() - t0);
		if (rv != 0)
			LOG_ERROR("jobs: the scheduler %s failed to plan: %s", J->sched->name,
			          loom_strerror(rv));
		for (size_t k = 0; rv == 0 && k < plan.n && k < plan.cap; k++) {
			loom_sched_action *a = &acts[k];
			uint32_t s = job_state(a->job_id);
			a->reason[sizeof a->reason - 1] = '\0';
			if (a->verb == LOOM_SCHED_WAIT) {
				set_reason(a->job_id, a->reason);
			} else if (a->verb == LOOM_SCHED_START &&
			           (s == LOOM_JOB_PENDING || s == LOOM_JOB_PAUSED) &&
			           run_find(a->job_id) == NULL) {
				/* a resume from a pause (on request, by preemption, at a
				 * loomd stop) continues the same attempt: attempts counts
				 * the first start and the retries, which max_retries
				 * bounds; the previous worker of the attempt has exited.
				 * Stored in the plan's transaction, or not started at all:
				 * the job stays queued for the next plan, its attempts as
				 * they were. */
				sqlite3_stmt *u;
				if (exec_sql("SAVEPOINT start") != 0)
					continue;
				u = prep(s == LOOM_JOB_PAUSED
				             ? "SELECT max(attempts, 1) FROM jobs WHERE id = ?"
				             : "UPDATE jobs SET attempts = attempts + 1 WHERE id = ?"
				               " RETURNING attempts");
				int attempt = 1, rc = SQLITE_ERROR;
				sqlite3_bind_int64(u, 1, a->job_id);
				if (u && (rc = sqlite3_step(u)) == SQLITE_ROW)
					attempt = sqlite3_column_int(u, 0);
				unprep(u);
				if (u && loomi_store_wrote(db(), rc) == 0 &&
				    store_int(a->job_id, "queued", 0) == 0 &&
				    store_transition(a->job_id, LOOM_JOB_RUNNING,
				                     s == LOOM_JOB_PAUSED
				                         ? "resumed from its checkpoint"
				                         : (attempt > 1 ? "started again" : "started")) == 0) {
					exec_sql("RELEASE start");
					add_run(a->job_id, attempt, &a->alloc); /* the loop spawns it */
					started = loomi_xrealloc(started, (n_started + 1) * sizeof *started);
					started[n_started++] = a->job_id;
				} else {
					exec_sql("ROLLBACK TO start");
					exec_sql("RELEASE start");
				}
			} else if (a->verb == LOOM_SCHED_PREEMPT && s == LOOM_JOB_RUNNING) {
				run *r = run_find(a->job_id);
				if (r && r->control == LOOM_CONTROL_RUN) {
					r->requeue = true;
					/* the scheduler's reason reads "preempted for job 2
					 * (priority 10 over 0)": no prefix of our own */
					ask_stop(r, LOOM_CONTROL_PAUSE,
					         loomi_strdup(a->reason[0] ? a->reason
					                                   : "preempted for a job of higher priority"));
				}
			}
		}
	}
	if (loomi_store_end(db(), 0, &err) != 0) {
		/* the starts were not stored: their workers must not start */
		for (size_t i = 0; i < n_started; i++) {
			run *r = run_find(started[i]);
			if (r && r->pid == 0)
				run_remove(r);
		}
	}
out:
	free(err);
	free(started);
	for (size_t i = 0; i < n; i++)
		free((void *)jobs[i].after);
	for (size_t i = 0; i < 2 * n; i++)
		free(names[i]);
	for (size_t i = 0; i < n_users; i++)
		free((void *)users[i].name);
	free(users);
	free(names);
	free(jobs);
	free(acts);
}

/* A run the plan added but whose process never started: back to the queue. */
static void
unstarted(run *r, const char *why)
{
	int64_t id = r->job;
	run_remove(r);
	set_int(id, "queued", 1);
	set_text(id, "waiting_reason", why);
	transition(id, LOOM_JOB_PENDING, why);
}

/* Start the processes of the runs the plans added (pid 0), one at a time,
 * without the jobs mutex during each posix_spawn: the API and the workers'
 * reports are answered while hundreds of workers start.  Called by the loop
 * with the mutex held; only the loop spawns. */
static void
spawn_pending(void)
{
	for (;;) {
		run *r = NULL;
		int64_t id;
		int attempt, rv;
		uint32_t threads;
		uint64_t memory, as_limit = 0;
		pid_t pid = 0;
		char *why = NULL, *cgroup = NULL;

		for (size_t i = 0; i < J->n_runs && r == NULL; i++)
			if (J->runs[i].pid == 0)
				r = &J->runs[i];
		if (r == NULL)
			return;
		if (J->stopping) {
			unstarted(r, "loomd stopped before its worker started");
			continue;
		}
		id = r->job;
		attempt = r->attempt;
		threads = r->alloc.cpu_millis / 1000;
		memory = r->alloc.memory;
		pthread_mutex_unlock(&J->mtx);
		rv = spawn_process(id, attempt, threads, memory, &pid, &cgroup, &as_limit, &why);
		pthread_mutex_lock(&J->mtx);
		/* reap() leaves runs without a process alone: r is still there */
		r = run_find(id);
		if (rv == 0 && r == NULL) { /* cannot happen; never leave a process unreaped */
			signal_session(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			if (cgroup)
				rmdir(cgroup);
			free(cgroup);
			continue;
		}
		if (rv != 0) {
			if (r)
				run_remove(r);
			add_log(id, LOOM_LOG_ERROR, why);
			transition(id, LOOM_JOB_FAILED, why);
			fail_dependants(id);
			free(why);
			continue;
		}
		r->pid = pid;
		__atomic_fetch_add(&S.workers, 1, __ATOMIC_RELAXED);
		r->cgroup = cgroup;
		r->as_limit = as_limit;
		set_int(id, "worker_pid", pid);
		LOG_INFO("task-%lld: worker %d started (attempt %d, %u thread%s)", (long long)id,
		         (int)pid, attempt, threads ? threads : 1, threads > 1 ? "s" : "");
	}
}

static void
kick(void)
{
	J->kicked = true;
	pthread_cond_signal(&J->cond);
}

/* Wait on the loop's condition until deadline_ms (wall clock) or, with
 * kicks, a kick; false when loomd is stopping. */
static bool
wait_until(int64_t deadline_ms, bool kicks)
{
	struct timespec ts = {.tv_sec = deadline_ms / 1000,
	                      .tv_nsec = (long)(deadline_ms % 1000) * 1000000};
	while (!J->stopping && !(kicks && J->kicked) && loomi_wall_ms() < deadline_ms &&
	       pthread_cond_timedwait(&J->cond, &J->mtx, &ts) == 0)
		;
	return !J->stopping;
}

/* The scheduling loop: every tick, or at a kick (a submission, a worker
 * that finished), reap, plan, and start what the plan started.  A burst of
 * kicks shares one plan: plans are at least PLAN_GAP_MS apart. */
static void *
loop(void *arg)
{
	int64_t last = 0;

	(void)arg;
	pthread_mutex_lock(&J->mtx);
	for (;;) {
		int64_t tick = J->d->conf.jobs_tick_ms > 0 ? J->d->conf.jobs_tick_ms : 200;
		if (!wait_until(last + tick, true) || !wait_until(last + PLAN_GAP_MS, false))
			break;
		J->kicked = false;
		retry_unstored();
		loomi_log_limited_flush();
		reap();
		schedule();
		last = loomi_wall_ms();
		spawn_pending();
	}
	spawn_pending(); /* puts back what a last plan started */
	pthread_mutex_unlock(&J->mtx);
	return NULL;
}

/* ------------------------------------------------------------------ counters */

int
loomi_jobs_stats_read(loomi_daemon *d, loomi_jobs_stats *out)
{
	sqlite3_stmt *st = NULL;
	int rc;

	memset(out, 0, sizeof *out);
	for (int i = 1; i <= LOOMI_JOB_STATES; i++)
		out->transitions[i] = __atomic_load_n(&S.transitions[i], __ATOMIC_RELAXED);
	out->workers = __atomic_load_n(&S.workers, __ATOMIC_RELAXED);
	/* job_counts, kept by triggers, has a row per user and state: a scrape
	 * reads those, not the jobs */
	if (d->store.db == NULL)
		return LOOM_EIO;
	if (sqlite3_prepare_v2(d->store.db, "SELECT state, sum(n) FROM job_counts GROUP BY state",
	                       -1, &st, NULL) != SQLITE_OK) {
		sqlite3_finalize(st);
		return LOOM_EIO;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint32_t s = loom_job_state_parse((const char *)sqlite3_column_text(st, 0));
		if (s >= 1 && s <= LOOMI_JOB_STATES)
			out->tasks[s] = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : LOOM_EIO;
}

const loomi_histogram *
loomi_jobs_plan_histogram(const double **bounds, size_t *n_bounds)
{
	*bounds = plan_bounds;
	*n_bounds = sizeof plan_bounds / sizeof *plan_bounds;
	return &S.plan;
}

/* ------------------------------------------------------------------ bus services */

static int
reply_err(char **reply, int code, const char *fmt, ...) LOOM_PRINTF(3, 4);

static int
reply_err(char **reply, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	*reply = loomi_vstrfmt(fmt, ap);
	va_end(ap);
	return code;
}

/* The worker of (job, attempt), or NULL with *reply set. */
static run *
worker_of(const json_t *req, char **reply)
{
	int64_t id = json_integer_value(json_object_get(req, "job"));
	int attempt = (int)json_integer_value(json_object_get(req, "attempt"));
	run *r = run_find(id);

	if (r == NULL || r->attempt != attempt) {
		reply_err(reply, LOOM_ESTATE,
		          "task-%lld attempt %d is not running here; stop (another worker or loomd "
		          "restart took it over)",
		          (long long)id, attempt);
		return NULL;
	}
	r->last_seen_ms = loomi_wall_ms();
	return r;
}

static int
svc_attach(void *arg, const char *request, char **reply)
{
	json_t *req = json_loads(request, 0, NULL), *out = NULL;
	run *r;
	int rv = 0;

	(void)arg;
	pthread_mutex_lock(&J->mtx);
	if ((r = worker_of(req, reply)) == NULL) {
		rv = LOOM_ESTATE;
	} else {
		sqlite3_stmt *st = prep("SELECT spec, compute, name, user FROM jobs WHERE id = ?");
		sqlite3_bind_int64(st, 1, r->job);
		if (st && sqlite3_step(st) == SQLITE_ROW) {
			char *dir = job_dir(r->job);
			/* tracking begins its run: new for a new attempt, the same
			 * after a pause */
			loomi_event ev = {.kind = LOOMI_EV_JOB_ATTACH, .job = r->job};
			ev.u.attach.attempt = r->attempt;
			ev.u.attach.name = (const char *)sqlite3_column_text(st, 2);
			ev.u.attach.user = (const char *)sqlite3_column_text(st, 3);
			ev.u.attach.spec = (const char *)sqlite3_column_text(st, 0);
			loomi_events_emit(&ev);
			out = json_pack("{s:s, s:s, s:s, s:b, s:i}", "spec",
			                (const char *)sqlite3_column_text(st, 0), "compute",
			                (const char *)sqlite3_column_text(st, 1), "out_dir", dir,
			                "resume", has_checkpoint(r->job), "threads",
			                (int)(r->alloc.cpu_millis / 1000 ? r->alloc.cpu_millis / 1000 : 1));
			free(dir);
			json_object_set_new(out, "alloc",
			                    json_pack("{s:I, s:I, s:I, s:I}", "cpu_millis",
			                              (json_int_t)r->alloc.cpu_millis, "memory",
			                              (json_int_t)r->alloc.memory, "gpu",
			                              (json_int_t)r->alloc.gpu, "gpu_mask",
			                              (json_int_t)r->alloc.gpu_mask));
		} else {
			rv = reply_err(reply, LOOM_ENOENT, "no task-%lld", (long long)r->job);
		}
		unprep(st);
	}
	pthread_mutex_unlock(&J->mtx);
	if (out)
		*reply = json_dumps(out, JSON_COMPACT);
	json_decref(out);
	json_decref(req);
	return rv;
}

static int
svc_report(void *arg, const char *request, char **reply)
{
	json_t *req = json_loads(request, 0, NULL), *v;
	run *r;
	int control, attempt;
	int64_t job;
	size_t i;
	char tid[32];

	(void)arg;
	pthread_mutex_lock(&J->mtx);
	if ((r = worker_of(req, reply)) == NULL) {
		pthread_mutex_unlock(&J->mtx);
		json_decref(req);
		return LOOM_ESTATE;
	}
	snprintf(tid, sizeof tid, "task-%lld", (long long)r->job);
	if ((v = json_object_get(req, "progress")) != NULL && json_is_object(v)) {
		json_int_t step = json_integer_value(json_object_get(v, "step"));
		json_int_t total = json_integer_value(json_object_get(v, "total_steps"));
		sqlite3_stmt *st = prep("UPDATE jobs SET progress_step = ?, progress_total = ?,"
		                        " epoch = ?, epochs = ?, updated_at = ? WHERE id = ?");
		sqlite3_bind_int64(st, 1, step);
		sqlite3_bind_int64(st, 2, total);
		sqlite3_bind_int64(st, 3, json_integer_value(json_object_get(v, "epoch")));
		sqlite3_bind_int64(st, 4, json_integer_value(json_object_get(v, "epochs")));
		sqlite3_bind_int64(st, 5, loomi_wall_ms());
		sqlite3_bind_int64(st, 6, r->job);
		step_done(st);
		json_t *ev = json_deep_copy(v);
		json_object_set_new(ev, "task_id", json_string(tid));
		json_object_set_new(ev, "percentage",
		                    json_real(total > 0 ? 100.0 * (double)step / (double)total : 0));
		publish("job.progress", ev);
	}
	if ((v = json_object_get(req, "metrics")) != NULL && json_is_object(v) &&
	    json_object_size(v) > 0) {
		/* merge into the latest values */
		sqlite3_stmt *st = prep("UPDATE jobs SET metrics = json_patch(metrics, ?) WHERE id = ?");
		char *text = json_dumps(v, JSON_COMPACT);
		sqlite3_bind_text(st, 1, text, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 2, r->job);
		step_done(st);
		free(text);
		publish("job.metric",
		        json_pack("{s:s, s:O, s:O}", "task_id", tid, "metrics", v, "step",
		                  json_object_get(json_object_get(req, "progress"), "step")
		                      ? json_object_get(json_object_get(req, "progress"), "step")
		                      : json_null()));
	}
	json_array_foreach(json_object_get(req, "logs"), i, v) {
		const char *m = json_string_value(json_object_get(v, "message"));
		int level = (int)json_integer_value(json_object_get(v, "level"));
		json_t *fields = json_object_get(v, "fields");
		char *ftext;
		if (m == NULL)
			continue;
		ftext = json_is_object(fields) ? json_dumps(fields, JSON_COMPACT) : NULL;
		{
			loomi_event ev = {.kind = LOOMI_EV_JOB_LOG, .job = r->job};
			ev.u.log.instance = json_is_string(json_object_get(v, "instance"))
			                        ? json_string_value(json_object_get(v, "instance"))
			                        : "worker";
			ev.u.log.level = level;
			ev.u.log.message = m;
			ev.u.log.fields = ftext;
			loomi_events_emit(&ev);
		}
		free(ftext);
		publish("job.log", json_pack("{s:s, s:i, s:s}", "task_id", tid, "level", level,
		                             "message", m));
	}
	if ((v = json_object_get(req, "usage")) != NULL) {
		uint64_t rss = (uint64_t)json_integer_value(json_object_get(v, "max_rss"));
		if (rss > r->max_rss)
			r->max_rss = rss;
		if (r->alloc.memory > 0 && rss > r->alloc.memory && !r->over_memory && !r->result) {
			/* beyond its request (where no cgroup holds it there): stopped
			 * now, before it takes the machine's memory */
			over_memory(r, rss);
			LOG_WARN("task-%lld: %s; killing worker %d (SIGKILL)", (long long)r->job, r->error,
			         (int)r->pid);
			add_log(r->job, LOOM_LOG_ERROR, r->error);
			signal_session(r->pid, SIGKILL);
			r->usage_saved_ms = 0; /* its peak is stored below */
		}
	}
	if ((v = json_object_get(req, "usage")) != NULL &&
	    loomi_wall_ms() - r->usage_saved_ms >= USAGE_SAVE_MS) {
		/* usage changes on every heartbeat: stored every few seconds */
		sqlite3_stmt *st = prep("UPDATE jobs SET cpu_time_ms = ?, max_rss = ? WHERE id = ?");
		sqlite3_bind_int64(st, 1, json_integer_value(json_object_get(v, "cpu_time_ms")));
		sqlite3_bind_int64(st, 2, json_integer_value(json_object_get(v, "max_rss")));
		sqlite3_bind_int64(st, 3, r->job);
		step_done(st);
		r->usage_saved_ms = loomi_wall_ms();
	}
	control = r->control;
	job = r->job;
	attempt = r->attempt;
	pthread_mutex_unlock(&J->mtx);
	/* every point, for the run's history (the latest values are above) */
	{
		loomi_event ev = {.kind = LOOMI_EV_JOB_POINTS, .job = job};
		ev.u.points.attempt = attempt;
		ev.u.points.points = json_object_get(req, "points");
		loomi_events_emit(&ev);
	}
	*reply = loomi_strfmt("{\"control\":\"%s\"}", control == LOOM_CONTROL_PAUSE    ? "pause"
	                                              : control == LOOM_CONTROL_CANCEL ? "cancel"
	                                                                               : "run");
	json_decref(req);
	return 0;
}

static int
svc_finish(void *arg, const char *request, char **reply)
{
	json_t *req = json_loads(request, 0, NULL);
	const char *result = json_string_value(json_object_get(req, "result"));
	const char *error = json_string_value(json_object_get(req, "error"));
	run *r;
	int rv = 0;

	(void)arg;
	pthread_mutex_lock(&J->mtx);
	if ((r = worker_of(req, reply)) == NULL) {
		rv = LOOM_ESTATE;
	} else if (result == NULL ||
	           (strcmp(result, "completed") && strcmp(result, "paused") &&
	            strcmp(result, "cancelled") && strcmp(result, "failed"))) {
		rv = reply_err(reply, LOOM_EINVAL,
		               "result must be completed, paused, cancelled or failed");
	} else {
		free(r->result);
		free(r->error);
		r->result = loomi_strdup(result);
		r->error = error ? loomi_strdup(error) : NULL;
		r->finished_ms = loomi_wall_ms();
		if (json_is_true(json_object_get(req, "memory_exceeded")) && r->alloc.memory > 0) {
			/* an allocation failed at its RLIMIT_AS */
			uint64_t peak = (uint64_t)json_integer_value(json_object_get(req, "max_rss"));
			char *lim = size_text(r->as_limit), *err;
			over_memory(r, peak);
			err = loomi_strfmt("%s; an allocation failed at its address-space limit (%s)",
			                   r->error, lim);
			free(r->error);
			r->error = err;
			free(lim);
		}
		if (json_is_object(json_object_get(req, "metrics"))) {
			sqlite3_stmt *st = prep("UPDATE jobs SET metrics = json_patch(metrics, ?)"
			                        " WHERE id = ?");
			char *text = json_dumps(json_object_get(req, "metrics"), JSON_COMPACT);
			sqlite3_bind_text(st, 1, text, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int64(st, 2, r->job);
			step_done(st);
			free(text);
		}
		kick();
	}
	pthread_mutex_unlock(&J->mtx);
	json_decref(req);
	return rv;
}

/* ------------------------------------------------------------------ API operations */

static const char *const task_fields[] = {
	"spec", "name", "priority", "resource_requirements", "after", "start",
	"max_retries", "timeout", "preemptible", "user", "config_id", "config_version",
};

static int
bad(char **msg, const char *fmt, ...) LOOM_PRINTF(2, 3);

static int
bad(char **msg, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	*msg = loomi_vstrfmt(fmt, ap);
	va_end(ap);
	return LOOM_EINVAL;
}

/* "16Gi", "512M", 1073741824 → bytes. */
static int
parse_memory(const json_t *v, uint64_t *out)
{
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = (uint64_t)json_integer_value(v);
		return 0;
	}
	if (json_is_string(v)) {
		char buf[64];
		size_t n = strlen(json_string_value(v));
		if (n == 0 || n >= sizeof buf)
			return LOOM_EINVAL;
		memcpy(buf, json_string_value(v), n + 1);
		if (n >= 2 && buf[n - 1] == 'i') /* Kubernetes' binary suffixes */
			buf[n - 1] = '\0';
		return loom_parse_size(buf, out);
	}
	return LOOM_EINVAL;
}

/* A validated submission on its way into the store.  Submissions are
 * written in groups: while one thread commits, the others queue, and the
 * next commit takes all of them in one transaction (a commit costs about as
 * much as the inserts of ten tasks).  Each has its own savepoint, so one
 * refused task does not refuse the others. */
typedef struct submission {
	const char *name, *user, *compute, *spec_text;
	const json_t *after;
	int64_t priority, cpu_millis, memory, gpu, max_retries, timeout_ms;
	int64_t config_id, config_version;
	bool preemptible, start;
	/* out */
	int64_t id;
	int rv;
	char *msg;
	bool done;
	struct submission *next;
} submission;

static struct {
	pthread_mutex_t mtx;
	pthread_cond_t done;
	submission *head, **tail;
	bool leading;
} G = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, &G.head, false};

/* Insert one submission; in the group's transaction, with J->mtx held. */
static void
insert_submission(submission *s)
{
	sqlite3_stmt *st;
	size_t i;
	const json_t *v;
	int64_t now = loomi_wall_ms();
	int rv;

	json_array_foreach(s->after, i, v) {
		int64_t a = json_is_string(v)    ? loomi_job_id_parse(json_string_value(v))
		            : json_is_integer(v) ? json_integer_value(v)
		                                 : 0;
		if (a <= 0) {
			s->rv = bad(&s->msg, "after[%zu]: expected a task id such as \"task-3\"", i);
			return;
		}
		if (job_state(a) == 0) {
			s->msg = loomi_strfmt("after[%zu]: there is no task-%lld", i, (long long)a);
			s->rv = LOOM_ENOENT;
			return;
		}
	}
	if (exec_sql("SAVEPOINT submission") != 0)
		goto fail;
	st = prep("INSERT INTO jobs (name, user, priority, compute, spec, cpu_millis, memory, gpu,"
	          " max_retries, timeout_ms, created_at, updated_at, preemptible, queued, config_id,"
	          " config_version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
	sqlite3_bind_text(st, 1, s->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, s->user, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, s->priority);
	sqlite3_bind_text(st, 4, s->compute, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, s->spec_text, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, s->cpu_millis);
	sqlite3_bind_int64(st, 7, s->memory);
	sqlite3_bind_int64(st, 8, s->gpu);
	sqlite3_bind_int64(st, 9, s->max_retries);
	sqlite3_bind_int64(st, 10, s->timeout_ms);
	sqlite3_bind_int64(st, 11, now);
	sqlite3_bind_int64(st, 12, now);
	sqlite3_bind_int(st, 13, s->preemptible);
	sqlite3_bind_int(st, 14, s->start);
	if (s->config_id > 0) {
		sqlite3_bind_int64(st, 15, s->config_id);
		sqlite3_bind_int64(st, 16, s->config_version);
	}
	rv = step_done(st);
	s->id = sqlite3_last_insert_rowid(db());
	/* a new job can only run after existing ones, so no cycle can form */
	json_array_foreach(s->after, i, v) {
		int64_t a = json_is_string(v) ? loomi_job_id_parse(json_string_value(v))
		                              : json_integer_value(v);
		st = prep("INSERT OR IGNORE INTO job_deps (job_id, after_id) VALUES (?, ?)");
		sqlite3_bind_int64(st, 1, s->id);
		sqlite3_bind_int64(st, 2, a);
		rv = rv ? rv : step_done(st);
		if (rv && st == NULL)
			break;
	}
	if (rv == 0) {
		st = prep("INSERT INTO job_events (job_id, at, from_state, to_state, reason)"
		          " VALUES (?, ?, NULL, 'pending', 'submitted')");
		sqlite3_bind_int64(st, 1, s->id);
		sqlite3_bind_int64(st, 2, now);
		rv = step_done(st);
	}
	if (rv == 0 && exec_sql("RELEASE submission") == 0)
		return;
	exec_sql("ROLLBACK TO submission");
	exec_sql("RELEASE submission");
fail:
	s->rv = LOOM_EIO;
	s->msg = loomi_store_errmsg("the task");
}

/* Write a group of submissions in one transaction; announce those stored. */
static void
write_group(submission *group)
{
	bool kicked = false, ok;
	char *err = NULL;

	pthread_mutex_lock(&J->mtx);
	ok = loomi_store_begin(db(), true, &err) == 0;
	for (submission *s = group; s; s = s->next)
		if (ok)
			insert_submission(s);
	if (ok)
		ok = loomi_store_end(db(), 0, &err) == 0;
	if (!ok) {
		for (submission *s = group; s; s = s->next) {
			if (s->rv == 0) {
				/* err: "the change could not be stored: database or
				 * disk is full; …" (store.h), or why it could not begin */
				s->rv = LOOM_EIO;
				s->msg = loomi_strdup(err);
			}
		}
	}
	free(err);
	for (submission *s = group; s; s = s->next) {
		char tid[32];
		if (s->rv != 0)
			continue;
		LOG_INFO("task-%lld submitted by %s (%s, priority %lld)%s", (long long)s->id, s->user,
		         s->name, (long long)s->priority, s->start ? ", started" : "");
		snprintf(tid, sizeof tid, "task-%lld", (long long)s->id);
		publish("job.state", json_pack("{s:s, s:I, s:n, s:s, s:s, s:I}", "task_id", tid, "id",
		                               (json_int_t)s->id, "from", "status", "pending", "reason",
		                               "submitted", "time", (json_int_t)loomi_wall_ms()));
		kicked |= s->start;
	}
	if (kicked)
		kick(); /* the loop plans at once; a burst of submissions shares one plan */
	pthread_mutex_unlock(&J->mtx);
}

/* Store s with whatever else is queued.  While a group is being written,
 * new submissions queue; when it is done, one of them writes the queue as
 * the next group (which holds its own), and so on. */
static void
commit_grouped(submission *s)
{
	pthread_mutex_lock(&G.mtx);
	*G.tail = s;
	G.tail = &s->next;
	while (!s->done) {
		submission *group;
		if (G.leading) {
			pthread_cond_wait(&G.done, &G.mtx);
			continue;
		}
		G.leading = true;
		group = G.head;
		G.head = NULL;
		G.tail = &G.head;
		pthread_mutex_unlock(&G.mtx);
		write_group(group);
		pthread_mutex_lock(&G.mtx);
		for (submission *t = group; t; t = t->next)
			t->done = true;
		G.leading = false;
		pthread_cond_broadcast(&G.done);
	}
	pthread_mutex_unlock(&G.mtx);
}

static int resolve_predict(loomi_daemon *d, json_t *spec, const loomi_caller *caller,
                           bool data_resolved, json_t **out, char **msg);
static int resolve_train_init(loomi_daemon *d, json_t *spec, const loomi_caller *caller,
                              json_t **out, char **msg);
static int resolve_dataset(loomi_daemon *d, json_t *spec, bool predict,
                           const loomi_caller *caller, bool *resolved, char **msg);
static int submit_spec(loomi_daemon *d, const json_t *body, const json_t *spec,
                       int64_t config_id, int64_t config_version, const loomi_caller *caller,
                       bool data_resolved, int64_t *id, char **msg);

int
loomi_jobs_submit(loomi_daemon *d, const json_t *body, const loomi_caller *caller, int64_t *id,
                  char **msg)
{
	const json_t *v;
	json_t *spec = NULL;
	int64_t config_id = 0, config_version = 0;
	const char *key;
	bool data_resolved = false;
	int rv;
	size_t i;

	if (!json_is_object(body))
		return bad(msg, "the request body must be a JSON object: {\"spec\": {…job spec…}, "
		                "\"priority\": 0, \"resource_requirements\": {\"cpu\": 1}}");
	json_object_foreach((json_t *)body, key, v) {
		bool known = false;
		for (i = 0; i < sizeof task_fields / sizeof task_fields[0]; i++)
			known |= strcmp(key, task_fields[i]) == 0;
		if (!known) {
			const char *s = loomi_suggest(key, task_fields,
			                              sizeof task_fields / sizeof task_fields[0]);
			return bad(msg, "%s: unknown field%s%s%s; the job spec goes under \"spec\"", key,
			           s ? " (did you mean " : "", s ? s : "", s ? "?)" : "");
		}
	}
	if ((v = json_object_get(body, "config_id")) != NULL) {
		const json_t *cv = json_object_get(body, "config_version");
		if (json_object_get(body, "spec"))
			return bad(msg, "give either spec or config_id, not both");
		if (!json_is_string(v) || (config_id = loomi_config_id_parse(json_string_value(v))) <= 0)
			return bad(msg, "config_id: expected a config id such as \"config-3\" (GET "
			                "/api/v1/training/configs lists them)");
		if (cv && !(json_is_integer(cv) && json_integer_value(cv) >= 1))
			return bad(msg, "config_version: expected a version number ≥ 1 (default: the "
			                "latest)");
		config_version = cv ? json_integer_value(cv) : 0;
		/* only a config the caller may read (another user's is "not there") */
		if ((rv = loomi_configs_may(d, caller, json_string_value(v), LOOMI_ACCESS_READ, msg)) !=
		        0 ||
		    (rv = loomi_configs_spec(d, json_string_value(v), config_version, &spec, msg)) != 0)
			return rv;
		if (config_version == 0) {
			json_t *cfg = NULL;
			char *m2 = NULL;
			if (loomi_configs_get(d, json_string_value(v), 0, &cfg, &m2) == 0)
				config_version = json_integer_value(json_object_get(cfg, "version"));
			json_decref(cfg);
			free(m2);
		}
	} else if (json_object_get(body, "config_version")) {
		return bad(msg, "config_version: only with config_id");
	} else {
		spec = json_incref(json_object_get(body, "spec"));
	}
	if (!json_is_object(spec)) {
		json_decref(spec);
		return bad(msg, "spec: missing or not an object; send the job spec (docs/engine.md "
		                "describes it) as {\"spec\": {…}}, or a stored config as "
		                "{\"config_id\": \"config-3\"}");
	}
	/* a dataset named where a file would be is resolved first: the file
	 * loomd writes for it is the one the rest of the checks see (in a copy:
	 * the spec may be the request's own) */
	{
		json_t *copy = json_deep_copy(spec);
		json_decref(spec);
		if ((spec = copy) == NULL)
			return bad(msg, "out of memory copying the spec");
	}
	if ((rv = resolve_dataset(d, spec, json_object_get(spec, "predict") != NULL, caller,
	                          &data_resolved, msg)) != 0) {
		json_decref(spec);
		return rv;
	}
	if (json_object_get(spec, "predict")) {
		json_t *resolved;
		rv = resolve_predict(d, spec, caller, data_resolved, &resolved, msg);
		json_decref(spec);
		if (rv != 0)
			return rv;
		spec = resolved;
	}
	if (json_object_get(json_object_get(spec, "train"), "init")) {
		json_t *resolved;
		rv = resolve_train_init(d, spec, caller, &resolved, msg);
		json_decref(spec);
		if (rv != 0)
			return rv;
		spec = resolved;
	}
	rv = submit_spec(d, body, spec, config_id, config_version, caller, data_resolved, id, msg);
	json_decref(spec);
	return rv;
}

/* A dataset where a file would be (docs/datasets.md): data.path (or, for
 * a batch prediction, predict.data.path) = "dataset:NAME@REF", which the
 * caller must be able to read, is resolved to the version it names now;
 * loomd writes that version as a CSV file in its state directory and puts
 * the file in data.path, and {name, ref, version} in data.dataset, which
 * the run's lineage records.  A client never sets data.dataset.  The spec
 * is changed in place; *resolved tells whether data.path is loomd's file
 * (which need not lie under data_roots).  0, or a LOOM_E* code with *msg. */
static int
resolve_dataset(loomi_daemon *d, json_t *spec, bool predict, const loomi_caller *caller,
                bool *resolved, char **msg)
{
	const char *key = predict ? "predict.data.path" : "data.path";
	json_t *data = predict ? json_object_get(json_object_get(spec, "predict"), "data")
	                       : json_object_get(spec, "data");
	const char *value = json_string_value(json_object_get(data, "path"));
	char *file = NULL;
	json_t *info = NULL;
	int rv;

	*resolved = false;
	if (json_object_get(data, "dataset"))
		return bad(msg, "%s.dataset: loomd sets it when %s names a dataset; write "
		                "\"dataset:NAME@REF\" in %s instead",
		           predict ? "predict.data" : "data", key, key);
	if (value == NULL || !loomi_dataset_is_ref(value))
		return 0;
	if ((rv = loomi_dataset_materialize(d, caller, key, value, &file, &info, msg)) != 0)
		return rv;
	if (info == NULL) {
		free(file);
		*msg = loomi_strfmt("%s: out of memory resolving %s", key, value);
		return LOOM_ENOMEM;
	}
	json_object_set_new(data, "path", json_string(file));
	json_object_set_new(data, "dataset", info);
	free(file);
	*resolved = true;
	return 0;
}

/* A batch prediction (a spec with a "predict" group, docs/inference.md):
 * the model the caller names (predict.model, with predict.alias, default
 * "production", or predict.version), if the caller may read it, resolved
 * through the registry; loomd writes the version's directory into
 * predict.model_dir (a client never names a directory) and its number into
 * predict.version.  predict.data.path must lie under data_roots.  *out: the
 * spec to store (a new reference).  0, or a LOOM_E* code with *msg. */
static int
resolve_predict(loomi_daemon *d, json_t *spec, const loomi_caller *caller, bool data_resolved,
                json_t **out, char **msg)
{
	const json_t *p = json_object_get(spec, "predict"), *model, *alias, *version, *path;
	char ref[32];
	const char *name, *refp = "production";
	int64_t model_id, ver;
	char *dir = NULL;
	json_t *copy, *pc;
	int rv;

	*out = NULL;
	if (!json_is_object(p))
		return bad(msg, "predict: expected a group such as {\"model\": \"weather\", "
		                "\"data\": {\"path\": \"/data/new.csv\"}}");
	if (json_object_get(p, "model_dir"))
		return bad(msg, "predict.model_dir: loomd sets it from predict.model; name the "
		                "registered model instead (with predict.alias or predict.version)");
	model = json_object_get(p, "model");
	if (!json_is_string(model) || json_string_length(model) == 0)
		return bad(msg, "predict.model: required, the name of a registered model (GET "
		                "/api/v1/models lists them)");
	name = json_string_value(model);
	alias = json_object_get(p, "alias");
	version = json_object_get(p, "version");
	if (alias && version)
		return bad(msg, "predict: give predict.alias or predict.version, not both");
	if (alias && !(json_is_string(alias) && json_string_length(alias) > 0))
		return bad(msg, "predict.alias: expected an alias name such as \"production\"");
	if (version && !(json_is_integer(version) && json_integer_value(version) >= 1))
		return bad(msg, "predict.version: expected a version number ≥ 1");
	if (version) {
		snprintf(ref, sizeof ref, "%lld", (long long)json_integer_value(version));
		refp = ref;
	} else if (alias) {
		refp = json_string_value(alias);
	}
	path = json_object_get(json_object_get(p, "data"), "path");
	if (!json_is_string(path))
		return bad(msg, "predict.data.path: required, the CSV file to predict over (under "
		                "loomd.conf's data_roots)");
	if (!data_resolved &&
	    (rv = loomi_data_path_check(d, "predict.data.path", json_string_value(path), msg)) != 0)
		return rv;
	if (!loomi_registry_allowed(d, caller, name, LOOMI_ACCESS_READ)) {
		*msg = loomi_strfmt("predict.model: there is no model \"%s\"; GET /api/v1/models "
		                    "(loomctl models list) lists them",
		                    name);
		return LOOM_ENOENT;
	}
	if ((rv = loomi_registry_resolve(d, name, refp, &model_id, &ver, &dir, msg)) != 0) {
		char *m = loomi_strfmt("predict.model: %s", *msg);
		free(*msg);
		*msg = m;
		return rv;
	}
	copy = json_deep_copy(spec);
	pc = json_object_get(copy, "predict");
	json_object_del(pc, "alias");
	json_object_set_new(pc, "model_dir", json_string(dir));
	json_object_set_new(pc, "version", json_integer(ver));
	free(dir);
	*out = copy;
	return 0;
}

/* Incremental training from a registered version (train.init,
 * docs/incremental.md): the model the caller names (train.init.model, with
 * train.init.alias, default "production", or train.init.version), if the
 * caller may read it, resolved through the registry as a batch prediction's
 * is; loomd writes the version's directory into train.init.model_dir (a
 * client never names a directory) and its number into train.init.version,
 * and drops alias.  *out: the spec to store (a new reference).  0, or a
 * LOOM_E* code with *msg. */
static int
resolve_train_init(loomi_daemon *d, json_t *spec, const loomi_caller *caller, json_t **out,
                   char **msg)
{
	const json_t *p = json_object_get(json_object_get(spec, "train"), "init"), *model, *alias,
	             *version, *v;
	static const char *const fields[] = {"model", "alias", "version"};
	char ref[32];
	const char *name, *refp = "production", *key;
	int64_t model_id, ver;
	char *dir = NULL;
	json_t *copy, *ic;
	int rv;

	*out = NULL;
	if (!json_is_object(p))
		return bad(msg, "train.init: expected a group such as {\"model\": \"weather\", "
		                "\"alias\": \"production\"} (or \"version\": 3 instead of alias)");
	if (json_object_get(p, "model_dir"))
		return bad(msg, "train.init.model_dir: loomd sets it from train.init.model; name the "
		                "registered model instead (with train.init.alias or train.init.version)");
	json_object_foreach((json_t *)p, key, v) {
		bool known = false;
		for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
			known |= strcmp(key, fields[i]) == 0;
		if (!known) {
			const char *s = loomi_suggest(key, fields, sizeof fields / sizeof fields[0]);
			return bad(msg, "train.init.%s: unknown setting%s%s%s; train.init takes model and "
			                "alias or version",
			           key, s ? " (did you mean " : "", s ? s : "", s ? "?)" : "");
		}
	}
	model = json_object_get(p, "model");
	if (!json_is_string(model) || json_string_length(model) == 0)
		return bad(msg, "train.init.model: required, the name of a registered model (GET "
		                "/api/v1/models lists them)");
	name = json_string_value(model);
	alias = json_object_get(p, "alias");
	version = json_object_get(p, "version");
	if (alias && version)
		return bad(msg, "train.init: give train.init.alias or train.init.version, not both");
	if (alias && !(json_is_string(alias) && json_string_length(alias) > 0))
		return bad(msg, "train.init.alias: expected an alias name such as \"production\"");
	if (version && !(json_is_integer(version) && json_integer_value(version) >= 1))
		return bad(msg, "train.init.version: expected a version number ≥ 1");
	if (version) {
		snprintf(ref, sizeof ref, "%lld", (long long)json_integer_value(version));
		refp = ref;
	} else if (alias) {
		refp = json_string_value(alias);
	}
	if (!loomi_registry_allowed(d, caller, name, LOOMI_ACCESS_READ)) {
		*msg = loomi_strfmt("train.init.model: there is no model \"%s\"; GET /api/v1/models "
		                    "(loomctl models list) lists them",
		                    name);
		return LOOM_ENOENT;
	}
	if ((rv = loomi_registry_resolve(d, name, refp, &model_id, &ver, &dir, msg)) != 0) {
		char *m = loomi_strfmt("train.init.model: %s", *msg);
		free(*msg);
		*msg = m;
		return rv;
	}
	copy = json_deep_copy(spec);
	ic = json_object_get(json_object_get(copy, "train"), "init");
	json_object_del(ic, "alias");
	json_object_set_new(ic, "model_dir", json_string(dir));
	json_object_set_new(ic, "version", json_integer(ver));
	free(dir);
	*out = copy;
	return 0;
}

static int
submit_spec(loomi_daemon *d, const json_t *body, const json_t *spec, int64_t config_id,
            int64_t config_version, const loomi_caller *caller, bool data_resolved, int64_t *id,
            char **msg)
{
	const char *user = caller->name;
	const json_t *v, *rr, *after;
	const char *key, *name, *compute;
	char *spec_text = NULL;
	int64_t priority = 0, max_retries = 0, timeout_ms = 0;
	uint64_t memory = 0;
	double cpu = 1;
	int64_t gpu = 0;
	bool start = false, preemptible = false;
	int rv;

	if ((v = json_object_get(body, "name")) && !(json_is_string(v) && json_string_length(v) &&
	                                             json_string_length(v) <= 200))
		return bad(msg, "name: expected a string of 1 to 200 characters");
	name = json_string_value(v);
	if (name == NULL)
		name = json_string_value(json_object_get(spec, "name"));
	if (name && (rv = loomi_name_text_check(v ? "name" : "spec.name", name, msg)) != 0)
		return rv;
	if ((v = json_object_get(body, "priority")) &&
	    !(json_is_integer(v) && llabs(json_integer_value(v)) <= 1000000))
		return bad(msg, "priority: expected an integer from -1000000 to 1000000 (higher "
		                "runs first)");
	priority = v ? json_integer_value(v) : 0;
	if ((v = json_object_get(body, "max_retries")) &&
	    !(json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 100))
		return bad(msg, "max_retries: expected an integer from 0 to 100");
	max_retries = v ? json_integer_value(v) : 0;
	if ((v = json_object_get(body, "timeout")) != NULL) {
		if (json_is_number(v) && json_number_value(v) >= 0)
			timeout_ms = (int64_t)(json_number_value(v) * 1000);
		else if (!json_is_string(v) || loom_parse_duration(json_string_value(v), &timeout_ms))
			return bad(msg, "timeout: expected seconds or a duration such as \"2h\"");
	}
	if ((v = json_object_get(body, "start")) && !json_is_boolean(v))
		return bad(msg, "start: expected true or false");
	start = json_is_true(v);
	if ((v = json_object_get(body, "preemptible")) && !json_is_boolean(v))
		return bad(msg, "preemptible: expected true or false");
	preemptible = json_is_true(v);
	if ((v = json_object_get(body, "user")) && !json_is_string(v))
		return bad(msg, "user: expected a user name (the task's owner; default: you)");
	if (v && strcmp(json_string_value(v), caller->name) != 0) {
		loomi_caller owner;
		if (caller->role != LOOMI_ROLE_ADMIN) {
			*msg = loomi_strfmt("user: only an admin submits a task for another user (you are "
			                    "%s); leave user out",
			                    caller->name);
			return LOOM_EPERM;
		}
		if (!loomi_auth_user(d, json_string_value(v), &owner))
			return bad(msg, "user: there is no user \"%s\" (or it is disabled); `loomctl "
			                "users list` lists them",
			           json_string_value(v));
		user = json_string_value(v);
	}
	rr = json_object_get(body, "resource_requirements");
	if (rr && !json_is_object(rr))
		return bad(msg, "resource_requirements: expected an object such as {\"cpu\": 2, "
		                "\"memory\": \"4Gi\", \"gpu\": 0}");
	json_object_foreach((json_t *)rr, key, v) {
		if (strcmp(key, "cpu") == 0) {
			if (!json_is_number(v) || json_number_value(v) <= 0 || json_number_value(v) > 4096)
				return bad(msg, "resource_requirements.cpu: expected a number of cores "
				                "above 0, e.g. 2 or 0.5");
			cpu = json_number_value(v);
		} else if (strcmp(key, "memory") == 0) {
			if (parse_memory(v, &memory) != 0)
				return bad(msg, "resource_requirements.memory: expected bytes or a size "
				                "such as \"512M\" or \"16Gi\"");
		} else if (strcmp(key, "gpu") == 0) {
			if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 64)
				return bad(msg, "resource_requirements.gpu: expected a whole number of GPUs "
				                "from 0 to 64");
			gpu = json_integer_value(v);
		} else {
			return bad(msg, "resource_requirements.%s: unknown resource; use cpu, memory "
			                "or gpu",
			           key);
		}
	}
	after = json_object_get(body, "after");
	if (after && !json_is_array(after))
		return bad(msg, "after: expected a list of task ids, e.g. [\"task-3\"]");

	if ((rv = loomi_compute_validate(&d->plugins, spec, msg)) != 0)
		return rv;
	compute = json_string_value(json_object_get(spec, "compute"));
	if (compute == NULL)
		compute = "transformer";
	{
		/* running commands of the submitter's choosing is a permission of
		 * its own; and a task reads data only under data_roots */
		loom_instance *ins = loomi_instance_find(&d->plugins, compute);
		const json_t *data = json_object_get(spec, "data");
		if (ins && ins->desc->flags & LOOM_PLUGIN_RUNS_COMMANDS && !caller->exec) {
			*msg = loomi_strfmt("compute \"%s\" (%s) runs commands of the task's choosing, "
			                    "and %s may not run commands; an admin can allow it with "
			                    "`loomctl users set-exec %s true`",
			                    compute, ins->desc->name, caller->name, caller->name);
			return LOOM_EPERM;
		}
		if (!data_resolved && json_is_string(json_object_get(data, "path")) &&
		    (rv = loomi_data_path_check(d, "data.path",
		                                json_string_value(json_object_get(data, "path")),
		                                msg)) != 0)
			return rv;
	}
	{
		/* a task waits only on tasks its submitter may see; another's is as
		 * missing as one that is not (insert_submission says the same) */
		size_t k;
		json_array_foreach(after, k, v) {
			char *owner = NULL, canon[LOOMI_OBJECT_ID_MAX], idtext[32];
			int64_t a = json_is_string(v)    ? loomi_job_id_parse(json_string_value(v))
			            : json_is_integer(v) ? json_integer_value(v)
			                                 : 0;
			bool seen;
			if (a <= 0)
				continue; /* insert_submission names the bad entry */
			snprintf(idtext, sizeof idtext, "task-%lld", (long long)a);
			seen = loomi_jobs_owner(d, idtext, &owner, canon) == 0 &&
			       loomi_auth_may(d, caller, "task", canon, owner, LOOMI_ACCESS_READ);
			free(owner);
			if (!seen) {
				*msg = loomi_strfmt("after[%zu]: there is no task-%lld", k, (long long)a);
				return LOOM_ENOENT;
			}
		}
	}
	if (preemptible) {
		loom_instance *ins = loomi_instance_find(&d->plugins, compute);
		if (ins && ins->kind == LOOM_KIND_COMPUTE &&
		    !(((const loom_compute_ops *)ins->desc->ops)->caps & LOOM_COMPUTE_RESUMABLE))
			return bad(msg, "preemptible: the compute plugin instance \"%s\" (%s) cannot "
			                "checkpoint, so a preemption would cancel the task; submit it "
			                "without preemptible",
			           compute, ins->desc->name);
	}
	spec_text = json_dumps(spec, JSON_COMPACT | JSON_PRESERVE_ORDER);

	{
		submission sub = {
			.name = name ? name : "job",
			.user = user,
			.compute = compute,
			.spec_text = spec_text,
			.after = after,
			.priority = priority,
			.cpu_millis = (int64_t)(cpu * 1000 + 0.5),
			.memory = (int64_t)memory,
			.gpu = gpu,
			.max_retries = max_retries,
			.timeout_ms = timeout_ms,
			.config_id = config_id,
			.config_version = config_version,
			.preemptible = preemptible,
			.start = start,
		};
		commit_grouped(&sub);
		free(spec_text);
		*id = sub.id;
		*msg = sub.msg;
		return sub.rv;
	}
}

/* The ops of the compute instance job id names, or NULL. */
static const loom_compute_ops *
compute_of(int64_t id)
{
	sqlite3_stmt *st = prep("SELECT compute FROM jobs WHERE id = ?");
	const loom_compute_ops *ops = NULL;
	sqlite3_bind_int64(st, 1, id);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		loom_instance *ins =
			loomi_instance_find(&J->d->plugins, (const char *)sqlite3_column_text(st, 0));
		if (ins && ins->kind == LOOM_KIND_COMPUTE)
			ops = ins->desc->ops;
	}
	unprep(st);
	return ops;
}

static int
refuse_state(char **msg, int64_t id, uint32_t s, const char *action, const char *fix)
{
	*msg = loomi_strfmt("task-%lld is %s; %s", (long long)id, loom_job_state_name(s), fix);
	(void)action;
	return LOOM_ESTATE;
}

/* "task-3's start could not be stored: database or disk is full; …" */
static char *
store_errmsg(int64_t id, const char *action)
{
	char *what = loomi_strfmt("task-%lld's %s", (long long)id, action);
	char *msg = loomi_store_errmsg(what);
	free(what);
	return msg;
}

int
loomi_jobs_action(loomi_daemon *d, int64_t id, const char *action, char **msg)
{
	uint32_t s;
	run *r;
	int rv = 0;

	(void)d;
	pthread_mutex_lock(&J->mtx);
	reap(); /* so a state is not reported stale */
	s = job_state(id);
	r = run_find(id);
	if (s == 0) {
		*msg = loomi_strfmt("there is no task-%lld", (long long)id);
		rv = LOOM_ENOENT;
	} else if (strcmp(action, "start") == 0) {
		if (s != LOOM_JOB_PENDING) {
			rv = refuse_state(msg, id, s, action,
			                  s == LOOM_JOB_PAUSED ? "resume it instead"
			                                       : "only a pending task can be started");
		} else if (store_int(id, "queued", 1) != 0) {
			*msg = store_errmsg(id, action);
			rv = LOOM_EIO;
		} else {
			schedule();
			kick(); /* the loop starts the worker */
		}
	} else if (strcmp(action, "pause") == 0) {
		const loom_compute_ops *cops = compute_of(id);
		if (s != LOOM_JOB_RUNNING || r == NULL) {
			rv = refuse_state(msg, id, s, action, "only a running task can be paused");
		} else if (cops && !(cops->caps & LOOM_COMPUTE_RESUMABLE)) {
			*msg = loomi_strfmt("task-%lld runs on a compute plugin that cannot checkpoint, "
			                    "so it cannot pause; cancel it instead",
			                    (long long)id);
			rv = LOOM_ESTATE;
		} else if (r->control != LOOM_CONTROL_RUN) {
			rv = LOOM_EBUSY; /* already asked */
		} else {
			r->requeue = false;
			ask_stop(r, LOOM_CONTROL_PAUSE, loomi_strdup("paused on request"));
			rv = LOOM_EBUSY;
		}
	} else if (strcmp(action, "resume") == 0) {
		if (s != LOOM_JOB_PAUSED) {
			rv = refuse_state(msg, id, s, action,
			                  s == LOOM_JOB_PENDING ? "start it instead"
			                                        : "only a paused task can be resumed");
		} else if (store_int(id, "queued", 1) != 0) {
			*msg = store_errmsg(id, action);
			rv = LOOM_EIO;
		} else {
			schedule();
			kick(); /* the loop starts the worker */
		}
	} else if (strcmp(action, "cancel") == 0) {
		if (s == LOOM_JOB_RUNNING && r != NULL) {
			r->timed_out = false;
			ask_stop(r, LOOM_CONTROL_CANCEL, loomi_strdup("cancelled on request"));
			rv = LOOM_EBUSY;
		} else if (s == LOOM_JOB_PENDING || s == LOOM_JOB_PAUSED) {
			/* answered only once stored; queued = 0 after it (a cancelled
			 * task is never planned, whatever queued says) */
			if (store_transition(id, LOOM_JOB_CANCELLED, "cancelled on request") != 0) {
				*msg = store_errmsg(id, action);
				rv = LOOM_EIO;
			} else {
				set_int(id, "queued", 0);
				fail_dependants(id);
			}
		} else {
			rv = refuse_state(msg, id, s, action, "it has already ended");
		}
	} else {
		*msg = loomi_strfmt("unknown action \"%s\"; use start, pause, resume or cancel", action);
		rv = LOOM_EINVAL;
	}
	pthread_mutex_unlock(&J->mtx);
	return rv;
}

static void
put_time(json_t *o, const char *key, sqlite3_stmt *st, int col)
{
	if (sqlite3_column_type(st, col) == SQLITE_NULL) {
		json_object_set_new(o, key, json_null());
	} else {
		char *t = loomi_iso_time(sqlite3_column_int64(st, col));
		json_object_set_new(o, key, json_string(t));
		free(t);
	}
}

static char *
event_time(int64_t id, const char *to_state)
{
	sqlite3_stmt *st = prep("SELECT max(at) FROM job_events WHERE job_id = ? AND to_state = ?");
	char *t = NULL;
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_text(st, 2, to_state, -1, SQLITE_STATIC);
	if (st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		t = loomi_iso_time(sqlite3_column_int64(st, 0));
	unprep(st);
	return t;
}

/* How far a task got, in percent: a completed task is done, also when it
 * stopped before its planned steps (early stopping: the progress says
 * stopped_early instead of staying at 40 % for ever). */
static double
percentage(const char *state, int64_t step, int64_t total)
{
	if (state && strcmp(state, "completed") == 0)
		return 100.0;
	return total > 0 ? 100.0 * (double)step / (double)total : 0.0;
}

json_t *
loomi_jobs_get(loomi_daemon *d, int64_t id)
{
	sqlite3_stmt *st;
	json_t *o = NULL;

	(void)d;
	pthread_mutex_lock(&J->mtx);
	st = prep("SELECT id, name, user, state, priority, progress_step, progress_total, epoch,"
	          " epochs, metrics, cpu_millis, memory, gpu, created_at, started_at, finished_at,"
	          " updated_at, error, waiting_reason, attempts, max_retries, queued, cpu_time_ms,"
	          " max_rss, timeout_ms, preemptible, spec, config_id, config_version"
	          " FROM jobs WHERE id = ?");
	sqlite3_bind_int64(st, 1, id);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		char tid[32];
		int64_t step = sqlite3_column_int64(st, 5), total = sqlite3_column_int64(st, 6);
		const char *state = (const char *)sqlite3_column_text(st, 3);
		json_t *metrics = json_loads((const char *)sqlite3_column_text(st, 9), 0, NULL);
		json_t *after = json_array();
		uint32_t n_after;
		bool met;
		int64_t *deps = deps_of(id, &n_after, &met);
		run *r = run_find(id);
		char *t;

		for (uint32_t k = 0; k < n_after; k++) {
			snprintf(tid, sizeof tid, "task-%lld", (long long)deps[k]);
			json_array_append_new(after, json_string(tid));
		}
		free(deps);
		snprintf(tid, sizeof tid, "task-%lld", (long long)id);
		o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:{s:I, s:I, s:f, s:i, s:i}, s:o}", "task_id",
		              tid, "name", (const char *)sqlite3_column_text(st, 1), "user",
		              (const char *)sqlite3_column_text(st, 2), "status", state, "priority",
		              sqlite3_column_int(st, 4), "progress", "current_step", (json_int_t)step,
		              "total_steps", (json_int_t)total, "percentage", percentage(state, step, total),
		              "epoch",
		              sqlite3_column_int(st, 7), "epochs", sqlite3_column_int(st, 8), "metrics",
		              metrics ? metrics : json_object());
		if (strcmp(state, "completed") == 0 && step < total)
			json_object_set_new(json_object_get(o, "progress"), "stopped_early", json_true());
		json_object_set_new(o, "resource_requirements",
		                    json_pack("{s:f, s:I, s:i}", "cpu",
		                              sqlite3_column_int64(st, 10) / 1000.0, "memory",
		                              (json_int_t)sqlite3_column_int64(st, 11), "gpu",
		                              sqlite3_column_int(st, 12)));
		json_object_set_new(o, "resource_usage",
		                    json_pack("{s:f, s:I, s:i, s:f, s:I}", "cpu",
		                              r ? r->alloc.cpu_millis / 1000.0 : 0.0, "memory",
		                              (json_int_t)(r ? r->alloc.memory : 0), "gpu",
		                              r ? (int)r->alloc.gpu : 0, "cpu_time_s",
		                              sqlite3_column_int64(st, 22) / 1000.0, "max_rss",
		                              (json_int_t)sqlite3_column_int64(st, 23)));
		put_time(o, "created_at", st, 13);
		put_time(o, "started_at", st, 14);
		put_time(o, "finished_at", st, 15);
		put_time(o, "updated_at", st, 16);
		if ((t = event_time(id, "paused")) != NULL)
			json_object_set_new(o, "paused_at", json_string(t));
		free(t);
		if (strcmp(state, "cancelled") == 0 && (t = event_time(id, "cancelled")) != NULL) {
			json_object_set_new(o, "cancelled_at", json_string(t));
			free(t);
		}
		if (sqlite3_column_type(st, 17) != SQLITE_NULL)
			json_object_set_new(o, "error",
			                    json_string((const char *)sqlite3_column_text(st, 17)));
		if ((strcmp(state, "pending") == 0 || strcmp(state, "paused") == 0)) {
			const char *w = (const char *)sqlite3_column_text(st, 18);
			if (!sqlite3_column_int(st, 21))
				w = strcmp(state, "pending") == 0 ? "not started; POST …/start to queue it"
				                                  : "paused; POST …/resume to continue";
			json_object_set_new(o, "waiting_reason", json_string(w));
		}
		for (const unstored *c = U.head; c; c = c->next) {
			/* loomd's own move, not stored yet: said, not hidden */
			if (c->job == id && c->kind == CHANGE_STATE) {
				json_object_set_new(o, "unstored_status",
				                    json_string(loom_job_state_name(c->to)));
				json_object_set_new(o, "message",
				                    json_pack("s", "its move is kept in memory until the "
				                                   "state database can write again; GET "
				                                   "/api/v1/health says why"));
			}
		}
		if (r && r->control != LOOM_CONTROL_RUN)
			json_object_set_new(o, "requested",
			                    json_string(r->control == LOOM_CONTROL_PAUSE ? "pause"
			                                                                 : "cancel"));
		json_object_set_new(o, "attempts", json_integer(sqlite3_column_int(st, 19)));
		json_object_set_new(o, "max_retries", json_integer(sqlite3_column_int(st, 20)));
		json_object_set_new(o, "timeout_s", json_real(sqlite3_column_int64(st, 24) / 1000.0));
		json_object_set_new(o, "preemptible", json_boolean(sqlite3_column_int(st, 25)));
		json_object_set_new(o, "after", after);
		{
			char *dir = job_dir(id);
			json_object_set_new(o, "out_dir", json_string(dir));
			free(dir);
		}
		json_object_set_new(o, "spec", json_loads((const char *)sqlite3_column_text(st, 26),
		                                          0, NULL));
		if (sqlite3_column_type(st, 27) != SQLITE_NULL) {
			char cid[32];
			snprintf(cid, sizeof cid, "config-%lld", (long long)sqlite3_column_int64(st, 27));
			json_object_set_new(o, "config_id", json_string(cid));
			json_object_set_new(o, "config_version", json_integer(sqlite3_column_int64(st, 28)));
		}
	}
	unprep(st);
	pthread_mutex_unlock(&J->mtx);
	return o;
}

int
loomi_jobs_owner(loomi_daemon *d, const char *id, char **owner, char canon[LOOMI_OBJECT_ID_MAX])
{
	int64_t job = loomi_job_id_parse(id);
	sqlite3_stmt *st;
	int rv = LOOM_ENOENT;

	(void)d;
	if (job <= 0)
		return LOOM_ENOENT;
	pthread_mutex_lock(&J->mtx);
	st = prep("SELECT user FROM jobs WHERE id = ?");
	sqlite3_bind_int64(st, 1, job);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		*owner = loomi_strdup((const char *)sqlite3_column_text(st, 0));
		snprintf(canon, LOOMI_OBJECT_ID_MAX, "task-%lld", (long long)job);
		rv = 0;
	}
	unprep(st);
	pthread_mutex_unlock(&J->mtx);
	return rv;
}

static json_t *
list_row(sqlite3_stmt *st)
{
	char tid[32], *t = loomi_iso_time(sqlite3_column_int64(st, 7));
	int64_t step = sqlite3_column_int64(st, 5), tot = sqlite3_column_int64(st, 6);
	json_t *o;

	snprintf(tid, sizeof tid, "task-%lld", (long long)sqlite3_column_int64(st, 0));
	o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:f, s:s}", "task_id", tid, "name",
	              (const char *)sqlite3_column_text(st, 1), "user",
	              (const char *)sqlite3_column_text(st, 2), "status",
	              (const char *)sqlite3_column_text(st, 3), "priority",
	              sqlite3_column_int(st, 4), "progress",
	              percentage((const char *)sqlite3_column_text(st, 3), step, tot), "created_at",
	              t);
	free(t);
	return o;
}

/* A page of the tasks a user who is not an admin may see: their own and
 * those shared with them (the totals counted, not taken from job_counts). */
static json_t *
list_visible(const loomi_caller *who, const char *status, const char *user, int64_t limit,
             int64_t offset)
{
	char *vis = loomi_auth_visible_sql("task", "('task-' || jobs.id)", "jobs.user");
	char *where = loomi_strfmt(" WHERE %s AND (?1 IS NULL OR state = ?1) AND"
	                           " (?2 IS NULL OR user = ?2)", vis);
	char *sql;
	sqlite3_stmt *st;
	json_t *list = json_array();
	int64_t total = 0;

	pthread_mutex_lock(&J->mtx);
	sql = loomi_strfmt("SELECT count(*) FROM jobs%s", where);
	st = prep(sql);
	free(sql);
	sqlite3_bind_text(st, 1, status, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
	loomi_auth_bind(st, who);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		total = sqlite3_column_int64(st, 0);
	unprep(st);
	sql = loomi_strfmt("SELECT id, name, user, state, priority, progress_step, progress_total,"
	                   " created_at FROM jobs%s ORDER BY id DESC LIMIT ?3 OFFSET ?4", where);
	st = prep(sql);
	free(sql);
	sqlite3_bind_text(st, 1, status, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, limit);
	sqlite3_bind_int64(st, 4, offset);
	loomi_auth_bind(st, who);
	while (st && sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(list, list_row(st));
	unprep(st);
	pthread_mutex_unlock(&J->mtx);
	free(where);
	free(vis);
	return json_pack("{s:o, s:I, s:I, s:I}", "tasks", list, "total", (json_int_t)total, "limit",
	                 (json_int_t)limit, "offset", (json_int_t)offset);
}

json_t *
loomi_jobs_list(loomi_daemon *d, const loomi_caller *who, const char *status, const char *user,
                int64_t limit, int64_t offset, char **msg)
{
	sqlite3_stmt *st;
	json_t *list, *out;
	int64_t total = 0;

	(void)d;
	if (status && loom_job_state_parse(status) == 0) {
		*msg = loomi_strfmt("status: \"%s\" is not a state; use pending, running, paused, "
		                    "completed, failed or cancelled",
		                    status);
		return NULL;
	}
	if (who && who->role != LOOMI_ROLE_ADMIN)
		return list_visible(who, status, user, limit, offset);
	/* the total from job_counts (kept by triggers), not count(*) of 100,000
	 * rows; one statement per filter combination, so SQLite picks the index
	 * ("?1 IS NULL OR state = ?1" would scan the table) */
	static const char *const count_sql[] = {
		"SELECT coalesce(sum(n), 0) FROM job_counts",
		"SELECT coalesce(sum(n), 0) FROM job_counts WHERE state = ?1",
		"SELECT coalesce(sum(n), 0) FROM job_counts WHERE user = ?2",
		"SELECT coalesce(sum(n), 0) FROM job_counts WHERE state = ?1 AND user = ?2",
	};
	static const char *const page_sql[] = {
		"",
		" WHERE state = ?1",
		" WHERE user = ?2",
		" WHERE state = ?1 AND user = ?2",
		" WHERE id <= ?5",
	};
	int64_t dense_top = 0;
	int which = (status ? 1 : 0) | (user ? 2 : 0);
	char *sql;

	pthread_mutex_lock(&J->mtx);
	st = prep(count_sql[which]);
	sqlite3_bind_text(st, 1, status, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		total = sqlite3_column_int64(st, 0);
	unprep(st);
	list = json_array();
	if (which == 0 && offset > 0) {
		/* ids are dense while no task was deleted: then the page starts at
		 * id max - offset, a seek instead of a walk past offset rows */
		/* two subqueries: min and max in one select would scan the table */
		st = prep("SELECT (SELECT min(id) FROM jobs), (SELECT max(id) FROM jobs)");
		if (st && sqlite3_step(st) == SQLITE_ROW &&
		    sqlite3_column_int64(st, 1) - sqlite3_column_int64(st, 0) + 1 == total) {
			dense_top = sqlite3_column_int64(st, 1) - offset;
			which = 4;
		}
		unprep(st);
	}
	/* the page's ids first (an index walk, also for a deep offset), then
	 * their rows */
	sql = loomi_strfmt("SELECT id, name, user, state, priority, progress_step, progress_total,"
	                   " created_at FROM jobs WHERE id IN (SELECT id FROM jobs%s"
	                   " ORDER BY id DESC LIMIT ?3 OFFSET ?4) ORDER BY id DESC",
	                   page_sql[which]);
	st = prep(sql);
	free(sql);
	sqlite3_bind_text(st, 1, status, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, limit);
	sqlite3_bind_int64(st, 4, which == 4 ? 0 : offset);
	sqlite3_bind_int64(st, 5, dense_top);
	while (st && sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(list, list_row(st));
	unprep(st);
	pthread_mutex_unlock(&J->mtx);
	out = json_pack("{s:o, s:I, s:I, s:I}", "tasks", list, "total", (json_int_t)total, "limit",
	                (json_int_t)limit, "offset", (json_int_t)offset);
	return out;
}

json_t *
loomi_jobs_resources(loomi_daemon *d)
{
	json_t *jobs = json_array(), *out;
	loom_resources used = {0};

	(void)d;
	pthread_mutex_lock(&J->mtx);
	for (size_t i = 0; i < J->n_runs; i++) {
		char tid[32];
		run *r = &J->runs[i];
		snprintf(tid, sizeof tid, "task-%lld", (long long)r->job);
		used.cpu_millis += r->alloc.cpu_millis;
		used.memory += r->alloc.memory;
		used.gpu += r->alloc.gpu;
		json_array_append_new(jobs, json_pack("{s:s, s:i, s:f, s:I, s:i}", "task_id", tid,
		                                      "pid", (int)r->pid, "cpu",
		                                      r->alloc.cpu_millis / 1000.0, "memory",
		                                      (json_int_t)r->alloc.memory, "gpu",
		                                      (int)r->alloc.gpu));
	}
	out = json_pack(
		"{s:[{s:s, s:{s:f, s:I, s:i}, s:{s:f, s:I, s:i}}], s:o, s:s?}", "nodes", "name",
		J->node_name, "total", "cpu", J->total.cpu_millis / 1000.0, "memory",
		(json_int_t)J->total.memory, "gpu", (int)J->total.gpu, "free", "cpu",
		(J->total.cpu_millis - (used.cpu_millis < J->total.cpu_millis ? used.cpu_millis
		                                                              : J->total.cpu_millis)) /
			1000.0,
		"memory",
		(json_int_t)(J->total.memory - (used.memory < J->total.memory ? used.memory
		                                                              : J->total.memory)),
		"gpu", (int)(J->total.gpu - (used.gpu < J->total.gpu ? used.gpu : J->total.gpu)), "jobs",
		jobs, "scheduler", J->sched ? J->sched->name : NULL);
	pthread_mutex_unlock(&J->mtx);
	return out;
}

/* ------------------------------------------------------------------ start / stop */

/* GPUs through NVML, when the driver is there (dlopen: no build dependency). */
static uint32_t
count_gpus(void)
{
	void *h = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
	int (*init)(void), (*count)(unsigned *), (*shutdown)(void);
	unsigned n = 0;

	if (h == NULL)
		return 0;
	*(void **)&init = dlsym(h, "nvmlInit_v2");
	*(void **)&count = dlsym(h, "nvmlDeviceGetCount_v2");
	*(void **)&shutdown = dlsym(h, "nvmlShutdown");
	if (init && count && init() == 0) {
		if (count(&n) != 0)
			n = 0;
		if (shutdown)
			shutdown();
	}
	dlclose(h);
	return n > 64 ? 64 : n;
}

/* Is pid a loom-worker running job id? */
static bool
is_our_worker(pid_t pid, int64_t id)
{
	char path[64], buf[4096], want[32];
	int fd;
	ssize_t n;
	bool worker = false, job = false;

	snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
	snprintf(want, sizeof want, "%lld", (long long)id);
	if ((fd = open(path, O_RDONLY)) < 0)
		return false;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	for (char *p = buf, *prev = NULL; p < buf + n; prev = p, p += strlen(p) + 1) {
		const char *base = strrchr(p, '/');
		if (strcmp(base ? base + 1 : p, "loom-worker") == 0 ||
		    strstr(p, "lt-loom-worker") != NULL)
			worker = true;
		if (prev && strcmp(prev, "--job") == 0 && strcmp(p, want) == 0)
			job = true;
	}
	return worker && job;
}

/* Jobs the last loomd left running: stop their workers if alive, queue
 * them to resume from their newest checkpoint. */
static void
recover(void)
{
	sqlite3_stmt *st = prep("SELECT id, worker_pid FROM jobs WHERE state = 'running'");
	int64_t ids[1024];
	pid_t pids[1024];
	size_t n = 0;

	while (st && sqlite3_step(st) == SQLITE_ROW && n < 1024) {
		ids[n] = sqlite3_column_int64(st, 0);
		pids[n] = (pid_t)sqlite3_column_int64(st, 1);
		n++;
	}
	unprep(st);
	for (size_t i = 0; i < n; i++) {
		if (pids[i] > 0 && is_our_worker(pids[i], ids[i])) {
			/* the loop requeues the job once the worker has gone; until then
			 * the job stays running and holds its resources */
			LOG_INFO("task-%lld: stopping worker %d left by the previous loomd (it "
			         "checkpoints, then the task resumes in a new worker)",
			         (long long)ids[i], (int)pids[i]);
			kill(pids[i], SIGTERM);
			J->orphans = loomi_xrealloc(J->orphans, (J->n_orphans + 1) * sizeof *J->orphans);
			J->orphans[J->n_orphans++] = (orphan){ids[i], pids[i], loomi_wall_ms(), false};
		} else {
			requeue_recovered(ids[i]);
		}
	}
}

int
loomi_jobs_start(loomi_daemon *d, char **err)
{
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);

	J = loomi_xcalloc(1, sizeof *J);
	J->d = d;
	pthread_mutex_init(&J->mtx, NULL);
	pthread_cond_init(&J->cond, NULL);
	/* jobs.worker, else $LOOM_WORKER (a build tree), else the installed one */
	if (d->conf.jobs_worker)
		J->worker = loomi_strdup(d->conf.jobs_worker);
	else if (getenv("LOOM_WORKER") && getenv("LOOM_WORKER")[0])
		J->worker = loomi_strdup(getenv("LOOM_WORKER"));
	else
		J->worker = loomi_strfmt("%s/loom-worker", LOOM_BINDIR);
	J->bus_addr = d->conf.bus_requests ? loomi_strdup(d->conf.bus_requests)
	                                   : loomi_strfmt("ipc://%s/bus.req", d->conf.state_dir);
	J->jobs_dir = loomi_path_join(d->conf.state_dir, "jobs");
	J->total.cpu_millis = d->conf.jobs_cpu_millis
	                          ? d->conf.jobs_cpu_millis
	                          : (uint32_t)(1000 * sysconf(_SC_NPROCESSORS_ONLN));
	J->total.memory = d->conf.jobs_memory ? d->conf.jobs_memory
	                                      : (uint64_t)pages * (uint64_t)page;
	J->total.gpu = count_gpus();
	J->total.gpu_mask = J->total.gpu ? (J->total.gpu >= 64 ? ~0ull : (1ull << J->total.gpu) - 1)
	                                 : 0;
	snprintf(J->node_name, sizeof J->node_name, "local");

	/* the scheduler: the configured instance, or the first one */
	for (size_t i = 0; i < d->plugins.n_instances; i++) {
		loom_instance *ins = d->plugins.instances[i];
		if (ins->kind != LOOM_KIND_SCHEDULER)
			continue;
		if (d->conf.jobs_scheduler ? strcmp(ins->name, d->conf.jobs_scheduler) == 0
		                           : J->sched == NULL)
			J->sched = ins;
	}
	if (d->conf.jobs_scheduler && J->sched == NULL) {
		*err = loomi_strfmt("jobs.scheduler: no scheduler plugin instance \"%s\" in plugins",
		                    d->conf.jobs_scheduler);
		loomi_jobs_stop(d);
		return LOOM_ECONFIG;
	}
	if (J->sched) {
		J->sched_ops = J->sched->desc->ops;
		J->sched_ctx = J->sched->ctx;
	} else {
		LOG_WARN("jobs: no scheduler plugin instance in plugins; submitted jobs will wait "
		         "(add one with module sched-local)");
	}
	if (loomi_mkdir_p(J->jobs_dir, 0750) != 0) {
		*err = loomi_strfmt("cannot create %s: %s", J->jobs_dir, strerror(errno));
		loomi_jobs_stop(d);
		return LOOM_EIO;
	}
	{
		/* absolute: workers and a detached loomd (cwd /) must agree */
		char *abs = realpath(J->jobs_dir, NULL);
		if (abs) {
			free(J->jobs_dir);
			J->jobs_dir = abs;
		}
	}
	if (access(J->worker, X_OK) != 0)
		LOG_WARN("jobs: the worker program %s is not executable (%s); set jobs.worker",
		         J->worker, strerror(errno));
	if (loomi_bus_serve(d->bus, "job.attach", svc_attach, NULL, J) != 0 ||
	    loomi_bus_serve(d->bus, "job.report", svc_report, NULL, J) != 0 ||
	    loomi_bus_serve(d->bus, "job.finish", svc_finish, NULL, J) != 0) {
		*err = loomi_strdup("cannot serve job.* on the bus (taken by a plugin?)");
		loomi_jobs_stop(d);
		return LOOM_EEXIST;
	}
	pthread_mutex_lock(&J->mtx);
	cgroup_setup();
	recover();
	pthread_mutex_unlock(&J->mtx);
	if (pthread_create(&J->thread, NULL, loop, NULL) != 0) {
		*err = loomi_strdup("cannot start the scheduling thread");
		loomi_jobs_stop(d);
		return LOOM_EIO;
	}
	J->thread_up = true;
	LOG_INFO("jobs: %.3g cpu, %llu MiB, %u gpu; scheduler %s; worker %s",
	         J->total.cpu_millis / 1000.0, (unsigned long long)(J->total.memory >> 20),
	         J->total.gpu, J->sched ? J->sched->name : "(none)", J->worker);
	return 0;
}

void
loomi_jobs_stop(loomi_daemon *d)
{
	int64_t t0;

	if (J == NULL)
		return;
	/* pause what runs; it resumes when loomd starts again */
	pthread_mutex_lock(&J->mtx);
	J->stopping = true;
	pthread_cond_broadcast(&J->cond);
	for (size_t i = 0; i < J->n_runs; i++) {
		run *r = &J->runs[i];
		if (r->control == LOOM_CONTROL_RUN) {
			r->requeue = true;
			ask_stop(r, LOOM_CONTROL_PAUSE,
			         loomi_strdup("loomd stopped; resumes when it starts again"));
		}
	}
	pthread_mutex_unlock(&J->mtx);
	if (J->thread_up)
		pthread_join(J->thread, NULL);
	t0 = loomi_wall_ms();
	pthread_mutex_lock(&J->mtx);
	for (size_t i = J->n_runs; i-- > 0;)
		if (J->runs[i].pid == 0)
			unstarted(&J->runs[i], "loomd stopped before its worker started");
	/* reap() stops what does not stop on request: SIGTERM after
	 * jobs.stop_grace, SIGKILL after another */
	while (J->n_runs > 0 || J->n_orphans > 0) {
		reap();
		if (J->n_runs == 0 && J->n_orphans == 0)
			break;
		if (loomi_wall_ms() - t0 > 4 * J->d->conf.jobs_stop_grace_ms + 60000) {
			/* a worker SIGKILL did not end (in the kernel, D state) */
			for (size_t i = 0; i < J->n_runs; i++)
				LOG_ERROR("task-%lld: worker %d did not end after SIGKILL; leaving it",
				          (long long)J->runs[i].job, (int)J->runs[i].pid);
			while (J->n_runs > 0)
				run_remove(&J->runs[J->n_runs - 1]);
			break;
		}
		pthread_mutex_unlock(&J->mtx);
		usleep(20000);
		pthread_mutex_lock(&J->mtx);
	}
	/* a last try for the changes still kept; what remains is redone at the
	 * next start, which requeues the tasks left running */
	retry_unstored();
	if (U.n > 0)
		LOG_ERROR("jobs: %zu change%s of tasks could not be stored before loomd stopped (the "
		          "state database cannot write); the tasks left running are requeued when "
		          "loomd starts again",
		          U.n, U.n == 1 ? "" : "s");
	while (U.head) {
		unstored *c = U.head;
		U.head = c->next;
		unstored_free(c);
	}
	U.tail = &U.head;
	U.n = 0;
	pthread_mutex_unlock(&J->mtx);
	if (d->bus)
		loomi_bus_drop_owner(d->bus, J);
	unprep_all();
	free(J->runs);
	free(J->orphans);
	free(J->worker);
	free(J->bus_addr);
	free(J->jobs_dir);
	free(J->cgroup_base);
	pthread_cond_destroy(&J->cond);
	pthread_mutex_destroy(&J->mtx);
	free(J);
	J = NULL;
}

/* The inference service (inference.h): the predict route, the inference
 * workers that answer it, and the answer cache. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <loom/error.h>

#include "host/core/log.h"
#include "host/core/serve.h"
#include "host/core/util.h"
#include "host/registry/registry.h"
#include "host/server/auth.h"
#include "host/server/module.h"
#include "inference.h"
#include "sample.h"

extern char **environ;

#define START_TIMEOUT_MS 60000       /* a worker's "ready" line */
#define CALL_TIMEOUT_MS 30000        /* one predict (up to 65,536 windows) */
#define RETRY_MS 5000                /* after a failed start */
#define INFERENCE_IDLE_MS 600000     /* a worker without requests is stopped */
#define STOP_GRACE_MS 5000           /* SIGTERM → SIGKILL */
#define EXIT_WAIT_MS 2000            /* a worker whose connection closed, to exit */
#define CACHE_BYTES (64u << 20)
#define CACHE_MAX_ENTRY (CACHE_BYTES / 8) /* larger answers are not kept */

enum { W_STARTING, W_READY, W_FAILED };

/* One inference worker: the process serving one model version. */
typedef struct worker {
	int64_t model, version;
	char *dir;
	int state;
	bool restarting;        /* started again after a death: requests do not wait */
	char *why;              /* W_FAILED: why; after a death: the death */
	uint64_t failed_ns;     /* W_FAILED: when */
	pid_t pid;
	unsigned gen;           /* a new socket path per process */
	char *url, *sock;
	loomi_serve_client *client;
	json_t *info;           /* the model's info (W_READY) */
	pthread_mutex_t call;   /* one request at a time */
	int refs;               /* requests holding it */
	uint64_t used_ns;
	struct worker *next;
} worker;

/* What an answer says besides its body: the windows it answered (for the
 * counters) and, for a binary answer, its headers (the same on a hit as
 * on the miss that made it). */
typedef struct meta {
	uint32_t windows;
	uint32_t passes;        /* MC-dropout passes, 0 when none */
	bool spread;            /* a spread follows the outputs */
	char shape[40];         /* "5,12,1" */
	char method[48];        /* the uncertainty method, when spread */
} meta;

/* A cached answer: the key's bytes (its head, then the request's body),
 * then the answer's. */
typedef struct entry {
	uint64_t hash;
	size_t key_len, body_len;
	char *key, *body;
	meta m;
	struct entry *prev, *next;   /* LRU list, newest first */
	struct entry *chain;         /* hash bucket */
} entry;

#define N_BUCKETS 4096

static struct {
	bool up, stopping;
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	worker *workers;
	char *program, *dir, *conf;
	char *state; /* loomd's state directory: the workers' plugins resolve under it */
	/* the cache, under cmtx */
	pthread_mutex_t cmtx;
	entry *buckets[N_BUCKETS];
	entry *newest, *oldest;
	uint64_t bytes;
	loomi_inference_stats st;  /* counters: under mtx, the cache's under cmtx */
} S = {.mtx = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER,
       .cmtx = PTHREAD_MUTEX_INITIALIZER};

/* ------------------------------------------------------------------ the cache */

static inline uint64_t
rotl64(uint64_t x, int r)
{
	return x << r | x >> (64 - r);
}

#define K1 0x9e3779b97f4a7c15ull
#define K2 0xc2b2ae3d27d4eb4full
#define K3 0x165667b19e3779f9ull

/* A 64-bit hash of n bytes, seeded with h: four independent lanes of
 * 8-byte words (a multiply and a rotate each) where byte-at-a-time FNV-1a
 * waited on one multiply per byte, so a megabyte body hashes in about a
 * tenth of a millisecond.  Keys are compared in full: only the spread over
 * the buckets depends on it. */
static uint64_t
hash_bytes(const void *p, size_t n, uint64_t h)
{
	const unsigned char *b = p;
	uint64_t l[4] = {h ^ K1, h ^ K2, h + K3, h - K1}, w;
	size_t i = 0;

	for (; i + 32 <= n; i += 32)
		for (int k = 0; k < 4; k++) {
			memcpy(&w, b + i + 8 * (size_t)k, 8);
			l[k] = rotl64(l[k] ^ w * K2, 31) * K1;
		}
	h = rotl64(l[0], 1) + rotl64(l[1], 7) + rotl64(l[2], 12) + rotl64(l[3], 18) + (uint64_t)n;
	for (; i + 8 <= n; i += 8) {
		memcpy(&w, b + i, 8);
		h = rotl64(h ^ w * K2, 27) * K1 + K3;
	}
	for (; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	return h ^ h >> 33;
}

static void
lru_unlink(entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		S.newest = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		S.oldest = e->prev;
	e->prev = e->next = NULL;
}

static void
lru_front(entry *e)
{
	e->next = S.newest;
	e->prev = NULL;
	if (S.newest)
		S.newest->prev = e;
	S.newest = e;
	if (S.oldest == NULL)
		S.oldest = e;
}

static size_t
entry_bytes(const entry *e)
{
	return sizeof *e + e->key_len + e->body_len;
}

static void
evict_oldest(void)
{
	entry *e = S.oldest, **pp;
	lru_unlink(e);
	for (pp = &S.buckets[e->hash % N_BUCKETS]; *pp != e; pp = &(*pp)->chain)
		;
	*pp = e->chain;
	S.bytes -= entry_bytes(e);
	S.st.cache_entries--;
	S.st.cache_evictions++;
	free(e->key);
	free(e->body);
	free(e);
}

/* A key: a head (the model, the version, the name asked, the body's kind
 * and options) and the request's body as sent, compared in full.  Two
 * bodies that mean the same windows in different bytes (spacing, digits)
 * are two keys: a miss, never a wrong answer. */
typedef struct key {
	const void *head;
	size_t head_len;
	const void *body;
	size_t body_len;
	uint64_t hash;
} key;

static bool
key_is(const entry *e, const key *k)
{
	return e->hash == k->hash && e->key_len == k->head_len + k->body_len &&
	       memcmp(e->key, k->head, k->head_len) == 0 &&
	       memcmp(e->key + k->head_len, k->body, k->body_len) == 0;
}

/* The cached answer for k (a copy) and what it says, or NULL. */
static char *
cache_get(const key *k, size_t *body_len, meta *m)
{
	char *out = NULL;
	pthread_mutex_lock(&S.cmtx);
	for (entry *e = S.buckets[k->hash % N_BUCKETS]; e; e = e->chain)
		if (key_is(e, k)) {
			lru_unlink(e);
			lru_front(e);
			out = loomi_xmalloc(e->body_len + 1);
			memcpy(out, e->body, e->body_len + 1);
			*body_len = e->body_len;
			*m = e->m;
			break;
		}
	if (out)
		S.st.cache_hits++;
	else
		S.st.cache_misses++;
	pthread_mutex_unlock(&S.cmtx);
	return out;
}

static void
cache_put(const key *k, const char *body, size_t body_len, const meta *m)
{
	size_t key_len = k->head_len + k->body_len;
	entry *e;
	if (sizeof *e + key_len + body_len > CACHE_MAX_ENTRY)
		return;
	pthread_mutex_lock(&S.cmtx);
	for (e = S.buckets[k->hash % N_BUCKETS]; e; e = e->chain)
		if (key_is(e, k))
			break;
	if (e == NULL) {
		e = loomi_xcalloc(1, sizeof *e);
		e->hash = k->hash;
		e->key_len = key_len;
		e->key = loomi_xmalloc(key_len);
		memcpy(e->key, k->head, k->head_len);
		memcpy(e->key + k->head_len, k->body, k->body_len);
		e->body_len = body_len;
		e->body = loomi_xmalloc(body_len + 1);
		memcpy(e->body, body, body_len);
		e->body[body_len] = '\0';
		e->m = *m;
		while (S.oldest && S.bytes + entry_bytes(e) > CACHE_BYTES)
			evict_oldest();
		e->chain = S.buckets[k->hash % N_BUCKETS];
		S.buckets[k->hash % N_BUCKETS] = e;
		lru_front(e);
		S.bytes += entry_bytes(e);
		S.st.cache_entries++;
	}
	pthread_mutex_unlock(&S.cmtx);
}

static void
cache_clear(void)
{
	pthread_mutex_lock(&S.cmtx);
	while (S.oldest)
		evict_oldest();
	pthread_mutex_unlock(&S.cmtx);
}

/* ------------------------------------------------------------------ workers */

/* How a process ended, in words (malloc'd). */
static char *
ended(int ws)
{
	if (WIFSIGNALED(ws))
		return loomi_strfmt("was killed by signal %d (%s)", WTERMSIG(ws),
		                    strsignal(WTERMSIG(ws)));
	return loomi_strfmt("exited with status %d", WEXITSTATUS(ws));
}

/* Stop pid: SIGTERM, then SIGKILL after the grace; reaped. */
static void
stop_process(pid_t pid)
{
	uint64_t until = loomi_mono_ns() + (uint64_t)STOP_GRACE_MS * 1000000u;
	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	while (waitpid(pid, NULL, WNOHANG) == 0) {
		if (loomi_mono_ns() > until) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			return;
		}
		usleep(2000);
	}
}

static char *
log_path(const worker *w)
{
	char name[64];
	snprintf(name, sizeof name, "model-%lld-v%lld.log", (long long)w->model,
	         (long long)w->version);
	return loomi_path_join(S.dir, name);
}

/* The last line of a worker's log (its reason when it failed), or NULL. */
static char *
last_log_line(const worker *w)
{
	char *path = log_path(w), buf[4096], *line = NULL;
	FILE *f = fopen(path, "r");
	free(path);
	if (f == NULL)
		return NULL;
	if (fseek(f, -(long)(sizeof buf - 1), SEEK_END) != 0)
		rewind(f);
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	line = strrchr(buf, '\n');
	line = line ? line + 1 : buf;
	return line[0] ? loomi_strdup(line) : NULL;
}

/* Start w's process and wait for its "ready" line; then connect and read
 * its info.  Called without S.mtx; w is not W_READY meanwhile, so no
 * request uses its fields.  0, or LOOM_E* with *why. */
static int
start_process(worker *w, char **why)
{
	char name[96], *log = log_path(w), *out_url = NULL, line[512];
	int fds[2] = {-1, -1}, rv = 0;
	size_t got = 0;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	pid_t pid = 0;
	uint64_t until = loomi_mono_ns() + (uint64_t)START_TIMEOUT_MS * 1000000u;
	char *info = NULL;

	w->gen++;
	snprintf(name, sizeof name, "model-%lld-v%lld-%u.sock", (long long)w->model,
	         (long long)w->version, w->gen);
	free(w->sock);
	free(w->url);
	w->sock = loomi_path_join(S.dir, name);
	w->url = loomi_strfmt("ipc://%s", w->sock);
	char *argv[] = {S.program, "--serve",     w->dir,  "--listen", w->url, "-c",
	                S.conf,    "--state-dir", S.state, NULL};
	if (pipe2(fds, O_CLOEXEC) != 0) {
		*why = loomi_strfmt("cannot make a pipe: %s", strerror(errno));
		free(log);
		return LOOM_EIO;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0640);
	posix_spawnattr_init(&at);
	sigemptyset(&none);
	sigfillset(&all);
	/* its own process group, default signals: a Ctrl-C at loomd's terminal
	 * is loomd's to handle */
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
	                                  POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setpgroup(&at, 0);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	rv = posix_spawn(&pid, S.program, &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(fds[1]);
	if (rv != 0) {
		*why = loomi_strfmt("cannot start %s: %s; set jobs.worker in loomd.conf to the "
		                    "loom-worker program",
		                    S.program, strerror(rv));
		close(fds[0]);
		free(log);
		return LOOM_EIO;
	}
	w->pid = pid;
	S.st.worker_starts++;
	/* the one line it prints when it listens */
	for (;;) {
		uint64_t now = loomi_mono_ns();
		struct pollfd p = {fds[0], POLLIN, 0};
		ssize_t n;
		if (now >= until) {
			*why = loomi_strfmt("the inference worker did not listen within %d s (its log: %s)",
			                    START_TIMEOUT_MS / 1000, log);
			rv = LOOM_ETIMEDOUT;
			break;
		}
		if (poll(&p, 1, (int)((until - now) / 1000000u) + 1) <= 0)
			continue;
		n = read(fds[0], line + got, sizeof line - 1 - got);
		if (n <= 0) {
			int ws = 0;
			char *how, *last;
			waitpid(pid, &ws, 0);
			w->pid = 0;
			how = ended(ws);
			last = last_log_line(w);
			*why = loomi_strfmt("the inference worker %s before it listened%s%s", how,
			                    last ? ": " : "", last ? last : "");
			free(how);
			free(last);
			rv = LOOM_EIO;
			break;
		}
		got += (size_t)n;
		line[got] = '\0';
		if (strchr(line, '\n')) {
			*strchr(line, '\n') = '\0';
			if (strncmp(line, "ready ", 6) == 0)
				out_url = line + 6;
			else {
				*why = loomi_strfmt("the inference worker said \"%.200s\" instead of ready",
				                    line);
				rv = LOOM_EPROTO;
			}
			break;
		}
		if (got == sizeof line - 1) {
			*why = loomi_strdup("the inference worker's first line is too long");
			rv = LOOM_EPROTO;
			break;
		}
	}
	close(fds[0]); /* it prints nothing after ready (docs/inference.md) */
	if (rv == 0 && (rv = loomi_serve_client_open(out_url, CALL_TIMEOUT_MS, &w->client, why)) == 0 &&
	    (rv = loomi_serve_client_info(w->client, &info, why)) == 0) {
		json_decref(w->info);
		w->info = json_loads(info, 0, NULL);
		if (w->info == NULL) {
			*why = loomi_strdup("the inference worker's info is not JSON");
			rv = LOOM_EPROTO;
		}
	}
	free(info);
	if (rv != 0) {
		if (w->client) {
			loomi_serve_client_close(w->client);
			w->client = NULL;
		}
		if (w->pid > 0) {
			stop_process(w->pid);
			w->pid = 0;
		}
	}
	free(log);
	return rv;
}

/* The process of w is gone or useless: close it (called without S.mtx,
 * holding w->call or being the only user). */
static void
close_process(worker *w)
{
	if (w->client) {
		loomi_serve_client_close(w->client);
		w->client = NULL;
	}
	if (w->pid > 0) {
		stop_process(w->pid);
		w->pid = 0;
	}
	if (w->sock) {
		unlink(w->sock);
		char *lock = loomi_strfmt("%s.lock", w->sock);
		unlink(lock);
		free(lock);
	}
}

static void
worker_free(worker *w)
{
	close_process(w);
	pthread_mutex_destroy(&w->call);
	json_decref(w->info);
	free(w->dir);
	free(w->why);
	free(w->url);
	free(w->sock);
	free(w);
}

/* Start w (W_STARTING) on this thread and publish the outcome.  Holds
 * w->call meanwhile: a request that took w before it died waits for the
 * new process rather than reading its fields half-made. */
static void
bring_up(worker *w)
{
	char *why = NULL;
	int rv;
	pthread_mutex_lock(&w->call);
	rv = start_process(w, &why);
	pthread_mutex_lock(&S.mtx);
	if (rv == 0) {
		w->state = W_READY;
		w->restarting = false;
		free(w->why);
		w->why = NULL;
		LOG_INFO("inference: model %lld version %lld served by pid %d at %s",
		         (long long)w->model, (long long)w->version, (int)w->pid, w->url);
	} else {
		w->state = W_FAILED;
		w->failed_ns = loomi_mono_ns();
		free(w->why);
		w->why = why;
		why = NULL;
		LOG_WARN("inference: model %lld version %lld: %s", (long long)w->model,
		         (long long)w->version, w->why);
	}
	pthread_cond_broadcast(&S.cv);
	pthread_mutex_unlock(&S.mtx);
	pthread_mutex_unlock(&w->call);
	free(why);
}

static void *
restart_thread(void *arg)
{
	worker *w = arg;
	bring_up(w);
	pthread_mutex_lock(&S.mtx);
	w->refs--; /* the restart's own reference */
	pthread_cond_broadcast(&S.cv);
	pthread_mutex_unlock(&S.mtx);
	return NULL;
}

/* Stop workers idle for INFERENCE_IDLE_MS (under S.mtx; the ones found are
 * unlinked into *idle for the caller to free without the lock). */
static void
collect_idle(worker **idle)
{
	uint64_t now = loomi_mono_ns();
	for (worker **pp = &S.workers; *pp;) {
		worker *w = *pp;
		if (w->refs == 0 && w->state != W_STARTING &&
		    now - w->used_ns > (uint64_t)INFERENCE_IDLE_MS * 1000000u) {
			*pp = w->next;
			w->next = *idle;
			*idle = w;
			S.st.workers--;
			continue;
		}
		pp = &w->next;
	}
}

/* The worker of model version (model, version) in dir, referenced (drop it
 * with release), ready; or NULL with *status and *why set (503: starting
 * again after a death, or failed to start). */
static worker *
acquire(int64_t model, int64_t version, const char *dir, int *status, char **why)
{
	worker *w, *idle = NULL;
	bool start = false;

	pthread_mutex_lock(&S.mtx);
	if (S.stopping) {
		pthread_mutex_unlock(&S.mtx);
		*status = 503;
		*why = loomi_strdup("loomd is stopping");
		return NULL;
	}
	collect_idle(&idle);
	for (w = S.workers; w; w = w->next)
		if (w->model == model && w->version == version)
			break;
	if (w == NULL) {
		w = loomi_xcalloc(1, sizeof *w);
		w->model = model;
		w->version = version;
		w->dir = loomi_strdup(dir);
		w->state = W_STARTING;
		pthread_mutex_init(&w->call, NULL);
		w->next = S.workers;
		S.workers = w;
		S.st.workers++;
		start = true;
	} else if (w->state == W_FAILED && !w->restarting &&
	           loomi_mono_ns() - w->failed_ns > (uint64_t)RETRY_MS * 1000000u) {
		w->state = W_STARTING;
		start = true;
	}
	w->refs++;
	w->used_ns = loomi_mono_ns();
	pthread_mutex_unlock(&S.mtx);
	while (idle) {
		worker *next = idle->next;
		LOG_INFO("inference: model %lld version %lld idle for %d s; its worker stops",
		         (long long)idle->model, (long long)idle->version, INFERENCE_IDLE_MS / 1000);
		worker_free(idle);
		idle = next;
	}
	if (start)
		bring_up(w);
	pthread_mutex_lock(&S.mtx);
	/* a first start is waited for; a restart after a death is not */
	while (w->state == W_STARTING && !w->restarting && !S.stopping)
		pthread_cond_wait(&S.cv, &S.mtx);
	if (w->state != W_READY) {
		*status = 503;
		if (w->state == W_STARTING)
			*why = loomi_strfmt("the inference worker of this version is starting again "
			                    "after it %s; retry in a moment",
			                    w->why ? w->why : "stopped");
		else
			*why = loomi_strfmt("the inference worker of this version cannot start: %s "
			                    "(tried again %d s after each failure)",
			                    w->why ? w->why : "unknown", RETRY_MS / 1000);
		w->refs--;
		pthread_cond_broadcast(&S.cv);
		pthread_mutex_unlock(&S.mtx);
		return NULL;
	}
	pthread_mutex_unlock(&S.mtx);
	return w;
}

static void
release(worker *w)
{
	pthread_mutex_lock(&S.mtx);
	w->refs--;
	w->used_ns = loomi_mono_ns();
	pthread_cond_broadcast(&S.cv);
	pthread_mutex_unlock(&S.mtx);
}

/* A call to w failed with rv: if its process is dead (or silent: killed),
 * record why and start it again in the background.  Holding w->call. */
static void
after_failure(worker *w, int rv, const char *err, char **why)
{
	int ws = 0;
	pid_t p = w->pid > 0 ? waitpid(w->pid, &ws, WNOHANG) : 0;
	char *how;
	pthread_t t;

	if (p == 0 && rv != LOOM_ETIMEDOUT && rv != LOOM_EUNREACHABLE && rv != LOOM_EPROTO)
		return; /* alive, and it answered: the request's fault */
	/* a process closes its sockets before it can be waited for: give one
	 * that is exiting a moment, so the reason is how it ended */
	for (int i = 0; p == 0 && w->pid > 0 && i < EXIT_WAIT_MS / 5; i++) {
		usleep(5000);
		p = waitpid(w->pid, &ws, WNOHANG);
	}
	if (p > 0) {
		w->pid = 0;
		how = ended(ws);
	} else {
		how = loomi_strfmt("did not answer (%s) and was stopped", err ? err : "no reply");
	}
	close_process(w);
	*why = loomi_strfmt("the inference worker of this version %s; it is starting again, "
	                    "retry in a moment",
	                    how);
	pthread_mutex_lock(&S.mtx);
	S.st.worker_deaths++;
	LOG_WARN("inference: model %lld version %lld: the worker %s; starting it again",
	         (long long)w->model, (long long)w->version, how);
	free(w->why);
	w->why = how;
	w->state = W_STARTING;
	w->restarting = true;
	w->refs++; /* the restart's */
	if (S.stopping || pthread_create(&t, NULL, restart_thread, w) != 0) {
		w->state = W_FAILED;
		w->failed_ns = loomi_mono_ns();
		w->restarting = false;
		w->refs--;
	} else {
		pthread_detach(t);
	}
	pthread_mutex_unlock(&S.mtx);
}

/* ------------------------------------------------------------------ the route */

/* Numbers of a nested array into v (checked against dims; every value
 * finite).  False with why. */
static bool
flatten(const json_t *a, const int64_t *dims, int depth, float *v, size_t *at, char *why,
        size_t n)
{
	if (depth == 3) {
		double x;
		if (!json_is_number(a)) {
			snprintf(why, n, "value %zu is not a number", *at);
			return false;
		}
		x = json_number_value(a);
		if (!isfinite(x) || fabs(x) > 3.4e38) {
			snprintf(why, n, "value %zu (window %lld, step %lld, channel %lld) is not a finite "
			         "f32 number; fill missing values before predicting",
			         *at, (long long)(*at / (size_t)(dims[1] * dims[2])),
			         (long long)(*at / (size_t)dims[2] % (size_t)dims[1]),
			         (long long)(*at % (size_t)dims[2]));
			return false;
		}
		v[(*at)++] = (float)x;
		return true;
	}
	if (!json_is_array(a) || (int64_t)json_array_size(a) != dims[depth]) {
		snprintf(why, n, "%s must be an array of %lld %s",
		         depth == 0 ? "inputs" : depth == 1 ? "each window" : "each step",
		         (long long)dims[depth], depth == 0 ? "windows" : depth == 1 ? "steps" : "channel values");
		return false;
	}
	for (size_t i = 0; i < json_array_size(a); i++)
		if (!flatten(json_array_get(a, i), dims, depth + 1, v, at, why, n))
			return false;
	return true;
}

static json_t *
nest(const float *v, const uint32_t *dims, uint32_t ndim, size_t *at)
{
	json_t *a = json_array();
	for (uint32_t i = 0; i < dims[0]; i++)
		json_array_append_new(a, ndim == 1 ? json_real(v[(*at)++]) : nest(v, dims + 1, ndim - 1, at));
	return a;
}

static void
fail_answer(loomi_http_res *res, int status, const char *code, const char *msg)
{
	pthread_mutex_lock(&S.mtx);
	S.st.failures++;
	pthread_mutex_unlock(&S.mtx);
	loomi_api_error(res, status, code, "%s", msg);
	if (status == 503)
		loomi_api_header(res, "Retry-After", "1");
}

/* A JSON body's "uncertainty" and "passes" (the windows' and the file's
 * forms alike); false with why. */
static bool
read_options(const json_t *body, bool *spread, uint32_t *passes, char *why, size_t n)
{
	const json_t *v = json_object_get(body, "uncertainty");

	if (v && !json_is_boolean(v)) {
		snprintf(why, n, "uncertainty: true or false");
		return false;
	}
	*spread = json_is_true(v);
	v = json_object_get(body, "passes");
	if (v && (!json_is_integer(v) || json_integer_value(v) < 1 ||
	          json_integer_value(v) > LOOMI_SERVE_MAX_PASSES)) {
		snprintf(why, n, "passes: a whole number from 1 to %u (Monte-Carlo-dropout passes)",
		         LOOMI_SERVE_MAX_PASSES);
		return false;
	}
	*passes = v ? (uint32_t)json_integer_value(v) : 0;
	return true;
}

/* The body's fields: {"inputs": [...], "uncertainty": bool, "passes": N}. */
static bool
read_body(const json_t *body, const json_t *info, float **x, int64_t dims[3], bool *spread,
          uint32_t *passes, char *why, size_t n)
{
	const json_t *shape = json_object_get(json_object_get(info, "input"), "shape"), *v;
	const char *k;
	size_t at = 0;

	if (!json_is_object(body)) {
		snprintf(why, n, "the body must be a JSON object like {\"inputs\": [[[…]]]}");
		return false;
	}
	json_object_foreach((json_t *)body, k, v)
		if (strcmp(k, "inputs") && strcmp(k, "uncertainty") && strcmp(k, "passes")) {
			snprintf(why, n, "unknown field \"%s\"; the body is {\"inputs\": [...], "
			         "\"uncertainty\": false, \"passes\": 16}", k);
			return false;
		}
	if (!read_options(body, spread, passes, why, n))
		return false;
	v = json_object_get(body, "inputs");
	if (!json_is_array(v) || json_array_size(v) == 0 ||
	    json_array_size(v) > LOOMI_SERVE_MAX_WINDOWS) {
		snprintf(why, n, "inputs: required, an array of 1 to %u windows, each [%lld steps]"
		         "[%lld channels] of raw values (GET the model's info: loomctl models show)",
		         LOOMI_SERVE_MAX_WINDOWS, (long long)json_integer_value(json_array_get(shape, 1)),
		         (long long)json_integer_value(json_array_get(shape, 2)));
		return false;
	}
	dims[0] = (int64_t)json_array_size(v);
	dims[1] = json_integer_value(json_array_get(shape, 1));
	dims[2] = json_integer_value(json_array_get(shape, 2));
	if (dims[1] < 1 || dims[2] < 1) {
		snprintf(why, n, "the model's info has no input shape");
		return false;
	}
	*x = loomi_xmalloc((size_t)(dims[0] * dims[1] * dims[2]) * sizeof **x);
	if (!flatten(v, dims, 0, *x, &at, why, n)) {
		free(*x);
		*x = NULL;
		return false;
	}
	return true;
}

/* A file form's request: {"file": PATH, "from_line": N, "to_line": M,
 * "stride": S, "uncertainty": bool, "passes": K} (docs/inference.md,
 * "Rows of a file"). */
typedef struct file_req {
	const char *path;           /* into the body */
	int64_t from_line, to_line; /* 0: no bound */
	int64_t stride;
} file_req;

/* Does the JSON body ask for a file's windows?  Only a body that names
 * "file" somewhere is parsed to tell: a body of windows never does. */
static bool
names_file(const loomi_http_req *req)
{
	return req->body_len >= 6 && memmem(req->body, req->body_len, "\"file\"", 6) != NULL;
}

static bool
line_field(const json_t *body, const char *name, int64_t *v, char *why, size_t n)
{
	const json_t *f = json_object_get(body, name);
	*v = 0;
	if (f == NULL)
		return true;
	if (!json_is_integer(f) || json_integer_value(f) < 1) {
		snprintf(why, n, "%s: a file line, 1 or more (the header is line 1, as error messages "
		         "number them)", name);
		return false;
	}
	*v = json_integer_value(f);
	return true;
}

/* The file form's fields.  False with why. */
static bool
read_file_body(const json_t *body, file_req *fr, bool *spread, uint32_t *passes, char *why,
               size_t n)
{
	const json_t *v;
	const char *k;

	json_object_foreach((json_t *)body, k, v)
		if (strcmp(k, "file") && strcmp(k, "from_line") && strcmp(k, "to_line") &&
		    strcmp(k, "stride") && strcmp(k, "uncertainty") && strcmp(k, "passes")) {
			if (strcmp(k, "inputs") == 0)
				snprintf(why, n, "file and inputs exclude each other: give the windows, or a "
				         "file to cut them from");
			else
				snprintf(why, n, "unknown field \"%s\"; the body is {\"file\": "
				         "\"/data/x.csv\", \"from_line\": 2, \"to_line\": 500, \"stride\": 1, "
				         "\"uncertainty\": false, \"passes\": 16}",
				         k);
			return false;
		}
	fr->path = json_string_value(json_object_get(body, "file"));
	if (fr->path == NULL || fr->path[0] != '/') {
		snprintf(why, n, "file: the absolute path of a CSV file under data_roots (loomd.conf)");
		return false;
	}
	if (!line_field(body, "from_line", &fr->from_line, why, n) ||
	    !line_field(body, "to_line", &fr->to_line, why, n))
		return false;
	if (fr->from_line && fr->to_line && fr->to_line < fr->from_line) {
		snprintf(why, n, "from_line %lld is after to_line %lld", (long long)fr->from_line,
		         (long long)fr->to_line);
		return false;
	}
	v = json_object_get(body, "stride");
	if (v && (!json_is_integer(v) || json_integer_value(v) < 1)) {
		snprintf(why, n, "stride: a whole number of rows, 1 or more, between window starts");
		return false;
	}
	fr->stride = v ? json_integer_value(v) : 1;
	if (!read_options(body, spread, passes, why, n))
		return false;
	return true;
}

/* Is the request's body raw f32 (Content-Type: application/octet-stream,
 * which the front door let through for this route only)? */
static bool
is_binary(const loomi_http_req *req)
{
	const char *ct = req->content_type;
	return ct && strncasecmp(ct, "application/octet-stream", 24) == 0 &&
	       (ct[24] == '\0' || ct[24] == ';' || ct[24] == ' ' || ct[24] == '\t');
}

/* n f32 between little-endian bytes and floats (either way) */
static void
f32_le(void *dst, const void *src, size_t n)
{
	memcpy(dst, src, n * 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	for (unsigned char *b = dst, *e = b + n * 4; b < e; b += 4) {
		unsigned char t = b[0];
		b[0] = b[3];
		b[3] = t;
		t = b[1];
		b[1] = b[2];
		b[2] = t;
	}
#endif
}

/* A binary body's windows: B = body bytes / (context · channels · 4),
 * which must divide exactly.  False with why. */
static bool
read_binary(const loomi_http_req *req, const json_t *info, float **x, int64_t dims[3], char *why,
            size_t n)
{
	const json_t *shape = json_object_get(json_object_get(info, "input"), "shape");
	char what[200];
	size_t win;

	dims[1] = json_integer_value(json_array_get(shape, 1));
	dims[2] = json_integer_value(json_array_get(shape, 2));
	if (dims[1] < 1 || dims[2] < 1) {
		snprintf(why, n, "the model's info has no input shape");
		return false;
	}
	win = (size_t)(dims[1] * dims[2]) * 4;
	snprintf(what, sizeof what, "%lld step%s x %lld channel%s x 4 bytes = %zu bytes of "
	         "little-endian f32 ([B, %lld, %lld] row-major)",
	         (long long)dims[1], dims[1] == 1 ? "" : "s", (long long)dims[2],
	         dims[2] == 1 ? "" : "s", win, (long long)dims[1], (long long)dims[2]);
	if (req->body_len == 0) {
		snprintf(why, n, "the body is empty: send 1 to %u windows, each %s", LOOMI_SERVE_MAX_WINDOWS,
		         what);
		return false;
	}
	if (req->body_len % win != 0) {
		snprintf(why, n, "the body's %zu bytes are not a whole number of windows: this model's "
		         "window is %s, and %zu is not a multiple of %zu",
		         req->body_len, what, req->body_len, win);
		return false;
	}
	if (req->body_len / win > LOOMI_SERVE_MAX_WINDOWS) {
		snprintf(why, n, "the body's %zu bytes are %zu windows; a request takes at most %u: "
		         "split it", req->body_len, req->body_len / win, LOOMI_SERVE_MAX_WINDOWS);
		return false;
	}
	dims[0] = (int64_t)(req->body_len / win);
	*x = loomi_xmalloc(req->body_len);
	f32_le(*x, req->body, req->body_len / 4);
	return true;
}

/* The binary options in the query: uncertainty=true|false, passes=K.
 * False after setting a 400. */
static bool
binary_options(const loomi_http_req *req, loomi_http_res *res, bool *spread, uint32_t *passes)
{
	char *u = loomi_query_get(req->query, "uncertainty");
	int64_t k = 0;
	bool ok = true;

	if (u && strcmp(u, "true") && strcmp(u, "false")) {
		loomi_api_error(res, 400, "invalid", "uncertainty: \"%.100s\" is not true or false", u);
		ok = false;
	}
	*spread = u && strcmp(u, "true") == 0;
	free(u);
	if (ok && !loomi_query_int(res, req->query, "passes", 0, 1, LOOMI_SERVE_MAX_PASSES, &k))
		ok = false;
	*passes = (uint32_t)k;
	return ok;
}

static bool
query_has(const char *query, const char *name)
{
	char *v = loomi_query_get(query, name);
	bool has = v != NULL;
	free(v);
	return has;
}

/* A binary answer's headers, from what it says. */
static void
binary_headers(loomi_http_res *res, int64_t version, const meta *m)
{
	loomi_api_header(res, "X-Loom-Shape", m->shape);
	loomi_api_header_take(res, "X-Loom-Model-Version", loomi_strfmt("%lld", (long long)version));
	if (m->spread) {
		loomi_api_header(res, "X-Loom-Uncertainty", m->method);
		if (m->passes)
			loomi_api_header_take(res, "X-Loom-Passes", loomi_strfmt("%u", m->passes));
	}
}

/* POST /api/v1/models/{name}/predict[?alias=A | ?version=N], a JSON body
 * or (application/octet-stream) raw f32 windows with
 * [&uncertainty=true][&passes=K].
 *
 * A cache hit costs the version's resolution, one hash of the body as
 * sent and a compare: the body is parsed, and a worker found, only on a
 * miss. */
static void
route_predict(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	char *alias = loomi_query_get(req->query, "alias"), *ver = loomi_query_get(req->query, "version");
	char *msg = NULL, *dir = NULL, *why = NULL, *text = NULL, why_buf[400];
	const char *ref = ver ? ver : alias ? alias : "production";
	const bool binary = is_binary(req);
	json_t *body = NULL, *out = NULL, *wmeta = NULL;
	int64_t model = 0, version = 0, dims[3];
	bool file_form = false;
	file_req fr = {0};
	loomi_serve_windows fw;
	float *x = NULL;
	bool spread = false;
	uint32_t passes = 0;
	worker *w = NULL;
	int rv, status = 0;
	loomi_serve_result r;
	size_t text_len = 0, name_len = strlen(req->params[0]);
	meta m;
	key k;
	struct {
		int64_t model, version;
		uint32_t binary, spread, passes, name_len;
	} head;
	char *head_buf = NULL;

	memset(&r, 0, sizeof r);
	memset(&m, 0, sizeof m);
	memset(&fw, 0, sizeof fw);
	if (alias && ver) {
		loomi_api_error(res, 400, "invalid", "give ?alias= or ?version=, not both");
		goto out;
	}
	if (binary) {
		if (!binary_options(req, res, &spread, &passes))
			goto out;
	} else if (query_has(req->query, "uncertainty") || query_has(req->query, "passes")) {
		loomi_api_error(res, 400, "invalid",
		                "?uncertainty= and ?passes= are for an application/octet-stream body; "
		                "a JSON body gives them as its fields: {\"inputs\": [...], "
		                "\"uncertainty\": true, \"passes\": 16}");
		goto out;
	}
	if (!loomi_registry_may(d, req, LOOMI_ACCESS_READ, res))
		goto out;
	if ((rv = loomi_registry_resolve(d, req->params[0], ref, &model, &version, &dir, &msg)) != 0) {
		loomi_api_answer(res, rv, NULL, msg, 200);
		msg = NULL;
		goto out;
	}
	/* a file's windows: read by the worker, after the path is checked,
	 * and keyed by the windows read, never by the path (a file changes) */
	if (!binary && names_file(req)) {
		if ((body = loomi_api_json_body(req, res)) == NULL)
			goto out;
		file_form = json_is_object(body) && json_object_get(body, "file") != NULL;
	}
	if (file_form) {
		if (!read_file_body(body, &fr, &spread, &passes, why_buf, sizeof why_buf)) {
			fail_answer(res, 400, "invalid", why_buf);
			goto out;
		}
		if (loomi_data_path_check(d, "file", fr.path, &msg) != 0) {
			fail_answer(res, 400, "invalid", msg);
			goto out;
		}
		if ((w = acquire(model, version, dir, &status, &why)) == NULL) {
			fail_answer(res, status, "unavailable", why);
			goto out;
		}
		pthread_mutex_lock(&w->call);
		if (w->client == NULL) {
			pthread_mutex_lock(&S.mtx);
			why = loomi_strfmt("the inference worker of this version cannot start: %s",
			                   w->why ? w->why : "unknown");
			pthread_mutex_unlock(&S.mtx);
			rv = LOOM_EUNREACHABLE;
		} else {
			rv = loomi_serve_client_windows(w->client, fr.path, fr.from_line, fr.to_line,
			                                fr.stride, &fw, &msg);
			if (rv != 0)
				after_failure(w, rv, msg, &why);
		}
		pthread_mutex_unlock(&w->call);
		if (rv != 0) {
			if (why)
				fail_answer(res, 503, "unavailable", why);
			else
				/* the worker's refusal: the file's or the request's fault */
				fail_answer(res, rv == LOOM_ENOMEM || rv == LOOM_EINTERNAL ? 500 : 400,
				            rv == LOOM_ENOMEM || rv == LOOM_EINTERNAL ? "internal" : "invalid",
				            msg ? msg : loom_strerror(rv));
			goto out;
		}
		if ((wmeta = json_loads(fw.meta_json, 0, NULL)) == NULL ||
		    !json_is_array(json_object_get(wmeta, "windows")) ||
		    json_array_size(json_object_get(wmeta, "windows")) != fw.batch) {
			fail_answer(res, 500, "internal",
			            "the inference worker described the file's windows in invalid JSON");
			goto out;
		}
		x = fw.windows;
		fw.windows = NULL;
		dims[0] = fw.batch;
		dims[1] = fw.context;
		dims[2] = fw.channels;
	}
	/* the key: the version, the name as asked (a JSON answer says it),
	 * the kind of body and the query's options, then the body's bytes
	 * (a JSON body's own options among them); for a file, the options,
	 * the windows' description and then the windows' bytes */
	memset(&head, 0, sizeof head);
	head.model = model;
	head.version = version;
	head.binary = file_form ? 2 : binary;
	head.spread = spread;
	head.passes = passes;
	head.name_len = (uint32_t)name_len;
	{
		size_t meta_len = file_form ? strlen(fw.meta_json) : 0;
		head_buf = loomi_xmalloc(sizeof head + name_len + meta_len);
		memcpy(head_buf, &head, sizeof head);
		memcpy(head_buf + sizeof head, req->params[0], name_len);
		if (file_form) {
			memcpy(head_buf + sizeof head + name_len, fw.meta_json, meta_len);
			k = (key){head_buf, sizeof head + name_len + meta_len, x,
			          (size_t)(dims[0] * dims[1] * dims[2]) * sizeof *x, 0};
		} else {
			k = (key){head_buf, sizeof head + name_len, req->body_len ? req->body : "",
			          req->body_len, 0};
		}
	}
	k.hash = hash_bytes(k.body, k.body_len, hash_bytes(k.head, k.head_len, K3));
	if ((text = cache_get(&k, &text_len, &m)) != NULL) {
		loomi_api_header(res, "X-Loom-Cache", "hit");
		dims[0] = m.windows;
		goto answer;
	}
	if (w == NULL && (w = acquire(model, version, dir, &status, &why)) == NULL) {
		fail_answer(res, status, "unavailable", why);
		goto out;
	}
	if (file_form) {
		/* the windows are read */
	} else if (binary) {
		if (!read_binary(req, w->info, &x, dims, why_buf, sizeof why_buf)) {
			fail_answer(res, 400, "invalid", why_buf);
			goto out;
		}
	} else if (body == NULL && (body = loomi_api_json_body(req, res)) == NULL) {
		goto out;
	} else if (!read_body(body, w->info, &x, dims, &spread, &passes, why_buf, sizeof why_buf)) {
		fail_answer(res, 400, "invalid", why_buf);
		goto out;
	}
	pthread_mutex_lock(&w->call);
	if (w->client == NULL) {
		/* it died, and its restart failed, while this request waited */
		pthread_mutex_lock(&S.mtx);
		why = loomi_strfmt("the inference worker of this version cannot start: %s",
		                   w->why ? w->why : "unknown");
		pthread_mutex_unlock(&S.mtx);
		rv = LOOM_EUNREACHABLE;
	} else {
		rv = loomi_serve_client_predict(w->client, x, (uint32_t)dims[0], (uint32_t)dims[1],
		                                (uint32_t)dims[2], spread ? LOOMI_SERVE_UNCERTAINTY : 0,
		                                passes, &r, &msg);
		if (rv != 0)
			after_failure(w, rv, msg, &why);
	}
	pthread_mutex_unlock(&w->call);
	if (rv != 0) {
		if (why)
			fail_answer(res, 503, "unavailable", why);
		else
			/* the worker's own refusal: the input's fault */
			fail_answer(res, rv == LOOM_ENOTSUP ? 400 : rv == LOOM_EINVAL || rv == LOOM_ERANGE ? 400 : 500,
			            rv == LOOM_EINVAL || rv == LOOM_ERANGE || rv == LOOM_ENOTSUP ? "invalid" : "internal",
			            msg ? msg : loom_strerror(rv));
		goto out;
	}
	m.windows = (uint32_t)dims[0];
	m.spread = r.spread != NULL;
	m.passes = r.spread ? r.passes : 0;
	if (binary) {
		size_t n = 1, at = 0;
		const char *method = json_string_value(
			json_object_get(json_object_get(w->info, "uncertainty"), "method"));
		for (uint32_t i = 0; i < r.ndim; i++) {
			n *= r.dims[i];
			at += (size_t)snprintf(m.shape + at, sizeof m.shape - at, "%s%u", i ? "," : "",
			                       r.dims[i]);
		}
		snprintf(m.method, sizeof m.method, "%s", method ? method : "unknown");
		text_len = n * 4 * (r.spread ? 2 : 1);
		text = loomi_xmalloc(text_len + 1);
		f32_le(text, r.output, n);
		if (r.spread)
			f32_le(text + n * 4, r.spread, n);
		text[text_len] = '\0';
	} else {
		json_t *shape = json_array(), *o = json_object_get(w->info, "output");
		size_t at = 0;
		for (uint32_t i = 0; i < r.ndim; i++)
			json_array_append_new(shape, json_integer(r.dims[i]));
		out = json_pack("{s:s, s:I, s:o, s:o, s:O}", "model", req->params[0], "version",
		                (json_int_t)version, "shape", shape, "outputs",
		                nest(r.output, r.dims, r.ndim, &at), "output", o ? o : json_null());
		if (r.spread) {
			at = 0;
			json_object_set_new(out, "uncertainty", nest(r.spread, r.dims, r.ndim, &at));
			json_object_set(out, "uncertainty_method",
			                json_object_get(w->info, "uncertainty")
			                    ? json_object_get(w->info, "uncertainty")
			                    : json_null());
			if (r.passes)
				json_object_set_new(out, "passes", json_integer(r.passes));
		}
		if (file_form) {
			json_object_set_new(out, "file", json_string(fr.path));
			json_object_set(out, "windows", json_object_get(wmeta, "windows"));
		}
		text = json_dumps(out, JSON_COMPACT);
		text_len = strlen(text);
	}
	cache_put(&k, text, text_len, &m);
	loomi_api_header(res, "X-Loom-Cache", "miss");
answer:
	res->status = 200;
	res->text = text;
	res->text_len = text_len;
	if (binary) {
		res->content_type = "application/octet-stream";
		binary_headers(res, version, &m);
	} else {
		res->content_type = "application/json";
	}
	text = NULL;
	pthread_mutex_lock(&S.mtx);
	S.st.requests++;
	S.st.windows += (uint64_t)dims[0];
	pthread_mutex_unlock(&S.mtx);
out:
	if (w)
		release(w);
	loomi_serve_result_free(&r);
	loomi_serve_windows_free(&fw);
	json_decref(wmeta);
	json_decref(body);
	json_decref(out);
	free(text);
	free(head_buf);
	free(x);
	free(dir);
	free(msg);
	free(why);
	free(alias);
	free(ver);
}

/* ------------------------------------------------------------------ the module */

void
loomi_inference_stats_read(loomi_daemon *d, loomi_inference_stats *out)
{
	(void)d;
	pthread_mutex_lock(&S.mtx);
	pthread_mutex_lock(&S.cmtx);
	*out = S.st;
	out->cache_bytes = S.bytes;
	out->cache_capacity = CACHE_BYTES;
	pthread_mutex_unlock(&S.cmtx);
	pthread_mutex_unlock(&S.mtx);
}

static int
start(loomi_daemon *d, char **err)
{
	int rv;
	/* jobs.worker, else $LOOM_WORKER (a build tree), else the installed one:
	 * as the tasks service */
	if (d->conf.jobs_worker)
		S.program = loomi_strdup(d->conf.jobs_worker);
	else if (getenv("LOOM_WORKER") && getenv("LOOM_WORKER")[0])
		S.program = loomi_strdup(getenv("LOOM_WORKER"));
	else
		S.program = loomi_strfmt("%s/loom-worker", LOOM_BINDIR);
	S.conf = loomi_strdup(d->conf.path);
	S.state = loomi_strdup(d->conf.state_dir);
	S.dir = loomi_path_join(d->conf.state_dir, "serve");
	if ((rv = loomi_mkdir_p(S.dir, 0700)) != 0) {
		*err = loomi_strfmt("cannot create %s: %s", S.dir, strerror(rv));
		return LOOM_EIO;
	}
	S.stopping = false;
	S.up = true;
	return 0;
}

static void
stop(loomi_daemon *d)
{
	worker *all;
	(void)d;
	if (!S.up)
		return;
	pthread_mutex_lock(&S.mtx);
	S.stopping = true;
	pthread_cond_broadcast(&S.cv);
	/* requests and restarts in flight finish first */
	for (;;) {
		bool busy = false;
		for (worker *w = S.workers; w; w = w->next)
			busy |= w->refs > 0;
		if (!busy)
			break;
		pthread_cond_wait(&S.cv, &S.mtx);
	}
	all = S.workers;
	S.workers = NULL;
	S.st.workers = 0;
	pthread_mutex_unlock(&S.mtx);
	while (all) {
		worker *next = all->next;
		worker_free(all);
		all = next;
	}
	cache_clear();
	free(S.program);
	free(S.conf);
	free(S.dir);
	free(S.state);
	S.program = S.conf = S.dir = S.state = NULL;
	S.up = false;
}

static const loomi_route routes[] = {
	/* who may: anyone who may read the model (its owner, an admin, those it
	 * is shared with); predicting changes nothing.  Its body is JSON or
	 * raw f32 windows (docs/inference.md, "Binary bodies") */
	{"POST", "/api/v1/models/{name}/predict", route_predict, LOOMI_ACCESS_READ,
	 "alias,version,uncertainty,passes", .octet_stream = true},
	/* any signed-in user: choosing rows of a pool the caller sends changes
	 * nothing and reads nothing of anyone's (sample.c) */
	{"GET", "/api/v1/samplers", loomi_route_samplers, LOOMI_ACCESS_READ, NULL},
	{"POST", "/api/v1/samplers/{instance}/select", loomi_route_sampler_select, LOOMI_ACCESS_READ,
	 NULL},
};

const loomi_module loomi_inference_module = {
	.name = "inference",
	.start = start,
	.stop = stop,
	.routes = routes,
	.n_routes = LOOMI_N(routes),
};

/* Experiment tracking: runs, metric points in compressed blocks, lineage,
 * artifacts, and the tracker plugins.  See tracking.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zstd.h>

#include <loom/tracker.h>

#include "host/core/headline.h"
#include "host/core/log.h"
#include "host/core/plugins.h"
#include "host/core/util.h"
#include "host/server/events.h"
#include "host/server/store.h"
#include "tracking-internal.h"
#include "tracking.h"

const char loomi_tracking_migration_sql[] =
	"CREATE TABLE runs (\n"
	"  id         INTEGER PRIMARY KEY,\n"
	"  job_id     INTEGER REFERENCES jobs (id) ON DELETE SET NULL,\n"
	"  attempt    INTEGER NOT NULL DEFAULT 0,\n"
	"  name       TEXT NOT NULL,\n"
	"  user       TEXT NOT NULL DEFAULT 'local',\n"
	"  state      TEXT NOT NULL DEFAULT 'running' CHECK (state IN\n"
	"               ('running','paused','completed','failed','cancelled')),\n"
	"  params     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(params)),\n"
	"  lineage    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(lineage)),\n"
	"  metrics    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metrics)),\n"
	"  started_at INTEGER NOT NULL,\n"
	"  ended_at   INTEGER\n"
	");\n"
	"CREATE INDEX runs_by_job ON runs (job_id, attempt);\n"
	"CREATE INDEX runs_by_name ON runs (name, id);\n"
	"CREATE TABLE run_tags (\n"
	"  run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,\n"
	"  key    TEXT NOT NULL,\n"
	"  value  TEXT NOT NULL,\n"
	"  PRIMARY KEY (run_id, key)\n"
	") WITHOUT ROWID;\n"
	"CREATE TABLE run_artifacts (\n"
	"  run_id     INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,\n"
	"  name       TEXT NOT NULL,\n"
	"  ref        TEXT NOT NULL,\n"
	"  sha256     TEXT NOT NULL,\n"
	"  bytes      INTEGER NOT NULL,\n"
	"  created_at INTEGER NOT NULL,\n"
	"  PRIMARY KEY (run_id, name)\n"
	") WITHOUT ROWID;\n"
	"CREATE TABLE metric_series (\n"
	"  id        INTEGER PRIMARY KEY,\n"
	"  run_id    INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,\n"
	"  name      TEXT NOT NULL,\n"
	"  n         INTEGER NOT NULL DEFAULT 0,\n"
	"  last_step INTEGER,\n"
	"  last      REAL,\n"
	"  min       REAL,\n"
	"  max       REAL,\n"
	"  UNIQUE (run_id, name)\n"
	");\n"
	/* steps, wall times, values, epochs and scopes of n points, columns
	 * one after another, zstd-compressed; sorted by step within a block */
	"CREATE TABLE metric_blocks (\n"
	"  id         INTEGER PRIMARY KEY,\n"
	"  series_id  INTEGER NOT NULL REFERENCES metric_series (id) ON DELETE CASCADE,\n"
	"  first_step INTEGER NOT NULL,\n"
	"  last_step  INTEGER NOT NULL,\n"
	"  n          INTEGER NOT NULL,\n"
	"  data       BLOB NOT NULL\n"
	");\n"
	"CREATE INDEX metric_blocks_by_series ON metric_blocks (series_id, first_step);\n";

#define BLOCK_POINTS 8192
#define FLUSH_MS 500              /* partial blocks are written this often */
#define TRACKER_FLUSH_MS 1000
#define QUEUE_MAX_POINTS 8000000  /* beyond: refuse API batches, drop worker points */
#define SERIES_BUCKETS 4096

enum { IT_BEGIN, IT_POINTS, IT_STATE, IT_TAG };

typedef struct item {
	int kind;
	int64_t run, job;
	int64_t at;
	char *name;                 /* metric; tag key; state */
	char *text;                 /* tag value; BEGIN: params */
	char *user;
	tk_point *pts;
	size_t n;
	struct item *next;
} item;

typedef struct series {
	int64_t run, id, job;
	char *name;
	tk_point *buf;
	size_t n, cap;
	bool touched;               /* points written this round: stats to update */
	int64_t add_n;
	double add_min, add_max, last;
	int64_t last_step;
	struct series *next, *next_touched;
} series;

/* A task attempt's run, while it may still receive points. */
typedef struct active {
	int64_t job, run;
	int attempt;
	bool paused;
} active;

static struct {
	loomi_daemon *d;
	sqlite3 *db;                /* the thread's (and run creation's) */
	pthread_t thread;
	bool running, stop;
	pthread_mutex_t mtx;
	pthread_cond_t cv, done_cv;
	item *head, *tail;
	size_t queued_points;
	uint64_t flush_req, flush_done;
	int64_t last_run;
	active *act;
	size_t n_act, cap_act;
	series *buckets[SERIES_BUCKETS];
	series *touched;
	uint64_t dropped;
	ZSTD_CCtx *zc;
} T = {
	.mtx = PTHREAD_MUTEX_INITIALIZER,
	.cv = PTHREAD_COND_INITIALIZER,
	.done_cv = PTHREAD_COND_INITIALIZER,
};

/* What GET /metrics reads (loomi_tracking_counters_read). */
static loomi_tracking_counters C;

static void
counter_add(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

void
loomi_tracking_counters_read(loomi_tracking_counters *out)
{
	out->points_ingested = __atomic_load_n(&C.points_ingested, __ATOMIC_RELAXED);
	out->points_dropped_full = __atomic_load_n(&C.points_dropped_full, __ATOMIC_RELAXED);
	out->points_dropped_malformed = __atomic_load_n(&C.points_dropped_malformed,
	                                                __ATOMIC_RELAXED);
	out->points_dropped_no_run = __atomic_load_n(&C.points_dropped_no_run, __ATOMIC_RELAXED);
	out->tracker_points_dropped = __atomic_load_n(&C.tracker_points_dropped, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------ small things */

static void
item_free(item *it)
{
	free(it->name);
	free(it->text);
	free(it->user);
	free(it->pts);
	free(it);
}

static void
enqueue(item *it)
{
	it->next = NULL;
	if (T.tail)
		T.tail->next = it;
	else
		T.head = it;
	T.tail = it;
	T.queued_points += it->n;
	pthread_cond_signal(&T.cv);
}

int
loomi_tracking_sha256_file(const char *path, char hex[65], uint64_t *bytes)
{
	unsigned char buf[1 << 16], md[32];
	unsigned mdlen = 0;
	FILE *fp = NULL;
	EVP_MD_CTX *ctx;
	size_t got;
	uint64_t total = 0;
	struct stat st;
	int rv = 0, fd;

	/* regular files only: a FIFO would block this thread in open() and a
	 * device (/dev/zero) keep it reading forever */
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return LOOM_EIO;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)) < 0)
		return LOOM_EIO;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (fp = fdopen(fd, "rb")) == NULL) {
		close(fd);
		return LOOM_EIO;
	}
	if ((ctx = EVP_MD_CTX_new()) == NULL || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		fclose(fp);
		EVP_MD_CTX_free(ctx);
		return LOOM_ENOMEM;
	}
	while ((got = fread(buf, 1, sizeof buf, fp)) > 0) {
		EVP_DigestUpdate(ctx, buf, got);
		total += got;
	}
	if (ferror(fp))
		rv = LOOM_EIO;
	fclose(fp);
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	for (unsigned i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	if (bytes)
		*bytes = total;
	return rv;
}

/* ------------------------------------------------------------------ the tracker plugins */

typedef int (*tracker_call)(loom_instance *ins, const loom_tracker_ops *ops, void *arg);

/* Call fn for every started tracker instance, serialized unless the
 * plugin is thread-safe; a failure is logged (trackers never stop a run). */
static void
each_tracker(const char *what, tracker_call fn, void *arg)
{
	loomi_plugins *reg = &T.d->plugins;

	for (size_t i = 0; i < reg->n_instances; i++) {
		loom_instance *ins = reg->instances[i];
		int rv;
		if (ins->kind != LOOM_KIND_TRACKER || !ins->inited)
			continue;
		bool lock = !(ins->desc->flags & LOOM_PLUGIN_THREAD_SAFE);
		if (lock)
			pthread_mutex_lock(&ins->lock);
		rv = fn(ins, ins->desc->ops, arg);
		if (lock)
			pthread_mutex_unlock(&ins->lock);
		if (rv != 0)
			LOG_WARN_LIMITED("tracking: tracker \"%s\": %s failed: %s", ins->name, what,
			                 loom_strerror(rv));
	}
}

static int
call_begin(loom_instance *ins, const loom_tracker_ops *ops, void *arg)
{
	return ops->run_begin(ins->ctx, arg);
}

typedef struct points_call {
	const char *run_id;
	const loom_metric_point *pts;
	size_t n;
} points_call;

static int
call_points(loom_instance *ins, const loom_tracker_ops *ops, void *arg)
{
	points_call *c = arg;
	return ops->log_metrics(ins->ctx, c->run_id, c->pts, c->n);
}

typedef struct end_call {
	const char *run_id, *state;
	int64_t at;
} end_call;

static int
call_end(loom_instance *ins, const loom_tracker_ops *ops, void *arg)
{
	end_call *c = arg;
	return ops->run_end(ins->ctx, c->run_id, c->state, c->at);
}

typedef struct tag_call {
	const char *run_id, *key, *value;
	const loom_artifact *artifact;
} tag_call;

static int
call_tag(loom_instance *ins, const loom_tracker_ops *ops, void *arg)
{
	tag_call *c = arg;
	if (c->artifact)
		return ops->log_artifact ? ops->log_artifact(ins->ctx, c->run_id, c->artifact) : 0;
	return ops->set_tag ? ops->set_tag(ins->ctx, c->run_id, c->key, c->value) : 0;
}

static int
call_flush(loom_instance *ins, const loom_tracker_ops *ops, void *arg)
{
	(void)arg;
	return ops->flush ? ops->flush(ins->ctx) : 0;
}

static bool
have_trackers(void)
{
	loomi_plugins *reg = &T.d->plugins;
	for (size_t i = 0; i < reg->n_instances; i++) {
		if (reg->instances[i]->kind == LOOM_KIND_TRACKER && reg->instances[i]->inited)
			return true;
	}
	return false;
}

/* Tracker plugins get their calls from a thread of their own, through a
 * queue: a slow one (a JSON line per point) neither holds back loomd's
 * store nor, through it, the API.  Calls keep their order. */
enum { P_BEGIN, P_POINTS, P_END, P_TAG, P_ARTIFACT, P_FLUSH };

#define PLUGIN_QUEUE_MAX_POINTS 4000000 /* beyond: points for trackers are dropped */

typedef struct pcall {
	int kind;
	char rid[32];
	char *a, *b, *c, *d;        /* name, user, params, lineage; key, value; ... */
	int64_t job, at;
	uint64_t bytes;
	loom_metric_point *pts;
	size_t n;
	struct pcall *next;
} pcall;

static struct {
	pthread_t thread;
	bool running, stop;
	pthread_mutex_t mtx;
	pthread_cond_t cv, idle_cv;
	pcall *head, *tail;
	size_t points;
	bool busy;
	uint64_t dropped;
} P = {
	.mtx = PTHREAD_MUTEX_INITIALIZER,
	.cv = PTHREAD_COND_INITIALIZER,
	.idle_cv = PTHREAD_COND_INITIALIZER,
};

static void
pcall_free(pcall *c)
{
	free(c->a);
	free(c->b);
	free(c->c);
	free(c->d);
	free(c->pts);
	free(c);
}

/* Queue a call for the trackers (c taken). */
static void
defer(pcall *c)
{
	uint64_t dropped = 0;

	pthread_mutex_lock(&P.mtx);
	if (c->kind == P_POINTS && P.points + c->n > PLUGIN_QUEUE_MAX_POINTS) {
		bool warn = P.dropped / 1000000 != (P.dropped + c->n) / 1000000 || P.dropped == 0;
		P.dropped += c->n;
		counter_add(&C.tracker_points_dropped, c->n);
		dropped = warn ? P.dropped : 0;
		pthread_mutex_unlock(&P.mtx);
		if (dropped)
			LOG_WARN("tracking: the tracker plugins fall behind; %llu points not given to "
			         "them so far (loomd's store has them all)",
			         (unsigned long long)dropped);
		pcall_free(c);
		return;
	}
	c->next = NULL;
	if (P.tail)
		P.tail->next = c;
	else
		P.head = c;
	P.tail = c;
	P.points += c->n;
	pthread_cond_signal(&P.cv);
	pthread_mutex_unlock(&P.mtx);
}

static pcall *
new_call(int kind, int64_t run)
{
	pcall *c = loomi_xcalloc(1, sizeof *c);
	c->kind = kind;
	snprintf(c->rid, sizeof c->rid, "run-%lld", (long long)run);
	return c;
}

static void
perform(pcall *c)
{
	switch (c->kind) {
	case P_BEGIN: {
		loom_run_info info = {.size = sizeof info, .run_id = c->rid, .job_id = c->job,
		                      .name = c->a, .user = c->b, .params_json = c->c,
		                      .lineage_json = c->d, .started_ms = c->at};
		each_tracker("run_begin", call_begin, &info);
		break;
	}
	case P_POINTS: {
		points_call pc = {c->rid, c->pts, c->n};
		each_tracker("log_metrics", call_points, &pc);
		break;
	}
	case P_END: {
		end_call ec = {c->rid, c->a, c->at};
		each_tracker("run_end", call_end, &ec);
		break;
	}
	case P_TAG: {
		tag_call tc = {.run_id = c->rid, .key = c->a, .value = c->b};
		each_tracker("set_tag", call_tag, &tc);
		break;
	}
	case P_ARTIFACT: {
		loom_artifact art = {.name = c->a, .ref = c->b, .sha256 = c->c, .bytes = c->bytes};
		tag_call tc = {.run_id = c->rid, .artifact = &art};
		each_tracker("log_artifact", call_tag, &tc);
		break;
	}
	case P_FLUSH: each_tracker("flush", call_flush, NULL); break;
	}
}

static void *
plugin_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&P.mtx);
	for (;;) {
		while (!P.stop && P.head == NULL)
			pthread_cond_wait(&P.cv, &P.mtx);
		if (P.head == NULL)
			break;
		pcall *list = P.head;
		P.head = P.tail = NULL;
		P.busy = true;
		pthread_mutex_unlock(&P.mtx);
		while (list) {
			pcall *c = list;
			list = c->next;
			perform(c);
			pthread_mutex_lock(&P.mtx);
			P.points -= c->n;
			pthread_mutex_unlock(&P.mtx);
			pcall_free(c);
		}
		pthread_mutex_lock(&P.mtx);
		P.busy = false;
		pthread_cond_broadcast(&P.idle_cv);
	}
	pthread_mutex_unlock(&P.mtx);
	return NULL;
}

void
loomi_tracking_flush_trackers(void)
{
	if (!P.running)
		return;
	defer(new_call(P_FLUSH, 0));
	pthread_mutex_lock(&P.mtx);
	while (P.head != NULL || P.busy)
		pthread_cond_wait(&P.idle_cv, &P.mtx);
	pthread_mutex_unlock(&P.mtx);
}

/* ------------------------------------------------------------------ storing */

static sqlite3_stmt *
stmt(const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v3(T.db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK)
		LOG_ERROR("tracking: cannot prepare \"%.60s…\": %s", sql, sqlite3_errmsg(T.db));
	return st;
}

static void
done(sqlite3_stmt *st, const char *what)
{
	int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
	if (loomi_store_wrote(T.db, rc) != 0)
		LOG_ERROR_LIMITED("tracking: %s: %s", what, sqlite3_errstr(rc));
	sqlite3_finalize(st);
}

static unsigned
bucket_of(int64_t run, const char *name)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)run;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return (unsigned)(h % SERIES_BUCKETS);
}

static series *
series_get(int64_t run, int64_t job, const char *name)
{
	unsigned b = bucket_of(run, name);
	series *s;
	sqlite3_stmt *st;

	for (s = T.buckets[b]; s; s = s->next) {
		if (s->run == run && strcmp(s->name, name) == 0)
			return s;
	}
	s = loomi_xcalloc(1, sizeof *s);
	s->run = run;
	s->job = job;
	s->name = loomi_strdup(name);
	s->add_min = s->add_max = NAN;
	st = stmt("INSERT INTO metric_series (run_id, name) VALUES (?, ?)"
	          " ON CONFLICT (run_id, name) DO UPDATE SET name = excluded.name RETURNING id");
	sqlite3_bind_int64(st, 1, run);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		s->id = sqlite3_column_int64(st, 0);
	else
		LOG_ERROR_LIMITED("tracking: cannot record metric \"%s\" of run-%lld: %s", name,
		                  (long long)run, sqlite3_errmsg(T.db));
	sqlite3_finalize(st);
	s->next = T.buckets[b];
	T.buckets[b] = s;
	return s;
}

static int
cmp_point(const void *a, const void *b)
{
	const tk_point *x = a, *y = b;
	if (x->step != y->step)
		return x->step < y->step ? -1 : 1;
	/* equal steps keep their arrival order */
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

void
loomi_tracking_sort(tk_point *p, size_t n)
{
	size_t i;
	for (i = 1; i < n && p[i - 1].step <= p[i].step; i++)
		;
	if (i < n) {
		for (size_t k = 0; k < n; k++)
			p[k].seq = k;
		qsort(p, n, sizeof *p, cmp_point);
	}
}

/* Block layout: int64 steps[n], int64 wall_ms[n], double values[n],
 * int32 epochs[n], uint8 scopes[n] — host byte order (the DB is local). */
static size_t
block_raw_size(size_t n)
{
	return n * (8 + 8 + 8 + 4 + 1);
}

static void
block_pack(const tk_point *p, size_t n, unsigned char *raw)
{
	int64_t *steps = (int64_t *)raw, *wall = steps + n;
	double *vals = (double *)(wall + n);
	int32_t *ep = (int32_t *)(vals + n);
	uint8_t *sc = (uint8_t *)(ep + n);
	for (size_t i = 0; i < n; i++) {
		steps[i] = p[i].step;
		wall[i] = p[i].wall_ms;
		vals[i] = p[i].value;
		ep[i] = p[i].epoch;
		sc[i] = (uint8_t)p[i].scope;
	}
}

int
loomi_tracking_block_unpack(const void *data, size_t len, size_t n, tk_point *out)
{
	size_t raw_len = block_raw_size(n);
	unsigned char *raw = malloc(raw_len ? raw_len : 1);
	size_t got;

	if (raw == NULL)
		return LOOM_ENOMEM;
	got = ZSTD_decompress(raw, raw_len, data, len);
	if (ZSTD_isError(got) || got != raw_len) {
		free(raw);
		return LOOM_ECORRUPT;
	}
	const int64_t *steps = (const int64_t *)raw, *wall = steps + n;
	const double *vals = (const double *)(wall + n);
	const int32_t *ep = (const int32_t *)(vals + n);
	const uint8_t *sc = (const uint8_t *)(ep + n);
	for (size_t i = 0; i < n; i++) {
		out[i].step = steps[i];
		out[i].wall_ms = wall[i];
		out[i].value = vals[i];
		out[i].epoch = ep[i];
		out[i].scope = sc[i];
		out[i].seq = 0;
	}
	free(raw);
	return 0;
}

static void
write_block(series *s, const tk_point *p, size_t n)
{
	size_t raw_len = block_raw_size(n), cap = ZSTD_compressBound(raw_len), clen;
	unsigned char *raw = loomi_xmalloc(raw_len), *z = loomi_xmalloc(cap);
	sqlite3_stmt *st;

	block_pack(p, n, raw);
	clen = ZSTD_compressCCtx(T.zc, z, cap, raw, raw_len, 1);
	if (ZSTD_isError(clen)) {
		LOG_ERROR("tracking: cannot compress %zu points of \"%s\": %s", n, s->name,
		          ZSTD_getErrorName(clen));
	} else {
		st = stmt("INSERT INTO metric_blocks (series_id, first_step, last_step, n, data)"
		          " VALUES (?, ?, ?, ?, ?)");
		sqlite3_bind_int64(st, 1, s->id);
		sqlite3_bind_int64(st, 2, p[0].step);
		sqlite3_bind_int64(st, 3, p[n - 1].step);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)n);
		sqlite3_bind_blob(st, 5, z, (int)clen, SQLITE_STATIC);
		done(st, "cannot store metric points");
	}
	for (size_t i = 0; i < n; i++) {
		double v = p[i].value;
		if (isfinite(v) && (!isfinite(s->add_min) || v < s->add_min))
			s->add_min = v;
		if (isfinite(v) && (!isfinite(s->add_max) || v > s->add_max))
			s->add_max = v;
	}
	s->add_n += (int64_t)n;
	s->last = p[n - 1].value;
	s->last_step = p[n - 1].step;
	if (!s->touched) {
		s->touched = true;
		s->next_touched = T.touched;
		T.touched = s;
	}
	free(raw);
	free(z);
}

/* Write the buffered points of s: whole blocks, and with partial the rest. */
static void
series_write(series *s, bool partial)
{
	size_t off = 0;

	if (s->n == 0 || s->id == 0)
		return;
	if (!partial && s->n < BLOCK_POINTS)
		return;
	while (s->n - off >= BLOCK_POINTS || (partial && off < s->n)) {
		size_t k = s->n - off < BLOCK_POINTS ? s->n - off : BLOCK_POINTS;
		write_block(s, s->buf + off, k);
		off += k;
	}
	memmove(s->buf, s->buf + off, (s->n - off) * sizeof *s->buf);
	s->n -= off;
}

/* After a round of writes: the series' statistics and the runs' latest values. */
static void
update_stats(void)
{
	for (series *s = T.touched; s; s = s->next_touched) {
		sqlite3_stmt *st = stmt(
			"UPDATE metric_series SET n = n + ?, last_step = ?, last = ?,"
			" min = CASE WHEN ?5 IS NULL THEN min WHEN min IS NULL OR ?5 < min THEN ?5 ELSE min END,"
			" max = CASE WHEN ?6 IS NULL THEN max WHEN max IS NULL OR ?6 > max THEN ?6 ELSE max END"
			" WHERE id = ?7");
		char path[300];
		sqlite3_bind_int64(st, 1, s->add_n);
		sqlite3_bind_int64(st, 2, s->last_step);
		if (isfinite(s->last))
			sqlite3_bind_double(st, 3, s->last);
		if (isfinite(s->add_min))
			sqlite3_bind_double(st, 5, s->add_min);
		if (isfinite(s->add_max))
			sqlite3_bind_double(st, 6, s->add_max);
		sqlite3_bind_int64(st, 7, s->id);
		done(st, "cannot update a metric's statistics");
		/* the run's latest values; a name is a JSON path key, quoted */
		snprintf(path, sizeof path, "$.\"%s\"", s->name);
		if (strchr(s->name, '"') == NULL) {
			st = stmt("UPDATE runs SET metrics = json_set(metrics, ?, ?) WHERE id = ?");
			sqlite3_bind_text(st, 1, path, -1, SQLITE_TRANSIENT);
			if (isfinite(s->last))
				sqlite3_bind_double(st, 2, s->last);
			sqlite3_bind_int64(st, 3, s->run);
			done(st, "cannot update a run's metrics");
		}
		s->touched = false;
		s->add_n = 0;
		s->add_min = s->add_max = NAN;
	}
	T.touched = NULL;
}

static void
write_all(bool partial, int64_t only_run)
{
	for (unsigned b = 0; b < SERIES_BUCKETS; b++) {
		for (series *s = T.buckets[b]; s; s = s->next) {
			if (only_run == 0 || s->run == only_run)
				series_write(s, partial);
		}
	}
}

/* Forget the series of a run that ended (its points are all written). */
static void
forget_run(int64_t run)
{
	for (unsigned b = 0; b < SERIES_BUCKETS; b++) {
		series **pp = &T.buckets[b];
		while (*pp) {
			series *s = *pp;
			if (s->run == run && s->n == 0 && !s->touched) {
				*pp = s->next;
				free(s->name);
				free(s->buf);
				free(s);
			} else {
				pp = &s->next;
			}
		}
	}
}

/* ------------------------------------------------------------------ lineage */

/* What reproduces a task's run: its config version, the data file's
 * content hash (and the dataset version it holds), Loom's and every
 * plugin's version. */
static json_t *
lineage_of(int64_t job, const json_t *spec)
{
	json_t *lin = json_object(), *plugins = json_object();
	loomi_plugins *reg = &T.d->plugins;
	const char *path = json_string_value(json_object_get(json_object_get(spec, "data"), "path"));
	sqlite3_stmt *st;

	json_object_set_new(lin, "loom_version", json_string(LOOM_VERSION_STRING));
	for (size_t i = 0; i < reg->n_instances; i++) {
		loom_instance *ins = reg->instances[i];
		json_object_set_new(plugins, ins->name,
		                    json_pack("{s:s, s:s}", "module", ins->desc->name, "version",
		                              ins->desc->version));
	}
	json_object_set_new(lin, "plugins", plugins);
	if (job > 0) {
		st = stmt("SELECT config_id, config_version, compute FROM jobs WHERE id = ?");
		sqlite3_bind_int64(st, 1, job);
		if (st && sqlite3_step(st) == SQLITE_ROW) {
			json_object_set_new(lin, "task_id", json_sprintf("task-%lld", (long long)job));
			json_object_set_new(lin, "compute",
			                    json_string((const char *)sqlite3_column_text(st, 2)));
			if (sqlite3_column_type(st, 0) != SQLITE_NULL)
				json_object_set_new(
					lin, "config",
					json_pack("{s:I, s:I}", "id", (json_int_t)sqlite3_column_int64(st, 0),
				              "version", (json_int_t)sqlite3_column_int64(st, 1)));
		}
		sqlite3_finalize(st);
	}
	if (path) {
		json_t *data = json_pack("{s:s}", "path", path);
		char *local = NULL, hex[65];
		uint64_t bytes = 0;
		const char *colon = strchr(path, ':');
		if (colon && strchr(path, '/') != NULL && strchr(path, '/') < colon)
			colon = NULL; /* a path with a ':' in a directory name */
		if (colon) {
			loom_instance *ins = NULL;
			const char *key = NULL;
			if (loomi_storage_ref(reg, path, &ins, &key) == 0)
				(void)loomi_storage_local_path(ins, key, &local);
		} else {
			local = loomi_strdup(path);
		}
		if (local && loomi_tracking_sha256_file(local, hex, &bytes) == 0) {
			json_object_set_new(data, "sha256", json_string(hex));
			json_object_set_new(data, "bytes", json_integer((json_int_t)bytes));
		} else {
			json_object_set_new(data, "sha256", json_null());
			json_object_set_new(data, "why", json_string(local ? "cannot read the file"
			                                                   : "no local path to hash"));
		}
		free(local);
		{
			/* the dataset version loomd wrote the file from (data.path
			 * named "dataset:NAME@REF", docs/datasets.md) */
			const json_t *ds = json_object_get(json_object_get(spec, "data"), "dataset");
			if (json_is_object(ds))
				json_object_set_new(data, "dataset", json_deep_copy(ds));
		}
		json_object_set_new(lin, "data", data);
	}
	return lin;
}

/* ------------------------------------------------------------------ the thread's work */

static char *
run_id_text(int64_t run, char buf[32])
{
	snprintf(buf, 32, "run-%lld", (long long)run);
	return buf;
}

static void
do_begin(item *it)
{
	json_t *spec = json_loads(it->text ? it->text : "{}", 0, NULL), *lin;
	char *lintext, *params;
	sqlite3_stmt *st;
	bool fresh;

	st = stmt("SELECT state FROM runs WHERE id = ?");
	sqlite3_bind_int64(st, 1, it->run);
	fresh = !(st && sqlite3_step(st) == SQLITE_ROW);
	sqlite3_finalize(st);
	if (fresh) {
		lin = lineage_of(it->job, spec);
		lintext = json_dumps(lin, JSON_COMPACT);
		params = json_dumps(spec ? spec : json_object(), JSON_COMPACT);
		st = stmt("INSERT INTO runs (id, job_id, attempt, name, user, params, lineage,"
		          " started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
		sqlite3_bind_int64(st, 1, it->run);
		if (it->job > 0)
			sqlite3_bind_int64(st, 2, it->job);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)it->n);
		sqlite3_bind_text(st, 4, it->name ? it->name : "", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, it->user ? it->user : "local", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 6, params, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 7, lintext, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 8, it->at);
		done(st, "cannot record a run");
		free(params);
		json_decref(lin);
		free(lintext);
	} else {
		st = stmt("UPDATE runs SET state = 'running', ended_at = NULL WHERE id = ?");
		sqlite3_bind_int64(st, 1, it->run);
		done(st, "cannot resume a run");
	}
	if (have_trackers()) {
		/* read back what the trackers see: the stored params and lineage */
		st = stmt("SELECT name, user, params, lineage, started_at FROM runs WHERE id = ?");
		sqlite3_bind_int64(st, 1, it->run);
		if (st && sqlite3_step(st) == SQLITE_ROW) {
			pcall *c = new_call(P_BEGIN, it->run);
			c->job = it->job;
			c->a = loomi_strdup((const char *)sqlite3_column_text(st, 0));
			c->b = loomi_strdup((const char *)sqlite3_column_text(st, 1));
			c->c = loomi_strdup((const char *)sqlite3_column_text(st, 2));
			c->d = loomi_strdup((const char *)sqlite3_column_text(st, 3));
			c->at = sqlite3_column_int64(st, 4);
			defer(c);
		}
		sqlite3_finalize(st);
	}
	json_decref(spec);
}

static void
do_points(item *it)
{
	series *s = series_get(it->run, it->job, it->name);
	char rid[32];

	/* the buffer stays in step order: points that go back in steps (a
	 * resumed run, a script sending again) close the buffered block, and
	 * blocks whose ranges overlap are merged when read */
	loomi_tracking_sort(it->pts, it->n);
	if (s->n > 0 && it->pts[0].step < s->buf[s->n - 1].step)
		series_write(s, true);
	if (s->n + it->n > s->cap) {
		s->cap = s->n + it->n > 2 * s->cap ? s->n + it->n : 2 * s->cap;
		s->buf = loomi_xrealloc(s->buf, s->cap * sizeof *s->buf);
	}
	memcpy(s->buf + s->n, it->pts, it->n * sizeof *it->pts);
	s->n += it->n;
	series_write(s, false);
	counter_add(&C.points_ingested, it->n);

	/* the same points for the tracker plugins and the alert rules */
	loom_metric_point *mp = loomi_xcalloc(it->n, sizeof *mp);
	for (size_t i = 0; i < it->n; i++) {
		mp[i].name = it->name;
		mp[i].step = it->pts[i].step;
		mp[i].epoch = it->pts[i].epoch;
		mp[i].scope = it->pts[i].scope;
		mp[i].wall_ms = it->pts[i].wall_ms;
		mp[i].value = it->pts[i].value;
	}
	run_id_text(it->run, rid);
	{
		loomi_event ev = {.kind = LOOMI_EV_RUN_POINTS, .job = it->job};
		ev.u.run_points.run_id = rid;
		ev.u.run_points.pts = mp;
		ev.u.run_points.n = it->n;
		loomi_events_emit(&ev);
	}
	if (have_trackers()) {
		pcall *c = new_call(P_POINTS, it->run);
		c->a = loomi_strdup(it->name);
		for (size_t i = 0; i < it->n; i++)
			mp[i].name = c->a;
		c->pts = mp;
		c->n = it->n;
		defer(c);
	} else {
		free(mp);
	}
}

/* The files of a completed task's output directory, as artifacts. */
static void
record_artifacts(int64_t run, int64_t job)
{
	static const char *const names[] = {"best.safetensors", "last.safetensors", "metrics.json",
	                                    "job.json", "exec.json"};
	char *dir = loomi_strfmt("%s/jobs/task-%lld", T.d->conf.state_dir, (long long)job);

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		char *path = loomi_path_join(dir, names[i]), hex[65];
		uint64_t bytes = 0;
		if (loomi_tracking_sha256_file(path, hex, &bytes) == 0) {
			char *ref = loomi_strfmt("state:jobs/task-%lld/%s", (long long)job, names[i]);
			sqlite3_stmt *st = stmt("INSERT OR REPLACE INTO run_artifacts (run_id, name, ref,"
			                        " sha256, bytes, created_at) VALUES (?, ?, ?, ?, ?, ?)");
			sqlite3_bind_int64(st, 1, run);
			sqlite3_bind_text(st, 2, names[i], -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 3, ref, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 4, hex, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 5, (sqlite3_int64)bytes);
			sqlite3_bind_int64(st, 6, loomi_wall_ms());
			done(st, "cannot record an artifact");
			if (have_trackers()) {
				pcall *c = new_call(P_ARTIFACT, run);
				c->a = loomi_strdup(names[i]);
				c->b = loomi_strdup(ref);
				c->c = loomi_strdup(hex);
				c->bytes = bytes;
				defer(c);
			}
			free(ref);
		}
		free(path);
	}
	free(dir);
}

static void do_tag(item *it);

/* Which model a completed run kept (metrics.json's "model": the kind, e.g.
 * linear when model.kind "auto" chose it, and the form), as the run's tags
 * model.kind and model.form, so lists, comparisons and the web UI can
 * show it without the file. */
static void
tag_model(int64_t run, const json_t *doc)
{
	static const char *const keys[][2] = {{"kind", "model.kind"}, {"form", "model.form"}};
	const json_t *model = json_object_get(doc, "model");

	for (size_t i = 0; json_is_object(model) && i < 2; i++) {
		const char *v = json_string_value(json_object_get(model, keys[i][0]));
		if (v != NULL && strlen(v) <= 64) {
			item it = {.kind = IT_TAG, .run = run};
			it.name = (char *)keys[i][1];
			it.text = (char *)v;
			do_tag(&it);
		}
	}
}

/* The headline and detail metrics a completed task's metrics.json
 * declares, kept beside the run's metrics (headline.h); nothing when it
 * declares none (readers fall back).  The kept model becomes tags. */
static void
record_display(int64_t run, int64_t job)
{
	char *path = loomi_strfmt("%s/jobs/task-%lld/metrics.json", T.d->conf.state_dir,
	                          (long long)job);
	char *text = NULL, *dtext = NULL;
	json_t *doc = NULL, *display = NULL;

	if (loomi_read_file(path, &text, NULL) == 0 && (doc = json_loads(text, 0, NULL)) != NULL)
		tag_model(run, doc);
	if (doc != NULL && (display = loomi_display_declared(doc)) != NULL &&
	    (dtext = json_dumps(display, JSON_COMPACT)) != NULL) {
		sqlite3_stmt *st = stmt("UPDATE runs SET metrics = json_set(metrics, '$.\"" LOOMI_DISPLAY_KEY
		                        "\"', json(?)) WHERE id = ?");
		sqlite3_bind_text(st, 1, dtext, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, run);
		done(st, "cannot record a run's headline metrics");
	}
	free(dtext);
	json_decref(display);
	json_decref(doc);
	free(text);
	free(path);
}

static void
do_state(item *it)
{
	sqlite3_stmt *st;
	bool paused = strcmp(it->name, "paused") == 0;

	/* its points first, so a reader who sees the end sees them all */
	write_all(true, it->run);
	update_stats();
	st = stmt("UPDATE runs SET state = ?, ended_at = ? WHERE id = ?");
	sqlite3_bind_text(st, 1, it->name, -1, SQLITE_STATIC);
	if (!paused)
		sqlite3_bind_int64(st, 2, it->at);
	sqlite3_bind_int64(st, 3, it->run);
	done(st, "cannot end a run");
	if (strcmp(it->name, "completed") == 0 && it->job > 0) {
		record_artifacts(it->run, it->job);
		record_display(it->run, it->job);
	}
	if (have_trackers()) {
		pcall *c = new_call(P_END, it->run);
		c->a = loomi_strdup(it->name);
		c->at = it->at;
		defer(c);
	}
	if (!paused)
		forget_run(it->run);
}

static void
do_tag(item *it)
{
	sqlite3_stmt *st = stmt("INSERT OR REPLACE INTO run_tags (run_id, key, value) VALUES (?,?,?)");

	sqlite3_bind_int64(st, 1, it->run);
	sqlite3_bind_text(st, 2, it->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, it->text, -1, SQLITE_STATIC);
	done(st, "cannot set a tag");
	if (have_trackers()) {
		pcall *c = new_call(P_TAG, it->run);
		c->a = loomi_strdup(it->name);
		c->b = loomi_strdup(it->text);
		defer(c);
	}
}

static void *
thread_main(void *arg)
{
	int64_t last_partial = loomi_wall_ms(), last_tracker_flush = last_partial;

	(void)arg;
	pthread_mutex_lock(&T.mtx);
	for (;;) {
		while (!T.stop && T.head == NULL && T.flush_req == T.flush_done &&
		       loomi_wall_ms() - last_partial < FLUSH_MS) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 100 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&T.cv, &T.mtx, &ts);
		}
		item *list = T.head;
		uint64_t req = T.flush_req;
		bool stopping = T.stop;
		T.head = T.tail = NULL;
		T.queued_points = 0;
		pthread_mutex_unlock(&T.mtx);

		/* the write lock first: a run's row read and then written in a
		 * deferred transaction would fail at once while another
		 * connection writes (the jobs thread starting a task) */
		char *err = NULL;
		int rc;
		while ((rc = loomi_store_begin(T.db, true, &err)) == LOOM_EBUSY && !stopping) {
			free(err);
			err = NULL;
		}
		free(err);
		err = NULL;
		while (list) {
			item *it = list;
			list = it->next;
			switch (it->kind) {
			case IT_BEGIN: do_begin(it); break;
			case IT_POINTS: do_points(it); break;
			case IT_STATE: do_state(it); break;
			case IT_TAG: do_tag(it); break;
			}
			item_free(it);
		}
		int64_t now = loomi_wall_ms();
		bool partial = stopping || req != T.flush_done || now - last_partial >= FLUSH_MS;
		if (partial) {
			write_all(true, 0);
			last_partial = now;
		}
		update_stats();
		if (rc == 0 && loomi_store_end(T.db, 0, &err) != 0)
			LOG_ERROR_LIMITED("tracking: cannot store metric points: %s", err);
		free(err);
		if ((partial && now - last_tracker_flush >= TRACKER_FLUSH_MS) || stopping ||
		    req != T.flush_done) {
			if (have_trackers())
				defer(new_call(P_FLUSH, 0));
			last_tracker_flush = now;
		}
		pthread_mutex_lock(&T.mtx);
		T.flush_done = req;
		pthread_cond_broadcast(&T.done_cv);
		if (stopping && T.head == NULL)
			break;
	}
	pthread_mutex_unlock(&T.mtx);
	return NULL;
}

/* ------------------------------------------------------------------ start, stop */

static sqlite3 *
open_db(const char *path, char **err)
{
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL) !=
	    SQLITE_OK) {
		*err = loomi_strfmt("tracking: cannot open %s: %s", path,
		                    db ? sqlite3_errmsg(db) : "out of memory");
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 10000);
	sqlite3_exec(db, "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
	return db;
}

static struct {
	sqlite3 *rdb;
} R;

sqlite3 *
loomi_tracking_db(void)
{
	return R.rdb;
}

int
loomi_tracking_start(loomi_daemon *d, char **err)
{
	sqlite3_stmt *st;

	T.d = d;
	if ((T.db = open_db(d->store.path, err)) == NULL)
		return LOOM_EIO;
	if ((R.rdb = open_db(d->store.path, err)) == NULL) {
		sqlite3_close(T.db);
		return LOOM_EIO;
	}
	T.zc = ZSTD_createCCtx();
	/* runs that may still get points: those of tasks that will resume */
	st = stmt("SELECT coalesce(max(id), 0) FROM runs");
	if (st && sqlite3_step(st) == SQLITE_ROW)
		T.last_run = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	st = stmt("SELECT id, job_id, attempt, state FROM runs WHERE state IN ('running','paused')"
	          " AND job_id IS NOT NULL");
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		if (T.n_act == T.cap_act) {
			T.cap_act = T.cap_act ? 2 * T.cap_act : 16;
			T.act = loomi_xrealloc(T.act, T.cap_act * sizeof *T.act);
		}
		T.act[T.n_act++] = (active){
			.run = sqlite3_column_int64(st, 0),
			.job = sqlite3_column_int64(st, 1),
			.attempt = sqlite3_column_int(st, 2),
			.paused = strcmp((const char *)sqlite3_column_text(st, 3), "paused") == 0,
		};
	}
	sqlite3_finalize(st);
	T.stop = false;
	if (pthread_create(&T.thread, NULL, thread_main, NULL) != 0) {
		*err = loomi_strdup("tracking: cannot start its thread");
		ZSTD_freeCCtx(T.zc);
		sqlite3_close(T.db);
		sqlite3_close(R.rdb);
		return LOOM_ENOMEM;
	}
	T.running = true;
	P.stop = false;
	P.dropped = 0;
	if (pthread_create(&P.thread, NULL, plugin_main, NULL) != 0) {
		*err = loomi_strdup("tracking: cannot start the trackers' thread");
		loomi_tracking_stop();
		return LOOM_ENOMEM;
	}
	P.running = true;
	return 0;
}

void
loomi_tracking_stop(void)
{
	if (!T.running)
		return;
	pthread_mutex_lock(&T.mtx);
	T.stop = true;
	pthread_cond_signal(&T.cv);
	pthread_mutex_unlock(&T.mtx);
	pthread_join(T.thread, NULL);
	T.running = false;
	if (P.running) {
		/* the store's last calls are queued: the trackers get them all */
		pthread_mutex_lock(&P.mtx);
		P.stop = true;
		pthread_cond_signal(&P.cv);
		pthread_mutex_unlock(&P.mtx);
		pthread_join(P.thread, NULL);
		P.running = false;
	}
	for (unsigned b = 0; b < SERIES_BUCKETS; b++) {
		while (T.buckets[b]) {
			series *s = T.buckets[b];
			T.buckets[b] = s->next;
			free(s->name);
			free(s->buf);
			free(s);
		}
	}
	T.touched = NULL;
	free(T.act);
	T.act = NULL;
	T.n_act = T.cap_act = 0;
	ZSTD_freeCCtx(T.zc);
	sqlite3_close(T.db);
	sqlite3_close(R.rdb);
	T.db = R.rdb = NULL;
}

void
loomi_tracking_flush(void)
{
	if (!T.running)
		return;
	pthread_mutex_lock(&T.mtx);
	uint64_t want = ++T.flush_req;
	pthread_cond_signal(&T.cv);
	while (T.running && T.flush_done < want && !T.stop)
		pthread_cond_wait(&T.done_cv, &T.mtx);
	pthread_mutex_unlock(&T.mtx);
}

/* ------------------------------------------------------------------ what others call */

static active *
active_find(int64_t job, int attempt)
{
	for (size_t i = 0; i < T.n_act; i++) {
		if (T.act[i].job == job && (attempt < 0 || T.act[i].attempt == attempt))
			return &T.act[i];
	}
	return NULL;
}

int64_t
loomi_tracking_run_begin(int64_t job, int attempt, const char *name, const char *user,
                         const char *spec_json)
{
	item *it;
	active *a;
	int64_t run;

	if (!T.running)
		return 0;
	it = loomi_xcalloc(1, sizeof *it);
	pthread_mutex_lock(&T.mtx);
	if ((a = active_find(job, attempt)) == NULL) {
		if (T.n_act == T.cap_act) {
			T.cap_act = T.cap_act ? 2 * T.cap_act : 16;
			T.act = loomi_xrealloc(T.act, T.cap_act * sizeof *T.act);
		}
		a = &T.act[T.n_act++];
		*a = (active){.job = job, .attempt = attempt, .run = ++T.last_run};
	}
	a->paused = false;
	run = a->run;
	it->kind = IT_BEGIN;
	it->run = run;
	it->job = job;
	it->n = (size_t)attempt;
	it->at = loomi_wall_ms();
	it->name = loomi_strdup(name ? name : "");
	it->user = loomi_strdup(user ? user : "local");
	it->text = loomi_strdup(spec_json ? spec_json : "{}");
	enqueue(it);
	pthread_mutex_unlock(&T.mtx);
	return run;
}

int64_t
loomi_tracking_api_run(const char *name, const char *user, const char *params_json)
{
	item *it = loomi_xcalloc(1, sizeof *it);
	int64_t run;

	pthread_mutex_lock(&T.mtx);
	run = ++T.last_run;
	it->kind = IT_BEGIN;
	it->run = run;
	it->at = loomi_wall_ms();
	it->name = loomi_strdup(name);
	it->user = loomi_strdup(user ? user : "local");
	it->text = loomi_strdup(params_json ? params_json : "{}");
	enqueue(it);
	pthread_mutex_unlock(&T.mtx);
	return run;
}

/* Queue points of run; the caller holds T.mtx.  pts is taken. */
static void
queue_points(int64_t run, int64_t job, const char *name, tk_point *pts, size_t n)
{
	item *it = loomi_xcalloc(1, sizeof *it);
	it->kind = IT_POINTS;
	it->run = run;
	it->job = job;
	it->name = loomi_strdup(name);
	it->pts = pts;
	it->n = n;
	enqueue(it);
}

int
loomi_tracking_api_points(int64_t run, const char *name, tk_point *pts, size_t n)
{
	pthread_mutex_lock(&T.mtx);
	if (T.queued_points + n > QUEUE_MAX_POINTS) {
		pthread_mutex_unlock(&T.mtx);
		return LOOM_EBUSY;
	}
	queue_points(run, 0, name, pts, n);
	pthread_mutex_unlock(&T.mtx);
	return 0;
}

static bool
parse_value(const json_t *v, double *out)
{
	const char *s = json_string_value(v);
	if (json_is_number(v)) {
		*out = json_number_value(v);
		return true;
	}
	if (s == NULL)
		return false;
	if (!strcasecmp(s, "nan"))
		*out = NAN;
	else if (!strcasecmp(s, "infinity") || !strcasecmp(s, "inf"))
		*out = INFINITY;
	else if (!strcasecmp(s, "-infinity") || !strcasecmp(s, "-inf"))
		*out = -INFINITY;
	else
		return false;
	return true;
}

int
loomi_tracking_value(const json_t *v, double *out)
{
	return parse_value(v, out) ? 0 : LOOM_EINVAL;
}

void
loomi_tracking_worker_points(int64_t job, int attempt, const json_t *points)
{
	size_t i, n = json_array_size(points);
	active *a;
	json_t *p;

	if (!T.running || n == 0)
		return;
	pthread_mutex_lock(&T.mtx);
	if ((a = active_find(job, attempt)) == NULL || T.queued_points + n > QUEUE_MAX_POINTS) {
		if (a)
			T.dropped += n;
		counter_add(a ? &C.points_dropped_full : &C.points_dropped_no_run, n);
		pthread_mutex_unlock(&T.mtx);
		if (a)
			LOG_WARN("tracking: the metric queue is full; %zu points of task-%lld dropped", n,
			         (long long)job);
		return;
	}
	/* one queue item per run of consecutive points of the same name */
	for (i = 0; i < n;) {
		const char *name = json_string_value(json_array_get(json_array_get(points, i), 0));
		size_t k = i;
		tk_point *pts;
		size_t m = 0;
		while (k < n && name &&
		       json_string_value(json_array_get(json_array_get(points, k), 0)) &&
		       strcmp(json_string_value(json_array_get(json_array_get(points, k), 0)), name) == 0)
			k++;
		if (name == NULL || !loomi_tracking_name_ok(name)) {
			counter_add(&C.points_dropped_malformed, k > i ? k - i : 1);
			i = k > i ? k : i + 1;
			continue;
		}
		pts = loomi_xcalloc(k - i, sizeof *pts);
		for (size_t j = i; j < k; j++) {
			p = json_array_get(points, j);
			double v;
			if (json_array_size(p) != 6 || !json_is_integer(json_array_get(p, 1)) ||
			    !parse_value(json_array_get(p, 5), &v))
				continue;
			pts[m++] = (tk_point){
				.step = json_integer_value(json_array_get(p, 1)),
				.epoch = (int32_t)json_integer_value(json_array_get(p, 2)),
				.scope = (uint32_t)json_integer_value(json_array_get(p, 3)),
				.wall_ms = json_integer_value(json_array_get(p, 4)),
				.value = v,
			};
		}
		counter_add(&C.points_dropped_malformed, (k - i) - m);
		if (m > 0)
			queue_points(a->run, job, name, pts, m);
		else
			free(pts);
		i = k;
	}
	pthread_mutex_unlock(&T.mtx);
}

static void
queue_state(int64_t run, int64_t job, const char *state)
{
	item *it = loomi_xcalloc(1, sizeof *it);
	it->kind = IT_STATE;
	it->run = run;
	it->job = job;
	it->at = loomi_wall_ms();
	it->name = loomi_strdup(state);
	enqueue(it);
}

void
loomi_tracking_job_state(int64_t job, const char *state)
{
	active *a;

	if (!T.running || strcmp(state, "running") == 0)
		return;
	pthread_mutex_lock(&T.mtx);
	if ((a = active_find(job, -1)) != NULL) {
		bool paused = strcmp(state, "paused") == 0;
		/* pending: the attempt failed and a retry (a new run) waits */
		queue_state(a->run, job, strcmp(state, "pending") == 0 ? "failed" : state);
		if (paused)
			a->paused = true;
		else
			*a = T.act[--T.n_act];
	}
	pthread_mutex_unlock(&T.mtx);
}

int
loomi_tracking_api_state(int64_t run, const char *state)
{
	pthread_mutex_lock(&T.mtx);
	queue_state(run, 0, state);
	pthread_mutex_unlock(&T.mtx);
	return 0;
}

void
loomi_tracking_api_tag(int64_t run, const char *key, const char *value)
{
	item *it = loomi_xcalloc(1, sizeof *it);
	it->kind = IT_TAG;
	it->run = run;
	it->name = loomi_strdup(key);
	it->text = loomi_strdup(value);
	pthread_mutex_lock(&T.mtx);
	enqueue(it);
	pthread_mutex_unlock(&T.mtx);
}

int64_t
loomi_tracking_run_of_job(int64_t job)
{
	sqlite3_stmt *st = NULL;
	int64_t run = 0;

	loomi_tracking_flush();
	if (R.rdb &&
	    sqlite3_prepare_v2(R.rdb, "SELECT max(id) FROM runs WHERE job_id = ?", -1, &st, NULL) ==
	        SQLITE_OK) {
		sqlite3_bind_int64(st, 1, job);
		if (sqlite3_step(st) == SQLITE_ROW)
			run = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	return run;
}

bool
loomi_tracking_run_known(int64_t run)
{
	pthread_mutex_lock(&T.mtx);
	bool known = run > 0 && run <= T.last_run;
	pthread_mutex_unlock(&T.mtx);
	return known;
}

int
loomi_tracking_name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > 200)
		return 0;
	return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:") == n;
}

/* ------------------------------------------------------------------ reading */

/* The series id of run's metric name, 0 if none. */
static int64_t
series_id(sqlite3 *db, int64_t run, const char *name)
{
	sqlite3_stmt *st = NULL;
	int64_t sid = 0;

	if (sqlite3_prepare_v2(db, "SELECT id FROM metric_series WHERE run_id = ? AND name = ?", -1,
	                       &st, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, run);
		sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			sid = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	return sid;
}

/* Call fn with the points of each block of series sid that reaches into
 * [from, to], block by block in step order of their first steps; the
 * points outside the range are left out.  *overlap tells whether blocks'
 * ranges overlapped (points then come out of order). */
static int
each_block(sqlite3 *db, int64_t sid, int64_t from, int64_t to, bool *overlap,
           void (*fn)(void *arg, const tk_point *pts, size_t n), void *arg)
{
	sqlite3_stmt *st = NULL;
	tk_point *blk = NULL;
	size_t cap = 0;
	int64_t prev_last = INT64_MIN;
	int rv = 0;

	*overlap = false;
	if (sqlite3_prepare_v2(db,
	                       "SELECT first_step, last_step, n, data FROM metric_blocks"
	                       " WHERE series_id = ? AND first_step <= ? AND last_step >= ?"
	                       " ORDER BY first_step, id",
	                       -1, &st, NULL) != SQLITE_OK)
		return LOOM_EIO;
	sqlite3_bind_int64(st, 1, sid);
	sqlite3_bind_int64(st, 2, to);
	sqlite3_bind_int64(st, 3, from);
	while (sqlite3_step(st) == SQLITE_ROW) {
		int64_t first = sqlite3_column_int64(st, 0), last = sqlite3_column_int64(st, 1);
		size_t k = (size_t)sqlite3_column_int64(st, 2), lo = 0, hi;
		if (k > cap) {
			cap = k;
			blk = loomi_xrealloc(blk, cap * sizeof *blk);
		}
		if ((rv = loomi_tracking_block_unpack(sqlite3_column_blob(st, 3),
		                                      (size_t)sqlite3_column_bytes(st, 3), k, blk)) != 0)
			break;
		if (first < prev_last)
			*overlap = true;
		if (last > prev_last)
			prev_last = last;
		/* a block is sorted: the range is one slice of it */
		while (lo < k && blk[lo].step < from)
			lo++;
		for (hi = lo; hi < k && blk[hi].step <= to; hi++)
			;
		if (hi > lo)
			fn(arg, blk + lo, hi - lo);
	}
	sqlite3_finalize(st);
	free(blk);
	return rv;
}

typedef struct gather {
	tk_point *pts;
	size_t n, cap;
} gather;

static void
gather_fn(void *arg, const tk_point *pts, size_t n)
{
	gather *g = arg;
	if (g->n + n > g->cap) {
		g->cap = g->n + n > 2 * g->cap ? g->n + n : 2 * g->cap;
		g->pts = loomi_xrealloc(g->pts, g->cap * sizeof *g->pts);
	}
	for (size_t i = 0; i < n; i++) {
		g->pts[g->n] = pts[i];
		g->pts[g->n].seq = g->n;
		g->n++;
	}
}

/* How many points blocks of sid in [from, to] hold at most (edge blocks
 * count whole), and the steps they span. */
static int64_t
points_upper(sqlite3 *db, int64_t sid, int64_t from, int64_t to, int64_t *lo, int64_t *hi)
{
	sqlite3_stmt *st = NULL;
	int64_t n = 0;

	if (sqlite3_prepare_v2(db,
	                       "SELECT coalesce(sum(n), 0), min(first_step), max(last_step)"
	                       " FROM metric_blocks WHERE series_id = ? AND first_step <= ?"
	                       " AND last_step >= ?",
	                       -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, sid);
		sqlite3_bind_int64(st, 2, to);
		sqlite3_bind_int64(st, 3, from);
		if (sqlite3_step(st) == SQLITE_ROW) {
			n = sqlite3_column_int64(st, 0);
			*lo = sqlite3_column_int64(st, 1);
			*hi = sqlite3_column_int64(st, 2);
		}
	}
	sqlite3_finalize(st);
	return n;
}

int
loomi_tracking_read(sqlite3 *db, int64_t run, const char *name, int64_t from, int64_t to,
                    tk_point **pts, size_t *n)
{
	int64_t sid = series_id(db, run, name), lo = 0, hi = 0;
	gather g = {0};
	bool overlap;
	int rv;

	*pts = NULL;
	*n = 0;
	if (sid == 0)
		return LOOM_ENOENT;
	/* sized once: growing a large array costs page faults again and again */
	g.cap = (size_t)points_upper(db, sid, from, to, &lo, &hi);
	g.pts = loomi_xmalloc((g.cap ? g.cap : 1) * sizeof *g.pts);
	if ((rv = each_block(db, sid, from, to, &overlap, gather_fn, &g)) != 0) {
		free(g.pts);
		return rv;
	}
	if (overlap)
		loomi_tracking_sort(g.pts, g.n);
	*pts = g.pts;
	*n = g.n;
	return 0;
}

/* Downsampling while reading: the step range cut into buckets of equal
 * width, each keeping its lowest and highest value and its first
 * non-finite one; plus the first and the last point of the range. */
typedef struct bucket {
	tk_point lo, hi, bad;
	bool has_lo, has_bad;
} bucket;

typedef struct squeeze {
	bucket *b;
	size_t nb;
	int64_t first_step, width;
	tk_point first, last;
	size_t total;
} squeeze;

static void
squeeze_fn(void *arg, const tk_point *pts, size_t n)
{
	squeeze *q = arg;

	for (size_t i = 0; i < n; i++) {
		const tk_point *p = &pts[i];
		bucket *b = &q->b[(size_t)((p->step - q->first_step) / q->width)];
		tk_point c = *p;
		c.seq = q->total++;
		if (c.seq == 0 || c.step < q->first.step)
			q->first = c;
		if (c.seq == 0 || c.step >= q->last.step)
			q->last = c;
		if (!isfinite(c.value)) {
			if (!b->has_bad) {
				b->bad = c;
				b->has_bad = true;
			}
			continue;
		}
		if (!b->has_lo) {
			b->lo = b->hi = c;
			b->has_lo = true;
		} else if (c.value < b->lo.value) {
			b->lo = c;
		} else if (c.value > b->hi.value) {
			b->hi = c;
		}
	}
}

static int
cmp_step_seq(const void *a, const void *b)
{
	const tk_point *x = a, *y = b;
	if (x->step != y->step)
		return x->step < y->step ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int
loomi_tracking_history(sqlite3 *db, int64_t run, const char *name, int64_t from, int64_t to,
                       size_t max, tk_point **out, size_t *n, size_t *total)
{
	int64_t sid = series_id(db, run, name), lo = 0, hi = 0, upper;
	squeeze q = {0};
	bool overlap;
	size_t m = 0;
	int rv;

	*out = NULL;
	*n = *total = 0;
	if (sid == 0)
		return LOOM_ENOENT;
	upper = points_upper(db, sid, from, to, &lo, &hi);
	if (upper <= (int64_t)max || max < 5) {
		rv = loomi_tracking_read(db, run, name, from, to, out, n);
		*total = *n;
		return rv;
	}
	if (lo < from)
		lo = from;
	if (hi > to)
		hi = to;
	q.nb = (max - 2) / 3;
	q.first_step = lo;
	/* a width that covers [lo, hi] with nb buckets (no overflow for any steps) */
	q.width = (int64_t)((uint64_t)(hi - lo) / q.nb + 1);
	q.nb = (size_t)((uint64_t)(hi - lo) / (uint64_t)q.width + 1);
	q.b = loomi_xcalloc(q.nb, sizeof *q.b);
	if ((rv = each_block(db, sid, from, to, &overlap, squeeze_fn, &q)) != 0) {
		free(q.b);
		return rv;
	}
	tk_point *o = loomi_xmalloc((3 * q.nb + 2) * sizeof *o);
	if (q.total > 0)
		o[m++] = q.first;
	for (size_t i = 0; i < q.nb; i++) {
		bucket *b = &q.b[i];
		tk_point pick[3];
		size_t k = 0;
		if (b->has_lo) {
			pick[k++] = b->lo;
			if (b->hi.seq != b->lo.seq)
				pick[k++] = b->hi;
		}
		if (b->has_bad)
			pick[k++] = b->bad;
		qsort(pick, k, sizeof *pick, cmp_step_seq);
		for (size_t j = 0; j < k; j++) {
			if (pick[j].seq != q.first.seq && pick[j].seq != q.last.seq)
				o[m++] = pick[j];
		}
	}
	if (q.total > 1)
		o[m++] = q.last;
	if (overlap)
		qsort(o, m, sizeof *o, cmp_step_seq);
	free(q.b);
	*out = o;
	*n = m;
	*total = q.total;
	return 0;
}

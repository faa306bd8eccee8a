/* sched-local — the scheduler for jobs that run on the nodes the host lists
 * (this machine, usually one node called "local"): priorities, weighted
 * fair share, dependencies, retry back-off, resource fit with reservations
 * for big jobs and, when enabled, preemption.
 *
 * plan() is a pure function of the view and the settings: no clock (the
 * view's now_ms is "now"), no I/O, no state kept between calls; the same
 * view always gives the same plan, byte for byte.
 *
 * Settings (the config group of a sched-local instance):
 *   preemption = false;        pause lower-priority preemptible jobs so a
 *                              waiting higher-priority job fits
 *   fair_share = true;         within a priority, users with the lowest
 *                              usage / weight go first
 *   max_starts_per_plan = 64;  the most jobs one plan starts (1 to 1000000)
 * The host validates them (a wrong type, a value out of range or an
 * unknown key is refused naming the file, line and key).
 *
 * The queue.  Every pending or paused job is a candidate; running jobs only
 * hold resources (and may be preempted).  Candidates are taken in this
 * order: higher priority first; within a priority, with fair_share, the
 * user whose usage / weight is lowest first (a user missing from the view's
 * list counts as usage 0, weight 1; a weight that is not a positive number
 * puts the user after every user with a share); then the oldest submission
 * (submitted_ms), then the lowest id.  Fair share orders whole users within
 * a priority by their standing at the time of the view; it is not updated
 * by the starts of the plan being made.
 *
 * Each candidate, in that order, gets exactly one action: START, or WAIT
 * with the reason users see:
 *   - "no node to run on" when the view lists no node;
 *   - "job asks for 2 gpu but no node has that many (...); it can never
 *     start as submitted" when no node's total could ever hold the request;
 *   - "waiting for job 12 (running)" when LOOM_SCHED_JOB_DEPS_MET is not set
 *     (up to three unfinished jobs of `after`, with their states);
 *   - "retry back-off until <UTC time> (in 5 s), after 2 attempts" under
 *     LOOM_SCHED_JOB_BACKOFF or while not_before_ms > now_ms;
 *   - "waiting for 4 cpu; 2 of 8 cpu free on local" when it does not fit;
 *   - "behind 3 jobs of higher priority holding resources on local (first:
 *     job 12)" when it would fit but for the resources held for jobs ahead;
 *   - "preempting job 9 on local to make room" (see preemption);
 *   - "ready, but this plan already starts 64 jobs (max_starts_per_plan)"
 *     when the start limit or the plan's capacity is reached.
 *
 * Resource fit.  A job fits a node when its cpu_millis, memory and gpu each
 * fit what the node has free; nodes are tried in the view's order and the
 * first that fits is taken.  The free amounts are decreased by every start
 * planned in the same call, so a plan never over-commits a node.  The
 * allocation is the request, with gpu_mask set to the lowest free GPU
 * indices (0 when the job asks for no GPU).
 *
 * Reservation (no backfill past a blocked job).  A candidate that is ready
 * (dependencies met, no back-off) and fits some node's total but not what
 * is free now holds, on the node where it lacks least, whatever of its
 * request is free there.  Jobs after it in the queue may start only in what
 * is left, on that node or elsewhere.  Jobs have no run-time estimates, so
 * a job that would "finish in time" cannot be told apart from one that
 * would not, and letting smaller jobs take what frees up would starve big
 * ones.  Jobs that are not ready (dependencies, back-off) and jobs that can
 * never fit hold nothing.  A ready job that only waits for the start limit
 * holds its whole request.
 *
 * Preemption (preemption = true).  A ready candidate that fits some node's
 * total but not what is free (after the holds of jobs ahead) may preempt
 * running jobs on one node that carry LOOM_SCHED_JOB_PREEMPTIBLE and have a
 * strictly lower priority.  Victims are taken lowest priority first, then
 * latest started_ms first (then highest id), until the job would fit; then
 * every victim that is not needed is dropped again, the last taken first,
 * so no smaller subset of the chosen ones would do.  The node needing the
 * fewest victims is chosen (the first in the view's order on a tie).  The
 * plan then holds PREEMPT for the victims and a WAIT for the job, which
 * holds the node's free resources it will need: the host pauses the
 * victims (a PREEMPT of a job already being paused must be harmless, as a
 * plan made before the pause completes asks again), and a later plan starts
 * the job once their resources show as free.  A preempted job is paused,
 * so it is a candidate again under the same rules.
 *
 * GPU indices (the convention this plugin relies on).  A node's free GPUs
 * are node.free.gpu_mask (bit i = GPU i) whenever the host fills masks
 * (node.free.gpu_mask or node.total.gpu_mask is non-zero); a running job
 * then holds alloc.gpu_mask.  When both masks of a node are 0 the host does
 * not track indices: the node's GPUs are taken as 0 .. total.gpu - 1, less
 * the gpu_mask of each running job on it, and a running job holding GPUs
 * with an empty mask is taken to hold the lowest indices left (in the
 * view's order).  Either way no more than free.gpu GPUs are used (the
 * lowest of the set), and only GPUs 0 to 63 can be allocated.
 *
 * The plan.  Actions are written PREEMPTs first, then STARTs, then WAITs,
 * each in queue order.  Starts and preemptions are limited to plan->cap so
 * that none is ever cut; WAITs that find no room left are dropped (the host
 * keeps showing the previous reason for those jobs). */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <loom/scheduler.h>

typedef struct ctx {
	/* settings (filled by the host from the config map) */
	bool preemption;
	bool fair_share;
	int64_t max_starts;
	/* state */
	const loom_host *host;
	loom_instance *ins;
} ctx;

static const loom_config_entry config[] = {
	{LOOM_CONFIG_BOOL, 0, "preemption", "false", offsetof(ctx, preemption),
	 "pause lower-priority preemptible jobs so that a waiting higher-priority job fits", 0,
	 0, NULL, {NULL, NULL}},
	{LOOM_CONFIG_BOOL, 0, "fair_share", "true", offsetof(ctx, fair_share),
	 "within a priority, start the jobs of the user with the lowest usage / weight first", 0,
	 0, NULL, {NULL, NULL}},
	{LOOM_CONFIG_INT, LOOM_CONFIG_RANGE, "max_starts_per_plan", "64",
	 offsetof(ctx, max_starts), "the most jobs one scheduling round starts", 1, 1000000,
	 NULL, {NULL, NULL}},
	LOOM_CONFIG_END,
};

#define REASON_LEN sizeof(((loom_sched_action *)0)->reason)

/* ------------------------------------------------------------------ resources */

/* What a node has during one plan.  GPUs are a set of indices. */
typedef struct pool {
	uint64_t cpu; /* millis */
	uint64_t mem; /* bytes */
	uint64_t gpus;
} pool;

static unsigned
popcount(uint64_t m)
{
	unsigned n = 0;
	for (; m; m &= m - 1)
		n++;
	return n;
}

/* The n lowest members of set (all of them when it has fewer). */
static uint64_t
lowest(uint64_t set, uint64_t n)
{
	uint64_t out = 0;
	for (; set && n > 0; n--) {
		uint64_t bit = set & (~set + 1);
		out |= bit;
		set &= ~bit;
	}
	return out;
}

static uint64_t
sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t
sub_min(uint64_t a, uint64_t b)
{
	return a > b ? a - b : 0;
}

static bool
fits(const pool *p, const loom_resources *r)
{
	return r->cpu_millis <= p->cpu && r->memory <= p->mem && r->gpu <= popcount(p->gpus);
}

/* Take r (or as much of it as there is) out of p; the GPUs taken are the
 * lowest free ones, returned. */
static uint64_t
take(pool *p, const loom_resources *r)
{
	uint64_t m = lowest(p->gpus, r->gpu);
	p->cpu = sub_min(p->cpu, r->cpu_millis);
	p->mem = sub_min(p->mem, r->memory);
	p->gpus &= ~m;
	return m;
}

/* ------------------------------------------------------------------ text */

/* Append to a reason, truncating at its end. */
static void appendf(char *buf, const char *fmt, ...) LOOM_PRINTF(2, 3);

static void
appendf(char *buf, const char *fmt, ...)
{
	size_t len = strlen(buf);
	va_list ap;

	if (len + 1 >= REASON_LEN)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + len, REASON_LEN - len, fmt, ap);
	va_end(ap);
}

/* "2", "1.5", "0.25" cores. */
static void
fmt_cpu(char *buf, size_t len, uint64_t millis)
{
	uint64_t frac = millis % 1000;
	if (frac == 0) {
		snprintf(buf, len, "%" PRIu64, millis / 1000);
		return;
	}
	int digits = 3;
	while (frac % 10 == 0) {
		frac /= 10;
		digits--;
	}
	snprintf(buf, len, "%" PRIu64 ".%0*" PRIu64, millis / 1000, digits, frac);
}

/* "512 B", "64 MiB", "1.5 GiB". */
static void
fmt_mem(char *buf, size_t len, uint64_t bytes)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	unsigned u = 0;
	double x = (double)bytes;
	char num[32];
	char *dot;

	while (x >= 1024.0 && u + 1 < sizeof units / sizeof units[0]) {
		x /= 1024.0;
		u++;
	}
	snprintf(num, sizeof num, "%.2f", x);
	if ((dot = strchr(num, '.')) != NULL) {
		char *end = num + strlen(num);
		while (end > dot && (end[-1] == '0' || end[-1] == '.')) {
			bool was_dot = end[-1] == '.';
			*--end = '\0';
			if (was_dot)
				break;
		}
	}
	snprintf(buf, len, "%s %s", num, units[u]);
}

/* "4.5 s", "3 min 20 s", "2 h 5 min". */
static void
fmt_duration(char *buf, size_t len, int64_t ms)
{
	if (ms < 60000)
		snprintf(buf, len, "%" PRId64 ".%" PRId64 " s", ms / 1000, ms % 1000 / 100);
	else if (ms < 3600000)
		snprintf(buf, len, "%" PRId64 " min %" PRId64 " s", ms / 60000, ms % 60000 / 1000);
	else
		snprintf(buf, len, "%" PRId64 " h %" PRId64 " min", ms / 3600000,
		         ms % 3600000 / 60000);
}

/* "2024-05-01 12:00:05 UTC". */
static void
fmt_utc(char *buf, size_t len, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms < 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, len, "%" PRId64 " ms", ms);
}

/* ------------------------------------------------------------------ the planner */

typedef struct node {
	pool total;
	pool avail; /* free, less the starts planned so far */
	pool open;  /* avail, less what is held for jobs ahead in the queue */
	uint32_t n_held;     /* jobs ahead holding resources here */
	int64_t held_first;  /* the first of them */
	int32_t held_prio;   /* the priority of the last of them */
	uint32_t n_held_prio; /* how many of them have that priority */
	char name[64];
} node;

typedef struct jobref {
	int64_t id;
	size_t i;
} jobref;

typedef struct planner {
	const ctx *c;
	const loom_sched_view *v;
	node *nodes;
	uint64_t *held;          /* per job: the GPUs a running job holds */
	bool *victim;            /* per job: preempted by this plan */
	loom_sched_action *act;  /* per job: its action (verb 0: none) */
	size_t *order;           /* jobs with an action, in decision order */
	size_t n_order;
	jobref *byid;            /* every job, by id */
	size_t *users;           /* view->users with a name, by name */
	size_t n_users;
	size_t *preemptible;     /* running preemptible jobs, in preemption order */
	size_t n_preemptible;
	size_t *tmp;             /* scratch for choosing victims */
	size_t *cands;           /* pending and paused jobs, in queue order */
	size_t n_cands;
	size_t room;             /* actions left for STARTs and PREEMPTs */
	int64_t starts;
} planner;

static int
cmp_int64(int64_t a, int64_t b)
{
	return a < b ? -1 : a > b;
}

static int
cmp_jobref(const void *a, const void *b)
{
	const jobref *x = a, *y = b;
	int r = cmp_int64(x->id, y->id);
	return r ? r : (x->i > y->i) - (x->i < y->i);
}

/* qsort gives a comparator no argument (and qsort_r is not portable), so
 * the planner sorts small keys that carry what the comparison needs. */
typedef struct key_user {
	const char *name;
	size_t i;
} key_user;

static int
cmp_key_user(const void *a, const void *b)
{
	const key_user *x = a, *y = b;
	int r = strcmp(x->name, y->name);
	return r ? r : (x->i > y->i) - (x->i < y->i);
}

typedef struct key_cand {
	int32_t priority;
	double share;
	int64_t submitted;
	int64_t id;
	size_t i;
} key_cand;

static int
cmp_key_cand(const void *a, const void *b)
{
	const key_cand *x = a, *y = b;
	int r;

	if (x->priority != y->priority)
		return x->priority > y->priority ? -1 : 1;
	if (x->share != y->share)
		return x->share < y->share ? -1 : 1;
	if ((r = cmp_int64(x->submitted, y->submitted)) != 0)
		return r;
	if ((r = cmp_int64(x->id, y->id)) != 0)
		return r;
	return (x->i > y->i) - (x->i < y->i);
}

/* Preemption order: lowest priority, then latest started, then highest id. */
typedef struct key_victim {
	int32_t priority;
	int64_t started;
	int64_t id;
	size_t i;
} key_victim;

static int
cmp_key_victim(const void *a, const void *b)
{
	const key_victim *x = a, *y = b;
	int r;

	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	if ((r = cmp_int64(y->started, x->started)) != 0)
		return r;
	if ((r = cmp_int64(y->id, x->id)) != 0)
		return r;
	return (x->i > y->i) - (x->i < y->i);
}

static void
planner_free(planner *s)
{
	free(s->nodes);
	free(s->held);
	free(s->victim);
	free(s->act);
	free(s->order);
	free(s->byid);
	free(s->users);
	free(s->preemptible);
	free(s->tmp);
	free(s->cands);
}

/* A user's usage / weight; 0 for one not in the view. */
static double
user_share(const planner *s, const char *user)
{
	const loom_sched_view *v = s->v;
	size_t lo = 0, hi = s->n_users;

	if (user == NULL)
		return 0;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = strcmp(v->users[s->users[mid]].name, user);
		if (r == 0) {
			const loom_sched_user *u = &v->users[s->users[mid]];
			double usage = isfinite(u->usage) && u->usage > 0 ? u->usage : 0;
			double share;
			if (!(u->weight > 0)) /* also NaN */
				return INFINITY;
			share = usage / u->weight;
			return isnan(share) ? INFINITY : share;
		}
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/* The job with id, or NULL. */
static const loom_sched_job *
job_by_id(const planner *s, int64_t id)
{
	size_t lo = 0, hi = s->v->n_jobs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->byid[mid].id == id) {
			/* the first of equal ids, for determinism */
			while (mid > 0 && s->byid[mid - 1].id == id)
				mid--;
			return &s->v->jobs[s->byid[mid].i];
		}
		if (s->byid[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static bool
is_candidate(const loom_sched_job *j)
{
	return j->state == LOOM_JOB_PENDING || j->state == LOOM_JOB_PAUSED;
}

static bool
node_ok(const planner *s, int32_t n)
{
	return n >= 0 && (size_t)n < s->v->n_nodes;
}

/* The nodes' pools and the GPUs running jobs hold (see the header). */
static void
init_nodes(planner *s)
{
	const loom_sched_view *v = s->v;

	for (size_t n = 0; n < v->n_nodes; n++) {
		const loom_sched_node *vn = &v->nodes[n];
		node *nd = &s->nodes[n];
		uint64_t free_set;
		unsigned ngpu = vn->total.gpu < 64 ? vn->total.gpu : 64;

		if (vn->name && vn->name[0])
			snprintf(nd->name, sizeof nd->name, "%s", vn->name);
		else
			snprintf(nd->name, sizeof nd->name, "node %zu", n);

		if (vn->free.gpu_mask != 0 || vn->total.gpu_mask != 0) {
			free_set = vn->free.gpu_mask;
			for (size_t i = 0; i < v->n_jobs; i++) {
				if (v->jobs[i].state == LOOM_JOB_RUNNING && v->jobs[i].node == (int32_t)n)
					s->held[i] = v->jobs[i].alloc.gpu_mask;
			}
			nd->total.gpus = vn->total.gpu_mask ? vn->total.gpu_mask
			                                    : lowest(UINT64_MAX, ngpu);
		} else {
			uint64_t all = lowest(UINT64_MAX, ngpu), taken = 0;
			for (size_t i = 0; i < v->n_jobs; i++) {
				const loom_sched_job *j = &v->jobs[i];
				if (j->state == LOOM_JOB_RUNNING && j->node == (int32_t)n)
					taken |= j->alloc.gpu_mask & all;
			}
			for (size_t i = 0; i < v->n_jobs; i++) {
				const loom_sched_job *j = &v->jobs[i];
				if (j->state != LOOM_JOB_RUNNING || j->node != (int32_t)n)
					continue;
				if (j->alloc.gpu_mask != 0) {
					s->held[i] = j->alloc.gpu_mask & all;
				} else if (j->alloc.gpu > 0) {
					s->held[i] = lowest(all & ~taken, j->alloc.gpu);
					taken |= s->held[i];
				}
			}
			free_set = all & ~taken;
			nd->total.gpus = all;
		}
		/* never more than the host's count */
		free_set = lowest(free_set, vn->free.gpu);

		nd->total.cpu = vn->total.cpu_millis;
		nd->total.mem = vn->total.memory;
		nd->avail.cpu = vn->free.cpu_millis;
		nd->avail.mem = vn->free.memory;
		nd->avail.gpus = free_set;
		nd->open = nd->avail;
	}
}

static int
planner_init(planner *s, const ctx *c, const loom_sched_view *v, size_t cap)
{
	size_t nj = v->n_jobs;
	key_user *ku = NULL;
	key_cand *kc = NULL;
	key_victim *kv = NULL;
	size_t n;

	memset(s, 0, sizeof *s);
	s->c = c;
	s->v = v;
	s->room = cap;
	s->nodes = calloc(v->n_nodes ? v->n_nodes : 1, sizeof *s->nodes);
	s->held = calloc(nj ? nj : 1, sizeof *s->held);
	s->victim = calloc(nj ? nj : 1, sizeof *s->victim);
	s->act = calloc(nj ? nj : 1, sizeof *s->act);
	s->order = calloc(nj ? nj : 1, sizeof *s->order);
	s->byid = calloc(nj ? nj : 1, sizeof *s->byid);
	s->users = calloc(v->n_users ? v->n_users : 1, sizeof *s->users);
	s->preemptible = calloc(nj ? nj : 1, sizeof *s->preemptible);
	s->tmp = calloc(nj ? nj : 1, sizeof *s->tmp);
	s->cands = calloc(nj ? nj : 1, sizeof *s->cands);
	ku = calloc(v->n_users ? v->n_users : 1, sizeof *ku);
	kc = calloc(nj ? nj : 1, sizeof *kc);
	kv = calloc(nj ? nj : 1, sizeof *kv);
	if (!s->nodes || !s->held || !s->victim || !s->act || !s->order || !s->byid ||
	    !s->users || !s->preemptible || !s->tmp || !s->cands || !ku || !kc || !kv) {
		free(ku);
		free(kc);
		free(kv);
		planner_free(s);
		return LOOM_ENOMEM;
	}

	for (size_t i = 0; i < nj; i++) {
		s->byid[i].id = v->jobs[i].id;
		s->byid[i].i = i;
	}
	qsort(s->byid, nj, sizeof *s->byid, cmp_jobref);

	n = 0;
	for (size_t i = 0; i < v->n_users; i++) {
		if (v->users[i].name != NULL) {
			ku[n].name = v->users[i].name;
			ku[n++].i = i;
		}
	}
	qsort(ku, n, sizeof *ku, cmp_key_user);
	for (size_t i = 0; i < n; i++)
		s->users[i] = ku[i].i;
	s->n_users = n;

	init_nodes(s);

	n = 0;
	for (size_t i = 0; i < nj; i++) {
		const loom_sched_job *j = &v->jobs[i];
		if (!is_candidate(j))
			continue;
		kc[n].priority = j->priority;
		kc[n].share = c->fair_share ? user_share(s, j->user) : 0;
		kc[n].submitted = j->submitted_ms;
		kc[n].id = j->id;
		kc[n++].i = i;
	}
	qsort(kc, n, sizeof *kc, cmp_key_cand);
	for (size_t i = 0; i < n; i++)
		s->cands[i] = kc[i].i;
	s->n_cands = n;

	n = 0;
	for (size_t i = 0; i < nj; i++) {
		const loom_sched_job *j = &v->jobs[i];
		if (j->state != LOOM_JOB_RUNNING || !(j->flags & LOOM_SCHED_JOB_PREEMPTIBLE) ||
		    !node_ok(s, j->node))
			continue;
		kv[n].priority = j->priority;
		kv[n].started = j->started_ms;
		kv[n].id = j->id;
		kv[n++].i = i;
	}
	qsort(kv, n, sizeof *kv, cmp_key_victim);
	for (size_t i = 0; i < n; i++)
		s->preemptible[i] = kv[i].i;
	s->n_preemptible = n;

	free(ku);
	free(kc);
	free(kv);
	return 0;
}

/* Record job i's action (the caller fills it). */
static loom_sched_action *
decide(planner *s, size_t i, uint32_t verb)
{
	loom_sched_action *a = &s->act[i];
	memset(a, 0, sizeof *a);
	a->verb = verb;
	a->node = -1;
	a->job_id = s->v->jobs[i].id;
	s->order[s->n_order++] = i;
	return a;
}

/* Note that the job at i holds resources on node n for the jobs after it. */
static void
note_hold(planner *s, size_t n, const loom_sched_job *j)
{
	node *nd = &s->nodes[n];
	if (nd->n_held == 0)
		nd->held_first = j->id;
	if (nd->n_held > 0 && nd->held_prio == j->priority) {
		nd->n_held_prio++;
	} else {
		nd->held_prio = j->priority;
		nd->n_held_prio = 1;
	}
	nd->n_held++;
}

/* "4 cpu", "16 GiB memory", "2 gpu" joined with ", " and " and ". */
static void
append_list(char *buf, const char *const *parts, size_t n)
{
	for (size_t k = 0; k < n; k++)
		appendf(buf, "%s%s", k == 0 ? "" : k + 1 == n ? " and " : ", ", parts[k]);
}

/* Why j can never fit: no node's total holds its request. */
static void
reason_never(const planner *s, const loom_sched_job *j, char *reason)
{
	const loom_sched_view *v = s->v;
	const loom_resources *r = &j->request;
	uint64_t most[3] = {0, 0, 0};
	size_t at[3] = {0, 0, 0};
	char want[3][48], have[3][128], num[32];
	const char *wp[3], *hp[3];
	size_t nw = 0;
	bool only_mem = true;

	for (size_t n = 0; n < v->n_nodes; n++) {
		const node *nd = &s->nodes[n];
		uint64_t amt[3] = {nd->total.cpu, nd->total.mem, popcount(nd->total.gpus)};
		for (int d = 0; d < 3; d++) {
			if (amt[d] > most[d] || n == 0) {
				most[d] = amt[d];
				at[d] = n;
			}
		}
	}
	if (r->cpu_millis > most[0]) {
		char m[32];
		fmt_cpu(num, sizeof num, r->cpu_millis);
		fmt_cpu(m, sizeof m, most[0]);
		snprintf(want[nw], sizeof want[nw], "%s cpu", num);
		snprintf(have[nw], sizeof have[nw], "%s cpu on %s", m, s->nodes[at[0]].name);
		nw++;
		only_mem = false;
	}
	if (r->memory > most[1]) {
		char m[32];
		fmt_mem(num, sizeof num, r->memory);
		fmt_mem(m, sizeof m, most[1]);
		snprintf(want[nw], sizeof want[nw], "%s memory", num);
		snprintf(have[nw], sizeof have[nw], "%s on %s", m, s->nodes[at[1]].name);
		nw++;
	}
	if (r->gpu > most[2]) {
		snprintf(want[nw], sizeof want[nw], "%" PRIu32 " gpu", r->gpu);
		snprintf(have[nw], sizeof have[nw], "%" PRIu64 " gpu on %s", most[2],
		         s->nodes[at[2]].name);
		nw++;
		only_mem = false;
	}
	reason[0] = '\0';
	if (nw == 0) {
		char c[32], m[32];
		fmt_cpu(c, sizeof c, r->cpu_millis);
		fmt_mem(m, sizeof m, r->memory);
		appendf(reason,
		        "job asks for %s cpu, %s memory and %" PRIu32 " gpu but no single node has "
		        "all of that; it can never start as submitted",
		        c, m, r->gpu);
		return;
	}
	for (size_t k = 0; k < nw; k++) {
		wp[k] = want[k];
		hp[k] = have[k];
	}
	appendf(reason, "job asks for ");
	append_list(reason, wp, nw);
	appendf(reason, " but no node has that %s (largest: ", only_mem ? "much" : "many");
	append_list(reason, hp, nw);
	appendf(reason, "); it can never start as submitted");
}

/* Why j waits for its dependencies. */
static void
reason_deps(const planner *s, const loom_sched_job *j, char *reason)
{
	size_t named = 0, more = 0;
	uint32_t n_after = j->after != NULL ? j->n_after : 0;

	reason[0] = '\0';
	for (uint32_t k = 0; k < n_after; k++) {
		const loom_sched_job *d = job_by_id(s, j->after[k]);
		const char *st;
		if (d == NULL || d == j)
			continue;
		if (named == 3) {
			more++;
			continue;
		}
		st = loom_job_state_name(d->state);
		appendf(reason, "%s%" PRId64 " (%s)", named == 0 ? "" : ", ", d->id,
		        st ? st : "unknown state");
		named++;
	}
	if (named > 0) {
		char list[REASON_LEN];
		snprintf(list, sizeof list, "%s", reason);
		reason[0] = '\0';
		appendf(reason, "waiting for job%s %s", named + more > 1 ? "s" : "", list);
		if (more)
			appendf(reason, " and %zu more", more);
		return;
	}
	if (n_after == 0) {
		appendf(reason, "waiting for the jobs it runs after");
		return;
	}
	/* None of them is queued any more, yet they are not all completed. */
	appendf(reason, "waiting for job%s ", n_after > 1 ? "s" : "");
	for (uint32_t k = 0; k < n_after && k < 3; k++)
		appendf(reason, "%s%" PRId64, k == 0 ? "" : ", ", j->after[k]);
	if (n_after > 3)
		appendf(reason, " and %" PRIu32 " more", n_after - 3);
	appendf(reason, ", which ended without all completing");
}

static void
reason_backoff(const planner *s, const loom_sched_job *j, char *reason)
{
	int64_t now = s->v->now_ms;

	reason[0] = '\0';
	if (j->not_before_ms > now) {
		char when[48], in[48];
		fmt_utc(when, sizeof when, j->not_before_ms);
		fmt_duration(in, sizeof in, j->not_before_ms - now);
		appendf(reason, "retry back-off until %s (in %s)", when, in);
	} else {
		appendf(reason, "in retry back-off");
	}
	if (j->attempts > 0)
		appendf(reason, ", after %" PRIu32 " attempt%s", j->attempts,
		        j->attempts == 1 ? "" : "s");
}

/* Why j does not fit what node n has free. */
static void
reason_short(const planner *s, const loom_sched_job *j, size_t n, char *reason)
{
	const node *nd = &s->nodes[n];
	const loom_resources *r = &j->request;
	char want[3][48], have[3][128], a[32], b[32];
	const char *wp[3], *hp[3];
	size_t nw = 0;

	if (r->cpu_millis > nd->avail.cpu) {
		fmt_cpu(a, sizeof a, r->cpu_millis);
		snprintf(want[nw], sizeof want[nw], "%s cpu", a);
		fmt_cpu(a, sizeof a, nd->avail.cpu);
		fmt_cpu(b, sizeof b, nd->total.cpu);
		snprintf(have[nw], sizeof have[nw], "%s of %s cpu", a, b);
		nw++;
	}
	if (r->memory > nd->avail.mem) {
		fmt_mem(a, sizeof a, r->memory);
		snprintf(want[nw], sizeof want[nw], "%s memory", a);
		fmt_mem(a, sizeof a, nd->avail.mem);
		fmt_mem(b, sizeof b, nd->total.mem);
		snprintf(have[nw], sizeof have[nw], "%s of %s memory", a, b);
		nw++;
	}
	if (r->gpu > popcount(nd->avail.gpus)) {
		snprintf(want[nw], sizeof want[nw], "%" PRIu32 " gpu", r->gpu);
		snprintf(have[nw], sizeof have[nw], "%u of %u gpu", popcount(nd->avail.gpus),
		         popcount(nd->total.gpus));
		nw++;
	}
	for (size_t k = 0; k < nw; k++) {
		wp[k] = want[k];
		hp[k] = have[k];
	}
	reason[0] = '\0';
	appendf(reason, "waiting for ");
	append_list(reason, wp, nw);
	appendf(reason, "; ");
	append_list(reason, hp, nw);
	appendf(reason, " free on %s", nd->name);
}

/* Why j, which fits what node n has free, waits behind the jobs holding it. */
static void
reason_behind(const planner *s, const loom_sched_job *j, size_t n, char *reason)
{
	const node *nd = &s->nodes[n];
	uint32_t same = nd->held_prio == j->priority ? nd->n_held_prio : 0;
	uint32_t higher = nd->n_held - same;

	reason[0] = '\0';
	if (same == 0)
		appendf(reason, "behind %" PRIu32 " job%s of higher priority", nd->n_held,
		        nd->n_held == 1 ? "" : "s");
	else if (higher > 0)
		appendf(reason, "behind %" PRIu32 " jobs queued ahead (%" PRIu32
		                " of higher priority)",
		        nd->n_held, higher);
	else
		appendf(reason, "behind %" PRIu32 " job%s queued ahead", nd->n_held,
		        nd->n_held == 1 ? "" : "s");
	appendf(reason, " holding resources on %s (first: job %" PRId64 ")", nd->name,
	        nd->held_first);
}

/* Add what a running job holds to p. */
static void
pool_add_job(pool *p, const planner *s, size_t i)
{
	const loom_sched_job *j = &s->v->jobs[i];
	p->cpu = sat_add(p->cpu, j->alloc.cpu_millis);
	p->mem = sat_add(p->mem, j->alloc.memory);
	p->gpus |= s->held[i];
}

/* Choose the victims on node n that let job j fit: into out, returning
 * how many (0: none will do). */
static size_t
choose_victims(const planner *s, const loom_sched_job *j, size_t n, size_t *out)
{
	pool sum = s->nodes[n].open;
	size_t k = 0;
	bool ok = false;

	for (size_t p = 0; p < s->n_preemptible && !ok; p++) {
		size_t i = s->preemptible[p];
		const loom_sched_job *r = &s->v->jobs[i];
		if (r->node != (int32_t)n || s->victim[i] || r->priority >= j->priority)
			continue;
		out[k++] = i;
		pool_add_job(&sum, s, i);
		ok = fits(&sum, &j->request);
	}
	if (!ok)
		return 0;
	/* Drop the ones not needed, the last taken first. */
	for (size_t x = k; x-- > 0;) {
		pool without = s->nodes[n].open;
		for (size_t y = 0; y < k; y++) {
			if (y != x)
				pool_add_job(&without, s, out[y]);
		}
		if (fits(&without, &j->request)) {
			memmove(&out[x], &out[x + 1], (k - x - 1) * sizeof *out);
			k--;
		}
	}
	return k;
}

/* Preempt for candidate i if some node can make room; true when it did. */
static bool
try_preempt(planner *s, size_t i)
{
	const loom_sched_job *j = &s->v->jobs[i];
	size_t best = SIZE_MAX, best_k = SIZE_MAX, k;
	loom_sched_action *a;
	node *nd;
	pool victims = {0, 0, 0};
	uint64_t future;

	for (size_t n = 0; n < s->v->n_nodes; n++) {
		k = choose_victims(s, j, n, s->tmp);
		if (k > 0 && k < best_k && k <= s->room) {
			best = n;
			best_k = k;
		}
	}
	if (best == SIZE_MAX)
		return false;

	k = choose_victims(s, j, best, s->tmp);
	nd = &s->nodes[best];
	for (size_t x = 0; x < k; x++) {
		size_t v = s->tmp[x];
		s->victim[v] = true;
		pool_add_job(&victims, s, v);
		a = decide(s, v, LOOM_SCHED_PREEMPT);
		a->node = s->v->jobs[v].node;
		snprintf(a->reason, sizeof a->reason,
		         "preempted for job %" PRId64 " (priority %" PRId32 " over %" PRId32 ")",
		         j->id, j->priority, s->v->jobs[v].priority);
		s->room--;
	}

	/* The job will take, of what is free now, only what the victims do
	 * not give back; hold that so that no job after it takes it. */
	future = lowest(nd->open.gpus | victims.gpus, j->request.gpu);
	nd->open.cpu = sub_min(nd->open.cpu, sub_min(j->request.cpu_millis, victims.cpu));
	nd->open.mem = sub_min(nd->open.mem, sub_min(j->request.memory, victims.mem));
	nd->open.gpus &= ~future;
	note_hold(s, best, j);

	a = decide(s, i, LOOM_SCHED_WAIT);
	appendf(a->reason, "preempting job%s ", k > 1 ? "s" : "");
	for (size_t x = 0; x < k && x < 3; x++)
		appendf(a->reason, "%s%" PRId64, x == 0 ? "" : ", ", s->v->jobs[s->tmp[x]].id);
	if (k > 3)
		appendf(a->reason, " and %zu more", k - 3);
	appendf(a->reason, " on %s to make room", nd->name);
	return true;
}

/* Lack of job j on node n, as a fraction of the node: where it lacks least. */
static double
shortfall(const node *nd, const loom_resources *r)
{
	double f = 0;
	unsigned g = popcount(nd->open.gpus);

	if (r->cpu_millis > nd->open.cpu && nd->total.cpu > 0)
		f += (double)(r->cpu_millis - nd->open.cpu) / (double)nd->total.cpu;
	if (r->memory > nd->open.mem && nd->total.mem > 0)
		f += (double)(r->memory - nd->open.mem) / (double)nd->total.mem;
	if (r->gpu > g && popcount(nd->total.gpus) > 0)
		f += (double)(r->gpu - g) / (double)popcount(nd->total.gpus);
	return f;
}

/* Candidate i is ready and fits some node's total: start it, or make it
 * wait holding what it will need. */
static void
place(planner *s, size_t i)
{
	const loom_sched_job *j = &s->v->jobs[i];
	const loom_sched_view *v = s->v;
	loom_sched_action *a;
	size_t n, best = SIZE_MAX;
	double best_f = 0;

	for (n = 0; n < v->n_nodes; n++) {
		if (fits(&s->nodes[n].open, &j->request))
			break;
	}
	if (n < v->n_nodes) {
		node *nd = &s->nodes[n];
		if (s->starts < s->c->max_starts && s->room > 0) {
			a = decide(s, i, LOOM_SCHED_START);
			a->node = (int32_t)n;
			a->alloc = j->request;
			a->alloc.gpu_mask = take(&nd->open, &j->request);
			nd->avail.cpu = sub_min(nd->avail.cpu, j->request.cpu_millis);
			nd->avail.mem = sub_min(nd->avail.mem, j->request.memory);
			nd->avail.gpus &= ~a->alloc.gpu_mask;
			s->starts++;
			s->room--;
			return;
		}
		take(&nd->open, &j->request);
		note_hold(s, n, j);
		a = decide(s, i, LOOM_SCHED_WAIT);
		if (s->starts >= s->c->max_starts)
			snprintf(a->reason, sizeof a->reason,
			         "ready, but this plan already starts %" PRId64
			         " jobs (max_starts_per_plan); it starts on the next one",
			         s->starts);
		else
			snprintf(a->reason, sizeof a->reason,
			         "ready, but the host's plan has no room for more starts; it starts "
			         "on the next one");
		return;
	}

	if (s->c->preemption && try_preempt(s, i))
		return;

	/* Hold what it can get where it lacks least. */
	for (n = 0; n < v->n_nodes; n++) {
		const node *nd = &s->nodes[n];
		double f;
		if (!fits(&nd->total, &j->request))
			continue;
		f = shortfall(nd, &j->request);
		if (best == SIZE_MAX || f < best_f) {
			best = n;
			best_f = f;
		}
	}
	a = decide(s, i, LOOM_SCHED_WAIT);
	for (n = 0; n < v->n_nodes; n++) {
		if (fits(&s->nodes[n].avail, &j->request))
			break;
	}
	if (n < v->n_nodes)
		reason_behind(s, j, n, a->reason);
	else
		reason_short(s, j, best, a->reason);
	take(&s->nodes[best].open, &j->request);
	note_hold(s, best, j);
}

static bool
fits_some_node(const planner *s, const loom_resources *r)
{
	for (size_t n = 0; n < s->v->n_nodes; n++) {
		if (fits(&s->nodes[n].total, r))
			return true;
	}
	return false;
}

static void
emit(planner *s, loom_sched_plan *plan)
{
	static const uint32_t verbs[] = {LOOM_SCHED_PREEMPT, LOOM_SCHED_START, LOOM_SCHED_WAIT};

	plan->n = 0;
	for (size_t k = 0; k < sizeof verbs / sizeof verbs[0]; k++) {
		for (size_t x = 0; x < s->n_order && plan->n < plan->cap; x++) {
			const loom_sched_action *a = &s->act[s->order[x]];
			if (a->verb == verbs[k])
				plan->actions[plan->n++] = *a;
		}
	}
}

static int
local_plan(void *p, const loom_sched_view *v, loom_sched_plan *plan)
{
	const ctx *c = p;
	planner s;
	int rv;

	if (v == NULL || plan == NULL || (plan->actions == NULL && plan->cap > 0))
		return LOOM_EINVAL;
	plan->n = 0;
	if (v->size < offsetof(loom_sched_view, reserved) || (v->n_jobs && !v->jobs) ||
	    (v->n_nodes && !v->nodes) || (v->n_users && !v->users)) {
		c->host->log(c->ins, LOOM_LOG_ERROR,
		             "plan: malformed view (size %" PRIu32 ", %zu jobs, %zu nodes, %zu "
		             "users); the host is broken",
		             v->size, v->n_jobs, v->n_nodes, v->n_users);
		return LOOM_EINVAL;
	}
	if ((rv = planner_init(&s, c, v, plan->cap)) != 0)
		return rv;

	for (size_t k = 0; k < s.n_cands; k++) {
		size_t i = s.cands[k];
		const loom_sched_job *j = &v->jobs[i];
		loom_sched_action *a;

		if (v->n_nodes == 0) {
			a = decide(&s, i, LOOM_SCHED_WAIT);
			snprintf(a->reason, sizeof a->reason, "no node to run on: the host lists none");
		} else if (!fits_some_node(&s, &j->request)) {
			a = decide(&s, i, LOOM_SCHED_WAIT);
			reason_never(&s, j, a->reason);
		} else if (!(j->flags & LOOM_SCHED_JOB_DEPS_MET)) {
			a = decide(&s, i, LOOM_SCHED_WAIT);
			reason_deps(&s, j, a->reason);
		} else if ((j->flags & LOOM_SCHED_JOB_BACKOFF) || j->not_before_ms > v->now_ms) {
			a = decide(&s, i, LOOM_SCHED_WAIT);
			reason_backoff(&s, j, a->reason);
		} else {
			place(&s, i);
		}
	}
	emit(&s, plan);
	planner_free(&s);
	return 0;
}

/* ------------------------------------------------------------------ the plugin */

static int
local_init(loom_instance *ins, const loom_host *host, void *p)
{
	ctx *c = p;

	c->host = host;
	c->ins = ins;
	if (c->max_starts < 1) { /* the host's range check makes this unreachable */
		host->log(ins, LOOM_LOG_ERROR,
		          "max_starts_per_plan: %" PRId64 " is not a positive number of starts",
		          c->max_starts);
		return LOOM_EINVAL;
	}
	host->log(ins, LOOM_LOG_DEBUG,
	          "local scheduler: preemption %s, fair share %s, at most %" PRId64
	          " starts per plan",
	          c->preemption ? "on" : "off", c->fair_share ? "on" : "off", c->max_starts);
	return 0;
}

static const loom_scheduler_ops ops = {
	.size = sizeof(loom_scheduler_ops),
	.caps = 0,
	.plan = local_plan,
};

LOOM_PLUGIN_DEFINE(sched_local,
                   .kind = LOOM_KIND_SCHEDULER,
                   .flags = LOOM_PLUGIN_THREAD_SAFE,
                   .name = "sched-local",
                   .version = "1.0.0",
                   .description = "priorities, fair share, dependencies, resource fit and "
                                  "preemption for jobs on the host's nodes",
                   .config = config,
                   .ctx_size = sizeof(ctx),
                   .init = local_init,
                   .fini = NULL,
                   .ops = &ops)

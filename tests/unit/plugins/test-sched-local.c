/* The sched-local scheduler plugin, loaded as a real module through the
 * host loader and driven through its ops table with hand-built views and a
 * fixed now_ms:
 *
 * - the queue: priority, FIFO within a priority, weighted fair share between
 *   users (and without it), paused jobs resumed like pending ones;
 * - dependencies and retry back-off make a job wait, with the reason users
 *   see, without holding resources;
 * - resource fit across several starts and nodes never over-commits; GPU
 *   masks are the lowest free indices, with and without host-filled masks;
 * - a job too big for every node says it can never start;
 * - reservation: a big blocked job holds what is free, later jobs start
 *   only in what is left;
 * - preemption: off by default; only strictly lower-priority preemptible
 *   jobs, lowest priority and latest started first, a minimal set;
 * - max_starts_per_plan, plan->cap, determinism, malformed views;
 * - settings: bad values refused naming the key.
 *
 * Every plan is checked for consistency (tv_plan): at most one action per
 * job, allocations equal to the requests, starts within each node's free
 * resources and GPU masks disjoint, nothing written past the plan's cap. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/loom.h>

#include "host/core/conf.h"
#include "host/core/log.h"
#include "host/core/plugins.h"
#include "host/core/util.h"
#include "testutil.h"

#define MODULE "sched-local"
#define NOW INT64_C(1700000000000) /* 2023-11-14 22:13:20 UTC */
#define GIB (UINT64_C(1) << 30)

/* ------------------------------------------------------------------ the plugin */

static struct {
	tu_plugin p;
	const loom_scheduler_ops *ops;
	void *ctx;
} S;

/* Load the module with config (the inside of its config group) and start
 * it.  On failure returns the code with the host's messages in *err. */
static int
sched_open(const char *config, char **err)
{
	int rv;

	memset(&S, 0, sizeof S);
	if ((rv = tu_plugin_open(&S.p, MODULE, "s", config, "sched.conf", err)) != 0)
		return rv;
	S.ops = S.p.ins->desc->ops;
	S.ctx = S.p.ins->ctx;
	return 0;
}

static void
sched_start(const char *config)
{
	char *err = NULL;
	int rv = sched_open(config, &err);

	ck_assert_msg(rv == 0, "cannot start %s with config { %s }: %s: %s", MODULE, config,
	              loom_errname(rv), err ? err : "(no message)");
	free(err);
	ck_assert_uint_eq(S.p.ins->kind, LOOM_KIND_SCHEDULER);
	ck_assert_ptr_nonnull(S.ops);
}

static void
sched_close(void)
{
	tu_log_stop();
	tu_plugin_close(&S.p);
	memset(&S, 0, sizeof S);
}

static void
setup(void)
{
	memset(&S, 0, sizeof S);
}

/* ------------------------------------------------------------------ views */

#define MAX_JOBS 32
#define MAX_NODES 4
#define MAX_USERS 4
#define MAX_AFTER 8
#define ACTS 64

typedef struct tview {
	loom_sched_job jobs[MAX_JOBS];
	size_t n_jobs;
	loom_sched_node nodes[MAX_NODES];
	size_t n_nodes;
	loom_sched_user users[MAX_USERS];
	size_t n_users;
	int64_t after[MAX_JOBS][MAX_AFTER];
	loom_sched_view v;
	loom_sched_action actions[ACTS];
	loom_sched_plan plan;
	char text[1024];
} tview;

static void
tv_init(tview *t)
{
	memset(t, 0, sizeof *t);
}

/* A node with cpus cores, mem_gib GiB and gpus GPUs, all free, no masks. */
static loom_sched_node *
tv_node(tview *t, const char *name, uint32_t cpus, uint64_t mem_gib, uint32_t gpus)
{
	loom_sched_node *n;

	ck_assert_uint_lt(t->n_nodes, MAX_NODES);
	n = &t->nodes[t->n_nodes++];
	n->name = name;
	n->total.cpu_millis = cpus * 1000;
	n->total.memory = mem_gib * GIB;
	n->total.gpu = gpus;
	n->free = n->total;
	return n;
}

static loom_sched_user *
tv_user(tview *t, const char *name, double usage, double weight)
{
	loom_sched_user *u;

	ck_assert_uint_lt(t->n_users, MAX_USERS);
	u = &t->users[t->n_users++];
	u->name = name;
	u->usage = usage;
	u->weight = weight;
	return u;
}

/* A pending job ready to run, asking for cpu_millis and 1 GiB, submitted
 * at id seconds. */
static loom_sched_job *
tv_job(tview *t, int64_t id, int32_t priority, uint32_t cpu_millis)
{
	loom_sched_job *j;

	ck_assert_uint_lt(t->n_jobs, MAX_JOBS);
	j = &t->jobs[t->n_jobs++];
	j->id = id;
	j->name = "job";
	j->user = "u";
	j->priority = priority;
	j->state = LOOM_JOB_PENDING;
	j->flags = LOOM_SCHED_JOB_DEPS_MET;
	j->submitted_ms = id * 1000;
	j->request.cpu_millis = cpu_millis;
	j->request.memory = GIB;
	j->node = -1;
	return j;
}

/* A job running on node since started, holding its request (taken out of
 * the node's free resources, GPUs included when mask is set). */
static loom_sched_job *
tv_running(tview *t, int64_t id, int32_t priority, int32_t node, uint32_t cpu_millis,
           int64_t started, uint32_t flags)
{
	loom_sched_job *j = tv_job(t, id, priority, cpu_millis);
	loom_sched_node *n = &t->nodes[node];

	j->state = LOOM_JOB_RUNNING;
	j->flags |= flags;
	j->started_ms = started;
	j->attempts = 1;
	j->node = node;
	j->alloc = j->request;
	n->free.cpu_millis -= cpu_millis;
	n->free.memory -= j->request.memory;
	return j;
}

/* Give a running job GPUs. */
static void
tv_hold_gpus(tview *t, loom_sched_job *j, uint32_t gpus, uint64_t mask)
{
	j->request.gpu = j->alloc.gpu = gpus;
	j->alloc.gpu_mask = mask;
	t->nodes[j->node].free.gpu -= gpus;
	t->nodes[j->node].free.gpu_mask &= ~mask;
}

static void
tv_after(tview *t, loom_sched_job *j, const int64_t *ids, uint32_t n)
{
	size_t k = (size_t)(j - t->jobs);

	ck_assert_uint_le(n, MAX_AFTER);
	memcpy(t->after[k], ids, n * sizeof *ids);
	j->after = t->after[k];
	j->n_after = n;
	j->flags &= ~LOOM_SCHED_JOB_DEPS_MET;
}

static const loom_sched_job *
tv_find(const tview *t, int64_t id)
{
	for (size_t i = 0; i < t->n_jobs; i++) {
		if (t->jobs[i].id == id)
			return &t->jobs[i];
	}
	return NULL;
}

static unsigned
bits(uint64_t m)
{
	unsigned n = 0;
	for (; m; m &= m - 1)
		n++;
	return n;
}

/* Check a plan: see the file's comment. */
static void
tv_check(const tview *t)
{
	const loom_sched_plan *p = &t->plan;
	uint64_t cpu[MAX_NODES] = {0}, mem[MAX_NODES] = {0}, gmask[MAX_NODES] = {0};
	uint32_t gpus[MAX_NODES] = {0};
	size_t candidates = 0, preempts = 0;

	ck_assert_uint_le(p->n, p->cap);
	for (size_t k = p->n; k < ACTS; k++) {
		const unsigned char *b = (const unsigned char *)&t->actions[k];
		for (size_t x = 0; x < sizeof t->actions[k]; x++)
			ck_assert_msg(b[x] == 0xAB, "action %zu was written past n = %zu", k, p->n);
	}
	for (size_t k = 0; k < p->n; k++) {
		const loom_sched_action *a = &p->actions[k];
		const loom_sched_job *j = tv_find(t, a->job_id);

		ck_assert_msg(j != NULL, "action for job %lld, not in the view", (long long)a->job_id);
		for (size_t x = 0; x < k; x++)
			ck_assert_msg(p->actions[x].job_id != a->job_id, "two actions for job %lld",
			              (long long)a->job_id);
		ck_assert_msg(memchr(a->reason, '\0', sizeof a->reason) != NULL, "unterminated");
		switch (a->verb) {
		case LOOM_SCHED_START:
			ck_assert(j->state == LOOM_JOB_PENDING || j->state == LOOM_JOB_PAUSED);
			ck_assert_int_ge(a->node, 0);
			ck_assert_int_lt(a->node, (int)t->n_nodes);
			ck_assert_uint_eq(a->alloc.cpu_millis, j->request.cpu_millis);
			ck_assert_uint_eq(a->alloc.memory, j->request.memory);
			ck_assert_uint_eq(a->alloc.gpu, j->request.gpu);
			ck_assert_uint_eq(bits(a->alloc.gpu_mask), j->request.gpu);
			ck_assert_msg((gmask[a->node] & a->alloc.gpu_mask) == 0, "GPU given twice");
			cpu[a->node] += a->alloc.cpu_millis;
			mem[a->node] += a->alloc.memory;
			gpus[a->node] += a->alloc.gpu;
			gmask[a->node] |= a->alloc.gpu_mask;
			break;
		case LOOM_SCHED_WAIT:
			ck_assert(j->state == LOOM_JOB_PENDING || j->state == LOOM_JOB_PAUSED);
			ck_assert_msg(a->reason[0] != '\0', "WAIT for job %lld without a reason",
			              (long long)a->job_id);
			break;
		case LOOM_SCHED_PREEMPT:
			ck_assert_uint_eq(j->state, LOOM_JOB_RUNNING);
			ck_assert(j->flags & LOOM_SCHED_JOB_PREEMPTIBLE);
			preempts++;
			break;
		default:
			ck_abort_msg("unknown verb %u", a->verb);
		}
	}
	for (size_t n = 0; n < t->n_nodes; n++) {
		const loom_sched_node *nd = &t->nodes[n];
		ck_assert_msg(cpu[n] <= nd->free.cpu_millis, "node %zu: %llu cpu of %u", n,
		              (unsigned long long)cpu[n], nd->free.cpu_millis);
		ck_assert_msg(mem[n] <= nd->free.memory, "node %zu: memory over-committed", n);
		ck_assert_msg(gpus[n] <= nd->free.gpu, "node %zu: gpus over-committed", n);
		if (nd->free.gpu_mask || nd->total.gpu_mask)
			ck_assert_msg((gmask[n] & ~nd->free.gpu_mask) == 0, "node %zu: busy GPU given",
			              n);
	}
	/* With room enough, every candidate has an action. */
	for (size_t i = 0; i < t->n_jobs; i++)
		candidates += t->jobs[i].state != LOOM_JOB_RUNNING;
	if (p->cap == ACTS)
		ck_assert_uint_eq(p->n, candidates + preempts);
}

static int
tv_plan_rv(tview *t, size_t cap)
{
	t->v.size = sizeof t->v;
	t->v.now_ms = NOW;
	t->v.n_jobs = t->n_jobs;
	t->v.jobs = t->jobs;
	t->v.n_nodes = t->n_nodes;
	t->v.nodes = t->nodes;
	t->v.n_users = t->n_users;
	t->v.users = t->users;
	memset(t->actions, 0xAB, sizeof t->actions);
	t->plan.actions = t->actions;
	t->plan.cap = cap;
	t->plan.n = 12345;
	return S.ops->plan(S.ctx, &t->v, &t->plan);
}

/* Plan with room for cap actions; returns the plan as text: "S1@0" for a
 * start of job 1 on node 0, "W2" for a wait, "P3" for a preemption. */
static const char *
tv_plan(tview *t, size_t cap)
{
	int rv = tv_plan_rv(t, cap);
	size_t len = 0;

	ck_assert_msg(rv == 0, "plan: %s", loom_errname(rv));
	tv_check(t);
	t->text[0] = '\0';
	for (size_t k = 0; k < t->plan.n; k++) {
		const loom_sched_action *a = &t->plan.actions[k];
		char v = a->verb == LOOM_SCHED_START ? 'S' : a->verb == LOOM_SCHED_WAIT ? 'W' : 'P';
		int n = snprintf(t->text + len, sizeof t->text - len, "%s%c%lld", k ? " " : "", v,
		                 (long long)a->job_id);
		len += (size_t)n;
		if (a->verb == LOOM_SCHED_START)
			len += (size_t)snprintf(t->text + len, sizeof t->text - len, "@%d", a->node);
	}
	return t->text;
}

static const loom_sched_action *
tv_action(const tview *t, int64_t id)
{
	for (size_t k = 0; k < t->plan.n; k++) {
		if (t->plan.actions[k].job_id == id)
			return &t->plan.actions[k];
	}
	ck_abort_msg("no action for job %lld", (long long)id);
	return NULL;
}

#define ASSERT_PLAN(t, want)                                                               \
	do {                                                                                   \
		const char *got_ = tv_plan((t), ACTS);                                             \
		ck_assert_msg(strcmp(got_, (want)) == 0, "plan \"%s\", expected \"%s\"", got_,     \
		              (want));                                                             \
	} while (0)

#define ASSERT_REASON(t, id, want)                                                         \
	do {                                                                                   \
		const loom_sched_action *a_ = tv_action((t), (id));                                \
		ck_assert_msg(strcmp(a_->reason, (want)) == 0,                                     \
		              "job %lld: reason \"%s\", expected \"%s\"", (long long)(id),         \
		              a_->reason, (want));                                                 \
	} while (0)

#define ASSERT_REASON_HAS(t, id, needle)                                                   \
	do {                                                                                   \
		const loom_sched_action *a_ = tv_action((t), (id));                                \
		ck_assert_msg(strstr(a_->reason, (needle)) != NULL,                                \
		              "job %lld: reason \"%s\" lacks \"%s\"", (long long)(id), a_->reason, \
		              (needle));                                                           \
	} while (0)

/* ------------------------------------------------------------------ the plugin itself */

START_TEST(descriptor)
{
	sched_start("");
	ck_assert_str_eq(S.p.ins->desc->name, "sched-local");
	ck_assert_uint_eq(S.ops->size, sizeof(loom_scheduler_ops));
	ck_assert_uint_eq(S.ops->caps, 0);
	ck_assert_ptr_nonnull(S.ops->plan);
	ck_assert_ptr_null(S.ops->launch);
	ck_assert_ptr_null(S.ops->poll);
	ck_assert_ptr_null(S.ops->cancel);
}
END_TEST

/* ------------------------------------------------------------------ the queue */

START_TEST(priority_order)
{
	tview t;

	sched_start("");
	tv_init(&t);
	tv_node(&t, "local", 4, 64, 0);
	tv_job(&t, 1, 0, 2000);
	tv_job(&t, 2, 5, 2000);
	tv_job(&t, 3, 1, 2000);
	ASSERT_PLAN(&t, "S2@0 S3@0 W1");
	ASSERT_REASON(&t, 1, "waiting for 2 cpu; 0 of 4 cpu free on local");

	/* Negative priorities order the same way. */
	t.jobs[1].priority = -5;
	ASSERT_PLAN(&t, "S3@0 S1@0 W2");
}
END_TEST

START_TEST(fifo_within_priority)
{
	tview t;
	loom_sched_job *j;

	sched_start("");
	tv_init(&t);
	tv_node(&t, "local", 2, 64, 0);
	tv_job(&t, 7, 3, 1000)->submitted_ms = 1000;
	tv_job(&t, 5, 3, 1000)->submitted_ms = 2000;
	tv_job(&t, 4, 3, 1000)->submitted_ms = 2000; /* same time: lower id first */
	j = tv_job(&t, 6, 3, 1000);
	j->submitted_ms = 500;
	j->state = LOOM_JOB_PAUSED; /* a paused job is resumed like a pending one */
	ASSERT_PLAN(&t, "S6@0 S7@0 W4 W5");
	ASSERT_REASON(&t, 4, "waiting for 1 cpu; 0 of 2 cpu free on local");
}
END_TEST

START_TEST(fair_share)
{
	tview t;

	sched_start("");
	tv_init(&t);
	tv_node(&t, "local", 2, 64, 0);
	tv_user(&t, "alice", 100, 1);
	tv_user(&t, "bob", 10, 1);
	tv_job(&t, 1, 0, 1000)->user = "alice";
	tv_job(&t, 2, 0, 1000)->user = "bob";
	tv_job(&t, 3, 0, 1000)->user = "carol"; /* not listed: usage 0 */
	tv_job(&t, 4, 0, 1000)->user = "bob";
	ASSERT_PLAN(&t, "S3@0 S2@0 W4 W1");

	/* Usage is weighed: alice's 100 / 20 is below bob's 10 / 1. */
	t.users[0].weight = 20;
	ASSERT_PLAN(&t, "S3@0 S1@0 W2 W4");

	/* Priority comes first. */
	t.users[0].weight = 1;
	t.jobs[0].priority = 1;
	ASSERT_PLAN(&t, "S1@0 S3@0 W2 W4");

	/* A user without a share goes after everyone with one. */
	t.jobs[0].priority = 0;
	t.users[1].usage = 0;
	t.users[1].weight = 0;
	ASSERT_PLAN(&t, "S3@0 S1@0 W2 W4");
}
END_TEST

START_TEST(fair_share_off)
{
	tview t;

	sched_start("fair_share = false;");
	tv_init(&t);
	tv_node(&t, "local", 2, 64, 0);
	tv_user(&t, "alice", 100, 1);
	tv_user(&t, "bob", 10, 1);
	tv_job(&t, 1, 0, 1000)->user = "alice";
	tv_job(&t, 2, 0, 1000)->user = "bob";
	tv_job(&t, 3, 0, 1000)->user = "carol";
	tv_job(&t, 4, 0, 1000)->user = "bob";
	ASSERT_PLAN(&t, "S1@0 S2@0 W3 W4");
}
END_TEST

/* ------------------------------------------------------------------ not ready */

START_TEST(dependencies)
{
	static const int64_t one[] = {12};
	static const int64_t many[] = {12, 20, 21, 22, 23, 99};
	static const int64_t gone[] = {98, 99};
	tview t;
	loom_sched_job *j;

	sched_start("");
	tv_init(&t);
	tv_node(&t, "local", 4, 64, 0);
	tv_running(&t, 12, 0, 0, 1000, NOW - 5000, 0);
	j = tv_job(&t, 13, 9, 3000);
	tv_after(&t, j, one, 1);
	tv_job(&t, 30, 0, 3000); /* the waiting job holds nothing */
	ASSERT_PLAN(&t, "S30@0 W13");
	ASSERT_REASON(&t, 13, "waiting for job 12 (running)");

	/* Up to three of the unfinished ones are named, with their states. */
	tv_init(&t);
	tv_node(&t, "local", 4, 64, 0);
	tv_running(&t, 12, 0, 0, 1000, NOW - 5000, 0);
	tv_job(&t, 20, 0, 64000);
	tv_job(&t, 21, 0, 64000)->state = LOOM_JOB_PAUSED;
	tv_job(&t, 22, 0, 64000);
	tv_job(&t, 23, 0, 64000);
	j = tv_job(&t, 14, 0, 1000);
	tv_after(&t, j, many, 6);
	tv_plan(&t, ACTS);
	ASSERT_REASON(&t, 14, "waiting for jobs 12 (running), 20 (pending), 21 (paused) and 2 more");
	ck_assert_uint_eq(tv_action(&t, 14)->verb, LOOM_SCHED_WAIT);

	/* None of them queued any more, yet not met: they did not all complete. */
	tv_init(&t);
	tv_node(&t, "local", 4, 64, 0);
	j = tv_job(&t, 15, 0, 1000);
	tv_after(&t, j, gone, 2);
	ASSERT_PLAN(&t, "W15");
	ASSERT_REASON(&t, 15, "waiting for jobs 98, 99, which ended without all completing");

	/* Once the host sets DEPS_MET it starts. */
	t.jobs[0].flags |= LOOM_SCHED_JOB_DEPS_MET;
	ASSERT_PLAN(&t, "S15@0");
}
END_TEST

START_TEST(backoff)
{
	tview t;
	loom_sched_job *j;

	sched_start("");
	tv_init(&t);
	tv_node(&t, "local", 4, 64, 0);
	j = tv_job(&t, 1, 5, 4000);
	j->flags |= LOOM_SCHED_JOB_BACKOFF;
	j->not_before_ms = NOW + 4500;
	j->attempts = 2;
	j = tv_job(&t, 2, 5, 4000);
	j->not_before_ms = NOW + 3 * 60000 + 20000; /* no flag: the time alone counts */
	j->attempts = 1;
	j = tv_job(&t, 3, 5, 1000);
	j->flags |= LOOM_SCHED_JOB_BACKOFF; /* the flag alone counts too */
	j->not_before_ms = NOW - 1;
	j->attempts = 1;
	j = tv_job(&t, 4, 0, 4000);
	j->not_before_ms = NOW; /* back-off over: startable at now */
	j->attempts = 3;
	ASSERT_PLAN(&t, "S4@0 W1 W2 W3");
	ASSERT_REASON(&t, 1,
	              "retry back-off until 2023-11-14 22:13:24 UTC (in 4.5 s), after 2 attempts");
	ASSERT_REASON(&t, 2,
	              "retry back-off until 2023-11-14 22:16:40 UTC (in 3 min 20 s), after 1 attempt");
	ASSERT_REASON(&t, 3, "in retry back-off, after 1 attempt");
}
END_TEST

/* ------------------------------------------------------------------ resources */

START_TEST(fit_without_overcommit)
{
	tview t;
	loom_sched_job *j;

	sched_start("");
	tv_init(&t);
	tv_node(&t, "local", 4, 64, 0);
	for (int64_t id = 1; id <= 5; id++)
		tv_job(&t, id, 0, 1500);
	ASSERT_PLAN(&t, "S1@0 S2@0 W3 W4 W5");
	ASSERT_REASON(&t, 3, "waiting for 1.5 cpu; 1 of 4 cpu free on local");

	/* Memory counts as much as cpu, and the plan's starts add up. */
	tv_init(&t);
	tv_node(&t, "local", 16, 4, 0);
	tv_running(&t, 9, 0, 0, 1000, NOW - 1, 0); /* holds 1 GiB */
	for (int64_t id = 1; id <= 3; id++)
		tv_job(&t, id, 0, 1000)->request.memory = GIB + GIB / 2;
	ASSERT_PLAN(&t, "S1@0 S2@0 W3");
	ASSERT_REASON(&t, 3, "waiting for 1.5 GiB memory; 0 B of 4 GiB memory free on local");

	/* Several nodes: the first that fits, in the view's order. */
	tv_init(&t);
	tv_node(&t, "a", 2, 64, 0);
	tv_node(&t, "b", 4, 64, 0);
	tv_job(&t, 1, 0, 3000);
	tv_job(&t, 2, 0, 2000);
	tv_job(&t, 3, 0, 1000);
	tv_job(&t, 4, 0, 500);
	ASSERT_PLAN(&t, "S1@1 S2@0 S3@1 W4");
	ASSERT_REASON(&t, 4, "waiting for 0.5 cpu; 0 of 4 cpu free on b");

	/* Short of several things at once. */
	tv_init(&t);
	tv_node(&t, "local", 4, 8, 2);
	j = tv_job(&t, 1, 0, 1000);
	tv_hold_gpus(&t, tv_running(&t, 9, 0, 0, 3500, NOW - 1, 0), 2, 0);
	j->request.memory = 8 * GIB;
	j->request.gpu = 1;
	ASSERT_PLAN(&t, "W1");
	ASSERT_REASON(&t, 1,
	              "waiting for 1 cpu, 8 GiB memory and 1 gpu; 0.5 of 4 cpu, 7 GiB of 8 GiB "
	              "memory and 0 of 2 gpu free on local");
}
END_TEST

START_TEST(gpu_masks)
{
	tview t;
	loom_sched_node *n;
	loom_sched_job *r;

	sched_start("");
	/* The host fills masks: GPU 2 is busy. */
	tv_init(&t);
	n = tv_node(&t, "gpu", 16, 64, 4);
	n->total.gpu_mask = n->free.gpu_mask = 0xF;
	tv_hold_gpus(&t, tv_running(&t, 9, 0, 0, 1000, NOW - 1, 0), 1, 0x4);
	tv_job(&t, 1, 0, 1000)->request.gpu = 2;
	tv_job(&t, 2, 0, 1000)->request.gpu = 1;
	tv_job(&t, 3, 0, 1000)->request.gpu_mask = 0x10; /* no GPU asked: no mask given */
	tv_job(&t, 4, 0, 1000)->request.gpu = 1;
	ASSERT_PLAN(&t, "S1@0 S2@0 S3@0 W4");
	ck_assert_uint_eq(tv_action(&t, 1)->alloc.gpu_mask, 0x3);
	ck_assert_uint_eq(tv_action(&t, 2)->alloc.gpu_mask, 0x8);
	ck_assert_uint_eq(tv_action(&t, 3)->alloc.gpu_mask, 0);
	ASSERT_REASON(&t, 4, "waiting for 1 gpu; 0 of 4 gpu free on gpu");

	/* No masks from the host: GPUs 0..total-1 less those running jobs hold;
	 * one holding GPUs without a mask holds the lowest left. */
	tv_init(&t);
	tv_node(&t, "gpu", 16, 64, 4);
	tv_hold_gpus(&t, tv_running(&t, 8, 0, 0, 1000, NOW - 1, 0), 1, 0x1);
	r = tv_running(&t, 9, 0, 0, 1000, NOW - 1, 0);
	tv_hold_gpus(&t, r, 1, 0);
	tv_job(&t, 1, 0, 1000)->request.gpu = 2;
	ASSERT_PLAN(&t, "S1@0");
	ck_assert_uint_eq(tv_action(&t, 1)->alloc.gpu_mask, 0xC);

	/* A mask with more GPUs than free.gpu: never more than the count. */
	tv_init(&t);
	n = tv_node(&t, "gpu", 16, 64, 4);
	n->total.gpu_mask = n->free.gpu_mask = 0xF;
	n->free.gpu = 1;
	tv_job(&t, 1, 0, 1000)->request.gpu = 1;
	tv_job(&t, 2, 0, 1000)->request.gpu = 1;
	ASSERT_PLAN(&t, "S1@0 W2");
	ck_assert_uint_eq(tv_action(&t, 1)->alloc.gpu_mask, 0x1);
}
END_TEST

START_TEST(never_fits)
{
	tview t;
	loom_sched_job *j;

	sched_start("");
	tv_init(&t);
	tv_node(&t, "local", 8, 64, 1);
	tv_job(&t, 1, 9, 1000)->request.gpu = 2;
	tv_job(&t, 2, 0, 8000); /* the job that can never fit holds nothing */
	ASSERT_PLAN(&t, "S2@0 W1");
	ASSERT_REASON(&t, 1,
	              "job asks for 2 gpu but no node has that many (largest: 1 gpu on local); "
	              "it can never start as submitted");

	tv_init(&t);
	tv_node(&t, "small", 8, 16, 0);
	tv_node(&t, "large", 4, 64, 0);
	tv_job(&t, 1, 0, 1000)->request.memory = 128 * GIB;
	ASSERT_PLAN(&t, "W1");
	ASSERT_REASON(&t, 1,
	              "job asks for 128 GiB memory but no node has that much (largest: 64 GiB on "
	              "large); it can never start as submitted");

	/* Each amount fits some node, but no node has all of them. */
	tv_init(&t);
	tv_node(&t, "cpus", 8, 64, 0);
	tv_node(&t, "gpus", 1, 64, 1);
	j = tv_job(&t, 1, 0, 4000);
	j->request.gpu = 1;
	ASSERT_PLAN(&t, "W1");
	ASSERT_REASON(&t, 1,
	              "job asks for 4 cpu, 1 GiB memory and 1 gpu but no single node has all of "
	              "that; it can never start as submitted");

	/* No node at all. */
	tv_init(&t);
	tv_job(&t, 1, 0, 1000);
	ASSERT_PLAN(&t, "W1");
	ASSERT_REASON(&t, 1, "no node to run on: the host lists none");
}
END_TEST

START_TEST(reservation)
{
	tview t;

	sched_start("");
	tv_init(&t);
	tv_node(&t, "big", 8, 64, 0);
	tv_node(&t, "small", 2, 64, 0);
	tv_running(&t, 9, 0, 0, 4000, NOW - 1, 0);
	tv_job(&t, 1, 5, 8000); /* can run on big once 9 ends */
	tv_job(&t, 2, 1, 2000);
	tv_job(&t, 3, 1, 2000);
	tv_job(&t, 4, 5, 3000);
	/* 1 holds big's 4 free cpu; 4 would fit them but waits behind it; 2
	 * starts on small, where nothing is held; 3 would fit big's free cpu. */
	ASSERT_PLAN(&t, "S2@1 W1 W4 W3");
	ASSERT_REASON(&t, 1, "waiting for 8 cpu; 4 of 8 cpu free on big");
	ASSERT_REASON(&t, 4, "behind 1 job queued ahead holding resources on big (first: job 1)");
	ASSERT_REASON(&t, 3, "behind 2 jobs of higher priority holding resources on big "
	                     "(first: job 1)");

	/* The same queue when the big job is not ready: it holds nothing. */
	t.jobs[1].flags &= ~LOOM_SCHED_JOB_DEPS_MET;
	ASSERT_PLAN(&t, "S4@0 S2@1 W1 W3");
	ASSERT_REASON(&t, 1, "waiting for the jobs it runs after");

	/* Jobs held back only by higher priorities say so. */
	tv_init(&t);
	tv_node(&t, "local", 8, 64, 0);
	tv_running(&t, 9, 0, 0, 6000, NOW - 1, 0);
	tv_job(&t, 1, 7, 4000);
	tv_job(&t, 2, 6, 4000);
	tv_job(&t, 3, 0, 1000);
	tv_job(&t, 4, 0, 1000);
	ASSERT_PLAN(&t, "W1 W2 W3 W4");
	ASSERT_REASON(&t, 2, "waiting for 4 cpu; 2 of 8 cpu free on local");
	ASSERT_REASON(&t, 3, "behind 2 jobs of higher priority holding resources on local "
	                     "(first: job 1)");
	ASSERT_REASON(&t, 4, "behind 3 jobs queued ahead (2 of higher priority) holding "
	                     "resources on local (first: job 1)");

	/* What a blocked job does not need stays usable. */
	tv_init(&t);
	tv_node(&t, "local", 8, 64, 2);
	tv_running(&t, 9, 0, 0, 6000, NOW - 1, 0);
	tv_job(&t, 1, 7, 4000);
	tv_job(&t, 2, 0, 0)->request.gpu = 2;
	ASSERT_PLAN(&t, "S2@0 W1");
}
END_TEST

/* ------------------------------------------------------------------ preemption */

/* local: 8 cpu, all held: 20 and 21 (priority 0, preemptible, 21 started
 * later), 22 (priority 0, not preemptible), 23 (priority 5, preemptible). */
static void
preempt_view(tview *t, uint32_t cpu_millis)
{
	tv_init(t);
	tv_node(t, "local", 8, 64, 0);
	tv_running(t, 20, 0, 0, 2000, NOW - 4000, LOOM_SCHED_JOB_PREEMPTIBLE);
	tv_running(t, 21, 0, 0, 2000, NOW - 2000, LOOM_SCHED_JOB_PREEMPTIBLE);
	tv_running(t, 22, 0, 0, 2000, NOW - 1000, 0);
	tv_running(t, 23, 5, 0, 2000, NOW - 500, LOOM_SCHED_JOB_PREEMPTIBLE);
	tv_job(t, 1, 5, cpu_millis);
}

START_TEST(preemption_off)
{
	tview t;

	sched_start("");
	preempt_view(&t, 2000);
	ASSERT_PLAN(&t, "W1");
	ASSERT_REASON(&t, 1, "waiting for 2 cpu; 0 of 8 cpu free on local");
}
END_TEST

START_TEST(preemption_on)
{
	tview t;

	sched_start("preemption = true;");
	/* One victim does: the latest started of the lowest priority. */
	preempt_view(&t, 2000);
	ASSERT_PLAN(&t, "P21 W1");
	ASSERT_REASON(&t, 1, "preempting job 21 on local to make room");
	ASSERT_REASON(&t, 21, "preempted for job 1 (priority 5 over 0)");
	ck_assert_int_eq(tv_action(&t, 21)->node, 0);

	/* Two are needed; never 22 (not preemptible) or 23 (same priority). */
	preempt_view(&t, 4000);
	ASSERT_PLAN(&t, "P21 P20 W1");
	ASSERT_REASON(&t, 1, "preempting jobs 21, 20 on local to make room");

	/* Not enough to preempt: nothing is. */
	preempt_view(&t, 6000);
	ASSERT_PLAN(&t, "W1");
	ASSERT_REASON(&t, 1, "waiting for 6 cpu; 0 of 8 cpu free on local");

	/* A job of the lowest priority preempts nobody. */
	preempt_view(&t, 2000);
	t.jobs[4].priority = 0;
	ASSERT_PLAN(&t, "W1");

	/* The next round, once 21 is paused: 1 starts, 21 waits its turn. */
	preempt_view(&t, 2000);
	t.jobs[1].state = LOOM_JOB_PAUSED;
	t.jobs[1].node = -1;
	t.nodes[0].free.cpu_millis += 2000;
	t.nodes[0].free.memory += GIB;
	ASSERT_PLAN(&t, "S1@0 W21");
}
END_TEST

START_TEST(preemption_minimal)
{
	tview t;

	sched_start("preemption = true;");
	/* 30 goes first (lowest priority) but does not free enough alone; with
	 * 31 it does, and then 31 alone does: only 31 is preempted. */
	tv_init(&t);
	tv_node(&t, "local", 4, 64, 0);
	tv_running(&t, 30, 0, 0, 1000, NOW - 100, LOOM_SCHED_JOB_PREEMPTIBLE);
	tv_running(&t, 31, 1, 0, 3000, NOW - 9000, LOOM_SCHED_JOB_PREEMPTIBLE);
	tv_job(&t, 1, 5, 3000);
	ASSERT_PLAN(&t, "P31 W1");

	/* Free resources count: with 1 cpu free, 30 alone makes room. */
	tv_init(&t);
	tv_node(&t, "local", 5, 64, 0);
	tv_running(&t, 30, 0, 0, 1000, NOW - 100, LOOM_SCHED_JOB_PREEMPTIBLE);
	tv_running(&t, 31, 1, 0, 3000, NOW - 9000, LOOM_SCHED_JOB_PREEMPTIBLE);
	tv_job(&t, 1, 5, 2000);
	/* What 1 will take of the free cpu is held: 2 may not start in it
	 * (nor preempt 31, of its own priority). */
	tv_job(&t, 2, 1, 1000);
	ASSERT_PLAN(&t, "P30 W1 W2");
	ASSERT_REASON(&t, 2, "behind 1 job of higher priority holding resources on local "
	                     "(first: job 1)");

	/* The node needing fewest victims is chosen. */
	tv_init(&t);
	tv_node(&t, "a", 4, 64, 0);
	tv_node(&t, "b", 4, 64, 0);
	tv_running(&t, 30, 0, 0, 2000, NOW - 100, LOOM_SCHED_JOB_PREEMPTIBLE);
	tv_running(&t, 31, 0, 0, 2000, NOW - 200, LOOM_SCHED_JOB_PREEMPTIBLE);
	tv_running(&t, 32, 1, 1, 4000, NOW - 300, LOOM_SCHED_JOB_PREEMPTIBLE);
	tv_job(&t, 1, 5, 4000);
	ASSERT_PLAN(&t, "P32 W1");

	/* GPUs: the victim's GPU and the free one are both for the job. */
	tv_init(&t);
	tv_node(&t, "gpu", 16, 64, 2)->free.gpu_mask = 0x3;
	t.nodes[0].total.gpu_mask = 0x3;
	tv_hold_gpus(&t,
	             tv_running(&t, 30, 0, 0, 1000, NOW - 100, LOOM_SCHED_JOB_PREEMPTIBLE), 1,
	             0x2);
	tv_job(&t, 1, 5, 1000)->request.gpu = 2;
	tv_job(&t, 2, 4, 1000)->request.gpu = 1;
	tv_job(&t, 3, 4, 1000);
	ASSERT_PLAN(&t, "P30 S3@0 W1 W2");
	ASSERT_REASON(&t, 2, "behind 1 job of higher priority holding resources on gpu "
	                     "(first: job 1)");
}
END_TEST

/* ------------------------------------------------------------------ limits */

START_TEST(max_starts)
{
	tview t;

	sched_start("max_starts_per_plan = 2;");
	tv_init(&t);
	tv_node(&t, "local", 8, 64, 0);
	for (int64_t id = 1; id <= 5; id++)
		tv_job(&t, id, 0, 1000);
	ASSERT_PLAN(&t, "S1@0 S2@0 W3 W4 W5");
	ASSERT_REASON(&t, 3,
	              "ready, but this plan already starts 2 jobs (max_starts_per_plan); it starts "
	              "on the next one");
}
END_TEST

START_TEST(cap)
{
	tview t;
	const char *got;

	sched_start("preemption = true;");
	tv_init(&t);
	tv_node(&t, "local", 8, 64, 0);
	for (int64_t id = 1; id <= 4; id++)
		tv_job(&t, id, 0, 1000);
	tv_job(&t, 5, 0, 64000);
	tv_job(&t, 6, 0, 8000);

	/* Starts first, then waits. */
	got = tv_plan(&t, 3);
	ck_assert_str_eq(got, "S1@0 S2@0 S3@0");
	got = tv_plan(&t, 5);
	ck_assert_str_eq(got, "S1@0 S2@0 S3@0 S4@0 W5");
	got = tv_plan(&t, 0);
	ck_assert_str_eq(got, "");

	/* Preemptions too: two victims need room for two actions. */
	preempt_view(&t, 4000);
	got = tv_plan(&t, 1);
	ck_assert_str_eq(got, "W1");
	got = tv_plan(&t, 2);
	ck_assert_str_eq(got, "P21 P20");
}
END_TEST

START_TEST(deterministic)
{
	static const int64_t after[] = {40};
	tview t, u;
	loom_sched_action first[ACTS];
	size_t n;

	sched_start("preemption = true;");
	tv_init(&t);
	tv_node(&t, "a", 8, 32, 2)->total.gpu_mask = 0x3;
	t.nodes[0].free.gpu_mask = 0x3;
	tv_node(&t, "b", 4, 16, 0);
	tv_user(&t, "alice", 50, 2);
	tv_user(&t, "bob", 10, 1);
	tv_running(&t, 40, 0, 0, 4000, NOW - 900, LOOM_SCHED_JOB_PREEMPTIBLE)->user = "bob";
	tv_hold_gpus(&t, tv_running(&t, 41, 1, 0, 2000, NOW - 800, LOOM_SCHED_JOB_PREEMPTIBLE),
	             1, 0x1);
	for (int64_t id = 1; id <= 12; id++) {
		loom_sched_job *j = tv_job(&t, id, (int32_t)(id % 3), 1000 + (uint32_t)(id % 4) * 1000);
		j->user = id % 2 ? "alice" : "bob";
		j->request.gpu = id % 5 == 0 ? 1 : 0;
		if (id == 7)
			tv_after(&t, j, after, 1);
		if (id == 8)
			j->not_before_ms = NOW + 1000;
	}
	t.jobs[9].request.memory = 20 * GIB;
	tv_plan(&t, ACTS);
	n = t.plan.n;
	memcpy(first, t.actions, sizeof first);
	ck_assert_uint_gt(n, 0);

	/* The same view again. */
	tv_plan(&t, ACTS);
	ck_assert_uint_eq(t.plan.n, n);
	ck_assert_msg(memcmp(first, t.actions, sizeof first) == 0, "the second plan differs");

	/* The same jobs listed in reverse order (after's storage moved along). */
	tv_init(&u);
	memcpy(u.nodes, t.nodes, sizeof t.nodes);
	u.n_nodes = t.n_nodes;
	memcpy(u.users, t.users, sizeof t.users);
	u.n_users = t.n_users;
	for (size_t i = 0; i < t.n_jobs; i++) {
		size_t k = t.n_jobs - 1 - i;
		u.jobs[k] = t.jobs[i];
		if (t.jobs[i].after) {
			memcpy(u.after[k], t.after[i], sizeof u.after[k]);
			u.jobs[k].after = u.after[k];
		}
	}
	u.n_jobs = t.n_jobs;
	tv_plan(&u, ACTS);
	ck_assert_uint_eq(u.plan.n, n);
	ck_assert_msg(memcmp(first, u.actions, sizeof first) == 0,
	              "listing the jobs in another order changed the plan");
}
END_TEST

START_TEST(bad_arguments)
{
	tview t;

	sched_start("");
	tv_init(&t);
	tv_node(&t, "local", 8, 64, 0);
	tv_job(&t, 1, 0, 1000);
	ck_assert_int_eq(S.ops->plan(S.ctx, NULL, &t.plan), LOOM_EINVAL);
	ck_assert_int_eq(tv_plan_rv(&t, ACTS), 0);
	ck_assert_int_eq(S.ops->plan(S.ctx, &t.v, NULL), LOOM_EINVAL);
	t.plan.actions = NULL;
	ck_assert_int_eq(S.ops->plan(S.ctx, &t.v, &t.plan), LOOM_EINVAL);
	t.plan.actions = t.actions;
	t.v.jobs = NULL;
	ck_assert_int_eq(S.ops->plan(S.ctx, &t.v, &t.plan), LOOM_EINVAL);
	tu_log_capture();
	ck_assert_int_eq(tv_plan_rv(&t, ACTS), 0);
	t.v.size = 8;
	ck_assert_int_eq(S.ops->plan(S.ctx, &t.v, &t.plan), LOOM_EINVAL);
	ck_assert_uint_eq(t.plan.n, 0);
	ck_assert_msg(tu_log_has("plan: malformed view (size 8"), "log:\n%s", tu_log_text());

	/* An empty view is a plan with nothing in it. */
	tv_init(&t);
	ASSERT_PLAN(&t, "");
}
END_TEST

/* ------------------------------------------------------------------ settings */

START_TEST(config_refused)
{
	static const struct {
		const char *config;
		const char *message;
	} cases[] = {
		{"preemption = \"yes\";", "config.preemption: expected a boolean (true or false), got a string"},
		{"fair_share = 1;", "config.fair_share: expected a boolean"},
		{"max_starts_per_plan = 0;",
		 "config.max_starts_per_plan: 0 is out of range; use a value from 1 to 1000000"},
		{"max_starts_per_plan = -3;", "config.max_starts_per_plan: -3 is out of range"},
		{"max_starts_per_plan = \"many\";", "config.max_starts_per_plan: expected an integer"},
		{"max_starts_per_plan = 2.5;", "config.max_starts_per_plan: expected an integer"},
		{"preemtion = true;", "config.preemtion: unknown setting (did you mean preemption?)"},
	};

	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		char *err = NULL;
		int rv = sched_open(cases[k].config, &err);
		ck_assert_msg(rv == LOOM_ECONFIG, "{ %s } gave %s", cases[k].config, loom_errname(rv));
		ck_assert_msg(err && strstr(err, cases[k].message), "{ %s }: \"%s\" lacks \"%s\"",
		              cases[k].config, err ? err : "", cases[k].message);
		ck_assert_msg(strstr(err, "sched.conf:"), "no file and line in \"%s\"", err);
		free(err);
		sched_close();
	}

	/* Good values are taken. */
	sched_start("preemption = true; fair_share = false; max_starts_per_plan = 1;");
	{
		tview t;
		tv_init(&t);
		tv_node(&t, "local", 8, 64, 0);
		tv_job(&t, 1, 0, 1000);
		tv_job(&t, 2, 0, 1000);
		ASSERT_PLAN(&t, "S1@0 W2");
	}
}
END_TEST

/* ------------------------------------------------------------------ the suite */

int
main(void)
{
	Suite *s = suite_create("sched-local");
	struct {
		const char *name;
		const TTest *tests[10];
	} cases[] = {
		{"queue", {descriptor, priority_order, fifo_within_priority, fair_share, fair_share_off,
		           NULL}},
		{"ready", {dependencies, backoff, NULL}},
		{"resources", {fit_without_overcommit, gpu_masks, never_fits, reservation, NULL}},
		{"preemption", {preemption_off, preemption_on, preemption_minimal, NULL}},
		{"limits", {max_starts, cap, deterministic, bad_arguments, NULL}},
		{"config", {config_refused, NULL}},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		TCase *tc = tcase_create(cases[i].name);
		tcase_add_checked_fixture(tc, setup, sched_close);
		for (int k = 0; cases[i].tests[k] != NULL; k++)
			tcase_add_test(tc, cases[i].tests[k]);
		suite_add_tcase(s, tc);
	}
	return tu_run(s);
}

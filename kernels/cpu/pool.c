/* pool.c — a fixed pool of persistent worker threads for lk_parallel_for.
 *
 * lk_parallel_for runs thousands of times per training step, so workers are
 * created once and woken per call.  A call publishes (fn, arg, n) and bumps
 * a generation counter; each worker runs its fixed chunk, the caller runs
 * chunk 0, and the last one to finish releases the caller.  Waiting spins
 * briefly (a call typically follows the previous one within microseconds)
 * and then sleeps on a condition variable, so idle workers cost nothing and
 * do not steal a core from OpenBLAS's own threads during a matrix product.
 *
 * A parallel_for issued from inside a chunk (nested) runs all its chunks in
 * order on the calling thread, with the same split, so nesting neither
 * deadlocks nor changes results.  Calls from several outside threads on one
 * pool are serialized.
 *
 * Matrix products (lki_gemm_begin/end) run on these threads too, each
 * thread multiplying its own block of the result with OpenBLAS held at one
 * thread: OpenBLAS's own workers never get work, so they never busy-wait
 * after a product on the core the pool needs next (they spin for about
 * 2^28 cycles after each product they take part in, OPENBLAS_THREAD_TIMEOUT,
 * read only when the library loads; on 2 cores that spinning cost 20–30 %
 * of a training step). */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include <cblas.h>

#include "kernels/cpu/internal.h"
#include "kernels/kernels.h"

/* Spin iterations before sleeping (each a PAUSE, ~10–150 cycles depending on
 * the CPU): some tens of microseconds. */
#define SPIN_ITERS 2000

struct lk_pool {
	int threads;
	pthread_t *tids;
	int started; /* workers created */

	pthread_mutex_t call_mtx; /* one parallel_for at a time */
	pthread_mutex_t mtx;      /* guards sleeping on wake/done */
	pthread_cond_t wake;
	pthread_cond_t done;

	_Atomic uint64_t gen;    /* bumped per call; workers run when it moves */
	_Atomic int remaining;   /* workers still running this call */
	_Atomic bool stop;

	/* the current call, written before gen is bumped */
	lk_range_fn fn;
	void *arg;
	int64_t n;
};

struct worker_arg {
	lk_pool *pool;
	int index;
};

/* initial-exec: this code is loaded with a plugin (dlopen), where a plain
 * thread-local lives in dynamic TLS, which LeakSanitizer (GCC 12, glibc
 * 2.36) crashes scanning at exit; a word of static TLS is always there */
static _Thread_local int inside_pool __attribute__((tls_model("initial-exec")));

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static inline void
run_chunk(lk_pool *pool, int i)
{
	int64_t n = pool->n, t = pool->threads;
	int64_t begin = i * n / t, end = (i + 1) * n / t;
	if (end > begin)
		pool->fn(pool->arg, begin, end);
}

static void *
worker_main(void *p)
{
	struct worker_arg wa = *(struct worker_arg *)p;
	lk_pool *pool = wa.pool;
	uint64_t seen = 0;

	free(p);
	inside_pool = 1;
	for (;;) {
		uint64_t g = atomic_load_explicit(&pool->gen, memory_order_acquire);
		for (int s = 0; g == seen && s < SPIN_ITERS; s++) {
			cpu_relax();
			g = atomic_load_explicit(&pool->gen, memory_order_acquire);
		}
		if (g == seen) {
			pthread_mutex_lock(&pool->mtx);
			while ((g = atomic_load(&pool->gen)) == seen && !atomic_load(&pool->stop))
				pthread_cond_wait(&pool->wake, &pool->mtx);
			pthread_mutex_unlock(&pool->mtx);
		}
		if (atomic_load(&pool->stop))
			break;
		seen = g;
		run_chunk(pool, wa.index);
		if (atomic_fetch_sub_explicit(&pool->remaining, 1, memory_order_acq_rel) == 1) {
			pthread_mutex_lock(&pool->mtx);
			pthread_cond_signal(&pool->done);
			pthread_mutex_unlock(&pool->mtx);
		}
	}
	return NULL;
}

/* OpenBLAS keeps one process-wide thread count, not one per calling thread.
 * Loom uses it as the published thread count of the process: lk_pool_create
 * sets it, and every product the kernels issue restores it to its pool's
 * count afterwards (lki_gemm_end), so pools of different sizes used one
 * after the other each get theirs, and a product issued with no pool — a
 * head plugin's, which has no pool and its own copy of these kernels —
 * reads it and runs on that many threads of an ambient pool (below).
 * During a product it is 1: the kernels split products themselves.  Two
 * threads issuing products with different pools at the same time would race
 * on it: the kernels assume one training thread per process. */
static void
set_blas_threads(int threads)
{
#ifdef OPENBLAS_VERSION
	if (openblas_get_num_threads() != threads)
		openblas_set_num_threads(threads);
#else
	(void)threads;
#endif
}

static int
get_blas_threads(void)
{
#ifdef OPENBLAS_VERSION
	int t = openblas_get_num_threads();
	return t > 1 ? t : 1;
#else
	return 1;
#endif
}

static lk_pool *pool_new(int threads);

/* The pool that products issued with no pool split over: created on first
 * use with the published count, re-created when that changes, kept while
 * this copy of the kernels is loaded (its workers sleep when idle).  One per
 * copy of the kernels: a plugin linking them has its own, and retires it
 * when the plugin is unloaded (lt_dlclose) or the process exits, so no
 * worker is left sleeping in code that is no longer mapped.  A forked child
 * has none of the parent's workers: it forgets the pool and makes its own. */
static lk_pool *ambient;
static pthread_mutex_t ambient_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t ambient_once = PTHREAD_ONCE_INIT;

static void
ambient_forget_in_child(void)
{
	/* the workers were not copied into this process; their memory is */
	ambient = NULL;
	pthread_mutex_init(&ambient_mtx, NULL);
}

static void
ambient_register_atfork(void)
{
	pthread_atfork(NULL, NULL, ambient_forget_in_child);
}

__attribute__((destructor)) static void
ambient_retire(void)
{
	lk_pool_destroy(ambient);
	ambient = NULL;
}

static lk_pool *
ambient_pool(int threads)
{
	lk_pool *p;
	pthread_once(&ambient_once, ambient_register_atfork);
	pthread_mutex_lock(&ambient_mtx);
	if (ambient != NULL && ambient->threads != threads) {
		lk_pool_destroy(ambient);
		ambient = NULL;
	}
	if (ambient == NULL)
		ambient = pool_new(threads);
	p = ambient;
	pthread_mutex_unlock(&ambient_mtx);
	return p;
}

lk_pool *
lki_gemm_begin(lk_pool *pool, int *restore)
{
	int t = pool != NULL ? pool->threads : get_blas_threads();
	*restore = t;
	set_blas_threads(1);
	if (pool != NULL)
		return pool;
	return t > 1 ? ambient_pool(t) : NULL;
}

void
lki_gemm_end(int restore)
{
	set_blas_threads(restore);
}

static void
stop_workers(lk_pool *pool)
{
	pthread_mutex_lock(&pool->mtx);
	atomic_store(&pool->stop, true);
	pthread_cond_broadcast(&pool->wake);
	pthread_mutex_unlock(&pool->mtx);
	for (int i = 0; i < pool->started; i++)
		pthread_join(pool->tids[i], NULL);
}

static lk_pool *
pool_new(int threads)
{
	lk_pool *pool;

	if (threads < 1)
		threads = 1;
	if (threads > 1024)
		threads = 1024;
	pool = calloc(1, sizeof *pool);
	if (pool == NULL)
		return NULL;
	pool->threads = threads;
	pthread_mutex_init(&pool->call_mtx, NULL);
	pthread_mutex_init(&pool->mtx, NULL);
	pthread_cond_init(&pool->wake, NULL);
	pthread_cond_init(&pool->done, NULL);
	atomic_init(&pool->gen, 0);
	atomic_init(&pool->remaining, 0);
	atomic_init(&pool->stop, false);
	if (threads > 1) {
		pool->tids = calloc((size_t)threads - 1, sizeof *pool->tids);
		if (pool->tids == NULL)
			goto fail;
		for (int i = 1; i < threads; i++) {
			struct worker_arg *wa = malloc(sizeof *wa);
			if (wa == NULL)
				goto fail;
			wa->pool = pool;
			wa->index = i;
			if (pthread_create(&pool->tids[i - 1], NULL, worker_main, wa) != 0) {
				free(wa);
				goto fail;
			}
			pool->started++;
		}
	}
	return pool;
fail:
	lk_pool_destroy(pool);
	return NULL;
}

lk_pool *
lk_pool_create(int threads)
{
	lk_pool *pool = pool_new(threads);
	if (pool != NULL)
		set_blas_threads(pool->threads);
	return pool;
}

void
lk_pool_destroy(lk_pool *pool)
{
	if (pool == NULL)
		return;
	stop_workers(pool);
	free(pool->tids);
	pthread_cond_destroy(&pool->done);
	pthread_cond_destroy(&pool->wake);
	pthread_mutex_destroy(&pool->mtx);
	pthread_mutex_destroy(&pool->call_mtx);
	free(pool);
}

int
lk_pool_threads(const lk_pool *pool)
{
	return pool ? pool->threads : 1;
}

void
lk_parallel_for(lk_pool *pool, int64_t n, lk_range_fn fn, void *arg)
{
	int threads = pool ? pool->threads : 1;

	if (n <= 0)
		return;
	if (threads == 1) {
		fn(arg, 0, n);
		return;
	}
	if (inside_pool) {
		/* nested: the same chunks, in order, here */
		for (int64_t i = 0; i < threads; i++) {
			int64_t begin = i * n / threads, end = (i + 1) * n / threads;
			if (end > begin)
				fn(arg, begin, end);
		}
		return;
	}

	pthread_mutex_lock(&pool->call_mtx);
	pool->fn = fn;
	pool->arg = arg;
	pool->n = n;
	atomic_store_explicit(&pool->remaining, threads - 1, memory_order_relaxed);
	pthread_mutex_lock(&pool->mtx);
	atomic_fetch_add_explicit(&pool->gen, 1, memory_order_release);
	pthread_cond_broadcast(&pool->wake);
	pthread_mutex_unlock(&pool->mtx);

	inside_pool = 1;
	run_chunk(pool, 0);
	inside_pool = 0;

	for (int s = 0; atomic_load_explicit(&pool->remaining, memory_order_acquire) != 0 &&
	                s < SPIN_ITERS;
	     s++)
		cpu_relax();
	if (atomic_load_explicit(&pool->remaining, memory_order_acquire) != 0) {
		pthread_mutex_lock(&pool->mtx);
		while (atomic_load(&pool->remaining) != 0)
			pthread_cond_wait(&pool->done, &pool->mtx);
		pthread_mutex_unlock(&pool->mtx);
	}
	pthread_mutex_unlock(&pool->call_mtx);
}

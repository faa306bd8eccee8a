/* train-loom — training throughput of Loom's Transformer on one of the
 * benchmark shapes of SPEC §11.1.
 *
 *     train-loom SHAPE THREADS STEPS        (SHAPE: small, medium, large)
 *
 * Builds the model of the shape (patches over all channels, learned
 * positions, no dropout, no RevIN, forecast head over every channel, MSE,
 * AdamW), fills a batch with fixed pseudo-random inputs and targets, runs
 * a few untimed warm-up steps, then times STEPS full training steps —
 * forward, loss, zero_grad, backward, AdamW — and prints one JSON line.
 * The forecast head is the head-forecast plugin, loaded through the host's
 * registry (LOOM_PLUGIN_PATH, then the build tree's plugins directory), as
 * the worker loads it.  bench/train-torch.py is the same in PyTorch. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "host/core/plugins.h"
#include "model.h"

#ifndef BENCH_PLUGIN_DIR
#define BENCH_PLUGIN_DIR "plugins"
#endif

typedef struct shape {
	const char *name;
	int64_t channels, context, patch, d_model, heads, layers, ffn, horizon, batch;
} shape;

/* SPEC §11.1 */
static const shape shapes[] = {
	{"small", 1, 168, 24, 64, 4, 2, 256, 24, 64},
	{"medium", 4, 336, 16, 128, 8, 4, 512, 96, 32},
	{"large", 4, 512, 8, 256, 8, 4, 1024, 96, 16},
};

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The resident set's high-water mark so far, KiB (VmHWM, as ru_maxrss). */
static long
peak_rss_kib(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* FLOPs of one training step, counted analytically: 2·m·n·k for every
 * matrix product of the forward and the backward pass, nothing else (the
 * element-wise work — LayerNorm, softmax, GELU, residuals, bias sums, the
 * loss and AdamW — is left out, as it is in the usual 6·N·params rule).
 * With S sequences of T tokens, N = S·T rows, width D, FFN width F, H heads
 * (T×T scores per head over dh = D/H, so a score product over all heads is
 * 2·S·T·T·D):
 *   forward, per layer: QKV 2·N·D·3D, scores Q·K^T 2·S·T²·D, P·V 2·S·T²·D,
 *     output projection 2·N·D·D, FFN 2·N·D·F + 2·N·F·D;
 *   patch embedding 2·N·(P·C)·D; head 2·S·(T·D)·out.
 *   backward: two products per forward product (input and weight
 *   gradients; for attention dP = dO·V^T, dV = P^T·dO, dQ = dS·K,
 *   dK = dS^T·Q), except the patch embedding, whose input needs no gradient
 *   (one product, its weight's).
 * So a step is 3 × forward − the embedding's forward. */
static double
step_flops(const shape *s, int64_t out_dim)
{
	double S = (double)s->batch, T = (double)(s->context / s->patch), N = S * T;
	double D = (double)s->d_model, F = (double)s->ffn, pc = (double)(s->patch * s->channels);
	double layer = 2 * N * D * 3 * D + 2 * (2 * S * T * T * D) + 2 * N * D * D +
	               2 * (2 * N * D * F);
	double embed = 2 * N * pc * D, head = 2 * S * (T * D) * (double)out_dim;
	double fwd = (double)s->layers * layer + embed + head;
	return 3 * fwd - embed;
}

int
main(int argc, char **argv)
{
	const shape *s = NULL;
	int threads, steps, warmup;
	const char *dirs[] = {BENCH_PLUGIN_DIR};
	loomi_plugins reg;
	loomi_strv errs = {0};
	loomi_doc doc;
	loom_instance *ins;
	loomi_plugin_conf pc = {"forecast", "head-forecast", NULL, NULL};
	tf_model m;
	tf_model_config mc;
	lk_pool *pool;
	char *err = NULL;
	int64_t target_in[16], n_x, n_y, n_trainable = 0;
	float *x, *y;
	double loss = 0, t0 = 0, t_total, ph[5] = {0};
	long rss_base;

	if (argc != 4) {
		fprintf(stderr, "usage: %s small|medium|large THREADS STEPS\n", argv[0]);
		return 2;
	}
	for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
		if (strcmp(argv[1], shapes[i].name) == 0)
			s = &shapes[i];
	threads = atoi(argv[2]);
	steps = atoi(argv[3]);
	if (s == NULL || threads < 1 || steps < 1) {
		fprintf(stderr, "%s: unknown shape or bad THREADS/STEPS\n", argv[0]);
		return 2;
	}
	warmup = steps / 10 < 2 ? 2 : steps / 10 > 10 ? 10 : steps / 10;
	rss_base = peak_rss_kib();

	/* the head plugin, through the registry (LOOM_PLUGIN_PATH first) */
	if (loomi_plugins_init(&reg, dirs, 1, NULL) != 0 ||
	    loomi_doc_load_string(&doc, "x = 1;", "bench", &errs) != 0) {
		fprintf(stderr, "train-loom: cannot set up the plugin registry\n");
		return 1;
	}
	pc.node = doc.root;
	if (loomi_instance_create(&reg, &doc, &pc, &ins, &errs) != 0 ||
	    loomi_instance_start(ins, &err) != 0) {
		fprintf(stderr, "train-loom: cannot load head-forecast (%s%s); set LOOM_PLUGIN_PATH\n",
		        err ? err : "", errs.n ? errs.v[0] : "");
		return 1;
	}

	pool = lk_pool_create(threads);
	if (pool == NULL) {
		fprintf(stderr, "train-loom: cannot create the thread pool\n");
		return 1;
	}
	memset(&mc, 0, sizeof mc);
	mc.channels = s->channels;
	mc.context = s->context;
	mc.patch = s->patch;
	mc.d_model = s->d_model;
	mc.heads = s->heads;
	mc.layers = s->layers;
	mc.ffn = s->ffn;
	mc.dropout = 0;
	mc.revin = false;
	mc.channel_independent = false;
	mc.max_batch = s->batch;
	mc.head_ops = ins->desc->ops;
	mc.head_ctx = ins->ctx;
	mc.horizon = s->horizon;
	mc.targets = s->channels; /* forecast every channel */
	for (int64_t k = 0; k < s->channels; k++)
		target_in[k] = k;
	mc.target_in = target_in;
	mc.options = "{\"loss\":\"mse\",\"dropout\":0}";
	if (tf_model_build(&m, &mc, pool, &err) != 0) {
		fprintf(stderr, "train-loom: build: %s\n", err);
		return 1;
	}
	tf_model_init(&m, 1234);
	for (int i = 0; i < m.n_tensors; i++)
		if (!(m.tensors[i].flags & TF_BUFFER))
			n_trainable += m.tensors[i].numel;

	n_x = s->batch * s->context * s->channels;
	n_y = s->batch * (int64_t)m.head.out_dim;
	x = malloc((size_t)n_x * sizeof *x);
	y = malloc((size_t)n_y * sizeof *y);
	if (x == NULL || y == NULL)
		return 1;
	for (int64_t i = 0; i < n_x; i++)
		x[i] = (float)lk_rand_normal(99, 1, (uint64_t)i);
	for (int64_t i = 0; i < n_y; i++)
		y[i] = (float)lk_rand_normal(99, 2, (uint64_t)i);

	/* warm-up, then the timed steps; each phase timed on its own too */
	for (int it = 0; it < warmup + steps; it++) {
		double t[6];
		if (it == warmup)
			t0 = now();
		t[0] = now();
		tf_model_forward(&m, x, s->batch, true, (uint64_t)it);
		t[1] = now();
		tf_model_loss(&m, y, &loss);
		t[2] = now();
		tf_model_zero_grad(&m);
		t[3] = now();
		tf_model_backward(&m);
		t[4] = now();
		tf_model_adamw(&m, 1e-4, 0.9, 0.999, 1e-8, 0.01, it + 1);
		t[5] = now();
		if (it >= warmup)
			for (int k = 0; k < 5; k++)
				ph[k] += t[k + 1] - t[k];
	}
	t_total = now() - t0;

	printf("{\"impl\":\"loom\",\"shape\":\"%s\",\"threads\":%d,\"steps\":%d,\"warmup\":%d,"
	       "\"seconds\":%.6f,\"steps_per_s\":%.4f,\"flops_per_step\":%.6e,\"gflops\":%.3f,"
	       "\"params\":%" PRId64 ",\"loss\":%.6g,\"peak_rss_kib\":%ld,\"base_rss_kib\":%ld,"
	       "\"phases_s\":{\"forward\":%.6f,\"loss\":%.6f,\"zero_grad\":%.6f,"
	       "\"backward\":%.6f,\"adamw\":%.6f}}\n",
	       s->name, threads, steps, warmup, t_total, steps / t_total,
	       step_flops(s, m.head.out_dim), step_flops(s, m.head.out_dim) * steps / t_total * 1e-9,
	       n_trainable, loss, peak_rss_kib(), rss_base, ph[0], ph[1], ph[2], ph[3], ph[4]);

	free(x);
	free(y);
	tf_model_free(&m);
	lk_pool_destroy(pool);
	loomi_doc_free(&doc);
	loomi_plugins_fini(&reg);
	return 0;
}

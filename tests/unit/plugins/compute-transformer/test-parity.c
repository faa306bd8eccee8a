/* Whole-model parity with PyTorch (llm.c's test is the model): the
 * Transformer is built, initialized and exported; tests/reference/
 * transformer_ref.py builds the same model from PyTorch's own modules
 * (Debian's python3-torch), loads the weights, and runs forward, backward
 * and 10 AdamW steps on the same batch; this test compares the outputs, the
 * loss, every gradient and the 10 losses.  Skips (77) without torch.
 *
 * Tolerances (both sides compute in float32, in different orders):
 *   outputs, predictions   max |Δ| ≤ 2e-5 · max(1, max |ref|)
 *   loss                   |Δ| ≤ 1e-5 · |ref|
 *   each gradient tensor   max |Δ| ≤ 1e-4 · max |ref| + 1e-7
 *   the 10 losses          |Δ| ≤ 1e-4 · |ref|  (Adam's normalized steps
 *                          amplify the last bits of near-zero gradients) */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/safetensors.h>

#include "host/core/plugins.h"
#include "model.h"
#include "testutil.h"

#define STEPS 10

typedef struct pcase {
	const char *label;
	int64_t channels, context, patch, d_model, heads, layers, ffn, horizon, targets, batch;
	int64_t target_in[4];
	bool revin, ci;
	double clip;
} pcase;

static const pcase cases[] = {
	{"plain", 3, 32, 8, 16, 2, 2, 32, 6, 2, 4, {0, 2}, false, false, 0.0},
	{"revin", 3, 24, 4, 16, 4, 2, 24, 5, 2, 3, {2, 1}, true, false, 1.0},
	{"revin+channel-independent", 2, 32, 8, 16, 2, 1, 32, 4, 2, 4, {0, 1}, true, true, 0.5},
};

static loomi_plugins reg;
static const loom_head_ops *head;
static void *head_ctx;
static char *tmp;

static void
setup(void)
{
	const char *dirs[] = {tu_env("LOOM_TEST_PLUGINS")};
	loomi_strv errs = {0};
	loomi_doc doc;
	loom_instance *ins;
	loomi_plugin_conf pc = {"forecast", "head-forecast", NULL, NULL};
	char *err = NULL;

	tmp = tu_tmpdir();
	ck_assert_int_eq(loomi_plugins_init(&reg, dirs, 1, NULL), 0);
	ck_assert_int_eq(loomi_doc_load_string(&doc, "x = 1;", "t", &errs), 0);
	pc.node = doc.root;
	ck_assert_int_eq(loomi_instance_create(&reg, &doc, &pc, &ins, &errs), 0);
	ck_assert_int_eq(loomi_instance_start(ins, &err), 0);
	head = ins->desc->ops;
	head_ctx = ins->ctx;
	loomi_doc_free(&doc);
}

static void
teardown(void)
{
	loomi_plugins_fini(&reg);
	tu_rmrf(tmp);
	free(tmp);
}

static double
max_abs(const float *a, int64_t n)
{
	double m = 0;
	for (int64_t i = 0; i < n; i++)
		m = fmax(m, fabs((double)a[i]));
	return m;
}

static double
max_diff(const float *a, const float *b, int64_t n)
{
	double m = 0;
	for (int64_t i = 0; i < n; i++)
		m = fmax(m, fabs((double)a[i] - (double)b[i]));
	return m;
}

static const loom_safetensors_tensor *
need(const loom_safetensors *f, const char *name)
{
	const loom_safetensors_tensor *t = loom_safetensors_find(f, name);
	ck_assert_msg(t != NULL, "the reference wrote no \"%s\"", name);
	return t;
}

START_TEST(parity)
{
	const pcase *c = &cases[_i];
	tf_model m;
	tf_model_config mc;
	lk_pool *pool = lk_pool_create(1);
	char *err = NULL, *case_path, *in_path, *out_path, *cmd, *file;
	int64_t B = c->batch, S, od, ylen;
	float *x, *y, *out, *pred, losses[STEPS];
	double loss;
	loom_safetensors_tensor *ts;
	size_t n_ts = 0, len;
	unsigned char *buf;
	loom_safetensors *ref;
	FILE *fp;

	memset(&mc, 0, sizeof mc);
	mc.channels = c->channels;
	mc.context = c->context;
	mc.patch = c->patch;
	mc.d_model = c->d_model;
	mc.heads = c->heads;
	mc.layers = c->layers;
	mc.ffn = c->ffn;
	mc.revin = c->revin;
	mc.channel_independent = c->ci;
	mc.max_batch = B;
	mc.head_ops = head;
	mc.head_ctx = head_ctx;
	mc.horizon = c->horizon;
	mc.targets = c->targets;
	mc.target_in = c->target_in;
	mc.options = "{\"loss\":\"mse\",\"dropout\":0}";
	ck_assert_msg(tf_model_build(&m, &mc, pool, &err) == 0, "build: %s", err);
	tf_model_init(&m, 1234);

	/* a batch, and targets laid out as the model's predictions */
	S = B * (c->ci ? c->channels : 1);
	od = m.head.out_dim;
	ylen = S * od;
	x = calloc((size_t)(B * c->context * c->channels), sizeof *x);
	y = calloc((size_t)ylen, sizeof *y);
	out = calloc((size_t)ylen, sizeof *out);
	pred = calloc((size_t)ylen, sizeof *pred);
	for (int64_t i = 0; i < B * c->context * c->channels; i++)
		x[i] = (float)(lk_rand_normal(99, 1, (uint64_t)i) * 2.0 + 0.5 * (double)(i % 7));
	for (int64_t i = 0; i < ylen; i++)
		y[i] = (float)lk_rand_normal(99, 2, (uint64_t)i);

	/* export: the weights, and the batch */
	ts = calloc((size_t)m.n_tensors + 2, sizeof *ts);
	for (int i = 0; i < m.n_tensors; i++) {
		const tf_tensor *t = &m.tensors[i];
		ts[n_ts].name = t->name;
		ts[n_ts].dtype = "F32";
		ts[n_ts].ndim = (uint32_t)t->ndim;
		memcpy(ts[n_ts].dims, t->dims, sizeof t->dims);
		ts[n_ts].data = m.params + t->offset;
		ts[n_ts].nbytes = (size_t)t->numel * 4;
		n_ts++;
	}
	ts[n_ts] = (loom_safetensors_tensor){"batch.x", "F32", 3, {B, c->context, c->channels}, x,
	                       (size_t)(B * c->context * c->channels) * 4};
	n_ts++;
	ts[n_ts] = (loom_safetensors_tensor){"batch.y", "F32", 2, {S, od}, y, (size_t)ylen * 4};
	n_ts++;
	ck_assert_int_eq(loom_safetensors_encode(ts, n_ts, NULL, 0, &buf, &len), 0);
	in_path = loomi_strfmt("%s/in.safetensors", tmp);
	ck_assert_int_eq(loomi_write_file_atomic(in_path, buf, len, 0644), 0);
	free(buf);
	free(ts);
	case_path = loomi_strfmt("%s/case.json", tmp);
	fp = fopen(case_path, "w");
	fprintf(fp,
	        "{\"channels\":%lld,\"context\":%lld,\"patch\":%lld,\"d_model\":%lld,\"heads\":%lld,"
	        "\"layers\":%lld,\"ffn\":%lld,\"horizon\":%lld,\"targets\":%lld,\"target_in\":[",
	        (long long)c->channels, (long long)c->context, (long long)c->patch,
	        (long long)c->d_model, (long long)c->heads, (long long)c->layers, (long long)c->ffn,
	        (long long)c->horizon, (long long)c->targets);
	for (int64_t k = 0; k < c->targets; k++)
		fprintf(fp, "%s%lld", k ? "," : "", (long long)c->target_in[k]);
	fprintf(fp,
	        "],\"revin\":%s,\"channel_independent\":%s,\"batch\":%lld,\"lr\":0.001,"
	        "\"betas\":[0.9,0.999],\"eps\":1e-8,\"weight_decay\":0.01,\"clip_norm\":%g,"
	        "\"steps\":%d}\n",
	        c->revin ? "true" : "false", c->ci ? "true" : "false", (long long)B, c->clip, STEPS);
	fclose(fp);

	/* Loom: forward, loss, backward, then STEPS AdamW steps */
	ck_assert_int_eq(tf_model_forward(&m, x, B, true, 7), 0);
	memcpy(out, tf_model_out(&m), (size_t)ylen * sizeof *out);
	tf_model_predictions(&m, pred);
	ck_assert_int_eq(tf_model_loss(&m, y, &loss), 0);
	tf_model_zero_grad(&m);
	ck_assert_int_eq(tf_model_backward(&m), 0);
	float *grads = malloc((size_t)m.n_params * sizeof *grads);
	memcpy(grads, m.grads, (size_t)m.n_params * sizeof *grads);
	for (int s = 0; s < STEPS; s++) {
		double l;
		ck_assert_int_eq(tf_model_forward(&m, x, B, true, 7), 0);
		ck_assert_int_eq(tf_model_loss(&m, y, &l), 0);
		losses[s] = (float)l;
		tf_model_zero_grad(&m);
		ck_assert_int_eq(tf_model_backward(&m), 0);
		if (c->clip > 0)
			tf_model_clip(&m, c->clip);
		tf_model_adamw(&m, 1e-3, 0.9, 0.999, 1e-8, 0.01, s + 1);
	}

	/* PyTorch */
	out_path = loomi_strfmt("%s/ref.safetensors", tmp);
	cmd = loomi_strfmt("/usr/bin/python3 %s/tests/reference/transformer_ref.py %s %s %s",
	                   tu_env("LOOM_TEST_SRCDIR"), case_path, in_path, out_path);
	ck_assert_msg(system(cmd) == 0, "the PyTorch reference failed: %s", cmd);
	ck_assert_int_eq(loomi_read_file(out_path, &file, &len), 0);
	ck_assert_msg(loom_safetensors_decode(file, len, out_path, &ref, &err) == 0, "%s", err);

	{
		const loom_safetensors_tensor *r = need(ref, "out");
		double scale = fmax(1.0, max_abs(r->data, ylen));
		ck_assert_msg(max_diff(out, r->data, ylen) <= 2e-5 * scale,
		              "%s: outputs differ by %g (scale %g)", c->label,
		              max_diff(out, r->data, ylen), scale);
		r = need(ref, "pred");
		scale = fmax(1.0, max_abs(r->data, ylen));
		ck_assert_msg(max_diff(pred, r->data, ylen) <= 2e-5 * scale,
		              "%s: predictions differ by %g", c->label, max_diff(pred, r->data, ylen));
		r = need(ref, "loss");
		ck_assert_msg(fabs(loss - ((const float *)r->data)[0]) <= 1e-5 * fabs(((const float *)r->data)[0]),
		              "%s: loss %.9g, PyTorch %.9g", c->label, loss, ((const float *)r->data)[0]);
	}
	for (int i = 0; i < m.n_tensors; i++) {
		const tf_tensor *t = &m.tensors[i];
		char name[TF_NAME_MAX + 8];
		const loom_safetensors_tensor *r;
		double ref_max, d;
		snprintf(name, sizeof name, "grad.%s", t->name);
		r = need(ref, name);
		ck_assert_int_eq((int64_t)r->nbytes, t->numel * 4);
		ref_max = max_abs(r->data, t->numel);
		d = max_diff(grads + t->offset, r->data, t->numel);
		if (getenv("LOOM_PARITY_VERBOSE"))
			printf("%s: %-40s max|g| %-12g max|Δ| %g\n", c->label, t->name, ref_max, d);
		if (!getenv("LOOM_PARITY_VERBOSE"))
			ck_assert_msg(d <= 1e-4 * ref_max + 1e-7,
			              "%s: gradient of %s differs by %g (max |g| %g)", c->label, t->name,
			              d, ref_max);
	}
	{
		const loom_safetensors_tensor *r = need(ref, "losses");
		const float *rl = r->data;
		for (int s = 0; s < STEPS; s++)
			ck_assert_msg(fabs((double)losses[s] - rl[s]) <= 1e-4 * fabs((double)rl[s]),
			              "%s: loss before step %d: Loom %.9g, PyTorch %.9g", c->label, s + 1,
			              losses[s], rl[s]);
		ck_assert_msg(losses[STEPS - 1] < losses[0], "%s: 10 steps did not lower the loss",
		              c->label);
	}
	loom_safetensors_free(ref);
	free(file);
	free(grads);
	free(x);
	free(y);
	free(out);
	free(pred);
	free(cmd);
	free(case_path);
	free(in_path);
	free(out_path);
	tf_model_free(&m);
	lk_pool_destroy(pool);
}
END_TEST

int
main(void)
{
	Suite *s;
	TCase *tc;

	if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
		printf("SKIP: /usr/bin/python3 cannot import torch; install Debian's python3-torch "
		       "(./bootstrap does) to compare the model with PyTorch\n");
		return 77;
	}
	s = suite_create("parity");
	tc = tcase_create("pytorch");
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, parity, 0, (int)(sizeof cases / sizeof cases[0]));
	suite_add_tcase(s, tc);
	return tu_run(s);
}

/* exporter-onnx — a trained compute-transformer model as an ONNX graph
 * (docs/onnx.md), protobuf written by hand (pb.h, graph.h).
 *
 * The graph takes what the engine's predict takes — input f32 [batch,
 * context, channels] of raw data values — and gives what it gives:
 *
 *   (x − input_shift) / input_scale                 data normalization
 *   RevIN: per window and channel (x − mean) / √(var + 1e-5)
 *   channel independence: [B, L, C] → [B·C, L, 1]
 *   patches: [S, L, cin] → [S·T, P·cin] (a reshape: the memory is the same)
 *   Gemm(embed) + positions → N × pre-LN encoder layer
 *       (LayerNormalization, attention from MatMul/Transpose/Reshape/
 *        Softmax, GELU as x·(1 + erf(x/√2))/2: Gelu is opset 20)
 *   LayerNormalization → flatten → Gemm(head.proj) → RevIN⁻¹
 *   forecast [B, horizon, targets] and regression [B, targets] in
 *   original units, classification [B, classes] probabilities (Softmax),
 *   anomaly [B] scores (mean squared reconstruction error, normalized units)
 *
 * That is the Transformer form.  The weights' metadata "model" names the
 * form (absent: the Transformer): the linear form (linear and naive
 * models, forecast and regression) replaces everything between the channel
 * split and RevIN⁻¹ by one Gemm(linear) of the flattened window x'
 * [S, L·cin]; the mixed form (an ensemble with the Transformer) adds
 * mix · head.proj's output and that Gemm.  The pre- and post-processing
 * are the same nodes for every form.
 *
 * Weights keep their PyTorch names and shapes (Gemm with transB = 1), as
 * raw little-endian float32 initializers. */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <loom/exporter.h>
#include <loom/head.h>
#include <loom/version.h>

#include "graph.h"

typedef struct ctx {
	const loom_host *host;
	loom_instance *ins;
} ctx;

/* The model's form (the weights' metadata "model": "form"), as
 * compute-transformer's enum tf_form. */
enum form {
	FORM_TRANSFORMER = 0,           /* the encoder and head.proj */
	FORM_LINEAR = 1,                /* linear.weight, linear.bias */
	FORM_MIXED = 2,                 /* both, and mix */
	FORM_COUNT = 3,
};

static const char *const form_names[FORM_COUNT] = {"transformer", "linear", "mixed"};

/* What the graph is built from. */
typedef struct model {
	const ctx *c;
	const loom_export_source *src;
	json_t *doc;                    /* model_json, parsed */
	const json_t *spec, *data;
	int form;                       /* enum form */
	const char *kind;               /* transformer, linear, naive, ensemble */
	int task;                       /* loom_task */
	int64_t L, C, P, D, H, layers, F, horizon, K, classes, T, cin;
	bool revin, ci, sinusoidal;
	bool residual_last;             /* model.residual = "last" (forecast) */
	float *in_shift, *in_scale, *out_shift, *out_scale;
	int64_t *target_in;             /* [K] input channel of each target, or -1 */
} model;

static int
refuse(const model *m, const char *fmt, ...) LOOM_PRINTF(2, 3);

/* Log why an export is refused (the source's run named); LOOM_EINVAL. */
static int
refuse(const model *m, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	m->c->host->log(m->c->ins, LOOM_LOG_ERROR, "export of run %s: %s",
	                m->src->run_id && *m->src->run_id ? m->src->run_id : "(unnamed)", msg);
	return LOOM_EINVAL;
}

/* ------------------------------------------------------------------ the description */

static int64_t
model_int(const model *m, const char *key)
{
	const json_t *v = json_object_get(json_object_get(m->spec, "model"), key);
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

/* A JSON array of n numbers into a new float[n]; NULL when it is not one. */
static float *
floats(const json_t *a, int64_t n)
{
	float *v;

	if (!json_is_array(a) || (int64_t)json_array_size(a) != n ||
	    (v = calloc((size_t)(n ? n : 1), sizeof *v)) == NULL)
		return NULL;
	for (int64_t i = 0; i < n; i++) {
		const json_t *e = json_array_get(a, (size_t)i);
		if (!json_is_number(e)) {
			free(v);
			return NULL;
		}
		v[i] = (float)json_number_value(e);
	}
	return v;
}

static const loom_tensor *
tensor(const model *m, const char *name)
{
	for (size_t i = 0; i < m->src->n_tensors; i++) {
		if (m->src->tensors[i].name && strcmp(m->src->tensors[i].name, name) == 0)
			return &m->src->tensors[i];
	}
	return NULL;
}

/* The head's task: from the head instance when this process has it,
 * otherwise from what the weights and data say. */
static int
task_of(model *m, const char *head)
{
	const loom_tensor *w = tensor(m, m->form == FORM_LINEAR ? "linear.weight"
	                                                          : "head.proj.weight");
	const void *ops;
	void *hctx;
	int64_t forecast_out = m->horizon * (m->ci ? 1 : m->K);

	if (head && m->c->host->instance_ops(m->c->ins, head, LOOM_KIND_HEAD, &ops, &hctx) == 0)
		return (int)((const loom_head_ops *)ops)->task;
	if (tensor(m, "head.threshold"))
		return LOOM_TASK_ANOMALY;
	if (m->classes > 0)
		return LOOM_TASK_CLASSIFICATION;
	if (m->revin || m->ci || (w && w->dims[0] == forecast_out && w->dims[0] != m->K))
		return LOOM_TASK_FORECAST;
	return w && w->dims[0] == m->K && forecast_out != m->K ? LOOM_TASK_REGRESSION
	                                                       : LOOM_TASK_FORECAST;
}

/* The form from the metadata's "model" object; absent, the Transformer. */
static int
form_of(model *m)
{
	const json_t *about = json_object_get(m->doc, "model");
	const char *form = json_string_value(json_object_get(about, "form"));
	const char *file = json_string_value(json_object_get(m->doc, "weights"));

	m->form = FORM_TRANSFORMER;
	m->kind = json_string_value(json_object_get(about, "kind"));
	if (m->kind == NULL)
		m->kind = "transformer";
	if (about != NULL && !json_is_object(about))
		return refuse(m, "%s: the metadata \"model\" is not a JSON object; the weights are "
		                 "damaged or not written by compute-transformer",
		              file ? file : "the weights");
	if (form == NULL)
		return 0;
	for (int f = 0; f < FORM_COUNT; f++)
		if (strcmp(form, form_names[f]) == 0) {
			m->form = f;
			return 0;
		}
	return refuse(m, "%s: the weights are a model of form \"%s\", which this exporter does "
	                 "not know (it knows transformer, linear and mixed); export it with the "
	                 "Loom version that trained it",
	              file ? file : "the run", form);
}

static int
describe(model *m)
{
	const char *model_json = m->src->model_json;
	const json_t *inputs, *targets, *classes;
	json_error_t jerr;
	int rv;

	if (model_json == NULL || (m->doc = json_loads(model_json, 0, &jerr)) == NULL)
		return refuse(m, "no model description (the run has no trained weights); export a "
		                 "completed compute-transformer run");
	m->spec = json_object_get(m->doc, "spec");
	m->data = json_object_get(m->doc, "data");
	if (!json_is_object(m->spec) || !json_is_object(m->data))
		return refuse(m, "the model description has no \"spec\" and \"data\" objects; only "
		                 "compute-transformer runs can be exported as ONNX");
	if (m->src->n_tensors == 0 || m->src->tensors == NULL)
		return refuse(m, "the run has no weights (tensors); ONNX export needs a trained model");
	if ((rv = form_of(m)) != 0)
		return rv;

	inputs = json_object_get(m->data, "inputs");
	targets = json_object_get(m->data, "targets");
	classes = json_object_get(m->data, "classes");
	m->C = (int64_t)json_array_size(inputs);
	m->K = (int64_t)json_array_size(targets);
	m->classes = (int64_t)json_array_size(classes);
	m->L = model_int(m, "context");
	m->P = model_int(m, "patch");
	m->D = model_int(m, "d_model");
	m->H = model_int(m, "heads");
	m->layers = model_int(m, "layers");
	m->F = model_int(m, "ffn");
	m->horizon = model_int(m, "horizon");
	m->revin = json_is_true(json_object_get(json_object_get(m->spec, "model"), "revin"));
	{
		const char *res = json_string_value(
			json_object_get(json_object_get(m->spec, "model"), "residual"));
		m->residual_last = res != NULL && strcmp(res, "last") == 0;
	}
	m->ci = json_is_true(json_object_get(json_object_get(m->spec, "model"),
	                                     "channel_independent"));
	m->sinusoidal = json_is_string(json_object_get(json_object_get(m->spec, "model"),
	                                               "positions")) &&
	                strcmp(json_string_value(json_object_get(json_object_get(m->spec, "model"),
	                                                         "positions")),
	                       "sinusoidal") == 0;
	if (m->C < 1 || m->L < 1)
		return refuse(m, "the spec's model group lacks context, or the data description its "
		                 "inputs");
	if (m->form != FORM_LINEAR &&
	    (m->P < 1 || m->L % m->P || m->D < 1 || m->H < 1 || m->D % m->H || m->layers < 0 ||
	     m->F < 1))
		return refuse(m, "the spec's model group lacks context, patch, d_model, heads, layers "
		                 "or ffn, or they do not fit together");
	m->T = m->form != FORM_LINEAR ? m->L / m->P : 0;
	m->cin = m->ci ? 1 : m->C;
	m->in_shift = floats(json_object_get(m->data, "input_shift"), m->C);
	m->in_scale = floats(json_object_get(m->data, "input_scale"), m->C);
	m->out_shift = floats(json_object_get(m->data, "target_shift"), m->K);
	m->out_scale = floats(json_object_get(m->data, "target_scale"), m->K);
	m->target_in = calloc((size_t)(m->K + 1), sizeof *m->target_in);
	if (!m->in_shift || !m->in_scale || !m->out_shift || !m->out_scale || !m->target_in)
		return refuse(m, "the data description lacks input/target shifts and scales");
	for (int64_t k = 0; k < m->K; k++) {
		m->target_in[k] = -1;
		for (int64_t c = 0; c < m->C; c++) {
			const char *tn = json_string_value(json_array_get(targets, (size_t)k));
			const char *in = json_string_value(json_array_get(inputs, (size_t)c));
			if (tn && in && strcmp(tn, in) == 0)
				m->target_in[k] = c;
		}
	}
	m->task = task_of(m, json_string_value(json_object_get(m->doc, "head")));
	if (m->task == LOOM_TASK_FORECAST && (m->horizon < 1 || m->K < 1))
		return refuse(m, "a forecast model needs model.horizon and target channels");
	if (m->task == LOOM_TASK_FORECAST && (m->revin || m->ci)) {
		for (int64_t k = 0; k < m->K; k++)
			if (m->target_in[k] < 0)
				return refuse(m, "the target \"%s\" is not among the input channels, so "
				                 "reversible normalization cannot be expressed",
				              json_string_value(json_array_get(targets, (size_t)k)));
	}
	if (m->ci && m->task != LOOM_TASK_FORECAST)
		return refuse(m, "channel independence is only for forecasts");
	if (m->form != FORM_TRANSFORMER && m->task != LOOM_TASK_FORECAST &&
	    m->task != LOOM_TASK_REGRESSION)
		return refuse(m, "a %s model (form \"%s\") is only for forecast and regression heads; "
		                 "this one's head is a %s head",
		              m->kind, form_names[m->form],
		              m->task == LOOM_TASK_CLASSIFICATION ? "classification" : "anomaly");
	if (m->task == LOOM_TASK_CLASSIFICATION && m->classes < 2)
		return refuse(m, "a classification model needs its class names (data.classes)");
	return 0;
}

static void
model_free(model *m)
{
	json_decref(m->doc);
	free(m->in_shift);
	free(m->in_scale);
	free(m->out_shift);
	free(m->out_scale);
	free(m->target_in);
}

/* ------------------------------------------------------------------ graph pieces */

typedef struct builder {
	model *m;
	ox_graph g;
	int err;                        /* a weight missing or misshapen */
} builder;

/* The weight name, checked to be f32 of the expected shape, as an
 * initializer. */
static const char *
weight(builder *b, const char *name, int ndim, const int64_t *dims)
{
	const loom_tensor *t = tensor(b->m, name);
	size_t n = 1;

	for (int i = 0; i < ndim; i++)
		n *= (size_t)dims[i];
	if (b->err)
		return name;
	if (t == NULL) {
		b->err = refuse(b->m, "the weights have no tensor \"%s\", which the model's spec "
		                      "needs",
		                name);
		return name;
	}
	bool ok = t->dtype == LOOM_DTYPE_F32 && (int)t->ndim == ndim && t->data &&
	          t->nbytes == n * sizeof(float);
	for (int i = 0; ok && i < ndim; i++)
		ok = t->dims[i] == dims[i];
	if (!ok) {
		char want[96] = "", *p = want;
		for (int i = 0; i < ndim; i++)
			p += snprintf(p, (size_t)(want + sizeof want - p), "%s%lld", i ? ", " : "",
			              (long long)dims[i]);
		b->err = refuse(b->m, "the tensor \"%s\" is not f32 [%s] as the model's spec says",
		                name, want);
		return name;
	}
	return ox_weight(&b->g, name, ndim, dims, t->data);
}

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})
#define NDIMS(...) ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define W(b, name, ...) weight(b, name, NDIMS(__VA_ARGS__), DIMS(__VA_ARGS__))

static const char *
op1(builder *b, const char *op, const char *x, const pb_buf *attrs)
{
	return ox_node(&b->g, op, op, 1, (const char *const[]){x}, attrs);
}

static const char *
op2(builder *b, const char *op, const char *x, const char *y)
{
	return ox_node(&b->g, op, op, 2, (const char *const[]){x, y}, NULL);
}

static const char *
reshape(builder *b, const char *x, size_t n, const int64_t *shape)
{
	return op2(b, "Reshape", x, ox_const_i64(&b->g, "shape", n, shape));
}
#define RESHAPE(b, x, ...) reshape(b, x, (size_t)NDIMS(__VA_ARGS__), DIMS(__VA_ARGS__))

static const char *
transpose(builder *b, const char *x, size_t n, const int64_t *perm)
{
	pb_buf a;
	const char *y;

	pb_init(&a);
	ox_attr_ints(&a, "perm", n, perm);
	y = op1(b, "Transpose", x, &a);
	pb_free(&a);
	return y;
}
#define TRANSPOSE(b, x, ...) transpose(b, x, (size_t)NDIMS(__VA_ARGS__), DIMS(__VA_ARGS__))

/* ReduceMean over one axis (opset 17: axes is an attribute). */
static const char *
mean(builder *b, const char *x, int64_t axis, bool keep)
{
	pb_buf a;
	const char *y;

	pb_init(&a);
	ox_attr_ints(&a, "axes", 1, &axis);
	ox_attr_int(&a, "keepdims", keep);
	y = op1(b, "ReduceMean", x, &a);
	pb_free(&a);
	return y;
}

static const char *
softmax(builder *b, const char *x)
{
	pb_buf a;
	const char *y;

	pb_init(&a);
	ox_attr_int(&a, "axis", -1);
	y = op1(b, "Softmax", x, &a);
	pb_free(&a);
	return y;
}

static const char *
gather(builder *b, const char *x, const char *idx, int64_t axis)
{
	pb_buf a;
	const char *y;

	pb_init(&a);
	ox_attr_int(&a, "axis", axis);
	y = ox_node(&b->g, "Gather", "Gather", 2, (const char *const[]){x, idx}, &a);
	pb_free(&a);
	return y;
}

/* x [n, in] · weight^T + bias, weight [out, in] as PyTorch keeps it. */
static const char *
linear(builder *b, const char *x, const char *prefix, const char *wname, const char *bname,
       int64_t out, int64_t in)
{
	char wn[96], bn[96];
	const char *w, *bias;
	pb_buf a;
	const char *y;

	snprintf(wn, sizeof wn, "%s%s", prefix, wname);
	snprintf(bn, sizeof bn, "%s%s", prefix, bname);
	w = W(b, wn, out, in);
	bias = W(b, bn, out);
	pb_init(&a);
	ox_attr_int(&a, "transB", 1);
	y = ox_node(&b->g, "Gemm", "Gemm", 3, (const char *const[]){x, w, bias}, &a);
	pb_free(&a);
	return y;
}

static const char *
layernorm(builder *b, const char *x, const char *prefix)
{
	char wn[96], bn[96];
	const char *w, *bias, *y;
	pb_buf a;

	snprintf(wn, sizeof wn, "%s.weight", prefix);
	snprintf(bn, sizeof bn, "%s.bias", prefix);
	w = W(b, wn, b->m->D);
	bias = W(b, bn, b->m->D);
	pb_init(&a);
	ox_attr_int(&a, "axis", -1);
	ox_attr_float(&a, "epsilon", 1e-5f);
	y = ox_node(&b->g, "LayerNormalization", "LayerNorm", 3, (const char *const[]){x, w, bias},
	            &a);
	pb_free(&a);
	return y;
}

/* GELU, exact: x · (1 + erf(x / √2)) / 2. */
static const char *
gelu(builder *b, const char *x)
{
	const char *e = op1(b, "Erf", op2(b, "Div", x, ox_scalar(&b->g, "sqrt2", (float)M_SQRT2)),
	                    NULL);
	const char *y = op2(b, "Mul", x, op2(b, "Add", e, ox_scalar(&b->g, "one", 1.0f)));
	return op2(b, "Mul", y, ox_scalar(&b->g, "half", 0.5f));
}

/* One pre-LN encoder layer over token rows x [N, D]. */
static const char *
encoder_layer(builder *b, const char *x, int64_t l)
{
	const model *m = b->m;
	int64_t D = m->D, H = m->H, dh = D / H, T = m->T;
	char p[64];
	const char *h, *q, *k, *v, *s, *a;

	snprintf(p, sizeof p, "layers.%lld.norm1", (long long)l);
	h = layernorm(b, x, p);
	snprintf(p, sizeof p, "layers.%lld.self_attn.", (long long)l);
	h = linear(b, h, p, "in_proj_weight", "in_proj_bias", 3 * D, D);
	/* [N, 3D] → [3, S, H, T, dh]: q, k and v per head */
	h = TRANSPOSE(b, RESHAPE(b, h, -1, T, 3, H, dh), 2, 0, 3, 1, 4);
	q = gather(b, h, ox_const_i64(&b->g, "q", 0, DIMS(0)), 0);
	k = gather(b, h, ox_const_i64(&b->g, "k", 0, DIMS(1)), 0);
	v = gather(b, h, ox_const_i64(&b->g, "v", 0, DIMS(2)), 0);
	s = op2(b, "MatMul", q, TRANSPOSE(b, k, 0, 1, 3, 2));
	s = op2(b, "Mul", s, ox_scalar(&b->g, "scale", (float)(1.0 / sqrt((double)dh))));
	a = op2(b, "MatMul", softmax(b, s), v); /* [S, H, T, dh] */
	a = RESHAPE(b, TRANSPOSE(b, a, 0, 2, 1, 3), -1, D);
	a = linear(b, a, p, "out_proj.weight", "out_proj.bias", D, D);
	x = op2(b, "Add", x, a);

	snprintf(p, sizeof p, "layers.%lld.norm2", (long long)l);
	h = layernorm(b, x, p);
	snprintf(p, sizeof p, "layers.%lld.", (long long)l);
	h = gelu(b, linear(b, h, p, "linear1.weight", "linear1.bias", m->F, D));
	h = linear(b, h, p, "linear2.weight", "linear2.bias", D, m->F);
	return op2(b, "Add", x, h);
}

/* Sinusoidal positions [T, D], as the engine's kernel makes them. */
static const char *
sinusoid(builder *b)
{
	int64_t T = b->m->T, D = b->m->D;
	float *pos = calloc((size_t)(T * D), sizeof *pos);
	const char *name;

	if (pos == NULL) {
		b->err = LOOM_ENOMEM;
		return "";
	}
	for (int64_t t = 0; t < T; t++)
		for (int64_t i = 0; 2 * i < D; i++) {
			double angle = (double)t / pow(10000.0, (double)(2 * i) / (double)D);
			pos[t * D + 2 * i] = (float)sin(angle);
			if (2 * i + 1 < D)
				pos[t * D + 2 * i + 1] = (float)cos(angle);
		}
	name = ox_const_f32(&b->g, "positions", 2, DIMS(T, D), pos);
	free(pos);
	return name;
}

/* ------------------------------------------------------------------ the graph */

typedef struct revin {
	const char *mean, *std;         /* [B, 1, C] */
} revin;

/* The width of the head's raw outputs per sequence. */
static int64_t
out_dim(const model *m)
{
	switch (m->task) {
	case LOOM_TASK_FORECAST: return m->ci ? m->horizon : m->horizon * m->K;
	case LOOM_TASK_REGRESSION: return m->K;
	case LOOM_TASK_CLASSIFICATION: return m->classes;
	default: return m->L * m->C;
	}
}

/* What every form reads: the input after the data normalization (into
 * *xn, [B, L, C]), reversible normalization (its statistics into r) and
 * the channel split: x' [S, L, cin]. */
static const char *
window(builder *b, const char **xn, revin *r)
{
	model *m = b->m;
	int64_t C = m->C, L = m->L;
	const char *x;

	x = op2(b, "Sub", "input", ox_const_f32(&b->g, "input_shift", 1, DIMS(C), m->in_shift));
	x = op2(b, "Div", x, ox_const_f32(&b->g, "input_scale", 1, DIMS(C), m->in_scale));
	*xn = x;
	if (m->revin) {
		const char *d;
		r->mean = mean(b, x, 1, true);
		d = op2(b, "Sub", x, r->mean);
		r->std = op1(b, "Sqrt",
		             op2(b, "Add", mean(b, op2(b, "Mul", d, d), 1, true),
		                 ox_scalar(&b->g, "revin_eps", 1e-5f)),
		             NULL);
		x = op2(b, "Div", d, r->std);
	}
	if (m->ci)
		x = RESHAPE(b, TRANSPOSE(b, x, 0, 2, 1), -1, L, 1);
	return x;
}

/* The Transformer: x' [S, L, cin] to head.proj's outputs [S, od]. */
static const char *
transformer(builder *b, const char *x)
{
	model *m = b->m;
	const char *xs = x;
	int64_t D = m->D, T = m->T;

	/* patches: in row-major memory the patch view is the series itself */
	x = RESHAPE(b, x, -1, m->P * m->cin);
	x = linear(b, x, "embed.", "weight", "bias", D, m->P * m->cin);
	x = RESHAPE(b, x, -1, T, D);
	x = op2(b, "Add", x, m->sinusoidal ? sinusoid(b) : W(b, "pos", T, D));
	x = RESHAPE(b, x, -1, D);
	for (int64_t l = 0; l < m->layers; l++)
		x = encoder_layer(b, x, l);
	x = layernorm(b, x, "norm");
	x = RESHAPE(b, x, -1, T * D);
	x = linear(b, x, "head.", "proj.weight", "proj.bias", out_dim(m), T * D);
	if (m->residual_last && m->task == LOOM_TASK_FORECAST) {
		/* + the window's last value of each output's channel: x'[s, L−1, ch] */
		int64_t od = out_dim(m), *idx = calloc((size_t)od, sizeof *idx);
		const char *last;
		if (idx == NULL) {
			b->err = LOOM_ENOMEM;
			return "";
		}
		for (int64_t j = 0; j < od; j++)
			idx[j] = m->ci ? 0 : m->target_in[j % m->K];
		last = gather(b, RESHAPE(b, xs, -1, m->L, m->cin),
		              ox_const_i64(&b->g, "last_step", 1, (const int64_t[]){m->L - 1}), 1);
		last = gather(b, RESHAPE(b, last, -1, m->cin),
		              ox_const_i64(&b->g, "last_channel", (size_t)od, idx), 1);
		free(idx);
		x = op2(b, "Add", x, last);
	}
	return x;
}

/* The linear map: x' flattened to [S, L·cin] (element t·cin + c is step t
 * of channel c), times linear.weightᵀ, plus linear.bias: [S, od]. */
static const char *
linear_map(builder *b, const char *x)
{
	int64_t in = b->m->L * b->m->cin;

	x = RESHAPE(b, x, -1, in);
	return linear(b, x, "linear.", "weight", "bias", out_dim(b->m), in);
}

/* The head's raw outputs [S, od] of the model's form. */
static const char *
raw_outputs(builder *b, const char *x)
{
	const char *t, *l;

	switch (b->m->form) {
	case FORM_LINEAR:
		return linear_map(b, x);
	case FORM_MIXED:
		/* mix · transformer(x') + linear(x'), the linear part already weighted */
		t = op2(b, "Mul", transformer(b, x), W(b, "mix", 1));
		l = linear_map(b, x);
		return op2(b, "Add", t, l);
	default:
		return transformer(b, x);
	}
}

/* RevIN⁻¹ of raw outputs [B, od] whose element j belongs to input channel
 * idx[j]. */
static const char *
revin_inverse(builder *b, const char *y, const revin *r, int64_t od, const int64_t *idx)
{
	const char *ic = ox_const_i64(&b->g, "revin_channel", (size_t)od, idx);
	const char *mu = gather(b, RESHAPE(b, r->mean, -1, b->m->C), ic, 1);
	const char *sd = gather(b, RESHAPE(b, r->std, -1, b->m->C), ic, 1);
	return op2(b, "Add", op2(b, "Mul", y, sd), mu);
}

static const char *
denormalize(builder *b, const char *y)
{
	const model *m = b->m;
	y = op2(b, "Mul", y, ox_const_f32(&b->g, "target_scale", 1, DIMS(m->K), m->out_scale));
	return op2(b, "Add", y, ox_const_f32(&b->g, "target_shift", 1, DIMS(m->K), m->out_shift));
}

/* The output transform of raw outputs y [S, od], the same for every form
 * (the engine's tf_model_predictions and predict's to_output): RevIN⁻¹ and
 * the data normalization's inverse, or the head's own (Softmax, the
 * reconstruction error).  *ndim and dims receive the output's shape. */
static const char *
output(builder *b, const char *y, const char *xn, const revin *r, int *ndim, int64_t *dims)
{
	model *m = b->m;
	int64_t od = out_dim(m), Hz = m->horizon, K = m->K, C = m->C, L = m->L;
	int64_t *idx = NULL;

	dims[0] = OX_DIM_BATCH;
	switch (m->task) {
	case LOOM_TASK_FORECAST:
		*ndim = 3;
		dims[1] = Hz;
		dims[2] = K;
		if (m->ci) {
			/* [B·C, H] → [B, C, H], each channel's statistics, the targets */
			y = RESHAPE(b, y, -1, C, Hz);
			if (m->revin)
				y = op2(b, "Add", op2(b, "Mul", y, TRANSPOSE(b, r->std, 0, 2, 1)),
				        TRANSPOSE(b, r->mean, 0, 2, 1));
			y = gather(b, y, ox_const_i64(&b->g, "targets", (size_t)K, m->target_in), 1);
			y = TRANSPOSE(b, y, 0, 2, 1);
			return denormalize(b, y);
		}
		if (m->revin) {
			if ((idx = calloc((size_t)od, sizeof *idx)) == NULL)
				break;
			for (int64_t j = 0; j < od; j++)
				idx[j] = m->target_in[j % K];
			y = revin_inverse(b, y, r, od, idx);
			free(idx);
		}
		return denormalize(b, RESHAPE(b, y, -1, Hz, K));
	case LOOM_TASK_REGRESSION:
		*ndim = 2;
		dims[1] = K;
		return denormalize(b, y);
	case LOOM_TASK_CLASSIFICATION:
		*ndim = 2;
		dims[1] = m->classes;
		return softmax(b, y);
	default: {
		const char *e;
		*ndim = 1;
		if (m->revin) {
			if ((idx = calloc((size_t)od, sizeof *idx)) == NULL)
				break;
			for (int64_t j = 0; j < od; j++)
				idx[j] = j % C;
			y = revin_inverse(b, y, r, od, idx);
			free(idx);
		}
		e = op2(b, "Sub", y, RESHAPE(b, xn, -1, L * C));
		return mean(b, op2(b, "Mul", e, e), 1, false);
	}
	}
	b->err = LOOM_ENOMEM;
	return "";
}

/* Key/value metadata that tells a user what the graph expects and gives. */
static int
write_model(builder *b, int ndim, const int64_t *dims, pb_buf *file)
{
	model *m = b->m;
	static const char *const tasks[] = {"", "forecast", "regression", "classification",
	                                    "anomaly"};
	char *inputs = json_dumps(json_object_get(m->data, "inputs"), JSON_COMPACT);
	const json_t *names = json_object_get(m->data, m->task == LOOM_TASK_CLASSIFICATION
	                                                       ? "classes"
	                                                       : "targets");
	char *outputs = names ? json_dumps(names, JSON_COMPACT) : NULL;
	char threshold[64] = "", graph[64], doc[256];
	const loom_tensor *t = tensor(m, "head.threshold");
	const char *meta[14];
	size_t n = 0;
	int rv;

	ox_input(&b->g, "input", 3, DIMS(OX_DIM_BATCH, m->L, m->C));
	ox_output(&b->g, "output", ndim, dims);
	meta[n++] = "loom.task";
	meta[n++] = tasks[m->task];
	meta[n++] = "loom.inputs";
	meta[n++] = inputs ? inputs : "[]";
	meta[n++] = "loom.outputs";
	meta[n++] = outputs ? outputs : "[]";
	meta[n++] = "loom.run";
	meta[n++] = m->src->run_id ? m->src->run_id : "";
	meta[n++] = "loom.model";
	meta[n++] = m->kind;
	meta[n++] = "loom.form";
	meta[n++] = form_names[m->form];
	if (t && t->data && t->nbytes >= sizeof(float)) {
		snprintf(threshold, sizeof threshold, "%.9g", (double)*(const float *)t->data);
		meta[n++] = "loom.threshold";
		meta[n++] = threshold;
	}
	snprintf(graph, sizeof graph, "loom_%s", form_names[m->form]);
	snprintf(doc, sizeof doc,
	         "Loom time-series model (%s, the %s form): input [batch, context, channels] of "
	         "raw data values; see loom.task and docs/onnx.md for the output",
	         m->kind, form_names[m->form]);
	rv = ox_model(&b->g, graph, LOOM_VERSION_STRING, doc, meta, n / 2, file);
	free(inputs);
	free(outputs);
	return rv;
}

static int
build(model *m, pb_buf *file)
{
	builder b = {.m = m};
	revin r = {NULL, NULL};
	const char *xn = NULL, *x, *y;
	int64_t dims[4];
	int ndim = 0, rv;

	ox_graph_init(&b.g);
	x = window(&b, &xn, &r);
	y = output(&b, raw_outputs(&b, x), xn, &r, &ndim, dims);
	/* the graph's output has a fixed name for users to ask for */
	ox_node_to(&b.g, "Identity", "output", 1, (const char *const[]){y}, NULL);
	if (b.err) {
		rv = b.err;
		goto out;
	}
	rv = write_model(&b, ndim, dims, file);
out:
	ox_graph_free(&b.g);
	return rv;
}

static int
onnx_export_run(void *p, const loom_export_source *src, const loom_export_sink *sink)
{
	ctx *c = p;
	model m;
	pb_buf file;
	int rv;

	memset(&m, 0, sizeof m);
	m.c = c;
	m.src = src;
	pb_init(&file);
	if ((rv = describe(&m)) == 0 && (rv = build(&m, &file)) == 0)
		rv = sink->write(sink->arg, file.data, file.len);
	if (rv == LOOM_ENOMEM)
		c->host->log(c->ins, LOOM_LOG_ERROR, "out of memory writing the ONNX graph");
	pb_free(&file);
	model_free(&m);
	return rv;
}

static int
onnx_init(loom_instance *ins, const loom_host *host, void *p)
{
	ctx *c = p;
	c->host = host;
	c->ins = ins;
	return 0;
}

static const loom_exporter_ops ops = {
	.size = sizeof(loom_exporter_ops),
	.caps = LOOM_EXPORT_NEEDS_TENSORS,
	.format = "onnx",
	.extension = ".onnx",
	.media_type = "application/octet-stream",
	.export_run = onnx_export_run,
};

LOOM_PLUGIN_DEFINE(exporter_onnx,
                   .kind = LOOM_KIND_EXPORTER,
                   .name = "exporter-onnx",
                   .version = "1.0.0",
                   .description = "trained models (Transformer, linear, naive, ensemble) as "
                                  "ONNX graphs (opset 17)",
                   .ctx_size = sizeof(ctx),
                   .init = onnx_init,
                   .ops = &ops)

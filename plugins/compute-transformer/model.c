/* The time-series Transformer: layout, initialization, forward, loss and
 * backward.  See model.h.
 *
 * Shapes: B windows of L steps and C channels; S sequences (B, or B·C when
 * channels run independently, each then with cin = 1 channel); T = L/P
 * tokens of P·cin values; N = S·T token rows of width D.  One encoder layer
 * (pre-LN, as nn.TransformerEncoderLayer with norm_first=True):
 *
 *   ln1 = LN1(x);  qkv = ln1·Wqkv^T + bqkv;  atty = MHA(qkv)   (attention dropout)
 *   attp = atty·Wo^T + bo;  res2 = x + drop(attp)
 *   ln2 = LN2(res2);  fch = ln2·W1^T + b1;  fcg = gelu(fch)
 *   fcp = drop(fcg)·W2^T + b2;  x' = res2 + drop(fcp)
 *
 * Dropout streams: every dropout site has its own stream number so masks
 * never repeat between sites; the seed changes every step. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/error.h>

#include "model.h"

/* Per-layer activations (pointers into m->acts). */
typedef struct layer_acts {
	float *ln1, *ln1_mean, *ln1_rstd;
	float *qkv, *probs, *atty;
	float *attp, *attp_d;
	float *res2;
	float *ln2, *ln2_mean, *ln2_rstd;
	float *fch, *fcg, *fcg_d;
	float *fcp, *fcp_d;
	float *out;
} layer_acts;

typedef struct acts {
	float *rev_mean, *rev_std;   /* [B, C] */
	float *xn;                   /* [B, L, C] after reversible normalization */
	float *xs;                   /* [S, L, cin] sequences */
	float *patches;              /* [N, P·cin] */
	float *emb;                  /* [N, D] embedding + positions */
	float *x0;                   /* [N, D] after dropout */
	layer_acts *layer;           /* [layers] */
	float *enc, *enc_mean, *enc_rstd;
	float *head;                 /* head activations */
	const float *lin_in;         /* LINEAR: the linear map's input (xs or xn) */
	float *out, *dout;           /* [S, out_dim] raw head outputs, their grad */
	float *pred, *dpred;         /* [S, out_dim] after the output transform */
	/* gradient scratch (in m->dacts) */
	float *dres, *dln, *dqkv, *datty, *dattp, *dfcp, *dfcg_d, *dfcg, *dfch, *datt, *denc,
	      *demb;
} acts;

/* Dropout stream numbers: site s of layer l is stream 16·(l+1) + s. */
enum { DS_EMB = 1, DS_ATT = 2, DS_ATTP = 3, DS_FCG = 4, DS_FCP = 5, DS_HEAD = 6 };

static uint64_t
stream(int64_t layer, int site)
{
	return (uint64_t)(16 * (layer + 1) + site);
}

/* ------------------------------------------------------------------ memory */

/* n floats, zeroed, 64-byte aligned (NULL for n == 0 is fine to free). */
static float *
alloc_floats(int64_t n)
{
	void *p = NULL;
	size_t bytes = ((size_t)(n > 0 ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
	if (posix_memalign(&p, 64, bytes) != 0)
		return NULL;
	memset(p, 0, bytes);
	return p;
}

/* ------------------------------------------------------------------ layout */

typedef struct builder {
	tf_model *m;
	int cap;
} builder;

static tf_tensor *
add_tensor(builder *b, const char *name, int ndim, const int64_t *dims, uint32_t flags,
           uint32_t init, uint32_t fan_in, float scale)
{
	tf_model *m = b->m;
	tf_tensor *t;

	if (m->n_tensors == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 64;
		m->tensors = realloc(m->tensors, (size_t)b->cap * sizeof *m->tensors);
		if (m->tensors == NULL)
			return NULL;
	}
	t = &m->tensors[m->n_tensors++];
	memset(t, 0, sizeof *t);
	snprintf(t->name, sizeof t->name, "%s", name);
	t->ndim = ndim;
	t->numel = 1;
	for (int i = 0; i < ndim; i++) {
		t->dims[i] = dims[i];
		t->numel *= dims[i];
	}
	/* keep every tensor 64-byte aligned within the buffers */
	t->offset = m->n_params;
	m->n_params += (t->numel + 15) & ~(int64_t)15;
	t->flags = flags;
	t->init = init;
	t->fan_in = fan_in;
	t->scale = scale;
	return t;
}

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})

/* A linear layer's weight [out, in] and bias [out], initialized as nn.Linear
 * (both uniform in ±1/sqrt(in)) unless other initializations are given. */
static int
add_linear(builder *b, const char *prefix, const char *wname, const char *bname, int64_t out,
           int64_t in, uint32_t w_init, uint32_t b_init)
{
	char n[TF_NAME_MAX];
	snprintf(n, sizeof n, "%s%s", prefix, wname);
	if (!add_tensor(b, n, 2, DIMS(out, in), 0, w_init, (uint32_t)in, 0))
		return LOOM_ENOMEM;
	snprintf(n, sizeof n, "%s%s", prefix, bname);
	if (!add_tensor(b, n, 1, DIMS(out), TF_NO_DECAY, b_init, (uint32_t)in, 0))
		return LOOM_ENOMEM;
	return 0;
}

static int
add_norm(builder *b, const char *prefix)
{
	char n[TF_NAME_MAX];
	int64_t d = b->m->cfg.d_model;
	snprintf(n, sizeof n, "%s.weight", prefix);
	if (!add_tensor(b, n, 1, DIMS(d), TF_NO_DECAY, LOOM_INIT_ONE, 0, 0))
		return LOOM_ENOMEM;
	snprintf(n, sizeof n, "%s.bias", prefix);
	if (!add_tensor(b, n, 1, DIMS(d), TF_NO_DECAY, LOOM_INIT_ZERO, 0, 0))
		return LOOM_ENOMEM;
	return 0;
}

static float *
P(const tf_model *m, int i)
{
	return m->params + m->tensors[i].offset;
}

static float *
G(const tf_model *m, int i)
{
	return m->grads + m->tensors[i].offset;
}

/* Tensor indices: embed.weight 0, embed.bias 1, pos 2 (when learned), then
 * 12 per layer, then norm.weight, norm.bias, then the head's. */
enum {
	L_NORM1_W, L_NORM1_B, L_QKV_W, L_QKV_B, L_OUT_W, L_OUT_B,
	L_NORM2_W, L_NORM2_B, L_FC1_W, L_FC1_B, L_FC2_W, L_FC2_B, L_COUNT
};

static int
layer_base(const tf_model *m, int64_t l)
{
	return (m->cfg.sinusoidal ? 2 : 3) + (int)(l * L_COUNT);
}

static int
final_norm(const tf_model *m)
{
	return layer_base(m, m->cfg.layers);
}

/* Carve the activation buffers; with base NULL only count. */
static int64_t
carve(tf_model *m, acts *a, float *base, float *dbase, int64_t *n_dacts)
{
	const tf_model_config *c = &m->cfg;
	int64_t B = c->max_batch, L = c->context, C = c->channels, S = m->max_seq;
	int64_t T = m->tokens, D = c->d_model, F = c->ffn, H = c->heads, N = S * T;
	int64_t od = m->head.out_dim;
	int64_t off = 0, doff = 0;
	bool drop = c->dropout > 0;
	bool enc = c->form != TF_FORM_LINEAR; /* the encoder's activations */

#define TAKE(ptr, count)                                                                  \
	do {                                                                              \
		(ptr) = base ? base + off : NULL;                                         \
		off += ((count) + 15) & ~(int64_t)15;                                     \
	} while (0)
#define DTAKE(ptr, count)                                                                 \
	do {                                                                              \
		(ptr) = dbase ? dbase + doff : NULL;                                      \
		doff += ((count) + 15) & ~(int64_t)15;                                    \
	} while (0)

	TAKE(a->rev_mean, B * C);
	TAKE(a->rev_std, B * C);
	TAKE(a->xn, B * L * C);
	if (c->channel_independent)
		TAKE(a->xs, S * L);
	else
		a->xs = a->xn;
	if (!enc) {
		/* a linear map: the window, the outputs and their gradients */
		TAKE(a->out, S * od);
		TAKE(a->dout, S * od);
		TAKE(a->pred, S * od);
		TAKE(a->dpred, S * od);
		*n_dacts = 0;
		return off;
	}
	TAKE(a->patches, N * c->patch * m->cin);
	TAKE(a->emb, N * D);
	if (drop)
		TAKE(a->x0, N * D);
	else
		a->x0 = a->emb;
	for (int64_t l = 0; l < c->layers; l++) {
		layer_acts *la = &a->layer[l];
		TAKE(la->ln1, N * D);
		TAKE(la->ln1_mean, N);
		TAKE(la->ln1_rstd, N);
		TAKE(la->qkv, N * 3 * D);
		TAKE(la->probs, S * H * T * T);
		TAKE(la->atty, N * D);
		TAKE(la->attp, N * D);
		if (drop)
			TAKE(la->attp_d, N * D);
		else
			la->attp_d = la->attp;
		TAKE(la->res2, N * D);
		TAKE(la->ln2, N * D);
		TAKE(la->ln2_mean, N);
		TAKE(la->ln2_rstd, N);
		TAKE(la->fch, N * F);
		TAKE(la->fcg, N * F);
		if (drop)
			TAKE(la->fcg_d, N * F);
		else
			la->fcg_d = la->fcg;
		TAKE(la->fcp, N * D);
		if (drop)
			TAKE(la->fcp_d, N * D);
		else
			la->fcp_d = la->fcp;
		TAKE(la->out, N * D);
	}
	TAKE(a->enc, N * D);
	TAKE(a->enc_mean, N);
	TAKE(a->enc_rstd, N);
	TAKE(a->head, (int64_t)m->head.act_floats);
	TAKE(a->out, S * od);
	TAKE(a->dout, S * od);
	TAKE(a->pred, S * od);
	TAKE(a->dpred, S * od);

	DTAKE(a->dres, N * D);
	DTAKE(a->dln, N * D);
	DTAKE(a->dqkv, N * 3 * D);
	DTAKE(a->datty, N * D);
	DTAKE(a->dattp, N * D);
	DTAKE(a->dfcp, N * D);
	DTAKE(a->dfcg_d, N * F);
	DTAKE(a->dfcg, N * F);
	DTAKE(a->dfch, N * F);
	DTAKE(a->datt, S * H * T * T);
	DTAKE(a->denc, N * D);
	DTAKE(a->demb, N * D);
#undef TAKE
#undef DTAKE
	*n_dacts = doff;
	return off;
}

static acts *
A(const tf_model *m)
{
	return (acts *)m->priv;
}

int
tf_model_build(tf_model *m, const tf_model_config *cfg, lk_pool *pool, char **err)
{
	builder b = {m, 0};
	loom_head_shape shape;
	acts *a;
	int rv;

	memset(m, 0, sizeof *m);
	m->cfg = *cfg;
	m->pool = pool;
	m->tokens = cfg->context / cfg->patch;
	m->cin = cfg->channel_independent ? 1 : cfg->channels;
	m->seq_per_window = cfg->channel_independent ? cfg->channels : 1;
	m->max_seq = cfg->max_batch * m->seq_per_window;

	memset(&shape, 0, sizeof shape);
	shape.size = sizeof shape;
	shape.max_sequences = (uint32_t)m->max_seq;
	shape.tokens = (uint32_t)m->tokens;
	shape.d_model = (uint32_t)cfg->d_model;
	shape.channels = (uint32_t)m->cin;
	shape.context = (uint32_t)cfg->context;
	shape.patch = (uint32_t)cfg->patch;
	shape.horizon = (uint32_t)cfg->horizon;
	shape.targets = (uint32_t)(cfg->channel_independent ? 1 : cfg->targets);
	shape.classes = (uint32_t)cfg->classes;
	shape.channel_independent = cfg->channel_independent;
	shape.class_names = cfg->class_names;
	shape.options = cfg->options;
	memset(&m->head, 0, sizeof m->head);
	if ((rv = cfg->head_ops->configure(cfg->head_ctx, &shape, &m->head)) != 0) {
		*err = strdup("the head refused the model's shape (see its log lines)");
		return rv;
	}
	if (m->head.n_params > LOOM_HEAD_MAX_PARAMS || m->head.out_dim == 0) {
		*err = strdup("the head declared an invalid layout");
		return LOOM_EINTERNAL;
	}

	m->lin = m->mix = -1;
	/* The encoder's tensors, named as PyTorch names them. */
	if (cfg->form != TF_FORM_LINEAR) {
		int64_t D = cfg->d_model, F = cfg->ffn, pin = cfg->patch * m->cin;
		char prefix[TF_NAME_MAX];
		if ((rv = add_linear(&b, "embed.", "weight", "bias", D, pin, LOOM_INIT_FAN_IN,
		                     LOOM_INIT_FAN_IN)) != 0)
			goto oom;
		if (!cfg->sinusoidal &&
		    !add_tensor(&b, "pos", 2, DIMS(m->tokens, D), TF_NO_DECAY, TF_INIT_UNIFORM, 0,
		                0.02f))
			goto oom;
		for (int64_t l = 0; l < cfg->layers; l++) {
			snprintf(prefix, sizeof prefix, "layers.%lld.norm1", (long long)l);
			if ((rv = add_norm(&b, prefix)) != 0)
				goto oom;
			snprintf(prefix, sizeof prefix, "layers.%lld.self_attn.", (long long)l);
			/* nn.MultiheadAttention: xavier-uniform in_proj, zero biases */
			if ((rv = add_linear(&b, prefix, "in_proj_weight", "in_proj_bias", 3 * D, D,
			                     TF_INIT_XAVIER, LOOM_INIT_ZERO)) != 0 ||
			    (rv = add_linear(&b, prefix, "out_proj.weight", "out_proj.bias", D, D,
			                     LOOM_INIT_FAN_IN, LOOM_INIT_ZERO)) != 0)
				goto oom;
			snprintf(prefix, sizeof prefix, "layers.%lld.norm2", (long long)l);
			if ((rv = add_norm(&b, prefix)) != 0)
				goto oom;
			snprintf(prefix, sizeof prefix, "layers.%lld.", (long long)l);
			if ((rv = add_linear(&b, prefix, "linear1.weight", "linear1.bias", F, D,
			                     LOOM_INIT_FAN_IN, LOOM_INIT_FAN_IN)) != 0 ||
			    (rv = add_linear(&b, prefix, "linear2.weight", "linear2.bias", D, F,
			                     LOOM_INIT_FAN_IN, LOOM_INIT_FAN_IN)) != 0)
				goto oom;
		}
		if ((rv = add_norm(&b, "norm")) != 0)
			goto oom;
	}
	/* The linear map, after the encoder: trained (or fitted) in the LINEAR
	 * form, a fixed buffer in the MIXED one. */
	if (cfg->form != TF_FORM_TRANSFORMER) {
		int64_t in = cfg->context * m->cin, od = m->head.out_dim;
		uint32_t fixed = cfg->form == TF_FORM_MIXED ? TF_BUFFER | TF_NO_DECAY : 0;
		m->lin = m->n_tensors;
		if (!add_tensor(&b, "linear.weight", 2, DIMS(od, in), fixed, LOOM_INIT_FAN_IN,
		                (uint32_t)in, 0) ||
		    !add_tensor(&b, "linear.bias", 1, DIMS(od), fixed | TF_NO_DECAY, LOOM_INIT_FAN_IN,
		                (uint32_t)in, 0))
			goto oom;
		if (cfg->form == TF_FORM_MIXED) {
			m->mix = m->n_tensors;
			if (!add_tensor(&b, "mix", 1, DIMS(1), TF_BUFFER | TF_NO_DECAY, LOOM_INIT_ONE, 0,
			                0))
				goto oom;
		}
	}
	/* The head's, after the encoder's (none in the LINEAR form: the head
	 * then only scores and reports). */
	for (uint32_t i = 0; cfg->form != TF_FORM_LINEAR && i < m->head.n_params; i++) {
		const loom_param_spec *ps = &m->head.params[i];
		char n[TF_NAME_MAX];
		int64_t dims[TF_MAX_DIMS];
		uint32_t flags = TF_HEAD;
		if (ps->ndim < 1 || ps->ndim > TF_MAX_DIMS) {
			*err = strdup("the head declared a parameter with a bad rank");
			return LOOM_EINTERNAL;
		}
		for (uint32_t d = 0; d < ps->ndim; d++)
			dims[d] = ps->dims[d];
		if (ps->flags & LOOM_PARAM_NO_DECAY)
			flags |= TF_NO_DECAY;
		if (ps->flags & LOOM_PARAM_BUFFER)
			flags |= TF_BUFFER | TF_NO_DECAY;
		snprintf(n, sizeof n, "head.%.*s", (int)sizeof ps->name, ps->name);
		if (!add_tensor(&b, n, (int)ps->ndim, dims, flags, ps->init, ps->fan_in, ps->scale))
			goto oom;
	}

	/* a MIXED model is never trained: no gradients, moments or gradient
	 * scratch (an average is built after training, and its build is part
	 * of what auto costs) */
	m->params = alloc_floats(m->n_params);
	if (cfg->form != TF_FORM_MIXED) {
		m->grads = alloc_floats(m->n_params);
		m->m = alloc_floats(m->n_params);
		m->v = alloc_floats(m->n_params);
		if (!m->grads || !m->m || !m->v)
			goto oom;
	}
	m->head_params = calloc(m->head.n_params + 1, sizeof *m->head_params);
	m->head_grads = calloc(m->head.n_params + 1, sizeof *m->head_grads);
	a = calloc(1, sizeof *a);
	if (!m->params || !m->head_params || !m->head_grads || !a)
		goto oom;
	m->priv = a;
	a->layer = calloc((size_t)(cfg->layers ? cfg->layers : 1), sizeof *a->layer);
	if (a->layer == NULL)
		goto oom;
	for (uint32_t i = 0; cfg->form != TF_FORM_LINEAR && i < m->head.n_params; i++) {
		int t = m->n_tensors - (int)m->head.n_params + (int)i;
		m->head_params[i] = P(m, t);
		m->head_grads[i] = m->grads ? G(m, t) : NULL;
	}
	m->n_acts = carve(m, a, NULL, NULL, &m->n_dacts);
	if (cfg->form == TF_FORM_MIXED)
		m->n_dacts = 0;
	m->acts = alloc_floats(m->n_acts);
	m->dacts = m->n_dacts > 0 ? alloc_floats(m->n_dacts) : NULL;
	if (!m->acts || (m->n_dacts > 0 && !m->dacts))
		goto oom;
	{
		int64_t counted;
		carve(m, a, m->acts, m->dacts, &counted);
	}
	if (cfg->sinusoidal) {
		if ((m->pos_table = alloc_floats(m->tokens * cfg->d_model)) == NULL)
			goto oom;
		lk_positions_sinusoidal(m->pos_table, m->tokens, cfg->d_model);
	}
	return 0;
oom:
	*err = strdup("out of memory building the model; use a smaller model or batch");
	tf_model_free(m);
	return LOOM_ENOMEM;
}

void
tf_model_free(tf_model *m)
{
	acts *a = A(m);
	free(m->tensors);
	free(m->params);
	free(m->grads);
	free(m->m);
	free(m->v);
	free(m->head_params);
	free(m->head_grads);
	free(m->acts);
	free(m->dacts);
	free(m->pos_table);
	if (a)
		free(a->layer);
	free(a);
	memset(m, 0, sizeof *m);
}

const tf_tensor *
tf_model_tensor(const tf_model *m, const char *name)
{
	for (int i = 0; i < m->n_tensors; i++) {
		if (strcmp(m->tensors[i].name, name) == 0)
			return &m->tensors[i];
	}
	return NULL;
}

/* ------------------------------------------------------------------ initialization */

/* p[k] uniform in ±bound, element k drawn from (seed, tensor, k). */
static void
uniform(float *p, int64_t n, double bound, uint64_t seed, uint64_t tensor)
{
	for (int64_t k = 0; k < n; k++)
		p[k] = (float)((2.0 * lk_rand_uniform(seed, tensor, (uint64_t)k) - 1.0) * bound);
}

void
tf_model_init(tf_model *m, uint64_t seed)
{
	for (int i = 0; i < m->n_tensors; i++) {
		const tf_tensor *t = &m->tensors[i];
		float *p = m->params + t->offset;
		double bound;

		switch (t->init) {
		case LOOM_INIT_ZERO:
			memset(p, 0, (size_t)t->numel * sizeof *p);
			break;
		case LOOM_INIT_ONE:
			for (int64_t k = 0; k < t->numel; k++)
				p[k] = 1.0f;
			break;
		case LOOM_INIT_CONST:
			for (int64_t k = 0; k < t->numel; k++)
				p[k] = t->scale;
			break;
		case LOOM_INIT_NORMAL:
			for (int64_t k = 0; k < t->numel; k++)
				p[k] = (float)(lk_rand_normal(seed, (uint64_t)i, (uint64_t)k) * t->scale);
			break;
		case TF_INIT_XAVIER:
			bound = sqrt(6.0 / (double)(t->dims[0] + t->dims[1]));
			uniform(p, t->numel, bound, seed, (uint64_t)i);
			break;
		case TF_INIT_UNIFORM:
			uniform(p, t->numel, t->scale, seed, (uint64_t)i);
			break;
		case LOOM_INIT_FAN_IN:
		default:
			bound = t->fan_in ? 1.0 / sqrt((double)t->fan_in) : 0.0;
			uniform(p, t->numel, bound, seed, (uint64_t)i);
			break;
		}
	}
	memset(m->m, 0, (size_t)m->n_params * sizeof(float));
	memset(m->v, 0, (size_t)m->n_params * sizeof(float));
}

/* ------------------------------------------------------------------ forward */

static loom_head_io
head_io(tf_model *m, bool training)
{
	acts *a = A(m);
	loom_head_io io;

	memset(&io, 0, sizeof io);
	io.size = sizeof io;
	io.sequences = (uint32_t)tf_model_sequences(m);
	io.threads = (uint32_t)lk_pool_threads(m->pool);
	io.training = training;
	io.params = m->head_params;
	io.grads = m->head_grads;
	io.acts = a->head;
	io.enc = a->enc;
	io.denc = a->denc;
	io.out = a->out;
	io.dout = a->dout;
	io.seed = lk_rand_u64(m->step_seed, stream(-1, DS_HEAD), 0);
	return io;
}

int64_t
tf_model_sequences(const tf_model *m)
{
	return m->batch * m->seq_per_window;
}

float *
tf_model_out(const tf_model *m)
{
	return A(m)->out;
}

static double
drop_p(const tf_model *m)
{
	return m->training ? m->cfg.dropout : 0.0;
}

int
tf_model_forward(tf_model *m, const float *x, int64_t batch, bool training, uint64_t step_seed)
{
	const tf_model_config *c = &m->cfg;
	acts *a = A(m);
	int64_t B = batch, L = c->context, C = c->channels, S = batch * m->seq_per_window;
	int64_t T = m->tokens, D = c->d_model, F = c->ffn, H = c->heads, N = S * T;
	const float *in;
	loom_head_io io;
	double p;
	bool drop;

	if (batch < 1 || batch > c->max_batch)
		return LOOM_EINVAL;
	m->batch = batch;
	m->training = training;
	m->step_seed = step_seed;
	p = drop_p(m);
	/* With dropout configured the dropped-out activations have buffers of
	 * their own: they are written in evaluation too (p = 0 copies). */
	drop = c->dropout > 0;

	if (c->revin) {
		lk_revin_normalize(a->xn, a->rev_mean, a->rev_std, x, B, L, C, 1e-5);
		in = a->xn;
	} else if (c->form == TF_FORM_LINEAR && !c->channel_independent) {
		/* kept: the backward pass and a ridge fit read it */
		memcpy(a->xn, x, (size_t)(B * L * C) * sizeof *x);
		in = a->xn;
	} else {
		in = x; /* read once, by patchify or channels_split (copies) */
	}
	if (c->channel_independent) {
		lk_channels_split(a->xs, in, B, L, C);
		in = a->xs;
	}
	if (c->form == TF_FORM_LINEAR) {
		a->lin_in = in;
		lk_linear_forward(a->out, in, P(m, m->lin), P(m, m->lin + 1), S, L * m->cin,
		                  m->head.out_dim, m->pool);
		return 0;
	}
	lk_patchify(a->patches, in, S, L, m->cin, c->patch);
	lk_linear_forward(a->emb, a->patches, P(m, 0), P(m, 1), N, c->patch * m->cin, D, m->pool);
	lk_positions_forward(a->emb, c->sinusoidal ? m->pos_table : P(m, 2), S, T, D);
	if (drop)
		lk_dropout_forward(a->x0, a->emb, N * D, p, step_seed, stream(-1, DS_EMB), m->pool);

	const float *xl = a->x0;
	for (int64_t l = 0; l < c->layers; l++) {
		layer_acts *la = &a->layer[l];
		int base = layer_base(m, l);
		lk_layernorm_forward(la->ln1, la->ln1_mean, la->ln1_rstd, xl, P(m, base + L_NORM1_W),
		                     P(m, base + L_NORM1_B), N, D, 1e-5, m->pool);
		lk_linear_forward(la->qkv, la->ln1, P(m, base + L_QKV_W), P(m, base + L_QKV_B), N, D,
		                  3 * D, m->pool);
		lk_attention_forward(la->atty, la->probs, la->qkv, S, T, D, H, p, step_seed,
		                     stream(l, DS_ATT), m->pool);
		lk_linear_forward(la->attp, la->atty, P(m, base + L_OUT_W), P(m, base + L_OUT_B), N, D,
		                  D, m->pool);
		if (drop)
			lk_dropout_forward(la->attp_d, la->attp, N * D, p, step_seed, stream(l, DS_ATTP),
			                   m->pool);
		lk_residual_forward(la->res2, xl, la->attp_d, N * D);
		lk_layernorm_forward(la->ln2, la->ln2_mean, la->ln2_rstd, la->res2,
		                     P(m, base + L_NORM2_W), P(m, base + L_NORM2_B), N, D, 1e-5,
		                     m->pool);
		lk_linear_forward(la->fch, la->ln2, P(m, base + L_FC1_W), P(m, base + L_FC1_B), N, D, F,
		                  m->pool);
		lk_gelu_forward(la->fcg, la->fch, N * F, m->pool);
		if (drop)
			lk_dropout_forward(la->fcg_d, la->fcg, N * F, p, step_seed, stream(l, DS_FCG),
			                   m->pool);
		lk_linear_forward(la->fcp, la->fcg_d, P(m, base + L_FC2_W), P(m, base + L_FC2_B), N, F,
		                  D, m->pool);
		if (drop)
			lk_dropout_forward(la->fcp_d, la->fcp, N * D, p, step_seed, stream(l, DS_FCP),
			                   m->pool);
		lk_residual_forward(la->out, la->res2, la->fcp_d, N * D);
		xl = la->out;
	}
	{
		int fn = final_norm(m);
		lk_layernorm_forward(a->enc, a->enc_mean, a->enc_rstd, xl, P(m, fn), P(m, fn + 1), N, D,
		                     1e-5, m->pool);
	}
	io = head_io(m, training);
	{
		int rv = c->head_ops->forward(c->head_ctx, &io);
		if (rv != 0)
			return rv;
	}
	if (c->residual_last) {
		/* out[s, h·K + k] += x'[s, L−1, channel of target k] */
		int64_t od = m->head.out_dim, K = c->channel_independent ? 1 : c->targets;
		for (int64_t s = 0; s < S; s++)
			for (int64_t j = 0; j < od; j++) {
				int64_t ch = c->channel_independent ? 0 : c->target_in[j % K];
				a->out[s * od + j] += in[(s * L + L - 1) * m->cin + ch];
			}
	}
	if (c->form != TF_FORM_MIXED)
		return 0;
	/* MIXED: the transformer's share, plus the linear part (in dpred,
	 * free until a loss is asked for) */
	{
		int64_t od = m->head.out_dim;
		float w = P(m, m->mix)[0];
		lk_linear_forward(a->dpred, in, P(m, m->lin), P(m, m->lin + 1), S, L * m->cin, od,
		                  m->pool);
		for (int64_t i = 0; i < S * od; i++)
			a->out[i] = w * a->out[i] + a->dpred[i];
	}
	return 0;
}

const float *
tf_model_linear_input(const tf_model *m)
{
	return A(m)->lin_in;
}

/* ------------------------------------------------------------------ output transform */

/* Reversible normalization maps forecasts (and reconstructions) back: the
 * element j of sequence s of window b belongs to input channel ch, whose
 * window statistics scale and shift it. */
static int64_t
out_channel(const tf_model *m, int64_t s, int64_t j)
{
	const tf_model_config *c = &m->cfg;
	if (c->channel_independent)
		return s % c->channels;
	if (c->target_in != NULL && m->head.out_dim == (uint32_t)(c->horizon * c->targets))
		return c->target_in[j % c->targets];
	return j % c->channels; /* reconstructions: [l][c] */
}

static bool
transforms_output(const tf_model *m)
{
	return m->cfg.revin;
}

void
tf_model_predictions(const tf_model *m, float *pred)
{
	const acts *a = A(m);
	int64_t S = tf_model_sequences(m), od = m->head.out_dim;

	if (!transforms_output(m)) {
		memcpy(pred, a->out, (size_t)(S * od) * sizeof *pred);
		return;
	}
	for (int64_t s = 0; s < S; s++) {
		int64_t b = s / m->seq_per_window;
		for (int64_t j = 0; j < od; j++) {
			int64_t ch = out_channel(m, s, j);
			int64_t k = b * m->cfg.channels + ch;
			pred[s * od + j] = a->out[s * od + j] * a->rev_std[k] + a->rev_mean[k];
		}
	}
}

void
tf_model_unpredict(const tf_model *m, const float *target, float *out)
{
	const acts *a = A(m);
	int64_t S = tf_model_sequences(m), od = m->head.out_dim;

	if (!transforms_output(m)) {
		memcpy(out, target, (size_t)(S * od) * sizeof *out);
		return;
	}
	for (int64_t s = 0; s < S; s++) {
		int64_t b = s / m->seq_per_window;
		for (int64_t j = 0; j < od; j++) {
			int64_t k = b * m->cfg.channels + out_channel(m, s, j);
			out[s * od + j] = (target[s * od + j] - a->rev_mean[k]) / a->rev_std[k];
		}
	}
}

int
tf_model_loss(tf_model *m, const float *target, double *loss)
{
	acts *a = A(m);
	loom_head_io io = head_io(m, m->training);
	int64_t S = tf_model_sequences(m), od = m->head.out_dim;
	int rv;

	tf_model_predictions(m, a->pred);
	io.out = a->pred;
	io.dout = a->dpred;
	io.target = target;
	if ((rv = m->cfg.head_ops->loss(m->cfg.head_ctx, &io, loss)) != 0)
		return rv;
	/* chain the gradient through the output transform */
	if (!transforms_output(m)) {
		memcpy(a->dout, a->dpred, (size_t)(S * od) * sizeof *a->dout);
	} else {
		for (int64_t s = 0; s < S; s++) {
			int64_t b = s / m->seq_per_window;
			for (int64_t j = 0; j < od; j++) {
				int64_t k = b * m->cfg.channels + out_channel(m, s, j);
				a->dout[s * od + j] = a->dpred[s * od + j] * a->rev_std[k];
			}
		}
	}
	return 0;
}

void
tf_model_loss_add(tf_model *m, const float *dpred)
{
	acts *a = A(m);
	int64_t S = tf_model_sequences(m), od = m->head.out_dim;

	for (int64_t s = 0; s < S; s++) {
		int64_t b = s / m->seq_per_window;
		for (int64_t j = 0; j < od; j++) {
			float scale = 1.0f;
			if (transforms_output(m))
				scale = a->rev_std[b * m->cfg.channels + out_channel(m, s, j)];
			a->dout[s * od + j] += dpred[s * od + j] * scale;
		}
	}
}

int
tf_model_results(tf_model *m, const float *target, float *results)
{
	acts *a = A(m);
	loom_head_io io = head_io(m, false);

	tf_model_predictions(m, a->pred);
	io.out = a->pred;
	io.target = target;
	return m->cfg.head_ops->predict(m->cfg.head_ctx, &io, results);
}

/* ------------------------------------------------------------------ backward */

void
tf_model_zero_grad(tf_model *m)
{
	memset(m->grads, 0, (size_t)m->n_params * sizeof *m->grads);
}

static void
zero(float *p, int64_t n)
{
	memset(p, 0, (size_t)n * sizeof *p);
}

int
tf_model_backward(tf_model *m)
{
	const tf_model_config *c = &m->cfg;
	acts *a = A(m);
	int64_t S = tf_model_sequences(m), T = m->tokens, D = c->d_model, F = c->ffn;
	int64_t H = c->heads, N = S * T;
	double p = drop_p(m);
	uint64_t seed = m->step_seed;
	loom_head_io io;
	int rv;

	if (c->form == TF_FORM_LINEAR) {
		lk_linear_backward(NULL, G(m, m->lin), G(m, m->lin + 1), a->dout, a->lin_in,
		                   P(m, m->lin), S, c->context * m->cin, m->head.out_dim, m->pool);
		return 0;
	}
	if (c->form == TF_FORM_MIXED)
		return LOOM_EINVAL; /* an average of fitted models is not trained */

	/* the head: dout → head grads, denc */
	zero(a->denc, N * D);
	io = head_io(m, m->training);
	if ((rv = c->head_ops->backward(c->head_ctx, &io)) != 0)
		return rv;

	/* final LayerNorm */
	{
		int fn = final_norm(m);
		const float *xl = c->layers ? a->layer[c->layers - 1].out : a->x0;
		zero(a->dres, N * D);
		lk_layernorm_backward(a->dres, G(m, fn), G(m, fn + 1), a->denc, xl, P(m, fn),
		                      a->enc_mean, a->enc_rstd, N, D, m->pool);
	}

	for (int64_t l = c->layers - 1; l >= 0; l--) {
		layer_acts *la = &a->layer[l];
		int base = layer_base(m, l);
		const float *xl = l ? a->layer[l - 1].out : a->x0;
		const float *dfcp = a->dres; /* out = res2 + drop(fcp): d(res2) keeps dres */

		/* feed-forward block */
		if (p > 0) {
			zero(a->dfcp, N * D);
			lk_dropout_backward(a->dfcp, a->dres, N * D, p, seed, stream(l, DS_FCP), m->pool);
			dfcp = a->dfcp;
		}
		zero(a->dfcg_d, N * F);
		lk_linear_backward(a->dfcg_d, G(m, base + L_FC2_W), G(m, base + L_FC2_B), dfcp,
		                   la->fcg_d, P(m, base + L_FC2_W), N, F, D, m->pool);
		const float *dfcg = a->dfcg_d;
		if (p > 0) {
			zero(a->dfcg, N * F);
			lk_dropout_backward(a->dfcg, a->dfcg_d, N * F, p, seed, stream(l, DS_FCG), m->pool);
			dfcg = a->dfcg;
		}
		zero(a->dfch, N * F);
		lk_gelu_backward(a->dfch, la->fch, dfcg, N * F, m->pool);
		zero(a->dln, N * D);
		lk_linear_backward(a->dln, G(m, base + L_FC1_W), G(m, base + L_FC1_B), a->dfch, la->ln2,
		                   P(m, base + L_FC1_W), N, D, F, m->pool);
		lk_layernorm_backward(a->dres, G(m, base + L_NORM2_W), G(m, base + L_NORM2_B), a->dln,
		                      la->res2, P(m, base + L_NORM2_W), la->ln2_mean, la->ln2_rstd, N,
		                      D, m->pool);

		/* attention block: res2 = x + drop(attp) */
		const float *dattp = a->dres;
		if (p > 0) {
			zero(a->dattp, N * D);
			lk_dropout_backward(a->dattp, a->dres, N * D, p, seed, stream(l, DS_ATTP), m->pool);
			dattp = a->dattp;
		}
		zero(a->datty, N * D);
		lk_linear_backward(a->datty, G(m, base + L_OUT_W), G(m, base + L_OUT_B), dattp, la->atty,
		                   P(m, base + L_OUT_W), N, D, D, m->pool);
		zero(a->dqkv, N * 3 * D);
		lk_attention_backward(a->dqkv, a->datt, a->datty, la->qkv, la->probs, S, T, D, H, p,
		                      seed, stream(l, DS_ATT), m->pool);
		zero(a->dln, N * D);
		lk_linear_backward(a->dln, G(m, base + L_QKV_W), G(m, base + L_QKV_B), a->dqkv, la->ln1,
		                   P(m, base + L_QKV_W), N, D, 3 * D, m->pool);
		lk_layernorm_backward(a->dres, G(m, base + L_NORM1_W), G(m, base + L_NORM1_B), a->dln,
		                      xl, P(m, base + L_NORM1_W), la->ln1_mean, la->ln1_rstd, N, D,
		                      m->pool);
	}

	/* embedding: x0 = drop(emb), emb = patches·W^T + b + pos */
	const float *demb = a->dres;
	if (p > 0) {
		zero(a->demb, N * D);
		lk_dropout_backward(a->demb, a->dres, N * D, p, seed, stream(-1, DS_EMB), m->pool);
		demb = a->demb;
	}
	if (!c->sinusoidal)
		lk_positions_backward(G(m, 2), demb, S, T, D);
	lk_linear_backward(NULL, G(m, 0), G(m, 1), demb, a->patches, P(m, 0), N,
	                   c->patch * m->cin, D, m->pool);
	return 0;
}

/* ------------------------------------------------------------------ optimizer */

double
tf_model_clip(tf_model *m, double max_norm)
{
	float *g = m->grads;
	int64_t size = m->n_params; /* padding between tensors holds zeros */
	return lk_clip_grad_norm(&g, &size, 1, max_norm);
}

void
tf_model_adamw(tf_model *m, double lr, double beta1, double beta2, double eps,
               double weight_decay, int64_t t)
{
	for (int i = 0; i < m->n_tensors; i++) {
		const tf_tensor *tt = &m->tensors[i];
		if (tt->flags & TF_BUFFER)
			continue;
		lk_adamw_update(m->params + tt->offset, m->grads + tt->offset, m->m + tt->offset,
		                m->v + tt->offset, tt->numel, lr, beta1, beta2, eps,
		                (tt->flags & TF_NO_DECAY) ? 0.0 : weight_decay, t, m->pool);
	}
}

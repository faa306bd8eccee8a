/* head-common — see head-common.h. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kernels/kernels.h"
#include "kernels/heads/head-common.h"

/* Limits that keep every size a BLAS int and every buffer addressable. */
#define DIM_MAX 0x7fffffffu                 /* one matrix dimension */
#define WEIGHT_MAX ((uint64_t)1 << 32)      /* proj.weight elements (16 GiB) */
#define ACTS_MAX ((uint64_t)1 << 40)        /* floats of one activation buffer */

/* ------------------------------------------------------------------ instance */

void
hc_init(hc_ctx *c, loom_instance *ins, const loom_host *host, uint32_t task)
{
	c->host = host;
	c->ins = ins;
	c->task = task;
	c->configured = false;
}

static void
free_names(char **names, uint32_t n)
{
	if (names == NULL)
		return;
	for (uint32_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

void
hc_fini(void *ctx)
{
	hc_ctx *c = ctx;
	free_names(c->class_names, c->classes);
	c->class_names = NULL;
	c->configured = false;
}

/* ------------------------------------------------------------------ options */

static const char *
task_name(uint32_t task)
{
	switch (task) {
	case LOOM_TASK_FORECAST: return "a forecast";
	case LOOM_TASK_REGRESSION: return "regression";
	case LOOM_TASK_CLASSIFICATION: return "classification";
	case LOOM_TASK_ANOMALY: return "anomaly detection";
	}
	return "this head";
}

static const char *
json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER:
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "something else";
}

/* A number option: absent keeps *out; 0 or LOOM_EINVAL. */
static int
number(const hc_ctx *c, const json_t *root, const char *key, double *out)
{
	const json_t *v = json_object_get(root, key);
	if (v == NULL)
		return 0;
	if (!json_is_number(v)) {
		hc_error(c, "configure: model.%s: expected a number, got %s", key, json_kind(v));
		return LOOM_EINVAL;
	}
	*out = json_number_value(v);
	return 0;
}

int
hc_options_parse(const hc_ctx *c, const char *text, hc_options *o)
{
	json_error_t jerr;
	json_t *root;
	const json_t *v;
	int rv = LOOM_EINVAL;

	o->dropout = 0.1;
	o->loss = c->task == LOOM_TASK_CLASSIFICATION ? HC_LOSS_CROSSENTROPY : HC_LOSS_MSE;
	o->huber_delta = 1.0;
	o->threshold_quantile = 0.99;
	if (text == NULL || text[0] == '\0')
		return 0;
	if ((root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		hc_error(c, "configure: the model options are not valid JSON: %s (line %d, column %d)",
		         jerr.text, jerr.line, jerr.column);
		return LOOM_EINVAL;
	}
	if (!json_is_object(root)) {
		hc_error(c, "configure: the model options must be a JSON object (the job spec's "
		            "model group), not %s",
		         json_kind(root));
		goto out;
	}
	if (number(c, root, "dropout", &o->dropout) != 0 ||
	    number(c, root, "huber_delta", &o->huber_delta) != 0 ||
	    number(c, root, "threshold_quantile", &o->threshold_quantile) != 0)
		goto out;
	if (!(o->dropout >= 0 && o->dropout < 1)) {
		hc_error(c, "configure: model.dropout: %g is not in [0, 1); use e.g. 0.1, or 0 for "
		            "none",
		         o->dropout);
		goto out;
	}
	if (!(o->huber_delta > 0) || !isfinite(o->huber_delta)) {
		hc_error(c, "configure: model.huber_delta: %g must be a positive number, e.g. 1.0",
		         o->huber_delta);
		goto out;
	}
	if (!(o->threshold_quantile >= 0 && o->threshold_quantile <= 1)) {
		hc_error(c, "configure: model.threshold_quantile: %g is not in [0, 1]; use e.g. 0.99",
		         o->threshold_quantile);
		goto out;
	}
	if ((v = json_object_get(root, "loss")) != NULL) {
		static const char *const names[] = {"mse", "mae", "huber", "crossentropy"};
		const char *s;
		int loss = -1;
		if (!json_is_string(v)) {
			hc_error(c, "configure: model.loss: expected a string, got %s", json_kind(v));
			goto out;
		}
		s = json_string_value(v);
		for (int i = 0; i < 4; i++) {
			if (strcmp(s, names[i]) == 0)
				loss = i;
		}
		if (loss < 0) {
			hc_error(c, "configure: model.loss: unknown loss \"%s\"; use mse, mae or huber "
			            "(crossentropy for classification)",
			         s);
			goto out;
		}
		if (c->task == LOOM_TASK_CLASSIFICATION && loss != HC_LOSS_CROSSENTROPY) {
			hc_error(c, "configure: model.loss: classification trains with crossentropy, "
			            "not %s",
			         s);
			goto out;
		}
		if (c->task == LOOM_TASK_ANOMALY && loss != HC_LOSS_MSE) {
			hc_error(c, "configure: model.loss: anomaly detection trains with mse (its score "
			            "is the mean squared reconstruction error), not %s",
			         s);
			goto out;
		}
		if (c->task != LOOM_TASK_CLASSIFICATION && loss == HC_LOSS_CROSSENTROPY) {
			hc_error(c, "configure: model.loss: crossentropy is for classification; %s "
			            "trains with mse, mae or huber",
			         task_name(c->task));
			goto out;
		}
		o->loss = loss;
	}
	rv = 0;
out:
	json_decref(root);
	return rv;
}

/* ------------------------------------------------------------------ configure */

int
hc_shape_begin(const hc_ctx *c, const loom_head_shape *s, hc_ctx *next)
{
	uint64_t in;

	if (s == NULL || s->size < offsetof(loom_head_shape, options) + sizeof s->options) {
		hc_error(c, "configure: the shape is missing or smaller (%u bytes) than this head "
		            "reads; rebuild the compute plugin against this <loom/head.h>",
		         s ? s->size : 0);
		return LOOM_EINVAL;
	}
	*next = *c;
	next->configured = false;
	next->class_names = NULL;
	next->classes = 0;
	if (s->max_sequences == 0) {
		hc_error(c, "configure: max_sequences is 0; the model must pass at least one "
		            "sequence per call (train.batch ≥ 1)");
		return LOOM_EINVAL;
	}
	if (s->tokens == 0) {
		hc_error(c, "configure: tokens is 0; model.context must hold at least one "
		            "model.patch");
		return LOOM_EINVAL;
	}
	if (s->d_model == 0) {
		hc_error(c, "configure: d_model is 0; use model.d_model ≥ 1");
		return LOOM_EINVAL;
	}
	in = (uint64_t)s->tokens * s->d_model;
	if (in > DIM_MAX) {
		hc_error(c, "configure: tokens × d_model = %llu is more than one linear layer takes "
		            "(2^31 − 1); use a larger model.patch or a smaller model.d_model",
		         (unsigned long long)in);
		return LOOM_EINVAL;
	}
	if ((uint64_t)s->max_sequences * in * 2 > ACTS_MAX) {
		hc_error(c, "configure: %u sequences of %llu floats are too many to keep; use a "
		            "smaller train.batch",
		         s->max_sequences, (unsigned long long)in);
		return LOOM_EINVAL;
	}
	next->max_sequences = s->max_sequences;
	next->tokens = s->tokens;
	next->d_model = s->d_model;
	next->in_dim = (int64_t)in;
	next->context = s->context;
	next->channels = s->channels;
	next->horizon = s->horizon;
	next->targets = s->targets;
	return hc_options_parse(c, s->options, &next->opt);
}

int
hc_layout(const hc_ctx *c, hc_ctx *next, uint32_t out_dim, uint32_t target_dim,
          uint32_t result_dim, uint32_t truth_dim, size_t extra_floats,
          loom_head_layout *layout)
{
	uint64_t numel = (uint64_t)out_dim * (uint64_t)next->in_dim;
	size_t block;
	loom_param_spec *w = &layout->params[HC_WEIGHT], *b = &layout->params[HC_BIAS];

	if (out_dim == 0 || out_dim > DIM_MAX || numel > WEIGHT_MAX) {
		hc_error(c, "configure: a %u × %lld projection is out of range (at most 2^32 "
		            "weights); use a smaller output or fewer tokens",
		         out_dim, (long long)next->in_dim);
		return LOOM_EINVAL;
	}
	block = next->opt.dropout > 0 ? 2 * (size_t)next->max_sequences * (size_t)next->in_dim : 0;

	memset(w, 0, sizeof *w);
	strcpy(w->name, "proj.weight");
	w->ndim = 2;
	w->dims[0] = out_dim;
	w->dims[1] = (uint32_t)next->in_dim;
	w->init = LOOM_INIT_FAN_IN;
	w->fan_in = (uint32_t)next->in_dim;
	memset(b, 0, sizeof *b);
	strcpy(b->name, "proj.bias");
	b->ndim = 1;
	b->dims[0] = out_dim;
	b->init = LOOM_INIT_FAN_IN;
	b->fan_in = (uint32_t)next->in_dim;
	b->flags = LOOM_PARAM_NO_DECAY;
	layout->n_params = 2;
	layout->act_floats = block + extra_floats;
	layout->out_dim = out_dim;
	layout->target_dim = target_dim;
	layout->result_dim = result_dim;
	layout->truth_dim = truth_dim;

	next->n_params = 2;
	next->out_dim = out_dim;
	next->target_dim = target_dim;
	next->result_dim = result_dim;
	next->truth_dim = truth_dim;
	next->act_extra = block;
	next->act_floats = block + extra_floats;
	return 0;
}

void
hc_commit(hc_ctx *c, hc_ctx *next)
{
	free_names(c->class_names, c->classes);
	*c = *next;
	c->configured = true;
	next->class_names = NULL;
}

void
hc_discard(hc_ctx *c, hc_ctx *next)
{
	(void)c;
	free_names(next->class_names, next->classes);
	next->class_names = NULL;
}

/* ------------------------------------------------------------------ calls */

int
hc_check_io(const hc_ctx *c, const loom_head_io *io, unsigned need, const char *op)
{
	static const struct {
		unsigned bit;
		const char *name;
		size_t offset;
	} bufs[] = {
		{HC_NEED_ENC, "enc", offsetof(loom_head_io, enc)},
		{HC_NEED_OUT, "out", offsetof(loom_head_io, out)},
		{HC_NEED_DOUT, "dout", offsetof(loom_head_io, dout)},
		{HC_NEED_TARGET, "target", offsetof(loom_head_io, target)},
		{HC_NEED_DENC, "denc", offsetof(loom_head_io, denc)},
		{HC_NEED_PARAMS, "params", offsetof(loom_head_io, params)},
		{HC_NEED_GRADS, "grads", offsetof(loom_head_io, grads)},
		{HC_NEED_ACTS, "acts", offsetof(loom_head_io, acts)},
	};

	if (!c->configured) {
		hc_error(c, "%s: called before configure succeeded", op);
		return LOOM_ESTATE;
	}
	if (io == NULL || io->size < offsetof(loom_head_io, seed) + sizeof io->seed) {
		hc_error(c, "%s: the io is missing or smaller (%u bytes) than this head reads", op,
		         io ? io->size : 0);
		return LOOM_EINVAL;
	}
	if (io->sequences > c->max_sequences) {
		hc_error(c, "%s: %u sequences, more than the %u the model was configured for", op,
		         io->sequences, c->max_sequences);
		return LOOM_EINVAL;
	}
	if (c->act_floats == 0)
		need &= ~(unsigned)HC_NEED_ACTS;
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
		const void *p;
		if (!(need & bufs[i].bit))
			continue;
		memcpy(&p, (const char *)io + bufs[i].offset, sizeof p);
		if (p == NULL) {
			hc_error(c, "%s: io.%s is NULL", op, bufs[i].name);
			return LOOM_EINVAL;
		}
	}
	for (uint32_t i = 0; i < c->n_params; i++) {
		if ((need & HC_NEED_PARAMS) && io->params[i] == NULL) {
			hc_error(c, "%s: io.params[%u] is NULL", op, i);
			return LOOM_EINVAL;
		}
		if ((need & HC_NEED_GRADS) && io->grads[i] == NULL) {
			hc_error(c, "%s: io.grads[%u] is NULL", op, i);
			return LOOM_EINVAL;
		}
	}
	return 0;
}

static bool
dropping(const hc_ctx *c, const loom_head_io *io)
{
	return io->training && c->opt.dropout > 0;
}

int
hc_forward(const hc_ctx *c, const loom_head_io *io)
{
	const float *x;
	int64_t S, n;
	int rv;

	if ((rv = hc_check_io(c, io, HC_NEED_ENC | HC_NEED_OUT | HC_NEED_PARAMS | HC_NEED_ACTS,
	                      "forward")) != 0)
		return rv;
	S = io->sequences;
	n = S * c->in_dim;
	x = io->enc;
	if (dropping(c, io)) {
		/* keep the dropped-out input for the weight gradient */
		lk_dropout_forward(io->acts, io->enc, n, c->opt.dropout, io->seed, HC_DROPOUT_STREAM,
		                   NULL);
		x = io->acts;
	}
	lk_linear_forward(io->out, x, io->params[HC_WEIGHT], io->params[HC_BIAS], S, c->in_dim,
	                  c->out_dim, NULL);
	return 0;
}

int
hc_backward(const hc_ctx *c, const loom_head_io *io)
{
	int64_t S, n;
	int rv;

	if ((rv = hc_check_io(c, io,
	                      HC_NEED_ENC | HC_NEED_DOUT | HC_NEED_DENC | HC_NEED_PARAMS |
	                          HC_NEED_GRADS | HC_NEED_ACTS,
	                      "backward")) != 0)
		return rv;
	S = io->sequences;
	n = S * c->in_dim;
	if (dropping(c, io)) {
		const float *x = io->acts;
		float *dx = io->acts + (size_t)c->max_sequences * (size_t)c->in_dim;
		memset(dx, 0, (size_t)n * sizeof *dx);
		lk_linear_backward(dx, io->grads[HC_WEIGHT], io->grads[HC_BIAS], io->dout, x,
		                   io->params[HC_WEIGHT], S, c->in_dim, c->out_dim, NULL);
		lk_dropout_backward(io->denc, dx, n, c->opt.dropout, io->seed, HC_DROPOUT_STREAM, NULL);
	} else {
		lk_linear_backward(io->denc, io->grads[HC_WEIGHT], io->grads[HC_BIAS], io->dout,
		                   io->enc, io->params[HC_WEIGHT], S, c->in_dim, c->out_dim, NULL);
	}
	return 0;
}

int
hc_predict_copy(const hc_ctx *c, const loom_head_io *io, float *results)
{
	int rv;

	if ((rv = hc_check_io(c, io, HC_NEED_OUT, "predict")) != 0)
		return rv;
	if (results == NULL && io->sequences > 0) {
		hc_error(c, "predict: results is NULL");
		return LOOM_EINVAL;
	}
	if (io->sequences > 0 && results != io->out)
		memmove(results, io->out, (size_t)io->sequences * c->out_dim * sizeof *results);
	return 0;
}

int
hc_regression_loss(const hc_ctx *c, const loom_head_io *io, double *loss)
{
	int64_t n;
	int rv;

	if ((rv = hc_check_io(c, io, HC_NEED_OUT | HC_NEED_DOUT | HC_NEED_TARGET, "loss")) != 0)
		return rv;
	n = (int64_t)io->sequences * c->out_dim;
	switch (c->opt.loss) {
	case HC_LOSS_MAE:
		*loss = lk_mae_forward(io->out, io->target, n);
		lk_mae_backward(io->dout, io->out, io->target, n, 1.0);
		break;
	case HC_LOSS_HUBER:
		*loss = lk_huber_forward(io->out, io->target, n, c->opt.huber_delta);
		lk_huber_backward(io->dout, io->out, io->target, n, c->opt.huber_delta, 1.0);
		break;
	case HC_LOSS_MSE:
		*loss = lk_mse_forward(io->out, io->target, n);
		lk_mse_backward(io->dout, io->out, io->target, n, 1.0);
		break;
	default:
		hc_error(c, "loss: loss %d is not one this head computes", c->opt.loss);
		return LOOM_EINTERNAL;
	}
	return 0;
}

/* ------------------------------------------------------------------ statistics */

double
hc_quantile(const double *sorted, size_t n, double q)
{
	double h, frac;
	size_t lo;

	if (n == 0)
		return NAN;
	if (q <= 0)
		return sorted[0];
	if (q >= 1)
		return sorted[n - 1];
	h = (double)(n - 1) * q;
	lo = (size_t)floor(h);
	if (lo >= n - 1)
		return sorted[n - 1];
	frac = h - (double)lo;
	return sorted[lo] + frac * (sorted[lo + 1] - sorted[lo]);
}

/* Inference on a trained model.  See predict.h. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <loom/compute.h>
#include <loom/head.h>
#include <loom/safetensors.h>
#include <loom/util.h>

#include "checkpoint.h"
#include "model.h"
#include "predict.h"
#include "spec.h"
#include "train.h"

typedef struct predictor {
	const loom_host *host;
	loom_instance *ins;
	char *path;                  /* the weights file */
	tf_spec spec;
	bool spec_up;
	const loom_head_ops *head;
	void *head_ctx;
	lk_pool *pool;
	int threads;               /* asked for by the instance; 0: the default */
	tf_model model;
	bool model_up;
	/* the data description of the weights' metadata */
	json_t *data;
	json_t *about;               /* the metadata's "model": kind, form, detail */
	int form;                    /* enum tf_form */
	int64_t n_in, n_out;
	double *in_shift, *in_scale, *out_shift, *out_scale;
	int64_t *target_in;          /* [n_out] input channel of each target, or -1 */
	float *x;                    /* [max_batch, context, n_in] normalized */
	float *res;                  /* [max_batch · seq_per_window, result_dim] */
	int64_t out_per_window;      /* floats of output per input window */
	/* uncertainty (forecast, regression) */
	int spread_method;           /* enum spread_method */
	double *res_rms;             /* [out_per_window] residual_scale's RMS, or NULL */
	int64_t n_rms;               /* its length as stored */
	int64_t res_windows;         /* validation windows it was measured on */
	float *passes;               /* [passes, out_per_window] MC-dropout scratch */
	int64_t passes_cap;
} predictor;

enum spread_method {
	SPREAD_NONE = 0,
	SPREAD_MC_DROPOUT = 1,
	SPREAD_RESIDUAL_SCALE = 2,
	SPREAD_PROBABILITIES = 3,    /* classification: the answer is its confidence */
	SPREAD_SCORE = 4,            /* anomaly: score and threshold */
};

#define DEFAULT_PASSES 16
#define DEFAULT_SEED UINT64_C(0x5eed5eed)

static void
say(const predictor *p, const char *fmt, ...) LOOM_PRINTF(2, 3);

static void
say(const predictor *p, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	p->host->log(p->ins, LOOM_LOG_ERROR, "%s", msg);
}

/* ------------------------------------------------------------------ opening */

static const char *
task_name(int task)
{
	switch (task) {
	case TF_TASK_FORECAST: return "forecast";
	case TF_TASK_REGRESSION: return "regression";
	case TF_TASK_CLASSIFICATION: return "classification";
	default: return "anomaly";
	}
}

/* An array of n numbers of the data description into a new double[n]. */
static double *
numbers(const json_t *data, const char *key, int64_t n)
{
	const json_t *a = json_object_get(data, key);
	double *v;

	if (!json_is_array(a) || (int64_t)json_array_size(a) != n)
		return NULL;
	if ((v = calloc((size_t)(n ? n : 1), sizeof *v)) == NULL)
		return NULL;
	for (int64_t i = 0; i < n; i++) {
		const json_t *e = json_array_get(a, (size_t)i);
		if (!json_is_number(e)) {
			free(v);
			return NULL;
		}
		v[i] = json_number_value(e);
	}
	return v;
}

static const char *
name_at(const json_t *data, const char *key, int64_t i)
{
	return json_string_value(json_array_get(json_object_get(data, key), (size_t)i));
}

/* The weights file of a model directory and its metadata's spec and data. */
static int
read_metadata(predictor *p, const char *model_dir, char **spec_text)
{
	static const char *const files[] = {"best.safetensors", "last.safetensors"};
	struct stat sb;
	char *buf = NULL, *err = NULL;
	size_t len = 0;
	loom_safetensors *f = NULL;
	const char *spec, *data;
	int rv;

	for (size_t i = 0; i < 2 && p->path == NULL; i++) {
		char *path = loom_strfmt("%s/%s", model_dir, files[i]);
		if (stat(path, &sb) == 0)
			p->path = path;
		else
			free(path);
	}
	if (p->path == NULL) {
		say(p, "model_open: %s has no best.safetensors or last.safetensors; give the output "
		       "directory of a completed training run",
		    model_dir);
		return LOOM_ENOENT;
	}
	if (loom_file_read(p->path, &buf, &len) != 0) {
		say(p, "model_open: cannot read %s: %s", p->path, strerror(errno));
		return LOOM_EIO;
	}
	if ((rv = loom_safetensors_decode(buf, len, p->path, &f, &err)) != 0) {
		say(p, "model_open: %s", err);
		goto out;
	}
	spec = loom_safetensors_meta_get(f, "spec");
	data = loom_safetensors_meta_get(f, "data");
	if (spec == NULL || data == NULL ||
	    (p->data = json_loads(data, 0, NULL)) == NULL || !json_is_object(p->data)) {
		say(p, "model_open: %s has no \"spec\" and \"data\" in its metadata; it was not "
		       "written by compute-transformer's training",
		    p->path);
		rv = LOOM_EINVAL;
		goto out;
	}
	/* which form the weights are (files before there were forms: the
	 * Transformer) */
	{
		const char *model = loom_safetensors_meta_get(f, "model");
		const char *form;
		p->form = TF_FORM_TRANSFORMER;
		p->about = model ? json_loads(model, 0, NULL) : json_pack("{s:s}", "kind", "transformer");
		form = json_string_value(json_object_get(p->about, "form"));
		if (form && strcmp(form, "linear") == 0)
			p->form = TF_FORM_LINEAR;
		else if (form && strcmp(form, "mixed") == 0)
			p->form = TF_FORM_MIXED;
		else if (form && strcmp(form, "transformer") != 0) {
			say(p, "model_open: %s holds a model of form \"%s\", which this version of "
			       "compute-transformer does not know; open it with the version that wrote it",
			    p->path, form);
			rv = LOOM_EINVAL;
			goto out;
		}
	}
	/* the validation residuals' scale (models trained since it is saved) */
	{
		const char *res = loom_safetensors_meta_get(f, "residuals");
		json_t *doc = res ? json_loads(res, 0, NULL) : NULL;
		const json_t *rms = json_object_get(doc, "rms");
		if (json_is_array(rms) && json_array_size(rms) > 0 &&
		    (p->res_rms = calloc(json_array_size(rms), sizeof *p->res_rms)) != NULL) {
			for (size_t i = 0; i < json_array_size(rms); i++)
				p->res_rms[i] = json_number_value(json_array_get(rms, i));
			p->res_windows = (int64_t)json_integer_value(json_object_get(doc, "windows"));
			p->n_rms = (int64_t)json_array_size(rms); /* checked in build_model */
		}
		json_decref(doc);
	}
	if ((*spec_text = strdup(spec)) == NULL)
		rv = LOOM_ENOMEM;
out:
	loom_safetensors_free(f);
	free(buf);
	free(err);
	return rv;
}

/* Channels and normalization from the data description. */
static int
read_data(predictor *p)
{
	const json_t *d = p->data;
	int64_t ni = (int64_t)json_array_size(json_object_get(d, "inputs"));
	int64_t no = (int64_t)json_array_size(json_object_get(d, "targets"));

	p->n_in = ni;
	p->n_out = no;
	p->in_shift = numbers(d, "input_shift", ni);
	p->in_scale = numbers(d, "input_scale", ni);
	p->out_shift = numbers(d, "target_shift", no);
	p->out_scale = numbers(d, "target_scale", no);
	p->target_in = calloc((size_t)(no ? no : 1), sizeof *p->target_in);
	if (ni < 1 || !p->in_shift || !p->in_scale || !p->out_shift || !p->out_scale ||
	    !p->target_in) {
		say(p, "model_open: %s: the data description in the metadata is incomplete (inputs, "
		       "targets and their shifts and scales)",
		    p->path);
		return LOOM_EINVAL;
	}
	for (int64_t k = 0; k < no; k++) {
		p->target_in[k] = -1;
		for (int64_t c = 0; c < ni; c++) {
			const char *a = name_at(d, "targets", k), *b = name_at(d, "inputs", c);
			if (a && b && strcmp(a, b) == 0)
				p->target_in[k] = c;
		}
	}
	return 0;
}

static int
build_model(predictor *p)
{
	const tf_spec *s = &p->spec;
	const json_t *classes = json_object_get(p->data, "classes");
	const char **class_names = NULL;
	tf_model_config mc;
	const void *ops;
	char *err = NULL, *opts;
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	int threads = p->threads > 0   ? p->threads
	              : s->threads > 0 ? (int)s->threads
	                               : (online > 0 ? (int)online : 1);
	int rv;

	if (p->host->instance_ops(p->ins, s->head, LOOM_KIND_HEAD, &ops, &p->head_ctx) != 0) {
		say(p, "model_open: %s needs the head plugin instance \"%s\", which is not started; "
		       "declare it in loomd.conf",
		    p->path, s->head);
		return LOOM_EINVAL;
	}
	p->head = ops;
	if ((p->pool = lk_pool_create(threads)) == NULL)
		return LOOM_ENOMEM;
	if (json_array_size(classes) > 0) {
		class_names = calloc(json_array_size(classes), sizeof *class_names);
		if (class_names == NULL)
			return LOOM_ENOMEM;
		for (size_t i = 0; i < json_array_size(classes); i++)
			class_names[i] = json_string_value(json_array_get(classes, i));
	}
	/* as train.c's setup, for evaluation */
	memset(&mc, 0, sizeof mc);
	mc.form = p->form;
	mc.channels = p->n_in;
	mc.context = s->context;
	mc.patch = s->patch;
	mc.d_model = s->d_model;
	mc.heads = s->heads;
	mc.layers = s->layers;
	mc.ffn = s->ffn;
	mc.dropout = s->dropout;
	mc.revin = s->revin;
	mc.channel_independent = s->channel_independent;
	mc.sinusoidal = s->positions == TF_POS_SINUSOIDAL;
	mc.residual_last = s->residual_last;
	mc.max_batch = s->batch;
	mc.head_ops = p->head;
	mc.head_ctx = p->head_ctx;
	mc.horizon = s->task == TF_TASK_FORECAST ? s->horizon : 0;
	mc.targets = p->n_out;
	mc.classes = (int64_t)json_array_size(classes);
	mc.class_names = class_names;
	mc.target_in = p->target_in;
	opts = json_dumps(json_object_get(s->doc, "model"), JSON_COMPACT);
	mc.options = opts;
	rv = tf_model_build(&p->model, &mc, p->pool, &err);
	free(opts);
	free(class_names);
	p->model.cfg.options = NULL;
	p->model.cfg.class_names = NULL;
	if (rv != 0) {
		say(p, "model_open: %s: %s", p->path, err ? err : loom_strerror(rv));
		free(err);
		return rv;
	}
	p->model_up = true;
	if ((rv = tf_weights_load(p->path, &p->model, NULL, &err)) != 0) {
		say(p, "model_open: %s", err ? err : loom_strerror(rv));
		free(err);
		return rv;
	}
	{
		int64_t S = s->batch * p->model.seq_per_window;
		p->x = calloc((size_t)(s->batch * s->context * p->n_in), sizeof *p->x);
		p->res = calloc((size_t)(S * p->model.head.result_dim + 1), sizeof *p->res);
		if (!p->x || !p->res)
			return LOOM_ENOMEM;
	}
	switch (s->task) {
	case TF_TASK_FORECAST: p->out_per_window = s->horizon * p->n_out; break;
	case TF_TASK_REGRESSION: p->out_per_window = p->n_out; break;
	case TF_TASK_CLASSIFICATION: p->out_per_window = mc.classes; break;
	default: p->out_per_window = 1; break;
	}
	/* how the uncertainty is told (docs/inference.md) */
	if (p->res_rms && p->n_rms != p->out_per_window) {
		free(p->res_rms); /* not this model's shape: unusable */
		p->res_rms = NULL;
	}
	if (s->task == TF_TASK_CLASSIFICATION)
		p->spread_method = SPREAD_PROBABILITIES;
	else if (s->task == TF_TASK_ANOMALY)
		p->spread_method = SPREAD_SCORE;
	else if (p->form != TF_FORM_LINEAR && s->dropout > 0)
		p->spread_method = SPREAD_MC_DROPOUT;
	else if (p->res_rms)
		p->spread_method = SPREAD_RESIDUAL_SCALE;
	else
		p->spread_method = SPREAD_NONE;
	return 0;
}

static json_t *
strings_of(const json_t *data, const char *key)
{
	const json_t *a = json_object_get(data, key);
	return a ? json_deep_copy(a) : json_array();
}

/* info's "uncertainty": how predict_spread tells a prediction's doubt. */
static json_t *
describe_spread(const predictor *p)
{
	switch (p->spread_method) {
	case SPREAD_MC_DROPOUT:
		return json_pack("{s:s, s:i, s:f, s:s}", "method", "mc_dropout", "passes",
		                 DEFAULT_PASSES, "dropout", p->spec.dropout, "meaning",
		                 "the sample standard deviation of the passes with dropout active at "
		                 "the trained rate, per output value, in original units; a window's "
		                 "passes are seeded, so the same window gives the same spread");
	case SPREAD_RESIDUAL_SCALE:
		return json_pack("{s:s, s:I, s:s}", "method", "residual_scale", "windows",
		                 (json_int_t)p->res_windows, "meaning",
		                 "the RMS of the validation residuals relative to each window's scale "
		                 "(the target channel's standard deviation over the window, as RevIN "
		                 "measures it), times this window's scale, per output value, in "
		                 "original units");
	case SPREAD_PROBABILITIES:
		return json_pack("{s:s, s:s}", "method", "class_probabilities", "meaning",
		                 "the output is the probability of each class");
	case SPREAD_SCORE:
		return json_pack("{s:s, s:s}", "method", "score_threshold", "meaning",
		                 "the output is the anomaly score; compare it with output.threshold");
	default:
		return json_pack("{s:s, s:s}", "method", "none", "meaning",
		                 "trained with dropout 0 before residuals were saved: retrain it for "
		                 "an uncertainty");
	}
}

/* What model_open tells the caller about inputs and outputs. */
static char *
describe(const predictor *p)
{
	const tf_spec *s = &p->spec;
	json_t *in, *out, *info;
	char *text, *copy;

	in = json_pack("{s:[s, I, I], s:s, s:o, s:s, s:s}", "shape", "batch", (json_int_t)s->context,
	               (json_int_t)p->n_in, "dtype", "f32", "channels",
	               strings_of(p->data, "inputs"), "units",
	               "original: the raw values of these data columns, oldest step first",
	               "normalize", json_string_value(json_object_get(json_object_get(s->doc, "data"),
	                                                              "normalize")));
	switch (s->task) {
	case TF_TASK_FORECAST:
		out = json_pack("{s:[s, I, I], s:o, s:s}", "shape", "batch", (json_int_t)s->horizon,
		                (json_int_t)p->n_out, "targets", strings_of(p->data, "targets"),
		                "meaning", "the next horizon steps of each target, in original units");
		break;
	case TF_TASK_REGRESSION:
		out = json_pack("{s:[s, I], s:o, s:s}", "shape", "batch", (json_int_t)p->n_out,
		                "targets", strings_of(p->data, "targets"), "meaning",
		                "each target at the window's last step, in original units");
		break;
	case TF_TASK_CLASSIFICATION:
		out = json_pack("{s:[s, I], s:o, s:s}", "shape", "batch",
		                (json_int_t)p->out_per_window, "classes",
		                strings_of(p->data, "classes"), "meaning",
		                "the probability of each class at the window's last step");
		break;
	default: {
		const tf_tensor *t = tf_model_tensor(&p->model, "head.threshold");
		double thr = t ? p->model.params[t->offset] : NAN;
		out = json_pack("{s:[s], s:s, s:f}", "shape", "batch", "meaning",
		                "anomaly score: the mean squared reconstruction error of the window in "
		                "normalized units; a window scoring above threshold is anomalous",
		                "threshold", isfinite(thr) ? thr : 0.0);
		break;
	}
	}
	json_object_set_new(out, "dtype", json_string("f32"));
	info = json_pack("{s:s, s:s, s:s, s:O, s:o, s:o}", "weights", p->path, "task",
	                 task_name(s->task), "head", s->head, "model",
	                 p->about ? p->about : json_null(), "input", in, "output", out);
	json_object_set_new(info, "uncertainty", describe_spread(p));
	json_object_set_new(info, "threads", json_integer(lk_pool_threads(p->pool)));
	text = json_dumps(info, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(info);
	if (text == NULL)
		return NULL;
	copy = p->host->alloc(strlen(text) + 1);
	if (copy)
		strcpy(copy, text);
	free(text);
	return copy;
}

void
tf_model_close(void *model)
{
	predictor *p = model;

	if (p == NULL)
		return;
	if (p->model_up)
		tf_model_free(&p->model);
	lk_pool_destroy(p->pool);
	if (p->spec_up)
		tf_spec_free(&p->spec);
	json_decref(p->data);
	json_decref(p->about);
	free(p->path);
	free(p->in_shift);
	free(p->in_scale);
	free(p->out_shift);
	free(p->out_scale);
	free(p->target_in);
	free(p->x);
	free(p->res);
	free(p->res_rms);
	free(p->passes);
	free(p);
}

int
tf_model_open(const loom_host *host, loom_instance *ins, const char *model_dir, int threads,
              void **model, char **info_json)
{
	predictor *p = calloc(1, sizeof *p);
	tf_head_lookup hl = {host, ins};
	char *spec_text = NULL, *err = NULL;
	int rv;

	if (p == NULL)
		return LOOM_ENOMEM;
	p->host = host;
	p->ins = ins;
	p->threads = threads;
	if (model_dir == NULL || model == NULL) {
		say(p, "model_open: no model directory given");
		rv = LOOM_EINVAL;
		goto fail;
	}
	if ((rv = read_metadata(p, model_dir, &spec_text)) != 0)
		goto fail;
	if ((rv = tf_spec_parse(spec_text, p->path, tf_head_task, &hl, &p->spec, &err)) != 0) {
		say(p, "model_open: the spec stored in %s is not valid here: %s", p->path,
		    err ? err : loom_strerror(rv));
		goto fail;
	}
	p->spec_up = true;
	if ((rv = read_data(p)) != 0 || (rv = build_model(p)) != 0)
		goto fail;
	if (info_json && (*info_json = describe(p)) == NULL) {
		rv = LOOM_ENOMEM;
		goto fail;
	}
	free(spec_text);
	*model = p;
	return 0;
fail:
	free(spec_text);
	free(err);
	tf_model_close(p);
	return rv;
}

/* ------------------------------------------------------------------ predicting */

static int
check_input(const predictor *p, const loom_tensor *in)
{
	const tf_spec *s = &p->spec;

	if (in == NULL || in->dtype != LOOM_DTYPE_F32 || in->ndim != 3 || in->data == NULL ||
	    in->dims[0] < 1 || in->dims[1] != s->context || in->dims[2] != p->n_in ||
	    in->nbytes != (size_t)(in->dims[0] * in->dims[1] * in->dims[2]) * sizeof(float)) {
		char got[96] = "nothing";
		if (in && in->ndim <= LOOM_TENSOR_MAX_DIMS) {
			int n = snprintf(got, sizeof got, "%s [", in->dtype == LOOM_DTYPE_F32 ? "f32"
			                                                                    : "not f32");
			for (uint32_t i = 0; i < in->ndim && n < (int)sizeof got - 24; i++)
				n += snprintf(got + n, sizeof got - (size_t)n, "%s%lld", i ? ", " : "",
				              (long long)in->dims[i]);
			snprintf(got + n, sizeof got - (size_t)n, "]%s", in->data ? "" : " without data");
		}
		say(p, "predict: the input must be f32 [batch ≥ 1, %lld, %lld] (windows of %lld steps "
		       "of the %lld input channels, see info_json); got %s",
		    (long long)s->context, (long long)p->n_in, (long long)s->context,
		    (long long)p->n_in, got);
		return LOOM_EINVAL;
	}
	return 0;
}

/* Windows [at, at+n) of raw into p->x, normalized as the training data. */
static int
normalize(predictor *p, const float *raw, int64_t at, int64_t n)
{
	int64_t L = p->spec.context, C = p->n_in;

	for (int64_t b = 0; b < n; b++)
		for (int64_t l = 0; l < L; l++)
			for (int64_t c = 0; c < C; c++) {
				double v = raw[((at + b) * L + l) * C + c];
				if (!isfinite(v)) {
					say(p, "predict: window %lld, step %lld, channel \"%s\" is %g; the "
					       "model needs finite values (fill gaps first)",
					    (long long)(at + b), (long long)l,
					    name_at(p->data, "inputs", c), v);
					return LOOM_EINVAL;
				}
				p->x[(b * L + l) * C + c] =
					(float)((v - p->in_shift[c]) / p->in_scale[c]);
			}
	return 0;
}

/* The head's results of n windows into out (out_per_window floats each),
 * in original units, as train.c's to_original_units. */
static void
to_output(const predictor *p, int64_t n, float *out)
{
	const tf_spec *s = &p->spec;
	int64_t rd = p->model.head.result_dim, K = p->n_out, H = s->horizon;

	for (int64_t b = 0; b < n; b++) {
		float *o = out + b * p->out_per_window;
		switch (s->task) {
		case TF_TASK_FORECAST:
			for (int64_t h = 0; h < H; h++)
				for (int64_t k = 0; k < K; k++) {
					float v = s->channel_independent
					                  ? p->res[(b * p->n_in + p->target_in[k]) * H + h]
					                  : p->res[b * rd + h * K + k];
					o[h * K + k] = (float)(v * p->out_scale[k] + p->out_shift[k]);
				}
			break;
		case TF_TASK_REGRESSION:
			for (int64_t k = 0; k < K; k++)
				o[k] = (float)(p->res[b * rd + k] * p->out_scale[k] + p->out_shift[k]);
			break;
		default: /* class probabilities, anomaly scores */
			memcpy(o, p->res + b * rd, (size_t)p->out_per_window * sizeof *o);
			break;
		}
	}
}

int
tf_predict(void *model, const loom_tensor *input, loom_tensor *output)
{
	predictor *p = model;
	const tf_spec *s;
	int64_t B, step;
	float *out;
	int rv;

	if (p == NULL || output == NULL)
		return LOOM_EINVAL;
	memset(output, 0, sizeof *output);
	s = &p->spec;
	if ((rv = check_input(p, input)) != 0)
		return rv;
	B = input->dims[0];
	output->dtype = LOOM_DTYPE_F32;
	output->dims[0] = B;
	switch (s->task) {
	case TF_TASK_FORECAST:
		output->ndim = 3;
		output->dims[1] = s->horizon;
		output->dims[2] = p->n_out;
		break;
	case TF_TASK_ANOMALY:
		output->ndim = 1;
		break;
	default:
		output->ndim = 2;
		output->dims[1] = p->out_per_window;
		break;
	}
	output->nbytes = (size_t)(B * p->out_per_window) * sizeof(float);
	if ((out = p->host->tensor_alloc(output->nbytes)) == NULL)
		return LOOM_ENOMEM;
	step = s->batch;
	for (int64_t at = 0; at < B; at += step) {
		int64_t n = B - at < step ? B - at : step;
		if ((rv = normalize(p, input->data, at, n)) != 0 ||
		    (rv = tf_model_forward(&p->model, p->x, n, false, 0)) != 0 ||
		    (rv = tf_model_results(&p->model, s->task == TF_TASK_ANOMALY ? p->x : NULL,
		                           p->res)) != 0) {
			p->host->tensor_free(out);
			return rv;
		}
		to_output(p, n, out + at * p->out_per_window);
	}
	output->data = out;
	return 0;
}

/* ------------------------------------------------------------------ uncertainty */

double
tf_window_scale(const float *x, int64_t L, int64_t C, int64_t channel)
{
	double var_sum = 0;
	int64_t c0 = channel >= 0 ? channel : 0, c1 = channel >= 0 ? channel + 1 : C;

	for (int64_t c = c0; c < c1; c++) {
		double mean = 0, ss = 0;
		for (int64_t l = 0; l < L; l++)
			mean += x[l * C + c];
		mean /= (double)L;
		for (int64_t l = 0; l < L; l++) {
			double d = x[l * C + c] - mean;
			ss += d * d;
		}
		var_sum += ss / (double)L;
	}
	return sqrt(var_sum / (double)(c1 - c0) + 1e-5);
}

/* The output value j of a window: its target. */
static int64_t
target_of(const predictor *p, int64_t j)
{
	return j % p->n_out; /* forecast [h, k] and regression [k] alike */
}

/* "passes" and "seed" of the options. */
static int
spread_options(const predictor *p, const char *options_json, int64_t *passes, uint64_t *seed)
{
	json_t *o = options_json && *options_json ? json_loads(options_json, 0, NULL) : NULL;
	const json_t *k = json_object_get(o, "passes"), *sd = json_object_get(o, "seed");
	int rv = 0;

	*passes = DEFAULT_PASSES;
	*seed = DEFAULT_SEED;
	if (options_json && *options_json && !json_is_object(o)) {
		say(p, "predict: the options \"%s\" are not a JSON object; give {\"passes\": K, "
		       "\"seed\": S}",
		    options_json);
		rv = LOOM_EINVAL;
	} else if (k && (!json_is_integer(k) || json_integer_value(k) < 2 ||
	                 json_integer_value(k) > 1024)) {
		say(p, "predict: options.passes must be a whole number from 2 to 1024 (the "
		       "Monte-Carlo-dropout passes)");
		rv = LOOM_EINVAL;
	} else if (sd && (!json_is_integer(sd) || json_integer_value(sd) < 0)) {
		say(p, "predict: options.seed must be a whole number ≥ 0");
		rv = LOOM_EINVAL;
	} else {
		if (k)
			*passes = json_integer_value(k);
		if (sd)
			*seed = (uint64_t)json_integer_value(sd);
	}
	json_decref(o);
	return rv;
}

/* K passes of window b with dropout on into p->passes [K, out_per_window]:
 * the window copied into up to max_batch rows, one forward per group of
 * rows, each group under its own seed.  Rows always start at 0, so the
 * masks a window meets depend on nothing but the seed and K. */
static int
mc_passes(predictor *p, const float *raw, int64_t b, int64_t K, uint64_t seed)
{
	int64_t G = K < p->spec.batch ? K : p->spec.batch, win = p->spec.context * p->n_in;
	int rv;

	if ((rv = normalize(p, raw, b, 1)) != 0)
		return rv;
	for (int64_t r = 1; r < G; r++)
		memcpy(p->x + r * win, p->x, (size_t)win * sizeof *p->x);
	for (int64_t at = 0, g = 0; at < K; at += G, g++) {
		int64_t n = K - at < G ? K - at : G;
		if ((rv = tf_model_forward(&p->model, p->x, n, true, lk_rand_u64(seed, 0x6d63, g))) != 0 ||
		    (rv = tf_model_results(&p->model, NULL, p->res)) != 0)
			return rv;
		to_output(p, n, p->passes + at * p->out_per_window);
	}
	return 0;
}

int
tf_predict_spread(void *model, const loom_tensor *input, loom_tensor *output,
                  loom_tensor *spread, const char *options_json)
{
	predictor *p = model;
	int64_t K, B, J;
	uint64_t seed;
	float *sp = NULL;
	int rv;

	if (p == NULL || output == NULL || spread == NULL)
		return LOOM_EINVAL;
	memset(output, 0, sizeof *output);
	memset(spread, 0, sizeof *spread);
	if ((rv = spread_options(p, options_json, &K, &seed)) != 0)
		return rv;
	if (p->spread_method == SPREAD_NONE) {
		say(p, "predict: %s was trained with dropout 0 before validation residuals were saved "
		       "with the weights, so it cannot tell an uncertainty; retrain it",
		    p->path);
		return LOOM_ENOTSUP;
	}
	/* the prediction: the deterministic pass, as predict */
	if ((rv = tf_predict(p, input, output)) != 0)
		return rv;
	if (p->spread_method == SPREAD_PROBABILITIES || p->spread_method == SPREAD_SCORE)
		return 0;
	B = input->dims[0];
	J = p->out_per_window;
	*spread = *output;
	spread->data = NULL;
	if ((sp = p->host->tensor_alloc(output->nbytes)) == NULL) {
		rv = LOOM_ENOMEM;
		goto fail;
	}
	if (p->spread_method == SPREAD_RESIDUAL_SCALE) {
		for (int64_t b = 0; b < B; b++) {
			if ((rv = normalize(p, input->data, b, 1)) != 0)
				goto fail;
			for (int64_t j = 0; j < J; j++) {
				int64_t k = target_of(p, j);
				double s = tf_window_scale(p->x, p->spec.context, p->n_in, p->target_in[k]);
				sp[b * J + j] = (float)(p->res_rms[j] * s * p->out_scale[k]);
			}
		}
	} else {
		if (p->passes_cap < K) {
			free(p->passes);
			p->passes_cap = 0;
			if ((p->passes = calloc((size_t)(K * J), sizeof *p->passes)) == NULL) {
				rv = LOOM_ENOMEM;
				goto fail;
			}
			p->passes_cap = K;
		}
		for (int64_t b = 0; b < B; b++) {
			if ((rv = mc_passes(p, input->data, b, K, seed)) != 0)
				goto fail;
			for (int64_t j = 0; j < J; j++) {
				double mean = 0, ss = 0;
				for (int64_t i = 0; i < K; i++)
					mean += p->passes[i * J + j];
				mean /= (double)K;
				for (int64_t i = 0; i < K; i++) {
					double d = p->passes[i * J + j] - mean;
					ss += d * d;
				}
				sp[b * J + j] = (float)sqrt(ss / (double)(K - 1));
			}
		}
	}
	spread->data = sp;
	return 0;
fail:
	if (sp)
		p->host->tensor_free(sp);
	p->host->tensor_free(output->data);
	memset(output, 0, sizeof *output);
	memset(spread, 0, sizeof *spread);
	return rv;
}

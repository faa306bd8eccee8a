/* The training loop.  See train.h. */
#include "config.h"

#include <dirent.h>
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
#include <loom/util.h>

#include "checkpoint.h"
#include "data.h"
#include "model.h"
#include "predict.h"
#include "spec.h"
#include "run.h"
#include "train.h"

/* RNG streams (kernels' counter-based generator). */
#define STREAM_STEP 0x5eedULL    /* per-step dropout seeds */
#define STREAM_SHUFFLE 0x5f1eULL /* + epoch: the epoch's shuffle */
#define KEEP_CHECKPOINTS 3


/* ------------------------------------------------------------------ messages */

void
say(const run *r, int level, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (r->job && r->job->log)
		r->job->log(r->job, level, msg);
	else if (r->host)
		r->host->log(r->ins, level, "%s", msg);
}

/* ------------------------------------------------------------------ the spec */

int
tf_head_task(void *arg, const char *name)
{
	tf_head_lookup *h = arg;
	const void *ops;
	void *ctx;

	if (h->host->instance_ops(h->ins, name, LOOM_KIND_HEAD, &ops, &ctx) != 0)
		return 0;
	switch (((const loom_head_ops *)ops)->task) {
	case LOOM_TASK_FORECAST: return TF_TASK_FORECAST;
	case LOOM_TASK_REGRESSION: return TF_TASK_REGRESSION;
	case LOOM_TASK_CLASSIFICATION: return TF_TASK_CLASSIFICATION;
	case LOOM_TASK_ANOMALY: return TF_TASK_ANOMALY;
	}
	return 0;
}

int
tf_validate(const loom_host *host, loom_instance *ins, const char *spec_json, char **error)
{
	tf_head_lookup hl = {host, ins};
	tf_spec spec;
	char *err = NULL;
	int rv = tf_spec_parse(spec_json, "spec", tf_head_task, &hl, &spec, &err);

	if (rv == 0) {
		tf_spec_free(&spec);
		return 0;
	}
	if (error && err) {
		*error = host->alloc(strlen(err) + 1);
		if (*error)
			strcpy(*error, err);
	}
	free(err);
	return rv;
}

/* ------------------------------------------------------------------ set-up */

/* mkdir -p dir; 0 or the errno value. */
static int
mkdir_errno(const char *dir)
{
	return loom_mkdir_p(dir, 0755) == 0 ? 0 : errno;
}

/* Replace path with text atomically; 0 or the errno value. */
static int
write_text(const char *path, const char *text)
{
	if (text == NULL)
		return ENOMEM;
	return loom_file_write_atomic(path, text, strlen(text), 0644) == 0 ? 0 : errno;
}

bool
tf_load_stop_requested(void *arg)
{
	tf_load_control *lc = arg;
	if (lc->job == NULL || lc->job->control == NULL)
		return false;
	lc->answer = lc->job->control(lc->job);
	return lc->answer != LOOM_CONTROL_RUN;
}

/* The data file: a path, or "<storage-instance>:<key>" resolved to a local
 * file through the host. */
static int
open_data(run *r, char **err)
{
	const char *path = r->spec.path;
	char *local = NULL;
	tf_load_control lc = {r->job, LOOM_CONTROL_RUN};
	tf_stop stop = {tf_load_stop_requested, &lc};
	int rv;

	if (path[0] != '/' && strchr(path, ':') != NULL) {
		rv = r->host->storage_path(r->ins, path, &local);
		if (rv != 0) {
			*err = loom_strfmt("data.path: cannot open \"%s\" through its storage plugin: %s; "
			                    "check the instance name and the key",
			                    path, loom_strerror(rv));
			return LOOM_EINVAL;
		}
		path = local;
	}
	rv = tf_csv_read(path, &stop, &r->table, err);
	if (local)
		r->host->free(local);
	if (rv == LOOM_ECANCELED && lc.answer == LOOM_CONTROL_PAUSE) {
		/* nothing to checkpoint yet: the next attempt starts afresh */
		free(*err);
		*err = NULL;
		say(r, LOOM_LOG_INFO, "paused while reading the data (no step taken, no checkpoint)");
		return LOOM_EPAUSED;
	}
	if (rv == LOOM_ECANCELED) {
		free(*err);
		*err = NULL;
		say(r, LOOM_LOG_INFO, "cancelled while reading the data");
		return rv;
	}
	if (rv != 0)
		return rv;
	return tf_dataset_build(&r->table, &r->spec.data, &r->ds, err);
}

static json_t *
names_json(char **names, int64_t n)
{
	json_t *a = json_array();
	for (int64_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(names[i]));
	return a;
}

static json_t *
doubles_json(const double *v, int64_t n)
{
	json_t *a = json_array();
	for (int64_t i = 0; i < n; i++)
		json_array_append_new(a, json_real(v[i]));
	return a;
}

/* What a model file needs to be used later: the spec, the channels, the
 * normalization and the classes. */
static json_t *
make_info(const run *r)
{
	const tf_dataset *ds = &r->ds;
	json_t *data = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:I}", "inputs",
	                         names_json(ds->in_names, ds->n_in), "targets",
	                         names_json(ds->out_names, ds->n_out), "input_shift",
	                         doubles_json(ds->in_shift, ds->n_in), "input_scale",
	                         doubles_json(ds->in_scale, ds->n_in), "target_shift",
	                         doubles_json(ds->out_shift, ds->n_out), "target_scale",
	                         doubles_json(ds->out_scale, ds->n_out), "season",
	                         (json_int_t)ds->season);
	if (ds->n_classes > 0)
		json_object_set_new(data, "classes", names_json(ds->class_names, ds->n_classes));
	return json_pack("{s:O, s:o, s:s, s:I, s:o}", "spec", r->spec.doc, "data", data, "head",
	                 r->spec.head, "parameters", (json_int_t)r->model.n_params, "model",
	                 model_info(&r->model,
	                            r->model.cfg.form == TF_FORM_LINEAR
	                                ? (r->spec.kind == TF_KIND_NAIVE ? "naive" : "linear")
	                                : "transformer",
	                            NULL));
}

static const char *
form_name(int form)
{
	switch (form) {
	case TF_FORM_LINEAR: return "linear";
	case TF_FORM_MIXED: return "mixed";
	default: return "transformer";
	}
}

json_t *
model_info(const tf_model *m, const char *kind, json_t *detail)
{
	json_t *o = json_pack("{s:s, s:s}", "kind", kind, "form", form_name(m->cfg.form));
	if (detail)
		json_object_set(o, "detail", detail);
	return o;
}

int
build_form(run *r, int form, tf_model *m, char **err)
{
	tf_model_config mc = r->mc;
	mc.form = form;
	/* the same shape (max_batch included): the head instance serves the
	 * model built last, and every model here takes train.batch windows */
	mc.options = r->model_options;
	return tf_model_build(m, &mc, r->pool, err);
}

/* Does the run train with AdamW?  Not a ridge fit or a naive model. */
static bool
trains(const run *r)
{
	return r->spec.kind == TF_KIND_AUTO || r->spec.kind == TF_KIND_TRANSFORMER ||
	       (r->spec.kind == TF_KIND_LINEAR && r->spec.linear_fit == TF_FIT_TRAIN);
}

static int
setup(run *r, char **err)
{
	const tf_spec *s = &r->spec;
	tf_dataset *ds = &r->ds;
	tf_model_config mc;
	const void *ops;
	int64_t threads;
	int rv;

	r->batch = s->batch;
	if ((rv = tf_incr_prepare(r, err)) != 0 || (rv = open_data(r, err)) != 0 ||
	    (rv = tf_incr_check_data(r, err)) != 0)
		return rv;
	say(r, LOOM_LOG_INFO,
	    "data: %lld rows, %lld channels; windows: %lld train, %lld validation, %lld test",
	    (long long)ds->rows, (long long)ds->n_in, (long long)ds->n_windows[0],
	    (long long)ds->n_windows[1], (long long)ds->n_windows[2]);
	{
		/* A batch of more windows than any split has takes every window at
		 * once, in training and in evaluation alike: clamping it to the
		 * most windows a split has changes no result, only the memory the
		 * model is sized for (1,048,576 on 400 rows took 9 GB). */
		int64_t most = ds->n_windows[0];
		for (int k = 1; k < 3; k++)
			most = ds->n_windows[k] > most ? ds->n_windows[k] : most;
		if (most > 0 && r->batch > most) {
			say(r, LOOM_LOG_WARN,
			    "train.batch is %lld, more windows than the data has (train %lld, validation "
			    "%lld, test %lld): batches hold at most %lld windows, one training step per "
			    "epoch",
			    (long long)r->batch, (long long)ds->n_windows[0], (long long)ds->n_windows[1],
			    (long long)ds->n_windows[2], (long long)most);
			r->batch = most;
		}
	}

	if (r->host->instance_ops(r->ins, s->head, LOOM_KIND_HEAD, &ops, &r->head_ctx) != 0) {
		*err = loom_strfmt("model.head: no head plugin instance \"%s\"", s->head);
		return LOOM_EINVAL;
	}
	r->head = ops;

	/* where each target lives among the inputs */
	r->target_in = calloc((size_t)(ds->n_out ? ds->n_out : 1), sizeof *r->target_in);
	if (r->target_in == NULL)
		return LOOM_ENOMEM;
	{
		/* the table's column of each input, looked up by name: linear
		 * where comparing every target with every input was not */
		int64_t *in_of_col = malloc((r->table.n_cols ? r->table.n_cols : 1) * sizeof *in_of_col);
		if (in_of_col == NULL)
			return LOOM_ENOMEM;
		for (size_t c = 0; c < r->table.n_cols; c++)
			in_of_col[c] = -1;
		for (int64_t c = 0; c < ds->n_in; c++) {
			int col = tf_table_column(&r->table, ds->in_names[c]);
			if (col >= 0 && in_of_col[col] < 0)
				in_of_col[col] = c;
		}
		for (int64_t k = 0; k < ds->n_out; k++) {
			int col = tf_table_column(&r->table, ds->out_names[k]);
			r->target_in[k] = col >= 0 ? in_of_col[col] : -1;
		}
		free(in_of_col);
	}
	for (int64_t k = 0; k < ds->n_out; k++) {
		if (r->target_in[k] < 0 && s->residual_last && s->task == TF_TASK_FORECAST) {
			*err = loom_strfmt("model.residual: the target \"%s\" is not among the input "
			                    "channels, so there is no last value to add; add it to "
			                    "data.features or set residual = \"none\"",
			                    ds->out_names[k]);
			return LOOM_EINVAL;
		}
		if (r->target_in[k] < 0 && s->revin && s->task == TF_TASK_FORECAST) {
			*err = loom_strfmt("model.revin: the target \"%s\" is not among the input "
			                    "channels, so its forecast cannot be mapped back; add it to "
			                    "data.features or set revin = false",
			                    ds->out_names[k]);
			return LOOM_EINVAL;
		}
	}

	threads = r->job->threads > 0 ? r->job->threads : 1;
	if (s->threads > 0 && s->threads < threads)
		threads = s->threads;
	if ((r->pool = lk_pool_create((int)threads)) == NULL) {
		*err = strdup("cannot start the compute threads");
		return LOOM_ENOMEM;
	}

	memset(&mc, 0, sizeof mc);
	/* linear and naive runs fit a linear map; auto trains the Transformer
	 * first and fits the others after it */
	mc.form = s->kind == TF_KIND_LINEAR || s->kind == TF_KIND_NAIVE ? TF_FORM_LINEAR
	                                                                : TF_FORM_TRANSFORMER;
	mc.channels = ds->n_in;
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
	/* a batch of an incremental run carries bank windows too */
	if (r->incr.mem_per_batch > r->batch * 16)
		r->incr.mem_per_batch = r->batch * 16;
	mc.max_batch = r->batch + r->incr.mem_per_batch;
	mc.head_ops = r->head;
	mc.head_ctx = r->head_ctx;
	mc.horizon = s->task == TF_TASK_FORECAST ? s->horizon : 0;
	mc.targets = ds->n_out;
	mc.classes = ds->n_classes;
	mc.class_names = (const char *const *)ds->class_names;
	mc.target_in = r->target_in;
	r->model_options = json_dumps(json_object_get(s->doc, "model"), JSON_COMPACT);
	mc.options = r->model_options;
	r->mc = mc;
	if ((rv = tf_model_build(&r->model, &mc, r->pool, err)) != 0)
		return rv;
	if (mc.form == TF_FORM_LINEAR)
		say(r, LOOM_LOG_INFO, "model: %s, %lld parameters (a linear map of %lld steps), %d "
		                      "thread%s",
		    s->kind == TF_KIND_NAIVE ? "naive" : "linear", (long long)r->model.n_params,
		    (long long)s->context, lk_pool_threads(r->pool),
		    lk_pool_threads(r->pool) == 1 ? "" : "s");
	else
		say(r, LOOM_LOG_INFO, "model: %lld parameters, %lld tokens of %lld, %d thread%s",
		    (long long)r->model.n_params, (long long)r->model.tokens, (long long)s->d_model,
		    lk_pool_threads(r->pool), lk_pool_threads(r->pool) == 1 ? "" : "s");

	/* training targets per window */
	switch (s->task) {
	case TF_TASK_FORECAST:
		r->target_len = s->channel_independent ? s->horizon * ds->n_in : s->horizon * ds->n_out;
		break;
	case TF_TASK_REGRESSION: r->target_len = ds->n_out; break;
	case TF_TASK_CLASSIFICATION: r->target_len = 1; break;
	default: r->target_len = s->context * ds->n_in; break;
	}
	{
		int64_t B = r->batch + r->incr.mem_per_batch, S = B * r->model.seq_per_window;
		int64_t rd = r->model.head.result_dim > r->model.head.out_dim ? r->model.head.result_dim
		                                                              : r->model.head.out_dim;
		int64_t wide = rd > r->target_len ? rd : r->target_len;
		r->bx = calloc((size_t)(B * s->context * ds->n_in), sizeof *r->bx);
		r->by = calloc((size_t)(B * r->target_len + 1), sizeof *r->by);
		r->res = calloc((size_t)(S * wide + 1), sizeof *r->res);
		r->truth = calloc((size_t)(S * wide + 1), sizeof *r->truth);
		r->idx = calloc((size_t)B, sizeof *r->idx);
		r->order = calloc((size_t)(ds->n_windows[0] + 1), sizeof *r->order);
		if (!r->bx || !r->by || !r->res || !r->truth || !r->idx || !r->order)
			return LOOM_ENOMEM;
	}
	r->steps_per_epoch = (ds->n_windows[0] + r->batch - 1) / r->batch;
	r->total_steps = r->steps_per_epoch * s->epochs;
	if (!trains(r))
		r->total_steps = 0; /* fitted after the (empty) loop */
	r->info = make_info(r);
	r->history = json_array();
	r->ckpt_dir = loom_strfmt("%s/checkpoints", r->job->out_dir);
	if ((rv = mkdir_errno(r->ckpt_dir)) != 0) {
		*err = loom_strfmt("cannot create %s: %s", r->ckpt_dir, strerror(rv));
		return LOOM_EIO;
	}
	return 0;
}

static void
teardown(run *r)
{
	tf_model_free(&r->model);
	free(r->model_options);
	lk_pool_destroy(r->pool);
	tf_dataset_free(&r->ds);
	tf_table_free(&r->table);
	tf_spec_free(&r->spec);
	free(r->target_in);
	free(r->bx);
	free(r->by);
	free(r->res);
	free(r->truth);
	free(r->idx);
	free(r->order);
	free(r->ckpt_dir);
	json_decref(r->info);
	json_decref(r->history);
	tf_incr_free(&r->incr);
}

/* ------------------------------------------------------------------ batches */

/* Inputs and training targets of windows idx[n] of split s.  For a
 * channel-independent forecast the targets are every input channel's
 * future, as [window, channel, horizon] (one sequence per channel). */
void
gather(run *r, int s, const int64_t *idx, int64_t n)
{
	const tf_spec *sp = &r->spec;
	const tf_dataset *ds = &r->ds;

	tf_dataset_batch(ds, &sp->data, s, idx, n, r->bx,
	                 sp->task == TF_TASK_FORECAST && sp->channel_independent ? NULL : r->by);
	if (sp->task == TF_TASK_FORECAST && sp->channel_independent) {
		for (int64_t b = 0; b < n; b++) {
			int64_t start = ds->window_start[s][idx[b]] + sp->context;
			for (int64_t c = 0; c < ds->n_in; c++)
				for (int64_t h = 0; h < sp->horizon; h++)
					r->by[(b * ds->n_in + c) * sp->horizon + h] =
						ds->x[(start + h) * ds->n_in + c];
		}
	}
}

/* ------------------------------------------------------------------ schedules */

static double
learning_rate(const run *r)
{
	const tf_spec *s = &r->spec;
	const tf_train_state *st = &r->st;
	double lr = s->lr;

	if (st->step < s->warmup_steps)
		return s->lr * (double)(st->step + 1) / (double)s->warmup_steps;
	switch (s->schedule) {
	case TF_SCHED_STEP:
		lr = s->lr * pow(s->gamma, (double)(st->epoch / s->step_epochs));
		break;
	case TF_SCHED_COSINE: {
		double span = (double)(r->total_steps - s->warmup_steps);
		double t = span > 0 ? (double)(st->step - s->warmup_steps) / span : 1.0;
		if (t > 1)
			t = 1;
		lr = s->min_lr + (s->lr - s->min_lr) * 0.5 * (1.0 + cos(M_PI * t));
		break;
	}
	case TF_SCHED_PLATEAU:
		lr = s->lr * st->lr_scale;
		break;
	default:
		break;
	}
	return lr < s->min_lr ? s->min_lr : lr;
}

/* ------------------------------------------------------------------ evaluation */

int
collect_metric(void *arg, const char *name, double value)
{
	collect *c = arg;
	char key[128];
	snprintf(key, sizeof key, "%s%s", c->prefix, name);
	if (isfinite(value))
		json_object_set_new(c->obj, key, json_real(value));
	else
		json_object_set_new(c->obj, key, json_null());
	return 0;
}

/* Results and ground truth of the last forward pass, in original units,
 * in the layout the head's metrics expect; returns the number of
 * sequences. */
static int64_t
to_original_units(run *r, tf_model *m, int s, const int64_t *idx, int64_t n)
{
	const tf_spec *sp = &r->spec;
	const tf_dataset *ds = &r->ds;
	int64_t rd = m->head.result_dim;

	tf_model_results(m, r->by, r->res);
	switch (sp->task) {
	case TF_TASK_FORECAST: {
		int64_t H = sp->horizon, K = ds->n_out;
		if (sp->channel_independent) {
			/* results [window·C, H]: keep the target channels, as [window·K, H] */
			float *out = r->truth; /* reuse truth's space for a moment */
			for (int64_t b = 0; b < n; b++)
				for (int64_t k = 0; k < K; k++)
					for (int64_t h = 0; h < H; h++)
						out[(b * K + k) * H + h] =
							r->res[(b * ds->n_in + r->target_in[k]) * H + h];
			memcpy(r->res, out, (size_t)(n * K * H) * sizeof *r->res);
			for (int64_t b = 0; b < n; b++) {
				int64_t start = ds->window_start[s][idx[b]] + sp->context;
				for (int64_t k = 0; k < K; k++)
					for (int64_t h = 0; h < H; h++) {
						float *v = &r->res[(b * K + k) * H + h];
						*v = (float)(*v * ds->out_scale[k] + ds->out_shift[k]);
						r->truth[(b * K + k) * H + h] =
							(float)ds->y_raw[(start + h) * K + k];
					}
			}
			return n * K;
		}
		for (int64_t b = 0; b < n; b++) {
			int64_t start = ds->window_start[s][idx[b]] + sp->context;
			for (int64_t h = 0; h < H; h++)
				for (int64_t k = 0; k < K; k++) {
					float *v = &r->res[b * rd + h * K + k];
					*v = (float)(*v * ds->out_scale[k] + ds->out_shift[k]);
					r->truth[b * rd + h * K + k] = (float)ds->y_raw[(start + h) * K + k];
				}
		}
		return n;
	}
	case TF_TASK_REGRESSION:
		for (int64_t b = 0; b < n; b++) {
			int64_t row = ds->window_start[s][idx[b]] + sp->context - 1;
			for (int64_t k = 0; k < ds->n_out; k++) {
				float *v = &r->res[b * rd + k];
				*v = (float)(*v * ds->out_scale[k] + ds->out_shift[k]);
				r->truth[b * ds->n_out + k] = (float)ds->y_raw[row * ds->n_out + k];
			}
		}
		return n;
	case TF_TASK_CLASSIFICATION:
		for (int64_t b = 0; b < n; b++) {
			int64_t row = ds->window_start[s][idx[b]] + sp->context - 1;
			r->truth[b] = ds->y[row];
		}
		return n;
	default: /* anomaly: a window is anomalous if any of its rows is labelled so */
		for (int64_t b = 0; b < n; b++) {
			int64_t start = ds->window_start[s][idx[b]];
			float label = ds->n_out > 0 ? 0.0f : NAN;
			for (int64_t t = 0; ds->n_out > 0 && t < sp->context; t++) {
				if (ds->y_raw[start + t] > 0.5)
					label = 1.0f;
			}
			r->truth[b] = label;
		}
		return n;
	}
}

/* Loss and head metrics of split s (eval mode), as "PREFIXloss",
 * "PREFIXmae"… in obj.  If calib is not NULL the metrics state is handed
 * to it (anomaly threshold calibration) instead of being freed. */
int
evaluate(run *r, tf_model *m, int s, const char *prefix, json_t *obj, double *loss_out,
         void **calib)
{
	const tf_dataset *ds = &r->ds;
	int64_t B = r->batch, n_win = ds->n_windows[s];
	double loss_sum = 0;
	void *state = NULL;
	collect c = {obj, prefix};
	int rv;

	if ((rv = r->head->metrics_new(r->head_ctx, &state)) != 0)
		return rv;
	for (int64_t at = 0; at < n_win; at += B) {
		int64_t n = n_win - at < B ? n_win - at : B, seqs;
		double loss;
		for (int64_t i = 0; i < n; i++)
			r->idx[i] = at + i;
		gather(r, s, r->idx, n);
		if ((rv = tf_model_forward(m, r->bx, n, false, 0)) != 0 ||
		    (rv = tf_model_loss(m, r->by, &loss)) != 0)
			goto out;
		loss_sum += loss * (double)n;
		seqs = to_original_units(r, m, s, r->idx, n);
		if ((rv = r->head->metrics_add(r->head_ctx, state, r->res, r->truth, (uint32_t)seqs)) != 0)
			goto out;
	}
	*loss_out = n_win ? loss_sum / (double)n_win : NAN;
	collect_metric(&c, "loss", *loss_out);
	rv = r->head->metrics_report(r->head_ctx, state, collect_metric, &c);
out:
	if (calib && rv == 0)
		*calib = state;
	else
		r->head->metrics_free(r->head_ctx, state);
	return rv;
}

/* ------------------------------------------------------------------ checkpoints */

/* Keep the newest `keep` checkpoints of dir. */
static void
prune_checkpoints(const char *dir, int keep)
{
	long long steps[64];
	int n = 0;
	DIR *d = opendir(dir);
	struct dirent *de;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL && n < 64) {
		long long step;
		char tail[8];
		if (sscanf(de->d_name, "step-%lld.%7s", &step, tail) == 2 && strcmp(tail, "ckpt") == 0)
			steps[n++] = step;
	}
	closedir(d);
	for (int i = 0; i < n; i++) {
		int newer = 0;
		for (int j = 0; j < n; j++)
			newer += steps[j] > steps[i];
		if (newer >= keep) {
			char *old = loom_strfmt("%s/step-%012lld.ckpt", dir, steps[i]);
			unlink(old);
			free(old);
		}
	}
}

static int
save_checkpoint(run *r, char **err)
{
	char *path = loom_strfmt("%s/step-%012lld.ckpt", r->ckpt_dir, (long long)r->st.step);
	int rv = tf_checkpoint_save(path, &r->model, &r->st, r->info, r->history, err);

	if (rv == 0) {
		say(r, LOOM_LOG_DEBUG, "checkpoint %s", path);
		prune_checkpoints(r->ckpt_dir, KEEP_CHECKPOINTS);
		if (r->job->artifact)
			r->job->artifact(r->job, "checkpoint", path);
	}
	free(path);
	return rv;
}

int
save_weights(run *r, const tf_model *m, const json_t *info, const char *name, char **err)
{
	char *path = loom_strfmt("%s/%s", r->job->out_dir, name);
	int rv = tf_weights_save(path, m, info, err);
	if (rv == 0 && r->job->artifact)
		r->job->artifact(r->job, name, path);
	free(path);
	return rv;
}

/* ------------------------------------------------------------------ one epoch's end */

static bool
better(const run *r, double value, double best)
{
	if (r->spec.es_maximize)
		return value > best + r->spec.es_min_delta;
	return value < best - r->spec.es_min_delta;
}

void
run_metric(run *r, const char *name, double value, uint32_t scope)
{
	loom_metric_point pt = {.name = name, .step = r->st.step, .epoch = (int32_t)r->st.epoch,
	                        .scope = scope, .wall_ms = r->host->clock_wall_ms(), .value = value};
	if (r->job->metric)
		r->job->metric(r->job, &pt);
}

/* The validation metrics of the epoch; a head with a calibration (the
 * anomaly threshold) is then calibrated on the same scores, so every saved
 * model carries a threshold fitted to its own weights (the metrics of an
 * epoch use the threshold of the one before). */
static int
validate_epoch(run *r, json_t *row, double *val_loss)
{
	void *state = NULL;
	bool calib = LOOM_OPS_HAS(r->head, calibrate);
	int rv = evaluate(r, &r->model, 1, "val_", row, val_loss, calib ? &state : NULL);

	if (rv == 0 && calib) {
		rv = r->head->calibrate(r->head_ctx, r->model.head_params, state);
		r->head->metrics_free(r->head_ctx, state);
	}
	return rv;
}

/* Validate, update the plateau schedule, keep the best model, decide on
 * early stopping. */
static int
end_epoch(run *r, char **err)
{
	const tf_spec *s = &r->spec;
	tf_train_state *st = &r->st;
	json_t *row = json_object();
	double val_loss = NAN, value;
	const char *key;
	json_t *v;
	int rv;

	json_object_set_new(row, "epoch", json_integer(st->epoch + 1));
	json_object_set_new(row, "step", json_integer(st->step));
	if (st->epoch_loss_count)
		json_object_set_new(row, "train_loss",
		                    json_real(st->epoch_loss_sum / (double)st->epoch_loss_count));
	if (r->ds.n_windows[1] > 0 && (rv = validate_epoch(r, row, &val_loss)) != 0) {
		*err = loom_strfmt("validation failed: %s", loom_strerror(rv));
		json_decref(row);
		return rv;
	}
	json_object_foreach(row, key, v) {
		if (json_is_number(v) && strcmp(key, "epoch") && strcmp(key, "step"))
			run_metric(r, key, json_number_value(v), LOOM_METRIC_EPOCH);
	}
	say(r, LOOM_LOG_INFO, "epoch %lld/%lld: train_loss %.6g, val_loss %.6g",
	    (long long)st->epoch + 1, (long long)s->epochs,
	    st->epoch_loss_count ? st->epoch_loss_sum / (double)st->epoch_loss_count : NAN,
	    val_loss);

	v = json_object_get(row, s->es_metric);
	if (v == NULL && r->ds.n_windows[1] > 0 && st->epoch == 0)
		say(r, LOOM_LOG_WARN,
		    "train.early_stopping.metric: \"%s\" is not a validation metric of this head; "
		    "best-model keeping and early stopping use val_loss",
		    s->es_metric);
	if (v == NULL)
		v = json_object_get(row, "val_loss");
	value = json_is_number(v) ? json_number_value(v) : NAN;
	json_array_append_new(r->history, row);

	if (isfinite(value)) {
		bool improved = st->best_epoch < 0 || better(r, value, st->es_best);
		/* plateau schedule: on val_loss-like minimisation of the same metric */
		if (s->schedule == TF_SCHED_PLATEAU) {
			if (st->best_epoch < 0 || better(r, value, st->plateau_best)) {
				st->plateau_best = value;
				st->plateau_bad = 0;
			} else if (++st->plateau_bad >= s->plateau_patience) {
				st->lr_scale *= s->plateau_factor;
				st->plateau_bad = 0;
				say(r, LOOM_LOG_INFO, "plateau: learning rate now %.3g",
				    s->lr * st->lr_scale);
			}
		}
		if (improved) {
			st->es_best = value;
			st->es_bad = 0;
			st->best_epoch = st->epoch;
			if ((rv = save_weights(r, &r->model, r->info, "best.safetensors", err)) != 0)
				return rv;
		} else {
			st->es_bad++;
			if (s->es_patience > 0 && st->es_bad >= s->es_patience) {
				st->stopped_early = 1;
				say(r, LOOM_LOG_INFO,
				    "early stopping: %s has not improved for %lld epochs (best %.6g at "
				    "epoch %lld)",
				    s->es_metric,
				    (long long)st->es_bad, st->es_best, (long long)st->best_epoch + 1);
			}
		}
	}
	st->epoch++;
	st->batch = 0;
	st->epoch_loss_sum = 0;
	st->epoch_loss_count = 0;
	return 0;
}

/* ------------------------------------------------------------------ the end */

/* tmpl with "{row}" and "{column}" replaced (malloc'd). */
static char *
cell_name(const char *tmpl, const char *row, const char *column)
{
	size_t cap = strlen(tmpl) + strlen(row) * 4 + strlen(column) * 4 + 1, n = 0;
	char *out = malloc(cap);

	if (out == NULL)
		return NULL;
	for (const char *p = tmpl; *p;) {
		const char *with = NULL;
		if (strncmp(p, "{row}", 5) == 0)
			with = row, p += 5;
		else if (strncmp(p, "{column}", 8) == 0)
			with = column, p += 8;
		if (with == NULL) {
			if (n + 1 >= cap)
				break;
			out[n++] = *p++;
			continue;
		}
		size_t k = strlen(with);
		if (n + k + 1 >= cap)
			break;
		memcpy(out + n, with, k);
		n += k;
	}
	out[n] = '\0';
	return out;
}

/* Labels: the given NULL-terminated list, or the classes. */
static json_t *
labels(const run *r, const char *const *given)
{
	json_t *a = json_array();
	if (given != NULL) {
		for (size_t i = 0; given[i]; i++)
			json_array_append_new(a, json_string(given[i]));
	} else {
		for (int32_t i = 0; i < r->ds.n_classes; i++)
			json_array_append_new(a, json_string(r->ds.class_names[i]));
	}
	return a;
}

/* Does any split of out hold metric name? */
static bool
reported(const json_t *out, const char *name)
{
	static const char *const splits[] = {"train", "validation", "test"};
	for (int i = 0; i < 3; i++)
		if (json_object_get(json_object_get(out, splits[i]), name))
			return true;
	return false;
}

/* The most cells a detail table may have: a table of thousands of classes
 * is no table to read (its figures stay metrics). */
#define DETAIL_CELLS_MAX 4096

/* The head's reading of its metrics into metrics.json (ABI 1.1 heads):
 * "headline", the names in display order, and "details", its tables with
 * their labels and each cell's metric name (tables none of whose metrics
 * were reported, and tables over DETAIL_CELLS_MAX cells, are left out). */
static void
describe_metrics(const run *r, json_t *out)
{
	json_t *details = json_array();

	if (LOOM_OPS_HAS(r->head, headline)) {
		json_t *h = json_array();
		for (size_t i = 0; r->head->headline[i]; i++)
			json_array_append_new(h, json_string(r->head->headline[i]));
		json_object_set_new(out, "headline", h);
	}
	for (const loom_metric_table *t = LOOM_OPS_HAS(r->head, tables) ? r->head->tables : NULL;
	     t && t->name; t++) {
		json_t *rows = labels(r, t->rows), *cols = labels(r, t->columns), *cells = json_array();
		json_t *rv, *cv;
		size_t i, j;
		bool any = false;
		json_array_foreach(rows, i, rv) {
			json_t *line = json_array();
			json_array_foreach(cols, j, cv) {
				char *name = cell_name(t->cell ? t->cell : "", json_string_value(rv),
				                       json_string_value(cv));
				any = any || (name && reported(out, name));
				json_array_append_new(line, name ? json_string(name) : json_null());
				free(name);
			}
			json_array_append_new(cells, line);
		}
		if (!any || json_array_size(rows) == 0 || json_array_size(cols) == 0 ||
		    json_array_size(rows) * json_array_size(cols) > DETAIL_CELLS_MAX) {
			json_decref(rows);
			json_decref(cols);
			json_decref(cells);
			continue;
		}
		json_t *o = json_pack("{s:s, s:s, s:o, s:o, s:o}", "name", t->name, "title",
		                      t->title ? t->title : t->name, "rows", rows, "columns", cols,
		                      "cells", cells);
		if (t->row_header)
			json_object_set_new(o, "row_header", json_string(t->row_header));
		if (t->column_header)
			json_object_set_new(o, "column_header", json_string(t->column_header));
		json_array_append_new(details, o);
	}
	if (json_array_size(details) > 0)
		json_object_set_new(out, "details", details);
	else
		json_decref(details);
}

/* The RMS of the validation residuals of m (the training split's without
 * validation windows) relative to each window's scale (tf_window_scale), per
 * output value in predict's order: what predict_spread's residual_scale
 * multiplies by a window's own scale (predict.h).  Forecast and regression. */
static json_t *
residual_stats(run *r, tf_model *m)
{
	const tf_spec *sp = &r->spec;
	const tf_dataset *ds = &r->ds;
	int s = ds->n_windows[1] > 0 ? 1 : 0;
	int64_t K = ds->n_out, H = sp->task == TF_TASK_FORECAST ? sp->horizon : 1, J = H * K;
	int64_t L = sp->context, C = ds->n_in, rd = m->head.result_dim, n_win = ds->n_windows[s];
	double *sum = calloc((size_t)J, sizeof *sum);
	int64_t *count = calloc((size_t)J, sizeof *count), used = 0;
	json_t *rms = json_array(), *out = NULL;

	if (!sum || !count || n_win == 0)
		goto done;
	for (int64_t at = 0; at < n_win; at += r->batch) {
		int64_t n = n_win - at < r->batch ? n_win - at : r->batch;
		for (int64_t i = 0; i < n; i++)
			r->idx[i] = at + i;
		gather(r, s, r->idx, n);
		if (tf_model_forward(m, r->bx, n, false, 0) != 0)
			goto done;
		to_original_units(r, m, s, r->idx, n);
		for (int64_t b = 0; b < n; b++)
			for (int64_t h = 0; h < H; h++)
				for (int64_t k = 0; k < K; k++) {
					int64_t at_res = sp->task == TF_TASK_REGRESSION ? b * rd + k
					                 : sp->channel_independent ? (b * K + k) * H + h
					                                           : b * rd + h * K + k;
					int64_t at_truth = sp->task == TF_TASK_REGRESSION ? b * K + k : at_res;
					double e = ((double)r->res[at_res] - r->truth[at_truth]) /
					           ds->out_scale[k];
					double w = tf_window_scale(r->bx + b * L * C, L, C, r->target_in[k]);
					if (isfinite(e)) {
						sum[h * K + k] += (e / w) * (e / w);
						count[h * K + k]++;
					}
				}
		used += n;
	}
	for (int64_t j = 0; j < J; j++)
		json_array_append_new(rms, json_real(count[j] ? sqrt(sum[j] / (double)count[j]) : 0.0));
	out = json_pack("{s:s, s:I, s:s, s:O}", "split", s == 1 ? "validation" : "train", "windows",
	                (json_int_t)used, "scale", "window_std", "rms", rms);
done:
	json_decref(rms);
	free(sum);
	free(count);
	return out;
}

/* The weights predict reads (best.safetensors, else last.safetensors)
 * loaded into m, and written back with their residuals' scale in the
 * metadata, measured on exactly those weights. */
static int
save_residuals(run *r, tf_model *m, char **err)
{
	char *path = loom_strfmt("%s/best.safetensors", r->job->out_dir);
	json_t *meta = NULL, *stats;
	struct stat sb;
	int rv;

	if (stat(path, &sb) != 0) {
		free(path);
		path = loom_strfmt("%s/last.safetensors", r->job->out_dir);
	}
	if ((rv = tf_weights_load(path, m, &meta, err)) != 0)
		goto out;
	if ((stats = residual_stats(r, m)) != NULL) {
		json_object_set_new(meta, "residuals", stats);
		json_object_del(meta, "format");
		rv = tf_weights_save(path, m, meta, err);
	}
out:
	json_decref(meta);
	free(path);
	return rv;
}

static int
finish(run *r, double seconds, char **err)
{
	const tf_spec *s = &r->spec;
	json_t *out = json_object(), *split, *base;
	double loss;
	tf_baselines bl;
	tf_choice choice;
	tf_model *final = &r->model;
	char *text, *path;
	int rv;

	memset(&choice, 0, sizeof choice);
	/* without a validation split, calibrate on the training split */
	if (LOOM_OPS_HAS(r->head, calibrate) && r->ds.n_windows[1] == 0) {
		void *state = NULL;
		json_t *tmp = json_object();
		rv = evaluate(r, &r->model, 0, "", tmp, &loss, &state);
		json_decref(tmp);
		if (rv == 0) {
			rv = r->head->calibrate(r->head_ctx, r->model.head_params, state);
			r->head->metrics_free(r->head_ctx, state);
		}
		if (rv != 0) {
			*err = loom_strfmt("cannot calibrate the head: %s", loom_strerror(rv));
			goto done;
		}
	}
	/* a ridge or naive model is fitted now, and is the weights at the end */
	if (!trains(r) && (rv = tf_choose(r, &choice, &final, out, err)) != 0)
		goto done;
	/* the weights at the end, and a checkpoint of the finished run */
	if ((rv = save_weights(r, &r->model, r->info, "last.safetensors", err)) != 0 ||
	    (rv = save_checkpoint(r, err)) != 0)
		goto done;
	/* the model the run keeps: the best, when validation chose one */
	if (trains(r) && r->st.best_epoch >= 0) {
		char *best = loom_strfmt("%s/best.safetensors", r->job->out_dir);
		rv = tf_weights_load(best, &r->model, NULL, err);
		free(best);
		if (rv != 0)
			goto done;
	}
	/* auto: the others are fitted beside it, and the best kept */
	if (trains(r) && (rv = tf_choose(r, &choice, &final, out, err)) != 0)
		goto done;
	/* the residuals' scale, the uncertainty of models without dropout */
	if ((s->task == TF_TASK_FORECAST || s->task == TF_TASK_REGRESSION) &&
	    (rv = save_residuals(r, final, err)) != 0)
		goto done;
	static const char *const names[3] = {"train", "validation", "test"};
	for (int sp = 0; sp < 3; sp++) {
		split = json_object();
		if (r->ds.n_windows[sp] > 0 &&
		    (rv = evaluate(r, final, sp, "", split, &loss, NULL)) != 0) {
			json_decref(split);
			*err = loom_strfmt("evaluating the %s split failed: %s", names[sp],
			                    loom_strerror(rv));
			goto done;
		}
		json_object_set_new(out, names[sp], split);
	}
	{
		const char *key;
		json_t *v;
		json_object_foreach(json_object_get(out, "test"), key, v) {
			char name[128];
			snprintf(name, sizeof name, "test_%s", key);
			if (json_is_number(v))
				run_metric(r, name, json_number_value(v), LOOM_METRIC_FINAL);
		}
	}
	tf_dataset_baselines(&r->ds, &s->data, 2, &bl);
	base = json_object();
	if (s->task == TF_TASK_FORECAST) {
		if (isfinite(bl.repeat_last_mae))
			json_object_set_new(base, "repeat_last",
			                    json_pack("{s:f, s:f}", "mae", bl.repeat_last_mae, "mse",
			                              bl.repeat_last_mse));
		if (isfinite(bl.seasonal_mae))
			json_object_set_new(base, "seasonal_naive",
			                    json_pack("{s:f, s:f, s:I}", "mae", bl.seasonal_mae, "mse",
			                              bl.seasonal_mse, "season", (json_int_t)r->ds.season));
	}
	if (s->task == TF_TASK_CLASSIFICATION && isfinite(bl.majority_accuracy))
		json_object_set_new(base, "majority_class",
		                    json_pack("{s:f, s:s}", "accuracy", bl.majority_accuracy, "class",
		                              r->ds.class_names[bl.majority_class]));
	json_object_set_new(out, "baselines", base);
	/* the continual-learning record every trained model keeps */
	if (trains(r) &&
	    (rv = tf_incr_finish(r, final,
	                         s->task == TF_TASK_CLASSIFICATION ? bl.majority_accuracy
	                         : s->task == TF_TASK_FORECAST     ? bl.repeat_last_mae
	                                                           : NAN,
	                         out, err)) != 0)
		goto done;
	describe_metrics(r, out);
	json_object_set_new(out, "epochs", r->history);
	r->history = NULL;
	json_object_set_new(out, "run",
	                    json_pack("{s:I, s:I, s:I, s:b, s:I, s:f, s:I, s:i}", "steps",
	                              (json_int_t)r->st.step, "epochs_run", (json_int_t)r->st.epoch,
	                              "best_epoch", (json_int_t)(r->st.best_epoch + 1),
	                              "stopped_early", r->st.stopped_early, "parameters",
	                              (json_int_t)final->n_params, "train_seconds", seconds,
	                              "windows_train", (json_int_t)r->ds.n_windows[0], "threads",
	                              lk_pool_threads(r->pool)));
	text = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	path = loom_strfmt("%s/metrics.json", r->job->out_dir);
	rv = write_text(path, text);
	if (rv != 0) {
		*err = loom_strfmt("cannot write %s: %s", path, strerror(rv));
		rv = LOOM_EIO;
	} else if (r->job->artifact) {
		r->job->artifact(r->job, "metrics.json", path);
	}
	free(text);
	free(path);
done:
	tf_choice_free(&choice);
	json_decref(out);
	return rv;
}

/* ------------------------------------------------------------------ the loop */

static void
shuffle(run *r, int64_t epoch)
{
	int64_t n = r->ds.n_windows[0];
	for (int64_t i = 0; i < n; i++)
		r->order[i] = i;
	for (int64_t i = n - 1; i > 0; i--) {
		int64_t j = (int64_t)(lk_rand_u64(r->spec.seed, STREAM_SHUFFLE + (uint64_t)epoch,
		                                  (uint64_t)i) %
		                      (uint64_t)(i + 1));
		int64_t t = r->order[i];
		r->order[i] = r->order[j];
		r->order[j] = t;
	}
}

/* One optimizer step on the batch idx[n]; returns the training loss. */
static int
train_step(run *r, int64_t n, double *loss)
{
	tf_model *m = &r->model;
	const tf_spec *s = &r->spec;
	uint64_t seed = lk_rand_u64(s->seed, STREAM_STEP, (uint64_t)r->st.step);
	double lr;
	int rv;

	gather(r, 0, r->idx, n);
	n = tf_incr_extend_batch(r, n);
	if ((rv = tf_model_forward(m, r->bx, n, true, seed)) != 0 ||
	    (rv = tf_model_loss(m, r->by, loss)) != 0 || (rv = tf_incr_after_loss(r, n, loss)) != 0)
		return rv;
	if (!isfinite(*loss)) {
		say(r, LOOM_LOG_ERROR,
		    "the training loss is %g at step %lld: the run diverged; lower train.lr or "
		    "check the data",
		    *loss, (long long)r->st.step);
		return LOOM_ERANGE;
	}
	tf_model_zero_grad(m);
	if ((rv = tf_model_backward(m)) != 0)
		return rv;
	tf_incr_after_backward(r, loss);
	if (s->clip_norm > 0)
		tf_model_clip(m, s->clip_norm);
	lr = learning_rate(r);
	tf_model_adamw(m, lr, s->beta1, s->beta2, s->eps, s->weight_decay, r->st.step + 1);
	run_metric(r, "train_loss", *loss, LOOM_METRIC_STEP);
	run_metric(r, "lr", lr, LOOM_METRIC_STEP);
	return 0;
}

/* A checkpoint written before model.kind: its spec is this one without
 * the kinds' keys.  Then this run is the Transformer it was: model.kind
 * becomes "transformer" (the spec then written into checkpoints has the
 * keys).  A forecast's default kind would otherwise have made the resumed
 * run an auto one, or refused it as another spec. */
static bool
before_kinds(const json_t *saved, tf_spec *spec)
{
	static const char *const added[] = {"kind", "linear", "naive", "auto"};
	json_t *model = json_object_get(saved, "model"), *now, *mine;
	bool same;

	if (!json_is_object(model) || json_object_get(model, "kind") != NULL ||
	    spec->kind == TF_KIND_TRANSFORMER)
		return false;
	now = json_deep_copy(spec->doc);
	mine = json_object_get(now, "model");
	for (size_t i = 0; i < sizeof added / sizeof added[0]; i++)
		json_object_del(mine, added[i]);
	same = json_equal(now, saved);
	json_decref(now);
	if (!same)
		return false;
	spec->kind = TF_KIND_TRANSFORMER;
	json_object_set_new(json_object_get(spec->doc, "model"), "kind", json_string("transformer"));
	return true;
}

static int
write_spec(run *r, char **err)
{
	char *path = loom_strfmt("%s/job.json", r->job->out_dir);
	char *text = json_dumps(r->spec.doc, JSON_INDENT(2) | JSON_SORT_KEYS);
	int rv = write_text(path, text);
	if (rv != 0)
		*err = loom_strfmt("cannot write %s: %s", path, strerror(rv));
	free(text);
	free(path);
	return rv ? LOOM_EIO : 0;
}

int
tf_train(const loom_host *host, loom_instance *ins, const loom_job *job)
{
	run r;
	tf_head_lookup hl = {host, ins};
	char *err = NULL;
	uint64_t t0 = host->clock_mono_ns();
	int rv;

	memset(&r, 0, sizeof r);
	r.host = host;
	r.ins = ins;
	r.job = job;
	if ((rv = tf_spec_parse(job->spec_json, "spec", tf_head_task, &hl, &r.spec, &err)) != 0)
		goto out;
	if ((rv = mkdir_errno(job->out_dir)) != 0) {
		err = loom_strfmt("cannot create the output directory %s: %s", job->out_dir,
		                   strerror(rv));
		rv = LOOM_EIO;
		goto out;
	}
	if ((rv = setup(&r, &err)) != 0)
		goto out;

	if (job->flags & LOOM_JOB_RESUME) {
		char *path = tf_checkpoint_newest(r.ckpt_dir);
		json_t *info = NULL;
		if (path == NULL) {
			err = loom_strfmt("nothing to resume: no checkpoint in %s", r.ckpt_dir);
			rv = LOOM_ENOENT;
			goto out;
		}
		json_decref(r.history);
		r.history = NULL;
		rv = tf_checkpoint_load(path, &r.model, &r.st, &info, &r.history, &err);
		bool older = rv == 0 && before_kinds(json_object_get(info, "spec"), &r.spec);
		if (older)
			say(&r, LOOM_LOG_INFO, "%s was written before model.kind existed: the run goes "
			                       "on as the Transformer it was",
			    path);
		if (rv == 0 && !older && !json_equal(json_object_get(info, "spec"), r.spec.doc)) {
			err = loom_strfmt("%s was written by another job spec; resume with the spec "
			                   "it was trained with (its job.json)",
			                   path);
			rv = LOOM_EINVAL;
		}
		if (rv == 0)
			rv = tf_incr_start(&r, true, info, &err);
		json_decref(info);
		if (rv == 0)
			say(&r, LOOM_LOG_INFO, "resuming from %s: step %lld, epoch %lld", path,
			    (long long)r.st.step, (long long)r.st.epoch + 1);
		free(path);
		if (rv != 0)
			goto out;
	} else {
		tf_model_init(&r.model, r.spec.seed);
		r.st.lr_scale = 1.0;
		r.st.best_epoch = -1;
		if ((rv = write_spec(&r, &err)) != 0 || (rv = tf_incr_start(&r, false, NULL, &err)) != 0)
			goto out;
	}

	while (trains(&r) && r.st.epoch < r.spec.epochs && !r.st.stopped_early) {
		shuffle(&r, r.st.epoch);
		while (r.st.batch < r.steps_per_epoch) {
			int ctl = job->control ? job->control(job) : LOOM_CONTROL_RUN;
			int64_t at = r.st.batch * r.batch, n;
			double loss;

			if (ctl == LOOM_CONTROL_CANCEL) {
				say(&r, LOOM_LOG_INFO, "cancelled at step %lld", (long long)r.st.step);
				rv = LOOM_ECANCELED;
				goto out;
			}
			if (ctl == LOOM_CONTROL_PAUSE || (job->max_steps > 0 && r.st.step >= job->max_steps)) {
				if ((rv = save_checkpoint(&r, &err)) == 0) {
					say(&r, LOOM_LOG_INFO, "paused at step %lld (checkpoint written)",
					    (long long)r.st.step);
					rv = LOOM_EPAUSED;
				}
				goto out;
			}
			n = r.ds.n_windows[0] - at < r.batch ? r.ds.n_windows[0] - at : r.batch;
			for (int64_t i = 0; i < n; i++)
				r.idx[i] = r.order[at + i];
			if ((rv = train_step(&r, n, &loss)) != 0)
				goto out;
			r.st.epoch_loss_sum += loss;
			r.st.epoch_loss_count++;
			r.st.batch++;
			r.st.step++;
			if (job->progress)
				job->progress(job, r.st.step, r.total_steps, (int32_t)r.st.epoch + 1,
				              (int32_t)r.spec.epochs);
			if (r.spec.checkpoint_every > 0 && r.st.step % r.spec.checkpoint_every == 0 &&
			    (rv = save_checkpoint(&r, &err)) != 0)
				goto out;
		}
		if ((rv = end_epoch(&r, &err)) != 0)
			goto out;
	}
	rv = finish(&r, (double)(host->clock_mono_ns() - t0) / 1e9, &err);
	if (rv == 0)
		say(&r, LOOM_LOG_INFO, "completed: %lld steps, %lld epochs%s", (long long)r.st.step,
		    (long long)r.st.epoch, r.st.stopped_early ? " (stopped early)" : "");
out:
	if (err) {
		say(&r, LOOM_LOG_ERROR, "%s", err);
		free(err);
	}
	teardown(&r);
	return rv;
}

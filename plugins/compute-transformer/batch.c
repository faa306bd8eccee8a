/* Batch prediction as a compute job.  See batch.h and docs/inference.md.
 *
 * The model is opened as the inference workers open it (tf_model_open);
 * its weights' metadata says how to read a file (the stored spec's
 * data.time_column and data.fill, the data description's input channels
 * and targets), and the file is read as a training run reads it
 * (tf_csv_read, tf_series_build).  Windows of model.context rows start
 * every predict.stride rows from the first; chunks of predict.batch of
 * them go through tf_predict (or tf_predict_spread), which splits a chunk
 * into runs of the model's train.batch starting at the chunk's first
 * window.  Chunks always start at multiples of predict.batch, so a window
 * meets the same neighbours in a run paused and resumed as in one that
 * never stopped, and the bytes are the same.
 *
 * What was predicted lives in memory until the end; a pause writes it to
 * predict.part (per window: the outputs, then the spreads, f32 in this
 * machine's byte order) and then predict.cursor (JSON: windows done, the
 * spec, and FNV-1a hashes of the weights file and of the series), each
 * atomically.  A resume whose cursor does not match the spec, the weights
 * or the data starts again from the first window (the answer of a fresh
 * run is the right one then).  The finished files are written atomically
 * (temporary name, fsync, rename) and the cursor and part removed. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include <loom/compute.h>
#include <loom/safetensors.h>
#include <loom/spec.h>
#include <loom/util.h>

#include "batch.h"
#include "data.h"
#include "predict.h"
#include "spec.h"
#include "train.h"

#define DEFAULT_STRIDE 1
#define DEFAULT_BATCH 256
#define DEFAULT_PASSES 16   /* predict.c's, so that the default equals --predict --uncertainty */
#define MAX_BATCH 65536

/* ------------------------------------------------------------------ the spec */

static const loom_spec_field data_fields[] = {
	{"path", LOOM_SPEC_STRING, LOOM_SPEC_REQUIRED, NULL, 0, 0, NULL,
	 "the CSV file to predict over, or \"<storage-instance>:<key>\"", {NULL, NULL}},
	{"dataset", LOOM_SPEC_GROUP, 0, NULL, 0, 0, tf_dataset_fields,
	 "the dataset version path holds (loomd writes it)", {NULL, NULL}},
	LOOM_SPEC_END,
};

static const loom_spec_field predict_fields[] = {
	{"model_dir", LOOM_SPEC_STRING, LOOM_SPEC_REQUIRED, NULL, 0, 0, NULL,
	 "the output directory of a completed training run (its best.safetensors)", {NULL, NULL}},
	{"data", LOOM_SPEC_GROUP, LOOM_SPEC_REQUIRED, NULL, 0, 0, data_fields, NULL, {NULL, NULL}},
	{"stride", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 1, 1 << 20, NULL,
	 "rows between window starts", {NULL, NULL}},
	{"batch", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 1, MAX_BATCH, NULL,
	 "windows per predict call (one step: progress, pause and cancel between)", {NULL, NULL}},
	{"uncertainty", LOOM_SPEC_BOOL, 0, NULL, 0, 0, NULL,
	 "each forecast or regression value's spread (MC dropout or residual scale)", {NULL, NULL}},
	{"passes", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 2, 1024, NULL,
	 "Monte-Carlo-dropout passes per window, with uncertainty", {NULL, NULL}},
	{"model", LOOM_SPEC_STRING, 0, NULL, 0, 0, NULL,
	 "the registered model's name, copied into predictions.json", {NULL, NULL}},
	{"version", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 1, 9007199254740991.0, NULL,
	 "the registered model's version, copied into predictions.json", {NULL, NULL}},
	LOOM_SPEC_END,
};

/* data, model and train are taken (ANYGROUP) only to be refused with a
 * message saying why, rather than as unknown settings. */
static const loom_spec_field fields[] = {
	TF_SPEC_JOB_FIELDS,
	{"predict", LOOM_SPEC_GROUP, LOOM_SPEC_REQUIRED, NULL, 0, 0, predict_fields, NULL,
	 {NULL, NULL}},
	{"data", LOOM_SPEC_ANYGROUP, 0, NULL, 0, 0, NULL, NULL, {NULL, NULL}},
	{"model", LOOM_SPEC_ANYGROUP, 0, NULL, 0, 0, NULL, NULL, {NULL, NULL}},
	{"train", LOOM_SPEC_ANYGROUP, 0, NULL, 0, 0, NULL, NULL, {NULL, NULL}},
	LOOM_SPEC_END,
};

typedef struct bspec {
	json_t *doc;                /* the whole spec, defaults filled in */
	const char *model_dir;      /* these point into doc */
	const char *path;
	const char *model_name;     /* NULL: not given */
	int64_t version;            /* 0: not given */
	int64_t stride, batch, passes;
	bool uncertainty;
} bspec;

bool
tf_batch_is(const char *spec_text)
{
	loom_spec *sp = NULL;
	bool yes;

	if (spec_text == NULL || loom_spec_parse(spec_text, "spec", &sp) != 0) {
		loom_spec_free(sp);
		return false;
	}
	yes = loom_spec_has(sp, "predict");
	loom_spec_free(sp);
	return yes;
}

static void
bspec_free(bspec *b)
{
	json_decref(b->doc);
	memset(b, 0, sizeof *b);
}

/* Parse and check; 0, or LOOM_EINVAL / LOOM_ENOMEM with *err (free it). */
static int
bspec_parse(const char *text, bspec *b, char **err)
{
	static const char *const groups[] = {"data", "model", "train"};
	loom_spec *sp = NULL;
	const json_t *p;
	bool uncertainty = false;
	char *json;
	int rv;

	memset(b, 0, sizeof *b);
	*err = NULL;
	rv = loom_spec_parse(text, "spec", &sp);
	if (rv == 0) {
		loom_spec_check(sp, fields);
		for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
			if (loom_spec_has(sp, groups[i]))
				loom_spec_errorf(sp, groups[i],
				                 "a spec with a predict group is a batch prediction, which "
				                 "takes the data file from predict.data and everything else "
				                 "from its model (predict.model_dir); remove %s, or remove "
				                 "predict to train a model",
				                 groups[i]);
		loom_spec_get_bool(sp, "predict.uncertainty", &uncertainty);
		if (loom_spec_has(sp, "predict.passes") && !uncertainty)
			loom_spec_errorf(sp, "predict.passes",
			                 "Monte-Carlo-dropout passes are only run with predict.uncertainty "
			                 "= true; set it, or remove passes");
	}
	if (rv != 0 || loom_spec_error_count(sp) > 0) {
		*err = loom_spec_errors(sp);
		if (*err == NULL)
			*err = strdup(rv == LOOM_ENOMEM ? "out of memory reading the job spec"
			                                : "the job spec is invalid");
		loom_spec_free(sp);
		return rv == LOOM_ENOMEM ? LOOM_ENOMEM : LOOM_EINVAL;
	}
	loom_spec_default_string(sp, "name", "job");
	loom_spec_default_string(sp, "compute", "transformer");
	loom_spec_default_int(sp, "priority", 0);
	loom_spec_default_json(sp, "after", "[]");
	loom_spec_default_int(sp, "retries", 0);
	loom_spec_default_int(sp, "timeout", 0);
	loom_spec_default_double(sp, "resources.cpu", 1);
	loom_spec_default_int(sp, "resources.memory", 0);
	loom_spec_default_int(sp, "resources.gpu", 0);
	loom_spec_default_int(sp, "predict.stride", DEFAULT_STRIDE);
	loom_spec_default_int(sp, "predict.batch", DEFAULT_BATCH);
	loom_spec_default_bool(sp, "predict.uncertainty", false);
	if (uncertainty)
		loom_spec_default_int(sp, "predict.passes", DEFAULT_PASSES);
	json = loom_spec_json(sp);
	loom_spec_free(sp);
	b->doc = json ? json_loads(json, 0, NULL) : NULL;
	free(json);
	if (b->doc == NULL) {
		*err = strdup("out of memory reading the job spec");
		return LOOM_ENOMEM;
	}
	p = json_object_get(b->doc, "predict");
	b->model_dir = json_string_value(json_object_get(p, "model_dir"));
	b->path = json_string_value(json_object_get(json_object_get(p, "data"), "path"));
	b->model_name = json_string_value(json_object_get(p, "model"));
	b->version = json_integer_value(json_object_get(p, "version"));
	b->stride = json_integer_value(json_object_get(p, "stride"));
	b->batch = json_integer_value(json_object_get(p, "batch"));
	b->uncertainty = json_is_true(json_object_get(p, "uncertainty"));
	b->passes = b->uncertainty ? json_integer_value(json_object_get(p, "passes")) : 0;
	return 0;
}

int
tf_batch_validate(const loom_host *host, const char *spec_text, char **error)
{
	bspec b;
	char *err = NULL;
	int rv = bspec_parse(spec_text, &b, &err);

	if (rv == 0) {
		bspec_free(&b);
		return 0;
	}
	if (error && err && (*error = host->alloc(strlen(err) + 1)) != NULL)
		strcpy(*error, err);
	free(err);
	return rv;
}

/* ------------------------------------------------------------------ the run */

enum spread_kind {
	SPREAD_NONE = 0,            /* no spread asked for, or the task has none */
	SPREAD_MC_DROPOUT = 1,
	SPREAD_RESIDUAL_SCALE = 2,
};

typedef struct batch {
	const loom_host *host;
	loom_instance *ins;
	const loom_job *job;
	bspec bs;
	/* the model */
	void *model;
	json_t *info;               /* tf_model_open's description */
	const char *weights;        /* into info */
	json_t *mspec, *mdata;      /* the weights' metadata: the spec, the data */
	uint64_t weights_hash;
	int task;                   /* enum tf_task */
	int64_t L, H, C, K, J;      /* context, horizon, channels, targets, floats/window */
	json_t *channels, *targets, *classes; /* borrowed from mdata */
	double threshold;           /* anomaly */
	int spread;                 /* enum spread_kind */
	/* the data */
	tf_table table;
	bool table_up;
	tf_series series;
	float *xs;                  /* [R, C] the series as f32 */
	uint64_t series_hash;
	int64_t R, N;               /* series rows, windows */
	int *target_col;            /* [K] the table column of each target, or -1 */
	bool has_actual;
	/* the results */
	float *out, *sd;            /* [N, J]; sd NULL without a spread */
	int64_t chunk;              /* windows per step: predict.batch rounded up to a
	                             * multiple of the model's train.batch */
	float *win;                 /* [chunk, L, C] a chunk's windows */
	int64_t done;
} batch;

static void say(const batch *b, int level, const char *fmt, ...) LOOM_PRINTF(3, 4);

static void
say(const batch *b, int level, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (b->job && b->job->log)
		b->job->log(b->job, level, msg);
	else
		b->host->log(b->ins, level, "%s", msg);
}

static uint64_t
fnv1a(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}
#define FNV_BASIS UINT64_C(0xcbf29ce484222325)

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

static int
task_of(const char *name)
{
	static const char *const names[] = {"forecast", "regression", "classification", "anomaly"};
	for (int i = 0; name && i < 4; i++)
		if (strcmp(name, names[i]) == 0)
			return i + 1;
	return 0;
}

static const char *
name_at(const json_t *a, int64_t i)
{
	const char *s = json_string_value(json_array_get(a, (size_t)i));
	return s ? s : "";
}

/* What b->info (a model's description) and the metadata of its weights
 * say: the task, the window, the channels and targets, how the spec read
 * its data.  0, or a code with *err. */
static int
describe_model(batch *b, char **err)
{
	const json_t *in, *out, *shape;
	char *buf = NULL, *derr = NULL;
	size_t len = 0;
	loom_safetensors *f = NULL;
	const char *text;
	int rv;

	b->weights = json_string_value(json_object_get(b->info, "weights"));
	in = json_object_get(b->info, "input");
	out = json_object_get(b->info, "output");
	shape = json_object_get(in, "shape");
	b->task = task_of(json_string_value(json_object_get(b->info, "task")));
	b->L = json_integer_value(json_array_get(shape, 1));
	b->C = json_integer_value(json_array_get(shape, 2));
	if (b->weights == NULL || b->task == 0 || b->L < 1 || b->C < 1)
		return (*err = strdup("the model's description is incomplete")) ? LOOM_EINTERNAL
		                                                                  : LOOM_ENOMEM;
	/* the metadata, as the model read it, and the weights' hash */
	if (loom_file_read(b->weights, &buf, &len) != 0) {
		*err = loom_strfmt("cannot read %s: %s", b->weights, strerror(errno));
		return LOOM_EIO;
	}
	b->weights_hash = fnv1a(FNV_BASIS, buf, len);
	if ((rv = loom_safetensors_decode(buf, len, b->weights, &f, &derr)) != 0) {
		*err = derr;
		free(buf);
		return rv;
	}
	if ((text = loom_safetensors_meta_get(f, "spec")) != NULL)
		b->mspec = json_loads(text, 0, NULL);
	if ((text = loom_safetensors_meta_get(f, "data")) != NULL)
		b->mdata = json_loads(text, 0, NULL);
	loom_safetensors_free(f);
	free(buf);
	if (!json_is_object(b->mspec) || !json_is_object(b->mdata)) {
		*err = loom_strfmt("%s has no spec and data description in its metadata; it was not "
		                   "written by compute-transformer's training",
		                   b->weights);
		return LOOM_EINVAL;
	}
	b->channels = json_object_get(b->mdata, "inputs");
	b->targets = json_object_get(b->mdata, "targets");
	b->classes = json_object_get(b->mdata, "classes");
	b->K = (int64_t)json_array_size(b->targets);
	if ((int64_t)json_array_size(b->channels) != b->C) {
		*err = loom_strfmt("%s: the data description names %zu input channels, the model "
		                   "takes %lld",
		                   b->weights, json_array_size(b->channels), (long long)b->C);
		return LOOM_EINVAL;
	}
	switch (b->task) {
	case TF_TASK_FORECAST:
		b->H = json_integer_value(json_array_get(json_object_get(out, "shape"), 1));
		b->J = b->H * b->K;
		break;
	case TF_TASK_REGRESSION: b->J = b->K; break;
	case TF_TASK_CLASSIFICATION: b->J = (int64_t)json_array_size(b->classes); break;
	default:
		b->J = 1;
		b->threshold = json_number_value(json_object_get(out, "threshold"));
		break;
	}
	if (b->J < 1) {
		*err = loom_strfmt("%s: the model's output is empty", b->weights);
		return LOOM_EINVAL;
	}
	return 0;
}

/* The model, its description and the metadata of its weights. */
static int
open_model(batch *b, int threads, char **err)
{
	const bspec *s = &b->bs;
	char *info_text = NULL;
	const char *method;
	int rv;

	rv = tf_model_open(b->host, b->ins, s->model_dir, threads, &b->model, &info_text);
	if (rv != 0) {
		*err = loom_strfmt("predict.model_dir: cannot open the model in %s (%s, see above); "
		                   "give the output directory of a completed training run",
		                   s->model_dir, loom_strerror(rv));
		return rv;
	}
	b->info = json_loads(info_text, 0, NULL);
	b->host->free(info_text);
	if ((rv = describe_model(b, err)) != 0)
		return rv;
	/* tf_predict runs a call's windows in runs of the model's train.batch
	 * from the first, and a window's last bits depend on the run it is in
	 * (the matrix kernels block by its size): steps of whole runs make
	 * every window's answer the one of a single predict call over all of
	 * them, whatever predict.batch is and wherever a pause falls. */
	{
		int64_t tb = json_integer_value(json_object_get(json_object_get(b->mspec, "train"),
		                                                "batch"));
		if (tb < 1)
			tb = 1;
		b->chunk = (s->batch + tb - 1) / tb * tb;
		if (b->chunk != s->batch)
			say(b, LOOM_LOG_INFO,
			    "predict.batch %lld rounded up to %lld, a multiple of the model's "
			    "train.batch (%lld), so that each window meets the same neighbours as in "
			    "one predict call over all windows",
			    (long long)s->batch, (long long)b->chunk, (long long)tb);
	}
	/* which spread */
	method = json_string_value(json_object_get(json_object_get(b->info, "uncertainty"),
	                                           "method"));
	if (s->uncertainty && (b->task == TF_TASK_FORECAST || b->task == TF_TASK_REGRESSION)) {
		if (method && strcmp(method, "mc_dropout") == 0)
			b->spread = SPREAD_MC_DROPOUT;
		else if (method && strcmp(method, "residual_scale") == 0)
			b->spread = SPREAD_RESIDUAL_SCALE;
		else {
			*err = loom_strfmt("predict.uncertainty: the model in %s tells no uncertainty "
			                   "(trained with dropout 0 before validation residuals were "
			                   "saved); retrain it, or set uncertainty = false",
			                   s->model_dir);
			return LOOM_ENOTSUP;
		}
	} else if (s->uncertainty) {
		say(b, LOOM_LOG_INFO,
		    "predict.uncertainty: a %s model's answer is its own confidence (%s); no "
		    "spread is added",
		    task_name(b->task),
		    b->task == TF_TASK_CLASSIFICATION ? "the class probabilities"
		                                      : "the score and its threshold");
	}
	return 0;
}

static int
fill_of(const char *name)
{
	static const char *const fills[] = {"none", "ffill", "linear", "zero"};
	for (int i = 0; name && i < 4; i++)
		if (strcmp(name, fills[i]) == 0)
			return i;
	return TF_FILL_NONE;
}

/* The file, read as the model's spec says, into the series. */
static int
read_data(batch *b, char **err)
{
	const char *path = b->bs.path, *time_column, *fill_name;
	const json_t *data = json_object_get(b->mspec, "data");
	const char **names = NULL;
	char *local = NULL;
	tf_load_control lc = {b->job, LOOM_CONTROL_RUN};
	tf_stop stop = {tf_load_stop_requested, &lc};
	int fill, rv;

	if (path[0] != '/' && strchr(path, ':') != NULL) {
		if ((rv = b->host->storage_path(b->ins, path, &local)) != 0) {
			*err = loom_strfmt("predict.data.path: cannot open \"%s\" through its storage "
			                   "plugin: %s; check the instance name and the key",
			                   path, loom_strerror(rv));
			return LOOM_EINVAL;
		}
		path = local;
	}
	rv = tf_csv_read(path, &stop, &b->table, err);
	if (local)
		b->host->free(local);
	if (rv == LOOM_ECANCELED) {
		free(*err);
		*err = NULL;
		if (lc.answer == LOOM_CONTROL_PAUSE) {
			say(b, LOOM_LOG_INFO, "paused while reading the data (no window predicted yet)");
			return LOOM_EPAUSED;
		}
		say(b, LOOM_LOG_INFO, "cancelled while reading the data");
		return rv;
	}
	if (rv != 0)
		return rv;
	b->table_up = true;
	time_column = json_string_value(json_object_get(data, "time_column"));
	fill_name = json_string_value(json_object_get(data, "fill"));
	fill = fill_of(fill_name);
	if ((names = calloc((size_t)b->C, sizeof *names)) == NULL)
		return LOOM_ENOMEM;
	for (int64_t c = 0; c < b->C; c++)
		names[c] = json_string_value(json_array_get(b->channels, (size_t)c));
	rv = tf_series_build(&b->table, time_column, names, (size_t)b->C, fill, &b->series, err);
	free(names);
	if (rv == LOOM_EINVAL && fill == TF_FILL_NONE && *err && strstr(*err, "data.fill")) {
		char *more = loom_strfmt("%s (a batch prediction fills gaps as its model was trained "
		                         "to, and this one was trained with data.fill \"none\": fill "
		                         "the gaps in the file, or retrain the model with a fill)",
		                         *err);
		if (more) {
			free(*err);
			*err = more;
		}
	}
	if (rv != 0)
		return rv;
	b->R = b->series.rows;
	if (b->series.unordered > 0)
		say(b, LOOM_LOG_WARN, "%s: %lld rows were out of time order and were sorted by \"%s\"",
		    b->table.path, (long long)b->series.unordered, time_column);
	if (b->series.filled > 0)
		say(b, LOOM_LOG_INFO, "%s: %lld missing values filled (%s)", b->table.path,
		    (long long)b->series.filled, fill_name ? fill_name : "none");
	if (b->R < b->L) {
		*err = loom_strfmt("%s: %lld rows; the model reads windows of %lld rows (its "
		                   "model.context), so give a file with at least %lld rows",
		                   b->table.path, (long long)b->R, (long long)b->L, (long long)b->L);
		return LOOM_EINVAL;
	}
	b->N = (b->R - b->L) / b->bs.stride + 1;
	if ((b->xs = calloc((size_t)(b->R * b->C), sizeof *b->xs)) == NULL)
		return LOOM_ENOMEM;
	for (int64_t i = 0; i < b->R * b->C; i++) {
		b->xs[i] = (float)b->series.x[i];
		if (!isfinite(b->xs[i])) {
			int64_t r = i / b->C;
			*err = loom_strfmt("%s:%lld: column \"%s\": the value does not fit a 32-bit float; "
			                   "the model reads f32",
			                   b->table.path, (long long)b->table.line[b->series.row[r]],
			                   name_at(b->channels, i % b->C));
			return LOOM_EINVAL;
		}
	}
	b->series_hash = fnv1a(FNV_BASIS, b->xs, (size_t)(b->R * b->C) * sizeof *b->xs);
	/* the targets, where the file has them */
	if ((b->target_col = calloc((size_t)(b->K ? b->K : 1), sizeof *b->target_col)) == NULL)
		return LOOM_ENOMEM;
	for (int64_t k = 0; k < b->K; k++) {
		const char *name = json_string_value(json_array_get(b->targets, (size_t)k));
		int col = name ? tf_table_column(&b->table, name) : -1;
		b->target_col[k] = col;
		if (col < 0)
			continue;
		b->has_actual = true;
		if (b->task != TF_TASK_CLASSIFICATION && b->table.num[col] == NULL) {
			*err = loom_strfmt("%s:%lld: column \"%s\", the model's %s, holds values that are "
			                   "not numbers; fix them, or leave the column out to predict "
			                   "without actual values",
			                   b->table.path, (long long)b->table.header_line, name,
			                   b->task == TF_TASK_ANOMALY ? "0/1 label" : "target");
			return LOOM_EINVAL;
		}
	}
	return 0;
}

/* The table value of target k at series row r; NAN when unknown. */
static double
actual_at(const batch *b, int64_t k, int64_t r)
{
	int col = b->target_col[k];
	if (col < 0 || r < 0 || r >= b->R)
		return NAN;
	return b->table.num[col][b->series.row[r]];
}

/* ------------------------------------------------------------------ pause and resume */

static char *
out_path(const batch *b, const char *name)
{
	return loom_strfmt("%s/%s", b->job->out_dir, name);
}

static int64_t
rec_floats(const batch *b)
{
	return b->J * (b->sd ? 2 : 1);
}

static json_t *
cursor_doc(const batch *b, int64_t done)
{
	char wh[24], sh[24];
	snprintf(wh, sizeof wh, "%016llx", (unsigned long long)b->weights_hash);
	snprintf(sh, sizeof sh, "%016llx", (unsigned long long)b->series_hash);
	return json_pack("{s:I, s:I, s:I, s:O, s:s, s:s, s:s}", "windows_done", (json_int_t)done,
	                 "windows", (json_int_t)b->N, "record_floats", (json_int_t)rec_floats(b),
	                 "spec", b->bs.doc, "weights", b->weights, "weights_fnv1a", wh,
	                 "series_fnv1a", sh);
}

/* predict.part, then predict.cursor, each atomically. */
static int
save_cursor(batch *b, char **err)
{
	int64_t F = rec_floats(b);
	size_t bytes = (size_t)(b->done * F) * sizeof(float);
	float *rec = malloc(bytes ? bytes : 1);
	char *part = out_path(b, "predict.part"), *cur = out_path(b, "predict.cursor");
	json_t *doc = cursor_doc(b, b->done);
	char *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
	int rv = 0;

	if (rec == NULL || part == NULL || cur == NULL || text == NULL) {
		rv = LOOM_ENOMEM;
		goto out;
	}
	for (int64_t i = 0; i < b->done; i++) {
		memcpy(rec + i * F, b->out + i * b->J, (size_t)b->J * sizeof *rec);
		if (b->sd)
			memcpy(rec + i * F + b->J, b->sd + i * b->J, (size_t)b->J * sizeof *rec);
	}
	if (loom_file_write_atomic(part, rec, bytes, 0644) != 0 ||
	    loom_file_write_atomic(cur, text, strlen(text), 0644) != 0) {
		*err = loom_strfmt("cannot write the cursor into %s: %s", b->job->out_dir,
		                   strerror(errno));
		rv = LOOM_EIO;
	}
out:
	free(rec);
	free(part);
	free(cur);
	free(text);
	json_decref(doc);
	return rv;
}

/* The cursor of a paused run: what it had predicted, when it is this
 * run's (the same spec, weights and series); else from the start. */
static void
load_cursor(batch *b)
{
	char *cur = out_path(b, "predict.cursor"), *part = out_path(b, "predict.part");
	char *text = NULL, *data = NULL;
	size_t len = 0;
	json_t *doc = NULL, *want = NULL;
	int64_t done, F = rec_floats(b);

	if (cur == NULL || part == NULL || loom_file_read(cur, &text, NULL) != 0) {
		say(b, LOOM_LOG_INFO, "resuming: no predict.cursor in %s, so from the first window",
		    b->job->out_dir);
		goto out;
	}
	doc = json_loads(text, 0, NULL);
	done = (int64_t)json_integer_value(json_object_get(doc, "windows_done"));
	want = cursor_doc(b, done);
	if (doc == NULL || !json_equal(doc, want) || done < 0 || done > b->N) {
		say(b, LOOM_LOG_WARN,
		    "resuming: %s was written for another spec, model or data; predicting from the "
		    "first window",
		    cur);
		goto out;
	}
	if (loom_file_read(part, &data, &len) != 0 || len < (size_t)(done * F) * sizeof(float)) {
		say(b, LOOM_LOG_WARN, "resuming: %s is missing or short; predicting from the first "
		                      "window",
		    part);
		goto out;
	}
	for (int64_t i = 0; i < done; i++) {
		memcpy(b->out + i * b->J, data + (size_t)(i * F) * sizeof(float),
		       (size_t)b->J * sizeof(float));
		if (b->sd)
			memcpy(b->sd + i * b->J, data + (size_t)(i * F + b->J) * sizeof(float),
			       (size_t)b->J * sizeof(float));
	}
	b->done = done;
	say(b, LOOM_LOG_INFO, "resuming from %s: %lld of %lld windows done", cur, (long long)done,
	    (long long)b->N);
out:
	free(cur);
	free(part);
	free(text);
	free(data);
	json_decref(doc);
	json_decref(want);
}

/* ------------------------------------------------------------------ predicting */

static int
predict_chunk(batch *b, int64_t at, int64_t n)
{
	loom_tensor in, out, spread;
	char opts[64];
	int rv;

	for (int64_t i = 0; i < n; i++)
		memcpy(b->win + i * b->L * b->C, b->xs + (at + i) * b->bs.stride * b->C,
		       (size_t)(b->L * b->C) * sizeof *b->win);
	memset(&in, 0, sizeof in);
	in.dtype = LOOM_DTYPE_F32;
	in.ndim = 3;
	in.dims[0] = n;
	in.dims[1] = b->L;
	in.dims[2] = b->C;
	in.data = b->win;
	in.nbytes = (size_t)(n * b->L * b->C) * sizeof(float);
	if (b->sd) {
		snprintf(opts, sizeof opts, "{\"passes\": %lld}", (long long)b->bs.passes);
		rv = tf_predict_spread(b->model, &in, &out, &spread, opts);
	} else {
		rv = tf_predict(b->model, &in, &out);
		memset(&spread, 0, sizeof spread);
	}
	if (rv != 0)
		return rv;
	if (out.nbytes != (size_t)(n * b->J) * sizeof(float) ||
	    (b->sd && (spread.data == NULL || spread.nbytes != out.nbytes))) {
		rv = LOOM_EINTERNAL;
	} else {
		memcpy(b->out + at * b->J, out.data, out.nbytes);
		if (b->sd)
			memcpy(b->sd + at * b->J, spread.data, spread.nbytes);
	}
	b->host->tensor_free(out.data);
	if (spread.data)
		b->host->tensor_free(spread.data);
	return rv;
}

/* ------------------------------------------------------------------ the files */

/* A CSV field: quoted when it holds a comma, a quote, a line break or
 * leading or trailing blanks. */
static void
csv_field(FILE *f, const char *s)
{
	size_t n = strlen(s);
	if (strpbrk(s, ",\"\r\n") == NULL && (n == 0 || (s[0] != ' ' && s[0] != '\t' &&
	                                                  s[n - 1] != ' ' && s[n - 1] != '\t'))) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

/* A header field "prefix name suffix". */
static void
csv_name(FILE *f, const char *prefix, const char *name, const char *suffix)
{
	char *s = loom_strfmt("%s%s%s", prefix, name, suffix);
	csv_field(f, s ? s : "");
	free(s);
}

/* A number as %.9g (an f32 reads back to the same bits); nothing when it
 * is unknown. */
static void
csv_num(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, ",%.9g", v);
	else if (isnan(v))
		fputc(',', f);
	else
		fprintf(f, ",%s", v > 0 ? "inf" : "-inf");
}

static void
json_num(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, "%.9g", v);
	else
		fputs("null", f);
}

/* A JSON string: valid UTF-8 copied, other bytes as U+FFFD, controls,
 * quotes and backslashes escaped. */
static void
json_str(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	fputc('"', f);
	while (*p) {
		unsigned char c = *p;
		size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
		bool ok = len > 0;
		for (size_t i = 1; ok && i < len; i++)
			ok = (p[i] & 0xC0) == 0x80;
		if (ok && len == 2 && c < 0xC2)
			ok = false;                         /* overlong */
		if (ok && len == 3 && ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0)))
			ok = false;                         /* overlong, surrogate */
		if (ok && len == 4 && ((c == 0xF0 && p[1] < 0x90) || c > 0xF4 ||
		                       (c == 0xF4 && p[1] >= 0x90)))
			ok = false;                         /* overlong, past U+10FFFF */
		if (!ok) {
			fputs("\\ufffd", f);
			p++;
			continue;
		}
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fwrite(p, 1, len, f);
		p += len;
	}
	fputc('"', f);
}

/* The time column's text at series row r ("" without one). */
static const char *
time_at(const batch *b, int64_t r)
{
	if (b->series.time_col < 0)
		return "";
	return b->table.text[b->series.time_col][b->series.row[r]];
}

static int64_t
first_row(const batch *b, int64_t w)
{
	return w * b->bs.stride;
}

static int64_t
line_of(const batch *b, int64_t r)
{
	return b->table.line[b->series.row[r]];
}

/* Classification: the top class (the first on a tie), its probability and
 * its lead over the runner-up. */
static void
top_two(const batch *b, int64_t w, int64_t *cls, float *conf, float *margin)
{
	const float *p = b->out + w * b->J;
	int64_t best = 0, second = -1;

	for (int64_t c = 1; c < b->J; c++) {
		if (p[c] > p[best]) {
			second = best;
			best = c;
		} else if (second < 0 || p[c] > p[second]) {
			second = c;
		}
	}
	*cls = best;
	*conf = p[best];
	*margin = second >= 0 ? p[best] - p[second] : p[best];
}

/* The label text at the window's last row, or NULL when unknown. */
static const char *
label_at(const batch *b, int64_t w)
{
	int col = b->target_col[0];
	const char *s;
	if (!b->has_actual || col < 0)
		return NULL;
	s = b->table.text[col][b->series.row[first_row(b, w) + b->L - 1]];
	return s[strspn(s, " \t")] ? s : NULL;
}

/* Anomaly: 1 when a row of the window is labelled 1, 0 when all are 0,
 * else unknown (as training labels a window). */
static double
anomaly_label(const batch *b, int64_t w)
{
	bool unknown = false;
	for (int64_t r = first_row(b, w); r < first_row(b, w) + b->L; r++) {
		double v = actual_at(b, 0, r);
		if (v == 1)
			return 1;
		if (v != 0)
			unknown = true;
	}
	return unknown ? NAN : 0;
}

/* Output value j of window w's actual value (forecast, regression). */
static double
actual_value(const batch *b, int64_t w, int64_t j)
{
	if (b->task == TF_TASK_FORECAST)
		return actual_at(b, j % b->K, first_row(b, w) + b->L + j / b->K);
	return actual_at(b, j, first_row(b, w) + b->L - 1);
}

static char *
write_csv(const batch *b, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);
	int64_t K = b->K, H = b->H, J = b->J;

	if (f == NULL)
		return NULL;
	fputs("window,first_line,last_line,time", f);
	switch (b->task) {
	case TF_TASK_CLASSIFICATION:
		fputs(",predicted,confidence,margin", f);
		for (int64_t c = 0; c < J; c++) {
			fputc(',', f);
			csv_name(f, "p_", name_at(b->classes, c), "");
		}
		if (b->has_actual)
			fputs(",actual", f);
		break;
	case TF_TASK_FORECAST:
		for (int pass = 0; pass < 3; pass++) {
			if ((pass == 1 && !b->sd) || (pass == 2 && !b->has_actual))
				continue;
			for (int64_t k = 0; k < K; k++)
				for (int64_t h = 1; h <= H; h++) {
					char mid[48];
					snprintf(mid, sizeof mid, "_h%lld%s", (long long)h, pass == 1 ? "_sd" : "");
					fputc(',', f);
					csv_name(f, pass == 2 ? "actual_" : "", name_at(b->targets, k), mid);
				}
		}
		break;
	case TF_TASK_REGRESSION:
		for (int pass = 0; pass < 3; pass++) {
			if ((pass == 1 && !b->sd) || (pass == 2 && !b->has_actual))
				continue;
			for (int64_t k = 0; k < K; k++) {
				fputc(',', f);
				csv_name(f, pass == 2 ? "actual_" : "", name_at(b->targets, k),
				         pass == 1 ? "_sd" : "");
			}
		}
		break;
	default:
		fputs(",score,anomalous", f);
		if (b->has_actual)
			fputs(",actual", f);
		break;
	}
	fputs("\r\n", f);
	for (int64_t w = 0; w < b->N; w++) {
		int64_t r0 = first_row(b, w), r1 = r0 + b->L - 1;
		const float *o = b->out + w * J;
		fprintf(f, "%lld,%lld,%lld,", (long long)w, (long long)line_of(b, r0),
		        (long long)line_of(b, r1));
		csv_field(f, time_at(b, r1));
		switch (b->task) {
		case TF_TASK_CLASSIFICATION: {
			int64_t cls;
			float conf, margin;
			const char *label = label_at(b, w);
			top_two(b, w, &cls, &conf, &margin);
			fputc(',', f);
			csv_field(f, name_at(b->classes, cls));
			csv_num(f, conf);
			csv_num(f, margin);
			for (int64_t c = 0; c < J; c++)
				csv_num(f, o[c]);
			if (b->has_actual) {
				fputc(',', f);
				csv_field(f, label ? label : "");
			}
			break;
		}
		case TF_TASK_FORECAST:
		case TF_TASK_REGRESSION: {
			int64_t HH = b->task == TF_TASK_FORECAST ? H : 1;
			for (int pass = 0; pass < 3; pass++) {
				if ((pass == 1 && !b->sd) || (pass == 2 && !b->has_actual))
					continue;
				for (int64_t k = 0; k < K; k++)
					for (int64_t h = 0; h < HH; h++) {
						int64_t j = h * K + k;
						csv_num(f, pass == 0   ? o[j]
						           : pass == 1 ? b->sd[w * J + j]
						                       : actual_value(b, w, j));
					}
			}
			break;
		}
		default:
			csv_num(f, o[0]);
			fprintf(f, ",%d", o[0] > b->threshold ? 1 : 0);
			if (b->has_actual)
				csv_num(f, anomaly_label(b, w));
			break;
		}
		fputs("\r\n", f);
	}
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static void
json_names(FILE *f, const json_t *a)
{
	fputc('[', f);
	for (size_t i = 0; i < json_array_size(a); i++) {
		if (i)
			fputs(", ", f);
		json_str(f, name_at(a, (int64_t)i));
	}
	fputc(']', f);
}

/* An [N] array of int64 values of fn. */
static void
json_ints(FILE *f, const batch *b, int64_t n, int64_t (*fn)(const batch *, int64_t))
{
	fputc('[', f);
	for (int64_t i = 0; i < n; i++)
		fprintf(f, "%s%lld", i ? "," : "", (long long)fn(b, i));
	fputc(']', f);
}

static int64_t
first_line_of(const batch *b, int64_t w)
{
	return line_of(b, first_row(b, w));
}

static int64_t
last_line_of(const batch *b, int64_t w)
{
	return line_of(b, first_row(b, w) + b->L - 1);
}

/* [N][J] rows of v. */
static void
json_rows(FILE *f, const batch *b, const float *v)
{
	fputs("[\n", f);
	for (int64_t w = 0; w < b->N; w++) {
		fputs("    [", f);
		for (int64_t j = 0; j < b->J; j++) {
			if (j)
				fputc(',', f);
			json_num(f, v[w * b->J + j]);
		}
		fputs(w + 1 < b->N ? "],\n" : "]\n", f);
	}
	fputs("  ]", f);
}

static char *
write_json(const batch *b, const json_t *metrics, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);
	const char *method = b->spread == SPREAD_MC_DROPOUT       ? "mc_dropout"
	                     : b->spread == SPREAD_RESIDUAL_SCALE ? "residual_scale"
	                                                          : NULL;

	if (f == NULL)
		return NULL;
	fputs("{\n  \"model\": {\"dir\": ", f);
	json_str(f, b->bs.model_dir);
	if (b->bs.model_name) {
		fputs(", \"name\": ", f);
		json_str(f, b->bs.model_name);
	}
	if (b->bs.version > 0)
		fprintf(f, ", \"version\": %lld", (long long)b->bs.version);
	fputs("},\n  \"task\": ", f);
	json_str(f, task_name(b->task));
	fputs(",\n  \"data\": ", f);
	json_str(f, b->bs.path);
	fprintf(f, ",\n  \"rows\": %lld,\n  \"context\": %lld,\n  \"stride\": %lld,\n",
	        (long long)b->R, (long long)b->L, (long long)b->bs.stride);
	if (b->task == TF_TASK_FORECAST)
		fprintf(f, "  \"horizon\": %lld,\n", (long long)b->H);
	fputs("  \"channels\": ", f);
	json_names(f, b->channels);
	if (b->task == TF_TASK_CLASSIFICATION) {
		fputs(",\n  \"classes\": ", f);
		json_names(f, b->classes);
	}
	if (b->task == TF_TASK_FORECAST || b->task == TF_TASK_REGRESSION) {
		fputs(",\n  \"targets\": ", f);
		json_names(f, b->targets);
	}
	if (b->task == TF_TASK_ANOMALY) {
		fputs(",\n  \"threshold\": ", f);
		json_num(f, (float)b->threshold);
	}
	fprintf(f, ",\n  \"series\": {\"file\": \"inputs.f32\", \"rows\": %lld, \"channels\": %lld, "
	           "\"dtype\": \"f32le\"},\n  \"windows\": %lld,\n  \"start\": ",
	        (long long)b->R, (long long)b->C, (long long)b->N);
	json_ints(f, b, b->N, first_row);
	fputs(",\n  \"first_line\": ", f);
	json_ints(f, b, b->N, first_line_of);
	fputs(",\n  \"last_line\": ", f);
	json_ints(f, b, b->N, last_line_of);
	fputs(",\n  \"time\": ", f);
	if (b->series.time_col < 0) {
		fputs("null", f);
	} else {
		fputc('[', f);
		for (int64_t r = 0; r < b->R; r++) {
			if (r)
				fputc(',', f);
			json_str(f, time_at(b, r));
		}
		fputc(']', f);
	}
	fputs(",\n  \"output\": ", f);
	json_rows(f, b, b->out);
	fputs(",\n  \"uncertainty\": ", f);
	if (b->sd)
		json_rows(f, b, b->sd);
	else
		fputs("null", f);
	fputs(",\n  \"uncertainty_method\": ", f);
	if (method)
		json_str(f, method);
	else
		fputs("null", f);
	if (b->task == TF_TASK_CLASSIFICATION) {
		for (int part = 0; part < 3; part++) {
			static const char *const keys[] = {"predicted", "confidence", "margin"};
			fprintf(f, ",\n  \"%s\": [", keys[part]);
			for (int64_t w = 0; w < b->N; w++) {
				int64_t cls;
				float conf, margin;
				top_two(b, w, &cls, &conf, &margin);
				if (w)
					fputc(',', f);
				if (part == 0)
					json_str(f, name_at(b->classes, cls));
				else
					json_num(f, part == 1 ? conf : margin);
			}
			fputc(']', f);
		}
	}
	fputs(",\n  \"actual\": ", f);
	if (!b->has_actual) {
		fputs("null", f);
	} else {
		fputc('[', f);
		for (int64_t w = 0; w < b->N; w++) {
			if (w)
				fputc(',', f);
			if (b->task == TF_TASK_CLASSIFICATION) {
				const char *label = label_at(b, w);
				if (label)
					json_str(f, label);
				else
					fputs("null", f);
			} else if (b->task == TF_TASK_ANOMALY) {
				json_num(f, anomaly_label(b, w));
			} else {
				fputc('[', f);
				for (int64_t j = 0; j < b->J; j++) {
					if (j)
						fputc(',', f);
					json_num(f, actual_value(b, w, j));
				}
				fputc(']', f);
			}
		}
		fputc(']', f);
	}
	{
		char *m = json_dumps(metrics, JSON_COMPACT | JSON_PRESERVE_ORDER);
		fprintf(f, ",\n  \"metrics\": %s\n}\n", m ? m : "{}");
		free(m);
	}
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* inputs.f32: the series, little-endian f32 [R, C]. */
static unsigned char *
write_series(const batch *b, size_t *len)
{
	size_t n = (size_t)(b->R * b->C);
	unsigned char *buf = malloc(n > 0 ? n * 4 : 1);

	if (buf == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, &b->xs[i], 4);
		buf[4 * i] = (unsigned char)u;
		buf[4 * i + 1] = (unsigned char)(u >> 8);
		buf[4 * i + 2] = (unsigned char)(u >> 16);
		buf[4 * i + 3] = (unsigned char)(u >> 24);
	}
	*len = n * 4;
	return buf;
}

static void
metric(const batch *b, const char *name, double value)
{
	loom_metric_point pt = {.name = name, .step = b->N, .epoch = 1, .scope = LOOM_METRIC_FINAL,
	                        .wall_ms = b->host->clock_wall_ms(), .value = value};
	if (b->job->metric)
		b->job->metric(b->job, &pt);
}

/* Accuracy or MAE over the windows with actual values, into metrics. */
static json_t *
score(const batch *b)
{
	json_t *m = json_pack("{s:I}", "windows", (json_int_t)b->N);
	double sum = 0;
	int64_t n = 0;

	if (!b->has_actual)
		return m;
	for (int64_t w = 0; w < b->N; w++) {
		if (b->task == TF_TASK_CLASSIFICATION) {
			const char *label = label_at(b, w);
			int64_t cls;
			float conf, margin;
			if (label == NULL)
				continue;
			top_two(b, w, &cls, &conf, &margin);
			sum += strcmp(label, name_at(b->classes, cls)) == 0;
			n++;
		} else if (b->task == TF_TASK_FORECAST || b->task == TF_TASK_REGRESSION) {
			for (int64_t j = 0; j < b->J; j++) {
				double a = actual_value(b, w, j);
				if (isnan(a))
					continue;
				sum += fabs((double)b->out[w * b->J + j] - a);
				n++;
			}
		}
	}
	if (n > 0 && b->task == TF_TASK_CLASSIFICATION)
		json_object_set_new(m, "accuracy", json_real(sum / (double)n));
	else if (n > 0 && b->task != TF_TASK_ANOMALY)
		json_object_set_new(m, "mae", json_real(sum / (double)n));
	if (b->task != TF_TASK_ANOMALY)
		json_object_set_new(m, b->task == TF_TASK_CLASSIFICATION ? "labelled_windows"
		                                                          : "actual_values",
		                    json_integer(n));
	return m;
}

static int
finish(batch *b, char **err)
{
	static const char *const names[] = {"inputs.f32", "predictions.csv", "predictions.json"};
	json_t *m = score(b);
	void *data[3] = {NULL, NULL, NULL};
	size_t len[3] = {0, 0, 0};
	int rv = 0;

	data[0] = write_series(b, &len[0]);
	data[1] = write_csv(b, &len[1]);
	data[2] = write_json(b, m, &len[2]);
	for (int i = 0; i < 3 && rv == 0; i++) {
		char *path = out_path(b, names[i]);
		if (data[i] == NULL || path == NULL) {
			rv = LOOM_ENOMEM;
		} else if (loom_file_write_atomic(path, data[i], len[i], 0644) != 0) {
			*err = loom_strfmt("cannot write %s: %s", path, strerror(errno));
			rv = LOOM_EIO;
		}
		free(path);
	}
	for (int i = 0; i < 3; i++) {
		char *path = out_path(b, names[i]);
		if (rv == 0 && path && b->job->artifact)
			b->job->artifact(b->job, names[i], path);
		free(path);
		free(data[i]);
	}
	if (rv == 0) {
		char *cur = out_path(b, "predict.cursor"), *part = out_path(b, "predict.part");
		const json_t *acc = json_object_get(m, "accuracy"), *mae = json_object_get(m, "mae");
		if (cur)
			unlink(cur);
		if (part)
			unlink(part);
		free(cur);
		free(part);
		metric(b, "predict/windows", (double)b->N);
		if (acc)
			metric(b, "predict/accuracy", json_real_value(acc));
		if (mae)
			metric(b, "predict/mae", json_real_value(mae));
		if (acc || mae)
			say(b, LOOM_LOG_INFO, "predicted %lld windows of %lld rows: %s %.6g over the "
			                      "windows with actual values",
			    (long long)b->N, (long long)b->R, acc ? "accuracy" : "MAE",
			    json_real_value(acc ? acc : mae));
		else
			say(b, LOOM_LOG_INFO, "predicted %lld windows of %lld rows", (long long)b->N,
			    (long long)b->R);
	}
	json_decref(m);
	return rv;
}

/* ------------------------------------------------------------------ the job */

static int
write_spec(batch *b, char **err)
{
	char *path = out_path(b, "job.json");
	char *text = json_dumps(b->bs.doc, JSON_INDENT(2) | JSON_SORT_KEYS);
	int rv = 0;

	if (path == NULL || text == NULL)
		rv = LOOM_ENOMEM;
	else if (loom_file_write_atomic(path, text, strlen(text), 0644) != 0) {
		*err = loom_strfmt("cannot write %s: %s", path, strerror(errno));
		rv = LOOM_EIO;
	}
	free(path);
	free(text);
	return rv;
}

static void
teardown(batch *b)
{
	if (b->model)
		tf_model_close(b->model);
	json_decref(b->info);
	json_decref(b->mspec);
	json_decref(b->mdata);
	if (b->table_up)
		tf_table_free(&b->table);
	tf_series_free(&b->series);
	free(b->xs);
	free(b->target_col);
	free(b->out);
	free(b->sd);
	free(b->win);
	bspec_free(&b->bs);
}

int
tf_batch_run(const loom_host *host, loom_instance *ins, int threads, const loom_job *job)
{
	batch b;
	char *err = NULL;
	int64_t chunk, steps;
	int rv;

	memset(&b, 0, sizeof b);
	b.host = host;
	b.ins = ins;
	b.job = job;
	if ((rv = bspec_parse(job->spec_json, &b.bs, &err)) != 0)
		goto out;
	if (loom_mkdir_p(job->out_dir, 0755) != 0) {
		err = loom_strfmt("cannot create the output directory %s: %s", job->out_dir,
		                  strerror(errno));
		rv = LOOM_EIO;
		goto out;
	}
	if (!(job->flags & LOOM_JOB_RESUME) && (rv = write_spec(&b, &err)) != 0)
		goto out;
	if ((rv = open_model(&b, threads, &err)) != 0 || (rv = read_data(&b, &err)) != 0)
		goto out;
	chunk = b.chunk;
	steps = (b.N + chunk - 1) / chunk;
	if ((b.out = calloc((size_t)(b.N * b.J), sizeof *b.out)) == NULL ||
	    (b.spread && (b.sd = calloc((size_t)(b.N * b.J), sizeof *b.sd)) == NULL) ||
	    (b.win = calloc((size_t)((chunk < b.N ? chunk : b.N) * b.L * b.C), sizeof *b.win)) ==
	        NULL) {
		rv = LOOM_ENOMEM;
		goto out;
	}
	if (job->flags & LOOM_JOB_RESUME)
		load_cursor(&b);
	say(&b, LOOM_LOG_INFO,
	    "predicting %lld windows of %lld rows (stride %lld) from %s with the %s model in %s, "
	    "%lld per step",
	    (long long)b.N, (long long)b.L, (long long)b.bs.stride, b.table.path, task_name(b.task),
	    b.bs.model_dir, (long long)chunk);
	while (b.done < b.N) {
		int ctl = job->control ? job->control(job) : LOOM_CONTROL_RUN;
		int64_t step = b.done / chunk, n = b.N - b.done < chunk ? b.N - b.done : chunk;

		if (ctl == LOOM_CONTROL_CANCEL) {
			say(&b, LOOM_LOG_INFO, "cancelled after %lld of %lld windows", (long long)b.done,
			    (long long)b.N);
			rv = LOOM_ECANCELED;
			goto out;
		}
		if (ctl == LOOM_CONTROL_PAUSE || (job->max_steps > 0 && step >= job->max_steps)) {
			if ((rv = save_cursor(&b, &err)) == 0) {
				say(&b, LOOM_LOG_INFO, "paused after step %lld of %lld: %lld of %lld windows "
				                       "(cursor written)",
				    (long long)step, (long long)steps, (long long)b.done, (long long)b.N);
				rv = LOOM_EPAUSED;
			}
			goto out;
		}
		if ((rv = predict_chunk(&b, b.done, n)) != 0) {
			err = loom_strfmt("predicting windows %lld to %lld failed: %s (see above)",
			                  (long long)b.done, (long long)(b.done + n - 1), loom_strerror(rv));
			goto out;
		}
		b.done += n;
		if (job->progress)
			job->progress(job, b.done, b.N, 1, 1);
	}
	rv = finish(&b, &err);
out:
	if (err) {
		say(&b, LOOM_LOG_ERROR, "%s", err);
		free(err);
	}
	teardown(&b);
	return rv;
}

/* ------------------------------------------------------------------ windows of a file */

/* The predict endpoint's file form (compute.h's model_windows): a batch
 * that never predicts.  It holds the model's description between calls
 * and a file's rows only during one. */
struct tf_reader {
	batch b;
};

void
tf_reader_close(tf_reader *r)
{
	if (r == NULL)
		return;
	teardown(&r->b);
	free(r);
}

int
tf_reader_open(const loom_host *host, loom_instance *ins, const char *info_json, tf_reader **out,
               char **err)
{
	tf_reader *r = calloc(1, sizeof *r);
	int rv;

	*out = NULL;
	if (r == NULL)
		return LOOM_ENOMEM;
	r->b.host = host;
	r->b.ins = ins;
	if ((r->b.info = json_loads(info_json, 0, NULL)) == NULL) {
		*err = strdup("the model's description is not JSON");
		tf_reader_close(r);
		return LOOM_EINTERNAL;
	}
	if ((rv = describe_model(&r->b, err)) != 0) {
		tf_reader_close(r);
		return rv;
	}
	*out = r;
	return 0;
}

/* Forget the file read last. */
static void
drop_data(batch *b)
{
	if (b->table_up)
		tf_table_free(&b->table);
	memset(&b->table, 0, sizeof b->table);
	b->table_up = false;
	tf_series_free(&b->series);
	free(b->xs);
	free(b->target_col);
	b->xs = NULL;
	b->target_col = NULL;
	b->has_actual = false;
	b->R = b->N = 0;
	b->bs.path = NULL;
}

/* Do all of window w's rows lie on lines from to to (0: no bound)?  Rows
 * in file order have rising lines, so the window's ends tell. */
static bool
window_within(const batch *b, int64_t w, int64_t from, int64_t to)
{
	int64_t r0 = first_row(b, w), r1 = r0 + b->L - 1;

	if (b->series.unordered == 0)
		return (from <= 0 || line_of(b, r0) >= from) && (to <= 0 || line_of(b, r1) <= to);
	for (int64_t r = r0; r <= r1; r++)
		if ((from > 0 && line_of(b, r) < from) || (to > 0 && line_of(b, r) > to))
			return false;
	return true;
}

static char *
bound_text(int64_t line, const char *none)
{
	return line > 0 ? loom_strfmt("%lld", (long long)line) : strdup(none);
}

int
tf_reader_windows(tf_reader *r, const char *path, int64_t from_line, int64_t to_line,
                  int64_t stride, int64_t max_windows, loom_tensor *windows, char **meta_json,
                  char **err)
{
	batch *b = &r->b;
	int64_t *keep = NULL, n = 0;
	float *x = NULL;
	json_t *list = NULL, *doc = NULL;
	char *text = NULL;
	int rv;

	memset(windows, 0, sizeof *windows);
	*meta_json = NULL;
	if (stride < 1) {
		*err = loom_strfmt("stride %lld: windows start every stride rows; give 1 or more",
		                   (long long)stride);
		return LOOM_EINVAL;
	}
	if (from_line > 0 && to_line > 0 && to_line < from_line) {
		*err = loom_strfmt("%s: from_line %lld is after to_line %lld", path,
		                   (long long)from_line, (long long)to_line);
		return LOOM_EINVAL;
	}
	b->bs.path = path;
	b->bs.stride = stride;
	if ((rv = read_data(b, err)) != 0)
		goto out;
	if ((keep = calloc((size_t)b->N, sizeof *keep)) == NULL) {
		rv = LOOM_ENOMEM;
		goto out;
	}
	for (int64_t w = 0; w < b->N; w++)
		if (window_within(b, w, from_line, to_line))
			keep[n++] = w;
	if (n == 0 || (max_windows > 0 && n > max_windows)) {
		char *lo = bound_text(from_line, "the first"), *hi = bound_text(to_line, "the last");
		if (n == 0)
			*err = loom_strfmt("%s: no window of %lld rows (the model's context) at stride "
			                   "%lld lies within lines %s to %s; the data rows are on lines "
			                   "%lld to %lld",
			                   b->table.path, (long long)b->L, (long long)stride,
			                   lo ? lo : "?", hi ? hi : "?",
			                   (long long)b->table.line[0],
			                   (long long)b->table.line[b->table.n_rows - 1]);
		else
			*err = loom_strfmt("%s: lines %s to %s hold %lld windows of %lld rows at stride "
			                   "%lld, more than the %lld one request takes; narrow "
			                   "from_line and to_line, raise stride, or score the file with a "
			                   "batch prediction task (docs/inference.md, \"Batch prediction\")",
			                   b->table.path, lo ? lo : "?", hi ? hi : "?", (long long)n,
			                   (long long)b->L, (long long)stride, (long long)max_windows);
		free(lo);
		free(hi);
		rv = LOOM_ERANGE;
		goto out;
	}
	if ((x = b->host->tensor_alloc((size_t)(n * b->L * b->C) * sizeof *x)) == NULL ||
	    (list = json_array()) == NULL) {
		rv = LOOM_ENOMEM;
		goto out;
	}
	for (int64_t i = 0; i < n; i++) {
		int64_t r0 = first_row(b, keep[i]), r1 = r0 + b->L - 1;
		memcpy(x + i * b->L * b->C, b->xs + r0 * b->C, (size_t)(b->L * b->C) * sizeof *x);
		json_array_append_new(
			list, json_pack("{s:I, s:I, s:o}", "first_line", (json_int_t)line_of(b, r0),
		                        "last_line", (json_int_t)line_of(b, r1), "time",
		                        b->series.time_col < 0 ? json_null()
		                                               : json_string(time_at(b, r1))));
	}
	doc = json_pack("{s:O}", "windows", list);
	if (doc == NULL || (text = json_dumps(doc, JSON_COMPACT)) == NULL ||
	    (*meta_json = b->host->alloc(strlen(text) + 1)) == NULL) {
		rv = LOOM_ENOMEM;
		goto out;
	}
	strcpy(*meta_json, text);
	windows->dtype = LOOM_DTYPE_F32;
	windows->ndim = 3;
	windows->dims[0] = n;
	windows->dims[1] = b->L;
	windows->dims[2] = b->C;
	windows->nbytes = (size_t)(n * b->L * b->C) * sizeof *x;
	windows->data = x;
	x = NULL;
out:
	if (x)
		b->host->tensor_free(x);
	free(keep);
	free(text);
	json_decref(list);
	json_decref(doc);
	drop_data(b);
	return rv;
}

/* The job spec (SPEC §5.1): schema, defaults, cross-field checks. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/error.h>
#include <loom/spec.h>
#include <loom/types.h>

#include "spec.h"

const loom_spec_field tf_resources_fields[] = {
	{"cpu", LOOM_SPEC_DOUBLE, LOOM_SPEC_RANGE, NULL, 0.001, 4096, NULL,
	 "cores the job needs", {NULL, NULL}},
	{"memory", LOOM_SPEC_SIZE, 0, NULL, 0, 0, NULL,
	 "memory the job needs, e.g. \"2G\"", {NULL, NULL}},
	{"gpu", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 0, 64, NULL,
	 "GPUs the job needs", {NULL, NULL}},
	LOOM_SPEC_END,
};

const loom_spec_field tf_dataset_fields[] = {
	{"name", LOOM_SPEC_STRING, 0, NULL, 0, 0, NULL, "the dataset", {NULL, NULL}},
	{"ref", LOOM_SPEC_STRING, 0, NULL, 0, 0, NULL,
	 "the version id, tag or branch the task named", {NULL, NULL}},
	{"version", LOOM_SPEC_STRING, 0, NULL, 0, 0, NULL,
	 "the version id it resolved to when the task was submitted", {NULL, NULL}},
	LOOM_SPEC_END,
};

static const loom_spec_field data_fields[] = {
	{"path", LOOM_SPEC_STRING, LOOM_SPEC_REQUIRED, NULL, 0, 0, NULL,
	 "a CSV file, or \"<storage-instance>:<key>\"", {NULL, NULL}},
	{"dataset", LOOM_SPEC_GROUP, 0, NULL, 0, 0, tf_dataset_fields,
	 "the dataset version data.path holds (loomd writes it)", {NULL, NULL}},
	{"time_column", LOOM_SPEC_STRING, 0, NULL, 0, 0, NULL,
	 "the column that orders the rows", {NULL, NULL}},
	{"features", LOOM_SPEC_STRLIST, 0, NULL, 0, 0, NULL,
	 "input channels, by column name", {NULL, NULL}},
	{"target", LOOM_SPEC_STRLIST, LOOM_SPEC_ONE_OR_LIST, NULL, 0, 0, NULL,
	 "the channels to predict, or the label column", {NULL, NULL}},
	{"split", LOOM_SPEC_DOUBLELIST, LOOM_SPEC_RANGE, NULL, 0, 1, NULL,
	 "train, validation and test fractions, in time order", {NULL, NULL}},
	{"normalize", LOOM_SPEC_STRING, 0, "zscore|minmax|none", 0, 0, NULL, NULL, {NULL, NULL}},
	{"fill", LOOM_SPEC_STRING, 0, "none|ffill|linear|zero", 0, 0, NULL,
	 "what to do with missing values", {NULL, NULL}},
	{"season", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 0, 100000, NULL,
	 "the seasonal-naive period; 0 infers it from the time column", {NULL, NULL}},
	LOOM_SPEC_END,
};

static const loom_spec_field linear_fields[] = {
	{"fit", LOOM_SPEC_STRING, 0, "ridge|train", 0, 0, NULL,
	 "ridge: closed form, the penalty chosen on validation; train: AdamW as the Transformer",
	 {NULL, NULL}},
	{"decomposition", LOOM_SPEC_STRING, 0, "auto|none|moving_average", 0, 0, NULL,
	 "ridge on the window, or on its trend and remainder (DLinear); auto tries both",
	 {NULL, NULL}},
	{"kernel", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 2, 1 << 20, NULL,
	 "the moving average's length, in steps", {NULL, NULL}},
	{"alpha", LOOM_SPEC_DOUBLE, LOOM_SPEC_RANGE, NULL, 0, 1e9, NULL,
	 "the ridge penalty relative to the features' variance; 0 chooses it on validation",
	 {NULL, NULL}},
	LOOM_SPEC_END,
};

static const loom_spec_field naive_fields[] = {
	{"method", LOOM_SPEC_STRING, 0, "auto|repeat_last|seasonal|drift|mean", 0, 0, NULL,
	 "the naive forecast; auto keeps the best on validation", {NULL, NULL}},
	LOOM_SPEC_END,
};

static const loom_spec_field auto_fields[] = {
	{"choose", LOOM_SPEC_STRING, 0, "lowest|one_se", 0, 0, NULL,
	 "lowest: the lowest validation loss (ties to the simpler); one_se: the simplest within "
	 "one standard error of it", {NULL, NULL}},
	{"ensemble", LOOM_SPEC_STRING, 0, "when_better|never|always", 0, 0, NULL,
	 "keep an average of the best two or three when it validates better than each (or "
	 "never, or always)", {NULL, NULL}},
	LOOM_SPEC_END,
};

static const loom_spec_field model_fields[] = {
	{"kind", LOOM_SPEC_STRING, 0, "auto|transformer|linear|naive", 0, 0, NULL,
	 "the model; auto fits every kind and keeps the best on validation", {NULL, NULL}},
	{"linear", LOOM_SPEC_GROUP, 0, NULL, 0, 0, linear_fields, NULL, {NULL, NULL}},
	{"naive", LOOM_SPEC_GROUP, 0, NULL, 0, 0, naive_fields, NULL, {NULL, NULL}},
	{"auto", LOOM_SPEC_GROUP, 0, NULL, 0, 0, auto_fields, NULL, {NULL, NULL}},
	{"head", LOOM_SPEC_STRING, 0, NULL, 0, 0, NULL, "the head plugin instance", {NULL, NULL}},
	{"context", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 1, 1 << 20, NULL,
	 "input window length", {NULL, NULL}},
	{"horizon", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 1, 1 << 20, NULL,
	 "forecast length", {NULL, NULL}},
	{"patch", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 1, 1 << 20, NULL,
	 "time steps per token", {NULL, NULL}},
	{"stride", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 1, 1 << 20, NULL,
	 "steps between window starts", {NULL, NULL}},
	{"d_model", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 1, 65536, NULL, NULL, {NULL, NULL}},
	{"heads", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 1, 1024, NULL, NULL, {NULL, NULL}},
	{"layers", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 0, 1024, NULL, NULL, {NULL, NULL}},
	{"ffn", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 1, 1 << 20, NULL, NULL, {NULL, NULL}},
	{"dropout", LOOM_SPEC_DOUBLE, LOOM_SPEC_RANGE, NULL, 0, 0.99, NULL, NULL, {NULL, NULL}},
	{"revin", LOOM_SPEC_BOOL, 0, NULL, 0, 0, NULL, NULL, {NULL, NULL}},
	{"channel_independent", LOOM_SPEC_BOOL, 0, NULL, 0, 0, NULL, NULL, {NULL, NULL}},
	{"positions", LOOM_SPEC_STRING, 0, "learned|sinusoidal", 0, 0, NULL, NULL, {NULL, NULL}},
	{"residual", LOOM_SPEC_STRING, 0, "none|last", 0, 0, NULL,
	 "forecast: last adds the window's last value to the Transformer's output, which then "
	 "learns a correction to repeat-last", {NULL, NULL}},
	{"loss", LOOM_SPEC_STRING, 0, "mse|mae|huber|crossentropy", 0, 0, NULL, NULL, {NULL, NULL}},
	{"huber_delta", LOOM_SPEC_DOUBLE, LOOM_SPEC_RANGE, NULL, 1e-9, 1e9, NULL,
	 NULL, {NULL, NULL}},
	{"threshold_quantile", LOOM_SPEC_DOUBLE, LOOM_SPEC_RANGE, NULL, 0.5, 1, NULL,
	 "anomaly: the validation-score quantile above which a window is anomalous", {NULL, NULL}},
	LOOM_SPEC_END,
};

static const loom_spec_field es_fields[] = {
	{"metric", LOOM_SPEC_STRING, 0, NULL, 0, 0, NULL,
	 "a validation metric, e.g. val_loss", {NULL, NULL}},
	{"patience", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 0, 1 << 20, NULL,
	 "epochs without improvement before stopping; 0 turns it off", {NULL, NULL}},
	{"min_delta", LOOM_SPEC_DOUBLE, LOOM_SPEC_RANGE, NULL, 0, 1e30, NULL, NULL, {NULL, NULL}},
	LOOM_SPEC_END,
};

/* train.init: an incremental run starts from a registered version.  loomd
 * resolves model + alias or version to model_dir (docs/incremental.md). */
static const loom_spec_field init_fields[] = {
	{"model", LOOM_SPEC_STRING, 0, NULL, 0, 0, NULL,
	 "the registered model whose version the run starts from", {NULL, NULL}},
	{"alias", LOOM_SPEC_STRING, 0, NULL, 0, 0, NULL,
	 "the alias naming that version (default production)", {NULL, NULL}},
	{"version", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 1, 9007199254740991.0, NULL,
	 "the version number, instead of an alias", {NULL, NULL}},
	{"model_dir", LOOM_SPEC_STRING, 0, NULL, 0, 0, NULL,
	 "the version's directory (loomd writes it from model; a worker run may name a "
	 "training run's output directory)", {NULL, NULL}},
	LOOM_SPEC_END,
};

static const loom_spec_field train_fields[] = {
	{"init", LOOM_SPEC_GROUP, 0, NULL, 0, 0, init_fields,
	 "start from a registered version's weights, normalization and classes", {NULL, NULL}},
	{"epochs", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 1, 1 << 24, NULL, NULL, {NULL, NULL}},
	{"batch", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 1, TF_MAX_BATCH, NULL,
	 "windows per training step; more than the data's windows is clamped", {NULL, NULL}},
	{"lr", LOOM_SPEC_DOUBLE, LOOM_SPEC_RANGE, NULL, 1e-12, 100, NULL,
	 "the peak learning rate", {NULL, NULL}},
	{"weight_decay", LOOM_SPEC_DOUBLE, LOOM_SPEC_RANGE, NULL, 0, 100, NULL, NULL, {NULL, NULL}},
	{"betas", LOOM_SPEC_DOUBLELIST, LOOM_SPEC_RANGE, NULL, 0, 0.999999, NULL,
	 "AdamW's β1, β2", {NULL, NULL}},
	{"eps", LOOM_SPEC_DOUBLE, LOOM_SPEC_RANGE, NULL, 1e-30, 1, NULL, NULL, {NULL, NULL}},
	{"schedule", LOOM_SPEC_STRING, 0,
	 "constant|step|cosine|plateau", 0, 0, NULL, NULL, {NULL, NULL}},
	{"warmup_steps", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 0, 1 << 30, NULL,
	 NULL, {NULL, NULL}},
	{"step_epochs", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 1, 1 << 24, NULL,
	 "step schedule: epochs between decays", {NULL, NULL}},
	{"gamma", LOOM_SPEC_DOUBLE, LOOM_SPEC_RANGE, NULL, 1e-9, 1, NULL,
	 "step schedule: the decay factor", {NULL, NULL}},
	{"min_lr", LOOM_SPEC_DOUBLE, LOOM_SPEC_RANGE, NULL, 0, 100, NULL, NULL, {NULL, NULL}},
	{"plateau_patience", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 1, 1 << 20, NULL,
	 NULL, {NULL, NULL}},
	{"plateau_factor", LOOM_SPEC_DOUBLE, LOOM_SPEC_RANGE, NULL, 1e-9, 0.999999, NULL,
	 NULL, {NULL, NULL}},
	{"clip_norm", LOOM_SPEC_DOUBLE, LOOM_SPEC_RANGE, NULL, 0, 1e30, NULL,
	 "clip gradients to this global norm; 0 turns it off", {NULL, NULL}},
	{"early_stopping", LOOM_SPEC_GROUP, 0, NULL, 0, 0, es_fields, NULL, {NULL, NULL}},
	{"checkpoint_every", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 0, 1 << 30, NULL,
	 "steps", {NULL, NULL}},
	{"seed", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 0, 9007199254740991.0, NULL,
	 NULL, {NULL, NULL}},
	{"threads", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 0, 1024, NULL,
	 "0: all cores the job was allotted", {NULL, NULL}},
	LOOM_SPEC_END,
};

static const loom_spec_field replay_fields[] = {
	{"memory", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 0, 1 << 20, NULL,
	 "rows of the replay bank kept with the new version; 0 keeps none", {NULL, NULL}},
	{"ratio", LOOM_SPEC_DOUBLE, LOOM_SPEC_RANGE, NULL, 0, 16, NULL,
	 "bank windows mixed into every batch per new window; 0: no replay", {NULL, NULL}},
	{"sampler", LOOM_SPEC_STRING, 0, NULL, 0, 0, NULL,
	 "the sampler instance that fills the bank (module sampler-reservoir)", {NULL, NULL}},
	LOOM_SPEC_END,
};

static const loom_spec_field ewc_fields[] = {
	{"lambda", LOOM_SPEC_DOUBLE, LOOM_SPEC_RANGE, NULL, 0, 1e12, NULL,
	 "the penalty's weight; 0 turns EWC off", {NULL, NULL}},
	{"mode", LOOM_SPEC_STRING, 0, "separate|online", 0, 0, NULL,
	 "separate: a penalty per earlier increment; online: one, its importance decayed",
	 {NULL, NULL}},
	{"gamma", LOOM_SPEC_DOUBLE, LOOM_SPEC_RANGE, NULL, 0, 1, NULL,
	 "online: the decay of the old importance", {NULL, NULL}},
	LOOM_SPEC_END,
};

static const loom_spec_field lwf_fields[] = {
	{"alpha", LOOM_SPEC_DOUBLE, LOOM_SPEC_RANGE, NULL, 0, 1e6, NULL,
	 "the distillation loss's weight; 0 turns LwF off", {NULL, NULL}},
	{"temperature", LOOM_SPEC_DOUBLE, LOOM_SPEC_RANGE, NULL, 0.01, 100, NULL,
	 "classification: the softmax temperature", {NULL, NULL}},
	LOOM_SPEC_END,
};

static const loom_spec_field incremental_fields[] = {
	{"replay", LOOM_SPEC_GROUP, 0, NULL, 0, 0, replay_fields, NULL, {NULL, NULL}},
	{"ewc", LOOM_SPEC_GROUP, 0, NULL, 0, 0, ewc_fields, NULL, {NULL, NULL}},
	{"lwf", LOOM_SPEC_GROUP, 0, NULL, 0, 0, lwf_fields, NULL, {NULL, NULL}},
	LOOM_SPEC_END,
};

static const loom_spec_field spec_fields[] = {
	TF_SPEC_JOB_FIELDS,
	{"incremental", LOOM_SPEC_GROUP, 0, NULL, 0, 0, incremental_fields,
	 "replay, EWC and LwF for a run from train.init (docs/incremental.md)", {NULL, NULL}},
	{"data", LOOM_SPEC_GROUP, LOOM_SPEC_REQUIRED, NULL, 0, 0, data_fields, NULL, {NULL, NULL}},
	{"model", LOOM_SPEC_GROUP, 0, NULL, 0, 0, model_fields, NULL, {NULL, NULL}},
	{"train", LOOM_SPEC_GROUP, 0, NULL, 0, 0, train_fields, NULL, {NULL, NULL}},
	LOOM_SPEC_END,
};

/* ------------------------------------------------------------------ defaults */

static const char *
task_name(int task)
{
	switch (task) {
	case TF_TASK_FORECAST: return "forecast";
	case TF_TASK_REGRESSION: return "regression";
	case TF_TASK_CLASSIFICATION: return "classification";
	case TF_TASK_ANOMALY: return "anomaly";
	}
	return "?";
}

static void
fill_defaults(loom_spec *sp, int task)
{
	bool forecast = task == TF_TASK_FORECAST;
	/* an incremental run trains what it starts from: the Transformer */
	bool init = loom_spec_has(sp, "train.init");

	loom_spec_default_string(sp, "name", "job");
	loom_spec_default_string(sp, "compute", "transformer");
	loom_spec_default_int(sp, "priority", 0);
	loom_spec_default_json(sp, "after", "[]");
	loom_spec_default_int(sp, "retries", 0);
	loom_spec_default_int(sp, "timeout", 0);
	loom_spec_default_double(sp, "resources.cpu", 1);
	loom_spec_default_int(sp, "resources.memory", 0);
	loom_spec_default_int(sp, "resources.gpu", 0);

	loom_spec_default_json(sp, "data.split", "[0.7, 0.1, 0.2]");
	loom_spec_default_string(sp, "data.normalize", "zscore");
	loom_spec_default_string(sp, "data.fill", "none");
	loom_spec_default_int(sp, "data.season", 0);

	loom_spec_default_string(sp, "model.head", "forecast");
	loom_spec_default_string(sp, "model.kind", forecast && !init ? "auto" : "transformer");
	loom_spec_default_string(sp, "model.linear.fit", "ridge");
	loom_spec_default_string(sp, "model.linear.decomposition", "auto");
	loom_spec_default_int(sp, "model.linear.kernel", 25);
	loom_spec_default_double(sp, "model.linear.alpha", 0);
	loom_spec_default_string(sp, "model.naive.method", "auto");
	loom_spec_default_string(sp, "model.auto.ensemble", "when_better");
	loom_spec_default_string(sp, "model.auto.choose", "lowest");
	loom_spec_default_int(sp, "model.context", 168);
	loom_spec_default_int(sp, "model.horizon", 24);
	loom_spec_default_int(sp, "model.patch", 24);
	loom_spec_default_int(sp, "model.stride", 1);
	loom_spec_default_int(sp, "model.d_model", 64);
	loom_spec_default_int(sp, "model.heads", 4);
	loom_spec_default_int(sp, "model.layers", 2);
	loom_spec_default_int(sp, "model.ffn", 256);
	loom_spec_default_double(sp, "model.dropout", 0.1);
	loom_spec_default_bool(sp, "model.revin", forecast);
	loom_spec_default_bool(sp, "model.channel_independent", forecast);
	loom_spec_default_string(sp, "model.positions", "learned");
	loom_spec_default_string(sp, "model.residual", "none");
	loom_spec_default_string(sp, "model.loss",
	                         task == TF_TASK_CLASSIFICATION ? "crossentropy" : "mse");
	loom_spec_default_double(sp, "model.huber_delta", 1.0);
	loom_spec_default_double(sp, "model.threshold_quantile", 0.99);

	loom_spec_default_int(sp, "train.epochs", 20);
	loom_spec_default_int(sp, "train.batch", 64);
	loom_spec_default_double(sp, "train.lr", 1e-3);
	loom_spec_default_double(sp, "train.weight_decay", 0.01);
	loom_spec_default_json(sp, "train.betas", "[0.9, 0.999]");
	loom_spec_default_double(sp, "train.eps", 1e-8);
	loom_spec_default_string(sp, "train.schedule", "cosine");
	loom_spec_default_int(sp, "train.warmup_steps", 100);
	loom_spec_default_int(sp, "train.step_epochs", 10);
	loom_spec_default_double(sp, "train.gamma", 0.1);
	loom_spec_default_double(sp, "train.min_lr", 0);
	loom_spec_default_int(sp, "train.plateau_patience", 2);
	loom_spec_default_double(sp, "train.plateau_factor", 0.5);
	loom_spec_default_double(sp, "train.clip_norm", 1.0);
	loom_spec_default_int(sp, "train.checkpoint_every", 100);
	loom_spec_default_int(sp, "train.seed", 42);
	loom_spec_default_int(sp, "train.threads", 0);
	loom_spec_default_string(sp, "train.early_stopping.metric", "val_loss");
	loom_spec_default_int(sp, "train.early_stopping.patience", 3);
	loom_spec_default_double(sp, "train.early_stopping.min_delta", 0);
	/* only when given: a spec without the group keeps the document (and so
	 * the checkpoints) it had before incremental runs existed */
	if (loom_spec_has(sp, "incremental")) {
		loom_spec_default_int(sp, "incremental.replay.memory", 1000);
		loom_spec_default_double(sp, "incremental.replay.ratio", 0);
		loom_spec_default_string(sp, "incremental.replay.sampler", "reservoir");
		loom_spec_default_double(sp, "incremental.ewc.lambda", 0);
		loom_spec_default_string(sp, "incremental.ewc.mode", "separate");
		loom_spec_default_double(sp, "incremental.ewc.gamma", 1.0);
		loom_spec_default_double(sp, "incremental.lwf.alpha", 0);
		loom_spec_default_double(sp, "incremental.lwf.temperature", 2.0);
	}
}

/* ------------------------------------------------------------------ reading values */

static int64_t
geti(const loom_spec *sp, const char *path)
{
	int64_t v = 0;
	loom_spec_get_int(sp, path, &v);
	return v;
}

static double
getd(const loom_spec *sp, const char *path)
{
	double v = 0;
	loom_spec_get_double(sp, path, &v);
	return v;
}

/* The i-th number of the list at path, 0 when there is none. */
static double
getd_at(const loom_spec *sp, const char *path, size_t i)
{
	char elem[64];
	snprintf(elem, sizeof elem, "%s[%zu]", path, i);
	return getd(sp, elem);
}

static size_t
length(const loom_spec *sp, const char *path)
{
	size_t n = 0;
	loom_spec_get_length(sp, path, &n);
	return n;
}

static char *
gets_dup(const loom_spec *sp, const char *path)
{
	const char *s = NULL;
	loom_spec_get_string(sp, path, &s);
	return s ? strdup(s) : NULL;
}

static int
choice(const loom_spec *sp, const char *path, const char *const *names)
{
	const char *s = NULL;
	loom_spec_get_string(sp, path, &s);
	for (int i = 0; s && names[i]; i++) {
		if (strcmp(s, names[i]) == 0)
			return i;
	}
	return 0;
}

/* The strings of the list at path (NULL-terminated), or NULL when it is
 * absent or empty. */
static char **
strlist(const loom_spec *sp, const char *path, size_t *n)
{
	size_t len = length(sp, path);
	char **out, elem[64];

	*n = 0;
	if (len == 0 || (out = calloc(len + 1, sizeof *out)) == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		const char *s = NULL;
		snprintf(elem, sizeof elem, "%s[%zu]", path, i);
		if (loom_spec_get_string(sp, elem, &s) == 0 && (out[*n] = strdup(s)) != NULL)
			(*n)++;
	}
	return out;
}

static void
strlist_free(char **list)
{
	for (char **p = list; p && *p; p++)
		free(*p);
	free(list);
}

static bool
maximizing(const char *metric)
{
	static const char *const up[] = {"accuracy", "f1", "r2", "precision", "recall", NULL};
	for (int i = 0; metric && up[i]; i++) {
		if (strstr(metric, up[i]))
			return true;
	}
	return false;
}

/* A list of column names (data.features, data.target): present means at
 * least one name, none empty, none twice, no more than a data file has
 * columns.  Linear in the list's length (a set, not every pair). */
static void
check_names(loom_spec *sp, const char *path, char **names, size_t n)
{
	size_t len = length(sp, path);
	json_t *seen;

	if (!loom_spec_has(sp, path))
		return;
	if (len == 0) {
		loom_spec_errorf(sp, path,
		                 strcmp(path, "data.features") == 0
		                     ? "an empty list; name the input columns, or leave data.features "
		                       "out to use every numeric column"
		                     : "an empty list; name the column(s) to predict, or leave "
		                       "data.target out (a forecast then predicts its features)");
		return;
	}
	if (len > TF_CSV_MAX_COLUMNS) {
		loom_spec_errorf(sp, path, "%zu names; a data file has at most %d columns", len,
		                 TF_CSV_MAX_COLUMNS);
		return;
	}
	if ((seen = json_object()) == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		char elem[64];
		if (names[i][0] == '\0') {
			snprintf(elem, sizeof elem, "%s[%zu]", path, i);
			loom_spec_errorf(sp, elem, "an empty column name; name a column of the data file");
		} else if (json_object_get(seen, names[i]) != NULL) {
			loom_spec_errorf(sp, path, "\"%s\" is listed twice; list each column once",
			                 names[i]);
		} else {
			json_object_set_new(seen, names[i], json_true());
		}
	}
	json_decref(seen);
}

/* ------------------------------------------------------------------ parse */

int
tf_spec_parse(const char *text, const char *name, tf_head_task_fn head_task, void *arg,
              tf_spec *s, char **err)
{
	static const char *const norms[] = {"none", "zscore", "minmax", NULL};
	static const char *const fills[] = {"none", "ffill", "linear", "zero", NULL};
	static const char *const positions[] = {"learned", "sinusoidal", NULL};
	static const char *const losses[] = {"mse", "mae", "huber", "crossentropy", NULL};
	static const char *const schedules[] = {"constant", "step", "cosine", "plateau", NULL};
	loom_spec *sp = NULL;
	const char *head = NULL;
	char *json;
	int rv;

	memset(s, 0, sizeof *s);
	*err = NULL;
	if ((rv = loom_spec_parse(text, name, &sp)) != 0 || loom_spec_check(sp, spec_fields) != 0)
		goto fail;

	/* The head decides the task, and the task some defaults. */
	loom_spec_get_string(sp, "model.head", &head);
	if (head == NULL)
		head = "forecast";
	s->task = head_task ? head_task(arg, head) : 0;
	if (s->task == 0) {
		loom_spec_errorf(sp, "model.head",
		                 "no head plugin instance \"%s\"; use one loomd loads "
		                 "(forecast, regression, classification, anomaly)",
		                 head);
		goto fail;
	}
	fill_defaults(sp, s->task);

	s->name = gets_dup(sp, "name");
	s->compute = gets_dup(sp, "compute");
	s->priority = geti(sp, "priority");
	s->retries = geti(sp, "retries");
	loom_spec_get_duration(sp, "timeout", &s->timeout_ms);
	s->cpu = getd(sp, "resources.cpu");
	loom_spec_get_size(sp, "resources.memory", &s->memory);
	s->gpu = geti(sp, "resources.gpu");

	s->path = gets_dup(sp, "data.path");
	s->time_column = gets_dup(sp, "data.time_column");
	s->features = strlist(sp, "data.features", &s->n_features);
	s->targets = strlist(sp, "data.target", &s->n_targets);

	s->head = gets_dup(sp, "model.head");
	s->context = geti(sp, "model.context");
	s->horizon = geti(sp, "model.horizon");
	s->patch = geti(sp, "model.patch");
	s->stride = geti(sp, "model.stride");
	s->d_model = geti(sp, "model.d_model");
	s->heads = geti(sp, "model.heads");
	s->layers = geti(sp, "model.layers");
	s->ffn = geti(sp, "model.ffn");
	s->dropout = getd(sp, "model.dropout");
	loom_spec_get_bool(sp, "model.revin", &s->revin);
	loom_spec_get_bool(sp, "model.channel_independent", &s->channel_independent);
	s->positions = choice(sp, "model.positions", positions);
	{
		static const char *const residuals[] = {"none", "last", NULL};
		s->residual_last = choice(sp, "model.residual", residuals) == 1;
	}
	s->loss = choice(sp, "model.loss", losses);
	s->huber_delta = getd(sp, "model.huber_delta");
	s->threshold_quantile = getd(sp, "model.threshold_quantile");
	{
		static const char *const kinds[] = {"auto", "transformer", "linear", "naive", NULL};
		static const char *const fits[] = {"ridge", "train", NULL};
		static const char *const decomps[] = {"auto", "none", "moving_average", NULL};
		static const char *const naives[] = {"repeat_last", "seasonal", "drift", "mean",
		                                     "auto", NULL};
		s->kind = choice(sp, "model.kind", kinds);
		s->linear_fit = choice(sp, "model.linear.fit", fits);
		s->decomposition = choice(sp, "model.linear.decomposition", decomps);
		s->ma_kernel = geti(sp, "model.linear.kernel");
		s->ridge_alpha = getd(sp, "model.linear.alpha");
		s->naive_method = choice(sp, "model.naive.method", naives);
		if (s->naive_method == 4)
			s->naive_method = -1;
		static const char *const ensembles[] = {"when_better", "never", "always", NULL};
		s->ensemble = choice(sp, "model.auto.ensemble", ensembles);
		static const char *const rules[] = {"lowest", "one_se", NULL};
		s->choose_one_se = choice(sp, "model.auto.choose", rules) == 1;
	}

	s->epochs = geti(sp, "train.epochs");
	s->batch = geti(sp, "train.batch");
	s->lr = getd(sp, "train.lr");
	s->weight_decay = getd(sp, "train.weight_decay");
	s->beta1 = getd_at(sp, "train.betas", 0);
	s->beta2 = getd_at(sp, "train.betas", 1);
	s->eps = getd(sp, "train.eps");
	s->schedule = choice(sp, "train.schedule", schedules);
	s->warmup_steps = geti(sp, "train.warmup_steps");
	s->step_epochs = geti(sp, "train.step_epochs");
	s->gamma = getd(sp, "train.gamma");
	s->min_lr = getd(sp, "train.min_lr");
	s->plateau_patience = geti(sp, "train.plateau_patience");
	s->plateau_factor = getd(sp, "train.plateau_factor");
	s->clip_norm = getd(sp, "train.clip_norm");
	s->checkpoint_every = geti(sp, "train.checkpoint_every");
	s->seed = (uint64_t)geti(sp, "train.seed");
	s->threads = geti(sp, "train.threads");
	s->es_metric = gets_dup(sp, "train.early_stopping.metric");
	s->es_patience = geti(sp, "train.early_stopping.patience");
	s->es_min_delta = getd(sp, "train.early_stopping.min_delta");
	s->es_maximize = maximizing(s->es_metric);

	s->init_dir = gets_dup(sp, "train.init.model_dir");
	s->init_model = gets_dup(sp, "train.init.model");
	s->init_version = geti(sp, "train.init.version");
	s->incremental = loom_spec_has(sp, "incremental");
	s->replay_memory = s->incremental ? geti(sp, "incremental.replay.memory") : 1000;
	s->replay_ratio = getd(sp, "incremental.replay.ratio");
	s->replay_sampler = s->incremental ? gets_dup(sp, "incremental.replay.sampler")
	                                   : strdup("reservoir");
	s->ewc_lambda = getd(sp, "incremental.ewc.lambda");
	{
		static const char *const modes[] = {"separate", "online", NULL};
		s->ewc_online = choice(sp, "incremental.ewc.mode", modes) == 1;
	}
	s->ewc_gamma = s->incremental ? getd(sp, "incremental.ewc.gamma") : 1.0;
	s->lwf_alpha = getd(sp, "incremental.lwf.alpha");
	s->lwf_temperature = s->incremental ? getd(sp, "incremental.lwf.temperature") : 2.0;

	/* Settings that only make sense together. */
	{
		size_t n = length(sp, "data.split");
		double sum = 0;
		for (size_t i = 0; i < n; i++)
			sum += getd_at(sp, "data.split", i);
		if (n != 3)
			loom_spec_errorf(sp, "data.split",
			                 "give three fractions [train, validation, test], e.g. "
			                 "[0.7, 0.1, 0.2]");
		else if (fabs(sum - 1.0) > 1e-6)
			loom_spec_errorf(sp, "data.split",
			                 "the fractions add up to %g; they must add up to 1", sum);
		else if (getd_at(sp, "data.split", 0) <= 0)
			loom_spec_errorf(sp, "data.split", "the training fraction must be above 0");
		else if (getd_at(sp, "data.split", 1) <= 0)
			loom_spec_errorf(sp, "data.split",
			                 "the validation fraction is 0; validation picks the best epoch "
			                 "and drives early stopping, so give it a share, e.g. "
			                 "[0.7, 0.1, 0.2]");
		else if (getd_at(sp, "data.split", 2) <= 0)
			loom_spec_errorf(sp, "data.split",
			                 "the test fraction is 0; the final test metrics and baselines "
			                 "need rows of their own, so give it a share, e.g. "
			                 "[0.7, 0.1, 0.2]");
		for (size_t i = 0; i < 3 && i < n; i++)
			s->data.split[i] = getd_at(sp, "data.split", i);
	}
	if (length(sp, "train.betas") != 2)
		loom_spec_errorf(sp, "train.betas", "give two values [β1, β2], e.g. [0.9, 0.999]");
	if (s->context % s->patch != 0)
		loom_spec_errorf(sp, "model.patch",
		                 "%lld does not divide model.context (%lld); choose a patch that "
		                 "divides the context",
		                 (long long)s->patch, (long long)s->context);
	if (s->d_model % s->heads != 0)
		loom_spec_errorf(sp, "model.heads",
		                 "%lld does not divide model.d_model (%lld); attention splits "
		                 "d_model evenly between heads",
		                 (long long)s->heads, (long long)s->d_model);
	if (s->channel_independent && s->task != TF_TASK_FORECAST)
		loom_spec_errorf(sp, "model.channel_independent",
		                 "only forecasting runs channels independently; set it to false "
		                 "for %s",
		                 task_name(s->task));
	if (s->revin && s->task != TF_TASK_FORECAST && s->task != TF_TASK_ANOMALY)
		loom_spec_errorf(sp, "model.revin",
		                 "reversible normalization maps forecasts back; set it to false "
		                 "for %s",
		                 task_name(s->task));
	if (s->kind != TF_KIND_TRANSFORMER && s->task != TF_TASK_FORECAST &&
	    s->task != TF_TASK_REGRESSION)
		loom_spec_errorf(sp, "model.kind",
		                 "linear, naive and auto models are for forecasting and regression; "
		                 "use \"transformer\" for %s",
		                 task_name(s->task));
	if (s->task == TF_TASK_FORECAST && s->naive_method == 3)
		loom_spec_errorf(sp, "model.naive.method",
		                 "mean is the naive regression; a forecast's naive methods are "
		                 "repeat_last, seasonal and drift (or auto)");
	if (s->task == TF_TASK_REGRESSION && s->naive_method >= 0 && s->naive_method != 3)
		loom_spec_errorf(sp, "model.naive.method",
		                 "a regression's naive model is the training mean: use mean or auto");
	if (s->residual_last && s->task != TF_TASK_FORECAST)
		loom_spec_errorf(sp, "model.residual",
		                 "\"last\" adds the window's last value to a forecast; use \"none\" "
		                 "for %s",
		                 task_name(s->task));
	if ((s->task == TF_TASK_CLASSIFICATION) != (s->loss == TF_LOSS_CROSSENTROPY))
		loom_spec_errorf(sp, "model.loss", "%s",
		                 s->task == TF_TASK_CLASSIFICATION
		                     ? "classification trains with crossentropy"
		                     : "crossentropy is for classification; use mse, mae or huber");
	if (s->task == TF_TASK_ANOMALY && s->loss != TF_LOSS_MSE)
		loom_spec_errorf(sp, "model.loss",
		                 "anomaly detection scores the squared reconstruction error and "
		                 "trains with mse");
	if (s->task == TF_TASK_CLASSIFICATION && s->n_targets != 1)
		loom_spec_errorf(sp, "data.target",
		                 "classification needs exactly one label column, e.g. target = "
		                 "\"weather\"");
	if (s->task == TF_TASK_ANOMALY && s->n_targets > 1)
		loom_spec_errorf(sp, "data.target",
		                 "anomaly detection takes at most one 0/1 label column");
	check_names(sp, "data.features", s->features, s->n_features);
	check_names(sp, "data.target", s->targets, s->n_targets);
	if (s->task == TF_TASK_REGRESSION && !loom_spec_has(sp, "data.target"))
		loom_spec_errorf(sp, "data.target",
		                 "regression needs the column(s) to predict at each window's last "
		                 "step, e.g. target = [\"load\"]");
	if (s->task == TF_TASK_FORECAST && s->channel_independent && s->n_targets > 0 &&
	    s->n_features > 0) {
		/* a set of the features: linear however long the lists are */
		json_t *set = json_object();
		for (size_t j = 0; set && j < s->n_features; j++)
			json_object_set_new(set, s->features[j], json_true());
		for (size_t i = 0; set && i < s->n_targets; i++)
			if (json_object_get(set, s->targets[i]) == NULL)
				loom_spec_errorf(sp, "data.target",
				                 "\"%s\" is not among data.features; a "
				                 "channel-independent forecast predicts input channels",
				                 s->targets[i]);
		json_decref(set);
	}
	if (loom_spec_has(sp, "train.init")) {
		/* model_dir is loomd's to write when the task is submitted (a
		 * stored config or a template names the model only) */
		if ((s->init_dir == NULL || s->init_dir[0] == '\0') && s->init_model == NULL)
			loom_spec_errorf(sp, "train.init",
			                 "name the registered model to start from: train.init = { "
			                 "model = \"NAME\"; alias = \"production\"; }");
		if (loom_spec_has(sp, "train.init.alias") && loom_spec_has(sp, "train.init.version"))
			loom_spec_errorf(sp, "train.init",
			                 "give train.init.alias or train.init.version, not both");
		if (s->kind != TF_KIND_TRANSFORMER &&
		    !(s->kind == TF_KIND_LINEAR && s->linear_fit == TF_FIT_TRAIN))
			loom_spec_errorf(sp, "model.kind",
			                 "an incremental run (train.init) goes on training the model it "
			                 "starts from: use \"transformer\" (or \"linear\" with "
			                 "linear.fit = \"train\")");
	} else {
		if (s->replay_ratio > 0)
			loom_spec_errorf(sp, "incremental.replay.ratio",
			                 "replay mixes an earlier version's bank into the batches: it "
			                 "needs train.init");
		if (s->ewc_lambda > 0)
			loom_spec_errorf(sp, "incremental.ewc.lambda",
			                 "EWC holds the weights near an earlier version's: it needs "
			                 "train.init");
		if (s->lwf_alpha > 0)
			loom_spec_errorf(sp, "incremental.lwf.alpha",
			                 "LwF distills an earlier version: it needs train.init");
	}
	if (loom_spec_error_count(sp) > 0)
		goto fail;

	s->data.time_column = s->time_column;
	s->data.features = (const char *const *)s->features;
	s->data.n_features = s->n_features;
	s->data.targets = (const char *const *)s->targets;
	s->data.n_targets = s->n_targets;
	s->data.normalize = choice(sp, "data.normalize", norms);
	s->data.fill = choice(sp, "data.fill", fills);
	s->data.task = s->task;
	s->data.context = s->context;
	s->data.horizon = s->task == TF_TASK_FORECAST ? s->horizon : 0;
	s->data.stride = s->stride;
	s->data.season = geti(sp, "data.season");
	/* The plugin keeps the document, defaults filled in, as JSON. */
	json = loom_spec_json(sp);
	s->doc = json ? json_loads(json, 0, NULL) : NULL;
	free(json);
	if (s->doc == NULL) {
		loom_spec_free(sp);
		tf_spec_free(s);
		*err = strdup("out of memory reading the job spec");
		return LOOM_ENOMEM;
	}
	loom_spec_free(sp);
	return 0;
fail:
	*err = loom_spec_errors(sp);
	if (*err == NULL)
		*err = strdup(rv == LOOM_ENOMEM ? "out of memory reading the job spec"
		                                : "the job spec is invalid");
	loom_spec_free(sp);
	tf_spec_free(s);
	return rv == LOOM_ENOMEM ? LOOM_ENOMEM : LOOM_EINVAL;
}

void
tf_spec_free(tf_spec *s)
{
	json_decref(s->doc);
	free(s->name);
	free(s->compute);
	free(s->path);
	free(s->time_column);
	strlist_free(s->features);
	strlist_free(s->targets);
	free(s->head);
	free(s->es_metric);
	free(s->init_dir);
	free(s->init_model);
	free(s->replay_sampler);
	memset(s, 0, sizeof *s);
}

char *
tf_spec_json(const tf_spec *s)
{
	return json_dumps(s->doc, JSON_COMPACT | JSON_SORT_KEYS);
}

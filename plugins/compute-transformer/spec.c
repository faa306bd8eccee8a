/* The job spec (SPEC §5.1): schema, defaults, cross-field checks. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <loom/error.h>
#include <loom/types.h>

#include "host/core/schema.h"
#include "spec.h"

#define F_END {NULL, 0, 0, NULL, 0, 0, NULL, NULL}

static const loomi_field resources_fields[] = {
	{"cpu", LOOMI_F_DOUBLE, LOOMI_F_RANGE, NULL, 0.001, 4096, NULL, "cores the job needs"},
	{"memory", LOOMI_F_SIZE, 0, NULL, 0, 0, NULL, "memory the job needs, e.g. \"2G\""},
	{"gpu", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 0, 64, NULL, "GPUs the job needs"},
	F_END,
};

static const loomi_field data_fields[] = {
	{"path", LOOMI_F_STRING, LOOMI_F_REQUIRED, NULL, 0, 0, NULL,
	 "a CSV file, or \"<storage-instance>:<key>\""},
	{"time_column", LOOMI_F_STRING, 0, NULL, 0, 0, NULL, "the column that orders the rows"},
	{"features", LOOMI_F_STRLIST, 0, NULL, 0, 0, NULL, "input channels, by column name"},
	{"target", LOOMI_F_STRLIST, 0, NULL, 0, 0, NULL,
	 "the channels to predict, or the label column"},
	{"split", LOOMI_F_DOUBLELIST, LOOMI_F_RANGE, NULL, 0, 1, NULL,
	 "train, validation and test fractions, in time order"},
	{"normalize", LOOMI_F_STRING, 0, "zscore|minmax|none", 0, 0, NULL, NULL},
	{"fill", LOOMI_F_STRING, 0, "none|ffill|linear|zero", 0, 0, NULL,
	 "what to do with missing values"},
	{"season", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 0, 100000, NULL,
	 "the seasonal-naive period; 0 infers it from the time column"},
	F_END,
};

static const loomi_field model_fields[] = {
	{"head", LOOMI_F_STRING, 0, NULL, 0, 0, NULL, "the head plugin instance"},
	{"context", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 1, 1 << 20, NULL, "input window length"},
	{"horizon", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 1, 1 << 20, NULL, "forecast length"},
	{"patch", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 1, 1 << 20, NULL, "time steps per token"},
	{"stride", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 1, 1 << 20, NULL,
	 "steps between window starts"},
	{"d_model", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 1, 65536, NULL, NULL},
	{"heads", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 1, 1024, NULL, NULL},
	{"layers", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 0, 1024, NULL, NULL},
	{"ffn", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 1, 1 << 20, NULL, NULL},
	{"dropout", LOOMI_F_DOUBLE, LOOMI_F_RANGE, NULL, 0, 0.99, NULL, NULL},
	{"revin", LOOMI_F_BOOL, 0, NULL, 0, 0, NULL, NULL},
	{"channel_independent", LOOMI_F_BOOL, 0, NULL, 0, 0, NULL, NULL},
	{"positions", LOOMI_F_STRING, 0, "learned|sinusoidal", 0, 0, NULL, NULL},
	{"loss", LOOMI_F_STRING, 0, "mse|mae|huber|crossentropy", 0, 0, NULL, NULL},
	{"huber_delta", LOOMI_F_DOUBLE, LOOMI_F_RANGE, NULL, 1e-9, 1e9, NULL, NULL},
	{"threshold_quantile", LOOMI_F_DOUBLE, LOOMI_F_RANGE, NULL, 0.5, 1, NULL,
	 "anomaly: the validation-score quantile above which a window is anomalous"},
	F_END,
};

static const loomi_field es_fields[] = {
	{"metric", LOOMI_F_STRING, 0, NULL, 0, 0, NULL, "a validation metric, e.g. val_loss"},
	{"patience", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 0, 1 << 20, NULL,
	 "epochs without improvement before stopping; 0 turns it off"},
	{"min_delta", LOOMI_F_DOUBLE, LOOMI_F_RANGE, NULL, 0, 1e30, NULL, NULL},
	F_END,
};

static const loomi_field train_fields[] = {
	{"epochs", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 1, 1 << 24, NULL, NULL},
	{"batch", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 1, 1 << 20, NULL, NULL},
	{"lr", LOOMI_F_DOUBLE, LOOMI_F_RANGE, NULL, 1e-12, 100, NULL, "the peak learning rate"},
	{"weight_decay", LOOMI_F_DOUBLE, LOOMI_F_RANGE, NULL, 0, 100, NULL, NULL},
	{"betas", LOOMI_F_DOUBLELIST, LOOMI_F_RANGE, NULL, 0, 0.999999, NULL, "AdamW's β1, β2"},
	{"eps", LOOMI_F_DOUBLE, LOOMI_F_RANGE, NULL, 1e-30, 1, NULL, NULL},
	{"schedule", LOOMI_F_STRING, 0, "constant|step|cosine|plateau", 0, 0, NULL, NULL},
	{"warmup_steps", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 0, 1 << 30, NULL, NULL},
	{"step_epochs", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 1, 1 << 24, NULL,
	 "step schedule: epochs between decays"},
	{"gamma", LOOMI_F_DOUBLE, LOOMI_F_RANGE, NULL, 1e-9, 1, NULL,
	 "step schedule: the decay factor"},
	{"min_lr", LOOMI_F_DOUBLE, LOOMI_F_RANGE, NULL, 0, 100, NULL, NULL},
	{"plateau_patience", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 1, 1 << 20, NULL, NULL},
	{"plateau_factor", LOOMI_F_DOUBLE, LOOMI_F_RANGE, NULL, 1e-9, 0.999999, NULL, NULL},
	{"clip_norm", LOOMI_F_DOUBLE, LOOMI_F_RANGE, NULL, 0, 1e30, NULL,
	 "clip gradients to this global norm; 0 turns it off"},
	{"early_stopping", LOOMI_F_GROUP, 0, NULL, 0, 0, es_fields, NULL},
	{"checkpoint_every", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 0, 1 << 30, NULL, "steps"},
	{"seed", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 0, 9007199254740991.0, NULL, NULL},
	{"threads", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 0, 1024, NULL,
	 "0: all cores the job was allotted"},
	F_END,
};

static const loomi_field spec_fields[] = {
	{"name", LOOMI_F_STRING, 0, NULL, 0, 0, NULL, "the job's name"},
	{"compute", LOOMI_F_STRING, 0, NULL, 0, 0, NULL, "the compute plugin instance"},
	{"priority", LOOMI_F_INT, LOOMI_F_RANGE, NULL, -1000000, 1000000, NULL, NULL},
	{"after", LOOMI_F_INTLIST, LOOMI_F_RANGE, NULL, 1, 9007199254740991.0, NULL,
	 "ids of jobs that must complete first"},
	{"resources", LOOMI_F_GROUP, 0, NULL, 0, 0, resources_fields, NULL},
	{"retries", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 0, 100, NULL, NULL},
	{"timeout", LOOMI_F_DURATION, 0, NULL, 0, 0, NULL, NULL},
	{"data", LOOMI_F_GROUP, LOOMI_F_REQUIRED, NULL, 0, 0, data_fields, NULL},
	{"model", LOOMI_F_GROUP, 0, NULL, 0, 0, model_fields, NULL},
	{"train", LOOMI_F_GROUP, 0, NULL, 0, 0, train_fields, NULL},
	F_END,
};

/* ------------------------------------------------------------------ defaults */

static json_t *
group(json_t *doc, const char *key)
{
	json_t *g = json_object_get(doc, key);
	if (!json_is_object(g)) {
		g = json_object();
		json_object_set_new(doc, key, g);
	}
	return g;
}

static void
def(json_t *g, const char *key, json_t *value)
{
	if (json_object_get(g, key) == NULL)
		json_object_set_new(g, key, value);
	else
		json_decref(value);
}

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
fill_defaults(json_t *doc, int task)
{
	json_t *g;
	bool forecast = task == TF_TASK_FORECAST;

	def(doc, "name", json_string("job"));
	def(doc, "compute", json_string("transformer"));
	def(doc, "priority", json_integer(0));
	def(doc, "after", json_array());
	def(doc, "retries", json_integer(0));
	def(doc, "timeout", json_integer(0));
	g = group(doc, "resources");
	def(g, "cpu", json_real(1));
	def(g, "memory", json_integer(0));
	def(g, "gpu", json_integer(0));

	g = group(doc, "data");
	def(g, "split", json_pack("[f,f,f]", 0.7, 0.1, 0.2));
	def(g, "normalize", json_string("zscore"));
	def(g, "fill", json_string("none"));
	def(g, "season", json_integer(0));

	g = group(doc, "model");
	def(g, "head", json_string("forecast"));
	def(g, "context", json_integer(168));
	def(g, "horizon", json_integer(24));
	def(g, "patch", json_integer(24));
	def(g, "stride", json_integer(1));
	def(g, "d_model", json_integer(64));
	def(g, "heads", json_integer(4));
	def(g, "layers", json_integer(2));
	def(g, "ffn", json_integer(256));
	def(g, "dropout", json_real(0.1));
	def(g, "revin", json_boolean(forecast));
	def(g, "channel_independent", json_boolean(forecast));
	def(g, "positions", json_string("learned"));
	def(g, "loss", json_string(task == TF_TASK_CLASSIFICATION ? "crossentropy" : "mse"));
	def(g, "huber_delta", json_real(1.0));
	def(g, "threshold_quantile", json_real(0.99));

	g = group(doc, "train");
	def(g, "epochs", json_integer(20));
	def(g, "batch", json_integer(64));
	def(g, "lr", json_real(1e-3));
	def(g, "weight_decay", json_real(0.01));
	def(g, "betas", json_pack("[f,f]", 0.9, 0.999));
	def(g, "eps", json_real(1e-8));
	def(g, "schedule", json_string("cosine"));
	def(g, "warmup_steps", json_integer(100));
	def(g, "step_epochs", json_integer(10));
	def(g, "gamma", json_real(0.1));
	def(g, "min_lr", json_real(0));
	def(g, "plateau_patience", json_integer(2));
	def(g, "plateau_factor", json_real(0.5));
	def(g, "clip_norm", json_real(1.0));
	def(g, "checkpoint_every", json_integer(100));
	def(g, "seed", json_integer(42));
	def(g, "threads", json_integer(0));
	g = group(g, "early_stopping");
	def(g, "metric", json_string("val_loss"));
	def(g, "patience", json_integer(3));
	def(g, "min_delta", json_real(0));
}

/* ------------------------------------------------------------------ reading values */

static json_t *
at(const json_t *doc, const char *grp, const char *key)
{
	return json_object_get(grp ? json_object_get(doc, grp) : doc, key);
}

static int64_t
geti(const json_t *doc, const char *grp, const char *key)
{
	return json_integer_value(at(doc, grp, key));
}

static double
getd(const json_t *doc, const char *grp, const char *key)
{
	return json_number_value(at(doc, grp, key));
}

static char *
gets_dup(const json_t *doc, const char *grp, const char *key)
{
	const char *s = json_string_value(at(doc, grp, key));
	return s ? loomi_strdup(s) : NULL;
}

static int
choice(const json_t *doc, const char *grp, const char *key, const char *const *names)
{
	const char *s = json_string_value(at(doc, grp, key));
	for (int i = 0; s && names[i]; i++) {
		if (strcmp(s, names[i]) == 0)
			return i;
	}
	return 0;
}

static char **
strlist(const json_t *list, size_t *n)
{
	size_t i;
	json_t *v;
	char **out;

	*n = 0;
	if (!json_is_array(list) || json_array_size(list) == 0)
		return NULL;
	out = loomi_xcalloc(json_array_size(list) + 1, sizeof *out);
	json_array_foreach(list, i, v)
		out[(*n)++] = loomi_strdup(json_string_value(v));
	return out;
}

static void
strlist_free(char **list)
{
	for (char **p = list; p && *p; p++)
		free(*p);
	free(list);
}

/* Accept a single string where a list of strings is expected. */
static void
listify(json_t *g, const char *key)
{
	json_t *v = json_object_get(g, key);
	if (json_is_string(v))
		json_object_set_new(g, key, json_pack("[O]", v));
}

static bool
maximizing(const char *metric)
{
	static const char *const up[] = {"accuracy", "f1", "r2", "precision", "recall", NULL};
	for (int i = 0; up[i]; i++) {
		if (strstr(metric, up[i]))
			return true;
	}
	return false;
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
	loomi_doc d;
	loomi_strv errs = {0};
	const char *p = text;
	const char *head;
	json_t *doc, *v;
	int rv;

	memset(s, 0, sizeof *s);
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p == '{')
		rv = loomi_doc_load_json(&d, text, strlen(text), name, &errs);
	else
		rv = loomi_doc_load_string(&d, text, name, &errs);
	if (rv != 0)
		goto fail;
	doc = d.root;
	if (json_is_object(json_object_get(doc, "data")))
		listify(json_object_get(doc, "data"), "target");
	if (loomi_schema_check(&d, doc, spec_fields, "", &errs) != 0)
		goto fail;

	/* The head decides the task, and the task some defaults. */
	head = json_string_value(at(doc, "model", "head"));
	if (head == NULL)
		head = "forecast";
	s->task = head_task ? head_task(arg, head) : 0;
	if (s->task == 0) {
		loomi_doc_errf(&d, at(doc, "model", "head"), &errs,
		               "model.head: no head plugin instance \"%s\"; use one loomd loads "
		               "(forecast, regression, classification, anomaly)",
		               head);
		goto fail;
	}
	fill_defaults(doc, s->task);

	s->name = gets_dup(doc, NULL, "name");
	s->compute = gets_dup(doc, NULL, "compute");
	s->priority = geti(doc, NULL, "priority");
	s->retries = geti(doc, NULL, "retries");
	v = at(doc, NULL, "timeout");
	s->timeout_ms = json_is_string(v) ? 0 : (int64_t)(json_number_value(v) * 1000);
	if (json_is_string(v))
		loom_parse_duration(json_string_value(v), &s->timeout_ms);
	s->cpu = getd(doc, "resources", "cpu");
	v = at(doc, "resources", "memory");
	if (json_is_string(v))
		loom_parse_size(json_string_value(v), &s->memory);
	else
		s->memory = (uint64_t)json_integer_value(v);
	s->gpu = geti(doc, "resources", "gpu");

	s->path = gets_dup(doc, "data", "path");
	s->time_column = gets_dup(doc, "data", "time_column");
	s->features = strlist(at(doc, "data", "features"), &s->n_features);
	s->targets = strlist(at(doc, "data", "target"), &s->n_targets);

	s->head = gets_dup(doc, "model", "head");
	s->context = geti(doc, "model", "context");
	s->horizon = geti(doc, "model", "horizon");
	s->patch = geti(doc, "model", "patch");
	s->stride = geti(doc, "model", "stride");
	s->d_model = geti(doc, "model", "d_model");
	s->heads = geti(doc, "model", "heads");
	s->layers = geti(doc, "model", "layers");
	s->ffn = geti(doc, "model", "ffn");
	s->dropout = getd(doc, "model", "dropout");
	s->revin = json_is_true(at(doc, "model", "revin"));
	s->channel_independent = json_is_true(at(doc, "model", "channel_independent"));
	s->positions = choice(doc, "model", "positions", positions);
	s->loss = choice(doc, "model", "loss", losses);
	s->huber_delta = getd(doc, "model", "huber_delta");
	s->threshold_quantile = getd(doc, "model", "threshold_quantile");

	s->epochs = geti(doc, "train", "epochs");
	s->batch = geti(doc, "train", "batch");
	s->lr = getd(doc, "train", "lr");
	s->weight_decay = getd(doc, "train", "weight_decay");
	s->beta1 = json_number_value(json_array_get(at(doc, "train", "betas"), 0));
	s->beta2 = json_number_value(json_array_get(at(doc, "train", "betas"), 1));
	s->eps = getd(doc, "train", "eps");
	s->schedule = choice(doc, "train", "schedule", schedules);
	s->warmup_steps = geti(doc, "train", "warmup_steps");
	s->step_epochs = geti(doc, "train", "step_epochs");
	s->gamma = getd(doc, "train", "gamma");
	s->min_lr = getd(doc, "train", "min_lr");
	s->plateau_patience = geti(doc, "train", "plateau_patience");
	s->plateau_factor = getd(doc, "train", "plateau_factor");
	s->clip_norm = getd(doc, "train", "clip_norm");
	s->checkpoint_every = geti(doc, "train", "checkpoint_every");
	s->seed = (uint64_t)geti(doc, "train", "seed");
	s->threads = geti(doc, "train", "threads");
	v = json_object_get(json_object_get(doc, "train"), "early_stopping");
	s->es_metric = loomi_strdup(json_string_value(json_object_get(v, "metric")));
	s->es_patience = json_integer_value(json_object_get(v, "patience"));
	s->es_min_delta = json_number_value(json_object_get(v, "min_delta"));
	s->es_maximize = maximizing(s->es_metric);

	/* Settings that only make sense together. */
	{
		json_t *split = at(doc, "data", "split");
		double sum = 0;
		for (size_t i = 0; i < json_array_size(split); i++)
			sum += json_number_value(json_array_get(split, i));
		if (json_array_size(split) != 3)
			loomi_doc_errf(&d, split, &errs,
			               "data.split: give three fractions [train, validation, test], "
			               "e.g. [0.7, 0.1, 0.2]");
		else if (fabs(sum - 1.0) > 1e-6)
			loomi_doc_errf(&d, split, &errs,
			               "data.split: the fractions add up to %g; they must add up to 1",
			               sum);
		else if (json_number_value(json_array_get(split, 0)) <= 0)
			loomi_doc_errf(&d, split, &errs, "data.split: the training fraction must be "
			                                 "above 0");
		for (int i = 0; i < 3 && i < (int)json_array_size(split); i++)
			s->data.split[i] = json_number_value(json_array_get(split, (size_t)i));
	}
	if (json_array_size(at(doc, "train", "betas")) != 2)
		loomi_doc_errf(&d, at(doc, "train", "betas"), &errs,
		               "train.betas: give two values [β1, β2], e.g. [0.9, 0.999]");
	if (s->context % s->patch != 0)
		loomi_doc_errf(&d, at(doc, "model", "patch"), &errs,
		               "model.patch: %lld does not divide model.context (%lld); choose a "
		               "patch that divides the context",
		               (long long)s->patch, (long long)s->context);
	if (s->d_model % s->heads != 0)
		loomi_doc_errf(&d, at(doc, "model", "heads"), &errs,
		               "model.heads: %lld does not divide model.d_model (%lld); attention "
		               "splits d_model evenly between heads",
		               (long long)s->heads, (long long)s->d_model);
	if (s->channel_independent && s->task != TF_TASK_FORECAST)
		loomi_doc_errf(&d, at(doc, "model", "channel_independent"), &errs,
		               "model.channel_independent: only forecasting runs channels "
		               "independently; set it to false for %s",
		               task_name(s->task));
	if (s->revin && s->task != TF_TASK_FORECAST && s->task != TF_TASK_ANOMALY)
		loomi_doc_errf(&d, at(doc, "model", "revin"), &errs,
		               "model.revin: reversible normalization maps forecasts back; set it "
		               "to false for %s",
		               task_name(s->task));
	if ((s->task == TF_TASK_CLASSIFICATION) != (s->loss == TF_LOSS_CROSSENTROPY))
		loomi_doc_errf(&d, at(doc, "model", "loss"), &errs,
		               s->task == TF_TASK_CLASSIFICATION
		                   ? "model.loss: classification trains with crossentropy"
		                   : "model.loss: crossentropy is for classification; use mse, mae "
		                     "or huber");
	if (s->task == TF_TASK_ANOMALY && s->loss != TF_LOSS_MSE)
		loomi_doc_errf(&d, at(doc, "model", "loss"), &errs,
		               "model.loss: anomaly detection scores the squared reconstruction "
		               "error and trains with mse");
	if (s->task == TF_TASK_CLASSIFICATION && s->n_targets != 1)
		loomi_doc_errf(&d, at(doc, "data", "target"), &errs,
		               "data.target: classification needs exactly one label column, e.g. "
		               "target = \"weather\"");
	if (s->task == TF_TASK_ANOMALY && s->n_targets > 1)
		loomi_doc_errf(&d, at(doc, "data", "target"), &errs,
		               "data.target: anomaly detection takes at most one 0/1 label column");
	if (s->task == TF_TASK_FORECAST && s->channel_independent && s->n_targets > 0 &&
	    s->n_features > 0) {
		for (size_t i = 0; i < s->n_targets; i++) {
			bool found = false;
			for (size_t j = 0; j < s->n_features; j++)
				found |= strcmp(s->targets[i], s->features[j]) == 0;
			if (!found)
				loomi_doc_errf(&d, at(doc, "data", "target"), &errs,
				               "data.target: \"%s\" is not among data.features; a "
				               "channel-independent forecast predicts input channels",
				               s->targets[i]);
		}
	}
	if (errs.n > 0)
		goto fail;

	s->data.time_column = s->time_column;
	s->data.features = (const char *const *)s->features;
	s->data.n_features = s->n_features;
	s->data.targets = (const char *const *)s->targets;
	s->data.n_targets = s->n_targets;
	s->data.normalize = choice(doc, "data", "normalize", norms);
	s->data.fill = choice(doc, "data", "fill", fills);
	s->data.task = s->task;
	s->data.context = s->context;
	s->data.horizon = s->task == TF_TASK_FORECAST ? s->horizon : 0;
	s->data.stride = s->stride;
	s->data.season = geti(doc, "data", "season");
	s->doc = json_incref(doc);
	loomi_doc_free(&d);
	return 0;
fail:
	*err = loomi_strv_join(&errs, "\n");
	loomi_strv_free(&errs);
	loomi_doc_free(&d);
	tf_spec_free(s);
	return LOOM_EINVAL;
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
	memset(s, 0, sizeof *s);
}

char *
tf_spec_json(const tf_spec *s)
{
	return json_dumps(s->doc, JSON_COMPACT | JSON_SORT_KEYS);
}

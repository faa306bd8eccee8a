/* The job spec: the SPEC §5.1 example parses with its values, defaults
 * depend on the task, and every mistake is named by its key. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <loom/error.h>

#include "spec.h"
#include "testutil.h"

#define ASSERT_HAS(text, needle)                                                          \
	ck_assert_msg(strstr((text), (needle)) != NULL, "expected \"%s\" in:\n%s", (needle),   \
	              (text))

/* Heads as loomd would have them. */
static int
task_of(void *arg, const char *head)
{
	(void)arg;
	if (strcmp(head, "forecast") == 0)
		return TF_TASK_FORECAST;
	if (strcmp(head, "regression") == 0)
		return TF_TASK_REGRESSION;
	if (strcmp(head, "classification") == 0)
		return TF_TASK_CLASSIFICATION;
	if (strcmp(head, "anomaly") == 0)
		return TF_TASK_ANOMALY;
	return 0;
}

/* SPEC §5.1's example, verbatim. */
static const char spec_example[] =
	"name = \"seattle-temps-forecast\";\n"
	"compute = \"transformer\";\n"
	"priority = 0;\n"
	"after = [];\n"
	"resources = { cpu = 2; memory = \"2G\"; gpu = 0; };\n"
	"data = {\n"
	"  path = \"/usr/lib/python3/dist-packages/vega_datasets/_data/seattle-temps.csv\";\n"
	"  time_column = \"date\";\n"
	"  features = [\"temp\"];\n"
	"  target = [\"temp\"];\n"
	"  split = [0.7, 0.1, 0.2];\n"
	"  normalize = \"zscore\";\n"
	"};\n"
	"model = {\n"
	"  head = \"forecast\";\n"
	"  context = 168; horizon = 24;\n"
	"  patch = 24; stride = 1;\n"
	"  d_model = 64; heads = 4; layers = 2; ffn = 256; dropout = 0.1;\n"
	"  revin = true; channel_independent = true;\n"
	"};\n"
	"train = {\n"
	"  epochs = 20; batch = 64; lr = 1e-3; weight_decay = 0.01;\n"
	"  schedule = \"cosine\";\n"
	"  warmup_steps = 100; clip_norm = 1.0;\n"
	"  early_stopping = { metric = \"val_loss\"; patience = 3; min_delta = 0.0; };\n"
	"  checkpoint_every = 100;\n"
	"  seed = 42; threads = 0;\n"
	"};\n";

START_TEST(spec_example_parses)
{
	tf_spec s;
	char *err = NULL;

	ck_assert_msg(tf_spec_parse(spec_example, "job.conf", task_of, NULL, &s, &err) == 0, "%s",
	              err);
	ck_assert_str_eq(s.name, "seattle-temps-forecast");
	ck_assert_int_eq(s.task, TF_TASK_FORECAST);
	ck_assert(s.cpu == 2.0);
	ck_assert_uint_eq(s.memory, 2ull << 30);
	ck_assert_uint_eq(s.n_features, 1);
	ck_assert_str_eq(s.features[0], "temp");
	ck_assert_str_eq(s.targets[0], "temp");
	ck_assert(s.data.split[0] == 0.7 && s.data.split[1] == 0.1 && s.data.split[2] == 0.2);
	ck_assert_int_eq(s.data.normalize, TF_NORM_ZSCORE);
	ck_assert_int_eq(s.context, 168);
	ck_assert_int_eq(s.data.horizon, 24);
	ck_assert_int_eq(s.d_model, 64);
	ck_assert(s.revin && s.channel_independent);
	ck_assert_int_eq(s.schedule, TF_SCHED_COSINE);
	ck_assert(s.clip_norm == 1.0);
	ck_assert_str_eq(s.es_metric, "val_loss");
	ck_assert(!s.es_maximize);
	ck_assert_int_eq(s.es_patience, 3);
	ck_assert_uint_eq(s.seed, 42);
	ck_assert(s.beta1 == 0.9 && s.beta2 == 0.999);
	tf_spec_free(&s);
}
END_TEST

START_TEST(json_and_task_defaults)
{
	tf_spec s;
	char *err = NULL, *text;
	static const char json[] =
		"{\"data\": {\"path\": \"w.csv\", \"target\": \"weather\"},"
		" \"model\": {\"head\": \"classification\", \"context\": 14, \"patch\": 7},"
		" \"train\": {\"early_stopping\": {\"metric\": \"val_accuracy\"}}}";

	ck_assert_msg(tf_spec_parse(json, "job.json", task_of, NULL, &s, &err) == 0, "%s", err);
	ck_assert_int_eq(s.task, TF_TASK_CLASSIFICATION);
	/* a single string is a one-element list */
	ck_assert_uint_eq(s.n_targets, 1);
	ck_assert_str_eq(s.targets[0], "weather");
	/* the forecast-only switches default off, the loss to cross-entropy */
	ck_assert(!s.revin && !s.channel_independent);
	ck_assert_int_eq(s.loss, TF_LOSS_CROSSENTROPY);
	ck_assert(s.es_maximize);
	/* every default is written into the document */
	text = tf_spec_json(&s);
	ASSERT_HAS(text, "\"revin\":false");
	ASSERT_HAS(text, "\"epochs\":20");
	ASSERT_HAS(text, "\"compute\":\"transformer\"");
	/* a classifier is a Transformer */
	ck_assert_int_eq(s.kind, TF_KIND_TRANSFORMER);
	ASSERT_HAS(text, "\"kind\":\"transformer\"");
	free(text);
	tf_spec_free(&s);
}
END_TEST

START_TEST(model_kinds)
{
	tf_spec s;
	char *err = NULL;

	/* a forecast is auto by default, with every candidate's settings */
	ck_assert_msg(tf_spec_parse("data = { path = \"x\"; };", "job", task_of, NULL, &s, &err) == 0,
	              "%s", err);
	ck_assert_int_eq(s.kind, TF_KIND_AUTO);
	ck_assert_int_eq(s.linear_fit, TF_FIT_RIDGE);
	ck_assert_int_eq(s.decomposition, TF_DECOMP_AUTO);
	ck_assert_int_eq(s.ma_kernel, 25);
	ck_assert(s.ridge_alpha == 0);
	ck_assert_int_eq(s.naive_method, -1);
	ck_assert_int_eq(s.ensemble, TF_ENSEMBLE_WHEN_BETTER);
	ck_assert(!s.choose_one_se);
	tf_spec_free(&s);

	ck_assert_msg(tf_spec_parse("data = { path = \"x\"; }; model = { kind = \"naive\"; "
	                            "naive = { method = \"seasonal\"; }; linear = { fit = "
	                            "\"train\"; decomposition = \"none\"; kernel = 7; alpha = 0.5; "
	                            "}; auto = { ensemble = \"never\"; choose = \"one_se\"; }; "
	                            "residual = \"last\"; };",
	                            "job", task_of, NULL, &s, &err) == 0,
	              "%s", err);
	ck_assert_int_eq(s.kind, TF_KIND_NAIVE);
	ck_assert_int_eq(s.naive_method, 1); /* TF_NAIVE_SEASONAL */
	ck_assert_int_eq(s.linear_fit, TF_FIT_TRAIN);
	ck_assert_int_eq(s.decomposition, TF_DECOMP_NONE);
	ck_assert_int_eq(s.ma_kernel, 7);
	ck_assert(s.ridge_alpha == 0.5);
	ck_assert_int_eq(s.ensemble, TF_ENSEMBLE_NEVER);
	ck_assert(s.choose_one_se);
	ck_assert(s.residual_last);
	tf_spec_free(&s);

	/* a regression may be auto or linear; it is a Transformer by default */
	ck_assert_msg(tf_spec_parse("data = { path = \"x\"; target = [\"y\"]; }; model = { head = "
	                            "\"regression\"; kind = \"auto\"; naive = { method = \"mean\"; "
	                            "}; };",
	                            "job", task_of, NULL, &s, &err) == 0,
	              "%s", err);
	ck_assert_int_eq(s.kind, TF_KIND_AUTO);
	ck_assert_int_eq(s.naive_method, 3); /* TF_NAIVE_MEAN */
	tf_spec_free(&s);
}
END_TEST

static const struct bad {
	const char *text;
	const char *message;
} bad_specs[] = {
	{"data = { path = \"x\"; }; model = { d_modle = 64; };",
	 "model.d_modle: unknown setting (did you mean d_model?)"},
	{"data = { path = \"x\"; }; traing = {};", "traing: unknown setting (did you mean train?)"},
	{"model = {};", "data: missing setting"},
	{"data = { pth = \"x\"; };", "data.path: missing setting"},
	{"data = { path = \"x\"; split = [0.5, 0.1, 0.1]; };",
	 "data.split: the fractions add up to 0.7; they must add up to 1"},
	{"data = { path = \"x\"; split = [0.5, 0.5]; };", "data.split: give three fractions"},
	{"data = { path = \"x\"; normalize = \"z\"; };",
	 "data.normalize: \"z\" is not one of zscore, minmax, none"},
	{"data = { path = \"x\"; }; model = { context = 100; patch = 24; };",
	 "model.patch: 24 does not divide model.context (100)"},
	{"data = { path = \"x\"; }; model = { d_model = 64; heads = 5; };",
	 "model.heads: 5 does not divide model.d_model (64)"},
	{"data = { path = \"x\"; }; model = { head = \"nohead\"; };",
	 "model.head: no head plugin instance \"nohead\""},
	{"data = { path = \"x\"; target = \"w\"; }; model = { head = \"classification\"; "
	 "channel_independent = true; };",
	 "model.channel_independent: only forecasting runs channels independently"},
	{"data = { path = \"x\"; target = [\"a\", \"b\"]; }; model = { head = \"classification\"; };",
	 "data.target: classification needs exactly one label column"},
	{"data = { path = \"x\"; }; model = { head = \"regression\"; loss = \"crossentropy\"; };",
	 "model.loss: crossentropy is for classification"},
	{"data = { path = \"x\"; }; model = { dropout = 1.5; };",
	 "model.dropout: 1.5 is out of range"},
	{"data = { path = \"x\"; }; train = { lr = \"fast\"; };",
	 "train.lr: expected a number, got a string"},
	{"data = { path = \"x\"; }; train = { schedule = \"cosin\"; };",
	 "(did you mean \"cosine\"?)"},
	{"data = { path = \"x\"; features = [\"a\"]; target = [\"b\"]; };",
	 "data.target: \"b\" is not among data.features"},
	{"data = { path = \"x\"; }; train = { early_stopping = { patients = 3; }; };",
	 "train.early_stopping.patients: unknown setting (did you mean patience?)"},
	{"{\"data\": {\"path\": \"x\"}, \"model\": {\"layers\": -1}}", "model.layers: -1 is out of range"},
	{"{\"data\": 5}", "data: expected a group"},
	{"{\"data\": {\"path\": \"x\"},}", "malformed JSON"},
	{"data = { path = ; };", "syntax error"},
	/* degenerate values, each refused naming its key */
	{"data = { path = \"x\"; features = []; };",
	 "data.features: an empty list; name the input columns, or leave data.features out"},
	{"data = { path = \"x\"; target = []; };",
	 "data.target: an empty list; name the column(s) to predict, or leave data.target out"},
	{"data = { path = \"x\"; features = [\"a\", \"\"]; };",
	 "data.features[1]: an empty column name"},
	{"data = { path = \"x\"; features = [\"a\", \"b\", \"a\"]; };",
	 "data.features: \"a\" is listed twice; list each column once"},
	{"data = { path = \"x\"; }; model = { head = \"regression\"; };",
	 "data.target: regression needs the column(s) to predict"},
	{"data = { path = \"x\"; split = [1.0, 0.0, 0.0]; };",
	 "data.split: the validation fraction is 0; validation picks the best epoch and drives "
	 "early stopping, so give it a share, e.g. [0.7, 0.1, 0.2]"},
	{"data = { path = \"x\"; split = [0.8, 0.2, 0.0]; };",
	 "data.split: the test fraction is 0; the final test metrics and baselines need rows of "
	 "their own, so give it a share, e.g. [0.7, 0.1, 0.2]"},
	{"data = { path = \"x\"; split = [0.0, 0.5, 0.5]; };",
	 "data.split: the training fraction must be above 0"},
	{"data = { path = \"x\"; }; train = { batch = 1048576; };",
	 "train.batch: 1048576 is out of range; use a value from 1 to 8192"},
	{"data = { path = \"x\"; }; train = { batch = 0; };", "train.batch: 0 is out of range"},
	{"data = { path = \"x\"; }; model = { context = 0; };", "model.context: 0 is out of range"},
	{"data = { path = \"x\"; }; model = { horizon = 0; };", "model.horizon: 0 is out of range"},
	{"data = { path = \"x\"; }; model = { horizon = -3; };", "model.horizon: -3 is out of range"},
	{"data = { path = \"x\"; }; model = { stride = 0; };", "model.stride: 0 is out of range"},
	{"data = { path = \"x\"; }; train = { epochs = 0; };", "train.epochs: 0 is out of range"},
	/* model kinds */
	{"data = { path = \"x\"; }; model = { kind = \"lineer\"; };",
	 "model.kind: \"lineer\" is not one of auto, transformer, linear, naive"},
	{"data = { path = \"x\"; target = \"w\"; }; model = { head = \"classification\"; "
	 "kind = \"linear\"; };",
	 "model.kind: linear, naive and auto models are for forecasting and regression; use "
	 "\"transformer\" for classification"},
	{"data = { path = \"x\"; }; model = { head = \"anomaly\"; kind = \"auto\"; };",
	 "use \"transformer\" for anomaly"},
	{"data = { path = \"x\"; }; model = { naive = { method = \"mean\"; }; };",
	 "model.naive.method: mean is the naive regression"},
	{"data = { path = \"x\"; target = [\"y\"]; }; model = { head = \"regression\"; "
	 "naive = { method = \"drift\"; }; };",
	 "model.naive.method: a regression's naive model is the training mean"},
	{"data = { path = \"x\"; }; model = { linear = { fit = \"lsq\"; }; };",
	 "model.linear.fit: \"lsq\" is not one of ridge, train"},
	{"data = { path = \"x\"; }; model = { linear = { kernel = 1; }; };",
	 "model.linear.kernel: 1 is out of range"},
	{"data = { path = \"x\"; }; model = { linear = { alpha = -1.0; }; };",
	 "model.linear.alpha: -1 is out of range"},
	{"data = { path = \"x\"; }; model = { auto = { ensemble = true; }; };",
	 "model.auto.ensemble: expected a string"},
	{"data = { path = \"x\"; }; model = { auto = { choose = \"best\"; }; };",
	 "model.auto.choose: \"best\" is not one of lowest, one_se"},
	{"data = { path = \"x\"; target = [\"y\"]; }; model = { head = \"regression\"; residual = "
	 "\"last\"; };",
	 "model.residual: \"last\" adds the window's last value to a forecast; use \"none\" for "
	 "regression"},
	/* incremental runs (docs/incremental.md) */
	{"data = { path = \"x\"; }; train = { init = { alias = \"production\"; }; };",
	 "train.init: name the registered model to start from"},
	{"data = { path = \"x\"; }; train = { init = { model = \"w\"; alias = \"a\"; version = 2; "
	 "}; };",
	 "train.init: give train.init.alias or train.init.version, not both"},
	{"data = { path = \"x\"; }; model = { kind = \"auto\"; }; train = { init = { "
	 "model_dir = \"/d\"; }; };",
	 "model.kind: an incremental run (train.init) goes on training"},
	{"data = { path = \"x\"; }; incremental = { replay = { ratio = 1.0; }; };",
	 "incremental.replay.ratio: replay mixes an earlier version's bank into the batches: it "
	 "needs train.init"},
	{"data = { path = \"x\"; }; incremental = { ewc = { lambda = 1.0; }; };",
	 "incremental.ewc.lambda: EWC holds the weights near an earlier version's"},
	{"data = { path = \"x\"; }; incremental = { lwf = { alpha = 1.0; }; };",
	 "incremental.lwf.alpha: LwF distills an earlier version: it needs train.init"},
	{"data = { path = \"x\"; }; incremental = { ewc = { mode = \"offline\"; }; };",
	 "incremental.ewc.mode"},
	{"data = { path = \"x\"; }; incremental = { replay = { memroy = 3; }; };",
	 "incremental.replay.memroy: unknown setting (did you mean memory?)"},
};

START_TEST(incremental_settings)
{
	tf_spec s;
	char *err = NULL;

	/* without the group, the document is what it was before incremental
	 * runs (checkpoints written then still resume); the bank keeps 1000 */
	ck_assert_msg(tf_spec_parse("data = { path = \"x\"; };", "job", task_of, NULL, &s, &err) == 0,
	              "%s", err);
	ck_assert_ptr_null(json_object_get(s.doc, "incremental"));
	ck_assert_ptr_null(s.init_dir);
	ck_assert_int_eq(s.replay_memory, 1000);
	ck_assert_str_eq(s.replay_sampler, "reservoir");
	ck_assert(s.replay_ratio == 0 && s.ewc_lambda == 0 && s.lwf_alpha == 0);
	tf_spec_free(&s);

	/* a forecast from train.init defaults to the Transformer, not auto */
	ck_assert_msg(tf_spec_parse("data = { path = \"x\"; }; train = { init = { model = \"w\"; "
	                            "version = 3; model_dir = \"/m/v3\"; }; }; incremental = { "
	                            "replay = { memory = 50; ratio = 0.5; }; ewc = { lambda = 10; "
	                            "mode = \"online\"; gamma = 0.9; }; lwf = { alpha = 0.5; }; };",
	                            "job", task_of, NULL, &s, &err) == 0,
	              "%s", err);
	ck_assert_int_eq(s.kind, TF_KIND_TRANSFORMER);
	ck_assert_str_eq(s.init_dir, "/m/v3");
	ck_assert_str_eq(s.init_model, "w");
	ck_assert_int_eq(s.init_version, 3);
	ck_assert_int_eq(s.replay_memory, 50);
	ck_assert(s.replay_ratio == 0.5 && s.ewc_lambda == 10 && s.ewc_online && s.ewc_gamma == 0.9);
	ck_assert(s.lwf_alpha == 0.5 && s.lwf_temperature == 2.0);
	tf_spec_free(&s);
}
END_TEST

START_TEST(bad_spec)
{
	tf_spec s;
	char *err = NULL;
	int rv = tf_spec_parse(bad_specs[_i].text, "job", task_of, NULL, &s, &err);

	ck_assert_int_eq(rv, LOOM_EINVAL);
	ck_assert_ptr_nonnull(err);
	ASSERT_HAS(err, bad_specs[_i].message);
	free(err);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("spec");
	TCase *tc = tcase_create("spec");
	tcase_add_test(tc, spec_example_parses);
	tcase_add_test(tc, json_and_task_defaults);
	tcase_add_test(tc, model_kinds);
	tcase_add_test(tc, incremental_settings);
	tcase_add_loop_test(tc, bad_spec, 0, (int)(sizeof bad_specs / sizeof bad_specs[0]));
	suite_add_tcase(s, tc);
	return tu_run(s);
}

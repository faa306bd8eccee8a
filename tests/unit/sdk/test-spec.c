/* <loom/spec.h>: job specs parsed from libconfig or JSON, checked against
 * a schema (every mistake named by file, line and key), read by path,
 * completed with defaults, and written back as JSON. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <loom/spec.h>

#include "testutil.h"

#define ASSERT_HAS(text, needle)                                                          \
	ck_assert_msg((text) != NULL && strstr((text), (needle)) != NULL,                      \
	              "expected \"%s\" in:\n%s", (needle), (text) ? (text) : "(null)")

static const loom_spec_field layer_fields[] = {
	{.key = "units", .type = LOOM_SPEC_INT, .flags = LOOM_SPEC_REQUIRED | LOOM_SPEC_RANGE,
	 .min = 1, .max = 4096, .help = "width of the layer"},
	{.key = "activation", .type = LOOM_SPEC_STRING, .choices = "relu|gelu|tanh"},
	LOOM_SPEC_END,
};

static const loom_spec_field model_fields[] = {
	{.key = "context", .type = LOOM_SPEC_INT, .flags = LOOM_SPEC_RANGE, .min = 1,
	 .max = 65536, .help = "input window length"},
	{.key = "dropout", .type = LOOM_SPEC_DOUBLE, .flags = LOOM_SPEC_RANGE, .min = 0,
	 .max = 0.99},
	{.key = "revin", .type = LOOM_SPEC_BOOL},
	{.key = "kind", .type = LOOM_SPEC_STRING, .choices = "mean|last|drift"},
	{.key = "layers", .type = LOOM_SPEC_GROUPLIST, .children = layer_fields},
	{.key = "options", .type = LOOM_SPEC_ANYGROUP},
	LOOM_SPEC_END,
};

static const loom_spec_field data_fields[] = {
	{.key = "path", .type = LOOM_SPEC_PATH, .flags = LOOM_SPEC_REQUIRED,
	 .help = "a CSV file"},
	{.key = "target", .type = LOOM_SPEC_STRLIST, .flags = LOOM_SPEC_ONE_OR_LIST},
	{.key = "features", .type = LOOM_SPEC_STRLIST},
	{.key = "split", .type = LOOM_SPEC_DOUBLELIST, .flags = LOOM_SPEC_RANGE, .min = 0,
	 .max = 1},
	{.key = "lags", .type = LOOM_SPEC_INTLIST, .flags = LOOM_SPEC_RANGE, .min = 1,
	 .max = 100},
	LOOM_SPEC_END,
};

static const loom_spec_field fields[] = {
	{.key = "name", .type = LOOM_SPEC_STRING},
	{.key = "memory", .type = LOOM_SPEC_SIZE},
	{.key = "timeout", .type = LOOM_SPEC_DURATION},
	{.key = "data", .type = LOOM_SPEC_GROUP, .flags = LOOM_SPEC_REQUIRED,
	 .children = data_fields},
	{.key = "model", .type = LOOM_SPEC_GROUP, .children = model_fields},
	LOOM_SPEC_END,
};

/* Parse and check text; the spec in *out (free it), the code returned. */
static int
check(const char *text, loom_spec **out)
{
	int rv = loom_spec_parse(text, "job.conf", out);
	ck_assert_ptr_nonnull(*out);
	if (rv == 0)
		rv = loom_spec_check(*out, fields);
	return rv;
}

static const char good[] =
	"name = \"demo\";\n"
	"memory = \"2G\";\n"
	"timeout = \"90s\";\n"
	"data = {\n"
	"  path = \"/data/x.csv\";\n"
	"  target = \"temp\";\n"
	"  split = [0.7, 0.1, 0.2];\n"
	"  lags = [1, 24];\n"
	"};\n"
	"model = {\n"
	"  context = 48;\n"
	"  dropout = 0;\n"
	"  revin = true;\n"
	"  kind = \"drift\";\n"
	"  layers = ( { units = 8; activation = \"gelu\"; }, { units = 4; } );\n"
	"  options = { anything = 1; };\n"
	"};\n";

START_TEST(libconfig_reads_back)
{
	loom_spec *s;
	const char *str;
	int64_t i;
	double d;
	bool b;
	uint64_t bytes;
	size_t n;

	ck_assert_int_eq(check(good, &s), 0);
	ck_assert_uint_eq(loom_spec_error_count(s), 0);
	ck_assert_ptr_null(loom_spec_errors(s));
	ck_assert_int_eq(loom_spec_get_string(s, "name", &str), 0);
	ck_assert_str_eq(str, "demo");
	ck_assert_int_eq(loom_spec_get_size(s, "memory", &bytes), 0);
	ck_assert_uint_eq(bytes, 2ull << 30);
	ck_assert_int_eq(loom_spec_get_duration(s, "timeout", &i), 0);
	ck_assert_int_eq(i, 90000);
	ck_assert_int_eq(loom_spec_get_int(s, "model.context", &i), 0);
	ck_assert_int_eq(i, 48);
	/* an integer is a number */
	ck_assert_int_eq(loom_spec_get_double(s, "model.dropout", &d), 0);
	ck_assert(d == 0.0);
	ck_assert_int_eq(loom_spec_get_bool(s, "model.revin", &b), 0);
	ck_assert(b);
	/* a single string became a one-element list */
	ck_assert_int_eq(loom_spec_get_length(s, "data.target", &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(loom_spec_get_string(s, "data.target[0]", &str), 0);
	ck_assert_str_eq(str, "temp");
	ck_assert_int_eq(loom_spec_get_double(s, "data.split[2]", &d), 0);
	ck_assert(d == 0.2);
	ck_assert_int_eq(loom_spec_get_int(s, "data.lags[1]", &i), 0);
	ck_assert_int_eq(i, 24);
	ck_assert_int_eq(loom_spec_get_length(s, "model.layers", &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(loom_spec_get_int(s, "model.layers[1].units", &i), 0);
	ck_assert_int_eq(i, 4);
	ck_assert_int_eq(loom_spec_get_string(s, "model.layers[0].activation", &str), 0);
	ck_assert_str_eq(str, "gelu");
	ck_assert_int_eq(loom_spec_get_length(s, "model", &n), 0);
	ck_assert_uint_eq(n, 6);
	ck_assert(loom_spec_has(s, "model.options.anything"));
	ck_assert(!loom_spec_has(s, "model.options.nothing"));
	loom_spec_free(s);
}
END_TEST

START_TEST(json_is_detected)
{
	loom_spec *s;
	const char *str;
	uint64_t bytes;
	int64_t ms;
	char *json;

	ck_assert_int_eq(check("  \n\t{\"data\": {\"path\": \"x.csv\", \"target\": [\"a\", \"b\"]},"
	                       " \"memory\": 4096, \"timeout\": 1.5}",
	                       &s),
	                 0);
	ck_assert_int_eq(loom_spec_get_string(s, "data.target[1]", &str), 0);
	ck_assert_str_eq(str, "b");
	ck_assert_int_eq(loom_spec_get_size(s, "memory", &bytes), 0);
	ck_assert_uint_eq(bytes, 4096);
	ck_assert_int_eq(loom_spec_get_duration(s, "timeout", &ms), 0);
	ck_assert_int_eq(ms, 1500);
	/* compact, keys sorted */
	json = loom_spec_json(s);
	ck_assert_str_eq(json, "{\"data\":{\"path\":\"x.csv\",\"target\":[\"a\",\"b\"]},"
	                       "\"memory\":4096,\"timeout\":1.5}");
	free(json);
	loom_spec_free(s);
}
END_TEST

START_TEST(json_round_trip)
{
	loom_spec *s, *t;
	char *a, *b;

	ck_assert_int_eq(check(good, &s), 0);
	a = loom_spec_json(s);
	ck_assert_int_eq(loom_spec_parse(a, "again", &t), 0);
	ck_assert_int_eq(loom_spec_check(t, fields), 0);
	b = loom_spec_json(t);
	ck_assert_str_eq(a, b);
	free(a);
	free(b);
	loom_spec_free(s);
	loom_spec_free(t);
}
END_TEST

/* Every mistake a user can make, and what they are told. */
static const struct bad {
	const char *text;
	const char *message;
} bad_specs[] = {
	/* unknown keys: a suggestion when one is close, the known keys otherwise */
	{"data = { path = \"x\"; };\nmodel = {\n  contxt = 3;\n};",
	 "job.conf:3: model.contxt: unknown setting (did you mean context?)"},
	{"data = { path = \"x\"; }; zebra = 1;",
	 "zebra: unknown setting; known settings here: name, memory, timeout, data, model"},
	{"data = { path = \"x\"; };\nmodel = { layers = ( { units = 3; unit = 4; } ); };",
	 "job.conf:2: model.layers[0].unit: unknown setting (did you mean units?)"},
	/* wrong types, with what the setting is */
	{"data = { path = \"x\"; }; model = { context = \"long\"; };",
	 "model.context: expected an integer, got a string; it is input window length"},
	{"data = { path = \"x\"; }; model = { context = 1.5; };",
	 "model.context: expected an integer, got a number"},
	{"data = { path = \"x\"; }; model = { dropout = \"0.1\"; };",
	 "model.dropout: expected a number, got a string"},
	{"data = { path = \"x\"; }; model = { revin = 1; };",
	 "model.revin: expected a boolean (true or false), got an integer"},
	{"data = { path = 3; };", "data.path: expected a path (a string), got an integer"},
	{"name = true; data = { path = \"x\"; };", "name: expected a string, got a boolean"},
	{"data = 5;", "data: expected a group { ... }, got an integer"},
	{"data = { path = \"x\"; }; model = { layers = { units = 1; }; };",
	 "model.layers: expected a list of groups ( { ... }, ... ), got a group"},
	{"data = { path = \"x\"; }; model = { layers = ( 5 ); };",
	 "model.layers[0]: expected a group { ... }, got an integer"},
	{"data = { path = \"x\"; }; model = { options = 1; };",
	 "model.options: expected a group { ... }, got an integer"},
	/* lists */
	{"data = { path = \"x\"; features = [1, 2]; };",
	 "data.features[0]: expected a string, got an integer"},
	{"data = { path = \"x\"; features = \"a\"; };",
	 "data.features: expected a list of strings, got a string"},
	{"data = { path = \"x\"; target = 3; };",
	 "data.target: expected a list of strings, got an integer"},
	{"data = { path = \"x\"; split = (0.5, \"a\"); };",
	 "job.conf:1: data.split[1]: expected a number, got a string"},
	{"{\"data\": {\"path\": \"x\", \"lags\": [1, 2.5]}}",
	 "job.conf: data.lags[1]: expected an integer, got a number"},
	{"data = { path = \"x\"; lags = 3; };", "data.lags: expected a list of integers, got an "
	                                        "integer"},
	/* ranges, per element of number lists too */
	{"data = { path = \"x\"; }; model = { context = 0; };",
	 "model.context: 0 is out of range; use a value from 1 to 65536"},
	{"data = { path = \"x\"; }; model = { dropout = 1.5; };",
	 "model.dropout: 1.5 is out of range; use a value from 0 to 0.99"},
	{"data = { path = \"x\"; split = [0.5, 1.5]; };",
	 "data.split[1]: 1.5 is out of range; use a value from 0 to 1"},
	{"data = { path = \"x\"; lags = [0]; };",
	 "data.lags[0]: 0 is out of range; use a value from 1 to 100"},
	{"data = { path = \"x\"; }; model = { layers = ( { units = 5000; } ); };",
	 "model.layers[0].units: 5000 is out of range"},
	/* choices, with a suggestion */
	{"data = { path = \"x\"; }; model = { kind = \"mea\"; };",
	 "model.kind: \"mea\" is not one of mean, last, drift (did you mean \"mean\"?)"},
	{"data = { path = \"x\"; }; model = { layers = ( { units = 1; activation = \"sigmoid\"; } ); "
	 "};",
	 "model.layers[0].activation: \"sigmoid\" is not one of relu, gelu, tanh"},
	/* missing and empty required settings, at the group's line */
	{"name = \"n\";", "job.conf: data: missing setting"},
	{"name = \"n\";\ndata = {\n  target = \"t\";\n};",
	 "job.conf:2: data.path: missing setting (a CSV file)"},
	{"data = { path = \"\"; };", "data.path: must not be empty (a CSV file)"},
	{"data = { path = \"x\"; }; model = { layers = ( { activation = \"relu\"; } ); };",
	 "model.layers[0].units: missing setting (width of the layer)"},
	/* sizes and durations */
	{"memory = \"lots\"; data = { path = \"x\"; };",
	 "memory: \"lots\" is not a size; write bytes, or a number with K, M, G or T"},
	{"memory = -1; data = { path = \"x\"; };", "memory: a size must not be negative"},
	{"memory = 1.5; data = { path = \"x\"; };", "memory: expected a size"},
	{"timeout = \"soon\"; data = { path = \"x\"; };",
	 "timeout: \"soon\" is not a duration; write seconds, or a number with ms, s, m, h or d"},
	{"timeout = -3; data = { path = \"x\"; };", "timeout: a duration must not be negative"},
	{"timeout = true; data = { path = \"x\"; };", "timeout: expected a duration"},
	/* JSON: the same checks, without lines */
	{"{\"data\": {\"path\": \"x\"}, \"model\": {\"d_model\": 3}}",
	 "job.conf: model.d_model: unknown setting; known settings here: context, dropout"},
	{"{\"data\": {\"path\": \"x\"}, \"model\": {\"contxt\": 3}}",
	 "job.conf: model.contxt: unknown setting (did you mean context?)"},
	/* syntax */
	{"data = { path = ; };", "job.conf:1: syntax error"},
	{"{\"data\": {\"path\": \"x\"},}", "malformed JSON: "},
	{"{\"data\": {\"path\": \"x\"}, \"data\": {}}", "malformed JSON: duplicate object key"},
};

START_TEST(bad_spec)
{
	loom_spec *s;
	char *err;
	int rv = check(bad_specs[_i].text, &s);

	ck_assert_int_eq(rv, LOOM_EINVAL);
	ck_assert_uint_gt(loom_spec_error_count(s), 0);
	err = loom_spec_errors(s);
	ASSERT_HAS(err, bad_specs[_i].message);
	free(err);
	loom_spec_free(s);
}
END_TEST

START_TEST(every_problem_is_reported)
{
	loom_spec *s;
	char *err;

	ck_assert_int_eq(check("data = {\n"
	                       "  pth = \"x\";\n"
	                       "};\n"
	                       "model = {\n"
	                       "  context = 0;\n"
	                       "  kind = \"median\";\n"
	                       "};\n",
	                       &s),
	                 LOOM_EINVAL);
	ck_assert_uint_eq(loom_spec_error_count(s), 4);
	err = loom_spec_errors(s);
	ASSERT_HAS(err, "job.conf:2: data.pth: unknown setting (did you mean path?)\n");
	ASSERT_HAS(err, "job.conf:1: data.path: missing setting");
	ASSERT_HAS(err, "job.conf:5: model.context: 0 is out of range");
	ASSERT_HAS(err, "job.conf:6: model.kind: \"median\" is not one of");
	ck_assert_ptr_null(strchr(err + strlen(err) - 1, '\n')); /* no trailing newline */
	free(err);
	loom_spec_free(s);
}
END_TEST

START_TEST(broken_documents)
{
	loom_spec *s;
	char *err;

	/* a syntax error leaves an empty document that cannot be checked */
	ck_assert_int_eq(loom_spec_parse("a = ", "broken.conf", &s), LOOM_EINVAL);
	ck_assert_int_eq(loom_spec_check(s, fields), LOOM_EINVAL);
	ck_assert_uint_eq(loom_spec_error_count(s), 1);
	ck_assert(!loom_spec_has(s, "a"));
	err = loom_spec_json(s);
	ck_assert_str_eq(err, "{}");
	free(err);
	loom_spec_free(s);

	/* JSON must be an object */
	ck_assert_int_eq(loom_spec_parse("[1, 2]", "list.json", &s), LOOM_EINVAL);
	err = loom_spec_errors(s);
	/* '[' is not '{': read as libconfig, which says so */
	ASSERT_HAS(err, "list.json:1: syntax error");
	free(err);
	loom_spec_free(s);

	/* strings must be UTF-8 */
	ck_assert_int_eq(loom_spec_parse("name = \"\xff\";", "bytes.conf", &s), LOOM_EINVAL);
	err = loom_spec_errors(s);
	ASSERT_HAS(err, "bytes.conf:1: name: the string is not valid UTF-8");
	free(err);
	loom_spec_free(s);

	/* no name: "spec" */
	ck_assert_int_eq(loom_spec_parse("x = ;", NULL, &s), LOOM_EINVAL);
	err = loom_spec_errors(s);
	ASSERT_HAS(err, "spec:1: syntax error");
	free(err);
	loom_spec_free(s);

	ck_assert_int_eq(loom_spec_parse(NULL, "x", &s), LOOM_EINVAL);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(loom_spec_parse("x = 1;", "x", NULL), LOOM_EINVAL);
	ck_assert_int_eq(loom_spec_check(NULL, fields), LOOM_EINVAL);
	ck_assert_uint_eq(loom_spec_error_count(NULL), 0);
	ck_assert_ptr_null(loom_spec_errors(NULL));
	ck_assert_ptr_null(loom_spec_json(NULL));
	loom_spec_free(NULL);
}
END_TEST

START_TEST(broken_schema)
{
	static const loom_spec_field inner[] = {
		{.key = "x", .type = 99},
		LOOM_SPEC_END,
	};
	static const loom_spec_field outer[] = {
		{.key = "g", .type = LOOM_SPEC_GROUP, .children = inner},
		LOOM_SPEC_END,
	};
	static const loom_spec_field none[] = {LOOM_SPEC_END};
	loom_spec *s;
	char *err;

	ck_assert_int_eq(loom_spec_parse("g = { x = 1; };", "s", &s), 0);
	ck_assert_int_eq(loom_spec_check(s, outer), LOOM_EINVAL);
	err = loom_spec_errors(s);
	ASSERT_HAS(err, "g.x: the plugin's schema gives it an unknown type 99; the plugin is "
	                "broken, report it to its author");
	free(err);
	loom_spec_free(s);

	/* an empty schema accepts nothing */
	ck_assert_int_eq(loom_spec_parse("a = 1;", "s", &s), 0);
	ck_assert_int_eq(loom_spec_check(s, none), LOOM_EINVAL);
	err = loom_spec_errors(s);
	ASSERT_HAS(err, "s:1: a: unknown setting; no settings are accepted here");
	free(err);
	loom_spec_free(s);
}
END_TEST

START_TEST(getters_refuse)
{
	loom_spec *s;
	const char *str;
	int64_t i;
	double d;
	bool b;
	uint64_t bytes;
	size_t n;

	ck_assert_int_eq(check(good, &s), 0);
	/* nothing there */
	ck_assert_int_eq(loom_spec_get_int(s, "model.heads", &i), LOOM_ENOENT);
	ck_assert_int_eq(loom_spec_get_int(s, "data.lags[7]", &i), LOOM_ENOENT);
	ck_assert_int_eq(loom_spec_get_int(s, "model.context.x", &i), LOOM_ENOENT);
	ck_assert_int_eq(loom_spec_get_string(s, "nope.nothing", &str), LOOM_ENOENT);
	/* another type */
	ck_assert_int_eq(loom_spec_get_int(s, "name", &i), LOOM_EINVAL);
	ck_assert_int_eq(loom_spec_get_double(s, "name", &d), LOOM_EINVAL);
	ck_assert_int_eq(loom_spec_get_bool(s, "model.context", &b), LOOM_EINVAL);
	ck_assert_int_eq(loom_spec_get_string(s, "model", &str), LOOM_EINVAL);
	ck_assert_int_eq(loom_spec_get_size(s, "model.revin", &bytes), LOOM_EINVAL);
	ck_assert_int_eq(loom_spec_get_size(s, "name", &bytes), LOOM_EINVAL);
	ck_assert_int_eq(loom_spec_get_duration(s, "name", &i), LOOM_EINVAL);
	ck_assert_int_eq(loom_spec_get_duration(s, "model.revin", &i), LOOM_EINVAL);
	ck_assert_int_eq(loom_spec_get_length(s, "name", &n), LOOM_EINVAL);
	/* malformed paths */
	static const char *const paths[] = {"", ".", "model.", ".model", "model..context",
	                                    "[0]", "data.lags[", "data.lags[x]", "data.lags[1]x",
	                                    "data.lags[-1]", "model]", "data.lags.[0]"};
	for (size_t k = 0; k < sizeof paths / sizeof paths[0]; k++)
		ck_assert_msg(loom_spec_get_int(s, paths[k], &i) == LOOM_EINVAL,
		              "\"%s\" should be refused", paths[k]);
	ck_assert_int_eq(loom_spec_get_int(s, NULL, &i), LOOM_EINVAL);
	ck_assert_int_eq(loom_spec_get_int(NULL, "name", &i), LOOM_EINVAL);
	ck_assert(!loom_spec_has(s, "model..context"));
	loom_spec_free(s);
}
END_TEST

START_TEST(defaults)
{
	loom_spec *s;
	int64_t i;
	double d;
	bool b;
	const char *str;
	size_t n;
	char *json;

	ck_assert_int_eq(check("data = { path = \"x\"; }; model = { context = 12; };", &s), 0);
	/* set if absent, keep what is there */
	ck_assert_int_eq(loom_spec_default_int(s, "model.context", 168), 0);
	ck_assert_int_eq(loom_spec_default_int(s, "model.horizon", 24), 0);
	ck_assert_int_eq(loom_spec_get_int(s, "model.context", &i), 0);
	ck_assert_int_eq(i, 12);
	ck_assert_int_eq(loom_spec_get_int(s, "model.horizon", &i), 0);
	ck_assert_int_eq(i, 24);
	/* groups on the way are created */
	ck_assert_int_eq(loom_spec_default_double(s, "train.early_stopping.min_delta", 0.5), 0);
	ck_assert_int_eq(loom_spec_get_double(s, "train.early_stopping.min_delta", &d), 0);
	ck_assert(d == 0.5);
	ck_assert_int_eq(loom_spec_default_bool(s, "model.revin", true), 0);
	ck_assert_int_eq(loom_spec_get_bool(s, "model.revin", &b), 0);
	ck_assert(b);
	ck_assert_int_eq(loom_spec_default_string(s, "name", "job"), 0);
	ck_assert_int_eq(loom_spec_get_string(s, "name", &str), 0);
	ck_assert_str_eq(str, "job");
	ck_assert_int_eq(loom_spec_default_json(s, "data.split", "[0.7, 0.1, 0.2]"), 0);
	ck_assert_int_eq(loom_spec_get_length(s, "data.split", &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(loom_spec_get_double(s, "data.split[1]", &d), 0);
	ck_assert(d == 0.1);
	ck_assert_int_eq(loom_spec_default_json(s, "after", "[]"), 0);
	/* refused: through a value that is not a group, element defaults, bad JSON, bad paths */
	ck_assert_int_eq(loom_spec_default_int(s, "model.context.x", 1), LOOM_EINVAL);
	ck_assert_int_eq(loom_spec_default_int(s, "data.split[0]", 1), LOOM_EINVAL);
	ck_assert_int_eq(loom_spec_default_int(s, "data.split[9].x", 1), LOOM_EINVAL);
	ck_assert_int_eq(loom_spec_default_json(s, "x", "[1,"), LOOM_EINVAL);
	ck_assert_int_eq(loom_spec_default_json(s, "x", NULL), LOOM_EINVAL);
	ck_assert_int_eq(loom_spec_default_string(s, "x", NULL), LOOM_EINVAL);
	ck_assert_int_eq(loom_spec_default_string(s, "x", "\xff"), LOOM_EINVAL);
	ck_assert_int_eq(loom_spec_default_int(s, "", 1), LOOM_EINVAL);
	ck_assert_int_eq(loom_spec_default_int(s, "a..b", 1), LOOM_EINVAL);
	ck_assert_int_eq(loom_spec_default_int(NULL, "a", 1), LOOM_EINVAL);
	ck_assert(!loom_spec_has(s, "x"));
	/* every default is in the document */
	json = loom_spec_json(s);
	ck_assert_str_eq(json, "{\"after\":[],\"data\":{\"path\":\"x\",\"split\":[0.69999999999999996,"
	                       "0.10000000000000001,0.20000000000000001]},\"model\":{\"context\":12,"
	                       "\"horizon\":24,\"revin\":true},\"name\":\"job\",\"train\":"
	                       "{\"early_stopping\":{\"min_delta\":0.5}}}");
	free(json);
	loom_spec_free(s);
}
END_TEST

START_TEST(defaults_in_group_lists)
{
	loom_spec *s;
	const char *str;

	ck_assert_int_eq(check(good, &s), 0);
	ck_assert_int_eq(loom_spec_default_string(s, "model.layers[1].activation", "relu"), 0);
	ck_assert_int_eq(loom_spec_default_string(s, "model.layers[0].activation", "relu"), 0);
	ck_assert_int_eq(loom_spec_get_string(s, "model.layers[1].activation", &str), 0);
	ck_assert_str_eq(str, "relu");
	ck_assert_int_eq(loom_spec_get_string(s, "model.layers[0].activation", &str), 0);
	ck_assert_str_eq(str, "gelu");
	loom_spec_free(s);
}
END_TEST

START_TEST(cross_field_errors)
{
	loom_spec *s;
	char *err;

	ck_assert_int_eq(check("data = {\n"
	                       "  path = \"x\";\n"
	                       "  split = [0.5, 0.1];\n"
	                       "};\n",
	                       &s),
	                 0);
	/* at a setting from the text: its line */
	loom_spec_errorf(s, "data.split", "give three fractions, e.g. [%g, %g, %g]", 0.7, 0.1, 0.2);
	/* at a list element */
	loom_spec_errorf(s, "data.split[1]", "too small");
	/* at a setting that is not there (or was a default): the name only */
	loom_spec_errorf(s, "model.context", "must be even");
	/* about the whole document */
	loom_spec_errorf(s, NULL, "no head plugin instance \"%s\"", "nohead");
	loom_spec_errorf(s, "", "empty path");
	ck_assert_uint_eq(loom_spec_error_count(s), 5);
	err = loom_spec_errors(s);
	ck_assert_str_eq(err, "job.conf:3: data.split: give three fractions, e.g. [0.7, 0.1, 0.2]\n"
	                      "job.conf:3: data.split[1]: too small\n"
	                      "job.conf: model.context: must be even\n"
	                      "job.conf: no head plugin instance \"nohead\"\n"
	                      "job.conf: empty path");
	free(err);
	loom_spec_errorf(NULL, "x", "ignored");
	loom_spec_free(s);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("spec");
	TCase *tc = tcase_create("spec");
	tcase_add_test(tc, libconfig_reads_back);
	tcase_add_test(tc, json_is_detected);
	tcase_add_test(tc, json_round_trip);
	tcase_add_loop_test(tc, bad_spec, 0, (int)(sizeof bad_specs / sizeof bad_specs[0]));
	tcase_add_test(tc, every_problem_is_reported);
	tcase_add_test(tc, broken_documents);
	tcase_add_test(tc, broken_schema);
	tcase_add_test(tc, getters_refuse);
	tcase_add_test(tc, defaults);
	tcase_add_test(tc, defaults_in_group_lists);
	tcase_add_test(tc, cross_field_errors);
	suite_add_tcase(s, tc);
	return tu_run(s);
}

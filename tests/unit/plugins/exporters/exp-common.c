/* Helpers of the exporters' Check suites.  See exp-common.h. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exp-common.h"
#include "host/core/plugins.h"
#include "host/core/util.h"

#define DATA "/usr/lib/python3/dist-packages/vega_datasets/_data/seattle-temps.csv"

static char *train_tmp;

/* An environment variable of make check (outside a test: no ck_assert). */
static const char *
env(const char *name)
{
	const char *v = getenv(name);
	if (v == NULL || *v == '\0') {
		fprintf(stderr, "%s is not set; run the tests with make check\n", name);
		exit(1);
	}
	return v;
}

const char *
exp_train(void)
{
	static char *out;
	char *cmd;
	int rv;

	if (out)
		return out;
	if (access(DATA, R_OK) != 0) {
		printf("SKIP: %s is missing; install python3-vega-datasets (./bootstrap does)\n",
		       DATA);
		exit(77);
	}
	train_tmp = tu_tmpdir();
	out = loomi_strfmt("%s/run", train_tmp);
	cmd = loomi_strfmt("LOOM_PLUGIN_PATH='%s' '%s/host/loom-worker' --threads 1 --run "
	                   "'%s/tests/unit/plugins/exporters/tiny-forecast.conf' --out '%s' "
	                   ">'%s/train.log' 2>&1",
	                   env("LOOM_TEST_PLUGINS"), env("LOOM_TEST_BUILDDIR"),
	                   env("LOOM_TEST_SRCDIR"), out, train_tmp);
	rv = system(cmd);
	free(cmd);
	if (rv != 0) {
		fprintf(stderr, "loom-worker could not train the tiny spec (status %d); see %s/train.log\n",
		        rv, train_tmp);
		exit(1);
	}
	return out;
}

int
exp_done(int status)
{
	if (train_tmp) {
		tu_rmrf(train_tmp);
		free(train_tmp);
		train_tmp = NULL;
	}
	return status;
}

loomi_export_run *
exp_load(const char *dir)
{
	loomi_export_run *r = NULL;
	char *err = NULL;
	int rv = loomi_export_load(dir, &r, &err);

	ck_assert_msg(rv == 0, "cannot load %s: %s", dir, err ? err : "?");
	free(err);
	return r;
}

void
exp_open(exp_plugin *e, const char *module)
{
	const void *ops = NULL;
	char *err = NULL;
	int rv;

	memset(e, 0, sizeof *e);
	rv = tu_plugin_open(&e->p, module, "exp", "", "exp.conf", &err);
	ck_assert_msg(rv == 0, "cannot start %s: %s", module, err ? err : "?");
	rv = loomi_host_services()->instance_ops(e->p.ins, "exp", LOOM_KIND_EXPORTER, &ops,
	                                          &e->ctx);
	ck_assert_int_eq(rv, 0);
	e->ops = ops;
	ck_assert_ptr_nonnull(e->ops);
}

void
exp_close(exp_plugin *e)
{
	tu_plugin_close(&e->p);
	memset(e, 0, sizeof *e);
}

static int
buf_write(void *arg, const void *data, size_t len)
{
	exp_buf *b = arg;

	b->writes++;
	if (b->fail_after && b->len + len > b->fail_after)
		return b->fail_rv;
	if (b->len + len + 1 > b->cap) {
		size_t cap = (b->len + len + 1) * 2;
		char *p = realloc(b->data, cap);
		if (p == NULL)
			return LOOM_ENOMEM;
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

void
exp_buf_init(exp_buf *b)
{
	memset(b, 0, sizeof *b);
	b->sink.arg = b;
	b->sink.write = buf_write;
}

void
exp_buf_free(exp_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof *b);
}

char *
exp_save(const char *dir, const char *name, const void *data, size_t len)
{
	char *path = loomi_path_join(dir, name);
	FILE *f = fopen(path, "wb");

	ck_assert_msg(f != NULL, "cannot write %s", path);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
	return path;
}

int
exp_sh(const char *cmd, char **out)
{
	FILE *p = popen(cmd, "r");
	char *text = NULL;
	size_t len = 0, cap = 0, n;
	char chunk[4096];
	int st;

	if (p == NULL)
		return -1;
	while ((n = fread(chunk, 1, sizeof chunk, p)) > 0) {
		if (len + n + 1 > cap) {
			cap = (len + n + 1) * 2;
			text = loomi_xrealloc(text, cap);
		}
		memcpy(text + len, chunk, n);
		len += n;
		text[len] = '\0';
	}
	st = pclose(p);
	if (out)
		*out = text ? text : loomi_strdup("");
	else
		free(text);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

const char *
exp_python(void)
{
	return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

int
exp_synth_history(const loom_export_source *src, const char *metric, loom_metric_fn fn,
                  void *arg)
{
	const exp_synth *s = src->history_arg;
	static const double special[] = {NAN, INFINITY, -INFINITY, 0.1, 1e-300, 4.9e-324, -0.0};
	size_t ns = sizeof special / sizeof special[0];
	int rv;

	for (size_t i = 0; i < s->n; i++) {
		loom_metric_point pt = {
			.name = metric,
			.step = (int64_t)i,
			.epoch = (int32_t)(i / 10),
			.scope = LOOM_METRIC_STEP,
			.value = i < ns ? special[i] : 1.0 / (double)(i + 3) + (double)strlen(metric),
		};
		if ((rv = fn(arg, &pt)) != 0)
			return rv;
	}
	return 0;
}

static json_t *
hexed(double v)
{
	char buf[64];

	if (isnan(v))
		return json_string("nan");
	if (isinf(v))
		return json_string(v > 0 ? "inf" : "-inf");
	snprintf(buf, sizeof buf, "%a", v);
	return json_string(buf);
}

typedef struct gather {
	json_t *step, *epoch, *value;
	json_t *rows;
	const char *run_id, *metric;
} gather;

static int
gather_point(void *arg, const loom_metric_point *pt)
{
	static const char *const scopes[] = {"step", "epoch", "final"};
	gather *g = arg;

	if (g->rows) {
		json_array_append_new(g->rows, json_pack("[s,s,I,i,s,o]", g->run_id, g->metric,
		                                         (json_int_t)pt->step, (int)pt->epoch,
		                                         scopes[pt->scope], hexed(pt->value)));
		return 0;
	}
	json_array_append_new(g->step, json_integer(pt->step));
	json_array_append_new(g->epoch, json_integer(pt->epoch));
	json_array_append_new(g->value, hexed(pt->value));
	return 0;
}

json_t *
exp_expect_history(const loom_export_source *src)
{
	json_t *h = json_object();

	for (size_t i = 0; src->history && i < src->n_metric_names; i++) {
		gather g = {json_array(), json_array(), json_array(), NULL, NULL, NULL};
		ck_assert_int_eq(src->history(src, src->metric_names[i], gather_point, &g), 0);
		json_object_set_new(h, src->metric_names[i],
		                    json_pack("{s:o,s:o,s:o}", "step", g.step, "epoch", g.epoch,
		                              "value", g.value));
	}
	return json_pack("{s:o}", "history", h);
}

static void
final_rows(json_t *rows, const char *run_id, const char *path, json_t *v)
{
	const char *key;
	json_t *e;

	if (json_is_number(v))
		json_array_append_new(rows, json_pack("[s,s,n,n,s,o]", run_id, path, "final",
		                                      hexed(json_number_value(v))));
	if (!json_is_object(v))
		return;
	json_object_foreach(v, key, e) {
		char *sub = *path ? loomi_strfmt("%s.%s", path, key) : loomi_strdup(key);
		if (*path || strcmp(key, "epochs") != 0)
			final_rows(rows, run_id, sub, e);
		free(sub);
	}
}

json_t *
exp_expect_rows(const loom_export_source *const *srcs, size_t n)
{
	json_t *rows = json_array();

	for (size_t k = 0; k < n; k++) {
		const loom_export_source *src = srcs[k];
		json_t *m = json_loads(src->metrics_json, 0, NULL);
		for (size_t i = 0; src->history && i < src->n_metric_names; i++) {
			gather g = {NULL, NULL, NULL, rows, src->run_id, src->metric_names[i]};
			ck_assert_int_eq(src->history(src, g.metric, gather_point, &g), 0);
		}
		final_rows(rows, src->run_id, "", m);
		json_decref(m);
	}
	return json_pack("{s:o}", "rows", rows);
}

int
exp_check(const char *mode, const void *data, size_t len, json_t *expect, char **log)
{
	char *dir = tu_tmpdir(), *file = exp_save(dir, "export", data, len);
	char *want = loomi_path_join(dir, "expect.json"), *cmd;
	int rv;

	ck_assert_int_eq(json_dump_file(expect, want, JSON_COMPACT), 0);
	cmd = loomi_strfmt("'%s' '%s/tests/unit/plugins/exporters/check_export.py' %s '%s' '%s' 2>&1",
	                   exp_python(), tu_env("LOOM_TEST_SRCDIR"), mode, file, want);
	rv = exp_sh(cmd, log);
	free(cmd);
	free(want);
	free(file);
	tu_rmrf(dir);
	free(dir);
	return rv;
}

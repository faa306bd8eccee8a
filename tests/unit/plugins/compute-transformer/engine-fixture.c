/* engine-fixture.c — see engine-fixture.h. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <check.h>

#include <loom/loom.h>

#include "engine-fixture.h"
#include "host/core/conf.h"
#include "host/core/plugins.h"
#include "host/core/util.h"
#include "testutil.h"

static loomi_plugins reg;
static loomi_doc doc;
const loom_host *host;
loom_instance *tf;
const loom_compute_ops *ops;
char *tmp;

void
fx_setup(void)
{
	static const char *const plugins[][2] = {
		{"transformer", "compute-transformer"}, {"forecast", "head-forecast"},
		{"regression", "head-regression"},      {"classification", "head-classification"},
		{"anomaly", "head-anomaly"},
	};
	const char *dirs[] = {tu_env("LOOM_TEST_PLUGINS")};
	loomi_strv errs = {0};
	char *err = NULL;

	tmp = tu_tmpdir();
	host = loomi_host_services();
	ck_assert_int_eq(loomi_plugins_init(&reg, dirs, 1, NULL), 0);
	ck_assert_int_eq(loomi_doc_load_string(&doc, "x = 1;", "t", &errs), 0);
	for (size_t i = 0; i < sizeof plugins / sizeof plugins[0]; i++) {
		loomi_plugin_conf pc = {(char *)plugins[i][0], (char *)plugins[i][1], NULL, doc.root};
		loom_instance *ins;
		ck_assert_int_eq(loomi_instance_create(&reg, &doc, &pc, &ins, &errs), 0);
		ck_assert_msg(loomi_instance_start(ins, &err) == 0, "%s: %s", plugins[i][1], err);
		if (i == 0)
			tf = ins;
	}
	ops = tf->desc->ops;
	ck_assert(ops->caps & LOOM_COMPUTE_PREDICT);
}

void
fx_teardown(void)
{
	loomi_plugins_fini(&reg);
	loomi_doc_free(&doc);
	tu_rmrf(tmp);
	free(tmp);
}

int
fx_head_task(void *arg, const char *name)
{
	static const char *const names[] = {"", "forecast", "regression", "classification",
	                                    "anomaly"};
	(void)arg;
	for (int i = 1; i < 5; i++)
		if (strcmp(name, names[i]) == 0)
			return i; /* the instance names above are the tasks' */
	return 0;
}

void
fx_train(const char *spec, const char *out)
{
	loom_job job;

	memset(&job, 0, sizeof job);
	job.size = sizeof job;
	job.spec_json = spec;
	job.out_dir = out;
	job.threads = 2;
	ck_assert_int_eq(ops->run(tf->ctx, &job), 0);
}


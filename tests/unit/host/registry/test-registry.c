/* host/registry: model versions registered from task directories into a
 * real state database: numbering, copies that outlive the task, automatic
 * best-<metric> tags, promote and rollback chains (with the 409 past the
 * first promotion), unsafe names, tasks with missing or damaged files, the
 * registration thread, and the routes' HTTP statuses. */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <loom/loom.h>

#include "host/server/api.h"
#include "host/server/auth.h"
#include "host/core/bus.h"
#include "host/core/log.h"
#include "host/registry/deploy.h"
#include "host/registry/registry.h"
#include "host/server/store.h"
#include "host/core/util.h"
#include "testutil.h"

#define ASSERT_HAS(text, needle)                                                          \
	ck_assert_msg((text) != NULL && strstr((text), (needle)) != NULL,                     \
	              "expected \"%s\" in:\n%s", (needle), (text) ? (text) : "(null)")

static struct {
	char *tmp;
	loomi_daemon d;
	bool store_up;
} T;

/* ------------------------------------------------------------------ fixture */

static long long
scalar(const char *sql)
{
	sqlite3_stmt *st;
	long long v = -1;

	ck_assert_int_eq(sqlite3_prepare_v2(T.d.store.db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void
exec(const char *sql)
{
	char *e = NULL;
	int rc = sqlite3_exec(T.d.store.db, sql, NULL, NULL, &e);
	ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, e ? e : "?");
}

static void
setup(void)
{
	char *path, *err = NULL;
	int rv;

	memset(&T, 0, sizeof T);
	T.tmp = tu_tmpdir();
	ck_assert_int_eq(loomi_log_setup(LOOM_LOG_WARN, LOOMI_LOG_TEXT, NULL, &err), 0);
	T.d.conf.state_dir = loomi_strdup(T.tmp);
	path = loomi_path_join(T.tmp, "loom.db");
	rv = loomi_store_open(&T.d.store, path, &err);
	free(path);
	ck_assert_msg(rv == 0, "cannot open the store: %s", err ? err : "?");
	T.store_up = true;
}

static void
teardown(void)
{
	loomi_registry_stop(&T.d);
	if (T.store_up)
		loomi_store_close(&T.d.store);
	free(T.d.conf.state_dir);
	tu_rmrf(T.tmp);
	free(T.tmp);
}

/* A completed task id named name whose directory holds best.safetensors
 * (unless !weights) and a metrics.json with these test and validation
 * figures (metrics NULL: none). */
static void
add_task(int64_t id, const char *name, bool weights, const char *metrics)
{
	char *dir = loomi_strfmt("%s/jobs/task-%lld", T.tmp, (long long)id);
	sqlite3_stmt *st;

	ck_assert_int_eq(loomi_mkdir_p(dir, 0755), 0);
	if (weights) {
		char *w = loomi_strfmt("weights of task %lld", (long long)id);
		free(tu_write(dir, "best.safetensors", w));
		free(tu_write(dir, "last.safetensors", "last"));
		free(w);
	}
	if (metrics)
		free(tu_write(dir, "metrics.json", metrics));
	ck_assert_int_eq(sqlite3_prepare_v2(T.d.store.db,
	                                    "INSERT INTO jobs (id, name, user, state, compute, spec,"
	                                    " created_at, updated_at, config_id, config_version)"
	                                    " VALUES (?, ?, 'alice', 'completed', 'transformer',"
	                                    " '{\"train\":{\"lr\":0.002}}', 1, 1, 4, 2)",
	                                    -1, &st, NULL),
	                 SQLITE_OK);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	free(dir);
}

static char *
metrics_json(double mae, double acc, double val_loss)
{
	return loomi_strfmt("{\"train\": {\"mae\": 9}, \"validation\": {\"loss\": %g},"
	                    " \"test\": {\"mae\": %g, \"accuracy\": %g, \"n\": \"text\"},"
	                    " \"baselines\": {\"repeat_last\": {\"mae\": 3}}}",
	                    val_loss, mae, acc);
}

static void
register_ok(int64_t id)
{
	char *err = NULL;
	int rv = loomi_registry_register(&T.d, id, &err);
	ck_assert_msg(rv == 0, "task-%lld: %s", (long long)id, err ? err : "?");
	free(err);
}

static json_t *
model(const char *name)
{
	json_t *out = NULL;
	char *msg = NULL;
	int rv = loomi_registry_model(&T.d, name, &out, &msg);
	ck_assert_msg(rv == 0, "model %s: %s", name, msg ? msg : "?");
	return out;
}

static json_t *
version(const char *name, const char *v)
{
	json_t *out = NULL;
	char *msg = NULL;
	int rv = loomi_registry_version(&T.d, name, v, &out, &msg);
	ck_assert_msg(rv == 0, "model %s version %s: %s", name, v, msg ? msg : "?");
	return out;
}

static int64_t
tag_holder(const char *name, const char *tag)
{
	json_t *m = model(name);
	int64_t v = json_integer_value(json_object_get(json_object_get(m, "tags"), tag));
	json_decref(m);
	return v;
}

/* Does the state directory hold rel? */
static bool
exists(const char *rel)
{
	char *p = loomi_path_join(T.tmp, rel);
	bool yes = access(p, F_OK) == 0;
	free(p);
	return yes;
}

/* ------------------------------------------------------------------ tests */

START_TEST(versions_numbered_and_kept)
{
	json_t *m, *v, *list = NULL;
	char *msg = NULL, *text = NULL;

	for (int i = 1; i <= 3; i++) {
		char *mj = metrics_json(1.0 / i, 0.5, 0.1);
		add_task(10 + i, "temps", true, mj);
		free(mj);
		register_ok(10 + i);
	}
	add_task(20, "other", true, "{\"test\": {\"mae\": 1}}");
	register_ok(20);

	m = model("temps");
	ck_assert_int_eq(json_array_size(json_object_get(m, "versions")), 3);
	/* newest first */
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_array_get(json_object_get(m, "versions"), 0), "version")),
	                 3);
	ck_assert_str_eq(json_string_value(json_object_get(
				 json_array_get(json_object_get(m, "versions"), 2), "task_id")),
	                 "task-11");
	json_decref(m);

	ck_assert_int_eq(loomi_registry_list(&T.d, &loomi_caller_loomd, &list, &msg), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(list, "total")), 2);
	ck_assert_str_eq(json_string_value(json_object_get(
				 json_array_get(json_object_get(list, "models"), 1), "name")),
	                 "temps");
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_array_get(json_object_get(list, "models"), 1), "latest_version")),
	                 3);
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_array_get(json_object_get(list, "models"), 0), "latest_version")),
	                 1);
	json_decref(list);

	/* the version's own files outlive the task's directory */
	{
		char *task = loomi_strfmt("%s/jobs/task-12", T.tmp);
		tu_rmrf(task);
		free(task);
	}
	ck_assert(exists("models/temps/v2/best.safetensors"));
	ck_assert(exists("models/temps/v2/last.safetensors"));
	ck_assert(exists("models/temps/v2/metrics.json"));
	ck_assert(exists("models/temps/v2/spec.json"));
	ck_assert(!exists("models/.incoming/task-12"));
	{
		char *p = loomi_strfmt("%s/models/temps/v2/best.safetensors", T.tmp);
		ck_assert_int_eq(loomi_read_file(p, &text, NULL), 0);
		ck_assert_str_eq(text, "weights of task 12");
		free(text);
		free(p);
	}

	/* metrics flattened as the worker reports them; lineage and spec */
	v = version("temps", "2");
	ck_assert(fabs(json_number_value(json_object_get(json_object_get(v, "metrics"),
	                                                  "test_mae")) - 0.5) < 1e-12);
	ck_assert(json_object_get(json_object_get(v, "metrics"), "val_loss") != NULL);
	ck_assert(json_object_get(json_object_get(v, "metrics"), "test_n") == NULL);
	ck_assert(json_object_get(json_object_get(v, "metrics"), "train_mae") == NULL);
	ck_assert_str_eq(json_string_value(json_object_get(v, "user")), "alice");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(v, "lineage"),
	                                                   "config_id")),
	                 "config-4");
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(v, "lineage"),
	                                                    "config_version")),
	                 2);
	ck_assert(json_is_object(json_object_get(json_object_get(v, "lineage"), "spec")));
	ck_assert_int_eq(json_array_size(json_object_get(v, "files")), 4);
	json_decref(v);
	v = version("temps", "v3");
	ck_assert_int_eq(json_integer_value(json_object_get(v, "version")), 3);
	json_decref(v);

	/* a task registers once */
	ck_assert_int_eq(loomi_registry_register(&T.d, 13, &msg), LOOM_EEXIST);
	ASSERT_HAS(msg, "task-13 is registered already");
	free(msg);
	msg = NULL;
	ck_assert_int_eq(scalar("SELECT count(*) FROM model_versions"), 4);

	/* unknown model and version */
	ck_assert_int_eq(loomi_registry_model(&T.d, "nope", &m, &msg), LOOM_ENOENT);
	ASSERT_HAS(msg, "there is no model \"nope\"");
	free(msg);
	msg = NULL;
	ck_assert_int_eq(loomi_registry_version(&T.d, "temps", "9", &m, &msg), LOOM_ENOENT);
	ASSERT_HAS(msg, "has no version 9");
	free(msg);
	msg = NULL;
	ck_assert_int_eq(loomi_registry_version(&T.d, "temps", "Bad!", &m, &msg), LOOM_EINVAL);
	free(msg);
}
END_TEST

START_TEST(tags_move_to_the_best)
{
	/* mae lower is better, accuracy higher is better */
	static const double mae[] = {0.5, 0.3, 0.4, 0.3}, acc[] = {0.7, 0.6, 0.9, 0.8};

	for (int i = 0; i < 4; i++) {
		char *mj = metrics_json(mae[i], acc[i], 1.0 - 0.1 * i);
		add_task(i + 1, "m", true, mj);
		free(mj);
		register_ok(i + 1);
		switch (i) {
		case 0:
			ck_assert_int_eq(tag_holder("m", "best-test_mae"), 1);
			ck_assert_int_eq(tag_holder("m", "best-test_accuracy"), 1);
			break;
		case 1:
			ck_assert_int_eq(tag_holder("m", "best-test_mae"), 2);
			ck_assert_int_eq(tag_holder("m", "best-test_accuracy"), 1);
			break;
		case 2:
			ck_assert_int_eq(tag_holder("m", "best-test_mae"), 2);
			ck_assert_int_eq(tag_holder("m", "best-test_accuracy"), 3);
			break;
		case 3: /* a tie keeps the tag where it was */
			ck_assert_int_eq(tag_holder("m", "best-test_mae"), 2);
			ck_assert_int_eq(tag_holder("m", "best-test_accuracy"), 3);
			break;
		}
	}
	/* without a declaration the headline is the test figures (fallback):
	 * no tag for validation figures */
	ck_assert_int_eq(tag_holder("m", "best-val_loss"), 0);
	/* one holder per tag; the version shows its own tags */
	ck_assert_int_eq(scalar("SELECT count(*) FROM model_tags WHERE tag = 'best-test_mae'"), 1);
	{
		json_t *v = version("m", "3");
		json_t *tags = json_object_get(v, "tags");
		ck_assert_int_eq(json_array_size(tags), 1);
		ck_assert_str_eq(json_string_value(json_array_get(tags, 0)), "best-test_accuracy");
		json_decref(v);
	}
}
END_TEST

/* The names of a JSON array of strings, joined by ','. */
static char *
joined(const json_t *a)
{
	loomi_strv v = {0};
	size_t i;
	json_t *x;
	json_array_foreach(a, i, x)
		loomi_strv_pushf(&v, "%s", json_string_value(x));
	char *s = loomi_strv_join(&v, ",");
	loomi_strv_free(&v);
	return s;
}

/* A classifier's metrics.json as the compute plugin writes it: the head's
 * headline and its tables declared. */
static const char classifier_metrics[] =
	"{\"train\": {\"loss\": 0.5},"
	" \"validation\": {\"loss\": 0.7, \"accuracy\": 0.6, \"macro_f1\": 0.5,"
	" \"precision.a\": 0.1, \"precision.b.c\": 0.2},"
	" \"test\": {\"loss\": %g, \"accuracy\": %g, \"precision.a\": %g,"
	" \"precision.b.c\": 0.3, \"confusion.a.a\": 4, \"confusion.a.b.c\": 1,"
	" \"confusion.b.c.a\": 2, \"confusion.b.c.b.c\": 5, \"macro_f1\": %g},"
	" \"headline\": [\"loss\", \"accuracy\", \"macro_f1\"],"
	" \"details\": [{\"name\": \"confusion\", \"title\": \"Confusion matrix\","
	" \"row_header\": \"true\", \"column_header\": \"predicted\","
	" \"rows\": [\"a\", \"b.c\"], \"columns\": [\"a\", \"b.c\"],"
	" \"cells\": [[\"confusion.a.a\", \"confusion.a.b.c\"],"
	" [\"confusion.b.c.a\", \"confusion.b.c.b.c\"]]},"
	" {\"name\": \"broken\", \"rows\": [\"a\"], \"columns\": [\"x\"], \"cells\": []}]}";

START_TEST(tags_only_for_headline_metrics)
{
	/* loss lower, accuracy and macro-F1 higher is better; precision.a is
	 * a detail and gets no tag however good */
	static const double loss[] = {0.9, 0.8}, acc[] = {0.7, 0.6}, prec[] = {0.1, 0.9},
	                    f1[] = {0.3, 0.4};
	json_t *v, *m;
	char *s;

	for (int i = 0; i < 2; i++) {
		char *mj = loomi_strfmt(classifier_metrics, loss[i], acc[i], prec[i], f1[i]);
		add_task(i + 1, "m", true, mj);
		free(mj);
		register_ok(i + 1);
	}
	ck_assert_int_eq(scalar("SELECT count(*) FROM model_tags"), 3);
	ck_assert_int_eq(tag_holder("m", "best-test_loss"), 2);
	ck_assert_int_eq(tag_holder("m", "best-test_accuracy"), 1);
	ck_assert_int_eq(tag_holder("m", "best-test_macro_f1"), 2);
	ck_assert_int_eq(tag_holder("m", "best-test_precision.a"), 0);
	ck_assert_int_eq(tag_holder("m", "best-val_loss"), 0);

	/* the version answers its headline in the head's order and its
	 * tables with the test split's names; the stored key stays inside */
	v = version("m", "1");
	s = joined(json_object_get(v, "headline"));
	ck_assert_str_eq(s, "test_loss,test_accuracy,test_macro_f1");
	free(s);
	ck_assert_ptr_null(json_object_get(json_object_get(v, "metrics"), "@display"));
	ck_assert_int_eq(json_array_size(json_object_get(v, "details")), 1); /* broken: left out */
	json_t *t = json_array_get(json_object_get(v, "details"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(t, "name")), "confusion");
	s = joined(json_array_get(json_object_get(t, "cells"), 1));
	ck_assert_str_eq(s, "test_confusion.b.c.a,test_confusion.b.c.b.c");
	free(s);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(v, "metrics"),
	                                                    "test_confusion.b.c.b.c")),
	                 5);
	json_decref(v);
	/* and so does each version in the model's list */
	m = model("m");
	json_t *list = json_object_get(m, "versions");
	ck_assert_int_eq(json_array_size(list), 2);
	s = joined(json_object_get(json_array_get(list, 0), "headline"));
	ck_assert_str_eq(s, "test_loss,test_accuracy,test_macro_f1");
	free(s);
	json_decref(m);
}
END_TEST

START_TEST(old_tags_dropped_by_migration)
{
	/* a registry upgraded from before: every metric had its tag */
	char *err = NULL, *path;

	add_task(1, "m", true, "{\"test\": {\"loss\": 1, \"accuracy\": 0.5}}");
	register_ok(1);
	add_task(2, "f", true, "{\"validation\": {\"loss\": 1}}");
	register_ok(2);
	exec("INSERT INTO model_tags SELECT id, 'best-' || m, 1, m, 1, 0 FROM models,"
	     " (SELECT 'test_confusion.a.b' AS m UNION SELECT 'test_f1.a' UNION SELECT 'val_loss'"
	     "  UNION SELECT 'val_f1.a') WHERE name = 'm'");
	ck_assert_int_eq(scalar("SELECT count(*) FROM model_tags"), 7);
	/* back to the schema before migration 17: the later ones (owners of
	 * models, alert rules and configs; the labeling tables; the
	 * deployment rules; the datasets) are undone too, to run again */
	exec("DELETE FROM schema_migrations WHERE version >= 17");
	exec("ALTER TABLE models DROP COLUMN owner");
	exec("ALTER TABLE alert_rules DROP COLUMN owner");
	exec("ALTER TABLE configs DROP COLUMN owner");
	for (const char *const *t = (const char *const[]){"label_decisions", "label_items",
	                                                  "label_rounds", "label_projects",
	                                                  "model_deploy_checks",
	                                                  "model_deploy_decisions",
	                                                  "model_deploy_rules", "dataset_audit",
	                                                  "dataset_quotas", "dataset_chunks",
	                                                  "dataset_locks", "dataset_refs",
	                                                  "dataset_versions", "datasets", NULL};
	     *t; t++) {
		char *sql = loomi_strfmt("DROP TABLE %s", *t);
		exec(sql);
		free(sql);
	}
	loomi_store_close(&T.d.store);
	path = loomi_path_join(T.tmp, "loom.db");
	ck_assert_int_eq(loomi_store_open(&T.d.store, path, &err), 0);
	free(path);
	/* m keeps its test headline tags; f (validation figures only) its own */
	ck_assert_int_eq(scalar("SELECT count(*) FROM model_tags"), 3);
	ck_assert_int_eq(tag_holder("m", "best-test_loss"), 1);
	ck_assert_int_eq(tag_holder("m", "best-test_accuracy"), 1);
	ck_assert_int_eq(tag_holder("f", "best-val_loss"), 1);
}
END_TEST

START_TEST(old_versions_fall_back)
{
	/* stored before heads declared anything: the classification head's
	 * names still give a headline (no '.', loss first) and tables */
	json_t *v, *t;
	char *s;

	add_task(1, "m", true,
	         "{\"test\": {\"accuracy\": 0.6, \"precision.sun\": 0.7, \"recall.sun\": 0.9,"
	         " \"f1.sun\": 0.8, \"precision.fog\": 0.8, \"recall.fog\": 0.2, \"f1.fog\": 0.3,"
	         " \"macro_f1\": 0.5, \"confusion.fog.fog\": 3, \"confusion.fog.sun\": 9,"
	         " \"confusion.sun.fog\": 1, \"confusion.sun.sun\": 20, \"loss\": 0.9},"
	         " \"validation\": {\"loss\": 1.0}}");
	register_ok(1);
	ck_assert_int_eq(scalar("SELECT count(*) FROM model_tags"), 3);
	ck_assert_int_eq(tag_holder("m", "best-test_macro_f1"), 1);
	/* as an old row reads: no stored display */
	ck_assert_int_eq(scalar("SELECT count(*) FROM model_versions"
	                        " WHERE json_extract(metrics, '$.\"@display\"') IS NULL"),
	                 1);
	v = version("m", "1");
	s = joined(json_object_get(v, "headline"));
	ck_assert_str_eq(s, "test_loss,test_accuracy,test_macro_f1");
	free(s);
	ck_assert_int_eq(json_array_size(json_object_get(v, "details")), 2);
	t = json_array_get(json_object_get(v, "details"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(t, "name")), "per_class");
	s = joined(json_object_get(t, "rows"));
	ck_assert_str_eq(s, "fog,sun");
	free(s);
	s = joined(json_array_get(json_object_get(t, "cells"), 0));
	ck_assert_str_eq(s, "test_precision.fog,test_recall.fog,test_f1.fog");
	free(s);
	t = json_array_get(json_object_get(v, "details"), 1);
	ck_assert_str_eq(json_string_value(json_object_get(t, "name")), "confusion");
	s = joined(json_array_get(json_object_get(t, "cells"), 0));
	ck_assert_str_eq(s, "test_confusion.fog.fog,test_confusion.fog.sun");
	free(s);
	json_decref(v);
}
END_TEST

static int
promote(const char *alias, int64_t v, char **msg)
{
	json_t *out = NULL;
	int rv = loomi_registry_promote(&T.d, "m", alias, v, "bob", &out, msg);
	json_decref(out);
	return rv;
}

static int64_t
rollback(const char *alias, char **msg)
{
	json_t *out = NULL;
	int rv = loomi_registry_rollback(&T.d, "m", alias, "bob", &out, msg);
	int64_t v = rv == 0 ? json_integer_value(json_object_get(out, "version")) : -rv;
	json_decref(out);
	return v;
}

static int64_t
alias_now(const char *alias)
{
	json_t *v = version("m", alias);
	int64_t n = json_integer_value(json_object_get(v, "version"));
	json_decref(v);
	return n;
}

START_TEST(promote_and_rollback)
{
	char *msg = NULL;
	json_t *out = NULL;

	for (int i = 1; i <= 4; i++) {
		add_task(i, "m", true, "{}");
		register_ok(i);
	}
	ck_assert_int_eq(promote("production", 1, &msg), 0);
	ck_assert_int_eq(promote("production", 3, &msg), 0);
	ck_assert_int_eq(promote("production", 2, &msg), 0);
	ck_assert_int_eq(promote("staging", 4, &msg), 0);
	ck_assert_int_eq(alias_now("production"), 2);
	ck_assert_int_eq(alias_now("staging"), 4);

	/* each rollback goes one promotion further back */
	ck_assert_int_eq(rollback("production", &msg), 3);
	ck_assert_int_eq(rollback("production", &msg), 1);
	ck_assert_int_eq(alias_now("production"), 1);
	ck_assert_int_eq(rollback("production", &msg), -LOOM_EEXIST);
	ASSERT_HAS(msg, "alias \"production\" points at version 1 and has no earlier version");
	free(msg);
	msg = NULL;
	ck_assert_int_eq(alias_now("production"), 1);

	/* a promotion after rollbacks is undone first, then the history goes on */
	ck_assert_int_eq(promote("production", 4, &msg), 0);
	ck_assert_int_eq(rollback("production", &msg), 1);
	ck_assert_int_eq(rollback("production", &msg), -LOOM_EEXIST);
	free(msg);
	msg = NULL;
	ck_assert_int_eq(alias_now("staging"), 4);
	ck_assert_int_eq(scalar("SELECT count(*) FROM model_alias_history WHERE alias ="
	                        " 'production' AND action = 'rollback' AND user = 'bob'"),
	                 3);

	/* the model shows its aliases, the version its own */
	{
		json_t *m = model("m"), *v = version("m", "production");
		ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(m, "aliases"),
		                                                    "staging")),
		                 4);
		ck_assert_str_eq(json_string_value(json_array_get(json_object_get(v, "aliases"), 0)),
		                 "production");
		json_decref(m);
		json_decref(v);
	}

	/* refusals */
	ck_assert_int_eq(promote("production", 9, &msg), LOOM_ENOENT);
	ASSERT_HAS(msg, "has no version 9");
	free(msg);
	msg = NULL;
	ck_assert_int_eq(promote("Prod!", 1, &msg), LOOM_EINVAL);
	ASSERT_HAS(msg, "\"Prod!\" is not an alias name");
	free(msg);
	msg = NULL;
	ck_assert_int_eq(promote("production", 0, &msg), LOOM_EINVAL);
	free(msg);
	msg = NULL;
	ck_assert_int_eq(rollback("canary", &msg), -LOOM_ENOENT);
	ASSERT_HAS(msg, "has no alias \"canary\"");
	free(msg);
	msg = NULL;
	ck_assert_int_eq(loomi_registry_promote(&T.d, "nope", "production", 1, "bob", &out, &msg),
	                 LOOM_ENOENT);
	free(msg);
	msg = NULL;
	ck_assert_int_eq(loomi_registry_version(&T.d, "m", "canary", &out, &msg), LOOM_ENOENT);
	free(msg);
	ck_assert_int_eq(alias_now("production"), 1);
}
END_TEST

START_TEST(unsafe_names)
{
	json_t *m;

	add_task(1, "../etc/passwd", true, "{}");
	add_task(2, ".._etc_passwd", true, "{}");
	add_task(3, ".hidden", true, "{}");
	add_task(4, "température du lac", true, "{}");
	for (int i = 1; i <= 4; i++)
		register_ok(i);
	/* the name is kept as given; the directory is a safe form of it, unique */
	m = model("../etc/passwd");
	ck_assert_str_eq(json_string_value(json_object_get(m, "dir")), "model.._etc_passwd");
	json_decref(m);
	m = model(".._etc_passwd");
	ck_assert_str_eq(json_string_value(json_object_get(m, "dir")), "model.._etc_passwd-2");
	json_decref(m);
	m = model(".hidden");
	ck_assert_str_eq(json_string_value(json_object_get(m, "dir")), "model.hidden");
	json_decref(m);
	m = model("température du lac");
	ck_assert_str_eq(json_string_value(json_object_get(m, "dir")), "temp__rature_du_lac");
	json_decref(m);
	ck_assert(exists("models/model.._etc_passwd/v1/best.safetensors"));
	ck_assert(!exists("etc/passwd"));
}
END_TEST

START_TEST(missing_and_damaged_files)
{
	char *msg = NULL;

	/* no model: nothing registered */
	add_task(1, "exec", false, NULL);
	ck_assert_int_eq(loomi_registry_register(&T.d, 1, &msg), LOOM_ENOENT);
	ASSERT_HAS(msg, "task-1 produced no model");
	free(msg);
	msg = NULL;
	/* an unknown task */
	ck_assert_int_eq(loomi_registry_register(&T.d, 99, &msg), LOOM_ENOENT);
	free(msg);
	msg = NULL;
	/* no metrics.json: registered without metrics */
	add_task(2, "m", true, NULL);
	register_ok(2);
	/* a damaged metrics.json: refused, nothing left behind */
	add_task(3, "m", true, "{\"test\": ");
	ck_assert_int_eq(loomi_registry_register(&T.d, 3, &msg), LOOM_EIO);
	ASSERT_HAS(msg, "metrics.json is not a JSON object");
	free(msg);
	msg = NULL;
	ck_assert(!exists("models/m/v2"));
	ck_assert_int_eq(scalar("SELECT count(*) FROM model_versions"), 1);
	/* a stale v2 directory (a registration that died before committing)
	 * is moved aside, not mixed in */
	{
		char *p = loomi_strfmt("%s/models/m/v2", T.tmp);
		ck_assert_int_eq(loomi_mkdir_p(p, 0755), 0);
		free(tu_write(p, "junk", "x"));
		free(p);
	}
	add_task(4, "m", true, "{\"test\": {\"mae\": 1}}");
	tu_log_capture();
	register_ok(4);
	ck_assert(tu_log_has("interrupted registration"));
	tu_log_stop();
	ck_assert(exists("models/m/v2/best.safetensors"));
	ck_assert(!exists("models/m/v2/junk"));
	/* a version without metrics.json lists what it has */
	{
		json_t *v = version("m", "1");
		ck_assert_int_eq(json_object_size(json_object_get(v, "metrics")), 0);
		ck_assert_int_eq(json_array_size(json_object_get(v, "files")), 3);
		json_decref(v);
	}
}
END_TEST

START_TEST(run_lineage)
{
	json_t *v, *l;

	/* the runs table comes with migration 7 (tracking); make it here when
	 * this build lacks it */
	exec("CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, job_id INTEGER,"
	     " attempt INTEGER, name TEXT, user TEXT, state TEXT, params TEXT, lineage TEXT,"
	     " metrics TEXT, started_at INTEGER, ended_at INTEGER)");
	add_task(5, "m", true, "{}");
	exec("INSERT INTO runs (id, job_id, attempt, name, user, state, params, lineage, metrics,"
	     " started_at, ended_at) VALUES (40, 5, 1, 'm', 'alice', 'failed', '{}',"
	     " '{\"data\":{\"sha256\":\"old\"}}', '{}', 1, 2), (41, 5, 2, 'm', 'alice',"
	     " 'completed', '{}', '{\"data\":{\"sha256\":\"abc\"}}', '{}', 3, 4)");
	register_ok(5);
	v = version("m", "1");
	ck_assert_str_eq(json_string_value(json_object_get(v, "run_id")), "run-41");
	l = json_object_get(json_object_get(json_object_get(v, "lineage"), "run"), "data");
	ck_assert_str_eq(json_string_value(json_object_get(l, "sha256")), "abc");
	json_decref(v);
}
END_TEST

START_TEST(registration_thread)
{
	char *err = NULL;
	json_t *list = NULL;

	ck_assert_int_eq(loomi_registry_start(&T.d, &err), 0);
	for (int i = 1; i <= 5; i++) {
		add_task(i, "m", i != 3, "{\"test\": {\"mae\": 2}}");
		loomi_registry_submit(&T.d, i);
	}
	/* the read routes wait for what was submitted */
	ck_assert_int_eq(loomi_registry_list(&T.d, &loomi_caller_loomd, &list, &err), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_array_get(json_object_get(list, "models"), 0), "versions")),
	                 4);
	json_decref(list);
	/* stop finishes what was queued */
	add_task(6, "m", true, "{}");
	loomi_registry_submit(&T.d, 6);
	loomi_registry_stop(&T.d);
	ck_assert_int_eq(scalar("SELECT count(*) FROM model_versions"), 5);
	ck_assert_int_eq(scalar("SELECT max(version) FROM model_versions"), 5);
}
END_TEST

/* Events heard on the bus. */
static struct {
	pthread_mutex_t mtx;
	loomi_strv seen; /* "topic body", probes aside */
	int probes;      /* "model.probe" events heard */
} E = {.mtx = PTHREAD_MUTEX_INITIALIZER};

static void
on_event(void *arg, const char *topic, const char *body)
{
	(void)arg;
	pthread_mutex_lock(&E.mtx);
	if (strcmp(topic, "model.probe") == 0)
		E.probes++;
	else
		loomi_strv_pushf(&E.seen, "%s %s", topic, body);
	pthread_mutex_unlock(&E.mtx);
}

static int
probes_heard(void)
{
	pthread_mutex_lock(&E.mtx);
	int n = E.probes;
	pthread_mutex_unlock(&E.mtx);
	return n;
}

START_TEST(bus_events)
{
	loomi_bus_config cfg = {0};
	char *err = NULL, *all = NULL;
	json_t *out = NULL;
	size_t n = 0;

	ck_assert_int_eq(loomi_bus_open(&cfg, &T.d.bus, &err), 0);
	ck_assert_int_eq(loomi_bus_subscribe(T.d.bus, "model.", on_event, NULL, NULL), 0);
	/* pub/sub drops what is published before the subscriber's pipe is
	 * attached on the publisher's side: publish probes until one is heard */
	for (int i = 0; probes_heard() == 0; i++) {
		ck_assert_msg(i < 500, "the subscriber heard no probe within 10 s");
		ck_assert_int_eq(loomi_bus_publish(T.d.bus, "model.probe", "test", "{}"), 0);
		usleep(20000);
	}
	add_task(1, "m", true, "{\"test\": {\"mae\": 0.25}}");
	add_task(2, "m", true, "{\"test\": {\"mae\": 0.5}}");
	register_ok(1);
	register_ok(2);
	ck_assert_int_eq(loomi_registry_promote(&T.d, "m", "production", 1, "bob", &out, &err), 0);
	json_decref(out);
	ck_assert_int_eq(loomi_registry_promote(&T.d, "m", "production", 2, "bob", &out, &err), 0);
	json_decref(out);
	ck_assert_int_eq(loomi_registry_rollback(&T.d, "m", "production", "bob", &out, &err), 0);
	json_decref(out);
	for (int i = 0; i < 500 && n < 5; i++) {
		usleep(10000);
		pthread_mutex_lock(&E.mtx);
		n = E.seen.n;
		pthread_mutex_unlock(&E.mtx);
	}
	loomi_bus_close(T.d.bus);
	T.d.bus = NULL;
	ck_assert_int_eq(n, 5);
	all = loomi_strv_join(&E.seen, "\n");
	ASSERT_HAS(all, "model.version {");
	ASSERT_HAS(all, "\"task_id\":\"task-1\"");
	ASSERT_HAS(all, "\"tags\":[\"best-test_mae\"]");
	ASSERT_HAS(all, "\"tags\":[]");
	ASSERT_HAS(all, "\"action\":\"rollback\"");
	ASSERT_HAS(all, "model.alias {");
	free(all);
	loomi_strv_free(&E.seen);
	memset(&E.seen, 0, sizeof E.seen);
}
END_TEST

/* The routes answer with the API's statuses, through the request pipeline
 * (loomi_api_handle) as a client's request would go. */
static int
route(const char *method, const char *path, const char *body, json_t **out)
{
	loomi_http_req req = {.method = method, .path = path, .query = "", .body = body,
	                      .caller = &loomi_caller_loomd,
	                      .body_len = body ? strlen(body) : 0,
	                      .content_type = body ? "application/json" : NULL};
	loomi_http_res res = {0};
	char *text;
	loomi_api_handle(&T.d, &req, &res);
	/* what api.c sends: it must encode */
	text = json_dumps(res.body, JSON_COMPACT | JSON_PRESERVE_ORDER);
	ck_assert_msg(text != NULL, "%s %s: the answer does not encode", method, path);
	free(text);
	*out = res.body;
	return res.status;
}

START_TEST(routes)
{
	json_t *out;

	add_task(1, "m", true, "{}");
	add_task(2, "m", true, "{}");
	register_ok(1);
	register_ok(2);
	ck_assert_int_eq(route("GET", "/api/v1/models", NULL, &out), 200);
	json_decref(out);
	ck_assert_int_eq(route("GET", "/api/v1/models/m", NULL, &out), 200);
	json_decref(out);
	ck_assert_int_eq(route("GET", "/api/v1/models/m/versions/1", NULL, &out), 200);
	json_decref(out);
	ck_assert_int_eq(route("GET", "/api/v1/models/zz", NULL, &out), 404);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(out, "error"), "code")),
	                 "not_found");
	json_decref(out);
	ck_assert_int_eq(route("POST", "/api/v1/models/m/aliases/production", "{\"version\": 2}",
	                       &out),
	                 200);
	ck_assert_int_eq(json_integer_value(json_object_get(out, "version")), 2);
	ck_assert(json_is_null(json_object_get(out, "previous")));
	json_decref(out);
	ck_assert_int_eq(route("POST", "/api/v1/models/m/aliases/production", "{\"version\": \"2\"}",
	                       &out),
	                 400);
	json_decref(out);
	ck_assert_int_eq(route("POST", "/api/v1/models/m/aliases/production", "{\"vers\": 2}", &out),
	                 400);
	json_decref(out);
	ck_assert_int_eq(route("POST", "/api/v1/models/m/aliases/production", "[", &out), 400);
	json_decref(out);
	ck_assert_int_eq(route("POST", "/api/v1/models/m/aliases/PROD", "{\"version\": 1}", &out),
	                 400);
	json_decref(out);
	ck_assert_int_eq(route("GET", "/api/v1/models/m/aliases/production", NULL, &out), 200);
	ck_assert_int_eq(json_integer_value(json_object_get(out, "version")), 2);
	json_decref(out);
	ck_assert_int_eq(route("GET", "/api/v1/models/m/aliases/staging", NULL, &out), 404);
	json_decref(out);
	ck_assert_int_eq(route("POST", "/api/v1/models/m/aliases/production/rollback", NULL, &out), 409);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(out, "error"), "code")),
	                 "conflict");
	json_decref(out);
	ck_assert_int_eq(route("GET", "/api/v1/models/m/versions/7", NULL, &out), 404);
	json_decref(out);
}
END_TEST


/* ------------------------------------------------------------------ the deployment rule */

/* The decision about version 3 under rule, the alias at current (0: not
 * set) with current's metrics, the new version trained from init (0:
 * from scratch). */
static loomi_deploy_action
decide(const char *metric, double better_by, bool approval, const char *metrics,
       int64_t init, int64_t current, const char *current_metrics, char **reason)
{
	loomi_deploy_rule r = {.better_by = better_by, .approval = approval};
	json_t *m = json_loads(metrics, 0, NULL), *cm = current_metrics
	                                                  ? json_loads(current_metrics, 0, NULL)
	                                                  : NULL;
	loomi_deploy_facts f = {.version = 3, .metrics = m, .init_version = init,
	                        .current = current, .current_metrics = cm};
	loomi_deploy_verdict v;

	snprintf(r.metric, sizeof r.metric, "%s", metric);
	snprintf(r.alias, sizeof r.alias, "production");
	loomi_deploy_decide(&r, &f, &v);
	ck_assert_ptr_nonnull(v.reason);
	free(*reason);
	*reason = v.reason;
	json_decref(m);
	json_decref(cm);
	return v.action;
}

START_TEST(deploy_decisions)
{
	char *why = NULL;

	/* no alias yet: the first version takes it (or waits for approval) */
	ck_assert_int_eq(decide("test_accuracy", 0, false, "{\"test_accuracy\": 0.5}", 0, 0, NULL,
	                        &why),
	                 LOOMI_DEPLOY_PROMOTED);
	ASSERT_HAS(why, "first version for the alias \"production\"");
	ck_assert_int_eq(decide("test_accuracy", 0, true, "{\"test_accuracy\": 0.5}", 0, 0, NULL,
	                        &why),
	                 LOOMI_DEPLOY_PENDING);
	/* higher is better for accuracy */
	ck_assert_int_eq(decide("test_accuracy", 0, false, "{\"test_accuracy\": 0.812}", 0, 2,
	                        "{\"test_accuracy\": 0.79}", &why),
	                 LOOMI_DEPLOY_PROMOTED);
	ASSERT_HAS(why, "test_accuracy 0.812 against 0.79 of version 2: better by 0.022 > 0");
	ck_assert_int_eq(decide("test_accuracy", 0, false, "{\"test_accuracy\": 0.78}", 0, 2,
	                        "{\"test_accuracy\": 0.79}", &why),
	                 LOOMI_DEPLOY_KEPT);
	ASSERT_HAS(why, "worse by 0.01");
	/* better, but not by more than better_by */
	ck_assert_int_eq(decide("test_accuracy", 0.05, false, "{\"test_accuracy\": 0.812}", 0, 2,
	                        "{\"test_accuracy\": 0.79}", &why),
	                 LOOMI_DEPLOY_KEPT);
	ASSERT_HAS(why, "not more than 0.05");
	/* equal is not better */
	ck_assert_int_eq(decide("test_accuracy", 0, false, "{\"test_accuracy\": 0.79}", 0, 2,
	                        "{\"test_accuracy\": 0.79}", &why),
	                 LOOMI_DEPLOY_KEPT);
	/* lower is better for an error */
	ck_assert_int_eq(decide("val_mae", 0, false, "{\"val_mae\": 0.4}", 0, 2, "{\"val_mae\": 0.5}",
	                        &why),
	                 LOOMI_DEPLOY_PROMOTED);
	ASSERT_HAS(why, "(lower is better)");
	ck_assert_int_eq(decide("val_mae", 0, false, "{\"val_mae\": 0.6}", 0, 2, "{\"val_mae\": 0.5}",
	                        &why),
	                 LOOMI_DEPLOY_KEPT);
	ck_assert_int_eq(decide("val_mae", 0.2, false, "{\"val_mae\": 0.4}", 0, 2,
	                        "{\"val_mae\": 0.5}", &why),
	                 LOOMI_DEPLOY_KEPT);
	/* approval: better waits for a person */
	ck_assert_int_eq(decide("val_mae", 0, true, "{\"val_mae\": 0.4}", 0, 2, "{\"val_mae\": 0.5}",
	                        &why),
	                 LOOMI_DEPLOY_PENDING);
	ASSERT_HAS(why, "waiting for approval");
	/* trained from the alias's version: the run's own shared holdout,
	 * not the alias's registered figure (0.95, on less data) */
	ck_assert_int_eq(decide("holdout_accuracy", 0, false,
	                        "{\"holdout_accuracy\": 0.81, \"holdout_init_accuracy\": 0.79}", 2,
	                        2, "{\"holdout_accuracy\": 0.95}", &why),
	                 LOOMI_DEPLOY_PROMOTED);
	ASSERT_HAS(why, "holdout_accuracy 0.81 against 0.79 of version 2, both on the shared "
	                "holdout");
	ck_assert_int_eq(decide("holdout_loss", 0, false,
	                        "{\"holdout_loss\": 0.9, \"holdout_init_loss\": 0.7}", 2, 2,
	                        "{\"holdout_loss\": 2}", &why),
	                 LOOMI_DEPLOY_KEPT);
	/* trained from another version than the alias's: different data */
	ck_assert_int_eq(decide("holdout_accuracy", 0, false,
	                        "{\"holdout_accuracy\": 0.81, \"holdout_init_accuracy\": 0.79}", 1,
	                        2, "{\"holdout_accuracy\": 0.5}", &why),
	                 LOOMI_DEPLOY_SKIPPED);
	ASSERT_HAS(why, "different data");
	ASSERT_HAS(why, "trained from version 1, not from version 2");
	/* no figure to judge by */
	ck_assert_int_eq(decide("test_f1", 0, false, "{\"test_accuracy\": 0.8}", 0, 2,
	                        "{\"test_f1\": 0.5}", &why),
	                 LOOMI_DEPLOY_SKIPPED);
	ASSERT_HAS(why, "version 3 has no test_f1");
	ck_assert_int_eq(decide("test_f1", 0, false, "{\"test_f1\": 0.8}", 0, 2,
	                        "{\"test_accuracy\": 0.5}", &why),
	                 LOOMI_DEPLOY_SKIPPED);
	free(why);
}
END_TEST

START_TEST(deploy_rule_parse)
{
	loomi_deploy_rule r;
	char *msg = NULL;
	json_t *b;

	b = json_loads("{}", 0, NULL);
	ck_assert_int_eq(loomi_deploy_rule_parse(b, &r, &msg), 0);
	ck_assert_str_eq(r.metric, "holdout_loss");
	ck_assert_str_eq(r.alias, "production");
	ck_assert(r.better_by == 0 && !r.approval);
	json_decref(b);
	b = json_loads("{\"metrc\": \"test_mae\"}", 0, NULL);
	ck_assert_int_eq(loomi_deploy_rule_parse(b, &r, &msg), LOOM_EINVAL);
	ASSERT_HAS(msg, "deploy.metrc: unknown field (did you mean metric?)");
	json_decref(b);
	b = json_loads("{\"better_by\": -0.1}", 0, NULL);
	ck_assert_int_eq(loomi_deploy_rule_parse(b, &r, &msg), LOOM_EINVAL);
	ASSERT_HAS(msg, "deploy.better_by");
	json_decref(b);
	b = json_loads("{\"alias\": \"Prod\"}", 0, NULL);
	ck_assert_int_eq(loomi_deploy_rule_parse(b, &r, &msg), LOOM_EINVAL);
	ASSERT_HAS(msg, "deploy.alias");
	json_decref(b);
	b = json_loads("{\"approval\": 1}", 0, NULL);
	ck_assert_int_eq(loomi_deploy_rule_parse(b, &r, &msg), LOOM_EINVAL);
	ASSERT_HAS(msg, "deploy.approval");
	json_decref(b);
	b = json_loads("{\"metric\": \"a b\"}", 0, NULL);
	ck_assert_int_eq(loomi_deploy_rule_parse(b, &r, &msg), LOOM_EINVAL);
	json_decref(b);
	free(msg);
}
END_TEST

static void
add_classifier(int64_t id, double acc)
{
	char *m = loomi_strfmt("{\"test\": {\"loss\": 1, \"accuracy\": %g}}", acc);
	add_task(id, "m", true, m);
	free(m);
}

static json_t *
decisions(void)
{
	json_t *out;
	ck_assert_int_eq(route("GET", "/api/v1/models/m/deploy/decisions", NULL, &out), 200);
	return out;
}

/* The newest decision's field k. */
static const char *
newest(json_t *list, const char *k)
{
	return json_string_value(json_object_get(json_array_get(json_object_get(list, "decisions"), 0),
	                                         k));
}

START_TEST(deploy_rule_on_new_versions)
{
	json_t *out, *d;

	add_classifier(1, 0.8);
	register_ok(1);
	/* no rule, no decision */
	ck_assert_int_eq(route("GET", "/api/v1/models/m/deploy", NULL, &out), 404);
	ASSERT_HAS(json_string_value(json_object_get(json_object_get(out, "error"), "message")),
	           "has no deployment rule");
	json_decref(out);
	ck_assert_int_eq(route("PUT", "/api/v1/models/m/deploy", "{\"metric\": \"test_accuracy\","
	                                                          " \"alias\": \"prod\"}",
	                       &out),
	                 200);
	ck_assert_str_eq(json_string_value(json_object_get(out, "metric")), "test_accuracy");
	ck_assert(json_is_true(json_object_get(out, "higher_is_better")));
	json_decref(out);
	ck_assert_int_eq(route("PUT", "/api/v1/models/m/deploy", "{\"aliass\": \"prod\"}", &out),
	                 400);
	ASSERT_HAS(json_string_value(json_object_get(json_object_get(out, "error"), "message")),
	           "did you mean alias?");
	json_decref(out);
	ck_assert_int_eq(route("PUT", "/api/v1/models/zz/deploy", "{}", &out), 404);
	json_decref(out);
	/* the model shows its rule */
	out = model("m");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(out, "deploy"), "alias")),
	                 "prod");
	json_decref(out);

	add_classifier(2, 0.7);
	register_ok(2); /* the first for the alias */
	ck_assert_int_eq(alias_now("prod"), 2);
	d = decisions();
	ck_assert_str_eq(newest(d, "action"), "promoted");
	ASSERT_HAS(newest(d, "reason"), "first version for the alias");
	json_decref(d);
	add_classifier(3, 0.6);
	register_ok(3);
	ck_assert_int_eq(alias_now("prod"), 2);
	d = decisions();
	ck_assert_str_eq(newest(d, "action"), "kept");
	ASSERT_HAS(newest(d, "reason"), "test_accuracy 0.6 against 0.7 of version 2: worse by 0.1");
	json_decref(d);
	add_classifier(4, 0.9);
	register_ok(4);
	ck_assert_int_eq(alias_now("prod"), 4);
	/* through the promote code: in the alias's history, by the rule */
	ck_assert_int_eq(scalar("SELECT count(*) FROM model_alias_history WHERE alias = 'prod'"
	                        " AND user = 'deploy-rule' AND to_version = 4 AND from_version = 2"),
	                 1);
	/* with approval, a better version waits */
	ck_assert_int_eq(route("PUT", "/api/v1/models/m/deploy",
	                       "{\"metric\": \"test_accuracy\", \"alias\": \"prod\", \"approval\":"
	                       " true, \"better_by\": 0.01}",
	                       &out),
	                 200);
	json_decref(out);
	add_classifier(5, 0.95);
	register_ok(5);
	ck_assert_int_eq(alias_now("prod"), 4);
	d = decisions();
	ck_assert_str_eq(newest(d, "action"), "pending_approval");
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_array_get(json_object_get(d, "decisions"), 0), "against")),
	                 4);
	json_decref(d);
	out = version("m", "5");
	ck_assert(json_is_true(json_object_get(out, "pending_approval")));
	json_decref(out);
	ck_assert_int_eq(route("POST", "/api/v1/models/m/versions/3/approve", NULL, &out), 409);
	ASSERT_HAS(json_string_value(json_object_get(json_object_get(out, "error"), "message")),
	           "not pending approval");
	json_decref(out);
	ck_assert_int_eq(route("POST", "/api/v1/models/m/versions/5/approve", NULL, &out), 200);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(out, "move"), "version")),
	                 5);
	json_decref(out);
	ck_assert_int_eq(alias_now("prod"), 5);
	d = decisions();
	ck_assert_str_eq(newest(d, "action"), "promoted");
	ck_assert_str_eq(newest(d, "user"), "loomd");
	ASSERT_HAS(newest(d, "reason"), "approved by loomd");
	ck_assert_str_eq(json_string_value(json_object_get(
				 json_array_get(json_object_get(d, "decisions"), 1), "approved_by")),
	                 "loomd");
	ck_assert_int_eq(json_integer_value(json_object_get(d, "total")), 5);
	json_decref(d);
	out = version("m", "5");
	ck_assert(json_is_false(json_object_get(out, "pending_approval")));
	json_decref(out);
	ck_assert_int_eq(route("POST", "/api/v1/models/m/versions/5/approve", NULL, &out), 409);
	json_decref(out);
	/* a check needs an earlier version and a metric a batch prediction reports */
	ck_assert_int_eq(route("POST", "/api/v1/models/m/deploy/check", "{\"dta\": \"/x.csv\"}",
	                       &out),
	                 400);
	ASSERT_HAS(json_string_value(json_object_get(json_object_get(out, "error"), "message")),
	           "did you mean data?");
	json_decref(out);
	ck_assert_int_eq(route("DELETE", "/api/v1/models/m/deploy", NULL, &out), 200);
	json_decref(out);
	ck_assert_int_eq(route("DELETE", "/api/v1/models/m/deploy", NULL, &out), 404);
	json_decref(out);
	/* no rule: a new version is left alone */
	add_classifier(6, 0.99);
	register_ok(6);
	ck_assert_int_eq(alias_now("prod"), 5);
	d = decisions();
	ck_assert_int_eq(json_integer_value(json_object_get(d, "total")), 5);
	json_decref(d);
}
END_TEST

/* An incremental run's version: continual.safetensors kept, the shared
 * holdout and continual summary flattened, lineage init from the spec;
 * the rule compares holdout_accuracy with holdout_init_accuracy when the
 * run started from the alias's version, and skips it otherwise. */
static void
add_incremental(int64_t id, int64_t init, double acc, double init_acc)
{
	char *m = loomi_strfmt("{\"test\": {\"accuracy\": 0.5},"
	                       " \"continual\": {\"increment\": 2, \"average\": 0.7,"
	                       " \"forgetting\": 0.02, \"bwt\": -0.02, \"fwt\": 0.1,"
	                       " \"R\": [[0.8], [0.78, 0.74]]},"
	                       " \"holdout\": {\"windows\": 210, \"increments\": 2,"
	                       " \"model\": {\"loss\": 0.5, \"accuracy\": %g},"
	                       " \"init\": {\"loss\": 0.6, \"accuracy\": %g},"
	                       " \"init_model\": \"m\", \"init_version\": %lld}}",
	                       acc, init_acc, (long long)init);
	char *dir = loomi_strfmt("%s/jobs/task-%lld", T.tmp, (long long)id);
	char *sql = loomi_strfmt("UPDATE jobs SET spec = '{\"train\": {\"init\": {\"model\": \"m\","
	                         " \"version\": %lld, \"model_dir\": \"/x\"}}}' WHERE id = %lld",
	                         (long long)init, (long long)id);
	add_task(id, "m", true, m);
	free(tu_write(dir, "continual.safetensors", "bank"));
	exec(sql);
	free(sql);
	free(dir);
	free(m);
}

START_TEST(incremental_versions)
{
	json_t *out, *v, *d;
	bool has_continual = false;
	size_t i;

	add_classifier(1, 0.9);
	register_ok(1);
	ck_assert_int_eq(route("PUT", "/api/v1/models/m/deploy", "{\"metric\": \"holdout_accuracy\"}",
	                       &out),
	                 200);
	json_decref(out);
	/* version 1 has no holdout_accuracy: nothing to judge by; promote by hand */
	ck_assert_int_eq(route("POST", "/api/v1/models/m/aliases/production", "{\"version\": 1}",
	                       &out),
	                 200);
	json_decref(out);
	add_incremental(2, 1, 0.81, 0.79);
	register_ok(2);
	v = version("m", "2");
	json_array_foreach(json_object_get(v, "files"), i, out)
		has_continual |= strcmp(json_string_value(json_object_get(out, "name")),
		                        "continual.safetensors") == 0;
	ck_assert(has_continual);
	ck_assert(exists("models/m/v2/continual.safetensors"));
	ck_assert(!exists("models/m/v1/continual.safetensors"));
	out = json_object_get(v, "metrics");
	ck_assert_double_eq_tol(json_real_value(json_object_get(out, "holdout_accuracy")), 0.81, 1e-9);
	ck_assert_double_eq_tol(json_real_value(json_object_get(out, "holdout_init_accuracy")), 0.79,
	                        1e-9);
	ck_assert_double_eq_tol(json_real_value(json_object_get(out, "holdout_init_loss")), 0.6, 1e-9);
	ck_assert_double_eq_tol(json_real_value(json_object_get(out, "cl_average")), 0.7, 1e-9);
	ck_assert_double_eq_tol(json_real_value(json_object_get(out, "cl_bwt")), -0.02, 1e-9);
	ck_assert_ptr_null(json_object_get(out, "cl_increment"));
	ck_assert_ptr_null(json_object_get(out, "holdout_windows"));
	out = json_object_get(json_object_get(v, "lineage"), "init");
	ck_assert_str_eq(json_string_value(json_object_get(out, "model")), "m");
	ck_assert_int_eq(json_integer_value(json_object_get(out, "version")), 1);
	json_decref(v);
	v = version("m", "1");
	ck_assert(json_is_null(json_object_get(json_object_get(v, "lineage"), "init")));
	json_decref(v);
	/* trained from the alias's version 1 and better on the shared holdout */
	ck_assert_int_eq(alias_now("production"), 2);
	d = decisions();
	ASSERT_HAS(newest(d, "reason"), "holdout_accuracy 0.81 against 0.79 of version 1, both on "
	                                "the shared holdout");
	json_decref(d);
	/* trained from version 1, but the alias is at 2: different data */
	add_incremental(3, 1, 0.95, 0.79);
	register_ok(3);
	ck_assert_int_eq(alias_now("production"), 2);
	d = decisions();
	ck_assert_str_eq(newest(d, "action"), "skipped");
	ASSERT_HAS(newest(d, "reason"), "different data");
	json_decref(d);
	/* from version 2, worse than it on the same holdout */
	add_incremental(4, 2, 0.80, 0.81);
	register_ok(4);
	ck_assert_int_eq(alias_now("production"), 2);
	d = decisions();
	ck_assert_str_eq(newest(d, "action"), "kept");
	json_decref(d);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("registry");
	TCase *tc = tcase_create("registry");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, versions_numbered_and_kept);
	tcase_add_test(tc, tags_move_to_the_best);
	tcase_add_test(tc, tags_only_for_headline_metrics);
	tcase_add_test(tc, old_versions_fall_back);
	tcase_add_test(tc, old_tags_dropped_by_migration);
	tcase_add_test(tc, promote_and_rollback);
	tcase_add_test(tc, unsafe_names);
	tcase_add_test(tc, missing_and_damaged_files);
	tcase_add_test(tc, run_lineage);
	tcase_add_test(tc, registration_thread);
	tcase_add_test(tc, routes);
	tcase_add_test(tc, bus_events);
	tcase_add_test(tc, deploy_decisions);
	tcase_add_test(tc, deploy_rule_parse);
	tcase_add_test(tc, deploy_rule_on_new_versions);
	tcase_add_test(tc, incremental_versions);
	suite_add_tcase(s, tc);
	return tu_run(s);
}

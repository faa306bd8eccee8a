/* host/configs: stored, versioned training configs in a real state
 * database, checked by a real compute-transformer with its four heads;
 * libconfig and JSON import and export; templates; concurrent updates. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/loom.h>

#include "host/configs/configs.h"
#include "host/core/conf.h"
#include "host/core/log.h"
#include "host/core/plugins.h"
#include "host/core/schema.h"
#include "host/server/auth.h"
#include "host/server/store.h"
#include "host/core/util.h"
#include "testutil.h"

#define ASSERT_HAS(text, needle)                                                          \
	ck_assert_msg((text) != NULL && strstr((text), (needle)) != NULL,                     \
	              "expected \"%s\" in:\n%s", (needle), (text) ? (text) : "(null)")

#define TEMPS "/usr/lib/python3/dist-packages/vega_datasets/_data/seattle-temps.csv"

static const char *const template_names[] = {"anomaly",     "classification", "failure-fine-tune",
                                             "forecast",    "incremental",    "regression"};
#define N_TEMPLATES (sizeof template_names / sizeof template_names[0])

static struct {
	char *tmp;
	loomi_daemon d;
	loomi_doc doc;
	bool store_up, reg_up, doc_up;
} T;

/* ------------------------------------------------------------------ fixture */

static bool
table_exists(sqlite3 *db, const char *name)
{
	sqlite3_stmt *st;
	bool found;

	ck_assert_int_eq(sqlite3_prepare_v2(db,
	                                    "SELECT count(*) FROM sqlite_master WHERE type = "
	                                    "'table' AND name = ?",
	                                    -1, &st, NULL),
	                 SQLITE_OK);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	found = sqlite3_column_int(st, 0) > 0;
	sqlite3_finalize(st);
	return found;
}

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
setup(void)
{
	static const char *const modules[][2] = {
		{"transformer", "compute-transformer"}, {"forecast", "head-forecast"},
		{"regression", "head-regression"},       {"classification", "head-classification"},
		{"anomaly", "head-anomaly"},
	};
	const char *dirs[1] = {tu_env("LOOM_TEST_PLUGINS")};
	loomi_strv errs = {0};
	char *path, *err = NULL;
	const json_t *groups;
	int rv;

	memset(&T, 0, sizeof T);
	T.tmp = tu_tmpdir();
	/* one info line per stored version would drown the test's output */
	ck_assert_int_eq(loomi_log_setup(LOOM_LOG_WARN, LOOMI_LOG_TEXT, NULL, &err), 0);

	path = loomi_path_join(T.tmp, "loom.db");
	rv = loomi_store_open(&T.d.store, path, &err);
	free(path);
	ck_assert_msg(rv == 0, "cannot open the store: %s", err ? err : "?");
	T.store_up = true;
	ck_assert(table_exists(T.d.store.db, "config_versions"));

	ck_assert_int_eq(loomi_plugins_init(&T.d.plugins, dirs, 1, T.tmp), 0);
	T.reg_up = true;
	rv = loomi_doc_load_string(&T.doc,
	                           "plugins = (\n"
	                           "  { instance = \"transformer\"; module = \"compute-transformer\"; },\n"
	                           "  { instance = \"forecast\"; module = \"head-forecast\"; },\n"
	                           "  { instance = \"regression\"; module = \"head-regression\"; },\n"
	                           "  { instance = \"classification\"; module = \"head-classification\"; },\n"
	                           "  { instance = \"anomaly\"; module = \"head-anomaly\"; }\n"
	                           ");\n",
	                           "configs.conf", &errs);
	T.doc_up = true;
	ck_assert_int_eq(rv, 0);
	groups = json_object_get(T.doc.root, "plugins");
	for (size_t i = 0; i < sizeof modules / sizeof modules[0]; i++) {
		loomi_plugin_conf pc;
		loom_instance *ins;

		pc.instance = loomi_strdup(modules[i][0]);
		pc.module = loomi_strdup(modules[i][1]);
		pc.config = NULL;
		pc.node = json_array_get(groups, i);
		rv = loomi_instance_create(&T.d.plugins, &T.doc, &pc, &ins, &errs);
		free(pc.instance);
		free(pc.module);
		ck_assert_msg(rv == 0, "cannot create %s: %s", modules[i][1],
		              errs.n ? errs.v[0] : "?");
		rv = loomi_instance_start(ins, &err);
		ck_assert_msg(rv == 0, "cannot start %s: %s", modules[i][1], err ? err : "?");
	}
	loomi_strv_free(&errs);
}

static void
teardown(void)
{
	if (T.reg_up)
		loomi_plugins_fini(&T.d.plugins);
	if (T.doc_up)
		loomi_doc_free(&T.doc);
	if (T.store_up)
		loomi_store_close(&T.d.store);
	if (T.tmp) {
		tu_rmrf(T.tmp);
		free(T.tmp);
	}
	memset(&T, 0, sizeof T);
}

/* ------------------------------------------------------------------ helpers */

/* A small valid forecast spec; context and patch vary it. */
static json_t *
spec_new(int context, int patch)
{
	json_t *s = json_pack("{s:s, s:{s:s, s:s, s:[s]}, s:{s:s, s:i, s:i, s:i, s:i, s:i},"
	                      " s:{s:i, s:f}}",
	                      "name", "temps",
	                      "data", "path", TEMPS, "time_column", "date", "features", "temp",
	                      "model", "head", "forecast", "context", context, "horizon", 6, "patch",
	                      patch, "d_model", 16, "heads", 2,
	                      "train", "epochs", 2, "lr", 0.002);
	ck_assert_ptr_nonnull(s);
	return s;
}

static json_t *
body_new(const char *name, json_t *spec)
{
	json_t *b = json_pack("{s:s, s:o}", "name", name, "spec", spec);
	ck_assert_ptr_nonnull(b);
	return b;
}

/* Create a config from body (released); returns its config_id (free it). */
static char *
create_ok(json_t *body)
{
	json_t *out = NULL;
	char *msg = NULL, *id;
	int rv = loomi_configs_create(&T.d, &loomi_caller_loomd, body, &out, &msg);

	ck_assert_msg(rv == 0, "create: %s: %s", loom_errname(rv), msg ? msg : "?");
	json_decref(body);
	id = loomi_strdup(json_string_value(json_object_get(out, "config_id")));
	json_decref(out);
	return id;
}

/* Expect code from create; returns the message (free it). */
static char *
create_fails(json_t *body, int code)
{
	json_t *out = NULL;
	char *msg = NULL;
	int rv = loomi_configs_create(&T.d, &loomi_caller_loomd, body, &out, &msg);

	ck_assert_msg(rv == code, "create: expected %s, got %s (%s)", loom_errname(code),
	              loom_errname(rv), msg ? msg : "no message");
	ck_assert_ptr_null(out);
	ck_assert_ptr_nonnull(msg);
	json_decref(body);
	return msg;
}

static void
assert_iso_time(const json_t *v)
{
	const char *t = json_string_value(v);
	int y, mo, dd, h, mi, s, ms;
	char z = 0;

	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(strlen(t), 24);
	ck_assert_int_eq(sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &y, &mo, &dd, &h, &mi, &s, &ms,
	                        &z),
	                 8);
	ck_assert_int_eq(z, 'Z');
	ck_assert_int_ge(y, 2024);
}

static json_t *
get_ok(const char *id, int64_t version)
{
	json_t *out = NULL;
	char *msg = NULL;
	int rv = loomi_configs_get(&T.d, id, version, &out, &msg);
	ck_assert_msg(rv == 0, "get %s v%lld: %s", id, (long long)version, msg ? msg : "?");
	return out;
}

static int
get_code(const char *id, int64_t version, char **msg)
{
	json_t *out = NULL;
	int rv = loomi_configs_get(&T.d, id, version, &out, msg);
	if (rv == 0)
		json_decref(out);
	else
		ck_assert_ptr_null(out);
	return rv;
}

/* Expect update of id with body (released) to fail; returns the code. */
static int
update_code(const char *id, json_t *body, char **msg)
{
	json_t *out = NULL;
	int rv = loomi_configs_update(&T.d, id, body, &out, msg);
	json_decref(body);
	if (rv == 0)
		json_decref(out);
	else
		ck_assert_ptr_null(out);
	return rv;
}

static json_t *
update_ok(const char *id, json_t *body)
{
	json_t *out = NULL;
	char *msg = NULL;
	int rv = loomi_configs_update(&T.d, id, body, &out, &msg);
	ck_assert_msg(rv == 0, "update %s: %s: %s", id, loom_errname(rv), msg ? msg : "?");
	json_decref(body);
	return out;
}

static char *
templates_dir(void)
{
	return loomi_path_join(tu_env("LOOM_TEST_SRCDIR"), "etc/templates");
}

/* ------------------------------------------------------------------ create, get, list, update, delete */

START_TEST(crud)
{
	json_t *s1 = spec_new(24, 6), *s2 = spec_new(48, 6), *s3 = spec_new(48, 12);
	json_t *out, *list, *item, *vers;
	char *id, *msg = NULL;

	id = create_ok(json_pack("{s:s, s:O, s:s, s:s}", "name", "temps-forecast", "spec", s1,
	                         "description", "hourly temperatures", "comment", "first try"));
	ck_assert_str_eq(id, "config-1");

	/* get: the documented shape */
	out = get_ok("config-1", 0);
	ck_assert_str_eq(json_string_value(json_object_get(out, "config_id")), "config-1");
	ck_assert_str_eq(json_string_value(json_object_get(out, "name")), "temps-forecast");
	ck_assert_str_eq(json_string_value(json_object_get(out, "description")),
	                 "hourly temperatures");
	ck_assert_int_eq(json_integer_value(json_object_get(out, "version")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(out, "versions")), 1);
	ck_assert(json_equal(json_object_get(out, "spec"), s1));
	assert_iso_time(json_object_get(out, "created_at"));
	assert_iso_time(json_object_get(out, "updated_at"));
	ck_assert_str_eq(json_string_value(json_object_get(out, "owner")), "loomd");
	ck_assert_int_eq(json_object_size(out), 9);
	json_decref(out);
	/* a bare number is an id too */
	out = get_ok("1", 0);
	ck_assert_str_eq(json_string_value(json_object_get(out, "config_id")), "config-1");
	json_decref(out);

	/* versions 2 and 3 */
	out = update_ok("config-1", json_pack("{s:O, s:s}", "spec", s2, "comment", "longer context"));
	ck_assert_int_eq(json_integer_value(json_object_get(out, "version")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(out, "versions")), 2);
	ck_assert_str_eq(json_string_value(json_object_get(out, "name")), "temps-forecast");
	ck_assert_str_eq(json_string_value(json_object_get(out, "description")),
	                 "hourly temperatures");
	ck_assert(json_equal(json_object_get(out, "spec"), s2));
	json_decref(out);
	out = update_ok("1", json_pack("{s:O, s:s, s:s}", "spec", s3, "description", "bigger patches",
	                               "name", "temps-forecast-2"));
	ck_assert_int_eq(json_integer_value(json_object_get(out, "version")), 3);
	ck_assert_str_eq(json_string_value(json_object_get(out, "name")), "temps-forecast-2");
	ck_assert_str_eq(json_string_value(json_object_get(out, "description")), "bigger patches");
	json_decref(out);

	/* every version stays readable */
	out = get_ok("config-1", 1);
	ck_assert(json_equal(json_object_get(out, "spec"), s1));
	ck_assert_int_eq(json_integer_value(json_object_get(out, "version")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(out, "versions")), 3);
	json_decref(out);
	out = get_ok("config-1", 2);
	ck_assert(json_equal(json_object_get(out, "spec"), s2));
	json_decref(out);
	out = get_ok("config-1", 0);
	ck_assert(json_equal(json_object_get(out, "spec"), s3));
	ck_assert_int_eq(json_integer_value(json_object_get(out, "version")), 3);
	json_decref(out);
	{
		json_t *spec = NULL;
		ck_assert_int_eq(loomi_configs_spec(&T.d, "config-1", 2, &spec, &msg), 0);
		ck_assert(json_equal(spec, s2));
		json_decref(spec);
		ck_assert_int_eq(loomi_configs_spec(&T.d, "config-1", 0, &spec, &msg), 0);
		ck_assert(json_equal(spec, s3));
		json_decref(spec);
	}
	ck_assert_int_eq(get_code("config-1", 4, &msg), LOOM_ENOENT);
	ASSERT_HAS(msg, "versions are 1 to 3");
	free(msg);
	ck_assert_int_eq(get_code("config-1", -1, &msg), LOOM_EINVAL);
	ASSERT_HAS(msg, "version");
	free(msg);
	ck_assert_int_eq(get_code("config-9", 0, &msg), LOOM_ENOENT);
	ASSERT_HAS(msg, "config-9");
	free(msg);
	ck_assert_int_eq(get_code("task-1", 0, &msg), LOOM_ENOENT);
	free(msg);
	ck_assert_int_eq(get_code("config-01", 0, &msg), LOOM_ENOENT);
	free(msg);

	/* the versions, oldest first, with their comments */
	ck_assert_int_eq(loomi_configs_versions(&T.d, "config-1", &vers, &msg), 0);
	ck_assert_str_eq(json_string_value(json_object_get(vers, "config_id")), "config-1");
	list = json_object_get(vers, "versions");
	ck_assert_int_eq(json_array_size(list), 3);
	for (size_t i = 0; i < 3; i++) {
		item = json_array_get(list, i);
		ck_assert_int_eq(json_integer_value(json_object_get(item, "version")), (int)i + 1);
		assert_iso_time(json_object_get(item, "created_at"));
	}
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 0), "comment")),
	                 "first try");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 1), "comment")),
	                 "longer context");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 2), "comment")), "");
	json_decref(vers);

	/* list: newest first, without specs */
	free(create_ok(body_new("second", spec_new(24, 4))));
	free(create_ok(body_new("third", spec_new(24, 3))));
	ck_assert_int_eq(loomi_configs_list(&T.d, &loomi_caller_loomd, 2, 0, &out, &msg), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(out, "total")), 3);
	ck_assert_int_eq(json_integer_value(json_object_get(out, "limit")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(out, "offset")), 0);
	list = json_object_get(out, "configs");
	ck_assert_int_eq(json_array_size(list), 2);
	item = json_array_get(list, 0);
	ck_assert_str_eq(json_string_value(json_object_get(item, "config_id")), "config-3");
	ck_assert_str_eq(json_string_value(json_object_get(item, "name")), "third");
	ck_assert_ptr_null(json_object_get(item, "spec"));
	ck_assert_int_eq(json_integer_value(json_object_get(item, "version")), 1);
	json_decref(out);
	ck_assert_int_eq(loomi_configs_list(&T.d, &loomi_caller_loomd, 2, 2, &out, &msg), 0);
	list = json_object_get(out, "configs");
	ck_assert_int_eq(json_array_size(list), 1);
	item = json_array_get(list, 0);
	ck_assert_str_eq(json_string_value(json_object_get(item, "config_id")), "config-1");
	ck_assert_int_eq(json_integer_value(json_object_get(item, "version")), 3);
	ck_assert_int_eq(json_integer_value(json_object_get(item, "versions")), 3);
	json_decref(out);
	ck_assert_int_eq(loomi_configs_list(&T.d, &loomi_caller_loomd, 0, 0, &out, &msg), LOOM_EINVAL);
	ASSERT_HAS(msg, "limit");
	free(msg);
	ck_assert_int_eq(loomi_configs_list(&T.d, &loomi_caller_loomd, 10, -1, &out, &msg), LOOM_EINVAL);
	ASSERT_HAS(msg, "offset");
	free(msg);

	/* delete: gone for the API, kept in the database */
	ck_assert_int_eq(loomi_configs_delete(&T.d, "config-1", &msg), 0);
	ck_assert_int_eq(get_code("config-1", 0, &msg), LOOM_ENOENT);
	ASSERT_HAS(msg, "deleted");
	free(msg);
	ck_assert_int_eq(get_code("config-1", 1, &msg), LOOM_ENOENT);
	free(msg);
	ck_assert_int_eq(loomi_configs_delete(&T.d, "config-1", &msg), LOOM_ENOENT);
	free(msg);
	ck_assert_int_eq(loomi_configs_versions(&T.d, "config-1", &vers, &msg), LOOM_ENOENT);
	free(msg);
	{
		json_t *spec = NULL;
		char *text = NULL;
		ck_assert_int_eq(loomi_configs_spec(&T.d, "config-1", 1, &spec, &msg), LOOM_ENOENT);
		free(msg);
		ck_assert_int_eq(loomi_configs_export(&T.d, "config-1", 0, "json", &text, &msg),
		                 LOOM_ENOENT);
		free(msg);
	}
	ck_assert_int_eq(update_code("config-1", json_pack("{s:O}", "spec", s1), &msg), LOOM_ENOENT);
	free(msg);
	ck_assert_int_eq(loomi_configs_delete(&T.d, "config-77", &msg), LOOM_ENOENT);
	free(msg);
	ck_assert_int_eq(scalar("SELECT count(*) FROM config_versions WHERE config_id = 1"), 3);
	ck_assert_int_eq(loomi_configs_list(&T.d, &loomi_caller_loomd, 10, 0, &out, &msg), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(out, "total")), 2);
	json_decref(out);
	/* its name is free again */
	free(id);
	id = create_ok(body_new("temps-forecast-2", spec_new(24, 6)));
	ck_assert_str_eq(id, "config-4");
	free(id);

	json_decref(s1);
	json_decref(s2);
	json_decref(s3);
}
END_TEST

/* ------------------------------------------------------------------ owners */

static const loomi_caller alice = {.user_id = 2, .name = "alice", .role = LOOMI_ROLE_USER};
static const loomi_caller bob = {.user_id = 3, .name = "bob", .role = LOOMI_ROLE_USER};
static const loomi_caller vic = {.user_id = 4, .name = "vic", .role = LOOMI_ROLE_VIEWER};

static void
share(const char *id, const char *user, const char *level)
{
	char *sql = loomi_strfmt("INSERT OR REPLACE INTO shares (kind, object, grantee, level,"
	                         " granted_by, created_at) VALUES ('config', '%s', '%s', '%s',"
	                         " 'alice', 0)",
	                         id, user, level);
	ck_assert_int_eq(sqlite3_exec(T.d.store.db, sql, NULL, NULL, NULL), SQLITE_OK);
	free(sql);
}

/* config ids in the list as who sees it, "config-2 config-1" */
static char *
listed(const loomi_caller *who)
{
	json_t *out = NULL, *c;
	char *msg = NULL;
	loomi_strv ids = {0};
	size_t i;

	ck_assert_int_eq(loomi_configs_list(&T.d, who, 100, 0, &out, &msg), 0);
	json_array_foreach(json_object_get(out, "configs"), i, c)
		loomi_strv_push(&ids, loomi_strdup(json_string_value(json_object_get(c, "config_id"))));
	ck_assert_int_eq(json_integer_value(json_object_get(out, "total")), (json_int_t)ids.n);
	json_decref(out);
	char *s = loomi_strv_join(&ids, " ");
	loomi_strv_free(&ids);
	return s;
}

static void
may(const loomi_caller *who, const char *id, int access, int want)
{
	char *msg = NULL;
	int rv = loomi_configs_may(&T.d, who, id, access, &msg);

	ck_assert_msg(rv == want, "%s %s %s: %s, expected %s (%s)", who->name,
	              access == LOOMI_ACCESS_READ ? "reads" : "changes", id, loom_errname(rv),
	              loom_errname(want), msg ? msg : "");
	if (want == LOOM_ENOENT) /* as for a config there is not */
		ck_assert_msg(strstr(msg, "there is no") != NULL, "%s", msg);
	if (want == LOOM_EPERM)
		ck_assert_msg(strstr(msg, "for reading only") != NULL, "%s", msg);
	free(msg);
}

static json_t *
create_as(const loomi_caller *who, const char *name)
{
	json_t *body = body_new(name, spec_new(24, 6)), *out = NULL;
	char *msg = NULL;
	int rv = loomi_configs_create(&T.d, who, body, &out, &msg);

	ck_assert_msg(rv == 0, "create: %s", msg ? msg : "?");
	json_decref(body);
	return out;
}

START_TEST(owners)
{
	json_t *out;
	char *msg = NULL, *s;

	out = create_as(&alice, "a");
	ck_assert_str_eq(json_string_value(json_object_get(out, "owner")), "alice");
	json_decref(out);
	json_decref(create_as(&bob, "b"));
	/* stored before configs had owners */
	json_decref(create_as(&loomi_caller_loomd, "old"));
	ck_assert_int_eq(sqlite3_exec(T.d.store.db, "UPDATE configs SET owner = '' WHERE id = 3",
	                              NULL, NULL, NULL), SQLITE_OK);

	/* each sees their own; the admin all; the viewer none */
	ck_assert_str_eq((s = listed(&alice)), "config-1");
	free(s);
	ck_assert_str_eq((s = listed(&bob)), "config-2");
	free(s);
	ck_assert_str_eq((s = listed(&vic)), "");
	free(s);
	ck_assert_str_eq((s = listed(&loomi_caller_loomd)), "config-3 config-2 config-1");
	free(s);
	may(&alice, "config-1", LOOMI_ACCESS_WRITE, 0);
	may(&bob, "config-1", LOOMI_ACCESS_READ, LOOM_ENOENT);
	may(&bob, "config-1", LOOMI_ACCESS_WRITE, LOOM_ENOENT);
	may(&alice, "config-3", LOOMI_ACCESS_READ, LOOM_ENOENT);
	may(&loomi_caller_loomd, "config-3", LOOMI_ACCESS_WRITE, 0);
	/* none there: the operation itself says so */
	may(&bob, "config-99", LOOMI_ACCESS_READ, 0);

	/* shared for reading: seen, not changed */
	share("config-1", "bob", "read");
	ck_assert_str_eq((s = listed(&bob)), "config-2 config-1");
	free(s);
	may(&bob, "config-1", LOOMI_ACCESS_READ, 0);
	may(&bob, "1", LOOMI_ACCESS_WRITE, LOOM_EPERM);
	/* for writing: changed, by a user, never by a viewer */
	share("config-1", "bob", "write");
	share("config-1", "vic", "write");
	may(&bob, "config-1", LOOMI_ACCESS_WRITE, 0);
	may(&vic, "config-1", LOOMI_ACCESS_READ, 0);
	may(&vic, "config-1", LOOMI_ACCESS_WRITE, LOOM_EPERM);
	/* shared with everyone */
	share("config-2", "*", "read");
	ck_assert_str_eq((s = listed(&alice)), "config-2 config-1");
	free(s);
	/* deleted: no one's, and not listed */
	ck_assert_int_eq(loomi_configs_delete(&T.d, "config-1", &msg), 0);
	ck_assert_str_eq((s = listed(&bob)), "config-2");
	free(s);
}
END_TEST

START_TEST(name_taken)
{
	char *msg, *id;
	int rv;

	id = create_ok(body_new("taken", spec_new(24, 6)));
	free(create_ok(body_new("other", spec_new(24, 6))));
	msg = create_fails(body_new("taken", spec_new(24, 4)), LOOM_EEXIST);
	ASSERT_HAS(msg, "name");
	ASSERT_HAS(msg, "\"taken\"");
	ASSERT_HAS(msg, "config-1");
	free(msg);
	/* renaming onto another config's name */
	rv = update_code("config-2",
	                 json_pack("{s:s, s:o}", "name", "taken", "spec", spec_new(24, 6)), &msg);
	ck_assert_int_eq(rv, LOOM_EEXIST);
	ASSERT_HAS(msg, "taken");
	free(msg);
	/* keeping one's own name is fine */
	rv = update_code("config-1",
	                 json_pack("{s:s, s:o}", "name", "taken", "spec", spec_new(24, 6)), &msg);
	ck_assert_int_eq(rv, 0);
	ck_assert_int_eq(scalar("SELECT latest FROM configs WHERE id = 1"), 2);
	ck_assert_int_eq(scalar("SELECT count(*) FROM configs"), 2);
	free(id);
}
END_TEST

START_TEST(bad_bodies)
{
	char *msg, long_name[102], long_comment[1002];

	msg = create_fails(json_pack("{s:s, s:o}", "name", "x", "spce", spec_new(24, 6)),
	                   LOOM_EINVAL);
	ASSERT_HAS(msg, "spce: unknown field");
	ASSERT_HAS(msg, "did you mean \"spec\"");
	free(msg);
	msg = create_fails(json_pack("{s:s, s:o, s:i}", "name", "x", "spec", spec_new(24, 6),
	                             "priority", 3),
	                   LOOM_EINVAL);
	ASSERT_HAS(msg, "priority: unknown field");
	free(msg);
	msg = create_fails(json_pack("[]"), LOOM_EINVAL);
	ASSERT_HAS(msg, "JSON object");
	free(msg);
	msg = create_fails(json_pack("{s:o}", "spec", spec_new(24, 6)), LOOM_EINVAL);
	ASSERT_HAS(msg, "name: missing");
	free(msg);
	msg = create_fails(json_pack("{s:i, s:o}", "name", 3, "spec", spec_new(24, 6)), LOOM_EINVAL);
	ASSERT_HAS(msg, "name: expected a string");
	free(msg);
	msg = create_fails(body_new("", spec_new(24, 6)), LOOM_EINVAL);
	ASSERT_HAS(msg, "name: must not be empty");
	free(msg);
	msg = create_fails(body_new("my config", spec_new(24, 6)), LOOM_EINVAL);
	ASSERT_HAS(msg, "name: ' ' (character 3) is not allowed");
	free(msg);
	msg = create_fails(body_new("a/b", spec_new(24, 6)), LOOM_EINVAL);
	ASSERT_HAS(msg, "'/'");
	free(msg);
	msg = create_fails(body_new("caf\xc3\xa9", spec_new(24, 6)), LOOM_EINVAL);
	ASSERT_HAS(msg, "byte 0xc3");
	free(msg);
	memset(long_name, 'n', 101);
	long_name[101] = '\0';
	msg = create_fails(body_new(long_name, spec_new(24, 6)), LOOM_EINVAL);
	ASSERT_HAS(msg, "name: 101 characters is too long");
	free(msg);
	long_name[100] = '\0';
	free(create_ok(body_new(long_name, spec_new(24, 6))));
	free(create_ok(body_new("A.b_c-9", spec_new(24, 6))));

	memset(long_comment, 'c', 1001);
	long_comment[1001] = '\0';
	msg = create_fails(json_pack("{s:s, s:o, s:s}", "name", "x", "spec", spec_new(24, 6),
	                             "comment", long_comment),
	                   LOOM_EINVAL);
	ASSERT_HAS(msg, "comment: 1001 characters is too long");
	free(msg);
	long_comment[1000] = '\0';
	free(create_ok(json_pack("{s:s, s:o, s:s}", "name", "x", "spec", spec_new(24, 6), "comment",
	                         long_comment)));
	msg = create_fails(json_pack("{s:s, s:o, s:i}", "name", "y", "spec", spec_new(24, 6),
	                             "description", 5),
	                   LOOM_EINVAL);
	ASSERT_HAS(msg, "description: expected a string");
	free(msg);

	msg = create_fails(json_pack("{s:s}", "name", "y"), LOOM_EINVAL);
	ASSERT_HAS(msg, "spec: missing");
	free(msg);
	msg = create_fails(json_pack("{s:s, s:[]}", "name", "y", "spec"), LOOM_EINVAL);
	ASSERT_HAS(msg, "spec: expected a job spec object");
	free(msg);
	msg = create_fails(json_pack("{s:s, s:o, s:s}", "name", "y", "spec", spec_new(24, 6), "text",
	                             "data = {};"),
	                   LOOM_EINVAL);
	ASSERT_HAS(msg, "not both");
	free(msg);
	msg = create_fails(json_pack("{s:s, s:o, s:s}", "name", "y", "spec", spec_new(24, 6),
	                             "format", "json"),
	                   LOOM_EINVAL);
	ASSERT_HAS(msg, "format: goes with \"text\"");
	free(msg);
	msg = create_fails(json_pack("{s:s, s:s, s:s}", "name", "y", "text", "data = {};", "format",
	                             "yaml"),
	                   LOOM_EINVAL);
	ASSERT_HAS(msg, "format: expected \"libconfig\" or \"json\"");
	free(msg);
	msg = create_fails(json_pack("{s:s, s:i}", "name", "y", "text", 5), LOOM_EINVAL);
	ASSERT_HAS(msg, "text: expected");
	free(msg);

	/* update needs a spec too; unknown ids */
	ck_assert_int_eq(update_code("config-1", json_pack("{s:s}", "description", "d"), &msg),
	                 LOOM_EINVAL);
	ASSERT_HAS(msg, "spec: missing");
	free(msg);
	ck_assert_int_eq(update_code("nonsense", json_pack("{s:o}", "spec", spec_new(24, 6)), &msg),
	                 LOOM_ENOENT);
	ASSERT_HAS(msg, "\"nonsense\"");
	free(msg);
	ck_assert_int_eq(scalar("SELECT count(*) FROM configs"), 3);
}
END_TEST

START_TEST(invalid_spec)
{
	json_t *spec = spec_new(24, 5), *out = NULL;
	char *msg;

	/* the plugin's own message, naming the key */
	msg = create_fails(body_new("bad", json_incref(spec)), LOOM_EINVAL);
	ASSERT_HAS(msg, "model.patch: 5 does not divide model.context (24)");
	free(msg);
	{
		json_t *body = json_pack("{s:o}", "spec", spec);
		ck_assert_int_eq(loomi_configs_validate(&T.d, body, &out, &msg), LOOM_EINVAL);
		json_decref(body);
	}
	ASSERT_HAS(msg, "does not divide");
	ck_assert_ptr_null(out);
	free(msg);

	spec = spec_new(24, 6);
	json_object_set_new(json_object_get(spec, "train"), "epochz", json_integer(3));
	msg = create_fails(body_new("bad", spec), LOOM_EINVAL);
	ASSERT_HAS(msg, "epochz");
	ASSERT_HAS(msg, "did you mean");
	free(msg);

	spec = spec_new(24, 6);
	json_object_set_new(spec, "compute", json_string("nope"));
	msg = create_fails(body_new("bad", spec), LOOM_EINVAL);
	ASSERT_HAS(msg, "spec.compute: no compute plugin instance \"nope\"");
	free(msg);

	spec = spec_new(24, 6);
	json_object_set_new(json_object_get(spec, "model"), "head", json_string("regresion"));
	msg = create_fails(body_new("bad", spec), LOOM_EINVAL);
	ASSERT_HAS(msg, "model.head");
	free(msg);

	/* update refuses it too and keeps the old version */
	free(create_ok(body_new("good", spec_new(24, 6))));
	spec = spec_new(24, 7);
	ck_assert_int_eq(update_code("config-1", json_pack("{s:o}", "spec", spec), &msg),
	                 LOOM_EINVAL);
	ASSERT_HAS(msg, "model.patch: 7 does not divide");
	free(msg);
	ck_assert_int_eq(scalar("SELECT count(*) FROM config_versions"), 1);

	/* validate: a good body, with or without a name */
	{
		json_t *body = json_pack("{s:o}", "spec", spec_new(24, 6));
		ck_assert_int_eq(loomi_configs_validate(&T.d, body, &out, &msg), 0);
		ck_assert(json_is_true(json_object_get(out, "valid")));
		json_decref(out);
		json_decref(body);
		body = json_pack("{s:s, s:s, s:s}", "name", "v", "format", "libconfig", "text",
		                 "data = { path = \"" TEMPS "\"; features = [\"temp\"]; };\n"
		                 "model = { context = 24; patch = 6; horizon = 6; };\n");
		ck_assert_int_eq(loomi_configs_validate(&T.d, body, &out, &msg), 0);
		json_decref(out);
		json_decref(body);
		body = json_pack("{s:s, s:o}", "name", "bad name", "spec", spec_new(24, 6));
		ck_assert_int_eq(loomi_configs_validate(&T.d, body, &out, &msg), LOOM_EINVAL);
		ASSERT_HAS(msg, "name:");
		free(msg);
		json_decref(body);
	}
	ck_assert_int_eq(scalar("SELECT count(*) FROM configs"), 1);
}
END_TEST

/* ------------------------------------------------------------------ import */

START_TEST(import_text)
{
	json_t *out = NULL, *want;
	char *msg;
	const char *good = "# a forecast\n"
	                   "name = \"imported\";\n"
	                   "data = {\n"
	                   "  path = \"" TEMPS "\";\n"
	                   "  time_column = \"date\";\n"
	                   "  features = [\"temp\"];\n"
	                   "  split = [0.6, 0.2, 0.2];\n"
	                   "};\n"
	                   "model = { head = \"forecast\"; context = 24; horizon = 6; patch = 6;\n"
	                   "          revin = true; dropout = 0.0; };\n"
	                   "train = { epochs = 3; lr = 1e-3; seed = 5000000000L; };\n";

	free(create_ok(json_pack("{s:s, s:s, s:s}", "name", "imp", "text", good, "format",
	                         "libconfig")));
	out = get_ok("config-1", 0);
	want = json_pack("{s:s, s:{s:s, s:s, s:[s], s:[f,f,f]},"
	                 " s:{s:s, s:i, s:i, s:i, s:b, s:f}, s:{s:i, s:f, s:I}}",
	                 "name", "imported",
	                 "data", "path", TEMPS, "time_column", "date", "features", "temp", "split",
	                 0.6, 0.2, 0.2,
	                 "model", "head", "forecast", "context", 24, "horizon", 6, "patch", 6,
	                 "revin", 1, "dropout", 0.0,
	                 "train", "epochs", 3, "lr", 1e-3, "seed", (json_int_t)5000000000LL);
	ck_assert_msg(json_equal(json_object_get(out, "spec"), want), "imported: %s",
	              json_dumps(json_object_get(out, "spec"), JSON_COMPACT));
	json_decref(out);

	/* the same as JSON, with the format given or guessed */
	{
		char *text = json_dumps(want, 0);
		free(create_ok(json_pack("{s:s, s:s, s:s}", "name", "imp-json", "text", text, "format",
		                         "json")));
		free(create_ok(json_pack("{s:s, s:s}", "name", "imp-json2", "text", text)));
		free(text);
		out = get_ok("config-3", 0);
		ck_assert(json_equal(json_object_get(out, "spec"), want));
		json_decref(out);
	}
	json_decref(want);

	/* syntax errors keep the reader's line (and column for JSON) */
	msg = create_fails(json_pack("{s:s, s:s, s:s}", "name", "x", "format", "libconfig", "text",
	                             "data = {\n  path = \"x.csv\";\n  features = [\"a\" \"b\"\n};\n"),
	                   LOOM_EINVAL);
	ASSERT_HAS(msg, "text:4: syntax error");
	free(msg);
	msg = create_fails(json_pack("{s:s, s:s, s:s}", "name", "x", "format", "libconfig", "text",
	                             "data = { path = \"x.csv\"; };\nmodel = { context = ; };\n"),
	                   LOOM_EINVAL);
	ASSERT_HAS(msg, "text:2:");
	free(msg);
	msg = create_fails(json_pack("{s:s, s:s, s:s}", "name", "x", "format", "json", "text",
	                             "{\n  \"data\": {\"path\": \"x.csv\",}\n}"),
	                   LOOM_EINVAL);
	ASSERT_HAS(msg, "text:2:");
	ASSERT_HAS(msg, "malformed JSON");
	free(msg);
	msg = create_fails(json_pack("{s:s, s:s, s:s}", "name", "x", "format", "json", "text",
	                             "[1, 2]"),
	                   LOOM_EINVAL);
	ASSERT_HAS(msg, "expected a JSON object");
	free(msg);
	/* read well but refused by the plugin */
	msg = create_fails(json_pack("{s:s, s:s, s:s}", "name", "x", "format", "libconfig", "text",
	                             "data = { path = \"x.csv\"; };\nmodel = { context = 24; patch "
	                             "= 5; };\n"),
	                   LOOM_EINVAL);
	ASSERT_HAS(msg, "model.patch: 5 does not divide");
	free(msg);
	/* no reading of the daemon's files */
	msg = create_fails(json_pack("{s:s, s:s, s:s}", "name", "x", "format", "libconfig", "text",
	                             "data = { path = \"x.csv\"; };\n  @include \"/etc/passwd\"\n"),
	                   LOOM_EINVAL);
	ASSERT_HAS(msg, "text:2: @include is not allowed");
	free(msg);
	ck_assert_int_eq(scalar("SELECT count(*) FROM configs"), 3);
}
END_TEST

/* ------------------------------------------------------------------ export */

/* Round trips of a template through export and import. */
START_TEST(export_roundtrip_templates)
{
	char *dir = templates_dir();

	for (size_t i = 0; i < sizeof template_names / sizeof template_names[0]; i++) {
		const char *name = template_names[i];
		json_t *tpl = NULL, *out, *spec;
		char *msg = NULL, *id, *id2, *id3, *text = NULL, *cname;
		int rv;

		rv = loomi_configs_template(dir, name, &tpl, &msg);
		ck_assert_msg(rv == 0, "template %s: %s", name, msg ? msg : "?");
		spec = json_object_get(tpl, "spec");
		cname = loomi_strfmt("from-%s", name);
		id = create_ok(json_pack("{s:s, s:O, s:s}", "name", cname, "spec", spec, "description",
		                         "line one\nline two"));
		free(cname);

		/* libconfig */
		rv = loomi_configs_export(&T.d, id, 0, "libconfig", &text, &msg);
		ck_assert_msg(rv == 0, "export %s: %s", name, msg ? msg : "?");
		ck_assert_msg(strncmp(text, "# from-", 7) == 0, "export starts with:\n%s", text);
		ASSERT_HAS(text, "version 1");
		ASSERT_HAS(text, "# line two\n");
		cname = loomi_strfmt("lc-%s", name);
		id2 = create_ok(json_pack("{s:s, s:s, s:s}", "name", cname, "text", text, "format",
		                          "libconfig"));
		free(cname);
		free(text);
		out = get_ok(id2, 0);
		ck_assert_msg(json_equal(json_object_get(out, "spec"), spec),
		              "%s: the libconfig export reads back differently", name);
		json_decref(out);

		/* JSON */
		rv = loomi_configs_export(&T.d, id, 1, "json", &text, &msg);
		ck_assert_msg(rv == 0, "export %s: %s", name, msg ? msg : "?");
		{
			json_t *parsed = json_loads(text, 0, NULL);
			ck_assert_ptr_nonnull(parsed);
			ck_assert(json_equal(parsed, spec));
			json_decref(parsed);
		}
		ck_assert_ptr_nonnull(strchr(text, '\n')); /* pretty */
		cname = loomi_strfmt("js-%s", name);
		id3 = create_ok(json_pack("{s:s, s:s, s:s}", "name", cname, "text", text, "format",
		                          "json"));
		free(cname);
		free(text);
		out = get_ok(id3, 0);
		ck_assert(json_equal(json_object_get(out, "spec"), spec));
		json_decref(out);

		rv = loomi_configs_export(&T.d, id, 0, "yaml", &text, &msg);
		ck_assert_int_eq(rv, LOOM_EINVAL);
		ASSERT_HAS(msg, "format: \"yaml\"");
		free(msg);
		rv = loomi_configs_export(&T.d, id, 2, "json", &text, &msg);
		ck_assert_int_eq(rv, LOOM_ENOENT);
		free(msg);

		free(id);
		free(id2);
		free(id3);
		json_decref(tpl);
	}
	free(dir);
}
END_TEST

static void
roundtrip(const char *json)
{
	json_error_t jerr;
	json_t *v = json_loads(json, 0, &jerr);
	loomi_strv errs = {0};
	loomi_doc doc;
	char *text;
	int rv;

	ck_assert_msg(v != NULL, "%s: %s", json, jerr.text);
	text = loomi_json_to_libconfig(v);
	ck_assert_msg(text != NULL, "%s: not written", json);
	rv = loomi_doc_load_string(&doc, text, "rt", &errs);
	ck_assert_msg(rv == 0, "%s →\n%s\ndoes not read: %s", json, text,
	              errs.n ? errs.v[0] : "?");
	ck_assert_msg(json_equal(doc.root, v), "%s →\n%s\nreads back differently", json, text);
	loomi_strv_free(&errs);
	loomi_doc_free(&doc);
	json_decref(v);
	free(text);
}

static void
refused(json_t *v)
{
	char *text = loomi_json_to_libconfig(v);
	ck_assert_msg(text == NULL, "written:\n%s", text);
	json_decref(v);
}

START_TEST(json_to_libconfig)
{
	char *text;
	json_t *v;

	roundtrip("{}");
	roundtrip("{\"a\": 1, \"b\": -2147483648, \"c\": 2147483647, \"d\": 2147483648,"
	          " \"e\": -9223372036854775808, \"f\": 9223372036854775807}");
	roundtrip("{\"r\": [0.1, 0.7, 1e300, 5e-324, -0.0, 1.0, 3.0, 123456789012.5,"
	          " 2.2250738585072014e-308, 1.7976931348623157e308, 0.30000000000000004]}");
	roundtrip("{\"s\": [\"plain\", \"q\\\"uote\", \"back\\\\slash\", \"nl\\nt\\tcr\\rff\\f\","
	          " \"ctl\\u0001\\u001f\\u007f\", \"caf\\u00e9 \\u65e5\\u672c \\ud83d\\ude00\", \"\"]}");
	roundtrip("{\"b\": [true, false], \"t\": true, \"f\": false}");
	roundtrip("{\"mixed\": [1, 2.5, \"x\", true], \"ints\": [1, 5000000000, -3],"
	          " \"nested\": [[1, 2], [], [\"a\"]], \"groups\": [{\"a\": 1}, {}],"
	          " \"empty\": [], \"deep\": {\"x\": {\"y\": {\"z\": [{\"w\": [[[]]]}]}}}}");
	roundtrip("{\"a-b\": 1, \"A_9\": 2, \"x*\": 3, \"a\": 4, \"A\": 5}");
	/* arrays stay arrays, mixed ones become lists */
	v = json_pack("{s:[i,i], s:[i,f]}", "arr", 1, 2, "list", 1, 2.0);
	text = loomi_json_to_libconfig(v);
	ASSERT_HAS(text, "arr = [1, 2];\n");
	ASSERT_HAS(text, "list = (\n");
	free(text);
	json_decref(v);
	v = json_pack("{s:f, s:I}", "f", 2.0, "big", (json_int_t)5000000000LL);
	text = loomi_json_to_libconfig(v);
	ASSERT_HAS(text, "f = 2.0;\n");
	ASSERT_HAS(text, "big = 5000000000L;\n");
	free(text);
	json_decref(v);

	refused(json_pack("{s:n}", "a"));
	refused(json_pack("{s:[i,n]}", "a", 1));
	refused(json_pack("{s:{s:n}}", "a", "b"));
	refused(json_pack("{s:i}", "_a", 1));
	refused(json_pack("{s:i}", "a b", 1));
	refused(json_pack("{s:i}", "9a", 1));
	refused(json_pack("{s:i}", "", 1));
	refused(json_pack("{s:{s:i}}", "g", "caf\xc3\xa9", 1));
	refused(json_pack("{s:s#}", "a", "x\0y", (size_t)3));
	refused(json_pack("[i]", 1));
	refused(json_string("x"));
	ck_assert_ptr_null(loomi_json_to_libconfig(NULL));
}
END_TEST

/* ------------------------------------------------------------------ templates */

START_TEST(templates)
{
	char *dir = templates_dir(), *msg = NULL;
	json_t *out = NULL, *list;
	int rv;

	rv = loomi_configs_templates(dir, &out, &msg);
	ck_assert_msg(rv == 0, "%s", msg ? msg : "?");
	list = json_object_get(out, "templates");
	ck_assert_int_eq(json_array_size(list), N_TEMPLATES);
	for (size_t i = 0; i < N_TEMPLATES; i++) {
		json_t *t = json_array_get(list, i);
		const char *desc = json_string_value(json_object_get(t, "description"));
		char *file = loomi_strfmt("%s/%s.conf", dir, template_names[i]), *text = NULL;
		size_t len;

		ck_assert_str_eq(json_string_value(json_object_get(t, "name")), template_names[i]);
		/* the description is the file's first line, without its "# " */
		ck_assert_int_eq(loomi_read_file(file, &text, &len), 0);
		ck_assert_msg(desc && strlen(desc) > 10, "%s: description \"%s\"", template_names[i],
		              desc ? desc : "");
		ck_assert(strncmp(text, "# ", 2) == 0);
		ck_assert(strncmp(text + 2, desc, strlen(desc)) == 0);
		ck_assert_int_eq(text[2 + strlen(desc)], '\n');
		free(text);
		free(file);
	}
	json_decref(out);

	/* one template: its spec, as the file says */
	rv = loomi_configs_template(dir, "forecast", &out, &msg);
	ck_assert_msg(rv == 0, "%s", msg ? msg : "?");
	ck_assert_str_eq(json_string_value(json_object_get(out, "name")), "forecast");
	ck_assert_str_eq(json_string_value(json_object_get(
	                     json_object_get(json_object_get(out, "spec"), "model"), "head")),
	                 "forecast");
	ASSERT_HAS(json_string_value(json_object_get(out, "description")), "Forecast");
	json_decref(out);
	/* every template is a spec the plugin accepts, the incremental ones
	 * (train.init, incremental) included */
	for (size_t i = 0; i < N_TEMPLATES; i++) {
		json_t *body;
		rv = loomi_configs_template(dir, template_names[i], &out, &msg);
		ck_assert_int_eq(rv, 0);
		body = json_pack("{s:O}", "spec", json_object_get(out, "spec"));
		json_decref(out);
		out = NULL;
		rv = loomi_configs_validate(&T.d, body, &out, &msg);
		ck_assert_msg(rv == 0, "template %s: %s", template_names[i], msg ? msg : "?");
		json_decref(out);
		json_decref(body);
	}

	/* refusals */
	out = NULL;
	ck_assert_int_eq(loomi_configs_template(dir, "../templates/forecast", &out, &msg),
	                 LOOM_EINVAL);
	ASSERT_HAS(msg, "'/' or '..'");
	free(msg);
	ck_assert_int_eq(loomi_configs_template(dir, "a/b", &out, &msg), LOOM_EINVAL);
	free(msg);
	ck_assert_int_eq(loomi_configs_template(dir, "..", &out, &msg), LOOM_EINVAL);
	free(msg);
	ck_assert_int_eq(loomi_configs_template(dir, "", &out, &msg), LOOM_EINVAL);
	free(msg);
	ck_assert_int_eq(loomi_configs_template(dir, "nope", &out, &msg), LOOM_ENOENT);
	ASSERT_HAS(msg, "\"nope\"");
	free(msg);
	ck_assert_ptr_null(out);
	free(dir);

	/* a directory of our own: only NAME.conf files count; a broken one is
	 * listed but refused with its line; a missing directory has none */
	dir = loomi_path_join(T.tmp, "tpl");
	ck_assert_int_eq(loomi_mkdir_p(dir, 0755), 0);
	free(tu_write(dir, "b.conf", "# Second\ndata = { path = \"x\"; };\n"));
	free(tu_write(dir, "a.conf", "\n// First, with a slash comment  \nname = \"a\";\n"));
	free(tu_write(dir, "c.conf", "name = \"no comment\";\n"));
	free(tu_write(dir, "broken.conf", "# Broken\ndata = {\n  path = ;\n};\n"));
	free(tu_write(dir, "notes.txt", "# not a template\n"));
	free(tu_write(dir, ".hidden.conf", "# hidden\n"));
	free(tu_write(dir, "bad name.conf", "# bad name\n"));
	rv = loomi_configs_templates(dir, &out, &msg);
	ck_assert_int_eq(rv, 0);
	list = json_object_get(out, "templates");
	ck_assert_int_eq(json_array_size(list), 4);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 0), "name")), "a");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 0), "description")),
	                 "First, with a slash comment");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 1), "name")), "b");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 1), "description")),
	                 "Second");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 2), "name")),
	                 "broken");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 3), "name")), "c");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 3), "description")),
	                 "");
	json_decref(out);
	out = NULL;
	ck_assert_int_eq(loomi_configs_template(dir, "broken", &out, &msg), LOOM_EIO);
	ASSERT_HAS(msg, "broken.conf:3:");
	free(msg);
	ck_assert_int_eq(loomi_configs_template(dir, "b", &out, &msg), 0);
	ck_assert_str_eq(json_string_value(json_object_get(out, "description")), "Second");
	json_decref(out);
	free(dir);

	dir = loomi_path_join(T.tmp, "no-such-dir");
	ck_assert_int_eq(loomi_configs_templates(dir, &out, &msg), 0);
	ck_assert_int_eq(json_array_size(json_object_get(out, "templates")), 0);
	json_decref(out);
	free(dir);
}
END_TEST

/* ------------------------------------------------------------------ concurrency */

typedef struct updater {
	int who;
	int failures;
	char err[512];
} updater;

static void *
update_many(void *arg)
{
	updater *u = arg;

	for (int i = 0; i < 50; i++) {
		char *msg = NULL, comment[32];
		json_t *body, *out = NULL;
		int rv;

		snprintf(comment, sizeof comment, "t%d-%d", u->who, i);
		body = json_pack("{s:o, s:s}", "spec", spec_new(24, i % 2 ? 6 : 4), "comment", comment);
		rv = loomi_configs_update(&T.d, "config-1", body, &out, &msg);
		json_decref(body);
		json_decref(out);
		if (rv != 0) {
			if (u->failures++ == 0)
				snprintf(u->err, sizeof u->err, "%s", msg ? msg : loom_errname(rv));
			free(msg);
		}
	}
	return NULL;
}

START_TEST(concurrent_updates)
{
	pthread_t th[2];
	updater u[2] = {{0, 0, ""}, {1, 0, ""}};
	json_t *vers, *list, *item;
	char *msg = NULL;
	bool seen[2][50] = {{false}};
	size_t i;

	free(create_ok(body_new("shared", spec_new(24, 6))));
	for (int k = 0; k < 2; k++)
		ck_assert_int_eq(pthread_create(&th[k], NULL, update_many, &u[k]), 0);
	for (int k = 0; k < 2; k++)
		pthread_join(th[k], NULL);
	ck_assert_msg(u[0].failures == 0 && u[1].failures == 0, "failures %d, %d: %s%s",
	              u[0].failures, u[1].failures, u[0].err, u[1].err);

	ck_assert_int_eq(loomi_configs_versions(&T.d, "config-1", &vers, &msg), 0);
	list = json_object_get(vers, "versions");
	ck_assert_int_eq(json_array_size(list), 101);
	json_array_foreach(list, i, item) {
		const char *c = json_string_value(json_object_get(item, "comment"));
		int who, n;

		ck_assert_int_eq(json_integer_value(json_object_get(item, "version")), (int)i + 1);
		if (i == 0)
			continue;
		ck_assert_int_eq(sscanf(c, "t%d-%d", &who, &n), 2);
		ck_assert(who == 0 || who == 1);
		ck_assert(n >= 0 && n < 50);
		ck_assert_msg(!seen[who][n], "update %s stored twice", c);
		seen[who][n] = true;
	}
	json_decref(vers);
	ck_assert_int_eq(scalar("SELECT count(DISTINCT version) FROM config_versions"), 101);
	ck_assert_int_eq(scalar("SELECT max(version) FROM config_versions"), 101);
	ck_assert_int_eq(scalar("SELECT latest FROM configs WHERE id = 1"), 101);
	{
		json_t *out = get_ok("config-1", 0);
		ck_assert_int_eq(json_integer_value(json_object_get(out, "version")), 101);
		json_decref(out);
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("configs");
	TCase *tc = tcase_create("configs");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, crud);
	tcase_add_test(tc, owners);
	tcase_add_test(tc, name_taken);
	tcase_add_test(tc, bad_bodies);
	tcase_add_test(tc, invalid_spec);
	tcase_add_test(tc, import_text);
	tcase_add_test(tc, export_roundtrip_templates);
	tcase_add_test(tc, json_to_libconfig);
	tcase_add_test(tc, templates);
	tcase_add_test(tc, concurrent_updates);
	suite_add_tcase(s, tc);
	return tu_run(s);
}

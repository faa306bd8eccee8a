/* storage-memory: the conformance suite, then what only memory promises —
 * the max_bytes cap, and nothing kept across instances. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/loom.h>

#include "host/core/conf.h"
#include "host/core/plugins.h"
#include "host/core/util.h"
#include "storage-conformance.h"
#include "testutil.h"

#define MODULE "storage-memory"
#define CAPPED "max_bytes = \"1K\";"

static const sc_target target = {MODULE, ""};

static char *tmp;
static sc_store store;
static loom_instance *ins;
static const loom_storage_ops *ops;

/* Every test here runs on an instance capped at 1 KiB. */
static void
setup(void)
{
	tmp = tu_tmpdir();
	sc_store_start(&store, MODULE, CAPPED, tmp);
	ins = store.ins;
	ops = store.ops;
}

static void
teardown(void)
{
	sc_store_close(&store);
	tu_rmrf(tmp);
	free(tmp);
	tmp = NULL;
	ins = NULL;
	ops = NULL;
}

static void *
open_writer(const char *key)
{
	void *w = NULL;
	ck_assert_int_eq(ops->write_open(ins->ctx, key, &w), 0);
	ck_assert_ptr_nonnull(w);
	return w;
}

static uint64_t
size_of(const char *key)
{
	loom_blob_stat st;
	ck_assert_int_eq(loomi_storage_stat(ins, key, &st), 0);
	return st.size;
}

START_TEST(capabilities)
{
	char *path = NULL;

	/* Not durable, no local files. */
	ck_assert_uint_eq(ops->caps, 0);
	ck_assert_uint_eq(ins->desc->flags & LOOM_PLUGIN_THREAD_SAFE, LOOM_PLUGIN_THREAD_SAFE);
	ck_assert_ptr_null(ops->local_path);
	sc_put_str(ins, "k", "v");
	ck_assert_int_eq(loomi_storage_local_path(ins, "k", &path), LOOM_ENOTSUP);
	ck_assert_ptr_null(path);
}
END_TEST

START_TEST(quota_put)
{
	unsigned char *p = sc_pattern(2048, 21);
	uint64_t etag = 0;
	loom_blob_stat st;

	sc_put(ins, "a", p, 1000);
	ck_assert_int_eq(loomi_storage_put(ins, "b", p, 100), LOOM_ERANGE);
	sc_assert_blob(ins, "a", p, 1000);
	sc_assert_absent(ins, "b");
	/* Exactly full is allowed, one byte more is not. */
	sc_put(ins, "b", p + 1, 24);
	ck_assert_int_eq(loomi_storage_put(ins, "c", "x", 1), LOOM_ERANGE);
	sc_assert_absent(ins, "c");
	/* A bigger replacement that would not fit leaves the old blob. */
	ck_assert_int_eq(loomi_storage_put(ins, "a", p + 2, 1001), LOOM_ERANGE);
	sc_assert_blob(ins, "a", p, 1000);
	ck_assert_int_eq(loomi_storage_stat(ins, "a", &st), 0);
	etag = st.etag;
	ck_assert_int_eq(loomi_storage_put_if(ins, "a", p + 3, 2000, etag, NULL), LOOM_ERANGE);
	ck_assert_int_eq(loomi_storage_put_if(ins, "z", p, 2, 0, NULL), LOOM_ERANGE);
	sc_assert_blob(ins, "a", p, 1000);
	sc_assert_absent(ins, "z");
	ck_assert_int_eq(loomi_storage_stat(ins, "a", &st), 0);
	ck_assert_uint_eq(st.etag, etag);
	/* A smaller one frees room; a removal frees all of it. */
	sc_put(ins, "a", p + 4, 900);
	sc_put(ins, "c", p, 100);
	ck_assert_int_eq(loomi_storage_put(ins, "d", "x", 1), LOOM_ERANGE);
	ck_assert_int_eq(loomi_storage_remove(ins, "a"), 0);
	sc_put(ins, "d", p, 900);
	/* A blob bigger than the whole cap never fits. */
	ck_assert_int_eq(loomi_storage_remove(ins, "b"), 0);
	ck_assert_int_eq(loomi_storage_remove(ins, "c"), 0);
	ck_assert_int_eq(loomi_storage_remove(ins, "d"), 0);
	ck_assert_int_eq(loomi_storage_put(ins, "big", p, 1025), LOOM_ERANGE);
	sc_put(ins, "big", p, 1024);
	sc_assert_blob(ins, "big", p, 1024);
	free(p);
}
END_TEST

START_TEST(quota_counts_replaced_blobs)
{
	unsigned char *p = sc_pattern(600, 22);
	loom_blob_stat st;

	sc_put(ins, "x", p, 600);
	/* The old 600 bytes go as the new 600 come. */
	for (int i = 0; i < 10; i++)
		sc_put(ins, "x", p, 600);
	ck_assert_int_eq(loomi_storage_stat(ins, "x", &st), 0);
	ck_assert_int_eq(loomi_storage_put_if(ins, "x", p, 600, st.etag, NULL), 0);
	sc_put(ins, "y", p, 424);
	ck_assert_int_eq(loomi_storage_put(ins, "y", p, 425), LOOM_ERANGE);
	sc_assert_blob(ins, "y", p, 424);
	/* Shrinking and growing again keeps the count right. */
	sc_put(ins, "x", p, 1);
	sc_put(ins, "y", p, 600);
	sc_put(ins, "x", p, 424);
	ck_assert_int_eq(loomi_storage_put(ins, "x", p, 425), LOOM_ERANGE);
	ck_assert_uint_eq(size_of("x"), 424);
	ck_assert_uint_eq(size_of("y"), 600);
	free(p);
}
END_TEST

START_TEST(quota_writer)
{
	unsigned char *p = sc_pattern(1024, 23);
	void *w, *w2;

	/* A stream that outgrows the cap fails, and its abort frees what it
	 * held. */
	w = open_writer("s");
	ck_assert_int_eq(ops->write(ins->ctx, w, p, 512), 0);
	ck_assert_int_eq(ops->write(ins->ctx, w, p + 512, 512), 0);
	ck_assert_int_eq(ops->write(ins->ctx, w, p, 1), LOOM_ERANGE);
	ops->write_abort(ins->ctx, w);
	sc_assert_absent(ins, "s");
	sc_put(ins, "t", p, 1024);
	ck_assert_int_eq(loomi_storage_remove(ins, "t"), 0);

	/* One within the cap commits. */
	w = open_writer("s");
	ck_assert_int_eq(ops->write(ins->ctx, w, p, 600), 0);
	ck_assert_int_eq(ops->write_commit(ins->ctx, w), 0);
	sc_assert_blob(ins, "s", p, 600);

	/* Stored blobs count against a stream. */
	w = open_writer("u");
	ck_assert_int_eq(ops->write(ins->ctx, w, p, 425), LOOM_ERANGE);
	ops->write_abort(ins->ctx, w);
	sc_assert_absent(ins, "u");
	sc_assert_blob(ins, "s", p, 600);
	ck_assert_int_eq(loomi_storage_remove(ins, "s"), 0);

	/* Open streams count against each other. */
	w = open_writer("v");
	w2 = open_writer("w");
	ck_assert_int_eq(ops->write(ins->ctx, w, p, 600), 0);
	ck_assert_int_eq(ops->write(ins->ctx, w2, p, 600), LOOM_ERANGE);
	ops->write_abort(ins->ctx, w2);
	/* An open stream holds its room: a put that would need it is refused,
	 * and the stream's commit then succeeds. */
	ck_assert_int_eq(loomi_storage_put(ins, "fill", p, 425), LOOM_ERANGE);
	sc_assert_absent(ins, "fill");
	ck_assert_int_eq(ops->write_commit(ins->ctx, w), 0);
	sc_assert_blob(ins, "v", p, 600);
	sc_assert_absent(ins, "w");
	/* Nothing is left pending: the whole room is usable again. */
	ck_assert_int_eq(loomi_storage_remove(ins, "v"), 0);
	sc_put(ins, "all", p, 1024);
	free(p);
}
END_TEST

START_TEST(new_instance_starts_empty)
{
	char *keys;

	sc_put_str(ins, "a", "1");
	sc_put_str(ins, "b/c", "2");
	sc_store_close(&store);
	sc_store_start(&store, MODULE, CAPPED, tmp);
	ins = store.ins;
	ops = store.ops;
	keys = sc_list_keys(ins, "");
	ck_assert_str_eq(keys, "");
	free(keys);
	sc_assert_absent(ins, "a");
	sc_assert_absent(ins, "b/c");
	/* And the whole cap is free. */
	{
		unsigned char *p = sc_pattern(1024, 24);
		sc_put(ins, "a", p, 1024);
		free(p);
	}
}
END_TEST

START_TEST(instances_are_separate)
{
	/* Two instances of the module in one registry share nothing. */
	static const char text[] =
		"plugins = ( { instance = \"m1\"; module = \"storage-memory\"; },\n"
		"            { instance = \"m2\"; module = \"storage-memory\";\n"
		"              config = { max_bytes = 10; }; } );\n";
	const char *dirs[1] = {tu_env("LOOM_TEST_PLUGINS")};
	loomi_plugins reg;
	loomi_doc doc;
	loomi_strv errs = {0};
	loom_instance *m[2];
	char *err = NULL, *keys;
	const json_t *list;

	ck_assert_int_eq(loomi_plugins_init(&reg, dirs, 1, tmp), 0);
	ck_assert_int_eq(loomi_doc_load_string(&doc, text, "two.conf", &errs), 0);
	list = json_object_get(doc.root, "plugins");
	for (size_t i = 0; i < 2; i++) {
		const json_t *g = json_array_get(list, i);
		loomi_plugin_conf pc = {
			loomi_strdup(json_string_value(json_object_get(g, "instance"))),
			loomi_strdup(MODULE), json_object_get(g, "config"), g};
		ck_assert_int_eq(loomi_instance_create(&reg, &doc, &pc, &m[i], &errs), 0);
		ck_assert_int_eq(loomi_instance_start(m[i], &err), 0);
		free(pc.instance);
		free(pc.module);
	}
	ck_assert_uint_eq(errs.n, 0);
	sc_put_str(m[0], "k", "in m1, a long value");
	sc_assert_absent(m[1], "k");
	/* Each has its own cap: 10 bytes for m2, the default for m1. */
	ck_assert_int_eq(loomi_storage_put(m[1], "k", "in m2, too long", 15), LOOM_ERANGE);
	sc_put_str(m[1], "k", "in m2");
	sc_assert_str(m[0], "k", "in m1, a long value");
	sc_assert_str(m[1], "k", "in m2");
	ck_assert_int_eq(loomi_storage_remove(m[0], "k"), 0);
	sc_assert_str(m[1], "k", "in m2");
	keys = sc_list_keys(m[0], "");
	ck_assert_str_eq(keys, "");
	free(keys);
	/* Found by reference, as other plugins reach them. */
	{
		loom_instance *found = NULL;
		const char *key = NULL;
		ck_assert_int_eq(loomi_storage_ref(&reg, "m2:k", &found, &key), 0);
		ck_assert_ptr_eq(found, m[1]);
		ck_assert_str_eq(key, "k");
	}
	loomi_plugins_fini(&reg);
	loomi_doc_free(&doc);
	loomi_strv_free(&errs);
}
END_TEST

START_TEST(config_errors)
{
	sc_store st;
	char *err = NULL;

	ck_assert_int_eq(sc_store_open(&st, MODULE, "max_bytes = \"lots\";", tmp, &err),
	                 LOOM_ECONFIG);
	ck_assert_msg(strstr(err, "config.max_bytes") != NULL, "unexpected message: %s", err);
	free(err);
	sc_store_close(&st);
	ck_assert_int_eq(sc_store_open(&st, MODULE, "max_byte = \"1K\";", tmp, &err),
	                 LOOM_ECONFIG);
	ck_assert_msg(strstr(err, "(did you mean max_bytes?)") != NULL, "unexpected message: %s",
	              err);
	free(err);
	sc_store_close(&st);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create(MODULE);
	TCase *tc = tcase_create("memory");

	sc_add_conformance(s, &target);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, capabilities);
	tcase_add_test(tc, quota_put);
	tcase_add_test(tc, quota_counts_replaced_blobs);
	tcase_add_test(tc, quota_writer);
	tcase_add_test(tc, new_instance_starts_empty);
	tcase_add_test(tc, instances_are_separate);
	tcase_add_test(tc, config_errors);
	suite_add_tcase(s, tc);
	return tu_run(s);
}

/* The storage conformance suite (see storage-conformance.h). */
#include "config.h"

#include <inttypes.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/loom.h>

#include "host/core/conf.h"
#include "host/core/plugins.h"
#include "host/core/util.h"
#include "storage-conformance.h"
#include "testutil.h"

/* ------------------------------------------------------------------ stores */

char *
sc_subst_dir(const char *text, const char *dir)
{
	static const char token[] = "@DIR@";
	size_t tl = sizeof token - 1, dl = strlen(dir), n = 0;
	const char *p, *at;
	char *out;

	for (p = text; (at = strstr(p, token)) != NULL; p = at + tl)
		n++;
	out = loomi_xmalloc(strlen(text) + n * dl + 1);
	out[0] = '\0';
	for (p = text; (at = strstr(p, token)) != NULL; p = at + tl) {
		strncat(out, p, (size_t)(at - p));
		strcat(out, dir);
	}
	strcat(out, p);
	return out;
}

int
sc_store_open(sc_store *st, const char *module, const char *config, const char *dir,
              char **err)
{
	const char *plugins = getenv("LOOM_TEST_PLUGINS");
	const char *dirs[1];
	loomi_strv errs = {0};
	loomi_plugin_conf pc;
	const json_t *group;
	char *state, *body, *text;
	int rv;

	memset(st, 0, sizeof *st);
	*err = NULL;
	if (plugins == NULL || *plugins == '\0') {
		*err = loomi_strdup("LOOM_TEST_PLUGINS is not set; run the tests with make check");
		return LOOM_ECONFIG;
	}
	dirs[0] = plugins;
	state = loomi_path_join(dir, "state");
	rv = loomi_plugins_init(&st->reg, dirs, 1, state);
	free(state);
	if (rv != 0) {
		*err = loomi_strfmt("loomi_plugins_init: %s", loom_strerror(rv));
		return rv;
	}
	st->reg_up = true;

	body = sc_subst_dir(config, dir);
	text = loomi_strfmt("plugins = ( { instance = \"s\"; module = \"%s\";\n"
	                    "              config = { %s }; } );\n",
	                    module, body);
	free(body);
	rv = loomi_doc_load_string(&st->doc, text, "test.conf", &errs);
	free(text);
	st->doc_up = true;
	if (rv != 0)
		goto fail;

	group = json_array_get(json_object_get(st->doc.root, "plugins"), 0);
	pc.instance = loomi_strdup("s");
	pc.module = loomi_strdup(module);
	pc.config = json_object_get(group, "config");
	pc.node = group;
	rv = loomi_instance_create(&st->reg, &st->doc, &pc, &st->ins, &errs);
	free(pc.instance);
	free(pc.module);
	if (rv != 0) {
		st->ins = NULL;
		goto fail;
	}
	if ((rv = loomi_instance_start(st->ins, err)) != 0)
		return rv;
	st->ops = st->ins->desc->ops;
	return 0;

fail:
	*err = loomi_strv_join(&errs, "\n");
	loomi_strv_free(&errs);
	return rv;
}

void
sc_store_start(sc_store *st, const char *module, const char *config, const char *dir)
{
	char *err = NULL;
	int rv = sc_store_open(st, module, config, dir, &err);

	ck_assert_msg(rv == 0, "cannot start %s with config { %s }: %s: %s", module, config,
	              loom_errname(rv), err ? err : "(no message)");
	free(err);
	ck_assert_ptr_nonnull(st->ops);
	ck_assert_uint_eq(st->ins->kind, LOOM_KIND_STORAGE);
}

void
sc_store_close(sc_store *st)
{
	if (st->reg_up)
		loomi_plugins_fini(&st->reg);
	if (st->doc_up)
		loomi_doc_free(&st->doc);
	memset(st, 0, sizeof *st);
}

/* ------------------------------------------------------------------ helpers */

unsigned char *
sc_pattern(size_t len, uint64_t seed)
{
	unsigned char *p = loomi_xmalloc(len ? len : 1);
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (unsigned char)(x >> 24);
	}
	return p;
}

void
sc_put(loom_instance *ins, const char *key, const void *data, size_t len)
{
	int rv = loomi_storage_put(ins, key, data, len);
	ck_assert_msg(rv == 0, "put %s (%zu bytes): %s", key, len, loom_errname(rv));
}

void
sc_put_str(loom_instance *ins, const char *key, const char *text)
{
	sc_put(ins, key, text, strlen(text));
}

void
sc_assert_blob(loom_instance *ins, const char *key, const void *data, size_t len)
{
	void *got = NULL;
	size_t n = 12345;
	int rv = loomi_storage_get(ins, key, &got, &n);

	ck_assert_msg(rv == 0, "get %s: %s", key, loom_errname(rv));
	ck_assert_msg(n == len, "get %s: %zu bytes, expected %zu", key, n, len);
	if (len > 0)
		ck_assert_msg(memcmp(got, data, len) == 0, "get %s: the bytes differ", key);
	free(got);
}

void
sc_assert_str(loom_instance *ins, const char *key, const char *text)
{
	void *got = NULL;
	size_t n = 0;
	int rv = loomi_storage_get(ins, key, &got, &n);

	ck_assert_msg(rv == 0, "get %s: %s", key, loom_errname(rv));
	ck_assert_msg(n == strlen(text) && memcmp(got, text, n) == 0,
	              "get %s: \"%.*s\", expected \"%s\"", key, (int)n, (char *)got, text);
	free(got);
}

void
sc_assert_absent(loom_instance *ins, const char *key)
{
	void *got = NULL;
	size_t n = 0;
	loom_blob_stat st;
	char buf[4];

	ck_assert_int_eq(loomi_storage_get(ins, key, &got, &n), LOOM_ENOENT);
	ck_assert_int_eq(loomi_storage_stat(ins, key, &st), LOOM_ENOENT);
	ck_assert_int_eq(loomi_storage_remove(ins, key), LOOM_ENOENT);
	if (LOOM_OPS_HAS((const loom_storage_ops *)ins->desc->ops, read))
		ck_assert_int_eq(loomi_storage_read(ins, key, 0, buf, sizeof buf, &n), LOOM_ENOENT);
}

static int
collect_key(void *arg, const char *key, const loom_blob_stat *st)
{
	loomi_strv_push(arg, loomi_strdup(key));
	return 0;
}

char *
sc_list_keys(loom_instance *ins, const char *prefix)
{
	loomi_strv keys = {0};
	char *joined;
	int rv = loomi_storage_list(ins, prefix, collect_key, &keys);

	ck_assert_msg(rv == 0, "list \"%s\": %s", prefix, loom_errname(rv));
	joined = keys.n ? loomi_strv_join(&keys, " ") : loomi_strdup("");
	loomi_strv_free(&keys);
	return joined;
}

#define ck_assert_list(ins, prefix, expected)                                       \
	do {                                                                        \
		char *got_ = sc_list_keys((ins), (prefix));                         \
		ck_assert_msg(strcmp(got_, (expected)) == 0,                        \
		              "list \"%s\": \"%s\", expected \"%s\"", (prefix), got_, \
		              (expected));                                          \
		free(got_);                                                         \
	} while (0)

/* ------------------------------------------------------------------ fixture */

static const sc_target *target;
static char *tmp;
static sc_store store;
static loom_instance *ins;
static const loom_storage_ops *ops;

static void
setup(void)
{
	tmp = tu_tmpdir();
	sc_store_start(&store, target->module, target->config, tmp);
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

static bool
has_writer(void)
{
	return LOOM_OPS_HAS(ops, write_open) && LOOM_OPS_HAS(ops, write) &&
	       LOOM_OPS_HAS(ops, write_commit) && LOOM_OPS_HAS(ops, write_abort);
}

static void *
writer_open(const char *key)
{
	void *w = NULL;
	int rv = loomi_storage_write_open(ins, key, &w);

	ck_assert_msg(rv == 0, "write_open %s: %s", key, loom_errname(rv));
	ck_assert_ptr_nonnull(w);
	return w;
}

static void
writer_write(void *w, const void *data, size_t len)
{
	int rv = loomi_storage_write(ins, w, data, len);
	ck_assert_msg(rv == 0, "write of %zu bytes: %s", len, loom_errname(rv));
}

/* ------------------------------------------------------------------ basics */

START_TEST(round_trip)
{
	static const unsigned char bin[] = {0, 1, 0, 0, 0xff, 'a', 0, '\n', 0x80, 0x7f, 0};
	const size_t big_len = 3u << 20;
	unsigned char *big = sc_pattern(big_len, 1), all[256];

	for (size_t i = 0; i < sizeof all; i++)
		all[i] = (unsigned char)i;
	sc_put_str(ins, "hello", "hello, world");
	sc_assert_str(ins, "hello", "hello, world");
	sc_put(ins, "bin/with-nul.dat", bin, sizeof bin);
	sc_assert_blob(ins, "bin/with-nul.dat", bin, sizeof bin);
	sc_put(ins, "bin/every-byte", all, sizeof all);
	sc_assert_blob(ins, "bin/every-byte", all, sizeof all);
	sc_put(ins, "empty", "", 0);
	sc_assert_blob(ins, "empty", "", 0);
	/* An empty blob may come from a NULL buffer; a NULL one with a length
	 * is refused by the host. */
	ck_assert_int_eq(loomi_storage_put(ins, "empty-null", NULL, 0), 0);
	sc_assert_blob(ins, "empty-null", "", 0);
	ck_assert_int_eq(loomi_storage_put(ins, "null-data", NULL, 5), LOOM_EINVAL);
	sc_assert_absent(ins, "null-data");
	sc_put(ins, "runs/42/ckpt/model.bin", big, big_len);
	sc_assert_blob(ins, "runs/42/ckpt/model.bin", big, big_len);
	/* Names the key syntax allows that look special to a filesystem. */
	sc_put_str(ins, ".hidden", "h");
	sc_put_str(ins, "..a/a..", "dots");
	sc_put_str(ins, "A-Z_0.9/...", "three dots");
	sc_assert_str(ins, ".hidden", "h");
	sc_assert_str(ins, "..a/a..", "dots");
	sc_assert_str(ins, "A-Z_0.9/...", "three dots");
	/* Earlier blobs are untouched by later ones. */
	sc_assert_str(ins, "hello", "hello, world");
	sc_assert_blob(ins, "bin/with-nul.dat", bin, sizeof bin);
	free(big);
}
END_TEST

START_TEST(longest_key)
{
	/* LOOM_KEY_MAX bytes in segments a filesystem can hold. */
	char key[LOOM_KEY_MAX + 2];
	size_t n = 0;

	while (n < LOOM_KEY_MAX) {
		size_t seg = LOOM_KEY_MAX - n < 100 ? LOOM_KEY_MAX - n : 100;
		if (n > 0) {
			key[n++] = '/';
			if (seg > LOOM_KEY_MAX - n)
				seg = LOOM_KEY_MAX - n;
		}
		memset(key + n, 'a' + (char)(n % 26), seg);
		n += seg;
	}
	key[n] = '\0';
	ck_assert_uint_eq(strlen(key), LOOM_KEY_MAX);
	ck_assert_int_eq(loom_key_check(key), 0);
	sc_put_str(ins, key, "long");
	sc_assert_str(ins, key, "long");
	ck_assert_list(ins, "", key);
	/* One byte more is not a key. */
	key[n] = 'z';
	key[n + 1] = '\0';
	ck_assert_int_eq(loomi_storage_put(ins, key, "x", 1), LOOM_EINVAL);
	ck_assert_int_eq(ops->put(ins->ctx, key, "x", 1), LOOM_EINVAL);
}
END_TEST

START_TEST(overwrite_replaces)
{
	const size_t big_len = 3u << 20;
	unsigned char *big = sc_pattern(big_len, 2);
	loom_blob_stat st;

	sc_put(ins, "k", big, big_len);
	/* A shorter blob leaves no tail of the longer one. */
	sc_put_str(ins, "k", "x");
	sc_assert_str(ins, "k", "x");
	ck_assert_int_eq(loomi_storage_stat(ins, "k", &st), 0);
	ck_assert_uint_eq(st.size, 1);
	sc_put(ins, "k", "", 0);
	sc_assert_blob(ins, "k", "", 0);
	sc_put(ins, "k", big, big_len);
	sc_assert_blob(ins, "k", big, big_len);
	ck_assert_list(ins, "", "k");
	free(big);
}
END_TEST

START_TEST(stat_reports_size_mtime_etag)
{
	loom_blob_stat a, b, c, d, e;
	int64_t before, after;

	before = loomi_wall_ms();
	sc_put_str(ins, "m/k", "12345");
	after = loomi_wall_ms();
	ck_assert_int_eq(loomi_storage_stat(ins, "m/k", &a), 0);
	ck_assert_uint_eq(a.size, 5);
	ck_assert_msg(a.mtime_ms >= before - 2000 && a.mtime_ms <= after + 2000,
	              "mtime %" PRId64 " not within 2 s of the put (%" PRId64 "..%" PRId64 ")",
	              a.mtime_ms, before, after);
	ck_assert_uint_ne(a.etag, 0);

	/* Unchanged blob, unchanged etag. */
	ck_assert_int_eq(loomi_storage_stat(ins, "m/k", &b), 0);
	ck_assert_uint_eq(b.size, a.size);
	ck_assert_uint_eq(b.etag, a.etag);
	ck_assert_int_eq(b.mtime_ms, a.mtime_ms);

	/* Every replacement changes it: other bytes of the same size, then the
	 * first bytes again (an etag must never come back). */
	sc_put_str(ins, "m/k", "abcde");
	ck_assert_int_eq(loomi_storage_stat(ins, "m/k", &c), 0);
	ck_assert_uint_eq(c.size, 5);
	ck_assert_uint_ne(c.etag, 0);
	ck_assert_uint_ne(c.etag, a.etag);
	sc_put_str(ins, "m/k", "12345");
	ck_assert_int_eq(loomi_storage_stat(ins, "m/k", &d), 0);
	ck_assert_uint_ne(d.etag, c.etag);
	ck_assert_uint_ne(d.etag, a.etag);
	sc_put_str(ins, "m/k", "longer now");
	ck_assert_int_eq(loomi_storage_stat(ins, "m/k", &e), 0);
	ck_assert_uint_eq(e.size, 10);
	ck_assert_uint_ne(e.etag, d.etag);
	ck_assert_int_ge(e.mtime_ms, a.mtime_ms);

	sc_put(ins, "m/empty", "", 0);
	ck_assert_int_eq(loomi_storage_stat(ins, "m/empty", &a), 0);
	ck_assert_uint_eq(a.size, 0);
	ck_assert_uint_ne(a.etag, 0);
	/* Two blobs, two etags. */
	ck_assert_uint_ne(a.etag, e.etag);
}
END_TEST

START_TEST(remove_then_absent)
{
	sc_put_str(ins, "gone/soon", "x");
	sc_put_str(ins, "gone/stays", "y");
	ck_assert_int_eq(loomi_storage_remove(ins, "gone/soon"), 0);
	sc_assert_absent(ins, "gone/soon"); /* get, stat, read and a second remove */
	sc_assert_str(ins, "gone/stays", "y");
	ck_assert_list(ins, "gone/", "gone/stays");
	/* Never written at all, at any depth. */
	sc_assert_absent(ins, "never");
	sc_assert_absent(ins, "never/at/all");
	sc_assert_absent(ins, "gone/stays/under");
	/* A removed key can be written again. */
	sc_put_str(ins, "gone/soon", "back");
	sc_assert_str(ins, "gone/soon", "back");
}
END_TEST

/* ------------------------------------------------------------------ list */

static const char *const list_keys[] = {"zeta",   "runs/42/y", "B",        "runs/4",
                                        "runs-b", "runs/5/z",  "runs/42/x", "a.b"};

typedef struct list_check {
	size_t calls, bad_stats;
	int stop_at; /* return 7 at this call (1-based); 0: never */
} list_check;

static int
check_entry(void *arg, const char *key, const loom_blob_stat *st)
{
	list_check *lc = arg;

	/* Every blob holds its own key as content. */
	if (st == NULL || st->size != strlen(key) || st->etag == 0)
		lc->bad_stats++;
	lc->calls++;
	return lc->stop_at != 0 && lc->calls == (size_t)lc->stop_at ? 7 : 0;
}

static void
put_list_keys(void)
{
	for (size_t i = 0; i < sizeof list_keys / sizeof list_keys[0]; i++)
		sc_put_str(ins, list_keys[i], list_keys[i]);
}

START_TEST(list_prefix_and_order)
{
	list_check lc = {0};

	put_list_keys();
	/* Byte order: '-' < '/' < digits < upper < lower. */
	ck_assert_list(ins, "", "B a.b runs-b runs/4 runs/42/x runs/42/y runs/5/z zeta");
	ck_assert_list(ins, "runs", "runs-b runs/4 runs/42/x runs/42/y runs/5/z");
	ck_assert_list(ins, "runs/", "runs/4 runs/42/x runs/42/y runs/5/z");
	/* A prefix is a string prefix, not a directory: "runs/4" matches
	 * "runs/42/x" too. */
	ck_assert_list(ins, "runs/4", "runs/4 runs/42/x runs/42/y");
	ck_assert_list(ins, "runs/42", "runs/42/x runs/42/y");
	ck_assert_list(ins, "runs/42/", "runs/42/x runs/42/y");
	ck_assert_list(ins, "runs/42/x", "runs/42/x");
	ck_assert_list(ins, "runs/5/", "runs/5/z");
	ck_assert_list(ins, "zeta", "zeta");
	ck_assert_list(ins, "z", "zeta");
	ck_assert_list(ins, "b", ""); /* case matters */
	ck_assert_list(ins, "nothing/here/", "");
	ck_assert_list(ins, "runs/42/x/", "");

	/* The stat given to the callback is the blob's. */
	ck_assert_int_eq(loomi_storage_list(ins, "", check_entry, &lc), 0);
	ck_assert_uint_eq(lc.calls, 8);
	ck_assert_uint_eq(lc.bad_stats, 0);

	/* Removed keys leave the listing. */
	ck_assert_int_eq(loomi_storage_remove(ins, "runs/42/x"), 0);
	ck_assert_int_eq(loomi_storage_remove(ins, "runs/42/y"), 0);
	ck_assert_list(ins, "runs/4", "runs/4");
}
END_TEST

START_TEST(list_empty_store)
{
	list_check lc = {0};

	ck_assert_int_eq(loomi_storage_list(ins, "", check_entry, &lc), 0);
	ck_assert_int_eq(ops->list(ins->ctx, "", check_entry, &lc), 0);
	ck_assert_uint_eq(lc.calls, 0);
}
END_TEST

START_TEST(list_stops_on_nonzero)
{
	list_check lc = {0, 0, 2};

	put_list_keys();
	ck_assert_int_eq(loomi_storage_list(ins, "", check_entry, &lc), 7);
	ck_assert_uint_eq(lc.calls, 2);
	lc = (list_check){0, 0, 1};
	ck_assert_int_eq(loomi_storage_list(ins, "runs/", check_entry, &lc), 7);
	ck_assert_uint_eq(lc.calls, 1);
	/* Stopping at the last key still returns the callback's value. */
	lc = (list_check){0, 0, 2};
	ck_assert_int_eq(ops->list(ins->ctx, "runs/42/", check_entry, &lc), 7);
	ck_assert_uint_eq(lc.calls, 2);
	/* Nothing was changed by the interrupted listings. */
	ck_assert_list(ins, "", "B a.b runs-b runs/4 runs/42/x runs/42/y runs/5/z zeta");
}
END_TEST

START_TEST(list_bad_prefix)
{
	static const char *const bad[] = {"/", "/runs", "../", "a//", "a//b", "x y", "a/../",
	                                  "./", "a\\b"};
	list_check lc = {0};

	put_list_keys();
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ck_assert_msg(loomi_storage_list(ins, bad[i], check_entry, &lc) == LOOM_EINVAL,
		              "wrapper list \"%s\" should be LOOM_EINVAL", bad[i]);
		ck_assert_msg(ops->list(ins->ctx, bad[i], check_entry, &lc) == LOOM_EINVAL,
		              "plugin list \"%s\" should be LOOM_EINVAL", bad[i]);
	}
	ck_assert_int_eq(loomi_storage_list(ins, NULL, check_entry, &lc), LOOM_EINVAL);
	ck_assert_int_eq(loomi_storage_list(ins, "", NULL, &lc), LOOM_EINVAL);
	ck_assert_uint_eq(lc.calls, 0);
}
END_TEST

/* ------------------------------------------------------------------ read */

START_TEST(read_ranges)
{
	unsigned char *p = sc_pattern(1000, 7), buf[300];
	size_t n;

	if (!LOOM_OPS_HAS(ops, read)) {
		ck_assert_int_eq(loomi_storage_read(ins, "r", 0, buf, 1, &n), LOOM_ENOTSUP);
		free(p);
		return;
	}
	sc_put(ins, "r", p, 1000);
	n = 9999;
	ck_assert_int_eq(loomi_storage_read(ins, "r", 0, buf, 10, &n), 0);
	ck_assert_uint_eq(n, 10);
	ck_assert_mem_eq(buf, p, 10);
	ck_assert_int_eq(loomi_storage_read(ins, "r", 500, buf, 300, &n), 0);
	ck_assert_uint_eq(n, 300);
	ck_assert_mem_eq(buf, p + 500, 300);
	/* Short only at the end. */
	ck_assert_int_eq(loomi_storage_read(ins, "r", 990, buf, 100, &n), 0);
	ck_assert_uint_eq(n, 10);
	ck_assert_mem_eq(buf, p + 990, 10);
	ck_assert_int_eq(loomi_storage_read(ins, "r", 999, buf, 1, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(buf[0], p[999]);
	/* At or past the end: nothing. */
	n = 9999;
	ck_assert_int_eq(loomi_storage_read(ins, "r", 1000, buf, 10, &n), 0);
	ck_assert_uint_eq(n, 0);
	n = 9999;
	ck_assert_int_eq(loomi_storage_read(ins, "r", 5000, buf, 10, &n), 0);
	ck_assert_uint_eq(n, 0);
	n = 9999;
	ck_assert_int_eq(loomi_storage_read(ins, "r", UINT64_C(1) << 40, buf, 10, &n), 0);
	ck_assert_uint_eq(n, 0);
	n = 9999;
	ck_assert_int_eq(loomi_storage_read(ins, "r", 0, buf, 0, &n), 0);
	ck_assert_uint_eq(n, 0);
	/* The whole blob in one read, through the plugin directly. */
	ck_assert_int_eq(ops->read(ins->ctx, "r", 0, buf, 300, &n), 0);
	ck_assert_uint_eq(n, 300);
	ck_assert_mem_eq(buf, p, 300);
	/* An empty blob. */
	sc_put(ins, "e", "", 0);
	n = 9999;
	ck_assert_int_eq(loomi_storage_read(ins, "e", 0, buf, 10, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(loomi_storage_read(ins, "missing", 0, buf, 10, &n), LOOM_ENOENT);
	free(p);
}
END_TEST

/* ------------------------------------------------------------------ put_if */

START_TEST(put_if_etags)
{
	uint64_t e1 = 0, e2 = 0, e3 = 0;
	loom_blob_stat st;

	if (!LOOM_OPS_HAS(ops, put_if)) {
		ck_assert_int_eq(loomi_storage_put_if(ins, "c", "x", 1, 0, NULL), LOOM_ENOTSUP);
		return;
	}
	/* 0: only when absent. */
	ck_assert_int_eq(loomi_storage_put_if(ins, "c/ref", "v1", 2, 0, &e1), 0);
	ck_assert_uint_ne(e1, 0);
	ck_assert_int_eq(loomi_storage_stat(ins, "c/ref", &st), 0);
	ck_assert_uint_eq(st.etag, e1);
	ck_assert_uint_eq(st.size, 2);
	ck_assert_int_eq(loomi_storage_put_if(ins, "c/ref", "other", 5, 0, NULL), LOOM_ECONFLICT);
	sc_assert_str(ins, "c/ref", "v1");

	/* The current etag: replaced, and the new etag comes back. */
	ck_assert_int_eq(loomi_storage_put_if(ins, "c/ref", "v2", 2, e1, &e2), 0);
	ck_assert_uint_ne(e2, 0);
	ck_assert_uint_ne(e2, e1);
	ck_assert_int_eq(loomi_storage_stat(ins, "c/ref", &st), 0);
	ck_assert_uint_eq(st.etag, e2);
	sc_assert_str(ins, "c/ref", "v2");

	/* A stale etag: refused, value left alone. */
	ck_assert_int_eq(loomi_storage_put_if(ins, "c/ref", "v3", 2, e1, &e3), LOOM_ECONFLICT);
	sc_assert_str(ins, "c/ref", "v2");
	ck_assert_int_eq(loomi_storage_stat(ins, "c/ref", &st), 0);
	ck_assert_uint_eq(st.etag, e2);

	/* A plain put makes every earlier etag stale. */
	sc_put_str(ins, "c/ref", "v4");
	ck_assert_int_eq(loomi_storage_put_if(ins, "c/ref", "v5", 2, e2, NULL), LOOM_ECONFLICT);
	ck_assert_int_eq(loomi_storage_put_if(ins, "c/ref", "v5", 2, e1, NULL), LOOM_ECONFLICT);
	sc_assert_str(ins, "c/ref", "v4");
	ck_assert_int_eq(loomi_storage_stat(ins, "c/ref", &st), 0);
	ck_assert_int_eq(loomi_storage_put_if(ins, "c/ref", "v5", 2, st.etag, NULL), 0);
	sc_assert_str(ins, "c/ref", "v5");

	/* An etag given for an absent key: refused, key stays absent. */
	ck_assert_int_eq(loomi_storage_put_if(ins, "c/none", "x", 1, e2, NULL), LOOM_ECONFLICT);
	sc_assert_absent(ins, "c/none");
	/* A removed blob's etag does not bring it back. */
	ck_assert_int_eq(loomi_storage_stat(ins, "c/ref", &st), 0);
	ck_assert_int_eq(loomi_storage_remove(ins, "c/ref"), 0);
	ck_assert_int_eq(loomi_storage_put_if(ins, "c/ref", "x", 1, st.etag, NULL), LOOM_ECONFLICT);
	sc_assert_absent(ins, "c/ref");
	/* ...but 0 does, and NULL for the etag is fine; binary and empty too. */
	ck_assert_int_eq(loomi_storage_put_if(ins, "c/ref", "\0z", 2, 0, NULL), 0);
	sc_assert_blob(ins, "c/ref", "\0z", 2);
	ck_assert_int_eq(ops->put_if(ins->ctx, "c/empty", "", 0, 0, &e3), 0);
	ck_assert_uint_ne(e3, 0);
	sc_assert_blob(ins, "c/empty", "", 0);
}
END_TEST

/* ------------------------------------------------------------------ writers */

START_TEST(writer_commit)
{
	const size_t mid_len = 1u << 20;
	unsigned char *mid = sc_pattern(mid_len, 3), *want;
	size_t want_len = 6 + mid_len + 5;
	void *w, *w1, *w2;

	if (!has_writer()) {
		ck_assert_msg(ops->write_open == NULL && ops->write == NULL &&
		                  ops->write_commit == NULL && ops->write_abort == NULL,
		              "streaming writes must be offered whole or not at all");
		free(mid);
		return;
	}
	want = loomi_xmalloc(want_len);
	memcpy(want, "hello ", 6);
	memcpy(want + 6, mid, mid_len);
	memcpy(want + 6 + mid_len, "world", 5);

	sc_put_str(ins, "w/k", "old");
	w = writer_open("w/k");
	writer_write(w, "hello ", 6);
	writer_write(w, mid, mid_len);
	writer_write(w, "", 0);
	writer_write(w, "world", 5);
	/* Until commit, readers see the old blob. */
	sc_assert_str(ins, "w/k", "old");
	ck_assert_int_eq(loomi_storage_write_commit(ins, w), 0);
	sc_assert_blob(ins, "w/k", want, want_len);

	/* A new key, nested. */
	w = writer_open("w/new/deep/k");
	writer_write(w, "a", 1);
	writer_write(w, "\0", 1);
	writer_write(w, "b", 1);
	sc_assert_absent(ins, "w/new/deep/k");
	ck_assert_int_eq(loomi_storage_write_commit(ins, w), 0);
	sc_assert_blob(ins, "w/new/deep/k", "a\0b", 3);

	/* No writes at all: an empty blob. */
	w = writer_open("w/empty");
	ck_assert_int_eq(loomi_storage_write_commit(ins, w), 0);
	sc_assert_blob(ins, "w/empty", "", 0);

	/* Two writers on one key: each commit is whole; the last one wins. */
	w1 = writer_open("w/two");
	w2 = writer_open("w/two");
	writer_write(w1, "first", 5);
	writer_write(w2, "second", 6);
	writer_write(w1, "!", 1);
	ck_assert_int_eq(loomi_storage_write_commit(ins, w2), 0);
	sc_assert_str(ins, "w/two", "second");
	ck_assert_int_eq(loomi_storage_write_commit(ins, w1), 0);
	sc_assert_str(ins, "w/two", "first!");
	ck_assert_list(ins, "w/", "w/empty w/k w/new/deep/k w/two");
	free(want);
	free(mid);
}
END_TEST

START_TEST(writer_abort)
{
	unsigned char *p = sc_pattern(100000, 4);
	void *w;

	if (!has_writer()) {
		free(p);
		return;
	}
	/* A new key stays absent. */
	w = writer_open("a/new");
	writer_write(w, p, 100000);
	loomi_storage_write_abort(ins, w);
	sc_assert_absent(ins, "a/new");
	ck_assert_list(ins, "", "");

	/* An old value stays as it was. */
	sc_put_str(ins, "a/old", "old value");
	w = writer_open("a/old");
	writer_write(w, p, 100000);
	loomi_storage_write_abort(ins, w);
	sc_assert_str(ins, "a/old", "old value");

	/* Aborted without a write. */
	w = writer_open("a/nothing");
	loomi_storage_write_abort(ins, w);
	sc_assert_absent(ins, "a/nothing");
	ck_assert_list(ins, "", "a/old");
	free(p);
}
END_TEST

/* ------------------------------------------------------------------ bad keys */

static const char *const bad_keys[] = {
	"", "/abs", "../x", "a/../b", "a//b", "a/", "x y", "a\\b",
	".", "..", "a/.", "./a", "a/./b", "a:b", "a\nb", "\xc3\xa9", "/",
};

START_TEST(bad_keys_refused)
{
	char buf[8], *path = NULL;
	void *data = NULL, *w = NULL;
	size_t n = 0;
	loom_blob_stat st;
	uint64_t etag = 0;

	for (size_t i = 0; i < sizeof bad_keys / sizeof bad_keys[0]; i++) {
		const char *k = bad_keys[i];
#define BAD(call) ck_assert_msg((call) == LOOM_EINVAL, "%s with key \"%s\" should be LOOM_EINVAL", #call, k)
		/* Through the host's wrappers. */
		BAD(loomi_storage_put(ins, k, "x", 1));
		BAD(loomi_storage_get(ins, k, &data, &n));
		BAD(loomi_storage_stat(ins, k, &st));
		BAD(loomi_storage_remove(ins, k));
		BAD(loomi_storage_read(ins, k, 0, buf, sizeof buf, &n));
		BAD(loomi_storage_put_if(ins, k, "x", 1, 0, &etag));
		BAD(loomi_storage_local_path(ins, k, &path));
		BAD(loomi_storage_write_open(ins, k, &w));
		/* The plugin itself refuses them too. */
		BAD(ops->put(ins->ctx, k, "x", 1));
		BAD(ops->get(ins->ctx, k, &data, &n));
		BAD(ops->stat(ins->ctx, k, &st));
		BAD(ops->remove(ins->ctx, k));
		if (ops->read)
			BAD(ops->read(ins->ctx, k, 0, buf, sizeof buf, &n));
		if (ops->put_if) {
			BAD(ops->put_if(ins->ctx, k, "x", 1, 0, &etag));
			BAD(ops->put_if(ins->ctx, k, "x", 1, 1, &etag));
		}
		if (ops->write_open) {
			BAD(ops->write_open(ins->ctx, k, &w));
			ck_assert_ptr_null(w);
		}
		if (ops->local_path)
			BAD(ops->local_path(ins->ctx, k, &path));
#undef BAD
	}
	/* NULL is no key either. */
	ck_assert_int_eq(loomi_storage_put(ins, NULL, "x", 1), LOOM_EINVAL);
	ck_assert_int_eq(loomi_storage_get(ins, NULL, &data, &n), LOOM_EINVAL);
	ck_assert_int_eq(loomi_storage_stat(ins, NULL, &st), LOOM_EINVAL);
	ck_assert_int_eq(loomi_storage_remove(ins, NULL), LOOM_EINVAL);
	ck_assert_int_eq(loomi_storage_read(ins, NULL, 0, buf, sizeof buf, &n), LOOM_EINVAL);
	ck_assert_int_eq(loomi_storage_put_if(ins, NULL, "x", 1, 0, &etag), LOOM_EINVAL);
	ck_assert_int_eq(loomi_storage_local_path(ins, NULL, &path), LOOM_EINVAL);
	ck_assert_int_eq(loomi_storage_write_open(ins, NULL, &w), LOOM_EINVAL);
	ck_assert_ptr_null(data);
	ck_assert_ptr_null(path);
	/* Nothing was written anywhere. */
	ck_assert_list(ins, "", "");
}
END_TEST

/* ------------------------------------------------------------------ concurrency */

#define N_THREADS 8
/* rounds of each race: target->rounds when set (a store over the network
 * takes far longer per operation), else 50 */
#define N_ROUNDS (target->rounds > 0 ? target->rounds : 50)
#define RACE_LEN (64u * 1024u)

typedef struct race {
	loom_instance *ins;
	const loom_storage_ops *ops;
	pthread_mutex_t mtx;
	int writers_left;
	unsigned long gets;
	int errors;
	char why[256];
} race;

typedef struct racer {
	race *r;
	int id;
} racer;

static void
race_fail(race *r, const char *fmt, ...) LOOM_PRINTF(2, 3);

static void
race_fail(race *r, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&r->mtx);
	if (r->errors++ == 0) {
		va_start(ap, fmt);
		vsnprintf(r->why, sizeof r->why, fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&r->mtx);
}

static unsigned char
racer_byte(int id)
{
	return (unsigned char)(0x11 * (id + 1));
}

/* Which writer's buffer data is, or -1 when it is not exactly one. */
static int
whose(const unsigned char *data, size_t len)
{
	int id;

	if (len != RACE_LEN || data[0] % 0x11 != 0 || data[0] == 0 || data[0] > 0x11 * N_THREADS)
		return -1;
	id = data[0] / 0x11 - 1;
	for (size_t i = 1; i < len; i++) {
		if (data[i] != data[0])
			return -1;
	}
	return id;
}

static void
race_get(race *r, const char *key, const char *who)
{
	void *d = NULL;
	size_t n = 0;
	int rv = loomi_storage_get(r->ins, key, &d, &n);

	if (rv != 0)
		race_fail(r, "%s: get %s: %s", who, key, loom_errname(rv));
	else if (whose(d, n) < 0)
		race_fail(r, "%s: get %s gave %zu bytes that are not one writer's whole buffer",
		          who, key, n);
	free(d);
	pthread_mutex_lock(&r->mtx);
	r->gets++;
	pthread_mutex_unlock(&r->mtx);
}

static void *
same_key_writer(void *arg)
{
	racer *me = arg;
	race *r = me->r;
	unsigned char *buf = loomi_xmalloc(RACE_LEN);
	char who[32];

	memset(buf, racer_byte(me->id), RACE_LEN);
	snprintf(who, sizeof who, "writer %d", me->id);
	for (int i = 0; i < N_ROUNDS; i++) {
		int rv;
		/* Every other round through a streaming writer, in pieces. */
		if (i % 2 == 1 && r->ops->write_open) {
			void *w = NULL;
			if ((rv = r->ops->write_open(r->ins->ctx, "race/key", &w)) == 0) {
				for (size_t off = 0; off < RACE_LEN && rv == 0; off += RACE_LEN / 4)
					rv = r->ops->write(r->ins->ctx, w, buf + off, RACE_LEN / 4);
				if (rv == 0)
					rv = r->ops->write_commit(r->ins->ctx, w);
				else
					r->ops->write_abort(r->ins->ctx, w);
			}
		} else {
			rv = loomi_storage_put(r->ins, "race/key", buf, RACE_LEN);
		}
		if (rv != 0)
			race_fail(r, "%s: round %d: %s", who, i, loom_errname(rv));
		race_get(r, "race/key", who);
	}
	pthread_mutex_lock(&r->mtx);
	r->writers_left--;
	pthread_mutex_unlock(&r->mtx);
	free(buf);
	return NULL;
}

static void *
same_key_reader(void *arg)
{
	race *r = arg;
	for (;;) {
		int left;
		pthread_mutex_lock(&r->mtx);
		left = r->writers_left;
		pthread_mutex_unlock(&r->mtx);
		if (left == 0)
			break;
		race_get(r, "race/key", "reader");
	}
	return NULL;
}

static void
race_init(race *r)
{
	memset(r, 0, sizeof *r);
	r->ins = ins;
	r->ops = ops;
	r->writers_left = N_THREADS;
	pthread_mutex_init(&r->mtx, NULL);
}

START_TEST(concurrent_same_key)
{
	pthread_t th[N_THREADS], reader;
	racer rs[N_THREADS];
	race r;
	unsigned char *first = loomi_xmalloc(RACE_LEN);
	void *d = NULL;
	size_t n = 0;

	race_init(&r);
	memset(first, racer_byte(0), RACE_LEN);
	sc_put(ins, "race/key", first, RACE_LEN);
	for (int i = 0; i < N_THREADS; i++) {
		rs[i] = (racer){&r, i};
		ck_assert_int_eq(pthread_create(&th[i], NULL, same_key_writer, &rs[i]), 0);
	}
	ck_assert_int_eq(pthread_create(&reader, NULL, same_key_reader, &r), 0);
	for (int i = 0; i < N_THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_join(reader, NULL);
	pthread_mutex_destroy(&r.mtx);
	ck_assert_msg(r.errors == 0, "%d errors; the first: %s", r.errors, r.why);
	ck_assert_uint_ge(r.gets, N_THREADS * N_ROUNDS);
	ck_assert_int_eq(loomi_storage_get(ins, "race/key", &d, &n), 0);
	ck_assert_int_ge(whose(d, n), 0);
	ck_assert_list(ins, "", "race/key");
	free(d);
	free(first);
}
END_TEST

#define N_DISTINCT 25

static void
distinct_key(char *key, size_t size, int id, int i)
{
	/* Threads share directories, so they race to create them. */
	snprintf(key, size, "d/%d/t%d-%02d", i % 5, id, i);
}

static size_t
distinct_len(int id, int i)
{
	return 1000 + (size_t)(id * N_DISTINCT + i) * 37;
}

static void *
distinct_writer(void *arg)
{
	racer *me = arg;
	race *r = me->r;
	char key[64];

	for (int i = 0; i < N_DISTINCT; i++) {
		size_t len = distinct_len(me->id, i);
		unsigned char *p = sc_pattern(len, (uint64_t)(me->id * 1000 + i));
		int rv;
		distinct_key(key, sizeof key, me->id, i);
		if ((rv = loomi_storage_put(r->ins, key, p, len)) != 0)
			race_fail(r, "put %s: %s", key, loom_errname(rv));
		free(p);
	}
	return NULL;
}

static int
count_key(void *arg, const char *key, const loom_blob_stat *st)
{
	(*(size_t *)arg)++;
	return 0;
}

START_TEST(concurrent_distinct_keys)
{
	pthread_t th[N_THREADS];
	racer rs[N_THREADS];
	race r;
	char key[64];
	size_t count = 0;

	race_init(&r);
	for (int i = 0; i < N_THREADS; i++) {
		rs[i] = (racer){&r, i};
		ck_assert_int_eq(pthread_create(&th[i], NULL, distinct_writer, &rs[i]), 0);
	}
	for (int i = 0; i < N_THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&r.mtx);
	ck_assert_msg(r.errors == 0, "%d errors; the first: %s", r.errors, r.why);
	for (int id = 0; id < N_THREADS; id++) {
		for (int i = 0; i < N_DISTINCT; i++) {
			size_t len = distinct_len(id, i);
			unsigned char *p = sc_pattern(len, (uint64_t)(id * 1000 + i));
			distinct_key(key, sizeof key, id, i);
			sc_assert_blob(ins, key, p, len);
			free(p);
		}
	}
	ck_assert_int_eq(loomi_storage_list(ins, "d/", count_key, &count), 0);
	ck_assert_uint_eq(count, N_THREADS * N_DISTINCT);
}
END_TEST

/* Read the counter with the etag it had, consistently: the etag before and
 * after the get must agree. */
static int
counter_read(loom_instance *s, long *value, uint64_t *etag)
{
	for (;;) {
		loom_blob_stat a, b;
		void *d = NULL;
		size_t n = 0;
		char text[32];
		int rv;

		if ((rv = loomi_storage_stat(s, "cas/counter", &a)) != 0)
			return rv;
		if ((rv = loomi_storage_get(s, "cas/counter", &d, &n)) != 0)
			return rv;
		if ((rv = loomi_storage_stat(s, "cas/counter", &b)) != 0) {
			free(d);
			return rv;
		}
		if (a.etag != b.etag || n >= sizeof text) {
			free(d);
			continue;
		}
		memcpy(text, d, n);
		text[n] = '\0';
		free(d);
		*value = strtol(text, NULL, 10);
		*etag = a.etag;
		return 0;
	}
}

static void *
cas_incrementer(void *arg)
{
	racer *me = arg;
	race *r = me->r;

	for (int i = 0; i < N_ROUNDS; i++) {
		for (;;) {
			long v;
			uint64_t etag, next = 0;
			char text[32];
			int rv, len;

			if ((rv = counter_read(r->ins, &v, &etag)) != 0) {
				race_fail(r, "thread %d: read: %s", me->id, loom_errname(rv));
				return NULL;
			}
			len = snprintf(text, sizeof text, "%ld", v + 1);
			rv = loomi_storage_put_if(r->ins, "cas/counter", text, (size_t)len, etag, &next);
			if (rv == 0) {
				if (next == 0 || next == etag)
					race_fail(r, "thread %d: put_if gave etag %" PRIu64 " after %" PRIu64,
					          me->id, next, etag);
				break;
			}
			if (rv != LOOM_ECONFLICT) {
				race_fail(r, "thread %d: put_if: %s", me->id, loom_errname(rv));
				return NULL;
			}
		}
	}
	return NULL;
}

START_TEST(concurrent_cas_counter)
{
	pthread_t th[N_THREADS];
	racer rs[N_THREADS];
	race r;

	if (!LOOM_OPS_HAS(ops, put_if))
		return;
	race_init(&r);
	ck_assert_int_eq(loomi_storage_put_if(ins, "cas/counter", "0", 1, 0, NULL), 0);
	for (int i = 0; i < N_THREADS; i++) {
		rs[i] = (racer){&r, i};
		ck_assert_int_eq(pthread_create(&th[i], NULL, cas_incrementer, &rs[i]), 0);
	}
	for (int i = 0; i < N_THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&r.mtx);
	ck_assert_msg(r.errors == 0, "%d errors; the first: %s", r.errors, r.why);
	sc_assert_str(ins, "cas/counter", "400");
}
END_TEST

/* Writers putting and removing sibling keys in one directory: a removal
 * that tidies up after itself must never break a neighbour's put. */
static void *
sibling_churn(void *arg)
{
	racer *me = arg;
	race *r = me->r;
	char key[64], val[16];
	int rv;

	snprintf(key, sizeof key, "p/q/r/t%d", me->id);
	snprintf(val, sizeof val, "v%d", me->id);
	for (int i = 0; i < N_ROUNDS; i++) {
		void *d = NULL;
		size_t n = 0;
		if ((rv = loomi_storage_put(r->ins, key, val, strlen(val))) != 0) {
			race_fail(r, "put %s round %d: %s", key, i, loom_errname(rv));
			continue;
		}
		if ((rv = loomi_storage_get(r->ins, key, &d, &n)) != 0 || n != strlen(val) ||
		    memcmp(d, val, n) != 0)
			race_fail(r, "get %s round %d: %s", key, i, loom_errname(rv));
		free(d);
		if ((rv = loomi_storage_remove(r->ins, key)) != 0)
			race_fail(r, "remove %s round %d: %s", key, i, loom_errname(rv));
	}
	if ((rv = loomi_storage_put(r->ins, key, val, strlen(val))) != 0)
		race_fail(r, "final put %s: %s", key, loom_errname(rv));
	return NULL;
}

START_TEST(concurrent_put_remove_siblings)
{
	pthread_t th[N_THREADS];
	racer rs[N_THREADS];
	race r;

	race_init(&r);
	for (int i = 0; i < N_THREADS; i++) {
		rs[i] = (racer){&r, i};
		ck_assert_int_eq(pthread_create(&th[i], NULL, sibling_churn, &rs[i]), 0);
	}
	for (int i = 0; i < N_THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&r.mtx);
	ck_assert_msg(r.errors == 0, "%d errors; the first: %s", r.errors, r.why);
	ck_assert_list(ins, "",
	               "p/q/r/t0 p/q/r/t1 p/q/r/t2 p/q/r/t3 p/q/r/t4 p/q/r/t5 p/q/r/t6 p/q/r/t7");
	sc_assert_str(ins, "p/q/r/t5", "v5");
}
END_TEST

/* Listings running at once each see every key, in order. */
#define N_LISTED 40

static int
check_order(void *arg, const char *key, const loom_blob_stat *st)
{
	char *prev = arg;
	if (strcmp(prev, key) >= 0)
		return -1; /* out of order: list returns it */
	snprintf(prev, 64, "%s", key);
	return 0;
}

static void *
lister(void *arg)
{
	racer *me = arg;
	race *r = me->r;

	for (int i = 0; i < N_ROUNDS; i++) {
		size_t count = 0;
		char prev[64] = "";
		int rv;
		if ((rv = loomi_storage_list(r->ins, "", count_key, &count)) != 0 ||
		    count != N_LISTED)
			race_fail(r, "lister %d: list gave %zu keys (%s), expected %d", me->id, count,
			          loom_errname(rv), N_LISTED);
		if ((rv = loomi_storage_list(r->ins, "l/", check_order, prev)) != 0)
			race_fail(r, "lister %d: list out of order (%d) after \"%s\"", me->id, rv,
			          prev);
	}
	return NULL;
}

START_TEST(concurrent_lists)
{
	pthread_t th[N_THREADS];
	racer rs[N_THREADS];
	race r;
	char key[32];

	for (int i = 0; i < N_LISTED; i++) {
		snprintf(key, sizeof key, "l/%d/k%d", i % 4, i);
		sc_put_str(ins, key, key);
	}
	race_init(&r);
	for (int i = 0; i < N_THREADS; i++) {
		rs[i] = (racer){&r, i};
		ck_assert_int_eq(pthread_create(&th[i], NULL, lister, &rs[i]), 0);
	}
	for (int i = 0; i < N_THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&r.mtx);
	ck_assert_msg(r.errors == 0, "%d errors; the first: %s", r.errors, r.why);
}
END_TEST

/* ------------------------------------------------------------------ the suite */

void
sc_add_conformance(Suite *s, const sc_target *t)
{
	TCase *tc = tcase_create("conformance");

	target = t;
	tcase_add_checked_fixture(tc, setup, teardown);
	/* The 3 MiB blobs and the threads take a while under valgrind. */
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, round_trip);
	tcase_add_test(tc, longest_key);
	tcase_add_test(tc, overwrite_replaces);
	tcase_add_test(tc, stat_reports_size_mtime_etag);
	tcase_add_test(tc, remove_then_absent);
	tcase_add_test(tc, list_prefix_and_order);
	tcase_add_test(tc, list_empty_store);
	tcase_add_test(tc, list_stops_on_nonzero);
	tcase_add_test(tc, list_bad_prefix);
	tcase_add_test(tc, read_ranges);
	tcase_add_test(tc, put_if_etags);
	tcase_add_test(tc, writer_commit);
	tcase_add_test(tc, writer_abort);
	tcase_add_test(tc, bad_keys_refused);
	tcase_add_test(tc, concurrent_same_key);
	tcase_add_test(tc, concurrent_distinct_keys);
	tcase_add_test(tc, concurrent_cas_counter);
	tcase_add_test(tc, concurrent_put_remove_siblings);
	tcase_add_test(tc, concurrent_lists);
	suite_add_tcase(s, tc);
}

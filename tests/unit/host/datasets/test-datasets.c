/* host/datasets: the datasets module without HTTP, on a real state
 * database and a real storage-local instance in a temporary directory:
 * REF resolution (id, prefix, branch, tag, ambiguity), leases on branches
 * (a second writer refused naming the holder; an expired lease is free),
 * a commit whose parent is no longer the head refused, quotas refused
 * with nothing charged, gc keeping every chunk a version or an open
 * upload references, materialize and commit_file. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <loom/loom.h>

#include "host/core/conf.h"
#include "host/core/log.h"
#include "host/core/plugins.h"
#include "host/core/util.h"
#include "host/datasets/datasets-int.h"
#include "host/datasets/datasets.h"
#include "host/server/auth.h"
#include "host/server/store.h"
#include "testutil.h"

#define ASSERT_HAS(text, needle)                                                          \
	ck_assert_msg((text) != NULL && strstr((text), (needle)) != NULL,                     \
	              "expected \"%s\" in:\n%s", (needle), (text) ? (text) : "(null)")

static struct {
	char *tmp;
	loomi_daemon d;
	loomi_doc doc;
	bool plugins_up, doc_up;
} T;

static const loomi_caller alice = {.user_id = 2, .name = "alice", .role = LOOMI_ROLE_USER,
                                   .via = "token"};
static const loomi_caller bob = {.user_id = 3, .name = "bob", .role = LOOMI_ROLE_USER,
                                 .via = "token"};

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
	const char *dirs[1] = {getenv("LOOM_TEST_PLUGINS")};
	char *path, *err = NULL, *state, *text;
	loomi_strv errs = {0};
	loomi_plugin_conf pc = {0};
	loom_instance *ins;
	json_t *group;
	int rv;

	memset(&T, 0, sizeof T);
	ck_assert_ptr_nonnull(dirs[0]);
	T.tmp = tu_tmpdir();
	ck_assert_int_eq(loomi_log_setup(LOOM_LOG_WARN, LOOMI_LOG_TEXT, NULL, &err), 0);
	T.d.conf.state_dir = loomi_strdup(T.tmp);
	/* small chunks, so that a few KB make several */
	T.d.conf.datasets.chunk_min = 1024;
	T.d.conf.datasets.chunk_avg = 2048;
	T.d.conf.datasets.chunk_max = 8192;
	path = loomi_path_join(T.tmp, "loom.db");
	rv = loomi_store_open(&T.d.store, path, &err);
	free(path);
	ck_assert_msg(rv == 0, "cannot open the store: %s", err ? err : "?");

	state = loomi_path_join(T.tmp, "plugins");
	ck_assert_int_eq(loomi_plugins_init(&T.d.plugins, dirs, 1, state), 0);
	free(state);
	T.plugins_up = true;
	text = loomi_strfmt("plugins = ( { instance = \"store\"; module = \"storage-local\";\n"
	                    "  config = { root = \"%s/blobs\"; }; } );\n",
	                    T.tmp);
	ck_assert_int_eq(loomi_doc_load_string(&T.doc, text, "test.conf", &errs), 0);
	free(text);
	T.doc_up = true;
	group = json_array_get(json_object_get(T.doc.root, "plugins"), 0);
	pc.instance = "store";
	pc.module = "storage-local";
	pc.config = json_object_get(group, "config");
	pc.node = group;
	rv = loomi_instance_create(&T.d.plugins, &T.doc, &pc, &ins, &errs);
	ck_assert_msg(rv == 0, "storage-local: %s", errs.n ? errs.v[0] : "?");
	ck_assert_int_eq(loomi_instance_start(ins, &err), 0);
	ck_assert_int_eq(ds_module_init(&T.d, &err), 0);
	ck_assert_int_eq(ds_module_start(&T.d, &err), 0);
}

static void
teardown(void)
{
	ds_module_stop(&T.d);
	if (T.plugins_up)
		loomi_plugins_fini(&T.d.plugins);
	if (T.doc_up)
		loomi_doc_free(&T.doc);
	loomi_store_close(&T.d.store);
	free(T.d.conf.state_dir);
	tu_rmrf(T.tmp);
	free(T.tmp);
}

/* A CSV of n rows "i,x,label" (x changed by delta in rows [from, to)),
 * written under the test's directory. */
static char *
csv(const char *name, int n, int from, int to, double delta)
{
	char *path = loomi_path_join(T.tmp, name);
	FILE *fp = fopen(path, "w");

	ck_assert_ptr_nonnull(fp);
	fprintf(fp, "i,x,label\n");
	for (int i = 0; i < n; i++)
		fprintf(fp, "%d,%.6f,%s\n", i, sin(i * 0.01) + (i >= from && i < to ? delta : 0),
		        i % 3 ? "calm" : "windy");
	fclose(fp);
	return path;
}

static void
commit_ok(const loomi_caller *c, const char *branch, const char *path, char v[65])
{
	char *msg = NULL;
	int rv = loomi_dataset_commit_file(&T.d, c, "w", branch, path, "test", v, &msg);
	ck_assert_msg(rv == 0, "commit %s to %s: %s", path, branch, msg ? msg : "?");
	free(msg);
}

static void
load(ds_row *r)
{
	dserr e = {0};
	ck_assert_int_eq(ds_load(T.d.store.db, "w", r, &e), 0);
}

static int
resolve(const char *ref, char id[65], dserr *e)
{
	ds_row r;
	int rv;
	load(&r);
	rv = ds_resolve(T.d.store.db, &r, ref, id, e);
	ds_row_free(&r);
	return rv;
}

/* ------------------------------------------------------------------ refs */

START_TEST(refs_resolve)
{
	char v1[65], v2[65], id[65], pre[12];
	char *a = csv("a.csv", 2000, 0, 0, 0), *b = csv("b.csv", 2000, 500, 510, 1);
	dserr e = {0};
	ds_row r;
	json_t *out = NULL;

	commit_ok(&alice, "main", a, v1);
	commit_ok(&alice, "main", b, v2);
	ck_assert_str_ne(v1, v2);
	load(&r);
	ck_assert_int_eq(ds_tag_create(&T.d, &alice, &r, "v1", v1, &out, &e), 0);
	json_decref(out);
	ds_row_free(&r);
	/* a full id, a prefix of 8, the branch, the tag */
	ck_assert_int_eq(resolve(v1, id, &e), 0);
	ck_assert_str_eq(id, v1);
	snprintf(pre, sizeof pre, "%.8s", v2);
	ck_assert_int_eq(resolve(pre, id, &e), 0);
	ck_assert_str_eq(id, v2);
	ck_assert_int_eq(resolve("main", id, &e), 0);
	ck_assert_str_eq(id, v2);
	ck_assert_int_eq(resolve("v1", id, &e), 0);
	ck_assert_str_eq(id, v1);
	/* 7 digits are not a prefix; an unknown name is not found */
	snprintf(pre, sizeof pre, "%.7s", v2);
	ck_assert_int_eq(resolve(pre, id, &e), LOOM_ENOENT);
	ck_assert_int_eq(resolve("nope", id, &e), LOOM_ENOENT);
	ASSERT_HAS(e.msg, "no version, branch or tag \"nope\"");
	/* a name both a branch and a tag (made behind the API's back, which
	 * refuses it) is ambiguous */
	exec("INSERT INTO dataset_refs SELECT dataset_id, 'tag', 'main', version, 'x', 0 "
	     "FROM dataset_refs WHERE name = 'v1'");
	ck_assert_int_eq(resolve("main", id, &e), LOOM_ECONFLICT);
	ck_assert_str_eq(e.code, "ambiguous");
	/* the API refuses a tag named like a branch */
	load(&r);
	ck_assert_int_eq(ds_branch_create(&T.d, &alice, &r, "v1", NULL, &out, &e), LOOM_EEXIST);
	ds_row_free(&r);
	dserr_free(&e);
	free(a);
	free(b);
}
END_TEST

/* ------------------------------------------------------------------ locks */

START_TEST(locks_refuse_a_second_writer)
{
	char v1[65], *a = csv("a.csv", 500, 0, 0, 0);
	dserr e = {0};
	json_t *out = NULL;
	ds_row r;

	commit_ok(&alice, "main", a, v1);
	exec("INSERT INTO shares (kind, object, grantee, level, granted_by, created_at) "
	     "VALUES ('dataset', 'w', 'bob', 'write', 'alice', 0)");
	load(&r);
	ck_assert_int_eq(ds_lock(&T.d, &alice, &r, "main", 0, &out, &e), 0);
	ck_assert_str_eq(json_string_value(json_object_get(out, "holder")), "alice");
	json_decref(out);
	out = NULL;
	/* bob: refused, naming alice and until when */
	ck_assert_int_eq(ds_upload_begin(&T.d, &bob, &r, "main", "csv", NULL, &out, &e),
	                 LOOM_EBUSY);
	ck_assert_str_eq(e.code, "locked");
	ASSERT_HAS(e.msg, "branch main of dataset w is locked by alice until 20");
	ck_assert_int_eq(ds_lock(&T.d, &bob, &r, "main", 0, &out, &e), LOOM_EBUSY);
	ck_assert_int_eq(ds_unlock(&T.d, &bob, &r, "main", &e), LOOM_EPERM);
	/* alice's own upload takes her manual lock over; renewing it is hers */
	ck_assert_int_eq(ds_upload_begin(&T.d, &alice, &r, "main", "csv", NULL, &out, &e), 0);
	{
		char up[32];
		snprintf(up, sizeof up, "%s", json_string_value(json_object_get(out, "upload")));
		json_decref(out);
		out = NULL;
		ck_assert_int_eq(ds_upload_abort(&T.d, &alice, &r, up, &e), 0);
	}
	/* an expired lease is free */
	ck_assert_int_eq(ds_lock(&T.d, &alice, &r, "main", 0, &out, &e), 0);
	json_decref(out);
	out = NULL;
	exec("UPDATE dataset_locks SET expires_ms = 1");
	ck_assert_int_eq(ds_lock(&T.d, &bob, &r, "main", 0, &out, &e), 0);
	ck_assert_str_eq(json_string_value(json_object_get(out, "holder")), "bob");
	json_decref(out);
	ck_assert_int_eq(ds_unlock(&T.d, &bob, &r, "main", &e), 0);
	ck_assert_int_eq(ds_unlock(&T.d, &bob, &r, "main", &e), LOOM_ENOENT);
	ds_row_free(&r);
	dserr_free(&e);
	free(a);
}
END_TEST

/* ------------------------------------------------------------------ conflicts */

START_TEST(commit_refused_when_the_head_moved)
{
	char v1[65], v2[65], up[32], *a = csv("a.csv", 800, 0, 0, 0),
	     *b = csv("b.csv", 800, 10, 20, 2), *data = NULL, head[65];
	size_t len;
	dserr e = {0};
	json_t *out = NULL;
	ds_row r;

	commit_ok(&alice, "main", a, v1);
	commit_ok(&alice, "main", b, v2);
	load(&r);
	/* begun on v2, committed claiming v1 as its parent */
	ck_assert_int_eq(ds_upload_begin(&T.d, &alice, &r, "main", "csv", NULL, &out, &e), 0);
	snprintf(up, sizeof up, "%s", json_string_value(json_object_get(out, "upload")));
	json_decref(out);
	ck_assert_int_eq(loomi_read_file(a, &data, &len), 0);
	ck_assert_int_eq(ds_upload_part(&T.d, &alice, &r, up, 1, data, len, &out, &e), LOOM_ESTATE);
	ASSERT_HAS(e.msg, "expects part 0");
	ck_assert_int_eq(ds_upload_part(&T.d, &alice, &r, up, 0, data, len, &out, &e), 0);
	json_decref(out);
	ck_assert_int_eq(ds_upload_commit(&T.d, &alice, &r, up, "m", v1, &out, &e), LOOM_ECONFLICT);
	ck_assert_str_eq(e.code, "conflict");
	ASSERT_HAS(e.msg, "never merged silently");
	ck_assert_int_eq(ds_branch_head(T.d.store.db, r.id, "main", head, &e), 0);
	ck_assert_str_eq(head, v2);
	/* the upload is over, its lock released */
	ck_assert_int_eq(scalar("SELECT count(*) FROM dataset_locks"), 0);
	ck_assert_int_eq(ds_upload_commit(&T.d, &alice, &r, up, "m", NULL, &out, &e), LOOM_ENOENT);
	/* begun with a parent that is not the head: refused at once */
	ck_assert_int_eq(ds_upload_begin(&T.d, &alice, &r, "main", "csv", v1, &out, &e),
	                 LOOM_ECONFLICT);
	ds_row_free(&r);
	dserr_free(&e);
	free(data);
	free(a);
	free(b);
}
END_TEST

/* ------------------------------------------------------------------ quotas */

START_TEST(quota_refuses_and_charges_nothing)
{
	char v1[65], up[32], *a = csv("a.csv", 500, 0, 0, 0), *big = csv("big.csv", 20000, 0, 0, 0);
	char *data = NULL, head[65];
	uint64_t used;
	size_t len;
	dserr e = {0};
	json_t *out = NULL;
	ds_row r;

	commit_ok(&alice, "main", a, v1);
	used = ds_used_bytes(T.d.store.db, "alice");
	ck_assert_uint_gt(used, 0);
	ck_assert_int_eq(ds_quota_set(&T.d, &alice, "alice", (int64_t)used + 3000, &out, &e), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(out, "used_bytes")), (json_int_t)used);
	json_decref(out);
	load(&r);
	ck_assert_int_eq(ds_upload_begin(&T.d, &alice, &r, "main", "csv", NULL, &out, &e), 0);
	snprintf(up, sizeof up, "%s", json_string_value(json_object_get(out, "upload")));
	json_decref(out);
	ck_assert_int_eq(loomi_read_file(big, &data, &len), 0);
	ck_assert_int_eq(ds_upload_part(&T.d, &alice, &r, up, 0, data, len, &out, &e), LOOM_ERANGE);
	ck_assert_str_eq(e.code, "quota_exceeded");
	ASSERT_HAS(e.msg, "user alice would use");
	ASSERT_HAS(e.msg, "loomctl data quota alice BYTES");
	ck_assert_uint_eq(ds_used_bytes(T.d.store.db, "alice"), used);
	ck_assert_int_eq(ds_branch_head(T.d.store.db, r.id, "main", head, &e), 0);
	ck_assert_str_eq(head, v1);
	ck_assert_int_eq(scalar("SELECT count(*) FROM dataset_locks"), 0);
	/* bob is not limited by alice's quota; the default is none */
	ck_assert_int_eq(ds_quota_get(&T.d, "bob", &out, &e), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(out, "max_bytes")), 0);
	json_decref(out);
	ds_row_free(&r);
	dserr_free(&e);
	free(data);
	free(a);
	free(big);
}
END_TEST

/* ------------------------------------------------------------------ chunk writers */

/* A part is answered only once every chunk it stored has its blob and its
 * row: after each acknowledged part, every row names a blob that exists. */
START_TEST(acknowledged_parts_are_stored)
{
	char up[32], *a = csv("a.csv", 30000, 0, 0, 0), *data = NULL, v[65];
	const char *prefix = ds_settings_get()->chunk_prefix;
	size_t len, step, off = 0;
	int64_t part = 0, rows_before, seed_rows;
	char *seed = csv("seed.csv", 10, 0, 0, 0);
	dserr e = {0};
	json_t *out = NULL;
	ds_row r;

	commit_ok(&alice, "main", seed, v);
	seed_rows = rows_before = scalar("SELECT count(*) FROM dataset_chunks");
	load(&r);
	ck_assert_int_eq(ds_upload_begin(&T.d, &alice, &r, "main", "csv", NULL, &out, &e), 0);
	snprintf(up, sizeof up, "%s", json_string_value(json_object_get(out, "upload")));
	json_decref(out);
	ck_assert_int_eq(loomi_read_file(a, &data, &len), 0);
	step = len / 4 + 1;
	for (; off < len; off += step, part++) {
		size_t n = len - off < step ? len - off : step;
		sqlite3_stmt *st;
		int64_t rows;

		ck_assert_int_eq(ds_upload_part(&T.d, &alice, &r, up, part, data + off, n, &out, &e),
		                 0);
		json_decref(out);
		rows = scalar("SELECT count(*) FROM dataset_chunks");
		ck_assert_int_gt(rows, rows_before); /* this part's chunks are recorded */
		rows_before = rows;
		ck_assert_int_eq(sqlite3_prepare_v2(T.d.store.db, "SELECT hash FROM dataset_chunks", -1,
		                                    &st, NULL),
		                 SQLITE_OK);
		while (sqlite3_step(st) == SQLITE_ROW) {
			ds_hash h;
			char key[512], *path;
			struct stat sb;

			ck_assert_int_eq(sqlite3_column_bytes(st, 0), 32);
			memcpy(h.b, sqlite3_column_blob(st, 0), 32);
			ds_chunk_key(prefix, &h, key, sizeof key);
			path = loomi_strfmt("%s/blobs/%s", T.tmp, key);
			ck_assert_msg(stat(path, &sb) == 0 && sb.st_size > 0, "%s: a row without its blob",
			              path);
			free(path);
		}
		sqlite3_finalize(st);
	}
	ck_assert_int_eq(ds_upload_commit(&T.d, &alice, &r, up, "four parts", NULL, &out, &e), 0);
	/* every chunk it stored first was recorded, once */
	ck_assert_int_eq(json_integer_value(json_object_get(out, "new_chunks")),
	                 scalar("SELECT count(*) FROM dataset_chunks") - seed_rows);
	json_decref(out);
	ds_row_free(&r);
	dserr_free(&e);
	free(data);
	free(a);
	free(seed);
}
END_TEST

/* A chunk the storage refuses fails its part with the storage's word; the
 * upload is aborted, nothing of it recorded, its lock released. */
START_TEST(storage_refusal_fails_the_part)
{
	char up[32], *a = csv("a.csv", 3000, 0, 0, 0), *data = NULL, *p;
	size_t len;
	dserr e = {0};
	json_t *out = NULL;
	FILE *fp;
	ds_row r;

	/* a file where the chunks' directory would be: every put is refused */
	p = loomi_strfmt("%s/blobs/datasets", T.tmp);
	ck_assert_int_eq(mkdir(p, 0755), 0);
	free(p);
	p = loomi_strfmt("%s/blobs/datasets/chunks", T.tmp);
	ck_assert_ptr_nonnull(fp = fopen(p, "w"));
	fclose(fp);
	free(p);
	ck_assert_int_eq(ds_create(&T.d, &alice, "w", NULL, NULL, &r, &e), 0);
	ck_assert_int_eq(ds_upload_begin(&T.d, &alice, &r, "main", "csv", NULL, &out, &e), 0);
	snprintf(up, sizeof up, "%s", json_string_value(json_object_get(out, "upload")));
	json_decref(out);
	ck_assert_int_eq(loomi_read_file(a, &data, &len), 0);
	ck_assert_int_ne(ds_upload_part(&T.d, &alice, &r, up, 0, data, len, &out, &e), 0);
	ASSERT_HAS(e.msg, "storage store could not store chunk datasets/chunks/");
	ASSERT_HAS(e.msg, "the upload is aborted");
	ck_assert_int_eq(scalar("SELECT count(*) FROM dataset_chunks"), 0);
	ck_assert_int_eq(scalar("SELECT count(*) FROM dataset_locks"), 0);
	ck_assert_int_eq(ds_upload_part(&T.d, &alice, &r, up, 1, data, len, &out, &e), LOOM_ENOENT);
	ds_row_free(&r);
	dserr_free(&e);
	free(data);
	free(a);
}
END_TEST

/* ------------------------------------------------------------------ gc */

START_TEST(gc_keeps_what_is_referenced)
{
	char v1[65], vx[65], up[32], *a = csv("a.csv", 3000, 0, 0, 0),
	     *x = csv("x.csv", 3000, 1000, 1100, 5), *o = csv("o.csv", 3000, 2000, 2100, 7);
	char *data = NULL, *path = NULL, *want = NULL, *got = NULL;
	size_t len, wlen, glen;
	dserr e = {0};
	json_t *out = NULL, *info = NULL;
	ds_row r;
	long long chunks0;

	commit_ok(&alice, "main", a, v1);
	commit_ok(&alice, "x", x, vx);
	load(&r);
	/* an open upload whose chunks no version references yet */
	ck_assert_int_eq(ds_upload_begin(&T.d, &alice, &r, "open", "csv", NULL, &out, &e), 0);
	snprintf(up, sizeof up, "%s", json_string_value(json_object_get(out, "upload")));
	json_decref(out);
	ck_assert_int_eq(loomi_read_file(o, &data, &len), 0);
	ck_assert_int_eq(ds_upload_part(&T.d, &alice, &r, up, 0, data, len, &out, &e), 0);
	json_decref(out);
	ck_assert_int_eq(ds_branch_delete(&T.d, &alice, &r, "x", &e), 0);
	chunks0 = scalar("SELECT count(*) FROM dataset_chunks");
	ck_assert_int_eq(ds_gc(&T.d, &alice, 0, &out, &e), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(out, "versions_deleted")), 1);
	ck_assert_int_gt(json_integer_value(json_object_get(out, "chunks_deleted")), 0);
	ck_assert_int_eq(scalar("SELECT count(*) FROM dataset_chunks"),
	                 chunks0 - json_integer_value(json_object_get(out, "chunks_deleted")));
	json_decref(out);
	/* the open upload commits: none of its chunks was taken */
	ck_assert_int_eq(ds_upload_commit(&T.d, &alice, &r, up, "after gc", NULL, &out, &e), 0);
	json_decref(out);
	/* v1 and the new version still check out, byte for byte */
	ck_assert_int_eq(loomi_dataset_materialize(&T.d, &alice, "data.path", "dataset:w@main",
	                                           &path, &info, &e.msg), 0);
	ck_assert_int_eq(loomi_read_file(path, &got, &glen), 0);
	ck_assert_int_eq(loomi_read_file(a, &want, &wlen), 0);
	ck_assert_uint_eq(glen, wlen);
	ck_assert_int_eq(memcmp(got, want, wlen), 0);
	ck_assert_str_eq(json_string_value(json_object_get(info, "version")), v1);
	free(path);
	free(got);
	free(want);
	json_decref(info);
	ck_assert_int_eq(loomi_dataset_materialize(&T.d, &alice, "data.path", "dataset:w@open",
	                                           &path, &info, &e.msg), 0);
	ck_assert_int_eq(loomi_read_file(path, &got, &glen), 0);
	ck_assert_uint_eq(glen, len);
	ck_assert_int_eq(memcmp(got, data, len), 0);
	free(path);
	free(got);
	json_decref(info);
	/* a second gc finds nothing more */
	ck_assert_int_eq(ds_gc(&T.d, &alice, 0, &out, &e), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(out, "chunks_deleted")), 0);
	json_decref(out);
	ds_row_free(&r);
	dserr_free(&e);
	free(data);
	free(a);
	free(x);
	free(o);
}
END_TEST

/* ------------------------------------------------------------------ materialize */

START_TEST(materialize_once_and_only_for_readers)
{
	char v1[65], *a = csv("a.csv", 300, 0, 0, 0), *path = NULL, *msg = NULL;
	json_t *info = NULL;
	struct stat s1, s2;

	ck_assert(loomi_dataset_is_ref("dataset:w@v1"));
	ck_assert(!loomi_dataset_is_ref("/data/w.csv"));
	commit_ok(&alice, "main", a, v1);
	ck_assert_int_eq(loomi_dataset_materialize(&T.d, &alice, "data.path", "dataset:w", &path,
	                                           &info, &msg), 0);
	ck_assert_str_eq(json_string_value(json_object_get(info, "ref")), "main");
	ck_assert_int_eq(stat(path, &s1), 0);
	free(path);
	json_decref(info);
	ck_assert_int_eq(loomi_dataset_materialize(&T.d, &alice, "data.path", "dataset:w@main",
	                                           &path, &info, &msg), 0);
	ck_assert_int_eq(stat(path, &s2), 0);
	ck_assert_int_eq(s1.st_ino, s2.st_ino); /* not written again */
	free(path);
	json_decref(info);
	/* bob has no share: as if there were no dataset */
	ck_assert_int_eq(loomi_dataset_materialize(&T.d, &bob, "data.path", "dataset:w", &path,
	                                           &info, &msg), LOOM_ENOENT);
	ASSERT_HAS(msg, "data.path: there is no dataset \"w\"");
	free(msg);
	msg = NULL;
	ck_assert_int_eq(loomi_dataset_materialize(&T.d, &alice, "data.path", "dataset:w@nope",
	                                           &path, &info, &msg), LOOM_ENOENT);
	free(msg);
	msg = NULL;
	ck_assert_int_eq(loomi_dataset_materialize(&T.d, &alice, "data.path", "dataset:../x",
	                                           &path, &info, &msg), LOOM_EINVAL);
	free(msg);
	free(a);
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("datasets");
	TCase *tc = tcase_create("module");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, refs_resolve);
	tcase_add_test(tc, locks_refuse_a_second_writer);
	tcase_add_test(tc, commit_refused_when_the_head_moved);
	tcase_add_test(tc, quota_refuses_and_charges_nothing);
	tcase_add_test(tc, acknowledged_parts_are_stored);
	tcase_add_test(tc, storage_refusal_fails_the_part);
	tcase_add_test(tc, gc_keeps_what_is_referenced);
	tcase_add_test(tc, materialize_once_and_only_for_readers);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tu_run(suite());
}

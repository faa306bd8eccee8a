/* storage-local: the conformance suite, then what only a directory of files
 * promises — durability, local paths, confinement to the root, temporary
 * files that a crash leaves behind, and the errors of a bad root. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <loom/loom.h>

#include "host/core/log.h"
#include "host/core/plugins.h"
#include "host/core/util.h"
#include "storage-conformance.h"
#include "testutil.h"

#define MODULE "storage-local"
#define CONFIG "root = \"@DIR@/root\";"

static const sc_target target = {MODULE, CONFIG};

static char *tmp, *root;
static sc_store store;
static loom_instance *ins;
static const loom_storage_ops *ops;

static void
setup(void)
{
	tmp = tu_tmpdir();
	root = loomi_path_join(tmp, "root");
	sc_store_start(&store, MODULE, CONFIG, tmp);
	ins = store.ins;
	ops = store.ops;
}

static void
teardown(void)
{
	loomi_log_set_hook(NULL, NULL);
	sc_store_close(&store);
	tu_rmrf(tmp);
	free(tmp);
	free(root);
	tmp = root = NULL;
	ins = NULL;
	ops = NULL;
}

/* Restart the fixture's instance on the same root. */
static void
restart(void)
{
	sc_store_close(&store);
	sc_store_start(&store, MODULE, CONFIG, tmp);
	ins = store.ins;
	ops = store.ops;
}

/* The names in a directory, sorted, joined by ' ' ("" when empty; "?" when
 * it cannot be read).  Free it. */
static char *
dir_names(const char *dir)
{
	struct dirent **v;
	loomi_strv names = {0};
	char *joined;
	int n = scandir(dir, &v, NULL, alphasort);

	if (n < 0)
		return loomi_strdup("?");
	for (int i = 0; i < n; i++) {
		if (strcmp(v[i]->d_name, ".") != 0 && strcmp(v[i]->d_name, "..") != 0)
			loomi_strv_push(&names, loomi_strdup(v[i]->d_name));
		free(v[i]);
	}
	free(v);
	joined = names.n ? loomi_strv_join(&names, " ") : loomi_strdup("");
	loomi_strv_free(&names);
	return joined;
}

#define ck_assert_dir(dir, expected)                                                \
	do {                                                                        \
		char *got_ = dir_names(dir);                                        \
		ck_assert_msg(strcmp(got_, (expected)) == 0, "%s holds \"%s\", expected \"%s\"", \
		              (dir), got_, (expected));                             \
		free(got_);                                                         \
	} while (0)

static void
assert_file(const char *path, const void *data, size_t len)
{
	char *got = NULL;
	size_t n = 0;
	int e = loomi_read_file(path, &got, &n);

	ck_assert_msg(e == 0, "cannot read %s: %s", path, strerror(e));
	ck_assert_msg(n == len && memcmp(got, data, len) == 0, "%s does not hold the %zu bytes",
	              path, len);
	free(got);
}

static bool
exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

/* The prefix of the temporary files a process makes, "HOST.PID.", as
 * storage-local names them (HOST with '.' and '/' made '_'). */
static char *
tmp_prefix(pid_t pid)
{
	char host[64] = "";

	if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
		strcpy(host, "localhost");
	for (char *s = host; *s; s++) {
		if (*s == '.' || *s == '/')
			*s = '_';
	}
	return loomi_strfmt("%s.%ld.", host, (long)pid);
}

/* ROOT/.loom-tmp holds the lock and exactly one temporary file of pid,
 * of at least min_size bytes. */
static void
assert_one_tmp_file(pid_t pid, off_t min_size)
{
	char *prefix = tmp_prefix(pid), *tmpd = loomi_path_join(root, ".loom-tmp");
	char *names = dir_names(tmpd), *space = strchr(names, ' '), *path;
	struct stat st;

	/* Two names, sorted: the host name may sort before or after "lock". */
	ck_assert_msg(space != NULL && strchr(space + 1, ' ') == NULL, "%s holds \"%s\", "
	              "expected lock and one file %s*", tmpd, names, prefix);
	*space = '\0';
	{
		const char *a = names, *b = space + 1;
		const char *file = strcmp(a, "lock") == 0 ? b : a, *other = file == a ? b : a;
		ck_assert_msg(strcmp(other, "lock") == 0 && strncmp(file, prefix, strlen(prefix)) == 0,
		              "%s holds \"%s %s\", expected lock and one file %s*", tmpd, a, b,
		              prefix);
		path = loomi_path_join(tmpd, file);
	}
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_ge(st.st_size, min_size);
	free(path);
	free(names);
	free(tmpd);
	free(prefix);
}

/* ------------------------------------------------------------------ basics */

START_TEST(capabilities)
{
	ck_assert_uint_eq(ops->caps, LOOM_STORAGE_DURABLE | LOOM_STORAGE_LOCAL_PATH);
	ck_assert_uint_eq(ins->desc->flags & LOOM_PLUGIN_THREAD_SAFE, LOOM_PLUGIN_THREAD_SAFE);
	ck_assert_str_eq(ins->desc->name, MODULE);
	/* The root and its private directory exist from the start. */
	ck_assert_dir(root, ".loom-tmp");
}
END_TEST

START_TEST(durability)
{
	unsigned char *p = sc_pattern(200000, 11);
	sc_store other;

	sc_put_str(ins, "keep/me", "durable");
	sc_put(ins, "keep/big", p, 200000);
	ck_assert_int_eq(loomi_storage_put_if(ins, "keep/ref", "r1", 2, 0, NULL), 0);
	restart();
	sc_assert_str(ins, "keep/me", "durable");
	sc_assert_blob(ins, "keep/big", p, 200000);
	sc_assert_str(ins, "keep/ref", "r1");

	/* A second instance on the same root (another loomd on the same NFS
	 * export) sees the blobs at once, both ways. */
	sc_store_start(&other, MODULE, CONFIG, tmp);
	sc_assert_str(other.ins, "keep/me", "durable");
	sc_put_str(other.ins, "from/other", "hi");
	sc_assert_str(ins, "from/other", "hi");
	ck_assert_int_eq(loomi_storage_remove(ins, "keep/me"), 0);
	sc_assert_absent(other.ins, "keep/me");
	sc_store_close(&other);

	/* A key is the file ROOT/key. */
	{
		char *path = loomi_path_join(root, "keep/big");
		assert_file(path, p, 200000);
		free(path);
	}
	free(p);
}
END_TEST

START_TEST(local_path_holds_the_blob)
{
	unsigned char *p = sc_pattern(5000, 12);
	char *path = NULL, *want = loomi_path_join(root, "runs/1/model.bin");

	sc_put(ins, "runs/1/model.bin", p, 5000);
	ck_assert_int_eq(loomi_storage_local_path(ins, "runs/1/model.bin", &path), 0);
	ck_assert_str_eq(path, want);
	assert_file(path, p, 5000);
	free(path);
	path = NULL;
	/* Through the plugin directly, and after an overwrite. */
	sc_put_str(ins, "runs/1/model.bin", "v2");
	ck_assert_int_eq(ops->local_path(ins->ctx, "runs/1/model.bin", &path), 0);
	ck_assert_str_eq(path, want);
	assert_file(path, "v2", 2);
	free(path);
	path = NULL;
	/* No path for what is not a blob. */
	ck_assert_int_eq(loomi_storage_local_path(ins, "runs/1/none", &path), LOOM_ENOENT);
	ck_assert_int_eq(loomi_storage_local_path(ins, "runs/1", &path), LOOM_ENOENT);
	ck_assert_int_eq(loomi_storage_local_path(ins, ".loom-tmp/lock", &path), LOOM_EINVAL);
	ck_assert_ptr_null(path);
	free(want);
	free(p);
}
END_TEST

START_TEST(relative_root_under_state_dir)
{
	sc_store st;
	char *path = NULL, *want;

	/* No root: "blobs" under the instance's state directory. */
	sc_store_start(&st, MODULE, "", tmp);
	sc_put_str(st.ins, "k", "default root");
	want = loomi_strfmt("%s/state/plugins/s/blobs/k", tmp);
	ck_assert_int_eq(loomi_storage_local_path(st.ins, "k", &path), 0);
	ck_assert_str_eq(path, want);
	assert_file(want, "default root", 12);
	free(path);
	free(want);
	sc_store_close(&st);

	/* A relative root also resolves there, and parents are created. */
	sc_store_start(&st, MODULE, "root = \"mine/deep\";", tmp);
	sc_put_str(st.ins, "k", "relative");
	want = loomi_strfmt("%s/state/plugins/s/mine/deep/k", tmp);
	assert_file(want, "relative", 8);
	free(want);
	sc_store_close(&st);
}
END_TEST

START_TEST(fsync_off)
{
	sc_store st;
	uint64_t e = 0;
	void *w = NULL;

	sc_store_close(&store);
	sc_store_start(&st, MODULE, "root = \"@DIR@/root\"; fsync = false;", tmp);
	sc_put_str(st.ins, "a/b", "no fsync");
	sc_assert_str(st.ins, "a/b", "no fsync");
	ck_assert_int_eq(loomi_storage_put_if(st.ins, "a/c", "1", 1, 0, &e), 0);
	ck_assert_int_eq(loomi_storage_put_if(st.ins, "a/c", "2", 1, e, &e), 0);
	sc_assert_str(st.ins, "a/c", "2");
	ck_assert_int_eq(st.ops->write_open(st.ins->ctx, "a/d", &w), 0);
	ck_assert_int_eq(st.ops->write(st.ins->ctx, w, "stream", 6), 0);
	ck_assert_int_eq(st.ops->write_commit(st.ins->ctx, w), 0);
	sc_assert_str(st.ins, "a/d", "stream");
	ck_assert_int_eq(loomi_storage_remove(st.ins, "a/b"), 0);
	sc_store_close(&st);
	/* Still there for the next instance (the page cache holds them). */
	sc_store_start(&store, MODULE, CONFIG, tmp);
	ins = store.ins;
	ops = store.ops;
	sc_assert_absent(ins, "a/b");
	sc_assert_str(ins, "a/c", "2");
	sc_assert_str(ins, "a/d", "stream");
	ck_assert_dir(root, ".loom-tmp a");
}
END_TEST

/* ------------------------------------------------------------------ the root */

START_TEST(symlinks_cannot_escape)
{
	char *outside = tu_tmpdir(), *secret, *link, *path = NULL;
	void *data = NULL, *w = NULL;
	size_t n = 0;
	char buf[8];
	loom_blob_stat st;
	struct stat lst;

	secret = tu_write(outside, "secret", "secret");
	/* A directory link: ROOT/evil -> outside. */
	link = loomi_path_join(root, "evil");
	ck_assert_int_eq(symlink(outside, link), 0);
	free(link);
	ck_assert_int_eq(loomi_storage_get(ins, "evil/secret", &data, &n), LOOM_ENOENT);
	ck_assert_int_eq(loomi_storage_stat(ins, "evil/secret", &st), LOOM_ENOENT);
	ck_assert_int_eq(loomi_storage_read(ins, "evil/secret", 0, buf, sizeof buf, &n),
	                 LOOM_ENOENT);
	ck_assert_int_eq(loomi_storage_local_path(ins, "evil/secret", &path), LOOM_ENOENT);
	ck_assert_int_eq(loomi_storage_remove(ins, "evil/secret"), LOOM_ENOENT);
	ck_assert_int_eq(loomi_storage_put(ins, "evil/x", "pwned", 5), LOOM_EEXIST);
	ck_assert_int_eq(loomi_storage_put(ins, "evil/secret", "pwned", 5), LOOM_EEXIST);
	ck_assert_int_eq(loomi_storage_put_if(ins, "evil/y", "pwned", 5, 0, NULL), LOOM_EEXIST);
	ck_assert_int_eq(ops->write_open(ins->ctx, "evil/z", &w), 0);
	ck_assert_int_eq(ops->write(ins->ctx, w, "pwned", 5), 0);
	ck_assert_int_eq(ops->write_commit(ins->ctx, w), LOOM_EEXIST);
	ck_assert_int_eq(loomi_storage_put(ins, "evil/sub/x", "pwned", 5), LOOM_EEXIST);
	ck_assert_ptr_null(data);
	ck_assert_ptr_null(path);
	/* Nothing was created or changed outside, and nothing is listed. */
	ck_assert_dir(outside, "secret");
	assert_file(secret, "secret", 6);
	sc_assert_absent(ins, "evil/x");
	{
		char *keys = sc_list_keys(ins, "");
		ck_assert_str_eq(keys, "");
		free(keys);
	}

	/* A file link: ROOT/leak -> outside/secret is not a blob... */
	link = loomi_path_join(root, "leak");
	ck_assert_int_eq(symlink(secret, link), 0);
	ck_assert_int_eq(loomi_storage_get(ins, "leak", &data, &n), LOOM_ENOENT);
	ck_assert_int_eq(loomi_storage_stat(ins, "leak", &st), LOOM_ENOENT);
	ck_assert_int_eq(loomi_storage_local_path(ins, "leak", &path), LOOM_ENOENT);
	ck_assert_int_eq(loomi_storage_remove(ins, "leak"), LOOM_ENOENT);
	ck_assert_int_eq(lstat(link, &lst), 0);
	ck_assert(S_ISLNK(lst.st_mode));
	/* ...and a put replaces the link itself, never its target. */
	sc_put_str(ins, "leak", "mine");
	sc_assert_str(ins, "leak", "mine");
	ck_assert_int_eq(lstat(link, &lst), 0);
	ck_assert(S_ISREG(lst.st_mode));
	assert_file(secret, "secret", 6);

	/* A link deeper down: ROOT/d/evil -> outside. */
	sc_put_str(ins, "d/ok", "ok");
	free(link);
	link = loomi_path_join(root, "d/evil");
	ck_assert_int_eq(symlink(outside, link), 0);
	ck_assert_int_eq(loomi_storage_get(ins, "d/evil/secret", &data, &n), LOOM_ENOENT);
	ck_assert_int_eq(loomi_storage_put(ins, "d/evil/x", "pwned", 5), LOOM_EEXIST);
	ck_assert_dir(outside, "secret");
	{
		char *keys = sc_list_keys(ins, "");
		ck_assert_str_eq(keys, "d/ok leak");
		free(keys);
	}
	ck_assert_dir(root, ".loom-tmp d evil leak");
	free(link);
	free(secret);
	tu_rmrf(outside);
	free(outside);
}
END_TEST

START_TEST(reserved_tmp_dir)
{
	static const char *const reserved[] = {".loom-tmp", ".loom-tmp/x", ".loom-tmp/lock",
	                                       ".loom-tmp/a/b"};
	char buf[8], *path = NULL, *lock = loomi_path_join(root, ".loom-tmp/lock");
	void *data = NULL, *w = NULL;
	size_t n;
	loom_blob_stat st;

	for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
		const char *k = reserved[i];
		/* Valid keys to the host, so the plugin must refuse them. */
		ck_assert_int_eq(loom_key_check(k), 0);
		ck_assert_int_eq(loomi_storage_put(ins, k, "x", 1), LOOM_EINVAL);
		ck_assert_int_eq(loomi_storage_get(ins, k, &data, &n), LOOM_EINVAL);
		ck_assert_int_eq(loomi_storage_stat(ins, k, &st), LOOM_EINVAL);
		ck_assert_int_eq(loomi_storage_remove(ins, k), LOOM_EINVAL);
		ck_assert_int_eq(loomi_storage_read(ins, k, 0, buf, sizeof buf, &n), LOOM_EINVAL);
		ck_assert_int_eq(loomi_storage_put_if(ins, k, "x", 1, 0, NULL), LOOM_EINVAL);
		ck_assert_int_eq(loomi_storage_local_path(ins, k, &path), LOOM_EINVAL);
		ck_assert_int_eq(ops->put(ins->ctx, k, "x", 1), LOOM_EINVAL);
		ck_assert_int_eq(ops->write_open(ins->ctx, k, &w), LOOM_EINVAL);
	}
	ck_assert_ptr_null(data);
	ck_assert_ptr_null(w);
	/* The lock file survived and is not a blob anyone can list. */
	assert_file(lock, "", 0);
	{
		char *keys = sc_list_keys(ins, ".loom-tmp");
		ck_assert_str_eq(keys, "");
		free(keys);
		keys = sc_list_keys(ins, ".loom-tmp/");
		ck_assert_str_eq(keys, "");
		free(keys);
	}
	ck_assert_dir(root, ".loom-tmp");
	/* Names that only resemble it are ordinary keys. */
	sc_put_str(ins, ".loom-tmpx", "a");
	sc_put_str(ins, ".loom-tm", "b");
	sc_put_str(ins, "x/.loom-tmp", "c");
	sc_put_str(ins, "y/.loom-tmp/z", "d");
	sc_assert_str(ins, ".loom-tmpx", "a");
	sc_assert_str(ins, "x/.loom-tmp", "c");
	{
		char *keys = sc_list_keys(ins, "");
		ck_assert_str_eq(keys, ".loom-tm .loom-tmpx x/.loom-tmp y/.loom-tmp/z");
		free(keys);
	}
	free(lock);
}
END_TEST

START_TEST(key_cannot_extend_blob)
{
	void *w = NULL;
	char *tmpdir = loomi_path_join(root, ".loom-tmp");
	loom_blob_stat st;
	void *data = NULL;
	size_t n;

	sc_put_str(ins, "a", "blob a");
	ck_assert_int_eq(loomi_storage_put(ins, "a/b", "x", 1), LOOM_EEXIST);
	ck_assert_int_eq(loomi_storage_put(ins, "a/b/c", "x", 1), LOOM_EEXIST);
	ck_assert_int_eq(loomi_storage_put_if(ins, "a/b", "x", 1, 0, NULL), LOOM_EEXIST);
	ck_assert_int_eq(ops->write_open(ins->ctx, "a/b", &w), 0);
	ck_assert_int_eq(ops->write(ins->ctx, w, "x", 1), 0);
	ck_assert_int_eq(ops->write_commit(ins->ctx, w), LOOM_EEXIST);
	sc_assert_str(ins, "a", "blob a");
	sc_assert_absent(ins, "a/b");

	/* Nor can a blob take the place of a directory of keys. */
	sc_put_str(ins, "d/e", "e");
	ck_assert_int_eq(loomi_storage_put(ins, "d", "x", 1), LOOM_EEXIST);
	ck_assert_int_eq(loomi_storage_put_if(ins, "d", "x", 1, 0, NULL), LOOM_EEXIST);
	ck_assert_int_eq(loomi_storage_get(ins, "d", &data, &n), LOOM_ENOENT);
	ck_assert_int_eq(loomi_storage_stat(ins, "d", &st), LOOM_ENOENT);
	ck_assert_int_eq(loomi_storage_remove(ins, "d"), LOOM_ENOENT);
	sc_assert_str(ins, "d/e", "e");
	{
		char *keys = sc_list_keys(ins, "");
		ck_assert_str_eq(keys, "a d/e");
		free(keys);
	}
	/* The failed writes left no temporary files. */
	ck_assert_dir(tmpdir, "lock");
	free(tmpdir);
}
END_TEST

START_TEST(remove_prunes_empty_dirs)
{
	char *xy = loomi_path_join(root, "x/y"), *x = loomi_path_join(root, "x");

	sc_put_str(ins, "x/y/z/k", "1");
	sc_put_str(ins, "x/y/z2", "2");
	sc_put_str(ins, "x/other", "3");
	ck_assert_int_eq(loomi_storage_remove(ins, "x/y/z/k"), 0);
	ck_assert_dir(xy, "z2");
	ck_assert_int_eq(loomi_storage_remove(ins, "x/y/z2"), 0);
	ck_assert_dir(x, "other");
	ck_assert_int_eq(loomi_storage_remove(ins, "x/other"), 0);
	ck_assert_dir(root, ".loom-tmp");
	/* A failed remove prunes nothing. */
	sc_put_str(ins, "p/q/r", "r");
	ck_assert_int_eq(loomi_storage_remove(ins, "p/q/none"), LOOM_ENOENT);
	ck_assert_dir(root, ".loom-tmp p");
	sc_assert_str(ins, "p/q/r", "r");
	/* The removed paths can be used again, as blobs or as directories. */
	sc_put_str(ins, "x", "now a blob");
	sc_put_str(ins, "p/q/r2", "r2");
	sc_assert_str(ins, "x", "now a blob");
	free(xy);
	free(x);
}
END_TEST

START_TEST(list_skips_foreign_files)
{
	char *good = loomi_path_join(root, "good"), *bad = loomi_path_join(root, "bad dir");
	char *tmpd = loomi_path_join(root, ".loom-tmp"), *link = loomi_path_join(root, "link");
	char *fifo = loomi_path_join(root, "good/fifo"), *keys;
	void *data = NULL;
	size_t n = 0;
	char one;
	loom_blob_stat st;

	sc_put_str(ins, "good/key", "g");
	/* Files dropped under the root by hand: invalid names are no keys... */
	free(tu_write(root, "bad name", "x"));
	free(tu_write(good, "also bad", "x"));
	free(tu_write(good, "bad\\name", "x"));
	ck_assert_int_eq(mkdir(bad, 0755), 0);
	free(tu_write(bad, "inside", "x"));
	free(tu_write(tmpd, "stray", "x"));
	ck_assert_int_eq(symlink("good/key", link), 0);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	/* ...valid ones are blobs like any other. */
	free(tu_write(good, "by-hand", "hand"));
	keys = sc_list_keys(ins, "");
	ck_assert_str_eq(keys, "good/by-hand good/key");
	free(keys);
	keys = sc_list_keys(ins, "good/");
	ck_assert_str_eq(keys, "good/by-hand good/key");
	free(keys);
	sc_assert_str(ins, "good/by-hand", "hand");
	/* A key naming something that is not a regular file is absent, and
	 * asking for it does not hang (a FIFO blocks an open for reading). */
	ck_assert_int_eq(loomi_storage_get(ins, "good/fifo", &data, &n), LOOM_ENOENT);
	ck_assert_int_eq(loomi_storage_stat(ins, "good/fifo", &st), LOOM_ENOENT);
	ck_assert_int_eq(loomi_storage_read(ins, "good/fifo", 0, &one, 1, &n), LOOM_ENOENT);
	ck_assert_int_eq(loomi_storage_remove(ins, "good/fifo"), LOOM_ENOENT);
	ck_assert_int_eq(loomi_storage_get(ins, "link", &data, &n), LOOM_ENOENT);
	ck_assert_ptr_null(data);
	free(good);
	free(bad);
	free(tmpd);
	free(link);
	free(fifo);
}
END_TEST

START_TEST(writers_leave_no_tmp_files)
{
	char *tmpd = loomi_path_join(root, ".loom-tmp");
	void *w = NULL;

	/* While a writer is open its bytes sit in ROOT/.loom-tmp... */
	ck_assert_int_eq(ops->write_open(ins->ctx, "w", &w), 0);
	ck_assert_int_eq(ops->write(ins->ctx, w, "aborted", 7), 0);
	assert_one_tmp_file(getpid(), 7);
	/* ...and an abort removes them. */
	ops->write_abort(ins->ctx, w);
	ck_assert_dir(tmpd, "lock");
	/* A commit moves them into place. */
	ck_assert_int_eq(ops->write_open(ins->ctx, "w", &w), 0);
	ck_assert_int_eq(ops->write(ins->ctx, w, "committed", 9), 0);
	ck_assert_int_eq(ops->write_commit(ins->ctx, w), 0);
	ck_assert_dir(tmpd, "lock");
	ck_assert_dir(root, ".loom-tmp w");
	/* So do put and put_if, failed or not. */
	sc_put_str(ins, "p", "x");
	ck_assert_int_eq(loomi_storage_put_if(ins, "p", "y", 1, 0, NULL), LOOM_ECONFLICT);
	ck_assert_int_eq(loomi_storage_put_if(ins, "q", "y", 1, 0, NULL), 0);
	ck_assert_dir(tmpd, "lock");
	free(tmpd);
}
END_TEST

/* ------------------------------------------------------------------ crashes */

/* In a fork()ed child: start an instance of its own on the same root and
 * open a writer for key with the first bytes written.  Exits on failure
 * (never returns into Check). */
static void *
child_writer(sc_store *st, const char *key, const void *data, size_t len)
{
	char *err = NULL;
	void *w = NULL;

	if (sc_store_open(st, MODULE, CONFIG, tmp, &err) != 0)
		_exit(2);
	if (st->ops->write_open(st->ins->ctx, key, &w) != 0)
		_exit(3);
	if (st->ops->write(st->ins->ctx, w, data, len) != 0)
		_exit(4);
	return w;
}

static void
assert_killed(pid_t pid)
{
	int status = 0;

	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
	              "the child was not killed by SIGKILL: %s %d",
	              WIFEXITED(status) ? "exit status" : "signal",
	              WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* A new instance on the root removes what the dead child left. */
static void
assert_cleaned_by_restart(const char *key, const char *value)
{
	char *tmpd = loomi_path_join(root, ".loom-tmp");

	restart();
	ck_assert_dir(tmpd, "lock");
	sc_assert_str(ins, key, value);
	free(tmpd);
}

START_TEST(crash_before_commit)
{
	static const char fresh[] = "new checkpoint, never committed";
	int fds[2];
	char c;
	pid_t pid;

	sc_put_str(ins, "ckpt/latest", "old checkpoint");
	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		sc_store st;
		close(fds[0]);
		child_writer(&st, "ckpt/latest", fresh, sizeof fresh - 1);
		/* Between the write and the rename: SIGKILL.  The parent sends
		 * it, so that nothing (not even valgrind) runs in this process
		 * after the signal. */
		if (write(fds[1], "w", 1) != 1)
			_exit(6);
		for (;;)
			pause();
	}
	close(fds[1]);
	ck_assert_msg(read(fds[0], &c, 1) == 1, "the child failed before it wrote");
	close(fds[0]);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	assert_killed(pid);
	/* Readers still see the old blob, whole. */
	sc_assert_str(ins, "ckpt/latest", "old checkpoint");
	assert_one_tmp_file(pid, (off_t)(sizeof fresh - 1));
	/* The next instance on the root removes the dead child's file. */
	assert_cleaned_by_restart("ckpt/latest", "old checkpoint");
	{
		char *keys = sc_list_keys(ins, "");
		ck_assert_str_eq(keys, "ckpt/latest");
		free(keys);
	}
}
END_TEST

START_TEST(killed_mid_stream)
{
	unsigned char *chunk = sc_pattern(65536, 13);
	int fds[2];
	char c;
	pid_t pid;

	sc_put_str(ins, "data/big", "v1");
	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		sc_store st;
		void *w;
		close(fds[0]);
		w = child_writer(&st, "data/big", chunk, 65536);
		if (write(fds[1], "w", 1) != 1)
			_exit(6);
		/* A long streaming write, killed somewhere in the middle. */
		for (int i = 0; i < 10000; i++) {
			if (st.ops->write(st.ins->ctx, w, chunk, 4096) != 0)
				_exit(7);
			usleep(1000);
		}
		_exit(8);
	}
	close(fds[1]);
	ck_assert_msg(read(fds[0], &c, 1) == 1, "the child failed before it started writing");
	close(fds[0]);
	usleep(20000);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	assert_killed(pid);
	sc_assert_str(ins, "data/big", "v1");
	assert_one_tmp_file(pid, 65536);
	assert_cleaned_by_restart("data/big", "v1");
	free(chunk);
}
END_TEST

START_TEST(live_writers_survive_restart)
{
	/* Only the temporary files of dead processes are stale: starting
	 * another instance on the root leaves a live writer's alone. */
	void *w = NULL;
	sc_store other;
	char *tmpd = loomi_path_join(root, ".loom-tmp");

	ck_assert_int_eq(ops->write_open(ins->ctx, "live", &w), 0);
	ck_assert_int_eq(ops->write(ins->ctx, w, "still here", 10), 0);
	sc_store_start(&other, MODULE, CONFIG, tmp);
	assert_one_tmp_file(getpid(), 10);
	sc_store_close(&other);
	ck_assert_int_eq(ops->write_commit(ins->ctx, w), 0);
	sc_assert_str(ins, "live", "still here");
	ck_assert_dir(tmpd, "lock");
	free(tmpd);
}
END_TEST

START_TEST(two_instances_one_root)
{
	/* Two instances on one root in one process (two names for one
	 * directory): their writers must not collide on temporary files. */
	sc_store other;
	void *w1 = NULL, *w2 = NULL;
	char *tmpd = loomi_path_join(root, ".loom-tmp");

	sc_store_start(&other, MODULE, CONFIG, tmp);
	ck_assert_int_eq(ops->write_open(ins->ctx, "one", &w1), 0);
	ck_assert_int_eq(other.ops->write_open(other.ins->ctx, "two", &w2), 0);
	ck_assert_int_eq(ops->write(ins->ctx, w1, "1", 1), 0);
	ck_assert_int_eq(other.ops->write(other.ins->ctx, w2, "22", 2), 0);
	ck_assert_int_eq(ops->write_commit(ins->ctx, w1), 0);
	ck_assert_int_eq(other.ops->write_commit(other.ins->ctx, w2), 0);
	sc_assert_str(ins, "one", "1");
	sc_assert_str(ins, "two", "22");
	sc_assert_str(other.ins, "one", "1");
	sc_store_close(&other);
	ck_assert_dir(tmpd, "lock");
	free(tmpd);
}
END_TEST

/* ------------------------------------------------------------------ bad roots */

/* Start with config and expect LOOM_EPLUGIN_INIT, with the plugin's log
 * line containing each of the given words. */
static void
assert_init_fails(const char *config, const char *logged1, const char *logged2)
{
	sc_store st;
	char *err = NULL;
	int rv;

	tu_log_capture();
	rv = sc_store_open(&st, MODULE, config, tmp, &err);
	ck_assert_msg(rv == LOOM_EPLUGIN_INIT, "start with { %s }: %s (%s), expected "
	              "LOOM_EPLUGIN_INIT", config, loom_errname(rv), err ? err : "");
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err, "plugin \"s\" (storage-local) failed to initialize") != NULL,
	              "unexpected message: %s", err);
	ck_assert_msg(strstr(tu_log_text(), "storage:s") != NULL &&
	                  strstr(tu_log_text(), logged1) != NULL &&
	                  strstr(tu_log_text(), logged2) != NULL,
	              "the log does not say \"%s\" and \"%s\": %s", logged1, logged2,
	              tu_log_text());
	/* The instance that failed to start serves nothing, and says why. */
	ck_assert_int_eq(loomi_storage_put(st.ins, "k", "x", 1), LOOM_ESTATE);
	free(err);
	sc_store_close(&st);
}

START_TEST(init_root_is_a_file)
{
	char *file = tu_write(tmp, "file", "not a directory");

	assert_init_fails("root = \"@DIR@/file\";", file, "Not a directory");
	/* The file is left as it was. */
	assert_file(file, "not a directory", 15);
	free(file);
}
END_TEST

START_TEST(init_missing_root_without_create)
{
	char *missing = loomi_path_join(tmp, "missing");

	assert_init_fails("root = \"@DIR@/missing/deeper\"; create = false;", "missing/deeper",
	                  "create = true");
	ck_assert(!exists(missing));
	free(missing);
}
END_TEST

START_TEST(init_creates_missing_root)
{
	sc_store st;
	char *deep = loomi_path_join(tmp, "a/b/c");

	sc_store_start(&st, MODULE, "root = \"@DIR@/a/b/c\";", tmp);
	ck_assert_dir(deep, ".loom-tmp");
	sc_put_str(st.ins, "k", "v");
	sc_store_close(&st);
	ck_assert_dir(deep, ".loom-tmp k");
	/* create = false is fine when the root exists. */
	sc_store_start(&st, MODULE, "root = \"@DIR@/a/b/c\"; create = false;", tmp);
	sc_assert_str(st.ins, "k", "v");
	sc_store_close(&st);
	free(deep);
}
END_TEST

START_TEST(init_unwritable_root)
{
	sc_store st;
	char *ro, *err = NULL;
	int rv;

	if (geteuid() == 0)
		return; /* root writes anywhere: nothing to prove here */
	ro = loomi_path_join(tmp, "ro");
	ck_assert_int_eq(mkdir(ro, 0555), 0);
	rv = sc_store_open(&st, MODULE, "root = \"@DIR@/ro\";", tmp, &err);
	chmod(ro, 0755);
	ck_assert_msg(rv == LOOM_EPLUGIN_INIT, "start on a read-only root: %s", loom_errname(rv));
	free(err);
	sc_store_close(&st);
	free(ro);
}
END_TEST

START_TEST(config_errors)
{
	sc_store st;
	char *err = NULL;

	ck_assert_int_eq(sc_store_open(&st, MODULE, "rooot = \"@DIR@/x\";", tmp, &err),
	                 LOOM_ECONFIG);
	ck_assert_msg(strstr(err, "plugin \"s\" (storage-local): config.rooot: unknown setting "
	                          "(did you mean root?)") != NULL,
	              "unexpected message: %s", err);
	free(err);
	sc_store_close(&st);
	ck_assert_int_eq(sc_store_open(&st, MODULE, "fsync = \"yes\";", tmp, &err), LOOM_ECONFIG);
	ck_assert_msg(strstr(err, "config.fsync") != NULL, "unexpected message: %s", err);
	free(err);
	sc_store_close(&st);
	ck_assert_int_eq(sc_store_open(&st, MODULE, "root = \"\";", tmp, &err), LOOM_EPLUGIN_INIT);
	free(err);
	sc_store_close(&st);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create(MODULE);
	TCase *tc = tcase_create("local");

	sc_add_conformance(s, &target);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, capabilities);
	tcase_add_test(tc, durability);
	tcase_add_test(tc, local_path_holds_the_blob);
	tcase_add_test(tc, relative_root_under_state_dir);
	tcase_add_test(tc, fsync_off);
	tcase_add_test(tc, symlinks_cannot_escape);
	tcase_add_test(tc, reserved_tmp_dir);
	tcase_add_test(tc, key_cannot_extend_blob);
	tcase_add_test(tc, remove_prunes_empty_dirs);
	tcase_add_test(tc, list_skips_foreign_files);
	tcase_add_test(tc, writers_leave_no_tmp_files);
	tcase_add_test(tc, crash_before_commit);
	tcase_add_test(tc, killed_mid_stream);
	tcase_add_test(tc, live_writers_survive_restart);
	tcase_add_test(tc, two_instances_one_root);
	tcase_add_test(tc, init_root_is_a_file);
	tcase_add_test(tc, init_missing_root_without_create);
	tcase_add_test(tc, init_creates_missing_root);
	tcase_add_test(tc, init_unwritable_root);
	tcase_add_test(tc, config_errors);
	suite_add_tcase(s, tc);
	return tu_run(s);
}

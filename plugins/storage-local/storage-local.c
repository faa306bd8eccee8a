/* storage-local — blobs as files under a root directory (a local disk or an
 * NFS mount shared by several hosts).
 *
 * A key "a/b/c" is the file ROOT/a/b/c.  Every write goes to a temporary
 * file in ROOT/.loom-tmp, is fsynced, and is renamed into place (then the
 * directory is fsynced), so a reader sees the old blob or the new one and a
 * crash never leaves a torn blob.  Paths are resolved one segment at a time
 * with openat(O_NOFOLLOW) from a descriptor of the root, so no key — and no
 * symbolic link planted under the root — can reach outside it.
 *
 * Concurrency: plain writes take a shared lock on ROOT/.loom-tmp/lock while
 * they rename; conditional writes (put_if) and removals (which prune empty
 * directories) take it exclusively.  Locks are taken on a fresh descriptor
 * each time, so they exclude threads of one process as well as processes.
 * Temporary files are named HOST.PID.N; at start-up those left by dead
 * processes of this host are removed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <loom/storage.h>

#define TMP_DIR ".loom-tmp"
#define LOCK_FILE "lock"
#define ETAG_XATTR "user.loom.etag"

typedef struct ctx {
	/* settings */
	const char *root;
	bool create;
	bool sync;
	/* state */
	const loom_host *host;
	loom_instance *ins;
	int root_fd;
	int tmp_fd;
	char host_id[64];
} ctx;

/* Numbers the temporary files HOST.PID.N.  One counter for the process, not
 * one per instance: two instances on the same root (two names for one
 * directory) would otherwise pick the same names and collide. */
static atomic_ulong tmp_counter;

typedef struct writer {
	int fd;
	char tmp[128];
	char *key;
} writer;

static const loom_config_entry config[] = {
	{LOOM_CONFIG_PATH, 0, "root", "blobs", offsetof(ctx, root),
	 "the directory holding the blobs (relative: under the instance's state directory)", 0,
	 0, NULL, {NULL, NULL}},
	{LOOM_CONFIG_BOOL, 0, "create", "true", offsetof(ctx, create),
	 "create the root directory when it does not exist", 0, 0, NULL, {NULL, NULL}},
	{LOOM_CONFIG_BOOL, 0, "fsync", "true", offsetof(ctx, sync),
	 "fsync blobs and directories before a write returns", 0, 0, NULL, {NULL, NULL}},
	LOOM_CONFIG_END,
};

#define LOG(c, level, ...) (c)->host->log((c)->ins, (level), __VA_ARGS__)

static int
errno_to_loom(int e)
{
	switch (e) {
	case ENOENT: return LOOM_ENOENT;
	case EEXIST:
	case ENOTEMPTY: return LOOM_EEXIST;
	case EACCES:
	case EPERM:
	case EROFS: return LOOM_EPERM;
	case ENOMEM: return LOOM_ENOMEM;
	case ENOSPC:
	case EDQUOT:
	case EFBIG: return LOOM_ERANGE;
	case ENOTDIR:
	case EISDIR:
	case ELOOP: return LOOM_EEXIST;
	default: return LOOM_EIO;
	}
}

/* Keys are checked by the host too; checked again here because this is
 * where a bad key would do harm. */
static int
key_ok(const char *key)
{
	if (loom_key_check(key) != 0)
		return 0;
	if (strncmp(key, TMP_DIR, strlen(TMP_DIR)) == 0 &&
	    (key[strlen(TMP_DIR)] == '/' || key[strlen(TMP_DIR)] == '\0'))
		return 0; /* reserved */
	return 1;
}

/* Open the directory holding key's last segment, creating the directories
 * on the way when create is set.  *leaf points into key.  The descriptor
 * returned must be closed. */
static int
walk(ctx *c, const char *key, bool create, int *dirfd, const char **leaf)
{
	char seg[LOOM_KEY_MAX + 1];
	const char *p = key, *slash;
	int cur = dup(c->root_fd);

	if (cur < 0)
		return errno_to_loom(errno);
	while ((slash = strchr(p, '/')) != NULL) {
		int next;
		size_t n = (size_t)(slash - p);
		memcpy(seg, p, n);
		seg[n] = '\0';
		next = openat(cur, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT && create) {
			if (mkdirat(cur, seg, 0755) != 0 && errno != EEXIST) {
				int e = errno;
				close(cur);
				return errno_to_loom(e);
			}
			next = openat(cur, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		if (next < 0) {
			int e = errno;
			close(cur);
			if (e == ENOTDIR || e == ELOOP) {
				if (create)
					LOG(c, LOOM_LOG_WARN,
					    "key %s: \"%.*s\" is a blob or a link, not a directory; a key "
					    "cannot extend another key",
					    key, (int)(slash - key), key);
				return create ? LOOM_EEXIST : LOOM_ENOENT;
			}
			return errno_to_loom(e);
		}
		close(cur);
		cur = next;
		p = slash + 1;
	}
	*dirfd = cur;
	*leaf = p;
	return 0;
}

/* Etags.  Inode and times alone are not enough: a filesystem may hand a
 * replaced blob's inode to the next write within one timestamp tick (ext4
 * with coarse timestamps, NFS), and the etag would repeat.  So every new blob
 * is stamped with a random nonce in an extended attribute; filesystems
 * without user xattrs fall back on inode and times. */
static uint64_t
new_nonce(void)
{
	uint64_t n;
	if (getrandom(&n, sizeof n, 0) != (ssize_t)sizeof n) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		n = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^
		    ((uint64_t)getpid() << 32);
	}
	return n ? n : 1;
}

/* The nonce of dirfd/leaf, 0 when it has none.  The name is resolved
 * through /proc/self/fd so no path outside the root is looked up, and the
 * last component is not followed. */
static uint64_t
nonce_of(int dirfd, const char *leaf)
{
	char path[PATH_MAX];
	uint64_t n = 0;

	if ((size_t)snprintf(path, sizeof path, "/proc/self/fd/%d/%s", dirfd, leaf) >= sizeof path)
		return 0;
	if (lgetxattr(path, ETAG_XATTR, &n, sizeof n) != (ssize_t)sizeof n)
		return 0;
	return n;
}

static uint64_t
etag_of(const struct stat *st, uint64_t nonce)
{
	uint64_t h = 1469598103934665603ull;
	uint64_t v[8] = {(uint64_t)st->st_dev,          (uint64_t)st->st_ino,
	                 (uint64_t)st->st_size,         (uint64_t)st->st_mtim.tv_sec,
	                 (uint64_t)st->st_mtim.tv_nsec, (uint64_t)st->st_ctim.tv_sec,
	                 (uint64_t)st->st_ctim.tv_nsec, nonce};
	for (size_t i = 0; i < 8; i++) {
		for (int b = 0; b < 8; b++) {
			h ^= (v[i] >> (8 * b)) & 0xff;
			h *= 1099511628211ull;
		}
	}
	return h ? h : 1;
}

static void
fill_stat(const struct stat *st, uint64_t nonce, loom_blob_stat *out)
{
	memset(out, 0, sizeof *out);
	out->size = (uint64_t)st->st_size;
	out->mtime_ms = (int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000;
	out->etag = etag_of(st, nonce);
}

/* Take the root lock (shared or exclusive); returns its descriptor. */
static int
lock_root(ctx *c, int how)
{
	int fd = openat(c->tmp_fd, LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	while (flock(fd, how) != 0) {
		if (errno != EINTR) {
			close(fd);
			return -1;
		}
	}
	return fd;
}

static void
unlock_root(int fd)
{
	if (fd >= 0)
		close(fd); /* releases the flock */
}

/* ------------------------------------------------------------------ lifecycle */

static bool
pid_alive(long pid)
{
	return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

/* Remove temporary files this host's dead processes left behind. */
static void
clean_stale(ctx *c)
{
	/* A fresh open rather than dup(): see scan. */
	int fd = openat(c->tmp_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	size_t hl = strlen(c->host_id), removed = 0;

	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		char *end;
		long pid;
		if (strncmp(de->d_name, c->host_id, hl) != 0 || de->d_name[hl] != '.')
			continue;
		pid = strtol(de->d_name + hl + 1, &end, 10);
		if (*end != '.' || pid_alive(pid))
			continue;
		if (unlinkat(c->tmp_fd, de->d_name, 0) == 0)
			removed++;
	}
	closedir(d);
	if (removed)
		LOG(c, LOOM_LOG_INFO, "removed %zu temporary file%s left by interrupted writes",
		    removed, removed == 1 ? "" : "s");
}

static int
local_init(loom_instance *ins, const loom_host *host, void *p)
{
	ctx *c = p;
	struct stat st;
	char *dir;

	c->host = host;
	c->ins = ins;
	c->root_fd = c->tmp_fd = -1;
	if (c->root == NULL || c->root[0] == '\0') {
		LOG(c, LOOM_LOG_ERROR, "root is empty; set it to a directory");
		return LOOM_ECONFIG;
	}
	if (stat(c->root, &st) != 0) {
		if (errno != ENOENT || !c->create) {
			LOG(c, LOOM_LOG_ERROR, "root %s: %s%s", c->root, strerror(errno),
			    errno == ENOENT ? "; create it, or set create = true" : "");
			return LOOM_EIO;
		}
		/* mkdir -p */
		dir = strdup(c->root);
		if (dir == NULL)
			return LOOM_ENOMEM;
		for (char *s = dir + 1;; s++) {
			if (*s == '/' || *s == '\0') {
				char ch = *s;
				*s = '\0';
				if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
					LOG(c, LOOM_LOG_ERROR, "cannot create %s: %s", dir, strerror(errno));
					free(dir);
					return LOOM_EIO;
				}
				*s = ch;
				if (ch == '\0')
					break;
			}
		}
		free(dir);
	}
	c->root_fd = open(c->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->root_fd < 0) {
		LOG(c, LOOM_LOG_ERROR, "root %s: %s", c->root, strerror(errno));
		return LOOM_EIO;
	}
	if ((mkdirat(c->root_fd, TMP_DIR, 0755) != 0 && errno != EEXIST) ||
	    (c->tmp_fd = openat(c->root_fd, TMP_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	                                                 O_CLOEXEC)) < 0) {
		LOG(c, LOOM_LOG_ERROR, "cannot use %s/%s: %s; is the root writable?", c->root,
		    TMP_DIR, strerror(errno));
		close(c->root_fd);
		c->root_fd = -1;
		return LOOM_EIO;
	}
	if (gethostname(c->host_id, sizeof c->host_id - 1) != 0 || c->host_id[0] == '\0')
		strcpy(c->host_id, "localhost");
	for (char *s = c->host_id; *s; s++) {
		if (*s == '.' || *s == '/')
			*s = '_';
	}
	/* Prove the root is writable now rather than at the first put. */
	{
		int fd = openat(c->tmp_fd, LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0) {
			LOG(c, LOOM_LOG_ERROR, "root %s is not writable: %s", c->root,
			    strerror(errno));
			close(c->tmp_fd);
			close(c->root_fd);
			c->tmp_fd = c->root_fd = -1;
			return LOOM_EPERM;
		}
		close(fd);
	}
	clean_stale(c);
	LOG(c, LOOM_LOG_DEBUG, "blobs under %s", c->root);
	return 0;
}

static void
local_fini(void *p)
{
	ctx *c = p;
	if (c->tmp_fd >= 0)
		close(c->tmp_fd);
	if (c->root_fd >= 0)
		close(c->root_fd);
}

/* ------------------------------------------------------------------ writes */

static int
local_write_open(void *p, const char *key, void **out)
{
	ctx *c = p;
	writer *w;

	if (!key_ok(key))
		return LOOM_EINVAL;
	if ((w = calloc(1, sizeof *w)) == NULL || (w->key = strdup(key)) == NULL) {
		free(w);
		return LOOM_ENOMEM;
	}
	snprintf(w->tmp, sizeof w->tmp, "%s.%ld.%lu", c->host_id, (long)getpid(),
	         (unsigned long)atomic_fetch_add(&tmp_counter, 1));
	w->fd = openat(c->tmp_fd, w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (w->fd < 0) {
		int e = errno;
		LOG(c, LOOM_LOG_ERROR, "cannot create a temporary file in %s/%s: %s", c->root,
		    TMP_DIR, strerror(e));
		free(w->key);
		free(w);
		return errno_to_loom(e);
	}
	*out = w;
	return 0;
}

static int
local_write(void *p, void *wp, const void *data, size_t len)
{
	writer *w = wp;
	const char *d = data;

	while (len > 0) {
		ssize_t n = write(w->fd, d, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno_to_loom(errno);
		}
		d += n;
		len -= (size_t)n;
	}
	return 0;
}

static void
writer_free(writer *w)
{
	free(w->key);
	free(w);
}

static void
local_write_abort(void *p, void *wp)
{
	ctx *c = p;
	writer *w = wp;

	if (w->fd >= 0)
		close(w->fd);
	unlinkat(c->tmp_fd, w->tmp, 0);
	writer_free(w);
}

/* Flush the temporary file, then rename it to key under the root lock.
 * With if_etag != UINT64_MAX the blob must currently have that etag (0:
 * be absent).  Always releases the writer. */
static int
commit(ctx *c, writer *w, uint64_t if_etag, uint64_t *etag)
{
	int dirfd = -1, lockfd, rv = 0;
	const char *leaf;
	struct stat st;
	uint64_t nonce = new_nonce();

	if (fsetxattr(w->fd, ETAG_XATTR, &nonce, sizeof nonce, 0) != 0)
		nonce = 0; /* no user xattrs here: etags from inode and times */
	if (c->sync && fsync(w->fd) != 0)
		rv = errno_to_loom(errno);
	if (close(w->fd) != 0 && rv == 0)
		rv = errno_to_loom(errno);
	w->fd = -1;
	if (rv != 0)
		goto out;
	lockfd = lock_root(c, if_etag != UINT64_MAX ? LOCK_EX : LOCK_SH);
	if (lockfd < 0) {
		rv = errno_to_loom(errno);
		goto out;
	}
	if ((rv = walk(c, w->key, true, &dirfd, &leaf)) != 0)
		goto unlock;
	if (if_etag != UINT64_MAX) {
		bool exists = fstatat(dirfd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0;
		if (exists && !S_ISREG(st.st_mode)) {
			rv = LOOM_EEXIST;
			goto unlock;
		}
		if ((if_etag == 0 && exists) ||
		    (if_etag != 0 && (!exists || etag_of(&st, nonce_of(dirfd, leaf)) != if_etag))) {
			rv = LOOM_ECONFLICT;
			goto unlock;
		}
	}
	if (renameat(c->tmp_fd, w->tmp, dirfd, leaf) != 0) {
		int e = errno;
		if (e == EISDIR || e == ENOTEMPTY || e == EEXIST)
			LOG(c, LOOM_LOG_WARN, "put %s: the key names a directory of other keys",
			    w->key);
		rv = errno_to_loom(e);
		goto unlock;
	}
	if (c->sync && fsync(dirfd) != 0)
		rv = errno_to_loom(errno);
	if (etag && fstatat(dirfd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0)
		*etag = etag_of(&st, nonce);
unlock:
	unlock_root(lockfd);
out:
	if (dirfd >= 0)
		close(dirfd);
	if (rv != 0)
		unlinkat(c->tmp_fd, w->tmp, 0);
	writer_free(w);
	return rv;
}

static int
local_write_commit(void *p, void *wp)
{
	return commit(p, wp, UINT64_MAX, NULL);
}

static int
put_common(ctx *c, const char *key, const void *data, size_t len, uint64_t if_etag,
           uint64_t *etag)
{
	void *w;
	int rv;

	if ((rv = local_write_open(c, key, &w)) != 0)
		return rv;
	if ((rv = local_write(c, w, data, len)) != 0) {
		local_write_abort(c, w);
		return rv;
	}
	return commit(c, w, if_etag, etag);
}

static int
local_put(void *p, const char *key, const void *data, size_t len)
{
	return put_common(p, key, data, len, UINT64_MAX, NULL);
}

static int
local_put_if(void *p, const char *key, const void *data, size_t len, uint64_t if_etag,
             uint64_t *etag)
{
	if (if_etag == UINT64_MAX)
		return LOOM_EINVAL;
	return put_common(p, key, data, len, if_etag, etag);
}

/* ------------------------------------------------------------------ reads */

/* Open key's file for reading; regular files only. */
static int
open_blob(ctx *c, const char *key, int *fd, struct stat *st)
{
	const char *leaf;
	int dirfd, rv;

	if (!key_ok(key))
		return LOOM_EINVAL;
	if ((rv = walk(c, key, false, &dirfd, &leaf)) != 0)
		return rv;
	/* O_NONBLOCK: opening a FIFO planted under the root must not block
	 * (it is no blob; fstat below refuses it).  Regular files ignore it. */
	*fd = openat(dirfd, leaf, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	rv = *fd < 0 ? (errno == ELOOP ? LOOM_ENOENT : errno_to_loom(errno)) : 0;
	close(dirfd);
	if (rv != 0)
		return rv;
	if (fstat(*fd, st) != 0 || !S_ISREG(st->st_mode)) {
		close(*fd);
		return LOOM_ENOENT;
	}
	return 0;
}

static int
local_get(void *p, const char *key, void **data, size_t *len)
{
	ctx *c = p;
	struct stat st;
	size_t n = 0, size;
	char *buf;
	int fd, rv;

	if ((rv = open_blob(c, key, &fd, &st)) != 0)
		return rv;
	size = (size_t)st.st_size;
	if ((buf = c->host->alloc(size ? size : 1)) == NULL) {
		close(fd);
		return LOOM_ENOMEM;
	}
	while (n < size) {
		ssize_t r = read(fd, buf + n, size - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rv = r < 0 ? errno_to_loom(errno) : LOOM_EIO;
			break;
		}
		n += (size_t)r;
	}
	close(fd);
	if (rv != 0) {
		c->host->free(buf);
		return rv;
	}
	*data = buf;
	*len = size;
	return 0;
}

static int
local_read(void *p, const char *key, uint64_t offset, void *buf, size_t len, size_t *nread)
{
	ctx *c = p;
	struct stat st;
	size_t n = 0;
	int fd, rv;

	if ((rv = open_blob(c, key, &fd, &st)) != 0)
		return rv;
	while (n < len) {
		ssize_t r = pread(fd, (char *)buf + n, len - n, (off_t)(offset + n));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rv = errno_to_loom(errno);
			break;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	*nread = n;
	return rv;
}

static int
local_stat(void *p, const char *key, loom_blob_stat *out)
{
	ctx *c = p;
	const char *leaf;
	struct stat st;
	int dirfd, rv;

	if (!key_ok(key))
		return LOOM_EINVAL;
	if ((rv = walk(c, key, false, &dirfd, &leaf)) != 0)
		return rv;
	rv = fstatat(dirfd, leaf, &st, AT_SYMLINK_NOFOLLOW) != 0 ? errno_to_loom(errno)
	     : !S_ISREG(st.st_mode)                              ? LOOM_ENOENT
	                                                         : 0;
	if (rv == 0)
		fill_stat(&st, nonce_of(dirfd, leaf), out);
	close(dirfd);
	return rv;
}

static int
local_path(void *p, const char *key, char **path)
{
	ctx *c = p;
	loom_blob_stat st;
	size_t n;
	int rv;

	if ((rv = local_stat(c, key, &st)) != 0)
		return rv;
	n = strlen(c->root) + strlen(key) + 2;
	if ((*path = c->host->alloc(n)) == NULL)
		return LOOM_ENOMEM;
	snprintf(*path, n, "%s/%s", c->root, key);
	return 0;
}

/* ------------------------------------------------------------------ remove */

static int
local_remove(void *p, const char *key)
{
	ctx *c = p;
	char *prefix;
	const char *leaf;
	struct stat st;
	int dirfd, lockfd, rv;

	if (!key_ok(key))
		return LOOM_EINVAL;
	if ((lockfd = lock_root(c, LOCK_EX)) < 0)
		return errno_to_loom(errno);
	if ((rv = walk(c, key, false, &dirfd, &leaf)) != 0)
		goto out;
	if (fstatat(dirfd, leaf, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
		rv = LOOM_ENOENT;
	else if (unlinkat(dirfd, leaf, 0) != 0)
		rv = errno_to_loom(errno);
	else if (c->sync)
		fsync(dirfd);
	close(dirfd);
	if (rv != 0)
		goto out;
	/* Prune the directories the key leaves empty. */
	if ((prefix = strdup(key)) != NULL) {
		char *slash;
		while ((slash = strrchr(prefix, '/')) != NULL) {
			*slash = '\0';
			if (walk(c, prefix, false, &dirfd, &leaf) != 0)
				break;
			if (unlinkat(dirfd, leaf, AT_REMOVEDIR) != 0) {
				close(dirfd);
				break;
			}
			close(dirfd);
		}
		free(prefix);
	}
out:
	unlock_root(lockfd);
	return rv;
}

/* ------------------------------------------------------------------ list */

typedef struct entry {
	char *key;
	loom_blob_stat st;
} entry;

typedef struct listing {
	entry *v;
	size_t n, cap;
	int rv;
} listing;

static bool
name_ok(const char *name)
{
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return false;
	for (const char *s = name; *s; s++) {
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
			return false;
	}
	return *name != '\0';
}

/* Could a key under the directory dirkey ("dirkey/...") begin with prefix?
 * Yes when dirkey + "/" and prefix agree over the shorter of the two. */
static bool
dir_may_match(const char *dirkey, size_t dl, const char *prefix, size_t pl)
{
	size_t n = dl + 1 < pl ? dl + 1 : pl;
	for (size_t i = 0; i < n; i++) {
		char ch = i < dl ? dirkey[i] : '/';
		if (ch != prefix[i])
			return false;
	}
	return true;
}

static void
scan(ctx *c, int dirfd, char *key, size_t kl, const char *prefix, size_t pl, listing *out)
{
	/* A fresh open, not dup(): a dup shares the directory offset with
	 * dirfd (the root's descriptor), so a second listing would start at
	 * the end and concurrent ones would steal each other's entries. */
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		out->rv = LOOM_EIO;
		return;
	}
	while (out->rv == 0 && (de = readdir(d)) != NULL) {
		size_t nl = strlen(de->d_name);
		struct stat st;

		if (!name_ok(de->d_name) || kl + nl + 1 > LOOM_KEY_MAX)
			continue;
		if (kl == 0 && strcmp(de->d_name, TMP_DIR) == 0)
			continue;
		if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (kl)
			key[kl] = '/';
		memcpy(key + kl + (kl ? 1 : 0), de->d_name, nl + 1);
		size_t len = kl + (kl ? 1 : 0) + nl;
		if (S_ISDIR(st.st_mode)) {
			if (dir_may_match(key, len, prefix, pl)) {
				int sub = openat(dirfd, de->d_name,
				                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
				if (sub >= 0) {
					scan(c, sub, key, len, prefix, pl, out);
					close(sub);
				}
			}
		} else if (S_ISREG(st.st_mode) && strncmp(key, prefix, pl) == 0) {
			if (out->n == out->cap) {
				size_t cap = out->cap ? out->cap * 2 : 64;
				entry *nv = realloc(out->v, cap * sizeof *nv);
				if (nv == NULL) {
					out->rv = LOOM_ENOMEM;
					break;
				}
				out->v = nv;
				out->cap = cap;
			}
			if ((out->v[out->n].key = strdup(key)) == NULL) {
				out->rv = LOOM_ENOMEM;
				break;
			}
			fill_stat(&st, nonce_of(dirfd, de->d_name), &out->v[out->n].st);
			out->n++;
		}
		key[kl] = '\0';
	}
	closedir(d);
}

static int
entry_cmp(const void *a, const void *b)
{
	return strcmp(((const entry *)a)->key, ((const entry *)b)->key);
}

static int
local_list(void *p, const char *prefix, loom_storage_list_fn fn, void *arg)
{
	ctx *c = p;
	char key[LOOM_KEY_MAX + 2] = "";
	listing out = {0};
	int rv;

	if (loom_key_prefix_check(prefix) != 0)
		return LOOM_EINVAL;
	scan(c, c->root_fd, key, 0, prefix, strlen(prefix), &out);
	if (out.n > 1) /* out.v is NULL when nothing matched; qsort(NULL) is undefined */
		qsort(out.v, out.n, sizeof *out.v, entry_cmp);
	rv = out.rv;
	for (size_t i = 0; i < out.n && rv == 0; i++)
		rv = fn(arg, out.v[i].key, &out.v[i].st);
	for (size_t i = 0; i < out.n; i++)
		free(out.v[i].key);
	free(out.v);
	return rv;
}

static const loom_storage_ops ops = {
	.size = sizeof(loom_storage_ops),
	.caps = LOOM_STORAGE_DURABLE | LOOM_STORAGE_LOCAL_PATH,
	.put = local_put,
	.get = local_get,
	.stat = local_stat,
	.remove = local_remove,
	.list = local_list,
	.read = local_read,
	.put_if = local_put_if,
	.write_open = local_write_open,
	.write = local_write,
	.write_commit = local_write_commit,
	.write_abort = local_write_abort,
	.local_path = local_path,
};

LOOM_PLUGIN_DEFINE(storage_local,
                   .kind = LOOM_KIND_STORAGE,
                   .flags = LOOM_PLUGIN_THREAD_SAFE,
                   .name = "storage-local",
                   .version = "1.0.0",
                   .description = "blobs as files under a directory (local disk or NFS)",
                   .config = config,
                   .ctx_size = sizeof(ctx),
                   .init = local_init,
                   .fini = local_fini,
                   .ops = &ops)

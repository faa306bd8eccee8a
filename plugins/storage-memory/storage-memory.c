/* storage-memory — blobs kept in the daemon's memory, for tests, caches and
 * scratch data that need not survive a restart.
 *
 * Blobs sit in an array sorted by key (so list is ordered and lookups are
 * binary searches) under one mutex.  A total size cap (max_bytes) makes a
 * put that would exceed it fail with LOOM_ERANGE instead of exhausting the
 * daemon's memory. */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <loom/storage.h>

typedef struct blob {
	char *key;
	unsigned char *data;
	size_t len;
	int64_t mtime_ms;
	uint64_t etag;
} blob;

typedef struct writer {
	char *key;
	unsigned char *data;
	size_t len, cap;
} writer;

typedef struct ctx {
	/* settings (filled by the host from the config map) */
	uint64_t max_bytes;
	/* state */
	const loom_host *host;
	loom_instance *ins;
	pthread_mutex_t mtx;
	blob *blobs;
	size_t n, cap;
	uint64_t bytes;      /* sum of blob sizes */
	uint64_t pending;    /* bytes held by open writers */
	uint64_t next_etag;
} ctx;

static const loom_config_entry config[] = {
	{LOOM_CONFIG_SIZE, 0, "max_bytes", "1G", offsetof(ctx, max_bytes),
	 "the most bytes all blobs together may hold", 0, 0, NULL, {NULL, NULL}},
	LOOM_CONFIG_END,
};

/* Index of key, or -(insertion point) - 1. */
static long
find(const ctx *c, const char *key)
{
	size_t lo = 0, hi = c->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int cmp = strcmp(c->blobs[mid].key, key);
		if (cmp == 0)
			return (long)mid;
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -(long)lo - 1;
}

static int
memory_init(loom_instance *ins, const loom_host *host, void *p)
{
	ctx *c = p;
	c->host = host;
	c->ins = ins;
	c->next_etag = 1;
	pthread_mutex_init(&c->mtx, NULL);
	host->log(ins, LOOM_LOG_DEBUG, "in-memory storage, at most %llu bytes",
	          (unsigned long long)c->max_bytes);
	return 0;
}

static void
memory_fini(void *p)
{
	ctx *c = p;
	for (size_t i = 0; i < c->n; i++) {
		free(c->blobs[i].key);
		free(c->blobs[i].data);
	}
	free(c->blobs);
	pthread_mutex_destroy(&c->mtx);
}

/* Store data (taken: freed on failure) under key; mtx held. */
static int
store_locked(ctx *c, const char *key, unsigned char *data, size_t len, uint64_t *etag)
{
	long i = find(c, key);
	uint64_t old = i >= 0 ? c->blobs[i].len : 0;

	if (c->bytes - old + len + c->pending > c->max_bytes) {
		c->host->log(c->ins, LOOM_LOG_WARN,
		             "put %s: %zu bytes would exceed max_bytes (%llu, %llu in use); "
		             "raise max_bytes or remove blobs",
		             key, len, (unsigned long long)c->max_bytes,
		             (unsigned long long)c->bytes);
		free(data);
		return LOOM_ERANGE;
	}
	if (i < 0) {
		size_t at = (size_t)(-i - 1);
		char *k = strdup(key);
		if (k == NULL) {
			free(data);
			return LOOM_ENOMEM;
		}
		if (c->n == c->cap) {
			size_t cap = c->cap ? c->cap * 2 : 16;
			blob *nb = realloc(c->blobs, cap * sizeof *nb);
			if (nb == NULL) {
				free(k);
				free(data);
				return LOOM_ENOMEM;
			}
			c->blobs = nb;
			c->cap = cap;
		}
		memmove(&c->blobs[at + 1], &c->blobs[at], (c->n - at) * sizeof *c->blobs);
		c->n++;
		c->blobs[at].key = k;
		c->blobs[at].data = NULL;
		i = (long)at;
	}
	free(c->blobs[i].data);
	c->blobs[i].data = data;
	c->blobs[i].len = len;
	c->blobs[i].mtime_ms = c->host->clock_wall_ms();
	c->blobs[i].etag = c->next_etag++;
	c->bytes = c->bytes - old + len;
	if (etag)
		*etag = c->blobs[i].etag;
	return 0;
}

static unsigned char *
copy(const void *data, size_t len)
{
	unsigned char *d = malloc(len ? len : 1);
	if (d && len)
		memcpy(d, data, len);
	return d;
}

static int
memory_put(void *p, const char *key, const void *data, size_t len)
{
	ctx *c = p;
	unsigned char *d;
	int rv;

	if (loom_key_check(key) != 0)
		return LOOM_EINVAL;
	if ((d = copy(data, len)) == NULL)
		return LOOM_ENOMEM;
	pthread_mutex_lock(&c->mtx);
	rv = store_locked(c, key, d, len, NULL);
	pthread_mutex_unlock(&c->mtx);
	return rv;
}

static int
memory_put_if(void *p, const char *key, const void *data, size_t len, uint64_t if_etag,
              uint64_t *etag)
{
	ctx *c = p;
	unsigned char *d;
	long i;
	int rv;

	if (loom_key_check(key) != 0)
		return LOOM_EINVAL;
	if ((d = copy(data, len)) == NULL)
		return LOOM_ENOMEM;
	pthread_mutex_lock(&c->mtx);
	i = find(c, key);
	if ((if_etag == 0 && i >= 0) || (if_etag != 0 && (i < 0 || c->blobs[i].etag != if_etag))) {
		pthread_mutex_unlock(&c->mtx);
		free(d);
		return LOOM_ECONFLICT;
	}
	rv = store_locked(c, key, d, len, etag);
	pthread_mutex_unlock(&c->mtx);
	return rv;
}

static int
memory_get(void *p, const char *key, void **data, size_t *len)
{
	ctx *c = p;
	long i;
	void *d;

	if (loom_key_check(key) != 0)
		return LOOM_EINVAL;
	pthread_mutex_lock(&c->mtx);
	if ((i = find(c, key)) < 0) {
		pthread_mutex_unlock(&c->mtx);
		return LOOM_ENOENT;
	}
	d = c->host->alloc(c->blobs[i].len ? c->blobs[i].len : 1);
	if (d == NULL) {
		pthread_mutex_unlock(&c->mtx);
		return LOOM_ENOMEM;
	}
	if (c->blobs[i].len)
		memcpy(d, c->blobs[i].data, c->blobs[i].len);
	*data = d;
	*len = c->blobs[i].len;
	pthread_mutex_unlock(&c->mtx);
	return 0;
}

static int
memory_read(void *p, const char *key, uint64_t offset, void *buf, size_t len, size_t *nread)
{
	ctx *c = p;
	long i;
	size_t n = 0;

	if (loom_key_check(key) != 0)
		return LOOM_EINVAL;
	pthread_mutex_lock(&c->mtx);
	if ((i = find(c, key)) < 0) {
		pthread_mutex_unlock(&c->mtx);
		return LOOM_ENOENT;
	}
	if (offset < c->blobs[i].len) {
		n = c->blobs[i].len - (size_t)offset;
		if (n > len)
			n = len;
		memcpy(buf, c->blobs[i].data + offset, n);
	}
	pthread_mutex_unlock(&c->mtx);
	*nread = n;
	return 0;
}

static int
memory_stat(void *p, const char *key, loom_blob_stat *st)
{
	ctx *c = p;
	long i;

	if (loom_key_check(key) != 0)
		return LOOM_EINVAL;
	pthread_mutex_lock(&c->mtx);
	if ((i = find(c, key)) < 0) {
		pthread_mutex_unlock(&c->mtx);
		return LOOM_ENOENT;
	}
	memset(st, 0, sizeof *st);
	st->size = c->blobs[i].len;
	st->mtime_ms = c->blobs[i].mtime_ms;
	st->etag = c->blobs[i].etag;
	pthread_mutex_unlock(&c->mtx);
	return 0;
}

static int
memory_remove(void *p, const char *key)
{
	ctx *c = p;
	long i;

	if (loom_key_check(key) != 0)
		return LOOM_EINVAL;
	pthread_mutex_lock(&c->mtx);
	if ((i = find(c, key)) < 0) {
		pthread_mutex_unlock(&c->mtx);
		return LOOM_ENOENT;
	}
	c->bytes -= c->blobs[i].len;
	free(c->blobs[i].key);
	free(c->blobs[i].data);
	memmove(&c->blobs[i], &c->blobs[i + 1], (c->n - (size_t)i - 1) * sizeof *c->blobs);
	c->n--;
	pthread_mutex_unlock(&c->mtx);
	return 0;
}

static int
memory_list(void *p, const char *prefix, loom_storage_list_fn fn, void *arg)
{
	ctx *c = p;
	size_t pl = strlen(prefix), n = 0, start;
	char **keys;
	loom_blob_stat *stats;
	long i;
	int rv = 0;

	if (loom_key_prefix_check(prefix) != 0)
		return LOOM_EINVAL;
	/* Snapshot the matching keys, then call fn without the lock, so fn may
	 * use this storage itself. */
	pthread_mutex_lock(&c->mtx);
	i = find(c, prefix);
	start = i >= 0 ? (size_t)i : (size_t)(-i - 1);
	while (start + n < c->n && strncmp(c->blobs[start + n].key, prefix, pl) == 0)
		n++;
	keys = calloc(n ? n : 1, sizeof *keys);
	stats = calloc(n ? n : 1, sizeof *stats);
	if (keys == NULL || stats == NULL) {
		pthread_mutex_unlock(&c->mtx);
		free(keys);
		free(stats);
		return LOOM_ENOMEM;
	}
	for (size_t k = 0; k < n; k++) {
		const blob *b = &c->blobs[start + k];
		keys[k] = strdup(b->key);
		stats[k].size = b->len;
		stats[k].mtime_ms = b->mtime_ms;
		stats[k].etag = b->etag;
		if (keys[k] == NULL)
			rv = LOOM_ENOMEM;
	}
	pthread_mutex_unlock(&c->mtx);
	for (size_t k = 0; k < n && rv == 0; k++)
		rv = fn(arg, keys[k], &stats[k]);
	for (size_t k = 0; k < n; k++)
		free(keys[k]);
	free(keys);
	free(stats);
	return rv;
}

static int
memory_write_open(void *p, const char *key, void **out)
{
	writer *w;

	if (loom_key_check(key) != 0)
		return LOOM_EINVAL;
	if ((w = calloc(1, sizeof *w)) == NULL || (w->key = strdup(key)) == NULL) {
		free(w);
		return LOOM_ENOMEM;
	}
	*out = w;
	return 0;
}

static int
memory_write(void *p, void *wp, const void *data, size_t len)
{
	ctx *c = p;
	writer *w = wp;
	int rv = 0;

	pthread_mutex_lock(&c->mtx);
	if (c->bytes + c->pending + len > c->max_bytes)
		rv = LOOM_ERANGE;
	else
		c->pending += len;
	pthread_mutex_unlock(&c->mtx);
	if (rv)
		return rv;
	if (w->len + len > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;
		unsigned char *nd;
		while (cap < w->len + len)
			cap *= 2;
		if ((nd = realloc(w->data, cap)) == NULL) {
			/* Give back the room reserved above: abort only
			 * returns what the writer holds (w->len). */
			pthread_mutex_lock(&c->mtx);
			c->pending -= len;
			pthread_mutex_unlock(&c->mtx);
			return LOOM_ENOMEM;
		}
		w->data = nd;
		w->cap = cap;
	}
	memcpy(w->data + w->len, data, len);
	w->len += len;
	return 0;
}

static int
memory_write_commit(void *p, void *wp)
{
	ctx *c = p;
	writer *w = wp;
	unsigned char *data = w->data ? w->data : malloc(1);
	int rv;

	pthread_mutex_lock(&c->mtx);
	c->pending -= w->len;
	rv = data ? store_locked(c, w->key, data, w->len, NULL) : LOOM_ENOMEM;
	pthread_mutex_unlock(&c->mtx);
	free(w->key);
	free(w);
	return rv;
}

static void
memory_write_abort(void *p, void *wp)
{
	ctx *c = p;
	writer *w = wp;

	pthread_mutex_lock(&c->mtx);
	c->pending -= w->len;
	pthread_mutex_unlock(&c->mtx);
	free(w->data);
	free(w->key);
	free(w);
}

static const loom_storage_ops ops = {
	.size = sizeof(loom_storage_ops),
	.caps = 0,
	.put = memory_put,
	.get = memory_get,
	.stat = memory_stat,
	.remove = memory_remove,
	.list = memory_list,
	.read = memory_read,
	.put_if = memory_put_if,
	.write_open = memory_write_open,
	.write = memory_write,
	.write_commit = memory_write_commit,
	.write_abort = memory_write_abort,
};

LOOM_PLUGIN_DEFINE(storage_memory,
                   .kind = LOOM_KIND_STORAGE,
                   .flags = LOOM_PLUGIN_THREAD_SAFE,
                   .name = "storage-memory",
                   .version = "1.0.0",
                   .description = "blobs kept in memory (lost at restart)",
                   .config = config,
                   .ctx_size = sizeof(ctx),
                   .init = memory_init,
                   .fini = memory_fini,
                   .ops = &ops)

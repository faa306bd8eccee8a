/* <loom/storage.h> — storage plugins: named blobs under keys.
 *
 * Datasets, checkpoints, artifacts and exported models all live in storage
 * providers; tensors never travel on the bus, only "<instance>:<key>"
 * references to blobs.  Dataset versions (content-addressed chunks, commits,
 * tags) are built by the host on top of these operations.
 *
 * Keys are relative paths: segments of [A-Za-z0-9._-] separated by '/', no
 * empty segment, no "." or "..", at most LOOM_KEY_MAX bytes.  loom_key_check
 * tells whether a key is valid; the host checks keys before calling a
 * plugin, and plugins check again before touching anything. */
#ifndef LOOM_STORAGE_H
#define LOOM_STORAGE_H

#include <loom/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LOOM_KEY_MAX 1024

/* Capabilities. */
#define LOOM_STORAGE_DURABLE 0x1u    /* blobs survive a restart */
#define LOOM_STORAGE_SHARED 0x2u     /* other hosts see the same blobs (NFS) */
#define LOOM_STORAGE_LOCAL_PATH 0x4u /* local_path gives a readable file */

/* What stat reports of a blob. */
typedef struct loom_blob_stat {
	uint64_t size;    /* bytes */
	int64_t mtime_ms; /* last write, UTC milliseconds since the epoch */
	uint64_t etag;    /* changes whenever the content is replaced; never 0 */
	uint64_t reserved[4];
} loom_blob_stat;

/* Called once per key by list, in byte order of the keys.  A non-zero
 * return stops the listing; list returns it. */
typedef int (*loom_storage_list_fn)(void *arg, const char *key, const loom_blob_stat *st);

typedef struct loom_storage_ops {
	uint32_t size; /* sizeof(loom_storage_ops) as compiled */
	uint32_t caps; /* LOOM_STORAGE_* */

	/* Required. */
	/* Store data under key, replacing any old blob atomically: a reader
	 * sees the old blob or the new one, never a mix, even across a crash. */
	int (*put)(void *ctx, const char *key, const void *data, size_t len);
	/* Read a whole blob into memory from host->alloc (freed by the caller
	 * with host->free).  LOOM_ENOENT when absent. */
	int (*get)(void *ctx, const char *key, void **data, size_t *len);
	int (*stat)(void *ctx, const char *key, loom_blob_stat *st);
	/* Delete a blob; LOOM_ENOENT when absent. */
	int (*remove)(void *ctx, const char *key);
	/* List the keys that begin with prefix ("" for all). */
	int (*list)(void *ctx, const char *prefix, loom_storage_list_fn fn, void *arg);

	/* Optional (NULL when not offered). */
	/* Read up to len bytes from offset; *nread < len only at the end. */
	int (*read)(void *ctx, const char *key, uint64_t offset, void *buf, size_t len,
	            size_t *nread);
	/* Conditional put: only if the blob's etag is if_etag (0: only if the
	 * key is absent); LOOM_ECONFLICT otherwise.  The new etag is stored in
	 * *etag when etag is not NULL.  Refs and locks are built on this. */
	int (*put_if)(void *ctx, const char *key, const void *data, size_t len,
	              uint64_t if_etag, uint64_t *etag);
	/* Streaming writes for blobs too large for memory: open, write any
	 * number of times, then commit (atomic, like put) or abort.  Both
	 * commit and abort release the writer. */
	int (*write_open)(void *ctx, const char *key, void **writer);
	int (*write)(void *ctx, void *writer, const void *data, size_t len);
	int (*write_commit)(void *ctx, void *writer);
	void (*write_abort)(void *ctx, void *writer);
	/* The path of a local file holding the blob (host->alloc'd). */
	int (*local_path)(void *ctx, const char *key, char **path);

	const void *reserved[8];
} loom_storage_ops;

/* 0 when key is a valid storage key, LOOM_EINVAL otherwise. */
int loom_key_check(const char *key);

/* 0 when prefix is a valid list prefix: "" or a key, optionally with a
 * trailing '/'. */
int loom_key_prefix_check(const char *prefix);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_STORAGE_H */

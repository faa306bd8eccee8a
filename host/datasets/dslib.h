/* The dataset library: how a table becomes content-addressed chunks and a
 * version manifest, and back (host/datasets/ds-*.c).  It knows nothing of
 * SQLite, HTTP or users: the datasets module (datasets.c) gives it a sink
 * that stores chunks and a source that reads them, and keeps manifests,
 * refs, locks and quotas itself.
 *
 * Formats of the rows:
 *   "csv"  a header line naming the columns, then one line per row; a row
 *          is stored as its bytes (quoted fields, embedded newlines and
 *          "\r\n" endings understood; "\r\n" stored as "\n"; a last row
 *          without a newline gets one);
 *   "f32", "f64"  raw little-endian arrays behind a small header:
 *          "LOOMARR1" (8 bytes), u8 element size (4 or 8), u8[3] zero,
 *          u32 LE column count C (1..4096), then C names, each a u16 LE
 *          length (0: "c<i>") and that many bytes of [A-Za-z0-9_.-]; then
 *          rows of C elements to the end of the input.  A row is stored as
 *          its C*size bytes.
 *
 * Chunks: a Gear rolling hash (FastCDC's normalized chunking) over the row
 * bytes finds a cut point; the chunk then ends at the end of that row, so a
 * chunk always holds whole rows, and an inserted or changed row moves only
 * the boundaries near it.  A chunk is addressed by the SHA-256 of its
 * (uncompressed) row bytes and stored zstd-compressed.
 *
 * A version's manifest is one binary blob (ds_manifest_encode): its
 * metadata as canonical JSON and its chunk table packed; the version id is
 * the SHA-256 of that blob, in lower-case hex.
 *
 * Functions return 0 or a LOOM_E* code (<loom/error.h>) and set *err (free
 * it) to a message that names the input (the row, the column, the byte
 * offset) and what to do. */
#ifndef LOOM_HOST_DSLIB_H
#define LOOM_HOST_DSLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* ------------------------------------------------------------------ hashes */

typedef struct ds_hash {
	uint8_t b[32];
} ds_hash;

#define DS_HEX_LEN 64
void ds_hash_hex(const ds_hash *h, char hex[DS_HEX_LEN + 1]);
/* 0, or LOOM_EINVAL when hex is not 64 hex digits. */
int ds_hash_parse(const char *hex, ds_hash *out);
void ds_sha256(const void *data, size_t len, ds_hash *out);
/* The storage key of a chunk: "<prefix>/ab/cdef…" (the first two hex
 * digits a directory of their own); prefix e.g. "datasets/chunks". */
void ds_chunk_key(const char *prefix, const ds_hash *h, char *key, size_t n);

/* ------------------------------------------------------------------ parameters */

typedef struct ds_params {
	uint32_t min_size; /* bytes; a chunk is at least this long but the last */
	uint32_t avg_size; /* the normalized chunker's target, a power of two */
	uint32_t max_size; /* a cut is forced here (then at that row's end) */
	int zstd_level;    /* 1..19 */
	int threads;       /* compression threads, 0: one per core, at most 8 */
} ds_params;

/* 64 KiB, 256 KiB, 1 MiB, level 3, threads 0. */
void ds_params_default(ds_params *p);
/* 0, or LOOM_EINVAL naming the field (min ≤ avg ≤ max, avg a power of two,
 * 1 KiB ≤ min, max ≤ 64 MiB, level 1..19, threads 0..8). */
int ds_params_check(const ds_params *p, char **err);

/* The Gear chunker alone, for tests: the length of the first chunk of
 * data[0..len) by the byte rule only (no row alignment), or len when no cut
 * is found before len (end of input).  Deterministic. */
size_t ds_cdc_cut(const ds_params *p, const uint8_t *data, size_t len);

/* ------------------------------------------------------------------ manifests */

enum ds_coltype {
	DS_COL_INTEGER = 1, /* every non-empty value an integer */
	DS_COL_NUMBER = 2,  /* every non-empty value a number (int, decimal, exponent,
	                     * nan, inf) */
	DS_COL_STRING = 3,  /* anything else */
};
const char *ds_coltype_name(int type); /* "integer", "number", "string" */

typedef struct ds_column {
	char *name;
	int type; /* ds_coltype */
} ds_column;

typedef struct ds_chunk {
	ds_hash hash;    /* SHA-256 of the chunk's row bytes */
	uint64_t rows;   /* rows it holds (≥ 1) */
	uint32_t raw;    /* row bytes */
	uint32_t stored; /* compressed bytes as stored */
} ds_chunk;

typedef struct ds_manifest {
	char *dataset;          /* the dataset's name */
	char *format;           /* "csv", "f32", "f64" */
	ds_column *columns;
	size_t n_columns;
	uint64_t rows;          /* sum of the chunks' rows */
	uint64_t bytes;         /* sum of raw */
	uint64_t stored;        /* sum of stored */
	ds_chunk *chunks;
	size_t n_chunks;
	char **parents;         /* version ids (hex), 0 (first), 1 or 2 */
	size_t n_parents;
	char *author;           /* user name */
	int64_t time_ms;        /* UTC ms since the epoch */
	char *message;
} ds_manifest;

void ds_manifest_free(ds_manifest *m); /* the fields; m itself is the caller's */
/* Encode (malloc'd blob) and the version id of the blob. */
int ds_manifest_encode(const ds_manifest *m, void **blob, size_t *len,
                       char id[DS_HEX_LEN + 1]);
/* A version's content id: the SHA-256 (lower-case hex) of what its rows
 * are, its format, its columns (names and types) and its chunk table, and
 * of nothing else: not the dataset's name, the author, the time, the
 * message or the parents.  Two versions with one content id hold the same
 * rows in the same chunks (a diff of them is empty), so the content id
 * answers "is anything changed?" without either chunk table.  It is the
 * SHA-256 of "LOOMDSC1", u32 LE n, n bytes of {"columns":[{"name","type"}…],
 * "format"} as compact JSON with sorted keys, then the chunk table exactly
 * as a manifest blob holds it (u64 LE count, count 48-byte records).
 * 0, or LOOM_EINVAL (unknown format, a name that is not UTF-8) /
 * LOOM_ENOMEM. */
int ds_manifest_content_id(const ds_manifest *m, char hex[DS_HEX_LEN + 1]);
/* ds_manifest_encode that also gives the content id (content may be
 * NULL), the chunk table packed and read once for both. */
int ds_manifest_encode_ids(const ds_manifest *m, void **blob, size_t *len,
                           char id[DS_HEX_LEN + 1], char content[DS_HEX_LEN + 1]);
/* Decode a blob; every size is bounded by len and checked, a corrupt or
 * truncated blob is LOOM_ECORRUPT.  The id is not recomputed (the caller
 * can: ds_sha256 of the blob).  The chunk table is one allocation, copied
 * and checked in one pass. */
int ds_manifest_decode(const void *blob, size_t len, ds_manifest *out, char **err);
/* The metadata of a blob only: out->chunks is NULL and out->n_chunks the
 * count the metadata gives (the table's size is checked against it, its
 * records are not read).  For what needs no chunk: ds_manifest_json. */
int ds_manifest_decode_head(const void *blob, size_t len, ds_manifest *out, char **err);
/* The manifest's metadata as JSON, without the chunk table: {dataset,
 * format, columns:[{name,type}], rows, bytes, stored, chunks (the count),
 * parents, author, time (ISO 8601 UTC), message}. */
json_t *ds_manifest_json(const ds_manifest *m);

/* ------------------------------------------------------------------ import */

/* Where an import's chunks go.  put_chunk is called once per chunk, in
 * order, from the thread that calls ds_import_feed/finish: it must store
 * the compressed bytes under the hash (idempotent: the same hash is always
 * the same bytes) and return 0, or a LOOM_E* code with *err, which aborts
 * the import (a quota refused, a storage error).  Several chunks of one
 * import can have one hash; put_chunk sees each of them. */
typedef struct ds_sink {
	void *arg;
	int (*put_chunk)(void *arg, const ds_chunk *c, const void *zdata, size_t zlen,
	                 char **err);
} ds_sink;

typedef struct ds_importer ds_importer;

/* format: "csv", "f32" or "f64" ("f32"/"f64" read the LOOMARR1 header; an
 * element size other than the format's is refused).  NULL when out of
 * memory or p is invalid. */
ds_importer *ds_import_new(const char *format, const ds_params *p, const ds_sink *sink);
/* Feed the next len bytes of the input (any split: a row or the header may
 * span calls).  Memory stays bounded by a few max_size buffers per thread
 * whatever the input's size. */
int ds_import_feed(ds_importer *im, const void *data, size_t len, char **err);
/* End of input: the last chunk, then out's format, columns (names and
 * inferred types), rows, bytes, stored and chunks.  The caller fills
 * dataset, parents, author, time_ms and message.  An input with a header
 * and no row is a version with 0 chunks.  A csv row with more or fewer
 * fields than the header is refused naming its line number. */
int ds_import_finish(ds_importer *im, ds_manifest *out, char **err);
void ds_import_free(ds_importer *im);

/* ------------------------------------------------------------------ checkout */

/* Where a checkout's chunks come from: the compressed bytes of a chunk,
 * malloc'd, freed by the library; LOOM_ENOENT when missing. */
typedef struct ds_source {
	void *arg;
	int (*get_chunk)(void *arg, const ds_chunk *c, void **zdata, size_t *zlen, char **err);
} ds_source;

typedef int (*ds_write_fn)(void *arg, const void *data, size_t len);

enum ds_out {
	DS_OUT_CSV = 1,    /* header + rows; f32/f64 rows written as numbers
	                    * (%.9g / %.17g), comma separated */
	DS_OUT_NATIVE = 2, /* the format's own bytes: csv as csv, f32/f64 with
	                    * their LOOMARR1 header */
};

/* Write chunks [first, first + count) of m (count SIZE_MAX: to the end),
 * with the header when header is true.  Every chunk is decompressed and
 * checked against its hash and raw length (LOOM_ECORRUPT naming the chunk
 * otherwise).  A write_fn error aborts with its code. */
int ds_checkout(const ds_manifest *m, const ds_source *src, int out, bool header,
                size_t first, size_t count, ds_write_fn write_fn, void *warg, char **err);

/* The exact length of what ds_checkout writes for these arguments when it
 * writes the rows' own bytes (DS_OUT_NATIVE, or DS_OUT_CSV of a csv
 * version): 0 with *len; LOOM_ENOTSUP for f32/f64 rows as csv numbers
 * (their length is known once written), LOOM_EINVAL for a bad argument. */
int ds_checkout_size(const ds_manifest *m, int out, bool header, size_t first, size_t count,
                     size_t *len);
#define DS_CHECKOUT_THREADS_MAX 8
/* ds_checkout into buf, len being what ds_checkout_size gives: each chunk
 * is decompressed straight into its place (no copy) and checked there, by
 * threads threads at once (0: one per core, at most
 * DS_CHECKOUT_THREADS_MAX; the caller's thread is one of them), so
 * src->get_chunk must be callable from several threads.  On an error
 * (the earliest chunk's is told) buf holds part of the output. */
int ds_checkout_buf(const ds_manifest *m, const ds_source *src, int out, bool header,
                    size_t first, size_t count, int threads, void *buf, size_t len,
                    char **err);

/* ------------------------------------------------------------------ diff */

enum ds_hunk_op { DS_ADDED = 1, DS_REMOVED = 2, DS_CHANGED = 3 };

typedef struct ds_hunk {
	int op;
	/* the rows in a (removed/changed) and in b (added/changed): first row
	 * (0-based) and count; the chunks likewise */
	uint64_t a_row, a_rows, b_row, b_rows;
	size_t a_chunk, a_chunks, b_chunk, b_chunks;
} ds_hunk;

typedef struct ds_diff {
	bool same;             /* same chunk list and columns */
	/* columns by name: in b only, in a only, in both with another type */
	char **cols_added, **cols_removed, **cols_changed;
	size_t n_cols_added, n_cols_removed, n_cols_changed;
	ds_hunk *hunks;
	size_t n_hunks;
	/* a changed hunk of a_rows and b_rows counts min of them changed and
	 * the rest added (b_rows > a_rows) or removed */
	uint64_t rows_added, rows_removed, rows_changed, rows_same;
	uint64_t chunks_same;  /* chunks of b matched in a */
	uint64_t bytes_new;    /* stored bytes of b's chunks not in a */
	bool coarse;           /* the alignment gave up (edit distance over its
	                        * bound): one changed hunk between common prefix
	                        * and suffix */
} ds_diff;

/* Align a's and b's chunk lists (Myers' O(ND) over chunk hashes, D bounded
 * at 4096; then coarse).  Unchanged versions of 10^6 chunks in well under
 * 100 ms. */
int ds_diff_compute(const ds_manifest *a, const ds_manifest *b, ds_diff *out);
void ds_diff_free(ds_diff *d);
/* The diff of two versions with one content id (ds_manifest_content_id)
 * without their chunk tables: same, every row and chunk of b the same,
 * no hunk; what ds_diff_compute gives for them. */
void ds_diff_unchanged(uint64_t rows, uint64_t n_chunks, ds_diff *out);
/* {same, columns:{added,removed,changed}, rows:{added,removed,changed,same},
 * chunks_same, bytes_new, coarse, hunks:[{op:"added"|"removed"|"changed",
 * a:{row,rows}, b:{row,rows}}]} with at most max_hunks hunks (and
 * "hunks_truncated": true beyond). */
json_t *ds_diff_json(const ds_diff *d, size_t max_hunks);

#endif /* LOOM_HOST_DSLIB_H */

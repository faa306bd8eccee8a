/* Version manifests (dslib.h): one binary blob, its metadata as canonical
 * JSON and its chunk table packed, so the version id (the blob's SHA-256)
 * is the same wherever the same version is encoded.
 *
 *   "LOOMDSM1"  u32 LE n  n bytes of JSON (compact, sorted keys)
 *   u64 LE count  count × (hash[32] u64 LE rows u32 LE raw u32 LE stored)
 *
 * The content id (ds_manifest_content_id) hashes "LOOMDSC1", the format
 * and columns as JSON, and that chunk table as it is. */
#include "config.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <jansson.h>
#include <openssl/evp.h>

#include <loom/error.h>

#include "host/core/util.h"
#include "ds-internal.h"
#include "dslib.h"

static const char magic[8] = "LOOMDSM1";
static const char content_magic[8] = "LOOMDSC1";

void
ds_manifest_free(ds_manifest *m)
{
	if (m == NULL)
		return;
	free(m->dataset);
	free(m->format);
	for (size_t i = 0; i < m->n_columns; i++)
		free(m->columns[i].name);
	free(m->columns);
	free(m->chunks);
	for (size_t i = 0; i < m->n_parents; i++)
		free(m->parents[i]);
	free(m->parents);
	free(m->author);
	free(m->message);
	memset(m, 0, sizeof(*m));
}

static void
put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void
put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t
get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* A string or null (NULL); NULL from jansson (invalid UTF-8) is an error. */
static int
set_str(json_t *o, const char *key, const char *s)
{
	json_t *v = s != NULL ? json_string(s) : json_null();

	if (v == NULL)
		return LOOM_EINVAL;
	return json_object_set_new(o, key, v) == 0 ? 0 : LOOM_ENOMEM;
}

/* The metadata as encoded in the blob (time in ms, counts as integers). */
static json_t *
meta_json(const ds_manifest *m, int *code)
{
	json_t *o = json_object(), *cols = json_array(), *parents = json_array();
	int rv = 0;

	if (o == NULL || cols == NULL || parents == NULL) {
		json_decref(cols);
		json_decref(parents);
		rv = LOOM_ENOMEM;
		goto out;
	}
	json_object_set_new(o, "columns", cols);
	json_object_set_new(o, "parents", parents);
	for (size_t i = 0; i < m->n_columns && rv == 0; i++) {
		json_t *c = json_object();

		if (c == NULL || json_array_append_new(cols, c) != 0) {
			rv = LOOM_ENOMEM;
			break;
		}
		if ((rv = set_str(c, "name", m->columns[i].name)) == 0)
			rv = set_str(c, "type", ds_coltype_name(m->columns[i].type));
	}
	for (size_t i = 0; i < m->n_parents && rv == 0; i++) {
		json_t *v = json_string(m->parents[i] != NULL ? m->parents[i] : "");

		if (v == NULL || json_array_append_new(parents, v) != 0)
			rv = LOOM_EINVAL;
	}
	if (rv == 0)
		rv = set_str(o, "dataset", m->dataset);
	if (rv == 0)
		rv = set_str(o, "format", m->format);
	if (rv == 0)
		rv = set_str(o, "author", m->author);
	if (rv == 0)
		rv = set_str(o, "message", m->message);
	if (rv == 0 &&
	    (json_object_set_new(o, "rows", json_integer((json_int_t)m->rows)) != 0 ||
	     json_object_set_new(o, "bytes", json_integer((json_int_t)m->bytes)) != 0 ||
	     json_object_set_new(o, "stored", json_integer((json_int_t)m->stored)) != 0 ||
	     json_object_set_new(o, "chunks", json_integer((json_int_t)m->n_chunks)) != 0 ||
	     json_object_set_new(o, "time_ms", json_integer((json_int_t)m->time_ms)) != 0))
		rv = LOOM_ENOMEM;
out:
	if (rv != 0) {
		json_decref(o);
		o = NULL;
	}
	*code = rv;
	return o;
}

/* The chunk table's records (after the u64 count) packed at p. */
static void
pack_chunks(uint8_t *p, const ds_chunk *chunks, size_t n)
{
	for (size_t i = 0; i < n; i++, p += DS_CHUNK_REC) {
		const ds_chunk *c = &chunks[i];

		memcpy(p, c->hash.b, 32);
		put64(p + 32, c->rows);
		put32(p + 40, c->raw);
		put32(p + 44, c->stored);
	}
}

/* {"columns":[…],"format":…} compact, sorted: what the content id names
 * besides the chunk table.  NULL with *code. */
static char *
content_json(const ds_manifest *m, int *code)
{
	json_t *o = json_object(), *cols = json_array();
	char *js = NULL;
	int rv = 0;

	if (o == NULL || cols == NULL || json_object_set_new(o, "columns", cols) != 0) {
		json_decref(o);
		*code = LOOM_ENOMEM;
		return NULL;
	}
	for (size_t i = 0; i < m->n_columns && rv == 0; i++) {
		json_t *c = json_object();

		if (c == NULL || json_array_append_new(cols, c) != 0) {
			rv = LOOM_ENOMEM;
			break;
		}
		if ((rv = set_str(c, "name", m->columns[i].name)) == 0)
			rv = set_str(c, "type", ds_coltype_name(m->columns[i].type));
	}
	if (rv == 0)
		rv = set_str(o, "format", m->format);
	if (rv == 0 && (js = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
		rv = LOOM_ENOMEM;
	json_decref(o);
	*code = rv;
	return js;
}

/* The content id from its JSON and the packed table (count and records). */
static int
content_hash(const char *js, const void *table, size_t tlen, ds_hash *out)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t jn = strlen(js);
	uint8_t len[4];
	unsigned int hl = 0;
	int ok;

	if (ctx == NULL || jn > UINT32_MAX) {
		EVP_MD_CTX_free(ctx);
		return ctx == NULL ? LOOM_ENOMEM : LOOM_ERANGE;
	}
	put32(len, (uint32_t)jn);
	ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, content_magic, 8) == 1 && EVP_DigestUpdate(ctx, len, 4) == 1 &&
	     EVP_DigestUpdate(ctx, js, jn) == 1 && EVP_DigestUpdate(ctx, table, tlen) == 1 &&
	     EVP_DigestFinal_ex(ctx, out->b, &hl) == 1 && hl == 32;
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : LOOM_ENOMEM;
}

int
ds_manifest_content_id(const ds_manifest *m, char hex[DS_HEX_LEN + 1])
{
	enum { BATCH = 4096 };
	EVP_MD_CTX *ctx = NULL;
	uint8_t head[12], *buf = NULL;
	unsigned int hl = 0;
	char *js;
	size_t jn;
	ds_hash h;
	int rv, ok;

	if (ds_format_elsize(m->format) < 0)
		return LOOM_EINVAL;
	if ((js = content_json(m, &rv)) == NULL)
		return rv;
	jn = strlen(js);
	if (jn > UINT32_MAX) {
		free(js);
		return LOOM_ERANGE;
	}
	if ((ctx = EVP_MD_CTX_new()) == NULL || (buf = malloc(BATCH * DS_CHUNK_REC)) == NULL) {
		free(js);
		EVP_MD_CTX_free(ctx);
		return LOOM_ENOMEM;
	}
	put32(head, (uint32_t)jn);
	ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, content_magic, 8) == 1 && EVP_DigestUpdate(ctx, head, 4) == 1 &&
	     EVP_DigestUpdate(ctx, js, jn) == 1;
	put64(head, m->n_chunks);
	ok = ok && EVP_DigestUpdate(ctx, head, 8) == 1;
	/* the records in batches: the same bytes as the blob's table */
	for (size_t i = 0; ok && i < m->n_chunks; i += BATCH) {
		size_t k = m->n_chunks - i < BATCH ? m->n_chunks - i : BATCH;

		pack_chunks(buf, m->chunks + i, k);
		ok = EVP_DigestUpdate(ctx, buf, k * DS_CHUNK_REC) == 1;
	}
	ok = ok && EVP_DigestFinal_ex(ctx, h.b, &hl) == 1 && hl == 32;
	EVP_MD_CTX_free(ctx);
	free(buf);
	free(js);
	if (!ok)
		return LOOM_ENOMEM;
	ds_hash_hex(&h, hex);
	return 0;
}

int
ds_manifest_encode_ids(const ds_manifest *m, void **blob, size_t *len, char id[DS_HEX_LEN + 1],
                       char content[DS_HEX_LEN + 1])
{
	int rv;
	json_t *meta;
	char *js, *cj = NULL;
	size_t jn, n;
	uint8_t *b, *p;
	ds_hash h;

	*blob = NULL;
	*len = 0;
	if (ds_format_elsize(m->format) < 0)
		return LOOM_EINVAL;
	if ((meta = meta_json(m, &rv)) == NULL)
		return rv;
	js = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(meta);
	if (js == NULL)
		return LOOM_ENOMEM;
	if (content != NULL && (cj = content_json(m, &rv)) == NULL) {
		free(js);
		return rv;
	}
	jn = strlen(js);
	if (jn > UINT32_MAX || m->n_chunks > (SIZE_MAX - 32 - jn) / DS_CHUNK_REC) {
		free(js);
		free(cj);
		return LOOM_ERANGE;
	}
	n = 8 + 4 + jn + 8 + m->n_chunks * DS_CHUNK_REC;
	if ((b = malloc(n)) == NULL) {
		free(js);
		free(cj);
		return LOOM_ENOMEM;
	}
	memcpy(b, magic, 8);
	put32(b + 8, (uint32_t)jn);
	memcpy(b + 12, js, jn);
	free(js);
	p = b + 12 + jn;
	put64(p, m->n_chunks);
	pack_chunks(p + 8, m->chunks, m->n_chunks);
	if (cj != NULL) {
		ds_hash ch;

		rv = content_hash(cj, p, n - 12 - jn, &ch);
		free(cj);
		if (rv != 0) {
			free(b);
			return rv;
		}
		ds_hash_hex(&ch, content);
	}
	ds_sha256(b, n, &h);
	if (id != NULL)
		ds_hash_hex(&h, id);
	*blob = b;
	*len = n;
	return 0;
}

int
ds_manifest_encode(const ds_manifest *m, void **blob, size_t *len, char id[DS_HEX_LEN + 1])
{
	return ds_manifest_encode_ids(m, blob, len, id, NULL);
}

/* A string member (or null: NULL when null_ok) copied into *out. */
static int
get_str(json_t *o, const char *key, bool null_ok, char **out, char **err)
{
	json_t *v = json_object_get(o, key);

	*out = NULL;
	if (v != NULL && json_is_null(v) && null_ok)
		return 0;
	if (!json_is_string(v))
		return ds_fail(err, LOOM_ECORRUPT, "manifest: \"%s\" is missing or not a string",
		               key);
	if ((*out = strdup(json_string_value(v))) == NULL)
		return LOOM_ENOMEM;
	return 0;
}

static int
get_u64(json_t *o, const char *key, uint64_t *out, char **err)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return ds_fail(err, LOOM_ECORRUPT,
		               "manifest: \"%s\" is missing or not a non-negative integer", key);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int
decode_meta(json_t *o, ds_manifest *m, uint64_t *n_chunks, char **err)
{
	json_t *cols = json_object_get(o, "columns"), *parents = json_object_get(o, "parents");
	json_t *t = json_object_get(o, "time_ms");
	int rv;

	if (!json_is_object(o))
		return ds_fail(err, LOOM_ECORRUPT, "manifest: the metadata is not a JSON object");
	if ((rv = get_str(o, "dataset", true, &m->dataset, err)) != 0 ||
	    (rv = get_str(o, "format", false, &m->format, err)) != 0 ||
	    (rv = get_str(o, "author", true, &m->author, err)) != 0 ||
	    (rv = get_str(o, "message", true, &m->message, err)) != 0 ||
	    (rv = get_u64(o, "rows", &m->rows, err)) != 0 ||
	    (rv = get_u64(o, "bytes", &m->bytes, err)) != 0 ||
	    (rv = get_u64(o, "stored", &m->stored, err)) != 0 ||
	    (rv = get_u64(o, "chunks", n_chunks, err)) != 0)
		return rv;
	if (ds_format_elsize(m->format) < 0)
		return ds_fail(err, LOOM_ECORRUPT, "manifest: unknown format \"%s\"", m->format);
	if (!json_is_integer(t))
		return ds_fail(err, LOOM_ECORRUPT, "manifest: \"time_ms\" is missing or not an integer");
	m->time_ms = json_integer_value(t);
	if (!json_is_array(cols) || json_array_size(cols) > DS_COLS_MAX)
		return ds_fail(err, LOOM_ECORRUPT,
		               "manifest: \"columns\" is missing or has over %d columns", DS_COLS_MAX);
	if (json_array_size(cols) > 0 &&
	    (m->columns = calloc(json_array_size(cols), sizeof(*m->columns))) == NULL)
		return LOOM_ENOMEM;
	for (size_t i = 0; i < json_array_size(cols); i++) {
		json_t *c = json_array_get(cols, i);
		char *type = NULL;

		if (!json_is_object(c))
			return ds_fail(err, LOOM_ECORRUPT, "manifest: column %zu is not an object", i);
		if ((rv = get_str(c, "name", false, &m->columns[i].name, err)) != 0)
			return rv;
		m->n_columns = i + 1;
		if ((rv = get_str(c, "type", false, &type, err)) != 0)
			return rv;
		if (strcmp(type, "integer") == 0)
			m->columns[i].type = DS_COL_INTEGER;
		else if (strcmp(type, "number") == 0)
			m->columns[i].type = DS_COL_NUMBER;
		else if (strcmp(type, "string") == 0)
			m->columns[i].type = DS_COL_STRING;
		else
			rv = ds_fail(err, LOOM_ECORRUPT, "manifest: column %zu has an unknown type \"%s\"",
			             i, type);
		free(type);
		if (rv != 0)
			return rv;
	}
	if (!json_is_array(parents) || json_array_size(parents) > 2)
		return ds_fail(err, LOOM_ECORRUPT,
		               "manifest: \"parents\" is missing or has more than 2 entries");
	if (json_array_size(parents) > 0 &&
	    (m->parents = calloc(json_array_size(parents), sizeof(char *))) == NULL)
		return LOOM_ENOMEM;
	for (size_t i = 0; i < json_array_size(parents); i++) {
		json_t *v = json_array_get(parents, i);
		ds_hash h;

		if (!json_is_string(v) || ds_hash_parse(json_string_value(v), &h) != 0)
			return ds_fail(err, LOOM_ECORRUPT, "manifest: parent %zu is not a version id", i);
		if ((m->parents[i] = strdup(json_string_value(v))) == NULL)
			return LOOM_ENOMEM;
		m->n_parents = i + 1;
	}
	return 0;
}

/* The metadata of a blob into *m and the table's count checked against
 * it; *table: the first record. */
static int
decode_head(const uint8_t *b, size_t len, ds_manifest *m, const uint8_t **table, char **err)
{
	uint64_t count, n_meta_chunks = 0;
	uint32_t jn;
	json_t *meta;
	json_error_t jerr;
	int rv;

	memset(m, 0, sizeof(*m));
	if (len < 12 || memcmp(b, magic, 8) != 0)
		return ds_fail(err, LOOM_ECORRUPT, "manifest: %zu bytes without the LOOMDSM1 header",
		               len);
	jn = get32(b + 8);
	if (jn > len - 12 || len - 12 - jn < 8)
		return ds_fail(err, LOOM_ECORRUPT,
		               "manifest: its metadata (%" PRIu32 " bytes) and chunk count do not fit "
		               "in its %zu bytes",
		               jn, len);
	meta = json_loadb((const char *)b + 12, jn, JSON_REJECT_DUPLICATES, &jerr);
	if (meta == NULL)
		return ds_fail(err, LOOM_ECORRUPT, "manifest: its metadata is not JSON: %s", jerr.text);
	rv = decode_meta(meta, m, &n_meta_chunks, err);
	json_decref(meta);
	if (rv != 0)
		return rv;
	count = get64(b + 12 + jn);
	if (count > (len - 20 - jn) / DS_CHUNK_REC || count * DS_CHUNK_REC != len - 20 - jn)
		return ds_fail(err, LOOM_ECORRUPT,
		               "manifest: %" PRIu64 " chunks do not fill its %zu bytes exactly", count,
		               len);
	if (count != n_meta_chunks)
		return ds_fail(err, LOOM_ECORRUPT,
		               "manifest: its table has %" PRIu64 " chunks, its metadata says %" PRIu64,
		               count, n_meta_chunks);
	if (count > SIZE_MAX / sizeof(ds_chunk))
		return ds_fail(err, LOOM_ERANGE, "manifest: %" PRIu64 " chunks are too many here",
		               count);
	m->n_chunks = (size_t)count;
	*table = b + 20 + jn;
	return 0;
}

int
ds_manifest_decode_head(const void *blob, size_t len, ds_manifest *out, char **err)
{
	const uint8_t *table;
	int rv = decode_head(blob, len, out, &table, err);

	if (rv != 0)
		ds_manifest_free(out);
	return rv;
}

/* A record as the struct holds it: on a little-endian machine the blob's
 * records are the array's bytes (checked at compile time below), so the
 * table is one copy. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define DS_TABLE_IS_ARRAY 1
_Static_assert(sizeof(ds_chunk) == DS_CHUNK_REC && offsetof(ds_chunk, rows) == 32 &&
                   offsetof(ds_chunk, raw) == 40 && offsetof(ds_chunk, stored) == 44,
               "ds_chunk is a manifest record's layout");
#else
#define DS_TABLE_IS_ARRAY 0
#endif

/* Room for a chunk table (freed with free()).  A large one (10^6 chunks:
 * 48 MB) is fresh memory whose every 4 KiB page faults on first touch,
 * which costs more than the copy itself; in 2 MiB huge pages where the
 * kernel gives them on request, it faults 512 times less often. */
static void *
table_alloc(size_t n)
{
#ifdef MADV_HUGEPAGE
	const size_t huge = (size_t)2 << 20;

	if (n >= 2 * huge) {
		void *p = NULL;

		if (posix_memalign(&p, huge, (n + huge - 1) / huge * huge) != 0)
			return NULL;
		(void)madvise(p, (n + huge - 1) / huge * huge, MADV_HUGEPAGE); /* a hint */
		return p;
	}
#endif
	return malloc(n);
}

int
ds_manifest_decode(const void *blob, size_t len, ds_manifest *out, char **err)
{
	const uint8_t *p;
	ds_manifest m;
	uint64_t rows = 0, bytes = 0, stored = 0;
	size_t count;
	int rv;

	memset(out, 0, sizeof(*out));
	if ((rv = decode_head(blob, len, &m, &p, err)) != 0)
		goto fail;
	count = m.n_chunks;
	m.n_chunks = 0;
	if (count > 0 && (m.chunks = table_alloc(count * sizeof(*m.chunks))) == NULL) {
		rv = LOOM_ENOMEM;
		goto fail;
	}
	/* copied, then checked and summed in one pass over the copy (the
	 * records stay in cache between the two) */
	for (size_t i = 0; i < count; i++, p += DS_CHUNK_REC) {
		ds_chunk *c = &m.chunks[i];

#if DS_TABLE_IS_ARRAY
		memcpy(c, p, DS_CHUNK_REC);
#else
		memcpy(c->hash.b, p, 32);
		c->rows = get64(p + 32);
		c->raw = get32(p + 40);
		c->stored = get32(p + 44);
#endif
		if (c->rows == 0 || c->raw == 0 || c->rows > c->raw) {
			rv = ds_fail(err, LOOM_ECORRUPT,
			             "manifest: chunk %zu has %" PRIu64 " rows in %" PRIu32 " bytes", i,
			             c->rows, c->raw);
			goto fail;
		}
		rows += c->rows;
		bytes += c->raw;
		stored += c->stored;
	}
	m.n_chunks = count;
	if (rows != m.rows || bytes != m.bytes || stored != m.stored) {
		rv = ds_fail(err, LOOM_ECORRUPT,
		             "manifest: its chunks hold %" PRIu64 " rows, %" PRIu64 " bytes, %" PRIu64
		             " stored; its metadata says %" PRIu64 ", %" PRIu64 ", %" PRIu64,
		             rows, bytes, stored, m.rows, m.bytes, m.stored);
		goto fail;
	}
	*out = m;
	return 0;
fail:
	ds_manifest_free(&m);
	return rv;
}

json_t *
ds_manifest_json(const ds_manifest *m)
{
	int rv;
	json_t *o = meta_json(m, &rv);
	char *t;

	if (o == NULL)
		return NULL;
	json_object_del(o, "time_ms");
	t = loomi_iso_time(m->time_ms);
	if (t == NULL || json_object_set_new(o, "time", json_string(t)) != 0) {
		free(t);
		json_decref(o);
		return NULL;
	}
	free(t);
	return o;
}

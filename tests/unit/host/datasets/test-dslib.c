/* The dataset library (host/datasets/dslib.h): hashes, the chunker's
 * boundaries, manifests, import and checkout of csv and f32/f64, diff. */
#include "config.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <zstd.h>

#include <loom/error.h>

#include "host/datasets/dslib.h"
#include "testutil.h"

/* ------------------------------------------------------------------ helpers */

struct blob {
	ds_hash hash;
	void *z;
	size_t zn;
};

/* An in-memory chunk store: put_chunk keeps one copy per hash. */
struct store {
	struct blob *v;
	size_t n, cap;
	size_t puts;
	size_t fail_at; /* put number (1-based) that fails, 0: none */
};

static struct blob *
store_find(struct store *s, const ds_hash *h)
{
	for (size_t i = 0; i < s->n; i++)
		if (memcmp(s->v[i].hash.b, h->b, 32) == 0)
			return &s->v[i];
	return NULL;
}

static int
put_chunk(void *arg, const ds_chunk *c, const void *z, size_t zn, char **err)
{
	struct store *s = arg;

	s->puts++;
	if (s->fail_at != 0 && s->puts == s->fail_at) {
		*err = strdup("quota exceeded: test");
		return LOOM_ERANGE;
	}
	ck_assert_uint_eq(zn, c->stored);
	if (store_find(s, &c->hash) != NULL)
		return 0;
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 64;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
	}
	s->v[s->n].hash = c->hash;
	s->v[s->n].z = malloc(zn);
	memcpy(s->v[s->n].z, z, zn);
	s->v[s->n].zn = zn;
	s->n++;
	return 0;
}

static int
get_chunk(void *arg, const ds_chunk *c, void **z, size_t *zn, char **err)
{
	struct blob *b = store_find(arg, &c->hash);

	if (b == NULL) {
		*err = strdup("no such chunk");
		return LOOM_ENOENT;
	}
	*z = malloc(b->zn);
	memcpy(*z, b->z, b->zn);
	*zn = b->zn;
	return 0;
}

static void
store_free(struct store *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].z);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

struct buf {
	char *p;
	size_t n, cap;
};

static void
buf_add(struct buf *b, const void *d, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, d, n);
	b->n += n;
	b->p[b->n] = '\0';
}

static void
buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
buf_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	buf_add(b, tmp, (size_t)n);
}

static int
write_buf(void *arg, const void *d, size_t n)
{
	buf_add(arg, d, n);
	return 0;
}

static void
small_params(ds_params *p)
{
	ds_params_default(p);
	p->min_size = 2048;
	p->avg_size = 8192;
	p->max_size = 32768;
	p->threads = 2;
}

/* Import data in pieces of piece bytes (0: at once). */
static int
import(const char *format, const ds_params *p, const void *data, size_t len, size_t piece,
       struct store *s, ds_manifest *m, char **err)
{
	ds_sink sink = {s, put_chunk};
	ds_importer *im = ds_import_new(format, p, &sink);
	const uint8_t *d = data;
	int rv = 0;

	ck_assert_ptr_nonnull(im);
	if (piece == 0)
		piece = len ? len : 1;
	for (size_t off = 0; off < len && rv == 0; off += piece)
		rv = ds_import_feed(im, d + off, len - off < piece ? len - off : piece, err);
	if (rv == 0)
		rv = ds_import_finish(im, m, err);
	ds_import_free(im);
	return rv;
}

static uint64_t rng_state = 88172645463325252ULL;

static uint64_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* A numeric csv row (no header): "i,x,y\n". */
static void
csv_row(struct buf *b, uint64_t i)
{
	uint64_t h = i * 0x9e3779b97f4a7c15ULL;

	buf_printf(b, "%" PRIu64 ",%.4f,%d\n", i, (double)(h >> 40) / 1000.0, (int)(h % 1000));
}

static void
csv_rows(struct buf *b, uint64_t from, uint64_t to)
{
	for (uint64_t i = from; i < to; i++)
		csv_row(b, i);
}

static bool
has_hash(const ds_manifest *m, const ds_hash *h)
{
	for (size_t i = 0; i < m->n_chunks; i++)
		if (memcmp(m->chunks[i].hash.b, h->b, 32) == 0)
			return true;
	return false;
}

static size_t
chunks_not_in(const ds_manifest *b, const ds_manifest *a)
{
	size_t n = 0;

	for (size_t i = 0; i < b->n_chunks; i++)
		n += !has_hash(a, &b->chunks[i].hash);
	return n;
}

/* ------------------------------------------------------------------ tests */

START_TEST(hashes)
{
	ds_hash h, g;
	char hex[DS_HEX_LEN + 1], key[128];

	ds_sha256("abc", 3, &h);
	ds_hash_hex(&h, hex);
	ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	ck_assert_int_eq(ds_hash_parse(hex, &g), 0);
	ck_assert_mem_eq(g.b, h.b, 32);
	ck_assert_int_eq(ds_hash_parse("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
	                               &g),
	                 0);
	ck_assert_mem_eq(g.b, h.b, 32);
	ck_assert_int_eq(ds_hash_parse("ba78", &g), LOOM_EINVAL);
	ck_assert_int_eq(ds_hash_parse("", &g), LOOM_EINVAL);
	hex[10] = 'g';
	ck_assert_int_eq(ds_hash_parse(hex, &g), LOOM_EINVAL);
	ds_hash_hex(&h, hex);
	char longer[80];
	snprintf(longer, sizeof(longer), "%s0", hex);
	ck_assert_int_eq(ds_hash_parse(longer, &g), LOOM_EINVAL);
	ds_chunk_key("datasets/chunks", &h, key, sizeof(key));
	ck_assert_str_eq(key, "datasets/chunks/ba/7816bf8f01cfea414140de5dae2223b00361a396177a9cb410"
	                      "ff61f20015ad");
}
END_TEST

START_TEST(params)
{
	ds_params p;
	char *err = NULL;

	ds_params_default(&p);
	ck_assert_uint_eq(p.min_size, 64 << 10);
	ck_assert_uint_eq(p.avg_size, 256 << 10);
	ck_assert_uint_eq(p.max_size, 1 << 20);
	ck_assert_int_eq(p.zstd_level, 3);
	ck_assert_int_eq(ds_params_check(&p, &err), 0);
	p.avg_size = 300000;
	ck_assert_int_eq(ds_params_check(&p, &err), LOOM_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "chunk_avg"));
	ds_params_default(&p);
	p.min_size = 512;
	ck_assert_int_eq(ds_params_check(&p, &err), LOOM_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "chunk_min"));
	ds_params_default(&p);
	p.max_size = 128u << 20;
	ck_assert_int_eq(ds_params_check(&p, &err), LOOM_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "chunk_max"));
	ds_params_default(&p);
	p.min_size = 512 << 10;
	ck_assert_int_eq(ds_params_check(&p, &err), LOOM_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "chunk_avg"));
	ds_params_default(&p);
	p.zstd_level = 20;
	ck_assert_int_eq(ds_params_check(&p, &err), LOOM_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "zstd_level"));
	ds_params_default(&p);
	p.threads = 9;
	ck_assert_int_eq(ds_params_check(&p, &err), LOOM_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "threads"));
	/* an importer refuses bad parameters and formats */
	ds_sink sink = {NULL, put_chunk};
	ck_assert_ptr_null(ds_import_new("csv", &p, &sink));
	ds_params_default(&p);
	ck_assert_ptr_null(ds_import_new("tsv", &p, &sink));
	free(err);
}
END_TEST

START_TEST(cdc_deterministic)
{
	ds_params p;
	size_t n = 4 << 20, off = 0, count = 0;
	uint8_t *d = malloc(n);

	small_params(&p);
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = rng();
		memcpy(d + i, &v, 8);
	}
	while (off < n) {
		size_t c = ds_cdc_cut(&p, d + off, n - off);

		ck_assert_uint_eq(c, ds_cdc_cut(&p, d + off, n - off));
		ck_assert_uint_le(c, p.max_size);
		if (off + c < n)
			ck_assert_uint_gt(c, p.min_size);
		/* a cut depends on the bytes before it only */
		if (off + c < n)
			ck_assert_uint_eq(ds_cdc_cut(&p, d + off, c), c);
		off += c;
		count++;
	}
	/* normalized chunking keeps the mean near avg (min + avg here) */
	ck_assert_uint_gt(n / count, p.avg_size / 2);
	ck_assert_uint_lt(n / count, p.avg_size * 2);
	/* a short input is one chunk */
	ck_assert_uint_eq(ds_cdc_cut(&p, d, 100), 100);
	free(d);
}
END_TEST

/* Each chunk of m (a csv import) holds whole rows, ends at the first row
 * end at or after its Gear cut, and the chunks concatenate to rows. */
static void
check_row_aligned(const ds_manifest *m, struct store *s, const ds_params *p, size_t *long_rows)
{
	ds_source src = {s, get_chunk};

	for (size_t i = 0; i < m->n_chunks; i++) {
		struct buf b = {0};
		char *err = NULL;
		bool q = false;
		size_t rows = 0, cut, last_end = 0;

		ck_assert_int_eq(ds_checkout(m, &src, DS_OUT_NATIVE, false, i, 1, write_buf, &b, &err),
		                 0);
		ck_assert_uint_eq(b.n, m->chunks[i].raw);
		ck_assert_int_eq(b.p[b.n - 1], '\n');
		cut = ds_cdc_cut(p, (const uint8_t *)b.p, b.n);
		for (size_t k = 0; k < b.n; k++) {
			if (b.p[k] == '"')
				q = !q;
			else if (b.p[k] == '\n' && !q) {
				rows++;
				/* no row end between the cut and the chunk's end */
				if (k + 1 < b.n && k + 1 >= cut && i + 1 < m->n_chunks)
					ck_abort_msg("chunk %zu: a row ends at %zu after the cut %zu", i, k + 1,
					             cut);
				if (k + 1 < b.n)
					last_end = k + 1;
			}
		}
		ck_assert(!q);
		ck_assert_uint_eq(rows, m->chunks[i].rows);
		if (b.n - last_end > p->max_size && long_rows != NULL)
			(*long_rows)++;
		free(b.p);
	}
}

START_TEST(quoted_newlines_aligned)
{
	ds_params p;
	struct store s = {0};
	struct buf in = {0}, out = {0};
	ds_manifest m;
	char *err = NULL;
	ds_source src = {&s, get_chunk};

	small_params(&p);
	buf_printf(&in, "id,text,\"we,ird\"\n");
	for (int i = 0; i < 20000; i++) {
		if (i % 7 == 0)
			buf_printf(&in, "%d,\"multi\nline, \"\"quoted\"\"\n%d\",%d\n", i, i * 3, i);
		else
			buf_printf(&in, "%d,plain %d,%d\n", i, i * 5, i % 13);
	}
	ck_assert_int_eq(import("csv", &p, in.p, in.n, 1000, &s, &m, &err), 0);
	ck_assert_uint_eq(m.rows, 20000);
	ck_assert_uint_gt(m.n_chunks, 20);
	ck_assert_uint_eq(m.n_columns, 3);
	ck_assert_str_eq(m.columns[2].name, "we,ird");
	ck_assert_int_eq(m.columns[0].type, DS_COL_INTEGER);
	ck_assert_int_eq(m.columns[1].type, DS_COL_STRING);
	check_row_aligned(&m, &s, &p, NULL);
	ck_assert_int_eq(ds_checkout(&m, &src, DS_OUT_CSV, true, 0, SIZE_MAX, write_buf, &out, &err),
	                 0);
	ck_assert_uint_eq(out.n, in.n);
	ck_assert(memcmp(out.p, in.p, in.n) == 0);
	free(out.p);
	free(in.p);
	ds_manifest_free(&m);
	store_free(&s);
}
END_TEST

START_TEST(boundaries_stable)
{
	ds_params p;
	struct store s = {0};
	struct buf a = {0}, b = {0}, c = {0};
	ds_manifest ma, mb, mc, ma2;
	char *err = NULL;

	small_params(&p);
	buf_printf(&a, "id,x,y\n");
	csv_rows(&a, 0, 250000); /* ~5 MB */
	ck_assert_uint_gt(a.n, 4 << 20);
	ck_assert_int_eq(import("csv", &p, a.p, a.n, 0, &s, &ma, &err), 0);
	/* deterministic, whatever the pieces the input comes in */
	ck_assert_int_eq(import("csv", &p, a.p, a.n, 4093, &s, &ma2, &err), 0);
	ck_assert_uint_eq(ma.n_chunks, ma2.n_chunks);
	ck_assert_mem_eq(ma.chunks, ma2.chunks, ma.n_chunks * sizeof(ds_chunk));
	ck_assert_uint_eq(ma.rows, 250000);
	check_row_aligned(&ma, &s, &p, NULL);

	/* one row inserted in the middle: all but the chunks around it kept */
	buf_printf(&b, "id,x,y\n");
	csv_rows(&b, 0, 125000);
	buf_printf(&b, "-1,0.5,7\n");
	csv_rows(&b, 125000, 250000);
	ck_assert_int_eq(import("csv", &p, b.p, b.n, 65536, &s, &mb, &err), 0);
	ck_assert_uint_le(chunks_not_in(&mb, &ma), 3);
	ck_assert_uint_le(chunks_not_in(&ma, &mb), 3);

	/* rows appended: every chunk but the last kept, in place */
	buf_printf(&c, "id,x,y\n");
	csv_rows(&c, 0, 252500);
	ck_assert_int_eq(import("csv", &p, c.p, c.n, 0, &s, &mc, &err), 0);
	ck_assert_uint_ge(mc.n_chunks, ma.n_chunks);
	for (size_t i = 0; i + 1 < ma.n_chunks; i++)
		ck_assert_mem_eq(mc.chunks[i].hash.b, ma.chunks[i].hash.b, 32);

	free(a.p);
	free(b.p);
	free(c.p);
	ds_manifest_free(&ma);
	ds_manifest_free(&ma2);
	ds_manifest_free(&mb);
	ds_manifest_free(&mc);
	store_free(&s);
}
END_TEST

START_TEST(crlf_same_chunks)
{
	ds_params p;
	struct store s = {0};
	struct buf a = {0}, b = {0}, out = {0};
	ds_manifest ma, mb;
	char *err = NULL;
	ds_source src = {&s, get_chunk};

	small_params(&p);
	buf_printf(&a, "id,x,y\n");
	buf_printf(&b, "\xef\xbb\xbfid,x,y\r\n");
	for (int i = 0; i < 30000; i++) {
		struct buf r = {0};

		csv_row(&r, (uint64_t)i);
		if (i % 11 == 0) {
			/* a quoted field, and a quoted field last */
			free(r.p);
			r = (struct buf){0};
			buf_printf(&r, "%d,\"%d.5\",\"q\"\n", i, i);
		}
		buf_add(&a, r.p, r.n);
		buf_add(&b, r.p, r.n - 1);
		buf_add(&b, "\r\n", 2);
		free(r.p);
	}
	/* no newline after the last row */
	a.n--;
	b.n -= 2;
	ck_assert_int_eq(import("csv", &p, a.p, a.n, 777, &s, &ma, &err), 0);
	ck_assert_int_eq(import("csv", &p, b.p, b.n, 1, &s, &mb, &err), 0);
	ck_assert_uint_eq(ma.n_chunks, mb.n_chunks);
	ck_assert_mem_eq(ma.chunks, mb.chunks, ma.n_chunks * sizeof(ds_chunk));
	ck_assert_str_eq(mb.columns[0].name, "id");
	ck_assert_int_eq(ma.columns[1].type, DS_COL_NUMBER);
	ck_assert_int_eq(ma.columns[2].type, DS_COL_STRING);
	/* checkout gives the normalized bytes back: "\n" ends, a last one added */
	ck_assert_int_eq(ds_checkout(&mb, &src, DS_OUT_CSV, true, 0, SIZE_MAX, write_buf, &out, &err),
	                 0);
	ck_assert_uint_eq(out.n, a.n + 1);
	ck_assert(memcmp(out.p, a.p, a.n) == 0);
	ck_assert_int_eq(out.p[a.n], '\n');
	free(out.p);
	free(a.p);
	free(b.p);
	ds_manifest_free(&ma);
	ds_manifest_free(&mb);
	store_free(&s);
}
END_TEST

START_TEST(types)
{
	ds_params p;
	struct store s = {0};
	ds_manifest m;
	char *err = NULL;
	const char *in = "i,n,s,e,nan,mixed\n"
	                 "1,1.5,a,,nan,1\n"
	                 "-2,3,b,,-inf,2.5e3\n"
	                 "+3,.5,\"1\",,NaN,x\n"
	                 ",-1e-7,7,,inf,\n"
	                 "4,\"2\",x y,,,3\n";

	small_params(&p);
	ck_assert_int_eq(import("csv", &p, in, strlen(in), 3, &s, &m, &err), 0);
	ck_assert_uint_eq(m.rows, 5);
	ck_assert_uint_eq(m.n_chunks, 1);
	ck_assert_int_eq(m.columns[0].type, DS_COL_INTEGER);
	ck_assert_int_eq(m.columns[1].type, DS_COL_NUMBER);
	ck_assert_int_eq(m.columns[2].type, DS_COL_STRING);
	ck_assert_int_eq(m.columns[3].type, DS_COL_STRING); /* no value at all */
	ck_assert_int_eq(m.columns[4].type, DS_COL_NUMBER);
	ck_assert_int_eq(m.columns[5].type, DS_COL_STRING);
	ck_assert_str_eq(ds_coltype_name(m.columns[1].type), "number");
	ds_manifest_free(&m);
	/* a header and no row: a version of no chunk */
	ck_assert_int_eq(import("csv", &p, "a,b\n", 4, 0, &s, &m, &err), 0);
	ck_assert_uint_eq(m.n_chunks, 0);
	ck_assert_uint_eq(m.rows, 0);
	ck_assert_uint_eq(m.n_columns, 2);
	ds_manifest_free(&m);
	ck_assert_int_eq(import("csv", &p, "a,b", 3, 0, &s, &m, &err), 0);
	ck_assert_uint_eq(m.n_columns, 2);
	ds_manifest_free(&m);
	store_free(&s);
}
END_TEST

static void
expect_refused(const char *format, const void *in, size_t n, size_t piece, int code,
               const char *text)
{
	ds_params p;
	struct store s = {0};
	ds_manifest m;
	char *err = NULL;

	small_params(&p);
	ck_assert_int_eq(import(format, &p, in, n, piece, &s, &m, &err), code);
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err, text) != NULL, "\"%s\" not in \"%s\"", text, err);
	free(err);
	store_free(&s);
}

START_TEST(csv_refused)
{
	const char *t;

	t = "a,b\n1,2\n3\n";
	expect_refused("csv", t, strlen(t), 0, LOOM_EINVAL, "line 3: 1 fields, but the header has 2");
	/* a quoted newline is a line of its own */
	t = "a,b\n1,\"x\ny\"\n1,2,3\n";
	expect_refused("csv", t, strlen(t), 2, LOOM_EINVAL, "line 4: 3 fields");
	t = "a,b,a\n1,2,3\n";
	expect_refused("csv", t, strlen(t), 0, LOOM_EINVAL, "\"a\" appears twice (columns 1 and 3)");
	t = "a,,c\n1,2,3\n";
	expect_refused("csv", t, strlen(t), 0, LOOM_EINVAL, "line 1 (the header): column 2 has no name");
	expect_refused("csv", "", 0, 0, LOOM_EINVAL, "the input is empty");
	t = "a,b\n1,\"open\n2,3\n";
	expect_refused("csv", t, strlen(t), 0, LOOM_EINVAL, "line 2: a quoted field is not closed");
	t = "a,\"b\xff\"\n1,2\n";
	expect_refused("csv", t, strlen(t), 0, LOOM_EINVAL, "not valid UTF-8");
}
END_TEST

START_TEST(csv_row_too_long)
{
	ds_params p;
	struct store s = {0};
	ds_sink sink = {&s, put_chunk};
	ds_importer *im;
	char *err = NULL, *piece = malloc(1 << 20);
	int rv = 0;

	small_params(&p);
	im = ds_import_new("csv", &p, &sink);
	memset(piece, 'x', 1 << 20);
	ck_assert_int_eq(ds_import_feed(im, "a\n1\n2\n\"", 7, &err), 0);
	for (int i = 0; i < 70 && rv == 0; i++)
		rv = ds_import_feed(im, piece, 1 << 20, &err);
	ck_assert_int_eq(rv, LOOM_EINVAL);
	ck_assert_msg(strstr(err, "line 4: a row longer than 64 MiB") != NULL, "%s", err);
	/* the error sticks */
	ck_assert_int_eq(ds_import_feed(im, "\n", 1, &err), LOOM_EINVAL);
	ds_import_free(im);
	free(piece);
	free(err);
	store_free(&s);
}
END_TEST

/* A LOOMARR1 input of rows × names (NULL: a generated name) of elsize. */
static void
arr_input(struct buf *b, int el, const char *const *names, size_t cols, size_t rows)
{
	uint8_t h[16] = "LOOMARR1";

	h[8] = (uint8_t)el;
	h[12] = (uint8_t)cols;
	buf_add(b, h, 16);
	for (size_t i = 0; i < cols; i++) {
		size_t l = names[i] ? strlen(names[i]) : 0;
		uint8_t lb[2] = {(uint8_t)l, 0};

		buf_add(b, lb, 2);
		buf_add(b, names[i] ? names[i] : "", l);
	}
	for (size_t r = 0; r < rows; r++)
		for (size_t c = 0; c < cols; c++) {
			double v = (double)(int64_t)(rng() % 2000000 - 1000000) / 7.0;

			if (el == 4) {
				float f = (float)v;
				buf_add(b, &f, 4);
			} else {
				buf_add(b, &v, 8);
			}
		}
}

START_TEST(arrays_round_trip)
{
	static const char *const names[] = {"x", NULL, "y.z"};
	ds_params p;

	small_params(&p);
	for (int el = 4; el <= 8; el += 4) {
		struct store s = {0};
		struct buf in = {0}, out = {0}, csv = {0};
		ds_manifest m;
		char *err = NULL;
		ds_source src = {&s, get_chunk};
		const char *fmt = el == 4 ? "f32" : "f64";
		size_t rows = 40000, hl;

		arr_input(&in, el, names, 3, rows);
		hl = in.n - rows * 3 * (size_t)el;
		ck_assert_int_eq(import(fmt, &p, in.p, in.n, 1001, &s, &m, &err), 0);
		ck_assert_uint_eq(m.rows, rows);
		ck_assert_uint_eq(m.bytes, rows * 3 * (size_t)el);
		ck_assert_uint_gt(m.n_chunks, 5);
		ck_assert_str_eq(m.columns[1].name, "c1");
		ck_assert_int_eq(m.columns[0].type, DS_COL_NUMBER);
		for (size_t i = 0; i < m.n_chunks; i++)
			ck_assert_uint_eq(m.chunks[i].raw % (3 * (size_t)el), 0);
		ck_assert_int_eq(ds_checkout(&m, &src, DS_OUT_NATIVE, true, 0, SIZE_MAX, write_buf,
		                             &out, &err),
		                 0);
		ck_assert_uint_eq(out.n, in.n);
		ck_assert(memcmp(out.p, in.p, in.n) == 0);
		/* as csv: the header, then numbers that read back exactly */
		ck_assert_int_eq(ds_checkout(&m, &src, DS_OUT_CSV, true, 0, SIZE_MAX, write_buf, &csv,
		                             &err),
		                 0);
		ck_assert(strncmp(csv.p, "x,c1,y.z\n", 9) == 0);
		{
			char *q = csv.p + 9;
			const uint8_t *raw = (const uint8_t *)in.p + hl;

			for (size_t i = 0; i < rows * 3; i++) {
				char *e;

				if (el == 4) {
					float f = strtof(q, &e), g;

					memcpy(&g, raw + 4 * i, 4);
					ck_assert(f == g);
				} else {
					double d = strtod(q, &e), g;

					memcpy(&g, raw + 8 * i, 8);
					ck_assert(d == g);
				}
				ck_assert_int_eq(*e, i % 3 == 2 ? '\n' : ',');
				q = e + 1;
			}
			ck_assert_int_eq(*q, '\0');
		}
		/* refused: a partial row, a wrong element size, a short header */
		expect_refused(fmt, in.p, in.n - 3, 0, LOOM_EINVAL,
		               el == 4 ? "partial row: 9 bytes" : "partial row: 21 bytes");
		expect_refused(el == 4 ? "f64" : "f32", in.p, in.n, 0, LOOM_EINVAL,
		               "does not match format");
		expect_refused(fmt, in.p, 20, 0, LOOM_EINVAL, "ends inside its LOOMARR1 header");
		expect_refused(fmt, "a,b\n1,2\n", 8, 0, LOOM_EINVAL, "LOOMARR1");
		free(in.p);
		free(out.p);
		free(csv.p);
		ds_manifest_free(&m);
		store_free(&s);
	}
}
END_TEST

START_TEST(long_rows_alone)
{
	ds_params p;
	struct store s = {0};
	struct buf in = {0}, out = {0};
	ds_manifest m;
	char *err = NULL;
	size_t long_rows = 0;
	ds_source src = {&s, get_chunk};

	small_params(&p);
	buf_printf(&in, "k,v\n");
	for (int i = 0; i < 3000; i++) {
		if (i % 500 == 250) {
			buf_printf(&in, "%d,\"", i);
			for (int k = 0; k < 100000; k++)
				buf_add(&in, k % 97 == 0 ? "\n" : (k & 1) ? "a" : "b", 1);
			buf_add(&in, "\"\n", 2);
		} else {
			buf_printf(&in, "%d,%d\n", i, i * i);
		}
	}
	ck_assert_int_eq(import("csv", &p, in.p, in.n, 5000, &s, &m, &err), 0);
	ck_assert_uint_eq(m.rows, 3000);
	for (size_t i = 0; i < m.n_chunks; i++)
		if (m.chunks[i].raw > p.max_size)
			ck_assert_uint_eq(m.chunks[i].rows, 1);
	check_row_aligned(&m, &s, &p, &long_rows);
	ck_assert_int_eq(ds_checkout(&m, &src, DS_OUT_CSV, true, 0, SIZE_MAX, write_buf, &out, &err),
	                 0);
	ck_assert_uint_eq(out.n, in.n);
	ck_assert(memcmp(out.p, in.p, in.n) == 0);
	free(in.p);
	free(out.p);
	ds_manifest_free(&m);
	store_free(&s);
}
END_TEST

START_TEST(sink_error_aborts)
{
	ds_params p;
	struct store s = {0};
	struct buf in = {0};
	ds_manifest m;
	char *err = NULL;

	small_params(&p);
	buf_printf(&in, "id,x,y\n");
	csv_rows(&in, 0, 50000);
	s.fail_at = 3;
	ck_assert_int_eq(import("csv", &p, in.p, in.n, 8192, &s, &m, &err), LOOM_ERANGE);
	ck_assert_str_eq(err, "quota exceeded: test");
	ck_assert_uint_eq(s.puts, 3);
	ck_assert_uint_eq(s.n, 2);
	free(err);
	free(in.p);
	store_free(&s);
}
END_TEST

static void
fake_manifest(ds_manifest *m, size_t n, uint32_t seed)
{
	memset(m, 0, sizeof(*m));
	m->dataset = strdup("d");
	m->format = strdup("csv");
	m->n_columns = 2;
	m->columns = calloc(2, sizeof(ds_column));
	m->columns[0].name = strdup("a");
	m->columns[0].type = DS_COL_INTEGER;
	m->columns[1].name = strdup("b \"é\"");
	m->columns[1].type = DS_COL_STRING;
	m->n_chunks = n;
	m->chunks = calloc(n ? n : 1, sizeof(ds_chunk));
	for (size_t i = 0; i < n; i++) {
		ds_chunk *c = &m->chunks[i];
		uint32_t v = (uint32_t)i + seed;

		ds_sha256(&v, 4, &c->hash);
		c->rows = 10 + i % 5;
		c->raw = 1000 + (uint32_t)i;
		c->stored = 300 + (uint32_t)i % 7;
		m->rows += c->rows;
		m->bytes += c->raw;
		m->stored += c->stored;
	}
	m->author = strdup("alice");
	m->message = strdup("first import");
	m->time_ms = 1700000000123;
}

START_TEST(manifest_round_trip)
{
	ds_manifest m, d;
	void *blob, *blob2;
	size_t len, len2;
	char id[DS_HEX_LEN + 1], id2[DS_HEX_LEN + 1], *err = NULL;
	ds_hash h;

	fake_manifest(&m, 100, 0);
	m.n_parents = 1;
	m.parents = calloc(1, sizeof(char *));
	m.parents[0] = strdup("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	ck_assert_int_eq(ds_manifest_encode(&m, &blob, &len, id), 0);
	ck_assert(memcmp(blob, "LOOMDSM1", 8) == 0);
	ds_sha256(blob, len, &h);
	ds_hash_hex(&h, id2);
	ck_assert_str_eq(id, id2);
	ck_assert_int_eq(ds_manifest_decode(blob, len, &d, &err), 0);
	ck_assert_str_eq(d.dataset, "d");
	ck_assert_str_eq(d.format, "csv");
	ck_assert_str_eq(d.columns[1].name, "b \"é\"");
	ck_assert_int_eq(d.columns[1].type, DS_COL_STRING);
	ck_assert_uint_eq(d.n_chunks, 100);
	ck_assert_mem_eq(d.chunks, m.chunks, 100 * sizeof(ds_chunk));
	ck_assert_uint_eq(d.rows, m.rows);
	ck_assert_str_eq(d.parents[0], m.parents[0]);
	ck_assert_str_eq(d.author, "alice");
	ck_assert_str_eq(d.message, "first import");
	ck_assert_int_eq(d.time_ms, 1700000000123);
	/* the id is stable: the decoded manifest encodes to the same blob */
	ck_assert_int_eq(ds_manifest_encode(&d, &blob2, &len2, id2), 0);
	ck_assert_str_eq(id, id2);
	ck_assert_uint_eq(len, len2);
	ck_assert(memcmp(blob, blob2, len) == 0);
	free(blob2);
	/* its metadata as JSON */
	{
		json_t *j = ds_manifest_json(&d);
		char *s = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);

		ck_assert_ptr_nonnull(strstr(s, "\"time\":\"2023-11-14T22:13:20.123Z\""));
		ck_assert_ptr_nonnull(strstr(s, "\"chunks\":100"));
		ck_assert_ptr_nonnull(strstr(s, "{\"name\":\"a\",\"type\":\"integer\"}"));
		ck_assert_ptr_null(strstr(s, "time_ms"));
		free(s);
		json_decref(j);
	}
	ds_manifest_free(&d);
	/* every truncation is refused */
	for (size_t n = 0; n < len; n++) {
		ck_assert_int_eq(ds_manifest_decode(blob, n, &d, &err), LOOM_ECORRUPT);
		ck_assert_ptr_nonnull(err);
	}
	/* a flipped byte in the chunk table: another id, or refused */
	{
		uint8_t *b = blob;
		size_t at = len - 100 * 48 + 5 * 48 + 3; /* chunk 5's hash */

		b[at] ^= 1;
		ds_sha256(blob, len, &h);
		ds_hash_hex(&h, id2);
		ck_assert_str_ne(id, id2);
		ck_assert_int_eq(ds_manifest_decode(blob, len, &d, &err), 0);
		ck_assert_int_ne(d.chunks[5].hash.b[3], m.chunks[5].hash.b[3]);
		ds_manifest_free(&d);
		b[at] ^= 1;
		b[len - 100 * 48 + 5 * 48 + 32] ^= 1; /* its rows: the sums disagree */
		ck_assert_int_eq(ds_manifest_decode(blob, len, &d, &err), LOOM_ECORRUPT);
		ck_assert_ptr_nonnull(strstr(err, "rows"));
		b[len - 100 * 48 + 5 * 48 + 32] ^= 1;
		b[len - 1] ^= 0x40; /* the last stored count */
		ck_assert_int_eq(ds_manifest_decode(blob, len, &d, &err), LOOM_ECORRUPT);
		b[len - 1] ^= 0x40;
		ck_assert_int_eq(ds_manifest_decode(blob, len, &d, &err), 0);
		ds_manifest_free(&d);
	}
	/* a changed field changes the id */
	free(m.message);
	m.message = strdup("other");
	ck_assert_int_eq(ds_manifest_encode(&m, &blob2, &len2, id2), 0);
	ck_assert_str_ne(id, id2);
	free(blob2);
	free(blob);
	free(err);
	ds_manifest_free(&m);
}
END_TEST

/* The content id: what the rows are, not who made them when or why. */
static void
content_of(const ds_manifest *m, char content[DS_HEX_LEN + 1], char id[DS_HEX_LEN + 1])
{
	void *blob;
	size_t len;
	char c2[DS_HEX_LEN + 1];

	ck_assert_int_eq(ds_manifest_encode_ids(m, &blob, &len, id, content), 0);
	ck_assert_int_eq(ds_manifest_content_id(m, c2), 0);
	ck_assert_str_eq(content, c2);
	free(blob);
}

START_TEST(content_id)
{
	ds_manifest m, d, h;
	void *blob;
	size_t len;
	char c0[DS_HEX_LEN + 1], id0[DS_HEX_LEN + 1], c[DS_HEX_LEN + 1], id[DS_HEX_LEN + 1];
	char *err = NULL;

	fake_manifest(&m, 200, 0);
	content_of(&m, c0, id0);
	ck_assert_int_eq(ds_hash_parse(c0, &(ds_hash){0}), 0);
	ck_assert_str_ne(c0, id0);

	/* stable across message, author, time, parents and the dataset's name */
	free(m.message);
	m.message = strdup("the same rows again");
	free(m.author);
	m.author = strdup("bob");
	m.time_ms += 60000;
	m.n_parents = 1;
	m.parents = calloc(1, sizeof(char *));
	m.parents[0] = strdup(id0);
	free(m.dataset);
	m.dataset = strdup("another");
	content_of(&m, c, id);
	ck_assert_str_ne(id, id0);
	ck_assert_str_eq(c, c0);

	/* a decoded manifest gives the same; its head alone has no table */
	ck_assert_int_eq(ds_manifest_encode(&m, &blob, &len, id), 0);
	ck_assert_int_eq(ds_manifest_decode(blob, len, &d, &err), 0);
	ck_assert_int_eq(ds_manifest_content_id(&d, c), 0);
	ck_assert_str_eq(c, c0);
	ck_assert_int_eq(ds_manifest_decode_head(blob, len, &h, &err), 0);
	ck_assert_ptr_null(h.chunks);
	ck_assert_uint_eq(h.n_chunks, 200);
	ck_assert_uint_eq(h.rows, m.rows);
	ck_assert_str_eq(h.message, "the same rows again");
	ds_manifest_free(&h);
	/* a table one record short is refused by the head's decoder too */
	ck_assert_int_eq(ds_manifest_decode_head(blob, len - 48, &h, &err), LOOM_ECORRUPT);
	ck_assert_ptr_nonnull(strstr(err, "do not fill"));
	free(blob);

	/* the same content: the unchanged diff is what ds_diff_compute gives */
	{
		ds_diff full, quick;
		json_t *a, *b;

		ck_assert_int_eq(ds_diff_compute(&d, &m, &full), 0);
		ds_diff_unchanged(m.rows, m.n_chunks, &quick);
		a = ds_diff_json(&full, 100);
		b = ds_diff_json(&quick, 100);
		ck_assert(json_equal(a, b));
		ck_assert(json_is_true(json_object_get(b, "same")));
		json_decref(a);
		json_decref(b);
		ds_diff_free(&full);
		ds_diff_free(&quick);
	}
	ds_manifest_free(&d);

	/* any change of a chunk, a column or the format changes it */
	m.chunks[17].hash.b[5] ^= 1;
	content_of(&m, c, id);
	ck_assert_str_ne(c, c0);
	m.chunks[17].hash.b[5] ^= 1;
	content_of(&m, c, id);
	ck_assert_str_eq(c, c0);
	m.chunks[0].rows++;
	content_of(&m, c, id);
	ck_assert_str_ne(c, c0);
	m.chunks[0].rows--;
	m.chunks[199].raw++;
	content_of(&m, c, id);
	ck_assert_str_ne(c, c0);
	m.chunks[199].raw--;
	m.chunks[100].stored++;
	content_of(&m, c, id);
	ck_assert_str_ne(c, c0);
	m.chunks[100].stored--;
	m.n_chunks--;
	content_of(&m, c, id);
	ck_assert_str_ne(c, c0);
	m.n_chunks++;
	m.columns[0].type = DS_COL_NUMBER;
	content_of(&m, c, id);
	ck_assert_str_ne(c, c0);
	m.columns[0].type = DS_COL_INTEGER;
	free(m.columns[1].name);
	m.columns[1].name = strdup("b2");
	content_of(&m, c, id);
	ck_assert_str_ne(c, c0);
	free(m.columns[1].name);
	m.columns[1].name = strdup("b \"é\"");
	free(m.format);
	m.format = strdup("f64");
	content_of(&m, c, id);
	ck_assert_str_ne(c, c0);
	free(m.format);
	m.format = strdup("csv");
	content_of(&m, c, id);
	ck_assert_str_eq(c, c0);
	free(m.format);
	m.format = strdup("xml");
	ck_assert_int_eq(ds_manifest_content_id(&m, c), LOOM_EINVAL);
	ds_manifest_free(&m);
	free(err);
}
END_TEST

/* A table of 10^5 chunks (4.8 MB: the huge-page allocation) round trip. */
START_TEST(manifest_large_table)
{
	ds_manifest m, d;
	void *blob;
	size_t len;
	char id[DS_HEX_LEN + 1], *err = NULL;

	fake_manifest(&m, 100000, 3);
	ck_assert_int_eq(ds_manifest_encode(&m, &blob, &len, id), 0);
	ck_assert_int_eq(ds_manifest_decode(blob, len, &d, &err), 0);
	ck_assert_uint_eq(d.n_chunks, 100000);
	ck_assert_mem_eq(d.chunks, m.chunks, 100000 * sizeof(ds_chunk));
	ds_manifest_free(&d);
	/* a bad record deep in the table is found */
	((uint8_t *)blob)[len - 48 * 500 + 32] = 0; /* rows of chunk 99500: low byte */
	((uint8_t *)blob)[len - 48 * 500 + 33] = 0;
	ck_assert_int_eq(ds_manifest_decode(blob, len, &d, &err), LOOM_ECORRUPT);
	ck_assert_ptr_nonnull(strstr(err, "chunk 99500"));
	free(blob);
	free(err);
	ds_manifest_free(&m);
}
END_TEST

/* ds_checkout_buf writes what ds_checkout writes, by several threads. */
START_TEST(checkout_buf_same)
{
	struct store s = {0};
	struct buf in = {0}, a = {0};
	ds_manifest m;
	ds_params p;
	ds_source src = {&s, get_chunk};
	char *err = NULL;
	size_t len;

	small_params(&p);
	buf_printf(&in, "id,x,name\n");
	csv_rows(&in, 0, 20000);
	ck_assert_int_eq(import("csv", &p, in.p, in.n, 0, &s, &m, &err), 0);
	ck_assert_uint_gt(m.n_chunks, 20);
	for (int t = 0; t <= 4; t++) {
		static const size_t ranges[][2] = {{0, SIZE_MAX}, {3, 7}, {0, 1}, {5, 0}};
		for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
			size_t first = ranges[r][0], count = ranges[r][1];
			bool header = first == 0;
			char *b;

			a.n = 0;
			ck_assert_int_eq(ds_checkout(&m, &src, DS_OUT_CSV, header, first, count,
			                             write_buf, &a, &err), 0);
			ck_assert_int_eq(ds_checkout_size(&m, DS_OUT_CSV, header, first, count, &len), 0);
			ck_assert_uint_eq(len, a.n);
			b = malloc(len + 1);
			ck_assert_int_eq(ds_checkout_buf(&m, &src, DS_OUT_CSV, header, first, count, t, b,
			                                 len, &err), 0);
			ck_assert(memcmp(a.p, b, len) == 0);
			/* a buffer of another size is refused */
			ck_assert_int_eq(ds_checkout_buf(&m, &src, DS_OUT_CSV, header, first, count, t, b,
			                                 len + 1, &err), LOOM_EINVAL);
			free(b);
		}
	}
	ck_assert_uint_eq(a.n, 0); /* the last range: no chunk, no header */
	/* the whole file is the input */
	a.n = 0;
	ck_assert_int_eq(ds_checkout(&m, &src, DS_OUT_CSV, true, 0, SIZE_MAX, write_buf, &a, &err),
	                 0);
	ck_assert_uint_eq(a.n, in.n);
	ck_assert(memcmp(a.p, in.p, in.n) == 0);
	/* a missing chunk: the earliest is named */
	{
		char *b;
		ck_assert_int_eq(ds_checkout_size(&m, DS_OUT_CSV, true, 0, SIZE_MAX, &len), 0);
		b = malloc(len);
		s.v[s.n - 1].hash.b[0] ^= 0xff; /* some chunk can no longer be found */
		ck_assert_int_eq(ds_checkout_buf(&m, &src, DS_OUT_CSV, true, 0, SIZE_MAX, 3, b, len,
		                                 &err), LOOM_ENOENT);
		ck_assert_ptr_nonnull(strstr(err, "no such chunk"));
		s.v[s.n - 1].hash.b[0] ^= 0xff;
		free(b);
	}
	ds_manifest_free(&m);
	store_free(&s);
	free(in.p);
	free(a.p);
	free(err);
}
END_TEST

/* f32 rows as csv numbers have no size before they are written. */
START_TEST(checkout_size_numbers)
{
	ds_manifest m;
	size_t len = 1;

	fake_manifest(&m, 3, 0);
	free(m.format);
	m.format = strdup("f32");
	ck_assert_int_eq(ds_checkout_size(&m, DS_OUT_CSV, true, 0, SIZE_MAX, &len), LOOM_ENOTSUP);
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(ds_checkout_size(&m, DS_OUT_NATIVE, false, 1, 1, &len), 0);
	ck_assert_uint_eq(len, m.chunks[1].raw);
	ds_manifest_free(&m);
}
END_TEST

START_TEST(checkout_refuses_corrupt)
{
	ds_params p;
	struct store s = {0};
	struct buf in = {0}, out = {0};
	ds_manifest m;
	char *err = NULL;
	ds_source src = {&s, get_chunk};
	struct blob *b;
	size_t zn;
	void *z;

	small_params(&p);
	buf_printf(&in, "id,x,y\n");
	csv_rows(&in, 0, 20000);
	ck_assert_int_eq(import("csv", &p, in.p, in.n, 0, &s, &m, &err), 0);
	ck_assert_uint_gt(m.n_chunks, 3);
	/* chunk 2 replaced by other bytes of the same length */
	b = store_find(&s, &m.chunks[2].hash);
	{
		uint8_t *raw = malloc(m.chunks[2].raw);

		memset(raw, 'z', m.chunks[2].raw);
		z = malloc(ZSTD_compressBound(m.chunks[2].raw));
		zn = ZSTD_compress(z, ZSTD_compressBound(m.chunks[2].raw), raw, m.chunks[2].raw, 1);
		free(raw);
	}
	void *keep = b->z;
	size_t keepn = b->zn;
	b->z = z;
	b->zn = zn;
	ck_assert_int_eq(ds_checkout(&m, &src, DS_OUT_CSV, true, 0, SIZE_MAX, write_buf, &out, &err),
	                 LOOM_ECORRUPT);
	ck_assert_msg(strstr(err, "chunk 2 (") && strstr(err, "does not match its hash"), "%s", err);
	/* garbage that is no zstd frame */
	memset(z, 0x55, zn);
	ck_assert_int_eq(ds_checkout(&m, &src, DS_OUT_CSV, false, 2, 1, write_buf, &out, &err),
	                 LOOM_ECORRUPT);
	ck_assert_ptr_nonnull(strstr(err, "does not decompress"));
	free(z);
	b->z = keep;
	b->zn = keepn;
	/* a missing chunk */
	m.chunks[1].hash.b[0] ^= 1;
	ck_assert_int_eq(ds_checkout(&m, &src, DS_OUT_CSV, false, 0, 3, write_buf, &out, &err),
	                 LOOM_ENOENT);
	ck_assert_msg(strstr(err, "chunk 1 (") && strstr(err, "no such chunk"), "%s", err);
	m.chunks[1].hash.b[0] ^= 1;
	/* a range: chunks 1 and 2 without the header */
	free(out.p);
	out = (struct buf){0};
	ck_assert_int_eq(ds_checkout(&m, &src, DS_OUT_CSV, false, 1, 2, write_buf, &out, &err), 0);
	ck_assert_uint_eq(out.n, m.chunks[1].raw + m.chunks[2].raw);
	ck_assert(memcmp(out.p, in.p + 7 + m.chunks[0].raw, out.n) == 0);
	ck_assert_int_eq(ds_checkout(&m, &src, DS_OUT_CSV, false, m.n_chunks + 1, 1, write_buf, &out,
	                             &err),
	                 LOOM_ERANGE);
	free(out.p);
	free(in.p);
	free(err);
	ds_manifest_free(&m);
	store_free(&s);
}
END_TEST

/* ------------------------------------------------------------------ diff */

/* A manifest of chunks with the hashes of ids (rows: 10 + id % 5). */
static void
ids_manifest(ds_manifest *m, const uint32_t *ids, size_t n)
{
	memset(m, 0, sizeof(*m));
	m->format = strdup("csv");
	m->n_columns = 1;
	m->columns = calloc(1, sizeof(ds_column));
	m->columns[0].name = strdup("a");
	m->columns[0].type = DS_COL_INTEGER;
	m->chunks = calloc(n ? n : 1, sizeof(ds_chunk));
	m->n_chunks = n;
	for (size_t i = 0; i < n; i++) {
		ds_sha256(&ids[i], 4, &m->chunks[i].hash);
		m->chunks[i].rows = 10 + ids[i] % 5;
		m->chunks[i].raw = 100;
		m->chunks[i].stored = 40 + ids[i] % 3;
		m->rows += m->chunks[i].rows;
	}
}

static void
check_counts(const ds_manifest *a, const ds_manifest *b, const ds_diff *d)
{
	uint64_t ar = 0, br = 0;
	size_t ac = 0, bc = 0;

	ck_assert_uint_eq(d->rows_same + d->rows_changed + d->rows_removed, a->rows);
	ck_assert_uint_eq(d->rows_same + d->rows_changed + d->rows_added, b->rows);
	ck_assert_int_eq((int64_t)d->rows_added - (int64_t)d->rows_removed,
	                 (int64_t)b->rows - (int64_t)a->rows);
	for (size_t i = 0; i < d->n_hunks; i++) {
		const ds_hunk *h = &d->hunks[i];

		ck_assert_uint_ge(h->a_chunk, ac);
		ck_assert_uint_ge(h->b_chunk, bc);
		ck_assert_uint_ge(h->a_row, ar);
		ck_assert_int_eq(h->op, h->a_chunks == 0   ? DS_ADDED
		                        : h->b_chunks == 0 ? DS_REMOVED
		                                           : DS_CHANGED);
		ac = h->a_chunk + h->a_chunks;
		bc = h->b_chunk + h->b_chunks;
		ar = h->a_row + h->a_rows;
		br = h->b_row + h->b_rows;
		ck_assert_uint_le(ac, a->n_chunks);
		ck_assert_uint_le(bc, b->n_chunks);
	}
	(void)br;
}

static void
diff_ids(const uint32_t *a, size_t na, const uint32_t *b, size_t nb, ds_manifest *ma,
         ds_manifest *mb, ds_diff *d)
{
	ids_manifest(ma, a, na);
	ids_manifest(mb, b, nb);
	ck_assert_int_eq(ds_diff_compute(ma, mb, d), 0);
	check_counts(ma, mb, d);
}

START_TEST(diff_cases)
{
	uint32_t a[100], b[110];
	ds_manifest ma, mb;
	ds_diff d;

	for (uint32_t i = 0; i < 100; i++)
		a[i] = i;
	/* same */
	diff_ids(a, 100, a, 100, &ma, &mb, &d);
	ck_assert(d.same);
	ck_assert_uint_eq(d.n_hunks, 0);
	ck_assert_uint_eq(d.chunks_same, 100);
	ck_assert_uint_eq(d.rows_same, ma.rows);
	ck_assert_uint_eq(d.bytes_new, 0);
	ds_diff_free(&d), ds_manifest_free(&ma), ds_manifest_free(&mb);

	/* insert 2 after 50 */
	memcpy(b, a, 50 * 4);
	b[50] = 1000;
	b[51] = 1001;
	memcpy(b + 52, a + 50, 50 * 4);
	diff_ids(a, 100, b, 102, &ma, &mb, &d);
	ck_assert(!d.same);
	ck_assert_uint_eq(d.n_hunks, 1);
	ck_assert_int_eq(d.hunks[0].op, DS_ADDED);
	ck_assert_uint_eq(d.hunks[0].b_chunk, 50);
	ck_assert_uint_eq(d.hunks[0].b_chunks, 2);
	ck_assert_uint_eq(d.hunks[0].a_chunk, 50);
	ck_assert_uint_eq(d.rows_added, mb.chunks[50].rows + mb.chunks[51].rows);
	ck_assert_uint_eq(d.rows_removed, 0);
	ck_assert_uint_eq(d.bytes_new, mb.chunks[50].stored + mb.chunks[51].stored);
	ck_assert_uint_eq(d.chunks_same, 100);
	ds_diff_free(&d), ds_manifest_free(&ma), ds_manifest_free(&mb);

	/* delete 3 at 10 and change 1 at 70 */
	memcpy(b, a, 10 * 4);
	memcpy(b + 10, a + 13, 87 * 4);
	b[70 - 3] = 5000;
	diff_ids(a, 100, b, 97, &ma, &mb, &d);
	ck_assert_uint_eq(d.n_hunks, 2);
	ck_assert_int_eq(d.hunks[0].op, DS_REMOVED);
	ck_assert_uint_eq(d.hunks[0].a_chunk, 10);
	ck_assert_uint_eq(d.hunks[0].a_chunks, 3);
	ck_assert_int_eq(d.hunks[1].op, DS_CHANGED);
	ck_assert_uint_eq(d.hunks[1].a_chunk, 70);
	ck_assert_uint_eq(d.hunks[1].b_chunk, 67);
	{
		uint64_t r = 0;

		for (size_t k = 0; k < 70; k++)
			r += ma.chunks[k].rows;
		ck_assert_uint_eq(d.hunks[1].a_row, r);
		ck_assert_uint_eq(d.hunks[1].b_row, r - ma.chunks[10].rows - ma.chunks[11].rows -
		                                        ma.chunks[12].rows);
	}
	ds_diff_free(&d), ds_manifest_free(&ma), ds_manifest_free(&mb);

	/* append */
	memcpy(b, a, 100 * 4);
	for (uint32_t i = 0; i < 10; i++)
		b[100 + i] = 2000 + i;
	diff_ids(a, 100, b, 110, &ma, &mb, &d);
	ck_assert_uint_eq(d.n_hunks, 1);
	ck_assert_int_eq(d.hunks[0].op, DS_ADDED);
	ck_assert_uint_eq(d.hunks[0].a_chunk, 100);
	ck_assert_uint_eq(d.hunks[0].b_chunk, 100);
	ck_assert_uint_eq(d.hunks[0].a_row, ma.rows);
	ck_assert_uint_eq(d.hunks[0].b_row, ma.rows);
	ck_assert_uint_eq(d.rows_added, mb.rows - ma.rows);
	{
		json_t *j = ds_diff_json(&d, 10);
		char *s = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);

		ck_assert_ptr_nonnull(strstr(s, "\"op\":\"added\""));
		ck_assert_ptr_nonnull(strstr(s, "\"same\":false"));
		ck_assert_ptr_null(strstr(s, "hunks_truncated"));
		free(s);
		json_decref(j);
		j = ds_diff_json(&d, 0);
		ck_assert(json_is_true(json_object_get(j, "hunks_truncated")));
		ck_assert_uint_eq(json_array_size(json_object_get(j, "hunks")), 0);
		json_decref(j);
	}
	ds_diff_free(&d), ds_manifest_free(&ma), ds_manifest_free(&mb);

	/* against nothing: all added; to nothing: all removed */
	diff_ids(a, 0, a, 100, &ma, &mb, &d);
	ck_assert_uint_eq(d.n_hunks, 1);
	ck_assert_uint_eq(d.rows_added, mb.rows);
	ds_diff_free(&d), ds_manifest_free(&ma), ds_manifest_free(&mb);
	diff_ids(a, 100, a, 0, &ma, &mb, &d);
	ck_assert_int_eq(d.hunks[0].op, DS_REMOVED);
	ds_diff_free(&d), ds_manifest_free(&ma), ds_manifest_free(&mb);

	/* columns: added, removed, retyped */
	ids_manifest(&ma, a, 10);
	ids_manifest(&mb, a, 10);
	mb.columns = realloc(mb.columns, 2 * sizeof(ds_column));
	mb.columns[0].type = DS_COL_STRING;
	mb.columns[1].name = strdup("new");
	mb.columns[1].type = DS_COL_NUMBER;
	mb.n_columns = 2;
	ck_assert_int_eq(ds_diff_compute(&ma, &mb, &d), 0);
	ck_assert(!d.same);
	ck_assert_uint_eq(d.n_cols_added, 1);
	ck_assert_str_eq(d.cols_added[0], "new");
	ck_assert_uint_eq(d.n_cols_changed, 1);
	ck_assert_str_eq(d.cols_changed[0], "a");
	ds_diff_free(&d);
	ck_assert_int_eq(ds_diff_compute(&mb, &ma, &d), 0);
	ck_assert_str_eq(d.cols_removed[0], "new");
	ds_diff_free(&d), ds_manifest_free(&ma), ds_manifest_free(&mb);
}
END_TEST

START_TEST(diff_coarse)
{
	size_t n = 10000;
	uint32_t *a = malloc(n * 4), *b = malloc(n * 4);
	ds_manifest ma, mb;
	ds_diff d;

	for (uint32_t i = 0; i < n; i++) {
		a[i] = i;
		b[i] = i < 100 || i >= n - 100 ? i : (uint32_t)(i + n); /* the middle all new */
	}
	diff_ids(a, n, b, n, &ma, &mb, &d);
	ck_assert(d.coarse);
	ck_assert_uint_eq(d.n_hunks, 1);
	ck_assert_int_eq(d.hunks[0].op, DS_CHANGED);
	ck_assert_uint_eq(d.hunks[0].a_chunk, 100);
	ck_assert_uint_eq(d.hunks[0].a_chunks, n - 200);
	ck_assert_uint_eq(d.chunks_same, 200);
	ds_diff_free(&d), ds_manifest_free(&ma), ds_manifest_free(&mb);
	/* under the bound: exact */
	for (uint32_t i = 0; i < n; i++)
		b[i] = i % 10 == 5 ? i + (uint32_t)n : i;
	diff_ids(a, n, b, n, &ma, &mb, &d);
	ck_assert(!d.coarse);
	ck_assert_uint_eq(d.n_hunks, n / 10);
	ck_assert_uint_eq(d.chunks_same, n - n / 10);
	ds_diff_free(&d), ds_manifest_free(&ma), ds_manifest_free(&mb);
	free(a);
	free(b);
}
END_TEST

/* The alignment is a longest common subsequence: against dynamic
 * programming on small random lists over a small alphabet. */
START_TEST(diff_is_lcs)
{
	for (int t = 0; t < 300; t++) {
		uint32_t a[40], b[40];
		size_t na = rng() % 40, nb = rng() % 40;
		unsigned L[41][41];
		ds_manifest ma, mb;
		ds_diff d;

		for (size_t i = 0; i < na; i++)
			a[i] = (uint32_t)(rng() % 6);
		for (size_t j = 0; j < nb; j++)
			b[j] = (uint32_t)(rng() % 6);
		for (size_t i = 0; i <= na; i++)
			for (size_t j = 0; j <= nb; j++)
				L[i][j] = i == 0 || j == 0 ? 0
				          : a[i - 1] == b[j - 1]
				              ? L[i - 1][j - 1] + 1
				              : (L[i - 1][j] > L[i][j - 1] ? L[i - 1][j] : L[i][j - 1]);
		diff_ids(a, na, b, nb, &ma, &mb, &d);
		ck_assert_uint_eq(d.chunks_same, L[na][nb]);
		ds_diff_free(&d), ds_manifest_free(&ma), ds_manifest_free(&mb);
	}
}
END_TEST

START_TEST(diff_import_edits)
{
	ds_params p;
	struct store s = {0};
	struct buf a = {0}, b = {0};
	ds_manifest ma, mb;
	ds_diff d;
	char *err = NULL;

	small_params(&p);
	buf_printf(&a, "id,x,y\n");
	csv_rows(&a, 0, 100000);
	buf_printf(&b, "id,x,y\n");
	csv_rows(&b, 0, 30000);
	csv_rows(&b, 31000, 60000); /* 1000 rows gone */
	buf_printf(&b, "1,2,3\n");  /* one changed */
	csv_rows(&b, 60001, 100000);
	csv_rows(&b, 200000, 201000); /* appended */
	ck_assert_int_eq(import("csv", &p, a.p, a.n, 0, &s, &ma, &err), 0);
	ck_assert_int_eq(import("csv", &p, b.p, b.n, 0, &s, &mb, &err), 0);
	ck_assert_int_eq(ds_diff_compute(&ma, &mb, &d), 0);
	check_counts(&ma, &mb, &d);
	ck_assert(!d.coarse);
	ck_assert_uint_eq(d.n_hunks, 3);
	ck_assert_uint_ge(d.rows_removed, 1000);
	ck_assert_uint_le(d.bytes_new, mb.stored / 10);
	ck_assert_uint_ge(d.rows_same, 90000);
	ds_diff_free(&d);
	free(a.p);
	free(b.p);
	ds_manifest_free(&ma);
	ds_manifest_free(&mb);
	store_free(&s);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("dslib");
	TCase *tc = tcase_create("dslib");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, hashes);
	tcase_add_test(tc, params);
	tcase_add_test(tc, cdc_deterministic);
	tcase_add_test(tc, quoted_newlines_aligned);
	tcase_add_test(tc, boundaries_stable);
	tcase_add_test(tc, crlf_same_chunks);
	tcase_add_test(tc, types);
	tcase_add_test(tc, csv_refused);
	tcase_add_test(tc, csv_row_too_long);
	tcase_add_test(tc, arrays_round_trip);
	tcase_add_test(tc, long_rows_alone);
	tcase_add_test(tc, sink_error_aborts);
	tcase_add_test(tc, manifest_round_trip);
	tcase_add_test(tc, checkout_refuses_corrupt);
	tcase_add_test(tc, content_id);
	tcase_add_test(tc, manifest_large_table);
	tcase_add_test(tc, checkout_buf_same);
	tcase_add_test(tc, checkout_size_numbers);
	tcase_add_test(tc, diff_cases);
	tcase_add_test(tc, diff_coarse);
	tcase_add_test(tc, diff_is_lcs);
	tcase_add_test(tc, diff_import_edits);
	suite_add_tcase(s, tc);
	return tu_run(s);
}

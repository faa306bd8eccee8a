/* Import (dslib.h): the input's rows cut into content-defined chunks,
 * each hashed and compressed by a small pool of workers and handed to the
 * sink in order from the calling thread.
 *
 * The calling thread copies the input into one buffer, scans it (csv:
 * quotes, fields, "\r\n" folded to "\n" in place, types inferred; f32/f64:
 * fixed rows) and runs the Gear chunker over the rows' bytes; when a cut
 * falls in a row, the chunk ends at that row's end and its bytes go to a
 * free slot of a ring.  Workers take the ring's slots in order, hash and
 * compress them; the calling thread gives finished slots to put_chunk in
 * ring order.  Memory: the buffer (a few max_size, or the longest row) and
 * 2 slots per worker. */
#include "config.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <zstd.h>

#include <loom/error.h>

#include "ds-internal.h"
#include "dslib.h"

enum { S_FREE, S_QUEUED, S_BUSY, S_DONE };

struct slot {
	uint8_t *raw, *z;
	size_t rawcap, rawlen, zcap, zlen;
	uint64_t rows;
	ds_hash hash;
	int state;
	int err;
};

/* The csv scanner's modes: at a field's start, in an unquoted field, in a
 * quoted one, just after a quote in a quoted one, after the closing quote. */
enum { M_FIELD, M_UNQ, M_QUO, M_QUO_Q, M_AFTER };

struct ds_importer {
	ds_params p;
	ds_sink sink;
	int elsize; /* 0: csv, 4, 8 */
	char format[4];
	int rv;     /* sticky: the first error */
	char *msg;
	bool finished;

	/* columns: names, and for csv the inferred type (0: no value yet) */
	ds_column *cols;
	size_t ncols;
	bool header_done, bom_done;
	size_t rowsize; /* f32/f64: ncols × elsize */

	/* The buffer: [chunk_start, w) the rows of the chunk being cut
	 * (normalized), [row_start, len) the row being scanned (raw), r the
	 * scan position. */
	uint8_t *buf;
	size_t cap, len, chunk_start, w, row_start, r;
	/* csv scanner state */
	int mode;
	size_t field_start, qend;
	bool esc;
	uint32_t nfields;
	uint64_t line, row_line;

	/* chunker state for the chunk at chunk_start */
	ds_cdc cdc;
	size_t gpos, cut;
	uint64_t chunk_rows;

	/* results */
	ds_chunk *chunks;
	size_t n_chunks, chunks_cap;
	uint64_t rows, bytes, stored;

	/* the pool */
	pthread_mutex_t mu;
	pthread_cond_t cv_work, cv_done;
	pthread_t *th;
	int nth, started;
	bool stop;
	struct slot *slots;
	size_t nslots;
	uint64_t head, tail, qnext;
};

/* ------------------------------------------------------------------ pool */

static void *
worker(void *arg)
{
	ds_importer *im = arg;
	ZSTD_CCtx *cctx = ZSTD_createCCtx();

	pthread_mutex_lock(&im->mu);
	for (;;) {
		struct slot *s;
		size_t zn;

		while (!im->stop && im->qnext == im->head)
			pthread_cond_wait(&im->cv_work, &im->mu);
		if (im->qnext == im->head)
			break;
		s = &im->slots[im->qnext++ % im->nslots];
		s->state = S_BUSY;
		pthread_mutex_unlock(&im->mu);

		ds_sha256(s->raw, s->rawlen, &s->hash);
		s->err = 0;
		if (cctx == NULL) {
			s->err = LOOM_ENOMEM;
		} else {
			zn = ZSTD_compressCCtx(cctx, s->z, s->zcap, s->raw, s->rawlen,
			                       im->p.zstd_level);
			if (ZSTD_isError(zn))
				s->err = LOOM_EINTERNAL;
			else
				s->zlen = zn;
		}

		pthread_mutex_lock(&im->mu);
		s->state = S_DONE;
		pthread_cond_broadcast(&im->cv_done);
	}
	pthread_mutex_unlock(&im->mu);
	ZSTD_freeCCtx(cctx);
	return NULL;
}

static int
pool_start(ds_importer *im)
{
	int n = im->p.threads;

	if (n == 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		n = c < 1 ? 1 : c > 8 ? 8 : (int)c;
	}
	im->nslots = (size_t)n * 2 + 1;
	if ((im->slots = calloc(im->nslots, sizeof(*im->slots))) == NULL ||
	    (im->th = calloc((size_t)n, sizeof(*im->th))) == NULL)
		return LOOM_ENOMEM;
	for (int i = 0; i < n; i++) {
		if (pthread_create(&im->th[i], NULL, worker, im) != 0)
			break;
		im->nth++;
	}
	im->started = 1;
	return im->nth > 0 ? 0 : LOOM_ENOMEM;
}

static void
pool_stop(ds_importer *im)
{
	if (!im->started)
		return;
	pthread_mutex_lock(&im->mu);
	im->stop = true;
	pthread_cond_broadcast(&im->cv_work);
	pthread_mutex_unlock(&im->mu);
	for (int i = 0; i < im->nth; i++)
		pthread_join(im->th[i], NULL);
	for (size_t i = 0; i < im->nslots; i++) {
		free(im->slots[i].raw);
		free(im->slots[i].z);
	}
	free(im->slots);
	free(im->th);
	im->slots = NULL;
	im->th = NULL;
	im->started = 0;
}

static int
fail(ds_importer *im, char **err, int code, char *msg)
{
	if (im->rv == 0) {
		im->rv = code;
		im->msg = msg;
	} else {
		free(msg);
	}
	if (err != NULL) {
		free(*err);
		*err = im->msg != NULL ? strdup(im->msg) : NULL;
	}
	return im->rv;
}

/* The oldest slot to put_chunk, waiting for it when block. */
static int
drain_one(ds_importer *im, bool block, char **err)
{
	struct slot *s = &im->slots[im->tail % im->nslots];
	ds_chunk c;
	char *msg = NULL;
	int rv;

	pthread_mutex_lock(&im->mu);
	while (s->state != S_DONE) {
		if (!block) {
			pthread_mutex_unlock(&im->mu);
			return -1;
		}
		pthread_cond_wait(&im->cv_done, &im->mu);
	}
	pthread_mutex_unlock(&im->mu);
	if (s->err != 0)
		return fail(im, err, s->err,
		            strdup(s->err == LOOM_ENOMEM ? "import: out of memory for a compressor"
		                                         : "import: zstd could not compress a chunk"));
	c.hash = s->hash;
	c.rows = s->rows;
	c.raw = (uint32_t)s->rawlen;
	c.stored = (uint32_t)s->zlen;
	if (im->n_chunks == im->chunks_cap) {
		size_t n = im->chunks_cap ? im->chunks_cap * 2 : 64;
		ds_chunk *t = realloc(im->chunks, n * sizeof(*t));

		if (t == NULL)
			return fail(im, err, LOOM_ENOMEM, NULL);
		im->chunks = t;
		im->chunks_cap = n;
	}
	if ((rv = im->sink.put_chunk(im->sink.arg, &c, s->z, s->zlen, &msg)) != 0) {
		if (msg == NULL && asprintf(&msg, "import: storing chunk %zu failed: %s",
		                            im->n_chunks, loom_strerror(rv)) < 0)
			msg = NULL;
		return fail(im, err, rv, msg);
	}
	im->chunks[im->n_chunks++] = c;
	im->rows += c.rows;
	im->bytes += c.raw;
	im->stored += c.stored;
	pthread_mutex_lock(&im->mu);
	s->state = S_FREE;
	im->tail++;
	pthread_mutex_unlock(&im->mu);
	return 0;
}

/* Hand data[0, n) of rows rows to the pool. */
static int
submit(ds_importer *im, const uint8_t *data, size_t n, uint64_t rows, char **err)
{
	struct slot *s;
	int rv;

	if (!im->started && (rv = pool_start(im)) != 0)
		return fail(im, err, rv, strdup("import: cannot start the compression threads"));
	while (im->head - im->tail == im->nslots)
		if ((rv = drain_one(im, true, err)) != 0)
			return rv;
	s = &im->slots[im->head % im->nslots];
	if (s->rawcap < n) {
		size_t zb = ZSTD_compressBound(n);
		uint8_t *a = realloc(s->raw, n), *b;

		if (a == NULL)
			return fail(im, err, LOOM_ENOMEM, NULL);
		s->raw = a;
		if ((b = realloc(s->z, zb)) == NULL)
			return fail(im, err, LOOM_ENOMEM, NULL);
		s->z = b;
		s->rawcap = n;
		s->zcap = zb;
	}
	memcpy(s->raw, data, n);
	s->rawlen = n;
	s->rows = rows;
	pthread_mutex_lock(&im->mu);
	s->state = S_QUEUED;
	im->head++;
	pthread_cond_signal(&im->cv_work);
	pthread_mutex_unlock(&im->mu);
	while (im->tail < im->head) {
		rv = drain_one(im, false, err);
		if (rv < 0)
			break;
		if (rv != 0)
			return rv;
	}
	return 0;
}

static int
drain_all(ds_importer *im, char **err)
{
	int rv;

	while (im->started && im->tail < im->head)
		if ((rv = drain_one(im, true, err)) != 0)
			return rv;
	return 0;
}

/* ------------------------------------------------------------------ chunking */

static void
chunk_reset(ds_importer *im)
{
	ds_cdc_init(&im->cdc, &im->p);
	im->gpos = 0;
	im->cut = 0;
	im->chunk_rows = 0;
}

/* A row [rs, re) of the buffer was added to the chunk (csv): emit the
 * chunk when its cut falls in that row. */
static int
row_added(ds_importer *im, size_t rs, size_t re, char **err)
{
	size_t end = re - im->chunk_start;
	int rv;

	im->chunk_rows++;
	if (im->cut == 0) {
		im->cut = ds_cdc_scan(&im->cdc, im->buf + im->chunk_start, im->gpos, end);
		im->gpos = end;
		if (im->cut == 0)
			return 0;
	}
	/* a row longer than max_size is a chunk of its own */
	if (re - rs > im->p.max_size && rs > im->chunk_start) {
		if ((rv = submit(im, im->buf + im->chunk_start, rs - im->chunk_start,
		                 im->chunk_rows - 1, err)) != 0)
			return rv;
		im->chunk_start = rs;
		im->chunk_rows = 1;
	}
	if ((rv = submit(im, im->buf + im->chunk_start, re - im->chunk_start, im->chunk_rows,
	                 err)) != 0)
		return rv;
	im->chunk_start = re;
	chunk_reset(im);
	return 0;
}

/* f32/f64: cut whole rows out of [chunk_start, len); at the end, the rest. */
static int
fixed_rows(ds_importer *im, bool at_end, char **err)
{
	size_t rsz = im->rowsize;
	int rv;

	for (;;) {
		size_t avail = im->len - im->chunk_start, end;

		if (im->cut == 0 && avail > im->gpos) {
			im->cut = ds_cdc_scan(&im->cdc, im->buf + im->chunk_start, im->gpos, avail);
			im->gpos = avail;
		}
		if (im->cut == 0)
			break;
		end = (im->cut + rsz - 1) / rsz * rsz;
		if (end > avail)
			break;
		if (rsz > im->p.max_size && end > rsz) {
			if ((rv = submit(im, im->buf + im->chunk_start, end - rsz, (end - rsz) / rsz,
			                 err)) != 0)
				return rv;
			im->chunk_start += end - rsz;
			end = rsz;
		}
		if ((rv = submit(im, im->buf + im->chunk_start, end, end / rsz, err)) != 0)
			return rv;
		im->chunk_start += end;
		chunk_reset(im);
	}
	if (at_end) {
		size_t avail = im->len - im->chunk_start;

		if (avail % rsz != 0) {
			char *m = NULL;

			if (asprintf(&m,
			             "the input ends with a partial row: %zu bytes after the last whole "
			             "row (a row is %zu columns x %d bytes = %zu bytes); the array is "
			             "truncated",
			             avail % rsz, im->ncols, im->elsize, rsz) < 0)
				m = NULL;
			return fail(im, err, LOOM_EINVAL, m);
		}
		if (avail > 0 && (rv = submit(im, im->buf + im->chunk_start, avail, avail / rsz,
		                              err)) != 0)
			return rv;
		im->chunk_start = im->len;
	}
	im->w = im->row_start = im->r = im->len;
	return 0;
}

/* ------------------------------------------------------------------ headers */

static int
name_cmp(const void *a, const void *b)
{
	const ds_column *x = *(ds_column *const *)a, *y = *(ds_column *const *)b;

	return strcmp(x->name, y->name);
}

/* Names non-empty, valid UTF-8 and unique. */
static int
check_names(ds_importer *im, char **err)
{
	const char *hdr = im->elsize ? "LOOMARR1 header" : "line 1 (the header)";
	ds_column **v;
	char *m = NULL;
	int rv = 0;

	for (size_t i = 0; i < im->ncols; i++) {
		json_t *j;

		if (im->cols[i].name[0] == '\0') {
			if (asprintf(&m, "%s: column %zu has no name; name every column", hdr, i + 1) < 0)
				m = NULL;
			return fail(im, err, LOOM_EINVAL, m);
		}
		if ((j = json_string(im->cols[i].name)) == NULL) {
			if (asprintf(&m, "%s: the name of column %zu is not valid UTF-8 text", hdr,
			             i + 1) < 0)
				m = NULL;
			return fail(im, err, LOOM_EINVAL, m);
		}
		json_decref(j);
	}
	if ((v = malloc((im->ncols + 1) * sizeof(*v))) == NULL)
		return fail(im, err, LOOM_ENOMEM, NULL);
	for (size_t i = 0; i < im->ncols; i++)
		v[i] = &im->cols[i];
	qsort(v, im->ncols, sizeof(*v), name_cmp);
	for (size_t i = 1; i < im->ncols; i++)
		if (strcmp(v[i - 1]->name, v[i]->name) == 0) {
			size_t x = (size_t)(v[i - 1] - im->cols) + 1, y = (size_t)(v[i] - im->cols) + 1;

			if (asprintf(&m, "%s: the column name \"%s\" appears twice (columns %zu and %zu); "
			                 "names must be unique",
			             hdr, v[i]->name, x < y ? x : y, x < y ? y : x) < 0)
				m = NULL;
			rv = fail(im, err, LOOM_EINVAL, m);
			break;
		}
	free(v);
	return rv;
}

static int
add_column(ds_importer *im, const uint8_t *s, size_t n, char **err)
{
	ds_column *t;
	char *name;

	if (im->ncols == DS_COLS_MAX)
		return fail(im, err, LOOM_EINVAL,
		            strdup("line 1 (the header): more than 4096 columns; split the table"));
	if (memchr(s, '\0', n) != NULL) {
		char *m = NULL;

		if (asprintf(&m, "line 1 (the header): the name of column %zu holds a NUL byte",
		             im->ncols + 1) < 0)
			m = NULL;
		return fail(im, err, LOOM_EINVAL, m);
	}
	if ((t = realloc(im->cols, (im->ncols + 1) * sizeof(*t))) == NULL)
		return fail(im, err, LOOM_ENOMEM, NULL);
	im->cols = t;
	if ((name = malloc(n + 1)) == NULL)
		return fail(im, err, LOOM_ENOMEM, NULL);
	memcpy(name, s, n);
	name[n] = '\0';
	im->cols[im->ncols].name = name;
	im->cols[im->ncols].type = 0;
	im->ncols++;
	return 0;
}

static uint32_t
rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The LOOMARR1 header, when the buffer holds all of it (-1: not yet). */
static int
arr_header(ds_importer *im, bool at_end, char **err)
{
	const uint8_t *b = im->buf;
	size_t n = im->len, off = 16;
	uint32_t cols;
	char *m = NULL;
	int rv;

	if (n < 16)
		goto short_input;
	if (memcmp(b, "LOOMARR1", 8) != 0)
		return fail(im, err, LOOM_EINVAL,
		            strdup("the input does not start with the LOOMARR1 header of an f32/f64 "
		                   "array (use format csv for text)"));
	if (b[8] != im->elsize || b[9] != 0 || b[10] != 0 || b[11] != 0) {
		if (asprintf(&m,
		             "LOOMARR1 header: element size %u (bytes 9-12: %02x %02x %02x %02x) does "
		             "not match format %s (size %d, then three zero bytes)",
		             b[8], b[8], b[9], b[10], b[11], im->format, im->elsize) < 0)
			m = NULL;
		return fail(im, err, LOOM_EINVAL, m);
	}
	cols = rd32(b + 12);
	if (cols < 1 || cols > DS_COLS_MAX) {
		if (asprintf(&m, "LOOMARR1 header: %" PRIu32 " columns is not in 1..4096", cols) < 0)
			m = NULL;
		return fail(im, err, LOOM_EINVAL, m);
	}
	/* the names: parse all before taking any */
	for (uint32_t i = 0; i < cols; i++) {
		size_t l;

		if (n - off < 2)
			goto short_input;
		l = (size_t)b[off] | (size_t)b[off + 1] << 8;
		if (l > DS_ARR_NAME_MAX) {
			if (asprintf(&m, "LOOMARR1 header: the name of column %" PRIu32
			                 " is %zu bytes, over %d",
			             i, l, DS_ARR_NAME_MAX) < 0)
				m = NULL;
			return fail(im, err, LOOM_EINVAL, m);
		}
		if (n - off - 2 < l)
			goto short_input;
		for (size_t k = 0; k < l; k++) {
			uint8_t c = b[off + 2 + k];

			if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			      c == '_' || c == '.' || c == '-')) {
				if (asprintf(&m, "LOOMARR1 header: the name of column %" PRIu32
				                 " holds byte 0x%02x; names are [A-Za-z0-9_.-]",
				             i, c) < 0)
					m = NULL;
				return fail(im, err, LOOM_EINVAL, m);
			}
		}
		off += 2 + l;
	}
	off = 16;
	for (uint32_t i = 0; i < cols; i++) {
		size_t l = (size_t)b[off] | (size_t)b[off + 1] << 8;
		char gen[16];

		if (l == 0) {
			int gl = snprintf(gen, sizeof(gen), "c%" PRIu32, i);
			rv = add_column(im, (const uint8_t *)gen, (size_t)gl, err);
		} else {
			rv = add_column(im, b + off + 2, l, err);
		}
		if (rv != 0)
			return rv;
		im->cols[i].type = DS_COL_NUMBER;
		off += 2 + l;
	}
	if ((rv = check_names(im, err)) != 0)
		return rv;
	im->rowsize = (size_t)cols * (size_t)im->elsize;
	im->header_done = true;
	im->chunk_start = im->w = im->row_start = im->r = off;
	return 0;
short_input:
	if (!at_end)
		return -1;
	if (asprintf(&m, "the input ends inside its LOOMARR1 header (%zu bytes)", n) < 0)
		m = NULL;
	return fail(im, err, LOOM_EINVAL, m);
}

/* ------------------------------------------------------------------ csv */

static inline bool
is_digit(uint8_t c)
{
	return (unsigned)(c - '0') < 10;
}

static bool
word_ieq(const uint8_t *s, size_t n, const char *w)
{
	size_t i = 0;

	for (; i < n && w[i] != '\0'; i++)
		if ((s[i] | 0x20) != (uint8_t)w[i])
			return false;
	return i == n && w[i] == '\0';
}

/* 0 (empty), DS_COL_INTEGER, DS_COL_NUMBER or DS_COL_STRING: one pass,
 * no strtod. */
static int
classify(const uint8_t *s, size_t n)
{
	size_t i = 0, d0, intd, frac = 0;

	if (n == 0)
		return 0;
	if (s[0] == '+' || s[0] == '-')
		i++;
	d0 = i;
	while (i < n && is_digit(s[i]))
		i++;
	intd = i - d0;
	if (i == n && intd > 0)
		/* more than 18 digits may not fit 64 bits: a number then */
		return intd <= 18 ? DS_COL_INTEGER : DS_COL_NUMBER;
	if (i < n && s[i] == '.') {
		size_t f0 = ++i;
		while (i < n && is_digit(s[i]))
			i++;
		frac = i - f0;
	}
	if (intd + frac == 0) {
		if (word_ieq(s + d0, n - d0, "nan") || word_ieq(s + d0, n - d0, "inf") ||
		    word_ieq(s + d0, n - d0, "infinity"))
			return DS_COL_NUMBER;
		return DS_COL_STRING;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		size_t e0;

		if (++i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		e0 = i;
		while (i < n && is_digit(s[i]))
			i++;
		if (i == e0)
			return DS_COL_STRING;
	}
	return i == n ? DS_COL_NUMBER : DS_COL_STRING;
}

/* The field ending at e (exclusive; a trailing '\r' before the row's '\n'
 * already cut off): its type, or in the header its name. */
static int
field_end(ds_importer *im, size_t e, bool quoted, char **err)
{
	const uint8_t *b = im->buf;
	size_t s = im->field_start;
	uint32_t f = im->nfields++;

	if (!im->header_done) {
		uint8_t *name;
		size_t n = 0;
		int rv;

		if (!quoted)
			return add_column(im, b + s, e - s, err);
		/* unquote: "" is one quote; anything after the closing quote
		 * is kept as it is */
		if ((name = malloc(e - s + 1)) == NULL)
			return fail(im, err, LOOM_ENOMEM, NULL);
		for (size_t i = s + 1; i < im->qend; i++) {
			name[n++] = b[i];
			if (b[i] == '"')
				i++;
		}
		for (size_t i = im->qend + 1; i < e; i++)
			name[n++] = b[i];
		rv = add_column(im, name, n, err);
		free(name);
		return rv;
	}
	if (f < im->ncols && im->cols[f].type != DS_COL_STRING) {
		int t;

		if (!quoted)
			t = classify(b + s, e - s);
		else if (im->esc || e > im->qend + 1)
			t = DS_COL_STRING;
		else
			t = classify(b + s + 1, im->qend - s - 1);
		if (t > im->cols[f].type)
			im->cols[f].type = t;
	}
	return 0;
}

/* The row's '\n' is at nl; cr: a '\r' before it was cut off the last
 * field. */
static int
row_end(ds_importer *im, size_t nl, bool cr, char **err)
{
	size_t rs = im->row_start, len = nl + 1 - rs - (cr ? 1 : 0);
	int rv;

	if (!im->header_done) {
		if ((rv = check_names(im, err)) != 0)
			return rv;
		im->header_done = true;
		im->chunk_start = im->w = nl + 1;
		chunk_reset(im);
	} else {
		if (im->nfields != im->ncols) {
			char *m = NULL;

			if (asprintf(&m, "line %" PRIu64 ": %" PRIu32 " fields, but the header has %zu "
			             "columns; every row needs one value per column",
			             im->row_line, im->nfields, im->ncols) < 0)
				m = NULL;
			return fail(im, err, LOOM_EINVAL, m);
		}
		if (im->w != rs || cr) {
			memmove(im->buf + im->w, im->buf + rs, len - 1);
			im->buf[im->w + len - 1] = '\n';
		}
		im->w += len;
		if ((rv = row_added(im, im->w - len, im->w, err)) != 0)
			return rv;
	}
	im->line++;
	im->row_line = im->line;
	im->row_start = im->field_start = nl + 1;
	im->nfields = 0;
	im->mode = M_FIELD;
	return 0;
}

static int
csv_scan(ds_importer *im, char **err)
{
	uint8_t *b = im->buf;
	size_t r = im->r, end = im->len;
	int rv;

	if (!im->bom_done) {
		if (end < 3 && memcmp(b, "\xef\xbb\xbf", end) == 0)
			return 0; /* wait for more, or the end */
		im->bom_done = true;
		if (end >= 3 && memcmp(b, "\xef\xbb\xbf", 3) == 0)
			r = im->row_start = im->field_start = im->chunk_start = im->w = 3;
	}
	while (r < end) {
		switch (im->mode) {
		case M_FIELD:
			if (b[r] == '"') {
				im->mode = M_QUO;
				im->esc = false;
				r++;
			} else {
				im->mode = M_UNQ;
			}
			break;
		case M_UNQ:
			while (r < end && b[r] != ',' && b[r] != '\n')
				r++;
			if (r == end)
				break;
			if (b[r] == ',') {
				if ((rv = field_end(im, r, false, err)) != 0)
					return rv;
				im->field_start = ++r;
				im->mode = M_FIELD;
			} else {
				bool cr = r > im->field_start && b[r - 1] == '\r';

				if ((rv = field_end(im, cr ? r - 1 : r, false, err)) != 0 ||
				    (rv = row_end(im, r, cr, err)) != 0)
					return rv;
				r++;
			}
			break;
		case M_QUO: {
			uint64_t nl = 0;

			while (r < end && b[r] != '"')
				nl += b[r++] == '\n';
			im->line += nl;
			if (r < end) {
				r++;
				im->mode = M_QUO_Q;
			}
			break;
		}
		case M_QUO_Q:
			if (b[r] == '"') {
				im->esc = true;
				im->mode = M_QUO;
				r++;
			} else {
				im->qend = r - 1;
				im->mode = M_AFTER;
			}
			break;
		case M_AFTER:
			while (r < end && b[r] != ',' && b[r] != '\n')
				r++;
			if (r == end)
				break;
			if (b[r] == ',') {
				if ((rv = field_end(im, r, true, err)) != 0)
					return rv;
				im->field_start = ++r;
				im->mode = M_FIELD;
			} else {
				bool cr = r > im->qend + 1 && b[r - 1] == '\r';

				if ((rv = field_end(im, cr ? r - 1 : r, true, err)) != 0 ||
				    (rv = row_end(im, r, cr, err)) != 0)
					return rv;
				r++;
			}
			break;
		}
	}
	im->r = r;
	if (im->len - im->row_start > DS_ROW_MAX) {
		char *m = NULL;

		if (asprintf(&m, "line %" PRIu64 ": a row longer than 64 MiB (an unclosed quote?)",
		             im->row_line) < 0)
			m = NULL;
		return fail(im, err, LOOM_EINVAL, m);
	}
	return 0;
}

/* ------------------------------------------------------------------ the API */

ds_importer *
ds_import_new(const char *format, const ds_params *p, const ds_sink *sink)
{
	ds_importer *im;
	int el = ds_format_elsize(format);

	if (el < 0 || p == NULL || sink == NULL || sink->put_chunk == NULL ||
	    ds_params_check(p, NULL) != 0)
		return NULL;
	if ((im = calloc(1, sizeof(*im))) == NULL)
		return NULL;
	im->p = *p;
	im->sink = *sink;
	im->elsize = el;
	strcpy(im->format, format);
	im->line = im->row_line = 1;
	im->cap = (size_t)p->max_size * 4;
	if ((im->buf = malloc(im->cap + 1)) == NULL) {
		free(im);
		return NULL;
	}
	pthread_mutex_init(&im->mu, NULL);
	pthread_cond_init(&im->cv_work, NULL);
	pthread_cond_init(&im->cv_done, NULL);
	chunk_reset(im);
	return im;
}

/* Make room at the buffer's end: drop what is done, else grow. */
static int
make_room(ds_importer *im, char **err)
{
	size_t keep = im->w - im->chunk_start, gap;

	if (im->chunk_start > 0 || im->row_start > im->w) {
		memmove(im->buf, im->buf + im->chunk_start, keep);
		gap = im->row_start - keep;
		memmove(im->buf + keep, im->buf + im->row_start, im->len - im->row_start);
		im->len -= gap;
		im->r -= gap;
		im->field_start -= gap;
		im->qend -= gap;
		im->row_start = keep;
		im->w = keep;
		im->chunk_start = 0;
	}
	if (im->len == im->cap) {
		size_t n = im->cap * 2;
		uint8_t *t = realloc(im->buf, n + 1);

		if (t == NULL)
			return fail(im, err, LOOM_ENOMEM, strdup("import: out of memory for a row"));
		im->buf = t;
		im->cap = n;
	}
	return 0;
}

static int
process(ds_importer *im, bool at_end, char **err)
{
	int rv;

	if (im->elsize == 0)
		return csv_scan(im, err);
	if (!im->header_done && (rv = arr_header(im, at_end, err)) != 0)
		return rv < 0 ? 0 : rv;
	return fixed_rows(im, at_end, err);
}

int
ds_import_feed(ds_importer *im, const void *data, size_t len, char **err)
{
	const uint8_t *d = data;
	int rv;

	if (im->rv != 0)
		return fail(im, err, im->rv, NULL);
	if (im->finished)
		return ds_fail(err, LOOM_ESTATE, "import: fed after its end");
	while (len > 0) {
		size_t n;

		if (im->len == im->cap && (rv = make_room(im, err)) != 0)
			return rv;
		n = im->cap - im->len < len ? im->cap - im->len : len;
		memcpy(im->buf + im->len, d, n);
		im->len += n;
		d += n;
		len -= n;
		if ((rv = process(im, false, err)) != 0)
			return rv;
	}
	return 0;
}

int
ds_import_finish(ds_importer *im, ds_manifest *out, char **err)
{
	int rv;

	memset(out, 0, sizeof(*out));
	if (im->rv != 0)
		return fail(im, err, im->rv, NULL);
	if (im->finished)
		return ds_fail(err, LOOM_ESTATE, "import: finished twice");
	im->finished = true;
	if (im->elsize == 0) {
		im->bom_done = true;
		if (im->len > im->row_start) {
			if (im->mode == M_QUO) {
				char *m = NULL;

				if (asprintf(&m, "line %" PRIu64 ": a quoted field is not closed at the "
				                 "end of the input",
				             im->row_line) < 0)
					m = NULL;
				return fail(im, err, LOOM_EINVAL, m);
			}
			/* the last row gets its newline */
			if (im->len == im->cap && (rv = make_room(im, err)) != 0)
				return rv;
			im->buf[im->len++] = '\n';
			if ((rv = csv_scan(im, err)) != 0)
				return rv;
		}
		if (!im->header_done)
			return fail(im, err, LOOM_EINVAL,
			            strdup("the input is empty: a csv starts with a header line naming "
			                   "its columns"));
		if (im->chunk_rows > 0) {
			if ((rv = submit(im, im->buf + im->chunk_start, im->w - im->chunk_start,
			                 im->chunk_rows, err)) != 0)
				return rv;
			im->chunk_start = im->w;
		}
	} else if ((rv = process(im, true, err)) != 0) {
		return rv;
	}
	if ((rv = drain_all(im, err)) != 0)
		return rv;
	if ((out->format = strdup(im->format)) == NULL)
		return fail(im, err, LOOM_ENOMEM, NULL);
	for (size_t i = 0; i < im->ncols; i++)
		if (im->cols[i].type == 0)
			im->cols[i].type = DS_COL_STRING; /* no value to go by */
	out->columns = im->cols;
	out->n_columns = im->ncols;
	im->cols = NULL;
	im->ncols = 0;
	out->chunks = im->chunks;
	out->n_chunks = im->n_chunks;
	im->chunks = NULL;
	im->n_chunks = 0;
	out->rows = im->rows;
	out->bytes = im->bytes;
	out->stored = im->stored;
	return 0;
}

void
ds_import_free(ds_importer *im)
{
	if (im == NULL)
		return;
	pool_stop(im);
	pthread_mutex_destroy(&im->mu);
	pthread_cond_destroy(&im->cv_work);
	pthread_cond_destroy(&im->cv_done);
	for (size_t i = 0; i < im->ncols; i++)
		free(im->cols[i].name);
	free(im->cols);
	free(im->chunks);
	free(im->buf);
	free(im->msg);
	free(im);
}

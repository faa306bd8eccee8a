/* Checkout (dslib.h): a version's chunks fetched, decompressed, checked
 * against their hashes and written out as csv or in the format's own
 * bytes. */
#include "config.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zstd.h>

#include <loom/error.h>

#include "ds-internal.h"
#include "dslib.h"

char *
ds_csv_header(const ds_column *cols, size_t n, size_t *len)
{
	size_t cap = 2, k = 0;
	char *s;

	for (size_t i = 0; i < n; i++)
		cap += 2 * strlen(cols[i].name) + 3;
	if ((s = malloc(cap)) == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const char *name = cols[i].name;

		if (i > 0)
			s[k++] = ',';
		if (strpbrk(name, ",\"\r\n") != NULL) {
			s[k++] = '"';
			for (const char *p = name; *p; p++) {
				if (*p == '"')
					s[k++] = '"';
				s[k++] = *p;
			}
			s[k++] = '"';
		} else {
			size_t l = strlen(name);

			memcpy(s + k, name, l);
			k += l;
		}
	}
	s[k++] = '\n';
	s[k] = '\0';
	*len = k;
	return s;
}

/* The LOOMARR1 header of m (names "c<i>" written as length 0, as the
 * importer reads them). */
static uint8_t *
arr_header(const ds_manifest *m, int el, size_t *len)
{
	size_t cap = 16, k = 16;
	uint8_t *b;

	for (size_t i = 0; i < m->n_columns; i++)
		cap += 2 + strlen(m->columns[i].name);
	if ((b = malloc(cap)) == NULL)
		return NULL;
	memcpy(b, "LOOMARR1", 8);
	b[8] = (uint8_t)el;
	b[9] = b[10] = b[11] = 0;
	for (int i = 0; i < 4; i++)
		b[12 + i] = (uint8_t)(m->n_columns >> (8 * i));
	for (size_t i = 0; i < m->n_columns; i++) {
		const char *name = m->columns[i].name;
		char gen[24];
		size_t l = strlen(name);

		snprintf(gen, sizeof(gen), "c%zu", i);
		if (strcmp(gen, name) == 0)
			l = 0;
		b[k] = (uint8_t)(l & 0xff);
		b[k + 1] = (uint8_t)(l >> 8);
		memcpy(b + k + 2, name, l);
		k += 2 + l;
	}
	*len = k;
	return b;
}

/* The header a checkout begins with: csv's line, or the LOOMARR1 header
 * of a native f32/f64 output (malloc'd; NULL when out of memory). */
static void *
header_of(const ds_manifest *m, int el, int out, size_t *len)
{
	if (el > 0 && out == DS_OUT_NATIVE)
		return arr_header(m, el, len);
	return ds_csv_header(m->columns, m->n_columns, len);
}

struct out {
	ds_write_fn fn;
	void *arg;
	char *buf;
	size_t n, cap;
};

static int
out_flush(struct out *o)
{
	int rv = 0;

	if (o->n > 0)
		rv = o->fn(o->arg, o->buf, o->n);
	o->n = 0;
	return rv;
}

/* Rows of f32/f64 values as csv numbers. */
static int
write_numbers(struct out *o, const uint8_t *raw, size_t len, int el, size_t cols)
{
	size_t per = (size_t)el, i = 0;
	int rv;

	while (i < len) {
		for (size_t c = 0; c < cols; c++, i += per) {
			char *p;
			int n;

			if (o->cap - o->n < 40 && (rv = out_flush(o)) != 0)
				return rv;
			p = o->buf + o->n;
			if (el == 4) {
				float f;

				memcpy(&f, raw + i, 4);
				n = snprintf(p, 40, "%.9g", (double)f);
			} else {
				double d;

				memcpy(&d, raw + i, 8);
				n = snprintf(p, 40, "%.17g", d);
			}
			o->n += (size_t)n;
			o->buf[o->n++] = c + 1 < cols ? ',' : '\n';
		}
	}
	return 0;
}

/* Chunk i of m fetched from src, decompressed into dst (c->raw bytes of
 * room) and checked: its hash, its length, its rows (el > 0). */
static int
chunk_into(const ds_manifest *m, const ds_source *src, size_t i, int el, ZSTD_DCtx *dctx,
           uint8_t *dst, char **err)
{
	const ds_chunk *c = &m->chunks[i];
	size_t rowsize = (size_t)el * m->n_columns, zn = 0, n;
	char *msg = NULL, hex[DS_HEX_LEN + 1];
	void *z = NULL;
	ds_hash h;
	int rv;

	ds_hash_hex(&c->hash, hex);
	if ((rv = src->get_chunk(src->arg, c, &z, &zn, &msg)) != 0) {
		rv = ds_fail(err, rv, "checkout: chunk %zu (%s): %s", i, hex,
		             msg != NULL ? msg : loom_strerror(rv));
		free(msg);
		free(z);
		return rv;
	}
	n = ZSTD_decompressDCtx(dctx, dst, c->raw, z, zn);
	free(z);
	if (ZSTD_isError(n) || n != c->raw)
		return ds_fail(err, LOOM_ECORRUPT,
		               "checkout: chunk %zu (%s) does not decompress to its %" PRIu32
		               " bytes (%s); the stored copy is damaged",
		               i, hex, c->raw, ZSTD_isError(n) ? ZSTD_getErrorName(n) : "size");
	ds_sha256(dst, n, &h);
	if (memcmp(h.b, c->hash.b, 32) != 0)
		return ds_fail(err, LOOM_ECORRUPT,
		               "checkout: chunk %zu (%s) does not match its hash; the stored copy "
		               "is damaged",
		               i, hex);
	if (el > 0 && (rowsize == 0 || n % rowsize != 0 || n / rowsize != c->rows))
		return ds_fail(err, LOOM_ECORRUPT,
		               "checkout: chunk %zu (%s) of %zu bytes does not hold %" PRIu64
		               " rows of %zu bytes",
		               i, hex, n, c->rows, rowsize);
	return 0;
}

int
ds_checkout(const ds_manifest *m, const ds_source *src, int out, bool header, size_t first,
            size_t count, ds_write_fn write_fn, void *warg, char **err)
{
	int el = ds_format_elsize(m->format), rv = 0;
	size_t last, cap = 0;
	uint8_t *raw = NULL;
	ZSTD_DCtx *dctx = NULL;
	struct out o = {write_fn, warg, NULL, 0, 0};

	if (el < 0)
		return ds_fail(err, LOOM_EINVAL, "checkout: unknown format \"%s\"",
		               m->format ? m->format : "(none)");
	if (out != DS_OUT_CSV && out != DS_OUT_NATIVE)
		return ds_fail(err, LOOM_EINVAL, "checkout: unknown output %d", out);
	if (first > m->n_chunks)
		return ds_fail(err, LOOM_ERANGE, "checkout: chunk %zu is past the last (%zu chunks)",
		               first, m->n_chunks);
	last = count > m->n_chunks - first ? m->n_chunks : first + count;
	if (header) {
		size_t hl;
		void *h = header_of(m, el, out, &hl);

		if (h == NULL)
			return ds_fail(err, LOOM_ENOMEM, "checkout: out of memory");
		rv = write_fn(warg, h, hl);
		free(h);
		if (rv != 0)
			return ds_fail(err, rv, "checkout: writing the header failed: %s",
			               loom_strerror(rv));
	}
	if (first == last)
		return 0;
	if ((dctx = ZSTD_createDCtx()) == NULL)
		return ds_fail(err, LOOM_ENOMEM, "checkout: out of memory for a decompressor");
	if (el > 0 && out == DS_OUT_CSV) {
		o.cap = 1 << 16;
		if ((o.buf = malloc(o.cap)) == NULL) {
			rv = ds_fail(err, LOOM_ENOMEM, "checkout: out of memory");
			goto out;
		}
	}
	for (size_t i = first; i < last; i++) {
		const ds_chunk *c = &m->chunks[i];

		if (c->raw > cap) {
			uint8_t *t = realloc(raw, c->raw);

			if (t == NULL) {
				rv = ds_fail(err, LOOM_ENOMEM, "checkout: out of memory for chunk %zu", i);
				goto out;
			}
			raw = t;
			cap = c->raw;
		}
		if ((rv = chunk_into(m, src, i, el, dctx, raw, err)) != 0)
			goto out;
		if (el > 0 && out == DS_OUT_CSV) {
			rv = write_numbers(&o, raw, c->raw, el, m->n_columns);
		} else {
			rv = write_fn(warg, raw, c->raw);
		}
		if (rv != 0) {
			rv = ds_fail(err, rv, "checkout: writing chunk %zu failed: %s", i,
			             loom_strerror(rv));
			goto out;
		}
	}
	if ((rv = out_flush(&o)) != 0)
		rv = ds_fail(err, rv, "checkout: writing failed: %s", loom_strerror(rv));
out:
	free(o.buf);
	free(raw);
	ZSTD_freeDCtx(dctx);
	return rv;
}

/* ------------------------------------------------------------------ into one buffer */

int
ds_checkout_size(const ds_manifest *m, int out, bool header, size_t first, size_t count,
                 size_t *len)
{
	int el = ds_format_elsize(m->format);
	size_t last, n = 0;

	*len = 0;
	if (el < 0 || (out != DS_OUT_CSV && out != DS_OUT_NATIVE) || first > m->n_chunks)
		return LOOM_EINVAL;
	if (el > 0 && out == DS_OUT_CSV)
		return LOOM_ENOTSUP; /* numbers formatted: their length is known once written */
	last = count > m->n_chunks - first ? m->n_chunks : first + count;
	if (header) {
		void *h = header_of(m, el, out, &n);

		if (h == NULL)
			return LOOM_ENOMEM;
		free(h);
	}
	for (size_t i = first; i < last; i++) {
		if (n > SIZE_MAX - m->chunks[i].raw)
			return LOOM_ERANGE;
		n += m->chunks[i].raw;
	}
	*len = n;
	return 0;
}

typedef struct co_job {
	const ds_manifest *m;
	const ds_source *src;
	int el;
	size_t last;
	uint8_t *base;        /* where chunk first goes */
	const size_t *offset; /* of chunk first + k from base */
	size_t first;
	pthread_mutex_t mtx;
	size_t next;          /* the next chunk to take */
	int rv;               /* the first failure */
	size_t failed_at;
	char *err;
} co_job;

static void *
co_worker(void *arg)
{
	co_job *j = arg;
	ZSTD_DCtx *dctx = ZSTD_createDCtx();

	for (;;) {
		size_t i;
		char *err = NULL;
		int rv;

		pthread_mutex_lock(&j->mtx);
		i = j->next < j->last && j->rv == 0 ? j->next++ : SIZE_MAX;
		pthread_mutex_unlock(&j->mtx);
		if (i == SIZE_MAX)
			break;
		if (dctx == NULL)
			rv = ds_fail(&err, LOOM_ENOMEM, "checkout: out of memory for a decompressor");
		else
			rv = chunk_into(j->m, j->src, i, j->el, dctx, j->base + j->offset[i - j->first],
			                &err);
		if (rv != 0) {
			pthread_mutex_lock(&j->mtx);
			/* the earliest chunk's failure is the one told */
			if (j->rv == 0 || i < j->failed_at) {
				free(j->err);
				j->err = err;
				err = NULL;
				j->rv = rv;
				j->failed_at = i;
			}
			pthread_mutex_unlock(&j->mtx);
			free(err);
		}
	}
	ZSTD_freeDCtx(dctx);
	return NULL;
}

int
ds_checkout_buf(const ds_manifest *m, const ds_source *src, int out, bool header,
                size_t first, size_t count, int threads, void *buf, size_t len, char **err)
{
	int el = ds_format_elsize(m->format), rv;
	size_t need, hl = 0, last, off;
	pthread_t tid[DS_CHECKOUT_THREADS_MAX];
	int started = 0;
	co_job j;

	if ((rv = ds_checkout_size(m, out, header, first, count, &need)) != 0)
		return ds_fail(err, rv, "checkout: %s",
		               rv == LOOM_ENOTSUP ? "f32/f64 rows as csv have no size before they are "
		                                    "written: use ds_checkout"
		                                  : "invalid format, output or first chunk");
	if (len != need)
		return ds_fail(err, LOOM_EINVAL, "checkout: the buffer has %zu bytes, not the %zu "
		               "ds_checkout_size gives", len, need);
	if (threads < 0 || threads > DS_CHECKOUT_THREADS_MAX)
		return ds_fail(err, LOOM_EINVAL, "checkout: threads: 0 to %d, not %d",
		               DS_CHECKOUT_THREADS_MAX, threads);
	last = count > m->n_chunks - first ? m->n_chunks : first + count;
	if (header) {
		void *h = header_of(m, el, out, &hl);

		if (h == NULL)
			return ds_fail(err, LOOM_ENOMEM, "checkout: out of memory");
		memcpy(buf, h, hl);
		free(h);
	}
	if (first == last)
		return 0;
	memset(&j, 0, sizeof j);
	j.m = m;
	j.src = src;
	j.el = el;
	j.first = j.next = first;
	j.last = last;
	j.base = (uint8_t *)buf;
	{
		size_t *offs = malloc((last - first) * sizeof(size_t));

		if (offs == NULL)
			return ds_fail(err, LOOM_ENOMEM, "checkout: out of memory");
		off = hl;
		for (size_t i = first; i < last; i++) {
			offs[i - first] = off;
			off += m->chunks[i].raw;
		}
		j.offset = offs;
	}
	pthread_mutex_init(&j.mtx, NULL);
	if (threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		threads = n < 1 ? 1 : n > DS_CHECKOUT_THREADS_MAX ? DS_CHECKOUT_THREADS_MAX : (int)n;
	}
	if ((size_t)threads > last - first)
		threads = (int)(last - first);
	/* this thread works too: threads - 1 more */
	for (int t = 1; t < threads; t++)
		if (pthread_create(&tid[started], NULL, co_worker, &j) == 0)
			started++;
	co_worker(&j);
	for (int t = 0; t < started; t++)
		pthread_join(tid[t], NULL);
	pthread_mutex_destroy(&j.mtx);
	free((void *)j.offset);
	rv = j.rv;
	if (rv != 0) {
		if (err != NULL) {
			free(*err);
			*err = j.err;
		} else {
			free(j.err);
		}
	}
	return rv;
}

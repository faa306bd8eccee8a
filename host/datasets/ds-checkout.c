/* Checkout (dslib.h): a version's chunks fetched, decompressed, checked
 * against their hashes and written out as csv or in the format's own
 * bytes. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int
ds_checkout(const ds_manifest *m, const ds_source *src, int out, bool header, size_t first,
            size_t count, ds_write_fn write_fn, void *warg, char **err)
{
	int el = ds_format_elsize(m->format), rv = 0;
	size_t last, rowsize, cap = 0;
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
	rowsize = (size_t)el * m->n_columns;
	if (header) {
		size_t hl;
		void *h = el > 0 && out == DS_OUT_NATIVE ? (void *)arr_header(m, el, &hl)
		                                         : (void *)ds_csv_header(m->columns,
		                                                                 m->n_columns, &hl);

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
		void *z = NULL;
		size_t zn = 0, n;
		char *msg = NULL, hex[DS_HEX_LEN + 1];
		ds_hash h;

		ds_hash_hex(&c->hash, hex);
		if (c->raw > cap) {
			uint8_t *t = realloc(raw, c->raw);

			if (t == NULL) {
				rv = ds_fail(err, LOOM_ENOMEM, "checkout: out of memory for chunk %zu", i);
				goto out;
			}
			raw = t;
			cap = c->raw;
		}
		if ((rv = src->get_chunk(src->arg, c, &z, &zn, &msg)) != 0) {
			if (msg != NULL) {
				rv = ds_fail(err, rv, "checkout: chunk %zu (%s): %s", i, hex, msg);
				free(msg);
			} else {
				rv = ds_fail(err, rv, "checkout: chunk %zu (%s): %s", i, hex,
				             loom_strerror(rv));
			}
			free(z);
			goto out;
		}
		n = ZSTD_decompressDCtx(dctx, raw, c->raw, z, zn);
		free(z);
		if (ZSTD_isError(n) || n != c->raw) {
			rv = ds_fail(err, LOOM_ECORRUPT,
			             "checkout: chunk %zu (%s) does not decompress to its %" PRIu32
			             " bytes (%s); the stored copy is damaged",
			             i, hex, c->raw, ZSTD_isError(n) ? ZSTD_getErrorName(n) : "size");
			goto out;
		}
		ds_sha256(raw, n, &h);
		if (memcmp(h.b, c->hash.b, 32) != 0) {
			rv = ds_fail(err, LOOM_ECORRUPT,
			             "checkout: chunk %zu (%s) does not match its hash; the stored copy "
			             "is damaged",
			             i, hex);
			goto out;
		}
		if (el > 0 && (rowsize == 0 || n % rowsize != 0 || n / rowsize != c->rows)) {
			rv = ds_fail(err, LOOM_ECORRUPT,
			             "checkout: chunk %zu (%s) of %zu bytes does not hold %" PRIu64
			             " rows of %zu bytes",
			             i, hex, n, c->rows, rowsize);
			goto out;
		}
		if (el > 0 && out == DS_OUT_CSV) {
			rv = write_numbers(&o, raw, n, el, m->n_columns);
		} else {
			rv = write_fn(warg, raw, n);
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

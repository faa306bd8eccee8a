/* Hashes, chunk keys, parameters and messages of the dataset library
 * (dslib.h). */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include <loom/error.h>

#include "ds-internal.h"
#include "dslib.h"

int
ds_fail(char **err, int code, const char *fmt, ...)
{
	if (err != NULL) {
		va_list ap;
		char *s = NULL;

		va_start(ap, fmt);
		if (vasprintf(&s, fmt, ap) < 0)
			s = NULL;
		va_end(ap);
		free(*err);
		*err = s;
	}
	return code;
}

void
ds_hash_hex(const ds_hash *h, char hex[DS_HEX_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 0; i < 32; i++) {
		hex[2 * i] = digits[h->b[i] >> 4];
		hex[2 * i + 1] = digits[h->b[i] & 15];
	}
	hex[DS_HEX_LEN] = '\0';
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
ds_hash_parse(const char *hex, ds_hash *out)
{
	if (hex == NULL)
		return LOOM_EINVAL;
	for (int i = 0; i < 32; i++) {
		int hi, lo;

		/* hex[2i] is checked before hex[2i+1] is read: a short string
		 * stops at its NUL */
		if ((hi = hexval((unsigned char)hex[2 * i])) < 0 ||
		    (lo = hexval((unsigned char)hex[2 * i + 1])) < 0)
			return LOOM_EINVAL;
		out->b[i] = (uint8_t)(hi << 4 | lo);
	}
	return hex[DS_HEX_LEN] == '\0' ? 0 : LOOM_EINVAL;
}

void
ds_sha256(const void *data, size_t len, ds_hash *out)
{
	/* the one-shot SHA256() uses the CPU's SHA extensions when present */
	SHA256(data, len, out->b);
}

void
ds_chunk_key(const char *prefix, const ds_hash *h, char *key, size_t n)
{
	char hex[DS_HEX_LEN + 1];

	ds_hash_hex(h, hex);
	if (prefix != NULL && prefix[0] != '\0')
		snprintf(key, n, "%s/%.2s/%s", prefix, hex, hex + 2);
	else
		snprintf(key, n, "%.2s/%s", hex, hex + 2);
}

void
ds_params_default(ds_params *p)
{
	p->min_size = 64 << 10;
	p->avg_size = 256 << 10;
	p->max_size = 1 << 20;
	p->zstd_level = 3;
	p->threads = 0;
}

int
ds_params_check(const ds_params *p, char **err)
{
	if (p->min_size < 1024)
		return ds_fail(err, LOOM_EINVAL, "chunk_min: %u bytes is under the least, 1 KiB",
		               p->min_size);
	if (p->max_size > (64u << 20))
		return ds_fail(err, LOOM_EINVAL, "chunk_max: %u bytes is over the most, 64 MiB",
		               p->max_size);
	if (p->avg_size < p->min_size)
		return ds_fail(err, LOOM_EINVAL,
		               "chunk_avg: %u bytes is under chunk_min (%u); make min <= avg <= max",
		               p->avg_size, p->min_size);
	if (p->max_size < p->avg_size)
		return ds_fail(err, LOOM_EINVAL,
		               "chunk_max: %u bytes is under chunk_avg (%u); make min <= avg <= max",
		               p->max_size, p->avg_size);
	if ((p->avg_size & (p->avg_size - 1)) != 0)
		return ds_fail(err, LOOM_EINVAL, "chunk_avg: %u bytes is not a power of two (e.g. 256K)",
		               p->avg_size);
	if (p->zstd_level < 1 || p->zstd_level > 19)
		return ds_fail(err, LOOM_EINVAL, "zstd_level: %d is not in 1..19", p->zstd_level);
	if (p->threads < 0 || p->threads > 8)
		return ds_fail(err, LOOM_EINVAL, "threads: %d is not in 0..8 (0: one per core)",
		               p->threads);
	return 0;
}

int
ds_format_elsize(const char *format)
{
	if (format == NULL)
		return -1;
	if (strcmp(format, "csv") == 0)
		return 0;
	if (strcmp(format, "f32") == 0)
		return 4;
	if (strcmp(format, "f64") == 0)
		return 8;
	return -1;
}

const char *
ds_coltype_name(int type)
{
	switch (type) {
	case DS_COL_INTEGER:
		return "integer";
	case DS_COL_NUMBER:
		return "number";
	default:
		return "string";
	}
}

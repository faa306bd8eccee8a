/* The protobuf wire format, writing side.  See pb.h. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <loom/error.h>

#include "pb.h"

void
pb_init(pb_buf *b)
{
	memset(b, 0, sizeof *b);
}

void
pb_free(pb_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof *b);
}

int
pb_error(const pb_buf *b)
{
	return b->err;
}

static int
reserve(pb_buf *b, size_t more)
{
	size_t cap = b->cap ? b->cap : 256;
	unsigned char *p;

	if (b->err)
		return b->err;
	if (more > SIZE_MAX / 2 - b->len) {
		b->err = LOOM_ENOMEM;
		return b->err;
	}
	if (b->len + more <= b->cap)
		return 0;
	while (cap < b->len + more)
		cap *= 2;
	if ((p = realloc(b->data, cap)) == NULL) {
		b->err = LOOM_ENOMEM;
		return b->err;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

void
pb_raw(pb_buf *b, const void *data, size_t len)
{
	if (len == 0 || reserve(b, len) != 0)
		return;
	memcpy(b->data + b->len, data, len);
	b->len += len;
}

void
pb_varint(pb_buf *b, uint64_t v)
{
	unsigned char tmp[10];
	size_t n = 0;

	do {
		tmp[n] = (unsigned char)(v & 0x7f);
		v >>= 7;
		if (v)
			tmp[n] |= 0x80;
		n++;
	} while (v);
	pb_raw(b, tmp, n);
}

void
pb_key(pb_buf *b, uint32_t field, int wire)
{
	pb_varint(b, ((uint64_t)field << 3) | (uint64_t)wire);
}

void
pb_int(pb_buf *b, uint32_t field, int64_t v)
{
	pb_key(b, field, PB_VARINT);
	pb_varint(b, (uint64_t)v);
}

void
pb_float(pb_buf *b, uint32_t field, float v)
{
	unsigned char le[4];
	uint32_t bits;

	memcpy(&bits, &v, sizeof bits);
	for (int i = 0; i < 4; i++)
		le[i] = (unsigned char)(bits >> (8 * i));
	pb_key(b, field, PB_I32);
	pb_raw(b, le, sizeof le);
}

void
pb_bytes(pb_buf *b, uint32_t field, const void *data, size_t len)
{
	pb_key(b, field, PB_LEN);
	pb_varint(b, len);
	pb_raw(b, data, len);
}

void
pb_string(pb_buf *b, uint32_t field, const char *s)
{
	pb_bytes(b, field, s, strlen(s));
}

void
pb_message(pb_buf *b, uint32_t field, const pb_buf *sub)
{
	if (sub->err && !b->err)
		b->err = sub->err;
	pb_bytes(b, field, sub->data, sub->len);
}

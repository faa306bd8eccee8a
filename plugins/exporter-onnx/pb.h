/* pb.h — just enough of the protobuf wire format to write ONNX files
 * (https://protobuf.dev/programming-guides/encoding/): base-128 varints,
 * field keys (field number << 3 | wire type), varint, fixed32 and
 * length-delimited fields.  A message is built in its own buffer and then
 * written into its parent as a length-delimited field.
 *
 * Errors are sticky: a failed allocation sets err and makes every later
 * call a no-op, so a writer checks pb_error once at the end. */
#ifndef LOOM_ONNX_PB_H
#define LOOM_ONNX_PB_H

#include <stddef.h>
#include <stdint.h>

/* Wire types. */
enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_I32 = 5 };

typedef struct pb_buf {
	unsigned char *data;
	size_t len, cap;
	int err;                 /* 0, or LOOM_ENOMEM once an allocation failed */
} pb_buf;

void pb_init(pb_buf *b);
void pb_free(pb_buf *b);
/* 0 or the sticky error. */
int pb_error(const pb_buf *b);

/* Bytes as they are. */
void pb_raw(pb_buf *b, const void *data, size_t len);
/* A base-128 varint, least significant group first. */
void pb_varint(pb_buf *b, uint64_t v);
/* A field key. */
void pb_key(pb_buf *b, uint32_t field, int wire);

/* Fields.  pb_int writes int32/int64/enum/bool values as varints (a
 * negative value takes ten bytes, as protobuf's int64 does). */
void pb_int(pb_buf *b, uint32_t field, int64_t v);
void pb_float(pb_buf *b, uint32_t field, float v);
void pb_bytes(pb_buf *b, uint32_t field, const void *data, size_t len);
void pb_string(pb_buf *b, uint32_t field, const char *s);
/* A sub-message built in sub (its error, if any, becomes b's). */
void pb_message(pb_buf *b, uint32_t field, const pb_buf *sub);

#endif /* LOOM_ONNX_PB_H */

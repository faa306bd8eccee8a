/* safetensors.h — the safetensors format (huggingface/safetensors): an
 * 8-byte little-endian header length, a JSON header mapping each tensor
 * name to {"dtype","shape","data_offsets":[begin,end]} plus an optional
 * "__metadata__" object of string values, padded with spaces to a multiple
 * of 8, then the tensors' bytes.  Written in the order given; read with
 * every field, offset and size checked before anything is trusted. */
#ifndef LOOM_TF_SAFETENSORS_H
#define LOOM_TF_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define ST_MAX_DIMS 8

typedef struct st_tensor {
	const char *name;
	const char *dtype;          /* "F32", "F64", "I64", ... */
	int ndim;
	int64_t dims[ST_MAX_DIMS];
	const void *data;           /* writing: the bytes; reading: into the file */
	size_t nbytes;
} st_tensor;

/* Serialize tensors (and metadata: an object of strings, may be NULL) into
 * a new buffer; *out and *len receive it (free with free()).  0 or
 * LOOM_ENOMEM / LOOM_EINVAL. */
int st_encode(const st_tensor *tensors, size_t n, const json_t *metadata, unsigned char **out,
              size_t *len);

/* A parsed file: tensors point into the caller's buffer. */
typedef struct st_file {
	st_tensor *tensors;
	size_t n;
	json_t *header;             /* the whole header; owns the names */
	const json_t *metadata;     /* "__metadata__" or NULL */
} st_file;

/* Parse and check a buffer: the header length, JSON, every entry's dtype,
 * shape and offsets (in bounds, not overlapping, covering the data, sizes
 * matching dtype × shape).  0, or LOOM_ECORRUPT with *err saying what is
 * wrong (name is used in messages). */
int st_decode(const unsigned char *buf, size_t len, const char *name, st_file *f, char **err);
void st_file_free(st_file *f);
const st_tensor *st_find(const st_file *f, const char *name);

/* Bytes per element of a safetensors dtype, 0 if unknown. */
size_t st_dtype_size(const char *dtype);

#endif /* LOOM_TF_SAFETENSORS_H */

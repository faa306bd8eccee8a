/* <loom/safetensors.h> — the safetensors format (huggingface/safetensors),
 * which PyTorch, JAX and the safetensors library open without Loom.  See
 * loom-safetensors(3).
 *
 * A file is an 8-byte little-endian header length, a JSON header mapping
 * each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} and
 * an optional "__metadata__" object of strings, padded with spaces to a
 * multiple of 8, then the tensors' bytes.  loom_safetensors_encode writes
 * the tensors and metadata in the order given, so the bytes depend only on
 * the input.  loom_safetensors_decode checks every field, offset and size
 * before anything is trusted, and points into the caller's buffer. */
#ifndef LOOM_SAFETENSORS_H
#define LOOM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include <loom/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LOOM_SAFETENSORS_MAX_DIMS 8

/* One tensor: to write (data is the caller's bytes) or as read (data
 * points into the decoded buffer, name and dtype into the decoded file). */
typedef struct loom_safetensors_tensor {
	const char *name;
	const char *dtype;       /* as the format names them: "F32", "F64", "F16",
	                          * "BF16", "I64", "I32", "I16", "I8", "U8", "U16",
	                          * "U32", "U64", "BOOL" */
	uint32_t ndim;           /* ≤ LOOM_SAFETENSORS_MAX_DIMS; 0: a scalar */
	int64_t dims[LOOM_SAFETENSORS_MAX_DIMS];
	const void *data;
	size_t nbytes;           /* dtype size × product(dims) */
	const void *reserved[2];
} loom_safetensors_tensor;

/* One "__metadata__" entry.  Both are UTF-8 strings. */
typedef struct loom_safetensors_meta {
	const char *key;
	const char *value;
} loom_safetensors_meta;

/* Bytes per element of a dtype ("F32" → 4), 0 for one the format does not
 * have. */
size_t loom_safetensors_dtype_size(const char *dtype);

/* Serialize n tensors and n_meta metadata entries (meta may be NULL when
 * n_meta is 0; no "__metadata__" is written then) into a new buffer, *out
 * (free() it), of *len bytes.  LOOM_EINVAL for an unknown dtype, a rank
 * over LOOM_SAFETENSORS_MAX_DIMS, a negative dimension, nbytes that is not
 * dtype × shape, an empty, repeated or "__metadata__" tensor name, a
 * repeated metadata key, or text that is not UTF-8; LOOM_ENOMEM. */
int loom_safetensors_encode(const loom_safetensors_tensor *tensors, size_t n,
                            const loom_safetensors_meta *meta, size_t n_meta,
                            unsigned char **out, size_t *len);

/* A decoded file; it points into the buffer it was decoded from, which
 * must outlive it. */
typedef struct loom_safetensors loom_safetensors;

/* Parse and check len bytes at buf: the header length, the JSON, every
 * entry's dtype, shape and offsets (in bounds, matching dtype × shape, the
 * data covered exactly without overlaps or gaps), metadata values all
 * strings.  0 and *file (loom_safetensors_free it); or LOOM_ECORRUPT with
 * *error (free() it) saying what is wrong, naming the file as name ("x is
 * not a valid safetensors file: ..."); or LOOM_ENOMEM. */
int loom_safetensors_decode(const void *buf, size_t len, const char *name,
                            loom_safetensors **file, char **error);
void loom_safetensors_free(loom_safetensors *file);

/* The tensors in header order, *n of them. */
const loom_safetensors_tensor *loom_safetensors_tensors(const loom_safetensors *file,
                                                        size_t *n);
/* The tensor called name, or NULL. */
const loom_safetensors_tensor *loom_safetensors_find(const loom_safetensors *file,
                                                     const char *name);
/* The metadata in header order, *n entries.  NULL (and 0) when the file
 * has no "__metadata__"; an empty one gives a non-NULL pointer and 0. */
const loom_safetensors_meta *loom_safetensors_metadata(const loom_safetensors *file, size_t *n);
/* The metadata value of key, or NULL. */
const char *loom_safetensors_meta_get(const loom_safetensors *file, const char *key);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_SAFETENSORS_H */

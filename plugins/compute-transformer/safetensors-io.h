/* safetensors-io.h — the engine's safetensors files (weights, checkpoints,
 * continual.safetensors) read and written through one set of functions,
 * defined in checkpoint.c: a model's tensors as entries, metadata as JSON,
 * whole files read and decoded or encoded and written atomically, and the
 * rule by which a head tensor may have grown between two model versions.
 * Internal to the engine (not installed). */
#ifndef LOOM_TF_SAFETENSORS_IO_H
#define LOOM_TF_SAFETENSORS_IO_H

#include <stddef.h>

#include <jansson.h>
#include <loom/safetensors.h>

#include "model.h"

/* Encode n tensors with meta (an object; its string values become the
 * file's __metadata__, in meta's order) into *out (free it), *len bytes. */
int tf_st_encode(const loom_safetensors_tensor *t, size_t n, const json_t *meta,
                 unsigned char **out, size_t *len);

/* Encode and write path atomically (loom_file_write_atomic).  what names
 * the file in messages ("the continual state").  0 or a LOOM_E* code with
 * *err set. */
int tf_st_write(const char *path, const char *what, const loom_safetensors_tensor *t, size_t n,
                const json_t *meta, char **err);

/* Read path and decode it: *buf (free it after loom_safetensors_free(*f))
 * of *len bytes, and *f pointing into it.  Every offset and size of the
 * file is checked against its length by the decoder.  0, or LOOM_ENOENT,
 * LOOM_EIO, LOOM_ECORRUPT, LOOM_ENOMEM with *err set; nothing to free then. */
int tf_st_read(const char *path, char **buf, size_t *len, loom_safetensors **f, char **err);

/* A file's __metadata__ as a JSON object of strings, in the file's order. */
json_t *tf_st_metadata_json(const loom_safetensors *f);

/* How the stored tensor s relates to the model's tensor tt: 0, the same
 * (F32, the same shape); 1, tt is a head tensor (TF_HEAD) one dimension of
 * which grew (more classes than the stored model had), the others equal —
 * *dim receives that dimension; -1, anything else. */
int tf_st_fit(const tf_tensor *tt, const loom_safetensors_tensor *s, int *dim);

/* Copy s (tf_st_fit gave 0 or 1, with dim) into dst, laid out as tt:
 * grown, the stored block goes to the leading part of dimension dim and
 * the rest of dst is left as it was. */
void tf_st_copy(float *dst, const tf_tensor *tt, const loom_safetensors_tensor *s, int fit,
                int dim);

/* An F32 entry named name of the tensor tt of a model's buffer base
 * (params, a moment, a Fisher laid out as params). */
void tf_st_entry(loom_safetensors_tensor *t, const char *name, const tf_tensor *tt,
                 const float *base);

/* A tensor name read from a file, for a message: at most n − 1 bytes of
 * it (n ≥ 4), bytes outside printable ASCII as '?', "..." when cut. */
const char *tf_st_shown(const char *name, char *buf, size_t n);

#endif /* LOOM_TF_SAFETENSORS_IO_H */

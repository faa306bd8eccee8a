/* The safetensors format: encode and strictly decode.  See
 * <loom/safetensors.h>.  (Moved from host/core/safetensors.c.) */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <loom/safetensors.h>

/* The header may not be larger than this (the format's own limit). */
#define HEADER_MAX (100u << 20)

struct loom_safetensors {
	loom_safetensors_tensor *tensors;
	size_t n;
	loom_safetensors_meta *meta;
	size_t n_meta;
	json_t *header;             /* the whole header; owns the strings */
};

static const struct {
	const char *name;
	size_t size;
} dtypes[] = {
	{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4},
	{"I16", 2}, {"I8", 1},  {"U8", 1},  {"BOOL", 1}, {"U16", 2}, {"U32", 4}, {"U64", 8},
};

size_t
loom_safetensors_dtype_size(const char *dtype)
{
	for (size_t i = 0; dtype && i < sizeof dtypes / sizeof dtypes[0]; i++) {
		if (strcmp(dtype, dtypes[i].name) == 0)
			return dtypes[i].size;
	}
	return 0;
}

/* The header entry of one tensor at offset off; NULL if t is not one the
 * format can hold. */
static json_t *
entry_of(const loom_safetensors_tensor *t, size_t off)
{
	size_t want = loom_safetensors_dtype_size(t->dtype);
	json_t *shape, *e;

	if (want == 0 || t->ndim > LOOM_SAFETENSORS_MAX_DIMS || t->name == NULL ||
	    t->name[0] == '\0' || strcmp(t->name, "__metadata__") == 0)
		return NULL;
	if ((shape = json_array()) == NULL)
		return NULL;
	for (uint32_t d = 0; d < t->ndim; d++) {
		if (t->dims[d] < 0 || json_array_append_new(shape, json_integer(t->dims[d])) != 0) {
			json_decref(shape);
			return NULL;
		}
		want *= (size_t)t->dims[d];
	}
	if (want != t->nbytes || (t->nbytes > 0 && t->data == NULL)) {
		json_decref(shape);
		return NULL;
	}
	e = json_pack("{s:s, s:o, s:[I,I]}", "dtype", t->dtype, "shape", shape, "data_offsets",
	              (json_int_t)off, (json_int_t)(off + t->nbytes));
	return e;
}

int
loom_safetensors_encode(const loom_safetensors_tensor *t, size_t n,
                        const loom_safetensors_meta *meta, size_t n_meta, unsigned char **out,
                        size_t *len)
{
	json_t *hdr = json_object(), *m = NULL;
	char *text = NULL;
	size_t hlen, padded, total, off = 0;
	unsigned char *buf;
	int rv = LOOM_EINVAL;

	if (hdr == NULL)
		return LOOM_ENOMEM;
	if (out == NULL || len == NULL || (n > 0 && t == NULL) || (n_meta > 0 && meta == NULL))
		goto fail;
	if (n_meta > 0) {
		if ((m = json_object()) == NULL || json_object_set_new(hdr, "__metadata__", m) != 0) {
			rv = LOOM_ENOMEM;
			goto fail;
		}
		for (size_t i = 0; i < n_meta; i++) {
			json_t *v;
			if (meta[i].key == NULL || meta[i].value == NULL ||
			    json_object_get(m, meta[i].key) != NULL)
				goto fail; /* a repeated key */
			if ((v = json_string(meta[i].value)) == NULL) /* not UTF-8 */
				goto fail;
			if (json_object_set_new(m, meta[i].key, v) != 0)
				goto fail; /* a key that is not UTF-8 */
		}
	}
	for (size_t i = 0; i < n; i++) {
		json_t *e;
		if (json_object_get(hdr, t[i].name ? t[i].name : "") != NULL)
			goto fail; /* a repeated name */
		if ((e = entry_of(&t[i], off)) == NULL || json_object_set_new(hdr, t[i].name, e) != 0)
			goto fail;
		off += t[i].nbytes;
	}
	/* Keys in insertion order: the file's bytes depend only on the input. */
	text = json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(hdr);
	if (text == NULL)
		return LOOM_ENOMEM;
	hlen = strlen(text);
	padded = (hlen + 7) & ~(size_t)7;
	total = 8 + padded + off;
	if ((buf = malloc(total)) == NULL) {
		free(text);
		return LOOM_ENOMEM;
	}
	for (int b = 0; b < 8; b++)
		buf[b] = (unsigned char)(((uint64_t)padded >> (8 * b)) & 0xff);
	memcpy(buf + 8, text, hlen);
	memset(buf + 8 + hlen, ' ', padded - hlen);
	free(text);
	off = 8 + padded;
	for (size_t i = 0; i < n; i++) {
		if (t[i].nbytes)
			memcpy(buf + off, t[i].data, t[i].nbytes);
		off += t[i].nbytes;
	}
	*out = buf;
	*len = total;
	return 0;
fail:
	json_decref(hdr);
	return rv;
}

static int
corrupt(char **err, const char *name, const char *what, const char *tensor)
{
	char buf[512];
	snprintf(buf, sizeof buf, "%s is not a valid safetensors file: %s%s%s%s",
	         name ? name : "the file", what, tensor ? " (tensor \"" : "", tensor ? tensor : "",
	         tensor ? "\")" : "");
	if (err)
		*err = strdup(buf);
	return LOOM_ECORRUPT;
}

/* The same, for a tensor named in f's header: the message is made before
 * f (which owns the name) is freed. */
static int
corrupt_free(loom_safetensors *f, char **err, const char *name, const char *what,
             const char *tensor)
{
	int rv = corrupt(err, name, what, tensor);
	loom_safetensors_free(f);
	return rv;
}

static int
by_begin(const void *a, const void *b)
{
	const loom_safetensors_tensor *x = a, *y = b;
	const unsigned char *p = x->data, *q = y->data;
	return p < q ? -1 : p > q;
}

int
loom_safetensors_decode(const void *vbuf, size_t len, const char *name,
                        loom_safetensors **file, char **err)
{
	const unsigned char *buf = vbuf;
	uint64_t hlen = 0;
	json_error_t jerr;
	const char *key;
	json_t *v;
	const unsigned char *data;
	size_t data_len, i = 0;
	loom_safetensors *f;

	*file = NULL;
	if (buf == NULL || len < 8)
		return corrupt(err, name, "shorter than its 8-byte header length", NULL);
	for (int b = 0; b < 8; b++)
		hlen |= (uint64_t)buf[b] << (8 * b);
	if (hlen > len - 8 || hlen > HEADER_MAX)
		return corrupt(err, name, "the header length runs past the end of the file", NULL);
	if ((f = calloc(1, sizeof *f)) == NULL)
		return LOOM_ENOMEM;
	f->header = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
	if (f->header == NULL || !json_is_object(f->header))
		return corrupt_free(f, err, name, "the header is not a JSON object", NULL);
	data = buf + 8 + hlen;
	data_len = len - 8 - (size_t)hlen;
	f->tensors = calloc(json_object_size(f->header) + 1, sizeof *f->tensors);
	if (f->tensors == NULL) {
		loom_safetensors_free(f);
		return LOOM_ENOMEM;
	}
	json_object_foreach(f->header, key, v) {
		loom_safetensors_tensor *t;
		json_t *shape, *offs, *d;
		size_t want, k;
		json_int_t b0, b1;

		if (strcmp(key, "__metadata__") == 0) {
			const char *mk;
			json_t *mv;
			size_t j = 0;
			if (!json_is_object(v))
				return corrupt_free(f, err, name, "__metadata__ is not an object", NULL);
			json_object_foreach(v, mk, mv) {
				if (!json_is_string(mv)) {
					return corrupt_free(f, err, name,
					                    "a __metadata__ value is not a string", mk);
				}
			}
			f->meta = calloc(json_object_size(v) + 1, sizeof *f->meta);
			if (f->meta == NULL) {
				loom_safetensors_free(f);
				return LOOM_ENOMEM;
			}
			json_object_foreach(v, mk, mv) {
				f->meta[j].key = mk;
				f->meta[j++].value = json_string_value(mv);
			}
			f->n_meta = j;
			continue;
		}
		t = &f->tensors[i];
		t->name = key;
		t->dtype = json_string_value(json_object_get(v, "dtype"));
		shape = json_object_get(v, "shape");
		offs = json_object_get(v, "data_offsets");
		if (!json_is_object(v) || loom_safetensors_dtype_size(t->dtype) == 0 ||
		    !json_is_array(shape) || json_array_size(shape) > LOOM_SAFETENSORS_MAX_DIMS ||
		    !json_is_array(offs) || json_array_size(offs) != 2) {
			return corrupt_free(f, err, name,
			                    "an entry lacks a known dtype, a shape or two offsets", key);
		}
		want = loom_safetensors_dtype_size(t->dtype);
		json_array_foreach(shape, k, d) {
			if (!json_is_integer(d) || json_integer_value(d) < 0 ||
			    json_integer_value(d) > (json_int_t)(len)) {
				return corrupt_free(f, err, name, "a dimension is not a size", key);
			}
			t->dims[k] = json_integer_value(d);
			want *= (size_t)t->dims[k];
			if (want > len) {
				return corrupt_free(f, err, name, "a tensor is larger than the file", key);
			}
		}
		t->ndim = (uint32_t)json_array_size(shape);
		b0 = json_integer_value(json_array_get(offs, 0));
		b1 = json_integer_value(json_array_get(offs, 1));
		if (!json_is_integer(json_array_get(offs, 0)) ||
		    !json_is_integer(json_array_get(offs, 1)) || b0 < 0 || b1 < b0 ||
		    (size_t)b1 > data_len || (size_t)(b1 - b0) != want) {
			return corrupt_free(f, err, name,
			                    "its data offsets are out of bounds or do not match dtype × "
			                    "shape",
			                    key);
		}
		t->data = data + b0;
		t->nbytes = want;
		i++;
	}
	f->n = i;
	/* The data must be covered exactly, without overlaps. */
	{
		loom_safetensors_tensor *sorted = malloc((f->n ? f->n : 1) * sizeof *sorted);
		size_t pos = 0;
		int bad = 0;
		if (sorted == NULL) {
			loom_safetensors_free(f);
			return LOOM_ENOMEM;
		}
		memcpy(sorted, f->tensors, f->n * sizeof *sorted);
		qsort(sorted, f->n, sizeof *sorted, by_begin);
		for (size_t k = 0; k < f->n && !bad; k++) {
			size_t b0 = (size_t)((const unsigned char *)sorted[k].data - data);
			if (b0 != pos)
				bad = 1;
			pos = b0 + sorted[k].nbytes;
		}
		free(sorted);
		if (bad || pos != data_len) {
			loom_safetensors_free(f);
			return corrupt(err, name, "tensor data overlaps, leaves gaps, or the file has "
			                          "trailing bytes",
			               NULL);
		}
	}
	*file = f;
	return 0;
}

void
loom_safetensors_free(loom_safetensors *f)
{
	if (f == NULL)
		return;
	free(f->tensors);
	free(f->meta);
	json_decref(f->header);
	free(f);
}

const loom_safetensors_tensor *
loom_safetensors_tensors(const loom_safetensors *f, size_t *n)
{
	if (n)
		*n = f ? f->n : 0;
	return f ? f->tensors : NULL;
}

const loom_safetensors_tensor *
loom_safetensors_find(const loom_safetensors *f, const char *name)
{
	for (size_t i = 0; f && name && i < f->n; i++) {
		if (strcmp(f->tensors[i].name, name) == 0)
			return &f->tensors[i];
	}
	return NULL;
}

const loom_safetensors_meta *
loom_safetensors_metadata(const loom_safetensors *f, size_t *n)
{
	if (n)
		*n = f ? f->n_meta : 0;
	return f ? f->meta : NULL;
}

const char *
loom_safetensors_meta_get(const loom_safetensors *f, const char *key)
{
	for (size_t i = 0; f && key && i < f->n_meta; i++) {
		if (strcmp(f->meta[i].key, key) == 0)
			return f->meta[i].value;
	}
	return NULL;
}

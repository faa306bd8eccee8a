/* The safetensors format: encode and strictly decode.  See safetensors.h. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/error.h>

#include "safetensors.h"

static const struct {
	const char *name;
	size_t size;
} dtypes[] = {
	{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4},
	{"I16", 2}, {"I8", 1},  {"U8", 1},  {"BOOL", 1}, {"U16", 2}, {"U32", 4}, {"U64", 8},
};

size_t
st_dtype_size(const char *dtype)
{
	for (size_t i = 0; dtype && i < sizeof dtypes / sizeof dtypes[0]; i++) {
		if (strcmp(dtype, dtypes[i].name) == 0)
			return dtypes[i].size;
	}
	return 0;
}

int
st_encode(const st_tensor *t, size_t n, const json_t *metadata, unsigned char **out, size_t *len)
{
	json_t *hdr = json_object();
	char *text = NULL;
	size_t hlen, padded, total, off = 0;
	unsigned char *buf;

	if (hdr == NULL)
		return LOOM_ENOMEM;
	if (metadata)
		json_object_set(hdr, "__metadata__", (json_t *)metadata);
	for (size_t i = 0; i < n; i++) {
		json_t *shape = json_array(), *e;
		size_t want = st_dtype_size(t[i].dtype);
		for (int d = 0; d < t[i].ndim; d++) {
			json_array_append_new(shape, json_integer(t[i].dims[d]));
			want *= (size_t)t[i].dims[d];
		}
		if (want != t[i].nbytes || json_object_get(hdr, t[i].name)) {
			json_decref(shape);
			json_decref(hdr);
			return LOOM_EINVAL;
		}
		e = json_pack("{s:s, s:o, s:[I,I]}", "dtype", t[i].dtype, "shape", shape,
		              "data_offsets", (json_int_t)off, (json_int_t)(off + t[i].nbytes));
		json_object_set_new(hdr, t[i].name, e);
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
}

static int
corrupt(char **err, const char *name, const char *what, const char *tensor)
{
	char buf[512];
	snprintf(buf, sizeof buf, "%s is not a valid safetensors file: %s%s%s%s", name, what,
	         tensor ? " (tensor \"" : "", tensor ? tensor : "", tensor ? "\")" : "");
	*err = strdup(buf);
	return LOOM_ECORRUPT;
}

/* The same, for a tensor named in f's header: the message is made before
 * f (which owns the name) is freed. */
static int
corrupt_free(st_file *f, char **err, const char *name, const char *what, const char *tensor)
{
	int rv = corrupt(err, name, what, tensor);
	st_file_free(f);
	return rv;
}

static int
by_begin(const void *a, const void *b)
{
	const st_tensor *x = a, *y = b;
	const unsigned char *p = x->data, *q = y->data;
	return p < q ? -1 : p > q;
}

int
st_decode(const unsigned char *buf, size_t len, const char *name, st_file *f, char **err)
{
	uint64_t hlen = 0;
	json_error_t jerr;
	const char *key;
	json_t *v;
	const unsigned char *data;
	size_t data_len, i = 0;

	memset(f, 0, sizeof *f);
	if (len < 8)
		return corrupt(err, name, "shorter than its 8-byte header length", NULL);
	for (int b = 0; b < 8; b++)
		hlen |= (uint64_t)buf[b] << (8 * b);
	if (hlen > len - 8 || hlen > (100u << 20))
		return corrupt(err, name, "the header length runs past the end of the file", NULL);
	f->header = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
	if (f->header == NULL || !json_is_object(f->header)) {
		st_file_free(f);
		return corrupt(err, name, "the header is not a JSON object", NULL);
	}
	data = buf + 8 + hlen;
	data_len = len - 8 - (size_t)hlen;
	f->tensors = calloc(json_object_size(f->header) + 1, sizeof *f->tensors);
	if (f->tensors == NULL) {
		st_file_free(f);
		return LOOM_ENOMEM;
	}
	json_object_foreach(f->header, key, v) {
		st_tensor *t;
		json_t *shape, *offs, *d;
		size_t want, k;
		json_int_t b0, b1;

		if (strcmp(key, "__metadata__") == 0) {
			const char *mk;
			json_t *mv;
			if (!json_is_object(v)) {
				st_file_free(f);
				return corrupt(err, name, "__metadata__ is not an object", NULL);
			}
			json_object_foreach(v, mk, mv) {
				if (!json_is_string(mv)) {
					return corrupt_free(f, err, name,
					                    "a __metadata__ value is not a string", mk);
				}
			}
			f->metadata = v;
			continue;
		}
		t = &f->tensors[i];
		t->name = key;
		t->dtype = json_string_value(json_object_get(v, "dtype"));
		shape = json_object_get(v, "shape");
		offs = json_object_get(v, "data_offsets");
		if (!json_is_object(v) || st_dtype_size(t->dtype) == 0 || !json_is_array(shape) ||
		    json_array_size(shape) > ST_MAX_DIMS || !json_is_array(offs) ||
		    json_array_size(offs) != 2) {
			return corrupt_free(f, err, name,
			                    "an entry lacks a known dtype, a shape or two offsets", key);
		}
		want = st_dtype_size(t->dtype);
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
		t->ndim = (int)json_array_size(shape);
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
		st_tensor *sorted = malloc((f->n ? f->n : 1) * sizeof *sorted);
		size_t pos = 0;
		int bad = 0;
		if (sorted == NULL) {
			st_file_free(f);
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
			st_file_free(f);
			return corrupt(err, name, "tensor data overlaps, leaves gaps, or the file has "
			                          "trailing bytes",
			               NULL);
		}
	}
	return 0;
}

void
st_file_free(st_file *f)
{
	free(f->tensors);
	json_decref(f->header);
	memset(f, 0, sizeof *f);
}

const st_tensor *
st_find(const st_file *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++) {
		if (strcmp(f->tensors[i].name, name) == 0)
			return &f->tensors[i];
	}
	return NULL;
}

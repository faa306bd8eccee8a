/* Checkpoints and weight files.  See checkpoint.h. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include <loom/error.h>
#include <loom/safetensors.h>
#include <loom/util.h>

#include "checkpoint.h"
#include "safetensors-io.h"

#define CKPT_FORMAT "loom-checkpoint"
#define CKPT_VERSION "1"
#define MAX_DECOMPRESSED (64ull << 30)

/* ------------------------------------------------------------------ state ↔ JSON */

static json_t *
state_json(const tf_train_state *s)
{
	return json_pack("{s:I, s:I, s:I, s:f, s:I, s:f, s:f, s:I, s:I, s:b, s:f, s:I}", "step",
	                 (json_int_t)s->step, "epoch", (json_int_t)s->epoch, "batch",
	                 (json_int_t)s->batch, "lr_scale", s->lr_scale, "plateau_bad",
	                 (json_int_t)s->plateau_bad, "plateau_best", s->plateau_best, "es_best",
	                 s->es_best, "es_bad", (json_int_t)s->es_bad, "best_epoch",
	                 (json_int_t)s->best_epoch, "stopped_early", s->stopped_early,
	                 "epoch_loss_sum", s->epoch_loss_sum, "epoch_loss_count",
	                 (json_int_t)s->epoch_loss_count);
}

static int
state_from_json(json_t *j, tf_train_state *s)
{
	json_int_t step, epoch, batch, pbad, ebad, best, count;
	int stopped;
	double lr_scale, pbest, ebest, sum;

	if (json_unpack(j, "{s:I, s:I, s:I, s:F, s:I, s:F, s:F, s:I, s:I, s:b, s:F, s:I}", "step",
	                &step, "epoch", &epoch, "batch", &batch, "lr_scale", &lr_scale,
	                "plateau_bad", &pbad, "plateau_best", &pbest, "es_best", &ebest, "es_bad",
	                &ebad, "best_epoch", &best, "stopped_early", &stopped, "epoch_loss_sum",
	                &sum, "epoch_loss_count", &count) != 0)
		return LOOM_ECORRUPT;
	if (step < 0 || epoch < 0 || batch < 0)
		return LOOM_ECORRUPT;
	s->step = step;
	s->epoch = epoch;
	s->batch = batch;
	s->lr_scale = lr_scale;
	s->plateau_bad = pbad;
	s->plateau_best = pbest;
	s->es_best = ebest;
	s->es_bad = ebad;
	s->best_epoch = best;
	s->stopped_early = stopped;
	s->epoch_loss_sum = sum;
	s->epoch_loss_count = count;
	return 0;
}

/* ------------------------------------------------------------------ tensors */

static void
names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* The model's tensors as safetensors entries; with moments, also
 * "optimizer.m.NAME" and "optimizer.v.NAME". */
static loom_safetensors_tensor *
entries(const tf_model *m, int moments, size_t *n, char ***names)
{
	size_t per = moments ? 3 : 1, k = 0;
	loom_safetensors_tensor *t = calloc((size_t)m->n_tensors * per + 1, sizeof *t);
	char **owned = calloc((size_t)m->n_tensors * per + 1, sizeof *owned);

	if (t == NULL || owned == NULL) {
		free(t);
		free(owned);
		return NULL;
	}
	for (size_t pass = 0; pass < per; pass++) {
		const float *base = pass == 0 ? m->params : pass == 1 ? m->m : m->v;
		for (int i = 0; i < m->n_tensors; i++) {
			const tf_tensor *tt = &m->tensors[i];
			owned[k] = pass == 0 ? loom_strfmt("%s", tt->name)
			                     : loom_strfmt("optimizer.%s.%s", pass == 1 ? "m" : "v",
			                                   tt->name);
			if (owned[k] == NULL) {
				names_free(owned, k);
				free(t);
				return NULL;
			}
			tf_st_entry(&t[k], owned[k], tt, base);
			k++;
		}
	}
	*n = k;
	*names = owned;
	return t;
}

/* ------------------------------------------------------------------ files (safetensors-io.h) */

int
tf_st_encode(const loom_safetensors_tensor *t, size_t n, const json_t *meta, unsigned char **out,
             size_t *len)
{
	loom_safetensors_meta *pairs = calloc(json_object_size(meta) + 1, sizeof *pairs);
	const char *key;
	json_t *v;
	size_t k = 0;
	int rv;

	if (pairs == NULL)
		return LOOM_ENOMEM;
	json_object_foreach((json_t *)meta, key, v) {
		if (json_is_string(v)) {
			pairs[k].key = key;
			pairs[k++].value = json_string_value(v);
		}
	}
	rv = loom_safetensors_encode(t, n, pairs, k, out, len);
	free(pairs);
	return rv;
}

int
tf_st_write(const char *path, const char *what, const loom_safetensors_tensor *t, size_t n,
            const json_t *meta, char **err)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	int rv;

	if ((rv = tf_st_encode(t, n, meta, &buf, &len)) != 0) {
		*err = loom_strfmt("cannot encode %s %s: %s", what, path, loom_strerror(rv));
		return rv;
	}
	if (loom_file_write_atomic(path, buf, len, 0644) != 0) {
		*err = loom_strfmt("cannot write %s %s: %s", what, path, strerror(errno));
		rv = LOOM_EIO;
	}
	free(buf);
	return rv;
}

int
tf_st_read(const char *path, char **buf, size_t *len, loom_safetensors **f, char **err)
{
	int rv;

	*buf = NULL;
	*f = NULL;
	if (loom_file_read(path, buf, len) != 0) {
		rv = errno;
		*err = loom_strfmt("cannot read %s: %s", path, strerror(rv));
		return rv == ENOENT ? LOOM_ENOENT : rv == ENOMEM ? LOOM_ENOMEM : LOOM_EIO;
	}
	if ((rv = loom_safetensors_decode(*buf, *len, path, f, err)) != 0) {
		free(*buf);
		*buf = NULL;
	}
	return rv;
}

json_t *
tf_st_metadata_json(const loom_safetensors *f)
{
	size_t n;
	const loom_safetensors_meta *meta = loom_safetensors_metadata(f, &n);
	json_t *o = json_object();

	for (size_t i = 0; o && i < n; i++)
		json_object_set_new(o, meta[i].key, json_string(meta[i].value));
	return o;
}

void
tf_st_entry(loom_safetensors_tensor *t, const char *name, const tf_tensor *tt, const float *base)
{
	t->name = name;
	t->dtype = "F32";
	t->ndim = (uint32_t)tt->ndim;
	for (int d = 0; d < tt->ndim; d++)
		t->dims[d] = tt->dims[d];
	t->data = base + tt->offset;
	t->nbytes = (size_t)tt->numel * sizeof(float);
}

const char *
tf_st_shown(const char *name, char *buf, size_t n)
{
	size_t i = 0;

	for (; name[i] != '\0' && i + 1 < n; i++)
		buf[i] = name[i] >= 0x20 && name[i] < 0x7f ? name[i] : '?';
	buf[i] = '\0';
	if (name[i] != '\0')
		memcpy(buf + n - 4, "...", 4);
	return buf;
}

int
tf_st_fit(const tf_tensor *tt, const loom_safetensors_tensor *s, int *dim)
{
	int grown = -1;

	if (strcmp(s->dtype, "F32") != 0 || s->ndim != (uint32_t)tt->ndim)
		return -1;
	for (int d = 0; d < tt->ndim; d++) {
		if (s->dims[d] == tt->dims[d])
			continue;
		if (s->dims[d] > tt->dims[d] || grown >= 0 || !(tt->flags & TF_HEAD))
			return -1;
		grown = d;
	}
	if (grown < 0)
		return 0;
	*dim = grown;
	return 1;
}

void
tf_st_copy(float *dst, const tf_tensor *tt, const loom_safetensors_tensor *s, int fit, int dim)
{
	const unsigned char *src = s->data;
	int64_t outer = 1, inner = 1;

	if (fit == 0) {
		memcpy(dst, src, s->nbytes);
		return;
	}
	/* dst [outer, tt->dims[dim], inner] ← src [outer, s->dims[dim], inner] */
	for (int d = 0; d < dim; d++)
		outer *= tt->dims[d];
	for (int d = dim + 1; d < tt->ndim; d++)
		inner *= tt->dims[d];
	for (int64_t o = 0; o < outer; o++)
		memcpy(dst + o * tt->dims[dim] * inner,
		       src + (size_t)(o * s->dims[dim] * inner) * sizeof(float),
		       (size_t)(s->dims[dim] * inner) * sizeof(float));
}

/* Check that f holds every tensor of m (with moments if asked) with the
 * right dtype and shape; on success fill src[] (params, then m, then v). */
static int
match(const tf_model *m, const loom_safetensors *f, int moments, const char *path,
      const loom_safetensors_tensor **src, char **err)
{
	size_t per = moments ? 3 : 1, k = 0;
	char name[TF_NAME_MAX + 16];

	for (size_t pass = 0; pass < per; pass++) {
		for (int i = 0; i < m->n_tensors; i++) {
			const tf_tensor *tt = &m->tensors[i];
			const loom_safetensors_tensor *s;
			int grown;

			if (pass == 0)
				snprintf(name, sizeof name, "%s", tt->name);
			else
				snprintf(name, sizeof name, "optimizer.%s.%s", pass == 1 ? "m" : "v",
				         tt->name);
			if ((s = loom_safetensors_find(f, name)) == NULL) {
				*err = loom_strfmt("%s has no tensor \"%s\": it was written for another "
				                    "model; use the spec it was trained with",
				                    path, name);
				return LOOM_EINVAL;
			}
			if (tf_st_fit(tt, s, &grown) != 0) {
				*err = loom_strfmt("%s: tensor \"%s\" has another dtype or shape than "
				                    "this model's; it was written for another model",
				                    path, name);
				return LOOM_EINVAL;
			}
			src[k++] = s;
		}
	}
	return 0;
}

static void
copy_in(tf_model *m, const loom_safetensors_tensor **src, int moments)
{
	size_t per = moments ? 3 : 1, k = 0;
	for (size_t pass = 0; pass < per; pass++) {
		float *base = pass == 0 ? m->params : pass == 1 ? m->m : m->v;
		for (int i = 0; i < m->n_tensors; i++, k++)
			memcpy(base + m->tensors[i].offset, src[k]->data, src[k]->nbytes);
	}
}

/* ------------------------------------------------------------------ checkpoints */

int
tf_checkpoint_save(const char *path, const tf_model *m, const tf_train_state *st,
                   const json_t *info, const json_t *history, char **err)
{
	json_t *meta, *sj;
	char *state_text, *info_text, *history_text;
	char **names = NULL;
	loom_safetensors_tensor *t;
	size_t n = 0, raw_len = 0, bound, clen;
	unsigned char *raw = NULL;
	void *comp = NULL;
	ZSTD_CCtx *cctx = NULL;
	int rv;

	if ((t = entries(m, 1, &n, &names)) == NULL)
		return LOOM_ENOMEM;
	sj = state_json(st);
	state_text = json_dumps(sj, JSON_COMPACT);
	info_text = json_dumps(info, JSON_COMPACT | JSON_SORT_KEYS);
	history_text = history ? json_dumps(history, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	meta = json_pack("{s:s, s:s, s:s, s:s, s:s}", "format", CKPT_FORMAT, "version",
	                 CKPT_VERSION, "state", state_text ? state_text : "{}", "info",
	                 info_text ? info_text : "{}", "history",
	                 history_text ? history_text : "[]");
	json_decref(sj);
	free(state_text);
	free(info_text);
	free(history_text);
	rv = meta ? tf_st_encode(t, n, meta, &raw, &raw_len) : LOOM_ENOMEM;
	json_decref(meta);
	free(t);
	names_free(names, n);
	if (rv != 0) {
		*err = loom_strfmt("cannot encode the checkpoint %s: %s", path, loom_strerror(rv));
		return rv;
	}

	bound = ZSTD_compressBound(raw_len);
	comp = malloc(bound);
	cctx = ZSTD_createCCtx();
	if (comp == NULL || cctx == NULL) {
		rv = LOOM_ENOMEM;
		*err = loom_strfmt("out of memory compressing the checkpoint %s", path);
		goto out;
	}
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 3);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
	clen = ZSTD_compress2(cctx, comp, bound, raw, raw_len);
	if (ZSTD_isError(clen)) {
		rv = LOOM_EIO;
		*err = loom_strfmt("cannot compress the checkpoint %s: %s", path,
		                    ZSTD_getErrorName(clen));
		goto out;
	}
	if (loom_file_write_atomic(path, comp, clen, 0644) != 0) {
		*err = loom_strfmt("cannot write the checkpoint %s: %s", path, strerror(errno));
		rv = LOOM_EIO;
	}
out:
	ZSTD_freeCCtx(cctx);
	free(comp);
	free(raw);
	return rv;
}

int
tf_checkpoint_load(const char *path, tf_model *m, tf_train_state *st, json_t **info,
                   json_t **history, char **err)
{
	char *file = NULL;
	size_t len = 0, frame;
	unsigned long long size;
	unsigned char *raw = NULL;
	loom_safetensors *f = NULL;
	const loom_safetensors_tensor **src = NULL;
	const char *fmt, *state_text, *info_text, *history_text;
	json_t *sj = NULL, *ij = NULL, *hj = NULL;
	tf_train_state s;
	int rv;

	if (loom_file_read(path, &file, &len) != 0) {
		rv = errno;
		*err = loom_strfmt("cannot read the checkpoint %s: %s", path, strerror(rv));
		return rv == ENOENT ? LOOM_ENOENT : LOOM_EIO;
	}
	frame = ZSTD_findFrameCompressedSize(file, len);
	size = ZSTD_getFrameContentSize(file, len);
	if (ZSTD_isError(frame) || frame != len || size == ZSTD_CONTENTSIZE_ERROR ||
	    size == ZSTD_CONTENTSIZE_UNKNOWN || size > MAX_DECOMPRESSED) {
		*err = loom_strfmt("the checkpoint %s is truncated or not a Loom checkpoint; it "
		                    "cannot be used (resume from an earlier one, or start over)",
		                    path);
		rv = LOOM_ECORRUPT;
		goto out;
	}
	if ((raw = malloc(size ? size : 1)) == NULL) {
		rv = LOOM_ENOMEM;
		*err = loom_strfmt("out of memory reading the checkpoint %s", path);
		goto out;
	}
	{
		size_t got = ZSTD_decompress(raw, size, file, len);
		if (ZSTD_isError(got) || got != size) {
			*err = loom_strfmt("the checkpoint %s is corrupt (%s); it cannot be used "
			                    "(resume from an earlier one, or start over)",
			                    path,
			                    ZSTD_isError(got) ? ZSTD_getErrorName(got) : "wrong size");
			rv = LOOM_ECORRUPT;
			goto out;
		}
	}
	if ((rv = loom_safetensors_decode(raw, size, path, &f, err)) != 0)
		goto out;
	fmt = loom_safetensors_meta_get(f, "format");
	state_text = loom_safetensors_meta_get(f, "state");
	info_text = loom_safetensors_meta_get(f, "info");
	history_text = loom_safetensors_meta_get(f, "history");
	if (fmt == NULL || strcmp(fmt, CKPT_FORMAT) != 0 || state_text == NULL ||
	    info_text == NULL || history_text == NULL ||
	    (sj = json_loads(state_text, 0, NULL)) == NULL ||
	    (ij = json_loads(info_text, 0, NULL)) == NULL ||
	    (hj = json_loads(history_text, 0, NULL)) == NULL || !json_is_array(hj) ||
	    state_from_json(sj, &s) != 0) {
		*err = loom_strfmt("%s is not a Loom checkpoint (its metadata is missing or "
		                    "malformed)",
		                    path);
		rv = LOOM_ECORRUPT;
		goto out;
	}
	if ((src = calloc((size_t)m->n_tensors * 3 + 1, sizeof *src)) == NULL) {
		rv = LOOM_ENOMEM;
		goto out;
	}
	if ((rv = match(m, f, 1, path, src, err)) != 0)
		goto out;
	/* Everything checked: now load. */
	copy_in(m, src, 1);
	*st = s;
	*info = ij;
	ij = NULL;
	if (history) {
		*history = hj;
		hj = NULL;
	}
out:
	json_decref(sj);
	json_decref(ij);
	json_decref(hj);
	free(src);
	loom_safetensors_free(f);
	free(raw);
	free(file);
	return rv;
}

char *
tf_checkpoint_newest(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	long long best = -1;
	char *path = NULL;

	if (d == NULL)
		return NULL;
	while ((de = readdir(d)) != NULL) {
		long long step;
		char tail[8];
		if (sscanf(de->d_name, "step-%lld.%7s", &step, tail) == 2 &&
		    strcmp(tail, "ckpt") == 0 && step > best)
			best = step;
	}
	closedir(d);
	if (best >= 0)
		path = loom_strfmt("%s/step-%012lld.ckpt", dir, best);
	return path;
}

/* ------------------------------------------------------------------ weights */

int
tf_weights_save(const char *path, const tf_model *m, const json_t *info, char **err)
{
	json_t *meta = json_object();
	const char *key;
	json_t *v;
	char **names = NULL;
	loom_safetensors_tensor *t;
	size_t n = 0;
	int rv;

	json_object_set_new(meta, "format", json_string("loom-weights"));
	json_object_foreach((json_t *)info, key, v) {
		if (json_is_string(v))
			json_object_set(meta, key, v);
		else {
			char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
			json_object_set_new(meta, key, json_string(text ? text : "null"));
			free(text);
		}
	}
	if ((t = entries(m, 0, &n, &names)) == NULL) {
		json_decref(meta);
		return LOOM_ENOMEM;
	}
	rv = tf_st_write(path, "the weights", t, n, meta, err);
	free(t);
	names_free(names, n);
	json_decref(meta);
	return rv;
}

int
tf_weights_load(const char *path, tf_model *m, json_t **info, char **err)
{
	char *file = NULL;
	size_t len = 0;
	loom_safetensors *f = NULL;
	const loom_safetensors_tensor **src = NULL;
	int rv;

	if ((rv = tf_st_read(path, &file, &len, &f, err)) != 0)
		return rv;
	if ((src = calloc((size_t)m->n_tensors + 1, sizeof *src)) == NULL) {
		rv = LOOM_ENOMEM;
		goto out;
	}
	if ((rv = match(m, f, 0, path, src, err)) != 0)
		goto out;
	copy_in(m, src, 0);
	if (info)
		*info = tf_st_metadata_json(f);
out:
	free(src);
	loom_safetensors_free(f);
	free(file);
	return rv;
}

int
tf_weights_load_init(const char *path, tf_model *m, json_t **info, int *grown, char **err)
{
	char *file = NULL;
	size_t len = 0, n_file;
	loom_safetensors *f = NULL;
	const loom_safetensors_tensor *ft;
	const loom_safetensors_tensor **src = NULL;
	int *fit = NULL, *dim = NULL, n_grown = 0, rv;
	char shown[TF_NAME_MAX + 4];

	if ((rv = tf_st_read(path, &file, &len, &f, err)) != 0)
		return rv;
	if ((src = calloc((size_t)m->n_tensors + 1, sizeof *src)) == NULL ||
	    (fit = calloc((size_t)m->n_tensors + 1, sizeof *fit)) == NULL ||
	    (dim = calloc((size_t)m->n_tensors + 1, sizeof *dim)) == NULL) {
		rv = LOOM_ENOMEM;
		*err = loom_strfmt("out of memory reading %s", path);
		goto out;
	}
	/* every tensor of the file is one of m's */
	ft = loom_safetensors_tensors(f, &n_file);
	for (size_t i = 0; i < n_file; i++)
		if (tf_model_tensor(m, ft[i].name) == NULL) {
			*err = loom_strfmt("%s has a tensor \"%s\" this model does not have: it was "
			                    "written for another kind of model; train.init must name a "
			                    "version of the same architecture",
			                    path, tf_st_shown(ft[i].name, shown, sizeof shown));
			rv = LOOM_EINVAL;
			goto out;
		}
	/* every tensor of m is in the file, the same or a grown head */
	for (int i = 0; i < m->n_tensors; i++) {
		const tf_tensor *tt = &m->tensors[i];
		if ((src[i] = loom_safetensors_find(f, tt->name)) == NULL) {
			*err = loom_strfmt("%s has no tensor \"%s\": it was written for another kind of "
			                    "model; train.init must name a version of the same "
			                    "architecture",
			                    path, tt->name);
			rv = LOOM_EINVAL;
			goto out;
		}
		if ((fit[i] = tf_st_fit(tt, src[i], &dim[i])) < 0) {
			*err = loom_strfmt("%s: tensor \"%s\" has another dtype or shape than this "
			                    "model's; train.init must name a version of the same "
			                    "architecture (only a classification head may grow, by new "
			                    "classes)",
			                    path, tt->name);
			rv = LOOM_EINVAL;
			goto out;
		}
		n_grown += fit[i];
	}
	/* everything checked: now load */
	for (int i = 0; i < m->n_tensors; i++)
		tf_st_copy(m->params + m->tensors[i].offset, &m->tensors[i], src[i], fit[i], dim[i]);
	if (info)
		*info = tf_st_metadata_json(f);
	if (grown)
		*grown = n_grown;
out:
	free(dim);
	free(fit);
	free(src);
	loom_safetensors_free(f);
	free(file);
	return rv;
}

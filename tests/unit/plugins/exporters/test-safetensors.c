/* exporter-safetensors on a real trained run (loom-worker, tiny spec),
 * checked by an independent reader (tests/reference/safetensors_read.py,
 * standard library only):
 *
 * - every rule of the format holds; every tensor, in model order, equals
 *   the run's weights bit for bit; the metadata carries head, model, data,
 *   spec, run id, Loom's version and the final metrics;
 * - the file loads back through Loom (it is a Loom weights file);
 * - with torch installed, its layers load into nn.TransformerEncoderLayer;
 * - the reader fails on corrupted copies (it can fail);
 * - a run without weights is refused with a message; a failing sink's
 *   error comes back. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <loom/safetensors.h>

#include "exp-common.h"
#include "host/core/util.h"

static const char *trained;

/* Export the trained run (as run "job-7") into b. */
static void
export_trained(exp_plugin *e, exp_buf *b, loomi_export_run **run)
{
	*run = exp_load(trained);
	loomi_export_set_run(*run, "job-7", 7, "tiny", "completed", NULL, NULL);
	exp_open(e, "exporter-safetensors");
	exp_buf_init(b);
	ck_assert_int_eq(e->ops->export_run(e->ctx, loomi_export_source(*run), &b->sink), 0);
	ck_assert_uint_gt(b->len, 8);
}

/* Run the reader on data; its exit status, its JSON output in *doc. */
static int
read_with_python(const void *data, size_t len, const char *flags, json_t **doc)
{
	char *dir = tu_tmpdir(), *path = exp_save(dir, "x.safetensors", data, len), *out = NULL;
	char *cmd = loomi_strfmt("'%s' '%s/tests/reference/safetensors_read.py' '%s' %s",
	                         exp_python(), tu_env("LOOM_TEST_SRCDIR"), path, flags);
	int rv = exp_sh(cmd, &out);

	if (doc)
		*doc = rv == 0 ? json_loads(out, 0, NULL) : NULL;
	free(out);
	free(cmd);
	free(path);
	tu_rmrf(dir);
	free(dir);
	return rv;
}

START_TEST(test_format)
{
	exp_plugin e;

	exp_open(&e, "exporter-safetensors");
	ck_assert_str_eq(e.ops->format, "safetensors");
	ck_assert_str_eq(e.ops->extension, ".safetensors");
	ck_assert_uint_eq(e.ops->caps, LOOM_EXPORT_NEEDS_TENSORS);
	exp_close(&e);
}
END_TEST

START_TEST(test_bit_exact)
{
	exp_plugin e;
	exp_buf b;
	loomi_export_run *run;
	const loom_export_source *src;
	json_t *doc = NULL, *tensors;
	uint64_t hlen = 0;

	export_trained(&e, &b, &run);
	src = loomi_export_source(run);
	for (int i = 0; i < 8; i++)
		hlen |= (uint64_t)(unsigned char)b.data[i] << (8 * i);
	ck_assert_uint_eq(hlen % 8, 0);
	ck_assert_int_eq(read_with_python(b.data, b.len, "--values", &doc), 0);
	ck_assert_ptr_nonnull(doc);
	ck_assert_uint_eq(json_integer_value(json_object_get(doc, "header_len")), hlen);
	tensors = json_object_get(doc, "tensors");
	ck_assert_uint_gt(src->n_tensors, 10);
	ck_assert_uint_eq(json_array_size(tensors), src->n_tensors);
	for (size_t i = 0; i < src->n_tensors; i++) {
		const loom_tensor *t = &src->tensors[i];
		json_t *r = json_array_get(tensors, i), *vals = json_object_get(r, "values");
		const float *want = t->data;
		ck_assert_str_eq(json_string_value(json_object_get(r, "name")), t->name);
		ck_assert_str_eq(json_string_value(json_object_get(r, "dtype")), "F32");
		ck_assert_uint_eq(json_array_size(json_object_get(r, "shape")), t->ndim);
		for (uint32_t d = 0; d < t->ndim; d++)
			ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(r, "shape"), d)),
			                 t->dims[d]);
		ck_assert_uint_eq(json_array_size(vals), t->nbytes / 4);
		for (size_t k = 0; k < t->nbytes / 4; k++) {
			/* float.hex() is exact: the same bits or a failure. */
			float got = (float)strtod(json_string_value(json_array_get(vals, k)), NULL);
			ck_assert_msg(memcmp(&got, &want[k], sizeof got) == 0, "%s[%zu]: %a != %a",
			              t->name, k, (double)got, (double)want[k]);
		}
	}
	json_decref(doc);
	exp_buf_free(&b);
	loomi_export_free(run);
	exp_close(&e);
}
END_TEST

START_TEST(test_metadata)
{
	exp_plugin e;
	exp_buf b;
	loomi_export_run *run;
	json_t *doc = NULL, *meta, *model, *data, *metrics, *src_metrics;
	static const char *const keys[] = {"format", "head", "model", "data", "spec", "run_id",
	                                   "job_id", "loom_version", "metrics", "parameters"};

	export_trained(&e, &b, &run);
	ck_assert_int_eq(read_with_python(b.data, b.len, "", &doc), 0);
	meta = json_object_get(doc, "metadata");
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		ck_assert_msg(json_is_string(json_object_get(meta, keys[i])), "no %s", keys[i]);
	ck_assert_str_eq(json_string_value(json_object_get(meta, "run_id")), "job-7");
	ck_assert_str_eq(json_string_value(json_object_get(meta, "head")), "forecast");
	ck_assert_str_eq(json_string_value(json_object_get(meta, "loom_version")), loom_version());
	/* which model the weights are, beside the architecture */
	ck_assert_str_eq(json_string_value(json_object_get(meta, "model_kind")), "transformer");
	ck_assert_str_eq(json_string_value(json_object_get(meta, "model_form")), "transformer");
	model = json_loads(json_string_value(json_object_get(meta, "model")), 0, NULL);
	ck_assert_int_eq(json_integer_value(json_object_get(model, "d_model")), 16);
	ck_assert_int_eq(json_integer_value(json_object_get(model, "layers")), 2);
	data = json_loads(json_string_value(json_object_get(meta, "data")), 0, NULL);
	ck_assert(json_is_array(json_object_get(data, "target_scale")));
	ck_assert(json_is_array(json_object_get(data, "input_shift")));
	metrics = json_loads(json_string_value(json_object_get(meta, "metrics")), 0, NULL);
	src_metrics = json_loads(loomi_export_source(run)->metrics_json, 0, NULL);
	ck_assert(json_equal(json_object_get(metrics, "test"), json_object_get(src_metrics, "test")));
	ck_assert_ptr_null(json_object_get(metrics, "epochs"));
	json_decref(model);
	json_decref(data);
	json_decref(metrics);
	json_decref(src_metrics);
	json_decref(doc);
	exp_buf_free(&b);
	loomi_export_free(run);
	exp_close(&e);
}
END_TEST

/* The export is a Loom weights file: it loads back with the same tensors. */
START_TEST(test_loads_back)
{
	exp_plugin e;
	exp_buf b;
	loomi_export_run *run, *back;
	char *dir = tu_tmpdir(), *path;
	const loom_export_source *a, *z;

	export_trained(&e, &b, &run);
	path = exp_save(dir, "best.safetensors", b.data, b.len);
	back = exp_load(dir);
	a = loomi_export_source(run);
	z = loomi_export_source(back);
	ck_assert_uint_eq(a->n_tensors, z->n_tensors);
	for (size_t i = 0; i < a->n_tensors; i++) {
		ck_assert_str_eq(a->tensors[i].name, z->tensors[i].name);
		ck_assert_uint_eq(a->tensors[i].nbytes, z->tensors[i].nbytes);
		ck_assert(memcmp(a->tensors[i].data, z->tensors[i].data, a->tensors[i].nbytes) == 0);
	}
	loomi_export_free(back);
	free(path);
	tu_rmrf(dir);
	free(dir);
	exp_buf_free(&b);
	loomi_export_free(run);
	exp_close(&e);
}
END_TEST

START_TEST(test_torch)
{
	exp_plugin e;
	exp_buf b;
	loomi_export_run *run;
	json_t *doc = NULL;
	int rv;

	export_trained(&e, &b, &run);
	rv = read_with_python(b.data, b.len, "--torch", &doc);
	if (rv == 77) {
		printf("torch is not installed (Debian's python3-torch): the nn.TransformerEncoderLayer "
		       "load is not checked\n");
	} else {
		ck_assert_int_eq(rv, 0);
		ck_assert_int_eq(json_integer_value(json_object_get(doc, "torch_layers")), 2);
	}
	json_decref(doc);
	exp_buf_free(&b);
	loomi_export_free(run);
	exp_close(&e);
}
END_TEST

/* Replace the first occurrence of from (same length as to) in the header. */
static void
patch(char *data, size_t len, const char *from, const char *to)
{
	char *p = memmem(data, len, from, strlen(from));
	ck_assert_msg(p != NULL, "no %s in the file", from);
	ck_assert_uint_eq(strlen(from), strlen(to));
	memcpy(p, to, strlen(to));
}

START_TEST(test_reader_fails)
{
	exp_plugin e;
	exp_buf b;
	loomi_export_run *run;
	char *copy, from[64], to[64];
	size_t first;

	export_trained(&e, &b, &run);
	/* The second tensor begins where the first ends; 4 bytes earlier
	 * overlaps it (the same number of digits: the header keeps its size). */
	first = loomi_export_source(run)->tensors[0].nbytes;
	snprintf(from, sizeof from, "\"data_offsets\":[%zu,", first);
	snprintf(to, sizeof to, "\"data_offsets\":[%zu,", first - 4);
	ck_assert_int_eq(read_with_python(b.data, b.len, "", NULL), 0);
	copy = malloc(b.len);
	/* The header length past the end. */
	memcpy(copy, b.data, b.len);
	copy[5] = 1;
	ck_assert_int_eq(read_with_python(copy, b.len, "", NULL), 1);
	/* Truncated data. */
	ck_assert_int_eq(read_with_python(b.data, b.len - 4, "", NULL), 1);
	/* A trailing byte. */
	{
		char *longer = malloc(b.len + 1);
		memcpy(longer, b.data, b.len);
		longer[b.len] = 0;
		ck_assert_int_eq(read_with_python(longer, b.len + 1, "", NULL), 1);
		free(longer);
	}
	/* Overlapping tensors: the second one's begin moved back. */
	memcpy(copy, b.data, b.len);
	patch(copy, b.len, from, to);
	ck_assert_int_eq(read_with_python(copy, b.len, "", NULL), 1);
	/* An unknown dtype. */
	memcpy(copy, b.data, b.len);
	patch(copy, b.len, "\"dtype\":\"F32\"", "\"dtype\":\"F33\"");
	ck_assert_int_eq(read_with_python(copy, b.len, "", NULL), 1);
	/* A header length that is not a multiple of 8. */
	memcpy(copy, b.data, b.len);
	copy[0] = (char)((unsigned char)copy[0] - 1);
	ck_assert_int_eq(read_with_python(copy, b.len, "", NULL), 1);
	/* Loom's own decoder refuses the overlapping copy too. */
	{
		loom_safetensors *f;
		char *err = NULL;
		memcpy(copy, b.data, b.len);
		patch(copy, b.len, from, to);
		ck_assert_int_eq(loom_safetensors_decode(copy, b.len, "x", &f, &err), LOOM_ECORRUPT);
		free(err);
	}
	free(copy);
	exp_buf_free(&b);
	loomi_export_free(run);
	exp_close(&e);
}
END_TEST

START_TEST(test_no_tensors)
{
	exp_plugin e;
	exp_buf b;
	loomi_export_run *run = exp_load(trained);
	loom_export_source src = *loomi_export_source(run);

	loomi_export_set_run(run, "job-9", 9, "t", "completed", NULL, NULL);
	src = *loomi_export_source(run);
	src.n_tensors = 0;
	src.tensors = NULL;
	exp_open(&e, "exporter-safetensors");
	exp_buf_init(&b);
	tu_log_capture();
	ck_assert_int_eq(e.ops->export_run(e.ctx, &src, &b.sink), LOOM_EINVAL);
	tu_log_stop();
	ck_assert_msg(tu_log_has("run job-9 has no weights"), "log: %s", tu_log_text());
	ck_assert_uint_eq(b.writes, 0);
	exp_buf_free(&b);
	loomi_export_free(run);
	exp_close(&e);
}
END_TEST

START_TEST(test_sink_fails)
{
	exp_plugin e;
	exp_buf b;
	loomi_export_run *run = exp_load(trained);

	exp_open(&e, "exporter-safetensors");
	exp_buf_init(&b);
	b.fail_after = 1;
	b.fail_rv = LOOM_EIO;
	ck_assert_int_eq(e.ops->export_run(e.ctx, loomi_export_source(run), &b.sink), LOOM_EIO);
	ck_assert_uint_eq(b.writes, 1);
	exp_buf_free(&b);
	loomi_export_free(run);
	exp_close(&e);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("exporter-safetensors");
	TCase *tc = tcase_create("export");

	trained = exp_train();
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_format);
	tcase_add_test(tc, test_bit_exact);
	tcase_add_test(tc, test_metadata);
	tcase_add_test(tc, test_loads_back);
	tcase_add_test(tc, test_torch);
	tcase_add_test(tc, test_reader_fails);
	tcase_add_test(tc, test_no_tensors);
	tcase_add_test(tc, test_sink_fails);
	suite_add_tcase(s, tc);
	return exp_done(tu_run(s));
}

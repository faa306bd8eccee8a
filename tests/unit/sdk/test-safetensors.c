/* <loom/safetensors.h>: files whose bytes depend only on the input, read
 * back exactly (also by an independent reader), and every corruption
 * refused with a message before anything is trusted. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <loom/safetensors.h>
#include <loom/util.h>

#include "testutil.h"

#define ASSERT_HAS(text, needle)                                                          \
	ck_assert_msg((text) != NULL && strstr((text), (needle)) != NULL,                      \
	              "expected \"%s\" in:\n%s", (needle), (text) ? (text) : "(null)")

static const float w[6] = {1, -2, 3.5f, 0, 1e-7f, -0.0f};
static const double b[2] = {0.1, -1e300};
static const int64_t steps[1] = {42};

static size_t
encode3(unsigned char **buf, const loom_safetensors_meta *meta, size_t n_meta)
{
	const loom_safetensors_tensor t[] = {
		{.name = "proj.weight", .dtype = "F32", .ndim = 2, .dims = {2, 3}, .data = w,
		 .nbytes = sizeof w},
		{.name = "proj.bias", .dtype = "F64", .ndim = 1, .dims = {2}, .data = b,
		 .nbytes = sizeof b},
		{.name = "step", .dtype = "I64", .ndim = 0, .data = steps, .nbytes = sizeof steps},
	};
	size_t len = 0;
	ck_assert_int_eq(loom_safetensors_encode(t, 3, meta, n_meta, buf, &len), 0);
	return len;
}

START_TEST(dtypes)
{
	static const struct {
		const char *name;
		size_t size;
	} d[] = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4},
	         {"I16", 2}, {"I8", 1},  {"U8", 1},  {"BOOL", 1}, {"U16", 2}, {"U32", 4},
	         {"U64", 8}};
	for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
		ck_assert_uint_eq(loom_safetensors_dtype_size(d[i].name), d[i].size);
	ck_assert_uint_eq(loom_safetensors_dtype_size("f32"), 0);
	ck_assert_uint_eq(loom_safetensors_dtype_size("F33"), 0);
	ck_assert_uint_eq(loom_safetensors_dtype_size(NULL), 0);
}
END_TEST

START_TEST(layout)
{
	static const loom_safetensors_meta meta[] = {{"format", "hello"}, {"a", "1"}};
	static const char header[] =
		"{\"__metadata__\":{\"format\":\"hello\",\"a\":\"1\"},"
		"\"proj.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
		"\"proj.bias\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[24,40]},"
		"\"step\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[40,48]}}";
	unsigned char *buf, *again;
	size_t len = encode3(&buf, meta, 2), hlen = 0, padded = (sizeof header - 1 + 7) & ~7u;

	/* the header length, little-endian, a multiple of 8 */
	for (int i = 0; i < 8; i++)
		hlen |= (size_t)buf[i] << (8 * i);
	ck_assert_uint_eq(hlen, padded);
	/* the header in the order given, padded with spaces */
	ck_assert_int_eq(memcmp(buf + 8, header, sizeof header - 1), 0);
	for (size_t i = sizeof header - 1; i < padded; i++)
		ck_assert_int_eq(buf[8 + i], ' ');
	/* then the bytes */
	ck_assert_uint_eq(len, 8 + padded + 48);
	ck_assert_int_eq(memcmp(buf + 8 + padded, w, sizeof w), 0);
	ck_assert_int_eq(memcmp(buf + 8 + padded + 24, b, sizeof b), 0);
	ck_assert_int_eq(memcmp(buf + 8 + padded + 40, steps, sizeof steps), 0);
	/* the same input, the same bytes */
	ck_assert_uint_eq(encode3(&again, meta, 2), len);
	ck_assert_int_eq(memcmp(buf, again, len), 0);
	free(again);
	free(buf);

	/* no metadata: no "__metadata__"; nothing at all is a valid file */
	len = encode3(&buf, NULL, 0);
	ck_assert_ptr_null(memmem(buf, len, "__metadata__", 12));
	free(buf);
	ck_assert_int_eq(loom_safetensors_encode(NULL, 0, NULL, 0, &buf, &len), 0);
	ck_assert_uint_eq(len, 16);
	ck_assert_int_eq(memcmp(buf + 8, "{}      ", 8), 0);
	free(buf);
}
END_TEST

START_TEST(round_trip)
{
	static const loom_safetensors_meta meta[] = {{"zeta", "last"}, {"alpha", "{\"x\": 1}"},
	                                             {"utf8", "β₁ ✓"}};
	unsigned char *buf;
	size_t len = encode3(&buf, meta, 3), n;
	loom_safetensors *f;
	const loom_safetensors_tensor *t;
	const loom_safetensors_meta *m;
	char *err = NULL;

	ck_assert_msg(loom_safetensors_decode(buf, len, "x.safetensors", &f, &err) == 0, "%s", err);
	t = loom_safetensors_tensors(f, &n);
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(t[0].name, "proj.weight");
	ck_assert_str_eq(t[0].dtype, "F32");
	ck_assert_uint_eq(t[0].ndim, 2);
	ck_assert_int_eq(t[0].dims[0], 2);
	ck_assert_int_eq(t[0].dims[1], 3);
	ck_assert_uint_eq(t[0].nbytes, sizeof w);
	ck_assert_int_eq(memcmp(t[0].data, w, sizeof w), 0);
	/* data points into the caller's buffer */
	ck_assert((const unsigned char *)t[0].data > buf &&
	          (const unsigned char *)t[0].data < buf + len);
	ck_assert_str_eq(t[2].name, "step");
	ck_assert_uint_eq(t[2].ndim, 0);
	ck_assert_int_eq(*(const int64_t *)t[2].data, 42);
	ck_assert_ptr_eq(loom_safetensors_find(f, "proj.bias"), &t[1]);
	ck_assert_int_eq(memcmp(loom_safetensors_find(f, "proj.bias")->data, b, sizeof b), 0);
	ck_assert_ptr_null(loom_safetensors_find(f, "nope"));
	ck_assert_ptr_null(loom_safetensors_find(f, NULL));
	/* metadata in file order */
	m = loom_safetensors_metadata(f, &n);
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(m[0].key, "zeta");
	ck_assert_str_eq(m[1].key, "alpha");
	ck_assert_str_eq(m[1].value, "{\"x\": 1}");
	ck_assert_str_eq(loom_safetensors_meta_get(f, "utf8"), "β₁ ✓");
	ck_assert_ptr_null(loom_safetensors_meta_get(f, "format"));
	loom_safetensors_free(f);
	free(buf);

	/* without metadata, none; an empty one is there but empty */
	len = encode3(&buf, NULL, 0);
	ck_assert_int_eq(loom_safetensors_decode(buf, len, "x", &f, &err), 0);
	ck_assert_ptr_null(loom_safetensors_metadata(f, &n));
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(loom_safetensors_meta_get(f, "a"));
	loom_safetensors_free(f);
	free(buf);
	{
		static const char text[] = "{\"__metadata__\":{}}     ";
		unsigned char file[8 + sizeof text - 1] = {24};
		memcpy(file + 8, text, sizeof text - 1);
		ck_assert_int_eq(loom_safetensors_decode(file, sizeof file, "x", &f, &err), 0);
		ck_assert_ptr_nonnull(loom_safetensors_metadata(f, &n));
		ck_assert_uint_eq(n, 0);
		loom_safetensors_tensors(f, &n);
		ck_assert_uint_eq(n, 0);
		loom_safetensors_free(f);
	}
	loom_safetensors_free(NULL);
	ck_assert_ptr_null(loom_safetensors_tensors(NULL, &n));
	ck_assert_uint_eq(n, 0);
}
END_TEST

/* The independent reader (standard-library Python) accepts what we write
 * and reads the same values. */
START_TEST(independent_reader)
{
	static const loom_safetensors_meta meta[] = {{"format", "test"}};
	unsigned char *buf;
	size_t len = encode3(&buf, meta, 1);
	char *dir = tu_tmpdir(), *path = loom_strfmt("%s/x.safetensors", dir), *out = NULL;
	char *cmd;
	FILE *fp;
	size_t n = 0, cap = 1 << 16;

	if (access("/usr/bin/python3", X_OK) != 0) {
		free(buf);
		free(path);
		tu_rmrf(dir);
		free(dir);
		return; /* the exporters' and the SDK's integration tests say SKIP */
	}
	ck_assert_int_eq(loom_file_write_atomic(path, buf, len, 0644), 0);
	cmd = loom_strfmt("/usr/bin/python3 '%s/tests/reference/safetensors_read.py' '%s' --values",
	                  tu_env("LOOM_TEST_SRCDIR"), path);
	fp = popen(cmd, "r");
	ck_assert_ptr_nonnull(fp);
	out = malloc(cap);
	n = fread(out, 1, cap - 1, fp);
	out[n] = '\0';
	ck_assert_int_eq(pclose(fp), 0);
	ASSERT_HAS(out, "\"name\": \"proj.weight\"");
	ASSERT_HAS(out, "\"shape\": [2, 3]");
	ASSERT_HAS(out, "\"format\": \"test\"");
	ASSERT_HAS(out, "0x1.c000000000000p+1"); /* 3.5 */
	ASSERT_HAS(out, "42");
	free(out);
	free(cmd);
	free(buf);
	free(path);
	tu_rmrf(dir);
	free(dir);
}
END_TEST

START_TEST(encode_refuses)
{
	static const float one[1] = {1};
	loom_safetensors_tensor t[2] = {
		{.name = "a", .dtype = "F32", .ndim = 1, .dims = {1}, .data = one, .nbytes = 4},
		{.name = "b", .dtype = "F32", .ndim = 1, .dims = {1}, .data = one, .nbytes = 4},
	};
	loom_safetensors_meta meta[2] = {{"k", "v"}, {"l", "w"}};
	unsigned char *buf = NULL;
	size_t len = 0;

	ck_assert_int_eq(loom_safetensors_encode(t, 2, meta, 2, &buf, &len), 0);
	free(buf);
#define REFUSED(what)                                                                        \
	do {                                                                                 \
		loom_safetensors_tensor u[2] = {t[0], t[1]};                                 \
		loom_safetensors_meta m[2] = {meta[0], meta[1]};                             \
		what;                                                                        \
		buf = NULL;                                                                  \
		ck_assert_msg(loom_safetensors_encode(u, 2, m, 2, &buf, &len) == LOOM_EINVAL, \
		              "not refused: %s", #what);                                     \
		ck_assert_ptr_null(buf);                                                     \
	} while (0)
	REFUSED(u[1].dtype = "F33");
	REFUSED(u[1].dtype = NULL);
	REFUSED(u[1].ndim = LOOM_SAFETENSORS_MAX_DIMS + 1);
	REFUSED(u[1].dims[0] = -1);
	REFUSED(u[1].nbytes = 8);
	REFUSED(u[1].name = "a");
	REFUSED(u[1].name = "__metadata__");
	REFUSED(u[1].name = "");
	REFUSED(u[1].name = NULL);
	REFUSED(u[1].name = "\xff");
	REFUSED(u[1].data = NULL);
	REFUSED(m[1].key = "k");
	REFUSED(m[1].value = "\xc3");
	REFUSED(m[1].key = "\xc3");
	REFUSED(m[1].value = NULL);
#undef REFUSED
	ck_assert_int_eq(loom_safetensors_encode(NULL, 1, NULL, 0, &buf, &len), LOOM_EINVAL);
	ck_assert_int_eq(loom_safetensors_encode(t, 1, NULL, 1, &buf, &len), LOOM_EINVAL);
	ck_assert_int_eq(loom_safetensors_encode(t, 1, NULL, 0, NULL, &len), LOOM_EINVAL);
}
END_TEST

/* A file of header text and data_len bytes of data. */
static unsigned char *
file_of(const char *header, size_t data_len, size_t *len)
{
	size_t h = strlen(header), padded = (h + 7) & ~(size_t)7;
	unsigned char *f = calloc(1, 8 + padded + data_len);

	for (int i = 0; i < 8; i++)
		f[i] = (unsigned char)((padded >> (8 * i)) & 0xff);
	memcpy(f + 8, header, h);
	memset(f + 8 + h, ' ', padded - h);
	*len = 8 + padded + data_len;
	return f;
}

static const struct corrupt {
	const char *header;
	size_t data_len;
	const char *message;
} corrupt[] = {
	{"[1, 2]", 0, "the header is not a JSON object"},
	{"{\"a\": ", 0, "the header is not a JSON object"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
	 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
	 8, "the header is not a JSON object"},
	{"{\"__metadata__\": [1]}", 0, "__metadata__ is not an object"},
	{"{\"__metadata__\": {\"n\": 1}}", 0, "a __metadata__ value is not a string (tensor \"n\")"},
	{"{\"a\": 5}", 0, "an entry lacks a known dtype, a shape or two offsets (tensor \"a\")"},
	{"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "lacks a known dtype"},
	{"{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "lacks a known dtype"},
	{"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "lacks a known dtype, a shape"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
	 "lacks a known dtype, a shape"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "two offsets"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
	 "a dimension is not a size (tensor \"a\")"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
	 "a dimension is not a size"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[64,64],\"data_offsets\":[0,4]}}", 4,
	 "a tensor is larger than the file (tensor \"a\")"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8,
	 "its data offsets are out of bounds or do not match dtype × shape (tensor \"a\")"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 4,
	 "its data offsets are out of bounds"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
	 "its data offsets are out of bounds"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4,
	 "its data offsets are out of bounds"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]}}", 4,
	 "its data offsets are out of bounds"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
	 "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}",
	 8, "tensor data overlaps, leaves gaps, or the file has trailing bytes"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
	 "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
	 4, "tensor data overlaps"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
	 "tensor data overlaps, leaves gaps"},
	{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 5,
	 "or the file has trailing bytes"},
};

START_TEST(decode_refuses)
{
	size_t len;
	unsigned char *f = file_of(corrupt[_i].header, corrupt[_i].data_len, &len);
	loom_safetensors *st = (loom_safetensors *)1;
	char *err = NULL;

	ck_assert_int_eq(loom_safetensors_decode(f, len, "bad.safetensors", &st, &err),
	                 LOOM_ECORRUPT);
	ck_assert_ptr_null(st);
	ASSERT_HAS(err, "bad.safetensors is not a valid safetensors file: ");
	ASSERT_HAS(err, corrupt[_i].message);
	free(err);
	free(f);
}
END_TEST

START_TEST(decode_refuses_lengths)
{
	unsigned char *buf, *copy;
	size_t len = encode3(&buf, NULL, 0);
	loom_safetensors *f;
	char *err = NULL;

	/* shorter than the length field */
	ck_assert_int_eq(loom_safetensors_decode(buf, 7, "x", &f, &err), LOOM_ECORRUPT);
	ASSERT_HAS(err, "x is not a valid safetensors file: shorter than its 8-byte header length");
	free(err);
	ck_assert_int_eq(loom_safetensors_decode(NULL, 0, "x", &f, &err), LOOM_ECORRUPT);
	free(err);
	/* a length past the end; an absurd length */
	copy = malloc(len);
	memcpy(copy, buf, len);
	copy[5] = 1;
	ck_assert_int_eq(loom_safetensors_decode(copy, len, "x", &f, &err), LOOM_ECORRUPT);
	ASSERT_HAS(err, "the header length runs past the end of the file");
	free(err);
	/* truncated data: the offsets no longer fit */
	ck_assert_int_eq(loom_safetensors_decode(buf, len - 4, "x", &f, &err), LOOM_ECORRUPT);
	ASSERT_HAS(err, "(tensor \"step\")");
	free(err);
	/* no name: "the file"; no error out-parameter: the code only */
	ck_assert_int_eq(loom_safetensors_decode(buf, 3, NULL, &f, &err), LOOM_ECORRUPT);
	ASSERT_HAS(err, "the file is not a valid safetensors file");
	free(err);
	ck_assert_int_eq(loom_safetensors_decode(buf, 3, NULL, &f, NULL), LOOM_ECORRUPT);
	free(copy);
	free(buf);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("safetensors");
	TCase *tc = tcase_create("safetensors");
	tcase_add_test(tc, dtypes);
	tcase_add_test(tc, layout);
	tcase_add_test(tc, round_trip);
	tcase_add_test(tc, independent_reader);
	tcase_add_test(tc, encode_refuses);
	tcase_add_loop_test(tc, decode_refuses, 0, (int)(sizeof corrupt / sizeof corrupt[0]));
	tcase_add_test(tc, decode_refuses_lengths);
	suite_add_tcase(s, tc);
	return tu_run(s);
}

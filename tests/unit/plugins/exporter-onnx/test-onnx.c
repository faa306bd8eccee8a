/* exporter-onnx: the protobuf writer against the encoding guide's own
 * examples, a tiny graph read back field by field, and the plugin on a
 * small synthetic model (the graph's structure) and on sources it must
 * refuse.  Running exported graphs in ONNX Runtime against predict is
 * tests/integration/onnx.sh. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/loom.h>

#include "plugins/exporter-onnx/graph.h"
#include "plugins/exporter-onnx/pb.h"
#include "testutil.h"

/* ------------------------------------------------------------------ a reader */

typedef struct span {
	const unsigned char *p;
	size_t len;
} span;

static bool
varint(const unsigned char **p, const unsigned char *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; *p < end && shift < 64; shift += 7) {
		unsigned char b = *(*p)++;
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

/* The n-th occurrence of field in message m: its varint (v) or bytes (s).
 * false when absent; fails the test on malformed input. */
static bool
field(span m, uint32_t want, int n, uint64_t *v, span *s)
{
	const unsigned char *p = m.p, *end = m.p + m.len;

	while (p < end) {
		uint64_t key, x = 0;
		span b = {NULL, 0};
		ck_assert(varint(&p, end, &key));
		switch (key & 7) {
		case PB_VARINT: ck_assert(varint(&p, end, &x)); break;
		case PB_I32:
			ck_assert(end - p >= 4);
			memcpy(&x, p, 4);
			p += 4;
			break;
		case PB_LEN:
			ck_assert(varint(&p, end, &x));
			ck_assert((uint64_t)(end - p) >= x);
			b.p = p;
			b.len = (size_t)x;
			p += x;
			break;
		default: ck_abort_msg("unexpected wire type %d", (int)(key & 7));
		}
		if ((key >> 3) == want && n-- == 0) {
			if (v)
				*v = x;
			if (s)
				*s = b;
			return true;
		}
	}
	return false;
}

static int
count(span m, uint32_t want)
{
	int n = 0;
	while (field(m, want, n, NULL, NULL))
		n++;
	return n;
}

static bool
str_is(span s, const char *text)
{
	return s.len == strlen(text) && memcmp(s.p, text, s.len) == 0;
}

static span
sub(span m, uint32_t f, int n)
{
	span s = {NULL, 0};
	ck_assert_msg(field(m, f, n, NULL, &s), "no field %u #%d", f, n);
	return s;
}

static uint64_t
num(span m, uint32_t f)
{
	uint64_t v = 0;
	ck_assert_msg(field(m, f, 0, &v, NULL), "no field %u", f);
	return v;
}

static void
bytes_are(const pb_buf *b, const char *hex)
{
	char got[512] = "";
	for (size_t i = 0; i < b->len && 2 * i + 3 < sizeof got; i++)
		snprintf(got + 2 * i, 3, "%02x", b->data[i]);
	ck_assert_str_eq(got, hex);
}

/* ------------------------------------------------------------------ the writer */

START_TEST(varints)
{
	static const struct {
		uint64_t v;
		const char *hex;
	} cases[] = {
		{0, "00"}, {1, "01"}, {127, "7f"}, {128, "8001"}, {150, "9601"}, {300, "ac02"},
		{16384, "808001"}, {UINT64_MAX, "ffffffffffffffffff01"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		pb_buf b;
		pb_init(&b);
		pb_varint(&b, cases[i].v);
		bytes_are(&b, cases[i].hex);
		pb_free(&b);
	}
}
END_TEST

/* protobuf.dev's encoding guide: Test1 {a: 150}, Test2 {b: "testing"},
 * Test3 {c: Test1}; plus a fixed32 float and a negative int64. */
START_TEST(fields)
{
	pb_buf b, inner;

	pb_init(&b);
	pb_int(&b, 1, 150);
	bytes_are(&b, "089601");
	pb_free(&b);

	pb_string(&b, 2, "testing");
	bytes_are(&b, "120774657374696e67");
	pb_free(&b);

	pb_init(&inner);
	pb_int(&inner, 1, 150);
	pb_message(&b, 3, &inner);
	bytes_are(&b, "1a03089601");
	pb_free(&b);
	pb_free(&inner);

	pb_float(&b, 2, 1.0f);
	bytes_are(&b, "150000803f");
	pb_free(&b);

	pb_int(&b, 3, -1);
	bytes_are(&b, "18ffffffffffffffffff01");
	pb_free(&b);

	pb_bytes(&b, 9, NULL, 0);
	bytes_are(&b, "4a00");
	ck_assert_int_eq(pb_error(&b), 0);
	pb_free(&b);
}
END_TEST

/* output = input + [1, 2], read back through every level of nesting. */
START_TEST(tiny_graph)
{
	ox_graph g;
	pb_buf file;
	const float add[2] = {1.0f, 2.0f};
	const char *c, *y, *meta[2] = {"k", "v"};
	span model, graph, node, init, in, dim;
	uint64_t v;

	ox_graph_init(&g);
	pb_init(&file);
	c = ox_const_f32(&g, "bias", 1, (const int64_t[]){2}, add);
	y = ox_node_to(&g, "Add", "output", 2, (const char *const[]){"input", c}, NULL);
	ck_assert_str_eq(y, "output");
	ox_input(&g, "input", 2, (const int64_t[]){OX_DIM_BATCH, 2});
	ox_output(&g, "output", 2, (const int64_t[]){OX_DIM_BATCH, 2});
	ck_assert_int_eq(ox_model(&g, "tiny", "1.2.3", NULL, meta, 1, &file), 0);

	model = (span){file.data, file.len};
	ck_assert_uint_eq(num(model, 1), 8);                 /* ir_version */
	ck_assert(str_is(sub(model, 2, 0), "loom"));         /* producer_name */
	ck_assert(str_is(sub(model, 3, 0), "1.2.3"));
	ck_assert(str_is(sub(sub(model, 8, 0), 1, 0), ""));  /* opset domain */
	ck_assert_uint_eq(num(sub(model, 8, 0), 2), 17);
	ck_assert(str_is(sub(sub(model, 14, 0), 1, 0), "k"));
	graph = sub(model, 7, 0);
	ck_assert(str_is(sub(graph, 2, 0), "tiny"));
	ck_assert_int_eq(count(graph, 1), 1);
	node = sub(graph, 1, 0);
	ck_assert(str_is(sub(node, 4, 0), "Add"));
	ck_assert(str_is(sub(node, 1, 0), "input"));
	ck_assert(str_is(sub(node, 1, 1), c));
	ck_assert(str_is(sub(node, 2, 0), "output"));
	init = sub(graph, 5, 0);
	ck_assert(str_is(sub(init, 8, 0), c));
	ck_assert_uint_eq(num(init, 2), OX_FLOAT);
	ck_assert(field(init, 1, 0, &v, NULL) && v == 2);
	ck_assert_uint_eq(sub(init, 9, 0).len, 8);
	ck_assert(memcmp(sub(init, 9, 0).p, "\x00\x00\x80\x3f\x00\x00\x00\x40", 8) == 0);
	in = sub(graph, 11, 0);
	ck_assert(str_is(sub(in, 1, 0), "input"));
	/* type.tensor_type.shape.dim[0].dim_param, dim[1].dim_value */
	dim = sub(sub(sub(sub(in, 2, 0), 1, 0), 2, 0), 1, 0);
	ck_assert(str_is(sub(dim, 2, 0), "batch"));
	dim = sub(sub(sub(sub(in, 2, 0), 1, 0), 2, 0), 1, 1);
	ck_assert_uint_eq(num(dim, 1), 2);
	ck_assert_uint_eq(num(sub(sub(in, 2, 0), 1, 0), 1), OX_FLOAT);
	ck_assert(str_is(sub(sub(graph, 12, 0), 1, 0), "output"));
	pb_free(&file);
	ox_graph_free(&g);
}
END_TEST

START_TEST(attributes)
{
	pb_buf a;
	span attr;

	pb_init(&a);
	ox_attr_ints(&a, "perm", 3, (const int64_t[]){0, 2, 1});
	ox_attr_float(&a, "epsilon", 1e-5f);
	attr = sub((span){a.data, a.len}, 5, 0);
	ck_assert(str_is(sub(attr, 1, 0), "perm"));
	ck_assert_uint_eq(num(attr, 20), 7);
	ck_assert_int_eq(count(attr, 8), 3);
	attr = sub((span){a.data, a.len}, 5, 1);
	ck_assert_uint_eq(num(attr, 20), 1);
	{
		uint64_t bits;
		float f;
		uint32_t b32;
		ck_assert(field(attr, 2, 0, &bits, NULL));
		b32 = (uint32_t)bits;
		memcpy(&f, &b32, 4);
		ck_assert(f == 1e-5f);
	}
	pb_free(&a);
}
END_TEST

/* ------------------------------------------------------------------ the plugin */

static tu_plugin plug;
static const loom_exporter_ops *xops;

/* A synthetic forecast model: 2 channels, context 8, patch 4, d_model 4,
 * 2 heads, 1 layer, ffn 8, horizon 3, RevIN, learned positions. */
#define MODEL_JSON                                                                          \
	"{\"spec\":{\"model\":{\"context\":8,\"patch\":4,\"d_model\":4,\"heads\":2,"        \
	"\"layers\":1,\"ffn\":8,\"horizon\":3,\"revin\":true,\"channel_independent\":false,"  \
	"\"positions\":\"learned\"}},\"data\":{\"inputs\":[\"a\",\"b\"],\"targets\":[\"b\"],"    \
	"\"input_shift\":[0,1],\"input_scale\":[1,2],\"target_shift\":[1],"                   \
	"\"target_scale\":[2]},\"head\":\"no-such-instance\"}"

typedef struct tdef {
	const char *name;
	int ndim;
	int64_t d0, d1;
} tdef;

static const tdef tdefs[] = {
	{"embed.weight", 2, 4, 8},
	{"embed.bias", 1, 4, 0},
	{"pos", 2, 2, 4},
	{"layers.0.norm1.weight", 1, 4, 0},
	{"layers.0.norm1.bias", 1, 4, 0},
	{"layers.0.self_attn.in_proj_weight", 2, 12, 4},
	{"layers.0.self_attn.in_proj_bias", 1, 12, 0},
	{"layers.0.self_attn.out_proj.weight", 2, 4, 4},
	{"layers.0.self_attn.out_proj.bias", 1, 4, 0},
	{"layers.0.norm2.weight", 1, 4, 0},
	{"layers.0.norm2.bias", 1, 4, 0},
	{"layers.0.linear1.weight", 2, 8, 4},
	{"layers.0.linear1.bias", 1, 8, 0},
	{"layers.0.linear2.weight", 2, 4, 8},
	{"layers.0.linear2.bias", 1, 4, 0},
	{"norm.weight", 1, 4, 0},
	{"norm.bias", 1, 4, 0},
	{"head.proj.weight", 2, 3, 8},
	{"head.proj.bias", 1, 3, 0},
};
#define N_TENSORS (sizeof tdefs / sizeof tdefs[0])

static loom_tensor tensors[N_TENSORS];
static float values[N_TENSORS][96];

static void
plugin_setup(void)
{
	char *err = NULL;
	ck_assert_msg(tu_plugin_open(&plug, "exporter-onnx", "onnx", NULL, "t.conf", &err) == 0,
	              "%s", err);
	xops = plug.ins->desc->ops;
	for (size_t i = 0; i < N_TENSORS; i++) {
		loom_tensor *t = &tensors[i];
		int64_t n = tdefs[i].d0 * (tdefs[i].ndim == 2 ? tdefs[i].d1 : 1);
		memset(t, 0, sizeof *t);
		t->name = tdefs[i].name;
		t->dtype = LOOM_DTYPE_F32;
		t->ndim = (uint32_t)tdefs[i].ndim;
		t->dims[0] = tdefs[i].d0;
		t->dims[1] = tdefs[i].d1;
		t->data = values[i];
		t->nbytes = (size_t)n * sizeof(float);
		for (int64_t k = 0; k < n; k++)
			values[i][k] = (float)sin((double)(i * 100 + (size_t)k));
	}
}

static void
plugin_teardown(void)
{
	tu_plugin_close(&plug);
}

static int
to_buf(void *arg, const void *data, size_t len)
{
	pb_raw(arg, data, len);
	return pb_error(arg);
}

static int
export(const char *model_json, size_t n_tensors, pb_buf *out)
{
	loom_export_source src;
	loom_export_sink sink = {out, to_buf};

	memset(&src, 0, sizeof src);
	src.size = sizeof src;
	src.run_id = "run-1";
	src.model_json = model_json;
	src.n_tensors = n_tensors;
	src.tensors = n_tensors ? tensors : NULL;
	return xops->export_run(plug.ins->ctx, &src, &sink);
}

START_TEST(exports_a_forecast_graph)
{
	pb_buf out;
	span graph, o, dims;
	int n_init, found = 0;

	ck_assert_str_eq(xops->format, "onnx");
	ck_assert_str_eq(xops->extension, ".onnx");
	ck_assert(xops->caps & LOOM_EXPORT_NEEDS_TENSORS);
	pb_init(&out);
	ck_assert_int_eq(export(MODEL_JSON, N_TENSORS, &out), 0);
	graph = sub((span){out.data, out.len}, 7, 0);
	n_init = count(graph, 5);
	/* every weight is there under its own name, with its bytes */
	for (int i = 0; i < n_init; i++) {
		span init = sub(graph, 5, i);
		for (size_t k = 0; k < N_TENSORS; k++)
			if (str_is(sub(init, 8, 0), tdefs[k].name)) {
				found++;
				ck_assert_uint_eq(sub(init, 9, 0).len, tensors[k].nbytes);
			}
	}
	ck_assert_int_eq(found, (int)N_TENSORS);
	/* output [batch, horizon 3, targets 1]; the model's task in metadata */
	o = sub(graph, 12, 0);
	ck_assert(str_is(sub(o, 1, 0), "output"));
	dims = sub(sub(sub(o, 2, 0), 1, 0), 2, 0);
	ck_assert_int_eq(count(dims, 1), 3);
	ck_assert_uint_eq(num(sub(dims, 1, 1), 1), 3);
	ck_assert_uint_eq(num(sub(dims, 1, 2), 1), 1);
	ck_assert(str_is(sub(sub((span){out.data, out.len}, 14, 0), 2, 0), "forecast"));
	/* the ops the docs promise, and no Gelu (opset 20) */
	{
		bool erf = false, ln = false, gelu = false;
		for (int i = 0; i < count(graph, 1); i++) {
			span op = sub(sub(graph, 1, i), 4, 0);
			erf |= str_is(op, "Erf");
			ln |= str_is(op, "LayerNormalization");
			gelu |= str_is(op, "Gelu");
		}
		ck_assert(erf && ln && !gelu);
	}
	pb_free(&out);
}
END_TEST

/* The linear form: a ridge or naive model is linear.weight [3, 16]
 * (horizon 3 × 1 target, context 8 × 2 channels) and linear.bias; the
 * graph holds those two and no Transformer tensor; an unknown form is
 * refused naming it. */
#define LINEAR_JSON(form)                                                                     \
	"{\"spec\":{\"model\":{\"context\":8,\"horizon\":3,\"revin\":true,"                     \
	"\"channel_independent\":false}},\"data\":{\"inputs\":[\"a\",\"b\"],\"targets\":[\"b\"],"    \
	"\"input_shift\":[0,1],\"input_scale\":[1,2],\"target_shift\":[1],"                   \
	"\"target_scale\":[2]},\"head\":\"forecast\",\"model\":{\"kind\":\"linear\","              \
	"\"form\":\"" form "\"}}"

START_TEST(exports_the_linear_form)
{
	static float w[3 * 16], b[3];
	loom_tensor lin[2];
	loom_export_source src;
	pb_buf out;
	loom_export_sink sink = {&out, to_buf};
	span graph;
	int n_init, found = 0;

	memset(lin, 0, sizeof lin);
	lin[0] = (loom_tensor){.name = "linear.weight", .dtype = LOOM_DTYPE_F32, .ndim = 2,
	                       .dims = {3, 16}, .data = w, .nbytes = sizeof w};
	lin[1] = (loom_tensor){.name = "linear.bias", .dtype = LOOM_DTYPE_F32, .ndim = 1,
	                       .dims = {3}, .data = b, .nbytes = sizeof b};
	memset(&src, 0, sizeof src);
	src.size = sizeof src;
	src.run_id = "run-2";
	src.n_tensors = 2;
	src.tensors = lin;
	pb_init(&out);
	src.model_json = LINEAR_JSON("linear");
	ck_assert_int_eq(xops->export_run(plug.ins->ctx, &src, &sink), 0);
	graph = sub((span){out.data, out.len}, 7, 0);
	n_init = count(graph, 5);
	for (int i = 0; i < n_init; i++) {
		span init = sub(graph, 5, i);
		ck_assert(!str_is(sub(init, 8, 0), "embed.weight"));
		found += str_is(sub(init, 8, 0), "linear.weight") || str_is(sub(init, 8, 0), "linear.bias");
	}
	ck_assert_int_eq(found, 2);
	pb_free(&out);

	/* a form this exporter does not know */
	pb_init(&out);
	tu_log_capture();
	src.model_json = LINEAR_JSON("cubic");
	ck_assert_int_eq(xops->export_run(plug.ins->ctx, &src, &sink), LOOM_EINVAL);
	ck_assert(tu_log_has("form \"cubic\""));
	tu_log_stop();
	ck_assert_uint_eq(out.len, 0);
	pb_free(&out);
}
END_TEST

START_TEST(refuses_what_it_cannot_express)
{
	pb_buf out;
	tensors[11].name = "layers.0.linear1.weight";

	pb_init(&out);
	tu_log_capture();
	ck_assert_int_eq(export(NULL, N_TENSORS, &out), LOOM_EINVAL);
	ck_assert(tu_log_has("no model description"));
	ck_assert_int_eq(export(MODEL_JSON, 0, &out), LOOM_EINVAL);
	ck_assert(tu_log_has("no weights"));
	ck_assert_int_eq(export("{\"spec\":{},\"data\":{}}", N_TENSORS, &out), LOOM_EINVAL);
	ck_assert(tu_log_has("lacks context"));
	/* a tensor the spec needs is missing, then misshapen */
	tensors[11].name = "layers.0.linear1.weight_renamed";
	ck_assert_int_eq(export(MODEL_JSON, N_TENSORS, &out), LOOM_EINVAL);
	ck_assert(tu_log_has("no tensor \"layers.0.linear1.weight\""));
	tensors[11].name = "layers.0.linear1.weight";
	tensors[11].dims[0] = 7;
	ck_assert_int_eq(export(MODEL_JSON, N_TENSORS, &out), LOOM_EINVAL);
	ck_assert(tu_log_has("\"layers.0.linear1.weight\" is not f32 [8, 4]"));
	tensors[11].dims[0] = 8;
	tu_log_stop();
	ck_assert_uint_eq(out.len, 0); /* nothing written on refusal */
	pb_free(&out);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("exporter-onnx");
	TCase *pb = tcase_create("protobuf");
	TCase *pl = tcase_create("plugin");

	tcase_add_test(pb, varints);
	tcase_add_test(pb, fields);
	tcase_add_test(pb, tiny_graph);
	tcase_add_test(pb, attributes);
	suite_add_tcase(s, pb);
	tcase_add_checked_fixture(pl, plugin_setup, plugin_teardown);
	tcase_add_test(pl, exports_a_forecast_graph);
	tcase_add_test(pl, refuses_what_it_cannot_express);
	tcase_add_test(pl, exports_the_linear_form);
	suite_add_tcase(s, pl);
	return tu_run(s);
}

/* ONNX messages written by hand.  See graph.h. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/error.h>

#include "graph.h"

void
ox_graph_init(ox_graph *g)
{
	memset(g, 0, sizeof *g);
	pb_init(&g->nodes);
	pb_init(&g->inits);
	pb_init(&g->inputs);
	pb_init(&g->outputs);
}

void
ox_graph_free(ox_graph *g)
{
	pb_free(&g->nodes);
	pb_free(&g->inits);
	pb_free(&g->inputs);
	pb_free(&g->outputs);
	for (size_t i = 0; i < g->n_names; i++)
		free(g->names[i]);
	free(g->names);
	memset(g, 0, sizeof *g);
}

int
ox_graph_error(const ox_graph *g)
{
	if (g->err)
		return g->err;
	if (g->nodes.err)
		return g->nodes.err;
	if (g->inits.err)
		return g->inits.err;
	if (g->inputs.err)
		return g->inputs.err;
	return g->outputs.err;
}

/* Keep a copy of name; "" on failure so callers never see NULL. */
static const char *
keep(ox_graph *g, const char *name)
{
	char *copy;

	if (g->n_names == g->cap_names) {
		size_t cap = g->cap_names ? g->cap_names * 2 : 64;
		char **v = realloc(g->names, cap * sizeof *v);
		if (v == NULL) {
			g->err = LOOM_ENOMEM;
			return "";
		}
		g->names = v;
		g->cap_names = cap;
	}
	if ((copy = strdup(name)) == NULL) {
		g->err = LOOM_ENOMEM;
		return "";
	}
	g->names[g->n_names++] = copy;
	return copy;
}

const char *
ox_name(ox_graph *g, const char *prefix)
{
	char name[160];
	snprintf(name, sizeof name, "%s_%lld", prefix, (long long)g->counter++);
	return keep(g, name);
}

/* A TensorProto into g->inits. */
static void
initializer(ox_graph *g, const char *name, int type, int ndim, const int64_t *dims,
            const void *raw, size_t nbytes)
{
	pb_buf t;

	pb_init(&t);
	for (int i = 0; i < ndim; i++)
		pb_int(&t, 1, dims[i]);
	pb_int(&t, 2, type);
	pb_string(&t, 8, name);
	pb_bytes(&t, 9, raw, nbytes);
	pb_message(&g->inits, 5, &t);
	pb_free(&t);
}

/* n 4- or 8-byte values as little-endian bytes (a new buffer). */
static unsigned char *
little_endian(const void *v, size_t n, size_t width)
{
	unsigned char *out = malloc(n * width + 1);
	const unsigned char *in = v;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		uint64_t bits = 0;
		if (width == 4) {
			uint32_t b32;
			memcpy(&b32, in + i * 4, 4);
			bits = b32;
		} else {
			memcpy(&bits, in + i * 8, 8);
		}
		for (size_t k = 0; k < width; k++)
			out[i * width + k] = (unsigned char)(bits >> (8 * k));
	}
	return out;
}

static const char *
add_f32(ox_graph *g, const char *name, int ndim, const int64_t *dims, const float *data)
{
	size_t n = 1;
	unsigned char *le;

	for (int i = 0; i < ndim; i++)
		n *= (size_t)dims[i];
	if ((le = little_endian(data, n, 4)) == NULL) {
		g->err = LOOM_ENOMEM;
		return name;
	}
	initializer(g, name, OX_FLOAT, ndim, dims, le, n * 4);
	free(le);
	return name;
}

const char *
ox_weight(ox_graph *g, const char *name, int ndim, const int64_t *dims, const float *data)
{
	return add_f32(g, keep(g, name), ndim, dims, data);
}

const char *
ox_const_f32(ox_graph *g, const char *prefix, int ndim, const int64_t *dims, const float *data)
{
	return add_f32(g, ox_name(g, prefix), ndim, dims, data);
}

const char *
ox_scalar(ox_graph *g, const char *prefix, float v)
{
	return add_f32(g, ox_name(g, prefix), 0, NULL, &v);
}

const char *
ox_const_i64(ox_graph *g, const char *prefix, size_t n, const int64_t *v)
{
	const char *name = ox_name(g, prefix);
	int64_t dims[1] = {(int64_t)n};
	unsigned char *le = little_endian(v, n ? n : 1, 8);

	if (le == NULL) {
		g->err = LOOM_ENOMEM;
		return name;
	}
	initializer(g, name, OX_INT64, n ? 1 : 0, dims, le, (n ? n : 1) * 8);
	free(le);
	return name;
}

void
ox_attr_int(pb_buf *attrs, const char *name, int64_t v)
{
	pb_buf a;
	pb_init(&a);
	pb_string(&a, 1, name);
	pb_int(&a, 3, v);
	pb_int(&a, 20, 2);
	pb_message(attrs, 5, &a);
	pb_free(&a);
}

void
ox_attr_float(pb_buf *attrs, const char *name, float v)
{
	pb_buf a;
	pb_init(&a);
	pb_string(&a, 1, name);
	pb_float(&a, 2, v);
	pb_int(&a, 20, 1);
	pb_message(attrs, 5, &a);
	pb_free(&a);
}

void
ox_attr_ints(pb_buf *attrs, const char *name, size_t n, const int64_t *v)
{
	pb_buf a;
	pb_init(&a);
	pb_string(&a, 1, name);
	for (size_t i = 0; i < n; i++)
		pb_int(&a, 8, v[i]);
	pb_int(&a, 20, 7);
	pb_message(attrs, 5, &a);
	pb_free(&a);
}

const char *
ox_node(ox_graph *g, const char *op_type, const char *out_prefix, int n_in,
        const char *const *in, const pb_buf *attrs)
{
	return ox_node_to(g, op_type, ox_name(g, out_prefix), n_in, in, attrs);
}

const char *
ox_node_to(ox_graph *g, const char *op_type, const char *out, int n_in, const char *const *in,
           const pb_buf *attrs)
{
	pb_buf n;

	pb_init(&n);
	for (int i = 0; i < n_in; i++)
		pb_string(&n, 1, in[i]);
	pb_string(&n, 2, out);
	pb_string(&n, 3, out);
	pb_string(&n, 4, op_type);
	/* attrs already holds tagged AttributeProto fields (number 5) */
	if (attrs) {
		pb_raw(&n, attrs->data, attrs->len);
		if (attrs->err)
			n.err = attrs->err;
	}
	pb_message(&g->nodes, 1, &n);
	pb_free(&n);
	return out;
}

/* A ValueInfoProto of a float tensor. */
static void
value_info(pb_buf *into, uint32_t field, const char *name, int ndim, const int64_t *dims)
{
	pb_buf vi, type, tensor, shape;

	pb_init(&vi);
	pb_init(&type);
	pb_init(&tensor);
	pb_init(&shape);
	for (int i = 0; i < ndim; i++) {
		pb_buf dim;
		pb_init(&dim);
		if (dims[i] == OX_DIM_BATCH)
			pb_string(&dim, 2, "batch");
		else
			pb_int(&dim, 1, dims[i]);
		pb_message(&shape, 1, &dim);
		pb_free(&dim);
	}
	pb_int(&tensor, 1, OX_FLOAT);
	pb_message(&tensor, 2, &shape);
	pb_message(&type, 1, &tensor);
	pb_string(&vi, 1, name);
	pb_message(&vi, 2, &type);
	pb_message(into, field, &vi);
	pb_free(&vi);
	pb_free(&type);
	pb_free(&tensor);
	pb_free(&shape);
}

void
ox_input(ox_graph *g, const char *name, int ndim, const int64_t *dims)
{
	value_info(&g->inputs, 11, name, ndim, dims);
}

void
ox_output(ox_graph *g, const char *name, int ndim, const int64_t *dims)
{
	value_info(&g->outputs, 12, name, ndim, dims);
}

int
ox_model(const ox_graph *g, const char *graph_name, const char *producer_version,
         const char *doc, const char *const *metadata, size_t n_meta, pb_buf *out)
{
	pb_buf graph, opset;
	int rv;

	if ((rv = ox_graph_error(g)) != 0)
		return rv;
	pb_init(&graph);
	pb_raw(&graph, g->nodes.data, g->nodes.len);
	pb_string(&graph, 2, graph_name);
	pb_raw(&graph, g->inits.data, g->inits.len);
	pb_raw(&graph, g->inputs.data, g->inputs.len);
	pb_raw(&graph, g->outputs.data, g->outputs.len);

	pb_init(&opset);
	pb_string(&opset, 1, "");
	pb_int(&opset, 2, OX_OPSET);

	pb_int(out, 1, OX_IR_VERSION);
	pb_string(out, 2, "loom");
	pb_string(out, 3, producer_version);
	if (doc)
		pb_string(out, 6, doc);
	pb_message(out, 7, &graph);
	pb_message(out, 8, &opset);
	for (size_t i = 0; i + 1 < 2 * n_meta; i += 2) {
		pb_buf kv;
		pb_init(&kv);
		pb_string(&kv, 1, metadata[i]);
		pb_string(&kv, 2, metadata[i + 1]);
		pb_message(out, 14, &kv);
		pb_free(&kv);
	}
	pb_free(&graph);
	pb_free(&opset);
	return pb_error(out);
}

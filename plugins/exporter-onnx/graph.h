/* graph.h — an ONNX graph written straight into protobuf (onnx/onnx.proto,
 * IR version 8, the default domain at opset 17): initializers, nodes,
 * typed inputs and outputs, and the ModelProto around them.
 *
 * Field numbers used (onnx.proto):
 *   ModelProto      ir_version 1, producer_name 2, producer_version 3,
 *                   doc_string 6, graph 7, opset_import 8, metadata_props 14
 *   OperatorSetId   domain 1, version 2
 *   GraphProto      node 1, name 2, initializer 5, input 11, output 12
 *   NodeProto       input 1, output 2, name 3, op_type 4, attribute 5
 *   AttributeProto  name 1, f 2, i 3, ints 8, type 20 (FLOAT 1, INT 2, INTS 7)
 *   TensorProto     dims 1, data_type 2 (FLOAT 1, INT64 7), name 8, raw_data 9
 *   ValueInfoProto  name 1, type 2;  TypeProto tensor_type 1;
 *   TypeProto.Tensor elem_type 1, shape 2;  TensorShapeProto dim 1;
 *   Dimension       dim_value 1, dim_param 2
 *   StringStringEntryProto key 1, value 2
 * Tensor data is raw_data, little-endian whatever the host's order.
 *
 * Every value gets a unique name made from a prefix; names returned by
 * ox_* stay valid until ox_graph_free.  Errors are sticky as in pb.h. */
#ifndef LOOM_ONNX_GRAPH_H
#define LOOM_ONNX_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "pb.h"

#define OX_IR_VERSION 8
#define OX_OPSET 17

/* TensorProto.DataType */
enum { OX_FLOAT = 1, OX_INT64 = 7 };

/* A dimension of a graph input or output: OX_DIM_BATCH is the symbolic
 * "batch". */
#define OX_DIM_BATCH (-1)

typedef struct ox_graph {
	pb_buf nodes, inits, inputs, outputs; /* encoded GraphProto fields */
	char **names;
	size_t n_names, cap_names;
	int64_t counter;
	int err;
} ox_graph;

void ox_graph_init(ox_graph *g);
void ox_graph_free(ox_graph *g);
/* 0 or the first error (LOOM_ENOMEM). */
int ox_graph_error(const ox_graph *g);

/* A new unique name "prefix" or "prefix_N". */
const char *ox_name(ox_graph *g, const char *prefix);

/* Initializers; name is used as is (a weight's own name) by ox_weight,
 * made unique from prefix by the ox_const_* helpers. */
const char *ox_weight(ox_graph *g, const char *name, int ndim, const int64_t *dims,
                      const float *data);
const char *ox_const_f32(ox_graph *g, const char *prefix, int ndim, const int64_t *dims,
                         const float *data);
/* A 1-D int64 tensor of n values, or a scalar when n == 0 (value v[0]). */
const char *ox_const_i64(ox_graph *g, const char *prefix, size_t n, const int64_t *v);
/* A float scalar. */
const char *ox_scalar(ox_graph *g, const char *prefix, float v);

/* Attributes, appended to an AttributeProto list in a pb_buf. */
void ox_attr_int(pb_buf *attrs, const char *name, int64_t v);
void ox_attr_float(pb_buf *attrs, const char *name, float v);
void ox_attr_ints(pb_buf *attrs, const char *name, size_t n, const int64_t *v);

/* A node of op_type with n_in inputs and one new output named from
 * out_prefix; attrs may be NULL.  Returns the output's name. */
const char *ox_node(ox_graph *g, const char *op_type, const char *out_prefix, int n_in,
                    const char *const *in, const pb_buf *attrs);

/* The same with the output named out exactly (a graph output's name). */
const char *ox_node_to(ox_graph *g, const char *op_type, const char *out, int n_in,
                       const char *const *in, const pb_buf *attrs);

/* Graph inputs and outputs: float tensors of ndim dims (OX_DIM_BATCH for
 * the symbolic batch). */
void ox_input(ox_graph *g, const char *name, int ndim, const int64_t *dims);
void ox_output(ox_graph *g, const char *name, int ndim, const int64_t *dims);

/* The ModelProto of the graph into out (initialized by the caller):
 * metadata holds n_meta key/value pairs (keys at even, values at odd
 * indices).  0 or the first error. */
int ox_model(const ox_graph *g, const char *graph_name, const char *producer_version,
             const char *doc, const char *const *metadata, size_t n_meta, pb_buf *out);

#endif /* LOOM_ONNX_GRAPH_H */

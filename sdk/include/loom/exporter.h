/* <loom/exporter.h> — exporter plugins turn a trained model or a run into
 * an artifact other tools open: safetensors, ONNX, CSV/JSON results, an
 * HTML report.
 *
 * The host gathers what is known of a run into a loom_export_source — the
 * spec, the model description, final metrics, the weights as tensors and
 * an iterator over metric histories — and hands the exporter a sink to
 * write bytes to.  Exporters never open files or storage themselves. */
#ifndef LOOM_EXPORTER_H
#define LOOM_EXPORTER_H

#include <loom/plugin.h>
#include <loom/tracker.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Capabilities. */
#define LOOM_EXPORT_NEEDS_TENSORS 0x1u /* exports weights: run must have them */
#define LOOM_EXPORT_COMPARE 0x2u       /* export_compare is offered */

/* Where output goes.  write returns 0 or a LOOM_E* code. */
typedef struct loom_export_sink {
	void *arg;
	int (*write)(void *arg, const void *data, size_t len);
} loom_export_sink;

typedef struct loom_export_source loom_export_source;

/* Iterates the points of one metric in step order. */
typedef int (*loom_history_fn)(const loom_export_source *src, const char *metric,
                               loom_metric_fn fn, void *arg);

struct loom_export_source {
	uint32_t size;
	const char *run_id;
	int64_t job_id;
	const char *name;
	const char *state;          /* "completed", ... */
	const char *spec_json;      /* the job spec */
	const char *model_json;     /* architecture, head, normalization,
	                             * class names; NULL without a model */
	const char *metrics_json;   /* final metrics and baselines */
	const char *run_json;       /* times, resources, versions */
	size_t n_tensors;
	const loom_tensor *tensors; /* the weights, in model order */
	size_t n_metric_names;
	const char *const *metric_names; /* metrics with a history */
	loom_history_fn history;    /* NULL when no history is kept */
	void *history_arg;
	const void *reserved[8];
};

typedef struct loom_exporter_ops {
	uint32_t size;
	uint32_t caps;              /* LOOM_EXPORT_* */
	const char *format;         /* "onnx": what users ask for */
	const char *extension;      /* ".onnx" */
	const char *media_type;     /* "application/octet-stream" */

	/* Required. */
	int (*export_run)(void *ctx, const loom_export_source *src,
	                  const loom_export_sink *sink);
	/* Optional, with LOOM_EXPORT_COMPARE: several runs side by side. */
	int (*export_compare)(void *ctx, const loom_export_source *const *srcs, size_t n,
	                      const loom_export_sink *sink);

	const void *reserved[8];
} loom_exporter_ops;

#ifdef __cplusplus
}
#endif

#endif /* LOOM_EXPORTER_H */

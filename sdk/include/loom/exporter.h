/* <loom/exporter.h> — exporter plugins turn a trained model or a run into
 * an artifact other tools open: safetensors, ONNX, CSV/JSON results, an
 * HTML report.
 *
 * The host gathers what is known of a run into a loom_export_source — the
 * spec, the model description, final metrics, the weights as tensors and
 * an iterator over metric histories — and hands the exporter a sink to
 * write bytes to.  Exporters never open files or storage themselves.
 *
 * A text format is easiest written through a loom_export_writer (below):
 * buffered writes to the sink that remember the first failure, so the
 * exporter writes freely and checks one code at the end.  See
 * loom-util(3). */
#ifndef LOOM_EXPORTER_H
#define LOOM_EXPORTER_H

#include <stdarg.h>
#include <stddef.h>

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

/* ------------------------------------------------------------------ text output */

/* Text streamed to a sink through a 64 KiB buffer, so a history of
 * millions of points never becomes one string.  The first failing write
 * (or loom_export_writer_fail) is remembered and every later call does
 * nothing: write freely, then check loom_export_writer_close's code. */
typedef struct loom_export_writer loom_export_writer;

/* A writer to sink (which must outlive it).  0 or LOOM_ENOMEM. */
int loom_export_writer_open(const loom_export_sink *sink, loom_export_writer **writer);
/* Flush what is buffered and free the writer; returns the first error of
 * any write (0 when all went through).  NULL is LOOM_EINVAL. */
int loom_export_writer_close(loom_export_writer *w);

void loom_export_writer_put(loom_export_writer *w, const void *data, size_t n);
void loom_export_writer_puts(loom_export_writer *w, const char *s);
void loom_export_writer_printf(loom_export_writer *w, const char *fmt, ...) LOOM_PRINTF(2, 3);
void loom_export_writer_vprintf(loom_export_writer *w, const char *fmt, va_list ap)
	LOOM_PRINTF(2, 0);
/* A finite double as %.17g, so it reads back to the same bits; -0 as
 * "-0.0" (JSON would read "-0" as the integer 0).  The caller decides how
 * NaN and infinities are written in its format. */
void loom_export_writer_double(loom_export_writer *w, double v);
/* Record an error (out of memory, say) as if a write had failed with it. */
void loom_export_writer_fail(loom_export_writer *w, int rv);
/* The first error so far, 0 while every write has gone through. */
int loom_export_writer_error(const loom_export_writer *w);

/* Format a finite v into buf (at least LOOM_DOUBLE_BUF bytes) as %.17g,
 * which strtod reads back exactly; returns the length. */
#define LOOM_DOUBLE_BUF 32
size_t loom_format_double(char *buf, double v);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_EXPORTER_H */

/* exporter-report: pieces shared by the run report (report.c) and the
 * comparison report (compare.c). */
#ifndef LOOM_REPORT_REPORT_H
#define LOOM_REPORT_REPORT_H

#include <stdint.h>

#include <jansson.h>

#include <loom/exporter.h>

#include "chart.h"
#include "html.h"

typedef struct report_ctx {
	/* settings */
	int64_t chart_width, chart_height;
	/* state */
	const loom_host *host;
	loom_instance *ins;
} report_ctx;

/* export_compare (compare.c). */
int report_compare(void *ctx, const loom_export_source *const *srcs, size_t n,
                   const loom_export_sink *sink);

/* The document up to <main> (title escaped, inline CSS), and the rest. */
void report_begin(html_out *o, const char *title);
void report_end(html_out *o);

/* A JSON object parsed from the source's text; NULL when the text is NULL
 * or not an object (the caller says what is missing). */
json_t *report_parse(const char *text);

/* A new object with obj's leaves under dotted keys ("train.lr"); arrays
 * are leaves.  Values are shared (incref'd). */
json_t *report_flatten(const json_t *obj);

/* <table> of every key of obj, flattened, in the order given. */
void report_kv_table(html_out *o, const json_t *obj);

/* -1 when lower is better (loss, mae, rmse, …), +1 when higher is
 * (accuracy, f1, r2, …), 0 when the name does not say. */
int report_direction(const char *metric);

/* The chart a metric goes on: its name without a "train_", "val_",
 * "validation_" or "test_" prefix and up to the first '.', and every
 * "…loss" on "loss", so a model's train and validation figures of one unit
 * share axes and per-class figures ("f1.rain", "f1.sun") one chart.
 * Written to buf (n bytes). */
const char *report_chart_group(const char *metric, char *buf, size_t n);

/* The headline metrics of a metrics.json: split-relative names in the
 * head's order — its "headline", or for one that declares none loomd's
 * fallback (docs/tracking.md): the test split's names (else the
 * validation split's) without a '.', loss first, the rest by name.  A new
 * array. */
json_t *report_headline(const json_t *metrics);

/* The "Model choice" section (choice.c) of a metrics.json with a "model"
 * object: the kind kept, why, and every candidate "auto" compared; false
 * (nothing written) without one. */
bool report_choice(html_out *o, const json_t *metrics);
/* metrics.json's model.kind ("transformer", "linear", "naive",
 * "ensemble"), or NULL. */
const char *report_kept_kind(const json_t *metrics);

/* The "Continual learning" section (continual.c) of a metrics.json with
 * a "continual" object: the R matrix as a heatmap, the summary figures,
 * the strategies and the shared holdout; false (nothing written) without
 * one. */
bool report_continual(html_out *o, const json_t *metrics);

/* A "<p class="missing">" line saying what the report lacks and why. */
void report_missing(html_out *o, const char *what);

/* The name a run goes by in headings: its name, else its id, else "run". */
const char *report_run_label(const loom_export_source *src);

#endif /* LOOM_REPORT_REPORT_H */

/* exporter-report: metric histories drawn as inline SVG line charts.
 *
 * A chart reads each series twice through the source's history function:
 * once for its extent (steps, finite values, NaN/Inf), once to draw.  The
 * second pass keeps, per pixel column of the plot, the first, last, lowest
 * and highest point (the M4 reduction), so a series of any length becomes
 * at most four points a column and a one-step spike still shows; memory
 * stays bounded by the chart's width, not the history's length.  NaN and
 * infinite values break the line (a gap), are marked under the plot and
 * are counted in the caption. */
#ifndef LOOM_REPORT_CHART_H
#define LOOM_REPORT_CHART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <loom/exporter.h>

#include "html.h"

/* At most this many points of a series get a dot of their own (per-epoch
 * figures); longer series are lines only. */
#define CHART_MARKERS_MAX 60

typedef struct chart_series {
	const loom_export_source *src;
	const char *metric;
	const char *label;          /* legend text (escaped when drawn) */
	const char *color;          /* "#1f77b4" */
	/* filled by chart_scan */
	size_t n, n_bad;            /* points; NaN or infinite ones */
	int64_t xmin, xmax;         /* steps */
	double ymin, ymax;          /* finite values */
	int64_t ymin_x, ymax_x;     /* their steps */
	double last;                /* the last finite value */
	int64_t last_x, first_bad_x;
	bool any_finite;
} chart_series;

typedef struct chart {
	const char *title;          /* "loss" */
	const char *ylabel;
	chart_series *series;
	size_t n;
	int width, height;          /* the plot area, in SVG units */
} chart;

/* The palette, one colour per series (or per run); i wraps. */
const char *chart_color(size_t i);

/* The first pass over src's history of metric: fills s's extent.  0, or
 * the history function's error. */
int chart_scan(chart_series *s, const loom_export_source *src, const char *metric);

/* <figure> with the <svg> and a caption (points, last, best, gaps).
 * Series with no points are left out; a chart with none says so. */
void chart_draw(html_out *o, const chart *c);

#endif /* LOOM_REPORT_CHART_H */

/* Metrics a person reads: which of a run's or a model version's metrics
 * are its headline ones (in display order) and which tables show its
 * details (per-class figures, a confusion matrix).
 *
 * A head declares both (<loom/head.h>, ABI 1.1) and the compute plugin
 * writes the declaration into metrics.json with the names a split group
 * uses: "headline": ["loss", "accuracy", "macro_f1"] and "details":
 * [{"name", "title", "rows", "columns", "cells": [[metric, …], …],
 * "row_header"?, "column_header"?}].  loomd keeps the metrics of runs and
 * versions flat (test_loss, val_accuracy, …), so a display resolves the
 * declaration against one split: the test split when metrics.json has
 * test figures, else the validation split.
 *
 * Runs and versions made before heads declared anything, and runs of
 * compute plugins that declare nothing, get the fallback: the headline is
 * the test_ metrics whose names have no '.' (per-class figures and
 * confusion cells have one), else the val_ ones, else every name without a
 * '.'; a name holding "loss" first, the rest by name.  Their details are
 * found by the names the classification head has always used:
 * "<split>precision.<class>", "recall", "f1" (a per-class table) and
 * "<split>confusion.<true>.<predicted>" (a matrix), classes by name. */
#ifndef LOOM_HOST_HEADLINE_H
#define LOOM_HOST_HEADLINE_H

#include <jansson.h>

/* The key a resolved display is stored under beside flat metrics (in the
 * runs' and model versions' metrics column): '@' is no character of a
 * metric name, so it never meets a metric. */
#define LOOMI_DISPLAY_KEY "@display"

/* A declared table of more cells is left out (compute-transformer writes
 * none larger); its figures stay metrics. */
#define LOOMI_DETAIL_CELLS_MAX 4096

/* The display a metrics.json document declares, with flat names:
 * {"headline": ["test_loss", …], "details": [tables, cells "test_…"]};
 * NULL when doc declares no headline or has neither test nor validation
 * figures. */
json_t *loomi_display_declared(const json_t *doc);

/* The fallback display of flat metrics (see above). */
json_t *loomi_display_fallback(const json_t *flat);

/* The headline names of display that flat holds, in display order (a new
 * array). */
json_t *loomi_display_headline(const json_t *display, const json_t *flat);

/* In o, a run or a version as JSON: take LOOMI_DISPLAY_KEY out of
 * o["metrics"] and set o["headline"] (the names o["metrics"] holds) and
 * o["details"] from it, or from the fallback when it has none. */
void loomi_display_attach(json_t *o);

#endif /* LOOM_HOST_HEADLINE_H */

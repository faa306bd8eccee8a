/* What the exporters' Check suites share: a real trained run (loom-worker
 * on tiny-forecast.conf, once per test program), an exporter instance
 * loaded through the host loader, sinks that collect or fail, and a way to
 * run the Python readers. */
#ifndef LOOM_TEST_EXP_COMMON_H
#define LOOM_TEST_EXP_COMMON_H

#include <stddef.h>

#include <jansson.h>

#include <loom/exporter.h>

#include "host/exports/export.h"
#include "testutil.h"

/* Train the tiny spec into a new directory and return it; exits 77 (skip)
 * when the data set is not installed.  Call from main, before the suite. */
const char *exp_train(void);
/* Remove the trained run after the suite; returns status. */
int exp_done(int status);
/* The trained run, loaded as loomd would (the caller frees it). */
loomi_export_run *exp_load(const char *dir);

typedef struct exp_plugin {
	tu_plugin p;
	const loom_exporter_ops *ops;
	void *ctx;
} exp_plugin;

void exp_open(exp_plugin *e, const char *module);
void exp_close(exp_plugin *e);

/* A sink collecting bytes in memory; with fail_after set, the write that
 * would pass that many bytes fails with fail_rv. */
typedef struct exp_buf {
	char *data;
	size_t len, cap;
	size_t writes;
	size_t fail_after;
	int fail_rv;
	loom_export_sink sink;
} exp_buf;

void exp_buf_init(exp_buf *b);
void exp_buf_free(exp_buf *b);

/* Write data to dir/name; returns the path (free it). */
char *exp_save(const char *dir, const char *name, const void *data, size_t len);
/* Run a shell command; its stdout in *out (free it) when out is set;
 * returns its exit status (-1 when it could not run). */
int exp_sh(const char *cmd, char **out);
/* The Python with the most modules (Debian's, beside pyenv's). */
const char *exp_python(void);

#endif

/* A synthetic history (set with loomi_export_set_history, arg an
 * exp_synth): n points per metric, steps 0..n-1, ten per epoch, values
 * cycling through NaN, inf, -inf, 0.1, 1e-300, a subnormal, -0.0 and
 * step-dependent ones. */
typedef struct exp_synth {
	size_t n;
} exp_synth;
int exp_synth_history(const loom_export_source *src, const char *metric, loom_metric_fn fn,
                      void *arg);

/* What an export of the sources should hold, for check_export.py: each
 * history as columns {"metric": {"step","epoch","value"}} and as CSV rows
 * (history, then final metrics), values as C's %a or nan/inf/-inf. */
json_t *exp_expect_history(const loom_export_source *src);
json_t *exp_expect_rows(const loom_export_source *const *srcs, size_t n);
/* Run check_export.py MODE on data with the expectation; its exit status,
 * its output in *log (free it). */
int exp_check(const char *mode, const void *data, size_t len, json_t *expect, char **log);

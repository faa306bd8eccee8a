/* exporter-report, loaded as a real module through the host loader:
 *
 * - a real run (loom-worker trains two epochs of the Seattle forecast, read
 *   back with host/export's loader): every section, one <svg> per chart
 *   group, balanced tags, nothing fetched from elsewhere, same bytes twice;
 * - a 200,000-point history with a spike and a NaN: the drawn path stays
 *   within 4 points a column, the spike and the gap are shown and noted;
 * - sources of our own: escaping of names, spec strings and metric names;
 *   the best value per row marked; a source with no history, metrics or
 *   model still renders and says what is missing;
 * - the comparison: differing settings highlighted, the best run per row
 *   marked, one overlaid chart per common metric;
 * - errors: no runs to compare, a sink that refuses to write;
 * - continual learning: a classification run's metrics.json with the
 *   "continual" and "holdout" groups of contract.md §3 (a fixture written by
 *   hand in that shape around a real run's metrics.json, its summary
 *   checked against R here): the heatmap's cells, colours and diagonal, the
 *   summary figures with their sign conventions, the strategies, the
 *   holdout; an error metric's first increment; a malformed group. */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <loom/loom.h>

#include "host/exports/export.h"
#include "host/core/plugins.h"
#include "host/core/util.h"
#include "testutil.h"

#define DATA "/usr/lib/python3/dist-packages/vega_datasets/_data/seattle-temps.csv"

static char *run_dir;        /* a real run, trained once in main */

/* ------------------------------------------------------------------ the plugin */

static struct {
	tu_plugin p;
	const loom_exporter_ops *ops;
	void *ctx;
} H;

static void
setup(void)
{
	const void *ops = NULL;
	char *err = NULL;
	int rv;

	memset(&H, 0, sizeof H);
	rv = tu_plugin_open(&H.p, "exporter-report", "report", "chart_width = 400;",
	                    "report.conf", &err);
	ck_assert_msg(rv == 0, "cannot start exporter-report: %s", err ? err : "?");
	rv = loomi_host_services()->instance_ops(H.p.ins, "report", LOOM_KIND_EXPORTER, &ops,
	                                         &H.ctx);
	ck_assert_int_eq(rv, 0);
	H.ops = ops;
	ck_assert_str_eq(H.ops->format, "html");
	ck_assert_str_eq(H.ops->extension, ".html");
	ck_assert(H.ops->caps & LOOM_EXPORT_COMPARE);
}

static void
teardown(void)
{
	tu_plugin_close(&H.p);
}

/* ------------------------------------------------------------------ sinks */

typedef struct text {
	char *p;
	size_t len;
	int fail_after;           /* writes allowed before LOOM_EIO; -1: all */
} text;

static int
text_write(void *arg, const void *data, size_t len)
{
	text *t = arg;

	if (t->fail_after == 0)
		return LOOM_EIO;
	if (t->fail_after > 0)
		t->fail_after--;
	t->p = realloc(t->p, t->len + len + 1);
	memcpy(t->p + t->len, data, len);
	t->len += len;
	t->p[t->len] = '\0';
	return 0;
}

static char *
export_run(const loom_export_source *src)
{
	text t = {NULL, 0, -1};
	loom_export_sink sink = {&t, text_write};

	ck_assert_int_eq(H.ops->export_run(H.ctx, src, &sink), 0);
	ck_assert_ptr_nonnull(t.p);
	return t.p;
}

static char *
export_compare(const loom_export_source *const *srcs, size_t n)
{
	text t = {NULL, 0, -1};
	loom_export_sink sink = {&t, text_write};

	ck_assert_int_eq(H.ops->export_compare(H.ctx, srcs, n, &sink), 0);
	return t.p;
}

/* ------------------------------------------------------------------ checks on HTML */

static size_t
count(const char *hay, const char *needle)
{
	size_t n = 0;
	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

static bool
is_void(const char *name, size_t len)
{
	static const char *const v[] = {"meta", "br", "hr", "img", "input", "link", "wbr",
	                                "col", "area", "base", "source"};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		if (strlen(v[i]) == len && strncmp(v[i], name, len) == 0)
			return true;
	}
	return false;
}

/* Every element closed, in order: HTML's void elements and SVG's "/>"
 * aside.  Fails the test naming the first mismatch. */
static void
assert_balanced(const char *html)
{
	const char *stack[512];
	size_t len[512], depth = 0;

	ck_assert_msg(strncmp(html, "<!DOCTYPE html>", 15) == 0, "no doctype");
	for (const char *p = strchr(html + 1, '<'); p; p = strchr(p + 1, '<')) {
		const char *name = p + 1, *end = strchr(p, '>');
		size_t n;
		bool closing = *name == '/';
		ck_assert_msg(end != NULL, "a tag is not closed at byte %zu", (size_t)(p - html));
		if (closing)
			name++;
		n = strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789");
		ck_assert_msg(n > 0, "'<' not starting a tag at byte %zu: %.40s", (size_t)(p - html),
		              p);
		if (closing) {
			ck_assert_msg(depth > 0 && len[depth - 1] == n &&
			                  strncmp(stack[depth - 1], name, n) == 0,
			              "</%.*s> closes <%.*s> at byte %zu", (int)n, name,
			              depth ? (int)len[depth - 1] : 0, depth ? stack[depth - 1] : "",
			              (size_t)(p - html));
			depth--;
		} else if (end[-1] != '/' && !is_void(name, n)) {
			ck_assert(depth < 512);
			stack[depth] = name;
			len[depth++] = n;
		}
		p = end;
	}
	ck_assert_msg(depth == 0, "<%.*s> never closed", depth ? (int)len[depth - 1] : 0,
	              depth ? stack[depth - 1] : "");
}

/* Nothing is fetched: no script, no external stylesheet, image or font. */
static void
assert_self_contained(const char *html)
{
	ck_assert_ptr_null(strstr(html, "<script"));
	ck_assert_ptr_null(strstr(html, "<link"));
	ck_assert_ptr_null(strstr(html, " src="));
	ck_assert_ptr_null(strstr(html, " href="));
	ck_assert_ptr_null(strstr(html, "url("));
	ck_assert_ptr_null(strstr(html, "@import"));
	ck_assert_ptr_nonnull(strstr(html, "name=\"viewport\""));
	ck_assert_ptr_nonnull(strstr(html, "@media print"));
	ck_assert_ptr_nonnull(strstr(html, "max-width:960px"));
}

/* The points of the n-th line (path class="line") of html. */
static size_t
line_points(const char *html, size_t nth, double *min_y)
{
	const char *p = html, *d, *end;
	size_t pts = 0;

	for (size_t i = 0; i <= nth; i++) {
		p = strstr(p, "<path class=\"line\"");
		ck_assert_ptr_nonnull(p);
		p++;
	}
	d = strstr(p, " d=\"") + 4;
	end = strchr(d, '"');
	*min_y = INFINITY;
	for (const char *q = d; q < end; q++) {
		double x, y;
		if ((*q == 'M' || *q == 'L') && sscanf(q + 1, "%lf %lf", &x, &y) == 2) {
			pts++;
			*min_y = y < *min_y ? y : *min_y;
		}
	}
	return pts;
}

/* ------------------------------------------------------------------ a real run */

static loomi_export_run *
load_run(void)
{
	loomi_export_run *r = NULL;
	char *err = NULL;

	ck_assert_msg(loomi_export_load(run_dir, &r, &err) == 0, "%s", err ? err : "?");
	loomi_export_set_run(r, "job-7", 7, "seattle-temps-forecast", "completed", NULL,
	                     "{\"started_ms\":1700000000000,\"finished_ms\":1700000062000,"
	                     "\"duration_ms\":62000,\"attempts\":1,\"cpu_seconds\":3.5,"
	                     "\"max_rss_bytes\":52428800,\"threads\":2,"
	                     "\"data_sha256\":\"ab12\",\"loom_version\":\"0.1.0\","
	                     "\"plugins\":{\"compute-transformer\":{\"version\":\"1.0.0\"}}}");
	return r;
}

START_TEST(real_run_sections)
{
	loomi_export_run *r = load_run();
	char *html = export_run(loomi_export_source(r));
	static const char *const sections[] = {"id=\"spec\"", "id=\"data\"", "id=\"charts\"",
	                                       "id=\"metrics\"", "id=\"model\"",
	                                       "id=\"resources\"", "id=\"versions\""};

	assert_balanced(html);
	assert_self_contained(html);
	for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
		ck_assert_msg(strstr(html, sections[i]), "no section %s", sections[i]);
	ck_assert_ptr_nonnull(strstr(html, "<h1>seattle-temps-forecast</h1>"));
	ck_assert_ptr_nonnull(strstr(html, "2023-11-14 22:13:20 UTC"));   /* started_ms */
	ck_assert_ptr_nonnull(strstr(html, "1 min 02 s"));                /* duration_ms */
	ck_assert_ptr_nonnull(strstr(html, "seattle-temps.csv"));
	ck_assert_ptr_nonnull(strstr(html, "zscore; temp: shift "));
	ck_assert_ptr_nonnull(strstr(html, "data_sha256 (run record)"));
	ck_assert_ptr_nonnull(strstr(html, "max_rss_bytes"));
	ck_assert_ptr_nonnull(strstr(html, "plugins.compute-transformer.version"));
	ck_assert_ptr_nonnull(strstr(html, "seasonal_naive (season 24)"));
	ck_assert_ptr_nonnull(strstr(html, "windows_train"));
	/* train_loss and val_loss share the loss chart; val_mse, val_mae,
	 * val_rmse and val_smape have one each */
	ck_assert_uint_eq(count(html, "<svg"), 5);
	ck_assert_uint_eq(count(html, "</svg>"), 5);
	ck_assert_uint_eq(count(html, "<path class=\"line\""), 6);
	ck_assert_ptr_nonnull(strstr(html, "<h3>loss</h3>"));
	/* one best value marked per test metric the baselines have (mae, mse) */
	ck_assert_uint_eq(count(html, "class=\"num best\""), 2);
	free(html);
	loomi_export_free(r);
}
END_TEST

START_TEST(real_run_deterministic)
{
	loomi_export_run *r = load_run();
	char *a = export_run(loomi_export_source(r)), *b = export_run(loomi_export_source(r));

	ck_assert_str_eq(a, b);
	free(a);
	free(b);
	loomi_export_free(r);
}
END_TEST

/* ------------------------------------------------------------------ a long history */

#define LONG_N 200000
#define SPIKE_AT 123457
#define NAN_AT 150000

static int
long_history(const loom_export_source *src, const char *metric, loom_metric_fn fn, void *arg)
{
	for (int64_t i = 0; i < LONG_N; i++) {
		loom_metric_point pt = {.name = metric, .step = i + 1, .scope = LOOM_METRIC_STEP};
		int rv;
		pt.value = 1.0 + 0.5 * sin((double)i / 5000.0) + 0.01 * (double)(i % 7);
		if (i + 1 == SPIKE_AT)
			pt.value = 1000;
		if (i + 1 == NAN_AT)
			pt.value = NAN;
		if ((rv = fn(arg, &pt)) != 0)
			return rv;
	}
	return 0;
}

START_TEST(long_history_downsampled)
{
	loomi_export_run *r = load_run();
	const char *names[] = {"train_loss"};
	char *html;
	double min_y;
	size_t pts;

	loomi_export_set_history(r, names, 1, long_history, NULL);
	html = export_run(loomi_export_source(r));
	assert_balanced(html);
	ck_assert_uint_eq(count(html, "<svg"), 1);
	pts = line_points(html, 0, &min_y);
	/* chart_width = 400: at most 4 points a column, a few more where
	 * the NaN splits a column */
	ck_assert_msg(pts > 400 && pts <= 4 * 400 + 8, "%zu points drawn", pts);
	/* the spike reaches the top of the plot (the y axis ends at 1000) */
	ck_assert_msg(min_y < 40, "highest point drawn at y %.1f", min_y);
	ck_assert_ptr_nonnull(strstr(html, "200000 points, steps 1–200000"));
	ck_assert_ptr_nonnull(strstr(html, "highest 1000 (step 123457)"));
	ck_assert_ptr_nonnull(strstr(html, "1 NaN or infinite value (first at step 150000)"));
	ck_assert_ptr_nonnull(strstr(html, "class=\"nonfinite\""));
	/* the gap: the line is cut in two subpaths */
	ck_assert_uint_eq(count(strstr(html, "<path class=\"line\""), " M") , 1);
	/* no dots for a long series */
	ck_assert_ptr_null(strstr(html, "<circle"));
	free(html);
	loomi_export_free(r);
}
END_TEST

/* ------------------------------------------------------------------ sources of our own */

/* A short history: value = scale / step for steps 1..5. */
static int
short_history(const loom_export_source *src, const char *metric, loom_metric_fn fn, void *arg)
{
	double scale = *(const double *)src->history_arg;

	for (int64_t s = 1; s <= 5; s++) {
		loom_metric_point pt = {.name = metric, .step = s * 10, .epoch = (int32_t)s,
		                        .scope = LOOM_METRIC_EPOCH, .value = scale / (double)s};
		int rv;
		if ((rv = fn(arg, &pt)) != 0)
			return rv;
	}
	return 0;
}

static loom_export_source
source(const char *name, const char *spec, const char *metrics, const char *const *names,
       size_t n, const double *scale)
{
	loom_export_source s = {
		.size = sizeof s, .run_id = "r1", .name = name, .state = "completed",
		.spec_json = spec, .metrics_json = metrics, .run_json = "{}",
		.n_metric_names = n, .metric_names = names,
		.history = n ? short_history : NULL, .history_arg = (void *)scale,
	};
	return s;
}

/* Steps near 2^63 and values near the limits of a double. */
static int
extreme_history(const loom_export_source *src, const char *metric, loom_metric_fn fn, void *arg)
{
	static const double v[] = {1.7e308, -1.7e308, 5e-324, INFINITY, 1e300};
	int rv;

	for (int i = 0; i < 5; i++) {
		loom_metric_point pt = {.name = metric, .step = INT64_MAX - 10 + i, .value = v[i]};
		if ((rv = fn(arg, &pt)) != 0)
			return rv;
	}
	return 0;
}

START_TEST(extreme_values)
{
	const char *names[] = {"loss"};
	loom_export_source s = source("x", "{}", "{}", names, 1, NULL);
	char *html, *svg;

	s.history = extreme_history;
	html = export_run(&s);
	assert_balanced(html);
	svg = strstr(html, "<svg");
	ck_assert_ptr_nonnull(svg);
	ck_assert_ptr_null(strstr(svg, "nan"));
	ck_assert_ptr_null(strstr(svg, "inf\""));
	ck_assert_ptr_nonnull(strstr(html, "1 NaN or infinite value"));
	free(html);
}
END_TEST

START_TEST(escaping)
{
	static const double one = 1;
	const char *names[] = {"<b>loss&amp</b>"};
	loom_export_source s = source("<script>alert('x')</script> & co",
	                              "{\"a<b\":\"x & \\\"y\\\" <i>\",\"train\":{\"<p>\":1}}",
	                              "{\"test\":{\"m<ae>\":1.5}}", names, 1, &one);
	char *html = export_run(&s);

	assert_balanced(html);
	assert_self_contained(html);
	ck_assert_ptr_null(strstr(html, "<b>loss"));
	ck_assert_ptr_null(strstr(html, "<i>"));
	ck_assert_ptr_null(strstr(html, "<p>\""));
	ck_assert_ptr_nonnull(strstr(html, "<h1>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; "
	                                   "&amp; co</h1>"));
	ck_assert_ptr_nonnull(strstr(html, "<title>&lt;script&gt;"));
	ck_assert_ptr_nonnull(strstr(html, "x &amp; &quot;y&quot; &lt;i&gt;"));
	ck_assert_ptr_nonnull(strstr(html, "&lt;b&gt;loss&amp;amp&lt;/b&gt;"));
	ck_assert_ptr_nonnull(strstr(html, "m&lt;ae&gt;"));
	ck_assert_uint_eq(count(html, "<svg"), 1);
	/* five per-epoch points: each gets a dot */
	ck_assert_uint_eq(count(html, "<circle"), 5);
	free(html);
}
END_TEST

START_TEST(best_marked)
{
	loom_export_source s = source(
		"m", "{}",
		"{\"test\":{\"mae\":0.5,\"accuracy\":0.7,\"widgets\":3},"
		"\"baselines\":{\"repeat_last\":{\"mae\":2.0,\"accuracy\":0.4,\"widgets\":1},"
		"\"seasonal_naive\":{\"mae\":0.18,\"accuracy\":0.9,\"season\":24}}}",
		NULL, 0, NULL);
	char *html = export_run(&s);

	assert_balanced(html);
	ck_assert_ptr_nonnull(strstr(html, "<th scope=\"row\">mae</th><td class=\"num\">0.5</td>"
	                                   "<td class=\"num\">2</td><td class=\"num best\">0.18</td>"));
	ck_assert_ptr_nonnull(strstr(html, "<th scope=\"row\">accuracy</th><td class=\"num\">0.7"
	                                   "</td><td class=\"num\">0.4</td><td class=\"num best\">"
	                                   "0.9</td>"));
	/* a name that does not say which way is better is not marked */
	ck_assert_ptr_nonnull(strstr(html, "<th scope=\"row\">widgets</th><td class=\"num\">3</td>"
	                                   "<td class=\"num\">1</td><td class=\"num\">—</td>"));
	ck_assert_ptr_nonnull(strstr(html, "seasonal_naive (season 24)"));
	free(html);
}
END_TEST

START_TEST(missing_parts)
{
	loom_export_source s = source("", "{}", NULL, NULL, 0, NULL);
	char *html;

	s.run_id = "";
	s.state = NULL;
	s.run_json = NULL;
	html = export_run(&s);
	assert_balanced(html);
	ck_assert_ptr_nonnull(strstr(html, "<h1>run</h1>"));
	ck_assert_ptr_nonnull(strstr(html, "No job spec"));
	ck_assert_ptr_nonnull(strstr(html, "No data description"));
	ck_assert_ptr_nonnull(strstr(html, "No metric history was kept"));
	ck_assert_ptr_nonnull(strstr(html, "No final metrics"));
	ck_assert_ptr_nonnull(strstr(html, "No model description"));
	ck_assert_ptr_nonnull(strstr(html, "No run record"));
	ck_assert_ptr_nonnull(strstr(html, "Dates</dt><dd class=\"missing\">not recorded"));
	ck_assert_ptr_null(strstr(html, "<svg"));
	free(html);

	/* names but every value NaN: the chart says there is nothing finite */
	static const double nan_scale = NAN;
	const char *names[] = {"val_loss"};
	s = source("n", "{\"model\":{}}", "{\"test\":{}}", names, 1, &nan_scale);
	html = export_run(&s);
	assert_balanced(html);
	ck_assert_ptr_nonnull(strstr(html, "5 NaN or infinite values (first at step 10)"));
	ck_assert_ptr_nonnull(strstr(html, "No baselines were computed"));
	ck_assert_ptr_null(strstr(html, "<circle"));
	free(html);
}
END_TEST

START_TEST(compare)
{
	static const double a_scale = 2, b_scale = 1;
	const char *a_names[] = {"train_loss", "val_loss", "only_a"};
	const char *b_names[] = {"val_loss", "train_loss"};
	loom_export_source a = source("base", "{\"train\":{\"lr\":0.001,\"epochs\":2}}",
	                              "{\"test\":{\"mae\":0.5,\"accuracy\":0.7}}", a_names, 3,
	                              &a_scale);
	loom_export_source b = source("<faster>", "{\"train\":{\"lr\":0.002,\"epochs\":2}}",
	                              "{\"test\":{\"mae\":0.4,\"accuracy\":0.6}}", b_names, 2,
	                              &b_scale);
	const loom_export_source *srcs[] = {&a, &b};
	char *html = export_compare(srcs, 2);

	assert_balanced(html);
	assert_self_contained(html);
	ck_assert_ptr_nonnull(strstr(html, "<h1>Comparison of 2 runs</h1>"));
	ck_assert_ptr_nonnull(strstr(html, "1 of 2 settings differ"));
	ck_assert_ptr_nonnull(strstr(html, "<tr class=\"diff\"><th scope=\"row\">train.lr</th>"));
	ck_assert_ptr_nonnull(strstr(html, "<tr><th scope=\"row\">train.epochs</th>"));
	ck_assert_ptr_nonnull(strstr(html, "2 · &lt;faster&gt;"));
	ck_assert_ptr_nonnull(strstr(html, "<th scope=\"row\">test mae</th><td class=\"num\">0.5"
	                                   "</td><td class=\"num best\">0.4</td>"));
	ck_assert_ptr_nonnull(strstr(html, "<th scope=\"row\">test accuracy</th><td class=\"num "
	                                   "best\">0.7</td><td class=\"num\">0.6</td>"));
	/* train_loss and val_loss are common; only_a is not */
	ck_assert_uint_eq(count(html, "<svg"), 2);
	ck_assert_uint_eq(count(html, "<path class=\"line\""), 4);
	ck_assert_ptr_null(strstr(html, "<h3>only_a</h3>"));
	ck_assert_ptr_nonnull(strstr(html, "stroke=\"#1f77b4\""));
	ck_assert_ptr_nonnull(strstr(html, "stroke=\"#d62728\""));
	free(html);
}
END_TEST

START_TEST(compare_real_runs)
{
	loomi_export_run *r1 = load_run(), *r2 = load_run();
	const loom_export_source *srcs[2];
	char *html;

	loomi_export_set_run(r2, "job-8", 8, "second", "failed",
	                     "{\"name\":\"second\",\"train\":{\"lr\":0.01}}", NULL);
	srcs[0] = loomi_export_source(r1);
	srcs[1] = loomi_export_source(r2);
	html = export_compare(srcs, 2);
	assert_balanced(html);
	/* the six per-epoch metrics both runs have */
	ck_assert_uint_eq(count(html, "<svg"), 6);
	ck_assert_ptr_nonnull(strstr(html, "<tr class=\"diff\"><th scope=\"row\">train.lr</th>"));
	ck_assert_ptr_nonnull(strstr(html, "<span class=\"missing\">not set</span>"));
	free(html);
	loomi_export_free(r1);
	loomi_export_free(r2);
}
END_TEST

START_TEST(errors)
{
	static const double one = 1;
	const char *names[] = {"loss"};
	loom_export_source s = source("x", "{}", "{}", names, 1, &one);
	const loom_export_source *srcs[] = {&s};
	text t = {NULL, 0, 0};
	loom_export_sink sink = {&t, text_write};

	tu_log_capture();
	ck_assert_int_eq(H.ops->export_compare(H.ctx, srcs, 0, &sink), LOOM_EINVAL);
	ck_assert(tu_log_has("a comparison needs at least one run"));
	/* the sink's error comes back; nothing is written after it */
	ck_assert_int_eq(H.ops->export_run(H.ctx, &s, &sink), LOOM_EIO);
	ck_assert(tu_log_has("report of run \"x\" not written"));
	ck_assert_uint_eq(t.len, 0);
	ck_assert_int_eq(H.ops->export_compare(H.ctx, srcs, 1, &sink), LOOM_EIO);
	tu_log_stop();
	free(t.p);
}
END_TEST

START_TEST(bad_config)
{
	tu_plugin p;
	char *err = NULL;

	teardown();
	ck_assert_int_ne(tu_plugin_open(&p, "exporter-report", "r2", "chart_width = 5;",
	                                "report.conf", &err), 0);
	ck_assert_msg(err && strstr(err, "chart_width"), "%s", err ? err : "(no message)");
	free(err);
	tu_plugin_close(&p);
	setup();
}
END_TEST

/* ------------------------------------------------------------------ continual learning */

static char *
fixture(const char *name)
{
	char *path = loomi_strfmt("%s/tests/unit/plugins/exporter-report/%s",
	                          tu_env("LOOM_TEST_SRCDIR"), name), *body = NULL;
	size_t len;

	ck_assert_msg(loomi_read_file(path, &body, &len) == 0, "cannot read %s", path);
	free(path);
	return body;
}

/* R[i][j] of a metrics.json's continual group (0-based). */
static double
r_at(const json_t *R, size_t i, size_t j)
{
	return json_number_value(json_array_get(json_array_get(R, i), j));
}

START_TEST(continual_section)
{
	char *body = fixture("continual-metrics.json"), *html, *other;
	json_t *m = json_loads(body, 0, NULL), *cl = json_object_get(m, "continual");
	const json_t *R = json_object_get(cl, "R"), *before = json_object_get(cl, "R_before");
	const json_t *base = json_object_get(cl, "baseline");
	size_t T = json_array_size(R);
	double avg = 0, forg = 0, bwt = 0, fwt = 0;
	loom_export_source s;

	/* the fixture's figures are those of its R, as the engine computes them */
	ck_assert_uint_eq(T, 3);
	for (size_t j = 0; j < T; j++)
		avg += r_at(R, T - 1, j) / (double)T;
	for (size_t j = 0; j + 1 < T; j++) {
		forg += (r_at(R, j, j) - r_at(R, T - 1, j)) / (double)(T - 1);
		bwt += (r_at(R, T - 1, j) - r_at(R, j, j)) / (double)(T - 1);
	}
	for (size_t j = 1; j < T; j++)
		fwt += (json_number_value(json_array_get(before, j)) -
		        json_number_value(json_array_get(base, j))) / (double)(T - 1);
	ck_assert_double_eq_tol(json_number_value(json_object_get(cl, "average")), avg, 1e-12);
	ck_assert_double_eq_tol(json_number_value(json_object_get(cl, "forgetting")), forg, 1e-12);
	ck_assert_double_eq_tol(json_number_value(json_object_get(cl, "bwt")), bwt, 1e-12);
	ck_assert_double_eq_tol(json_number_value(json_object_get(cl, "fwt")), fwt, 1e-12);
	ck_assert(json_is_null(json_array_get(before, 0)));

	s = source("weather-v3", "{}", body, NULL, 0, NULL);
	html = export_run(&s);
	assert_balanced(html);
	assert_self_contained(html);
	ck_assert_ptr_nonnull(strstr(html, "<section id=\"continual\">\n<h2>Continual learning</h2>"));
	/* after the metrics and the charts (a first increment's short
	 * section must not push the charts out of a page's first screen) */
	ck_assert(strstr(html, "id=\"metrics\"") < strstr(html, "id=\"continual\""));
	ck_assert(strstr(html, "id=\"charts\"") < strstr(html, "id=\"continual\""));
	ck_assert_ptr_nonnull(strstr(html, "<dt>Started from</dt><dd>model weather, version 2</dd>"));
	ck_assert_ptr_nonnull(strstr(html, "accuracy (higher is better)"));
	/* the heatmap: columns by increment and file, rows after each increment;
	 * the diagonal outlined; the best value (0.81) green, the worst (the
	 * baseline 0.44) red; nothing above the diagonal */
	ck_assert_ptr_nonnull(strstr(html, "<th scope=\"col\">after \\ test of</th><th scope=\"col\">"
	                                   "1 (seattle-2012.csv)</th><th scope=\"col\">2 "
	                                   "(seattle-2013.csv)</th>"));
	ck_assert_ptr_nonnull(strstr(html, "<tr><th scope=\"row\">after increment 1</th><td class=\"num "
	                                   "heat diag\" style=\"background:#9cd9a6\">0.81</td><td "
	                                   "class=\"later\"></td><td class=\"later\"></td></tr>"));
	ck_assert_uint_eq(count(html, "class=\"later\""), 3);
	ck_assert_uint_eq(count(html, "heat diag"), 3);
	ck_assert_ptr_nonnull(strstr(html, "<th scope=\"row\">naive baseline</th><td class=\"num heat\" "
	                                   "style=\"background:#f4a59a\">0.44</td>"));
	ck_assert_ptr_nonnull(strstr(html, "<th scope=\"row\">before learning it (R_before)</th><td "
	                                   "class=\"num\">—</td><td class=\"num heat\""));
	ck_assert_ptr_nonnull(strstr(html, "<th scope=\"row\">after increment 3</th><td class=\"num "
	                                   "heat\" style=\"background:"));
	/* the summary, with its sign conventions in words */
	ck_assert_ptr_nonnull(strstr(html, "<th scope=\"row\">average</th><td class=\"num\">0.78</td>"));
	ck_assert_ptr_nonnull(strstr(html, "<th scope=\"row\">forgetting</th><td class=\"num\">0.005"
	                                   "</td>"));
	ck_assert_ptr_nonnull(strstr(html, "<th scope=\"row\">backward transfer (BWT)</th><td "
	                                   "class=\"num\">-0.005</td>"));
	ck_assert_ptr_nonnull(strstr(html, "<th scope=\"row\">forward transfer (FWT)</th><td "
	                                   "class=\"num\">0.25</td>"));
	ck_assert_ptr_nonnull(strstr(html, "Above 0: the model got worse on earlier increments"));
	ck_assert_ptr_null(strstr(html, "sign flipped"));
	ck_assert_ptr_null(strstr(html, "Not defined for this run"));
	/* the strategies */
	ck_assert_ptr_nonnull(strstr(html, "memory 1000, ratio 1, bank_rows 1000"));
	ck_assert_ptr_nonnull(strstr(html, "lambda 100, mode online, gamma 0.9, terms 1"));
	ck_assert_ptr_nonnull(strstr(html, "<th scope=\"row\">LwF</th><td>no (alpha 0)</td>"));
	/* the holdout: headline names in order, per-class ones left out, the
	 * better of the two marked */
	ck_assert_ptr_nonnull(strstr(html, "210 windows: the test splits of all 3 increments so far"));
	ck_assert_ptr_nonnull(strstr(html, "<th scope=\"col\">init version (weather v2)</th>"));
	ck_assert_ptr_nonnull(strstr(html, "<tr><th scope=\"row\">loss</th><td class=\"num best\">0.61"
	                                   "</td><td class=\"num\">0.74</td></tr>\n<tr><th scope="
	                                   "\"row\">accuracy</th><td class=\"num best\">0.78</td><td "
	                                   "class=\"num\">0.714286</td></tr>\n<tr><th scope=\"row\">"
	                                   "macro_f1</th>"));
	ck_assert_ptr_null(strstr(strstr(html, "class=\"holdout\""), "f1.sun"));
	/* the groups are not repeated under Other figures */
	other = strstr(html, "<h3>Other figures</h3>");
	ck_assert(other == NULL || strstr(other, "continual.R") == NULL);
	ck_assert_ptr_null(strstr(html, "holdout.windows"));
	free(html);

	/* a run without the group has no section */
	s = source("plain", "{}", "{\"test\":{\"accuracy\":0.5}}", NULL, 0, NULL);
	html = export_run(&s);
	ck_assert_ptr_null(strstr(html, "id=\"continual\""));
	free(html);
	json_decref(m);
	free(body);
}
END_TEST

/* A forecast's first increment: an error metric (lower is better), no
 * init version, the figures that need two increments null. */
START_TEST(continual_first_increment)
{
	static const char metrics[] =
		"{\"test\":{\"mae\":1.2},\"continual\":{\"increment\":1,\"init\":null,\"metric\":\"mae\","
		"\"higher_is_better\":false,\"increments\":[{\"index\":1,\"data\":\"/d/block1.csv\","
		"\"test_windows\":40}],\"R\":[[1.2]],\"R_before\":[null],\"baseline\":[2.5],"
		"\"average\":1.2,\"forgetting\":null,\"bwt\":null,\"fwt\":null,\"strategies\":{"
		"\"replay\":{\"memory\":1000,\"ratio\":0,\"bank_rows\":1000},\"ewc\":{\"lambda\":0,"
		"\"mode\":\"separate\",\"gamma\":1,\"terms\":0},\"lwf\":{\"alpha\":0,\"temperature\":2}}},"
		"\"holdout\":{\"windows\":40,\"increments\":1,\"model\":{\"loss\":0.3,\"mae\":1.2},"
		"\"init\":null,\"init_model\":null,\"init_version\":null}}";
	loom_export_source s = source("fc", "{}", metrics, NULL, 0, NULL);
	char *html = export_run(&s);

	assert_balanced(html);
	ck_assert_ptr_nonnull(strstr(html, "nothing: trained from scratch"));
	ck_assert_ptr_nonnull(strstr(html, "mae (lower is better)"));
	/* lower is better: the model's 1.2 is the best (green), the baseline's
	 * 2.5 the worst (red) */
	ck_assert_ptr_nonnull(strstr(html, "<td class=\"num heat diag\" style=\"background:#9cd9a6\">"
	                                   "1.2</td>"));
	ck_assert_ptr_nonnull(strstr(html, "style=\"background:#f4a59a\">2.5</td>"));
	ck_assert_uint_eq(count(html, "sign flipped"), 3);
	ck_assert_uint_eq(count(html, "Not defined for this run"), 3);
	ck_assert_ptr_nonnull(strstr(html, "<th scope=\"row\">replay</th><td>no (ratio 0)"));
	ck_assert_ptr_nonnull(strstr(html, "<th scope=\"col\">init version</th>"));
	ck_assert_ptr_nonnull(strstr(html, "No init version: this run did not start"));
	ck_assert_ptr_nonnull(strstr(html, "<tr><th scope=\"row\">mae</th><td class=\"num\">1.2</td>"
	                                   "<td class=\"num\">—</td></tr>"));
	free(html);
}
END_TEST

/* What a damaged file may hold: rows short or long, strings for numbers,
 * markup in names, more increments than the table shows. */
START_TEST(continual_malformed)
{
	json_t *R = json_array(), *incs = json_array(), *m;
	loom_export_source s;
	char *body, *html;

	for (int i = 0; i < 100; i++) {
		json_t *row = json_array();
		for (int j = 0; j <= i + (i == 99 ? 3 : 0); j++)
			json_array_append_new(row, j == 1 ? json_string("<b>x</b>") : json_real(0.5 + j * 0.001));
		json_array_append_new(R, i == 50 ? json_string("row") : row);
		if (i == 50)
			json_decref(row);
		json_array_append_new(incs, json_pack("{s:i, s:s, s:i}", "index", i + 1, "data",
		                                      i == 99 ? "/d/a&b<last>.csv" : "/d/x.csv",
		                                      "test_windows", 3));
	}
	m = json_pack("{s:{s:o, s:o, s:s, s:s, s:[n], s:i, s:s, s:[s]}, s:s}", "continual", "R", R,
	              "increments", incs, "metric", "acc<uracy>", "higher_is_better", "yes",
	              "R_before", "baseline", 1, "average", "high", "strategies", "none",
	              "holdout", "none");
	body = json_dumps(m, 0);
	s = source("bad", "{}", body, NULL, 0, NULL);
	html = export_run(&s);
	assert_balanced(html);
	ck_assert_ptr_nonnull(strstr(html, "100 increments; the last 40 are shown"));
	ck_assert_uint_eq(count(html, "<th scope=\"row\">after increment"), 40);
	ck_assert_ptr_null(strstr(html, "<b>x"));
	ck_assert_ptr_null(strstr(html, "<last>"));
	ck_assert_ptr_nonnull(strstr(html, "100 (a&amp;b&lt;last&gt;.csv)"));
	ck_assert_ptr_nonnull(strstr(html, "acc&lt;uracy&gt; (higher is better)"));
	ck_assert_ptr_nonnull(strstr(html, "does not say which strategies"));
	ck_assert_ptr_nonnull(strstr(html, "has no holdout group"));
	ck_assert_ptr_nonnull(strstr(html, "<th scope=\"row\">average</th><td class=\"num\">—</td>"));
	free(html);
	free(body);
	json_decref(m);
}
END_TEST

/* ------------------------------------------------------------------ main */

/* Two epochs of the Seattle forecast with loom-worker, once for all tests
 * (before Check runs, so no tu_env: it asserts). */
static int
train(void)
{
	const char *build = getenv("LOOM_TEST_BUILDDIR"), *src = getenv("LOOM_TEST_SRCDIR");
	const char *plugins = getenv("LOOM_TEST_PLUGINS");
	char *worker, *conf, *cmd, *tmp;
	int rv;

	if (build == NULL || src == NULL || plugins == NULL) {
		fprintf(stderr, "run the tests through make check (LOOM_TEST_* are not set)\n");
		return 1;
	}
	tmp = tu_tmpdir();
	worker = loomi_strfmt("%s/host/loom-worker", build);
	conf = loomi_strfmt("%s/etc/jobs/seattle-temps-forecast.conf", src);
	run_dir = loomi_strfmt("%s/run", tmp);
	cmd = loomi_strfmt("sed 's/epochs = 40;/epochs = 2;/' '%s' > '%s/job.conf' && "
	                   "LOOM_PLUGIN_PATH='%s' '%s' --threads 2 --run '%s/job.conf' --out '%s' "
	                   "2>'%s/worker.log' || cat '%s/worker.log'",
	                   conf, tmp, plugins, worker, tmp, run_dir, tmp, tmp);
	rv = system(cmd);
	free(cmd);
	free(conf);
	free(worker);
	free(tmp);
	return rv;
}

int
main(void)
{
	Suite *s;
	TCase *tc;
	char *metrics;
	int rv;

	if (access(DATA, R_OK) != 0) {
		printf("SKIP: %s is missing; install python3-vega-datasets (./bootstrap does)\n",
		       DATA);
		return 77;
	}
	rv = train();
	metrics = run_dir ? loomi_strfmt("%s/metrics.json", run_dir) : NULL;
	if (rv != 0 || metrics == NULL || access(metrics, R_OK) != 0) {
		fprintf(stderr, "loom-worker did not train the test run\n");
		free(metrics);
		free(run_dir);
		return 1;
	}
	free(metrics);
	s = suite_create("exporter-report");
	tc = tcase_create("report");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, real_run_sections);
	tcase_add_test(tc, real_run_deterministic);
	tcase_add_test(tc, long_history_downsampled);
	tcase_add_test(tc, extreme_values);
	tcase_add_test(tc, escaping);
	tcase_add_test(tc, best_marked);
	tcase_add_test(tc, missing_parts);
	tcase_add_test(tc, compare);
	tcase_add_test(tc, compare_real_runs);
	tcase_add_test(tc, errors);
	tcase_add_test(tc, bad_config);
	tcase_add_test(tc, continual_section);
	tcase_add_test(tc, continual_first_increment);
	tcase_add_test(tc, continual_malformed);
	suite_add_tcase(s, tc);
	rv = tu_run(s);
	tu_rmrf(strrchr(run_dir, '/') ? (*strrchr(run_dir, '/') = '\0', run_dir) : run_dir);
	free(run_dir);
	return rv;
}

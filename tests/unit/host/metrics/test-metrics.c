/* GET /metrics: the text writer (escaping of label values and help text,
 * numbers as Prometheus reads them, histograms with cumulative buckets,
 * +Inf, _sum and _count), the lock-free histogram's buckets, the API's
 * request counters (bounded labels whatever a client sends), and the
 * route itself through the pipeline, with a real store. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "host/metrics/metrics.h"
#include "host/metrics/prom.h"
#include "host/server/api-stats.h"
#include "host/server/api.h"
#include "host/server/auth.h"
#include "host/server/histogram.h"
#include "host/server/module.h"
#include "testutil.h"

/* ------------------------------------------------------------------ the writer */

START_TEST(family_and_samples)
{
	loomi_prom w = {0};
	loomi_prom_label l[2] = {{"state", "running"}, {"kind", "head"}};

	loomi_prom_family(&w, "loom_x", "gauge", "Things.");
	loomi_prom_sample(&w, "loom_x", NULL, 0, 3);
	loomi_prom_sample(&w, "loom_x", l, 2, 0.5);
	loomi_prom_sample_u64(&w, "loom_x", l, 1, 18446744073709551615ull);
	ck_assert_str_eq(w.buf, "# HELP loom_x Things.\n"
	                        "# TYPE loom_x gauge\n"
	                        "loom_x 3\n"
	                        "loom_x{state=\"running\",kind=\"head\"} 0.5\n"
	                        "loom_x{state=\"running\"} 18446744073709551615\n");
	ck_assert_uint_eq(w.len, strlen(w.buf));
	loomi_prom_free(&w);
}
END_TEST

/* A label value's backslash, double quote and line feed are escaped; help
 * text escapes backslash and line feed but not the quote. */
START_TEST(escaping)
{
	loomi_prom w = {0};
	loomi_prom_label l = {"route", "a\\b\"c\nd"};

	loomi_prom_family(&w, "loom_y", "counter", "back\\slash \"quoted\"\nsecond line");
	loomi_prom_sample(&w, "loom_y_total", &l, 1, 1);
	ck_assert_str_eq(w.buf, "# HELP loom_y back\\\\slash \"quoted\"\\nsecond line\n"
	                        "# TYPE loom_y counter\n"
	                        "loom_y_total{route=\"a\\\\b\\\"c\\nd\"} 1\n");
	loomi_prom_free(&w);
}
END_TEST

START_TEST(numbers)
{
	char b[40];

	ck_assert_str_eq(loomi_prom_number(0.0001, b, sizeof b), "0.0001");
	ck_assert_str_eq(loomi_prom_number(2.5, b, sizeof b), "2.5");
	ck_assert_str_eq(loomi_prom_number(10, b, sizeof b), "10");
	ck_assert_str_eq(loomi_prom_number(0.1 + 0.2, b, sizeof b), "0.30000000000000004");
	ck_assert_str_eq(loomi_prom_number(1e21, b, sizeof b), "1e+21");
	ck_assert_str_eq(loomi_prom_number(NAN, b, sizeof b), "NaN");
	ck_assert_str_eq(loomi_prom_number(INFINITY, b, sizeof b), "+Inf");
	ck_assert_str_eq(loomi_prom_number(-INFINITY, b, sizeof b), "-Inf");
	ck_assert_str_eq(loomi_prom_number(-0.25, b, sizeof b), "-0.25");
}
END_TEST

/* Per-bucket counts become cumulative buckets; +Inf and _count agree. */
START_TEST(histogram_text)
{
	loomi_prom w = {0};
	const double bounds[] = {0.001, 0.01, 0.1};
	const uint64_t counts[] = {2, 0, 3, 1}; /* the last: above 0.1 */
	loomi_prom_label l = {"route", "/metrics"};

	loomi_prom_histogram(&w, "loom_d_seconds", &l, 1, bounds, 3, counts, 1.25);
	ck_assert_str_eq(w.buf, "loom_d_seconds_bucket{route=\"/metrics\",le=\"0.001\"} 2\n"
	                        "loom_d_seconds_bucket{route=\"/metrics\",le=\"0.01\"} 2\n"
	                        "loom_d_seconds_bucket{route=\"/metrics\",le=\"0.1\"} 5\n"
	                        "loom_d_seconds_bucket{route=\"/metrics\",le=\"+Inf\"} 6\n"
	                        "loom_d_seconds_sum{route=\"/metrics\"} 1.25\n"
	                        "loom_d_seconds_count{route=\"/metrics\"} 6\n");
	loomi_prom_free(&w);

	/* without labels, le is the only one */
	loomi_prom_histogram(&w, "loom_p_seconds", NULL, 0, bounds, 1, counts, 0);
	ck_assert_str_eq(w.buf, "loom_p_seconds_bucket{le=\"0.001\"} 2\n"
	                        "loom_p_seconds_bucket{le=\"+Inf\"} 2\n"
	                        "loom_p_seconds_sum 0\n"
	                        "loom_p_seconds_count 2\n");
	loomi_prom_free(&w);
}
END_TEST

/* ------------------------------------------------------------------ the histogram */

/* A duration equal to a bound counts in that bound's bucket (le); one
 * above every bound in the last; the sum is in seconds. */
START_TEST(histogram_buckets)
{
	static loomi_histogram h;
	const double bounds[] = {0.001, 0.01};
	uint64_t c[3];
	double sum;

	loomi_histogram_observe(&h, bounds, 2, 500000);     /* 0.5 ms */
	loomi_histogram_observe(&h, bounds, 2, 1000000);    /* 1 ms: le 0.001 */
	loomi_histogram_observe(&h, bounds, 2, 1000001);
	loomi_histogram_observe(&h, bounds, 2, 2000000000); /* 2 s */
	loomi_histogram_read(&h, 2, c, &sum);
	ck_assert_uint_eq(c[0], 2);
	ck_assert_uint_eq(c[1], 1);
	ck_assert_uint_eq(c[2], 1);
	ck_assert_double_eq_tol(sum, 2.002500001, 1e-12);
	/* 100 µs to 10 s */
	ck_assert_double_eq(loomi_duration_bounds[0], 0.0001);
	ck_assert_double_eq(loomi_duration_bounds[loomi_n_duration_bounds - 1], 10);
	ck_assert_uint_le(loomi_n_duration_bounds, LOOMI_HISTOGRAM_MAX_BOUNDS);
}
END_TEST

/* ------------------------------------------------------------------ the API's counters */

typedef struct found {
	const char *route, *method;
	int status;
	uint64_t n;
} found;

static void
find_count(void *arg, const char *route, const char *method, int status, uint64_t n)
{
	found *f = arg;
	if (strcmp(route, f->route) == 0 && strcmp(method, f->method) == 0 && status == f->status)
		f->n = n;
}

static uint64_t
requests(const char *route, const char *method, int status)
{
	found f = {route, method, status, 0};
	loomi_api_stats_requests(find_count, &f);
	return f.n;
}

/* A request is counted by its route's pattern, a method from a fixed list
 * ("other" for any other token) and its status, so no client can grow the
 * label sets. */
START_TEST(request_counters)
{
	const loomi_route *r = NULL, *metrics = NULL;
	int64_t ws = loomi_api_stats_websockets();

	for (size_t i = 0; loomi_api_route(i, &r, NULL); i++)
		if (strcmp(r->pattern, "/metrics") == 0)
			metrics = r;
	ck_assert_ptr_nonnull(metrics);
	ck_assert_uint_eq(requests("/metrics", "GET", 200), 0);
	loomi_api_stats_request(metrics, "GET", 200, 1000);
	loomi_api_stats_request(metrics, "GET", 200, 2000);
	loomi_api_stats_request(metrics, "HEAD", 200, 2000);
	loomi_api_stats_request(NULL, "BREW", 404, 1000);
	loomi_api_stats_request(NULL, "X-ANYTHING", 404, 1000);
	loomi_api_stats_request(NULL, "GET", 9999, 1000);
	ck_assert_uint_eq(requests("/metrics", "GET", 200), 2);
	ck_assert_uint_eq(requests("/metrics", "HEAD", 200), 1);
	ck_assert_uint_eq(requests("unmatched", "other", 404), 2);
	ck_assert_uint_eq(requests("unmatched", "GET", 500), 1);

	loomi_api_stats_websocket(1);
	loomi_api_stats_websocket(1);
	loomi_api_stats_websocket(-1);
	ck_assert_int_eq(loomi_api_stats_websockets(), ws + 1);
	loomi_api_stats_websocket(-1);
}
END_TEST

/* ------------------------------------------------------------------ the route */

/* GET /metrics through the pipeline: a viewer reads it (no credential:
 * 401, the route still known for the counters); text in the 0.0.4 format
 * with every family, the tasks' states all present (0 included), and a
 * request counted by the pipeline's hook shows on the next scrape. */
START_TEST(route)
{
	static loomi_daemon d;
	char *dir = tu_tmpdir(), *db = loomi_strfmt("%s/state.db", dir), *err = NULL;
	loomi_caller viewer = {.user_id = 7, .name = "watcher", .role = LOOMI_ROLE_VIEWER,
	                       .via = "token"};
	loomi_http_req req = {.method = "GET", .path = "/metrics", .query = ""};
	loomi_http_res res = {0};
	static const char *const families[] = {
		"# TYPE loom_build_info gauge\n",
		"# TYPE loom_tasks gauge\n",
		"loom_tasks{state=\"pending\"} 0\n",
		"loom_tasks{state=\"cancelled\"} 0\n",
		"# TYPE loom_task_transitions_total counter\n",
		"# TYPE loom_workers_running gauge\n",
		"# TYPE loom_scheduler_plan_seconds histogram\n",
		"loom_scheduler_plan_seconds_bucket{le=\"+Inf\"} 0\n",
		"# TYPE loom_http_requests_total counter\n",
		"# TYPE loom_http_request_duration_seconds histogram\n",
		"# TYPE loom_websocket_connections gauge\n",
		"# TYPE loom_bus_messages_total counter\n",
		"loom_bus_messages_total{direction=\"in\",kind=\"request\"} 0\n",
		"# TYPE loom_metric_points_ingested_total counter\n",
		"# TYPE loom_metric_points_dropped_total counter\n",
		"loom_store_bytes{file=\"database\"} ",
		"loom_plugin_instances{kind=\"scheduler\"} 0\n",
		"# TYPE process_cpu_seconds_total counter\n",
		"# TYPE process_resident_memory_bytes gauge\n",
		"# TYPE process_start_time_seconds gauge\n",
		"# TYPE process_open_fds gauge\n",
	};

	ck_assert_msg(loomi_store_open(&d.store, db, &err) == 0, "%s", err);
	loomi_api_handle(&d, &req, &res);
	ck_assert_int_eq(res.status, 401);
	ck_assert_ptr_nonnull(res.route);
	ck_assert_str_eq(res.route->pattern, "/metrics");
	json_decref(res.body);
	for (int k = 0; k < res.n_headers; k++)
		free(res.headers[k].value);
	memset(&res, 0, sizeof res);

	req.caller = &viewer;
	loomi_api_handle(&d, &req, &res);
	ck_assert_int_eq(res.status, 200);
	ck_assert_ptr_null(res.body);
	ck_assert_str_eq(res.content_type, "text/plain; version=0.0.4; charset=utf-8");
	ck_assert_ptr_nonnull(res.route);
	ck_assert_str_eq(res.route->pattern, "/metrics");
	ck_assert_uint_eq(res.text_len, strlen(res.text));
	for (size_t i = 0; i < sizeof families / sizeof *families; i++)
		ck_assert_msg(strstr(res.text, families[i]), "no \"%s\" in:\n%s", families[i], res.text);
	/* a store of a few pages */
	ck_assert_ptr_null(strstr(res.text, "loom_store_bytes{file=\"database\"} 0\n"));
	free(res.text);

	/* any signed-in user reads it, viewers included */
	for (size_t i = 0; loomi_api_route(i, &res.route, NULL); i++)
		if (strcmp(res.route->pattern, "/metrics") == 0)
			ck_assert_int_eq(res.route->access, LOOMI_ACCESS_READ);

	/* a request on the wire is counted once its answer is ready */
	{
		const loomi_route *m = NULL, *r;
		for (size_t i = 0; loomi_api_route(i, &r, NULL); i++)
			if (strcmp(r->pattern, "/metrics") == 0)
				m = r;
		loomi_api_stats_request(m, "GET", 200, 3000000);
		size_t len;
		char *text = loomi_metrics_text(&d, &len);
		ck_assert_msg(strstr(text, "loom_http_requests_total{route=\"/metrics\",method=\"GET\","
		                           "status=\"200\"} "),
		              "%s", text);
		ck_assert_msg(strstr(text, "loom_http_request_duration_seconds_bucket{route=\"/metrics\","
		                           "le=\"0.005\"} "),
		              "%s", text);
		free(text);
	}
	loomi_store_close(&d.store);
	tu_rmrf(dir);
	free(db);
	free(dir);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("metrics");

	tcase_add_test(tc, family_and_samples);
	tcase_add_test(tc, escaping);
	tcase_add_test(tc, numbers);
	tcase_add_test(tc, histogram_text);
	tcase_add_test(tc, histogram_buckets);
	tcase_add_test(tc, request_counters);
	tcase_add_test(tc, route);
	suite_add_tcase(s, tc);
	return tu_run(s);
}

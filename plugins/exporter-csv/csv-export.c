/* exporter-csv — a run's metrics as CSV (RFC 4180, CRLF line ends), one
 * row per point, for spreadsheets, pandas and R:
 *
 *   run_id,metric,step,epoch,scope,value
 *   job-7,train_loss,47,1,epoch,0.13559513360487566
 *   job-7,test.mae,,,final,0.49974464129850354
 *
 * First every point of each metric's history in step order (scope "step"
 * or "epoch"), then the final metrics: every number of the run's
 * metrics.json outside its "epochs" history, named by its dotted path
 * ("test.mae", "baselines.repeat_last.mae"), with scope "final" and no
 * step or epoch.  Values are written with %.17g, which reads back to the
 * same double; non-finite ones as NaN, inf and -inf, which pandas
 * and Python's float() read.  Fields with a comma, a quote, a line break
 * or surrounding spaces are quoted, quotes doubled.  export_compare writes
 * the rows of several runs under one header. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <loom/exporter.h>

typedef struct ctx {
	const loom_host *host;
	loom_instance *ins;
} ctx;

static int
csv_init(loom_instance *ins, const loom_host *host, void *p)
{
	ctx *c = p;
	c->host = host;
	c->ins = ins;
	return 0;
}

/* One field, quoted when a reader would otherwise split or trim it. */
static void
field(loom_export_writer *o, const char *s)
{
	size_t n = strlen(s);

	if (strpbrk(s, ",\"\r\n") == NULL && (n == 0 || (s[0] != ' ' && s[n - 1] != ' '))) {
		loom_export_writer_put(o, s, n);
		return;
	}
	loom_export_writer_put(o, "\"", 1);
	for (const char *q; (q = strchr(s, '"')) != NULL; s = q + 1) {
		loom_export_writer_put(o, s, (size_t)(q - s) + 1);
		loom_export_writer_put(o, "\"", 1);
	}
	loom_export_writer_puts(o, s);
	loom_export_writer_put(o, "\"", 1);
}

static void
value(loom_export_writer *o, double v)
{
	if (isnan(v))
		loom_export_writer_puts(o, "NaN");
	else if (isinf(v))
		loom_export_writer_puts(o, v > 0 ? "inf" : "-inf");
	else
		loom_export_writer_double(o, v);
}

static const char *
scope_name(uint32_t scope)
{
	switch (scope) {
	case LOOM_METRIC_STEP: return "step";
	case LOOM_METRIC_EPOCH: return "epoch";
	case LOOM_METRIC_FINAL: return "final";
	default: return "unknown";
	}
}

typedef struct rows {
	loom_export_writer *o;
	const char *run_id;
	const char *metric;
} rows;

static int
point_row(void *arg, const loom_metric_point *pt)
{
	rows *r = arg;

	field(r->o, r->run_id);
	loom_export_writer_put(r->o, ",", 1);
	field(r->o, r->metric);
	loom_export_writer_printf(r->o, ",%lld,%d,%s,", (long long)pt->step, (int)pt->epoch,
	            scope_name(pt->scope));
	value(r->o, pt->value);
	loom_export_writer_put(r->o, "\r\n", 2);
	/* A failed write stops the iteration: nothing more would arrive. */
	return loom_export_writer_error(r->o);
}

/* Every number under v, named by its dotted path. */
static void
final_rows(loom_export_writer *o, const char *run_id, const char *path, const json_t *v)
{
	const char *key;
	json_t *e;

	if (json_is_object(v)) {
		json_object_foreach((json_t *)v, key, e) {
			char *sub;
			if (*path == '\0' && strcmp(key, "epochs") == 0)
				continue;
			if (*path == '\0')
				sub = strdup(key);
			else if ((sub = malloc(strlen(path) + strlen(key) + 2)) != NULL)
				sprintf(sub, "%s.%s", path, key);
			if (sub == NULL) {
				loom_export_writer_fail(o, LOOM_ENOMEM);
				return;
			}
			final_rows(o, run_id, sub, e);
			free(sub);
		}
	} else if (json_is_number(v)) {
		field(o, run_id);
		loom_export_writer_put(o, ",", 1);
		field(o, path);
		loom_export_writer_puts(o, ",,,final,");
		value(o, json_number_value(v));
		loom_export_writer_put(o, "\r\n", 2);
	}
}

static int
run_rows(const ctx *c, loom_export_writer *o, const loom_export_source *src)
{
	const char *run_id = src->run_id ? src->run_id : "";
	rows r = {o, run_id, NULL};
	json_t *metrics;
	json_error_t je;
	int rv;

	for (size_t i = 0;
	     src->history && i < src->n_metric_names && loom_export_writer_error(o) == 0;
	     i++) {
		r.metric = src->metric_names[i];
		rv = src->history(src, r.metric, point_row, &r);
		if (rv != 0 && loom_export_writer_error(o) == 0) {
			loom_log_error(c->host, c->ins, "run %s: cannot read the history of %s: %s",
			               run_id, src->metric_names[i], loom_strerror(rv));
			loom_export_writer_fail(o, rv);
		}
	}
	if (loom_export_writer_error(o) != 0 || src->metrics_json == NULL)
		return loom_export_writer_error(o);
	if ((metrics = json_loads(src->metrics_json, 0, &je)) == NULL) {
		loom_log_error(c->host, c->ins, "run %s: its final metrics are not JSON (%s)", run_id,
		               je.text);
		loom_export_writer_fail(o, LOOM_ECORRUPT);
		return loom_export_writer_error(o);
	}
	final_rows(o, run_id, "", metrics);
	json_decref(metrics);
	return loom_export_writer_error(o);
}

static const char header[] = "run_id,metric,step,epoch,scope,value\r\n";

static int
csv_export_compare(void *p, const loom_export_source *const *srcs, size_t n,
                   const loom_export_sink *sink)
{
	loom_export_writer *o;
	int rv;

	if ((rv = loom_export_writer_open(sink, &o)) != 0)
		return rv;
	loom_export_writer_puts(o, header);
	for (size_t i = 0; i < n && loom_export_writer_error(o) == 0; i++)
		run_rows(p, o, srcs[i]);
	return loom_export_writer_close(o);
}

static int
csv_export_run(void *p, const loom_export_source *src, const loom_export_sink *sink)
{
	return csv_export_compare(p, &src, 1, sink);
}

static const loom_exporter_ops ops = {
	.size = sizeof ops,
	.caps = LOOM_EXPORT_COMPARE,
	.format = "csv",
	.extension = ".csv",
	.media_type = "text/csv; charset=utf-8",
	.export_run = csv_export_run,
	.export_compare = csv_export_compare,
};

LOOM_PLUGIN_DEFINE(exporter_csv,
                   .kind = LOOM_KIND_EXPORTER,
                   .name = "exporter-csv",
                   .version = "1.0.0",
                   .description = "a run's metric histories and final metrics as CSV, "
                                  "one row per point",
                   .flags = LOOM_PLUGIN_THREAD_SAFE,
                   .ctx_size = sizeof(ctx),
                   .init = csv_init,
                   .ops = &ops)

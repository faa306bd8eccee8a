/* hello-compute — an example Loom compute plugin: fits y = a·x + b by
 * least squares to two columns of a CSV file, and writes the fit as
 * last.safetensors and its errors as metrics.json in the run's output
 * directory, as compute-transformer does.
 *
 * It shows a job spec checked with <loom/spec.h> (a schema, defaults and a
 * check of two settings together), weights written with
 * <loom/safetensors.h> and files with <loom/util.h>.  It builds out of
 * tree against the installed SDK with nothing else:
 *
 *   cc -shared -fPIC -o hello-compute.so hello-compute.c \
 *       $(pkg-config --cflags --libs loom)
 *
 * A job for it (libconfig, or the same keys as JSON):
 *
 *   compute = "fit";            # the instance name in loomd.conf
 *   data = { path = "/data/sales.csv"; x = "week"; y = "sales"; };
 *   model = { intercept = true; };
 *   train = { holdout = 0.2; };  # the last 20 % of rows are the test set
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/compute.h>
#include <loom/safetensors.h>
#include <loom/spec.h>
#include <loom/util.h>

struct hello {
	const loom_host *host;
	loom_instance *ins;
};

/* ------------------------------------------------------------------ the job spec */

static const loom_spec_field data_fields[] = {
	{.key = "path", .type = LOOM_SPEC_PATH, .flags = LOOM_SPEC_REQUIRED,
	 .help = "the CSV file, with a header row"},
	{.key = "x", .type = LOOM_SPEC_STRING, .help = "the input column; the row number if absent"},
	{.key = "y", .type = LOOM_SPEC_STRING, .flags = LOOM_SPEC_REQUIRED,
	 .help = "the column to predict"},
	LOOM_SPEC_END,
};

static const loom_spec_field model_fields[] = {
	{.key = "intercept", .type = LOOM_SPEC_BOOL, .help = "fit b too (else b = 0)"},
	LOOM_SPEC_END,
};

static const loom_spec_field train_fields[] = {
	{.key = "holdout", .type = LOOM_SPEC_DOUBLE, .flags = LOOM_SPEC_RANGE, .min = 0,
	 .max = 0.9, .help = "the fraction of last rows kept for the test metrics"},
	LOOM_SPEC_END,
};

/* Keys loomd itself reads from every spec (name, compute, priority, after,
 * resources, retries, timeout) are accepted too, so users can write them. */
static const loom_spec_field spec_fields[] = {
	{.key = "name", .type = LOOM_SPEC_STRING},
	{.key = "compute", .type = LOOM_SPEC_STRING},
	{.key = "priority", .type = LOOM_SPEC_INT},
	{.key = "after", .type = LOOM_SPEC_INTLIST},
	{.key = "resources", .type = LOOM_SPEC_ANYGROUP},
	{.key = "retries", .type = LOOM_SPEC_INT},
	{.key = "timeout", .type = LOOM_SPEC_DURATION},
	{.key = "data", .type = LOOM_SPEC_GROUP, .flags = LOOM_SPEC_REQUIRED,
	 .children = data_fields},
	{.key = "model", .type = LOOM_SPEC_GROUP, .children = model_fields},
	{.key = "train", .type = LOOM_SPEC_GROUP, .children = train_fields},
	LOOM_SPEC_END,
};

/* What a run needs of the spec. */
struct job {
	char *path, *x, *y;   /* x NULL: the row number */
	bool intercept;
	double holdout;
};

static void
job_free(struct job *j)
{
	free(j->path);
	free(j->x);
	free(j->y);
	memset(j, 0, sizeof *j);
}

static char *
dup_at(const loom_spec *s, const char *path)
{
	const char *v = NULL;
	return loom_spec_get_string(s, path, &v) == 0 ? loom_strfmt("%s", v) : NULL;
}

/* Parse and check a spec.  0, or LOOM_EINVAL with every problem in *error
 * (free() it), each naming its key; or LOOM_ENOMEM. */
static int
job_parse(const char *text, struct job *j, char **error)
{
	loom_spec *s = NULL;
	const char *x = NULL, *y = NULL;
	int rv;

	memset(j, 0, sizeof *j);
	*error = NULL;
	if ((rv = loom_spec_parse(text, "spec", &s)) == 0)
		rv = loom_spec_check(s, spec_fields);
	if (rv == 0) {
		loom_spec_default_bool(s, "model.intercept", true);
		loom_spec_default_double(s, "train.holdout", 0.2);
		/* A check of two settings together, reported at one of them. */
		loom_spec_get_string(s, "data.x", &x);
		loom_spec_get_string(s, "data.y", &y);
		if (x && y && strcmp(x, y) == 0)
			loom_spec_errorf(s, "data.x", "is the column to predict (data.y) too; name "
			                              "another column, or leave data.x out to use the "
			                              "row number");
	}
	if (loom_spec_error_count(s) > 0) {
		*error = loom_spec_errors(s);
		rv = LOOM_EINVAL;
	} else if (rv == 0) {
		j->path = dup_at(s, "data.path");
		j->x = dup_at(s, "data.x");
		j->y = dup_at(s, "data.y");
		loom_spec_get_bool(s, "model.intercept", &j->intercept);
		loom_spec_get_double(s, "train.holdout", &j->holdout);
		if (j->path == NULL || j->y == NULL || (x && j->x == NULL))
			rv = LOOM_ENOMEM;
	}
	loom_spec_free(s);
	if (rv != 0)
		job_free(j);
	return rv;
}

/* ------------------------------------------------------------------ the data */

/* Column col of one CSV line (no quoted commas), trimmed, into buf. */
static bool
field_at(const char *line, size_t len, int col, char *buf, size_t buflen)
{
	const char *p = line, *end = line + len, *f;
	size_t n;

	for (int c = 0; c < col; c++) {
		if ((p = memchr(p, ',', (size_t)(end - p))) == NULL)
			return false;
		p++;
	}
	f = p;
	p = memchr(f, ',', (size_t)(end - f));
	n = (size_t)((p ? p : end) - f);
	while (n > 0 && (*f == ' ' || *f == '"')) {
		f++;
		n--;
	}
	while (n > 0 && (f[n - 1] == ' ' || f[n - 1] == '"' || f[n - 1] == '\r'))
		n--;
	if (n >= buflen)
		return false;
	memcpy(buf, f, n);
	buf[n] = '\0';
	return true;
}

/* The index of the column called name in the header line, or -1. */
static int
column_of(const char *line, size_t len, const char *name)
{
	char buf[256];
	for (int c = 0; field_at(line, len, c, buf, sizeof buf); c++) {
		if (strcmp(buf, name) == 0)
			return c;
	}
	return -1;
}

/* The number in column col of a line. */
static bool
number_at(const char *line, size_t len, int col, double *out)
{
	char buf[64], *end;

	if (!field_at(line, len, col, buf, sizeof buf) || buf[0] == '\0')
		return false;
	*out = strtod(buf, &end);
	return *end == '\0';
}

/* Read the x and y columns: *n rows into *xs and *ys (free() them).  On
 * failure a message in *why (free() it). */
static int
read_columns(const struct job *j, double **xs, double **ys, size_t *n, char **why)
{
	char *text = NULL, *line, *next;
	size_t len, cap = 0, rows = 0, lineno = 1;
	int cx = -1, cy;
	double *x = NULL, *y = NULL;

	*xs = *ys = NULL;
	*n = 0;
	if (loom_file_read(j->path, &text, &len) != 0) {
		*why = loom_strfmt("data.path: cannot read %s: %s", j->path, strerror(errno));
		return LOOM_EIO;
	}
	next = strchr(text, '\n');
	line = text;
	if ((cy = column_of(line, next ? (size_t)(next - line) : strlen(line), j->y)) < 0 ||
	    (j->x && (cx = column_of(line, next ? (size_t)(next - line) : strlen(line), j->x)) < 0)) {
		*why = loom_strfmt("%s: %s has no column \"%s\" in its header row",
		                   cy < 0 ? "data.y" : "data.x", j->path, cy < 0 ? j->y : j->x);
		free(text);
		return LOOM_EINVAL;
	}
	while (next) {
		size_t l;
		line = next + 1;
		next = strchr(line, '\n');
		l = next ? (size_t)(next - line) : strlen(line);
		lineno++;
		if (l == 0 || (l == 1 && line[0] == '\r'))
			continue;
		if (rows == cap) {
			double *nx, *ny;
			cap = cap ? cap * 2 : 256;
			nx = realloc(x, cap * sizeof *x);
			if (nx)
				x = nx;
			ny = realloc(y, cap * sizeof *y);
			if (ny)
				y = ny;
			if (nx == NULL || ny == NULL) {
				free(x);
				free(y);
				free(text);
				return LOOM_ENOMEM;
			}
		}
		x[rows] = (double)rows;
		if ((cx >= 0 && !number_at(line, l, cx, &x[rows])) ||
		    !number_at(line, l, cy, &y[rows])) {
			*why = loom_strfmt("%s:%zu: not a number in column \"%s\" or \"%s\"; give "
			                   "numeric columns",
			                   j->path, lineno, j->y, j->x ? j->x : j->y);
			free(x);
			free(y);
			free(text);
			return LOOM_EINVAL;
		}
		rows++;
	}
	free(text);
	*xs = x;
	*ys = y;
	*n = rows;
	return 0;
}

/* ------------------------------------------------------------------ the fit */

/* Least squares over rows [0, n): y ≈ a·x + b (b = 0 without intercept). */
static int
fit(const double *x, const double *y, size_t n, bool intercept, double *a, double *b)
{
	double mx = 0, my = 0, sxx = 0, sxy = 0;

	if (intercept) {
		for (size_t i = 0; i < n; i++) {
			mx += x[i];
			my += y[i];
		}
		mx /= (double)n;
		my /= (double)n;
	}
	for (size_t i = 0; i < n; i++) {
		sxx += (x[i] - mx) * (x[i] - mx);
		sxy += (x[i] - mx) * (y[i] - my);
	}
	if (sxx == 0)
		return LOOM_EINVAL;
	*a = sxy / sxx;
	*b = my - *a * mx;
	return 0;
}

static void
errors(const double *x, const double *y, size_t from, size_t to, double a, double b,
       double *mse, double *mae)
{
	*mse = *mae = 0;
	for (size_t i = from; i < to; i++) {
		double e = a * x[i] + b - y[i];
		*mse += e * e;
		*mae += e < 0 ? -e : e;
	}
	if (to > from) {
		*mse /= (double)(to - from);
		*mae /= (double)(to - from);
	}
}

/* ------------------------------------------------------------------ output */

/* last.safetensors: "weight" [1] and "bias" [1], F64, and what they mean. */
static int
write_weights(const loom_job *lj, const struct job *j, double a, double b, size_t rows,
              char **why)
{
	char nrows[32], *path = loom_strfmt("%s/last.safetensors", lj->out_dir);
	const loom_safetensors_tensor t[] = {
		{.name = "weight", .dtype = "F64", .ndim = 1, .dims = {1}, .data = &a,
		 .nbytes = sizeof a},
		{.name = "bias", .dtype = "F64", .ndim = 1, .dims = {1}, .data = &b,
		 .nbytes = sizeof b},
	};
	loom_safetensors_meta meta[] = {
		{"format", "hello-compute"}, {"x", j->x ? j->x : "(row)"}, {"y", j->y},
		{"rows", nrows},
	};
	unsigned char *buf = NULL;
	size_t len = 0;
	int rv;

	snprintf(nrows, sizeof nrows, "%zu", rows);
	if (path == NULL)
		return LOOM_ENOMEM;
	if ((rv = loom_safetensors_encode(t, 2, meta, 4, &buf, &len)) != 0)
		*why = loom_strfmt("cannot encode %s: %s", path, loom_strerror(rv));
	else if ((rv = loom_file_write_atomic(path, buf, len, 0644)) != 0)
		*why = loom_strfmt("cannot write %s: %s", path, strerror(errno));
	else if (lj->artifact)
		lj->artifact(lj, "last.safetensors", path);
	free(buf);
	free(path);
	return rv;
}

/* metrics.json, whose "test" numbers the worker reports as test_<name>. */
static int
write_metrics(const loom_job *lj, double train_mse, double mse, double mae, size_t n_test,
              char **why)
{
	char *path = loom_strfmt("%s/metrics.json", lj->out_dir);
	char *text = loom_strfmt("{\"train\": {\"mse\": %.17g},\n \"test\": {\"mse\": %.17g, "
	                         "\"mae\": %.17g, \"rows\": %zu}}\n",
	                         train_mse, mse, mae, n_test);
	int rv = 0;

	if (path == NULL || text == NULL)
		rv = LOOM_ENOMEM;
	else if ((rv = loom_file_write_atomic(path, text, strlen(text), 0644)) != 0)
		*why = loom_strfmt("cannot write %s: %s", path, strerror(errno));
	else if (lj->artifact)
		lj->artifact(lj, "metrics.json", path);
	free(text);
	free(path);
	return rv;
}

static void
report(const struct hello *h, const loom_job *lj, const char *name, double value)
{
	loom_metric_point pt = {.name = name, .step = 1, .epoch = 1, .scope = LOOM_METRIC_FINAL,
	                        .wall_ms = h->host->clock_wall_ms(), .value = value};
	if (lj->metric)
		lj->metric(lj, &pt);
}

/* ------------------------------------------------------------------ ops */

static int
hello_init(loom_instance *ins, const loom_host *host, void *p)
{
	struct hello *h = p;
	h->host = host;
	h->ins = ins;
	return 0;
}

static int
hello_validate(void *p, const char *spec_json, char **error)
{
	struct hello *h = p;
	struct job j;
	char *why = NULL;
	int rv = job_parse(spec_json, &j, &why);

	/* What crosses the ABI comes from host->alloc. */
	if (rv != 0 && why && error && (*error = h->host->alloc(strlen(why) + 1)) != NULL)
		strcpy(*error, why);
	free(why);
	job_free(&j);
	return rv;
}

static int
hello_run(void *p, const loom_job *lj)
{
	struct hello *h = p;
	struct job j;
	double *x = NULL, *y = NULL, a = 0, b = 0, train_mse, mse, mae, scratch;
	size_t n = 0, n_train;
	char *why = NULL;
	int rv;

	if ((rv = job_parse(lj->spec_json, &j, &why)) != 0)
		goto out;
	if (lj->control && lj->control(lj) != LOOM_CONTROL_RUN) {
		rv = LOOM_ECANCELED; /* it cannot checkpoint: a pause stops it too */
		goto out;
	}
	if ((rv = loom_mkdir_p(lj->out_dir, 0755)) != 0) {
		why = loom_strfmt("cannot create %s: %s", lj->out_dir, strerror(errno));
		goto out;
	}
	if ((rv = read_columns(&j, &x, &y, &n, &why)) != 0)
		goto out;
	n_train = n - (size_t)((double)n * j.holdout);
	if (n_train < 2 || fit(x, y, n_train, j.intercept, &a, &b) != 0) {
		why = loom_strfmt("%s: %zu training rows with distinct x are too few to fit a line; "
		                  "give more rows or a smaller train.holdout",
		                  j.path, n_train);
		rv = LOOM_EINVAL;
		goto out;
	}
	errors(x, y, 0, n_train, a, b, &train_mse, &scratch);
	errors(x, y, n_train, n, a, b, &mse, &mae);
	if (lj->log) {
		char *msg = loom_strfmt("%s = %.6g · %s + %.6g over %zu rows; test mse %.6g", j.y, a,
		                        j.x ? j.x : "row", b, n_train, mse);
		if (msg)
			lj->log(lj, LOOM_LOG_INFO, msg);
		free(msg);
	}
	report(h, lj, "train_mse", train_mse);
	report(h, lj, "test_mse", mse);
	if (lj->progress)
		lj->progress(lj, 1, 1, 1, 1);
	if ((rv = write_weights(lj, &j, a, b, n_train, &why)) == 0)
		rv = write_metrics(lj, train_mse, mse, mae, n - n_train, &why);
out:
	if (rv != 0 && rv != LOOM_ECANCELED && lj->log)
		lj->log(lj, LOOM_LOG_ERROR, why ? why : loom_strerror(rv));
	free(why);
	free(x);
	free(y);
	job_free(&j);
	return rv;
}

static const loom_compute_ops ops = {
	.size = sizeof(loom_compute_ops),
	.caps = 0, /* not RESUMABLE: it runs in one step */
	.validate = hello_validate,
	.run = hello_run,
};

LOOM_PLUGIN_DEFINE(hello_compute,
                   .kind = LOOM_KIND_COMPUTE,
                   .name = "hello-compute",
                   .version = "1.0.0",
                   .description = "example: fits y = a·x + b to two CSV columns",
                   .flags = LOOM_PLUGIN_THREAD_SAFE,
                   .ctx_size = sizeof(struct hello),
                   .init = hello_init,
                   .ops = &ops)

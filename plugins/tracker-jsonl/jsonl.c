/* tracker-jsonl — a run as JSON lines: <dir>/<run_id>.jsonl, one object per
 * line, the complete record of the run in the order it happened.
 *
 * Every line has "type" first, then "run" and "job":
 *   run_begin  name, user, started_ms, time, params, lineage
 *   params     time, params
 *   tag        time, key, value
 *   metric     name, step, epoch, scope ("step"|"epoch"|"final"), time,
 *              wall_ms, value
 *   artifact   time, name, ref, sha256, bytes
 *   run_end    time, status, ended_ms
 * "time" is UTC ISO 8601 with milliseconds ("2026-11-23T08:00:00.123Z").
 * params and lineage are the JSON the host passed, embedded as JSON (as a
 * string when it does not parse).  JSON has no NaN: a non-finite value is
 * written "value":null with "nonfinite":"nan", "inf" or "-inf", which jq
 * and pandas read as a missing value with a reason beside it.
 *
 * The file is opened for appending, so a run resumed after a pause (a new
 * run_begin for the same run_id) continues its file; an incomplete last
 * line (left by a crash) is cut off first, with a warning.  A run whose job is
 * not known (points arriving without run_begin, after a daemon restart)
 * gets "job":null.
 *
 * Lines are encoded with jansson and written through stdio's buffer; flush
 * and run_end push them to the file (and fsync it with fsync = true). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <loom/tracker.h>

#define STDIO_BUF (64 * 1024)

typedef struct run {
	char *id;
	char *path;
	FILE *fp;
	char *iobuf;         /* fp's buffer, STDIO_BUF bytes */
	int64_t job;
	bool has_job;
} run;

typedef struct ctx {
	/* settings */
	const char *dir;
	bool fsync;
	/* state */
	const loom_host *host;
	loom_instance *ins;
	const char *root;
	run **runs;
	size_t n_runs, cap_runs;
} ctx;

static const loom_config_entry config[] = {
	{LOOM_CONFIG_PATH, 0, "dir", NULL, offsetof(ctx, dir),
	 "directory of the runs' .jsonl files (default: the instance's state directory)", 0, 0,
	 NULL, {NULL, NULL}},
	{LOOM_CONFIG_BOOL, 0, "fsync", "false", offsetof(ctx, fsync),
	 "fsync a run's file on flush and run_end", 0, 0, NULL, {NULL, NULL}},
	LOOM_CONFIG_END,
};

static const char *const scope_names[] = {"step", "epoch", "final"};

/* ------------------------------------------------------------------ files */

static int
check_run_id(ctx *c, const char *id)
{
	if (id == NULL || *id == '\0' || strcmp(id, ".") == 0 || strcmp(id, "..") == 0 ||
	    strlen(id) > 200 || strpbrk(id, "/\\") != NULL) {
		c->host->log(c->ins, LOOM_LOG_ERROR,
		             "run id \"%s\" cannot name a file: use a non-empty name without "
		             "'/' (like \"job-42\")",
		             id ? id : "(null)");
		return LOOM_EINVAL;
	}
	for (const char *s = id; *s; s++) {
		if ((unsigned char)*s < 0x20) {
			c->host->log(c->ins, LOOM_LOG_ERROR,
			             "run id \"%s\" has a control character", id);
			return LOOM_EINVAL;
		}
	}
	return 0;
}

static int
mkdir_p(ctx *c, const char *path)
{
	char *tmp = strdup(path);
	struct stat st;
	int rv = 0;

	if (tmp == NULL)
		return LOOM_ENOMEM;
	if (*tmp == '\0') {
		free(tmp);
		c->host->log(c->ins, LOOM_LOG_ERROR, "\"dir\" is empty: name a directory");
		return LOOM_ECONFIG;
	}
	for (char *s = tmp + 1;; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char save = *s;
		*s = '\0';
		if (mkdir(tmp, 0777) != 0 && errno != EEXIST) {
			c->host->log(c->ins, LOOM_LOG_ERROR, "cannot create directory %s: %s", tmp,
			             strerror(errno));
			rv = LOOM_EIO;
			break;
		}
		*s = save;
		if (save == '\0')
			break;
	}
	if (rv == 0 && (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))) {
		c->host->log(c->ins, LOOM_LOG_ERROR,
		             "%s is not a directory: remove what is there or set \"dir\" to "
		             "another place",
		             path);
		rv = LOOM_EIO;
	}
	free(tmp);
	return rv;
}

/* Push buffered lines to the file, and to the disk with fsync = true. */
static int
flush_run(ctx *c, run *r)
{
	if (fflush(r->fp) != 0 || ferror(r->fp) ||
	    (c->fsync && fsync(fileno(r->fp)) != 0)) {
		loom_log_limited(c->host, c->ins, LOOM_LOG_ERROR, "cannot write %s: %s", r->path,
		                 strerror(errno));
		clearerr(r->fp);
		return LOOM_EIO;
	}
	return 0;
}

static void
run_free(run *r)
{
	if (r->fp)
		fclose(r->fp);
	free(r->iobuf);
	free(r->id);
	free(r->path);
	free(r);
}

static run *
find_run(ctx *c, const char *id, size_t *at)
{
	if (id == NULL)
		return NULL;
	for (size_t i = 0; i < c->n_runs; i++) {
		if (strcmp(c->runs[i]->id, id) == 0) {
			if (at)
				*at = i;
			return c->runs[i];
		}
	}
	return NULL;
}

/* A daemon that died while writing can leave a line cut short at the end
 * of a run's file; appending after it would make the file unreadable to jq
 * and pandas.  Cut the file back to its last newline, saying so. */
static int
drop_torn_tail(ctx *c, run *r, int fd)
{
	struct stat st;
	char buf[4096];
	off_t end, at;

	if (fstat(fd, &st) != 0 || st.st_size == 0)
		return 0;
	end = st.st_size;
	at = end;
	while (at > 0) {
		off_t from = at > (off_t)sizeof buf ? at - (off_t)sizeof buf : 0;
		ssize_t n = pread(fd, buf, (size_t)(at - from), from);
		if (n != at - from)
			goto fail;
		while (n > 0 && buf[n - 1] != '\n')
			n--;
		if (n > 0) {
			at = from + n;
			break;
		}
		at = from;
	}
	if (at == end)
		return 0;
	if (ftruncate(fd, at) != 0)
		goto fail;
	c->host->log(c->ins, LOOM_LOG_WARN,
	             "%s ended in an incomplete line (a crash while writing?): dropped its "
	             "last %lld bytes",
	             r->path, (long long)(end - at));
	return 0;
fail:
	loom_log_limited(c->host, c->ins, LOOM_LOG_ERROR, "cannot read or repair %s: %s", r->path,
	                 strerror(errno));
	return LOOM_EIO;
}

/* The open run, or the run's file opened for appending. */
static int
get_run(ctx *c, const char *id, run **out)
{
	run *r;
	int fd, rv;

	if ((r = find_run(c, id, NULL)) != NULL) {
		*out = r;
		return 0;
	}
	if ((rv = check_run_id(c, id)) != 0)
		return rv;
	if (c->n_runs == c->cap_runs) {
		size_t cap = c->cap_runs ? 2 * c->cap_runs : 8;
		run **nr = realloc(c->runs, cap * sizeof *nr);
		if (nr == NULL)
			return LOOM_ENOMEM;
		c->runs = nr;
		c->cap_runs = cap;
	}
	if ((r = calloc(1, sizeof *r)) == NULL || (r->id = strdup(id)) == NULL ||
	    asprintf(&r->path, "%s/%s.jsonl", c->root, id) < 0) {
		if (r)
			free(r->id);
		free(r);
		return LOOM_ENOMEM;
	}
	fd = open(r->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
	if (fd >= 0 && (rv = drop_torn_tail(c, r, fd)) != 0) {
		close(fd);
		run_free(r);
		return rv;
	}
	if (fd < 0 || (r->fp = fdopen(fd, "a")) == NULL) {
		loom_log_limited(c->host, c->ins, LOOM_LOG_ERROR, "cannot open %s: %s", r->path,
		                 strerror(errno));
		if (fd >= 0)
			close(fd);
		run_free(r);
		return LOOM_EIO;
	}
	/* glibc sizes a buffer it allocates itself by the file system's block
	 * (4K), whatever setvbuf asks: give it ours. */
	if ((r->iobuf = malloc(STDIO_BUF)) != NULL)
		setvbuf(r->fp, r->iobuf, _IOFBF, STDIO_BUF);
	c->runs[c->n_runs++] = r;
	*out = r;
	return 0;
}

static int
close_run(ctx *c, size_t at)
{
	run *r = c->runs[at];
	int rv = flush_run(c, r);

	if (fclose(r->fp) != 0 && rv == 0) {
		loom_log_limited(c->host, c->ins, LOOM_LOG_ERROR, "cannot write %s: %s", r->path,
		                 strerror(errno));
		rv = LOOM_EIO;
	}
	r->fp = NULL;
	run_free(r);
	c->runs[at] = c->runs[--c->n_runs];
	return rv;
}

/* ------------------------------------------------------------------ lines */

/* "2026-11-23T08:00:00.123Z" for UTC milliseconds since the epoch. */
static void
iso_time(int64_t ms, char buf[80])
{
	int64_t secs = ms / 1000, frac = ms % 1000;
	time_t t;
	struct tm tm;

	if (frac < 0) {
		frac += 1000;
		secs--;
	}
	t = (time_t)secs;
	if (gmtime_r(&t, &tm) == NULL) {
		snprintf(buf, 80, "%" PRId64, ms);
		return;
	}
	snprintf(buf, 80, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
}

/* A new line object: type, run, job. */
static json_t *
line_new(const run *r, const char *type)
{
	json_t *o = json_object();

	json_object_set_new(o, "type", json_string(type));
	json_object_set_new(o, "run", json_string(r->id));
	json_object_set_new(o, "job", r->has_job ? json_integer(r->job) : json_null());
	return o;
}

static void
set_time(json_t *o, int64_t ms)
{
	char t[80];

	iso_time(ms, t);
	json_object_set_new(o, "time", json_string(t));
}

/* A new line object stamped with a time. */
static json_t *
line_at(const run *r, const char *type, int64_t ms)
{
	json_t *o = line_new(r, type);

	set_time(o, ms);
	return o;
}

/* Embed JSON text as JSON, or as a string when it does not parse. */
static json_t *
embed(ctx *c, const run *r, const char *what, const char *text)
{
	json_error_t je;
	json_t *v;

	if (text == NULL)
		return json_null();
	if ((v = json_loads(text, JSON_DECODE_ANY, &je)) != NULL)
		return v;
	c->host->log(c->ins, LOOM_LOG_WARN, "run %s: %s are not JSON (%s); kept as a string",
	             r->id, what, je.text);
	return json_string(text);
}

/* Write a line and drop the object. */
static int
put_line(ctx *c, run *r, json_t *o)
{
	char *text = json_dumps(o, JSON_COMPACT);
	int rv = 0;

	json_decref(o);
	if (text == NULL)
		return LOOM_ENOMEM;
	if (fputs(text, r->fp) == EOF || putc('\n', r->fp) == EOF) {
		loom_log_limited(c->host, c->ins, LOOM_LOG_ERROR, "cannot write %s: %s", r->path,
		                 strerror(errno));
		clearerr(r->fp);
		rv = LOOM_EIO;
	}
	free(text);
	return rv;
}

static int
put_metric(ctx *c, run *r, const loom_metric_point *pt)
{
	json_t *o = line_new(r, "metric");

	json_object_set_new(o, "name", json_string(pt->name));
	json_object_set_new(o, "step", json_integer(pt->step));
	json_object_set_new(o, "epoch", json_integer(pt->epoch));
	json_object_set_new(o, "scope",
	                    json_string(pt->scope < 3 ? scope_names[pt->scope] : "step"));
	set_time(o, pt->wall_ms);
	json_object_set_new(o, "wall_ms", json_integer(pt->wall_ms));
	if (isfinite(pt->value)) {
		json_object_set_new(o, "value", json_real(pt->value));
	} else {
		json_object_set_new(o, "value", json_null());
		json_object_set_new(o, "nonfinite",
		                    json_string(isnan(pt->value) ? "nan"
		                                : pt->value > 0  ? "inf"
		                                                 : "-inf"));
	}
	return put_line(c, r, o);
}

/* ------------------------------------------------------------------ ops */

static int
jl_run_begin(void *p, const loom_run_info *info)
{
	ctx *c = p;
	run *r;
	json_t *o;
	int rv;

	if (info == NULL)
		return LOOM_EINVAL;
	if ((rv = get_run(c, info->run_id, &r)) != 0)
		return rv;
	r->job = info->job_id;
	r->has_job = true;
	o = line_at(r, "run_begin", c->host->clock_wall_ms());
	json_object_set_new(o, "name", info->name ? json_string(info->name) : json_null());
	json_object_set_new(o, "user", info->user ? json_string(info->user) : json_null());
	json_object_set_new(o, "started_ms", json_integer(info->started_ms));
	json_object_set_new(o, "params", embed(c, r, "params", info->params_json));
	json_object_set_new(o, "lineage", embed(c, r, "lineage", info->lineage_json));
	return put_line(c, r, o);
}

static int
jl_log_metrics(void *p, const char *run_id, const loom_metric_point *pts, size_t n)
{
	ctx *c = p;
	run *r;
	int rv;

	if (pts == NULL && n > 0)
		return LOOM_EINVAL;
	if ((rv = get_run(c, run_id, &r)) != 0)
		return rv;
	for (size_t i = 0; i < n; i++) {
		if (pts[i].name == NULL) {
			c->host->log(c->ins, LOOM_LOG_WARN,
			             "run %s: a metric point without a name was skipped", run_id);
			continue;
		}
		if ((rv = put_metric(c, r, &pts[i])) != 0)
			return rv;
	}
	return 0;
}

static int
jl_run_end(void *p, const char *run_id, const char *status, int64_t ended_ms)
{
	ctx *c = p;
	size_t at = 0;
	run *r;
	json_t *o;
	int rv, r2;

	if ((rv = get_run(c, run_id, &r)) != 0)
		return rv;
	o = line_at(r, "run_end", ended_ms);
	json_object_set_new(o, "status", json_string(status ? status : "completed"));
	json_object_set_new(o, "ended_ms", json_integer(ended_ms));
	rv = put_line(c, r, o);
	find_run(c, run_id, &at);
	r2 = close_run(c, at);
	return rv ? rv : r2;
}

static int
jl_log_params(void *p, const char *run_id, const char *params_json)
{
	ctx *c = p;
	run *r;
	json_t *o;
	int rv;

	if ((rv = get_run(c, run_id, &r)) != 0)
		return rv;
	o = line_at(r, "params", c->host->clock_wall_ms());
	json_object_set_new(o, "params", embed(c, r, "params", params_json));
	return put_line(c, r, o);
}

static int
jl_set_tag(void *p, const char *run_id, const char *key, const char *value)
{
	ctx *c = p;
	run *r;
	json_t *o;
	int rv;

	if (key == NULL)
		return LOOM_EINVAL;
	if ((rv = get_run(c, run_id, &r)) != 0)
		return rv;
	o = line_at(r, "tag", c->host->clock_wall_ms());
	json_object_set_new(o, "key", json_string(key));
	json_object_set_new(o, "value", value ? json_string(value) : json_null());
	return put_line(c, r, o);
}

static int
jl_log_artifact(void *p, const char *run_id, const loom_artifact *a)
{
	ctx *c = p;
	run *r;
	json_t *o;
	int rv;

	if (a == NULL || a->name == NULL)
		return LOOM_EINVAL;
	if ((rv = get_run(c, run_id, &r)) != 0)
		return rv;
	o = line_at(r, "artifact", c->host->clock_wall_ms());
	json_object_set_new(o, "name", json_string(a->name));
	json_object_set_new(o, "ref", a->ref ? json_string(a->ref) : json_null());
	json_object_set_new(o, "sha256", a->sha256 ? json_string(a->sha256) : json_null());
	json_object_set_new(o, "bytes", json_integer((json_int_t)a->bytes));
	return put_line(c, r, o);
}

static int
jl_flush(void *p)
{
	ctx *c = p;
	int rv = 0, r1;

	for (size_t i = 0; i < c->n_runs; i++)
		if ((r1 = flush_run(c, c->runs[i])) != 0 && rv == 0)
			rv = r1;
	return rv;
}

static int
jl_init(loom_instance *ins, const loom_host *host, void *p)
{
	ctx *c = p;

	c->host = host;
	c->ins = ins;
	c->root = c->dir ? c->dir : host->state_dir(ins);
	if (c->root == NULL) {
		host->log(ins, LOOM_LOG_ERROR, "no state directory for the .jsonl files: set \"dir\"");
		return LOOM_ECONFIG;
	}
	host->log(ins, LOOM_LOG_DEBUG, "JSON lines under %s%s", c->root,
	          c->fsync ? ", fsync on flush" : "");
	return mkdir_p(c, c->root);
}

static void
jl_fini(void *p)
{
	ctx *c = p;

	while (c->n_runs > 0)
		(void)close_run(c, c->n_runs - 1);
	free(c->runs);
	c->runs = NULL;
	c->cap_runs = 0;
}

static const loom_tracker_ops ops = {
	.size = sizeof(loom_tracker_ops),
	.caps = 0,
	.run_begin = jl_run_begin,
	.log_metrics = jl_log_metrics,
	.run_end = jl_run_end,
	.log_params = jl_log_params,
	.log_artifact = jl_log_artifact,
	.set_tag = jl_set_tag,
	.flush = jl_flush,
};

LOOM_PLUGIN_DEFINE(tracker_jsonl,
                   .kind = LOOM_KIND_TRACKER,
                   .name = "tracker-jsonl",
                   .version = "1.0.0",
                   .description = "runs as JSON lines, one file per run",
                   .config = config,
                   .ctx_size = sizeof(ctx),
                   .init = jl_init,
                   .fini = jl_fini,
                   .ops = &ops)

/* tracker-tensorboard — metric points as TensorBoard event files, written by
 * hand: no protobuf or TensorFlow library.
 *
 * Layout: <dir>/<run_id>/events.out.tfevents.<unix seconds>.<hostname>[.N]
 * Every run_begin starts a new file in the run's directory (a run resumed
 * after a pause gets a second file beside the first; TensorBoard reads every
 * event file of a directory as one run).  ".N" is added only when a file of
 * that name already exists (a pause and resume within one second).  A new
 * file rather than an append because the old file's tail may be a record
 * cut short by a crash, which would hide everything appended after it.
 *
 * Tags: a step-scope point is tagged with the metric's name as given
 * ("train_loss"); epoch- and final-scope points get "epoch/" and "final/"
 * in front ("epoch/val_loss", "final/test_mae"), because the engine logs
 * some names (train_loss) at both step and epoch scope and TensorBoard
 * would draw the two series as one.  TensorBoard groups tags by the part
 * before the '/', so the epoch and final values get sections of their own.
 * The step of every event is the point's global training step, so epoch
 * charts line up with step charts; wall_time is the point's wall_ms.
 * Values are stored as float (simple_value): NaN and ±Inf stay as they are.
 *
 * The format (references: tensorflow/core/lib/io/record_writer.cc,
 * tensorflow/core/util/event.proto, tensorflow/core/framework/summary.proto):
 * each record is uint64 LE length, uint32 LE masked CRC-32C of those eight
 * bytes, the data, uint32 LE masked CRC-32C of the data.  The data is an
 * Event message: 1 wall_time (double), 2 step (int64), 3 file_version
 * (string, "brain.Event:2", first event of every file), 5 summary
 * (Summary: repeated 1 value = Value { 1 tag string, 2 simple_value float }).
 *
 * Events are buffered per run and written when the buffer passes
 * flush_bytes, and on flush, run_end and fini. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <loom/tracker.h>

/* Buffered bytes above which a write error drops the buffer instead of
 * keeping it for a retry, so a full disk cannot exhaust memory. */
#define KEEP_MAX ((size_t)64 << 20)

typedef struct run {
	char *id;
	char *path;          /* the event file being written */
	int fd;
	unsigned char *buf;  /* encoded records not yet written */
	size_t len, cap;
} run;

typedef struct ctx {
	/* settings */
	const char *dir;
	uint64_t flush_bytes;
	/* state */
	const loom_host *host;
	loom_instance *ins;
	const char *root;    /* dir, or the instance's state directory */
	char hostname[256];
	run **runs;          /* open runs */
	size_t n_runs, cap_runs;
} ctx;

static const loom_config_entry config[] = {
	{LOOM_CONFIG_PATH, 0, "dir", NULL, offsetof(ctx, dir),
	 "directory of the runs' event files (default: the instance's state directory)", 0, 0,
	 NULL, {NULL, NULL}},
	{LOOM_CONFIG_SIZE, LOOM_CONFIG_RANGE, "flush_bytes", "64K", offsetof(ctx, flush_bytes),
	 "buffered bytes per run that trigger a write", 0, 1 << 30, NULL, {NULL, NULL}},
	LOOM_CONFIG_END,
};

/* ------------------------------------------------------------------ CRC-32C */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void
crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_table[i] = c;
	}
}

/* CRC-32C (Castagnoli), reflected, as record_writer.cc's crc32c::Value. */
static uint32_t
crc32c(const unsigned char *p, size_t n)
{
	uint32_t c = 0xFFFFFFFFu;
	while (n--)
		c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
	return c ^ 0xFFFFFFFFu;
}

static uint32_t
masked_crc(const unsigned char *p, size_t n)
{
	uint32_t c = crc32c(p, n);
	return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

/* ------------------------------------------------------------------ encoding */

/* Protobuf wire-format writers into a small fixed buffer; callers size it. */
static size_t
put_varint(unsigned char *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (unsigned char)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (unsigned char)v;
	return n;
}

static void
put_le(unsigned char *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static int
reserve(run *r, size_t more)
{
	size_t cap;
	unsigned char *nb;

	if (r->len + more <= r->cap)
		return 0;
	cap = r->cap ? r->cap : 4096;
	while (cap < r->len + more)
		cap *= 2;
	if ((nb = realloc(r->buf, cap)) == NULL)
		return LOOM_ENOMEM;
	r->buf = nb;
	r->cap = cap;
	return 0;
}

/* Append one TFRecord holding data to the run's buffer. */
static int
append_record(run *r, const unsigned char *data, size_t n)
{
	unsigned char *p;
	int rv;

	if ((rv = reserve(r, n + 16)) != 0)
		return rv;
	p = r->buf + r->len;
	put_le(p, n, 8);
	put_le(p + 8, masked_crc(p, 8), 4);
	memcpy(p + 12, data, n);
	put_le(p + 12 + n, masked_crc(data, n), 4);
	r->len += n + 16;
	return 0;
}

/* Event header: wall_time (field 1, fixed64) and step (field 2, varint). */
static size_t
put_event_head(unsigned char *p, double wall_time, int64_t step)
{
	uint64_t bits;
	size_t n = 0;

	memcpy(&bits, &wall_time, sizeof bits);
	p[n++] = 0x09;
	put_le(p + n, bits, 8);
	n += 8;
	p[n++] = 0x10;
	n += put_varint(p + n, (uint64_t)step);
	return n;
}

static int
append_file_version(run *r, double wall_time)
{
	static const char version[] = "brain.Event:2";
	unsigned char ev[64];
	size_t n = put_event_head(ev, wall_time, 0);

	ev[n++] = 0x1a;
	ev[n++] = (unsigned char)(sizeof version - 1);
	memcpy(ev + n, version, sizeof version - 1);
	n += sizeof version - 1;
	return append_record(r, ev, n);
}

static const char *const scope_prefix[] = {"", "epoch/", "final/"};

static size_t
varint_len(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* One Event with a one-value Summary for a point. */
static int
append_point(run *r, const loom_metric_point *pt)
{
	const char *prefix = pt->scope < 3 ? scope_prefix[pt->scope] : "";
	size_t plen = strlen(prefix), nlen = strlen(pt->name), tlen = plen + nlen;
	/* Value = tag (key, length, text) + simple_value (key, 4 bytes);
	 * Summary = the Value as field 1; Event head at most 20 bytes. */
	size_t vlen = 1 + varint_len(tlen) + tlen + 5;
	size_t slen = 1 + varint_len(vlen) + vlen;
	size_t need = 20 + 1 + varint_len(slen) + slen, n;
	unsigned char stack[512], *ev = stack;
	float f = (float)pt->value;
	uint32_t fbits;
	int rv;

	if (need > sizeof stack && (ev = malloc(need)) == NULL)
		return LOOM_ENOMEM;
	n = put_event_head(ev, (double)pt->wall_ms / 1000.0, pt->step);
	ev[n++] = 0x2a;                          /* Event.summary */
	n += put_varint(ev + n, slen);
	ev[n++] = 0x0a;                          /* Summary.value */
	n += put_varint(ev + n, vlen);
	ev[n++] = 0x0a;                          /* Value.tag */
	n += put_varint(ev + n, tlen);
	memcpy(ev + n, prefix, plen);
	memcpy(ev + n + plen, pt->name, nlen);
	n += tlen;
	ev[n++] = 0x15;                          /* Value.simple_value */
	memcpy(&fbits, &f, sizeof fbits);
	put_le(ev + n, fbits, 4);
	n += 4;
	rv = append_record(r, ev, n);
	if (ev != stack)
		free(ev);
	return rv;
}

/* ------------------------------------------------------------------ files */

/* A run id names a directory: one non-empty path component. */
static int
check_run_id(ctx *c, const char *id)
{
	if (id == NULL || *id == '\0' || strcmp(id, ".") == 0 || strcmp(id, "..") == 0 ||
	    strlen(id) > 200 || strpbrk(id, "/\\") != NULL) {
		c->host->log(c->ins, LOOM_LOG_ERROR,
		             "run id \"%s\" cannot name a directory: use a non-empty name "
		             "without '/' (like \"job-42\")",
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
	if (rv == 0) {
		struct stat st;
		if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
			c->host->log(c->ins, LOOM_LOG_ERROR,
			             "%s is not a directory: remove what is there or set \"dir\" "
			             "to another place",
			             path);
			rv = LOOM_EIO;
		}
	}
	free(tmp);
	return rv;
}

/* Write out the run's buffer.  On failure the unwritten bytes stay for the
 * next attempt, up to KEEP_MAX. */
static int
write_out(ctx *c, run *r)
{
	size_t off = 0;

	while (off < r->len) {
		ssize_t w = write(r->fd, r->buf + off, r->len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = w < 0 ? errno : EIO;
			memmove(r->buf, r->buf + off, r->len - off);
			r->len -= off;
			loom_log_limited(c->host, c->ins, LOOM_LOG_ERROR, "cannot write %s: %s%s", r->path,
			                 strerror(e),
			                 r->len > KEEP_MAX ? " (buffered events dropped)" : "");
			if (r->len > KEEP_MAX)
				r->len = 0;
			return LOOM_EIO;
		}
		off += (size_t)w;
	}
	r->len = 0;
	return 0;
}

/* Open a new event file for r in its run directory. */
static int
open_file(ctx *c, run *r)
{
	int64_t now = c->host->clock_wall_ms();
	char *dir = NULL, *path = NULL;
	int rv, fd = -1;

	if (asprintf(&dir, "%s/%s", c->root, r->id) < 0)
		return LOOM_ENOMEM;
	if ((rv = mkdir_p(c, dir)) != 0)
		goto out;
	for (int i = 0; i < 1000 && fd < 0; i++) {
		free(path);
		path = NULL;
		if ((i == 0 ? asprintf(&path, "%s/events.out.tfevents.%" PRId64 ".%s", dir,
		                       now / 1000, c->hostname)
		            : asprintf(&path, "%s/events.out.tfevents.%" PRId64 ".%s.%d", dir,
		                       now / 1000, c->hostname, i)) < 0) {
			rv = LOOM_ENOMEM;
			goto out;
		}
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0666);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0) {
		loom_log_limited(c->host, c->ins, LOOM_LOG_ERROR, "cannot create %s: %s",
		                 path, strerror(errno));
		rv = LOOM_EIO;
		goto out;
	}
	free(r->path);
	r->path = path;
	path = NULL;
	r->fd = fd;
	rv = append_file_version(r, (double)now / 1000.0);
out:
	free(path);
	free(dir);
	return rv;
}

static void
run_free(run *r)
{
	if (r->fd >= 0)
		close(r->fd);
	free(r->id);
	free(r->path);
	free(r->buf);
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

/* The open run, or a new one with a fresh event file. */
static int
get_run(ctx *c, const char *id, run **out)
{
	run *r;
	int rv;

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
	if ((r = calloc(1, sizeof *r)) == NULL || (r->id = strdup(id)) == NULL) {
		free(r);
		return LOOM_ENOMEM;
	}
	r->fd = -1;
	if ((rv = open_file(c, r)) != 0) {
		run_free(r);
		return rv;
	}
	c->runs[c->n_runs++] = r;
	*out = r;
	return 0;
}

/* Write out and forget a run. */
static int
close_run(ctx *c, size_t at)
{
	run *r = c->runs[at];
	int rv = write_out(c, r);

	if (close(r->fd) != 0 && rv == 0) {
		loom_log_limited(c->host, c->ins, LOOM_LOG_ERROR, "cannot write %s: %s", r->path,
		                 strerror(errno));
		rv = LOOM_EIO;
	}
	r->fd = -1;
	run_free(r);
	c->runs[at] = c->runs[--c->n_runs];
	return rv;
}

/* ------------------------------------------------------------------ ops */

static int
tb_run_begin(void *p, const loom_run_info *info)
{
	ctx *c = p;
	size_t at;
	run *r;

	if (info == NULL)
		return LOOM_EINVAL;
	/* A run_begin for a run still open (no run_end seen): start its new
	 * file after writing out the old one. */
	if (find_run(c, info->run_id, &at) != NULL)
		(void)close_run(c, at);
	return get_run(c, info->run_id, &r);
}

static int
tb_log_metrics(void *p, const char *run_id, const loom_metric_point *pts, size_t n)
{
	ctx *c = p;
	run *r;
	int rv;

	/* Points for a run without run_begin (a daemon restarted mid-run) open
	 * it rather than being lost. */
	if (pts == NULL && n > 0)
		return LOOM_EINVAL;
	if ((rv = get_run(c, run_id, &r)) != 0)
		return rv;
	for (size_t i = 0; i < n; i++) {
		if (pts[i].name == NULL || pts[i].name[0] == '\0') {
			c->host->log(c->ins, LOOM_LOG_WARN,
			             "run %s: a metric point without a name was skipped", run_id);
			continue;
		}
		if ((rv = append_point(r, &pts[i])) != 0)
			return rv;
	}
	if (r->len >= c->flush_bytes)
		return write_out(c, r);
	return 0;
}

static int
tb_run_end(void *p, const char *run_id, const char *status, int64_t ended_ms)
{
	ctx *c = p;
	size_t at;

	(void)status;
	(void)ended_ms;
	if (run_id == NULL || find_run(c, run_id, &at) == NULL)
		return 0; /* nothing open: nothing to write */
	return close_run(c, at);
}

static int
tb_flush(void *p)
{
	ctx *c = p;
	int rv = 0, r1;

	for (size_t i = 0; i < c->n_runs; i++)
		if ((r1 = write_out(c, c->runs[i])) != 0 && rv == 0)
			rv = r1;
	return rv;
}

static int
tb_init(loom_instance *ins, const loom_host *host, void *p)
{
	ctx *c = p;
	int rv;

	c->host = host;
	c->ins = ins;
	pthread_once(&crc_once, crc_init);
	c->root = c->dir ? c->dir : host->state_dir(ins);
	if (c->root == NULL) {
		host->log(ins, LOOM_LOG_ERROR,
		          "no state directory for the event files: set \"dir\"");
		return LOOM_ECONFIG;
	}
	if ((rv = mkdir_p(c, c->root)) != 0)
		return rv;
	if (gethostname(c->hostname, sizeof c->hostname - 1) != 0 || c->hostname[0] == '\0')
		strcpy(c->hostname, "localhost");
	/* The host name becomes part of a file name. */
	for (char *s = c->hostname; *s; s++)
		if (*s == '/')
			*s = '_';
	host->log(ins, LOOM_LOG_DEBUG, "TensorBoard event files under %s", c->root);
	return 0;
}

static void
tb_fini(void *p)
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
	.run_begin = tb_run_begin,
	.log_metrics = tb_log_metrics,
	.run_end = tb_run_end,
	.flush = tb_flush,
};

LOOM_PLUGIN_DEFINE(tracker_tensorboard,
                   .kind = LOOM_KIND_TRACKER,
                   .name = "tracker-tensorboard",
                   .version = "1.0.0",
                   .description = "metrics as TensorBoard event files",
                   .config = config,
                   .ctx_size = sizeof(ctx),
                   .init = tb_init,
                   .fini = tb_fini,
                   .ops = &ops)

/* hello-exporter — an example Loom plugin: exports a run as a Markdown
 * summary (its metrics and the shapes of its weights).
 *
 * It builds out of tree against the installed SDK with nothing else:
 *
 *   cc -shared -fPIC -o hello-exporter.so hello-exporter.c \
 *       $(pkg-config --cflags --libs loom)
 *
 * and loads with a loomd.conf entry such as
 *
 *   plugin_path = [ "/path/to/the/directory/of/hello-exporter.so" ];
 *   plugins = ( { instance = "hello"; module = "hello-exporter";
 *                 config = { title = "Nightly run"; }; } );
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <loom/exporter.h>

/* The instance context: the host fills the settings from the config map
 * below before init is called. */
struct hello {
	const char *title;   /* "title" */
	bool tensors;        /* "tensors" */
	const loom_host *host;
	loom_instance *ins;
};

static const loom_config_entry config[] = {
	{LOOM_CONFIG_STRING, 0, "title", "Loom run", offsetof(struct hello, title),
	 "the heading of the summary", 0, 0, NULL, {NULL, NULL}},
	{LOOM_CONFIG_BOOL, 0, "tensors", "true", offsetof(struct hello, tensors),
	 "list the model's tensors", 0, 0, NULL, {NULL, NULL}},
	LOOM_CONFIG_END,
};

static int
hello_init(loom_instance *ins, const loom_host *host, void *p)
{
	struct hello *h = p;
	h->host = host;
	h->ins = ins;
	host->log(ins, LOOM_LOG_INFO, "hello from %s, titling summaries \"%s\"",
	          host->instance_name(ins), h->title);
	return 0;
}

/* printf into the sink. */
static int
out(const loom_export_sink *sink, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n < 0)
		return LOOM_EINVAL;
	return sink->write(sink->arg, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static int
hello_export(void *p, const loom_export_source *src, const loom_export_sink *sink)
{
	struct hello *h = p;
	int rv;

	if ((rv = out(sink, "# %s: %s\n\nrun %s (job %lld), %s\n", h->title,
	              src->name ? src->name : "unnamed", src->run_id ? src->run_id : "-",
	              (long long)src->job_id, src->state ? src->state : "unknown")) != 0)
		return rv;
	if (src->metrics_json &&
	    (rv = out(sink, "\n## Metrics\n\n```json\n%s\n```\n", src->metrics_json)) != 0)
		return rv;
	if (!h->tensors || src->n_tensors == 0)
		return 0;
	if ((rv = out(sink, "\n## Tensors\n\n| name | dtype | shape |\n|---|---|---|\n")) != 0)
		return rv;
	for (size_t i = 0; i < src->n_tensors; i++) {
		const loom_tensor *t = &src->tensors[i];
		char shape[128] = "";
		for (uint32_t d = 0; d < t->ndim && d < LOOM_TENSOR_MAX_DIMS; d++) {
			size_t l = strlen(shape);
			snprintf(shape + l, sizeof shape - l, "%s%lld", d ? "×" : "",
			         (long long)t->dims[d]);
		}
		if ((rv = out(sink, "| %s | %s | %s |\n", t->name, loom_dtype_name(t->dtype), shape)) != 0)
			return rv;
	}
	return 0;
}

static const loom_exporter_ops ops = {
	.size = sizeof(loom_exporter_ops),
	.format = "hello-markdown",
	.extension = ".md",
	.media_type = "text/markdown",
	.export_run = hello_export,
};

LOOM_PLUGIN_DEFINE(hello_exporter,
                   .kind = LOOM_KIND_EXPORTER,
                   .name = "hello-exporter",
                   .version = "1.0.0",
                   .description = "example: a run as a Markdown summary",
                   .config = config,
                   .ctx_size = sizeof(struct hello),
                   .init = hello_init,
                   .ops = &ops)

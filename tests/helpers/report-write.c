/* report-write: a run's output directory (or several, compared) as an
 * HTML report, through the exporter-report plugin loaded by the host
 * loader from $LOOM_PLUGIN_PATH — what `loomctl report` will do through
 * loomd, without a daemon.  For tests/integration/report.sh.
 *
 *   report-write OUT.html DIR                    one run
 *   report-write OUT.html DIR1 DIR2 ...          a comparison
 *
 * A run is named after its directory; LOOM_REPORT_RUN_JSON, when set, is
 * the first run's record (times, resources).  Exit 0, or 1 with a message. */
#include "config.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/loom.h>

#include "host/core/conf.h"
#include "host/exports/export.h"
#include "host/core/plugins.h"
#include "host/core/util.h"

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int
file_write(void *arg, const void *data, size_t len)
{
	return fwrite(data, 1, len, arg) == len ? 0 : LOOM_EIO;
}

static int
open_plugin(loomi_plugins *reg, loomi_doc *doc, const char *tmp, loom_instance **ins)
{
	const char *path = getenv("LOOM_PLUGIN_PATH");
	const char *dirs[1] = {path};
	static const char text[] =
		"plugins = ( { instance = \"report\"; module = \"exporter-report\"; } );\n";
	loomi_strv errs = {0};
	loomi_plugin_conf pc;
	char *err = NULL;
	int rv;

	if (path == NULL) {
		fprintf(stderr, "report-write: set LOOM_PLUGIN_PATH to the directory of "
		                "exporter-report.so\n");
		return 1;
	}
	if (loomi_plugins_init(reg, dirs, 1, tmp) != 0 ||
	    loomi_doc_load_string(doc, text, "report-write", &errs) != 0) {
		fprintf(stderr, "report-write: cannot set up the plugin registry\n");
		return 1;
	}
	pc.instance = (char *)"report";
	pc.module = (char *)"exporter-report";
	pc.node = json_array_get(json_object_get(doc->root, "plugins"), 0);
	pc.config = json_object_get(pc.node, "config");
	if ((rv = loomi_instance_create(reg, doc, &pc, ins, &errs)) != 0 ||
	    (rv = loomi_instance_start(*ins, &err)) != 0) {
		fprintf(stderr, "report-write: %s\n", err ? err : loomi_strv_join(&errs, "; "));
		return 1;
	}
	loomi_strv_free(&errs);
	return 0;
}

static int
write_report(loom_instance *ins, loomi_export_run **runs, int n, const char *out)
{
	const loom_exporter_ops *ops;
	const loom_export_source **srcs = calloc((size_t)n, sizeof *srcs);
	void *ctx;
	FILE *f;
	int rv;

	if (loomi_host_services()->instance_ops(ins, "report", LOOM_KIND_EXPORTER,
	                                        (const void **)&ops, &ctx) != 0) {
		fprintf(stderr, "report-write: no exporter instance\n");
		return 1;
	}
	if ((f = fopen(out, "wb")) == NULL) {
		perror(out);
		return 1;
	}
	loom_export_sink sink = {f, file_write};
	for (int i = 0; i < n; i++)
		srcs[i] = loomi_export_source(runs[i]);
	rv = n == 1 ? ops->export_run(ctx, srcs[0], &sink)
	            : ops->export_compare(ctx, srcs, (size_t)n, &sink);
	free(srcs);
	if (fclose(f) != 0 && rv == 0)
		rv = LOOM_EIO;
	if (rv != 0) {
		fprintf(stderr, "report-write: %s: %s\n", out, loom_strerror(rv));
		return 1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	loomi_export_run **runs;
	loomi_plugins reg;
	loomi_doc doc;
	loom_instance *ins = NULL;
	char tmp[] = "/tmp/report-write.XXXXXX";
	int status = 1, n = argc - 2;

	if (argc < 3) {
		fprintf(stderr, "usage: report-write OUT.html RUN_DIR [RUN_DIR...]\n");
		return 2;
	}
	runs = calloc((size_t)n, sizeof *runs);
	for (int i = 0; i < n; i++) {
		char *err = NULL, *id;
		const char *dir = argv[i + 2], *base = strrchr(dir, '/');
		if (loomi_export_load(dir, &runs[i], &err) != 0) {
			fprintf(stderr, "report-write: %s\n", err);
			free(err);
			goto out;
		}
		base = base ? base + 1 : dir;
		id = loomi_strfmt("run-%d", i + 1);
		loomi_export_set_run(runs[i], id, i + 1, base, "completed", NULL,
		                     i == 0 ? getenv("LOOM_REPORT_RUN_JSON") : NULL);
		free(id);
	}
	if (mkdtemp(tmp) == NULL) {
		perror("mkdtemp");
		goto out;
	}
	if (open_plugin(&reg, &doc, tmp, &ins) == 0)
		status = write_report(ins, runs, n, argv[1]);
	loomi_plugins_fini(&reg);
	loomi_doc_free(&doc);
	nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
out:
	for (int i = 0; i < n; i++)
		loomi_export_free(runs[i]);
	free(runs);
	return status;
}

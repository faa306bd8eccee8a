/* onnx-export OUT_DIR FILE — a training run's output through exporter-onnx
 * into FILE, the way loomd serves an export: host/exports/export.h gathers the
 * source, the plugin is loaded from $LOOM_TEST_PLUGINS by the host loader.
 * For tests/integration/onnx.sh.  Exit 0, or 1 with the reason on stderr
 * (the plugin's own message comes through the log). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/loom.h>

#include "host/core/conf.h"
#include "host/exports/export.h"
#include "host/core/log.h"
#include "host/core/plugins.h"

static int
to_file(void *arg, const void *data, size_t len)
{
	return fwrite(data, 1, len, arg) == len ? 0 : LOOM_EIO;
}

int
main(int argc, char **argv)
{
	const char *dirs[1] = {getenv("LOOM_TEST_PLUGINS")};
	loomi_plugins reg;
	loomi_doc doc;
	loomi_strv errs = {0};
	loomi_plugin_conf pc = {"onnx", "exporter-onnx", NULL, NULL};
	loomi_export_run *run = NULL;
	loom_instance *ins;
	const loom_exporter_ops *ops;
	char *err = NULL;
	FILE *fp;
	int rv;

	if (argc != 3 || dirs[0] == NULL) {
		fprintf(stderr, "usage: LOOM_TEST_PLUGINS=DIR onnx-export OUT_DIR FILE.onnx\n");
		return 2;
	}
	loomi_log_setup(LOOM_LOG_WARN, LOOMI_LOG_TEXT, NULL, NULL);
	if ((rv = loomi_export_load(argv[1], &run, &err)) != 0) {
		fprintf(stderr, "onnx-export: %s\n", err ? err : loom_strerror(rv));
		free(err);
		return 1;
	}
	if (loomi_plugins_init(&reg, dirs, 1, NULL) != 0 ||
	    loomi_doc_load_string(&doc, "x = 1;", "onnx-export", &errs) != 0) {
		fprintf(stderr, "onnx-export: cannot set up the plugin loader\n");
		return 1;
	}
	pc.node = doc.root;
	if (loomi_instance_create(&reg, &doc, &pc, &ins, &errs) != 0 ||
	    loomi_instance_start(ins, &err) != 0) {
		fprintf(stderr, "onnx-export: cannot start exporter-onnx: %s\n",
		        err ? err : errs.n ? errs.v[0] : "?");
		return 1;
	}
	ops = ins->desc->ops;
	if ((fp = fopen(argv[2], "wb")) == NULL) {
		perror(argv[2]);
		return 1;
	}
	{
		loom_export_sink sink = {fp, to_file};
		rv = ops->export_run(ins->ctx, loomi_export_source(run), &sink);
	}
	if (fclose(fp) != 0 && rv == 0)
		rv = LOOM_EIO;
	if (rv != 0) {
		fprintf(stderr, "onnx-export: the export failed: %s\n", loom_strerror(rv));
		remove(argv[2]);
	}
	loomi_export_free(run);
	loomi_plugins_fini(&reg);
	loomi_doc_free(&doc);
	loomi_strv_free(&errs);
	return rv ? 1 : 0;
}

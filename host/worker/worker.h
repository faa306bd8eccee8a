/* worker.h — what loom-worker's modes share: its plugins (worker.c) and a
 * trained model opened for inference (serve.c), used by --predict and
 * --serve. */
#ifndef LOOM_WORKER_H
#define LOOM_WORKER_H

#include <stdbool.h>

#include <jansson.h>

#include <loom/compute.h>

#include "host/core/conf.h"
#include "host/core/plugins.h"

enum { EXIT_FAILED = 1, EXIT_USAGE = 2 };

/* The plugins of -c FILE (a loomd.conf), or the built-in defaults; the
 * reasons printed on failure (EXIT_FAILED). */
int worker_load_plugins(loomi_plugins *reg, const char *conf_path, loomi_conf *conf,
                        loomi_doc *doc);

/* A model directory opened with the compute plugin that trained it (its
 * job.json's "compute", default "transformer"). */
typedef struct worker_model {
	loomi_plugins reg;
	loomi_conf conf;
	loomi_doc doc;
	const char *conf_path;
	const loom_host *host;
	const loom_compute_ops *ops;
	void *ctx;
	void *model;
	char *info_text;          /* host->alloc'd */
	json_t *info;
} worker_model;

/* 0, or EXIT_FAILED with the reason on stderr. */
int worker_model_open(worker_model *wm, const char *dir, const char *conf_path);
void worker_model_close(worker_model *wm);

/* loom-worker --serve DIR --listen URL (docs/inference.md): the exit status. */
int worker_serve(const char *dir, const char *url, const char *conf_path, unsigned passes);

#endif /* LOOM_WORKER_H */

/* The module table: every service of loomd, in start order (module.h says
 * what a module is and how loomd walks this list).  A new service is a
 * folder under host/ (its Makefile.inc included by host/Makefile.inc) that
 * defines its loomi_module, declared and listed here. */
#include "config.h"

#include "host/server/module.h"

extern const loomi_module loomi_system_module;   /* host/server/system.c */
extern const loomi_module loomi_auth_module;     /* host/server/auth.c */
extern const loomi_module loomi_logs_module;     /* host/logs/ */
extern const loomi_module loomi_alerts_module;   /* host/alerts/ */
extern const loomi_module loomi_tracking_module; /* host/tracking/ */
extern const loomi_module loomi_registry_module; /* host/registry/ */
extern const loomi_module loomi_inference_module; /* host/inference/ */
extern const loomi_module loomi_labeling_module; /* host/labeling/ */
extern const loomi_module loomi_datasets_module; /* host/datasets/ */
extern const loomi_module loomi_deploy_module;   /* host/deploy/ */
extern const loomi_module loomi_configs_module;  /* host/configs/ */
extern const loomi_module loomi_exports_module;  /* host/exports/ */
extern const loomi_module loomi_tasks_module;    /* host/tasks/ */
extern const loomi_module loomi_metrics_module;  /* host/metrics/ */
extern const loomi_module loomi_web_module;      /* host/web/ */

/* Listeners hear events in this order; stop runs backwards, so the tasks
 * (whose workers feed every other module) stop first and the log store,
 * which records everyone's last lines, last. */
const loomi_module *const loomi_modules[] = {
	&loomi_system_module,
	&loomi_auth_module,
	&loomi_metrics_module, /* reads the others' counters; no start or stop */
	&loomi_web_module,
	&loomi_logs_module,
	&loomi_alerts_module,
	&loomi_tracking_module,
	&loomi_registry_module,
	&loomi_inference_module, /* serves the registry's versions */
	&loomi_labeling_module,  /* scores with tasks, reads the registry */
	&loomi_datasets_module,
	&loomi_deploy_module,    /* the rule's checks: predicts with tasks */
	&loomi_configs_module,
	&loomi_exports_module,
	&loomi_tasks_module,
};

const size_t loomi_n_modules = LOOMI_N(loomi_modules);

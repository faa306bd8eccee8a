/* Helpers for the Check suites: temporary directories, files, paths of
 * the build tree, captured log lines. */
#ifndef LOOM_TESTUTIL_H
#define LOOM_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>

#include <check.h>

#include "host/core/plugins.h"

/* A new empty directory under $TMPDIR (or /tmp); remove it with tu_rmrf. */
char *tu_tmpdir(void);
/* rm -rf path. */
void tu_rmrf(const char *path);
/* Write text to dir/name (creating it); returns the path (free it). */
char *tu_write(const char *dir, const char *name, const char *text);
/* An environment variable the test harness sets, or abort the test. */
const char *tu_env(const char *name);
/* Run a suite; returns the process exit status for main. */
int tu_run(Suite *s);

/* One plugin instance loaded through the host loader from
 * $LOOM_TEST_PLUGINS, as loomd would: module under the name instance, with
 * config (the inside of its libconfig group; NULL for none), the document
 * named file in messages. */
typedef struct tu_plugin {
	char *tmp;
	loomi_plugins reg;
	loomi_doc doc;
	bool reg_up, doc_up;
	loom_instance *ins;
} tu_plugin;

/* 0, or the code of a refused create or start with *err (free it) saying
 * why; the test fails if the document itself does not parse.  Close p
 * either way. */
int tu_plugin_open(tu_plugin *p, const char *module, const char *instance, const char *config,
                   const char *file, char **err);
void tu_plugin_close(tu_plugin *p);

/* Capture host log lines (for asserting on messages): "LEVEL WHO: MSG" or
 * "LEVEL MSG" per line.  Safe while other threads log. */
void tu_log_capture(void);
void tu_log_stop(void);
/* Does the captured text contain text? */
bool tu_log_has(const char *text);
/* A snapshot of everything captured (a static buffer, overwritten by the
 * next call). */
const char *tu_log_text(void);

#endif

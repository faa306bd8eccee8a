/* The web UI's static files (web.c): what the module serves and how,
 * exposed for the unit tests. */
#ifndef LOOM_HOST_WEB_H
#define LOOM_HOST_WEB_H

#include <stdbool.h>

/* The Content-Security-Policy of every answer of the web UI. */
extern const char loomi_web_csp[];

/* The Content-Type of a file by its extension; NULL for one not served. */
const char *loomi_web_type(const char *name);

/* Is name one the UI serves: 1-128 letters, digits, '.', '_', '-', not
 * starting with '.', without ".."? */
bool loomi_web_name_ok(const char *name);

#endif /* LOOM_HOST_WEB_H */

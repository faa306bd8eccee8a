/* loomctl logs: a task's log entries. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "loomctl.h"

int
cmd_logs(const ctl *c, int argc, char **argv)
{
	const char *id = NULL;
	bool follow = false;
	long long after = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "--follow") == 0)
			follow = true;
		else if (id == NULL && (id = task_arg(argv[i])) != NULL)
			;
		else
			return EXIT_USAGE;
	}
	if (id == NULL) {
		fprintf(stderr, "loomctl: usage: logs ID [-f]\n");
		return EXIT_USAGE;
	}
	for (;;) {
		char path[128];
		reply r = {0};
		size_t i;
		json_t *l;
		int rv;
		snprintf(path, sizeof path, "/api/v1/training/tasks/%s/logs?after=%lld", id, after);
		if ((rv = http(c, "GET", path, NULL, &r)) != 0)
			return rv;
		if (r.status != 200) {
			rv = refused(c, &r);
			json_decref(r.body);
			return rv;
		}
		json_array_foreach(json_object_get(r.body, "logs"), i, l) {
			if (c->json) {
				json_dumpf(l, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
				putchar('\n');
			} else {
				printf("%s %-5s %s\n", S(l, "time"), S(l, "level"), S(l, "message"));
			}
		}
		fflush(stdout);
		after = json_integer_value(json_object_get(r.body, "next"));
		bool done = json_array_size(json_object_get(r.body, "logs")) == 0 &&
		            final_state(S(r.body, "status"));
		json_decref(r.body);
		if (!follow || done)
			return 0;
		nng_msleep(500);
	}
}

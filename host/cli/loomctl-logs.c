/* loomctl logs: a task's log entries, or loomd's own (--host), filtered by
 * level, time and words, followed (-f) or exported (--format). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "loomctl.h"

#define LOGS_USAGE                                                                          \
	"usage: logs ID [-f] [--level L] [--since T] [--until T] [--grep WORDS] [--limit N]\n" \
	"                 [--format text|jsonl|csv]\n"                                         \
	"       logs --host [--instance NAME] [same options]\n"

/* Append "&key=value" to q, value percent-encoded. */
static void
add_param(char *q, size_t cap, const char *key, const char *value)
{
	size_t n = strlen(q);

	n += (size_t)snprintf(q + n, n < cap ? cap - n : 0, "&%s=", key);
	for (const unsigned char *p = (const unsigned char *)value; *p && n + 4 < cap; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("-._~", *p))
			q[n++] = (char)*p;
		else
			n += (size_t)snprintf(q + n, cap - n, "%%%02X", *p);
	}
	q[n < cap ? n : cap - 1] = '\0';
}

static void
print_entry(const ctl *c, const json_t *l, bool host)
{
	if (c->json) {
		json_dumpf(l, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
		putchar('\n');
	} else if (host) {
		const char *job = json_string_value(json_object_get(l, "job"));
		const char *inst = json_string_value(json_object_get(l, "instance"));
		printf("%s %-5s [%s%s%s] %s\n", S(l, "time"), S(l, "level"), job ? job : "loomd",
		       inst ? ":" : "", inst ? inst : "", S(l, "message"));
	} else {
		printf("%s %-5s %s\n", S(l, "time"), S(l, "level"), S(l, "message"));
	}
}

/* An export: the answer as sent. */
static int
export(const ctl *c, const char *path)
{
	reply r = {0};
	int rv;

	if ((rv = exchange(c, "GET", path, NULL, true, &r)) != 0)
		return rv;
	if (r.status != 200) {
		rv = refused(c, &r);
		json_decref(r.body);
		free(r.text);
		return rv;
	}
	/* an export in the format asked for, byte for byte */
	fwrite(r.text, 1, r.len, term_raw());
	fflush(term_raw());
	free(r.text);
	json_decref(r.body);
	return 0;
}

int
cmd_logs(const ctl *c, int argc, char **argv)
{
	const char *id = NULL, *format = NULL;
	bool follow = false, host = false, noted = false;
	long long after = 0, limit = 0, shown = 0;
	char filters[2048] = "";

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		static const char *const opts[][2] = {
			{"--level", "level"}, {"--since", "since"}, {"--until", "until"},
			{"--grep", "q"},      {"--instance", "instance"},
		};
		bool matched = false;
		for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++) {
			if (strcmp(a, opts[k][0]) == 0) {
				if (++i >= argc) {
					fprintf(stderr, "loomctl: logs: %s needs a value\n", a);
					return EXIT_USAGE;
				}
				add_param(filters, sizeof filters, opts[k][1], argv[i]);
				matched = true;
			}
		}
		if (matched)
			continue;
		if (strcmp(a, "-f") == 0 || strcmp(a, "--follow") == 0) {
			follow = true;
		} else if (strcmp(a, "--host") == 0) {
			host = true;
		} else if (strcmp(a, "--limit") == 0 || strcmp(a, "--format") == 0) {
			if (++i >= argc) {
				fprintf(stderr, "loomctl: logs: %s needs a value\n", a);
				return EXIT_USAGE;
			}
			if (a[2] == 'f') {
				format = argv[i];
			} else {
				if (!number_arg(a, argv[i]))
					return EXIT_USAGE;
				limit = atoll(argv[i]);
			}
		} else if (id == NULL && !host && a[0] != '-') {
			if ((id = task_arg(a)) == NULL)
				return EXIT_USAGE;
		} else {
			fprintf(stderr, "loomctl: logs: unexpected \"%s\"\n" LOGS_USAGE, a);
			return EXIT_USAGE;
		}
	}
	if ((id == NULL) == !host || (id && strstr(filters, "&instance="))) {
		fprintf(stderr, "loomctl: logs: give a task ID or --host (--instance goes with "
		                "--host)\n" LOGS_USAGE);
		return EXIT_USAGE;
	}
	if (format && strcmp(format, "text") != 0 && strcmp(format, "jsonl") != 0 &&
	    strcmp(format, "csv") != 0) {
		fprintf(stderr, "loomctl: logs: --format \"%s\": use text, jsonl or csv\n", format);
		return EXIT_USAGE;
	}
	if (format && follow) {
		fprintf(stderr, "loomctl: logs: -f prints lines as they come; use it without "
		                "--format (or with --json for JSON lines)\n");
		return EXIT_USAGE;
	}

	char base[128];
	if (host)
		snprintf(base, sizeof base, "/api/v1/logs");
	else
		snprintf(base, sizeof base, "/api/v1/training/tasks/%s/logs", id);
	if (format) {
		char path[2400];
		snprintf(path, sizeof path, "%s?format=%s%s", base, format, filters);
		if (limit > 0)
			snprintf(path + strlen(path), sizeof path - strlen(path), "&limit=%lld", limit);
		return export(c, path);
	}
	for (;;) {
		char path[2400];
		reply r = {0};
		size_t i, n;
		json_t *l;
		int rv;
		long long page = limit > 0 ? limit - shown : 1000;

		if (page > 1000)
			page = 1000;
		snprintf(path, sizeof path, "%s?after=%lld&limit=%lld%s", base, after, page, filters);
		if ((rv = http(c, "GET", path, NULL, &r)) != 0)
			return rv;
		if (r.status != 200) {
			rv = refused(c, &r);
			json_decref(r.body);
			return rv;
		}
		if (host && !noted && json_object_get(r.body, "only")) {
			/* not an admin: loomd answers with the lines of one's own tasks */
			fprintf(stderr, "loomctl: logs: loomd's own lines are for admins; these are the "
			                "lines of the tasks you may see\n");
			noted = true;
		}
		json_array_foreach(json_object_get(r.body, "logs"), i, l)
			print_entry(c, l, host);
		fflush(stdout);
		n = json_array_size(json_object_get(r.body, "logs"));
		shown += (long long)n;
		after = json_integer_value(json_object_get(r.body, "next"));
		bool done = (limit > 0 && shown >= limit) ||
		            (n == 0 && !host && final_state(S(r.body, "status")));
		json_decref(r.body);
		if (done)
			return 0;
		if ((long long)n == page)
			continue; /* more pages now */
		if (!follow)
			return 0;
		nng_msleep(500);
	}
}

/* loomctl — the Loom command line, a client of loomd's REST API.
 *
 *   loomctl [--url URL] [--json] [--timeout SECONDS] COMMAND ...
 *
 * The URL comes from --url, then LOOM_URL, then http://127.0.0.1:7420.
 * Exit status: 0 success, 1 the daemon refused the request, 2 bad usage,
 * 3 the daemon cannot be reached. */
#include "config.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>

#include <loom/version.h>

enum {
	EXIT_REFUSED = 1,
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3,
};

#define DEFAULT_URL "http://127.0.0.1:7420"

typedef struct ctl {
	const char *url;
	bool json;
	int timeout_ms;
} ctl;

typedef struct reply {
	int status;
	json_t *body;
} reply;

static void
usage(FILE *fp)
{
	fprintf(fp,
	        "usage: loomctl [--url URL] [--json] [--timeout SECONDS] COMMAND ...\n"
	        "\n"
	        "commands:\n"
	        "  health                 the daemon's state, version and uptime\n"
	        "  plugins [list]         the plugin instances loomd loaded\n"
	        "  plugins show INSTANCE  one instance, with its settings\n"
	        "  version                loomctl's version\n"
	        "\n"
	        "options:\n"
	        "  --url URL        the daemon [$LOOM_URL, else %s]\n"
	        "  --json           print the API's JSON instead of text\n"
	        "  --timeout S      give up after S seconds [10]\n"
	        "\n"
	        "exit status: 0 ok, 1 refused by loomd, 2 bad usage, 3 loomd unreachable\n",
	        DEFAULT_URL);
}

/* One HTTP exchange.  Returns 0 with *out filled, or EXIT_UNREACHABLE
 * after printing why. */
static int
http(const ctl *c, const char *method, const char *path, const char *body, reply *out)
{
	char *full = NULL;
	nng_url *url = NULL;
	nng_http_client *client = NULL;
	nng_http_req *req = NULL;
	nng_http_res *res = NULL;
	nng_aio *aio = NULL;
	void *data;
	size_t len, bl;
	int rv, ret = EXIT_UNREACHABLE;

	/* Parse only the base URL: path is already percent-encoded and must
	 * reach the daemon as it is. */
	if ((rv = nng_url_parse(&url, c->url)) != 0 || strcmp(url->u_scheme, "http") != 0) {
		fprintf(stderr, "loomctl: \"%s\" is not an http:// URL; give --url like %s\n",
		        c->url, DEFAULT_URL);
		ret = EXIT_USAGE;
		goto out;
	}
	bl = strlen(url->u_path);
	while (bl > 0 && url->u_path[bl - 1] == '/')
		bl--;
	if ((full = malloc(bl + strlen(path) + 1)) == NULL)
		goto out;
	memcpy(full, url->u_path, bl);
	strcpy(full + bl, path);
	if ((rv = nng_http_client_alloc(&client, url)) != 0 ||
	    (rv = nng_http_req_alloc(&req, url)) != 0 || (rv = nng_http_res_alloc(&res)) != 0 ||
	    (rv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
		fprintf(stderr, "loomctl: %s\n", nng_strerror(rv));
		goto out;
	}
	nng_http_req_set_method(req, method);
	nng_http_req_set_uri(req, full);
	nng_http_req_set_header(req, "Accept", "application/json");
	if (body) {
		nng_http_req_set_header(req, "Content-Type", "application/json");
		nng_http_req_copy_data(req, body, strlen(body));
	}
	nng_aio_set_timeout(aio, c->timeout_ms);
	nng_http_client_transact(client, req, res, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0) {
		fprintf(stderr,
		        "loomctl: cannot reach loomd at %s: %s; is it running? (start it with "
		        "`loomd -c FILE`, or point --url or LOOM_URL at it)\n",
		        c->url, nng_strerror(rv));
		goto out;
	}
	out->status = nng_http_res_get_status(res);
	nng_http_res_get_data(res, &data, &len);
	out->body = len ? json_loadb(data, len, 0, NULL) : NULL;
	if (len && out->body == NULL) {
		fprintf(stderr, "loomctl: %s%s answered %d with a body that is not JSON; is %s a "
		                "loomd?\n",
		        c->url, full, out->status, c->url);
		ret = EXIT_REFUSED;
		goto out;
	}
	ret = 0;
out:
	if (aio)
		nng_aio_free(aio);
	if (res)
		nng_http_res_free(res);
	if (req)
		nng_http_req_free(req);
	if (client)
		nng_http_client_free(client);
	if (url)
		nng_url_free(url);
	free(full);
	return ret;
}

/* A string field for printing: "-" when absent. */
static const char *
S(const json_t *obj, const char *key)
{
	const char *v = json_string_value(json_object_get(obj, key));
	return v ? v : "-";
}

/* Print an API error and return EXIT_REFUSED. */
static int
refused(const ctl *c, const reply *r)
{
	const char *msg =
		json_string_value(json_object_get(json_object_get(r->body, "error"), "message"));
	if (c->json && r->body)
		json_dumpf(r->body, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER), putchar('\n');
	fprintf(stderr, "loomctl: loomd refused (HTTP %d): %s\n", r->status,
	        msg ? msg : "no message");
	return EXIT_REFUSED;
}

static int
print_json(const reply *r)
{
	json_dumpf(r->body, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	putchar('\n');
	return 0;
}

static int
cmd_health(const ctl *c, int argc, char **argv)
{
	reply r = {0};
	int rv;

	if (argc != 1) {
		fprintf(stderr, "loomctl: health takes no arguments\n");
		return EXIT_USAGE;
	}
	if ((rv = http(c, "GET", "/api/v1/health", NULL, &r)) != 0)
		return rv;
	if (r.status != 200 && r.status != 503)
		rv = refused(c, &r);
	else if (c->json)
		rv = print_json(&r);
	else {
		json_t *b = r.body;
		printf("loomd %s at %s: %s\n", S(b, "version"),
		       c->url, S(b, "status"));
		printf("  pid %lld, up %llds, %lld plugin instance(s), plugin ABI %s\n",
		       (long long)json_integer_value(json_object_get(b, "pid")),
		       (long long)json_integer_value(json_object_get(b, "uptime_s")),
		       (long long)json_integer_value(json_object_get(b, "plugins")),
		       S(b, "abi"));
		printf("  state %s, schema version %lld\n",
		       S(b, "state_dir"),
		       (long long)json_integer_value(
			       json_object_get(json_object_get(b, "database"), "schema_version")));
	}
	if (rv == 0 && r.status == 503)
		rv = EXIT_REFUSED;
	json_decref(r.body);
	return rv;
}

static bool
instance_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64 || !(s[0] >= 'a' && s[0] <= 'z'))
		return false;
	for (; *s; s++) {
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return false;
	}
	return true;
}

static int
cmd_plugins(const ctl *c, int argc, char **argv)
{
	reply r = {0};
	int rv;

	if (argc >= 2 && strcmp(argv[1], "show") == 0) {
		char *path;
		if (argc != 3) {
			fprintf(stderr, "loomctl: usage: plugins show INSTANCE\n");
			return EXIT_USAGE;
		}
		if (!instance_name_ok(argv[2])) {
			fprintf(stderr, "loomctl: \"%s\" is not an instance name (a lower-case letter, "
			                "then lower-case letters, digits, '-' or '_'); loomctl plugins "
			                "lists them\n",
			        argv[2]);
			return EXIT_USAGE;
		}
		/* a checked name needs no escaping */
		path = malloc(strlen(argv[2]) + 32);
		if (path == NULL)
			return EXIT_REFUSED;
		snprintf(path, strlen(argv[2]) + 32, "/api/v1/plugins/%s", argv[2]);
		rv = http(c, "GET", path, NULL, &r);
		free(path);
		if (rv != 0)
			return rv;
		if (r.status != 200)
			rv = refused(c, &r);
		else if (c->json)
			rv = print_json(&r);
		else {
			const char *key;
			json_t *v, *b = r.body;
			printf("%s: %s %s (%s, ABI %s)\n  %s\n  file %s\n",
			       S(b, "instance"),
			       S(b, "name"),
			       S(b, "version"),
			       S(b, "kind"),
			       S(b, "abi"),
			       S(b, "description"),
			       S(b, "path"));
			printf("  settings:\n");
			json_object_foreach(json_object_get(b, "config"), key, v) {
				char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
				printf("    %s = %s\n", key, text ? text : "?");
				free(text);
			}
		}
		json_decref(r.body);
		return rv;
	}
	if (argc > 2 || (argc == 2 && strcmp(argv[1], "list") != 0)) {
		fprintf(stderr, "loomctl: usage: plugins [list] | plugins show INSTANCE\n");
		return EXIT_USAGE;
	}
	if ((rv = http(c, "GET", "/api/v1/plugins", NULL, &r)) != 0)
		return rv;
	if (r.status != 200)
		rv = refused(c, &r);
	else if (c->json)
		rv = print_json(&r);
	else {
		size_t i;
		json_t *p, *list = json_object_get(r.body, "plugins");
		printf("%-16s %-22s %-10s %-10s %s\n", "INSTANCE", "MODULE", "KIND", "VERSION", "ABI");
		json_array_foreach(list, i, p) {
			printf("%-16s %-22s %-10s %-10s %s\n",
			       S(p, "instance"),
			       S(p, "module"),
			       S(p, "kind"),
			       S(p, "version"),
			       S(p, "abi"));
		}
		if (json_array_size(list) == 0)
			printf("(no plugins loaded)\n");
	}
	json_decref(r.body);
	return rv;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"url", required_argument, NULL, 'u'},
		{"json", no_argument, NULL, 'j'},
		{"timeout", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	ctl c = {0};
	const char *env = getenv("LOOM_URL");
	int opt, rv;

	c.url = env && *env ? env : DEFAULT_URL;
	c.timeout_ms = 10000;
	/* '+': stop at the command, so its own options are left to it. */
	while ((opt = getopt_long(argc, argv, "+u:jt:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'u': c.url = optarg; break;
		case 'j': c.json = true; break;
		case 't': {
			char *end;
			double s = strtod(optarg, &end);
			if (*end != '\0' || !(s > 0) || s > 86400) {
				fprintf(stderr, "loomctl: --timeout: \"%s\" is not a number of seconds\n",
				        optarg);
				return EXIT_USAGE;
			}
			c.timeout_ms = (int)(s * 1000);
			break;
		}
		case 'h': usage(stdout); return 0;
		case 'V': printf("loomctl %s\n", LOOM_VERSION_STRING); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[0], "health") == 0)
		rv = cmd_health(&c, argc, argv);
	else if (strcmp(argv[0], "plugins") == 0)
		rv = cmd_plugins(&c, argc, argv);
	else if (strcmp(argv[0], "version") == 0) {
		printf("loomctl %s (plugin ABI %d.%d)\n", LOOM_VERSION_STRING, LOOM_ABI_MAJOR,
		       LOOM_ABI_MINOR);
		rv = 0;
	} else {
		fprintf(stderr, "loomctl: unknown command \"%s\"; see loomctl --help\n", argv[0]);
		rv = EXIT_USAGE;
	}
	return rv;
}

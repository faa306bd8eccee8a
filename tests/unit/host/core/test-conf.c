/* host/conf: loomd.conf, documents, schemas and plugin config maps —
 * the good file, and each way a file can be wrong. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/core/conf.h"
#include "host/core/log.h"
#include "testutil.h"

/* All messages joined, for substring assertions. */
static char *
joined(const loomi_strv *errs)
{
	return loomi_strv_join(errs, "\n");
}

#define ASSERT_HAS(text, needle)                                                          \
	ck_assert_msg(strstr((text), (needle)) != NULL, "expected \"%s\" in:\n%s", (needle),   \
	              (text))

/* Load text as loomd.conf from a temporary file; returns the rv. */
static int
load(const char *text, loomi_conf *conf, loomi_strv *errs, char **dir)
{
	char *path;
	int rv;

	*dir = tu_tmpdir();
	path = tu_write(*dir, "loomd.conf", text);
	rv = loomi_conf_load(conf, path, errs);
	free(path);
	return rv;
}

static void
done(loomi_conf *conf, loomi_strv *errs, char *dir)
{
	loomi_conf_free(conf);
	loomi_strv_free(errs);
	tu_rmrf(dir);
	free(dir);
}

/* ------------------------------------------------------------------ loomd.conf */

START_TEST(good_file)
{
	loomi_conf c;
	loomi_strv errs = {0};
	char *dir, *expect;
	int rv = load("state_dir = \"state\";\n"
	              "plugin_path = [ \"plug\", \"/abs/plugins\" ];\n"
	              "listen = \"127.0.0.1:0\"; server_names = [ \"Loom.Example.org\", \"[::1]\", "
	              "\"10.0.0.5\", \"*\" ];\n"
	              "log = { level = \"debug\"; format = \"json\"; file = \"loomd.log\"; };\n"
	              "bus = { requests = \"tcp://127.0.0.1:7421\"; events = \"ipc:///tmp/e\";\n"
	              "        max_message = \"2M\"; };\n"
	              "plugins = (\n"
	              "  { instance = \"store\"; module = \"storage-local\";\n"
	              "    config = { root = \"/data\"; }; },\n"
	              "  { instance = \"mem\"; module = \"storage-memory\"; }\n"
	              ");\n",
	              &c, &errs, &dir);

	ck_assert_msg(rv == 0, "unexpected errors: %s", joined(&errs));
	ck_assert_uint_eq(errs.n, 0);
	expect = loomi_strfmt("%s/state", dir);
	ck_assert_str_eq(c.state_dir, expect);
	free(expect);
	ck_assert_uint_eq(c.plugin_path.n, 2);
	expect = loomi_strfmt("%s/plug", dir);
	ck_assert_str_eq(c.plugin_path.v[0], expect);
	free(expect);
	ck_assert_str_eq(c.plugin_path.v[1], "/abs/plugins");
	ck_assert_str_eq(c.listen, "127.0.0.1:0");
	/* lower case, an IPv6 address without brackets */
	ck_assert_uint_eq(c.server_names.n, 4);
	ck_assert_str_eq(c.server_names.v[0], "loom.example.org");
	ck_assert_str_eq(c.server_names.v[1], "::1");
	ck_assert_str_eq(c.server_names.v[2], "10.0.0.5");
	ck_assert_str_eq(c.server_names.v[3], "*");
	ck_assert_int_eq(c.log_level, LOOM_LOG_DEBUG);
	ck_assert_int_eq(c.log_format, LOOMI_LOG_JSON);
	expect = loomi_strfmt("%s/loomd.log", dir);
	ck_assert_str_eq(c.log_file, expect);
	free(expect);
	ck_assert_str_eq(c.bus_requests, "tcp://127.0.0.1:7421");
	ck_assert_str_eq(c.bus_events, "ipc:///tmp/e");
	ck_assert_uint_eq(c.bus_max_message, 2u << 20);
	ck_assert_uint_eq(c.n_plugins, 2);
	ck_assert_str_eq(c.plugins[0].instance, "store");
	ck_assert_str_eq(c.plugins[0].module, "storage-local");
	ck_assert_str_eq(json_string_value(json_object_get(c.plugins[0].config, "root")), "/data");
	ck_assert_ptr_null(c.plugins[1].config);
	ck_assert_int_eq(loomi_doc_line(&c.doc, c.plugins[1].node), 10);
	done(&c, &errs, dir);
}
END_TEST

START_TEST(http_group)
{
	loomi_conf c;
	loomi_strv errs = {0};
	char *dir;
	int rv = load("http = { max_head = \"8K\"; max_body = \"2M\"; body_budget = \"64M\";\n"
	              "  max_conns = 100; max_conns_per_client = 10; reserve = 4;\n"
	              "  request_timeout = \"5s\"; idle_timeout = 30; max_ws_message = \"64K\";\n"
	              "  ws_queue = 16; ws_ping_interval = \"250ms\"; ws_idle_timeout = \"2m\"; };\n",
	              &c, &errs, &dir);

	ck_assert_msg(rv == 0, "unexpected errors: %s", joined(&errs));
	ck_assert_uint_eq(c.http.max_head, 8u << 10);
	ck_assert_uint_eq(c.http.max_body, 2u << 20);
	ck_assert_uint_eq(c.http.body_budget, 64u << 20);
	ck_assert_int_eq(c.http.max_conns, 100);
	ck_assert_int_eq(c.http.max_conns_per_client, 10);
	ck_assert_int_eq(c.http.reserve, 4);
	ck_assert_int_eq(c.http.request_timeout_ms, 5000);
	ck_assert_int_eq(c.http.idle_timeout_ms, 30000);
	ck_assert_uint_eq(c.http.max_ws_message, 64u << 10);
	ck_assert_int_eq(c.http.ws_queue, 16);
	ck_assert_int_eq(c.http.ws_ping_interval_ms, 250);
	ck_assert_int_eq(c.http.ws_idle_timeout_ms, 120000);
	done(&c, &errs, dir);
	/* unset: 0, the server's defaults */
	rv = load("# nothing set\n", &c, &errs, &dir);
	ck_assert_int_eq(rv, 0);
	ck_assert_uint_eq(c.http.body_budget, 0);
	ck_assert_int_eq(c.http.max_conns_per_client, 0);
	ck_assert_int_eq(c.http.ws_idle_timeout_ms, 0);
	done(&c, &errs, dir);
}
END_TEST

START_TEST(api_group)
{
	loomi_conf c;
	loomi_strv errs = {0};
	char *dir, *expect, *sock;
	int rv = load("state_dir = \"/srv/loom\";\n"
	              "api = { socket = \"run/api.sock\"; socket_mode = \"0660\";\n"
	              "  tls = { certificate = \"tls/cert.pem\"; key = \"/etc/loom/key.pem\"; }; };\n",
	              &c, &errs, &dir);

	ck_assert_msg(rv == 0, "unexpected errors: %s", joined(&errs));
	ck_assert_int_eq(c.api.socket_mode, 0660);
	/* the socket from the state directory, the files from the config's */
	sock = loomi_conf_api_socket(&c);
	ck_assert_str_eq(sock, "/srv/loom/run/api.sock");
	free(sock);
	expect = loomi_strfmt("%s/tls/cert.pem", dir);
	ck_assert_str_eq(c.api.tls_certificate, expect);
	free(expect);
	ck_assert_str_eq(c.api.tls_key, "/etc/loom/key.pem");
	done(&c, &errs, dir);

	/* defaults: STATE_DIR/loomd.sock, 0600, no TLS; "" turns the socket off */
	rv = load("state_dir = \"/srv/loom\";\n", &c, &errs, &dir);
	ck_assert_int_eq(rv, 0);
	ck_assert_int_eq(c.api.socket_mode, 0600);
	sock = loomi_conf_api_socket(&c);
	ck_assert_str_eq(sock, "/srv/loom/loomd.sock");
	free(sock);
	ck_assert_ptr_null(c.api.tls_certificate);
	ck_assert_ptr_null(c.api.tls_key);
	done(&c, &errs, dir);
	rv = load("api = { socket = \"\"; socket_mode = \"640\"; };\n", &c, &errs, &dir);
	ck_assert_int_eq(rv, 0);
	ck_assert_ptr_null(loomi_conf_api_socket(&c));
	ck_assert_int_eq(c.api.socket_mode, 0640);
	done(&c, &errs, dir);
}
END_TEST

START_TEST(web_group)
{
	loomi_conf c;
	loomi_strv errs = {0};
	char *dir, *want;
	int rv = load("web = { root = \"ui\"; dygraphs = \"/usr/share/javascript/dygraphs\"; };\n",
	              &c, &errs, &dir);

	ck_assert_msg(rv == 0, "unexpected errors: %s", joined(&errs));
	/* a relative root is loomd.conf's directory's */
	want = loomi_path_join(dir, "ui");
	ck_assert_str_eq(c.web_root, want);
	free(want);
	ck_assert_str_eq(c.web_dygraphs, "/usr/share/javascript/dygraphs");
	done(&c, &errs, dir);
	/* unset: NULL, the installed files */
	rv = load("# nothing set\n", &c, &errs, &dir);
	ck_assert_int_eq(rv, 0);
	ck_assert_ptr_null(c.web_root);
	ck_assert_ptr_null(c.web_dygraphs);
	done(&c, &errs, dir);
}
END_TEST

START_TEST(defaults)
{
	loomi_conf c;
	loomi_strv errs = {0};
	char *dir;
	int rv = load("# nothing set\n", &c, &errs, &dir);

	ck_assert_int_eq(rv, 0);
	ck_assert_str_eq(c.state_dir, LOOM_STATE_DIR);
	ck_assert_str_eq(c.listen, "127.0.0.1:7420");
	ck_assert_uint_eq(c.server_names.n, 0); /* the API's default names */
	ck_assert_int_eq(c.log_level, LOOM_LOG_INFO);
	ck_assert_int_eq(c.log_format, LOOMI_LOG_TEXT);
	ck_assert_ptr_null(c.log_file);
	ck_assert_ptr_null(c.bus_requests);
	ck_assert_uint_eq(c.bus_max_message, 1u << 20);
	ck_assert_uint_eq(c.n_plugins, 0);
	ck_assert_uint_eq(c.plugin_path.n, 0);
	/* webhooks to loopback only, no commands */
	ck_assert_uint_eq(c.alerts_webhook_hosts.n, 3);
	ck_assert_str_eq(c.alerts_webhook_hosts.v[0], "127.0.0.1");
	ck_assert_str_eq(c.alerts_webhook_hosts.v[1], "localhost");
	ck_assert_str_eq(c.alerts_webhook_hosts.v[2], "::1");
	ck_assert(!c.alerts_command_actions);
	done(&c, &errs, dir);
	rv = load("alerts = { webhook_hosts = [ \"10.0.0.0/8\" ]; command_actions = true; };\n", &c,
	          &errs, &dir);
	ck_assert_int_eq(rv, 0);
	ck_assert_uint_eq(c.alerts_webhook_hosts.n, 1);
	ck_assert_str_eq(c.alerts_webhook_hosts.v[0], "10.0.0.0/8");
	ck_assert(c.alerts_command_actions);
	done(&c, &errs, dir);
}
END_TEST

/* One bad file and the message it must produce. */
static const struct bad {
	const char *text;
	const char *message;
} bad_files[] = {
	{"listen = \"127.0.0.1:7420\";\nlog = { level = ; };\n", "loomd.conf:2: syntax error"},
	{"\n\nlistne = \"127.0.0.1:1\";\n", "loomd.conf:3: listne: unknown setting (did you mean listen?)"},
	{"log = {\n  levle = \"info\";\n};\n", "loomd.conf:2: log.levle: unknown setting (did you mean level?)"},
	{"alerts = { command_actions = \"yes\"; };\n", "alerts.command_actions"},
	{"alerts = { webhook_hosts = \"10.0.0.0/8\"; };\n", "alerts.webhook_hosts"},
	{"zzzzzz = 1;\n", "zzzzzz: unknown setting; known settings here: state_dir, plugin_path, listen, server_names, auth, data_roots, log, bus, jobs, logs, alerts, http, api, web, datasets, plugins"},
	{"datasets = { prefix = \"../x\"; };\n", "datasets.prefix: \"../x\" is not a key prefix"},
	{"datasets = { storage = \"Store\"; };\n", "datasets.storage: \"Store\" is not an instance name"},
	{"api = { socket_mode = \"rw-rw----\"; };\n", "api.socket_mode: \"rw-rw----\" is not a file mode"},
	{"api = { socket_mode = \"4755\"; };\n", "api.socket_mode: \"4755\" is not a file mode"},
	{"api = { socket_mode = 660; };\n", "api.socket_mode: expected a string"},
	{"api = { socket = \"/tmp/a-very-long-directory-name-for-a-socket/that-goes-on-and-on/and-on-"
	 "further-still/and-further/loomd.sock\"; };\n",
	 "api.socket: \"/tmp/a-very-long-directory-name-for-a-socket/that-goes-on-and-on/and-on-"
	 "further-still/and-further/loomd.sock\" is 108 bytes long, over the 107 a Unix socket's path may have"},
	{"api = { tls = { certificate = \"c.pem\"; }; };\n", "api.tls.key: missing setting"},
	{"api = { tls = { key = \"k.pem\"; }; };\n", "api.tls.certificate: missing setting"},
	{"api = { tls = { certificate = \"\"; key = \"k.pem\"; }; };\n",
	 "api.tls: give both certificate and key"},
	{"api = { tls = { certficate = \"c.pem\"; key = \"k.pem\"; }; };\n", "(did you mean certificate?)"},
	{"web = { rot = \"/x\"; };\n", "web.rot: unknown setting (did you mean root?)"},
	{"web = { root = 3; };\n", "web.root: expected a path (a string), got an integer"},
	{"http = { max_conns = 0; };\n", "http.max_conns: 0 is out of range"},
	{"http = { body_budget = \"1M\"; max_body = \"4M\"; };\n",
	 "http.body_budget: 1048576 bytes is less than http.max_body (4194304)"},
	{"http = { ws_idle_timout = \"1s\"; };\n", "did you mean ws_idle_timeout"},
	{"http = { request_timeout = \"soon\"; };\n", "http.request_timeout: \"soon\" is not a duration"},
	{"listen = 7420;\n", "loomd.conf:1: listen: expected a string, got an integer; it is the API address, \"host:port\""},
	{"log = { level = \"verbose\"; };\n", "log.level: \"verbose\" is not one of error, warn, info, debug, trace"},
	{"log = { level = \"degub\"; };\n", "(did you mean \"debug\"?)"},
	{"log = \"info\";\n", "log: expected a group { ... }, got a string"},
	{"listen = \"localhost\";\n", "listen: \"localhost\": expected \"host:port\""},
	{"listen = \"127.0.0.1:70000\";\n", "the port must be a number from 0 to 65535"},
	{"server_names = [];\n", "loomd.conf:1: server_names: the list is empty, so no client could "
	                         "reach the API"},
	{"server_names = [ \"ok\", \"loom.test:80\" ];\n", "server_names[1]: \"loom.test:80\": give a "
	                                                 "host name (letters, digits, '-', '.') or an "
	                                                 "IP address, without port or scheme"},
	{"server_names = [ \"http://x\" ];\n", "server_names[0]: \"http://x\": give a host name"},
	{"server_names = \"localhost\";\n", "server_names: expected"},
	{"bus = { requests = \"http://x\"; };\n", "bus.requests: \"http://x\" is not a bus address"},
	{"bus = { max_message = 10; };\n", "bus.max_message: 10 is out of range"},
	{"bus = { max_message = \"lots\"; };\n", "bus.max_message: \"lots\" is not a size"},
	{"plugin_path = \"/x\";\n", "plugin_path: expected a list of strings"},
	{"plugin_path = ( \"/x\", 3 );\n", "plugin_path[1]: expected a string, got an integer"},
	{"plugin_path = [ \"/x\", 3 ];\n", "loomd.conf:1: syntax error: mismatched element type in array"},
	{"plugins = ( { instance = \"a\"; } );\n", "loomd.conf:1: plugins[0].module: missing setting (the plugin module to load"},
	{"plugins = ( { instance = \"a\"; module = \"m\"; confg = {}; } );\n", "plugins[0].confg: unknown setting (did you mean config?)"},
	{"plugins = ( { instance = \"a\"; module = \"m\"; config = 3; } );\n", "plugins[0].config: expected a group"},
	{"plugins = ( { instance = \"Bad Name\"; module = \"m\"; } );\n", "plugins[0].instance: \"Bad Name\" is not a valid instance name"},
	{"plugins = ( { instance = \"a\"; module = \"../evil\"; } );\n", "plugins[0].module: \"../evil\" is not a module name"},
	{"plugins = (\n { instance = \"a\"; module = \"m\"; },\n { instance = \"a\"; module = \"n\"; }\n);\n", "loomd.conf:3: plugins[1].instance: \"a\" is already defined at line 2"},
	{"plugins = ( 5 );\n", "plugins[0]: expected a group { ... }, got an integer"},
	{"state_dir = \"\\xff\";\n", "not valid UTF-8"},
	{"state_dir = \"/a\\xc0\\xaf\";\n", "loomd.conf:1: state_dir: the string is not valid UTF-8"},
	{"plugins = ( { instance = \"x\"; module = \"m\"; config = { s = \"\\xed\\xa0\\x80\"; }; } );\n",
	 "s: the string is not valid UTF-8"},
};

START_TEST(bad_file)
{
	const struct bad *b = &bad_files[_i];
	loomi_conf c;
	loomi_strv errs = {0};
	char *dir, *text;
	int rv = load(b->text, &c, &errs, &dir);

	ck_assert_int_eq(rv, LOOM_ECONFIG);
	ck_assert_uint_ge(errs.n, 1);
	text = joined(&errs);
	ASSERT_HAS(text, b->message);
	free(text);
	done(&c, &errs, dir);
}
END_TEST

START_TEST(all_problems_reported)
{
	loomi_conf c;
	loomi_strv errs = {0};
	char *dir, *text;
	int rv = load("listne = 1;\nlog = { level = 3; formt = \"json\"; };\n", &c, &errs, &dir);

	ck_assert_int_eq(rv, LOOM_ECONFIG);
	ck_assert_uint_eq(errs.n, 3);
	text = joined(&errs);
	ASSERT_HAS(text, "loomd.conf:1: listne");
	ASSERT_HAS(text, "loomd.conf:2: log.level: expected a string");
	ASSERT_HAS(text, "log.formt: unknown setting (did you mean format?)");
	free(text);
	done(&c, &errs, dir);
}
END_TEST

START_TEST(missing_file)
{
	loomi_conf c;
	loomi_strv errs = {0};
	int rv = loomi_conf_load(&c, "/nonexistent/loomd.conf", &errs);

	ck_assert_int_eq(rv, LOOM_EIO);
	ck_assert_uint_eq(errs.n, 1);
	ASSERT_HAS(errs.v[0], "/nonexistent/loomd.conf: cannot open the config file");
	loomi_conf_free(&c);
	loomi_strv_free(&errs);
}
END_TEST

START_TEST(include_errors_name_their_file)
{
	loomi_conf c;
	loomi_strv errs = {0};
	char *dir = tu_tmpdir(), *inc, *path, *want;

	inc = tu_write(dir, "extra.conf", "# included\n\n\nlistn = \"127.0.0.1:9\";\n");
	path = tu_write(dir, "loomd.conf", "@include \"extra.conf\"\n");
	ck_assert_int_eq(loomi_conf_load(&c, path, &errs), LOOM_ECONFIG);
	want = loomi_strdup("extra.conf:4: listn: unknown setting");
	ASSERT_HAS(errs.v[0], want);
	free(want);
	free(inc);
	free(path);
	done(&c, &errs, dir);
}
END_TEST

START_TEST(directory_as_config)
{
	loomi_conf c;
	loomi_strv errs = {0};
	char *dir = tu_tmpdir();

	ck_assert_int_eq(loomi_conf_load(&c, dir, &errs), LOOM_EIO);
	ASSERT_HAS(errs.v[0], "not a regular file");
	loomi_conf_free(&c);
	loomi_strv_free(&errs);
	tu_rmrf(dir);
	free(dir);
}
END_TEST

START_TEST(include_relative)
{
	loomi_conf c;
	loomi_strv errs = {0};
	char *dir = tu_tmpdir(), *inc, *path;
	int rv;

	inc = tu_write(dir, "extra.conf", "listen = \"127.0.0.1:9\";\n");
	path = tu_write(dir, "loomd.conf", "@include \"extra.conf\"\n");
	rv = loomi_conf_load(&c, path, &errs);
	ck_assert_int_eq(rv, 0);
	ck_assert_str_eq(c.listen, "127.0.0.1:9");
	free(inc);
	free(path);
	done(&c, &errs, dir);
}
END_TEST

START_TEST(listen_addresses)
{
	const char *why;
	ck_assert_int_eq(loomi_listen_check("127.0.0.1:7420", &why), 0);
	ck_assert_int_eq(loomi_listen_check("localhost:0", &why), 0);
	ck_assert_int_eq(loomi_listen_check("[::1]:7420", &why), 0);
	ck_assert_int_eq(loomi_listen_check("0.0.0.0:65535", &why), 0);
	ck_assert_int_eq(loomi_listen_check(":7420", &why), LOOM_EINVAL);
	ck_assert_int_eq(loomi_listen_check("host:", &why), LOOM_EINVAL);
	ck_assert_int_eq(loomi_listen_check("host:-1", &why), LOOM_EINVAL);
	ck_assert_int_eq(loomi_listen_check("host:12ab", &why), LOOM_EINVAL);
	ck_assert_int_eq(loomi_listen_check("[::1:7420", &why), LOOM_EINVAL);
	ck_assert_int_eq(loomi_listen_check("a b:1", &why), LOOM_EINVAL);
	ck_assert(loomi_instance_name_ok("store-1_a"));
	ck_assert(!loomi_instance_name_ok("1store"));
	ck_assert(!loomi_instance_name_ok("Store"));
	ck_assert(!loomi_instance_name_ok(""));
	ck_assert(loomi_module_name_ok("storage-local"));
	ck_assert(!loomi_module_name_ok("a/b"));
	ck_assert(!loomi_module_name_ok(".hidden"));
}
END_TEST

/* ------------------------------------------------------------------ documents */

START_TEST(json_documents)
{
	loomi_doc d;
	loomi_strv errs = {0};
	static const char good[] = "{\"model\": {\"d_model\": 64}}";

	ck_assert_int_eq(loomi_doc_load_json(&d, good, strlen(good), "spec", &errs), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(d.root, "model"),
	                                                    "d_model")),
	                 64);
	ck_assert_int_eq(loomi_doc_line(&d, d.root), 0);
	loomi_doc_free(&d);

	ck_assert_int_eq(loomi_doc_load_json(&d, "{\"a\":1,\"a\":2}", 13, "spec", &errs),
	                 LOOM_ECONFIG);
	ASSERT_HAS(errs.v[0], "spec:1:");
	ASSERT_HAS(errs.v[0], "malformed JSON");
	loomi_doc_free(&d);
	ck_assert_int_eq(loomi_doc_load_json(&d, "[1]", 3, "spec", &errs), LOOM_ECONFIG);
	ASSERT_HAS(errs.v[1], "spec: expected a JSON object, got a list");
	loomi_doc_free(&d);
	ck_assert_int_eq(loomi_doc_load_json(&d, "{", 1, "spec", &errs), LOOM_ECONFIG);
	loomi_doc_free(&d);
	loomi_strv_free(&errs);
}
END_TEST

static const loomi_field inner_fields[] = {
	{"d_model", LOOMI_F_INT, LOOMI_F_RANGE, NULL, 1, 4096, NULL, NULL},
	{"dropout", LOOMI_F_DOUBLE, LOOMI_F_RANGE, NULL, 0, 1, NULL, NULL},
	{"split", LOOMI_F_DOUBLELIST, LOOMI_F_RANGE, NULL, 0, 1, NULL, NULL},
	{"after", LOOMI_F_INTLIST, 0, NULL, 0, 0, NULL, NULL},
	{"name", LOOMI_F_STRING, LOOMI_F_REQUIRED, NULL, 0, 0, NULL, "a job name"},
	{"timeout", LOOMI_F_DURATION, 0, NULL, 0, 0, NULL, NULL},
	{NULL, 0, 0, NULL, 0, 0, NULL, NULL},
};

static const loomi_field outer_fields[] = {
	{"model", LOOMI_F_GROUP, 0, NULL, 0, 0, inner_fields, NULL},
	{NULL, 0, 0, NULL, 0, 0, NULL, NULL},
};

START_TEST(schema_checks)
{
	loomi_doc d;
	loomi_strv errs = {0};
	char *text;
	static const char spec[] =
		"{\"model\": {\"d_modle\": 64, \"dropout\": 1.5, \"split\": [0.7, 2, \"x\"],"
		" \"after\": [1, 2.5], \"name\": \"\", \"timeout\": \"soon\"}}";

	ck_assert_int_eq(loomi_doc_load_json(&d, spec, strlen(spec), "spec.json", &errs), 0);
	ck_assert_int_eq(loomi_schema_check(&d, d.root, outer_fields, "", &errs), 7);
	text = joined(&errs);
	ASSERT_HAS(text, "spec.json: model.d_modle: unknown setting (did you mean d_model?)");
	ASSERT_HAS(text, "model.dropout: 1.5 is out of range; use a value from 0 to 1");
	ASSERT_HAS(text, "model.split[1]: 2 is out of range");
	ASSERT_HAS(text, "model.split[2]: expected a number, got a string");
	ASSERT_HAS(text, "model.after[1]: expected an integer, got a number");
	ASSERT_HAS(text, "model.name: must not be empty (a job name)");
	ASSERT_HAS(text, "model.timeout: \"soon\" is not a duration");
	free(text);
	loomi_strv_free(&errs);
	loomi_doc_free(&d);

	ck_assert_int_eq(loomi_doc_load_json(&d, "{\"model\": {}}", 13, "spec.json", &errs), 0);
	ck_assert_int_eq(loomi_schema_check(&d, d.root, outer_fields, "", &errs), 1);
	ASSERT_HAS(errs.v[0], "model.name: missing setting (a job name)");
	loomi_strv_free(&errs);
	loomi_doc_free(&d);
}
END_TEST

START_TEST(suggestions)
{
	static const char *const words[] = {"d_model", "heads", "layers", "dropout", "patch"};
	ck_assert_str_eq(loomi_suggest("d_modle", words, 5), "d_model");
	ck_assert_str_eq(loomi_suggest("haeds", words, 5), "heads");
	ck_assert_str_eq(loomi_suggest("layer", words, 5), "layers");
	ck_assert_ptr_null(loomi_suggest("learning_rate", words, 5));
	ck_assert_ptr_null(loomi_suggest("x", words, 5));
}
END_TEST

/* ------------------------------------------------------------------ plugin config maps */

struct pctx {
	bool flag;
	int64_t count;
	double ratio;
	const char *color;
	uint64_t limit;
	int64_t timeout;
	char **tags;
	const char *file;
	const char *must;
	int64_t hidden;
};

static const loom_config_entry pmap[] = {
	{LOOM_CONFIG_BOOL, 0, "flag", "true", offsetof(struct pctx, flag), "a flag", 0, 0, NULL, {0}},
	{LOOM_CONFIG_INT, LOOM_CONFIG_RANGE, "count", "3", offsetof(struct pctx, count), "1 to 10", 1, 10, NULL, {0}},
	{LOOM_CONFIG_DOUBLE, 0, "ratio", "0.25", offsetof(struct pctx, ratio), NULL, 0, 0, NULL, {0}},
	{LOOM_CONFIG_STRING, 0, "color", "red", offsetof(struct pctx, color), NULL, 0, 0, "red|green|blue", {0}},
	{LOOM_CONFIG_SIZE, 0, "limit", "64K", offsetof(struct pctx, limit), NULL, 0, 0, NULL, {0}},
	{LOOM_CONFIG_DURATION, 0, "timeout", "250ms", offsetof(struct pctx, timeout), NULL, 0, 0, NULL, {0}},
	{LOOM_CONFIG_STRLIST, 0, "tags", "a, b ,c", offsetof(struct pctx, tags), NULL, 0, 0, NULL, {0}},
	{LOOM_CONFIG_PATH, 0, "file", "data/x.csv", offsetof(struct pctx, file), NULL, 0, 0, NULL, {0}},
	{LOOM_CONFIG_STRING, LOOM_CONFIG_REQUIRED, "must", NULL, offsetof(struct pctx, must), "something required", 0, 0, NULL, {0}},
	{LOOM_CONFIG_INT, LOOM_CONFIG_NOFILL, "hidden", "7", offsetof(struct pctx, hidden), NULL, 0, 0, NULL, {0}},
	LOOM_CONFIG_END,
};

/* Apply pmap to the group "config" of a libconfig text. */
static int
apply(const char *text, struct pctx *ctx, loomi_pconf *pc, loomi_strv *errs, loomi_doc *d)
{
	ck_assert_int_eq(loomi_doc_load_string(d, text, "p.conf", errs), 0);
	memset(ctx, 0, sizeof *ctx);
	return loomi_pconf_apply(d, json_object_get(d->root, "config"), d->root, pmap,
	                         "plugin \"p\" (mod): config", "/base", ctx, pc, errs);
}

START_TEST(pconf_defaults_and_values)
{
	struct pctx ctx;
	loomi_pconf pc;
	loomi_doc d;
	loomi_strv errs = {0};

	ck_assert_int_eq(apply("config = { must = \"yes\"; };", &ctx, &pc, &errs, &d), 0);
	ck_assert(ctx.flag);
	ck_assert_int_eq(ctx.count, 3);
	ck_assert(ctx.ratio == 0.25);
	ck_assert_str_eq(ctx.color, "red");
	ck_assert_uint_eq(ctx.limit, 65536);
	ck_assert_int_eq(ctx.timeout, 250);
	ck_assert_str_eq(ctx.tags[0], "a");
	ck_assert_str_eq(ctx.tags[1], "b");
	ck_assert_str_eq(ctx.tags[2], "c");
	ck_assert_ptr_null(ctx.tags[3]);
	ck_assert_str_eq(ctx.file, "/base/data/x.csv");
	ck_assert_str_eq(ctx.must, "yes");
	ck_assert_int_eq(ctx.hidden, 0); /* NOFILL: validated, not written */
	ck_assert_int_eq(json_integer_value(json_object_get(pc.values, "hidden")), 7);
	ck_assert_int_eq(json_integer_value(json_object_get(pc.values, "limit")), 65536);
	ck_assert_ptr_eq(loomi_pconf_strlist(&pc, "tags"), ctx.tags);
	loomi_pconf_free(&pc);
	loomi_doc_free(&d);

	ck_assert_int_eq(apply("config = { must = \"m\"; flag = false; count = 10; ratio = 2;\n"
	                       "  color = \"blue\"; limit = \"2M\"; timeout = \"1.5m\";\n"
	                       "  tags = [ \"x\" ]; file = \"/abs\"; };",
	                       &ctx, &pc, &errs, &d),
	                 0);
	ck_assert(!ctx.flag);
	ck_assert_int_eq(ctx.count, 10);
	ck_assert(ctx.ratio == 2.0);
	ck_assert_str_eq(ctx.color, "blue");
	ck_assert_uint_eq(ctx.limit, 2u << 20);
	ck_assert_int_eq(ctx.timeout, 90000);
	ck_assert_str_eq(ctx.tags[0], "x");
	ck_assert_ptr_null(ctx.tags[1]);
	ck_assert_str_eq(ctx.file, "/abs");
	ck_assert_uint_eq(errs.n, 0);
	loomi_pconf_free(&pc);
	loomi_doc_free(&d);
}
END_TEST

START_TEST(pconf_errors)
{
	struct pctx ctx;
	loomi_pconf pc;
	loomi_doc d;
	loomi_strv errs = {0};
	char *text;

	ck_assert_int_eq(apply("config = {\n  cuont = 2;\n  count = 11;\n  color = \"purple\";\n"
	                       "  flag = \"yes\";\n  limit = -1;\n};",
	                       &ctx, &pc, &errs, &d),
	                 6);
	text = joined(&errs);
	ASSERT_HAS(text, "p.conf:2: plugin \"p\" (mod): config.cuont: unknown setting (did you mean count?)");
	ASSERT_HAS(text, "p.conf:3: plugin \"p\" (mod): config.count: 11 is out of range; use a value from 1 to 10");
	ASSERT_HAS(text, "p.conf:4: plugin \"p\" (mod): config.color: \"purple\" is not one of red, green, blue");
	ASSERT_HAS(text, "p.conf:5: plugin \"p\" (mod): config.flag: expected a boolean");
	ASSERT_HAS(text, "config.limit: a size must not be negative");
	ASSERT_HAS(text, "p.conf:1: plugin \"p\" (mod): config.must: missing setting (something required)");
	free(text);
	/* nothing was filled: the context is not used on failure */
	ck_assert_ptr_null(ctx.color);
	loomi_pconf_free(&pc);
	loomi_doc_free(&d);
	loomi_strv_free(&errs);

	/* no config group at all: the message points at the plugin's group */
	ck_assert_int_eq(apply("x = 1;\n", &ctx, &pc, &errs, &d), 1);
	ASSERT_HAS(errs.v[0], "config.must: missing setting");
	loomi_pconf_free(&pc);
	loomi_doc_free(&d);
	loomi_strv_free(&errs);
}
END_TEST

START_TEST(pconf_many_settings_and_limits)
{
	/* more settings than any fixed-size table would hold */
	enum { N = 150 };
	static loom_config_entry map[N + 2];
	static char keys[N][8];
	static int64_t vals[N + 1];
	loomi_pconf pc;
	loomi_doc d;
	loomi_strv errs = {0};
	char *text;

	for (int i = 0; i < N; i++) {
		snprintf(keys[i], sizeof keys[i], "k%d", i);
		map[i] = (loom_config_entry){LOOM_CONFIG_INT, 0, keys[i], "0",
		                             (size_t)i * sizeof(int64_t), NULL, 0, 0, NULL, {0}};
	}
	map[N] = (loom_config_entry){LOOM_CONFIG_DURATION, 0, "dur", NULL,
	                             (size_t)N * sizeof(int64_t), NULL, 0, 0, NULL, {0}};
	ck_assert_int_eq(loomi_doc_load_string(&d, "config = { k0 = 1; k70 = 2; k149 = 3; dur = 5; };",
	                                       "m.conf", &errs),
	                 0);
	ck_assert_int_eq(loomi_pconf_apply(&d, json_object_get(d.root, "config"), d.root, map, "p",
	                                   NULL, vals, &pc, &errs),
	                 0);
	ck_assert_int_eq(vals[70], 2);
	ck_assert_int_eq(vals[149], 3);
	ck_assert_int_eq(vals[N], 5000);
	loomi_pconf_free(&pc);
	loomi_doc_free(&d);

	ck_assert_int_eq(loomi_doc_load_string(&d, "config = { dur = 1e300; k3 = 1; k150 = 1; };",
	                                       "m.conf", &errs),
	                 0);
	ck_assert_int_eq(loomi_pconf_apply(&d, json_object_get(d.root, "config"), d.root, map, "p",
	                                   NULL, vals, &pc, &errs),
	                 2);
	text = loomi_strv_join(&errs, "\n");
	ASSERT_HAS(text, "p.dur: 1e+300 seconds is too long");
	ASSERT_HAS(text, "p.k150: unknown setting (did you mean k1");
	free(text);
	loomi_pconf_free(&pc);
	loomi_doc_free(&d);
	loomi_strv_free(&errs);
}
END_TEST

START_TEST(pconf_sizes_and_durations)
{
	struct pctx ctx;
	loomi_pconf pc;
	loomi_doc d;
	loomi_strv errs = {0};
	char *text;

	ck_assert_int_eq(apply("config = { must = \"m\"; limit = \"20000000T\"; timeout = -3; };",
	                       &ctx, &pc, &errs, &d),
	                 2);
	text = loomi_strv_join(&errs, "\n");
	ASSERT_HAS(text, "config.limit: \"20000000T\" is too large a size");
	ASSERT_HAS(text, "config.timeout: a duration must not be negative");
	free(text);
	loomi_pconf_free(&pc);
	loomi_doc_free(&d);
	loomi_strv_free(&errs);
}
END_TEST

START_TEST(pconf_broken_plugin_default)
{
	static const loom_config_entry broken[] = {
		{LOOM_CONFIG_INT, 0, "n", "many", 0, NULL, 0, 0, NULL, {0}},
		LOOM_CONFIG_END,
	};
	loomi_pconf pc;
	loomi_strv errs = {0};
	int64_t n = 0;

	ck_assert_int_eq(loomi_pconf_apply(NULL, NULL, NULL, broken, "plugin \"b\"", NULL, &n,
	                                   &pc, &errs),
	                 1);
	ASSERT_HAS(errs.v[0], "plugin \"b\".n: the plugin's default \"many\" is invalid");
	loomi_pconf_free(&pc);
	loomi_strv_free(&errs);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("conf");
	TCase *tc = tcase_create("loomd.conf");
	tcase_add_test(tc, good_file);
	tcase_add_test(tc, defaults);
	tcase_add_test(tc, http_group);
	tcase_add_test(tc, api_group);
	tcase_add_test(tc, web_group);
	tcase_add_loop_test(tc, bad_file, 0, (int)(sizeof bad_files / sizeof bad_files[0]));
	tcase_add_test(tc, all_problems_reported);
	tcase_add_test(tc, missing_file);
	tcase_add_test(tc, include_relative);
	tcase_add_test(tc, include_errors_name_their_file);
	tcase_add_test(tc, directory_as_config);
	tcase_add_test(tc, listen_addresses);
	suite_add_tcase(s, tc);

	tc = tcase_create("documents");
	tcase_add_test(tc, json_documents);
	tcase_add_test(tc, schema_checks);
	tcase_add_test(tc, suggestions);
	suite_add_tcase(s, tc);

	tc = tcase_create("plugin config maps");
	tcase_add_test(tc, pconf_defaults_and_values);
	tcase_add_test(tc, pconf_errors);
	tcase_add_test(tc, pconf_broken_plugin_default);
	tcase_add_test(tc, pconf_many_settings_and_limits);
	tcase_add_test(tc, pconf_sizes_and_durations);
	suite_add_tcase(s, tc);
	return tu_run(s);
}

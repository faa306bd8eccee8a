/* host/web: the web UI's static files through the request pipeline —
 * Content-Types by extension, the security headers on files and refusals
 * alike (a strict CSP, nosniff, no referrer), ETag and 304, HEAD, and every
 * way out of the root refused as a 404: "..", encoded slashes and dots,
 * dotfiles, subdirectories, symlinks leading out, directories, unknown
 * extensions, the chart library's other files. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "host/server/api.h"
#include "host/server/module.h"
#include "host/web/web.h"
#include "testutil.h"

static char *root, *lib, *outside;
static loomi_daemon d;

typedef struct answer {
	int status;
	char *text;
	size_t len;
	const char *type;
	char *hdr[LOOMI_N(((loomi_http_res *)0)->headers)];
	const char *hdr_name[LOOMI_N(((loomi_http_res *)0)->headers)];
	size_t n_hdr;
} answer;

static answer
ask(const char *method, const char *path, const char *if_none_match)
{
	loomi_http_req req = {.method = method, .path = path, .query = "",
	                      .host = "127.0.0.1:7420", .if_none_match = if_none_match,
	                      .version_minor = 1};
	loomi_http_res res = {0};
	answer a = {0};

	loomi_api_handle(&d, &req, &res);
	a.status = res.status;
	if (res.body) {
		a.text = json_dumps(res.body, JSON_COMPACT);
		a.len = strlen(a.text);
		free(res.text);
	} else {
		a.text = res.text;
		a.len = res.text_len;
		a.type = res.content_type;
	}
	for (size_t i = 0; i < res.n_headers; i++) {
		a.hdr_name[i] = res.headers[i].name;
		a.hdr[i] = res.headers[i].value;
	}
	a.n_hdr = res.n_headers;
	json_decref(res.body);
	free(res.allow);
	return a;
}

static const char *
header(const answer *a, const char *name)
{
	for (size_t i = 0; i < a->n_hdr; i++)
		if (strcmp(a->hdr_name[i], name) == 0)
			return a->hdr[i];
	return NULL;
}

static void
answer_free(answer *a)
{
	free(a->text);
	for (size_t i = 0; i < a->n_hdr; i++)
		free(a->hdr[i]);
}

/* The headers every answer of the UI carries. */
static void
assert_policy(const answer *a)
{
	const char *csp = header(a, "Content-Security-Policy");
	ck_assert_ptr_nonnull(csp);
	ck_assert_str_eq(csp, loomi_web_csp);
	ck_assert_msg(strstr(csp, "default-src 'self'") && strstr(csp, "frame-ancestors 'none'") &&
	                  strstr(csp, "base-uri 'none'") && strstr(csp, "object-src 'none'") &&
	                  !strstr(csp, "unsafe-inline") && !strstr(csp, "unsafe-eval"),
	              "%s", csp);
	ck_assert_str_eq(header(a, "X-Content-Type-Options"), "nosniff");
	ck_assert_str_eq(header(a, "Referrer-Policy"), "no-referrer");
}

static void
expect_404(const char *path)
{
	answer a = ask("GET", path, NULL);
	ck_assert_msg(a.status == 404, "GET %s: %d %s", path, a.status, a.text ? a.text : "");
	ck_assert_msg(strstr(a.text, "LEAKED") == NULL, "GET %s leaked: %s", path, a.text);
	answer_free(&a);
}

static void
setup(void)
{
	char *p;

	root = tu_tmpdir();
	lib = tu_tmpdir();
	outside = tu_tmpdir();
	free(tu_write(root, "index.html", "<!doctype html><title>Loom</title>"));
	free(tu_write(root, "app.js", "export const x = 1;\n"));
	free(tu_write(root, "style.css", "body{}\n"));
	free(tu_write(root, "favicon.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>"));
	free(tu_write(root, ".secret.js", "LEAKED"));
	free(tu_write(root, "notes.bak", "LEAKED"));
	free(tu_write(outside, "passwd.js", "LEAKED"));
	free(tu_write(lib, "dygraph.min.js", "var Dygraph;"));
	free(tu_write(lib, "dygraph.min.css", ".dygraph-legend{}"));
	free(tu_write(lib, "index.js", "LEAKED"));
	p = loomi_path_join(root, "sub");
	ck_assert_int_eq(mkdir(p, 0755), 0);
	free(tu_write(p, "inner.js", "LEAKED"));
	free(p);
	p = loomi_path_join(root, "dir.js");
	ck_assert_int_eq(mkdir(p, 0755), 0);
	free(p);
	/* a symlink out of the root, and one that stays inside */
	{
		char *target = loomi_path_join(outside, "passwd.js");
		p = loomi_path_join(root, "out.js");
		ck_assert_int_eq(symlink(target, p), 0);
		free(p);
		free(target);
		p = loomi_path_join(root, "alias.js");
		ck_assert_int_eq(symlink("app.js", p), 0);
		free(p);
		p = loomi_path_join(root, "hidden.js");
		ck_assert_int_eq(symlink(".secret.js", p), 0);
		free(p);
	}
	memset(&d, 0, sizeof d);
	d.conf.listen = "127.0.0.1:7420";
	d.conf.web_root = root;
	d.conf.web_dygraphs = lib;
}

static void
teardown(void)
{
	tu_rmrf(root);
	tu_rmrf(lib);
	tu_rmrf(outside);
	free(root);
	free(lib);
	free(outside);
}

START_TEST(types)
{
	ck_assert_str_eq(loomi_web_type("index.html"), "text/html; charset=utf-8");
	ck_assert_str_eq(loomi_web_type("app.js"), "text/javascript; charset=utf-8");
	ck_assert_str_eq(loomi_web_type("x.mjs"), "text/javascript; charset=utf-8");
	ck_assert_str_eq(loomi_web_type("style.css"), "text/css; charset=utf-8");
	ck_assert_str_eq(loomi_web_type("favicon.svg"), "image/svg+xml");
	ck_assert_str_eq(loomi_web_type("a.png"), "image/png");
	ck_assert_str_eq(loomi_web_type("a.json"), "application/json");
	ck_assert_ptr_null(loomi_web_type("README"));
	ck_assert_ptr_null(loomi_web_type("notes.bak"));
	ck_assert_ptr_null(loomi_web_type("x.html.bak"));
	ck_assert_ptr_null(loomi_web_type("x.JS"));

	ck_assert(loomi_web_name_ok("app.js"));
	ck_assert(loomi_web_name_ok("dygraph.min.css"));
	ck_assert(loomi_web_name_ok("a_b-c.js"));
	ck_assert(!loomi_web_name_ok(""));
	ck_assert(!loomi_web_name_ok(".env"));
	ck_assert(!loomi_web_name_ok(".."));
	ck_assert(!loomi_web_name_ok("a..js"));
	ck_assert(!loomi_web_name_ok("a/b.js"));
	ck_assert(!loomi_web_name_ok("a\\b.js"));
	ck_assert(!loomi_web_name_ok("a b.js"));
	ck_assert(!loomi_web_name_ok("a%2f.js"));
	ck_assert(!loomi_web_name_ok("\xc3\xa9.js"));
}
END_TEST

START_TEST(files)
{
	answer a;
	char etag[64];

	/* / is index.html */
	a = ask("GET", "/", NULL);
	ck_assert_int_eq(a.status, 200);
	ck_assert_str_eq(a.type, "text/html; charset=utf-8");
	ck_assert_str_eq(a.text, "<!doctype html><title>Loom</title>");
	assert_policy(&a);
	ck_assert_str_eq(header(&a, "Cache-Control"), "no-cache");
	ck_assert_ptr_nonnull(header(&a, "ETag"));
	ck_assert_msg(header(&a, "ETag")[0] == '"', "%s", header(&a, "ETag"));
	snprintf(etag, sizeof etag, "%s", header(&a, "ETag"));
	answer_free(&a);

	a = ask("GET", "/index.html", NULL);
	ck_assert_int_eq(a.status, 200);
	ck_assert_str_eq(header(&a, "ETag"), etag);
	answer_free(&a);

	/* revalidation: 304 with the same ETag, no body; another tag is a 200 */
	a = ask("GET", "/", etag);
	ck_assert_int_eq(a.status, 304);
	ck_assert_uint_eq(a.len, 0);
	ck_assert_str_eq(header(&a, "ETag"), etag);
	assert_policy(&a);
	answer_free(&a);
	{
		char list[160];
		snprintf(list, sizeof list, "\"nope\", W/%s", etag);
		a = ask("GET", "/", list);
		ck_assert_int_eq(a.status, 304);
		answer_free(&a);
	}
	a = ask("GET", "/", "\"other\"");
	ck_assert_int_eq(a.status, 200);
	answer_free(&a);

	a = ask("HEAD", "/app.js", NULL);
	ck_assert_int_eq(a.status, 200);
	ck_assert_str_eq(a.type, "text/javascript; charset=utf-8");
	answer_free(&a);
	a = ask("GET", "/style.css", NULL);
	ck_assert_int_eq(a.status, 200);
	ck_assert_str_eq(a.type, "text/css; charset=utf-8");
	answer_free(&a);
	a = ask("GET", "/favicon.svg", NULL);
	ck_assert_int_eq(a.status, 200);
	ck_assert_str_eq(a.type, "image/svg+xml");
	answer_free(&a);

	/* a changed file has another ETag */
	free(tu_write(root, "index.html", "<!doctype html><title>Loom 2</title>"));
	a = ask("GET", "/", etag);
	ck_assert_int_eq(a.status, 200);
	ck_assert_str_ne(header(&a, "ETag"), etag);
	answer_free(&a);

	/* a symlink that stays inside the root is followed */
	a = ask("GET", "/alias.js", NULL);
	ck_assert_int_eq(a.status, 200);
	ck_assert_str_eq(a.text, "export const x = 1;\n");
	answer_free(&a);

	/* the chart library: its two files, from web.dygraphs */
	a = ask("GET", "/dygraphs/dygraph.min.js", NULL);
	ck_assert_int_eq(a.status, 200);
	ck_assert_str_eq(a.text, "var Dygraph;");
	ck_assert_str_eq(a.type, "text/javascript; charset=utf-8");
	assert_policy(&a);
	answer_free(&a);
	a = ask("GET", "/dygraphs/dygraph.min.css", NULL);
	ck_assert_int_eq(a.status, 200);
	answer_free(&a);
}
END_TEST

START_TEST(refusals)
{
	answer a;

	/* a 404 carries the policy too, and says where things are */
	a = ask("GET", "/nope.js", NULL);
	ck_assert_int_eq(a.status, 404);
	ck_assert_msg(strstr(a.text, "\"code\":\"not_found\"") &&
	                  strstr(a.text, "no such file: /nope.js; the web UI is at /, the API "
	                                 "under /api/v1"),
	              "%s", a.text);
	assert_policy(&a);
	answer_free(&a);

	expect_404("/.secret.js");       /* dotfiles */
	expect_404("/%2esecret.js");     /* … however spelt */
	expect_404("/notes.bak");        /* a type not served */
	expect_404("/out.js");           /* a symlink out of the root */
	expect_404("/hidden.js");        /* a symlink to a dotfile */
	expect_404("/dir.js");           /* not a regular file */
	expect_404("/sub");              /* subdirectories are not served */
	expect_404("/sub/inner.js");
	expect_404("/..%2f..%2fetc%2fpasswd");
	expect_404("/%2e%2e");
	expect_404("/..");
	expect_404("/...js");
	expect_404("/app%2ejs");         /* escapes: what is checked is what was sent */
	expect_404("/dygraphs/index.js"); /* only the library's two files */
	expect_404("/dygraphs/..%2fapp.js");
	expect_404("/dygraphs/dygraph.min.js.map");

	/* the API keeps its own answers */
	a = ask("GET", "/api/v1/nope", NULL);
	ck_assert_int_eq(a.status, 404);
	ck_assert_msg(strstr(a.text, "no such endpoint"), "%s", a.text);
	answer_free(&a);
	a = ask("POST", "/app.js", NULL);
	ck_assert_int_eq(a.status, 405);
	answer_free(&a);
}
END_TEST

/* No root installed: loomd serves the API, the UI answers 404. */
START_TEST(no_root)
{
	answer a;

	d.conf.web_root = "/nonexistent/loom-web";
	a = ask("GET", "/", NULL);
	ck_assert_int_eq(a.status, 404);
	assert_policy(&a);
	answer_free(&a);
	d.conf.web_root = root;
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("web");
	TCase *tc = tcase_create("static files");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, types);
	tcase_add_test(tc, files);
	tcase_add_test(tc, refusals);
	tcase_add_test(tc, no_root);
	suite_add_tcase(s, tc);
	return tu_run(s);
}

/* storage-s3: the conformance suite against a real S3 server (a one-node
 * OpenStack Swift with s3api, started by storage-s3.sh), then what only S3
 * has: signatures (a wrong secret is refused, and never shows in a
 * message), multipart uploads, list paging, keys from the environment and
 * retries — the last through tests/helpers/flaky-http.py, a proxy in front
 * of Swift that fails requests on demand and logs every attempt.
 *
 * Environment (set by storage-s3.sh): S3_ENDPOINT, S3_ACCESS_KEY,
 * S3_SECRET_KEY, S3_REGION, S3_PROXY_ENDPOINT, S3_PROXY_LOG. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <loom/loom.h>

#include "host/core/conf.h"
#include "host/core/plugins.h"
#include "host/core/util.h"
#include "plugins/storage-s3/s3xml.h"
#include "storage-conformance.h"
#include "testutil.h"

#define MODULE "storage-s3"
#define BUCKET "loom-test"
#define MIB (1024u * 1024u)

/* Every test's blobs live under a prefix made of its own temporary
 * directory's path ("c/tmp/loom-test.XXXXXX"), so each starts empty. */
static char *conf_conformance;
/* 10 rounds of each race: every operation is a signed HTTP request to Swift
 * (18–27 s per race case at 50 rounds on the 2-core vm) */
static sc_target target = {MODULE, NULL, 10};

static char *tmp;
static sc_store store;

static const char *
env(const char *name)
{
	const char *v = getenv(name);

	/* Not ck_assert: main calls this too, outside any test. */
	if (v == NULL || *v == '\0') {
		fprintf(stderr, "%s is not set: run this through storage-s3.sh\n", name);
		abort();
	}
	return v;
}

/* A config body for the Swift endpoint (or the proxy in front of it) with
 * the prefix p under the test's directory, plus extra settings. */
static char *
conf(bool proxy, const char *p, const char *extra)
{
	return loomi_strfmt("endpoint = \"%s\"; bucket = \"" BUCKET "\"; region = \"%s\";\n"
	                    "access_key = \"%s\"; secret_key = \"%s\";\n"
	                    "prefix = \"%s@DIR@\"; %s",
	                    env(proxy ? "S3_PROXY_ENDPOINT" : "S3_ENDPOINT"), env("S3_REGION"),
	                    env("S3_ACCESS_KEY"), env("S3_SECRET_KEY"), p, extra ? extra : "");
}

static void
setup(void)
{
	tmp = tu_tmpdir();
}

static void
teardown(void)
{
	tu_log_stop();
	sc_store_close(&store);
	tu_rmrf(tmp);
	free(tmp);
	tmp = NULL;
}

static void
start(bool proxy, const char *extra)
{
	char *x = loomi_strfmt("create_bucket = true; %s", extra ? extra : "");
	char *c = conf(proxy, "s", x);
	sc_store_start(&store, MODULE, c, tmp);
	free(c);
	free(x);
}

/* How many requests the proxy logged that contain every one of the given
 * strings (NULL-terminated), the test's own directory among them. */
static int
proxy_count(const char *first, ...)
{
	FILE *f = fopen(env("S3_PROXY_LOG"), "r");
	char line[4096], enc[512] = "";
	int n = 0;

	/* In a listing's query the prefix is URI-encoded. */
	for (const char *t = tmp; *t && strlen(enc) + 4 < sizeof enc; t++)
		strcat(enc, *t == '/' ? "%2F" : (char[2]){*t, '\0'});
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof line, f)) {
		va_list ap;
		bool all = strstr(line, tmp) != NULL || strstr(line, enc) != NULL;
		va_start(ap, first);
		for (const char *s = first; s && all; s = va_arg(ap, const char *))
			all = strstr(line, s) != NULL;
		va_end(ap);
		n += all;
	}
	fclose(f);
	return n;
}

/* ------------------------------------------------------------------ xml */

START_TEST(xml_reader)
{
	static const char doc[] =
		"<?xml version=\"1.0\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/\">"
		"<KeyCount>2</KeyCount><IsTruncated>false</IsTruncated>"
		"<Contents><Key>a&amp;b&lt;c&gt;&quot;&apos;&#65;&#x42;&#xe9;</Key><Size>3</Size>"
		"</Contents><Contents ><Key>k2</Key><Size/></Contents></ListBucketResult>";
	const char *p = doc, *body;
	size_t blen;
	char *t;

	/* "Key" does not match <KeyCount>. */
	t = s3xml_get(doc, sizeof doc - 1, "Key");
	ck_assert_str_eq(t, "a&b<c>\"'AB\xc3\xa9");
	free(t);
	t = s3xml_get(doc, sizeof doc - 1, "KeyCount");
	ck_assert_str_eq(t, "2");
	free(t);
	ck_assert_int_eq(s3xml_next(&p, doc + sizeof doc - 1, "Contents", &body, &blen), 1);
	ck_assert_int_eq(s3xml_next(&p, doc + sizeof doc - 1, "Contents", &body, &blen), 1);
	t = s3xml_get(body, blen, "Key");
	ck_assert_str_eq(t, "k2");
	free(t);
	/* <Size/> is empty. */
	t = s3xml_get(body, blen, "Size");
	ck_assert_str_eq(t, "");
	free(t);
	ck_assert_int_eq(s3xml_next(&p, doc + sizeof doc - 1, "Contents", &body, &blen), 0);
	ck_assert_ptr_null(s3xml_get(doc, sizeof doc - 1, "Missing"));

	/* Refused rather than guessed. */
	ck_assert_ptr_null(s3xml_text("a&b", 3));
	ck_assert_ptr_null(s3xml_text("a&nbsp;", 7));
	ck_assert_ptr_null(s3xml_text("&#0;", 4));
	ck_assert_ptr_null(s3xml_text("&#x110000;", 10));
	ck_assert_ptr_null(s3xml_text("&#xD800;", 8));
	ck_assert_ptr_null(s3xml_text("&#;", 3));
	ck_assert_ptr_null(s3xml_text("&#12a;", 6));
	ck_assert_ptr_null(s3xml_text("<b>x</b>", 8));
	ck_assert_ptr_null(s3xml_text("a\0b", 3));
	ck_assert_ptr_null(s3xml_get("<Key>unterminated", 17, "Key"));
	p = "<Key>x";
	ck_assert_int_eq(s3xml_next(&p, p + 6, "Key", &body, &blen), -1);
	/* The error body S3 sends. */
	{
		static const char err[] = "<Error><Code>SignatureDoesNotMatch</Code>"
		                          "<Message>The request signature we calculated does not "
		                          "match</Message></Error>";
		t = s3xml_get(err, sizeof err - 1, "Code");
		ck_assert_str_eq(t, "SignatureDoesNotMatch");
		free(t);
	}
	/* Escaping for request bodies. */
	{
		char out[64] = "<ETag>";
		size_t need = s3xml_escape(out, sizeof out, "\"a&b<>\"");
		ck_assert_str_eq(out, "<ETag>&quot;a&amp;b&lt;&gt;&quot;");
		ck_assert_uint_eq(need, strlen(out));
		char small[8] = "";
		ck_assert_uint_eq(s3xml_escape(small, sizeof small, "&&"), 10);
		ck_assert_str_eq(small, "&amp;&a");
	}
}
END_TEST

/* ------------------------------------------------------------------ s3 */

START_TEST(capabilities)
{
	start(false, NULL);
	ck_assert_uint_eq(store.ops->caps, LOOM_STORAGE_DURABLE | LOOM_STORAGE_SHARED);
	ck_assert_uint_eq(store.ins->desc->flags & LOOM_PLUGIN_THREAD_SAFE,
	                  LOOM_PLUGIN_THREAD_SAFE);
	/* No conditional put: Swift's s3api answers 501 to one. */
	ck_assert_ptr_null(store.ops->put_if);
	ck_assert_ptr_null(store.ops->local_path);
	ck_assert_int_eq(loomi_storage_put_if(store.ins, "k", "x", 1, 0, NULL), LOOM_ENOTSUP);
}
END_TEST

START_TEST(durable_across_instances)
{
	unsigned char *p = sc_pattern(5000, 31);

	start(false, NULL);
	sc_put(store.ins, "keep/me", p, 5000);
	sc_store_close(&store);
	start(false, NULL);
	sc_assert_blob(store.ins, "keep/me", p, 5000);
	free(p);
}
END_TEST

START_TEST(wrong_secret_refused)
{
	static const char secret[] = "Wr0ngSecretZq";
	sc_store st;
	char *c, *err = NULL, *body = conf(false, "s", NULL);
	void *d = NULL;
	size_t n = 0;
	const char *log;

	/* The right keys' secret replaced by a wrong one. */
	{
		char *at = strstr(body, env("S3_SECRET_KEY"));
		char *fixed;
		ck_assert_ptr_nonnull(at);
		fixed = loomi_strfmt("%.*s%s%s", (int)(at - body), body, secret,
		                     at + strlen(env("S3_SECRET_KEY")));
		free(body);
		body = fixed;
	}
	tu_log_capture();
	/* The start-up check refuses it. */
	c = loomi_strfmt("%s check_on_start = true;", body);
	ck_assert_int_eq(sc_store_open(&st, MODULE, c, tmp, &err), LOOM_EPLUGIN_INIT);
	free(c);
	free(err);
	sc_store_close(&st);
	ck_assert_msg(tu_log_has("403 SignatureDoesNotMatch"), "log: %s", tu_log_text());
	ck_assert_msg(tu_log_has("check secret_key"), "log: %s", tu_log_text());

	/* Without it, the instance starts and every request is refused. */
	c = loomi_strfmt("%s check_on_start = false;", body);
	sc_store_start(&store, MODULE, c, tmp);
	free(c);
	ck_assert_int_eq(loomi_storage_put(store.ins, "k", "v", 1), LOOM_EPERM);
	ck_assert_int_eq(loomi_storage_get(store.ins, "k", &d, &n), LOOM_EPERM);
	ck_assert_ptr_null(d);
	log = tu_log_text();
	ck_assert_msg(strstr(log, "PUT k: 403 SignatureDoesNotMatch") != NULL, "log: %s", log);
	ck_assert_msg(strstr(log, "GET k: 403 SignatureDoesNotMatch") != NULL, "log: %s", log);
	/* 4xx is not retried. */
	ck_assert_msg(strstr(log, "attempts") == NULL, "log: %s", log);
	/* The secret is in no message. */
	ck_assert_msg(strstr(log, secret) == NULL, "the secret was logged: %s", log);
	free(body);
}
END_TEST

START_TEST(secret_never_logged)
{
	/* A normal life: start, work, fail, stop; the log never holds the
	 * secret. */
	void *d = NULL;
	size_t n;

	tu_log_capture();
	start(false, NULL);
	sc_put_str(store.ins, "a", "b");
	ck_assert_int_eq(loomi_storage_get(store.ins, "missing", &d, &n), LOOM_ENOENT);
	sc_store_close(&store);
	ck_assert_msg(tu_log_has("bucket " BUCKET), "log: %s", tu_log_text());
	ck_assert_msg(!tu_log_has(env("S3_SECRET_KEY")), "the secret was logged: %s",
	              tu_log_text());
}
END_TEST

START_TEST(multipart_put)
{
	const size_t len = 12 * MIB;
	unsigned char *p = sc_pattern(len, 41), buf[100];
	loom_blob_stat st;
	size_t n = 0;

	start(true, "multipart_threshold = \"5M\";");
	sc_put(store.ins, "mp/big", p, len);
	/* Started, three parts (5 + 5 + 2 MiB), completed. */
	ck_assert_int_eq(proxy_count("POST ", "/mp/big?uploads=", " 200", NULL), 1);
	ck_assert_int_eq(proxy_count("PUT ", "/mp/big?partNumber=", " 200", NULL), 3);
	ck_assert_int_eq(proxy_count("PUT ", "/mp/big?partNumber=3&", NULL), 1);
	ck_assert_int_eq(proxy_count("POST ", "/mp/big?uploadId=", " 200", NULL), 1);
	sc_assert_blob(store.ins, "mp/big", p, len);
	ck_assert_int_eq(loomi_storage_stat(store.ins, "mp/big", &st), 0);
	ck_assert_uint_eq(st.size, len);
	ck_assert_uint_ne(st.etag, 0);
	/* A range across the first part boundary. */
	ck_assert_int_eq(loomi_storage_read(store.ins, "mp/big", 5 * MIB - 50, buf, 100, &n), 0);
	ck_assert_uint_eq(n, 100);
	ck_assert_mem_eq(buf, p + 5 * MIB - 50, 100);
	/* At the threshold: one PUT. */
	sc_put(store.ins, "mp/edge", p, 5 * MIB);
	ck_assert_int_eq(proxy_count("/mp/edge?uploads", NULL), 0);
	ck_assert_int_eq(proxy_count("PUT ", "/mp/edge ", NULL), 1);
	sc_assert_blob(store.ins, "mp/edge", p, 5 * MIB);
	/* The same bytes again, as a content-addressed chunk is: fine, and
	 * the etag still changes. */
	sc_put(store.ins, "mp/big", p, len);
	{
		loom_blob_stat st2;
		ck_assert_int_eq(loomi_storage_stat(store.ins, "mp/big", &st2), 0);
		ck_assert_uint_ne(st2.etag, st.etag);
		ck_assert_uint_eq(st2.size, len);
	}
	sc_assert_blob(store.ins, "mp/big", p, len);
	free(p);
}
END_TEST

START_TEST(multipart_writer)
{
	const size_t len = 11 * MIB, piece = 700 * 1024 + 13;
	unsigned char *p = sc_pattern(len, 42);
	void *w = NULL;

	start(true, "multipart_threshold = \"5M\";");
	ck_assert_int_eq(loomi_storage_write_open(store.ins, "mw/stream", &w), 0);
	for (size_t off = 0; off < len; off += piece)
		ck_assert_int_eq(loomi_storage_write(store.ins, w, p + off,
		                                     len - off < piece ? len - off : piece), 0);
	/* Two full parts went while writing; readers see nothing yet. */
	ck_assert_int_eq(proxy_count("PUT ", "/mw/stream?partNumber=", NULL), 2);
	sc_assert_absent(store.ins, "mw/stream");
	ck_assert_int_eq(loomi_storage_write_commit(store.ins, w), 0);
	ck_assert_int_eq(proxy_count("PUT ", "/mw/stream?partNumber=", " 200", NULL), 3);
	ck_assert_int_eq(proxy_count("POST ", "/mw/stream?uploadId=", " 200", NULL), 1);
	sc_assert_blob(store.ins, "mw/stream", p, len);

	/* A small stream is one PUT at commit. */
	ck_assert_int_eq(loomi_storage_write_open(store.ins, "mw/small", &w), 0);
	ck_assert_int_eq(loomi_storage_write(store.ins, w, p, 1000), 0);
	ck_assert_int_eq(loomi_storage_write(store.ins, w, p + 1000, 1000), 0);
	ck_assert_int_eq(proxy_count("/mw/small", NULL), 0);
	ck_assert_int_eq(loomi_storage_write_commit(store.ins, w), 0);
	ck_assert_int_eq(proxy_count("/mw/small?", NULL), 0);
	ck_assert_int_eq(proxy_count("PUT ", "/mw/small ", NULL), 1);
	sc_assert_blob(store.ins, "mw/small", p, 2000);

	/* An abort after parts went up aborts the upload. */
	ck_assert_int_eq(loomi_storage_write_open(store.ins, "mw/aborted", &w), 0);
	ck_assert_int_eq(loomi_storage_write(store.ins, w, p, 6 * MIB), 0);
	ck_assert_int_eq(loomi_storage_write(store.ins, w, p, 1), 0);
	ck_assert_int_eq(proxy_count("PUT ", "/mw/aborted?partNumber=1&", " 200", NULL), 1);
	loomi_storage_write_abort(store.ins, w);
	ck_assert_int_eq(proxy_count("DELETE ", "/mw/aborted?uploadId=", NULL), 1);
	sc_assert_absent(store.ins, "mw/aborted");
	{
		char *keys = sc_list_keys(store.ins, "mw/");
		ck_assert_str_eq(keys, "mw/small mw/stream");
		free(keys);
	}
	free(p);
}
END_TEST

typedef struct seen {
	int calls, stop_at;
	char keys[2048];
} seen;

static int
collect(void *arg, const char *key, const loom_blob_stat *st)
{
	seen *s = arg;
	if (s->keys[0])
		strcat(s->keys, " ");
	strcat(s->keys, key);
	ck_assert_uint_eq(st->size, strlen(key));
	ck_assert_uint_ne(st->etag, 0);
	ck_assert_int_gt(st->mtime_ms, 0);
	return ++s->calls == s->stop_at ? 5 : 0;
}

START_TEST(list_paging)
{
	static const char *const keys[] = {"p/a", "p/b", "p/c/1", "p/c/2", "p/d", "p/e",
	                                   "p/f", "p/g-h", "p/g/h", "p/z", "q"};
	seen s = {0};

	start(true, "list_page = 3;");
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		sc_put_str(store.ins, keys[i], keys[i]);
	ck_assert_int_eq(loomi_storage_list(store.ins, "p/", collect, &s), 0);
	ck_assert_str_eq(s.keys, "p/a p/b p/c/1 p/c/2 p/d p/e p/f p/g-h p/g/h p/z");
	/* Ten keys, three a page: four requests, three of them continuing. */
	ck_assert_int_eq(proxy_count("GET ", "list-type=2&max-keys=3", NULL), 4);
	ck_assert_int_eq(proxy_count("GET ", "?continuation-token=", NULL), 3);
	/* Stopping in the second page asks for no third. */
	s = (seen){0, 5, ""};
	ck_assert_int_eq(loomi_storage_list(store.ins, "p/", collect, &s), 5);
	ck_assert_str_eq(s.keys, "p/a p/b p/c/1 p/c/2 p/d");
	ck_assert_int_eq(proxy_count("GET ", "list-type=2&max-keys=3", NULL), 6);
	/* A page boundary exactly at the end. */
	s = (seen){0};
	ck_assert_int_eq(loomi_storage_list(store.ins, "p/c", collect, &s), 0);
	ck_assert_str_eq(s.keys, "p/c/1 p/c/2");
	s = (seen){0};
	ck_assert_int_eq(loomi_storage_list(store.ins, "", collect, &s), 0);
	ck_assert_uint_eq(s.calls, 11);
}
END_TEST

START_TEST(keys_from_environment)
{
	char *c = loomi_strfmt("endpoint = \"%s\"; bucket = \"" BUCKET "\";\n"
	                       "prefix = \"e@DIR@\"; create_bucket = true;",
	                       env("S3_ENDPOINT"));
	char *err = NULL;
	sc_store st;

	/* Neither in the config nor in the environment: refused. */
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	tu_log_capture();
	ck_assert_int_eq(sc_store_open(&st, MODULE, c, tmp, &err), LOOM_EPLUGIN_INIT);
	free(err);
	sc_store_close(&st);
	ck_assert_msg(tu_log_has("AWS_ACCESS_KEY_ID"), "log: %s", tu_log_text());

	setenv("AWS_ACCESS_KEY_ID", env("S3_ACCESS_KEY"), 1);
	setenv("AWS_SECRET_ACCESS_KEY", env("S3_SECRET_KEY"), 1);
	sc_store_start(&store, MODULE, c, tmp);
	sc_put_str(store.ins, "env/k", "from the environment");
	sc_assert_str(store.ins, "env/k", "from the environment");
	ck_assert_msg(tu_log_has("keys from the environment"), "log: %s", tu_log_text());
	/* A config's keys win over the environment's. */
	setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret", 1);
	sc_store_close(&store);
	{
		char *c2 = loomi_strfmt("%s access_key = \"%s\"; secret_key = \"%s\";", c,
		                        env("S3_ACCESS_KEY"), env("S3_SECRET_KEY"));
		sc_store_start(&store, MODULE, c2, tmp);
		free(c2);
	}
	sc_assert_str(store.ins, "env/k", "from the environment");
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	free(c);
}
END_TEST

START_TEST(retries_on_5xx)
{
	void *d = NULL;
	size_t n;
	const char *log;

	tu_log_capture();
	start(true, "retries = 4;");
	/* Two 503s, then through. */
	sc_put_str(store.ins, "r/fail2/k", "value");
	ck_assert_int_eq(proxy_count("PUT ", "/r/fail2/k ", " 503", NULL), 2);
	ck_assert_int_eq(proxy_count("PUT ", "/r/fail2/k ", " 200", NULL), 1);
	sc_assert_str(store.ins, "r/fail2/k", "value");
	ck_assert_int_eq(proxy_count("GET ", "/r/fail2/k ", NULL), 3);
	/* A 404 is an answer: asked once. */
	ck_assert_int_eq(loomi_storage_get(store.ins, "r/none", &d, &n), LOOM_ENOENT);
	ck_assert_int_eq(proxy_count("GET ", "/r/none ", NULL), 1);
	/* More failures than retries: the error says what happened. */
	ck_assert_int_eq(loomi_storage_put(store.ins, "r/fail9/k", "v", 1), LOOM_EBUSY);
	ck_assert_int_eq(proxy_count("PUT ", "/r/fail9/k ", " 503", NULL), 5);
	log = tu_log_text();
	ck_assert_msg(strstr(log, "PUT r/fail9/k: 503 ServiceUnavailable: injected by "
	                          "flaky-http.py (after 5 attempts)") != NULL,
	              "log: %s", log);
	/* Multipart parts are retried one by one. */
	sc_store_close(&store);
	start(true, "multipart_threshold = \"5M\"; retries = 2;");
	{
		unsigned char *p = sc_pattern(6 * MIB, 51);
		sc_put(store.ins, "r/fail1/big", p, 6 * MIB);
		ck_assert_int_eq(proxy_count("PUT ", "/r/fail1/big?partNumber=1&", " 503", NULL), 1);
		ck_assert_int_eq(proxy_count("PUT ", "/r/fail1/big?partNumber=2&", " 503", NULL), 1);
		ck_assert_int_eq(proxy_count("PUT ", "/r/fail1/big?partNumber=", " 200", NULL), 2);
		sc_assert_blob(store.ins, "r/fail1/big", p, 6 * MIB);
		free(p);
	}
}
END_TEST

START_TEST(retries_on_timeout)
{
	/* The proxy holds the first request 4 s; the plugin gives up on it
	 * after 1 s without progress and asks again. */
	start(true, "retries = 2; timeout_ms = 1000;");
	sc_put_str(store.ins, "t/hang4/k", "late");
	ck_assert_int_ge(proxy_count("PUT ", "/t/hang4/k ", NULL), 1);
	sc_assert_str(store.ins, "t/hang4/k", "late");
}
END_TEST

START_TEST(unreachable_endpoint)
{
	char *c;
	int rv;

	/* A port nothing listens on: 1 (tcpmux, served nowhere today). */
	tu_log_capture();
	c = loomi_strfmt("endpoint = \"http://127.0.0.1:1\"; bucket = \"" BUCKET "\";\n"
	                 "access_key = \"a\"; secret_key = \"TopSecret99\"; retries = 1;");
	sc_store_start(&store, MODULE, c, tmp);
	free(c);
	ck_assert_msg(tu_log_has("starting anyway"), "log: %s", tu_log_text());
	/* The start-up check tries once, whatever retries says. */
	ck_assert_msg(tu_log_has("list (start-up check) " BUCKET ": ") &&
	                  tu_log_has("; check endpoint http://127.0.0.1:1") &&
	                  !tu_log_has("(after 2 attempts); check endpoint"),
	              "log: %s", tu_log_text());
	tu_log_capture();
	rv = loomi_storage_put(store.ins, "k", "v", 1);
	ck_assert_int_eq(rv, LOOM_EUNREACHABLE);
	ck_assert_msg(tu_log_has("PUT k: ") && tu_log_has("(after 2 attempts); check endpoint"),
	              "log: %s", tu_log_text());
	ck_assert_msg(!tu_log_has("TopSecret99"), "the secret was logged: %s", tu_log_text());
}
END_TEST

START_TEST(config_errors)
{
	static const struct {
		const char *conf, *says;
	} cases[] = {
		{"endpoint = \"ftp://h\"; bucket = \"b-1\"; access_key = \"a\"; secret_key = \"s\";",
		 "is not http(s)://host[:port]"},
		{"endpoint = \"http://h/path\"; bucket = \"b-1\"; access_key = \"a\"; "
		 "secret_key = \"s\";",
		 "is not http(s)://host[:port]"},
		{"endpoint = \"http://u:p@h\"; bucket = \"b-1\"; access_key = \"a\"; "
		 "secret_key = \"s\";",
		 "is not http(s)://host[:port]"},
		{"endpoint = \"http://h\"; bucket = \"Bad_Bucket\"; access_key = \"a\"; "
		 "secret_key = \"s\";",
		 "is not a bucket name"},
		{"endpoint = \"http://h\"; bucket = \"b-1\"; prefix = \"../x\"; access_key = \"a\"; "
		 "secret_key = \"s\";",
		 "is not a key prefix"},
		{"endpoint = \"http://h\"; bucket = \"b-1\"; region = \"US East\"; "
		 "access_key = \"a\"; secret_key = \"s\";",
		 "is not a region name"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		sc_store st;
		char *err = NULL;
		tu_log_capture();
		ck_assert_int_eq(sc_store_open(&st, MODULE, cases[i].conf, tmp, &err),
		                 LOOM_EPLUGIN_INIT);
		ck_assert_msg(tu_log_has(cases[i].says), "case %zu: log: %s", i, tu_log_text());
		free(err);
		sc_store_close(&st);
	}
	/* The host's own checks: ranges and unknown keys. */
	{
		sc_store st;
		char *err = NULL;
		ck_assert_int_eq(sc_store_open(&st, MODULE,
		                               "endpoint = \"http://h\"; bucket = \"b-1\"; "
		                               "multipart_threshold = \"1M\";",
		                               tmp, &err),
		                 LOOM_ECONFIG);
		ck_assert_msg(strstr(err, "multipart_threshold") != NULL, "%s", err);
		free(err);
		sc_store_close(&st);
		ck_assert_int_eq(sc_store_open(&st, MODULE,
		                               "endpoint = \"http://h\"; bucket = \"b-1\"; "
		                               "secret_keys = \"x\";",
		                               tmp, &err),
		                 LOOM_ECONFIG);
		ck_assert_msg(strstr(err, "did you mean") != NULL, "%s", err);
		free(err);
		sc_store_close(&st);
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create(MODULE);
	TCase *tc = tcase_create("s3"), *tx = tcase_create("xml");
	const char *t = getenv("TMPDIR");

	if (getenv("S3_ENDPOINT") == NULL || getenv("S3_PROXY_LOG") == NULL) {
		fprintf(stderr, "test-storage-s3: no S3 server; run it through "
		                "tests/unit/plugins/storage-s3.sh, which starts one\n");
		return 77;
	}

	/* The per-test prefix comes from the temporary directory's path, which
	 * must then be made of key characters. */
	if (t != NULL && *t && strspn(t, "/ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	                                   "0123456789._-") != strlen(t))
		setenv("TMPDIR", "/tmp", 1);
	conf_conformance = conf(false, "c", "create_bucket = true;");
	target.config = conf_conformance;

	tcase_add_test(tx, xml_reader);
	suite_add_tcase(s, tx);
	sc_add_conformance(s, &target);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, capabilities);
	tcase_add_test(tc, durable_across_instances);
	tcase_add_test(tc, wrong_secret_refused);
	tcase_add_test(tc, secret_never_logged);
	tcase_add_test(tc, multipart_put);
	tcase_add_test(tc, multipart_writer);
	tcase_add_test(tc, list_paging);
	tcase_add_test(tc, keys_from_environment);
	tcase_add_test(tc, retries_on_5xx);
	tcase_add_test(tc, retries_on_timeout);
	tcase_add_test(tc, unreachable_endpoint);
	tcase_add_test(tc, config_errors);
	suite_add_tcase(s, tc);
	{
		int rv = tu_run(s);
		free(conf_conformance);
		return rv;
	}
}

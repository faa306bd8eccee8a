/* The web UI: loomd serves the static files of web/ (one page, ES modules,
 * CSS; no build step) at /, and the chart library the distribution ships
 * (dygraphs) under /dygraphs/.  The pages hold no data: they read it from
 * the API, which checks the caller's credential, so these routes are
 * public — the sign-in page must load without one.
 *
 *   GET /                     the root's index.html
 *   GET /{file}               a file of the root (loomd.conf web.root)
 *   GET /dygraphs/{file}      dygraph.min.js or dygraph.min.css of
 *                             web.dygraphs
 *
 * What is served: one flat directory, no subdirectories; a name of
 * letters, digits, '.', '_' and '-', not starting with '.' (no dotfiles),
 * sent without percent-escapes; a regular file whose real path (symlinks
 * resolved) is inside the root; a known extension (its Content-Type);
 * anything else is 404, as a file that is not there.
 *
 * Every answer carries a strict Content-Security-Policy (scripts, styles
 * and connections from loomd's own origin only, no inline code, no
 * framing), X-Content-Type-Options: nosniff and Referrer-Policy:
 * no-referrer.  Files carry an ETag (a hash of their bytes) and
 * Cache-Control: no-cache, so a browser revalidates each time and gets a
 * 304 while the file is unchanged: no build step means no hashed names, and
 * an upgrade is seen at the next load. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/core/log.h"
#include "host/core/util.h"
#include "host/server/module.h"
#include "web.h"

#ifndef LOOM_WEB_DIR
#define LOOM_WEB_DIR "/usr/share/loom/web"
#endif
#ifndef LOOM_DYGRAPHS_DIR
#define LOOM_DYGRAPHS_DIR "/usr/share/javascript/dygraphs"
#endif

#define MAX_FILE (16u << 20) /* the largest file served */
#define MAX_NAME 128

const char loomi_web_csp[] =
	"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
	"form-action 'self'; frame-ancestors 'none'";

static const struct {
	const char *ext;
	const char *type;
} types[] = {
	{".html", "text/html; charset=utf-8"},
	{".js", "text/javascript; charset=utf-8"},
	{".mjs", "text/javascript; charset=utf-8"},
	{".css", "text/css; charset=utf-8"},
	{".json", "application/json"},
	{".svg", "image/svg+xml"},
	{".png", "image/png"},
	{".ico", "image/x-icon"},
	{".txt", "text/plain; charset=utf-8"},
	{".woff2", "font/woff2"},
};

/* The chart library's files served from web.dygraphs. */
static const char *const dygraphs_files[] = {"dygraph.min.js", "dygraph.min.css"};

const char *
loomi_web_type(const char *name)
{
	const char *dot = strrchr(name, '.');

	if (dot == NULL)
		return NULL;
	for (size_t i = 0; i < LOOMI_N(types); i++)
		if (strcmp(dot, types[i].ext) == 0)
			return types[i].type;
	return NULL;
}

bool
loomi_web_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > MAX_NAME || name[0] == '.')
		return false;
	for (const char *p = name; *p; p++) {
		bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		          (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-';
		if (!ok)
			return false;
	}
	return strstr(name, "..") == NULL;
}

/* 64-bit FNV-1a: an ETag, not a security measure. */
static uint64_t
fnv1a(const unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* What every answer of the web UI carries, files and errors alike. */
static void
add_policy(loomi_http_res *res)
{
	loomi_api_header(res, "Content-Security-Policy", loomi_web_csp);
	loomi_api_header(res, "X-Content-Type-Options", "nosniff");
	loomi_api_header(res, "Referrer-Policy", "no-referrer");
}

static void
not_found(loomi_http_res *res, const char *path)
{
	loomi_api_error(res, 404, "not_found",
	                "no such file: %.200s; the web UI is at /, the API under /api/v1", path);
	add_policy(res);
}

/* Does an If-None-Match list name etag (or "*")?  Weak comparison, as
 * RFC 9110 asks for GET. */
static bool
etag_matches(const char *list, const char *etag)
{
	size_t n = strlen(etag);
	const char *p = list;

	while (p && *p) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '*')
			return true;
		if (strncmp(p, "W/", 2) == 0)
			p += 2;
		if (strncmp(p, etag, n) == 0 && (p[n] == '\0' || p[n] == ',' || p[n] == ' ' ||
		                                 p[n] == '\t'))
			return true;
		p = strchr(p, ',');
	}
	return false;
}

/* Read root/name into *data when it is a regular file inside root (its
 * real path, symlinks resolved); 0, or an errno (ENOENT for anything that
 * must read as "not there"). */
static int
read_inside(const char *root, const char *name, char **data, size_t *len)
{
	char *rroot = NULL, *path = NULL, *real = NULL, *buf = NULL;
	struct stat st;
	size_t n, got = 0;
	int fd = -1, rv = ENOENT;

	if ((rroot = realpath(root, NULL)) == NULL) {
		rv = errno;
		goto out;
	}
	path = loomi_path_join(rroot, name);
	if ((real = realpath(path, NULL)) == NULL)
		goto out;
	n = strlen(rroot);
	/* inside the root, and no part of the way a dot-name */
	if (strncmp(real, rroot, n) != 0 || (real[n] != '/' && strcmp(rroot, "/") != 0) ||
	    strstr(real + n, "/.") != NULL)
		goto out;
	if ((fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) < 0)
		goto out;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		goto out;
	if ((uint64_t)st.st_size > MAX_FILE) {
		LOG_WARN("web: %s is %lld bytes, more than the %u served; left out", real,
		         (long long)st.st_size, MAX_FILE);
		goto out;
	}
	buf = loomi_xmalloc((size_t)st.st_size + 1);
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rv = r < 0 ? errno : EIO;
			goto out;
		}
		got += (size_t)r;
	}
	buf[got] = '\0';
	*data = buf;
	*len = got;
	buf = NULL;
	rv = 0;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	free(real);
	free(path);
	free(rroot);
	return rv;
}

/* Answer req with the file name of root (setting: the loomd.conf key that
 * sets root, for the log). */
static void
serve(const loomi_http_req *req, loomi_http_res *res, const char *root, const char *setting,
      const char *name)
{
	const char *type = loomi_web_type(name);
	char *data = NULL, etag[48];
	size_t len = 0;
	int rv;

	/* the name as sent: no escapes, so what is checked is what was asked */
	if (type == NULL || !loomi_web_name_ok(name) || strchr(req->path, '%') != NULL) {
		not_found(res, req->path);
		return;
	}
	if ((rv = read_inside(root, name, &data, &len)) != 0) {
		if (rv != ENOENT && rv != ENOTDIR && rv != ELOOP)
			LOG_WARN_LIMITED("web: cannot read %s in %s (%s): %s", name, root, setting,
			                 strerror(rv));
		not_found(res, req->path);
		return;
	}
	snprintf(etag, sizeof etag, "\"%zx-%016llx\"", len,
	         (unsigned long long)fnv1a((const unsigned char *)data, len));
	add_policy(res);
	loomi_api_header(res, "ETag", etag);
	loomi_api_header(res, "Cache-Control", "no-cache");
	if (req->if_none_match && etag_matches(req->if_none_match, etag)) {
		free(data);
		res->status = 304;
		res->text = loomi_strdup("");
		res->text_len = 0;
		res->content_type = type;
		return;
	}
	res->status = 200;
	res->text = data;
	res->text_len = len;
	res->content_type = type;
}

static const char *
web_root(loomi_daemon *d)
{
	return d->conf.web_root ? d->conf.web_root : LOOM_WEB_DIR;
}

static const char *
dygraphs_dir(loomi_daemon *d)
{
	return d->conf.web_dygraphs ? d->conf.web_dygraphs : LOOM_DYGRAPHS_DIR;
}

static void
get_index(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	serve(req, res, web_root(d), "web.root", "index.html");
}

static void
get_file(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	serve(req, res, web_root(d), "web.root", req->params[0]);
}

static void
get_dygraphs(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	for (size_t i = 0; i < LOOMI_N(dygraphs_files); i++) {
		if (strcmp(req->params[0], dygraphs_files[i]) == 0) {
			serve(req, res, dygraphs_dir(d), "web.dygraphs", req->params[0]);
			return;
		}
	}
	not_found(res, req->path);
}

/* Say where the files are, or that they are missing: loomd still serves
 * the API without its UI. */
static int
web_start(loomi_daemon *d, char **err)
{
	char *index = loomi_path_join(web_root(d), "index.html");
	char *lib = loomi_path_join(dygraphs_dir(d), dygraphs_files[0]);

	(void)err;
	if (access(index, R_OK) != 0)
		LOG_WARN("web: no web UI: cannot read %s (%s); install Loom's web/ files there or "
		         "set web.root in loomd.conf",
		         index, strerror(errno));
	else if (access(lib, R_OK) != 0)
		LOG_WARN("web: the web UI's charts are off: cannot read %s (%s); install the "
		         "chart library (Debian: libjs-dygraphs) or set web.dygraphs in loomd.conf",
		         lib, strerror(errno));
	else
		LOG_DEBUG("web: serving the web UI from %s, charts from %s", web_root(d),
		          dygraphs_dir(d));
	free(index);
	free(lib);
	return 0;
}

static const loomi_route routes[] = {
	{"GET", "/", get_index, LOOMI_ACCESS_PUBLIC, NULL},
	{"GET", "/{file}", get_file, LOOMI_ACCESS_PUBLIC, NULL},
	{"GET", "/dygraphs/{file}", get_dygraphs, LOOMI_ACCESS_PUBLIC, NULL},
};

const loomi_module loomi_web_module = {
	.name = "web",
	.start = web_start,
	.routes = routes,
	.n_routes = LOOMI_N(routes),
};

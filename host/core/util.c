/* Small helpers shared by the host's modules. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static void
oom(size_t n)
{
	fprintf(stderr, "loom: out of memory (allocating %zu bytes)\n", n);
	abort();
}

void *
loomi_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		oom(n);
	return p;
}

void *
loomi_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (p == NULL)
		oom(n * size);
	return p;
}

void *
loomi_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL)
		oom(n);
	return q;
}

char *
loomi_strdup(const char *s)
{
	return s ? loomi_strndup(s, strlen(s)) : NULL;
}

char *
loomi_strndup(const char *s, size_t n)
{
	char *d = loomi_xmalloc(n + 1);
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

char *
loomi_vstrfmt(const char *fmt, va_list ap)
{
	va_list ap2;
	int n;
	char *s;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	s = loomi_xmalloc((size_t)(n < 0 ? 0 : n) + 1);
	vsnprintf(s, (size_t)(n < 0 ? 0 : n) + 1, fmt, ap);
	return s;
}

char *
loomi_strfmt(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = loomi_vstrfmt(fmt, ap);
	va_end(ap);
	return s;
}

void
loomi_strv_push(loomi_strv *sv, char *owned)
{
	if (sv->n == sv->cap) {
		sv->cap = sv->cap ? sv->cap * 2 : 8;
		sv->v = loomi_xrealloc(sv->v, sv->cap * sizeof *sv->v);
	}
	sv->v[sv->n++] = owned;
}

void
loomi_strv_pushf(loomi_strv *sv, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	loomi_strv_push(sv, loomi_vstrfmt(fmt, ap));
	va_end(ap);
}

void
loomi_strv_free(loomi_strv *sv)
{
	for (size_t i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	sv->v = NULL;
	sv->n = sv->cap = 0;
}

char *
loomi_strv_join(const loomi_strv *sv, const char *sep)
{
	size_t len = 1, sl = strlen(sep);
	char *s, *p;

	for (size_t i = 0; i < sv->n; i++)
		len += strlen(sv->v[i]) + sl;
	p = s = loomi_xmalloc(len);
	*p = '\0';
	for (size_t i = 0; i < sv->n; i++) {
		size_t l = strlen(sv->v[i]);
		if (i) {
			memcpy(p, sep, sl);
			p += sl;
		}
		memcpy(p, sv->v[i], l);
		p += l;
	}
	*p = '\0';
	return s;
}

/* Optimal string alignment distance (Damerau–Levenshtein with adjacent
 * transpositions), bounded to short words. */
static size_t
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t d[65][65];

	if (la > 64 || lb > 64)
		return (size_t)-1;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			size_t cost = a[i - 1] != b[j - 1];
			size_t v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < v)
				v = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	}
	return d[la][lb];
}

const char *
loomi_suggest(const char *word, const char *const *candidates, size_t n)
{
	const char *best = NULL;
	size_t best_d = (size_t)-1, len = strlen(word);
	size_t limit = len <= 3 ? 1 : len <= 6 ? 2 : 3;

	for (size_t i = 0; i < n; i++) {
		size_t d;
		if (candidates[i] == NULL)
			continue;
		d = edit_distance(word, candidates[i]);
		if (d < best_d) {
			best_d = d;
			best = candidates[i];
		}
	}
	return best_d <= limit ? best : NULL;
}

char *
loomi_path_join(const char *dir, const char *name)
{
	size_t l = strlen(dir);
	if (name[0] == '/')
		return loomi_strdup(name);
	if (l > 0 && dir[l - 1] == '/')
		return loomi_strfmt("%s%s", dir, name);
	return loomi_strfmt("%s/%s", dir, name);
}

int
loomi_mkdir_p(const char *path, unsigned mode)
{
	char *p;
	int rv = 0;

	if (path == NULL || path[0] == '\0')
		return EINVAL;
	p = loomi_strdup(path);
	for (char *s = p + 1;; s++) {
		if (*s == '/' || *s == '\0') {
			char c = *s;
			*s = '\0';
			if (mkdir(p, mode) != 0 && errno != EEXIST) {
				rv = errno;
				break;
			}
			*s = c;
			if (c == '\0')
				break;
		}
	}
	if (rv == 0) {
		struct stat st;
		if (stat(path, &st) != 0)
			rv = errno;
		else if (!S_ISDIR(st.st_mode))
			rv = ENOTDIR;
	}
	free(p);
	return rv;
}

static int
fsync_dir_of(const char *path)
{
	char *dir = loomi_strdup(path);
	char *slash = strrchr(dir, '/');
	int fd, rv = 0;

	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		strcpy(dir, ".");
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0)
		rv = errno;
	if (fd >= 0)
		close(fd);
	free(dir);
	return rv;
}

int
loomi_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
	char *tmp = loomi_strfmt("%s.tmp.%ld", path, (long)getpid());
	const char *p = data;
	int fd, rv = 0;

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0) {
		rv = errno;
		free(tmp);
		return rv;
	}
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			rv = errno;
			break;
		}
		p += w;
		len -= (size_t)w;
	}
	if (rv == 0 && fsync(fd) != 0)
		rv = errno;
	if (close(fd) != 0 && rv == 0)
		rv = errno;
	if (rv == 0 && rename(tmp, path) != 0)
		rv = errno;
	if (rv != 0)
		unlink(tmp);
	else
		rv = fsync_dir_of(path);
	free(tmp);
	return rv;
}

int
loomi_read_file(const char *path, char **data, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;

	if (fp == NULL)
		return errno;
	for (;;) {
		size_t r;
		if (cap - n < 4096) {
			cap = cap ? cap * 2 : 8192;
			buf = loomi_xrealloc(buf, cap + 1);
		}
		r = fread(buf + n, 1, cap - n, fp);
		n += r;
		if (r == 0)
			break;
	}
	if (ferror(fp)) {
		int e = errno ? errno : EIO;
		fclose(fp);
		free(buf);
		return e;
	}
	fclose(fp);
	if (buf == NULL)
		buf = loomi_xmalloc(1);
	buf[n] = '\0';
	*data = buf;
	if (len)
		*len = n;
	return 0;
}

char *
loomi_iso_time(int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char buf[40];

	gmtime_r(&t, &tm);
	strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
	return loomi_strfmt("%s.%03dZ", buf, (int)(ms % 1000));
}

int64_t
loomi_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t
loomi_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t
utf8_seq(const unsigned char *s)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
		return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
		return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80
		           ? 4
		           : 0;
	}
	return 0;
}

char *
loomi_utf8_clean(char *s)
{
	unsigned char *p = (unsigned char *)s;
	while (*p) {
		size_t n = utf8_seq(p);
		if (n == 0)
			*p++ = '?';
		else
			p += n;
	}
	return s;
}

void *
loomi_aligned_zalloc(size_t bytes)
{
	void *p = NULL;
	size_t n = (bytes + 63) & ~(size_t)63;

	if (posix_memalign(&p, 64, n ? n : 64) != 0)
		return NULL;
	memset(p, 0, n ? n : 64);
	return p;
}

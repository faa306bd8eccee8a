/* <loom/util.h>: formatted strings, whole files, directories.  The host's
 * loomi_strfmt, loomi_read_file, loomi_write_file_atomic and loomi_mkdir_p
 * are these. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <loom/util.h>

char *
loom_vstrfmt(const char *fmt, va_list ap)
{
	va_list ap2;
	int n;
	char *s;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return NULL; /* errno says why */
	if ((s = malloc((size_t)n + 1)) == NULL)
		return NULL;
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	return s;
}

char *
loom_strfmt(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = loom_vstrfmt(fmt, ap);
	va_end(ap);
	return s;
}

/* The LOOM_E* code for an errno value (errno itself is left as it is). */
static int
code_of(int e)
{
	switch (e) {
	case 0: return 0;
	case ENOENT: return LOOM_ENOENT;
	case EACCES:
	case EPERM:
	case EROFS: return LOOM_EPERM;
	case ENOMEM: return LOOM_ENOMEM;
	case EINVAL:
	case ENOTDIR:
	case EISDIR:
	case ENAMETOOLONG:
	case ELOOP: return LOOM_EINVAL;
	default: return LOOM_EIO;
	}
}

/* Fail with errno e: set it and return its code. */
static int
fail(int e)
{
	errno = e;
	return code_of(e);
}

int
loom_mkdir_p(const char *path, unsigned mode)
{
	struct stat st;
	size_t len;
	char *p;
	int e = 0;

	if (path == NULL || path[0] == '\0')
		return fail(EINVAL);
	len = strlen(path);
	if ((p = malloc(len + 1)) == NULL)
		return fail(ENOMEM);
	memcpy(p, path, len + 1);
	for (char *s = p + 1;; s++) {
		if (*s == '/' || *s == '\0') {
			char c = *s;
			*s = '\0';
			if (mkdir(p, (mode_t)mode) != 0 && errno != EEXIST) {
				e = errno;
				break;
			}
			*s = c;
			if (c == '\0')
				break;
		}
	}
	free(p);
	if (e == 0) {
		if (stat(path, &st) != 0)
			e = errno;
		else if (!S_ISDIR(st.st_mode))
			e = ENOTDIR;
	}
	return fail(e);
}

/* fsync the directory holding path, so a rename in it is durable. */
static int
fsync_dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	size_t n = slash == NULL ? 1 : slash == path ? 1 : (size_t)(slash - path);
	char *dir = malloc(n + 1);
	int fd, e = 0;

	if (dir == NULL)
		return ENOMEM;
	if (slash == NULL)
		memcpy(dir, ".", 2);
	else {
		memcpy(dir, path, n);
		dir[n] = '\0';
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0)
		e = errno;
	if (fd >= 0)
		close(fd);
	free(dir);
	return e;
}

int
loom_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
	const char *p = data;
	char *tmp;
	int fd, e = 0;

	if (path == NULL || path[0] == '\0' || (data == NULL && len > 0))
		return fail(EINVAL);
	if ((tmp = loom_strfmt("%s.tmp.%ld", path, (long)getpid())) == NULL)
		return fail(ENOMEM);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
	if (fd < 0) {
		e = errno;
		free(tmp);
		return fail(e);
	}
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			e = errno;
			break;
		}
		p += w;
		len -= (size_t)w;
	}
	if (e == 0 && fsync(fd) != 0)
		e = errno;
	if (close(fd) != 0 && e == 0)
		e = errno;
	if (e == 0 && rename(tmp, path) != 0)
		e = errno;
	if (e != 0)
		unlink(tmp);
	else
		e = fsync_dir_of(path);
	free(tmp);
	return fail(e);
}

int
loom_file_read(const char *path, char **data, size_t *len)
{
	FILE *fp;
	char *buf = NULL, *nbuf;
	size_t n = 0, cap = 0;
	int e;

	if (path == NULL || data == NULL)
		return fail(EINVAL);
	if ((fp = fopen(path, "rb")) == NULL)
		return fail(errno);
	for (;;) {
		size_t r;
		if (cap - n < 4096) {
			cap = cap ? cap * 2 : 8192;
			if ((nbuf = realloc(buf, cap + 1)) == NULL) {
				fclose(fp);
				free(buf);
				return fail(ENOMEM);
			}
			buf = nbuf;
		}
		r = fread(buf + n, 1, cap - n, fp);
		n += r;
		if (r == 0)
			break;
	}
	if (ferror(fp)) {
		e = errno ? errno : EIO;
		fclose(fp);
		free(buf);
		return fail(e);
	}
	fclose(fp);
	buf[n] = '\0';
	*data = buf;
	if (len)
		*len = n;
	return 0;
}

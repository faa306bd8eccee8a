/* <loom/util.h>: formatted strings, whole files read and replaced
 * atomically, mkdir -p; and <loom/exporter.h>'s loom_export_writer, the
 * buffered text writer exporters stream through. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <loom/exporter.h>
#include <loom/util.h>

#include "testutil.h"

START_TEST(strfmt)
{
	char *s = loom_strfmt("%s-%05d-%.2f", "run", 42, 0.5);
	char big[5000];

	ck_assert_str_eq(s, "run-00042-0.50");
	free(s);
	s = loom_strfmt("%s", "");
	ck_assert_str_eq(s, "");
	free(s);
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	s = loom_strfmt("<%s>", big);
	ck_assert_uint_eq(strlen(s), sizeof big + 1);
	free(s);
}
END_TEST

START_TEST(files)
{
	char *dir = tu_tmpdir(), *path = loom_strfmt("%s/a/b/c", dir), *file, *data = NULL;
	size_t len = 99;
	struct stat st;
	static const char bytes[] = {'h', 'i', '\0', '!'};

	/* mkdir -p, twice */
	ck_assert_int_eq(loom_mkdir_p(path, 0755), 0);
	ck_assert_int_eq(loom_mkdir_p(path, 0755), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	/* write, read back (NUL-terminated, embedded NULs kept), replace */
	file = loom_strfmt("%s/w.bin", path);
	ck_assert_int_eq(loom_file_write_atomic(file, bytes, sizeof bytes, 0600), 0);
	ck_assert_int_eq(stat(file, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(loom_file_read(file, &data, &len), 0);
	ck_assert_uint_eq(len, sizeof bytes);
	ck_assert_int_eq(memcmp(data, bytes, sizeof bytes), 0);
	ck_assert_int_eq(data[len], '\0');
	free(data);
	ck_assert_int_eq(loom_file_write_atomic(file, "new", 3, 0644), 0);
	ck_assert_int_eq(loom_file_read(file, &data, NULL), 0);
	ck_assert_str_eq(data, "new");
	free(data);
	/* no temporary file is left behind */
	{
		char *tmp = loom_strfmt("%s.tmp.%ld", file, (long)getpid());
		ck_assert_int_ne(access(tmp, F_OK), 0);
		free(tmp);
	}
	/* an empty file */
	ck_assert_int_eq(loom_file_write_atomic(file, NULL, 0, 0644), 0);
	ck_assert_int_eq(loom_file_read(file, &data, &len), 0);
	ck_assert_uint_eq(len, 0);
	ck_assert_str_eq(data, "");
	free(data);
	/* a large one, past the reader's first buffer */
	{
		size_t n = 100000;
		char *big = malloc(n);
		for (size_t i = 0; i < n; i++)
			big[i] = (char)(i * 7);
		ck_assert_int_eq(loom_file_write_atomic(file, big, n, 0644), 0);
		ck_assert_int_eq(loom_file_read(file, &data, &len), 0);
		ck_assert_uint_eq(len, n);
		ck_assert_int_eq(memcmp(data, big, n), 0);
		free(data);
		free(big);
	}
	free(file);
	free(path);
	tu_rmrf(dir);
	free(dir);
}
END_TEST

START_TEST(file_errors)
{
	char *dir = tu_tmpdir(), *path, *data = (char *)"untouched";
	size_t len = 7;

	/* each failure: a LOOM_E* code, the cause in errno, outputs untouched */
	path = loom_strfmt("%s/missing", dir);
	errno = 0;
	ck_assert_int_eq(loom_file_read(path, &data, &len), LOOM_ENOENT);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_str_eq(data, "untouched");
	ck_assert_uint_eq(len, 7);
	free(path);
	/* a directory is not a file */
	ck_assert_int_eq(loom_file_read(dir, &data, &len), LOOM_EINVAL);
	ck_assert_int_eq(errno, EISDIR);
	/* no such directory to write into */
	path = loom_strfmt("%s/no/such/file", dir);
	ck_assert_int_eq(loom_file_write_atomic(path, "x", 1, 0644), LOOM_ENOENT);
	ck_assert_int_eq(errno, ENOENT);
	free(path);
	/* replacing a directory */
	path = loom_strfmt("%s/sub", dir);
	ck_assert_int_eq(loom_mkdir_p(path, 0755), 0);
	ck_assert_int_ne(loom_file_write_atomic(path, "x", 1, 0644), 0);
	ck_assert_int_eq(errno, EISDIR);
	{
		/* the temporary file is removed */
		char *tmp = loom_strfmt("%s.tmp.%ld", path, (long)getpid());
		ck_assert_int_ne(access(tmp, F_OK), 0);
		free(tmp);
	}
	free(path);
	/* mkdir -p through a file */
	path = loom_strfmt("%s/plain", dir);
	ck_assert_int_eq(loom_file_write_atomic(path, "x", 1, 0644), 0);
	ck_assert_int_eq(loom_mkdir_p(path, 0755), LOOM_EINVAL);
	ck_assert_int_eq(errno, ENOTDIR);
	free(path);
	path = loom_strfmt("%s/plain/below", dir);
	ck_assert_int_eq(loom_mkdir_p(path, 0755), LOOM_EINVAL);
	ck_assert_int_eq(errno, ENOTDIR);
	free(path);
	/* permission (not as root, who may write anywhere) */
	if (geteuid() != 0) {
		path = loom_strfmt("%s/ro", dir);
		ck_assert_int_eq(loom_mkdir_p(path, 0555), 0);
		free(path);
		path = loom_strfmt("%s/ro/x", dir);
		ck_assert_int_eq(loom_file_write_atomic(path, "x", 1, 0644), LOOM_EPERM);
		ck_assert_int_eq(errno, EACCES);
		ck_assert_int_eq(loom_mkdir_p(path, 0755), LOOM_EPERM);
		free(path);
	}
	/* arguments */
	ck_assert_int_eq(loom_mkdir_p("", 0755), LOOM_EINVAL);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(loom_mkdir_p(NULL, 0755), LOOM_EINVAL);
	ck_assert_int_eq(loom_file_write_atomic("", "x", 1, 0644), LOOM_EINVAL);
	ck_assert_int_eq(loom_file_write_atomic(NULL, "x", 1, 0644), LOOM_EINVAL);
	ck_assert_int_eq(loom_file_write_atomic("/tmp/x", NULL, 1, 0644), LOOM_EINVAL);
	ck_assert_int_eq(loom_file_read(NULL, &data, &len), LOOM_EINVAL);
	ck_assert_int_eq(loom_file_read("/tmp", NULL, &len), LOOM_EINVAL);
	tu_rmrf(dir);
	free(dir);
}
END_TEST

/* ------------------------------------------------------------------ the writer */

typedef struct sink_buf {
	char *data;
	size_t len, cap;
	int writes;
	int fail_after; /* fail every write after this many; -1 never */
} sink_buf;

static int
sink_write(void *arg, const void *data, size_t len)
{
	sink_buf *b = arg;
	if (b->fail_after >= 0 && b->writes >= b->fail_after)
		return LOOM_EIO;
	b->writes++;
	if (b->len + len + 1 > b->cap) {
		b->cap = (b->len + len + 1) * 2;
		b->data = realloc(b->data, b->cap);
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

START_TEST(writer)
{
	sink_buf b = {NULL, 0, 0, 0, -1};
	loom_export_sink sink = {&b, sink_write};
	loom_export_writer *w;
	char big[1000], buf[LOOM_DOUBLE_BUF];

	ck_assert_int_eq(loom_export_writer_open(&sink, &w), 0);
	loom_export_writer_puts(w, "a,");
	loom_export_writer_put(w, "bc", 1);
	loom_export_writer_printf(w, ",%d,%s,", 7, "x");
	loom_export_writer_double(w, 0.1);
	loom_export_writer_puts(w, ",");
	loom_export_writer_double(w, -0.0);
	loom_export_writer_puts(w, ",");
	loom_export_writer_double(w, 2.5);
	/* a long printf: past the writer's small buffer */
	memset(big, 'y', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	loom_export_writer_printf(w, "[%s]", big);
	ck_assert_int_eq(loom_export_writer_error(w), 0);
	/* nothing reaches the sink before the buffer fills or the end */
	ck_assert_int_eq(b.writes, 0);
	ck_assert_int_eq(loom_export_writer_close(w), 0);
	ck_assert_int_eq(b.writes, 1);
	ck_assert_uint_eq(b.len, strlen("a,b,7,x,0.10000000000000001,-0.0,2.5") +
	                             sizeof big + 1);
	ck_assert_int_eq(strncmp(b.data, "a,b,7,x,0.10000000000000001,-0.0,2.5[yyy", 40), 0);
	ck_assert_int_eq(b.data[b.len - 1], ']');
	ck_assert_uint_eq(loom_format_double(buf, 0.1), 19);
	ck_assert_double_eq(strtod(buf, NULL), 0.1);
	ck_assert_uint_eq(loom_format_double(buf, 2.0), 1);
	ck_assert_str_eq(buf, "2");
	free(b.data);
}
END_TEST

START_TEST(writer_streams)
{
	sink_buf b = {NULL, 0, 0, 0, -1};
	loom_export_sink sink = {&b, sink_write};
	loom_export_writer *w;
	size_t n = 0;

	/* a megabyte goes out in 64 KiB writes, in order */
	ck_assert_int_eq(loom_export_writer_open(&sink, &w), 0);
	for (int i = 0; i < 100000; i++) {
		loom_export_writer_printf(w, "%09d\n", i);
		n += 10;
	}
	ck_assert_int_eq(loom_export_writer_close(w), 0);
	ck_assert_uint_eq(b.len, n);
	ck_assert_int_eq(b.writes, (int)((n + 65535) / 65536));
	ck_assert_int_eq(memcmp(b.data + 10 * 54321, "000054321\n", 10), 0);
	free(b.data);
}
END_TEST

START_TEST(writer_remembers_the_first_error)
{
	sink_buf b = {NULL, 0, 0, 0, 1};
	loom_export_sink sink = {&b, sink_write};
	loom_export_writer *w;
	char block[70000];

	memset(block, 'z', sizeof block);
	ck_assert_int_eq(loom_export_writer_open(&sink, &w), 0);
	loom_export_writer_put(w, block, sizeof block); /* one write goes through */
	loom_export_writer_put(w, block, sizeof block); /* the second fails */
	ck_assert_int_eq(loom_export_writer_error(w), LOOM_EIO);
	loom_export_writer_fail(w, LOOM_ENOMEM);       /* the first error stays */
	loom_export_writer_puts(w, "ignored");
	loom_export_writer_printf(w, "%s", "ignored");
	loom_export_writer_double(w, 1);
	ck_assert_int_eq(loom_export_writer_close(w), LOOM_EIO);
	ck_assert_int_eq(b.writes, 1);
	free(b.data);

	/* an error recorded by the exporter itself */
	memset(&b, 0, sizeof b);
	b.fail_after = -1;
	ck_assert_int_eq(loom_export_writer_open(&sink, &w), 0);
	loom_export_writer_puts(w, "partial");
	loom_export_writer_fail(w, LOOM_EINVAL);
	ck_assert_int_eq(loom_export_writer_close(w), LOOM_EINVAL);
	ck_assert_int_eq(b.writes, 0);

	/* arguments */
	ck_assert_int_eq(loom_export_writer_open(NULL, &w), LOOM_EINVAL);
	ck_assert_ptr_null(w);
	ck_assert_int_eq(loom_export_writer_open(&sink, NULL), LOOM_EINVAL);
	ck_assert_int_eq(loom_export_writer_close(NULL), LOOM_EINVAL);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("util");
	TCase *tc = tcase_create("util");
	tcase_add_test(tc, strfmt);
	tcase_add_test(tc, files);
	tcase_add_test(tc, file_errors);
	tcase_add_test(tc, writer);
	tcase_add_test(tc, writer_streams);
	tcase_add_test(tc, writer_remembers_the_first_error);
	suite_add_tcase(s, tc);
	return tu_run(s);
}

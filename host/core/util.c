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

#include <loom/util.h>

#include "util.h"

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

/* The file helpers are libloom's (<loom/util.h>); they return a LOOM_E*
 * code and leave the cause in errno, which is what these return. */
int
loomi_mkdir_p(const char *path, unsigned mode)
{
	return loom_mkdir_p(path, mode) == 0 ? 0 : errno;
}

int
loomi_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
	return loom_file_write_atomic(path, data, len, mode) == 0 ? 0 : errno;
}

int
loomi_read_file(const char *path, char **data, size_t *len)
{
	return loom_file_read(path, data, len) == 0 ? 0 : errno;
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

size_t
loomi_utf8_next(const char *s, uint32_t *cp, bool *valid)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = utf8_seq(p);

	*valid = n > 0;
	switch (n) {
	case 1:
		*cp = p[0];
		return 1;
	case 2:
		*cp = (uint32_t)(p[0] & 0x1f) << 6 | (p[1] & 0x3f);
		return 2;
	case 3:
		*cp = (uint32_t)(p[0] & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
		return 3;
	case 4:
		*cp = (uint32_t)(p[0] & 0x07) << 18 | (uint32_t)(p[1] & 0x3f) << 12 |
		      (uint32_t)(p[2] & 0x3f) << 6 | (p[3] & 0x3f);
		return 4;
	default:
		*cp = p[0];
		return 1;
	}
}

bool
loomi_is_bidi_control(uint32_t cp)
{
	return cp == 0x061c || cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) ||
	       (cp >= 0x2066 && cp <= 0x2069);
}

int
loomi_name_text_check(const char *key, const char *s, char **msg)
{
	size_t chars = 0;

	while (*s) {
		uint32_t cp;
		bool valid;
		size_t n = loomi_utf8_next(s, &cp, &valid);
		const char *what = NULL;

		chars++;
		if (!valid) {
			*msg = loomi_strfmt("%s: byte 0x%02x at character %zu is not valid UTF-8; give "
			                    "the name in UTF-8",
			                    key, (unsigned)cp, chars);
			return LOOM_EINVAL;
		}
		if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
			what = "a control character";
		else if (loomi_is_bidi_control(cp))
			what = "a bidi control, which reorders the text around it";
		if (what) {
			*msg = loomi_strfmt("%s: U+%04X (%s) at character %zu is not allowed in names; "
			                    "remove it",
			                    key, (unsigned)cp, what, chars);
			return LOOM_EINVAL;
		}
		s += n;
	}
	return 0;
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

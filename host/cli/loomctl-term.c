/* loomctl's human output, made harmless to the terminal it lands in.
 *
 * Names, log messages, errors and reasons come from loomd, and through it
 * from whoever wrote a task's output or a spec: an escape sequence in them
 * could retitle the terminal, hide lines or fake a prompt, and a bidi
 * override (U+202E) reorders what follows it.  Rather than escaping at
 * each of the hundreds of places that print, stdout (unless --json) and
 * stderr go through one filter, term_escape: C0 and C1 control characters
 * other than newline and tab, DEL, the bidi controls and bytes that are
 * not UTF-8 are written visibly escaped (\x1b, \u202e, \xff).  JSON passes
 * through unchanged in meaning (jansson escapes controls itself; an
 * escaped bidi control is the same JSON string).  What must pass as it is
 * (loomctl's own progress line, files and exports the user asked for)
 * goes to term_raw(). */
#define _GNU_SOURCE
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "loomctl.h"
#include "host/core/util.h"

/* An incomplete UTF-8 sequence at the end of one write, kept for the next. */
typedef struct sink {
	int fd;
	unsigned char held[4];
	size_t n_held;
} sink;

static sink out_sink = {STDOUT_FILENO, {0}, 0}, err_sink = {STDERR_FILENO, {0}, 0};
static FILE *raw_stdout;

static bool
put(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* Expected length of the sequence a lead byte starts (0: none). */
static size_t
lead_len(unsigned char c)
{
	return c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
}

size_t
term_escape(const char *s, size_t n, char *out, size_t *used, bool final)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, o = 0;

	while (i < n) {
		unsigned char tmp[5] = {0};
		uint32_t cp;
		bool valid;
		size_t len, left = n - i;

		if (left < 4) {
			size_t want = lead_len(p[i]);
			bool prefix = want > left && !final;
			for (size_t k = 1; prefix && k < left; k++)
				prefix = (p[i + k] & 0xc0) == 0x80;
			if (prefix)
				break; /* the rest of it comes with the next write */
			memcpy(tmp, p + i, left);
			len = loomi_utf8_next((const char *)tmp, &cp, &valid);
		} else {
			len = loomi_utf8_next((const char *)p + i, &cp, &valid);
		}
		if (!valid)
			o += (size_t)sprintf(out + o, "\\x%02x", (unsigned)p[i]);
		else if ((cp < 0x20 && cp != '\n' && cp != '\t') || cp == 0x7f)
			o += (size_t)sprintf(out + o, "\\x%02x", (unsigned)cp);
		else if ((cp >= 0x80 && cp <= 0x9f) || loomi_is_bidi_control(cp))
			o += (size_t)sprintf(out + o, "\\u%04x", (unsigned)cp);
		else {
			memcpy(out + o, p + i, len);
			o += len;
		}
		i += len;
	}
	*used = i;
	return o;
}

static ssize_t
sink_write(void *cookie, const char *buf, size_t size)
{
	sink *k = cookie;
	char out[4096 * 6 + 32], in[4096 + 4];
	size_t done = 0;

	while (done < size) {
		size_t take = size - done > 4096 ? 4096 : size - done, n, used, o;
		memcpy(in, k->held, k->n_held);
		memcpy(in + k->n_held, buf + done, take);
		n = k->n_held + take;
		o = term_escape(in, n, out, &used, false);
		k->n_held = n - used; /* at most 3: a sequence cut by the write */
		memcpy(k->held, in + used, k->n_held);
		if (!put(k->fd, out, o))
			return -1;
		done += take;
	}
	return (ssize_t)size;
}

static int
sink_close(void *cookie)
{
	sink *k = cookie;
	char out[64];
	size_t used, o = term_escape((const char *)k->held, k->n_held, out, &used, true);
	k->n_held = 0;
	return put(k->fd, out, o) ? 0 : -1;
}

static FILE *
filtered(sink *k, int mode)
{
	cookie_io_functions_t io = {.write = sink_write, .close = sink_close};
	FILE *f = fopencookie(k, "w", io);
	if (f)
		setvbuf(f, NULL, mode, 0);
	return f;
}

void
term_setup(bool filter_stdout)
{
	FILE *f;

	raw_stdout = stdout;
	if (filter_stdout &&
	    (f = filtered(&out_sink, isatty(STDOUT_FILENO) ? _IOLBF : _IOFBF)) != NULL)
		stdout = f;
	if ((f = filtered(&err_sink, _IONBF)) != NULL)
		stderr = f;
}

FILE *
term_raw(void)
{
	if (raw_stdout == NULL)
		return stdout;
	if (stdout != raw_stdout)
		fflush(stdout);
	return raw_stdout;
}

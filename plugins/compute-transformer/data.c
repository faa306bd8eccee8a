/* data.c — the Transformer engine's data: a CSV file read into columns, a
 * dataset built from them, windows cut from the dataset, and the baselines a
 * model has to beat.
 *
 * What data.h leaves open is decided here, once:
 *
 * CSV.  RFC 4180 with the usual leniency.  Records end at LF, CRLF or a lone
 * CR (each counts as one line for the line numbers messages give).  Spaces
 * and tabs around an unquoted field are trimmed, so "1, 2" reads as "1" and
 * "2"; a quoted field keeps exactly what is between its quotes, embedded
 * commas, newlines and "" (one quote) included, and may have spaces around
 * its quotes.  A quote inside an unquoted field (5'11") is kept as text.  A
 * line holding nothing but spaces and tabs is blank and skipped.  A NUL byte
 * anywhere refuses the file as binary.  Every string of a table lives in one
 * allocation (tf_table.block), sized from a first pass over the input.
 *
 * Bounds.  Everything is linear in the input: the header is measured before
 * it is kept (at most TF_CSV_MAX_COLUMNS names in at most
 * TF_CSV_MAX_HEADER_BYTES bytes, refused naming the count and the bound),
 * its names go into a hash set (duplicates, tf_table_column), the column
 * arrays are sized by the rows the commas allow, and a stop request is
 * asked every TF_CSV_POLL_BYTES of each pass.  Only regular files are read
 * (a FIFO would block, a device never end); every way a path can fail to
 * lead to one gets the same message.
 *
 * Data file.  A file in which no value is a number is not taken for a data
 * file (a shadow file, a key): it is refused before any message could
 * quote its first line as column names.  Messages name lines and columns,
 * never values.
 *
 * Numbers.  A field is a number when it reads as [+-]digits[.digits][e[+-]digits]
 * (".5" and "5." too) and is finite; it is converted with strtod_l in the C
 * locale, so the process's LC_NUMERIC (a decimal comma) never changes what
 * "12.5" means.  Hexadecimal, inf and thousands separators are text.  Empty
 * fields and NA, NaN and null (any case) are missing.  A column is numeric
 * (tf_table.num) when every field is a number or missing and at least one is
 * a number.
 *
 * Time column.  Each value is a date-time — YYYY-MM-DD, YYYY/MM/DD or
 * YYYY-MM (the first of the month), optionally followed by " HH:MM[:SS[.f]]"
 * or "THH:MM[:SS[.f]]" and a zone (Z, +HH, +HH:MM, +HHMM) — or a plain
 * number; one column holds one kind.  Dates become seconds since 1970-01-01
 * UTC; a date without a zone is taken as UTC (no daylight-saving shifts).
 * Rows out of time order are sorted (stably; tf_dataset.unordered counts the
 * rows that were earlier than the row above them, so the caller can warn);
 * two rows with the same time are refused, naming both lines.  Without a time
 * column the file's order is kept.
 *
 * Season.  spec.season when it is > 0.  Otherwise, for date-times, from the
 * median spacing of consecutive rows (the lower middle value for an even
 * count): 1 hour ±1 min → 24, 1 day ±1 h → 7, 7 days ±1 h → 52, 28 to 31
 * days → 12, 89 to 92 days → 4 (month and quarter ranges ±1 h), anything
 * else → 0.  Plain-number times carry no unit: season 0.
 *
 * Channels.  Default features: every numeric column but the time column and,
 * for regression, classification and anomaly, the target/label columns (a
 * forecast's own history is its main input, so its targets stay features).
 * A regression needs data.target (predicting the inputs' own last row is
 * the identity), and for regression, classification and anomaly a target
 * that is also a feature is refused: the answer would be in the input.
 *
 * Missing values.  fill none refuses the first missing value (in file order)
 * naming its line and column.  With a fill, a value that is not a number in a
 * numeric channel counts as missing too (the header's "fix the value or set
 * data.fill"); a column with no number at all is refused as a text column.
 * Fills run in time order: ffill carries the last value forward and a leading
 * gap takes the first value; linear interpolates by time (by row without a
 * time column), a leading gap taking the first value and a trailing gap the
 * last; zero writes 0.  tf_dataset.filled counts filled cells, once per
 * column even when a column is both a feature and a target.  Labels and
 * times are never filled.
 *
 * Splits.  train = floor(rows·split[0] + 1e-6) rows, validation likewise,
 * test the rest, in time order (the 1e-6 keeps 100·0.29 from flooring to 28).
 * Fractions must be finite, ≥ 0, train > 0, and sum to 1 within 1e-6.  A
 * split with fraction 0 may have no windows (the job spec, spec.c, wants
 * all three above 0); any other split must hold one, or the error says how
 * many rows each split has and needs.
 *
 * Windows.  As data.h says; per split the first window is the earliest that
 * fits (inputs may reach back into earlier splits, never before row 0) and
 * the others follow every stride rows.
 *
 * Normalization.  Statistics over the training rows only (after filling):
 * zscore uses the mean and the population standard deviation (divisor n);
 * a standard deviation or range of 0 becomes 1.  Forecast and regression
 * targets get their own out_shift/out_scale the same way; class indices and
 * anomaly labels are not normalized (shift 0, scale 1).  An incremental run
 * gives the init version's statistics in the spec (in_*, and out_* for
 * forecast and regression targets; ignored for the other tasks): they are
 * used as given, whatever data.normalize says, and nothing is fitted.
 *
 * Classification.  Classes are the distinct label texts sorted bytewise
 * (strcmp); with spec.classes (an incremental run), those in their order,
 * then the labels they lack sorted bytewise.  A label cell that is empty or
 * NA, NaN or null (any case) leaves its row unlabelled (y NAN): counted in
 * tf_dataset.unlabeled, and a window whose last input row it is belongs to
 * no split, so an increment file may carry labels only on the rows
 * reviewers confirmed.  No labelled row, no labelled window at all, or none
 * in a split whose fraction is not 0 is an error.  class_counts counts the
 * training split's labelled rows.  The majority
 * class is the most frequent there (the first in class order on a tie); its
 * accuracy on a split is over that split's windows, like a model's.
 *
 * Baselines.  Seasonal naive predicts step h of the horizon (0-based) with
 * the value season − (h mod season) steps before the window's end, i.e. one
 * season before the target step, repeating the last observed season when the
 * horizon is longer than a season. */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <loom/error.h>
#include <loom/types.h>

#include "data.h"

static const char *const split_name[3] = {"train", "validation", "test"};

/* ------------------------------------------------------------------ messages */

static int fail(char **err, int code, const char *fmt, ...) LOOM_PRINTF(3, 4);

/* Sets *err to the formatted message and returns code. */
static int
fail(char **err, int code, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n >= 0 && (s = malloc((size_t)n + 1)) != NULL) {
		va_start(ap, fmt);
		vsnprintf(s, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	if (err != NULL) {
		free(*err);
		*err = s;
	} else {
		free(s);
	}
	return code;
}

#define SHOW_MAX 60

/* A value as a message shows it: at most max bytes of it, quotes and
 * backslashes escaped, C0 controls and DEL as \n, \r, \t or \xNN, C1
 * controls and the invisible format characters that reorder or hide text
 * (bidirectional overrides and isolates, zero-width characters, the BOM) as
 * \uXXXX, bytes that are not UTF-8 as \xNN, and "…" where it was cut.  out
 * holds at least 6·max + 8 bytes. */
static const char *
show_into(char *out, const char *s, size_t max)
{
	const unsigned char *u = (const unsigned char *)(s != NULL ? s : "");
	size_t o = 0, i = 0;

	while (u[i] != '\0' && i < max) {
		unsigned char ch = u[i];
		uint32_t cp = 0;
		size_t len = 0;

		if (ch >= 0xC2 && ch <= 0xF4) {
			/* a UTF-8 sequence: its length, if it is one (no overlong
			 * forms, no surrogates, nothing above U+10FFFF) */
			size_t need = ch < 0xE0 ? 2 : ch < 0xF0 ? 3 : 4;
			cp = ch & (need == 2 ? 0x1F : need == 3 ? 0x0F : 0x07);
			for (len = 1; len < need && (u[i + len] & 0xC0) == 0x80; len++)
				cp = cp << 6 | (u[i + len] & 0x3F);
			if (len != need || (need == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
			    (need == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
				len = 0;
		}
		if (len > 0) {
			bool hidden = cp <= 0x9F || cp == 0x061C || (cp >= 0x200B && cp <= 0x200F) ||
			              (cp >= 0x2028 && cp <= 0x202E) || (cp >= 0x2060 && cp <= 0x2069) ||
			              cp == 0xFEFF;
			if (hidden) {
				o += (size_t)sprintf(out + o, "\\u%04X", (unsigned)cp);
			} else {
				memcpy(out + o, u + i, len);
				o += len;
			}
			i += len;
			continue;
		}
		if (ch == '"' || ch == '\\') {
			out[o++] = '\\';
			out[o++] = (char)ch;
		} else if (ch == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else if (ch == '\r') {
			out[o++] = '\\';
			out[o++] = 'r';
		} else if (ch == '\t') {
			out[o++] = '\\';
			out[o++] = 't';
		} else if (ch < 0x20 || ch >= 0x7f) {
			o += (size_t)sprintf(out + o, "\\x%02x", ch);
		} else {
			out[o++] = (char)ch;
		}
		i++;
	}
	if (u[i] != '\0') {
		memcpy(out + o, "\xE2\x80\xA6", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

typedef struct shown {
	char s[SHOW_MAX * 6 + 8];
} shown;

static const char *
show(shown *b, const char *s)
{
	return show_into(b->s, s, SHOW_MAX);
}

static const char *
errno_text(int e, char *buf, size_t n)
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
	return strerror_r(e, buf, n);
#else
	if (strerror_r(e, buf, n) != 0)
		snprintf(buf, n, "error %d", e);
	return buf;
#endif
}

static int
errno_code(int e)
{
	switch (e) {
	case ENOENT:
	case ENOTDIR:
		return LOOM_ENOENT;
	case EACCES:
	case EPERM:
		return LOOM_EPERM;
	case ENOMEM:
		return LOOM_ENOMEM;
	default:
		return LOOM_EIO;
	}
}

/* A growing string for lists in messages. */
typedef struct sbuf {
	char *s;
	size_t n, cap;
	bool oom;
} sbuf;

static void
sb_add(sbuf *b, const char *s)
{
	size_t l = strlen(s);
	if (b->oom)
		return;
	if (b->n + l + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		char *p;
		while (cap < b->n + l + 1)
			cap *= 2;
		if ((p = realloc(b->s, cap)) == NULL) {
			b->oom = true;
			return;
		}
		b->s = p;
		b->cap = cap;
	}
	memcpy(b->s + b->n, s, l + 1);
	b->n += l;
}

static const char *
sb_str(const sbuf *b)
{
	return b->oom || b->s == NULL ? "" : b->s;
}

/* ------------------------------------------------------------------ numbers */

enum { NUM_OK = 0, NUM_MISSING = 1, NUM_BAD = -1, NUM_RANGE = -2 };

static bool
is_digit(char c)
{
	return (unsigned)(c - '0') < 10u;
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool
is_eol(char c)
{
	return c == '\n' || c == '\r';
}

/* Reads s as a number (see the top of the file): NUM_OK with *v, NUM_MISSING,
 * NUM_BAD or NUM_RANGE (a number too large for a double). */
static int
num_parse(const char *s, locale_t c_locale, double *v)
{
	const char *a = s, *e, *q;
	size_t l, digits = 0;
	char *stop;

	while (is_blank(*a))
		a++;
	e = a + strlen(a);
	while (e > a && is_blank(e[-1]))
		e--;
	l = (size_t)(e - a);
	if (l == 0 || (l == 2 && strncasecmp(a, "na", 2) == 0) ||
	    (l == 3 && strncasecmp(a, "nan", 3) == 0) || (l == 4 && strncasecmp(a, "null", 4) == 0))
		return NUM_MISSING;
	q = a;
	if (*q == '+' || *q == '-')
		q++;
	for (; is_digit(*q); q++)
		digits++;
	if (*q == '.')
		for (q++; is_digit(*q); q++)
			digits++;
	if (digits == 0)
		return NUM_BAD;
	if (*q == 'e' || *q == 'E') {
		q++;
		if (*q == '+' || *q == '-')
			q++;
		if (!is_digit(*q))
			return NUM_BAD;
		while (is_digit(*q))
			q++;
	}
	if (q != e)
		return NUM_BAD;
	*v = strtod_l(a, &stop, c_locale);
	if (stop != e)
		return NUM_BAD;
	if (!isfinite(*v))
		return NUM_RANGE;
	return NUM_OK;
}

/* ------------------------------------------------------------------ CSV */

typedef struct csv {
	const char *p, *end;
	const char *name;
	int64_t line;
	char *out;              /* the next free byte of the table's block */
	char **f;               /* the fields of the record just read */
	size_t nf, cap;
	const tf_table *t;      /* for column names once the header is read */
	char **err;
} csv;

static int
csv_push(csv *c, char *field)
{
	if (c->nf == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		char **f = realloc(c->f, cap * sizeof *f);
		if (f == NULL)
			return fail(c->err, LOOM_ENOMEM, "%s: out of memory", c->name);
		c->f = f;
		c->cap = cap;
	}
	c->f[c->nf++] = field;
	return 0;
}

/* "column "temp"" once the header is known, "field 3" before. */
static const char *
csv_where(const csv *c, size_t i, char *buf, size_t n)
{
	shown s;
	if (c->t != NULL && i < c->t->n_cols)
		snprintf(buf, n, "column \"%s\"", show(&s, c->t->names[i]));
	else
		snprintf(buf, n, "field %zu", i + 1);
	return buf;
}

/* Skips blank lines; false at the end of the input. */
static bool
csv_next_record(csv *c)
{
	for (;;) {
		const char *q = c->p;
		while (q < c->end && is_blank(*q))
			q++;
		if (q == c->end) {
			c->p = q;
			return false;
		}
		if (!is_eol(*q))
			return true;
		if (*q == '\r' && q + 1 < c->end && q[1] == '\n')
			q++;
		c->p = q + 1;
		c->line++;
	}
}

/* Reads one record — its line and the lines its quoted fields span — into
 * c->f, the fields' text going to c->out. */
static int
csv_record(csv *c)
{
	const char *q = c->p, *end = c->end;
	char where[SHOW_MAX * 4 + 32];
	int rv;

	c->nf = 0;
	for (;;) {
		char *field = c->out, *dst = c->out;

		while (q < end && is_blank(*q))
			q++;
		if (q < end && *q == '"') {
			int64_t open = c->line;
			for (q++;; ) {
				char ch;
				if (q == end)
					return fail(c->err, LOOM_EINVAL,
					            "%s:%lld: %s: the quoted field that starts on this line is "
					            "never closed; add the closing quote (a quote inside a field "
					            "is written \"\")",
					            c->name, (long long)open, csv_where(c, c->nf, where, sizeof where));
				ch = *q++;
				if (ch == '"') {
					if (q < end && *q == '"') {
						*dst++ = '"';
						q++;
						continue;
					}
					break;
				}
				if (ch == '\n' || (ch == '\r' && (q == end || *q != '\n')))
					c->line++;
				*dst++ = ch;
			}
			while (q < end && is_blank(*q))
				q++;
			if (q < end && *q != ',' && !is_eol(*q))
				return fail(c->err, LOOM_EINVAL,
				            "%s:%lld: %s: text after the closing quote of a quoted field; "
				            "quote the whole field and write a quote inside it as \"\"",
				            c->name, (long long)c->line, csv_where(c, c->nf, where, sizeof where));
		} else {
			const char *s = q, *e;
			while (q < end && *q != ',' && !is_eol(*q))
				q++;
			e = q;
			while (e > s && is_blank(e[-1]))
				e--;
			memcpy(dst, s, (size_t)(e - s));
			dst += e - s;
		}
		*dst++ = '\0';
		c->out = dst;
		if ((rv = csv_push(c, field)) != 0)
			return rv;
		if (q < end && *q == ',') {
			q++;
			continue;
		}
		if (q < end) {
			if (*q == '\r' && q + 1 < end && q[1] == '\n')
				q++;
			q++;
			c->line++;
		}
		c->p = q;
		return 0;
	}
}

/* ------------------------------------------------------------------ stopping */

static int
stopped(char **err, const char *name, int64_t line)
{
	return fail(err, LOOM_ECANCELED,
	            "%s: reading stopped at line %lld: the task was asked to stop", name,
	            (long long)line);
}

/* Asks stop, when there is one, once more than TF_CSV_POLL_BYTES of input
 * were read since *polled (progress counted in bytes, or fields as bytes). */
static bool
stop_due(const tf_stop *stop, size_t progress, size_t *polled)
{
	if (stop == NULL || stop->requested == NULL || progress - *polled < TF_CSV_POLL_BYTES)
		return false;
	*polled = progress;
	return stop->requested(stop->arg);
}

/* ------------------------------------------------------------------ names */

/* The header's names in a hash set (open addressing, slots holding column
 * + 1), for the duplicate check and tf_table_column: linear in the number
 * of columns where comparing every pair was quadratic (3,000,000 names:
 * minutes).  The hash is keyed per table with a random seed, so names
 * chosen to collide cannot make it quadratic again. */
static uint64_t
name_hash(const char *s, uint64_t seed)
{
	uint64_t h = seed ^ 0x9E3779B97F4A7C15ull;
	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0xBF58476D1CE4E5B9ull;
		h ^= h >> 29;
	}
	h ^= h >> 32;
	h *= 0x94D049BB133111EBull;
	return h ^ (h >> 31);
}

static uint64_t
table_seed(const tf_table *t)
{
	uint64_t seed = 0;
	if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
		seed = (uint64_t)(uintptr_t)t ^ (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull;
	return seed;
}

/* Builds t->index over names[n]; the first name equal to an earlier one
 * sets *dup and *first (0-based).  0 or LOOM_ENOMEM. */
static int
index_names(tf_table *t, char **names, size_t n, size_t *dup, size_t *first)
{
	size_t slots = 16;

	while (slots < 2 * n)
		slots *= 2;
	if ((t->index = calloc(slots, sizeof *t->index)) == NULL)
		return LOOM_ENOMEM;
	t->index_mask = slots - 1;
	t->index_seed = table_seed(t);
	*dup = *first = SIZE_MAX;
	for (size_t i = 0; i < n; i++) {
		size_t k = (size_t)name_hash(names[i], t->index_seed) & t->index_mask;
		for (;; k = (k + 1) & t->index_mask) {
			if (t->index[k] == 0) {
				t->index[k] = (uint32_t)(i + 1);
				break;
			}
			if (strcmp(names[t->index[k] - 1], names[i]) == 0) {
				*dup = i;
				*first = t->index[k] - 1;
				return 0;
			}
		}
	}
	return 0;
}

/* The header record that starts at c->p: how many fields it has and how
 * many bytes it takes (its line end excluded), read as csv_record reads it
 * but storing nothing, so a header too wide to keep is measured cheaply. */
static void
header_extent(const csv *c, size_t *fields, size_t *bytes)
{
	const char *q = c->p, *end = c->end;

	*fields = 1;
	for (;;) {
		while (q < end && is_blank(*q))
			q++;
		if (q < end && *q == '"') {
			for (q++; q < end; q++)
				if (*q == '"') {
					if (q + 1 < end && q[1] == '"')
						q++;
					else
						break;
				}
			if (q < end)
				q++;
		}
		while (q < end && *q != ',' && !is_eol(*q))
			q++;
		if (q < end && *q == ',') {
			q++;
			(*fields)++;
			continue;
		}
		break;
	}
	*bytes = (size_t)(q - c->p);
}

/* ------------------------------------------------------------------ tables */

/* Sets num[c] for each column that holds numbers (and missing values) only. */
static int
csv_numbers(tf_table *t, const tf_stop *stop, char **err)
{
	locale_t loc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
	size_t fields = 0, polled = 0;

	if (loc == (locale_t)0)
		return fail(err, LOOM_ENOMEM, "%s: out of memory", t->path);
	if ((t->num = calloc(t->n_cols ? t->n_cols : 1, sizeof *t->num)) == NULL)
		goto nomem;
	for (size_t c = 0; c < t->n_cols && t->n_rows > 0; c++) {
		double *v = malloc(t->n_rows * sizeof *v);
		bool any = false, ok = true;
		if (v == NULL)
			goto nomem;
		for (size_t r = 0; r < t->n_rows && ok; r++) {
			/* a field is at least one byte and its comma: poll as if it
			 * were 16, at most every 65,536 fields */
			if (stop_due(stop, (fields += 16), &polled)) {
				free(v);
				freelocale(loc);
				return stopped(err, t->path, t->line[r]);
			}
			switch (num_parse(t->text[c][r], loc, &v[r])) {
			case NUM_OK:
				any = true;
				break;
			case NUM_MISSING:
				v[r] = NAN;
				break;
			default:
				ok = false;
			}
		}
		if (ok && any)
			t->num[c] = v;
		else
			free(v);
	}
	freelocale(loc);
	return 0;
nomem:
	freelocale(loc);
	return fail(err, LOOM_ENOMEM, "%s: out of memory", t->path);
}

int
tf_csv_parse(const char *data, size_t len, const char *name, const tf_stop *stop, tf_table *t,
             char **err)
{
	csv c;
	const char *p, *end;
	size_t commas = 0, ends = 0, rows_max, n = 0, block_size, polled = 0;
	size_t fields, bytes, dup, first;
	int64_t line = 1;
	int rv;

	memset(t, 0, sizeof *t);
	memset(&c, 0, sizeof c);
	if (err != NULL)
		*err = NULL;
	if (name == NULL)
		name = "(data)";
	if (data == NULL)
		data = "", len = 0;
	p = data;
	end = data + len;
	if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3;
	/* First pass: refuse binary input, and bound the fields and records;
	 * a stop request is heard between chunks. */
	for (const char *chunk = p; chunk < end; chunk += TF_CSV_POLL_BYTES) {
		const char *chunk_end = (size_t)(end - chunk) > TF_CSV_POLL_BYTES
		                            ? chunk + TF_CSV_POLL_BYTES
		                            : end;
		if (chunk > p && stop_due(stop, (size_t)(chunk - p), &polled))
			return stopped(err, name, line);
		for (const char *q = chunk; q < chunk_end; q++) {
			switch (*q) {
			case ',':
				commas++;
				break;
			case '\n':
				ends++;
				line++;
				break;
			case '\r':
				ends++;
				if (q + 1 == end || q[1] != '\n')
					line++;
				break;
			case '\0':
				return fail(err, LOOM_EINVAL,
				            "%s:%lld: a NUL byte (byte %zu of the file): this is a binary "
				            "file, not CSV text; check data.path",
				            name, (long long)line, (size_t)(q - data) + 1);
			default:
				break;
			}
		}
	}
	if ((t->path = strdup(name)) == NULL)
		return fail(err, LOOM_ENOMEM, "%s: out of memory", name);
	c.p = p;
	c.end = end;
	c.name = name;
	c.line = 1;
	c.err = err;

	if (!csv_next_record(&c)) {
		rv = fail(err, LOOM_EINVAL,
		          "%s: the file is empty; a CSV file needs a header line naming the columns, "
		          "then one line per row",
		          name);
		goto out;
	}
	t->header_line = c.line;
	/* the header's width and length, before anything is kept of it */
	header_extent(&c, &fields, &bytes);
	if (fields > TF_CSV_MAX_COLUMNS) {
		rv = fail(err, LOOM_EINVAL,
		          "%s:%lld: the header names %zu columns; at most %d are supported — keep the "
		          "columns the job uses (data.features, data.target, data.time_column)",
		          name, (long long)t->header_line, fields, TF_CSV_MAX_COLUMNS);
		goto out;
	}
	if (bytes > TF_CSV_MAX_HEADER_BYTES) {
		rv = fail(err, LOOM_EINVAL,
		          "%s:%lld: the header line is %zu bytes; at most %d are supported — shorten "
		          "the column names",
		          name, (long long)t->header_line, bytes, TF_CSV_MAX_HEADER_BYTES);
		goto out;
	}
	/* every field's text is at most its bytes in the input, plus a NUL;
	 * there are at most commas + records fields and ends + 1 records, and
	 * with k columns a row takes k − 1 commas, so at most commas / (k − 1)
	 * rows: the column arrays stay linear in the input even when blank
	 * lines follow a wide header */
	block_size = (size_t)(end - p) + commas + ends + 2;
	rows_max = ends + 1;
	if (fields > 1 && commas / (fields - 1) + 1 < rows_max)
		rows_max = commas / (fields - 1) + 1;
	if ((t->block = malloc(block_size)) == NULL)
		goto nomem;
	c.out = t->block;
	if ((rv = csv_record(&c)) != 0)
		goto out;
	for (size_t i = 0; i < c.nf; i++)
		if (c.f[i][0] == '\0') {
			rv = fail(err, LOOM_EINVAL,
			          "%s:%lld: column %zu has no name; name every column in the header line",
			          name, (long long)t->header_line, i + 1);
			goto out;
		}
	if (index_names(t, c.f, c.nf, &dup, &first) != 0)
		goto nomem;
	if (dup != SIZE_MAX) {
		shown s;
		rv = fail(err, LOOM_EINVAL,
		          "%s:%lld: columns %zu and %zu are both named \"%s\"; give each column its own "
		          "name",
		          name, (long long)t->header_line, first + 1, dup + 1, show(&s, c.f[dup]));
		goto out;
	}
	if ((t->names = malloc(c.nf * sizeof *t->names)) == NULL ||
	    (t->text = calloc(c.nf, sizeof *t->text)) == NULL ||
	    (t->line = malloc(rows_max * sizeof *t->line)) == NULL)
		goto nomem;
	t->n_cols = c.nf;
	memcpy(t->names, c.f, c.nf * sizeof *t->names);
	for (size_t i = 0; i < t->n_cols; i++)
		if ((t->text[i] = malloc(rows_max * sizeof **t->text)) == NULL)
			goto nomem;
	c.t = t;

	polled = (size_t)(c.p - p);
	while (csv_next_record(&c)) {
		int64_t first_line = c.line;
		if (stop_due(stop, (size_t)(c.p - p), &polled)) {
			rv = stopped(err, name, first_line);
			goto out;
		}
		if ((rv = csv_record(&c)) != 0)
			goto out;
		if (c.nf != t->n_cols) {
			if (c.nf > t->n_cols)
				rv = fail(err, LOOM_EINVAL,
				          "%s:%lld: %zu fields, but the header has %zu columns; quote a field "
				          "that contains a comma (\"a, b\")",
				          name, (long long)first_line, c.nf, t->n_cols);
			else
				rv = fail(err, LOOM_EINVAL,
				          "%s:%lld: %zu field%s, but the header has %zu columns; give every "
				          "row one field per column (an empty field for a missing value)",
				          name, (long long)first_line, c.nf, c.nf == 1 ? "" : "s", t->n_cols);
			goto out;
		}
		if (n == rows_max) { /* cannot happen: rows_max bounds the rows */
			rv = fail(err, LOOM_EINTERNAL, "%s:%lld: more rows than counted", name,
			          (long long)first_line);
			goto out;
		}
		for (size_t i = 0; i < t->n_cols; i++)
			t->text[i][n] = c.f[i];
		t->line[n] = first_line;
		t->n_rows = ++n;
	}
	/* rows_max counted CR and LF apart: give back what CRLF files left over */
	for (size_t i = 0; n > 0 && n < rows_max && i < t->n_cols; i++) {
		char **shrunk = realloc(t->text[i], n * sizeof **t->text);
		if (shrunk != NULL)
			t->text[i] = shrunk;
	}
	if (n > 0 && n < rows_max) {
		int64_t *shrunk = realloc(t->line, n * sizeof *t->line);
		if (shrunk != NULL)
			t->line = shrunk;
	}
	rv = csv_numbers(t, stop, err);
out:
	free(c.f);
	if (rv != 0)
		tf_table_free(t);
	return rv;
nomem:
	rv = fail(err, LOOM_ENOMEM, "%s: out of memory", name);
	goto out;
}

/* One message for every path that does not lead to a readable regular
 * file, so that the answer does not tell which paths exist. */
static int
unreadable(char **err, const char *path)
{
	char shown_path[1024 * 6 + 8];
	return fail(err, LOOM_ENOENT,
	            "data.path \"%s\": cannot read it (missing, not a regular file, or not readable "
	            "by loomd's user); check the path and its permissions",
	            show_into(shown_path, path, 1024));
}

int
tf_csv_read(const char *path, const tf_stop *stop, tf_table *t, char **err)
{
	struct stat st;
	char ebuf[128], *buf = NULL;
	size_t len = 0, cap, polled = 0;
	int fd, e, rv;

	memset(t, 0, sizeof *t);
	if (err != NULL)
		*err = NULL;
	if (path == NULL || *path == '\0')
		return fail(err, LOOM_EINVAL, "no data file given; set data.path");
	/* a FIFO would block the open and a device read forever: regular files
	 * only, checked before the open (which must not block) and after it */
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return unreadable(err, path);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)) < 0)
		return unreadable(err, path);
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return unreadable(err, path);
	}
	if ((uint64_t)st.st_size > SIZE_MAX / 4) {
		close(fd);
		return fail(err, LOOM_ERANGE, "%s: %lld bytes is too large to read into memory", path,
		            (long long)st.st_size);
	}
	cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 65536;
	for (;;) {
		ssize_t got;
		if (len == cap || buf == NULL) {
			char *nb;
			if (buf != NULL)
				cap *= 2;
			if ((nb = realloc(buf, cap)) == NULL) {
				free(buf);
				close(fd);
				return fail(err, LOOM_ENOMEM, "%s: out of memory", path);
			}
			buf = nb;
		}
		got = read(fd, buf + len,
		           cap - len < TF_CSV_POLL_BYTES * 4 ? cap - len : TF_CSV_POLL_BYTES * 4);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			e = errno;
			free(buf);
			close(fd);
			return fail(err, errno_code(e), "%s: cannot read: %s", path,
			            errno_text(e, ebuf, sizeof ebuf));
		}
		if (got == 0)
			break;
		len += (size_t)got;
		if (stop_due(stop, len, &polled)) {
			free(buf);
			close(fd);
			return stopped(err, path, 1);
		}
	}
	close(fd);
	rv = tf_csv_parse(buf, len, path, stop, t, err);
	free(buf);
	return rv;
}

void
tf_table_free(tf_table *t)
{
	if (t == NULL)
		return;
	for (size_t c = 0; c < t->n_cols; c++) {
		if (t->text != NULL)
			free(t->text[c]);
		if (t->num != NULL)
			free(t->num[c]);
	}
	free(t->text);
	free(t->num);
	free(t->names);
	free(t->line);
	free(t->block);
	free(t->index);
	free(t->path);
	memset(t, 0, sizeof *t);
}

int
tf_table_column(const tf_table *t, const char *name)
{
	if (t == NULL || name == NULL || t->names == NULL)
		return -1;
	if (t->index != NULL) {
		size_t k = (size_t)name_hash(name, t->index_seed) & t->index_mask;
		for (; t->index[k] != 0; k = (k + 1) & t->index_mask)
			if (strcmp(t->names[t->index[k] - 1], name) == 0)
				return (int)(t->index[k] - 1);
		return -1;
	}
	for (size_t c = 0; c < t->n_cols; c++)
		if (strcmp(t->names[c], name) == 0)
			return c <= (size_t)INT32_MAX ? (int)c : -1;
	return -1;
}

/* ------------------------------------------------------------------ times */

static bool
read_int(const char **pp, int min_digits, int max_digits, int *v)
{
	const char *p = *pp;
	int n = 0, x = 0;
	while (n < max_digits && is_digit(p[n])) {
		x = x * 10 + (p[n] - '0');
		n++;
	}
	if (n < min_digits)
		return false;
	*pp = p + n;
	*v = x;
	return true;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
 * (H. Hinnant's days_from_civil). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;
	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int
days_in_month(int y, int m)
{
	static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return m == 2 && leap ? 29 : dm[m - 1];
}

/* A date-time (see the top of the file) as seconds since 1970-01-01 UTC. */
static bool
parse_datetime(const char *s, double *out)
{
	const char *p = s;
	int y, mo, d = 1, h = 0, mi = 0, sec = 0;
	double frac = 0, zone = 0;
	char sep;

	while (is_blank(*p))
		p++;
	if (!read_int(&p, 4, 4, &y) || (*p != '-' && *p != '/'))
		return false;
	sep = *p++;
	if (!read_int(&p, 1, 2, &mo) || mo < 1 || mo > 12)
		return false;
	if (*p == sep) {
		p++;
		if (!read_int(&p, 1, 2, &d) || d < 1 || d > days_in_month(y, mo))
			return false;
		if (*p == 'T' || *p == 't' || (is_blank(*p) && is_digit(p[strspn(p, " \t")]))) {
			p += *p == 'T' || *p == 't' ? 1 : strspn(p, " \t");
			if (!read_int(&p, 1, 2, &h) || h > 23 || *p++ != ':' ||
			    !read_int(&p, 2, 2, &mi) || mi > 59)
				return false;
			if (*p == ':') {
				p++;
				if (!read_int(&p, 2, 2, &sec) || sec > 60)
					return false;
				if (*p == '.' || *p == ',') {
					double scale = 0.1;
					if (!is_digit(*++p))
						return false;
					for (; is_digit(*p); p++, scale /= 10)
						frac += (*p - '0') * scale;
				}
			}
			while (is_blank(*p))
				p++;
			if (*p == 'Z' || *p == 'z') {
				p++;
			} else if (*p == '+' || *p == '-') {
				int sign = *p++ == '-' ? -1 : 1, zh, zm = 0;
				if (!read_int(&p, 2, 2, &zh) || zh > 23)
					return false;
				if (*p == ':')
					p++;
				if (is_digit(*p) && (!read_int(&p, 2, 2, &zm) || zm > 59))
					return false;
				zone = sign * (zh * 3600.0 + zm * 60.0);
			}
		}
	}
	while (is_blank(*p))
		p++;
	if (*p != '\0')
		return false;
	*out = (double)days_from_civil(y, mo, d) * 86400.0 + h * 3600.0 + mi * 60.0 + sec + frac -
	       zone;
	return true;
}

/* ------------------------------------------------------------------ datasets */

typedef struct build {
	const tf_table *t;
	const tf_data_spec *sp;
	tf_dataset *ds;
	char **err;
	const char *path;
	locale_t loc;
	int64_t n;              /* rows */
	int time_col;           /* -1: none */
	bool time_dates;        /* the time column holds date-times */
	int64_t *perm;          /* [n] the file row of each row in time order */
	double *time;           /* [n] times in time order (NULL without a time column) */
	int *in_cols;           /* [n_in] */
	int *out_cols;          /* [n_out]: targets, or the label column */
	size_t n_in, n_out;
	double **vals;          /* [n_cols] a numeric channel's values in time order */
} build;

static int
nomem(build *b)
{
	return fail(b->err, LOOM_ENOMEM, "%s: out of memory", b->path);
}

/* calloc of a·b elements of size s, refusing products that overflow. */
static void *
calloc3(size_t a, size_t b, size_t s)
{
	if (b != 0 && a > SIZE_MAX / b)
		return NULL;
	return calloc(a * b != 0 ? a * b : 1, s);
}

static int64_t
sat_add(int64_t a, int64_t b)
{
	return a > INT64_MAX - b ? INT64_MAX : a + b;
}

static const char *
task_name(int task)
{
	switch (task) {
	case TF_TASK_FORECAST:
		return "forecast";
	case TF_TASK_REGRESSION:
		return "regression";
	case TF_TASK_CLASSIFICATION:
		return "classification";
	default:
		return "anomaly";
	}
}

static size_t
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), *row, d;
	if (la > 256 || lb > 256)
		return (size_t)-1;
	if ((row = malloc((lb + 1) * sizeof *row)) == NULL)
		return (size_t)-1;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			diag = up;
			row[j] = best;
		}
	}
	d = row[lb];
	free(row);
	return d;
}

/* The column name closest to word, when close enough to be a typo. */
static const char *
suggest(const tf_table *t, const char *word)
{
	size_t len = strlen(word), limit = len <= 3 ? 1 : len <= 6 ? 2 : 3, best_d = (size_t)-1;
	const char *best = NULL;
	for (size_t c = 0; c < t->n_cols; c++)
		if (strcasecmp(t->names[c], word) == 0)
			return t->names[c];
	for (size_t c = 0; c < t->n_cols; c++) {
		size_t d = edit_distance(word, t->names[c]);
		if (d < best_d) {
			best_d = d;
			best = t->names[c];
		}
	}
	return best_d <= limit ? best : NULL;
}

/* The column called name, or an error naming the columns there are. */
static int
find_column(build *b, const char *name, int *col)
{
	const tf_table *t = b->t;
	const char *near;
	sbuf cols = {0};
	shown s1, s2;
	int rv;

	if ((*col = tf_table_column(t, name)) >= 0)
		return 0;
	for (size_t c = 0; c < t->n_cols && c < 40; c++) {
		shown sc;
		if (c > 0)
			sb_add(&cols, ", ");
		sb_add(&cols, show(&sc, t->names[c]));
	}
	if (t->n_cols > 40) {
		char more[64];
		snprintf(more, sizeof more, ", \xE2\x80\xA6 (%zu more)", t->n_cols - 40);
		sb_add(&cols, more);
	}
	near = suggest(t, name);
	if (near != NULL)
		rv = fail(b->err, LOOM_EINVAL,
		          "%s:%lld: no column \"%s\" (did you mean \"%s\"?); columns: %s", b->path,
		          (long long)t->header_line, show(&s1, name), show(&s2, near), sb_str(&cols));
	else
		rv = fail(b->err, LOOM_EINVAL, "%s:%lld: no column \"%s\"; columns: %s", b->path,
		          (long long)t->header_line, show(&s1, name), sb_str(&cols));
	free(cols.s);
	return rv;
}

/* Marks in mark[n_cols] (each column once) the columns cols[n]. */
static void
mark_cols(unsigned char *mark, const int *cols, size_t n, unsigned char bit)
{
	for (size_t i = 0; i < n; i++)
		mark[cols[i]] |= bit;
}

/* Resolves a list of names in spec order, refusing repeats: a hash lookup
 * and a mark per name, linear however many columns there are. */
static int
find_columns(build *b, const char *const *names, size_t n, const char *setting, int *cols)
{
	unsigned char *seen = calloc(b->t->n_cols ? b->t->n_cols : 1, 1);
	int rv = 0;

	if (seen == NULL)
		return nomem(b);
	for (size_t i = 0; i < n && rv == 0; i++) {
		if (names[i] == NULL) {
			rv = fail(b->err, LOOM_EINVAL, "%s: %s[%zu] is not set", b->path, setting, i);
		} else if ((rv = find_column(b, names[i], &cols[i])) == 0) {
			if (seen[cols[i]]) {
				shown s;
				rv = fail(b->err, LOOM_EINVAL,
				          "%s: %s names \"%s\" twice; list each column once", b->path,
				          setting, show(&s, names[i]));
			}
			seen[cols[i]] = 1;
		}
	}
	free(seen);
	return rv;
}

static int
check_spec(build *b)
{
	const tf_data_spec *sp = b->sp;
	double sum = 0;

	if (sp->task < TF_TASK_FORECAST || sp->task > TF_TASK_ANOMALY)
		return fail(b->err, LOOM_EINVAL, "%s: unknown task %d", b->path, sp->task);
	if (sp->normalize < TF_NORM_NONE || sp->normalize > TF_NORM_MINMAX)
		return fail(b->err, LOOM_EINVAL, "%s: unknown data.normalize %d", b->path, sp->normalize);
	if (sp->fill < TF_FILL_NONE || sp->fill > TF_FILL_ZERO)
		return fail(b->err, LOOM_EINVAL, "%s: unknown data.fill %d", b->path, sp->fill);
	if (sp->context <= 0)
		return fail(b->err, LOOM_EINVAL,
		            "%s: model.context is %lld; it must be at least 1 (the input window length "
		            "in time steps)",
		            b->path, (long long)sp->context);
	if (sp->task == TF_TASK_FORECAST && sp->horizon <= 0)
		return fail(b->err, LOOM_EINVAL,
		            "%s: model.horizon is %lld; a forecast must predict at least 1 step",
		            b->path, (long long)sp->horizon);
	if (sp->stride <= 0)
		return fail(b->err, LOOM_EINVAL,
		            "%s: model.stride is %lld; it must be at least 1 (the steps between window "
		            "starts)",
		            b->path, (long long)sp->stride);
	if (sp->season < 0)
		return fail(b->err, LOOM_EINVAL,
		            "%s: the season is %lld; give a period in steps, or 0 to infer it from the "
		            "time column",
		            b->path, (long long)sp->season);
	for (int s = 0; s < 3; s++) {
		if (!isfinite(sp->split[s]))
			return fail(b->err, LOOM_EINVAL,
			            "%s: data.split: the %s fraction is not a number; give train, "
			            "validation and test fractions of at least 0 that sum to 1",
			            b->path, split_name[s]);
		if (sp->split[s] < 0)
			return fail(b->err, LOOM_EINVAL,
			            "%s: data.split: the %s fraction %g is negative; give train, validation "
			            "and test fractions of at least 0 that sum to 1",
			            b->path, split_name[s], sp->split[s]);
		sum += sp->split[s];
	}
	if (fabs(sum - 1) > 1e-6)
		return fail(b->err, LOOM_EINVAL,
		            "%s: data.split [%g, %g, %g] sums to %g, not 1; give train, validation and "
		            "test fractions that sum to 1",
		            b->path, sp->split[0], sp->split[1], sp->split[2], sum);
	if (sp->split[0] == 0)
		return fail(b->err, LOOM_EINVAL,
		            "%s: data.split gives the train split nothing; the model needs training rows",
		            b->path);
	if (sp->task == TF_TASK_REGRESSION && (sp->targets == NULL || sp->n_targets == 0))
		return fail(b->err, LOOM_EINVAL,
		            "%s: regression needs data.target: the column(s) to predict at each "
		            "window's last step",
		            b->path);
	if (sp->task == TF_TASK_CLASSIFICATION && (sp->targets == NULL || sp->n_targets != 1))
		return fail(b->err, LOOM_EINVAL,
		            "%s: classification needs data.target to name one label column (it names "
		            "%zu)",
		            b->path, sp->targets == NULL ? (size_t)0 : sp->n_targets);
	if (sp->task == TF_TASK_ANOMALY && sp->targets != NULL && sp->n_targets > 1)
		return fail(b->err, LOOM_EINVAL,
		            "%s: anomaly detection takes at most one label column in data.target (it "
		            "names %zu)",
		            b->path, sp->n_targets);
	if (b->t->n_rows == 0)
		return fail(b->err, LOOM_EINVAL, "%s: no data rows after the header line", b->path);
	if (b->t->n_rows > (size_t)INT64_MAX / 2)
		return fail(b->err, LOOM_ERANGE, "%s: too many rows", b->path);
	return 0;
}

/* A file with no number in it at all is no data file (a shadow file, a
 * key, a configuration file): refused before any message would quote its
 * first line as column names. */
static int
check_data_file(build *b)
{
	const tf_table *t = b->t;

	for (size_t c = 0; c < t->n_cols; c++) {
		if (t->num[c] != NULL)
			return 0;
		for (size_t r = 0; r < t->n_rows; r++) {
			double x;
			if (num_parse(t->text[c][r], b->loc, &x) == NUM_OK)
				return 0;
		}
	}
	return fail(b->err, LOOM_EINVAL,
	            "%s: not a CSV with a header row of column names (no value in it is a number); "
	            "check data.path",
	            b->path);
}

/* Channels: the time column, the targets (or label), the features. */
static int
resolve_columns(build *b)
{
	const tf_data_spec *sp = b->sp;
	const tf_table *t = b->t;
	size_t n_targets = sp->targets != NULL ? sp->n_targets : 0;
	bool user_features = sp->features != NULL && sp->n_features > 0;
	unsigned char *mark;
	int rv;

	b->time_col = -1;
	if (sp->time_column != NULL && (rv = find_column(b, sp->time_column, &b->time_col)) != 0)
		return rv;
	if ((b->out_cols = calloc(n_targets ? n_targets : 1, sizeof *b->out_cols)) == NULL ||
	    (b->in_cols = calloc(user_features ? sp->n_features : t->n_cols + 1,
	                         sizeof *b->in_cols)) == NULL)
		return nomem(b);
	if ((rv = find_columns(b, sp->targets, n_targets, "data.target", b->out_cols)) != 0)
		return rv;
	b->n_out = n_targets;
	/* 1: a target, 2: a feature */
	if ((mark = calloc(t->n_cols ? t->n_cols : 1, 1)) == NULL)
		return nomem(b);
	mark_cols(mark, b->out_cols, b->n_out, 1);
	if (user_features) {
		if ((rv = find_columns(b, sp->features, sp->n_features, "data.features", b->in_cols)) !=
		    0) {
			free(mark);
			return rv;
		}
		b->n_in = sp->n_features;
	} else {
		for (size_t c = 0; c < t->n_cols; c++) {
			if (t->num[c] == NULL || (int)c == b->time_col)
				continue;
			if (sp->task != TF_TASK_FORECAST && (mark[c] & 1))
				continue;
			b->in_cols[b->n_in++] = (int)c;
		}
		if (b->n_in == 0) {
			free(mark);
			return fail(b->err, LOOM_EINVAL,
			            "%s: no numeric column to use as a feature; name the input columns in "
			            "data.features",
			            b->path);
		}
	}
	mark_cols(mark, b->in_cols, b->n_in, 2);
	if (sp->task != TF_TASK_FORECAST) {
		for (size_t i = 0; i < b->n_out; i++)
			if (mark[b->out_cols[i]] & 2) {
				shown s;
				free(mark);
				return fail(b->err, LOOM_EINVAL,
				            "%s: column \"%s\" is both a feature and the %s target; the model "
				            "would see the answer in its input — remove it from data.features",
				            b->path, show(&s, t->names[b->out_cols[i]]), task_name(sp->task));
			}
	} else if (b->n_out == 0) {
		/* a forecast without targets predicts its features */
		free(b->out_cols);
		if ((b->out_cols = calloc(b->n_in, sizeof *b->out_cols)) == NULL) {
			free(mark);
			return nomem(b);
		}
		memcpy(b->out_cols, b->in_cols, b->n_in * sizeof *b->out_cols);
		b->n_out = b->n_in;
	}
	if (b->time_col >= 0 && t->num[b->time_col] == NULL && (mark[b->time_col] & 2)) {
		shown s;
		free(mark);
		return fail(b->err, LOOM_EINVAL,
		            "%s: column \"%s\" is the time column (data.time_column), not a numeric "
		            "channel; remove it from data.features",
		            b->path, show(&s, t->names[b->time_col]));
	}
	free(mark);
	return 0;
}

typedef struct timed {
	double t;
	int64_t row;
} timed;

static int
timed_cmp(const void *a, const void *b)
{
	const timed *x = a, *y = b;
	if (x->t != y->t)
		return x->t < y->t ? -1 : 1;
	return (x->row > y->row) - (x->row < y->row);
}

static int
double_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static int64_t
infer_season(double spacing)
{
	const double H = 3600, D = 86400;
	if (fabs(spacing - H) <= 60)
		return 24;
	if (fabs(spacing - D) <= H)
		return 7;
	if (fabs(spacing - 7 * D) <= H)
		return 52;
	if (spacing >= 28 * D - H && spacing <= 31 * D + H)
		return 12;
	if (spacing >= 89 * D - H && spacing <= 92 * D + H)
		return 4;
	return 0;
}

/* Puts the rows in time order (b->perm, b->time) and settles the season. */
static int
order_rows(build *b)
{
	const tf_table *t = b->t;
	int tc = b->time_col;
	int64_t n = b->n, kind_line = 0;
	int kind = 0; /* 1 date-times, 2 numbers */
	timed *tv = NULL;
	shown s1;
	int rv = 0;

	if ((b->perm = calloc((size_t)n, sizeof *b->perm)) == NULL)
		return nomem(b);
	b->ds->season = b->sp->season;
	if (tc < 0) {
		for (int64_t i = 0; i < n; i++)
			b->perm[i] = i;
		return 0;
	}
	if ((tv = calloc((size_t)n, sizeof *tv)) == NULL ||
	    (b->time = calloc((size_t)n, sizeof *b->time)) == NULL) {
		free(tv);
		return nomem(b);
	}
	for (int64_t r = 0; r < n; r++) {
		const char *text = t->text[tc][r];
		double v;
		int k;
		if (t->num[tc] != NULL && !isnan(t->num[tc][r])) {
			v = t->num[tc][r];
			k = 2;
		} else if (parse_datetime(text, &v)) {
			k = 1;
		} else if (num_parse(text, b->loc, &v) == NUM_OK) {
			k = 2;
		} else if (text[strspn(text, " \t")] == '\0') {
			rv = fail(b->err, LOOM_EINVAL,
			          "%s:%lld: column \"%s\" is empty; every row needs a time (or leave "
			          "data.time_column unset to keep the file's order)",
			          b->path, (long long)t->line[r], show(&s1, t->names[tc]));
			goto out;
		} else {
			rv = fail(b->err, LOOM_EINVAL,
			          "%s:%lld: column \"%s\": the value is not a time; write YYYY-MM-DD or "
			          "YYYY/MM/DD (optionally with HH:MM[:SS]), or a plain number",
			          b->path, (long long)t->line[r], show(&s1, t->names[tc]));
			goto out;
		}
		if (kind == 0) {
			kind = k;
			kind_line = t->line[r];
		} else if (k != kind) {
			rv = fail(b->err, LOOM_EINVAL,
			          "%s:%lld: column \"%s\": this time is a %s, but line %lld holds a %s; "
			          "write every time the same way",
			          b->path, (long long)t->line[r], show(&s1, t->names[tc]),
			          k == 1 ? "date" : "number", (long long)kind_line,
			          kind == 1 ? "date" : "number");
			goto out;
		}
		tv[r].t = v;
		tv[r].row = r;
		if (r > 0 && v < tv[r - 1].t)
			b->ds->unordered++;
	}
	b->time_dates = kind == 1;
	if (b->ds->unordered > 0)
		qsort(tv, (size_t)n, sizeof *tv, timed_cmp);
	for (int64_t i = 0; i < n; i++) {
		if (i > 0 && tv[i].t == tv[i - 1].t) {
			int64_t a = tv[i - 1].row, c = tv[i].row; /* a < c: the sort is stable */
			rv = fail(b->err, LOOM_EINVAL,
			          "%s:%lld: column \"%s\": the time is the same as line %lld's; each "
			          "row needs its own time — remove or merge one of the two rows",
			          b->path, (long long)t->line[c], show(&s1, t->names[tc]),
			          (long long)t->line[a]);
			goto out;
		}
		b->perm[i] = tv[i].row;
		b->time[i] = tv[i].t;
	}
	if (b->ds->season == 0 && b->time_dates && n >= 2) {
		double *d = calloc((size_t)n - 1, sizeof *d);
		if (d == NULL) {
			rv = nomem(b);
			goto out;
		}
		for (int64_t i = 1; i < n; i++)
			d[i - 1] = b->time[i] - b->time[i - 1];
		qsort(d, (size_t)n - 1, sizeof *d, double_cmp);
		b->ds->season = infer_season(d[(n - 2) / 2]);
		free(d);
	}
out:
	free(tv);
	return rv;
}

/* Split boundaries and the windows of each split. */
static int
make_splits(build *b)
{
	const tf_data_spec *sp = b->sp;
	tf_dataset *ds = b->ds;
	int64_t n = b->n, rows[3], need[3], first[3];
	bool fc = sp->task == TF_TASK_FORECAST;
	int64_t len = fc ? sat_add(sp->context, sp->horizon) : sp->context;
	int64_t predicted = fc ? sp->horizon : 1;
	int64_t reach = len - predicted; /* rows of a window before its predicted rows */

	for (int s = 0; s < 2; s++) {
		double x = floor((double)n * sp->split[s] + 1e-6);
		int64_t left = n - (s ? rows[0] : 0);
		rows[s] = x >= (double)left ? left : (int64_t)x;
	}
	rows[2] = n - rows[0] - rows[1];
	for (int s = 0; s < 3; s++) {
		int64_t lo, hi;
		ds->split_begin[s] = s ? ds->split_end[s - 1] : 0;
		ds->split_end[s] = ds->split_begin[s] + rows[s];
		lo = ds->split_begin[s] - reach;
		first[s] = lo > 0 ? lo : 0;
		hi = ds->split_end[s] - len;
		need[s] = len - ds->split_begin[s] > predicted ? len - ds->split_begin[s] : predicted;
		ds->n_windows[s] = hi >= first[s] ? (hi - first[s]) / sp->stride + 1 : 0;
	}
	for (int s = 0; s < 3; s++) {
		if (ds->n_windows[s] > 0 || sp->split[s] == 0)
			continue;
		return fail(b->err, LOOM_EINVAL,
		            "%s: too few rows for one window in the %s split: it has %lld rows and "
		            "needs %lld; rows per split (has/needs): train %lld/%lld, validation "
		            "%lld/%lld, test %lld/%lld of %lld — give the %s split a larger share in "
		            "data.split, use more rows, or shorten model.context%s",
		            b->path, split_name[s], (long long)rows[s], (long long)need[s],
		            (long long)rows[0], (long long)need[0], (long long)rows[1],
		            (long long)need[1], (long long)rows[2], (long long)need[2], (long long)n,
		            split_name[s], fc ? " or model.horizon" : "");
	}
	for (int s = 0; s < 3; s++) {
		if (ds->n_windows[s] == 0)
			continue;
		if ((ds->window_start[s] = calloc((size_t)ds->n_windows[s], sizeof(int64_t))) == NULL)
			return nomem(b);
		for (int64_t w = 0; w < ds->n_windows[s]; w++)
			ds->window_start[s][w] = first[s] + w * sp->stride;
	}
	return 0;
}

static void
fill_gaps(build *b, double *v)
{
	int64_t n = b->n, prev = -1;

	if (b->sp->fill == TF_FILL_ZERO) {
		for (int64_t i = 0; i < n; i++)
			if (isnan(v[i]))
				v[i] = 0;
		return;
	}
	for (int64_t i = 0; i <= n; i++) {
		int64_t next;
		if (i < n && isnan(v[i]))
			continue;
		/* rows (prev, i) are a gap between known values at prev and i */
		next = i;
		for (int64_t k = prev + 1; k < next; k++) {
			if (prev < 0) {
				v[k] = v[next];                 /* leading gap: the first value */
			} else if (next == n || b->sp->fill == TF_FILL_FFILL) {
				v[k] = v[prev];                 /* carried forward; trailing gap */
			} else {
				double ta = b->time ? b->time[prev] : (double)prev;
				double tb = b->time ? b->time[next] : (double)next;
				double tk = b->time ? b->time[k] : (double)k;
				v[k] = v[prev] + (v[next] - v[prev]) * (tk - ta) / (tb - ta);
			}
		}
		prev = i;
	}
}

/* The values of numeric channel c in time order, gaps filled, in b->vals[c]. */
static int
load_channel(build *b, int c)
{
	const tf_table *t = b->t;
	const char *col;
	int64_t n = b->n, gaps = 0;
	double *filev, *v;
	shown s1;

	if (b->vals[c] != NULL)
		return 0;
	col = show(&s1, t->names[c]);
	if (t->num[c] == NULL) {
		/* a text column: is there a number in it at all? */
		int64_t first_text = -1;
		bool any = false;
		for (int64_t r = 0; r < n && !any; r++) {
			double x;
			int k = num_parse(t->text[c][r], b->loc, &x);
			any = k == NUM_OK;
			if (k != NUM_OK && k != NUM_MISSING && first_text < 0)
				first_text = r;
		}
		if (!any && first_text < 0)
			return fail(b->err, LOOM_EINVAL,
			            "%s: column \"%s\" is empty on every row; choose another column", b->path,
			            col);
		if (!any)
			return fail(b->err, LOOM_EINVAL,
			            "%s:%lld: column \"%s\" is a text column (the value on this line is not "
			            "a number, nor is any other); data.features and data.target take "
			            "numeric columns",
			            b->path, (long long)t->line[first_text], col);
	}
	if ((filev = calloc((size_t)n, sizeof *filev)) == NULL)
		return nomem(b);
	/* in file order, so that the problem reported is the first in the file */
	for (int64_t r = 0; r < n; r++) {
		const char *text = t->text[c][r];
		int k;
		if (t->num[c] != NULL) {
			filev[r] = t->num[c][r];
			k = isnan(filev[r]) ? NUM_MISSING : NUM_OK;
		} else {
			k = num_parse(text, b->loc, &filev[r]);
		}
		if (k == NUM_OK)
			continue;
		filev[r] = NAN;
		gaps++;
		if (b->sp->fill != TF_FILL_NONE)
			continue;
		free(filev);
		if (k == NUM_MISSING && text[strspn(text, " \t")] == '\0')
			return fail(b->err, LOOM_EINVAL,
			            "%s:%lld: column \"%s\": missing value; fill it in, or set data.fill to "
			            "\"ffill\", \"linear\" or \"zero\"",
			            b->path, (long long)t->line[r], col);
		/* the value itself is never quoted: data.path may name a file the
		 * client may not read (data.h) */
		if (k == NUM_MISSING)
			return fail(b->err, LOOM_EINVAL,
			            "%s:%lld: column \"%s\": missing value (NA, NaN or null); fill it in, "
			            "or set data.fill to \"ffill\", \"linear\" or \"zero\"",
			            b->path, (long long)t->line[r], col);
		if (k == NUM_RANGE)
			return fail(b->err, LOOM_EINVAL,
			            "%s:%lld: column \"%s\": the value is too large for a number; fix the "
			            "value or set data.fill",
			            b->path, (long long)t->line[r], col);
		return fail(b->err, LOOM_EINVAL,
		            "%s:%lld: column \"%s\": the value is not a number; fix the value or set "
		            "data.fill",
		            b->path, (long long)t->line[r], col);
	}
	if ((v = calloc((size_t)n, sizeof *v)) == NULL) {
		free(filev);
		return nomem(b);
	}
	for (int64_t i = 0; i < n; i++)
		v[i] = filev[b->perm[i]];
	free(filev);
	if (gaps > 0)
		fill_gaps(b, v);
	b->ds->filled += gaps;
	b->vals[c] = v;
	return 0;
}

static int
label_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A label cell that marks its row unlabelled: empty, NA, NaN or null. */
static bool
unlabelled(const build *b, const char *text)
{
	double v;
	return num_parse(text, b->loc, &v) == NUM_MISSING;
}

/* A class name and its index, sorted by name for lookups. */
typedef struct named {
	const char *name;
	int64_t index;
} named;

static int
named_cmp(const void *a, const void *b)
{
	return strcmp(((const named *)a)->name, ((const named *)b)->name);
}

/* spec->classes: not empty, distinct (sorted copy in *given, [n]). */
static int
given_classes(build *b, named **given)
{
	const tf_data_spec *sp = b->sp;
	size_t n = sp->n_classes;
	named *g;

	if (n > INT32_MAX)
		return fail(b->err, LOOM_ERANGE, "%s: the init version has too many classes (%zu)",
		            b->path, n);
	if ((g = calloc(n ? n : 1, sizeof *g)) == NULL)
		return nomem(b);
	for (size_t i = 0; i < n; i++) {
		if (sp->classes[i] == NULL || sp->classes[i][0] == '\0') {
			free(g);
			return fail(b->err, LOOM_EINVAL,
			            "%s: class %zu of the init version has no name; the init version's "
			            "class list is damaged — train it again or start without train.init",
			            b->path, i + 1);
		}
		g[i].name = sp->classes[i];
		g[i].index = (int64_t)i;
	}
	qsort(g, n, sizeof *g, named_cmp);
	for (size_t i = 1; i < n; i++)
		if (strcmp(g[i].name, g[i - 1].name) == 0) {
			free(g);
			return fail(b->err, LOOM_EINVAL,
			            "%s: the init version names a class twice in its class list; it is "
			            "damaged — train it again or start without train.init",
			            b->path);
		}
	*given = g;
	return 0;
}

/* Classification: the classes (spec->classes then the new labels, or the
 * labels found), each row's class index in y (NAN for an unlabelled row),
 * the training split's counts, unlabelled windows dropped from the splits. */
static int
load_classes(build *b)
{
	const tf_table *t = b->t;
	const tf_data_spec *sp = b->sp;
	tf_dataset *ds = b->ds;
	int c = b->out_cols[0];
	int64_t n = b->n, k = 0, n_given = sp->classes != NULL ? (int64_t)sp->n_classes : 0;
	int64_t labelled = 0, n_all, kept = 0;
	named *given = NULL, *all = NULL;
	const char **found = NULL;
	shown s1;
	int rv = 0;

	if (sp->classes != NULL && (rv = given_classes(b, &given)) != 0)
		return rv;
	if ((found = calloc((size_t)n, sizeof *found)) == NULL) {
		rv = nomem(b);
		goto out;
	}
	/* the labels of the labelled rows not among the given classes */
	for (int64_t r = 0; r < n; r++) {
		named key = {t->text[c][r], 0};
		if (unlabelled(b, key.name)) {
			ds->unlabeled++;
			continue;
		}
		labelled++;
		if (given == NULL ||
		    bsearch(&key, given, (size_t)n_given, sizeof *given, named_cmp) == NULL)
			found[k++] = key.name;
	}
	if (labelled == 0) {
		rv = fail(b->err, LOOM_EINVAL,
		          "%s: column \"%s\" has no label on any of its %lld rows (all are empty or "
		          "NA); label rows, or choose another data.target",
		          b->path, show(&s1, t->names[c]), (long long)n);
		goto out;
	}
	qsort(found, (size_t)k, sizeof *found, label_cmp);
	{
		int64_t u = 0;
		for (int64_t r = 0; r < k; r++)
			if (r == 0 || strcmp(found[r], found[u - 1]) != 0)
				found[u++] = found[r];
		k = u;
	}
	n_all = n_given + k;
	if (n_all < 2) {
		rv = fail(b->err, LOOM_EINVAL,
		          "%s: column \"%s\" holds a single class on all %lld%s rows; "
		          "classification needs at least two — choose another data.target",
		          b->path, show(&s1, t->names[c]), (long long)labelled,
		          ds->unlabeled > 0 ? " labelled" : "");
		goto out;
	}
	if (n_all > INT32_MAX) {
		rv = fail(b->err, LOOM_ERANGE, "%s: column \"%s\" holds too many classes", b->path,
		          show(&s1, t->names[c]));
		goto out;
	}
	if ((ds->class_names = calloc((size_t)n_all, sizeof *ds->class_names)) == NULL ||
	    (ds->class_counts = calloc((size_t)n_all, sizeof *ds->class_counts)) == NULL ||
	    (all = calloc((size_t)n_all, sizeof *all)) == NULL) {
		rv = nomem(b);
		goto out;
	}
	ds->n_classes = (int32_t)n_all;
	ds->n_new_classes = given != NULL ? (int32_t)k : 0;
	for (int64_t i = 0; i < n_all; i++) {
		const char *name = i < n_given ? sp->classes[i] : found[i - n_given];
		if ((ds->class_names[i] = strdup(name)) == NULL) {
			rv = nomem(b);
			goto out;
		}
		all[i].name = ds->class_names[i];
		all[i].index = i;
	}
	qsort(all, (size_t)n_all, sizeof *all, named_cmp);
	for (int64_t i = 0; i < n; i++) {
		named key = {t->text[c][b->perm[i]], 0}, *hit;
		if (unlabelled(b, key.name)) {
			ds->y_raw[i] = NAN;
			ds->y[i] = NAN;
			continue;
		}
		hit = bsearch(&key, all, (size_t)n_all, sizeof *all, named_cmp);
		ds->y_raw[i] = (double)hit->index;
		ds->y[i] = (float)hit->index;
		if (i < ds->split_end[0])
			ds->class_counts[hit->index]++;
	}
	if (ds->unlabeled == 0)
		goto out;
	/* a window is labelled by its last input row: keep the labelled ones */
	for (int s = 0; s < 3; s++) {
		int64_t w2 = 0;
		for (int64_t w = 0; w < ds->n_windows[s]; w++) {
			int64_t r = ds->window_start[s][w];
			if (!isnan(ds->y[r + sp->context - 1]))
				ds->window_start[s][w2++] = r;
		}
		ds->n_windows[s] = w2;
		kept += w2;
	}
	if (kept == 0) {
		rv = fail(b->err, LOOM_EINVAL,
		          "%s: column \"%s\": no window is labelled (%lld of %lld rows have no label, "
		          "and a window needs one on its last row); label rows, or choose another "
		          "data.target",
		          b->path, show(&s1, t->names[c]), (long long)ds->unlabeled, (long long)n);
		goto out;
	}
	for (int s = 0; s < 3; s++) {
		if (ds->n_windows[s] > 0 || sp->split[s] == 0)
			continue;
		rv = fail(b->err, LOOM_EINVAL,
		          "%s: column \"%s\": the %s split (rows %lld to %lld in time order) has no "
		          "labelled window (%lld of %lld rows have no label); label rows there, or "
		          "change data.split",
		          b->path, show(&s1, t->names[c]), split_name[s],
		          (long long)ds->split_begin[s] + 1, (long long)ds->split_end[s],
		          (long long)ds->unlabeled, (long long)n);
		goto out;
	}
out:
	free(all);
	free(found);
	free(given);
	return rv;
}

/* Anomaly labels: 0 or 1 on every row. */
static int
load_anomaly_labels(build *b)
{
	const tf_table *t = b->t;
	int c = b->out_cols[0];
	shown s1;

	for (int64_t i = 0; i < b->n; i++) {
		int64_t r = b->perm[i];
		const char *text = t->text[c][r];
		double v = NAN;
		int k = num_parse(text, b->loc, &v);
		if (k == NUM_MISSING)
			return fail(b->err, LOOM_EINVAL,
			            "%s:%lld: column \"%s\": missing label; anomaly labels must be 0 or 1 on "
			            "every row",
			            b->path, (long long)t->line[r], show(&s1, t->names[c]));
		if (k != NUM_OK || (v != 0 && v != 1))
			return fail(b->err, LOOM_EINVAL,
			            "%s:%lld: column \"%s\": the label is not 0 or 1; anomaly labels mark "
			            "normal rows 0 and anomalies 1",
			            b->path, (long long)t->line[r], show(&s1, t->names[c]));
		b->ds->y_raw[i] = v;
		b->ds->y[i] = (float)v;
	}
	return 0;
}

/* shift and scale of channel j of v[rows, width] over its first n rows. */
static void
fit(const double *v, int64_t width, int64_t j, int64_t n, int mode, double *shift,
    double *scale)
{
	*shift = 0;
	*scale = 1;
	if (mode == TF_NORM_ZSCORE && n > 0) {
		double sum = 0, sq = 0, mean;
		for (int64_t i = 0; i < n; i++)
			sum += v[i * width + j];
		mean = sum / (double)n;
		for (int64_t i = 0; i < n; i++) {
			double d = v[i * width + j] - mean;
			sq += d * d;
		}
		*shift = mean;
		*scale = sqrt(sq / (double)n);
	} else if (mode == TF_NORM_MINMAX && n > 0) {
		double lo = v[j], hi = v[j];
		for (int64_t i = 1; i < n; i++) {
			double x = v[i * width + j];
			lo = x < lo ? x : lo;
			hi = x > hi ? x : hi;
		}
		*shift = lo;
		*scale = hi - lo;
	}
	if (!(*scale > 0) || !isfinite(*scale))
		*scale = 1;
}

static void
apply(const double *raw, float *out, int64_t rows, int64_t width, const double *shift,
      const double *scale)
{
	for (int64_t i = 0; i < rows; i++)
		for (int64_t j = 0; j < width; j++)
			out[i * width + j] = (float)((raw[i * width + j] - shift[j]) / scale[j]);
}

/* The init version's normalization (spec in_* / out_*) for width channels
 * named names: shift and scale given together, finite, scale not 0. */
static int
check_given_norm(build *b, const double *shift, const double *scale, int64_t width,
                 char **names, const char *what)
{
	if ((shift == NULL) != (scale == NULL))
		return fail(b->err, LOOM_EINVAL,
		            "%s: the init version's %s normalization has a %s but no %s; it is "
		            "damaged — train it again or start without train.init",
		            b->path, what, shift ? "shift" : "scale", shift ? "scale" : "shift");
	for (int64_t j = 0; shift != NULL && j < width; j++) {
		shown s1;
		if (isfinite(shift[j]) && isfinite(scale[j]) && scale[j] != 0)
			continue;
		return fail(b->err, LOOM_EINVAL,
		            "%s: channel \"%s\": the init version's normalization (shift %g, scale %g) "
		            "is not usable; the scale must be a finite number other than 0 — train "
		            "the init version again or start without train.init",
		            b->path, show(&s1, names[j]), shift[j], scale[j]);
	}
	return 0;
}

/* The dataset's arrays, values and statistics once the rows and windows
 * are known. */
static int
fill_dataset(build *b)
{
	const tf_data_spec *sp = b->sp;
	const tf_table *t = b->t;
	tf_dataset *ds = b->ds;
	int64_t n = b->n, ni, no;
	bool numeric_targets = sp->task == TF_TASK_FORECAST || sp->task == TF_TASK_REGRESSION;
	int rv;

	ds->rows = n;
	ds->n_in = ni = (int64_t)b->n_in;
	ds->n_out = no = (int64_t)b->n_out;
	if ((b->vals = calloc(t->n_cols, sizeof *b->vals)) == NULL)
		return nomem(b);
	for (size_t i = 0; i < b->n_in; i++)
		if ((rv = load_channel(b, b->in_cols[i])) != 0)
			return rv;
	for (size_t i = 0; numeric_targets && i < b->n_out; i++)
		if ((rv = load_channel(b, b->out_cols[i])) != 0)
			return rv;

	if ((ds->in_names = calloc3(b->n_in, 1, sizeof *ds->in_names)) == NULL ||
	    (ds->out_names = calloc3(b->n_out, 1, sizeof *ds->out_names)) == NULL ||
	    (ds->x = calloc3((size_t)n, b->n_in, sizeof *ds->x)) == NULL ||
	    (ds->x_raw = calloc3((size_t)n, b->n_in, sizeof *ds->x_raw)) == NULL ||
	    (ds->y = calloc3((size_t)n, b->n_out, sizeof *ds->y)) == NULL ||
	    (ds->y_raw = calloc3((size_t)n, b->n_out, sizeof *ds->y_raw)) == NULL ||
	    (ds->in_shift = calloc3(b->n_in, 1, sizeof(double))) == NULL ||
	    (ds->in_scale = calloc3(b->n_in, 1, sizeof(double))) == NULL ||
	    (ds->out_shift = calloc3(b->n_out, 1, sizeof(double))) == NULL ||
	    (ds->out_scale = calloc3(b->n_out, 1, sizeof(double))) == NULL)
		return nomem(b);
	for (int64_t j = 0; j < ni; j++) {
		if ((ds->in_names[j] = strdup(t->names[b->in_cols[j]])) == NULL)
			return nomem(b);
		for (int64_t i = 0; i < n; i++)
			ds->x_raw[i * ni + j] = b->vals[b->in_cols[j]][i];
		if (sp->in_shift == NULL)
			fit(ds->x_raw, ni, j, ds->split_end[0], sp->normalize, &ds->in_shift[j],
			    &ds->in_scale[j]);
	}
	for (int64_t j = 0; j < no; j++)
		if ((ds->out_names[j] = strdup(t->names[b->out_cols[j]])) == NULL)
			return nomem(b);
	/* an incremental run reads the data as its init version did */
	if ((rv = check_given_norm(b, sp->in_shift, sp->in_scale, ni, ds->in_names, "input")) != 0 ||
	    (numeric_targets &&
	     (rv = check_given_norm(b, sp->out_shift, sp->out_scale, no, ds->out_names, "target")) !=
	         0))
		return rv;
	if (sp->in_shift != NULL) {
		memcpy(ds->in_shift, sp->in_shift, (size_t)ni * sizeof *ds->in_shift);
		memcpy(ds->in_scale, sp->in_scale, (size_t)ni * sizeof *ds->in_scale);
	}
	apply(ds->x_raw, ds->x, n, ni, ds->in_shift, ds->in_scale);
	for (int64_t j = 0; j < no; j++) {
		ds->out_shift[j] = 0;
		ds->out_scale[j] = 1;
		if (!numeric_targets)
			continue;
		for (int64_t i = 0; i < n; i++)
			ds->y_raw[i * no + j] = b->vals[b->out_cols[j]][i];
		if (sp->out_shift != NULL) {
			ds->out_shift[j] = sp->out_shift[j];
			ds->out_scale[j] = sp->out_scale[j];
		} else {
			fit(ds->y_raw, no, j, ds->split_end[0], sp->normalize, &ds->out_shift[j],
			    &ds->out_scale[j]);
		}
	}
	if (numeric_targets)
		apply(ds->y_raw, ds->y, n, no, ds->out_shift, ds->out_scale);
	else if (sp->task == TF_TASK_CLASSIFICATION)
		return load_classes(b);
	else if (no == 1)
		return load_anomaly_labels(b);
	return 0;
}

int
tf_dataset_build(const tf_table *t, const tf_data_spec *spec, tf_dataset *ds, char **err)
{
	build b;
	int rv;

	memset(ds, 0, sizeof *ds);
	memset(&b, 0, sizeof b);
	if (err != NULL)
		*err = NULL;
	b.t = t;
	b.sp = spec;
	b.ds = ds;
	b.err = err;
	b.path = t->path != NULL ? t->path : "(data)";
	b.n = (int64_t)t->n_rows;
	b.time_col = -1;

	if ((rv = check_spec(&b)) != 0)
		goto out;
	if ((b.loc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0)) == (locale_t)0) {
		rv = nomem(&b);
		goto out;
	}
	if ((rv = check_data_file(&b)) != 0)
		goto out;
	if ((rv = resolve_columns(&b)) != 0 || (rv = order_rows(&b)) != 0 ||
	    (rv = make_splits(&b)) != 0 || (rv = fill_dataset(&b)) != 0)
		goto out;
out:
	if (b.vals != NULL)
		for (size_t c = 0; c < t->n_cols; c++)
			free(b.vals[c]);
	free(b.vals);
	free(b.in_cols);
	free(b.out_cols);
	free(b.perm);
	free(b.time);
	if (b.loc != (locale_t)0)
		freelocale(b.loc);
	if (rv != 0)
		tf_dataset_free(ds);
	return rv;
}

void
tf_dataset_free(tf_dataset *ds)
{
	if (ds == NULL)
		return;
	for (int64_t j = 0; ds->in_names != NULL && j < ds->n_in; j++)
		free(ds->in_names[j]);
	for (int64_t j = 0; ds->out_names != NULL && j < ds->n_out; j++)
		free(ds->out_names[j]);
	for (int32_t k = 0; ds->class_names != NULL && k < ds->n_classes; k++)
		free(ds->class_names[k]);
	for (int s = 0; s < 3; s++)
		free(ds->window_start[s]);
	free(ds->in_names);
	free(ds->out_names);
	free(ds->class_names);
	free(ds->class_counts);
	free(ds->x);
	free(ds->y);
	free(ds->x_raw);
	free(ds->y_raw);
	free(ds->in_shift);
	free(ds->in_scale);
	free(ds->out_shift);
	free(ds->out_scale);
	memset(ds, 0, sizeof *ds);
}

/* ------------------------------------------------------------------ series */

int
tf_series_build(const tf_table *t, const char *time_column, const char *const *channels,
                size_t n_channels, int fill, tf_series *s, char **err)
{
	tf_data_spec sp;
	tf_dataset ds;
	build b;
	int rv;

	memset(s, 0, sizeof *s);
	memset(&sp, 0, sizeof sp);
	memset(&ds, 0, sizeof ds);
	memset(&b, 0, sizeof b);
	if (err != NULL)
		*err = NULL;
	s->time_col = -1;
	sp.time_column = time_column;
	sp.features = channels;
	sp.n_features = n_channels;
	sp.fill = fill;
	sp.season = 1; /* no season to infer */
	b.t = t;
	b.sp = &sp;
	b.ds = &ds;
	b.err = err;
	b.path = t->path != NULL ? t->path : "(data)";
	b.n = (int64_t)t->n_rows;
	b.time_col = -1;

	if (fill < TF_FILL_NONE || fill > TF_FILL_ZERO)
		return fail(err, LOOM_EINVAL, "%s: unknown data.fill %d", b.path, fill);
	if (n_channels == 0 || channels == NULL)
		return fail(err, LOOM_EINVAL, "%s: no input channels to read", b.path);
	if (t->n_rows == 0)
		return fail(err, LOOM_EINVAL, "%s: no data rows after the header line", b.path);
	if (t->n_rows > (size_t)INT64_MAX / 2)
		return fail(err, LOOM_ERANGE, "%s: too many rows", b.path);
	if ((b.loc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0)) == (locale_t)0) {
		rv = nomem(&b);
		goto out;
	}
	if ((rv = check_data_file(&b)) != 0)
		goto out;
	if (time_column != NULL && (rv = find_column(&b, time_column, &b.time_col)) != 0)
		goto out;
	if ((b.in_cols = calloc(n_channels, sizeof *b.in_cols)) == NULL ||
	    (b.vals = calloc(t->n_cols, sizeof *b.vals)) == NULL) {
		rv = nomem(&b);
		goto out;
	}
	if ((rv = find_columns(&b, channels, n_channels, "the model's input channels",
	                       b.in_cols)) != 0 ||
	    (rv = order_rows(&b)) != 0)
		goto out;
	for (size_t i = 0; i < n_channels; i++)
		if ((rv = load_channel(&b, b.in_cols[i])) != 0)
			goto out;
	if ((s->x = calloc3((size_t)b.n, n_channels, sizeof *s->x)) == NULL ||
	    (s->row = calloc3((size_t)b.n, 1, sizeof *s->row)) == NULL) {
		rv = nomem(&b);
		goto out;
	}
	for (int64_t r = 0; r < b.n; r++) {
		s->row[r] = b.perm[r];
		for (size_t i = 0; i < n_channels; i++)
			s->x[r * (int64_t)n_channels + (int64_t)i] = b.vals[b.in_cols[i]][r];
	}
	s->rows = b.n;
	s->n_in = (int64_t)n_channels;
	s->time_col = b.time_col;
	s->filled = ds.filled;
	s->unordered = ds.unordered;
out:
	if (b.vals != NULL)
		for (size_t c = 0; c < t->n_cols; c++)
			free(b.vals[c]);
	free(b.vals);
	free(b.in_cols);
	free(b.perm);
	free(b.time);
	if (b.loc != (locale_t)0)
		freelocale(b.loc);
	if (rv != 0)
		tf_series_free(s);
	return rv;
}

void
tf_series_free(tf_series *s)
{
	if (s == NULL)
		return;
	free(s->x);
	free(s->row);
	memset(s, 0, sizeof *s);
	s->time_col = -1;
}

/* ------------------------------------------------------------------ windows */

void
tf_dataset_batch(const tf_dataset *ds, const tf_data_spec *spec, int s, const int64_t *idx,
                 int64_t n, float *x, float *y)
{
	int64_t C = spec->context, H = spec->horizon, ni = ds->n_in, no = ds->n_out;

	assert(s >= 0 && s < 3);
	for (int64_t i = 0; i < n; i++) {
		int64_t r;
		float *xi = x + i * C * ni;

		assert(idx[i] >= 0 && idx[i] < ds->n_windows[s]);
		r = ds->window_start[s][idx[i]];
		memcpy(xi, ds->x + r * ni, (size_t)(C * ni) * sizeof *x);
		if (y == NULL)
			continue;
		switch (spec->task) {
		case TF_TASK_FORECAST:
			memcpy(y + i * H * no, ds->y + (r + C) * no, (size_t)(H * no) * sizeof *y);
			break;
		case TF_TASK_REGRESSION:
			memcpy(y + i * no, ds->y + (r + C - 1) * no, (size_t)no * sizeof *y);
			break;
		case TF_TASK_CLASSIFICATION:
			y[i] = ds->y[r + C - 1];
			break;
		default:
			memcpy(y + i * C * ni, xi, (size_t)(C * ni) * sizeof *y);
			break;
		}
	}
}

/* ------------------------------------------------------------------ baselines */

void
tf_dataset_baselines(const tf_dataset *ds, const tf_data_spec *spec, int s, tf_baselines *out)
{
	int64_t C = spec->context, H = spec->horizon, no = ds->n_out, m = ds->season;

	out->repeat_last_mae = out->repeat_last_mse = NAN;
	out->seasonal_mae = out->seasonal_mse = NAN;
	out->majority_accuracy = NAN;
	out->majority_class = -1;
	if (s < 0 || s > 2)
		return;
	if (spec->task == TF_TASK_FORECAST && ds->n_windows[s] > 0 && no > 0 && H > 0) {
		double ae = 0, se = 0, sae = 0, sse = 0, count;
		bool seasonal = m > 0 && m <= C;
		for (int64_t w = 0; w < ds->n_windows[s]; w++) {
			int64_t r = ds->window_start[s][w], last = r + C - 1;
			for (int64_t h = 0; h < H; h++)
				for (int64_t j = 0; j < no; j++) {
					double truth = ds->y_raw[(r + C + h) * no + j];
					double d = ds->y_raw[last * no + j] - truth;
					ae += fabs(d);
					se += d * d;
					if (seasonal) {
						d = ds->y_raw[(r + C - m + h % m) * no + j] - truth;
						sae += fabs(d);
						sse += d * d;
					}
				}
		}
		count = (double)ds->n_windows[s] * (double)H * (double)no;
		out->repeat_last_mae = ae / count;
		out->repeat_last_mse = se / count;
		if (seasonal) {
			out->seasonal_mae = sae / count;
			out->seasonal_mse = sse / count;
		}
	}
	if (spec->task == TF_TASK_CLASSIFICATION && ds->n_classes > 0) {
		int32_t maj = 0;
		for (int32_t k = 1; k < ds->n_classes; k++)
			if (ds->class_counts[k] > ds->class_counts[maj])
				maj = k;
		out->majority_class = maj;
		if (ds->n_windows[s] > 0) {
			int64_t hit = 0;
			for (int64_t w = 0; w < ds->n_windows[s]; w++)
				hit += ds->y_raw[ds->window_start[s][w] + C - 1] == (double)maj;
			out->majority_accuracy = (double)hit / (double)ds->n_windows[s];
		}
	}
}

/* <loom/spec.h>: job specs for plugins, on the host's own document and
 * schema code (doc.c), so a plugin's messages read exactly like loomd's. */
#include "config.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <loom/spec.h>
#include <loom/util.h>

#include "doc.h"

/* Deeper nesting of a plugin's schema than this is taken for a cycle. */
#define SCHEMA_DEPTH_MAX 32

struct loom_spec {
	loomi_doc doc;
	loomi_strv errs;
	bool parsed;            /* the text parsed; loom_spec_check may run */
};

int
loom_spec_parse(const char *text, const char *name, loom_spec **out)
{
	loom_spec *s;
	const char *p = text;
	int rv;

	if (out == NULL)
		return LOOM_EINVAL;
	*out = NULL;
	if (text == NULL)
		return LOOM_EINVAL;
	if ((s = calloc(1, sizeof *s)) == NULL)
		return LOOM_ENOMEM;
	if (name == NULL)
		name = "spec";
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p == '{')
		rv = loomi_doc_load_json(&s->doc, text, strlen(text), name, &s->errs);
	else
		rv = loomi_doc_load_string(&s->doc, text, name, &s->errs);
	if (rv != 0) {
		/* an empty document: nothing of a broken one is left to read */
		json_decref(s->doc.root);
		s->doc.root = json_object();
		s->doc.n_locs = 0;
		rv = LOOM_EINVAL;
	} else {
		s->parsed = true;
	}
	*out = s;
	return rv;
}

void
loom_spec_free(loom_spec *s)
{
	if (s == NULL)
		return;
	loomi_doc_free(&s->doc);
	loomi_strv_free(&s->errs);
	free(s);
}

/* ------------------------------------------------------------------ schemas */

static void
fields_free(loomi_field *f)
{
	for (loomi_field *p = f; p && p->key; p++)
		fields_free((loomi_field *)p->children);
	free(f);
}

/* The public fields as the schema checker's, recursively; NULL (with a
 * message) for a schema the plugin got wrong. */
static loomi_field *
fields_of(const loom_spec_field *fields, const char *path, int depth, loomi_strv *errs)
{
	size_t n = 0;
	loomi_field *out;

	for (const loom_spec_field *f = fields; f && f->key; f++)
		n++;
	out = loomi_xcalloc(n + 1, sizeof *out);
	for (size_t i = 0; i < n; i++) {
		const loom_spec_field *f = &fields[i];
		loomi_field *o = &out[i];
		o->key = f->key;
		o->type = (int)f->type;
		o->flags = f->flags & (LOOM_SPEC_REQUIRED | LOOM_SPEC_RANGE);
		o->choices = f->choices;
		o->min = f->min;
		o->max = f->max;
		o->help = f->help;
		if (f->type < LOOM_SPEC_BOOL || f->type > LOOM_SPEC_INTLIST) {
			loomi_strv_pushf(errs, "%s%s%s: the plugin's schema gives it an unknown type %u; "
			                       "the plugin is broken, report it to its author",
			                 path, path[0] ? "." : "", f->key, f->type);
			fields_free(out);
			return NULL;
		}
		if (f->type == LOOM_SPEC_GROUP || f->type == LOOM_SPEC_GROUPLIST) {
			char *sub = path[0] ? loomi_strfmt("%s.%s", path, f->key) : loomi_strdup(f->key);
			if (depth >= SCHEMA_DEPTH_MAX) {
				loomi_strv_pushf(errs, "%s: the plugin's schema nests groups deeper than %d "
				                       "levels; the plugin is broken, report it to its "
				                       "author",
				                 sub, SCHEMA_DEPTH_MAX);
				free(sub);
				fields_free(out);
				return NULL;
			}
			if (f->children) {
				o->children = fields_of(f->children, sub, depth + 1, errs);
				if (o->children == NULL) {
					free(sub);
					fields_free(out);
					return NULL;
				}
			}
			free(sub);
		}
	}
	return out;
}

static void normalize(json_t *group, const loom_spec_field *fields, int depth);

/* A single string where ONE_OR_LIST allows it becomes a one-element list,
 * in this group and the groups below. */
static void
normalize_one(json_t *group, const loom_spec_field *f, int depth)
{
	json_t *v = json_object_get(group, f->key), *e;
	size_t i;

	if (v == NULL)
		return;
	if (f->type == LOOM_SPEC_STRLIST && (f->flags & LOOM_SPEC_ONE_OR_LIST) && json_is_string(v))
		json_object_set_new(group, f->key, json_pack("[O]", v));
	else if (f->type == LOOM_SPEC_GROUP && json_is_object(v))
		normalize(v, f->children, depth + 1);
	else if (f->type == LOOM_SPEC_GROUPLIST && json_is_array(v))
		json_array_foreach(v, i, e) {
			if (json_is_object(e))
				normalize(e, f->children, depth + 1);
		}
}

static void
normalize(json_t *group, const loom_spec_field *fields, int depth)
{
	if (depth > SCHEMA_DEPTH_MAX)
		return;
	for (const loom_spec_field *f = fields; f && f->key; f++)
		normalize_one(group, f, depth);
}

int
loom_spec_check(loom_spec *s, const loom_spec_field *fields)
{
	loomi_field *conv;
	int problems;

	if (s == NULL || !s->parsed)
		return LOOM_EINVAL;
	if ((conv = fields_of(fields, "", 0, &s->errs)) == NULL)
		return LOOM_EINVAL;
	normalize(s->doc.root, fields, 0);
	problems = loomi_schema_check(&s->doc, s->doc.root, conv, "", &s->errs);
	fields_free(conv);
	return problems > 0 ? LOOM_EINVAL : 0;
}

/* ------------------------------------------------------------------ paths */

/* One step of a path: a key (its bytes at key, klen long) or an index. */
typedef struct step {
	const char *key;
	size_t klen;
	size_t index;
	bool is_index;
} step;

/* The step at *p, advancing *p past it and a following '.'.  0 (with
 * *done when the path has ended), or LOOM_EINVAL for a malformed path. */
static int
next_step(const char **p, step *st, bool *done)
{
	const char *q = *p;

	memset(st, 0, sizeof *st);
	if (*q == '[') {
		char *end;
		unsigned long long i;
		if (q[1] < '0' || q[1] > '9')
			return LOOM_EINVAL;
		i = strtoull(q + 1, &end, 10);
		if (*end != ']')
			return LOOM_EINVAL;
		st->is_index = true;
		st->index = (size_t)i;
		q = end + 1;
	} else {
		size_t n = strcspn(q, ".[]");
		if (n == 0 || q[n] == ']')
			return LOOM_EINVAL;
		st->key = q;
		st->klen = n;
		q += n;
	}
	if (*q == '.') {
		q++;
		if (*q == '\0' || *q == '.' || *q == '[')
			return LOOM_EINVAL;
	} else if (*q != '\0' && *q != '[') {
		return LOOM_EINVAL;
	}
	*p = q;
	*done = *q == '\0';
	return 0;
}

/* The member key of an object, NULL when absent or not an object. */
static json_t *
member(const json_t *obj, const step *st, char *buf, size_t buflen)
{
	if (!json_is_object(obj) || st->klen >= buflen)
		return NULL;
	memcpy(buf, st->key, st->klen);
	buf[st->klen] = '\0';
	return json_object_get(obj, buf);
}

/* The value at path: 0 and *out (NULL when nothing is there), or
 * LOOM_EINVAL for a malformed path. */
static int
resolve(const loom_spec *s, const char *path, json_t **out)
{
	char buf[256];
	const char *p = path;
	json_t *cur;
	bool done = false;
	step st;
	int rv;

	*out = NULL;
	if (s == NULL || path == NULL || path[0] == '\0' || path[0] == '[')
		return LOOM_EINVAL;
	cur = s->doc.root;
	while (!done) {
		if ((rv = next_step(&p, &st, &done)) != 0)
			return rv;
		if (st.is_index)
			cur = json_is_array(cur) ? json_array_get(cur, st.index) : NULL;
		else
			cur = member(cur, &st, buf, sizeof buf);
	}
	*out = cur;
	return 0;
}

static int
lookup(const loom_spec *s, const char *path, json_t **out)
{
	int rv = resolve(s, path, out);
	if (rv == 0 && *out == NULL)
		rv = LOOM_ENOENT;
	return rv;
}

bool
loom_spec_has(const loom_spec *s, const char *path)
{
	json_t *v;
	return lookup(s, path, &v) == 0;
}

int
loom_spec_get_bool(const loom_spec *s, const char *path, bool *out)
{
	json_t *v;
	int rv = lookup(s, path, &v);
	if (rv != 0)
		return rv;
	if (!json_is_boolean(v))
		return LOOM_EINVAL;
	*out = json_is_true(v);
	return 0;
}

int
loom_spec_get_int(const loom_spec *s, const char *path, int64_t *out)
{
	json_t *v;
	int rv = lookup(s, path, &v);
	if (rv != 0)
		return rv;
	if (!json_is_integer(v))
		return LOOM_EINVAL;
	*out = (int64_t)json_integer_value(v);
	return 0;
}

int
loom_spec_get_double(const loom_spec *s, const char *path, double *out)
{
	json_t *v;
	int rv = lookup(s, path, &v);
	if (rv != 0)
		return rv;
	if (!json_is_number(v))
		return LOOM_EINVAL;
	*out = json_number_value(v);
	return 0;
}

int
loom_spec_get_string(const loom_spec *s, const char *path, const char **out)
{
	json_t *v;
	int rv = lookup(s, path, &v);
	if (rv != 0)
		return rv;
	if (!json_is_string(v))
		return LOOM_EINVAL;
	*out = json_string_value(v);
	return 0;
}

int
loom_spec_get_size(const loom_spec *s, const char *path, uint64_t *bytes)
{
	json_t *v;
	int rv = lookup(s, path, &v);
	if (rv != 0)
		return rv;
	if (json_is_string(v))
		return loom_parse_size(json_string_value(v), bytes);
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return LOOM_EINVAL;
	*bytes = (uint64_t)json_integer_value(v);
	return 0;
}

int
loom_spec_get_duration(const loom_spec *s, const char *path, int64_t *ms)
{
	json_t *v;
	int rv = lookup(s, path, &v);
	if (rv != 0)
		return rv;
	if (json_is_string(v))
		return loom_parse_duration(json_string_value(v), ms);
	if (!json_is_number(v) || json_number_value(v) < 0)
		return LOOM_EINVAL;
	if (json_number_value(v) * 1000.0 > 9.2e18)
		return LOOM_ERANGE;
	*ms = (int64_t)(json_number_value(v) * 1000);
	return 0;
}

int
loom_spec_get_length(const loom_spec *s, const char *path, size_t *n)
{
	json_t *v;
	int rv = lookup(s, path, &v);
	if (rv != 0)
		return rv;
	if (json_is_array(v))
		*n = json_array_size(v);
	else if (json_is_object(v))
		*n = json_object_size(v);
	else
		return LOOM_EINVAL;
	return 0;
}

/* ------------------------------------------------------------------ defaults */

/* Set value (stolen) at path unless something is there. */
static int
set_default(loom_spec *s, const char *path, json_t *value)
{
	char buf[256];
	const char *p = path;
	json_t *cur;
	bool done = false;
	step st;
	int rv;

	if (s == NULL || value == NULL || path == NULL || path[0] == '\0' || path[0] == '[') {
		json_decref(value);
		return value == NULL && s != NULL ? LOOM_ENOMEM : LOOM_EINVAL;
	}
	cur = s->doc.root;
	while (!done) {
		json_t *next;
		if ((rv = next_step(&p, &st, &done)) != 0)
			break;
		if (st.is_index) {
			next = json_is_array(cur) ? json_array_get(cur, st.index) : NULL;
			if (next == NULL || done) {
				rv = LOOM_EINVAL; /* only existing elements; and no element defaults */
				break;
			}
		} else {
			if (!json_is_object(cur) || st.klen >= sizeof buf) {
				rv = LOOM_EINVAL;
				break;
			}
			memcpy(buf, st.key, st.klen);
			buf[st.klen] = '\0';
			next = json_object_get(cur, buf);
			if (done) {
				if (next == NULL && json_object_set_new(cur, buf, value) != 0)
					return LOOM_EINVAL; /* a key that is not UTF-8; value is gone */
				if (next != NULL)
					json_decref(value);
				return 0;
			}
			if (next == NULL) {
				next = json_object();
				if (json_object_set_new(cur, buf, next) != 0) {
					rv = LOOM_EINVAL;
					break;
				}
			}
		}
		cur = next;
	}
	json_decref(value);
	return rv != 0 ? rv : LOOM_EINVAL;
}

int
loom_spec_default_bool(loom_spec *s, const char *path, bool value)
{
	return set_default(s, path, json_boolean(value));
}

int
loom_spec_default_int(loom_spec *s, const char *path, int64_t value)
{
	return set_default(s, path, json_integer((json_int_t)value));
}

int
loom_spec_default_double(loom_spec *s, const char *path, double value)
{
	return set_default(s, path, json_real(value));
}

int
loom_spec_default_string(loom_spec *s, const char *path, const char *value)
{
	json_t *v;

	if (value == NULL || (v = json_string(value)) == NULL) /* NULL: not UTF-8 */
		return LOOM_EINVAL;
	return set_default(s, path, v);
}

int
loom_spec_default_json(loom_spec *s, const char *path, const char *text)
{
	json_t *v;

	if (text == NULL)
		return LOOM_EINVAL;
	if ((v = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL)) == NULL)
		return LOOM_EINVAL;
	return set_default(s, path, v);
}

/* ------------------------------------------------------------------ errors, output */

void
loom_spec_errorf(loom_spec *s, const char *path, const char *fmt, ...)
{
	json_t *v = NULL;
	va_list ap;
	char *msg;

	if (s == NULL || fmt == NULL)
		return;
	va_start(ap, fmt);
	msg = loomi_vstrfmt(fmt, ap);
	va_end(ap);
	if (path && path[0]) {
		resolve(s, path, &v);
		loomi_doc_errf(&s->doc, v, &s->errs, "%s: %s", path, msg);
	} else {
		loomi_doc_errf(&s->doc, NULL, &s->errs, "%s", msg);
	}
	free(msg);
}

size_t
loom_spec_error_count(const loom_spec *s)
{
	return s ? s->errs.n : 0;
}

char *
loom_spec_errors(const loom_spec *s)
{
	if (s == NULL || s->errs.n == 0)
		return NULL;
	return loomi_strv_join(&s->errs, "\n");
}

char *
loom_spec_json(const loom_spec *s)
{
	if (s == NULL)
		return NULL;
	return json_dumps(s->doc.root, JSON_COMPACT | JSON_SORT_KEYS);
}

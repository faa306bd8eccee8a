/* Config documents (libconfig or JSON), their validation against schemas,
 * and JSON written back as libconfig text.  See doc.h. */
#include "config.h"

#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <loom/error.h>

#include "doc.h"

/* ------------------------------------------------------------------ documents */

static void
doc_add_loc(loomi_doc *doc, const json_t *v, int line, const char *file)
{
	int idx = -1;

	if (file && doc->name && strcmp(file, doc->name) != 0) {
		for (size_t i = 0; i < doc->files.n; i++) {
			if (strcmp(doc->files.v[i], file) == 0)
				idx = (int)i;
		}
		if (idx < 0) {
			loomi_strv_push(&doc->files, loomi_strdup(file));
			idx = (int)doc->files.n - 1;
		}
	}
	if (doc->n_locs == doc->cap_locs) {
		doc->cap_locs = doc->cap_locs ? doc->cap_locs * 2 : 64;
		doc->locs = loomi_xrealloc(doc->locs, doc->cap_locs * sizeof *doc->locs);
	}
	doc->locs[doc->n_locs].value = v;
	doc->locs[doc->n_locs].line = line;
	doc->locs[doc->n_locs].file = idx;
	doc->n_locs++;
}

static const loomi_doc_loc *
find_loc(const loomi_doc *doc, const json_t *value)
{
	for (size_t i = 0; doc && value && i < doc->n_locs; i++) {
		if (doc->locs[i].value == value)
			return &doc->locs[i];
	}
	return NULL;
}

int
loomi_doc_line(const loomi_doc *doc, const json_t *value)
{
	const loomi_doc_loc *loc = find_loc(doc, value);
	return loc ? loc->line : 0;
}

const char *
loomi_doc_file(const loomi_doc *doc, const json_t *value)
{
	const loomi_doc_loc *loc = find_loc(doc, value);
	if (loc && loc->file >= 0)
		return doc->files.v[loc->file];
	return doc ? doc->name : NULL;
}

void
loomi_doc_errf(const loomi_doc *doc, const json_t *value, loomi_strv *errs, const char *fmt,
               ...)
{
	char msg[1024];
	int line = loomi_doc_line(doc, value);
	const char *file = loomi_doc_file(doc, value);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (file && line > 0)
		loomi_strv_pushf(errs, "%s:%d: %s", file, line, msg);
	else if (file)
		loomi_strv_pushf(errs, "%s: %s", file, msg);
	else
		loomi_strv_push(errs, loomi_strdup(msg));
}

static json_t *
convert(loomi_doc *doc, config_setting_t *s, loomi_strv *errs)
{
	json_t *v = NULL;
	int n;

	switch (config_setting_type(s)) {
	case CONFIG_TYPE_GROUP:
		v = json_object();
		n = config_setting_length(s);
		for (int i = 0; i < n; i++) {
			config_setting_t *c = config_setting_get_elem(s, (unsigned)i);
			json_t *cv = convert(doc, c, errs);
			if (cv)
				json_object_set_new(v, config_setting_name(c), cv);
		}
		break;
	case CONFIG_TYPE_ARRAY:
	case CONFIG_TYPE_LIST:
		v = json_array();
		n = config_setting_length(s);
		for (int i = 0; i < n; i++) {
			json_t *cv = convert(doc, config_setting_get_elem(s, (unsigned)i), errs);
			if (cv)
				json_array_append_new(v, cv);
		}
		break;
	case CONFIG_TYPE_INT:
		v = json_integer(config_setting_get_int(s));
		break;
	case CONFIG_TYPE_INT64:
		v = json_integer(config_setting_get_int64(s));
		break;
	case CONFIG_TYPE_FLOAT:
		v = json_real(config_setting_get_float(s));
		break;
	case CONFIG_TYPE_BOOL:
		v = json_boolean(config_setting_get_bool(s));
		break;
	case CONFIG_TYPE_STRING:
		/* jansson refuses invalid UTF-8 (overlong forms and surrogates too) */
		if ((v = json_string(config_setting_get_string(s))) == NULL) {
			const char *file = config_setting_source_file(s);
			loomi_strv_pushf(errs, "%s:%d: %s: the string is not valid UTF-8; write it in "
			                       "UTF-8",
			                 file ? file : doc->name, config_setting_source_line(s),
			                 config_setting_name(s) ? config_setting_name(s) : "value");
			return NULL;
		}
		break;
	default:
		return NULL;
	}
	if (v)
		doc_add_loc(doc, v, config_setting_source_line(s), config_setting_source_file(s));
	return v;
}

static int
doc_from_config(loomi_doc *doc, config_t *cfg, int ok, const char *name, loomi_strv *errs)
{
	size_t before = errs->n;

	memset(doc, 0, sizeof *doc);
	doc->name = loomi_strdup(name);
	if (!ok) {
		const char *file = config_error_file(cfg);
		if (config_error_type(cfg) == CONFIG_ERR_FILE_IO) {
			loomi_strv_pushf(errs, "%s: cannot read the file: %s", name, strerror(errno));
			return LOOM_EIO;
		}
		loomi_strv_pushf(errs, "%s:%d: syntax error: %s", file ? file : name,
		                 config_error_line(cfg), config_error_text(cfg));
		return LOOM_ECONFIG;
	}
	doc->root = convert(doc, config_root_setting(cfg), errs);
	if (doc->root == NULL)
		doc->root = json_object();
	return errs->n > before ? LOOM_ECONFIG : 0;
}

int
loomi_doc_load_file(loomi_doc *doc, const char *path, loomi_strv *errs)
{
	config_t cfg;
	char *dir = loomi_strdup(path), *slash;
	int rv, ok;
	FILE *fp;

	/* libconfig reports a missing file as a parse error at line 0; check
	 * first so the message says what happened. */
	if ((fp = fopen(path, "r")) == NULL) {
		memset(doc, 0, sizeof *doc);
		doc->name = loomi_strdup(path);
		loomi_strv_pushf(errs, "%s: cannot open the config file: %s", path,
		                 strerror(errno));
		free(dir);
		return LOOM_EIO;
	}
	{
		/* libconfig's scanner exits the process on a directory */
		struct stat st;
		if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
			fclose(fp);
			memset(doc, 0, sizeof *doc);
			doc->name = loomi_strdup(path);
			loomi_strv_pushf(errs, "%s: not a regular file; give the path of a config file",
			                 path);
			free(dir);
			return LOOM_EIO;
		}
	}
	config_init(&cfg);
	if ((slash = strrchr(dir, '/')) != NULL) {
		*slash = '\0';
		config_set_include_dir(&cfg, dir[0] ? dir : "/");
	}
	ok = config_read(&cfg, fp);
	fclose(fp);
	rv = doc_from_config(doc, &cfg, ok, path, errs);
	config_destroy(&cfg);
	free(dir);
	return rv;
}

int
loomi_doc_load_string(loomi_doc *doc, const char *text, const char *name, loomi_strv *errs)
{
	config_t cfg;
	int rv, ok;

	config_init(&cfg);
	ok = config_read_string(&cfg, text);
	rv = doc_from_config(doc, &cfg, ok, name, errs);
	config_destroy(&cfg);
	return rv;
}

int
loomi_doc_load_json(loomi_doc *doc, const char *text, size_t len, const char *name,
                    loomi_strv *errs)
{
	json_error_t jerr;

	memset(doc, 0, sizeof *doc);
	doc->name = loomi_strdup(name);
	doc->root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (doc->root == NULL) {
		loomi_strv_pushf(errs, "%s:%d:%d: malformed JSON: %s", name, jerr.line, jerr.column,
		                 jerr.text);
		return LOOM_ECONFIG;
	}
	if (!json_is_object(doc->root)) {
		loomi_strv_pushf(errs, "%s: expected a JSON object, got %s", name,
		                 loomi_json_type_name(doc->root));
		json_decref(doc->root);
		doc->root = NULL;
		return LOOM_ECONFIG;
	}
	return 0;
}

void
loomi_doc_free(loomi_doc *doc)
{
	json_decref(doc->root);
	free(doc->name);
	free(doc->locs);
	loomi_strv_free(&doc->files);
	memset(doc, 0, sizeof *doc);
}

/* ------------------------------------------------------------------ schemas */

const char *
loomi_json_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "a group";
	case JSON_ARRAY: return "a list";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "a value";
}

const char *
loomi_ftype_name(int type)
{
	switch (type) {
	case LOOMI_F_BOOL: return "a boolean (true or false)";
	case LOOMI_F_INT: return "an integer";
	case LOOMI_F_DOUBLE: return "a number";
	case LOOMI_F_STRING: return "a string";
	case LOOMI_F_PATH: return "a path (a string)";
	case LOOMI_F_SIZE: return "a size (bytes, or a string such as \"64K\" or \"2G\")";
	case LOOMI_F_DURATION: return "a duration (seconds, or a string such as \"250ms\" or \"5m\")";
	case LOOMI_F_STRLIST: return "a list of strings";
	case LOOMI_F_GROUP:
	case LOOMI_F_ANYGROUP: return "a group { ... }";
	case LOOMI_F_GROUPLIST: return "a list of groups ( { ... }, ... )";
	case LOOMI_F_DOUBLELIST: return "a list of numbers";
	case LOOMI_F_INTLIST: return "a list of integers";
	}
	return "a value";
}

static char *
join_path(const char *path, const char *key)
{
	return path && path[0] ? loomi_strfmt("%s.%s", path, key) : loomi_strdup(key);
}

/* Is s one of "a|b|c"?  Fills a ", "-separated list and a suggestion. */
static bool
choice_ok(const char *choices, const char *s, char *list, size_t list_len, char *sug,
          size_t sug_len)
{
	const char *opts[32];
	char buf[512];
	size_t n = 0;
	bool found = false;

	snprintf(buf, sizeof buf, "%s", choices);
	list[0] = sug[0] = '\0';
	for (char *save = NULL, *tok = strtok_r(buf, "|", &save); tok && n < 32;
	     tok = strtok_r(NULL, "|", &save)) {
		opts[n++] = tok;
		if (strcmp(tok, s) == 0)
			found = true;
		if (strlen(list) + strlen(tok) + 3 < list_len) {
			if (list[0])
				strcat(list, ", ");
			strcat(list, tok);
		}
	}
	if (!found) {
		const char *best = loomi_suggest(s, opts, n);
		if (best)
			snprintf(sug, sug_len, " (did you mean \"%s\"?)", best);
	}
	return found;
}

static int check_group(const loomi_doc *doc, const json_t *group, const loomi_field *fields,
                       const char *path, loomi_strv *errs);

static int
type_error(const loomi_doc *doc, const json_t *v, const loomi_field *f, const char *path,
           loomi_strv *errs)
{
	loomi_doc_errf(doc, v, errs, "%s: expected %s, got %s%s%s", path, loomi_ftype_name(f->type),
	               loomi_json_type_name(v), f->help ? "; it is " : "", f->help ? f->help : "");
	return 1;
}

static int
range_check(const loomi_doc *doc, const json_t *v, const loomi_field *f, const char *path,
            double x, loomi_strv *errs)
{
	if (!(f->flags & LOOMI_F_RANGE) || (x >= f->min && x <= f->max))
		return 0;
	/* %.15g: integers exactly (1048576, not 1.04858e+06), fractions short */
	loomi_doc_errf(doc, v, errs, "%s: %.15g is out of range; use a value from %.15g to %.15g",
	               path, x, f->min, f->max);
	return 1;
}

static int
check_value(const loomi_doc *doc, const json_t *v, const loomi_field *f, const char *path,
            loomi_strv *errs)
{
	char list[400], sug[100];
	uint64_t size;
	int64_t ms;
	int problems = 0;
	size_t i;
	json_t *e;

	switch (f->type) {
	case LOOMI_F_BOOL:
		if (!json_is_boolean(v))
			return type_error(doc, v, f, path, errs);
		return 0;
	case LOOMI_F_INT:
		if (!json_is_integer(v))
			return type_error(doc, v, f, path, errs);
		return range_check(doc, v, f, path, (double)json_integer_value(v), errs);
	case LOOMI_F_DOUBLE:
		if (!json_is_number(v))
			return type_error(doc, v, f, path, errs);
		return range_check(doc, v, f, path, json_number_value(v), errs);
	case LOOMI_F_STRING:
	case LOOMI_F_PATH:
		if (!json_is_string(v))
			return type_error(doc, v, f, path, errs);
		if (f->choices &&
		    !choice_ok(f->choices, json_string_value(v), list, sizeof list, sug, sizeof sug)) {
			loomi_doc_errf(doc, v, errs, "%s: \"%s\" is not one of %s%s", path,
			               json_string_value(v), list, sug);
			return 1;
		}
		if ((f->flags & LOOMI_F_REQUIRED) && json_string_length(v) == 0) {
			loomi_doc_errf(doc, v, errs, "%s: must not be empty%s%s%s", path,
			               f->help ? " (" : "", f->help ? f->help : "", f->help ? ")" : "");
			return 1;
		}
		return 0;
	case LOOMI_F_SIZE:
		if (json_is_integer(v) && json_integer_value(v) < 0) {
			loomi_doc_errf(doc, v, errs, "%s: a size must not be negative", path);
			return 1;
		}
		if (json_is_integer(v))
			return range_check(doc, v, f, path, (double)json_integer_value(v), errs);
		if (json_is_string(v)) {
			int rv = loom_parse_size(json_string_value(v), &size);
			if (rv == 0 && size > (uint64_t)INT64_MAX)
				rv = LOOM_ERANGE;
			if (rv == 0)
				return range_check(doc, v, f, path, (double)size, errs);
			if (rv == LOOM_ERANGE)
				loomi_doc_errf(doc, v, errs, "%s: \"%s\" is too large a size", path,
				               json_string_value(v));
			else
				loomi_doc_errf(doc, v, errs,
				               "%s: \"%s\" is not a size; write bytes, or a number with "
				               "K, M, G or T (\"512M\", \"2G\")",
				               path, json_string_value(v));
			return 1;
		}
		return type_error(doc, v, f, path, errs);
	case LOOMI_F_DURATION:
		if (json_is_number(v) && json_number_value(v) < 0) {
			loomi_doc_errf(doc, v, errs, "%s: a duration must not be negative", path);
			return 1;
		}
		if (json_is_number(v) && json_number_value(v) * 1000.0 > 9.2e18) {
			loomi_doc_errf(doc, v, errs, "%s: %g seconds is too long", path,
			               json_number_value(v));
			return 1;
		}
		if (json_is_number(v))
			return range_check(doc, v, f, path, json_number_value(v) * 1000, errs);
		if (json_is_string(v)) {
			if (loom_parse_duration(json_string_value(v), &ms) == 0)
				return range_check(doc, v, f, path, (double)ms, errs);
			loomi_doc_errf(doc, v, errs,
			               "%s: \"%s\" is not a duration; write seconds, or a number with "
			               "ms, s, m, h or d (\"250ms\", \"30s\", \"5m\")",
			               path, json_string_value(v));
			return 1;
		}
		return type_error(doc, v, f, path, errs);
	case LOOMI_F_STRLIST:
	case LOOMI_F_DOUBLELIST:
	case LOOMI_F_INTLIST:
		if (!json_is_array(v))
			return type_error(doc, v, f, path, errs);
		json_array_foreach(v, i, e) {
			bool ok = f->type == LOOMI_F_STRLIST   ? json_is_string(e)
			          : f->type == LOOMI_F_INTLIST ? json_is_integer(e)
			                                       : json_is_number(e);
			if (!ok) {
				loomi_doc_errf(doc, e, errs, "%s[%zu]: expected %s, got %s", path, i,
				               f->type == LOOMI_F_STRLIST   ? "a string"
				               : f->type == LOOMI_F_INTLIST ? "an integer"
				                                            : "a number",
				               loomi_json_type_name(e));
				problems++;
			} else if (f->type != LOOMI_F_STRLIST) {
				char *ep = loomi_strfmt("%s[%zu]", path, i);
				problems += range_check(doc, e, f, ep, json_number_value(e), errs);
				free(ep);
			}
		}
		return problems;
	case LOOMI_F_GROUP:
		if (!json_is_object(v))
			return type_error(doc, v, f, path, errs);
		return check_group(doc, v, f->children, path, errs);
	case LOOMI_F_ANYGROUP:
		if (!json_is_object(v))
			return type_error(doc, v, f, path, errs);
		return 0;
	case LOOMI_F_GROUPLIST:
		if (!json_is_array(v))
			return type_error(doc, v, f, path, errs);
		json_array_foreach(v, i, e) {
			char *ep = loomi_strfmt("%s[%zu]", path, i);
			if (!json_is_object(e)) {
				loomi_doc_errf(doc, e, errs, "%s: expected a group { ... }, got %s", ep,
				               loomi_json_type_name(e));
				problems++;
			} else {
				problems += check_group(doc, e, f->children, ep, errs);
			}
			free(ep);
		}
		return problems;
	}
	return 0;
}

static int
check_group(const loomi_doc *doc, const json_t *group, const loomi_field *fields,
            const char *path, loomi_strv *errs)
{
	const char **names;
	size_t nf = 0;
	const char *key;
	json_t *v;
	int problems = 0;

	for (const loomi_field *f = fields; f && f->key; f++)
		nf++;
	names = loomi_xcalloc(nf + 1, sizeof *names);
	for (size_t i = 0; i < nf; i++)
		names[i] = fields[i].key;

	json_object_foreach((json_t *)group, key, v) {
		const loomi_field *f = NULL;
		char *sub = join_path(path, key);
		for (size_t i = 0; i < nf; i++) {
			if (strcmp(fields[i].key, key) == 0)
				f = &fields[i];
		}
		if (f == NULL) {
			const char *best = loomi_suggest(key, names, nf);
			if (best) {
				loomi_doc_errf(doc, v, errs, "%s: unknown setting (did you mean %s?)", sub,
				               best);
			} else {
				loomi_strv known = {0};
				char *list;
				for (size_t i = 0; i < nf; i++)
					loomi_strv_push(&known, loomi_strdup(names[i]));
				list = loomi_strv_join(&known, ", ");
				loomi_doc_errf(doc, v, errs, "%s: unknown setting; %s%s", sub,
				               nf ? "known settings here: " : "no settings are accepted here",
				               list);
				free(list);
				loomi_strv_free(&known);
			}
			problems++;
		} else {
			problems += check_value(doc, v, f, sub, errs);
		}
		free(sub);
	}
	for (size_t i = 0; i < nf; i++) {
		if ((fields[i].flags & LOOMI_F_REQUIRED) && !json_object_get(group, fields[i].key)) {
			char *sub = join_path(path, fields[i].key);
			loomi_doc_errf(doc, group, errs, "%s: missing setting%s%s%s", sub,
			               fields[i].help ? " (" : "", fields[i].help ? fields[i].help : "",
			               fields[i].help ? ")" : "");
			free(sub);
			problems++;
		}
	}
	free(names);
	return problems;
}

int
loomi_schema_check(const loomi_doc *doc, const json_t *group, const loomi_field *fields,
                   const char *path, loomi_strv *errs)
{
	return check_group(doc, group, fields, path, errs);
}

int
loomi_schema_check_value(const loomi_doc *doc, const json_t *v, const loomi_field *f,
                         const char *path, loomi_strv *errs)
{
	return check_value(doc, v, f, path, errs);
}

/* ------------------------------------------------------------------ JSON → libconfig */

typedef struct sbuf {
	char *p;
	size_t n, cap;
} sbuf;

static void
sb_add(sbuf *sb, const char *s, size_t n)
{
	if (sb->n + n + 1 > sb->cap) {
		while (sb->n + n + 1 > sb->cap)
			sb->cap = sb->cap ? sb->cap * 2 : 256;
		sb->p = loomi_xrealloc(sb->p, sb->cap);
	}
	memcpy(sb->p + sb->n, s, n);
	sb->n += n;
	sb->p[sb->n] = '\0';
}

static void
sb_puts(sbuf *sb, const char *s)
{
	sb_add(sb, s, strlen(s));
}

static void
sb_indent(sbuf *sb, int level)
{
	for (int i = 0; i < level; i++)
		sb_puts(sb, "  ");
}

/* A libconfig setting name: [A-Za-z*][-A-Za-z0-9_*]*. */
static bool
libconfig_name_ok(const char *key)
{
	if (!((*key >= 'A' && *key <= 'Z') || (*key >= 'a' && *key <= 'z') || *key == '*'))
		return false;
	for (key++; *key; key++) {
		char c = *key;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '*'))
			return false;
	}
	return true;
}

static bool
needs_int64(json_int_t v)
{
	return v < INT32_MIN || v > INT32_MAX;
}

static void
put_int(sbuf *sb, json_int_t v, bool int64)
{
	char buf[32];
	snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT "%s", v, int64 ? "L" : "");
	sb_puts(sb, buf);
}

/* The shortest %g form that reads back as the same double, always with a
 * '.' or an exponent so libconfig reads a float. */
static void
put_real(sbuf *sb, double x)
{
	char buf[40];

	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, sizeof buf, "%.*g", prec, x);
		if (strtod(buf, NULL) == x)
			break;
	}
	if (strpbrk(buf, ".e") == NULL)
		strcat(buf, ".0");
	sb_puts(sb, buf);
}

static bool
put_string(sbuf *sb, const json_t *v)
{
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);

	if (strlen(s) != n)
		return false; /* a NUL: libconfig strings end there */
	sb_puts(sb, "\"");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];
		switch (c) {
		case '"': sb_puts(sb, "\\\""); break;
		case '\\': sb_puts(sb, "\\\\"); break;
		case '\n': sb_puts(sb, "\\n"); break;
		case '\t': sb_puts(sb, "\\t"); break;
		case '\r': sb_puts(sb, "\\r"); break;
		case '\f': sb_puts(sb, "\\f"); break;
		default:
			if (c < 0x20 || c == 0x7f) {
				snprintf(esc, sizeof esc, "\\x%02x", c);
				sb_puts(sb, esc);
			} else {
				sb_add(sb, (const char *)&s[i], 1);
			}
		}
	}
	sb_puts(sb, "\"");
	return true;
}

static bool put_value(sbuf *sb, const json_t *v, int level);

/* The settings of a group, one per line at level. */
static bool
put_members(sbuf *sb, const json_t *obj, int level)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)obj, key, v) {
		if (!libconfig_name_ok(key))
			return false;
		sb_indent(sb, level);
		sb_puts(sb, key);
		sb_puts(sb, " = ");
		if (!put_value(sb, v, level))
			return false;
		sb_puts(sb, ";\n");
	}
	return true;
}

/* Can arr be a libconfig array: scalars, all of one type? */
static bool
scalar_array(const json_t *arr, bool *int64)
{
	size_t i;
	json_t *v;
	int type = -1;

	*int64 = false;
	json_array_foreach(arr, i, v) {
		int t = json_typeof(v);
		if (t == JSON_TRUE || t == JSON_FALSE)
			t = JSON_TRUE;
		if (t != JSON_INTEGER && t != JSON_REAL && t != JSON_TRUE && t != JSON_STRING)
			return false;
		if (type >= 0 && t != type)
			return false;
		type = t;
		if (t == JSON_INTEGER && needs_int64(json_integer_value(v)))
			*int64 = true;
	}
	return true;
}

static bool
put_value(sbuf *sb, const json_t *v, int level)
{
	size_t i;
	json_t *e;
	bool int64;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		if (json_object_size(v) == 0) {
			sb_puts(sb, "{ }");
			return true;
		}
		sb_puts(sb, "{\n");
		if (!put_members(sb, v, level + 1))
			return false;
		sb_indent(sb, level);
		sb_puts(sb, "}");
		return true;
	case JSON_ARRAY:
		if (scalar_array(v, &int64)) {
			sb_puts(sb, "[");
			json_array_foreach(v, i, e) {
				sb_puts(sb, i ? ", " : "");
				if (json_is_integer(e))
					put_int(sb, json_integer_value(e), int64);
				else if (!put_value(sb, e, level))
					return false;
			}
			sb_puts(sb, "]");
			return true;
		}
		sb_puts(sb, "(\n");
		json_array_foreach(v, i, e) {
			sb_indent(sb, level + 1);
			if (!put_value(sb, e, level + 1))
				return false;
			sb_puts(sb, i + 1 < json_array_size(v) ? ",\n" : "\n");
		}
		sb_indent(sb, level);
		sb_puts(sb, ")");
		return true;
	case JSON_STRING:
		return put_string(sb, v);
	case JSON_INTEGER:
		put_int(sb, json_integer_value(v), needs_int64(json_integer_value(v)));
		return true;
	case JSON_REAL:
		put_real(sb, json_real_value(v));
		return true;
	case JSON_TRUE:
		sb_puts(sb, "true");
		return true;
	case JSON_FALSE:
		sb_puts(sb, "false");
		return true;
	case JSON_NULL:
	default:
		return false;
	}
}

char *
loomi_json_to_libconfig(const json_t *root)
{
	sbuf sb = {0};

	if (!json_is_object(root))
		return NULL;
	sb_puts(&sb, "");
	if (!put_members(&sb, root, 0)) {
		free(sb.p);
		return NULL;
	}
	return sb.p;
}

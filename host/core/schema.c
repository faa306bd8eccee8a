/* Plugin config groups checked against a plugin's config map and filled
 * into its context.  The documents and schemas this builds on are
 * sdk/libloom/doc.c, shared with libloom.  See schema.h. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"

/* ------------------------------------------------------------------ plugin config maps */

static int
map_ftype(uint32_t t)
{
	switch (t) {
	case LOOM_CONFIG_BOOL: return LOOMI_F_BOOL;
	case LOOM_CONFIG_INT: return LOOMI_F_INT;
	case LOOM_CONFIG_DOUBLE: return LOOMI_F_DOUBLE;
	case LOOM_CONFIG_STRING: return LOOMI_F_STRING;
	case LOOM_CONFIG_SIZE: return LOOMI_F_SIZE;
	case LOOM_CONFIG_DURATION: return LOOMI_F_DURATION;
	case LOOM_CONFIG_STRLIST: return LOOMI_F_STRLIST;
	case LOOM_CONFIG_PATH: return LOOMI_F_PATH;
	}
	return 0;
}

/* Parse a default written as text into a JSON value of the entry's type. */
static json_t *
parse_default(const loom_config_entry *e)
{
	const char *d = e->def;
	char *end;

	switch (e->type) {
	case LOOM_CONFIG_BOOL:
		if (strcmp(d, "true") == 0 || strcmp(d, "1") == 0)
			return json_true();
		if (strcmp(d, "false") == 0 || strcmp(d, "0") == 0)
			return json_false();
		return NULL;
	case LOOM_CONFIG_INT: {
		long long x;
		errno = 0;
		x = strtoll(d, &end, 0);
		return errno == 0 && end != d && *end == '\0' ? json_integer(x) : NULL;
	}
	case LOOM_CONFIG_DOUBLE: {
		double x;
		errno = 0;
		x = strtod(d, &end);
		return errno == 0 && end != d && *end == '\0' ? json_real(x) : NULL;
	}
	case LOOM_CONFIG_STRING:
	case LOOM_CONFIG_PATH:
	case LOOM_CONFIG_SIZE:
	case LOOM_CONFIG_DURATION:
		return json_string(d);
	case LOOM_CONFIG_STRLIST: {
		json_t *a = json_array();
		char *buf = loomi_strdup(d);
		for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
		     tok = strtok_r(NULL, ",", &save)) {
			while (isspace((unsigned char)*tok))
				tok++;
			end = tok + strlen(tok);
			while (end > tok && isspace((unsigned char)end[-1]))
				*--end = '\0';
			if (*tok)
				json_array_append_new(a, json_string(tok));
		}
		free(buf);
		return a;
	}
	}
	return NULL;
}

static void
store(void *ctx, size_t offset, const void *src, size_t len)
{
	if (ctx)
		memcpy((char *)ctx + offset, src, len);
}

/* Normalize a checked value, record it in out->values and write it to ctx. */
static void
fill_one(const loom_config_entry *e, const json_t *v, const char *base_dir, void *ctx,
         loomi_pconf *out)
{
	json_t *norm = NULL;

	switch (e->type) {
	case LOOM_CONFIG_BOOL: {
		bool b = json_is_true(v);
		store(ctx, e->offset, &b, sizeof b);
		norm = json_boolean(b);
		break;
	}
	case LOOM_CONFIG_INT: {
		int64_t x = json_integer_value(v);
		store(ctx, e->offset, &x, sizeof x);
		norm = json_integer(x);
		break;
	}
	case LOOM_CONFIG_DOUBLE: {
		double x = json_number_value(v);
		store(ctx, e->offset, &x, sizeof x);
		norm = json_real(x);
		break;
	}
	case LOOM_CONFIG_SIZE: {
		uint64_t x = 0;
		if (json_is_integer(v))
			x = (uint64_t)json_integer_value(v);
		else
			loom_parse_size(json_string_value(v), &x);
		store(ctx, e->offset, &x, sizeof x);
		norm = json_integer((json_int_t)x);
		break;
	}
	case LOOM_CONFIG_DURATION: {
		int64_t x = 0;
		if (json_is_number(v))
			x = (int64_t)(json_number_value(v) * 1000.0);
		else
			loom_parse_duration(json_string_value(v), &x);
		store(ctx, e->offset, &x, sizeof x);
		norm = json_integer(x);
		break;
	}
	case LOOM_CONFIG_STRING:
	case LOOM_CONFIG_PATH: {
		const char *s = json_string_value(v);
		char *owned;
		if (e->type == LOOM_CONFIG_PATH && s[0] != '/' && s[0] != '\0' && base_dir)
			owned = loomi_path_join(base_dir, s);
		else
			owned = loomi_strdup(s);
		loomi_strv_push(&out->strings, owned);
		store(ctx, e->offset, &owned, sizeof owned);
		norm = json_string(owned);
		break;
	}
	case LOOM_CONFIG_STRLIST: {
		size_t n = json_array_size(v);
		char **list = loomi_xcalloc(n + 1, sizeof *list);
		for (size_t i = 0; i < n; i++)
			list[i] = loomi_strdup(json_string_value(json_array_get(v, i)));
		out->lists = loomi_xrealloc(out->lists, (out->n_lists + 1) * sizeof *out->lists);
		out->lists[out->n_lists].key = loomi_strdup(e->key);
		out->lists[out->n_lists++].items = list;
		store(ctx, e->offset, &list, sizeof list);
		norm = json_deep_copy(v);
		break;
	}
	}
	if (norm)
		json_object_set_new(out->values, e->key, norm);
}

int
loomi_pconf_apply(const loomi_doc *doc, const json_t *group, const json_t *owner,
                  const loom_config_entry *map, const char *prefix, const char *base_dir,
                  void *ctx, loomi_pconf *out, loomi_strv *errs)
{
	loomi_field *fields;
	size_t nf = 0, n_map = 0;
	int problems = 0;
	json_t *empty = NULL;

	memset(out, 0, sizeof *out);
	out->values = json_object();

	/* The map as a schema; required-ness is checked here so that the
	 * message can point at the plugin's group when config is absent. */
	for (const loom_config_entry *e = map; e && e->key; e++)
		n_map++;
	fields = loomi_xcalloc(n_map + 1, sizeof *fields);
	for (const loom_config_entry *e = map; e && e->key; e++) {
		loomi_field *f = &fields[nf++];
		memset(f, 0, sizeof *f);
		f->key = e->key;
		f->type = map_ftype(e->type);
		f->choices = e->choices;
		f->help = e->description;
		if (e->flags & LOOM_CONFIG_RANGE) {
			f->flags |= LOOMI_F_RANGE;
			f->min = e->min;
			f->max = e->max;
		}
		if (f->type == 0) {
			loomi_strv_pushf(errs, "%s.%s: the plugin declares an unknown setting type %u; "
			                       "the plugin is broken, report it to its author",
			                 prefix, e->key, e->type);
			problems++;
			nf--;
		}
	}
	fields[nf].key = NULL;

	if (group == NULL)
		group = empty = json_object();
	problems += loomi_schema_check(doc, group, fields, prefix, errs);

	for (const loom_config_entry *e = map; e && e->key; e++) {
		json_t *v = json_object_get(group, e->key), *def = NULL;
		const loomi_field *f = NULL;
		loomi_strv quiet = {0};

		for (size_t k = 0; k < nf; k++) {
			if (strcmp(fields[k].key, e->key) == 0)
				f = &fields[k];
		}
		if (f == NULL)
			continue; /* an entry with an unknown type, reported above */
		if (v == NULL && (e->flags & LOOM_CONFIG_REQUIRED)) {
			loomi_doc_errf(doc, group == empty ? owner : group, errs,
			               "%s.%s: missing setting%s%s%s", prefix, e->key,
			               e->description ? " (" : "", e->description ? e->description : "",
			               e->description ? ")" : "");
			problems++;
			continue;
		}
		if (v == NULL && e->def != NULL) {
			def = parse_default(e);
			if (def == NULL || loomi_schema_check_value(NULL, def, f, e->key, &quiet) != 0) {
				loomi_strv_pushf(errs, "%s.%s: the plugin's default \"%s\" is invalid; the "
				                       "plugin is broken, report it to its author",
				                 prefix, e->key, e->def);
				loomi_strv_free(&quiet);
				json_decref(def);
				problems++;
				continue;
			}
			v = def;
		}
		/* No value and no default: ctx stays zeroed and lookups say
		 * ENOENT.  A given value that failed its check (already reported
		 * by check_group) is not filled. */
		if (v != NULL && loomi_schema_check_value(NULL, v, f, e->key, &quiet) == 0)
			fill_one(e, v, base_dir,
			         problems || (e->flags & LOOM_CONFIG_NOFILL) ? NULL : ctx, out);
		loomi_strv_free(&quiet);
		json_decref(def);
	}
	json_decref(empty);
	free(fields);
	return problems;
}

char *
loomi_pconf_default_check(const loom_config_entry *e)
{
	loomi_field f;
	loomi_strv errs = {0};
	json_t *def;
	char *why = NULL;

	if (e->def == NULL)
		return NULL;
	memset(&f, 0, sizeof f);
	f.key = e->key;
	f.type = map_ftype(e->type);
	f.choices = e->choices;
	if (e->flags & LOOM_CONFIG_RANGE) {
		f.flags |= LOOMI_F_RANGE;
		f.min = e->min;
		f.max = e->max;
	}
	if ((def = parse_default(e)) == NULL)
		return loomi_strfmt("it does not parse as %s", loomi_ftype_name(f.type));
	if (loomi_schema_check_value(NULL, def, &f, e->key, &errs) != 0)
		why = loomi_strv_join(&errs, "; ");
	loomi_strv_free(&errs);
	json_decref(def);
	return why;
}

void
loomi_pconf_free(loomi_pconf *pc)
{
	json_decref(pc->values);
	loomi_strv_free(&pc->strings);
	for (size_t i = 0; i < pc->n_lists; i++) {
		for (char **p = pc->lists[i].items; *p; p++)
			free(*p);
		free(pc->lists[i].items);
		free(pc->lists[i].key);
	}
	free(pc->lists);
	memset(pc, 0, sizeof *pc);
}

char **
loomi_pconf_strlist(const loomi_pconf *pc, const char *key)
{
	for (size_t i = 0; i < pc->n_lists; i++) {
		if (strcmp(pc->lists[i].key, key) == 0)
			return pc->lists[i].items;
	}
	return NULL;
}

/* <loom/spec.h> — job specs: parsed from libconfig or JSON text, checked
 * against a declarative schema, read by dotted path.  See loom-spec(3).
 *
 *   static const loom_spec_field model_fields[] = {
 *       {"context", LOOM_SPEC_INT, LOOM_SPEC_RANGE, NULL, 1, 65536, NULL,
 *        "input window length"},
 *       {"kind", LOOM_SPEC_STRING, 0, "mean|last", 0, 0, NULL, NULL},
 *       LOOM_SPEC_END,
 *   };
 *   static const loom_spec_field fields[] = {
 *       {"data", LOOM_SPEC_GROUP, LOOM_SPEC_REQUIRED, NULL, 0, 0, data_fields, NULL},
 *       {"model", LOOM_SPEC_GROUP, 0, NULL, 0, 0, model_fields, NULL},
 *       LOOM_SPEC_END,
 *   };
 *
 *   loom_spec *s;
 *   int64_t context;
 *   if (loom_spec_parse(text, "job", &s) == 0 && loom_spec_check(s, fields) == 0) {
 *       loom_spec_default_int(s, "model.context", 24);
 *       loom_spec_get_int(s, "model.context", &context);
 *       if (context % 2)
 *           loom_spec_errorf(s, "model.context", "must be even; try %lld",
 *                            (long long)context + 1);
 *   }
 *   if (loom_spec_error_count(s) > 0)
 *       message = loom_spec_errors(s);   // every problem, one per line
 *   loom_spec_free(s);
 *
 * Every problem is reported the way loomd reports its own config, naming
 * the input, the line when the text was libconfig, and the setting's path:
 *
 *   job:3: model.d_modle: unknown setting (did you mean d_model?)
 *
 * The document is opaque: no libconfig or jansson type crosses this
 * header.  Strings the getters return belong to the spec.  The parser
 * aborts the process when memory runs out, as loomd does. */
#ifndef LOOM_SPEC_H
#define LOOM_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <loom/error.h>
#include <loom/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What a setting holds. */
typedef enum loom_spec_type {
	LOOM_SPEC_BOOL = 1,       /* true / false */
	LOOM_SPEC_INT = 2,        /* an integer */
	LOOM_SPEC_DOUBLE = 3,     /* a number (an integer is accepted) */
	LOOM_SPEC_STRING = 4,     /* a string; with choices, one of them */
	LOOM_SPEC_SIZE = 5,       /* bytes, or "64K", "2G" */
	LOOM_SPEC_DURATION = 6,   /* seconds, or "250ms", "5m" */
	LOOM_SPEC_STRLIST = 7,    /* a list of strings */
	LOOM_SPEC_PATH = 8,       /* a string naming a file */
	LOOM_SPEC_GROUP = 9,      /* a group { ... } whose keys are children */
	LOOM_SPEC_GROUPLIST = 10, /* a list of groups ( { ... }, ... ), each
	                           * checked against children */
	LOOM_SPEC_ANYGROUP = 11,  /* a group the plugin checks itself */
	LOOM_SPEC_DOUBLELIST = 12,/* a list of numbers */
	LOOM_SPEC_INTLIST = 13,   /* a list of integers */
} loom_spec_type;

/* Field flags. */
#define LOOM_SPEC_REQUIRED 0x1u /* must be given (a required string must not
                                 * be empty either) */
#define LOOM_SPEC_RANGE 0x2u    /* numbers (each element of a number list;
                                 * sizes in bytes, durations in ms) must lie
                                 * in [min, max] */
#define LOOM_SPEC_ONE_OR_LIST 0x4u /* STRLIST: a single string is accepted
                                    * and becomes a one-element list */

/* One setting of a group.  An array of fields ends with LOOM_SPEC_END. */
typedef struct loom_spec_field {
	const char *key;                        /* [A-Za-z][A-Za-z0-9_-]* */
	uint32_t type;                          /* loom_spec_type */
	uint32_t flags;                         /* LOOM_SPEC_* */
	const char *choices;                    /* strings: "a|b|c", or NULL */
	double min, max;                        /* with LOOM_SPEC_RANGE */
	const struct loom_spec_field *children; /* GROUP, GROUPLIST */
	const char *help;                       /* what it is, for messages */
	const void *reserved[2];
} loom_spec_field;

#define LOOM_SPEC_END {NULL, 0, 0, NULL, 0, 0, NULL, NULL, {NULL, NULL}}

/* A parsed spec and the problems found in it so far. */
typedef struct loom_spec loom_spec;

/* Parse text (NUL-terminated): JSON when its first non-blank byte is '{',
 * libconfig otherwise.  name is what messages call the input ("job.conf",
 * "job").  Always sets *spec (NULL only on LOOM_EINVAL for a NULL argument
 * or LOOM_ENOMEM); a syntax error is LOOM_EINVAL with the message recorded
 * in *spec, which then holds an empty document.  loom_spec_free it. */
int loom_spec_parse(const char *text, const char *name, loom_spec **spec);
void loom_spec_free(loom_spec *spec);

/* Check the document against fields: unknown keys (with a did-you-mean),
 * wrong types, values out of range, strings not among the choices,
 * missing required settings, in nested groups and lists of groups too.
 * Records every problem; 0 or LOOM_EINVAL. */
int loom_spec_check(loom_spec *spec, const loom_spec_field *fields);

/* Record a problem found by the plugin (a cross-field check), located at
 * the setting path names: "NAME:LINE: PATH: message" (the line when the
 * setting exists and came from libconfig).  path may be NULL or "" for the
 * document as a whole. */
void loom_spec_errorf(loom_spec *spec, const char *path, const char *fmt, ...)
	LOOM_PRINTF(3, 4);

/* How many problems are recorded (0 for a NULL spec). */
size_t loom_spec_error_count(const loom_spec *spec);
/* Every problem, one per line, as a new string (free() it); NULL when
 * there is none. */
char *loom_spec_errors(const loom_spec *spec);

/* Typed values by path: keys joined by '.', list elements by [i]
 * ("model.context", "train.betas[1]", "layers[0].units").  0, LOOM_ENOENT
 * when nothing is there, LOOM_EINVAL when the value has another type or
 * the path is malformed. */
bool loom_spec_has(const loom_spec *spec, const char *path);
int loom_spec_get_bool(const loom_spec *spec, const char *path, bool *out);
int loom_spec_get_int(const loom_spec *spec, const char *path, int64_t *out);
/* A number; an integer is converted. */
int loom_spec_get_double(const loom_spec *spec, const char *path, double *out);
/* A string (also a PATH), valid until the spec is freed or changed. */
int loom_spec_get_string(const loom_spec *spec, const char *path, const char **out);
/* An integer of bytes or a size string ("64K"). */
int loom_spec_get_size(const loom_spec *spec, const char *path, uint64_t *bytes);
/* A number of seconds or a duration string ("250ms"), in milliseconds. */
int loom_spec_get_duration(const loom_spec *spec, const char *path, int64_t *ms);
/* The number of elements of a list, or of keys of a group. */
int loom_spec_get_length(const loom_spec *spec, const char *path, size_t *n);

/* Defaults: set the value at path when nothing is there, creating the
 * groups on the way ("train.early_stopping.patience").  0 (also when a
 * value was already there), or LOOM_EINVAL for a malformed path or one that
 * runs through a value that is not a group. */
int loom_spec_default_bool(loom_spec *spec, const char *path, bool value);
int loom_spec_default_int(loom_spec *spec, const char *path, int64_t value);
int loom_spec_default_double(loom_spec *spec, const char *path, double value);
int loom_spec_default_string(loom_spec *spec, const char *path, const char *value);
/* Any value written as JSON: "[0.7, 0.1, 0.2]", "[]", "{}"; LOOM_EINVAL
 * for text that is not JSON. */
int loom_spec_default_json(loom_spec *spec, const char *path, const char *json);

/* The document as compact JSON with sorted keys, defaults included, as a
 * new string (free() it): what a plugin keeps and reads back with
 * loom_spec_parse. */
char *loom_spec_json(const loom_spec *spec);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_SPEC_H */

/* Config documents and their validation against declarative schemas.
 *
 * A document is a tree of jansson values read from a libconfig file (with
 * the source line of every setting) or from JSON text.  A schema — an array
 * of loomi_field — says which keys a group accepts; loomi_schema_check
 * reports every unknown key (with a did-you-mean), wrong type, missing
 * setting, value out of range and string not among the choices, as
 * "FILE:LINE: PATH: message".
 *
 * Private: never installed.  Part of sdk/libloomcommon.la, linked into
 * libloom.la, where <loom/spec.h> (loom_spec_*) wraps it for plugins, and
 * into the host, which reads loomd.conf, stored configs and plugin config
 * groups (host/core/schema.h) through it. */
#ifndef LOOM_SDK_DOC_H
#define LOOM_SDK_DOC_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include <loom/types.h>

#include "base.h"

/* ------------------------------------------------------------------ documents */

typedef struct loomi_doc_loc {
	const json_t *value;
	int line;
	int file;           /* index into files, -1: the document's own name */
} loomi_doc_loc;

typedef struct loomi_doc {
	json_t *root;       /* an object */
	char *name;         /* file name used in messages */
	loomi_doc_loc *locs;
	size_t n_locs, cap_locs;
	loomi_strv files;   /* @include'd files values came from */
} loomi_doc;

/* Read a libconfig file.  On a syntax or I/O error returns LOOM_ECONFIG or
 * LOOM_EIO with the message in errs. */
int loomi_doc_load_file(loomi_doc *doc, const char *path, loomi_strv *errs);
/* Parse libconfig text (tests, job specs given inline). */
int loomi_doc_load_string(loomi_doc *doc, const char *text, const char *name,
                          loomi_strv *errs);
/* Parse JSON text; the root must be an object. */
int loomi_doc_load_json(loomi_doc *doc, const char *text, size_t len, const char *name,
                        loomi_strv *errs);
void loomi_doc_free(loomi_doc *doc);
/* The source line of a value, 0 when unknown (JSON). */
int loomi_doc_line(const loomi_doc *doc, const json_t *value);
/* The file a value came from (the document's name, or an @include'd file). */
const char *loomi_doc_file(const loomi_doc *doc, const json_t *value);
/* "NAME:LINE: " or "NAME: " prefix for a message about value. */
void loomi_doc_errf(const loomi_doc *doc, const json_t *value, loomi_strv *errs,
                    const char *fmt, ...) LOOM_PRINTF(4, 5);

/* ------------------------------------------------------------------ schemas */

typedef enum loomi_ftype {
	LOOMI_F_BOOL = 1,
	LOOMI_F_INT,
	LOOMI_F_DOUBLE,
	LOOMI_F_STRING,
	LOOMI_F_SIZE,
	LOOMI_F_DURATION,
	LOOMI_F_STRLIST,
	LOOMI_F_PATH,
	LOOMI_F_GROUP,      /* a group with children fields */
	LOOMI_F_GROUPLIST,  /* a list of groups, each with children fields */
	LOOMI_F_ANYGROUP,   /* a group checked elsewhere (plugin config) */
	LOOMI_F_DOUBLELIST, /* a list of numbers */
	LOOMI_F_INTLIST,    /* a list of integers */
} loomi_ftype;

#define LOOMI_F_REQUIRED 0x1u
#define LOOMI_F_RANGE 0x2u

typedef struct loomi_field {
	const char *key;
	int type;                          /* loomi_ftype */
	unsigned flags;                    /* LOOMI_F_* */
	const char *choices;               /* strings: "a|b|c" */
	double min, max;                   /* with LOOMI_F_RANGE */
	const struct loomi_field *children;/* GROUP, GROUPLIST; ends with key NULL */
	const char *help;                  /* what it is, for messages */
} loomi_field;

/* Check group (an object) against fields.  path is the group's own path
 * ("" for the root, "model" …).  Appends messages to errs; returns the
 * number of problems found. */
int loomi_schema_check(const loomi_doc *doc, const json_t *group, const loomi_field *fields,
                       const char *path, loomi_strv *errs);
/* Check one value against its field (path names it in messages); doc may
 * be NULL (a default: no location).  Returns the number of problems. */
int loomi_schema_check_value(const loomi_doc *doc, const json_t *v, const loomi_field *f,
                             const char *path, loomi_strv *errs);
/* What a field of type (loomi_ftype) holds, for messages: "an integer",
 * "a size (bytes, or a string such as \"64K\" or \"2G\")" … */
const char *loomi_ftype_name(int type);

/* The type name used in messages: "an integer", "a string" … */
const char *loomi_json_type_name(const json_t *v);

/* JSON → libconfig text (groups, lists, arrays, strings escaped, integers,
 * floats that read back the same, booleans); NULL for a value libconfig
 * cannot hold (null, a string containing NUL, a key that is not a
 * libconfig name [A-Za-z*][-A-Za-z0-9_*]*, a root that is not an object).
 * Arrays of scalars of one type become libconfig arrays [ … ]; mixed-type
 * arrays and arrays holding groups or arrays become lists ( … ).  Read back
 * with loomi_doc_load_string the result is json_equal to root.  Free it. */
char *loomi_json_to_libconfig(const json_t *root);

#endif /* LOOM_SDK_DOC_H */

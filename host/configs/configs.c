/* Stored training configs, templates, and libconfig/JSON import and
 * export.  See configs.h. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include <loom/error.h>

#include "host/core/compute.h"
#include "host/core/log.h"
#include "host/core/schema.h"
#include "host/core/util.h"
#include "host/server/api.h"
#include "host/server/module.h"
#include "host/server/store.h"
#include "configs.h"

#define NAME_MAX_CHARS 100
#define COMMENT_MAX_CHARS 1000
#define DESCRIPTION_MAX_CHARS 4000
#define TEXT_MAX_BYTES (4u << 20)
#define LIST_MAX_LIMIT 1000

static const char migration_sql[] =
	"CREATE TABLE configs (\n"
	"  id          INTEGER PRIMARY KEY,\n"
	"  name        TEXT NOT NULL,\n"
	"  description TEXT NOT NULL DEFAULT '',\n"
	"  latest      INTEGER NOT NULL DEFAULT 1 CHECK (latest >= 1),\n"
	"  deleted     INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),\n"
	"  created_at  INTEGER NOT NULL,\n"
	"  updated_at  INTEGER NOT NULL,\n"
	"  deleted_at  INTEGER\n"
	");\n"
	"CREATE UNIQUE INDEX configs_by_name ON configs (name) WHERE deleted = 0;\n"
	"CREATE TABLE config_versions (\n"
	"  config_id  INTEGER NOT NULL REFERENCES configs (id) ON DELETE CASCADE,\n"
	"  version    INTEGER NOT NULL CHECK (version >= 1),\n"
	"  spec       TEXT NOT NULL CHECK (json_valid(spec)),\n"
	"  comment    TEXT NOT NULL DEFAULT '',\n"
	"  created_at INTEGER NOT NULL,\n"
	"  PRIMARY KEY (config_id, version)\n"
	") WITHOUT ROWID;\n";

/* One operation at a time (loomi_store_begin waits out the other threads
 * sharing the connection). */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const body_keys[] = {"name", "description", "comment", "spec", "text",
                                        "format"};
#define N_BODY_KEYS (sizeof body_keys / sizeof body_keys[0])

/* ------------------------------------------------------------------ helpers */

static int fail(char **msg, int code, const char *fmt, ...) LOOM_PRINTF(3, 4);

static int
fail(char **msg, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	*msg = loomi_vstrfmt(fmt, ap);
	va_end(ap);
	return code;
}

/* A failed statement: a write the store could not make is answered 503
 * with what to do (store.h); other failures say what failed. */
static int
db_fail(sqlite3 *db, char **msg, const char *what)
{
	int rc = sqlite3_extended_errcode(db);

	if (loomi_store_wrote(db, rc) == LOOM_EIO && rc != SQLITE_ERROR &&
	    (rc & 0xff) != SQLITE_BUSY) {
		char *m = loomi_store_errmsg("the change");
		int rv = fail(msg, LOOM_EIO, "%s", m);
		free(m);
		return rv;
	}
	LOG_ERROR("configs: %s: %s", what, sqlite3_errmsg(db));
	return fail(msg, LOOM_EIO, "the state database failed to %s (%s); see loomd's log", what,
	            sqlite3_errmsg(db));
}

static void
set_time(json_t *obj, const char *key, int64_t ms)
{
	char *t = loomi_iso_time(ms);
	json_object_set_new(obj, key, json_string(t));
	free(t);
}

/* Characters (UTF-8 code points) in s. */
static size_t
utf8_chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

int64_t
loomi_config_id_parse(const char *text)
{
	char *end;
	long long v;

	if (text == NULL)
		return 0;
	if (strncmp(text, "config-", 7) == 0)
		text += 7;
	if (*text < '1' || *text > '9')
		return 0;
	errno = 0;
	v = strtoll(text, &end, 10);
	return (*end || errno) ? 0 : v;
}

static int
parse_id(const char *text, int64_t *id, char **msg)
{
	if ((*id = loomi_config_id_parse(text)) == 0)
		return fail(msg, LOOM_ENOENT,
		            "there is no config \"%s\"; config ids look like \"config-3\" "
		            "(GET /api/v1/training/configs lists them)",
		            text ? text : "");
	return 0;
}

/* A name of 1–max characters of [A-Za-z0-9_.-]; what names it in messages. */
static int
check_name(const char *what, const char *name, size_t max, char **msg)
{
	size_t n = strlen(name);
	int rv;

	/* control and bidi characters named by code point, as every module does */
	if ((rv = loomi_name_text_check(what, name, msg)) != 0)
		return rv;
	if (n == 0)
		return fail(msg, LOOM_EINVAL,
		            "%s: must not be empty; give 1 to %zu letters, digits, '_', '.' or '-'",
		            what, max);
	if (n > max)
		return fail(msg, LOOM_EINVAL, "%s: %zu characters is too long; give at most %zu",
		            what, n, max);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '_' || c == '.' || c == '-')
			continue;
		if (c >= ' ' && c < 0x7f)
			return fail(msg, LOOM_EINVAL,
			            "%s: '%c' (character %zu) is not allowed; use only letters, digits, "
			            "'_', '.' and '-', e.g. \"seattle-forecast\"",
			            what, c, i + 1);
		return fail(msg, LOOM_EINVAL,
		            "%s: byte 0x%02x (character %zu) is not allowed; use only letters, digits, "
		            "'_', '.' and '-', e.g. \"seattle-forecast\"",
		            what, c, i + 1);
	}
	return 0;
}

static sqlite3_stmt *
prep(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		LOG_ERROR("configs: cannot prepare \"%s\": %s", sql, sqlite3_errmsg(db));
		sqlite3_finalize(st);
		return NULL;
	}
	return st;
}

/* ------------------------------------------------------------------ reading configs */

typedef struct row {
	int64_t id;
	char *name, *description, *owner;
	int64_t latest, created_at, updated_at;
	bool deleted;
} row;

static void
row_free(row *r)
{
	free(r->name);
	free(r->description);
	free(r->owner);
	memset(r, 0, sizeof *r);
}

/* The config row of id; LOOM_ENOENT when there is none or it was deleted. */
static int
row_load(sqlite3 *db, int64_t id, row *r, char **msg)
{
	sqlite3_stmt *st = prep(db, "SELECT name, description, latest, created_at, updated_at, "
	                            "deleted, owner FROM configs WHERE id = ?");
	int rc;

	memset(r, 0, sizeof *r);
	if (st == NULL)
		return db_fail(db, msg, "read a config");
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		r->id = id;
		r->name = loomi_strdup((const char *)sqlite3_column_text(st, 0));
		r->description = loomi_strdup((const char *)sqlite3_column_text(st, 1));
		r->latest = sqlite3_column_int64(st, 2);
		r->created_at = sqlite3_column_int64(st, 3);
		r->updated_at = sqlite3_column_int64(st, 4);
		r->deleted = sqlite3_column_int(st, 5) != 0;
		r->owner = loomi_strdup((const char *)sqlite3_column_text(st, 6));
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_DONE)
		return fail(msg, LOOM_ENOENT,
		            "there is no config-%lld; GET /api/v1/training/configs lists the configs",
		            (long long)id);
	if (rc != SQLITE_ROW)
		return db_fail(db, msg, "read a config");
	if (r->deleted) {
		row_free(r);
		return fail(msg, LOOM_ENOENT,
		            "config-%lld was deleted; GET /api/v1/training/configs lists the configs",
		            (long long)id);
	}
	return 0;
}

static int
check_version(const row *r, int64_t *version, char **msg)
{
	if (*version < 0)
		return fail(msg, LOOM_EINVAL,
		            "version: %lld is not a version; give 1 or more (0 or none: the newest)",
		            (long long)*version);
	if (*version == 0)
		*version = r->latest;
	if (*version > r->latest)
		return fail(msg, LOOM_ENOENT, "config-%lld has no version %lld; its versions are 1 to %lld",
		            (long long)r->id, (long long)*version, (long long)r->latest);
	return 0;
}

static int
spec_load(sqlite3 *db, int64_t id, int64_t version, json_t **spec, char **msg)
{
	sqlite3_stmt *st =
		prep(db, "SELECT spec FROM config_versions WHERE config_id = ? AND version = ?");
	json_error_t jerr;
	int rc;

	*spec = NULL;
	if (st == NULL)
		return db_fail(db, msg, "read a config version");
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, version);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*spec = json_loads((const char *)sqlite3_column_text(st, 0), 0, &jerr);
	sqlite3_finalize(st);
	if (rc == SQLITE_DONE) {
		LOG_ERROR("configs: config-%lld version %lld is missing from config_versions",
		          (long long)id, (long long)version);
		return fail(msg, LOOM_EIO, "config-%lld version %lld is missing from the state database",
		            (long long)id, (long long)version);
	}
	if (rc != SQLITE_ROW)
		return db_fail(db, msg, "read a config version");
	if (*spec == NULL) {
		LOG_ERROR("configs: config-%lld version %lld: stored spec: %s", (long long)id,
		          (long long)version, jerr.text);
		return fail(msg, LOOM_EIO, "config-%lld version %lld: the stored spec does not parse",
		            (long long)id, (long long)version);
	}
	return 0;
}

/* A config as the API shows it; spec (stolen) only when not NULL. */
static json_t *
row_json(const row *r, int64_t version, json_t *spec)
{
	json_t *o = json_object();
	char id[32];

	snprintf(id, sizeof id, "config-%lld", (long long)r->id);
	json_object_set_new(o, "config_id", json_string(id));
	json_object_set_new(o, "name", json_string(r->name));
	json_object_set_new(o, "description", json_string(r->description));
	json_object_set_new(o, "owner", json_string(r->owner ? r->owner : ""));
	json_object_set_new(o, "version", json_integer(version));
	json_object_set_new(o, "versions", json_integer(r->latest));
	if (spec)
		json_object_set_new(o, "spec", spec);
	set_time(o, "created_at", r->created_at);
	set_time(o, "updated_at", r->updated_at);
	return o;
}

/* The config id at version (0: newest), with its spec; inside a transaction. */
static int
config_json(sqlite3 *db, int64_t id, int64_t version, json_t **out, char **msg)
{
	json_t *spec;
	row r;
	int rv;

	if ((rv = row_load(db, id, &r, msg)) != 0)
		return rv;
	if ((rv = check_version(&r, &version, msg)) == 0 &&
	    (rv = spec_load(db, id, version, &spec, msg)) == 0)
		*out = row_json(&r, version, spec);
	row_free(&r);
	return rv;
}

/* ------------------------------------------------------------------ request bodies */

enum body_mode { BODY_CREATE, BODY_UPDATE, BODY_VALIDATE };

typedef struct cbody {
	const char *name;        /* NULL: not given */
	const char *description; /* NULL: not given */
	const char *comment;     /* "" when not given */
	json_t *spec;            /* a reference */
} cbody;

/* Refuse @include in imported text: it would read files of the daemon's
 * host into the spec. */
static int
check_no_include(const char *text, char **msg)
{
	int line = 1;
	const char *p = text;

	while (*p) {
		const char *q = p;
		while (*q == ' ' || *q == '\t')
			q++;
		if (strncmp(q, "@include", 8) == 0)
			return fail(msg, LOOM_EINVAL,
			            "text:%d: @include is not allowed in an imported config; put the "
			            "included settings in the text itself",
			            line);
		while (*p && *p != '\n')
			p++;
		if (*p == '\n') {
			p++;
			line++;
		}
	}
	return 0;
}

/* Parse imported text into a spec. */
static int
import_text(const json_t *text_v, const json_t *format_v, json_t **spec, char **msg)
{
	const char *text = json_string_value(text_v), *format = "libconfig", *p;
	loomi_strv errs = {0};
	loomi_doc doc;
	size_t len;
	int rv;

	if (text == NULL)
		return fail(msg, LOOM_EINVAL,
		            "text: expected the config as a string, e.g. \"data = { path = "
		            "\\\"…\\\"; };\" with \"format\": \"libconfig\"");
	len = json_string_length(text_v);
	if (len > TEXT_MAX_BYTES)
		return fail(msg, LOOM_EINVAL, "text: %zu bytes is too long; give at most %u", len,
		            TEXT_MAX_BYTES);
	if (strlen(text) != len)
		return fail(msg, LOOM_EINVAL, "text: contains a NUL character; remove it");
	if (format_v) {
		format = json_string_value(format_v);
		if (format == NULL || (strcmp(format, "libconfig") != 0 && strcmp(format, "json") != 0))
			return fail(msg, LOOM_EINVAL,
			            "format: expected \"libconfig\" or \"json\" (the syntax of text)");
	} else {
		for (p = text; *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'; p++)
			;
		if (*p == '{')
			format = "json";
	}
	if (strcmp(format, "json") == 0) {
		rv = loomi_doc_load_json(&doc, text, len, "text", &errs);
	} else {
		if ((rv = check_no_include(text, msg)) != 0)
			return rv;
		rv = loomi_doc_load_string(&doc, text, "text", &errs);
	}
	if (rv != 0) {
		char *joined = loomi_strv_join(&errs, "; ");
		*msg = loomi_strfmt("%s (reading text as %s)", joined, format);
		free(joined);
		loomi_strv_free(&errs);
		loomi_doc_free(&doc);
		return LOOM_EINVAL;
	}
	loomi_strv_free(&errs);
	*spec = json_incref(doc.root);
	loomi_doc_free(&doc);
	return 0;
}

static int
optional_text(const json_t *body, const char *key, size_t max, const char **out, char **msg)
{
	const json_t *v = json_object_get(body, key);
	size_t n;

	*out = NULL;
	if (v == NULL)
		return 0;
	if (!json_is_string(v))
		return fail(msg, LOOM_EINVAL, "%s: expected a string, got %s", key,
		            loomi_json_type_name(v));
	if (strlen(json_string_value(v)) != json_string_length(v))
		return fail(msg, LOOM_EINVAL, "%s: contains a NUL character; remove it", key);
	if ((n = utf8_chars(json_string_value(v))) > max)
		return fail(msg, LOOM_EINVAL, "%s: %zu characters is too long; give at most %zu", key,
		            n, max);
	*out = json_string_value(v);
	return 0;
}

/* Check a body, import its text, and have the compute plugin check the
 * spec.  On success b->spec is a reference to release. */
static int
body_parse(loomi_daemon *d, const json_t *body, enum body_mode mode, cbody *b, char **msg)
{
	const json_t *name_v, *spec_v, *text_v, *format_v, *v;
	const char *key;
	int rv;

	memset(b, 0, sizeof *b);
	if (!json_is_object(body))
		return fail(msg, LOOM_EINVAL,
		            "the request body must be a JSON object: {\"name\": \"my-config\", "
		            "\"spec\": {…job spec…}} or {\"name\": \"my-config\", \"text\": \"…\", "
		            "\"format\": \"libconfig\"}");
	json_object_foreach((json_t *)body, key, v) {
		bool known = false;
		for (size_t i = 0; i < N_BODY_KEYS; i++)
			known |= strcmp(key, body_keys[i]) == 0;
		if (!known) {
			const char *s = loomi_suggest(key, body_keys, N_BODY_KEYS);
			return fail(msg, LOOM_EINVAL,
			            "%s: unknown field%s%s%s; a config body has name, description, "
			            "comment, and spec or text with format (the job spec goes under "
			            "\"spec\")",
			            key, s ? " (did you mean \"" : "", s ? s : "", s ? "\"?)" : "");
		}
	}
	name_v = json_object_get(body, "name");
	spec_v = json_object_get(body, "spec");
	text_v = json_object_get(body, "text");
	format_v = json_object_get(body, "format");

	if (name_v == NULL) {
		if (mode == BODY_CREATE)
			return fail(msg, LOOM_EINVAL,
			            "name: missing; give the config a name such as \"seattle-forecast\"");
	} else if (!json_is_string(name_v)) {
		return fail(msg, LOOM_EINVAL,
		            "name: expected a string such as \"seattle-forecast\", got %s",
		            loomi_json_type_name(name_v));
	} else if (strlen(json_string_value(name_v)) != json_string_length(name_v)) {
		return fail(msg, LOOM_EINVAL,
		            "name: contains a NUL character; use only letters, digits, '_', '.' "
		            "and '-'");
	} else {
		if ((rv = check_name("name", json_string_value(name_v), NAME_MAX_CHARS, msg)) != 0)
			return rv;
		b->name = json_string_value(name_v);
	}
	if ((rv = optional_text(body, "description", DESCRIPTION_MAX_CHARS, &b->description,
	                        msg)) != 0 ||
	    (rv = optional_text(body, "comment", COMMENT_MAX_CHARS, &b->comment, msg)) != 0)
		return rv;
	if (b->comment == NULL)
		b->comment = "";

	if (spec_v && text_v)
		return fail(msg, LOOM_EINVAL,
		            "spec, text: give the job spec once, as \"spec\" (an object) or as "
		            "\"text\" (with \"format\"), not both");
	if (format_v && text_v == NULL)
		return fail(msg, LOOM_EINVAL,
		            "format: goes with \"text\" (the config as libconfig or JSON text); "
		            "with \"spec\" leave it out");
	if (spec_v == NULL && text_v == NULL)
		return fail(msg, LOOM_EINVAL,
		            "spec: missing; give the job spec as \"spec\": {…}, or as \"text\" with "
		            "\"format\": \"libconfig\" or \"json\"");
	if (spec_v) {
		if (!json_is_object(spec_v))
			return fail(msg, LOOM_EINVAL,
			            "spec: expected a job spec object {\"data\": …, \"model\": …, "
			            "\"train\": …}, got %s",
			            loomi_json_type_name(spec_v));
		b->spec = json_deep_copy(spec_v);
	} else if ((rv = import_text(text_v, format_v, &b->spec, msg)) != 0) {
		return rv;
	}
	if ((rv = loomi_compute_validate(&d->plugins, b->spec, msg)) != 0) {
		json_decref(b->spec);
		b->spec = NULL;
		return rv;
	}
	return 0;
}

/* The id of the config named name that is not deleted, 0 when none. */
static int
name_owner(sqlite3 *db, const char *name, int64_t *owner, char **msg)
{
	sqlite3_stmt *st = prep(db, "SELECT id FROM configs WHERE name = ? AND deleted = 0");
	int rc;

	*owner = 0;
	if (st == NULL)
		return db_fail(db, msg, "look up a config name");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*owner = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_fail(db, msg, "look up a config name");
	return 0;
}

static int
name_taken(const char *name, int64_t owner, char **msg)
{
	return fail(msg, LOOM_EEXIST,
	            "name: a config named \"%s\" already exists (config-%lld); choose another "
	            "name, or update config-%lld",
	            name, (long long)owner, (long long)owner);
}

static int
insert_version(sqlite3 *db, int64_t id, int64_t version, const json_t *spec, const char *comment,
               int64_t now, char **msg)
{
	sqlite3_stmt *st = prep(db, "INSERT INTO config_versions (config_id, version, spec, "
	                            "comment, created_at) VALUES (?, ?, ?, ?, ?)");
	char *text = json_dumps(spec, JSON_COMPACT | JSON_PRESERVE_ORDER);
	int rc;

	if (st == NULL || text == NULL) {
		sqlite3_finalize(st);
		free(text);
		return db_fail(db, msg, "store a config version");
	}
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, version);
	sqlite3_bind_text(st, 3, text, -1, free);
	sqlite3_bind_text(st, 4, comment, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 5, now);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_fail(db, msg, "store a config version");
	return 0;
}

/* ------------------------------------------------------------------ operations */

int
loomi_configs_create(loomi_daemon *d, const loomi_caller *who, const json_t *body, json_t **out,
                     char **msg)
{
	sqlite3 *db = d->store.db;
	sqlite3_stmt *st;
	int64_t owner, id = 0, now;
	json_t *result = NULL;
	cbody b;
	int rv, rc;

	if ((rv = body_parse(d, body, BODY_CREATE, &b, msg)) != 0)
		return rv;
	pthread_mutex_lock(&lock);
	if ((rv = loomi_store_begin(db, true, msg)) != 0)
		goto out;
	if ((rv = name_owner(db, b.name, &owner, msg)) != 0)
		goto end;
	if (owner != 0) {
		rv = name_taken(b.name, owner, msg);
		goto end;
	}
	now = loomi_wall_ms();
	if ((st = prep(db, "INSERT INTO configs (name, description, latest, created_at, "
	                   "updated_at, owner) VALUES (?, ?, 1, ?, ?, ?)")) == NULL) {
		rv = db_fail(db, msg, "store a config");
		goto end;
	}
	sqlite3_bind_text(st, 1, b.name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, b.description ? b.description : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 3, now);
	sqlite3_bind_int64(st, 4, now);
	sqlite3_bind_text(st, 5, who->name, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		rv = db_fail(db, msg, "store a config");
		goto end;
	}
	id = sqlite3_last_insert_rowid(db);
	if ((rv = insert_version(db, id, 1, b.spec, b.comment, now, msg)) != 0)
		goto end;
	rv = config_json(db, id, 1, &result, msg);
end:
	rv = loomi_store_end(db, rv, msg);
out:
	pthread_mutex_unlock(&lock);
	if (rv == 0) {
		*out = result;
		LOG_INFO("configs: config-%lld \"%s\" created by %s", (long long)id, b.name,
		         who->name);
	} else {
		json_decref(result);
	}
	json_decref(b.spec);
	return rv;
}

int
loomi_configs_update(loomi_daemon *d, const char *idtext, const json_t *body, json_t **out,
                     char **msg)
{
	sqlite3 *db = d->store.db;
	sqlite3_stmt *st;
	int64_t id, owner, version = 0, now;
	json_t *result = NULL;
	cbody b;
	row r = {0};
	int rv, rc;

	if ((rv = parse_id(idtext, &id, msg)) != 0)
		return rv;
	if ((rv = body_parse(d, body, BODY_UPDATE, &b, msg)) != 0)
		return rv;
	pthread_mutex_lock(&lock);
	if ((rv = loomi_store_begin(db, true, msg)) != 0)
		goto out;
	if ((rv = row_load(db, id, &r, msg)) != 0)
		goto end;
	if (b.name && strcmp(b.name, r.name) != 0) {
		if ((rv = name_owner(db, b.name, &owner, msg)) != 0)
			goto end;
		if (owner != 0) {
			rv = name_taken(b.name, owner, msg);
			goto end;
		}
	}
	version = r.latest + 1;
	now = loomi_wall_ms();
	if ((rv = insert_version(db, id, version, b.spec, b.comment, now, msg)) != 0)
		goto end;
	if ((st = prep(db, "UPDATE configs SET latest = ?, updated_at = ?, name = coalesce(?, name),"
	                   " description = coalesce(?, description) WHERE id = ?")) == NULL) {
		rv = db_fail(db, msg, "update a config");
		goto end;
	}
	sqlite3_bind_int64(st, 1, version);
	sqlite3_bind_int64(st, 2, now);
	if (b.name)
		sqlite3_bind_text(st, 3, b.name, -1, SQLITE_TRANSIENT);
	if (b.description)
		sqlite3_bind_text(st, 4, b.description, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 5, id);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		rv = db_fail(db, msg, "update a config");
		goto end;
	}
	rv = config_json(db, id, version, &result, msg);
end:
	rv = loomi_store_end(db, rv, msg);
out:
	pthread_mutex_unlock(&lock);
	row_free(&r);
	json_decref(b.spec);
	if (rv == 0) {
		*out = result;
		LOG_INFO("configs: config-%lld version %lld stored", (long long)id, (long long)version);
	} else {
		json_decref(result);
	}
	return rv;
}

int
loomi_configs_delete(loomi_daemon *d, const char *idtext, char **msg)
{
	sqlite3 *db = d->store.db;
	sqlite3_stmt *st;
	int64_t id;
	row r = {0};
	int rv, rc;

	if ((rv = parse_id(idtext, &id, msg)) != 0)
		return rv;
	pthread_mutex_lock(&lock);
	if ((rv = loomi_store_begin(db, true, msg)) != 0)
		goto out;
	if ((rv = row_load(db, id, &r, msg)) != 0)
		goto end;
	if ((st = prep(db, "UPDATE configs SET deleted = 1, deleted_at = ? WHERE id = ?")) == NULL) {
		rv = db_fail(db, msg, "delete a config");
		goto end;
	}
	sqlite3_bind_int64(st, 1, loomi_wall_ms());
	sqlite3_bind_int64(st, 2, id);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		rv = db_fail(db, msg, "delete a config");
end:
	rv = loomi_store_end(db, rv, msg);
out:
	pthread_mutex_unlock(&lock);
	if (rv == 0)
		LOG_INFO("configs: config-%lld \"%s\" deleted", (long long)id, r.name);
	row_free(&r);
	return rv;
}

int
loomi_configs_get(loomi_daemon *d, const char *idtext, int64_t version, json_t **out, char **msg)
{
	sqlite3 *db = d->store.db;
	json_t *result = NULL;
	int64_t id;
	int rv;

	if ((rv = parse_id(idtext, &id, msg)) != 0)
		return rv;
	pthread_mutex_lock(&lock);
	if ((rv = loomi_store_begin(db, false, msg)) == 0) {
		rv = config_json(db, id, version, &result, msg);
		rv = loomi_store_end(db, rv, msg);
	}
	pthread_mutex_unlock(&lock);
	if (rv == 0)
		*out = result;
	else
		json_decref(result);
	return rv;
}

int
loomi_configs_spec(loomi_daemon *d, const char *idtext, int64_t version, json_t **spec,
                   char **msg)
{
	sqlite3 *db = d->store.db;
	json_t *result = NULL;
	int64_t id;
	row r;
	int rv;

	if ((rv = parse_id(idtext, &id, msg)) != 0)
		return rv;
	pthread_mutex_lock(&lock);
	if ((rv = loomi_store_begin(db, false, msg)) == 0) {
		if ((rv = row_load(db, id, &r, msg)) == 0) {
			if ((rv = check_version(&r, &version, msg)) == 0)
				rv = spec_load(db, id, version, &result, msg);
			row_free(&r);
		}
		rv = loomi_store_end(db, rv, msg);
	}
	pthread_mutex_unlock(&lock);
	if (rv == 0)
		*spec = result;
	else
		json_decref(result);
	return rv;
}

int
loomi_configs_list(loomi_daemon *d, const loomi_caller *who, int64_t limit, int64_t offset,
                   json_t **out, char **msg)
{
	sqlite3 *db = d->store.db;
	sqlite3_stmt *st;
	json_t *list = NULL;
	int64_t total = 0;
	char *vis, *sql;
	int rv, rc;

	if (limit < 1 || limit > LIST_MAX_LIMIT)
		return fail(msg, LOOM_EINVAL, "limit: %lld is out of range; give 1 to %d",
		            (long long)limit, LIST_MAX_LIMIT);
	if (offset < 0)
		return fail(msg, LOOM_EINVAL, "offset: %lld is negative; give 0 or more",
		            (long long)offset);
	/* what who may see: its own, those shared with it; an admin all */
	vis = loomi_auth_visible_sql("config", "('config-' || configs.id)", "configs.owner");
	pthread_mutex_lock(&lock);
	if ((rv = loomi_store_begin(db, false, msg)) != 0)
		goto out;
	sql = loomi_strfmt("SELECT count(*) FROM configs WHERE deleted = 0 AND %s", vis);
	st = prep(db, sql);
	free(sql);
	if (st)
		loomi_auth_bind(st, who);
	if (st == NULL || sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		rv = db_fail(db, msg, "count the configs");
		goto end;
	}
	total = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sql = loomi_strfmt("SELECT id, name, description, latest, created_at, updated_at, owner"
	                   " FROM configs WHERE deleted = 0 AND %s ORDER BY id DESC LIMIT ?1"
	                   " OFFSET ?2", vis);
	st = prep(db, sql);
	free(sql);
	if (st == NULL) {
		rv = db_fail(db, msg, "list the configs");
		goto end;
	}
	sqlite3_bind_int64(st, 1, limit);
	sqlite3_bind_int64(st, 2, offset);
	loomi_auth_bind(st, who);
	list = json_array();
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		row r;
		r.id = sqlite3_column_int64(st, 0);
		r.name = (char *)sqlite3_column_text(st, 1);
		r.description = (char *)sqlite3_column_text(st, 2);
		r.latest = sqlite3_column_int64(st, 3);
		r.created_at = sqlite3_column_int64(st, 4);
		r.updated_at = sqlite3_column_int64(st, 5);
		r.owner = (char *)sqlite3_column_text(st, 6);
		r.deleted = false;
		json_array_append_new(list, row_json(&r, r.latest, NULL));
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		rv = db_fail(db, msg, "list the configs");
end:
	rv = loomi_store_end(db, rv, msg);
out:
	pthread_mutex_unlock(&lock);
	free(vis);
	if (rv != 0) {
		json_decref(list);
		return rv;
	}
	*out = json_pack("{s:o, s:I, s:I, s:I}", "configs", list, "total", (json_int_t)total,
	                 "limit", (json_int_t)limit, "offset", (json_int_t)offset);
	return 0;
}

int
loomi_configs_versions(loomi_daemon *d, const char *idtext, json_t **out, char **msg)
{
	sqlite3 *db = d->store.db;
	sqlite3_stmt *st;
	json_t *list = NULL, *result = NULL;
	int64_t id;
	row r = {0};
	int rv, rc;

	if ((rv = parse_id(idtext, &id, msg)) != 0)
		return rv;
	pthread_mutex_lock(&lock);
	if ((rv = loomi_store_begin(db, false, msg)) != 0)
		goto out;
	if ((rv = row_load(db, id, &r, msg)) != 0)
		goto end;
	if ((st = prep(db, "SELECT version, created_at, comment FROM config_versions WHERE "
	                   "config_id = ? ORDER BY version")) == NULL) {
		rv = db_fail(db, msg, "list config versions");
		goto end;
	}
	sqlite3_bind_int64(st, 1, id);
	list = json_array();
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *v = json_object();
		json_object_set_new(v, "version", json_integer(sqlite3_column_int64(st, 0)));
		set_time(v, "created_at", sqlite3_column_int64(st, 1));
		json_object_set_new(v, "comment",
		                    json_string((const char *)sqlite3_column_text(st, 2)));
		json_array_append_new(list, v);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		rv = db_fail(db, msg, "list config versions");
		goto end;
	}
	{
		char cid[32];
		snprintf(cid, sizeof cid, "config-%lld", (long long)id);
		result = json_pack("{s:s, s:s, s:O}", "config_id", cid, "name", r.name, "versions",
		                   list);
	}
end:
	rv = loomi_store_end(db, rv, msg);
out:
	pthread_mutex_unlock(&lock);
	json_decref(list);
	row_free(&r);
	if (rv == 0)
		*out = result;
	else
		json_decref(result);
	return rv;
}

/* ------------------------------------------------------------------ ownership */

int
loomi_configs_owner(loomi_daemon *d, const char *idtext, char **owner,
                    char canon[LOOMI_OBJECT_ID_MAX])
{
	sqlite3 *db = d->store.db;
	int64_t id = loomi_config_id_parse(idtext);
	sqlite3_stmt *st;
	int rv = LOOM_ENOENT;

	if (id <= 0)
		return LOOM_ENOENT;
	/* one statement: the connection's mutex keeps it out of (and waits out)
	 * another thread's transaction */
	pthread_mutex_lock(&lock);
	st = prep(db, "SELECT owner FROM configs WHERE id = ? AND deleted = 0");
	if (st) {
		sqlite3_bind_int64(st, 1, id);
		if (sqlite3_step(st) == SQLITE_ROW) {
			*owner = loomi_strdup((const char *)sqlite3_column_text(st, 0));
			snprintf(canon, LOOMI_OBJECT_ID_MAX, "config-%lld", (long long)id);
			rv = 0;
		}
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&lock);
	return rv;
}

int
loomi_configs_may(loomi_daemon *d, const loomi_caller *who, const char *idtext, int access,
                  char **msg)
{
	char *owner = NULL, canon[LOOMI_OBJECT_ID_MAX];
	int64_t id;
	int rv;

	if ((rv = parse_id(idtext, &id, msg)) != 0)
		return rv;
	if (loomi_configs_owner(d, idtext, &owner, canon) != 0)
		return 0; /* none, or deleted: the operation says so */
	if (loomi_auth_may(d, who, "config", canon, owner, access))
		rv = 0;
	else if (loomi_auth_may(d, who, "config", canon, owner, LOOMI_ACCESS_READ)) {
		loomi_audit(who, "refused a change of %s (owned by %s)", canon, owner);
		rv = fail(msg, LOOM_EPERM,
		          "%s belongs to %s and is shared with %s for reading only; its owner or an "
		          "admin can share it for writing (`loomctl share config %s %s write`)",
		          canon, owner[0] ? owner : "no one (stored before configs had owners)",
		          who->name, canon, who->name);
	} else {
		rv = fail(msg, LOOM_ENOENT,
		          "there is no %s; GET /api/v1/training/configs lists the configs", canon);
	}
	free(owner);
	return rv;
}

int
loomi_configs_validate(loomi_daemon *d, const json_t *body, json_t **out, char **msg)
{
	cbody b;
	int rv;

	if ((rv = body_parse(d, body, BODY_VALIDATE, &b, msg)) != 0)
		return rv;
	json_decref(b.spec);
	*out = json_pack("{s:b}", "valid", 1);
	return 0;
}


/* "# " before every line of text. */
static void
comment_lines(FILE *fp, const char *text)
{
	while (*text) {
		size_t n = strcspn(text, "\r\n");
		fputs(n ? "# " : "#", fp);
		fwrite(text, 1, n, fp);
		putc('\n', fp);
		text += n;
		if (*text == '\r')
			text++;
		if (*text == '\n')
			text++;
	}
}

int
loomi_configs_export(loomi_daemon *d, const char *idtext, int64_t version, const char *format,
                     char **text, char **msg)
{
	json_t *cfg = NULL, *spec;
	int rv;

	if (format == NULL)
		format = "libconfig";
	if (strcmp(format, "libconfig") != 0 && strcmp(format, "json") != 0)
		return fail(msg, LOOM_EINVAL,
		            "format: \"%s\" is not an export format; give \"libconfig\" or \"json\"",
		            format);
	if ((rv = loomi_configs_get(d, idtext, version, &cfg, msg)) != 0)
		return rv;
	spec = json_object_get(cfg, "spec");
	if (strcmp(format, "json") == 0) {
		char *s = json_dumps(spec, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		*text = loomi_strfmt("%s\n", s ? s : "{}");
		free(s);
	} else {
		char *body = loomi_json_to_libconfig(spec), *head;
		const char *desc = json_string_value(json_object_get(cfg, "description"));
		size_t len = 0;
		FILE *fp;

		if (body == NULL) {
			rv = fail(msg, LOOM_EINVAL,
			          "format: the spec of %s holds a value libconfig cannot (a null, a NUL "
			          "character, or a key that is not a libconfig name); export it as "
			          "\"json\"",
			          json_string_value(json_object_get(cfg, "config_id")));
			json_decref(cfg);
			return rv;
		}
		head = loomi_strfmt("%s: %s version %lld, exported by Loom",
		                    json_string_value(json_object_get(cfg, "name")),
		                    json_string_value(json_object_get(cfg, "config_id")),
		                    (long long)json_integer_value(json_object_get(cfg, "version")));
		*text = NULL;
		if ((fp = open_memstream(text, &len)) == NULL)
			abort(); /* out of memory, as loomi_xmalloc would */
		comment_lines(fp, head);
		if (desc && *desc)
			comment_lines(fp, desc);
		fputs(body, fp);
		fclose(fp);
		free(head);
		free(body);
	}
	json_decref(cfg);
	return 0;
}

/* ------------------------------------------------------------------ templates */

/* The first line of a file, when it is a comment, without its marker. */
static char *
first_comment(const char *text)
{
	const char *p = text, *end;

	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (*p == '#')
		p++;
	else if (strncmp(p, "//", 2) == 0 || strncmp(p, "/*", 2) == 0)
		p += 2;
	else
		return loomi_strdup("");
	while (*p == '#' || *p == ' ' || *p == '\t')
		p++;
	end = p + strcspn(p, "\r\n");
	if (end - p >= 2 && strncmp(end - 2, "*/", 2) == 0)
		end -= 2;
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	return loomi_utf8_clean(loomi_strndup(p, (size_t)(end - p)));
}

static int
template_description(const char *path, char **desc)
{
	char *text = NULL;
	size_t len;
	int err;

	if ((err = loomi_read_file(path, &text, &len)) != 0)
		return err;
	*desc = first_comment(text);
	free(text);
	return 0;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* NAME.conf with NAME a template name: returns NAME's length, or 0. */
static size_t
template_stem(const char *file)
{
	size_t n = strlen(file);
	char *dummy = NULL;
	char stem[NAME_MAX_CHARS + 1];

	if (n <= 5 || n - 5 > NAME_MAX_CHARS || strcmp(file + n - 5, ".conf") != 0 ||
	    file[0] == '.')
		return 0;
	memcpy(stem, file, n - 5);
	stem[n - 5] = '\0';
	if (strstr(stem, "..") || check_name("name", stem, NAME_MAX_CHARS, &dummy) != 0) {
		free(dummy);
		return 0;
	}
	return n - 5;
}

int
loomi_configs_templates(const char *dir, json_t **out, char **msg)
{
	loomi_strv names = {0};
	struct dirent *e;
	json_t *list;
	DIR *dp;

	if ((dp = opendir(dir)) == NULL) {
		if (errno == ENOENT) {
			LOG_WARN("configs: the template directory %s does not exist; there are no "
			         "templates",
			         dir);
			*out = json_pack("{s:[]}", "templates");
			return 0;
		}
		return fail(msg, LOOM_EIO, "cannot read the template directory %s: %s; check its "
		                           "permissions",
		            dir, strerror(errno));
	}
	while ((e = readdir(dp)) != NULL) {
		size_t n = template_stem(e->d_name);
		if (n > 0)
			loomi_strv_push(&names, loomi_strndup(e->d_name, n));
	}
	closedir(dp);
	if (names.n > 1)
		qsort(names.v, names.n, sizeof *names.v, cmp_str);
	list = json_array();
	for (size_t i = 0; i < names.n; i++) {
		char *file = loomi_strfmt("%s.conf", names.v[i]);
		char *path = loomi_path_join(dir, file);
		char *desc = NULL;
		struct stat st;

		if (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    template_description(path, &desc) == 0) {
			json_array_append_new(list, json_pack("{s:s, s:s}", "name", names.v[i],
			                                      "description", desc));
		}
		free(desc);
		free(path);
		free(file);
	}
	loomi_strv_free(&names);
	*out = json_pack("{s:o}", "templates", list);
	return 0;
}

int
loomi_configs_template(const char *dir, const char *name, json_t **out, char **msg)
{
	loomi_strv errs = {0};
	loomi_doc doc;
	char *file, *path, *desc = NULL;
	struct stat st;
	int rv;

	if (name == NULL || strchr(name, '/') || strstr(name, "..") || name[0] == '.')
		return fail(msg, LOOM_EINVAL,
		            "template: \"%s\" is not a template name; names have no '/' or '..' "
		            "(GET /api/v1/training/templates lists them)",
		            name ? name : "");
	if ((rv = check_name("template", name, NAME_MAX_CHARS, msg)) != 0)
		return rv;
	file = loomi_strfmt("%s.conf", name);
	path = loomi_path_join(dir, file);
	free(file);
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
		rv = fail(msg, LOOM_ENOENT,
		          "template: there is no template \"%s\" (no %s); GET "
		          "/api/v1/training/templates lists them",
		          name, path);
		free(path);
		return rv;
	}
	if ((rv = loomi_doc_load_file(&doc, path, &errs)) != 0) {
		char *joined = loomi_strv_join(&errs, "; ");
		rv = fail(msg, LOOM_EIO, "template \"%s\" does not read: %s; fix the file", name,
		          joined);
		LOG_ERROR("configs: %s", *msg);
		free(joined);
		loomi_strv_free(&errs);
		loomi_doc_free(&doc);
		free(path);
		return rv;
	}
	loomi_strv_free(&errs);
	if (template_description(path, &desc) != 0)
		desc = loomi_strdup("");
	*out = json_pack("{s:s, s:s, s:O}", "name", name, "description", desc, "spec", doc.root);
	free(desc);
	loomi_doc_free(&doc);
	free(path);
	return 0;
}

/* ------------------------------------------------------------------ routes */

static void
post_configs(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *body = loomi_api_json_body(req, res), *out = NULL;
	char *msg = NULL;
	if (body) {
		int rv = loomi_configs_create(d, req->caller, body, &out, &msg);
		loomi_api_answer(res, rv, out, msg, 201);
	}
	json_decref(body);
}

static void
get_configs(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	int64_t limit, offset;
	json_t *out = NULL;
	char *msg = NULL;

	if (loomi_query_int(res, req->query, "limit", 50, 1, 1000, &limit) &&
	    loomi_query_int(res, req->query, "offset", 0, 0, INT64_MAX / 2, &offset)) {
		int rv = loomi_configs_list(d, req->caller, limit, offset, &out, &msg);
		loomi_api_answer(res, rv, out, msg, 200);
	}
}

static void
get_config(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	char *format = loomi_query_get(req->query, "format"), *msg = NULL, *text = NULL;
	int64_t version;
	json_t *out = NULL;
	int rv;

	if (!loomi_query_int(res, req->query, "version", 0, 1, INT64_MAX / 2, &version))
		goto out;
	if ((rv = loomi_configs_may(d, req->caller, req->params[0], LOOMI_ACCESS_READ, &msg)) != 0) {
		loomi_api_answer(res, rv, NULL, msg, 200);
		goto out;
	}
	if (format == NULL) {
		rv = loomi_configs_get(d, req->params[0], version, &out, &msg);
		loomi_api_answer(res, rv, out, msg, 200);
	} else if (strcmp(format, "libconfig") == 0 || strcmp(format, "json") == 0) {
		rv = loomi_configs_export(d, req->params[0], version, format, &text, &msg);
		if (rv == 0) {
			res->status = 200;
			res->text = text;
			res->text_len = strlen(text);
			res->content_type = strcmp(format, "json") == 0 ? "application/json"
			                                                : "text/plain; charset=utf-8";
			free(msg);
		} else {
			loomi_api_answer(res, rv, NULL, msg, 200);
		}
	} else {
		loomi_api_error(res, 400, "bad_request",
		                "format: \"%s\" is not an export format; use libconfig or json", format);
	}
out:
	free(format);
}

static void
put_config(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *body = loomi_api_json_body(req, res), *out = NULL;
	char *msg = NULL;
	if (body) {
		int rv = loomi_configs_may(d, req->caller, req->params[0], LOOMI_ACCESS_WRITE, &msg);
		if (rv == 0)
			rv = loomi_configs_update(d, req->params[0], body, &out, &msg);
		loomi_api_answer(res, rv, out, msg, 200);
	}
	json_decref(body);
}

static void
delete_config(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	char *msg = NULL;
	int rv = loomi_configs_may(d, req->caller, req->params[0], LOOMI_ACCESS_WRITE, &msg);
	json_t *out;

	if (rv == 0)
		rv = loomi_configs_delete(d, req->params[0], &msg);
	out = rv == 0 ? json_pack("{s:s, s:b}", "config_id", req->params[0], "deleted", 1) : NULL;
	loomi_api_answer(res, rv, out, msg, 200);
}

static void
get_config_versions(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *out = NULL;
	char *msg = NULL;
	int rv = loomi_configs_may(d, req->caller, req->params[0], LOOMI_ACCESS_READ, &msg);

	if (rv == 0)
		rv = loomi_configs_versions(d, req->params[0], &out, &msg);
	loomi_api_answer(res, rv, out, msg, 200);
}

static void
post_config_validate(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *body = loomi_api_json_body(req, res), *out = NULL;
	char *msg = NULL;
	if (body) {
		int rv = loomi_configs_validate(d, body, &out, &msg);
		loomi_api_answer(res, rv, out, msg, 200);
	}
	json_decref(body);
}

/* $LOOM_TEMPLATES (a source tree), else the installed templates. */
static const char *
template_dir(void)
{
	const char *env = getenv("LOOM_TEMPLATES");
	return env && *env ? env : LOOM_TEMPLATE_DIR;
}

static void
get_templates(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *out = NULL;
	char *msg = NULL;
	int rv = loomi_configs_templates(template_dir(), &out, &msg);
	(void)d;
	(void)req;
	loomi_api_answer(res, rv, out, msg, 200);
}

static void
get_template(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *out = NULL;
	char *msg = NULL;
	int rv = loomi_configs_template(template_dir(), req->params[0], &out, &msg);
	(void)d;
	loomi_api_answer(res, rv, out, msg, 200);
}

/* ------------------------------------------------------------------ the module */

static const loomi_migration migrations[] = {
	{3, "stored training configs and their versions", migration_sql},
	/* config ids (config-N) are never used again (store.c: foreign keys
	 * are off during migrations, so config_versions keeps its rows) */
	{12, "config ids are never reused (AUTOINCREMENT)",
	 "CREATE TABLE configs_new (\n"
	 "  id          INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	 "  name        TEXT NOT NULL,\n"
	 "  description TEXT NOT NULL DEFAULT '',\n"
	 "  latest      INTEGER NOT NULL DEFAULT 1 CHECK (latest >= 1),\n"
	 "  deleted     INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),\n"
	 "  created_at  INTEGER NOT NULL,\n"
	 "  updated_at  INTEGER NOT NULL,\n"
	 "  deleted_at  INTEGER\n"
	 ");\n"
	 "INSERT INTO configs_new SELECT id, name, description, latest, deleted, created_at,\n"
	 "  updated_at, deleted_at FROM configs;\n"
	 "DROP TABLE configs;\n"
	 "ALTER TABLE configs_new RENAME TO configs;\n"
	 "CREATE UNIQUE INDEX configs_by_name ON configs (name) WHERE deleted = 0;\n"
	 LOOMI_SEQUENCE_AT_LEAST("configs", "SELECT max(coalesce((SELECT max(id) FROM configs), 0),"
	                         " coalesce((SELECT max(config_id) FROM jobs), 0))")},
	/* configs stored before have no owner ('') and only admins see them */
	{20, "configs have owners",
	 "ALTER TABLE configs ADD COLUMN owner TEXT NOT NULL DEFAULT '';\n"},
};

static const loomi_route routes[] = {
	{"POST", "/api/v1/training/configs/validate", post_config_validate, LOOMI_ACCESS_READ,
	 NULL},
	{"POST", "/api/v1/training/configs", post_configs, LOOMI_ACCESS_WRITE, NULL},
	{"GET", "/api/v1/training/configs", get_configs, LOOMI_ACCESS_READ, "limit,offset"},
	{"GET", "/api/v1/training/configs/{id}", get_config, LOOMI_ACCESS_READ, "format,version"},
	{"PUT", "/api/v1/training/configs/{id}", put_config, LOOMI_ACCESS_WRITE, NULL},
	{"DELETE", "/api/v1/training/configs/{id}", delete_config, LOOMI_ACCESS_WRITE, NULL},
	{"GET", "/api/v1/training/configs/{id}/versions", get_config_versions, LOOMI_ACCESS_READ,
	 NULL},
	{"GET", "/api/v1/training/templates", get_templates, LOOMI_ACCESS_READ, NULL},
	{"GET", "/api/v1/training/templates/{name}", get_template, LOOMI_ACCESS_READ, NULL},
};

static int
init(loomi_daemon *d, char **err)
{
	(void)d;
	(void)err;
	loomi_auth_register_kind("config", loomi_configs_owner);
	return 0;
}

const loomi_module loomi_configs_module = {
	.name = "configs",
	.migrations = migrations,
	.n_migrations = LOOMI_N(migrations),
	.init = init,
	.routes = routes,
	.n_routes = LOOMI_N(routes),
};

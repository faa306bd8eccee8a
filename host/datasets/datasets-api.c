/* The datasets module's REST routes under /api/v1/datasets
 * (docs/datasets.md, docs/openapi.json) and its loomi_module. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sqlite3.h>

#include <loom/error.h>
#include <loom/types.h>

#include "host/core/util.h"
#include "host/server/module.h"
#include "host/server/store.h"
#include "datasets-int.h"

/* An answer of at most this many bytes of rows (fewer chunks then). */
#define DATA_MAX_BYTES (16u << 20)
/* threads that decompress and check a page's chunks (0: one per core, at
 * most 8): a page of 16 MiB is ~64 chunks */
#define DATA_THREADS 0

/* ------------------------------------------------------------------ helpers */

static const char *
default_code(int rv)
{
	switch (rv) {
	case LOOM_EINVAL: return "invalid";
	case LOOM_EPERM: return "forbidden";
	case LOOM_ENOENT: return "not_found";
	case LOOM_EEXIST: return "exists";
	case LOOM_EBUSY: return "locked";
	case LOOM_ECONFLICT: return "conflict";
	case LOOM_ESTATE: return "conflict";
	case LOOM_ERANGE: return "too_large";
	case LOOM_EIO: return "unavailable";
	case LOOM_ECORRUPT: return "corrupt";
	default: return "internal";
	}
}

/* End a read-only transaction. */
static void
read_end(sqlite3 *db)
{
	char *m = NULL;
	loomi_store_end(db, 0, &m);
	free(m);
}

/* Answer out with status ok, or e's error; both taken. */
static void
reply(loomi_http_res *res, int rv, json_t *out, dserr *e, int ok)
{
	if (rv == 0) {
		res->status = ok;
		res->body = out;
	} else {
		json_decref(out);
		loomi_api_error(res, dserr_status(e), e->code ? e->code : default_code(e->rv), "%s",
		                e->msg ? e->msg : loom_strerror(rv));
	}
	dserr_free(e);
}

/* The body as a JSON object whose fields are among fields (NULL-ended);
 * an empty body is {} when empty_ok.  NULL after answering 400. */
static json_t *
body_object(const loomi_http_req *req, loomi_http_res *res, const char *const *fields,
            bool empty_ok, const char *example)
{
	json_t *body, *v;
	const char *key;

	if (req->body_len == 0 && empty_ok)
		return json_object();
	if ((body = loomi_api_json_body(req, res)) == NULL)
		return NULL;
	if (!json_is_object(body)) {
		loomi_api_error(res, 400, "invalid", "the body must be a JSON object like %s", example);
		json_decref(body);
		return NULL;
	}
	json_object_foreach(body, key, v) {
		bool known = false;
		for (const char *const *f = fields; *f; f++)
			known |= strcmp(*f, key) == 0;
		if (!known) {
			char *list = NULL;
			for (const char *const *f = fields; *f; f++) {
				char *n = loomi_strfmt("%s%s%s", list ? list : "", list ? ", " : "", *f);
				free(list);
				list = n;
			}
			loomi_api_error(res, 400, "invalid", "%s: unknown field; this request takes %s",
			                key, list ? list : "no fields");
			free(list);
			json_decref(body);
			return NULL;
		}
	}
	return body;
}

/* An optional string field: true with *out (borrowed; NULL when absent);
 * false after answering 400. */
static bool
opt_string(json_t *body, const char *key, const char **out, loomi_http_res *res)
{
	json_t *v = json_object_get(body, key);
	*out = NULL;
	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_string(v)) {
		loomi_api_error(res, 400, "invalid", "%s: expected a string, not %s", key,
		                loomi_json_type_name(v));
		return false;
	}
	*out = json_string_value(v);
	return true;
}

/* The dataset of params[0] for access; false after answering. */
static bool
dataset_of(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res, int access,
           ds_row *r)
{
	dserr e = {0};
	int rv = ds_access(d, req->caller, req->params[0], access, r, &e);
	if (rv != 0)
		reply(res, rv, NULL, &e, 200);
	return rv == 0;
}

/* ------------------------------------------------------------------ datasets */

static void
route_list(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3 *db = d->store.db;
	char *vis = loomi_auth_visible_sql("dataset", "datasets.name", "datasets.owner");
	char *sql = loomi_strfmt("SELECT name FROM datasets WHERE %s ORDER BY name", vis);
	json_t *list = json_array();
	dserr e = {0};
	int64_t now = loomi_wall_ms();
	int rv;

	if ((rv = loomi_store_begin(db, false, &e.msg)) == 0) {
		sqlite3_stmt *st = loomi_store_prep(db, DSM, sql);
		if (st)
			loomi_auth_bind(st, req->caller);
		while (st && sqlite3_step(st) == SQLITE_ROW) {
			ds_row r;
			dserr e2 = {0};
			if (ds_load(db, (const char *)sqlite3_column_text(st, 0), &r, &e2) == 0)
				json_array_append_new(list, ds_dataset_json(db, &r, false, now));
			ds_row_free(&r);
			dserr_free(&e2);
		}
		if (st == NULL)
			rv = dse(&e, LOOM_EIO, "unavailable", "the datasets could not be listed");
		sqlite3_finalize(st);
		read_end(db);
	} else {
		e.rv = rv;
	}
	free(vis);
	free(sql);
	reply(res, rv, list, &e, 200);
}

static void
route_create(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	static const char *const fields[] = {"name", "description", "default_branch", NULL};
	json_t *body = body_object(req, res, fields, false, "{\"name\": \"weather\"}"), *out = NULL;
	const char *name, *desc, *def;
	dserr e = {0};
	ds_row r = {0};
	int rv;

	if (body == NULL)
		return;
	if (!opt_string(body, "name", &name, res) || !opt_string(body, "description", &desc, res) ||
	    !opt_string(body, "default_branch", &def, res)) {
		json_decref(body);
		return;
	}
	rv = ds_create(d, req->caller, name, desc, def, &r, &e);
	if (rv == 0)
		out = ds_dataset_json(d->store.db, &r, true, loomi_wall_ms());
	ds_row_free(&r);
	json_decref(body);
	reply(res, rv, out, &e, 201);
}

static void
route_show(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	ds_row r;
	json_t *out;
	dserr e = {0};

	if (!dataset_of(d, req, res, LOOMI_ACCESS_READ, &r))
		return;
	out = ds_dataset_json(d->store.db, &r, true, loomi_wall_ms());
	ds_row_free(&r);
	reply(res, 0, out, &e, 200);
}

static void
route_delete(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	ds_row r;
	dserr e = {0};
	int rv;

	if (!dataset_of(d, req, res, LOOMI_ACCESS_WRITE, &r))
		return;
	rv = ds_delete(d, req->caller, &r, &e);
	reply(res, rv, rv ? NULL : json_pack("{sssb}", "name", r.name, "deleted", 1), &e, 200);
	ds_row_free(&r);
}

/* ------------------------------------------------------------------ uploads */

static void
route_upload_begin(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	static const char *const fields[] = {"branch", "format", "parent", NULL};
	json_t *body = body_object(req, res, fields, true,
	                           "{\"branch\": \"main\", \"format\": \"csv\"}"),
	       *out = NULL;
	const char *branch, *format, *parent;
	ds_row r;
	dserr e = {0};
	int rv;

	if (body == NULL)
		return;
	if (!opt_string(body, "branch", &branch, res) || !opt_string(body, "format", &format, res) ||
	    !opt_string(body, "parent", &parent, res)) {
		json_decref(body);
		return;
	}
	if (dataset_of(d, req, res, LOOMI_ACCESS_WRITE, &r)) {
		rv = ds_upload_begin(d, req->caller, &r, branch ? branch : r.default_branch, format,
		                     parent, &out, &e);
		reply(res, rv, out, &e, 201);
		ds_row_free(&r);
	}
	json_decref(body);
}

static void
route_upload_part(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	const char *ct = req->content_type;
	char *end;
	long long n = strtoll(req->params[2], &end, 10);
	json_t *out = NULL;
	ds_row r;
	dserr e = {0};
	int rv;

	if (*end != '\0' || n < 0 || req->params[2][0] < '0' || req->params[2][0] > '9') {
		loomi_api_error(res, 400, "invalid", "part: expected a part number 0, 1, 2 …, not "
		                                     "\"%s\"",
		                req->params[2]);
		return;
	}
	if (req->body_len > 0 && (ct == NULL || strncmp(ct, "application/octet-stream", 24) != 0)) {
		loomi_api_error(res, 415, "unsupported_media_type",
		                "a part's body is the file's bytes: send it as Content-Type: "
		                "application/octet-stream");
		return;
	}
	if (!dataset_of(d, req, res, LOOMI_ACCESS_WRITE, &r))
		return;
	rv = ds_upload_part(d, req->caller, &r, req->params[1], n, req->body, req->body_len, &out,
	                    &e);
	reply(res, rv, out, &e, 200);
	ds_row_free(&r);
}

static void
route_upload_commit(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	static const char *const fields[] = {"message", "parent", NULL};
	json_t *body = body_object(req, res, fields, true, "{\"message\": \"2016 added\"}"),
	       *out = NULL;
	const char *message, *parent;
	ds_row r;
	dserr e = {0};
	int rv;

	if (body == NULL)
		return;
	if (!opt_string(body, "message", &message, res) || !opt_string(body, "parent", &parent, res)) {
		json_decref(body);
		return;
	}
	if (dataset_of(d, req, res, LOOMI_ACCESS_WRITE, &r)) {
		rv = ds_upload_commit(d, req->caller, &r, req->params[1], message, parent, &out, &e);
		reply(res, rv, out, &e, 201);
		ds_row_free(&r);
	}
	json_decref(body);
}

static void
route_upload_abort(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	ds_row r;
	dserr e = {0};
	int rv;

	if (!dataset_of(d, req, res, LOOMI_ACCESS_WRITE, &r))
		return;
	rv = ds_upload_abort(d, req->caller, &r, req->params[1], &e);
	reply(res, rv, rv ? NULL : json_pack("{sssb}", "upload", req->params[1], "aborted", 1), &e,
	      200);
	ds_row_free(&r);
}

/* ------------------------------------------------------------------ versions */

static json_t *
version_json(sqlite3_stmt *st)
{
	json_error_t je;
	json_t *parents = json_loads((const char *)sqlite3_column_text(st, 1), 0, &je);
	return json_pack("{sssosssssIsIsIsIsos:s?}", "id", sqlite3_column_text(st, 0), "parents",
	                 parents ? parents : json_array(), "author", sqlite3_column_text(st, 2),
	                 "message", sqlite3_column_text(st, 3), "rows",
	                 (json_int_t)sqlite3_column_int64(st, 4), "bytes",
	                 (json_int_t)sqlite3_column_int64(st, 5), "stored",
	                 (json_int_t)sqlite3_column_int64(st, 6), "chunks",
	                 (json_int_t)sqlite3_column_int64(st, 7), "created",
	                 ds_iso(sqlite3_column_int64(st, 8)), "content",
	                 (const char *)sqlite3_column_text(st, 9));
}

static void
route_versions(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3 *db = d->store.db;
	char *ref = loomi_query_get(req->query, "ref"), id[DS_HEX_LEN + 1];
	json_t *list = json_array();
	int64_t limit;
	ds_row r;
	dserr e = {0};
	int rv;

	if (!loomi_query_int(res, req->query, "limit", 50, 1, 100000, &limit) ||
	    !dataset_of(d, req, res, LOOMI_ACCESS_READ, &r)) {
		free(ref);
		json_decref(list);
		return;
	}
	if ((rv = loomi_store_begin(db, false, &e.msg)) == 0) {
		dserr e2 = {0};
		char head[DS_HEX_LEN + 1];
		/* the default branch with no version yet: an empty log */
		if (ref == NULL && ds_branch_head(db, r.id, r.default_branch, head, &e2) != 0)
			rv = 0, id[0] = '\0';
		else if (ref == NULL && head[0] == '\0')
			id[0] = '\0';
		else
			rv = ds_resolve(db, &r, ref ? ref : r.default_branch, id, &e);
		dserr_free(&e2);
		if (rv == 0 && id[0]) {
			sqlite3_stmt *st = loomi_store_prep(
				db, DSM, "SELECT id, parents, author, message, rows, bytes, stored, n_chunks, "
				         "created_at, content FROM dataset_versions WHERE id = ?");
			for (int64_t i = 0; st && i < limit && id[0]; i++) {
				const char *p;
				sqlite3_reset(st);
				sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
				if (sqlite3_step(st) != SQLITE_ROW)
					break;
				json_t *v = version_json(st);
				json_array_append_new(list, v);
				p = json_string_value(json_array_get(json_object_get(v, "parents"), 0));
				snprintf(id, sizeof id, "%s", p ? p : "");
			}
			sqlite3_finalize(st);
		}
		read_end(db);
	} else {
		e.rv = rv;
	}
	free(ref);
	ds_row_free(&r);
	reply(res, rv, list, &e, 200);
}

static void
route_version(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3 *db = d->store.db;
	char id[DS_HEX_LEN + 1];
	ds_manifest m;
	json_t *out = NULL;
	ds_row r;
	dserr e = {0};
	int rv;

	if (!dataset_of(d, req, res, LOOMI_ACCESS_READ, &r))
		return;
	if ((rv = loomi_store_begin(db, false, &e.msg)) == 0) {
		rv = ds_resolve(db, &r, req->params[1], id, &e);
		if (rv == 0 && (rv = ds_manifest_load(db, id, &m, &e)) == 0) {
			char content[DS_HEX_LEN + 1];
			out = ds_manifest_json(&m);
			json_object_set_new(out, "id", json_string(id));
			if (ds_content_of(db, id, content, NULL, NULL) == 0)
				json_object_set_new(out, "content", json_string(content));
			ds_manifest_free(&m);
		}
		read_end(db);
	} else {
		e.rv = rv;
	}
	ds_row_free(&r);
	reply(res, rv, out, &e, 200);
}

typedef struct membuf {
	char *p;
	size_t n, cap;
} membuf;

static int
mem_write(void *arg, const void *data, size_t len)
{
	membuf *b = arg;
	if (b->n + len > b->cap) {
		size_t cap = b->cap ? b->cap : 1 << 16;
		while (cap < b->n + len)
			cap *= 2;
		b->p = loomi_xrealloc(b->p, cap);
		b->cap = cap;
	}
	memcpy(b->p + b->n, data, len);
	b->n += len;
	return 0;
}

static void
route_data(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3 *db = d->store.db;
	char id[DS_HEX_LEN + 1], *fmt = loomi_query_get(req->query, "format"), *err = NULL;
	int64_t from, count;
	ds_manifest m;
	membuf buf = {0};
	loom_instance *ins;
	ds_row r;
	dserr e = {0};
	size_t n = 0, limit;
	uint64_t raw = 0;
	int out = DS_OUT_CSV, rv;

	memset(&m, 0, sizeof m);
	if (!loomi_query_int(res, req->query, "from", 0, 0, INT64_MAX, &from) ||
	    !loomi_query_int(res, req->query, "count", INT64_MAX, 0, INT64_MAX, &count)) {
		free(fmt);
		return;
	}
	if (fmt && strcmp(fmt, "native") == 0)
		out = DS_OUT_NATIVE;
	else if (fmt && strcmp(fmt, "csv") != 0) {
		loomi_api_error(res, 400, "invalid", "format: expected csv or native, not \"%s\"", fmt);
		free(fmt);
		return;
	}
	free(fmt);
	if (!dataset_of(d, req, res, LOOMI_ACCESS_READ, &r))
		return;
	if ((ins = ds_storage(d, &e)) == NULL) {
		reply(res, e.rv, NULL, &e, 200);
		ds_row_free(&r);
		return;
	}
	if ((rv = loomi_store_begin(db, false, &e.msg)) == 0) {
		rv = ds_resolve(db, &r, req->params[1], id, &e);
		if (rv == 0)
			rv = ds_manifest_load(db, id, &m, &e);
		read_end(db);
	} else {
		e.rv = rv;
	}
	if (rv == 0 && (uint64_t)from > m.n_chunks)
		rv = dse(&e, LOOM_EINVAL, "invalid",
		         "from: version %s has %zu chunks; give 0 to %zu", id, m.n_chunks, m.n_chunks);
	if (rv == 0) {
		/* rows written as numbers take more room than their bytes */
		limit = out == DS_OUT_CSV && strcmp(m.format, "csv") != 0 ? DATA_MAX_BYTES / 4
		                                                          : DATA_MAX_BYTES;
		while ((uint64_t)from + n < m.n_chunks && (int64_t)n < count &&
		       (n == 0 || raw + m.chunks[from + n].raw <= limit)) {
			raw += m.chunks[from + n].raw;
			n++;
		}
		ds_source src = ds_source_of(ins);
		size_t len;
		/* the rows' own bytes: their length is known, so the chunks are
		 * decompressed in place into the answer (no growth, no copy), by
		 * the library's threads */
		if (ds_checkout_size(&m, out, from == 0, (size_t)from, n, &len) == 0) {
			buf.p = loomi_xmalloc(len + 1);
			buf.n = buf.cap = len;
			rv = ds_checkout_buf(&m, &src, out, from == 0, (size_t)from, n, DATA_THREADS,
			                     buf.p, len, &err);
		} else {
			rv = ds_checkout(&m, &src, out, from == 0, (size_t)from, n, mem_write, &buf,
			                 &err);
		}
		if (rv != 0)
			dse(&e, rv, rv == LOOM_ECORRUPT ? "corrupt" : NULL, "version %s of dataset %s: %s",
			    id, r.name, err ? err : loom_strerror(rv));
		free(err);
	}
	if (rv == 0) {
		char next[32];
		if ((uint64_t)from + n >= m.n_chunks)
			snprintf(next, sizeof next, "end");
		else
			snprintf(next, sizeof next, "%" PRIu64, (uint64_t)from + n);
		loomi_api_header(res, "X-Loom-Chunks-Next", next);
		res->status = 200;
		res->text = buf.p ? buf.p : loomi_strdup("");
		res->text_len = buf.n;
		res->content_type = out == DS_OUT_NATIVE && strcmp(m.format, "csv") != 0
		                        ? "application/octet-stream"
		                        : "text/csv; charset=utf-8";
		buf.p = NULL;
		{
			char *detail = loomi_strfmt("chunks %" PRId64 "..%" PRIu64 " of %zu (%s)", from,
			                            (uint64_t)from + n, m.n_chunks,
			                            out == DS_OUT_NATIVE ? "native" : "csv");
			ds_audit(db, req->caller, r.name, "checkout", id, req->params[1], (int64_t)buf.n,
			         detail);
			free(detail);
		}
		dserr_free(&e);
	} else {
		reply(res, rv, NULL, &e, 200);
	}
	free(buf.p);
	ds_manifest_free(&m);
	ds_row_free(&r);
}

static void
route_diff(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3 *db = d->store.db;
	char *from = loomi_query_get(req->query, "from"), *to = loomi_query_get(req->query, "to");
	char a_id[DS_HEX_LEN + 1], b_id[DS_HEX_LEN + 1];
	int64_t max_hunks;
	ds_manifest a, b;
	json_t *out = NULL;
	ds_row r;
	dserr e = {0};
	int rv;

	memset(&a, 0, sizeof a);
	memset(&b, 0, sizeof b);
	if (!loomi_query_int(res, req->query, "max_hunks", 100, 0, 1000000, &max_hunks))
		goto out0;
	if (from == NULL || to == NULL) {
		loomi_api_error(res, 400, "invalid",
		                "from and to: required, the two versions to compare (ids, branches or "
		                "tags)");
		goto out0;
	}
	if (!dataset_of(d, req, res, LOOMI_ACCESS_READ, &r))
		goto out0;
	if ((rv = loomi_store_begin(db, false, &e.msg)) == 0) {
		char ca[DS_HEX_LEN + 1], cb[DS_HEX_LEN + 1];
		uint64_t rows = 0, chunks = 0;
		rv = ds_resolve(db, &r, from, a_id, &e);
		if (rv == 0)
			rv = ds_resolve(db, &r, to, b_id, &e);
		/* one content id: the same rows, answered from the two rows
		 * without reading either chunk table (10^6 chunks: 48 MB each) */
		if (rv == 0 && ds_content_of(db, a_id, ca, NULL, NULL) == 0 &&
		    ds_content_of(db, b_id, cb, &rows, &chunks) == 0 && strcmp(ca, cb) == 0) {
			ds_diff df;
			ds_diff_unchanged(rows, chunks, &df);
			out = ds_diff_json(&df, (size_t)max_hunks);
			json_object_set_new(out, "from", json_string(a_id));
			json_object_set_new(out, "to", json_string(b_id));
		}
		if (rv == 0 && out == NULL)
			rv = ds_manifest_load(db, a_id, &a, &e);
		if (rv == 0 && out == NULL)
			rv = ds_manifest_load(db, b_id, &b, &e);
		read_end(db);
	} else {
		e.rv = rv;
	}
	if (rv == 0 && out == NULL) {
		ds_diff df;
		if ((rv = ds_diff_compute(&a, &b, &df)) != 0) {
			dse(&e, rv, NULL, "the versions could not be compared: %s", loom_strerror(rv));
		} else {
			out = ds_diff_json(&df, (size_t)max_hunks);
			json_object_set_new(out, "from", json_string(a_id));
			json_object_set_new(out, "to", json_string(b_id));
			ds_diff_free(&df);
		}
	}
	ds_manifest_free(&a);
	ds_manifest_free(&b);
	ds_row_free(&r);
	reply(res, rv, out, &e, 200);
out0:
	free(from);
	free(to);
}

/* ------------------------------------------------------------------ branches, tags, locks */

static void
route_branches(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	ds_row r;
	dserr e = {0};
	json_t *out;

	if (!dataset_of(d, req, res, LOOMI_ACCESS_READ, &r))
		return;
	out = ds_branches_json(d->store.db, &r, loomi_wall_ms());
	ds_row_free(&r);
	reply(res, 0, out, &e, 200);
}

static void
route_branch_create(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	static const char *const fields[] = {"name", "from", NULL};
	json_t *body = body_object(req, res, fields, false, "{\"name\": \"alice\", \"from\": \"v1\"}"),
	       *out = NULL;
	const char *name, *from;
	ds_row r;
	dserr e = {0};
	int rv;

	if (body == NULL)
		return;
	if (opt_string(body, "name", &name, res) && opt_string(body, "from", &from, res) &&
	    dataset_of(d, req, res, LOOMI_ACCESS_WRITE, &r)) {
		rv = ds_branch_create(d, req->caller, &r, name, from, &out, &e);
		reply(res, rv, out, &e, 201);
		ds_row_free(&r);
	}
	json_decref(body);
}

static void
route_branch_delete(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	ds_row r;
	dserr e = {0};
	int rv;

	if (!dataset_of(d, req, res, LOOMI_ACCESS_WRITE, &r))
		return;
	rv = ds_branch_delete(d, req->caller, &r, req->params[1], &e);
	reply(res, rv, rv ? NULL : json_pack("{sssb}", "branch", req->params[1], "deleted", 1), &e,
	      200);
	ds_row_free(&r);
}

static void
route_lock(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	static const char *const fields[] = {"ttl", NULL};
	json_t *body = body_object(req, res, fields, true, "{\"ttl\": 600}"), *v, *out = NULL;
	int64_t ttl_ms = 0;
	ds_row r;
	dserr e = {0};
	int rv;

	if (body == NULL)
		return;
	if ((v = json_object_get(body, "ttl")) != NULL) {
		if (json_is_number(v))
			ttl_ms = (int64_t)(json_number_value(v) * 1000);
		else if (!json_is_string(v) || loom_parse_duration(json_string_value(v), &ttl_ms) != 0)
			ttl_ms = -1;
		if (ttl_ms < 1000 || ttl_ms > 7 * 86400 * 1000LL) {
			loomi_api_error(res, 400, "invalid",
			                "ttl: expected how long the lock lasts, in seconds or as \"10m\", "
			                "from 1 s to 7 days");
			json_decref(body);
			return;
		}
	}
	if (dataset_of(d, req, res, LOOMI_ACCESS_WRITE, &r)) {
		rv = ds_lock(d, req->caller, &r, req->params[1], ttl_ms, &out, &e);
		reply(res, rv, out, &e, 200);
		ds_row_free(&r);
	}
	json_decref(body);
}

static void
route_unlock(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	ds_row r;
	dserr e = {0};
	int rv;

	if (!dataset_of(d, req, res, LOOMI_ACCESS_WRITE, &r))
		return;
	rv = ds_unlock(d, req->caller, &r, req->params[1], &e);
	reply(res, rv, rv ? NULL : json_pack("{sssb}", "branch", req->params[1], "unlocked", 1), &e,
	      200);
	ds_row_free(&r);
}

static void
route_tags(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	ds_row r;
	dserr e = {0};
	json_t *out;

	if (!dataset_of(d, req, res, LOOMI_ACCESS_READ, &r))
		return;
	out = ds_tags_json(d->store.db, &r);
	ds_row_free(&r);
	reply(res, 0, out, &e, 200);
}

static void
route_tag_create(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	static const char *const fields[] = {"name", "ref", NULL};
	json_t *body = body_object(req, res, fields, false, "{\"name\": \"v1\", \"ref\": \"main\"}"),
	       *out = NULL;
	const char *name, *ref;
	ds_row r;
	dserr e = {0};
	int rv;

	if (body == NULL)
		return;
	if (opt_string(body, "name", &name, res) && opt_string(body, "ref", &ref, res) &&
	    dataset_of(d, req, res, LOOMI_ACCESS_WRITE, &r)) {
		rv = ds_tag_create(d, req->caller, &r, name, ref, &out, &e);
		reply(res, rv, out, &e, 201);
		ds_row_free(&r);
	}
	json_decref(body);
}

static void
route_tag_delete(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	ds_row r;
	dserr e = {0};
	int rv;

	if (!dataset_of(d, req, res, LOOMI_ACCESS_WRITE, &r))
		return;
	rv = ds_tag_delete(d, req->caller, &r, req->params[1], &e);
	reply(res, rv, rv ? NULL : json_pack("{sssb}", "tag", req->params[1], "deleted", 1), &e, 200);
	ds_row_free(&r);
}

static void
route_merge(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	static const char *const fields[] = {"into", "from", NULL};
	json_t *body = body_object(req, res, fields, false,
	                           "{\"into\": \"main\", \"from\": \"alice\"}"),
	       *out = NULL;
	const char *into, *from;
	ds_row r;
	dserr e = {0};
	int rv;

	if (body == NULL)
		return;
	if (opt_string(body, "into", &into, res) && opt_string(body, "from", &from, res) &&
	    dataset_of(d, req, res, LOOMI_ACCESS_WRITE, &r)) {
		rv = ds_merge(d, req->caller, &r, into, from, &out, &e);
		reply(res, rv, out, &e, 200);
		ds_row_free(&r);
	}
	json_decref(body);
}

/* ------------------------------------------------------------------ audit, gc, quotas */

static void
route_audit(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3 *db = d->store.db;
	char *action = loomi_query_get(req->query, "action"), *user = loomi_query_get(req->query,
	                                                                                "user");
	json_t *list = NULL;
	int64_t limit;
	sqlite3_stmt *st;
	ds_row r;
	dserr e = {0};
	int rv = 0;

	if (!loomi_query_int(res, req->query, "limit", 100, 1, 100000, &limit) ||
	    !dataset_of(d, req, res, LOOMI_ACCESS_READ, &r))
		goto out0;
	if (strcmp(req->caller->name, r.owner) != 0 && req->caller->role != LOOMI_ROLE_ADMIN) {
		loomi_api_error(res, 403, "forbidden",
		                "the audit trail of dataset %s is for its owner (%s) and admins", r.name,
		                r.owner);
		ds_row_free(&r);
		goto out0;
	}
	list = json_array();
	st = loomi_store_prep(db, DSM,
	                      "SELECT time_ms, user, action, version, ref, bytes, detail FROM "
	                      "dataset_audit WHERE dataset = ?1 AND (?2 IS NULL OR action = ?2) AND "
	                      "(?3 IS NULL OR user = ?3) ORDER BY id DESC LIMIT ?4");
	sqlite3_bind_text(st, 1, r.name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, action, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, user, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, limit);
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		json_t *o = json_pack("{soss?ssss?ss?}", "time", ds_iso(sqlite3_column_int64(st, 0)),
		                      "user", sqlite3_column_text(st, 1), "action",
		                      sqlite3_column_text(st, 2), "version", sqlite3_column_text(st, 3),
		                      "ref", sqlite3_column_text(st, 4));
		json_object_set_new(o, "bytes", sqlite3_column_type(st, 5) == SQLITE_NULL
		                                    ? json_null()
		                                    : json_integer(sqlite3_column_int64(st, 5)));
		json_object_set_new(o, "detail", sqlite3_column_type(st, 6) == SQLITE_NULL
		                                     ? json_null()
		                                     : json_string((const char *)
		                                                       sqlite3_column_text(st, 6)));
		json_array_append_new(list, o);
	}
	if (st == NULL)
		rv = dse(&e, LOOM_EIO, "unavailable", "the audit trail could not be read");
	sqlite3_finalize(st);
	ds_row_free(&r);
	reply(res, rv, list, &e, 200);
out0:
	free(action);
	free(user);
}

static void
route_gc(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	static const char *const fields[] = {"grace_s", NULL};
	json_t *body = body_object(req, res, fields, true, "{\"grace_s\": 3600}"), *v, *out = NULL;
	int64_t grace = 3600;
	dserr e = {0};
	int rv;

	if (body == NULL)
		return;
	if ((v = json_object_get(body, "grace_s")) != NULL) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > 365LL * 86400) {
			loomi_api_error(res, 400, "invalid",
			                "grace_s: expected the seconds an unreferenced chunk is kept "
			                "(0 to a year)");
			json_decref(body);
			return;
		}
		grace = json_integer_value(v);
	}
	json_decref(body);
	rv = ds_gc(d, req->caller, grace, &out, &e);
	reply(res, rv, out, &e, 200);
}

static bool
quota_user(const loomi_http_req *req, loomi_http_res *res)
{
	if (!loomi_user_name_ok(req->params[0])) {
		loomi_api_error(res, 400, "invalid", "user: \"%s\" is not a user name",
		                req->params[0]);
		return false;
	}
	return true;
}

static void
route_quota_get(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *out = NULL;
	dserr e = {0};
	int rv;

	if (!quota_user(req, res))
		return;
	if (strcmp(req->caller->name, req->params[0]) != 0 && req->caller->role != LOOMI_ROLE_ADMIN) {
		loomi_api_error(res, 403, "forbidden",
		                "the quota of %s is for them and admins to read; yours is at "
		                "/api/v1/datasets/quotas/%s",
		                req->params[0], req->caller->name);
		return;
	}
	rv = ds_quota_get(d, req->params[0], &out, &e);
	reply(res, rv, out, &e, 200);
}

static void
route_quota_set(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	static const char *const fields[] = {"max_bytes", NULL};
	json_t *body = body_object(req, res, fields, false, "{\"max_bytes\": \"10G\"}"), *v,
	       *out = NULL;
	int64_t max = -2;
	uint64_t size;
	dserr e = {0};
	int rv;

	if (body == NULL)
		return;
	if (!quota_user(req, res)) {
		json_decref(body);
		return;
	}
	v = json_object_get(body, "max_bytes");
	if (json_is_null(v))
		max = -1;
	else if (json_is_integer(v) && json_integer_value(v) >= 0)
		max = json_integer_value(v);
	else if (json_is_string(v) && loom_parse_size(json_string_value(v), &size) == 0 &&
	         size <= (uint64_t)INT64_MAX)
		max = (int64_t)size;
	json_decref(body);
	if (max == -2) {
		loomi_api_error(res, 400, "invalid",
		                "max_bytes: required, the stored bytes the user may hold: an integer, "
		                "a size such as \"10G\", 0 for no limit, or null for the default");
		return;
	}
	rv = ds_quota_set(d, req->caller, req->params[0], max, &out, &e);
	reply(res, rv, out, &e, 200);
}

/* ------------------------------------------------------------------ the module */

static const loomi_migration migrations[] = {
	{23, "versioned datasets: versions, refs, locks, chunks, quotas and audit",
	 ds_migration_sql},
};

static int
init(loomi_daemon *d, char **err)
{
	return ds_module_init(d, err);
}

static int
start(loomi_daemon *d, char **err)
{
	return ds_module_start(d, err);
}

static void
stop(loomi_daemon *d)
{
	ds_module_stop(d);
}

#define DS "/api/v1/datasets"

/* gc and quotas before the {name} routes (a dataset may not be called
 * either) */
static const loomi_route routes[] = {
	{"POST", DS "/gc", route_gc, LOOMI_ACCESS_ADMIN, NULL},
	{"GET", DS "/quotas/{user}", route_quota_get, LOOMI_ACCESS_READ, NULL},
	{"PUT", DS "/quotas/{user}", route_quota_set, LOOMI_ACCESS_ADMIN, NULL},
	{"GET", DS, route_list, LOOMI_ACCESS_READ, NULL},
	{"POST", DS, route_create, LOOMI_ACCESS_WRITE, NULL},
	{"GET", DS "/{name}", route_show, LOOMI_ACCESS_READ, NULL},
	{"DELETE", DS "/{name}", route_delete, LOOMI_ACCESS_WRITE, NULL},
	{"POST", DS "/{name}/uploads", route_upload_begin, LOOMI_ACCESS_WRITE, NULL},
	{"PUT", DS "/{name}/uploads/{id}/parts/{n}", route_upload_part, LOOMI_ACCESS_WRITE, NULL,
	 .octet_stream = true},
	{"POST", DS "/{name}/uploads/{id}/commit", route_upload_commit, LOOMI_ACCESS_WRITE, NULL},
	{"DELETE", DS "/{name}/uploads/{id}", route_upload_abort, LOOMI_ACCESS_WRITE, NULL},
	{"GET", DS "/{name}/versions", route_versions, LOOMI_ACCESS_READ, "ref,limit"},
	{"GET", DS "/{name}/versions/{ref}", route_version, LOOMI_ACCESS_READ, NULL},
	{"GET", DS "/{name}/versions/{ref}/data", route_data, LOOMI_ACCESS_READ,
	 "from,count,format"},
	{"GET", DS "/{name}/diff", route_diff, LOOMI_ACCESS_READ, "from,to,max_hunks"},
	{"GET", DS "/{name}/branches", route_branches, LOOMI_ACCESS_READ, NULL},
	{"POST", DS "/{name}/branches", route_branch_create, LOOMI_ACCESS_WRITE, NULL},
	{"DELETE", DS "/{name}/branches/{branch}", route_branch_delete, LOOMI_ACCESS_WRITE, NULL},
	{"POST", DS "/{name}/branches/{branch}/lock", route_lock, LOOMI_ACCESS_WRITE, NULL},
	{"DELETE", DS "/{name}/branches/{branch}/lock", route_unlock, LOOMI_ACCESS_WRITE, NULL},
	{"GET", DS "/{name}/tags", route_tags, LOOMI_ACCESS_READ, NULL},
	{"POST", DS "/{name}/tags", route_tag_create, LOOMI_ACCESS_WRITE, NULL},
	{"DELETE", DS "/{name}/tags/{tag}", route_tag_delete, LOOMI_ACCESS_WRITE, NULL},
	{"POST", DS "/{name}/merge", route_merge, LOOMI_ACCESS_WRITE, NULL},
	{"GET", DS "/{name}/audit", route_audit, LOOMI_ACCESS_READ, "limit,action,user"},
};

const loomi_module loomi_datasets_module = {
	.name = "datasets",
	.migrations = migrations,
	.n_migrations = LOOMI_N(migrations),
	.init = init,
	.start = start,
	.stop = stop,
	.routes = routes,
	.n_routes = LOOMI_N(routes),
};

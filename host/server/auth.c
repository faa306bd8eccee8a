/* Users, roles, API tokens and shares, and the pipeline's authentication
 * and authorization steps (auth.h says who may do what).
 *
 * A token is "loom_" + 43 base62 characters of 32 random bytes from the
 * OS + 6 base62 characters of a CRC-32 of what precedes them, so a
 * mistyped or truncated token is told apart from a wrong one without a
 * database lookup, and a leaked one is recognisable by scanners.  Only its
 * SHA-256 is stored; a lookup finds the row by that hash and compares it
 * again in constant time.  Verified tokens are cached in memory (by hash)
 * until any user, token or share changes, so a request pays one SHA-256
 * and a cache probe; last_used is written at most once a minute per token,
 * or at once when the token comes from a new address (an audit line). */
#include "config.h"

#include <ctype.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pthread.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "host/core/log.h"
#include "host/core/util.h"
#include "auth.h"
#include "module.h"

#define TOKEN_PREFIX "loom_"
#define TOKEN_BODY 43           /* base62 digits of 32 random bytes */
#define TOKEN_CHECK 6           /* base62 digits of a CRC-32 */
#define TOKEN_LEN (5 + TOKEN_BODY + TOKEN_CHECK)
#define LAST_USED_EVERY_MS 60000
#define CACHE_SLOTS 64
#define COOKIE "loom_token"

static const loomi_migration migrations[] = {
	{16, "users, API tokens and shares",
	 "CREATE TABLE users (\n"
	 "  id         INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	 "  name       TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 32),\n"
	 "  role       TEXT NOT NULL CHECK (role IN ('admin','user','viewer')),\n"
	 "  uid        INTEGER UNIQUE,\n" /* a Unix uid the socket maps to this user */
	 "  exec       INTEGER NOT NULL DEFAULT 0 CHECK (exec IN (0, 1)),\n"
	 "  disabled   INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),\n"
	 "  created_at INTEGER NOT NULL,\n"
	 "  updated_at INTEGER NOT NULL\n"
	 ");\n"
	 "CREATE TABLE tokens (\n"
	 "  id           INTEGER PRIMARY KEY AUTOINCREMENT,\n"
	 "  user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,\n"
	 "  name         TEXT NOT NULL DEFAULT '',\n"
	 "  hash         BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),\n"
	 "  hint         TEXT NOT NULL,\n"   /* "loom_AbCd…": enough to tell them apart */
	 "  created_at   INTEGER NOT NULL,\n"
	 "  expires_at   INTEGER,\n"
	 "  last_used_at INTEGER,\n"
	 "  last_addr    TEXT,\n"
	 "  revoked_at   INTEGER\n"
	 ");\n"
	 "CREATE INDEX tokens_by_user ON tokens (user_id, id);\n"
	 /* grantee: a user name, or '*' for every signed-in user */
	 "CREATE TABLE shares (\n"
	 "  kind       TEXT NOT NULL,\n"
	 "  object     TEXT NOT NULL,\n"
	 "  grantee    TEXT NOT NULL,\n"
	 "  level      TEXT NOT NULL CHECK (level IN ('read','write')),\n"
	 "  granted_by TEXT NOT NULL,\n"
	 "  created_at INTEGER NOT NULL,\n"
	 "  PRIMARY KEY (kind, object, grantee)\n"
	 ") WITHOUT ROWID;\n"
	 "CREATE INDEX shares_by_grantee ON shares (grantee, kind);\n"},
};

const loomi_caller loomi_caller_loomd = {
	.user_id = 0, .name = "loomd", .role = LOOMI_ROLE_ADMIN, .exec = true, .via = "loomd"};

/* One operation on the tables at a time. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* Verified tokens by hash; emptied whenever a user, token or share
 * changes. */
typedef struct cached {
	bool used;
	uint8_t hash[32];
	loomi_caller caller;
	int64_t expires_at;        /* 0: never */
	int64_t last_used_at;      /* as stored */
	char last_addr[64];
} cached;

static struct {
	pthread_mutex_t mtx;
	cached slot[CACHE_SLOTS];
	unsigned next;
} cache = {.mtx = PTHREAD_MUTEX_INITIALIZER};

/* Object kinds and how to find an object's owner. */
static struct {
	const char *kind;
	loomi_owner_fn owner;
} kinds[16];
static size_t n_kinds;

/* Who everyone is with auth = "none": the first admin. */
static char none_user[LOOMI_USER_NAME_MAX + 1] = "local";

/* ------------------------------------------------------------------ names */

const char *
loomi_role_name(int role)
{
	switch (role) {
	case LOOMI_ROLE_ADMIN: return "admin";
	case LOOMI_ROLE_USER: return "user";
	case LOOMI_ROLE_VIEWER: return "viewer";
	default: return "none";
	}
}

int
loomi_role_parse(const char *name)
{
	if (name == NULL)
		return 0;
	if (strcmp(name, "admin") == 0)
		return LOOMI_ROLE_ADMIN;
	if (strcmp(name, "user") == 0)
		return LOOMI_ROLE_USER;
	if (strcmp(name, "viewer") == 0)
		return LOOMI_ROLE_VIEWER;
	return 0;
}

bool
loomi_user_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > LOOMI_USER_NAME_MAX ||
	    !(islower((unsigned char)name[0]) || name[0] == '_'))
		return false;
	for (const char *p = name; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (!(islower(c) || isdigit(c) || c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

void
loomi_audit(const loomi_caller *c, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = loomi_vstrfmt(fmt, ap);
	va_end(ap);
	loomi_log(LOOM_LOG_INFO, "audit", "%s: %s", c && c->name[0] ? c->name : "-", msg);
	free(msg);
}

/* ------------------------------------------------------------------ tokens */

static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* n bytes as exactly digits base62 digits (big-endian, zero-padded). */
static void
base62(const uint8_t *in, size_t n, char *out, size_t digits)
{
	uint8_t num[64];

	memcpy(num, in, n);
	for (size_t d = digits; d-- > 0;) {
		unsigned rem = 0;
		for (size_t i = 0; i < n; i++) {
			unsigned v = rem * 256 + num[i];
			num[i] = (uint8_t)(v / 62);
			rem = v % 62;
		}
		out[d] = b62[rem];
	}
}

static uint32_t
crc32(const char *s, size_t n)
{
	uint32_t c = 0xffffffffu;

	for (size_t i = 0; i < n; i++) {
		c ^= (uint8_t)s[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
	}
	return ~c;
}

static void
checksum(const char *token, char out[TOKEN_CHECK])
{
	uint32_t c = crc32(token, 5 + TOKEN_BODY);
	uint8_t be[4] = {(uint8_t)(c >> 24), (uint8_t)(c >> 16), (uint8_t)(c >> 8), (uint8_t)c};
	base62(be, 4, out, TOKEN_CHECK);
}

/* Why token is not a well-formed Loom token, or NULL. */
static const char *
token_malformed(const char *token)
{
	char sum[TOKEN_CHECK];

	if (strncmp(token, TOKEN_PREFIX, 5) != 0)
		return "it is not a Loom API token (those begin with \"loom_\"); create one with "
		       "`loomctl tokens create`";
	if (strlen(token) != TOKEN_LEN || strspn(token + 5, b62) != TOKEN_BODY + TOKEN_CHECK)
		return "it is not a whole Loom API token (54 characters: \"loom_\" and 49 letters "
		       "and digits); was it cut short or mistyped?";
	checksum(token, sum);
	if (memcmp(sum, token + 5 + TOKEN_BODY, TOKEN_CHECK) != 0)
		return "its checksum does not match: it was mistyped or altered";
	return NULL;
}

static void
sha256(const char *s, size_t n, uint8_t out[32])
{
	unsigned len = 32;
	EVP_Digest(s, n, out, &len, EVP_sha256(), NULL);
}

/* A new token (TOKEN_LEN + 1 bytes), from the OS's random bytes; false
 * when the OS gave none. */
static bool
token_new(char out[TOKEN_LEN + 1])
{
	uint8_t raw[32];
	size_t got = 0;

	while (got < sizeof raw) {
		ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
		if (n <= 0)
			return false;
		got += (size_t)n;
	}
	memcpy(out, TOKEN_PREFIX, 5);
	base62(raw, sizeof raw, out + 5, TOKEN_BODY);
	checksum(out, out + 5 + TOKEN_BODY);
	out[TOKEN_LEN] = '\0';
	OPENSSL_cleanse(raw, sizeof raw);
	return true;
}

static void
cache_clear(void)
{
	pthread_mutex_lock(&cache.mtx);
	memset(cache.slot, 0, sizeof cache.slot);
	pthread_mutex_unlock(&cache.mtx);
}

/* ------------------------------------------------------------------ store */

static sqlite3_stmt *
prep(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		LOG_ERROR("auth: cannot prepare \"%s\": %s", sql, sqlite3_errmsg(db));
		sqlite3_finalize(st);
		return NULL;
	}
	return st;
}

static void
caller_from_row(sqlite3_stmt *st, int col, loomi_caller *c)
{
	/* id, name, role, exec */
	c->user_id = sqlite3_column_int64(st, col);
	snprintf(c->name, sizeof c->name, "%s", (const char *)sqlite3_column_text(st, col + 1));
	c->role = loomi_role_parse((const char *)sqlite3_column_text(st, col + 2));
	c->exec = sqlite3_column_int(st, col + 3) != 0;
}

bool
loomi_auth_user(loomi_daemon *d, const char *name, loomi_caller *out)
{
	sqlite3_stmt *st;
	bool found = false;

	pthread_mutex_lock(&lock);
	st = prep(d->store.db, "SELECT id, name, role, exec FROM users WHERE name = ? AND NOT disabled");
	if (st) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW) {
			memset(out, 0, sizeof *out);
			caller_from_row(st, 0, out);
			out->via = "name";
			found = true;
		}
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&lock);
	return found;
}

/* The client's address without its port ("127.0.0.1", "[::1]"). */
static void
client_addr(const char *peer, char *out, size_t size)
{
	char *colon;

	snprintf(out, size, "%s", peer ? peer : "");
	if (out[0] == '[') {
		if ((colon = strstr(out, "]:")) != NULL)
			colon[1] = '\0';
	} else if ((colon = strrchr(out, ':')) != NULL && strchr(out, ':') == colon) {
		*colon = '\0';
	}
}

/* Record that token id was used from addr (at most once a minute, or at
 * once from a new address). */
static void
token_used(loomi_daemon *d, const loomi_caller *c, int64_t id, const char *addr,
           int64_t last_used_at, const char *last_addr)
{
	int64_t now = loomi_wall_ms();
	bool new_addr = last_addr == NULL || strcmp(last_addr, addr) != 0;
	sqlite3_stmt *st;

	if (!new_addr && now - last_used_at < LAST_USED_EVERY_MS)
		return;
	if (new_addr && last_addr)
		loomi_audit(c, "token %lld used from a new address, %s (before: %s)", (long long)id,
		            addr, last_addr);
	else if (new_addr)
		loomi_audit(c, "token %lld used for the first time, from %s", (long long)id, addr);
	pthread_mutex_lock(&lock);
	st = prep(d->store.db, "UPDATE tokens SET last_used_at = ?, last_addr = ? WHERE id = ?");
	if (st) {
		sqlite3_bind_int64(st, 1, now);
		sqlite3_bind_text(st, 2, addr, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, id);
		if (sqlite3_step(st) != SQLITE_DONE)
			loomi_log_limited(LOOM_LOG_WARN, NULL, "auth: cannot note a token's use: %s",
			                  sqlite3_errmsg(d->store.db));
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&lock);

	/* the cache keeps what is stored now */
	pthread_mutex_lock(&cache.mtx);
	for (size_t i = 0; i < CACHE_SLOTS; i++) {
		if (cache.slot[i].used && cache.slot[i].caller.token_id == id) {
			cache.slot[i].last_used_at = now;
			snprintf(cache.slot[i].last_addr, sizeof cache.slot[i].last_addr, "%s", addr);
		}
	}
	pthread_mutex_unlock(&cache.mtx);
}

/* The caller a token stands for: 0, or 401's message in *why. */
static int
token_caller(loomi_daemon *d, const char *token, const char *peer, loomi_caller *out,
             char **why)
{
	const char *bad = token_malformed(token);
	uint8_t hash[32];
	char addr[64], last_addr[64] = "";
	int64_t now = loomi_wall_ms(), expires = 0, last_used = 0, revoked = 0;
	bool found = false, disabled = false, have_addr = false;
	sqlite3_stmt *st;

	if (bad) {
		*why = loomi_strfmt("the API token was refused: %s", bad);
		return LOOM_EINVAL;
	}
	sha256(token, TOKEN_LEN, hash);
	client_addr(peer, addr, sizeof addr);

	pthread_mutex_lock(&cache.mtx);
	for (size_t i = 0; i < CACHE_SLOTS; i++) {
		cached *e = &cache.slot[i];
		if (e->used && CRYPTO_memcmp(e->hash, hash, 32) == 0) {
			*out = e->caller;
			expires = e->expires_at;
			last_used = e->last_used_at;
			snprintf(last_addr, sizeof last_addr, "%s", e->last_addr);
			have_addr = e->last_addr[0] != '\0';
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&cache.mtx);

	if (!found) {
		pthread_mutex_lock(&lock);
		st = prep(d->store.db,
		          "SELECT u.id, u.name, u.role, u.exec, t.id, t.hash, t.expires_at,"
		          " t.revoked_at, t.last_used_at, t.last_addr, u.disabled"
		          " FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?");
		if (st) {
			sqlite3_bind_blob(st, 1, hash, 32, SQLITE_STATIC);
			if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 5) == 32 &&
			    CRYPTO_memcmp(sqlite3_column_blob(st, 5), hash, 32) == 0) {
				memset(out, 0, sizeof *out);
				caller_from_row(st, 0, out);
				out->token_id = sqlite3_column_int64(st, 4);
				expires = sqlite3_column_int64(st, 6);
				revoked = sqlite3_column_int64(st, 7);
				last_used = sqlite3_column_int64(st, 8);
				if ((have_addr = sqlite3_column_type(st, 9) != SQLITE_NULL))
					snprintf(last_addr, sizeof last_addr, "%s",
					         (const char *)sqlite3_column_text(st, 9));
				disabled = sqlite3_column_int(st, 10) != 0;
				found = true;
			}
		}
		sqlite3_finalize(st);
		pthread_mutex_unlock(&lock);
		if (!found) {
			*why = loomi_strdup("the API token was refused: no such token (revoked tokens "
			                    "are kept; this one was never issued here); create one with "
			                    "`loomctl tokens create`");
			return LOOM_ENOENT;
		}
		if (revoked) {
			char *at = loomi_iso_time(revoked);
			*why = loomi_strfmt("the API token was refused: token %lld was revoked at %s",
			                    (long long)out->token_id, at);
			free(at);
			return LOOM_EINVAL;
		}
		if (disabled) {
			*why = loomi_strfmt("the API token was refused: user %s is disabled", out->name);
			return LOOM_EINVAL;
		}
		/* keep it for the next request */
		pthread_mutex_lock(&cache.mtx);
		{
			cached *e = &cache.slot[cache.next++ % CACHE_SLOTS];
			memset(e, 0, sizeof *e);
			e->used = true;
			memcpy(e->hash, hash, 32);
			e->caller = *out;
			e->expires_at = expires;
			e->last_used_at = last_used;
			snprintf(e->last_addr, sizeof e->last_addr, "%s", last_addr);
		}
		pthread_mutex_unlock(&cache.mtx);
	}
	if (expires != 0 && now >= expires) {
		char *at = loomi_iso_time(expires);
		*why = loomi_strfmt("the API token was refused: token %lld expired at %s; create a "
		                    "new one with `loomctl tokens create`",
		                    (long long)out->token_id, at);
		free(at);
		return LOOM_EINVAL;
	}
	token_used(d, out, out->token_id, addr, last_used, have_addr ? last_addr : NULL);
	return 0;
}

/* The user a Unix-socket peer's uid maps to: 0, or 401's message. */
static int
uid_caller(loomi_daemon *d, int64_t uid, loomi_caller *out, char **why)
{
	sqlite3_stmt *st;
	int rv = LOOM_ENOENT;

	pthread_mutex_lock(&lock);
	st = prep(d->store.db, "SELECT id, name, role, exec, disabled FROM users WHERE uid = ?");
	if (st) {
		sqlite3_bind_int64(st, 1, uid);
		if (sqlite3_step(st) == SQLITE_ROW) {
			memset(out, 0, sizeof *out);
			caller_from_row(st, 0, out);
			rv = sqlite3_column_int(st, 4) ? LOOM_EINVAL : 0;
		}
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&lock);
	if (rv == LOOM_ENOENT)
		*why = loomi_strfmt("uid %lld has no Loom user; an admin can add one with `loomctl "
		                    "users add NAME --uid %lld`, or send an API token",
		                    (long long)uid, (long long)uid);
	else if (rv != 0)
		*why = loomi_strfmt("user %s (uid %lld) is disabled", out->name, (long long)uid);
	return rv;
}

/* The value of cookie name in a Cookie header, copied into out; false
 * when absent. */
static bool
cookie_get(const char *header, const char *name, char *out, size_t size)
{
	size_t n = strlen(name);

	for (const char *p = header; p && *p;) {
		while (*p == ' ' || *p == ';')
			p++;
		if (strncmp(p, name, n) == 0 && p[n] == '=') {
			size_t len = strcspn(p + n + 1, ";");
			if (len >= size)
				return false;
			memcpy(out, p + n + 1, len);
			out[len] = '\0';
			while (len > 0 && out[len - 1] == ' ')
				out[--len] = '\0';
			return true;
		}
		p = strchr(p, ';');
	}
	return false;
}

static void
unauthorized(loomi_http_res *res, const char *msg)
{
	loomi_api_error(res, 401, "unauthorized", "%s", msg);
	loomi_api_header(res, "WWW-Authenticate", "Bearer realm=\"loom\"");
}

/* Who sent req: 1 when found (*out set), 0 when no credential came, -1
 * after a bad one (*why set). */
static int
authenticate(loomi_daemon *d, const loomi_http_req *req, loomi_caller *out, char **why)
{
	char token[TOKEN_LEN + 2];

	memset(out, 0, sizeof *out);
	if (req->authorization != NULL) {
		const char *a = req->authorization;
		if (strncasecmp(a, "Bearer ", 7) != 0) {
			*why = loomi_strdup("the Authorization header is not understood: send "
			                    "\"Authorization: Bearer loom_…\" with an API token");
			return -1;
		}
		a += 7;
		while (*a == ' ')
			a++;
		if (token_caller(d, a, req->peer, out, why) != 0)
			return -1;
		out->via = "token";
		return 1;
	}
	if (req->cookie && cookie_get(req->cookie, COOKIE, token, sizeof token)) {
		if (token_caller(d, token, req->peer, out, why) != 0)
			return -1;
		out->via = "cookie";
		return 1;
	}
	if (req->unix_peer && req->peer_uid >= 0) {
		if (uid_caller(d, req->peer_uid, out, why) != 0)
			return -1;
		out->via = "socket";
		return 1;
	}
	if (d->conf.auth_none) {
		*out = loomi_caller_loomd;
		snprintf(out->name, sizeof out->name, "%s", none_user);
		out->via = "none";
		return 1;
	}
	return 0;
}

bool
loomi_auth_check(loomi_daemon *d, const loomi_http_req *req, int access, loomi_caller *out,
                 loomi_http_res *res)
{
	char *why = NULL;
	int found;

	if (req->caller != NULL) {
		*out = *req->caller;
		found = 1;
	} else {
		found = authenticate(d, req, out, &why);
	}
	if (access == LOOMI_ACCESS_PUBLIC) {
		if (found != 1) {
			memset(out, 0, sizeof *out);
			out->via = "anonymous";
		}
		free(why);
		return true;
	}
	if (found != 1) {
		if (found == 0)
			why = loomi_strdup("sign in: send \"Authorization: Bearer loom_…\" with an API "
			                   "token (`loomctl tokens create` makes one), or use loomd's Unix "
			                   "socket");
		/* written once a minute at most: anyone can knock */
		loomi_log_limited(LOOM_LOG_INFO, "audit", "-: refused %s %s from %s: %s", req->method,
		                  req->path, req->peer ? req->peer : "in-process",
		                  found == 0 ? "no credential" : why);
		unauthorized(res, why);
		free(why);
		return false;
	}
	if ((access == LOOMI_ACCESS_WRITE && out->role < LOOMI_ROLE_USER) ||
	    (access == LOOMI_ACCESS_ADMIN && out->role < LOOMI_ROLE_ADMIN) ||
	    out->role < LOOMI_ROLE_VIEWER) {
		loomi_audit(out, "refused %s %s: the role %s may not", req->method, req->path,
		            loomi_role_name(out->role));
		loomi_api_error(res, 403, "forbidden",
		                access == LOOMI_ACCESS_ADMIN
		                    ? "%s %s needs an admin; %s is a %s"
		                    : "%s %s changes something, and %s is a %s, who may only read; an "
		                      "admin can change that with `loomctl users set-role`",
		                req->method, req->path, out->name, loomi_role_name(out->role));
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------ objects */

void
loomi_auth_register_kind(const char *kind, loomi_owner_fn owner)
{
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < n_kinds; i++) {
		if (strcmp(kinds[i].kind, kind) == 0) {
			kinds[i].owner = owner;
			pthread_mutex_unlock(&lock);
			return;
		}
	}
	if (n_kinds < LOOMI_N(kinds)) {
		kinds[n_kinds].kind = kind;
		kinds[n_kinds++].owner = owner;
	}
	pthread_mutex_unlock(&lock);
}

static loomi_owner_fn
kind_owner(const char *kind)
{
	loomi_owner_fn fn = NULL;

	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < n_kinds; i++)
		if (strcmp(kinds[i].kind, kind) == 0)
			fn = kinds[i].owner;
	pthread_mutex_unlock(&lock);
	return fn;
}

/* The share level the caller has on an object: 0 none, 1 read, 2 write. */
static int
share_level(loomi_daemon *d, const loomi_caller *c, const char *kind, const char *id)
{
	sqlite3_stmt *st;
	int level = 0;

	pthread_mutex_lock(&lock);
	st = prep(d->store.db, "SELECT level FROM shares WHERE kind = ? AND object = ? AND"
	                       " grantee IN (?, '*')");
	if (st) {
		sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, c->name, -1, SQLITE_STATIC);
		while (sqlite3_step(st) == SQLITE_ROW) {
			int l = strcmp((const char *)sqlite3_column_text(st, 0), "write") == 0 ? 2 : 1;
			if (l > level)
				level = l;
		}
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&lock);
	return level;
}

/* 0 allowed, 404 not visible, 403 visible but not changeable. */
static int
object_access(loomi_daemon *d, const loomi_caller *c, const char *kind, const char *id,
              const char *owner, int access)
{
	int level;

	if (c->role == LOOMI_ROLE_ADMIN)
		return 0;
	if (owner && strcmp(owner, c->name) == 0 && c->name[0])
		return access <= LOOMI_ACCESS_READ || c->role >= LOOMI_ROLE_USER ? 0 : 403;
	level = share_level(d, c, kind, id);
	if (level == 0)
		return 404;
	if (access <= LOOMI_ACCESS_READ)
		return 0;
	return level >= 2 && c->role >= LOOMI_ROLE_USER && access == LOOMI_ACCESS_WRITE ? 0 : 403;
}

bool
loomi_auth_may(loomi_daemon *d, const loomi_caller *c, const char *kind, const char *id,
               const char *owner, int access)
{
	return object_access(d, c, kind, id, owner, access) == 0;
}

int
loomi_auth_object(loomi_daemon *d, const loomi_caller *c, const char *kind, const char *id,
                  const char *owner, int access, const char *what, loomi_http_res *res)
{
	int rv = object_access(d, c, kind, id, owner, access);

	if (rv == 404)
		loomi_api_error(res, 404, "not_found", "there is no %s", what);
	else if (rv == 403) {
		loomi_audit(c, "refused a change of %s (owned by %s)", what, owner ? owner : "-");
		loomi_api_error(res, 403, "forbidden",
		                "%s belongs to %s and is shared with %s for reading only; its owner "
		                "or an admin can share it for writing",
		                what, owner ? owner : "someone else", c->name);
	}
	return rv;
}

char *
loomi_auth_visible_sql(const char *kind, const char *id_sql, const char *owner_sql)
{
	return loomi_strfmt("(?902 OR %s = ?901 OR EXISTS (SELECT 1 FROM shares"
	                    " WHERE shares.kind = '%s' AND shares.object = CAST(%s AS TEXT) AND"
	                    " shares.grantee IN (?901, '*')))",
	                    owner_sql, kind, id_sql);
}

void
loomi_auth_bind(sqlite3_stmt *st, const loomi_caller *c)
{
	if (sqlite3_bind_parameter_count(st) >= 902) {
		sqlite3_bind_text(st, 901, c->name, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, 902, c->role == LOOMI_ROLE_ADMIN);
	}
}

/* ------------------------------------------------------------------ JSON */

static json_t *
time_or_null(sqlite3_stmt *st, int col)
{
	char *t;
	json_t *v;

	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return json_null();
	t = loomi_iso_time(sqlite3_column_int64(st, col));
	v = json_string(t);
	free(t);
	return v;
}

#define USER_COLS "name, role, uid, exec, disabled, created_at, updated_at"

static json_t *
user_json(sqlite3_stmt *st)
{
	json_t *o = json_pack("{s:s, s:s}", "name", (const char *)sqlite3_column_text(st, 0),
	                      "role", (const char *)sqlite3_column_text(st, 1));
	json_object_set_new(o, "uid", sqlite3_column_type(st, 2) == SQLITE_NULL
	                                  ? json_null()
	                                  : json_integer(sqlite3_column_int64(st, 2)));
	json_object_set_new(o, "exec", json_boolean(sqlite3_column_int(st, 3)));
	json_object_set_new(o, "disabled", json_boolean(sqlite3_column_int(st, 4)));
	json_object_set_new(o, "created_at", time_or_null(st, 5));
	json_object_set_new(o, "updated_at", time_or_null(st, 6));
	return o;
}

#define TOKEN_COLS                                                                        \
	"t.id, u.name, t.name, t.hint, t.created_at, t.expires_at, t.last_used_at,"       \
	" t.last_addr, t.revoked_at"

static json_t *
token_json(sqlite3_stmt *st)
{
	int64_t now = loomi_wall_ms();
	const char *state = "active";
	json_t *o;

	if (sqlite3_column_type(st, 8) != SQLITE_NULL)
		state = "revoked";
	else if (sqlite3_column_type(st, 5) != SQLITE_NULL && sqlite3_column_int64(st, 5) <= now)
		state = "expired";
	o = json_pack("{s:I, s:s, s:s, s:s, s:s}", "id", (json_int_t)sqlite3_column_int64(st, 0),
	              "user", (const char *)sqlite3_column_text(st, 1), "name",
	              (const char *)sqlite3_column_text(st, 2), "hint",
	              (const char *)sqlite3_column_text(st, 3), "state", state);
	json_object_set_new(o, "created_at", time_or_null(st, 4));
	json_object_set_new(o, "expires_at", time_or_null(st, 5));
	json_object_set_new(o, "last_used_at", time_or_null(st, 6));
	json_object_set_new(o, "last_addr", sqlite3_column_type(st, 7) == SQLITE_NULL
	                                        ? json_null()
	                                        : json_string((const char *)sqlite3_column_text(st, 7)));
	json_object_set_new(o, "revoked_at", time_or_null(st, 8));
	return o;
}

static json_t *
caller_json(const loomi_caller *c)
{
	json_t *o = json_pack("{s:s, s:s, s:b, s:s}", "user", c->name, "role",
	                      loomi_role_name(c->role), "exec", c->exec, "via", c->via ? c->via : "");
	if (c->token_id)
		json_object_set_new(o, "token", json_integer(c->token_id));
	return o;
}

/* A failed statement: 503 when the store cannot take a change (store.h),
 * else 500 naming what failed. */
static void
db_error(loomi_daemon *d, loomi_http_res *res, const char *what)
{
	int rc = sqlite3_extended_errcode(d->store.db);

	if (loomi_store_wrote(d->store.db, rc) == LOOM_EIO && rc != SQLITE_ERROR &&
	    (rc & 0xff) != SQLITE_BUSY) {
		char *m = loomi_store_errmsg("the change");
		loomi_api_error(res, 503, "unavailable", "%s", m);
		free(m);
		return;
	}
	LOG_ERROR("auth: %s: %s", what, sqlite3_errmsg(d->store.db));
	loomi_api_error(res, 500, "internal", "the state database failed to %s; see loomd's log",
	                what);
}

/* End a route's write transaction: rv as it was, or LOOM_EIO after a 503
 * when the commit failed (the change was not stored). */
static int
tx_end(loomi_daemon *d, int rv, char **err, loomi_http_res *res)
{
	if (loomi_store_end(d->store.db, rv, err) != 0 && rv == 0) {
		loomi_api_error(res, 503, "unavailable", "%s", *err);
		return LOOM_EIO;
	}
	return rv;
}

/* ------------------------------------------------------------------ session */

static void
get_session(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	(void)d;
	res->status = 200;
	res->body = caller_json(req->caller);
}

static void
post_session(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *body = loomi_api_json_body(req, res), *t;
	loomi_caller c;
	char *why = NULL;

	if (body == NULL)
		return;
	t = json_object_get(body, "token");
	if (!json_is_string(t)) {
		loomi_api_error(res, 400, "invalid", "give {\"token\": \"loom_…\"}, an API token "
		                "(`loomctl tokens create` makes one)");
		json_decref(body);
		return;
	}
	if (token_caller(d, json_string_value(t), req->peer, &c, &why) != 0) {
		loomi_audit(NULL, "refused a sign-in from %s: %s", req->peer ? req->peer : "-", why);
		unauthorized(res, why);
		free(why);
		json_decref(body);
		return;
	}
	c.via = "cookie";
	loomi_audit(&c, "signed in to the web UI with token %lld from %s", (long long)c.token_id,
	            req->peer ? req->peer : "-");
	loomi_api_header_take(res, "Set-Cookie",
	                      loomi_strfmt(COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict%s",
	                                   json_string_value(t), req->tls ? "; Secure" : ""));
	res->status = 200;
	res->body = caller_json(&c);
	json_decref(body);
}

static void
delete_session(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	(void)d;
	loomi_api_header_take(res, "Set-Cookie",
	                      loomi_strfmt(COOKIE "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0%s",
	                                   req->tls ? "; Secure" : ""));
	res->status = 200;
	res->body = json_pack("{s:b}", "signed_out", 1);
}

/* ------------------------------------------------------------------ users */

static int
admins_left(loomi_daemon *d, const char *except)
{
	sqlite3_stmt *st = prep(d->store.db, "SELECT count(*) FROM users WHERE role = 'admin'"
	                                     " AND NOT disabled AND name <> ?");
	int n = 0;

	if (st) {
		sqlite3_bind_text(st, 1, except, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			n = sqlite3_column_int(st, 0);
	}
	sqlite3_finalize(st);
	return n;
}

static json_t *
user_get(loomi_daemon *d, const char *name)
{
	sqlite3_stmt *st = prep(d->store.db, "SELECT " USER_COLS " FROM users WHERE name = ?");
	json_t *o = NULL;

	if (st) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			o = user_json(st);
	}
	sqlite3_finalize(st);
	return o;
}

static void
get_users(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	sqlite3_stmt *st;
	json_t *list = json_array();

	(void)req;
	pthread_mutex_lock(&lock);
	st = prep(d->store.db, "SELECT " USER_COLS " FROM users ORDER BY name");
	while (st && sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(list, user_json(st));
	sqlite3_finalize(st);
	pthread_mutex_unlock(&lock);
	res->status = 200;
	res->body = json_pack("{s:o}", "users", list);
}

static void
get_user(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *o;

	pthread_mutex_lock(&lock);
	o = user_get(d, req->params[0]);
	pthread_mutex_unlock(&lock);
	if (o == NULL) {
		loomi_api_error(res, 404, "not_found", "no such user: %s; `loomctl users list` lists "
		                "them", req->params[0]);
		return;
	}
	res->status = 200;
	res->body = o;
}

/* uid in a body: absent (keep), null (none) or a number; false after a 400. */
static bool
uid_field(const json_t *body, bool *given, int64_t *uid, loomi_http_res *res)
{
	const json_t *v = json_object_get(body, "uid");

	*given = v != NULL;
	*uid = -1;
	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > 4294967294LL) {
		loomi_api_error(res, 400, "invalid", "uid: give a Unix user id (0 to 4294967294), or "
		                "null for none");
		return false;
	}
	*uid = json_integer_value(v);
	return true;
}

static void
post_users(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *body = loomi_api_json_body(req, res), *v;
	const char *name, *role = "user";
	const char *keys[] = {"name", "role", "uid", "exec", NULL};
	sqlite3_stmt *st = NULL;
	int64_t uid, now = loomi_wall_ms();
	bool uid_given, exec = false;
	char *err = NULL;
	const char *k;

	if (body == NULL)
		return;
	json_object_foreach(body, k, v) {
		bool known = false;
		for (size_t i = 0; keys[i]; i++)
			known |= strcmp(k, keys[i]) == 0;
		if (!known) {
			loomi_api_error(res, 400, "invalid", "%s: unknown field; a user has name, role, "
			                "uid and exec", k);
			goto out;
		}
	}
	v = json_object_get(body, "name");
	if (!json_is_string(v) || !loomi_user_name_ok((name = json_string_value(v)))) {
		loomi_api_error(res, 400, "invalid", "name: give 1 to 32 lower-case letters, digits, "
		                "'_', '.' or '-', starting with a letter or '_' (as Unix user names)");
		goto out;
	}
	if ((v = json_object_get(body, "role")) != NULL &&
	    (!json_is_string(v) || !loomi_role_parse((role = json_string_value(v))))) {
		loomi_api_error(res, 400, "invalid", "role: admin, user or viewer");
		goto out;
	}
	if ((v = json_object_get(body, "exec")) != NULL) {
		if (!json_is_boolean(v)) {
			loomi_api_error(res, 400, "invalid", "exec: true or false");
			goto out;
		}
		exec = json_is_true(v);
	}
	if (!uid_field(body, &uid_given, &uid, res))
		goto out;

	pthread_mutex_lock(&lock);
	if (loomi_store_begin(d->store.db, true, &err) != 0) {
		pthread_mutex_unlock(&lock);
		loomi_api_error(res, 503, "unavailable", "%s", err);
		free(err);
		goto out;
	}
	st = prep(d->store.db, "INSERT INTO users (name, role, uid, exec, created_at, updated_at)"
	                       " VALUES (?, ?, ?, ?, ?, ?)");
	if (st) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, role, -1, SQLITE_STATIC);
		if (uid >= 0)
			sqlite3_bind_int64(st, 3, uid);
		sqlite3_bind_int(st, 4, exec);
		sqlite3_bind_int64(st, 5, now);
		sqlite3_bind_int64(st, 6, now);
	}
	if (st && sqlite3_step(st) == SQLITE_DONE) {
		sqlite3_finalize(st);
		st = NULL;
		if (loomi_store_end(d->store.db, 0, &err) == 0) {
			res->status = 201;
			res->body = user_get(d, name);
			loomi_audit(req->caller, "added the user %s (%s%s)", name, role,
			            exec ? ", may run commands" : "");
		} else {
			loomi_api_error(res, 503, "unavailable", "%s", err);
		}
	} else {
		int rc = sqlite3_extended_errcode(d->store.db);
		if (rc == SQLITE_CONSTRAINT_UNIQUE) {
			json_t *same = user_get(d, name);
			loomi_api_error(res, 409, "conflict", "%s",
			                same ? "there is a user by that name already"
			                     : "another user has that uid already");
			json_decref(same);
		} else {
			db_error(d, res, "add the user");
		}
		loomi_store_end(d->store.db, LOOM_EIO, NULL);
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&lock);
	cache_clear();
out:
	free(err);
	json_decref(body);
}

static void
patch_user(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *body = loomi_api_json_body(req, res), *v, *before = NULL;
	const char *name = req->params[0], *role = NULL, *k;
	int exec = -1, disabled = -1, rv = 0;
	int64_t uid;
	bool uid_given;
	char *err = NULL;
	sqlite3_stmt *st;

	if (body == NULL)
		return;
	json_object_foreach(body, k, v) {
		if (strcmp(k, "role") == 0) {
			if (!json_is_string(v) || !loomi_role_parse((role = json_string_value(v)))) {
				loomi_api_error(res, 400, "invalid", "role: admin, user or viewer");
				goto out;
			}
		} else if (strcmp(k, "exec") == 0 || strcmp(k, "disabled") == 0) {
			if (!json_is_boolean(v)) {
				loomi_api_error(res, 400, "invalid", "%s: true or false", k);
				goto out;
			}
			*(strcmp(k, "exec") == 0 ? &exec : &disabled) = json_is_true(v);
		} else if (strcmp(k, "uid") != 0) {
			loomi_api_error(res, 400, "invalid", "%s: unknown field; a user's role, exec, "
			                "disabled and uid can change", k);
			goto out;
		}
	}
	if (!uid_field(body, &uid_given, &uid, res))
		goto out;

	pthread_mutex_lock(&lock);
	if ((before = user_get(d, name)) == NULL) {
		pthread_mutex_unlock(&lock);
		loomi_api_error(res, 404, "not_found", "no such user: %s", name);
		goto out;
	}
	if (((role && strcmp(role, "admin") != 0) || disabled == 1) &&
	    strcmp(json_string_value(json_object_get(before, "role")), "admin") == 0 &&
	    admins_left(d, name) == 0) {
		pthread_mutex_unlock(&lock);
		loomi_api_error(res, 409, "conflict", "%s is the last admin; make another user admin "
		                "first", name);
		goto out;
	}
	if (loomi_store_begin(d->store.db, true, &err) != 0) {
		pthread_mutex_unlock(&lock);
		loomi_api_error(res, 503, "unavailable", "%s", err);
		goto out;
	}
	st = prep(d->store.db, "UPDATE users SET role = coalesce(?1, role),"
	                       " exec = coalesce(?2, exec), disabled = coalesce(?3, disabled),"
	                       " uid = CASE WHEN ?4 THEN ?5 ELSE uid END, updated_at = ?6"
	                       " WHERE name = ?7");
	if (st) {
		if (role)
			sqlite3_bind_text(st, 1, role, -1, SQLITE_STATIC);
		if (exec >= 0)
			sqlite3_bind_int(st, 2, exec);
		if (disabled >= 0)
			sqlite3_bind_int(st, 3, disabled);
		sqlite3_bind_int(st, 4, uid_given);
		if (uid >= 0)
			sqlite3_bind_int64(st, 5, uid);
		sqlite3_bind_int64(st, 6, loomi_wall_ms());
		sqlite3_bind_text(st, 7, name, -1, SQLITE_STATIC);
	}
	if (st == NULL || sqlite3_step(st) != SQLITE_DONE) {
		if (sqlite3_extended_errcode(d->store.db) == SQLITE_CONSTRAINT_UNIQUE)
			loomi_api_error(res, 409, "conflict", "another user has that uid already");
		else
			db_error(d, res, "change the user");
		rv = LOOM_EIO;
	}
	sqlite3_finalize(st);
	rv = tx_end(d, rv, &err, res);
	if (rv == 0) {
		res->status = 200;
		res->body = user_get(d, name);
	}
	pthread_mutex_unlock(&lock);
	cache_clear();
	if (rv == 0) {
		if (role)
			loomi_audit(req->caller, "set %s's role to %s (was %s)", name, role,
			            json_string_value(json_object_get(before, "role")));
		if (exec >= 0)
			loomi_audit(req->caller, "%s %s the right to run commands", exec ? "gave" : "took",
			            name);
		if (disabled >= 0)
			loomi_audit(req->caller, "%s the user %s", disabled ? "disabled" : "enabled", name);
		if (uid_given)
			loomi_audit(req->caller, "mapped the uid %lld to %s", (long long)uid, name);
	}
out:
	free(err);
	json_decref(before);
	json_decref(body);
}

/* ------------------------------------------------------------------ tokens */

static void
post_tokens(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *body = loomi_api_json_body(req, res), *v;
	const loomi_caller *c = req->caller;
	const char *user = c->name, *label = "", *k;
	int64_t expires = 0, now = loomi_wall_ms(), id = 0;
	char token[TOKEN_LEN + 1], hint[16];
	uint8_t hash[32];
	loomi_caller owner;
	sqlite3_stmt *st;
	char *err = NULL;
	int rv = 0;

	if (body == NULL)
		return;
	json_object_foreach(body, k, v) {
		if (strcmp(k, "user") != 0 && strcmp(k, "name") != 0 && strcmp(k, "expires_in") != 0) {
			loomi_api_error(res, 400, "invalid", "%s: unknown field; a token takes user, name "
			                "and expires_in (seconds)", k);
			goto out;
		}
	}
	if ((v = json_object_get(body, "user")) != NULL && !json_is_null(v)) {
		if (!json_is_string(v)) {
			loomi_api_error(res, 400, "invalid", "user: a user name");
			goto out;
		}
		user = json_string_value(v);
	}
	if ((v = json_object_get(body, "name")) != NULL && !json_is_null(v)) {
		if (!json_is_string(v) || loomi_name_text_check("name", json_string_value(v), &err) ||
		    json_string_length(v) > 64) {
			loomi_api_error(res, 400, "invalid", "%s", err ? err : "name: a label of at most "
			                "64 characters (\"laptop\", \"ci\")");
			goto out;
		}
		label = json_string_value(v);
	}
	if ((v = json_object_get(body, "expires_in")) != NULL && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 60 ||
		    json_integer_value(v) > 10LL * 366 * 86400) {
			loomi_api_error(res, 400, "invalid", "expires_in: seconds from now, 60 to ten "
			                "years; leave it out for a token that does not expire");
			goto out;
		}
		expires = now + json_integer_value(v) * 1000;
	}
	if (strcmp(user, c->name) != 0 && c->role != LOOMI_ROLE_ADMIN) {
		loomi_api_error(res, 403, "forbidden", "only an admin makes tokens for another user");
		goto out;
	}
	if (!loomi_auth_user(d, user, &owner)) {
		loomi_api_error(res, 404, "not_found", "no such user: %s (or disabled)", user);
		goto out;
	}
	if (!token_new(token)) {
		loomi_api_error(res, 500, "internal", "the OS gave no random bytes for a token");
		goto out;
	}
	sha256(token, TOKEN_LEN, hash);
	snprintf(hint, sizeof hint, "%.9s...", token);

	pthread_mutex_lock(&lock);
	if (loomi_store_begin(d->store.db, true, &err) != 0) {
		pthread_mutex_unlock(&lock);
		loomi_api_error(res, 503, "unavailable", "%s", err);
		goto wipe;
	}
	st = prep(d->store.db, "INSERT INTO tokens (user_id, name, hash, hint, created_at,"
	                       " expires_at) VALUES (?, ?, ?, ?, ?, ?)");
	if (st) {
		sqlite3_bind_int64(st, 1, owner.user_id);
		sqlite3_bind_text(st, 2, label, -1, SQLITE_STATIC);
		sqlite3_bind_blob(st, 3, hash, 32, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, hint, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, now);
		if (expires)
			sqlite3_bind_int64(st, 6, expires);
	}
	if (st == NULL || sqlite3_step(st) != SQLITE_DONE) {
		db_error(d, res, "store the token");
		rv = LOOM_EIO;
	} else {
		id = sqlite3_last_insert_rowid(d->store.db);
	}
	sqlite3_finalize(st);
	rv = tx_end(d, rv, &err, res);
	pthread_mutex_unlock(&lock);
	if (rv == 0) {
		char *at = expires ? loomi_iso_time(expires) : NULL;
		res->status = 201;
		res->body = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s?}", "id", (json_int_t)id, "token",
		                      token, "user", user, "name", label, "hint", hint, "expires_at", at);
		free(at);
		loomi_audit(c, "created token %lld for %s%s%s", (long long)id, user,
		            label[0] ? ", named " : "", label);
	}
wipe:
	OPENSSL_cleanse(token, sizeof token);
out:
	free(err);
	json_decref(body);
}

static void
get_tokens(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	const loomi_caller *c = req->caller;
	char *user = loomi_query_get(req->query, "user");
	json_t *list = json_array();
	sqlite3_stmt *st;

	if (user && strcmp(user, c->name) != 0 && c->role != LOOMI_ROLE_ADMIN) {
		loomi_api_error(res, 403, "forbidden", "only an admin lists another user's tokens");
		json_decref(list);
		free(user);
		return;
	}
	pthread_mutex_lock(&lock);
	st = prep(d->store.db, "SELECT " TOKEN_COLS " FROM tokens t JOIN users u ON u.id = t.user_id"
	                       " WHERE (?1 IS NULL AND (?2 OR u.name = ?3)) OR u.name = ?1"
	                       " ORDER BY t.id");
	if (st) {
		if (user)
			sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 2, c->role == LOOMI_ROLE_ADMIN);
		sqlite3_bind_text(st, 3, c->name, -1, SQLITE_STATIC);
	}
	while (st && sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(list, token_json(st));
	sqlite3_finalize(st);
	pthread_mutex_unlock(&lock);
	res->status = 200;
	res->body = json_pack("{s:o}", "tokens", list);
	free(user);
}

static void
delete_token(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	const loomi_caller *c = req->caller;
	char *end;
	long long id = strtoll(req->params[0], &end, 10);
	sqlite3_stmt *st;
	json_t *tok = NULL;
	char *err = NULL;
	int rv = 0;

	if (*end != '\0' || id <= 0) {
		loomi_api_error(res, 400, "invalid", "a token id is a number (`loomctl tokens list`)");
		return;
	}
	pthread_mutex_lock(&lock);
	st = prep(d->store.db, "SELECT " TOKEN_COLS " FROM tokens t JOIN users u ON u.id = t.user_id"
	                       " WHERE t.id = ? AND (? OR u.name = ?)");
	if (st) {
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_int(st, 2, c->role == LOOMI_ROLE_ADMIN);
		sqlite3_bind_text(st, 3, c->name, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			tok = token_json(st);
	}
	sqlite3_finalize(st);
	if (tok == NULL) {
		pthread_mutex_unlock(&lock);
		loomi_api_error(res, 404, "not_found", "no such token: %lld", id);
		return;
	}
	if (loomi_store_begin(d->store.db, true, &err) != 0) {
		pthread_mutex_unlock(&lock);
		loomi_api_error(res, 503, "unavailable", "%s", err);
		free(err);
		json_decref(tok);
		return;
	}
	st = prep(d->store.db, "UPDATE tokens SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?");
	if (st) {
		sqlite3_bind_int64(st, 1, loomi_wall_ms());
		sqlite3_bind_int64(st, 2, id);
	}
	if (st == NULL || sqlite3_step(st) != SQLITE_DONE) {
		db_error(d, res, "revoke the token");
		rv = LOOM_EIO;
	}
	sqlite3_finalize(st);
	rv = tx_end(d, rv, &err, res);
	json_decref(tok);
	tok = NULL;
	if (rv == 0) {
		st = prep(d->store.db, "SELECT " TOKEN_COLS " FROM tokens t JOIN users u ON"
		                       " u.id = t.user_id WHERE t.id = ?");
		if (st) {
			sqlite3_bind_int64(st, 1, id);
			if (sqlite3_step(st) == SQLITE_ROW)
				tok = token_json(st);
		}
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&lock);
	cache_clear();
	if (rv == 0) {
		loomi_audit(c, "revoked token %lld", id);
		res->status = 200;
		res->body = tok;
	}
	free(err);
}

/* ------------------------------------------------------------------ shares */

/* The owner of kind/id through its module: 0, LOOM_ENOENT, or
 * LOOM_EINVAL for a kind nobody registered (a 400 set). */
static int
object_owner(loomi_daemon *d, const char *kind, const char *id, char **owner,
             char canon[LOOMI_OBJECT_ID_MAX], loomi_http_res *res)
{
	loomi_owner_fn fn = kind_owner(kind);

	if (fn == NULL) {
		char *list;
		loomi_strv names = {0};
		pthread_mutex_lock(&lock);
		for (size_t i = 0; i < n_kinds; i++)
			loomi_strv_push(&names, loomi_strdup(kinds[i].kind));
		pthread_mutex_unlock(&lock);
		list = loomi_strv_join(&names, ", ");
		loomi_api_error(res, 400, "invalid", "kind: \"%s\" is not something that is shared; "
		                "one of %s", kind, list);
		free(list);
		loomi_strv_free(&names);
		return LOOM_EINVAL;
	}
	return fn(d, id, owner, canon);
}

static json_t *
shares_of(loomi_daemon *d, const char *kind, const char *id, const char *grantee)
{
	sqlite3_stmt *st;
	json_t *list = json_array();

	st = prep(d->store.db, "SELECT kind, object, grantee, level, granted_by, created_at"
	                       " FROM shares WHERE (?1 IS NULL OR kind = ?1) AND"
	                       " (?2 IS NULL OR object = ?2) AND (?3 IS NULL OR grantee = ?3)"
	                       " ORDER BY kind, object, grantee");
	if (st) {
		if (kind)
			sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
		if (id)
			sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
		if (grantee)
			sqlite3_bind_text(st, 3, grantee, -1, SQLITE_STATIC);
	}
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kind",
		                      (const char *)sqlite3_column_text(st, 0), "id",
		                      (const char *)sqlite3_column_text(st, 1), "user",
		                      (const char *)sqlite3_column_text(st, 2), "level",
		                      (const char *)sqlite3_column_text(st, 3), "granted_by",
		                      (const char *)sqlite3_column_text(st, 4));
		json_object_set_new(o, "created_at", time_or_null(st, 5));
		json_array_append_new(list, o);
	}
	sqlite3_finalize(st);
	return list;
}

static void
get_shares(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	const loomi_caller *c = req->caller;
	char *kind = loomi_query_get(req->query, "kind"), *id = loomi_query_get(req->query, "id");
	char *owner = NULL, canon[LOOMI_OBJECT_ID_MAX];
	json_t *list;
	int rv;

	if ((kind == NULL) != (id == NULL)) {
		loomi_api_error(res, 400, "invalid", "give both kind and id (an object's shares), or "
		                "neither (what is shared with you)");
		goto out;
	}
	if (kind) {
		char *what = loomi_strfmt("%s %s", kind, id);
		if ((rv = object_owner(d, kind, id, &owner, canon, res)) == LOOM_EINVAL) {
			free(what);
			goto out;
		}
		if (rv != 0 ||
		    loomi_auth_object(d, c, kind, canon, owner, LOOMI_ACCESS_READ, what, res)) {
			if (rv != 0)
				loomi_api_error(res, 404, "not_found", "no such %s", what);
			free(what);
			goto out;
		}
		free(what);
	}
	pthread_mutex_lock(&lock);
	list = shares_of(d, kind, kind ? canon : NULL, kind ? NULL : c->name);
	pthread_mutex_unlock(&lock);
	res->status = 200;
	res->body = json_pack("{s:o}", "shares", list);
out:
	free(owner);
	free(kind);
	free(id);
}

/* May the caller grant or take back shares of an object: its owner or an
 * admin.  0, or an answer set. */
static int
may_share(loomi_daemon *d, const loomi_caller *c, const char *kind, const char *id,
          char canon[LOOMI_OBJECT_ID_MAX], loomi_http_res *res)
{
	char *owner = NULL, *what = loomi_strfmt("%s %s", kind, id);
	int rv = object_owner(d, kind, id, &owner, canon, res);

	if (rv == LOOM_EINVAL)
		goto out;
	if (rv != 0) {
		loomi_api_error(res, 404, "not_found", "no such %s", what);
		goto out;
	}
	if ((rv = loomi_auth_object(d, c, kind, canon, owner, LOOMI_ACCESS_READ, what, res)) != 0)
		goto out;
	if (c->role != LOOMI_ROLE_ADMIN && strcmp(owner, c->name) != 0) {
		loomi_api_error(res, 403, "forbidden", "%s belongs to %s: only its owner or an admin "
		                "shares it", what, owner);
		rv = 403;
	}
out:
	free(owner);
	free(what);
	return rv;
}

static void
post_shares(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	json_t *body = loomi_api_json_body(req, res), *v;
	const char *kind, *id, *user, *level = "read";
	char canon[LOOMI_OBJECT_ID_MAX];
	loomi_caller grantee;
	sqlite3_stmt *st;
	char *err = NULL;
	int rv = 0;

	if (body == NULL)
		return;
	kind = json_string_value(json_object_get(body, "kind"));
	id = json_string_value(json_object_get(body, "id"));
	user = json_string_value(json_object_get(body, "user"));
	if (kind == NULL || id == NULL || user == NULL) {
		loomi_api_error(res, 400, "invalid", "give {\"kind\": \"task\", \"id\": \"task-3\", "
		                "\"user\": \"bob\" (or \"*\" for everyone), \"level\": \"read\" or "
		                "\"write\"}");
		goto out;
	}
	if ((v = json_object_get(body, "level")) != NULL &&
	    (!json_is_string(v) || (strcmp((level = json_string_value(v)), "read") != 0 &&
	                            strcmp(level, "write") != 0))) {
		loomi_api_error(res, 400, "invalid", "level: \"read\" or \"write\"");
		goto out;
	}
	if (strcmp(user, "*") != 0 && !loomi_auth_user(d, user, &grantee)) {
		loomi_api_error(res, 404, "not_found", "no such user: %s; `loomctl users list` lists "
		                "them", user);
		goto out;
	}
	if (may_share(d, req->caller, kind, id, canon, res) != 0)
		goto out;
	id = canon;

	pthread_mutex_lock(&lock);
	if (loomi_store_begin(d->store.db, true, &err) != 0) {
		pthread_mutex_unlock(&lock);
		loomi_api_error(res, 503, "unavailable", "%s", err);
		goto out;
	}
	st = prep(d->store.db, "INSERT INTO shares (kind, object, grantee, level, granted_by,"
	                       " created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, object,"
	                       " grantee) DO UPDATE SET level = excluded.level,"
	                       " granted_by = excluded.granted_by");
	if (st) {
		sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, user, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, level, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, req->caller->name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 6, loomi_wall_ms());
	}
	if (st == NULL || sqlite3_step(st) != SQLITE_DONE) {
		db_error(d, res, "store the share");
		rv = LOOM_EIO;
	}
	sqlite3_finalize(st);
	rv = tx_end(d, rv, &err, res);
	if (rv == 0) {
		res->status = 200;
		res->body = json_pack("{s:o}", "shares", shares_of(d, kind, id, NULL));
	}
	pthread_mutex_unlock(&lock);
	if (rv == 0)
		loomi_audit(req->caller, "shared %s %s with %s for %s", kind, id,
		            strcmp(user, "*") == 0 ? "everyone" : user,
		            strcmp(level, "write") == 0 ? "writing" : "reading");
out:
	free(err);
	json_decref(body);
}

static void
delete_share(loomi_daemon *d, const loomi_http_req *req, loomi_http_res *res)
{
	const char *kind = req->params[0], *id = req->params[1], *user = req->params[2];
	char canon[LOOMI_OBJECT_ID_MAX], *owner = NULL;
	sqlite3_stmt *st;
	char *err = NULL;
	int rv = 0, changed = 0;

	/* the grantee may give a share back; otherwise its owner or an admin */
	if (strcmp(user, req->caller->name) == 0) {
		if ((rv = object_owner(d, kind, id, &owner, canon, res)) == LOOM_EINVAL)
			return;
		free(owner);
		if (rv != 0) {
			loomi_api_error(res, 404, "not_found", "no such %s %s", kind, id);
			return;
		}
	} else if (may_share(d, req->caller, kind, id, canon, res) != 0) {
		return;
	}
	id = canon;
	pthread_mutex_lock(&lock);
	if (loomi_store_begin(d->store.db, true, &err) != 0) {
		pthread_mutex_unlock(&lock);
		loomi_api_error(res, 503, "unavailable", "%s", err);
		free(err);
		return;
	}
	st = prep(d->store.db, "DELETE FROM shares WHERE kind = ? AND object = ? AND grantee = ?");
	if (st) {
		sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, user, -1, SQLITE_STATIC);
	}
	if (st == NULL || sqlite3_step(st) != SQLITE_DONE) {
		db_error(d, res, "remove the share");
		rv = LOOM_EIO;
	} else {
		changed = sqlite3_changes(d->store.db);
	}
	sqlite3_finalize(st);
	rv = tx_end(d, rv, &err, res);
	pthread_mutex_unlock(&lock);
	free(err);
	if (rv != 0)
		return;
	if (changed == 0) {
		loomi_api_error(res, 404, "not_found", "%s %s is not shared with %s", kind, id, user);
		return;
	}
	loomi_audit(req->caller, "stopped sharing %s %s with %s", kind, id,
	            strcmp(user, "*") == 0 ? "everyone" : user);
	res->status = 200;
	res->body = json_pack("{s:s, s:s, s:s, s:b}", "kind", kind, "id", id, "user", user,
	                      "removed", 1);
}

/* ------------------------------------------------------------------ module */

static bool
loopback_listen(const char *listen)
{
	char host[256];
	const char *colon = strrchr(listen, ':');
	size_t n = colon ? (size_t)(colon - listen) : strlen(listen);

	if (n >= sizeof host)
		return false;
	memcpy(host, listen, n);
	host[n] = '\0';
	return strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 ||
	       strncmp(host, "127.", 4) == 0;
}

/* The first start: an admin for the uid that owns the state directory. */
static int
first_admin(loomi_daemon *d, char **err)
{
	sqlite3_stmt *st = prep(d->store.db, "SELECT name FROM users WHERE role = 'admin' AND"
	                                     " NOT disabled ORDER BY id LIMIT 1");
	struct stat sb;
	struct passwd *pw;
	char name[LOOMI_USER_NAME_MAX + 1];
	int64_t now = loomi_wall_ms();
	bool have = false;
	int rv = 0;

	if (st && sqlite3_step(st) == SQLITE_ROW) {
		snprintf(none_user, sizeof none_user, "%s", (const char *)sqlite3_column_text(st, 0));
		have = true;
	}
	sqlite3_finalize(st);
	if (have)
		return 0;
	st = prep(d->store.db, "SELECT count(*) FROM users");
	if (st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) > 0) {
		/* users, but no enabled admin: say how to get one back */
		LOG_WARN("auth: no enabled admin; the owner of %s can add one with `loomctl users add` "
		         "over the Unix socket after `loomd --state-dir %s` is restarted with a fresh "
		         "users table, or an admin's token",
		         d->conf.state_dir, d->conf.state_dir);
		sqlite3_finalize(st);
		return 0;
	}
	sqlite3_finalize(st);
	if (stat(d->conf.state_dir, &sb) != 0) {
		*err = loomi_strfmt("cannot look at the state directory %s to find its owner",
		                    d->conf.state_dir);
		return LOOM_EIO;
	}
	pw = getpwuid(sb.st_uid);
	if (pw && loomi_user_name_ok(pw->pw_name))
		snprintf(name, sizeof name, "%s", pw->pw_name);
	else
		snprintf(name, sizeof name, "uid%lu", (unsigned long)sb.st_uid);
	if ((rv = loomi_store_begin(d->store.db, true, err)) != 0)
		return rv;
	st = prep(d->store.db, "INSERT INTO users (name, role, uid, exec, created_at, updated_at)"
	                       " VALUES (?, 'admin', ?, 1, ?, ?)");
	if (st) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (int64_t)sb.st_uid);
		sqlite3_bind_int64(st, 3, now);
		sqlite3_bind_int64(st, 4, now);
	}
	if (st == NULL || sqlite3_step(st) != SQLITE_DONE) {
		*err = loomi_strfmt("cannot create the first admin: %s", sqlite3_errmsg(d->store.db));
		rv = LOOM_EIO;
	}
	sqlite3_finalize(st);
	if ((rv = loomi_store_end(d->store.db, rv, rv ? NULL : err)) != 0)
		return rv;
	snprintf(none_user, sizeof none_user, "%s", name);
	LOG_WARN("auth: created the admin user \"%s\" for uid %lu, the owner of %s; over loomd's "
	         "Unix socket that uid needs no token (`loomctl users add`, `loomctl tokens "
	         "create` add others)",
	         name, (unsigned long)sb.st_uid, d->conf.state_dir);
	loomi_audit(&loomi_caller_loomd, "created the first admin, %s (uid %lu)", name,
	            (unsigned long)sb.st_uid);
	return 0;
}

static int
init(loomi_daemon *d, char **err)
{
	int rv;

	pthread_mutex_lock(&lock);
	rv = first_admin(d, err);
	pthread_mutex_unlock(&lock);
	if (rv != 0)
		return rv;
	cache_clear();
	if (d->conf.auth_none) {
		if (!loopback_listen(d->conf.listen)) {
			*err = loomi_strfmt("auth = \"none\" makes every client an admin, so it is refused "
			                    "on listen = \"%s\", which is not a loopback address; remove "
			                    "auth = \"none\" (clients then send API tokens), or listen on "
			                    "127.0.0.1",
			                    d->conf.listen);
			return LOOM_ECONFIG;
		}
		LOG_WARN("auth: auth = \"none\": EVERY client that reaches %s acts as the admin %s, "
		         "with no token; use it only on a machine you alone use",
		         d->conf.listen, none_user);
	}
	return 0;
}

static void
stop(loomi_daemon *d)
{
	(void)d;
	cache_clear();
}

static const loomi_route routes[] = {
	{"GET", "/api/v1/session", get_session, LOOMI_ACCESS_READ, NULL},
	{"POST", "/api/v1/session", post_session, LOOMI_ACCESS_PUBLIC, NULL},
	{"DELETE", "/api/v1/session", delete_session, LOOMI_ACCESS_PUBLIC, NULL},
	{"GET", "/api/v1/users", get_users, LOOMI_ACCESS_ADMIN, NULL},
	{"POST", "/api/v1/users", post_users, LOOMI_ACCESS_ADMIN, NULL},
	{"GET", "/api/v1/users/{name}", get_user, LOOMI_ACCESS_ADMIN, NULL},
	{"PATCH", "/api/v1/users/{name}", patch_user, LOOMI_ACCESS_ADMIN, NULL},
	/* one's own tokens: every role (a viewer signs in to the web UI with one) */
	{"GET", "/api/v1/tokens", get_tokens, LOOMI_ACCESS_READ, "user"},
	{"POST", "/api/v1/tokens", post_tokens, LOOMI_ACCESS_READ, NULL},
	{"DELETE", "/api/v1/tokens/{id}", delete_token, LOOMI_ACCESS_READ, NULL},
	{"GET", "/api/v1/shares", get_shares, LOOMI_ACCESS_READ, "kind,id"},
	{"POST", "/api/v1/shares", post_shares, LOOMI_ACCESS_WRITE, NULL},
	{"DELETE", "/api/v1/shares/{kind}/{id}/{user}", delete_share, LOOMI_ACCESS_WRITE, NULL},
};

const loomi_module loomi_auth_module = {
	.name = "auth",
	.migrations = migrations,
	.n_migrations = LOOMI_N(migrations),
	.init = init,
	.stop = stop,
	.routes = routes,
	.n_routes = LOOMI_N(routes),
};

/* ------------------------------------------------------------------ data roots */

/* The default data roots: the state directory, the package's data and the
 * example data sets its jobs read (Debian's vega_datasets). */
static void
default_roots(const loomi_daemon *d, loomi_strv *out)
{
	const char *ex = LOOM_EXAMPLE_DATA;

	loomi_strv_push(out, loomi_strdup(d->conf.state_dir));
	loomi_strv_push(out, loomi_strdup(LOOM_PKGDATA_DIR));
	while (*ex) {
		size_t n = strcspn(ex, ":");
		if (n)
			loomi_strv_push(out, loomi_strndup(ex, n));
		ex += n + (ex[n] == ':');
	}
}

/* path made absolute against the working directory (workers share
 * loomd's), its symbolic links resolved as far as it exists. */
static char *
resolve(const char *path)
{
	char *abs, *real, *slash, *dir;

	if (path[0] == '/') {
		abs = loomi_strdup(path);
	} else {
		char cwd[4096];
		if (getcwd(cwd, sizeof cwd) == NULL)
			return NULL;
		abs = loomi_path_join(cwd, path);
	}
	if ((real = realpath(abs, NULL)) != NULL) {
		free(abs);
		return real;
	}
	/* a file not there (yet): its directory, resolved, and its name */
	slash = strrchr(abs, '/');
	if (slash && strcmp(slash + 1, "..") != 0 && strcmp(slash + 1, ".") != 0) {
		*slash = '\0';
		dir = realpath(abs[0] ? abs : "/", NULL);
		if (dir) {
			real = loomi_path_join(dir, slash + 1);
			free(dir);
			free(abs);
			return real;
		}
	}
	free(abs);
	return NULL;
}

int
loomi_data_path_check(loomi_daemon *d, const char *key, const char *path, char **msg)
{
	loomi_strv roots = {0};
	const loomi_strv *use = &d->conf.data_roots;
	char *real, *list;
	bool ok = false;

	/* "<storage instance>:<key>": the storage plugin checks its keys */
	if (path[0] != '/' && strchr(path, ':') != NULL)
		return 0;
	if (use->n == 0) {
		default_roots(d, &roots);
		use = &roots;
	}
	if ((real = resolve(path)) != NULL) {
		for (size_t i = 0; i < use->n && !ok; i++) {
			char *root = realpath(use->v[i], NULL);
			size_t n;
			if (root == NULL)
				continue;
			n = strlen(root);
			ok = strncmp(real, root, n) == 0 &&
			     (real[n] == '/' || real[n] == '\0' || (n == 1 && root[0] == '/'));
			free(root);
		}
	}
	if (!ok) {
		list = loomi_strv_join(use, ", ");
		*msg = loomi_strfmt("%s: \"%s\" is outside the directories tasks may read (data_roots "
		                    "in loomd.conf: %s); put the file under one of them, or ask an "
		                    "admin to add its directory to data_roots",
		                    key, path, list);
		free(list);
	}
	free(real);
	loomi_strv_free(&roots);
	return ok ? 0 : LOOM_EINVAL;
}

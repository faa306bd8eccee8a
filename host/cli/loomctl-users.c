/* loomctl users, tokens, share and whoami: who may use loomd, with what
 * credential, and who may see an object (docs/security.md). */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "loomctl.h"

/* A user name as loomd accepts it (so it needs no escaping in a path). */
static bool
user_arg(const char *s)
{
	size_t n = strlen(s);
	bool ok = n >= 1 && n <= 32 && (islower((unsigned char)s[0]) || s[0] == '_');

	for (const char *p = s; ok && *p; p++)
		ok = islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_' ||
		     *p == '.' || *p == '-';
	if (!ok)
		fprintf(stderr, "loomctl: \"%s\" is not a user name (1 to 32 lower-case letters, "
		                "digits, '_', '.' or '-', starting with a letter or '_')\n", s);
	return ok;
}

static bool
role_arg(const char *s)
{
	if (strcmp(s, "admin") == 0 || strcmp(s, "user") == 0 || strcmp(s, "viewer") == 0)
		return true;
	fprintf(stderr, "loomctl: \"%s\" is not a role; use admin, user or viewer\n", s);
	return false;
}

static bool
bool_arg(const char *s, bool *out)
{
	if (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0 || strcmp(s, "on") == 0)
		return (*out = true), true;
	if (strcmp(s, "false") == 0 || strcmp(s, "no") == 0 || strcmp(s, "off") == 0)
		return (*out = false), true;
	fprintf(stderr, "loomctl: \"%s\": give true or false\n", s);
	return false;
}

/* ------------------------------------------------------------------ users */

static void
print_user_row(const json_t *u)
{
	const json_t *uid = json_object_get(u, "uid");
	char uidtext[24] = "-";

	if (json_is_integer(uid))
		snprintf(uidtext, sizeof uidtext, "%lld", (long long)json_integer_value(uid));
	printf("%-20s %-7s %-10s %-5s %s\n", S(u, "name"), S(u, "role"), uidtext,
	       json_is_true(json_object_get(u, "exec")) ? "yes" : "no",
	       json_is_true(json_object_get(u, "disabled")) ? "disabled" : "enabled");
}

static void
print_users(const json_t *body)
{
	size_t i;
	json_t *u;

	printf("%-20s %-7s %-10s %-5s %s\n", "USER", "ROLE", "UID", "EXEC", "STATE");
	json_array_foreach(json_object_get(body, "users"), i, u)
		print_user_row(u);
}

static void
print_user(const json_t *body)
{
	printf("%-20s %-7s %-10s %-5s %s\n", "USER", "ROLE", "UID", "EXEC", "STATE");
	print_user_row(body);
}

static int
users_usage(const char *why)
{
	if (why[0])
		fprintf(stderr, "loomctl: users: %s\n", why);
	fprintf(stderr, "usage: loomctl users [list]\n"
	                "       loomctl users add NAME [--role admin|user|viewer] [--uid UID] "
	                "[--exec]\n"
	                "       loomctl users show NAME\n"
	                "       loomctl users set-role NAME admin|user|viewer\n"
	                "       loomctl users set-exec NAME true|false\n"
	                "       loomctl users set-uid NAME UID|none\n"
	                "       loomctl users disable|enable NAME\n");
	return EXIT_USAGE;
}

/* PATCH /api/v1/users/NAME with body (taken). */
static int
user_change(const ctl *c, const char *name, json_t *body)
{
	char *path = NULL, *text = json_dumps(body, JSON_COMPACT);
	reply r = {0};
	int rv;

	json_decref(body);
	if (!user_arg(name)) {
		free(text);
		return EXIT_USAGE;
	}
	if (asprintf(&path, "/api/v1/users/%s", name) < 0)
		abort();
	rv = http(c, "PATCH", path, text, &r);
	free(path);
	free(text);
	return rv ? rv : answer(c, &r, 200, print_user);
}

int
cmd_users(const ctl *c, int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "list";
	reply r = {0};
	int rv;

	if (strcmp(sub, "list") == 0) {
		if (argc > 2)
			return users_usage("list takes no arguments");
		rv = http(c, "GET", "/api/v1/users", NULL, &r);
		return rv ? rv : answer(c, &r, 200, print_users);
	}
	if (strcmp(sub, "show") == 0) {
		char *path = NULL;
		if (argc != 3)
			return users_usage("show takes a user name");
		if (!user_arg(argv[2]))
			return EXIT_USAGE;
		if (asprintf(&path, "/api/v1/users/%s", argv[2]) < 0)
			abort();
		rv = http(c, "GET", path, NULL, &r);
		free(path);
		return rv ? rv : answer(c, &r, 200, print_user);
	}
	if (strcmp(sub, "add") == 0) {
		json_t *body;
		char *text;
		if (argc < 3)
			return users_usage("add takes a user name");
		if (!user_arg(argv[2]))
			return EXIT_USAGE;
		body = json_pack("{s:s}", "name", argv[2]);
		for (int i = 3; i < argc; i++) {
			if (strcmp(argv[i], "--role") == 0 && i + 1 < argc) {
				if (!role_arg(argv[++i])) {
					json_decref(body);
					return EXIT_USAGE;
				}
				json_object_set_new(body, "role", json_string(argv[i]));
			} else if (strcmp(argv[i], "--uid") == 0 && i + 1 < argc) {
				if (!number_arg("--uid", argv[++i])) {
					json_decref(body);
					return EXIT_USAGE;
				}
				json_object_set_new(body, "uid", json_integer(strtoll(argv[i], NULL, 10)));
			} else if (strcmp(argv[i], "--exec") == 0) {
				json_object_set_new(body, "exec", json_true());
			} else {
				json_decref(body);
				return users_usage("add takes --role ROLE, --uid UID and --exec");
			}
		}
		text = json_dumps(body, JSON_COMPACT);
		json_decref(body);
		rv = http(c, "POST", "/api/v1/users", text, &r);
		free(text);
		return rv ? rv : answer(c, &r, 201, print_user);
	}
	if (strcmp(sub, "set-role") == 0) {
		if (argc != 4)
			return users_usage("set-role takes a user name and a role");
		if (!role_arg(argv[3]))
			return EXIT_USAGE;
		return user_change(c, argv[2], json_pack("{s:s}", "role", argv[3]));
	}
	if (strcmp(sub, "set-exec") == 0) {
		bool yes;
		if (argc != 4)
			return users_usage("set-exec takes a user name and true or false");
		if (!bool_arg(argv[3], &yes))
			return EXIT_USAGE;
		return user_change(c, argv[2], json_pack("{s:b}", "exec", yes));
	}
	if (strcmp(sub, "set-uid") == 0) {
		if (argc != 4)
			return users_usage("set-uid takes a user name and a uid (or none)");
		if (strcmp(argv[3], "none") == 0)
			return user_change(c, argv[2], json_pack("{s:n}", "uid"));
		if (!number_arg("uid", argv[3]))
			return EXIT_USAGE;
		return user_change(c, argv[2],
		                   json_pack("{s:I}", "uid", (json_int_t)strtoll(argv[3], NULL, 10)));
	}
	if (strcmp(sub, "disable") == 0 || strcmp(sub, "enable") == 0) {
		if (argc != 3)
			return users_usage("disable and enable take a user name");
		return user_change(c, argv[2], json_pack("{s:b}", "disabled", sub[0] == 'd'));
	}
	return users_usage("unknown subcommand");
}

/* ------------------------------------------------------------------ tokens */

static void
print_tokens(const json_t *body)
{
	size_t i;
	json_t *t;

	printf("%-5s %-16s %-14s %-16s %-8s %-20s %s\n", "ID", "USER", "HINT", "NAME", "STATE",
	       "EXPIRES", "LAST USED");
	json_array_foreach(json_object_get(body, "tokens"), i, t) {
		const json_t *exp = json_object_get(t, "expires_at");
		const json_t *used = json_object_get(t, "last_used_at");
		printf("%-5lld %-16s %-14s %-16s %-8s %-20s %s%s%s\n",
		       (long long)json_integer_value(json_object_get(t, "id")), S(t, "user"),
		       S(t, "hint"), S(t, "name")[0] ? S(t, "name") : "-", S(t, "state"),
		       json_is_string(exp) ? json_string_value(exp) : "never",
		       json_is_string(used) ? json_string_value(used) : "never",
		       json_is_string(json_object_get(t, "last_addr")) ? " from " : "",
		       json_is_string(json_object_get(t, "last_addr")) ? S(t, "last_addr") : "");
	}
}

static void
print_revoked(const json_t *body)
{
	printf("revoked token %lld (%s, %s)\n",
	       (long long)json_integer_value(json_object_get(body, "id")), S(body, "user"),
	       S(body, "hint"));
}

static int
tokens_usage(const char *why)
{
	if (why[0])
		fprintf(stderr, "loomctl: tokens: %s\n", why);
	fprintf(stderr, "usage: loomctl tokens [list] [--user NAME]\n"
	                "       loomctl tokens create [--user NAME] [--name LABEL] "
	                "[--expires DURATION] [--quiet]\n"
	                "       loomctl tokens revoke ID\n"
	                "DURATION: a number and s, m, h or d (\"30d\")\n");
	return EXIT_USAGE;
}

/* "30d", "12h", "90m", "3600s", "3600" → seconds; -1 when malformed. */
static long long
duration_s(const char *s)
{
	char *end;
	long long n = strtoll(s, &end, 10);

	if (end == s || n <= 0)
		return -1;
	switch (*end) {
	case '\0':
	case 's': break;
	case 'm': n *= 60; break;
	case 'h': n *= 3600; break;
	case 'd': n *= 86400; break;
	default: return -1;
	}
	if (*end && end[1] != '\0')
		return -1;
	return n;
}

int
cmd_tokens(const ctl *c, int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "list";
	reply r = {0};
	int rv;

	if (strcmp(sub, "list") == 0 || strcmp(sub, "--user") == 0) {
		char *path = NULL;
		/* "tokens", "tokens list", "tokens --user N", "tokens list --user N" */
		int i = argc > 1 && strcmp(argv[1], "list") == 0 ? 2 : 1;
		if (argc == i) {
			path = strdup("/api/v1/tokens");
		} else if (argc == i + 2 && strcmp(argv[i], "--user") == 0) {
			if (!user_arg(argv[i + 1]))
				return EXIT_USAGE;
			if (asprintf(&path, "/api/v1/tokens?user=%s", argv[i + 1]) < 0)
				abort();
		} else {
			return tokens_usage("list takes --user NAME");
		}
		rv = http(c, "GET", path, NULL, &r);
		free(path);
		return rv ? rv : answer(c, &r, 200, print_tokens);
	}
	if (strcmp(sub, "create") == 0) {
		json_t *body = json_object();
		bool quiet = false;
		char *text;
		for (int i = 2; i < argc; i++) {
			if (strcmp(argv[i], "--user") == 0 && i + 1 < argc) {
				if (!user_arg(argv[++i])) {
					json_decref(body);
					return EXIT_USAGE;
				}
				json_object_set_new(body, "user", json_string(argv[i]));
			} else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
				json_object_set_new(body, "name", json_string(argv[++i]));
			} else if (strcmp(argv[i], "--expires") == 0 && i + 1 < argc) {
				long long s = duration_s(argv[++i]);
				if (s < 0) {
					fprintf(stderr, "loomctl: --expires: \"%s\" is not a duration such as "
					                "30d, 12h or 90m\n", argv[i]);
					json_decref(body);
					return EXIT_USAGE;
				}
				json_object_set_new(body, "expires_in", json_integer(s));
			} else if (strcmp(argv[i], "--quiet") == 0 || strcmp(argv[i], "-q") == 0) {
				quiet = true;
			} else {
				json_decref(body);
				return tokens_usage("create takes --user, --name, --expires and --quiet");
			}
		}
		text = json_dumps(body, JSON_COMPACT);
		json_decref(body);
		rv = http(c, "POST", "/api/v1/tokens", text, &r);
		free(text);
		if (rv)
			return rv;
		if (r.status != 201)
			return refused(c, &r);
		if (c->json) {
			rv = print_json(&r);
		} else {
			/* the token alone on stdout, so $(loomctl tokens create) is it */
			printf("%s\n", S(r.body, "token"));
			if (!quiet)
				fprintf(stderr,
				        "loomctl: token %lld for %s (%s); it is shown this once: loomd keeps "
				        "only its hash.  Use it as LOOM_TOKEN, or store it with `loomctl "
				        "login`.\n",
				        (long long)json_integer_value(json_object_get(r.body, "id")),
				        S(r.body, "user"),
				        json_is_string(json_object_get(r.body, "expires_at"))
				            ? S(r.body, "expires_at")
				            : "does not expire");
			rv = 0;
		}
		json_decref(r.body);
		return rv;
	}
	if (strcmp(sub, "revoke") == 0) {
		char *path = NULL;
		const char *id;
		if (argc != 3)
			return tokens_usage("revoke takes a token id (`loomctl tokens list`)");
		if ((id = id_arg(argv[2], "token", "3", "loomctl tokens list")) == NULL)
			return EXIT_USAGE;
		if (asprintf(&path, "/api/v1/tokens/%s", id) < 0)
			abort();
		rv = http(c, "DELETE", path, NULL, &r);
		free(path);
		return rv ? rv : answer(c, &r, 200, print_revoked);
	}
	return tokens_usage("unknown subcommand");
}

/* ------------------------------------------------------------------ shares */

static void
print_shares(const json_t *body)
{
	size_t i;
	json_t *s;

	printf("%-12s %-24s %-20s %-6s %s\n", "KIND", "ID", "USER", "LEVEL", "BY");
	json_array_foreach(json_object_get(body, "shares"), i, s)
		printf("%-12s %-24s %-20s %-6s %s\n", S(s, "kind"), S(s, "id"), S(s, "user"),
		       S(s, "level"), S(s, "granted_by"));
}

static void
print_unshared(const json_t *body)
{
	printf("%s %s is no longer shared with %s\n", S(body, "kind"), S(body, "id"),
	       S(body, "user"));
}

static int
share_usage(const char *why)
{
	if (why[0])
		fprintf(stderr, "loomctl: share: %s\n", why);
	fprintf(stderr, "usage: loomctl share KIND ID USER|'*' [read|write]\n"
	                "       loomctl unshare KIND ID USER|'*'\n"
	                "       loomctl shares [KIND ID]\n"
	                "KIND: task, config, run, model, alert-rule, labeling\n");
	return EXIT_USAGE;
}

/* An object id as the API takes it in a path: letters, digits, '-', '_',
 * '.' (model names, "task-3"). */
static bool
object_arg(const char *s)
{
	size_t n = strlen(s);
	bool ok = n >= 1 && n <= 100 && s[0] != '.';

	for (const char *p = s; ok && *p; p++)
		ok = isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.';
	if (!ok)
		fprintf(stderr, "loomctl: \"%s\" is not an object id (\"task-3\", a model name)\n", s);
	return ok;
}

int
cmd_share(const ctl *c, int argc, char **argv)
{
	reply r = {0};
	char *path = NULL, *text;
	json_t *body;
	int rv;

	if (strcmp(argv[0], "shares") == 0) {
		if (argc == 1) {
			path = strdup("/api/v1/shares");
		} else if (argc == 3 && object_arg(argv[1]) && object_arg(argv[2])) {
			if (asprintf(&path, "/api/v1/shares?kind=%s&id=%s", argv[1], argv[2]) < 0)
				abort();
		} else {
			return share_usage("shares takes nothing, or a kind and an id");
		}
		rv = http(c, "GET", path, NULL, &r);
		free(path);
		return rv ? rv : answer(c, &r, 200, print_shares);
	}
	if (argc < 4 || argc > (strcmp(argv[0], "share") == 0 ? 5 : 4))
		return share_usage("give a kind, an id and a user");
	if (!object_arg(argv[1]) || !object_arg(argv[2]) ||
	    (strcmp(argv[3], "*") != 0 && !user_arg(argv[3])))
		return EXIT_USAGE;
	if (strcmp(argv[0], "unshare") == 0) {
		if (asprintf(&path, "/api/v1/shares/%s/%s/%s", argv[1], argv[2],
		             strcmp(argv[3], "*") == 0 ? "%2A" : argv[3]) < 0)
			abort();
		rv = http(c, "DELETE", path, NULL, &r);
		free(path);
		return rv ? rv : answer(c, &r, 200, print_unshared);
	}
	if (argc == 5 && strcmp(argv[4], "read") != 0 && strcmp(argv[4], "write") != 0)
		return share_usage("the level is read or write");
	body = json_pack("{s:s, s:s, s:s, s:s}", "kind", argv[1], "id", argv[2], "user", argv[3],
	                 "level", argc == 5 ? argv[4] : "read");
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	rv = http(c, "POST", "/api/v1/shares", text, &r);
	free(text);
	return rv ? rv : answer(c, &r, 200, print_shares);
}

/* ------------------------------------------------------------------ whoami */

static void
print_whoami(const json_t *body)
{
	printf("%s (%s%s), signed in by %s\n", S(body, "user"), S(body, "role"),
	       json_is_true(json_object_get(body, "exec")) ? ", may run commands" : "",
	       S(body, "via"));
}

int
cmd_whoami(const ctl *c, int argc, char **argv)
{
	reply r = {0};
	int rv;

	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: loomctl whoami\n");
		return EXIT_USAGE;
	}
	rv = http(c, "GET", "/api/v1/session", NULL, &r);
	return rv ? rv : answer(c, &r, 200, print_whoami);
}

/* loomctl data: versioned datasets through /api/v1/datasets
 * (host/datasets/datasets.c, docs/datasets.md).
 *
 *   data list | create | show | rm | import | log | diff | checkout |
 *        branch | tag | merge | lock | unlock | audit | gc | quota
 *
 * import streams FILE to loomd in parts of PART_MAX bytes (never the whole
 * file in memory), then commits; whatever goes wrong after the upload
 * began, the upload is aborted so that the branch's lock is released.
 * checkout first resolves REF to its version id, so that a branch moving
 * meanwhile does not mix two versions, then pages through the version's
 * chunks until loomd says "end".
 *
 * Names (datasets, branches, tags, refs) are checked here as loomd checks
 * them, before any request: [A-Za-z0-9._-], 1..64, not starting with '.'
 * or '-'; a checked name needs no escaping in a path or a query.
 * Every read prints the API's JSON as is with --json; an answer other than
 * the expected one prints loomd's message and exits 1; bad usage exits 2. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include <loom/types.h>

#include "loomctl.h"
#include "host/core/util.h"

#define API "/api/v1/datasets"
/* An upload's part: loomd's default upload_part_max ("8M"). */
#define PART_MAX (8u << 20)
#define NAME_MAX_LEN 64
/* A request that moves data (a part, a commit, a page of a checkout) may
 * wait this long for its answer unless --timeout says otherwise: a part's
 * chunks are compressed and stored before loomd answers. */
#define TRANSFER_TIMEOUT_MS (300 * 1000)
/* how many hex digits of a version id tables show (a unique prefix of at
 * least 8 is a ref) */
#define SHORT_ID 12

/* ------------------------------------------------------------------ usage */

static const struct data_help {
	const char *name, *args, *what;
} helps[] = {
	{"list", "", "the datasets you can see: head, rows, bytes, branches and tags"},
	{"create", "NAME [--description TEXT]", "an empty dataset, its default branch main"},
	{"show", "NAME [REF]",
	 "a dataset: its branches (head, who moved it, lock) and tags; with REF, that version: "
	 "its columns and their types, rows, chunks, parents, author and message"},
	{"rm", "NAME", "delete a dataset with its refs and versions (owner or admin); its "
	               "chunks go at the next gc"},
	{"import", "NAME FILE [--branch B] [--format csv|f32|f64] [--message M] [--parent V]",
	 "commit FILE as a new version of branch B (default: the dataset's default branch; "
	 "created from the default branch's head when absent), uploaded in parts of 8 MiB "
	 "under the branch's lock; "
	 "--format defaults to f32/f64 for a LOOMARR1 array, else csv; --parent V refuses the "
	 "commit unless V is still the branch's head"},
	{"log", "NAME [REF] [--limit N]",
	 "versions, newest first, from REF (default: the default branch) along first parents"},
	{"diff", "NAME FROM TO",
	 "what changed from version FROM to TO: columns, and rows added, removed and changed "
	 "at chunk granularity, with the stored bytes TO adds"},
	{"checkout", "NAME REF [-o FILE] [--native]",
	 "write version REF as CSV (--native: as imported, a LOOMARR1 array for f32/f64) to "
	 "FILE, replaced whole, or to standard output"},
	{"branch", "NAME [BRANCH [--from REF]] [--delete BRANCH]",
	 "list the branches; make BRANCH point at REF (default: the default branch's head), "
	 "copying nothing; or delete BRANCH"},
	{"tag", "NAME [TAG REF] [--delete TAG]",
	 "list the tags; name version REF TAG (a tag never moves); or delete TAG"},
	{"merge", "NAME FROM INTO",
	 "move branch INTO to FROM's head when that is a fast-forward (no other merge is made)"},
	{"lock", "NAME BRANCH [--ttl S]",
	 "take or renew BRANCH's lock for S seconds (default: loomd's lock_ttl): other writers "
	 "are refused until it is released or expires"},
	{"unlock", "NAME BRANCH", "release BRANCH's lock (its holder, or an admin)"},
	{"audit", "NAME [--limit N] [--action A] [--user U]",
	 "who read, wrote, committed, tagged, checked out or locked what (owner or admin)"},
	{"gc", "[--grace S]",
	 "delete the chunks no version references, older than S seconds (admin)"},
	{"quota", "USER [BYTES|default]",
	 "USER's stored bytes (each chunk counts for the user who stored it first) and quota; "
	 "with BYTES (K, M, G, T suffixes; 0: no limit) or default (loomd.conf's "
	 "datasets.quota) set it (admin)"},
};
#define N_HELPS (sizeof helps / sizeof helps[0])

static const struct data_help *
help_of(const char *sub)
{
	for (size_t i = 0; sub && i < N_HELPS; i++)
		if (strcmp(helps[i].name, sub) == 0)
			return &helps[i];
	return NULL;
}

static void
print_usage(FILE *fp)
{
	fprintf(fp, "%s\n",
	        fp == stdout ? "usage: loomctl [OPTIONS] data COMMAND ..." : "loomctl: usage:");
	for (size_t i = 0; i < N_HELPS; i++)
		fprintf(fp, "  data %s%s%s\n", helps[i].name, *helps[i].args ? " " : "",
		        helps[i].args);
	fprintf(fp, "  (NAME, BRANCH, TAG: 1-64 of A-Z a-z 0-9 . _ -, not starting with '.' or '-';\n"
	            "   REF: a version id, a unique prefix of 8 or more of its hex digits, a tag or\n"
	            "   a branch; loomctl data COMMAND --help says more)\n");
}

/* loomctl data SUB --help: the command, then what it does, wrapped. */
static int
sub_help(const struct data_help *h)
{
	const char *p = h->what;

	printf("usage: loomctl data %s%s%s\n\n", h->name, *h->args ? " " : "", h->args);
	while (*p) {
		size_t n = strlen(p), cut = n;
		if (n > 76) {
			cut = 76;
			while (cut > 0 && p[cut] != ' ')
				cut--;
			if (cut == 0)
				cut = 76;
		}
		printf("  %.*s\n", (int)cut, p);
		p += cut;
		while (*p == ' ')
			p++;
	}
	printf("\n  --json prints the API's JSON; exit status 0 ok, 1 refused by loomd, 2 bad "
	       "usage,\n  3 loomd unreachable (docs/datasets.md)\n");
	return 0;
}

/* Say why (when there is a why), then how data sub is called. */
static int data_usage(const char *sub, const char *fmt, ...) LOOM_PRINTF(2, 3);

static int
data_usage(const char *sub, const char *fmt, ...)
{
	const struct data_help *h = help_of(sub);

	if (fmt != NULL) {
		va_list ap;
		fprintf(stderr, "loomctl: data%s%s: ", sub ? " " : "", sub ? sub : "");
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	if (h)
		fprintf(stderr, "loomctl: usage: data %s%s%s\n", h->name, *h->args ? " " : "",
		        h->args);
	else
		print_usage(stderr);
	return EXIT_USAGE;
}

/* ------------------------------------------------------------------ arguments */

/* Is s a dataset, branch or tag name (and so a ref)? */
static bool
name_ok(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= NAME_MAX_LEN && s[0] != '.' && s[0] != '-' &&
	       strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/* name_ok, or false after saying which argument is not one. */
static bool
check_name(const char *sub, const char *what, const char *s)
{
	if (name_ok(s))
		return true;
	fprintf(stderr, "loomctl: data %s: %s \"%s\" is not a name: give 1-64 of A-Z a-z 0-9 . _ "
	                "-, not starting with '.' or '-'\n",
	        sub, what, s);
	return false;
}

/* A ref: a name, or a version id (64 hex digits) or a prefix of one,
 * which are names too. */
static bool
check_ref(const char *sub, const char *what, const char *s)
{
	if (strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64)
		return true;
	if (name_ok(s))
		return true;
	fprintf(stderr, "loomctl: data %s: %s \"%s\" is not a ref: give a version id (or 8 or more "
	                "of its first hex digits), a tag or a branch\n",
	        sub, what, s);
	return false;
}

/* The arguments of one subcommand: positional ones and options
 * ("--name VALUE" or "--name=VALUE"; flags alone). */
typedef struct args {
	const char *pos[3];
	int npos;
	const char *description, *branch, *format, *message, *parent, *limit, *from, *del, *ttl,
		*action, *user, *grace, *output;
	bool native, help;
} args;

static const struct option_def {
	const char *name;
	size_t offset; /* of the value in args; 0 for the flag --native */
} option_defs[] = {
	{"description", offsetof(args, description)},
	{"branch", offsetof(args, branch)},
	{"format", offsetof(args, format)},
	{"message", offsetof(args, message)},
	{"parent", offsetof(args, parent)},
	{"limit", offsetof(args, limit)},
	{"from", offsetof(args, from)},
	{"delete", offsetof(args, del)},
	{"ttl", offsetof(args, ttl)},
	{"action", offsetof(args, action)},
	{"user", offsetof(args, user)},
	{"grace", offsetof(args, grace)},
	{"output", offsetof(args, output)},
	{"native", 0},
};

/* Is word in the space-separated list? */
static bool
listed(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = list; (p = strstr(p, word)) != NULL; p += n)
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
			return true;
	return false;
}

/* Split argv (argv[0] the subcommand) into a: between min and max
 * positional arguments, and the options named in allowed.  0, or
 * EXIT_USAGE after saying what is wrong; --help anywhere sets a->help. */
static int
parse(int argc, char **argv, int min, int max, const char *allowed, args *a)
{
	const char *sub = argv[0];

	memset(a, 0, sizeof *a);
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *name, *eq, *value = NULL;
		const struct option_def *def = NULL;
		size_t len;

		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			a->help = true;
			return 0;
		}
		if (strcmp(arg, "--") == 0) {
			/* the rest are positional, even those starting with '-' */
			for (i++; i < argc; i++) {
				if (a->npos == max)
					return data_usage(sub, "unexpected \"%s\"", argv[i]);
				a->pos[a->npos++] = argv[i];
			}
			break;
		}
		if (arg[0] != '-' || arg[1] == '\0') {
			if (a->npos == max)
				return data_usage(sub, "unexpected \"%s\"", arg);
			a->pos[a->npos++] = arg;
			continue;
		}
		if (strcmp(arg, "-o") == 0)
			arg = "--output";
		if (arg[1] != '-')
			return data_usage(sub, "unknown option \"%s\"", argv[i]);
		name = arg + 2;
		eq = strchr(name, '=');
		len = eq ? (size_t)(eq - name) : strlen(name);
		for (size_t k = 0; k < sizeof option_defs / sizeof option_defs[0] && !def; k++)
			if (strlen(option_defs[k].name) == len &&
			    strncmp(option_defs[k].name, name, len) == 0)
				def = &option_defs[k];
		if (def == NULL || !listed(allowed, def->name))
			return data_usage(sub, "unknown option \"%s\"", argv[i]);
		if (def->offset == 0) {
			if (eq)
				return data_usage(sub, "--%s takes no value", def->name);
			a->native = true;
			continue;
		}
		if (eq)
			value = eq + 1;
		else if (i + 1 < argc)
			value = argv[++i];
		else
			return data_usage(sub, "--%s needs a value", def->name);
		*(const char **)((char *)a + def->offset) = value;
	}
	if (a->npos < min)
		return data_usage(sub, "missing arguments");
	return 0;
}

/* A text option into body[key]; false after saying it is not UTF-8. */
static bool
text_field(json_t *body, const char *key, const char *sub, const char *opt, const char *value)
{
	json_t *v;

	if (value == NULL)
		return true;
	if ((v = json_string(value)) == NULL) {
		fprintf(stderr, "loomctl: data %s: %s: not UTF-8 text\n", sub, opt);
		return false;
	}
	json_object_set_new(body, key, v);
	return true;
}

/* "12K", "8M", "1.5G", "0": bytes (binary multiples); false after saying
 * why not. */
static bool
bytes_arg(const char *what, const char *s, long long *out)
{
	char *end;
	double v, mul = 1;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno != 0 || !(v >= 0))
		goto bad;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': mul = 1024.0; end++; break;
	case 'm': case 'M': mul = 1024.0 * 1024; end++; break;
	case 'g': case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
	case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
	default: goto bad;
	}
	if ((*end == 'i' || *end == 'I') && mul > 1)
		end++;
	if ((*end == 'b' || *end == 'B') && mul > 1)
		end++;
	if (*end != '\0' || v * mul > 9e18)
		goto bad;
	*out = (long long)(v * mul);
	return true;
bad:
	fprintf(stderr, "loomctl: data quota: %s \"%s\" is not a number of bytes (like 500M, 2G, "
	                "or 0 for no quota)\n",
	        what, s);
	return false;
}

/* ------------------------------------------------------------------ requests */

/* The request with a JSON body (NULL: none), its answer printed by print
 * when its status is ok (any 2xx when ok is 0). */
static int
request_json(const ctl *c, const char *method, const char *path, json_t *body, int ok,
             void (*print)(const json_t *))
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	reply r = {0};
	int rv = http(c, method, path, text ? text : (strcmp(method, "POST") == 0 ? "{}" : NULL), &r);

	free(text);
	if (rv != 0)
		return rv;
	if (ok == 0 && r.status >= 200 && r.status < 300)
		ok = r.status;
	if (r.status == ok && !c->json && r.body == NULL) {
		/* 204: nothing to print but that it is done */
		static const json_t *none;
		print(none);
		return 0;
	}
	return answer(c, &r, ok, print);
}

/* An array of the answer: the body itself, or its member key. */
static const json_t *
list_of(const json_t *b, const char *key)
{
	return json_is_array(b) ? b : json_object_get(b, key);
}

/* ------------------------------------------------------------------ printing */

/* "1.5 MiB" (n < 1024: "512 B") */
static const char *
human(double n, char buf[32])
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	int u = 0;

	while (n >= 1024 && u < 5) {
		n /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, 32, "%.0f B", n);
	else
		snprintf(buf, 32, "%.1f %s", n, units[u]);
	return buf;
}

/* The first SHORT_ID digits of a version id, or "-". */
static const char *
short_id(const char *id, char buf[SHORT_ID + 1])
{
	if (id == NULL || *id == '\0')
		return "-";
	snprintf(buf, SHORT_ID + 1, "%s", id);
	return buf;
}

/* The string value of the first of two keys present. */
static const char *
S2(const json_t *o, const char *k1, const char *k2)
{
	const char *v = json_string_value(json_object_get(o, k1));
	return v ? v : S(o, k2);
}

static void
print_list(const json_t *b)
{
	const json_t *list = list_of(b, "datasets"), *d;
	char h1[32], h2[32], id[SHORT_ID + 1];
	size_t i;

	printf("%-24s %-12s %-12s %12s %10s %10s %4s %4s %s\n", "DATASET", "OWNER", "HEAD", "ROWS",
	       "BYTES", "STORED", "BR", "TAGS", "DESCRIPTION");
	json_array_foreach(list, i, d) {
		const json_t *br = json_object_get(d, "branches"), *tg = json_object_get(d, "tags");
		printf("%-24s %-12s %-12s %12.0f %10s %10s %4.0f %4.0f %s\n", S(d, "name"),
		       S(d, "owner"), short_id(json_string_value(json_object_get(d, "head")), id),
		       N(d, "rows"), human(N(d, "bytes"), h1), human(N(d, "stored"), h2),
		       json_is_array(br) ? (double)json_array_size(br) : N(d, "branches"),
		       json_is_array(tg) ? (double)json_array_size(tg) : N(d, "tags"),
		       json_string_value(json_object_get(d, "description"))
		           ? json_string_value(json_object_get(d, "description"))
		           : "");
	}
	printf("(%zu dataset%s)\n", json_array_size(list), json_array_size(list) == 1 ? "" : "s");
}

static void
print_created(const json_t *b)
{
	const json_t *d = json_is_object(json_object_get(b, "dataset"))
	                      ? json_object_get(b, "dataset")
	                      : b;
	printf("dataset %s created (owner %s, default branch %s)\n", S(d, "name"), S(d, "owner"),
	       S(d, "default_branch"));
}

static void
print_lock(const json_t *lock)
{
	const char *upload = json_string_value(json_object_get(lock, "upload"));

	if (json_is_object(lock))
		printf("locked by %s until %s%s%s", S(lock, "holder"), S2(lock, "expires", "until"),
		       upload && strcmp(upload, "manual") != 0 ? ", upload " : "",
		       upload && strcmp(upload, "manual") != 0 ? upload : "");
}

static void
print_branches(const json_t *list)
{
	const json_t *br;
	char id[SHORT_ID + 1];
	size_t i;

	printf("%-24s %-12s %-16s %-24s %s\n", "BRANCH", "VERSION", "USER", "UPDATED", "LOCK");
	json_array_foreach(list, i, br) {
		printf("%-24s %-12s %-16s %-24s ", S(br, "name"),
		       short_id(json_string_value(json_object_get(br, "version")), id), S(br, "user"),
		       S2(br, "updated", "updated_at"));
		if (json_is_object(json_object_get(br, "lock")))
			print_lock(json_object_get(br, "lock"));
		else
			putchar('-');
		putchar('\n');
	}
}

static void
print_tags(const json_t *list)
{
	const json_t *t;
	char id[SHORT_ID + 1];
	size_t i;

	printf("%-24s %-12s %-16s %s\n", "TAG", "VERSION", "USER", "CREATED");
	json_array_foreach(list, i, t) {
		printf("%-24s %-12s %-16s %s\n", S(t, "name"),
		       short_id(json_string_value(json_object_get(t, "version")), id), S(t, "user"),
		       S2(t, "updated", "created"));
	}
}

static void
print_show(const json_t *d)
{
	char h1[32], h2[32];
	const json_t *tags = json_object_get(d, "tags");

	printf("dataset   %s (owner %s, created %s)\n", S(d, "name"), S(d, "owner"),
	       S2(d, "created", "created_at"));
	if (json_string_value(json_object_get(d, "description")))
		printf("about     %s\n", S(d, "description"));
	printf("head      %s of %s: %.0f rows, %s (%s stored)\n", S(d, "head"),
	       S(d, "default_branch"), N(d, "rows"), human(N(d, "bytes"), h1),
	       human(N(d, "stored"), h2));
	putchar('\n');
	print_branches(json_object_get(d, "branches"));
	if (json_array_size(tags) > 0) {
		putchar('\n');
		print_tags(tags);
	}
}

static void
print_removed(const json_t *b)
{
	(void)b;
	printf("dataset deleted; its chunks are freed by the next gc (loomctl data gc)\n");
}

static void
print_log(const json_t *b)
{
	const json_t *list = list_of(b, "versions"), *v;
	char h1[32], id[SHORT_ID + 1];
	size_t i;

	printf("%-12s %-24s %-16s %12s %10s %s\n", "VERSION", "TIME", "AUTHOR", "ROWS", "BYTES",
	       "MESSAGE");
	json_array_foreach(list, i, v) {
		printf("%-12s %-24s %-16s %12.0f %10s %s\n",
		       short_id(json_string_value(json_object_get(v, "id"))
		                    ? json_string_value(json_object_get(v, "id"))
		                    : json_string_value(json_object_get(v, "version")),
		                id),
		       S2(v, "time", "created"), S(v, "author"), N(v, "rows"), human(N(v, "bytes"), h1),
		       json_string_value(json_object_get(v, "message"))
		           ? json_string_value(json_object_get(v, "message"))
		           : "");
	}
	if (json_array_size(list) == 0)
		printf("(no versions yet: loomctl data import NAME FILE commits one)\n");
}

static void
print_names(const char *label, const json_t *arr)
{
	const json_t *v;
	size_t i;

	if (json_array_size(arr) == 0)
		return;
	printf("  columns %s:", label);
	json_array_foreach(arr, i, v)
		printf("%s %s", i ? "," : "", json_string_value(v) ? json_string_value(v) : "?");
	putchar('\n');
}

static const char *
range(const json_t *side, char buf[64])
{
	double row = N(side, "row"), rows = N(side, "rows");

	if (rows <= 0)
		snprintf(buf, 64, "-");
	else if (rows == 1)
		snprintf(buf, 64, "row %.0f", row + 1);
	else
		snprintf(buf, 64, "rows %.0f-%.0f", row + 1, row + rows);
	return buf;
}

/* the refs diff was given, for its heading */
static const char *diff_from, *diff_to;

static void
print_diff(const json_t *b)
{
	const json_t *cols = json_object_get(b, "columns"), *rows = json_object_get(b, "rows"), *h;
	char h1[32], ra[64], rb[64], ia[SHORT_ID + 1], ib[SHORT_ID + 1];
	size_t i;

	printf("diff %s (%s)..%s (%s): ", diff_from,
	       short_id(json_string_value(json_object_get(b, "from")), ia), diff_to,
	       short_id(json_string_value(json_object_get(b, "to")), ib));
	if (json_is_true(json_object_get(b, "same"))) {
		printf("the same rows and columns\n");
		return;
	}
	printf("%.0f rows added, %.0f removed, %.0f changed, %.0f the same; %.0f chunks the same, "
	       "%s new\n",
	       N(rows, "added"), N(rows, "removed"), N(rows, "changed"), N(rows, "same"),
	       N(b, "chunks_same"), human(N(b, "bytes_new"), h1));
	print_names("added", json_object_get(cols, "added"));
	print_names("removed", json_object_get(cols, "removed"));
	print_names("with another type", json_object_get(cols, "changed"));
	if (json_is_true(json_object_get(b, "coarse")))
		printf("  (too many edits to align: one changed region between the common start and "
		       "end)\n");
	json_array_foreach(json_object_get(b, "hunks"), i, h) {
		printf("  %-8s %-24s -> %s\n", S(h, "op"), range(json_object_get(h, "a"), ra),
		       range(json_object_get(h, "b"), rb));
	}
	if (json_is_true(json_object_get(b, "hunks_truncated")))
		printf("  (more hunks: --json with the API's max_hunks shows them)\n");
}

static void
print_branch_list(const json_t *b)
{
	print_branches(list_of(b, "branches"));
}

static void
print_tag_list(const json_t *b)
{
	print_tags(list_of(b, "tags"));
}

static void
print_ref_made(const json_t *b)
{
	char id[SHORT_ID + 1];
	const json_t *o = json_is_object(json_object_get(b, "branch")) ? json_object_get(b, "branch")
	                  : json_is_object(json_object_get(b, "tag")) ? json_object_get(b, "tag")
	                                                              : b;
	printf("%s -> %s\n", S(o, "name"),
	       short_id(json_string_value(json_object_get(o, "version")), id));
}

static void
print_ref_deleted(const json_t *b)
{
	(void)b;
	printf("deleted (no version is removed; loomctl data gc frees what nothing references)\n");
}

static void
print_merged(const json_t *b)
{
	char ia[SHORT_ID + 1], ib[SHORT_ID + 1];

	if (json_is_true(json_object_get(b, "up_to_date")))
		printf("%s is at %s already: nothing to merge\n", S(b, "branch"), S(b, "version"));
	else
		printf("%s fast-forwarded from %s to %s\n", S(b, "branch"),
		       short_id(json_string_value(json_object_get(b, "previous")), ia),
		       short_id(json_string_value(json_object_get(b, "version")), ib));
}

static void
print_locked(const json_t *b)
{
	const json_t *lock = json_is_object(json_object_get(b, "lock")) ? json_object_get(b, "lock")
	                                                                : b;
	printf("branch %s ", S(b, "branch"));
	print_lock(lock);
	putchar('\n');
}

static void
print_unlocked(const json_t *b)
{
	(void)b;
	printf("unlocked\n");
}

static void
print_audit(const json_t *b)
{
	const json_t *list = list_of(b, "audit"), *e;
	char h1[32], id[SHORT_ID + 1], rid[SHORT_ID + 1];
	size_t i;

	printf("%-24s %-16s %-12s %-12s %-16s %10s %s\n", "TIME", "USER", "ACTION", "VERSION", "REF",
	       "BYTES", "DETAIL");
	json_array_foreach(list, i, e) {
		const json_t *detail = json_object_get(e, "detail");
		char *d = json_is_string(detail) ? NULL
		          : detail && !json_is_null(detail)
		              ? json_dumps(detail, JSON_COMPACT | JSON_ENCODE_ANY)
		              : NULL;
		const char *ref = json_string_value(json_object_get(e, "ref"));
		/* a version id as the ref (a checkout pages by id): as short as the
		 * version's */
		if (ref && strlen(ref) == 64 && strspn(ref, "0123456789abcdef") == 64)
			ref = short_id(ref, rid);
		printf("%-24s %-16s %-12s %-12s %-16s %10s %s\n", S(e, "time"), S(e, "user"),
		       S(e, "action"), short_id(json_string_value(json_object_get(e, "version")), id),
		       ref ? ref : "-",
		       json_is_number(json_object_get(e, "bytes")) ? human(N(e, "bytes"), h1) : "-",
		       json_is_string(detail) ? json_string_value(detail) : d ? d : "");
		free(d);
	}
	printf("(%zu entr%s)\n", json_array_size(list), json_array_size(list) == 1 ? "y" : "ies");
}

static void
print_gc(const json_t *b)
{
	char h1[32];

	printf("gc: %.0f chunks deleted (%s), %.0f versions deleted, %.0f chunks kept\n",
	       N(b, "chunks_deleted"), human(N(b, "bytes_deleted"), h1), N(b, "versions_deleted"),
	       N(b, "chunks_kept"));
}

static void
print_quota(const json_t *b)
{
	char h1[32], h2[32];
	double max = N(b, "max_bytes");

	printf("%s: %s stored, quota %s%s\n", S(b, "user"), human(N(b, "used_bytes"), h1),
	       max > 0 ? human(max, h2) : "none",
	       json_is_true(json_object_get(b, "default")) ? " (the default)" : "");
}

/* ------------------------------------------------------------------ simple subcommands */

static int
data_list(const ctl *c, int argc, char **argv)
{
	args a;
	int rv;

	if ((rv = parse(argc, argv, 0, 0, "", &a)) != 0 || a.help)
		return rv ? rv : sub_help(help_of("list"));
	return request_json(c, "GET", API, NULL, 200, print_list);
}

static int
data_create(const ctl *c, int argc, char **argv)
{
	json_t *body;
	args a;
	int rv;

	if ((rv = parse(argc, argv, 1, 1, "description", &a)) != 0 || a.help)
		return rv ? rv : sub_help(help_of("create"));
	if (!check_name("create", "NAME", a.pos[0]))
		return EXIT_USAGE;
	body = json_pack("{s:s}", "name", a.pos[0]);
	if (!text_field(body, "description", "create", "--description", a.description)) {
		json_decref(body);
		return EXIT_USAGE;
	}
	rv = request_json(c, "POST", API, body, 201, print_created);
	json_decref(body);
	return rv;
}

/* SUB NAME: one request on the dataset's path. */
static int
by_name(const ctl *c, int argc, char **argv, const char *method, int ok,
        void (*print)(const json_t *))
{
	char *path;
	args a;
	int rv;

	if ((rv = parse(argc, argv, 1, 1, "", &a)) != 0 || a.help)
		return rv ? rv : sub_help(help_of(argv[0]));
	if (!check_name(argv[0], "NAME", a.pos[0]))
		return EXIT_USAGE;
	path = loomi_strfmt(API "/%s", a.pos[0]);
	rv = request_json(c, method, path, NULL, ok, print);
	free(path);
	return rv;
}

static void
print_version(const json_t *v)
{
	const json_t *cols = json_object_get(v, "columns"), *col, *parents = json_object_get(v, "parents");
	char h1[32], h2[32];
	size_t i;

	printf("version   %s of %s\n", S(v, "id"), S(v, "dataset"));
	printf("author    %s at %s\n", S(v, "author"), S2(v, "time", "created"));
	printf("message   %s\n", S(v, "message"));
	printf("parents  ");
	json_array_foreach(parents, i, col)
		printf(" %s", json_string_value(col) ? json_string_value(col) : "?");
	printf("%s\n", json_array_size(parents) ? "" : " (none: the first version)");
	printf("data      %s, %.0f rows, %s in %.0f chunks (%s stored)\n", S(v, "format"),
	       N(v, "rows"), human(N(v, "bytes"), h1), N(v, "chunks"), human(N(v, "stored"), h2));
	printf("\n%-32s %s\n", "COLUMN", "TYPE");
	json_array_foreach(cols, i, col)
		printf("%-32s %s\n", S(col, "name"), S(col, "type"));
}

static int
data_show(const ctl *c, int argc, char **argv)
{
	char *path;
	args a;
	int rv;

	if ((rv = parse(argc, argv, 1, 2, "", &a)) != 0 || a.help)
		return rv ? rv : sub_help(help_of("show"));
	if (!check_name("show", "NAME", a.pos[0]) ||
	    (a.npos == 2 && !check_ref("show", "REF", a.pos[1])))
		return EXIT_USAGE;
	if (a.npos == 2) {
		path = loomi_strfmt(API "/%s/versions/%s", a.pos[0], a.pos[1]);
		rv = request_json(c, "GET", path, NULL, 200, print_version);
	} else {
		path = loomi_strfmt(API "/%s", a.pos[0]);
		rv = request_json(c, "GET", path, NULL, 200, print_show);
	}
	free(path);
	return rv;
}

static int
data_rm(const ctl *c, int argc, char **argv)
{
	return by_name(c, argc, argv, "DELETE", 0, print_removed);
}

static int
data_log(const ctl *c, int argc, char **argv)
{
	char *path;
	args a;
	int rv;

	if ((rv = parse(argc, argv, 1, 2, "limit", &a)) != 0 || a.help)
		return rv ? rv : sub_help(help_of("log"));
	if (!check_name("log", "NAME", a.pos[0]) ||
	    (a.npos == 2 && !check_ref("log", "REF", a.pos[1])) ||
	    (a.limit && !number_arg("--limit", a.limit)))
		return EXIT_USAGE;
	path = loomi_strfmt(API "/%s/versions?%s%s%s%s", a.pos[0], a.npos == 2 ? "ref=" : "",
	                    a.npos == 2 ? a.pos[1] : "", a.limit ? "&limit=" : "",
	                    a.limit ? a.limit : "");
	rv = request_json(c, "GET", path, NULL, 200, print_log);
	free(path);
	return rv;
}

static int
data_diff(const ctl *c, int argc, char **argv)
{
	char *path;
	args a;
	int rv;

	if ((rv = parse(argc, argv, 3, 3, "", &a)) != 0 || a.help)
		return rv ? rv : sub_help(help_of("diff"));
	if (!check_name("diff", "NAME", a.pos[0]) || !check_ref("diff", "FROM", a.pos[1]) ||
	    !check_ref("diff", "TO", a.pos[2]))
		return EXIT_USAGE;
	diff_from = a.pos[1];
	diff_to = a.pos[2];
	path = loomi_strfmt(API "/%s/diff?from=%s&to=%s", a.pos[0], a.pos[1], a.pos[2]);
	rv = request_json(c, "GET", path, NULL, 200, print_diff);
	free(path);
	return rv;
}

static int
data_branch(const ctl *c, int argc, char **argv)
{
	char *path;
	json_t *body = NULL;
	args a;
	int rv;

	if ((rv = parse(argc, argv, 1, 2, "from delete", &a)) != 0 || a.help)
		return rv ? rv : sub_help(help_of("branch"));
	if (!check_name("branch", "NAME", a.pos[0]))
		return EXIT_USAGE;
	if (a.del) {
		if (a.npos != 1 || a.from)
			return data_usage("branch", "--delete BRANCH takes no other branch or --from");
		if (!check_name("branch", "BRANCH", a.del))
			return EXIT_USAGE;
		path = loomi_strfmt(API "/%s/branches/%s", a.pos[0], a.del);
		rv = request_json(c, "DELETE", path, NULL, 0, print_ref_deleted);
	} else if (a.npos == 1) {
		if (a.from)
			return data_usage("branch", "--from REF goes with the BRANCH to make");
		path = loomi_strfmt(API "/%s/branches", a.pos[0]);
		rv = request_json(c, "GET", path, NULL, 200, print_branch_list);
	} else {
		if (!check_name("branch", "BRANCH", a.pos[1]) ||
		    (a.from && !check_ref("branch", "--from", a.from)))
			return EXIT_USAGE;
		body = json_pack("{s:s}", "name", a.pos[1]);
		if (a.from)
			json_object_set_new(body, "from", json_string(a.from));
		path = loomi_strfmt(API "/%s/branches", a.pos[0]);
		rv = request_json(c, "POST", path, body, 201, print_ref_made);
	}
	json_decref(body);
	free(path);
	return rv;
}

static int
data_tag(const ctl *c, int argc, char **argv)
{
	char *path;
	json_t *body = NULL;
	args a;
	int rv;

	if ((rv = parse(argc, argv, 1, 3, "delete", &a)) != 0 || a.help)
		return rv ? rv : sub_help(help_of("tag"));
	if (!check_name("tag", "NAME", a.pos[0]))
		return EXIT_USAGE;
	if (a.del) {
		if (a.npos != 1)
			return data_usage("tag", "--delete TAG takes no other tag or ref");
		if (!check_name("tag", "TAG", a.del))
			return EXIT_USAGE;
		path = loomi_strfmt(API "/%s/tags/%s", a.pos[0], a.del);
		rv = request_json(c, "DELETE", path, NULL, 0, print_ref_deleted);
	} else if (a.npos == 1) {
		path = loomi_strfmt(API "/%s/tags", a.pos[0]);
		rv = request_json(c, "GET", path, NULL, 200, print_tag_list);
	} else if (a.npos == 2) {
		return data_usage("tag", "give the REF that TAG names (a version id, a tag or a "
		                         "branch)");
	} else {
		if (!check_name("tag", "TAG", a.pos[1]) || !check_ref("tag", "REF", a.pos[2]))
			return EXIT_USAGE;
		body = json_pack("{s:s, s:s}", "name", a.pos[1], "ref", a.pos[2]);
		path = loomi_strfmt(API "/%s/tags", a.pos[0]);
		rv = request_json(c, "POST", path, body, 201, print_ref_made);
	}
	json_decref(body);
	free(path);
	return rv;
}

static int
data_merge(const ctl *c, int argc, char **argv)
{
	char *path;
	json_t *body;
	args a;
	int rv;

	if ((rv = parse(argc, argv, 3, 3, "", &a)) != 0 || a.help)
		return rv ? rv : sub_help(help_of("merge"));
	if (!check_name("merge", "NAME", a.pos[0]) || !check_name("merge", "FROM", a.pos[1]) ||
	    !check_name("merge", "INTO", a.pos[2]))
		return EXIT_USAGE;
	body = json_pack("{s:s, s:s}", "into", a.pos[2], "from", a.pos[1]);
	path = loomi_strfmt(API "/%s/merge", a.pos[0]);
	rv = request_json(c, "POST", path, body, 0, print_merged);
	json_decref(body);
	free(path);
	return rv;
}

static int
data_lock(const ctl *c, int argc, char **argv)
{
	bool lock = strcmp(argv[0], "lock") == 0;
	char *path;
	json_t *body = NULL;
	args a;
	int rv;

	if ((rv = parse(argc, argv, 2, 2, lock ? "ttl" : "", &a)) != 0 || a.help)
		return rv ? rv : sub_help(help_of(argv[0]));
	if (!check_name(argv[0], "NAME", a.pos[0]) || !check_name(argv[0], "BRANCH", a.pos[1]) ||
	    (a.ttl && !number_arg("--ttl", a.ttl)))
		return EXIT_USAGE;
	path = loomi_strfmt(API "/%s/branches/%s/lock", a.pos[0], a.pos[1]);
	if (lock) {
		body = json_object();
		if (a.ttl)
			json_object_set_new(body, "ttl", json_integer(strtoll(a.ttl, NULL, 10)));
		rv = request_json(c, "POST", path, body, 0, print_locked);
	} else {
		rv = request_json(c, "DELETE", path, NULL, 0, print_unlocked);
	}
	json_decref(body);
	free(path);
	return rv;
}

static int
data_audit(const ctl *c, int argc, char **argv)
{
	char *path, *user = NULL, *action = NULL;
	args a;
	int rv;

	if ((rv = parse(argc, argv, 1, 1, "limit action user", &a)) != 0 || a.help)
		return rv ? rv : sub_help(help_of("audit"));
	if (!check_name("audit", "NAME", a.pos[0]) || (a.limit && !number_arg("--limit", a.limit)))
		return EXIT_USAGE;
	if (a.action && strspn(a.action, "abcdefghijklmnopqrstuvwxyz_-") != strlen(a.action)) {
		fprintf(stderr, "loomctl: data audit: --action \"%s\" is not an action (import, "
		                "commit, checkout, tag, lock, …: lower-case letters)\n",
		        a.action);
		return EXIT_USAGE;
	}
	if (a.user)
		user = path_segment(a.user);
	if (a.action)
		action = loomi_strdup(a.action);
	path = loomi_strfmt(API "/%s/audit?%s%s%s%s%s%s", a.pos[0], a.limit ? "limit=" : "",
	                    a.limit ? a.limit : "", action ? "&action=" : "", action ? action : "",
	                    user ? "&user=" : "", user ? user : "");
	rv = request_json(c, "GET", path, NULL, 200, print_audit);
	free(path);
	free(user);
	free(action);
	return rv;
}

static int
data_gc(const ctl *c, int argc, char **argv)
{
	json_t *body;
	args a;
	int rv;

	if ((rv = parse(argc, argv, 0, 0, "grace", &a)) != 0 || a.help)
		return rv ? rv : sub_help(help_of("gc"));
	if (a.grace && !number_arg("--grace", a.grace))
		return EXIT_USAGE;
	body = json_object();
	if (a.grace)
		json_object_set_new(body, "grace_s", json_integer(strtoll(a.grace, NULL, 10)));
	rv = request_json(c, "POST", API "/gc", body, 200, print_gc);
	json_decref(body);
	return rv;
}

static int
data_quota(const ctl *c, int argc, char **argv)
{
	char *user, *path;
	json_t *body = NULL;
	long long max = 0;
	args a;
	int rv;

	if ((rv = parse(argc, argv, 1, 2, "", &a)) != 0 || a.help)
		return rv ? rv : sub_help(help_of("quota"));
	if (a.npos == 2 && strcmp(a.pos[1], "default") != 0 && !bytes_arg("BYTES", a.pos[1], &max))
		return EXIT_USAGE;
	if (a.pos[0][0] == '\0') {
		fprintf(stderr, "loomctl: data quota: give a USER name\n");
		return EXIT_USAGE;
	}
	user = path_segment(a.pos[0]);
	path = loomi_strfmt(API "/quotas/%s", user);
	free(user);
	if (a.npos == 2) {
		body = strcmp(a.pos[1], "default") == 0
		           ? json_pack("{s:n}", "max_bytes")
		           : json_pack("{s:I}", "max_bytes", (json_int_t)max);
		rv = request_json(c, "PUT", path, body, 200, print_quota);
	} else {
		rv = request_json(c, "GET", path, NULL, 200, print_quota);
	}
	json_decref(body);
	free(path);
	return rv;
}

/* ------------------------------------------------------------------ import */

static volatile sig_atomic_t interrupted;

static void
on_signal(int sig)
{
	interrupted = sig;
}

/* Read up to n bytes (less only at the end of the file): the count, or -1
 * with errno. */
static ssize_t
read_full(int fd, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t k = read(fd, (char *)buf + got, n - got);
		if (k < 0 && errno == EINTR) {
			if (interrupted)
				return -1;
			continue;
		}
		if (k < 0)
			return -1;
		if (k == 0)
			break;
		got += (size_t)k;
	}
	return (ssize_t)got;
}

/* The format of a file that starts with head (n bytes): f32/f64 for a
 * LOOMARR1 array, else csv; a format given is checked against the file:
 * an array must have the header of its element size.  NULL after saying
 * why. */
static const char *
file_format(const char *file, const char *given, const unsigned char *head, size_t n)
{
	bool array = n >= 16 && memcmp(head, "LOOMARR1", 8) == 0;
	int size = array ? head[8] : 0;

	if (given == NULL)
		return !array ? "csv" : size == 8 ? "f64" : "f32";
	if (strcmp(given, "csv") == 0)
		return given;
	if (strcmp(given, "f32") != 0 && strcmp(given, "f64") != 0) {
		data_usage("import", "--format \"%s\": give csv, f32 or f64", given);
		return NULL;
	}
	if (!array) {
		fprintf(stderr, "loomctl: data import: %s does not start with the LOOMARR1 header an "
		                "%s array needs (\"LOOMARR1\", the element size, the column count and "
		                "names: docs/datasets.md); give --format csv for a CSV file\n",
		        file, given);
		return NULL;
	}
	if (size != (given[1] == '3' ? 4 : 8)) {
		fprintf(stderr, "loomctl: data import: %s holds elements of %d bytes, not those of "
		                "%s; give --format %s\n",
		        file, size, given, size == 8 ? "f64" : "f32");
		return NULL;
	}
	return given;
}

/* Abort upload (DELETE) so that its lock is released.  loomd may have
 * aborted it already (a quota refused: 404, not worth a word), or still
 * be storing a part whose answer timed out here (409 "busy"): that is
 * retried for a while. */
static void
abort_upload(const ctl *c, const char *name, const char *upload)
{
	char *path = loomi_strfmt(API "/%s/uploads/%s", name, upload);
	reply r = {0};
	int rv;

	for (int tries = 0;; tries++) {
		const char *code;
		json_decref(r.body);
		r.body = NULL;
		if ((rv = http(c, "DELETE", path, NULL, &r)) != 0)
			break;
		code = json_string_value(json_object_get(json_object_get(r.body, "error"), "code"));
		if (r.status != 409 || code == NULL || strcmp(code, "busy") != 0 || tries == 120)
			break;
		nng_msleep(500);
	}
	if (rv == 0 && r.status >= 300 && r.status != 404)
		refused(c, &r);
	if (rv != 0 || (r.status >= 300 && r.status != 404))
		fprintf(stderr, "loomctl: data import: upload %s could not be aborted; its lock on the "
		                "branch expires by itself (datasets.lock_ttl)\n",
		        upload);
	json_decref(r.body);
	free(path);
}

static void
progress(const char *name, uint64_t done, uint64_t total, bool last)
{
	char h1[32], h2[32];
	/* straight to the terminal: the \r must pass (stderr is filtered) */
	dprintf(STDERR_FILENO, "\r\033[Kimport %s: %s of %s (%.0f%%)%s", name, human((double)done, h1),
	        human((double)total, h2), total ? 100.0 * (double)done / (double)total : 100.0,
	        last ? ", committing…" : "");
}

static void
print_committed(const json_t *b, const char *name)
{
	char h1[32], h2[32], h3[32];

	printf("version %s\n", S(b, "version"));
	printf("  %s/%s: %.0f rows, %s (%s stored), %s new in %.0f of %.0f chunks\n", name,
	       S(b, "branch"),
	       N(b, "rows"), human(N(b, "bytes"), h1), human(N(b, "stored"), h2),
	       human(N(b, "new_bytes"), h3), N(b, "new_chunks"), N(b, "chunks"));
}

static int
data_import(const ctl *c, int argc, char **argv)
{
	const char *name, *file, *branch, *format, *upload;
	unsigned char head[16];
	char *path = NULL, *buf = NULL, *parent = NULL;
	json_t *body = NULL, *up = NULL;
	struct sigaction sa = {0}, old[3];
	static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
	bool tty = isatty(STDERR_FILENO) && !c->json, handlers = false;
	ctl lc;
	uint64_t sent = 0, total;
	struct stat st;
	reply r = {0};
	ssize_t n;
	size_t part;
	args a;
	int fd = -1, rv;

	if ((rv = parse(argc, argv, 2, 2, "branch format message parent", &a)) != 0 || a.help)
		return rv ? rv : sub_help(help_of("import"));
	if (!c->timeout_given) {
		lc = *c;
		lc.timeout_ms = TRANSFER_TIMEOUT_MS;
		c = &lc;
	}
	name = a.pos[0];
	file = a.pos[1];
	branch = a.branch;
	if (!check_name("import", "NAME", name) ||
	    (branch && !check_name("import", "--branch", branch)) ||
	    (a.parent && !check_ref("import", "--parent", a.parent)))
		return EXIT_USAGE;
	/* the file: readable, regular, not empty */
	if ((fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		fprintf(stderr, "loomctl: data import: cannot read %s: %s\n", file, strerror(errno));
		return EXIT_USAGE;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "loomctl: data import: %s is not a regular file (a %s); give a CSV file "
		                "or a LOOMARR1 array\n",
		        file, S_ISDIR(st.st_mode) ? "directory" : "pipe, device or socket");
		close(fd);
		return EXIT_USAGE;
	}
	total = (uint64_t)st.st_size;
	if (total == 0) {
		fprintf(stderr, "loomctl: data import: %s is empty; a CSV file needs at least its header "
		                "line\n",
		        file);
		close(fd);
		return EXIT_USAGE;
	}
	if ((n = pread(fd, head, sizeof head, 0)) < 0) {
		fprintf(stderr, "loomctl: data import: cannot read %s: %s\n", file, strerror(errno));
		close(fd);
		return EXIT_USAGE;
	}
	if ((format = file_format(file, a.format, head, (size_t)n)) == NULL) {
		close(fd);
		return EXIT_USAGE;
	}

	/* the upload: the branch's lock is ours from here until commit or abort */
	/* without --branch, loomd takes the dataset's default branch */
	body = json_pack("{s:s}", "format", format);
	if (branch)
		json_object_set_new(body, "branch", json_string(branch));
	if (a.parent)
		json_object_set_new(body, "parent", json_string(a.parent));
	{
		char *text = json_dumps(body, JSON_COMPACT);
		path = loomi_strfmt(API "/%s/uploads", name);
		rv = http(c, "POST", path, text, &r);
		free(text);
		free(path);
		path = NULL;
	}
	json_decref(body);
	body = NULL;
	if (rv != 0)
		goto out;
	if (r.status != 201) {
		rv = refused(c, &r);
		goto out;
	}
	up = r.body;
	r.body = NULL;
	upload = json_string_value(json_object_get(up, "upload"));
	if (upload == NULL || !name_ok(upload)) {
		fprintf(stderr, "loomctl: data import: loomd answered the upload without an upload id "
		                "loomctl can use (\"%s\")\n",
		        S(up, "upload"));
		rv = EXIT_REFUSED;
		goto out;
	}
	if (json_string_value(json_object_get(up, "parent")))
		parent = loomi_strdup(json_string_value(json_object_get(up, "parent")));

	/* a signal aborts the upload between parts rather than leaving the
	 * lock held until it expires */
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	for (int i = 0; i < 3; i++)
		sigaction(sigs[i], &sa, &old[i]);
	handlers = true;

	buf = loomi_xmalloc(PART_MAX);
	for (part = 0;; part++) {
		outgoing q = {.method = "PUT", .ctype = "application/octet-stream", .body = buf};
		if ((n = read_full(fd, buf, PART_MAX)) < 0) {
			if (tty)
				dprintf(STDERR_FILENO, "\n");
			if (interrupted)
				fprintf(stderr, "loomctl: data import: interrupted; upload %s aborted, "
				                "nothing committed\n",
				        upload);
			else
				fprintf(stderr, "loomctl: data import: cannot read %s: %s; upload %s aborted, "
				                "nothing committed\n",
				        file, strerror(errno), upload);
			abort_upload(c, name, upload);
			rv = EXIT_REFUSED;
			goto out;
		}
		if (n == 0)
			break;
		q.len = (size_t)n;
		q.path = path = loomi_strfmt(API "/%s/uploads/%s/parts/%zu", name, upload, part);
		rv = exchange_req(c, &q, &r);
		free(path);
		path = NULL;
		if (rv == 0 && (r.status < 200 || r.status >= 300)) {
			if (tty)
				dprintf(STDERR_FILENO, "\n");
			rv = refused(c, &r);
			fprintf(stderr, "loomctl: data import: part %zu of %s (bytes %" PRIu64 "-%" PRIu64
			                ") refused; upload %s aborted, nothing committed\n",
			        part, file, sent, sent + (uint64_t)n, upload);
		}
		json_decref(r.body);
		r.body = NULL;
		if (rv != 0) {
			abort_upload(c, name, upload);
			goto out;
		}
		sent += (uint64_t)n;
		if (tty)
			progress(name, sent, total > sent ? total : sent, (size_t)n < PART_MAX);
		if (interrupted) {
			if (tty)
				dprintf(STDERR_FILENO, "\n");
			fprintf(stderr, "loomctl: data import: interrupted; upload %s aborted, nothing "
			                "committed\n",
			        upload);
			abort_upload(c, name, upload);
			rv = EXIT_REFUSED;
			goto out;
		}
		if ((size_t)n < PART_MAX)
			break;
	}

	/* the commit: loomd refuses it (409 conflict) if the branch moved */
	{
		char *text, *msg = NULL;
		const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
		if (a.message == NULL)
			msg = loomi_strfmt("import %s", base);
		body = json_object();
		if (!text_field(body, "message", "import", "--message", a.message ? a.message : msg)) {
			/* a file name that is not UTF-8: a message without it */
			json_object_set_new(body, "message", json_string("import"));
		}
		free(msg);
		if (a.parent)
			json_object_set_new(body, "parent", json_string(parent ? parent : a.parent));
		text = json_dumps(body, JSON_COMPACT);
		path = loomi_strfmt(API "/%s/uploads/%s/commit", name, upload);
		rv = http(c, "POST", path, text, &r);
		free(text);
	}
	if (tty)
		dprintf(STDERR_FILENO, "\r\033[K");
	if (rv != 0) {
		abort_upload(c, name, upload);
		goto out;
	}
	if (r.status != 201) {
		rv = refused(c, &r);
		if (r.status == 409)
			fprintf(stderr, "loomctl: data import: nothing committed: import again onto the "
			                "branch's new head, or onto a branch of your own (--branch)\n");
		abort_upload(c, name, upload);
		goto out;
	}
	if (c->json)
		print_json(&r);
	else
		print_committed(r.body, name);
out:
	if (handlers)
		for (int i = 0; i < 3; i++)
			sigaction(sigs[i], &old[i], NULL);
	if (fd >= 0)
		close(fd);
	free(buf);
	free(path);
	free(parent);
	json_decref(body);
	json_decref(up);
	json_decref(r.body);
	return rv;
}

/* ------------------------------------------------------------------ checkout */

/* A page's body as it arrives: written through, never held whole. */
static int
page_sink(void *arg, const void *data, size_t n)
{
	return fwrite(data, 1, n, arg) == n ? 0 : errno ? errno : EIO;
}

/* ---- into a file: two pages in flight.  As soon as a page's head says
 * which chunk comes next and how long the page is, the next page is asked
 * for on a second connection, its body written at its place in the file
 * (pwrite): loomd decompresses and checks page k+1 while page k crosses the
 * connection and is written. */

typedef struct page {
	const ctl *c;
	const char *name, *id, *fmt;
	int fd;
	uint64_t from, off; /* its first chunk; where its body goes in the file */
	pthread_t tid;
	bool tid_ok;
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	bool head, done;
	size_t len; /* the body's length, from its head */
	char *next; /* X-Loom-Chunks-Next, from its head */
	uint64_t written;
	reply r;
	int rv;
} page;

static void
page_head(void *arg, const char *header, size_t len)
{
	page *p = arg;

	pthread_mutex_lock(&p->mtx);
	p->next = header ? loomi_strdup(header) : NULL;
	p->head = true;
	p->len = len;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mtx);
}

static int
page_pwrite(void *arg, const void *data, size_t n)
{
	page *p = arg;
	const char *d = data;

	while (n > 0) {
		ssize_t k = pwrite(p->fd, d, n, (off_t)(p->off + p->written));
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		d += k;
		n -= (size_t)k;
		p->written += (uint64_t)k;
	}
	return 0;
}

static void *
page_main(void *arg)
{
	page *p = arg;
	char *path = loomi_strfmt(API "/%s/versions/%s/data?from=%" PRIu64 "&format=%s", p->name,
	                          p->id, p->from, p->fmt);
	outgoing q = {.method = "GET",
	              .path = path,
	              .text = true,
	              .header = "X-Loom-Chunks-Next",
	              .sink = page_pwrite,
	              .on_head = page_head,
	              .sink_arg = p};
	int rv = exchange_req(p->c, &q, &p->r);

	free(path);
	pthread_mutex_lock(&p->mtx);
	p->rv = rv;
	p->done = true;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mtx);
	return NULL;
}

static page *
page_start(const page *tmpl, uint64_t from, uint64_t off)
{
	page *p = loomi_xcalloc(1, sizeof *p);

	p->c = tmpl->c;
	p->name = tmpl->name;
	p->id = tmpl->id;
	p->fmt = tmpl->fmt;
	p->fd = tmpl->fd;
	p->from = from;
	p->off = off;
	pthread_mutex_init(&p->mtx, NULL);
	pthread_cond_init(&p->cv, NULL);
	if (pthread_create(&p->tid, NULL, page_main, p) != 0)
		page_main(p); /* no thread: this page alone, in this one */
	else
		p->tid_ok = true;
	return p;
}

/* Wait for the page's exchange to end: its result. */
static int
page_end_keep(page *p)
{
	if (p->tid_ok) {
		pthread_join(p->tid, NULL);
		p->tid_ok = false;
	}
	return p->rv;
}

/* Wait for it and free it: its result. */
static int
page_end(page *p)
{
	int rv;

	if (p == NULL)
		return 0;
	rv = page_end_keep(p);
	free(p->next);
	free(p->r.text);
	free(p->r.header);
	json_decref(p->r.body);
	pthread_mutex_destroy(&p->mtx);
	pthread_cond_destroy(&p->cv);
	free(p);
	return rv;
}

/* The pages of version id into fd: 0 with *bytes, or an exit status after
 * saying why. */
static int
checkout_pipelined(const ctl *c, const char *name, const char *id, bool native, int fd,
                   uint64_t *bytes)
{
	page tmpl = {.c = c, .name = name, .id = id, .fmt = native ? "native" : "csv", .fd = fd};
	page *cur = page_start(&tmpl, 0, 0), *nxt;
	int rv = 0;

	*bytes = 0;
	for (;;) {
		unsigned long long next = 0;
		bool end = false;
		char *e;
		int rv2;

		/* its head (or its end): then the next page is asked for */
		pthread_mutex_lock(&cur->mtx);
		while (!cur->head && !cur->done)
			pthread_cond_wait(&cur->cv, &cur->mtx);
		pthread_mutex_unlock(&cur->mtx);
		nxt = NULL;
		if (cur->head && cur->next != NULL) {
			if (strcmp(cur->next, "end") == 0) {
				end = true;
			} else {
				errno = 0;
				next = strtoull(cur->next, &e, 10);
				if (errno == 0 && *e == '\0' && e != cur->next && next > cur->from)
					nxt = page_start(&tmpl, next, cur->off + cur->len);
			}
		}
		rv = page_end_keep(cur);
		if (rv == 0 && cur->r.status != 200) {
			rv = refused(c, &cur->r);
		} else if (rv == 0 && cur->next == NULL) {
			fprintf(stderr, "loomctl: data checkout: loomd's answer for chunks from %" PRIu64
			                " has no X-Loom-Chunks-Next header; is it older than datasets?\n",
			        cur->from);
			rv = EXIT_REFUSED;
		} else if (rv == 0 && !end && nxt == NULL) {
			fprintf(stderr, "loomctl: data checkout: loomd answered chunks from %" PRIu64
			                " with X-Loom-Chunks-Next \"%s\", not a later chunk or \"end\"; "
			                "stopping\n",
			        cur->from, cur->next);
			rv = EXIT_REFUSED;
		} else if (rv == 0 && cur->written != cur->len) {
			fprintf(stderr, "loomctl: data checkout: the page from chunk %" PRIu64 " ended "
			                "after %" PRIu64 " of its %zu bytes\n",
			        cur->from, cur->written, cur->len);
			rv = EXIT_UNREACHABLE;
		}
		if (rv == 0)
			*bytes += cur->written;
#ifdef SYNC_FILE_RANGE_WRITE
		/* the disk writes this page while the next ones arrive: the fsync
		 * at the end has little left to wait for */
		if (rv == 0)
			(void)sync_file_range(fd, (off_t)cur->off, (off_t)cur->written,
			                      SYNC_FILE_RANGE_WRITE);
#endif
		page_end(cur);
		if (rv != 0) {
			/* a page asked for already ends on its own (its answer is
			 * dropped with the temporary file) */
			rv2 = page_end(nxt);
			(void)rv2;
			break;
		}
		if (end)
			break;
		cur = nxt;
	}
	return rv;
}

static int
data_checkout(const ctl *c, int argc, char **argv)
{
	const char *name, *ref, *id, *out_name;
	char *path = NULL, *tmp = NULL;
	FILE *fp = NULL;
	reply r = {0};
	json_t *version = NULL;
	uint64_t from = 0, bytes = 0;
	ctl lc;
	args a;
	int rv, fd;

	if ((rv = parse(argc, argv, 2, 2, "output native", &a)) != 0 || a.help)
		return rv ? rv : sub_help(help_of("checkout"));
	if (!c->timeout_given) {
		lc = *c;
		lc.timeout_ms = TRANSFER_TIMEOUT_MS;
		c = &lc;
	}
	name = a.pos[0];
	ref = a.pos[1];
	out_name = a.output && strcmp(a.output, "-") != 0 ? a.output : NULL;
	if (!check_name("checkout", "NAME", name) || !check_ref("checkout", "REF", ref))
		return EXIT_USAGE;
	if (c->json)
		return data_usage("checkout", "--json does not apply: the data is written as CSV (or "
		                              "--native); loomctl --json data log shows the version");

	/* REF to its version id, once: a branch that moves meanwhile does not
	 * mix two versions */
	path = loomi_strfmt(API "/%s/versions/%s", name, ref);
	rv = http(c, "GET", path, NULL, &r);
	free(path);
	path = NULL;
	if (rv != 0)
		return rv;
	if (r.status != 200) {
		rv = refused(c, &r);
		json_decref(r.body);
		return rv;
	}
	version = r.body;
	r.body = NULL;
	id = json_string_value(json_object_get(version, "id"));
	if (id == NULL || strlen(id) != 64 || strspn(id, "0123456789abcdef") != 64) {
		fprintf(stderr, "loomctl: data checkout: loomd answered %s@%s without a version id\n",
		        name, ref);
		json_decref(version);
		return EXIT_REFUSED;
	}

	if (out_name) {
		/* a temporary file beside FILE, renamed over it when complete */
		mode_t mask = umask(0);
		umask(mask);
		tmp = loomi_strfmt("%s.XXXXXX", out_name);
		if ((fd = mkstemp(tmp)) < 0 || (fp = fdopen(fd, "w")) == NULL) {
			fprintf(stderr, "loomctl: data checkout: cannot write %s: %s\n", out_name,
			        strerror(errno));
			if (fd >= 0) {
				close(fd);
				unlink(tmp);
			}
			free(tmp);
			json_decref(version);
			return EXIT_REFUSED;
		}
		fchmod(fd, 0666 & ~mask);
	} else {
		fp = term_raw();
	}

	if (out_name)
		rv = checkout_pipelined(c, name, id, a.native, fd, &bytes);
	for (; !out_name;) {
		outgoing q = {.method = "GET",
		              .text = true,
		              .header = "X-Loom-Chunks-Next",
		              .sink = page_sink,
		              .sink_arg = fp};
		char *end;
		unsigned long long next;

		q.path = path = loomi_strfmt(API "/%s/versions/%s/data?from=%" PRIu64 "&format=%s",
		                             name, id, from, a.native ? "native" : "csv");
		rv = exchange_req(c, &q, &r);
		free(path);
		path = NULL;
		if (rv != 0)
			break;
		if (r.status != 200) {
			rv = refused(c, &r);
			break;
		}
		bytes += r.len;
		if (r.header == NULL) {
			fprintf(stderr, "loomctl: data checkout: loomd's answer for chunks from %" PRIu64
			                " has no X-Loom-Chunks-Next header; is it older than datasets?\n",
			        from);
			rv = EXIT_REFUSED;
			break;
		}
		if (strcmp(r.header, "end") == 0)
			break;
		errno = 0;
		next = strtoull(r.header, &end, 10);
		if (errno != 0 || *end != '\0' || end == r.header || next <= from) {
			fprintf(stderr, "loomctl: data checkout: loomd answered chunks from %" PRIu64
			                " with X-Loom-Chunks-Next \"%s\", not a later chunk or \"end\"; "
			                "stopping\n",
			        from, r.header);
			rv = EXIT_REFUSED;
			break;
		}
		from = next;
		free(r.text);
		free(r.header);
		r.text = r.header = NULL;
	}
	free(r.text);
	free(r.header);
	json_decref(r.body);
	if (out_name) {
		int e = 0;
		if (rv == 0 && (fflush(fp) != 0 || fsync(fileno(fp)) != 0))
			e = errno;
		if (fclose(fp) != 0 && e == 0)
			e = errno;
		if (rv == 0 && e == 0 && rename(tmp, out_name) != 0)
			e = errno;
		if (rv == 0 && e != 0) {
			fprintf(stderr, "loomctl: data checkout: cannot write %s: %s\n", out_name,
			        strerror(e));
			rv = EXIT_REFUSED;
		}
		if (rv != 0)
			unlink(tmp);
		else
			fprintf(stderr, "wrote %s: version %s of %s, %.0f rows, %" PRIu64 " bytes\n",
			        out_name, id, name, N(version, "rows"), bytes);
		free(tmp);
	} else if (fflush(fp) != 0 && rv == 0) {
		fprintf(stderr, "loomctl: data checkout: cannot write standard output: %s\n",
		        strerror(errno));
		rv = EXIT_REFUSED;
	}
	json_decref(version);
	return rv;
}

/* ------------------------------------------------------------------ the command */

static const struct data_cmd {
	const char *name;
	int (*fn)(const ctl *c, int argc, char **argv);
} data_cmds[] = {
	{"list", data_list},       {"create", data_create}, {"show", data_show},
	{"rm", data_rm},           {"import", data_import}, {"log", data_log},
	{"diff", data_diff},       {"checkout", data_checkout}, {"branch", data_branch},
	{"tag", data_tag},         {"merge", data_merge},   {"lock", data_lock},
	{"unlock", data_lock},     {"audit", data_audit},   {"gc", data_gc},
	{"quota", data_quota},
};

int
cmd_data(const ctl *c, int argc, char **argv)
{
	if (argc < 2)
		return data_usage(NULL, "give a command");
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		const struct data_help *h = argc > 2 ? help_of(argv[2]) : NULL;
		if (h)
			return sub_help(h);
		print_usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof data_cmds / sizeof data_cmds[0]; i++)
		if (strcmp(argv[1], data_cmds[i].name) == 0)
			return data_cmds[i].fn(c, argc - 1, argv + 1);
	return data_usage(NULL, "unknown command \"%s\"", argv[1]);
}

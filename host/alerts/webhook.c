/* Webhook URLs and the hosts they may reach: see webhook.h. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <loom/error.h>

#include "webhook.h"

#define SETTING "alerts.webhook_hosts in loomd.conf"

/* ------------------------------------------------------------------ host syntax */

/* A DNS name: labels of letters, digits and '-' (not first or last), 1-63
 * bytes each, 253 in all; the last label not numeric, so no resolver reads
 * it as an address ("2130706433", "127.1", "0x7f"). */
static bool
host_name_ok(const char *s, size_t n)
{
	size_t label = 0, start = 0;

	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == '.') {
			if (label == 0 || label > 63 || s[start] == '-' || s[i - 1] == '-')
				return false;
			label = 0;
			start = i + 1;
			continue;
		}
		if (!isalnum((unsigned char)s[i]) && s[i] != '-')
			return false;
		label++;
	}
	/* the last label: all digits, or 0x and hex digits, is an address form */
	{
		const char *last = memrchr(s, '.', n);
		size_t off = last ? (size_t)(last - s) + 1 : 0, len = n - off;
		bool digits = true, hex = len > 2 && s[off] == '0' && (s[off + 1] | 0x20) == 'x';
		for (size_t i = off; i < n; i++) {
			digits = digits && isdigit((unsigned char)s[i]);
			hex = hex && (i < off + 2 || isxdigit((unsigned char)s[i]));
		}
		if (digits || hex)
			return false;
	}
	return true;
}

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address. */
static void
unmap(int *family, uint8_t *a)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (*family == AF_INET6 && memcmp(a, mapped, 12) == 0) {
		memmove(a, a + 12, 4);
		memset(a + 4, 0, 12);
		*family = AF_INET;
	}
}

static bool
parse_ip(const char *s, int *family, uint8_t *a)
{
	memset(a, 0, 16);
	if (inet_pton(AF_INET, s, a) == 1)
		*family = AF_INET;
	else if (inet_pton(AF_INET6, s, a) == 1)
		*family = AF_INET6;
	else
		return false;
	unmap(family, a);
	return true;
}

/* ------------------------------------------------------------------ URLs */

void
loomi_webhook_url_free(loomi_webhook_url *u)
{
	free(u->host);
	memset(u, 0, sizeof *u);
}

static int
url_bad(char **why, const char *url, const char *what)
{
	*why = loomi_strfmt("\"%s\" %s; give an http:// or https:// URL like "
	                    "\"http://127.0.0.1:9000/hook\"",
	                    url, what);
	return LOOM_EINVAL;
}

int
loomi_webhook_url_parse(const char *s, loomi_webhook_url *u, char **why)
{
	const char *p, *auth, *end, *colon = NULL;
	size_t n = strlen(s);

	memset(u, 0, sizeof *u);
	if (n > 2048)
		return url_bad(why, "(a URL)", "is longer than 2048 bytes");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c >= 0x7f) {
			/* do not echo what would break the message */
			*why = loomi_strfmt("the URL holds %s (byte 0x%02x at %zu); write it in visible "
			                    "ASCII, percent-encoding the rest",
			                    c == ' '                ? "a space"
			                    : c == '\r' || c == '\n' ? "a line break"
			                    : c < 0x20 || c == 0x7f ? "a control character"
			                                            : "a byte outside ASCII",
			                    c, i);
			return LOOM_EINVAL;
		}
	}
	if (strncasecmp(s, "http://", 7) == 0) {
		auth = s + 7;
	} else if (strncasecmp(s, "https://", 8) == 0) {
		auth = s + 8;
		u->https = true;
	} else {
		return url_bad(why, s, "is not an http:// or https:// URL");
	}
	u->port = u->https ? 443 : 80;
	end = auth + strcspn(auth, "/?#");
	if (memchr(auth, '@', (size_t)(end - auth)) != NULL)
		return url_bad(why, s, "holds a user name or password (\"user@\"), which is not "
		                       "allowed");
	if (*auth == '[') {
		const char *close = memchr(auth, ']', (size_t)(end - auth));
		char buf[64];
		uint8_t a[16];
		if (close == NULL || (size_t)(close - auth - 1) >= sizeof buf)
			return url_bad(why, s, "has an IPv6 address without its closing ']'");
		memcpy(buf, auth + 1, (size_t)(close - auth - 1));
		buf[close - auth - 1] = '\0';
		if (inet_pton(AF_INET6, buf, a) != 1)
			return url_bad(why, s, "has a bracketed host that is not an IPv6 address");
		u->host = loomi_strdup(buf);
		u->host_is_ip = true;
		p = close + 1;
		if (p < end && *p != ':')
			return url_bad(why, s, "has something other than \":port\" after its IPv6 "
			                       "address");
		colon = p < end ? p : NULL;
	} else {
		uint8_t a[16];
		int fam;
		char *h;
		colon = memchr(auth, ':', (size_t)(end - auth));
		h = loomi_strndup(auth, (size_t)((colon ? colon : end) - auth));
		if (parse_ip(h, &fam, a) && fam == AF_INET && strchr(h, ':') == NULL) {
			u->host_is_ip = true;
		} else if (!host_name_ok(h, strlen(h))) {
			free(h);
			return url_bad(why, s, "has no valid host: give a name like hooks.example.org "
			                       "or an address like 10.0.0.5 or [fd00::5]");
		}
		for (char *q = h; *q; q++)
			*q = (char)tolower((unsigned char)*q);
		u->host = h;
	}
	if (colon) {
		char *e;
		long port;
		if (colon + 1 == end || (size_t)(end - colon - 1) > 5 ||
		    strspn(colon + 1, "0123456789") != (size_t)(end - colon - 1)) {
			loomi_webhook_url_free(u);
			return url_bad(why, s, "has a port that is not a number from 1 to 65535");
		}
		port = strtol(colon + 1, &e, 10);
		if (port < 1 || port > 65535) {
			loomi_webhook_url_free(u);
			return url_bad(why, s, "has a port that is not a number from 1 to 65535");
		}
		u->port = (int)port;
	}
	if (strchr(end, '#') != NULL) {
		loomi_webhook_url_free(u);
		return url_bad(why, s, "has a fragment (\"#…\"), which is never sent; remove it");
	}
	for (p = end; *p; p++) {
		if (*p == '%' && !(isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2]))) {
			loomi_webhook_url_free(u);
			return url_bad(why, s, "has a '%' that is not followed by two hex digits");
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ the allowlist */

void
loomi_hostlist_free(loomi_hostlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
	memset(l, 0, sizeof *l);
}

int
loomi_hostlist_parse(const loomi_strv *entries, loomi_hostlist *out, char **err)
{
	memset(out, 0, sizeof *out);
	out->v = loomi_xcalloc(entries->n ? entries->n : 1, sizeof *out->v);
	for (size_t i = 0; i < entries->n; i++) {
		const char *s = entries->v[i], *slash = strchr(s, '/');
		loomi_hostlist_entry *e = &out->v[out->n];
		char *addr = loomi_strndup(s, slash ? (size_t)(slash - s) : strlen(s)), *end;
		bool ok;

		ok = parse_ip(addr, &e->family, e->addr);
		if (ok) {
			/* an IPv4-mapped range counts 96 bits fewer */
			int bits = e->family == AF_INET ? 32 : 128;
			bool mapped = e->family == AF_INET && strchr(addr, ':') != NULL;
			e->prefix = bits;
			if (slash) {
				long p = strtol(slash + 1, &end, 10);
				if (mapped)
					p -= 96;
				ok = slash[1] != '\0' && *end == '\0' && p >= 0 && p <= bits &&
				     strspn(slash + 1, "0123456789") == strlen(slash + 1);
				e->prefix = (int)p;
			}
		} else if (slash == NULL && host_name_ok(s, strlen(s))) {
			e->name = loomi_strdup(s);
			for (char *q = e->name; *q; q++)
				*q = (char)tolower((unsigned char)*q);
			ok = true;
		}
		free(addr);
		if (!ok) {
			*err = loomi_strfmt("loomd.conf: alerts.webhook_hosts[%zu]: \"%s\" is not a host "
			                    "name, an IP address or a CIDR range; write it like "
			                    "\"hooks.example.org\", \"10.0.0.5\", \"10.0.0.0/8\" or "
			                    "\"fd00::/8\"",
			                    i, s);
			loomi_hostlist_free(out);
			return LOOM_ECONFIG;
		}
		out->n++;
	}
	return 0;
}

static bool
in_range(const loomi_hostlist_entry *e, int family, const uint8_t *a)
{
	int bits = e->prefix, bytes = bits / 8;
	if (e->name || e->family != family)
		return false;
	if (memcmp(e->addr, a, (size_t)bytes) != 0)
		return false;
	if (bits % 8) {
		uint8_t mask = (uint8_t)(0xff << (8 - bits % 8));
		return (e->addr[bytes] & mask) == (a[bytes] & mask);
	}
	return true;
}

static bool
address_listed(const loomi_hostlist *l, int family, const uint8_t *a)
{
	for (size_t i = 0; i < l->n; i++)
		if (in_range(&l->v[i], family, a))
			return true;
	return false;
}

static bool
name_listed(const loomi_hostlist *l, const char *host)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].name && strcasecmp(l->v[i].name, host) == 0)
			return true;
	return false;
}

/* Globally routed unicast: not loopback, link-local (169.254.0.0/16, the
 * cloud metadata address among them), private, shared, unspecified,
 * multicast, documentation or reserved. */
static bool
public_address(int family, const uint8_t *a)
{
	if (family == AF_INET) {
		uint32_t x = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];
		static const struct {
			uint32_t net;
			int bits;
		} v4[] = {
			{0x00000000, 8},  {0x0a000000, 8},  {0x64400000, 10}, {0x7f000000, 8},
			{0xa9fe0000, 16}, {0xac100000, 12}, {0xc0000000, 24}, {0xc0000200, 24},
			{0xc0a80000, 16}, {0xc6120000, 15}, {0xc6336400, 24}, {0xcb007100, 24},
			{0xe0000000, 4},  {0xf0000000, 4},
		};
		for (size_t i = 0; i < sizeof v4 / sizeof v4[0]; i++)
			if ((x & (0xffffffffu << (32 - v4[i].bits))) == v4[i].net)
				return false;
		return true;
	}
	/* IPv6: only 2000::/3 is global unicast; within it, 2001:db8::/32 is
	 * documentation and 2002::/16 (6to4) and 2001::/32 (Teredo) embed
	 * IPv4 addresses */
	if ((a[0] & 0xe0) != 0x20)
		return false;
	if (a[0] == 0x20 && a[1] == 0x01 && ((a[2] == 0x0d && a[3] == 0xb8) || (a[2] == 0 && a[3] == 0)))
		return false;
	if (a[0] == 0x20 && a[1] == 0x02)
		return false;
	return true;
}

int
loomi_webhook_host_allowed(const loomi_hostlist *l, const loomi_webhook_url *u, char **why)
{
	if (u->host_is_ip) {
		int family;
		uint8_t a[16];
		parse_ip(u->host, &family, a);
		if (address_listed(l, family, a))
			return 0;
	} else if (name_listed(l, u->host)) {
		return 0;
	}
	*why = loomi_strfmt("webhooks may go only to the hosts listed in " SETTING ", and %s is "
	                    "not one of them; ask the administrator to add it there",
	                    u->host);
	return LOOM_EPERM;
}

int
loomi_webhook_resolve(const loomi_hostlist *l, const loomi_webhook_url *u,
                      struct sockaddr_storage *addrs, size_t max, size_t *n, char **why)
{
	struct addrinfo hints = {0}, *res = NULL;
	char port[8];
	bool named;
	int rc, rv;

	*n = 0;
	if ((rv = loomi_webhook_host_allowed(l, u, why)) != 0)
		return rv;
	named = !u->host_is_ip;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = u->host_is_ip ? AI_NUMERICHOST : AI_ADDRCONFIG;
	snprintf(port, sizeof port, "%d", u->port);
	if ((rc = getaddrinfo(u->host, port, &hints, &res)) != 0) {
		*why = loomi_strfmt("cannot resolve %s: %s", u->host, gai_strerror(rc));
		return LOOM_ENOENT;
	}
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		uint8_t a[16] = {0};
		int family = ai->ai_family;
		char text[INET6_ADDRSTRLEN];

		if (family == AF_INET)
			memcpy(a, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, 4);
		else if (family == AF_INET6)
			memcpy(a, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, 16);
		else
			continue;
		unmap(&family, a);
		if (!address_listed(l, family, a) && !(named && public_address(family, a))) {
			inet_ntop(family, a, text, sizeof text);
			*why = loomi_strfmt("%s resolves to %s, %s; list that address or its range in "
			                    SETTING " if webhooks should reach it",
			                    u->host, text,
			                    named ? "which is not a public address"
			                          : "which is not listed");
			freeaddrinfo(res);
			*n = 0;
			return LOOM_EPERM;
		}
		if (*n < max) {
			memset(&addrs[*n], 0, sizeof addrs[*n]);
			memcpy(&addrs[*n], ai->ai_addr, ai->ai_addrlen);
			(*n)++;
		}
	}
	freeaddrinfo(res);
	if (*n == 0) {
		*why = loomi_strfmt("%s has no IPv4 or IPv6 address", u->host);
		return LOOM_ENOENT;
	}
	return 0;
}

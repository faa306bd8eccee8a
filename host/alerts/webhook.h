/* Webhook URLs and the hosts they may reach (alerts.webhook_hosts in
 * loomd.conf), for host/alerts alone.
 *
 * A URL is parsed strictly: http or https, a host name or an IP literal,
 * an optional port from 1 to 65535, a path and query of visible ASCII; no
 * user name or password, no fragment, and no space, control character or
 * other byte outside visible ASCII anywhere (a CR/LF would split the
 * request).  Numeric host forms that resolvers read as addresses
 * ("2130706433", "127.1", "0x7f.1") are refused: an address is written as
 * a dotted quad or in brackets.
 *
 * The allowlist holds host names, IP addresses and CIDR ranges.  A URL is
 * accepted when its host is a listed name, or an address inside a listed
 * address or range.  When a webhook is sent the host is resolved again,
 * and every address it resolves to must be inside a listed address or
 * range, or be a public (globally routed) address of a listed name; the
 * request then goes to that checked address, so a name whose DNS answer
 * changed to 169.254.169.254 or a private range is refused. */
#ifndef LOOM_HOST_ALERTS_WEBHOOK_H
#define LOOM_HOST_ALERTS_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "host/core/util.h"

typedef struct loomi_webhook_url {
	bool https;
	char *host;      /* a name (lower case) or an address, without brackets */
	bool host_is_ip;
	int port;        /* 80 or 443 when not given */
} loomi_webhook_url;

typedef struct loomi_hostlist_entry {
	char *name;      /* a host name (lower case), or NULL for an address range */
	int family;      /* AF_INET, AF_INET6 */
	uint8_t addr[16];
	int prefix;      /* bits */
} loomi_hostlist_entry;

typedef struct loomi_hostlist {
	loomi_hostlist_entry *v;
	size_t n;
} loomi_hostlist;

/* Parse s; 0, or LOOM_EINVAL with *why (free it) saying what is wrong. */
int loomi_webhook_url_parse(const char *s, loomi_webhook_url *u, char **why);
void loomi_webhook_url_free(loomi_webhook_url *u);

/* The entries of alerts.webhook_hosts; 0, or LOOM_ECONFIG with *err naming
 * the entry. */
int loomi_hostlist_parse(const loomi_strv *entries, loomi_hostlist *out, char **err);
void loomi_hostlist_free(loomi_hostlist *l);

/* Does the list admit u's host (the check at rule creation)?  0, or
 * LOOM_EPERM with *why. */
int loomi_webhook_host_allowed(const loomi_hostlist *l, const loomi_webhook_url *u, char **why);

/* Resolve u's host and check every address (the check at send time).
 * 0 with the checked addresses in addrs[0 .. *n) (port set), or LOOM_EPERM
 * (an address the list does not admit) / LOOM_ENOENT (no address) with
 * *why. */
int loomi_webhook_resolve(const loomi_hostlist *l, const loomi_webhook_url *u,
                          struct sockaddr_storage *addrs, size_t max, size_t *n, char **why);

#endif /* LOOM_HOST_ALERTS_WEBHOOK_H */

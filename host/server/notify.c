/* sd_notify(3)'s protocol without libsystemd (see notify.h).  systemd's
 * Type=notify service waits for READY=1 before it calls loomd started,
 * shows STATUS= in `systemctl status`, and hears RELOADING=1 and
 * STOPPING=1 around a reload and a stop. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "host/core/log.h"
#include "host/core/util.h"
#include "notify.h"

static char *notify_socket; /* $NOTIFY_SOCKET as loomd found it, or NULL */

void
loomi_notify_init(void)
{
	const char *e = getenv("NOTIFY_SOCKET");

	free(notify_socket);
	notify_socket = e && e[0] ? loomi_strdup(e) : NULL;
	unsetenv("NOTIFY_SOCKET");
}

void
loomi_notify_fini(void)
{
	free(notify_socket);
	notify_socket = NULL;
}

/* The socket's address: a path, or "@name" for the abstract namespace
 * (sun_path starting with a NUL, its length counted exactly). */
static int
notify_address(const char *name, struct sockaddr_un *sun, socklen_t *len)
{
	size_t n = strlen(name);

	memset(sun, 0, sizeof *sun);
	sun->sun_family = AF_UNIX;
	if ((name[0] != '/' && name[0] != '@') || n >= sizeof sun->sun_path)
		return EINVAL;
	memcpy(sun->sun_path, name, n);
	if (name[0] == '@')
		sun->sun_path[0] = '\0';
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (name[0] == '/'));
	return 0;
}

void
loomi_notify(const char *fmt, ...)
{
	struct sockaddr_un sun;
	socklen_t len;
	char *msg, *text;
	va_list ap;
	int fd, rv = 0;

	if (notify_socket == NULL)
		return;
	va_start(ap, fmt);
	text = loomi_vstrfmt(fmt, ap);
	va_end(ap);
	msg = loomi_strfmt("%s\nMAINPID=%ld", text, (long)getpid());
	free(text);
	if (notify_address(notify_socket, &sun, &len) != 0) {
		LOG_DEBUG("notify: NOTIFY_SOCKET=\"%s\" is not a Unix socket's path nor an abstract "
		          "\"@name\"; systemd is not told",
		          notify_socket);
		free(msg);
		return;
	}
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0 ||
	    sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sun, len) < 0)
		rv = errno;
	if (fd >= 0)
		close(fd);
	for (char *p = msg; (p = strchr(p, '\n')) != NULL;)
		*p = ' '; /* one log line */
	if (rv != 0)
		LOG_DEBUG("notify: cannot send \"%s\" to %s: %s", msg, notify_socket, strerror(rv));
	else
		LOG_DEBUG("notify: sent \"%s\" to %s", msg, notify_socket);
	free(msg);
}

/* Telling systemd how loomd is doing: sd_notify(3)'s protocol without
 * libsystemd, a datagram of "KEY=VALUE" lines sent to the Unix socket
 * $NOTIFY_SOCKET names (a path, or "@name" in the abstract namespace).
 * Without $NOTIFY_SOCKET every call does nothing. */
#ifndef LOOM_HOST_NOTIFY_H
#define LOOM_HOST_NOTIFY_H

#include <loom/types.h>

/* Take $NOTIFY_SOCKET and remove it from the environment, so that no
 * worker, nor any command a worker runs, can speak for loomd.  Call it
 * before any thread starts (it changes the environment). */
void loomi_notify_init(void);

/* Send the lines fmt formats ("READY=1\nSTATUS=…"), with MAINPID= added.
 * A failure is logged at debug level and otherwise ignored: systemd's
 * watch over loomd is never a reason for loomd to fail. */
void loomi_notify(const char *fmt, ...) LOOM_PRINTF(1, 2);

/* Forget the socket's name. */
void loomi_notify_fini(void);

#endif /* LOOM_HOST_NOTIFY_H */

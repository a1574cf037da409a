/* notify.h - talking to systemd: readiness, status, watchdog, socket
 * activation.  Every function is a no-op when not run by systemd. */
#ifndef VT_NOTIFY_H
#define VT_NOTIFY_H

#include <stdint.h>

/* The listening socket passed by socket activation (LISTEN_FDS) into *fd,
 * -1 when none was passed; returns 0, or VT_EINVAL (with a message) when
 * the first one passed is not a listening Unix stream socket (a
 * ListenStream= that names a port, say), which our clients cannot reach. */
int vt_notify_listen_fd(int *fd);

/* READY=1 with a STATUS line. */
void vt_notify_ready(const char *status);

/* STATUS=... */
void vt_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* STOPPING=1. */
void vt_notify_stopping(void);

/* WATCHDOG=1. */
void vt_notify_watchdog(void);

/* The watchdog interval in microseconds, 0 when not enabled. */
uint64_t vt_notify_watchdog_usec(void);

#endif

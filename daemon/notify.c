/* notify.c - sd_notify and socket activation through libsystemd (see notify.h). */
#include "notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "../common/error.h"

int vt_notify_listen_fd(int *fd)
{
    *fd = -1;
    if (sd_listen_fds(1) < 1)
        return 0;
    if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0) <= 0)
        return vt_error_set(VT_EINVAL, "the socket systemd passed is not a listening Unix "
                            "stream socket: give vggtune.socket a path in ListenStream= "
                            "(as /run/vggtune/vggtune.sock)");
    *fd = SD_LISTEN_FDS_START;
    return 0;
}

void vt_notify_ready(const char *status)
{
    sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void vt_notify_status(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    sd_notifyf(0, "STATUS=%s", buf);
}

void vt_notify_stopping(void)
{
    sd_notify(0, "STOPPING=1");
}

void vt_notify_watchdog(void)
{
    sd_notify(0, "WATCHDOG=1");
}

uint64_t vt_notify_watchdog_usec(void)
{
    uint64_t usec = 0;
    return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}

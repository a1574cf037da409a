/* creds.c - per-thread file-system identity (see creds.h). */
#include "creds.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "error.h"

void vt_user_name(uid_t uid, char *buf, size_t len)
{
    struct passwd pw, *res = NULL;
    char tmp[4096];
    if (getpwuid_r(uid, &pw, tmp, sizeof tmp, &res) == 0 && res)
        snprintf(buf, len, "%s", pw.pw_name);
    else
        snprintf(buf, len, "uid%u", (unsigned)uid);
}

int vt_creds_for_user(vt_creds *c, uid_t uid, gid_t gid)
{
    struct passwd pw, *res = NULL;
    char buf[4096];
    int n = VT_CREDS_MAX_GROUPS;

    memset(c, 0, sizeof *c);
    c->uid = uid;
    c->gid = gid;
    c->groups[0] = gid;
    c->ngroups = 1;
    if (getpwuid_r(uid, &pw, buf, sizeof buf, &res) != 0 || !res)
        return 0;
    if (getgrouplist(pw.pw_name, gid, c->groups, &n) < 0)
        n = VT_CREDS_MAX_GROUPS; /* truncated: keep the first ones */
    c->ngroups = n;
    return 0;
}

/* setfsuid cannot report failure directly: it returns the previous value.
 * Setting it again and reading it back tells whether the change took. */
static int vt__set_fsuid(uid_t uid)
{
    syscall(SYS_setfsuid, uid);
    return (uid_t)syscall(SYS_setfsuid, uid) == uid ? 0 : -1;
}

static int vt__set_fsgid(gid_t gid)
{
    syscall(SYS_setfsgid, gid);
    return (gid_t)syscall(SYS_setfsgid, gid) == gid ? 0 : -1;
}

int vt_creds_enter(const vt_creds *c)
{
    if (c->uid == geteuid() && c->gid == getegid() && geteuid() != 0)
        return 0; /* already this user; nothing to change (or able to) */
    /* Groups first: once the fsuid is not 0 we may lose the right to. */
    if (syscall(SYS_setgroups, (size_t)c->ngroups, c->groups) < 0 ||
        vt__set_fsgid(c->gid) < 0 || vt__set_fsuid(c->uid) < 0) {
        vt_creds_leave();
        return vt_error_set(VT_EPERM,
                            "cannot act as uid %u for file access (the daemon needs "
                            "CAP_SETUID and CAP_SETGID, or must run as that user)",
                            (unsigned)c->uid);
    }
    return 0;
}

static gid_t *vt__orig_groups; /* (vt__orig_ngroups), for the process's lifetime */
static int vt__orig_ngroups = -1;

int vt_creds_init(void)
{
    int n = getgroups(0, NULL);
    if (n >= 0 && !(vt__orig_groups = calloc((size_t)n + 1, sizeof *vt__orig_groups)))
        return vt_error_set(VT_ENOMEM, "out of memory");
    if (n < 0 || (n = getgroups(n, vt__orig_groups)) < 0)
        return vt_error_set(VT_EIO, "cannot read the process's groups: %s", strerror(errno));
    vt__orig_ngroups = n;
    return 0;
}

void vt_creds_leave(void)
{
    uid_t uid = geteuid();
    if (uid != 0 && (uid_t)syscall(SYS_setfsuid, -1) == uid)
        return; /* an unprivileged process never switched */
    vt__set_fsuid(uid);
    vt__set_fsgid(getegid());
    if (vt__orig_ngroups >= 0)
        syscall(SYS_setgroups, (size_t)vt__orig_ngroups, vt__orig_groups);
}

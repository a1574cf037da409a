/* creds.h - acting as the submitting user for file access, per thread.
 *
 * The daemon never reads or writes a path that the job's owner could not:
 * every thread that touches a job's files (the decode pool, the device
 * thread writing outputs) first takes on the owner's file-system identity -
 * fsuid, fsgid and supplementary groups - and drops it afterwards.  Linux
 * keeps these per thread; the raw system calls are used on purpose, because
 * glibc's setgroups() would change every thread of the process.  When the
 * file-system uid leaves 0 the kernel also drops CAP_DAC_OVERRIDE and its
 * kin from the thread's effective set, so a root daemon gets no bypass.
 * Switching needs CAP_SETUID/CAP_SETGID; a daemon without them (run by an
 * ordinary user for themself) can only act as itself.
 */
#ifndef VT_CREDS_H
#define VT_CREDS_H

#include <sys/types.h>

#define VT_CREDS_MAX_GROUPS 64

typedef struct {
    uid_t uid;
    gid_t gid;
    int ngroups;
    gid_t groups[VT_CREDS_MAX_GROUPS];
} vt_creds;

/* The user name of uid, or "uid1234" when the user database has none. */
void vt_user_name(uid_t uid, char *buf, size_t len);

/* Records the process's own supplementary groups, which vt_creds_leave
 * restores; call once at start-up, before any thread switches identity.
 * VT_ENOMEM, or VT_EIO when the groups cannot be read. */
int vt_creds_init(void);

/* Fills c for a user: uid, primary gid, and the supplementary groups the
 * user database gives that user (getgrouplist; at most
 * VT_CREDS_MAX_GROUPS).  A uid unknown to the user database gets gid alone.
 * Always 0. */
int vt_creds_for_user(vt_creds *c, uid_t uid, gid_t gid);

/* Switches the calling thread's file-system identity to c.  VT_EPERM when
 * the process may not (no CAP_SETUID and c is not the process's own user). */
int vt_creds_enter(const vt_creds *c);

/* Returns the calling thread to the process's own file-system identity. */
void vt_creds_leave(void);

#endif

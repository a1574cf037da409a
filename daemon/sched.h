/* sched.h - fair share of the one device between users, and admission.
 *
 * Pure bookkeeping, no threads and no clock of its own (times are passed
 * in), so it can be tested exactly.  Used by the device thread.
 *
 * Admission: waiting jobs start in submission order; a user already running
 * max_running jobs is skipped; the first eligible job whose memory estimate
 * does not fit the free device memory stops admission (later jobs do not
 * overtake it, so a large job is never starved by small ones).
 *
 * Sharing: each user has a virtual time, the device seconds their jobs have
 * used.  The next step goes to the running job of the user with the least
 * virtual time (so a user with one job and a user with five get the same
 * device time); within a user, jobs take turns.  A user who becomes active
 * starts at the smallest virtual time of those already active, and never
 * behind the user picked last (when none is active), so time spent idle is
 * not banked.  A user all of whose running jobs waited (for their data or
 * their files) comes back the same way, but keeps up to a second of
 * what the others used meanwhile: short waits do not cost it its share.
 *
 * Requests (predictions, evaluations) take their turns with their user's
 * jobs the same way, one batch per turn, charged to that user; they start
 * at once (no admission, no per-user limit) and are not counted as jobs.
 */
#ifndef VT_SCHED_H
#define VT_SCHED_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct vt_sched vt_sched;
typedef struct vt_sched_job vt_sched_job;

typedef struct {
    uid_t uid;
    int running, waiting;
    int requests;    /* predictions and evaluations in progress */
    double device_s; /* device seconds used in total */
    double share;    /* fraction of the listed users' recent device time (decayed,
                        30 s half-life) */
} vt_sched_user;

/* An empty scheduler that runs at most max_running_per_user jobs of one
 * user at a time; NULL when out of memory. */
vt_sched *vt_sched_new(int max_running_per_user);

/* Frees the scheduler and its jobs (not their ud); NULL is a no-op. */
void vt_sched_free(vt_sched *s);

/* Adds a waiting job needing est_bytes of device memory; ud is the caller's.
 * NULL when out of memory. */
vt_sched_job *vt_sched_add(vt_sched *s, int64_t id, uid_t uid, size_t est_bytes, void *ud);

/* Adds a request of user uid, running from now on; ud is the caller's.
 * Its id is 0 (vt_sched_find never finds it).  NULL when out of memory. */
vt_sched_job *vt_sched_add_request(vt_sched *s, uid_t uid, void *ud);

/* Whether j is a request (vt_sched_add_request). */
int vt_sched_is_request(const vt_sched_job *j);

/* The next waiting job that may start with free_bytes of device memory (it
 * becomes running), or NULL. */
vt_sched_job *vt_sched_admit(vt_sched *s, size_t free_bytes);

/* The running job to step next, or NULL when none runs.  ready (may be
 * NULL: all are) is asked of a running job's ud whether it has work now;
 * the jobs it turns down are passed over (a job reading its data), and
 * their users' turns go to those with work. */
vt_sched_job *vt_sched_pick(vt_sched *s, int (*ready)(void *ud));

/* Charges a step's device seconds to the job's user at time now (seconds,
 * any monotonic origin). */
void vt_sched_charge(vt_sched *s, vt_sched_job *j, double seconds, double now);

/* Forgets a job (waiting or running) or a request. */
void vt_sched_remove(vt_sched *s, vt_sched_job *j);

/* The oldest job (waiting or running) or request, or NULL when there is
 * none. */
vt_sched_job *vt_sched_first(vt_sched *s);

/* A job by id, or NULL. */
vt_sched_job *vt_sched_find(vt_sched *s, int64_t id);

/* The ud given to vt_sched_add. */
void *vt_sched_job_ud(const vt_sched_job *j);

/* Number of running and waiting jobs (requests not counted). */
void vt_sched_counts(const vt_sched *s, int *running, int *waiting);

/* Number of running jobs and requests that had work at the last
 * vt_sched_pick (those its ready() passed over not counted). */
int vt_sched_busy(const vt_sched *s);

/* Per-user figures at time now of the users with running or waiting jobs
 * or requests, up to max users; returns how many.  A share is of the device time these
 * users had lately (a 30 s half-life): a user alone comes to 1. */
int vt_sched_users(vt_sched *s, vt_sched_user *out, int max, double now);

#endif

/* store.h - the daemon's durable record of jobs (SQLite, WAL).
 *
 * Tables: jobs (one row per job: owner, spec, state, times, result),
 * metrics (one row per finished epoch of a job) and events (log lines of a
 * job).  Every write is its own transaction with synchronous=FULL, so a
 * reply that says "submitted" or a state shown as "succeeded" survives a
 * power cut.  Writes happen at submissions, state changes and epoch ends,
 * never per training step.  Used from the loop thread only.
 *
 * Errors: the int functions return 0, or a negative code with the message
 * set: VT_EIO when SQLite fails ("job store: what: SQLite's reason"),
 * VT_ENOMEM, and VT_ENOTFOUND for a job that is not in the store (from
 * vt_store_update and the writes of metrics and events; rewriting a
 * missing job's document changes nothing and returns 0).  The each_*
 * functions stop at the first non-zero return of cb and pass it on when it
 * is negative (0 otherwise); the strings cb is given live only during the
 * call.
 */
#ifndef VT_STORE_H
#define VT_STORE_H

#include <stdint.h>
#include <sys/types.h>

typedef struct vt_store vt_store;

typedef struct {
    int64_t id;
    uid_t uid;
    gid_t gid;
    const char *user;
    const char *name;
    const char *spec;   /* the job document, defaults filled in */
    const char *state;  /* "queued", "running", "succeeded", "failed", "cancelled" */
    double submitted, started, finished; /* Unix seconds, 0 = not yet */
    int epochs_done;
    const char *error;  /* failed: why (or NULL) */
    const char *reason; /* cancelled: by whom (or NULL) */
    const char *preprocess; /* data.preprocess as resolved once started (or NULL) */
    const char *trunk;      /* the frozen trunk it started on (or NULL) */
} vt_store_job;

#define VT_STORE_ID_LEN 16 /* hex digits */

/* Opens (creating when missing) the database at path.  A new store gets a
 * random id. */
int vt_store_open(vt_store **out, const char *path);

/* The store's id (VT_STORE_ID_LEN hex digits), made when the store was:
 * job numbers start again at 1 in a new store, so a job is this id and its
 * number.  Valid until vt_store_close. */
const char *vt_store_id(const vt_store *s);

/* 1 when the last of s's calls that failed (VT_EIO) did because the file
 * system under the store is full (SQLite's SQLITE_FULL), else 0: the
 * daemon's administrator must act, not the user whose request failed. */
int vt_store_full(const vt_store *s);

/* Closes; NULL is a no-op. */
void vt_store_close(vt_store *s);

/* Inserts a new job (j->id ignored) and returns its id in *id. */
int vt_store_insert(vt_store *s, const vt_store_job *j, int64_t *id);

/* Rewrites a job's state, times, epochs_done, error and reason; VT_ENOTFOUND
 * when the job is not in the store. */
int vt_store_update(vt_store *s, const vt_store_job *j);

/* Rewrites a job's document (spec, JSON) and records the preprocessing it
 * resolved to and the trunk it runs on (a name, a description, or NULL). */
int vt_store_set_spec(vt_store *s, int64_t job, const char *spec, const char *preprocess,
                      const char *trunk);

/* Records (or replaces) the metrics of one epoch, a JSON object, and with
 * drop_later drops any later epoch's (a job resumed from an earlier
 * checkpoint reports those again, and may stop sooner); VT_ENOTFOUND when
 * the job is not in the store. */
int vt_store_put_metrics(vt_store *s, int64_t job, int epoch, const char *json, int drop_later);

/* Appends a log event ("warn", "info", ...) to a job. */
int vt_store_add_event(vt_store *s, int64_t job, const char *level, const char *message);

/* Calls cb for every job in id order; cb returning non-zero stops. */
int vt_store_each_job(vt_store *s, int (*cb)(void *ud, const vt_store_job *j), void *ud);

/* Calls cb for a job's epochs in order; cb returning non-zero stops. */
int vt_store_each_metrics(vt_store *s, int64_t job,
                          int (*cb)(void *ud, int epoch, const char *json), void *ud);

/* Calls cb for a job's last `limit` log events, oldest first; cb returning
 * non-zero stops. */
int vt_store_each_event(vt_store *s, int64_t job, int limit,
                        int (*cb)(void *ud, const char *level, const char *message), void *ud);

#endif

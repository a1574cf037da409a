/* daemon.h - the daemon's shared state, owned by the loop thread.
 *
 * server.c sets it up and runs the loop; conn.c handles connections;
 * ops.c answers requests; device events are applied in server.c.  Only the
 * loop thread touches this structure.
 */
#ifndef VT_DAEMON_H
#define VT_DAEMON_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "config.h"
#include "device.h"
#include "jobs.h"
#include "store.h"

typedef struct vt_conn vt_conn;

/* Something a connection waits for, named by ids (never pointers). */
typedef enum {
    VT_SUB_WATCH,  /* job events until the job ends */
    VT_SUB_CANCEL, /* the reply to a cancel, sent when the job has ended */
    VT_SUB_REPLY,  /* the reply to a device request (predict, eval) */
} vt_sub_kind;

typedef struct vt_sub {
    vt_sub_kind kind;
    uint64_t conn;      /* connection id */
    cJSON *req_id;      /* the request's id, owned */
    int64_t job;        /* WATCH, CANCEL */
    uint64_t req;       /* REPLY */
    struct vt_sub *next;
} vt_sub;

typedef struct vt_daemon {
    vt_config cfg;
    uv_loop_t *loop;
    uv_pipe_t listener;
    int listening;       /* listener is listening */
    int bound;           /* we created the socket file (remove it at stop) */
    int lock_fd;         /* flock'ed STATE_DIR/lock, or -1 */
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t timer;
    vt_store *store;
    vt_device *dev;
    vt_jobs jobs;
    vt_conn *conns;
    int nconns;
    uint64_t next_conn, next_req;
    vt_sub *subs;
    char *stats;         /* latest device statistics (JSON), owned */
    size_t job_memory;   /* device memory jobs may ever have (the total less the
                            resident trunk and the reserve), from the device thread */
    int bf16;            /* the backend computes bf16 by default */
    int ready, stopping, exit_code;
    gid_t admin_gid;
    int has_admin_group;
    double started;      /* Unix seconds */
    uint64_t watchdog_usec;
} vt_daemon;

/* Adds a subscription (req_id is copied). */
int vt_daemon_subscribe(vt_daemon *dm, vt_sub_kind kind, uint64_t conn, const cJSON *req_id,
                        int64_t job, uint64_t req);

/* Drops every subscription of a connection (and on the device the
 * requests it waited for: nobody is left to answer). */
void vt_daemon_unsubscribe_conn(vt_daemon *dm, uint64_t conn);

/* Hands a queued job to the device thread (it resumes from its checkpoint
 * in the state directory when there is one). */
void vt_daemon_start_job(vt_daemon *dm, vt_job *j);

/* Removes a checkpoint file under a new job's number: one left by another
 * job of that number (a job store started afresh) is not this job's. */
void vt_daemon_drop_stale_checkpoint(vt_daemon *dm, int64_t id);

#endif

/* jobs.h - the daemon's table of jobs, as the loop thread knows them.
 *
 * The loop thread owns this table; the device thread owns the running
 * trainers and reports state changes as events, which server.c applies here
 * and to the store.  A job never points at a connection: watchers and
 * waiting replies are kept in server.c by connection id.
 */
#ifndef VT_JOBS_H
#define VT_JOBS_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <sys/types.h>

#include "../engine/jobspec.h"
#include "../engine/train.h"
#include "device.h"

typedef struct vt_job {
    int64_t id;
    uid_t uid;
    gid_t gid;
    char user[64];
    vt_jobspec spec;        /* parsed, owned */
    char *spec_json;        /* with defaults filled in, owned */
    vt_job_state state;
    double submitted, started, finished; /* Unix seconds, 0 = not yet */
    int epochs_done;
    char *error;            /* failed: why */
    char *reason;           /* cancelled: by whom */
    int cancel_requested;
    int cancel_waits;       /* its end waits for its files to be written
                               (VT_DEV_CANCEL_WAITS): a cancel is answered at once */
    int has_progress;
    vt_progress progress;   /* latest, while running (its phase in .phase) */
    char phase[16];
    char preprocess[16];    /* what the job runs with, once started ("" before) */
    char *trunk;            /* where its frozen trunk came from, once started (NULL
                               before), as the trunks the daemon holds are named */
    cJSON *metrics;         /* array of epoch objects, owned */
    int unsaved;            /* a store write failed: its record is behind (retried) */
    cJSON *unsaved_events;  /* array of {level, message}: log events the store did not
                               take, in order, written before the record; NULL: none */
    int unrecorded;         /* its row is gone from the store (by hand): not written again */
    struct vt_job *next;
} vt_job;

typedef struct {
    vt_job *head, *tail; /* in id order */
} vt_jobs;

/* Makes a job from a job document (taking a copy of spec); NULL when out of
 * memory. */
vt_job *vt_job_new(int64_t id, uid_t uid, gid_t gid, const char *user, const vt_jobspec *spec);

/* Frees a job and everything it owns; NULL is a no-op. */
void vt_job_free(vt_job *j);

/* Appends j (its id above every id in js); the table owns it from then on
 * (vt_jobs_clear frees it). */
void vt_jobs_add(vt_jobs *js, vt_job *j);

/* The job with this id, or NULL. */
vt_job *vt_jobs_find(const vt_jobs *js, int64_t id);

/* Sets s->init to the model file of job s->init_job (replacing any value).
 * The store keeps only init_job, so this runs at submission, after the
 * ownership and state checks, and again when the daemon reloads the job.
 * VT_ENOTFOUND when that job is not in js. */
int vt_jobs_init_model(const vt_jobs *js, vt_jobspec *s);

/* The newest job in the given state whose output directory is dir (as
 * written, up to trailing slashes), or NULL. */
vt_job *vt_jobs_output_job(const vt_jobs *js, const char *dir, int state);

/* Frees every job. */
void vt_jobs_clear(vt_jobs *js);

/* 1-based position among queued jobs, 0 when not queued. */
int vt_jobs_queue_position(const vt_jobs *js, const vt_job *j);

/* Jobs of uid in the given state. */
int vt_jobs_count(const vt_jobs *js, uid_t uid, vt_job_state state);

typedef enum {
    VT_JOB_VIEW_FOREIGN, /* another user's job: id, user, state, queue position */
    VT_JOB_VIEW_SUMMARY, /* owner: everything but spec and metrics */
    VT_JOB_VIEW_FULL,    /* owner: with spec and per-epoch metrics */
} vt_job_view;

/* The job as a JSON object for replies (see proto/PROTOCOL.md). */
cJSON *vt_job_json(const vt_jobs *js, const vt_job *j, vt_job_view view);

/* Progress as JSON (PROGRESS in PROTOCOL.md). */
cJSON *vt_progress_json(const vt_progress *p, const char *phase);

/* Sets a job's error or reason text (copied; NULL clears). */
void vt_job_set_text(char **field, const char *text);

#endif

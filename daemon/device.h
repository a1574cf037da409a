/* device.h - the device thread: the only thread that computes.
 *
 * It owns the backend (and so the GPU context), the decode pool, the
 * resident trunks and every admitted job's trainer.  It admits waiting jobs
 * when their memory fits, steps running jobs one at a time in fair-share
 * order (sched.c), runs predictions and evaluations between steps, and
 * reports everything back as events.
 *
 * Threads: the loop thread calls vt_device_start/add_job/cancel/predict/
 * eval/stop/free; each call only appends a command to a locked queue and
 * wakes the device thread.  The device thread appends events to another
 * locked queue and wakes the loop with uv_async_send (which coalesces), and
 * the loop drains the whole queue with vt_device_events().  No pointer to a
 * connection or a loop-side job crosses: jobs and requests are named by id.
 */
#ifndef VT_DEVICE_H
#define VT_DEVICE_H

#include <limits.h>
#include <stdint.h>
#include <uv.h>

#include "../common/creds.h"
#include "../engine/jobspec.h"
#include "../engine/train.h"
#include "config.h"

typedef enum {
    VT_JOB_QUEUED,
    VT_JOB_RUNNING,
    VT_JOB_SUCCEEDED,
    VT_JOB_FAILED,
    VT_JOB_CANCELLED,
} vt_job_state;

/* "queued", "running", ... */
const char *vt_job_state_name(vt_job_state s);

typedef enum {
    VT_DEV_READY,    /* text: device description; bytes: device memory jobs may
                        ever have (total less the resident trunk and the reserve);
                        state: 1 when the backend computes in bf16 */
    VT_DEV_FATAL,    /* text: why; the daemon exits non-zero.  Posted when the
                        backend or resident trunk cannot be set up, and after a
                        lost device context: a job whose step hit it has failed
                        (its VT_DEV_STATE came first); the other running jobs
                        are not checkpointed (a checkpoint would fail too) and
                        resume from their last one at the next start */
    VT_DEV_STATE,    /* job, state; text: the error for failed jobs */
    VT_DEV_CANCEL_WAITS, /* job: its cancel waits for the files of its epoch end
                        to be written (a VT_DEV_STATE follows once they are) */
    VT_DEV_PROGRESS, /* job, progress, phase */
    VT_DEV_EPOCH,    /* job, metrics */
    VT_DEV_LOG,      /* job, level, text */
    VT_DEV_SPEC,     /* job; text: its job document as it runs, once prepared (the
                        head from the init model when the document left it out);
                        phase: the preprocessing it resolved to; trunk: where its
                        frozen trunk came from */
    VT_DEV_REQ_PROGRESS, /* req, progress (step of steps images gone through),
                        phase ("predicting", "evaluating") */
    VT_DEV_REPLY,    /* req; code 0 and text = JSON body, or code < 0 and text */
    VT_DEV_STATS,    /* text: JSON object for the status reply */
    VT_DEV_STOPPED,  /* the thread has checkpointed its jobs and ended */
} vt_dev_event_kind;

typedef struct vt_dev_event {
    vt_dev_event_kind kind;
    int64_t job;
    uint64_t req;
    int state, level, code;
    size_t bytes;
    char *text;
    char *trunk;         /* VT_DEV_SPEC */
    vt_progress progress;
    char phase[16];
    vt_epoch_metrics metrics;
    struct vt_dev_event *next;
} vt_dev_event;

/* A job handed to the device thread (copied by vt_device_add_job). */
typedef struct {
    int64_t id;
    vt_creds creds;              /* file access as the job's owner */
    const vt_jobspec *spec;
    char checkpoint[PATH_MAX];   /* resumed from when it exists */
} vt_dev_job;

typedef struct vt_device vt_device;

/* Starts the device thread on the loop thread: it creates the backend and
 * loads the resident trunk, then posts VT_DEV_READY (or VT_DEV_FATAL).
 * on_events is called on the loop thread whenever events are waiting.
 * store_id (vt_store_id, copied) is recorded with every model a job writes
 * and must be there for predict, eval and init_job to take the model as
 * the job's. */
int vt_device_start(vt_device **out, const vt_config *cfg, const char *store_id,
                    uv_loop_t *loop, void (*on_events)(void *ud), void *ud);

/* Queues a job (job is copied); it starts when admitted.  Cannot fail: when
 * the command cannot be made, a VT_DEV_STATE event fails the job ("out of
 * memory"). */
void vt_device_add_job(vt_device *d, const vt_dev_job *job);

/* Cancels a waiting or running job (between steps); a VT_DEV_STATE event
 * with VT_JOB_CANCELLED follows unless the job had already ended.  VT_ENOMEM
 * (nothing sent) when the command cannot be made. */
int vt_device_cancel(vt_device *d, int64_t job);

/* Classifies images (absolute paths) with job's model file as creds; the
 * reply (VT_DEV_REPLY with req) carries {"predictions": [...]}, or ESTATE
 * when the file is another job's (it replaced job's outputs).  VT_ENOMEM
 * (nothing sent, no reply) when the command cannot be made; VT_EBUSY
 * (likewise) once the device thread has ended its loop, the daemon
 * stopping: a request it had taken before is answered EBUSY. */
int vt_device_predict(vt_device *d, uint64_t req, int64_t job, const char *model,
                       const vt_creds *creds, const char *const *images, int n, int top);

/* Evaluates job's model on a labelled folder; the reply carries {"eval":
 * {...}} (ESTATE as for predict).  VT_ENOMEM and VT_EBUSY as for predict. */
int vt_device_eval(vt_device *d, uint64_t req, int64_t job, const char *model,
                    const vt_creds *creds, const char *dir);

/* Drops prediction or evaluation req (its asker has gone): it stops at its
 * next turn, without a reply; one already answered is left alone.  No
 * error: when the command cannot be made, the request runs to its end. */
void vt_device_drop(vt_device *d, uint64_t req);

/* Takes every waiting event, oldest first (a list to free with
 * vt_dev_event_free on each). */
vt_dev_event *vt_device_events(vt_device *d);

/* Frees one event and its text (not the events after it); NULL is a no-op. */
void vt_dev_event_free(vt_dev_event *e);

/* Asks the thread to stop: it checkpoints the running jobs (mid-epoch) and
 * posts VT_DEV_STOPPED.  Needs no memory (a flag, not a queued command). */
void vt_device_stop(vt_device *d);

/* Joins the thread and frees everything (after VT_DEV_STOPPED or
 * VT_DEV_FATAL); the uv handle is closed asynchronously.  NULL is a no-op. */
void vt_device_free(vt_device *d);

/* Seconds since the device thread last showed life, beyond twice the
 * longest step it has taken (at most an hour's allowance; for the watchdog:
 * a CPU backend's step at a large batch can take minutes, and is not a
 * hang once one such step has been seen). */
double vt_device_idle_seconds(vt_device *d);

/* Estimated device bytes of a job (model, activations, trunk scratch; not
 * the optional feature cache), for admission and for refusing jobs that can
 * never fit.  bf16: whether the device's activations are bf16 (a job whose
 * precision is fp32 computes in f32 there all the same). */
size_t vt_device_estimate(const vt_jobspec *spec, int bf16);

/* Whether spec's job can ever fit in job_memory bytes (the device memory
 * jobs may have): 0 with *need = vt_device_estimate's figure, or VT_ETOOBIG
 * with a message giving both figures, the largest part of the estimate and
 * the setting that lowers it ("... GiB of it is the head's weights ...; use
 * narrower head.dense layers"; the batch: batch_size or image_size; the
 * trainable convolutions: trainable_blocks).  The loop checks submissions
 * with it, the device thread every job it is handed. */
int vt_device_check_fits(const vt_jobspec *spec, int bf16, size_t job_memory, size_t *need);

#endif

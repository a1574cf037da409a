/* device.c - the device thread (see device.h).
 *
 * Commands (loop -> device) and events (device -> loop) are singly linked
 * lists under their own mutexes.  The device thread's loop:
 *   drain commands (predictions and evaluations run here) -> admit waiting
 *   jobs that fit -> step the job the scheduler picks -> post statistics
 *   once a second -> repeat; with no job running it waits up to a second
 *   for a command instead of stepping.
 * Resident trunks ("bases") are shared by weight content: a job naming a
 * weights file whose convolutions hash like a resident base's uses it.
 */
#include "device.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/bg.h"
#include "../common/clock.h"
#include "../common/error.h"
#include "../common/log.h"
#include "../common/pool.h"
#include "../engine/base.h"
#include "../engine/dataset.h"
#include "../engine/featcache.h"
#include "../engine/loader.h"
#include "../engine/predict.h"
#include "../engine/weights.h"
#include "sched.h"

#define VT__PROGRESS_EVERY 0.25 /* seconds between progress events of a job */
#define VT__STATS_EVERY 1.0
/* Predictions and evaluations in progress at once, at most, and of one
 * user (the others wait their turn in order): each holds its model in
 * host memory and, once read, on the device. */
#define VT__REQS_MAX 3
#define VT__REQS_PER_USER 2
/* What a request the daemon's stop cuts short is answered (VT_EBUSY). */
#define VT__STOPPING "the daemon is stopping; ask again once it is back"

typedef enum { CMD_JOB, CMD_CANCEL, CMD_PREDICT, CMD_EVAL, CMD_DROP } vt__cmd_kind;

typedef struct vt__cmd {
    vt__cmd_kind kind;
    int64_t job;
    uint64_t req;
    vt_creds creds;
    vt_jobspec spec;
    char path[PATH_MAX];   /* checkpoint (job) or model (predict, eval) */
    char dir[PATH_MAX];    /* eval */
    char **images;         /* predict: n paths */
    int n, top;
    struct vt__cmd *next;
} vt__cmd;

typedef struct {
    vt_base *base;
    int refs;
    int resident;
} vt__base_slot;

/* What a scheduler entry's ud points at: a job (vt__djob) or a request
 * (vt__dreq); both begin with this. */
typedef enum { VT__TASK_JOB, VT__TASK_REQUEST } vt__task;

typedef struct vt__dreq vt__dreq;

typedef struct vt__djob {
    vt__task task; /* VT__TASK_JOB */
    vt_device *d;
    int64_t id;
    vt_creds creds;
    vt_jobspec spec;
    char checkpoint[PATH_MAX];
    vt_sched_job *sj;
    vt_trainer *tr;
    int base;          /* index into d->bases, -1 before admission */
    vt_preprocess prep; /* what the job's own weights expect, and where they */
    char desc[PATH_MAX + 32]; /* came from (a shared base may come from another file) */
    double last_progress;
    char phase[16];    /* of the last progress event */
    int spec_posted;   /* VT_DEV_SPEC sent */
    size_t need;       /* device bytes the job is estimated to need */
    size_t promised;   /* of those, what it has not allocated yet: need from
                          admission until it is prepared, then 0 */
    int cancelled;     /* cancelled while its files were written: it ends as
                          cancelled at its next turn, once they are */
    int ending;        /* ended (end_state, end_why), while its output folder is
                          put back in order on its writing thread: it goes at
                          its next turn, once that is done */
    int tidying;       /* tr was made for the put-back alone (vt__tidy_trainer) */
    struct vt__djob *next_tidy; /* in d->tidy, while that put-back goes on */
    vt_job_state end_state;
    char end_why[1024];
    int end_has_why;
} vt__djob;

struct vt_device {
    const vt_config *cfg;
    char store_id[VT_WRITER_STORE_MAX]; /* the job store's id (vt_store_id) */
    uv_async_t async;
    void (*on_events)(void *ud);
    void *ud;
    pthread_t thread;
    int started;

    pthread_mutex_t cmd_mu;
    pthread_cond_t cmd_cv;   /* on CLOCK_MONOTONIC */
    vt__cmd *cmd_head, *cmd_tail;
    int stop_asked;          /* vt_device_stop was called (cmd_mu) */
    int woken;               /* a job's data reading ended (cmd_mu) */
    int closed;              /* the thread takes no more commands: a prediction or
                                evaluation is refused EBUSY (cmd_mu) */

    pthread_mutex_t ev_mu;
    vt_dev_event *ev_head, *ev_tail;
    double alive;          /* monotonic time of the last sign of life (ev_mu) */
    double longest_step;   /* seconds the longest training step took (ev_mu) */

    /* device-thread state */
    vt_backend *be;
    vt_pool *pool;
    vt_sched *sched;
    vt_featcache_set *caches; /* frozen features shared between jobs */
    vt__base_slot *bases;
    int nbases;
    /* Output directories of running jobs (by device and inode, so that two
     * spellings of one directory are one): a second job is refused one.
     * Claimed on the jobs' writing threads (the output folder's check),
     * dropped on the device thread: under claim_mu. */
    pthread_mutex_t claim_mu;
    struct vt__claim {
        int64_t job;
        uint64_t dev, ino;
        int ending;    /* the job has ended: the claim goes once its folder is
                          put back in order (which may remove it, and free
                          its inode number for a new folder) */
    } *claims;
    int nclaims, cap_claims;
    size_t baseline; /* device memory in use with no job: the resident trunk */
    size_t promised; /* the sum of the running jobs' promised bytes */
    double last_stats;
    int stopping;
    /* Jobs cancelled while queued whose output folder's put-back goes on
     * (vt__tidy_trainer): out of the scheduler, ended once it is done. */
    struct vt__djob *tidy;
    /* Requests: those in progress and those waiting to start. */
    vt__dreq *reqs[VT__REQS_MAX];
    int nreqs;
    vt__cmd *req_head, *req_tail;
};

/* ---- events ------------------------------------------------------------ */

static void vt__post(vt_device *d, vt_dev_event *e)
{
    e->next = NULL;
    pthread_mutex_lock(&d->ev_mu);
    if (d->ev_tail)
        d->ev_tail->next = e;
    else
        d->ev_head = e;
    d->ev_tail = e;
    d->alive = vt_clock_mono();
    pthread_mutex_unlock(&d->ev_mu);
    uv_async_send(&d->async);
}

static vt_dev_event *vt__event(vt_dev_event_kind kind, int64_t job)
{
    vt_dev_event *e = calloc(1, sizeof *e);
    if (e) {
        e->kind = kind;
        e->job = job;
    }
    return e;
}

static void vt__post_text(vt_device *d, vt_dev_event_kind kind, int64_t job, int state,
                          const char *text)
{
    vt_dev_event *e = vt__event(kind, job);
    if (!e)
        return;
    e->state = state;
    e->text = text ? strdup(text) : NULL;
    vt__post(d, e);
}

vt_dev_event *vt_device_events(vt_device *d)
{
    vt_dev_event *e;
    pthread_mutex_lock(&d->ev_mu);
    e = d->ev_head;
    d->ev_head = d->ev_tail = NULL;
    pthread_mutex_unlock(&d->ev_mu);
    return e;
}

void vt_dev_event_free(vt_dev_event *e)
{
    if (e) {
        free(e->text);
        free(e->trunk);
        free(e);
    }
}

#define VT__WATCHDOG_ALLOWANCE_MAX 3600.0 /* seconds a long step may add, at most */

double vt_device_idle_seconds(vt_device *d)
{
    double a, longest;
    pthread_mutex_lock(&d->ev_mu);
    a = d->alive;
    longest = d->longest_step;
    pthread_mutex_unlock(&d->ev_mu);
    /* (capped: one slow step must not switch the watchdog off for good) */
    a = vt_clock_mono() - a - (2 * longest < VT__WATCHDOG_ALLOWANCE_MAX ? 2 * longest
                                                                         : VT__WATCHDOG_ALLOWANCE_MAX);
    return a > 0 ? a : 0;
}

static void vt__alive(vt_device *d)
{
    pthread_mutex_lock(&d->ev_mu);
    d->alive = vt_clock_mono();
    pthread_mutex_unlock(&d->ev_mu);
}

/* vt_backend_set_heartbeat's call, on the device thread. */
static void vt__heartbeat(void *d) { vt__alive(d); }

/* ---- commands ---------------------------------------------------------- */

static void vt__cmd_free(vt__cmd *c)
{
    if (!c)
        return;
    vt_jobspec_free(&c->spec);
    for (int i = 0; c->images && i < c->n; i++)
        free(c->images[i]);
    free(c->images);
    free(c);
}

/* Appends c to the list *head .. *tail. */
static void vt__cmd_append(vt__cmd **head, vt__cmd **tail, vt__cmd *c)
{
    c->next = NULL;
    if (*tail)
        (*tail)->next = c;
    else
        *head = c;
    *tail = c;
}

static void vt__send(vt_device *d, vt__cmd *c)
{
    pthread_mutex_lock(&d->cmd_mu);
    vt__cmd_append(&d->cmd_head, &d->cmd_tail, c);
    pthread_cond_signal(&d->cmd_cv);
    pthread_mutex_unlock(&d->cmd_mu);
}

/* vt__send for a prediction or evaluation (c is taken over): VT_EBUSY
 * once the thread has ended its loop (vt__close), which would leave the
 * request without a reply. */
static int vt__send_request(vt_device *d, vt__cmd *c)
{
    int closed;
    pthread_mutex_lock(&d->cmd_mu);
    if (!(closed = d->closed)) {
        vt__cmd_append(&d->cmd_head, &d->cmd_tail, c);
        pthread_cond_signal(&d->cmd_cv);
    }
    pthread_mutex_unlock(&d->cmd_mu);
    if (!closed)
        return 0;
    vt__cmd_free(c);
    return vt_error_set(VT_EBUSY, VT__STOPPING);
}

void vt_device_add_job(vt_device *d, const vt_dev_job *job)
{
    vt__cmd *c = calloc(1, sizeof *c);
    if (!c || vt_jobspec_copy(&c->spec, job->spec) < 0) {
        free(c);
        vt__post_text(d, VT_DEV_STATE, job->id, VT_JOB_FAILED, "out of memory");
        return;
    }
    c->kind = CMD_JOB;
    c->job = job->id;
    c->creds = job->creds;
    snprintf(c->path, sizeof c->path, "%s", job->checkpoint);
    vt__send(d, c);
}

int vt_device_cancel(vt_device *d, int64_t job)
{
    vt__cmd *c = calloc(1, sizeof *c);
    if (!c)
        return vt_error_set(VT_ENOMEM, "out of memory");
    c->kind = CMD_CANCEL;
    c->job = job;
    vt__send(d, c);
    return 0;
}

int vt_device_predict(vt_device *d, uint64_t req, int64_t job, const char *model,
                      const vt_creds *creds, const char *const *images, int n, int top)
{
    vt__cmd *c = calloc(1, sizeof *c);
    if (c)
        c->images = calloc((size_t)(n ? n : 1), sizeof *c->images);
    for (int i = 0; c && c->images && i < n; i++, c->n++)
        if (!(c->images[i] = strdup(images[i])))
            break;
    if (!c || !c->images || c->n < n) {
        vt__cmd_free(c);
        return vt_error_set(VT_ENOMEM, "out of memory");
    }
    c->kind = CMD_PREDICT;
    c->req = req;
    c->job = job;
    c->creds = *creds;
    c->top = top;
    snprintf(c->path, sizeof c->path, "%s", model);
    return vt__send_request(d, c);
}

int vt_device_eval(vt_device *d, uint64_t req, int64_t job, const char *model,
                   const vt_creds *creds, const char *dir)
{
    vt__cmd *c = calloc(1, sizeof *c);
    if (!c)
        return vt_error_set(VT_ENOMEM, "out of memory");
    c->kind = CMD_EVAL;
    c->req = req;
    c->job = job;
    c->creds = *creds;
    snprintf(c->path, sizeof c->path, "%s", model);
    snprintf(c->dir, sizeof c->dir, "%s", dir);
    return vt__send_request(d, c);
}

void vt_device_drop(vt_device *d, uint64_t req)
{
    vt__cmd *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->kind = CMD_DROP;
    c->req = req;
    vt__send(d, c);
}

void vt_device_stop(vt_device *d)
{
    pthread_mutex_lock(&d->cmd_mu);
    d->stop_asked = 1;
    pthread_cond_signal(&d->cmd_cv);
    pthread_mutex_unlock(&d->cmd_mu);
}

/* ---- estimates --------------------------------------------------------- */

/* vt_device_estimate's figure for spec with another batch, with or without
 * the head (without it, and at batch 0, what remains is the trainable
 * convolutions' weights). */
static size_t vt__estimate(const vt_jobspec *spec, int bf16, int batch, int head)
{
    bf16 = bf16 && spec->precision != VT_PREC_FP32; /* as the trainer chooses */
    /* (classes are not known before the job scans its data; 100 stands in:
     * the last layer's share of the estimate is small either way) */
    vt_params p = {.image_size = spec->image_size, .nclasses = 100,
                   .ndense = head ? spec->nhidden + 1 : 0};
    vt_model_opts o = {.trainable_blocks = spec->trainable_blocks,
                       .max_batch = batch, .dropout = spec->dropout,
                       .act = bf16 ? VT_BF16 : VT_F32};
    size_t act = bf16 ? 2 : 4, scratch = 0, model;
    int in = vt_vgg_side(spec->image_size, VT_VGG_NBLOCKS) *
             vt_vgg_side(spec->image_size, VT_VGG_NBLOCKS) * 512;
    for (int j = 0; j < p.ndense; j++) {
        p.dense_in[j] = in;
        p.dense_out[j] = j < spec->nhidden ? spec->hidden[j] : p.nclasses;
        in = p.dense_out[j];
    }
    model = vt_model_estimate(&p, &o, act, &scratch);
    /* the batch of decoded images and its input tensor */
    return model + scratch + (size_t)batch * spec->image_size * spec->image_size * 3 * (1 + act);
}

size_t vt_device_estimate(const vt_jobspec *spec, int bf16)
{
    return vt__estimate(spec, bf16, spec->batch_size, 1);
}

/* The largest part of an estimate and the setting that lowers it. */
static void vt__estimate_advice(const vt_jobspec *spec, int bf16, char *buf, size_t len)
{
    size_t all = vt__estimate(spec, bf16, spec->batch_size, 1);
    size_t fixed = vt__estimate(spec, bf16, 0, 1), convs = vt__estimate(spec, bf16, 0, 0);
    size_t head = fixed - convs, batch = all - fixed;

    if (head >= batch && head >= convs)
        snprintf(buf, len, "%.1f GiB of it is the head's weights with their gradients and "
                 "momentum; use narrower head.dense layers", head / 1073741824.0);
    else if (batch >= convs)
        snprintf(buf, len, "%.1f GiB of it grows with the batch; use a smaller batch_size or "
                 "image_size", batch / 1073741824.0);
    else
        snprintf(buf, len, "%.1f GiB of it is the trainable convolutions' weights with their "
                 "gradients and momentum; train fewer blocks (trainable_blocks)",
                 convs / 1073741824.0);
}

int vt_device_check_fits(const vt_jobspec *spec, int bf16, size_t job_memory, size_t *need)
{
    char advice[256];
    *need = vt_device_estimate(spec, bf16);
    if (*need <= job_memory)
        return 0;
    vt__estimate_advice(spec, bf16, advice, sizeof advice);
    return vt_error_set(VT_ETOOBIG, "the job needs about %.1f GiB of device memory (batch %d at "
                        "%dx%d) but jobs can have %.1f GiB of this device at most (less the "
                        "resident trunk and reserve-mb): %s", *need / 1073741824.0,
                        spec->batch_size, spec->image_size, spec->image_size,
                        job_memory / 1073741824.0, advice);
}

/* ---- bases ------------------------------------------------------------- */

/* Finds or loads the base job j needs; returns its index or a negative
 * code.  j->prep and j->desc describe the job's own weights file, which
 * decides its preprocessing and what its model records even when a base
 * with the same convolutions, loaded from another file (another format,
 * another user's path), serves it. */
static int vt__base_acquire(vt_device *d, vt__djob *j)
{
    vt_base *b = NULL;
    int rc;
    if (!j->spec.weights) {
        d->bases[0].refs++;
        j->prep = d->bases[0].base->prep;
        snprintf(j->desc, sizeof j->desc, "%s", d->bases[0].base->desc);
        return 0;
    }
    if ((rc = vt_base_read(&b, j->spec.weights, &j->creds)) < 0)
        return rc;
    j->prep = b->prep;
    snprintf(j->desc, sizeof j->desc, "%s", b->desc);
    for (int i = 0; i < d->nbases; i++)
        if (d->bases[i].base && !memcmp(d->bases[i].base->hash, b->hash, sizeof b->hash)) {
            vt_base_free(b);
            d->bases[i].refs++;
            return i;
        }
    if ((rc = vt_base_upload(b, d->be)) < 0) {
        vt_base_free(b);
        return rc;
    }
    for (int i = 0; i < d->nbases; i++)
        if (!d->bases[i].base) {
            d->bases[i] = (vt__base_slot){b, 1, 0};
            return i;
        }
    vt__base_slot *nb = realloc(d->bases, sizeof *nb * (size_t)(d->nbases + 1));
    if (!nb) {
        vt_base_free(b);
        return vt_error_set(VT_ENOMEM, "out of memory");
    }
    d->bases = nb;
    d->bases[d->nbases] = (vt__base_slot){b, 1, 0};
    return d->nbases++;
}

static void vt__base_release(vt_device *d, int i)
{
    if (i < 0)
        return;
    if (--d->bases[i].refs == 0 && !d->bases[i].resident) {
        vt_base_free(d->bases[i].base);
        d->bases[i].base = NULL;
    }
}

/* ---- jobs -------------------------------------------------------------- */

/* Whether a progress event is due: none since *last for
 * VT__PROGRESS_EVERY seconds, or force; then *last is now. */
static int vt__progress_due(double *last, int force)
{
    double now = vt_clock_mono();
    if (!force && now - *last < VT__PROGRESS_EVERY)
        return 0;
    *last = now;
    return 1;
}

static void vt__hook_progress(void *ud, const vt_progress *p)
{
    vt__djob *j = ud;
    const char *phase = p->phase ? p->phase : "training";
    vt_dev_event *e;
    /* (a pass's last step and a new phase always: the end of a pass is seen,
     * and "saving" after it however soon it comes) */
    if (!vt__progress_due(&j->last_progress, p->step == p->steps || strcmp(phase, j->phase)) ||
        !(e = vt__event(VT_DEV_PROGRESS, j->id)))
        return;
    snprintf(j->phase, sizeof j->phase, "%s", phase);
    e->progress = *p;
    snprintf(e->phase, sizeof e->phase, "%s", phase);
    e->progress.phase = NULL;
    vt__post(j->d, e);
}

static void vt__hook_epoch(void *ud, const vt_epoch_metrics *m)
{
    vt__djob *j = ud;
    vt_dev_event *e = vt__event(VT_DEV_EPOCH, j->id);
    if (e) {
        e->metrics = *m;
        vt__post(j->d, e);
    }
}

/* Claims the output directory (dev, ino) for job ud, refusing one another
 * running job holds; 1 (with the refusal's message) when that job has
 * ended and lets go once its folder is put back in order (as a job
 * cancelled while queued does from its claim on: vt__tidy_trainer).  (On
 * the job's writing thread.) */
static int vt__hook_claim(void *ud, uint64_t dev, uint64_t ino)
{
    vt__djob *j = ud;
    vt_device *d = j->d;
    int64_t other = 0;
    int rc = 0, ending = 0;
    pthread_mutex_lock(&d->claim_mu);
    for (int i = 0; i < d->nclaims && !other; i++)
        if (d->claims[i].dev == dev && d->claims[i].ino == ino && d->claims[i].job != j->id) {
            other = d->claims[i].job;
            ending = d->claims[i].ending;
        }
    if (!other && d->nclaims == d->cap_claims) {
        int cap = d->cap_claims ? 2 * d->cap_claims : 8;
        struct vt__claim *c = realloc(d->claims, (size_t)cap * sizeof *c);
        if (c) {
            d->claims = c;
            d->cap_claims = cap;
        } else {
            rc = VT_ENOMEM;
        }
    }
    if (!other && rc == 0)
        d->claims[d->nclaims++] = (struct vt__claim){j->id, dev, ino, j->tidying};
    pthread_mutex_unlock(&d->claim_mu);
    if (other) {
        vt_error_set(VT_EBUSY, "output %s is where job %lld writes (under another name); "
                     "give this job another output directory", j->spec.output,
                     (long long)other);
        return ending ? 1 : VT_EBUSY;
    }
    return rc < 0 ? vt_error_set(rc, "out of memory") : 0;
}

/* Marks job's claims as going: it has ended. */
static void vt__claims_ending(vt_device *d, int64_t job)
{
    pthread_mutex_lock(&d->claim_mu);
    for (int i = 0; i < d->nclaims; i++)
        if (d->claims[i].job == job)
            d->claims[i].ending = 1;
    pthread_mutex_unlock(&d->claim_mu);
}

/* Drops job's claims (it ended). */
static void vt__unclaim(vt_device *d, int64_t job)
{
    pthread_mutex_lock(&d->claim_mu);
    for (int i = 0; i < d->nclaims;)
        if (d->claims[i].job == job)
            d->claims[i] = d->claims[--d->nclaims];
        else
            i++;
    pthread_mutex_unlock(&d->claim_mu);
}

/* A job's message: in the daemon's log, and unless it is a debugging detail
 * also in the job's own log (what `watch` shows). */
static void vt__hook_message(void *ud, vt_log_level level, const char *text)
{
    vt__djob *j = ud;
    vt_dev_event *e;
    vt_log(level, "job %lld: %s", (long long)j->id, text);
    if (level == VT_LOG_DEBUG)
        return;
    e = vt__event(VT_DEV_LOG, j->id);
    if (e) {
        e->level = (int)level;
        e->text = strdup(text);
        vt__post(j->d, e);
    }
}

static void vt__job_free(vt_device *d, vt__djob *j)
{
    d->promised -= j->promised;
    vt__unclaim(d, j->id);
    vt_trainer_free(j->tr);
    vt__base_release(d, j->base);
    vt_jobspec_free(&j->spec);
    free(j);
}

/* Seconds vt__job_end waits for a job's output folder to be put back in
 * order before it leaves that to go on: long enough for the usual few
 * renames (the job ends at once, and its cancel is answered with its end,
 * so that its folder is free for the next job), short beside a step. */
#define VT__DISCARD_WAIT_S 1.0

/* Ends a job: removes it from the scheduler and reports its final state.
 * A job that did not succeed first puts back what it replaced in its output
 * directory and takes back one it made and left empty, on its writing
 * thread (unless the device is stopping).  When that takes longer than
 * VT__DISCARD_WAIT_S (a slow or dead mount) the job stays, ending (a
 * cancel is answered as under way), and vt__job_after ends it at its turn
 * once that is done. */
static void vt__job_end(vt_device *d, vt__djob *j, vt_job_state state, const char *text)
{
    if (!j->ending) { /* (text is often vt_error_msg(), which discarding may overwrite) */
        vt__claims_ending(d, j->id);
        j->end_state = state;
        j->end_has_why = text != NULL;
        snprintf(j->end_why, sizeof j->end_why, "%s", text ? text : "");
    }
    /* (started, or the one under way asked after: 1 while it goes on) */
    int pending = j->end_state != VT_JOB_SUCCEEDED &&
                  vt_trainer_discard_output(j->tr, d->stopping != 0) == 1;
    if (pending && !j->ending) { /* (just started: as a rule a moment's work) */
        vt_trainer_wait(j->tr, VT__DISCARD_WAIT_S);
        pending = vt_trainer_discard_output(j->tr, 0) == 1;
    }
    if (pending) {
        if (!j->ending && j->end_state == VT_JOB_CANCELLED)
            vt__post_text(d, VT_DEV_CANCEL_WAITS, j->id, 0, NULL);
        j->ending = 1;
        if (j->tidying && j->sj) { /* (never admitted: it has no turns, and must get none) */
            vt_sched_remove(d->sched, j->sj);
            j->sj = NULL;
            j->next_tidy = d->tidy;
            d->tidy = j;
        }
        return;
    }
    vt__post_text(d, VT_DEV_STATE, j->id, (int)j->end_state,
                  j->end_has_why ? j->end_why : NULL);
    if (j->sj)
        vt_sched_remove(d->sched, j->sj);
    vt__job_free(d, j);
}

/* Device memory jobs may ever have: the total, less what is in use
 * without any (measured once the resident trunk is up), less the reserve. */
static size_t vt__job_memory(const vt_device *d)
{
    size_t total = vt_backend_memory_total(d->be), keep = d->baseline + (d->cfg->reserve_mb << 20);
    return total > keep ? total - keep : 0;
}

/* Device memory free for a job to start with: what is not in use, less
 * the reserve and what the running jobs that are still preparing (reading
 * their data, for minutes maybe) will take. */
static size_t vt__free_bytes(vt_device *d)
{
    size_t used, total = vt_backend_memory_total(d->be);
    size_t reserve = (d->cfg->reserve_mb << 20) + d->promised;
    vt_backend_memory(d->be, &used, NULL);
    return total > used + reserve ? total - used - reserve : 0;
}

static void vt__wake(vt_device *d);

/* vt_trainer_hooks.data_ready: on the job's reading thread, or a decode
 * thread. */
static void vt__hook_read(void *ud) { vt__wake(((vt__djob *)ud)->d); }

/* Starts the trainer of an admitted job. */
static void vt__job_begin(vt_device *d, vt__djob *j)
{
    int rc, bi = vt__base_acquire(d, j);
    size_t budget = vt__free_bytes(d);
    if (bi < 0) {
        vt__job_end(d, j, VT_JOB_FAILED, vt_error_msg());
        return;
    }
    j->base = bi;
    /* The feature caches may use half of the device memory free now, or the
     * configured amount, and host memory for what does not fit there. */
    size_t cache = d->cfg->cache_mb >= 0 ? (size_t)d->cfg->cache_mb << 20 : budget / 2;
    size_t host = d->cfg->host_cache_mb >= 0 ? (size_t)d->cfg->host_cache_mb << 20
                                             : vt_featcache_host_default(d->be);
    vt_trainer_env env = {.be = d->be, .pool = d->pool, .trunk = d->bases[bi].base->trunk,
                          .base = d->bases[bi].base->params,
                          .base_prep = j->prep,
                          .base_desc = j->desc,
                          .base_random = d->bases[bi].base->random, .creds = &j->creds,
                          .job_id = j->id, .job_store = d->store_id,
                          .checkpoint = j->checkpoint[0] ? j->checkpoint : NULL,
                          .cache_limit = cache, .host_cache_limit = host, .caches = d->caches,
                          .base_hash = d->bases[bi].base->hash};
    vt_trainer_hooks hooks = {.progress = vt__hook_progress, .epoch_end = vt__hook_epoch,
                              .message = vt__hook_message, .claim_output = vt__hook_claim,
                              .data_ready = vt__hook_read, .ud = j};
    if ((rc = vt_trainer_create(&j->tr, &j->spec, &env, &hooks)) < 0) {
        vt__job_end(d, j, VT_JOB_FAILED, vt_error_msg());
        return;
    }
    j->promised = j->need;
    d->promised += j->promised;
    vt__post_text(d, VT_DEV_STATE, j->id, VT_JOB_RUNNING, NULL);
}

static void vt__admit(vt_device *d)
{
    vt_sched_job *sj;
    while ((sj = vt_sched_admit(d->sched, vt__free_bytes(d))))
        vt__job_begin(d, vt_sched_job_ud(sj));
}

/* Gives a queued job j that is cancelled, and has the checkpoint of a run
 * before a stop, a trainer for its put-back alone: its output folder is
 * then left as a cancelled run's (what it replaced put back, a folder it
 * made and left empty removed).  A job without a checkpoint has written
 * nothing there; out of memory, the folder stays as it is. */
static void vt__tidy_trainer(vt_device *d, vt__djob *j)
{
    vt_trainer_env env = {.be = d->be, .creds = &j->creds, .job_id = j->id,
                          .job_store = d->store_id, .checkpoint = j->checkpoint};
    vt_trainer_hooks hooks = {.message = vt__hook_message, .claim_output = vt__hook_claim,
                              .data_ready = vt__hook_read, .ud = j};
    if (j->tr || !j->checkpoint[0] || access(j->checkpoint, F_OK) < 0)
        return;
    if (vt_trainer_create(&j->tr, &j->spec, &env, &hooks) == 0) {
        vt_trainer_adopt_output(j->tr);
        j->tidying = 1;
    }
}

/* Ends the jobs of d->tidy whose put-back is done (all of them, waiting
 * for each, when the device is stopping). */
static void vt__tidy_ends(vt_device *d)
{
    for (vt__djob **p = &d->tidy; *p;) {
        vt__djob *j = *p;
        if (d->stopping || vt_trainer_ready(j->tr)) {
            *p = j->next_tidy;
            vt__job_end(d, j, j->end_state, NULL);
        } else {
            p = &j->next_tidy;
        }
    }
}

/* rc of a failed operation, made VT_EDEVLOST when the device context is
 * lost: a library's failure (VT_EDEVICE) may hide a sticky error, which a
 * sync then finds (the message keeps both).  The message is kept. */
static int vt__device_lost(vt_device *d, int rc)
{
    char why[1024], lost[1024];
    if (rc != VT_EDEVICE)
        return rc;
    snprintf(why, sizeof why, "%s", vt_error_msg());
    if (vt_backend_sync(d->be) == VT_EDEVLOST) {
        snprintf(lost, sizeof lost, "%s", vt_error_msg());
        return vt_error_set(VT_EDEVLOST, "%s; then: %s", why, lost);
    }
    return vt_error_set(VT_EDEVICE, "%s", why);
}

/* After a lost device context (msg says why) in `what`: the daemon ends,
 * for the service manager to start a clean process. */
static void vt__fatal(vt_device *d, const char *what, const char *msg)
{
    char why[1200];
    snprintf(why, sizeof why, "device error in %s: %s", what, msg);
    vt__post_text(d, VT_DEV_FATAL, 0, 0, why);
    d->stopping = 2;
}

/* Waits for job j's files under way, reports them, and says how they end
 * it: VT_JOB_SUCCEEDED when they were its final model and class map (a
 * cancel that came meanwhile is over, said in its log: discarding would
 * throw away a finished model), VT_JOB_CANCELLED when it was cancelled,
 * VT_JOB_FAILED (the message set) when an output could not be written;
 * else -1: it goes on. */
static int vt__files_settle(vt__djob *j)
{
    int rc = j->tr ? vt_trainer_files_written(j->tr) : 0;
    if (j->tr && vt_trainer_done(j->tr)) {
        if (j->cancelled)
            vt__hook_message(j, VT_LOG_INFO, "the model was written before the cancel took "
                             "effect: the job has finished");
        j->cancelled = 0;
        return VT_JOB_SUCCEEDED;
    }
    if (j->cancelled) {
        if (rc < 0)
            vt_log_warn("job %lld, cancelled: %s", (long long)j->id, vt_error_msg());
        return VT_JOB_CANCELLED;
    }
    return rc < 0 ? VT_JOB_FAILED : -1;
}

/* A training step of job j (queued on the device). */
static int vt__job_turn(vt_device *d, vt__djob *j)
{
    if (j->ending) /* (ready: its output folder is in order) */
        return 0;
    if (j->cancelled) /* (ready: its files are written; their epoch is reported first) */
        return vt__files_settle(j) == VT_JOB_SUCCEEDED ? 0 : VT_ECANCELLED;
    int rc = vt_trainer_step(j->tr);
    if (!j->spec_posted && vt_trainer_prepared(j->tr)) {
        d->promised -= j->promised; /* allocated now: in use */
        j->promised = 0;
        vt_dev_event *e = vt__event(VT_DEV_SPEC, j->id);
        if (e && (e->text = vt_jobspec_to_json(vt_trainer_spec(j->tr))) &&
            (e->trunk = strdup(j->desc))) {
            snprintf(e->phase, sizeof e->phase, "%s",
                     vt_preprocess_name(vt_trainer_preprocess(j->tr)));
            vt__post(d, e);
        } else {
            vt_dev_event_free(e);
        }
        j->spec_posted = 1;
    }
    return rc;
}

/* After job j's step returned rc: its end when it is over. */
static void vt__job_after(vt_device *d, vt__djob *j, int rc)
{
    if (rc > 0)
        return;
    if (j->ending) {
        vt__job_end(d, j, j->end_state, NULL);
        return;
    }
    if (j->cancelled) {
        vt__job_end(d, j, VT_JOB_CANCELLED, NULL);
        return;
    }
    if (rc == 0) {
        vt__job_end(d, j, VT_JOB_SUCCEEDED, NULL);
        return;
    }
    if ((rc = vt__device_lost(d, rc)) == VT_EDEVLOST) {
        /* The context is unusable (another error fails only this job):
         * report and let the service manager restart a clean process. */
        char what[64], msg[1024];
        snprintf(what, sizeof what, "job %lld", (long long)j->id);
        snprintf(msg, sizeof msg, "%s", vt_error_msg()); /* (ending the job may reuse it) */
        d->stopping = 2; /* (its output folder is put in order before the stop) */
        vt__job_end(d, j, VT_JOB_FAILED, msg);
        vt__fatal(d, what, msg);
        return;
    }
    vt__job_end(d, j, VT_JOB_FAILED, vt_error_msg());
}

/* ---- replies ------------------------------------------------------------ */

static void vt__reply(vt_device *d, uint64_t req, int code, char *text)
{
    vt_dev_event *e = vt__event(VT_DEV_REPLY, 0);
    if (!e) {
        free(text);
        return;
    }
    e->req = req;
    e->code = code;
    e->text = text;
    vt__post(d, e);
}

/* Replies to a prediction or evaluation that the daemon's stop cut short. */
static void vt__reply_stopping(vt_device *d, uint64_t req)
{
    vt__reply(d, req, VT_EBUSY, strdup(VT__STOPPING));
}

/* Replies with the error of a prediction or evaluation.  A device failure
 * behind it is looked into as after a training step's: a lost context (a
 * sync tells) ends the daemon for a restart, as it would the next job. */
static void vt__reply_error(vt_device *d, uint64_t req, int code)
{
    code = vt__device_lost(d, code);
    vt__reply(d, req, code, strdup(vt_error_msg()));
    if (code == VT_EDEVLOST)
        vt__fatal(d, "a prediction or evaluation", vt_error_msg());
}

/* ---- requests ---------------------------------------------------------
 * A prediction or evaluation reads its model file (and an evaluation its
 * folder) on a thread of its own, then runs one batch at each turn the
 * scheduler gives its user, between the jobs' steps, and is charged for
 * it like a job. */

/* What a request's reading thread works on, and its results. */
typedef struct {
    vt__cmd *cmd;      /* kind, model, folder or images, requester */
    char store_id[VT_WRITER_STORE_MAX]; /* the job store's (vt_store_id) */
    vt_predictor *p;   /* read (host only) */
    vt_dataset *ds;    /* the folder (eval) or the images (predict) */
    int rc;            /* 0 or the error, its message in msg */
    char msg[1024];
} vt__rread;

struct vt__dreq {
    vt__task task;     /* VT__TASK_REQUEST */
    vt_device *d;
    vt_sched_job *sj;
    vt_bg *bg;         /* the reading thread; NULL once joined */
    vt__rread *rd;     /* its work: ours once joined */
    size_t need;       /* device bytes its network is estimated to take */
    vt_pass *pass;     /* once the network is on the device */
    double last_progress; /* when its last progress event went */
};

static void vt__rread_free(void *arg)
{
    vt__rread *rd = arg;
    vt_predictor_free(rd->p);
    vt_dataset_free(rd->ds);
    vt__cmd_free(rd->cmd);
    free(rd);
}

/* Refuses a model file that another job or `vggtuned run` wrote over job
 * c->job's (its metadata says who wrote it; files without the record
 * pass); store_id is the job store's. */
static int vt__model_of_job(const char *store_id, const vt__cmd *c, const vt_predictor *p)
{
    const vt_writer *owner = vt_predictor_writer(p);
    char by[80];
    if (owner->job < 0 || vt_writer_is(owner, c->job, store_id))
        return 0;
    vt_writer_name(owner, store_id, by, sizeof by);
    return vt_error_set(VT_ESTATE, "job %lld has no model any more: %s was replaced by %s's",
                        (long long)c->job, c->path, by);
}

/* The reading thread's work: the model as the requester (an admin who
 * cannot read the owner's files is told so) and whose it is, then the
 * data. */
static void vt__req_read(void *arg, const atomic_int *stop)
{
    vt__rread *rd = arg;
    const vt__cmd *c = rd->cmd;
    const char *name = c->kind == CMD_EVAL ? c->dir : c->images[0], *slash = strrchr(name, '/');
    int rc;
    vt_bg_test_hold(slash ? slash + 1 : name);
    rc = vt_predictor_read(&rd->p, c->path, &c->creds);
    if (rc == VT_EPERM)
        rc = vt_error_wrap(rc, "job %lld's model, read with your own file permissions (uid %u)",
                           (long long)c->job, (unsigned)c->creds.uid);
    if (rc == 0)
        rc = vt__model_of_job(rd->store_id, c, rd->p);
    if (rc == 0 && c->kind == CMD_EVAL && (rc = vt_creds_enter(&c->creds)) == 0) {
        rc = vt_dataset_scan_until(&rd->ds, AT_FDCWD, c->dir, stop);
        vt_creds_leave();
    } else if (rc == 0 && c->kind == CMD_PREDICT) {
        rc = vt_dataset_of_files(&rd->ds, (const char *const *)c->images, c->n);
    }
    if ((rd->rc = rc) < 0)
        snprintf(rd->msg, sizeof rd->msg, "%s", vt_error_msg()); /* (this thread's own) */
}

/* Wakes the device thread, which may be waiting for work: a reading has
 * ended (a job's or a request's), or a request's batch is decoded. */
static void vt__wake(vt_device *d)
{
    pthread_mutex_lock(&d->cmd_mu);
    d->woken = 1;
    pthread_cond_signal(&d->cmd_cv);
    pthread_mutex_unlock(&d->cmd_mu);
}

/* vt_bg_calls.done and the pass's decoded call: the request may have work. */
static void vt__req_woken(void *d) { vt__wake(d); }

static void vt__req_free(vt__dreq *r)
{
    vt_pass_free(r->pass);
    if (r->bg)
        vt_bg_abandon(r->bg); /* (it frees r->rd) */
    else
        vt__rread_free(r->rd);
    free(r);
}

/* Ends a request: out of the scheduler and the requests in progress,
 * freed. */
static void vt__req_end(vt_device *d, vt__dreq *r)
{
    for (int i = 0; i < d->nreqs; i++)
        if (d->reqs[i] == r)
            d->reqs[i] = d->reqs[--d->nreqs];
    vt_sched_remove(d->sched, r->sj);
    vt__req_free(r);
}

/* Queues command c (predict or eval, which is taken over) to start once
 * vt__req_admit lets it. */
static void vt__req_queue(vt_device *d, vt__cmd *c)
{
    vt__cmd_append(&d->req_head, &d->req_tail, c);
}

/* Starts command c's request (c is taken over). */
static void vt__req_start(vt_device *d, vt__cmd *c)
{
    vt__dreq *r = calloc(1, sizeof *r);
    vt__rread *rd = calloc(1, sizeof *rd);
    vt_bg_calls calls = {.run = vt__req_read, .drop = vt__rread_free, .done = vt__req_woken,
                         .ud = d};
    uint64_t req = c->req;
    if (!r || !rd) {
        free(r);
        free(rd);
        vt__cmd_free(c);
        vt__reply(d, req, VT_ENOMEM, strdup("out of memory"));
        return;
    }
    *r = (vt__dreq){.task = VT__TASK_REQUEST, .d = d, .rd = rd};
    rd->cmd = c;
    snprintf(rd->store_id, sizeof rd->store_id, "%s", d->store_id);
    if (!(r->sj = vt_sched_add_request(d->sched, c->creds.uid, r))) {
        vt__req_free(r);
        vt__reply(d, req, VT_ENOMEM, strdup("out of memory"));
        return;
    }
    d->reqs[d->nreqs++] = r;
    if (vt_bg_start(&r->bg, &calls, rd) < 0) {
        vt__reply(d, req, VT_ENOMEM, strdup(vt_error_msg()));
        vt__req_end(d, r);
    }
}

/* Starts the queued requests that may start: in order, while fewer than
 * VT__REQS_MAX are in progress, each whose user has fewer than
 * VT__REQS_PER_USER in progress. */
static void vt__req_admit(vt_device *d)
{
    vt__cmd **at = &d->req_head, *c;
    while ((c = *at) && d->nreqs < VT__REQS_MAX) {
        int mine = 0;
        for (int i = 0; i < d->nreqs; i++)
            mine += d->reqs[i]->rd->cmd->creds.uid == c->creds.uid;
        if (mine >= VT__REQS_PER_USER) {
            at = &c->next;
        } else {
            *at = c->next;
            vt__req_start(d, c);
        }
    }
    d->req_tail = NULL;
    for (c = d->req_head; c; c = c->next)
        d->req_tail = c;
}

/* Drops request req, waiting or in progress, without a reply. */
static void vt__req_drop(vt_device *d, uint64_t req)
{
    for (vt__cmd **at = &d->req_head; *at; at = &(*at)->next)
        if ((*at)->req == req) {
            vt__cmd *c = *at;
            *at = c->next;
            vt__cmd_free(c);
            break;
        }
    d->req_tail = NULL;
    for (vt__cmd *c = d->req_head; c; c = c->next)
        d->req_tail = c;
    for (int i = 0; i < d->nreqs; i++)
        if (d->reqs[i]->rd->cmd->req == req) {
            vt_log_debug("request %llu dropped: its asker has gone", (unsigned long long)req);
            vt__req_end(d, d->reqs[i]);
            return;
        }
}

/* Whether request r has work now: its reading is over; its network is on
 * the device or fits the memory free for it (as a job is admitted: it
 * never takes what running or preparing jobs are estimated to need); and
 * its next batch is decoded (a read stuck on a dead mount holds up no one
 * else; the decode's end wakes the device thread). */
static int vt__req_ready(vt__dreq *r)
{
    if (r->bg)
        return vt_bg_finished(r->bg);
    if (r->pass)
        return vt_pass_ready(r->pass);
    return r->need <= vt__free_bytes(r->d);
}

/* Request r's turn.  The first after the reading checks the model and
 * estimates its memory; once that is free (vt__req_ready), the next builds
 * the network and begins the pass; then each turn runs a batch.  1: more
 * to do, 0: done, or an error. */
static int vt__req_turn(vt_device *d, vt__dreq *r)
{
    vt__rread *rd = r->rd;
    int rc;
    if (r->pass)
        return vt_pass_step(r->pass);
    if (r->bg) {
        vt_bg_join(r->bg);
        r->bg = NULL;
        if (rd->rc < 0)
            return vt_error_set(rd->rc, "%s", rd->msg);
        r->need = vt_predictor_estimate(rd->p, d->be);
        if (r->need > vt__job_memory(d))
            return vt_error_set(VT_ETOOBIG, "job %lld's model needs about %.1f MiB of device "
                                "memory for a prediction or evaluation, but jobs and requests "
                                "can have %.1f MiB of this device at most (less the resident "
                                "trunk and reserve-mb)", (long long)rd->cmd->job,
                                r->need / 1048576.0, vt__job_memory(d) / 1048576.0);
        return 1;
    }
    if ((rc = vt_predictor_upload(rd->p, d->be)) < 0 ||
        (rc = vt_pass_begin(&r->pass, rd->p, d->pool, rd->ds,
                            rd->cmd->kind == CMD_EVAL ? VT_PASS_EVAL : VT_PASS_PREDICT,
                            &rd->cmd->creds, vt__req_woken, d)) < 0)
        return rc;
    return 1;
}

/* The reply to a finished request: its predictions or its evaluation. */
static char *vt__req_result(vt__dreq *r)
{
    const vt__cmd *c = r->rd->cmd;
    cJSON *body = cJSON_CreateObject(), *arr;
    char *text = NULL;
    vt_eval_result er;
    if (!body)
        return NULL;
    if (c->kind == CMD_EVAL) {
        vt_pass_eval(r->pass, &er);
        cJSON_AddItemToObject(body, "eval", vt_eval_json(r->rd->p, &er));
        vt_eval_result_free(&er);
    } else if ((arr = cJSON_AddArrayToObject(body, "predictions"))) {
        for (int i = 0; i < c->n; i++) {
            const float *logits, *probs;
            const char *why;
            probs = vt_pass_row(r->pass, i, &logits, &why);
            cJSON_AddItemToArray(arr, vt_predict_json(r->rd->p, c->images[i], probs, logits,
                                                      c->top, why));
        }
    }
    text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    return text;
}

/* Request r's progress, for its client: images gone through of all, at
 * most every VT__PROGRESS_EVERY seconds. */
static void vt__req_progress(vt_device *d, vt__dreq *r)
{
    vt_dev_event *e;
    if (!r->pass || !vt__progress_due(&r->last_progress, 0) ||
        !(e = vt__event(VT_DEV_REQ_PROGRESS, 0)))
        return;
    e->req = r->rd->cmd->req;
    e->progress.step = vt_pass_done(r->pass, &e->progress.steps);
    snprintf(e->phase, sizeof e->phase, "%s",
             r->rd->cmd->kind == CMD_EVAL ? "evaluating" : "predicting");
    vt__post(d, e);
}

/* After request r's turn returned rc: its progress, and the reply once it
 * is over. */
static void vt__req_after(vt_device *d, vt__dreq *r, int rc)
{
    uint64_t req = r->rd->cmd->req;
    char *text;
    if (rc > 0) {
        vt__req_progress(d, r);
        return;
    }
    if (rc < 0) {
        vt__reply_error(d, req, rc);
    } else if (!(text = vt__req_result(r))) {
        vt__reply(d, req, VT_ENOMEM, strdup("out of memory"));
    } else {
        vt__reply(d, req, 0, text);
    }
    vt__req_end(d, r);
}

/* ---- turns ------------------------------------------------------------ */

/* vt_sched_pick's question: whether a job or request has work now. */
static int vt__ready(void *ud)
{
    if (*(vt__task *)ud == VT__TASK_REQUEST)
        return vt__req_ready(ud);
    vt__djob *j = ud;
    return !j->tr || vt_trainer_ready(j->tr);
}

/* One turn of the job or request the scheduler picks: a training step or
 * a batch of a request.  Returns 0 when none has work.  A turn only queues
 * its device work; when others have work too it waits for it, so that the
 * device time charged to each user is their own.  (Alone, or beside jobs
 * that read their data, a job runs ahead and waits only where its trainer
 * needs results.) */
static int vt__step(vt_device *d)
{
    vt_sched_job *sj = vt_sched_pick(d->sched, vt__ready);
    void *ud;
    double t0, dt;
    int rc, busy;
    if (!sj)
        return 0;
    ud = vt_sched_job_ud(sj);
    busy = vt_sched_busy(d->sched);
    t0 = vt_clock_mono();
    rc = vt_sched_is_request(sj) ? vt__req_turn(d, ud) : vt__job_turn(d, ud);
    if (rc == 1 && busy > 1) {
        int src = vt_backend_sync(d->be);
        rc = src < 0 ? src : rc;
    }
    dt = vt_clock_mono() - t0;
    vt_sched_charge(d->sched, sj, dt, t0 + dt);
    pthread_mutex_lock(&d->ev_mu);
    if (dt > d->longest_step)
        d->longest_step = dt;
    pthread_mutex_unlock(&d->ev_mu);
    vt__alive(d);
    if (vt_sched_is_request(sj))
        vt__req_after(d, ud, rc);
    else
        vt__job_after(d, ud, rc);
    return 1;
}

/* ---- statistics -------------------------------------------------------- */

static void vt__stats(vt_device *d)
{
    cJSON *o = cJSON_CreateObject(), *mem, *trunks, *queue, *users;
    vt_sched_user u[256];
    size_t in_use, peak;
    int running, waiting, nu;
    char name[64];
    if (!o)
        return;
    vt_backend_memory(d->be, &in_use, &peak);
    cJSON_AddStringToObject(o, "backend", vt_backend_name(d->be));
    cJSON_AddStringToObject(o, "device", vt_backend_device(d->be));
    mem = cJSON_AddObjectToObject(o, "memory");
    cJSON_AddNumberToObject(mem, "total", (double)vt_backend_memory_total(d->be));
    cJSON_AddNumberToObject(mem, "in_use", (double)in_use);
    cJSON_AddNumberToObject(mem, "peak", (double)peak);
    cJSON_AddNumberToObject(mem, "host", (double)vt_backend_host_memory(d->be));
    {
        int n;
        size_t dev, host;
        cJSON *fc = cJSON_AddObjectToObject(o, "feature_caches");
        vt_featcache_totals(d->caches, &n, &dev, &host);
        cJSON_AddNumberToObject(fc, "count", n);
        cJSON_AddNumberToObject(fc, "device_bytes", (double)dev);
        cJSON_AddNumberToObject(fc, "host_bytes", (double)host);
    }
    trunks = cJSON_AddArrayToObject(o, "trunks");
    for (int i = 0; i < d->nbases; i++) {
        if (!d->bases[i].base)
            continue;
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "weights", d->bases[i].base->desc);
        cJSON_AddNumberToObject(t, "bytes",
                                (double)(vt_trunk_weight_bytes(d->bases[i].base->trunk) +
                                         vt_trunk_scratch_bytes(d->bases[i].base->trunk)));
        cJSON_AddNumberToObject(t, "jobs", d->bases[i].refs);
        cJSON_AddBoolToObject(t, "resident", d->bases[i].resident);
        cJSON_AddItemToArray(trunks, t);
    }
    {
        cJSON *rq = cJSON_AddObjectToObject(o, "requests");
        int queued = 0;
        for (vt__cmd *c = d->req_head; c; c = c->next)
            queued++;
        cJSON_AddNumberToObject(rq, "running", d->nreqs);
        cJSON_AddNumberToObject(rq, "waiting", queued);
    }
    vt_sched_counts(d->sched, &running, &waiting);
    queue = cJSON_AddObjectToObject(o, "queue");
    cJSON_AddNumberToObject(queue, "queued", waiting);
    cJSON_AddNumberToObject(queue, "running", running);
    users = cJSON_AddArrayToObject(o, "users");
    nu = vt_sched_users(d->sched, u, 256, vt_clock_mono());
    for (int i = 0; i < nu; i++) {
        cJSON *x = cJSON_CreateObject();
        vt_user_name(u[i].uid, name, sizeof name);
        cJSON_AddStringToObject(x, "user", name);
        cJSON_AddNumberToObject(x, "uid", u[i].uid);
        cJSON_AddNumberToObject(x, "running", u[i].running);
        cJSON_AddNumberToObject(x, "queued", u[i].waiting);
        cJSON_AddNumberToObject(x, "requests", u[i].requests);
        cJSON_AddNumberToObject(x, "device_s", u[i].device_s);
        cJSON_AddNumberToObject(x, "share", u[i].share);
        cJSON_AddItemToArray(users, x);
    }
    vt_dev_event *e = vt__event(VT_DEV_STATS, 0);
    if (e) {
        e->text = cJSON_PrintUnformatted(o);
        vt__post(d, e);
    }
    cJSON_Delete(o);
    d->last_stats = vt_clock_mono();
}

/* ---- the thread -------------------------------------------------------- */

/* Carries out command c; returns 1 when c was taken over (not to be freed
 * by the caller). */
static int vt__handle(vt_device *d, vt__cmd *c)
{
    vt_sched_job *sj;
    switch (c->kind) {
    case CMD_JOB: {
        vt__djob *j = calloc(1, sizeof *j);
        if (!j) {
            vt__post_text(d, VT_DEV_STATE, c->job, VT_JOB_FAILED, "out of memory");
            break;
        }
        *j = (vt__djob){.task = VT__TASK_JOB, .d = d, .id = c->job, .creds = c->creds, .spec = c->spec, .base = -1};
        memset(&c->spec, 0, sizeof c->spec); /* moved into j */
        snprintf(j->checkpoint, sizeof j->checkpoint, "%s", c->path);
        /* One that can never fit would hold up the queue behind it for good
         * (admission keeps submission order).  The loop refuses those at
         * submission once the device is up; this catches the rest: jobs
         * sent before that, and queued jobs restored on another device. */
        size_t need;
        if (vt_device_check_fits(&j->spec, vt_backend_act_dtype(d->be, "bf16") == VT_BF16,
                                 vt__job_memory(d), &need) < 0) {
            vt__post_text(d, VT_DEV_STATE, j->id, VT_JOB_FAILED, vt_error_msg());
            vt__job_free(d, j);
            break;
        }
        j->need = need;
        j->sj = vt_sched_add(d->sched, j->id, j->creds.uid, need, j);
        if (!j->sj) {
            vt__post_text(d, VT_DEV_STATE, j->id, VT_JOB_FAILED, "out of memory");
            vt__job_free(d, j);
        }
        break;
    }
    case CMD_CANCEL:
        if ((sj = vt_sched_find(d->sched, c->job))) {
            vt__djob *j = vt_sched_job_ud(sj);
            if (!j->tr) /* (queued) */
                vt__tidy_trainer(d, j);
            /* An epoch end's files take a moment as a rule: waited for, so
             * that the cancel is answered with the job's end (or, when they
             * were its final model, its success).  Freeing the trainer would
             * wait for a write stuck on a dead mount: that job ends once the
             * write has. */
            if (j->tr && vt_trainer_writing(j->tr))
                vt_trainer_wait(j->tr, VT__DISCARD_WAIT_S);
            if (j->tr && vt_trainer_writing(j->tr)) {
                j->cancelled = 1;
                if (vt_trainer_ready(j->tr)) {
                    int end = vt__files_settle(j);
                    vt__job_end(d, j, end == VT_JOB_SUCCEEDED ? VT_JOB_SUCCEEDED
                                                              : VT_JOB_CANCELLED, NULL);
                } else {
                    vt__post_text(d, VT_DEV_CANCEL_WAITS, j->id, 0, NULL);
                }
            } else {
                vt__job_end(d, j, VT_JOB_CANCELLED, NULL);
            }
        }
        break;
    case CMD_PREDICT:
    case CMD_EVAL:
        vt__req_queue(d, c);
        return 1;
    case CMD_DROP:
        vt__req_drop(d, c->req);
        break;
    }
    return 0;
}

/* Takes the whole command queue, and a stop asked for (d->stopping); waits
 * up to a second for either, or for a job's reading to end, when block is
 * set. */
static vt__cmd *vt__take(vt_device *d, int block)
{
    vt__cmd *c;
    pthread_mutex_lock(&d->cmd_mu);
    if (block && !d->cmd_head && !d->stop_asked && !d->woken) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts); /* the condition's clock */
        ts.tv_sec += 1;
        pthread_cond_timedwait(&d->cmd_cv, &d->cmd_mu, &ts);
    }
    c = d->cmd_head;
    d->cmd_head = d->cmd_tail = NULL;
    d->woken = 0;
    if (d->stop_asked && !d->stopping)
        d->stopping = 1;
    pthread_mutex_unlock(&d->cmd_mu);
    return c;
}

/* Drops every job without reporting an end (the store still has them
 * queued or running, so the next start runs them again); with checkpoint
 * set (SIGTERM), prepared running jobs are checkpointed first so they
 * resume where they were.  A job whose files under way settle its end -
 * its final model written, an output that could not be, or a cancel
 * waiting for them - ends as it would have without the stop.  Requests in
 * progress are answered with an error. */
static void vt__shutdown_jobs(vt_device *d, int checkpoint)
{
    vt_sched_job *sj;
    vt__cmd *c;
    vt__tidy_ends(d);
    while ((c = d->req_head)) {
        d->req_head = c->next;
        vt__reply_stopping(d, c->req);
        vt__cmd_free(c);
    }
    d->req_tail = NULL;
    while ((sj = vt_sched_first(d->sched))) {
        if (vt_sched_is_request(sj)) {
            vt__dreq *r = vt_sched_job_ud(sj);
            vt__reply_stopping(d, r->rd->cmd->req);
            vt__req_end(d, r);
            continue;
        }
        vt__djob *j = vt_sched_job_ud(sj);
        if (j->ending) { /* (its output folder's put-back is waited for) */
            vt__job_end(d, j, j->end_state, NULL);
            continue;
        }
        /* The files under way are waited for (freeing the trainer would)
         * and reported, so that the store records the epoch they hold, a
         * checkpoint among them, or the job's end. */
        int end = vt__files_settle(j);
        if (end >= 0) {
            vt__job_end(d, j, (vt_job_state)end, end == VT_JOB_FAILED ? vt_error_msg() : NULL);
            continue;
        }
        if (checkpoint && j->tr && vt_trainer_prepared(j->tr)) {
            if (vt_trainer_checkpoint(j->tr) < 0)
                vt_log_error("job %lld: checkpoint failed: %s", (long long)j->id,
                             vt_error_msg());
            else
                vt_log_info("job %lld: checkpointed for restart", (long long)j->id);
        }
        vt_sched_remove(d->sched, sj);
        vt__job_free(d, j);
    }
}

/* Ends the taking of commands, once the loop is over: the predictions and
 * evaluations still waiting in the queue are answered EBUSY (those sent
 * later are refused by vt__send_request), the rest dropped as
 * vt_device_free would. */
static void vt__close(vt_device *d)
{
    vt__cmd *c, *next;
    pthread_mutex_lock(&d->cmd_mu);
    d->closed = 1;
    c = d->cmd_head;
    d->cmd_head = d->cmd_tail = NULL;
    pthread_mutex_unlock(&d->cmd_mu);
    for (; c; c = next) {
        next = c->next;
        if (c->kind == CMD_PREDICT || c->kind == CMD_EVAL)
            vt__reply_stopping(d, c->req);
        vt__cmd_free(c);
    }
}

static int vt__init(vt_device *d)
{
    char why[512] = "";
    int rc;
    if (strcmp(d->cfg->backend, "auto") == 0)
        rc = vt_backend_create_auto(&d->be, d->cfg->threads, why, sizeof why);
    else
        rc = vt_backend_create(&d->be, d->cfg->backend, d->cfg->threads);
    if (rc < 0)
        return rc;
    /* a step of many layers (the CPU backend at a large batch) shows life
     * after each, not only at its end */
    vt_backend_set_heartbeat(d->be, vt__heartbeat, d);
    if ((rc = vt_pool_create(&d->pool, d->cfg->threads)) < 0)
        return rc;
    if (!(d->sched = vt_sched_new(d->cfg->max_running)) ||
        !(d->caches = vt_featcache_set_new()) || !(d->bases = calloc(1, sizeof *d->bases)))
        return vt_error_set(VT_ENOMEM, "out of memory");
    d->nbases = 1;
    if ((rc = vt_base_load(&d->bases[0].base, d->be,
                           d->cfg->weights[0] ? d->cfg->weights : NULL, NULL)) < 0)
        return vt_error_wrap(rc, "resident weights");
    d->bases[0].resident = 1;
    /* one line, with why the GPU was passed over when it was */
    vt_log_info("backend %s: %s%s%s%s; resident trunk %s (%.0f MiB)", vt_backend_name(d->be),
                vt_backend_device(d->be), why[0] ? " (no GPU used: " : "", why,
                why[0] ? ")" : "", d->bases[0].base->desc,
                vt_trunk_weight_bytes(d->bases[0].base->trunk) / 1048576.0);
    return 0;
}

static void *vt__thread(void *arg)
{
    vt_device *d = arg;
    vt_dev_event *e;

    if (vt__init(d) < 0) {
        /* The loop tears down on STOPPED, whatever came before it. */
        vt__post_text(d, VT_DEV_FATAL, 0, 0, vt_error_msg());
        vt__close(d);
        vt__post_text(d, VT_DEV_STOPPED, 0, 0, NULL);
        return NULL;
    }
    vt_backend_memory(d->be, &d->baseline, NULL);
    if ((e = vt__event(VT_DEV_READY, 0))) {
        char desc[512];
        snprintf(desc, sizeof desc, "%s (%s)", vt_backend_device(d->be), vt_backend_name(d->be));
        e->text = strdup(desc);
        e->bytes = vt__job_memory(d);
        e->state = vt_backend_act_dtype(d->be, "bf16") == VT_BF16;
        vt__post(d, e);
    }
    vt__stats(d);
    for (int worked = 0; !d->stopping;) {
        vt__cmd *c = vt__take(d, !worked); /* (no job had work: wait for some) */
        while (c) {
            vt__cmd *next = c->next;
            if (!vt__handle(d, c))
                vt__cmd_free(c);
            c = next;
        }
        vt__alive(d);
        if (d->stopping)
            break;
        vt__admit(d);
        vt__req_admit(d);
        vt__tidy_ends(d);
        worked = vt__step(d);
        if (vt_clock_mono() - d->last_stats > VT__STATS_EVERY)
            vt__stats(d);
    }
    /* stopping 1: SIGTERM; 2: the device failed (a checkpoint would too) */
    vt__shutdown_jobs(d, d->stopping == 1);
    vt_bg_test_hold(".vggtuned-stopped"); /* (tests: the loop goes on meanwhile) */
    vt__close(d);
    vt__post_text(d, VT_DEV_STOPPED, 0, 0, NULL);
    return NULL;
}

static void vt__on_async(uv_async_t *h)
{
    vt_device *d = h->data;
    d->on_events(d->ud);
}

/* Frees d once its async handle is closed (the loop may still hold it). */
static void vt__free_after_close(uv_handle_t *h)
{
    vt_device *d = h->data;
    vt_dev_event *e = vt_device_events(d), *next;
    for (; e; e = next) {
        next = e->next;
        vt_dev_event_free(e);
    }
    pthread_mutex_destroy(&d->cmd_mu);
    pthread_cond_destroy(&d->cmd_cv);
    pthread_mutex_destroy(&d->ev_mu);
    pthread_mutex_destroy(&d->claim_mu);
    free(d);
}

int vt_device_start(vt_device **out, const vt_config *cfg, const char *store_id,
                    uv_loop_t *loop, void (*on_events)(void *ud), void *ud)
{
    vt_device *d = calloc(1, sizeof *d);
    *out = NULL;
    if (!d)
        return vt_error_set(VT_ENOMEM, "out of memory");
    d->cfg = cfg;
    snprintf(d->store_id, sizeof d->store_id, "%s", store_id);
    d->on_events = on_events;
    d->ud = ud;
    d->alive = vt_clock_mono();
    pthread_condattr_t ca;
    pthread_mutex_init(&d->cmd_mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cmd_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&d->ev_mu, NULL);
    pthread_mutex_init(&d->claim_mu, NULL);
    uv_async_init(loop, &d->async, vt__on_async);
    d->async.data = d;
    if (pthread_create(&d->thread, NULL, vt__thread, d) != 0) {
        uv_close((uv_handle_t *)&d->async, vt__free_after_close);
        return vt_error_set(VT_ENOMEM, "cannot start the device thread");
    }
    d->started = 1;
    *out = d;
    return 0;
}

void vt_device_free(vt_device *d)
{
    vt__cmd *c, *next;
    if (!d)
        return;
    if (d->started)
        pthread_join(d->thread, NULL);
    for (c = vt__take(d, 0); c; c = next) {
        next = c->next;
        vt__cmd_free(c);
    }
    vt_featcache_set_free(d->caches);
    for (int i = 0; i < d->nbases; i++)
        vt_base_free(d->bases[i].base);
    free(d->bases);
    free(d->claims);
    vt_sched_free(d->sched);
    vt_pool_free(d->pool);
    vt_loader_reap(d->be, 1); /* (loaders let go of with a read stuck) */
    vt_backend_free(d->be);
    uv_close((uv_handle_t *)&d->async, vt__free_after_close);
}

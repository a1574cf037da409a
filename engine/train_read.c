/* train_read.c - reading a job's data on a thread of its own (see
 * train_impl.h).
 *
 * Reading is the walk of the data folders and the probe of every image
 * header.  It takes time in proportion to the dataset (minutes for a large
 * tree on a network file system) and needs no device, so it runs on a
 * thread started for it while the device thread goes on with the other
 * jobs' steps; vt_trainer_step answers VT_TRAINER_WAITING until it ends.
 *
 * The reader works on a vt__reading of its own: copies of what it needs
 * from the job (folders, split, identity; it creates nothing, so no
 * umask), its results, and a mutex that orders it with the trainer.  The
 * trainer takes the results once `done` is set, and joins the thread.  A
 * trainer that lets go before then (the job cancelled, the daemon
 * stopping) does not wait for it: a read stuck in one call on a dead mount
 * would hold up every job.  It sets `stop` and
 * `orphaned` and detaches the thread, which ends as soon as it can (the scan
 * and the probe look at `stop` before each entry and each header), submits
 * nothing more to the pool, calls no hook, and frees the vt__reading
 * itself.  Hooks are called with the mutex held, so none runs once the
 * trainer has let go.  Messages for the job's log are left to the device
 * thread (vt_train__read_end), which also makes the checks that end in
 * warnings.
 *
 * After the data, the reader reads the weights files the preparation
 * needs: the init model and the checkpoint (vt__preread).  Their errors
 * are kept for the device thread to report where it uses them, so that a
 * job fails for the same reason, in the same order, as if it read them
 * itself.
 *
 * The probe runs on the decode pool, at most one chunk per pool thread at a
 * time, so that the decoding of other jobs' batches, queued behind, waits
 * for one chunk at most.  The reader calls the progress hook as it goes
 * (phase "preparing", step/steps: image headers read of all).
 */
#include "train_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/bg.h"
#include "../common/error.h"
#include "../common/utf8.h"
#include "safetensors.h"

#define VT__PROBE_CHUNK 256 /* image headers per pool task */
#define VT__SAY_BAD 5        /* unreadable images of a set named in the job's log */

/* The first unreadable images of a set (or of a chunk), with the probe's
 * reason: the message to name them with (it starts with the path), whole
 * (a path may be long), or NULL when it could not be kept (out of
 * memory).  Its own: vt__bad_named_free.  (Pointers, not arrays: there is
 * one in each vt__probe_task, one per VT__PROBE_CHUNK images of the set,
 * and images are rarely unreadable.) */
typedef struct {
    int n;
    int idx[VT__SAY_BAD];
    char *why[VT__SAY_BAD];
} vt__bad_named;

static void vt__bad_named_free(vt__bad_named *b)
{
    for (int k = 0; k < b->n; k++)
        free(b->why[k]);
    b->n = 0;
}

struct vt__reading {
    /* what the reader reads, copied from the job */
    char *train_dir, *val_dir;  /* val_dir NULL: none */
    double val_split;
    uint64_t seed;
    vt_creds creds;
    int as_owner;               /* creds is the job owner's (else the process's own) */
    vt_pool *pool;              /* touched only by vt__submit (the trainer's
                                   pool may be gone once it has let go) */
    int slots;                  /* its threads */
    int epochs;                 /* for progress reports */
    vt_trainer_hooks hooks;     /* progress and data_ready, called under mu */
    char *name;                 /* the job's, for vt_bg_test_hold */
    char *init;                 /* spec.init, or NULL */
    char *output;               /* spec.output: where a replaced init model waits */
    char *checkpoint;           /* env.checkpoint, or NULL */

    pthread_t thread;
    atomic_int stop;            /* set: end early (VT_ECANCELLED) */
    pthread_mutex_t mu;         /* guards done and orphaned; held around each
                                   hook call and each submit to the pool */
    pthread_cond_t cv;          /* broadcast when done is set */
    int done;                   /* the reader has ended: its results are final */
    int orphaned;               /* the trainer let go: the reader frees this */

    /* results, the reader's until done */
    int rc;                     /* 0 or the error, its message in msg */
    char msg[1024];
    vt_dataset *train, *val;    /* val NULL when there is no validation */
    uint8_t *bad_train, *bad_val;   /* (n) 1 = unreadable */
    int64_t *stat_train, *stat_val; /* (n, 2) file size and mtime (ns) */
    int links[2];               /* symbolic links skipped: training, validation folder */
    int others[2];              /* other files skipped (not images by name), likewise */
    char other[2][256];         /* the first of them */
    vt__bad_named named[2];     /* the first unreadable images: training, validation */
    vt__preread init_file, ckpt_file; /* read when the data was (else .read 0) */
};

static void vt__reading_free(vt__reading *r)
{
    free(r->train_dir);
    free(r->val_dir);
    free(r->name);
    free(r->init);
    free(r->output);
    free(r->checkpoint);
    vt_tensorset_free(r->init_file.set);
    vt_tensorset_free(r->ckpt_file.set);
    vt_dataset_free(r->train);
    vt_dataset_free(r->val);
    free(r->bad_train);
    free(r->bad_val);
    free(r->stat_train);
    free(r->stat_val);
    vt__bad_named_free(&r->named[0]);
    vt__bad_named_free(&r->named[1]);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

/* ---- the probe of image headers ---------------------------------------- */

typedef struct {
    const vt_dataset *ds;
    uint8_t *bad;
    int64_t *stat; /* (n, 2): size, mtime in ns */
    const vt_creds *creds;
    const atomic_int *stop;
    int begin, end;
    pthread_mutex_t *mu;
    pthread_cond_t *cv;
    int *pending;   /* chunks queued or running (mu) */
    int *done;      /* images of the chunks ended (mu) */
    int fatal;      /* a failure that is not the images' (VT_EBUSY, VT_EPERM), or 0 */
    char why[320];  /* its message (this thread's own would be lost) */
    vt__bad_named named; /* the chunk's first unreadable images */
} vt__probe_task;

/* Probes images [begin, end).  An image that cannot be read for the
 * process's want (no descriptor left) or because the owner's
 * identity could not be taken is not marked unreadable: the job would
 * leave out images that are fine.  That ends the chunk with pt->fatal. */
static void vt__probe(void *arg)
{
    vt__probe_task *pt = arg;
    char path[PATH_MAX];
    int entered = pt->creds ? vt_creds_enter(pt->creds) == 0 : 1, rc;
    if (!entered) {
        pt->fatal = VT_EPERM;
        snprintf(pt->why, sizeof pt->why, "%s", vt_error_msg());
    }
    for (int i = pt->begin; entered && i < pt->end && !atomic_load(pt->stop); i++) {
        vt_image_format fmt;
        struct stat st;
        int w, h;
        snprintf(path, sizeof path, "%s/%s", pt->ds->root, pt->ds->samples[i].path);
        if ((rc = vt_image_probe(AT_FDCWD, path, &fmt, &w, &h)) == VT_EBUSY) {
            pt->fatal = rc;
            snprintf(pt->why, sizeof pt->why, "%s", vt_error_msg());
            break;
        }
        pt->bad[i] = rc < 0;
        if (rc < 0 && pt->named.n < VT__SAY_BAD) {
            pt->named.idx[pt->named.n] = i;
            pt->named.why[pt->named.n++] = strdup(vt_error_msg()); /* (this thread's) */
        }
        if (!pt->bad[i] && fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            pt->stat[2 * i] = (int64_t)st.st_size;
            pt->stat[2 * i + 1] = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        }
    }
    if (pt->creds)
        vt_creds_leave();
    pthread_mutex_lock(pt->mu);
    --*pt->pending;
    *pt->done += pt->end - pt->begin;
    pthread_cond_signal(pt->cv);
    pthread_mutex_unlock(pt->mu);
}

/* The progress hook, unless the trainer has let go: `step` of `steps`
 * image headers read (epoch 0: a resumed job's epoch is not known before
 * preparation). */
static void vt__read_progress(vt__reading *r, int step, int steps)
{
    vt_progress p = {.epochs = r->epochs, .step = step, .steps = steps, .phase = "preparing"};
    pthread_mutex_lock(&r->mu);
    if (!r->orphaned && r->hooks.progress)
        r->hooks.progress(r->hooks.ud, &p);
    pthread_mutex_unlock(&r->mu);
}

/* Queues a probe chunk on the pool, unless the reading has been stopped
 * (then 1): once the trainer has let go, the pool may be gone. */
static int vt__submit(vt__reading *r, vt__probe_task *task)
{
    int rc = 1;
    pthread_mutex_lock(&r->mu);
    if (!atomic_load(&r->stop))
        rc = vt_pool_submit(r->pool, vt__probe, task);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* Reads every image header of ds on the pool, one chunk in flight per pool
 * thread; bad[i] = 1 where unreadable, stat[2i], stat[2i+1] = the file's
 * size and modification time; the first unreadable ones with their reason
 * in named.  Reports progress as headers base.. of total.  VT_ECANCELLED
 * once r->stop is set. */
static int vt__probe_all(vt__reading *r, const vt_dataset *ds, uint8_t *bad, int64_t *stat,
                         vt__bad_named *named, int base, int total)
{
    int slots = r->slots, chunks = (ds->n + VT__PROBE_CHUNK - 1) / VT__PROBE_CHUNK;
    int pending = 0, done = 0, rc = 0;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    vt__probe_task *tasks;

    if (ds->n == 0)
        return 0;
    if (!(tasks = calloc((size_t)chunks, sizeof *tasks)))
        return vt_error_set(VT_ENOMEM, "out of memory");
    pthread_mutex_lock(&mu);
    for (int c = 0; c < chunks; c++) {
        while (pending >= slots)
            pthread_cond_wait(&cv, &mu);
        int so_far = done;
        pthread_mutex_unlock(&mu);
        vt__read_progress(r, base + so_far, total);
        pthread_mutex_lock(&mu);
        tasks[c] = (vt__probe_task){.ds = ds, .bad = bad, .stat = stat,
                                    .creds = r->as_owner ? &r->creds : NULL,
                                    .stop = &r->stop, .begin = c * VT__PROBE_CHUNK,
                                    .end = (c + 1) * VT__PROBE_CHUNK < ds->n
                                               ? (c + 1) * VT__PROBE_CHUNK : ds->n,
                                    .mu = &mu, .cv = &cv, .pending = &pending, .done = &done};
        pending++;
        if ((rc = vt__submit(r, &tasks[c])) != 0) {
            pending--;
            rc = rc > 0 ? 0 : rc; /* (stopped: said below) */
            break;
        }
    }
    while (pending > 0)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    vt__read_progress(r, base + ds->n, total);
    for (int c = 0; rc == 0 && c < chunks; c++)
        if (tasks[c].fatal)
            rc = vt_error_set(tasks[c].fatal, "reading image headers: %s", tasks[c].why);
    for (int c = 0; c < chunks; c++) { /* (the chunks in the order of the images) */
        for (int k = 0; k < tasks[c].named.n && named->n < VT__SAY_BAD; k++) {
            named->idx[named->n] = tasks[c].named.idx[k];
            named->why[named->n++] = tasks[c].named.why[k];
            tasks[c].named.why[k] = NULL;
        }
        vt__bad_named_free(&tasks[c].named); /* (the rest) */
    }
    free(tasks);
    if (rc == 0 && atomic_load(&r->stop))
        rc = vt_error_set(VT_ECANCELLED, "reading image headers stopped");
    return rc;
}

/* ---- on the reading thread --------------------------------------------- */

static int vt__same_classes(const vt_dataset *a, const vt_dataset *b)
{
    if (a->nclasses != b->nclasses)
        return 0;
    for (int c = 0; c < a->nclasses; c++)
        if (strcmp(a->classes[c], b->classes[c]) != 0)
            return 0;
    return 1;
}

/* Refuses a class folder whose name is not UTF-8 before the job trains:
 * the model's metadata and classmap.json record the names, and take only
 * UTF-8, so the finished job could not save its model. */
static int vt__utf8_classes(const vt_dataset *ds)
{
    for (int c = 0; c < ds->nclasses; c++)
        if (!vt_utf8_valid((const uint8_t *)ds->classes[c], strlen(ds->classes[c])))
            return vt_error_set(VT_EINVAL, "class folder '%s' in %s is not valid UTF-8: the "
                                "model records the class names, and takes only UTF-8; "
                                "rename it", ds->classes[c], ds->root);
    return 0;
}

/* Scans the folders, splits off validation, probes the headers: the
 * reader's whole work, with no message for the job's log. */
static int vt__read_data(vt__reading *r)
{
    vt_dataset *all = NULL;
    int rc;

    vt_bg_test_hold(r->name);
    /* Listed as the job's owner: the class and file names of a folder the
     * user cannot read must not come back in warnings. */
    if (r->as_owner && (rc = vt_creds_enter(&r->creds)) < 0)
        return rc;
    rc = vt_dataset_scan_until(&all, AT_FDCWD, r->train_dir, &r->stop);
    if (rc == 0 && r->val_dir &&
        (rc = vt_dataset_scan_until(&r->val, AT_FDCWD, r->val_dir, &r->stop)) < 0)
        rc = vt_error_wrap(rc, "validation data");
    if (r->as_owner)
        vt_creds_leave();
    if (rc == 0 && all->nclasses < 2)
        rc = vt_error_set(VT_EINVAL, "%s has only 1 class (%s); training needs at least 2",
                          r->train_dir, all->classes[0]);
    if (rc == 0)
        rc = vt__utf8_classes(all);
    if (rc < 0) {
        vt_dataset_free(all);
        return rc;
    }
    r->links[0] = all->links;
    r->links[1] = r->val ? r->val->links : 0;
    for (int k = 0; k < 2; k++) {
        const vt_dataset *ds = k ? r->val : all;
        r->others[k] = ds ? ds->others : 0;
        snprintf(r->other[k], sizeof r->other[k], "%s", ds ? ds->other : "");
    }
    if (r->val_dir) {
        r->train = all;
        if (!vt__same_classes(r->train, r->val))
            return vt_error_set(VT_EINVAL, "the validation classes in %s differ from the "
                                "training classes in %s (they must be the same folders)",
                                r->val_dir, r->train_dir);
    } else if (r->val_split > 0) {
        rc = vt_dataset_split(all, r->val_split, r->seed, &r->train, &r->val);
        vt_dataset_free(all);
        if (rc < 0)
            return rc;
        if (r->val->n == 0)
            return vt_error_set(VT_EINVAL, "val_split %g leaves no validation images: a class "
                                "gives one to validation only when it has at least 2 images; "
                                "give more images, a validation folder (data.val), or "
                                "val_split 0", r->val_split);
    } else {
        r->train = all;
    }
    r->bad_train = calloc((size_t)r->train->n + 1, 1);
    r->bad_val = calloc(r->val ? (size_t)r->val->n + 1 : 1, 1);
    r->stat_train = calloc(2 * ((size_t)r->train->n + 1), sizeof *r->stat_train);
    r->stat_val = calloc(2 * (r->val ? (size_t)r->val->n + 1 : 1), sizeof *r->stat_val);
    if (!r->bad_train || !r->bad_val || !r->stat_train || !r->stat_val)
        return vt_error_set(VT_ENOMEM, "out of memory");
    int total = r->train->n + (r->val ? r->val->n : 0);
    if ((rc = vt__probe_all(r, r->train, r->bad_train, r->stat_train, &r->named[0], 0,
                            total)) < 0)
        return rc;
    if (r->val && (rc = vt__probe_all(r, r->val, r->bad_val, r->stat_val, &r->named[1],
                                      r->train->n, total)) < 0)
        return rc;
    return 0;
}

/* Reads the safetensors file at path into f (its error wrapped in what),
 * as the job's owner when as_owner. */
static void vt__preread_file(vt__reading *r, vt__preread *f, const char *path, int as_owner,
                             const char *what)
{
    const char *slash = strrchr(path, '/');
    char copy[PATH_MAX];
    vt_bg_test_hold(slash ? slash + 1 : path);
    if (as_owner && (f->rc = vt_creds_enter(&r->creds)) < 0)
        goto done;
    f->rc = vt_safetensors_read(&f->set, path);
    /* A job started from the model it replaces, restarted (resuming or
     * afresh), finds it where it waits for the job's end. */
    if (f->rc == VT_ENOTFOUND && path == r->init &&
        vt_train__replaced_copy(r->output, path, copy, sizeof copy) == 1)
        f->rc = vt_safetensors_read(&f->set, copy);
    if (as_owner)
        vt_creds_leave();
done:
    if (f->rc < 0) {
        f->rc = vt_error_wrap(f->rc, "%s", what);
        snprintf(f->msg, sizeof f->msg, "%s", vt_error_msg());
    }
    f->read = 1;
}

/* The reader's whole work: the data, then the weights files. */
static int vt__read_all(vt__reading *r)
{
    int rc = vt__read_data(r);
    if (rc == 0 && r->init && !atomic_load(&r->stop))
        vt__preread_file(r, &r->init_file, r->init, r->as_owner, "init");
    /* (the checkpoint is the daemon's, in its state folder) */
    if (rc == 0 && r->checkpoint && r->init_file.rc == 0 && !atomic_load(&r->stop) &&
        access(r->checkpoint, F_OK) == 0)
        vt__preread_file(r, &r->ckpt_file, r->checkpoint, 0, "reading checkpoint");
    return rc;
}

static void *vt__reader(void *arg)
{
    vt__reading *r = arg;
    int rc = vt__read_all(r), orphaned;
    pthread_mutex_lock(&r->mu);
    r->rc = rc;
    if (rc < 0)
        snprintf(r->msg, sizeof r->msg, "%s", vt_error_msg());
    r->done = 1;
    orphaned = r->orphaned;
    if (!orphaned) {
        pthread_cond_broadcast(&r->cv);
        if (r->hooks.data_ready)
            r->hooks.data_ready(r->hooks.ud);
    }
    pthread_mutex_unlock(&r->mu);
    if (orphaned)
        vt__reading_free(r);
    return NULL;
}

/* ---- on the thread that steps the trainer ------------------------------ */

int vt_train__read_start(vt_trainer *t)
{
    vt__reading *r = calloc(1, sizeof *r);
    int err;
    if (!r || !(r->train_dir = strdup(t->spec.train_dir)) ||
        (t->spec.val_dir && !(r->val_dir = strdup(t->spec.val_dir))) ||
        !(r->name = strdup(t->spec.name)) ||
        (t->spec.init && !(r->init = strdup(t->spec.init))) ||
        !(r->output = strdup(t->spec.output)) ||
        (t->env.checkpoint && !(r->checkpoint = strdup(t->env.checkpoint)))) {
        if (r) {
            free(r->train_dir);
            free(r->val_dir);
            free(r->name);
            free(r->init);
            free(r->output);
            free(r);
        }
        return vt_error_set(VT_ENOMEM, "out of memory");
    }
    r->val_split = t->spec.val_split;
    r->seed = t->spec.seed;
    if ((r->as_owner = t->env.creds != NULL))
        r->creds = *t->env.creds;
    r->pool = t->env.pool;
    r->slots = vt_pool_threads(t->env.pool);
    r->epochs = t->spec.epochs;
    r->hooks = t->hooks;
    pthread_mutex_init(&r->mu, NULL);
    vt_clock_cond_init(&r->cv);
    if ((err = pthread_create(&r->thread, NULL, vt__reader, r)) != 0) {
        vt__reading_free(r);
        return vt_error_set(VT_ENOMEM, "cannot start a thread to read the data: %s",
                            strerror(err));
    }
    t->reading = r;
    return 0;
}

int vt_train__read_done(vt_trainer *t)
{
    int done;
    pthread_mutex_lock(&t->reading->mu);
    done = t->reading->done;
    pthread_mutex_unlock(&t->reading->mu);
    return done;
}

void vt_train__read_wait(vt_trainer *t, double seconds)
{
    vt__reading *r = t->reading;
    struct timespec until = vt_clock_deadline(seconds);
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    while (!r->done && pthread_cond_timedwait(&r->cv, &r->mu, &until) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&r->mu);
}

void vt_train__read_stop(vt_trainer *t)
{
    vt__reading *r = t->reading;
    int done;
    if (!r)
        return;
    t->reading = NULL;
    pthread_mutex_lock(&r->mu);
    atomic_store(&r->stop, 1);
    done = r->done;
    if (!done) {
        /* Under the mutex: once it is released the reader may free r, and
         * r->thread with it. */
        r->orphaned = 1;
        pthread_detach(r->thread);
    }
    pthread_mutex_unlock(&r->mu);
    if (done) {
        pthread_join(r->thread, NULL);
        vt__reading_free(r);
    }
}

/* Says that sample i of ds is skipped and why: the probe's reason, kept
 * in named (not read again here: the device thread reads no user file). */
static void vt__say_unreadable(vt_trainer *t, const vt_dataset *ds, int i,
                               const vt__bad_named *named, const char *what)
{
    for (int k = 0; k < named->n; k++)
        if (named->idx[k] == i && named->why[k]) { /* (its message starts with the path) */
            vt_train__say(t, VT_LOG_WARN, "skipping unreadable %s image %s", what,
                          named->why[k]);
            return;
        }
    vt_train__say(t, VT_LOG_WARN, "skipping unreadable %s image %s/%s: cannot be read", what,
                  ds->root, ds->samples[i].path);
}

/* Reports unreadable samples and refuses a dataset with nothing to learn. */
static int vt__check_readable(vt_trainer *t, const vt_dataset *ds, const uint8_t *bad,
                              const vt__bad_named *named, const char *what)
{
    int *good = calloc(2 * (size_t)ds->nclasses, sizeof *good), *any = good + ds->nclasses;
    int nbad = 0, classes = 0, ngood = 0;
    if (!good)
        return vt_error_set(VT_ENOMEM, "out of memory");
    for (int i = 0; i < ds->n; i++) {
        any[ds->samples[i].label]++;
        if (bad[i]) {
            if (nbad < VT__SAY_BAD) /* the first few with the reason */
                vt__say_unreadable(t, ds, i, named, what);
            nbad++;
        } else {
            good[ds->samples[i].label]++;
            ngood++;
        }
    }
    for (int c = 0; c < ds->nclasses; c++) {
        classes += good[c] > 0;
        if (good[c] == 0 && any[c] > 0)
            vt_train__say(t, VT_LOG_WARN, "%s class '%s' has no readable image", what,
                    ds->classes[c]);
        else if (good[c] == 0 && ds == t->val && !t->spec.val_dir) /* (val_split) */
            vt_train__say(t, VT_LOG_WARN, "validation class '%s' has no image: val_split "
                          "gives validation none of a class of fewer than two",
                          ds->classes[c]);
        else if (good[c] == 0)
            vt_train__say(t, VT_LOG_WARN, "%s class '%s' has no image (JPEG or PNG)", what,
                          ds->classes[c]);
    }
    free(good);
    if (nbad)
        vt_train__say(t, VT_LOG_WARN, "%d unreadable %s image%s skipped", nbad, what,
                nbad == 1 ? "" : "s");
    if (ngood == 0)
        return vt_error_set(VT_EINVAL, "%s data %s has no readable image (JPEG or PNG)",
                            what, ds->root);
    if (classes < 2 && strcmp(what, "training") == 0)
        return vt_error_set(VT_EINVAL,
                            "training data %s has readable images in only %d class; at "
                            "least 2 classes are needed", ds->root, classes);
    return 0;
}

int vt_train__read_end(vt_trainer *t)
{
    vt__reading *r = t->reading;
    int rc, links[2] = {r->links[0], r->links[1]}, others[2] = {r->others[0], r->others[1]};
    char other[2][256];
    vt__bad_named named[2] = {r->named[0], r->named[1]}; /* (taken over) */
    char msg[sizeof r->msg];
    pthread_join(r->thread, NULL);
    r->named[0].n = r->named[1].n = 0;
    t->reading = NULL;
    rc = r->rc;
    snprintf(msg, sizeof msg, "%s", r->msg);
    memcpy(other, r->other, sizeof other);
    t->train = r->train;
    t->val = r->val;
    t->bad_train = r->bad_train;
    t->bad_val = r->bad_val;
    t->stat_train = r->stat_train;
    t->stat_val = r->stat_val;
    r->train = r->val = NULL;
    r->bad_train = r->bad_val = NULL;
    r->stat_train = r->stat_val = NULL;
    t->init_file = r->init_file;
    t->ckpt_file = r->ckpt_file;
    r->init_file.set = r->ckpt_file.set = NULL;
    vt__reading_free(r);
    /* Before the reader's error: a link skipped is often its cause (a
     * class folder that is a link makes the validation classes differ). */
    for (int k = 0; k < 2; k++) {
        const char *root = k ? t->spec.val_dir : t->spec.train_dir;
        if (links[k] > 0)
            vt_train__say(t, VT_LOG_WARN, "%s: %d symbolic link%s skipped (vggtune does not "
                          "follow links; copy or bind-mount the files instead)", root,
                          links[k], links[k] == 1 ? "" : "s");
        if (others[k] > 0)
            vt_train__say(t, VT_LOG_WARN, "%s: %d file%s skipped, not JPEG or PNG by %s name "
                          "(.jpg, .jpeg or .png; the first: %s)", root, others[k],
                          others[k] == 1 ? "" : "s", others[k] == 1 ? "its" : "their",
                          other[k]);
    }
    if (rc < 0) {
        rc = vt_error_set(rc, "%s", msg);
        goto out;
    }
    if (!t->spec.val_dir && t->spec.val_split > 0) {
        int total = t->train->n + t->val->n;
        if (t->val->n != (int)lround(t->spec.val_split * total))
            vt_train__say(t, VT_LOG_WARN, "val_split %g: %d of %d images go to validation "
                          "(%.0f%%): each class gives at least one image to validation and "
                          "keeps at least one for training", t->spec.val_split, t->val->n,
                          total, 100.0 * t->val->n / total);
    }
    if ((rc = vt__check_readable(t, t->train, t->bad_train, &named[0], "training")) == 0 &&
        t->val)
        rc = vt__check_readable(t, t->val, t->bad_val, &named[1], "validation");
out:
    vt__bad_named_free(&named[0]);
    vt__bad_named_free(&named[1]);
    return rc;
}

int vt_train__preread_take(vt__preread *f, vt_tensorset **set)
{
    *set = f->set;
    f->set = NULL;
    if (f->rc < 0)
        return vt_error_set(f->rc, "%s", f->msg);
    return 0;
}

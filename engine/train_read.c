/* train_read.c - reading a job's data on a thread of its own (see
 * train_impl.h).
 *
 * Reading is the walk of the data folders and the probe of every image
 * header.  It takes time in proportion to the dataset (minutes for a large
 * tree on a network file system) and needs no device, so it runs on a
 * thread started for it while the device thread goes on with the other
 * jobs' steps; vt_trainer_step answers VT_TRAINER_WAITING until it ends.
 * The reader writes only the fields it owns (train, val, bad_*, stat_*,
 * read_links, read_rc, read_msg) and the device thread reads them only
 * once read_done is set under read_mu, so the two never share a field at
 * the same time.  Messages for the job's log are left to the device thread
 * (vt_train__read_end), which also makes the checks that end in warnings.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/error.h"

#define VT__PROBE_CHUNK 256 /* image headers per pool task */

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

/* The progress hook, on the reader thread: `step` of `steps` image headers
 * read (epoch 0: a resumed job's epoch is not known before preparation). */
static void vt__read_progress(vt_trainer *t, int step, int steps)
{
    vt_progress p = {.epochs = t->spec.epochs, .step = step, .steps = steps,
                     .phase = "preparing"};
    if (t->hooks.progress)
        t->hooks.progress(t->hooks.ud, &p);
}

/* Reads every image header of ds on the pool, one chunk in flight per pool
 * thread; bad[i] = 1 where unreadable, stat[2i], stat[2i+1] = the file's
 * size and modification time.  Reports progress as headers base.. of
 * total.  VT_ECANCELLED once t->read_stop is set. */
static int vt__probe_all(vt_trainer *t, const vt_dataset *ds, uint8_t *bad, int64_t *stat,
                         int base, int total)
{
    int slots = vt_pool_threads(t->env.pool), chunks = (ds->n + VT__PROBE_CHUNK - 1) / VT__PROBE_CHUNK;
    int pending = 0, done = 0, rc = 0;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    vt__probe_task *tasks;

    if (ds->n == 0)
        return 0;
    if (!(tasks = calloc((size_t)chunks, sizeof *tasks)))
        return vt_error_set(VT_ENOMEM, "out of memory");
    pthread_mutex_lock(&mu);
    for (int c = 0; c < chunks && !atomic_load(&t->read_stop); c++) {
        while (pending >= slots)
            pthread_cond_wait(&cv, &mu);
        int so_far = done;
        pthread_mutex_unlock(&mu);
        vt__read_progress(t, base + so_far, total);
        pthread_mutex_lock(&mu);
        tasks[c] = (vt__probe_task){.ds = ds, .bad = bad, .stat = stat, .creds = t->env.creds,
                                    .stop = &t->read_stop, .begin = c * VT__PROBE_CHUNK,
                                    .end = (c + 1) * VT__PROBE_CHUNK < ds->n
                                               ? (c + 1) * VT__PROBE_CHUNK : ds->n,
                                    .mu = &mu, .cv = &cv, .pending = &pending, .done = &done};
        pending++;
        if ((rc = vt_pool_submit(t->env.pool, vt__probe, &tasks[c])) < 0) {
            pending--;
            break;
        }
    }
    while (pending > 0)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    vt__read_progress(t, base + ds->n, total);
    for (int c = 0; rc == 0 && c < chunks; c++)
        if (tasks[c].fatal)
            rc = vt_error_set(tasks[c].fatal, "reading image headers: %s", tasks[c].why);
    free(tasks);
    if (rc == 0 && atomic_load(&t->read_stop))
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

/* VT_TEST_READ_HOLD=DIR (tests): the reader of a job named N starts only
 * once DIR/N is gone (or the reading is stopped), so that a test can hold
 * a job in its reading for as long as it needs; it creates DIR/N.held as
 * it begins to wait, for the test to know. */
static void vt__test_hold(vt_trainer *t)
{
    char held[PATH_MAX + 8];
    int fd;
    if (!t->read_hold[0] || access(t->read_hold, F_OK) < 0)
        return;
    snprintf(held, sizeof held, "%s.held", t->read_hold);
    if ((fd = open(held, O_WRONLY | O_CREAT | O_CLOEXEC, 0644)) >= 0)
        close(fd);
    while (access(t->read_hold, F_OK) == 0 && !atomic_load(&t->read_stop))
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
}

/* Scans the folders, splits off validation, probes the headers: the
 * reader's whole work, with no message for the job's log. */
static int vt__read_data(vt_trainer *t)
{
    vt_dataset *all = NULL;
    int rc;

    vt__test_hold(t);
    /* Listed as the job's owner: the class and file names of a folder the
     * user cannot read must not come back in warnings. */
    if ((rc = vt_train__enter(t)) < 0)
        return rc;
    rc = vt_dataset_scan_until(&all, AT_FDCWD, t->spec.train_dir, &t->read_stop);
    if (rc == 0 && t->spec.val_dir &&
        (rc = vt_dataset_scan_until(&t->val, AT_FDCWD, t->spec.val_dir, &t->read_stop)) < 0)
        rc = vt_error_wrap(rc, "validation data");
    vt_train__leave(t);
    if (rc == 0 && all->nclasses < 2)
        rc = vt_error_set(VT_EINVAL, "%s has only 1 class (%s); training needs at least 2",
                          t->spec.train_dir, all->classes[0]);
    if (rc < 0) {
        vt_dataset_free(all);
        return rc;
    }
    t->read_links[0] = all->links;
    t->read_links[1] = t->val ? t->val->links : 0;
    if (t->spec.val_dir) {
        t->train = all;
        if (!vt__same_classes(t->train, t->val))
            return vt_error_set(VT_EINVAL, "the validation classes in %s differ from the "
                                "training classes in %s (they must be the same folders)",
                                t->spec.val_dir, t->spec.train_dir);
    } else if (t->spec.val_split > 0) {
        rc = vt_dataset_split(all, t->spec.val_split, t->spec.seed, &t->train, &t->val);
        vt_dataset_free(all);
        if (rc < 0)
            return rc;
        if (t->val->n == 0)
            return vt_error_set(VT_EINVAL, "val_split %g leaves no validation images: a class "
                                "gives one to validation only when it has at least 2 images; "
                                "give more images, a validation folder (data.val), or "
                                "val_split 0", t->spec.val_split);
    } else {
        t->train = all;
    }
    t->bad_train = calloc((size_t)t->train->n + 1, 1);
    t->bad_val = calloc(t->val ? (size_t)t->val->n + 1 : 1, 1);
    t->stat_train = calloc(2 * ((size_t)t->train->n + 1), sizeof *t->stat_train);
    t->stat_val = calloc(2 * (t->val ? (size_t)t->val->n + 1 : 1), sizeof *t->stat_val);
    if (!t->bad_train || !t->bad_val || !t->stat_train || !t->stat_val)
        return vt_error_set(VT_ENOMEM, "out of memory");
    int total = t->train->n + (t->val ? t->val->n : 0);
    if ((rc = vt__probe_all(t, t->train, t->bad_train, t->stat_train, 0, total)) < 0)
        return rc;
    if (t->val && (rc = vt__probe_all(t, t->val, t->bad_val, t->stat_val, t->train->n, total)) < 0)
        return rc;
    return 0;
}

static void *vt__reader(void *arg)
{
    vt_trainer *t = arg;
    int rc = vt__read_data(t);
    pthread_mutex_lock(&t->read_mu);
    t->read_rc = rc;
    if (rc < 0)
        snprintf(t->read_msg, sizeof t->read_msg, "%s", vt_error_msg());
    t->read_done = 1;
    pthread_cond_broadcast(&t->read_cv);
    pthread_mutex_unlock(&t->read_mu);
    if (t->hooks.data_read)
        t->hooks.data_read(t->hooks.ud);
    return NULL;
}

/* ---- on the device thread ---------------------------------------------- */

int vt_train__read_start(vt_trainer *t)
{
    const char *hold = getenv("VT_TEST_READ_HOLD");
    int err;
    if (hold && *hold)
        snprintf(t->read_hold, sizeof t->read_hold, "%s/%s", hold, t->spec.name);
    if ((err = pthread_create(&t->reader, NULL, vt__reader, t)) != 0)
        return vt_error_set(VT_ENOMEM, "cannot start a thread to read the data: %s",
                            strerror(err));
    t->reading = 1;
    return 0;
}

int vt_train__read_done(vt_trainer *t)
{
    int done;
    pthread_mutex_lock(&t->read_mu);
    done = t->read_done;
    pthread_mutex_unlock(&t->read_mu);
    return done;
}

void vt_train__read_wait(vt_trainer *t, double seconds)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)seconds;
    until.tv_nsec += (long)((seconds - floor(seconds)) * 1e9);
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&t->read_mu);
    while (t->reading && !t->read_done &&
           pthread_cond_timedwait(&t->read_cv, &t->read_mu, &until) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&t->read_mu);
}

void vt_train__read_stop(vt_trainer *t)
{
    if (!t->reading)
        return;
    atomic_store(&t->read_stop, 1);
    pthread_join(t->reader, NULL);
    t->reading = 0;
}

/* Says that sample i of ds is skipped and why (its header read again, as
 * the job's owner: the probe's message stayed on a pool thread). */
static void vt__say_unreadable(vt_trainer *t, const vt_dataset *ds, int i, const char *what)
{
    char path[PATH_MAX];
    vt_image_format fmt;
    int w, h;
    snprintf(path, sizeof path, "%s/%s", ds->root, ds->samples[i].path);
    if (vt_train__enter(t) == 0) {
        int rc = vt_image_probe(AT_FDCWD, path, &fmt, &w, &h);
        vt_train__leave(t);
        if (rc < 0) { /* (its message starts with the path) */
            vt_train__say(t, VT_LOG_WARN, "skipping unreadable %s image %s", what,
                          vt_error_msg());
            return;
        }
    }
    vt_train__say(t, VT_LOG_WARN, "skipping unreadable %s image %s: cannot be read", what, path);
}

/* Reports unreadable samples and refuses a dataset with nothing to learn. */
static int vt__check_readable(vt_trainer *t, const vt_dataset *ds, const uint8_t *bad,
                              const char *what)
{
    int *good = calloc((size_t)ds->nclasses, sizeof *good), nbad = 0, classes = 0, ngood = 0;
    if (!good)
        return vt_error_set(VT_ENOMEM, "out of memory");
    for (int i = 0; i < ds->n; i++) {
        if (bad[i]) {
            if (nbad < 5) /* the first few with the reason: their headers read again */
                vt__say_unreadable(t, ds, i, what);
            nbad++;
        } else {
            good[ds->samples[i].label]++;
            ngood++;
        }
    }
    for (int c = 0; c < ds->nclasses; c++) {
        classes += good[c] > 0;
        if (good[c] == 0)
            vt_train__say(t, VT_LOG_WARN, "%s class '%s' has no readable image", what,
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
    int rc;
    vt_train__read_stop(t); /* (it has ended: this joins it) */
    /* Before the reader's error: a link skipped is often its cause (a
     * class folder that is a link makes the validation classes differ). */
    for (int k = 0; k < 2; k++) {
        const char *root = k ? t->spec.val_dir : t->spec.train_dir;
        if (t->read_links[k] > 0)
            vt_train__say(t, VT_LOG_WARN, "%s: %d symbolic link%s skipped (vggtune does not "
                          "follow links; copy or bind-mount the files instead)", root,
                          t->read_links[k], t->read_links[k] == 1 ? "" : "s");
    }
    if (t->read_rc < 0)
        return vt_error_set(t->read_rc, "%s", t->read_msg);
    if (!t->spec.val_dir && t->spec.val_split > 0) {
        int total = t->train->n + t->val->n;
        if (t->val->n != (int)lround(t->spec.val_split * total))
            vt_train__say(t, VT_LOG_WARN, "val_split %g: %d of %d images go to validation "
                          "(%.0f%%): each class gives at least one image to validation and "
                          "keeps at least one for training", t->spec.val_split, t->val->n,
                          total, 100.0 * t->val->n / total);
    }
    if ((rc = vt__check_readable(t, t->train, t->bad_train, "training")) < 0)
        return rc;
    if (t->val && (rc = vt__check_readable(t, t->val, t->bad_val, "validation")) < 0)
        return rc;
    return 0;
}

/* train_write.c - writing an epoch end's files on a thread of its own (see
 * train_impl.h).
 *
 * At the end of an epoch a job writes its metrics files, maybe its model
 * (keep_best), its bottleneck features and a checkpoint: up to a GB, each
 * file synced to disk, on a network file system maybe.  The device thread
 * only gathers what is to be written (downloads from the device, file
 * contents) into a batch of writes; a thread started for the batch
 * (vt_bg) writes them in order while the device thread steps the other jobs, and
 * vt_trainer_step answers VT_TRAINER_WAITING until it ends.  The batch's
 * thread touches nothing of the trainer: it owns the batch, and the
 * trainer joins it (vt_train__write_end) before it goes on.  The one
 * exception is a call (vt_train__write_call): the preparation of the
 * output folder and of the parameters as a job starts, which works on the
 * trainer itself while the trainer waits for it (VT_TRAINER_WAITING
 * touches nothing else).
 *
 * The job's outputs are written as its owner, with its umask; the
 * checkpoint as the daemon, in its state folder.  The first output that
 * cannot be written ends the batch (the job fails, as it would have had it
 * written the file itself); a checkpoint that cannot be written is a
 * safety net lost, reported apart (vt__checkpoint_failed).
 */
#include "train_impl.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/bg.h"
#include "../common/error.h"
#include "../common/fileio.h"
#include "safetensors.h"

typedef enum { VT__W_BYTES, VT__W_SET, VT__W_EVENTS, VT__W_CALL } vt__wkind;

typedef struct vt__witem {
    vt__wkind kind;
    char path[PATH_MAX];
    int checkpoint;             /* the checkpoint (as the daemon); else an output */
    char *bytes;                /* BYTES: len of them */
    size_t len;
    vt_tensorset *set;          /* SET */
    vt_scalar *scalars;         /* EVENTS: len of them */
    double start_wall;
    int (*call)(vt_trainer *);  /* CALL: call(trainer) */
    vt_trainer *trainer;
    struct vt__witem *next;
} vt__witem;

struct vt__writes {
    vt__witem *head, *tail;     /* in the order they are written */
    vt_creds creds;             /* the job owner's, when as_owner */
    int as_owner;
    int umask;                  /* the outputs' (spec.umask) */
    vt_bg *bg;                  /* the thread writing it (calls data_ready as it ends) */
    vt__wresult res;            /* results, the thread's until it has ended */
};

static void vt__witem_free(vt__witem *w)
{
    free(w->bytes);
    vt_tensorset_free(w->set);
    free(w->scalars);
    free(w);
}

static void vt__writes_free(vt__writes *b)
{
    for (vt__witem *w = b->head, *next; w; w = next) {
        next = w->next;
        vt__witem_free(w);
    }
    free(b);
}

/* The batch being gathered (made on first use); NULL when out of memory. */
static vt__writes *vt__batch(vt_trainer *t)
{
    vt__writes *b = t->wbatch;
    if (b)
        return b;
    if (!(b = calloc(1, sizeof *b)))
        return NULL;
    if ((b->as_owner = t->env.creds != NULL))
        b->creds = *t->env.creds;
    b->umask = t->spec.umask;
    return t->wbatch = b;
}

/* Appends w to the batch, or frees it and says why not. */
static int vt__add(vt_trainer *t, vt__witem *w)
{
    vt__writes *b = vt__batch(t);
    if (!b) {
        vt__witem_free(w);
        return vt_error_set(VT_ENOMEM, "out of memory");
    }
    if (b->tail)
        b->tail->next = w;
    else
        b->head = w;
    b->tail = w;
    return 0;
}

/* A new item for OUT/name (or for path itself when checkpoint). */
static int vt__item(vt_trainer *t, vt__wkind kind, const char *name, int checkpoint,
                    vt__witem **out)
{
    vt__witem *w = calloc(1, sizeof *w);
    int rc;
    *out = NULL;
    if (!w)
        return vt_error_set(VT_ENOMEM, "out of memory");
    w->kind = kind;
    w->checkpoint = checkpoint;
    rc = checkpoint ? vt_path(w->path, sizeof w->path, "%s", name)
                    : vt_path(w->path, sizeof w->path, "%s/%s", t->spec.output, name);
    if (rc < 0) {
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

int vt_train__write_bytes(vt_trainer *t, const char *name, char *bytes, size_t len)
{
    vt__witem *w;
    int rc = vt__item(t, VT__W_BYTES, name, 0, &w);
    if (rc < 0) {
        free(bytes);
        return rc;
    }
    w->bytes = bytes;
    w->len = len;
    return vt__add(t, w);
}

int vt_train__write_set(vt_trainer *t, const char *name, vt_tensorset *set, int checkpoint)
{
    vt__witem *w;
    int rc = vt__item(t, VT__W_SET, name, checkpoint, &w);
    if (rc < 0) {
        vt_tensorset_free(set);
        return rc;
    }
    w->set = set;
    return vt__add(t, w);
}

int vt_train__write_events(vt_trainer *t, const char *name, vt_scalar *scalars, size_t n,
                           double start_wall)
{
    vt__witem *w;
    int rc = vt__item(t, VT__W_EVENTS, name, 0, &w);
    if (rc < 0) {
        free(scalars);
        return rc;
    }
    w->scalars = scalars;
    w->len = n;
    w->start_wall = start_wall;
    return vt__add(t, w);
}

int vt_train__write_call(vt_trainer *t, int (*call)(vt_trainer *))
{
    vt__witem *w = calloc(1, sizeof *w);
    if (!w)
        return vt_error_set(VT_ENOMEM, "out of memory");
    w->kind = VT__W_CALL;
    w->call = call;
    w->trainer = t;
    return vt__add(t, w);
}

/* ---- on the batch's thread --------------------------------------------- */

/* Writes one item; 0 or the error, with its message. */
static int vt__write_item(vt__writes *b, const vt__witem *w)
{
    int owner = b->as_owner && !w->checkpoint, rc;
    if (w->kind == VT__W_CALL) /* (it takes the identity itself) */
        return w->call(w->trainer);
    if (owner && (rc = vt_creds_enter(&b->creds)) < 0)
        return rc;
    vt_bg_test_hold(strrchr(w->path, '/') ? strrchr(w->path, '/') + 1 : w->path);
    if (!w->checkpoint)
        vt_fileio_set_mask(b->umask);
    switch (w->kind) {
    case VT__W_BYTES:
        rc = vt_write_file_atomic(AT_FDCWD, w->path, w->bytes, w->len);
        break;
    case VT__W_SET:
        rc = vt_safetensors_write(AT_FDCWD, w->path, w->set);
        break;
    default:
        rc = vt_tb_write(w->path, w->scalars, w->len, w->start_wall);
        break;
    }
    vt_fileio_set_mask(-1);
    if (owner)
        vt_creds_leave();
    return rc;
}

/* Writes the batch in order: an output that fails ends it.  (Never let
 * go of: no stop to look at.) */
static void vt__writer(void *arg, const atomic_int *stop)
{
    vt__writes *b = arg;
    (void)stop;
    vt__wresult *res = &b->res;
    for (const vt__witem *w = b->head; w; w = w->next) {
        double t0 = vt_clock_mono();
        int rc = vt__write_item(b, w);
        if (w->checkpoint) {
            res->ckpt_written = 1;
            res->ckpt_rc = rc < 0 ? vt_error_wrap(rc, "checkpoint") : 0;
            res->ckpt_s = vt_clock_mono() - t0;
            if (rc < 0)
                snprintf(res->ckpt_msg, sizeof res->ckpt_msg, "%s", vt_error_msg());
        } else if (rc < 0) {
            res->rc = rc;
            snprintf(res->msg, sizeof res->msg, "%s", vt_error_msg());
            break;
        }
    }
}

/* ---- on the thread that steps the trainer ------------------------------ */

int vt_train__write_start(vt_trainer *t)
{
    vt__writes *b = vt__batch(t);
    vt_bg_calls calls = {.run = vt__writer, .done = t->hooks.data_ready, .ud = t->hooks.ud};
    int rc;
    if (!b)
        return vt_error_set(VT_ENOMEM, "out of memory");
    t->wbatch = NULL;
    if ((rc = vt_bg_start(&b->bg, &calls, b)) < 0) {
        vt__writes_free(b);
        return vt_error_wrap(rc, "writing the job's files");
    }
    t->writing = b;
    return 0;
}

int vt_train__write_done(vt_trainer *t) { return vt_bg_finished(t->writing->bg); }

void vt_train__write_wait(vt_trainer *t, double seconds)
{
    if (t->writing)
        vt_bg_wait(t->writing->bg, seconds);
}

int vt_train__write_end(vt_trainer *t, vt__wresult *res)
{
    vt__writes *b = t->writing;
    vt_bg_join(b->bg);
    t->writing = NULL;
    *res = b->res;
    vt__writes_free(b);
    if (res->rc < 0)
        return vt_error_set(res->rc, "%s", res->msg);
    return 0;
}

void vt_train__write_drop(vt_trainer *t)
{
    vt__wresult res;
    if (t->wbatch) {
        vt__writes_free(t->wbatch);
        t->wbatch = NULL;
    }
    if (t->writing)
        vt_train__write_end(t, &res);
}

/* loader.c - batches decoded ahead on the pool (see loader.h).
 *
 * Threads: the caller (the device thread, or the foreground runner) owns the
 * pass state; decode tasks on the pool write only into their own slot
 * position and report under the mutex.  A slot handed out by next() belongs
 * to the caller until the following next(), ready() or begin().
 */
#include "loader.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>

#include "../common/bg.h"
#include "../common/error.h"
#include "../common/rng.h"
#include "image.h"

typedef struct {
    uint8_t *pixels;  /* (max_batch, S, S, 3), or (max_batch, cell) bytes */
    int pinned;       /* pixels came from vt_backend_host_alloc */
    vt_image_box *boxes; /* (max_batch), device_resize only */
    int32_t *labels;  /* (max_batch) */
    int *sample;      /* (max_batch) */
    uint8_t *ok;      /* (max_batch) decode succeeded */
    int n;            /* images submitted */
    int pending;      /* decodes not finished (under mu) */
    vt_batch batch;
} vt__slot;

typedef struct {
    vt_loader *l;
    vt__slot *slot;
    int pos, sample;
    vt_augment aug;
    int has_aug;
} vt__task;

struct vt_loader {
    vt_pool *pool;
    const vt_dataset *ds; /* (read by decodes under mu: gone once orphaned) */
    int nsamples;     /* ds->n */
    vt_loader_opts o;
    vt_creds creds;
    int has_creds;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    vt__slot slots[VT_LOADER_AHEAD];
    size_t cell;      /* bytes per image in a slot */
    char **failure;   /* (ds->n) reasons, under mu */
    int nfailed;
    char *fatal;      /* why a decode failed for want of descriptors or the
                         owner's identity (not the image's fault), under mu */
    int fatal_rc;
    int *order, count, nbatches, next_submit, next_return;
    int carried;      /* order entries of the batches vt_loader_ready skipped
                         (none of their images read), for next's consumed */
    int handed;       /* a batch was handed out since the last host fence */
    int fill_rc;      /* a batch could be queued only in part: not again */
    vt_augment aug;
    int has_aug;
    int orphaned;     /* freed by its owner with decodes in flight (under
                         mu): see vt_loader_free */
    vt_loader *next_orphan;
};

/* Loaders let go of with decodes in flight (a read stuck on a dead mount),
 * freed by vt_loader_reap once those are done. */
static pthread_mutex_t vt__orphans_mu = PTHREAD_MUTEX_INITIALIZER;
static vt_loader *vt__orphans;

/* How long vt_loader_free waits for the decodes in flight before it lets
 * them go on without it. */
#define VT__FREE_WAIT_S 1

int vt_augment_flipped(const vt_augment *aug, int sample)
{
    return (int)(vt_rng_u64(aug->seed, VT_RNG_AUGMENT + ((uint64_t)aug->epoch << 8),
                            (uint64_t)sample) & 1);
}

/* The side an image is resized to before its S x S window is cut. */
static int vt__side(int S, double crop)
{
    return crop > 0 ? (int)(S * (1.0 + crop) + 0.5) : S;
}

/* Most pixels a device_resize image keeps at its decoded size, for a side:
 * 1.5 x side^2 (a 500x375 JPEG DCT-scales to 313x235 for 224). */
static size_t vt__keep(size_t side) { return side * side * 3 / 2; }

int vt_loader_create(vt_loader **out, vt_pool *pool, const vt_dataset *ds,
                     const vt_loader_opts *opts)
{
    vt_loader *l = calloc(1, sizeof *l);

    *out = NULL;
    if (!l)
        return vt_error_set(VT_ENOMEM, "out of memory");
    l->pool = pool;
    l->ds = ds;
    l->nsamples = ds->n;
    l->o = *opts;
    if (opts->creds) {
        l->creds = *opts->creds;
        l->has_creds = 1;
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* (vt_loader_free's wait) */
    pthread_cond_init(&l->cv, &ca);
    pthread_condattr_destroy(&ca);
    l->failure = calloc((size_t)(ds->n ? ds->n : 1), sizeof *l->failure);
    l->cell = (size_t)opts->image_size * opts->image_size * 3;
    if (opts->device_resize) {
        size_t side = (size_t)vt__side(opts->image_size, opts->max_crop);
        l->cell = vt__keep(side) * 3;
    }
    for (int k = 0; k < VT_LOADER_AHEAD; k++) {
        vt__slot *s = &l->slots[k];
        size_t bytes = l->cell * (size_t)opts->max_batch;
        if (opts->pinned && (s->pixels = vt_backend_host_alloc(opts->pinned, bytes)))
            s->pinned = 1;
        else
            s->pixels = malloc(bytes);
        if (opts->device_resize)
            s->boxes = malloc(sizeof *s->boxes * (size_t)opts->max_batch);
        s->labels = malloc(sizeof *s->labels * (size_t)opts->max_batch);
        s->sample = malloc(sizeof *s->sample * (size_t)opts->max_batch);
        s->ok = malloc((size_t)opts->max_batch);
        if (!s->pixels || !s->labels || !s->sample || !s->ok ||
            (opts->device_resize && !s->boxes)) {
            vt_loader_free(l);
            return vt_error_set(VT_ENOMEM, "out of memory for decode buffers");
        }
    }
    if (!l->failure) {
        vt_loader_free(l);
        return vt_error_set(VT_ENOMEM, "out of memory");
    }
    *out = l;
    return 0;
}

/* Decodes the image of box into dst on the host: resized to the box's
 * side, its window cut out and mirrored, S x S. */
static int vt__decode_host(const char *path, const vt_image_box *box, int S, uint8_t *dst)
{
    int rc, big = box->rw;
    if (big == S)
        rc = vt_image_load(AT_FDCWD, path, S, S, dst);
    else {
        uint8_t *tmp = malloc((size_t)big * big * 3);
        if (!tmp)
            return vt_error_set(VT_ENOMEM, "out of memory");
        if ((rc = vt_image_load(AT_FDCWD, path, big, big, tmp)) == 0)
            for (int y = 0; y < S; y++)
                memcpy(dst + (size_t)y * S * 3,
                       tmp + ((size_t)(y + box->oy) * big + box->ox) * 3, (size_t)S * 3);
        free(tmp);
    }
    if (rc == 0 && box->flip)
        vt_image_flip(dst, S, S);
    return rc;
}

/* Decodes one image into its slot position (runs on the pool). */
static void vt__decode(void *arg)
{
    vt__task *t = arg;
    vt_loader *l = t->l;
    int S = l->o.image_size, ok = 0;
    uint8_t *dst = t->slot->pixels + l->cell * (size_t)t->pos;
    char path[PATH_MAX], *reason = NULL;
    int rc = 0, not_entered = 0, gone;
    /* What the augmentation asks of this image (pure functions of the
     * seed, epoch and sample, so a resumed job sees the same). */
    int crop = t->has_aug && t->aug.crop > 0, side = vt__side(S, crop ? t->aug.crop : 0);
    vt_image_box box = {.offset = l->cell * (size_t)t->pos, .rw = side, .rh = side};
    if (crop) {
        uint64_t stream = VT_RNG_AUGMENT + ((uint64_t)t->aug.epoch << 8);
        box.ox = (int)vt_rng_below(t->aug.seed, stream + 1, (uint64_t)t->sample,
                                   (uint64_t)(side - S + 1));
        box.oy = (int)vt_rng_below(t->aug.seed, stream + 2, (uint64_t)t->sample,
                                   (uint64_t)(side - S + 1));
    }
    box.flip = t->has_aug && t->aug.flip && vt_augment_flipped(&t->aug, t->sample);

    pthread_mutex_lock(&l->mu); /* (the dataset may be gone once orphaned) */
    if (!(gone = l->orphaned))
        snprintf(path, sizeof path, "%s/%s", l->ds->root, l->ds->samples[t->sample].path);
    pthread_mutex_unlock(&l->mu);
    if (gone) /* nobody waits for it */
        goto done;
    vt_bg_test_hold(strrchr(path, '/') + 1); /* (tests: a read stuck on a dead mount) */
    if (l->has_creds)
        not_entered = (rc = vt_creds_enter(&l->creds)) < 0;
    if (rc == 0 && l->o.device_resize && vt__keep((size_t)side) * 3 > l->cell)
        rc = vt_error_set(VT_EINVAL, "crop %g is over the loader's max_crop %g", t->aug.crop,
                          l->o.max_crop); /* the buffers are sized by max_crop */
    else if (rc == 0 && l->o.device_resize) {
        rc = vt_image_load_scaled(AT_FDCWD, path, side, side, vt__keep((size_t)side), dst,
                                  &box.sw, &box.sh);
        t->slot->boxes[t->pos] = box;
    } else if (rc == 0) {
        rc = vt__decode_host(path, &box, S, dst);
    }
    if (l->has_creds)
        vt_creds_leave();
    if (rc == 0) {
        ok = 1;
    } else {
        reason = strdup(vt_error_msg());
    }
done:
    pthread_mutex_lock(&l->mu);
    t->slot->ok[t->pos] = (uint8_t)ok;
    if (!ok && (rc == VT_EBUSY || not_entered)) {
        if (!l->fatal_rc) {
            l->fatal = reason;
            l->fatal_rc = rc;
            reason = NULL;
        }
    } else if (!ok && !gone) {
        if (!l->failure[t->sample]) {
            l->failure[t->sample] = reason;
            reason = NULL;
            l->nfailed++;
        }
    }
    if (--t->slot->pending == 0) {
        pthread_cond_broadcast(&l->cv);
        /* (under mu: once the loader is drained or orphaned, none is in
         * flight, and none comes) */
        if (l->o.decoded)
            l->o.decoded(l->o.decoded_ud);
    }
    pthread_mutex_unlock(&l->mu);
    free(reason);
    free(t);
}

static int vt__submit(vt_loader *l, int b)
{
    vt__slot *s = &l->slots[b % VT_LOADER_AHEAD];
    int start = b * l->o.max_batch;
    int n = l->count - start < l->o.max_batch ? l->count - start : l->o.max_batch;

    s->n = n;
    pthread_mutex_lock(&l->mu);
    s->pending = n;
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < n; i++) {
        vt__task *t = malloc(sizeof *t);
        int sample = l->order[start + i];
        s->sample[i] = sample;
        s->labels[i] = l->ds->samples[sample].label;
        s->ok[i] = 0;
        if (t)
            *t = (vt__task){.l = l, .slot = s, .pos = i, .sample = sample, .aug = l->aug,
                            .has_aug = l->has_aug};
        if (!t || vt_pool_submit(l->pool, vt__decode, t) < 0) {
            free(t);
            /* Count the rest as done so waiting cannot hang. */
            pthread_mutex_lock(&l->mu);
            s->pending -= n - i;
            pthread_cond_broadcast(&l->cv);
            pthread_mutex_unlock(&l->mu);
            return vt_error_set(VT_ENOMEM, "out of memory queueing decodes");
        }
    }
    return 0;
}

/* Whether a decode of l is in flight (mu held). */
static int vt__in_flight(const vt_loader *l)
{
    for (int k = 0; k < VT_LOADER_AHEAD; k++)
        if (l->slots[k].pending > 0)
            return 1;
    return 0;
}

/* Waits until no decode of this loader is in flight. */
static void vt__drain(vt_loader *l)
{
    pthread_mutex_lock(&l->mu);
    while (vt__in_flight(l))
        pthread_cond_wait(&l->cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
}

/* vt__drain for up to `seconds`; with decodes still in flight then (one
 * stuck on a dead mount), marks l orphaned: its callback is not called any
 * more, the dataset not read, and the decodes not begun yet are not made.
 * 1 when drained. */
static int vt__drain_or_orphan(vt_loader *l, int seconds)
{
    struct timespec until;
    int drained;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += seconds;
    pthread_mutex_lock(&l->mu);
    while (vt__in_flight(l) && pthread_cond_timedwait(&l->cv, &l->mu, &until) != ETIMEDOUT)
        ;
    if (!(drained = !vt__in_flight(l))) {
        l->orphaned = 1;
        l->o.decoded = NULL;
    }
    pthread_mutex_unlock(&l->mu);
    return drained;
}

/* Whether no decode of l is in flight (never blocks). */
static int vt__idle(vt_loader *l)
{
    int idle;
    pthread_mutex_lock(&l->mu);
    idle = !vt__in_flight(l);
    pthread_mutex_unlock(&l->mu);
    return idle;
}

int vt_loader_begin(vt_loader *l, const int *order, int count, const vt_augment *aug)
{
    int *copy = malloc(sizeof *copy * (size_t)(count ? count : 1));
    if (!copy)
        return vt_error_set(VT_ENOMEM, "out of memory");
    vt__drain(l);
    /* the last pass's last batch may still be uploading from its buffer */
    int rc = l->o.pinned ? vt_backend_host_fence(l->o.pinned) : 0;
    if (rc < 0) {
        free(copy);
        return rc;
    }
    memcpy(copy, order, sizeof *copy * (size_t)count);
    free(l->fatal); /* (a pass's failure is its own) */
    l->fatal = NULL;
    l->fatal_rc = 0;
    free(l->order);
    l->order = copy;
    l->count = count;
    l->nbatches = (count + l->o.max_batch - 1) / l->o.max_batch;
    l->next_submit = l->next_return = 0;
    l->carried = l->handed = l->fill_rc = 0;
    l->has_aug = aug != NULL;
    if (aug)
        l->aug = *aug;
    return 0;
}

/* Queues the batches due: up to VT_LOADER_AHEAD from the next one. */
static int vt__fill(vt_loader *l)
{
    int rc;
    /* (a batch queued in part has decodes in flight: queueing it again
     * would count them twice) */
    if (l->fill_rc < 0)
        return vt_error_set(l->fill_rc, "out of memory queueing decodes");
    while (l->next_submit < l->nbatches && l->next_submit < l->next_return + VT_LOADER_AHEAD) {
        if ((rc = vt__submit(l, l->next_submit)) < 0)
            return l->fill_rc = rc;
        l->next_submit++;
    }
    return 0;
}

int vt_loader_prefetch(vt_loader *l) { return l->next_return == 0 ? vt__fill(l) : 0; }

int vt_loader_ready(vt_loader *l)
{
    for (;;) {
        vt__slot *s = &l->slots[l->next_return % VT_LOADER_AHEAD];
        int done, fatal, any = 0;
        if (l->next_return >= l->nbatches || l->next_submit <= l->next_return)
            return 1;
        pthread_mutex_lock(&l->mu);
        done = s->pending == 0;
        fatal = l->fatal_rc;
        pthread_mutex_unlock(&l->mu);
        if (!done)
            return 0;
        for (int i = 0; i < s->n && !fatal; i++)
            any |= s->ok[i];
        if (fatal || any)
            return 1;
        /* None of its images could be read: vt_loader_next would skip it
         * and wait for the batch after, which may be stuck (on a dead
         * mount every read fails or hangs).  Skip it here, as next would
         * (queueing the next batch may reuse the buffer of the one handed
         * out last: fenced as in next; an error is next's to report). */
        if (l->o.pinned && l->handed && vt_backend_host_fence(l->o.pinned) < 0)
            return 1;
        l->handed = 0;
        l->carried += s->n;
        l->next_return++;
        if (vt__fill(l) < 0)
            return 1;
    }
}

int vt_loader_next(vt_loader *l, vt_batch **out)
{
    int rc, consumed = l->carried;
    l->carried = 0;
    /* The batch handed out last may still be uploading from its buffer,
     * which the submissions below decode into again. */
    if (l->o.pinned && l->next_return > 0 && (rc = vt_backend_host_fence(l->o.pinned)) < 0)
        return rc;
    for (;;) {
        if (l->next_return >= l->nbatches)
            return 0;
        if ((rc = vt__fill(l)) < 0)
            return rc;
        vt__slot *s = &l->slots[l->next_return % VT_LOADER_AHEAD];
        int n = 0;
        size_t bytes = 0;
        pthread_mutex_lock(&l->mu);
        while (s->pending > 0)
            pthread_cond_wait(&l->cv, &l->mu);
        rc = l->fatal_rc;
        pthread_mutex_unlock(&l->mu);
        /* Skipping images that failed for the process's want (descriptors,
         * memory) would train on whatever happened to decode: fail instead. */
        if (rc < 0)
            return vt_error_set(rc, "reading images: %s", l->fatal ? l->fatal : "no descriptor");
        l->next_return++;
        consumed += s->n;
        /* Close the gaps left by images that could not be read (boxes
         * point at their images, which stay where they are). */
        for (int i = 0; i < s->n; i++) {
            if (!s->ok[i])
                continue;
            if (n != i) {
                if (s->boxes)
                    s->boxes[n] = s->boxes[i];
                else
                    memcpy(s->pixels + l->cell * (size_t)n, s->pixels + l->cell * (size_t)i,
                           l->cell);
                s->labels[n] = s->labels[i];
                s->sample[n] = s->sample[i];
            }
            n++;
            bytes = s->boxes ? l->cell * (size_t)(i + 1) : l->cell * (size_t)n;
        }
        if (n == 0)
            continue;
        s->batch = (vt_batch){.pixels = s->pixels, .boxes = s->boxes, .bytes = bytes,
                              .labels = s->labels, .sample = s->sample, .n = n,
                              .consumed = consumed};
        *out = &s->batch;
        l->handed = 1;
        return 1;
    }
}

int vt_batch_to_input(vt_backend *be, const vt_batch *b, int S, vt_preprocess prep,
                      vt_tensor *x)
{
    if (b->boxes)
        return vt_op_images_resize_to_input(be, b->pixels, b->bytes, b->boxes, b->n, prep, x);
    return vt_op_images_to_input(be, b->pixels, b->n, S, S, prep, x);
}

const char *vt_loader_failure(vt_loader *l, int sample)
{
    const char *r;
    pthread_mutex_lock(&l->mu);
    r = sample >= 0 && sample < l->ds->n ? l->failure[sample] : NULL;
    pthread_mutex_unlock(&l->mu);
    return r;
}

int vt_loader_failed_count(vt_loader *l)
{
    int n;
    pthread_mutex_lock(&l->mu);
    n = l->nfailed;
    pthread_mutex_unlock(&l->mu);
    return n;
}

/* Frees l, whose decodes are over. */
static void vt__destroy(vt_loader *l)
{
    for (int k = 0; k < VT_LOADER_AHEAD; k++) {
        if (l->slots[k].pinned)
            vt_backend_host_free(l->o.pinned, l->slots[k].pixels);
        else
            free(l->slots[k].pixels);
        free(l->slots[k].boxes);
        free(l->slots[k].labels);
        free(l->slots[k].sample);
        free(l->slots[k].ok);
    }
    if (l->failure)
        for (int i = 0; i < l->nsamples; i++)
            free(l->failure[i]);
    free(l->failure);
    free(l->fatal);
    free(l->order);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
}

void vt_loader_reap(vt_backend *pinned, int wait)
{
    vt_loader *done = NULL, **p;
    pthread_mutex_lock(&vt__orphans_mu);
    for (p = &vt__orphans; *p;) {
        vt_loader *l = *p;
        if ((l->o.pinned == pinned || !l->o.pinned) && (wait || vt__idle(l))) {
            *p = l->next_orphan;
            l->next_orphan = done;
            done = l;
        } else {
            p = &l->next_orphan;
        }
    }
    pthread_mutex_unlock(&vt__orphans_mu);
    while (done) {
        vt_loader *l = done;
        done = l->next_orphan;
        vt__drain(l);
        vt__destroy(l);
    }
}

void vt_loader_free(vt_loader *l)
{
    if (!l)
        return;
    vt_backend *pinned = l->o.pinned;
    if (vt__drain_or_orphan(l, VT__FREE_WAIT_S)) {
        vt__destroy(l);
    } else {
        pthread_mutex_lock(&vt__orphans_mu);
        l->next_orphan = vt__orphans;
        vt__orphans = l;
        pthread_mutex_unlock(&vt__orphans_mu);
    }
    vt_loader_reap(pinned, 0); /* (those let go of before, done since) */
}

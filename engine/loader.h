/* loader.h - decoding a dataset in batches on the decode pool, ahead of use.
 *
 * A pass walks a caller-given order of samples in batches of max_batch (the
 * last one smaller).  Up to VT_LOADER_AHEAD batches are decoded in parallel
 * on the pool while the caller computes on the previous one.  An image that
 * cannot be read is left out of its batch, counted, and its reason kept; the
 * pass goes on.  Augmentation (flip, crop) is a pure function of
 * (seed, epoch, sample), so a resumed job sees the same images.
 */
#ifndef VT_LOADER_H
#define VT_LOADER_H

#include <stdint.h>

#include "../common/creds.h"
#include "../common/pool.h"
#include "../kernels/backend.h"
#include "dataset.h"

#define VT_LOADER_AHEAD 3

typedef struct vt_loader vt_loader;

typedef struct {
    int image_size;        /* images are decoded to image_size x image_size */
    int max_batch;
    const vt_creds *creds; /* read files as this user (NULL: as the process) */
    /* 1: leave resizing, cropping and mirroring to the backend: each image
     * is only decoded (JPEGs DCT-scaled toward the size the host path would
     * resize to) and the batch says how to finish it (vt_batch.boxes).  An
     * image that decodes to more than 1.5x that size's pixels is resized on
     * the host to exactly that size, so buffers stay bounded. */
    int device_resize;
    double max_crop;       /* the largest vt_augment.crop a pass will use */
    /* When set, the batches live in this backend's vt_backend_host_alloc
     * memory (uploads run while the next batch decodes), and the loader
     * calls vt_backend_host_fence before decoding into a buffer again. */
    vt_backend *pinned;
    /* Optional: called on a pool thread each time a batch's images are all
     * done (decoded or failed), for a caller that polls vt_loader_ready
     * instead of waiting in vt_loader_next.  It runs with the loader's
     * lock held (it must not call the loader), so none runs once
     * vt_loader_free (or vt_loader_begin) has returned. */
    void (*decoded)(void *ud);
    void *decoded_ud;
} vt_loader_opts;

typedef struct {
    uint64_t seed;
    int epoch;
    int flip;     /* 1: mirror each image with probability 1/2 */
    double crop;  /* > 0: decode at round(S * (1 + crop)) and cut a random S x S */
} vt_augment;

typedef struct {
    uint8_t *pixels; /* (n, S, S, 3) RGB; with device_resize, bytes bytes
                        holding the images that boxes (n) describe */
    vt_image_box *boxes;
    size_t bytes;
    int32_t *labels; /* (n) */
    int *sample;     /* (n) indices into the dataset */
    int n;           /* images in this batch */
    int consumed;    /* entries of the pass's order this batch accounts for,
                        including batches skipped because nothing was read */
} vt_batch;

/* Whether augmentation mirrors sample in aug's epoch (a pure function). */
int vt_augment_flipped(const vt_augment *aug, int sample);

/* Makes a loader for ds (which must outlive it, until vt_loader_free
 * returns) on pool. */
int vt_loader_create(vt_loader **out, vt_pool *pool, const vt_dataset *ds,
                     const vt_loader_opts *opts);

/* Starts a pass over order[0..count) (copied); aug may be NULL.  A pass in
 * progress is abandoned (its in-flight decodes are waited for). */
int vt_loader_begin(vt_loader *l, const int *order, int count, const vt_augment *aug);

/* Waits for the next batch of the pass.  Returns 1 and *out (valid until the
 * next call of next, vt_loader_ready or begin), or 0 at the end of the pass.  Batches in which no image could
 * be read are skipped.  An image that could not be opened for the
 * process's want rather than its own fault (no file descriptor left, the
 * owner's identity not taken) is not skipped: that returns its error
 * (VT_EBUSY, VT_EPERM).  (Memory an image's own size asks for, which
 * may fail for that image alone, is its fault: skipped.) */
int vt_loader_next(vt_loader *l, vt_batch **out);

/* Queues the decoding of the pass's first batches now, without waiting
 * (vt_loader_next otherwise queues them at its first call). */
int vt_loader_prefetch(vt_loader *l);

/* Whether vt_loader_next would return without waiting for a decode: the
 * next batch's images are all done, or the pass is over (or the next batch
 * is not queued yet, which vt_loader_next then does, and waits).  A batch
 * none of whose images could be read is skipped here as next would skip
 * it (the batches after it queued), so that the answer is about the batch
 * next would return: this may reuse the buffers of the batch next handed
 * out last, which must no longer be in use.  For the thread that calls
 * next. */
int vt_loader_ready(vt_loader *l);

/* Why sample i could not be read, or NULL when it could (or has not been
 * tried yet).  Valid until the loader is freed. */
const char *vt_loader_failure(vt_loader *l, int sample);

/* How many distinct samples have failed so far. */
int vt_loader_failed_count(vt_loader *l);

/* x (b->n, S, S, 3) preprocessed from the batch's images, by whichever
 * backend operation fits how they were decoded (resized or not). */
int vt_batch_to_input(vt_backend *be, const vt_batch *b, int S, vt_preprocess prep,
                      vt_tensor *x);

/* Waits for in-flight decodes and frees the loader; NULL is a no-op.  A
 * decode that has not ended within a second (a read stuck on a dead
 * mount) is not waited for: the loader is let go of (no callback is
 * called and ds is not read after this returns; the decodes not begun are
 * dropped) and freed, with its pinned buffers, by a later vt_loader_free
 * or vt_loader_reap on the thread that uses the backend, once its decodes
 * are over. */
void vt_loader_free(vt_loader *l);

/* Frees the loaders let go of by vt_loader_free (those whose pinned
 * backend is `pinned`, or none) whose decodes are over; with wait set,
 * waits for those (after vt_pool_free, before the backend is freed). */
void vt_loader_reap(vt_backend *pinned, int wait);

#endif

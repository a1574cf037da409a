/* backend.h - the compute backend interface.
 *
 * Everything numeric that a training step does goes through this small table
 * of operations on opaque tensors, so the CPU reference backend (kernels/cpu)
 * and the CUDA backend (kernels/cuda) run the same model code and the same
 * tests.  The public wrappers below check shapes and dtypes once, for every
 * backend, and then dispatch.
 *
 * Layouts (all row-major):
 *   activations      (N, H, W, C)  NHWC
 *   conv weights     (K, 3, 3, C)  KRSC: K output channels, C input channels
 *   conv bias        (K)
 *   dense input      (N, IN)       any tensor whose first dim is N (flattened)
 *   dense weights    (OUT, IN)
 *   labels           (N)           int32
 *   images           (N, H, W, 3)  uint8 RGB, as decoded
 *
 * Threading: a backend object and its tensors belong to one thread at a time
 * (the daemon's device thread).  Tensors of one backend must not be passed to
 * another.
 *
 * Errors: unless its contract says otherwise, a function below that returns
 * int returns 0, or a negative VT_E* code with the message set: VT_EINVAL for
 * shapes, dtypes or indices an operation does not take (checked before
 * anything is queued), VT_EUNSUPPORTED for what this backend does not do,
 * VT_ENOMEM / VT_EDEVOOM for host / device memory, VT_EDEVICE for a failed
 * device call (the context is still usable), VT_EDEVLOST for a sticky
 * device error (every later call fails the same way; the process must
 * restart).  Errors of queued work may surface only at vt_backend_sync().
 */
#ifndef VT_BACKEND_H
#define VT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    VT_F32,  /* float32 */
    VT_BF16, /* bfloat16 storage, float32 arithmetic (CUDA activations) */
    VT_I32,  /* int32 (labels) */
} vt_dtype;

typedef enum {
    VT_PREP_TORCH, /* RGB, x/255, mean (0.485,0.456,0.406), std (0.229,0.224,0.225) */
    VT_PREP_CAFFE, /* BGR, x - (103.939,116.779,123.68) in BGR order, no scaling */
} vt_preprocess;

typedef struct vt_backend vt_backend;
typedef struct vt_tensor vt_tensor;

#define VT_MAX_DIMS 4

/* SGD hyper-parameters for one update, Keras semantics:
 *   g' = g + weight_decay * w
 *   v <- momentum * v - lr * g'
 *   nesterov: w <- w + momentum * v - lr * g'   else: w <- w + v
 * lr is the already-decayed rate for this iteration. */
typedef struct {
    float lr;
    float momentum;
    float weight_decay;
    int nesterov;
} vt_sgd_args;

/* ---- backends ---------------------------------------------------------- */

/* Creates the named backend ("cpu" or "cuda").  Returns 0 and *out, or
 * VT_EUNSUPPORTED with a message saying why (not built with CUDA, no device,
 * driver too old).  threads: CPU threads to use, 0 = all cores. */
int vt_backend_create(vt_backend **out, const char *name, int threads);

/* Creates the CUDA backend when a usable GPU is present, else the CPU one;
 * when it falls back, why[] says why CUDA was not used (else why[0] = 0). */
int vt_backend_create_auto(vt_backend **out, int threads, char *why, size_t why_len);

/* Releases a backend; every tensor it made must be freed first.  NULL is a
 * no-op. */
void vt_backend_free(vt_backend *be);

/* "cpu" or "cuda". */
const char *vt_backend_name(const vt_backend *be);

/* One line describing the device ("2 CPU threads, OpenBLAS", "NVIDIA H200,
 * 139 GiB"), for status replies and logs. */
const char *vt_backend_device(const vt_backend *be);

/* Whether the backend's activations for this precision are stored as bf16
 * ("bf16") or f32 ("fp32"); the CPU backend always answers VT_F32. */
vt_dtype vt_backend_act_dtype(const vt_backend *be, const char *precision);

/* Waits until all queued work is finished and delivers deferred results
 * (vt_op_softmax_xent's sums); returns the first deferred error.
 * For tests of how failures are handled, VT_TEST_DEVICE_FAULT="N:error"
 * (or "N:lost") in the environment when the backend is created makes the
 * N-th call fail as a failed device call does, VT_EDEVICE (or as a sticky
 * device error, VT_EDEVLOST, and every call after it too);
 * "N:error-then-lost": VT_EDEVICE, then VT_EDEVLOST from the next call on
 * (a sticky error that the failing call did not reveal). */
int vt_backend_sync(vt_backend *be);

/* Device memory now allocated through this backend and its high-water mark,
 * in bytes (host memory for the CPU backend). */
void vt_backend_memory(const vt_backend *be, size_t *in_use, size_t *peak);

/* Has every convolution and dense operation call beat(ud) on the calling
 * thread once it returns (NULL: none), so that whoever watches that thread
 * for a hang sees a long step make progress: the CPU backend has done the
 * operation's work by then; a GPU backend has queued it, and a hung device
 * stops the calls once its queue is full or the thread waits on it. */
void vt_backend_set_heartbeat(vt_backend *be, void (*beat)(void *ud), void *ud);

/* Starts vt_backend_memory()'s high-water mark again from what is in use
 * now (a benchmark's window, as torch.cuda.reset_peak_memory_stats). */
void vt_backend_memory_reset_peak(vt_backend *be);

/* Bytes held now by this backend's host tensors (vt_tensor_new_host). */
size_t vt_backend_host_memory(const vt_backend *be);

/* Whether jobs should hand this backend images at their decoded size, for
 * vt_op_images_resize_to_input, rather than resize them on the decode
 * threads: 1 for CUDA (the device resizes for free; the host only decodes),
 * 0 for the CPU (its decode threads resize in parallel).  The environment
 * variable VT_RESIZE_ON_DEVICE=0|1, read at creation, overrides it (the
 * tests run the device path on the CPU backend that way). */
int vt_backend_resizes_images(const vt_backend *be);

/* Host memory that the device reads directly and asynchronously (page-locked
 * on CUDA, plain malloc on the CPU), for the buffers images are decoded
 * into; NULL when there is none to be had (use malloc then).  Free it with
 * vt_backend_host_free (NULL is a no-op there), which waits for an upload
 * still reading it.  An image operation given such memory may still be
 * reading it when it returns: see vt_backend_host_fence. */
void *vt_backend_host_alloc(vt_backend *be, size_t bytes);
void vt_backend_host_free(vt_backend *be, void *p);

/* Waits until every image operation started so far from
 * vt_backend_host_alloc memory has read it (not for the computation queued
 * behind), so that the caller may write that memory again.  Memory from
 * elsewhere has been read when the operation returns. */
int vt_backend_host_fence(vt_backend *be);

/* Total memory of the device in bytes (physical RAM for the CPU backend). */
size_t vt_backend_memory_total(const vt_backend *be);

/* Lists the backends compiled in, as a comma-separated string ("cpu,cuda"). */
const char *vt_backend_compiled(void);

/* ---- recorded sequences -------------------------------------------------
 *
 * A sequence of operations that repeats unchanged (a training step at a
 * fixed batch size) can be recorded once and then replayed as one launch,
 * where the backend supports it (CUDA: a CUDA graph, when the environment
 * has VT_CUDA_GRAPHS=1).  The caller brackets the sequence:
 *
 *   vt_record_begin(be, &rec)   the operations   vt_record_end(be, &rec, ok)
 *
 * With rec NULL the operations are recorded into a new recording and run
 * at vt_record_end.  With a recording, the caller must make the same calls
 * on the same tensors and shapes as when it was recorded; only the SGD
 * arguments, the dropout rate, seed and stream may differ.  The calls are
 * then only noted (they return at once, their work not yet done) and
 * vt_record_end replays the recording with the new arguments.  Softmax sums
 * must go to the same object every time.  Inside a sequence, operations
 * that move data between host and device (uploads, downloads, images,
 * gather and scatter, sync) are refused.  Writing a weight from the host
 * between replays (an upload, a copy into it) or a change in the backend's
 * own buffers makes the backend decline the next replay (begin answers 0),
 * after which one unrecorded run and then a new recording are expected.
 */
typedef struct vt_recording vt_recording;

/* Starts a sequence.  Returns 1 when the operations that follow are to be
 * recorded (*rec NULL) or replayed (*rec given); 0 when this run should not
 * be recorded (a stale *rec is freed and set to NULL): the caller just makes
 * the calls; VT_EUNSUPPORTED when the backend never records. */
int vt_record_begin(vt_backend *be, vt_recording **rec);

/* Ends the sequence begun with vt_record_begin (ok = 0: one of its calls
 * failed).  Returns 1 when the operations ran (recorded, then run once; or
 * replayed) and *rec is the recording; 0 when they did not run (the
 * recording failed, or ok was 0): *rec is freed and NULL, and the caller
 * makes the calls again without recording; < 0 on a device error. */
int vt_record_end(vt_backend *be, vt_recording **rec, int ok);

/* Frees a recording, delivering its pending softmax sums first; NULL is a
 * no-op.  be must be the backend that made it. */
void vt_recording_free(vt_backend *be, vt_recording *rec);

/* ---- tensors ----------------------------------------------------------- */

/* Allocates a zero-filled tensor of the given shape (1..4 dims, each > 0).
 * Returns VT_ENOMEM / VT_EDEVOOM when memory runs out. */
int vt_tensor_new(vt_tensor **out, vt_backend *be, vt_dtype dtype, int ndim,
                  const int *dims);

/* Like vt_tensor_new, but the elements live in host memory the backend can
 * still reach (CUDA: pinned and mapped into the device's address space; CPU:
 * ordinary memory): room for data that does not fit on the device and moves
 * in rows, such as a feature cache.  A host tensor may only be passed to
 * vt_tensor_free, _upload, _download, _gather_rows and _scatter_rows (the
 * others refuse it).  Its bytes count in vt_backend_host_memory(), not in
 * vt_backend_memory(). */
int vt_tensor_new_host(vt_tensor **out, vt_backend *be, vt_dtype dtype, int ndim,
                       const int *dims);

/* Whether t was made by vt_tensor_new_host. */
int vt_tensor_is_host(const vt_tensor *t);

/* A view of rows [row, row + rows) of src's first dimension: a tensor with
 * src's dtype and dims, dims[0] = rows, whose elements are src's (no copy),
 * so that part of a batch can go through operations that take whole
 * tensors.  Writing through it counts as writing src.  src must be a device
 * tensor (not a host tensor, not a view); free the view (vt_tensor_free
 * frees only the view) before src, and do not reshape src while it lives. */
int vt_tensor_view_rows(vt_tensor **out, vt_tensor *src, int row, int rows);

/* Frees a tensor; NULL is a no-op. */
void vt_tensor_free(vt_tensor *t);

/* A tensor's rank, its size along dimension i (1 for i >= rank, so a
 * (N, C) tensor reads as (N, C, 1, ...)), its element count, its type. */
int vt_tensor_ndim(const vt_tensor *t);
int vt_tensor_dim(const vt_tensor *t, int i);
size_t vt_tensor_numel(const vt_tensor *t);
vt_dtype vt_tensor_dtype(const vt_tensor *t);

/* Changes the shape without moving data: the new shape must have at most as
 * many elements as the tensor was allocated with (so a buffer sized for the
 * largest batch serves a smaller last batch). */
int vt_tensor_reshape(vt_tensor *t, int ndim, const int *dims);

/* Copies n = numel elements from host memory of the tensor's dtype (float for
 * VT_F32 and VT_BF16 tensors: conversion happens inside). */
int vt_tensor_upload(vt_tensor *t, const void *host);

/* Copies all elements to host memory (float for VT_F32 and VT_BF16). */
int vt_tensor_download(const vt_tensor *t, void *host);

/* Sets every element to zero. */
int vt_tensor_zero(vt_tensor *t);

/* dst <- src; same shape and dtype. */
int vt_tensor_copy(vt_tensor *dst, const vt_tensor *src);

/* Copies rows [src_row, src_row+rows) of src into rows [dst_row, ...) of dst,
 * a row being one slice of the first dimension; both tensors must have the
 * same dtype and row size (elements per row). */
int vt_tensor_copy_rows(vt_tensor *dst, int dst_row, const vt_tensor *src, int src_row,
                        int rows);

/* dst row i <- src row rows[i], for i < n: one operation however many rows
 * (rows is host memory; every index inside src).  Same dtype and row size,
 * as for vt_tensor_copy_rows; either tensor may be a host tensor. */
int vt_tensor_gather_rows(vt_tensor *dst, const vt_tensor *src, const int *rows, int n);

/* dst row rows[i] <- src row i, for i < n; the indices must be distinct and
 * inside dst.  Either tensor may be a host tensor. */
int vt_tensor_scatter_rows(vt_tensor *dst, const int *rows, const vt_tensor *src, int n);

/* ---- operations -------------------------------------------------------- */

/* images (N,H,W,3) uint8 RGB in host memory -> x (N,H,W,3) preprocessed. */
int vt_op_images_to_input(vt_backend *be, const uint8_t *images, int n, int h,
                          int w, vt_preprocess prep, vt_tensor *x);

/* One image of a batch for vt_op_images_resize_to_input: its (sh, sw, 3)
 * uint8 RGB pixels at byte offset of the batch's buffer are resized
 * (bilinear, exactly as vt_image_resize) to rw x rh; the S x S window at
 * (ox, oy) of that is cut out and mirrored left-right when flip != 0. */
typedef struct {
    size_t offset;
    int sw, sh;
    int rw, rh;
    int ox, oy;
    int flip;
} vt_image_box;

/* x (N,S,S,3) preprocessed from the N = n images that boxes describe in
 * images[0..bytes) (host memory): the same values as resizing, cutting and
 * mirroring each on the host then calling vt_op_images_to_input. */
int vt_op_images_resize_to_input(vt_backend *be, const uint8_t *images, size_t bytes,
                                 const vt_image_box *boxes, int n, vt_preprocess prep,
                                 vt_tensor *x);

/* y = act(conv3x3_same(x, w) + b); x (N,H,W,C), w (K,3,3,C), b (K),
 * y (N,H,W,K); act = ReLU when relu != 0. */
int vt_op_conv_fwd(vt_backend *be, const vt_tensor *x, const vt_tensor *w,
                   const vt_tensor *b, vt_tensor *y, int relu);

/* dx = gradient of the convolution with respect to its input, from dy
 * (N,H,W,K) and w (K,3,3,C); dx (N,H,W,C) is overwritten. */
int vt_op_conv_bwd_data(vt_backend *be, const vt_tensor *dy,
                        const vt_tensor *w, vt_tensor *dx);

/* dw (K,3,3,C) and db (K), overwritten, from x (N,H,W,C) and dy (N,H,W,K). */
int vt_op_conv_bwd_filter(vt_backend *be, const vt_tensor *x,
                          const vt_tensor *dy, vt_tensor *dw, vt_tensor *db);

/* dy *= (y > 0), in place: back through a ReLU whose output was y. */
int vt_op_relu_bwd(vt_backend *be, const vt_tensor *y, vt_tensor *dy);

/* 2x2 stride-2 max-pool; x (N,H,W,C) with H, W even, y (N,H/2,W/2,C). */
int vt_op_maxpool_fwd(vt_backend *be, const vt_tensor *x, vt_tensor *y);

/* dx (N,H,W,C), overwritten: dy routed to the first maximum of each window
 * (row-major order within the window), zero elsewhere. */
int vt_op_maxpool_bwd(vt_backend *be, const vt_tensor *x, const vt_tensor *y,
                      const vt_tensor *dy, vt_tensor *dx);

/* y (N,OUT) = act(x (N,IN) . w^T + b); act = ReLU when relu != 0. */
int vt_op_dense_fwd(vt_backend *be, const vt_tensor *x, const vt_tensor *w,
                    const vt_tensor *b, vt_tensor *y, int relu);

/* From dy (N,OUT): dw (OUT,IN) and db (OUT) overwritten; dx (N,IN)
 * overwritten unless dx is NULL. */
int vt_op_dense_bwd(vt_backend *be, const vt_tensor *x, const vt_tensor *w,
                    const vt_tensor *dy, vt_tensor *dx, vt_tensor *dw,
                    vt_tensor *db);

/* Inverted dropout in place: x[i] *= mask[i], where mask[i] is 0 with
 * probability rate and 1/(1-rate) otherwise, drawn from
 * vt_rng_uniform(seed, stream, i); mask (same shape, f32) is written for the
 * backward pass.  rate in [0, 1). */
int vt_op_dropout_fwd(vt_backend *be, vt_tensor *x, vt_tensor *mask,
                      float rate, uint64_t seed, uint64_t stream);

/* dy *= mask, in place. */
int vt_op_dropout_bwd(vt_backend *be, const vt_tensor *mask, vt_tensor *dy);

/* Running totals of softmax cross-entropy results (host memory). */
typedef struct {
    double loss; /* summed loss of the rows */
    int correct; /* rows whose first arg-max is their label */
} vt_xent_sums;

/* Softmax cross-entropy over logits (N,C) with int32 labels (N).  When
 * dlogits (N,C) is given it is set to (softmax - onehot) * grad_scale
 * (grad_scale = 1/N for a mean loss); when probs (N,C) is given it receives
 * the softmax.  The batch's loss and correct count are added to *sums (NULL:
 * not wanted) - not necessarily now: a backend may keep them on the device
 * so that a training step needs no round trip, and they are in *sums once
 * vt_backend_sync() returns (which is also where a label outside 0..C-1 is
 * reported).  *sums must stay valid until then; calls adding to one sums
 * object add in call order, except that the runs of a recorded sequence
 * (vt_record_begin) are summed on the device first (the total differs only
 * in rounding). */
int vt_op_softmax_xent(vt_backend *be, const vt_tensor *logits,
                       const vt_tensor *labels, vt_tensor *dlogits,
                       float grad_scale, vt_tensor *probs, vt_xent_sums *sums);

/* One SGD update of w with gradient g and velocity v (same shape, f32). */
int vt_op_sgd_update(vt_backend *be, vt_tensor *w, const vt_tensor *g,
                     vt_tensor *v, const vt_sgd_args *args);

#endif

/* cuda_impl.h - private to kernels/cuda: the kernels of cuda_kernels.cu as
 * host launch wrappers, for cuda_backend.cu.
 *
 * Every wrapper enqueues its work on the given stream and returns
 * cudaGetLastError(), so a bad launch is reported at the call that made it.
 * Element types are passed at run time (vt_cuk_type); the wrappers pick a
 * template instance and a vector width (16-byte loads where the pointers
 * and sizes allow it).  Device pointers are the tensors' own allocations
 * (cudaMalloc, 256-byte aligned) unless a comment says otherwise.
 *
 * Numerics follow kernels/cpu/cpu_backend.c, the reference: the elementwise
 * kernels use explicitly rounded float operations (__fmul_rn, __fadd_rn,
 * __fdiv_rn) where the CPU code has no fused multiply-add, so SGD updates,
 * preprocessing and dropout are bit-identical to the CPU backend.
 */
#ifndef VT_CUDA_IMPL_H
#define VT_CUDA_IMPL_H

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "../backend.h"
}

/* Element types the kernels understand (activations may be either). */
typedef enum { VT_CUK_F32 = 0, VT_CUK_BF16 = 1 } vt_cuk_type;

/* What softmax cross-entropy hands back to the host (one D2H per call). */
typedef struct {
    double loss;   /* summed loss of the valid rows */
    int correct;   /* rows whose first arg-max equals the label */
    int bad;       /* rows with a label outside 0..C-1 */
    int bad_label; /* one such label */
    int pad_;
} vt_cuk_xent;

/* One launch's worth of row moves for vt_cuk_move_rows, passed by value as
 * a kernel parameter (so it needs no device copy and no synchronisation):
 * dst row dst[i] <- src row src[i], i < n.  3.8 KB, under the 4 KB limit. */
#define VT_CUK_ROWS_MAX 480
typedef struct {
    int n;
    int dst[VT_CUK_ROWS_MAX];
    int src[VT_CUK_ROWS_MAX];
} vt_cuk_rowmap;

/* Moves map->n rows of row_bytes between dst and src, either of which may be
 * mapped pinned host memory (a device-visible pointer); rows must not
 * overlap.  16-byte accesses when the pointers and row_bytes allow it. */
cudaError_t vt_cuk_move_rows(cudaStream_t s, void *dst, const void *src, size_t row_bytes,
                             const vt_cuk_rowmap *map);

/* A kernel that does nothing: launching it tells whether this binary has
 * code for the device (cudaErrorNoKernelImageForDevice otherwise). */
cudaError_t vt_cuk_probe(cudaStream_t s);

/* dst[i] = src[i] converted (round to nearest even into bf16), i < n. */
cudaError_t vt_cuk_convert(cudaStream_t s, void *dst, vt_cuk_type dt, const void *src,
                           vt_cuk_type st, size_t n);

/* x (pixels, 3) preprocessed from img (pixels, 3) uint8 RGB: caffe (BGR,
 * mean subtracted) when caffe != 0, else torch (x/255 - mean) / std. */
cudaError_t vt_cuk_images(cudaStream_t s, const uint8_t *img, size_t pixels, int caffe,
                          void *x, vt_cuk_type xt);

/* x (n, S, S, 3) preprocessed as vt_cuk_images does, from the images that
 * the device array boxes (n) places in img: each resized, cut and mirrored
 * as vt_image_box says, with the host's float operations in the host's
 * order, so the pixels equal the CPU backend's. */
cudaError_t vt_cuk_images_resize(cudaStream_t s, const uint8_t *img, const vt_image_box *boxes,
                                 int n, int S, int caffe, void *x, vt_cuk_type xt);

/* out (rows, cp) = in (rows, c) followed by cp - c zero channels; used to pad
 * NHWC activations and KRSC weights (rows = K*9) to a tensor-core friendly
 * channel count.  With cp < c it keeps the first cp channels (unpadding). */
cudaError_t vt_cuk_pad_channels(cudaStream_t s, const void *in, vt_cuk_type it, size_t rows,
                                int c, int cp, void *out, vt_cuk_type ot);

/* y (rows, k) = act(y + b[k]); b is f32; act = ReLU when relu != 0. */
cudaError_t vt_cuk_bias_act(cudaStream_t s, void *y, vt_cuk_type yt, const float *b,
                            size_t rows, int k, int relu);

/* dy[i] = y[i] > 0 ? dy[i] : 0, i < n. */
cudaError_t vt_cuk_relu_bwd(cudaStream_t s, const void *y, vt_cuk_type yt, void *dy,
                            vt_cuk_type dyt, size_t n);

/* 2x2/2 max-pool, NHWC, x (n, h, w, c) -> y (n, h/2, w/2, c), both of type t. */
cudaError_t vt_cuk_maxpool_fwd(cudaStream_t s, const void *x, void *y, vt_cuk_type t, int n,
                               int h, int w, int c);

/* dx (n, h, w, c) of type gt, fully overwritten: dy routed to the first
 * element of each window equal to its maximum y, zero elsewhere. */
cudaError_t vt_cuk_maxpool_bwd(cudaStream_t s, const void *x, const void *y, vt_cuk_type t,
                               const void *dy, void *dx, vt_cuk_type gt, int n, int h, int w,
                               int c);

/* Floats of scratch vt_cuk_colsum needs for a (rows, cols) matrix. */
size_t vt_cuk_colsum_scratch(size_t rows, int cols);

/* out[j] = sum over rows of a[r][j] (f32 out), deterministic two-pass
 * reduction through scratch (vt_cuk_colsum_scratch floats). */
cudaError_t vt_cuk_colsum(cudaStream_t s, const void *a, vt_cuk_type at, size_t rows, int cols,
                          float *scratch, float *out);

/* mask[i] = u(i) < rate ? 0 : keep, x[i] *= mask[i], where u(i) is
 * vt_rng_uniform(seed, stream, i) and base = vt_rng_mix(seed ^
 * vt_rng_mix(stream)) is precomputed by the caller. */
cudaError_t vt_cuk_dropout_fwd(cudaStream_t s, void *x, vt_cuk_type xt, float *mask, size_t n,
                               float rate, float keep, uint64_t base);

/* dy[i] *= mask[i]. */
cudaError_t vt_cuk_dropout_bwd(cudaStream_t s, const float *mask, void *dy, vt_cuk_type t,
                               size_t n);

/* Softmax cross-entropy over logits (n, c) with labels (n); dlogits and
 * probs (may be NULL) as in the CPU backend; the sums go to *res (device). */
cudaError_t vt_cuk_softmax_xent(cudaStream_t s, const void *logits, vt_cuk_type lt,
                                const int32_t *labels, int n, int c, void *dlogits,
                                vt_cuk_type dt, float grad_scale, void *probs,
                                vt_cuk_type pt, vt_cuk_xent *res);

/* *acc += *res (loss and correct added, bad labels counted): one thread. */
cudaError_t vt_cuk_xent_add(cudaStream_t s, const vt_cuk_xent *res, vt_cuk_xent *acc);

/* For CUDA graphs: node is the kernel node that one vt_cuk_sgd (or
 * vt_cuk_dropout_fwd) call made while its stream was being captured; these
 * set that node's scalar arguments in the instantiated graph exec to new
 * values, the pointers and sizes staying as recorded. */
cudaError_t vt_cuk_sgd_set(cudaGraphExec_t exec, cudaGraphNode_t node, float lr, float momentum,
                           float weight_decay, int nesterov);
cudaError_t vt_cuk_dropout_set(cudaGraphExec_t exec, cudaGraphNode_t node, float rate, float keep,
                               uint64_t base);

/* Keras SGD on f32 w, g, v (n elements); when shadow is not NULL it also
 * receives bf16(w) after the update (the weights' bf16 copy stays fresh
 * without a separate pass). */
cudaError_t vt_cuk_sgd(cudaStream_t s, float *w, const float *g, float *v, size_t n, float lr,
                       float momentum, float weight_decay, int nesterov, void *shadow);

/* y (n, h, wd, k) = act(conv3x3_same(x, w) + b) for a layer with few
 * input channels (1 <= c <= 4, VGG's first) and k a multiple of 64: a
 * direct convolution on the FP32 pipes, x and y both of type t, w (k,3,3,c)
 * and b f32; act = ReLU when relu != 0.  cudaErrorInvalidValue for other
 * shapes. */
cudaError_t vt_cuk_conv_small_fwd(cudaStream_t s, const void *x, vt_cuk_type t, const float *w,
                                  const float *b, void *y, int n, int h, int wd, int c, int k,
                                  int relu);

/* Direct (slow) 3x3 same convolutions with f32 weights, for shapes no
 * cuDNN algorithm accepts: forward with bias and optional ReLU, the input
 * gradient, and the weight gradient (dw f32, overwritten). */
cudaError_t vt_cuk_conv_fwd_ref(cudaStream_t s, const void *x, vt_cuk_type xt, const float *w,
                                const float *b, void *y, vt_cuk_type yt, int n, int h, int wd,
                                int c, int k, int relu);
cudaError_t vt_cuk_conv_bwd_data_ref(cudaStream_t s, const void *dy, vt_cuk_type dyt,
                                     const float *w, void *dx, vt_cuk_type dxt, int n, int h,
                                     int wd, int c, int k);
cudaError_t vt_cuk_conv_bwd_filter_ref(cudaStream_t s, const void *x, vt_cuk_type xt,
                                       const void *dy, vt_cuk_type dyt, float *dw, int n, int h,
                                       int wd, int c, int k);

#endif

/* cpu_backend.c - the CPU reference backend: fp32, NHWC, OpenBLAS GEMM.
 *
 * Written to be read and trusted rather than to be fast: every convolution is
 * im2col + one SGEMM (which is where the time goes, on all cores), everything
 * else is a plain loop.  The CUDA backend is checked against this one.
 *
 * A 3x3 "same" convolution over NHWC input is a matrix product: each output
 * pixel (n,h,w) is one row of a patch matrix `col` (rows, 9*C) holding its
 * 3x3 neighbourhood in (kh, kw, c) order - exactly the order of a KRSC weight
 * row - so y (rows, K) = col . W^T with W viewed as (K, 9*C).  Rows are
 * processed in chunks so the patch matrix stays under VT_CPU_COL_FLOATS.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../common/bilinear.h"
#include "../../common/error.h"
#include "../../common/rng.h"
#include "../backend_impl.h"

#define VT_CPU_COL_FLOATS ((size_t)8 << 20) /* 32 MiB patch buffer at most */

typedef struct {
    float *col; /* (rows, 9*C) patch matrix scratch, VT_CPU_COL_FLOATS */
    int threads;
} vt_cpu;

static float *vt__f(const vt_tensor *t) { return (float *)t->data; }

static int vt__cpu_alloc(vt_backend *be, vt_tensor *t)
{
    (void)be;
    if (t->dtype == VT_BF16)
        return vt_error_set(VT_EUNSUPPORTED, "the CPU backend computes in fp32 only");
    t->data = calloc(t->capacity, vt_dtype_size(t->dtype));
    if (!t->data)
        return vt_error_set(VT_ENOMEM, "out of host memory allocating %zu bytes",
                            t->capacity * vt_dtype_size(t->dtype));
    return 0;
}

static void vt__cpu_release(vt_backend *be, vt_tensor *t)
{
    (void)be;
    if (!t->parent)
        free(t->data);
}

static int vt__cpu_upload(vt_backend *be, vt_tensor *t, const void *host)
{
    (void)be;
    memcpy(t->data, host, t->numel * vt_dtype_size(t->dtype));
    return 0;
}

static int vt__cpu_download(vt_backend *be, const vt_tensor *t, void *host)
{
    (void)be;
    memcpy(host, t->data, t->numel * vt_dtype_size(t->dtype));
    return 0;
}

static int vt__cpu_zero(vt_backend *be, vt_tensor *t)
{
    (void)be;
    memset(t->data, 0, t->numel * vt_dtype_size(t->dtype));
    return 0;
}

static int vt__cpu_copy(vt_backend *be, vt_tensor *dst, const vt_tensor *src)
{
    (void)be;
    memcpy(dst->data, src->data, src->numel * vt_dtype_size(src->dtype));
    return 0;
}

static int vt__cpu_copy_bytes(vt_backend *be, vt_tensor *dst, size_t dst_off,
                              const vt_tensor *src, size_t src_off, size_t n)
{
    (void)be;
    memmove((char *)dst->data + dst_off, (const char *)src->data + src_off, n);
    return 0;
}

static int vt__cpu_move_rows(vt_backend *be, vt_tensor *dst, const int *dst_rows,
                             const vt_tensor *src, const int *src_rows, int n,
                             size_t row_bytes)
{
    (void)be;
    for (int i = 0; i < n; i++)
        memcpy((char *)dst->data + (size_t)(dst_rows ? dst_rows[i] : i) * row_bytes,
               (const char *)src->data + (size_t)(src_rows ? src_rows[i] : i) * row_bytes,
               row_bytes);
    return 0;
}

static int vt__cpu_sync(vt_backend *be)
{
    (void)be;
    return 0;
}

static vt_dtype vt__cpu_act_dtype(const vt_backend *be, const char *precision)
{
    (void)be;
    (void)precision;
    return VT_F32;
}

static void vt__cpu_destroy(vt_backend *be)
{
    vt_cpu *cpu = be->impl;
    if (cpu)
        free(cpu->col);
    free(cpu);
}

/* One RGB pixel -> its three preprocessed input values. */
static void vt__cpu_prep_pixel(const uint8_t *rgb, vt_preprocess prep, float *o)
{
    static const float torch_mean[3] = {0.485f, 0.456f, 0.406f};
    static const float torch_std[3] = {0.229f, 0.224f, 0.225f};
    static const float caffe_mean[3] = {103.939f, 116.779f, 123.68f}; /* B, G, R */

    if (prep == VT_PREP_CAFFE) {
        for (int c = 0; c < 3; c++)
            o[c] = (float)rgb[2 - c] - caffe_mean[c];
    } else {
        for (int c = 0; c < 3; c++)
            o[c] = ((float)rgb[c] / 255.0f - torch_mean[c]) / torch_std[c];
    }
}

static int vt__cpu_images_to_input(vt_backend *be, const uint8_t *images, int n,
                                   int h, int w, vt_preprocess prep, vt_tensor *x)
{
    float *out = vt__f(x);
    size_t pixels = (size_t)n * h * w;
    (void)be;

    for (size_t p = 0; p < pixels; p++)
        vt__cpu_prep_pixel(images + 3 * p, prep, out + 3 * p);
    return 0;
}

/* Per output pixel, the bilinear rule of common/bilinear.h evaluated
 * directly (no row reuse: this path exists to check the device's). */
static int vt__cpu_images_resize(vt_backend *be, const uint8_t *images, size_t bytes,
                                 const vt_image_box *boxes, int n, vt_preprocess prep,
                                 vt_tensor *x)
{
    int S = x->dims[1];
    float *out = vt__f(x);
    (void)be;
    (void)bytes;

    for (int i = 0; i < n; i++) {
        const vt_image_box *bx = &boxes[i];
        const uint8_t *src = images + bx->offset;
        float sx = (float)bx->sw / (float)bx->rw, sy = (float)bx->sh / (float)bx->rh;
        for (int y = 0; y < S; y++) {
            int y0, y1;
            float b = vt_bilinear_tap(bx->oy + y, bx->sh, sy, &y0, &y1), a = 1.0f - b;
            const uint8_t *r0 = src + (size_t)y0 * bx->sw * 3, *r1 = src + (size_t)y1 * bx->sw * 3;
            for (int xo = 0; xo < S; xo++) {
                int x0, x1, xs = bx->ox + (bx->flip ? S - 1 - xo : xo);
                float d = vt_bilinear_tap(xs, bx->sw, sx, &x0, &x1), c = 1.0f - d;
                uint8_t rgb[3];
                for (int ch = 0; ch < 3; ch++)
                    rgb[ch] = vt_bilinear_out(a, c * r0[3 * x0 + ch] + d * r0[3 * x1 + ch], b,
                                              c * r1[3 * x0 + ch] + d * r1[3 * x1 + ch]);
                vt__cpu_prep_pixel(rgb, prep, out + (((size_t)i * S + y) * S + xo) * 3);
            }
        }
    }
    return 0;
}

/* Fills col (rows, 9*C) with the 3x3 patches of output rows [r0, r0+rows) of
 * x (N,H,W,C); out-of-image taps are zero. */
static void vt__im2col(const float *x, int H, int W, int C, size_t r0, size_t rows,
                       float *col)
{
    for (size_t r = 0; r < rows; r++) {
        size_t pix = r0 + r;
        int wo = (int)(pix % (size_t)W), ho = (int)(pix / (size_t)W % (size_t)H);
        size_t n = pix / ((size_t)W * H);
        float *dst = col + r * 9 * (size_t)C;
        for (int kh = 0; kh < 3; kh++) {
            int hi = ho + kh - 1;
            for (int kw = 0; kw < 3; kw++, dst += C) {
                int wi = wo + kw - 1;
                if (hi < 0 || hi >= H || wi < 0 || wi >= W)
                    memset(dst, 0, (size_t)C * sizeof *dst);
                else
                    memcpy(dst, x + ((n * H + hi) * W + wi) * C, (size_t)C * sizeof *dst);
            }
        }
    }
}

/* Adds the patches of col back into dx: the transpose of vt__im2col. */
static void vt__col2im(const float *col, int H, int W, int C, size_t r0, size_t rows,
                       float *dx)
{
    for (size_t r = 0; r < rows; r++) {
        size_t pix = r0 + r;
        int wo = (int)(pix % (size_t)W), ho = (int)(pix / (size_t)W % (size_t)H);
        size_t n = pix / ((size_t)W * H);
        const float *src = col + r * 9 * (size_t)C;
        for (int kh = 0; kh < 3; kh++) {
            int hi = ho + kh - 1;
            for (int kw = 0; kw < 3; kw++, src += C) {
                int wi = wo + kw - 1;
                if (hi < 0 || hi >= H || wi < 0 || wi >= W)
                    continue;
                float *d = dx + ((n * H + hi) * W + wi) * C;
                for (int c = 0; c < C; c++)
                    d[c] += src[c];
            }
        }
    }
}

/* Rows of the patch matrix that fit the scratch buffer for C input channels. */
static size_t vt__chunk_rows(int C)
{
    size_t rows = VT_CPU_COL_FLOATS / (9 * (size_t)C);
    return rows ? rows : 1;
}

/* Forward convolution, one image at a time: each image's rows are computed
 * in GEMM calls of the same shapes whatever batch the image is in, so an
 * image's features are bit-identical across batches (OpenBLAS's result for a
 * row can depend on how many rows a call has).  The feature cache and
 * resumed jobs rely on that. */
static int vt__cpu_conv_fwd(vt_backend *be, const vt_tensor *x, const vt_tensor *w,
                            const vt_tensor *b, vt_tensor *y, int relu)
{
    vt_cpu *cpu = be->impl;
    int H = x->dims[1], W = x->dims[2], C = x->dims[3], K = w->dims[0];
    size_t per = (size_t)H * W, step = vt__chunk_rows(C);
    const float *bias = vt__f(b);

    for (size_t img = 0; img < (size_t)x->dims[0]; img++)
        for (size_t r = 0; r < per; r += step) {
            size_t r0 = img * per + r, rows = per - r < step ? per - r : step;
            float *yr = vt__f(y) + r0 * K;
            vt__im2col(vt__f(x), H, W, C, r0, rows, cpu->col);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, K, 9 * C,
                        1.0f, cpu->col, 9 * C, vt__f(w), 9 * C, 0.0f, yr, K);
            for (size_t i = 0; i < rows; i++)
                for (int k = 0; k < K; k++) {
                    float v = yr[i * K + k] + bias[k];
                    yr[i * K + k] = relu && v < 0.0f ? 0.0f : v;
                }
        }
    return 0;
}

static int vt__cpu_conv_bwd_data(vt_backend *be, const vt_tensor *dy,
                                 const vt_tensor *w, vt_tensor *dx)
{
    vt_cpu *cpu = be->impl;
    int H = dy->dims[1], W = dy->dims[2], K = dy->dims[3], C = w->dims[3];
    size_t total = (size_t)dy->dims[0] * H * W, step = vt__chunk_rows(C);

    memset(dx->data, 0, dx->numel * sizeof(float));
    for (size_t r0 = 0; r0 < total; r0 += step) {
        size_t rows = total - r0 < step ? total - r0 : step;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, 9 * C, K,
                    1.0f, vt__f(dy) + r0 * K, K, vt__f(w), 9 * C, 0.0f, cpu->col,
                    9 * C);
        vt__col2im(cpu->col, H, W, C, r0, rows, vt__f(dx));
    }
    return 0;
}

static int vt__cpu_conv_bwd_filter(vt_backend *be, const vt_tensor *x,
                                   const vt_tensor *dy, vt_tensor *dw, vt_tensor *db)
{
    vt_cpu *cpu = be->impl;
    int H = x->dims[1], W = x->dims[2], C = x->dims[3], K = dy->dims[3];
    size_t total = (size_t)x->dims[0] * H * W, step = vt__chunk_rows(C);
    const float *g = vt__f(dy);
    float *gb = vt__f(db);

    for (size_t r0 = 0; r0 < total; r0 += step) {
        size_t rows = total - r0 < step ? total - r0 : step;
        vt__im2col(vt__f(x), H, W, C, r0, rows, cpu->col);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, 9 * C, (int)rows,
                    1.0f, g + r0 * K, K, cpu->col, 9 * C, r0 ? 1.0f : 0.0f,
                    vt__f(dw), 9 * C);
    }
    for (int k = 0; k < K; k++) {
        double s = 0.0;
        for (size_t r = 0; r < total; r++)
            s += g[r * K + k];
        gb[k] = (float)s;
    }
    return 0;
}

static int vt__cpu_relu_bwd(vt_backend *be, const vt_tensor *y, vt_tensor *dy)
{
    const float *yv = vt__f(y);
    float *g = vt__f(dy);
    (void)be;
    for (size_t i = 0; i < dy->numel; i++)
        if (!(yv[i] > 0.0f))
            g[i] = 0.0f;
    return 0;
}

static int vt__cpu_maxpool_fwd(vt_backend *be, const vt_tensor *x, vt_tensor *y)
{
    int N = x->dims[0], H = x->dims[1], W = x->dims[2], C = x->dims[3];
    const float *xv = vt__f(x);
    float *yv = vt__f(y);
    (void)be;
    for (int n = 0; n < N; n++)
        for (int ho = 0; ho < H / 2; ho++)
            for (int wo = 0; wo < W / 2; wo++) {
                const float *p = xv + (((size_t)n * H + 2 * ho) * W + 2 * wo) * C;
                const float *q[4] = {p, p + C, p + (size_t)W * C, p + (size_t)W * C + C};
                float *o = yv + (((size_t)n * (H / 2) + ho) * (W / 2) + wo) * C;
                for (int c = 0; c < C; c++) {
                    float m = q[0][c];
                    for (int k = 1; k < 4; k++)
                        if (q[k][c] > m)
                            m = q[k][c];
                    o[c] = m;
                }
            }
    return 0;
}

static int vt__cpu_maxpool_bwd(vt_backend *be, const vt_tensor *x, const vt_tensor *y,
                               const vt_tensor *dy, vt_tensor *dx)
{
    int N = x->dims[0], H = x->dims[1], W = x->dims[2], C = x->dims[3];
    const float *xv = vt__f(x), *yv = vt__f(y), *g = vt__f(dy);
    float *dxv = vt__f(dx);
    (void)be;
    memset(dxv, 0, dx->numel * sizeof *dxv);
    for (int n = 0; n < N; n++)
        for (int ho = 0; ho < H / 2; ho++)
            for (int wo = 0; wo < W / 2; wo++) {
                size_t base = (((size_t)n * H + 2 * ho) * W + 2 * wo) * C;
                size_t off[4] = {base, base + C, base + (size_t)W * C,
                                 base + (size_t)W * C + C};
                size_t o = (((size_t)n * (H / 2) + ho) * (W / 2) + wo) * C;
                for (int c = 0; c < C; c++)
                    for (int k = 0; k < 4; k++)
                        if (xv[off[k] + c] == yv[o + c]) {
                            dxv[off[k] + c] = g[o + c];
                            break;
                        }
            }
    return 0;
}

static int vt__cpu_dense_fwd(vt_backend *be, const vt_tensor *x, const vt_tensor *w,
                             const vt_tensor *b, vt_tensor *y, int relu)
{
    int N = x->dims[0], OUT = w->dims[0], IN = w->dims[1];
    float *yv = vt__f(y);
    const float *bias = vt__f(b);
    (void)be;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OUT, IN, 1.0f, vt__f(x),
                IN, vt__f(w), IN, 0.0f, yv, OUT);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) {
            float v = yv[(size_t)n * OUT + o] + bias[o];
            yv[(size_t)n * OUT + o] = relu && v < 0.0f ? 0.0f : v;
        }
    return 0;
}

static int vt__cpu_dense_bwd(vt_backend *be, const vt_tensor *x, const vt_tensor *w,
                             const vt_tensor *dy, vt_tensor *dx, vt_tensor *dw,
                             vt_tensor *db)
{
    int N = x->dims[0], OUT = w->dims[0], IN = w->dims[1];
    const float *g = vt__f(dy);
    float *gb = vt__f(db);
    (void)be;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OUT, IN, N, 1.0f, g, OUT,
                vt__f(x), IN, 0.0f, vt__f(dw), IN);
    for (int o = 0; o < OUT; o++) {
        double s = 0.0;
        for (int n = 0; n < N; n++)
            s += g[(size_t)n * OUT + o];
        gb[o] = (float)s;
    }
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IN, OUT, 1.0f, g,
                    OUT, vt__f(w), IN, 0.0f, vt__f(dx), IN);
    return 0;
}

static int vt__cpu_dropout_fwd(vt_backend *be, vt_tensor *x, vt_tensor *mask,
                               float rate, uint64_t seed, uint64_t stream)
{
    float keep_scale = 1.0f / (1.0f - rate);
    float *xv = vt__f(x), *m = vt__f(mask);
    (void)be;
    for (size_t i = 0; i < x->numel; i++) {
        m[i] = vt_rng_uniform(seed, stream, i) < rate ? 0.0f : keep_scale;
        xv[i] *= m[i];
    }
    return 0;
}

static int vt__cpu_dropout_bwd(vt_backend *be, const vt_tensor *mask, vt_tensor *dy)
{
    const float *m = vt__f(mask);
    float *g = vt__f(dy);
    (void)be;
    for (size_t i = 0; i < dy->numel; i++)
        g[i] *= m[i];
    return 0;
}

static int vt__cpu_softmax_xent(vt_backend *be, const vt_tensor *logits,
                                const vt_tensor *labels, vt_tensor *dlogits,
                                float grad_scale, vt_tensor *probs, vt_xent_sums *sums)
{
    int N = logits->dims[0], C = logits->dims[1];
    const float *z = vt__f(logits);
    const int32_t *lab = labels->data;
    (void)be;

    for (int n = 0; n < N; n++) {
        const float *zr = z + (size_t)n * C;
        int best = 0, y = lab[n];
        double sum = 0.0;
        if (y < 0 || y >= C)
            return vt_error_set(VT_EINVAL, "label %d outside 0..%d", y, C - 1);
        for (int c = 1; c < C; c++)
            if (zr[c] > zr[best])
                best = c;
        for (int c = 0; c < C; c++)
            sum += exp((double)zr[c] - zr[best]);
        if (sums) { /* the CPU delivers at once */
            sums->loss += log(sum) + zr[best] - zr[y];
            sums->correct += best == y;
        }
        for (int c = 0; c < C; c++) {
            float p = (float)(exp((double)zr[c] - zr[best]) / sum);
            if (probs)
                vt__f(probs)[(size_t)n * C + c] = p;
            if (dlogits)
                vt__f(dlogits)[(size_t)n * C + c] = (p - (c == y ? 1.0f : 0.0f)) * grad_scale;
        }
    }
    return 0;
}

static int vt__cpu_sgd_update(vt_backend *be, vt_tensor *w, const vt_tensor *g,
                              vt_tensor *v, const vt_sgd_args *a)
{
    float *wv = vt__f(w), *vv = vt__f(v);
    const float *gv = vt__f(g);
    (void)be;
    for (size_t i = 0; i < w->numel; i++) {
        float grad = gv[i] + a->weight_decay * wv[i];
        vv[i] = a->momentum * vv[i] - a->lr * grad;
        if (a->nesterov)
            wv[i] = wv[i] + a->momentum * vv[i] - a->lr * grad;
        else
            wv[i] = wv[i] + vv[i];
    }
    return 0;
}

static const vt_backend_ops vt__cpu_ops = {
    .alloc = vt__cpu_alloc,
    .release = vt__cpu_release,
    .upload = vt__cpu_upload,
    .download = vt__cpu_download,
    .zero = vt__cpu_zero,
    .copy = vt__cpu_copy,
    .copy_bytes = vt__cpu_copy_bytes,
    .move_rows = vt__cpu_move_rows,
    .sync = vt__cpu_sync,
    .act_dtype = vt__cpu_act_dtype,
    .destroy = vt__cpu_destroy,
    .images_to_input = vt__cpu_images_to_input,
    .images_resize = vt__cpu_images_resize,
    .conv_fwd = vt__cpu_conv_fwd,
    .conv_bwd_data = vt__cpu_conv_bwd_data,
    .conv_bwd_filter = vt__cpu_conv_bwd_filter,
    .relu_bwd = vt__cpu_relu_bwd,
    .maxpool_fwd = vt__cpu_maxpool_fwd,
    .maxpool_bwd = vt__cpu_maxpool_bwd,
    .dense_fwd = vt__cpu_dense_fwd,
    .dense_bwd = vt__cpu_dense_bwd,
    .dropout_fwd = vt__cpu_dropout_fwd,
    .dropout_bwd = vt__cpu_dropout_bwd,
    .softmax_xent = vt__cpu_softmax_xent,
    .sgd_update = vt__cpu_sgd_update,
};

int vt_cpu_backend_init(vt_backend *be, int threads)
{
    vt_cpu *cpu = calloc(1, sizeof *cpu);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    if (!cpu || !(cpu->col = malloc(VT_CPU_COL_FLOATS * sizeof(float)))) {
        free(cpu);
        return vt_error_set(VT_ENOMEM, "out of memory creating the CPU backend");
    }
    cpu->threads = threads > 0 ? threads : (int)(cores > 0 ? cores : 1);
    be->mem_total = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    openblas_set_num_threads(cpu->threads);
    be->ops = &vt__cpu_ops;
    be->impl = cpu;
    snprintf(be->name, sizeof be->name, "cpu");
    snprintf(be->device, sizeof be->device, "CPU, %d thread%s, OpenBLAS fp32",
             cpu->threads, cpu->threads == 1 ? "" : "s");
    return 0;
}

/* cuda_kernels.cu - the CUDA backend's own kernels, each behind a host launch
 * wrapper declared in cuda_impl.h.
 *
 * Convolutions and matrix products go to cuDNN and cuBLASLt (cuda_backend.cu);
 * what is here is the memory-bound rest: preprocessing, ReLU backward,
 * max-pooling, bias reductions, dropout, softmax cross-entropy, SGD and
 * dtype conversions, plus direct convolutions: reference ones used only
 * when cuDNN offers no algorithm for a shape, and the first layer's
 * (conv_small.cuh), which runs where it beats cuDNN (see cuda_backend.cu).
 * Hot kernels (pooling, ReLU backward, bias+ReLU, conversions, SGD) move 16
 * bytes per thread and access where the pointers and channel counts allow
 * it and fall back to one element per thread otherwise; all use
 * grid-stride loops.
 *
 * Bit-exactness with the CPU reference where it is cheap: the SGD update,
 * preprocessing and dropout use explicitly rounded operations (no FMA
 * contraction), pooling compares in the CPU's order, and the dropout mask
 * uses the same counter-based generator (common/rng.h, duplicated below as
 * device code).
 */
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>

#include "conv_small.cuh"
#include "cuda_impl.h"

namespace {

typedef __nv_bfloat16 bf16;

const int kThreads = 256;

/* Blocks for a grid-stride loop over `work` items. */
unsigned blocks_for(size_t work)
{
    size_t b = (work + kThreads - 1) / kThreads;
    if (b > ((size_t)1 << 20))
        b = (size_t)1 << 20;
    return b ? (unsigned)b : 1u;
}

bool aligned(const void *p, size_t bytes)
{
    return ((uintptr_t)p % bytes) == 0;
}

__device__ __forceinline__ size_t gtid() { return (size_t)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ size_t gstride() { return (size_t)gridDim.x * blockDim.x; }

__device__ __forceinline__ float tof(float v) { return v; }
__device__ __forceinline__ float tof(bf16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T fromf(float v);
template <> __device__ __forceinline__ float fromf<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16 fromf<bf16>(float v) { return __float2bfloat16_rn(v); }

/* V elements loaded or stored as one aligned access. */
template <typename T, int V> struct alignas(sizeof(T) * V) vec {
    T v[V];
};

template <typename T, int V> __device__ __forceinline__ vec<T, V> vload(const T *p)
{
    return *reinterpret_cast<const vec<T, V> *>(p);
}

template <typename T, int V> __device__ __forceinline__ void vstore(T *p, const vec<T, V> &a)
{
    *reinterpret_cast<vec<T, V> *>(p) = a;
}

/* Run-time typed access for the cold kernels. */
__device__ __forceinline__ float ldt(const void *p, size_t i, vt_cuk_type t)
{
    return t == VT_CUK_BF16 ? __bfloat162float(static_cast<const bf16 *>(p)[i])
                            : static_cast<const float *>(p)[i];
}

__device__ __forceinline__ void stt(void *p, size_t i, float v, vt_cuk_type t)
{
    if (t == VT_CUK_BF16)
        static_cast<bf16 *>(p)[i] = __float2bfloat16_rn(v);
    else
        static_cast<float *>(p)[i] = v;
}

/* common/rng.h's SplitMix64 finaliser, as device code. */
__device__ __forceinline__ uint64_t rng_mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- kernels ----------------------------------------------------------- */

__global__ void k_probe() {}

template <typename D, typename S, int V>
__global__ void k_convert(D *dst, const S *src, size_t n)
{
    size_t nv = n / V;
    for (size_t i = gtid(); i < nv; i += gstride()) {
        vec<S, V> a = vload<S, V>(src + i * V);
        vec<D, V> b;
#pragma unroll
        for (int j = 0; j < V; j++)
            b.v[j] = fromf<D>(tof(a.v[j]));
        vstore<D, V>(dst + i * V, b);
    }
    for (size_t i = nv * V + gtid(); i < n; i += gstride())
        dst[i] = fromf<D>(tof(src[i]));
}

/* Output channel c of the preprocessed RGB pixel rgb: caffe (channel c is
 * B, G, R: input channel 2 - c, mean subtracted) or torch. */
__device__ __forceinline__ float prep_value(const uint8_t *rgb, int c, int caffe)
{
    if (caffe) {
        float mean = c == 0 ? 103.939f : c == 1 ? 116.779f : 123.68f;
        return __fsub_rn((float)rgb[2 - c], mean);
    }
    float mean = c == 0 ? 0.485f : c == 1 ? 0.456f : 0.406f;
    float sd = c == 0 ? 0.229f : c == 1 ? 0.224f : 0.225f;
    return __fdiv_rn(__fsub_rn(__fdiv_rn((float)rgb[c], 255.0f), mean), sd);
}

template <typename T>
__global__ void k_images(const uint8_t *img, size_t total, int caffe, T *x)
{
    for (size_t i = gtid(); i < total; i += gstride()) {
        size_t p = i / 3;
        x[i] = fromf<T>(prep_value(img + p * 3, (int)(i - p * 3), caffe));
    }
}

/* common/bilinear.h's vt_bilinear_tap with every operation rounded as the
 * host's (no fused multiply-add). */
__device__ __forceinline__ float bilinear_tap(int d, int sn, float scale, int *i0, int *i1)
{
    float s = __fsub_rn(__fmul_rn(__fadd_rn((float)d, 0.5f), scale), 0.5f);
    if (s < 0.0f)
        s = 0.0f;
    int i = (int)s;
    if (i > sn - 1)
        i = sn - 1;
    *i0 = i;
    *i1 = i < sn - 1 ? i + 1 : i;
    return __fsub_rn(s, (float)i);
}

/* One thread per output pixel: resize (bilinear.h's rule), window, mirror,
 * preprocess.  x is (n, S, S, 3). */
template <typename T>
__global__ void k_images_resize(const uint8_t *img, const vt_image_box *boxes, int n, int S,
                                int caffe, T *x)
{
    size_t total = (size_t)n * S * S;
    for (size_t p = gtid(); p < total; p += gstride()) {
        int i = (int)(p / ((size_t)S * S)), r = (int)(p - (size_t)i * S * S);
        int y = r / S, xo = r - y * S;
        vt_image_box bx = boxes[i];
        const uint8_t *src = img + bx.offset;
        int y0, y1, x0, x1;
        float b = bilinear_tap(bx.oy + y, bx.sh, __fdiv_rn((float)bx.sh, (float)bx.rh), &y0, &y1);
        float d = bilinear_tap(bx.ox + (bx.flip ? S - 1 - xo : xo), bx.sw,
                               __fdiv_rn((float)bx.sw, (float)bx.rw), &x0, &x1);
        float a = __fsub_rn(1.0f, b), c = __fsub_rn(1.0f, d);
        const uint8_t *r0 = src + (size_t)y0 * bx.sw * 3, *r1 = src + (size_t)y1 * bx.sw * 3;
        uint8_t rgb[3];
        for (int ch = 0; ch < 3; ch++) {
            float h0 = __fadd_rn(__fmul_rn(c, (float)r0[3 * x0 + ch]),
                                 __fmul_rn(d, (float)r0[3 * x1 + ch]));
            float h1 = __fadd_rn(__fmul_rn(c, (float)r1[3 * x0 + ch]),
                                 __fmul_rn(d, (float)r1[3 * x1 + ch]));
            float v = __fadd_rn(__fadd_rn(__fmul_rn(a, h0), __fmul_rn(b, h1)), 0.5f);
            rgb[ch] = v <= 0.0f ? 0 : v >= 255.0f ? 255 : (uint8_t)v;
        }
        for (int ch = 0; ch < 3; ch++)
            x[p * 3 + ch] = fromf<T>(prep_value(rgb, ch, caffe));
    }
}

__global__ void k_pad_channels(const void *in, vt_cuk_type it, size_t rows, int c, int cp,
                               void *out, vt_cuk_type ot)
{
    size_t total = rows * (size_t)cp;
    for (size_t i = gtid(); i < total; i += gstride()) {
        size_t r = i / (size_t)cp;
        int j = (int)(i - r * (size_t)cp);
        stt(out, i, j < c ? ldt(in, r * (size_t)c + (size_t)j, it) : 0.0f, ot);
    }
}

/* k % V == 0, so a vector never straddles two rows. */
template <typename T, int V>
__global__ void k_bias_act(T *y, const float *b, size_t rows, int k, int relu)
{
    size_t nv = rows * (size_t)k / V;
    for (size_t i = gtid(); i < nv; i += gstride()) {
        int ch = (int)((i * V) % (size_t)k);
        vec<T, V> a = vload<T, V>(y + i * V);
#pragma unroll
        for (int j = 0; j < V; j++) {
            float v = tof(a.v[j]) + b[ch + j];
            a.v[j] = fromf<T>(relu && v < 0.0f ? 0.0f : v);
        }
        vstore<T, V>(y + i * V, a);
    }
}

template <typename TY, typename TD, int V>
__global__ void k_relu_bwd(const TY *y, TD *dy, size_t n)
{
    size_t nv = n / V;
    for (size_t i = gtid(); i < nv; i += gstride()) {
        vec<TY, V> a = vload<TY, V>(y + i * V);
        vec<TD, V> d = vload<TD, V>(dy + i * V);
#pragma unroll
        for (int j = 0; j < V; j++)
            if (!(tof(a.v[j]) > 0.0f))
                d.v[j] = fromf<TD>(0.0f);
        vstore<TD, V>(dy + i * V, d);
    }
    for (size_t i = nv * V + gtid(); i < n; i += gstride())
        if (!(tof(y[i]) > 0.0f))
            dy[i] = fromf<TD>(0.0f);
}

/* One thread per output pixel and group of V channels (c % V == 0). */
template <typename T, int V>
__global__ void k_maxpool_fwd(const T *x, T *y, int n, int h, int w, int c)
{
    int groups = c / V, ho_n = h / 2, wo_n = w / 2;
    size_t total = (size_t)n * ho_n * wo_n * groups;
    for (size_t i = gtid(); i < total; i += gstride()) {
        int g = (int)(i % (size_t)groups);
        size_t p = i / (size_t)groups;
        int wo = (int)(p % (size_t)wo_n);
        size_t q = p / (size_t)wo_n;
        int ho = (int)(q % (size_t)ho_n);
        size_t nn = q / (size_t)ho_n;
        const T *base = x + ((nn * h + 2 * ho) * (size_t)w + 2 * wo) * c + (size_t)g * V;
        vec<T, V> q0 = vload<T, V>(base), q1 = vload<T, V>(base + c);
        vec<T, V> q2 = vload<T, V>(base + (size_t)w * c), q3 = vload<T, V>(base + (size_t)w * c + c);
        vec<T, V> o;
#pragma unroll
        for (int j = 0; j < V; j++) {
            /* the CPU's order: m = q0; m = q_k when q_k > m */
            float m = tof(q0.v[j]), t;
            t = tof(q1.v[j]);
            if (t > m)
                m = t;
            t = tof(q2.v[j]);
            if (t > m)
                m = t;
            t = tof(q3.v[j]);
            if (t > m)
                m = t;
            o.v[j] = fromf<T>(m); /* exact: m is one of the inputs */
        }
        vstore<T, V>(y + p * c + (size_t)g * V, o);
    }
}

template <typename T, typename G, int V>
__global__ void k_maxpool_bwd(const T *x, const T *y, const G *dy, G *dx, int n, int h, int w,
                              int c)
{
    int groups = c / V, ho_n = h / 2, wo_n = w / 2;
    size_t total = (size_t)n * ho_n * wo_n * groups;
    for (size_t i = gtid(); i < total; i += gstride()) {
        int g = (int)(i % (size_t)groups);
        size_t p = i / (size_t)groups;
        int wo = (int)(p % (size_t)wo_n);
        size_t q = p / (size_t)wo_n;
        int ho = (int)(q % (size_t)ho_n);
        size_t nn = q / (size_t)ho_n;
        size_t off = ((nn * h + 2 * ho) * (size_t)w + 2 * wo) * c + (size_t)g * V;
        size_t offs[4] = {off, off + c, off + (size_t)w * c, off + (size_t)w * c + c};
        vec<T, V> q0 = vload<T, V>(x + offs[0]), q1 = vload<T, V>(x + offs[1]);
        vec<T, V> q2 = vload<T, V>(x + offs[2]), q3 = vload<T, V>(x + offs[3]);
        vec<T, V> yy = vload<T, V>(y + p * c + (size_t)g * V);
        vec<G, V> gg = vload<G, V>(dy + p * c + (size_t)g * V);
        vec<G, V> d0, d1, d2, d3;
#pragma unroll
        for (int j = 0; j < V; j++) {
            float m = tof(yy.v[j]);
            int k = tof(q0.v[j]) == m ? 0 : tof(q1.v[j]) == m ? 1 : tof(q2.v[j]) == m ? 2
                  : tof(q3.v[j]) == m ? 3 : 4;
            G zero = fromf<G>(0.0f);
            d0.v[j] = k == 0 ? gg.v[j] : zero;
            d1.v[j] = k == 1 ? gg.v[j] : zero;
            d2.v[j] = k == 2 ? gg.v[j] : zero;
            d3.v[j] = k == 3 ? gg.v[j] : zero;
        }
        vstore<G, V>(dx + offs[0], d0);
        vstore<G, V>(dx + offs[1], d1);
        vstore<G, V>(dx + offs[2], d2);
        vstore<G, V>(dx + offs[3], d3);
    }
}

/* Column sums, pass 1: block (32, 8) sums rows [y*per, (y+1)*per) of 32
 * columns into partial[y][col]. */
template <typename T>
__global__ void k_colsum_partial(const T *a, size_t rows, int cols, size_t per, float *partial)
{
    __shared__ float sh[8][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    size_t r0 = (size_t)blockIdx.y * per, r1 = r0 + per < rows ? r0 + per : rows;
    double s = 0.0; /* up to ~1.5k terms a thread: the CPU sums in double too */
    if (col < cols)
        for (size_t r = r0 + threadIdx.y; r < r1; r += blockDim.y)
            s += tof(a[r * (size_t)cols + (size_t)col]);
    sh[threadIdx.y][threadIdx.x] = (float)s;
    __syncthreads();
    if (threadIdx.y == 0 && col < cols) {
        float t = 0.0f;
        for (int i = 0; i < 8; i++)
            t += sh[i][threadIdx.x];
        partial[(size_t)blockIdx.y * cols + col] = t;
    }
}

__global__ void k_colsum_final(const float *partial, unsigned chunks, int cols, float *out)
{
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= cols)
        return;
    double s = 0.0;
    for (unsigned i = 0; i < chunks; i++)
        s += partial[(size_t)i * cols + col];
    out[col] = (float)s;
}

template <typename T>
__global__ void k_dropout_fwd(T *x, float *mask, size_t n, float rate, float keep, uint64_t base)
{
    for (size_t i = gtid(); i < n; i += gstride()) {
        float u = (float)(rng_mix(base + i) >> 40) * (1.0f / 16777216.0f);
        float m = u < rate ? 0.0f : keep;
        mask[i] = m;
        x[i] = fromf<T>(__fmul_rn(tof(x[i]), m));
    }
}

template <typename T>
__global__ void k_dropout_bwd(const float *mask, T *dy, size_t n)
{
    for (size_t i = gtid(); i < n; i += gstride())
        dy[i] = fromf<T>(__fmul_rn(tof(dy[i]), mask[i]));
}

/* One block; warp w handles rows w, w + warps, ... */
template <typename T>
__global__ void __launch_bounds__(1024)
k_softmax_xent(const T *z, const int32_t *lab, int n, int c, void *dl, vt_cuk_type dt,
               float gs, void *pr, vt_cuk_type pt, vt_cuk_xent *res)
{
    __shared__ double s_loss[32];
    __shared__ int s_corr[32], s_bad[32], s_badl[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    double loss = 0.0;
    int corr = 0, bad = 0, badl = 0;

    for (int r = warp; r < n; r += nwarps) {
        const T *zr = z + (size_t)r * c;
        int y = lab[r];
        /* first arg-max: the largest value, the smallest index among equals */
        float bv = -INFINITY;
        int bi = 0x7fffffff;
        for (int j = lane; j < c; j += 32) {
            float v = tof(zr[j]);
            if (v != v && j != 0) /* the CPU's scan never moves to a NaN */
                continue;
            if (bi == 0x7fffffff || v > bv) {
                bv = v;
                bi = j;
            }
        }
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            /* a NaN candidate can only be index 0 (z[0] NaN): it wins, as on the CPU */
            if (oi != 0x7fffffff &&
                (bi == 0x7fffffff || ov != ov ||
                 (bv == bv && (ov > bv || (ov == bv && oi < bi))))) {
                bv = ov;
                bi = oi;
            }
        }
        double zb = (double)tof(zr[bi]);
        double s = 0.0;
        for (int j = lane; j < c; j += 32)
            s += exp((double)tof(zr[j]) - zb);
        for (int o = 16; o > 0; o >>= 1)
            s += __shfl_xor_sync(0xffffffffu, s, o);
        if (y < 0 || y >= c) {
            if (lane == 0) {
                bad++;
                badl = y;
            }
            continue;
        }
        if (lane == 0) {
            loss += log(s) + zb - (double)tof(zr[y]);
            corr += bi == y;
        }
        for (int j = lane; j < c; j += 32) {
            float p = (float)(exp((double)tof(zr[j]) - zb) / s);
            size_t k = (size_t)r * c + j;
            if (pr)
                stt(pr, k, p, pt);
            if (dl)
                stt(dl, k, __fmul_rn(__fsub_rn(p, j == y ? 1.0f : 0.0f), gs), dt);
        }
    }
    if (lane == 0) {
        s_loss[warp] = loss;
        s_corr[warp] = corr;
        s_bad[warp] = bad;
        s_badl[warp] = badl;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        vt_cuk_xent out = {0.0, 0, 0, 0, 0};
        for (int i = 0; i < nwarps; i++) {
            out.loss += s_loss[i];
            out.correct += s_corr[i];
            if (s_bad[i]) {
                out.bad += s_bad[i];
                out.bad_label = s_badl[i];
            }
        }
        *res = out;
    }
}

/* acc += *r: the results of replayed softmax cross-entropies, summed on
 * the device until the host collects them. */
__global__ void k_xent_add(const vt_cuk_xent *r, vt_cuk_xent *acc)
{
    acc->loss += r->loss;
    acc->correct += r->correct;
    if (r->bad) {
        acc->bad += r->bad;
        acc->bad_label = r->bad_label;
    }
}

__device__ __forceinline__ void sgd_one(float &w, float g, float &v, float lr, float mom, float wd,
                                        int nesterov)
{
    float grad = __fadd_rn(g, __fmul_rn(wd, w));
    v = __fsub_rn(__fmul_rn(mom, v), __fmul_rn(lr, grad));
    if (nesterov)
        w = __fsub_rn(__fadd_rn(w, __fmul_rn(mom, v)), __fmul_rn(lr, grad));
    else
        w = __fadd_rn(w, v);
}

template <int V>
__global__ void k_sgd(float *w, const float *g, float *v, size_t n, float lr, float mom, float wd,
                      int nesterov, bf16 *shadow)
{
    size_t nv = n / V;
    for (size_t i = gtid(); i < nv; i += gstride()) {
        vec<float, V> ww = vload<float, V>(w + i * V), vv = vload<float, V>(v + i * V);
        vec<float, V> gg = vload<float, V>(g + i * V);
#pragma unroll
        for (int j = 0; j < V; j++)
            sgd_one(ww.v[j], gg.v[j], vv.v[j], lr, mom, wd, nesterov);
        vstore<float, V>(w + i * V, ww);
        vstore<float, V>(v + i * V, vv);
        if (shadow) {
#pragma unroll
            for (int j = 0; j < V; j++)
                shadow[i * V + j] = __float2bfloat16_rn(ww.v[j]);
        }
    }
    for (size_t i = nv * V + gtid(); i < n; i += gstride()) {
        float wi = w[i], vi = v[i];
        sgd_one(wi, g[i], vi, lr, mom, wd, nesterov);
        w[i] = wi;
        v[i] = vi;
        if (shadow)
            shadow[i] = __float2bfloat16_rn(wi);
    }
}

__global__ void k_conv_fwd_ref(const void *x, vt_cuk_type xt, const float *w, const float *b,
                               void *y, vt_cuk_type yt, int n, int h, int wd, int c, int k, int relu)
{
    size_t total = (size_t)n * h * wd * k;
    for (size_t i = gtid(); i < total; i += gstride()) {
        int kk = (int)(i % (size_t)k);
        size_t p = i / (size_t)k;
        int x0 = (int)(p % (size_t)wd);
        size_t q = p / (size_t)wd;
        int y0 = (int)(q % (size_t)h);
        size_t nn = q / (size_t)h;
        float acc = 0.0f;
        for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++) {
                int hi = y0 + kh - 1, wi = x0 + kw - 1;
                if (hi < 0 || hi >= h || wi < 0 || wi >= wd)
                    continue;
                size_t xo = ((nn * h + hi) * (size_t)wd + wi) * c;
                const float *wr = w + (((size_t)kk * 3 + kh) * 3 + kw) * c;
                for (int cc = 0; cc < c; cc++)
                    acc += ldt(x, xo + cc, xt) * wr[cc];
            }
        float v = acc + b[kk];
        stt(y, i, relu && v < 0.0f ? 0.0f : v, yt);
    }
}

__global__ void k_conv_bwd_data_ref(const void *dy, vt_cuk_type dyt, const float *w, void *dx,
                                    vt_cuk_type dxt, int n, int h, int wd, int c, int k)
{
    size_t total = (size_t)n * h * wd * c;
    for (size_t i = gtid(); i < total; i += gstride()) {
        int cc = (int)(i % (size_t)c);
        size_t p = i / (size_t)c;
        int x0 = (int)(p % (size_t)wd);
        size_t q = p / (size_t)wd;
        int y0 = (int)(q % (size_t)h);
        size_t nn = q / (size_t)h;
        float acc = 0.0f;
        for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++) {
                int ho = y0 - kh + 1, wo = x0 - kw + 1;
                if (ho < 0 || ho >= h || wo < 0 || wo >= wd)
                    continue;
                size_t go = ((nn * h + ho) * (size_t)wd + wo) * k;
                for (int kk = 0; kk < k; kk++)
                    acc += ldt(dy, go + kk, dyt) * w[(((size_t)kk * 3 + kh) * 3 + kw) * c + cc];
            }
        stt(dx, i, acc, dxt);
    }
}

/* One block of kRefThreads per weight (a fixed-order tree in shared memory,
 * so deterministic): the pixels of a layer are far more than its weights. */
const int kRefThreads = 256;
__global__ void __launch_bounds__(kRefThreads)
k_conv_bwd_filter_ref(const void *x, vt_cuk_type xt, const void *dy, vt_cuk_type dyt, float *dw,
                      int n, int h, int wd, int c, int k)
{
    __shared__ float red[kRefThreads];
    size_t total = (size_t)k * 9 * c, pixels = (size_t)n * h * wd;
    for (size_t e = blockIdx.x; e < total; e += gridDim.x) {
        int cc = (int)(e % (size_t)c);
        size_t q = e / (size_t)c;
        int kw = (int)(q % 3), kh = (int)(q / 3 % 3), kk = (int)(q / 9);
        float acc = 0.0f;
        for (size_t pix = threadIdx.x; pix < pixels; pix += blockDim.x) {
            int x0 = (int)(pix % (size_t)wd);
            size_t t = pix / (size_t)wd;
            int y0 = (int)(t % (size_t)h);
            size_t nn = t / (size_t)h;
            int hi = y0 + kh - 1, wi = x0 + kw - 1;
            if (hi < 0 || hi >= h || wi < 0 || wi >= wd)
                continue;
            acc += ldt(x, ((nn * h + hi) * (size_t)wd + wi) * c + cc, xt) *
                   ldt(dy, pix * k + kk, dyt);
        }
        red[threadIdx.x] = acc;
        __syncthreads();
        for (int half = blockDim.x / 2; half > 0; half >>= 1) {
            if ((int)threadIdx.x < half)
                red[threadIdx.x] += red[threadIdx.x + half];
            __syncthreads();
        }
        if (threadIdx.x == 0)
            dw[e] = red[0];
        __syncthreads();
    }
}

/* ---- dispatch helpers -------------------------------------------------- */

template <typename D, typename S>
cudaError_t launch_convert(cudaStream_t s, void *dst, const void *src, size_t n)
{
    if (aligned(dst, 8 * sizeof(D)) && aligned(src, 8 * sizeof(S)))
        k_convert<D, S, 8><<<blocks_for(n / 8 + 1), kThreads, 0, s>>>(
            static_cast<D *>(dst), static_cast<const S *>(src), n);
    else
        k_convert<D, S, 1><<<blocks_for(n), kThreads, 0, s>>>(static_cast<D *>(dst),
                                                              static_cast<const S *>(src), n);
    return cudaGetLastError();
}

template <typename T>
cudaError_t launch_bias_act(cudaStream_t s, void *y, const float *b, size_t rows, int k, int relu)
{
    T *yp = static_cast<T *>(y);
    size_t n = rows * (size_t)k;
    if (k % 8 == 0 && aligned(y, 8 * sizeof(T)))
        k_bias_act<T, 8><<<blocks_for(n / 8), kThreads, 0, s>>>(yp, b, rows, k, relu);
    else
        k_bias_act<T, 1><<<blocks_for(n), kThreads, 0, s>>>(yp, b, rows, k, relu);
    return cudaGetLastError();
}

template <typename TY, typename TD>
cudaError_t launch_relu_bwd(cudaStream_t s, const void *y, void *dy, size_t n)
{
    const TY *yp = static_cast<const TY *>(y);
    TD *dp = static_cast<TD *>(dy);
    if (aligned(y, 8 * sizeof(TY)) && aligned(dy, 8 * sizeof(TD)))
        k_relu_bwd<TY, TD, 8><<<blocks_for(n / 8 + 1), kThreads, 0, s>>>(yp, dp, n);
    else
        k_relu_bwd<TY, TD, 1><<<blocks_for(n), kThreads, 0, s>>>(yp, dp, n);
    return cudaGetLastError();
}

/* Widest vector of V elements of T and G that divides c and fits the
 * pointers' alignment. */
int pool_vec(int c, size_t tsize, size_t gsize, const void *const *ptrs, int nptrs)
{
    static const int cand[2] = {8, 4};
    for (int k = 0; k < 2; k++) {
        int v = cand[k];
        bool ok = c % v == 0 && v * tsize <= 16 && v * gsize <= 16;
        for (int i = 0; i < nptrs && ok; i++)
            ok = aligned(ptrs[i], (size_t)v * (i < 2 ? tsize : gsize));
        if (ok)
            return v;
    }
    return 1;
}

template <typename T>
cudaError_t launch_pool_fwd(cudaStream_t s, const void *x, void *y, int n, int h, int w, int c)
{
    const void *ptrs[2] = {x, y};
    int v = pool_vec(c, sizeof(T), sizeof(T), ptrs, 2);
    size_t work = (size_t)n * (h / 2) * (w / 2) * (c / v);
    const T *xp = static_cast<const T *>(x);
    T *yp = static_cast<T *>(y);
    if (v == 8)
        k_maxpool_fwd<T, 8><<<blocks_for(work), kThreads, 0, s>>>(xp, yp, n, h, w, c);
    else if (v == 4)
        k_maxpool_fwd<T, 4><<<blocks_for(work), kThreads, 0, s>>>(xp, yp, n, h, w, c);
    else
        k_maxpool_fwd<T, 1><<<blocks_for(work), kThreads, 0, s>>>(xp, yp, n, h, w, c);
    return cudaGetLastError();
}

template <typename T, typename G>
cudaError_t launch_pool_bwd(cudaStream_t s, const void *x, const void *y, const void *dy,
                            void *dx, int n, int h, int w, int c)
{
    const void *ptrs[4] = {x, y, dy, dx};
    int v = pool_vec(c, sizeof(T), sizeof(G), ptrs, 4);
    size_t work = (size_t)n * (h / 2) * (w / 2) * (c / v);
    const T *xp = static_cast<const T *>(x), *yp = static_cast<const T *>(y);
    const G *gp = static_cast<const G *>(dy);
    G *dp = static_cast<G *>(dx);
    if (v == 8)
        k_maxpool_bwd<T, G, 8><<<blocks_for(work), kThreads, 0, s>>>(xp, yp, gp, dp, n, h, w, c);
    else if (v == 4)
        k_maxpool_bwd<T, G, 4><<<blocks_for(work), kThreads, 0, s>>>(xp, yp, gp, dp, n, h, w, c);
    else
        k_maxpool_bwd<T, G, 1><<<blocks_for(work), kThreads, 0, s>>>(xp, yp, gp, dp, n, h, w, c);
    return cudaGetLastError();
}

/* Chunking of the column sums: about 2048 blocks, at least 64 rows each. */
void colsum_shape(size_t rows, int cols, unsigned *gx, unsigned *chunks, size_t *per)
{
    size_t want, most, ch;
    *gx = (unsigned)((cols + 31) / 32);
    want = 2048 / *gx;
    if (want < 1)
        want = 1;
    most = (rows + 63) / 64;
    if (most < 1)
        most = 1;
    ch = want < most ? want : most;
    if (ch > 65535)
        ch = 65535;
    *per = (rows + ch - 1) / ch;
    if (*per == 0)
        *per = 1;
    ch = (rows + *per - 1) / *per;
    *chunks = ch ? (unsigned)ch : 1u;
}

/* The first layer's direct convolution (conv_small.cuh): stage the tile,
 * then each warp sweeps its row. */
template <typename T, int C>
__global__ void __launch_bounds__(kSmallThreads, 2)
k_conv_small_fwd(const T *x, const float *w, const float *b, T *y, int h, int wd, int k,
                 int relu)
{
    __shared__ float4 tile[kSmallRows + 2][kSmallCols + 2];
    __shared__ __align__(8) float wt[9 * C][64];
    small_geom g = small_tile(blockIdx.x, h, wd);
    small_load<T, C>(x, w, h, wd, g, blockIdx.y, threadIdx.x, tile, wt);
    __syncthreads();
    small_row<T, C>(tile, wt, b, y, h, wd, k, relu, g, blockIdx.y, threadIdx.x);
}

template <typename T>
cudaError_t launch_conv_small_fwd(cudaStream_t s, const void *x, const float *w, const float *b,
                                  void *y, int n, int h, int wd, int c, int k, int relu)
{
    size_t tiles = small_tiles(n, h, wd);
    if (tiles > 0x7fffffffu || k % 64 || c < 1 || c > 4)
        return cudaErrorInvalidValue;
    dim3 grid((unsigned)tiles, (unsigned)(k / 64));
    const T *xp = static_cast<const T *>(x);
    T *yp = static_cast<T *>(y);
    switch (c) {
    case 1: k_conv_small_fwd<T, 1><<<grid, kSmallThreads, 0, s>>>(xp, w, b, yp, h, wd, k, relu); break;
    case 2: k_conv_small_fwd<T, 2><<<grid, kSmallThreads, 0, s>>>(xp, w, b, yp, h, wd, k, relu); break;
    case 3: k_conv_small_fwd<T, 3><<<grid, kSmallThreads, 0, s>>>(xp, w, b, yp, h, wd, k, relu); break;
    default: k_conv_small_fwd<T, 4><<<grid, kSmallThreads, 0, s>>>(xp, w, b, yp, h, wd, k, relu); break;
    }
    return cudaGetLastError();
}

} /* namespace */

/* ---- wrappers ---------------------------------------------------------- */

cudaError_t vt_cuk_probe(cudaStream_t s)
{
    k_probe<<<1, 1, 0, s>>>();
    return cudaGetLastError();
}

cudaError_t vt_cuk_convert(cudaStream_t s, void *dst, vt_cuk_type dt, const void *src,
                           vt_cuk_type st, size_t n)
{
    if (n == 0)
        return cudaSuccess;
    if (dt == st)
        return cudaMemcpyAsync(dst, src, n * (dt == VT_CUK_BF16 ? 2 : 4),
                               cudaMemcpyDeviceToDevice, s);
    if (dt == VT_CUK_BF16)
        return launch_convert<bf16, float>(s, dst, src, n);
    return launch_convert<float, bf16>(s, dst, src, n);
}

cudaError_t vt_cuk_images(cudaStream_t s, const uint8_t *img, size_t pixels, int caffe,
                          void *x, vt_cuk_type xt)
{
    size_t total = pixels * 3;
    if (xt == VT_CUK_BF16)
        k_images<bf16><<<blocks_for(total), kThreads, 0, s>>>(img, total, caffe,
                                                               static_cast<bf16 *>(x));
    else
        k_images<float><<<blocks_for(total), kThreads, 0, s>>>(img, total, caffe,
                                                                static_cast<float *>(x));
    return cudaGetLastError();
}

cudaError_t vt_cuk_images_resize(cudaStream_t s, const uint8_t *img, const vt_image_box *boxes,
                                 int n, int S, int caffe, void *x, vt_cuk_type xt)
{
    size_t total = (size_t)n * S * S;
    if (xt == VT_CUK_BF16)
        k_images_resize<bf16><<<blocks_for(total), kThreads, 0, s>>>(
            img, boxes, n, S, caffe, static_cast<bf16 *>(x));
    else
        k_images_resize<float><<<blocks_for(total), kThreads, 0, s>>>(
            img, boxes, n, S, caffe, static_cast<float *>(x));
    return cudaGetLastError();
}

cudaError_t vt_cuk_pad_channels(cudaStream_t s, const void *in, vt_cuk_type it, size_t rows,
                                int c, int cp, void *out, vt_cuk_type ot)
{
    k_pad_channels<<<blocks_for(rows * (size_t)cp), kThreads, 0, s>>>(in, it, rows, c, cp, out,
                                                                        ot);
    return cudaGetLastError();
}

cudaError_t vt_cuk_bias_act(cudaStream_t s, void *y, vt_cuk_type yt, const float *b,
                            size_t rows, int k, int relu)
{
    if (yt == VT_CUK_BF16)
        return launch_bias_act<bf16>(s, y, b, rows, k, relu);
    return launch_bias_act<float>(s, y, b, rows, k, relu);
}

cudaError_t vt_cuk_relu_bwd(cudaStream_t s, const void *y, vt_cuk_type yt, void *dy,
                            vt_cuk_type dyt, size_t n)
{
    if (yt == VT_CUK_BF16)
        return dyt == VT_CUK_BF16 ? launch_relu_bwd<bf16, bf16>(s, y, dy, n)
                                  : launch_relu_bwd<bf16, float>(s, y, dy, n);
    return dyt == VT_CUK_BF16 ? launch_relu_bwd<float, bf16>(s, y, dy, n)
                              : launch_relu_bwd<float, float>(s, y, dy, n);
}

cudaError_t vt_cuk_maxpool_fwd(cudaStream_t s, const void *x, void *y, vt_cuk_type t, int n,
                               int h, int w, int c)
{
    if (t == VT_CUK_BF16)
        return launch_pool_fwd<bf16>(s, x, y, n, h, w, c);
    return launch_pool_fwd<float>(s, x, y, n, h, w, c);
}

cudaError_t vt_cuk_maxpool_bwd(cudaStream_t s, const void *x, const void *y, vt_cuk_type t,
                               const void *dy, void *dx, vt_cuk_type gt, int n, int h, int w,
                               int c)
{
    if (t == VT_CUK_BF16)
        return gt == VT_CUK_BF16 ? launch_pool_bwd<bf16, bf16>(s, x, y, dy, dx, n, h, w, c)
                                 : launch_pool_bwd<bf16, float>(s, x, y, dy, dx, n, h, w, c);
    return gt == VT_CUK_BF16 ? launch_pool_bwd<float, bf16>(s, x, y, dy, dx, n, h, w, c)
                             : launch_pool_bwd<float, float>(s, x, y, dy, dx, n, h, w, c);
}

size_t vt_cuk_colsum_scratch(size_t rows, int cols)
{
    unsigned gx, chunks;
    size_t per;
    colsum_shape(rows, cols, &gx, &chunks, &per);
    return (size_t)chunks * (size_t)cols;
}

cudaError_t vt_cuk_colsum(cudaStream_t s, const void *a, vt_cuk_type at, size_t rows, int cols,
                          float *scratch, float *out)
{
    unsigned gx, chunks;
    size_t per;
    colsum_shape(rows, cols, &gx, &chunks, &per);
    dim3 grid(gx, chunks), block(32, 8);
    if (at == VT_CUK_BF16)
        k_colsum_partial<bf16><<<grid, block, 0, s>>>(static_cast<const bf16 *>(a), rows, cols,
                                                      per, scratch);
    else
        k_colsum_partial<float><<<grid, block, 0, s>>>(static_cast<const float *>(a), rows,
                                                       cols, per, scratch);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return e;
    k_colsum_final<<<(cols + 255) / 256, 256, 0, s>>>(scratch, chunks, cols, out);
    return cudaGetLastError();
}

cudaError_t vt_cuk_dropout_fwd(cudaStream_t s, void *x, vt_cuk_type xt, float *mask, size_t n,
                               float rate, float keep, uint64_t base)
{
    if (xt == VT_CUK_BF16)
        k_dropout_fwd<bf16><<<blocks_for(n), kThreads, 0, s>>>(static_cast<bf16 *>(x), mask, n,
                                                                rate, keep, base);
    else
        k_dropout_fwd<float><<<blocks_for(n), kThreads, 0, s>>>(static_cast<float *>(x), mask,
                                                                 n, rate, keep, base);
    return cudaGetLastError();
}

namespace {

/* blockIdx.y picks the row pair, the x dimension strides over its units. */
template <typename U>
__global__ void k_move_rows(U *dst, const U *src, size_t units, vt_cuk_rowmap map)
{
    U *d = dst + (size_t)map.dst[blockIdx.y] * units;
    const U *s = src + (size_t)map.src[blockIdx.y] * units;
    for (size_t i = gtid(); i < units; i += gstride())
        d[i] = s[i];
}

} /* namespace */

cudaError_t vt_cuk_move_rows(cudaStream_t s, void *dst, const void *src, size_t row_bytes,
                             const vt_cuk_rowmap *map)
{
    if (map->n <= 0)
        return cudaSuccess;
    dim3 grid(1, (unsigned)map->n);
    if (row_bytes % 16 == 0 && aligned(dst, 16) && aligned(src, 16)) {
        size_t units = row_bytes / 16;
        grid.x = blocks_for(units) < 64 ? blocks_for(units) : 64;
        k_move_rows<uint4><<<grid, kThreads, 0, s>>>(static_cast<uint4 *>(dst),
                                                     static_cast<const uint4 *>(src), units,
                                                     *map);
    } else {
        grid.x = blocks_for(row_bytes) < 64 ? blocks_for(row_bytes) : 64;
        k_move_rows<unsigned char><<<grid, kThreads, 0, s>>>(
            static_cast<unsigned char *>(dst), static_cast<const unsigned char *>(src),
            row_bytes, *map);
    }
    return cudaGetLastError();
}

cudaError_t vt_cuk_dropout_bwd(cudaStream_t s, const float *mask, void *dy, vt_cuk_type t,
                               size_t n)
{
    if (t == VT_CUK_BF16)
        k_dropout_bwd<bf16><<<blocks_for(n), kThreads, 0, s>>>(mask, static_cast<bf16 *>(dy), n);
    else
        k_dropout_bwd<float><<<blocks_for(n), kThreads, 0, s>>>(mask, static_cast<float *>(dy),
                                                                 n);
    return cudaGetLastError();
}

cudaError_t vt_cuk_softmax_xent(cudaStream_t s, const void *logits, vt_cuk_type lt,
                                const int32_t *labels, int n, int c, void *dlogits,
                                vt_cuk_type dt, float grad_scale, void *probs,
                                vt_cuk_type pt, vt_cuk_xent *res)
{
    if (lt == VT_CUK_BF16)
        k_softmax_xent<bf16><<<1, 1024, 0, s>>>(static_cast<const bf16 *>(logits), labels, n, c,
                                                dlogits, dt, grad_scale, probs, pt, res);
    else
        k_softmax_xent<float><<<1, 1024, 0, s>>>(static_cast<const float *>(logits), labels, n,
                                                 c, dlogits, dt, grad_scale, probs, pt, res);
    return cudaGetLastError();
}

cudaError_t vt_cuk_xent_add(cudaStream_t s, const vt_cuk_xent *res, vt_cuk_xent *acc)
{
    k_xent_add<<<1, 1, 0, s>>>(res, acc);
    return cudaGetLastError();
}

namespace {

/* Sets arguments of the kernel node `node` of exec, which one launch of
 * one of the kernels funcs[0..nfuncs) (all with `nargs` parameters) made
 * during stream capture: argument at[i] becomes *val[i], i < nset; the
 * others keep their recorded values.  A node of any other kernel is
 * refused (cudaErrorInvalidValue), so a changed launch cannot be patched
 * with the wrong layout. */
cudaError_t set_node_args(cudaGraphExec_t exec, cudaGraphNode_t node, const void *const *funcs,
                          int nfuncs, int nargs, int nset, const int *at, void *const *val)
{
    int known = 0;
    cudaKernelNodeParams p;
    void *args[16];
    cudaGraphNodeType type;
    cudaError_t e = cudaGraphNodeGetType(node, &type);
    if (e != cudaSuccess)
        return e;
    if (type != cudaGraphNodeTypeKernel || nargs > 16)
        return cudaErrorInvalidValue;
    if ((e = cudaGraphKernelNodeGetParams(node, &p)) != cudaSuccess)
        return e;
    for (int i = 0; i < nfuncs; i++)
        known |= p.func == funcs[i];
    if (!known || !p.kernelParams)
        return cudaErrorInvalidValue;
    for (int i = 0; i < nargs; i++)
        args[i] = p.kernelParams[i];
    for (int i = 0; i < nset; i++)
        args[at[i]] = val[i];
    p.kernelParams = args;
    p.extra = NULL;
    return cudaGraphExecKernelNodeSetParams(exec, node, &p);
}

} /* namespace */

cudaError_t vt_cuk_sgd_set(cudaGraphExec_t exec, cudaGraphNode_t node, float lr, float momentum,
                           float weight_decay, int nesterov)
{
    /* k_sgd(w, g, v, n, lr, mom, wd, nesterov, shadow), as vt_cuk_sgd launches it */
    static const int at[4] = {4, 5, 6, 7};
    const void *funcs[2] = {(const void *)k_sgd<4>, (const void *)k_sgd<1>};
    void *val[4] = {&lr, &momentum, &weight_decay, &nesterov};
    return set_node_args(exec, node, funcs, 2, 9, 4, at, val);
}

cudaError_t vt_cuk_dropout_set(cudaGraphExec_t exec, cudaGraphNode_t node, float rate, float keep,
                               uint64_t base)
{
    /* k_dropout_fwd(x, mask, n, rate, keep, base), as vt_cuk_dropout_fwd launches it */
    static const int at[3] = {3, 4, 5};
    const void *funcs[2] = {(const void *)k_dropout_fwd<bf16>, (const void *)k_dropout_fwd<float>};
    void *val[3] = {&rate, &keep, &base};
    return set_node_args(exec, node, funcs, 2, 6, 3, at, val);
}

cudaError_t vt_cuk_sgd(cudaStream_t s, float *w, const float *g, float *v, size_t n, float lr,
                       float momentum, float weight_decay, int nesterov, void *shadow)
{
    bf16 *sh = static_cast<bf16 *>(shadow);
    if (aligned(w, 16) && aligned(g, 16) && aligned(v, 16) && (!sh || aligned(sh, 8)))
        k_sgd<4><<<blocks_for(n / 4 + 1), kThreads, 0, s>>>(w, g, v, n, lr, momentum,
                                                            weight_decay, nesterov, sh);
    else
        k_sgd<1><<<blocks_for(n), kThreads, 0, s>>>(w, g, v, n, lr, momentum, weight_decay,
                                                    nesterov, sh);
    return cudaGetLastError();
}

cudaError_t vt_cuk_conv_small_fwd(cudaStream_t s, const void *x, vt_cuk_type t, const float *w,
                                  const float *b, void *y, int n, int h, int wd, int c, int k,
                                  int relu)
{
    if (t == VT_CUK_BF16)
        return launch_conv_small_fwd<bf16>(s, x, w, b, y, n, h, wd, c, k, relu);
    return launch_conv_small_fwd<float>(s, x, w, b, y, n, h, wd, c, k, relu);
}

cudaError_t vt_cuk_conv_fwd_ref(cudaStream_t s, const void *x, vt_cuk_type xt, const float *w,
                                const float *b, void *y, vt_cuk_type yt, int n, int h, int wd,
                                int c, int k, int relu)
{
    k_conv_fwd_ref<<<blocks_for((size_t)n * h * wd * k), kThreads, 0, s>>>(x, xt, w, b, y, yt, n,
                                                                             h, wd, c, k, relu);
    return cudaGetLastError();
}

cudaError_t vt_cuk_conv_bwd_data_ref(cudaStream_t s, const void *dy, vt_cuk_type dyt,
                                     const float *w, void *dx, vt_cuk_type dxt, int n, int h,
                                     int wd, int c, int k)
{
    k_conv_bwd_data_ref<<<blocks_for((size_t)n * h * wd * c), kThreads, 0, s>>>(
        dy, dyt, w, dx, dxt, n, h, wd, c, k);
    return cudaGetLastError();
}

cudaError_t vt_cuk_conv_bwd_filter_ref(cudaStream_t s, const void *x, vt_cuk_type xt,
                                       const void *dy, vt_cuk_type dyt, float *dw, int n, int h,
                                       int wd, int c, int k)
{
    size_t weights = (size_t)k * 9 * c;
    unsigned blocks = (unsigned)(weights < ((size_t)1 << 20) ? weights : ((size_t)1 << 20));
    k_conv_bwd_filter_ref<<<blocks, kRefThreads, 0, s>>>(x, xt, dy, dyt, dw, n, h, wd, c, k);
    return cudaGetLastError();
}

/* conv_small.cuh - the direct convolution for layers with few input channels
 * (VGG's first: 3), as host+device functions: cuda_kernels.cu's kernel
 * calls them, and tests/test_conv_small.cu runs the same code on the host,
 * thread by thread, where there is no GPU.
 *
 * Why: cuDNN runs the first layer as an implicit GEMM with the channels
 * padded to 8 and a reduction of only 72 (at batch 256 on an H200: 1.94 ms,
 * 23 TFLOP/s, 4.5x the time its 1.6 GB output takes to write).  Here it is a
 * direct convolution on the FP32 pipes instead.
 *
 * How: a block of kSmallRows warps computes a tile of kSmallRows output rows
 * by kSmallCols columns for 64 output channels (block column `kgroup`).
 *   small_load  stages, all threads together, the tile's input with its
 *               one-pixel halo in shared memory as float4 (the C <= 4
 *               channels, zero-padded; zero outside the image) and the 64
 *               channels' weights, read coalesced and stored tap-major so
 *               that a lane's two channels are one conflict-free float2;
 *   small_row   (after a barrier) lets warp r sweep output row y0 + r, each
 *               lane owning two output channels whose 2 x 9 x C weights it
 *               keeps in registers; the 3 x 3 input window stays in registers and
 *               one new column (3 broadcast float4 loads) is read per pixel
 *               for 18 x C multiply-adds.  A warp stores one pixel's 64
 *               channels as one contiguous run (128 bytes in bf16).
 * Weights are the f32 masters (not rounded to bf16), accumulation is f32,
 * the bias is added last, ReLU keeps NaN (as the CPU reference does).
 */
#ifndef VT_CONV_SMALL_CUH
#define VT_CONV_SMALL_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stddef.h>

#define VT_HD __host__ __device__ __forceinline__
/* Unrolling hints for the device pass only (the host compiler would warn). */
#ifdef __CUDA_ARCH__
#define VT_UNROLL _Pragma("unroll")
#define VT_UNROLL4 _Pragma("unroll 4")
#else
#define VT_UNROLL
#define VT_UNROLL4
#endif

const int kSmallRows = 8, kSmallCols = 128, kSmallThreads = kSmallRows * 32;

/* A tile's place: image, first column, first row. */
struct small_geom {
    size_t img;
    int x0, y0;
};

/* Blocks along blockIdx.x for n images of h x wd. */
inline size_t small_tiles(int n, int h, int wd)
{
    return (size_t)n * ((h + kSmallRows - 1) / kSmallRows) * ((wd + kSmallCols - 1) / kSmallCols);
}

/* Where block `block` (blockIdx.x) works: tiles run along a row of tiles,
 * then down the image, then to the next image. */
VT_HD small_geom small_tile(unsigned block, int h, int wd)
{
    unsigned tiles_x = (unsigned)((wd + kSmallCols - 1) / kSmallCols);
    unsigned tiles_y = (unsigned)((h + kSmallRows - 1) / kSmallRows);
    small_geom g;
    g.x0 = (int)(block % tiles_x) * kSmallCols;
    g.y0 = (int)(block / tiles_x % tiles_y) * kSmallRows;
    g.img = block / tiles_x / tiles_y;
    return g;
}

VT_HD float small_f(float v) { return v; }
VT_HD float small_f(__nv_bfloat16 v) { return __bfloat162float(v); }

VT_HD float small_comp(const float4 &v, int c)
{
    return c == 0 ? v.x : c == 1 ? v.y : c == 2 ? v.z : v.w;
}

VT_HD void small_store2(float *p, float a, float b)
{
    *reinterpret_cast<float2 *>(p) = make_float2(a, b);
}

VT_HD void small_store2(__nv_bfloat16 *p, float a, float b)
{
    *reinterpret_cast<__nv_bfloat162 *>(p) = __floats2bfloat162_rn(a, b);
}

/* Thread `tid` of kSmallThreads stages its share of tile g of x (n, h, wd,
 * C): tile[r][c] = x at row g.y0 + r - 1, column g.x0 + c - 1; and of the
 * weights w (k, 3, 3, C) of channels kgroup*64 .. +63: wt[j][o] = weight j
 * (= (kh * 3 + kw) * C + ch) of channel kgroup*64 + o. */
template <typename T, int C>
VT_HD void small_load(const T *x, const float *w, int h, int wd, small_geom g, int kgroup,
                      int tid, float4 (*tile)[kSmallCols + 2], float (*wt)[64])
{
    const float *wg = w + (size_t)kgroup * 64 * 9 * C;
    for (int i = tid; i < 64 * 9 * C; i += kSmallThreads)
        wt[i % (9 * C)][i / (9 * C)] = wg[i];
    for (int i = tid; i < (kSmallRows + 2) * (kSmallCols + 2); i += kSmallThreads) {
        int r = i / (kSmallCols + 2), c = i % (kSmallCols + 2);
        int yy = g.y0 + r - 1, xx = g.x0 + c - 1;
        float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (yy >= 0 && yy < h && xx >= 0 && xx < wd) {
            const T *px = x + ((g.img * h + yy) * wd + xx) * C;
            VT_UNROLL
            for (int ch = 0; ch < C; ch++)
                v[ch] = small_f(px[ch]);
        }
        tile[r][c] = make_float4(v[0], v[1], v[2], v[3]);
    }
}

/* Thread `tid` computes output channels kgroup*64 + 2*lane and the next
 * one of row g.y0 + tid/32 of tile g: y (n, h, wd, k) = act(conv(x, w) +
 * b), from the tile and weights small_load staged; b (k) f32, act = ReLU
 * when relu != 0. */
template <typename T, int C>
VT_HD void small_row(const float4 (*tile)[kSmallCols + 2], const float (*wt)[64], const float *b,
                     T *y, int h, int wd, int k, int relu, small_geom g, int kgroup, int tid)
{
    const int r = tid >> 5, yy = g.y0 + r, lane2 = 2 * (tid & 31), kc = kgroup * 64 + lane2;
    if (yy >= h)
        return;
    float wa[9 * C], wb[9 * C]; /* (kh, kw, ch) of channels kc and kc + 1 */
    VT_UNROLL
    for (int j = 0; j < 9 * C; j++) {
        float2 pair = *reinterpret_cast<const float2 *>(&wt[j][lane2]);
        wa[j] = pair.x;
        wb[j] = pair.y;
    }
    const float ba = b[kc], bb = b[kc + 1];
    const int cols = wd - g.x0 < kSmallCols ? wd - g.x0 : kSmallCols;
    T *out = y + ((g.img * h + yy) * wd + g.x0) * k + kc;
    float4 c0[3], c1[3], c2[3]; /* window columns s, s+1, s+2 of tile rows r..r+2 */
    VT_UNROLL
    for (int i = 0; i < 3; i++) {
        c0[i] = tile[r + i][0];
        c1[i] = tile[r + i][1];
    }
    VT_UNROLL4
    for (int s = 0; s < cols; s++) {
        VT_UNROLL
        for (int i = 0; i < 3; i++)
            c2[i] = tile[r + i][s + 2];
        float a = 0.0f, e = 0.0f;
        VT_UNROLL
        for (int i = 0; i < 3; i++)
            VT_UNROLL
            for (int ch = 0; ch < C; ch++) {
                const int j = i * 3 * C + ch; /* weight (kh = i, kw = 0, ch) */
                a = fmaf(small_comp(c0[i], ch), wa[j], a);
                e = fmaf(small_comp(c0[i], ch), wb[j], e);
                a = fmaf(small_comp(c1[i], ch), wa[j + C], a);
                e = fmaf(small_comp(c1[i], ch), wb[j + C], e);
                a = fmaf(small_comp(c2[i], ch), wa[j + 2 * C], a);
                e = fmaf(small_comp(c2[i], ch), wb[j + 2 * C], e);
            }
        a += ba;
        e += bb;
        if (relu) {
            a = a < 0.0f ? 0.0f : a;
            e = e < 0.0f ? 0.0f : e;
        }
        small_store2(out + (size_t)s * k, a, e);
        VT_UNROLL
        for (int i = 0; i < 3; i++) {
            c0[i] = c1[i];
            c1[i] = c2[i];
        }
    }
}

#endif

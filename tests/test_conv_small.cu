/* test_conv_small.cu - the CUDA backend's direct first-layer convolution
 * (kernels/cuda/conv_small.cuh), run on the host.
 *
 * The kernel is small_load for every thread of a block, a barrier, then
 * small_row for every thread; this test calls the same two functions in
 * that order, block by block, on the CPU, and compares the output with a
 * double-precision convolution.  So the tiling, halo, indexing and window
 * logic are checked on every build, GPU or not; test_kernels' conv_first
 * case checks the kernel itself on a GPU.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

extern "C" {
#include "../common/rng.h"
#include "vt_test.h"
}
#include "../kernels/cuda/conv_small.cuh"

/* y (n, h, wd, k) f32 from the kernel's code, run block by block. */
template <typename T, int C>
static void run_host(const std::vector<T> &x, const std::vector<float> &w,
                     const std::vector<float> &b, std::vector<T> &y, int n, int h, int wd, int k,
                     int relu)
{
    static float4 tile[kSmallRows + 2][kSmallCols + 2];
    static float wt[9 * C][64];
    size_t tiles = small_tiles(n, h, wd);
    for (size_t blk = 0; blk < tiles; blk++)
        for (int kg = 0; kg < k / 64; kg++) {
            small_geom g = small_tile((unsigned)blk, h, wd);
            memset(tile, 0xff, sizeof tile); /* NaN: a cell left unstaged shows */
            memset(wt, 0xff, sizeof wt);
            for (int t = 0; t < kSmallThreads; t++)
                small_load<T, C>(x.data(), w.data(), h, wd, g, kg, t, tile, wt);
            for (int t = 0; t < kSmallThreads; t++)
                small_row<T, C>(tile, wt, b.data(), y.data(), h, wd, k, relu, g, kg, t);
        }
}

template <typename T, int C>
static int check(int n, int h, int wd, int k, int relu, double tol)
{
    size_t nx = (size_t)n * h * wd * C, ny = (size_t)n * h * wd * k;
    std::vector<T> x(nx), y(ny);
    std::vector<float> xf(nx), w((size_t)k * 9 * C), b(k), got(ny), want(ny);
    for (size_t i = 0; i < nx; i++) {
        x[i] = (T)(2.0f * vt_rng_uniform(7, C, i) - 1.0f);
        xf[i] = small_f(x[i]);
    }
    for (size_t i = 0; i < w.size(); i++)
        w[i] = 2.0f * vt_rng_uniform(8, C, i) - 1.0f;
    for (int i = 0; i < k; i++)
        b[i] = 2.0f * vt_rng_uniform(9, C, (uint64_t)i) - 1.0f;
    for (size_t i = 0; i < ny; i++) /* NaN: an output left unwritten shows */
        y[i] = (T)NAN;
    run_host<T, C>(x, w, b, y, n, h, wd, k, relu);
    for (int im = 0; im < n; im++)
        for (int r = 0; r < h; r++)
            for (int c = 0; c < wd; c++)
                for (int o = 0; o < k; o++) {
                    double s = b[o];
                    for (int kh = 0; kh < 3; kh++)
                        for (int kw = 0; kw < 3; kw++) {
                            int yy = r + kh - 1, xx = c + kw - 1;
                            if (yy < 0 || yy >= h || xx < 0 || xx >= wd)
                                continue;
                            for (int ch = 0; ch < C; ch++)
                                s += (double)xf[(((size_t)im * h + yy) * wd + xx) * C + ch] *
                                     w[(((size_t)o * 3 + kh) * 3 + kw) * C + ch];
                        }
                    size_t i = (((size_t)im * h + r) * wd + c) * k + o;
                    want[i] = relu && s < 0 ? 0.0f : (float)s;
                    got[i] = small_f(y[i]);
                }
    char what[64];
    snprintf(what, sizeof what, "%s c%d n%d %dx%d k%d%s", sizeof(T) == 2 ? "bf16" : "f32", C, n,
             h, wd, k, relu ? " relu" : "");
    return vt_test_allclose(what, got.data(), want.data(), ny, tol, tol);
}

/* Shapes that cut the 8 x 128 tiles at every edge, that fit them exactly,
 * narrower than one tile, and two channel groups. */
template <typename T, int C> static int check_shapes(double tol)
{
    return check<T, C>(2, 20, 150, 128, 1, tol) && check<T, C>(1, 16, 256, 64, 0, tol) &&
           check<T, C>(3, 5, 7, 64, 1, tol) && check<T, C>(1, 1, 1, 64, 0, tol);
}

static void test_f32(vt_backend *be)
{
    (void)be;
    VT_CHECK((check_shapes<float, 1>(1e-5)));
    VT_CHECK((check_shapes<float, 3>(1e-5)));
    VT_CHECK((check_shapes<float, 4>(1e-5)));
}

/* bf16 inputs and outputs: the output's rounding (2^-9) remains. */
static void test_bf16(vt_backend *be)
{
    (void)be;
    VT_CHECK((check_shapes<__nv_bfloat16, 2>(5e-3)));
    VT_CHECK((check_shapes<__nv_bfloat16, 3>(5e-3)));
}

static const vt_test_case cases[] = {
    {"conv_small_f32", test_f32, 0},
    {"conv_small_bf16", test_bf16, 0},
};

int main(int argc, char **argv) { VT_TEST_MAIN(cases); }

/* test_kernels.c - every backend operation against a naive double-precision
 * reference and against finite differences.
 *
 * Runs on the backend chosen with --backend (cpu by default; cuda on a GPU
 * machine).  Reference tolerances depend on the backend: the CPU backend is
 * plain fp32 (rtol 1e-4); the CUDA backend may use TF32 tensor cores for
 * fp32 tensors (rtol 5e-3), see README "Numerics".
 */
#include <stdlib.h>

#include "../common/rng.h"
#include "../engine/image.h"
#include "vt_test.h"

/* ---- helpers ----------------------------------------------------------- */

static double rtol_for(const vt_backend *be)
{
    return strcmp(vt_backend_name(be), "cpu") == 0 ? 1e-4 : 5e-3;
}

/* Fills a[n] with uniform values in [-1, 1) from the given stream. */
static void fill(float *a, size_t n, uint64_t stream)
{
    for (size_t i = 0; i < n; i++)
        a[i] = 2.0f * vt_rng_uniform(42, stream, i) - 1.0f;
}

/* A tensor of dtype dt holding host[] (NULL: zeros). */
static vt_tensor *mk_act(vt_backend *be, vt_dtype dt, int ndim, const int *dims,
                         const float *host)
{
    vt_tensor *t = NULL;
    if (vt_tensor_new(&t, be, dt, ndim, dims) < 0)
        return NULL;
    if (host && vt_tensor_upload(t, host) < 0) {
        vt_tensor_free(t);
        return NULL;
    }
    return t;
}

/* An f32 tensor of rank ndim (dims d0..d3, the first ndim of them). */
static vt_tensor *mk(vt_backend *be, int ndim, int d0, int d1, int d2, int d3,
                     const float *host)
{
    int dims[4] = {d0, d1, d2, d3};
    return mk_act(be, VT_F32, ndim, dims, host);
}

static float *get(const vt_tensor *t)
{
    float *h = malloc(vt_tensor_numel(t) * sizeof *h);
    vt_tensor_download(t, h);
    return h;
}

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* f rounded to bf16 (nearest, ties to even), as stored. */
static float bf16_round(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

/* Naive 3x3 same convolution, NHWC / KRSC, in double. */
static void ref_conv(const float *x, const float *w, const float *b, float *y, int N,
                     int H, int W, int C, int K, int relu)
{
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++)
            for (int ww = 0; ww < W; ww++)
                for (int k = 0; k < K; k++) {
                    double s = b[k];
                    for (int kh = 0; kh < 3; kh++)
                        for (int kw = 0; kw < 3; kw++) {
                            int hi = h + kh - 1, wi = ww + kw - 1;
                            if (hi < 0 || hi >= H || wi < 0 || wi >= W)
                                continue;
                            for (int c = 0; c < C; c++)
                                s += (double)x[((n * H + hi) * W + wi) * C + c] *
                                     w[((k * 3 + kh) * 3 + kw) * C + c];
                        }
                    y[((n * H + h) * W + ww) * K + k] =
                        relu && s < 0 ? 0.0f : (float)s;
                }
}

/* The weight gradient of ref_conv, in double: dw[k,kh,kw,c] = sum over
 * n, h, w of dy[n,h,w,k] x[n,h+kh-1,w+kw-1,c]. */
static void ref_conv_dw(const float *x, const float *dy, float *dw, int N, int H, int W, int C,
                        int K)
{
    for (int k = 0; k < K; k++)
        for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++)
                for (int c = 0; c < C; c++) {
                    double s = 0;
                    for (int n = 0; n < N; n++)
                        for (int h = 0; h < H; h++)
                            for (int ww = 0; ww < W; ww++) {
                                int hi = h + kh - 1, wi = ww + kw - 1;
                                if (hi >= 0 && hi < H && wi >= 0 && wi < W)
                                    s += (double)dy[((n * H + h) * W + ww) * K + k] *
                                         x[((n * H + hi) * W + wi) * C + c];
                            }
                    dw[((k * 3 + kh) * 3 + kw) * C + c] = (float)s;
                }
}

/* ---- convolution ------------------------------------------------------- */

enum { CN = 2, CH = 6, CW = 5, CC = 3, CK = 4 };

static void test_conv_fwd(vt_backend *be)
{
    float x[CN * CH * CW * CC], w[CK * 9 * CC], b[CK], y[CN * CH * CW * CK];
    fill(x, sizeof x / 4, 1);
    fill(w, sizeof w / 4, 2);
    fill(b, CK, 3);
    for (int relu = 0; relu < 2; relu++) {
        vt_tensor *tx = mk(be, 4, CN, CH, CW, CC, x), *tw = mk(be, 4, CK, 3, 3, CC, w);
        vt_tensor *tb = mk(be, 1, CK, 0, 0, 0, b), *ty = mk(be, 4, CN, CH, CW, CK, NULL);
        VT_CHECK(tx && tw && tb && ty);
        VT_CHECK_OK(vt_op_conv_fwd(be, tx, tw, tb, ty, relu));
        ref_conv(x, w, b, y, CN, CH, CW, CC, CK, relu);
        float *got = get(ty);
        int ok = vt_test_allclose("conv_fwd", got, y, sizeof y / 4, 1e-5, rtol_for(be));
        free(got);
        vt_tensor_free(tx); vt_tensor_free(tw); vt_tensor_free(tb); vt_tensor_free(ty);
        VT_CHECK(ok);
    }
}

/* The loss L = sum(r * conv(x, w, b)) is linear in each argument, so central
 * differences are exact up to rounding: compare them with the backward ops. */
static void test_conv_grad(vt_backend *be)
{
    const size_t nx = CN * CH * CW * CC, nw = CK * 9 * CC, ny = CN * CH * CW * CK;
    float x[CN * CH * CW * CC], w[CK * 9 * CC], b[CK], r[CN * CH * CW * CK];
    float y[CN * CH * CW * CK], fdx[CN * CH * CW * CC], fdw[CK * 9 * CC], fdb[CK];
    const float eps = 1e-2f;
    fill(x, nx, 4); fill(w, nw, 5); fill(b, CK, 6); fill(r, ny, 7);

    /* Finite differences on the double reference. */
    for (size_t i = 0; i < nx; i++) {
        float keep = x[i];
        x[i] = keep + eps; ref_conv(x, w, b, y, CN, CH, CW, CC, CK, 0);
        double lp = dot(r, y, ny);
        x[i] = keep - eps; ref_conv(x, w, b, y, CN, CH, CW, CC, CK, 0);
        fdx[i] = (float)((lp - dot(r, y, ny)) / (2 * eps));
        x[i] = keep;
    }
    for (size_t i = 0; i < nw; i++) {
        float keep = w[i];
        w[i] = keep + eps; ref_conv(x, w, b, y, CN, CH, CW, CC, CK, 0);
        double lp = dot(r, y, ny);
        w[i] = keep - eps; ref_conv(x, w, b, y, CN, CH, CW, CC, CK, 0);
        fdw[i] = (float)((lp - dot(r, y, ny)) / (2 * eps));
        w[i] = keep;
    }
    for (int k = 0; k < CK; k++) {
        double s = 0;
        for (size_t i = (size_t)k; i < ny; i += CK)
            s += r[i];
        fdb[k] = (float)s;
    }

    vt_tensor *tx = mk(be, 4, CN, CH, CW, CC, x), *tw = mk(be, 4, CK, 3, 3, CC, w);
    vt_tensor *tdy = mk(be, 4, CN, CH, CW, CK, r), *tdx = mk(be, 4, CN, CH, CW, CC, NULL);
    vt_tensor *tdw = mk(be, 4, CK, 3, 3, CC, NULL), *tdb = mk(be, 1, CK, 0, 0, 0, NULL);
    VT_CHECK(tx && tw && tdy && tdx && tdw && tdb);
    VT_CHECK_OK(vt_op_conv_bwd_data(be, tdy, tw, tdx));
    VT_CHECK_OK(vt_op_conv_bwd_filter(be, tx, tdy, tdw, tdb));
    float *gx = get(tdx), *gw = get(tdw), *gb = get(tdb);
    double rt = 1e-2 + rtol_for(be);
    int ok = vt_test_allclose("dL/dx", gx, fdx, nx, 2e-3, rt) &&
             vt_test_allclose("dL/dw", gw, fdw, nw, 2e-3, rt) &&
             vt_test_allclose("dL/db", gb, fdb, CK, 2e-3, rt);
    free(gx); free(gw); free(gb);
    vt_tensor_free(tx); vt_tensor_free(tw); vt_tensor_free(tdy);
    vt_tensor_free(tdx); vt_tensor_free(tdw); vt_tensor_free(tdb);
    VT_CHECK(ok);
}

/* A convolution big enough that the CPU backend splits the patch matrix
 * into several chunks (and a GPU picks real algorithms). */
static void test_conv_large(vt_backend *be)
{
    enum { N = 2, H = 32, W = 32, C = 64, K = 64 };
    size_t nx = (size_t)N * H * W * C, nw = (size_t)K * 9 * C, ny = (size_t)N * H * W * K;
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *y = malloc(ny * 4), b[K];
    fill(x, nx, 8); fill(w, nw, 9); fill(b, K, 10);
    vt_tensor *tx = mk(be, 4, N, H, W, C, x), *tw = mk(be, 4, K, 3, 3, C, w);
    vt_tensor *tb = mk(be, 1, K, 0, 0, 0, b), *ty = mk(be, 4, N, H, W, K, NULL);
    VT_CHECK(tx && tw && tb && ty);
    VT_CHECK_OK(vt_op_conv_fwd(be, tx, tw, tb, ty, 1));
    ref_conv(x, w, b, y, N, H, W, C, K, 1);
    float *got = get(ty);
    int ok = vt_test_allclose("conv_fwd 32x32x64", got, y, ny, 1e-4, rtol_for(be));
    free(got); free(x); free(w); free(y);
    vt_tensor_free(tx); vt_tensor_free(tw); vt_tensor_free(tb); vt_tensor_free(ty);
    VT_CHECK(ok);
}

/* The first layer's shapes (C <= 4 input channels, K a multiple of 64) on
 * b, for each activation dtype b has and C = 3 and 1: tiles of the CUDA
 * backend's direct kernel (8 rows x 128 columns x 64 channels) cut at every
 * edge, two channel groups, with and without ReLU.  bf16 inputs are bf16
 * values already; the tolerance covers the output's rounding to bf16 and
 * cuDNN's rounding of the weights to bf16 (2^-9 each). */
static int check_conv_first(vt_backend *b)
{
    enum { N = 2, H = 20, W = 150, K = 128 };
    vt_dtype dts[2] = {VT_F32, vt_backend_act_dtype(b, "bf16")};
    int ok = 1;
    for (int d = 0; d < 2 && ok; d++)
        for (int C = 3; C >= 1 && ok; C -= 2)
            for (int relu = 0; relu < 2 && ok; relu++) {
                size_t nx = (size_t)N * H * W * C, nw = (size_t)K * 9 * C;
                size_t ny = (size_t)N * H * W * K;
                float *x = malloc(nx * 4), *w = malloc(nw * 4), *y = malloc(ny * 4), bias[K];
                double tol = dts[d] == VT_BF16 ? 2e-2 : rtol_for(b);
                fill(x, nx, 40 + C); fill(w, nw, 41); fill(bias, K, 42);
                if (dts[d] == VT_BF16)
                    for (size_t i = 0; i < nx; i++)
                        x[i] = bf16_round(x[i]);
                vt_tensor *tx = mk_act(b, dts[d], 4, (int[]){N, H, W, C}, x);
                vt_tensor *ty = mk_act(b, dts[d], 4, (int[]){N, H, W, K}, NULL);
                vt_tensor *tw = mk(b, 4, K, 3, 3, C, w), *tb = mk(b, 1, K, 0, 0, 0, bias);
                char what[48];
                float *got = NULL;
                ok = tx && ty && tw && tb && vt_op_conv_fwd(b, tx, tw, tb, ty, relu) == 0 &&
                     (got = get(ty)) != NULL;
                ref_conv(x, w, bias, y, N, H, W, C, K, relu);
                snprintf(what, sizeof what, "conv_fwd %s c%d%s", dts[d] == VT_BF16 ? "bf16" : "f32",
                         C, relu ? " relu" : "");
                ok = ok && vt_test_allclose(what, got, y, ny, tol, tol);
                free(got); free(x); free(w); free(y);
                vt_tensor_free(tx); vt_tensor_free(ty); vt_tensor_free(tw); vt_tensor_free(tb);
            }
    return ok;
}

/* On the CUDA backend, once with each of the two ways the first layer can
 * run (a backend of its own for each VT_CUDA_SMALL_CONV), once with the
 * choice timed per shape (VT_CUDA_CONV_SEARCH=timed, whatever the test's
 * environment says), then as the given backend chooses. */
static void test_conv_first(vt_backend *be)
{
    static const char *const modes[3][2] = {
        {"VT_CUDA_SMALL_CONV", "own"}, {"VT_CUDA_SMALL_CONV", "cudnn"},
        {"VT_CUDA_CONV_SEARCH", "timed"}};
    for (int m = 0; m < 3 && strcmp(vt_backend_name(be), "cuda") == 0; m++) {
        const char *had = getenv(modes[m][0]);
        char *keep = had ? strdup(had) : NULL;
        vt_backend *b = NULL;
        printf("  %s=%s\n", modes[m][0], modes[m][1]);
        setenv(modes[m][0], modes[m][1], 1);
        int rc = vt_backend_create(&b, "cuda", 0);
        if (keep)
            setenv(modes[m][0], keep, 1);
        else
            unsetenv(modes[m][0]);
        free(keep);
        VT_CHECK_OK(rc);
        int ok = check_conv_first(b);
        vt_backend_free(b);
        VT_CHECK(ok);
    }
    VT_CHECK(check_conv_first(be));
}

/* ---- ReLU, pooling ----------------------------------------------------- */

static void test_relu_bwd(vt_backend *be)
{
    float y[8] = {0, 1, -0.0f, 2, 0, 3, 0.5f, 0}, dy[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float want[8] = {0, 2, 0, 4, 0, 6, 7, 0};
    vt_tensor *ty = mk(be, 1, 8, 0, 0, 0, y), *tdy = mk(be, 1, 8, 0, 0, 0, dy);
    VT_CHECK(ty && tdy);
    VT_CHECK_OK(vt_op_relu_bwd(be, ty, tdy));
    float *got = get(tdy);
    int ok = vt_test_allclose("relu_bwd", got, want, 8, 0, 0);
    free(got); vt_tensor_free(ty); vt_tensor_free(tdy);
    VT_CHECK(ok);
}

static void test_maxpool(vt_backend *be)
{
    enum { N = 2, H = 4, W = 6, C = 3 };
    float x[N * H * W * C], r[N * 2 * 3 * C], fd[N * H * W * C];
    const size_t nx = sizeof x / 4, ny = sizeof r / 4;
    /* Distinct values so the maximum of each window is unique. */
    for (size_t i = 0; i < nx; i++)
        x[i] = (float)vt_rng_below(3, 1, i, 1000) + (float)i * 1e-3f;
    fill(r, ny, 11);
    vt_tensor *tx = mk(be, 4, N, H, W, C, x), *ty = mk(be, 4, N, H / 2, W / 2, C, NULL);
    vt_tensor *tdy = mk(be, 4, N, H / 2, W / 2, C, r), *tdx = mk(be, 4, N, H, W, C, NULL);
    VT_CHECK(tx && ty && tdy && tdx);
    VT_CHECK_OK(vt_op_maxpool_fwd(be, tx, ty));
    float *y = get(ty);
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H / 2; h++)
            for (int w = 0; w < W / 2; w++)
                for (int c = 0; c < C; c++) {
                    float m = -1e30f;
                    for (int a = 0; a < 2; a++)
                        for (int bb = 0; bb < 2; bb++) {
                            float v = x[((n * H + 2 * h + a) * W + 2 * w + bb) * C + c];
                            m = v > m ? v : m;
                        }
                    VT_CHECK_NEAR(y[((n * H / 2 + h) * W / 2 + w) * C + c], m, 0);
                }
    /* Gradient: d/dx_i sum(r * pool(x)) is r of the window where x_i is the max. */
    memset(fd, 0, sizeof fd);
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H / 2; h++)
            for (int w = 0; w < W / 2; w++)
                for (int c = 0; c < C; c++)
                    for (int a = 0; a < 2; a++)
                        for (int bb = 0; bb < 2; bb++) {
                            size_t i = ((size_t)(n * H + 2 * h + a) * W + 2 * w + bb) * C + c;
                            if (x[i] == y[((n * H / 2 + h) * W / 2 + w) * C + c])
                                fd[i] = r[((n * H / 2 + h) * W / 2 + w) * C + c];
                        }
    VT_CHECK_OK(vt_op_maxpool_bwd(be, tx, ty, tdy, tdx));
    float *gx = get(tdx);
    int ok = vt_test_allclose("maxpool_bwd", gx, fd, nx, 0, 0);
    free(gx); free(y);
    vt_tensor_free(tx); vt_tensor_free(ty); vt_tensor_free(tdy); vt_tensor_free(tdx);
    VT_CHECK(ok);
}

/* Ties (after ReLU most windows are all zero) send the gradient to the first
 * element of the window only, as PyTorch does. */
static void test_maxpool_ties(vt_backend *be)
{
    float x[4] = {0, 0, 0, 0}, dy[1] = {5}, want[4] = {5, 0, 0, 0};
    vt_tensor *tx = mk(be, 4, 1, 2, 2, 1, x), *ty = mk(be, 4, 1, 1, 1, 1, NULL);
    vt_tensor *tdy = mk(be, 4, 1, 1, 1, 1, dy), *tdx = mk(be, 4, 1, 2, 2, 1, NULL);
    VT_CHECK(tx && ty && tdy && tdx);
    VT_CHECK_OK(vt_op_maxpool_fwd(be, tx, ty));
    VT_CHECK_OK(vt_op_maxpool_bwd(be, tx, ty, tdy, tdx));
    float *got = get(tdx);
    int ok = vt_test_allclose("maxpool ties", got, want, 4, 0, 0);
    free(got);
    vt_tensor_free(tx); vt_tensor_free(ty); vt_tensor_free(tdy); vt_tensor_free(tdx);
    VT_CHECK(ok);
}

/* ---- dense ------------------------------------------------------------- */

static void ref_dense(const float *x, const float *w, const float *b, float *y, int N,
                      int IN, int OUT)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) {
            double s = b[o];
            for (int i = 0; i < IN; i++)
                s += (double)x[n * IN + i] * w[o * IN + i];
            y[n * OUT + o] = (float)s;
        }
}

static void test_dense(vt_backend *be)
{
    enum { N = 3, IN = 7, OUT = 5 };
    float x[N * IN], w[OUT * IN], b[OUT], r[N * OUT], y[N * OUT];
    float fdx[N * IN], fdw[OUT * IN], fdb[OUT];
    const float eps = 1e-2f;
    fill(x, N * IN, 12); fill(w, OUT * IN, 13); fill(b, OUT, 14); fill(r, N * OUT, 15);
    for (int i = 0; i < N * IN; i++) {
        float keep = x[i];
        x[i] = keep + eps; ref_dense(x, w, b, y, N, IN, OUT);
        double lp = dot(r, y, N * OUT);
        x[i] = keep - eps; ref_dense(x, w, b, y, N, IN, OUT);
        fdx[i] = (float)((lp - dot(r, y, N * OUT)) / (2 * eps));
        x[i] = keep;
    }
    for (int i = 0; i < OUT * IN; i++) {
        float keep = w[i];
        w[i] = keep + eps; ref_dense(x, w, b, y, N, IN, OUT);
        double lp = dot(r, y, N * OUT);
        w[i] = keep - eps; ref_dense(x, w, b, y, N, IN, OUT);
        fdw[i] = (float)((lp - dot(r, y, N * OUT)) / (2 * eps));
        w[i] = keep;
    }
    for (int o = 0; o < OUT; o++)
        fdb[o] = r[o] + r[OUT + o] + r[2 * OUT + o];
    ref_dense(x, w, b, y, N, IN, OUT);

    /* x given as a 4-D tensor: dense layers flatten everything after N. */
    vt_tensor *tx = mk(be, 4, N, 1, IN, 1, x), *tw = mk(be, 2, OUT, IN, 0, 0, w);
    vt_tensor *tb = mk(be, 1, OUT, 0, 0, 0, b), *ty = mk(be, 2, N, OUT, 0, 0, NULL);
    vt_tensor *tdy = mk(be, 2, N, OUT, 0, 0, r), *tdx = mk(be, 4, N, 1, IN, 1, NULL);
    vt_tensor *tdw = mk(be, 2, OUT, IN, 0, 0, NULL), *tdb = mk(be, 1, OUT, 0, 0, 0, NULL);
    VT_CHECK(tx && tw && tb && ty && tdy && tdx && tdw && tdb);
    VT_CHECK_OK(vt_op_dense_fwd(be, tx, tw, tb, ty, 0));
    VT_CHECK_OK(vt_op_dense_bwd(be, tx, tw, tdy, tdx, tdw, tdb));
    float *gy = get(ty), *gx = get(tdx), *gw = get(tdw), *gb = get(tdb);
    double rt = 1e-2 + rtol_for(be);
    int ok = vt_test_allclose("dense y", gy, y, N * OUT, 1e-5, rtol_for(be)) &&
             vt_test_allclose("dense dx", gx, fdx, N * IN, 2e-3, rt) &&
             vt_test_allclose("dense dw", gw, fdw, OUT * IN, 2e-3, rt) &&
             vt_test_allclose("dense db", gb, fdb, OUT, 1e-5, rtol_for(be));
    /* With ReLU the output is clamped. */
    VT_CHECK_OK(vt_op_dense_fwd(be, tx, tw, tb, ty, 1));
    float *gr = get(ty);
    for (int i = 0; i < N * OUT; i++)
        if (gr[i] != (y[i] > 0 ? gr[i] : 0.0f) || gr[i] < 0)
            ok = 0;
    free(gy); free(gx); free(gw); free(gb); free(gr);
    vt_tensor_free(tx); vt_tensor_free(tw); vt_tensor_free(tb); vt_tensor_free(ty);
    vt_tensor_free(tdy); vt_tensor_free(tdx); vt_tensor_free(tdw); vt_tensor_free(tdb);
    VT_CHECK(ok);
}

/* ---- the backend's storage precision for activations --------------------- */

/* The paths a bf16 job takes that the f32 cases above do not: the first
 * layer's 3 channels (padded to 8 on the GPU) with bias and ReLU fused,
 * a wider convolution, its weight gradient from bf16 x and dy, and a dense
 * layer with the bias+ReLU epilogue.  The reference uses the inputs rounded
 * to bf16, so what remains is the output's rounding (2^-9) and the
 * accumulation order; on the CPU (no bf16 storage) the inputs' rounding. */
static void test_act_bf16(vt_backend *be)
{
    enum { N = 2, H = 8, W = 8, K = 16, IN = 96, OUT = 24 };
    vt_dtype dt = vt_backend_act_dtype(be, "bf16");
    double tol = 2e-2;
    int ok = 1;
    for (int C = 3; C <= 16 && ok; C += 13) {
        size_t nx = (size_t)N * H * W * C, nw = (size_t)K * 9 * C, ny = (size_t)N * H * W * K;
        float *x = malloc(nx * 4), *w = malloc(nw * 4), *y = malloc(ny * 4), b[K];
        float *dy = malloc(ny * 4), *dw = malloc(nw * 4);
        fill(x, nx, 30); fill(w, nw, 31); fill(b, K, 32); fill(dy, ny, 33);
        for (size_t i = 0; i < nx; i++)
            x[i] = bf16_round(x[i]);
        for (size_t i = 0; i < ny; i++)
            dy[i] = bf16_round(dy[i]);
        float *wr = malloc(nw * 4);
        for (size_t i = 0; i < nw; i++)
            wr[i] = bf16_round(w[i]);
        ref_conv_dw(x, dy, dw, N, H, W, C, K);
        vt_tensor *tx = mk_act(be, dt, 4, (int[]){N, H, W, C}, x);
        vt_tensor *ty = mk_act(be, dt, 4, (int[]){N, H, W, K}, NULL);
        vt_tensor *tdy = mk_act(be, dt, 4, (int[]){N, H, W, K}, dy);
        vt_tensor *tw = mk(be, 4, K, 3, 3, C, w), *tb = mk(be, 1, K, 0, 0, 0, b);
        vt_tensor *tdw = mk(be, 4, K, 3, 3, C, NULL), *tdb = mk(be, 1, K, 0, 0, 0, NULL);
        VT_CHECK(tx && ty && tdy && tw && tb && tdw && tdb);
        ref_conv(x, wr, b, y, N, H, W, C, K, 1);
        VT_CHECK_OK(vt_op_conv_fwd(be, tx, tw, tb, ty, 1));
        VT_CHECK_OK(vt_op_conv_bwd_filter(be, tx, tdy, tdw, tdb));
        float *gy = get(ty), *gw = get(tdw);
        char what[32];
        snprintf(what, sizeof what, "conv_fwd+relu c%d", C);
        ok = vt_test_allclose(what, gy, y, ny, tol, tol);
        snprintf(what, sizeof what, "conv_bwd_filter c%d", C);
        ok = ok && vt_test_allclose(what, gw, dw, nw, tol, tol);
        free(gy); free(gw); free(x); free(w); free(wr); free(y); free(dy); free(dw);
        vt_tensor_free(tx); vt_tensor_free(ty); vt_tensor_free(tdy); vt_tensor_free(tw);
        vt_tensor_free(tb); vt_tensor_free(tdw); vt_tensor_free(tdb);
    }

    float x[N * IN], w[OUT * IN], wr[OUT * IN], b[OUT], y[N * OUT];
    fill(x, N * IN, 34); fill(w, OUT * IN, 35); fill(b, OUT, 36);
    for (int i = 0; i < N * IN; i++)
        x[i] = bf16_round(x[i]);
    for (int i = 0; i < OUT * IN; i++)
        wr[i] = bf16_round(w[i]);
    ref_dense(x, wr, b, y, N, IN, OUT);
    for (int i = 0; i < N * OUT; i++)
        y[i] = y[i] > 0 ? y[i] : 0.0f;
    vt_tensor *tx = mk_act(be, dt, 2, (int[]){N, IN}, x);
    vt_tensor *ty = mk_act(be, dt, 2, (int[]){N, OUT}, NULL);
    vt_tensor *tw = mk(be, 2, OUT, IN, 0, 0, w), *tb = mk(be, 1, OUT, 0, 0, 0, b);
    VT_CHECK(tx && ty && tw && tb);
    VT_CHECK_OK(vt_op_dense_fwd(be, tx, tw, tb, ty, 1));
    float *gy = get(ty);
    ok = ok && vt_test_allclose("dense_fwd+relu", gy, y, N * OUT, tol, tol);
    free(gy);
    vt_tensor_free(tx); vt_tensor_free(ty); vt_tensor_free(tw); vt_tensor_free(tb);
    VT_CHECK(ok);
}

/* ---- softmax cross-entropy --------------------------------------------- */

static double ref_xent(const float *z, const int32_t *lab, int N, int C)
{
    double total = 0;
    for (int n = 0; n < N; n++) {
        double m = z[n * C], s = 0;
        for (int c = 1; c < C; c++)
            m = z[n * C + c] > m ? z[n * C + c] : m;
        for (int c = 0; c < C; c++)
            s += exp(z[n * C + c] - m);
        total += log(s) + m - z[n * C + lab[n]];
    }
    return total;
}

/* softmax_xent and a sync: the first error of the two. */
static int xent_then_sync(vt_backend *be, const vt_tensor *z, const vt_tensor *labels,
                          vt_xent_sums *sums)
{
    int rc = vt_op_softmax_xent(be, z, labels, NULL, 0.0f, NULL, sums);
    return rc < 0 ? rc : vt_backend_sync(be);
}

static void test_softmax_xent(vt_backend *be)
{
    enum { N = 4, C = 5 };
    float z[N * C], fd[N * C];
    int32_t lab[N] = {0, 4, 2, 2};
    const float eps = 1e-2f;
    fill(z, N * C, 16);
    z[3] = 800.0f; /* huge logit: the stable form must not overflow */
    for (int i = 0; i < N * C; i++) {
        float keep = z[i];
        z[i] = keep + eps;
        double lp = ref_xent(z, lab, N, C) / N;
        z[i] = keep - eps;
        fd[i] = (float)((lp - ref_xent(z, lab, N, C) / N) / (2 * eps));
        z[i] = keep;
    }
    int dims[1] = {N};
    vt_tensor *tz = mk(be, 2, N, C, 0, 0, z), *tg = mk(be, 2, N, C, 0, 0, NULL);
    vt_tensor *tp = mk(be, 2, N, C, 0, 0, NULL), *tl = NULL;
    VT_CHECK(tz && tg && tp);
    VT_CHECK_OK(vt_tensor_new(&tl, be, VT_I32, 1, dims));
    VT_CHECK_OK(vt_tensor_upload(tl, lab));
    vt_xent_sums sums = {0}, twice = {0.5, 1};
    VT_CHECK_OK(vt_op_softmax_xent(be, tz, tl, tg, 1.0f / N, tp, &sums));
    /* a second sums object, added to twice before any sync: results are
     * delivered in order, each to its own object, by the sync at the latest */
    VT_CHECK_OK(vt_op_softmax_xent(be, tz, tl, NULL, 0.0f, NULL, &twice));
    VT_CHECK_OK(vt_op_softmax_xent(be, tz, tl, NULL, 0.0f, NULL, &twice));
    VT_CHECK_OK(vt_op_softmax_xent(be, tz, tl, NULL, 0.0f, NULL, NULL));
    VT_CHECK_OK(vt_backend_sync(be));
    double loss = sums.loss;
    int correct = sums.correct;
    VT_CHECK_NEAR(loss, ref_xent(z, lab, N, C), 1e-4 * N);
    VT_CHECK(isfinite(loss));
    VT_CHECK_NEAR(twice.loss, 0.5 + 2 * loss, 1e-9 * N);
    VT_CHECK_INT(twice.correct, 1 + 2 * correct);
    int want_correct = 0;
    for (int n = 0; n < N; n++) {
        int best = 0;
        for (int c = 1; c < C; c++)
            if (z[n * C + c] > z[n * C + best])
                best = c;
        want_correct += best == lab[n];
    }
    VT_CHECK_INT(correct, want_correct);
    float *g = get(tg), *p = get(tp);
    int ok = vt_test_allclose("dxent/dz", g, fd, N * C, 2e-3, 1e-2);
    for (int n = 0; n < N; n++) {
        double s = 0;
        for (int c = 0; c < C; c++)
            s += p[n * C + c];
        if (fabs(s - 1) > 1e-5)
            ok = 0;
    }
    free(g); free(p);
    /* a label outside 0..C-1: refused by the op or, deferred, by the sync */
    lab[2] = C;
    VT_CHECK_OK(vt_tensor_upload(tl, lab));
    VT_CHECK_ERR(xent_then_sync(be, tz, tl, &sums), VT_EINVAL, "label 5 outside 0..4");
    VT_CHECK_OK(vt_backend_sync(be)); /* reported once */
    vt_tensor_free(tz); vt_tensor_free(tg); vt_tensor_free(tp); vt_tensor_free(tl);
    VT_CHECK(ok);
}

/* ---- dropout ----------------------------------------------------------- */

static void test_dropout(vt_backend *be)
{
    enum { N = 20000 };
    float *ones = malloc(N * 4), *x, *m, *x2;
    for (int i = 0; i < N; i++)
        ones[i] = 1.0f;
    vt_tensor *tx = mk(be, 1, N, 0, 0, 0, ones), *tm = mk(be, 1, N, 0, 0, 0, NULL);
    VT_CHECK(tx && tm);
    VT_CHECK_OK(vt_op_dropout_fwd(be, tx, tm, 0.25f, 99, 7));
    x = get(tx);
    m = get(tm);
    int zeros = 0;
    for (int i = 0; i < N; i++) {
        VT_CHECK(x[i] == 0.0f || fabsf(x[i] - 1.0f / 0.75f) < 1e-6f);
        VT_CHECK(x[i] == m[i]);
        /* The mask is a pure function of (seed, stream, index). */
        VT_CHECK((x[i] == 0.0f) == (vt_rng_uniform(99, 7, (uint64_t)i) < 0.25f));
        zeros += x[i] == 0.0f;
    }
    VT_CHECK(abs(zeros - N / 4) < N / 50);
    /* Backward multiplies by the same mask. */
    VT_CHECK_OK(vt_tensor_upload(tx, ones));
    VT_CHECK_OK(vt_op_dropout_bwd(be, tm, tx));
    x2 = get(tx);
    int ok = vt_test_allclose("dropout_bwd", x2, m, N, 0, 0);
    /* A different stream gives a different mask. */
    VT_CHECK_OK(vt_op_dropout_fwd(be, tx, tm, 0.25f, 99, 8));
    float *m2 = get(tm);
    int same = 0;
    for (int i = 0; i < N; i++)
        same += m2[i] == m[i];
    free(ones); free(x); free(m); free(x2); free(m2);
    vt_tensor_free(tx); vt_tensor_free(tm);
    VT_CHECK(ok);
    VT_CHECK(same < N * 0.7);
}

/* ---- SGD --------------------------------------------------------------- */

/* Two steps by hand, Keras formulas:
 *   v <- m*v - lr*g;  nesterov: w <- w + m*v - lr*g;  else w <- w + v. */
static void test_sgd(vt_backend *be)
{
    float w0[3] = {1.0f, -2.0f, 0.5f}, g[3] = {0.5f, 0.25f, -1.0f}, zero[3] = {0};
    for (int nesterov = 0; nesterov < 2; nesterov++) {
        vt_sgd_args a = {.lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.01f,
                         .nesterov = nesterov};
        double w[3], v[3] = {0, 0, 0};
        for (int i = 0; i < 3; i++)
            w[i] = w0[i];
        vt_tensor *tw = mk(be, 1, 3, 0, 0, 0, w0), *tg = mk(be, 1, 3, 0, 0, 0, g);
        vt_tensor *tv = mk(be, 1, 3, 0, 0, 0, zero);
        VT_CHECK(tw && tg && tv);
        for (int step = 0; step < 2; step++) {
            VT_CHECK_OK(vt_op_sgd_update(be, tw, tg, tv, &a));
            for (int i = 0; i < 3; i++) {
                double gi = g[i] + 0.01 * w[i];
                v[i] = 0.9 * v[i] - 0.1 * gi;
                w[i] = nesterov ? w[i] + 0.9 * v[i] - 0.1 * gi : w[i] + v[i];
            }
        }
        float *gw = get(tw), *gv = get(tv), want_w[3], want_v[3];
        for (int i = 0; i < 3; i++) {
            want_w[i] = (float)w[i];
            want_v[i] = (float)v[i];
        }
        int ok = vt_test_allclose("sgd w", gw, want_w, 3, 1e-6, 1e-6) &&
                 vt_test_allclose("sgd v", gv, want_v, 3, 1e-6, 1e-6);
        free(gw); free(gv);
        vt_tensor_free(tw); vt_tensor_free(tg); vt_tensor_free(tv);
        VT_CHECK(ok);
    }
}

/* ---- preprocessing ----------------------------------------------------- */

static void test_images_to_input(vt_backend *be)
{
    const uint8_t img[2 * 3] = {255, 128, 0, 10, 20, 30}; /* 1x1x2 image, RGB */
    float want_caffe[6] = {0 - 103.939f, 128 - 116.779f, 255 - 123.68f,
                           30 - 103.939f, 20 - 116.779f, 10 - 123.68f};
    float want_torch[6];
    const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    for (int p = 0; p < 2; p++)
        for (int c = 0; c < 3; c++)
            want_torch[p * 3 + c] = ((float)img[p * 3 + c] / 255.0f - mean[c]) / sd[c];
    vt_tensor *x = mk(be, 4, 1, 1, 2, 3, NULL);
    VT_CHECK(x);
    VT_CHECK_OK(vt_op_images_to_input(be, img, 1, 1, 2, VT_PREP_CAFFE, x));
    float *got = get(x);
    int ok = vt_test_allclose("caffe", got, want_caffe, 6, 1e-4, 1e-6);
    free(got);
    VT_CHECK_OK(vt_op_images_to_input(be, img, 1, 1, 2, VT_PREP_TORCH, x));
    got = get(x);
    ok = ok && vt_test_allclose("torch", got, want_torch, 6, 1e-5, 1e-6);
    free(got);
    vt_tensor_free(x);
    VT_CHECK(ok);
}

/* The backend resizing decoded images (resize to the box's side, cut the
 * window, mirror) gives exactly what engine/image.c's host resize followed
 * by the same cut, vt_image_flip and vt_op_images_to_input give. */
static void test_images_resize(vt_backend *be)
{
    enum { S = 12, N = 5 };
    /* sw, sh, side, ox, oy, flip: down, up + mirror, same size with a
     * window, mixed + window + mirror, one row */
    static const int cfg[N][6] = {{31, 17, 12, 0, 0, 0}, {5, 9, 12, 0, 0, 1},
                                  {15, 15, 15, 3, 1, 0}, {40, 7, 14, 2, 0, 1},
                                  {13, 1, 12, 0, 0, 0}};
    vt_image_box box[N];
    size_t bytes = 1; /* odd offsets: the backend must not assume alignment */
    for (int i = 0; i < N; i++) {
        box[i] = (vt_image_box){.offset = bytes, .sw = cfg[i][0], .sh = cfg[i][1],
                                .rw = cfg[i][2], .rh = cfg[i][2], .ox = cfg[i][3],
                                .oy = cfg[i][4], .flip = cfg[i][5]};
        bytes += (size_t)cfg[i][0] * cfg[i][1] * 3 + 2;
    }
    uint8_t *img = malloc(bytes), *ref = malloc((size_t)N * S * S * 3), *big = malloc(15 * 15 * 3);
    for (size_t k = 0; k < bytes; k++)
        img[k] = (uint8_t)vt_rng_below(77, 1, k, 256);
    for (int i = 0; i < N; i++) {
        const vt_image_box *b = &box[i];
        uint8_t *out = ref + (size_t)i * S * S * 3;
        VT_CHECK_OK(vt_image_resize(img + b->offset, b->sw, b->sh, big, b->rw, b->rh));
        for (int y = 0; y < S; y++)
            memcpy(out + (size_t)y * S * 3, big + ((size_t)(y + b->oy) * b->rw + b->ox) * 3,
                   S * 3);
        if (b->flip)
            vt_image_flip(out, S, S);
    }
    vt_tensor *x = mk(be, 4, N, S, S, 3, NULL), *want = mk(be, 4, N, S, S, 3, NULL);
    VT_CHECK(x && want);
    int ok = 1;
    for (int prep = 0; prep < 2; prep++) {
        vt_preprocess pp = prep ? VT_PREP_TORCH : VT_PREP_CAFFE;
        VT_CHECK_OK(vt_op_images_to_input(be, ref, N, S, S, pp, want));
        VT_CHECK_OK(vt_op_images_resize_to_input(be, img, bytes, box, N, pp, x));
        float *g = get(x), *w = get(want);
        ok = ok && vt_test_allclose(prep ? "torch" : "caffe", g, w, (size_t)N * S * S * 3, 0, 0);
        free(g);
        free(w);
    }
    /* A window outside the resized image, or pixels past the buffer. */
    vt_image_box bad = box[2];
    bad.ox = 4;
    VT_CHECK_OK(vt_tensor_reshape(x, 4, (int[]){1, S, S, 3}));
    VT_CHECK_ERR(vt_op_images_resize_to_input(be, img, bytes, &bad, 1, VT_PREP_CAFFE, x),
                 VT_EINVAL, "does not fit");
    bad = box[N - 1];
    VT_CHECK_ERR(vt_op_images_resize_to_input(be, img, bad.offset + 13 * 3 - 1, &bad, 1,
                                              VT_PREP_CAFFE, x),
                 VT_EINVAL, "does not fit");
    vt_tensor_free(x);
    vt_tensor_free(want);
    free(img);
    free(ref);
    free(big);
    VT_CHECK(ok);
}

/* Image batches in vt_backend_host_alloc memory: the upload may run on
 * after the call, so the buffer is rewritten only after a fence; each batch
 * must arrive intact. */
static void test_host_buffers(vt_backend *be)
{
    enum { N = 3, S = 16, PIX = N * S * S * 3 };
    uint8_t *buf = vt_backend_host_alloc(be, PIX);
    VT_CHECK(buf);
    vt_tensor *x[2] = {mk(be, 4, N, S, S, 3, NULL), mk(be, 4, N, S, S, 3, NULL)};
    VT_CHECK(x[0] && x[1]);
    for (int round = 0; round < 2; round++) {
        VT_CHECK_OK(vt_backend_host_fence(be));
        for (int i = 0; i < PIX; i++)
            buf[i] = (uint8_t)(i * (round ? 7 : 3) + round);
        VT_CHECK_OK(vt_op_images_to_input(be, buf, N, S, S, VT_PREP_CAFFE, x[round]));
    }
    VT_CHECK_OK(vt_backend_host_fence(be));
    int ok = 1;
    for (int round = 0; round < 2 && ok; round++) {
        float *got = get(x[round]);
        for (int p = 0; p < N * S * S && ok; p++) {
            /* caffe: channel 0 is blue (input channel 2) minus its mean */
            uint8_t blue = (uint8_t)((p * 3 + 2) * (round ? 7 : 3) + round);
            ok = got[p * 3] == (float)blue - 103.939f;
        }
        free(got);
    }
    vt_backend_host_free(be, buf);
    vt_tensor_free(x[0]);
    vt_tensor_free(x[1]);
    VT_CHECK(ok);
}

/* ---- row moves and host tensors ---------------------------------------- */

/* A host tensor (n, row) of dtype dt with the values of host[]. */
static vt_tensor *mk_host(vt_backend *be, vt_dtype dt, int n, int row, const float *host)
{
    vt_tensor *t = NULL;
    if (vt_tensor_new_host(&t, be, dt, 2, (int[]){n, row}) < 0)
        return NULL;
    if (host && vt_tensor_upload(t, host) < 0) {
        vt_tensor_free(t);
        return NULL;
    }
    return t;
}

/* Scatter into a host cache, gather back into a device batch, for a row of
 * `row` floats (16 floats: the 16-byte path on CUDA; 3: the byte path). */
static void rows_case(vt_backend *be, vt_dtype dt, int row)
{
    enum { N = 6, CAP = 10 };
    const int into[N] = {7, 2, 9, 0, 5, 1}, back[N] = {9, 9, 0, 7, 1, 2};
    float src[N * 16], want[N * 16], zeros[CAP * 16] = {0};
    vt_tensor *a = NULL, *b = NULL, *cache = mk_host(be, dt, CAP, row, zeros), *dev = NULL;
    VT_CHECK_OK(vt_tensor_new(&a, be, dt, 2, (int[]){N, row}));
    VT_CHECK_OK(vt_tensor_new(&b, be, dt, 2, (int[]){N, row}));
    VT_CHECK_OK(vt_tensor_new(&dev, be, dt, 2, (int[]){CAP, row}));
    VT_CHECK(cache != NULL);
    if (!a || !b || !cache || !dev)
        goto done;
    fill(src, (size_t)N * row, 7);
    if (dt == VT_BF16) /* values bf16 holds exactly, so the comparison is exact */
        for (int i = 0; i < N * row; i++)
            src[i] = (float)(int)(src[i] * 64) / 64;
    VT_CHECK_OK(vt_tensor_upload(a, src));
    VT_CHECK_OK(vt_tensor_scatter_rows(cache, into, a, N));
    VT_CHECK_OK(vt_tensor_scatter_rows(dev, into, a, N));
    VT_CHECK_OK(vt_tensor_gather_rows(b, cache, back, N));
    for (int i = 0; i < N; i++) {
        int k = 0; /* which row of src went to cache row back[i] */
        while (into[k] != back[i])
            k++;
        memcpy(want + i * row, src + k * row, sizeof(float) * (size_t)row);
    }
    float *got = get(b);
    VT_CHECK_CLOSE("gather from a host cache", got, want, (size_t)N * row, 0, 0);
    free(got);
    VT_CHECK_OK(vt_tensor_gather_rows(b, dev, back, N));
    got = get(b);
    VT_CHECK_CLOSE("gather from a device cache", got, want, (size_t)N * row, 0, 0);
    free(got);
    got = get(cache); /* rows never written stay zero */
    VT_CHECK(got[3 * row] == 0.0f && got[8 * row + row - 1] == 0.0f);
    free(got);
done:
    vt_tensor_free(a); vt_tensor_free(b); vt_tensor_free(cache); vt_tensor_free(dev);
}

static void test_rows(vt_backend *be)
{
    rows_case(be, VT_F32, 16);
    rows_case(be, VT_F32, 3);
    if (vt_backend_act_dtype(be, "bf16") == VT_BF16) {
        rows_case(be, VT_BF16, 16);
        rows_case(be, VT_BF16, 3);
    }
}

static void test_host_tensors(vt_backend *be)
{
    size_t dev0, dev1, host0 = vt_backend_host_memory(be);
    vt_tensor *h = mk_host(be, VT_F32, 4, 8, NULL), *d = mk(be, 2, 4, 8, 0, 0, NULL);
    vt_tensor *e = mk(be, 2, 3, 8, 0, 0, NULL), *odd = mk(be, 2, 4, 5, 0, 0, NULL);
    VT_CHECK(h && d && e && odd);
    if (!h || !d || !e || !odd)
        goto done;
    VT_CHECK(vt_tensor_is_host(h) && !vt_tensor_is_host(d));
    VT_CHECK(vt_backend_host_memory(be) == host0 + 4 * 8 * sizeof(float));
    vt_backend_memory(be, &dev0, NULL);
    /* only rows, transfers and freeing take a host tensor */
    VT_CHECK_ERR(vt_op_relu_bwd(be, h, d), VT_EINVAL, "host tensor");
    VT_CHECK_ERR(vt_op_dense_fwd(be, h, d, e, d, 0), VT_EINVAL, "host tensor");
    VT_CHECK_ERR(vt_tensor_copy(d, h), VT_EINVAL, "host tensor");
    VT_CHECK_ERR(vt_tensor_zero(h), VT_EINVAL, "host tensor");
    VT_CHECK_ERR(vt_tensor_copy_rows(d, 0, h, 0, 1), VT_EINVAL, "host tensor");
    /* row maps are checked */
    VT_CHECK_ERR(vt_tensor_gather_rows(d, h, (int[]){0, 1, 4, 2}, 4), VT_EINVAL, "outside");
    VT_CHECK_ERR(vt_tensor_gather_rows(d, h, (int[]){0, -1}, 2), VT_EINVAL, "outside");
    VT_CHECK_ERR(vt_tensor_scatter_rows(h, (int[]){1, 3, 1}, e, 3), VT_EINVAL, "twice");
    VT_CHECK_ERR(vt_tensor_gather_rows(e, h, (int[]){0, 1, 2, 3}, 4), VT_EINVAL, "4 rows");
    VT_CHECK_ERR(vt_tensor_gather_rows(odd, h, (int[]){0}, 1), VT_EINVAL, "row sizes");
    VT_CHECK_ERR(vt_tensor_gather_rows(d, d, (int[]){0}, 1), VT_EINVAL, "one tensor");
    VT_CHECK_OK(vt_tensor_gather_rows(d, h, NULL, 0));
    vt_backend_memory(be, &dev1, NULL);
    VT_CHECK(dev1 == dev0);
done:
    vt_tensor_free(h); vt_tensor_free(d); vt_tensor_free(e); vt_tensor_free(odd);
    VT_CHECK(vt_backend_host_memory(be) == host0);
}

/* Row views: a convolution from rows 1..2 of x into rows 1..2 of y equals
 * those rows of the convolution of all of x, leaves y's other rows alone,
 * and neither allocates nor frees device memory; bad views are refused. */
static void test_view_rows(vt_backend *be)
{
    enum { N = 4, H = 5, W = 4, C = 3, K = 8 };
    float x[N * H * W * C], w[K * 9 * C], b[K], want[N * H * W * K], got[N * H * W * K];
    size_t dev0, dev1, img = (size_t)H * W * K;
    fill(x, sizeof x / 4, 50); fill(w, sizeof w / 4, 51); fill(b, K, 52);
    ref_conv(x, w, b, want, N, H, W, C, K, 1);
    vt_tensor *tx = mk(be, 4, N, H, W, C, x), *tw = mk(be, 4, K, 3, 3, C, w);
    vt_tensor *tb = mk(be, 1, K, 0, 0, 0, b), *ty = mk(be, 4, N, H, W, K, NULL);
    vt_tensor *h = mk_host(be, VT_F32, 4, 8, NULL), *vx = NULL, *vy = NULL, *vv = NULL;
    VT_CHECK(tx && tw && tb && ty && h);
    vt_backend_memory(be, &dev0, NULL);
    VT_CHECK_OK(vt_tensor_view_rows(&vx, tx, 1, 2));
    VT_CHECK_OK(vt_tensor_view_rows(&vy, ty, 1, 2));
    VT_CHECK(vt_tensor_dim(vx, 0) == 2 && vt_tensor_numel(vy) == 2 * img);
    VT_CHECK_OK(vt_op_conv_fwd(be, vx, tw, tb, vy, 1));
    VT_CHECK_OK(vt_tensor_download(ty, got));
    int ok = vt_test_allclose("conv_fwd rows 1..2", got + img, want + img, 2 * img, 1e-5,
                              rtol_for(be));
    for (size_t i = 0; i < img; i++) /* rows 0 and 3 untouched */
        ok &= got[i] == 0.0f && got[3 * img + i] == 0.0f;
    VT_CHECK(ok);
    VT_CHECK_ERR(vt_tensor_view_rows(&vv, tx, 3, 2), VT_EINVAL, "outside");
    VT_CHECK_ERR(vt_tensor_view_rows(&vv, tx, -1, 1), VT_EINVAL, "outside");
    VT_CHECK_ERR(vt_tensor_view_rows(&vv, vx, 0, 1), VT_EINVAL, "not a view");
    VT_CHECK_ERR(vt_tensor_view_rows(&vv, h, 0, 1), VT_EINVAL, "device tensor");
    vt_tensor_free(vx);
    vt_tensor_free(vy);
    vt_backend_memory(be, &dev1, NULL);
    VT_CHECK(dev1 == dev0);
    vt_tensor_free(tx); vt_tensor_free(tw); vt_tensor_free(tb); vt_tensor_free(ty);
    vt_tensor_free(h);
}

/* A bf16 tensor larger than the CUDA backend's staging piece (4 Mi
 * elements) goes up and comes back whole, every piece in its place. */
static void test_bf16_transfer(vt_backend *be)
{
    const size_t n = 9000001; /* two whole pieces and a part */
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    vt_tensor *t = NULL;
    size_t bad = 0;
    VT_CHECK(x && y);
    if (!x || !y)
        goto done;
    for (size_t i = 0; i < n; i++) /* 7 significant bits: exact in bf16; scaled per piece */
        x[i] = (float)((int)(i % 127) - 63) * (float)(1 << (i >> 22));
    t = mk_act(be, vt_backend_act_dtype(be, "bf16"), 1, (int[]){(int)n}, x);
    VT_CHECK(t != NULL);
    if (!t)
        goto done;
    VT_CHECK_OK(vt_tensor_download(t, y));
    for (size_t i = 0; i < n; i++)
        bad += x[i] != y[i];
    VT_CHECK(bad == 0);
done:
    vt_tensor_free(t);
    free(x);
    free(y);
}

/* vt_backend_memory()'s high-water mark keeps a freed tensor's bytes, and
 * restarts from what is in use at vt_backend_memory_reset_peak(). */
static void test_memory_peak(vt_backend *be)
{
    size_t use0, peak0, use1, peak1, big = 128 * 64 * sizeof(float);
    vt_tensor *a = mk(be, 2, 64, 64, 0, 0, NULL), *b = mk(be, 2, 128, 64, 0, 0, NULL);
    VT_CHECK(a && b);
    vt_tensor_free(b);
    vt_backend_memory(be, &use0, &peak0);
    VT_CHECK(peak0 >= use0 + big);
    vt_backend_memory_reset_peak(be);
    vt_backend_memory(be, &use1, &peak1);
    VT_CHECK(use1 == use0 && peak1 == use0);
    b = mk(be, 2, 32, 64, 0, 0, NULL);
    vt_tensor_free(b);
    vt_backend_memory(be, &use1, &peak1);
    VT_CHECK(use1 == use0 && peak1 >= use0 + 32 * 64 * sizeof(float) && peak1 < use0 + big);
    vt_tensor_free(a);
}

/* ---- heartbeat ---------------------------------------------------------- */

static void count_beat(void *ud) { ++*(int *)ud; }

/* Each convolution and dense operation calls the heartbeat once, after its
 * work (the daemon's watchdog sees a long CPU step progress); a failed
 * argument check and the other operations do not. */
static void test_heartbeat(vt_backend *be)
{
    vt_tensor *x = mk(be, 4, 2, 4, 4, 3, NULL), *w = mk(be, 4, 8, 3, 3, 3, NULL);
    vt_tensor *b = mk(be, 1, 8, 0, 0, 0, NULL), *y = mk(be, 4, 2, 4, 4, 8, NULL);
    vt_tensor *dx = mk(be, 4, 2, 4, 4, 3, NULL), *dw = mk(be, 4, 8, 3, 3, 3, NULL);
    vt_tensor *db = mk(be, 1, 8, 0, 0, 0, NULL), *p = mk(be, 4, 2, 2, 2, 8, NULL);
    vt_tensor *fw = mk(be, 2, 5, 32, 0, 0, NULL), *fb = mk(be, 1, 5, 0, 0, 0, NULL);
    vt_tensor *fy = mk(be, 2, 2, 5, 0, 0, NULL), *fdw = mk(be, 2, 5, 32, 0, 0, NULL);
    vt_tensor *fdb = mk(be, 1, 5, 0, 0, 0, NULL);
    int beats = 0;
    VT_CHECK(x && w && b && y && dx && dw && db && p && fw && fb && fy && fdw && fdb);
    vt_backend_set_heartbeat(be, count_beat, &beats);
    VT_CHECK_OK(vt_op_conv_fwd(be, x, w, b, y, 1));
    VT_CHECK_OK(vt_op_conv_bwd_data(be, y, w, dx));
    VT_CHECK_OK(vt_op_conv_bwd_filter(be, x, y, dw, db));
    VT_CHECK_OK(vt_op_maxpool_fwd(be, y, p));
    VT_CHECK(beats == 3);
    VT_CHECK_OK(vt_op_dense_fwd(be, p, fw, fb, fy, 0));
    VT_CHECK_OK(vt_op_dense_bwd(be, p, fw, fy, NULL, fdw, fdb));
    VT_CHECK(beats == 5);
    VT_CHECK_ERR(vt_op_conv_fwd(be, x, dw, b, dx, 1), VT_EINVAL, "conv_fwd");
    VT_CHECK(beats == 5);
    vt_backend_set_heartbeat(be, NULL, NULL);
    VT_CHECK_OK(vt_op_conv_fwd(be, x, w, b, y, 1));
    VT_CHECK(beats == 5);
    VT_CHECK_OK(vt_backend_sync(be));
    vt_tensor *all[] = {x, w, b, y, dx, dw, db, p, fw, fb, fy, fdw, fdb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        vt_tensor_free(all[i]);
}

/* ---- argument checking ------------------------------------------------- */

static void test_shape_errors(vt_backend *be)
{
    vt_tensor *x = mk(be, 4, 1, 4, 4, 3, NULL), *w = mk(be, 4, 8, 3, 3, 4, NULL);
    vt_tensor *b = mk(be, 1, 8, 0, 0, 0, NULL), *y = mk(be, 4, 1, 4, 4, 8, NULL);
    vt_tensor *p = mk(be, 4, 1, 3, 3, 3, NULL), *q = mk(be, 4, 1, 1, 1, 3, NULL);
    VT_CHECK(x && w && b && y && p && q);
    VT_CHECK_ERR(vt_op_conv_fwd(be, x, w, b, y, 1), VT_EINVAL, "w dim 3 is 4, expected 3");
    VT_CHECK_ERR(vt_op_maxpool_fwd(be, p, x), VT_EINVAL, "even");
    VT_CHECK_ERR(vt_op_maxpool_bwd(be, p, q, q, p), VT_EINVAL, "even");
    int dims[2] = {3, 3};
    VT_CHECK_ERR(vt_tensor_reshape(x, 2, (int[]){100, 100}), VT_EINVAL, "exceeds");
    VT_CHECK_OK(vt_tensor_reshape(x, 2, dims));
    VT_CHECK_ERR(vt_op_dropout_fwd(be, b, b, 1.0f, 0, 0), VT_EINVAL, "outside");
    vt_tensor_free(x); vt_tensor_free(w); vt_tensor_free(b); vt_tensor_free(y);
    vt_tensor_free(p); vt_tensor_free(q);
}

static const vt_test_case cases[] = {
    {"conv_fwd", test_conv_fwd, VT_TEST_NUMERIC},
    {"conv_grad", test_conv_grad, VT_TEST_NUMERIC},
    {"conv_large", test_conv_large, VT_TEST_NUMERIC},
    {"conv_first", test_conv_first, VT_TEST_NUMERIC},
    {"relu_bwd", test_relu_bwd, VT_TEST_NUMERIC},
    {"maxpool", test_maxpool, VT_TEST_NUMERIC},
    {"maxpool_ties", test_maxpool_ties, VT_TEST_NUMERIC},
    {"dense", test_dense, VT_TEST_NUMERIC},
    {"act_bf16", test_act_bf16, VT_TEST_NUMERIC},
    {"softmax_xent", test_softmax_xent, VT_TEST_NUMERIC},
    {"dropout", test_dropout, VT_TEST_NUMERIC},
    {"sgd", test_sgd, VT_TEST_NUMERIC},
    {"images_to_input", test_images_to_input, VT_TEST_NUMERIC},
    {"images_resize", test_images_resize, VT_TEST_NUMERIC},
    {"host_buffers", test_host_buffers, VT_TEST_NUMERIC},
    {"shape_errors", test_shape_errors, VT_TEST_NUMERIC},
    {"rows", test_rows, VT_TEST_NUMERIC},
    {"host_tensors", test_host_tensors, VT_TEST_NUMERIC},
    {"view_rows", test_view_rows, VT_TEST_NUMERIC},
    {"memory_peak", test_memory_peak, VT_TEST_NUMERIC},
    {"bf16_transfer", test_bf16_transfer, VT_TEST_NUMERIC},
    {"heartbeat", test_heartbeat, VT_TEST_NUMERIC},
};

int main(int argc, char **argv) { VT_TEST_MAIN(cases); }

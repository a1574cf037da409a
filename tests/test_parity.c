/* test_parity.c - the device backend against the CPU reference backend.
 *
 * Every operation of the backend table runs on random inputs on both
 * backends and the outputs are compared tensor by tensor; then small models
 * take a few training steps on both and their losses, features, logits and
 * weight updates are compared.  Run as
 *   test_parity --backend cuda   (ctest parity_cuda, label gpu): exits 77
 *                                with a SKIP line per case without a GPU;
 *   test_parity --backend cpu    (ctest parity_selftest): the CPU backend
 *                                against itself, which keeps this file
 *                                working in CI.
 *
 * Each case runs once with f32 activations and once with the backend's bf16
 * activations (vt_backend_act_dtype(be, "bf16"); skipped where that is f32).
 * In the bf16 run the inputs are drawn bf16-representable, so both backends
 * see the same values and only the arithmetic differs.
 *
 * Tolerances: |dev - cpu| <= atol + rtol*|cpu| per element, atol = a*rms(cpu)
 * of the tensor (elements near zero carry the error of their summands, not
 * of their own size):
 *   exact ops - preprocessing, ReLU backward, pooling, dropout, copies,
 *     softmax outputs: 0 (bf16 outputs against the CPU result rounded to
 *     bf16, since they are that rounding)
 *   SGD (same float operations, no FMA on either side): a = 1e-7, rtol 1e-6
 *   f32 convolutions and products (plain fp32; cuDNN may choose Winograd or
 *     FFT algorithms): a = 5e-4, rtol 1e-3
 *   with VT_CUDA_TF32=1 (TF32 tensor cores for f32): a = 1e-2, rtol 1e-2
 *   bf16 convolutions and products (bf16 operands and outputs, fp32
 *     accumulation): a = 2e-2, rtol 2e-2
 *   models, relative L2 error ||dev - cpu|| / ||cpu|| of each tensor and
 *     relative error of each step's loss, measured on an H200 (2026-12-04):
 *     - the first step's weight updates (lr times the gradient): f32 5e-2.
 *       With the timed algorithm search they agree to 3e-5; with cuDNN's
 *       heuristic choice one max-pool window whose two largest inputs were
 *       within rounding of each other sent its gradient to the other input
 *       on the GPU: the biases of that layer stayed exact (the window's sum
 *       is unchanged) and every weight update from there to the input moved
 *       by about 1e-2.  A wiring bug (wrong buffer, layout, mask) gives
 *       errors of order one.
 *     - bf16 against the f32 reference: 0.6.  bf16 rounding makes near-ties
 *       in a 2x2 window exact ties a few percent of the time, and each one
 *       reroutes a gradient: block 5's updates moved by 5-11%, a scratch
 *       model's first layers by up to 46%.  0.6 still fails a scrambled or
 *       sign-flipped gradient (1.0 and more).
 *     - features, losses and logits: f32 1e-3 (every step); bf16 5e-2 for
 *       the features and the first step's loss only.  The test's steps are
 *       large (the loss falls 10-70% per step), so the rerouted gradients
 *       of the first step move later losses by 10-25% in bf16; the later
 *       steps and logits are printed, not compared, and training-level
 *       agreement is scripts/accuracy-parity.sh's job (the same jobs reach
 *       the same accuracy on both backends).
 *     - the final updates (after every step): f32 5e-2, bf16 not compared.
 * Every comparison prints its largest error, so a GPU run's log shows how
 * much margin each threshold has.
 */
#include <stdlib.h>

#include "../common/rng.h"
#include "../engine/model.h"
#include "../engine/vgg.h"
#include "vt_test.h"

/* ---- harness ------------------------------------------------------------- */

typedef struct {
    vt_backend *cpu, *dev;
    vt_dtype adt; /* activation dtype on the device backend */
    int bf;       /* adt is bf16: inputs rounded to bf16 */
    double a, rt; /* product tolerance: atol = a * rms, rtol */
    const char *name;
} pc;

/* A tensor on each backend holding the same values. */
typedef struct {
    vt_tensor *c, *d;
} pair;

static float bf16_round(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0x7f800000u)
        return f;
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

/* Uniform values in [lo, hi) from (seed 7, stream), bf16-representable when
 * the run is bf16. */
static float *rnd(const pc *c, size_t n, uint64_t stream, float lo, float hi)
{
    float *a = malloc(n * sizeof *a);
    for (size_t i = 0; a && i < n; i++) {
        a[i] = lo + (hi - lo) * vt_rng_uniform(7, stream, i);
        if (c->bf)
            a[i] = bf16_round(a[i]);
    }
    return a;
}

static vt_tensor *mk(vt_backend *be, vt_dtype dt, int nd, int d0, int d1, int d2, int d3,
                     const void *host)
{
    int dims[4] = {d0, d1, d2, d3};
    vt_tensor *t = NULL;
    if (vt_tensor_new(&t, be, dt, nd, dims) < 0) {
        fprintf(stderr, "  tensor_new: %s\n", vt_error_msg());
        return NULL;
    }
    if (host && vt_tensor_upload(t, host) < 0) {
        fprintf(stderr, "  upload: %s\n", vt_error_msg());
        vt_tensor_free(t);
        return NULL;
    }
    return t;
}

/* act: the device tensor has the activation dtype, else f32. */
static pair pmk(const pc *c, int act, int nd, int d0, int d1, int d2, int d3, const float *host)
{
    pair p = {mk(c->cpu, VT_F32, nd, d0, d1, d2, d3, host),
              mk(c->dev, act ? c->adt : VT_F32, nd, d0, d1, d2, d3, host)};
    return p;
}

static int pok(pair p) { return p.c && p.d; }

static void pfree(pair p)
{
    vt_tensor_free(p.c);
    vt_tensor_free(p.d);
}

static float *get(const vt_tensor *t)
{
    float *h = malloc(vt_tensor_numel(t) * sizeof *h);
    if (h && vt_tensor_download(t, h) < 0) {
        fprintf(stderr, "  download: %s\n", vt_error_msg());
        free(h);
        return NULL;
    }
    return h;
}

static double rms(const float *a, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * a[i];
    return n ? sqrt(s / n) : 0.0;
}

static double rel_l2(const float *got, const float *want, size_t n)
{
    double e = 0, w = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        e += d * d;
        w += (double)want[i] * want[i];
    }
    if (e != e)
        return INFINITY;
    return w > 0 ? sqrt(e / w) : sqrt(e);
}

/* Compares host arrays with atol = a*rms(want), printing the margin. */
static int close_arrays(const pc *c, const char *what, const float *got, float *want, size_t n,
                        double a, double rtol, int round_want)
{
    double r, worst = 0;
    char label[160];
    if (round_want && c->bf)
        for (size_t i = 0; i < n; i++)
            want[i] = bf16_round(want[i]);
    r = rms(want, n);
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        if (e > worst || e != e)
            worst = e;
    }
    printf("    %-28s %s: max err %.3g (%.3g rms), rel L2 %.3g\n", what, c->name, worst,
           r > 0 ? worst / r : 0.0, rel_l2(got, want, n));
    snprintf(label, sizeof label, "%s [%s]", what, c->name);
    return vt_test_allclose(label, got, want, n, a * r, rtol);
}

/* Compares the two sides of a pair. */
static int pcmp(const pc *c, const char *what, pair p, double a, double rtol, int round_want)
{
    float *g = get(p.d), *w = get(p.c);
    int ok = g && w && vt_tensor_numel(p.c) == vt_tensor_numel(p.d) &&
             close_arrays(c, what, g, w, vt_tensor_numel(p.c), a, rtol, round_want);
    free(g);
    free(w);
    return ok;
}

/* Runs fn with f32, then with bf16 activations. */
static void each_precision(vt_backend *dev, void (*fn)(pc *))
{
    const char *tf32 = getenv("VT_CUDA_TF32");
    int tf = tf32 && atoi(tf32) != 0 && strcmp(vt_backend_name(dev), "cuda") == 0;
    for (int v = 0; v < 2; v++) {
        pc c = {NULL, dev, VT_F32, 0, tf ? 1e-2 : 5e-4, tf ? 1e-2 : 1e-3, "f32"};
        if (v == 1) {
            if (vt_backend_act_dtype(dev, "bf16") != VT_BF16) {
                printf("    (bf16: backend %s computes in f32 only)\n", vt_backend_name(dev));
                continue;
            }
            c.adt = VT_BF16;
            c.bf = 1;
            c.a = 2e-2;
            c.rt = 2e-2;
            c.name = "bf16";
        }
        if (vt_backend_create(&c.cpu, "cpu", 0) < 0) {
            vt_test_fail(__FILE__, __LINE__, "cpu backend: %s", vt_error_msg());
            return;
        }
        fn(&c);
        vt_backend_free(c.cpu);
    }
}

#define VT_PCHECK_OK(c, expr_cpu, expr_dev)                                    \
    do {                                                                       \
        VT_CHECK_OK(expr_cpu);                                                 \
        VT_CHECK_OK(expr_dev);                                                 \
    } while (0)

/* ---- operations ------------------------------------------------------------ */

static void case_images(pc *c)
{
    enum { N = 2, H = 6, W = 5 };
    uint8_t img[N * H * W * 3];
    for (size_t i = 0; i < sizeof img; i++)
        img[i] = (uint8_t)vt_rng_below(7, 1, i, 256);
    img[0] = 0;
    img[1] = 255;
    for (int prep = 0; prep < 2; prep++) {
        pair x = pmk(c, 1, 4, N, H, W, 3, NULL);
        VT_CHECK(pok(x));
        VT_PCHECK_OK(c, vt_op_images_to_input(c->cpu, img, N, H, W, (vt_preprocess)prep, x.c),
                     vt_op_images_to_input(c->dev, img, N, H, W, (vt_preprocess)prep, x.d));
        int ok = pcmp(c, prep == VT_PREP_CAFFE ? "images caffe" : "images torch", x, 0, 0, 1);
        pfree(x);
        VT_CHECK(ok);
    }
}

/* N, H, W, C, K: the first layer (C = 3), small, VGG-like and odd shapes. */
static const int conv_shapes[][5] = {
    {2, 8, 8, 3, 16}, {2, 8, 6, 16, 32}, {1, 14, 14, 64, 64}, {3, 5, 7, 5, 12}, {2, 28, 28, 128, 128},
};

static void case_conv(pc *c)
{
    for (size_t s = 0; s < sizeof conv_shapes / sizeof conv_shapes[0]; s++) {
        int N = conv_shapes[s][0], H = conv_shapes[s][1], W = conv_shapes[s][2];
        int C = conv_shapes[s][3], K = conv_shapes[s][4];
        float *hx = rnd(c, (size_t)N * H * W * C, 10 + s, -1, 1);
        float *hw = rnd(c, (size_t)K * 9 * C, 20 + s, -0.3f, 0.3f);
        float *hb = rnd(c, (size_t)K, 30 + s, -0.5f, 0.5f);
        float *hg = rnd(c, (size_t)N * H * W * K, 40 + s, -1, 1);
        char what[96];
        pair x = pmk(c, 1, 4, N, H, W, C, hx), w = pmk(c, 0, 4, K, 3, 3, C, hw);
        pair b = pmk(c, 0, 1, K, 0, 0, 0, hb), y = pmk(c, 1, 4, N, H, W, K, NULL);
        pair dy = pmk(c, 1, 4, N, H, W, K, hg), dx = pmk(c, 1, 4, N, H, W, C, NULL);
        pair dw = pmk(c, 0, 4, K, 3, 3, C, NULL), db = pmk(c, 0, 1, K, 0, 0, 0, NULL);
        int ok = pok(x) && pok(w) && pok(b) && pok(y) && pok(dy) && pok(dx) && pok(dw) && pok(db);
        free(hx); free(hw); free(hb); free(hg);
        for (int relu = 1; ok && relu >= 0; relu--) {
            ok = vt_op_conv_fwd(c->cpu, x.c, w.c, b.c, y.c, relu) == 0 &&
                 vt_op_conv_fwd(c->dev, x.d, w.d, b.d, y.d, relu) == 0;
            if (!ok)
                fprintf(stderr, "  conv_fwd: %s\n", vt_error_msg());
            snprintf(what, sizeof what, "conv_fwd%s %dx%dx%dx%d->%d", relu ? "+relu" : "", N, H, W,
                     C, K);
            ok = ok && pcmp(c, what, y, c->a, c->rt, 0);
        }
        if (ok) {
            ok = vt_op_conv_bwd_data(c->cpu, dy.c, w.c, dx.c) == 0 &&
                 vt_op_conv_bwd_data(c->dev, dy.d, w.d, dx.d) == 0 &&
                 vt_op_conv_bwd_filter(c->cpu, x.c, dy.c, dw.c, db.c) == 0 &&
                 vt_op_conv_bwd_filter(c->dev, x.d, dy.d, dw.d, db.d) == 0;
            if (!ok)
                fprintf(stderr, "  conv backward: %s\n", vt_error_msg());
            snprintf(what, sizeof what, "conv dx %dx%dx%dx%d->%d", N, H, W, C, K);
            ok = ok && pcmp(c, what, dx, c->a, c->rt, 0);
            snprintf(what, sizeof what, "conv dw %dx%dx%dx%d->%d", N, H, W, C, K);
            ok = ok && pcmp(c, what, dw, c->a, c->rt, 0);
            snprintf(what, sizeof what, "conv db %dx%dx%dx%d->%d", N, H, W, C, K);
            ok = ok && pcmp(c, what, db, c->a, c->rt, 0);
        }
        pfree(x); pfree(w); pfree(b); pfree(y); pfree(dy); pfree(dx); pfree(dw); pfree(db);
        VT_CHECK(ok);
    }
}

/* The device's bf16 weight copies follow the f32 masters: after an SGD
 * update, an upload and a copy_rows the next product uses the new values. */
static void case_weight_updates(pc *c)
{
    enum { N = 2, H = 6, W = 6, C = 16, K = 24, IN = H * W * K, OUT = 10 };
    float *hx = rnd(c, N * H * W * C, 50, -1, 1), *hw = rnd(c, K * 9 * C, 51, -0.3f, 0.3f);
    float *hb = rnd(c, K, 52, -0.5f, 0.5f), *hg = rnd(c, K * 9 * C, 53, -1, 1);
    float *hw2 = rnd(c, K * 9 * C, 54, -0.3f, 0.3f), *hd = rnd(c, OUT * IN, 55, -0.1f, 0.1f);
    float *hdb = rnd(c, OUT, 56, -0.1f, 0.1f), *hdg = rnd(c, OUT * IN, 57, -1, 1);
    vt_sgd_args sgd = {.lr = 0.05f, .momentum = 0.9f, .weight_decay = 0.0f, .nesterov = 1};
    pair x = pmk(c, 1, 4, N, H, W, C, hx), w = pmk(c, 0, 4, K, 3, 3, C, hw);
    pair b = pmk(c, 0, 1, K, 0, 0, 0, hb), g = pmk(c, 0, 4, K, 3, 3, C, hg);
    pair v = pmk(c, 0, 4, K, 3, 3, C, NULL), y = pmk(c, 1, 4, N, H, W, K, NULL);
    pair dw = pmk(c, 0, 2, OUT, IN, 0, 0, hd), dbias = pmk(c, 0, 1, OUT, 0, 0, 0, hdb);
    pair dg = pmk(c, 0, 2, OUT, IN, 0, 0, hdg), dv = pmk(c, 0, 2, OUT, IN, 0, 0, NULL);
    pair z = pmk(c, 1, 2, N, OUT, 0, 0, NULL);
    int ok = pok(x) && pok(w) && pok(b) && pok(g) && pok(v) && pok(y) && pok(dw) &&
             pok(dbias) && pok(dg) && pok(dv) && pok(z);
    for (int round = 0; ok && round < 4; round++) {
        /* round 0: as made; 1: after SGD; 2: after an upload; 3: after copy_rows */
        if (round == 1)
            ok = vt_op_sgd_update(c->cpu, w.c, g.c, v.c, &sgd) == 0 &&
                 vt_op_sgd_update(c->dev, w.d, g.d, v.d, &sgd) == 0 &&
                 vt_op_sgd_update(c->cpu, dw.c, dg.c, dv.c, &sgd) == 0 &&
                 vt_op_sgd_update(c->dev, dw.d, dg.d, dv.d, &sgd) == 0;
        if (round == 2)
            ok = vt_tensor_upload(w.c, hw2) == 0 && vt_tensor_upload(w.d, hw2) == 0;
        if (round == 3)
            ok = vt_tensor_copy_rows(w.c, 0, g.c, 1, 2) == 0 &&
                 vt_tensor_copy_rows(w.d, 0, g.d, 1, 2) == 0;
        ok = ok && vt_op_conv_fwd(c->cpu, x.c, w.c, b.c, y.c, 1) == 0 &&
             vt_op_conv_fwd(c->dev, x.d, w.d, b.d, y.d, 1) == 0 &&
             vt_op_dense_fwd(c->cpu, y.c, dw.c, dbias.c, z.c, 0) == 0 &&
             vt_op_dense_fwd(c->dev, y.d, dw.d, dbias.d, z.d, 0) == 0;
        if (!ok)
            fprintf(stderr, "  round %d: %s\n", round, vt_error_msg());
        char what[64];
        snprintf(what, sizeof what, "conv after update %d", round);
        ok = ok && pcmp(c, what, y, c->a, c->rt, 0);
        snprintf(what, sizeof what, "dense after update %d", round);
        ok = ok && pcmp(c, what, z, 2 * c->a, 2 * c->rt, 0);
    }
    free(hx); free(hw); free(hb); free(hg); free(hw2); free(hd); free(hdb); free(hdg);
    pfree(x); pfree(w); pfree(b); pfree(g); pfree(v); pfree(y);
    pfree(dw); pfree(dbias); pfree(dg); pfree(dv); pfree(z);
    VT_CHECK(ok);
}

static void case_relu_pool(pc *c)
{
    static const int shapes[][4] = {{2, 8, 6, 16}, {1, 4, 4, 3}, {2, 6, 4, 12}, {2, 14, 14, 64}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int N = shapes[s][0], H = shapes[s][1], W = shapes[s][2], C = shapes[s][3];
        size_t nx = (size_t)N * H * W * C, ny = nx / 4;
        float *hx = rnd(c, nx, 60 + s, -1, 1), *hg = rnd(c, ny, 70 + s, -1, 1);
        float *hd = rnd(c, nx, 80 + s, -1, 1);
        /* ReLU'd and coarsely quantised: zeros, exact ties, -0.0 */
        for (size_t i = 0; i < nx; i++)
            hx[i] = hx[i] < 0 ? (i % 7 ? 0.0f : -0.0f) : floorf(hx[i] * 4) / 4;
        pair x = pmk(c, 1, 4, N, H, W, C, hx), y = pmk(c, 1, 4, N, H / 2, W / 2, C, NULL);
        pair dy = pmk(c, 1, 4, N, H / 2, W / 2, C, hg), dx = pmk(c, 1, 4, N, H, W, C, NULL);
        pair g = pmk(c, 1, 4, N, H, W, C, hd);
        int ok = pok(x) && pok(y) && pok(dy) && pok(dx) && pok(g);
        free(hx); free(hg); free(hd);
        ok = ok && vt_op_maxpool_fwd(c->cpu, x.c, y.c) == 0 &&
             vt_op_maxpool_fwd(c->dev, x.d, y.d) == 0 &&
             vt_op_maxpool_bwd(c->cpu, x.c, y.c, dy.c, dx.c) == 0 &&
             vt_op_maxpool_bwd(c->dev, x.d, y.d, dy.d, dx.d) == 0 &&
             vt_op_relu_bwd(c->cpu, x.c, g.c) == 0 && vt_op_relu_bwd(c->dev, x.d, g.d) == 0;
        if (!ok)
            fprintf(stderr, "  relu/pool: %s\n", vt_error_msg());
        char what[64];
        snprintf(what, sizeof what, "maxpool_fwd C=%d", C);
        ok = ok && pcmp(c, what, y, 0, 0, 1);
        snprintf(what, sizeof what, "maxpool_bwd C=%d", C);
        ok = ok && pcmp(c, what, dx, 0, 0, 1);
        snprintf(what, sizeof what, "relu_bwd C=%d", C);
        ok = ok && pcmp(c, what, g, 0, 0, 1);
        pfree(x); pfree(y); pfree(dy); pfree(dx); pfree(g);
        VT_CHECK(ok);
    }
}

static void case_dense(pc *c)
{
    /* N, (h, w, ch) of a 4-D input, OUT; dy f32 like the logits' gradient */
    static const int shapes[][6] = {{5, 2, 2, 8, 24, 0}, {5, 2, 2, 8, 7, 1}, {64, 7, 7, 64, 256, 0},
                                    {3, 1, 1, 130, 5, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int N = shapes[s][0], IN = shapes[s][1] * shapes[s][2] * shapes[s][3], OUT = shapes[s][4];
        int f32dy = shapes[s][5];
        float *hx = rnd(c, (size_t)N * IN, 90 + s, -1, 1);
        float *hw = rnd(c, (size_t)OUT * IN, 100 + s, -0.1f, 0.1f);
        float *hb = rnd(c, OUT, 110 + s, -0.5f, 0.5f), *hg = rnd(c, (size_t)N * OUT, 120 + s, -1, 1);
        pair x = pmk(c, 1, 4, N, shapes[s][1], shapes[s][2], shapes[s][3], hx);
        pair w = pmk(c, 0, 2, OUT, IN, 0, 0, hw), b = pmk(c, 0, 1, OUT, 0, 0, 0, hb);
        pair y = pmk(c, 1, 2, N, OUT, 0, 0, NULL), dy = pmk(c, !f32dy, 2, N, OUT, 0, 0, hg);
        pair dx = pmk(c, 1, 4, N, shapes[s][1], shapes[s][2], shapes[s][3], NULL);
        pair dw = pmk(c, 0, 2, OUT, IN, 0, 0, NULL), db = pmk(c, 0, 1, OUT, 0, 0, 0, NULL);
        int ok = pok(x) && pok(w) && pok(b) && pok(y) && pok(dy) && pok(dx) && pok(dw) && pok(db);
        char what[64];
        free(hx); free(hw); free(hb); free(hg);
        for (int relu = 1; ok && relu >= 0; relu--) {
            ok = vt_op_dense_fwd(c->cpu, x.c, w.c, b.c, y.c, relu) == 0 &&
                 vt_op_dense_fwd(c->dev, x.d, w.d, b.d, y.d, relu) == 0;
            if (!ok)
                fprintf(stderr, "  dense_fwd: %s\n", vt_error_msg());
            snprintf(what, sizeof what, "dense_fwd%s %dx%d->%d", relu ? "+relu" : "", N, IN, OUT);
            ok = ok && pcmp(c, what, y, c->a, c->rt, 0);
        }
        for (int with_dx = 1; ok && with_dx >= 0; with_dx--) {
            ok = vt_op_dense_bwd(c->cpu, x.c, w.c, dy.c, with_dx ? dx.c : NULL, dw.c, db.c) == 0 &&
                 vt_op_dense_bwd(c->dev, x.d, w.d, dy.d, with_dx ? dx.d : NULL, dw.d, db.d) == 0;
            if (!ok)
                fprintf(stderr, "  dense_bwd: %s\n", vt_error_msg());
            snprintf(what, sizeof what, "dense dw %dx%d->%d%s", N, IN, OUT, f32dy ? " (f32 dy)" : "");
            ok = ok && pcmp(c, what, dw, c->a, c->rt, 0);
            snprintf(what, sizeof what, "dense db %dx%d->%d", N, IN, OUT);
            ok = ok && pcmp(c, what, db, c->a, c->rt, 0);
            snprintf(what, sizeof what, "dense dx %dx%d->%d", N, IN, OUT);
            ok = ok && (!with_dx || pcmp(c, what, dx, c->a, c->rt, 0));
        }
        pfree(x); pfree(w); pfree(b); pfree(y); pfree(dy); pfree(dx); pfree(dw); pfree(db);
        VT_CHECK(ok);
    }
}

static void case_dropout(pc *c)
{
    enum { N = 3001 };
    float *hx = rnd(c, N, 130, -2, 2), *hg = rnd(c, N, 131, -2, 2);
    pair x = pmk(c, 1, 2, 3, N / 3, 0, 0, hx), m = pmk(c, 0, 2, 3, N / 3, 0, 0, NULL);
    pair g = pmk(c, 1, 2, 3, N / 3, 0, 0, hg);
    int ok = pok(x) && pok(m) && pok(g);
    free(hx); free(hg);
    for (int k = 0; ok && k < 2; k++) {
        float rate = k ? 0.5f : 0.1f;
        uint64_t stream = ((uint64_t)VT_RNG_DROPOUT << 56) ^ ((uint64_t)(k + 3) << 4);
        ok = vt_op_dropout_fwd(c->cpu, x.c, m.c, rate, 1234, stream) == 0 &&
             vt_op_dropout_fwd(c->dev, x.d, m.d, rate, 1234, stream) == 0 &&
             vt_op_dropout_bwd(c->cpu, m.c, g.c) == 0 && vt_op_dropout_bwd(c->dev, m.d, g.d) == 0;
        if (!ok)
            fprintf(stderr, "  dropout: %s\n", vt_error_msg());
        ok = ok && pcmp(c, "dropout mask", m, 0, 0, 0) && pcmp(c, "dropout x", x, 0, 0, 1) &&
             pcmp(c, "dropout_bwd", g, 0, 0, 1);
    }
    pfree(x); pfree(m); pfree(g);
    VT_CHECK(ok);
}

static void case_softmax(pc *c)
{
    static const int shapes[][2] = {{37, 5}, {8, 100}, {1, 2}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int N = shapes[s][0], C = shapes[s][1];
        float *hz = rnd(c, (size_t)N * C, 140 + s, -6, 6);
        int32_t *lab = malloc((size_t)N * sizeof *lab);
        int dims[1] = {N};
        vt_tensor *lc = NULL, *ld = NULL;
        vt_xent_sums sc = {0}, sd = {0};
        for (int i = 0; i < N; i++)
            lab[i] = (int32_t)vt_rng_below(7, 150 + s, (uint64_t)i, (uint64_t)C);
        hz[0] = 700.0f; /* the stable form must not overflow */
        if (N > 2)      /* a tie for the first arg-max */
            hz[C + 1] = hz[C + 2] = 9.0f;
        pair z = pmk(c, 1, 2, N, C, 0, 0, hz), dz = pmk(c, 0, 2, N, C, 0, 0, NULL);
        pair pr = pmk(c, 0, 2, N, C, 0, 0, NULL);
        int ok = pok(z) && pok(dz) && pok(pr) && vt_tensor_new(&lc, c->cpu, VT_I32, 1, dims) == 0 &&
                 vt_tensor_new(&ld, c->dev, VT_I32, 1, dims) == 0 &&
                 vt_tensor_upload(lc, lab) == 0 && vt_tensor_upload(ld, lab) == 0;
        ok = ok &&
             vt_op_softmax_xent(c->cpu, z.c, lc, dz.c, 1.0f / N, pr.c, &sc) == 0 &&
             vt_op_softmax_xent(c->dev, z.d, ld, dz.d, 1.0f / N, pr.d, &sd) == 0 &&
             vt_backend_sync(c->dev) == 0;
        if (!ok)
            fprintf(stderr, "  softmax_xent: %s\n", vt_error_msg());
        printf("    softmax %dx%d %s: loss %.9g vs %.9g, correct %d vs %d\n", N, C, c->name, sd.loss,
               sc.loss, sd.correct, sc.correct);
        ok = ok && fabs(sd.loss - sc.loss) <= 1e-6 * (1 + fabs(sc.loss)) &&
             sc.correct == sd.correct &&
             pcmp(c, "softmax dlogits", dz, 1e-6, 1e-6, 0) &&
             pcmp(c, "softmax probs", pr, 1e-6, 1e-6, 0);
        /* a label out of range is an error on both (the device's at its sync) */
        lab[N - 1] = C;
        if (ok && vt_tensor_upload(lc, lab) == 0 && vt_tensor_upload(ld, lab) == 0) {
            int rc_c = vt_op_softmax_xent(c->cpu, z.c, lc, NULL, 1.0f, NULL, &sc);
            int rc_d = vt_op_softmax_xent(c->dev, z.d, ld, NULL, 1.0f, NULL, &sd);
            if (rc_d == 0)
                rc_d = vt_backend_sync(c->dev);
            if (rc_c != VT_EINVAL || rc_d != VT_EINVAL) {
                fprintf(stderr, "  bad label: cpu %d, device %d (%s)\n", rc_c, rc_d, vt_error_msg());
                ok = 0;
            }
        }
        free(hz); free(lab);
        pfree(z); pfree(dz); pfree(pr);
        vt_tensor_free(lc); vt_tensor_free(ld);
        VT_CHECK(ok);
    }
}

static void case_sgd(pc *c)
{
    enum { N = 1003 };
    float *hw = rnd(c, N, 160, -1, 1), *hg = rnd(c, N, 161, -1, 1), *hv = rnd(c, N, 162, -0.1f, 0.1f);
    for (int nesterov = 0; nesterov < 2; nesterov++) {
        vt_sgd_args a = {.lr = 0.01f, .momentum = 0.9f, .weight_decay = 1e-4f, .nesterov = nesterov};
        pair w = pmk(c, 0, 1, N, 0, 0, 0, hw), g = pmk(c, 0, 1, N, 0, 0, 0, hg);
        pair v = pmk(c, 0, 1, N, 0, 0, 0, hv);
        int ok = pok(w) && pok(g) && pok(v);
        for (int step = 0; ok && step < 3; step++)
            ok = vt_op_sgd_update(c->cpu, w.c, g.c, v.c, &a) == 0 &&
                 vt_op_sgd_update(c->dev, w.d, g.d, v.d, &a) == 0;
        ok = ok && pcmp(c, nesterov ? "sgd w (nesterov)" : "sgd w", w, 1e-7, 1e-6, 0) &&
             pcmp(c, nesterov ? "sgd v (nesterov)" : "sgd v", v, 1e-7, 1e-6, 0);
        pfree(w); pfree(g); pfree(v);
        if (!ok) {
            free(hw); free(hg); free(hv);
            VT_CHECK(ok);
        }
    }
    free(hw); free(hg); free(hv);
}

static void case_copies(pc *c)
{
    enum { R = 6, K = 10 };
    float *h = rnd(c, R * K, 170, -3, 3), *h2 = rnd(c, R * K, 171, -3, 3);
    pair a = pmk(c, 1, 2, R, K, 0, 0, h), b = pmk(c, 1, 2, R, K, 0, 0, h2);
    int ok = pok(a) && pok(b) && pcmp(c, "upload/download", a, 0, 0, 0);
    /* overlapping rows of one tensor move like memmove */
    ok = ok && vt_tensor_copy_rows(a.c, 1, a.c, 0, 4) == 0 && vt_tensor_copy_rows(a.d, 1, a.d, 0, 4) == 0 &&
         pcmp(c, "copy_rows overlapping", a, 0, 0, 0);
    ok = ok && vt_tensor_copy_rows(b.c, 4, a.c, 0, 2) == 0 && vt_tensor_copy_rows(b.d, 4, a.d, 0, 2) == 0 &&
         pcmp(c, "copy_rows", b, 0, 0, 0);
    ok = ok && vt_tensor_copy(a.c, b.c) == 0 && vt_tensor_copy(a.d, b.d) == 0 &&
         pcmp(c, "copy", a, 0, 0, 0);
    ok = ok && vt_tensor_zero(b.c) == 0 && vt_tensor_zero(b.d) == 0 && pcmp(c, "zero", b, 0, 0, 0);
    ok = ok && vt_backend_sync(c->dev) == 0;
    free(h); free(h2);
    pfree(a); pfree(b);
    VT_CHECK(ok);
}

/* ---- models ------------------------------------------------------------------- */

typedef struct {
    int size, trainable, batch, nhidden, hidden[2], steps;
    float dropout;
    const char *name;
} model_spec;

static vt_params *params_like(const model_spec *s)
{
    vt_params *p = NULL;
    return vt_params_new(&p, s->size, s->hidden, s->nhidden, 5) < 0 ? NULL : p;
}

/* Relative L2 of the updates (after - before) of every trainable tensor,
 * each printed (WHEN names the moment); 1 when all are within tol. */
static int compare_updates(const pc *c, const model_spec *s, const char *when, const vt_params *p0,
                           const vt_params *pc_, const vt_params *pd, double tol)
{
    int first = vt_vgg_first_trainable(s->trainable), ok = 1;
    for (int i = first; i < VT_VGG_NCONV + p0->ndense; i++) {
        int conv = i < VT_VGG_NCONV, j = i - VT_VGG_NCONV;
        size_t nw = conv ? (size_t)vt_vgg_conv_numel(i) : (size_t)p0->dense_in[j] * p0->dense_out[j];
        size_t nb = conv ? (size_t)vt_vgg16[i].cout : (size_t)p0->dense_out[j];
        for (int part = 0; part < 2; part++) {
            size_t n = part ? nb : nw;
            const float *w0 = conv ? (part ? p0->conv_b[i] : p0->conv_w[i])
                                   : (part ? p0->dense_b[j] : p0->dense_w[j]);
            const float *wc = conv ? (part ? pc_->conv_b[i] : pc_->conv_w[i])
                                   : (part ? pc_->dense_b[j] : pc_->dense_w[j]);
            const float *wd = conv ? (part ? pd->conv_b[i] : pd->conv_w[i])
                                   : (part ? pd->dense_b[j] : pd->dense_w[j]);
            float *dc = malloc(n * sizeof *dc), *dd = malloc(n * sizeof *dd);
            double e;
            if (!dc || !dd) {
                free(dc); free(dd);
                return 0;
            }
            for (size_t k = 0; k < n; k++) {
                dc[k] = wc[k] - w0[k];
                dd[k] = wd[k] - w0[k];
            }
            char name[48];
            if (conv)
                snprintf(name, sizeof name, "%s.%s", vt_vgg16[i].keras_name, part ? "b" : "w");
            else
                snprintf(name, sizeof name, "head%d.%s", j, part ? "b" : "w");
            e = rel_l2(dd, dc, n);
            printf("    %s update %s %s %s: rel L2 %.3g (rms %.3g)\n", s->name, when, c->name, name,
                   e, rms(dc, n));
            if (!(e <= tol) && rms(dc, n) > 0) {
                vt_test_fail(__FILE__, __LINE__, "%s: update %s of %s differs: rel L2 %.3g > %.3g",
                             s->name, when, name, e, tol);
                ok = 0;
            }
            free(dc); free(dd);
        }
    }
    return ok;
}

static void run_model(pc *c, const model_spec *s)
{
    vt_params *p0 = params_like(s), *pcpu = params_like(s), *pdev = params_like(s);
    vt_trunk *tc = NULL, *td = NULL;
    vt_model *mc = NULL, *md = NULL;
    size_t nin = (size_t)s->batch * s->size * s->size * 3;
    float *hx = rnd(c, nin, 180, -1, 1), *fc = NULL, *fd = NULL, *lc = NULL, *ld = NULL;
    int32_t lab[16];
    double tol_up = c->bf ? 0.6 : 5e-2, tol_act = c->bf ? 5e-2 : 1e-3;
    int ok = p0 && pcpu && pdev && hx;
    char what[96];

    for (int i = 0; i < s->batch; i++)
        lab[i] = (int32_t)vt_rng_below(7, 181, (uint64_t)i, 5);
    if (ok) {
        vt_params_init_he(p0, 11, 3);
        /* non-zero biases, so that their path is exercised */
        for (int i = 0; i < VT_VGG_NCONV; i++)
            for (int k = 0; k < vt_vgg16[i].cout; k++)
                p0->conv_b[i][k] = 0.05f * (vt_rng_uniform(7, 190 + i, (uint64_t)k) - 0.5f);
        if (c->bf)
            for (int i = 0; i < VT_VGG_NCONV; i++) {
                for (int k = 0; k < vt_vgg_conv_numel(i); k++)
                    p0->conv_w[i][k] = bf16_round(p0->conv_w[i][k]);
                for (int k = 0; k < vt_vgg16[i].cout; k++)
                    p0->conv_b[i][k] = bf16_round(p0->conv_b[i][k]);
            }
    }
    vt_model_opts oc = {.trainable_blocks = s->trainable, .max_batch = s->batch,
                        .dropout = s->dropout, .act = VT_F32};
    vt_model_opts od = oc;
    od.act = c->adt;
    ok = ok && vt_trunk_create(&tc, c->cpu, p0) == 0 && vt_trunk_create(&td, c->dev, p0) == 0 &&
         vt_model_create(&mc, tc, p0, &oc) == 0 && vt_model_create(&md, td, p0, &od) == 0 &&
         vt_tensor_upload(vt_model_input(mc), hx) == 0 &&
         vt_tensor_upload(vt_model_input(md), hx) == 0 && vt_model_extract(mc) == 0 &&
         vt_model_extract(md) == 0;
    if (!ok)
        fprintf(stderr, "  %s setup: %s\n", s->name, vt_error_msg());
    if (ok) {
        fc = get(vt_model_features(mc));
        fd = get(vt_model_features(md));
        size_t nf = vt_tensor_numel(vt_model_features(mc));
        double e = fc && fd ? rel_l2(fd, fc, nf) : INFINITY;
        printf("    %s features %s: rel L2 %.3g\n", s->name, c->name, e);
        if (!(e <= tol_act)) {
            vt_test_fail(__FILE__, __LINE__, "%s features differ: rel L2 %.3g", s->name, e);
            ok = 0;
        }
    }
    /* good: every comparison so far held (setup failures clear ok and stop) */
    int good = ok;
    for (int step = 0; ok && step < s->steps; step++) {
        vt_step_args a = {.sgd = {.lr = 1e-4f, .momentum = 0.9f, .weight_decay = 0.0f, .nesterov = 1},
                          .seed = 99,
                          .iteration = (uint64_t)step};
        vt_xent_sums sc = {0}, sd = {0};
        ok = vt_model_train_step(mc, lab, &a, &sc) == 0 &&
             vt_model_train_step(md, lab, &a, &sd) == 0 && vt_backend_sync(c->dev) == 0;
        double loss_c = sc.loss, loss_d = sd.loss;
        if (!ok) {
            fprintf(stderr, "  %s step %d: %s\n", s->name, step, vt_error_msg());
            break;
        }
        printf("    %s step %d %s: loss %.6f vs %.6f\n", s->name, step, c->name, loss_d / s->batch,
               loss_c / s->batch);
        if ((step == 0 || !c->bf) && !(fabs(loss_d - loss_c) <= tol_act * fabs(loss_c) + 1e-6)) {
            vt_test_fail(__FILE__, __LINE__, "%s step %d loss %.6f vs %.6f", s->name, step, loss_d,
                         loss_c);
            good = 0;
        }
        /* The first step's update is lr times the gradient (plus Nesterov's
         * share of it): the gradients compared before later steps mix in. */
        if (step == 0 && s->steps > 1) {
            ok = vt_model_download(mc, pcpu) == 0 && vt_model_download(md, pdev) == 0;
            good = ok && compare_updates(c, s, "step 0", p0, pcpu, pdev, tol_up) && good;
        }
    }
    if (ok) {
        lc = malloc((size_t)s->batch * 5 * sizeof *lc);
        ld = malloc((size_t)s->batch * 5 * sizeof *ld);
        vt_xent_sums ec = {0}, ed = {0};
        ok = lc && ld && vt_model_evaluate(mc, lab, NULL, lc, &ec) == 0 &&
             vt_model_evaluate(md, lab, NULL, ld, &ed) == 0 && vt_backend_sync(c->dev) == 0;
        snprintf(what, sizeof what, "%s logits", s->name);
        if (c->bf) /* printed only (see the top) */
            printf("    %s logits %s: rel L2 %.3g\n", s->name, c->name,
                   ok ? rel_l2(ld, lc, (size_t)s->batch * 5) : NAN);
        else
            good = ok && close_arrays(c, what, ld, lc, (size_t)s->batch * 5, 5 * tol_act,
                                      5 * tol_act, 0) && good;
    }
    ok = ok && vt_model_download(mc, pcpu) == 0 && vt_model_download(md, pdev) == 0;
    if (ok && !c->bf)
        good = compare_updates(c, s, "final", p0, pcpu, pdev, tol_up) && good;
    free(hx); free(fc); free(fd); free(lc); free(ld);
    vt_model_free(mc); vt_model_free(md);
    vt_trunk_free(tc); vt_trunk_free(td);
    vt_params_free(p0); vt_params_free(pcpu); vt_params_free(pdev);
    VT_CHECK(ok && good);
}

static void case_model_finetune(pc *c)
{
    /* blocks 1-4 frozen, block 5 + a head with dropout, three steps */
    model_spec s = {64, 1, 4, 2, {64, 32}, 3, 0.5f, "finetune"};
    run_model(c, &s);
}

static void case_model_bottleneck(pc *c)
{
    model_spec s = {64, 0, 6, 1, {48, 0}, 3, 0.5f, "bottleneck"};
    run_model(c, &s);
}

static void case_model_scratch(pc *c)
{
    /* every layer trains, the first convolution (C = 3) included */
    model_spec s = {32, 5, 2, 1, {16, 0}, 2, 0.0f, "scratch"};
    run_model(c, &s);
}

/* ---- cases ---------------------------------------------------------------------- */

#define VT_PARITY_CASE(name, fn)                                               \
    static void name(vt_backend *be) { each_precision(be, fn); }

VT_PARITY_CASE(test_images, case_images)
VT_PARITY_CASE(test_conv, case_conv)
VT_PARITY_CASE(test_weight_updates, case_weight_updates)
VT_PARITY_CASE(test_relu_pool, case_relu_pool)
VT_PARITY_CASE(test_dense, case_dense)
VT_PARITY_CASE(test_dropout, case_dropout)
VT_PARITY_CASE(test_softmax, case_softmax)
VT_PARITY_CASE(test_sgd, case_sgd)
VT_PARITY_CASE(test_copies, case_copies)
VT_PARITY_CASE(test_model_finetune, case_model_finetune)
VT_PARITY_CASE(test_model_bottleneck, case_model_bottleneck)
VT_PARITY_CASE(test_model_scratch, case_model_scratch)

static const vt_test_case cases[] = {
    {"parity_images", test_images, VT_TEST_NUMERIC},
    {"parity_conv", test_conv, VT_TEST_NUMERIC},
    {"parity_weight_updates", test_weight_updates, VT_TEST_NUMERIC},
    {"parity_relu_pool", test_relu_pool, VT_TEST_NUMERIC},
    {"parity_dense", test_dense, VT_TEST_NUMERIC},
    {"parity_dropout", test_dropout, VT_TEST_NUMERIC},
    {"parity_softmax", test_softmax, VT_TEST_NUMERIC},
    {"parity_sgd", test_sgd, VT_TEST_NUMERIC},
    {"parity_copies", test_copies, VT_TEST_NUMERIC},
    {"parity_model_finetune", test_model_finetune, VT_TEST_NUMERIC},
    {"parity_model_bottleneck", test_model_bottleneck, VT_TEST_NUMERIC},
    {"parity_model_scratch", test_model_scratch, VT_TEST_NUMERIC},
};

int main(int argc, char **argv) { VT_TEST_MAIN(cases); }

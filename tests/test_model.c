/* test_model.c - the whole trainable stack against finite differences.
 *
 * A VGG16 at 32x32 (every block trainable, finetune, bottleneck) with a
 * two-layer head.  One SGD step with momentum 0, no decay and learning rate
 * eta moves each weight by -eta * g, which reveals the model's gradient g.
 * For every trainable tensor, the K elements with the largest |g| are
 * checked against central differences of the mean loss.  Two effects bound
 * how well a float32 ReLU network can be differentiated numerically: steps
 * too small drown in the loss's rounding noise, steps too large cross ReLU
 * and max-pool kinks (with random weights some pre-activation always lies
 * near zero; an early bias shifts thousands of them at once).  So each
 * element is tried at four step sizes and must match g within 15% at one
 * of them: a wiring bug (wrong buffer, layout, mask or routing) gives errors
 * of order one or the wrong sign at every step.  The largest step is for
 * the CUDA backend: its float32 forward pass differs from the CPU's by
 * about 1.5e-6 (relative), as much as an early bias's smaller steps move
 * the loss, so there the three smaller steps missed by 18-29% (on an H200,
 * 2026-12-04) although test_parity finds its gradients equal to the CPU's
 * to 3e-5.  The exact whole-stack comparison is the
 * float64 PyTorch test (tests/py/test_torch_parity.py), scratch mode
 * included.
 */
#include <stdlib.h>
#include <string.h>

#include "../common/rng.h"
#include "../engine/model.h"
#include "vt_test.h"

enum { N = 3, S = 32, C = 3, K = 3 };

static int make(vt_backend *be, int tb, vt_params **p, vt_trunk **trunk, vt_model **m)
{
    int hidden[1] = {16};
    vt_model_opts o = {.trainable_blocks = tb, .max_batch = N, .dropout = 0,
                       .act = vt_backend_act_dtype(be, "fp32")};
    if (vt_params_new(p, S, hidden, 1, C) < 0)
        return -1;
    vt_params_init_he(*p, 5, 3);
    /* Non-zero biases so every ReLU sees varied inputs. */
    for (int i = 0; i < VT_VGG_NCONV; i++)
        for (int k = 0; k < vt_vgg16[i].cout; k++)
            (*p)->conv_b[i][k] = 0.05f * (2 * vt_rng_uniform(9, (uint64_t)i, (uint64_t)k) - 1);
    if (vt_trunk_create(trunk, be, *p) < 0 || vt_model_create(m, *trunk, *p, &o) < 0)
        return -1;
    return 0;
}

/* Mean loss of the current weights on the current features. */
static double mean_loss(vt_backend *be, vt_model *m, const int32_t *labels)
{
    vt_xent_sums sums = {0};
    if (vt_model_evaluate(m, labels, NULL, NULL, &sums) < 0 || vt_backend_sync(be) < 0)
        return NAN;
    return sums.loss / N;
}

static void check_stack(vt_backend *be, int tb)
{
    vt_params *p = NULL;
    vt_trunk *trunk = NULL;
    vt_model *m = NULL;
    uint8_t img[N * S * S * 3];
    int32_t labels[N] = {0, 2, 1};
    const float eta = 1e-3f;
    vt_xent_sums sums = {0};
    int bad = 0;

    VT_CHECK(make(be, tb, &p, &trunk, &m) == 0);
    for (size_t i = 0; i < sizeof img; i++)
        img[i] = (uint8_t)vt_rng_below(4, 0, i, 256);
    VT_CHECK_OK(vt_model_set_batch(m, N));
    VT_CHECK_OK(vt_op_images_to_input(be, img, N, S, S, VT_PREP_TORCH, vt_model_input(m)));
    VT_CHECK_OK(vt_model_extract(m));

    int np = vt_model_nparams(m);
    float **before = calloc((size_t)np, sizeof *before), **grad = calloc((size_t)np, sizeof *grad);
    for (int i = 0; i < np; i++) {
        size_t n = vt_tensor_numel(vt_model_param(m, i));
        before[i] = malloc(n * sizeof(float));
        grad[i] = malloc(n * sizeof(float));
        VT_CHECK_OK(vt_tensor_download(vt_model_param(m, i), before[i]));
    }
    vt_step_args a = {.sgd = {.lr = eta, .momentum = 0, .weight_decay = 0, .nesterov = 0},
                      .seed = 1, .iteration = 0};
    VT_CHECK_OK(vt_model_train_step(m, labels, &a, &sums));
    VT_CHECK_OK(vt_backend_sync(be));
    printf("  mean loss %.6g\n", sums.loss / N);
    for (int i = 0; i < np; i++) {
        size_t n = vt_tensor_numel(vt_model_param(m, i));
        VT_CHECK_OK(vt_tensor_download(vt_model_param(m, i), grad[i]));
        for (size_t k = 0; k < n; k++) /* w1 = w0 - eta g */
            grad[i][k] = (before[i][k] - grad[i][k]) / eta;
        VT_CHECK_OK(vt_tensor_upload(vt_model_param(m, i), before[i]));
    }
    for (int i = 0; i < np; i++) {
        vt_tensor *w = vt_model_param(m, i);
        size_t n = vt_tensor_numel(w);
        int mismatched = 0;
        float *x = malloc(n * sizeof(float));
        memcpy(x, before[i], n * sizeof(float));
        for (int k = 0; k < K; k++) {
            size_t best = 0;
            for (size_t e = 1; e < n; e++) /* the k-th largest |g| (ties: first) */
                if (fabsf(grad[i][e]) > fabsf(grad[i][best]))
                    best = e;
            float g = grad[i][best];
            grad[i][best] = 0; /* not picked again */
            if (g == 0)
                break;
            static const double steps[4] = {1e-2, 2e-3, 4e-4, 8e-5};
            double closest = INFINITY, fd_at_closest = 0;
            for (int h = 0; h < 4; h++) {
                double eps = steps[h] * fmax(fabs(before[i][best]), 0.05);
                x[best] = before[i][best] + (float)eps;
                VT_CHECK_OK(vt_tensor_upload(w, x));
                double lp = mean_loss(be, m, labels);
                x[best] = before[i][best] - (float)eps;
                VT_CHECK_OK(vt_tensor_upload(w, x));
                double lm = mean_loss(be, m, labels);
                x[best] = before[i][best];
                double fd = (lp - lm) / (2 * eps);
                if (fabs(fd - g) < closest) {
                    closest = fabs(fd - g);
                    fd_at_closest = fd;
                }
            }
            VT_CHECK_OK(vt_tensor_upload(w, before[i]));
            if (closest > 0.15 * fabs(g) + 1e-3) {
                printf("  %s[%zu]: g %+.6e, closest difference %+.6e\n",
                       vt_model_param_name(m, i), best, g, fd_at_closest);
                mismatched++;
            }
        }
        printf("  %-20s %d elements checked, %d mismatched\n", vt_model_param_name(m, i), K,
               mismatched);
        if (mismatched > 0)
            bad++;
        free(x);
    }
    for (int i = 0; i < np; i++) {
        free(before[i]);
        free(grad[i]);
    }
    free(before);
    free(grad);
    vt_model_free(m);
    vt_trunk_free(trunk);
    vt_params_free(p);
    VT_CHECK_INT(bad, 0);
}

/* He initialisation splits large tensors over threads: every element must
 * still be the RNG's value at its own index (no gap, no overlap). */
static void test_init_he_split(vt_backend *be)
{
    int hidden[1] = {1024};
    vt_params *p = NULL;
    (void)be;
    VT_CHECK_OK(vt_params_new(&p, 224, hidden, 1, 5));
    vt_params_init_he(p, 77, 2);
    size_t n = (size_t)p->dense_in[0] * p->dense_out[0]; /* 25088 x 1024 */
    double sd = sqrt(2.0 / p->dense_in[0]);
    int bad = 0;
#define VT__WANT(i) ((float)(sd * vt_rng_normal(77, VT_RNG_INIT, (100ull << 40) | (i))))
    for (size_t i = 0; i < n; i += 997) /* a sample of the whole tensor */
        bad += p->dense_w[0][i] != VT__WANT(i);
    for (size_t nt = 2; nt <= 32; nt++) /* both sides of every possible split */
        for (size_t t = 1; t < nt; t++) {
            size_t at = n * t / nt;
            bad += p->dense_w[0][at - 1] != VT__WANT(at - 1) || p->dense_w[0][at] != VT__WANT(at);
        }
    bad += p->dense_w[0][n - 1] != VT__WANT(n - 1);
#undef VT__WANT
    VT_CHECK_INT(bad, 0);
    vt_params_free(p);
}

/* Largest difference, relative to the largest value, between features of
 * one batch computed whole and in chunks on a GPU (see check_frozen_chunks). */
#define VT__GPU_CHUNK_TOL 1e-4

/* Features of a frozen pass over images img (n of them, S x S) into out,
 * with the scratch budget `chunk_mib` (VT_FROZEN_CHUNK_MIB); also returns
 * the trunk's scratch bytes afterwards. */
static void frozen_features(vt_backend *be, int tb, const char *chunk_mib, const uint8_t *img,
                            int n, float *out, size_t *scratch)
{
    vt_params *p = NULL;
    vt_trunk *trunk = NULL;
    vt_model *m = NULL;
    int hidden[1] = {16};
    vt_model_opts o = {.trainable_blocks = tb, .max_batch = n, .dropout = 0,
                       .act = vt_backend_act_dtype(be, "fp32")};
    VT_CHECK_OK(vt_params_new(&p, S, hidden, 1, C));
    vt_params_init_he(p, 5, 3);
    VT_CHECK_OK(vt_trunk_create(&trunk, be, p));
    VT_CHECK_OK(vt_model_create(&m, trunk, p, &o));
    setenv("VT_FROZEN_CHUNK_MIB", chunk_mib, 1);
    VT_CHECK_OK(vt_op_images_to_input(be, img, n, S, S, VT_PREP_TORCH, vt_model_input(m)));
    VT_CHECK_OK(vt_model_extract(m));
    VT_CHECK_OK(vt_tensor_download(vt_model_features(m), out));
    unsetenv("VT_FROZEN_CHUNK_MIB");
    *scratch = vt_trunk_scratch_bytes(trunk);
    vt_model_free(m);
    vt_trunk_free(trunk);
    vt_params_free(p);
}

/* A frozen pass with 1 MiB per scratch buffer (4 images of block 1 at
 * 32x32 in f32) over nb images gives the features of the pass over the
 * whole batch, with the scratch of its plan:
 *   7 images: block 1 in chunks of 4 (4 + 3), then from block 2 on (7
 *     images of block 2 fit) the whole batch: the pair for 4 images of
 *     block 1, and the whole batch's block-1 pool output (7 x 16x16x64);
 *   34 images: block 4 does not fit for 34, so all of the finetune trunk
 *     runs in chunks of 4 (8 x 4 + 2), straight into the features. */
static void check_frozen_chunks(vt_backend *be, int tb, int nb, size_t want_scratch)
{
    int side, ch;
    uint8_t *img = malloc((size_t)nb * S * S * 3);
    for (size_t i = 0; i < (size_t)nb * S * S * 3; i++)
        img[i] = (uint8_t)vt_rng_below(6, 0, i, 256);
    vt_vgg_cut_shape(S, tb, &side, &ch);
    size_t n = (size_t)nb * side * side * ch, s_whole, s_chunked;
    float *whole = malloc(n * sizeof *whole), *chunked = malloc(n * sizeof *chunked);
    frozen_features(be, tb, "0", img, nb, whole, &s_whole);
    frozen_features(be, tb, "1", img, nb, chunked, &s_chunked);
    double top = 0, diff = 0;
    for (size_t i = 0; i < n; i++) {
        top = fmax(top, fabs(whole[i]));
        diff = fmax(diff, fabs(whole[i] - chunked[i]));
    }
    printf("  %d images: features max %.4g, largest difference %.3g; scratch %zu -> %zu bytes\n",
           nb, top, diff, s_whole, s_chunked);
    VT_CHECK(top > 0);
    /* the CPU computes each image alone either way; cuDNN may choose other
     * algorithms for other batch sizes (float rounding only: a Winograd
     * against an implicit GEMM differs by about 1e-5 of the largest value
     * after ten layers; a wrong image or offset by the value itself) */
    VT_CHECK(diff <= (strcmp(vt_backend_name(be), "cpu") == 0 ? 0.0 : VT__GPU_CHUNK_TOL * top));
    VT_CHECK_INT((long long)s_whole, (long long)(2 * nb * (size_t)S * S * 64 * 4));
    VT_CHECK_INT((long long)s_chunked, (long long)want_scratch);
    free(img);
    free(whole);
    free(chunked);
}

enum { PER1 = S * S * 64 * 4, POOL1 = S / 2 * (S / 2) * 64 * 4 }; /* bytes per image */
static void test_frozen_chunks_finetune(vt_backend *be)
{
    check_frozen_chunks(be, 1, 7, 2 * 4 * PER1 + 7 * POOL1);
    check_frozen_chunks(be, 1, 34, 2 * 4 * PER1);
}
static void test_frozen_chunks_bottleneck(vt_backend *be)
{
    check_frozen_chunks(be, 0, 7, 2 * 4 * PER1 + 7 * POOL1);
}

/* The daemon admits a job by vt_model_estimate's figure: the trunk's scratch
 * must stay within it whatever batch sizes up to max_batch the job runs
 * (a smaller last batch, validation), in any order, and the smaller
 * batches' features must be those of the same images in the full batch. */
static void test_frozen_scratch_bound(vt_backend *be)
{
    enum { MAXB = 5 };
    int hidden[1] = {16}, side, ch;
    vt_params *p = NULL;
    vt_trunk *trunk = NULL;
    vt_model *m = NULL;
    vt_model_opts o = {.trainable_blocks = 0, .max_batch = MAXB, .dropout = 0,
                       .act = vt_backend_act_dtype(be, "fp32")};
    uint8_t img[MAXB * S * S * 3];
    size_t est = 0, act = o.act == VT_BF16 ? 2 : 4;
    for (size_t i = 0; i < sizeof img; i++)
        img[i] = (uint8_t)vt_rng_below(13, 0, i, 256);
    vt_vgg_cut_shape(S, 0, &side, &ch);
    size_t per = (size_t)side * side * ch;
    float *full = malloc(MAXB * per * sizeof *full), *part = malloc(MAXB * per * sizeof *part);
    setenv("VT_FROZEN_CHUNK_MIB", "1", 1);
    VT_CHECK_OK(vt_params_new(&p, S, hidden, 1, C));
    vt_params_init_he(p, 5, 3);
    (void)vt_model_estimate(p, &o, act, &est);
    VT_CHECK_OK(vt_trunk_create(&trunk, be, p));
    VT_CHECK_OK(vt_model_create(&m, trunk, p, &o));
    static const int order[] = {MAXB, 4, 3, 2, 1, 4, MAXB};
    for (size_t k = 0; k < sizeof order / sizeof order[0]; k++) {
        int n = order[k];
        VT_CHECK_OK(vt_model_set_batch(m, n));
        VT_CHECK_OK(vt_op_images_to_input(be, img, n, S, S, VT_PREP_TORCH, vt_model_input(m)));
        VT_CHECK_OK(vt_model_extract(m));
        VT_CHECK_OK(vt_tensor_download(vt_model_features(m), k == 0 ? full : part));
        printf("  batch %d: scratch %zu bytes, estimate %zu\n", n, vt_trunk_scratch_bytes(trunk),
               est);
        VT_CHECK(vt_trunk_scratch_bytes(trunk) <= est);
        if (k > 0)
            VT_CHECK(vt_test_allclose("features", part, full, (size_t)n * per,
                                      strcmp(vt_backend_name(be), "cpu") == 0 ? 0.0
                                                                              : VT__GPU_CHUNK_TOL,
                                      VT__GPU_CHUNK_TOL));
    }
    unsetenv("VT_FROZEN_CHUNK_MIB");
    free(full);
    free(part);
    vt_model_free(m);
    vt_trunk_free(trunk);
    vt_params_free(p);
}

/* ---- recorded steps (CUDA graphs) ---------------------------------------- */

typedef struct {
    vt_params *p;
    vt_trunk *trunk;
    vt_model *m;
    int frozen_each_step; /* run the frozen pass before every step */
    uint8_t img[4 * S * S * 3];
} rec_model;

/* A model training blocks 6-tb..5 and a head (dropout 0.5, two hidden
 * layers) on b, with the features of NB fixed images. */
static int rec_make(vt_backend *b, rec_model *r, int nb, int tb)
{
    int hidden[2] = {32, 16};
    vt_model_opts o = {.trainable_blocks = tb, .max_batch = nb, .dropout = 0.5f,
                       .act = vt_backend_act_dtype(b, "bf16")};
    for (size_t i = 0; i < sizeof r->img; i++)
        r->img[i] = (uint8_t)vt_rng_below(11, 0, i, 256);
    if (vt_params_new(&r->p, S, hidden, 2, C) < 0)
        return -1;
    vt_params_init_he(r->p, 12, 3);
    return vt_trunk_create(&r->trunk, b, r->p) < 0 || vt_model_create(&r->m, r->trunk, r->p, &o) < 0 ||
                   vt_op_images_to_input(b, r->img, nb, S, S, VT_PREP_TORCH, vt_model_input(r->m)) < 0 ||
                   vt_model_extract(r->m) < 0
               ? -1
               : 0;
}

static void rec_free(rec_model *r)
{
    vt_model_free(r->m);
    vt_trunk_free(r->trunk);
    vt_params_free(r->p);
}

/* The same steps on model r: learning rate and dropout stream changing
 * every step, a smaller batch in the middle, a weight written from the
 * host (which a replay must not miss), more steps; with frozen_each_step,
 * each step's images go through the frozen pass first, as in a first
 * epoch.  Returns the summed loss and fills p with the final weights. */
static double rec_run(vt_backend *b, rec_model *r, vt_params *p)
{
    int32_t labels[4] = {0, 2, 1, 2};
    vt_xent_sums sums = {0};
    for (int i = 0; i < 14; i++) {
        vt_step_args a = {.sgd = {.lr = 5e-4f * (1.0f + 0.1f * (float)i), .momentum = 0.9f,
                                  .weight_decay = 1e-4f, .nesterov = i < 9},
                          .seed = 3, .iteration = (uint64_t)i};
        int n = i == 6 ? 3 : 4;
        int rc = vt_model_set_batch(r->m, n);
        if (rc == 0 && r->frozen_each_step)
            rc = vt_op_images_to_input(b, r->img, n, S, S, VT_PREP_TORCH, vt_model_input(r->m));
        if (rc == 0 && r->frozen_each_step)
            rc = vt_model_extract(r->m);
        if (rc < 0 || vt_model_train_step(r->m, labels, &a, &sums) < 0) {
            printf("  step %d: %s\n", i, vt_error_msg());
            return NAN;
        }
        if (i == 9) { /* scale the first dense layer's weights from the host */
            vt_tensor *t = vt_model_param(r->m, vt_model_nparams(r->m) - 6);
            size_t n_el = vt_tensor_numel(t);
            float *h = malloc(n_el * sizeof *h);
            if (vt_tensor_download(t, h) < 0)
                return NAN;
            for (size_t k = 0; k < n_el; k++)
                h[k] *= 0.5f;
            if (vt_tensor_upload(t, h) < 0)
                return NAN;
            free(h);
        }
    }
    if (vt_backend_sync(b) < 0 || vt_model_download(r->m, p) < 0) {
        printf("  %s\n", vt_error_msg());
        return NAN;
    }
    return sums.loss;
}

/* Training steps replayed from a recording end with the same weights, bit
 * for bit, as the same steps run one operation at a time, and the same
 * summed loss (to its summation order): for finetune from stored features,
 * finetune with the frozen pass before each step, and scratch (the first
 * layer inside the recording).  On CUDA the two runs use two backends,
 * VT_CUDA_GRAPHS=1 and =0, both with cuDNN's heuristic and deterministic
 * algorithms (and so the first layer's direct kernel, not a timed choice,
 * unless small_conv is "cudnn": then cuDNN's, on weights padded to 8
 * channels by a conversion inside the recording), so that they choose the
 * same ones; elsewhere both run on the given backend, which does not
 * record. */
static void check_recorded_steps(vt_backend *be, int tb, int frozen_each_step,
                                 const char *small_conv)
{
    int cuda = strcmp(vt_backend_name(be), "cuda") == 0;
    vt_backend *b[2] = {be, be};
    rec_model r[2] = {{0}};
    vt_params *out[2] = {NULL, NULL};
    double loss[2];
    long replays[2];
    int hidden[2] = {32, 16};
    printf("  trainable_blocks %d%s, first layer %s\n", tb,
           frozen_each_step ? ", frozen pass every step" : "", small_conv);
    for (int k = 0; k < 2; k++) {
        if (cuda) {
            setenv("VT_CUDA_GRAPHS", k ? "1" : "0", 1);
            setenv("VT_CUDA_CONV_SEARCH", "heuristic", 1);
            setenv("VT_CUDA_DETERMINISTIC", "1", 1);
            setenv("VT_CUDA_SMALL_CONV", small_conv, 1);
            int rc = vt_backend_create(&b[k], "cuda", 0);
            unsetenv("VT_CUDA_SMALL_CONV");
            unsetenv("VT_CUDA_GRAPHS");
            unsetenv("VT_CUDA_CONV_SEARCH");
            unsetenv("VT_CUDA_DETERMINISTIC");
            VT_CHECK_OK(rc);
        }
        VT_CHECK_OK(vt_params_new(&out[k], S, hidden, 2, C));
        r[k].frozen_each_step = frozen_each_step;
        VT_CHECK(rec_make(b[k], &r[k], 4, tb) == 0);
        loss[k] = rec_run(b[k], &r[k], out[k]);
        replays[k] = vt_model_replays(r[k].m);
    }
    printf("  summed loss %.9g (plain) %.9g (recorded), %ld replays\n", loss[0], loss[1],
           replays[1]);
    VT_CHECK(isfinite(loss[0]) && fabs(loss[0] - loss[1]) <= 1e-9 * fabs(loss[0]));
    int differ = 0;
    for (int i = vt_vgg_first_trainable(tb); i < VT_VGG_NCONV; i++)
        differ += memcmp(out[0]->conv_w[i], out[1]->conv_w[i],
                         vt_vgg_conv_numel(i) * sizeof(float)) != 0;
    for (int j = 0; j < out[0]->ndense; j++)
        differ += memcmp(out[0]->dense_w[j], out[1]->dense_w[j],
                         (size_t)out[0]->dense_in[j] * out[0]->dense_out[j] * sizeof(float)) != 0 ||
                  memcmp(out[0]->dense_b[j], out[1]->dense_b[j],
                         (size_t)out[0]->dense_out[j] * sizeof(float)) != 0;
    VT_CHECK_INT(differ, 0);
    VT_CHECK_INT(replays[0], 0);
    /* 14 steps: 0 plain, 1 recorded, 2-5 replayed, 6 (batch 3) plain, 7-9
     * replayed (or, where step 6 made the backend grow a buffer: 7 plain, 8
     * recorded, 9 replayed); the host write after 9 makes 10 plain, 11
     * recorded, 12-13 replayed */
    if (cuda)
        VT_CHECK(replays[1] >= 7 && replays[1] <= 9);
    else
        VT_CHECK_INT(replays[1], 0);
    for (int k = 0; k < 2; k++) {
        rec_free(&r[k]);
        vt_params_free(out[k]);
        if (b[k] != be)
            vt_backend_free(b[k]);
    }
}

static void test_recorded_steps(vt_backend *be) { check_recorded_steps(be, 1, 0, "auto"); }
static void test_recorded_steps_frozen(vt_backend *be) { check_recorded_steps(be, 1, 1, "auto"); }
static void test_recorded_steps_scratch(vt_backend *be) { check_recorded_steps(be, 5, 0, "auto"); }
static void test_recorded_steps_scratch_cudnn(vt_backend *be)
{
    if (strcmp(vt_backend_name(be), "cuda") != 0) {
        printf("  skipped: no cuDNN on the CPU backend (recorded_steps_scratch covers it)\n");
        return;
    }
    check_recorded_steps(be, 5, 0, "cudnn");
}

static void test_scratch_stack(vt_backend *be) { check_stack(be, 5); }
static void test_finetune_stack(vt_backend *be) { check_stack(be, 1); }
static void test_bottleneck_stack(vt_backend *be) { check_stack(be, 0); }

static const vt_test_case cases[] = {
    {"init_he_split", test_init_he_split, 0},
    {"scratch_stack", test_scratch_stack, VT_TEST_NUMERIC},
    {"finetune_stack", test_finetune_stack, VT_TEST_NUMERIC},
    {"bottleneck_stack", test_bottleneck_stack, VT_TEST_NUMERIC},
    {"frozen_chunks_finetune", test_frozen_chunks_finetune, VT_TEST_NUMERIC},
    {"frozen_chunks_bottleneck", test_frozen_chunks_bottleneck, VT_TEST_NUMERIC},
    {"frozen_scratch_bound", test_frozen_scratch_bound, VT_TEST_NUMERIC},
    {"recorded_steps", test_recorded_steps, VT_TEST_NUMERIC},
    {"recorded_steps_frozen", test_recorded_steps_frozen, VT_TEST_NUMERIC},
    {"recorded_steps_scratch", test_recorded_steps_scratch, VT_TEST_NUMERIC},
    {"recorded_steps_scratch_cudnn", test_recorded_steps_scratch_cudnn, VT_TEST_NUMERIC},
};

int main(int argc, char **argv) { VT_TEST_MAIN(cases); }

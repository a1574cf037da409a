/* vt_bench.c - vt-bench: the step figures of shared/BENCH.md on a backend.
 *
 *   trunk_fwd    blocks 1-4 forward, no gradients (feature extraction)
 *   step_full    trunk forward + block-5/head forward, backward, update
 *   step_cached  block-5/head step from stored block-4 features
 *
 * The model is the benchmark's: VGG16, blocks 1-4 frozen, block 5 and a head
 * Dense 1024 ReLU -> Dense 128 ReLU -> Dense C trained with SGD lr 1e-3,
 * momentum 0.9, Nesterov, no dropout; He-initialised seeded weights and
 * seeded random inputs (never zeros, which hide unwritten outputs and can
 * run faster than real data).  It runs through the engine's public API
 * (engine/model.h), the same calls a training job makes.
 *
 * Timing: each iteration is bracketed by vt_backend_sync() and read off
 * CLOCK_MONOTONIC, so the device is idle when the clock starts and done
 * when it stops (equivalent to CUDA events around the region to within the
 * launch latency of the first operation, a few microseconds); the figure is
 * the median of --iters timed iterations after --warmup untimed ones (the
 * first of which also chooses the cuDNN algorithms; with VT_CUDA_GRAPHS=1
 * the second records the step as a CUDA graph, and "replayed" in the JSON
 * says how many timed steps replayed it).  Peak memory is
 * vt_backend_memory()'s high-water mark (tensors plus the backend's
 * workspaces, bf16 copies and algorithm-search buffers) from the end of a
 * first, untimed trunk pass on, the window of the PyTorch anchor's
 * max_memory_allocated(); "process_peak_mib" is the whole process's, that
 * pass and its cuDNN searches included.  Run one precision per process to
 * get each precision's own peak, as scripts/gpu-check.sh does.
 *
 * Output: one JSON object per line per figure (and one for the implied
 * 10-epoch x 2000-image job, as the PyTorch anchor prints), then a table.
 *
 *   vt-bench [--backend auto|cpu|cuda] [--batch N] [--size S] [--classes C]
 *            [--precision bf16|fp32] [--iters N] [--warmup N]
 *            [--modes trunk_fwd,step_full,step_cached] [--threads N]
 *            [--seed N] [--label TEXT] [--json FILE]
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/clock.h"
#include "../common/error.h"
#include "../common/rng.h"
#include "../engine/model.h"
#include "../engine/vgg.h"
#include "../kernels/backend.h"

#define VT_BENCH_MODES 3
static const char *const vt_bench_mode_names[VT_BENCH_MODES] = {"trunk_fwd", "step_full",
                                                                "step_cached"};

typedef struct {
    const char *backend, *precision, *modes, *label, *json;
    int batch, size, classes, iters, warmup, threads;
    uint64_t seed;
} vt_bench_opts;

typedef struct {
    int ran;
    double ips, median_ms, min_ms, max_ms, last_loss;
    size_t peak, process_peak; /* bytes: since the first trunk pass; since the start */
    long replayed; /* timed steps that ran as CUDA graph replays */
} vt_bench_result;

typedef struct {
    vt_backend *be;
    vt_model *m;
    int32_t *labels;
    uint64_t iteration;
    vt_xent_sums sums; /* the last step's loss, complete after a sync */
    size_t setup_peak; /* bytes: the high-water mark before the measured window */
} vt_bench_ctx;

static double vt_bench_now_ms(void) { return vt_clock_mono() * 1e3; }

static int vt_bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void vt_bench_usage(FILE *f)
{
    fprintf(f,
            "usage: vt-bench [--backend auto|cpu|cuda] [--batch N] [--size S] [--classes C]\n"
            "                [--precision bf16|fp32] [--iters N] [--warmup N]\n"
            "                [--modes trunk_fwd,step_full,step_cached] [--threads N]\n"
            "                [--seed N] [--label TEXT] [--json FILE]\n"
            "\n"
            "Times the training steps of ../shared/BENCH.md on one backend, with seeded\n"
            "random weights and inputs (VGG16; blocks 1-4 frozen; block 5 and a head\n"
            "1024-128-C trained with SGD):\n"
            "  trunk_fwd    blocks 1-4 forward (feature extraction)\n"
            "  step_full    trunk forward, then block 5 + head forward, backward, update\n"
            "  step_cached  block 5 + head step from stored block-4 features\n"
            "Defaults: --backend auto, --batch 64, --size 224, --classes 5, --precision\n"
            "bf16 (the CPU backend computes in fp32 whatever is asked), --iters 30 timed\n"
            "after --warmup 3, every mode.  On a CPU, try --batch 4 --size 64 --iters 3.\n"
            "Prints a JSON object per mode (images/s, median/min/max ms per step, peak\n"
            "device MiB after a first trunk pass, as the PyTorch anchor counts it, and the\n"
            "whole process's), also written to --json FILE, and with all three modes one more\n"
            "line, marked estimated: the 10-epoch job over 2000 images those step times\n"
            "imply; then a table.\n");
}

static int vt_bench_int(const char *s, int lo, int *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > 1 << 20)
        return -1;
    *out = (int)v;
    return 0;
}

static int vt_bench_parse(int argc, char **argv, vt_bench_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        static const char *const known[] = {"--backend", "--precision", "--modes", "--label",
                                            "--json", "--batch", "--size", "--classes",
                                            "--iters", "--warmup", "--threads", "--seed", NULL};
        int k = 0;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            vt_bench_usage(stdout);
            exit(0);
        }
        while (known[k] && strcmp(known[k], a) != 0)
            k++;
        if (!known[k]) {
            fprintf(stderr, "vt-bench: unknown option %s\n", a);
            vt_bench_usage(stderr);
            return -1;
        }
        if (!v) {
            fprintf(stderr, "vt-bench: %s needs a value\n", a);
            return -1;
        }
        if (strcmp(a, "--backend") == 0)
            o->backend = v;
        else if (strcmp(a, "--precision") == 0)
            o->precision = v;
        else if (strcmp(a, "--modes") == 0)
            o->modes = v;
        else if (strcmp(a, "--label") == 0)
            o->label = v;
        else if (strcmp(a, "--json") == 0)
            o->json = v;
        else if (strcmp(a, "--batch") == 0)
            bad = vt_bench_int(v, 1, &o->batch);
        else if (strcmp(a, "--size") == 0)
            bad = vt_bench_int(v, 32, &o->size);
        else if (strcmp(a, "--classes") == 0)
            bad = vt_bench_int(v, 2, &o->classes);
        else if (strcmp(a, "--iters") == 0)
            bad = vt_bench_int(v, 1, &o->iters);
        else if (strcmp(a, "--warmup") == 0)
            bad = vt_bench_int(v, 0, &o->warmup);
        else if (strcmp(a, "--threads") == 0)
            bad = vt_bench_int(v, 0, &o->threads);
        else {
            char *end;
            errno = 0;
            o->seed = strtoull(v, &end, 10);
            bad = errno || !*v || *end;
        }
        if (bad) {
            fprintf(stderr, "vt-bench: bad value for %s: %s\n", a, v);
            return -1;
        }
        i++;
    }
    if (strcmp(o->precision, "bf16") != 0 && strcmp(o->precision, "fp32") != 0) {
        fprintf(stderr, "vt-bench: --precision must be bf16 or fp32\n");
        return -1;
    }
    if (vt_vgg_check_size(o->size) < 0) {
        fprintf(stderr, "vt-bench: %s\n", vt_error_msg());
        return -1;
    }
    if (!*o->modes) {
        fprintf(stderr, "vt-bench: --modes is empty\n");
        return -1;
    }
    for (const char *m = o->modes; *m;) { /* every name in --modes is a mode */
        size_t n = strcspn(m, ","), k = 0;
        while (k < VT_BENCH_MODES && (strlen(vt_bench_mode_names[k]) != n ||
                                      strncmp(vt_bench_mode_names[k], m, n) != 0))
            k++;
        if (k == VT_BENCH_MODES) {
            fprintf(stderr, "vt-bench: --modes: '%.*s' is not one of trunk_fwd, step_full, "
                    "step_cached\n", (int)n, m);
            return -1;
        }
        m += n + (m[n] == ',');
    }
    return 0;
}

/* One iteration of a figure. */
static int vt_bench_run(vt_bench_ctx *c, int mode)
{
    vt_step_args a = {.sgd = {.lr = 1e-3f, .momentum = 0.9f, .weight_decay = 0.0f, .nesterov = 1},
                      .seed = 1,
                      .iteration = c->iteration++};
    int rc;
    if (mode != 2 && (rc = vt_model_extract(c->m)) < 0)
        return rc;
    if (mode == 0)
        return 0;
    /* (in the timed loop the previous step's sums were delivered by its sync;
     * the last one's are the figure's last_loss) */
    c->sums = (vt_xent_sums){0};
    return vt_model_train_step(c->m, c->labels, &a, &c->sums);
}

static int vt_bench_measure(vt_bench_ctx *c, const vt_bench_opts *o, int mode, vt_bench_result *r)
{
    double *t = calloc((size_t)o->iters, sizeof *t);
    int rc = 0;
    if (!t)
        return vt_error_set(VT_ENOMEM, "out of memory");
    for (int i = 0; i < o->warmup && rc == 0; i++)
        rc = vt_bench_run(c, mode);
    if (rc == 0)
        rc = vt_backend_sync(c->be);
    r->replayed = -vt_model_replays(c->m);
    for (int i = 0; i < o->iters && rc == 0; i++) {
        double t0 = vt_bench_now_ms();
        if ((rc = vt_bench_run(c, mode)) == 0 && (rc = vt_backend_sync(c->be)) == 0)
            t[i] = vt_bench_now_ms() - t0;
    }
    if (rc == 0) {
        qsort(t, (size_t)o->iters, sizeof *t, vt_bench_cmp);
        r->ran = 1;
        r->median_ms = o->iters % 2 ? t[o->iters / 2]
                                    : 0.5 * (t[o->iters / 2 - 1] + t[o->iters / 2]);
        r->min_ms = t[0];
        r->max_ms = t[o->iters - 1];
        r->ips = r->median_ms > 0 ? o->batch / (r->median_ms / 1e3) : 0.0;
        r->last_loss = mode ? c->sums.loss / o->batch : NAN;
        vt_backend_memory(c->be, NULL, &r->peak);
        r->process_peak = r->peak > c->setup_peak ? r->peak : c->setup_peak;
        r->replayed += vt_model_replays(c->m);
    }
    free(t);
    return rc;
}

/* Prints s as a JSON string (quotes and backslashes escaped). */
static void vt_bench_jstr(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        if ((unsigned char)*s >= 0x20)
            fputc(*s, f);
    }
    fputc('"', f);
}

static void vt_bench_json(FILE *f, const vt_bench_opts *o, vt_backend *be, const char *prec,
                          int mode, const vt_bench_result *r)
{
    fprintf(f, "{\"impl\":\"vggtune\",\"backend\":");
    vt_bench_jstr(f, vt_backend_name(be));
    fprintf(f, ",\"device\":");
    vt_bench_jstr(f, vt_backend_device(be));
    fprintf(f, ",\"mode\":\"%s\",\"precision\":\"%s\",\"batch\":%d,\"size\":%d,\"classes\":%d,"
               "\"images_per_s\":%.1f,\"median_ms\":%.3f,\"min_ms\":%.3f,\"max_ms\":%.3f,"
               "\"iters\":%d,\"peak_mem_mib\":%.0f,\"process_peak_mib\":%.0f",
            vt_bench_mode_names[mode], prec, o->batch, o->size, o->classes, r->ips, r->median_ms,
            r->min_ms, r->max_ms, o->iters, r->peak / 1048576.0, r->process_peak / 1048576.0);
    if (!isnan(r->last_loss))
        fprintf(f, ",\"last_loss\":%.5f", isfinite(r->last_loss) ? r->last_loss : -1.0);
    if (r->replayed)
        fprintf(f, ",\"replayed\":%ld", r->replayed);
    if (o->label) {
        fprintf(f, ",\"label\":");
        vt_bench_jstr(f, o->label);
    }
    fprintf(f, "}\n");
    fflush(f);
}

static void vt_bench_fill(float *a, size_t n, uint64_t seed, uint64_t stream, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        a[i] = lo + (hi - lo) * vt_rng_uniform(seed, stream, i);
}

int main(int argc, char **argv)
{
    vt_bench_opts o = {.backend = "auto", .precision = "bf16",
                       .modes = "trunk_fwd,step_full,step_cached", .batch = 64, .size = 224,
                       .classes = 5, .iters = 30, .warmup = 3, .threads = 0, .seed = 1};
    vt_bench_result res[VT_BENCH_MODES] = {{0}};
    vt_backend *be = NULL;
    vt_params *p = NULL;
    vt_trunk *trunk = NULL;
    vt_model *m = NULL;
    float *input = NULL;
    int32_t *labels = NULL;
    FILE *jf = NULL;
    const char *prec;
    char why[512];
    int hidden[2] = {1024, 128}, rc = 0, status = 1;

    if (vt_bench_parse(argc, argv, &o) < 0)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(o.backend, "auto") == 0) {
        rc = vt_backend_create_auto(&be, o.threads, why, sizeof why);
        if (rc == 0 && why[0])
            fprintf(stderr, "vt-bench: using the CPU backend: %s\n", why);
    } else {
        rc = vt_backend_create(&be, o.backend, o.threads);
    }
    if (rc < 0) {
        fprintf(stderr, "vt-bench: backend %s: %s\n", o.backend, vt_error_msg());
        return strcmp(o.backend, "cpu") == 0 ? 1 : 77;
    }
    prec = vt_backend_act_dtype(be, o.precision) == VT_BF16 ? "bf16" : "fp32";
    if (o.json && !(jf = fopen(o.json, "a"))) {
        fprintf(stderr, "vt-bench: %s: %s\n", o.json, strerror(errno));
        goto done;
    }

    if ((rc = vt_params_new(&p, o.size, hidden, 2, o.classes)) < 0)
        goto fail;
    vt_params_init_he(p, o.seed, 3);
    if ((rc = vt_trunk_create(&trunk, be, p)) < 0)
        goto fail;
    {
        vt_model_opts mo = {.trainable_blocks = 1, .max_batch = o.batch, .dropout = 0.0f,
                            .act = vt_backend_act_dtype(be, o.precision)};
        if ((rc = vt_model_create(&m, trunk, p, &mo)) < 0)
            goto fail;
    }
    {
        size_t n = (size_t)o.batch * o.size * o.size * 3;
        if (!(input = malloc(n * sizeof *input)) ||
            !(labels = malloc((size_t)o.batch * sizeof *labels))) {
            rc = vt_error_set(VT_ENOMEM, "out of memory");
            goto fail;
        }
        /* about the range of preprocessed images */
        vt_bench_fill(input, n, o.seed, 101, -2.0f, 2.0f);
        for (int i = 0; i < o.batch; i++)
            labels[i] = (int32_t)vt_rng_below(o.seed, 102, (uint64_t)i, (uint64_t)o.classes);
        if ((rc = vt_tensor_upload(vt_model_input(m), input)) < 0)
            goto fail;
    }
    {
        vt_bench_ctx c = {.be = be, .m = m, .labels = labels};
        /* the stored features of step_cached: real block-4 outputs */
        if ((rc = vt_model_extract(m)) < 0 || (rc = vt_backend_sync(be)) < 0)
            goto fail;
        vt_backend_memory(be, NULL, &c.setup_peak);
        vt_backend_memory_reset_peak(be);
        for (int k = 0; k < VT_BENCH_MODES; k++) {
            if (!strstr(o.modes, vt_bench_mode_names[k]))
                continue;
            if ((rc = vt_bench_measure(&c, &o, k, &res[k])) < 0) {
                vt_error_wrap(rc, "%s", vt_bench_mode_names[k]);
                goto fail;
            }
            vt_bench_json(stdout, &o, be, prec, k, &res[k]);
            if (jf)
                vt_bench_json(jf, &o, be, prec, k, &res[k]);
        }
    }
    if (res[0].ran && res[1].ran && res[2].ran) {
        /* the implied job of the anchor: E epochs over N images */
        const int N = 2000, E = 10;
        double naive = (double)N * E / res[1].ips;
        double cached = (double)N / res[0].ips + (double)N * E / res[2].ips;
        char line[256];
        snprintf(line, sizeof line,
                 "{\"impl\":\"vggtune\",\"job\":\"%d epochs x %d images\",\"precision\":\"%s\","
                 "\"batch\":%d,\"size\":%d,\"naive_s\":%.3f,\"cached_s\":%.3f,"
                 "\"estimated\":\"from the step figures above\"}\n",
                 E, N, prec, o.batch, o.size, naive, cached);
        fputs(line, stdout);
        if (jf)
            fputs(line, jf);
    }

    printf("\nvggtune vt-bench  backend %s  device %s\n", vt_backend_name(be),
           vt_backend_device(be));
    printf("%-12s %-5s %5s %10s %9s %9s %8s\n", "mode", "prec", "batch", "img/s", "ms", "min ms",
           "peakMiB");
    for (int k = 0; k < VT_BENCH_MODES; k++)
        if (res[k].ran)
            printf("%-12s %-5s %5d %10.1f %9.3f %9.3f %8.0f\n", vt_bench_mode_names[k], prec,
                   o.batch, res[k].ips, res[k].median_ms, res[k].min_ms,
                   res[k].peak / 1048576.0);
    status = 0;
    goto done;
fail:
    fprintf(stderr, "vt-bench: %s (%s)\n", vt_error_msg(), vt_error_name(rc));
done:
    if (jf)
        fclose(jf);
    free(input);
    free(labels);
    vt_model_free(m);
    vt_trunk_free(trunk);
    vt_params_free(p);
    vt_backend_free(be);
    return status;
}

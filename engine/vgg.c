/* vgg.c - VGG16 constants and host parameters (see vgg.h). */
#include "vgg.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../common/error.h"
#include "../common/rng.h"

const vt_vgg_conv vt_vgg16[VT_VGG_NCONV] = {
    {"block1_conv1", 0, 1, 3, 64, 0},     {"block1_conv2", 2, 1, 64, 64, 1},
    {"block2_conv1", 5, 2, 64, 128, 0},   {"block2_conv2", 7, 2, 128, 128, 1},
    {"block3_conv1", 10, 3, 128, 256, 0}, {"block3_conv2", 12, 3, 256, 256, 0},
    {"block3_conv3", 14, 3, 256, 256, 1}, {"block4_conv1", 17, 4, 256, 512, 0},
    {"block4_conv2", 19, 4, 512, 512, 0}, {"block4_conv3", 21, 4, 512, 512, 1},
    {"block5_conv1", 24, 5, 512, 512, 0}, {"block5_conv2", 26, 5, 512, 512, 0},
    {"block5_conv3", 28, 5, 512, 512, 1},
};

void vt_vgg_torch_name(char *buf, size_t len, int i, const char *what)
{
    snprintf(buf, len, "features.%d.%s", vt_vgg16[i].torch_index, what);
}

int vt_vgg_first_trainable(int trainable_blocks)
{
    int first_block = VT_VGG_NBLOCKS + 1 - trainable_blocks;
    for (int i = 0; i < VT_VGG_NCONV; i++)
        if (vt_vgg16[i].block >= first_block)
            return i;
    return VT_VGG_NCONV;
}

void vt_vgg_cut_shape(int image_size, int trainable_blocks, int *side, int *channels)
{
    int frozen_blocks = VT_VGG_NBLOCKS - trainable_blocks;
    *side = vt_vgg_side(image_size, frozen_blocks);
    *channels = frozen_blocks == 0 ? 3 : vt_vgg16[vt_vgg_first_trainable(trainable_blocks) - 1].cout;
}

int vt_vgg_check_size(int image_size)
{
    if (image_size < 32 || image_size > 1024 || image_size % 32 != 0)
        return vt_error_set(VT_EINVAL,
                            "image_size %d must be a multiple of 32 between 32 and 1024",
                            image_size);
    return 0;
}

int vt_params_new(vt_params **out, int image_size, const int *hidden, int nhidden,
                  int nclasses)
{
    vt_params *p;
    int rc;

    *out = NULL;
    if ((rc = vt_vgg_check_size(image_size)) < 0)
        return rc;
    if (nhidden < 0 || nhidden + 1 > VT_MAX_DENSE)
        return vt_error_set(VT_EINVAL, "the head may have at most %d hidden layers",
                            VT_MAX_DENSE - 1);
    if (nclasses < 2)
        return vt_error_set(VT_EINVAL, "at least 2 classes are needed, got %d", nclasses);
    if (!(p = calloc(1, sizeof *p)))
        return vt_error_set(VT_ENOMEM, "out of memory");
    p->image_size = image_size;
    p->nclasses = nclasses;
    p->ndense = nhidden + 1;
    for (int i = 0; i < VT_VGG_NCONV; i++) {
        p->conv_w[i] = calloc((size_t)vt_vgg_conv_numel(i), sizeof(float));
        p->conv_b[i] = calloc((size_t)vt_vgg16[i].cout, sizeof(float));
        if (!p->conv_w[i] || !p->conv_b[i])
            goto oom;
    }
    int side = vt_vgg_side(image_size, VT_VGG_NBLOCKS);
    int in = side * side * 512;
    for (int d = 0; d < p->ndense; d++) {
        int o = d < nhidden ? hidden[d] : nclasses;
        if (o < 1 || o > 65536) {
            vt_params_free(p);
            return vt_error_set(VT_EINVAL, "head.dense[%d] = %d is outside 1..65536", d, o);
        }
        p->dense_in[d] = in;
        p->dense_out[d] = o;
        p->dense_w[d] = calloc((size_t)in * (size_t)o, sizeof(float));
        p->dense_b[d] = calloc((size_t)o, sizeof(float));
        if (!p->dense_w[d] || !p->dense_b[d])
            goto oom;
        in = o;
    }
    *out = p;
    return 0;
oom:
    vt_params_free(p);
    return vt_error_set(VT_ENOMEM, "out of memory for model parameters");
}

void vt_params_free(vt_params *p)
{
    if (!p)
        return;
    for (int i = 0; i < VT_VGG_NCONV; i++) {
        free(p->conv_w[i]);
        free(p->conv_b[i]);
    }
    for (int d = 0; d < VT_MAX_DENSE; d++) {
        free(p->dense_w[d]);
        free(p->dense_b[d]);
    }
    free(p);
}

/* Elements [begin, end) of one tensor's He initialisation. */
typedef struct {
    float *w;
    size_t begin, end;
    double sd;
    uint64_t seed, tensor;
} vt__he_part;

static void *vt__he_run(void *arg)
{
    const vt__he_part *p = arg;
    for (size_t i = p->begin; i < p->end; i++)
        p->w[i] = (float)(p->sd * vt_rng_normal(p->seed, VT_RNG_INIT, (p->tensor << 40) | i));
    return NULL;
}

/* w[i] = N(0, 2 / fan_in) drawn from the counter-based RNG at index i, so
 * the values do not depend on how the work is split: a large tensor (the
 * first dense layer at 224x224 holds 25.7M weights, 0.4 s on one core) is
 * split over the machine's cores. */
static void vt__he(float *w, size_t n, int fan_in, uint64_t seed, uint64_t tensor)
{
    enum { MAXT = 32 };
    vt__he_part part[MAXT];
    pthread_t th[MAXT];
    int started[MAXT] = {0};
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = n < ((size_t)1 << 20) || cpus < 2 ? 1 : cpus > MAXT ? MAXT : (int)cpus;

    for (int t = 0; t < nt; t++)
        part[t] = (vt__he_part){w, n * (size_t)t / (size_t)nt, n * (size_t)(t + 1) / (size_t)nt,
                                sqrt(2.0 / fan_in), seed, tensor};
    for (int t = 1; t < nt; t++)
        started[t] = pthread_create(&th[t], NULL, vt__he_run, &part[t]) == 0;
    for (int t = 0; t < nt; t++) /* this thread: part 0, and any that did not start */
        if (!started[t])
            vt__he_run(&part[t]);
    for (int t = 1; t < nt; t++)
        if (started[t])
            pthread_join(th[t], NULL);
}

void vt_params_init_he(vt_params *p, uint64_t seed, int which)
{
    if (which & 1)
        for (int i = 0; i < VT_VGG_NCONV; i++) {
            vt__he(p->conv_w[i], (size_t)vt_vgg_conv_numel(i), 9 * vt_vgg16[i].cin, seed,
                   (uint64_t)i);
            for (int k = 0; k < vt_vgg16[i].cout; k++)
                p->conv_b[i][k] = 0.0f;
        }
    if (which & 2)
        for (int d = 0; d < p->ndense; d++) {
            vt__he(p->dense_w[d], (size_t)p->dense_in[d] * p->dense_out[d],
                   p->dense_in[d], seed, 100 + (uint64_t)d);
            for (int o = 0; o < p->dense_out[d]; o++)
                p->dense_b[d][o] = 0.0f;
        }
}

/* vgg.h - the VGG16 architecture and its parameters in host memory.
 *
 * 13 convolutions (3x3, stride 1, same padding, bias, ReLU) in 5 blocks, a
 * 2x2/2 max-pool after each block, then a head of dense layers: hidden layers
 * with ReLU (and optional dropout), then Dense(C) giving logits.
 *
 * `trainable_blocks` t in 0..5 trains blocks 6-t..5: 0 = bottleneck (only the
 * head trains), 1 = finetune (block 5 + head), 5 = scratch (everything).
 * The frozen part ends at the "cut": the pool after the last frozen block.
 *
 * Host layouts: conv weights (K,3,3,C) KRSC, dense weights (OUT,IN).  The
 * first dense layer's IN axis is in (H, W, C) order here, the order of our
 * NHWC activations; files store it in PyTorch's (C, H, W) flatten order and
 * weights.c converts.
 */
#ifndef VT_VGG_H
#define VT_VGG_H

#include <stddef.h>
#include <stdint.h>

#define VT_VGG_NCONV 13
#define VT_VGG_NBLOCKS 5
#define VT_MAX_DENSE 8 /* dense layers in the head, the final one included */

typedef struct {
    const char *keras_name; /* "block1_conv1" */
    int torch_index;        /* index in torchvision's vgg16().features */
    int block;              /* 1..5 */
    int cin, cout;
    int last_in_block;      /* followed by a max-pool */
} vt_vgg_conv;

extern const vt_vgg_conv vt_vgg16[VT_VGG_NCONV];

/* Writes into buf the name that conv i's parameter `what` ("weight" or
 * "bias") has in torchvision's layout, the one safetensors weight files
 * use: "features.0.weight". */
void vt_vgg_torch_name(char *buf, size_t len, int i, const char *what);

typedef struct {
    int image_size;     /* input is image_size x image_size x 3 */
    int nclasses;
    int ndense;         /* dense layers, the final Dense(nclasses) included */
    int dense_in[VT_MAX_DENSE], dense_out[VT_MAX_DENSE];
    float *conv_w[VT_VGG_NCONV]; /* (cout, 3, 3, cin) KRSC */
    float *conv_b[VT_VGG_NCONV]; /* (cout) */
    float *dense_w[VT_MAX_DENSE]; /* (out, in); layer 0's in is (H, W, C) ordered */
    float *dense_b[VT_MAX_DENSE]; /* (out) */
} vt_params;

/* Index of the first trainable convolution for trainable_blocks t (13 when
 * t == 0: no convolution trains). */
int vt_vgg_first_trainable(int trainable_blocks);

/* Side length of the feature map after `block` pools (block 0 = the input). */
static inline int vt_vgg_side(int image_size, int blocks_done)
{
    return image_size >> blocks_done;
}

/* Shape (side, side, channels) of the cut - the frozen part's output - for
 * trainable_blocks t: the input itself for t == 5. */
void vt_vgg_cut_shape(int image_size, int trainable_blocks, int *side, int *channels);

/* Checks image_size (a multiple of 32, 32..1024). */
int vt_vgg_check_size(int image_size);

/* Allocates zeroed parameters for the given head: hidden[nhidden] are the
 * hidden dense widths; the final layer has nclasses outputs. */
int vt_params_new(vt_params **out, int image_size, const int *hidden, int nhidden,
                  int nclasses);

/* Frees parameters; NULL is a no-op. */
void vt_params_free(vt_params *p);

/* He-normal initialisation (std sqrt(2/fan_in)) of every weight, zero biases,
 * a pure function of seed.  Convs only when which & 1, dense layers when
 * which & 2. */
void vt_params_init_he(vt_params *p, uint64_t seed, int which);

/* Number of floats of conv i's weights. */
static inline int vt_vgg_conv_numel(int i)
{
    return vt_vgg16[i].cout * 9 * vt_vgg16[i].cin;
}

#endif

/* weights.c - weight files <-> VGG16 parameters (see weights.h). */
#include "weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/error.h"
#include "../common/fileio.h"
#include "h5keras.h"
#include "safetensors.h"

const char *vt_preprocess_name(vt_preprocess prep)
{
    return prep == VT_PREP_CAFFE ? "caffe" : "torch";
}

int vt_preprocess_parse(const char *name)
{
    if (strcmp(name, "torch") == 0)
        return VT_PREP_TORCH;
    if (strcmp(name, "caffe") == 0)
        return VT_PREP_CAFFE;
    return -1;
}

int vt_weights_read(vt_tensorset **out, vt_wfile_kind *kind, const char *path)
{
    int rc;
    *out = NULL;
    if ((rc = vt_wfile_probe(path, kind)) == VT_EFORMAT)
        return vt_error_wrap(rc, "weights file");
    if (rc < 0)
        return rc;
    return *kind == VT_WFILE_KERAS_H5 ? vt_h5keras_read(out, path)
                                      : vt_safetensors_read(out, path);
}

/* Checks t's shape against want[ndim]; the message names everything. */
static int vt__check_shape(const vt_ntensor *t, int ndim, const int64_t *want,
                           const char *label)
{
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == want[i];
    if (!ok) {
        char found[128], expect[128];
        vt_ntensor w = {.ndim = ndim};
        memcpy(w.shape, want, (size_t)ndim * sizeof *want);
        vt_ntensor_shape_str(t, found, sizeof found);
        vt_ntensor_shape_str(&w, expect, sizeof expect);
        return vt_error_set(VT_EFORMAT, "%s: tensor %s has shape %s, expected %s", label,
                            t->name, found, expect);
    }
    return 0;
}

/* Refuses a tensor holding NaN or infinity: such a file (damaged, or
 * converted from a wider type that overflowed) would otherwise load and the
 * job fail later as a diverged loss, blaming the learning rate. */
static int vt__check_finite(const vt_ntensor *t, const char *label)
{
    size_t n = vt_ntensor_numel(t);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(t->data[i]))
            return vt_error_set(VT_EFORMAT,
                                "%s: tensor %s holds %s at element %zu; the file is damaged "
                                "or was converted wrongly: export or download it again",
                                label, t->name, isnan(t->data[i]) ? "NaN" : "infinity", i);
    return 0;
}

/* Checks a layer's weight w against want[ndim] and its bias b against
 * bshape[1], then that both are finite (shapes first, as a wrong file is
 * told by its shapes). */
static int vt__check_layer(const vt_ntensor *w, int ndim, const int64_t *want,
                           const vt_ntensor *b, const int64_t *bshape, const char *label)
{
    int rc;
    if ((rc = vt__check_shape(w, ndim, want, label)) < 0 ||
        (rc = vt__check_shape(b, 1, bshape, label)) < 0 ||
        (rc = vt__check_finite(w, label)) < 0)
        return rc;
    return vt__check_finite(b, label);
}

/* Whether a tensor of set has a name ending in suffix. */
static int vt__has_suffix(const vt_tensorset *set, const char *suffix)
{
    size_t sn = strlen(suffix);
    for (int i = 0; i < set->n; i++) {
        size_t n = strlen(set->t[i].name);
        if (n >= sn && strcmp(set->t[i].name + n - sn, suffix) == 0)
            return 1;
    }
    return 0;
}

/* Finds tensor `name`; when it is missing, says why if the file shows it:
 * the names of a model saved from DataParallel ("module.features.0.weight"),
 * or torchvision's vgg16_bn, whose batch-norm layers shift features.N. */
static const vt_ntensor *vt__need(const vt_tensorset *set, const char *name,
                                  const char *label)
{
    const vt_ntensor *t = vt_tensorset_find(set, name);
    char prefixed[80];
    if (t)
        return t;
    snprintf(prefixed, sizeof prefixed, "module.%s", name);
    if (vt_tensorset_find(set, prefixed))
        vt_error_set(VT_EFORMAT, "%s has no tensor %s but has %s, as a model saved from "
                     "DataParallel names it: strip the module. prefix when saving "
                     "({k.removeprefix(\"module.\"): v for k, v in state_dict.items()})",
                     label, name, prefixed);
    else if (vt__has_suffix(set, ".running_mean"))
        vt_error_set(VT_EFORMAT, "%s has no tensor %s and holds batch-norm statistics "
                     "(running_mean): it is vgg16_bn, a different network (VGG16 with batch "
                     "norm); give plain VGG16's weights", label, name);
    else
        vt_error_set(VT_EFORMAT, "%s has no tensor %s (is it a VGG16 weights file?)",
                     label, name);
    return NULL;
}

/* (K, C, 3, 3) -> (K, 3, 3, C) */
static void vt__oihw_to_krsc(const float *src, float *dst, int K, int C)
{
    for (int k = 0; k < K; k++)
        for (int c = 0; c < C; c++)
            for (int rs = 0; rs < 9; rs++)
                dst[((size_t)k * 9 + rs) * C + c] = src[((size_t)k * C + c) * 9 + rs];
}

/* (K, 3, 3, C) -> (K, C, 3, 3) */
static void vt__krsc_to_oihw(const float *src, float *dst, int K, int C)
{
    for (int k = 0; k < K; k++)
        for (int c = 0; c < C; c++)
            for (int rs = 0; rs < 9; rs++)
                dst[((size_t)k * C + c) * 9 + rs] = src[((size_t)k * 9 + rs) * C + c];
}

/* (3, 3, C, K) -> (K, 3, 3, C) */
static void vt__hwio_to_krsc(const float *src, float *dst, int K, int C)
{
    for (int rs = 0; rs < 9; rs++)
        for (int c = 0; c < C; c++)
            for (int k = 0; k < K; k++)
                dst[((size_t)k * 9 + rs) * C + c] = src[((size_t)rs * C + c) * K + k];
}

/* Whether set holds a rank-4 tensor: a Keras file's convolution kernel. */
static int vt__keras_has_conv(const vt_tensorset *set)
{
    for (int i = 0; i < set->n; i++)
        if (set->t[i].ndim == 4)
            return 1;
    return 0;
}

/* Finds a Keras layer's kernel (rank 4) and bias (rank 1) among the tensors
 * named "<layer>/<weight>".  A layer the file lacks is named as missing,
 * and a file without any convolution (a classifier's weights) as such,
 * rather than as a layer of the wrong ranks. */
static int vt__keras_layer(const vt_tensorset *set, const char *layer, const char *label,
                           const vt_ntensor **kernel, const vt_ntensor **bias)
{
    size_t ln = strlen(layer);
    int found = 0;
    *kernel = *bias = NULL;
    for (int i = 0; i < set->n; i++) {
        const vt_ntensor *t = &set->t[i];
        if (strncmp(t->name, layer, ln) != 0 || t->name[ln] != '/')
            continue;
        found = 1;
        if (t->ndim == 4 && !*kernel)
            *kernel = t;
        else if (t->ndim == 1 && !*bias)
            *bias = t;
    }
    if (!found && !vt__keras_has_conv(set))
        return vt_error_set(VT_EFORMAT,
                            "%s holds no convolution layers (a classifier's weights only?): "
                            "give VGG16's convolution weights, e.g. "
                            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", label);
    if (!found)
        return vt_error_set(VT_EFORMAT,
                            "%s has no layer %s, one of VGG16's 13 convolutions (block1_conv1 "
                            "... block5_conv3): give VGG16's weights, e.g. "
                            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", label, layer);
    if (!*kernel || !*bias)
        return vt_error_set(VT_EFORMAT,
                            "%s: layer %s needs a 4-D kernel and a 1-D bias (is it a "
                            "VGG16 weights file?)",
                            label, layer);
    return 0;
}

/* Whether Keras layer `layer` (its name up to len) is one of VGG16's convs. */
static int vt__keras_is_vgg16(const char *layer, size_t len)
{
    for (int i = 0; i < VT_VGG_NCONV; i++)
        if (strlen(vt_vgg16[i].keras_name) == len &&
            strncmp(vt_vgg16[i].keras_name, layer, len) == 0)
            return 1;
    return 0;
}

/* Refuses a Keras file with a convolution kernel in a layer VGG16 does not
 * have: VGG19's file holds every VGG16 layer name with VGG16's shapes plus
 * block3_conv4..block5_conv4, so taking the layers by name would build a
 * trunk that is neither network.  Keras itself refuses such a file (its
 * layer count differs); the full model's dense kernels are 2-D and pass. */
static int vt__keras_only_vgg16(const vt_tensorset *set, const char *label)
{
    for (int i = 0; i < set->n; i++) {
        const char *name = set->t[i].name, *slash = strchr(name, '/');
        size_t len = slash ? (size_t)(slash - name) : strlen(name);
        if (set->t[i].ndim == 4 && !vt__keras_is_vgg16(name, len))
            return vt_error_set(VT_EFORMAT,
                                "%s: layer %.*s has a convolution kernel but VGG16 has no "
                                "such layer (a VGG19 or another network's file?); give "
                                "VGG16's weights, e.g. "
                                "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                                label, (int)len, name);
    }
    return 0;
}

int vt_weights_load_trunk(vt_params *p, const vt_tensorset *set, vt_wfile_kind kind,
                          const char *label, vt_preprocess *prep)
{
    char name[64];
    int rc;

    if (kind == VT_WFILE_KERAS_H5 && (rc = vt__keras_only_vgg16(set, label)) < 0)
        return rc;
    for (int i = 0; i < VT_VGG_NCONV; i++) {
        const vt_vgg_conv *c = &vt_vgg16[i];
        const vt_ntensor *w, *b;
        int64_t bshape[1] = {c->cout};
        if (kind == VT_WFILE_KERAS_H5) {
            int64_t want[4] = {3, 3, c->cin, c->cout};
            if ((rc = vt__keras_layer(set, c->keras_name, label, &w, &b)) < 0 ||
                (rc = vt__check_layer(w, 4, want, b, bshape, label)) < 0)
                return rc;
            vt__hwio_to_krsc(w->data, p->conv_w[i], c->cout, c->cin);
        } else {
            int64_t want[4] = {c->cout, c->cin, 3, 3};
            vt_vgg_torch_name(name, sizeof name, i, "weight");
            if (!(w = vt__need(set, name, label)))
                return VT_EFORMAT;
            vt_vgg_torch_name(name, sizeof name, i, "bias");
            if (!(b = vt__need(set, name, label)))
                return VT_EFORMAT;
            if ((rc = vt__check_layer(w, 4, want, b, bshape, label)) < 0)
                return rc;
            vt__oihw_to_krsc(w->data, p->conv_w[i], c->cout, c->cin);
        }
        memcpy(p->conv_b[i], b->data, (size_t)c->cout * sizeof(float));
    }
    if (prep) {
        const char *m = vt_tensorset_meta(set, "preprocess");
        *prep = kind == VT_WFILE_KERAS_H5 || (m && strcmp(m, "caffe") == 0)
                    ? VT_PREP_CAFFE
                    : VT_PREP_TORCH;
    }
    return 0;
}

/* Whether set holds one of VGG16's convolution weights under torchvision's
 * name ("features.0.weight" ...). */
static int vt__has_trunk(const vt_tensorset *set)
{
    char name[32];
    for (int i = 0; i < VT_VGG_NCONV; i++) {
        vt_vgg_torch_name(name, sizeof name, i, "weight");
        if (vt_tensorset_find(set, name))
            return 1;
    }
    return 0;
}

int vt_weights_head_layout(const vt_tensorset *set, const char *label, int *hidden,
                           int *nhidden, int *nclasses, int *in_features)
{
    char name[32];
    int n = 0;
    int64_t prev_out = -1;

    for (;; n++) {
        snprintf(name, sizeof name, "head.%d.weight", n);
        const vt_ntensor *w = vt_tensorset_find(set, name);
        if (!w)
            break;
        if (n >= VT_MAX_DENSE)
            return vt_error_set(VT_EFORMAT, "%s: more than %d head layers", label,
                                VT_MAX_DENSE);
        if (w->ndim != 2 || w->shape[0] < 1 || w->shape[1] < 1 ||
            (prev_out >= 0 && w->shape[1] != prev_out))
            return vt_error_set(VT_EFORMAT,
                                "%s: tensor %s does not continue a dense head (shape must "
                                "be [out, in] with in = the previous layer's out)",
                                label, name);
        if (n == 0)
            *in_features = (int)w->shape[1];
        if (n > 0)
            hidden[n - 1] = (int)prev_out;
        prev_out = w->shape[0];
    }
    if (n == 0 && vt__has_trunk(set))
        return vt_error_set(VT_EFORMAT, "%s is VGG16 weights (a trunk: features.* without "
                            "head.*), not a model that vggtune wrote: give it as weights; init "
                            "takes a model.safetensors that vggtune wrote", label);
    if (n == 0)
        return vt_error_set(VT_EFORMAT, "%s has no head (no tensor head.0.weight)", label);
    *nhidden = n - 1;
    *nclasses = (int)prev_out;
    return 0;
}

/* head.0 weights: file (OUT, C*H*W) in (C, H, W) order <-> internal (OUT,
 * H*W*C) in (H, W, C) order, side x side x C. */
static void vt__head0_permute(const float *src, float *dst, int out, int side, int C,
                              int to_internal)
{
    size_t in = (size_t)side * side * C;
    for (int o = 0; o < out; o++)
        for (int c = 0; c < C; c++)
            for (int hw = 0; hw < side * side; hw++) {
                size_t chw = (size_t)c * side * side + hw, hwc = (size_t)hw * C + c;
                if (to_internal)
                    dst[o * in + hwc] = src[o * in + chw];
                else
                    dst[o * in + chw] = src[o * in + hwc];
            }
}

int vt_weights_load_model(vt_params *p, const vt_tensorset *set, int first_conv,
                          const char *label, int *loaded)
{
    char name[64];
    int count = 0, rc;
    int side = vt_vgg_side(p->image_size, VT_VGG_NBLOCKS);

    for (int i = first_conv; i < VT_VGG_NCONV; i++) {
        const vt_vgg_conv *c = &vt_vgg16[i];
        int64_t want[4] = {c->cout, c->cin, 3, 3}, bshape[1] = {c->cout};
        snprintf(name, sizeof name, "features.%d.weight", c->torch_index);
        const vt_ntensor *w = vt_tensorset_find(set, name);
        snprintf(name, sizeof name, "features.%d.bias", c->torch_index);
        const vt_ntensor *b = vt_tensorset_find(set, name);
        if (!w && !b)
            continue;
        if (!w || !b)
            return vt_error_set(VT_EFORMAT, "%s: features.%d has a weight or a bias but "
                                "not both", label, c->torch_index);
        if ((rc = vt__check_layer(w, 4, want, b, bshape, label)) < 0)
            return rc;
        vt__oihw_to_krsc(w->data, p->conv_w[i], c->cout, c->cin);
        memcpy(p->conv_b[i], b->data, (size_t)c->cout * sizeof(float));
        count += 2;
    }
    for (int j = 0; j < VT_MAX_DENSE; j++) {
        snprintf(name, sizeof name, "head.%d.weight", j);
        const vt_ntensor *w = vt_tensorset_find(set, name);
        snprintf(name, sizeof name, "head.%d.bias", j);
        const vt_ntensor *b = vt_tensorset_find(set, name);
        if (j >= p->ndense) {
            if (w || b)
                return vt_error_set(VT_EFORMAT, "%s has head.%d but the model's head has "
                                    "%d layers", label, j, p->ndense);
            continue;
        }
        if (!w && !b)
            continue;
        if (!w || !b)
            return vt_error_set(VT_EFORMAT, "%s: head.%d has a weight or a bias but not "
                                "both", label, j);
        int64_t want[2] = {p->dense_out[j], p->dense_in[j]}, bshape[1] = {p->dense_out[j]};
        if ((rc = vt__check_layer(w, 2, want, b, bshape, label)) < 0)
            return rc;
        if (j == 0)
            vt__head0_permute(w->data, p->dense_w[0], p->dense_out[0], side, 512, 1);
        else
            memcpy(p->dense_w[j], w->data, (size_t)want[0] * want[1] * sizeof(float));
        memcpy(p->dense_b[j], b->data, (size_t)p->dense_out[j] * sizeof(float));
        count += 2;
    }
    if (loaded)
        *loaded = count;
    return 0;
}

int vt_weights_to_set(const vt_params *p, vt_tensorset **out)
{
    vt_tensorset *set = vt_tensorset_new();
    char name[64];
    int rc = 0, side = vt_vgg_side(p->image_size, VT_VGG_NBLOCKS);
    vt_ntensor *t;

    *out = NULL;
    if (!set)
        return vt_error_set(VT_ENOMEM, "out of memory");
    for (int i = 0; i < VT_VGG_NCONV && rc == 0; i++) {
        const vt_vgg_conv *c = &vt_vgg16[i];
        int64_t ws[4] = {c->cout, c->cin, 3, 3}, bs[1] = {c->cout};
        snprintf(name, sizeof name, "features.%d.weight", c->torch_index);
        if ((rc = vt_tensorset_add(set, name, 4, ws, NULL, &t)) < 0)
            break;
        vt__krsc_to_oihw(p->conv_w[i], t->data, c->cout, c->cin);
        snprintf(name, sizeof name, "features.%d.bias", c->torch_index);
        rc = vt_tensorset_add(set, name, 1, bs, p->conv_b[i], NULL);
    }
    for (int j = 0; j < p->ndense && rc == 0; j++) {
        int64_t ws[2] = {p->dense_out[j], p->dense_in[j]}, bs[1] = {p->dense_out[j]};
        snprintf(name, sizeof name, "head.%d.weight", j);
        if ((rc = vt_tensorset_add(set, name, 2, ws, j ? p->dense_w[j] : NULL, &t)) < 0)
            break;
        if (j == 0)
            vt__head0_permute(p->dense_w[0], t->data, p->dense_out[0], side, 512, 0);
        snprintf(name, sizeof name, "head.%d.bias", j);
        rc = vt_tensorset_add(set, name, 1, bs, p->dense_b[j], NULL);
    }
    if (rc < 0) {
        vt_tensorset_free(set);
        return rc;
    }
    *out = set;
    return 0;
}

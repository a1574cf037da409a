/* weights.h - mapping weight files onto VGG16 parameters, and back.
 *
 * In:  Keras legacy HDF5 (kernels HWIO, through layer_names/weight_names) or
 *      safetensors with torchvision names (features.N.weight OIHW), detected
 *      by content.  Every tensor's shape is checked; a wrong file is an error
 *      naming the tensor, the expected and the found shape.
 * Out: the model as safetensors tensors in PyTorch layouts:
 *      features.{0,2,5,...,28}.{weight,bias}  weight (out, in, 3, 3) OIHW
 *      head.{i}.weight (out, in), head.{i}.bias (out)
 *      with head.0's input in PyTorch's flatten order of an NCHW tensor
 *      (C, H, W), so torchvision's vgg16().features + Flatten + Linear layers
 *      loaded from the file compute the same logits.
 */
#ifndef VT_WEIGHTS_H
#define VT_WEIGHTS_H

#include "../kernels/backend.h"
#include "tensorset.h"
#include "vgg.h"
#include "wfile.h"

/* Reads a weights file of either kind into a new tensor set; *kind tells
 * which it was.  A file that is neither is VT_EFORMAT. */
int vt_weights_read(vt_tensorset **out, vt_wfile_kind *kind, const char *path);

/* Copies the 13 convolutions from a set read by vt_weights_read() into p,
 * converting to KRSC.  label names the file in messages.  A Keras file with
 * a convolution in a layer VGG16 lacks (VGG19's), or a tensor holding NaN
 * or infinity, is VT_EFORMAT, naming the layer or tensor.  *prep receives
 * the preprocessing the weights expect: caffe for Keras files, torch for
 * safetensors unless its metadata says "preprocess": "caffe". */
int vt_weights_load_trunk(vt_params *p, const vt_tensorset *set, vt_wfile_kind kind,
                          const char *label, vt_preprocess *prep);

/* Reads the head layout recorded by head.{i}.weight shapes in a set written
 * by vt_weights_to_set(): hidden widths (*nhidden of them, at most
 * VT_MAX_DENSE - 1), classes, and the first layer's input width.
 * VT_EFORMAT when the set has no consistent head; one holding VGG16's
 * convolutions but no head is named as weights (a trunk) for `weights`,
 * since `init` is where such a set is given by mistake. */
int vt_weights_head_layout(const vt_tensorset *set, const char *label, int *hidden,
                           int *nhidden, int *nclasses, int *in_features);

/* Copies head.* and the features.* of convolutions >= first_conv from set
 * (output layout) into p, checking every shape against p.  Tensors of frozen
 * convolutions are ignored; a copied one holding NaN or infinity is
 * VT_EFORMAT.  *loaded (optional) counts what was copied. */
int vt_weights_load_model(vt_params *p, const vt_tensorset *set, int first_conv,
                          const char *label, int *loaded);

/* Makes a new set holding every tensor of p in output layout (see above). */
int vt_weights_to_set(const vt_params *p, vt_tensorset **out);

/* Name of a preprocessing mode ("torch", "caffe") and back (-1 if unknown). */
const char *vt_preprocess_name(vt_preprocess prep);
int vt_preprocess_parse(const char *name);

#endif

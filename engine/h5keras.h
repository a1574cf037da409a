/* h5keras.h - reading Keras legacy HDF5 weight files through libhdf5.
 *
 * Layout (see shared/WEIGHTS.md): root attribute `layer_names` (an array of
 * byte strings, split into layer_names0, layer_names1, ... when large); one
 * group per layer with attribute `weight_names` (split the same way); each
 * weight is the dataset group[weight_name].  Layers whose weight_names is
 * empty (input, pools, flatten) contribute nothing.  Names are read from the
 * attributes, never hard-coded.
 *
 * A file that is not HDF5, is truncated or damaged, lacks the attributes, or
 * names a dataset that is missing or not a float array is refused with
 * VT_EFORMAT and a message naming the file and the layer/weight.  libhdf5's
 * own error printing is silenced; it never crashes the caller.
 */
#ifndef VT_H5KERAS_H
#define VT_H5KERAS_H

#include <stddef.h>
#include <stdint.h>

#include "tensorset.h"
#include "wfile.h"

/* Reads every weight of every layer into a new set, in layer_names order and
 * weight_names order within a layer.  Each tensor is named
 * "<layer_name>/<weight_name>" (e.g. "block1_conv1/block1_conv1_W_1:0") and
 * keeps the dataset's shape (kernels HWIO (3,3,in,out), biases (out)); float32
 * and float64 data are accepted (converted to float32).  Datasets over 2^31
 * elements are refused.  A whole model saved by Keras (model.save) is read
 * from its model_weights group; Keras 3's .weights.h5 layout is refused,
 * saying what to save instead. */
int vt_h5keras_read(vt_tensorset **out, const char *path);

#endif

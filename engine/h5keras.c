/* h5keras.c - Keras legacy HDF5 weight files read through libhdf5 (see
 * h5keras.h and shared/WEIGHTS.md).
 *
 * The walk follows Keras' own load_weights_from_hdf5_group: the root
 * attribute layer_names lists the layers in order, each layer's group lists
 * its weights in the attribute weight_names, and each weight is the dataset
 * group[weight_name] (a relative path, so tf.keras' "block1_conv1/kernel:0"
 * lands in a subgroup).  Both attributes may be split into name0, name1, ...
 * when large; the unsplit name wins when both exist, as in Keras.  A whole
 * model saved by Keras (model.save to .h5) keeps all this in its
 * model_weights group, which is read instead of the root, as Keras does.
 *
 * String attributes come in two encodings and both are read: fixed-length
 * byte strings (numpy 'S' arrays, what Keras writes through h5py) and
 * variable-length strings.  An empty attribute of any type or a null
 * dataspace (h5py stores an empty Python list as an empty float64 array) is
 * an empty list.
 *
 * libhdf5 is not thread-safe in every build, so reads are serialised by a
 * mutex; its automatic error printing is switched off for the calling thread
 * and the innermost message of its error stack is added to ours instead.
 * Every identifier is closed on every path, and the thread's error stack is
 * cleared before returning: its entries hold references to libhdf5's error
 * classes and messages, and a stack left on a thread other than the one that
 * exits makes libhdf5's shutdown loop ("infinite loop closing library").
 */
#include "h5keras.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/error.h"
#include "../common/fileio.h"

#define VT_H5_MAX_ELEMS ((hsize_t)1 << 31)     /* per dataset */
#define VT_H5_MAX_ATTR_BYTES ((size_t)64 << 20) /* per name attribute */

static pthread_mutex_t vt__h5_lock = PTHREAD_MUTEX_INITIALIZER;

/* A list of strings read from a (possibly split) attribute. */
typedef struct {
    char **v;
    size_t n, cap;
} vt__names;

static void vt__names_free(vt__names *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

static int vt__names_push(vt__names *l, const char *s, size_t len)
{
    char *c;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **nv = realloc(l->v, cap * sizeof *nv);
        if (!nv)
            return vt_error_set(VT_ENOMEM, "out of memory");
        l->v = nv;
        l->cap = cap;
    }
    if (!(c = malloc(len + 1)))
        return vt_error_set(VT_ENOMEM, "out of memory");
    memcpy(c, s, len);
    c[len] = '\0';
    l->v[l->n++] = c;
    return 0;
}

static herr_t vt__h5_walk(unsigned n, const H5E_error2_t *err, void *data)
{
    char *buf = data;
    if (err->desc && err->desc[0])
        snprintf(buf, 256, "%s", err->desc); /* the last one is the innermost */
    return 0;
}

/* The innermost message of libhdf5's error stack for this thread, or "". */
static const char *vt__h5_detail(char buf[256])
{
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, vt__h5_walk, buf);
    return buf;
}

/* Appends the strings of attribute `name` of obj to out; `where` names obj
 * in messages. */
static int vt__read_str_attr(vt__names *out, hid_t obj, const char *name, const char *label,
                             const char *where)
{
    hid_t attr = H5I_INVALID_HID, ftype = H5I_INVALID_HID, space = H5I_INVALID_HID;
    hid_t mtype = H5I_INVALID_HID;
    hssize_t npoints;
    char **ptrs = NULL, *fixed = NULL, detail[256];
    size_t n, size;
    int rc = 0, rank, vlen;

    if ((attr = H5Aopen(obj, name, H5P_DEFAULT)) < 0 || (ftype = H5Aget_type(attr)) < 0 ||
        (space = H5Aget_space(attr)) < 0) {
        rc = vt_error_set(VT_EFORMAT, "%s: %s: cannot open attribute %s: %s", label, where,
                          name, vt__h5_detail(detail));
        goto cleanup;
    }
    if (H5Sget_simple_extent_type(space) == H5S_NULL)
        goto cleanup; /* an empty list */
    rank = H5Sget_simple_extent_ndims(space);
    npoints = H5Sget_simple_extent_npoints(space);
    if (rank < 0 || rank > 1 || npoints < 0) {
        rc = vt_error_set(VT_EFORMAT, "%s: %s: attribute %s is not a list of names", label,
                          where, name);
        goto cleanup;
    }
    if (npoints == 0)
        goto cleanup;
    n = (size_t)npoints;
    if (H5Tget_class(ftype) != H5T_STRING) {
        rc = vt_error_set(VT_EFORMAT, "%s: %s: attribute %s holds no strings", label, where,
                          name);
        goto cleanup;
    }
    if ((vlen = H5Tis_variable_str(ftype)) < 0 || (size = H5Tget_size(ftype)) == 0) {
        rc = vt_error_set(VT_EFORMAT, "%s: %s: attribute %s has a bad string type", label,
                          where, name);
        goto cleanup;
    }
    if (vlen) {
        if (n > VT_H5_MAX_ATTR_BYTES / sizeof(char *) ||
            !(ptrs = calloc(n, sizeof *ptrs))) {
            rc = vt_error_set(VT_EFORMAT, "%s: %s: attribute %s is too large", label, where,
                              name);
            goto cleanup;
        }
        if ((mtype = H5Tcopy(H5T_C_S1)) < 0 || H5Tset_size(mtype, H5T_VARIABLE) < 0 ||
            H5Tset_cset(mtype, H5Tget_cset(ftype)) < 0 ||
            H5Aread(attr, mtype, ptrs) < 0) {
            rc = vt_error_set(VT_EFORMAT, "%s: %s: cannot read attribute %s: %s", label,
                              where, name, vt__h5_detail(detail));
            goto cleanup;
        }
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = vt__names_push(out, ptrs[i] ? ptrs[i] : "", ptrs[i] ? strlen(ptrs[i]) : 0);
#if H5_VERSION_GE(1, 12, 0)
        H5Treclaim(mtype, space, H5P_DEFAULT, ptrs);
#else
        H5Dvlen_reclaim(mtype, space, H5P_DEFAULT, ptrs);
#endif
        goto cleanup;
    }
    if (size > VT_H5_MAX_ATTR_BYTES / n || !(fixed = malloc(n * size))) {
        rc = vt_error_set(VT_EFORMAT, "%s: %s: attribute %s is too large", label, where, name);
        goto cleanup;
    }
    if (H5Aread(attr, ftype, fixed) < 0) {
        rc = vt_error_set(VT_EFORMAT, "%s: %s: cannot read attribute %s: %s", label, where,
                          name, vt__h5_detail(detail));
        goto cleanup;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *s = fixed + i * size;
        size_t len = strnlen(s, size);
        if (H5Tget_strpad(ftype) == H5T_STR_SPACEPAD)
            while (len > 0 && s[len - 1] == ' ')
                len--;
        rc = vt__names_push(out, s, len);
    }
cleanup:
    free(ptrs);
    free(fixed);
    if (mtype >= 0)
        H5Tclose(mtype);
    if (space >= 0)
        H5Sclose(space);
    if (ftype >= 0)
        H5Tclose(ftype);
    if (attr >= 0)
        H5Aclose(attr);
    return rc;
}

/* Reads the name list `name` of obj, or its split form name0, name1, ...;
 * a list that is in neither form is an error. */
static int vt__read_names(vt__names *out, hid_t obj, const char *name, const char *label,
                          const char *where)
{
    char part[64];
    htri_t ex;
    int rc, i;

    if ((ex = H5Aexists(obj, name)) > 0)
        return vt__read_str_attr(out, obj, name, label, where);
    for (i = 0; ex == 0; i++) {
        snprintf(part, sizeof part, "%s%d", name, i);
        if ((ex = H5Aexists(obj, part)) <= 0)
            break;
        if ((rc = vt__read_str_attr(out, obj, part, label, where)) < 0)
            return rc;
        ex = 0;
    }
    if (ex < 0)
        return vt_error_set(VT_EFORMAT, "%s: %s: cannot list its attributes", label, where);
    if (i == 0)
        return vt_error_set(VT_EFORMAT,
                            "%s: %s has no %s attribute (not a Keras weight file?)", label,
                            where, name);
    return 0;
}

static const char *vt__class_name(H5T_class_t c)
{
    switch (c) {
    case H5T_INTEGER:
        return "integer";
    case H5T_STRING:
        return "string";
    case H5T_COMPOUND:
        return "compound";
    case H5T_ENUM:
        return "enum";
    case H5T_BITFIELD:
        return "bitfield";
    default:
        return "non-float";
    }
}

/* Reads dataset grp[wname] as tensor "<layer>/<wname>". */
static int vt__read_weight(vt_tensorset *set, hid_t grp, const char *layer, const char *wname,
                           const char *label)
{
    hid_t dset = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    hsize_t dims[VT_NT_MAX_DIMS];
    int64_t shape[VT_NT_MAX_DIMS];
    hsize_t numel = 1;
    H5S_class_t sclass;
    H5T_class_t tclass;
    vt_ntensor *t = NULL;
    char *tname = NULL, detail[256];
    int rc = 0, ndim = 0;

    if ((dset = H5Dopen2(grp, wname, H5P_DEFAULT)) < 0) {
        rc = vt_error_set(VT_EFORMAT,
                          "%s: layer %s: weight_names lists %s but the layer has no such "
                          "dataset",
                          label, layer, wname);
        goto cleanup;
    }
    if ((type = H5Dget_type(dset)) < 0 || (space = H5Dget_space(dset)) < 0 ||
        (tclass = H5Tget_class(type)) < 0 || (sclass = H5Sget_simple_extent_type(space)) < 0) {
        rc = vt_error_set(VT_EFORMAT, "%s: layer %s: weight %s: cannot read its type: %s",
                          label, layer, wname, vt__h5_detail(detail));
        goto cleanup;
    }
    if (tclass != H5T_FLOAT) {
        rc = vt_error_set(VT_EFORMAT,
                          "%s: layer %s: weight %s holds %s data (%zu bytes each), not float",
                          label, layer, wname, vt__class_name(tclass), H5Tget_size(type));
        goto cleanup;
    }
    if (sclass == H5S_SIMPLE) {
        if ((ndim = H5Sget_simple_extent_ndims(space)) < 0 || ndim > VT_NT_MAX_DIMS) {
            rc = vt_error_set(VT_EFORMAT,
                              "%s: layer %s: weight %s: rank %d is not supported (at most %d)",
                              label, layer, wname, ndim, VT_NT_MAX_DIMS);
            goto cleanup;
        }
        if (H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
            rc = vt_error_set(VT_EFORMAT, "%s: layer %s: weight %s: cannot read its shape",
                              label, layer, wname);
            goto cleanup;
        }
    } else if (sclass != H5S_SCALAR) {
        rc = vt_error_set(VT_EFORMAT, "%s: layer %s: weight %s has no data (null dataspace)",
                          label, layer, wname);
        goto cleanup;
    }
    for (int i = 0; i < ndim; i++) {
        if (dims[i] > VT_H5_MAX_ELEMS || (numel *= dims[i]) > VT_H5_MAX_ELEMS) {
            rc = vt_error_set(VT_EFORMAT,
                              "%s: layer %s: weight %s has more than 2^31 elements", label,
                              layer, wname);
            goto cleanup;
        }
        shape[i] = (int64_t)dims[i];
    }
    if (!(tname = malloc(strlen(layer) + strlen(wname) + 2))) {
        rc = vt_error_set(VT_ENOMEM, "out of memory");
        goto cleanup;
    }
    sprintf(tname, "%s/%s", layer, wname);
    if ((rc = vt_tensorset_add(set, tname, ndim, shape, NULL, &t)) < 0) {
        if (rc == VT_EINVAL)
            rc = vt_error_set(VT_EFORMAT, "%s: weight %s appears twice", label, tname);
        goto cleanup;
    }
    if (numel > 0 &&
        H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) < 0) {
        rc = vt_error_set(VT_EFORMAT, "%s: layer %s: weight %s: cannot read its data: %s",
                          label, layer, wname, vt__h5_detail(detail));
        goto cleanup;
    }
cleanup:
    free(tname);
    if (space >= 0)
        H5Sclose(space);
    if (type >= 0)
        H5Tclose(type);
    if (dset >= 0)
        H5Dclose(dset);
    return rc;
}

static int vt__read_layer(vt_tensorset *set, hid_t file, const char *layer, const char *label)
{
    vt__names wnames = {0};
    hid_t grp = H5I_INVALID_HID;
    char where[300];
    int rc = 0;

    if ((grp = H5Gopen2(file, layer, H5P_DEFAULT)) < 0) {
        rc = vt_error_set(VT_EFORMAT, "%s: layer %s is in layer_names but has no group", label,
                          layer);
        goto cleanup;
    }
    snprintf(where, sizeof where, "layer %s", layer);
    if ((rc = vt__read_names(&wnames, grp, "weight_names", label, where)) < 0)
        goto cleanup;
    for (size_t i = 0; i < wnames.n; i++)
        if ((rc = vt__read_weight(set, grp, layer, wnames.v[i], label)) < 0)
            goto cleanup;
cleanup:
    vt__names_free(&wnames);
    if (grp >= 0)
        H5Gclose(grp);
    return rc;
}

/* Opens path read-only, telling "missing", "not HDF5" and "damaged" apart. */
static int vt__open(hid_t *file, const char *path)
{
    uint8_t head[8] = {0};
    char detail[256];
    size_t got;
    int rc;

    if ((rc = vt_read_head(path, head, sizeof head, &got)) < 0)
        return rc;
    if ((*file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) >= 0)
        return 0;
    if (got < sizeof head || !vt_h5_probe(head, sizeof head))
        return vt_error_set(VT_EFORMAT, "%s: not an HDF5 file (no HDF5 signature)", path);
    return vt_error_set(VT_EFORMAT, "%s: cannot open the HDF5 file (truncated or damaged): %s",
                        path, vt__h5_detail(detail));
}

/* Opens the group whose attributes list the layers: the root, or the
 * model_weights group of a whole model saved by Keras (model.save to .h5),
 * which Keras' load_weights descends into when the root has no layer_names.
 * *where names it in messages.  Keras 3's .weights.h5 (a group per layer
 * under layers/, its weights numbered in layers/NAME/vars) names no layers
 * nor weights, and is refused with what to save instead. */
static int vt__open_weights_group(hid_t *grp, const char **where, hid_t file,
                                  const char *path)
{
    const char *name = "/";
    char detail[256];

    *where = "the root group";
    if (H5Aexists(file, "layer_names") == 0 && H5Aexists(file, "layer_names0") == 0) {
        if (H5Lexists(file, "model_weights", H5P_DEFAULT) > 0) {
            name = "model_weights";
            *where = "group model_weights";
        } else if (H5Lexists(file, "layers", H5P_DEFAULT) > 0) {
            return vt_error_set(VT_EFORMAT,
                                "%s is in Keras 3's .weights.h5 layout (layers/NAME/vars), "
                                "which is not read: save the model with model.save(\"FILE.h5\") "
                                "(Keras' HDF5 model format) or give the published "
                                "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                                path);
        }
    }
    if ((*grp = H5Gopen2(file, name, H5P_DEFAULT)) < 0)
        return vt_error_set(VT_EFORMAT, "%s: cannot open %s: %s", path, *where,
                            vt__h5_detail(detail));
    return 0;
}

int vt_h5keras_read(vt_tensorset **out, const char *path)
{
    vt_tensorset *set = NULL;
    vt__names layers = {0};
    hid_t file = H5I_INVALID_HID, grp = H5I_INVALID_HID;
    const char *where;
    int rc;

    *out = NULL;
    pthread_mutex_lock(&vt__h5_lock);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if ((rc = vt__open(&file, path)) < 0 ||
        (rc = vt__open_weights_group(&grp, &where, file, path)) < 0)
        goto cleanup;
    if (!(set = vt_tensorset_new())) {
        rc = vt_error_set(VT_ENOMEM, "out of memory");
        goto cleanup;
    }
    if ((rc = vt__read_names(&layers, grp, "layer_names", path, where)) < 0)
        goto cleanup;
    for (size_t i = 0; i < layers.n; i++)
        if ((rc = vt__read_layer(set, grp, layers.v[i], path)) < 0)
            goto cleanup;
    *out = set;
    set = NULL;
cleanup:
    vt__names_free(&layers);
    vt_tensorset_free(set);
    if (grp >= 0)
        H5Gclose(grp);
    if (file >= 0)
        H5Fclose(file);
    H5Eclear2(H5E_DEFAULT);
    pthread_mutex_unlock(&vt__h5_lock);
    return rc;
}

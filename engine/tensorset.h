/* tensorset.h - named float32 tensors in host memory, with string metadata.
 *
 * The common currency of the weight-file readers and writers (safetensors,
 * Keras HDF5) and of checkpoints: readers convert whatever they find to
 * float32 row-major arrays here, and weights.c maps them onto the model.
 * Tensors keep their insertion order.
 */
#ifndef VT_TENSORSET_H
#define VT_TENSORSET_H

#include <stddef.h>
#include <stdint.h>

#define VT_NT_MAX_DIMS 8

typedef struct {
    char *name;
    int ndim;
    int64_t shape[VT_NT_MAX_DIMS];
    float *data; /* numel floats, row-major, owned */
} vt_ntensor;

typedef struct {
    vt_ntensor *t; /* n tensors in insertion order */
    int n, cap;
    char **meta_key, **meta_val; /* nmeta metadata pairs, owned */
    int nmeta, meta_cap;
    int meta_lost;                /* a vt_tensorset_set_meta failed */
} vt_tensorset;

/* Makes an empty set; NULL when out of memory. */
vt_tensorset *vt_tensorset_new(void);

/* Frees the set and everything in it; NULL is a no-op. */
void vt_tensorset_free(vt_tensorset *s);

/* Adds a tensor, copying data (numel floats) or zero-filling when data is
 * NULL; *added (optional) points at the new entry until the next add.  A
 * duplicate name is VT_EINVAL. */
int vt_tensorset_add(vt_tensorset *s, const char *name, int ndim,
                     const int64_t *shape, const float *data, vt_ntensor **added);

/* Finds a tensor by exact name, or NULL. */
const vt_ntensor *vt_tensorset_find(const vt_tensorset *s, const char *name);

/* Sets (or replaces) a metadata value; both strings are copied.  A
 * failure (out of memory) is also remembered in the set, which
 * vt_safetensors_write then refuses to write: a writer may set several
 * values and let the write report the first that failed. */
int vt_tensorset_set_meta(vt_tensorset *s, const char *key, const char *val);

/* A metadata value, or NULL. */
const char *vt_tensorset_meta(const vt_tensorset *s, const char *key);

/* Number of elements of t (product of its shape). */
size_t vt_ntensor_numel(const vt_ntensor *t);

/* Writes "[a, b, c]" for t's shape into buf. */
void vt_ntensor_shape_str(const vt_ntensor *t, char *buf, size_t len);

#endif

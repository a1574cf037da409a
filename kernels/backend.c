/* backend.c - backend selection and the checked public wrappers.
 *
 * The only place that knows which implementations exist (the #ifdef for CUDA
 * lives here), and the one place that validates operation arguments, so both
 * implementations see consistent shapes.
 */
#include "backend_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/error.h"

size_t vt_dtype_size(vt_dtype dtype)
{
    switch (dtype) {
    case VT_F32: case VT_I32: return 4;
    case VT_BF16: return 2;
    }
    return 0;
}

const char *vt_backend_compiled(void)
{
#ifdef VT_WITH_CUDA
    return "cpu,cuda";
#else
    return "cpu";
#endif
}

/* Reads VT_TEST_DEVICE_FAULT (see vt_backend_sync). */
static void vt__test_fault(vt_backend *be)
{
    static const char *const kinds[] = {"error", "lost", "error-then-lost"};
    const char *env = getenv("VT_TEST_DEVICE_FAULT");
    char kind[24] = "";
    long at = 0;
    if (env && sscanf(env, "%ld:%23s", &at, kind) == 2 && at > 0)
        for (int k = 0; k < 3; k++)
            if (!strcmp(kind, kinds[k])) {
                be->fault_at = at;
                be->fault_kind = k;
            }
}

int vt_backend_create(vt_backend **out, const char *name, int threads)
{
    vt_backend *be = calloc(1, sizeof *be);
    int rc;

    *out = NULL;
    if (!be)
        return vt_error_set(VT_ENOMEM, "out of memory creating backend");
    if (strcmp(name, "cpu") == 0) {
        rc = vt_cpu_backend_init(be, threads);
    } else if (strcmp(name, "cuda") == 0) {
#ifdef VT_WITH_CUDA
        rc = vt_cuda_backend_init(be);
#else
        rc = vt_error_set(VT_EUNSUPPORTED,
                          "backend 'cuda' is not available: this build was "
                          "made without CUDA (VT_WITH_CUDA=OFF)");
#endif
    } else {
        rc = vt_error_set(VT_EINVAL, "unknown backend '%s' (expected cpu or cuda)",
                          name);
    }
    if (rc < 0) {
        free(be);
        return rc;
    }
    const char *env = getenv("VT_RESIZE_ON_DEVICE");
    if (env && (strcmp(env, "0") == 0 || strcmp(env, "1") == 0))
        be->resize_images = env[0] == '1';
    vt__test_fault(be);
    *out = be;
    return 0;
}

int vt_backend_create_auto(vt_backend **out, int threads, char *why, size_t why_len)
{
    why[0] = '\0';
    if (vt_backend_create(out, "cuda", threads) == 0)
        return 0;
    snprintf(why, why_len, "%s", vt_error_msg());
    return vt_backend_create(out, "cpu", threads);
}

void vt_backend_free(vt_backend *be)
{
    if (!be)
        return;
    if (be->ops && be->ops->destroy)
        be->ops->destroy(be);
    free(be);
}

const char *vt_backend_name(const vt_backend *be) { return be->name; }
const char *vt_backend_device(const vt_backend *be) { return be->device; }

vt_dtype vt_backend_act_dtype(const vt_backend *be, const char *precision)
{
    return be->ops->act_dtype(be, precision);
}

int vt_backend_sync(vt_backend *be)
{
    int rc = be->ops->sync(be);
    be->syncs++;
    if (rc < 0 || !be->fault_at || be->syncs < be->fault_at)
        return rc;
    if (be->syncs == be->fault_at && be->fault_kind != 1)
        return vt_error_set(VT_EDEVICE, "test fault (VT_TEST_DEVICE_FAULT): a device call "
                            "failed");
    if (be->fault_kind != 0)
        return vt_error_set(VT_EDEVLOST, "test fault (VT_TEST_DEVICE_FAULT): the device "
                            "context is lost");
    return 0;
}

int vt_record_begin(vt_backend *be, vt_recording **rec)
{
    if (!be->ops->record_begin)
        return vt_error_set(VT_EUNSUPPORTED, "the %s backend does not record sequences",
                            be->name);
    return be->ops->record_begin(be, rec);
}

int vt_record_end(vt_backend *be, vt_recording **rec, int ok)
{
    return be->ops->record_end(be, rec, ok);
}

void vt_recording_free(vt_backend *be, vt_recording *rec)
{
    if (rec)
        be->ops->recording_free(be, rec);
}

void vt_backend_memory(const vt_backend *be, size_t *in_use, size_t *peak)
{
    if (in_use)
        *in_use = be->mem_in_use;
    if (peak)
        *peak = be->mem_peak;
}

void vt_backend_memory_reset_peak(vt_backend *be) { be->mem_peak = be->mem_in_use; }

size_t vt_backend_memory_total(const vt_backend *be) { return be->mem_total; }
size_t vt_backend_host_memory(const vt_backend *be) { return be->host_in_use; }
int vt_backend_resizes_images(const vt_backend *be) { return be->resize_images; }

void *vt_backend_host_alloc(vt_backend *be, size_t bytes)
{
    return be->ops->host_alloc ? be->ops->host_alloc(be, bytes) : malloc(bytes ? bytes : 1);
}

void vt_backend_host_free(vt_backend *be, void *p)
{
    if (!p)
        return;
    if (be->ops->host_free)
        be->ops->host_free(be, p);
    else
        free(p);
}

int vt_backend_host_fence(vt_backend *be)
{
    return be->ops->host_fence ? be->ops->host_fence(be) : 0;
}

/* ---- tensors ----------------------------------------------------------- */

static int vt__shape_numel(int ndim, const int *dims, size_t *numel)
{
    size_t n = 1;
    if (ndim < 1 || ndim > VT_MAX_DIMS)
        return vt_error_set(VT_EINVAL, "tensor rank %d is outside 1..%d", ndim,
                            VT_MAX_DIMS);
    for (int i = 0; i < ndim; i++) {
        if (dims[i] <= 0)
            return vt_error_set(VT_EINVAL, "tensor dimension %d is %d", i, dims[i]);
        if (n > SIZE_MAX / (size_t)dims[i])
            return vt_error_set(VT_ETOOBIG, "tensor shape overflows");
        n *= (size_t)dims[i];
    }
    *numel = n;
    return 0;
}

/* A write to t: its version moves, and its parent's when t is a view (so
 * that a copy the backend keeps of the parent is refreshed). */
static void vt__wrote(vt_tensor *t)
{
    t->version++;
    if (t->parent)
        t->parent->version++;
}

/* Both constructors: device (host = 0) or host memory. */
static int vt__tensor_new(vt_tensor **out, vt_backend *be, vt_dtype dtype, int ndim,
                          const int *dims, int host)
{
    vt_tensor *t;
    size_t numel = 0;
    int rc;

    *out = NULL;
    if ((rc = vt__shape_numel(ndim, dims, &numel)) < 0)
        return rc;
    if (!(t = calloc(1, sizeof *t)))
        return vt_error_set(VT_ENOMEM, "out of memory");
    t->be = be;
    t->dtype = dtype;
    t->ndim = ndim;
    memcpy(t->dims, dims, (size_t)ndim * sizeof *dims);
    t->numel = t->capacity = numel;
    t->host = host;
    if ((rc = be->ops->alloc(be, t)) < 0) {
        free(t);
        return rc;
    }
    if (host) {
        be->host_in_use += numel * vt_dtype_size(dtype);
    } else {
        be->mem_in_use += numel * vt_dtype_size(dtype);
        if (be->mem_in_use > be->mem_peak)
            be->mem_peak = be->mem_in_use;
    }
    *out = t;
    return 0;
}

int vt_tensor_new(vt_tensor **out, vt_backend *be, vt_dtype dtype, int ndim,
                  const int *dims)
{
    return vt__tensor_new(out, be, dtype, ndim, dims, 0);
}

int vt_tensor_new_host(vt_tensor **out, vt_backend *be, vt_dtype dtype, int ndim,
                       const int *dims)
{
    return vt__tensor_new(out, be, dtype, ndim, dims, 1);
}

int vt_tensor_is_host(const vt_tensor *t) { return t->host; }

int vt_tensor_view_rows(vt_tensor **out, vt_tensor *src, int row, int rows)
{
    vt_tensor *t;
    size_t per;

    *out = NULL;
    if (src->host || src->parent)
        return vt_error_set(VT_EINVAL, "view_rows: src must be a device tensor, not a view");
    if (row < 0 || rows < 1 || row > src->dims[0] - rows)
        return vt_error_set(VT_EINVAL, "view_rows: rows %d..%d are outside 0..%d", row,
                            row + rows - 1, src->dims[0] - 1);
    if (!(t = calloc(1, sizeof *t)))
        return vt_error_set(VT_ENOMEM, "out of memory");
    per = src->numel / (size_t)src->dims[0];
    *t = *src;
    t->dims[0] = rows;
    t->numel = t->capacity = per * (size_t)rows;
    t->data = (char *)src->data + per * (size_t)row * vt_dtype_size(src->dtype);
    t->version = 0;
    t->shadow = NULL;
    t->parent = src;
    *out = t;
    return 0;
}

void vt_tensor_free(vt_tensor *t)
{
    if (!t)
        return;
    if (t->parent) { /* a view: the memory is its parent's */
        t->be->ops->release(t->be, t);
        free(t);
        return;
    }
    if (t->host)
        t->be->host_in_use -= t->capacity * vt_dtype_size(t->dtype);
    else
        t->be->mem_in_use -= t->capacity * vt_dtype_size(t->dtype);
    t->be->ops->release(t->be, t);
    free(t);
}

int vt_tensor_ndim(const vt_tensor *t) { return t->ndim; }
int vt_tensor_dim(const vt_tensor *t, int i) { return i < t->ndim ? t->dims[i] : 1; }
size_t vt_tensor_numel(const vt_tensor *t) { return t->numel; }
vt_dtype vt_tensor_dtype(const vt_tensor *t) { return t->dtype; }

int vt_tensor_reshape(vt_tensor *t, int ndim, const int *dims)
{
    size_t numel = 0;
    int rc = vt__shape_numel(ndim, dims, &numel);
    if (rc < 0)
        return rc;
    if (numel > t->capacity)
        return vt_error_set(VT_EINVAL, "reshape to %zu elements exceeds the %zu allocated",
                            numel, t->capacity);
    t->ndim = ndim;
    memcpy(t->dims, dims, (size_t)ndim * sizeof *dims);
    t->numel = numel;
    return 0;
}

int vt_tensor_upload(vt_tensor *t, const void *host)
{
    vt__wrote(t);
    return t->be->ops->upload(t->be, t, host);
}

int vt_tensor_download(const vt_tensor *t, void *host)
{
    return t->be->ops->download(t->be, t, host);
}

static int vt__device_only(const char *op, const vt_tensor *const *ts, size_t n);
#define VT__DEVICE(op, ...)                                                        \
    do {                                                                           \
        const vt_tensor *const ts_[] = {__VA_ARGS__};                              \
        int rc_ = vt__device_only(op, ts_, sizeof ts_ / sizeof *ts_);              \
        if (rc_ < 0)                                                               \
            return rc_;                                                            \
    } while (0)

int vt_tensor_zero(vt_tensor *t)
{
    VT__DEVICE("tensor_zero", t);
    vt__wrote(t);
    return t->be->ops->zero(t->be, t);
}

/* ---- argument checks --------------------------------------------------- */

static int vt__same_shape(const vt_tensor *a, const vt_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->dims[i] != b->dims[i])
            return 0;
    return 1;
}

static int vt__is_float(const vt_tensor *t)
{
    return t->dtype == VT_F32 || t->dtype == VT_BF16;
}

/* Refuses host tensors (vt_tensor_new_host) among ts[0..n), NULLs allowed. */
static int vt__device_only(const char *op, const vt_tensor *const *ts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ts[i] && ts[i]->host)
            return vt_error_set(VT_EINVAL, "%s: argument %zu is a host tensor", op, i + 1);
    return 0;
}

/* Checks that t is a float tensor of rank ndim with the given dims (a dim of
 * -1 matches anything). */
static int vt__check(const char *op, const char *arg, const vt_tensor *t,
                     int ndim, int d0, int d1, int d2, int d3)
{
    const int want[4] = {d0, d1, d2, d3};
    if (!t)
        return vt_error_set(VT_EINVAL, "%s: %s is missing", op, arg);
    if (!vt__is_float(t))
        return vt_error_set(VT_EINVAL, "%s: %s must be a float tensor", op, arg);
    if (t->host)
        return vt_error_set(VT_EINVAL, "%s: %s is a host tensor", op, arg);
    if (t->ndim != ndim)
        return vt_error_set(VT_EINVAL, "%s: %s has rank %d, expected %d", op, arg,
                            t->ndim, ndim);
    for (int i = 0; i < ndim; i++)
        if (want[i] >= 0 && t->dims[i] != want[i])
            return vt_error_set(VT_EINVAL, "%s: %s dim %d is %d, expected %d", op,
                                arg, i, t->dims[i], want[i]);
    return 0;
}

#define VT__CHECK(...) do { int rc_ = vt__check(__VA_ARGS__); if (rc_ < 0) return rc_; } while (0)

int vt_tensor_copy(vt_tensor *dst, const vt_tensor *src)
{
    VT__DEVICE("tensor_copy", dst, src);
    if (!vt__same_shape(dst, src) || dst->dtype != src->dtype)
        return vt_error_set(VT_EINVAL, "tensor_copy: shapes or dtypes differ");
    vt__wrote(dst);
    return dst->be->ops->copy(dst->be, dst, src);
}

int vt_tensor_copy_rows(vt_tensor *dst, int dst_row, const vt_tensor *src, int src_row,
                        int rows)
{
    size_t drow = dst->numel / (size_t)dst->dims[0], srow = src->numel / (size_t)src->dims[0];
    size_t es = vt_dtype_size(dst->dtype);
    VT__DEVICE("copy_rows", dst, src);
    if (dst->dtype != src->dtype || drow != srow)
        return vt_error_set(VT_EINVAL, "copy_rows: row sizes or dtypes differ");
    if (rows < 0 || dst_row < 0 || src_row < 0 || dst_row + rows > dst->dims[0] ||
        src_row + rows > src->dims[0])
        return vt_error_set(VT_EINVAL, "copy_rows: rows out of range");
    vt__wrote(dst);
    return dst->be->ops->copy_bytes(dst->be, dst, (size_t)dst_row * drow * es, src,
                                    (size_t)src_row * srow * es, (size_t)rows * drow * es);
}

/* Checks a row map of gather/scatter: same dtype and row size, n >= 0, every
 * index in [0, limit) and, for scatter (distinct), no index twice. */
static int vt__check_rows(const char *op, const vt_tensor *dst, const vt_tensor *src,
                          const int *rows, int n, int limit, int distinct)
{
    size_t drow = dst->numel / (size_t)dst->dims[0], srow = src->numel / (size_t)src->dims[0];
    int other = distinct ? src->dims[0] : dst->dims[0];
    if (dst->dtype != src->dtype || drow != srow)
        return vt_error_set(VT_EINVAL, "%s: row sizes or dtypes differ", op);
    if (dst->be != src->be)
        return vt_error_set(VT_EINVAL, "%s: tensors of two backends", op);
    if (n < 0 || n > other || (n > 0 && !rows))
        return vt_error_set(VT_EINVAL, "%s: %d rows for a tensor of %d", op, n, other);
    for (int i = 0; i < n; i++)
        if (rows[i] < 0 || rows[i] >= limit)
            return vt_error_set(VT_EINVAL, "%s: row index %d is outside 0..%d", op, rows[i],
                                limit - 1);
    if (dst == src)
        return vt_error_set(VT_EINVAL, "%s: source and destination are one tensor", op);
    /* n is at most a batch: quadratic is cheaper than sorting a copy */
    for (int i = 0; distinct && i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (rows[i] == rows[j])
                return vt_error_set(VT_EINVAL, "%s: row %d given twice", op, rows[i]);
    return 0;
}

int vt_tensor_gather_rows(vt_tensor *dst, const vt_tensor *src, const int *rows, int n)
{
    int rc = vt__check_rows("gather_rows", dst, src, rows, n, src->dims[0], 0);
    if (rc < 0 || n == 0)
        return rc;
    vt__wrote(dst);
    return dst->be->ops->move_rows(dst->be, dst, NULL, src, rows, n,
                                   dst->numel / (size_t)dst->dims[0] * vt_dtype_size(dst->dtype));
}

int vt_tensor_scatter_rows(vt_tensor *dst, const int *rows, const vt_tensor *src, int n)
{
    int rc = vt__check_rows("scatter_rows", dst, src, rows, n, dst->dims[0], 1);
    if (rc < 0 || n == 0)
        return rc;
    vt__wrote(dst);
    return dst->be->ops->move_rows(dst->be, dst, rows, src, NULL, n,
                                   dst->numel / (size_t)dst->dims[0] * vt_dtype_size(dst->dtype));
}

/* ---- operations -------------------------------------------------------- */

int vt_op_images_to_input(vt_backend *be, const uint8_t *images, int n, int h,
                          int w, vt_preprocess prep, vt_tensor *x)
{
    VT__CHECK("images_to_input", "x", x, 4, n, h, w, 3);
    vt__wrote(x);
    return be->ops->images_to_input(be, images, n, h, w, prep, x);
}

int vt_op_images_resize_to_input(vt_backend *be, const uint8_t *images, size_t bytes,
                                 const vt_image_box *boxes, int n, vt_preprocess prep,
                                 vt_tensor *x)
{
    VT__CHECK("images_resize_to_input", "x", x, 4, n, -1, -1, 3);
    int S = x->dims[1];
    if (x->dims[2] != S)
        return vt_error_set(VT_EINVAL, "images_resize_to_input: x is %dx%d, not square",
                            x->dims[1], S);
    for (int i = 0; i < n; i++) {
        const vt_image_box *b = &boxes[i];
        if (b->sw <= 0 || b->sh <= 0 || b->rw < S || b->rh < S || b->ox < 0 || b->oy < 0 ||
            b->ox > b->rw - S || b->oy > b->rh - S || b->offset > bytes ||
            (bytes - b->offset) / 3 / (size_t)b->sw < (size_t)b->sh)
            return vt_error_set(VT_EINVAL,
                                "images_resize_to_input: image %d (%dx%d at %zu, resized to "
                                "%dx%d, window at %d,%d) does not fit %zu bytes and a %dx%d input",
                                i, b->sw, b->sh, b->offset, b->rw, b->rh, b->ox, b->oy, bytes, S,
                                S);
    }
    vt__wrote(x);
    return be->ops->images_resize(be, images, bytes, boxes, n, prep, x);
}

/* rc, once the heartbeat (vt_backend_set_heartbeat) has been called. */
static int vt__beat(vt_backend *be, int rc)
{
    if (be->beat)
        be->beat(be->beat_ud);
    return rc;
}

void vt_backend_set_heartbeat(vt_backend *be, void (*beat)(void *ud), void *ud)
{
    be->beat = beat;
    be->beat_ud = ud;
}

int vt_op_conv_fwd(vt_backend *be, const vt_tensor *x, const vt_tensor *w,
                   const vt_tensor *b, vt_tensor *y, int relu)
{
    VT__CHECK("conv_fwd", "x", x, 4, -1, -1, -1, -1);
    VT__CHECK("conv_fwd", "w", w, 4, -1, 3, 3, x->dims[3]);
    VT__CHECK("conv_fwd", "b", b, 1, w->dims[0], -1, -1, -1);
    VT__CHECK("conv_fwd", "y", y, 4, x->dims[0], x->dims[1], x->dims[2], w->dims[0]);
    vt__wrote(y);
    return vt__beat(be, be->ops->conv_fwd(be, x, w, b, y, relu));
}

int vt_op_conv_bwd_data(vt_backend *be, const vt_tensor *dy, const vt_tensor *w,
                        vt_tensor *dx)
{
    VT__CHECK("conv_bwd_data", "dy", dy, 4, -1, -1, -1, -1);
    VT__CHECK("conv_bwd_data", "w", w, 4, dy->dims[3], 3, 3, -1);
    VT__CHECK("conv_bwd_data", "dx", dx, 4, dy->dims[0], dy->dims[1], dy->dims[2],
              w->dims[3]);
    vt__wrote(dx);
    return vt__beat(be, be->ops->conv_bwd_data(be, dy, w, dx));
}

int vt_op_conv_bwd_filter(vt_backend *be, const vt_tensor *x, const vt_tensor *dy,
                          vt_tensor *dw, vt_tensor *db)
{
    VT__CHECK("conv_bwd_filter", "x", x, 4, -1, -1, -1, -1);
    VT__CHECK("conv_bwd_filter", "dy", dy, 4, x->dims[0], x->dims[1], x->dims[2], -1);
    VT__CHECK("conv_bwd_filter", "dw", dw, 4, dy->dims[3], 3, 3, x->dims[3]);
    VT__CHECK("conv_bwd_filter", "db", db, 1, dy->dims[3], -1, -1, -1);
    vt__wrote(dw);
    vt__wrote(db);
    return vt__beat(be, be->ops->conv_bwd_filter(be, x, dy, dw, db));
}

int vt_op_relu_bwd(vt_backend *be, const vt_tensor *y, vt_tensor *dy)
{
    if (!y || !dy || !vt__same_shape(y, dy) || !vt__is_float(y) || !vt__is_float(dy))
        return vt_error_set(VT_EINVAL, "relu_bwd: y and dy must be float tensors of one shape");
    VT__DEVICE("relu_bwd", y, dy);
    vt__wrote(dy);
    return be->ops->relu_bwd(be, y, dy);
}

int vt_op_maxpool_fwd(vt_backend *be, const vt_tensor *x, vt_tensor *y)
{
    VT__CHECK("maxpool_fwd", "x", x, 4, -1, -1, -1, -1);
    if (x->dims[1] % 2 || x->dims[2] % 2)
        return vt_error_set(VT_EINVAL, "maxpool_fwd: H and W must be even, got %dx%d",
                            x->dims[1], x->dims[2]);
    VT__CHECK("maxpool_fwd", "y", y, 4, x->dims[0], x->dims[1] / 2, x->dims[2] / 2,
              x->dims[3]);
    vt__wrote(y);
    return be->ops->maxpool_fwd(be, x, y);
}

int vt_op_maxpool_bwd(vt_backend *be, const vt_tensor *x, const vt_tensor *y,
                      const vt_tensor *dy, vt_tensor *dx)
{
    VT__CHECK("maxpool_bwd", "x", x, 4, -1, -1, -1, -1);
    if (x->dims[1] % 2 || x->dims[2] % 2)
        return vt_error_set(VT_EINVAL, "maxpool_bwd: H and W must be even, got %dx%d",
                            x->dims[1], x->dims[2]);
    VT__CHECK("maxpool_bwd", "y", y, 4, x->dims[0], x->dims[1] / 2, x->dims[2] / 2,
              x->dims[3]);
    VT__CHECK("maxpool_bwd", "dy", dy, 4, y->dims[0], y->dims[1], y->dims[2], y->dims[3]);
    VT__CHECK("maxpool_bwd", "dx", dx, 4, x->dims[0], x->dims[1], x->dims[2], x->dims[3]);
    vt__wrote(dx);
    return be->ops->maxpool_bwd(be, x, y, dy, dx);
}

/* Feature count of a dense input: everything after the batch dimension. */
static int vt__dense_in(const vt_tensor *x)
{
    return (int)(x->numel / (size_t)x->dims[0]);
}

int vt_op_dense_fwd(vt_backend *be, const vt_tensor *x, const vt_tensor *w,
                    const vt_tensor *b, vt_tensor *y, int relu)
{
    if (!x || !vt__is_float(x))
        return vt_error_set(VT_EINVAL, "dense_fwd: x must be a float tensor");
    VT__DEVICE("dense_fwd", x);
    VT__CHECK("dense_fwd", "w", w, 2, -1, vt__dense_in(x), -1, -1);
    VT__CHECK("dense_fwd", "b", b, 1, w->dims[0], -1, -1, -1);
    VT__CHECK("dense_fwd", "y", y, 2, x->dims[0], w->dims[0], -1, -1);
    vt__wrote(y);
    return vt__beat(be, be->ops->dense_fwd(be, x, w, b, y, relu));
}

int vt_op_dense_bwd(vt_backend *be, const vt_tensor *x, const vt_tensor *w,
                    const vt_tensor *dy, vt_tensor *dx, vt_tensor *dw, vt_tensor *db)
{
    if (!x || !vt__is_float(x))
        return vt_error_set(VT_EINVAL, "dense_bwd: x must be a float tensor");
    VT__DEVICE("dense_bwd", x, dx);
    VT__CHECK("dense_bwd", "w", w, 2, -1, vt__dense_in(x), -1, -1);
    VT__CHECK("dense_bwd", "dy", dy, 2, x->dims[0], w->dims[0], -1, -1);
    VT__CHECK("dense_bwd", "dw", dw, 2, w->dims[0], w->dims[1], -1, -1);
    VT__CHECK("dense_bwd", "db", db, 1, w->dims[0], -1, -1, -1);
    if (dx && (!vt__is_float(dx) || dx->numel != x->numel || dx->dims[0] != x->dims[0]))
        return vt_error_set(VT_EINVAL, "dense_bwd: dx must match x");
    vt__wrote(dw);
    vt__wrote(db);
    if (dx)
        vt__wrote(dx);
    return vt__beat(be, be->ops->dense_bwd(be, x, w, dy, dx, dw, db));
}

int vt_op_dropout_fwd(vt_backend *be, vt_tensor *x, vt_tensor *mask, float rate,
                      uint64_t seed, uint64_t stream)
{
    if (!(rate >= 0.0f && rate < 1.0f))
        return vt_error_set(VT_EINVAL, "dropout rate %g is outside [0, 1)", rate);
    if (!x || !mask || mask->dtype != VT_F32 || !vt__is_float(x) ||
        mask->numel != x->numel)
        return vt_error_set(VT_EINVAL, "dropout_fwd: mask must be f32 with x's size");
    VT__DEVICE("dropout_fwd", x, mask);
    vt__wrote(x);
    vt__wrote(mask);
    return be->ops->dropout_fwd(be, x, mask, rate, seed, stream);
}

int vt_op_dropout_bwd(vt_backend *be, const vt_tensor *mask, vt_tensor *dy)
{
    if (!mask || !dy || mask->numel != dy->numel || mask->dtype != VT_F32)
        return vt_error_set(VT_EINVAL, "dropout_bwd: mask must be f32 with dy's size");
    VT__DEVICE("dropout_bwd", mask, dy);
    vt__wrote(dy);
    return be->ops->dropout_bwd(be, mask, dy);
}

int vt_op_softmax_xent(vt_backend *be, const vt_tensor *logits,
                       const vt_tensor *labels, vt_tensor *dlogits,
                       float grad_scale, vt_tensor *probs, vt_xent_sums *sums)
{
    VT__CHECK("softmax_xent", "logits", logits, 2, -1, -1, -1, -1);
    if (!labels || labels->dtype != VT_I32 || labels->ndim != 1 ||
        labels->dims[0] != logits->dims[0])
        return vt_error_set(VT_EINVAL, "softmax_xent: labels must be int32 (N)");
    VT__DEVICE("softmax_xent", labels);
    if (dlogits) {
        VT__CHECK("softmax_xent", "dlogits", dlogits, 2, logits->dims[0],
                  logits->dims[1], -1, -1);
        vt__wrote(dlogits);
    }
    if (probs) {
        VT__CHECK("softmax_xent", "probs", probs, 2, logits->dims[0],
                  logits->dims[1], -1, -1);
        vt__wrote(probs);
    }
    return be->ops->softmax_xent(be, logits, labels, dlogits, grad_scale, probs, sums);
}

int vt_op_sgd_update(vt_backend *be, vt_tensor *w, const vt_tensor *g, vt_tensor *v,
                     const vt_sgd_args *args)
{
    if (!w || !g || !v || w->dtype != VT_F32 || g->dtype != VT_F32 ||
        v->dtype != VT_F32 || w->numel != g->numel || w->numel != v->numel)
        return vt_error_set(VT_EINVAL, "sgd_update: w, g, v must be f32 of one size");
    VT__DEVICE("sgd_update", w, g, v);
    vt__wrote(w);
    vt__wrote(v);
    return be->ops->sgd_update(be, w, g, v, args);
}

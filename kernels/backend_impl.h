/* backend_impl.h - what a backend implementation sees (not for callers).
 *
 * A backend fills a vt_backend_ops table; backend.c owns the public wrappers,
 * which validate shapes and dtypes before calling into the table, so an
 * implementation may assume its arguments are consistent.
 */
#ifndef VT_BACKEND_IMPL_H
#define VT_BACKEND_IMPL_H

#include "backend.h"

struct vt_tensor {
    vt_backend *be;
    vt_dtype dtype;
    int ndim;
    int dims[VT_MAX_DIMS];
    size_t numel;    /* elements in the current shape */
    size_t capacity; /* elements allocated */
    void *data;      /* host or device memory, owned */
    unsigned version; /* bumped on every write the backend makes; lets a
                         backend keep derived copies (bf16 shadows) fresh */
    int host;        /* made by vt_tensor_new_host: data is host memory */
    void *shadow;    /* backend-private derived copy, or NULL */
    vt_tensor *parent; /* a view's tensor (vt_tensor_view_rows): data is
                          inside the parent's, not owned; else NULL */
    unsigned long long seq; /* backend-private: the CUDA backend's count of
                               allocations when data was allocated */
};

typedef struct vt_backend_ops {
    int (*alloc)(vt_backend *be, vt_tensor *t);   /* set t->data for capacity;
                                                     t->host asks for host memory */
    void (*release)(vt_backend *be, vt_tensor *t); /* free data (unless t is a
                                                      view) and shadow */
    int (*upload)(vt_backend *be, vt_tensor *t, const void *host);
    int (*download)(vt_backend *be, const vt_tensor *t, void *host);
    int (*zero)(vt_backend *be, vt_tensor *t);
    int (*copy)(vt_backend *be, vt_tensor *dst, const vt_tensor *src);
    /* copy n bytes from src at byte offset so to dst at byte offset do */
    int (*copy_bytes)(vt_backend *be, vt_tensor *dst, size_t dst_off,
                      const vt_tensor *src, size_t src_off, size_t n);
    /* dst row (dst_rows ? dst_rows[i] : i) <- src row (src_rows ? src_rows[i]
     * : i), for i < n rows of row_bytes each; rows do not overlap */
    int (*move_rows)(vt_backend *be, vt_tensor *dst, const int *dst_rows,
                     const vt_tensor *src, const int *src_rows, int n, size_t row_bytes);
    int (*sync)(vt_backend *be);
    /* optional (NULL: malloc, free, nothing to wait for) */
    void *(*host_alloc)(vt_backend *be, size_t bytes);
    void (*host_free)(vt_backend *be, void *p);
    int (*host_fence)(vt_backend *be);
    vt_dtype (*act_dtype)(const vt_backend *be, const char *precision);
    /* optional (NULL: vt_record_begin answers VT_EUNSUPPORTED) */
    int (*record_begin)(vt_backend *be, vt_recording **rec);
    int (*record_end)(vt_backend *be, vt_recording **rec, int ok);
    void (*recording_free)(vt_backend *be, vt_recording *rec);
    void (*destroy)(vt_backend *be);

    int (*images_to_input)(vt_backend *be, const uint8_t *images, int n, int h,
                           int w, vt_preprocess prep, vt_tensor *x);
    int (*images_resize)(vt_backend *be, const uint8_t *images, size_t bytes,
                         const vt_image_box *boxes, int n, vt_preprocess prep,
                         vt_tensor *x);
    int (*conv_fwd)(vt_backend *be, const vt_tensor *x, const vt_tensor *w,
                    const vt_tensor *b, vt_tensor *y, int relu);
    int (*conv_bwd_data)(vt_backend *be, const vt_tensor *dy,
                         const vt_tensor *w, vt_tensor *dx);
    int (*conv_bwd_filter)(vt_backend *be, const vt_tensor *x,
                           const vt_tensor *dy, vt_tensor *dw, vt_tensor *db);
    int (*relu_bwd)(vt_backend *be, const vt_tensor *y, vt_tensor *dy);
    int (*maxpool_fwd)(vt_backend *be, const vt_tensor *x, vt_tensor *y);
    int (*maxpool_bwd)(vt_backend *be, const vt_tensor *x, const vt_tensor *y,
                       const vt_tensor *dy, vt_tensor *dx);
    int (*dense_fwd)(vt_backend *be, const vt_tensor *x, const vt_tensor *w,
                     const vt_tensor *b, vt_tensor *y, int relu);
    int (*dense_bwd)(vt_backend *be, const vt_tensor *x, const vt_tensor *w,
                     const vt_tensor *dy, vt_tensor *dx, vt_tensor *dw,
                     vt_tensor *db);
    int (*dropout_fwd)(vt_backend *be, vt_tensor *x, vt_tensor *mask,
                       float rate, uint64_t seed, uint64_t stream);
    int (*dropout_bwd)(vt_backend *be, const vt_tensor *mask, vt_tensor *dy);
    int (*softmax_xent)(vt_backend *be, const vt_tensor *logits,
                        const vt_tensor *labels, vt_tensor *dlogits,
                        float grad_scale, vt_tensor *probs, vt_xent_sums *sums);
    int (*sgd_update)(vt_backend *be, vt_tensor *w, const vt_tensor *g,
                      vt_tensor *v, const vt_sgd_args *args);
} vt_backend_ops;

struct vt_backend {
    const vt_backend_ops *ops;
    char name[16];
    char device[128];
    size_t mem_in_use, mem_peak; /* bytes, maintained by backend.c */
    size_t host_in_use;          /* bytes of host tensors, likewise */
    size_t mem_total;            /* device capacity (host RAM for the CPU) */
    int resize_images;           /* see vt_backend_resizes_images; set by init */
    long syncs;                  /* vt_backend_sync calls so far */
    long fault_at;               /* VT_TEST_DEVICE_FAULT: the sync that fails (0: none) */
    int fault_kind;              /* ... 0 error, 1 lost (and every one after it), 2 error
                                    and then lost */
    void (*beat)(void *);        /* vt_backend_set_heartbeat's, or NULL */
    void *beat_ud;
    void *impl;                  /* implementation state */
};

/* Size in bytes of one element of dtype. */
size_t vt_dtype_size(vt_dtype dtype);

/* Constructors of the implementations; each fills *be (ops, name, device,
 * impl) or returns an error with a message. */
int vt_cpu_backend_init(vt_backend *be, int threads);
#ifdef VT_WITH_CUDA
int vt_cuda_backend_init(vt_backend *be);
#endif

#endif

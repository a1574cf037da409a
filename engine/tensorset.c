/* tensorset.c - named host tensors with metadata (see tensorset.h). */
#include "tensorset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/error.h"

vt_tensorset *vt_tensorset_new(void) { return calloc(1, sizeof(vt_tensorset)); }

void vt_tensorset_free(vt_tensorset *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++) {
        free(s->t[i].name);
        free(s->t[i].data);
    }
    for (int i = 0; i < s->nmeta; i++) {
        free(s->meta_key[i]);
        free(s->meta_val[i]);
    }
    free(s->t);
    free(s->meta_key);
    free(s->meta_val);
    free(s);
}

size_t vt_ntensor_numel(const vt_ntensor *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (size_t)t->shape[i];
    return n;
}

void vt_ntensor_shape_str(const vt_ntensor *t, char *buf, size_t len)
{
    size_t off = 0;
    off += (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < t->ndim && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%lld", i ? ", " : "",
                                (long long)t->shape[i]);
    if (off < len)
        snprintf(buf + off, len - off, "]");
}

int vt_tensorset_add(vt_tensorset *s, const char *name, int ndim,
                     const int64_t *shape, const float *data, vt_ntensor **added)
{
    vt_ntensor t = {0};
    size_t numel = 1;

    if (ndim < 0 || ndim > VT_NT_MAX_DIMS)
        return vt_error_set(VT_EINVAL, "tensor %s: rank %d unsupported", name, ndim);
    if (vt_tensorset_find(s, name))
        return vt_error_set(VT_EINVAL, "tensor %s appears twice", name);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && numel > (SIZE_MAX / 8) / (size_t)shape[i]))
            return vt_error_set(VT_EFORMAT, "tensor %s: bad shape", name);
        numel *= (size_t)shape[i];
        t.shape[i] = shape[i];
    }
    t.ndim = ndim;
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        vt_ntensor *nt = realloc(s->t, (size_t)cap * sizeof *nt);
        if (!nt)
            return vt_error_set(VT_ENOMEM, "out of memory");
        s->t = nt;
        s->cap = cap;
    }
    t.name = strdup(name);
    t.data = calloc(numel ? numel : 1, sizeof(float));
    if (!t.name || !t.data) {
        free(t.name);
        free(t.data);
        return vt_error_set(VT_ENOMEM, "out of memory for tensor %s", name);
    }
    if (data)
        memcpy(t.data, data, numel * sizeof(float));
    s->t[s->n] = t;
    if (added)
        *added = &s->t[s->n];
    s->n++;
    return 0;
}

const vt_ntensor *vt_tensorset_find(const vt_tensorset *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->t[i].name, name) == 0)
            return &s->t[i];
    return NULL;
}

static int vt__set_meta(vt_tensorset *s, const char *key, const char *val)
{
    char *v = strdup(val), *k;
    if (!v)
        return vt_error_set(VT_ENOMEM, "out of memory");
    for (int i = 0; i < s->nmeta; i++)
        if (strcmp(s->meta_key[i], key) == 0) {
            free(s->meta_val[i]);
            s->meta_val[i] = v;
            return 0;
        }
    if (s->nmeta == s->meta_cap) {
        int cap = s->meta_cap ? 2 * s->meta_cap : 8;
        char **nk = realloc(s->meta_key, (size_t)cap * sizeof *nk);
        if (nk)
            s->meta_key = nk;
        char **nv = nk ? realloc(s->meta_val, (size_t)cap * sizeof *nv) : NULL;
        if (!nk || !nv) {
            free(v);
            return vt_error_set(VT_ENOMEM, "out of memory");
        }
        s->meta_val = nv;
        s->meta_cap = cap;
    }
    if (!(k = strdup(key))) {
        free(v);
        return vt_error_set(VT_ENOMEM, "out of memory");
    }
    s->meta_key[s->nmeta] = k;
    s->meta_val[s->nmeta] = v;
    s->nmeta++;
    return 0;
}

int vt_tensorset_set_meta(vt_tensorset *s, const char *key, const char *val)
{
    int rc = vt__set_meta(s, key, val);
    if (rc < 0)
        s->meta_lost = 1;
    return rc;
}

const char *vt_tensorset_meta(const vt_tensorset *s, const char *key)
{
    for (int i = 0; i < s->nmeta; i++)
        if (strcmp(s->meta_key[i], key) == 0)
            return s->meta_val[i];
    return NULL;
}

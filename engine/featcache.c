/* featcache.c - shared frozen-feature caches (see featcache.h). */
#include "featcache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/error.h"

struct vt_featcache {
    uint64_t key[2];
    vt_tensor *t;    /* (n, side, side, channels) */
    uint8_t *have;   /* (n) */
    size_t bytes;
    int refs;
    vt_featcache *next;
};

struct vt_featcache_set {
    vt_featcache *head;
};

vt_featcache_set *vt_featcache_set_new(void) { return calloc(1, sizeof(vt_featcache_set)); }

static void vt__free(vt_featcache *c)
{
    vt_tensor_free(c->t);
    free(c->have);
    free(c);
}

void vt_featcache_set_free(vt_featcache_set *set)
{
    if (!set)
        return;
    for (vt_featcache *c = set->head, *next; c; c = next) {
        next = c->next;
        vt__free(c);
    }
    free(set);
}

int vt_featcache_acquire(vt_featcache_set *set, const uint64_t key[2], vt_backend *be,
                         vt_dtype dtype, int n, int side, int channels, size_t budget,
                         size_t host_budget, vt_featcache **out)
{
    vt_featcache *c;
    size_t bytes = (size_t)n * side * side * channels * (dtype == VT_BF16 ? 2 : 4);
    int dims[4] = {n, side, side, channels};

    *out = NULL;
    for (c = set->head; c; c = c->next)
        if (!memcmp(c->key, key, sizeof c->key)) {
            c->refs++;
            *out = c;
            return 0;
        }
    if (n == 0 || (bytes > budget && bytes > host_budget))
        return 0;
    if (!(c = calloc(1, sizeof *c)) || !(c->have = calloc((size_t)n, 1))) {
        free(c);
        return vt_error_set(VT_ENOMEM, "out of memory");
    }
    /* Out of memory for an optional cache is not an error: the device first,
     * then host memory, then none. */
    if (bytes <= budget && vt_tensor_new(&c->t, be, dtype, 4, dims) < 0)
        vt_error_clear();
    if (!c->t && bytes <= host_budget && vt_tensor_new_host(&c->t, be, dtype, 4, dims) < 0)
        vt_error_clear();
    if (!c->t) {
        vt__free(c);
        return 0;
    }
    memcpy(c->key, key, sizeof c->key);
    c->bytes = bytes;
    c->refs = 1;
    c->next = set->head;
    set->head = c;
    *out = c;
    return 0;
}

void vt_featcache_release(vt_featcache_set *set, vt_featcache *c)
{
    if (!c || --c->refs > 0)
        return;
    for (vt_featcache **p = &set->head; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    vt__free(c);
}

vt_tensor *vt_featcache_tensor(vt_featcache *c) { return c->t; }
uint8_t *vt_featcache_have(vt_featcache *c) { return c->have; }
size_t vt_featcache_bytes(const vt_featcache *c) { return c->bytes; }
int vt_featcache_on_host(const vt_featcache *c) { return vt_tensor_is_host(c->t); }

void vt_featcache_totals(const vt_featcache_set *set, int *count, size_t *device, size_t *host)
{
    *count = 0;
    *device = *host = 0;
    for (const vt_featcache *c = set->head; c; c = c->next) {
        ++*count;
        *(vt_featcache_on_host(c) ? host : device) += c->bytes;
    }
}

size_t vt_featcache_host_default(const vt_backend *be)
{
    unsigned long long kib = 0;
    char line[128];
    FILE *f;

    if (!strcmp(vt_backend_name(be), "cpu"))
        return 0;
    if ((f = fopen("/proc/meminfo", "re"))) {
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
                break;
        fclose(f);
    }
    if (!kib) /* no MemAvailable: the free pages alone */
        kib = (unsigned long long)sysconf(_SC_AVPHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE) >> 10;
    return (size_t)(kib << 10) / 2;
}

/* featcache.h - frozen-layer features shared by the jobs that can use them.
 *
 * The frozen part's output for an image depends only on the trunk's
 * weights, where the cut is, the input size, the preprocessing, the
 * activation dtype and the image file itself.  A cache holds that output
 * for every sample of one dataset under a key made of all of these (the
 * files by path, size and modification time), so jobs on the same data and
 * trunk share one: whichever computes an image's features first stores
 * them, and the others read them.  Used by one thread (the device thread,
 * or the foreground runner); no locking.
 */
#ifndef VT_FEATCACHE_H
#define VT_FEATCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "../kernels/backend.h"

typedef struct vt_featcache vt_featcache;
typedef struct vt_featcache_set vt_featcache_set;

/* A set of caches; NULL when out of memory. */
vt_featcache_set *vt_featcache_set_new(void);

/* Frees every cache of the set; NULL is a no-op.  No job may hold one. */
void vt_featcache_set_free(vt_featcache_set *set);

/* The cache for key, shared when it exists, else made for n samples of
 * (side, side, channels) in dtype on be: in device memory when it takes at
 * most budget bytes and the device has room, else in host memory
 * (vt_tensor_new_host) when it takes at most host_budget bytes.  *out is
 * NULL (and 0 returned) when it fits neither or cannot be made. */
int vt_featcache_acquire(vt_featcache_set *set, const uint64_t key[2], vt_backend *be,
                         vt_dtype dtype, int n, int side, int channels, size_t budget,
                         size_t host_budget, vt_featcache **out);

/* Gives a cache back; freed when its last user is gone.  NULL is a no-op. */
void vt_featcache_release(vt_featcache_set *set, vt_featcache *c);

/* The features (n, side, side, channels) and the per-sample "stored" flags. */
vt_tensor *vt_featcache_tensor(vt_featcache *c);
uint8_t *vt_featcache_have(vt_featcache *c);

/* Bytes the cache holds, and whether they are in host memory. */
size_t vt_featcache_bytes(const vt_featcache *c);
int vt_featcache_on_host(const vt_featcache *c);

/* What the set holds now: caches, and their bytes on the device and in host
 * memory. */
void vt_featcache_totals(const vt_featcache_set *set, int *count, size_t *device, size_t *host);

/* Host memory a job's caches may take when the device is full and no limit
 * was configured: half of what the system has available now, or 0 for the
 * CPU backend, whose device memory is already host memory. */
size_t vt_featcache_host_default(const vt_backend *be);

/* Keys are made with common/hash.h (vt_hash_init, vt_hash_add). */

#endif

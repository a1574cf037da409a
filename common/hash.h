/* hash.h - a 128-bit content hash (two independent FNV-1a style streams).
 *
 * For recognising identical content - trunk weights, feature-cache keys -
 * not for security. */
#ifndef VT_HASH_H
#define VT_HASH_H

#include <stddef.h>
#include <stdint.h>

/* Starts a hash in h. */
static inline void vt_hash_init(uint64_t h[2])
{
    h[0] = 0xcbf29ce484222325ull;
    h[1] = 0x84222325cbf29ce4ull;
}

/* Adds n bytes to the hash in h (the result depends on the order of the
 * bytes, not on how they are split between calls). */
static inline void vt_hash_add(uint64_t h[2], const void *data, size_t n)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h[0] = (h[0] ^ p[i]) * 0x100000001b3ull;
        h[1] = (h[1] ^ p[i]) * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
    }
}

#endif

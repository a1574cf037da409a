/* rng.h - stateless, counter-based random numbers.
 *
 * Every random choice in vggtune (initial weights, shuffles, splits, dropout
 * masks, augmentation) is a pure function of (seed, stream, index).  That is
 * what makes a job resumed from a checkpoint bit-identical to one that ran
 * straight through (no generator state to save), and what lets the CPU and
 * CUDA backends draw the same dropout masks.
 */
#ifndef VT_RNG_H
#define VT_RNG_H

#include <stdint.h>

/* SplitMix64 finaliser: a bijective 64-bit mix. */
static inline uint64_t vt_rng_mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* 64 random bits for (seed, stream, index). */
static inline uint64_t vt_rng_u64(uint64_t seed, uint64_t stream, uint64_t index)
{
    return vt_rng_mix(vt_rng_mix(seed ^ vt_rng_mix(stream)) + index);
}

/* Uniform float in [0, 1) with 24 random bits (exactly representable). */
static inline float vt_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index)
{
    return (float)(vt_rng_u64(seed, stream, index) >> 40) * (1.0f / 16777216.0f);
}

/* Uniform integer in [0, n) for n > 0 (n small enough that bias is negligible). */
static inline uint64_t vt_rng_below(uint64_t seed, uint64_t stream, uint64_t index,
                                    uint64_t n)
{
    return vt_rng_u64(seed, stream, index) % n;
}

/* Standard normal sample (Box-Muller on two counters). */
double vt_rng_normal(uint64_t seed, uint64_t stream, uint64_t index);

/* Fisher-Yates shuffle of idx[0..n) driven by (seed, stream). */
void vt_rng_shuffle(int *idx, int n, uint64_t seed, uint64_t stream);

/* Streams: fixed identifiers so different uses never share numbers. */
enum {
    VT_RNG_INIT = 1,      /* initial weights; index = tensor<<40 | element */
    VT_RNG_SHUFFLE = 2,   /* per-epoch order; stream + epoch */
    VT_RNG_SPLIT = 3,     /* validation split */
    VT_RNG_DROPOUT = 4,   /* dropout masks; stream + step */
    VT_RNG_AUGMENT = 5,   /* flips and crops */
};

#endif

/* rng.c - the non-inline parts of the counter-based generator (see rng.h). */
#include "rng.h"

#include <math.h>

double vt_rng_normal(uint64_t seed, uint64_t stream, uint64_t index)
{
    /* (0, 1] so log() is finite. */
    double u1 = ((double)(vt_rng_u64(seed, stream, 2 * index) >> 11) + 1.0) *
                (1.0 / 9007199254740992.0);
    double u2 = (double)(vt_rng_u64(seed, stream, 2 * index + 1) >> 11) *
                (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void vt_rng_shuffle(int *idx, int n, uint64_t seed, uint64_t stream)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)vt_rng_below(seed, stream, (uint64_t)i, (uint64_t)i + 1);
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

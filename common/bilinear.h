/* bilinear.h - the one bilinear sampling rule of the project: host resizing
 * (engine/image.c), the CPU backend's resizing of image batches and, written
 * out with explicitly rounded operations, the CUDA kernel's.  All of them
 * evaluate the same float expressions in the same order, so an image resized
 * on the host and one resized by a backend are the same bytes.
 *
 * Half-pixel centres without antialiasing, the convention of
 * torch.nn.functional.interpolate(mode="bilinear", align_corners=False).
 */
#ifndef VT_BILINEAR_H
#define VT_BILINEAR_H

#include <stdint.h>

/* Source taps for output coordinate d when sn source pixels are resized by
 * scale = sn / dn: s = (d + 0.5) * scale - 0.5, clamped below at 0; the
 * second tap is clamped to the last pixel.  Returns the weight of *i1. */
static inline float vt_bilinear_tap(int d, int sn, float scale, int *i0, int *i1)
{
    float s = ((float)d + 0.5f) * scale - 0.5f;
    if (s < 0.0f)
        s = 0.0f;
    int i = (int)s;
    if (i > sn - 1)
        i = sn - 1;
    *i0 = i;
    *i1 = i < sn - 1 ? i + 1 : i;
    return s - (float)i;
}

/* The output byte from the two horizontal blends h0 = c * p00 + d * p01 (of
 * the upper row) and h1 (of the lower) with vertical weights a = 1 - b, b:
 * round to nearest (halves up), clamped to 0..255. */
static inline uint8_t vt_bilinear_out(float a, float h0, float b, float h1)
{
    float v = a * h0 + b * h1 + 0.5f;
    return v <= 0.0f ? 0 : v >= 255.0f ? 255 : (uint8_t)v;
}

#endif

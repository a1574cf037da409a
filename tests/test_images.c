/* test_images.c - image decoding and resizing, dataset scanning and splits,
 * and the vt-gendata tool.
 *
 * Inputs are made here with libpng and TurboJPEG, so each expectation is
 * computed from known pixels: PNG round trips must be exact, JPEG close, and
 * the DCT scale factor is checked by decoding at the expected factor
 * ourselves.  Damaged files must fail with VT_EFORMAT (or VT_ETOOBIG), never
 * crash; run under ASan that also covers the byte-flipping fuzz case.
 */
#include <fcntl.h>
#include <limits.h>
#include <png.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/rng.h"
#include "engine/dataset.h"
#include "engine/image.h"
#include "engine/loader.h"
#include "vt_test.h"

/* ---- helpers ----------------------------------------------------------- */

typedef struct {
    uint8_t *buf;
    size_t len, cap;
} mem_buf;

static void mem_write(png_structp png, png_bytep data, size_t n)
{
    mem_buf *m = png_get_io_ptr(png);
    if (m->len + n > m->cap) {
        size_t cap = m->cap ? m->cap : 1024;
        while (cap < m->len + n)
            cap *= 2;
        uint8_t *b = realloc(m->buf, cap);
        if (!b)
            png_error(png, "out of memory");
        m->buf = b;
        m->cap = cap;
    }
    memcpy(m->buf + m->len, data, n);
    m->len += n;
}

static void mem_flush(png_structp png)
{
    (void)png;
}

/* Encodes rows already in PNG sample layout (packed, big-endian 16-bit).
 * Returns 0, or -1 if libpng refused. */
static int png_encode(mem_buf *m, int w, int h, int color_type, int depth, int interlace,
                      const uint8_t *data, size_t stride, const png_color *pal, int npal,
                      const uint8_t *trns, int ntrns)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_bytep *volatile rows = NULL;
    volatile int rc = -1;

    memset(m, 0, sizeof *m);
    if (!info)
        goto cleanup;
    if (setjmp(png_jmpbuf(png)))
        goto cleanup;
    rows = malloc((size_t)h * sizeof *rows);
    for (int y = 0; y < h; y++)
        rows[y] = (png_bytep)(data + (size_t)y * stride);
    png_set_write_fn(png, m, mem_write, mem_flush);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color_type,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (pal)
        png_set_PLTE(png, info, pal, npal);
    if (trns)
        png_set_tRNS(png, info, trns, ntrns, NULL);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    rc = 0;
cleanup:
    free(rows);
    png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
    return rc;
}

/* A JPEG of rgb (w, h) through TurboJPEG with its flags (TJFLAG_PROGRESSIVE,
 * say); free with tjFree(). */
static uint8_t *jpeg_encode_flags(const uint8_t *px, int w, int h, int pf, int samp,
                                  int quality, int flags, size_t *len)
{
    tjhandle tj = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long n = 0;
    if (tjCompress2(tj, px, w, 0, h, pf, &jpeg, &n, samp, quality, flags) < 0) {
        fprintf(stderr, "  tjCompress2: %s\n", tjGetErrorStr2(tj));
        tjFree(jpeg);
        jpeg = NULL;
    }
    tjDestroy(tj);
    *len = n;
    return jpeg;
}

/* A baseline JPEG of rgb (w, h); free with tjFree(). */
static uint8_t *jpeg_encode(const uint8_t *px, int w, int h, int pf, int samp, int quality,
                            size_t *len)
{
    return jpeg_encode_flags(px, w, h, pf, samp, quality, 0, len);
}

/* A smooth image with some detail, so JPEG keeps it well but different
 * decode paths give different pixels. */
static uint8_t *test_image(int w, int h, uint64_t seed)
{
    uint8_t *p = malloc((size_t)w * (size_t)h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                double v = 128 + 90 * sin(0.05 * (x + 1) * (c + 1) + 0.031 * y) *
                                     cos(0.043 * y * (3 - c) + seed);
                v += (double)(vt_rng_below(seed, 99, ((uint64_t)y * w + x) * 3 + c, 9)) - 4;
                p[((size_t)y * w + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    return p;
}

static int write_file(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int ok = fwrite(buf, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int write_in(const char *dir, const char *name, const void *buf, size_t n)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return write_file(path, buf, n);
}

/* Creates dir/rel (and its parent directories) as a small file. */
static int touch(const char *dir, const char *rel)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    if (vt_mkdir_p(path, NULL) < 0)
        return -1;
    *slash = '/';
    return write_file(path, "x", 1);
}

static int max_abs_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        m = d > m ? d : m;
    }
    return m;
}

static uint32_t crc32_png(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return c ^ 0xffffffffu;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---- PNG ---------------------------------------------------------------- */

/* Packs samples (each < 2^depth) into a PNG row. */
static void pack_row(uint8_t *row, const int *samples, int n, int depth)
{
    if (depth == 16) {
        for (int i = 0; i < n; i++) {
            row[2 * i] = (uint8_t)(samples[i] >> 8);
            row[2 * i + 1] = (uint8_t)samples[i];
        }
        return;
    }
    memset(row, 0, ((size_t)n * depth + 7) / 8);
    for (int i = 0; i < n; i++) {
        int bit = i * depth;
        row[bit / 8] |= (uint8_t)(samples[i] << (8 - depth - bit % 8));
    }
}

/* Writes a random w x h PNG of the given type, decodes it at its own size
 * and compares with what PIL's convert("RGB") gives for it. */
static int png_case(int color_type, int depth, int interlace, const char *what)
{
    int w = 13, h = 9, ok = 0;
    int chans = color_type == PNG_COLOR_TYPE_GRAY ? 1
                : color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                : color_type == PNG_COLOR_TYPE_RGB ? 3
                : color_type == PNG_COLOR_TYPE_RGB_ALPHA ? 4
                                                          : 1;
    int max = (1 << depth) - 1, npal = 0;
    size_t stride = ((size_t)w * chans * depth + 7) / 8;
    uint8_t *data = calloc((size_t)h, stride), *want = malloc((size_t)w * h * 3);
    uint8_t *got = malloc((size_t)w * h * 3);
    int *samples = malloc((size_t)w * chans * sizeof *samples);
    png_color pal[256];
    uint8_t trns[256];
    mem_buf m = {0};
    int sw = 0, sh = 0, rc;

    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        npal = max + 1 < 200 ? max + 1 : 200;
        for (int i = 0; i < npal; i++) {
            pal[i].red = (uint8_t)vt_rng_below(5, 1, (uint64_t)i, 256);
            pal[i].green = (uint8_t)vt_rng_below(5, 2, (uint64_t)i, 256);
            pal[i].blue = (uint8_t)vt_rng_below(5, 3, (uint64_t)i, 256);
            trns[i] = (uint8_t)(i * 37);
        }
    }
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            uint8_t *o = want + ((size_t)y * w + x) * 3;
            for (int c = 0; c < chans; c++) {
                uint64_t r = vt_rng_u64((uint64_t)color_type * 100 + depth, 7,
                                        ((uint64_t)y * w + x) * chans + c);
                int v = npal ? (int)(r % (uint64_t)npal) : (int)(r & (uint64_t)max);
                samples[x * chans + c] = v;
                /* Expected 8-bit value: bit replication for small depths,
                 * the high byte of 16-bit samples (libpng's strip_16 and
                 * PIL's "RGB;16B" both keep it). */
                int v8 = depth == 16 ? v >> 8 : depth < 8 ? v * 255 / max : v;
                if (npal) {
                    o[0] = pal[v].red;
                    o[1] = pal[v].green;
                    o[2] = pal[v].blue;
                } else if (chans <= 2 && c == 0) {
                    o[0] = o[1] = o[2] = (uint8_t)v8;
                } else if (chans >= 3 && c < 3) {
                    o[c] = (uint8_t)v8;
                }
            }
        }
        pack_row(data + (size_t)y * stride, samples, w * chans, depth);
    }
    if (png_encode(&m, w, h, color_type, depth, interlace, data, stride, npal ? pal : NULL,
                   npal, npal ? trns : NULL, npal) < 0) {
        fprintf(stderr, "  %s: cannot encode\n", what);
        goto cleanup;
    }
    memset(got, 0xa5, (size_t)w * h * 3);
    rc = vt_image_decode(m.buf, m.len, w, h, got, &sw, &sh);
    if (rc < 0) {
        fprintf(stderr, "  %s: %s\n", what, vt_error_msg());
        goto cleanup;
    }
    if (sw != w || sh != h || memcmp(got, want, (size_t)w * h * 3) != 0) {
        fprintf(stderr, "  %s: size %dx%d, max diff %d\n", what, sw, sh,
                max_abs_diff(got, want, (size_t)w * h * 3));
        goto cleanup;
    }
    ok = 1;
cleanup:
    free(m.buf);
    free(data);
    free(want);
    free(got);
    free(samples);
    return ok;
}

static void test_png_roundtrip(vt_backend *be)
{
    VT_CHECK(png_case(PNG_COLOR_TYPE_RGB, 8, 0, "rgb8"));
    VT_CHECK(png_case(PNG_COLOR_TYPE_RGB, 8, 1, "rgb8 interlaced"));
    VT_CHECK(png_case(PNG_COLOR_TYPE_RGB, 16, 0, "rgb16"));
    VT_CHECK(png_case(PNG_COLOR_TYPE_RGB_ALPHA, 8, 0, "rgba8"));
    VT_CHECK(png_case(PNG_COLOR_TYPE_RGB_ALPHA, 16, 0, "rgba16"));
    VT_CHECK(png_case(PNG_COLOR_TYPE_GRAY, 8, 0, "gray8"));
    VT_CHECK(png_case(PNG_COLOR_TYPE_GRAY, 1, 0, "gray1"));
    VT_CHECK(png_case(PNG_COLOR_TYPE_GRAY, 2, 0, "gray2"));
    VT_CHECK(png_case(PNG_COLOR_TYPE_GRAY, 4, 1, "gray4 interlaced"));
    VT_CHECK(png_case(PNG_COLOR_TYPE_GRAY, 16, 0, "gray16"));
    VT_CHECK(png_case(PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0, "gray+alpha 8"));
    VT_CHECK(png_case(PNG_COLOR_TYPE_GRAY_ALPHA, 16, 0, "gray+alpha 16"));
    VT_CHECK(png_case(PNG_COLOR_TYPE_PALETTE, 8, 0, "palette8 + tRNS"));
    VT_CHECK(png_case(PNG_COLOR_TYPE_PALETTE, 4, 0, "palette4 + tRNS"));
    VT_CHECK(png_case(PNG_COLOR_TYPE_PALETTE, 1, 0, "palette1 + tRNS"));
}

/* ---- JPEG --------------------------------------------------------------- */

static void test_jpeg_decode(vt_backend *be)
{
    int w = 64, h = 48, sw = 0, sh = 0;
    size_t n = (size_t)w * h * 3, len;
    uint8_t *src = test_image(w, h, 3), *got = malloc(n);
    uint8_t *jpeg = jpeg_encode(src, w, h, TJPF_RGB, TJSAMP_444, 95, &len);
    double sum = 0;

    VT_CHECK(jpeg != NULL);
    VT_CHECK_INT(vt_image_sniff(jpeg, len), VT_IMG_JPEG);
    VT_CHECK_OK(vt_image_decode(jpeg, len, w, h, got, &sw, &sh));
    VT_CHECK_INT(sw, w);
    VT_CHECK_INT(sh, h);
    for (size_t i = 0; i < n; i++)
        sum += abs((int)got[i] - (int)src[i]);
    VT_CHECK(max_abs_diff(got, src, n) <= 16);
    VT_CHECK(sum / (double)n < 2.5);
    tjFree(jpeg);

    /* Grayscale JPEG: all three channels equal. */
    uint8_t *gray = malloc((size_t)w * h);
    for (int i = 0; i < w * h; i++)
        gray[i] = (uint8_t)(i * 7 % 251);
    jpeg = jpeg_encode(gray, w, h, TJPF_GRAY, TJSAMP_GRAY, 95, &len);
    VT_CHECK(jpeg != NULL);
    VT_CHECK_OK(vt_image_decode(jpeg, len, w, h, got, NULL, NULL));
    for (int i = 0; i < w * h; i++)
        VT_CHECK(got[3 * i] == got[3 * i + 1] && got[3 * i] == got[3 * i + 2]);
    tjFree(jpeg);
    free(gray);
    free(src);
    free(got);
}

/* CMYK JPEGs (as Photoshop writes them, inverted) come out as RGB. */
static void test_jpeg_cmyk(vt_backend *be)
{
    int w = 32, h = 24;
    size_t len, n = (size_t)w * h;
    uint8_t *src = test_image(w, h, 4), *cmyk = malloc(n * 4), *got = malloc(n * 3);

    /* The inverse of libjpeg-turbo's cmyk_to_rgb (r = c * k / 255). */
    for (size_t i = 0; i < n; i++) {
        int mx = src[3 * i];
        for (int c = 1; c < 3; c++)
            mx = src[3 * i + c] > mx ? src[3 * i + c] : mx;
        mx = mx ? mx : 1;
        for (int c = 0; c < 3; c++)
            cmyk[4 * i + c] = (uint8_t)((src[3 * i + c] * 255 + mx / 2) / mx);
        cmyk[4 * i + 3] = (uint8_t)mx;
    }
    uint8_t *jpeg = jpeg_encode(cmyk, w, h, TJPF_CMYK, TJSAMP_444, 98, &len);
    VT_CHECK(jpeg != NULL);
    VT_CHECK_OK(vt_image_decode(jpeg, len, w, h, got, NULL, NULL));
    VT_CHECK(max_abs_diff(got, src, n * 3) <= 16);
    tjFree(jpeg);
    free(src);
    free(cmyk);
    free(got);
}

/* Decodes jpeg at scale num/denom with TurboJPEG itself, then resizes:
 * what vt_image_decode() must produce when it picks that factor. */
static int decode_at(const uint8_t *jpeg, size_t len, int w, int h, int num, int denom,
                     int out_w, int out_h, uint8_t *out)
{
    tjscalingfactor sf = {num, denom};
    int sw = TJSCALED(w, sf), sh = TJSCALED(h, sf);
    uint8_t *pix = malloc((size_t)sw * sh * 3);
    tjhandle tj = tjInitDecompress();
    int rc = tjDecompress2(tj, jpeg, (unsigned long)len, pix, sw, 0, sh, TJPF_RGB, 0);
    if (rc == 0)
        rc = vt_image_resize(pix, sw, sh, out, out_w, out_h);
    tjDestroy(tj);
    free(pix);
    return rc;
}

static void test_jpeg_dct_scale(vt_backend *be)
{
    /* 400x300: the smallest n/8 with 400n/8 >= out_w and 300n/8 >= out_h. */
    static const struct {
        int out_w, out_h, num, denom, other_num, other_denom;
    } cases[] = {
        {100, 100, 3, 8, 1, 2},  /* 150x113; 1/4 (100x75) is too short */
        {50, 37, 1, 8, 1, 4},    /* 50x38 */
        {50, 38, 1, 8, 1, 4},
        {51, 37, 1, 4, 1, 8},    /* 100x75 */
        {200, 150, 1, 2, 5, 8},  /* exactly 1/2: no resize at all */
        {201, 150, 5, 8, 1, 2},  /* 250x188 */
        {64, 224, 3, 4, 1, 1},   /* height decides: 300x225 */
        {400, 300, 1, 1, 7, 8},
        {401, 300, 1, 1, 7, 8},  /* upscaling: decode at 1/1, resize up */
    };
    int w = 400, h = 300;
    size_t len;
    uint8_t *src = test_image(w, h, 9);
    uint8_t *jpeg = jpeg_encode(src, w, h, TJPF_RGB, TJSAMP_420, 90, &len);
    VT_CHECK(jpeg != NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = (size_t)cases[i].out_w * cases[i].out_h * 3;
        uint8_t *got = malloc(n), *want = malloc(n), *other = malloc(n);
        int ok = vt_image_decode(jpeg, len, cases[i].out_w, cases[i].out_h, got, NULL, NULL) == 0 &&
                 decode_at(jpeg, len, w, h, cases[i].num, cases[i].denom, cases[i].out_w,
                           cases[i].out_h, want) == 0 &&
                 decode_at(jpeg, len, w, h, cases[i].other_num, cases[i].other_denom,
                           cases[i].out_w, cases[i].out_h, other) == 0;
        int same = ok && memcmp(got, want, n) == 0;
        int distinct = ok && memcmp(want, other, n) != 0;
        if (!same || !distinct)
            fprintf(stderr, "  %dx%d: want scale %d/%d: ok %d same %d (max diff %d), "
                    "test distinguishes from %d/%d: %d\n",
                    cases[i].out_w, cases[i].out_h, cases[i].num, cases[i].denom, ok, same,
                    ok ? max_abs_diff(got, want, n) : -1, cases[i].other_num,
                    cases[i].other_denom, distinct);
        free(got);
        free(want);
        free(other);
        VT_CHECK(same && distinct);
    }
    tjFree(jpeg);
    free(src);
}

/* Offset of the marker that ends a JPEG's first scan: past the header
 * segments and the first scan's entropy-coded data (where a 0xff is
 * followed by 0 or an RSTn marker).  0 when there is none. */
static size_t jpeg_after_first_scan(const uint8_t *p, size_t len)
{
    size_t i = 2;
    while (i + 4 <= len && p[i] == 0xff && p[i + 1] != 0xda)
        i += 2 + ((size_t)p[i + 2] << 8 | p[i + 3]);
    if (i + 4 > len)
        return 0;
    for (i += 2 + ((size_t)p[i + 2] << 8 | p[i + 3]); i + 1 < len; i++)
        if (p[i] == 0xff && p[i + 1] != 0 && (p[i + 1] < 0xd0 || p[i + 1] > 0xd7))
            return i;
    return 0;
}

/* The len bytes at p with k zero bytes inserted at offset at, in a new
 * buffer (free()) of len + k bytes. */
static uint8_t *with_zeros(const uint8_t *p, size_t len, size_t at, size_t k)
{
    uint8_t *out = malloc(len + k);
    memcpy(out, p, at);
    memset(out + at, 0, k);
    memcpy(out + at + k, p + at, len - at);
    return out;
}

/* Whether TurboJPEG's decode of a JPEG stops on a warning containing
 * substr: the first warning, as stop-on-warning reports it. */
static int jpeg_warns_first(const uint8_t *jpeg, size_t len, const char *substr)
{
    int w = 0, h = 0, subsamp = 0, cs = 0, rc = -1;
    tjhandle tj = tjInitDecompress();
    if (tjDecompressHeader3(tj, jpeg, (unsigned long)len, &w, &h, &subsamp, &cs) == 0 ||
        tjGetErrorCode(tj) == TJERR_WARNING) {
        uint8_t *pix = malloc((size_t)w * h * 3);
        rc = tjDecompress2(tj, jpeg, (unsigned long)len, pix, w, 0, h, TJPF_RGB,
                           TJFLAG_STOPONWARNING);
        free(pix);
    }
    int warns = rc < 0 && tjGetErrorCode(tj) == TJERR_WARNING &&
                strstr(tjGetErrorStr2(tj), substr) != NULL;
    tjDestroy(tj);
    return warns;
}

/* Whether JPEGs a and b both decode, to the same pixels, at w x h. */
static int decode_same(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, int w,
                       int h)
{
    size_t n = (size_t)w * h * 3;
    uint8_t *pa = malloc(n), *pb = malloc(n);
    int same = vt_image_decode(a, alen, w, h, pa, NULL, NULL) == 0 &&
               vt_image_decode(b, blen, w, h, pb, NULL, NULL) == 0 && memcmp(pa, pb, n) == 0;
    free(pa);
    free(pb);
    return same;
}

/* "Corrupt JPEG data: N extraneous bytes before marker 0xXX": stray bytes
 * after an intact segment, common in camera and editor output.  Such a file
 * decodes and probes as the intact one does, pixel for pixel, wherever the
 * bytes are (before EOI, between header segments, between progressive
 * scans); one with real damage after them (truncated) is still refused. */
static void test_jpeg_extraneous_bytes(vt_backend *be)
{
    int w = 48, h = 40, pw = 0, ph = 0;
    size_t n = (size_t)w * h * 3, len, plen;
    uint8_t *src = test_image(w, h, 12), *want = malloc(n), *got = malloc(n);
    uint8_t *seq = jpeg_encode(src, w, h, TJPF_RGB, TJSAMP_420, 90, &len);
    uint8_t *prog = jpeg_encode_flags(src, w, h, TJPF_RGB, TJSAMP_420, 90, TJFLAG_PROGRESSIVE,
                                      &plen);
    VT_CHECK(seq != NULL && prog != NULL);
    size_t app0_end = 4 + ((size_t)seq[4] << 8 | seq[5]); /* TurboJPEG starts with APP0 */
    size_t scan_end = jpeg_after_first_scan(prog, plen);
    VT_CHECK(seq[app0_end] == 0xff && scan_end > 0 && scan_end + 2 < plen);
    /* (The entropy decoder reads a few bytes ahead, and what it read past
     * the end of a scan it may drop without a word: 8 or 16 bytes make sure
     * of the warning after a scan; each file is checked to give it.) */
    uint8_t *eoi = with_zeros(seq, len, len - 2, 8), *hdr = with_zeros(seq, len, app0_end, 1);
    uint8_t *mid = with_zeros(prog, plen, scan_end, 16);
    VT_CHECK(jpeg_warns_first(eoi, len + 8, "extraneous bytes before marker 0xd9"));
    VT_CHECK(jpeg_warns_first(hdr, len + 1, "1 extraneous bytes before marker 0xdb"));
    VT_CHECK(jpeg_warns_first(mid, plen + 16, "extraneous bytes before marker"));
    VT_CHECK(jpeg_warns_first(hdr, len * 6 / 10, "extraneous bytes"));
    VT_CHECK(jpeg_warns_first(mid, plen * 8 / 10, "extraneous bytes"));

    VT_CHECK_OK(vt_image_decode(seq, len, w, h, want, NULL, NULL));
    VT_CHECK_OK(vt_image_decode(eoi, len + 8, w, h, got, &pw, &ph));
    VT_CHECK(memcmp(got, want, n) == 0 && pw == w && ph == h);
    VT_CHECK(decode_same(eoi, len + 8, seq, len, w / 2, h / 2)); /* at a DCT scale */
    VT_CHECK(decode_same(hdr, len + 1, seq, len, w, h));
    VT_CHECK(decode_same(mid, plen + 16, prog, plen, w, h));

    /* Stray bytes first, then a truncation: refused.  (TurboJPEG's
     * stop-on-warning stops at the stray bytes, checked above; decoding on
     * past them it reports only that first warning, not the truncation.) */
    VT_CHECK_ERR(vt_image_decode(hdr, len * 6 / 10, w, h, got, NULL, NULL), VT_EFORMAT,
                 "Premature end of JPEG file");
    VT_CHECK_ERR(vt_image_decode(mid, plen * 8 / 10, w, h, got, NULL, NULL), VT_EFORMAT,
                 "Premature end of JPEG file");

    /* The same from files: the header probe at dataset scan agrees. */
    char dir[PATH_MAX];
    vt_image_format fmt;
    snprintf(dir, sizeof dir, "%s", vt_test_tmpdir("extraneous"));
    VT_CHECK(write_in(dir, "eoi.jpg", eoi, len + 8) == 0);
    VT_CHECK(write_in(dir, "hdr.jpg", hdr, len + 1) == 0);
    VT_CHECK(write_in(dir, "cut.jpg", hdr, len * 6 / 10) == 0);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    VT_CHECK(dfd >= 0);
    VT_CHECK_OK(vt_image_probe(dfd, "eoi.jpg", &fmt, &pw, &ph));
    VT_CHECK(fmt == VT_IMG_JPEG && pw == w && ph == h);
    VT_CHECK_OK(vt_image_probe(dfd, "hdr.jpg", &fmt, &pw, &ph));
    VT_CHECK(fmt == VT_IMG_JPEG && pw == w && ph == h);
    VT_CHECK_OK(vt_image_load(dfd, "hdr.jpg", w, h, got));
    VT_CHECK(memcmp(got, want, n) == 0);
    VT_CHECK_ERR(vt_image_load(dfd, "cut.jpg", w, h, got), VT_EFORMAT, "cut.jpg");
    close(dfd);

    free(eoi);
    free(hdr);
    free(mid);
    tjFree(seq);
    tjFree(prog);
    free(src);
    free(want);
    free(got);
}

/* ---- resize ------------------------------------------------------------ */

static void test_resize_identity(vt_backend *be)
{
    int w = 17, h = 11;
    uint8_t *src = test_image(w, h, 1), *dst = malloc((size_t)w * h * 3);
    VT_CHECK_OK(vt_image_resize(src, w, h, dst, w, h));
    VT_CHECK(memcmp(src, dst, (size_t)w * h * 3) == 0);
    free(src);
    free(dst);
}

static void test_resize_known(vt_backend *be)
{
    /* 2x2 -> 4x4.  Half-pixel centres give per-axis weights (1, 0),
     * (0.75, 0.25), (0.25, 0.75), (0, 1) on the two source pixels. */
    static const uint8_t src[2 * 2 * 3] = {
        0, 1, 255,   100, 2, 255,
        200, 3, 255, 40, 5, 255,
    };
    static const uint8_t want_r[16] = {
        0, 25, 75, 100,
        50, 59, 76, 85,     /* 58.75, 76.25 */
        150, 126, 79, 55,   /* 126.25, 78.75 */
        200, 160, 80, 40,
    };
    static const uint8_t want_g[16] = {
        1, 1, 2, 2,         /* 1.25 -> 1, 1.75 -> 2 */
        2, 2, 2, 3,         /* 1.5 -> 2 (halves round up), 1.8125, 2.4375, 2.75 */
        3, 3, 4, 4,         /* 2.5 -> 3, 2.9375, 3.8125, 4.25 */
        3, 4, 5, 5,         /* 3.5 -> 4, 4.5 -> 5 */
    };
    uint8_t dst[4 * 4 * 3];
    VT_CHECK_OK(vt_image_resize(src, 2, 2, dst, 4, 4));
    for (int i = 0; i < 16; i++) {
        VT_CHECK_INT(dst[3 * i], want_r[i]);
        VT_CHECK_INT(dst[3 * i + 1], want_g[i]);
        VT_CHECK_INT(dst[3 * i + 2], 255);
    }

    /* 4x1 -> 2x1: sources at 0.5 and 2.5. */
    static const uint8_t row4[12] = {10, 0, 0, 20, 0, 0, 30, 0, 0, 41, 0, 0};
    uint8_t out2[6];
    VT_CHECK_OK(vt_image_resize(row4, 4, 1, out2, 2, 1));
    VT_CHECK_INT(out2[0], 15);
    VT_CHECK_INT(out2[3], 36); /* 35.5 */

    /* 3x1 -> 2x1: sources at 0.25 and 1.75. */
    static const uint8_t row3[9] = {0, 0, 0, 100, 0, 0, 200, 0, 0};
    VT_CHECK_OK(vt_image_resize(row3, 3, 1, out2, 2, 1));
    VT_CHECK_INT(out2[0], 25);
    VT_CHECK_INT(out2[3], 175);

    /* 1x1 -> 3x2: a constant. */
    static const uint8_t one[3] = {7, 8, 9};
    uint8_t out6[18];
    VT_CHECK_OK(vt_image_resize(one, 1, 1, out6, 3, 2));
    for (int i = 0; i < 6; i++)
        VT_CHECK(out6[3 * i] == 7 && out6[3 * i + 1] == 8 && out6[3 * i + 2] == 9);

    /* Decoding a PNG to another size is decode-then-resize. */
    int w = 23, h = 19;
    uint8_t *img = test_image(w, h, 2), *want = malloc(31 * 12 * 3), *got = malloc(31 * 12 * 3);
    mem_buf m;
    VT_CHECK(png_encode(&m, w, h, PNG_COLOR_TYPE_RGB, 8, 0, img, (size_t)w * 3, NULL, 0,
                        NULL, 0) == 0);
    VT_CHECK_OK(vt_image_resize(img, w, h, want, 31, 12));
    VT_CHECK_OK(vt_image_decode(m.buf, m.len, 31, 12, got, NULL, NULL));
    VT_CHECK(memcmp(got, want, 31 * 12 * 3) == 0);
    free(m.buf);
    free(img);
    free(want);
    free(got);
}

/* The 2x2 formula of image.h evaluated directly per pixel: what the
 * separable, row-reusing resize must reproduce bit for bit. */
static void resize_direct(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh)
{
    float sx = (float)sw / (float)dw, sy = (float)sh / (float)dh;
    for (int y = 0; y < dh; y++) {
        float fy = ((float)y + 0.5f) * sy - 0.5f;
        fy = fy < 0.0f ? 0.0f : fy;
        int y0 = (int)fy < sh - 1 ? (int)fy : sh - 1, y1 = y0 < sh - 1 ? y0 + 1 : y0;
        float b = fy - (float)y0, a = 1.0f - b;
        for (int x = 0; x < dw; x++) {
            float fx = ((float)x + 0.5f) * sx - 0.5f;
            fx = fx < 0.0f ? 0.0f : fx;
            int x0 = (int)fx < sw - 1 ? (int)fx : sw - 1, x1 = x0 < sw - 1 ? x0 + 1 : x0;
            float d = fx - (float)x0, c = 1.0f - d;
            for (int ch = 0; ch < 3; ch++) {
                const uint8_t *r0 = src + (size_t)y0 * sw * 3, *r1 = src + (size_t)y1 * sw * 3;
                float v = a * (c * r0[3 * x0 + ch] + d * r0[3 * x1 + ch]) +
                          b * (c * r1[3 * x0 + ch] + d * r1[3 * x1 + ch]);
                v += 0.5f;
                dst[((size_t)y * dw + x) * 3 + ch] = v <= 0.0f ? 0 : v >= 255.0f ? 255 : (uint8_t)v;
            }
        }
    }
}

static void test_resize_matches_formula(vt_backend *be)
{
    /* Down (the DCT-scaled JPEG case), up, mixed, one-pixel edges. */
    static const int sizes[][4] = {{313, 235, 224, 224}, {250, 188, 224, 224}, {37, 23, 64, 48},
                                   {64, 48, 37, 23},     {100, 7, 13, 90},    {1, 9, 5, 4},
                                   {9, 1, 4, 5},         {500, 375, 97, 31},  {3, 3, 2, 2}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int sw = sizes[k][0], sh = sizes[k][1], dw = sizes[k][2], dh = sizes[k][3];
        uint8_t *src = test_image(sw, sh, (int)k + 11);
        uint8_t *got = malloc((size_t)dw * dh * 3), *want = malloc((size_t)dw * dh * 3);
        VT_CHECK_OK(vt_image_resize(src, sw, sh, got, dw, dh));
        resize_direct(src, sw, sh, want, dw, dh);
        if (memcmp(got, want, (size_t)dw * dh * 3) != 0)
            vt_test_fail(__FILE__, __LINE__, "resize %dx%d -> %dx%d differs from the direct formula",
                         sw, sh, dw, dh);
        free(src);
        free(got);
        free(want);
    }
}

static void test_flip(vt_backend *be)
{
    uint8_t img[3 * 2 * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18};
    static const uint8_t want[18] = {7, 8, 9, 4, 5, 6, 1, 2, 3, 16, 17, 18, 13, 14, 15, 10, 11, 12};
    vt_image_flip(img, 3, 2);
    VT_CHECK(memcmp(img, want, sizeof want) == 0);
}

/* ---- bad input --------------------------------------------------------- */

static void test_bad_input(vt_backend *be)
{
    int w = 64, h = 64;
    uint8_t out[64 * 64 * 3];
    size_t jlen;
    uint8_t *src = test_image(w, h, 5);
    uint8_t *jpeg = jpeg_encode(src, w, h, TJPF_RGB, TJSAMP_420, 90, &jlen);
    mem_buf png;
    VT_CHECK(jpeg != NULL);
    VT_CHECK(png_encode(&png, w, h, PNG_COLOR_TYPE_RGB, 8, 0, src, (size_t)w * 3, NULL, 0,
                        NULL, 0) == 0);

    /* Not an image at all, or too short to tell. */
    static const uint8_t text[] = "hello, this is not a picture\n";
    VT_CHECK_ERR(vt_image_decode(text, sizeof text - 1, 8, 8, out, NULL, NULL), VT_EFORMAT,
                 "not a JPEG or PNG");
    VT_CHECK_ERR(vt_image_decode(jpeg, 2, 8, 8, out, NULL, NULL), VT_EFORMAT, NULL);
    VT_CHECK_ERR(vt_image_decode(jpeg, 0, 8, 8, out, NULL, NULL), VT_EFORMAT, "empty");
    VT_CHECK_ERR(vt_image_decode(jpeg, jlen, 0, 8, out, NULL, NULL), VT_EINVAL, NULL);

    /* SOI then noise. */
    uint8_t noise[4096];
    for (size_t i = 0; i < sizeof noise; i++)
        noise[i] = (uint8_t)vt_rng_below(11, 0, i, 256);
    noise[0] = 0xff, noise[1] = 0xd8, noise[2] = 0xff;
    VT_CHECK_ERR(vt_image_decode(noise, sizeof noise, 8, 8, out, NULL, NULL), VT_EFORMAT,
                 "JPEG");

    /* Truncated JPEG: libjpeg-turbo would pad it with grey and warn. */
    VT_CHECK_ERR(vt_image_decode(jpeg, jlen * 6 / 10, w, h, out, NULL, NULL), VT_EFORMAT,
                 "JPEG");
    /* Truncated PNG, and a PNG whose pixel data was damaged (CRC). */
    VT_CHECK_ERR(vt_image_decode(png.buf, png.len * 6 / 10, w, h, out, NULL, NULL),
                 VT_EFORMAT, "PNG");
    VT_CHECK_ERR(vt_image_decode(png.buf, png.len - 12, w, h, out, NULL, NULL), VT_EFORMAT,
                 "PNG");
    png.buf[png.len / 2] ^= 0x55;
    VT_CHECK_ERR(vt_image_decode(png.buf, png.len, w, h, out, NULL, NULL), VT_EFORMAT, "PNG");
    png.buf[png.len / 2] ^= 0x55;
    VT_CHECK_OK(vt_image_decode(png.buf, png.len, w, h, out, NULL, NULL));

    /* A JPEG frame header claiming 65000x65000 (JPEG's limit is 65535). */
    uint8_t *big = malloc(jlen);
    memcpy(big, jpeg, jlen);
    size_t sof = 2;
    while (sof + 9 < jlen && !(big[sof] == 0xff && big[sof + 1] == 0xc0))
        sof++;
    VT_CHECK(sof + 9 < jlen);
    big[sof + 5] = 65000 >> 8, big[sof + 6] = 65000 & 0xff;
    big[sof + 7] = 65000 >> 8, big[sof + 8] = 65000 & 0xff;
    VT_CHECK_ERR(vt_image_decode(big, jlen, 8, 8, out, NULL, NULL), VT_ETOOBIG, "65000x65000");

    /* A PNG header claiming 100000x100000, with a valid CRC. */
    uint8_t *bigpng = malloc(png.len);
    memcpy(bigpng, png.buf, png.len);
    put_be32(bigpng + 16, 100000);
    put_be32(bigpng + 20, 100000);
    put_be32(bigpng + 29, crc32_png(bigpng + 12, 17));
    VT_CHECK_ERR(vt_image_decode(bigpng, png.len, 8, 8, out, NULL, NULL), VT_ETOOBIG,
                 "100000x100000");

    /* Files: empty, text named .jpg, the big ones, a missing one. */
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", vt_test_tmpdir("bad"));
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    VT_CHECK(dfd >= 0);
    VT_CHECK(write_in(dir, "empty.png", "", 0) == 0);
    VT_CHECK(write_in(dir, "notes.jpg", text, sizeof text - 1) == 0);
    VT_CHECK(write_in(dir, "big.jpg", big, jlen) == 0);
    VT_CHECK(write_in(dir, "big.png", bigpng, png.len) == 0);
    VT_CHECK_ERR(vt_image_load(dfd, "empty.png", 8, 8, out), VT_EFORMAT, "empty.png");
    VT_CHECK_ERR(vt_image_load(dfd, "notes.jpg", 8, 8, out), VT_EFORMAT, "notes.jpg");
    VT_CHECK_ERR(vt_image_load(dfd, "big.jpg", 8, 8, out), VT_ETOOBIG, "big.jpg");
    VT_CHECK_ERR(vt_image_load(dfd, "big.png", 8, 8, out), VT_ETOOBIG, "big.png");
    VT_CHECK_ERR(vt_image_load(dfd, "missing.png", 8, 8, out), VT_ENOTFOUND, "missing.png");
    VT_CHECK_ERR(vt_image_load(dfd, ".", 8, 8, out), VT_EFORMAT, "regular file");
    vt_image_format fmt;
    int pw, ph;
    VT_CHECK_ERR(vt_image_probe(dfd, "notes.jpg", &fmt, &pw, &ph), VT_EFORMAT, "notes.jpg");
    VT_CHECK_ERR(vt_image_probe(dfd, "big.jpg", &fmt, &pw, &ph), VT_ETOOBIG, NULL);
    close(dfd);

    free(big);
    free(bigpng);
    free(png.buf);
    tjFree(jpeg);
    free(src);
}

/* Random byte damage: any result is fine as long as nothing crashes or
 * reads out of bounds (ASan), and success means a full image. */
static void test_fuzz(vt_backend *be)
{
    int w = 40, h = 30;
    uint8_t out[20 * 20 * 3];
    size_t jlen;
    uint8_t *src = test_image(w, h, 6);
    uint8_t *jpeg = jpeg_encode(src, w, h, TJPF_RGB, TJSAMP_420, 85, &jlen);
    uint8_t *rgba = test_image(w * 4, h, 7); /* any bytes will do as RGBA */
    mem_buf png;
    VT_CHECK(jpeg != NULL);
    VT_CHECK(png_encode(&png, w, h, PNG_COLOR_TYPE_RGB_ALPHA, 8, 1, rgba, (size_t)w * 4, NULL,
                        0, NULL, 0) == 0);
    const uint8_t *orig[2] = {jpeg, png.buf};
    size_t lens[2] = {jlen, png.len};
    int failures = 0, runs = 0;
    for (int f = 0; f < 2; f++) {
        uint8_t *buf = malloc(lens[f]);
        for (int it = 0; it < 300; it++) {
            memcpy(buf, orig[f], lens[f]);
            int flips = 1 + (int)vt_rng_below(21, (uint64_t)f, (uint64_t)it * 64, 4);
            for (int k = 0; k < flips; k++) {
                size_t at = vt_rng_below(21, (uint64_t)f, (uint64_t)it * 64 + 1 + 2 * k, lens[f]);
                buf[at] = (uint8_t)vt_rng_below(21, (uint64_t)f, (uint64_t)it * 64 + 2 + 2 * k, 256);
            }
            size_t n = it % 3 == 0 ? lens[f] - vt_rng_below(21, 9, (uint64_t)it, lens[f]) : lens[f];
            int rc = vt_image_decode(buf, n, 20, 20, out, NULL, NULL);
            VT_CHECK(rc == 0 || rc == VT_EFORMAT || rc == VT_ETOOBIG);
            VT_CHECK(rc == 0 || vt_error_msg()[0]);
            failures += rc < 0;
            runs++;
        }
        free(buf);
    }
    printf("  fuzz: %d of %d damaged files refused\n", failures, runs);
    VT_CHECK(failures > 0);
    free(png.buf);
    free(rgba);
    tjFree(jpeg);
    free(src);
}

/* The decode pool calls the decoders from several threads at once. */
typedef struct {
    const uint8_t *jpeg, *png;
    size_t jlen, plen;
    const uint8_t *want_j, *want_p;
    int bad;
} decode_job;

static void *decode_thread(void *arg)
{
    decode_job *j = arg;
    uint8_t out[48 * 40 * 3];
    for (int i = 0; i < 40; i++) {
        int is_png = i & 1;
        int rc = vt_image_decode(is_png ? j->png : j->jpeg, is_png ? j->plen : j->jlen, 48, 40,
                                 out, NULL, NULL);
        if (rc < 0 || memcmp(out, is_png ? j->want_p : j->want_j, sizeof out) != 0)
            __atomic_add_fetch(&j->bad, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_threads(vt_backend *be)
{
    int w = 100, h = 90;
    uint8_t *src = test_image(w, h, 12);
    uint8_t want_j[48 * 40 * 3], want_p[48 * 40 * 3];
    size_t jlen;
    mem_buf png;
    decode_job job = {0};
    pthread_t t[6];

    job.jpeg = jpeg_encode(src, w, h, TJPF_RGB, TJSAMP_420, 90, &jlen);
    VT_CHECK(job.jpeg != NULL);
    VT_CHECK(png_encode(&png, w, h, PNG_COLOR_TYPE_RGB, 8, 0, src, (size_t)w * 3, NULL, 0,
                        NULL, 0) == 0);
    job.jlen = jlen;
    job.png = png.buf;
    job.plen = png.len;
    VT_CHECK_OK(vt_image_decode(job.jpeg, jlen, 48, 40, want_j, NULL, NULL));
    VT_CHECK_OK(vt_image_decode(png.buf, png.len, 48, 40, want_p, NULL, NULL));
    job.want_j = want_j;
    job.want_p = want_p;
    for (int i = 0; i < 6; i++)
        VT_CHECK(pthread_create(&t[i], NULL, decode_thread, &job) == 0);
    for (int i = 0; i < 6; i++)
        pthread_join(t[i], NULL);
    VT_CHECK_INT(job.bad, 0);
    tjFree((uint8_t *)job.jpeg);
    free(png.buf);
    free(src);
}

/* Probe and load by path; a JPEG whose frame header lies beyond the first
 * MiB (large APP segments) is still probed right. */
static void test_probe_load(vt_backend *be)
{
    int w = 37, h = 21, pw = 0, ph = 0;
    vt_image_format fmt;
    size_t jlen;
    uint8_t *src = test_image(w, h, 8), *out = malloc((size_t)w * h * 3);
    uint8_t *jpeg = jpeg_encode(src, w, h, TJPF_RGB, TJSAMP_444, 95, &jlen);
    mem_buf png;
    char dir[PATH_MAX], path[PATH_MAX + 32];

    VT_CHECK(png_encode(&png, w, h, PNG_COLOR_TYPE_RGB, 8, 0, src, (size_t)w * 3, NULL, 0,
                        NULL, 0) == 0);
    snprintf(dir, sizeof dir, "%s", vt_test_tmpdir("probe"));
    snprintf(path, sizeof path, "%s/a.png", dir);
    VT_CHECK(write_file(path, png.buf, png.len) == 0);
    snprintf(path, sizeof path, "%s/b.jpg", dir);
    VT_CHECK(write_file(path, jpeg, jlen) == 0);

    enum { NSEG = 20, SEG = 65533 };
    size_t blen = jlen + (size_t)NSEG * (SEG + 2);
    uint8_t *bigjpeg = malloc(blen), *p = bigjpeg;
    memcpy(p, jpeg, 2);
    p += 2;
    for (int i = 0; i < NSEG; i++) {
        p[0] = 0xff, p[1] = 0xef, p[2] = SEG >> 8, p[3] = SEG & 0xff;
        memset(p + 4, 'x', SEG - 2);
        p += SEG + 2;
    }
    memcpy(p, jpeg + 2, jlen - 2);
    snprintf(path, sizeof path, "%s/c.jpg", dir);
    VT_CHECK(write_file(path, bigjpeg, blen) == 0);

    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    VT_CHECK(dfd >= 0);
    VT_CHECK_OK(vt_image_probe(dfd, "a.png", &fmt, &pw, &ph));
    VT_CHECK(fmt == VT_IMG_PNG && pw == w && ph == h);
    VT_CHECK_OK(vt_image_probe(dfd, "b.jpg", &fmt, &pw, &ph));
    VT_CHECK(fmt == VT_IMG_JPEG && pw == w && ph == h);
    VT_CHECK_OK(vt_image_probe(dfd, "c.jpg", &fmt, &pw, &ph));
    VT_CHECK(fmt == VT_IMG_JPEG && pw == w && ph == h);
    VT_CHECK_OK(vt_image_load(dfd, "a.png", w, h, out));
    VT_CHECK(memcmp(out, src, (size_t)w * h * 3) == 0);
    VT_CHECK_OK(vt_image_load(dfd, "c.jpg", w, h, out));
    VT_CHECK(max_abs_diff(out, src, (size_t)w * h * 3) <= 16);
    snprintf(path, sizeof path, "%s/a.png", dir);
    VT_CHECK_OK(vt_image_load(AT_FDCWD, path, w, h, out));

    /* A symbolic link is not followed (see dataset.h). */
    VT_CHECK(symlinkat("a.png", dfd, "link.png") == 0);
    VT_CHECK_ERR(vt_image_load(dfd, "link.png", w, h, out), 0, "link.png");
    /* One that points nowhere says so rather than "not followed": predict
     * follows the links it is given, but cannot resolve this one. */
    VT_CHECK(symlinkat("gone.png", dfd, "dangling.png") == 0);
    VT_CHECK_ERR(vt_image_load(dfd, "dangling.png", w, h, out), 0,
                 "dangling.png: is a symbolic link to gone.png, which does not exist");
    close(dfd);

    free(bigjpeg);
    free(png.buf);
    tjFree(jpeg);
    free(src);
    free(out);
}

/* ---- dataset ----------------------------------------------------------- */

static void test_dataset_scan(vt_backend *be)
{
    char root[PATH_MAX], path[PATH_MAX + 64];
    vt_dataset *ds = NULL;
    snprintf(root, sizeof root, "%s", vt_test_tmpdir("scan"));

    static const char *const files[] = {
        "B/one.png",
        "a/z.JPG", "a/b.png", "a/a.jpeg", "a/Ab.jpg", "a/x.txt", "a/.hid.jpg",
        "a/sub/c.jpg", "a/sub/.h/d.jpg", "a/sub2/deep/e.PnG", "a/jpg", "a/dir.jpg/f.jpg",
        ".hidden/g.jpg", "README.jpg", "other/q.jpeg",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        VT_CHECK(touch(root, files[i]) == 0);
    snprintf(path, sizeof path, "%s/c_empty", root);
    VT_CHECK(mkdir(path, 0755) == 0);
    /* Links are skipped: a linked class directory, a linked file, a link to a
     * file outside the tree.  A FIFO is no image either. */
    snprintf(path, sizeof path, "%s/linkclass", root);
    VT_CHECK(symlink("B", path) == 0);
    snprintf(path, sizeof path, "%s/a/l.jpg", root);
    VT_CHECK(symlink("b.png", path) == 0);
    snprintf(path, sizeof path, "%s/a/out.png", root);
    VT_CHECK(symlink("/etc/passwd", path) == 0);
    snprintf(path, sizeof path, "%s/a/fifo.jpg", root);
    VT_CHECK(mkfifo(path, 0644) == 0);

    VT_CHECK_OK(vt_dataset_scan(&ds, AT_FDCWD, root));
    VT_CHECK_STR(ds->root, root);
    VT_CHECK_INT(ds->nclasses, 4);
    VT_CHECK_STR(ds->classes[0], "B"); /* byte order: 'B' < 'a' */
    VT_CHECK_STR(ds->classes[1], "a");
    VT_CHECK_STR(ds->classes[2], "c_empty");
    VT_CHECK_STR(ds->classes[3], "other");
    static const char *const want[] = {
        "B/one.png",
        "a/Ab.jpg", "a/a.jpeg", "a/b.png", "a/dir.jpg/f.jpg", "a/sub/c.jpg",
        "a/sub2/deep/e.PnG", "a/z.JPG",
        "other/q.jpeg",
    };
    static const int want_label[] = {0, 1, 1, 1, 1, 1, 1, 1, 3};
    VT_CHECK_INT(ds->n, 9);
    for (int i = 0; i < ds->n; i++) {
        VT_CHECK_STR(ds->samples[i].path, want[i]);
        VT_CHECK_INT(ds->samples[i].label, want_label[i]);
    }
    int counts[4];
    vt_dataset_class_counts(ds, counts);
    VT_CHECK(counts[0] == 1 && counts[1] == 7 && counts[2] == 0 && counts[3] == 1);
    VT_CHECK_INT(ds->links, 3); /* linkclass, a/l.jpg, a/out.png: counted, for the warning */
    VT_CHECK_INT(ds->others, 2); /* a/x.txt, a/jpg (not README.jpg, beside the classes) */
    VT_CHECK(strstr(ds->other, "/a/x.txt") || strstr(ds->other, "/a/jpg"));
    vt_dataset_free(ds);
    ds = NULL;

    /* Relative to a directory descriptor. */
    int dfd = open(root, O_RDONLY | O_DIRECTORY);
    VT_CHECK(dfd >= 0);
    VT_CHECK_OK(vt_dataset_scan(&ds, dfd, "a"));
    VT_CHECK_INT(ds->nclasses, 3); /* dir.jpg, sub, sub2 */
    VT_CHECK_STR(ds->classes[0], "dir.jpg");
    VT_CHECK_STR(ds->samples[0].path, "dir.jpg/f.jpg");
    vt_dataset_free(ds);
    ds = NULL;
    close(dfd);
    vt_dataset_free(NULL);
}

static void test_dataset_errors(vt_backend *be)
{
    char root[PATH_MAX], path[PATH_MAX + 64];
    vt_dataset sentinel, *ds = &sentinel;
    snprintf(root, sizeof root, "%s", vt_test_tmpdir("scanerr"));

    snprintf(path, sizeof path, "%s/nope", root);
    VT_CHECK_ERR(vt_dataset_scan(&ds, AT_FDCWD, path), VT_ENOTFOUND, "does not exist");
    VT_CHECK(ds == NULL);
    VT_CHECK_CONTAINS(vt_error_msg(), path);

    /* Only files (and hidden or linked directories): no classes. */
    snprintf(path, sizeof path, "%s/flat", root);
    VT_CHECK(touch(path, "a.jpg") == 0 && touch(path, ".git/x.jpg") == 0);
    snprintf(path, sizeof path, "%s/flat/link", root);
    VT_CHECK(symlink("..", path) == 0);
    snprintf(path, sizeof path, "%s/flat", root);
    VT_CHECK_ERR(vt_dataset_scan(&ds, AT_FDCWD, path), VT_EINVAL,
                 "has no class sub-directories (expected one folder per class");

    snprintf(path, sizeof path, "%s/one", root);
    VT_CHECK(touch(path, "ant/1.jpg") == 0);
    VT_CHECK_OK(vt_dataset_scan(&ds, AT_FDCWD, path)); /* training refuses it, eval not */
    VT_CHECK(ds->nclasses == 1 && ds->n == 1);
    vt_dataset_free(ds);

    snprintf(path, sizeof path, "%s/flat/a.jpg", root);
    VT_CHECK_ERR(vt_dataset_scan(&ds, AT_FDCWD, path), VT_EINVAL, "not a directory");

    /* Stopped from outside (a job cancelled while its data is read): ends
     * with VT_ECANCELLED, nothing returned; unset, the same scan works. */
    atomic_int stop = 1;
    snprintf(path, sizeof path, "%s/one", root);
    ds = &sentinel;
    VT_CHECK_ERR(vt_dataset_scan_until(&ds, AT_FDCWD, path, &stop), VT_ECANCELLED, "stopped");
    VT_CHECK(ds == NULL);
    atomic_store(&stop, 0);
    VT_CHECK_OK(vt_dataset_scan_until(&ds, AT_FDCWD, path, &stop));
    VT_CHECK(ds->n == 1);
    vt_dataset_free(ds);
}

/* A dataset of empty files with the given class sizes. */
static int make_classes(const char *root, const int *sizes, int nclasses)
{
    char rel[64];
    for (int c = 0; c < nclasses; c++) {
        snprintf(rel, sizeof rel, "c%d", c);
        char dir[PATH_MAX];
        if (snprintf(dir, sizeof dir, "%s/%s", root, rel) >= (int)sizeof dir ||
            vt_mkdir_p(dir, NULL) < 0)
            return -1;
        for (int i = 0; i < sizes[c]; i++) {
            snprintf(rel, sizeof rel, "c%d/f%03d.jpg", c, i);
            if (touch(root, rel) < 0)
                return -1;
        }
    }
    return 0;
}

/* sub's samples are an in-order subsequence of ds's; marks them in seen. */
static int is_subsequence(const vt_dataset *ds, const vt_dataset *sub, char *seen)
{
    int j = 0;
    for (int i = 0; i < ds->n && j < sub->n; i++) {
        if (strcmp(ds->samples[i].path, sub->samples[j].path) == 0) {
            if (ds->samples[i].label != sub->samples[j].label || seen[i])
                return 0;
            seen[i] = 1;
            j++;
        }
    }
    return j == sub->n;
}

static void test_dataset_split(vt_backend *be)
{
    static const int sizes[] = {40, 7, 1, 0, 2, 10};
    /* round(0.2 n), >= 1 from 2 samples, never a whole class */
    static const int want_val[] = {8, 1, 0, 0, 1, 2};
    char root[PATH_MAX];
    vt_dataset *ds = NULL, *tr = NULL, *va = NULL, *tr2 = NULL, *va2 = NULL;
    int counts[6];

    snprintf(root, sizeof root, "%s", vt_test_tmpdir("split"));
    VT_CHECK(make_classes(root, sizes, 6) == 0);
    VT_CHECK_OK(vt_dataset_scan(&ds, AT_FDCWD, root));
    VT_CHECK_INT(ds->n, 60);

    VT_CHECK_OK(vt_dataset_split(ds, 0.2, 42, &tr, &va));
    VT_CHECK(tr->nclasses == 6 && va->nclasses == 6);
    VT_CHECK_STR(va->classes[5], "c5");
    vt_dataset_class_counts(va, counts);
    for (int c = 0; c < 6; c++)
        VT_CHECK_INT(counts[c], want_val[c]);
    vt_dataset_class_counts(tr, counts);
    for (int c = 0; c < 6; c++)
        VT_CHECK_INT(counts[c], sizes[c] - want_val[c]);
    char *seen = calloc((size_t)ds->n, 1);
    VT_CHECK(is_subsequence(ds, tr, seen));
    VT_CHECK(is_subsequence(ds, va, seen));
    for (int i = 0; i < ds->n; i++)
        VT_CHECK(seen[i]); /* disjoint (checked while marking) and complete */
    free(seen);

    /* Same seed, same split; another seed, another one. */
    VT_CHECK_OK(vt_dataset_split(ds, 0.2, 42, &tr2, &va2));
    VT_CHECK_INT(va2->n, va->n);
    for (int i = 0; i < va->n; i++)
        VT_CHECK_STR(va2->samples[i].path, va->samples[i].path);
    vt_dataset_free(tr2);
    vt_dataset_free(va2);
    VT_CHECK_OK(vt_dataset_split(ds, 0.2, 43, &tr2, &va2));
    VT_CHECK_INT(va2->n, va->n);
    int differ = 0;
    for (int i = 0; i < va->n; i++)
        differ |= strcmp(va2->samples[i].path, va->samples[i].path) != 0;
    VT_CHECK(differ);
    vt_dataset_free(tr2);
    vt_dataset_free(va2);

    /* The shuffle, not the file order, picks: class c0's 8 are not the
     * first 8. */
    VT_CHECK(strcmp(va->samples[7].path, "c0/f007.jpg") != 0 ||
             strcmp(va->samples[0].path, "c0/f000.jpg") != 0);

    /* No validation; bad fractions; a fraction that rounds to a whole class. */
    VT_CHECK_OK(vt_dataset_split(ds, 0.0, 1, &tr2, &va2));
    VT_CHECK(tr2->n == ds->n && va2->n == 0);
    vt_dataset_free(tr2);
    vt_dataset_free(va2);
    VT_CHECK_ERR(vt_dataset_split(ds, 1.0, 1, &tr2, &va2), VT_EINVAL, "fraction");
    VT_CHECK_ERR(vt_dataset_split(ds, -0.1, 1, &tr2, &va2), VT_EINVAL, NULL);
    VT_CHECK(tr2 == NULL && va2 == NULL);
    VT_CHECK_OK(vt_dataset_split(ds, 0.9, 1, &tr2, &va2));
    vt_dataset_class_counts(tr2, counts);
    VT_CHECK(counts[0] == 4 && counts[1] == 1 && counts[2] == 1 && counts[4] == 1);
    vt_dataset_free(tr2);
    vt_dataset_free(va2);

    /* Splitting a subset that is not in class order still splits per class. */
    int idx[] = {59, 0, 58, 1, 57, 2, 56, 3};
    vt_dataset *sub = NULL;
    VT_CHECK_OK(vt_dataset_subset(ds, idx, 8, &sub));
    VT_CHECK_OK(vt_dataset_split(sub, 0.5, 3, &tr2, &va2));
    vt_dataset_class_counts(va2, counts);
    VT_CHECK(counts[0] == 2 && counts[5] == 2 && va2->n == 4);
    vt_dataset_free(tr2);
    vt_dataset_free(va2);
    vt_dataset_free(sub);

    vt_dataset_free(tr);
    vt_dataset_free(va);
    vt_dataset_free(ds);
}

static void test_dataset_subset(vt_backend *be)
{
    static const int sizes[] = {3, 2};
    char root[PATH_MAX];
    vt_dataset *ds = NULL, *sub = NULL;
    snprintf(root, sizeof root, "%s", vt_test_tmpdir("subset"));
    VT_CHECK(make_classes(root, sizes, 2) == 0);
    VT_CHECK_OK(vt_dataset_scan(&ds, AT_FDCWD, root));

    int idx[] = {4, 0, 0};
    VT_CHECK_OK(vt_dataset_subset(ds, idx, 3, &sub));
    vt_dataset_free(ds); /* a deep copy outlives its source */
    VT_CHECK_INT(sub->n, 3);
    VT_CHECK_INT(sub->nclasses, 2);
    VT_CHECK_STR(sub->classes[1], "c1");
    VT_CHECK_STR(sub->root, root);
    VT_CHECK_STR(sub->samples[0].path, "c1/f001.jpg");
    VT_CHECK_INT(sub->samples[0].label, 1);
    VT_CHECK_STR(sub->samples[2].path, "c0/f000.jpg");
    vt_dataset *none = NULL;
    int bad[] = {5};
    VT_CHECK_ERR(vt_dataset_subset(sub, bad, 1, &none), VT_EINVAL, "out of range");
    VT_CHECK_OK(vt_dataset_subset(sub, NULL, 0, &none));
    VT_CHECK_INT(none->n, 0);
    vt_dataset_free(none);
    vt_dataset_free(sub);
}

/* ---- vt-gendata -------------------------------------------------------- */

static int run_gendata(const char *const *args)
{
    const char *argv[24] = {VT_GENDATA};
    int n = 1;
    for (; args[n - 1] && n < 23; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, STDOUT_FILENO);
        execv(VT_GENDATA, (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int files_equal(const char *a, const char *b)
{
    uint8_t *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    int eq = vt_read_file(a, 1 << 24, &x, &nx) == 0 && vt_read_file(b, 1 << 24, &y, &ny) == 0 &&
             nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return eq;
}

/* Checks a generated split: classes, counts, same files as in other (a run
 * with the same seed), every file decodes. *differs counts files that
 * differ from those of third (another seed). */
static int check_generated(const char *dir, const char *other, const char *third, int nclasses,
                           int per_class, int *njpg, int *npng, int *differs)
{
    vt_dataset *ds = NULL, *ds2 = NULL;
    char a[PATH_MAX * 2], b[PATH_MAX * 2];
    uint8_t out[24 * 24 * 3];
    int ok = 0;

    if (vt_dataset_scan(&ds, AT_FDCWD, dir) < 0 || vt_dataset_scan(&ds2, AT_FDCWD, other) < 0) {
        fprintf(stderr, "  %s: %s\n", dir, vt_error_msg());
        goto cleanup;
    }
    if (ds->nclasses != nclasses || ds->n != nclasses * per_class || ds2->n != ds->n) {
        fprintf(stderr, "  %s: %d classes, %d files\n", dir, ds->nclasses, ds->n);
        goto cleanup;
    }
    for (int i = 0; i < ds->n; i++) {
        const char *p = ds->samples[i].path;
        if (ds->samples[i].label != i / per_class || strcmp(p, ds2->samples[i].path) != 0) {
            fprintf(stderr, "  %s: unexpected %s\n", dir, p);
            goto cleanup;
        }
        snprintf(a, sizeof a, "%s/%s", dir, p);
        snprintf(b, sizeof b, "%s/%s", other, p);
        if (!files_equal(a, b)) {
            fprintf(stderr, "  %s differs between runs with the same seed\n", p);
            goto cleanup;
        }
        snprintf(b, sizeof b, "%s/%s", third, p);
        *differs += !files_equal(a, b);
        if (vt_image_load(AT_FDCWD, a, 24, 24, out) < 0) {
            fprintf(stderr, "  %s\n", vt_error_msg());
            goto cleanup;
        }
        *njpg += strstr(p, ".jpg") != NULL;
        *npng += strstr(p, ".png") != NULL;
    }
    ok = 1;
cleanup:
    vt_dataset_free(ds);
    vt_dataset_free(ds2);
    return ok;
}

static void test_gendata(vt_backend *be)
{
    char base[PATH_MAX], d1[PATH_MAX + 8], d2[PATH_MAX + 8], d3[PATH_MAX + 8], d4[PATH_MAX + 8];
    char p1[PATH_MAX * 2], p2[PATH_MAX * 2], p3[PATH_MAX * 2];
    int njpg = 0, npng = 0, differs = 0;

    snprintf(base, sizeof base, "%s", vt_test_tmpdir("gendata"));
    snprintf(d1, sizeof d1, "%s/one", base);
    snprintf(d2, sizeof d2, "%s/two", base);
    snprintf(d3, sizeof d3, "%s/three", base);
    const char *a1[] = {"--out", d1, "--classes", "3", "--per-class", "5", "--val-per-class",
                        "2", "--size", "40x32", "--size-jitter", "20", "--seed", "7",
                        "--format", "mixed", NULL};
    const char *a2[] = {"--out", d2, "--classes", "3", "--per-class", "5", "--val-per-class",
                        "2", "--size", "40x32", "--size-jitter", "20", "--seed", "7",
                        "--format", "mixed", NULL};
    const char *a3[] = {"--out", d3, "--classes", "3", "--per-class", "5", "--val-per-class",
                        "2", "--size", "40x32", "--size-jitter", "20", "--seed", "8",
                        "--format", "mixed", NULL};
    VT_CHECK_INT(run_gendata(a1), 0);
    VT_CHECK_INT(run_gendata(a2), 0);
    VT_CHECK_INT(run_gendata(a3), 0);
    snprintf(p1, sizeof p1, "%s/train", d1);
    snprintf(p2, sizeof p2, "%s/train", d2);
    snprintf(p3, sizeof p3, "%s/train", d3);
    VT_CHECK(check_generated(p1, p2, p3, 3, 5, &njpg, &npng, &differs));
    snprintf(p1, sizeof p1, "%s/val", d1);
    snprintf(p2, sizeof p2, "%s/val", d2);
    snprintf(p3, sizeof p3, "%s/val", d3);
    VT_CHECK(check_generated(p1, p2, p3, 3, 2, &njpg, &npng, &differs));
    VT_CHECK(njpg > 0 && npng > 0);
    VT_CHECK_INT(differs, 21); /* every image depends on the seed */
    snprintf(p1, sizeof p1, "%s/train/circles/img00000.jpg", d1);
    snprintf(p2, sizeof p2, "%s/train/circles/img00000.png", d1);
    VT_CHECK(access(p1, F_OK) == 0 || access(p2, F_OK) == 0);

    /* Sizes vary within the jitter. */
    vt_dataset *ds = NULL;
    snprintf(p1, sizeof p1, "%s/train", d1);
    VT_CHECK_OK(vt_dataset_scan(&ds, AT_FDCWD, p1));
    int dfd = open(p1, O_RDONLY | O_DIRECTORY), sizes_vary = 0;
    for (int i = 0; i < ds->n; i++) {
        vt_image_format fmt;
        int w, h;
        VT_CHECK_OK(vt_image_probe(dfd, ds->samples[i].path, &fmt, &w, &h));
        VT_CHECK(w >= 32 && w <= 48 && h >= 25 && h <= 39);
        sizes_vary |= w != 40 || h != 32;
    }
    close(dfd);
    vt_dataset_free(ds);
    VT_CHECK(sizes_vary);

    /* Plain layout, numbered classes, PNG only, default size. */
    snprintf(d4, sizeof d4, "%s/flat", base);
    const char *a4[] = {"--out", d4, "--classes", "10", "--per-class", "2", "--format", "png",
                        NULL};
    VT_CHECK_INT(run_gendata(a4), 0);
    VT_CHECK_OK(vt_dataset_scan(&ds, AT_FDCWD, d4));
    VT_CHECK_INT(ds->nclasses, 10);
    VT_CHECK_STR(ds->classes[0], "class0");
    VT_CHECK_STR(ds->classes[9], "class9");
    VT_CHECK_STR(ds->samples[19].path, "class9/img00001.png");
    dfd = open(d4, O_RDONLY | O_DIRECTORY);
    for (int i = 0; i < ds->n; i++) {
        vt_image_format fmt;
        int w, h;
        VT_CHECK_OK(vt_image_probe(dfd, ds->samples[i].path, &fmt, &w, &h));
        VT_CHECK(fmt == VT_IMG_PNG && w == 48 && h == 48);
    }
    close(dfd);
    vt_dataset_free(ds);

    /* Usage. */
    const char *help[] = {"--help", NULL};
    const char *bad1[] = {"--out", d3, "--classes", "0", "--per-class", "2", NULL};
    const char *bad2[] = {"--out", d3, "--classes", "2", "--per-class", "2", "--format", "gif",
                          NULL};
    const char *bad3[] = {"--classes", "2", "--per-class", "2", NULL};
    const char *bad4[] = {"--out", d3, "--classes", "2", "--per-class", "2", "--size", "4x4",
                          NULL};
    VT_CHECK_INT(run_gendata(help), 0);
    VT_CHECK_INT(run_gendata(bad1), 2);
    VT_CHECK_INT(run_gendata(bad2), 2);
    VT_CHECK_INT(run_gendata(bad3), 2);
    VT_CHECK_INT(run_gendata(bad4), 2);
}

/* An image that cannot be opened for want of file descriptors (or memory)
 * is not the image's fault: the loader fails the pass with that error
 * instead of skipping the image as unreadable, which let a job train on
 * whatever happened to load. */
static void test_loader_out_of_fds(vt_backend *be)
{
    char base[PATH_MAX], data[PATH_MAX + 8];
    const char *args[] = {"--out", data, "--classes", "2", "--per-class", "4", "--size",
                          "40x40", "--seed", "3", NULL};
    vt_dataset *ds = NULL;
    vt_pool *pool = NULL;
    vt_loader *l = NULL;
    vt_batch *b;
    vt_loader_opts o = {.image_size = 32, .max_batch = 4};
    int order[8], rc, lowest;
    struct rlimit was, none;
    (void)be;

    snprintf(base, sizeof base, "%s", vt_test_tmpdir("loader_fds"));
    snprintf(data, sizeof data, "%s/data", base);
    VT_CHECK_INT(run_gendata(args), 0);
    VT_CHECK_OK(vt_dataset_scan(&ds, AT_FDCWD, data));
    VT_CHECK_INT(ds->n, 8);
    for (int i = 0; i < 8; i++)
        order[i] = i;
    rc = vt_pool_create(&pool, 2);
    if (rc == 0)
        rc = vt_loader_create(&l, pool, ds, &o);
    /* A limit at the lowest free descriptor: no file can be opened. */
    lowest = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (rc == 0 && lowest >= 0 && getrlimit(RLIMIT_NOFILE, &was) == 0) {
        close(lowest);
        none = was;
        none.rlim_cur = (rlim_t)lowest;
        if (setrlimit(RLIMIT_NOFILE, &none) == 0) {
            rc = vt_loader_begin(l, order, 8, NULL);
            if (rc == 0)
                rc = vt_loader_next(l, &b);
            setrlimit(RLIMIT_NOFILE, &was);
        } else {
            rc = 1;
        }
    } else if (rc == 0) {
        rc = 1;
    }
    vt_loader_free(l);
    vt_pool_free(pool);
    vt_dataset_free(ds);
    VT_CHECK_INT(rc, VT_EBUSY);
    VT_CHECK_CONTAINS(vt_error_msg(), "Too many open files");
}

/* A dataset of named files (a prediction's): absolute paths and paths
 * relative to the working directory, in the given order, decoded by the
 * loader as vt_image_load decodes them; an unreadable one is named in its
 * failure. */
static void test_dataset_of_files(vt_backend *be)
{
    char base[PATH_MAX], data[PATH_MAX + 8], abs0[PATH_MAX + 32], cwd[PATH_MAX];
    char here[PATH_MAX], rel1[2 * PATH_MAX];
    const char *args[] = {"--out", data, "--classes", "2", "--per-class", "2", "--size",
                          "40x40", "--seed", "5", NULL};
    vt_dataset *ds = NULL, *scan = NULL;
    vt_pool *pool = NULL;
    vt_loader *l = NULL;
    vt_batch *b;
    vt_loader_opts o = {.image_size = 32, .max_batch = 4};
    int order[] = {0, 1, 2};
    uint8_t want[2][32 * 32 * 3];
    (void)be;

    snprintf(base, sizeof base, "%s", vt_test_tmpdir("of_files"));
    snprintf(data, sizeof data, "%s/data", base);
    VT_CHECK_INT(run_gendata(args), 0);
    VT_CHECK_OK(vt_dataset_scan(&scan, AT_FDCWD, data));
    snprintf(abs0, sizeof abs0, "%s/%s", data, scan->samples[0].path);
    VT_CHECK(getcwd(cwd, sizeof cwd) != NULL);
    VT_CHECK(chdir(data) == 0 && getcwd(here, sizeof here) != NULL);
    snprintf(rel1, sizeof rel1, "%s/%s", here + 1, scan->samples[3].path);
    const char *paths[] = {abs0, scan->samples[3].path, "/nonexistent/x.jpg"};
    VT_CHECK_OK(vt_dataset_of_files(&ds, paths, 3));
    VT_CHECK(chdir(cwd) == 0); /* the relative path was resolved when made */
    VT_CHECK_INT(ds->n, 3);
    VT_CHECK_INT(ds->nclasses, 1);
    VT_CHECK_STR(ds->root, "");
    VT_CHECK_STR(ds->samples[0].path, abs0 + 1);
    VT_CHECK_STR(ds->samples[1].path, rel1);
    VT_CHECK_STR(ds->samples[2].path, "nonexistent/x.jpg");
    VT_CHECK_OK(vt_image_load(AT_FDCWD, abs0, 32, 32, want[0]));
    snprintf(abs0, sizeof abs0, "%s/%s", data, scan->samples[3].path);
    VT_CHECK_OK(vt_image_load(AT_FDCWD, abs0, 32, 32, want[1]));
    VT_CHECK_OK(vt_pool_create(&pool, 2));
    VT_CHECK_OK(vt_loader_create(&l, pool, ds, &o));
    VT_CHECK_OK(vt_loader_begin(l, order, 3, NULL));
    VT_CHECK_INT(vt_loader_next(l, &b), 1);
    VT_CHECK_INT(b->n, 2);
    VT_CHECK(b->sample[0] == 0 && b->sample[1] == 1);
    VT_CHECK(memcmp(b->pixels, want, sizeof want) == 0);
    VT_CHECK_INT(vt_loader_next(l, &b), 0);
    VT_CHECK(vt_loader_failure(l, 2) != NULL);
    VT_CHECK_CONTAINS(vt_loader_failure(l, 2), "/nonexistent/x.jpg");
    vt_loader_free(l);
    vt_pool_free(pool);
    vt_dataset_free(ds);
    vt_dataset_free(scan);
}

/* Copies file from to to (a test's fixture). */
static int copy_file(const char *from, const char *to)
{
    char buf[65536];
    size_t n;
    int ok = 1;
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
    while (in && out && (n = fread(buf, 1, sizeof buf, in)) > 0)
        ok &= fwrite(buf, 1, n, out) == n;
    ok &= in && out;
    if (out && fclose(out) != 0)
        ok = 0;
    if (in)
        fclose(in);
    return ok ? 0 : -1;
}

static int wait_for_file(const char *path, double seconds)
{
    for (int i = 0; i < (int)(seconds * 100) && access(path, F_OK) < 0; i++)
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    return access(path, F_OK) == 0;
}

static atomic_int decoded_calls;
static void count_decoded(void *ud)
{
    (void)ud;
    atomic_fetch_add(&decoded_calls, 1);
}

/* The files of the two loader tests below, under vt_test_tmpdir(tag): a
 * generated one-image dataset (scan), a copy of that image named name plus
 * its extension (held), and a folder for VT_TEST_READ_HOLD (set to it)
 * where hold would hold the copy's reads and mark says one waits. */
typedef struct {
    char base[PATH_MAX], data[PATH_MAX + 8], holds[PATH_MAX + 8], good[PATH_MAX + 64];
    char held[PATH_MAX + 64], hold[2 * PATH_MAX], mark[2 * PATH_MAX + 8];
    vt_dataset *scan;
} held_files;

static void make_held_files(held_files *f, const char *tag, const char *name)
{
    const char *args[] = {"--out", f->data, "--classes", "1", "--per-class", "1", "--size",
                          "40x40", "--seed", "7", NULL};
    const char *ext;
    snprintf(f->base, sizeof f->base, "%s", vt_test_tmpdir(tag));
    snprintf(f->data, sizeof f->data, "%s/data", f->base);
    snprintf(f->holds, sizeof f->holds, "%s/holds", f->base);
    VT_CHECK_INT(run_gendata(args), 0);
    VT_CHECK_OK(vt_dataset_scan(&f->scan, AT_FDCWD, f->data));
    VT_CHECK(mkdir(f->holds, 0755) == 0);
    snprintf(f->good, sizeof f->good, "%s/%s", f->data, f->scan->samples[0].path);
    ext = strrchr(f->good, '.');
    snprintf(f->held, sizeof f->held, "%s/%s%s", f->base, name, ext ? ext : "");
    VT_CHECK(copy_file(f->good, f->held) == 0);
    snprintf(f->hold, sizeof f->hold, "%s/%s%s", f->holds, name, ext ? ext : "");
    snprintf(f->mark, sizeof f->mark, "%s.held", f->hold);
    setenv("VT_TEST_READ_HOLD", f->holds, 1);
}

/* vt_loader_ready is about the batch vt_loader_next would return: a batch
 * none of whose images could be read is skipped, so that a batch behind it
 * whose read is stuck (on a dead mount every read fails or hangs) answers
 * 0 instead of 1, which had the caller wait in next for the stuck read.
 * The skipped images still count in the batch's consumed. */
static void test_loader_ready_skips(vt_backend *be)
{
    held_files f;
    vt_dataset *ds = NULL;
    vt_pool *pool = NULL;
    vt_loader *l = NULL;
    vt_batch *b;
    vt_loader_opts o = {.image_size = 32, .max_batch = 2, .decoded = count_decoded};
    int order[] = {0, 1, 2, 3};
    (void)be;

    make_held_files(&f, "loader_ready", "stuck-read");
    const char *paths[] = {"/nonexistent/a.jpg", "/nonexistent/b.jpg", f.held, f.good};
    VT_CHECK_OK(vt_dataset_of_files(&ds, paths, 4));
    VT_CHECK(copy_file("/dev/null", f.hold) == 0);

    VT_CHECK_OK(vt_pool_create(&pool, 2));
    VT_CHECK_OK(vt_loader_create(&l, pool, ds, &o));
    VT_CHECK_OK(vt_loader_begin(l, order, 4, NULL));
    VT_CHECK_OK(vt_loader_prefetch(l));
    VT_CHECK(wait_for_file(f.mark, 30));
    for (int i = 0; i < 3000 && (!vt_loader_failure(l, 0) || !vt_loader_failure(l, 1)); i++)
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    VT_CHECK(vt_loader_failure(l, 0) && vt_loader_failure(l, 1));
    VT_CHECK(atomic_load(&decoded_calls) >= 1); /* the first batch is done */
    /* the first batch is over (nothing read), the second held */
    VT_CHECK_INT(vt_loader_ready(l), 0);
    VT_CHECK_INT(vt_loader_ready(l), 0);
    unlink(f.hold);
    for (int i = 0; i < 3000 && !vt_loader_ready(l); i++)
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    VT_CHECK_INT(vt_loader_ready(l), 1);
    VT_CHECK_INT(atomic_load(&decoded_calls), 2);
    VT_CHECK_INT(vt_loader_next(l, &b), 1);
    VT_CHECK_INT(b->n, 2);
    VT_CHECK_INT(b->consumed, 4);
    VT_CHECK(b->sample[0] == 2 && b->sample[1] == 3);
    VT_CHECK_INT(vt_loader_ready(l), 1);
    VT_CHECK_INT(vt_loader_next(l, &b), 0);
    vt_loader_free(l);
    vt_pool_free(pool);
    unsetenv("VT_TEST_READ_HOLD");
    unlink(f.mark);
    vt_dataset_free(ds);
    vt_dataset_free(f.scan);
}

static atomic_int release_now;
static void *release_later(void *arg)
{
    for (int i = 0; i < 800 && !atomic_load(&release_now); i++) /* 8 s at most */
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    unlink(arg);
    return NULL;
}

/* vt_loader_free does not wait for a read stuck on a dead mount (the
 * daemon's device thread frees the loader of a job or request cancelled
 * for that reason): it lets the loader go, and neither the callback nor the
 * dataset is used after it returns; vt_loader_reap frees it once the
 * decodes are over. */
static void test_loader_free_stuck(vt_backend *be)
{
    held_files f;
    vt_dataset *ds = NULL;
    vt_pool *pool = NULL;
    vt_loader *l = NULL;
    vt_loader_opts o = {.image_size = 32, .max_batch = 1, .decoded = count_decoded};
    int order[] = {0, 1, 2};
    struct timespec t0, t1;
    pthread_t releaser;
    (void)be;

    make_held_files(&f, "loader_free_stuck", "stuck-free");
    const char *paths[] = {f.held, f.good, f.good};
    VT_CHECK_OK(vt_dataset_of_files(&ds, paths, 3));
    VT_CHECK(copy_file("/dev/null", f.hold) == 0);
    atomic_store(&decoded_calls, 0);
    atomic_store(&release_now, 0);

    VT_CHECK_OK(vt_pool_create(&pool, 1)); /* the held read holds its one thread */
    VT_CHECK_OK(vt_loader_create(&l, pool, ds, &o));
    VT_CHECK_OK(vt_loader_begin(l, order, 3, NULL));
    VT_CHECK_OK(vt_loader_prefetch(l));
    VT_CHECK(wait_for_file(f.mark, 30));
    VT_CHECK(pthread_create(&releaser, NULL, release_later, f.hold) == 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    vt_loader_free(l);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double waited = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    VT_CHECK(waited < 4); /* (it waited for the read to be let go: 8 s) */
    int calls = atomic_load(&decoded_calls);
    vt_dataset_free(ds); /* (not read after the free: ASan tells) */
    atomic_store(&release_now, 1);
    pthread_join(releaser, NULL);
    vt_pool_free(pool); /* the held read ends, the two queued decodes are dropped */
    VT_CHECK_INT(atomic_load(&decoded_calls), calls);
    VT_CHECK_INT(calls, 0);
    vt_loader_reap(NULL, 1);
    unsetenv("VT_TEST_READ_HOLD");
    unlink(f.mark);
    vt_dataset_free(f.scan);
}

static const vt_test_case cases[] = {
    {"png_roundtrip", test_png_roundtrip, 0},
    {"jpeg_decode", test_jpeg_decode, 0},
    {"jpeg_cmyk", test_jpeg_cmyk, 0},
    {"jpeg_dct_scale", test_jpeg_dct_scale, 0},
    {"jpeg_extraneous_bytes", test_jpeg_extraneous_bytes, 0},
    {"resize_identity", test_resize_identity, 0},
    {"resize_known", test_resize_known, 0},
    {"resize_matches_formula", test_resize_matches_formula, 0},
    {"flip", test_flip, 0},
    {"bad_input", test_bad_input, 0},
    {"fuzz", test_fuzz, 0},
    {"threads", test_threads, 0},
    {"probe_load", test_probe_load, 0},
    {"dataset_scan", test_dataset_scan, 0},
    {"dataset_errors", test_dataset_errors, 0},
    {"dataset_split", test_dataset_split, 0},
    {"dataset_subset", test_dataset_subset, 0},
    {"gendata", test_gendata, 0},
    {"loader_out_of_fds", test_loader_out_of_fds, 0},
    {"dataset_of_files", test_dataset_of_files, 0},
    {"loader_ready_skips", test_loader_ready_skips, 0},
    {"loader_free_stuck", test_loader_free_stuck, 0},
};

int main(int argc, char **argv)
{
    VT_TEST_MAIN(cases);
}

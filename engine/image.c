/* image.c - JPEG/PNG decoding and bilinear resizing (see image.h).
 *
 * The decode pool calls these functions from several threads at once, so
 * nothing here is shared: each call creates its own libjpeg decompressor or
 * libpng structures and frees them before returning.  Both decoders learn
 * the image size from the header first and refuse anything over
 * VT_IMAGE_MAX_PIXELS before allocating pixel memory, so a small file that
 * claims to be huge (a decompression bomb) costs nothing.
 *
 * JPEG: libjpeg-turbo warnings (a truncated stream, a corrupt Huffman code)
 * would still produce an image, partly grey; we treat them as errors so a
 * damaged file is skipped and counted rather than trained on.  The one
 * exception is "extraneous bytes before marker", which is harmless.  Hence
 * libjpeg's own API rather than TurboJPEG's, whose stop-on-warning is all or
 * nothing (and which, decoding on past a warning, reports only the first).
 */
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
/* (jpeglib.h needs stdio.h first; jerror.h needs jpeglib.h) */
#include <jpeglib.h>
#include <jerror.h>

#include "common/bilinear.h"
#include "common/error.h"

/* How much of a file vt_image_probe() reads first; a JPEG whose frame header
 * lies further in (huge EXIF or ICC segments) is read whole. */
#define VT_IMAGE__PROBE_BYTES ((size_t)1 << 20)

vt_image_format vt_image_sniff(const uint8_t *head, size_t n)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 3 && head[0] == 0xff && head[1] == 0xd8 && head[2] == 0xff)
        return VT_IMG_JPEG;
    if (n >= 8 && memcmp(head, png_sig, 8) == 0)
        return VT_IMG_PNG;
    return VT_IMG_UNKNOWN;
}

static int vt_image__check_size(int w, int h)
{
    if (w <= 0 || h <= 0)
        return vt_error_set(VT_EFORMAT, "image has no pixels (%dx%d)", w, h);
    if ((uint64_t)w * (uint64_t)h > VT_IMAGE_MAX_PIXELS)
        return vt_error_set(VT_ETOOBIG, "image is %dx%d, more than the %u-pixel limit",
                            w, h, VT_IMAGE_MAX_PIXELS);
    return 0;
}

/* ---- resizing ---------------------------------------------------------- */

/* Horizontal pass of one source row: for each output column x, the blend
 * c * p0 + d * p1 of its two taps, per channel.  Kept as floats so that the
 * vertical blend below does exactly the arithmetic of the 2x2 formula. */
static void vt_image__hrow(const uint8_t *row, const int *x0, const int *x1, const float *wd,
                           int dw, float *h)
{
    for (int x = 0; x < dw; x++) {
        const uint8_t *p0 = row + x0[x], *p1 = row + x1[x];
        float d = wd[x], c = 1.0f - d;
        h[3 * x] = c * p0[0] + d * p1[0];
        h[3 * x + 1] = c * p0[1] + d * p1[1];
        h[3 * x + 2] = c * p0[2] + d * p1[2];
    }
}

int vt_image_resize(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh)
{
    float sx = (float)sw / (float)dw, sy = (float)sh / (float)dh;

    if (sw == dw && sh == dh) {
        memcpy(dst, src, (size_t)sw * (size_t)sh * 3);
        return 0;
    }
    /* Scratch: x0, x1 (dw) byte offsets of the taps; wd (dw) the second
     * tap's weight; rows[2] (dw, 3) horizontal blends of two source rows. */
    size_t n = (size_t)dw;
    void *mem = malloc(n * (2 * sizeof(int) + sizeof(float) + 6 * sizeof(float)));
    if (!mem)
        return vt_error_set(VT_ENOMEM, "out of memory resizing to %dx%d", dw, dh);
    int *x0 = mem, *x1 = x0 + n;
    float *wd = (float *)(x1 + n), *rows[2] = {wd + n, wd + 4 * n};
    int have[2] = {-1, -1}; /* source row whose blend rows[k] holds */

    for (int x = 0; x < dw; x++) {
        wd[x] = vt_bilinear_tap(x, sw, sx, &x0[x], &x1[x]);
        x0[x] *= 3;
        x1[x] *= 3;
    }
    for (int y = 0; y < dh; y++) {
        int y0, y1;
        float b = vt_bilinear_tap(y, sh, sy, &y0, &y1), a = 1.0f - b;
        /* Going down, a row's blend is reused while it stays a tap. */
        if (have[0] != y0 && have[1] == y0) {
            float *t = rows[0];
            rows[0] = rows[1];
            rows[1] = t;
            have[0] = y0;
            have[1] = -1;
        }
        if (have[0] != y0) {
            vt_image__hrow(src + (size_t)y0 * (size_t)sw * 3, x0, x1, wd, dw, rows[0]);
            have[0] = y0;
        }
        if (have[1] != y1) {
            vt_image__hrow(src + (size_t)y1 * (size_t)sw * 3, x0, x1, wd, dw, rows[1]);
            have[1] = y1;
        }
        const float *h0 = rows[0], *h1 = rows[1];
        uint8_t *o = dst + (size_t)y * (size_t)dw * 3;
        for (size_t i = 0; i < 3 * n; i++)
            o[i] = vt_bilinear_out(a, h0[i], b, h1[i]);
    }
    free(mem);
    return 0;
}

void vt_image_flip(uint8_t *img, int w, int h)
{
    for (int y = 0; y < h; y++) {
        uint8_t *row = img + (size_t)y * (size_t)w * 3;
        for (int l = 0, r = w - 1; l < r; l++, r--) {
            for (int ch = 0; ch < 3; ch++) {
                uint8_t t = row[3 * l + ch];
                row[3 * l + ch] = row[3 * r + ch];
                row[3 * r + ch] = t;
            }
        }
    }
}

/* Where a decode puts its pixels: out resized to w x h, unless keep > 0 and
 * the decoded image (after DCT scaling) has at most keep pixels: then out
 * holds it as decoded.  got_w x got_h is what out holds. */
typedef struct {
    int w, h;
    size_t keep;
    uint8_t *out;
    int got_w, got_h;
} vt_image__dst;

/* The decoded sw x sh image at pix, which is d->out when it is kept or
 * already the target size, into d (resizing if needed). */
static int vt_image__finish(vt_image__dst *d, const uint8_t *pix, int sw, int sh)
{
    if (pix == d->out) {
        d->got_w = sw;
        d->got_h = sh;
        return 0;
    }
    d->got_w = d->w;
    d->got_h = d->h;
    return vt_image_resize(pix, sw, sh, d->out, d->w, d->h);
}

/* Whether a decoded sw x sh image goes straight into d->out. */
static int vt_image__in_place(const vt_image__dst *d, int sw, int sh)
{
    return (sw == d->w && sh == d->h) || (d->keep && (size_t)sw * (size_t)sh <= d->keep);
}

/* ---- JPEG -------------------------------------------------------------- */

/* libjpeg's error manager, one per decode: an error or a warning that
 * matters longjmps to jump with its text in msg. */
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int warning; /* what stopped the decode was a warning: damaged data */
    char msg[JMSG_LENGTH_MAX];
} vt_image__jpeg_err;

static void vt_image__jpeg_error_exit(j_common_ptr cinfo)
{
    vt_image__jpeg_err *err = (vt_image__jpeg_err *)cinfo->err;
    cinfo->err->format_message(cinfo, err->msg);
    longjmp(err->jump, 1);
}

/* A warning (msg_level < 0) means damaged data that libjpeg would decode on,
 * partly grey: stop there.  Except "extraneous bytes before marker": stray
 * bytes after a complete segment, which many cameras and editors write
 * (before EOI mostly) and which are skipped without losing any image data;
 * PIL decodes such files too.
 * Trace messages (msg_level >= 0) are ignored. */
static void vt_image__jpeg_emit(j_common_ptr cinfo, int msg_level)
{
    vt_image__jpeg_err *err = (vt_image__jpeg_err *)cinfo->err;
    if (msg_level >= 0 || cinfo->err->msg_code == JWRN_EXTRANEOUS_DATA)
        return;
    err->warning = 1;
    cinfo->err->format_message(cinfo, err->msg);
    longjmp(err->jump, 1);
}

/* Sets the smallest DCT scaling factor n/8 (at most 1: scaling up would only
 * be slower and add nothing the bilinear resize does not) whose output is at
 * least out_w x out_h, 1/1 when the image is smaller than the target, and
 * computes cinfo's output size for it.  After jpeg_read_header(). */
static void vt_image__jpeg_scale(j_decompress_ptr cinfo, int out_w, int out_h)
{
    cinfo->scale_denom = 8;
    for (cinfo->scale_num = 1;; cinfo->scale_num++) {
        jpeg_calc_output_dimensions(cinfo);
        if (cinfo->scale_num == 8 ||
            ((int)cinfo->output_width >= out_w && (int)cinfo->output_height >= out_h))
            return;
    }
}

/* Adobe CMYK as libjpeg hands it over (inverted) to RGB, the same formula
 * libjpeg-turbo's own tools use. */
static void vt_image__cmyk_to_rgb(const uint8_t *cmyk, uint8_t *rgb, size_t npix)
{
    for (size_t i = 0; i < npix; i++) {
        unsigned k = cmyk[4 * i + 3];
        for (int ch = 0; ch < 3; ch++)
            rgb[3 * i + ch] = (uint8_t)((cmyk[4 * i + ch] * k + 127) / 255);
    }
}

/* Decodes into d->out when the DCT-scaled size matches (or the image is
 * kept), else into a buffer then resizes.  With d == NULL only the header is
 * read (for vt_image_probe()), under the same rules for warnings. */
static int vt_image__jpeg_decode(const uint8_t *buf, size_t len, vt_image__dst *d,
                                 int *src_w, int *src_h)
{
    struct jpeg_decompress_struct cinfo;
    vt_image__jpeg_err err = {.warning = 0};
    /* Assigned after setjmp and needed after a longjmp: volatile. */
    uint8_t *volatile pix = NULL, *volatile cmyk = NULL;
    JSAMPROW *volatile rows = NULL;
    volatile int rc = 0, in_header = 1;

    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = vt_image__jpeg_error_exit;
    err.pub.emit_message = vt_image__jpeg_emit;
    if (setjmp(err.jump)) {
        if (in_header)
            rc = vt_error_set(VT_EFORMAT, "bad JPEG header: %s", err.msg);
        else
            rc = vt_error_set(VT_EFORMAT, "corrupt JPEG%s: %s",
                              err.warning ? " (damaged data)" : "", err.msg);
        goto cleanup;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, buf, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    int w = (int)cinfo.image_width, h = (int)cinfo.image_height;
    if ((rc = vt_image__check_size(w, h)) < 0)
        goto cleanup;
    if (src_w)
        *src_w = w;
    if (src_h)
        *src_h = h;
    if (!d)
        goto cleanup;
    in_header = 0;

    int cmyk_in = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk_in ? JCS_CMYK : JCS_EXT_RGB;
    vt_image__jpeg_scale(&cinfo, d->w, d->h);
    int sw = (int)cinfo.output_width, sh = (int)cinfo.output_height;
    size_t npix = (size_t)sw * (size_t)sh;
    pix = vt_image__in_place(d, sw, sh) ? d->out : malloc(npix * 3);
    rows = malloc((size_t)sh * sizeof *rows);
    if (!pix || !rows || (cmyk_in && !(cmyk = malloc(npix * 4)))) {
        rc = vt_error_set(VT_ENOMEM, "out of memory decoding a %dx%d JPEG", w, h);
        goto cleanup;
    }
    for (int y = 0; y < sh; y++)
        rows[y] = (cmyk_in ? cmyk : pix) + (size_t)y * (size_t)sw * (cmyk_in ? 4 : 3);
    jpeg_start_decompress(&cinfo);
    while (cinfo.output_scanline < cinfo.output_height)
        jpeg_read_scanlines(&cinfo, rows + cinfo.output_scanline,
                            cinfo.output_height - cinfo.output_scanline);
    /* Reading on to EOI also catches damage after the last pixel row. */
    jpeg_finish_decompress(&cinfo);
    if (cmyk_in)
        vt_image__cmyk_to_rgb(cmyk, pix, npix);
    rc = vt_image__finish(d, pix, sw, sh);
cleanup:
    jpeg_destroy_decompress(&cinfo);
    if (d && pix != d->out)
        free(pix);
    free(cmyk);
    free(rows);
    return rc;
}

/* ---- PNG --------------------------------------------------------------- */

typedef struct {
    const uint8_t *buf;
    size_t len, pos;
    char msg[200]; /* libpng's error message, for vt_error_set() */
} vt_image__png_src;

static void vt_image__png_read(png_structp png, png_bytep data, size_t n)
{
    vt_image__png_src *src = png_get_io_ptr(png);
    if (src->len - src->pos < n)
        png_error(png, "file is truncated");
    memcpy(data, src->buf + src->pos, n);
    src->pos += n;
}

static void vt_image__png_error(png_structp png, png_const_charp msg)
{
    vt_image__png_src *src = png_get_error_ptr(png);
    snprintf(src->msg, sizeof src->msg, "%s", msg);
    png_longjmp(png, 1);
}

/* Ancillary-chunk complaints (a dubious sRGB profile, say) are not reasons
 * to refuse an image; PIL ignores them too. */
static void vt_image__png_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* Sets up the transformations to RGB8 once the header is read.  Must run
 * under the caller's setjmp. */
static void vt_image__png_setup(png_structp png, png_infop info)
{
    png_set_expand(png);
    png_set_strip_16(png);
    png_set_strip_alpha(png);
    png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

/* Decodes into d->out when the size matches (or the image is kept), else
 * into a buffer then resizes.  With d == NULL only the header is read (for
 * vt_image_probe()). */
static int vt_image__png_decode(const uint8_t *buf, size_t len, vt_image__dst *d,
                                int *src_w, int *src_h)
{
    vt_image__png_src src = {buf, len, 0, ""};
    png_structp png = NULL;
    png_infop info = NULL;
    /* Assigned after setjmp and needed after a longjmp: volatile. */
    uint8_t *volatile pix = NULL;
    png_bytep *volatile rows = NULL;
    volatile int rc = 0;
    int w = 0, h = 0;

    png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, vt_image__png_error,
                                 vt_image__png_warning);
    if (!png || !(info = png_create_info_struct(png))) {
        rc = vt_error_set(VT_ENOMEM, "cannot start the PNG decoder");
        goto cleanup;
    }
    if (setjmp(png_jmpbuf(png))) {
        if (rc == 0)
            rc = vt_error_set(VT_EFORMAT, "corrupt PNG: %s", src.msg);
        goto cleanup;
    }
    png_set_read_fn(png, &src, vt_image__png_read);
    png_read_info(png, info);
    w = (int)png_get_image_width(png, info);
    h = (int)png_get_image_height(png, info);
    if ((rc = vt_image__check_size(w, h)) < 0)
        goto cleanup;
    if (src_w)
        *src_w = w;
    if (src_h)
        *src_h = h;
    if (!d)
        goto cleanup;
    vt_image__png_setup(png, info);
    if (png_get_rowbytes(png, info) != (size_t)w * 3) {
        rc = vt_error_set(VT_EFORMAT, "unsupported PNG pixel layout");
        goto cleanup;
    }
    pix = vt_image__in_place(d, w, h) ? d->out : malloc((size_t)w * (size_t)h * 3);
    rows = malloc((size_t)h * sizeof *rows);
    if (!pix || !rows) {
        rc = vt_error_set(VT_ENOMEM, "out of memory decoding a %dx%d PNG", w, h);
        goto cleanup;
    }
    for (int y = 0; y < h; y++)
        rows[y] = pix + (size_t)y * (size_t)w * 3;
    png_read_image(png, rows);
    /* Reaching IEND also checks the end of the compressed stream. */
    png_read_end(png, NULL);
    rc = vt_image__finish(d, pix, w, h);
cleanup:
    if (d && pix != d->out)
        free(pix);
    free(rows);
    png_destroy_read_struct(png ? &png : NULL, info ? &info : NULL, NULL);
    return rc;
}

/* ---- entry points ------------------------------------------------------ */

static int vt_image__decode(const uint8_t *buf, size_t len, vt_image__dst *d, int *src_w,
                            int *src_h)
{
    if (d->w <= 0 || d->h <= 0 || !d->out)
        return vt_error_set(VT_EINVAL, "bad target size %dx%d", d->w, d->h);
    if (len == 0)
        return vt_error_set(VT_EFORMAT, "empty file");
    switch (vt_image_sniff(buf, len)) {
    case VT_IMG_JPEG:
        return vt_image__jpeg_decode(buf, len, d, src_w, src_h);
    case VT_IMG_PNG:
        return vt_image__png_decode(buf, len, d, src_w, src_h);
    default:
        return vt_error_set(VT_EFORMAT, "not a JPEG or PNG file");
    }
}

int vt_image_decode(const uint8_t *buf, size_t len, int out_w, int out_h, uint8_t *out,
                    int *src_w, int *src_h)
{
    vt_image__dst d = {.w = out_w, .h = out_h, .out = out};
    return vt_image__decode(buf, len, &d, src_w, src_h);
}

/* The error for path, a symbolic link that vt_image__read() did not follow.
 * A link that points nowhere says so, with its target: a user who named it
 * (predict follows links named on its command line) needs to hear that the
 * target is missing, not that links are not followed. */
static int vt_image__link_error(int dirfd, const char *path)
{
    char target[256];
    struct stat st;
    ssize_t n;

    if (fstatat(dirfd, path, &st, 0) == 0 || errno != ENOENT)
        return vt_error_set(VT_EPERM, "%s: is a symbolic link (not followed)", path);
    n = readlinkat(dirfd, path, target, sizeof target - 1);
    target[n < 0 ? 0 : n] = '\0';
    return vt_error_set(VT_EPERM, "%s: is a symbolic link to %s, which does not exist", path,
                        n < 0 ? "a file" : target);
}

/* Reads up to max bytes of a regular file (all of it when max is 0, which
 * must then be at most VT_IMAGE_MAX_FILE); *whole tells whether that was the
 * entire file.  Symbolic links are not followed (see dataset.h). */
static int vt_image__read(int dirfd, const char *path, size_t max, uint8_t **out,
                          size_t *len, int *whole)
{
    struct stat st;
    uint8_t *buf = NULL;
    size_t n = 0, want;
    int fd, rc = 0;

    *out = NULL;
    *len = 0;
    fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return vt_error_set(VT_ENOTFOUND, "%s: no such file", path);
        if (e == EACCES || e == EPERM)
            return vt_error_set(VT_EPERM, "%s: %s", path, strerror(e));
        if (e == ELOOP)
            return vt_image__link_error(dirfd, path);
        if (e == EMFILE || e == ENFILE || e == ENOMEM) /* the process's lack, not the file's */
            return vt_error_set(VT_EBUSY, "cannot open %s: %s", path, strerror(e));
        return vt_error_set(VT_EIO, "cannot open %s: %s", path, strerror(e));
    }
    if (fstat(fd, &st) < 0) {
        rc = vt_error_set(VT_EIO, "cannot stat %s: %s", path, strerror(errno));
        goto cleanup;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = vt_error_set(VT_EFORMAT, "%s: not a regular file", path);
        goto cleanup;
    }
    if (st.st_size == 0) {
        rc = vt_error_set(VT_EFORMAT, "%s: empty file", path);
        goto cleanup;
    }
    if (max == 0 && (uint64_t)st.st_size > VT_IMAGE_MAX_FILE) {
        rc = vt_error_set(VT_ETOOBIG, "%s: file of %lld bytes is over the %zu MiB limit",
                          path, (long long)st.st_size, VT_IMAGE_MAX_FILE >> 20);
        goto cleanup;
    }
    want = max && (uint64_t)st.st_size > max ? max : (size_t)st.st_size;
    if (!(buf = malloc(want))) {
        rc = vt_error_set(VT_ENOMEM, "out of memory reading %s", path);
        goto cleanup;
    }
    while (n < want) {
        ssize_t r = read(fd, buf + n, want - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = vt_error_set(VT_EIO, "cannot read %s: %s", path, strerror(errno));
            goto cleanup;
        }
        if (r == 0)
            break; /* shrank while we read; decode what is there */
        n += (size_t)r;
    }
    *out = buf;
    *len = n;
    *whole = n == (size_t)st.st_size;
    buf = NULL;
cleanup:
    free(buf);
    close(fd);
    return rc;
}

int vt_image_load_scaled(int dirfd, const char *path, int out_w, int out_h, size_t keep,
                         uint8_t *out, int *got_w, int *got_h)
{
    vt_image__dst d = {.w = out_w, .h = out_h, .keep = keep, .out = out};
    uint8_t *buf = NULL;
    size_t len = 0;
    int whole = 0, rc;

    if ((rc = vt_image__read(dirfd, path, 0, &buf, &len, &whole)) < 0)
        return rc;
    rc = vt_image__decode(buf, len, &d, NULL, NULL);
    free(buf);
    if (rc < 0)
        return vt_error_wrap(rc, "%s", path);
    if (got_w)
        *got_w = d.got_w;
    if (got_h)
        *got_h = d.got_h;
    return 0;
}

int vt_image_load(int dirfd, const char *path, int out_w, int out_h, uint8_t *out)
{
    return vt_image_load_scaled(dirfd, path, out_w, out_h, 0, out, NULL, NULL);
}

static int vt_image__probe_buf(const uint8_t *buf, size_t len, vt_image_format *fmt,
                               int *w, int *h)
{
    *fmt = vt_image_sniff(buf, len);
    switch (*fmt) {
    case VT_IMG_JPEG:
        return vt_image__jpeg_decode(buf, len, NULL, w, h);
    case VT_IMG_PNG:
        return vt_image__png_decode(buf, len, NULL, w, h);
    default:
        return vt_error_set(VT_EFORMAT, "not a JPEG or PNG file");
    }
}

int vt_image_probe(int dirfd, const char *path, vt_image_format *fmt, int *w, int *h)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int whole = 0, rc;

    *fmt = VT_IMG_UNKNOWN;
    *w = *h = 0;
    if ((rc = vt_image__read(dirfd, path, VT_IMAGE__PROBE_BYTES, &buf, &len, &whole)) < 0)
        return rc;
    rc = vt_image__probe_buf(buf, len, fmt, w, h);
    if (rc == VT_EFORMAT && !whole && *fmt == VT_IMG_JPEG) {
        free(buf);
        if ((rc = vt_image__read(dirfd, path, 0, &buf, &len, &whole)) < 0)
            return rc;
        rc = vt_image__probe_buf(buf, len, fmt, w, h);
    }
    free(buf);
    if (rc < 0)
        return vt_error_wrap(rc, "%s", path);
    return 0;
}

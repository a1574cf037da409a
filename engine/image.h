/* image.h - decoding JPEG and PNG files to fixed-size RGB arrays.
 *
 * JPEG through libjpeg-turbo (its libjpeg API), PNG through libpng; the format
 * is detected from the content, not the file name.  Every image becomes RGB
 * uint8: grayscale is replicated, palette and 16-bit PNGs are expanded and
 * reduced to 8 bits, alpha is dropped (as PIL's convert("RGB") does),
 * CMYK JPEGs are converted.
 *
 * Resizing is bilinear with half-pixel centres and no antialiasing (the
 * convention of torch.nn.functional.interpolate(mode="bilinear",
 * align_corners=False)), rounded to nearest; when the decoded size already
 * equals the target the pixels are copied exactly.  JPEGs are decoded with
 * DCT scaling at the smallest scale factor whose output is at least the
 * target in both dimensions, which is faster and loses nothing the resize
 * would keep.
 *
 * A corrupt or truncated file (libjpeg-turbo warnings included) is an error:
 * VT_EFORMAT with the reason.  Only the warning about extraneous bytes
 * before a marker is let through: stray bytes after intact data, common in
 * camera and editor output, which PIL decodes as well.  Images larger than
 * VT_IMAGE_MAX_PIXELS are refused before any large allocation
 * (decompression bombs).  A file that cannot be opened for the process's
 * want, not its own fault (no file descriptor left), is VT_EBUSY.
 * All functions are thread-safe (decode pools call them concurrently).
 */
#ifndef VT_IMAGE_H
#define VT_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#define VT_IMAGE_MAX_PIXELS (64u * 1024u * 1024u) /* 64 Mpx */
#define VT_IMAGE_MAX_FILE ((size_t)256 << 20)      /* 256 MiB */

typedef enum { VT_IMG_UNKNOWN, VT_IMG_JPEG, VT_IMG_PNG } vt_image_format;

/* Format from the first bytes of a file (n >= 8 for PNG). */
vt_image_format vt_image_sniff(const uint8_t *head, size_t n);

/* Decodes buf (a whole JPEG or PNG file) and resizes it to out_w x out_h;
 * out is (out_h, out_w, 3) uint8 RGB.  *src_w, *src_h (optional) receive the
 * image's original size. */
int vt_image_decode(const uint8_t *buf, size_t len, int out_w, int out_h,
                    uint8_t *out, int *src_w, int *src_h);

/* Reads the file at path (relative paths are relative to dirfd, which may be
 * AT_FDCWD) and decodes it as vt_image_decode() does.  Error messages name
 * the path. */
int vt_image_load(int dirfd, const char *path, int out_w, int out_h,
                  uint8_t *out);

/* As vt_image_load(), but when the decoded image (a JPEG after DCT scaling
 * toward out_w x out_h) has at most keep pixels it is not resized: out then
 * holds it as decoded.  *got_w x *got_h (optional) is what out holds.  out
 * must have room for max(keep, out_w * out_h) pixels.  Lets a backend do the
 * resize (see vt_op_images_resize_to_input). */
int vt_image_load_scaled(int dirfd, const char *path, int out_w, int out_h, size_t keep,
                         uint8_t *out, int *got_w, int *got_h);

/* Reads only the header: format and size, without decoding pixels.  Used to
 * reject unreadable files up front.  VT_EFORMAT when the header is bad. */
int vt_image_probe(int dirfd, const char *path, vt_image_format *fmt, int *w,
                   int *h);

/* Bilinear resize of an (sh, sw, 3) uint8 RGB image to (dh, dw, 3) (half-pixel
 * centres, no antialiasing, exact copy for equal sizes).  Each output pixel
 * is round(a * (c * p00 + d * p01) + b * (c * p10 + d * p11)) in float, the
 * taps and weights as torch computes them.  VT_ENOMEM when its scratch
 * (about 36 bytes per output column) cannot be allocated. */
int vt_image_resize(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh);

/* Mirrors an (h, w, 3) image left-right in place. */
void vt_image_flip(uint8_t *img, int w, int h);

#endif

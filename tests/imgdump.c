/* imgdump.c - test helper: decodes an image file with vt_image_load() to the
 * given size and writes the raw (H, W, 3) RGB bytes to stdout, so the Python
 * reference test can compare our decoder and resize with PIL and torch.
 *
 * Usage: imgdump FILE W H   (W = H = 0: the image's own size)
 * Exits 1 with the error message on stderr when decoding fails.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/error.h"
#include "engine/image.h"

int main(int argc, char **argv)
{
    vt_image_format fmt;
    int w, h, rc;
    uint8_t *out;

    if (argc != 4) {
        fprintf(stderr, "usage: imgdump FILE W H\n");
        return 2;
    }
    w = atoi(argv[2]);
    h = atoi(argv[3]);
    if ((w == 0 || h == 0) && vt_image_probe(AT_FDCWD, argv[1], &fmt, &w, &h) < 0) {
        fprintf(stderr, "imgdump: %s\n", vt_error_msg());
        return 1;
    }
    if (w <= 0 || h <= 0 || !(out = malloc((size_t)w * (size_t)h * 3))) {
        fprintf(stderr, "imgdump: bad size %dx%d\n", w, h);
        return 2;
    }
    if ((rc = vt_image_load(AT_FDCWD, argv[1], w, h, out)) < 0) {
        fprintf(stderr, "imgdump: %s\n", vt_error_msg());
        free(out);
        return 1;
    }
    rc = fwrite(out, 1, (size_t)w * (size_t)h * 3, stdout) == (size_t)w * (size_t)h * 3 ? 0 : 1;
    free(out);
    return rc;
}

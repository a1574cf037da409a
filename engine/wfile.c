/* wfile.c - weights file kinds by signature (see wfile.h). */
#include "wfile.h"

#include <string.h>

#include "../common/error.h"
#include "../common/fileio.h"

static const uint8_t vt__h5_sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

int vt_h5_probe(const uint8_t *head, size_t n)
{
    return n >= sizeof vt__h5_sig && memcmp(head, vt__h5_sig, sizeof vt__h5_sig) == 0;
}

int vt_safetensors_probe(const uint8_t *head, size_t n)
{
    uint64_t len = 0;
    if (n < 8)
        return 0;
    for (int i = 7; i >= 0; i--) /* little-endian header length */
        len = (len << 8) | head[i];
    if (len < 2 || len > VT_ST_MAX_HEADER)
        return 0;
    return n < 9 || head[8] == '{';
}

/* Whether the first n bytes start a file torch.save wrote: a zip archive
 * (since PyTorch 1.6) or a pickle of protocol 2 or later (before). */
static int vt__torch_probe(const uint8_t *head, size_t n)
{
    return (n >= 4 && memcmp(head, "PK\x03\x04", 4) == 0) ||
           (n >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5);
}

int vt_wfile_probe(const char *path, vt_wfile_kind *kind)
{
    uint8_t head[16] = {0};
    size_t got;
    int rc;

    if ((rc = vt_read_head(path, head, sizeof head, &got)) < 0)
        return vt_error_wrap(rc, "weights file");
    if (got >= 8 && vt_h5_probe(head, got)) {
        *kind = VT_WFILE_KERAS_H5;
        return 0;
    }
    if (got >= 9 && vt_safetensors_probe(head, got)) {
        *kind = VT_WFILE_SAFETENSORS;
        return 0;
    }
    if (vt__torch_probe(head, got))
        return vt_error_set(VT_EFORMAT, "%s is neither Keras HDF5 nor safetensors but a "
                            "PyTorch file (torch.save), which is not read: convert it with "
                            "python3 -c 'import sys, torch, safetensors.torch as s; "
                            "s.save_file(torch.load(sys.argv[1]), sys.argv[2])' %s "
                            "vgg16.safetensors", path, path);
    return vt_error_set(VT_EFORMAT, "%s is neither Keras HDF5 nor safetensors", path);
}

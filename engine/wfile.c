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
    return vt_error_set(VT_EFORMAT, "weights file %s is neither Keras HDF5 nor safetensors",
                        path);
}

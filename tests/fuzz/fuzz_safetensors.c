/* fuzz_safetensors.c - contract: any file given as weights, an init model
 * or a model to predict with is read (vt_safetensors_parse, and the
 * metadata-only vt_safetensors_read_meta that the output checks use) or
 * refused with a message, without a crash, a leak or undefined behaviour;
 * what a set that was read is asked next (its head layout, its writer) is
 * safe too, and writing it back and reading that gives the same tensors. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../engine/safetensors.h"
#include "../../engine/vgg.h"
#include "../../engine/weights.h"
#include "../../engine/writer.h"
#include "fuzz_util.h"

static void vt__round_trip(const vt_tensorset *set)
{
    char path[128];
    vt_tensorset *back = NULL;
    snprintf(path, sizeof path, "%s/rt.safetensors", vt_fuzz_dir());
    if (vt_safetensors_write(AT_FDCWD, path, set) < 0)
        return; /* names it cannot write (invalid UTF-8, "__metadata__") */
    if (vt_safetensors_read(&back, path) < 0 || back->n != set->n)
        abort();
    for (int i = 0; i < set->n; i++) {
        const vt_ntensor *t = vt_tensorset_find(back, set->t[i].name);
        if (!t || t->ndim != set->t[i].ndim ||
            memcmp(t->shape, set->t[i].shape, sizeof t->shape) != 0 ||
            memcmp(t->data, set->t[i].data, vt_ntensor_numel(t) * sizeof(float)) != 0)
            abort();
    }
    vt_tensorset_free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vt_tensorset *set = NULL;
    char path[64], buf[256];
    int hidden[VT_MAX_DENSE], nhidden, nclasses, in_features, fd;

    if (vt_safetensors_parse(&set, data, size, "fuzz") == 0) {
        vt_writer w = vt_writer_of(set);
        vt_writer_name(&w, "0123abcd", buf, sizeof buf);
        (void)vt_weights_head_layout(set, "fuzz", hidden, &nhidden, &nclasses, &in_features);
        for (int i = 0; i < set->n; i++)
            vt_ntensor_shape_str(&set->t[i], buf, sizeof buf);
        vt__round_trip(set);
        vt_tensorset_free(set);
    }
    fd = vt_fuzz_file(data, size, path, sizeof path);
    if (vt_safetensors_read_meta(&set, path) == 0)
        vt_tensorset_free(set);
    close(fd);
    return 0;
}

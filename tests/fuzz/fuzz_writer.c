/* fuzz_writer.c - contract: whatever an output directory holds as
 * model.safetensors and classmap.json, vt_output_finished_model says whose
 * finished model it is, or that it is none, without a crash, a leak or
 * undefined behaviour.  Input: 2 bytes (little-endian) giving the length of
 * model.safetensors, its bytes, then classmap.json's (none when the length
 * field's top bit is set). */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "../../common/fileio.h"
#include "../../engine/writer.h"
#include "fuzz_util.h"

static void vt__put(const char *dir, const char *name, const uint8_t *data, size_t n)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (vt_write_file_atomic(AT_FDCWD, path, data, n) < 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *dir = vt_fuzz_dir();
    char path[128];
    size_t model, rest;
    vt_writer w;

    if (size < 2)
        return 0;
    model = (size_t)(data[0] | (data[1] & 0x7f) << 8);
    model = model < size - 2 ? model : size - 2;
    rest = size - 2 - model;
    vt__put(dir, "model.safetensors", data + 2, model);
    snprintf(path, sizeof path, "%s/classmap.json", dir);
    if (data[1] & 0x80)
        unlink(path);
    else
        vt__put(dir, "classmap.json", data + 2 + model, rest);
    (void)vt_output_finished_model(dir, &w);
    return 0;
}

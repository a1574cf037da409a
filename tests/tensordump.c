/* tensordump.c - test helper: shows a weight file as our readers see it, or
 * rewrites it with our safetensors writer, so tests/py can compare both with
 * the reference Python packages.
 *
 *   tensordump FILE                  JSON on stdout: {"format", "metadata",
 *                                    "tensors": [{"name", "shape", "data"}]}
 *                                    with data the tensor's float32 bytes
 *                                    (little-endian) in hex, in set order
 *   tensordump --to-safetensors IN OUT
 *                                    reads IN (either format), writes OUT
 *
 * The format is detected by content (vt_h5_probe, vt_safetensors_probe).
 * On failure it prints "tensordump: CODE: message" and exits 1.
 */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/error.h"
#include "../engine/h5keras.h"
#include "../engine/safetensors.h"

static int read_any(vt_tensorset **out, const char **format, const char *path)
{
    uint8_t head[16] = {0};
    size_t n = 0;
    FILE *f = fopen(path, "rb");

    if (!f)
        return vt_error_set(VT_ENOTFOUND, "%s: cannot open", path);
    n = fread(head, 1, sizeof head, f);
    fclose(f);
    if (vt_h5_probe(head, n)) {
        *format = "keras_h5";
        return vt_h5keras_read(out, path);
    }
    if (vt_safetensors_probe(head, n)) {
        *format = "safetensors";
        return vt_safetensors_read(out, path);
    }
    return vt_error_set(VT_EFORMAT, "%s: neither HDF5 nor safetensors", path);
}

static int dump(const vt_tensorset *set, const char *format)
{
    static const char hex[] = "0123456789abcdef";
    cJSON *root = cJSON_CreateObject(), *meta, *list;
    char *text = NULL;
    int rc = 0;

    if (!root || !cJSON_AddStringToObject(root, "format", format) ||
        !(meta = cJSON_AddObjectToObject(root, "metadata")) ||
        !(list = cJSON_AddArrayToObject(root, "tensors")))
        goto nomem;
    for (int i = 0; i < set->nmeta; i++)
        if (!cJSON_AddStringToObject(meta, set->meta_key[i], set->meta_val[i]))
            goto nomem;
    for (int i = 0; i < set->n; i++) {
        const vt_ntensor *t = &set->t[i];
        size_t nbytes = vt_ntensor_numel(t) * sizeof(float);
        const uint8_t *b = (const uint8_t *)t->data;
        cJSON *o = cJSON_CreateObject(), *shape;
        char *h = malloc(2 * nbytes + 1);
        if (!o || !cJSON_AddItemToArray(list, o) || !h) {
            free(h);
            goto nomem;
        }
        for (size_t k = 0; k < nbytes; k++) {
            h[2 * k] = hex[b[k] >> 4];
            h[2 * k + 1] = hex[b[k] & 15];
        }
        h[2 * nbytes] = '\0';
        if (!cJSON_AddStringToObject(o, "name", t->name) ||
            !(shape = cJSON_AddArrayToObject(o, "shape")) ||
            !cJSON_AddStringToObject(o, "data", h)) {
            free(h);
            goto nomem;
        }
        free(h);
        for (int d = 0; d < t->ndim; d++)
            if (!cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d])))
                goto nomem;
    }
    if (!(text = cJSON_PrintUnformatted(root)))
        goto nomem;
    puts(text);
    goto cleanup;
nomem:
    rc = vt_error_set(VT_ENOMEM, "out of memory");
cleanup:
    cJSON_free(text);
    cJSON_Delete(root);
    return rc;
}

int main(int argc, char **argv)
{
    vt_tensorset *set = NULL;
    const char *format = NULL;
    int rc;

    if (argc == 2) {
        if ((rc = read_any(&set, &format, argv[1])) == 0)
            rc = dump(set, format);
    } else if (argc == 4 && strcmp(argv[1], "--to-safetensors") == 0) {
        if ((rc = read_any(&set, &format, argv[2])) == 0)
            rc = vt_safetensors_write(AT_FDCWD, argv[3], set);
    } else {
        fprintf(stderr, "usage: tensordump FILE | tensordump --to-safetensors IN OUT\n");
        return 2;
    }
    vt_tensorset_free(set);
    if (rc < 0) {
        fprintf(stderr, "tensordump: %s: %s\n", vt_error_name(rc), vt_error_msg());
        return 1;
    }
    return 0;
}

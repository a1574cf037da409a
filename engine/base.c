/* base.c - loading and hashing frozen trunks (see base.h). */
#include "base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/error.h"
#include "../common/hash.h"
#include "../common/utf8.h"
#include "weights.h"

int vt_base_read(vt_base **out, const char *path, const vt_creds *creds)
{
    vt_base *b = calloc(1, sizeof *b);
    vt_tensorset *set = NULL;
    vt_wfile_kind kind = VT_WFILE_SAFETENSORS;
    int rc;

    *out = NULL;
    if (!b)
        return vt_error_set(VT_ENOMEM, "out of memory");
    if ((rc = vt_params_new(&b->params, 32, NULL, 0, 2)) < 0)
        goto fail;
    if (!path) {
        vt_params_init_he(b->params, VT_BASE_RANDOM_SEED, 1);
        b->random = 1;
        b->prep = VT_PREP_TORCH;
        snprintf(b->desc, sizeof b->desc, "%s", VT_BASE_RANDOM_DESC);
    } else {
        if (creds && (rc = vt_creds_enter(creds)) < 0)
            goto fail;
        rc = vt_weights_read(&set, &kind, path);
        if (creds)
            vt_creds_leave();
        if (rc < 0 ||
            (rc = vt_weights_load_trunk(b->params, set, kind, path, &b->prep)) < 0)
            goto fail;
        snprintf(b->desc, sizeof b->desc, "%s:%s",
                 kind == VT_WFILE_KERAS_H5 ? "keras" : "safetensors", path);
        /* (every model's metadata records it, and takes only UTF-8) */
        vt_utf8_scrub(b->desc);
    }
    vt_hash_init(b->hash);
    for (int i = 0; i < VT_VGG_NCONV; i++) {
        vt_hash_add(b->hash, b->params->conv_w[i], sizeof(float) * (size_t)vt_vgg_conv_numel(i));
        vt_hash_add(b->hash, b->params->conv_b[i], sizeof(float) * (size_t)vt_vgg16[i].cout);
    }
    vt_tensorset_free(set);
    *out = b;
    return 0;
fail:
    vt_tensorset_free(set);
    vt_base_free(b);
    return rc;
}

int vt_base_upload(vt_base *b, vt_backend *be)
{
    if (b->trunk)
        return 0;
    return vt_trunk_create(&b->trunk, be, b->params);
}

int vt_base_load(vt_base **out, vt_backend *be, const char *path, const vt_creds *creds)
{
    int rc = vt_base_read(out, path, creds);
    if (rc < 0)
        return rc;
    if ((rc = vt_base_upload(*out, be)) < 0) {
        vt_base_free(*out);
        *out = NULL;
    }
    return rc;
}

void vt_base_free(vt_base *b)
{
    if (!b)
        return;
    vt_trunk_free(b->trunk);
    vt_params_free(b->params);
    free(b);
}

/* base.h - the frozen convolutions a job starts from, loaded once.
 *
 * A base is a weights file (Keras HDF5 or safetensors) or, without one, the
 * seeded random trunk (He initialisation with VT_BASE_RANDOM_SEED), uploaded
 * to a backend as a vt_trunk.  The daemon keeps bases resident and shares
 * one among all jobs whose weights have the same content (hash of the 13
 * convolutions as loaded, whatever the file format).
 */
#ifndef VT_BASE_H
#define VT_BASE_H

#include <limits.h>
#include <stdint.h>

#include "../common/creds.h"
#include "model.h"
#include "vgg.h"

#define VT_BASE_RANDOM_SEED 0
/* How the random trunk is described (status, logs, model metadata). */
#define VT_BASE__STR(x) #x
#define VT_BASE__XSTR(x) VT_BASE__STR(x)
#define VT_BASE_RANDOM_DESC "random (He, seed " VT_BASE__XSTR(VT_BASE_RANDOM_SEED) ")"

typedef struct {
    vt_params *params;      /* host copy; only the convolutions are meaningful */
    vt_trunk *trunk;        /* on the backend given to vt_base_load */
    vt_preprocess prep;     /* what the weights expect */
    int random;             /* the seeded random trunk */
    char desc[PATH_MAX + 32]; /* "keras:/path", "safetensors:/path", "random"; UTF-8 (a
                               * path's other bytes as '?') */
    uint64_t hash[2];       /* content of the convolutions */
} vt_base;

/* Loads path (NULL: the random trunk), reading the file as creds (NULL: as
 * the process), and uploads it to be. */
int vt_base_load(vt_base **out, vt_backend *be, const char *path, const vt_creds *creds);

/* Reads and hashes a weights file without uploading it (for finding a
 * resident base with the same content); *out must be freed with
 * vt_base_free. */
int vt_base_read(vt_base **out, const char *path, const vt_creds *creds);

/* Uploads a base made by vt_base_read. */
int vt_base_upload(vt_base *b, vt_backend *be);

/* Frees a base; NULL is a no-op. */
void vt_base_free(vt_base *b);

#endif

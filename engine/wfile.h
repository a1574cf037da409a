/* wfile.h - which kind of weights file a path is, from its first bytes.
 *
 * Needs no HDF5 or safetensors reader, so the client (which does not link
 * the engine) can tell a user at submission that a --weights or --init file
 * is neither; the readers (h5keras.h, safetensors.h) check everything else.
 */
#ifndef VT_WFILE_H
#define VT_WFILE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { VT_WFILE_KERAS_H5, VT_WFILE_SAFETENSORS } vt_wfile_kind;

/* The largest safetensors JSON header accepted (the reference reader's). */
#define VT_ST_MAX_HEADER 100000000ull

/* Whether the first n bytes carry the HDF5 signature (at offset 0; callers
 * pass at least 8 bytes). */
int vt_h5_probe(const uint8_t *head, size_t n);

/* Whether the first n bytes of a file look like safetensors (a plausible
 * header length followed by '{'). */
int vt_safetensors_probe(const uint8_t *head, size_t n);

/* Which kind the file at path is, from its first bytes.  A file that is
 * neither is VT_EFORMAT, with the message "PATH is neither Keras HDF5 nor
 * safetensors" and, for a PyTorch file (torch.save: a zip archive or a
 * pickle, as torchvision's vgg16-397923af.pth), how to convert it; an
 * unreadable one the read error. */
int vt_wfile_probe(const char *path, vt_wfile_kind *kind);

#endif

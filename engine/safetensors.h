/* safetensors.h - reading and writing the safetensors format.
 *
 * Format: 8 bytes little-endian header length N, N bytes of UTF-8 JSON
 * mapping tensor name -> {"dtype", "shape", "data_offsets": [begin, end]}
 * plus an optional "__metadata__" object of string -> string, then the data
 * buffer (offsets relative to its start, end exclusive, little-endian,
 * row-major).
 *
 * The reader is strict, like the reference implementation: it refuses
 * N > 100 000 000, a header that is not a JSON object, entries with missing or
 * ill-typed fields, unknown dtypes, negative or overflowing shapes, byte ranges
 * that do not equal elements x dtype size, tensors that are not contiguous
 * from offset 0 once sorted by offset (gaps or overlaps), a data buffer
 * that does not end exactly at the end of the file, and more than 4096
 * tensors or metadata pairs (no weights file of VGG16 comes near; the
 * reader's duplicate check is quadratic in them).  Every refusal is
 * VT_EFORMAT with a message naming the file and, where there is one, the
 * tensor.  It never reads outside the file.
 */
#ifndef VT_SAFETENSORS_H
#define VT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "tensorset.h"
#include "wfile.h"

/* Reads every tensor of the file at path into a new set, converting F32,
 * F16, BF16 and F64 data to float32; tensors of other dtypes (integers,
 * BOOL, F8) are refused with a message naming the tensor and its dtype.
 * __metadata__ pairs become the set's metadata. */
int vt_safetensors_read(vt_tensorset **out, const char *path);

/* Reads only the __metadata__ of the file at path (its header, not its
 * data) into a new set without tensors; a file without metadata gives an
 * empty set.  VT_EFORMAT for what is not a safetensors header. */
int vt_safetensors_read_meta(vt_tensorset **out, const char *path);

/* Whether the header of the file at path (not its data) names at least one
 * of names[n] as a tensor: 1 if so, 0 if not.  VT_EFORMAT for what is not a
 * safetensors header. */
int vt_safetensors_has_any(const char *path, const char *const *names, int n);

/* Same as vt_safetensors_read, from a buffer holding the whole file; label
 * names it in messages. */
int vt_safetensors_parse(vt_tensorset **out, const uint8_t *buf, size_t len,
                         const char *label);

/* Writes the set as F32 tensors in insertion order, with its metadata as
 * __metadata__, the header padded with spaces to a multiple of 8; durable
 * (temporary file, fsync, rename, fsync of the directory). dirfd may be
 * AT_FDCWD.  A set whose metadata could not all be recorded (meta_lost) is
 * refused with VT_ENOMEM and nothing is written. */
int vt_safetensors_write(int dirfd, const char *path, const vt_tensorset *set);

#endif

/* tbevents.h - TensorBoard event files of scalars, written without TensorFlow.
 *
 * The file is a TFRecord stream (per record: u64 length, masked CRC-32C of
 * the length, the data, masked CRC-32C of the data) of Event protocol
 * buffers: a first event with file_version "brain.Event:2", then one event
 * per scalar {wall_time, step, summary {value {tag, simple_value}}}.
 * `tensorboard --logdir OUT` shows them.
 */
#ifndef VT_TBEVENTS_H
#define VT_TBEVENTS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char tag[32];    /* "epoch/loss" */
    int64_t step;
    double wall;     /* Unix seconds */
    float value;
} vt_scalar;

/* Writes (replacing, durably) an event file holding these scalars. */
int vt_tb_write(const char *path, const vt_scalar *scalars, size_t n, double start_wall);

/* CRC-32C (Castagnoli) of a buffer, as TFRecord uses it (before masking). */
uint32_t vt_crc32c(const void *data, size_t n);

#endif

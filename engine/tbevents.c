/* tbevents.c - TensorBoard scalar event files (see tbevents.h). */
#include "tbevents.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../common/error.h"
#include "../common/fileio.h"

static uint32_t vt__crc_table[256]; /* CRC-32C (Castagnoli), reflected */
static pthread_once_t vt__crc_once = PTHREAD_ONCE_INIT;

static void vt__crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        vt__crc_table[i] = c;
    }
}

uint32_t vt_crc32c(const void *data, size_t n)
{
    const uint8_t *p = data;
    uint32_t crc = 0xffffffffu;
    /* (once: the jobs' writing threads may be the first at the same time) */
    pthread_once(&vt__crc_once, vt__crc_init);
    for (size_t i = 0; i < n; i++)
        crc = vt__crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return crc ^ 0xffffffffu;
}

static uint32_t vt__masked(const void *data, size_t n)
{
    uint32_t c = vt_crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

/* A growing byte buffer for encoding. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
    int oom;
} vt__buf;

static void vt__put(vt__buf *b, const void *data, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void vt__varint(vt__buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    vt__put(b, tmp, n);
}

static void vt__le(vt__buf *b, uint64_t v, int bytes)
{
    uint8_t tmp[8];
    for (int i = 0; i < bytes; i++)
        tmp[i] = (uint8_t)(v >> (8 * i));
    vt__put(b, tmp, (size_t)bytes);
}

/* Encodes one Event; summary is NULL for the file_version event. */
static void vt__event(vt__buf *e, double wall, int64_t step, const vt_scalar *s)
{
    uint64_t bits;
    memcpy(&bits, &wall, sizeof bits);
    vt__varint(e, (1 << 3) | 1); /* wall_time: double */
    vt__le(e, bits, 8);
    if (!s) {
        static const char version[] = "brain.Event:2";
        vt__varint(e, (3 << 3) | 2); /* file_version: string */
        vt__varint(e, sizeof version - 1);
        vt__put(e, version, sizeof version - 1);
        return;
    }
    vt__varint(e, (2 << 3) | 0); /* step: int64 */
    vt__varint(e, (uint64_t)step);
    /* Summary { Value value = 1 { string tag = 1; float simple_value = 2; } } */
    size_t tl = strlen(s->tag);
    size_t value_len = 1 + 1 + tl + 1 + 4;
    size_t summary_len = 1 + 1 + value_len;
    uint32_t f;
    memcpy(&f, &s->value, sizeof f);
    vt__varint(e, (5 << 3) | 2);
    vt__varint(e, summary_len);
    vt__varint(e, (1 << 3) | 2);
    vt__varint(e, value_len);
    vt__varint(e, (1 << 3) | 2);
    vt__varint(e, tl);
    vt__put(e, s->tag, tl);
    vt__varint(e, (2 << 3) | 5);
    vt__le(e, f, 4);
}

static void vt__record(vt__buf *out, const vt__buf *ev)
{
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)ev->n >> (8 * i));
    vt__put(out, len, 8);
    vt__le(out, vt__masked(len, 8), 4);
    vt__put(out, ev->p, ev->n);
    vt__le(out, vt__masked(ev->p, ev->n), 4);
}

int vt_tb_write(const char *path, const vt_scalar *scalars, size_t n, double start_wall)
{
    vt__buf out = {0}, ev = {0};
    int rc;
    vt__event(&ev, start_wall, 0, NULL);
    vt__record(&out, &ev);
    for (size_t i = 0; i < n; i++) {
        ev.n = 0;
        vt__event(&ev, scalars[i].wall, scalars[i].step, &scalars[i]);
        vt__record(&out, &ev);
    }
    if (out.oom || ev.oom)
        rc = vt_error_set(VT_ENOMEM, "out of memory");
    else
        rc = vt_write_file_atomic(AT_FDCWD, path, out.p, out.n);
    free(out.p);
    free(ev.p);
    return rc;
}

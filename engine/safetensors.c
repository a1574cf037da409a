/* safetensors.c - strict reader and durable writer for safetensors files
 * (see safetensors.h).
 *
 * Reading validates the whole header before touching the data: every entry
 * is parsed and its byte count checked against shape x dtype, the entries
 * sorted by offset must tile [0, total) exactly, and 8 + N + total must be the
 * file size.  Only then is anything allocated for tensors, so a hostile header
 * cannot make us allocate more than about twice the file's size.  All
 * arithmetic on sizes is uint64 with explicit overflow checks.  Tensors land
 * in the set in data order (sorted by offset), which for the files we write is
 * also insertion order.
 *
 * The host is little-endian (x86-64, aarch64), like the format, so tensor
 * bytes are copied as they are.
 */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/error.h"
#include "../common/fileio.h"
#include "../common/utf8.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

#define VT_ST_MAX_FILE ((size_t)1 << 32)   /* what vt_safetensors_read loads */
#define VT_ST_MAX_INT 9007199254740992.0   /* 2^53: exact in a JSON double */
/* Tensors, and metadata pairs, one file may hold: VGG16 has 32 tensors and
 * our checkpoints fewer than a hundred.  A set finds a duplicate name by a
 * linear search per entry, so the 1.7 million empty tensors that fit the
 * header limit would take most of an hour (100 000 took 11 s); 4096 take
 * milliseconds. */
#define VT_ST_MAX_ENTRIES 4096

enum { VT_ST_F32, VT_ST_F16, VT_ST_BF16, VT_ST_F64, VT_ST_OTHER };

static const struct {
    const char *name;
    unsigned size;
    int kind;
} vt__dtypes[] = {
    {"BOOL", 1, VT_ST_OTHER},    {"U8", 1, VT_ST_OTHER},
    {"I8", 1, VT_ST_OTHER},      {"I16", 2, VT_ST_OTHER},
    {"U16", 2, VT_ST_OTHER},     {"F16", 2, VT_ST_F16},
    {"BF16", 2, VT_ST_BF16},     {"I32", 4, VT_ST_OTHER},
    {"U32", 4, VT_ST_OTHER},     {"F32", 4, VT_ST_F32},
    {"F64", 8, VT_ST_F64},       {"I64", 8, VT_ST_OTHER},
    {"U64", 8, VT_ST_OTHER},     {"F8_E4M3", 1, VT_ST_OTHER},
    {"F8_E5M2", 1, VT_ST_OTHER},
};

/* One header entry after validation. */
typedef struct {
    const char *name; /* points into the cJSON tree */
    int dtype;        /* index into vt__dtypes */
    int ndim;
    int64_t shape[VT_NT_MAX_DIMS];
    uint64_t begin, end; /* relative to the data buffer, end exclusive */
    int pos;             /* position in the header, to break ties */
} vt__entry;

static uint64_t vt__le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static float vt__half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    uint32_t bits;
    float f;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* inf or nan, payload kept */
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else {
        /* zero or subnormal: man x 2^-24 is exact in float */
        f = ldexpf((float)man, -24);
        return sign ? -f : f;
    }
    memcpy(&f, &bits, sizeof f);
    return f;
}

static float vt__double_to_float(double d)
{
    /* Out-of-range values become infinities explicitly rather than relying on
     * the conversion, whose behaviour C leaves undefined. */
    if (d > FLT_MAX)
        return INFINITY;
    if (d < -FLT_MAX)
        return -INFINITY;
    return (float)d;
}

/* Whether v is a JSON number holding a non-negative integer we can represent
 * exactly; stores it in *out. */
static int vt__json_uint(const cJSON *v, uint64_t *out)
{
    double d;
    if (!cJSON_IsNumber(v))
        return 0;
    d = v->valuedouble;
    if (!(d >= 0.0 && d <= VT_ST_MAX_INT) || d != floor(d))
        return 0;
    *out = (uint64_t)d;
    return 1;
}

static const char *vt__json_kind(const cJSON *v)
{
    if (cJSON_IsObject(v))
        return "an object";
    if (cJSON_IsArray(v))
        return "an array";
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsBool(v))
        return "a boolean";
    if (cJSON_IsNull(v))
        return "null";
    return "not valid JSON";
}

static void vt__shape_str(const vt__entry *e, char *buf, size_t len)
{
    vt_ntensor t = {0};
    t.ndim = e->ndim;
    memcpy(t.shape, e->shape, sizeof t.shape);
    vt_ntensor_shape_str(&t, buf, len);
}

/* Validates one tensor entry of the header into *e. */
static int vt__parse_entry(vt__entry *e, const cJSON *item, const char *label)
{
    const char *name = item->string;
    const cJSON *dtype, *shape, *offs, *v;
    uint64_t numel = 1, nbytes, dim, begin, end;
    char sbuf[256];
    int i;

    e->name = name;
    if (!cJSON_IsObject(item))
        return vt_error_set(VT_EFORMAT, "%s: tensor %s: entry is %s, not an object", label,
                            name, vt__json_kind(item));
    dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!dtype)
        return vt_error_set(VT_EFORMAT, "%s: tensor %s: missing \"dtype\"", label, name);
    if (!shape)
        return vt_error_set(VT_EFORMAT, "%s: tensor %s: missing \"shape\"", label, name);
    if (!offs)
        return vt_error_set(VT_EFORMAT, "%s: tensor %s: missing \"data_offsets\"", label,
                            name);
    if (!cJSON_IsString(dtype))
        return vt_error_set(VT_EFORMAT, "%s: tensor %s: \"dtype\" is %s, not a string",
                            label, name, vt__json_kind(dtype));
    e->dtype = -1;
    for (i = 0; i < (int)(sizeof vt__dtypes / sizeof vt__dtypes[0]); i++)
        if (strcmp(dtype->valuestring, vt__dtypes[i].name) == 0)
            e->dtype = i;
    if (e->dtype < 0)
        return vt_error_set(VT_EFORMAT, "%s: tensor %s: unknown dtype \"%.64s\"", label,
                            name, dtype->valuestring);

    if (!cJSON_IsArray(shape))
        return vt_error_set(VT_EFORMAT, "%s: tensor %s: \"shape\" is %s, not an array",
                            label, name, vt__json_kind(shape));
    if (cJSON_GetArraySize(shape) > VT_NT_MAX_DIMS)
        return vt_error_set(VT_EFORMAT, "%s: tensor %s: rank %d is more than the %d supported",
                            label, name, cJSON_GetArraySize(shape), VT_NT_MAX_DIMS);
    e->ndim = 0;
    cJSON_ArrayForEach(v, shape) {
        if (!vt__json_uint(v, &dim))
            return vt_error_set(VT_EFORMAT,
                                "%s: tensor %s: shape[%d] is not a non-negative integer",
                                label, name, e->ndim);
        if (dim != 0 && numel > UINT64_MAX / dim)
            return vt_error_set(VT_EFORMAT, "%s: tensor %s: shape overflows", label, name);
        numel *= dim;
        e->shape[e->ndim++] = (int64_t)dim;
    }
    if (numel > UINT64_MAX / vt__dtypes[e->dtype].size)
        return vt_error_set(VT_EFORMAT, "%s: tensor %s: shape overflows", label, name);
    nbytes = numel * vt__dtypes[e->dtype].size;

    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !vt__json_uint(cJSON_GetArrayItem(offs, 0), &begin) ||
        !vt__json_uint(cJSON_GetArrayItem(offs, 1), &end))
        return vt_error_set(VT_EFORMAT,
                            "%s: tensor %s: \"data_offsets\" is not two non-negative integers",
                            label, name);
    if (end < begin)
        return vt_error_set(VT_EFORMAT,
                            "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64
                            "] end before they begin",
                            label, name, begin, end);
    e->begin = begin;
    e->end = end;
    if (end - begin != nbytes) {
        vt__shape_str(e, sbuf, sizeof sbuf);
        return vt_error_set(VT_EFORMAT,
                            "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64
                            "] hold %" PRIu64 " bytes but shape %s of %s needs %" PRIu64,
                            label, name, begin, end, end - begin, sbuf,
                            vt__dtypes[e->dtype].name, nbytes);
    }
    return 0;
}

static int vt__entry_cmp(const void *a, const void *b)
{
    const vt__entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->pos - y->pos;
}

static int vt__parse_metadata(vt_tensorset *set, const cJSON *meta, const char *label)
{
    const cJSON *v;
    int rc;
    if (!cJSON_IsObject(meta))
        return vt_error_set(VT_EFORMAT, "%s: \"__metadata__\" is %s, not an object", label,
                            vt__json_kind(meta));
    if (cJSON_GetArraySize(meta) > VT_ST_MAX_ENTRIES)
        return vt_error_set(VT_EFORMAT, "%s: __metadata__ has %d entries, more than the %d "
                            "supported", label, cJSON_GetArraySize(meta), VT_ST_MAX_ENTRIES);
    cJSON_ArrayForEach(v, meta) {
        if (!cJSON_IsString(v))
            return vt_error_set(VT_EFORMAT,
                                "%s: __metadata__ value of \"%s\" is %s, not a string",
                                label, v->string, vt__json_kind(v));
        if ((rc = vt_tensorset_set_meta(set, v->string, v->valuestring)) < 0)
            return rc;
    }
    return 0;
}

/* Converts one validated entry's bytes into a new tensor of the set. */
static int vt__convert(vt_tensorset *set, const vt__entry *e, const uint8_t *src,
                       const char *label)
{
    vt_ntensor *t = NULL;
    size_t n;
    int rc, kind = vt__dtypes[e->dtype].kind;

    if (kind == VT_ST_OTHER)
        return vt_error_set(VT_EFORMAT,
                            "%s: tensor %s has dtype %s; only F32, F16, BF16 and F64 "
                            "can be read",
                            label, e->name, vt__dtypes[e->dtype].name);
    if ((rc = vt_tensorset_add(set, e->name, e->ndim, e->shape, NULL, &t)) < 0) {
        if (rc == VT_EINVAL)
            return vt_error_set(VT_EFORMAT, "%s: tensor %s appears twice in the header",
                                label, e->name);
        return rc;
    }
    n = (size_t)((e->end - e->begin) / vt__dtypes[e->dtype].size);
    switch (kind) {
    case VT_ST_F32:
        memcpy(t->data, src, n * sizeof(float));
        break;
    case VT_ST_F16:
        for (size_t i = 0; i < n; i++)
            t->data[i] = vt__half_to_float((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
        break;
    case VT_ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint32_t bits = (uint32_t)(src[2 * i] | src[2 * i + 1] << 8) << 16;
            memcpy(&t->data[i], &bits, sizeof bits);
        }
        break;
    case VT_ST_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + 8 * i, sizeof d);
            t->data[i] = vt__double_to_float(d);
        }
        break;
    }
    return 0;
}

int vt_safetensors_parse(vt_tensorset **out, const uint8_t *buf, size_t len,
                         const char *label)
{
    vt_tensorset *set = NULL;
    cJSON *root = NULL;
    const cJSON *item, *meta = NULL;
    vt__entry *ents = NULL;
    const char *hdr, *end = NULL;
    uint64_t n, have, total = 0;
    int nent = 0, rc = 0, pos = 0;

    *out = NULL;
    if (len < 8)
        return vt_error_set(VT_EFORMAT,
                            "%s: file is %zu bytes, too short for the 8-byte header length "
                            "(truncated?)",
                            label, len);
    n = vt__le64(buf);
    /* a JSON header begins with '{': without one this is some other file
     * (an image given where a model was meant) */
    const char *other = len > 8 && buf[8] != '{' ? " (is it a safetensors file at all?)" : "";
    if (n > VT_ST_MAX_HEADER)
        return vt_error_set(VT_EFORMAT,
                            "%s: header length %" PRIu64 " exceeds the limit of %llu bytes%s",
                            label, n, VT_ST_MAX_HEADER, other);
    if (n > len - 8)
        return vt_error_set(VT_EFORMAT,
                            "%s: header length %" PRIu64
                            " runs past the end of the file (%zu bytes): %s",
                            label, n, len, other[0] ? "not a safetensors file?" : "truncated");
    hdr = (const char *)buf + 8;
    if (!vt_utf8_valid(buf + 8, (size_t)n))
        return vt_error_set(VT_EFORMAT, "%s: header is not valid UTF-8", label);
    if (memchr(hdr, '\0', (size_t)n) || (n >= 3 && memcmp(hdr, "\xef\xbb\xbf", 3) == 0))
        return vt_error_set(VT_EFORMAT,
                            "%s: header is not valid JSON (it holds a NUL byte or a BOM)",
                            label);
    root = cJSON_ParseWithLengthOpts(hdr, (size_t)n, &end, 0);
    if (!root) {
        rc = vt_error_set(VT_EFORMAT, "%s: header is not valid JSON (error near byte %td)",
                          label, end ? end - hdr : (ptrdiff_t)0);
        goto cleanup;
    }
    for (const char *p = end; p < hdr + n; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            rc = vt_error_set(VT_EFORMAT,
                              "%s: header is not valid JSON (text after the object at "
                              "byte %td)",
                              label, p - hdr);
            goto cleanup;
        }
    if (!cJSON_IsObject(root)) {
        rc = vt_error_set(VT_EFORMAT, "%s: header is %s, not a JSON object", label,
                          vt__json_kind(root));
        goto cleanup;
    }

    if (!(set = vt_tensorset_new()) ||
        !(ents = calloc((size_t)cJSON_GetArraySize(root) + 1, sizeof *ents))) {
        rc = vt_error_set(VT_ENOMEM, "%s: out of memory", label);
        goto cleanup;
    }
    cJSON_ArrayForEach(item, root) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (meta) {
                rc = vt_error_set(VT_EFORMAT, "%s: \"__metadata__\" appears twice", label);
                goto cleanup;
            }
            meta = item;
            continue;
        }
        if (nent == VT_ST_MAX_ENTRIES) {
            rc = vt_error_set(VT_EFORMAT, "%s: header has more than the %d tensors supported",
                              label, VT_ST_MAX_ENTRIES);
            goto cleanup;
        }
        if ((rc = vt__parse_entry(&ents[nent], item, label)) < 0)
            goto cleanup;
        ents[nent].pos = pos++;
        nent++;
    }
    if (meta && (rc = vt__parse_metadata(set, meta, label)) < 0)
        goto cleanup;

    /* Sorted by offset, the tensors must cover [0, total) exactly once. */
    qsort(ents, (size_t)nent, sizeof *ents, vt__entry_cmp);
    for (int i = 0; i < nent; i++) {
        const vt__entry *e = &ents[i];
        if (i == 0 && e->begin != 0) {
            rc = vt_error_set(VT_EFORMAT,
                              "%s: tensor %s: data begins at byte %" PRIu64
                              " but the first tensor must begin at 0",
                              label, e->name, e->begin);
            goto cleanup;
        }
        if (e->begin > total) {
            rc = vt_error_set(VT_EFORMAT,
                              "%s: gap of %" PRIu64 " bytes between tensor %s (ends at %" PRIu64
                              ") and tensor %s (begins at %" PRIu64 ")",
                              label, e->begin - total, ents[i - 1].name, total, e->name,
                              e->begin);
            goto cleanup;
        }
        if (e->begin < total) {
            rc = vt_error_set(VT_EFORMAT,
                              "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64
                              "] overlap tensor %s (ends at %" PRIu64 ")",
                              label, e->name, e->begin, e->end, ents[i - 1].name, total);
            goto cleanup;
        }
        total = e->end;
    }
    have = (uint64_t)len - 8 - n;
    if (have < total) {
        rc = vt_error_set(VT_EFORMAT,
                          "%s: data buffer needs %" PRIu64 " bytes but the file has %" PRIu64
                          " after the header: truncated",
                          label, total, have);
        goto cleanup;
    }
    if (have > total) {
        rc = vt_error_set(VT_EFORMAT,
                          "%s: %" PRIu64 " trailing bytes after the data buffer (tensors end "
                          "at %" PRIu64 ")",
                          label, have - total, total);
        goto cleanup;
    }

    for (int i = 0; i < nent; i++)
        if ((rc = vt__convert(set, &ents[i], buf + 8 + n + ents[i].begin, label)) < 0)
            goto cleanup;
    *out = set;
    set = NULL;
cleanup:
    vt_tensorset_free(set);
    free(ents);
    cJSON_Delete(root);
    return rc;
}

int vt_safetensors_read(vt_tensorset **out, const char *path)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc;

    *out = NULL;
    if ((rc = vt_read_file(path, VT_ST_MAX_FILE, &buf, &len)) < 0)
        return rc;
    rc = vt_safetensors_parse(out, buf, len, path);
    free(buf);
    return rc;
}

/* The most header a metadata-only read parses: a model's header is a few
 * KiB (its metadata holds the job document and class names). */
#define VT_ST_MAX_META_HEADER (16ull << 20)

/* Reads the header of the file at path (not its data) into *root, a JSON
 * object the caller frees. */
static int vt__read_header(const char *path, cJSON **root)
{
    uint8_t len8[8];
    char *hdr = NULL;
    uint64_t n;
    int rc = 0, fd;
    FILE *f;

    *root = NULL;
    if ((rc = vt_open_read(AT_FDCWD, path, 0, &fd)) < 0)
        return rc;
    if (!(f = fdopen(fd, "rb"))) {
        close(fd);
        return vt_error_set(VT_ENOMEM, "out of memory");
    }
    if (fread(len8, 1, 8, f) != 8) {
        rc = vt_error_set(VT_EFORMAT, "%s: too short for a safetensors header", path);
        goto done;
    }
    if ((n = vt__le64(len8)) > VT_ST_MAX_META_HEADER) {
        rc = vt_error_set(VT_EFORMAT, "%s: header length %" PRIu64 " exceeds the limit", path, n);
        goto done;
    }
    if (!(hdr = malloc(n + 1))) {
        rc = vt_error_set(VT_ENOMEM, "out of memory");
        goto done;
    }
    if (fread(hdr, 1, n, f) != n) {
        rc = vt_error_set(VT_EFORMAT, "%s: header runs past the end of the file", path);
        goto done;
    }
    hdr[n] = '\0';
    if (!(*root = cJSON_ParseWithLength(hdr, n)) || !cJSON_IsObject(*root)) {
        cJSON_Delete(*root);
        *root = NULL;
        rc = vt_error_set(VT_EFORMAT, "%s: the header is not a JSON object", path);
    }
done:
    free(hdr);
    fclose(f);
    return rc;
}

int vt_safetensors_read_meta(vt_tensorset **out, const char *path)
{
    cJSON *root = NULL;
    int rc;

    *out = NULL;
    if ((rc = vt__read_header(path, &root)) < 0)
        return rc;
    if (!(*out = vt_tensorset_new())) {
        rc = vt_error_set(VT_ENOMEM, "out of memory");
        goto done;
    }
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    if (meta && (rc = vt__parse_metadata(*out, meta, path)) < 0) {
        vt_tensorset_free(*out);
        *out = NULL;
    }
done:
    cJSON_Delete(root);
    return rc;
}

int vt_safetensors_has_any(const char *path, const char *const *names, int n)
{
    cJSON *root = NULL;
    int rc, found = 0;

    if ((rc = vt__read_header(path, &root)) < 0)
        return rc;
    for (int i = 0; i < n && !found; i++)
        found = cJSON_GetObjectItemCaseSensitive(root, names[i]) != NULL;
    cJSON_Delete(root);
    return found;
}

static cJSON *vt__json_uint_raw(uint64_t v)
{
    char num[32];
    snprintf(num, sizeof num, "%" PRIu64, v);
    return cJSON_CreateRaw(num);
}

/* Builds the header JSON; *json is malloc'd by cJSON. */
static int vt__build_header(char **json, const vt_tensorset *set, const char *path)
{
    cJSON *root = NULL, *meta, *ent, *shape, *offs;
    uint64_t off = 0;
    int rc = 0;

    *json = NULL;
    if (!(root = cJSON_CreateObject()))
        goto nomem;
    if (set->nmeta > 0) {
        if (!(meta = cJSON_AddObjectToObject(root, "__metadata__")))
            goto nomem;
        for (int i = 0; i < set->nmeta; i++) {
            const char *k = set->meta_key[i], *v = set->meta_val[i];
            if (!vt_utf8_valid((const uint8_t *)k, strlen(k)) ||
                !vt_utf8_valid((const uint8_t *)v, strlen(v))) {
                rc = vt_error_set(VT_EINVAL, "%s: metadata \"%s\" is not valid UTF-8", path,
                                  k);
                goto cleanup;
            }
            if (!cJSON_AddStringToObject(meta, k, v))
                goto nomem;
        }
    }
    for (int i = 0; i < set->n; i++) {
        const vt_ntensor *t = &set->t[i];
        uint64_t nbytes = (uint64_t)vt_ntensor_numel(t) * sizeof(float);
        if (strcmp(t->name, "__metadata__") == 0 ||
            !vt_utf8_valid((const uint8_t *)t->name, strlen(t->name))) {
            rc = vt_error_set(VT_EINVAL, "%s: tensor name \"%s\" cannot be written", path,
                              t->name);
            goto cleanup;
        }
        if (!(ent = cJSON_AddObjectToObject(root, t->name)) ||
            !cJSON_AddStringToObject(ent, "dtype", "F32") ||
            !(shape = cJSON_AddArrayToObject(ent, "shape")) ||
            !(offs = cJSON_AddArrayToObject(ent, "data_offsets")))
            goto nomem;
        for (int d = 0; d < t->ndim; d++)
            if (!cJSON_AddItemToArray(shape, vt__json_uint_raw((uint64_t)t->shape[d])))
                goto nomem;
        if (!cJSON_AddItemToArray(offs, vt__json_uint_raw(off)) ||
            !cJSON_AddItemToArray(offs, vt__json_uint_raw(off + nbytes)))
            goto nomem;
        off += nbytes;
    }
    if (!(*json = cJSON_PrintUnformatted(root)))
        goto nomem;
    goto cleanup;
nomem:
    rc = vt_error_set(VT_ENOMEM, "%s: out of memory building the header", path);
cleanup:
    cJSON_Delete(root);
    return rc;
}

int vt_safetensors_write(int dirfd, const char *path, const vt_tensorset *set)
{
    vt_atomic_file *f = NULL;
    char *json = NULL, *hdr = NULL;
    size_t jlen, n;
    uint8_t len8[8];
    int rc;

    if (set->meta_lost) {
        rc = vt_error_set(VT_ENOMEM, "%s: out of memory while recording its metadata", path);
        goto cleanup;
    }
    if ((rc = vt__build_header(&json, set, path)) < 0)
        goto cleanup;
    jlen = strlen(json);
    n = (jlen + 7) / 8 * 8;
    if (n > VT_ST_MAX_HEADER) {
        rc = vt_error_set(VT_ETOOBIG, "%s: header of %zu bytes is over the format's limit",
                          path, n);
        goto cleanup;
    }
    if (!(hdr = malloc(n))) {
        rc = vt_error_set(VT_ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    memcpy(hdr, json, jlen);
    memset(hdr + jlen, ' ', n - jlen);
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)n >> (8 * i));

    if ((rc = vt_atomic_open(&f, dirfd, path)) < 0 ||
        (rc = vt_atomic_write(f, len8, sizeof len8)) < 0 ||
        (rc = vt_atomic_write(f, hdr, n)) < 0)
        goto cleanup;
    for (int i = 0; i < set->n; i++)
        if ((rc = vt_atomic_write(f, set->t[i].data,
                                  vt_ntensor_numel(&set->t[i]) * sizeof(float))) < 0)
            goto cleanup;
    rc = vt_atomic_commit(f);
    f = NULL;
cleanup:
    vt_atomic_abort(f);
    free(hdr);
    cJSON_free(json);
    return rc;
}

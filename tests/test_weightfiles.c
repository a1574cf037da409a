/* test_weightfiles.c - the weight-file formats: safetensors (round trip,
 * every kind of malformed file, dtype conversion) and Keras legacy HDF5
 * (files written here with libhdf5 in the layouts Keras and tf.keras use,
 * and damaged ones).
 *
 * Malformed safetensors inputs are parsed from exact-size heap copies, so an
 * over-read shows up under ASan.  HDF5 cases check that the reader leaves no
 * libhdf5 identifier open, on success and on every refusal.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <hdf5.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/fileio.h"
#include "../engine/h5keras.h"
#include "../engine/safetensors.h"
#include "../engine/weights.h"
#include "vt_test.h"

/* ---- helpers ----------------------------------------------------------- */

static char *path_in(const char *dir, const char *name)
{
    static char buf[4][4096];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

/* A safetensors file from a header (used as is, not padded) and `datalen`
 * data bytes of a fixed pattern, in an exact-size heap buffer. */
static uint8_t *st_bytes(const char *json, size_t datalen, size_t *len)
{
    size_t n = strlen(json);
    uint8_t *b = malloc(8 + n + datalen);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(b + 8, json, n);
    for (size_t i = 0; i < datalen; i++)
        b[8 + n + i] = (uint8_t)(i * 7 + 1);
    *len = 8 + n + datalen;
    return b;
}

/* Parses json + datalen bytes; returns the rc and frees everything. */
static int st_try(const char *json, size_t datalen)
{
    size_t len;
    uint8_t *b = st_bytes(json, datalen, &len);
    vt_tensorset *set = (vt_tensorset *)b; /* must be reset to NULL on failure */
    int rc = vt_safetensors_parse(&set, b, len, "bad.safetensors");
    if (rc < 0 && set != NULL)
        rc = 1; /* flags a reader that leaves *out set on failure */
    vt_tensorset_free(rc < 0 ? NULL : set);
    free(b);
    return rc;
}

/* Parses buf[0..len) from an exact-size copy. */
static int st_try_buf(const uint8_t *buf, size_t len)
{
    uint8_t *b = malloc(len ? len : 1);
    vt_tensorset *set = NULL;
    int rc;
    memcpy(b, buf, len);
    rc = vt_safetensors_parse(&set, b, len, "cut.safetensors");
    vt_tensorset_free(set);
    free(b);
    return rc;
}

static float frand(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* ---- safetensors ------------------------------------------------------- */

static void test_st_roundtrip(vt_backend *be)
{
    (void)be;
    const char *dir = vt_test_tmpdir("st_rt");
    vt_tensorset *set = vt_tensorset_new(), *back = NULL;
    const char *names[4] = {"zeta.weight", "alpha.bias", "scalar", "empty"};
    int64_t s0[4] = {2, 3, 4, 5}, s1[1] = {7}, s3[2] = {0, 4};
    uint8_t *raw = NULL;
    size_t rawlen;
    uint32_t seed = 1;
    float v0[120], v1[7], v2[1] = {-0.0f};
    uint64_t n;
    cJSON *hdr;
    int fd;

    for (int i = 0; i < 120; i++)
        v0[i] = frand(&seed);
    for (int i = 0; i < 7; i++)
        v1[i] = frand(&seed) * 1e-30f;
    v1[3] = INFINITY;
    v1[4] = -3.4028235e38f;
    VT_CHECK(set);
    VT_CHECK_OK(vt_tensorset_add(set, names[0], 4, s0, v0, NULL));
    VT_CHECK_OK(vt_tensorset_add(set, names[1], 1, s1, v1, NULL));
    VT_CHECK_OK(vt_tensorset_add(set, names[2], 0, NULL, v2, NULL));
    VT_CHECK_OK(vt_tensorset_add(set, names[3], 2, s3, NULL, NULL));
    VT_CHECK_OK(vt_tensorset_set_meta(set, "format", "vggtune/1"));
    VT_CHECK_OK(vt_tensorset_set_meta(set, "classes", "[\"caf\xc3\xa9\",\"a\\\"b\"]\n\t"));

    VT_CHECK_OK(vt_safetensors_write(AT_FDCWD, path_in(dir, "m.safetensors"), set));
    VT_CHECK_OK(vt_safetensors_read(&back, path_in(dir, "m.safetensors")));
    VT_CHECK_INT(back->n, 4);
    for (int i = 0; i < 4; i++) {
        VT_CHECK_STR(back->t[i].name, names[i]);
        VT_CHECK_INT(back->t[i].ndim, set->t[i].ndim);
        for (int d = 0; d < set->t[i].ndim; d++)
            VT_CHECK_INT(back->t[i].shape[d], set->t[i].shape[d]);
        VT_CHECK(memcmp(back->t[i].data, set->t[i].data,
                        vt_ntensor_numel(&set->t[i]) * sizeof(float)) == 0);
    }
    VT_CHECK(signbit(back->t[2].data[0]));
    VT_CHECK_INT(back->nmeta, 2);
    VT_CHECK_STR(vt_tensorset_meta(back, "format"), "vggtune/1");
    VT_CHECK_STR(vt_tensorset_meta(back, "classes"), "[\"caf\xc3\xa9\",\"a\\\"b\"]\n\t");
    vt_tensorset_free(back);
    back = NULL;

    /* The bytes: padded header, __metadata__ first, tensors in insertion
     * order with contiguous offsets, data right after. */
    VT_CHECK_OK(vt_read_file(path_in(dir, "m.safetensors"), 1 << 20, &raw, &rawlen));
    n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | raw[i];
    VT_CHECK_INT(n % 8, 0);
    VT_CHECK_INT(rawlen, 8 + n + (120 + 7 + 1 + 0) * 4);
    VT_CHECK_INT(raw[8], '{');
    hdr = cJSON_ParseWithLength((const char *)raw + 8, (size_t)n);
    VT_CHECK(hdr && cJSON_IsObject(hdr));
    {
        const cJSON *it = hdr->child;
        uint64_t off = 0;
        size_t nbytes[4] = {480, 28, 4, 0};
        int ok = it && strcmp(it->string, "__metadata__") == 0;
        for (int i = 0; ok && i < 4; i++) {
            it = it->next;
            const cJSON *o = it ? cJSON_GetObjectItem(it, "data_offsets") : NULL;
            const cJSON *dt = it ? cJSON_GetObjectItem(it, "dtype") : NULL;
            ok = it && strcmp(it->string, names[i]) == 0 && o && dt &&
                 strcmp(dt->valuestring, "F32") == 0 &&
                 cJSON_GetArrayItem(o, 0)->valuedouble == (double)off &&
                 cJSON_GetArrayItem(o, 1)->valuedouble == (double)(off + nbytes[i]);
            off += nbytes[i];
        }
        cJSON_Delete(hdr);
        VT_CHECK(ok);
    }
    {
        size_t close = 8 + n - 1; /* the header's closing brace, then spaces */
        while (close > 8 && raw[close] == ' ')
            close--;
        VT_CHECK_INT(raw[close], '}');
        VT_CHECK(8 + n - 1 - close < 8);
    }
    VT_CHECK(memcmp(raw + 8 + n, v0, sizeof v0) == 0);
    free(raw);
    raw = NULL;

    /* Replacing through a directory descriptor; no temporary left behind. */
    VT_CHECK_OK(vt_tensorset_set_meta(set, "format", "vggtune/2"));
    fd = open(dir, O_RDONLY | O_DIRECTORY);
    VT_CHECK(fd >= 0);
    VT_CHECK_OK(vt_safetensors_write(fd, "m.safetensors", set));
    close(fd);
    VT_CHECK_OK(vt_safetensors_read(&back, path_in(dir, "m.safetensors")));
    VT_CHECK_STR(vt_tensorset_meta(back, "format"), "vggtune/2");
    vt_tensorset_free(back);
    {
        DIR *d = opendir(dir);
        struct dirent *de;
        int files = 0;
        while ((de = readdir(d)))
            files += de->d_name[0] != '.';
        closedir(d);
        VT_CHECK_INT(files, 1);
    }
    vt_tensorset_free(set);
}

static void test_st_empty_and_nometa(vt_backend *be)
{
    (void)be;
    const char *dir = vt_test_tmpdir("st_empty");
    vt_tensorset *set = vt_tensorset_new(), *back = NULL;
    uint8_t *raw = NULL;
    size_t len;
    int64_t s[1] = {3};
    float v[3] = {1, 2, 3};

    VT_CHECK_OK(vt_safetensors_write(AT_FDCWD, path_in(dir, "e.safetensors"), set));
    VT_CHECK_OK(vt_read_file(path_in(dir, "e.safetensors"), 4096, &raw, &len));
    VT_CHECK_INT(len, 16);
    VT_CHECK(memcmp(raw + 8, "{}      ", 8) == 0);
    free(raw);
    VT_CHECK_OK(vt_safetensors_read(&back, path_in(dir, "e.safetensors")));
    VT_CHECK_INT(back->n, 0);
    VT_CHECK_INT(back->nmeta, 0);
    vt_tensorset_free(back);

    VT_CHECK_OK(vt_tensorset_add(set, "x", 1, s, v, NULL));
    VT_CHECK_OK(vt_safetensors_write(AT_FDCWD, path_in(dir, "x.safetensors"), set));
    VT_CHECK_OK(vt_read_file(path_in(dir, "x.safetensors"), 4096, &raw, &len));
    VT_CHECK(strstr((const char *)raw + 8, "__metadata__") == NULL);
    free(raw);
    vt_tensorset_free(set);
}

static void test_st_write_refusals(vt_backend *be)
{
    (void)be;
    const char *dir = vt_test_tmpdir("st_wr");
    vt_tensorset *set = vt_tensorset_new();
    int64_t s[1] = {1};

    VT_CHECK_OK(vt_tensorset_add(set, "__metadata__", 1, s, NULL, NULL));
    VT_CHECK_ERR(vt_safetensors_write(AT_FDCWD, path_in(dir, "a.safetensors"), set), VT_EINVAL,
                 "__metadata__");
    vt_tensorset_free(set);
    set = vt_tensorset_new();
    VT_CHECK_OK(vt_tensorset_set_meta(set, "name", "bad \xff utf8"));
    VT_CHECK_ERR(vt_safetensors_write(AT_FDCWD, path_in(dir, "b.safetensors"), set), VT_EINVAL,
                 "UTF-8");
    vt_tensorset_free(set);
    set = vt_tensorset_new();
    VT_CHECK_ERR(vt_safetensors_write(AT_FDCWD, path_in(dir, "no/such/dir/c.safetensors"), set),
                 VT_EIO, NULL);
    vt_tensorset_free(set);
    /* a metadata value that could not be recorded (out of memory) spoils
     * the set: no file without it */
    set = vt_tensorset_new();
    VT_CHECK_OK(vt_tensorset_set_meta(set, "format", "x"));
    set->meta_lost = 1;
    VT_CHECK_ERR(vt_safetensors_write(AT_FDCWD, path_in(dir, "d.safetensors"), set), VT_ENOMEM,
                 "metadata");
    vt_tensorset_free(set);
    {
        DIR *d = opendir(dir);
        struct dirent *de;
        int files = 0;
        while ((de = readdir(d)))
            files += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
        closedir(d);
        VT_CHECK_INT(files, 0);
    }
}

static void test_st_probe(vt_backend *be)
{
    (void)be;
    uint8_t h[16] = {16, 0, 0, 0, 0, 0, 0, 0, '{', '"'};
    VT_CHECK(vt_safetensors_probe(h, 16));
    VT_CHECK(vt_safetensors_probe(h, 8));
    VT_CHECK(!vt_safetensors_probe(h, 7));
    h[8] = '[';
    VT_CHECK(!vt_safetensors_probe(h, 16));
    h[8] = '{';
    h[0] = 1;
    VT_CHECK(!vt_safetensors_probe(h, 16));
    h[0] = 0x01;
    h[1] = 0xe1;
    h[2] = 0xf5;
    h[3] = 0x05; /* 100 000 001 */
    VT_CHECK(!vt_safetensors_probe(h, 16));
    h[0] = 0x00; /* 100 000 000 */
    VT_CHECK(vt_safetensors_probe(h, 16));
    h[7] = 0x80;
    VT_CHECK(!vt_safetensors_probe(h, 16));
    VT_CHECK(!vt_safetensors_probe((const uint8_t *)"\x89HDF\r\n\x1a\n", 8));
}

static void test_st_truncated(vt_backend *be)
{
    (void)be;
    const char *dir = vt_test_tmpdir("st_trunc");
    vt_tensorset *set = vt_tensorset_new();
    uint8_t *raw = NULL;
    size_t len, n;
    int64_t s[2] = {4, 5};
    float v[20] = {0};

    VT_CHECK_OK(vt_tensorset_add(set, "a", 2, s, v, NULL));
    VT_CHECK_OK(vt_tensorset_add(set, "b", 2, s, v, NULL));
    VT_CHECK_OK(vt_safetensors_write(AT_FDCWD, path_in(dir, "t.safetensors"), set));
    vt_tensorset_free(set);
    VT_CHECK_OK(vt_read_file(path_in(dir, "t.safetensors"), 4096, &raw, &len));
    n = raw[0] | (size_t)raw[1] << 8;
    VT_CHECK_INT(len, 8 + n + 160);
    VT_CHECK_OK(st_try_buf(raw, len));

    size_t cuts[] = {0, 1, 7, 8, 9, 8 + n / 2, 8 + n - 1, 8 + n, 8 + n + 1, 8 + n + 79,
                     8 + n + 80, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        const char *why = cuts[i] < 8       ? "too short"
                          : cuts[i] < 8 + n ? "runs past the end of the file"
                                            : "after the header: truncated";
        VT_CHECK_ERR(st_try_buf(raw, cuts[i]), VT_EFORMAT, why);
        VT_CHECK_CONTAINS(vt_error_msg(), "cut.safetensors: ");
        VT_CHECK_CONTAINS(vt_error_msg(), "truncated");
    }
    free(raw);
}

static void test_st_header_refusals(vt_backend *be)
{
    (void)be;
    uint8_t b[16] = {0};
    size_t len;
    uint8_t *p;

    /* Header length beyond the file, and over the 100 MB limit. */
    b[0] = 0xe8;
    b[1] = 0x03; /* 1000 */
    b[8] = '{';
    b[9] = '}';
    VT_CHECK_ERR(st_try_buf(b, 16), VT_EFORMAT, "header length 1000 runs past the end");
    b[0] = 0x01;
    b[1] = 0xe1;
    b[2] = 0xf5;
    b[3] = 0x05;
    VT_CHECK_ERR(st_try_buf(b, 16), VT_EFORMAT,
                 "header length 100000001 exceeds the limit of 100000000 bytes");
    memset(b, 0xff, 8);
    VT_CHECK_ERR(st_try_buf(b, 16), VT_EFORMAT, "exceeds the limit");
    /* Another kind of file (a JPEG's first bytes) gets a hint. */
    memcpy(b, "\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01", 12);
    VT_CHECK_ERR(st_try_buf(b, 16), VT_EFORMAT, "(is it a safetensors file at all?)");

    /* Not JSON, not an object, not UTF-8. */
    VT_CHECK_ERR(st_try("{\"a\": ", 0), VT_EFORMAT, "bad.safetensors: header is not valid JSON");
    VT_CHECK_ERR(st_try("{} x", 0), VT_EFORMAT, "not valid JSON");
    VT_CHECK_ERR(st_try("", 0), VT_EFORMAT, "not valid JSON");
    VT_CHECK_ERR(st_try("[1, 2]", 0), VT_EFORMAT, "header is an array, not a JSON object");
    VT_CHECK_ERR(st_try("\"x\"", 0), VT_EFORMAT, "not a JSON object");
    VT_CHECK_ERR(st_try("{\"caf\xe9\": 1}", 0), VT_EFORMAT, "not valid UTF-8");
    VT_CHECK_ERR(st_try("\xef\xbb\xbf{}", 0), VT_EFORMAT, "not valid JSON");
    p = st_bytes("{}  ", 0, &len);
    p[10] = '\0';
    VT_CHECK_ERR(st_try_buf(p, len), VT_EFORMAT, "NUL");
    free(p);

    /* At most 4096 tensors and 4096 metadata pairs: the duplicate check is
     * quadratic (100 000 empty tensors took 11 s). */
    for (int over = 0; over < 2; over++) {
        for (int meta = 0; meta < 2; meta++) {
            size_t cap = 64 * 4200;
            char *json = malloc(cap);
            size_t n = (size_t)snprintf(json, cap, "{%s", meta ? "\"__metadata__\":{" : "");
            for (int i = 0; i < 4096 + over; i++)
                n += (size_t)snprintf(json + n, cap - n,
                                      meta ? "%s\"k%d\":\"v\"" :
                                             "%s\"t%d\":{\"dtype\":\"F32\",\"shape\":[0],"
                                             "\"data_offsets\":[0,0]}",
                                      i ? "," : "", i);
            snprintf(json + n, cap - n, meta ? "}}" : "}");
            if (over)
                VT_CHECK_ERR(st_try(json, 0), VT_EFORMAT,
                             meta ? "__metadata__ has 4097 entries, more than the 4096"
                                  : "header has more than the 4096 tensors supported");
            else
                VT_CHECK_OK(st_try(json, 0));
            free(json);
        }
    }

    /* Valid edge cases: padding with whitespace, no tensors, UTF-8 names. */
    VT_CHECK_OK(st_try("{}\n \t ", 0));
    VT_CHECK_OK(st_try("{\"caf\xc3\xa9\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}",
                       4));
}

static void test_st_entry_refusals(vt_backend *be)
{
    (void)be;
#define E(body) "{\"w\":" body "}"
    VT_CHECK_ERR(st_try(E("[]"), 4), VT_EFORMAT, "tensor w: entry is an array, not an object");
    VT_CHECK_ERR(st_try(E("{\"shape\":[1],\"data_offsets\":[0,4]}"), 4), VT_EFORMAT,
                 "bad.safetensors: tensor w: missing \"dtype\"");
    VT_CHECK_ERR(st_try(E("{\"dtype\":\"F32\",\"data_offsets\":[0,4]}"), 4), VT_EFORMAT,
                 "tensor w: missing \"shape\"");
    VT_CHECK_ERR(st_try(E("{\"dtype\":\"F32\",\"shape\":[1]}"), 4), VT_EFORMAT,
                 "tensor w: missing \"data_offsets\"");
    VT_CHECK_ERR(st_try(E("{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}"), 4),
                 VT_EFORMAT, "tensor w: unknown dtype \"F33\"");
    VT_CHECK_ERR(st_try(E("{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}"), 4),
                 VT_EFORMAT, "unknown dtype \"f32\"");
    VT_CHECK_ERR(st_try(E("{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}"), 4), VT_EFORMAT,
                 "tensor w: \"dtype\" is a number, not a string");
    VT_CHECK_ERR(st_try(E("{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}"), 4),
                 VT_EFORMAT, "tensor w: shape[0] is not a non-negative integer");
    VT_CHECK_ERR(st_try(E("{\"dtype\":\"F32\",\"shape\":[1,1.5],\"data_offsets\":[0,4]}"), 4),
                 VT_EFORMAT, "shape[1] is not a non-negative integer");
    VT_CHECK_ERR(st_try(E("{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}"), 4),
                 VT_EFORMAT, "shape[0] is not a non-negative integer");
    VT_CHECK_ERR(st_try(E("{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}"), 4),
                 VT_EFORMAT, "\"shape\" is a number, not an array");
    VT_CHECK_ERR(st_try(E("{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                          "\"data_offsets\":[0,4]}"),
                        4),
                 VT_EFORMAT, "tensor w: rank 9");
    VT_CHECK_ERR(st_try(E("{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296,4294967296],"
                          "\"data_offsets\":[0,4]}"),
                        4),
                 VT_EFORMAT, "tensor w: shape overflows");
    VT_CHECK_ERR(st_try(E("{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],"
                          "\"data_offsets\":[0,4]}"),
                        4),
                 VT_EFORMAT, "tensor w: shape overflows");
    VT_CHECK_ERR(st_try(E("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}"), 4),
                 VT_EFORMAT, "tensor w: \"data_offsets\" is not two non-negative integers");
    VT_CHECK_ERR(st_try(E("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}"), 4),
                 VT_EFORMAT, "\"data_offsets\" is not two non-negative integers");
    VT_CHECK_ERR(st_try(E("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}"), 4),
                 VT_EFORMAT, "\"data_offsets\" is not two non-negative integers");
    VT_CHECK_ERR(st_try(E("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{}}"), 4),
                 VT_EFORMAT, "\"data_offsets\" is not two non-negative integers");
    VT_CHECK_ERR(st_try(E("{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}"), 4),
                 VT_EFORMAT, "tensor w: data_offsets [4, 0] end before they begin");
    VT_CHECK_ERR(st_try(E("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}"), 4),
                 VT_EFORMAT, "data_offsets [0, 4] hold 4 bytes but shape [2] of F32 needs 8");
    VT_CHECK_ERR(st_try(E("{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,4]}"), 4),
                 VT_EFORMAT, "hold 4 bytes but shape [3] of BF16 needs 6");
#undef E

    /* The message quoted in the brief, word for word. */
    {
        const char *j = "{\"features.0.weight\":{\"dtype\":\"F32\",\"shape\":[64,3,3,3],"
                        "\"data_offsets\":[0,100]}}";
        size_t len;
        uint8_t *b = st_bytes(j, 100, &len);
        vt_tensorset *set = NULL;
        VT_CHECK_ERR(vt_safetensors_parse(&set, b, len, "model.safetensors"), VT_EFORMAT, NULL);
        free(b);
        VT_CHECK(set == NULL);
        VT_CHECK_STR(vt_error_msg(),
                     "model.safetensors: tensor features.0.weight: data_offsets [0, 100] hold "
                     "100 bytes but shape [64, 3, 3, 3] of F32 needs 6912");
    }

    /* Duplicate names: the later entry would silently win elsewhere. */
    VT_CHECK_ERR(st_try("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                        8),
                 VT_EFORMAT, "tensor w appears twice");
}

static void test_st_layout_refusals(vt_backend *be)
{
    (void)be;
#define T(name, b, e, n) \
    "\"" name "\":{\"dtype\":\"F32\",\"shape\":[" #n "],\"data_offsets\":[" #b "," #e "]}"
    VT_CHECK_OK(st_try("{" T("a", 0, 8, 2) "," T("b", 8, 16, 2) "}", 16));
    VT_CHECK_OK(st_try("{" T("b", 8, 16, 2) "," T("a", 0, 8, 2) "}", 16));
    VT_CHECK_ERR(st_try("{" T("a", 0, 8, 2) "," T("b", 4, 12, 2) "}", 12), VT_EFORMAT,
                 "bad.safetensors: tensor b: data_offsets [4, 12] overlap tensor a (ends at 8)");
    VT_CHECK_ERR(st_try("{" T("a", 0, 8, 2) "," T("b", 0, 8, 2) "}", 8), VT_EFORMAT,
                 "overlap");
    VT_CHECK_ERR(st_try("{" T("a", 0, 4, 1) "," T("b", 8, 12, 1) "}", 12), VT_EFORMAT,
                 "gap of 4 bytes between tensor a (ends at 4) and tensor b (begins at 8)");
    VT_CHECK_ERR(st_try("{" T("a", 4, 8, 1) "}", 8), VT_EFORMAT,
                 "tensor a: data begins at byte 4 but the first tensor must begin at 0");
    VT_CHECK_ERR(st_try("{" T("a", 0, 4, 1) "," T("b", 4, 8, 1) "}", 12), VT_EFORMAT,
                 "bad.safetensors: 4 trailing bytes after the data buffer (tensors end at 8)");
    VT_CHECK_ERR(st_try("{}", 1), VT_EFORMAT, "1 trailing bytes");
    VT_CHECK_ERR(st_try("{" T("a", 0, 4, 1) "," T("b", 4, 8, 1) "}", 7), VT_EFORMAT,
                 "data buffer needs 8 bytes but the file has 7 after the header: truncated");
    /* Zero-size tensors sit anywhere inside the tiling. */
    VT_CHECK_OK(st_try("{" T("a", 0, 4, 1) "," T("z", 4, 4, 0) "," T("b", 4, 8, 1) "}", 8));
#undef T

    VT_CHECK_ERR(st_try("{\"__metadata__\":{\"k\":1}}", 0), VT_EFORMAT,
                 "bad.safetensors: __metadata__ value of \"k\" is a number, not a string");
    VT_CHECK_ERR(st_try("{\"__metadata__\":{\"a\":\"x\",\"k\":null}}", 0), VT_EFORMAT,
                 "value of \"k\" is null, not a string");
    VT_CHECK_ERR(st_try("{\"__metadata__\":[\"x\"]}", 0), VT_EFORMAT,
                 "\"__metadata__\" is an array, not an object");
}

static void test_st_dtype_refusals(vt_backend *be)
{
    (void)be;
    static const struct {
        const char *dtype;
        int size;
    } others[] = {{"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"I16", 2},     {"U16", 2},
                  {"I32", 4},  {"U32", 4}, {"I64", 8}, {"U64", 8},     {"F8_E4M3", 1},
                  {"F8_E5M2", 1}};
    char json[256], want[128];
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        /* Right size, so the only fault is the dtype. */
        snprintf(json, sizeof json,
                 "{\"f\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"idx\":{\"dtype\":\"%s\",\"shape\":[3],\"data_offsets\":[4,%d]}}",
                 others[i].dtype, 4 + 3 * others[i].size);
        snprintf(want, sizeof want, "bad.safetensors: tensor idx has dtype %s; only F32",
                 others[i].dtype);
        VT_CHECK_ERR(st_try(json, (size_t)(4 + 3 * others[i].size)), VT_EFORMAT, want);
    }
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void test_st_convert(vt_backend *be)
{
    (void)be;
    /* Header deliberately 5 bytes off a multiple of 8 so every tensor sits
     * unaligned; the F64 tensor is listed first but stored last. */
    static const uint16_t h16[] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400,
                                   0x7c00, 0xfc00, 0x8000, 0x3555, 0x7e00};
    static const float f16_want[] = {1.0f, -2.0f, 65504.0f, 5.9604645e-08f,
                                     6.0975552e-05f, 6.1035156e-05f, INFINITY, -INFINITY,
                                     -0.0f, 0.333251953125f, NAN};
    static const uint16_t hb16[] = {0x3f80, 0x4049, 0xff80, 0x0001, 0x8000, 0x7fc0};
    static const double f64[] = {1.0 / 3.0, 2.5, 1e300, -1e300, 1e-50, -0.0, 16777217.0};
    char json[1024];
    uint8_t *b;
    size_t len, n16 = 11, nb16 = 6, n64 = 7, nf = 2;
    size_t o1 = n16 * 2, o2 = o1 + nb16 * 2, o3 = o2 + nf * 4, o4 = o3 + n64 * 8;
    float f32[2] = {-1.5f, 3.0e-39f};
    vt_tensorset *set = NULL;
    const vt_ntensor *t;

    snprintf(json, sizeof json,
             "{\"d\":{\"dtype\":\"F64\",\"shape\":[7],\"data_offsets\":[%zu,%zu]},"
             "\"h\":{\"dtype\":\"F16\",\"shape\":[11],\"data_offsets\":[0,%zu]},"
             "\"__metadata__\":{\"source\":\"hand\"},"
             "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[%zu,%zu]},"
             "\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[%zu,%zu]}}",
             o3, o4, o1, o1, o2, o2, o3);
    {
        size_t jl = strlen(json);
        while ((jl + 8) % 8 != 5)
            json[jl++] = ' ';
        json[jl] = '\0';
    }
    b = st_bytes(json, o4, &len);
    uint8_t *data = b + len - o4;
    for (size_t i = 0; i < n16; i++)
        put16(data + 2 * i, h16[i]);
    for (size_t i = 0; i < nb16; i++)
        put16(data + o1 + 2 * i, hb16[i]);
    memcpy(data + o2, f32, sizeof f32);
    memcpy(data + o3, f64, sizeof f64);
    VT_CHECK_OK(vt_safetensors_parse(&set, b, len, "conv"));
    free(b);

    VT_CHECK_INT(set->n, 4);
    VT_CHECK_STR(set->t[0].name, "h"); /* data order */
    VT_CHECK_STR(set->t[1].name, "b");
    VT_CHECK_STR(set->t[2].name, "f");
    VT_CHECK_STR(set->t[3].name, "d");
    VT_CHECK_STR(vt_tensorset_meta(set, "source"), "hand");

    t = vt_tensorset_find(set, "h");
    for (size_t i = 0; i + 1 < n16; i++) {
        VT_CHECK(memcmp(&t->data[i], &f16_want[i], 4) == 0 || t->data[i] == f16_want[i]);
        VT_CHECK(signbit(t->data[i]) == signbit(f16_want[i]));
    }
    VT_CHECK(isnan(t->data[n16 - 1]));

    t = vt_tensorset_find(set, "b");
    VT_CHECK_INT(t->ndim, 2);
    VT_CHECK_INT(t->shape[0], 2);
    VT_CHECK_INT(t->shape[1], 3);
    VT_CHECK(t->data[0] == 1.0f);
    VT_CHECK(t->data[1] == 3.140625f);
    VT_CHECK(t->data[2] == -INFINITY);
    VT_CHECK(t->data[3] == ldexpf(1.0f, -133));
    VT_CHECK(t->data[4] == 0.0f && signbit(t->data[4]));
    VT_CHECK(isnan(t->data[5]));

    t = vt_tensorset_find(set, "f");
    VT_CHECK(memcmp(t->data, f32, sizeof f32) == 0);

    t = vt_tensorset_find(set, "d");
    VT_CHECK(t->data[0] == (float)(1.0 / 3.0));
    VT_CHECK(t->data[1] == 2.5f);
    VT_CHECK(t->data[2] == INFINITY);
    VT_CHECK(t->data[3] == -INFINITY);
    VT_CHECK(t->data[4] == 0.0f);
    VT_CHECK(t->data[5] == 0.0f && signbit(t->data[5]));
    VT_CHECK(t->data[6] == 16777216.0f);
    vt_tensorset_free(set);
}

static void test_st_read_file(vt_backend *be)
{
    (void)be;
    const char *dir = vt_test_tmpdir("st_file");
    vt_tensorset *set = NULL;
    VT_CHECK_ERR(vt_safetensors_read(&set, path_in(dir, "missing.safetensors")), VT_ENOTFOUND,
                 "missing.safetensors");
    VT_CHECK_OK(vt_write_file_atomic(AT_FDCWD, path_in(dir, "junk"), "\x02\0\0\0\0\0\0\0{]", 10));
    VT_CHECK_ERR(vt_safetensors_read(&set, path_in(dir, "junk")), VT_EFORMAT, "/junk: header");
    VT_CHECK(set == NULL);
}

/* ---- Keras HDF5: writing test files ------------------------------------ */

enum { NAMES_FIXED, NAMES_VLEN, NAMES_EMPTY_F64, NAMES_NULLSPACE, NAMES_SPACEPAD, NAMES_NULLTERM };

/* Writes attribute `name` of obj as a 1-D array of strings: fixed-length
 * null-padded bytes (numpy 'S', as h5py stores Keras' lists), the other two
 * fixed-length paddings (space-padded as Fortran writes, null-terminated), or
 * variable-length UTF-8; or an empty list as h5py stores [] (a float64 array
 * of shape (0,)) or as a null dataspace. */
static int h5w_names(hid_t obj, const char *name, const char *const *v, int n, int mode)
{
    hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID, attr = H5I_INVALID_HID;
    hsize_t dims[1] = {(hsize_t)n};
    char *fixed = NULL;
    size_t width = 1;
    int rc = -1;

    if (mode == NAMES_NULLSPACE) {
        space = H5Screate(H5S_NULL);
        type = H5Tcopy(H5T_IEEE_F64LE);
    } else if (mode == NAMES_EMPTY_F64) {
        dims[0] = 0;
        space = H5Screate_simple(1, dims, NULL);
        type = H5Tcopy(H5T_IEEE_F64LE);
    } else {
        space = H5Screate_simple(1, dims, NULL);
        type = H5Tcopy(H5T_C_S1);
    }
    if (space < 0 || type < 0)
        goto cleanup;
    if (mode == NAMES_FIXED || mode == NAMES_SPACEPAD || mode == NAMES_NULLTERM) {
        H5T_str_t pad = mode == NAMES_FIXED      ? H5T_STR_NULLPAD
                        : mode == NAMES_SPACEPAD ? H5T_STR_SPACEPAD
                                                 : H5T_STR_NULLTERM;
        for (int i = 0; i < n; i++)
            if (strlen(v[i]) > width)
                width = strlen(v[i]);
        width += mode == NAMES_FIXED ? 0 : 3;
        if (H5Tset_size(type, width) < 0 || H5Tset_strpad(type, pad) < 0 ||
            !(fixed = calloc((size_t)n + 1, width)))
            goto cleanup;
        if (mode == NAMES_SPACEPAD)
            memset(fixed, ' ', (size_t)n * width);
        for (int i = 0; i < n; i++)
            memcpy(fixed + (size_t)i * width, v[i], strlen(v[i]));
    } else if (mode == NAMES_VLEN) {
        if (H5Tset_size(type, H5T_VARIABLE) < 0 || H5Tset_cset(type, H5T_CSET_UTF8) < 0)
            goto cleanup;
    }
    if ((attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT)) < 0)
        goto cleanup;
    if (fixed && n > 0 && H5Awrite(attr, type, fixed) < 0)
        goto cleanup;
    if (mode == NAMES_VLEN && n > 0 && H5Awrite(attr, type, v) < 0)
        goto cleanup;
    rc = 0;
cleanup:
    free(fixed);
    if (attr >= 0)
        H5Aclose(attr);
    if (space >= 0)
        H5Sclose(space);
    if (type >= 0)
        H5Tclose(type);
    if (rc < 0)
        vt_test_fail(__FILE__, __LINE__, "cannot write attribute %s", name);
    return rc;
}

/* Writes a scalar fixed-length string attribute (like Keras' backend). */
static int h5w_scalar_str(hid_t obj, const char *name, const char *s)
{
    hid_t type = H5Tcopy(H5T_C_S1), space = H5Screate(H5S_SCALAR), attr = H5I_INVALID_HID;
    int rc = -1;
    if (type >= 0 && space >= 0 && H5Tset_size(type, strlen(s)) >= 0 &&
        (attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
        H5Awrite(attr, type, s) >= 0)
        rc = 0;
    if (attr >= 0)
        H5Aclose(attr);
    H5Sclose(space);
    H5Tclose(type);
    return rc;
}

/* Creates dataset obj[path] (intermediate groups included) of the given file
 * type from data of the given memory type; data NULL leaves it unwritten. */
static int h5w_data(hid_t obj, const char *path, hid_t ftype, hid_t mtype, int rank,
                    const hsize_t *dims, const void *data, int chunked)
{
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t space = H5Screate_simple(rank, dims, NULL), dset = H5I_INVALID_HID;
    hsize_t chunk[16];
    int rc = -1;
    for (int i = 0; i < rank; i++)
        chunk[i] = 1;
    if (lcpl < 0 || dcpl < 0 || space < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0)
        goto cleanup;
    if (chunked && H5Pset_chunk(dcpl, rank, chunk) < 0)
        goto cleanup;
    if ((dset = H5Dcreate2(obj, path, ftype, space, lcpl, dcpl, H5P_DEFAULT)) < 0)
        goto cleanup;
    if (data && H5Dwrite(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        goto cleanup;
    rc = 0;
cleanup:
    if (dset >= 0)
        H5Dclose(dset);
    if (space >= 0)
        H5Sclose(space);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    if (rc < 0)
        vt_test_fail(__FILE__, __LINE__, "cannot write dataset %s", path);
    return rc;
}

/* Deterministic test values: tensor k, element i. */
static double h5_val(int k, size_t i)
{
    return (double)k * 0.25 + (double)(i % 41) * 0.0123 - 0.2 + (double)i * 1e-9;
}

typedef struct {
    int names_mode;  /* NAMES_FIXED or NAMES_VLEN */
    int split;       /* layer_names and weight_names split into name0, name1 */
    int tf_names;    /* "block1_conv1/kernel:0" rather than "block1_conv1_W_1:0" */
    int empty_mode;  /* how layers without weights store their empty list */
} keras_style;

/* The VGG-like test model: layer, kernel shape (HWIO), float64 or not. */
static const struct {
    const char *layer;
    int cin, cout, f64;
} keras_layers[] = {
    {"input_1", 0, 0, 0},     {"block1_conv1", 3, 4, 0}, {"block1_conv2", 4, 4, 0},
    {"block1_pool", 0, 0, 0}, {"block2_conv1", 4, 2, 1}, {"flatten", 0, 0, 0},
};
#define N_KERAS_LAYERS ((int)(sizeof keras_layers / sizeof keras_layers[0]))

static void keras_wname(char *buf, size_t len, const char *layer, int bias, int tf)
{
    if (tf)
        snprintf(buf, len, "%s/%s:0", layer, bias ? "bias" : "kernel");
    else
        snprintf(buf, len, "%s_%s_1:0", layer, bias ? "b" : "W");
}

/* Writes a Keras weight file in the given style.  Groups are created in
 * reverse order so only layer_names can give the right order. */
static int h5w_keras(const char *path, const keras_style *st)
{
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const char *lnames[N_KERAS_LAYERS];
    int rc = -1;

    if (file < 0)
        return -1;
    for (int l = 0; l < N_KERAS_LAYERS; l++)
        lnames[l] = keras_layers[l].layer;
    if (st->split) {
        if (h5w_names(file, "layer_names0", lnames, 2, st->names_mode) < 0 ||
            h5w_names(file, "layer_names1", lnames + 2, N_KERAS_LAYERS - 2, st->names_mode) < 0)
            goto cleanup;
    } else if (h5w_names(file, "layer_names", lnames, N_KERAS_LAYERS, st->names_mode) < 0) {
        goto cleanup;
    }
    if (h5w_scalar_str(file, "backend", "tensorflow") < 0 ||
        h5w_scalar_str(file, "keras_version", "2.2.4") < 0)
        goto cleanup;
    for (int l = N_KERAS_LAYERS - 1; l >= 0; l--) {
        hid_t g = H5Gcreate2(file, lnames[l], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        char wn[2][128];
        const char *wv[2] = {wn[0], wn[1]};
        int bad = g < 0;
        if (!bad && keras_layers[l].cin == 0) {
            bad = h5w_names(g, "weight_names", NULL, 0, st->empty_mode) < 0;
        } else if (!bad) {
            int cin = keras_layers[l].cin, cout = keras_layers[l].cout;
            hsize_t kd[4] = {3, 3, (hsize_t)cin, (hsize_t)cout}, bd[1] = {(hsize_t)cout};
            size_t nk = (size_t)9 * cin * cout;
            double *kv = malloc(nk * sizeof *kv), bv[64];
            for (int b = 0; b < 2; b++)
                keras_wname(wn[b], sizeof wn[b], lnames[l], b, st->tf_names);
            for (size_t i = 0; i < nk; i++)
                kv[i] = h5_val(2 * l, i);
            for (int i = 0; i < cout; i++)
                bv[i] = h5_val(2 * l + 1, (size_t)i);
            hid_t ft = keras_layers[l].f64 ? H5T_IEEE_F64LE : H5T_IEEE_F32LE;
            bad = !kv || h5w_data(g, wn[0], ft, H5T_NATIVE_DOUBLE, 4, kd, kv, 0) < 0 ||
                  h5w_data(g, wn[1], ft, H5T_NATIVE_DOUBLE, 1, bd, bv, 0) < 0;
            if (!bad && st->split)
                bad = h5w_names(g, "weight_names0", wv, 1, st->names_mode) < 0 ||
                      h5w_names(g, "weight_names1", wv + 1, 1, st->names_mode) < 0;
            else if (!bad)
                bad = h5w_names(g, "weight_names", wv, 2, st->names_mode) < 0;
            free(kv);
        }
        if (g >= 0)
            H5Gclose(g);
        if (bad)
            goto cleanup;
    }
    /* A group that layer_names does not list is not read. */
    {
        hid_t g = H5Gcreate2(file, "optimizer_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0)
            goto cleanup;
        H5Gclose(g);
    }
    rc = 0;
cleanup:
    H5Fclose(file);
    return rc;
}

/* Proof that the reader closes every libhdf5 identifier it opens.  Files,
 * groups, datasets and attributes are counted by H5Fget_obj_count; transient
 * dataspaces and datatypes are not, and H5Inmembers refuses library types,
 * so we rely on identifiers of a kind being numbered in sequence: every
 * dataspace or datatype the reader made lies between two made before and
 * after it, and none of those may still be valid.  The calling thread's
 * error stack must be empty too: its entries hold references to libhdf5's
 * error messages, and a stack left on a daemon thread makes libhdf5's
 * shutdown loop.  Every other API call clears that stack on entry, so the
 * check must come right after the read. */
typedef struct {
    hid_t space, type;
} h5_mark;

static h5_mark h5_mark_now(void)
{
    h5_mark m = {H5Screate(H5S_SCALAR), H5Tcopy(H5T_NATIVE_INT)};
    H5Sclose(m.space);
    H5Tclose(m.type);
    return m;
}

static int h5_leaks_since(h5_mark before)
{
    int leaks = (int)H5Eget_num(H5E_DEFAULT);
    h5_mark after = h5_mark_now();
    leaks += (int)H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
    for (hid_t id = before.space + 1; id < after.space; id++)
        leaks += H5Iis_valid(id) > 0;
    for (hid_t id = before.type + 1; id < after.type; id++)
        leaks += H5Iis_valid(id) > 0;
    return leaks;
}

#define VT_CHECK_NO_H5_LEAK(before) VT_CHECK_INT(h5_leaks_since(before), 0)

/* Checks a set read from h5w_keras()'s file. */
static int check_keras_set(const vt_tensorset *set, const keras_style *st)
{
    int k = 0;
    for (int l = 0; l < N_KERAS_LAYERS; l++) {
        int cin = keras_layers[l].cin, cout = keras_layers[l].cout;
        if (cin == 0)
            continue;
        for (int b = 0; b < 2; b++, k++) {
            char wn[128], want[256];
            const vt_ntensor *t;
            keras_wname(wn, sizeof wn, keras_layers[l].layer, b, st->tf_names);
            snprintf(want, sizeof want, "%s/%s", keras_layers[l].layer, wn);
            if (k >= set->n || strcmp(set->t[k].name, want) != 0) {
                vt_test_fail(__FILE__, __LINE__, "tensor %d is %s, want %s", k,
                             k < set->n ? set->t[k].name : "(none)", want);
                return -1;
            }
            t = &set->t[k];
            if (b ? (t->ndim != 1 || t->shape[0] != cout)
                  : (t->ndim != 4 || t->shape[0] != 3 || t->shape[1] != 3 ||
                     t->shape[2] != cin || t->shape[3] != cout)) {
                vt_test_fail(__FILE__, __LINE__, "%s has the wrong shape", want);
                return -1;
            }
            for (size_t i = 0; i < vt_ntensor_numel(t); i++) {
                double v = h5_val(2 * l + b, i);
                float expect = (float)v; /* HDF5 rounds like a C cast */
                if (t->data[i] != expect) {
                    vt_test_fail(__FILE__, __LINE__, "%s[%zu] = %.9g, want %.9g", want, i,
                                 t->data[i], expect);
                    return -1;
                }
            }
        }
    }
    if (k != set->n) {
        vt_test_fail(__FILE__, __LINE__, "%d tensors, want %d", set->n, k);
        return -1;
    }
    return 0;
}

/* ---- Keras HDF5: reading ----------------------------------------------- */

static void test_h5_probe(vt_backend *be)
{
    (void)be;
    VT_CHECK(vt_h5_probe((const uint8_t *)"\x89HDF\r\n\x1a\nrest", 12));
    VT_CHECK(vt_h5_probe((const uint8_t *)"\x89HDF\r\n\x1a\n", 8));
    VT_CHECK(!vt_h5_probe((const uint8_t *)"\x89HDF\r\n\x1a", 7));
    VT_CHECK(!vt_h5_probe((const uint8_t *)"\x89HDF\n\n\x1a\n", 8));
    VT_CHECK(!vt_h5_probe((const uint8_t *)"\x10\0\0\0\0\0\0\0{}", 10));
}

static void run_keras_style(const keras_style *st, const char *tag)
{
    const char *dir = vt_test_tmpdir(tag);
    vt_tensorset *set = NULL;
    h5_mark before;

    VT_CHECK(h5w_keras(path_in(dir, "w.h5"), st) == 0);
    before = h5_mark_now();
    VT_CHECK_OK(vt_h5keras_read(&set, path_in(dir, "w.h5")));
    VT_CHECK_NO_H5_LEAK(before);
    VT_CHECK(check_keras_set(set, st) == 0);
    VT_CHECK_INT(set->nmeta, 0);
    vt_tensorset_free(set);
}

static void test_h5_keras1_fixed(vt_backend *be)
{
    (void)be;
    keras_style st = {NAMES_FIXED, 0, 0, NAMES_EMPTY_F64};
    run_keras_style(&st, "h5_fixed");
}

static void test_h5_fixed_nullspace(vt_backend *be)
{
    (void)be;
    keras_style st = {NAMES_FIXED, 0, 0, NAMES_NULLSPACE};
    run_keras_style(&st, "h5_null");
}

static void test_h5_vlen(vt_backend *be)
{
    (void)be;
    keras_style st = {NAMES_VLEN, 0, 0, NAMES_EMPTY_F64};
    run_keras_style(&st, "h5_vlen");
}

static void test_h5_split_fixed(vt_backend *be)
{
    (void)be;
    keras_style st = {NAMES_FIXED, 1, 0, NAMES_EMPTY_F64};
    run_keras_style(&st, "h5_split");
}

static void test_h5_tf_names_vlen_split(vt_backend *be)
{
    (void)be;
    keras_style st = {NAMES_VLEN, 1, 1, NAMES_VLEN};
    run_keras_style(&st, "h5_tf");
}

static void test_h5_tf_names_fixed(vt_backend *be)
{
    (void)be;
    keras_style st = {NAMES_FIXED, 0, 1, NAMES_EMPTY_F64};
    run_keras_style(&st, "h5_tf_fixed");
}

/* A file with one layer whose group gets `setup` applied. */
typedef int (*h5_setup_fn)(hid_t file, hid_t group);

static int h5w_one_layer(const char *path, const char *layer_attr, h5_setup_fn setup)
{
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), g = H5I_INVALID_HID;
    const char *ln[1] = {"dense_1"};
    int rc = -1;
    if (file < 0)
        return -1;
    if (layer_attr && h5w_names(file, layer_attr, ln, 1, NAMES_FIXED) < 0)
        goto cleanup;
    if ((g = H5Gcreate2(file, "dense_1", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0)
        goto cleanup;
    rc = setup(file, g);
cleanup:
    if (g >= 0)
        H5Gclose(g);
    H5Fclose(file);
    return rc;
}

static const char *const dense_w[2] = {"dense_1_W_1:0", "dense_1_b_1:0"};

static int setup_good(hid_t file, hid_t g)
{
    hsize_t d[2] = {2, 3};
    float v[6] = {1, 2, 3, 4, 5, 6};
    (void)file;
    return h5w_names(g, "weight_names", dense_w, 2, NAMES_FIXED) < 0 ||
                   h5w_data(g, dense_w[0], H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, d, v, 0) < 0 ||
                   h5w_data(g, dense_w[1], H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, d + 1, v, 0) < 0
               ? -1
               : 0;
}

static int setup_missing_dataset(hid_t file, hid_t g)
{
    hsize_t d[2] = {2, 3};
    float v[6] = {0};
    (void)file;
    return h5w_names(g, "weight_names", dense_w, 2, NAMES_FIXED) < 0 ||
                   h5w_data(g, dense_w[0], H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, d, v, 0) < 0
               ? -1
               : 0;
}

static int setup_int_dataset(hid_t file, hid_t g)
{
    hsize_t d[1] = {3};
    int v[3] = {1, 2, 3};
    (void)file;
    return h5w_names(g, "weight_names", dense_w, 1, NAMES_FIXED) < 0 ||
                   h5w_data(g, dense_w[0], H5T_STD_I32LE, H5T_NATIVE_INT, 1, d, v, 0) < 0
               ? -1
               : 0;
}

static int setup_no_weight_names(hid_t file, hid_t g)
{
    hsize_t d[1] = {3};
    float v[3] = {1, 2, 3};
    (void)file;
    return h5w_data(g, dense_w[0], H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, d, v, 0);
}

static int setup_rank9(hid_t file, hid_t g)
{
    hsize_t d[9] = {1, 1, 1, 1, 1, 1, 1, 1, 2};
    float v[2] = {1, 2};
    (void)file;
    return h5w_names(g, "weight_names", dense_w, 1, NAMES_FIXED) < 0 ||
                   h5w_data(g, dense_w[0], H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 9, d, v, 0) < 0
               ? -1
               : 0;
}

static int setup_huge(hid_t file, hid_t g)
{
    /* 2^31 + 2^16 elements, chunked and never written: a tiny file. */
    hsize_t d[2] = {65536, 32769};
    (void)file;
    return h5w_names(g, "weight_names", dense_w, 1, NAMES_FIXED) < 0 ||
                   h5w_data(g, dense_w[0], H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, d, NULL, 1) < 0
               ? -1
               : 0;
}

static int setup_int_names(hid_t file, hid_t g)
{
    hsize_t d[1] = {2};
    int v[2] = {1, 2};
    hid_t space = H5Screate_simple(1, d, NULL), attr;
    int rc = -1;
    (void)file;
    attr = H5Acreate2(g, "weight_names", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr >= 0 && H5Awrite(attr, H5T_NATIVE_INT, v) >= 0)
        rc = 0;
    if (attr >= 0)
        H5Aclose(attr);
    H5Sclose(space);
    return rc;
}

static int setup_remove_group(hid_t file, hid_t g)
{
    (void)g;
    return H5Ldelete(file, "dense_1", H5P_DEFAULT) < 0 ? -1 : 0;
}

static void test_h5_small_layouts(vt_backend *be)
{
    (void)be;
    const char *dir = vt_test_tmpdir("h5_small");
    vt_tensorset *set = NULL;
    h5_mark before;
    const vt_ntensor *t;

    VT_CHECK(h5w_one_layer(path_in(dir, "ok.h5"), "layer_names", setup_good) == 0);
    before = h5_mark_now();
    VT_CHECK_OK(vt_h5keras_read(&set, path_in(dir, "ok.h5")));
    VT_CHECK_NO_H5_LEAK(before);
    VT_CHECK_INT(set->n, 2);
    t = vt_tensorset_find(set, "dense_1/dense_1_W_1:0");
    VT_CHECK(t && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    VT_CHECK(t->data[5] == 6.0f);
    t = vt_tensorset_find(set, "dense_1/dense_1_b_1:0");
    VT_CHECK(t && t->ndim == 1 && t->shape[0] == 3 && t->data[2] == 3.0f);
    vt_tensorset_free(set);
    set = NULL;

    /* Fixed-length names in the other two paddings. */
    for (int mode = NAMES_SPACEPAD; mode <= NAMES_NULLTERM; mode++) {
        hid_t f;
        VT_CHECK(h5w_one_layer(path_in(dir, "pad.h5"), NULL, setup_good) == 0);
        f = H5Fopen(path_in(dir, "pad.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
        VT_CHECK(f >= 0);
        {
            const char *ln[1] = {"dense_1"};
            int w = h5w_names(f, "layer_names", ln, 1, mode);
            H5Fclose(f);
            VT_CHECK(w == 0);
        }
        VT_CHECK_OK(vt_h5keras_read(&set, path_in(dir, "pad.h5")));
        VT_CHECK_INT(set->n, 2);
        VT_CHECK_STR(set->t[0].name, "dense_1/dense_1_W_1:0");
        vt_tensorset_free(set);
        set = NULL;
    }
    VT_CHECK_NO_H5_LEAK(before);

    /* An unsplit layer_names wins over split parts, as in Keras. */
    VT_CHECK(h5w_one_layer(path_in(dir, "both.h5"), "layer_names", setup_good) == 0);
    {
        hid_t f = H5Fopen(path_in(dir, "both.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
        const char *bogus[1] = {"no_such_layer"};
        VT_CHECK(f >= 0);
        VT_CHECK(h5w_names(f, "layer_names0", bogus, 1, NAMES_FIXED) == 0);
        H5Fclose(f);
    }
    VT_CHECK_OK(vt_h5keras_read(&set, path_in(dir, "both.h5")));
    VT_CHECK_INT(set->n, 2);
    vt_tensorset_free(set);
}

/* A whole model saved by Keras (model.save to .h5): the weights file's
 * layout inside the group model_weights, the root holding the model's
 * configuration.  Keras' load_weights reads it; so do we. */
static void test_h5_whole_model(vt_backend *be)
{
    (void)be;
    const char *dir = vt_test_tmpdir("h5_model");
    const char *ln[1] = {"dense_1"};
    vt_tensorset *set = NULL;
    h5_mark before;
    hid_t file, mw, g;
    int bad;

    file = H5Fcreate(path_in(dir, "model.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    VT_CHECK(file >= 0);
    mw = H5Gcreate2(file, "model_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    g = mw >= 0 ? H5Gcreate2(mw, "dense_1", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    bad = g < 0 || h5w_scalar_str(file, "model_config", "{\"class_name\": \"Functional\"}") < 0 ||
          h5w_scalar_str(file, "keras_version", "2.15.0") < 0 ||
          h5w_names(mw, "layer_names", ln, 1, NAMES_FIXED) < 0 || setup_good(file, g) < 0;
    if (g >= 0)
        H5Gclose(g);
    if (mw >= 0)
        H5Gclose(mw);
    H5Fclose(file);
    VT_CHECK(!bad);

    before = h5_mark_now();
    VT_CHECK_OK(vt_h5keras_read(&set, path_in(dir, "model.h5")));
    VT_CHECK_NO_H5_LEAK(before);
    VT_CHECK_INT(set->n, 2);
    VT_CHECK_STR(set->t[0].name, "dense_1/dense_1_W_1:0");
    VT_CHECK(set->t[0].ndim == 2 && set->t[0].data[5] == 6.0f);
    VT_CHECK_STR(set->t[1].name, "dense_1/dense_1_b_1:0");
    vt_tensorset_free(set);
}

static void test_h5_refusals(vt_backend *be)
{
    (void)be;
    const char *dir = vt_test_tmpdir("h5_bad");
    vt_tensorset *set = NULL;
    h5_mark before;
    uint8_t *raw = NULL;
    size_t len;
    keras_style st = {NAMES_FIXED, 0, 0, NAMES_EMPTY_F64};
    char *p;

    before = h5_mark_now();
    VT_CHECK_ERR(vt_h5keras_read(&set, path_in(dir, "missing.h5")), VT_ENOTFOUND, "missing.h5");
    VT_CHECK(set == NULL);

    p = path_in(dir, "text.h5");
    VT_CHECK_OK(vt_write_file_atomic(AT_FDCWD, p, "hello, this is not HDF5\n", 24));
    VT_CHECK_ERR(vt_h5keras_read(&set, p), VT_EFORMAT, "text.h5: not an HDF5 file");
    VT_CHECK_NO_H5_LEAK(before);
    VT_CHECK_OK(vt_write_file_atomic(AT_FDCWD, p, "", 0));
    VT_CHECK_ERR(vt_h5keras_read(&set, p), VT_EFORMAT, "not an HDF5 file");

    /* The signature, then zeros: libhdf5 fails deep in the superblock. */
    p = path_in(dir, "zeros.h5");
    {
        uint8_t fake[108] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
        VT_CHECK_OK(vt_write_file_atomic(AT_FDCWD, p, fake, sizeof fake));
    }
    VT_CHECK_ERR(vt_h5keras_read(&set, p), VT_EFORMAT, "zeros.h5: cannot open the HDF5 file");
    VT_CHECK_NO_H5_LEAK(before);

    /* Valid, then cut in half (and cut to just past the signature). */
    p = path_in(dir, "cut.h5");
    VT_CHECK(h5w_keras(p, &st) == 0);
    VT_CHECK_OK(vt_read_file(p, 1 << 24, &raw, &len));
    VT_CHECK_OK(vt_write_file_atomic(AT_FDCWD, p, raw, len / 2));
    VT_CHECK_ERR(vt_h5keras_read(&set, p), VT_EFORMAT, "cut.h5: cannot open the HDF5 file");
    VT_CHECK_NO_H5_LEAK(before);
    VT_CHECK_OK(vt_write_file_atomic(AT_FDCWD, p, raw, 12));
    VT_CHECK_ERR(vt_h5keras_read(&set, p), VT_EFORMAT, "truncated or damaged");
    VT_CHECK_NO_H5_LEAK(before);
    /* Damage inside: garble every byte after the superblock in turn would be
     * slow; flip a block in the middle instead, which must not crash. */
    memset(raw + len / 2, 0xa5, len / 8);
    VT_CHECK_OK(vt_write_file_atomic(AT_FDCWD, p, raw, len));
    {
        int rc = vt_h5keras_read(&set, p);
        VT_CHECK(rc == 0 || rc == VT_EFORMAT);
        vt_tensorset_free(rc == 0 ? set : NULL);
        set = NULL;
    }
    VT_CHECK_NO_H5_LEAK(before);
    free(raw);
    raw = NULL;

    p = path_in(dir, "nolayers.h5");
    VT_CHECK(h5w_one_layer(p, NULL, setup_good) == 0);
    VT_CHECK_ERR(vt_h5keras_read(&set, p), VT_EFORMAT,
                 "nolayers.h5: the root group has no layer_names attribute");
    VT_CHECK_NO_H5_LEAK(before);

    /* Keras 3's save_weights layout: layers/NAME/vars/0, no names. */
    p = path_in(dir, "k3.weights.h5");
    {
        hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        hsize_t d[1] = {2};
        float v[2] = {1, 2};
        VT_CHECK(f >= 0);
        VT_CHECK(h5w_data(f, "layers/block1_conv1/vars/1", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                          1, d, v, 0) == 0);
        H5Fclose(f);
    }
    VT_CHECK_ERR(vt_h5keras_read(&set, p), VT_EFORMAT,
                 "k3.weights.h5 is in Keras 3's .weights.h5 layout (layers/NAME/vars), which "
                 "is not read: save the model with model.save(\"FILE.h5\")");
    VT_CHECK_NO_H5_LEAK(before);

    p = path_in(dir, "nogroup.h5");
    VT_CHECK(h5w_one_layer(p, "layer_names", setup_remove_group) == 0);
    VT_CHECK_ERR(vt_h5keras_read(&set, p), VT_EFORMAT,
                 "layer dense_1 is in layer_names but has no group");
    VT_CHECK_NO_H5_LEAK(before);

    p = path_in(dir, "noweightnames.h5");
    VT_CHECK(h5w_one_layer(p, "layer_names", setup_no_weight_names) == 0);
    VT_CHECK_ERR(vt_h5keras_read(&set, p), VT_EFORMAT,
                 "layer dense_1 has no weight_names attribute");
    VT_CHECK_NO_H5_LEAK(before);

    p = path_in(dir, "missingdata.h5");
    VT_CHECK(h5w_one_layer(p, "layer_names", setup_missing_dataset) == 0);
    VT_CHECK_ERR(vt_h5keras_read(&set, p), VT_EFORMAT,
                 "missingdata.h5: layer dense_1: weight_names lists dense_1_b_1:0 but the "
                 "layer has no such dataset");
    VT_CHECK(set == NULL);
    VT_CHECK_NO_H5_LEAK(before);

    p = path_in(dir, "int.h5");
    VT_CHECK(h5w_one_layer(p, "layer_names", setup_int_dataset) == 0);
    VT_CHECK_ERR(vt_h5keras_read(&set, p), VT_EFORMAT,
                 "layer dense_1: weight dense_1_W_1:0 holds integer data (4 bytes each), not "
                 "float");
    VT_CHECK_NO_H5_LEAK(before);

    p = path_in(dir, "intnames.h5");
    VT_CHECK(h5w_one_layer(p, "layer_names", setup_int_names) == 0);
    VT_CHECK_ERR(vt_h5keras_read(&set, p), VT_EFORMAT,
                 "layer dense_1: attribute weight_names holds no strings");
    VT_CHECK_NO_H5_LEAK(before);

    p = path_in(dir, "rank9.h5");
    VT_CHECK(h5w_one_layer(p, "layer_names", setup_rank9) == 0);
    VT_CHECK_ERR(vt_h5keras_read(&set, p), VT_EFORMAT, "weight dense_1_W_1:0: rank 9");
    VT_CHECK_NO_H5_LEAK(before);

    p = path_in(dir, "huge.h5");
    VT_CHECK(h5w_one_layer(p, "layer_names", setup_huge) == 0);
    VT_CHECK_ERR(vt_h5keras_read(&set, p), VT_EFORMAT, "has more than 2^31 elements");
    VT_CHECK_NO_H5_LEAK(before);

    /* A safetensors file is not HDF5 either. */
    p = path_in(dir, "st.h5");
    set = vt_tensorset_new();
    VT_CHECK_OK(vt_safetensors_write(AT_FDCWD, p, set));
    vt_tensorset_free(set);
    set = NULL;
    VT_CHECK_ERR(vt_h5keras_read(&set, p), VT_EFORMAT, "not an HDF5 file");
    VT_CHECK_NO_H5_LEAK(before);
}

/* ---- Keras sets onto VGG16 ---------------------------------------------- */

/* Adds a zero Keras layer "<layer>/<layer>/kernel:0" (3, 3, cin, cout) and
 * its bias, as tf.keras names them. */
static int keras_add_conv(vt_tensorset *set, const char *layer, int cin, int cout)
{
    char name[128];
    int64_t ks[4] = {3, 3, cin, cout}, bs[1] = {cout};
    snprintf(name, sizeof name, "%s/%s/kernel:0", layer, layer);
    if (vt_tensorset_add(set, name, 4, ks, NULL, NULL) < 0)
        return -1;
    snprintf(name, sizeof name, "%s/%s/bias:0", layer, layer);
    return vt_tensorset_add(set, name, 1, bs, NULL, NULL);
}

/* A VGG19 Keras file holds every VGG16 layer name with VGG16's shapes, plus
 * block3_conv4..block5_conv4: taken by name it would load without a word. */
static void test_keras_vgg19_refused(vt_backend *be)
{
    (void)be;
    vt_tensorset *set = vt_tensorset_new();
    vt_params *p = NULL;
    vt_preprocess prep = VT_PREP_TORCH;
    int64_t fc[2] = {512, 8};

    VT_CHECK(set != NULL);
    VT_CHECK_OK(vt_params_new(&p, 32, NULL, 0, 2));
    for (int i = 0; i < VT_VGG_NCONV; i++)
        VT_CHECK(keras_add_conv(set, vt_vgg16[i].keras_name, vt_vgg16[i].cin,
                                vt_vgg16[i].cout) == 0);
    /* the full model's dense layers are not convolutions */
    VT_CHECK_OK(vt_tensorset_add(set, "fc1/fc1/kernel:0", 2, fc, NULL, NULL));
    VT_CHECK_OK(vt_weights_load_trunk(p, set, VT_WFILE_KERAS_H5, "vgg16.h5", &prep));
    VT_CHECK_INT(prep, VT_PREP_CAFFE);

    VT_CHECK(keras_add_conv(set, "block3_conv4", 256, 256) == 0);
    VT_CHECK_ERR(vt_weights_load_trunk(p, set, VT_WFILE_KERAS_H5, "vgg19.h5", &prep),
                 VT_EFORMAT,
                 "vgg19.h5: layer block3_conv4 has a convolution kernel but VGG16 has no such "
                 "layer (a VGG19");
    vt_params_free(p);
    vt_tensorset_free(set);
}

/* A Keras file missing one of VGG16's layers, or holding only a classifier,
 * is told as such: it was refused as "layer block5_conv3 needs a 4-D
 * kernel and a 1-D bias", a layer it does not have. */
static void test_keras_missing_layer(vt_backend *be)
{
    (void)be;
    vt_tensorset *set = vt_tensorset_new();
    vt_params *p = NULL;
    int64_t fc[2] = {512, 8}, fb[1] = {8};

    VT_CHECK(set != NULL);
    VT_CHECK_OK(vt_params_new(&p, 32, NULL, 0, 2));
    VT_CHECK_OK(vt_tensorset_add(set, "fc1/fc1/kernel:0", 2, fc, NULL, NULL));
    VT_CHECK_OK(vt_tensorset_add(set, "fc1/fc1/bias:0", 1, fb, NULL, NULL));
    VT_CHECK_ERR(vt_weights_load_trunk(p, set, VT_WFILE_KERAS_H5, "top.h5", NULL), VT_EFORMAT,
                 "top.h5 holds no convolution layers (a classifier's weights only?): give "
                 "VGG16's convolution weights, e.g. "
                 "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5");
    for (int i = 0; i < VT_VGG_NCONV - 1; i++)
        VT_CHECK(keras_add_conv(set, vt_vgg16[i].keras_name, vt_vgg16[i].cin,
                                vt_vgg16[i].cout) == 0);
    VT_CHECK_ERR(vt_weights_load_trunk(p, set, VT_WFILE_KERAS_H5, "cut.h5", NULL), VT_EFORMAT,
                 "cut.h5 has no layer block5_conv3, one of VGG16's 13 convolutions "
                 "(block1_conv1 ... block5_conv3): give VGG16's weights, e.g. "
                 "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5");
    /* a layer that is there with the wrong ranks keeps its message */
    VT_CHECK_OK(vt_tensorset_add(set, "block5_conv3/block5_conv3/kernel:0", 2, fc, NULL, NULL));
    VT_CHECK_ERR(vt_weights_load_trunk(p, set, VT_WFILE_KERAS_H5, "odd.h5", NULL), VT_EFORMAT,
                 "odd.h5: layer block5_conv3 needs a 4-D kernel and a 1-D bias");
    vt_params_free(p);
    vt_tensorset_free(set);
}

/* A NaN or an infinity in a trunk or a model is refused when the file is
 * loaded, naming the tensor: loaded, it made the job fail as a diverged loss
 * that blamed optimizer.lr. */
static void test_weights_nonfinite_refused(vt_backend *be)
{
    (void)be;
    vt_tensorset *set = vt_tensorset_new();
    vt_params *p = NULL;
    vt_ntensor *t;
    char name[64];
    int hidden[1] = {4}, loaded = 0;

    VT_CHECK(set != NULL);
    VT_CHECK_OK(vt_params_new(&p, 32, hidden, 1, 2));
    for (int i = 0; i < VT_VGG_NCONV; i++) {
        int64_t ws[4] = {vt_vgg16[i].cout, vt_vgg16[i].cin, 3, 3}, bs[1] = {vt_vgg16[i].cout};
        snprintf(name, sizeof name, "features.%d.weight", vt_vgg16[i].torch_index);
        VT_CHECK_OK(vt_tensorset_add(set, name, 4, ws, NULL, NULL));
        snprintf(name, sizeof name, "features.%d.bias", vt_vgg16[i].torch_index);
        VT_CHECK_OK(vt_tensorset_add(set, name, 1, bs, NULL, NULL));
    }
    for (int j = 0; j < p->ndense; j++) {
        int64_t ws[2] = {p->dense_out[j], p->dense_in[j]}, bs[1] = {p->dense_out[j]};
        snprintf(name, sizeof name, "head.%d.weight", j);
        VT_CHECK_OK(vt_tensorset_add(set, name, 2, ws, NULL, NULL));
        snprintf(name, sizeof name, "head.%d.bias", j);
        VT_CHECK_OK(vt_tensorset_add(set, name, 1, bs, NULL, &t));
    }
    VT_CHECK_OK(vt_weights_load_trunk(p, set, VT_WFILE_SAFETENSORS, "w.safetensors", NULL));
    VT_CHECK_OK(vt_weights_load_model(p, set, 10, "m.safetensors", &loaded));
    VT_CHECK_INT(loaded, 6 + 2 * p->ndense);

    t->data[1] = INFINITY; /* the last head bias */
    VT_CHECK_ERR(vt_weights_load_model(p, set, 10, "m.safetensors", NULL), VT_EFORMAT,
                 "m.safetensors: tensor head.1.bias holds infinity at element 1");
    t->data[1] = 0.0f;
    t = (vt_ntensor *)vt_tensorset_find(set, "features.26.weight");
    t->data[7] = NAN;
    VT_CHECK_ERR(vt_weights_load_trunk(p, set, VT_WFILE_SAFETENSORS, "w.safetensors", NULL),
                 VT_EFORMAT, "w.safetensors: tensor features.26.weight holds NaN at element 7");
    VT_CHECK_ERR(vt_weights_load_model(p, set, 10, "m.safetensors", NULL), VT_EFORMAT,
                 "tensor features.26.weight holds NaN");
    vt_params_free(p);
    vt_tensorset_free(set);
}

/* VGG16 weights (a trunk) given as an init model have no head: the job
 * says they go in weights, rather than only that no head.0.weight is there. */
static void test_head_layout_trunk(vt_backend *be)
{
    (void)be;
    vt_tensorset *set = vt_tensorset_new();
    int hidden[VT_MAX_DENSE], nhidden = 0, nclasses = 0, in = 0;
    int64_t ws[4] = {64, 3, 3, 3};

    VT_CHECK(set != NULL);
    VT_CHECK_ERR(vt_weights_head_layout(set, "empty.safetensors", hidden, &nhidden, &nclasses,
                                        &in),
                 VT_EFORMAT, "empty.safetensors has no head (no tensor head.0.weight)");
    VT_CHECK_OK(vt_tensorset_add(set, "features.0.weight", 4, ws, NULL, NULL));
    VT_CHECK_ERR(vt_weights_head_layout(set, "vgg16.safetensors", hidden, &nhidden, &nclasses,
                                        &in),
                 VT_EFORMAT,
                 "vgg16.safetensors is VGG16 weights (a trunk: features.* without head.*), not "
                 "a model that vggtune wrote: give it as weights; init takes a "
                 "model.safetensors that vggtune wrote");
    vt_tensorset_free(set);
}

/* A missing VGG16 tensor is explained when the file shows why: names
 * saved from DataParallel ("module." before each), or vgg16_bn, whose
 * batch-norm layers shift every convolution after the first. */
static void test_weights_kin_hints(vt_backend *be)
{
    (void)be;
    vt_tensorset *dp = vt_tensorset_new(), *bn = vt_tensorset_new();
    vt_params *p = NULL;
    int64_t ws[4] = {64, 3, 3, 3}, bs[1] = {64};

    VT_CHECK(dp != NULL && bn != NULL);
    VT_CHECK_OK(vt_params_new(&p, 32, NULL, 0, 2));
    VT_CHECK_OK(vt_tensorset_add(dp, "module.features.0.weight", 4, ws, NULL, NULL));
    VT_CHECK_OK(vt_tensorset_add(dp, "module.features.0.bias", 1, bs, NULL, NULL));
    VT_CHECK_ERR(vt_weights_load_trunk(p, dp, VT_WFILE_SAFETENSORS, "dp.safetensors", NULL),
                 VT_EFORMAT,
                 "dp.safetensors has no tensor features.0.weight but has "
                 "module.features.0.weight, as a model saved from DataParallel names it: strip "
                 "the module. prefix when saving ({k.removeprefix(\"module.\"): v for k, v in "
                 "state_dict.items()})");
    VT_CHECK_OK(vt_tensorset_add(bn, "features.0.weight", 4, ws, NULL, NULL));
    VT_CHECK_OK(vt_tensorset_add(bn, "features.0.bias", 1, bs, NULL, NULL));
    VT_CHECK_OK(vt_tensorset_add(bn, "features.1.weight", 1, bs, NULL, NULL));
    VT_CHECK_OK(vt_tensorset_add(bn, "features.1.running_mean", 1, bs, NULL, NULL));
    VT_CHECK_ERR(vt_weights_load_trunk(p, bn, VT_WFILE_SAFETENSORS, "bn.safetensors", NULL),
                 VT_EFORMAT,
                 "bn.safetensors has no tensor features.2.weight and holds batch-norm "
                 "statistics (running_mean): it is vgg16_bn, a different network (VGG16 with "
                 "batch norm); give plain VGG16's weights");
    vt_params_free(p);
    vt_tensorset_free(dp);
    vt_tensorset_free(bn);
}

static const vt_test_case cases[] = {
    {"st_roundtrip", test_st_roundtrip, 0},
    {"st_empty_and_nometa", test_st_empty_and_nometa, 0},
    {"st_write_refusals", test_st_write_refusals, 0},
    {"st_probe", test_st_probe, 0},
    {"st_truncated", test_st_truncated, 0},
    {"st_header_refusals", test_st_header_refusals, 0},
    {"st_entry_refusals", test_st_entry_refusals, 0},
    {"st_layout_refusals", test_st_layout_refusals, 0},
    {"st_dtype_refusals", test_st_dtype_refusals, 0},
    {"st_convert", test_st_convert, 0},
    {"st_read_file", test_st_read_file, 0},
    {"h5_probe", test_h5_probe, 0},
    {"h5_keras1_fixed", test_h5_keras1_fixed, 0},
    {"h5_fixed_nullspace", test_h5_fixed_nullspace, 0},
    {"h5_vlen", test_h5_vlen, 0},
    {"h5_split_fixed", test_h5_split_fixed, 0},
    {"h5_tf_names_vlen_split", test_h5_tf_names_vlen_split, 0},
    {"h5_tf_names_fixed", test_h5_tf_names_fixed, 0},
    {"h5_small_layouts", test_h5_small_layouts, 0},
    {"h5_whole_model", test_h5_whole_model, 0},
    {"h5_refusals", test_h5_refusals, 0},
    {"keras_vgg19_refused", test_keras_vgg19_refused, 0},
    {"weights_nonfinite_refused", test_weights_nonfinite_refused, 0},
    {"head_layout_trunk", test_head_layout_trunk, 0},
    {"keras_missing_layer", test_keras_missing_layer, 0},
    {"weights_kin_hints", test_weights_kin_hints, 0},
};

int main(int argc, char **argv)
{
    /* The test writes HDF5 files itself; keep libhdf5 quiet about the
     * failures the refusal cases provoke on purpose. */
    H5open();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    VT_TEST_MAIN(cases);
}

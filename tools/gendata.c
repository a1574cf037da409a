/* gendata.c - vt-gendata, a seeded synthetic image dataset for tests and demos.
 *
 * Writes real JPEG (TurboJPEG, quality 90) and PNG (libpng) files in Keras
 * flow_from_directory layout, so everything downstream (scan, decode, resize,
 * training) runs on the same kind of input a user would give it.  The
 * classes are meant to be easy for a small network on frozen random
 * features: each has its own hue and its own shape family (filled circles,
 * squares, stripes, gradients, rings, crosses, triangles, checks), while
 * position, size, background, colour jitter and pixel noise vary per image.
 *
 * Every number drawn is a pure function of (seed, split, class, image,
 * draw) through common/rng.h, so a given command line always produces
 * byte-identical files.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fileio.h"
#include "common/rng.h"

#define VT_GEN_QUALITY 90
#define VT_GEN_MAX_SIDE 4096
#define VT_GEN_MAX_CLASSES 1000
#define VT_GEN_MAX_PER_CLASS 1000000

enum { VT_GEN_JPG, VT_GEN_PNG, VT_GEN_MIXED };
enum { VT_GEN_CIRCLES, VT_GEN_SQUARES, VT_GEN_STRIPES, VT_GEN_GRADIENTS, VT_GEN_RINGS,
       VT_GEN_CROSSES, VT_GEN_TRIANGLES, VT_GEN_CHECKS, VT_GEN_NFAMILIES };

static const char *const vt_gen_family_names[VT_GEN_NFAMILIES] = {
    "circles", "squares", "stripes", "gradients", "rings", "crosses", "triangles", "checks"};

typedef struct {
    const char *out;
    int classes, per_class, val_per_class; /* val_per_class < 0: no train/val */
    int width, height, jitter;              /* jitter: size variation in percent */
    uint64_t seed;
    int format;
} vt_gen_opts;

/* The random draws of one image: (seed, stream) fixed, index counting up. */
typedef struct {
    uint64_t seed, stream, next;
} vt_gen_rng;

static float vt_gen_uniform(vt_gen_rng *r, float lo, float hi)
{
    return lo + (hi - lo) * vt_rng_uniform(r->seed, r->stream, r->next++);
}

/* Stream of one image; split 0 = train (or the only split), 1 = val. */
static uint64_t vt_gen_stream(int split, int cls, int img)
{
    return 0x67656e0000000000ull ^ ((uint64_t)split << 52) ^ ((uint64_t)cls << 32) ^
           (uint64_t)img;
}

static void vt_gen_hsv(float h, float s, float v, float rgb[3])
{
    h = (h - floorf(h)) * 6.0f;
    int i = (int)h % 6;
    float f = h - floorf(h), p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    static const int sel[6][3] = {{0, 3, 2}, {1, 0, 2}, {2, 0, 3}, {2, 1, 0}, {3, 2, 0}, {0, 2, 1}};
    float vals[4] = {v, q, p, t};
    for (int c = 0; c < 3; c++)
        rgb[c] = 255.0f * vals[sel[i][c]];
}

/* ---- drawing ----------------------------------------------------------- */

typedef struct {
    int family;
    float cx, cy, size, angle, period, phase, inner;
} vt_gen_shape;

/* How much of the foreground colour pixel (x, y) gets: 0..1. */
static float vt_gen_cover(const vt_gen_shape *s, float x, float y)
{
    float dx = x - s->cx, dy = y - s->cy, d = sqrtf(dx * dx + dy * dy);
    float ca = cosf(s->angle), sa = sinf(s->angle);
    float u = dx * ca + dy * sa, v = -dx * sa + dy * ca;

    switch (s->family) {
    case VT_GEN_CIRCLES:
        return d <= s->size;
    case VT_GEN_SQUARES:
        return fabsf(dx) <= s->size && fabsf(dy) <= s->size;
    case VT_GEN_STRIPES:
        return fmodf(v + s->phase + 1000.0f * s->period, s->period) < 0.5f * s->period;
    case VT_GEN_GRADIENTS: {
        float t = 0.5f + u / (2.0f * s->size);
        return t < 0 ? 0 : t > 1 ? 1 : t;
    }
    case VT_GEN_RINGS:
        return d <= s->size && d >= s->inner * s->size;
    case VT_GEN_CROSSES:
        return (fabsf(dx) <= s->inner && fabsf(dy) <= s->size) ||
               (fabsf(dy) <= s->inner && fabsf(dx) <= s->size);
    case VT_GEN_TRIANGLES: {
        /* Apex up: |dx| within the half-width at that height. */
        float t = (dy + s->size) / (2.0f * s->size);
        return t >= 0 && t <= 1 && fabsf(dx) <= t * s->size;
    }
    default: {
        int a = (int)floorf((u + 1000.0f * s->period) / s->period);
        int b = (int)floorf((v + 1000.0f * s->period) / s->period);
        return (a + b) & 1;
    }
    }
}

/* Renders image img of class cls into rgb (h, w, 3). */
static void vt_gen_render(const vt_gen_opts *o, vt_gen_rng *r, int cls, uint8_t *rgb, int w,
                          int h)
{
    float fg[3], bg[3];
    float m = (float)(w < h ? w : h);
    vt_gen_shape s = {cls % VT_GEN_NFAMILIES, 0, 0, 0, 0, 0, 0, 0};

    /* The class hue, jittered a little; a background of another, muted hue,
     * dark or light so the shape always stands out. */
    float hue = (float)cls / (float)o->classes + vt_gen_uniform(r, -0.03f, 0.03f);
    vt_gen_hsv(hue, vt_gen_uniform(r, 0.7f, 1.0f), vt_gen_uniform(r, 0.75f, 1.0f), fg);
    float bv = vt_gen_uniform(r, 0, 1) < 0.5f ? vt_gen_uniform(r, 0.05f, 0.3f)
                                              : vt_gen_uniform(r, 0.8f, 0.95f);
    vt_gen_hsv(vt_gen_uniform(r, 0, 1), vt_gen_uniform(r, 0, 0.25f), bv, bg);

    s.cx = (float)w * vt_gen_uniform(r, 0.35f, 0.65f);
    s.cy = (float)h * vt_gen_uniform(r, 0.35f, 0.65f);
    s.angle = vt_gen_uniform(r, -0.35f, 0.35f);
    s.phase = vt_gen_uniform(r, 0, 16);
    s.period = m * vt_gen_uniform(r, 0.12f, 0.2f);
    switch (s.family) {
    case VT_GEN_GRADIENTS:
        s.angle = vt_gen_uniform(r, 0, 6.2831853f);
        s.size = m * vt_gen_uniform(r, 0.3f, 0.5f);
        break;
    case VT_GEN_RINGS:
        s.size = m * vt_gen_uniform(r, 0.25f, 0.38f);
        s.inner = vt_gen_uniform(r, 0.5f, 0.65f);
        break;
    case VT_GEN_CROSSES:
        s.size = m * vt_gen_uniform(r, 0.28f, 0.4f);
        s.inner = m * vt_gen_uniform(r, 0.06f, 0.1f);
        break;
    default:
        s.size = m * vt_gen_uniform(r, 0.18f, 0.32f);
        break;
    }
    uint64_t noise_base = r->next;
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            float t = vt_gen_cover(&s, (float)x + 0.5f, (float)y + 0.5f);
            uint64_t n = vt_rng_u64(r->seed, r->stream,
                                    noise_base + (uint64_t)y * (uint64_t)w + (uint64_t)x);
            for (int c = 0; c < 3; c++) {
                float v = bg[c] + t * (fg[c] - bg[c]) + (float)((n >> (8 * c)) % 25) - 12.0f;
                rgb[((size_t)y * (size_t)w + (size_t)x) * 3 + (size_t)c] =
                    (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5f);
            }
        }
    }
    r->next = noise_base + (uint64_t)w * (uint64_t)h;
}

/* ---- encoding ---------------------------------------------------------- */

typedef struct {
    uint8_t *buf;
    size_t len, cap;
} vt_gen_mem;

static void vt_gen_png_write(png_structp png, png_bytep data, size_t n)
{
    vt_gen_mem *m = png_get_io_ptr(png);
    if (m->len + n > m->cap) {
        size_t cap = m->cap ? m->cap : 4096;
        while (cap < m->len + n)
            cap *= 2;
        uint8_t *b = realloc(m->buf, cap);
        if (!b)
            png_error(png, "out of memory");
        m->buf = b;
        m->cap = cap;
    }
    memcpy(m->buf + m->len, data, n);
    m->len += n;
}

static void vt_gen_png_flush(png_structp png)
{
    (void)png;
}

static void vt_gen_png_error(png_structp png, png_const_charp msg)
{
    vt_error_set(VT_EIO, "PNG encoder: %s", msg);
    png_longjmp(png, 1);
}

/* Encodes rgb as a PNG into *m (caller frees m->buf). */
static int vt_gen_png(const uint8_t *rgb, int w, int h, vt_gen_mem *m)
{
    png_structp png = NULL;
    png_infop info = NULL;
    png_bytep *volatile rows = NULL;
    volatile int rc = VT_EIO;

    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, vt_gen_png_error, NULL);
    if (!png || !(info = png_create_info_struct(png))) {
        rc = vt_error_set(VT_ENOMEM, "cannot start the PNG encoder");
        goto cleanup;
    }
    if (setjmp(png_jmpbuf(png)))
        goto cleanup;
    if (!(rows = malloc((size_t)h * sizeof *rows))) {
        rc = vt_error_set(VT_ENOMEM, "out of memory");
        goto cleanup;
    }
    for (int y = 0; y < h; y++)
        rows[y] = (png_bytep)(rgb + (size_t)y * (size_t)w * 3);
    png_set_write_fn(png, m, vt_gen_png_write, vt_gen_png_flush);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    rc = 0;
cleanup:
    free(rows);
    png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
    return rc;
}

static int vt_gen_write(const char *path, const uint8_t *buf, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return vt_error_set(VT_EIO, "cannot create %s: %s", path, strerror(errno));
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            close(fd);
            return vt_error_set(VT_EIO, "cannot write %s: %s", path, strerror(e));
        }
        buf += w;
        n -= (size_t)w;
    }
    if (close(fd) < 0)
        return vt_error_set(VT_EIO, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

/* ---- the dataset ------------------------------------------------------- */

/* Class names: the shape family's name while every class has its own
 * family, else zero-padded numbers (so sorted order is index order). */
static void vt_gen_class_name(const vt_gen_opts *o, int cls, char *name, size_t n)
{
    if (o->classes <= VT_GEN_NFAMILIES) {
        snprintf(name, n, "%s", vt_gen_family_names[cls]);
        return;
    }
    int digits = snprintf(NULL, 0, "%d", o->classes - 1);
    snprintf(name, n, "class%0*d", digits, cls);
}

static int vt_gen_image(const vt_gen_opts *o, tjhandle tj, const char *dir, int split,
                        int cls, int img)
{
    vt_gen_rng r = {o->seed, vt_gen_stream(split, cls, img), 0};
    vt_gen_mem png = {0};
    unsigned char *jpeg = NULL;
    unsigned long jpeg_len = 0;
    uint8_t *rgb = NULL;
    char path[PATH_MAX];
    int w = o->width, h = o->height, rc;

    if (o->jitter) {
        float jw = vt_gen_uniform(&r, -1, 1), jh = vt_gen_uniform(&r, -1, 1);
        w = (int)lroundf((float)w * (1.0f + (float)o->jitter / 100.0f * jw));
        h = (int)lroundf((float)h * (1.0f + (float)o->jitter / 100.0f * jh));
        w = w < 8 ? 8 : w;
        h = h < 8 ? 8 : h;
    }
    int as_png = o->format == VT_GEN_PNG ||
                 (o->format == VT_GEN_MIXED && vt_gen_uniform(&r, 0, 1) < 0.5f);
    if (!(rgb = malloc((size_t)w * (size_t)h * 3)))
        return vt_error_set(VT_ENOMEM, "out of memory");
    vt_gen_render(o, &r, cls, rgb, w, h);
    if (snprintf(path, sizeof path, "%s/img%05d.%s", dir, img, as_png ? "png" : "jpg") >=
        (int)sizeof path) {
        rc = vt_error_set(VT_EINVAL, "output path too long");
        goto cleanup;
    }
    if (as_png) {
        if ((rc = vt_gen_png(rgb, w, h, &png)) < 0)
            goto cleanup;
        rc = vt_gen_write(path, png.buf, png.len);
    } else {
        if (tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &jpeg, &jpeg_len, TJSAMP_420,
                        VT_GEN_QUALITY, 0) < 0) {
            rc = vt_error_set(VT_EIO, "JPEG encoder: %s", tjGetErrorStr2(tj));
            goto cleanup;
        }
        rc = vt_gen_write(path, jpeg, jpeg_len);
    }
cleanup:
    tjFree(jpeg);
    free(png.buf);
    free(rgb);
    return rc;
}

static int vt_gen_split(const vt_gen_opts *o, tjhandle tj, int split, const char *sub,
                        int count)
{
    char dir[PATH_MAX], name[64];
    int rc;
    for (int c = 0; c < o->classes; c++) {
        vt_gen_class_name(o, c, name, sizeof name);
        if (snprintf(dir, sizeof dir, "%s%s%s/%s", o->out, sub[0] ? "/" : "", sub, name) >=
            (int)sizeof dir)
            return vt_error_set(VT_EINVAL, "output path too long");
        if ((rc = vt_mkdir_p(dir, NULL)) < 0)
            return rc;
        for (int i = 0; i < count; i++)
            if ((rc = vt_gen_image(o, tj, dir, split, c, i)) < 0)
                return rc;
    }
    return 0;
}

static int vt_gen_run(const vt_gen_opts *o)
{
    tjhandle tj = tjInitCompress();
    int rc;
    if (!tj)
        return vt_error_set(VT_ENOMEM, "cannot start the JPEG encoder");
    if (o->val_per_class < 0) {
        rc = vt_gen_split(o, tj, 0, "", o->per_class);
    } else {
        rc = vt_gen_split(o, tj, 0, "train", o->per_class);
        if (rc == 0)
            rc = vt_gen_split(o, tj, 1, "val", o->val_per_class);
    }
    tjDestroy(tj);
    return rc;
}

/* ---- command line ------------------------------------------------------ */

static void vt_gen_usage(FILE *f)
{
    fprintf(f,
            "usage: vt-gendata --out DIR --classes C --per-class N [options]\n"
            "\n"
            "Writes a seeded synthetic image dataset in Keras flow_from_directory\n"
            "layout (DIR/<class>/imgNNNNN.jpg|png), for tests and demos.  Each class\n"
            "has its own hue and shape family (circles, squares, stripes, gradients,\n"
            "rings, crosses, triangles, checks); position, size, background and noise\n"
            "vary per image.  The same arguments always give byte-identical files;\n"
            "existing files of the same name are replaced.\n"
            "\n"
            "  --out DIR            output directory (created if missing)\n"
            "  --classes C          number of classes, 1..%d (names are the shape\n"
            "                       families for C <= %d, else class00, class01, ...)\n"
            "  --per-class N        images per class (in DIR/train with --val-per-class)\n"
            "  --val-per-class M    also write M validation images per class: the\n"
            "                       layout becomes DIR/train/<class> and DIR/val/<class>\n"
            "  --size WxH           image size (default 48x48)\n"
            "  --size-jitter P      vary each side by up to P percent (default 0)\n"
            "  --seed S             random seed (default 1)\n"
            "  --format F           jpg, png or mixed (default jpg)\n"
            "  --help               this text\n",
            VT_GEN_MAX_CLASSES, VT_GEN_NFAMILIES);
}

static int vt_gen_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int vt_gen_parse(int argc, char **argv, vt_gen_opts *o)
{
    enum { O_OUT = 256, O_CLASSES, O_PER, O_VAL, O_SIZE, O_JITTER, O_SEED, O_FORMAT, O_HELP };
    static const struct option longopts[] = {
        {"out", required_argument, NULL, O_OUT},
        {"classes", required_argument, NULL, O_CLASSES},
        {"per-class", required_argument, NULL, O_PER},
        {"val-per-class", required_argument, NULL, O_VAL},
        {"size", required_argument, NULL, O_SIZE},
        {"size-jitter", required_argument, NULL, O_JITTER},
        {"seed", required_argument, NULL, O_SEED},
        {"format", required_argument, NULL, O_FORMAT},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int opt;
    char *end;

    *o = (vt_gen_opts){NULL, 0, -1, -1, 48, 48, 0, 1, VT_GEN_JPG};
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case O_OUT:
            o->out = optarg;
            break;
        case O_CLASSES:
            if (vt_gen_int(optarg, 1, VT_GEN_MAX_CLASSES, &o->classes) < 0)
                return vt_error_set(VT_EINVAL, "--classes must be 1..%d", VT_GEN_MAX_CLASSES);
            break;
        case O_PER:
            if (vt_gen_int(optarg, 0, VT_GEN_MAX_PER_CLASS, &o->per_class) < 0)
                return vt_error_set(VT_EINVAL, "--per-class must be 0..%d",
                                    VT_GEN_MAX_PER_CLASS);
            break;
        case O_VAL:
            if (vt_gen_int(optarg, 0, VT_GEN_MAX_PER_CLASS, &o->val_per_class) < 0)
                return vt_error_set(VT_EINVAL, "--val-per-class must be 0..%d",
                                    VT_GEN_MAX_PER_CLASS);
            break;
        case O_SIZE: {
            const char *x = strchr(optarg, 'x');
            char wbuf[16];
            if (!x || (size_t)(x - optarg) >= sizeof wbuf)
                return vt_error_set(VT_EINVAL, "--size must be WxH, e.g. 48x48");
            memcpy(wbuf, optarg, (size_t)(x - optarg));
            wbuf[x - optarg] = '\0';
            if (vt_gen_int(wbuf, 8, VT_GEN_MAX_SIDE, &o->width) < 0 ||
                vt_gen_int(x + 1, 8, VT_GEN_MAX_SIDE, &o->height) < 0)
                return vt_error_set(VT_EINVAL, "--size: each side must be 8..%d",
                                    VT_GEN_MAX_SIDE);
            break;
        }
        case O_JITTER:
            if (vt_gen_int(optarg, 0, 50, &o->jitter) < 0)
                return vt_error_set(VT_EINVAL, "--size-jitter must be 0..50 (percent)");
            break;
        case O_SEED:
            errno = 0;
            o->seed = strtoull(optarg, &end, 0);
            if (errno || end == optarg || *end || optarg[0] == '-')
                return vt_error_set(VT_EINVAL, "--seed must be a non-negative integer");
            break;
        case O_FORMAT:
            if (strcmp(optarg, "jpg") == 0 || strcmp(optarg, "jpeg") == 0)
                o->format = VT_GEN_JPG;
            else if (strcmp(optarg, "png") == 0)
                o->format = VT_GEN_PNG;
            else if (strcmp(optarg, "mixed") == 0)
                o->format = VT_GEN_MIXED;
            else
                return vt_error_set(VT_EINVAL, "--format must be jpg, png or mixed");
            break;
        case O_HELP:
            return 1;
        default:
            return vt_error_set(VT_EINVAL, "unknown option (see --help)");
        }
    }
    if (optind < argc)
        return vt_error_set(VT_EINVAL, "unexpected argument '%s' (see --help)", argv[optind]);
    if (!o->out || !o->classes || o->per_class < 0)
        return vt_error_set(VT_EINVAL, "--out, --classes and --per-class are required "
                                       "(see --help)");
    return 0;
}

int main(int argc, char **argv)
{
    vt_gen_opts o;
    int rc = vt_gen_parse(argc, argv, &o);

    if (rc == 1) {
        vt_gen_usage(stdout);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "vt-gendata: %s\n", vt_error_msg());
        return 2;
    }
    if ((rc = vt_gen_run(&o)) < 0) {
        fprintf(stderr, "vt-gendata: %s\n", vt_error_msg());
        return 1;
    }
    printf("wrote %d classes x %d images%s to %s\n", o.classes, o.per_class,
           o.val_per_class >= 0 ? " (+ validation)" : "", o.out);
    return 0;
}

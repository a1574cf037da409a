/* vt_decodebench.c - vt-decodebench: the decode figure of issue 6, images/s
 * per core and in total, on the engine's real decode path.
 *
 * It scans a flow_from_directory dataset (engine/dataset.h) and decodes and
 * resizes every image to S x S RGB uint8 with vt_loader over a vt_pool of
 * N threads - the same loader, pool, batch size and decode function a
 * training job uses (engine/train.c; files read as this process, creds
 * NULL).  Each pass walks the dataset in file order; the caller only waits
 * for batches, as the device thread does while it has nothing to compute,
 * so the figure is what the decode pool alone can deliver.
 *
 * Method: every file is read once before anything is timed, so the page
 * cache is warm and the figure is decoding, not the disk; then, for each
 * thread count, --reps passes are timed on CLOCK_MONOTONIC and the median
 * pass is reported (images/s in total, and divided by the thread count).
 * A pass in which any image fails to decode is an error: a figure over
 * fewer images than the dataset holds would not compare with the reference.
 *
 * With --resize device the loader only decodes (JPEGs DCT-scaled) and
 * leaves resizing to the backend, as jobs on the CUDA backend do
 * (vt_backend_resizes_images); the figure is then the host's share alone.
 *
 * Its PyTorch reference is bench/torch_decode_ref.py (same JSON fields,
 * "mode":"decode_torch"); scripts/bench-decode.sh runs both on one dataset.
 *
 *   vt-decodebench --data DIR [--size S] [--threads N,N,...] [--reps R]
 *                  [--batch B] [--resize host|device] [--json FILE]
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/clock.h"
#include "../common/error.h"
#include "../common/pool.h"
#include "../engine/dataset.h"
#include "../engine/loader.h"

#define VT_DB_MAX_COUNTS 16

typedef struct {
    const char *data, *json;
    int size, reps, batch;
    int device_resize; /* --resize device */
    int threads[VT_DB_MAX_COUNTS]; /* thread counts to measure, in order */
    int nthreads;
} vt_db_opts;

typedef struct {
    double median_s, min_s, max_s;
} vt_db_result;

static int vt_db_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void vt_db_usage(FILE *f)
{
    fprintf(f,
            "usage: vt-decodebench --data DIR [--size S] [--threads N,N,...] [--reps R]\n"
            "                      [--batch B] [--resize host|device] [--json FILE]\n"
            "\n"
            "Decodes and resizes every image of a flow_from_directory dataset to S x S\n"
            "RGB with the engine's loader on a pool of N threads (what a training job\n"
            "runs), after reading every file once to warm the page cache.  Prints one\n"
            "JSON line per thread count (median of R passes) and a table.\n"
            "\n"
            "  --data DIR       dataset root: one sub-folder per class (required)\n"
            "  --size S         output side in pixels, 16..1024 (default 224)\n"
            "  --threads LIST   comma-separated decode thread counts (default 1,NPROC)\n"
            "  --reps R         timed passes per thread count, 1..100 (default 3)\n"
            "  --batch B        loader batch size, 1..4096 (default 64, as the job)\n"
            "  --resize WHERE   host: decode and resize (CPU-backend jobs, the default);\n"
            "                   device: decode only, as jobs on the CUDA backend do\n"
            "  --json FILE      also append the JSON lines to FILE\n");
}

/* Parses a decimal integer in [lo, hi]; returns 0, or -1 when s is not one. */
static int vt_db_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* Parses "N,N,..." into o->threads; returns 0, or -1 with a message printed. */
static int vt_db_threads(const char *list, vt_db_opts *o)
{
    char buf[256], *save = NULL;
    if (strlen(list) >= sizeof buf) {
        fprintf(stderr, "vt-decodebench: --threads list too long\n");
        return -1;
    }
    strcpy(buf, list);
    o->nthreads = 0;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (o->nthreads == VT_DB_MAX_COUNTS ||
            vt_db_int(tok, 1, 1024, &o->threads[o->nthreads]) < 0) {
            fprintf(stderr, "vt-decodebench: --threads wants up to %d counts in 1..1024: %s\n",
                    VT_DB_MAX_COUNTS, list);
            return -1;
        }
        o->nthreads++;
    }
    if (o->nthreads == 0) {
        fprintf(stderr, "vt-decodebench: --threads is empty\n");
        return -1;
    }
    return 0;
}

/* Fills o from argv; returns 0, 1 after --help, or -1 on a usage error
 * (message printed). */
static int vt_db_parse(int argc, char **argv, vt_db_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            vt_db_usage(stdout);
            return 1;
        }
        if (!v) {
            fprintf(stderr, "vt-decodebench: %s needs a value\n", a);
            return -1;
        }
        if (strcmp(a, "--data") == 0)
            o->data = v;
        else if (strcmp(a, "--json") == 0)
            o->json = v;
        else if (strcmp(a, "--size") == 0)
            bad = vt_db_int(v, 16, 1024, &o->size);
        else if (strcmp(a, "--reps") == 0)
            bad = vt_db_int(v, 1, 100, &o->reps);
        else if (strcmp(a, "--batch") == 0)
            bad = vt_db_int(v, 1, 4096, &o->batch);
        else if (strcmp(a, "--resize") == 0) {
            bad = strcmp(v, "host") != 0 && strcmp(v, "device") != 0;
            o->device_resize = strcmp(v, "device") == 0;
        }
        else if (strcmp(a, "--threads") == 0) {
            if (vt_db_threads(v, o) < 0)
                return -1;
        } else {
            fprintf(stderr, "vt-decodebench: unknown option %s\n", a);
            vt_db_usage(stderr);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "vt-decodebench: bad value for %s: %s\n", a, v);
            return -1;
        }
        i++;
    }
    if (!o->data) {
        fprintf(stderr, "vt-decodebench: --data DIR is required\n");
        vt_db_usage(stderr);
        return -1;
    }
    return 0;
}

/* Reads every file of ds once (so timed passes find them in the page cache)
 * and sets *bytes to their total size.  Returns 0 or VT_EIO with the path. */
static int vt_db_warm(const vt_dataset *ds, long long *bytes)
{
    static char buf[1 << 16];
    char path[PATH_MAX];
    *bytes = 0;
    for (int i = 0; i < ds->n; i++) {
        int fd;
        ssize_t got;
        snprintf(path, sizeof path, "%s/%s", ds->root, ds->samples[i].path);
        if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            return vt_error_set(VT_EIO, "%s: %s", path, strerror(errno));
        while ((got = read(fd, buf, sizeof buf)) > 0)
            *bytes += got;
        close(fd);
        if (got < 0)
            return vt_error_set(VT_EIO, "%s: %s", path, strerror(errno));
    }
    return 0;
}

/* One timed pass of l over order[0..n): sets *seconds.  Returns 0, or
 * VT_EFORMAT naming the first image that could not be decoded. */
static int vt_db_pass(vt_loader *l, const vt_dataset *ds, const int *order, double *seconds)
{
    vt_batch *b;
    int rc, decoded = 0;
    double t0 = vt_clock_mono();
    if ((rc = vt_loader_begin(l, order, ds->n, NULL)) < 0)
        return rc;
    while ((rc = vt_loader_next(l, &b)) > 0)
        decoded += b->n;
    if (rc < 0)
        return rc;
    *seconds = vt_clock_mono() - t0;
    if (decoded != ds->n) {
        for (int i = 0; i < ds->n; i++) {
            const char *why = vt_loader_failure(l, i);
            if (why)
                return vt_error_set(VT_EFORMAT, "%d of %d images could not be decoded, first %s: %s",
                                    ds->n - decoded, ds->n, ds->samples[i].path, why);
        }
        return vt_error_set(VT_EFORMAT, "decoded %d of %d images", decoded, ds->n);
    }
    return 0;
}

/* Measures o->reps passes on a pool of nthreads; fills *r. */
static int vt_db_measure(const vt_db_opts *o, const vt_dataset *ds, const int *order,
                         int nthreads, vt_db_result *r)
{
    vt_pool *pool = NULL;
    vt_loader *l = NULL;
    vt_loader_opts lo = {.image_size = o->size, .max_batch = o->batch, .creds = NULL,
                         .device_resize = o->device_resize};
    double *t = calloc((size_t)o->reps, sizeof *t);
    int rc = 0;

    if (!t)
        return vt_error_set(VT_ENOMEM, "out of memory");
    if ((rc = vt_pool_create(&pool, nthreads)) < 0 ||
        (rc = vt_loader_create(&l, pool, ds, &lo)) < 0)
        goto done;
    for (int k = 0; k < o->reps && rc == 0; k++)
        rc = vt_db_pass(l, ds, order, &t[k]);
    if (rc == 0) {
        qsort(t, (size_t)o->reps, sizeof *t, vt_db_cmp);
        r->median_s = o->reps % 2 ? t[o->reps / 2] : 0.5 * (t[o->reps / 2 - 1] + t[o->reps / 2]);
        r->min_s = t[0];
        r->max_s = t[o->reps - 1];
    }
done:
    vt_loader_free(l);
    vt_pool_free(pool);
    free(t);
    return rc;
}

/* Writes one result as a JSON line (the fields bench/torch_decode_ref.py
 * writes too). */
static void vt_db_json(FILE *f, const vt_db_opts *o, const vt_dataset *ds, long long bytes,
                       int nthreads, const vt_db_result *r)
{
    double ips = ds->n / r->median_s;
    fprintf(f,
            "{\"impl\":\"vggtune\",\"mode\":\"decode\",\"resize\":\"%s\",\"threads\":%d,"
            "\"size\":%d,\"batch\":%d,"
            "\"images\":%d,\"bytes\":%lld,\"reps\":%d,\"images_per_s\":%.1f,\"per_core\":%.1f,"
            "\"median_s\":%.4f,\"min_s\":%.4f,\"max_s\":%.4f,\"cpus\":%ld}\n",
            o->device_resize ? "device" : "host", nthreads, o->size, o->batch, ds->n, bytes, o->reps, ips, ips / nthreads, r->median_s,
            r->min_s, r->max_s, sysconf(_SC_NPROCESSORS_ONLN));
    fflush(f);
}

int main(int argc, char **argv)
{
    vt_db_opts o = {.size = 224, .reps = 3, .batch = 64};
    vt_db_result res[VT_DB_MAX_COUNTS];
    vt_dataset *ds = NULL;
    FILE *jf = NULL;
    int *order = NULL, rc, status = 1;
    long long bytes = 0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    o.threads[0] = 1;
    o.threads[1] = cpus > 1 ? (int)cpus : 1;
    o.nthreads = cpus > 1 ? 2 : 1;
    if ((rc = vt_db_parse(argc, argv, &o)) != 0)
        return rc > 0 ? 0 : 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (o.json && !(jf = fopen(o.json, "a"))) {
        fprintf(stderr, "vt-decodebench: %s: %s\n", o.json, strerror(errno));
        return 1;
    }
    if ((rc = vt_dataset_scan(&ds, AT_FDCWD, o.data)) < 0) {
        vt_error_wrap(rc, "%s", o.data);
        goto fail;
    }
    if (ds->n == 0) {
        rc = vt_error_set(VT_EINVAL, "%s: no images in its class folders", o.data);
        goto fail;
    }
    if (!(order = malloc(sizeof *order * (size_t)ds->n))) {
        rc = vt_error_set(VT_ENOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < ds->n; i++)
        order[i] = i;
    if ((rc = vt_db_warm(ds, &bytes)) < 0)
        goto fail;
    fprintf(stderr, "vt-decodebench: %d images in %d classes, %.1f KiB mean, page cache warmed\n",
            ds->n, ds->nclasses, bytes / 1024.0 / ds->n);

    for (int k = 0; k < o.nthreads; k++) {
        if ((rc = vt_db_measure(&o, ds, order, o.threads[k], &res[k])) < 0) {
            vt_error_wrap(rc, "%d threads", o.threads[k]);
            goto fail;
        }
        vt_db_json(stdout, &o, ds, bytes, o.threads[k], &res[k]);
        if (jf)
            vt_db_json(jf, &o, ds, bytes, o.threads[k], &res[k]);
    }

    printf("\nvggtune decode  %d images -> %dx%d RGB, %ld cpus, median of %d passes\n", ds->n,
           o.size, o.size, cpus, o.reps);
    printf("%7s %10s %12s %9s %9s\n", "threads", "img/s", "img/s/core", "median s", "min s");
    for (int k = 0; k < o.nthreads; k++)
        printf("%7d %10.1f %12.1f %9.3f %9.3f\n", o.threads[k], ds->n / res[k].median_s,
               ds->n / res[k].median_s / o.threads[k], res[k].median_s, res[k].min_s);
    status = 0;
    goto done;
fail:
    fprintf(stderr, "vt-decodebench: %s (%s)\n", vt_error_msg(), vt_error_name(rc));
done:
    if (jf)
        fclose(jf);
    free(order);
    vt_dataset_free(ds);
    return status;
}

/* dataset.c - scanning flow_from_directory trees, splits and subsets (see
 * dataset.h).
 *
 * The scan works relative to directory descriptors (openat, fstatat with
 * AT_SYMLINK_NOFOLLOW), so once the root is open nothing in the walk can be
 * redirected by a symbolic link: links are skipped, whatever they point to.
 * Only regular files count as images; FIFOs and devices are ignored so the
 * loader never blocks on one.  Sub-directories of a class directory are
 * walked to a bounded depth (no links, so no cycles; the bound is only
 * against absurd trees).
 */
#include "dataset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/rng.h"

#define VT_DATASET__MAX_DEPTH 32

/* A growable array of owned strings. */
typedef struct {
    char **v;
    int n, cap;
} vt_dataset__strs;

static int vt_dataset__push(vt_dataset__strs *s, char *str)
{
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        char **v;
        if (cap < s->cap || !(v = realloc(s->v, (size_t)cap * sizeof *v))) {
            free(str);
            return vt_error_set(VT_ENOMEM, "out of memory scanning the dataset");
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = str;
    return 0;
}

static void vt_dataset__strs_free(vt_dataset__strs *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

static int vt_dataset__cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int vt_dataset__is_image(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0 ||
                   strcasecmp(dot, ".png") == 0);
}

/* Joins "a/b", or just b when a is empty; NULL when out of memory. */
static char *vt_dataset__join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 2);
    if (!p)
        return NULL;
    if (la) {
        memcpy(p, a, la);
        p[la++] = '/';
    }
    memcpy(p + la, b, lb + 1);
    return p;
}

/* Opens name under dirfd as a directory without following a link. */
static int vt_dataset__open_dir(int dirfd, const char *name)
{
    return openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* Calls back for each visible (non-hidden) entry of the directory fd (which
 * it takes over): `what` names the directory for messages.  Stops with
 * VT_ECANCELLED once *stop (may be NULL) is set. */
typedef int (*vt_dataset__entry_fn)(int dirfd, const char *name, const struct stat *st,
                                    void *arg);

static int vt_dataset__each(int fd, const char *what, const atomic_int *stop,
                            vt_dataset__entry_fn fn, void *arg)
{
    DIR *d = fdopendir(fd);
    struct dirent *e;
    int rc = 0;

    if (!d) {
        int err = errno;
        close(fd);
        return vt_error_set(VT_EIO, "cannot read directory %s: %s", what, strerror(err));
    }
    for (;;) {
        struct stat st;
        if (stop && atomic_load(stop)) {
            rc = vt_error_set(VT_ECANCELLED, "reading %s stopped", what);
            break;
        }
        errno = 0;
        if (!(e = readdir(d))) {
            if (errno)
                rc = vt_error_set(VT_EIO, "cannot read directory %s: %s", what,
                                  strerror(errno));
            break;
        }
        if (e->d_name[0] == '.')
            continue; /* hidden, ".", ".." */
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue; /* removed while we looked */
            rc = vt_error_set(VT_EIO, "cannot stat %s/%s: %s", what, e->d_name,
                              strerror(errno));
            break;
        }
        if ((rc = fn(dirfd(d), e->d_name, &st, arg)) < 0)
            break;
    }
    closedir(d);
    return rc;
}

/* ---- class directories ------------------------------------------------- */

typedef struct {
    vt_dataset__strs names;
    int links; /* symbolic links skipped */
} vt_dataset__classes;

static int vt_dataset__add_class(int dirfd, const char *name, const struct stat *st,
                                 void *arg)
{
    vt_dataset__classes *cl = arg;
    char *copy;
    (void)dirfd;
    cl->links += S_ISLNK(st->st_mode) != 0;
    if (!S_ISDIR(st->st_mode))
        return 0; /* files beside the class folders are ignored, as in Keras */
    if (!(copy = strdup(name)))
        return vt_error_set(VT_ENOMEM, "out of memory scanning the dataset");
    return vt_dataset__push(&cl->names, copy);
}

/* ---- files of one class ------------------------------------------------ */

typedef struct {
    vt_dataset__strs *files;
    const char *rel;   /* directory relative to the class directory ("" at top) */
    const char *where; /* "<root>/<class>" for messages */
    int depth;
    vt_dataset *ds;    /* counts the links and other files skipped */
    const atomic_int *stop; /* set: the walk ends (may be NULL) */
} vt_dataset__walk;

static int vt_dataset__walk_dir(int fd, vt_dataset__walk *w);

static int vt_dataset__add_file(int dirfd, const char *name, const struct stat *st,
                                void *arg)
{
    vt_dataset__walk *w = arg;
    char *rel;
    int rc;

    w->ds->links += S_ISLNK(st->st_mode) != 0;
    if (!S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode))
        return 0; /* links, FIFOs, sockets, devices */
    if (S_ISREG(st->st_mode) && !vt_dataset__is_image(name)) {
        if (!w->ds->others++)
            snprintf(w->ds->other, sizeof w->ds->other, "%s/%s%s%s", w->where, w->rel,
                     w->rel[0] ? "/" : "", name);
        return 0;
    }
    if (!(rel = vt_dataset__join(w->rel, name)))
        return vt_error_set(VT_ENOMEM, "out of memory scanning the dataset");
    if (S_ISREG(st->st_mode))
        return vt_dataset__push(w->files, rel);

    if (w->depth >= VT_DATASET__MAX_DEPTH) {
        rc = vt_error_set(VT_EINVAL, "%s/%s: directories nested more than %d deep",
                          w->where, rel, VT_DATASET__MAX_DEPTH);
        free(rel);
        return rc;
    }
    int fd = vt_dataset__open_dir(dirfd, name);
    if (fd < 0) {
        int err = errno;
        rc = err == EACCES ? VT_EPERM : VT_EIO;
        rc = vt_error_set(rc, "cannot open directory %s/%s: %s", w->where, rel,
                          strerror(err));
        free(rel);
        return rc;
    }
    vt_dataset__walk sub = {w->files, rel, w->where, w->depth + 1, w->ds, w->stop};
    rc = vt_dataset__walk_dir(fd, &sub);
    free(rel);
    return rc;
}

static int vt_dataset__walk_dir(int fd, vt_dataset__walk *w)
{
    return vt_dataset__each(fd, w->where, w->stop, vt_dataset__add_file, w);
}

/* ---- building datasets ------------------------------------------------- */

void vt_dataset_free(vt_dataset *ds)
{
    if (!ds)
        return;
    for (int i = 0; i < ds->nclasses; i++)
        free(ds->classes[i]);
    for (int i = 0; i < ds->n; i++)
        free(ds->samples[i].path);
    free(ds->classes);
    free(ds->samples);
    free(ds->root);
    free(ds);
}

/* A dataset with ds's root and classes and room for n samples (n set to 0). */
static int vt_dataset__new_like(vt_dataset **out, const char *root, char *const *classes,
                                int nclasses, int cap)
{
    vt_dataset *ds = calloc(1, sizeof *ds);
    *out = NULL;
    if (!ds)
        goto oom;
    if (!(ds->root = strdup(root)))
        goto oom;
    if (!(ds->classes = calloc((size_t)nclasses + 1, sizeof *ds->classes)))
        goto oom;
    for (; ds->nclasses < nclasses; ds->nclasses++)
        if (!(ds->classes[ds->nclasses] = strdup(classes[ds->nclasses])))
            goto oom;
    if (!(ds->samples = calloc((size_t)cap + 1, sizeof *ds->samples)))
        goto oom;
    *out = ds;
    return 0;
oom:
    vt_dataset_free(ds);
    return vt_error_set(VT_ENOMEM, "out of memory building a dataset");
}

int vt_dataset_of_files(vt_dataset **out, const char *const *paths, int n)
{
    char *const none[] = {""};
    char cwd[PATH_MAX] = "";
    vt_dataset *ds = NULL;
    int rc = vt_dataset__new_like(&ds, "", none, 1, n);
    for (int i = 0; rc == 0 && i < n; i++) {
        char *path = NULL;
        if (paths[i][0] == '/')
            path = strdup(paths[i] + 1);
        else if (!cwd[0] && !getcwd(cwd, sizeof cwd))
            rc = vt_error_set(VT_EINVAL, "%s: the working directory has no name: %s",
                              paths[i], strerror(errno));
        else
            path = vt_dataset__join(cwd + 1, paths[i]); /* (cwd less its '/') */
        if (rc == 0 && !path)
            rc = vt_error_set(VT_ENOMEM, "out of memory building a dataset");
        if (rc == 0)
            ds->samples[ds->n++] = (vt_sample){.path = path, .label = 0};
    }
    if (rc < 0)
        vt_dataset_free(ds);
    else
        *out = ds;
    return rc;
}

static int vt_dataset__append(vt_dataset *ds, const vt_sample *s)
{
    if (!(ds->samples[ds->n].path = strdup(s->path)))
        return vt_error_set(VT_ENOMEM, "out of memory building a dataset");
    ds->samples[ds->n++].label = s->label;
    return 0;
}

/* Scans one class directory into ds (whose samples array is grown here). */
static int vt_dataset__scan_class(vt_dataset *ds, int rootfd, int label, int *cap,
                                  const atomic_int *stop)
{
    const char *cls = ds->classes[label];
    vt_dataset__strs files = {0};
    char *where = vt_dataset__join(ds->root, cls);
    int rc = 0;

    if (!where)
        return vt_error_set(VT_ENOMEM, "out of memory scanning the dataset");
    int fd = vt_dataset__open_dir(rootfd, cls);
    if (fd < 0) {
        int err = errno;
        rc = vt_error_set(err == EACCES ? VT_EPERM : VT_EIO, "cannot open directory %s: %s",
                          where, strerror(err));
        goto cleanup;
    }
    vt_dataset__walk w = {&files, "", where, 0, ds, stop};
    if ((rc = vt_dataset__walk_dir(fd, &w)) < 0)
        goto cleanup;
    if (files.n > 1)
        qsort(files.v, (size_t)files.n, sizeof *files.v, vt_dataset__cmp);
    if (files.n > *cap - ds->n) {
        int ncap = ds->n + files.n;
        vt_sample *s;
        if (ncap < ds->n || !(s = realloc(ds->samples, ((size_t)ncap + 1) * sizeof *s))) {
            rc = vt_error_set(VT_ENOMEM, "out of memory scanning the dataset");
            goto cleanup;
        }
        ds->samples = s;
        *cap = ncap;
    }
    for (int i = 0; i < files.n; i++) {
        char *path = vt_dataset__join(cls, files.v[i]);
        if (!path) {
            rc = vt_error_set(VT_ENOMEM, "out of memory scanning the dataset");
            goto cleanup;
        }
        ds->samples[ds->n].path = path;
        ds->samples[ds->n++].label = label;
    }
cleanup:
    vt_dataset__strs_free(&files);
    free(where);
    return rc;
}

int vt_dataset_scan(vt_dataset **out, int dirfd, const char *root)
{
    return vt_dataset_scan_until(out, dirfd, root, NULL);
}

int vt_dataset_scan_until(vt_dataset **out, int dirfd, const char *root, const atomic_int *stop)
{
    vt_dataset__classes classes = {0};
    vt_dataset *ds = NULL;
    int rootfd = -1, cap = 0, rc;

    *out = NULL;
    rootfd = openat(dirfd, root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) {
        int err = errno;
        if (err == ENOENT)
            return vt_error_set(VT_ENOTFOUND, "data directory %s does not exist", root);
        if (err == ENOTDIR)
            return vt_error_set(VT_EINVAL, "%s is not a directory", root);
        if (err == EACCES)
            return vt_error_set(VT_EPERM, "cannot open %s: %s", root, strerror(err));
        return vt_error_set(VT_EIO, "cannot open %s: %s", root, strerror(err));
    }
    int fd = dup(rootfd);
    if (fd < 0) {
        rc = vt_error_set(VT_EIO, "cannot read directory %s: %s", root, strerror(errno));
        goto cleanup;
    }
    if ((rc = vt_dataset__each(fd, root, stop, vt_dataset__add_class, &classes)) < 0)
        goto cleanup;
    if (classes.names.n == 0) {
        rc = vt_error_set(VT_EINVAL,
                          "%s has no class sub-directories (expected one folder per "
                          "class, as Keras flow_from_directory)",
                          root);
        goto cleanup;
    }
    qsort(classes.names.v, (size_t)classes.names.n, sizeof *classes.names.v, vt_dataset__cmp);
    if ((rc = vt_dataset__new_like(&ds, root, classes.names.v, classes.names.n, 0)) < 0)
        goto cleanup;
    ds->links = classes.links;
    for (int c = 0; c < ds->nclasses; c++)
        if ((rc = vt_dataset__scan_class(ds, rootfd, c, &cap, stop)) < 0)
            goto cleanup;
    *out = ds;
    ds = NULL;
cleanup:
    vt_dataset_free(ds);
    vt_dataset__strs_free(&classes.names);
    close(rootfd);
    return rc;
}

/* ---- splits and subsets ------------------------------------------------ */

void vt_dataset_class_counts(const vt_dataset *ds, int *counts)
{
    memset(counts, 0, (size_t)ds->nclasses * sizeof *counts);
    for (int i = 0; i < ds->n; i++)
        counts[ds->samples[i].label]++;
}

int vt_dataset_subset(const vt_dataset *ds, const int *idx, int n, vt_dataset **out)
{
    vt_dataset *sub = NULL;
    int rc;

    *out = NULL;
    if (n < 0)
        return vt_error_set(VT_EINVAL, "negative subset size %d", n);
    for (int i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= ds->n)
            return vt_error_set(VT_EINVAL, "sample index %d out of range (0..%d)", idx[i],
                                ds->n - 1);
    if ((rc = vt_dataset__new_like(&sub, ds->root, ds->classes, ds->nclasses, n)) < 0)
        return rc;
    for (int i = 0; i < n; i++) {
        if ((rc = vt_dataset__append(sub, &ds->samples[idx[i]])) < 0) {
            vt_dataset_free(sub);
            return rc;
        }
    }
    *out = sub;
    return 0;
}

/* How many of a class's count samples go to validation: round(frac*count),
 * at least 1 when frac > 0 and count >= 2, and never the whole class (a class
 * must stay trainable; a single-sample class stays in training). */
static int vt_dataset__nval(double frac, int count)
{
    long k = lround(frac * count);
    if (frac > 0 && count >= 2 && k < 1)
        k = 1;
    if (k > count - 1)
        k = count > 0 ? count - 1 : 0;
    return (int)k;
}

int vt_dataset_split(const vt_dataset *all, double frac, uint64_t seed, vt_dataset **train,
                     vt_dataset **val)
{
    vt_dataset *tr = NULL, *va = NULL;
    char *in_val = NULL;
    int *idx = NULL, *pos = NULL, rc;

    *train = *val = NULL;
    if (!(frac >= 0.0 && frac < 1.0))
        return vt_error_set(VT_EINVAL, "validation fraction %g is not in [0, 1)", frac);
    if (!(in_val = calloc((size_t)all->n + 1, 1)) ||
        !(pos = malloc(((size_t)all->n + 1) * sizeof *pos)) ||
        !(idx = malloc(((size_t)all->n + 1) * sizeof *idx))) {
        rc = vt_error_set(VT_ENOMEM, "out of memory splitting the dataset");
        goto cleanup;
    }
    for (int c = 0; c < all->nclasses; c++) {
        int count = 0;
        for (int i = 0; i < all->n; i++)
            if (all->samples[i].label == c)
                pos[count++] = i;
        int k = vt_dataset__nval(frac, count);
        for (int i = 0; i < count; i++)
            idx[i] = i;
        vt_rng_shuffle(idx, count, seed, (uint64_t)VT_RNG_SPLIT + (uint64_t)c);
        for (int i = 0; i < k; i++)
            in_val[pos[idx[i]]] = 1;
    }
    if ((rc = vt_dataset__new_like(&tr, all->root, all->classes, all->nclasses, all->n)) < 0 ||
        (rc = vt_dataset__new_like(&va, all->root, all->classes, all->nclasses, all->n)) < 0)
        goto cleanup;
    for (int i = 0; i < all->n; i++)
        if ((rc = vt_dataset__append(in_val[i] ? va : tr, &all->samples[i])) < 0)
            goto cleanup;
    *train = tr;
    *val = va;
    tr = va = NULL;
cleanup:
    vt_dataset_free(tr);
    vt_dataset_free(va);
    free(in_val);
    free(pos);
    free(idx);
    return rc;
}

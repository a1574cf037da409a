/* fileio.c - whole-file reads and crash-safe replacement (see fileio.h). */
#include "fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

struct vt_atomic_file {
    int dirfd;             /* directory of the target (owned, O_DIRECTORY) */
    int fd;                /* the temporary file */
    char name[NAME_MAX + 1];   /* target's last component */
    char tmp[NAME_MAX + 32];   /* temporary's name in the same directory */
    char path[PATH_MAX];   /* for messages */
};

static _Thread_local int vt__mask = -1; /* vt_fileio_set_mask */

void vt_fileio_set_mask(int mask) { vt__mask = mask >= 0 ? (mask & 0777) : -1; }

int vt_atomic_open(vt_atomic_file **out, int dirfd, const char *path)
{
    vt_atomic_file *f;
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];
    static unsigned counter;

    *out = NULL;
    if (!(f = calloc(1, sizeof *f)))
        return vt_error_set(VT_ENOMEM, "out of memory");
    f->fd = f->dirfd = -1;
    snprintf(f->path, sizeof f->path, "%s", path);
    if (slash) {
        size_t dl = (size_t)(slash - path);
        if (dl >= sizeof dir) {
            free(f);
            return vt_error_set(VT_EINVAL, "path too long: %s", path);
        }
        memcpy(dir, path, dl);
        dir[dl] = '\0';
        if (dl == 0)
            strcpy(dir, "/");
        slash++;
    } else {
        strcpy(dir, ".");
        slash = path;
    }
    if (strlen(slash) == 0 || strlen(slash) > NAME_MAX - 1) {
        free(f);
        return vt_error_set(VT_EINVAL, "bad file name: %s", path);
    }
    snprintf(f->name, sizeof f->name, "%s", slash);
    snprintf(f->tmp, sizeof f->tmp, ".%s.tmp.%ld.%u", slash, (long)getpid(),
             __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
    f->dirfd = openat(dirfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (f->dirfd < 0) {
        int e = errno;
        free(f);
        return vt_error_set(VT_EIO, "cannot open directory of %s: %s", path, strerror(e));
    }
    f->fd = openat(f->dirfd, f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (f->fd < 0 || (vt__mask >= 0 && fchmod(f->fd, (mode_t)(0666 & ~vt__mask)) < 0)) {
        int e = errno;
        if (f->fd >= 0) {
            close(f->fd);
            unlinkat(f->dirfd, f->tmp, 0);
        }
        close(f->dirfd);
        free(f);
        return vt_error_set(VT_EIO, "cannot create %s: %s", path, strerror(e));
    }
    *out = f;
    return 0;
}

int vt_atomic_write(vt_atomic_file *f, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(f->fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return vt_error_set(VT_EIO, "cannot write %s: %s", f->path, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

void vt_atomic_abort(vt_atomic_file *f)
{
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    unlinkat(f->dirfd, f->tmp, 0);
    close(f->dirfd);
    free(f);
}

int vt_atomic_commit(vt_atomic_file *f)
{
    int rc = 0;
    if (fsync(f->fd) < 0)
        rc = vt_error_set(VT_EIO, "cannot write %s: %s", f->path, strerror(errno));
    if (close(f->fd) < 0 && rc == 0)
        rc = vt_error_set(VT_EIO, "cannot write %s: %s", f->path, strerror(errno));
    f->fd = -1;
    if (rc == 0 && renameat(f->dirfd, f->tmp, f->dirfd, f->name) < 0)
        rc = vt_error_set(VT_EIO, "cannot replace %s: %s", f->path, strerror(errno));
    if (rc < 0) {
        vt_atomic_abort(f);
        return rc;
    }
    /* The rename is durable only once the directory itself is on disk. */
    if (fsync(f->dirfd) < 0 && errno != EINVAL)
        rc = vt_error_set(VT_EIO, "cannot sync directory of %s: %s", f->path,
                          strerror(errno));
    close(f->dirfd);
    free(f);
    return rc;
}

/* The writer's pid of a temporary file name ".NAME.tmp.PID.N" (NAME's
 * length in *nlen), or 0 when e is not one. */
static long vt__tmp_pid(const char *e, size_t *nlen)
{
    const char *t = NULL, *p;
    char *end;
    long pid;
    if (e[0] != '.')
        return 0;
    for (p = strstr(e + 1, ".tmp."); p; p = strstr(p + 1, ".tmp."))
        t = p; /* the last: NAME may hold ".tmp." itself */
    if (!t || t == e + 1 || !(t[5] >= '0' && t[5] <= '9'))
        return 0;
    pid = strtol(t + 5, &end, 10);
    if (*end != '.' || !(end[1] >= '0' && end[1] <= '9'))
        return 0;
    strtoul(end + 1, &end, 10);
    if (*end != '\0' || pid <= 0)
        return 0;
    *nlen = (size_t)(t - e - 1);
    return pid;
}

int vt_atomic_sweep(const char *dir, const char *name, int all, char *removed, size_t len)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t nlen;
    long pid;
    int n = 0;
    if (removed && len)
        removed[0] = '\0';
    if (!d)
        return vt_error_set(errno == ENOENT ? VT_ENOTFOUND : VT_EIO, "cannot read %s: %s", dir,
                            strerror(errno));
    while ((e = readdir(d))) {
        if (!(pid = vt__tmp_pid(e->d_name, &nlen)) ||
            (name && (strlen(name) != nlen || strncmp(e->d_name + 1, name, nlen) != 0)))
            continue;
        /* a live writer (EPERM: another user's process, alive too) keeps its file */
        if (!all && pid != (long)getpid() && !(kill((pid_t)pid, 0) < 0 && errno == ESRCH))
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) < 0)
            continue;
        if (removed && len) {
            size_t at = strlen(removed);
            snprintf(removed + at, len - at, "%s%.*s", at ? ", " : "", (int)nlen,
                     e->d_name + 1);
        }
        n++;
    }
    closedir(d);
    return n;
}

int vt_write_file_atomic(int dirfd, const char *path, const void *buf, size_t n)
{
    vt_atomic_file *f;
    int rc = vt_atomic_open(&f, dirfd, path);
    if (rc < 0)
        return rc;
    if ((rc = vt_atomic_write(f, buf, n)) < 0) {
        vt_atomic_abort(f);
        return rc;
    }
    return vt_atomic_commit(f);
}

int vt_open_read(int dirfd, const char *path, int extra_flags, int *fd)
{
    struct stat st;
    /* O_NOCTTY: a terminal opened by the daemon, a session leader without
     * one, would become its controlling terminal, whose ^C and ^\ stop it */
    if ((*fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | extra_flags)) >=
        0) {
        if (fstat(*fd, &st) == 0 && S_ISREG(st.st_mode)) {
            if (!(extra_flags & O_NONBLOCK))
                fcntl(*fd, F_SETFL, fcntl(*fd, F_GETFL) & ~O_NONBLOCK);
            return 0;
        }
        close(*fd);
        *fd = -1;
        return vt_error_set(VT_EIO, "%s: not a regular file", path);
    }
    if (errno == ENOENT)
        return vt_error_set(VT_ENOTFOUND, "%s: no such file", path);
    if (errno == EACCES)
        return vt_error_set(VT_EPERM, "%s: permission denied", path);
    return vt_error_set(VT_EIO, "%s: %s", path, strerror(errno));
}

int vt_read_head(const char *path, void *buf, size_t n, size_t *got)
{
    ssize_t r;
    int fd, rc = vt_open_read(AT_FDCWD, path, 0, &fd);
    *got = 0;
    if (rc < 0)
        return rc;
    do {
        r = read(fd, buf, n);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        rc = vt_error_set(VT_EIO, "%s: %s", path, strerror(errno));
    else
        *got = (size_t)r;
    close(fd);
    return rc;
}

int vt_read_file(const char *path, size_t max, uint8_t **out, size_t *len)
{
    struct stat st;
    uint8_t *buf = NULL;
    size_t got = 0;
    int fd, rc = 0;

    *out = NULL;
    *len = 0;
    if ((rc = vt_open_read(AT_FDCWD, path, 0, &fd)) < 0)
        return rc;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        rc = vt_error_set(VT_EIO, "%s: not a regular file", path);
        goto cleanup;
    }
    if ((uint64_t)st.st_size > max) {
        rc = vt_error_set(VT_ETOOBIG, "%s: %lld bytes is over the limit of %zu", path,
                          (long long)st.st_size, max);
        goto cleanup;
    }
    if (!(buf = malloc((size_t)st.st_size + 1))) {
        rc = vt_error_set(VT_ENOMEM, "out of memory reading %s", path);
        goto cleanup;
    }
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = vt_error_set(VT_EIO, "%s: %s", path, strerror(errno));
            goto cleanup;
        }
        if (r == 0)
            break; /* shrank while reading: take what is there */
        got += (size_t)r;
    }
    buf[got] = 0;
    *out = buf;
    *len = got;
    buf = NULL;
cleanup:
    free(buf);
    close(fd);
    return rc;
}

int vt_path(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len)
        return vt_error_set(VT_EINVAL, "path too long: %.80s...", buf);
    return 0;
}

int vt_mkdir_p(const char *path, int *created)
{
    char tmp[PATH_MAX];
    size_t n = strlen(path);
    int made = 0;
    if (created)
        *created = 0;
    if (n == 0 || n >= sizeof tmp)
        return vt_error_set(VT_EINVAL, "bad directory path '%s'", path);
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(tmp, 0755) == 0) {
                made++;
                struct stat ds; /* (a setgid bit inherited from the parent stays) */
                if (vt__mask >= 0 &&
                    (stat(tmp, &ds) < 0 ||
                     chmod(tmp, (mode_t)((0777 & ~vt__mask) | (ds.st_mode & S_ISGID))) < 0))
                    return vt_error_set(VT_EIO, "cannot set the mode of %s: %s", tmp,
                                        strerror(errno));
            } else if (errno != EEXIST)
                return vt_error_set(VT_EIO, "cannot create directory %s: %s", tmp,
                                    strerror(errno));
            *p = c;
            if (c == '\0')
                break;
        }
    }
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
        return vt_error_set(VT_EIO, "%s exists and is not a directory", path);
    if (created)
        *created = made;
    return 0;
}

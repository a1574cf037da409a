/* fuzz_util.h - what the harnesses share: the input as a file (a memfd,
 * named by /proc/self/fd/N, so that readers taking a path read it from
 * memory) and a scratch directory. */
#ifndef VT_FUZZ_UTIL_H
#define VT_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Writes data[0, n) to a new memfd and its path into path; returns the fd
 * (the caller closes it), or aborts: a harness that cannot make its input
 * is broken, not the code under test. */
static inline int vt_fuzz_file(const uint8_t *data, size_t n, char *path, size_t len)
{
    int fd = memfd_create("vt-fuzz", MFD_CLOEXEC);
    if (fd < 0 || (n && write(fd, data, n) != (ssize_t)n))
        abort();
    snprintf(path, len, "/proc/self/fd/%d", fd);
    return fd;
}

/* A directory of this process's own under /dev/shm (else /tmp), made once. */
static inline const char *vt_fuzz_dir(void)
{
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/dev/shm/vt-fuzz.XXXXXX");
        if (!mkdtemp(dir)) {
            snprintf(dir, sizeof dir, "/tmp/vt-fuzz.XXXXXX");
            if (!mkdtemp(dir))
                abort();
        }
    }
    return dir;
}

#endif

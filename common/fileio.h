/* fileio.h - whole-file reads and crash-safe file replacement.
 *
 * Durable writes follow the usual recipe: write a temporary file in the same
 * directory, fsync it, rename it over the target, fsync the directory.  A
 * reader therefore sees either the old file or the new one, never a torn one,
 * even after a power cut.  Errors (a full disk, an unwritable directory) come
 * back as VT_EIO with the path and the system's reason.
 */
#ifndef VT_FILEIO_H
#define VT_FILEIO_H

#include <stddef.h>
#include <stdint.h>

typedef struct vt_atomic_file vt_atomic_file;

/* The permissions of what this thread creates from now on: files 0666 and
 * directories 0777 less mask, exactly (set with fchmod, so a mask looser
 * than the process's umask applies too); -1: 0644 and 0755 less the
 * process's umask (the default).  A daemon thread writing a user's files
 * sets the user's umask here while it acts as that user. */
void vt_fileio_set_mask(int mask);

/* Starts replacing path: creates a temporary file beside it (mode as
 * vt_fileio_set_mask says).  dirfd may be AT_FDCWD; a relative path is
 * relative to it. */
int vt_atomic_open(vt_atomic_file **out, int dirfd, const char *path);

/* Appends n bytes. */
int vt_atomic_write(vt_atomic_file *f, const void *buf, size_t n);

/* Flushes, fsyncs, renames over the target and fsyncs the directory; frees f
 * whether or not it succeeds (on failure the temporary file is removed). */
int vt_atomic_commit(vt_atomic_file *f);

/* Gives up: closes and removes the temporary file, frees f.  NULL is a no-op. */
void vt_atomic_abort(vt_atomic_file *f);

/* Removes the temporary files in dir that replacing a file there left
 * behind when its process was killed mid-write (vt_atomic_open's
 * ".NAME.tmp.PID.N"), of every NAME or only of name (NULL: any): with all,
 * every one (the caller knows that no other process writes there); else
 * those of processes that have ended and of this one, which the caller
 * knows writes none there now.  removed (may be NULL) gets the NAMEs,
 * comma-separated, cut to len.  Returns how many it removed, or VT_EIO
 * when dir cannot be read (VT_ENOTFOUND when it does not exist). */
int vt_atomic_sweep(const char *dir, const char *name, int all, char *removed, size_t len);

/* Writes a whole buffer durably to path (open + write + commit). */
int vt_write_file_atomic(int dirfd, const char *path, const void *buf, size_t n);

/* Opens the regular file at path (relative to dirfd, which may be
 * AT_FDCWD) read-only, close-on-exec, plus extra_flags.  The open itself
 * cannot block (a FIFO there would wait for a writer forever) nor take a
 * terminal as the process's own: anything but a regular file is refused.  Failures say "PATH: reason": VT_ENOTFOUND for
 * a missing file, VT_EPERM when access is denied, VT_EIO otherwise. */
int vt_open_read(int dirfd, const char *path, int extra_flags, int *fd);

/* Reads up to n bytes from the start of the file at path into buf; *got
 * receives how many (fewer for a short file).  Errors as vt_open_read. */
int vt_read_head(const char *path, void *buf, size_t n, size_t *got);

/* Reads a whole regular file of at most max bytes into a malloc'd buffer
 * (NUL-terminated for convenience; *len excludes the NUL).  Larger files are
 * VT_ETOOBIG; missing files VT_ENOTFOUND; others VT_EIO. */
int vt_read_file(const char *path, size_t max, uint8_t **out, size_t *len);

/* printf into a path buffer; VT_EINVAL ("path too long: ...") when it does
 * not fit. */
int vt_path(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Creates a directory and its missing parents (mode as vt_fileio_set_mask
 * says);
 * an existing directory is fine.  created (may be NULL) receives how many
 * of path's trailing components this call made (0: path existed), so that
 * a caller can remove what it made and nothing else. */
int vt_mkdir_p(const char *path, int *created);

#endif

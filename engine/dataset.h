/* dataset.h - image datasets in Keras flow_from_directory layout.
 *
 * A dataset root holds one sub-directory per class; the class index is the
 * position of the directory name in byte-wise sorted order (as Python's
 * sorted() orders str), exactly like Keras.  Image files are those whose
 * name ends in .jpg, .jpeg or .png (any letter case), found in the class
 * directory and its sub-directories; hidden entries (starting with '.') are
 * ignored.  Within a class, files are ordered by their path relative to the
 * class directory (byte-wise).  Samples are in class order, then that order.
 *
 * Scanning never follows a symbolic link out of the tree: symlinked entries
 * are skipped (so a user cannot point the daemon at files they cannot read
 * through a link) - see the README.
 */
#ifndef VT_DATASET_H
#define VT_DATASET_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct {
    char *path; /* relative to the dataset root: "<class>/<file>", owned */
    int label;  /* class index */
} vt_sample;

typedef struct {
    char *root;      /* the directory scanned, as given, owned */
    int nclasses;
    char **classes;  /* nclasses names in index order, owned */
    int n;
    vt_sample *samples; /* n samples in class order, then file order */
    int links;       /* symbolic links the scan met and skipped (0 after split/subset) */
    int others;      /* files skipped as not images by their names (not .jpg, .jpeg or
                        .png; 0 after split/subset) */
    char other[256]; /* the first of them, "<root>/<class>/<file>" (maybe cut short) */
} vt_dataset;

/* Scans root (relative to dirfd, which may be AT_FDCWD).  Errors:
 * VT_ENOTFOUND if root does not exist, VT_EINVAL with a message saying so
 * when it has no class sub-directories.  Empty class directories still count
 * as classes (their index is kept); the caller decides whether a class
 * without images, or a single class, is acceptable (training needs two,
 * evaluating a model on one class is fine). */
int vt_dataset_scan(vt_dataset **out, int dirfd, const char *root);

/* vt_dataset_scan that another thread can end early: once *stop (may be
 * NULL) is set, it returns VT_ECANCELLED ("reading DIR stopped") before the
 * next directory entry. */
int vt_dataset_scan_until(vt_dataset **out, int dirfd, const char *root, const atomic_int *stop);

/* Splits a dataset into training and validation parts: within each class,
 * round(frac * count) samples chosen by a seeded shuffle go to validation
 * (at least 1 when frac > 0 and the class has >= 2 samples).  Both parts keep
 * the class list and class-then-file order.  frac in [0, 1). */
int vt_dataset_split(const vt_dataset *all, double frac, uint64_t seed,
                     vt_dataset **train, vt_dataset **val);

/* Makes a dataset of the given samples of ds (deep copy, same classes). */
int vt_dataset_subset(const vt_dataset *ds, const int *idx, int n, vt_dataset **out);

/* A dataset of the n image files named by paths (absolute, or relative to
 * the working directory), in that order, all of one class named "": for a
 * prediction, which runs them through the loader like any dataset.  root
 * is "" and each sample's path is the file's absolute path less its first
 * '/'.  Nothing is read from disk but the working directory's name. */
int vt_dataset_of_files(vt_dataset **out, const char *const *paths, int n);

/* Frees a dataset; NULL is a no-op. */
void vt_dataset_free(vt_dataset *ds);

/* Number of samples per class: counts[nclasses] (caller's array). */
void vt_dataset_class_counts(const vt_dataset *ds, int *counts);

#endif

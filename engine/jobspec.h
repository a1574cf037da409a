/* jobspec.h - the job specification: one JSON document, parsed and checked.
 *
 * The same document is accepted by `vggtuned run JOB.json` and by the
 * daemon's submit operation.  Unknown fields and bad values are refused with
 * a message naming the field ("optimizer.lr must be a positive number").
 * Every field, its default and its limits are documented in README.md
 * ("Job specification"); the defaults live in vt_jobspec_defaults().
 */
#ifndef VT_JOBSPEC_H
#define VT_JOBSPEC_H

#include <stddef.h>
#include <stdint.h>

#include "vgg.h"

typedef enum { VT_SCHED_NONE, VT_SCHED_STEP, VT_SCHED_COSINE } vt_schedule;
typedef enum { VT_PREC_AUTO, VT_PREC_FP32, VT_PREC_BF16 } vt_precision;

typedef struct {
    char name[128];
    int trainable_blocks;      /* 0..5; from "mode" or "trainable_blocks" */
    /* data */
    char *train_dir;           /* required */
    char *val_dir;             /* NULL: none (or val_split) */
    double val_split;          /* [0, 1) */
    int image_size;            /* multiple of 32, 32..1024 */
    int preprocess;            /* -1 auto, else vt_preprocess */
    int shuffle;
    /* weights */
    char *weights;             /* NULL: seeded He initialisation */
    char *init;                /* NULL, or a safetensors file of ours */
    int64_t init_job;          /* > 0: the daemon resolves it to that job's model */
    /* head */
    int head_given;            /* "head.dense" in the document (or taken from the init
                                  model, once a trainer has read it) */
    int nhidden;
    int hidden[VT_MAX_DENSE - 1];
    float dropout;             /* [0, 1) after each hidden dense layer */
    /* optimizer */
    double lr, momentum, decay, weight_decay;
    int nesterov;
    vt_schedule schedule;
    int step_epochs;           /* step: multiply by gamma every step_epochs */
    double gamma;
    double min_lr;             /* cosine: final learning rate */
    /* augmentation */
    int flip;                  /* random horizontal flips */
    double crop;               /* random crops: zoom factor - 1, [0, 0.5] */
    /* epochs */
    int epochs, batch_size;
    uint64_t seed;
    vt_precision precision;
    int keep_best;             /* save the epoch with the best val_loss */
    int patience;              /* early stopping: epochs without improvement; 0 off */
    double min_delta;
    char *output;              /* required: output directory */
    int overwrite;             /* the daemon: may take over a succeeded job's output */
    int umask;                 /* 0..0777: permission bits the outputs leave out (the
                                  submitting user's umask); -1: the process's umask */
} vt_jobspec;

/* Fills spec with the defaults (strings NULL). */
void vt_jobspec_defaults(vt_jobspec *spec);

/* Parses a job document.  On error returns VT_EINVAL with a message naming
 * the field; *spec is then freed.  Relative paths are kept as given.  A
 * field given twice is refused (vt_jobspec_check_unique). */
int vt_jobspec_parse(vt_jobspec *spec, const char *json, size_t len);

struct cJSON;

/* Parses the text of a job document into *root (the caller's, to
 * cJSON_Delete): one JSON value of any type, followed by nothing but white
 * space.  Otherwise returns VT_EINVAL, with a message giving the byte (and,
 * for text after the value, the line) where it goes wrong; *root is NULL. */
int vt_jobspec_parse_json(struct cJSON **root, const char *json, size_t len);

/* VT_EINVAL naming the first field that an object of the document holds
 * twice ("data.image_size appears twice ..."; JSON allows it, and which one
 * counts would be up to the reader), else 0. */
int vt_jobspec_check_unique(const struct cJSON *root);

/* Frees the strings of spec (not spec itself); safe on a defaults-only spec. */
void vt_jobspec_free(vt_jobspec *spec);

/* Deep copy. */
int vt_jobspec_copy(vt_jobspec *dst, const vt_jobspec *src);

/* The complete document with every default filled in (malloc'd string, one
 * line, parseable by vt_jobspec_parse), or NULL when out of memory.  A spec
 * with init_job is written with init_job alone: init is what the daemon
 * resolved it to, and resolves again when it reads the job back.  With
 * init or init_job and no head given, head.dense is left out (the init
 * model gives it). */
char *vt_jobspec_to_json(const vt_jobspec *spec);

/* A head layout (hidden[0..n)) as "1024, 128" into buf, for messages. */
void vt_jobspec_layout(const int *hidden, int n, char *buf, size_t len);

/* "bottleneck", "finetune", "scratch" or "blocksN" for trainable_blocks. */
const char *vt_jobspec_mode_name(int trainable_blocks);

/* Learning rate for an iteration and epoch, Keras decay then the schedule:
 *   lr_t = lr / (1 + decay * iteration) * schedule(epoch). */
double vt_jobspec_lr(const vt_jobspec *spec, uint64_t iteration, int epoch);

/* Refuses (VT_EINVAL, a message starting with the field's name) a name or
 * path that is not valid UTF-8: the finished job could not record its
 * document in the model's metadata, so it is refused before it trains. */
int vt_jobspec_check_utf8(const vt_jobspec *spec);

/* The most bytes a path below a job's output directory adds to it:
 * "/.vggtune-restoring/bottleneck_features.safetensors" (train_output.c
 * checks that its names fit). */
#define VT_OUTPUT_SUFFIX_MAX 51

/* Refuses (VT_EINVAL, a message starting "output") an output directory
 * whose files the file system could not name (its path longer than
 * PATH_MAX - 1 - VT_OUTPUT_SUFFIX_MAX bytes, or a name in it longer than
 * NAME_MAX), or that is data.train or data.val or inside one: its files
 * would be read as one more class.  The paths must be absolute; each is
 * compared as the file system resolves it (symbolic links followed) as far
 * as it exists, the rest as written.  Reads the file system as the calling
 * thread may. */
int vt_jobspec_check_output(const vt_jobspec *spec);

/* Replaces relative paths with absolute ones against cwd (client side). */
int vt_jobspec_absolutize(vt_jobspec *spec, const char *cwd);

/* The default head for a mode: finetune/scratch Dense 1024, 128; bottleneck
 * Dense 256 with dropout 0.5. */
void vt_jobspec_default_head(int trainable_blocks, int *hidden, int *nhidden,
                             float *dropout);

#endif

/* train_impl.h - what the trainer's three files share (not a public API).
 *
 * train.c runs the state machine (preparation, passes, steps, epoch ends);
 * train_output.c writes the job's output files; train_checkpoint.c writes
 * and restores checkpoints.  All of them work on struct vt_trainer.
 */
#ifndef VT_TRAIN_IMPL_H
#define VT_TRAIN_IMPL_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "../common/clock.h"
#include "../common/log.h"
#include "dataset.h"
#include "featcache.h"
#include "image.h"
#include "loader.h"
#include "tbevents.h"
#include "tensorset.h"
#include "train.h"

/* (PH_SAVING: the final model and class map are being written, on their
 * own thread) */
typedef enum { PH_PREPARE, PH_TRAIN, PH_VAL, PH_EPOCH_END, PH_FINISH, PH_SAVING, PH_DONE } vt__phase;

/* What a batch of writes (train_write.c) came to. */
typedef struct {
    int rc;                     /* 0, or the error of the output that ended the batch */
    char msg[1024];
    int ckpt_written;           /* the batch held a checkpoint: */
    int ckpt_rc;                /* 0, or its error ("checkpoint: ...") */
    char ckpt_msg[1024];
    double ckpt_s;              /* seconds its write took */
} vt__wresult;

typedef struct vt__writes vt__writes;

/* A weights file the reading thread read for the preparation (the init
 * model, the checkpoint): its tensors, or the error reading it gave. */
typedef struct {
    int read;                   /* 1 once read (or tried): set and rc are final */
    int rc;                     /* 0 with set, or < 0 with the message in msg */
    vt_tensorset *set;
    char msg[1024];
} vt__preread;

struct vt_trainer {
    vt_jobspec spec;
    vt_trainer_env env;
    vt_trainer_hooks hooks;
    vt__phase phase;
    vt_dataset *train, *val;    /* val NULL when there is no validation */
    vt_params *p;
    vt_model *model;
    vt_loader *ltrain, *lval;
    vt_preprocess prep;
    vt_featcache *fc_train, *fc_val; /* shared feature caches, or NULL */
    vt_tensor *cache_train;     /* (copies * n_train, s, s, c) of fc_train, or NULL; copies
                                   2 with flip copies (rows n_train.. the mirror images) */
    vt_tensor *cache_val;       /* (n_val, s, s, c) of fc_val, or NULL */
    int64_t *stat_train, *stat_val; /* (n, 2) file size and mtime (ns) */
    uint8_t *have_train, *have_val; /* (rows of the cache) 1 = features stored */
    uint8_t *bad_train, *bad_val; /* (n) 1 = unreadable */
    int *order, order_n, pos;   /* this pass's samples; entries consumed so far */
    int from_loader;            /* this pass decodes images */
    int in_epoch;               /* the epoch's training pass has begun */
    int epoch_cached;           /* this epoch trains from the feature cache */
    vt_augment aug;             /* this pass's augmentation */
    int flip_copies;            /* flip-only augmentation: the training cache
                                   holds each image and its mirror image
                                   (rows i and n + i) */
    int resume_mid_epoch;       /* the checkpoint restored a partial epoch */
    int resume_val;             /* ... whose training pass was complete */
    int epoch;                  /* 0-based, in progress */
    uint64_t iteration;         /* SGD steps done over the whole job */
    int step, steps;            /* batches done / expected this epoch */
    int val_step, val_steps;    /* the same, of this epoch's validation pass */
    int pass_start;             /* the position the pass under way began at (a
                                   resumed pass reads only from there on) */
    int train_n;                /* images of this epoch's training pass */
    vt_xent_sums sums, val_sums; /* this pass's loss and correct counts, complete
                                    only after a vt_backend_sync() (see vt_train__settle) */
    int seen, val_seen;
    double t_epoch0, t_train_s, t_progress;
    double epoch_period;        /* seconds from one epoch's start to the next's, its
                                   files and the turns of other jobs included: the
                                   mean since this run's second epoch began (its first
                                   may fill a feature cache), until then the first's;
                                   0 until two epochs have started in this run */
    double t_period0;           /* when this run's second epoch began (0: not yet) */
    int nperiods;               /* epochs begun since then */
    vt_epoch_metrics *history;
    int nhistory;
    double best_val_loss;
    int best_epoch, stale, stop_early, best_saved;
    vt_scalar *steplog;         /* running training loss/accuracy every 10 steps */
    int nsteplog;
    double start_wall;          /* Unix seconds when this trainer started */
    double t_run0;              /* when this run's preparation began (vt_clock_mono) */
    double t_data;              /* ... when its data had been read */
    double t_ckpt;              /* when the last checkpoint was written (vt_clock_mono),
                                   or < 0: none yet in this run */
    double ckpt_cost_s;         /* seconds the last checkpoint took to write */
    int features_saved;         /* bottleneck features written (or why not said) */
    int out_created;            /* trailing components of spec.output this job created
                                   (in this run, or the run its checkpoint is of) */
    int take_over;              /* starting afresh in an existing output directory:
                                   an earlier job's outputs there are removed */
    int out_checked;            /* vt__check_output has passed (on the writing thread) */
    int discarding;             /* vt_trainer_discard_output's call is under way */
    int adopt;                  /* the discard takes the output folder first, as a
                                   resumed run would (vt_trainer_adopt_output) */
    int owns_output;            /* the output directory is this job's (taken over,
                                   or resumed in): a replaced model waiting there is
                                   put back if the job does not succeed */
    int32_t *labels;            /* (batch_size) */
    int *rows;                  /* (batch_size) cache rows of a batch */

    struct vt__reading *reading; /* the reading of the data under way (train_read.c):
                                    started in the first step, NULL before
                                    and once it has ended or been stopped */
    vt__writes *wbatch;         /* the writes being gathered (train_write.c), or NULL */
    vt__writes *writing;        /* a batch of writes under way, or NULL */
    int wrote_features;         /* the batch under way holds the bottleneck features */
    int wrote_best;             /* ... keep_best's model of the epoch that ended */
    vt__preread init_file;      /* spec.init, read by the reader after the data */
    vt__preread ckpt_file;      /* env.checkpoint, read by the reader when it exists */
};

/* ---- train.c ---- */


/* Sends a message to the job's log (the message hook, else the process log). */
void vt_train__say(vt_trainer *t, vt_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Takes on the job owner's file identity (a no-op without one) and the
 * permissions of what the job creates (spec.umask, vt_fileio_set_mask);
 * 0 or < 0.  Every successful enter is paired with a leave. */
int vt_train__enter(vt_trainer *t);
void vt_train__leave(vt_trainer *t);

/* Whether this run resumes: its checkpoint file exists (nothing writes it
 * during preparation, where this is asked). */
int vt_train__resuming(const vt_trainer *t);

/* Waits for the backend, so that t's loss sums and outputs are complete. */
int vt_train__settle(vt_trainer *t);

/* Once the files being written (train_write.c) are: reports what they
 * came to (an output that could not be written is the job's error; a
 * checkpoint, a warning) and goes on.  After an epoch end's, that is the
 * epoch_end hook and the next epoch or the finish; after the finish's
 * (PH_SAVING), the job is done (PH_DONE).  Without wait,
 * VT_TRAINER_WAITING while they are still written; with it, waits for
 * them.  0 at once when none are under way. */
int vt_train__written(vt_trainer *t, int wait);

/* ---- train_read.c ---- */

typedef struct vt__reading vt__reading;

/* Starts the reading (t->reading): a thread of its own scans spec's
 * folders, splits off validation and probes every image header, then
 * reads the init model (spec.init, as the job's owner, or the copy of it
 * waiting in OUT/.vggtune-replaced) and the checkpoint (when it exists),
 * for vt_train__read_end to put into train, val, bad_*, stat_*, init_file
 * and ckpt_file.  A file on a slow or dead mount holds up no other job.
 * 0, or < 0 when no thread can be started. */
int vt_train__read_start(vt_trainer *t);

/* With a reading under way: whether it has ended (then vt_train__read_end
 * goes on). */
int vt_train__read_done(vt_trainer *t);

/* Waits up to `seconds` for the reading to end; at once when none is under
 * way. */
void vt_train__read_wait(vt_trainer *t, double seconds);

/* Takes f's tensors into *set (NULL when f holds none); 0, or f's error
 * with its message. */
int vt_train__preread_take(vt__preread *f, vt_tensorset **set);

/* Once the reading has ended: takes its results into t, says in the job's
 * log what it skipped (links, unreadable images, a val_split that could
 * not be met) and refuses data with nothing to learn.  0, or the reader's
 * error or the refusal, with its message. */
int vt_train__read_end(vt_trainer *t);

/* Lets go of a reading under way, for ending a job in it: tells the
 * reader to stop and returns without waiting for it (a read stuck on a
 * dead mount must not hold up the caller); the reader frees what it has
 * as it ends, and calls no hook from here on.  A no-op when none is under
 * way. */
void vt_train__read_stop(vt_trainer *t);

/* ---- train_write.c ---- */

/* Add a write to the batch being gathered, taking what is written (freed
 * on failure too): bytes[len] to OUT/name; set to OUT/name, or to the
 * path `name` itself when checkpoint (then as the daemon, not the job's
 * owner); the TensorBoard events file OUT/name from scalars[n].  0 or
 * VT_ENOMEM (nothing added). */
int vt_train__write_bytes(vt_trainer *t, const char *name, char *bytes, size_t len);
int vt_train__write_set(vt_trainer *t, const char *name, vt_tensorset *set, int checkpoint);
int vt_train__write_events(vt_trainer *t, const char *name, vt_scalar *scalars, size_t n,
                           double start_wall);

/* Adds to the batch a call of call(t) on its thread, which may work on t:
 * the trainer touches nothing of it until the batch has ended.  call
 * takes the identity it needs itself; its error (< 0, with its message)
 * ends the batch like an output's.  0 or VT_ENOMEM. */
int vt_train__write_call(vt_trainer *t, int (*call)(vt_trainer *));

/* Starts writing the batch gathered (an empty one too) on a thread of its
 * own (t->writing), in the order the writes were added.  It calls the
 * data_ready hook as it ends.  0, or < 0 when no thread can be started
 * (the batch is dropped). */
int vt_train__write_start(vt_trainer *t);

/* With a batch under way: whether it has been written (then
 * vt_train__write_end returns at once). */
int vt_train__write_done(vt_trainer *t);

/* Waits up to `seconds` for the batch under way; at once when none is. */
void vt_train__write_wait(vt_trainer *t, double seconds);

/* Waits for the batch under way to end and fills res: 0, or the error of
 * the output that ended it (with its message; the outputs after it were
 * not written).  A checkpoint's result is in res alone. */
int vt_train__write_end(vt_trainer *t, vt__wresult *res);

/* Drops a batch being gathered and waits for one under way (freeing). */
void vt_train__write_drop(vt_trainer *t);

/* ---- train_output.c ---- */

/* Fills m from one entry of metrics JSON as vt_epoch_metrics_json writes
 * it; 0, or VT_EFORMAT naming the missing field. */
int vt_train__metrics_parse(const cJSON *o, vt_epoch_metrics *m);

/* The class names of ds as a JSON array (malloc'd), or NULL when out of
 * memory. */
char *vt_train__classes_json(const vt_dataset *ds);

/* Add to the batch of writes (train_write.c) the rewrite of
 * metrics.jsonl, metrics.csv and the TensorBoard events file from t's
 * history; bottleneck_features.safetensors from the training and
 * validation caches; model.safetensors from the model's weights now, with
 * epochs_done in its metadata; classmap.json.  Each file is written
 * durably as the job's owner.  0 or a negative VT_E* code. */
int vt_train__write_metrics(vt_trainer *t);
int vt_train__save_features(vt_trainer *t);
int vt_train__save_model(vt_trainer *t, int epochs_done);
int vt_train__write_classmap(vt_trainer *t);

/* At a fresh start, as the job's owner, saying what it did in the job log:
 * when OUT holds a finished model (vt_output_finished_model), moves every
 * file of the list above there into OUT/.vggtune-replaced (replacing an
 * older one), where they wait for this job's end; otherwise removes them
 * (an unfinished job's, with nothing worth keeping; a replaced model
 * already waiting stays).  0, or VT_EIO when one cannot be moved or
 * removed.  The move is all or nothing, even under kill -9: it fills a
 * folder of its own, renamed whole (see vt_train__sweep_outputs). */
int vt_train__remove_outputs(vt_trainer *t);

/* When the job has succeeded: removes the outputs it replaced (see
 * vt_train__remove_outputs).  When it has failed or was cancelled: removes
 * its own outputs from OUT and puts those back.  A no-op when none wait;
 * as the job's owner, best effort (a warning in the job log says what
 * stays where). */
void vt_train__end_replaced(vt_trainer *t, int succeeded);

/* When path names one of the outputs of output (OUT, however it is
 * spelled) that waits in OUT/.vggtune-replaced, as a job started from the
 * model it replaces finds it once restarted: 1 with that copy's path in
 * copy[len], else 0.  Runs as the caller is (the reader: the job's owner);
 * touches no trainer, so that the reading thread can call it. */
int vt_train__replaced_copy(const char *output, const char *path, char *copy, size_t len);

/* Fresh or resuming, as the job's owner, saying what it did in the job
 * log: puts back into OUT a replaced model that a run killed while moving
 * it (aside, or back) left in a folder of its own; removes the temporary
 * files of those outputs that a run killed while writing one left in OUT
 * (as large as the file each was to become; see vt_atomic_sweep).  Best
 * effort: what it cannot move or remove stays. */
void vt_train__sweep_outputs(vt_trainer *t);

/* Whether OUT holds a file by one of those names that vggtune did not
 * write (judged by its content: format metadata, first line), which taking
 * the directory over would delete: 1 with its name in name[len], 0 when
 * none, or an error (VT_EPERM for one the owner cannot read).  Runs as the
 * job's owner. */
int vt_train__foreign_output(vt_trainer *t, char *name, size_t len);

/* ---- train_checkpoint.c ---- */

/* Adds a checkpoint of t's state now to the batch of writes
 * (vt_trainer_checkpoint's gathering half); 0 or < 0. */
int vt_train__queue_checkpoint(vt_trainer *t);

/* Notes a checkpoint written (its time paces the next, vt__epoch_checkpoint). */
void vt_train__checkpoint_written(vt_trainer *t, const vt__wresult *res);

/* A resumed job's output folders that its first run made, as its
 * checkpoint records them (its header alone, read as the daemon), into
 * t->out_created, so that if the job fails or is cancelled they are
 * removed, when empty, as that run would have; only from a checkpoint of
 * this job (its document, vt_train__load_checkpoint's test) whose output
 * is this one. */
void vt_train__made_before(vt_trainer *t);

/* Restores t from the checkpoint at t->env.checkpoint if that file exists
 * (0 and nothing changed when it does not); refuses one that belongs to
 * another job or a different job document. */
int vt_train__load_checkpoint(vt_trainer *t);

#endif

/* train.h - one training job as a step-driven state machine.
 *
 * vt_trainer_step() does one bounded piece of work - preparing the job, one
 * batch of training, one batch of validation, the end of an epoch, writing
 * the outputs - and returns.  The daemon's device thread interleaves the
 * steps of all running jobs this way; `vggtuned run` calls it in a loop.
 *
 * Feature cache: the frozen part's output never changes, so while the
 * training images are not augmented in a way that changes pixels, the first
 * epoch stores each image's features and later epochs train from them,
 * skipping decode and the frozen convolutions.  Validation features are
 * always cached.  Caches are shared by every job whose features would be
 * the same (engine/featcache.h), so a second job on the same data and trunk
 * starts from the first one's features.  Results are bit-identical with and
 * without the cache.
 *
 * Outputs (OUT = spec.output), rewritten durably at every epoch end:
 *   metrics.jsonl, metrics.csv   one line/row per epoch
 *   events.out.tfevents.vggtune  TensorBoard scalars (epoch/..., and the
 *                                running training loss every 10 steps)
 *   model.safetensors            at the end (or the best epoch, keep_best)
 *   classmap.json                at the end
 *   bottleneck_features.safetensors  bottleneck jobs: the frozen features
 *                                of every image (see README)
 *
 * Determinism: the epoch order, dropout masks and augmentation are pure
 * functions of (seed, epoch, iteration, sample); a checkpoint holds the
 * trainable weights, velocities, counters, history and the list of
 * unreadable samples, so a job resumed from it continues exactly as if it
 * had not stopped.
 */
#ifndef VT_TRAIN_H
#define VT_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "../common/creds.h"
#include "../common/log.h"
#include "../common/pool.h"
#include "jobspec.h"
#include "model.h"

typedef struct vt_trainer vt_trainer;

typedef struct {
    int epoch, epochs;      /* 1-based epoch in progress; 0 while the data is
                               read (a resumed job's is not known before) */
    int step, steps;        /* batches done / in this phase's pass */
    double loss, accuracy;  /* running means over this pass so far */
    double images_per_s;    /* this epoch's training so far */
    double eta_s;           /* whole job, estimated */
    const char *phase;      /* "preparing" (the image headers being read:
                               step of steps), "training", "validating" (the
                               validation pass) or "saving" (an epoch
                               end's files, then the final model: epoch is
                               the one that ended); the daemon reports
                               "preparing" itself from the start */
} vt_progress;

enum { VT_CACHED_FEATURES = 1, VT_CACHED_IMAGES = 2 };

typedef struct {
    int epoch;              /* 1-based */
    double loss, accuracy;
    int has_val;
    double val_loss, val_accuracy;
    double images_per_s;    /* training images / training seconds */
    double seconds;         /* the whole epoch, validation included */
    double lr;              /* learning rate at the epoch's last step */
    int cached;             /* 0, or what the epoch trained from: VT_CACHED_FEATURES
                               (the frozen part's output), VT_CACHED_IMAGES
                               (scratch: nothing is frozen, so the cache holds
                               the decoded, resized images) */
    double time;            /* Unix seconds at the epoch's end */
    int kept_epoch;         /* keep_best: the epoch whose model is kept so far
                               (this one or an earlier one); 0 otherwise */
} vt_epoch_metrics;

typedef struct {
    /* Called by the steps, and while preparing by the thread that reads
     * the job's data (never both at once). */
    void (*progress)(void *ud, const vt_progress *p);
    void (*epoch_end)(void *ud, const vt_epoch_metrics *m);
    void (*message)(void *ud, vt_log_level level, const char *text);
    /* Called (may be NULL) once the output directory exists, with its
     * device and inode: < 0 with the message set refuses it (another
     * running job writes there, whatever path it named); 1 (the message
     * set) says that job has ended and lets go in a moment, once its
     * folder is put back in order (which may remove it): the directory is
     * made and asked for again, for up to a minute.  On the job's writing
     * thread. */
    int (*claim_output)(void *ud, uint64_t dev, uint64_t ino);
    /* Called (may be NULL) when vt_trainer_step may have work again: on the
     * thread that read the job's data, as it ends, well or not; on the
     * thread that wrote an epoch end's files, as it ends; and on a
     * decode-pool thread whenever a batch's images are decoded (with the
     * loader's lock held: it must not call the trainer).  The daemon wakes
     * its device thread with it. */
    void (*data_ready)(void *ud);
    void *ud;
} vt_trainer_hooks;

typedef struct {
    vt_backend *be;
    vt_pool *pool;            /* decode pool */
    vt_trunk *trunk;          /* frozen convolutions on be */
    const vt_params *base;    /* host copy of the trunk's convolutions */
    vt_preprocess base_prep;  /* preprocessing the trunk's weights expect */
    const char *base_desc;    /* where the trunk came from, for metadata */
    int base_random;          /* the trunk is the seeded random one */
    const vt_creds *creds;    /* read and write the job's files as this user */
    int64_t job_id;           /* the daemon's job number (0: vggtuned run): recorded
                                 in model.safetensors; another job's model in the
                                 output directory is replaced only with overwrite */
    const char *job_store;    /* the daemon's job store id (vt_store_id) that job_id
                                 belongs to, recorded with it; NULL: vggtuned run */
    const char *checkpoint;   /* checkpoint file (NULL: none), resumed if present */
    int final_checkpoint;     /* also write it after the last epoch (a file that
                                 outlives the run, to continue it with more epochs);
                                 the daemon removes a finished job's instead */
    size_t cache_limit;       /* device bytes new feature caches may take */
    size_t host_cache_limit;  /* host bytes for those that do not fit cache_limit
                                 (both 0: no caches) */
    struct vt_featcache_set *caches; /* feature caches shared between jobs */
    const uint64_t *base_hash; /* content hash of the trunk's weights (2 words) */
} vt_trainer_env;

/* Creates a trainer for spec (copied).  Cheap: the real preparation happens
 * in the first step, so errors about data and weights come from
 * vt_trainer_step(). */
int vt_trainer_create(vt_trainer **out, const vt_jobspec *spec, const vt_trainer_env *env,
                      const vt_trainer_hooks *hooks);

/* vt_trainer_step's answer while the job's data is read on a thread of
 * its own (the folder walk and the probe of every image header, which take
 * time in proportion to the data and need no device, then the init model
 * and the checkpoint files), and while an epoch end's files (metrics,
 * keep_best's model, bottleneck features, checkpoint) or the final model
 * and class map are written on one: nothing else to do until it ends;
 * vt_trainer_ready says when, vt_trainer_wait waits. */
#define VT_TRAINER_WAITING 2

/* Does one piece of work.  Returns 1 when there is more to do,
 * VT_TRAINER_WAITING (see above), 0 when the job has finished and its
 * outputs are written, or a negative code with the reason in
 * vt_error_msg(). */
int vt_trainer_step(vt_trainer *t);

/* 0 while vt_trainer_step would only answer VT_TRAINER_WAITING, or would
 * wait for the images of its next batch to decode (a read stuck on a dead
 * mount need not hold up other work), else 1.  Cheap; for the thread that
 * steps t. */
int vt_trainer_ready(vt_trainer *t);

/* Waits up to `seconds` until vt_trainer_ready; at once when it is. */
void vt_trainer_wait(vt_trainer *t, double seconds);

/* Whether the files of an epoch end, or the final model and class map,
 * are being written on their own thread (vt_trainer_step answers
 * VT_TRAINER_WAITING meanwhile).  Freeing the trainer then waits for
 * them: a caller that must not wait (a cancel) lets it go once
 * vt_trainer_ready says the writes have ended. */
int vt_trainer_writing(const vt_trainer *t);

/* For a job that ends (cancelled) or stops without another step: waits
 * for the files under way, then reports them as vt_trainer_step would
 * (the job's log, the epoch_end hook), so that the epoch they record is
 * the job's too; when they were the final model and class map, the job
 * is then done (vt_trainer_done).  0 at once when none are being
 * written; else 0, or the error of an output that could not be. */
int vt_trainer_files_written(vt_trainer *t);

/* Whether the job has finished: its final model and class map are
 * written (vt_trainer_step has returned 0, or vt_trainer_files_written
 * saw those writes end). */
int vt_trainer_done(const vt_trainer *t);

/* Whether the trainer is past preparation (its model exists). */
int vt_trainer_prepared(const vt_trainer *t);

/* The job as it runs, once prepared: the document it was given, with the
 * head layout taken from the init model when the document left it out.
 * Valid while t is. */
const vt_jobspec *vt_trainer_spec(const vt_trainer *t);

/* The preprocessing the job runs with, once prepared ("auto" resolved:
 * what its weights expect). */
vt_preprocess vt_trainer_preprocess(const vt_trainer *t);

/* Epochs completed so far. */
int vt_trainer_epochs_done(const vt_trainer *t);

/* Writes a checkpoint now, durably, to env->checkpoint, after waiting for
 * the files of an epoch end under way (and going on past it, as
 * vt_trainer_step would).  Exact at any step:
 * mid-epoch it records the position in the training pass and the epoch's
 * running sums, so a resume goes on from that batch (during validation:
 * that the training pass is done, and validation runs again).  0 without
 * env->checkpoint, before preparation, or once the job is done (the files
 * under way were its final ones): nothing written.  Else 0 or a negative
 * code ("checkpoint: ..."). */
int vt_trainer_checkpoint(vt_trainer *t);

/* The metrics of an epoch as a JSON object (as in metrics.jsonl); the caller
 * owns it (cJSON_Delete). */
struct cJSON *vt_epoch_metrics_json(const vt_epoch_metrics *m);

/* For a job that ends without success (failed or cancelled), as the job's
 * owner: puts back the finished model (and the other outputs) of the
 * earlier job that this one replaced, removing this job's own outputs;
 * then removes the output directory, and the parents of it, that this
 * trainer created, as long as they are empty, so that a job that wrote
 * nothing leaves nothing behind.  Not for a job stopped to resume later.
 * First waits for the files of an epoch end still being written (they
 * are not reported).  With wait 0 the work runs on the job's writing
 * thread (a dead mount holds up no other job) and 1 is returned while it
 * does: vt_trainer_ready says when it has ended, and a call then returns
 * 0.  With wait 1, or with nothing to do, it is done before returning 0.
 * NULL is a no-op. */
int vt_trainer_discard_output(vt_trainer *t, int wait);

/* For a job that ends before it started again after a stop (cancelled
 * while queued), its checkpoint still there, on a trainer made for that
 * alone (never stepped): vt_trainer_discard_output then first takes the
 * output folder as the resumed run would (it must be there and claimed,
 * with no other writer's model), and reads from the checkpoint the folders
 * the first run made, so that the folder is put in order as a cancelled
 * run's.  Without the checkpoint, or with the folder gone or another
 * job's, the discard does nothing. */
void vt_trainer_adopt_output(vt_trainer *t);

/* Frees the trainer; NULL is a no-op. */
void vt_trainer_free(vt_trainer *t);

#endif

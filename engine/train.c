/* train.c - the training state machine (see train.h).
 *
 * Phases, each step doing one bounded piece of work:
 *   PREPARE   check the output directory (on the job's writing thread, the
 *             first touch of a folder that may be on a dead mount), then
 *             read the data (scan and probe, train_read.c; the steps answer
 *             VT_TRAINER_WAITING until each ends); then build parameters and
 *             take the output directory over (writing thread), build model,
 *             loaders and caches, resume from a checkpoint if one exists
 *   TRAIN     one batch: from the decode loader (first epoch, or always when
 *             augmentation changes pixels) or from the feature cache
 *   VAL       one validation batch, forward only
 *   EPOCH_END metrics, metrics.jsonl, keep-best, early stopping, checkpoint
 *   FINISH    model.safetensors and classmap.json
 *
 * Buffers: cache_train (copies * n_train, s, s, c) and cache_val (n_val, s,
 * s, c) hold the frozen part's output per sample: on the device when they
 * fit env->cache_limit, else in host memory when they fit
 * env->host_cache_limit; batches move in and out of them with one gather or
 * scatter each.
 *
 * The output files are written by train_output.c, checkpoints by
 * train_checkpoint.c (train_impl.h is what the three share).
 */
#include "train_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/bg.h"
#include "../common/error.h"
#include "../common/fileio.h"
#include "../common/hash.h"
#include "../common/rng.h"
#include "../common/text.h"
#include "safetensors.h"
#include "weights.h"
#include "writer.h"

/* Epoch-end checkpoints take at most 1/VT__CKPT_RATIO of the job's time
 * (see vt__epoch_checkpoint); before one has been timed, writing is
 * estimated at VT__CKPT_EST_BPS bytes/s (an H200 machine's disk took 0.5 s
 * for a 264 MB checkpoint, 2026-12-04). */
#define VT__CKPT_RATIO 10.0
#define VT__CKPT_EST_BPS 500e6 /* VT_CHECKPOINT_EST_BPS overrides it (tests) */


void vt_train__say(vt_trainer *t, vt_log_level level, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (t->hooks.message)
        t->hooks.message(t->hooks.ud, level, buf);
    else
        vt_log(level, "%s", buf);
}

int vt_train__enter(vt_trainer *t)
{
    int rc = t->env.creds ? vt_creds_enter(t->env.creds) : 0;
    if (rc == 0)
        vt_fileio_set_mask(t->spec.umask);
    return rc;
}

void vt_train__leave(vt_trainer *t)
{
    vt_fileio_set_mask(-1);
    if (t->env.creds)
        vt_creds_leave();
}

int vt_trainer_create(vt_trainer **out, const vt_jobspec *spec, const vt_trainer_env *env,
                      const vt_trainer_hooks *hooks)
{
    vt_trainer *t = calloc(1, sizeof *t);
    int rc;
    *out = NULL;
    if (!t)
        return vt_error_set(VT_ENOMEM, "out of memory");
    if ((rc = vt_jobspec_copy(&t->spec, spec)) < 0) {
        free(t);
        return rc;
    }
    t->env = *env;
    if (hooks)
        t->hooks = *hooks;
    t->best_val_loss = INFINITY;
    t->start_wall = vt_clock_wall();
    t->t_ckpt = -1;
    *out = t;
    return 0;
}

void vt_trainer_free(vt_trainer *t)
{
    if (!t)
        return;
    vt_train__read_stop(t);
    vt_train__write_drop(t);
    vt_backend_sync(t->env.be); /* no result may still be on its way into t */
    vt_loader_free(t->ltrain);
    vt_loader_free(t->lval);
    if (t->env.caches) {
        vt_featcache_release(t->env.caches, t->fc_train);
        vt_featcache_release(t->env.caches, t->fc_val);
    }
    vt_model_free(t->model);
    vt_params_free(t->p);
    vt_dataset_free(t->train);
    vt_dataset_free(t->val);
    vt_tensorset_free(t->init_file.set);
    vt_tensorset_free(t->ckpt_file.set);
    free(t->bad_train);
    free(t->bad_val);
    free(t->stat_train);
    free(t->stat_val);
    free(t->order);
    free(t->history);
    free(t->labels);
    free(t->rows);
    free(t->steplog);
    vt_jobspec_free(&t->spec);
    free(t);
}

int vt_trainer_prepared(const vt_trainer *t) { return t->model != NULL; }
const vt_jobspec *vt_trainer_spec(const vt_trainer *t) { return &t->spec; }
vt_preprocess vt_trainer_preprocess(const vt_trainer *t) { return t->prep; }
int vt_trainer_epochs_done(const vt_trainer *t) { return t->nhistory; }

/* ---- preparation ------------------------------------------------------- */

/* "N training images", with the unreadable ones that are left out named,
 * into buf; ds may be NULL (no validation). */
static void vt__count_text(char *buf, size_t len, const vt_dataset *ds, const uint8_t *bad,
                           const char *what)
{
    int n = 0, skipped = 0;
    for (int i = 0; ds && i < ds->n; i++)
        skipped += bad[i] != 0;
    n = ds ? ds->n - skipped : 0;
    if (skipped)
        snprintf(buf, len, "%d %s image%s (%d unreadable left out)", n, what,
                 n == 1 ? "" : "s", skipped);
    else
        snprintf(buf, len, "%d %s image%s", n, what, n == 1 ? "" : "s");
}

/* The first convolution to take from the init model: every one this job
 * trains (init), or with init_job only those the source job trained too,
 * so that --init-head from a bottleneck job starts the head from it and
 * block 5 from this job's weights (the model's trainable_blocks metadata
 * says what it trained; without it, the head alone). */
static int vt__init_first_conv(const vt_jobspec *s, const vt_tensorset *init)
{
    int first = vt_vgg_first_trainable(s->trainable_blocks);
    if (s->init_job) {
        const char *tb = vt_tensorset_meta(init, "trainable_blocks");
        int src_first = tb && tb[0] >= '0' && tb[0] <= '5' && !tb[1]
                            ? vt_vgg_first_trainable(tb[0] - '0')
                            : VT_VGG_NCONV;
        first = src_first > first ? src_first : first;
    }
    return first;
}

#define VT__NAMES_SHOWN 8 /* class names listed in a message */

/* Appends "a, b, c" (the first VT__NAMES_SHOWN of count names, then ", ...")
 * to buf. */
static void vt__cat_names(char *buf, size_t n, char *const *names, int count)
{
    for (int i = 0; i < count && i < VT__NAMES_SHOWN; i++)
        vt_text_append(buf, n, "%s%s", i ? ", " : "", names[i]);
    if (count > VT__NAMES_SHOWN)
        vt_text_append(buf, n, ", ...");
}

/* Warns in the job's log when the init model's output units were trained
 * for other class names, or the same names in another order: the count
 * matches (checked before), so unit i silently takes on this data's class i
 * whatever it meant before.  Says nothing when the model records no class
 * names (a file not written by a job). */
static void vt__check_init_classes(vt_trainer *t, const vt_tensorset *init)
{
    const char *text = vt_tensorset_meta(init, "classes");
    cJSON *a = text ? cJSON_Parse(text) : NULL, *it;
    const vt_dataset *ds = t->train;
    char *names[VT__NAMES_SHOWN] = {0}, msg[1024] = "";
    int c = 0, ndiff = 0, shown = 0;

    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != ds->nclasses)
        goto done;
    cJSON_ArrayForEach(it, a) {
        if (!cJSON_IsString(it))
            goto done;
        if (strcmp(it->valuestring, ds->classes[c]) != 0)
            ndiff++;
        if (c < VT__NAMES_SHOWN)
            names[c] = it->valuestring;
        c++;
    }
    if (ndiff == 0)
        goto done;
    vt_text_append(msg, sizeof msg, "the init model's output units were trained for ");
    vt__cat_names(msg, sizeof msg, names, c);
    vt_text_append(msg, sizeof msg, "; this data's classes are ");
    vt__cat_names(msg, sizeof msg, ds->classes, ds->nclasses);
    c = 0;
    cJSON_ArrayForEach(it, a) {
        if (strcmp(it->valuestring, ds->classes[c]) != 0 && shown++ < 3)
            vt_text_append(msg, sizeof msg, "%s unit %d '%s' now means '%s'", shown > 1 ? "," : ":",
                    c, it->valuestring, ds->classes[c]);
        c++;
    }
    if (ndiff > 3)
        vt_text_append(msg, sizeof msg, " (and %d more)", ndiff - 3);
    vt_train__say(t, VT_LOG_WARN, "%s", msg);
done:
    cJSON_Delete(a);
}

/* Warns when the init model trained more of the trunk than this job does:
 * its head learned from the features of its own fine-tuned blocks, and
 * starts here on the frozen trunk's. */
static void vt__check_init_blocks(vt_trainer *t, const vt_tensorset *init)
{
    const char *v = vt_tensorset_meta(init, "trainable_blocks");
    int tb = v ? atoi(v) : -1;
    if (tb > t->spec.trainable_blocks && !vt_train__resuming(t))
        vt_train__say(t, VT_LOG_WARN, "the init model %s trained %d convolution block%s with "
                      "its head; this job trains %d, so its head starts on the features of "
                      "the trunk's own block%s, not the ones it learned from", t->spec.init, tb,
                      tb == 1 ? "" : "s", t->spec.trainable_blocks, tb == 1 ? "" : "s");
}

/* The preprocessing this job feeds its images with. */
static vt_preprocess vt__job_prep(const vt_trainer *t)
{
    return t->spec.preprocess >= 0 ? (vt_preprocess)t->spec.preprocess : t->env.base_prep;
}

/* Warns when the init model was trained on other input than this job's:
 * another preprocessing, or (its trainable blocks no more than this job's,
 * else vt__check_init_blocks has said it) the features of another frozen
 * trunk, by the descriptions the model and this job record. */
static void vt__check_init_input(vt_trainer *t, const vt_tensorset *init)
{
    const char *prep = vt_tensorset_meta(init, "preprocess"), *w = vt_tensorset_meta(init, "weights");
    const char *tb = vt_tensorset_meta(init, "trainable_blocks");
    const char *mine = vt_preprocess_name(vt__job_prep(t));
    const char *trunk = t->env.base_desc ? t->env.base_desc : "random";
    if (vt_train__resuming(t))
        return;
    if (prep && strcmp(prep, mine) != 0)
        vt_train__say(t, VT_LOG_WARN, "the init model %s was trained on images with %s "
                      "preprocessing; this job gives its images %s preprocessing "
                      "(data.preprocess, --preprocess %s, to match)", t->spec.init, prep,
                      mine, prep);
    if (w && t->spec.trainable_blocks < 5 && (!tb || atoi(tb) <= t->spec.trainable_blocks) &&
        strcmp(w, trunk) != 0)
        vt_train__say(t, VT_LOG_WARN, "the init model %s learned on the features of the trunk "
                      "%s; this job's frozen trunk is %s (weights, --weights, to match)",
                      t->spec.init, w, trunk);
}

/* Head layout and initial values: from the init file when there is one. */
static int vt__build_params(vt_trainer *t)
{
    vt_jobspec *s = &t->spec;
    vt_tensorset *init = NULL;
    int hidden[VT_MAX_DENSE], nhidden = s->nhidden, nclasses = t->train->nclasses;
    int in_features = 0, rc = 0;

    memcpy(hidden, s->hidden, sizeof s->hidden);
    if (s->init) { /* (read with the data) */
        int ih[VT_MAX_DENSE], inh, inc;
        if ((rc = vt_train__preread_take(&t->init_file, &init)) < 0)
            return rc;
        /* (a job resuming from its checkpoint has already started from it) */
        vt_writer owner = vt_writer_of(init);
        if (s->init_job && !vt_train__resuming(t) && owner.job >= 0 &&
            !vt_writer_is(&owner, s->init_job, t->env.job_store)) {
            char by[80];
            vt_writer_name(&owner, t->env.job_store, by, sizeof by);
            rc = vt_error_set(VT_ESTATE, "init_job: job %lld's model in %s was replaced by "
                              "%s's", (long long)s->init_job, s->init, by);
            goto done;
        }
        if ((rc = vt_weights_head_layout(init, s->init, ih, &inh, &inc, &in_features)) < 0)
            goto done;
        if (s->head_given && (inh != s->nhidden || memcmp(ih, s->hidden,
                                                           sizeof(int) * (size_t)inh) != 0)) {
            char a[128], b[128];
            vt_jobspec_layout(ih, inh, a, sizeof a);
            vt_jobspec_layout(s->hidden, s->nhidden, b, sizeof b);
            rc = vt_error_set(VT_EINVAL, "head.dense [%s] conflicts with the head of the "
                              "init model %s, which is [%s]; leave head.dense out to use it",
                              b, s->init, a);
            goto done;
        }
        if (inc != nclasses) {
            rc = vt_error_set(VT_EINVAL, "the init model %s has %d classes but the data has "
                              "%d", s->init, inc, nclasses);
            goto done;
        }
        vt__check_init_classes(t, init);
        vt__check_init_blocks(t, init);
        vt__check_init_input(t, init);
        int side = vt_vgg_side(s->image_size, VT_VGG_NBLOCKS);
        if (in_features != side * side * 512) {
            rc = vt_error_set(VT_EINVAL, "the init model %s was trained on another image "
                              "size (its head takes %d features; image_size %d gives %d)",
                              s->init, in_features, s->image_size, side * side * 512);
            goto done;
        }
        memcpy(hidden, ih, sizeof(int) * (size_t)inh);
        nhidden = inh;
        s->nhidden = inh;
        memcpy(s->hidden, ih, sizeof(int) * (size_t)inh);
        s->head_given = 1; /* known now: the document as the job runs says it */
    }
    if ((rc = vt_params_new(&t->p, s->image_size, hidden, nhidden, nclasses)) < 0)
        goto done;
    for (int i = 0; i < VT_VGG_NCONV; i++) {
        memcpy(t->p->conv_w[i], t->env.base->conv_w[i],
               sizeof(float) * (size_t)vt_vgg_conv_numel(i));
        memcpy(t->p->conv_b[i], t->env.base->conv_b[i], sizeof(float) * (size_t)vt_vgg16[i].cout);
    }
    /* Scratch training without a weights file starts every convolution from
     * the job's own seed; the shared random trunk serves the frozen modes. */
    vt_params_init_he(t->p, s->seed, s->trainable_blocks == 5 && t->env.base_random ? 3 : 2);
    if (init) {
        int loaded = 0;
        rc = vt_weights_load_model(t->p, init, vt__init_first_conv(s, init), s->init, &loaded);
        if (rc == 0)
            vt_train__say(t, VT_LOG_INFO, "initialised %d tensors from %s", loaded, s->init);
    }
done:
    vt_tensorset_free(init);
    return rc;
}

/* Gets the (possibly shared) feature cache of a dataset: its key is
 * everything the frozen part's output depends on. */
static int vt__make_cache(vt_trainer *t, const vt_dataset *ds, const uint8_t *bad,
                          const int64_t *stat, int copies, vt_featcache **fc,
                          vt_tensor **cache, uint8_t **have, size_t budget[2])
{
    uint64_t key[2];
    int side, ch, tb = t->spec.trainable_blocks, size = t->spec.image_size, rc;
    vt_dtype dt = vt_tensor_dtype(vt_model_features(t->model));
    vt_model_cut(t->model, &side, &ch);

    if (!t->env.caches)
        return 0;
    vt_hash_init(key);
    if (t->env.base_hash)
        vt_hash_add(key, t->env.base_hash, 2 * sizeof(uint64_t));
    vt_hash_add(key, &tb, sizeof tb);
    vt_hash_add(key, &size, sizeof size);
    vt_hash_add(key, &t->prep, sizeof t->prep);
    vt_hash_add(key, &dt, sizeof dt);
    vt_hash_add(key, &copies, sizeof copies);
    vt_hash_add(key, ds->root, strlen(ds->root) + 1);
    for (int i = 0; i < ds->n; i++) {
        vt_hash_add(key, ds->samples[i].path, strlen(ds->samples[i].path) + 1);
        vt_hash_add(key, &bad[i], 1);
        vt_hash_add(key, &stat[2 * i], 2 * sizeof *stat);
    }
    if ((rc = vt_featcache_acquire(t->env.caches, key, t->env.be, dt, copies * ds->n, side,
                                   ch, budget[0], budget[1], fc)) < 0 || !*fc)
        return rc;
    *cache = vt_featcache_tensor(*fc);
    *have = vt_featcache_have(*fc);
    size_t bytes = vt_featcache_bytes(*fc), *b = &budget[vt_featcache_on_host(*fc)];
    *b = *b > bytes ? *b - bytes : 0;
    return 0;
}

static int vt__epoch_checkpoint(vt_trainer *t, int saved_best);
static void vt__checkpoint_failed(vt_trainer *t, int saved_best);
static int vt__begin_pass(vt_trainer *t, int val);

/* Refuses, unless the job may overwrite, an output directory holding the
 * finished model of another daemon job or of `vggtuned run` (model files
 * record who wrote them: what is in the directory decides, however its path
 * is spelled).  A model it cannot read is not taken for replaceable.  A job
 * that starts afresh owns only a daemon job's own model (it ran to the end
 * before the daemon could record that, and runs again; every vggtuned run
 * is another writer); one resuming from its checkpoint also its own as
 * vggtuned run (going on with more epochs), and refuses a model another
 * writer finished there while it was stopped.  Runs as the job's owner
 * (enters itself). */
static int vt__check_model_owner(vt_trainer *t, int resuming)
{
    vt_writer owner;
    char by[80];
    int rc, waiting;
    if (t->spec.overwrite)
        return 0;
    if ((rc = vt_train__enter(t)) < 0)
        return rc;
    /* (one set aside for a replacement that has not finished counts too) */
    rc = vt_output_protected_model(t->spec.output, &owner, &waiting);
    vt_train__leave(t);
    if (rc < 0)
        return vt_error_wrap(rc, "output");
    if (rc == 0 || ((resuming || t->env.job_id > 0) &&
                    vt_writer_is(&owner, t->env.job_id, t->env.job_store)))
        return 0;
    vt_writer_name(&owner, t->env.job_store, by, sizeof by);
    return vt_error_set(VT_EBUSY, "output %s holds the model of %s, which finished%s; give this "
                        "job another output directory, or set overwrite (--overwrite) to "
                        "replace it", t->spec.output, by,
                        waiting ? " (kept in " VT_OUTPUT_ASIDE " while a job that replaces it "
                                  "has not finished)"
                        : resuming ? " there while this job was stopped" : "");
}

/* Refuses, unless the job may overwrite, to take over an output directory
 * holding another writer's finished model or a file by an output's name
 * that vggtune did not write.  Asked when the job starts and again just
 * before the outputs there are removed (the data may take minutes to load
 * in between).  Runs as the job's owner. */
static int vt__check_takeover(vt_trainer *t)
{
    char name[64];
    int rc;
    if (t->spec.overwrite)
        return 0;
    rc = vt__check_model_owner(t, 0);
    if (rc == 0 && (rc = vt_train__foreign_output(t, name, sizeof name)) == 1)
        rc = vt_error_set(VT_EBUSY, "output %s holds a %s that vggtune did not write, which "
                          "this job would replace; give it another output directory, or set "
                          "overwrite (--overwrite)", t->spec.output, name);
    return rc;
}

/* vt_bg_test_hold by the job's name and ".what". */
static void vt__test_hold_output(const vt_trainer *t, const char *what)
{
    char hold[sizeof t->spec.name + 16];
    snprintf(hold, sizeof hold, "%s.%s", t->spec.name, what);
    vt_bg_test_hold(hold);
}

/* Seconds a job waits for a job that has ended to let go of its output
 * directory (see vt__make_claim). */
#define VT__CLAIM_WAIT_S 60.0

/* Makes the output directory and claims it (claim_output), before
 * anything else is done there: another job of the process may have made
 * it under another name meanwhile, and the one refused removes nothing
 * (the folder is the other's).  Held by a job that has ended, it is made
 * and asked for again (every 20 ms, up to VT__CLAIM_WAIT_S).  As the job's
 * owner (entered). */
static int vt__make_claim(vt_trainer *t)
{
    double until = vt_clock_mono() + VT__CLAIM_WAIT_S;
    struct stat st;
    int rc;
    for (;;) {
        if ((rc = vt_mkdir_p(t->spec.output, &t->out_created)) < 0)
            return vt_error_wrap(rc, "output directory");
        vt__test_hold_output(t, "output");
        if (!t->hooks.claim_output)
            return 0;
        if (stat(t->spec.output, &st) < 0)
            rc = vt_error_set(VT_EIO, "output directory %s: %s", t->spec.output, strerror(errno));
        else
            rc = t->hooks.claim_output(t->hooks.ud, (uint64_t)st.st_dev, (uint64_t)st.st_ino);
        if (rc != 1 || vt_clock_mono() > until)
            break;
        nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
    }
    if (rc == 0)
        return 0;
    t->out_created = 0;
    return rc < 0 ? rc : VT_EBUSY; /* (the message: the claim's) */
}

/* Makes sure the output directory is not inside the data, exists and may
 * be written, as the job's owner.  Runs on the job's writing thread
 * (vt_train__write_call), while the device thread goes on with the other
 * jobs: a folder on a dead mount holds up this job alone, and its cancel
 * or a stop waits for it as for a write.  A job that starts afresh (no
 * checkpoint to resume) then takes the directory over: another writer's
 * finished model there, or a file by an output's name that vggtune did
 * not write, only with overwrite; t->take_over says that the output files
 * an earlier job left are to be removed (vt__take_over, once any init
 * model there is read), so that every one of them is this job's or
 * absent. */
static int vt__check_output(vt_trainer *t)
{
    char probe[PATH_MAX];
    int fresh = !vt_train__resuming(t);
    int rc, fd;
    if ((rc = vt_train__enter(t)) < 0)
        return rc;
    rc = vt_jobspec_check_utf8(&t->spec);
    if (rc == 0)
        rc = vt_jobspec_check_output(&t->spec);
    if (rc == 0)
        rc = vt__make_claim(t);
    if (rc == 0) {
        snprintf(probe, sizeof probe, "%s/.vggtune-write-test.%ld", t->spec.output,
                 (long)getpid());
        fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
            rc = vt_error_set(VT_EPERM, "output directory %s is not writable: %s",
                              t->spec.output, strerror(errno));
        else {
            close(fd);
            unlink(probe);
        }
    }
    vt_train__leave(t);
    if (rc == 0 && !t->out_created)
        vt_train__sweep_outputs(t);
    if (rc == 0 && fresh && !t->out_created)
        rc = vt__check_takeover(t);
    else if (rc == 0 && !fresh)
        rc = vt__check_model_owner(t, 1);
    t->take_over = rc == 0 && fresh && !t->out_created;
    /* The directory is this job's from here, when it resumes there (and
     * passed the checks above) or holds no finished model that a put back
     * replaced model would remove: a job failing before its first epoch
     * (data gone, init unreadable) puts back what an earlier run of it
     * moved aside.  A finished model to take over waits for
     * vt_train__remove_outputs. */
    if (rc == 0 && !fresh)
        t->owns_output = 1;
    else if (rc == 0 && vt_train__enter(t) == 0) {
        vt_writer w;
        t->owns_output = vt_output_finished_model(t->spec.output, &w) == 0;
        vt_train__leave(t);
    }
    if (rc == 0 && !fresh) /* (after the sweep, which a folder made now skips) */
        vt_train__made_before(t);
    return rc;
}

/* Asks again, on the job's writing thread, what vt__check_output asked of
 * an output folder to take over (the data may have taken minutes to read
 * in between), then removes the outputs an earlier job left there (moves
 * a finished model's aside).  0 (the folder is the job's: t->take_over
 * cleared, t->owns_output set) or the error. */
static int vt__take_over(vt_trainer *t)
{
    int rc;
    vt__test_hold_output(t, "takeover");
    if ((rc = vt__check_takeover(t)) < 0) {
        t->owns_output = 0; /* another writer's since: not to be removed */
        return rc;
    }
    if ((rc = vt_train__remove_outputs(t)) == 0) {
        t->take_over = 0;
        t->owns_output = 1; /* (what it moved aside is put back if it does not succeed) */
    }
    return rc;
}

/* The parameters, then the takeover of the output folder when it is due
 * (after them: the init model may be in that folder).  Runs on the job's
 * writing thread (vt_train__write_call) once the data is read: a scratch
 * job's He initialisation of a large head takes seconds, which the device
 * thread spends on the other jobs' steps. */
static int vt__make_params(vt_trainer *t)
{
    int rc;
    vt__test_hold_output(t, "params");
    if ((rc = vt__build_params(t)) < 0 || !t->take_over)
        return rc;
    return vt__take_over(t);
}

/* vt_trainer_adopt_output's taking of the output folder, as the job's
 * owner: 0 when it is the job's (t->owns_output set, t->out_created read
 * from the checkpoint), -1 when the discard is to leave it alone. */
static int vt__adopt(vt_trainer *t)
{
    struct stat st;
    int rc;
    if (!vt_train__resuming(t) || vt_train__enter(t) < 0)
        return -1;
    rc = stat(t->spec.output, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
    vt_train__leave(t);
    /* (a claim held by a job that is ending is not waited for: that job
     * has the folder now) */
    if (rc < 0 || (t->hooks.claim_output &&
                   t->hooks.claim_output(t->hooks.ud, (uint64_t)st.st_dev,
                                         (uint64_t)st.st_ino) != 0))
        return -1;
    vt_train__sweep_outputs(t);
    if (vt__check_model_owner(t, 1) < 0)
        return -1;
    t->owns_output = 1;
    vt_train__made_before(t);
    return 0;
}

void vt_trainer_adopt_output(vt_trainer *t) { t->adopt = 1; }

/* vt_trainer_discard_output's file work, as a call on the writing thread
 * or on the caller's. */
static int vt__discard_files(vt_trainer *t)
{
    char dir[PATH_MAX], *slash;
    size_t n;
    vt__test_hold_output(t, "discard");
    if (t->adopt) {
        t->adopt = 0;
        if (vt__adopt(t) < 0)
            return 0;
    }
    if (t->owns_output)
        vt_train__end_replaced(t, 0);
    /* the folders made are the path's last components as written: not so
     * with a "..", where nothing is removed */
    if (!t->out_created || strstr(t->spec.output, "/..") || vt_train__enter(t) < 0)
        return 0;
    snprintf(dir, sizeof dir, "%s", t->spec.output);
    for (int i = 0; i < t->out_created; i++) {
        for (n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--)
            dir[n - 1] = '\0';
        if (rmdir(dir) < 0) /* not empty (the job wrote something), or gone */
            break;
        if (!(slash = strrchr(dir, '/')) || slash == dir)
            break;
        *slash = '\0';
    }
    t->out_created = 0;
    vt_train__leave(t);
    return 0;
}

int vt_trainer_discard_output(vt_trainer *t, int wait)
{
    if (!t)
        return 0;
    if (t->discarding) { /* under way on the writing thread */
        if (!wait && !vt_train__write_done(t))
            return 1;
        vt_train__write_drop(t);
        t->discarding = 0;
        return 0;
    }
    vt_train__read_stop(t); /* (it writes nothing there) */
    /* An epoch end's files still being written would land in OUT after
     * the replaced outputs are put back, over them. */
    vt_train__write_drop(t);
    if (!t->owns_output && !t->out_created && !t->adopt)
        return 0;
    if (!wait && vt_train__write_call(t, vt__discard_files) == 0 &&
        vt_train__write_start(t) == 0) {
        t->discarding = 1;
        return 1;
    }
    vt_train__write_drop(t); /* (a call gathered, with no thread to run it) */
    vt__discard_files(t);
    return 0;
}

static int vt__prepare(vt_trainer *t)
{
    vt_jobspec *s = &t->spec;
    vt_model_opts mo;
    vt_loader_opts lo;
    size_t budget[2] = {t->env.cache_limit, t->env.host_cache_limit}; /* device, host */
    int rc, first_epoch_cache;
    double at[5]; /* when the data, the weights (and the folder taken over), the model and
                     the loaders were ready */

    if (!t->out_checked) { /* the first step: the output folder is checked meanwhile */
        t->t_run0 = vt_clock_mono();
        if ((rc = vt_train__write_call(t, vt__check_output)) < 0 ||
            (rc = vt_train__write_start(t)) < 0)
            return rc;
        return VT_TRAINER_WAITING;
    }
    if (!t->reading && !t->train) { /* then the data is read meanwhile */
        if ((rc = vt_train__read_start(t)) < 0)
            return rc;
        return VT_TRAINER_WAITING;
    }
    if (!t->p) {
        if (!vt_train__read_done(t))
            return VT_TRAINER_WAITING;
        if ((rc = vt_train__read_end(t)) < 0)
            return rc;
        t->t_data = vt_clock_mono();
        if ((rc = vt_train__write_call(t, vt__make_params)) < 0 ||
            (rc = vt_train__write_start(t)) < 0)
            return rc;
        return VT_TRAINER_WAITING;
    }
    t->owns_output = 1;
    at[0] = t->t_data;
    at[1] = vt_clock_mono();
    t->prep = vt__job_prep(t);
    mo = (vt_model_opts){.trainable_blocks = s->trainable_blocks,
                         .max_batch = s->batch_size,
                         .dropout = s->dropout,
                         .act = vt_backend_act_dtype(t->env.be, s->precision == VT_PREC_FP32
                                                                    ? "fp32" : "bf16")};
    if ((rc = vt_model_create(&t->model, t->env.trunk, t->p, &mo)) < 0)
        return rc;
    at[2] = vt_clock_mono();
    lo = (vt_loader_opts){.image_size = s->image_size, .max_batch = s->batch_size,
                          .creds = t->env.creds,
                          .device_resize = vt_backend_resizes_images(t->env.be),
                          .pinned = t->env.be,
                          .max_crop = s->crop,
                          .decoded = t->hooks.data_ready, .decoded_ud = t->hooks.ud};
    if ((rc = vt_loader_create(&t->ltrain, t->env.pool, t->train, &lo)) < 0)
        return rc;
    lo.max_crop = 0; /* validation images are never cropped */
    if (t->val && (rc = vt_loader_create(&t->lval, t->env.pool, t->val, &lo)) < 0)
        return rc;
    if (!(t->labels = malloc(sizeof *t->labels * (size_t)s->batch_size)) ||
        !(t->rows = malloc(sizeof *t->rows * (size_t)s->batch_size)) ||
        !(t->order = malloc(sizeof *t->order * /* the order of either pass */
                            (size_t)((t->val && t->val->n > t->train->n ? t->val->n
                                                                        : t->train->n) + 1))))
        return vt_error_set(VT_ENOMEM, "out of memory");
    at[3] = vt_clock_mono();
    /* Validation first: it is reused every epoch whatever the augmentation. */
    if (t->val && (rc = vt__make_cache(t, t->val, t->bad_val, t->stat_val, 1, &t->fc_val,
                                       &t->cache_val, &t->have_val, budget)) < 0)
        return rc;
    /* Crops change pixels every epoch: no training cache.  Flips alone are
     * cached as two copies. */
    first_epoch_cache = s->crop <= 0;
    if (first_epoch_cache &&
        (rc = vt__make_cache(t, t->train, t->bad_train, t->stat_train, s->flip ? 2 : 1,
                             &t->fc_train, &t->cache_train, &t->have_train, budget)) < 0)
        return rc;
    t->flip_copies = s->flip && t->cache_train;
    if ((rc = vt_train__load_checkpoint(t)) < 0)
        return rc;
    at[4] = vt_clock_mono();
    vt_train__say(t, VT_LOG_DEBUG,
            "prepared in %.3f s: output folder and data %.3f, weights and takeover %.3f, "
            "model on the device %.3f, loaders "
            "%.3f, feature caches and checkpoint %.3f",
            at[4] - t->t_run0, at[0] - t->t_run0, at[1] - at[0], at[2] - at[1], at[3] - at[2],
            at[4] - at[3]);
    char ntrain[64], nval[64];
    vt__count_text(ntrain, sizeof ntrain, t->train, t->bad_train, "training");
    vt__count_text(nval, sizeof nval, t->val, t->bad_val, "validation");
    vt_train__say(t, VT_LOG_INFO,
            "%s: %s, %s, %d classes; %s, image %d, "
            "batch %d, %s preprocessing, backend %s; %s cache %s",
            s->name, ntrain, nval, t->train->nclasses,
            vt_jobspec_mode_name(s->trainable_blocks), s->image_size, s->batch_size,
            vt_preprocess_name(t->prep), vt_backend_name(t->env.be),
            s->trainable_blocks == VT_VGG_NBLOCKS ? "image" : "feature",
            !t->cache_train ? (first_epoch_cache ? "off (does not fit)" : "off (random crops)")
            : vt_featcache_on_host(t->fc_train)
                ? (t->flip_copies ? "on, in host memory (with mirror images)" : "on, in host memory")
                : (t->flip_copies ? "on (with mirror images)" : "on"));
    t->phase = t->epoch >= s->epochs || t->stop_early ? PH_FINISH : PH_TRAIN;
    if (t->resume_val && t->phase == PH_TRAIN) {
        /* The training pass of this epoch had finished: validate again.
         * (The later epochs' estimate counts the images that pass read.) */
        t->in_epoch = 1;
        t->train_n = t->seen;
        t->steps = t->step; /* (its steps, for "saving" at the epoch's end) */
        t->phase = t->val ? PH_VAL : PH_EPOCH_END;
        t->pos = 0;
        if (t->val && (rc = vt__begin_pass(t, 1)) < 0)
            return rc;
    }
    return 0;
}

/* ---- passes ------------------------------------------------------------ */

/* Samples of a pass: the epoch's order over ds, minus unreadable ones. */
static void vt__make_order(vt_trainer *t, const vt_dataset *ds, const uint8_t *bad,
                           int shuffle)
{
    int n = 0;
    for (int i = 0; i < ds->n; i++)
        t->order[i] = i;
    if (shuffle)
        vt_rng_shuffle(t->order, ds->n, t->spec.seed,
                       ((uint64_t)VT_RNG_SHUFFLE << 32) + (uint64_t)t->epoch);
    for (int i = 0; i < ds->n; i++)
        if (!bad[t->order[i]])
            t->order[n++] = t->order[i];
    t->order_n = n;
}

/* Starts a pass at t->pos; it decodes (from_loader) unless every readable
 * sample's features are cached. */
static int vt__begin_pass(vt_trainer *t, int val)
{
    const vt_dataset *ds = val ? t->val : t->train;
    const uint8_t *bad = val ? t->bad_val : t->bad_train;
    const uint8_t *have = val ? t->have_val : t->have_train;
    int cached = (val ? t->cache_val : t->cache_train) != NULL;
    vt_augment aug = {.seed = t->spec.seed, .epoch = t->epoch, .flip = t->spec.flip,
                      .crop = t->spec.crop};

    vt__make_order(t, ds, bad, !val && t->spec.shuffle);
    /* A resumed pass starts where its checkpoint says, which must be in
     * the pass: order + pos indexes it. */
    if (t->pos < 0 || t->pos > t->order_n)
        return vt_error_set(VT_EFORMAT, "checkpoint %s: position %d in the epoch is outside "
                            "its %d image%s", t->env.checkpoint ? t->env.checkpoint : "",
                            t->pos, t->order_n, t->order_n == 1 ? "" : "s");
    for (int i = 0; i < ds->n && cached; i++)
        cached = bad[i] || (have[i] && (val || !t->flip_copies || have[ds->n + i]));
    t->from_loader = !cached;
    t->aug = aug;
    t->pass_start = t->pos;
    if (val) { /* (here, so that a job resumed into the validation pass counts it too) */
        t->val_step = 0;
        t->val_steps = (t->order_n + t->spec.batch_size - 1) / t->spec.batch_size;
    }
    if (!cached) { /* with flip copies the loader decodes unmirrored images */
        vt_loader *l = val ? t->lval : t->ltrain;
        int rc = vt_loader_begin(l, t->order + t->pos, t->order_n - t->pos,
                                 val || t->flip_copies || (!t->spec.flip && t->spec.crop <= 0)
                                     ? NULL
                                     : &aug);
        return rc < 0 ? rc : vt_loader_prefetch(l);
    }
    return 0;
}

/* Row of the training cache that holds sample's features for this epoch:
 * its mirror image's row when flip copies are kept and the epoch flips it. */
static int vt__cache_row(vt_trainer *t, int val, int sample)
{
    if (val || !t->flip_copies || !vt_augment_flipped(&t->aug, sample))
        return sample;
    return t->train->n + sample;
}

/* Frozen features of the batch's images into the cache at rows + offset. */
static int vt__store(vt_trainer *t, vt_tensor *cache, uint8_t *have, const vt_batch *b,
                     int offset)
{
    for (int i = 0; i < b->n; i++)
        t->rows[i] = offset + b->sample[i];
    int rc = vt_tensor_scatter_rows(cache, t->rows, vt_model_features(t->model), b->n);
    for (int i = 0; rc == 0 && i < b->n; i++)
        have[t->rows[i]] = 1;
    return rc;
}

/* A batch's decoded images -> preprocessed input -> frozen pass. */
static int vt__extract(vt_trainer *t, const vt_batch *b)
{
    int rc = vt_batch_to_input(t->env.be, b, t->spec.image_size, t->prep,
                               vt_model_input(t->model));
    return rc < 0 ? rc : vt_model_extract(t->model);
}

/* Mirrors every image of the batch: the backend does it when it resizes,
 * else the pixels are flipped, once the upload of the batch has read them. */
static int vt__flip_batch(vt_trainer *t, vt_batch *b, int S)
{
    int rc = b->boxes ? 0 : vt_backend_host_fence(t->env.be);
    for (int i = 0; rc == 0 && i < b->n; i++) {
        if (b->boxes)
            b->boxes[i].flip = !b->boxes[i].flip;
        else
            vt_image_flip(b->pixels + (size_t)i * S * S * 3, S, S);
    }
    return rc;
}

/* Puts the next batch of the pass into the model's features.  Returns the
 * batch size, 0 at the end of the pass. */
static int vt__next_batch(vt_trainer *t, int val)
{
    vt_tensor *cache = val ? t->cache_val : t->cache_train;
    uint8_t *have = val ? t->have_val : t->have_train;
    vt_batch *b;
    int rc, n, S = t->spec.image_size;

    if (!t->from_loader) {
        n = t->order_n - t->pos < t->spec.batch_size ? t->order_n - t->pos
                                                      : t->spec.batch_size;
        if (n <= 0)
            return 0;
        if ((rc = vt_model_set_batch(t->model, n)) < 0)
            return rc;
        for (int i = 0; i < n; i++) {
            int sample = t->order[t->pos + i];
            t->labels[i] = (val ? t->val : t->train)->samples[sample].label;
            t->rows[i] = vt__cache_row(t, val, sample);
        }
        if ((rc = vt_tensor_gather_rows(vt_model_features(t->model), cache, t->rows, n)) < 0)
            return rc;
        t->pos += n;
        return n;
    }
    if ((rc = vt_loader_next(val ? t->lval : t->ltrain, &b)) <= 0)
        return rc;
    n = b->n;
    t->pos += b->consumed;
    memcpy(t->labels, b->labels, sizeof *t->labels * (size_t)n);
    if ((rc = vt_model_set_batch(t->model, n)) < 0 || (rc = vt__extract(t, b)) < 0)
        return rc;
    if (cache && (rc = vt__store(t, cache, have, b, 0)) < 0)
        return rc;
    if (!val && t->flip_copies) {
        /* Both copies of every image, then this epoch's choice of each. */
        if ((rc = vt__flip_batch(t, b, S)) < 0 || (rc = vt__extract(t, b)) < 0 ||
            (rc = vt__store(t, cache, have, b, t->train->n)) < 0)
            return rc;
        for (int i = 0; i < n; i++)
            t->rows[i] = vt__cache_row(t, 0, b->sample[i]);
        if ((rc = vt_tensor_gather_rows(vt_model_features(t->model), cache, t->rows, n)) < 0)
            return rc;
    }
    return n;
}

/* Unreadable images of one pass named one by one in the job log; the rest
 * are counted. */
#define VT__SAY_FAILURES 10

/* Marks the samples the loader could not read in this pass, so later
 * passes skip them, and says so.  0, or VT_EIO when more than half of the
 * images the pass set out to read could not be: the data has gone or
 * changed under the job (a folder moved, a disk unmounted), and training
 * on what is left would give a model of a different dataset. */
static int vt__collect_failures(vt_trainer *t, int val)
{
    const vt_dataset *ds = val ? t->val : t->train;
    uint8_t *bad = val ? t->bad_val : t->bad_train;
    vt_loader *l = val ? t->lval : t->ltrain;
    const char *kind = val ? "validation" : "training";
    char first[512] = "";
    /* (the pass's order holds the samples not yet known bad; one resumed
     * mid-pass set out to read those from its position on) */
    int left = 0, found = 0, tried = t->order_n - t->pass_start, classes = 0;
    int *now = calloc(2 * (size_t)ds->nclasses, sizeof *now), *lost = now + ds->nclasses;
    if (!now)
        return vt_error_set(VT_ENOMEM, "out of memory");
    for (int i = 0; i < ds->n; i++) {
        const char *why = vt_loader_failure(l, i);
        if (why && !bad[i]) {
            bad[i] = 1;
            lost[ds->samples[i].label]++;
            if (!found++)
                snprintf(first, sizeof first, "%s", why);
            if (found <= VT__SAY_FAILURES)
                vt_train__say(t, VT_LOG_WARN, "skipping unreadable %s image (found decoding "
                              "it): %s", kind, why);
        }
        left += !bad[i];
        now[ds->samples[i].label] += !bad[i];
    }
    if (found > VT__SAY_FAILURES)
        vt_train__say(t, VT_LOG_WARN, "... and %d more unreadable %s image%s",
                      found - VT__SAY_FAILURES, kind, found - VT__SAY_FAILURES == 1 ? "" : "s");
    if (found)
        vt_train__say(t, VT_LOG_WARN, "%d %s image%s left", left, kind, left == 1 ? "" : "s");
    /* (the scan read every header: a class whose images all fail to decode
     * is found here, as the one with none readable was there) */
    for (int c = 0; c < ds->nclasses; c++) {
        if (lost[c] && !now[c])
            vt_train__say(t, VT_LOG_WARN, "%s class '%s' has no image left that decodes "
                          "(%d failed in epoch %d)", kind, ds->classes[c], lost[c],
                          t->epoch + 1);
        classes += now[c] > 0;
    }
    free(now);
    if (found > 0 && 2 * found > tried)
        return vt_error_set(VT_EIO, "%d of the %d %s image%s could not be read in epoch %d "
                            "(the first: %s): has the data gone or changed since the job "
                            "started?", found, tried, kind, tried == 1 ? "" : "s",
                            t->epoch + 1, first);
    if (found > 0 && !val && classes < 2)
        return vt_error_set(VT_EINVAL, "training data %s has readable images in only %d "
                            "class once those that failed to decode in epoch %d are left "
                            "out; at least 2 classes are needed", ds->root, classes,
                            t->epoch + 1);
    return 0;
}

/* Lets the device catch up, so that t->sums and t->val_sums are complete and
 * the clock covers the work queued so far.  A training step does not wait
 * for the device; this is where the trainer does. */
int vt_train__settle(vt_trainer *t) { return vt_backend_sync(t->env.be); }

int vt_train__resuming(const vt_trainer *t)
{
    return t->env.checkpoint && access(t->env.checkpoint, F_OK) == 0;
}

/* Seconds the job still needs, estimated (rate: this epoch's training
 * images/s): what is left of this epoch's training at that rate, of its
 * validation at the validation pass's own pace so far (before it, the last
 * epoch's validation time), and the later epochs at the mean time from one
 * epoch's start to the next (epoch_period), else the last whole epoch's
 * time, validation included (before one has finished, this epoch's rate).
 * Early stopping is not foreseen, until it is decided. */
static double vt__eta(const vt_trainer *t, const char *phase, double now, double rate)
{
    const vt_epoch_metrics *last = t->nhistory ? &t->history[t->nhistory - 1] : NULL;
    int later = t->stop_early ? -1 : t->spec.epochs - t->epoch - 1; /* (-1: none ahead) */
    double val_s = 0, epoch_s, left = 0, val_el;
    if (last && last->images_per_s > 0 && t->val)
        val_s = fmax(0, last->seconds - t->train_n / last->images_per_s);
    /* (an epoch's metrics time its passes; its files, written after, and
     * the other jobs' turns can take longer than those for a small one) */
    epoch_s = t->epoch_period > 0 ? t->epoch_period
            : last ? last->seconds : rate > 0 ? t->train_n / rate : 0;
    if (!strcmp(phase, "training")) {
        if (rate > 0 && t->train_n > t->seen)
            left = (t->train_n - t->seen) / rate;
        left += val_s;
    } else if (!strcmp(phase, "validating")) {
        val_el = now - t->t_epoch0 - t->t_train_s;
        left = t->val_step > 0 ? val_el / t->val_step * (t->val_steps - t->val_step)
                               : fmax(0, val_s - val_el);
    } else if (!strcmp(phase, "saving") && later >= 0) {
        left = epoch_s; /* (an epoch end's: t->epoch counts it, the next is all ahead) */
    }
    return left + (later > 0 ? later * epoch_s : 0);
}

/* Reports progress, at most every VT__PROGRESS_S seconds (each report waits
 * for the device) and at the end of a pass or a phase change (force).
 * phase is "training" (the training pass's steps and running means),
 * "validating" (the validation pass's) or "saving" (an epoch end's files,
 * or the final model). */
#define VT__PROGRESS_S 0.25
static int vt__progress(vt_trainer *t, const char *phase, int force)
{
    vt_progress p = {0};
    int val = !strcmp(phase, "validating"), training = !strcmp(phase, "training");
    int seen = val ? t->val_seen : t->seen;
    const vt_xent_sums *sums = val ? &t->val_sums : &t->sums;
    double el, rate, now = vt_clock_mono();
    int rc;
    if (!t->hooks.progress || (!force && now - t->t_progress < VT__PROGRESS_S))
        return 0;
    if ((rc = vt_train__settle(t)) < 0)
        return rc;
    t->t_progress = now = vt_clock_mono();
    el = training ? now - t->t_epoch0 : t->t_train_s; /* this epoch's training */
    rate = el > 0 ? t->seen / el : 0;
    p.epoch = strcmp(phase, "saving") ? t->epoch + 1 : t->nhistory; /* the ended one, when saving */
    p.epochs = t->spec.epochs;
    p.step = val ? t->val_step : t->step;
    p.steps = val ? t->val_steps : t->steps;
    p.loss = seen ? sums->loss / seen : 0;
    p.accuracy = seen ? (double)sums->correct / seen : 0;
    p.images_per_s = rate;
    p.eta_s = vt__eta(t, phase, now, rate);
    p.phase = phase;
    t->hooks.progress(t->hooks.ud, &p);
    return 0;
}

/* Records the running training loss and accuracy for TensorBoard. */
static int vt__log_step(vt_trainer *t)
{
    int rc = vt_train__settle(t);
    if (rc < 0)
        return rc;
    vt_scalar *l = realloc(t->steplog, sizeof *l * (size_t)(t->nsteplog + 2));
    if (!l)
        return vt_error_set(VT_ENOMEM, "out of memory");
    t->steplog = l;
    l[t->nsteplog] = (vt_scalar){"step/loss", (int64_t)t->iteration, vt_clock_wall(),
                                 (float)(t->sums.loss / t->seen)};
    l[t->nsteplog + 1] = (vt_scalar){"step/accuracy", (int64_t)t->iteration, vt_clock_wall(),
                                     (float)t->sums.correct / (float)t->seen};
    t->nsteplog += 2;
    return 0;
}

static int vt__train_step(vt_trainer *t)
{
    int n, rc;
    if ((n = vt__next_batch(t, 0)) < 0)
        return n;
    if (n == 0) {
        if (t->from_loader && (rc = vt__collect_failures(t, 0)) < 0)
            return rc;
        if ((rc = vt__progress(t, "training", 1)) < 0 || (rc = vt_train__settle(t)) < 0)
            return rc;
        t->t_train_s = vt_clock_mono() - t->t_epoch0;
        if (t->seen == 0)
            return vt_error_set(VT_EINVAL, "no training image could be read");
        if (t->val) {
            t->phase = PH_VAL;
            t->pos = 0;
            return vt__begin_pass(t, 1);
        }
        t->phase = PH_EPOCH_END;
        return 0;
    }
    vt_step_args a = {
        .sgd = {.lr = (float)vt_jobspec_lr(&t->spec, t->iteration, t->epoch),
                .momentum = (float)t->spec.momentum,
                .weight_decay = (float)t->spec.weight_decay,
                .nesterov = t->spec.nesterov},
        .seed = t->spec.seed,
        .iteration = t->iteration};
    if ((rc = vt_model_train_step(t->model, t->labels, &a, &t->sums)) < 0)
        return rc;
    t->seen += n;
    t->iteration++;
    t->step++;
    if (t->iteration % 10 == 0 && (rc = vt__log_step(t)) < 0)
        return rc;
    return vt__progress(t, "training", 0);
}

static int vt__val_step(vt_trainer *t)
{
    int n, rc;
    if ((n = vt__next_batch(t, 1)) < 0)
        return n;
    if (n == 0) {
        if (t->from_loader && (rc = vt__collect_failures(t, 1)) < 0)
            return rc;
        t->phase = PH_EPOCH_END;
        return vt__progress(t, "validating", 1);
    }
    if ((rc = vt_model_evaluate(t->model, t->labels, NULL, NULL, &t->val_sums)) < 0)
        return rc;
    t->val_seen += n;
    t->val_step++;
    return vt__progress(t, "validating", 0);
}

/* Starts the epoch's training pass; a job resumed mid-epoch keeps the
 * position and sums its checkpoint restored. */
static int vt__begin_epoch(vt_trainer *t)
{
    if (!t->resume_mid_epoch) {
        double now = vt_clock_mono();
        t->step = t->seen = t->pos = 0;
        t->sums = (vt_xent_sums){0};
        if (t->t_period0 > 0) {
            t->epoch_period = (now - t->t_period0) / ++t->nperiods;
        } else if (t->t_epoch0 > 0) {
            t->epoch_period = now - t->t_epoch0;
            t->t_period0 = now;
        }
        t->t_epoch0 = now;
    }
    t->resume_mid_epoch = 0;
    t->val_seen = 0;
    t->val_sums = (vt_xent_sums){0};
    int rc = vt__begin_pass(t, 0);
    t->epoch_cached = !t->from_loader;
    t->train_n = t->order_n;
    t->steps = (t->order_n + t->spec.batch_size - 1) / t->spec.batch_size;
    return rc;
}

/* ---- epoch end and finish ---------------------------------------------- */

static int vt__epoch_end(vt_trainer *t)
{
    vt_epoch_metrics m = {0};
    vt_epoch_metrics *h;
    int rc, improved;

    if ((rc = vt_train__settle(t)) < 0)
        return rc;
    m.epoch = t->epoch + 1;
    m.loss = t->seen ? t->sums.loss / t->seen : 0;
    m.accuracy = t->seen ? (double)t->sums.correct / t->seen : 0;
    m.has_val = t->val && t->val_seen > 0;
    m.val_loss = t->val_seen ? t->val_sums.loss / t->val_seen : 0;
    m.val_accuracy = t->val_seen ? (double)t->val_sums.correct / t->val_seen : 0;
    m.images_per_s = t->t_train_s > 0 ? t->seen / t->t_train_s : 0;
    m.seconds = vt_clock_mono() - t->t_epoch0;
    /* the last step's rate, a function of the position: right after a
     * resume too, when this epoch's steps ran before the restart */
    m.lr = (float)vt_jobspec_lr(&t->spec, t->iteration > 0 ? t->iteration - 1 : 0, t->epoch);
    m.cached = !t->epoch_cached                   ? 0
               : t->spec.trainable_blocks == VT_VGG_NBLOCKS ? VT_CACHED_IMAGES
                                                          : VT_CACHED_FEATURES;
    m.time = vt_clock_wall();
    if (!isfinite(m.loss) || (m.has_val && !isfinite(m.val_loss)))
        return vt_error_set(VT_EINVAL, "training diverged: the %s loss of epoch %d is %s; "
                            "lower optimizer.lr (now %g)",
                            isfinite(m.loss) ? "validation" : "training", m.epoch,
                            isnan(isfinite(m.loss) ? m.val_loss : m.loss) ? "not a number"
                                                                         : "infinite",
                            t->spec.lr);
    improved = m.has_val && m.val_loss < t->best_val_loss - t->spec.min_delta;
    if (t->spec.keep_best)
        m.kept_epoch = improved ? m.epoch : t->best_saved ? t->best_epoch : 0;
    if (!(h = realloc(t->history, sizeof *h * (size_t)(t->nhistory + 1))))
        return vt_error_set(VT_ENOMEM, "out of memory");
    t->history = h;
    t->history[t->nhistory++] = m;
    /* The files are gathered here and written on a thread of their own
     * (train_write.c); vt_train__written goes on once they are. */
    if ((rc = vt_train__write_metrics(t)) < 0)
        return rc;
    t->wrote_features = t->wrote_best = 0;
    /* After an epoch every readable image's features are in the caches. */
    if (t->spec.trainable_blocks == 0 && !t->features_saved) {
        if (t->cache_train && (!t->val || t->cache_val)) {
            if ((rc = vt_train__save_features(t)) < 0)
                return rc;
            t->features_saved = t->wrote_features = 1;
        } else {
            vt_train__say(t, VT_LOG_WARN, "bottleneck_features.safetensors not written: the feature "
                    "cache is off (%s), so every epoch runs the frozen trunk",
                    t->spec.crop > 0 ? "random crops change the pixels every epoch"
                                     : "it does not fit in memory");
            t->features_saved = 1; /* said once */
        }
    }

    if (m.has_val) {
        if (improved) {
            t->best_val_loss = m.val_loss;
            t->best_epoch = m.epoch;
            t->stale = 0;
            if (t->spec.keep_best) {
                if ((rc = vt_train__save_model(t, m.epoch)) < 0)
                    return rc;
                t->best_saved = t->wrote_best = 1;
            }
        } else if (++t->stale >= t->spec.patience && t->spec.patience > 0 &&
                   t->epoch + 1 < t->spec.epochs) { /* the last epoch ends anyway */
            t->stop_early = 1;
        }
    }
    t->epoch++;
    if ((rc = vt__epoch_checkpoint(t, t->wrote_best)) < 0 ||
        (rc = vt__progress(t, "saving", 1)) < 0 || (rc = vt_train__write_start(t)) < 0)
        return rc;
    return VT_TRAINER_WAITING;
}

/* vt_train__written after an epoch end's files. */
static int vt__epoch_written(vt_trainer *t)
{
    const vt_epoch_metrics *m;
    vt__wresult res;
    int rc;

    if ((rc = vt_train__write_end(t, &res)) < 0)
        return rc;
    if (t->wrote_features)
        vt_train__say(t, VT_LOG_INFO, "bottleneck features saved to "
                      "%s/bottleneck_features.safetensors", t->spec.output);
    if (res.ckpt_written && res.ckpt_rc == 0) {
        vt_train__checkpoint_written(t, &res);
    } else if (res.ckpt_written) {
        rc = vt_error_set(res.ckpt_rc, "%s", res.ckpt_msg);
        if (rc != VT_EIO)
            return rc;
        vt__checkpoint_failed(t, t->wrote_best);
    }
    m = &t->history[t->nhistory - 1];
    if (t->hooks.epoch_end)
        t->hooks.epoch_end(t->hooks.ud, m);
    if (t->stop_early) /* after the epoch's own line, which it refers to */
        vt_train__say(t, VT_LOG_INFO, "early stopping after epoch %d: val_loss has not "
                "improved for %d epoch%s (best %.4f at epoch %d)", m->epoch, t->stale,
                t->stale == 1 ? "" : "s", t->best_val_loss, t->best_epoch);
    t->phase = t->epoch >= t->spec.epochs || t->stop_early ? PH_FINISH : PH_TRAIN;
    return 0;
}

/* Seconds a checkpoint of t is estimated to take to write, from its size
 * (VT_CHECKPOINT_EST_BPS replaces the rate). */
static double vt__checkpoint_estimate(const vt_trainer *t)
{
    const char *bps = getenv("VT_CHECKPOINT_EST_BPS");
    double rate = bps && atof(bps) > 0 ? atof(bps) : VT__CKPT_EST_BPS, bytes = 0;
    for (int i = 0; i < vt_model_nparams(t->model); i++) /* weights and momenta, f32 */
        bytes += 8.0 * (double)vt_tensor_numel(vt_model_param(t->model, i));
    return bytes / rate;
}

/* The checkpoint at the end of an epoch (t->epoch already counts it);
 * saved_best: this epoch wrote keep_best's model.  A
 * checkpoint is a durable write of the trainable weights and their momenta,
 * hundreds of MiB for a finetune head; from cached features a GPU epoch
 * takes a fraction of that.  So one is written only when the time since the
 * last checkpoint (or since this run began) is at least VT__CKPT_RATIO
 * times what writing one takes (the last one's time, or an estimate from
 * its size): the overhead stays under 1/VT__CKPT_RATIO of the job, and a
 * crash loses no more than that many checkpoint-writing times of work (or
 * one epoch, when epochs are longer).  Always after an epoch whose model
 * keep_best wrote (the resume must not redo it differently).  After the
 * last epoch only with env.final_checkpoint: the model is written next.  A
 * stop or shutdown writes its own (vt_trainer_checkpoint). */
static int vt__epoch_checkpoint(vt_trainer *t, int saved_best)
{
    double since, cost;
    if (!t->env.checkpoint)
        return 0;
    if (t->epoch >= t->spec.epochs || t->stop_early)
        return t->env.final_checkpoint ? vt_train__queue_checkpoint(t) : 0;
    /* model.safetensors now holds this epoch: a resume must start from it */
    if (saved_best)
        return vt_train__queue_checkpoint(t);
    if (t->t_ckpt >= 0) {
        since = vt_clock_mono() - t->t_ckpt;
        cost = t->ckpt_cost_s;
    } else { /* none yet: the run's time against the checkpoint's size */
        since = vt_clock_mono() - t->t_run0;
        cost = vt__checkpoint_estimate(t);
    }
    if (since < VT__CKPT_RATIO * cost)
        return 0;
    return vt_train__queue_checkpoint(t);
}

/* After an epoch-end checkpoint that could not be written (a full or
 * failing disk under the state directory: the message is set).  That is a
 * safety net lost, not the job: it goes on, and a later epoch end tries
 * again, each failure doubling the wait (a failed write is quick, and
 * would otherwise be retried, with its downloads, at every epoch end).
 * After keep_best wrote this epoch's model, the last checkpoint is
 * removed: a resume from it could keep this model on a run that differs
 * (not bit-identical, as on a GPU) without ever reaching this epoch again,
 * while a job started over rewrites the model from its first epoch on. */
static void vt__checkpoint_failed(vt_trainer *t, int saved_best)
{
    char why[1024];
    snprintf(why, sizeof why, "%s", vt_error_msg());
    if (saved_best && vt_train__resuming(t) && unlink(t->env.checkpoint) < 0)
        vt_train__say(t, VT_LOG_WARN, "cannot remove the outdated checkpoint %s: %s",
                      t->env.checkpoint, strerror(errno));
    vt_train__say(t, VT_LOG_WARN, "%s; the job goes on, and if it is stopped before a "
                  "checkpoint is written it will %s", why,
                  vt_train__resuming(t) ? "resume from an earlier one" : "start again");
    t->t_ckpt = vt_clock_mono();
    t->ckpt_cost_s = fmax(2.0 * t->ckpt_cost_s, vt__checkpoint_estimate(t));
}

/* Once the final model and class map are written (the call after them in
 * their batch): the outputs the job replaced go. */
static int vt__replaced_go(vt_trainer *t)
{
    vt_train__end_replaced(t, 1);
    return 0;
}

/* The final model and the class map, which the job must have written
 * before it counts as done: gathered here, written on a thread of their
 * own (up to 550 MB for scratch training, seconds on a network file
 * system, while the other jobs step), and the outputs it replaced then
 * removed there; vt__finish_written goes on. */
static int vt__finish(vt_trainer *t)
{
    int rc;
    if ((rc = vt__progress(t, "saving", 1)) < 0)
        return rc;
    if (!(t->spec.keep_best && t->best_saved) &&
        (rc = vt_train__save_model(t, t->nhistory)) < 0)
        return rc;
    if ((rc = vt_train__write_classmap(t)) < 0 ||
        (rc = vt_train__write_call(t, vt__replaced_go)) < 0 || (rc = vt_train__write_start(t)) < 0)
        return rc;
    t->phase = PH_SAVING;
    return VT_TRAINER_WAITING;
}

/* vt_train__written after the finish's files: the job is done.  (One that
 * could not be written leaves it to be finished again.) */
static int vt__finish_written(vt_trainer *t)
{
    vt__wresult res;
    int rc;
    if ((rc = vt_train__write_end(t, &res)) < 0) {
        t->phase = PH_FINISH;
        return rc;
    }
    if (t->spec.keep_best && t->best_saved)
        vt_train__say(t, VT_LOG_INFO, "kept the model of epoch %d (val_loss %.4f)", t->best_epoch,
                t->best_val_loss);
    if (t->model && vt_model_replays(t->model) > 0) /* (VT_CUDA_GRAPHS=1) */
        vt_train__say(t, VT_LOG_DEBUG, "%ld training steps of this run replayed as CUDA graphs",
                vt_model_replays(t->model));
    t->phase = PH_DONE;
    return 0;
}

/* A check of the output folder on the writing thread has ended (the first,
 * or the takeover's): 0 when it passed, else its error. */
static int vt__output_checked(vt_trainer *t)
{
    vt__wresult res;
    int rc = vt_train__write_end(t, &res);
    t->out_checked = rc == 0;
    return rc;
}

int vt_train__written(vt_trainer *t, int wait)
{
    if (!t->writing)
        return 0;
    if (!wait && !vt_train__write_done(t))
        return VT_TRAINER_WAITING;
    if (t->phase == PH_PREPARE) /* (a call: the output folder's check, the parameters) */
        return vt__output_checked(t);
    return t->phase == PH_SAVING ? vt__finish_written(t) : vt__epoch_written(t);
}

int vt_trainer_step(vt_trainer *t)
{
    int rc = 0;
    if (t->writing && ((rc = vt_train__written(t, 0)) < 0 || rc == VT_TRAINER_WAITING))
        return rc;
    switch (t->phase) {
    case PH_PREPARE:
        rc = vt__prepare(t);
        break;
    case PH_TRAIN:
        if (!t->in_epoch) {
            if ((rc = vt__begin_epoch(t)) < 0)
                break;
            t->in_epoch = 1;
            if (!vt_trainer_ready(t)) /* (its first images still decode) */
                break;
        }
        rc = vt__train_step(t);
        break;
    case PH_VAL:
        rc = vt__val_step(t);
        break;
    case PH_EPOCH_END:
        t->in_epoch = 0;
        rc = vt__epoch_end(t);
        break;
    case PH_FINISH:
        rc = vt__finish(t);
        break;
    case PH_SAVING: /* (t->writing: answered above) */
    case PH_DONE:
        return 0;
    }
    if (rc < 0 || rc == VT_TRAINER_WAITING)
        return rc;
    return t->phase == PH_DONE ? 0 : 1;
}

int vt_trainer_ready(vt_trainer *t)
{
    if (t->reading && !vt_train__read_done(t))
        return 0;
    if (t->writing)
        return vt_train__write_done(t);
    /* the passes that decode: their next batch */
    if (t->phase == PH_TRAIN && t->in_epoch && t->from_loader)
        return vt_loader_ready(t->ltrain);
    if (t->phase == PH_VAL && t->from_loader)
        return vt_loader_ready(t->lval);
    return 1;
}

void vt_trainer_wait(vt_trainer *t, double seconds)
{
    if (t->writing)
        vt_train__write_wait(t, seconds);
    else
        vt_train__read_wait(t, seconds);
}

int vt_trainer_writing(const vt_trainer *t) { return t->writing != NULL; }

int vt_trainer_files_written(vt_trainer *t) { return vt_train__written(t, 1); }

int vt_trainer_done(const vt_trainer *t) { return t->phase == PH_DONE; }

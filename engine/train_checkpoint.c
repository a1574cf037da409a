/* train_checkpoint.c - a training job's checkpoint: trainable weights,
 * momenta, the iteration, the RNG position, the epoch history, the position
 * inside a partial epoch and the unreadable samples, in one safetensors file
 * written durably, and restoring all of it (refusing a checkpoint that
 * another job or a different job document wrote, and starting again when
 * the frozen trunk changed under it).
 */
#include "train_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/error.h"
#include "../common/hash.h"
#include "safetensors.h"

#define VT__CKPT_FORMAT "vggtune-checkpoint-1"

static char *vt__bad_list(const uint8_t *bad, int n)
{
    cJSON *a = cJSON_CreateArray();
    char *s;
    for (int i = 0; a && i < n; i++)
        if (bad[i])
            cJSON_AddItemToArray(a, cJSON_CreateNumber(i));
    s = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return s;
}

static int vt__bad_parse(const char *text, uint8_t *bad, int n)
{
    cJSON *a = text ? cJSON_Parse(text) : NULL, *it;
    if (!cJSON_IsArray(a)) {
        cJSON_Delete(a);
        return vt_error_set(VT_EFORMAT, "checkpoint: bad sample list is malformed");
    }
    cJSON_ArrayForEach(it, a) {
        if (cJSON_IsNumber(it) && it->valuedouble >= 0 && it->valuedouble < n)
            bad[(int)it->valuedouble] = 1;
    }
    cJSON_Delete(a);
    return 0;
}

/* "N training and M validation images, files XXXX": the data as the
 * checkpoint saw it, the hash over every file's name, size and time. */
static void vt__data_sig(const vt_trainer *t, char *buf, size_t len)
{
    uint64_t h[2];
    vt_hash_init(h);
    for (int v = 0; v < 2; v++) {
        const vt_dataset *ds = v ? t->val : t->train;
        const int64_t *stat = v ? t->stat_val : t->stat_train;
        for (int i = 0; ds && i < ds->n; i++) {
            vt_hash_add(h, ds->samples[i].path, strlen(ds->samples[i].path) + 1);
            vt_hash_add(h, &stat[2 * i], 2 * sizeof *stat);
        }
    }
    snprintf(buf, len, "%d training and %d validation images, files %016llx", t->train->n,
             t->val ? t->val->n : 0, (unsigned long long)h[0]);
}

/* The trainable weights and their velocities, from the device into set. */
static int vt__save_tensors(vt_trainer *t, vt_tensorset *set)
{
    char name[96];
    int rc = 0;
    for (int i = 0; i < vt_model_nparams(t->model) && rc == 0; i++) {
        vt_tensor *w = vt_model_param(t->model, i), *v = vt_model_velocity(t->model, i);
        int64_t shape[VT_MAX_DIMS];
        vt_ntensor *nt;
        for (int d = 0; d < vt_tensor_ndim(w); d++)
            shape[d] = vt_tensor_dim(w, d);
        snprintf(name, sizeof name, "param/%s", vt_model_param_name(t->model, i));
        if ((rc = vt_tensorset_add(set, name, vt_tensor_ndim(w), shape, NULL, &nt)) < 0 ||
            (rc = vt_tensor_download(w, nt->data)) < 0)
            break;
        snprintf(name, sizeof name, "velocity/%s", vt_model_param_name(t->model, i));
        if ((rc = vt_tensorset_add(set, name, vt_tensor_ndim(v), shape, NULL, &nt)) < 0)
            break;
        rc = vt_tensor_download(v, nt->data);
    }
    return rc;
}

/* Sets key to text (consumed); NULL text (out of memory) spoils the set. */
static void vt__meta_take(vt_tensorset *set, const char *key, char *text)
{
    if (text)
        vt_tensorset_set_meta(set, key, text);
    else
        set->meta_lost = 1;
    free(text);
}

/* The epoch history as a JSON array of metrics objects; NULL when out of
 * memory. */
static char *vt__history_json(const vt_trainer *t)
{
    cJSON *h = cJSON_CreateArray();
    char *text;
    for (int i = 0; h && i < t->nhistory; i++)
        cJSON_AddItemToArray(h, vt_epoch_metrics_json(&t->history[i]));
    text = h ? cJSON_PrintUnformatted(h) : NULL;
    cJSON_Delete(h);
    return text;
}

/* The step log as [[step, wall, loss, accuracy], ...]; NULL when out of
 * memory. */
static char *vt__step_log_json(const vt_trainer *t)
{
    cJSON *sl = cJSON_CreateArray();
    char *text;
    for (int i = 0; sl && i + 1 < t->nsteplog; i += 2) {
        double row[4] = {(double)t->steplog[i].step, t->steplog[i].wall, t->steplog[i].value,
                         t->steplog[i + 1].value};
        cJSON_AddItemToArray(sl, cJSON_CreateDoubleArray(row, 4));
    }
    text = sl ? cJSON_PrintUnformatted(sl) : NULL;
    cJSON_Delete(sl);
    return text;
}

/* The frozen trunk a job trains on, as recorded in its checkpoint: its
 * content hash (32 hex digits), a space, and where it came from. */
static void vt__trunk_id(const vt_trainer *t, char *buf, size_t len)
{
    const uint64_t *h = t->env.base_hash;
    snprintf(buf, len, "%016llx%016llx %s", (unsigned long long)h[0], (unsigned long long)h[1],
             t->env.base_desc ? t->env.base_desc : "random");
}

/* Everything of the trainer's state but the tensors, as the restore
 * functions above read it.  A value that cannot be recorded spoils the
 * set (its write then fails). */
static void vt__save_meta(vt_trainer *t, vt_tensorset *set)
{
    char num[64], sig[128], trunk[PATH_MAX + 80];
    char pos[160]; /* 6 numbers: 4 ints of up to 11 characters, 2 doubles of up to 24 */

    vt_tensorset_set_meta(set, "format", VT__CKPT_FORMAT);
    if (t->env.base_hash) {
        vt__trunk_id(t, trunk, sizeof trunk);
        vt_tensorset_set_meta(set, "trunk", trunk);
    }
    snprintf(num, sizeof num, "%d", t->nhistory);
    vt_tensorset_set_meta(set, "epochs_done", num);
    snprintf(num, sizeof num, "%llu", (unsigned long long)t->iteration);
    vt_tensorset_set_meta(set, "iteration", num);
    snprintf(num, sizeof num, "%.17g", t->best_val_loss);
    vt_tensorset_set_meta(set, "best_val_loss", num);
    snprintf(num, sizeof num, "%d %d %d %d", t->best_epoch, t->stale, t->stop_early,
             t->best_saved);
    vt_tensorset_set_meta(set, "early_stopping", num);
    snprintf(num, sizeof num, "%d", t->out_created); /* (with the output, in "job") */
    vt_tensorset_set_meta(set, "output_made", num);
    vt__meta_take(set, "history", vt__history_json(t));
    vt__data_sig(t, sig, sizeof sig);
    vt_tensorset_set_meta(set, "data", sig);
    /* Where in the epoch we are: "epoch" (at its start), "train" (mid
     * training pass) or "val" (training pass done). */
    if (t->in_epoch && t->phase == PH_TRAIN)
        snprintf(pos, sizeof pos, "train %d %d %d %d %.17g %.17g", t->pos, t->step, t->seen,
                 t->sums.correct, t->sums.loss, vt_clock_mono() - t->t_epoch0);
    else if (t->in_epoch)
        snprintf(pos, sizeof pos, "val 0 %d %d %d %.17g %.17g", t->step, t->seen,
                 t->sums.correct, t->sums.loss, t->t_train_s);
    else
        snprintf(pos, sizeof pos, "epoch 0 0 0 0 0 0");
    vt_tensorset_set_meta(set, "position", pos);
    vt__meta_take(set, "step_log", vt__step_log_json(t));
    vt__meta_take(set, "bad_train", vt__bad_list(t->bad_train, t->train->n));
    vt__meta_take(set, "bad_val", t->val ? vt__bad_list(t->bad_val, t->val->n) : strdup("[]"));
    vt__meta_take(set, "job", vt_jobspec_to_json(&t->spec));
}

int vt_train__queue_checkpoint(vt_trainer *t)
{
    vt_tensorset *set;
    int rc;

    if ((rc = vt_train__settle(t)) < 0)
        return rc;
    if (!(set = vt_tensorset_new()))
        return vt_error_set(VT_ENOMEM, "out of memory");
    if ((rc = vt__save_tensors(t, set)) < 0) {
        vt_tensorset_free(set);
        return vt_error_wrap(rc, "checkpoint");
    }
    vt__save_meta(t, set);
    return vt_train__write_set(t, t->env.checkpoint, set, 1);
}

void vt_train__checkpoint_written(vt_trainer *t, const vt__wresult *res)
{
    t->t_ckpt = vt_clock_mono(); /* (a failure's pace is vt__checkpoint_failed's) */
    t->ckpt_cost_s = res->ckpt_s;
}

int vt_trainer_checkpoint(vt_trainer *t)
{
    vt__wresult res;
    int rc;

    if (!t->env.checkpoint || !t->model)
        return 0;
    /* An epoch end's files first: the checkpoint records what follows them.
     * (The finish's: the job is done, with nothing to resume.) */
    if ((rc = vt_train__written(t, 1)) < 0 || t->phase == PH_DONE)
        return rc;
    if ((rc = vt_train__queue_checkpoint(t)) < 0 || (rc = vt_train__write_start(t)) < 0)
        return rc;
    vt_train__write_end(t, &res); /* (the batch holds nothing else) */
    if (res.ckpt_rc < 0)
        return vt_error_set(res.ckpt_rc, "%s", res.ckpt_msg);
    vt_train__checkpoint_written(t, &res);
    return 0;
}

/* Finds where job documents a and b differ, ignoring the fields a resumed
 * job may change (name, output, overwrite, epochs at the top) and fields only one of
 * them has (a document written by another version).  Writes the first
 * differing field's path ("optimizer.lr") to path and returns 1, or 0 when
 * they agree. */
static int vt__spec_differs(const cJSON *a, const cJSON *b, const char *prefix, char *path,
                            size_t len)
{
    static const char *const free_fields[] = {"name", "output", "overwrite", "epochs"};
    const cJSON *ka;
    if (!cJSON_IsObject(a) || !cJSON_IsObject(b)) {
        if (cJSON_Compare(a, b, 1))
            return 0;
        snprintf(path, len, "%s", prefix);
        return 1;
    }
    cJSON_ArrayForEach(ka, a) {
        const cJSON *kb = cJSON_GetObjectItemCaseSensitive(b, ka->string);
        char sub[128];
        int skip = 0;
        for (size_t i = 0; !prefix[0] && i < sizeof free_fields / sizeof free_fields[0]; i++)
            skip |= strcmp(ka->string, free_fields[i]) == 0;
        if (skip || !kb)
            continue;
        snprintf(sub, sizeof sub, "%s%s%s", prefix, prefix[0] ? "." : "", ka->string);
        if (vt__spec_differs(ka, kb, sub, path, len))
            return 1;
    }
    return 0;
}

/* Refuses a checkpoint that another job wrote (its stored job document
 * differs from t's); checkpoints without one (older versions) pass. */
static int vt__checkpoint_is_ours(vt_trainer *t, const vt_tensorset *set)
{
    const char *stored = vt_tensorset_meta(set, "job");
    char *mine, path[128] = "";
    cJSON *a, *b;
    int differs;
    if (!stored)
        return 0;
    if (!(mine = vt_jobspec_to_json(&t->spec)))
        return vt_error_set(VT_ENOMEM, "out of memory");
    a = cJSON_Parse(stored);
    b = cJSON_Parse(mine);
    free(mine);
    differs = !a || !b || vt__spec_differs(a, b, "", path, sizeof path);
    cJSON_Delete(a);
    cJSON_Delete(b);
    if (differs)
        return vt_error_set(VT_EINVAL, "checkpoint %s was written by a different job (%s%s); "
                            "remove it to start this job afresh", t->env.checkpoint,
                            path[0] ? "its job document differs in " : "unreadable job document",
                            path);
    return 0;
}

/* Whether the checkpoint's weights were trained on another frozen trunk
 * than the job has now (the daemon restarted with other weights, or the
 * weights file rewritten): its trained layers learned from that trunk's
 * features, and resumed on these they would make a model of neither.  Then
 * the checkpoint is removed and the job starts again from its first epoch,
 * saying so (1).  0: it may be resumed (the same trunk; nothing frozen, as
 * scratch; no record, an older checkpoint). */
static int vt__trunk_changed(vt_trainer *t, const vt_tensorset *set)
{
    const char *was = vt_tensorset_meta(set, "trunk"), *done = vt_tensorset_meta(set, "epochs_done");
    char now[PATH_MAX + 80];
    int n = done ? atoi(done) : 0;
    if (!was || !t->env.base_hash || t->spec.trainable_blocks >= VT_VGG_NBLOCKS)
        return 0;
    vt__trunk_id(t, now, sizeof now);
    if (strlen(was) > 33 && strncmp(was, now, 33) == 0)
        return 0;
    vt_train__say(t, VT_LOG_WARN, "the frozen trunk changed since this job's checkpoint: it "
                  "trained %d epoch%s on %s, and the trunk is now %s; those epochs are "
                  "discarded, and the job starts again from its first epoch on this trunk", n,
                  n == 1 ? "" : "s", strlen(was) > 33 ? was + 33 : "another trunk", now + 33);
    if (unlink(t->env.checkpoint) < 0 && errno != ENOENT)
        vt_train__say(t, VT_LOG_WARN, "cannot remove the checkpoint %s: %s", t->env.checkpoint,
                      strerror(errno));
    return 1;
}

void vt_train__made_before(vt_trainer *t)
{
    vt_tensorset *meta = NULL;
    const char *v = NULL;
    cJSON *job = NULL;
    if (vt_safetensors_read_meta(&meta, t->env.checkpoint) == 0 &&
        (v = vt_tensorset_meta(meta, "output_made")) && vt__checkpoint_is_ours(t, meta) == 0 &&
        (job = cJSON_Parse(vt_tensorset_meta(meta, "job"))) &&
        cJSON_IsString(cJSON_GetObjectItemCaseSensitive(job, "output")) &&
        strcmp(cJSON_GetObjectItemCaseSensitive(job, "output")->valuestring,
               t->spec.output) == 0 && atoi(v) > t->out_created)
        t->out_created = atoi(v);
    cJSON_Delete(job);
    vt_tensorset_free(meta);
}

/* The trainable weights and their velocities from set into the model. */
static int vt__restore_tensors(vt_trainer *t, const vt_tensorset *set)
{
    char name[96];
    int rc;
    for (int i = 0; i < vt_model_nparams(t->model); i++) {
        for (int k = 0; k < 2; k++) {
            vt_tensor *dst = k ? vt_model_velocity(t->model, i) : vt_model_param(t->model, i);
            snprintf(name, sizeof name, "%s/%s", k ? "velocity" : "param",
                     vt_model_param_name(t->model, i));
            const vt_ntensor *nt = vt_tensorset_find(set, name);
            if (!nt || vt_ntensor_numel(nt) != vt_tensor_numel(dst))
                return vt_error_set(VT_EFORMAT, "checkpoint %s does not match the job (tensor "
                                    "%s)", t->env.checkpoint, name);
            if ((rc = vt_tensor_upload(dst, nt->data)) < 0)
                return rc;
        }
    }
    return 0;
}

/* The optimizer's iteration, early-stopping state and unreadable-image
 * lists; warns when the data changed since. */
static int vt__restore_state(vt_trainer *t, const vt_tensorset *set)
{
    const char *v = vt_tensorset_meta(set, "iteration");
    int rc;
    t->iteration = v ? strtoull(v, NULL, 10) : 0;
    v = vt_tensorset_meta(set, "best_val_loss");
    t->best_val_loss = v ? strtod(v, NULL) : INFINITY;
    v = vt_tensorset_meta(set, "early_stopping");
    if (!v || sscanf(v, "%d %d %d %d", &t->best_epoch, &t->stale, &t->stop_early,
                     &t->best_saved) != 4)
        return vt_error_set(VT_EFORMAT, "checkpoint lacks its early-stopping state");
    if ((v = vt_tensorset_meta(set, "data"))) {
        char now[128];
        vt__data_sig(t, now, sizeof now);
        if (strcmp(v, now) != 0)
            vt_train__say(t, VT_LOG_WARN, "the data changed since the checkpoint (%s then; %s "
                          "now): the job goes on from it, but not as it would have run "
                          "without the interruption", v, now);
    }
    if ((rc = vt__bad_parse(vt_tensorset_meta(set, "bad_train"), t->bad_train,
                            t->train->n)) < 0)
        return rc;
    if (t->val && (rc = vt__bad_parse(vt_tensorset_meta(set, "bad_val"), t->bad_val,
                                      t->val->n)) < 0)
        return rc;
    return 0;
}

/* The finished epochs' metrics (t->history, t->epoch); refuses more
 * epochs than the job has. */
static int vt__restore_history(vt_trainer *t, const vt_tensorset *set)
{
    const char *text = vt_tensorset_meta(set, "history");
    cJSON *h = cJSON_Parse(text ? text : ""), *it;
    int rc = 0;
    if (!cJSON_IsArray(h)) {
        cJSON_Delete(h);
        return vt_error_set(VT_EFORMAT, "checkpoint history is malformed");
    }
    free(t->history);
    t->nhistory = 0;
    if (!(t->history = calloc((size_t)cJSON_GetArraySize(h) + 1, sizeof *t->history)))
        rc = vt_error_set(VT_ENOMEM, "out of memory");
    cJSON_ArrayForEach(it, h) {
        if (rc < 0 || (rc = vt_train__metrics_parse(it, &t->history[t->nhistory])) < 0)
            break;
        t->nhistory++;
    }
    cJSON_Delete(h);
    if (rc < 0)
        return rc;
    t->epoch = t->nhistory;
    if (t->epoch > t->spec.epochs)
        return vt_error_set(VT_EINVAL, "checkpoint %s holds %d epochs, more than this job's "
                            "%d; give epochs >= %d to go on from it", t->env.checkpoint,
                            t->epoch, t->spec.epochs, t->epoch);
    return 0;
}

/* Where in the epoch the checkpoint was taken: at its start, mid training
 * pass (resume_mid_epoch) or with the training pass done (resume_val). */
static int vt__restore_position(vt_trainer *t, const vt_tensorset *set)
{
    const char *v = vt_tensorset_meta(set, "position");
    char where[16];
    double elapsed;
    if (!v || sscanf(v, "%15s %d %d %d %d %lf %lf", where, &t->pos, &t->step, &t->seen,
                     &t->sums.correct, &t->sums.loss, &elapsed) != 7)
        return vt_error_set(VT_EFORMAT, "checkpoint lacks its position in the epoch");
    if (strcmp(where, "train") == 0) {
        t->resume_mid_epoch = 1;
        t->t_epoch0 = vt_clock_mono() - elapsed;
    } else if (strcmp(where, "val") == 0) {
        t->t_train_s = elapsed;
        t->t_epoch0 = vt_clock_mono() - elapsed;
        t->resume_val = 1;
    }
    return 0;
}

/* The per-step loss and accuracy logged so far (for TensorBoard). */
static int vt__restore_step_log(vt_trainer *t, const vt_tensorset *set)
{
    const char *text = vt_tensorset_meta(set, "step_log");
    cJSON *sl = cJSON_Parse(text ? text : "[]"), *row;
    int n = cJSON_GetArraySize(sl);
    free(t->steplog);
    t->nsteplog = 0;
    if (!(t->steplog = calloc((size_t)(2 * n + 2), sizeof *t->steplog))) {
        cJSON_Delete(sl);
        return vt_error_set(VT_ENOMEM, "out of memory");
    }
    cJSON_ArrayForEach(row, sl) {
        if (cJSON_GetArraySize(row) != 4)
            continue;
        double x[4];
        for (int k = 0; k < 4; k++)
            x[k] = cJSON_GetArrayItem(row, k)->valuedouble;
        /* (a step out of int64_t's range, NaN included, would be undefined
         * behaviour to convert: such a row is skipped like a short one) */
        if (!(x[0] >= 0 && x[0] < 9223372036854775808.0))
            continue;
        t->steplog[t->nsteplog++] = (vt_scalar){"step/loss", (int64_t)x[0], x[1], (float)x[2]};
        t->steplog[t->nsteplog++] = (vt_scalar){"step/accuracy", (int64_t)x[0], x[1],
                                                (float)x[3]};
    }
    cJSON_Delete(sl);
    return 0;
}

int vt_train__load_checkpoint(vt_trainer *t)
{
    vt_tensorset *set = NULL;
    const char *fmt;
    int rc;

    if (!vt_train__resuming(t))
        return 0;
    if (!t->ckpt_file.read) /* (the reader read it when it was there) */
        return vt_error_set(VT_ESTATE, "checkpoint %s appeared while the job was prepared",
                            t->env.checkpoint);
    if ((rc = vt_train__preread_take(&t->ckpt_file, &set)) < 0)
        return rc;
    if (!(fmt = vt_tensorset_meta(set, "format")) || strcmp(fmt, VT__CKPT_FORMAT) != 0)
        rc = vt_error_set(VT_EFORMAT, "%s is not a vggtune checkpoint", t->env.checkpoint);
    if (rc == 0 && (rc = vt__checkpoint_is_ours(t, set)) == 0 && !vt__trunk_changed(t, set) &&
        (rc = vt__restore_tensors(t, set)) == 0 && (rc = vt__restore_state(t, set)) == 0 &&
        (rc = vt__restore_history(t, set)) == 0 && (rc = vt__restore_position(t, set)) == 0 &&
        (rc = vt__restore_step_log(t, set)) == 0)
        vt_train__say(t, VT_LOG_INFO, "resumed from checkpoint: %d epoch%s done%s", t->epoch,
                      t->epoch == 1 ? "" : "s",
                      t->resume_mid_epoch ? ", continuing the next one where it stopped" : "");
    vt_tensorset_free(set);
    return rc;
}

/* train_output.c - the files a training job writes into its output
 * directory: metrics.jsonl and metrics.csv, the TensorBoard events file,
 * model.safetensors, classmap.json and (bottleneck jobs)
 * bottleneck_features.safetensors.  Each is written durably (temporary
 * file, fsync, rename) as the job's owner; README.md, "Outputs", describes
 * their contents.
 */
#include "train_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/error.h"
#include "../common/fileio.h"
#include "../common/utf8.h"
#include "safetensors.h"
#include "weights.h"
#include "writer.h"

#define VT__MODEL_FORMAT "vggtune-model-1"
#define VT__FEATURES_FORMAT "vggtune-bottleneck-features-1"

/* The files a job writes in its output directory (the longest name sizes
 * VT_OUTPUT_SUFFIX_MAX: see VT__RESTORING). */
static const char *const vt__outputs[] = {"model.safetensors", "classmap.json", "metrics.jsonl",
                                          "metrics.csv", "events.out.tfevents.vggtune",
                                          "bottleneck_features.safetensors"};
#define VT__METRICS_CSV_HEADER "epoch,loss,accuracy,val_loss,val_accuracy,images_per_s,"

cJSON *vt_epoch_metrics_json(const vt_epoch_metrics *m)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "epoch", m->epoch);
    cJSON_AddNumberToObject(o, "loss", m->loss);
    cJSON_AddNumberToObject(o, "accuracy", m->accuracy);
    if (m->has_val) {
        cJSON_AddNumberToObject(o, "val_loss", m->val_loss);
        cJSON_AddNumberToObject(o, "val_accuracy", m->val_accuracy);
    } else {
        cJSON_AddNullToObject(o, "val_loss");
        cJSON_AddNullToObject(o, "val_accuracy");
    }
    cJSON_AddNumberToObject(o, "images_per_s", m->images_per_s);
    cJSON_AddNumberToObject(o, "seconds", m->seconds);
    cJSON_AddNumberToObject(o, "lr", m->lr);
    cJSON_AddBoolToObject(o, "cached", m->cached != 0);
    if (m->cached)
        cJSON_AddStringToObject(o, "cache",
                                m->cached == VT_CACHED_IMAGES ? "images" : "features");
    cJSON_AddNumberToObject(o, "time", m->time);
    if (m->kept_epoch > 0)
        cJSON_AddNumberToObject(o, "kept_epoch", m->kept_epoch);
    return o;
}

/* Whether d is an epoch number (from 1): (int) takes it as it is, where a
 * value outside int's range would be undefined behaviour. */
static int vt__epoch_number(double d) { return d >= 1 && d <= INT_MAX && d == floor(d); }

int vt_train__metrics_parse(const cJSON *o, vt_epoch_metrics *m)
{
    const cJSON *f;
#define VT__GET(key, dst)                                                         \
    if (!(f = cJSON_GetObjectItemCaseSensitive(o, key)) || !cJSON_IsNumber(f))    \
        return vt_error_set(VT_EFORMAT, "checkpoint history lacks %s", key);      \
    dst = f->valuedouble;
    double ep;
    VT__GET("epoch", ep);
    if (!vt__epoch_number(ep))
        return vt_error_set(VT_EFORMAT, "checkpoint history: epoch %g is not an epoch number",
                            ep);
    m->epoch = (int)ep;
    VT__GET("loss", m->loss);
    VT__GET("accuracy", m->accuracy);
    VT__GET("images_per_s", m->images_per_s);
    VT__GET("seconds", m->seconds);
    VT__GET("lr", m->lr);
#undef VT__GET
    f = cJSON_GetObjectItemCaseSensitive(o, "val_loss");
    m->has_val = cJSON_IsNumber(f);
    m->val_loss = m->has_val ? f->valuedouble : 0;
    f = cJSON_GetObjectItemCaseSensitive(o, "val_accuracy");
    m->val_accuracy = cJSON_IsNumber(f) ? f->valuedouble : 0;
    f = cJSON_GetObjectItemCaseSensitive(o, "cache");
    m->cached = !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "cached")) ? 0
                : cJSON_IsString(f) && strcmp(f->valuestring, "images") == 0
                    ? VT_CACHED_IMAGES
                    : VT_CACHED_FEATURES;
    f = cJSON_GetObjectItemCaseSensitive(o, "time");
    m->time = cJSON_IsNumber(f) ? f->valuedouble : 0;
    f = cJSON_GetObjectItemCaseSensitive(o, "kept_epoch");
    if (cJSON_IsNumber(f) && !vt__epoch_number(f->valuedouble))
        return vt_error_set(VT_EFORMAT, "checkpoint history: kept_epoch %g is not an epoch "
                            "number", f->valuedouble);
    m->kept_epoch = cJSON_IsNumber(f) ? (int)f->valuedouble : 0;
    return 0;
}

/* Appends text to a growing buffer; returns 0 or VT_ENOMEM. */
static int vt__cat(char **buf, size_t *len, const char *text)
{
    size_t n = strlen(text);
    char *b = realloc(*buf, *len + n + 1);
    if (!b)
        return vt_error_set(VT_ENOMEM, "out of memory");
    memcpy(b + *len, text, n + 1);
    *buf = b;
    *len += n;
    return 0;
}

/* Rewrites OUT/metrics.jsonl and OUT/metrics.csv (one line per finished
 * epoch) and the TensorBoard event file (queued). */
int vt_train__write_metrics(vt_trainer *t)
{
    char *jsonl = NULL, *csv = NULL, row[512];
    size_t jl = 0, cl = 0, ns = 0;
    vt_scalar *sc = NULL;
    int rc = vt__cat(&csv, &cl, VT__METRICS_CSV_HEADER "seconds,lr,cached\n");
    for (int i = 0; i < t->nhistory && rc == 0; i++) {
        const vt_epoch_metrics *m = &t->history[i];
        cJSON *o = vt_epoch_metrics_json(m);
        char *line = o ? cJSON_PrintUnformatted(o) : NULL;
        rc = line ? vt__cat(&jsonl, &jl, line) : vt_error_set(VT_ENOMEM, "out of memory");
        if (rc == 0)
            rc = vt__cat(&jsonl, &jl, "\n");
        free(line);
        cJSON_Delete(o);
        if (m->has_val)
            snprintf(row, sizeof row, "%d,%.9g,%.9g,%.9g,%.9g,%.6g,%.6g,%.9g,%d\n", m->epoch,
                     m->loss, m->accuracy, m->val_loss, m->val_accuracy, m->images_per_s,
                     m->seconds, m->lr, m->cached != 0);
        else
            snprintf(row, sizeof row, "%d,%.9g,%.9g,,,%.6g,%.6g,%.9g,%d\n", m->epoch, m->loss,
                     m->accuracy, m->images_per_s, m->seconds, m->lr, m->cached != 0);
        if (rc == 0)
            rc = vt__cat(&csv, &cl, row);
    }
    if (rc == 0 && !(sc = malloc(sizeof *sc * (size_t)(6 * t->nhistory + t->nsteplog + 1))))
        rc = vt_error_set(VT_ENOMEM, "out of memory");
    for (int i = 0; i < t->nhistory && rc == 0; i++) {
        const vt_epoch_metrics *m = &t->history[i];
        const struct { const char *tag; double v; int val; } vals[] = {
            {"epoch/loss", m->loss, 0}, {"epoch/accuracy", m->accuracy, 0},
            {"epoch/val_loss", m->val_loss, 1}, {"epoch/val_accuracy", m->val_accuracy, 1},
            {"epoch/lr", m->lr, 0}, {"epoch/images_per_s", m->images_per_s, 0}};
        for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++) {
            if (vals[k].val && !m->has_val)
                continue;
            sc[ns] = (vt_scalar){"", m->epoch, m->time, (float)vals[k].v};
            snprintf(sc[ns].tag, sizeof sc[ns].tag, "%s", vals[k].tag);
            ns++;
        }
    }
    if (rc == 0 && t->nsteplog > 0) {
        memcpy(sc + ns, t->steplog, sizeof *sc * (size_t)t->nsteplog);
        ns += (size_t)t->nsteplog;
    }
    if (rc == 0 && !jsonl && !(jsonl = strdup("")))
        rc = vt_error_set(VT_ENOMEM, "out of memory");
    if (rc < 0) {
        free(jsonl);
        free(csv);
        free(sc);
        return rc;
    }
    /* (each takes its buffer, on failure too) */
    if ((rc = vt_train__write_bytes(t, "metrics.jsonl", jsonl, jl)) < 0) {
        free(csv);
        free(sc);
        return rc;
    }
    if ((rc = vt_train__write_bytes(t, "metrics.csv", csv, cl)) < 0) {
        free(sc);
        return rc;
    }
    return vt_train__write_events(t, "events.out.tfevents.vggtune", sc, ns, t->start_wall);
}

/* Bottleneck jobs: the frozen features of every readable image, once all are
 * cached, as OUT/bottleneck_features.safetensors: "train" and "val"
 * (N, 512, s, s) float32 in PyTorch's NCHW layout (the output of
 * torchvision's vgg16().features), "train_labels"/"val_labels" (N) as
 * floats, and metadata: classes, the image files in row order, image size,
 * preprocessing. */
int vt_train__save_features(vt_trainer *t)
{
    vt_tensorset *set = vt_tensorset_new();
    int side, ch, rc = 0;
    char *classes = NULL;
    if (!set)
        return vt_error_set(VT_ENOMEM, "out of memory");
    /* the format first: the header then starts with it (vt__ours reads that) */
    vt_tensorset_set_meta(set, "format", VT__FEATURES_FORMAT);
    vt_model_cut(t->model, &side, &ch);
    for (int v = 0; v < 2 && rc == 0; v++) {
        const vt_dataset *ds = v ? t->val : t->train;
        vt_tensor *cache = v ? t->cache_val : t->cache_train;
        const uint8_t *bad = v ? t->bad_val : t->bad_train;
        size_t per = (size_t)side * side * ch;
        float *all, *lab;
        int n = 0;
        vt_ntensor *ft, *lt;
        cJSON *files;
        if (!ds || !cache)
            continue;
        for (int i = 0; i < ds->n; i++)
            n += !bad[i];
        int64_t fshape[4] = {n, ch, side, side}, lshape[1] = {n};
        if (!(all = malloc(sizeof *all * vt_tensor_numel(cache)))) {
            rc = vt_error_set(VT_ENOMEM, "out of memory");
            break;
        }
        if ((rc = vt_tensor_download(cache, all)) == 0 &&
            (rc = vt_tensorset_add(set, v ? "val" : "train", 4, fshape, NULL, &ft)) == 0 &&
            (rc = vt_tensorset_add(set, v ? "val_labels" : "train_labels", 1, lshape, NULL,
                                   &lt)) == 0) {
            files = cJSON_CreateArray();
            lab = lt->data;
            for (int i = 0, r = 0; i < ds->n; i++) {
                if (bad[i])
                    continue;
                const float *src = all + per * (size_t)i; /* (s, s, C) */
                float *dst = ft->data + per * (size_t)r;  /* (C, s, s) */
                for (int c = 0; c < ch; c++)
                    for (int hw = 0; hw < side * side; hw++)
                        dst[(size_t)c * side * side + hw] = src[(size_t)hw * ch + c];
                lab[r++] = (float)ds->samples[i].label;
                cJSON_AddItemToArray(files, cJSON_CreateString(ds->samples[i].path));
            }
            /* (metadata is UTF-8 only: a file name's other bytes become '?') */
            char *text = cJSON_PrintUnformatted(files);
            if (text)
                vt_utf8_scrub(text);
            rc = vt_tensorset_set_meta(set, v ? "val_files" : "train_files", text ? text : "[]");
            free(text);
            cJSON_Delete(files);
        }
        free(all);
    }
    if (rc == 0 && (classes = vt_train__classes_json(t->train))) {
        char num[32];
        vt_tensorset_set_meta(set, "classes", classes);
        snprintf(num, sizeof num, "%d", t->spec.image_size);
        vt_tensorset_set_meta(set, "image_size", num);
        vt_tensorset_set_meta(set, "preprocess", vt_preprocess_name(t->prep));
        vt_tensorset_set_meta(set, "layout", "NCHW float32: VGG16 block5_pool output");
        vt_tensorset_set_meta(set, "weights", t->env.base_desc ? t->env.base_desc : "random");
    } else if (rc == 0) {
        rc = vt_error_set(VT_ENOMEM, "out of memory");
    }
    free(classes);
    if (rc < 0) {
        vt_tensorset_free(set);
        return rc;
    }
    return vt_train__write_set(t, "bottleneck_features.safetensors", set, 0);
}

char *vt_train__classes_json(const vt_dataset *ds)
{
    cJSON *a = cJSON_CreateArray();
    char *s;
    for (int c = 0; a && c < ds->nclasses; c++)
        cJSON_AddItemToArray(a, cJSON_CreateString(ds->classes[c]));
    s = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return s;
}

/* Where the model's convolutions started, for its metadata: the trunk's
 * description, except that scratch training on the random trunk draws every
 * layer from the job's own seed. */
static const char *vt__weights_desc(const vt_trainer *t, char *buf, size_t len)
{
    if (t->spec.trainable_blocks == 5 && t->env.base_random) {
        snprintf(buf, len, "random (He, seed %llu)", (unsigned long long)t->spec.seed);
        return buf;
    }
    return t->env.base_desc ? t->env.base_desc : "random";
}

/* Writes OUT/model.safetensors from the model's current weights. */
int vt_train__save_model(vt_trainer *t, int epochs_done)
{
    vt_tensorset *set = NULL;
    char num[64], head[256] = "", wdesc[64];
    char *classes = NULL, *spec = NULL;
    int rc;

    if ((rc = vt_model_download(t->model, t->p)) < 0 || (rc = vt_weights_to_set(t->p, &set)) < 0)
        return rc;
    classes = vt_train__classes_json(t->train);
    spec = vt_jobspec_to_json(&t->spec);
    snprintf(head, sizeof head, "{\"dense\":[");
    for (int i = 0; i < t->spec.nhidden; i++)
        snprintf(head + strlen(head), sizeof head - strlen(head), "%s%d", i ? "," : "",
                 t->spec.hidden[i]);
    snprintf(head + strlen(head), sizeof head - strlen(head),
             "],\"classes\":%d,\"activation\":\"relu\",\"dropout\":%g}", t->train->nclasses,
             t->spec.dropout);
    if (!classes || !spec) {
        rc = vt_error_set(VT_ENOMEM, "out of memory");
        goto done;
    }
    vt_tensorset_set_meta(set, "format", VT__MODEL_FORMAT);
    vt_tensorset_set_meta(set, "classes", classes);
    snprintf(num, sizeof num, "%d", t->spec.image_size);
    vt_tensorset_set_meta(set, "image_size", num);
    vt_tensorset_set_meta(set, "preprocess", vt_preprocess_name(t->prep));
    vt_tensorset_set_meta(set, "input_layout", "NCHW RGB; features.* as torchvision vgg16");
    snprintf(num, sizeof num, "%d", t->spec.trainable_blocks);
    vt_tensorset_set_meta(set, "trainable_blocks", num);
    vt_tensorset_set_meta(set, "head", head);
    vt_tensorset_set_meta(set, "job", spec);
    {
        char id[32];
        snprintf(id, sizeof id, "%lld", (long long)t->env.job_id);
        vt_tensorset_set_meta(set, "job_id", id);
        if (t->env.job_store && *t->env.job_store)
            vt_tensorset_set_meta(set, "job_store", t->env.job_store);
    }
    vt_tensorset_set_meta(set, "weights", vt__weights_desc(t, wdesc, sizeof wdesc));
    snprintf(num, sizeof num, "%d", epochs_done);
    rc = vt_tensorset_set_meta(set, "epochs", num);
done:
    free(classes);
    free(spec);
    if (rc < 0) {
        vt_tensorset_free(set);
        return rc;
    }
    return vt_train__write_set(t, "model.safetensors", set, 0);
}

int vt_train__write_classmap(vt_trainer *t)
{
    cJSON *o = cJSON_CreateObject(), *idx;
    char *doc, *text = NULL;
    size_t len = 0;
    int rc;
    if (!o)
        return vt_error_set(VT_ENOMEM, "out of memory");
    cJSON *arr = cJSON_AddArrayToObject(o, "classes");
    idx = cJSON_AddObjectToObject(o, "class_indices");
    for (int c = 0; arr && idx && c < t->train->nclasses; c++) {
        cJSON_AddItemToArray(arr, cJSON_CreateString(t->train->classes[c]));
        cJSON_AddNumberToObject(idx, t->train->classes[c], c);
    }
    /* written last, once the job is done: with the model's job_id, it marks
     * a finished job's model (vt__check_model_owner) */
    cJSON_AddNumberToObject(o, "job_id", (double)t->env.job_id);
    if (t->env.job_store && *t->env.job_store)
        cJSON_AddStringToObject(o, "job_store", t->env.job_store);
    doc = cJSON_Print(o);
    cJSON_Delete(o);
    /* a text file ends with its newline, like the metrics files */
    rc = doc ? vt__cat(&text, &len, doc) : vt_error_set(VT_ENOMEM, "out of memory");
    if (rc == 0)
        rc = vt__cat(&text, &len, "\n");
    free(doc);
    if (rc < 0) {
        free(text);
        return rc;
    }
    return vt_train__write_bytes(t, "classmap.json", text, len);
}


/* Whether the JSON file at path is a class map as vt_train__write_classmap
 * writes it. */
static int vt__classmap_ours(const char *path)
{
    uint8_t *text = NULL;
    size_t len = 0;
    cJSON *o;
    int yes;
    if (vt_read_file(path, VT_CLASSMAP_MAX, &text, &len) < 0)
        return 0;
    o = cJSON_ParseWithLength((const char *)text, len);
    yes = cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(o, "classes")) &&
          cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(o, "class_indices"));
    cJSON_Delete(o);
    free(text);
    return yes;
}

/* Whether the file at path (one of vt__outputs, present) looks written by
 * vggtune: safetensors files by their format (vggtune writes __metadata__
 * first and format as its first field, so the header's first bytes say,
 * whatever its size; files written with the format later are read for
 * it), the others by their first line, the events file by its name: 1 or
 * 0, VT_EPERM when it cannot be read.
 * Run as the job's owner. */
static int vt__ours(const char *path, const char *name)
{
    static const char st_head[] = "{\"__metadata__\":{\"format\":\"vggtune-";
    char head[64] = "";
    size_t got = 0;
    int rc;
    if (!strcmp(name, "events.out.tfevents.vggtune"))
        return 1;
    if ((rc = vt_read_head(path, head, sizeof head - 1, &got)) < 0)
        return rc == VT_EPERM ? rc : 0;
    head[got] = '\0';
    if (got == 0) /* an empty file: nothing to lose */
        return 1;
    if (strstr(name, ".safetensors")) { /* 8 bytes of header length, then the header */
        vt_tensorset *meta = NULL;
        const char *fmt;
        int yes;
        if (got > 8 && !strncmp(head + 8, st_head, sizeof st_head - 1))
            return 1;
        /* written with the format later (features files before 2026-12-05) */
        if (vt_safetensors_read_meta(&meta, path) < 0)
            return 0;
        fmt = vt_tensorset_meta(meta, "format");
        yes = fmt && (!strcmp(fmt, VT__MODEL_FORMAT) || !strcmp(fmt, VT__FEATURES_FORMAT));
        vt_tensorset_free(meta);
        return yes;
    }
    if (!strcmp(name, "metrics.csv"))
        return !strncmp(head, VT__METRICS_CSV_HEADER, strlen(VT__METRICS_CSV_HEADER));
    if (!strcmp(name, "metrics.jsonl"))
        return !strncmp(head, "{\"epoch\":", 9);
    return !strncmp(head, "{", 1) && vt__classmap_ours(path);
}

int vt_train__foreign_output(vt_trainer *t, char *name, size_t len)
{
    char path[PATH_MAX];
    struct stat st;
    int rc = vt_train__enter(t);
    if (rc < 0)
        return rc;
    for (size_t i = 0; rc == 0 && i < sizeof vt__outputs / sizeof vt__outputs[0]; i++) {
        if ((rc = vt_path(path, sizeof path, "%s/%s", t->spec.output, vt__outputs[i])) < 0)
            break;
        if (lstat(path, &st) < 0)
            continue; /* not there (or not ours to see: removing it would fail too) */
        int ours = S_ISREG(st.st_mode) ? vt__ours(path, vt__outputs[i]) : 0;
        if (ours == VT_EPERM) {
            rc = vt_error_set(VT_EPERM, "output %s holds a %s that the job's owner cannot "
                              "read, so cannot tell whose it is; give the job another output "
                              "directory, or set overwrite (--overwrite)", t->spec.output,
                              vt__outputs[i]);
            break;
        }
        if (!ours) {
            snprintf(name, len, "%s", vt__outputs[i]);
            rc = 1;
        }
    }
    vt_train__leave(t);
    return rc;
}

/* Folders of OUT that hold a replaced finished model only while it moves
 * aside (VT__MOVING) or back (VT__RESTORING).  The move renames file by
 * file, so it runs inside a folder of its own that is renamed whole: at
 * the end when moving aside, at the start when putting back.  A run
 * stopped by kill -9 in between leaves that folder, and the next run
 * empties it back into OUT (vt_train__sweep_outputs): the set is never
 * split between OUT and VT_OUTPUT_ASIDE, where a later run would take the
 * part in OUT for an unfinished job's and remove it. */
#define VT__MOVING ".vggtune-replacing"
#define VT__RESTORING ".vggtune-restoring"
/* (the job spec refuses an output directory these would not fit below) */
_Static_assert(sizeof "/" VT__MOVING "/bottleneck_features.safetensors" - 1 <=
                   VT_OUTPUT_SUFFIX_MAX &&
               sizeof "/" VT__RESTORING "/bottleneck_features.safetensors" - 1 <=
                   VT_OUTPUT_SUFFIX_MAX,
               "the longest output file name below a folder of the output directory "
               "must fit VT_OUTPUT_SUFFIX_MAX");

static int vt__move_outputs(const char *from, const char *to, char *moved, size_t len);
static int vt__move_folder(const vt_trainer *t, const char *name, char *moved, size_t len);

/* Appends name to the list in buf[len] (", " between names). */
static void vt__list_add(char *buf, size_t len, const char *name)
{
    size_t n = strlen(buf);
    snprintf(buf + n, len - n, "%s%s", n ? ", " : "", name);
}

void vt_train__sweep_outputs(vt_trainer *t)
{
    char removed[512] = "", one[256], back[512] = "";
    int n = 0, k, rc = 0;
    if (vt_train__enter(t) < 0)
        return;
    for (int i = 0; i < 2 && rc == 0; i++)
        rc = vt__move_folder(t, i ? VT__RESTORING : VT__MOVING, back, sizeof back);
    /* (this process writes no output of this job now, and no other job's
     * here: the output directory is the job's own) */
    for (size_t i = 0; i < sizeof vt__outputs / sizeof vt__outputs[0]; i++)
        if ((k = vt_atomic_sweep(t->spec.output, vt__outputs[i], 0, one, sizeof one)) > 0) {
            vt__list_add(removed, sizeof removed, one);
            n += k;
        }
    vt_train__leave(t);
    if (rc < 0)
        vt_train__say(t, VT_LOG_WARN, "a replaced model that a stopped run was moving stays "
                      "part in %s: %s", t->spec.output, vt_error_msg());
    if (back[0])
        vt_train__say(t, VT_LOG_INFO, "put back in %s the outputs (%s) a run stopped while "
                      "moving them had left in a folder of its own", t->spec.output, back);
    if (n > 0)
        vt_train__say(t, VT_LOG_INFO, "removed %d unfinished temporary file%s from %s, left by "
                      "a run stopped while writing %s (of %s)", n, n == 1 ? "" : "s",
                      t->spec.output, n == 1 ? "it" : "them", removed);
}

/* Moves (rename, or unlink with to NULL) every file of vt__outputs from
 * the directory from into the directory to, naming those moved in
 * moved[len]; a file that is not there is skipped.  0, or VT_EIO naming
 * the file it stopped at.  Runs as the job's owner. */
static int vt__move_outputs(const char *from, const char *to, char *moved, size_t len)
{
    char src[PATH_MAX], dst[PATH_MAX];
    int rc;
    for (size_t i = 0; i < sizeof vt__outputs / sizeof vt__outputs[0]; i++) {
        if ((rc = vt_path(src, sizeof src, "%s/%s", from, vt__outputs[i])) < 0 ||
            (to && (rc = vt_path(dst, sizeof dst, "%s/%s", to, vt__outputs[i])) < 0))
            return rc;
        if ((to ? rename(src, dst) : unlink(src)) == 0)
            vt__list_add(moved, len, vt__outputs[i]);
        else if (errno != ENOENT)
            return vt_error_set(VT_EIO, "cannot %s %s%s%s: %s", to ? "move" : "remove", src,
                                to ? " to " : "", to ? to : "", strerror(errno));
    }
    return 0;
}

/* The folder of OUT where a replaced finished model waits, in path[len]:
 * 1 when it is there (a directory), 0 when not, or an error (VT_EBUSY for
 * something else by its name).  Runs as the job's owner. */
static int vt__aside_dir(const char *output, char *path, size_t len)
{
    struct stat st;
    int rc = vt_path(path, len, "%s/" VT_OUTPUT_ASIDE, output);
    if (rc < 0)
        return rc;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0
                               : vt_error_set(VT_EIO, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return vt_error_set(VT_EBUSY, "output %s holds a " VT_OUTPUT_ASIDE " that is not a folder "
                            "of vggtune's; move it away", output);
    return 1;
}

/* rmdir, as an error that says why. */
static int vt__remove_dir(const char *path)
{
    if (rmdir(path) == 0)
        return 0;
    return vt_error_set(VT_EIO, "cannot remove %s%s: %s", path,
                        errno == ENOTEMPTY ? " (it holds files that are not vggtune's: move "
                                             "them away)" : "", strerror(errno));
}

/* Empties OUT/name, when it is there, into OUT and removes it, naming
 * the files in moved[len]; 0 or an error.  Runs as the job's owner. */
static int vt__move_folder(const vt_trainer *t, const char *name, char *moved, size_t len)
{
    char path[PATH_MAX];
    struct stat st;
    int rc = vt_path(path, sizeof path, "%s/%s", t->spec.output, name);
    if (rc < 0 || lstat(path, &st) < 0 || !S_ISDIR(st.st_mode))
        return rc;
    if ((rc = vt__move_outputs(path, t->spec.output, moved, len)) == 0)
        rc = vt__remove_dir(path);
    return rc;
}

int vt_train__remove_outputs(vt_trainer *t)
{
    char aside[PATH_MAX], moving[PATH_MAX], moved[512] = "", dropped[512] = "";
    vt_writer w;
    int rc = vt_train__enter(t), finished, have;
    if (rc < 0)
        return rc;
    if ((finished = vt_output_finished_model(t->spec.output, &w)) < 0 ||
        (have = vt__aside_dir(t->spec.output, aside, sizeof aside)) < 0) {
        vt_train__leave(t);
        return finished < 0 ? finished : have;
    }
    if (!finished) /* an unfinished job's outputs: nothing to keep */
        rc = vt__move_outputs(t->spec.output, NULL, dropped, sizeof dropped);
    else if ((rc = vt_path(moving, sizeof moving, "%s/" VT__MOVING, t->spec.output)) == 0 &&
             (!have || (rc = vt__move_outputs(aside, NULL, dropped, sizeof dropped)) == 0) &&
             (!have || (rc = vt__remove_dir(aside)) == 0) &&
             (rc = vt_mkdir_p(moving, NULL)) == 0) {
        /* All or nothing: a move that fails part way puts back what it had
         * moved, and the folder becomes VT_OUTPUT_ASIDE only once whole. */
        if ((rc = vt__move_outputs(t->spec.output, moving, moved, sizeof moved)) == 0 &&
            rename(moving, aside) < 0)
            rc = vt_error_set(VT_EIO, "cannot rename %s to %s: %s", moving, aside,
                              strerror(errno));
        if (rc < 0) {
            char back[512] = "";
            if (vt__move_outputs(moving, t->spec.output, back, sizeof back) == 0)
                moved[0] = '\0';
            rmdir(moving);
        }
    }
    vt_train__leave(t);
    if (dropped[0])
        vt_train__say(t, VT_LOG_INFO, "removed %s outputs from %s: %s",
                      finished ? "an older replaced job's" : "an unfinished earlier job's",
                      finished ? aside : t->spec.output, dropped);
    if (moved[0])
        vt_train__say(t, VT_LOG_INFO, "moved the finished earlier job's outputs (%s) to %s; "
                      "they are removed when this job succeeds, and put back if it fails or "
                      "is cancelled", moved, aside);
    return rc;
}

int vt_train__replaced_copy(const char *output, const char *path, char *copy, size_t len)
{
    struct stat dir, out, st;
    char parent[PATH_MAX];
    const char *slash = strrchr(path, '/'), *name = slash ? slash + 1 : path;
    size_t i, n = slash ? (size_t)(slash - path) : 0;
    for (i = 0; i < sizeof vt__outputs / sizeof vt__outputs[0]; i++)
        if (strcmp(name, vt__outputs[i]) == 0)
            break;
    if (i == sizeof vt__outputs / sizeof vt__outputs[0] || n >= sizeof parent)
        return 0;
    if (!slash || slash == path)
        snprintf(parent, sizeof parent, "%s", slash ? "/" : ".");
    else
        snprintf(parent, sizeof parent, "%.*s", (int)n, path);
    return stat(parent, &dir) == 0 && stat(output, &out) == 0 &&
           dir.st_dev == out.st_dev && dir.st_ino == out.st_ino &&
           vt__aside_dir(output, copy, len) == 1 &&
           vt_path(copy + strlen(copy), len - strlen(copy), "/%s", name) == 0 &&
           stat(copy, &st) == 0;
}

void vt_train__end_replaced(vt_trainer *t, int succeeded)
{
    char aside[PATH_MAX], restoring[PATH_MAX], mine[512] = "", theirs[512] = "";
    int rc;
    if (vt_train__enter(t) < 0)
        return;
    if ((rc = vt__aside_dir(t->spec.output, aside, sizeof aside)) <= 0) { /* none (or not ours) */
        vt_train__leave(t);
        return;
    }
    if (succeeded) {
        if ((rc = vt__move_outputs(aside, NULL, theirs, sizeof theirs)) == 0)
            rc = vt__remove_dir(aside);
    } else if ((rc = vt__move_outputs(t->spec.output, NULL, mine, sizeof mine)) == 0 &&
               (rc = vt_path(restoring, sizeof restoring, "%s/" VT__RESTORING,
                             t->spec.output)) == 0) {
        /* (renamed whole first: see VT__RESTORING) */
        if (rename(aside, restoring) < 0)
            rc = vt_error_set(VT_EIO, "cannot rename %s to %s: %s", aside, restoring,
                              strerror(errno));
        else
            rc = vt__move_folder(t, VT__RESTORING, theirs, sizeof theirs);
    }
    vt_train__leave(t);
    if (rc < 0 && succeeded)
        vt_train__say(t, VT_LOG_WARN, "the outputs this job replaced stay in %s: %s", aside,
                      vt_error_msg());
    else if (rc < 0)
        vt_train__say(t, VT_LOG_WARN, "the outputs this job replaced were not all put back in "
                      "%s: %s", t->spec.output, vt_error_msg());
    else if (theirs[0] && succeeded)
        vt_train__say(t, VT_LOG_INFO, "removed the outputs this job replaced (%s) from %s",
                      theirs, aside);
    else if (theirs[0])
        vt_train__say(t, VT_LOG_INFO, "this job did not finish: removed its outputs (%s) and "
                      "put back the earlier job's (%s) in %s", mine[0] ? mine : "none",
                      theirs, t->spec.output);
}

/* predict.c - prediction and evaluation with a finished model (see predict.h). */
#include "predict.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/error.h"
#include "dataset.h"
#include "image.h"
#include "loader.h"
#include "model.h"
#include "safetensors.h"
#include "weights.h"

#define VT__PRED_BATCH 16

struct vt_predictor {
    vt_backend *be;
    vt_params *params;
    vt_trunk *trunk;
    vt_model *model;
    vt_preprocess prep;
    int nclasses;
    vt_writer writer; /* who wrote the model */
    char **classes;  /* nclasses names */
    uint8_t *pixels; /* (VT__PRED_BATCH, S, S, 3) */
};

void vt_predictor_free(vt_predictor *p)
{
    if (!p)
        return;
    vt_model_free(p->model);
    vt_trunk_free(p->trunk);
    vt_params_free(p->params);
    for (int c = 0; p->classes && c < p->nclasses; c++)
        free(p->classes[c]);
    free(p->classes);
    free(p->pixels);
    free(p);
}

static int vt__meta_classes(vt_predictor *p, const vt_tensorset *set, const char *path)
{
    const char *text = vt_tensorset_meta(set, "classes");
    cJSON *a = text ? cJSON_Parse(text) : NULL, *it;
    int n = 0, rc = 0;
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) < 2) {
        cJSON_Delete(a);
        return vt_error_set(VT_EFORMAT, "%s: metadata 'classes' is missing or malformed",
                            path);
    }
    p->nclasses = cJSON_GetArraySize(a);
    if (!(p->classes = calloc((size_t)p->nclasses, sizeof *p->classes)))
        rc = vt_error_set(VT_ENOMEM, "out of memory");
    cJSON_ArrayForEach(it, a) {
        if (rc < 0)
            break;
        if (!cJSON_IsString(it))
            rc = vt_error_set(VT_EFORMAT, "%s: class names must be strings", path);
        else if (!(p->classes[n++] = strdup(it->valuestring)))
            rc = vt_error_set(VT_ENOMEM, "out of memory");
    }
    cJSON_Delete(a);
    return rc;
}

int vt_predictor_load(vt_predictor **out, vt_backend *be, const char *path,
                      const vt_creds *creds)
{
    vt_predictor *p = calloc(1, sizeof *p);
    vt_tensorset *set = NULL;
    const char *v;
    int rc, hidden[VT_MAX_DENSE], nhidden, nclasses, in_features, size, prep;

    *out = NULL;
    if (!p)
        return vt_error_set(VT_ENOMEM, "out of memory");
    p->be = be;
    if (creds && (rc = vt_creds_enter(creds)) < 0)
        goto fail;
    rc = vt_safetensors_read(&set, path);
    if (rc == 0)
        p->writer = vt_writer_of(set);
    if (creds)
        vt_creds_leave();
    if (rc == VT_EFORMAT) {
        /* Say first what the file is not (an image given where the model
         * was meant), then why, without the path a second time. */
        char why[512];
        const char *msg = vt_error_msg();
        size_t n = strlen(path);
        snprintf(why, sizeof why, "%s",
                 strncmp(msg, path, n) == 0 && strncmp(msg + n, ": ", 2) == 0 ? msg + n + 2
                                                                               : msg);
        rc = vt_error_set(VT_EFORMAT, "%s is not a vggtune model file: %s", path, why);
    }
    if (rc < 0)
        goto fail;
    if (!(v = vt_tensorset_meta(set, "format")) || strncmp(v, "vggtune-model-", 14) != 0) {
        rc = vt_error_set(VT_EFORMAT, "%s is not a model written by vggtune", path);
        goto fail;
    }
    v = vt_tensorset_meta(set, "image_size");
    size = v ? atoi(v) : 0;
    v = vt_tensorset_meta(set, "preprocess");
    prep = v ? vt_preprocess_parse(v) : -1;
    if (size <= 0 || prep < 0) {
        rc = vt_error_set(VT_EFORMAT, "%s: metadata lacks image_size or preprocess", path);
        goto fail;
    }
    p->prep = (vt_preprocess)prep;
    if ((rc = vt__meta_classes(p, set, path)) < 0 ||
        (rc = vt_weights_head_layout(set, path, hidden, &nhidden, &nclasses,
                                     &in_features)) < 0)
        goto fail;
    if (nclasses != p->nclasses) {
        rc = vt_error_set(VT_EFORMAT, "%s: the head has %d outputs but %d class names",
                          path, nclasses, p->nclasses);
        goto fail;
    }
    if ((rc = vt_params_new(&p->params, size, hidden, nhidden, nclasses)) < 0 ||
        (rc = vt_weights_load_trunk(p->params, set, VT_WFILE_SAFETENSORS, path, NULL)) < 0 ||
        (rc = vt_weights_load_model(p->params, set, VT_VGG_NCONV, path, NULL)) < 0)
        goto fail;
    vt_model_opts mo = {.trainable_blocks = 0, .max_batch = VT__PRED_BATCH, .dropout = 0,
                        .act = vt_backend_act_dtype(be, "fp32")};
    if ((rc = vt_trunk_create(&p->trunk, be, p->params)) < 0 ||
        (rc = vt_model_create(&p->model, p->trunk, p->params, &mo)) < 0)
        goto fail;
    if (!(p->pixels = malloc((size_t)VT__PRED_BATCH * size * size * 3))) {
        rc = vt_error_set(VT_ENOMEM, "out of memory");
        goto fail;
    }
    vt_tensorset_free(set);
    *out = p;
    return 0;
fail:
    vt_tensorset_free(set);
    vt_predictor_free(p);
    return rc;
}

const vt_writer *vt_predictor_writer(const vt_predictor *p) { return &p->writer; }

int vt_predictor_nclasses(const vt_predictor *p) { return p->nclasses; }
const char *vt_predictor_class(const vt_predictor *p, int c) { return p->classes[c]; }

/* Runs the network on the b->n (<= VT__PRED_BATCH) decoded images of b. */
static int vt__forward(vt_predictor *p, const vt_batch *b, const int32_t *labels, float *probs,
                       float *logits, vt_xent_sums *sums)
{
    int rc;
    if ((rc = vt_model_set_batch(p->model, b->n)) < 0 ||
        (rc = vt_batch_to_input(p->be, b, p->params->image_size, p->prep,
                                vt_model_input(p->model))) < 0 ||
        (rc = vt_model_extract(p->model)) < 0)
        return rc;
    return vt_model_evaluate(p->model, labels, probs, logits, sums);
}

int vt_predictor_run(vt_predictor *p, const char *const *paths, int n, float *probs,
                     float *logits, const vt_creds *creds, char **errors)
{
    int S = p->params->image_size, C = p->nclasses, rc = 0;
    int idx[VT__PRED_BATCH]; /* batch row -> image */
    float *bp = malloc(sizeof *bp * VT__PRED_BATCH * (size_t)C);     /* (batch, C) */
    float *bl = logits ? malloc(sizeof *bl * VT__PRED_BATCH * (size_t)C) : NULL;
    if (!bp || (logits && !bl)) {
        rc = vt_error_set(VT_ENOMEM, "out of memory");
        goto done;
    }
    for (int start = 0; start < n && rc == 0; start += VT__PRED_BATCH) {
        int m = n - start < VT__PRED_BATCH ? n - start : VT__PRED_BATCH, rows = 0;
        if (creds && (rc = vt_creds_enter(creds)) < 0)
            break;
        for (int i = start; i < start + m && rc == 0; i++) {
            rc = vt_image_load(AT_FDCWD, paths[i], S, S, p->pixels + (size_t)rows * S * S * 3);
            if (rc == 0) {
                idx[rows++] = i;
            } else if (errors) { /* this image only: NaN rows and the reason */
                if (!(errors[i] = strdup(vt_error_msg())))
                    break;
                for (int c = 0; c < C; c++) {
                    probs[(size_t)i * C + c] = NAN;
                    if (logits)
                        logits[(size_t)i * C + c] = NAN;
                }
                rc = 0;
            }
        }
        if (creds)
            vt_creds_leave();
        if (rc < 0 || rows == 0)
            continue;
        vt_batch b = {.pixels = p->pixels, .n = rows};
        if ((rc = vt__forward(p, &b, NULL, bp, bl, NULL)) < 0)
            break;
        for (int r = 0; r < rows; r++) {
            memcpy(probs + (size_t)idx[r] * C, bp + (size_t)r * C, sizeof *bp * C);
            if (logits)
                memcpy(logits + (size_t)idx[r] * C, bl + (size_t)r * C, sizeof *bl * C);
        }
    }
done:
    free(bp);
    free(bl);
    return rc;
}

void vt_predict_topk(const float *p, int n, int k, int *out)
{
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int c = 0; c < n; c++) {
            int taken = 0;
            for (int i = 0; i < j && !taken; i++)
                taken = out[i] == c;
            if (!taken && (best < 0 || p[c] > p[best]))
                best = c;
        }
        out[j] = best;
    }
}

cJSON *vt_predict_json(const vt_predictor *p, const char *image, const float *probs,
                       const float *logits, int k, const char *error)
{
    cJSON *o = cJSON_CreateObject(), *top;
    int best[VT_PREDICT_TOP_MAX];
    if (!o)
        return NULL;
    if (error) {
        cJSON_AddStringToObject(o, "image", image);
        cJSON_AddStringToObject(o, "error", error);
        return o;
    }
    k = k < p->nclasses ? k : p->nclasses;
    k = k < VT_PREDICT_TOP_MAX ? k : VT_PREDICT_TOP_MAX;
    vt_predict_topk(probs, p->nclasses, k, best);
    cJSON_AddStringToObject(o, "image", image);
    top = cJSON_AddArrayToObject(o, "top");
    for (int j = 0; j < k; j++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "class", p->classes[best[j]]);
        cJSON_AddNumberToObject(e, "index", best[j]);
        cJSON_AddNumberToObject(e, "probability", probs[best[j]]);
        cJSON_AddItemToArray(top, e);
    }
    cJSON_AddItemToObject(o, "probabilities", cJSON_CreateFloatArray(probs, p->nclasses));
    if (logits)
        cJSON_AddItemToObject(o, "logits", cJSON_CreateFloatArray(logits, p->nclasses));
    return o;
}

void vt_eval_result_free(vt_eval_result *res)
{
    free(res->confusion);
    free(res->precision);
    free(res->recall);
    memset(res, 0, sizeof *res);
}

int vt_predictor_eval(vt_predictor *p, vt_pool *pool, const char *dir,
                      const vt_creds *creds, vt_eval_result *res)
{
    vt_dataset *ds = NULL;
    vt_loader *l = NULL;
    vt_batch *b;
    int C = p->nclasses, rc, *map = NULL, *order = NULL, got;
    float *probs = NULL;
    int32_t *labels = NULL;
    vt_xent_sums sums = {0}; /* complete after a vt_backend_sync() */

    memset(res, 0, sizeof *res);
    if (creds && (rc = vt_creds_enter(creds)) < 0)
        return rc;
    rc = vt_dataset_scan(&ds, AT_FDCWD, dir);
    if (creds)
        vt_creds_leave();
    if (rc < 0)
        return rc;
    res->nclasses = C;
    res->confusion = calloc((size_t)C * C, sizeof *res->confusion);
    res->precision = calloc((size_t)C, sizeof *res->precision);
    res->recall = calloc((size_t)C, sizeof *res->recall);
    map = calloc((size_t)ds->nclasses, sizeof *map);
    order = malloc(sizeof *order * (size_t)(ds->n + 1));
    probs = malloc(sizeof *probs * (size_t)VT__PRED_BATCH * C);
    labels = malloc(sizeof *labels * VT__PRED_BATCH);
    if (!res->confusion || !res->precision || !res->recall || !map || !order || !probs ||
        !labels) {
        rc = vt_error_set(VT_ENOMEM, "out of memory");
        goto done;
    }
    /* Folder names map onto the model's classes by name. */
    for (int c = 0; c < ds->nclasses; c++) {
        map[c] = -1;
        for (int k = 0; k < C; k++)
            if (strcmp(ds->classes[c], p->classes[k]) == 0)
                map[c] = k;
        if (map[c] < 0) {
            rc = vt_error_set(VT_EINVAL, "%s has a class folder '%s' that the model does "
                              "not know", dir, ds->classes[c]);
            goto done;
        }
    }
    for (int i = 0; i < ds->n; i++)
        order[i] = i;
    vt_loader_opts lo = {.image_size = p->params->image_size, .max_batch = VT__PRED_BATCH,
                         .creds = creds, .device_resize = vt_backend_resizes_images(p->be),
                         .pinned = p->be};
    if ((rc = vt_loader_create(&l, pool, ds, &lo)) < 0 ||
        (rc = vt_loader_begin(l, order, ds->n, NULL)) < 0)
        goto done;
    while ((got = vt_loader_next(l, &b)) > 0) {
        for (int i = 0; i < b->n; i++)
            labels[i] = map[b->labels[i]];
        if ((rc = vt__forward(p, b, labels, probs, NULL, &sums)) < 0)
            goto done;
        for (int i = 0; i < b->n; i++) {
            int best = 0;
            for (int k = 1; k < C; k++)
                if (probs[i * C + k] > probs[i * C + best])
                    best = k;
            res->confusion[labels[i] * C + best]++;
        }
        res->n += b->n;
    }
    if (got < 0) {
        rc = got;
        goto done;
    }
    res->skipped = vt_loader_failed_count(l);
    res->links = ds->links;
    if (res->n == 0) {
        rc = vt_error_set(VT_EINVAL, "%s has no readable image", dir);
        goto done;
    }
    if ((rc = vt_backend_sync(p->be)) < 0)
        goto done;
    res->loss = sums.loss / res->n;
    res->accuracy = (double)sums.correct / res->n;
    for (int k = 0; k < C; k++) {
        int tp = res->confusion[k * C + k], pred = 0, actual = 0;
        for (int j = 0; j < C; j++) {
            pred += res->confusion[j * C + k];
            actual += res->confusion[k * C + j];
        }
        res->precision[k] = pred ? (double)tp / pred : NAN;
        res->recall[k] = actual ? (double)tp / actual : NAN;
    }
    rc = 0;
done:
    if (rc < 0) {
        vt_backend_sync(p->be); /* nothing may still be on its way into sums */
        vt_eval_result_free(res);
    }
    vt_loader_free(l);
    vt_dataset_free(ds);
    free(map);
    free(order);
    free(probs);
    free(labels);
    return rc;
}

static cJSON *vt__num_or_null(double v)
{
    return isnan(v) ? cJSON_CreateNull() : cJSON_CreateNumber(v);
}

cJSON *vt_eval_json(const vt_predictor *p, const vt_eval_result *r)
{
    cJSON *e = cJSON_CreateObject();
    cJSON *classes = cJSON_AddArrayToObject(e, "classes");
    cJSON *prec = cJSON_AddArrayToObject(e, "precision");
    cJSON *rec = cJSON_AddArrayToObject(e, "recall");
    cJSON *conf = cJSON_AddArrayToObject(e, "confusion");
    if (!e || !classes || !prec || !rec || !conf) {
        cJSON_Delete(e);
        return NULL;
    }
    cJSON_AddNumberToObject(e, "n", r->n);
    cJSON_AddNumberToObject(e, "skipped", r->skipped);
    cJSON_AddNumberToObject(e, "links_skipped", r->links);
    cJSON_AddNumberToObject(e, "accuracy", r->accuracy);
    cJSON_AddNumberToObject(e, "loss", r->loss);
    for (int k = 0; k < r->nclasses; k++) {
        cJSON_AddItemToArray(classes, cJSON_CreateString(vt_predictor_class(p, k)));
        cJSON_AddItemToArray(prec, vt__num_or_null(r->precision[k]));
        cJSON_AddItemToArray(rec, vt__num_or_null(r->recall[k]));
        cJSON_AddItemToArray(conf, cJSON_CreateIntArray(r->confusion + k * r->nclasses,
                                                        r->nclasses));
    }
    return e;
}

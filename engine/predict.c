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
    int fp32;         /* the job trained in fp32 (else the backend's bf16 where it has it) */
    char **classes;  /* nclasses names */
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
    free(p);
}

/* Whether the job that wrote a model (its "job" metadata) trained with
 * precision fp32; without the record, as a job's default (no). */
static int vt__meta_fp32(const vt_tensorset *set)
{
    const char *text = vt_tensorset_meta(set, "job");
    cJSON *job = text ? cJSON_Parse(text) : NULL;
    const cJSON *prec = cJSON_GetObjectItemCaseSensitive(job, "precision");
    int fp32 = cJSON_IsString(prec) && strcmp(prec->valuestring, "fp32") == 0;
    cJSON_Delete(job);
    return fp32;
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

int vt_predictor_read(vt_predictor **out, const char *path, const vt_creds *creds)
{
    vt_predictor *p = calloc(1, sizeof *p);
    vt_tensorset *set = NULL;
    const char *v;
    int rc, hidden[VT_MAX_DENSE], nhidden, nclasses, in_features, size, prep;

    *out = NULL;
    if (!p)
        return vt_error_set(VT_ENOMEM, "out of memory");
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
    p->fp32 = vt__meta_fp32(set);
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
    vt_tensorset_free(set);
    *out = p;
    return 0;
fail:
    vt_tensorset_free(set);
    vt_predictor_free(p);
    return rc;
}

/* The network's options on be. */
static vt_model_opts vt__model_opts(const vt_predictor *p, vt_backend *be)
{
    return (vt_model_opts){.trainable_blocks = 0, .max_batch = VT__PRED_BATCH, .dropout = 0,
                           .act = vt_backend_act_dtype(be, p->fp32 ? "fp32" : "bf16")};
}

size_t vt_predictor_estimate(const vt_predictor *p, vt_backend *be)
{
    vt_model_opts mo = vt__model_opts(p, be);
    size_t act = mo.act == VT_BF16 ? 2 : 4, scratch = 0, convs = 0;
    size_t S = (size_t)p->params->image_size;
    for (int i = 0; i < VT_VGG_NCONV; i++)
        convs += (size_t)vt_vgg_conv_numel(i) + (size_t)vt_vgg16[i].cout;
    /* the model and its scratch, the trunk's f32 weights (with a bf16
     * copy to compute in bf16), and a batch of decoded images with its
     * input */
    return vt_model_estimate(p->params, &mo, act, &scratch) + scratch +
           convs * (act == 2 ? 6 : 4) +
           (size_t)VT__PRED_BATCH * S * S * 3 * (1 + act);
}

int vt_predictor_upload(vt_predictor *p, vt_backend *be)
{
    vt_model_opts mo = vt__model_opts(p, be);
    int rc;
    p->be = be;
    if ((rc = vt_trunk_create(&p->trunk, be, p->params)) < 0 ||
        (rc = vt_model_create(&p->model, p->trunk, p->params, &mo)) < 0)
        return rc;
    return 0;
}

int vt_predictor_load(vt_predictor **out, vt_backend *be, const char *path,
                      const vt_creds *creds)
{
    int rc = vt_predictor_read(out, path, creds);
    if (rc == 0 && (rc = vt_predictor_upload(*out, be)) < 0) {
        vt_predictor_free(*out);
        *out = NULL;
    }
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

/* ---- passes ------------------------------------------------------------ */

struct vt_pass {
    vt_predictor *p;
    const vt_dataset *ds;
    vt_pass_kind kind;
    vt_loader *l;
    int *map;          /* (ds->nclasses) eval: dataset class -> model class */
    int32_t *labels;   /* (VT__PRED_BATCH) eval: the batch's model classes */
    float *bp, *bl;    /* (VT__PRED_BATCH, C) the batch's softmax and (predict) logits */
    float *probs, *logits; /* (ds->n, C) predict: every image's, NaN unread */
    int done;          /* entries of the order gone through */
    int queued;        /* the device may still add to sums (no sync since) */
    int over;          /* the pass has ended: results final */
    vt_xent_sums sums; /* eval; complete after a vt_backend_sync() */
    vt_eval_result res;
};

void vt_pass_free(vt_pass *ps)
{
    if (!ps)
        return;
    if (ps->queued)
        vt_backend_sync(ps->p->be); /* nothing may still be on its way into sums */
    vt_loader_free(ps->l);
    vt_eval_result_free(&ps->res);
    free(ps->map);
    free(ps->labels);
    free(ps->bp);
    free(ps->bl);
    free(ps->probs);
    free(ps->logits);
    free(ps);
}

/* ps->map: the model's class of each of the dataset's class folders. */
static int vt__map_classes(vt_pass *ps)
{
    const vt_dataset *ds = ps->ds;
    for (int c = 0; c < ds->nclasses; c++) {
        ps->map[c] = -1;
        for (int k = 0; k < ps->p->nclasses; k++)
            if (strcmp(ds->classes[c], ps->p->classes[k]) == 0)
                ps->map[c] = k;
        if (ps->map[c] < 0)
            return vt_error_set(VT_EINVAL, "%s has a class folder '%s' that the model does "
                                "not know", ds->root, ds->classes[c]);
    }
    return 0;
}

int vt_pass_begin(vt_pass **out, vt_predictor *p, vt_pool *pool, const vt_dataset *ds,
                  vt_pass_kind kind, const vt_creds *creds, void (*decoded)(void *ud),
                  void *ud)
{
    vt_pass *ps = calloc(1, sizeof *ps);
    size_t C = (size_t)p->nclasses, rows = (size_t)(ds->n ? ds->n : 1);
    int *order = NULL, rc;
    *out = NULL;
    if (!ps)
        return vt_error_set(VT_ENOMEM, "out of memory");
    *ps = (vt_pass){.p = p, .ds = ds, .kind = kind};
    ps->bp = malloc(sizeof *ps->bp * VT__PRED_BATCH * C);
    ps->bl = kind == VT_PASS_PREDICT ? malloc(sizeof *ps->bl * VT__PRED_BATCH * C) : NULL;
    order = malloc(sizeof *order * rows);
    if (kind == VT_PASS_EVAL) {
        ps->map = calloc((size_t)(ds->nclasses ? ds->nclasses : 1), sizeof *ps->map);
        ps->labels = malloc(sizeof *ps->labels * VT__PRED_BATCH);
        ps->res.nclasses = (int)C;
        ps->res.confusion = calloc(C * C, sizeof *ps->res.confusion);
        ps->res.precision = calloc(C, sizeof *ps->res.precision);
        ps->res.recall = calloc(C, sizeof *ps->res.recall);
    } else {
        ps->probs = malloc(sizeof *ps->probs * rows * C);
        ps->logits = malloc(sizeof *ps->logits * rows * C);
    }
    if (!ps->bp || (kind == VT_PASS_PREDICT && !ps->bl) || !order ||
        (kind == VT_PASS_EVAL ? !ps->map || !ps->labels || !ps->res.confusion ||
                                    !ps->res.precision || !ps->res.recall
                              : !ps->probs || !ps->logits)) {
        rc = vt_error_set(VT_ENOMEM, "out of memory");
        goto fail;
    }
    if (kind == VT_PASS_EVAL && (rc = vt__map_classes(ps)) < 0)
        goto fail;
    for (size_t i = 0; kind == VT_PASS_PREDICT && i < rows * C; i++)
        ps->probs[i] = ps->logits[i] = NAN;
    for (int i = 0; i < ds->n; i++)
        order[i] = i;
    vt_loader_opts lo = {.image_size = p->params->image_size, .max_batch = VT__PRED_BATCH,
                         .creds = creds, .device_resize = vt_backend_resizes_images(p->be),
                         .pinned = p->be, .decoded = decoded, .decoded_ud = ud};
    if ((rc = vt_loader_create(&ps->l, pool, ds, &lo)) < 0 ||
        (rc = vt_loader_begin(ps->l, order, ds->n, NULL)) < 0 ||
        (rc = vt_loader_prefetch(ps->l)) < 0)
        goto fail;
    free(order);
    *out = ps;
    return 0;
fail:
    free(order);
    vt_pass_free(ps);
    return rc;
}

/* The first image of the pass that could not be read, with why (the
 * loader's reason, which names the file), into res->first_skipped: the
 * counts alone leave the user to hunt for it. */
static void vt__eval_first_skipped(vt_pass *ps)
{
    for (int i = 0; i < ps->ds->n; i++) {
        const char *why = vt_loader_failure(ps->l, i);
        if (why) {
            snprintf(ps->res.first_skipped, sizeof ps->res.first_skipped, "%s", why);
            return;
        }
    }
}

/* The evaluation's figures once every batch has run. */
static int vt__eval_end(vt_pass *ps)
{
    vt_eval_result *res = &ps->res;
    int C = res->nclasses, rc;
    res->skipped = vt_loader_failed_count(ps->l);
    res->links = ps->ds->links;
    res->others = ps->ds->others;
    vt__eval_first_skipped(ps);
    if (ps->ds->n == 0)
        return vt_error_set(VT_EINVAL, "%s has no image (JPEG or PNG) in its class folders",
                            ps->ds->root);
    if (res->n == 0 && ps->ds->n == 1)
        return vt_error_set(VT_EINVAL, "the one image in %s could not be read: %s",
                            ps->ds->root, res->first_skipped);
    if (res->n == 0)
        return vt_error_set(VT_EINVAL, "none of the %d images in %s could be read; the first: "
                            "%s", ps->ds->n, ps->ds->root, res->first_skipped);
    if ((rc = vt_backend_sync(ps->p->be)) < 0)
        return rc;
    ps->queued = 0;
    res->loss = ps->sums.loss / res->n;
    res->accuracy = (double)ps->sums.correct / res->n;
    for (int k = 0; k < C; k++) {
        int tp = res->confusion[k * C + k], pred = 0, actual = 0;
        for (int j = 0; j < C; j++) {
            pred += res->confusion[j * C + k];
            actual += res->confusion[k * C + j];
        }
        res->precision[k] = pred ? (double)tp / pred : NAN;
        res->recall[k] = actual ? (double)tp / actual : NAN;
    }
    return 0;
}

int vt_pass_ready(vt_pass *ps) { return ps->over || vt_loader_ready(ps->l); }

int vt_pass_step(vt_pass *ps)
{
    vt_batch *b;
    int C = ps->p->nclasses, got, rc;
    if (ps->over)
        return 0;
    if ((got = vt_loader_next(ps->l, &b)) < 0)
        return got;
    if (got == 0) {
        ps->done = ps->ds->n;
        if (ps->kind == VT_PASS_EVAL && (rc = vt__eval_end(ps)) < 0)
            return rc;
        ps->over = 1;
        return 0;
    }
    if (ps->kind == VT_PASS_EVAL)
        for (int i = 0; i < b->n; i++)
            ps->labels[i] = ps->map[b->labels[i]];
    ps->queued = ps->kind == VT_PASS_EVAL;
    if ((rc = vt__forward(ps->p, b, ps->labels, ps->bp,
                          ps->kind == VT_PASS_PREDICT ? ps->bl : NULL, &ps->sums)) < 0)
        return rc;
    for (int i = 0; i < b->n; i++) {
        const float *row = ps->bp + (size_t)i * C;
        if (ps->kind == VT_PASS_PREDICT) {
            memcpy(ps->probs + (size_t)b->sample[i] * C, row, sizeof *row * C);
            memcpy(ps->logits + (size_t)b->sample[i] * C, ps->bl + (size_t)i * C,
                   sizeof *row * C);
            continue;
        }
        int best = 0;
        for (int k = 1; k < C; k++)
            if (row[k] > row[best])
                best = k;
        ps->res.confusion[ps->labels[i] * C + best]++;
    }
    if (ps->kind == VT_PASS_EVAL)
        ps->res.n += b->n;
    ps->done += b->consumed;
    return 1;
}

int vt_pass_done(const vt_pass *ps, int *total)
{
    *total = ps->ds->n;
    return ps->done;
}

const float *vt_pass_row(const vt_pass *ps, int i, const float **logits, const char **why)
{
    size_t C = (size_t)ps->p->nclasses;
    if ((*why = vt_loader_failure(ps->l, i))) {
        *logits = NULL;
        return NULL;
    }
    *logits = ps->logits + (size_t)i * C;
    return ps->probs + (size_t)i * C;
}

void vt_pass_eval(vt_pass *ps, vt_eval_result *res)
{
    *res = ps->res;
    memset(&ps->res, 0, sizeof ps->res);
}

/* ---- whole passes ------------------------------------------------------ */

/* Runs a pass to its end. */
static int vt__pass_all(vt_pass *ps)
{
    int rc;
    while ((rc = vt_pass_step(ps)) > 0)
        ;
    return rc;
}

int vt_predictor_run(vt_predictor *p, vt_pool *pool, const char *const *paths, int n,
                     float *probs, float *logits, const vt_creds *creds, char **errors)
{
    vt_dataset *ds = NULL;
    vt_pass *ps = NULL;
    size_t C = (size_t)p->nclasses;
    int rc;
    if ((rc = vt_dataset_of_files(&ds, paths, n)) < 0 ||
        (rc = vt_pass_begin(&ps, p, pool, ds, VT_PASS_PREDICT, creds, NULL, NULL)) < 0 ||
        (rc = vt__pass_all(ps)) < 0)
        goto done;
    for (int i = 0; i < n && rc == 0; i++) {
        const char *why;
        const float *l, *row = vt_pass_row(ps, i, &l, &why);
        if (why && !(errors[i] = strdup(why)))
            rc = vt_error_set(VT_ENOMEM, "out of memory");
        for (size_t c = 0; c < C; c++) {
            probs[i * C + c] = row ? row[c] : NAN;
            if (logits)
                logits[i * C + c] = row ? l[c] : NAN;
        }
    }
done:
    vt_pass_free(ps);
    vt_dataset_free(ds);
    return rc;
}

int vt_predictor_eval(vt_predictor *p, vt_pool *pool, const char *dir,
                      const vt_creds *creds, vt_eval_result *res)
{
    vt_dataset *ds = NULL;
    vt_pass *ps = NULL;
    int rc;
    memset(res, 0, sizeof *res);
    if (creds && (rc = vt_creds_enter(creds)) < 0)
        return rc;
    rc = vt_dataset_scan(&ds, AT_FDCWD, dir);
    if (creds)
        vt_creds_leave();
    if (rc == 0 && (rc = vt_pass_begin(&ps, p, pool, ds, VT_PASS_EVAL, creds, NULL, NULL)) == 0 &&
        (rc = vt__pass_all(ps)) == 0)
        vt_pass_eval(ps, res);
    vt_pass_free(ps);
    vt_dataset_free(ds);
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
    cJSON_AddNumberToObject(e, "others_skipped", r->others);
    if (r->first_skipped[0])
        cJSON_AddStringToObject(e, "first_skipped", r->first_skipped);
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

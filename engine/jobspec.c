/* jobspec.c - parsing, checking and printing job documents (see jobspec.h).
 *
 * Each JSON object of the document is read against a list of the keys it
 * may hold; anything else is an "unknown field" error, so a typo never
 * silently falls back to a default.
 */
#include "jobspec.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/error.h"
#include "../common/utf8.h"

void vt_jobspec_default_head(int trainable_blocks, int *hidden, int *nhidden,
                             float *dropout)
{
    if (trainable_blocks == 0) {
        hidden[0] = 256;
        *nhidden = 1;
        *dropout = 0.5f;
    } else {
        hidden[0] = 1024;
        hidden[1] = 128;
        *nhidden = 2;
        *dropout = 0.0f;
    }
}

void vt_jobspec_defaults(vt_jobspec *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "job");
    s->trainable_blocks = 1;
    s->val_split = 0.0;
    s->image_size = 224;
    s->preprocess = -1;
    s->shuffle = 1;
    vt_jobspec_default_head(1, s->hidden, &s->nhidden, &s->dropout);
    s->lr = 0.001;
    s->momentum = 0.9;
    s->nesterov = 1;
    s->decay = 1e-6;
    s->weight_decay = 0.0;
    s->schedule = VT_SCHED_NONE;
    s->step_epochs = 10;
    s->gamma = 0.1;
    s->min_lr = 0.0;
    s->epochs = 10;
    s->batch_size = 32;
    s->seed = 1;
    s->precision = VT_PREC_AUTO;
    s->umask = -1;
}

void vt_jobspec_free(vt_jobspec *s)
{
    free(s->train_dir);
    free(s->val_dir);
    free(s->weights);
    free(s->init);
    free(s->output);
    s->train_dir = s->val_dir = s->weights = s->init = s->output = NULL;
}

static char *vt__dup(const char *s) { return s ? strdup(s) : NULL; }

int vt_jobspec_copy(vt_jobspec *dst, const vt_jobspec *src)
{
    *dst = *src;
    dst->train_dir = vt__dup(src->train_dir);
    dst->val_dir = vt__dup(src->val_dir);
    dst->weights = vt__dup(src->weights);
    dst->init = vt__dup(src->init);
    dst->output = vt__dup(src->output);
    if ((src->train_dir && !dst->train_dir) || (src->val_dir && !dst->val_dir) ||
        (src->weights && !dst->weights) || (src->init && !dst->init) ||
        (src->output && !dst->output)) {
        vt_jobspec_free(dst);
        return vt_error_set(VT_ENOMEM, "out of memory");
    }
    return 0;
}

void vt_jobspec_layout(const int *hidden, int n, char *buf, size_t len)
{
    buf[0] = '\0';
    for (int i = 0; i < n; i++)
        snprintf(buf + strlen(buf), len - strlen(buf), "%s%d", i ? ", " : "", hidden[i]);
}

const char *vt_jobspec_mode_name(int tb)
{
    static const char *names[] = {"bottleneck", "finetune", "blocks2", "blocks3",
                                  "blocks4", "scratch"};
    return tb >= 0 && tb <= 5 ? names[tb] : "invalid";
}

/* ---- typed field readers ----------------------------------------------- */

/* Checks that obj (named path) holds only the listed keys. */
static int vt__known(const cJSON *obj, const char *path, const char *const *keys)
{
    const cJSON *it;
    if (!cJSON_IsObject(obj))
        return vt_error_set(VT_EINVAL, "%s must be an object", path);
    cJSON_ArrayForEach(it, obj) {
        int ok = 0;
        for (const char *const *k = keys; *k && !ok; k++)
            ok = strcmp(*k, it->string) == 0;
        if (!ok)
            return vt_error_set(VT_EINVAL, "unknown field %s%s%s", path,
                                *path ? "." : "", it->string);
    }
    return 0;
}

static int vt__num(const cJSON *obj, const char *path, const char *key, double lo,
                   double hi, int lo_open, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
        (lo_open ? v->valuedouble <= lo : v->valuedouble < lo) || v->valuedouble > hi)
        return vt_error_set(VT_EINVAL, "%s%s%s must be a number %s %g and <= %g", path,
                            *path ? "." : "", key, lo_open ? ">" : ">=", lo, hi);
    *out = v->valuedouble;
    return 0;
}

static int vt__int(const cJSON *obj, const char *path, const char *key, long long lo,
                   long long hi, long long *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        return vt_error_set(VT_EINVAL, "%s%s%s must be an integer from %lld to %lld", path,
                            *path ? "." : "", key, lo, hi);
    *out = (long long)v->valuedouble;
    return 0;
}

static int vt__bool(const cJSON *obj, const char *path, const char *key, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return 0;
    if (!cJSON_IsBool(v))
        return vt_error_set(VT_EINVAL, "%s%s%s must be true or false", path,
                            *path ? "." : "", key);
    *out = cJSON_IsTrue(v);
    return 0;
}

/* A string field; null allowed (-> NULL) when nullable. */
static int vt__str(const cJSON *obj, const char *path, const char *key, int nullable,
                   char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return 0;
    if (nullable && cJSON_IsNull(v)) {
        free(*out);
        *out = NULL;
        return 0;
    }
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return vt_error_set(VT_EINVAL, "%s%s%s must be a non-empty string%s", path,
                            *path ? "." : "", key, nullable ? " or null" : "");
    if (strlen(v->valuestring) >= PATH_MAX)
        return vt_error_set(VT_EINVAL, "%s%s%s is %zu bytes long, over the %d-byte limit of "
                            "a path", path, *path ? "." : "", key, strlen(v->valuestring),
                            PATH_MAX - 1);
    free(*out);
    if (!(*out = strdup(v->valuestring)))
        return vt_error_set(VT_ENOMEM, "out of memory");
    return 0;
}

/* A string field that must be one of choices[]; *out = its index. */
static int vt__choice(const cJSON *obj, const char *path, const char *key,
                      const char *const *choices, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    char list[256] = "";
    if (!v)
        return 0;
    for (int i = 0; choices[i]; i++) {
        if (cJSON_IsString(v) && strcmp(v->valuestring, choices[i]) == 0) {
            *out = i;
            return 0;
        }
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                 choices[i]);
    }
    return vt_error_set(VT_EINVAL, "%s%s%s must be one of: %s", path, *path ? "." : "",
                        key, list);
}

/* ---- sections ---------------------------------------------------------- */

static int vt__parse_data(vt_jobspec *s, const cJSON *d)
{
    static const char *const keys[] = {"train", "val", "val_split", "image_size",
                                       "preprocess", "shuffle", NULL};
    static const char *const preps[] = {"auto", "torch", "caffe", NULL};
    long long size = s->image_size;
    int prep = s->preprocess + 1, rc;

    if ((rc = vt__known(d, "data", keys)) < 0 ||
        (rc = vt__str(d, "data", "train", 0, &s->train_dir)) < 0 ||
        (rc = vt__str(d, "data", "val", 1, &s->val_dir)) < 0 ||
        (rc = vt__num(d, "data", "val_split", 0.0, 0.9, 0, &s->val_split)) < 0 ||
        (rc = vt__int(d, "data", "image_size", 32, 1024, &size)) < 0 ||
        (rc = vt__choice(d, "data", "preprocess", preps, &prep)) < 0 ||
        (rc = vt__bool(d, "data", "shuffle", &s->shuffle)) < 0)
        return rc;
    if (size % 32 != 0)
        return vt_error_set(VT_EINVAL, "data.image_size must be a multiple of 32, got %lld",
                            size);
    s->image_size = (int)size;
    s->preprocess = prep - 1;
    return 0;
}

static int vt__parse_head(vt_jobspec *s, const cJSON *h)
{
    static const char *const keys[] = {"dense", "dropout", NULL};
    const cJSON *dense, *it;
    double dropout = s->dropout;
    int rc;

    if ((rc = vt__known(h, "head", keys)) < 0 ||
        (rc = vt__num(h, "head", "dropout", 0.0, 0.95, 0, &dropout)) < 0)
        return rc;
    s->dropout = (float)dropout;
    if (!(dense = cJSON_GetObjectItemCaseSensitive(h, "dense")))
        return 0;
    if (!cJSON_IsArray(dense) || cJSON_GetArraySize(dense) > VT_MAX_DENSE - 1)
        return vt_error_set(VT_EINVAL, "head.dense must be an array of at most %d layer "
                            "widths", VT_MAX_DENSE - 1);
    s->nhidden = 0;
    cJSON_ArrayForEach(it, dense) {
        if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
            it->valuedouble < 1 || it->valuedouble > 65536)
            return vt_error_set(VT_EINVAL, "head.dense[%d] must be an integer from 1 to "
                                "65536", s->nhidden);
        s->hidden[s->nhidden++] = (int)it->valuedouble;
    }
    s->head_given = 1;
    return 0;
}

static int vt__parse_optimizer(vt_jobspec *s, const cJSON *o)
{
    static const char *const keys[] = {"lr", "momentum", "nesterov", "decay",
                                       "weight_decay", "schedule", NULL};
    static const char *const skeys[] = {"type", "step_epochs", "gamma", "min_lr", NULL};
    static const char *const types[] = {"none", "step", "cosine", NULL};
    const cJSON *sch;
    long long step = s->step_epochs;
    int type = (int)s->schedule, rc;

    if ((rc = vt__known(o, "optimizer", keys)) < 0 ||
        (rc = vt__num(o, "optimizer", "lr", 0.0, 10.0, 1, &s->lr)) < 0 ||
        (rc = vt__num(o, "optimizer", "momentum", 0.0, 0.999, 0, &s->momentum)) < 0 ||
        (rc = vt__bool(o, "optimizer", "nesterov", &s->nesterov)) < 0 ||
        (rc = vt__num(o, "optimizer", "decay", 0.0, 1.0, 0, &s->decay)) < 0 ||
        (rc = vt__num(o, "optimizer", "weight_decay", 0.0, 1.0, 0, &s->weight_decay)) < 0)
        return rc;
    if (!(sch = cJSON_GetObjectItemCaseSensitive(o, "schedule")))
        return 0;
    if (cJSON_IsString(sch)) {
        cJSON *wrap = cJSON_CreateObject();
        if (!wrap || !cJSON_AddItemToObject(wrap, "schedule", cJSON_Duplicate(sch, 1))) {
            cJSON_Delete(wrap);
            return vt_error_set(VT_ENOMEM, "out of memory");
        }
        rc = vt__choice(wrap, "optimizer", "schedule", types, &type);
        cJSON_Delete(wrap);
        if (rc < 0)
            return rc;
    } else {
        if ((rc = vt__known(sch, "optimizer.schedule", skeys)) < 0 ||
            (rc = vt__choice(sch, "optimizer.schedule", "type", types, &type)) < 0 ||
            (rc = vt__int(sch, "optimizer.schedule", "step_epochs", 1, 100000, &step)) < 0 ||
            (rc = vt__num(sch, "optimizer.schedule", "gamma", 0.0, 1.0, 1, &s->gamma)) < 0 ||
            (rc = vt__num(sch, "optimizer.schedule", "min_lr", 0.0, 10.0, 0, &s->min_lr)) < 0)
            return rc;
        if (!cJSON_GetObjectItemCaseSensitive(sch, "type"))
            return vt_error_set(VT_EINVAL, "optimizer.schedule.type is required");
    }
    s->schedule = (vt_schedule)type;
    s->step_epochs = (int)step;
    return 0;
}

/* Whether text holds a control character (C0 or DEL): a name shown in
 * listings must not move a terminal's cursor or send it escapes. */
static int vt__has_control(const char *text)
{
    for (const unsigned char *c = (const unsigned char *)text; *c; c++)
        if (*c < 0x20 || *c == 0x7f)
            return 1;
    return 0;
}

static int vt__parse_root(vt_jobspec *s, const cJSON *root)
{
    static const char *const keys[] = {"name", "mode", "trainable_blocks", "data",
                                       "weights", "init", "init_job", "head", "optimizer",
                                       "augment", "epochs", "batch_size", "seed",
                                       "precision", "keep_best", "early_stopping",
                                       "output", "overwrite", "umask", NULL};
    static const char *const modes[] = {"bottleneck", "finetune", "scratch", NULL};
    static const char *const precs[] = {"auto", "fp32", "bf16", NULL};
    static const char *const akeys[] = {"flip", "crop", NULL};
    static const char *const ekeys[] = {"patience", "min_delta", NULL};
    const cJSON *v;
    char *name = NULL;
    int mode = -1, prec = (int)s->precision, rc;
    long long tb = -1, epochs = s->epochs, batch = s->batch_size, seed = (long long)s->seed;
    long long mask = s->umask;
    long long init_job = 0, patience = 0;

    if ((rc = vt__known(root, "", keys)) < 0)
        return rc;
    if ((rc = vt__str(root, "", "name", 0, &name)) < 0)
        return rc;
    if (name) {
        if (strlen(name) >= sizeof s->name || strchr(name, '/') || vt__has_control(name)) {
            free(name);
            return vt_error_set(VT_EINVAL, "name must be at most %zu bytes (UTF-8) without "
                                "'/' or control characters", sizeof s->name - 1);
        }
        snprintf(s->name, sizeof s->name, "%s", name);
        free(name);
    }
    if ((rc = vt__choice(root, "", "mode", modes, &mode)) < 0 ||
        (rc = vt__int(root, "", "trainable_blocks", 0, 5, &tb)) < 0)
        return rc;
    if (mode >= 0) {
        int from_mode = mode == 0 ? 0 : mode == 1 ? 1 : 5;
        if (tb >= 0 && tb != from_mode)
            return vt_error_set(VT_EINVAL, "mode %s means trainable_blocks %d, but "
                                "trainable_blocks is %lld", modes[mode], from_mode, tb);
        tb = from_mode;
    }
    if (tb >= 0)
        s->trainable_blocks = (int)tb;
    vt_jobspec_default_head(s->trainable_blocks, s->hidden, &s->nhidden, &s->dropout);

    if (!(v = cJSON_GetObjectItemCaseSensitive(root, "data")))
        return vt_error_set(VT_EINVAL, "data is required (at least data.train)");
    if ((rc = vt__parse_data(s, v)) < 0)
        return rc;
    if (!s->train_dir)
        return vt_error_set(VT_EINVAL, "data.train is required");
    if (s->val_dir && s->val_split > 0)
        return vt_error_set(VT_EINVAL, "give data.val or data.val_split, not both");
    if ((rc = vt__str(root, "", "weights", 1, &s->weights)) < 0 ||
        (rc = vt__str(root, "", "init", 1, &s->init)) < 0)
        return rc;
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "init_job")) && !cJSON_IsNull(v)) {
        if ((rc = vt__int(root, "", "init_job", 1, INT64_MAX / 2, &init_job)) < 0)
            return rc;
        s->init_job = init_job;
    }
    if (s->init && s->init_job)
        return vt_error_set(VT_EINVAL, "give init or init_job, not both");
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "head")) &&
        (rc = vt__parse_head(s, v)) < 0)
        return rc;
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "optimizer")) &&
        (rc = vt__parse_optimizer(s, v)) < 0)
        return rc;
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "augment")) &&
        ((rc = vt__known(v, "augment", akeys)) < 0 ||
         (rc = vt__bool(v, "augment", "flip", &s->flip)) < 0 ||
         (rc = vt__num(v, "augment", "crop", 0.0, 0.5, 0, &s->crop)) < 0))
        return rc;
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "early_stopping")) &&
        ((rc = vt__known(v, "early_stopping", ekeys)) < 0 ||
         (rc = vt__int(v, "early_stopping", "patience", 0, 100000, &patience)) < 0 ||
         (rc = vt__num(v, "early_stopping", "min_delta", 0.0, 1e6, 0, &s->min_delta)) < 0))
        return rc;
    s->patience = (int)patience;
    if ((rc = vt__int(root, "", "epochs", 1, 100000, &epochs)) < 0 ||
        (rc = vt__int(root, "", "batch_size", 1, 4096, &batch)) < 0 ||
        (rc = vt__int(root, "", "seed", 0, (1LL << 53) - 1, &seed)) < 0 ||
        (rc = vt__choice(root, "", "precision", precs, &prec)) < 0 ||
        (rc = vt__bool(root, "", "keep_best", &s->keep_best)) < 0 ||
        (rc = vt__str(root, "", "output", 0, &s->output)) < 0 ||
        (rc = vt__bool(root, "", "overwrite", &s->overwrite)) < 0)
        return rc;
    /* Only the group's and others' bits, 0..63: one of the owner's would
     * lock the owner out of the outputs.  The range check says so too, or
     * "0 to 511" would send the user to values refused next. */
    if (vt__int(root, "", "umask", 0, 0777, &mask) < 0)
        return vt_error_set(VT_EINVAL, "umask must be an integer from 0 to 63, a decimal "
                            "number: 18 for a shell's 022, 63 for 077");
    if (mask > 0 && (mask & 0700))
        return vt_error_set(VT_EINVAL, "umask %lld (octal %03llo) would take the owner's own "
                            "permissions away; it is a decimal number from 0 to 63: 18 for "
                            "a shell's 022, 63 for 077", mask, mask);
    s->umask = (int)mask;
    if (!s->output)
        return vt_error_set(VT_EINVAL, "output is required (the directory for the model "
                            "and metrics)");
    if ((s->keep_best || s->patience) && !s->val_dir && s->val_split <= 0)
        return vt_error_set(VT_EINVAL, "%s needs validation data (data.val or data.val_split)",
                            s->keep_best ? "keep_best" : "early_stopping.patience");
    if (s->schedule == VT_SCHED_COSINE && s->min_lr > s->lr)
        return vt_error_set(VT_EINVAL, "optimizer.schedule.min_lr (%g) must not exceed "
                            "optimizer.lr (%g): cosine decays from lr down to min_lr",
                            s->min_lr, s->lr);
    s->epochs = (int)epochs;
    s->batch_size = (int)batch;
    s->seed = (uint64_t)seed;
    s->precision = (vt_precision)prec;
    return 0;
}

#define VT__MAX_FIELDS 64 /* fields of one object of a job document, at most */

/* vt_jobspec_check_unique below o, whose path is prefix ("" at the top). */
static int vt__unique(const cJSON *o, const char *prefix)
{
    char path[256];
    int rc, i = 0;
    /* (the pairwise check stays cheap: no object of a job document has
     * more than a few dozen fields, and the daemon runs this on its loop) */
    if (cJSON_IsObject(o) && cJSON_GetArraySize(o) > VT__MAX_FIELDS)
        return vt_error_set(VT_EINVAL, "%s has %d fields; no object of a job document has "
                            "more than %d", prefix[0] ? prefix : "the job document",
                            cJSON_GetArraySize(o), VT__MAX_FIELDS);
    for (const cJSON *a = o->child; a; a = a->next, i++) {
        if (cJSON_IsObject(o) && a->string) {
            for (const cJSON *b = a->next; b; b = b->next)
                if (b->string && strcmp(a->string, b->string) == 0)
                    return vt_error_set(VT_EINVAL, "%s%s%s appears twice in the job document",
                                        prefix, prefix[0] ? "." : "", a->string);
        }
        if (cJSON_IsObject(a) || cJSON_IsArray(a)) {
            if (cJSON_IsArray(o))
                snprintf(path, sizeof path, "%s[%d]", prefix, i);
            else
                snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", a->string);
            if ((rc = vt__unique(a, path)) < 0)
                return rc;
        }
    }
    return 0;
}

int vt_jobspec_check_unique(const cJSON *root) { return vt__unique(root, ""); }

int vt_jobspec_parse_json(struct cJSON **root, const char *json, size_t len)
{
    const char *end = NULL, *p;
    int line = 1;

    if (!(*root = cJSON_ParseWithLengthOpts(json, len, &end, 0))) {
        long off = end && end >= json && end <= json + len ? (long)(end - json) : -1;
        return vt_error_set(VT_EINVAL, "the job document is not valid JSON (near byte %ld)",
                            off);
    }
    p = end;
    while (p < json + len && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    if (p == json + len)
        return 0;
    /* A second document or a stray paste would otherwise be dropped unseen. */
    for (const char *q = json; q < p; q++)
        line += *q == '\n';
    cJSON_Delete(*root);
    *root = NULL;
    return vt_error_set(VT_EINVAL, "the job document goes on after its end, at line %d "
                        "(byte %ld): give one JSON object and nothing after it",
                        line, (long)(p - json));
}

int vt_jobspec_parse(vt_jobspec *s, const char *json, size_t len)
{
    cJSON *root;
    int rc;

    vt_jobspec_defaults(s);
    if ((rc = vt_jobspec_parse_json(&root, json, len)) < 0)
        return rc;
    if (!cJSON_IsObject(root))
        rc = vt_error_set(VT_EINVAL, "the job document must be a JSON object");
    else if ((rc = vt_jobspec_check_unique(root)) == 0)
        rc = vt__parse_root(s, root);
    cJSON_Delete(root);
    if (rc < 0)
        vt_jobspec_free(s);
    return rc;
}

/* ---- printing ---------------------------------------------------------- */

static cJSON *vt__str_or_null(const char *s)
{
    return s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

char *vt_jobspec_to_json(const vt_jobspec *s)
{
    static const char *const sched[] = {"none", "step", "cosine"};
    static const char *const prec[] = {"auto", "fp32", "bf16"};
    cJSON *r = cJSON_CreateObject(), *d, *h, *o, *sc, *a, *e;
    char *out = NULL;

    if (!r)
        return NULL;
    cJSON_AddStringToObject(r, "name", s->name);
    if (s->trainable_blocks == 0 || s->trainable_blocks == 1 || s->trainable_blocks == 5)
        cJSON_AddStringToObject(r, "mode", vt_jobspec_mode_name(s->trainable_blocks));
    cJSON_AddNumberToObject(r, "trainable_blocks", s->trainable_blocks);
    d = cJSON_AddObjectToObject(r, "data");
    if (d) {
        cJSON_AddItemToObject(d, "train", vt__str_or_null(s->train_dir));
        cJSON_AddItemToObject(d, "val", vt__str_or_null(s->val_dir));
        cJSON_AddNumberToObject(d, "val_split", s->val_split);
        cJSON_AddNumberToObject(d, "image_size", s->image_size);
        cJSON_AddStringToObject(d, "preprocess", s->preprocess < 0 ? "auto"
                                : s->preprocess == 1 ? "caffe" : "torch");
        cJSON_AddBoolToObject(d, "shuffle", s->shuffle);
    }
    cJSON_AddItemToObject(r, "weights", vt__str_or_null(s->weights));
    /* init_job alone: the daemon resolves it to init (vt_jobs_init_model) */
    if (s->init_job)
        cJSON_AddNumberToObject(r, "init_job", (double)s->init_job);
    else
        cJSON_AddItemToObject(r, "init", vt__str_or_null(s->init));
    h = cJSON_AddObjectToObject(r, "head");
    /* (a layout the init model is to give is left out: read back, the mode's
     * default would conflict with it) */
    if (h && (s->head_given || (!s->init && !s->init_job))) {
        cJSON *dense = cJSON_AddArrayToObject(h, "dense");
        for (int i = 0; dense && i < s->nhidden; i++)
            cJSON_AddItemToArray(dense, cJSON_CreateNumber(s->hidden[i]));
    }
    if (h)
        cJSON_AddNumberToObject(h, "dropout", s->dropout);
    o = cJSON_AddObjectToObject(r, "optimizer");
    if (o) {
        cJSON_AddNumberToObject(o, "lr", s->lr);
        cJSON_AddNumberToObject(o, "momentum", s->momentum);
        cJSON_AddBoolToObject(o, "nesterov", s->nesterov);
        cJSON_AddNumberToObject(o, "decay", s->decay);
        cJSON_AddNumberToObject(o, "weight_decay", s->weight_decay);
        sc = cJSON_AddObjectToObject(o, "schedule");
        if (sc) {
            cJSON_AddStringToObject(sc, "type", sched[s->schedule]);
            cJSON_AddNumberToObject(sc, "step_epochs", s->step_epochs);
            cJSON_AddNumberToObject(sc, "gamma", s->gamma);
            cJSON_AddNumberToObject(sc, "min_lr", s->min_lr);
        }
    }
    a = cJSON_AddObjectToObject(r, "augment");
    if (a) {
        cJSON_AddBoolToObject(a, "flip", s->flip);
        cJSON_AddNumberToObject(a, "crop", s->crop);
    }
    cJSON_AddNumberToObject(r, "epochs", s->epochs);
    cJSON_AddNumberToObject(r, "batch_size", s->batch_size);
    cJSON_AddNumberToObject(r, "seed", (double)s->seed);
    cJSON_AddStringToObject(r, "precision", prec[s->precision]);
    cJSON_AddBoolToObject(r, "keep_best", s->keep_best);
    e = cJSON_AddObjectToObject(r, "early_stopping");
    if (e) {
        cJSON_AddNumberToObject(e, "patience", s->patience);
        cJSON_AddNumberToObject(e, "min_delta", s->min_delta);
    }
    cJSON_AddItemToObject(r, "output", vt__str_or_null(s->output));
    cJSON_AddBoolToObject(r, "overwrite", s->overwrite);
    if (s->umask >= 0)
        cJSON_AddNumberToObject(r, "umask", s->umask);
    out = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return out;
}

double vt_jobspec_lr(const vt_jobspec *s, uint64_t iteration, int epoch)
{
    double lr = s->lr / (1.0 + s->decay * (double)iteration);
    switch (s->schedule) {
    case VT_SCHED_STEP:
        return lr * pow(s->gamma, (double)(epoch / s->step_epochs));
    case VT_SCHED_COSINE: {
        double ratio = s->min_lr / s->lr;
        double c = 0.5 * (1.0 + cos(M_PI * (double)epoch / (double)s->epochs));
        return lr * (ratio + (1.0 - ratio) * c);
    }
    default:
        return lr;
    }
}

/* path (absolute) without ".", ".." and repeated or trailing slashes, as
 * written; 0 or VT_EINVAL when it does not fit. */
static int vt__lexical(const char *path, char *out, size_t len)
{
    size_t n = 0;
    const char *p = path;
    if (len < 2)
        return vt_error_set(VT_EINVAL, "path too long: %s", path);
    out[0] = '\0';
    while (*p) {
        const char *e;
        while (*p == '/')
            p++;
        if (!*p)
            break;
        e = strchr(p, '/');
        size_t k = e ? (size_t)(e - p) : strlen(p);
        if (k == 2 && p[0] == '.' && p[1] == '.') {
            while (n > 0 && out[n - 1] != '/')
                n--;
            n = n > 0 ? n - 1 : 0;
        } else if (!(k == 1 && p[0] == '.')) {
            out[n++] = '/';
            if (n + k + 1 >= len)
                return vt_error_set(VT_EINVAL, "path too long: %s", path);
            memcpy(out + n, p, k);
            n += k;
        }
        out[n] = '\0';
        p += k;
    }
    if (n == 0)
        snprintf(out, len, "/");
    return 0;
}

/* path as the file system resolves its longest existing part, followed by
 * the rest as written. */
static int vt__resolve(const char *path, char *out, size_t len)
{
    char norm[PATH_MAX], head[PATH_MAX], real[PATH_MAX];
    int rc = vt__lexical(path, norm, sizeof norm);
    size_t cut = strlen(norm);
    if (rc < 0)
        return rc;
    for (;;) {
        snprintf(head, sizeof head, "%.*s", (int)cut, norm);
        if (realpath(cut ? head : "/", real)) {
            char joined[2 * PATH_MAX];
            snprintf(joined, sizeof joined, "%s/%s", real, norm + cut);
            return vt__lexical(joined, out, len);
        }
        if (cut == 0 || (errno != ENOENT && errno != ENOTDIR))
            return vt__lexical(norm, out, len); /* unreadable: as written */
        while (cut > 0 && norm[cut - 1] != '/')
            cut--;
        cut = cut > 0 ? cut - 1 : 0;
    }
}

/* Whether dir is base or below it (both resolved). */
static int vt__within(const char *dir, const char *base)
{
    size_t n = strlen(base);
    if (strcmp(base, "/") == 0)
        return 1;
    return strncmp(dir, base, n) == 0 && (dir[n] == '\0' || dir[n] == '/');
}

int vt_jobspec_check_utf8(const vt_jobspec *s)
{
    const struct { const char *field, *text; } texts[] = {
        {"name", s->name},         {"data.train", s->train_dir}, {"data.val", s->val_dir},
        {"weights", s->weights},   {"init", s->init},            {"output", s->output},
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        const char *t = texts[i].text;
        if (t && !vt_utf8_valid((const uint8_t *)t, strlen(t)))
            return vt_error_set(VT_EINVAL, "%s is not valid UTF-8: the job document is "
                                "recorded in the model, which takes only UTF-8; rename it",
                                texts[i].field);
    }
    return 0;
}

/* Refuses an output path that the job's files could not be opened below,
 * as written (the kernel measures that, not the resolved path): too long
 * for PATH_MAX once they are added, or with a name over NAME_MAX bytes. */
static int vt__check_output_length(const char *out)
{
    const int most = PATH_MAX - 1 - VT_OUTPUT_SUFFIX_MAX;
    size_t n = strlen(out), k;
    if (n > (size_t)most)
        return vt_error_set(VT_EINVAL, "output is %zu bytes long, over the %d bytes an "
                            "output directory may have: a path may have at most %d, and the "
                            "job's files go up to %d bytes below it; give a shorter directory",
                            n, most, PATH_MAX - 1, VT_OUTPUT_SUFFIX_MAX);
    for (const char *p = out; *p; p += k + (p[k] == '/')) {
        k = strcspn(p, "/");
        if (k > NAME_MAX)
            return vt_error_set(VT_EINVAL, "output has a name longer than the file system "
                                "allows: %.40s... is %zu bytes, at most %d; shorten that "
                                "name", p, k, NAME_MAX);
    }
    return 0;
}

int vt_jobspec_check_output(const vt_jobspec *s)
{
    const char *fields[] = {"data.train", "data.val"};
    const char *dirs[] = {s->train_dir, s->val_dir};
    char out[PATH_MAX], data[PATH_MAX];
    int rc;
    if (!s->output)
        return 0;
    if ((rc = vt__check_output_length(s->output)) < 0 ||
        (rc = vt__resolve(s->output, out, sizeof out)) < 0)
        return rc;
    for (int i = 0; i < 2; i++) {
        if (!dirs[i])
            continue;
        if ((rc = vt__resolve(dirs[i], data, sizeof data)) < 0)
            return rc;
        if (vt__within(out, data))
            return vt_error_set(VT_EINVAL, "output %s is %s %s: its files would be read as "
                                "one more class; give an output directory outside the data",
                                s->output, strcmp(out, data) == 0 ? "the same directory as"
                                                                  : "inside", fields[i]);
    }
    return 0;
}

static int vt__abs(char **p, const char *cwd)
{
    char *n;
    if (!*p || (*p)[0] == '/')
        return 0;
    if (!(n = malloc(strlen(cwd) + strlen(*p) + 2)))
        return vt_error_set(VT_ENOMEM, "out of memory");
    sprintf(n, "%s/%s", cwd, *p);
    free(*p);
    *p = n;
    return 0;
}

int vt_jobspec_absolutize(vt_jobspec *s, const char *cwd)
{
    int rc;
    if ((rc = vt__abs(&s->train_dir, cwd)) < 0 || (rc = vt__abs(&s->val_dir, cwd)) < 0 ||
        (rc = vt__abs(&s->weights, cwd)) < 0 || (rc = vt__abs(&s->init, cwd)) < 0 ||
        (rc = vt__abs(&s->output, cwd)) < 0)
        return rc;
    return 0;
}

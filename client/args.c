/* args.c - vggtune's option parser and the submit command's job document
 * (see cli.h).
 *
 * submit builds the same JSON document that `vggtuned run` reads: a --spec
 * file if given, then every flag written over its field, whatever the order
 * on the command line.  Two flags that say different things about one
 * setting (--val and --val-split, say) are refused rather than letting the
 * later one silently win.  The result is checked with the engine's own
 * vt_jobspec_parse, so a bad value is refused here, naming the flag, before
 * the daemon is contacted; the document is then sent as the user wrote it
 * (the daemon fills the defaults), with every path made absolute because
 * the daemon does not share our working directory.
 */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "../common/error.h"
#include "../common/fileio.h"
#include "../common/text.h"
#include "../engine/jobspec.h"
#include "../engine/safetensors.h"
#include "../engine/vgg.h"
#include "../engine/wfile.h"
#include "../engine/writer.h"

#define VT__SPEC_MAX ((size_t)1 << 20)

/* ---- option parser ----------------------------------------------------- */

void vt_cli_args_init(vt_cli_args *a, int argc, char **argv, int first)
{
    a->argc = argc;
    a->argv = argv;
    a->i = first;
    a->only_pos = 0;
}

/* The value of option `opt` (as written) from the next argument: one that
 * is itself a long option ("--epochs --lr 0.1") means the value was left
 * out.  0, or VT_EINVAL saying so. */
static int vt__value(vt_cli_args *a, const char *opt, const char **val)
{
    const char *next = a->i < a->argc ? a->argv[a->i] : NULL;
    if (!next)
        return vt_error_set(VT_EINVAL, "%s needs a value", opt);
    if (next[0] == '-' && next[1] == '-' && next[2])
        return vt_error_set(VT_EINVAL, "%s needs a value (the next argument is the option "
                            "'%s'; write %s=VALUE for a value that starts with --)", opt, next,
                            opt);
    *val = next;
    a->i++;
    return 0;
}

int vt_cli_next(vt_cli_args *a, const vt_cli_opt *opts, const char **val)
{
    const vt_cli_opt *o;
    const char *s, *name, *eq;
    char opt[80];
    size_t n;

    for (;;) {
        if (a->i >= a->argc)
            return VT_CLI_END;
        s = a->argv[a->i++];
        if (a->only_pos || s[0] != '-' || s[1] == '\0') { /* "-" is a name too */
            *val = s;
            return 0;
        }
        if (strcmp(s, "--") != 0)
            break;
        a->only_pos = 1;
    }
    if (s[1] == '-') {
        name = s + 2;
        eq = strchr(name, '=');
        n = eq ? (size_t)(eq - name) : strlen(name);
        for (o = opts; o->name; o++)
            if (strlen(o->name) == n && strncmp(o->name, name, n) == 0)
                break;
        if (!o->name)
            return vt_error_set(VT_EINVAL, "unknown option '--%.*s'", (int)n, name);
        if (!o->has_arg && eq)
            return vt_error_set(VT_EINVAL, "--%s takes no value", o->name);
        snprintf(opt, sizeof opt, "--%s", o->name);
        if (o->has_arg && eq)
            *val = eq + 1;
        else if (o->has_arg && vt__value(a, opt, val) < 0)
            return VT_EINVAL;
        return o->id;
    }
    for (o = opts; o->name; o++)
        if (o->short_name && o->short_name == s[1])
            break;
    if (!o->name)
        return vt_error_set(VT_EINVAL, "unknown option '%s'", s);
    if (!o->has_arg) {
        if (s[2])
            return vt_error_set(VT_EINVAL, "unknown option '%s' (write short options "
                                "separately)", s);
        return o->id;
    }
    snprintf(opt, sizeof opt, "-%c", o->short_name);
    if (s[2])
        *val = s + 2;
    else if (vt__value(a, opt, val) < 0)
        return VT_EINVAL;
    return o->id;
}

int vt_cli_parse_int(const char *opt, const char *text, long long *out)
{
    char *end;
    long long v;
    errno = 0;
    v = strtoll(text, &end, 10);
    if (!*text || *end || errno)
        return vt_error_set(VT_EINVAL, "%s: '%s' is not an integer", opt, text);
    *out = v;
    return 0;
}

int vt_cli_parse_num(const char *opt, const char *text, double *out)
{
    char *end;
    double v;
    errno = 0;
    v = strtod(text, &end);
    if (!*text || *end || errno || !isfinite(v))
        return vt_error_set(VT_EINVAL, "%s: '%s' is not a number", opt, text);
    *out = v;
    return 0;
}

char *vt_cli_abspath(const char *cwd, const char *path)
{
    size_t n = strlen(cwd) + strlen(path) + 3, o = 0;
    char *joined = malloc(n), *out = malloc(n), *seg, *save = NULL;

    if (!joined || !out) {
        free(joined);
        free(out);
        return NULL;
    }
    snprintf(joined, n, "%s/%s", path[0] == '/' ? "" : cwd, path);
    for (seg = strtok_r(joined, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
        if (strcmp(seg, ".") == 0)
            continue;
        if (strcmp(seg, "..") == 0) { /* drop the last segment; "/.." is "/" */
            while (o > 0 && out[--o] != '/')
                ;
            out[o] = '\0';
            continue;
        }
        o += (size_t)snprintf(out + o, n - o, "/%s", seg);
    }
    if (!o)
        snprintf(out, n, "/");
    free(joined);
    return out;
}

/* ---- the job document -------------------------------------------------- */

enum {
    O_HELP = 1, O_JSON, O_SOCKET, O_SPEC, O_DATA, O_VAL, O_VAL_SPLIT, O_MODE, O_TB,
    O_EPOCHS, O_BATCH, O_LR, O_IMAGE_SIZE, O_PREPROCESS, O_WEIGHTS, O_INIT, O_INIT_HEAD,
    O_NAME, O_OUT, O_SEED, O_PRECISION, O_DROPOUT, O_DENSE, O_FLIP, O_CROP, O_KEEP_BEST,
    O_PATIENCE, O_SCHEDULE, O_WEIGHT_DECAY, O_MOMENTUM, O_OVERWRITE, O_WATCH, O_DRY_RUN, O__COUNT
};

static const vt_cli_opt vt__submit_opts[] = {
    {"help", 'h', 0, O_HELP},
    {"json", 0, 0, O_JSON},
    {"socket", 0, 1, O_SOCKET},
    {"spec", 0, 1, O_SPEC},
    {"data", 'd', 1, O_DATA},
    {"val", 0, 1, O_VAL},
    {"val-split", 0, 1, O_VAL_SPLIT},
    {"mode", 'm', 1, O_MODE},
    {"trainable-blocks", 0, 1, O_TB},
    {"epochs", 'e', 1, O_EPOCHS},
    {"batch-size", 'b', 1, O_BATCH},
    {"lr", 0, 1, O_LR},
    {"image-size", 0, 1, O_IMAGE_SIZE},
    {"preprocess", 0, 1, O_PREPROCESS},
    {"weights", 0, 1, O_WEIGHTS},
    {"init", 0, 1, O_INIT},
    {"init-head", 0, 1, O_INIT_HEAD},
    {"name", 'n', 1, O_NAME},
    {"out", 'o', 1, O_OUT},
    {"seed", 0, 1, O_SEED},
    {"precision", 0, 1, O_PRECISION},
    {"dropout", 0, 1, O_DROPOUT},
    {"dense", 0, 1, O_DENSE},
    {"flip", 0, 0, O_FLIP},
    {"crop", 0, 1, O_CROP},
    {"keep-best", 0, 0, O_KEEP_BEST},
    {"patience", 0, 1, O_PATIENCE},
    {"schedule", 0, 1, O_SCHEDULE},
    {"weight-decay", 0, 1, O_WEIGHT_DECAY},
    {"momentum", 0, 1, O_MOMENTUM},
    {"overwrite", 0, 0, O_OVERWRITE},
    {"watch", 'w', 0, O_WATCH},
    {"dry-run", 0, 0, O_DRY_RUN},
    {NULL, 0, 0, 0},
};

/* Which flag sets which field of the document, for error messages: the
 * engine's messages start with the field's path. */
static const struct {
    const char *field;
    int opt;
} vt__field_flags[] = {
    {"data.train", O_DATA}, {"data.val_split", O_VAL_SPLIT}, {"data.val", O_VAL},
    {"data.image_size", O_IMAGE_SIZE}, {"data.preprocess", O_PREPROCESS},
    {"mode", O_MODE}, {"trainable_blocks", O_TB}, {"epochs", O_EPOCHS},
    {"batch_size", O_BATCH}, {"optimizer.lr", O_LR}, {"optimizer.schedule", O_SCHEDULE},
    {"weights", O_WEIGHTS}, {"init_job", O_INIT_HEAD}, {"init", O_INIT}, {"name", O_NAME},
    {"output", O_OUT}, {"seed", O_SEED}, {"precision", O_PRECISION},
    {"head.dropout", O_DROPOUT}, {"head.dense", O_DENSE}, {"augment.flip", O_FLIP},
    {"augment.crop", O_CROP}, {"keep_best", O_KEEP_BEST},
    {"early_stopping.patience", O_PATIENCE}, {"optimizer.weight_decay", O_WEIGHT_DECAY},
    {"optimizer.momentum", O_MOMENTUM}, {"overwrite", O_OVERWRITE},
};

static const char *vt__opt_name(int id)
{
    for (const vt_cli_opt *o = vt__submit_opts; o->name; o++)
        if (o->id == id)
            return o->name;
    return "?";
}

/* The object at doc[key], created (or replacing a non-object) when absent. */
static cJSON *vt__section(cJSON *doc, const char *key)
{
    cJSON *s = cJSON_GetObjectItemCaseSensitive(doc, key);
    if (cJSON_IsObject(s))
        return s;
    cJSON_DeleteItemFromObjectCaseSensitive(doc, key);
    return cJSON_AddObjectToObject(doc, key);
}

/* Sets section.key (section NULL: the top level) to v (consumed). */
static int vt__set(cJSON *doc, const char *section, const char *key, cJSON *v)
{
    cJSON *obj = section ? vt__section(doc, section) : doc;
    if (!obj || !v) {
        cJSON_Delete(v);
        return vt_error_set(VT_ENOMEM, "out of memory");
    }
    cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
    if (!cJSON_AddItemToObject(obj, key, v)) {
        cJSON_Delete(v);
        return vt_error_set(VT_ENOMEM, "out of memory");
    }
    return 0;
}

static void vt__unset(cJSON *doc, const char *section, const char *key)
{
    cJSON *obj = section ? cJSON_GetObjectItemCaseSensitive(doc, section) : doc;
    if (cJSON_IsObject(obj))
        cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
}

static const char *vt__get_str(const cJSON *doc, const char *section, const char *key)
{
    const cJSON *obj = section ? cJSON_GetObjectItemCaseSensitive(doc, section) : doc;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* "1024,128" -> [1024, 128]; "none" or "" -> []. */
static int vt__dense(const char *text, cJSON **out)
{
    cJSON *arr = cJSON_CreateArray();
    const char *p = text;

    if (!arr)
        return vt_error_set(VT_ENOMEM, "out of memory");
    if (strcmp(text, "none") != 0 && *text) {
        for (;;) {
            char *end;
            long v;
            errno = 0;
            v = strtol(p, &end, 10);
            if (end == p || errno || (*end && *end != ',')) {
                cJSON_Delete(arr);
                return vt_error_set(VT_EINVAL, "--dense: '%s' is not a list of layer widths "
                                    "like 1024,128 (or 'none')", text);
            }
            cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)v));
            if (!*end)
                break;
            p = end + 1;
        }
    }
    *out = arr;
    return 0;
}

/* --schedule TYPE[:P[:Q]] over the document: step:EPOCHS[:GAMMA] or
 * cosine:MIN_LR set the schedule's parameters too; TYPE alone keeps those
 * of a --spec file.  The engine checks the type and the ranges. */
static int vt__schedule(cJSON *doc, const char *val)
{
    static const char usage[] = "--schedule: '%s' is not a schedule: none, step, "
                                "step:EPOCHS[:GAMMA], cosine or cosine:MIN_LR";
    const char *colon = strchr(val, ':');
    char *p1, *p2;
    cJSON *sch;
    long long epochs = 0; /* 0 only for -O2's -Wmaybe-uninitialized: read after parsing */
    double v;
    int rc = 0;

    if (!colon) {
        cJSON *opt = cJSON_GetObjectItemCaseSensitive(doc, "optimizer");
        sch = cJSON_GetObjectItemCaseSensitive(opt, "schedule");
        if (cJSON_IsObject(sch)) /* keep its step_epochs, gamma, min_lr */
            return vt__set(sch, NULL, "type", cJSON_CreateString(val));
        return vt__set(doc, "optimizer", "schedule", cJSON_CreateString(val));
    }
    if (!(p1 = strdup(colon + 1)) || !(sch = cJSON_CreateObject())) {
        free(p1);
        return vt_error_set(VT_ENOMEM, "out of memory");
    }
    if ((p2 = strchr(p1, ':')))
        *p2++ = '\0';
    if ((size_t)(colon - val) == 4 && !strncmp(val, "step", 4)) {
        cJSON_AddStringToObject(sch, "type", "step");
        if ((rc = vt_cli_parse_int("--schedule step:EPOCHS", p1, &epochs)) == 0)
            cJSON_AddNumberToObject(sch, "step_epochs", (double)epochs);
        if (rc == 0 && p2 && (rc = vt_cli_parse_num("--schedule step:EPOCHS:GAMMA", p2, &v)) == 0)
            cJSON_AddNumberToObject(sch, "gamma", v);
    } else if ((size_t)(colon - val) == 6 && !strncmp(val, "cosine", 6) && !p2) {
        cJSON_AddStringToObject(sch, "type", "cosine");
        if ((rc = vt_cli_parse_num("--schedule cosine:MIN_LR", p1, &v)) == 0)
            cJSON_AddNumberToObject(sch, "min_lr", v);
    } else {
        rc = vt_error_set(VT_EINVAL, usage, val);
    }
    free(p1);
    if (rc < 0) {
        cJSON_Delete(sch);
        return rc;
    }
    return vt__set(doc, "optimizer", "schedule", sch);
}

/* Writes one flag over the document. */
static int vt__apply(cJSON *doc, int id, const char *val)
{
    char flag[64];
    long long i = 0;
    double d = 0;
    int rc;

    snprintf(flag, sizeof flag, "--%s", vt__opt_name(id));
    switch (id) {
    case O_TB: case O_EPOCHS: case O_BATCH: case O_IMAGE_SIZE: case O_INIT_HEAD:
    case O_SEED: case O_PATIENCE:
        if ((rc = vt_cli_parse_int(flag, val, &i)) < 0)
            return rc;
        break;
    case O_VAL_SPLIT: case O_LR: case O_DROPOUT: case O_CROP: case O_WEIGHT_DECAY:
    case O_MOMENTUM:
        if ((rc = vt_cli_parse_num(flag, val, &d)) < 0)
            return rc;
        break;
    default:
        break;
    }
    switch (id) {
    case O_DATA: return vt__set(doc, "data", "train", cJSON_CreateString(val));
    case O_VAL:
        vt__unset(doc, "data", "val_split");
        return vt__set(doc, "data", "val", cJSON_CreateString(val));
    case O_VAL_SPLIT:
        vt__unset(doc, "data", "val");
        return vt__set(doc, "data", "val_split", cJSON_CreateNumber(d));
    case O_IMAGE_SIZE: return vt__set(doc, "data", "image_size", cJSON_CreateNumber((double)i));
    case O_PREPROCESS: return vt__set(doc, "data", "preprocess", cJSON_CreateString(val));
    case O_MODE: /* the two say the same thing: the flag wins over the file */
        vt__unset(doc, NULL, "trainable_blocks");
        return vt__set(doc, NULL, "mode", cJSON_CreateString(val));
    case O_TB:
        vt__unset(doc, NULL, "mode");
        return vt__set(doc, NULL, "trainable_blocks", cJSON_CreateNumber((double)i));
    case O_EPOCHS: return vt__set(doc, NULL, "epochs", cJSON_CreateNumber((double)i));
    case O_BATCH: return vt__set(doc, NULL, "batch_size", cJSON_CreateNumber((double)i));
    case O_LR: return vt__set(doc, "optimizer", "lr", cJSON_CreateNumber(d));
    case O_WEIGHT_DECAY:
        return vt__set(doc, "optimizer", "weight_decay", cJSON_CreateNumber(d));
    case O_MOMENTUM: return vt__set(doc, "optimizer", "momentum", cJSON_CreateNumber(d));
    case O_SCHEDULE: return vt__schedule(doc, val);
    case O_WEIGHTS: return vt__set(doc, NULL, "weights", cJSON_CreateString(val));
    case O_INIT:
        vt__unset(doc, NULL, "init_job");
        return vt__set(doc, NULL, "init", cJSON_CreateString(val));
    case O_INIT_HEAD:
        vt__unset(doc, NULL, "init");
        return vt__set(doc, NULL, "init_job", cJSON_CreateNumber((double)i));
    case O_NAME: return vt__set(doc, NULL, "name", cJSON_CreateString(val));
    case O_OUT: return vt__set(doc, NULL, "output", cJSON_CreateString(val));
    case O_SEED: return vt__set(doc, NULL, "seed", cJSON_CreateNumber((double)i));
    case O_PRECISION: return vt__set(doc, NULL, "precision", cJSON_CreateString(val));
    case O_DROPOUT: return vt__set(doc, "head", "dropout", cJSON_CreateNumber(d));
    case O_DENSE: {
        cJSON *arr = NULL;
        if ((rc = vt__dense(val, &arr)) < 0)
            return rc;
        return vt__set(doc, "head", "dense", arr);
    }
    case O_FLIP: return vt__set(doc, "augment", "flip", cJSON_CreateTrue());
    case O_CROP: return vt__set(doc, "augment", "crop", cJSON_CreateNumber(d));
    case O_KEEP_BEST: return vt__set(doc, NULL, "keep_best", cJSON_CreateTrue());
    case O_OVERWRITE: return vt__set(doc, NULL, "overwrite", cJSON_CreateTrue());
    case O_PATIENCE:
        return vt__set(doc, "early_stopping", "patience", cJSON_CreateNumber((double)i));
    default:
        return 0;
    }
}

/* A job name from the training directory (relative to cwd): its last
 * component, or its parent's when that is a generic "train"
 * (~/flowers/train -> flowers; "." in ~/flowers -> flowers). */
static void vt__default_name(const char *cwd, const char *train, char *name, size_t len)
{
    char *abs = vt_cli_abspath(cwd, train), *last, *parent;
    size_t n;

    snprintf(name, len, "job");
    if (!abs)
        return;
    last = strrchr(abs, '/');
    if (last && last[1] && (strcasecmp(last + 1, "train") == 0 ||
                            strcasecmp(last + 1, "training") == 0) && last > abs) {
        *last = '\0';
        parent = strrchr(abs, '/');
        last = parent;
    }
    if (last && last[1])
        snprintf(name, len, "%s", last + 1);
    free(abs);
    n = strlen(name);
    for (size_t i = 0; i < n; i++) /* the names the engine accepts */
        if ((unsigned char)name[i] < 0x20 || name[i] == '/')
            name[i] = '_';
}

/* cwd/runs/NAME, or NAME-2, NAME-3... when that exists already. */
static char *vt__default_output(const char *cwd, const char *name)
{
    struct stat st;
    size_t n = strlen(cwd) + strlen(name) + 32;
    char *out = malloc(n), *abs;

    if (!out)
        return NULL;
    for (int k = 1; k < 10000; k++) {
        if (k == 1)
            snprintf(out, n, "runs/%s", name);
        else
            snprintf(out, n, "runs/%s-%d", name, k);
        if (!(abs = vt_cli_abspath(cwd, out)))
            break;
        if (lstat(abs, &st) < 0 && errno == ENOENT) {
            free(out);
            return abs;
        }
        free(abs);
    }
    free(out);
    return NULL;
}

/* Makes section.key absolute when it is a string. */
static int vt__absolutize(cJSON *doc, const char *section, const char *key, const char *cwd)
{
    const char *p = vt__get_str(doc, section, key);
    char *abs;
    if (!p)
        return 0;
    if (!(abs = vt_cli_abspath(cwd, p)))
        return vt_error_set(VT_ENOMEM, "out of memory");
    vt__set(doc, section, key, cJSON_CreateString(abs));
    free(abs);
    return 0;
}

/* Appends which flag (or the spec file) a jobspec message is about. */
static int vt__hint(int rc, const int *given, const char *spec_path)
{
    const char *msg = vt_error_msg();
    char copy[1024];

    snprintf(copy, sizeof copy, "%s", msg);
    for (size_t k = 0; k < sizeof vt__field_flags / sizeof vt__field_flags[0]; k++) {
        size_t n = strlen(vt__field_flags[k].field);
        int id = vt__field_flags[k].opt;
        if (strncmp(copy, vt__field_flags[k].field, n) != 0 || !strchr(" .[", copy[n]))
            continue;
        if (given[id] || !spec_path)
            return vt_error_set(rc, "%s (--%s)", copy, vt__opt_name(id));
        return vt_error_set(rc, "%s (in %s)", copy, spec_path);
    }
    if (spec_path)
        return vt_error_set(rc, "%s: %s", spec_path, copy);
    return rc;
}

/* Refuses two flags that set one thing in different words: whichever came
 * last would otherwise win without a word about the other.  last[id] is the
 * value of the last flag with that id (of those that take one), NULL when
 * absent.  A flag over a --spec field is not a conflict: that is what flags
 * are for. */
static int vt__conflicts(const char *const *last)
{
    static const int pairs[][2] = {{O_VAL, O_VAL_SPLIT}, {O_INIT, O_INIT_HEAD}};
    static const int mode_blocks[] = {0, 1, 5}; /* the trainable_blocks of each mode */
    long long tb = 0;
    int rc;

    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++)
        if (last[pairs[k][0]] && last[pairs[k][1]])
            return vt_error_set(VT_EINVAL, "give --%s or --%s, not both",
                                vt__opt_name(pairs[k][0]), vt__opt_name(pairs[k][1]));
    if (!last[O_MODE] || !last[O_TB])
        return 0;
    if ((rc = vt_cli_parse_int("--trainable-blocks", last[O_TB], &tb)) < 0)
        return rc;
    for (size_t k = 0; k < sizeof mode_blocks / sizeof mode_blocks[0]; k++) {
        if (strcmp(last[O_MODE], vt_jobspec_mode_name(mode_blocks[k])) != 0)
            continue;
        if (tb != mode_blocks[k])
            return vt_error_set(VT_EINVAL, "--mode %s means --trainable-blocks %d, but "
                                "--trainable-blocks is %lld: give one or the other",
                                last[O_MODE], mode_blocks[k], tb);
        return 0;
    }
    /* Said here because --trainable-blocks replaces the mode in the document,
     * so the job check would never see it; in the job check's words. */
    return vt_error_set(VT_EINVAL, "mode must be one of: %s, %s, %s (--mode)",
                        vt_jobspec_mode_name(mode_blocks[0]),
                        vt_jobspec_mode_name(mode_blocks[1]),
                        vt_jobspec_mode_name(mode_blocks[2]));
}

/* Reads the --spec file into *doc.  A file that cannot be read is a mistake
 * on the command line (VT_EINVAL, a usage error) like one that does not
 * parse; only running out of memory is not. */
static int vt__read_spec(const char *path, const char *cwd, cJSON **doc)
{
    char *abs = vt_cli_abspath(cwd, path);
    uint8_t *text = NULL;
    size_t len = 0;
    int rc;

    if (!abs)
        return vt_error_set(VT_ENOMEM, "out of memory");
    rc = vt_read_file(abs, VT__SPEC_MAX, &text, &len);
    free(abs);
    if (rc < 0)
        return vt_error_wrap(rc == VT_ENOMEM ? rc : VT_EINVAL, "--spec");
    rc = vt_jobspec_parse_json(doc, (const char *)text, len);
    free(text);
    if (rc < 0)
        return vt_error_wrap(rc, "--spec %s", path);
    if (!cJSON_IsObject(*doc)) {
        cJSON_Delete(*doc);
        *doc = NULL;
        return vt_error_set(VT_EINVAL, "--spec %s must hold a JSON object", path);
    }
    if ((rc = vt_jobspec_check_unique(*doc)) < 0) { /* before flags replace one of them */
        cJSON_Delete(*doc);
        *doc = NULL;
        return vt_error_wrap(rc, "--spec %s", path);
    }
    return 0;
}

void vt_cli_submit_free(vt_cli_submit *s)
{
    cJSON_Delete(s->doc);
    s->doc = NULL;
}

int vt_cli_submit_parse(vt_cli_submit *s, vt_cli *cli, int argc, char **argv, int first)
{
    struct { int id; const char *val; } *flags = NULL;
    int given[O__COUNT] = {0}, nflags = 0, id, rc = 0;
    const char *spec_path = NULL, *val = NULL, *last[O__COUNT] = {0};
    vt_cli_args a;
    char *text = NULL, name[128];
    vt_jobspec spec;

    memset(s, 0, sizeof *s);
    if (!(flags = calloc((size_t)argc + 1, sizeof *flags)))
        return vt_error_set(VT_ENOMEM, "out of memory");
    vt_cli_args_init(&a, argc, argv, first);
    while ((id = vt_cli_next(&a, vt__submit_opts, &val)) != VT_CLI_END) {
        switch (id) {
        case 0:
            rc = vt_error_set(VT_EINVAL, "unexpected argument '%s' (give the data with "
                              "--data DIR)", val);
            goto done;
        case O_HELP: s->help = 1; goto done;
        case O_JSON: cli->json = 1; break;
        case O_SOCKET: cli->socket = val; break;
        case O_SPEC: spec_path = val; break;
        case O_WATCH: s->watch = 1; break;
        case O_DRY_RUN: s->dry_run = 1; break;
        default:
            if (id < 0) {
                rc = id;
                goto done;
            }
            given[id] = 1;
            last[id] = val;
            flags[nflags].id = id;
            flags[nflags++].val = val;
        }
    }
    if ((rc = vt__conflicts(last)) < 0)
        goto done;
    if (spec_path) {
        if ((rc = vt__read_spec(spec_path, cli->cwd, &s->doc)) < 0)
            goto done;
    } else if (!(s->doc = cJSON_CreateObject())) {
        rc = vt_error_set(VT_ENOMEM, "out of memory");
        goto done;
    }
    for (int k = 0; k < nflags; k++)
        if ((rc = vt__apply(s->doc, flags[k].id, flags[k].val)) < 0)
            goto done;
    if (!vt__get_str(s->doc, "data", "train")) {
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(s->doc, "data");
        const cJSON *train = cJSON_GetObjectItemCaseSensitive(data, "train");
        /* A --spec that has data in the wrong shape is told so, not asked
         * for a flag it may not need. */
        if (data && !cJSON_IsObject(data))
            rc = vt_error_set(VT_EINVAL, "%s: data must be an object, {\"train\": DIR, ...}",
                              spec_path ? spec_path : "the job document");
        else if (train)
            rc = vt_error_set(VT_EINVAL, "%s: data.train must be a string, the training "
                              "images' folder", spec_path ? spec_path : "the job document");
        else
            rc = vt_error_set(VT_EINVAL, "--data DIR is required: the training images, one "
                              "sub-folder per class");
        goto done;
    }
    if (!cJSON_GetObjectItemCaseSensitive(s->doc, "name")) {
        vt__default_name(cli->cwd, vt__get_str(s->doc, "data", "train"), name, sizeof name);
        vt__set(s->doc, NULL, "name", cJSON_CreateString(name));
    }
    if (!cJSON_GetObjectItemCaseSensitive(s->doc, "output") &&
        vt__get_str(s->doc, NULL, "name")) {
        char *out = vt__default_output(cli->cwd, vt__get_str(s->doc, NULL, "name"));
        if (!out) {
            rc = vt_error_set(VT_EINVAL, "cannot pick an output directory under %s/runs: "
                              "give one with --out DIR", cli->cwd);
            goto done;
        }
        vt__set(s->doc, NULL, "output", cJSON_CreateString(out));
        free(out);
    }
    if (!cJSON_GetObjectItemCaseSensitive(s->doc, "umask")) {
        /* the outputs get the permissions the user's own files would */
        mode_t mask = umask(0);
        umask(mask);
        vt__set(s->doc, NULL, "umask", cJSON_CreateNumber((double)(mask & 0777)));
    }
    if (!(text = cJSON_PrintUnformatted(s->doc))) {
        rc = vt_error_set(VT_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = vt_jobspec_parse(&spec, text, strlen(text))) < 0) {
        rc = vt__hint(rc, given, spec_path);
        goto done;
    }
    if ((rc = vt_jobspec_check_utf8(&spec)) < 0 ||
        ((rc = vt_jobspec_absolutize(&spec, cli->cwd)) == 0 &&
         (rc = vt_jobspec_check_output(&spec)) < 0))
        rc = vt__hint(rc, given, spec_path);
    vt_jobspec_free(&spec);
    if (rc < 0)
        goto done;
    if ((rc = vt__absolutize(s->doc, "data", "train", cli->cwd)) < 0 ||
        (rc = vt__absolutize(s->doc, "data", "val", cli->cwd)) < 0 ||
        (rc = vt__absolutize(s->doc, NULL, "weights", cli->cwd)) < 0 ||
        (rc = vt__absolutize(s->doc, NULL, "init", cli->cwd)) < 0 ||
        (rc = vt__absolutize(s->doc, NULL, "output", cli->cwd)) < 0)
        goto done;
done:
    free(text);
    free(flags);
    if (rc < 0)
        vt_cli_submit_free(s);
    return rc;
}

/* Checks that path (from flag) is an existing directory (dir) or file. */
static int vt__check_path(const char *path, const char *flag, int dir)
{
    struct stat st;
    if (!path)
        return 0;
    if (stat(path, &st) < 0) {
        if (errno == EACCES)
            return vt_error_set(VT_EPERM, "%s %s: permission denied", flag, path);
        return vt_error_set(VT_ENOTFOUND, "%s %s: %s", flag, path,
                            errno == ENOENT ? (dir ? "no such directory" : "no such file")
                                            : strerror(errno));
    }
    if (dir && !S_ISDIR(st.st_mode))
        return vt_error_set(VT_EINVAL, "%s %s is not a directory", flag, path);
    if (!dir && S_ISDIR(st.st_mode))
        return vt_error_set(VT_EINVAL, "%s %s is a directory, not a file", flag, path);
    return 0;
}

/* Fills list with the torchvision names of VGG16's convolution weights
 * ("features.0.weight" ...), written into names. */
static void vt__conv_names(char names[VT_VGG_NCONV][32], const char *list[VT_VGG_NCONV])
{
    for (int i = 0; i < VT_VGG_NCONV; i++) {
        vt_vgg_torch_name(names[i], sizeof names[i], i, "weight");
        list[i] = names[i];
    }
}

/* Refuses the safetensors file path (from flag) when its names show why it
 * lacks VGG16's tensors (list[0] the first): saved from DataParallel (each
 * name prefixed "module."), or torchvision's vgg16_bn (batch norm at
 * features.1, the convolutions shifted).  The daemon says the same. */
static int vt__check_st_kin(const char *path, const char *flag, const char *const *list)
{
    static const char *const bn[] = {"features.1.running_mean"};
    char prefixed[48];
    const char *const module[] = {prefixed};
    int rc;
    snprintf(prefixed, sizeof prefixed, "module.%s", list[0]);
    if ((rc = vt_safetensors_has_any(path, module, 1)) == 1)
        return vt_error_set(VT_EFORMAT, "%s %s has no tensor %s but has %s, as a model saved "
                            "from DataParallel names it: strip the module. prefix when saving "
                            "({k.removeprefix(\"module.\"): v for k, v in "
                            "state_dict.items()})", flag, path, list[0], prefixed);
    if (rc == 0 && (rc = vt_safetensors_has_any(path, bn, 1)) == 1)
        return vt_error_set(VT_EFORMAT, "%s %s holds batch-norm statistics (%s): it is "
                            "vgg16_bn, a different network (VGG16 with batch norm); give plain "
                            "VGG16's weights", flag, path, bn[0]);
    return rc < 0 ? vt_error_wrap(rc, "%s", flag) : 0;
}

/* Checks that the safetensors file path (from flag) holds VGG16 in the
 * layout the daemon reads (weights.c): a tensor of the convolutions under
 * torchvision's name, rather than, say, bottleneck features. */
static int vt__check_st_vgg16(const char *path, const char *flag)
{
    char names[VT_VGG_NCONV][32];
    const char *list[VT_VGG_NCONV];
    int rc;
    vt__conv_names(names, list);
    if ((rc = vt__check_st_kin(path, flag, list)) < 0)
        return rc;
    if ((rc = vt_safetensors_has_any(path, list, VT_VGG_NCONV)) < 0)
        return vt_error_wrap(rc, "%s", flag);
    if (rc == 0)
        return vt_error_set(VT_EFORMAT, "%s %s holds no VGG16 weights (no tensor %s ... %s): "
                            "give torchvision's VGG16 weights as safetensors, or Keras' "
                            "VGG16 weights as HDF5", flag, path, list[0],
                            list[VT_VGG_NCONV - 1]);
    return 0;
}

/* Refuses a safetensors file path (from flag, an init model) holding
 * VGG16's convolutions under torchvision's names but no head: VGG16
 * weights (a trunk), which the job would refuse only when it starts. */
static int vt__check_st_model(const char *path, const char *flag)
{
    static const char *const head[] = {"head.0.weight"};
    char names[VT_VGG_NCONV][32];
    const char *list[VT_VGG_NCONV];
    int rc;
    vt__conv_names(names, list);
    if ((rc = vt_safetensors_has_any(path, list, VT_VGG_NCONV)) == 1 &&
        (rc = vt_safetensors_has_any(path, head, 1)) == 0)
        return vt_error_set(VT_EFORMAT, "%s %s is VGG16 weights (a trunk: features.* without "
                            "head.*), not a model of ours: give it as --weights; %s takes a "
                            "model.safetensors that vggtune wrote", flag, path, flag);
    return rc < 0 ? vt_error_wrap(rc, "%s", flag) : 0;
}

/* Checks that path (from flag) starts like a weights file (want_st: a
 * safetensors file, as --init must be); a safetensors --weights file must
 * also hold VGG16's convolutions, an --init one a head as well. */
static int vt__check_weights(const char *path, const char *flag, int want_st)
{
    vt_wfile_kind kind;
    struct stat st;
    int rc;
    if (!path)
        return 0;
    if ((rc = vt__check_path(path, flag, 0)) < 0)
        return rc;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) /* a FIFO would block the read */
        return vt_error_set(VT_EINVAL, "%s %s is not a regular file", flag, path);
    if ((rc = vt_wfile_probe(path, &kind)) == VT_EFORMAT && !want_st)
        return vt_error_wrap(rc, "%s", flag);
    if (rc == VT_EFORMAT)
        return vt_error_set(VT_EFORMAT, "%s %s is not a model file of ours (model.safetensors)",
                            flag, path);
    if (rc < 0)
        return vt_error_wrap(rc, "%s", flag);
    if (want_st && kind != VT_WFILE_SAFETENSORS)
        return vt_error_set(VT_EFORMAT, "%s %s is a Keras HDF5 file, not a model of ours "
                            "(model.safetensors; Keras weights go in --weights)", flag, path);
    if (kind != VT_WFILE_SAFETENSORS)
        return 0;
    return want_st ? vt__check_st_model(path, flag) : vt__check_st_vgg16(path, flag);
}

static int vt__class_names(const char *path, char **names, int max, int *n);

#define VT__SPLIT_CLASSES 64 /* class folders two splits are compared by, at most */

/* Whether dir/a and dir/b hold the same class folders, at least two of
 * them (a dataset's splits; folders that are classes hold images, or a
 * class's sub-folders, which no two classes share as a rule). */
static int vt__splits_alike(const char *dir, const char *a, const char *b)
{
    char pa[PATH_MAX], pb[PATH_MAX], *na[VT__SPLIT_CLASSES] = {0}, *nb[VT__SPLIT_CLASSES] = {0};
    int ka = 0, kb = 0, alike;
    alike = vt_path(pa, sizeof pa, "%s/%s", dir, a) == 0 &&
            vt_path(pb, sizeof pb, "%s/%s", dir, b) == 0 &&
            vt__class_names(pa, na, VT__SPLIT_CLASSES, &ka) == 0 &&
            vt__class_names(pb, nb, VT__SPLIT_CLASSES, &kb) == 0 && ka >= 2 && ka == kb;
    for (int i = 0; alike && i < ka; i++)
        alike = strcmp(na[i], nb[i]) == 0;
    for (int i = 0; i < VT__SPLIT_CLASSES; i++) {
        free(na[i]);
        free(nb[i]);
    }
    return alike;
}

/* Whether a folder's name is that of a dataset's split: 1 training, 2
 * validation, 3 test, 0 none. */
static int vt__split_kind(const char *name)
{
    static const struct {
        const char *name;
        int kind;
    } splits[] = {{"train", 1}, {"training", 1}, {"val", 2}, {"valid", 2}, {"validation", 2},
                  {"test", 3}, {"testing", 3}};
    for (size_t i = 0; i < sizeof splits / sizeof splits[0]; i++)
        if (strcmp(name, splits[i].name) == 0)
            return splits[i].kind;
    return 0;
}

/* Checks that the directory path (from flag) has at least two class folders:
 * visible sub-directories, as the dataset scan counts them, and that they
 * are not a dataset's splits (train/ and val/ holding class folders: its
 * root given for its training folder would train a train-or-val
 * classifier).  Reads the top level, up to its fifth folder. */
static int vt__check_classes(const char *path, const char *flag)
{
    char first[256] = "", second[256] = "", names[128] = "", hint[600] = "";
    char kind_name[4][256] = {""}; /* a split folder of each kind */
    struct dirent *e;
    int n = 0, splits = 0, kind;
    DIR *d;
    if (!path)
        return 0;
    if (!(d = opendir(path)))
        return vt_error_set(errno == EACCES ? VT_EPERM : VT_EIO, "%s %s: %s", flag, path,
                            strerror(errno));
    while (n < 5 && (e = readdir(d))) {
        struct stat st;
        if (e->d_name[0] == '.')
            continue;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno != EACCES)
                continue;
            closedir(d); /* listed but not searchable by us: the daemon decides */
            return vt_error_set(VT_EPERM, "%s %s: cannot look into it: %s", flag, path,
                                strerror(EACCES));
        }
        if (!S_ISDIR(st.st_mode))
            continue;
        snprintf(n++ == 0 ? first : second, sizeof first, "%s", e->d_name);
        if ((kind = vt__split_kind(e->d_name)) > 0) {
            splits++;
            snprintf(kind_name[kind], sizeof kind_name[kind], "%s", e->d_name);
        }
        vt_text_append(names, sizeof names, "%s%s/", n > 1 ? ", " : "", e->d_name);
    }
    closedir(d);
    if (n >= 2 && splits == n && vt__splits_alike(path, first, second)) {
        if (kind_name[1][0])
            snprintf(hint, sizeof hint, " (as --data %s/%s%s%s%s%s)", path, kind_name[1],
                     kind_name[2][0] ? " --val " : "", kind_name[2][0] ? path : "",
                     kind_name[2][0] ? "/" : "", kind_name[2]);
        return vt_error_set(VT_EINVAL, "%s %s holds %s: a dataset's splits, each with the same "
                            "class folders, not one folder per class; give a split's own "
                            "folder%s", flag, path, names, hint);
    }
    if (n == 0)
        return vt_error_set(VT_EINVAL, "%s %s has no class folders: it needs one sub-folder "
                            "of images per class, at least two", flag, path);
    if (n == 1)
        return vt_error_set(VT_EINVAL, "%s %s has one class folder (%s): a classifier needs "
                            "at least two, one sub-folder of images per class", flag, path,
                            first);
    return 0;
}

#define VT__MAX_CLASS_CHECK 4096 /* class folders compared at most (else: the job does) */

static int vt__cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The class folders of the directory path (visible sub-directories, links
 * not followed, as the dataset scan counts them), sorted, in names[*n]
 * (free each).  -1 when it cannot be read or has more than max. */
static int vt__class_names(const char *path, char **names, int max, int *n)
{
    DIR *d = opendir(path);
    struct dirent *e;
    *n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d))) {
        struct stat st;
        if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISDIR(st.st_mode))
            continue;
        if (*n == max || !(names[*n] = strdup(e->d_name))) {
            closedir(d);
            return -1;
        }
        (*n)++;
    }
    closedir(d);
    qsort(names, (size_t)*n, sizeof *names, vt__cmp_str);
    return 0;
}

/* Refuses --val folders whose class folders are not --data's (the job
 * would fail on it when it starts). */
static int vt__check_val_classes(const cJSON *doc)
{
    const char *train = vt__get_str(doc, "data", "train"), *val = vt__get_str(doc, "data", "val");
    char **a = NULL, **b = NULL;
    int na = 0, nb = 0, rc = 0;
    if (!train || !val)
        return 0;
    if (!(a = calloc(VT__MAX_CLASS_CHECK, sizeof *a)) ||
        !(b = calloc(VT__MAX_CLASS_CHECK, sizeof *b))) {
        free(a);
        return vt_error_set(VT_ENOMEM, "out of memory");
    }
    if (vt__class_names(train, a, VT__MAX_CLASS_CHECK, &na) == 0 &&
        vt__class_names(val, b, VT__MAX_CLASS_CHECK, &nb) == 0) {
        int i = 0, j = 0;
        while (i < na && j < nb && strcmp(a[i], b[j]) == 0)
            i++, j++;
        if (i < na && (j >= nb || strcmp(a[i], b[j]) < 0))
            rc = vt_error_set(VT_EINVAL, "--val %s lacks the class folder '%s' of --data %s "
                              "(they must have the same class folders)", val, a[i], train);
        else if (j < nb)
            rc = vt_error_set(VT_EINVAL, "--val %s has a class folder '%s' that --data %s "
                              "lacks (they must have the same class folders)", val, b[j], train);
    }
    for (int k = 0; k < na; k++)
        free(a[k]);
    for (int k = 0; k < nb; k++)
        free(b[k]);
    free(a);
    free(b);
    return rc;
}

/* Refuses an output that is not a directory, and, unless the document sets
 * overwrite, an output directory that holds a finished job's model (the
 * job would replace it when it starts: the trainer checks the same,
 * vt_output_protected_model); VT_EPERM (a warning: that may change before
 * the job starts) when it cannot be written, by us or on a read-only file
 * system. */
static int vt__check_output(const cJSON *doc)
{
    const char *out = vt__get_str(doc, NULL, "output");
    struct stat st;
    vt_writer w;
    char by[80];
    int rc, aside;
    if (out && stat(out, &st) == 0 && !S_ISDIR(st.st_mode))
        return vt_error_set(VT_EINVAL, "--out %s exists and is not a directory", out);
    if (out && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "overwrite"))) {
        if ((rc = vt_output_protected_model(out, &w, &aside)) < 0 && rc != VT_EPERM)
            return rc; /* (one we cannot read: the job decides) */
        if (rc == 1) {
            vt_writer_name(&w, NULL, by, sizeof by);
            return vt_error_set(VT_EBUSY, "--out %s holds the model of %s, which finished%s; "
                                "give this job another output directory, or --overwrite to "
                                "replace it", out, by,
                                aside ? " (kept in " VT_OUTPUT_ASIDE " while a job that "
                                        "replaces it has not finished)" : "");
        }
    }
    if (out) { /* the folder, or the nearest one above it that exists, writable by us */
        char dir[PATH_MAX], *slash;
        snprintf(dir, sizeof dir, "%s", out);
        while (stat(dir, &st) < 0 && (slash = strrchr(dir, '/'))) {
            if (slash == dir) { /* up to the root */
                dir[1] = '\0';
                break;
            }
            *slash = '\0';
        }
        if (stat(dir, &st) == 0 && access(dir, W_OK | X_OK) < 0 &&
            (errno == EACCES || errno == EROFS))
            return vt_error_set(VT_EPERM, "--out %s: %s is %s", out, dir,
                                errno == EROFS ? "on a read-only file system"
                                               : "not writable by you");
    }
    return 0;
}

/* The widths of a JSON array of integers (at most VT_MAX_DENSE) into w[*n];
 * 0, or -1 when it is not one. */
static int vt__widths(const cJSON *arr, int *w, int *n)
{
    const cJSON *it;
    *n = 0;
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) > VT_MAX_DENSE)
        return -1;
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsNumber(it))
            return -1;
        w[(*n)++] = it->valueint;
    }
    return 0;
}

/* Refuses an init model (what: how the command line names it) that does
 * not fit the job, as the job would when it starts: trained at another
 * image size, with another head layout than --dense gives (those two with
 * `all` set: the daemon checks an --init-head job's itself), or for
 * another number of classes than --data has class folders.  From the
 * model's metadata (its header) alone; what it does not record is left to
 * the job. */
static int vt__check_model_fits(const cJSON *doc, const char *init, const char *what, int all)
{
    const char *train = vt__get_str(doc, "data", "train");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(doc, "data"), "image_size");
    const cJSON *dense = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(doc, "head"), "dense");
    const cJSON *classes;
    vt_tensorset *meta = NULL;
    cJSON *head = NULL;
    char **names = NULL, a[128], b[128];
    int rc = 0, want, got, mine[VT_MAX_DENSE], theirs[VT_MAX_DENSE], nm, nt, nclasses = 0;
    vt_jobspec defaults;
    if (vt_safetensors_read_meta(&meta, init) < 0)
        return 0; /* (vt__check_weights said what is wrong with it, or the job will) */
    vt_jobspec_defaults(&defaults);
    want = cJSON_IsNumber(size) ? size->valueint : defaults.image_size;
    got = vt_tensorset_meta(meta, "image_size") ? atoi(vt_tensorset_meta(meta, "image_size")) : 0;
    if (all && got > 0 && got != want) {
        rc = vt_error_set(VT_EINVAL, "%s was trained at image size %d, this job's is %d "
                          "(--image-size %d to match)", what, got, want, got);
        goto done;
    }
    head = vt_tensorset_meta(meta, "head") ? cJSON_Parse(vt_tensorset_meta(meta, "head")) : NULL;
    if (all && dense && vt__widths(dense, mine, &nm) == 0 &&
        vt__widths(cJSON_GetObjectItemCaseSensitive(head, "dense"), theirs, &nt) == 0 &&
        (nm != nt || memcmp(mine, theirs, sizeof(int) * (size_t)nm) != 0)) {
        vt_jobspec_layout(mine, nm, a, sizeof a);
        vt_jobspec_layout(theirs, nt, b, sizeof b);
        rc = vt_error_set(VT_EINVAL, "--dense [%s] conflicts with the head of the init model "
                          "%s, which is [%s]; leave --dense out to use it", a, init, b);
        goto done;
    }
    classes = cJSON_GetObjectItemCaseSensitive(head, "classes");
    if (cJSON_IsNumber(classes) && train && (names = calloc(VT__MAX_CLASS_CHECK, sizeof *names)) &&
        vt__class_names(train, names, VT__MAX_CLASS_CHECK, &nclasses) == 0 &&
        nclasses != classes->valueint)
        rc = vt_error_set(VT_EINVAL, "%s has %d classes, but --data %s has %d class "
                          "folder%s", what, classes->valueint, train, nclasses,
                          nclasses == 1 ? "" : "s");
done:
    for (int k = 0; names && k < nclasses; k++)
        free(names[k]);
    free(names);
    cJSON_Delete(head);
    vt_tensorset_free(meta);
    return rc;
}

static int vt__check_init_fits(const cJSON *doc)
{
    const char *init = vt__get_str(doc, NULL, "init");
    char what[PATH_MAX + 16];
    if (!init)
        return 0;
    snprintf(what, sizeof what, "--init %s", init);
    return vt__check_model_fits(doc, init, what, 1);
}

int vt_cli_check_init_head(const cJSON *doc, long long job, const char *output)
{
    char model[PATH_MAX], what[PATH_MAX + 64];
    if (vt_path(model, sizeof model, "%s/model.safetensors", output) < 0)
        return 0;
    snprintf(what, sizeof what, "--init-head %lld's model %s", job, model);
    return vt__check_model_fits(doc, model, what, 0);
}

int vt_cli_check_paths(const cJSON *doc)
{
    const char *train = vt__get_str(doc, "data", "train");
    char warn[1024] = "";
    int rc = 0;
    /* every check runs: a warning (VT_EPERM) found early must not hide a
     * refusal found later; the first refusal, else the first warning */
    for (int k = 0; k < 8; k++) {
        switch (k) {
        case 0: rc = vt__check_path(train, "--data", 1); break;
        case 1: rc = vt__check_classes(train, "--data"); break;
        case 2: rc = vt__check_path(vt__get_str(doc, "data", "val"), "--val", 1); break;
        case 3: rc = vt__check_weights(vt__get_str(doc, NULL, "weights"), "--weights", 0); break;
        case 4: rc = vt__check_weights(vt__get_str(doc, NULL, "init"), "--init", 1); break;
        case 5: rc = vt__check_val_classes(doc); break;
        case 6: rc = vt__check_init_fits(doc); break;
        default: rc = vt__check_output(doc); break;
        }
        if (rc == VT_EPERM && !warn[0])
            snprintf(warn, sizeof warn, "%s", vt_error_msg());
        else if (rc < 0 && rc != VT_EPERM)
            return rc;
    }
    return warn[0] ? vt_error_set(VT_EPERM, "%s", warn) : 0;
}

/* ---- exit statuses ----------------------------------------------------- */

int vt_cli_exit_code(int rc, int replied)
{
    if (rc >= 0)
        return VT_CLI_OK;
    if (replied)
        return VT_CLI_FAILED;
    /* Refused before it left us (too large, out of memory): the daemon is
     * fine, the operation failed. */
    if (rc == VT_ETOOBIG || rc == VT_ENOMEM)
        return VT_CLI_FAILED;
    return VT_CLI_UNREACHABLE;
}

int vt_cli_job_exit(const cJSON *job)
{
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(job, "state");
    return cJSON_IsString(state) && strcmp(state->valuestring, "succeeded") == 0
               ? VT_CLI_OK
               : VT_CLI_FAILED;
}

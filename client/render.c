/* render.c - how vggtune shows the daemon's replies and events (see cli.h).
 *
 * Pure functions from JSON to text, so the tests compare exact strings.
 * Missing or null fields print as "-" rather than failing: the daemon may
 * send a restricted view (another user's job) or an older daemon fewer
 * fields.  Names, paths and messages may be any UTF-8: tables are padded
 * and cells cut by display columns (vt_utf8_width), not bytes.
 */
#include "cli.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/error.h"
#include "../common/text.h"
#include "../common/utf8.h"
#include "../engine/base.h"
#include "../proto/report.h"

/* ---- display width ----------------------------------------------------- */

/* Cuts s to at most max columns, at a character's boundary, ending in
 * "..." when cut.  ("..." fits where the cut was: every character takes at
 * least as many bytes as columns.) */
static void vt__clip(char *s, int max)
{
    size_t i = 0, keep = 0;
    int w = 0, cols, room = max >= 3 ? max - 3 : max;

    if (vt_utf8_width(s) <= max)
        return;
    while (s[i]) {
        size_t n = vt_utf8_char(s + i, &cols);
        if (w + cols > room)
            break;
        w += cols;
        i += n;
        keep = i;
    }
    if (max < 3) {
        s[keep] = '\0';
        return;
    }
    while (keep > 0 && s[keep - 1] == ' ')
        keep--;
    strcpy(s + keep, "...");
}

/* ---- small formats ----------------------------------------------------- */


void vt_cli_fmt_bytes(double b, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%.0f B", b);
    else
        snprintf(buf, len, "%.1f %s", b, units[u]);
}

/* Seconds since the epoch of an ISO-8601 UTC time; -1 when unparseable. */
static double vt__iso_seconds(const cJSON *iso)
{
    struct tm tm = {0};
    double frac = 0;
    int n = 0;
    if (!cJSON_IsString(iso) ||
        sscanf(iso->valuestring, "%d-%d-%dT%d:%d:%d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
        return -1;
    if (iso->valuestring[n] == '.')
        frac = strtod(iso->valuestring + n, NULL);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (double)timegm(&tm) + frac;
}

void vt_cli_fmt_time(const cJSON *iso, char *buf, size_t len)
{
    double t = vt__iso_seconds(iso);
    time_t tt;
    struct tm tm;

    if (!iso || cJSON_IsNull(iso) || (cJSON_IsString(iso) && !iso->valuestring[0])) {
        snprintf(buf, len, "-");
        return;
    }
    if (t < 0) {
        snprintf(buf, len, "%s", cJSON_IsString(iso) ? iso->valuestring : "-");
        return;
    }
    tt = (time_t)t;
    localtime_r(&tt, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M", &tm);
}

/* Seconds from the job's start to its end; -1 when unknown. */
static double vt__job_seconds(const cJSON *job)
{
    double a = vt__iso_seconds(cJSON_GetObjectItemCaseSensitive(job, "started"));
    double b = vt__iso_seconds(cJSON_GetObjectItemCaseSensitive(job, "finished"));
    return a >= 0 && b >= a ? b - a : -1;
}

/* "42 (flowers)" or "42". */
static void vt__job_label(const cJSON *job, char *buf, size_t len)
{
    const char *name = vt_json_str(job, "name");
    long long id = vt_json_int(job, "id", 0);
    if (name)
        snprintf(buf, len, "%lld (%s)", id, name);
    else
        snprintf(buf, len, "%lld", id);
}

/* The last epoch's metrics of a job that carries them ("last_epoch" in a
 * summary, the end of "metrics" in full), or NULL. */
static const cJSON *vt__last_metrics(const cJSON *job)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(job, "last_epoch");
    int n;
    if (cJSON_IsObject(m))
        return m;
    m = cJSON_GetObjectItemCaseSensitive(job, "metrics");
    n = cJSON_GetArraySize(m);
    return cJSON_IsArray(m) && n > 0 ? cJSON_GetArrayItem(m, n - 1) : NULL;
}

/* Whether the job has ended (succeeded, failed or cancelled). */
static int vt__ended(const cJSON *job)
{
    const char *state = vt_json_str(job, "state");
    return state && (!strcmp(state, "succeeded") || !strcmp(state, "failed") ||
                     !strcmp(state, "cancelled"));
}

/* Whether a succeeded job stopped early.  The daemon does not say so in
 * the job: a job succeeds with fewer epochs than it asked for only when
 * early stopping ended it, so that is what is read (and, where the spec is
 * there, only with early_stopping.patience set). */
static int vt__stopped_early(const cJSON *job)
{
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(job, "spec");
    const char *state = vt_json_str(job, "state");
    long long done = vt_json_int(job, "epochs_done", -1), total = vt_json_int(job, "epochs", -1);
    double patience;

    if (!state || strcmp(state, "succeeded") != 0 || done < 1 || total <= done)
        return 0;
    if (vt_json_num(cJSON_GetObjectItemCaseSensitive(spec, "early_stopping"), "patience",
                &patience) && patience <= 0)
        return 0;
    return 1;
}

/* Whether job is another user's as a non-admin sees it: id, user, state and
 * queue position only. */
static int vt__restricted(const cJSON *job)
{
    return !vt_json_str(job, "mode") && !cJSON_GetObjectItemCaseSensitive(job, "epochs");
}

/* ---- tables ------------------------------------------------------------ */

/* A table of malloc'd cells (at most 16 columns) printed with columns
 * padded to their widest cell, two spaces apart, the last column
 * unpadded. */
typedef struct {
    int ncols, nrows, cap;
    char **cells;
} vt__table;

static void vt__row(vt__table *t, ...)
{
    va_list ap;
    if (t->nrows == t->cap) {
        int cap = t->cap ? t->cap * 2 : 16;
        char **c = realloc(t->cells, sizeof *c * (size_t)cap * (size_t)t->ncols);
        if (!c)
            return;
        t->cells = c;
        t->cap = cap;
    }
    va_start(ap, t);
    for (int i = 0; i < t->ncols; i++) {
        const char *s = va_arg(ap, const char *);
        t->cells[t->nrows * t->ncols + i] = strdup(s ? s : "-");
    }
    va_end(ap);
    t->nrows++;
}

static void vt__table_print(FILE *f, vt__table *t)
{
    int w[16] = {0};
    for (int r = 0; r < t->nrows; r++)
        for (int c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            int n = s ? vt_utf8_width(s) : 0;
            w[c] = n > w[c] ? n : w[c];
        }
    for (int r = 0; r < t->nrows; r++) {
        for (int c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            if (c == t->ncols - 1) {
                fprintf(f, "%s\n", s ? s : "");
                continue;
            }
            /* padded by columns: printf's %-*s counts bytes */
            fprintf(f, "%s%*s", s ? s : "", w[c] - (s ? vt_utf8_width(s) : 0) + 2, "");
        }
    }
    for (int i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    t->cells = NULL;
    t->nrows = t->cap = 0;
}

/* ---- list -------------------------------------------------------------- */

#define VT__RESULT_MAX 50

/* The PROGRESS-or-result column of a job. */
static void vt__job_result(const cJSON *job, char *buf, size_t len)
{
    const char *state = vt_json_str(job, "state");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(job, "progress");
    char d[32];
    double x, y;

    buf[0] = '\0';
    if (!state) {
        snprintf(buf, len, "-");
    } else if (strcmp(state, "queued") == 0) {
        long long pos = vt_json_int(job, "queue_position", 0);
        if (pos > 0)
            snprintf(buf, len, "position %lld", pos);
        else
            snprintf(buf, len, "waiting");
    } else if (strcmp(state, "running") == 0) {
        if (vt_json_true(job, "cancel_requested")) {
            snprintf(buf, len, "cancelling");
        } else if (cJSON_IsObject(p)) {
            double e = vt_json_int(p, "epoch", 1), E = vt_json_int(p, "epochs", 0);
            double s = vt_json_int(p, "step", 0), S = vt_json_int(p, "steps", 0);
            const char *phase = vt_json_str(p, "phase");
            /* (validating and saving come after the epoch's training) */
            int trained = phase && (!strcmp(phase, "validating") || !strcmp(phase, "saving"));
            if (phase && !strcmp(phase, "preparing"))
                S = 0; /* (its steps are image headers read, not the epoch's) */
            if (E > 0)
                vt_text_append(buf, len, "%.0f%%", floor(100 * ((e - 1) + (trained ? 1
                                                              : S > 0 ? s / S : 0)) / E));
            if (phase && strcmp(phase, "training") != 0)
                vt_text_append(buf, len, "%s%s", buf[0] ? " " : "", phase);
            if (vt_json_num(p, "loss", &x))
                vt_text_append(buf, len, " %sloss %.4f", vt_report_val_prefix(phase), x);
            if (vt_json_num(p, "accuracy", &x))
                vt_text_append(buf, len, " %sacc %.4f", vt_report_val_prefix(phase), x);
            if (vt_json_num(p, "eta_s", &x)) {
                vt_report_duration(x, d, sizeof d);
                vt_text_append(buf, len, " ETA %s", d);
            }
        } else if (vt__restricted(job)) {
            snprintf(buf, len, "-"); /* its progress is not ours to see */
        } else {
            snprintf(buf, len, "starting");
        }
    } else if (strcmp(state, "succeeded") == 0) {
        /* the metrics of the model the job wrote: keep_best's epoch, or the last */
        const cJSON *kept = cJSON_GetObjectItemCaseSensitive(job, "kept_epoch");
        const cJSON *m = cJSON_IsObject(kept) ? kept : vt__last_metrics(job);
        snprintf(buf, len, "done");
        if ((x = vt__job_seconds(job)) >= 0) {
            vt_report_duration(x, d, sizeof d);
            vt_text_append(buf, len, " in %s", d);
        }
        if (m && vt_json_num(m, "val_accuracy", &y))
            vt_text_append(buf, len, ", val_acc %.4f", y);
        else if (m && vt_json_num(m, "accuracy", &y))
            vt_text_append(buf, len, ", acc %.4f", y);
        if (cJSON_IsObject(kept) && vt_json_num(kept, "epoch", &y))
            vt_text_append(buf, len, " (kept epoch %.0f)", y);
    } else if (strcmp(state, "failed") == 0) {
        snprintf(buf, len, "%s", vt_json_str(job, "error") ? vt_json_str(job, "error") : "failed");
    } else if (strcmp(state, "cancelled") == 0) {
        snprintf(buf, len, "%s", vt_json_str(job, "reason") ? vt_json_str(job, "reason") : "cancelled");
    } else {
        snprintf(buf, len, "-");
    }
    for (char *c = buf; *c; c++) /* one line per job */
        if (*c == '\n' || *c == '\r' || *c == '\t')
            *c = ' ';
    vt__clip(buf, VT__RESULT_MAX);
}

/* "x/y" of the EPOCH column. */
static void vt__job_epoch(const cJSON *job, char *buf, size_t len)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(job, "progress");
    const char *state = vt_json_str(job, "state");
    long long done = vt_json_int(job, "epochs_done", -1), total = vt_json_int(job, "epochs", -1);

    if (state && strcmp(state, "running") == 0 && cJSON_IsObject(p) &&
        vt_json_int(p, "epoch", -1) >= 0)
        snprintf(buf, len, "%lld/%lld", vt_json_int(p, "epoch", 0),
                 vt_json_int(p, "epochs", total));
    else if (done >= 0 && total >= 0 && vt__stopped_early(job))
        snprintf(buf, len, "%lld/%lld (stopped early)", done, total);
    else if (done >= 0 && total >= 0)
        snprintf(buf, len, "%lld/%lld", done, total);
    else
        snprintf(buf, len, "-");
}

void vt_cli_render_list(FILE *f, const cJSON *jobs)
{
    vt__table t = {.ncols = 7};
    const cJSON *job;

    vt__row(&t, "ID", "USER", "NAME", "STATE", "EPOCH", "PROGRESS", "SUBMITTED");
    cJSON_ArrayForEach(job, jobs) {
        char id[32], epoch[48], result[256], when[64], name[512]; /* whole, then clipped */
        snprintf(id, sizeof id, "%lld", vt_json_int(job, "id", 0));
        snprintf(name, sizeof name, "%s", vt_json_str(job, "name") ? vt_json_str(job, "name") : "-");
        vt__clip(name, 24);
        vt__job_epoch(job, epoch, sizeof epoch);
        vt__job_result(job, result, sizeof result);
        vt_cli_fmt_time(cJSON_GetObjectItemCaseSensitive(job, "submitted"), when, sizeof when);
        vt__row(&t, id, vt_json_str(job, "user"), name, vt_json_str(job, "state"), epoch, result, when);
    }
    vt__table_print(f, &t);
}

/* ---- one job ----------------------------------------------------------- */

/* The job's state with its detail: "queued, position 2", "failed: ...". */
static void vt__state_detail(const cJSON *job, char *buf, size_t len)
{
    const char *state = vt_json_str(job, "state");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(job, "progress");
    char d[32];
    double x;

    snprintf(buf, len, "%s", state ? state : "-");
    if (!state)
        return;
    if (strcmp(state, "queued") == 0 && vt_json_int(job, "queue_position", 0) > 0) {
        vt_text_append(buf, len, ", position %lld", vt_json_int(job, "queue_position", 0));
    } else if (strcmp(state, "running") == 0) {
        if (vt_json_true(job, "cancel_requested"))
            vt_text_append(buf, len, ", cancel requested");
        if (cJSON_IsObject(p)) {
            const char *phase = vt_json_str(p, "phase");
            vt_text_append(buf, len, ": epoch %lld/%lld", vt_json_int(p, "epoch", 0),
                           vt_json_int(p, "epochs", 0));
            if (phase && !strcmp(phase, "preparing") && vt_json_int(p, "steps", 0) > 0)
                vt_text_append(buf, len, " (preparing: %lld/%lld image headers read)",
                               vt_json_int(p, "step", 0), vt_json_int(p, "steps", 0));
            else
                vt_text_append(buf, len, ", step %lld/%lld%s%s%s", vt_json_int(p, "step", 0),
                               vt_json_int(p, "steps", 0), phase ? " (" : "", phase ? phase : "",
                               phase ? ")" : "");
            if (vt_json_num(p, "loss", &x))
                vt_text_append(buf, len, ", %sloss %.4f", vt_report_val_prefix(phase), x);
            if (vt_json_num(p, "accuracy", &x))
                vt_text_append(buf, len, ", %sacc %.4f", vt_report_val_prefix(phase), x);
            if (vt_json_num(p, "images_per_s", &x))
                vt_text_append(buf, len, ", %.0f img/s", x);
            if (vt_json_num(p, "eta_s", &x)) {
                vt_report_duration(x, d, sizeof d);
                vt_text_append(buf, len, ", ETA %s", d);
            }
        }
    } else if (strcmp(state, "succeeded") == 0 && (x = vt__job_seconds(job)) >= 0) {
        vt_report_duration(x, d, sizeof d);
        vt_text_append(buf, len, " in %s", d);
    } else if (strcmp(state, "failed") == 0 && vt_json_str(job, "error")) {
        vt_text_append(buf, len, ": %s", vt_json_str(job, "error"));
    } else if (strcmp(state, "cancelled") == 0 && vt_json_str(job, "reason")) {
        vt_text_append(buf, len, ": %s", vt_json_str(job, "reason"));
    }
}

#define VT__KV "%-10s %s\n"

/* The rest of a job document's settings, a line each: the head, the
 * optimizer and its schedule, augmentation, early stopping (the last two
 * only when set). */
static void vt__render_settings(FILE *f, const cJSON *spec)
{
    const cJSON *head = cJSON_GetObjectItemCaseSensitive(spec, "head");
    const cJSON *opt = cJSON_GetObjectItemCaseSensitive(spec, "optimizer");
    const cJSON *sch = cJSON_GetObjectItemCaseSensitive(opt, "schedule");
    const cJSON *aug = cJSON_GetObjectItemCaseSensitive(spec, "augment");
    const cJSON *es = cJSON_GetObjectItemCaseSensitive(spec, "early_stopping");
    const cJSON *v;
    const char *type = cJSON_IsString(sch) ? sch->valuestring : vt_json_str(sch, "type");
    char buf[512] = "";
    double x, y;

    if (cJSON_IsArray(v = cJSON_GetObjectItemCaseSensitive(head, "dense"))) {
        const cJSON *w;
        vt_text_append(buf, sizeof buf, "dense ");
        cJSON_ArrayForEach(w, v)
            vt_text_append(buf, sizeof buf, "%.0f, ", w->valuedouble);
        vt_text_append(buf, sizeof buf, "%s", cJSON_GetArraySize(v) ? "" : "none, ");
        if (vt_json_num(head, "dropout", &x))
            vt_text_append(buf, sizeof buf, "dropout %g, ", x);
        buf[strlen(buf) - 2] = '\0';
        fprintf(f, VT__KV, "head", buf);
    }
    if (opt) {
        buf[0] = '\0';
        vt_text_append(buf, sizeof buf, "SGD");
        if (vt_json_num(opt, "momentum", &x))
            vt_text_append(buf, sizeof buf, " momentum %g%s", x,
                           cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(opt, "nesterov"))
                               ? " (Nesterov)" : "");
        if (vt_json_num(opt, "decay", &x) && x > 0)
            vt_text_append(buf, sizeof buf, ", decay %g", x);
        if (vt_json_num(opt, "weight_decay", &x) && x > 0)
            vt_text_append(buf, sizeof buf, ", weight decay %g", x);
        if (type && !strcmp(type, "step") && vt_json_num(sch, "step_epochs", &x) &&
            vt_json_num(sch, "gamma", &y))
            vt_text_append(buf, sizeof buf, ", lr x%g every %.0f epochs", y, x);
        else if (type && !strcmp(type, "step"))
            vt_text_append(buf, sizeof buf, ", step schedule");
        else if (type && !strcmp(type, "cosine"))
            vt_text_append(buf, sizeof buf, ", cosine schedule to %g",
                           vt_json_num(sch, "min_lr", &x) ? x : 0.0);
        fprintf(f, VT__KV, "optimizer", buf);
    }
    buf[0] = '\0';
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(aug, "flip")))
        vt_text_append(buf, sizeof buf, "flip");
    if (vt_json_num(aug, "crop", &x) && x > 0)
        vt_text_append(buf, sizeof buf, "%scrop %g", buf[0] ? ", " : "", x);
    if (buf[0])
        fprintf(f, VT__KV, "augment", buf);
    buf[0] = '\0';
    if (vt_json_num(es, "patience", &x) && x > 0)
        vt_text_append(buf, sizeof buf, "after %.0f epoch%s without a val_loss improvement%s",
                       x, x == 1 ? "" : "s",
                       vt_json_num(es, "min_delta", &y) && y > 0 ? " (min_delta)" : "");
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(spec, "keep_best")))
        vt_text_append(buf, sizeof buf, "%skeep the best epoch's model", buf[0] ? "; " : "");
    if (buf[0])
        fprintf(f, VT__KV, "stopping", buf);
}

static void vt__metric(char *buf, size_t len, const cJSON *m, const char *key,
                       const char *fmt)
{
    double x;
    if (vt_json_num(m, key, &x))
        snprintf(buf, len, fmt, x);
    else
        snprintf(buf, len, "-");
}

void vt_cli_render_job(FILE *f, const cJSON *job)
{
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(job, "spec");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(spec, "data");
    const cJSON *opt = cJSON_GetObjectItemCaseSensitive(spec, "optimizer");
    const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(job, "metrics"), *m;
    const char *s;
    char buf[1024], t[64];
    double x;

    vt__job_label(job, buf, sizeof buf);
    fprintf(f, VT__KV, "job", buf);
    if ((s = vt_json_str(job, "user"))) {
        snprintf(buf, sizeof buf, "%s", s);
        if (vt_json_int(job, "uid", -1) >= 0)
            vt_text_append(buf, sizeof buf, " (uid %lld)", vt_json_int(job, "uid", 0));
        fprintf(f, VT__KV, "user", buf);
    }
    vt__state_detail(job, buf, sizeof buf);
    fprintf(f, VT__KV, "state", buf);
    if (vt__restricted(job))
        return; /* another user's job: that is all we may see */
    if ((s = vt_json_str(job, "mode"))) {
        snprintf(buf, sizeof buf, "%s", s);
        if (vt_json_int(job, "trainable_blocks", -1) >= 0)
            vt_text_append(buf, sizeof buf, " (trainable blocks %lld)",
                    vt_json_int(job, "trainable_blocks", 0));
        fprintf(f, VT__KV, "mode", buf);
    }
    if (vt_json_int(job, "epochs", -1) >= 0) {
        const cJSON *es = cJSON_GetObjectItemCaseSensitive(spec, "early_stopping");
        double patience;
        snprintf(buf, sizeof buf, "%lld of %lld done", vt_json_int(job, "epochs_done", 0),
                 vt_json_int(job, "epochs", 0));
        /* the engine stops once val_loss has gone patience epochs without
         * improving */
        if (vt__stopped_early(job) && vt_json_num(es, "patience", &patience))
            vt_text_append(buf, sizeof buf, ": stopped early, val_loss did not improve for "
                           "%.0f epoch%s (early_stopping.patience)", patience,
                           patience == 1 ? "" : "s");
        else if (vt__stopped_early(job))
            vt_text_append(buf, sizeof buf, ": stopped early");
        fprintf(f, VT__KV, "epochs", buf);
    }
    {
        const cJSON *kept = cJSON_GetObjectItemCaseSensitive(job, "kept_epoch");
        double ke;
        if (cJSON_IsObject(kept) && vt_json_num(kept, "epoch", &ke)) {
            snprintf(buf, sizeof buf, "epoch %.0f's (keep_best: lowest val_loss%s)", ke,
                     vt__ended(job) ? "" : " so far");
            fprintf(f, VT__KV, "model", buf);
        }
    }
    if ((s = vt_json_str(data, "train")))
        fprintf(f, VT__KV, "data", s);
    if ((s = vt_json_str(data, "val")))
        fprintf(f, VT__KV, "validation", s);
    else if (vt_json_num(data, "val_split", &x) && x > 0) {
        snprintf(buf, sizeof buf, "%g%% of the training images", x * 100);
        fprintf(f, VT__KV, "validation", buf);
    } else if (data)
        fprintf(f, VT__KV, "validation", "none");
    if (spec) {
        if ((s = vt_json_str(spec, "weights")))
            fprintf(f, VT__KV, "weights", s);
        else {
            /* The daemon's resident trunk ("trunk"; a random one unless it
             * was started with --weights).  Scratch on the random trunk
             * draws every layer from the job's seed; otherwise the job draws
             * only the head from it. */
            const char *trunk = vt_json_str(job, "trunk");
            double tb = 0, seed = 0;
            vt_json_num(spec, "trainable_blocks", &tb);
            vt_json_num(spec, "seed", &seed);
            int head_init = vt_json_str(spec, "init") || (vt_json_num(spec, "init_job", &x) && x > 0);
            if (tb >= 5 && trunk && strncmp(trunk, "random", 6) == 0)
                snprintf(buf, sizeof buf, "random (He, seed %.0f)", seed);
            else if (trunk && head_init) /* (the head: the "head init" line) */
                snprintf(buf, sizeof buf, "trunk %s", trunk);
            else if (trunk)
                snprintf(buf, sizeof buf, "trunk %s, head from seed %.0f", trunk, seed);
            else
                snprintf(buf, sizeof buf, "the daemon's trunk (random He, seed %d, unless "
                         "started with --weights), head from seed %.0f", VT_BASE_RANDOM_SEED,
                         seed);
            fprintf(f, VT__KV, "weights", buf);
        }
        if ((s = vt_json_str(spec, "init")))
            fprintf(f, VT__KV, "head init", s);
        else if (vt_json_num(spec, "init_job", &x) && x > 0) {
            snprintf(buf, sizeof buf, "from job %.0f", x);
            fprintf(f, VT__KV, "head init", buf);
        }
        buf[0] = '\0';
        if (vt_json_num(spec, "batch_size", &x))
            vt_text_append(buf, sizeof buf, "batch %.0f", x);
        if (vt_json_num(opt, "lr", &x))
            vt_text_append(buf, sizeof buf, "%slr %g", buf[0] ? ", " : "", x);
        if (vt_json_num(data, "image_size", &x))
            vt_text_append(buf, sizeof buf, "%simage size %.0f", buf[0] ? ", " : "", x);
        if ((s = vt_json_str(job, "preprocess"))) /* resolved, once the job has started */
            vt_text_append(buf, sizeof buf, "%spreprocess %s%s", buf[0] ? ", " : "", s,
                           vt_json_str(data, "preprocess") &&
                                   !strcmp(vt_json_str(data, "preprocess"), "auto")
                               ? " (auto: what the weights expect)" : "");
        else if ((s = vt_json_str(data, "preprocess")))
            vt_text_append(buf, sizeof buf, "%spreprocess %s", buf[0] ? ", " : "", s);
        if ((s = vt_json_str(spec, "precision"))) {
            const char *used = vt_json_str(job, "compute");
            vt_text_append(buf, sizeof buf, "%sprecision %s", buf[0] ? ", " : "", s);
            if (used && strcmp(used, s) != 0)
                vt_text_append(buf, sizeof buf, " (computes in %s on this daemon's backend)", used);
        }
        if (buf[0])
            fprintf(f, VT__KV, "training", buf);
        vt__render_settings(f, spec);
    }
    if ((s = vt_json_str(job, "output")))
        fprintf(f, VT__KV, "output", s);
    vt_cli_fmt_time(cJSON_GetObjectItemCaseSensitive(job, "submitted"), t, sizeof t);
    fprintf(f, VT__KV, "submitted", t);
    vt_cli_fmt_time(cJSON_GetObjectItemCaseSensitive(job, "started"), t, sizeof t);
    fprintf(f, VT__KV, "started", t);
    vt_cli_fmt_time(cJSON_GetObjectItemCaseSensitive(job, "finished"), t, sizeof t);
    fprintf(f, VT__KV, "finished", t);
    if (cJSON_GetArraySize(metrics) > 0) {
        vt__table tab = {.ncols = 8};
        fprintf(f, "\n");
        vt__row(&tab, "EPOCH", "LOSS", "ACC", "VAL_LOSS", "VAL_ACC", "IMG/S", "TIME", "LR");
        cJSON_ArrayForEach(m, metrics) {
            char c[8][32];
            vt__metric(c[0], 32, m, "epoch", "%.0f");
            vt__metric(c[1], 32, m, "loss", "%.4f");
            vt__metric(c[2], 32, m, "accuracy", "%.4f");
            vt__metric(c[3], 32, m, "val_loss", "%.4f");
            vt__metric(c[4], 32, m, "val_accuracy", "%.4f");
            vt__metric(c[5], 32, m, "images_per_s", "%.0f");
            vt__metric(c[6], 32, m, "seconds", "%.1f s");
            vt__metric(c[7], 32, m, "lr", "%g");
            vt__row(&tab, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]);
        }
        vt__table_print(f, &tab);
    }
}

/* ---- daemon status ----------------------------------------------------- */

void vt_cli_render_status(FILE *f, const cJSON *d)
{
    const cJSON *mem = cJSON_GetObjectItemCaseSensitive(d, "memory");
    const cJSON *trunks = cJSON_GetObjectItemCaseSensitive(d, "trunks");
    const cJSON *caches = cJSON_GetObjectItemCaseSensitive(d, "feature_caches");
    const cJSON *queue = cJSON_GetObjectItemCaseSensitive(d, "queue");
    const cJSON *rq = cJSON_GetObjectItemCaseSensitive(d, "requests");
    const cJSON *users = cJSON_GetObjectItemCaseSensitive(d, "users"), *it;
    char buf[1024], a[32], b[32], c[32];
    double x;
    int first = 1;

    snprintf(buf, sizeof buf, "vggtuned %s", vt_json_str(d, "version") ? vt_json_str(d, "version") : "?");
    if (vt_json_num(d, "uptime_s", &x)) {
        vt_report_duration(x, a, sizeof a);
        vt_text_append(buf, sizeof buf, ", up %s", a);
    }
    if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(d, "ready")))
        vt_text_append(buf, sizeof buf, " (starting: the device is not ready yet)");
    fprintf(f, "%s\n", buf);
    snprintf(buf, sizeof buf, "%s", vt_json_str(d, "backend") ? vt_json_str(d, "backend") : "-");
    if (vt_json_str(d, "device"))
        vt_text_append(buf, sizeof buf, ": %s", vt_json_str(d, "device"));
    fprintf(f, VT__KV, "backend", buf);
    if (cJSON_IsObject(mem)) {
        double total = 0, used = 0, peak = 0;
        vt_json_num(mem, "total", &total);
        vt_json_num(mem, "in_use", &used);
        vt_json_num(mem, "peak", &peak);
        vt_cli_fmt_bytes(used, a, sizeof a);
        vt_cli_fmt_bytes(peak, b, sizeof b);
        vt_cli_fmt_bytes(total, c, sizeof c);
        snprintf(buf, sizeof buf, "%s in use (peak %s) of %s", a, b, c);
        if (vt_json_num(mem, "host", &x) && x > 0) {
            vt_cli_fmt_bytes(x, a, sizeof a);
            vt_text_append(buf, sizeof buf, "; %s of pinned host memory", a);
        }
        fprintf(f, VT__KV, "memory", buf);
    }
    if (cJSON_IsObject(caches)) {
        double dev = 0, host = 0;
        long long n = vt_json_int(caches, "count", 0);
        vt_json_num(caches, "device_bytes", &dev);
        vt_json_num(caches, "host_bytes", &host);
        vt_cli_fmt_bytes(dev, a, sizeof a);
        vt_cli_fmt_bytes(host, b, sizeof b);
        if (n && vt_json_str(d, "backend") && strcmp(vt_json_str(d, "backend"), "cpu") == 0) {
            /* the CPU backend's "device" memory is host memory too */
            vt_cli_fmt_bytes(dev + host, a, sizeof a);
            snprintf(buf, sizeof buf, "%lld (%s in memory)", n, a);
        } else if (n)
            snprintf(buf, sizeof buf, "%lld (%s on the device, %s in host memory)", n, a, b);
        else
            snprintf(buf, sizeof buf, "none");
        fprintf(f, VT__KV, "caches", buf);
    }
    cJSON_ArrayForEach(it, trunks) {
        long long jobs = vt_json_int(it, "jobs", 0);
        vt_cli_fmt_bytes(vt_json_num(it, "bytes", &x) ? x : 0, a, sizeof a);
        snprintf(buf, sizeof buf, "%s: %s, %lld job%s%s",
                 vt_json_str(it, "weights") ? vt_json_str(it, "weights") : "-", a, jobs,
                 jobs == 1 ? "" : "s",
                 cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(it, "resident"))
                     ? " (not resident)" : "");
        fprintf(f, VT__KV, first ? "trunks" : "", buf);
        first = 0;
    }
    if (first && cJSON_IsArray(trunks))
        fprintf(f, VT__KV, "trunks", "none loaded");
    if (cJSON_IsObject(queue)) {
        snprintf(buf, sizeof buf, "%lld running, %lld queued", vt_json_int(queue, "running", 0),
                 vt_json_int(queue, "queued", 0));
        fprintf(f, VT__KV, "jobs", buf);
    }
    if (cJSON_IsObject(rq) && (vt_json_int(rq, "running", 0) || vt_json_int(rq, "waiting", 0))) {
        snprintf(buf, sizeof buf, "%lld in progress, %lld waiting (predict, eval)",
                 vt_json_int(rq, "running", 0), vt_json_int(rq, "waiting", 0));
        fprintf(f, VT__KV, "requests", buf);
    }
    if (cJSON_GetArraySize(users) > 0) {
        vt__table t = {.ncols = 6};
        fprintf(f, "\n");
        vt__row(&t, "USER", "UID", "RUNNING", "QUEUED", "DEVICE TIME", "SHARE");
        cJSON_ArrayForEach(it, users) {
            char uid[32], run[32], q[32], dev[32] = "-", share[32] = "-";
            snprintf(uid, sizeof uid, "%lld", vt_json_int(it, "uid", 0));
            long long reqs = vt_json_int(it, "requests", 0);
            snprintf(run, sizeof run, reqs ? "%lld + %lld request%s" : "%lld",
                     vt_json_int(it, "running", 0), reqs, reqs == 1 ? "" : "s");
            snprintf(q, sizeof q, "%lld", vt_json_int(it, "queued", 0));
            if (vt_json_num(it, "device_s", &x))
                vt_report_duration(x, dev, sizeof dev);
            if (vt_json_num(it, "share", &x))
                snprintf(share, sizeof share, "%.0f%%", 100 * x);
            vt__row(&t, vt_json_str(it, "user"), uid, run, q, dev, share);
        }
        vt__table_print(f, &t);
    }
}

/* ---- progress, epochs -------------------------------------------------- */



/* ---- predict, eval ----------------------------------------------------- */

void vt_cli_render_predictions(FILE *f, const cJSON *predictions, char *const *shown,
                               int nshown)
{
    const cJSON *p, *top, *c;
    int i = 0;

    cJSON_ArrayForEach(p, predictions) {
        const char *name = i < nshown && shown && shown[i] ? shown[i] : vt_json_str(p, "image");
        double prob;
        fprintf(f, "%s:", name ? name : "-");
        if (vt_json_str(p, "error")) {
            fprintf(f, "  error: %s\n", vt_json_str(p, "error"));
            i++;
            continue;
        }
        top = cJSON_GetObjectItemCaseSensitive(p, "top");
        cJSON_ArrayForEach(c, top) {
            fprintf(f, "  %s", vt_json_str(c, "class") ? vt_json_str(c, "class") : "?");
            if (vt_json_num(c, "probability", &prob))
                fprintf(f, " %.4f", prob);
        }
        fprintf(f, "\n");
        i++;
    }
}

/* ---- watch ------------------------------------------------------------- */

void vt_cli_watcher_init(vt_cli_watcher *w, FILE *out, FILE *err, int tty, int width,
                         int64_t job)
{
    memset(w, 0, sizeof *w);
    w->out = out;
    w->err = err;
    w->tty = tty;
    w->width = width;
    w->job = job;
    snprintf(w->name, sizeof w->name, "%lld", (long long)job);
}

void vt_cli_watcher_free(vt_cli_watcher *w)
{
    cJSON_Delete(w->final);
    w->final = NULL;
}

void vt_cli_watcher_clear(vt_cli_watcher *w)
{
    if (w->live) {
        fputs("\r\033[K", w->out);
        w->live = 0;
    }
}

/* Learns the job's name and total epochs from a JOB object. */
static void vt__watcher_job(vt_cli_watcher *w, const cJSON *job)
{
    if (vt_json_str(job, "name"))
        vt__job_label(job, w->name, sizeof w->name);
    if (vt_json_int(job, "epochs", 0) > 0)
        w->epochs = (int)vt_json_int(job, "epochs", 0);
}

static void vt__watcher_progress(vt_cli_watcher *w, const cJSON *p)
{
    char line[512];
    if (!w->tty || !cJSON_IsObject(p))
        return;
    vt_report_progress(line, sizeof line, p, w->width);
    fprintf(w->out, "\r\033[K%s", line);
    fflush(w->out);
    w->live = 1;
}

int vt_cli_watcher_feed(vt_cli_watcher *w, const cJSON *msg)
{
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(msg, "ok");
    const char *ev = vt_json_str(msg, "event");
    char line[1024];

    if (cJSON_IsFalse(ok)) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(msg, "error");
        const char *code = vt_json_str(e, "code"), *text = vt_json_str(e, "message");
        int rc = code ? vt_error_from_name(code) : 0;
        vt_cli_watcher_clear(w);
        return vt_error_set(rc ? rc : VT_EPROTO, "%s", text ? text : "the watch failed");
    }
    if (cJSON_IsTrue(ok) || (ev && strcmp(ev, "end") == 0)) {
        const cJSON *job = cJSON_GetObjectItemCaseSensitive(msg, "job");
        vt__watcher_job(w, job);
        vt_cli_watcher_clear(w);
        cJSON_Delete(w->final);
        w->final = job ? cJSON_Duplicate(job, 1) : NULL;
        return 1;
    }
    if (!ev || w->quiet)
        return 0;
    if (strcmp(ev, "state") == 0) {
        const cJSON *job = cJSON_GetObjectItemCaseSensitive(msg, "job");
        const char *state = vt_json_str(job, "state");
        vt__watcher_job(w, job);
        /* A finished job's end follows at once and says it better. */
        if (state && strcmp(state, w->state) != 0 && strcmp(state, "succeeded") != 0 &&
            strcmp(state, "failed") != 0 && strcmp(state, "cancelled") != 0) {
            char detail[512];
            const cJSON *p = cJSON_GetObjectItemCaseSensitive(job, "progress");
            snprintf(w->state, sizeof w->state, "%s", state);
            snprintf(detail, sizeof detail, "%s", state);
            if (strcmp(state, "queued") == 0 && vt_json_int(job, "queue_position", 0) > 0)
                vt_text_append(detail, sizeof detail, ", position %lld",
                        vt_json_int(job, "queue_position", 0));
            if (strcmp(state, "running") == 0 && cJSON_IsObject(p))
                vt_text_append(detail, sizeof detail, ", epoch %lld/%lld", vt_json_int(p, "epoch", 0),
                        vt_json_int(p, "epochs", w->epochs));
            if (vt_json_true(job, "cancel_requested"))
                vt_text_append(detail, sizeof detail, ", cancel requested");
            vt_cli_watcher_clear(w);
            fprintf(w->out, "job %s: %s\n", w->name, detail);
            fflush(w->out);
            vt__watcher_progress(w, p);
        }
    } else if (strcmp(ev, "progress") == 0) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(msg, "progress");
        if (vt_json_int(p, "epochs", 0) > 0)
            w->epochs = (int)vt_json_int(p, "epochs", 0);
        vt__watcher_progress(w, p);
    } else if (strcmp(ev, "epoch") == 0) {
        vt_report_epoch(line, sizeof line, cJSON_GetObjectItemCaseSensitive(msg, "metrics"),
                         w->epochs);
        vt_cli_watcher_clear(w);
        fprintf(w->out, "%s\n", line);
        fflush(w->out);
    } else if (strcmp(ev, "log") == 0) {
        const char *level = vt_json_str(msg, "level"), *text = vt_json_str(msg, "message");
        vt_cli_watcher_clear(w);
        fprintf(w->out, "%s: %s\n", level ? level : "info", text ? text : "");
        fflush(w->out);
    }
    return 0;
}

int vt_cli_watcher_finish(vt_cli_watcher *w)
{
    const cJSON *job = w->final;
    const char *state = vt_json_str(job, "state"), *s;
    char d[32];
    double x;

    vt_cli_watcher_clear(w);
    if (!state) {
        fprintf(w->err, "vggtune: the watch of job %s ended without the job's state\n",
                w->name);
        return VT_CLI_FAILED;
    }
    if (strcmp(state, "succeeded") == 0 && !w->quiet) {
        long long n = vt_json_int(job, "epochs_done", -1);
        fprintf(w->out, "job %s succeeded", w->name);
        if (n >= 0)
            fprintf(w->out, ": %lld epoch%s", n, n == 1 ? "" : "s");
        if ((x = vt__job_seconds(job)) >= 0) {
            vt_report_duration(x, d, sizeof d);
            fprintf(w->out, " in %s", d);
        }
        if ((s = vt_json_str(job, "output")))
            fprintf(w->out, ", output in %s", s);
        fprintf(w->out, "\n");
    } else if (strcmp(state, "succeeded") == 0) {
        /* --json: the end event said it */
    } else if (strcmp(state, "failed") == 0) {
        fprintf(w->err, "vggtune: job %s failed: %s\n", w->name,
                vt_json_str(job, "error") ? vt_json_str(job, "error") : "no reason given");
    } else if (strcmp(state, "cancelled") == 0) {
        if ((s = vt_json_str(job, "reason")))
            fprintf(w->err, "vggtune: job %s was cancelled: %s\n", w->name, s);
        else
            fprintf(w->err, "vggtune: job %s was cancelled\n", w->name);
    } else {
        fprintf(w->err, "vggtune: vggtuned ended the watch while job %s is %s\n", w->name,
                state);
    }
    fflush(w->out);
    return vt_cli_job_exit(job);
}

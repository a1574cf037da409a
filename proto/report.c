/* report.c - see report.h. */
#include "report.h"

#include <math.h>
#include <string.h>

#include "../common/text.h"
#include "../common/utf8.h"

#define VT__NAME_COLS 20     /* the class column at least, in terminal columns */
#define VT__NAME_COLS_MAX 48 /* and at most (a longer name goes past it) */
#define VT__MATRIX_MAX 24    /* classes up to which the confusion matrix is printed */
#define VT__CONFUSIONS 10    /* with more, how many of the most frequent confusions */

/* ---- fields ------------------------------------------------------------ */

const char *vt_json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

const char *vt_report_val_prefix(const char *phase)
{
    return phase && !strcmp(phase, "validating") ? "val_" : "";
}

int vt_json_num(const cJSON *o, const char *key, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v))
        return 0;
    *out = v->valuedouble;
    return 1;
}

long long vt_json_int(const cJSON *o, const char *key, long long def)
{
    double d;
    return vt_json_num(o, key, &d) && fabs(d) < 9007199254740992.0 ? (long long)d : def;
}

int vt_json_true(const cJSON *o, const char *key)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key));
}

/* ---- eval ---------------------------------------------------------------- */

/* The class name at index c of classes, "?" when there is none. */
static const char *vt__class(const cJSON *classes, int c)
{
    const cJSON *name = cJSON_GetArrayItem(classes, c);
    return cJSON_IsString(name) ? name->valuestring : "?";
}

/* In place of a confusion matrix too wide to read (nc classes): the
 * VT__CONFUSIONS most frequent confusions, largest first. */
static void vt__top_confusions(FILE *f, const cJSON *classes, const cJSON *conf, int nc)
{
    struct { double n; int t, p; } top[VT__CONFUSIONS];
    int ntop = 0, t = 0, p, k;
    const cJSON *row, *v;
    cJSON_ArrayForEach(row, conf) {
        p = 0;
        cJSON_ArrayForEach(v, row) {
            double n = cJSON_IsNumber(v) ? v->valuedouble : 0;
            if (p != t && n > 0 && (ntop < VT__CONFUSIONS || n > top[ntop - 1].n)) {
                k = ntop < VT__CONFUSIONS ? ntop++ : ntop - 1;
                for (; k > 0 && top[k - 1].n < n; k--) /* (ties keep matrix order) */
                    top[k] = top[k - 1];
                top[k].n = n;
                top[k].t = t;
                top[k].p = p;
            }
            p++;
        }
        t++;
    }
    fprintf(f, "confusion matrix: %d classes, too many to print (--json has it); ", nc);
    if (!ntop) {
        fprintf(f, "no image was taken for another class\n");
        return;
    }
    fprintf(f, "the most frequent confusions (images, true class -> predicted):\n");
    for (k = 0; k < ntop; k++)
        fprintf(f, "%6.0f  %s -> %s\n", top[k].n, vt__class(classes, top[k].t),
                vt__class(classes, top[k].p));
}

void vt_report_eval(FILE *f, const cJSON *e)
{
    const cJSON *classes = cJSON_GetObjectItemCaseSensitive(e, "classes");
    const cJSON *prec = cJSON_GetObjectItemCaseSensitive(e, "precision");
    const cJSON *rec = cJSON_GetObjectItemCaseSensitive(e, "recall");
    const cJSON *conf = cJSON_GetObjectItemCaseSensitive(e, "confusion");
    int nc = cJSON_GetArraySize(classes);
    long long skipped = vt_json_int(e, "skipped", 0);
    const cJSON *x;
    int cols = VT__NAME_COLS;

    fprintf(f, "images %lld", vt_json_int(e, "n", 0));
    if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(e, "accuracy")))
        fprintf(f, "  accuracy %.4f", x->valuedouble);
    if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(e, "loss")))
        fprintf(f, "  loss %.4f", x->valuedouble);
    if (skipped > 0)
        fprintf(f, "  (%lld unreadable image%s skipped)", skipped, skipped == 1 ? "" : "s");
    if ((skipped = vt_json_int(e, "links_skipped", 0)) > 0)
        fprintf(f, "  (%lld symbolic link%s not followed)", skipped, skipped == 1 ? "" : "s");
    if ((skipped = vt_json_int(e, "others_skipped", 0)) > 0)
        fprintf(f, "  (%lld file%s skipped, not JPEG or PNG by name)", skipped,
                skipped == 1 ? "" : "s");
    fprintf(f, "\n");
    if (cJSON_IsString(x = cJSON_GetObjectItemCaseSensitive(e, "first_skipped")))
        fprintf(f, "first unreadable image: %s\n", x->valuestring);
    if (nc <= 0)
        return;
    for (int c = 0; c < nc; c++) { /* (columns, not bytes: 'données') */
        int w = vt_utf8_width(vt__class(classes, c));
        if (w > cols)
            cols = w < VT__NAME_COLS_MAX ? w : VT__NAME_COLS_MAX;
    }
    fprintf(f, "%-*s %9s %9s\n", cols, "class", "precision", "recall");
    for (int c = 0; c < nc; c++) {
        const cJSON *p = cJSON_GetArrayItem(prec, c), *r = cJSON_GetArrayItem(rec, c);
        char ps[32] = "-", rs[32] = "-";
        if (cJSON_IsNumber(p))
            snprintf(ps, sizeof ps, "%.4f", p->valuedouble);
        if (cJSON_IsNumber(r))
            snprintf(rs, sizeof rs, "%.4f", r->valuedouble);
        const char *s = vt__class(classes, c);
        int pad = cols - vt_utf8_width(s);
        fprintf(f, "%s%*s %9s %9s\n", s, pad > 0 ? pad : 0, "", ps, rs);
    }
    if (cJSON_GetArraySize(conf) != nc)
        return;
    if (nc > VT__MATRIX_MAX) {
        vt__top_confusions(f, classes, conf, nc);
        return;
    }
    fprintf(f, "confusion matrix (rows: true class, columns: predicted class, numbered as "
               "the rows)\n");
    for (int k = 0; k < nc; k++)
        fprintf(f, "%6d", k);
    fprintf(f, "\n");
    for (int c = 0; c < nc; c++) {
        const cJSON *row = cJSON_GetArrayItem(conf, c), *v;
        cJSON_ArrayForEach(v, row)
            fprintf(f, "%6.0f", cJSON_IsNumber(v) ? v->valuedouble : 0.0);
        fprintf(f, "   %d %s\n", c, vt__class(classes, c));
    }
}

/* ---- progress ------------------------------------------------------------ */

void vt_report_duration(double s, char *buf, size_t len)
{
    if (!(s >= 0) || s > 1e8)
        snprintf(buf, len, "--:--");
    else if (s >= 3600)
        snprintf(buf, len, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
    else
        snprintf(buf, len, "%d:%02d", (int)s / 60, (int)s % 60);
}

void vt_report_progress(char *buf, size_t len, const cJSON *p, int width)
{
    const char *phase = vt_json_str(p, "phase");
    long long step = vt_json_int(p, "step", 0), steps = vt_json_int(p, "steps", 0);
    char bar[32], d[32];
    int fill, cols = width > 1 ? width - 1 : 79;
    double x;

    buf[0] = '\0';
    if (vt_json_int(p, "epoch", 0) > 0) {
        vt_text_append(buf, len, "epoch %lld", vt_json_int(p, "epoch", 0));
        if (vt_json_int(p, "epochs", 0) > 0)
            vt_text_append(buf, len, "/%lld", vt_json_int(p, "epochs", 0));
    }
    if (phase && strcmp(phase, "training") != 0)
        vt_text_append(buf, len, "%s%s", buf[0] ? " " : "", phase);
    if (steps > 0) {
        fill = (int)(step * 20 / steps);
        fill = fill < 0 ? 0 : fill > 20 ? 20 : fill;
        for (int i = 0; i < 20; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[20] = '\0';
        vt_text_append(buf, len, "%s[%s] %lld/%lld%s", buf[0] ? " " : "", bar, step, steps,
                       !phase                         ? ""
                       : !strcmp(phase, "preparing")  ? " image headers read"
                       : !strcmp(phase, "evaluating") ? " images"
                       : !strcmp(phase, "predicting") ? " images"
                                                      : "");
    }
    if (vt_json_num(p, "loss", &x))
        vt_text_append(buf, len, "  %sloss %.4f", vt_report_val_prefix(phase), x);
    if (vt_json_num(p, "accuracy", &x))
        vt_text_append(buf, len, "  %sacc %.4f", vt_report_val_prefix(phase), x);
    /* A wrapped line cannot be rewritten in place: on a narrow terminal
     * img/s goes first (the ETA matters more), then the line is cut. */
    for (int with_speed = 1; with_speed >= 0; with_speed--) {
        size_t n = strlen(buf);
        if (with_speed && vt_json_num(p, "images_per_s", &x))
            vt_text_append(buf, len, "  %.0f img/s", x);
        if (vt_json_num(p, "eta_s", &x)) {
            vt_report_duration(x, d, sizeof d);
            vt_text_append(buf, len, "  ETA %s", d);
        }
        if (strlen(buf) <= (size_t)cols)
            return;
        if (with_speed)
            buf[n] = '\0';
    }
    buf[cols] = '\0';
}

void vt_report_epoch(char *buf, size_t len, const cJSON *m, int epochs)
{
    double x;
    buf[0] = '\0';
    vt_text_append(buf, len, "epoch %lld", vt_json_int(m, "epoch", 0));
    if (epochs > 0)
        vt_text_append(buf, len, "/%d", epochs);
    if (vt_json_num(m, "loss", &x))
        vt_text_append(buf, len, "  loss %.4f", x);
    if (vt_json_num(m, "accuracy", &x))
        vt_text_append(buf, len, "  acc %.4f", x);
    if (vt_json_num(m, "val_loss", &x))
        vt_text_append(buf, len, "  val_loss %.4f", x);
    if (vt_json_num(m, "val_accuracy", &x))
        vt_text_append(buf, len, "  val_acc %.4f", x);
    if (vt_json_num(m, "images_per_s", &x))
        vt_text_append(buf, len, "  %.0f img/s", x);
    if (vt_json_num(m, "seconds", &x))
        vt_text_append(buf, len, "  %.1f s", x);
    if (vt_json_true(m, "cached"))
        vt_text_append(buf, len, "  (cached %s)",
                vt_json_str(m, "cache") && strcmp(vt_json_str(m, "cache"), "images") == 0 ? "images"
                                                                                 : "features");
}

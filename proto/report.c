/* report.c - see report.h. */
#include "report.h"

#include <math.h>

#include "../common/utf8.h"

#define VT__NAME_COLS 20 /* the class column, in terminal columns */

/* A count field of o, 0 when missing or not below 2^53 in magnitude (as
 * PROTOCOL.md has integers; converting a larger double to long long could
 * be undefined). */
static long long vt__count(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) && fabs(v->valuedouble) < 9007199254740992.0
               ? (long long)v->valuedouble
               : 0;
}

void vt_report_eval(FILE *f, const cJSON *e)
{
    const cJSON *classes = cJSON_GetObjectItemCaseSensitive(e, "classes");
    const cJSON *prec = cJSON_GetObjectItemCaseSensitive(e, "precision");
    const cJSON *rec = cJSON_GetObjectItemCaseSensitive(e, "recall");
    const cJSON *conf = cJSON_GetObjectItemCaseSensitive(e, "confusion");
    int nc = cJSON_GetArraySize(classes);
    long long skipped = vt__count(e, "skipped");
    const cJSON *x;

    fprintf(f, "images %lld", vt__count(e, "n"));
    if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(e, "accuracy")))
        fprintf(f, "  accuracy %.4f", x->valuedouble);
    if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(e, "loss")))
        fprintf(f, "  loss %.4f", x->valuedouble);
    if (skipped > 0)
        fprintf(f, "  (%lld unreadable image%s skipped)", skipped, skipped == 1 ? "" : "s");
    if ((skipped = vt__count(e, "links_skipped")) > 0)
        fprintf(f, "  (%lld symbolic link%s not followed)", skipped, skipped == 1 ? "" : "s");
    fprintf(f, "\n");
    if (nc <= 0)
        return;
    fprintf(f, "%-*s %9s %9s\n", VT__NAME_COLS, "class", "precision", "recall");
    for (int c = 0; c < nc; c++) {
        const cJSON *name = cJSON_GetArrayItem(classes, c);
        const cJSON *p = cJSON_GetArrayItem(prec, c), *r = cJSON_GetArrayItem(rec, c);
        char ps[32] = "-", rs[32] = "-";
        if (cJSON_IsNumber(p))
            snprintf(ps, sizeof ps, "%.4f", p->valuedouble);
        if (cJSON_IsNumber(r))
            snprintf(rs, sizeof rs, "%.4f", r->valuedouble);
        const char *s = cJSON_IsString(name) ? name->valuestring : "?";
        int pad = VT__NAME_COLS - vt_utf8_width(s); /* (columns, not bytes: 'données') */
        fprintf(f, "%s%*s %9s %9s\n", s, pad > 0 ? pad : 0, "", ps, rs);
    }
    if (cJSON_GetArraySize(conf) != nc)
        return;
    fprintf(f, "confusion matrix (rows: true class, columns: predicted class, numbered as "
               "the rows)\n");
    for (int k = 0; k < nc; k++)
        fprintf(f, "%6d", k);
    fprintf(f, "\n");
    for (int c = 0; c < nc; c++) {
        const cJSON *row = cJSON_GetArrayItem(conf, c), *v;
        const cJSON *name = cJSON_GetArrayItem(classes, c);
        cJSON_ArrayForEach(v, row)
            fprintf(f, "%6.0f", cJSON_IsNumber(v) ? v->valuedouble : 0.0);
        fprintf(f, "   %d %s\n", c, cJSON_IsString(name) ? name->valuestring : "?");
    }
}
